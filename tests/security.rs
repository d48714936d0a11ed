//! The `security` module as far as the call context goes: actors and scopes, carried by
//! calls made with `with_actor` / `with_scope`.

mod common;

use common::App;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn actors_and_scopes_travel_with_calls() {
    let v = App::new()
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
