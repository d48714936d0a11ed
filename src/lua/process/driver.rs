//! The task of a Lua process: the driver that resumes its coroutines and routes its
//! mailbox into its channels, and the launcher of `process.lua` entries.

use crate::lua::context::{Current, CurrentGuard, CURRENT};
use crate::lua::preempt::over_memory;
use crate::lua::worker::{lua_spec, worker, Factory, LuaWorker};
use crate::lua::Services;
use crate::lua::{channel, errors, watchdog};
use crate::process::{Body, Exit, ExitError, Launcher, Message, Node, ProcessContext, Taken};
use crate::registry::{Entry, EntrySpec};
use crate::value::{self, Value};
use futures::stream::{FuturesUnordered, StreamExt};
use mlua::Table;
use std::cell::Cell;
use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::{Context, Poll};

use crate::lua::proc_ctx::{ProcCtx, MESSAGES_PER_POLL};

thread_local! {
    /// The messages one poll of a process takes from its mailbox, on their way to its
    /// channels (empty between polls; its room is reused by every process of the worker).
    static BATCH: Cell<VecDeque<Message>> = const { Cell::new(VecDeque::new()) };
}

/// A coroutine started with `coroutine.spawn`.
pub(in crate::lua) struct Spawned {
    pub(in crate::lua) ptr: *const std::ffi::c_void,
    pub(in crate::lua) fut: mlua::AsyncThread<()>,
}

impl Future for Spawned {
    type Output = (*const std::ffi::c_void, mlua::Result<()>);
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let ptr = self.ptr;
        CURRENT.with(|c| {
            if let Some(Current::Process(ctx)) = c.borrow().as_ref() {
                ctx.run.polling.set(ptr as usize);
            }
        });
        let _running = watchdog::Running::enter(ptr);
        Pin::new(&mut self.fut).poll(cx).map(|r| (ptr, r))
    }
}

/// The task of one Lua process: routes its mailbox into Lua channels and resumes its
/// coroutines.
pub(in crate::lua) struct Driver {
    pub(in crate::lua) ctx: Rc<ProcCtx>,
    pub(in crate::lua) main: mlua::AsyncThread<mlua::MultiValue>,
    pub(in crate::lua) main_ptr: *const std::ffi::c_void,
    /// Coroutines started with `coroutine.spawn` (created on first use).
    pub(in crate::lua) coros: Option<FuturesUnordered<Spawned>>,
    /// Messages were moved into Lua channels in this poll.
    pub(in crate::lua) routed: bool,
    /// It drives a function call that became a process: the main coroutine's results are
    /// kept here for the caller, as a function call returns them (the driver then ends
    /// with a placeholder exit). Boxed: every process's task carries the slot, few use it.
    pub(in crate::lua) call_result: Option<Box<Option<mlua::Result<mlua::MultiValue>>>>,
}

impl Drop for Driver {
    fn drop(&mut self) {
        self.ctx.release();
    }
}

impl Driver {
    /// The driver of a function call that became a process: it goes on with the call's
    /// coroutine `main` and keeps its results for the caller.
    pub(crate) fn for_call(
        ctx: Rc<ProcCtx>,
        main: mlua::AsyncThread<mlua::MultiValue>,
        main_ptr: *const std::ffi::c_void,
    ) -> Driver {
        Driver {
            ctx,
            main,
            main_ptr,
            coros: None,
            routed: false,
            call_result: Some(Box::new(None)),
        }
    }

    /// The process it drives.
    pub(crate) fn ctx(&self) -> &Rc<ProcCtx> {
        &self.ctx
    }

    /// The results of a call's coroutine, once it returned (see [`Driver::for_call`]).
    pub(crate) fn take_call_result(&mut self) -> Option<mlua::Result<mlua::MultiValue>> {
        self.call_result.as_mut()?.take()
    }

