//! The `security` module: actors and scopes, carried by calls made with `with_actor` /
//! `with_scope`, and the policies that decide what an actor in a scope may do.

mod common;

use common::ExecWithin;

use common::App;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn actors_and_scopes_travel_with_calls() {
    let v = App::new()
        // the scope below allows the call (with an actor and a scope, access is
        // deny-by-default: en/concepts/security-model.md)
        .entry("  - {name: read, kind: security.policy, policy: {actions: funcs.call, resources: \"app:whoami\", effect: allow}}\n  - {name: write, kind: security.policy, policy: {actions: \"*.write\", resources: \"*\", effect: allow}}\n")
        .func(
            "whoami",
            r#"
local security = require("security")
return { main = function()
  local a, s = security.actor(), security.scope()
  return { actor = a and a:id(), scope = s and s:policies() }
end }
"#,
            None,
        )
        .lua(
            "main",
            r#"
local security = require("security")
local funcs = require("funcs")
return { main = function()
  local me = security.actor()
  local admin = security.new_actor("user:ada", { role = "admin" })
  local scope = security.new_scope({ "app:read" }):with("app:write"):with("app:read")
  return {
    own = me:id() == process.pid(), no_scope = security.scope() == nil,
    meta = admin:meta(), id = admin:id(),
    policies = scope:policies(), has = scope:contains("app:write"),
    dropped = scope:without("app:read"):policies(),
    plain = funcs.call("app:whoami"),
    as_admin = funcs.new():with_actor(admin):with_scope(scope):call("app:whoami"),
  }
end }
"#,
        )
        .value("main")
        .await;
    let own_pid = v["plain"]["actor"].as_str().unwrap().to_string();
    assert!(own_pid.starts_with('{'), "{v}");
    assert_eq!(
        v,
        json!({
            "own": true, "no_scope": true, "meta": {"role": "admin"}, "id": "user:ada",
            "policies": ["app:read", "app:write"], "has": true, "dropped": ["app:write"],
            "plain": {"actor": own_pid},
            "as_admin": {"actor": "user:ada", "scope": ["app:read", "app:write"]},
        })
    );
}

const POLICIES: &str = r#"  - name: admin_all
    kind: security.policy
    policy:
      actions: "*"
      resources: "*"
      effect: allow
      conditions:
        - {field: actor.meta.role, operator: eq, value: admin}
    groups: [staff]
  - name: read_public
    kind: security.policy
    policy: {actions: funcs.call, resources: "app:public_*", effect: allow}
    groups: [staff, guests]
  - name: no_secret
    kind: security.policy
    policy:
      actions: funcs.call
      resources: app:secret
      effect: deny
      conditions:
        - {field: actor.meta.clearance, operator: lt, value: 3}
    groups: [staff]
  - name: auditors_read
    kind: security.policy.expr
    policy:
      actions: funcs.call
      resources: "*"
      effect: allow
      expression: actor.meta.role == "auditor" && actor.meta.clearance >= 5
    groups: [auditors]
"#;

