//! `GET /metrics`: the node's figures in the Prometheus / OpenMetrics text format, through
//! the `prometheus-client` crate. Everything is read at scrape time from the node's
//! tables and counters (a registry is filled per scrape), so nothing on a process's path
//! records anything for it.
//!
//! Metrics (all prefixed `warden_`): `processes{host}`, `processes_by_kind{kind}`,
//! `spawns_total`, `exits_total{reason}` (normal, error, killed), `messages_total`,
//! `mailbox_max`, `mailbox_length` (a histogram over the live processes),
//! `service_state{service,state}` (1 for the current state), `service_restarts_total{service}`,
//! `service_attempt{service}`, `tree_children{tree}`, `tree_child_restarts_total{tree}`,
//! `tree_intensity_used{tree}`, `tree_max_restarts{tree}`,
//! `tree_restarts_total` (every tree), `function_calls_total{function}`,
//! `function_errors_total{function}`, `function_latency_seconds{function}` (a histogram),
//! `function_gave_up_total{function}`, `pool_running{function}`, `pool_waiting{function}`,
//! `pool_idle{function}`, `wasm_instances`, `wasm_instances_cap`, `timer_tasks`,
//! `event_subscriptions`,
//! `lua_heap_bytes{host,worker}`, `worker_processes{host,worker}`,
//! `worker_busy_seconds_total{host,worker}` (tokio's busy time of each worker thread).

use crate::process::Node;
use crate::supervision::{ServiceState, Supervision};
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use std::sync::atomic::Ordering;
use std::sync::Arc;

