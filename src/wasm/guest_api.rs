//! warden's own host interfaces for guests (`wit/warden.wit`): `warden:process` (pid,
//! send, receive) and `warden:funcs` (call a registered function). They are linked only
//! into the linkers of entries that grant those groups in `imports`.
//!
//! Blocking host calls are async: a guest waiting in `receive` or in a function call
//! suspends its task (wasmtime async), never a thread. A function call from a guest runs
//! as a local task of the guest's worker thread (Lua functions need that thread's Lua
//! state), and the guest awaits its reply.

use super::store::{GuestCtx, StoreState};
use crate::functions::DEFAULT_TIMEOUT;
use crate::process::ProcessHandle;
use crate::value::{self, Value};
use std::sync::Arc;
use std::time::Duration;
use wasmtime::component::{ComponentType, Linker, Lower};
use wasmtime::StoreContextMut;

/// The WIT package of warden's host interfaces.
pub const WARDEN_WIT: &str = include_str!("../../wit/warden.wit");
/// The process interface, as guests import it.
pub const PROCESS_IFACE: &str = "warden:host/process@0.1.0";
/// The funcs interface, as guests import it.
pub const FUNCS_IFACE: &str = "warden:host/funcs@0.1.0";

#[derive(ComponentType, Lower, Clone, Debug)]
#[component(record)]
struct Message {
    topic: String,
    sender: String,
    payload: String,
}

fn host(store: &StoreContextMut<'_, StoreState>) -> wasmtime::Result<GuestCtx> {
    store
        .data()
        .host
        .clone()
        .ok_or_else(|| wasmtime::format_err!("warden host interfaces are not available here"))
}

fn process(h: &GuestCtx) -> wasmtime::Result<Arc<ProcessHandle>> {
    h.me.clone().ok_or_else(|| {
        wasmtime::format_err!("warden:process is only available to a process.wasm entry")
    })
}

/// JSON text of a message payload: one value as itself, several as an array.
fn payload_json(values: &[Value]) -> String {
    let v = match values {
        [one] => one.clone(),
        many => Value::Array(many.to_vec()),
    };
    value::to_json(&v)
        .map(|j| j.to_string())
        .unwrap_or_else(|e| {
            serde_json::Value::String(format!("unencodable payload: {e}")).to_string()
        })
}

/// Links the host interfaces of the warden groups in `groups`.
pub fn add_to_linker(linker: &mut Linker<StoreState>, groups: &[String]) -> wasmtime::Result<()> {
    let has = |g: &str| groups.iter().any(|x| x == g);
    if has("warden:process") {
        let mut inst = linker.instance(PROCESS_IFACE)?;
        inst.func_wrap("pid", |store, (): ()| {
            let h = host(&store)?;
            Ok((process(&h)?.pid.to_string(),))
        })?;
        inst.func_wrap(
            "send",
            |store, (dest, topic, payload): (String, String, String)| {
                let h = host(&store)?;
                let me = process(&h)?;
                let r = (|| {
                    let json: serde_json::Value = serde_json::from_str(&payload)
                        .map_err(|e| format!("send: the payload is not JSON: {e}"))?;
                    let to = h.node.resolve(&dest).map_err(|e| format!("send: {e}"))?;
                    h.node
                        .send(Some(&me.pid), &to, topic, vec![value::from_json(&json)])
                        .map_err(|e| format!("send: {e}"))
                })();
                Ok((r,))
            },
        )?;
        inst.func_wrap_async("receive", |store, (timeout,): (Option<u64>,)| {
            let me = host(&store).and_then(|h| process(&h));
            Box::new(async move {
                let me = me?;
                let next = std::future::poll_fn(|cx| {
                    me.register(cx.waker());
                    match me.pop_message() {
                        Some(m) => std::task::Poll::Ready(m),
                        None => {
                            super::function::mark_message_wait();
                            std::task::Poll::Pending
                        }
                    }
                });
                let got = match timeout {
                    Some(ms) => tokio::time::timeout(Duration::from_millis(ms), next)
                        .await
                        .ok(),
                    None => Some(next.await),
                };
                Ok((got.map(|m| Message {
                    topic: m.topic,
                    sender: m.from.map(|p| p.to_string()).unwrap_or_default(),
                    payload: payload_json(&m.payload),
                }),))
            })
        })?;
    }
    if has("warden:funcs") {
        let mut inst = linker.instance(FUNCS_IFACE)?;
        inst.func_wrap_async("call", |store, (id, args): (String, String)| {
            let h = host(&store);
            Box::new(async move {
                let h = h?;
                let args = match serde_json::from_str::<serde_json::Value>(&args) {
                    Ok(serde_json::Value::Array(items)) => {
                        items.iter().map(value::from_json).collect()
                    }
                    Ok(_) => return Ok((Err("call: args must be a JSON array".to_string()),)),
                    Err(e) => return Ok((Err(format!("call: args are not JSON: {e}")),)),
                };
                let (tx, rx) = tokio::sync::oneshot::channel();
                let node = h.node.clone();
                let context = h.context.clone();
                // a local task of this worker: Lua functions need its Lua state
                tokio::task::spawn_local(async move {
                    let r = node
                        .functions
                        .call(&node.registry(), &id, args, context, DEFAULT_TIMEOUT)
                        .await;
                    let _ = tx.send(r);
                });
                let r = match rx.await {
                    Ok(Ok(v)) => value::to_json(&v)
                        .map(|j| j.to_string())
                        .map_err(|e| format!("call: the result is not JSON: {e}")),
                    Ok(Err(e)) => Err(match &e.payload {
                        Some(p) => payload_json(std::slice::from_ref(p)),
                        None => e.message,
                    }),
                    Err(_) => Err("call: the runtime stopped".to_string()),
                };
                Ok((r,))
            })
        })?;
    }
    Ok(())
}
