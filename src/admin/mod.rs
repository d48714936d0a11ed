//! The admin endpoint of a running node (`warden run --admin ADDR`): Prometheus metrics,
//! a JSON API of the processes, the supervision forest and the function pools, and
//! actions on services, tree children and processes. Served with axum on the main tokio
//! runtime (the control plane), never on a process worker thread; it reads the node's
//! tables and counters when asked, so a node without `--admin` pays nothing.
//!
//! Access: only a loopback address unless a token is set (`--admin-token` or
//! `WARDEN_ADMIN_TOKEN`); with a token, every request without `Authorization: Bearer
//! TOKEN` is refused with 401 (compared in constant time; a GET may give it as
//! `?token=TOKEN` instead, so that the live page and its event stream, which a browser
//! opens without headers, work: `http://ADDR/?token=TOKEN`). Without a token the `Host`
//! header must name the bound address (a page that rebinds its own DNS name to loopback
//! is refused), and a request whose `Origin` is not the endpoint itself is refused
//! always. Actions (POST) need `Content-Type: application/json`, which a cross-site form
//! cannot send without a CORS preflight that this endpoint never grants.
//! `--admin-read-only` refuses every action with 403. Each action is logged with the
//! address that asked.

pub mod client;
pub mod metrics;

use crate::process::Node;
use crate::registry::Id;
use crate::supervision::{ChildError, Supervision};
use axum::extract::{ConnectInfo, Path, Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{json, Value as Json_};
use std::net::SocketAddr;
use std::sync::Arc;

/// How the endpoint is served.
#[derive(Clone, Debug)]
pub struct Config {
    /// Where to listen.
    pub addr: SocketAddr,
    /// The bearer token every request must carry (None: loopback only, no token).
    pub token: Option<String>,
    /// Refuse every action.
    pub read_only: bool,
}

/// What the handlers read.
#[derive(Clone)]
struct Ctx {
    /// The address listened on (what `Host` must name when there is no token).
    bound: SocketAddr,
    node: Arc<Node>,
    sup: Arc<Supervision>,
    wasm: Arc<crate::wasm::WasmRuntime>,
    config: Arc<Config>,
    started: std::time::Instant,
    /// Room for live event streams (`/api/v1/stream`): at most [`MAX_STREAMS`] at once.
    streams: Arc<tokio::sync::Semaphore>,
}

/// Most event streams served at once (each costs a snapshot every half second); past
/// it a new one is refused with 503.
pub const MAX_STREAMS: usize = 16;

/// Starts serving `rt`; returns the address bound (port 0 picks a free one) once
/// listening.
pub async fn serve(rt: &crate::runtime::Runtime, config: Config) -> anyhow::Result<SocketAddr> {
    let node = rt.node().clone();
    let sup = rt.supervision().clone();
    let wasm = rt.wasm().clone();
    if config.token.is_none() && !config.addr.ip().is_loopback() {
        anyhow::bail!(
            "--admin {}: not a loopback address; set --admin-token (or WARDEN_ADMIN_TOKEN) to serve it",
            config.addr
        );
    }
    let listener = tokio::net::TcpListener::bind(config.addr)
        .await
        .map_err(|e| anyhow::anyhow!("--admin {}: {e}", config.addr))?;
    let bound = listener.local_addr()?;
    crate::functions::time_calls();
    let ctx = Ctx {
        bound,
        node,
        sup,
        wasm,
        config: Arc::new(config),
        started: std::time::Instant::now(),
        streams: Arc::new(tokio::sync::Semaphore::new(MAX_STREAMS)),
    };
    let app = Router::new()
        .route("/", get(page))
        .route("/api/v1/stream", get(stream))
        .route("/metrics", get(metrics_text))
        .route("/api/v1/status", get(status))
        .route("/api/v1/processes", get(processes))
        .route("/api/v1/services", get(services))
        .route("/api/v1/trees", get(trees))
        .route("/api/v1/functions", get(functions))
        .route("/api/v1/services/{id}/{action}", post(service_action))
        .route(
            "/api/v1/trees/{id}/children/{child}/{action}",
            post(child_action),
        )
        .route("/api/v1/processes/{pid}/terminate", post(terminate))
        .layer(axum::middleware::from_fn_with_state(ctx.clone(), guard))
        .with_state(ctx);
    tokio::spawn(async move {
        let r = axum::serve(
            listener,
            app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .await;
        if let Err(e) = r {
            tracing::error!("admin endpoint stopped: {e}");
        }
    });
    tracing::info!(addr = %bound, "admin endpoint listening");
    Ok(bound)
}

fn error(status: StatusCode, message: impl Into<String>) -> Response {
    (status, Json(json!({ "error": message.into() }))).into_response()
}

/// Where a request comes from, then the token, then what an action needs: refused
/// before any handler runs.
async fn guard(State(ctx): State<Ctx>, req: Request, next: Next) -> Response {
    use axum::http::header::{AUTHORIZATION, CONTENT_TYPE, HOST, ORIGIN};
    let headers = req.headers();
    let host = headers
        .get(HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if ctx.config.token.is_none() && !host_is_bound(host, ctx.bound) {
        return error(
            StatusCode::FORBIDDEN,
            format!(
                "Host {host:?} is not this endpoint's address ({}); without a token only requests to that address are served",
                ctx.bound
            ),
        );
    }
    if let Some(origin) = headers.get(ORIGIN) {
        let origin = origin.to_str().unwrap_or("");
        if origin != format!("http://{host}") && origin != format!("https://{host}") {
            return error(
                StatusCode::FORBIDDEN,
                format!("a request from another origin ({origin}) is refused"),
            );
        }
    }
    let is_action = req.method() != axum::http::Method::GET;
    if let Some(token) = &ctx.config.token {
        let header = headers
            .get(AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::to_string);
        // the query form is for GETs only: an action always carries the header
        let query = || {
            axum::extract::Query::<std::collections::HashMap<String, String>>::try_from_uri(
                req.uri(),
            )
            .ok()
            .and_then(|q| q.0.get("token").cloned())
        };
        let given = header.or_else(|| if is_action { None } else { query() });
        if !given.is_some_and(|g| same_secret(&g, token)) {
            return error(StatusCode::UNAUTHORIZED, "a valid admin token is required");
        }
    }
    if is_action {
        if ctx.config.read_only {
            return error(StatusCode::FORBIDDEN, "the admin endpoint is read-only");
        }
        let json = headers
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .is_some_and(|t| t.trim().eq_ignore_ascii_case("application/json"));
        if !json {
            return error(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "an action needs Content-Type: application/json",
            );
        }
    }
    next.run(req).await
}

/// Whether a `Host` header names the bound address (for a loopback address, also as
/// `localhost`).
fn host_is_bound(host: &str, bound: SocketAddr) -> bool {
    if host == bound.to_string() {
        return true;
    }
    let port = bound.port();
    bound.ip().is_loopback() && host == format!("localhost:{port}")
}

/// Compares two secrets in time that does not depend on where they differ (their
/// SHA-256 digests, compared in constant time).
fn same_secret(given: &str, token: &str) -> bool {
    use sha2::Digest;
    use subtle::ConstantTimeEq;
    let a = sha2::Sha256::digest(given.as_bytes());
    let b = sha2::Sha256::digest(token.as_bytes());
    a.as_slice().ct_eq(b.as_slice()).into()
}

async fn metrics_text(State(ctx): State<Ctx>) -> Response {
    let body = metrics::render(&ctx.node, &ctx.sup, &ctx.wasm).await;
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        body,
    )
        .into_response()
}

async fn status(State(ctx): State<Ctx>) -> Json<Json_> {
    Json(status_json(&ctx))
}

fn status_json(ctx: &Ctx) -> Json_ {
    let services = ctx.sup.statuses.len();
    json!({
        "node": ctx.node.name.to_string(),
        "uptime_seconds": ctx.started.elapsed().as_secs_f64(),
        "processes": ctx.node.process_count(),
        "spawned": ctx.node.spawned(),
        "services": services,
        "trees": ctx.sup.trees.len(),
        "restarts": ctx.sup.restarts_total(),
        "messages": ctx.node.stats.messages.get(),
        "exits": {
            "normal": ctx.node.stats.exits_normal.load(std::sync::atomic::Ordering::Relaxed),
            "error": ctx.node.stats.exits_error.load(std::sync::atomic::Ordering::Relaxed),
            "killed": ctx.node.stats.exits_killed.load(std::sync::atomic::Ordering::Relaxed),
        },
    })
}

async fn processes(State(ctx): State<Ctx>) -> Json<Json_> {
    Json(Json_::Array(processes_json(&ctx)))
}

fn processes_json(ctx: &Ctx) -> Vec<Json_> {
    let mut list: Vec<Json_> = ctx
        .node
        .processes()
        .into_iter()
        .filter_map(|(pid, entry)| {
            let h = ctx.node.process(&pid)?;
            let (links, monitors, names) = h.relations();
            Some(json!({
                "pid": pid.to_string(),
                "entry": entry.to_string(),
                "kind": h.entry.kind,
                "host": h.host.id.to_string(),
                "uptime_seconds": h.started.elapsed().as_secs_f64(),
                "names": names,
                "mailbox": h.queued_messages(),
                "links": links.iter().map(|p| p.to_string()).collect::<Vec<_>>(),
                "monitors": monitors,
                "state": if h.kill_requested.load(std::sync::atomic::Ordering::Relaxed) {
                    "terminating"
                } else if h.cancel_requested.load(std::sync::atomic::Ordering::Relaxed) {
                    "canceling"
                } else {
                    "running"
                },
            }))
        })
        .collect();
    let key = |p: &Json_| {
        p["pid"]
            .as_str()
            .and_then(crate::process::Pid::parse)
            .map_or(0, |p| p.id)
    };
    list.sort_by_key(key);
    list
}

fn service_json(id: &Id, s: &crate::supervision::ServiceStatus) -> Json_ {
    json!({
        "id": id.to_string(),
        "state": s.state.name(),
        "pid": s.pid,
        "attempt": s.attempt,
        "restarts": s.restarts,
        "error": s.last_error,
        "retry_in_ms": s.retry_at.and_then(|t| t.duration_since(std::time::SystemTime::now()).ok()).map(|d| d.as_millis() as u64),
    })
}

async fn services(State(ctx): State<Ctx>) -> Json<Json_> {
    Json(services_json(&ctx))
}

fn services_json(ctx: &Ctx) -> Json_ {
    let mut all: Vec<(Id, crate::supervision::ServiceStatus)> = ctx
        .sup
        .statuses
        .iter()
        .map(|e| (e.key().clone(), e.value().clone()))
        .collect();
    all.sort_by(|a, b| a.0.cmp(&b.0));
    Json_::Array(all.iter().map(|(id, s)| service_json(id, s)).collect())
}

async fn trees(State(ctx): State<Ctx>) -> Json<Json_> {
    Json(trees_json(&ctx).await)
}

async fn trees_json(ctx: &Ctx) -> Json_ {
    let mut ids: Vec<Id> = ctx.sup.trees.iter().map(|t| t.key().clone()).collect();
    ids.sort();
    let mut out = Vec::new();
    for id in ids {
        let Ok(children) = ctx.sup.children(&id).await else {
            continue;
        };
        let spec = ctx.sup.specs().trees.get(&id).cloned();
        let intensity = ctx.sup.intensity(&id).await.ok();
        out.push(json!({
            "id": id.to_string(),
            "strategy": spec.as_ref().map(|s| s.strategy.name()),
            "intensity": intensity.map(|i| json!({
                "used": i.used, "max_restarts": i.max, "period_ms": i.period.as_millis() as u64,
            })),
            "children": children.iter().map(|c| json!({
                "id": c.id,
                "kind": c.kind,
                "entry": c.entry,
                "pid": c.pid,
                "restart": c.restart,
                "state": if c.running { "running" } else if c.restarting { "restarting" } else { "undefined" },
                "restarts": c.restarts,
            })).collect::<Vec<_>>(),
        }));
    }
    Json_::Array(out)
}

async fn functions(State(ctx): State<Ctx>) -> Json<Json_> {
    Json(functions_json(&ctx))
}

fn functions_json(ctx: &Ctx) -> Json_ {
    let mut pools = ctx.node.functions.pools();
    pools.sort_by(|a, b| a.entry.id.cmp(&b.entry.id));
    Json_::Array(
        pools
            .iter()
            .map(|p| {
                let s = p.stats();
                let (sum, count, _) = p.latency.snapshot();
                let mean = if count > 0 { sum / count as f64 } else { 0.0 };
                json!({
                    "id": p.entry.id.to_string(),
                    "kind": p.entry.kind,
                    "running": s.running,
                    "waiting": s.waiting,
                    "idle": s.idle,
                    "peak": s.peak,
                    "calls": s.calls,
                    "errors": s.errors,
                    "gave_up": s.gave_up,
                    "latency_seconds": { "sum": sum, "count": count, "mean": mean },
                })
            })
            .collect(),
    )
}

/// What the page shows, at one moment: the node, services, trees, the busiest processes
/// (longest mailboxes first), the pools.
async fn snapshot(ctx: &Ctx) -> Json_ {
    let mut procs = processes_json(ctx);
    procs.sort_by_key(|p| std::cmp::Reverse(p["mailbox"].as_u64().unwrap_or(0)));
    procs.truncate(10);
    json!({
        "status": status_json(ctx),
        "services": services_json(ctx),
        "trees": trees_json(ctx).await,
        "busiest": procs,
        "functions": functions_json(ctx),
    })
}

/// Query of the stream.
#[derive(serde::Deserialize)]
struct StreamQuery {
    /// End the stream after this many snapshots (the browser reconnects at once): for
    /// clients that wait for the network to go quiet, such as a headless browser's
    /// virtual time.
    max: Option<u64>,
}

/// `GET /api/v1/stream`: server-sent events, a `snapshot` every half second (at most
/// [`MAX_STREAMS`] streams at once).
async fn stream(
    State(ctx): State<Ctx>,
    axum::extract::Query(q): axum::extract::Query<StreamQuery>,
) -> Response {
    let Ok(permit) = ctx.streams.clone().try_acquire_owned() else {
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("{MAX_STREAMS} event streams are open already"),
        );
    };
    let ticks = tokio::time::interval(std::time::Duration::from_millis(500));
    let left = q.max.unwrap_or(u64::MAX);
    let state = (ctx, ticks, left, permit);
    let s = futures::stream::unfold(state, |(ctx, mut ticks, left, permit)| async move {
        if left == 0 {
            return None;
        }
        ticks.tick().await;
        let snap = snapshot(&ctx).await;
        let ev = axum::response::sse::Event::default()
            .event("snapshot")
            .retry(std::time::Duration::from_millis(100))
            .data(snap.to_string());
        Some((
            Ok::<_, std::convert::Infallible>(ev),
            (ctx, ticks, left - 1, permit),
        ))
    });
    axum::response::sse::Sse::new(s)
        .keep_alive(axum::response::sse::KeepAlive::default())
        .into_response()
}

/// `GET /`: the live page (one file in the binary: no build step, nothing from the
/// internet).
async fn page() -> axum::response::Html<&'static str> {
    axum::response::Html(include_str!("page.html"))
}

