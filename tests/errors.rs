//! The `errors` global and error values: new, wrap, is, kinds, retryable, details, call
//! stacks, and error objects used where Lua expects a string.

mod common;

use common::{lua_value, App};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_are_made_wrapped_and_recognised_by_kind() {
    let v = lua_value(
        r#"
local function find_user(id)
  if id ~= 1 then
    return nil, errors.new({message = "user " .. id .. " not found", kind = errors.NOT_FOUND,
      retryable = false, details = {id = id}})
  end
  return {id = 1}
end
return { main = function()
  local _, e = find_user(7)
  local w = errors.wrap(e, "loading profile")
  local plain = errors.new("plain failure")
  local from_string = errors.wrap("socket closed", "sending")
  -- en/lua/core/errors.md: `{thread, frames}`
  local stack = errors.call_stack(e)
  local frames = stack.frames
  return {
    kind = e:kind(), message = e:message(), retryable = e:retryable(), details = e:details(),
    text = tostring(e), concat = "got: " .. e,
    wrapped = tostring(w), wrapped_kind = w:kind(), cause = tostring(w:unwrap()),
    is_nf = errors.is(w, errors.NOT_FOUND), is_inv = errors.is(w, errors.INVALID),
    is_same = errors.is(w, e), is_str = errors.is("text", errors.NOT_FOUND),
    plain_kind = plain:kind(), plain_retry = plain:retryable() == nil,
    from_string = tostring(from_string), from_string_kind = from_string:kind(),
    wrap_nil = errors.wrap(nil, "x") == nil,
    const = errors.TIMEOUT,
    top_frame = frames[1] and frames[1].name, top_line = frames[1] and frames[1].line,
    thread = stack.thread == process.pid(), no_stack = errors.call_stack("text") == nil,
    stack_has_line = string.find(e:stack(), "main.lua:4", 1, true) ~= nil,
    bad_kind = select(2, pcall(errors.new, {kind = "NOPE"})),
  }
end }
"#,
    )
    .await;
    assert_eq!(v["kind"], "NotFound");
    assert_eq!(v["message"], "user 7 not found");
    assert_eq!(v["retryable"], false);
    assert_eq!(v["details"], json!({"id": 7}));
    assert_eq!(v["text"], "user 7 not found");
    assert_eq!(v["concat"], "got: user 7 not found");
    assert_eq!(v["wrapped"], "loading profile: user 7 not found");
    assert_eq!(v["wrapped_kind"], "NotFound");
    assert_eq!(v["cause"], "user 7 not found");
    assert_eq!(v["is_nf"], true);
    assert_eq!(v["is_inv"], false);
    assert_eq!(v["is_same"], true);
    assert_eq!(v["is_str"], false);
    assert_eq!(v["plain_kind"], "");
    assert_eq!(v["plain_retry"], true);
    assert_eq!(v["from_string"], "sending: socket closed");
    assert_eq!(v["from_string_kind"], "");
    assert_eq!(v["wrap_nil"], true);
    assert_eq!(v["const"], "Timeout");
    assert_eq!(v["thread"], true);
    assert_eq!(v["no_stack"], true);
    assert_eq!(v["top_frame"], "find_user");
    assert_eq!(v["top_line"], 4);
    assert_eq!(v["stack_has_line"], true);
    assert!(
        v["bad_kind"]
            .as_str()
            .unwrap()
            .contains("unknown kind \"NOPE\""),
        "{v}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn error_values_of_calls_work_as_strings_and_keep_their_kind() {
    let v = App::new()
        .func(
            "refuse",
            "return { main = function() return nil, errors.new({message = 'quota exhausted', kind = errors.RATE_LIMITED}) end }",
            None,
        )
        .lua(
            "main",
            r#"
local funcs = require("funcs")
return { main = function()
  local _, missing = funcs.call("app:nothing")
  local _, refused = funcs.call("app:refuse")
  local _, bad_send = process.send("{local|999999}", "x", 1)
  return {
    found = string.find(missing, "not found", 1, true) ~= nil,
    matched = string.match(refused, "quota (%a+)"),
    upper = string.upper(refused),
    len = string.len(refused),
    kind = refused:kind(),
    missing_kind = missing:kind(), is_nf = errors.is(missing, errors.NOT_FOUND),
    send_err = bad_send and string.find(bad_send, "not running", 1, true) ~= nil,
    fmt = string.format("%s!", refused),
  }
end }
"#,
        )
        .value("main")
        .await;
    assert_eq!(
        v,
        json!({
            "found": true, "matched": "exhausted", "upper": "QUOTA EXHAUSTED", "len": 15,
            "kind": "RateLimited", "missing_kind": "NotFound", "is_nf": true,
            "send_err": true, "fmt": "quota exhausted!",
        })
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn error_objects_and_payloads_cross_as_their_message_and_data() {
    let v = App::new()
        .lua(
            "echo",
            "return { main = function() local m = process.inbox():receive() return m:payload():data() end }",
        )
        .func("id", "return { main = function(x) return x end }", None)
        .lua(
            "main",
            r#"
local funcs = require("funcs")
return { main = function()
  local e = errors.new({ message = "disk full", kind = errors.UNAVAILABLE })
  local child = process.spawn_monitored("app:echo", "app:host")
  process.send(child, "x", { err = e, p = payload.new({ 1, 2 }) })
  local ev = process.events():receive()
  return { returned = e, via_call = funcs.call("app:id", e), via_send = ev.result.value }
end }
"#,
        )
        .value("main")
        .await;
    assert_eq!(
        v,
        json!({
            "returned": "disk full", "via_call": "disk full",
            "via_send": {"err": "disk full", "p": [1, 2]},
        })
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exit_events_carry_error_objects_with_their_kind() {
    let v = App::new()
        .lua(
            "missing",
            "return { main = function() return nil, errors.new({ message = 'no such user', kind = errors.NOT_FOUND }) end }",
        )
        .lua("raises", "return { main = function() error('broken invariant', 0) end }")
        .lua("waits", "return { main = function() process.inbox():receive() end }")
        .lua(
            "main",
            r#"
local funcs = require("funcs")
return { main = function()
  local out = {}
  local events = process.events()
  for _, name in ipairs({ "missing", "raises", "waits" }) do
    local pid = process.spawn_monitored("app:" .. name, "app:host")
    if name == "waits" then process.terminate(pid) end
    local e = events:receive().result.error
    out[name] = { kind = e:kind(), text = tostring(e),
                  found = string.find(e, "n", 1, true) ~= nil, is = errors.is(e, e:kind()) }
  end
  process.monitor("{local|999999}")
  out.gone = events:receive().result.error:kind()
  local _, call_err = funcs.call("app:missing")
  out.call = { kind = call_err:kind(), text = tostring(call_err) }
  local _, exec_err = process.exec("app:missing", "app:host")
  out.exec = exec_err:kind()
  return out
end }
"#,
        )
        .value("main")
        .await;
    assert_eq!(
        v,
        json!({
            "missing": {"kind": "NotFound", "text": "no such user", "found": true, "is": true},
            "raises": {"kind": "Internal", "text": "broken invariant", "found": true, "is": true},
            "waits": {"kind": "Canceled", "text": "terminated", "found": true, "is": true},
            "gone": "NotFound",
            "call": {"kind": "NotFound", "text": "no such user"},
            "exec": "NotFound",
        })
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_raised_error_object_keeps_its_kind() {
    let v = App::new()
        .lua(
            "raiser",
            "return { main = function() error(errors.new({ message = 'taken', kind = errors.CONFLICT })) end }",
        )
        .func(
            "fraiser",
            "return { main = function() error(errors.new({ message = 'no quota', kind = errors.RATE_LIMITED })) end }",
            None,
        )
        .func("plain", "return { main = function() error('plain text', 0) end }", None)
        .lua(
            "main",
            r#"
local funcs = require("funcs")
return { main = function()
  process.spawn_monitored("app:raiser", "app:host")
  local e = process.events():receive().result.error
  local _, fe = funcs.call("app:fraiser")
  local _, pe = funcs.call("app:plain")
  return { exit = { e:kind(), tostring(e) }, call = { fe:kind(), tostring(fe) },
           plain = { pe:kind(), tostring(pe) } }
end }
"#,
        )
        .value("main")
        .await;
    assert_eq!(
        v,
        json!({
            "exit": ["Conflict", "taken"],
            "call": ["RateLimited", "no quota"],
            "plain": ["Internal", "plain text"],
        })
    );
}

/// Issue 35 (Wippy's runtime marks the errors its modules raise `retryable = false`, and
/// en/lua/core/errors.md lets `retryable()` be nil where nothing was said): errors from the
/// runtime's modules read false; one made with `errors.new` without `retryable` reads nil.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runtime_errors_are_not_retryable_and_made_ones_say_what_they_say() {
    let v = common::lua_value(
        r#"
local json, funcs, ctx, registry = require("json"), require("funcs"), require("ctx"), require("registry")
return { main = function()
  local _, j = json.decode("{")
  local _, f = funcs.call("app:nope")
  local _, c = ctx.get("missing")
  local _, r = registry.get("app:nope")
  local _, s = process.send("{local|999999}", "x", 1)
  return {
    runtime = { j:retryable(), f:retryable(), c:retryable(), r:retryable(), s:retryable() },
    made = errors.new("x"):retryable() == nil,
    made_table = errors.new({ message = "x" }):retryable() == nil,
    said = errors.new({ message = "x", retryable = true }):retryable(),
    wrapped = errors.wrap(j, "ctx"):retryable(),
  }
end }
"#,
    )
    .await;
    assert_eq!(
        v,
        json!({"runtime": [false, false, false, false, false], "made": true, "made_table": true,
               "said": true, "wrapped": false})
    );
}

/// The kind constants are the runtime's values, not their names (runtime/lua/modules/
/// errors.md, api/error/error.go: `errors.NOT_FOUND == "NotFound"`, `errors.UNKNOWN ==
/// ""`), `errors.new(text)` is UNKNOWN (en/lua/core/errors.md, "Creating Errors"), and a
/// wrapper keeps the cause's kind, retryable and details while its message is the context
/// ("Wrapping Errors"); its text names both.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kinds_are_the_runtimes_values_and_a_wrapper_keeps_the_cause() {
    let v = lua_value(
        r#"
return { main = function()
  local names = {"NOT_FOUND", "ALREADY_EXISTS", "INVALID", "PERMISSION_DENIED", "UNAVAILABLE",
    "INTERNAL", "CANCELED", "CONFLICT", "TIMEOUT", "RATE_LIMITED", "UNKNOWN"}
  local values = {}
  for _, n in ipairs(names) do values[n] = errors[n] end
  local cause = errors.new({message = "row 7 missing", kind = errors.NOT_FOUND,
    retryable = true, details = {row = 7}})
  local w = errors.wrap(cause, "loading users")
  local _, missing = require("ctx").get("nothing")
  return {
    values = values,
    plain = errors.new("x"):kind() == errors.UNKNOWN,
    by_value = errors.new({message = "m", kind = "Conflict"}):kind(),
    message = w:message(), text = tostring(w), kind = w:kind(), retryable = w:retryable(),
    details = w:details(), is = errors.is(w, errors.NOT_FOUND),
    runtime_kind = missing:kind() == errors.NOT_FOUND,
  }
end }
"#,
    )
    .await;
    assert_eq!(
        v["values"],
        json!({"NOT_FOUND": "NotFound", "ALREADY_EXISTS": "AlreadyExists", "INVALID": "Invalid",
               "PERMISSION_DENIED": "PermissionDenied", "UNAVAILABLE": "Unavailable",
               "INTERNAL": "Internal", "CANCELED": "Canceled", "CONFLICT": "Conflict",
               "TIMEOUT": "Timeout", "RATE_LIMITED": "RateLimited", "UNKNOWN": ""})
    );
    assert_eq!(v["plain"], true);
    assert_eq!(v["by_value"], "Conflict");
    assert_eq!(v["message"], "loading users");
    assert_eq!(v["text"], "loading users: row 7 missing");
    assert_eq!(v["kind"], "NotFound");
    assert_eq!(v["retryable"], true);
    assert_eq!(v["details"], json!({"row": 7}));
    assert_eq!(v["is"], true);
    assert_eq!(v["runtime_kind"], true);
}
