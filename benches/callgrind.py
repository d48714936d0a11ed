#!/usr/bin/env python3
"""Counts the instructions of one child of the runtime bench with callgrind.

    python3 benches/callgrind.py CHILD BINARY OUT    # e.g. spawn target/release/deps/runtime-* /tmp/cg.spawn
    callgrind_annotate --inclusive=yes OUT | less

The watchdog's preemption signal (SIGURG) is blocked first (a blocked signal stays blocked
across exec): under valgrind every resume runs long enough to be signalled, and callgrind
then often stops on an assertion about signals. Without preemption a busy process is not
interrupted (a spawner spawns all its processes before any of them runs), so compare
counts only with counts made the same way.
"""
import os, signal, sys

child, binary, out = sys.argv[1], sys.argv[2], sys.argv[3]
signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGURG})
os.environ["WARDEN_BENCH_CHILD"] = child
os.environ.setdefault("RUST_LOG", "warn")
os.execvp("valgrind", ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", binary])