fn parse_id(s: &str) -> Result<Id, Box<Response>> {
    Id::parse(s).map_err(|e| Box::new(error(StatusCode::BAD_REQUEST, e)))
}

async fn service_action(
    State(ctx): State<Ctx>,
    ConnectInfo(who): ConnectInfo<SocketAddr>,
    Path((id, action)): Path<(String, String)>,
) -> Response {
    let id = match parse_id(&id) {
        Ok(id) => id,
        Err(r) => return *r,
    };
    tracing::info!(%who, service = %id, action, "admin action");
    let r = match action.as_str() {
        "start" => ctx.sup.start_with_requires(&id).await,
        "stop" => ctx.sup.stop(&id).await,
        "restart" => ctx.sup.restart(&id).await,
        other => {
            return error(
                StatusCode::NOT_FOUND,
                format!("unknown action {other}; expected start, stop or restart"),
            )
        }
    };
    match r {
        Ok(()) => {
            let status = ctx.sup.status(&id);
            Json(status.map_or(Json_::Null, |s| service_json(&id, &s))).into_response()
        }
        Err(("NOT_FOUND", e)) => error(StatusCode::NOT_FOUND, e),
        Err((_, e)) => error(StatusCode::CONFLICT, e),
    }
}

fn child_error(e: ChildError) -> Response {
    let status = match e {
        ChildError::NotFound(_) => StatusCode::NOT_FOUND,
        ChildError::Invalid(_) | ChildError::SimpleOneForOne => StatusCode::BAD_REQUEST,
        _ => StatusCode::CONFLICT,
    };
    error(status, format!("{} ({})", e, e.reason()))
}

