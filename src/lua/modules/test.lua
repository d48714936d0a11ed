-- The `test` module (Wippy's test library): suites (`describe` / `spec` / `context`), cases
-- (`it`, `it_skip`), hooks, assertions, mocks, and `run_cases`, which runs what a define
-- function declared and reports each case to `warden test` as it goes.
--
-- Loaded once per worker by the Lua runtime; user code sees only the table. `report` sends
-- an event to the test runner (nothing outside `warden test`), `runners` marks the
-- functions run_cases made, `caller` gives the file and line of the first frame outside
-- this module, `env_of` a function's globals table (its _ENV).
local report, runners, caller, env_of, h, supervisor, time = ...

local M = {}

-- a failed assertion: raised as a table so the case keeps its parts
local Failure = {}
Failure.__index = Failure
Failure.__tostring = function(f)
  if f.file then return ("%s:%d: %s"):format(f.file, f.line, f.message) end
  return f.message
end

local function show(v, depth)
  depth = depth or 0
  local t = type(v)
  if t == "string" then return ("%q"):format(v) end
  if t ~= "table" then return tostring(v) end
  if depth > 3 then return "{...}" end
  local keys = {}
  for k in pairs(v) do keys[#keys + 1] = k end
  table.sort(keys, function(a, b)
    if type(a) == type(b) and (type(a) == "number" or type(a) == "string") then return a < b end
    return type(a) < type(b)
  end)
  local parts, n = {}, #v
  for _, k in ipairs(keys) do
    local key
    if type(k) == "number" and k >= 1 and k <= n and k % 1 == 0 then key = ""
    elseif type(k) == "string" and k:match("^[%a_][%w_]*$") then key = k .. " = "
    else key = "[" .. show(k, depth + 1) .. "] = " end
    parts[#parts + 1] = key .. show(v[k], depth + 1)
    if #parts > 20 then parts[#parts + 1] = "..." break end
  end
  return "{" .. table.concat(parts, ", ") .. "}"
end
M.show = show

local function fail(message, expected, actual, note)
  local file, line = caller()
  if note then message = tostring(note) .. ": " .. message end
  error(setmetatable({ message = message, file = file, line = line,
    expected = expected, actual = actual }, Failure), 0)
end

-- the first place two values differ ("" when they are equal), for deep `eq`
local function diff(a, b, path, seen)
  if a == b then return nil end
  if type(a) ~= "table" or type(b) ~= "table" then
    return path, a, b
  end
  seen = seen or {}
  if seen[a] == b then return nil end
  seen[a] = b
  for k, v in pairs(b) do
    local p, x, y = diff(a[k], v, path .. (type(k) == "string" and ("." .. k) or ("[" .. show(k) .. "]")), seen)
    if p then return p, x, y end
  end
  for k, v in pairs(a) do
    if b[k] == nil then
      return path .. (type(k) == "string" and ("." .. k) or ("[" .. show(k) .. "]")), v, nil
    end
  end
  return nil
end

function M.eq(actual, expected, note)
  local p, x, y = diff(actual, expected, "")
  if p == nil then return true end
  if p == "" then
    fail(("expected %s, got %s"):format(show(expected), show(actual)), show(expected), show(actual), note)
  end
  fail(("at %s: expected %s, got %s"):format(p, show(y), show(x)), show(expected), show(actual), note)
end

function M.neq(actual, unexpected, note)
  if diff(actual, unexpected, "") == nil then
    fail(("expected a value other than %s"):format(show(unexpected)), "not " .. show(unexpected), show(actual), note)
  end
  return true
end

function M.ok(v, note)
  if not v then fail(("expected a true value, got %s"):format(show(v)), "truthy", show(v), note) end
  return v
end

function M.fail(note)
  fail(tostring(note or "failed"))
end

local function is(kind)
  return function(v, note)
    if type(v) ~= kind then
      fail(("expected a %s, got %s (%s)"):format(kind, show(v), type(v)), kind, type(v), note)
    end
    return v
  end
end
M.is_string, M.is_number, M.is_table = is("string"), is("number"), is("table")
M.is_function, M.is_boolean = is("function"), is("boolean")

function M.is_nil(v, note)
  if v ~= nil then fail(("expected nil, got %s"):format(show(v)), "nil", show(v), note) end
  return true
end

function M.not_nil(v, note)
  if v == nil then fail("expected a value, got nil", "not nil", "nil", note) end
  return v
end

function M.is_true(v, note)
  if v ~= true then fail(("expected true, got %s"):format(show(v)), "true", show(v), note) end
  return true
end

function M.is_false(v, note)
  if v ~= false then fail(("expected false, got %s"):format(show(v)), "false", show(v), note) end
  return true
end

function M.contains(haystack, needle, note)
  if type(haystack) == "string" then
    if haystack:find(tostring(needle), 1, true) then return true end
  elseif type(haystack) == "table" then
    for _, v in pairs(haystack) do
      if diff(v, needle, "") == nil then return true end
    end
  end
  fail(("expected %s to contain %s"):format(show(haystack), show(needle)), "contains " .. show(needle), show(haystack), note)
end

function M.matches(s, pattern, note)
  if type(s) ~= "string" or not s:match(pattern) then
    fail(("expected %s to match %q"):format(show(s), pattern), "matches " .. pattern, show(s), note)
  end
  return true
end

function M.has_key(t, key, note)
  if type(t) ~= "table" or t[key] == nil then
    fail(("expected a key %s in %s"):format(show(key), show(t)), "key " .. show(key), show(t), note)
  end
  return t[key]
end

function M.len(v, n, note)
  local got = (type(v) == "string" or type(v) == "table") and #v or nil
  if got ~= n then
    fail(("expected length %s, got %s"):format(tostring(n), tostring(got)), tostring(n), tostring(got), note)
  end
  return true
end

local function compare(name, op, test)
  M[name] = function(a, b, note)
    if type(a) ~= type(b) or not (type(a) == "number" or type(a) == "string") or not test(a, b) then
      fail(("expected %s %s %s"):format(show(a), op, show(b)), op .. " " .. show(b), show(a), note)
    end
    return true
  end
end
compare("gt", ">", function(a, b) return a > b end)
compare("gte", ">=", function(a, b) return a >= b end)
compare("lt", "<", function(a, b) return a < b end)
compare("lte", "<=", function(a, b) return a <= b end)

-- `throws(fn, msg?)`: fn must raise; returns the error (en/framework/testing.md)
function M.throws(fn, note)
  local ok, err = pcall(fn)
  if ok then fail("expected an error, none was raised", "an error", "no error", note) end
  return err
end

-- `has_error(val, err, msg?)`: val is nil and err is not (a call that failed); with one
-- argument, that argument is the error
function M.has_error(...)
  local n = select("#", ...)
  if n <= 1 then
    local err = ...
    if err == nil then fail("expected an error, got none", "an error", "nil", nil) end
    return err
  end
  local val, err, note = ...
  if val ~= nil then
    fail(("expected nil and an error, got the value %s"):format(show(val)), "nil", show(val), note)
  end
  if err == nil then fail("expected an error, got none", "an error", "nil", note) end
  return err
end

-- `no_error(result, err)`: the call succeeded (err is nil); returns the result. With one
-- argument, it fails only when that is an error object (`errors.new`, a call's error)
function M.no_error(...)
  local n = select("#", ...)
  local result, err, note = ...
  if n == 1 and type(result) == "userdata" and pcall(function() return result:kind() end) then
    result, err = nil, result
  end
  if err ~= nil then fail(("expected no error, got %s"):format(tostring(err)), "no error", tostring(err), note) end
  return result
end

-- mocks (en/framework/testing.md, "Mocking"): replaced for one case, restored after it.
-- A global path (`"process.send"`) is mocked in the test's own globals: the first table
-- of the path is shadowed there by a copy that reads through to the original, so the
-- shared, read-only module tables stay as they are for every other process.
local mocks = {}
local run_env -- the globals of the test running now

local function shadow(tbl)
  return setmetatable({}, { __index = tbl, __pairs = function() return next, tbl, nil end })
end

local function mock_path(path, replacement, level)
  if type(path) ~= "string" or not path:find("%.") then
    error("test.mock: expected \"object.field\" (a global path) and a replacement", level)
  end
  local env = run_env
  if type(env) ~= "table" then error("test.mock: only inside a test", level) end
  local parts = {}
  for part in path:gmatch("[^.]+") do parts[#parts + 1] = part end
  local root = parts[1]
  local entry = { path = path, env = env, root = root, had = rawget(env, root) }
  local top = env[root]
  if type(top) ~= "table" then error(("test.mock: %s is not a table"):format(root), level) end
  local copy = shadow(top)
  rawset(env, root, copy)
  local at = copy
  for i = 2, #parts - 1 do
    local inner = at[parts[i]]
    if type(inner) ~= "table" then
      rawset(env, root, entry.had)
      error(("test.mock: %s is not a table"):format(table.concat(parts, ".", 1, i)), level)
    end
    local c = shadow(inner)
    rawset(at, parts[i], c)
    at = c
  end
  rawset(at, parts[#parts], replacement)
  mocks[#mocks + 1] = entry
  return replacement
end

local function undo(m)
  if m.env then rawset(m.env, m.root, m.had) else rawset(m.t, m.key, m.value) end
end

-- `mock("object.field", replacement)`; also warden's older `mock(table, key, replacement)`
-- for a table of the test's own
function M.mock(t, key, replacement)
  if type(t) == "string" then return mock_path(t, key, 3) end
  if type(t) ~= "table" then error("test.mock: expected \"object.field\" and a replacement", 2) end
  -- a global module table is mocked through its path, never in place
  if run_env then
    for name, v in pairs(run_env) do
      if v == t and type(name) == "string" then return mock_path(name .. "." .. key, replacement, 3) end
    end
    for _, name in ipairs({ "string", "table", "math", "os", "utf8", "coroutine", "process",
        "channel", "errors", "payload" }) do
      if run_env[name] == t then return mock_path(name .. "." .. key, replacement, 3) end
    end
  end
  if getmetatable(t) == false then
    error("test.mock: a shared read-only table; mock it by its global path (\"module.field\")", 2)
  end
  mocks[#mocks + 1] = { t = t, key = key, value = rawget(t, key) }
  rawset(t, key, replacement)
  return replacement
end

-- `mock_process("field", replacement)`: `mock("process.field", replacement)`
function M.mock_process(field, replacement)
  return mock_path("process." .. tostring(field), replacement, 3)
end

-- `restore_mock("object.field")`: undoes the mocks of that path (the latest first)
function M.restore_mock(path)
  for i = #mocks, 1, -1 do
    local m = mocks[i]
    if m.path == path then
      undo(m)
      table.remove(mocks, i)
    end
  end
end

local function restore_mocks()
  for i = #mocks, 1, -1 do
    undo(mocks[i])
    mocks[i] = nil
  end
end

-- `restore_all_mocks()`
M.restore_all_mocks = restore_mocks

-- supervision helpers: trees and services fresh for the test (the runner stops them
-- after it), faults, waits with a deadline, the trees' log (since the case began)

-- `start(id)`: starts a service (after what it requires) or a supervisor on its own
function M.start(id, note)
  local ok, err = h.start(id)
  if not ok then fail(("cannot start %s: %s"):format(id, tostring(err)), nil, nil, note) end
  return true
end

-- `stop(id)`: stops a service or a supervisor `start` started
function M.stop(id, note)
  local ok, err = h.stop(id)
  if not ok then fail(("cannot stop %s: %s"):format(id, tostring(err)), nil, nil, note) end
  return true
end

-- `kill(pid)`: terminates a process (an abnormal exit, `terminated`)
function M.kill(pid, note)
  if type(pid) ~= "string" then fail(("kill: expected a pid, got %s"):format(show(pid)), nil, nil, note) end
  local ok, err = h.exit(pid, nil)
  if not ok then fail(("cannot kill %s: %s"):format(tostring(pid), tostring(err)), nil, nil, note) end
  return true
end

-- `exit(pid, reason)`: terminates a process with that exit reason (Erlang's exit/2)
function M.exit(pid, reason, note)
  if type(pid) ~= "string" then fail(("exit: expected a pid, got %s"):format(show(pid)), nil, nil, note) end
  local ok, err = h.exit(pid, tostring(reason))
  if not ok then fail(("cannot stop %s: %s"):format(tostring(pid), tostring(err)), nil, nil, note) end
  return true
end

-- `kill_tree(tree)`: kills a running supervisor and its whole subtree (its parent
-- restarts it)
function M.kill_tree(tree, note)
  local ok, err = supervisor.kill(tree)
  if not ok then fail(("cannot kill %s: %s"):format(tree, tostring(err)), nil, nil, note) end
  return true
end

-- `wait_until(pred [, timeout_ms])`: polls pred until it gives a true value, which it
-- returns; fails at the deadline (default 5 s)
function M.wait_until(pred, timeout, note)
  local deadline = h.now() + (timeout or 5000)
  while true do
    local v = pred()
    if v then return v end
    if h.now() >= deadline then
      fail(("condition not met within %d ms"):format(timeout or 5000), "true", tostring(v), note)
    end
    time.sleep(5 * time.MILLISECOND)
  end
end

local function child_pid(tree, child)
  for _, c in ipairs(supervisor.which_children(tree) or {}) do
    if c.id == child then return c.pid end
  end
end
M.child_pid = child_pid

-- `wait_restart(tree, child, old_pid [, timeout_ms])`: waits until the child runs with
-- another pid; returns the new pid
function M.wait_restart(tree, child, old, timeout, note)
  local deadline = h.now() + (timeout or 5000)
  while true do
    local p = child_pid(tree, child)
    if p and p ~= old then return p end
    if h.now() >= deadline then
      fail(("child %s of %s was not restarted within %d ms"):format(child, tree, timeout or 5000),
        "a new pid", tostring(p), note)
    end
    time.sleep(5 * time.MILLISECOND)
  end
end

-- `wait_state(service, state [, timeout_ms])`: waits until the service is in that state
function M.wait_state(service, state, timeout, note)
  local deadline = h.now() + (timeout or 5000)
  while true do
    local s = supervisor.state(service)
    if s == state then return true end
    if h.now() >= deadline then
      fail(("service %s did not reach %s within %d ms"):format(service, state, timeout or 5000),
        state, tostring(s), note)
    end
    time.sleep(5 * time.MILLISECOND)
  end
end

-- where the trees' log stood when the running case began
local log_mark = 0

-- `tree_log([tree])`: what the trees did since the case began (`since_start = true` in
-- the options: since the runtime started), in order: `{tree, child, event, pid, reason}`
-- with event `start`, `exit`, `stop` or `restart`
function M.tree_log(tree, options)
  local out = {}
  local from = (options and options.since_start) and 0 or log_mark
  for i, e in ipairs(h.log()) do
    if i > from and (tree == nil or e.tree == tree) then out[#out + 1] = e end
  end
  return out
end

-- `events([tree])`: the same as lines `"child event"`, easy to compare with `eq`
function M.events(tree, options)
  local out = {}
  for _, e in ipairs(M.tree_log(tree, options)) do out[#out + 1] = e.child .. " " .. e.event end
  return out
end

-- `restarts(tree [, child])`: restarts the tree made (of that child) since the case began
function M.restarts(tree, child)
  local n = 0
  for _, e in ipairs(M.tree_log(tree)) do
    if e.event == "restart" and (child == nil or e.child == child) then n = n + 1 end
  end
  return n
end

-- declaring: the suite being defined
local current

local function new_suite(name, parent)
  return { name = name, parent = parent, items = {}, before_all = {}, after_all = {},
    before_each = {}, after_each = {} }
end

local function in_suite(what)
  if not current then error(("test.%s: only inside a define function given to run_cases"):format(what), 3) end
  return current
end

function M.describe(name, fn)
  local parent = in_suite("describe")
  local s = new_suite(tostring(name), parent)
  table.insert(parent.items, { suite = s })
  current = s
  local ok, err = pcall(fn)
  current = parent
  if not ok then error(err, 0) end
end
M.spec, M.context = M.describe, M.describe

function M.it(name, fn)
  table.insert(in_suite("it").items, { name = tostring(name), fn = fn })
end

function M.it_skip(name, fn)
  table.insert(in_suite("it_skip").items, { name = tostring(name), fn = fn, skip = true })
end

for _, hook in ipairs({ "before_all", "after_all", "before_each", "after_each" }) do
  M[hook] = function(fn) table.insert(in_suite(hook)[hook], fn) end
end

local function full_name(suite, name)
  local parts = { name }
  while suite and suite.name do
    table.insert(parts, 1, suite.name)
    suite = suite.parent
  end
  return table.concat(parts, " > ")
end

local function list_cases(suite, out)
  for _, item in ipairs(suite.items) do
    if item.suite then list_cases(item.suite, out) else out[#out + 1] = full_name(suite, item.name) end
  end
  return out
end

local function describe_error(err)
  if getmetatable(err) == Failure then return err end
  local message = tostring(err)
  local file, line = message:match("^([^:]+%.lua):(%d+): ")
  return { message = message, file = file, line = tonumber(line), raised = true }
end

local function run_hooks(suite, which, outer_first)
  local chain = {}
  local s = suite
  while s do
    table.insert(chain, outer_first and 1 or #chain + 1, s)
    s = s.parent
  end
  for _, st in ipairs(chain) do
    for _, h in ipairs(st[which]) do
      local ok, err = pcall(h)
      if not ok then return describe_error(err) end
    end
  end
end

local function run_suite(suite, results, broken)
  if not broken then
    for _, h in ipairs(suite.before_all) do
      local ok, err = pcall(h)
      if not ok then
        broken = describe_error(err)
        broken.message = "before_all: " .. broken.message
        break
      end
    end
  end
  for _, item in ipairs(suite.items) do
    if item.suite then
      run_suite(item.suite, results, broken)
    else
      local name = full_name(suite, item.name)
      local r = { name = name, status = "passed" }
      if report then report({ event = "start", name = name }) end
      log_mark = #h.log()
      if item.skip then
        r.status = "skipped"
      elseif broken then
        r.status, r.message, r.file, r.line = "failed", broken.message, broken.file, broken.line
      else
        local e = run_hooks(suite, "before_each", true)
        if e then
          e.message = "before_each: " .. e.message
        else
          local ok, err = pcall(item.fn)
          if not ok then e = describe_error(err) end
        end
        local after = run_hooks(suite, "after_each", false)
        if after and not e then
          after.message = "after_each: " .. after.message
          e = after
        end
        restore_mocks()
        if e then
          r.status, r.message, r.file, r.line = "failed", e.message, e.file, e.line
          r.expected, r.actual = e.expected, e.actual
        end
      end
      table.insert(results, r)
      if report then report({ event = "done", name = r.name, status = r.status, message = r.message,
        file = r.file, line = r.line, expected = r.expected, actual = r.actual }) end
    end
  end
  if not broken then
    for _, h in ipairs(suite.after_all) do pcall(h) end
  end
end

-- the globals a define function may use without `test.`
local GLOBALS = { "describe", "spec", "context", "it", "it_skip", "before_all", "after_all",
  "before_each", "after_each" }

local function run(define)
  local root = new_suite(nil, nil)
  -- define's globals (its _ENV) get describe, it, ... as Wippy's tests use them
  local env = env_of(define)
  if type(env) == "table" then
    for _, g in ipairs(GLOBALS) do
      if rawget(env, g) == nil then rawset(env, g, M[g]) end
    end
  end
  current = root
  local ok, err = pcall(define)
  current = nil
  if not ok then error(err, 0) end
  if report then report({ event = "plan", cases = list_cases(root, {}) }) end
  local results = {}
  local outer_env = run_env
  run_env = type(env) == "table" and env or nil
  local ran, why = pcall(run_suite, root, results, nil)
  restore_mocks()
  run_env = outer_env
  if not ran then error(why, 0) end
  local summary = { passed = 0, failed = 0, skipped = 0, cases = results }
  for _, r in ipairs(results) do summary[r.status] = summary[r.status] + 1 end
  -- en/framework/testing.md reads `result.failed_tests`; the others by the same pattern
  summary.passed_tests, summary.failed_tests = summary.passed, summary.failed
  summary.skipped_tests, summary.total_tests = summary.skipped, #results
  return summary
end

-- `run_cases(define)`: the function to use as the test entry's method (or to return from
-- it); running it declares the cases with `define`, runs them, and returns
-- `{passed, failed, skipped, cases}` and Wippy's `failed_tests` (with `passed_tests`,
-- `skipped_tests`, `total_tests`)
function M.run_cases(define)
  if type(define) ~= "function" then error("test.run_cases: expected a function that declares the cases", 2) end
  local f = function() return run(define) end
  runners[f] = true
  return f
end

return M
