//! The cluster's figures, side by side in one run: a remote send + reply round trip and
//! one-way remote sends from one process between two warden nodes (two runtimes in this
//! process, joined through a local nats-server), against raw NATS (request/reply and
//! publish through async-nats, the same server) and Erlang distribution (two
//! `erl -sname` nodes, benches/dist_bench.erl, when `erl` is installed).
//!
//! Run: `cargo bench --bench cluster` (needs nats-server 2.11+ on PATH, or NATS_SERVER).

use futures::StreamExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use warden::alloc::MiMalloc;
use warden::process::Exit;
use warden::registry::{load_dir, Id};
use warden::runtime::{Options, Runtime};
use warden::value::Value;

#[global_allocator]
static GLOBAL: MiMalloc = MiMalloc;

const ROUNDS: usize = 7;
const RT_N: i64 = 5000;
const FLOOD_M: i64 = 200_000;
/// The flood's window: the sender waits for the counter's acknowledgement of a window
/// before it has two unacknowledged, so at most 50,000 are in flight (a mailbox holds
/// 65,536).
const FLOOD_WINDOW: i64 = 25_000;

const APP: &str = r#"version: "1.0"
namespace: bench
entries:
  - name: host
    kind: process.host
    host: {workers: 2, queue_size: 200000}
  - name: echo
    kind: process.lua
    method: main
    source: |
      return { main = function()
        local inbox = process.inbox()
        while true do
          local m = inbox:receive()
          process.send(m:from(), "r", m:payload():data())
        end
      end }
  - name: counter
    kind: process.lua
    method: main
    source: |
      return { main = function(n, window)
        local inbox = process.inbox()
        local m
        for i = 1, n do
          m = inbox:receive()
          if i % window == 0 then process.send(m:from(), "ack", i) end
        end
        process.send(m:from(), "done", n)
      end }
  - name: rt
    kind: process.lua
    method: main
    source: |
      return { main = function(echo, n)
        local inbox = process.inbox()
        for i = 1, n do
          process.send(echo, "p", i)
          inbox:receive()
        end
        return n
      end }
  - name: flood
    kind: process.lua
    method: main
    source: |
      return { main = function(counter, n, window)
        -- at most two windows unacknowledged: never more in flight than the counter's
        -- mailbox holds (a remote message to a full mailbox is dropped)
        local inbox = process.inbox()
        local acked = 0
        for i = 1, n do
          if i - 1 - acked >= 2 * window then
            inbox:receive()
            acked = acked + window
          end
          local ok, err = process.send(counter, "m", i)
          if not ok then error(err) end
        end
        while inbox:receive():topic() ~= "done" do end
        return n
      end }
"#;

struct Stats {
    median: f64,
    lo: f64,
    hi: f64,
}

