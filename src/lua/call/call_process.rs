//! Function calls that run as processes: `funcs.call` of a `process.lua` entry, and of a
//! `function.lua` whose code uses the `process` global (`process.pid()`, `spawn`, `send`,
//! `inbox`, `listen`, `monitor`...), as Wippy allows. Such a call spawns the entry on the
//! caller's host (the default host when the caller is not a process), with the call's
//! context and arguments, and waits for its exit: a normal exit is the result, `nil, err`
//! or an error is the call's error. When the caller gives up (its timeout, or it is
//! stopped), the process is terminated.

use crate::functions::{CallContext, CallError, Executor, Pool};
use crate::lua::{current_any, Current};
use crate::process::{Exit, Node, Pid, SpawnOptions};
use crate::registry::Id;
use crate::value::Value;
use std::sync::{Arc, Weak};
use tokio::time::Instant;

/// Runs calls as processes (registered as [`crate::functions::AS_PROCESS`]).
pub struct ProcessCallExecutor {
    /// The node whose functions these are (weak: the node owns its executors).
    pub node: Weak<Node>,
    /// The host of calls made from outside any process.
    pub default_host: Id,
}

/// Terminates the call's process unless the call saw it exit.
struct StopOnDrop {
    node: Arc<Node>,
    pid: Option<Pid>,
}

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        if let Some(pid) = self.pid.take() {
            let _ = self.node.terminate(&pid);
        }
    }
}

impl Executor for ProcessCallExecutor {
    fn execute(
        &self,
        pool: Arc<Pool>,
        args: Vec<Value>,
        context: Arc<CallContext>,
        deadline: Instant,
    ) -> futures::future::LocalBoxFuture<'static, Result<Value, CallError>> {
        let node = self.node.upgrade();
        let host = match current_any() {
            Some(Current::Process(p)) => p.me.host.id.clone(),
            _ => self.default_host.clone(),
        };
        Box::pin(async move {
            let node = node.ok_or_else(|| CallError::new("UNAVAILABLE", "the runtime stopped"))?;
            let id = &pool.entry.id;
            let (tx, rx) = tokio::sync::oneshot::channel();
            let opts = SpawnOptions {
                on_exit: Some(Box::new(move |_, exit: &Arc<Exit>| {
                    let _ = tx.send((**exit).clone());
                })),
                context: Some(context),
                ..Default::default()
            };
            let pid = node
                .spawn(id, &host, args, opts)
                .map_err(|e| CallError::new(e.kind(), format!("function {id}: {e}")))?;
            let mut running = StopOnDrop {
                node: node.clone(),
                pid: Some(pid),
            };
            let exit = match tokio::time::timeout_at(deadline, rx).await {
                Err(_) => {
                    return Err(CallError::new(
                        "TIMEOUT",
                        format!("function {id}: timed out"),
                    ))
                }
                Ok(Err(_)) => return Err(CallError::new("UNAVAILABLE", "the runtime stopped")),
                Ok(Ok(exit)) => exit,
            };
            running.pid = None;
            match exit {
                Exit::Normal(v) => Ok(v),
                Exit::Error(e) => Err(CallError::new(e.kind, e.message)),
                Exit::Killed(why) => Err(CallError::new(
                    "CANCELED",
                    format!("function {id}: its process was stopped: {why}"),
                )),
            }
        })
    }

    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}
