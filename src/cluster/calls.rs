//! `funcs.call` across nodes: a call of a function this node does not have goes to a node
//! that has it. Every node serves each function entry of its registry on the subject
//! `warden.<cluster>.fn.<id>` in the cluster's queue group, so NATS hands each call to one of the
//! nodes that run it; the caller waits for the reply (a NATS request) up to the call's
//! timeout. With no node serving it, the call fails as it would on one node (NOT_FOUND).

use super::names::key;
use super::Cluster;
use crate::functions::{CallContext, CallError, RemoteCalls};
use crate::value::{self, Value};
use futures::future::BoxFuture;
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use std::sync::{Arc, Weak};
use std::time::Duration;

/// Runs a call that came from another node on this one.
pub type CallHandler = Arc<
    dyn Fn(
            String,
            Vec<Value>,
            Arc<CallContext>,
            Duration,
        ) -> BoxFuture<'static, Result<Value, CallError>>
        + Send
        + Sync,
>;

#[derive(Serialize, Deserialize)]
struct Request {
    /// Arguments.
    a: Vec<serde_json::Value>,
    /// Context values.
    #[serde(default)]
    v: Vec<(String, serde_json::Value)>,
    /// Actor.
    #[serde(default)]
    ac: Option<String>,
    /// The actor's meta.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    am: Option<serde_json::Value>,
    /// Security scope.
    #[serde(default)]
    sc: Option<Vec<String>>,
    /// Timeout, ms.
    t: u64,
}

#[derive(Serialize, Deserialize)]
enum Reply {
    Ok(serde_json::Value),
    Err {
        kind: String,
        message: String,
        payload: Option<serde_json::Value>,
    },
}

/// The remote half of [`crate::functions::FunctionTable::call`].
pub(super) struct Caller(pub(super) Weak<Cluster>);

impl RemoteCalls for Caller {
    fn call(
        &self,
        target: &str,
        args: Vec<Value>,
        context: Arc<CallContext>,
        timeout: Duration,
    ) -> BoxFuture<'static, Option<Result<Value, CallError>>> {
        let cluster = self.0.upgrade();
        let target = target.to_string();
        Box::pin(async move {
            let cluster = cluster?;
            let subject = cluster.space.function(&key(&target));
            request(&cluster, subject, &target, &args, &context, timeout).await
        })
    }

    fn call_elsewhere(
        &self,
        target: &str,
        args: Vec<Value>,
        context: Arc<CallContext>,
        timeout: Duration,
    ) -> BoxFuture<'static, Option<Result<Value, CallError>>> {
        let cluster = self.0.upgrade();
        let target = target.to_string();
        Box::pin(async move {
            let cluster = cluster?;
            // the other members, starting at a different one each time
            let mut others: Vec<String> = cluster
                .members()
                .into_iter()
                .filter(|n| *n != cluster.name)
                .collect();
            if others.is_empty() {
                return None;
            }
            let start = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed) % others.len();
            others.rotate_left(start);
            for node in others {
                let subject = cluster.space.function_at(&node, &key(&target));
                if let Some(r) = request(&cluster, subject, &target, &args, &context, timeout).await
                {
                    return Some(r);
                }
            }
            None
        })
    }
}

static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// One call as a NATS request on `subject`; None when nobody serves it there.
async fn request(
    cluster: &Cluster,
    subject: String,
    target: &str,
    args: &[Value],
    context: &CallContext,
    timeout: Duration,
) -> Option<Result<Value, CallError>> {
    let bad = |e: String| {
        Some(Err(CallError::new(
            "INVALID",
            format!("function {target}: the arguments cannot cross nodes: {e}"),
        )))
    };
    let a: Result<Vec<_>, _> = args.iter().map(value::to_json).collect();
    let a = match a {
        Ok(a) => a,
        Err(e) => return bad(e.to_string()),
    };
    let v: Result<Vec<_>, _> = context
        .values
        .iter()
        .map(|(k, v)| value::to_json(v).map(|v| (k.clone(), v)))
        .collect();
    let v = match v {
        Ok(v) => v,
        Err(e) => return bad(e.to_string()),
    };
    let req = Request {
        a,
        v,
        ac: context.actor.clone(),
        am: context
            .actor_meta
            .as_ref()
            .and_then(|m| value::to_json(m).ok()),
        sc: context.scope.clone(),
        t: timeout.as_millis() as u64,
    };
    let body = serde_json::to_vec(&req).ok()?;
    let request = async_nats::Request::new()
        .payload(body.into())
        .timeout(Some(timeout));
    let reply = match cluster.client.send_request(subject, request).await {
        Ok(m) => m,
        Err(e) => {
            return match e.kind() {
                async_nats::RequestErrorKind::NoResponders => None,
                async_nats::RequestErrorKind::TimedOut => Some(Err(CallError::new(
                    "TIMEOUT",
                    format!("function {target}: no answer from the cluster within {timeout:?}"),
                ))),
                _ => Some(Err(CallError::new(
                    "UNAVAILABLE",
                    format!("function {target}: the cluster: {e}"),
                ))),
            }
        }
    };
    Some(match serde_json::from_slice::<Reply>(&reply.payload) {
        Ok(Reply::Ok(v)) => Ok(value::from_json(&v)),
        Ok(Reply::Err {
            kind,
            message,
            payload,
        }) => Err(CallError {
            kind: crate::process::error_kind(&kind).unwrap_or("UNKNOWN"),
            message,
            payload: payload.as_ref().map(value::from_json),
        }),
        Err(e) => Err(CallError::new(
            "INTERNAL",
            format!("function {target}: an unreadable answer from the cluster: {e}"),
        )),
    })
}

