//! What a long-running node must not pay for: an exited process leaves no event
//! subscription and no timer task behind, and the control signals waiting for a process
//! are bounded. (Its own test binary: the timer count is node-wide and must not see the
//! timers of other tests.)

mod common;

use common::ExecWithin;

use common::App;
use std::time::Duration;
use warden::process::Exit;
use warden::registry::Id;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_exited_process_leaves_no_subscription_or_timer_behind_and_cancels_are_bounded() {
    let app = App::with_host(1, 4096)
        .lua(
            "subscriber",
            r#"
local events, time = require("events"), require("time")
return { main = function()
  local s = events.subscribe("quiet")
  local t, tk, a = time.timer("1h"), time.ticker("1h"), time.after("1h")
  return true
end }
"#,
        )
        .lua(
            "sleeper",
            r#"
local time = require("time")
return { main = function() time.sleep("1h") end }
"#,
        )
        .lua(
            "main",
            r#"
return { main = function()
  for _ = 1, 2000 do
    process.spawn_monitored("app:subscriber", "app:host")
    local ev = process.events():receive()
    if ev.result.error then return { error = tostring(ev.result.error) } end
  end
  -- the sleeper shares this worker and runs only when this loop is preempted (when it
  -- does, it takes the CANCELs waiting): the loop goes on until one is refused
  local sleeper = process.spawn("app:sleeper", "app:host")
  local n, err = 0, nil
  for _ = 1, 1000000 do
    local ok, e = process.cancel(sleeper)
    if not ok then err = e break end
    n = n + 1
  end
  process.terminate(sleeper)
  return { cancels = n, err = tostring(err), kind = err and err:kind() }
end }
"#,
        );
    let rt = app.start().await;
    let exit = tokio::time::timeout(
        Duration::from_secs(120),
        rt.exec_within(&Id::new("app", "main"), vec![]),
    )
    .await
    .expect("app:main did not finish within 120 s")
    .unwrap();
    let Exit::Normal(v) = exit else {
        panic!("app:main failed: {exit:?}")
    };
    let v = warden::value::to_json(&v).unwrap();
    // at least the limit went through before one was refused (more when the sleeper ran
    // in between and took some)
    assert!(
        v["cancels"].as_u64().unwrap() >= warden::process::CANCEL_LIMIT as u64,
        "{v}"
    );
    assert!(
        v["err"]
            .as_str()
            .unwrap()
            .contains("has 1024 cancel requests waiting"),
        "{v}"
    );
    assert_eq!(v["kind"], "Unavailable", "{v}");
    // 2000 processes each subscribed and started three timers of an hour, then exited
    assert_eq!(
        warden::process::events::subscription_count(rt.node()),
        0,
        "subscriptions of exited processes"
    );
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while warden::lua::timer_tasks() > 0 && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        warden::lua::timer_tasks(),
        0,
        "timer tasks of exited processes still pending after 10 s"
    );
    rt.shutdown().await;
}

/// What an idle process costs its worker's Lua heap (`collectgarbage("count")`, the heap
/// of the one Lua state the worker's processes share): its coroutine, globals, module
/// table and inbox, under 2 KB. A process waits for messages at the bottom of its
/// coroutine (its method's frame first: the bootstrap tail-calls it, see vm/raw.rs), so
/// its stack stays within the 40 slots Lua gives a coroutine; when it did not, Lua doubled
/// the stack and an idle process cost about 2.5 KB.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_process_costs_its_worker_under_2_kb_of_lua_heap() {
    let app = App::with_host(1, 4096)
        .lua(
            "idle",
            r#"
return { main = function(parent)
  process.send(parent, "up")
  process.inbox():receive()
end }
"#,
        )
        .lua(
            "main",
            r#"
return { main = function(n)
  local me, inbox = process.pid(), process.inbox()
  local pids = table.create and table.create(n) or {}
  collectgarbage("collect")
  collectgarbage("collect")
  local before = collectgarbage("count")
  for i = 1, n do pids[i] = assert(process.spawn("app:idle", "app:host", me)) end
  for _ = 1, n do inbox:receive() end
  collectgarbage("collect")
  collectgarbage("collect")
  local after = collectgarbage("count")
  for i = 1, n do process.terminate(pids[i]) end
  return (after - before) * 1024 / n
end }
"#,
        );
    let rt = app.start().await;
    let exit = rt
        .exec_within(
            &Id::new("app", "main"),
            vec![warden::value::Value::Int(2000)],
        )
        .await
        .unwrap();
    let Exit::Normal(warden::value::Value::Num(per)) = exit else {
        panic!("app:main failed: {exit:?}")
    };
    // the measure includes the test's own table of 2000 pid strings (about 60 bytes each)
    assert!(
        per < 2048.0,
        "an idle process took {per:.0} bytes of Lua heap"
    );
    rt.shutdown().await;
}