type Labels = Vec<(&'static str, String)>;

/// Latency histograms by function, already counted by the pools (encoded as one
/// histogram family).
#[derive(Debug)]
struct Latencies(Vec<(String, crate::functions::LatencySnapshot)>);

impl prometheus_client::encoding::EncodeMetric for Latencies {
    fn encode(
        &self,
        mut encoder: prometheus_client::encoding::MetricEncoder,
    ) -> Result<(), std::fmt::Error> {
        for (id, (sum, count, buckets)) in &self.0 {
            let labels = vec![("function", id.clone())];
            let mut e = encoder.encode_family(&labels)?;
            e.encode_histogram::<prometheus_client::encoding::NoLabelSet>(
                *sum, *count, buckets, None,
            )?;
        }
        Ok(())
    }

    fn metric_type(&self) -> prometheus_client::metrics::MetricType {
        prometheus_client::metrics::MetricType::Histogram
    }
}

fn gauges() -> Family<Labels, Gauge> {
    Family::default()
}

fn counters() -> Family<Labels, Counter> {
    Family::default()
}

/// The Lua heap of each worker of each host (asked on the worker's own thread).
async fn lua_heaps(node: &Node) -> Vec<(String, usize, usize)> {
    let mut out = Vec::new();
    for host in node.hosts() {
        for w in 0..host.worker_count() {
            let (tx, rx) = tokio::sync::oneshot::channel();
            if host.run_on_worker(w, move || {
                let _ = tx.send(crate::lua::heap_bytes());
            }) {
                if let Ok(Ok(Some(bytes))) =
                    tokio::time::timeout(std::time::Duration::from_millis(500), rx).await
                {
                    out.push((host.id.to_string(), w, bytes));
                }
            }
        }
    }
    out
}

/// The metrics text of `node`.
pub async fn render(
    node: &Arc<Node>,
    sup: &Arc<Supervision>,
    wasm: &crate::wasm::WasmRuntime,
) -> String {
    let mut reg = Registry::with_prefix("warden");

    let by_host = gauges();
    let per_worker = gauges();
    let busy = prometheus_client::metrics::family::Family::<
        Labels,
        Counter<f64, std::sync::atomic::AtomicU64>,
    >::default();
    for host in node.hosts() {
        for (w, d) in host.busy().iter().enumerate() {
            busy.get_or_create(&vec![
                ("host", host.id.to_string()),
                ("worker", w.to_string()),
            ])
            .inc_by(d.as_secs_f64());
        }
        let load = host.load();
        by_host
            .get_or_create(&vec![("host", host.id.to_string())])
            .set(load.iter().sum::<usize>() as i64);
        for (w, n) in load.iter().enumerate() {
            per_worker
                .get_or_create(&vec![
                    ("host", host.id.to_string()),
                    ("worker", w.to_string()),
                ])
                .set(*n as i64);
        }
    }
    reg.register("processes", "Live processes by host", by_host);
    reg.register(
        "worker_busy_seconds",
        "Time each worker thread spent running processes and calls",
        busy,
    );
    reg.register(
        "worker_processes",
        "Live processes by worker thread",
        per_worker,
    );

    let by_kind = gauges();
    let mailbox = Histogram::new(exponential_buckets(1.0, 4.0, 9));
    let mut mailbox_max = 0usize;
    for (pid, _) in node.processes() {
        if let Some(h) = node.process(&pid) {
            by_kind
                .get_or_create(&vec![("kind", h.entry.kind.clone())])
                .inc();
            let n = h.queued_messages();
            mailbox_max = mailbox_max.max(n);
            mailbox.observe(n as f64);
        }
    }
    reg.register("processes_by_kind", "Live processes by entry kind", by_kind);
    reg.register(
        "mailbox_length",
        "Messages waiting per live process",
        mailbox,
    );
    let max = Gauge::<i64>::default();
    max.set(mailbox_max as i64);
    reg.register("mailbox_max", "The longest mailbox now", max);

    let spawns = Counter::<u64>::default();
    spawns.inc_by(node.spawned());
    reg.register("spawns", "Processes spawned", spawns);
    let exits = counters();
    for (reason, c) in [
        ("normal", &node.stats.exits_normal),
        ("error", &node.stats.exits_error),
        ("killed", &node.stats.exits_killed),
    ] {
        exits
            .get_or_create(&vec![("reason", reason.to_string())])
            .inc_by(c.load(Ordering::Relaxed));
    }
    reg.register("exits", "Processes ended, by how", exits);
    let messages = Counter::<u64>::default();
    messages.inc_by(node.stats.messages.get());
    reg.register("messages", "Messages delivered to mailboxes", messages);

    let state = gauges();
    let restarts = counters();
    let attempt = gauges();
    for s in sup.statuses.iter() {
        let id = s.key().to_string();
        for st in [
            ServiceState::Unknown,
            ServiceState::Stopped,
            ServiceState::Starting,
            ServiceState::Running,
            ServiceState::Stopping,
            ServiceState::Failed,
            ServiceState::Exited,
        ] {
            state
                .get_or_create(&vec![("service", id.clone()), ("state", st.name().into())])
                .set(i64::from(s.state == st));
        }
        restarts
            .get_or_create(&vec![("service", id.clone())])
            .inc_by(s.restarts);
        attempt
            .get_or_create(&vec![("service", id.clone())])
            .set(i64::from(s.attempt));
    }
    reg.register("service_state", "1 for each service's current state", state);
    reg.register("service_restarts", "Restarts of each service", restarts);
    reg.register(
        "service_attempt",
        "Failed attempts in a row of each service",
        attempt,
    );

    let tree_children = gauges();
    let tree_restarts = counters();
    let tree_used = gauges();
    let tree_max = gauges();
    let ids: Vec<_> = sup.trees.iter().map(|t| t.key().clone()).collect();
    for id in ids {
        if let Ok(children) = sup.children(&id).await {
            tree_children
                .get_or_create(&vec![("tree", id.to_string())])
                .set(children.len() as i64);
            tree_restarts
                .get_or_create(&vec![("tree", id.to_string())])
                .inc_by(children.iter().map(|c| c.restarts).sum());
        }
        if let Ok(i) = sup.intensity(&id).await {
            let l = vec![("tree", id.to_string())];
            tree_used.get_or_create(&l).set(i64::from(i.used));
            tree_max.get_or_create(&l).set(i64::from(i.max));
        }
    }
    reg.register(
        "tree_children",
        "Children of each running tree",
        tree_children,
    );
    reg.register(
        "tree_intensity_used",
        "Restarts of each running tree within its intensity period",
        tree_used,
    );
    reg.register(
        "tree_max_restarts",
        "Each running tree's max_restarts (it gives up above it)",
        tree_max,
    );
    reg.register(
        "tree_child_restarts",
        "Restarts of the children of each running tree (this instance of it)",
        tree_restarts,
    );
    let total = Counter::<u64>::default();
    total.inc_by(sup.restarts_total());
    reg.register(
        "tree_restarts",
        "Children restarted by every tree since the node started",
        total,
    );

    let calls = counters();
    let errors = counters();
    let mut latencies = Vec::new();
    let gave_up = counters();
    let running = gauges();
    let waiting = gauges();
    let idle = gauges();
    for p in node.functions.pools() {
        let s = p.stats();
        let l = vec![("function", p.entry.id.to_string())];
        calls.get_or_create(&l).inc_by(s.calls);
        errors.get_or_create(&l).inc_by(s.errors);
        latencies.push((p.entry.id.to_string(), p.latency.snapshot()));
        gave_up.get_or_create(&l).inc_by(s.gave_up);
        running.get_or_create(&l).set(s.running as i64);
        waiting.get_or_create(&l).set(s.waiting as i64);
        idle.get_or_create(&l).set(s.idle as i64);
    }
    reg.register("function_calls", "Calls started, by function", calls);
    reg.register(
        "function_errors",
        "Calls that ended in an error, by function",
        errors,
    );
    latencies.sort_by(|a, b| a.0.cmp(&b.0));
    reg.register(
        "function_latency_seconds",
        "How long calls took, by function (from a worker granted to the call's end)",
        Latencies(latencies),
    );
    reg.register(
        "function_gave_up",
        "Callers that gave up waiting for a worker",
        gave_up,
    );
    reg.register("pool_running", "Calls running now, by function", running);
    reg.register("pool_waiting", "Callers waiting for a worker", waiting);
    reg.register("pool_idle", "Idle function instances kept", idle);

    {
        let (live, cap) = wasm.instances();
        let g = Gauge::<i64>::default();
        g.set(i64::from(live));
        reg.register("wasm_instances", "Live WebAssembly instances", g);
        let c = Gauge::<i64>::default();
        c.set(i64::from(cap));
        reg.register(
            "wasm_instances_cap",
            "The most WebAssembly instances alive at once",
            c,
        );
    }

    let timers = Gauge::<i64>::default();
    timers.set(crate::lua::timer_tasks() as i64);
    reg.register(
        "timer_tasks",
        "Pending time.after / timer / ticker tasks of running processes and calls",
        timers,
    );
    let subs = Gauge::<i64>::default();
    subs.set(crate::process::events::subscription_count(node) as i64);
    reg.register(
        "event_subscriptions",
        "Event subscriptions of running processes",
        subs,
    );

    let heaps = gauges();
    for (host, w, bytes) in lua_heaps(node).await {
        heaps
            .get_or_create(&vec![("host", host), ("worker", w.to_string())])
            .set(bytes as i64);
    }
    reg.register("lua_heap_bytes", "The Lua heap of each worker", heaps);

    let mut out = String::new();
    if let Err(e) = encode(&mut out, &reg) {
        tracing::error!("cannot encode the metrics: {e}");
    }
    out
}
