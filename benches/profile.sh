#!/bin/sh
# Profiles the measured part of one child of the runtime bench with perf (call graphs by
# DWARF), and writes its folded stacks and a flame graph (inferno) under docs/perf/.
#   cargo bench --bench runtime --no-run
#   benches/profile.sh roundtrip target/release/deps/runtime-HASH [runs]
# Needs perf and inferno (`cargo install inferno`).
set -e
child=$1; bin=$2; runs=${3:-3}
out=docs/perf; mkdir -p "$out"
ctl=$(mktemp -u); mkfifo "$ctl"
data=$(mktemp)
i=0; cmds=""
while [ $i -lt "$runs" ]; do cmds="$cmds $bin;"; i=$((i+1)); done
WARDEN_PERF_CTL=$ctl WARDEN_BENCH_CHILD=$child RUST_LOG=warn \
  perf record -q -D -1 --control "fifo:$ctl" -F ${FREQ:-10000} --call-graph dwarf,16384 -o "$data" \
  -- sh -c "$cmds" > /dev/null
perf script -i "$data" 2>/dev/null | inferno-collapse-perf > "$out/$child.folded"
inferno-flamegraph --title "warden: $child (measured part)" < "$out/$child.folded" > "$out/$child.svg"
rm -f "$ctl" "$data"
echo "$out/$child.folded $out/$child.svg"
