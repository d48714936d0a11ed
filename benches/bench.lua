-- Workloads of benches/runtime.rs, the same four as shared/anchors/otp_bench.erl.
local time = require("time")
local M = {}

function M.idle()
  process.inbox():receive()
end

-- spawn n idle processes of `entry` (default bench:idle); returns the milliseconds spent
-- in the spawn calls
function M.spawner(n, entry, arg)
  entry = entry or "bench:idle"
  local t0 = time.now()
  for _ = 1, n do
    local pid, err = process.spawn(entry, "bench:host", arg)
    if not pid then error(tostring(err)) end
  end
  return (time.now():sub(t0):seconds() * 1000)
end

function M.ring_node()
  local inbox = process.inbox()
  local next_pid = inbox:receive():payload():data()
  while true do
    local k, from = inbox:receive():payload():data()
    if k == 0 then
      process.send(from, "done", true)
    else
      process.send(next_pid, "t", k - 1, from)
    end
  end
end

-- n processes pass a token n*m times around; returns messages per second
function M.ring(n, m)
  local pids = {}
  for i = 1, n do
    pids[i] = assert(process.spawn("bench:ring_node", "bench:host"))
  end
  for i = 1, n do
    process.send(pids[i], "next", pids[i % n + 1])
  end
  local t0 = time.now()
  process.send(pids[1], "t", n * m, process.pid())
  process.inbox():receive()
  local ms = (time.now():sub(t0):seconds() * 1000)
  for i = 1, n do process.terminate(pids[i]) end
  return (n * m) / (ms / 1000)
end

function M.echo()
  local inbox = process.inbox()
  while true do
    local msg = inbox:receive()
    process.send(msg:from(), "r", msg:payload():data())
  end
end

-- send + reply round trips with an echo process (`entry`, default the Lua echo), timed in
-- batches; returns microseconds per round trip
function M.roundtrip(batches, per, entry)
  local echo = assert(process.spawn(entry or "bench:echo", "bench:host", 1000000000))
  local inbox = process.inbox()
  local samples = {}
  for b = 1, batches do
    local t0 = time.now()
    for i = 1, per do
      process.send(echo, "q", i)
      inbox:receive()
    end
    samples[b] = (time.now():sub(t0):seconds() * 1000) * 1000 / per
  end
  process.terminate(echo)
  table.sort(samples)
  return { median = samples[batches // 2], p10 = samples[batches // 10], p90 = samples[batches * 9 // 10] }
end

-- the round trip with n idle processes on this process's worker (spawned first, so the
-- echo process and they share its Lua state)
function M.roundtrip_idle(n, batches, per)
  for _ = 1, n do assert(process.spawn("bench:idle", "bench:host")) end
  return M.roundtrip(batches, per)
end

-- n idle processes on this process's worker, then forced minor collections of its Lua
-- state timed one by one; returns microseconds per collection
function M.gc_pause(n)
  for _ = 1, n do assert(process.spawn("bench:idle", "bench:host")) end
  time.sleep("100ms")
  -- the idle coroutines become old and have waited through collections
  for _ = 1, 6 do collectgarbage("step") end
  local samples = {}
  for i = 1, 101 do
    local junk = {}
    for j = 1, 200 do junk[j] = { j } end
    local t0 = time.now()
    collectgarbage("step")
    samples[i] = time.now():sub(t0):seconds() * 1e6
  end
  table.sort(samples)
  return { median = samples[51], p10 = samples[11], p90 = samples[91] }
end

-- a trivial function.lua
function M.noop(x)
  return x
end

-- funcs.call round trips from one process, timed in batches; microseconds per call
function M.call_latency(id, batches, per)
  local funcs = require("funcs")
  for i = 1, 1000 do funcs.call(id, i) end
  local samples = {}
  for b = 1, batches do
    local t0 = time.now()
    for i = 1, per do funcs.call(id, i) end
    samples[b] = (time.now():sub(t0):seconds() * 1000) * 1000 / per
  end
  table.sort(samples)
  return { median = samples[batches // 2], p10 = samples[batches // 10], p90 = samples[batches * 9 // 10] }
end

-- n calls in a row; returns nothing (the driver times the whole set of callers)
function M.call_loop(id, n)
  local funcs = require("funcs")
  for i = 1, n do
    local r, err = funcs.call(id, i)
    if r ~= i then error(tostring(err)) end
  end
  return n
end

-- a supervised worker: announces itself, crashes on request
function M.sworker()
  process.send("bench", "ready")
  local inbox = process.inbox()
  while true do
    if inbox:receive():topic() == "crash" then error("crash on request") end
  end
end

-- crash the only child of a one_for_one tree n times: microseconds from the crash
-- message to the replacement's first message
function M.restarts(n)
  local supervisor = require("supervisor")
  process.registry.register("bench")
  assert(supervisor.start("bench:svc1"))
  local inbox = process.inbox()
  local pid = inbox:receive():from()
  local samples = {}
  for i = 1, n do
    local t0 = time.now()
    process.send(pid, "crash")
    pid = inbox:receive():from()
    samples[i] = (time.now():sub(t0):seconds() * 1000) * 1000
  end
  table.sort(samples)
  return { median = samples[n // 2], p90 = samples[n * 9 // 10] }
end

-- a one_for_all tree of 100 children: milliseconds from one crash to all 100 replaced
function M.restart_all(rounds)
  local supervisor = require("supervisor")
  process.registry.register("bench")
  assert(supervisor.start("bench:svc100"))
  local inbox = process.inbox()
  local first
  for i = 1, 100 do
    local from = inbox:receive():from()
    if i == 1 then first = from end
  end
  local samples = {}
  for r = 1, rounds do
    local t0 = time.now()
    process.send(first, "crash")
    for i = 1, 100 do
      local from = inbox:receive():from()
      if i == 1 then first = from end
    end
    samples[r] = (time.now():sub(t0):seconds() * 1000)
  end
  table.sort(samples)
  return { median = samples[rounds // 2], min = samples[1], max = samples[rounds] }
end

return M
