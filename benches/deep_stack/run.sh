#!/usr/bin/env bash
# Preemption at depth against plain lua5.4 (apt-get install lua5.4), as in issue 26: both
# pinned to core 0, shared with two busy loops; CPU time = user + system.
# Usage: benches/deep_stack/run.sh [WARDEN_BINARY] [RUNS]   (default target/release/warden, 5)
set -u
here=$(cd "$(dirname "$0")" && pwd)
bin=$(realpath "${1:-$here/../../target/release/warden}")
runs=${2:-5}
cd "$here"
taskset -c 0 sh -c 'while :; do :; done' & b1=$!
taskset -c 0 sh -c 'while :; do :; done' & b2=$!
trap 'kill $b1 $b2' EXIT
cpu() { awk '{printf "cpu %.2f s wall %s s", $1 + $2, $3}'; }
for i in $(seq "$runs"); do
  w=$( { /usr/bin/time -f "%U %S %e" taskset -c 0 timeout 100 "$bin" run -d . --exec app:overflow >/dev/null 2>/tmp/deep_stack.err; } 2>&1; tail -1 /tmp/deep_stack.err | cpu)
  grep -q "stack overflow" /tmp/deep_stack.err || w="$w (no stack overflow)"
  p=$( { /usr/bin/time -f "%U %S %e" taskset -c 0 lua5.4 overflow.lua plain >/dev/null; } 2>&1 | cpu)
  echo "overflow $i: warden $w | lua5.4 $p"
done
for i in $(seq "$runs"); do
  w=$(taskset -c 0 timeout 200 "$bin" run -d . --exec app:ratio 2>/dev/null | tr -d '"')
  p=$(taskset -c 0 lua5.4 ratio.lua plain)
  echo "work at depth $i: warden ${w:-no end in 200 s} | lua5.4 $p"
done