    /// How a body's return ends the process: `nil, err` or `false, err` is a failure
    /// with that error (as Wippy reads a Lua result); anything else returns its first
    /// value.
    pub(in crate::lua) fn exit_of(&self, r: mlua::Result<mlua::MultiValue>) -> Exit {
        match r {
            Ok(values) => {
                let mut it = values.into_iter();
                match (it.next(), it.next()) {
                    (None, _) => Exit::Normal(Value::Nil),
                    (Some(mlua::Value::Nil | mlua::Value::Boolean(false)), Some(err))
                        if !err.is_nil() =>
                    {
                        Exit::Error(ExitError::new(
                            errors::kind_of_value(&err),
                            errors::text_of(&err),
                        ))
                    }
                    (Some(v), _) => match value::from_lua(&v) {
                        Ok(v) => Exit::Normal(v),
                        Err(e) => Exit::Error(ExitError::new(
                            "INVALID",
                            format!("the process result cannot be copied: {e}"),
                        )),
                    },
                }
            }
            Err(e) => self.error_exit(&e),
        }
    }

    pub(in crate::lua) fn error_exit(&self, e: &mlua::Error) -> Exit {
        // made in every case: it reads back the raised error's kind, none is left over
        let exit = raised_exit(e);
        if self.ctx.me.kill_requested.load(Ordering::Relaxed) {
            Exit::Killed(self.ctx.me.terminate_reason())
        } else {
            exit
        }
    }

    /// Moves the messages taken from the mailbox (`batch`, emptied) into Lua channels
    /// while they have room (the others are held back, see `ProcCtx::park`); `more` when
    /// others still wait in the mailbox (the task then runs again soon).
    pub(in crate::lua) fn route(
        &mut self,
        cx: &mut Context<'_>,
        batch: &mut VecDeque<Message>,
        more: bool,
    ) -> Option<Exit> {
        // a coroutine stopped by preemption may be about to yield `poll_pending` without
        // looking at its channel again: wake it as usual then
        let polled = (!self.ctx.run.preempted.get()).then(|| cx.waker());
        if self.ctx.parked_count.get() > 0 {
            match self.ctx.unpark(polled) {
                Ok(moved) => self.routed |= moved,
                Err(e) => return Some(raised_exit(&e)),
            }
        }
        while let Some(m) = batch.pop_front() {
            if self.ctx.must_wait(&m.topic) {
                self.ctx.park(m);
                continue;
            }
            if let Err(e) = self.ctx.deliver(m, polled) {
                batch.clear();
                return Some(raised_exit(&e));
            }
            self.routed = true;
        }
        if more {
            cx.waker().wake_by_ref();
        }
        None
    }

    /// Goes on with the code `process.upgrade` asked for: the running code (its main
    /// thread and the coroutines it spawned) is dropped; the process keeps its pid, its
    /// mailbox and the messages waiting in its channels, its links, monitors, names and
    /// options, and runs the new entry's method with the given arguments, in that entry's
    /// environment.
    pub(in crate::lua) fn upgrade(
        &mut self,
        entry: Arc<Entry>,
        args: Vec<Value>,
    ) -> mlua::Result<()> {
        let w = worker()?;
        let spec = lua_spec(&entry).ok_or_else(|| mlua::Error::runtime("not a Lua entry"))?;
        let factory = w.factory(&entry, spec)?;
        let (main, main_ptr, env) = main_coroutine(&w, &factory, &args)?;
        tracing::debug!(pid = %self.ctx.pid_str(), from = %self.ctx.entry().id, to = %entry.id, "process upgraded");
        *self.ctx.entry.borrow_mut() = entry;
        *self.ctx.env.borrow_mut() = env;
        self.ctx.spawned.borrow_mut().clear();
        self.coros = None;
        self.main = main;
        self.main_ptr = main_ptr;
        Ok(())
    }

    pub(crate) fn step(&mut self, cx: &mut Context<'_>) -> Poll<Exit> {
        let r = self.step_code(cx);
        if r.is_pending() && self.ctx.ignored.get() {
            return Poll::Ready(Exit::Normal(Value::Str(b"ignore".to_vec())));
        }
        if r.is_pending() && self.ctx.upgrade_asked.replace(false) {
            let next = self.ctx.upgrade.borrow_mut().take().map(|b| *b);
            if let Some((entry, args)) = next {
                if let Err(e) = self.upgrade(entry, args) {
                    return Poll::Ready(raised_exit(&e));
                }
                cx.waker().wake_by_ref();
            }
        }
        r
    }

