-- Runs once per worker Lua state, with the full standard library in reach. It builds the
-- shared base environment that every process reads its globals through, and makes every
-- shared table read-only, so that one process can neither see nor change what another one
-- sees. Each process gets its own globals table whose metatable (env_mt) falls back to
-- `base`; `base` itself is never reachable from process code.
local rust = ...

local raw_rawset, raw_setmetatable, raw_getmetatable = rawset, setmetatable, getmetatable
local type, error, tostring, next, pairs = type, error, tostring, next, pairs

collectgarbage("generational")

-- proxies handed out in place of shared tables
local frozen = raw_setmetatable({}, { __mode = "k" })

local function freeze(t, name, call)
  local proxy = {}
  frozen[proxy] = true
  -- pairs(proxy) walks t without handing t out: the iterator is a closure over t, and
  -- the state it returns is the proxy itself (Lua's own `next` would need t as state)
  local function iterate(_, k) return next(t, k) end
  raw_setmetatable(proxy, {
    __call = call,
    __index = t,
    __newindex = function(_, k)
      error(("attempt to modify read-only table %s (field %s)"):format(name, tostring(k)), 2)
    end,
    __pairs = function() return iterate, proxy, nil end,
    __len = function() return #t end,
    __metatable = false,
  })
  return proxy
end

-- freezes a module table and the tables inside it
local function freeze_deep(t, name)
  for k, v in pairs(t) do
    if type(v) == "table" and not frozen[v] then
      t[k] = freeze_deep(v, name .. "." .. tostring(k))
    end
  end
  return freeze(t, name)
end

local function safe_rawset(t, k, v)
  if frozen[t] then error("attempt to modify a read-only table", 2) end
  return raw_rawset(t, k, v)
end

local function safe_getmetatable(v)
  if type(v) ~= "table" then return nil end
  return raw_getmetatable(v)
end

local function safe_setmetatable(t, mt)
  if frozen[t] then error("cannot change the metatable of a read-only table", 2) end
  return raw_setmetatable(t, mt)
end

local gc_allowed = { count = true, collect = true, step = true, isrunning = true }
local function safe_collectgarbage(opt, ...)
  opt = opt or "collect"
  if not gc_allowed[opt] then
    error(("collectgarbage(%q) is not available to processes"):format(tostring(opt)), 2)
  end
  return collectgarbage(opt, ...)
end

-- the string metatable is shared by every string: hide it
local string_mt = raw_getmetatable("")
string_mt.__metatable = false

-- math.random / math.randomseed: a process that seeds draws from its own generator
-- (a worker's one generator would let one process steer another's numbers)
local math_copy = {}
for k, v in pairs(math) do math_copy[k] = v end
math_copy.random, math_copy.randomseed = rust.math_random, rust.math_randomseed

-- print writes a log line (Wippy's print is structured logging; io.print is stdout)
local log_print, tostring_, select_, concat = rust.log_print, tostring, select, table.concat
local function print_(...)
  local n = select_("#", ...)
  local parts = {}
  for i = 1, n do parts[i] = tostring_((select_(i, ...))) end
  log_print(concat(parts, "\t"))
end

-- Wippy's cast calls (en/lua/types.md, "Safe Cast"): `string(v)`, `number(v)`,
-- `integer(v)`, `boolean(v)` give the value as that type, or raise an error naming what
-- could not be converted (at the caller's line).
local tointeger, tonumber_, raise = math.tointeger, tonumber, error
local function cannot(v, to)
  raise(("cannot convert %s to %s"):format(type(v) == "string" and ("%q"):format(v) or type(v), to), 3)
end
local function cast_string(_, v)
  local t = type(v)
  if t == "string" then return v end
  if t == "number" or t == "boolean" then return tostring(v) end
  return cannot(v, "string")
end
local function cast_number(v)
  if type(v) == "number" then return v end
  local n = type(v) == "string" and tonumber_(v) or nil
  if n == nil then return cannot(v, "number") end
  return n
end
local function cast_integer(v)
  local n = type(v) == "number" and v or (type(v) == "string" and tonumber_(v)) or nil
  local i = n ~= nil and tointeger(n) or nil
  if i == nil then return cannot(v, "integer") end
  return i
end
local function cast_boolean(v)
  if type(v) == "boolean" then return v end
  if v == "true" then return true end
  if v == "false" then return false end
  return cannot(v, "boolean")
end

-- The string functions take an error object where they take a string (its message), as
-- Wippy's error values behave as strings there: `string.find(err, "timeout")`.
local string_view = {}
for k, f in pairs(string) do string_view[k] = f end
for _, name in ipairs({ "find", "match", "gmatch", "gsub", "sub", "len", "lower", "upper",
  "rep", "reverse", "byte" }) do
  local f = string[name]
  string_view[name] = function(s, ...)
    if type(s) == "userdata" then s = tostring(s) end
    return f(s, ...)
  end
end

local base = {
  assert = assert, error = error, ipairs = ipairs, next = next, pairs = pairs,
  pcall = pcall, print = print_, select = select, tonumber = tonumber,
  tostring = tostring, type = type, xpcall = xpcall, rawequal = rawequal,
  rawlen = rawlen, rawget = rawget, rawset = safe_rawset,
  getmetatable = safe_getmetatable, setmetatable = safe_setmetatable,
  collectgarbage = safe_collectgarbage, _VERSION = _VERSION,
  unpack = table.unpack, load = rust.load,
  string = freeze(string_view, "string", cast_string),
  errors = freeze_deep(rust.errors, "errors"),
  payload = freeze_deep(rust.payload, "payload"),
  number = cast_number, integer = cast_integer, boolean = cast_boolean,
  table = freeze(table, "table"),
  math = freeze(math_copy, "math"),
  utf8 = freeze(utf8, "utf8"),
  os = freeze({ time = os.time, clock = os.clock, date = os.date, difftime = os.difftime }, "os"),
  coroutine = freeze({
    create = rust.coroutine_create, resume = coroutine.resume, yield = coroutine.yield,
    status = coroutine.status, wrap = rust.coroutine_wrap, isyieldable = coroutine.isyieldable,
    running = coroutine.running, close = coroutine.close, spawn = rust.coroutine_spawn,
  }, "coroutine"),
  process = freeze_deep(rust.process, "process"),
  channel = freeze_deep(rust.channel, "channel"),
}

local env_mt = { __index = base, __metatable = false }

-- The metatable of messages (userdata made in process/message.rs, Wippy's process.Message):
-- topic, sender and payload values are its user values, read by C functions over it.
local message_mt = rust.message_mt
message_mt.__index = {
  topic = rust.message_topic,
  from = rust.message_from,
  -- a message is its own payload (en/lua/core/process.md: msg:payload():data())
  payload = function(m) return m end,
  data = rust.message_data,
  -- the payload's side (en/lua/data/payload.md): a message's data is a Lua value
  unmarshal = rust.message_data,
  get_format = function() return "lua/any" end,
  transcode = function(m, format)
    return rust.payload.new(rust.message_data(m)):transcode(format)
  end,
}
message_mt.__copy = rust.message_copy
message_mt.__name = "process.Message"
message_mt.__metatable = false

-- A function instance runs under `describe` as the message handler: an error value that
-- is not a string (a table, a number, nil) is described in words before it leaves Lua,
-- and raised again as text. `run_protected(f, ...)` is a C function (vm/raw.rs), as is
-- the body of every process coroutine, which does the same for a process's method.
local run_protected = rust.run_protected
local function protected(f)
  return function(...) return run_protected(f, ...) end
end

-- Instantiates a library chunk with its own globals.
local function instantiate(factory, env)
  local m = factory(env)
  if m == nil then m = true end
  return m
end

-- Instantiates a function entry's chunk and returns the function its method names.
local function method_of(factory, env, id, method)
  local m = factory(env)
  local f
  if type(m) == "table" then f = m[method] end
  if f == nil then f = rawget(env, method) end
  if type(f) ~= "function" then
    error(("entry %s: method %s not found (the source must return a table with a function %s, or define a global function %s)")
      :format(id, method, method, method), 0)
  end
  return protected(f)
end

return {
  env_mt = env_mt, instantiate = instantiate, freeze = freeze_deep,
  method_of = method_of,
}