fn stats(mut v: Vec<f64>) -> Stats {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    Stats {
        median: v[v.len() / 2],
        lo: v[0],
        hi: v[v.len() - 1],
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn main() {
    let port = free_port();
    let store = tempfile::tempdir().unwrap();
    let bin = std::env::var("NATS_SERVER").unwrap_or_else(|_| "nats-server".into());
    let mut server = Command::new(&bin)
        .args(["-a", "127.0.0.1", "-p", &port.to_string(), "-js", "-sd"])
        .arg(store.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("this benchmark needs nats-server 2.11+ ({bin}: {e})"));
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        std::thread::sleep(Duration::from_millis(10));
    }
    let url = format!("nats://127.0.0.1:{port}");
    let tokio = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let (w_rt, w_flood, n_rt, n_flood) = tokio.block_on(measure(&url));
    let _ = server.kill();
    let _ = server.wait();
    let erl = erlang();

    let ratio =
        |a: &[f64], b: &[f64]| stats(a.iter().zip(b).map(|(x, y)| x / y).collect::<Vec<_>>());
    let rt = stats(w_rt.clone());
    let nrt = stats(n_rt.clone());
    let r = ratio(&w_rt, &n_rt);
    let fl = stats(w_flood.clone());
    let nfl = stats(n_flood.clone());
    println!("## Cluster ({ROUNDS} rounds, median (min-max))\n");
    println!("| measure | warden | raw NATS | ratio | Erlang distribution |");
    println!("|---|---|---|---|---|");
    let (e_rt, e_fl) = match &erl {
        Some((a, b)) => {
            let a = stats(a.clone());
            let b = stats(b.clone());
            (
                format!("{:.1} us ({:.1}-{:.1})", a.median, a.lo, a.hi),
                format!("{:.0} msgs/s ({:.0}-{:.0})", b.median, b.lo, b.hi),
            )
        }
        None => ("n/a (erl not installed)".into(), "n/a".into()),
    };
    println!(
        "| send + reply round trip, node a -> node b -> a ({RT_N}) | {:.1} us ({:.1}-{:.1}) | request/reply {:.1} us ({:.1}-{:.1}) | {:.2}x ({:.2}-{:.2}) | {e_rt} |",
        rt.median, rt.lo, rt.hi, nrt.median, nrt.lo, nrt.hi, r.median, r.lo, r.hi
    );
    println!(
        "| one-way sends from one process ({FLOOD_M}) | {:.0} msgs/s ({:.0}-{:.0}) | publish {:.0} msgs/s ({:.0}-{:.0}) | {:.2}x | {e_fl} |",
        fl.median,
        fl.lo,
        fl.hi,
        nfl.median,
        nfl.lo,
        nfl.hi,
        fl.median / nfl.median
    );
}

async fn node(dir: &std::path::Path, url: &str, name: &str) -> Runtime {
    let options = Options {
        node_name: name.into(),
        cluster: Some(url.into()),
        ..Options::default()
    };
    Runtime::start_with(load_dir(dir).unwrap(), options)
        .await
        .unwrap()
}

async fn exec(rt: &Runtime, what: &str, args: Vec<Value>) {
    let id = Id::new("bench", what);
    let run = rt.exec(&id, args);
    let exit = tokio::time::timeout(Duration::from_secs(120), run)
        .await
        .unwrap_or_else(|_| panic!("{what} did not finish within 120 s"));
    match exit.unwrap() {
        Exit::Normal(_) => {}
        other => panic!("{what}: {other:?}"),
    }
}

/// (warden round trip us, warden msgs/s, NATS request/reply us, NATS publish msgs/s), a
/// value per round, the four measured in turn within each round.
async fn measure(url: &str) -> (Vec<f64>, Vec<f64>, Vec<f64>, Vec<f64>) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("_index.yaml"), APP).unwrap();
    let a = node(dir.path(), url, "a").await;
    let b = node(dir.path(), url, "b").await;
    let cluster = |rt: &Runtime| rt.cluster().unwrap().clone();
    while cluster(&a).members().len() < 2 || cluster(&b).members().len() < 2 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let echo = b
        .spawn(&Id::new("bench", "echo"), None, vec![], Default::default())
        .unwrap();
    // raw NATS: a responder and a requester on their own connections
    let opts = || async_nats::ConnectOptions::new().subscription_capacity(1 << 20);
    let responder = opts().connect(url).await.unwrap();
    let requester = opts().connect(url).await.unwrap();
    let mut echo_sub = responder.subscribe("bench.echo").await.unwrap();
    let r2 = responder.clone();
    tokio::spawn(async move {
        while let Some(m) = echo_sub.next().await {
            if let Some(reply) = m.reply {
                let _ = r2.publish(reply, m.payload).await;
            }
        }
    });
    let echo_s = Value::str(echo.to_string());
    // warm up both
    exec(&a, "rt", vec![echo_s.clone(), Value::Int(500)]).await;
    for i in 0..500 {
        requester
            .request("bench.echo", format!("{i}").into())
            .await
            .unwrap();
    }
    let (mut w_rt, mut w_fl, mut n_rt, mut n_fl) = (vec![], vec![], vec![], vec![]);
    for _ in 0..ROUNDS {
        let t = Instant::now();
        exec(&a, "rt", vec![echo_s.clone(), Value::Int(RT_N)]).await;
        w_rt.push(t.elapsed().as_secs_f64() * 1e6 / RT_N as f64);

        let t = Instant::now();
        for i in 0..RT_N {
            requester
                .request("bench.echo", format!("{i}").into())
                .await
                .unwrap();
        }
        n_rt.push(t.elapsed().as_secs_f64() * 1e6 / RT_N as f64);

        let counter = b
            .spawn(
                &Id::new("bench", "counter"),
                None,
                vec![Value::Int(FLOOD_M), Value::Int(FLOOD_WINDOW)],
                Default::default(),
            )
            .unwrap();
        let t = Instant::now();
        exec(
            &a,
            "flood",
            vec![
                Value::str(counter.to_string()),
                Value::Int(FLOOD_M),
                Value::Int(FLOOD_WINDOW),
            ],
        )
        .await;
        w_fl.push(FLOOD_M as f64 / t.elapsed().as_secs_f64());

        let mut sub = responder.subscribe("bench.flood").await.unwrap();
        responder.flush().await.unwrap();
        let done = tokio::spawn(async move {
            let mut n = 0;
            while sub.next().await.is_some() {
                n += 1;
                if n == FLOOD_M {
                    break;
                }
            }
        });
        let t = Instant::now();
        for i in 0..FLOOD_M {
            requester
                .publish("bench.flood", format!("{i}").into())
                .await
                .unwrap();
        }
        requester.flush().await.unwrap();
        done.await.unwrap();
        n_fl.push(FLOOD_M as f64 / t.elapsed().as_secs_f64());
    }
    a.shutdown().await;
    b.shutdown().await;
    (w_rt, w_fl, n_rt, n_fl)
}