/// en/system/security.md and en/lua/security/security.md: `security.policy` entries,
/// evaluated as "Policy Evaluation" says (any deny denies, an allow without a deny allows,
/// nothing that applies is undefined), `named_scope`, `policy`, `scope:evaluate`,
/// `security.can`; with an actor and a scope access is deny-by-default, without a scope
/// it is allowed; the guarded operations refuse with PERMISSION_DENIED before anything
/// runs: `funcs.call` (en/lua/core/funcs.md), `process.spawn` + `process.host`
/// (en/lua/core/process.md), `registry.apply` (en/lua/core/registry.md); a child under
/// another scope needs `process.security`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn policies_decide_what_an_actor_in_a_scope_may_do() {
    let v = App::new()
        .entry(POLICIES)
        .func("public_info", "return { main = function() return 'public' end }", None)
        .func("secret", "return { main = function() return 'secret' end }", None)
        .lua("idle", "return { main = function() end }")
        .func(
            "public_probe",
            r#"
local security = require("security")
local funcs = require("funcs")
local registry = require("registry")
return { main = function()
  local _, nested = funcs.call("app:secret")
  local _, spawn_err = process.spawn("app:idle", "app:host")
  local _, apply_err = registry.changes():create({id = "app:x", kind = "registry.entry", data = {}}):apply()
  local a = security.actor()
  return { actor = a:id(), role = a:meta().role,
    can_public = security.can("funcs.call", "app:public_info"),
    can_secret = security.can("funcs.call", "app:secret"),
    nested = nested:kind(), nested_msg = nested:message(),
    spawn = spawn_err and spawn_err:kind(), apply = apply_err and apply_err:kind(),
    public = funcs.call("app:public_info") }
end }
"#,
            None,
        )
        .lua(
            "main",
            r#"
local security = require("security")
local funcs = require("funcs")
return { main = function()
  local guest = security.new_actor("user:1", {role = "guest", clearance = 1})
  local boss = security.new_actor("user:0", {role = "admin", clearance = 5})
  local low_admin = security.new_actor("user:2", {role = "admin", clearance = 1})
  local guests = security.named_scope("app:guests")
  local staff = security.named_scope("app:staff")
  local function as(a, s) return funcs.new():with_actor(a):with_scope(s) end
  local _, denied = as(guest, guests):call("app:secret")
  local _, low = as(low_admin, staff):call("app:secret")
  local pol = security.policy("app:admin_all")
  local _, missing = security.policy("app:nothing")
  local _, no_group = security.named_scope("app:nobody")
  local only_admin = security.new_scope():with(pol)
  local child, child_err = process.with_context({}):with_scope(guests):with_actor(guest):spawn("app:idle", "app:host")
  return {
    public = as(guest, guests):call("app:public_info"),
    denied = denied:kind(), denied_msg = denied:message(),
    boss = as(boss, staff):call("app:secret"),
    low = low:kind(),
    plain = funcs.call("app:secret"),
    probe = as(guest, guests):call("app:public_probe"),
    eval = { staff:evaluate(boss, "anything", "x"), staff:evaluate(guest, "anything", "x"),
             staff:evaluate(low_admin, "funcs.call", "app:secret"),
             only_admin:evaluate(boss, "funcs.call", "app:secret") },
    policies = #staff:policies(), missing = missing:kind(), no_group = no_group:kind(),
    own_can = security.can("funcs.call", "app:secret"),
    -- en/system/security.md, "Expression-Based Policy"
    auditor = as(security.new_actor("user:9", {role = "auditor", clearance = 5}),
      security.named_scope("app:auditors")):call("app:secret"),
    not_auditor = select(2, as(guest, security.named_scope("app:auditors")):call("app:secret")):kind(),
    child = child ~= nil and child_err == nil,
  }
end }
"#,
        )
        .value("main")
        .await;
    assert_eq!(v["public"], "public", "{v}");
    assert_eq!(v["denied"], "PermissionDenied", "{v}");
    assert_eq!(
        v["denied_msg"],
        "permission denied: funcs.call on app:secret (actor user:1, no policy allows it)"
    );
    assert_eq!(v["boss"], "secret");
    assert_eq!(
        v["low"], "PermissionDenied",
        "a deny wins over an allow: {v}"
    );
    assert_eq!(v["plain"], "secret", "no scope: permissive");
    assert_eq!(
        v["probe"],
        json!({"actor": "user:1", "role": "guest", "can_public": true, "can_secret": false,
               "nested": "PermissionDenied",
               "nested_msg": "permission denied: funcs.call on app:secret (actor user:1, no policy allows it)",
               "spawn": "PermissionDenied", "apply": "PermissionDenied", "public": "public"}),
        "{v}"
    );
    assert_eq!(v["eval"], json!(["allow", "undefined", "deny", "allow"]));
    assert_eq!(v["policies"], 3);
    assert_eq!(v["missing"], "NotFound");
    assert_eq!(v["no_group"], "NotFound");
    assert_eq!(v["own_can"], true);
    assert_eq!(v["auditor"], "secret");
    assert_eq!(v["not_auditor"], "PermissionDenied");
    assert_eq!(v["child"], true, "the main process has no scope: {v}");
}