/// The functions this node serves to the cluster, kept equal to its registry's.
#[derive(Default)]
pub(super) struct Served {
    handler: Option<CallHandler>,
    /// Function id -> the task answering its calls (its subscriptions end with it).
    tasks: std::collections::HashMap<String, tokio::task::AbortHandle>,
    changes: Option<tokio::sync::mpsc::UnboundedSender<Arc<crate::registry::Registry>>>,
}

/// The function entries of `registry`.
fn function_ids(registry: &crate::registry::Registry) -> std::collections::BTreeSet<String> {
    registry
        .entries
        .values()
        .filter(|e| crate::functions::FUNCTION_KINDS.contains(&e.kind.as_str()))
        .map(|e| e.id.to_string())
        .collect()
}

impl Cluster {
    /// Serves the function entries of `registry` to the other nodes, running each call
    /// with `handler`; from then on [`Cluster::functions_changed`] serves the functions a
    /// registry change creates and withdraws those it deletes.
    pub async fn serve_functions(
        self: &Arc<Self>,
        registry: &crate::registry::Registry,
        handler: CallHandler,
    ) -> anyhow::Result<()> {
        self.served.lock().handler = Some(handler);
        self.serve(&function_ids(registry)).await?;
        // changes are applied one after another, in the registry's order
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Arc<crate::registry::Registry>>();
        self.served.lock().changes = Some(tx);
        let weak = Arc::downgrade(self);
        let task = tokio::spawn(async move {
            while let Some(registry) = rx.recv().await {
                let Some(c) = weak.upgrade() else { break };
                let want = function_ids(&registry);
                let gone: Vec<String> = {
                    let mut served = c.served.lock();
                    let gone: Vec<String> = served
                        .tasks
                        .keys()
                        .filter(|id| !want.contains(*id))
                        .cloned()
                        .collect();
                    for id in &gone {
                        if let Some(t) = served.tasks.remove(id) {
                            t.abort();
                        }
                    }
                    gone
                };
                for id in gone {
                    tracing::info!(function = %id, "cluster: function withdrawn");
                }
                if let Err(e) = c.serve(&want).await {
                    tracing::warn!("cluster: {e:#}");
                }
            }
        });
        self.tasks.lock().push(task.abort_handle());
        Ok(())
    }

    /// The registry changed: serve its new functions, withdraw its deleted ones.
    pub fn functions_changed(&self, registry: Arc<crate::registry::Registry>) {
        if let Some(tx) = &self.served.lock().changes {
            let _ = tx.send(registry);
        }
    }

    /// Serves each of `ids` not served yet.
    async fn serve(&self, ids: &std::collections::BTreeSet<String>) -> anyhow::Result<()> {
        let (handler, new): (CallHandler, Vec<String>) = {
            let served = self.served.lock();
            let Some(h) = served.handler.clone() else {
                return Ok(());
            };
            let new = ids
                .iter()
                .filter(|id| !served.tasks.contains_key(*id))
                .cloned()
                .collect();
            (h, new)
        };
        if new.is_empty() {
            return Ok(());
        }
        for id in new {
            let shared = self
                .client
                .queue_subscribe(self.space.function(&key(&id)), self.space.queue())
                .await
                .map_err(|e| anyhow::anyhow!("serving function {id} to the cluster: {e}"))?;
            let own = self
                .client
                .subscribe(self.space.function_at(&self.name, &key(&id)))
                .await
                .map_err(|e| anyhow::anyhow!("serving function {id} to the cluster: {e}"))?;
            let task = tokio::spawn(answer(
                futures::stream::select(shared, own),
                self.client.clone(),
                handler.clone(),
                id.clone(),
            ));
            if let Some(old) = self.served.lock().tasks.insert(id, task.abort_handle()) {
                old.abort();
            }
        }
        // the server has the subscriptions once it answered a ping: calls from now on
        // find this node
        self.client
            .flush()
            .await
            .map_err(|e| anyhow::anyhow!("serving functions to the cluster: {e}"))?;
        Ok(())
    }
}

/// Answers the calls of function `id` that arrive on `sub`.
async fn answer(
    mut sub: impl futures::Stream<Item = async_nats::Message> + Unpin,
    client: async_nats::Client,
    handler: CallHandler,
    id: String,
) {
    while let Some(m) = sub.next().await {
        let Some(reply_to) = m.reply.clone() else {
            continue;
        };
        let client = client.clone();
        let handler = handler.clone();
        let id = id.clone();
        tokio::spawn(async move {
            let reply = match serde_json::from_slice::<Request>(&m.payload) {
                Ok(req) => {
                    let args = req.a.iter().map(value::from_json).collect();
                    let context = Arc::new(CallContext {
                        actor: req.ac,
                        actor_meta: req.am.as_ref().map(value::from_json),
                        values: req
                            .v
                            .iter()
                            .map(|(k, v)| (k.clone(), value::from_json(v)))
                            .collect(),
                        scope: req.sc,
                        from_cluster: true,
                    });
                    let timeout = Duration::from_millis(req.t);
                    match handler(id, args, context, timeout).await {
                        Ok(v) => match value::to_json(&v) {
                            Ok(v) => Reply::Ok(v),
                            Err(e) => Reply::Err {
                                kind: "INVALID".into(),
                                message: format!("the result cannot cross nodes: {e}"),
                                payload: None,
                            },
                        },
                        Err(e) => Reply::Err {
                            kind: e.kind.into(),
                            message: e.message,
                            payload: e.payload.as_ref().and_then(|p| value::to_json(p).ok()),
                        },
                    }
                }
                Err(e) => Reply::Err {
                    kind: "INVALID".into(),
                    message: format!("an unreadable call: {e}"),
                    payload: None,
                },
            };
            let body = serde_json::to_vec(&reply).unwrap_or_default();
            let _ = client.publish(reply_to, body.into()).await;
        });
    }
}