    pub(in crate::lua) fn step_code(&mut self, cx: &mut Context<'_>) -> Poll<Exit> {
        // one lock takes the signals, one at a time, then the messages; the messages go
        // through a buffer kept by the worker thread, so a poll allocates nothing
        let mut batch = BATCH.take();
        let more = loop {
            let sig = match self
                .ctx
                .me
                .take_next(cx.waker(), &mut batch, MESSAGES_PER_POLL)
            {
                Taken::Messages { more } => break more,
                Taken::Signal(sig) => sig,
            };
            let exit = match self.ctx.on_signal(sig) {
                Ok(None) => continue,
                Ok(Some(exit)) => exit,
                Err(e) => Exit::Error(ExitError::new("INTERNAL", errors::message(&e))),
            };
            BATCH.set(batch);
            return Poll::Ready(exit);
        };
        let routed = self.route(cx, &mut batch, more);
        BATCH.set(batch);
        if let Some(exit) = routed {
            return Poll::Ready(exit);
        }
        // The hook checks the heap only in a coroutine that runs a whole time slice; a
        // process that grows the heap by receiving is caught here, after its messages
        // came in (not any process that happens to run while the heap is high).
        if std::mem::take(&mut self.routed) && over_memory(&self.ctx.lua, self.ctx.run.mem_limit) {
            return Poll::Ready(Exit::Error(ExitError::new(
                "INTERNAL",
                self.ctx.memory_error(),
            )));
        }
        let starting = self
            .ctx
            .start
            .borrow()
            .as_ref()
            .is_some_and(|n| !n.explicit);
        if starting {
            channel::take_message_wait();
        }
        self.ctx.run.polling.set(self.main_ptr as usize);
        self.ctx.run.resuming();
        let running = watchdog::Running::enter(self.main_ptr);
        let polled = Pin::new(&mut self.main).poll(cx);
        drop(running);
        if let Poll::Ready(r) = polled {
            if let Some(slot) = &mut self.call_result {
                **slot = Some(r);
                return Poll::Ready(Exit::Normal(Value::Nil));
            }
            return Poll::Ready(self.exit_of(r));
        }
        self.ctx.run.suspended();
        // its first wait for a message ends its start (OTP's init has returned), unless it
        // acknowledges explicitly; a sleep, a call or a channel of its own does not
        if starting {
            self.started_if_waiting();
        }
        // the coroutine may have made room in a full channel: route the rest soon
        if self.ctx.parked_has_room() {
            cx.waker().wake_by_ref();
        }
        if self.coros.is_none() && self.ctx.spawned.borrow().is_empty() {
            return Poll::Pending;
        }
        let coros = self.coros.get_or_insert_with(FuturesUnordered::new);
        loop {
            let new: Vec<mlua::Thread> = std::mem::take(&mut *self.ctx.spawned.borrow_mut());
            for t in new {
                let ptr = t.to_pointer();
                match t.into_async::<()>(()) {
                    Ok(fut) => coros.push(Spawned { ptr, fut }),
                    Err(e) => {
                        return Poll::Ready(Exit::Error(ExitError::new(
                            "INTERNAL",
                            errors::message(&e),
                        )))
                    }
                }
            }
            match coros.poll_next_unpin(cx) {
                Poll::Ready(Some((_, Err(e)))) => {
                    let exit = if self.ctx.me.kill_requested.load(Ordering::Relaxed) {
                        Exit::Killed(self.ctx.me.terminate_reason())
                    } else {
                        raised_exit(&e)
                    };
                    return Poll::Ready(match exit {
                        Exit::Error(e) => Exit::Error(ExitError::new(
                            e.kind,
                            format!("in a spawned coroutine: {}", e.message),
                        )),
                        other => other,
                    });
                }
                Poll::Ready(Some((_, Ok(())))) => continue,
                Poll::Ready(None) | Poll::Pending => {
                    if self.ctx.spawned.borrow().is_empty() {
                        if starting {
                            self.started_if_waiting();
                        }
                        return Poll::Pending;
                    }
                }
            }
        }
    }