/// The other places the pages name a permission, under a scope that allows only some of
/// them: `process.send` / `process.terminate` on the target pid and
/// `process.registry.register` on the name (en/lua/core/process.md), `env.get` on the
/// variable and `get_all` filtered by it (en/lua/system/env.md), `events.send` on the
/// system (en/lua/core/events.md), `pg.open` on the scope (en/lua/core/pg.md),
/// `registry.get` on the entry, filtering `find` (en/lua/core/registry.md).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_guarded_operation_asks_the_scope_first() {
    let v = App::new()
        .entry(
            r#"  - name: limited
    kind: security.policy
    policy:
      actions: [funcs.call, env.get, registry.get, system.read]
      resources: ["app:probe", "PUBLIC_*", "app:probe*", "cpu"]
      effect: allow
    groups: [limited]
  - {name: os, kind: env.storage.os}
  - {name: PUBLIC_NAME, kind: env.variable, storage: os, default: "warden"}
  - {name: SECRET_KEY, kind: env.variable, storage: os, default: "hunter2"}
  - {name: groups, kind: pg.scope}
"#,
        )
        .lua(
            "idle",
            "return { main = function() process.inbox():receive() end }",
        )
        .func(
            "probe",
            r#"
local env = require("env")
local events = require("events")
local pg = require("pg")
local registry = require("registry")
return { main = function(target)
  local function kind(_, err) return err and err:kind() or "allowed" end
  local all = env.get_all()
  local found = {}
  for _, e in ipairs(registry.find({[".kind"] = "function.lua"})) do found[#found + 1] = e.id end
  return {
    send = kind(process.send(target, "hi")),
    terminate = kind(process.terminate(target)),
    register = kind(process.registry.register("mine")),
    public = env.get("PUBLIC_NAME"), secret = kind(env.get("SECRET_KEY")),
    all = {all.PUBLIC_NAME, all.SECRET_KEY == nil},
    events = kind(events.send("app", "ping", "/x", {})),
    pg = kind(pg.open("app:groups")),
    get_self = kind(registry.get("app:probe")), get_other = kind(registry.get("app:idle")),
    found = found,
    -- en/lua/system/system.md, "Permissions" (refused as INVALID, its "Errors" table)
    cpus = type(require("system").runtime.cpu_count()),
    memory = kind(require("system").memory.stats()),
  }
end }
"#,
            None,
        )
        .lua(
            "main",
            r#"
local security = require("security")
local funcs = require("funcs")
return { main = function()
  local idle = process.spawn("app:idle", "app:host")
  local who = security.new_actor("user:7", {})
  local limited = security.named_scope("app:limited")
  local r = funcs.new():with_actor(who):with_scope(limited):call("app:probe", idle)
  -- without a scope the same calls go through
  r.unscoped = funcs.call("app:probe", idle).send
  return r
end }
"#,
        )
        .value("main")
        .await;
    assert_eq!(
        v,
        json!({
            "send": "PermissionDenied", "terminate": "PermissionDenied",
            "register": "PermissionDenied",
            "public": "warden", "secret": "PermissionDenied",
            "all": ["warden", true],
            "events": "PermissionDenied", "pg": "PermissionDenied",
            "get_self": "allowed", "get_other": "PermissionDenied",
            "found": ["app:probe"],
            "cpus": "number", "memory": "Invalid",
            "unscoped": "allowed",
        })
    );
}

