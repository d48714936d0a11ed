-- Workloads of benches/wasm.rs: WebAssembly functions called from a Lua process.
local time = require("time")
local funcs = require("funcs")
local json = require("json")
local M = {}

local function summary(samples)
  local n = #samples
  table.sort(samples)
  return { median = samples[n // 2 + 1], p10 = samples[n // 10 + 1], p90 = samples[n * 9 // 10 + 1] }
end

-- funcs.call(id, {x=1, y=2}) round trips, timed in batches of `per`: microseconds per
-- call (median and p90 over the batches), after `warm` untimed calls
function M.call_latency(id, batches, per, warm)
  local p = { x = 1, y = 2 }
  local r, err = funcs.call(id, p)
  if not r or r.x ~= 1 or r.y ~= 2 then error("bad answer from " .. id .. ": " .. tostring(err)) end
  for _ = 1, warm do funcs.call(id, p) end
  local samples = {}
  for b = 1, batches do
    local t0 = time.now()
    for _ = 1, per do funcs.call(id, p) end
    samples[b] = (time.now():sub(t0):seconds() * 1000) * 1000 / per
  end
  return summary(samples)
end

-- transform-users on n users built here, each call timed alone: microseconds per call,
-- and the byte sizes of the compact JSON encodings (json.encode) of input and output
function M.transform(id, n, calls, warm)
  local users = {}
  for i = 1, n do
    users[i] = { id = i, name = "user" .. i, tags = { "admin", "user" }, active = i % 2 == 0 }
  end
  local out, err = funcs.call(id, users)
  if not out or #out ~= n or out[n].id ~= n or out[n]["tag-count"] ~= 2
    or out[1].display ~= "user1 [admin, user]" then
    error("bad answer from " .. id .. ": " .. tostring(err) .. " " .. tostring(out and out[1] and out[1].display))
  end
  for _ = 1, warm do funcs.call(id, users) end
  local samples = {}
  for c = 1, calls do
    local t0 = time.now()
    funcs.call(id, users)
    samples[c] = (time.now():sub(t0):seconds() * 1000) * 1000
  end
  local s = summary(samples)
  s.in_bytes = #json.encode(users)
  s.out_bytes = #json.encode(out)
  return s
end

return M