    /// Reports the process started to the supervisor waiting for it, when its code (the
    /// main coroutine or a spawned one) now waits for a message.
    pub(in crate::lua) fn started_if_waiting(&self) {
        if !channel::take_message_wait() {
            return;
        }
        let mut start = self.ctx.start.borrow_mut();
        if start.as_ref().is_some_and(|n| !n.explicit) {
            if let Some(n) = start.take() {
                n.send(crate::process::Started::Running);
            }
        }
    }
}

impl Future for Driver {
    type Output = Exit;
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Exit> {
        let _current = CurrentGuard::enter(Current::Process(self.ctx.clone()));
        self.step(cx)
    }
}

/// The exit of a process whose Lua code raised `e`: the raised error object's kind, or
/// INTERNAL (see `errors::kind_of_raised`).
pub(in crate::lua) fn raised_exit(e: &mlua::Error) -> Exit {
    let message = errors::message(e);
    Exit::Error(ExitError::new(errors::kind_of_raised(&message), message))
}

/// The launcher of `process.lua` entries (and of `function.lua` entries whose calls run
/// as processes, see `call_process`).
/// Its processes reach the runtime's `services`.
pub fn launcher(services: Arc<Services>) -> Launcher {
    Arc::new(
        move |_node: &Arc<Node>, entry: &Arc<Entry>, _args: &[Value]| match &entry.spec {
            EntrySpec::ProcessLua(_) | EntrySpec::FunctionLua(_) => {
                let services = services.clone();
                // the body runs in the process's task, on its worker: it starts the Lua
                // side at once, and the task holds the driver alone (96 bytes, where an
                // async block holding the start's arguments as well took 288)
                Ok(Box::new(
                    move |pctx: ProcessContext| match start_process(pctx, services) {
                        Ok(driver) => Box::pin(driver) as crate::process::BodyFuture,
                        Err(e) => Box::pin(std::future::ready(raised_exit(&e))),
                    },
                ) as Body)
            }
            _ => Err(format!(
                "entry {} is a {}, not a process.lua",
                entry.id, entry.kind
            )),
        },
    )
}

/// A process's main coroutine (not started), its pointer, and the process's globals.
type MainCoroutine = (
    mlua::AsyncThread<mlua::MultiValue>,
    *const std::ffi::c_void,
    Table,
);

/// The main coroutine of a process running an entry (compiled as `factory`) with `args`,
/// and the process's new globals: one call of the entry's starter.
fn main_coroutine(w: &LuaWorker, factory: &Factory, args: &[Value]) -> mlua::Result<MainCoroutine> {
    let (thread, env) = crate::lua::raw::process_coroutine(&w.lua, &factory.starter, args)?;
    let main_ptr = thread.to_pointer();
    Ok((thread.into_async(())?, main_ptr, env))
}

pub(in crate::lua) fn start_process(
    pctx: ProcessContext,
    services: Arc<Services>,
) -> mlua::Result<Driver> {
    let w = worker()?;
    let ProcessContext {
        node,
        me,
        args,
        context,
        start,
    } = pctx;
    let entry = me.entry.clone();
    let spec = lua_spec(&entry).ok_or_else(|| mlua::Error::runtime("not a Lua entry"))?;
    let factory = w.factory(&entry, spec)?;
    let (main, main_ptr, env) = main_coroutine(&w, &factory, &args)?;
    let ctx = Rc::new(ProcCtx::new(
        node,
        services,
        me,
        entry,
        w.lua.clone(),
        env,
        context,
        start,
        &factory.limits,
    ));
    Ok(Driver {
        ctx,
        main,
        main_ptr,
        coros: None,
        routed: false,
        call_result: None,
    })
}