/// en/system/security.md, "Service-Level Security": a service's `lifecycle.security`
/// gives its process an actor and a scope (named policies and groups), so what it may do
/// is decided by them; a policy id that is no policy is a load error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_runs_with_the_actor_and_scope_of_its_lifecycle_security() {
    let v = App::new()
        .entry(POLICIES)
        .func("public_info", "return { main = function() return 'public' end }", None)
        .func("secret", "return { main = function() return 'secret' end }", None)
        .lua(
            "worker",
            r#"
local security = require("security")
local funcs = require("funcs")
return { main = function()
  process.registry.register("worker")
  local m = process.inbox():receive()
  local _, err = funcs.call("app:secret")
  process.send(m:payload():data(), "report", {
    actor = security.actor():id(), role = security.actor():meta().role,
    public = funcs.call("app:public_info"), secret = err and err:kind(),
  })
  process.inbox():receive()
end }
"#,
        )
        // what the worker needs beside the guests' group: its name and its reply
        .entry("  - {name: worker_ops, kind: security.policy, policy: {actions: [process.registry.register, process.send], resources: \"*\", effect: allow}}\n")
        .entry("  - name: svc\n    kind: process.service\n    process: worker\n    host: host\n    lifecycle:\n      auto_start: true\n      stop_timeout: 100ms\n      security:\n        actor: {id: \"service:worker\", meta: {role: worker}}\n        policies: [worker_ops]\n        groups: [guests]\n")
        .lua(
            "main",
            r#"
local time = require("time")
return { main = function()
  for _ = 1, 400 do
    if process.registry.lookup("worker") then break end
    time.sleep("5ms")
  end
  process.send("worker", "go", process.pid())
  return process.inbox():receive():payload():data()
end }
"#,
        )
        .value("main")
        .await;
    assert_eq!(
        v,
        json!({"actor": "service:worker", "role": "worker", "public": "public",
               "secret": "PermissionDenied"})
    );
}

/// Strict mode (en/concepts/security-model.md, "strict mode denies the incomplete case";
/// en/guides/configuration.md `security.strict_mode`; warden: `--security-strict`): code
/// with no actor and scope is refused what a policy guards, and a service started with
/// `lifecycle.security` still does what its policies allow. Without strict mode the same
/// code is allowed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn strict_mode_refuses_code_without_an_actor_and_scope() {
    let app = App::new()
        .entry("  - {name: callers, kind: security.policy, policy: {actions: \"*\", resources: \"*\", effect: allow}}\n")
        .func("f", "return { main = function() return 7 end }", None)
        .lua(
            "plain",
            r#"
local funcs = require("funcs")
return { main = function()
  local v, err = funcs.call("app:f")
  local ok, send_err = process.send(process.pid(), "x", 1)
  return { value = v, call = err and tostring(err), send = send_err and send_err:kind() }
end }
"#,
        )
        .lua(
            "worker",
            r#"
local funcs = require("funcs")
return { main = function()
  local v, err = funcs.call("app:f")
  process.registry.register("got_" .. tostring(v or err:kind()))
  process.events():receive()
end }
"#,
        )
        .entry("  - {name: svc, kind: process.service, process: worker, host: host, lifecycle: {auto_start: true, security: {actor: {id: \"svc:1\"}, policies: [callers]}}}\n");
    app.finish();
    for strict in [true, false] {
        let options = warden::runtime::Options {
            security_strict: strict,
            shutdown_grace: std::time::Duration::from_millis(200),
            ..Default::default()
        };
        let rt = warden::runtime::Runtime::start_with(
            warden::registry::load_dir(app.path()).unwrap(),
            options,
        )
        .await
        .unwrap();
        let exit = tokio::time::timeout(
            std::time::Duration::from_secs(30),
            rt.exec_within(&warden::registry::Id::new("app", "plain"), vec![]),
        )
        .await
        .unwrap()
        .unwrap();
        let v = match exit {
            warden::process::Exit::Normal(v) => warden::value::to_json(&v).unwrap(),
            other => panic!("{other:?}"),
        };
        if strict {
            assert_eq!(
                v,
                json!({
                    "call": "permission denied: funcs.call on app:f (no actor and scope, and the runtime is in strict mode)",
                    "send": "PermissionDenied",
                })
            );
        } else {
            assert_eq!(v, json!({"value": 7}));
        }
        let mut found = false;
        for _ in 0..500 {
            if rt.node().lookup("got_7").is_some() {
                found = true;
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        assert!(
            found,
            "the service under lifecycle.security did not call (strict: {strict})"
        );
        rt.shutdown().await;
    }
}
