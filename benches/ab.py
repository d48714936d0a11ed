#!/usr/bin/env python3
"""A/B of two builds of the runtime bench: runs each benchmark child of both binaries in
turn (order swapped every round), and prints the median of each side, new / old, and the
spread of the per-pair ratios.

    cargo bench --bench runtime --no-run        # on each commit; copy target/release/deps/runtime-*
    python3 benches/ab.py OLD_BINARY NEW_BINARY [PAIRS] [child,child,...]
"""
import json, os, statistics, subprocess, sys

CHILDREN = {"spawn": "spawn_us", "ring": "msgs_per_s", "roundtrip": "median",
            "restart": "median", "call1": "median", "call100-2": "calls_per_s",
            "wspawn": "spawn_us", "rtidle": "median",
            "gcpause": "median"}
# further figures a child reports, compared the same way
EXTRA = {"spawn": ["bytes_per_process", "lua_heap_per_process"], "wspawn": ["bytes_per_process"]}
old, new = sys.argv[1], sys.argv[2]
pairs = int(sys.argv[3]) if len(sys.argv) > 3 else 5
chosen = sys.argv[4].split(",") if len(sys.argv) > 4 else [c for c in CHILDREN if c not in ("wspawn", "rtidle", "gcpause")]
res = {k: {old: [], new: []} for c in chosen for k in [c] + [f"{c}.{e}" for e in EXTRA.get(c, [])]}
for i in range(pairs):
    for c in chosen:
        for binary in ([old, new] if i % 2 == 0 else [new, old]):
            env = dict(os.environ, RUST_LOG="warn", WARDEN_BENCH_CHILD=c)
            out = subprocess.run([binary], env=env, capture_output=True, text=True, timeout=600).stdout
            line = [l for l in out.splitlines() if l.startswith("{")][-1]
            figures = json.loads(line)
            res[c][binary].append(figures[CHILDREN[c]])
            for e in EXTRA.get(c, []):
                res[f"{c}.{e}"][binary].append(figures[e])
for c in res:
    o, n = statistics.median(res[c][old]), statistics.median(res[c][new])
    ratios = sorted(b / a for a, b in zip(res[c][old], res[c][new]))
    print(f"{c:10} {CHILDREN.get(c, ''):12} old {o:12.3f} new {n:12.3f} new/old {n / o:5.2f}"
          f"  per-pair {min(ratios):.2f}-{max(ratios):.2f}")
