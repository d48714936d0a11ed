#!/usr/bin/env python3
"""Splits a folded profile (benches/profile.sh) of warden's host threads into the steps of
the message path: each sample goes to the first step, from the leaf up, whose frames it is
in. Prints a Markdown row per step with its share of the host threads' samples.

    python3 benches/profile_table.py docs/perf/roundtrip.folded [...]
"""
import collections, sys

STEPS = [
    ("mailbox push and wake", ["ProcessHandle::message", "AtomicWaker::wake"]),
    ("send: find the process", ["Node::send", "Node::process"]),
    ("send: Lua args to a message", ["send_fast", "process_api::send"]),
    ("receive: message table in Lua", ["push_message", "message_table"]),
    ("receive: take from the channel", ["raw_take", "receive_step", "try_receive"]),
    ("route: mailbox to channel", ["take_next", "Driver::route", "ProcCtx::deliver", "pop_message"]),
    ("message methods (from, payload, data)", ["lazy_message", "LazyMessage", "payload::", "value::to_lua", "value::from_lua"]),
    ("funcs.call: caller", ["call::funcs", "lua::funcs"]),
    ("funcs.call: pool and callee", ["functions::", "function_call::"]),
    ("spawn: node and table", ["Node::spawn", "spawn_as", "register_unit"]),
    ("spawn: Lua thread, env, ProcCtx", ["start_process", "main_thread", "new_env", "ProcCtx::new"]),
    ("exit and cleanup", ["publish_exit", "drop_in_place<warden::lua::process::driver", "ProcCtx::release", "Relations::end"]),
    ("supervision", ["supervision::"]),
    ("Lua GC", ["luaC_", "luaE_freethread", "sweeplist", "propagatemark", "traversethread"]),
    ("Lua interpreter (the bench's code)", ["luaV_execute", "lua_resume", "luaD_", "resume_inner"]),
    ("driver: register, preemption marks, resume", ["Driver::step", "Running", "RunState", "AsyncThread"]),
    ("task wrapper (current context, exit guard)", ["Driver as core::future", "CurrentGuard", "host::run_process", "run_process"]),
    ("tokio: scheduling, wakers", ["tokio::", "LocalSet"]),
    ("allocator", ["mi_", "malloc", "free"]),
    ("kernel", ["[k]", "exc_page_fault", "do_syscall", "entry_SYSCALL", "asm_"]),
]

def split(path):
    share = collections.Counter(); total = 0
    for line in open(path):
        stack, n = line.rsplit(" ", 1); n = int(n)
        frames = stack.split(";")
        if not frames[0].startswith("warden-host"):
            continue
        total += n
        for f in reversed(frames):
            step = next((name for name, keys in STEPS if any(k in f for k in keys)), None)
            if step:
                share[step] += n
                break
        else:
            share["other"] += n
    return share, total

files = sys.argv[1:]
res = [split(f) for f in files]
names = [n for n, _ in STEPS] + ["other"]
print("| step | " + " | ".join(f.split("/")[-1].split(".")[0] for f in files) + " |")
print("|---|" + "---|" * len(files))
for n in names:
    cells = [f"{s[n] * 100 / t:.1f}%" if s[n] else "" for s, t in res]
    if any(cells):
        print(f"| {n} | " + " | ".join(cells) + " |")
