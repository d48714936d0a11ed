//! `process.wasm`: a WebAssembly component run as a process, an actor like a Lua one.
//!
//! Init: the spawn arguments are checked against the export's WIT signature before the
//! process exists (a mismatch is a spawn error); the component is instantiated on the
//! process's worker thread. Step: the export runs with the arguments; an async guest
//! suspends on I/O, sleeps, `receive` or function calls and resumes. Close: the store
//! (instance and memory) is dropped. Its return value is the EXIT result monitors see; a
//! trap, a limit or a WIT `result` error is the EXIT error. Control signals are watched
//! while the guest runs, so terminate, cancel or a failing link stop it, in a tight loop
//! too (the guest yields at every epoch tick).

use super::store::GuestCtx;
use super::{WasmResult, WasmRuntime};
use crate::functions::CallContext;
use crate::process::{Body, BodyFuture, Exit, ExitError, Launcher, Node, ProcessContext, Signal};
use crate::registry::{Entry, EntrySpec};
use crate::value::{self, Value};
use std::sync::Arc;
use std::task::Poll;

/// The launcher of `process.wasm` entries, compiled by `rt`.
pub fn launcher(rt: Arc<WasmRuntime>) -> Launcher {
    Arc::new(move |_node: &Arc<Node>, entry: &Arc<Entry>, args: &[Value]| launch(&rt, entry, args))
}

fn launch(rt: &Arc<WasmRuntime>, entry: &Arc<Entry>, args: &[Value]) -> Result<Body, String> {
    let EntrySpec::Wasm(spec) = &entry.spec else {
        return Err(format!(
            "entry {} is a {}, not a process.wasm",
            entry.id, entry.kind
        ));
    };
    let f = rt
        .function(&entry.id)
        .ok_or_else(|| format!("entry {} was not compiled", entry.id))?;
    f.convert_args(args)
        .map_err(|e| format!("entry {}: {}", entry.id, e.message))?;
    let reserved = f
        .reserve()
        .map_err(|why| format!("entry {}: cannot start: {why}", entry.id))?;
    if spec.pool.is_some() {
        tracing::debug!(entry = %entry.id, "pool is ignored for process.wasm (a process is its own worker)");
    }
    let stdio = spec.imports.iter().any(|g| g == "wasi:cli");
    Ok(Box::new(move |pctx: ProcessContext| {
        Box::pin(run(pctx, f, stdio, reserved)) as BodyFuture
    }))
}

fn exit_of(r: Result<WasmResult, crate::functions::CallError>) -> Exit {
    match r {
        Ok(WasmResult::Ok(v)) => Exit::Normal(v),
        Ok(WasmResult::Err(payload)) => {
            Exit::Error(ExitError::new("FAILED", value::display(&payload)))
        }
        Err(e) if e.kind == "EXIT" => match e.payload {
            Some(Value::Int(0)) => Exit::Normal(Value::Nil),
            Some(Value::Int(n)) => Exit::Error(format!("exited with status {n}").into()),
            _ => Exit::Error(ExitError::new(e.kind, e.message)),
        },
        Err(e) => Exit::Error(ExitError::new(e.kind, e.message)),
    }
}

async fn run(
    pctx: ProcessContext,
    f: Arc<super::function::WasmFunction>,
    stdio: bool,
    reserved: super::function::Reserved,
) -> Exit {
    let me = pctx.me.clone();
    let context = Arc::new(CallContext {
        actor: Some(me.text.to_string()),
        ..CallContext::default()
    });
    let host = GuestCtx {
        node: pctx.node.clone(),
        me: Some(me.clone()),
        context: context.clone(),
    };
    let signals = std::future::poll_fn(|cx| {
        me.register(cx.waker());
        while let Some(sig) = me.pop_signal() {
            match sig {
                Signal::Terminate(why) => {
                    return Poll::Ready(Exit::Killed(why.unwrap_or_else(|| "terminated".into())))
                }
                Signal::Cancel { .. } => return Poll::Ready(Exit::Killed("canceled".into())),
                Signal::LinkDown { from, exit } => {
                    return Poll::Ready(Exit::Killed(format!(
                        "linked process {from} failed: {}",
                        exit.error().unwrap_or("unknown error")
                    )))
                }
                Signal::Down { .. } | Signal::Outdated => {}
            }
        }
        Poll::Pending
    });
    let mut start = pctx.start;
    // pinned in this function's state (stored once; a process's state is allocated at
    // every spawn); polled through `started_at_wait` while a supervisor waits
    let guest = f.run_process(pctx.args, &context, host, stdio, reserved);
    tokio::pin!(guest);
    let guest = std::future::poll_fn(|cx| started_at_wait(guest.as_mut(), &mut start, cx));
    tokio::select! {
        biased;
        exit = signals => exit,
        r = guest => exit_of(r),
    }
}

/// Polls the guest and reports a supervised guest started when it first waits in its
/// mailbox `receive` (OTP's `init` has returned); a sleep or a call does not count.
fn started_at_wait<F: std::future::Future>(
    guest: std::pin::Pin<&mut F>,
    start: &mut Option<crate::process::StartNotice>,
    cx: &mut std::task::Context<'_>,
) -> Poll<F::Output> {
    if start.is_none() {
        return guest.poll(cx);
    }
    super::function::take_message_wait();
    let r = guest.poll(cx);
    if r.is_pending() && super::function::take_message_wait() {
        if let Some(n) = start.take() {
            n.send(crate::process::Started::Running);
        }
    }
    r
}