async fn child_action(
    State(ctx): State<Ctx>,
    ConnectInfo(who): ConnectInfo<SocketAddr>,
    Path((id, child, action)): Path<(String, String, String)>,
) -> Response {
    let id = match parse_id(&id) {
        Ok(id) => id,
        Err(r) => return *r,
    };
    if action != "restart" && action != "terminate" {
        return error(
            StatusCode::NOT_FOUND,
            format!("unknown action {action}; expected restart or terminate"),
        );
    }
    // A restart must not leave the child stopped for a reason known before it stops:
    // the tree and child exist, the tree is not simple_one_for_one, and a temporary
    // child (which terminate deletes, as in OTP) is not restarted.
    if action == "restart" {
        match ctx.sup.get_childspec(&id, &child).await {
            Ok(Ok(spec)) if spec.restart == crate::supervision::spec::RestartType::Temporary => {
                return error(
                    StatusCode::CONFLICT,
                    format!("child {child} of {id} is temporary: terminating it deletes it, so it cannot be restarted"),
                )
            }
            Ok(Ok(_)) => {}
            Ok(Err(e)) => return child_error(e),
            Err((_, e)) => return error(StatusCode::NOT_FOUND, e),
        }
    }
    tracing::info!(%who, tree = %id, %child, action, "admin action");
    match ctx.sup.terminate_child(&id, &child).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => return child_error(e),
        Err((_, e)) => return error(StatusCode::NOT_FOUND, e),
    }
    if action == "terminate" {
        return Json(json!({ "terminated": child })).into_response();
    }
    match ctx.sup.restart_child(&id, &child).await {
        Ok(Ok(pid)) => Json(json!({ "restarted": child, "pid": pid })).into_response(),
        Ok(Err(e)) => child_error(e),
        Err((_, e)) => error(StatusCode::NOT_FOUND, e),
    }
}

async fn terminate(
    State(ctx): State<Ctx>,
    ConnectInfo(who): ConnectInfo<SocketAddr>,
    Path(pid): Path<String>,
) -> Response {
    let Some(p) = ctx.node.parse_pid(&pid) else {
        return error(StatusCode::BAD_REQUEST, format!("malformed pid {pid:?}"));
    };
    if ctx.node.is_remote(&p) {
        return error(
            StatusCode::NOT_FOUND,
            format!(
                "{p} is a process of node {}; this endpoint acts on node {}'s processes only",
                p.node, ctx.node.name
            ),
        );
    }
    tracing::info!(%who, pid = %p, "admin action: terminate");
    match ctx.node.terminate(&p) {
        Ok(()) => Json(json!({ "terminated": p.to_string() })).into_response(),
        Err(e) => error(StatusCode::NOT_FOUND, e.to_string()),
    }
}