/// Erlang distribution between two local nodes: (round trip us, msgs/s) per round.
fn erlang() -> Option<(Vec<f64>, Vec<f64>)> {
    let dir = tempfile::tempdir().ok()?;
    std::fs::write(
        dir.path().join("dist_bench.erl"),
        include_str!("dist_bench.erl"),
    )
    .ok()?;
    let ok = Command::new("erlc")
        .current_dir(dir.path())
        .arg("dist_bench.erl")
        .status()
        .ok()?
        .success();
    if !ok {
        return None;
    }
    let host = String::from_utf8(Command::new("hostname").arg("-s").output().ok()?.stdout)
        .ok()?
        .trim()
        .to_string();
    let cookie = "wardenbench";
    let mut b = Command::new("erl")
        .current_dir(dir.path())
        .args([
            "-sname",
            "wbench_b",
            "-setcookie",
            cookie,
            "-noshell",
            "-pa",
            ".",
        ])
        .stdout(Stdio::null())
        .spawn()
        .ok()?;
    let out = Command::new("erl")
        .current_dir(dir.path())
        .args([
            "-sname",
            "wbench_a",
            "-setcookie",
            cookie,
            "-noshell",
            "-pa",
            ".",
        ])
        .args(["-eval", &format!("dist_bench:main([\"wbench_b@{host}\"])")])
        .args(["-s", "init", "stop"])
        .output()
        .ok()?;
    let _ = b.kill();
    let _ = b.wait();
    let text = String::from_utf8_lossy(&out.stdout);
    let (mut rt, mut fl) = (vec![], vec![]);
    for line in text.lines() {
        let mut it = line.split_whitespace();
        if it.next() == Some("round") {
            rt.push(it.next()?.parse().ok()?);
            fl.push(it.next()?.parse().ok()?);
        }
    }
    (!rt.is_empty()).then_some((rt, fl))
}
