//! Process hosts: the schedulers that run processes.
//!
//! A `process.host` owns `workers` OS threads. Each runs a single-threaded tokio runtime with
//! a `LocalSet`; a process is one local task pinned to one worker, so messages between
//! processes of the same worker never cross threads. A spawn from a process lands on the
//! spawner's own worker; other spawns go to the least loaded worker.
//!
//! `queue_size` bounds the spawns that were accepted but have not started running yet;
//! past it, spawn fails with a "queue is full" error instead of growing without bound.

use super::{Body, BodyFuture, Exit, Node, ProcessContext, ProcessError, ProcessHandle};
use crate::registry::{HostSpec, Id};
use parking_lot::Mutex;
use std::cell::Cell;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use tokio::sync::mpsc::{unbounded_channel, UnboundedSender};

type Job = Box<dyn FnOnce() + Send>;

enum Cmd {
    Run(Job),
    Stop,
}

struct Worker {
    tx: UnboundedSender<Cmd>,
    live: AtomicUsize,
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
    /// Its runtime (for its busy time, which tokio measures anyway).
    runtime: std::sync::OnceLock<tokio::runtime::Handle>,
}

thread_local! {
    /// (host address, worker index) of the worker running on this thread.
    static CURRENT_WORKER: Cell<(usize, usize)> = const { Cell::new((0, usize::MAX)) };
    /// The host whose worker runs on this thread.
    static THIS_HOST: std::cell::RefCell<std::sync::Weak<Host>> =
        const { std::cell::RefCell::new(std::sync::Weak::new()) };
}

/// The host whose worker thread this is (None off the hosts' threads: the CLI, a test).
pub(crate) fn this_thread_host() -> Option<Arc<Host>> {
    THIS_HOST.with(|h| h.borrow().upgrade())
}

/// A scheduler for processes: a set of single-threaded workers.
pub struct Host {
    /// The `process.host` entry id.
    pub id: Id,
    /// Its settings.
    pub spec: HostSpec,
    workers: Vec<Worker>,
    pending: AtomicUsize,
    stopped: AtomicBool,
}

impl Host {
    /// Starts the worker threads of a host.
    pub fn new(id: Id, spec: HostSpec) -> std::io::Result<Arc<Host>> {
        let n = spec.workers.max(1);
        let mut receivers = Vec::with_capacity(n);
        let workers = (0..n)
            .map(|_| {
                let (tx, rx) = unbounded_channel();
                receivers.push(rx);
                Worker {
                    tx,
                    live: AtomicUsize::new(0),
                    thread: Mutex::new(None),
                    runtime: std::sync::OnceLock::new(),
                }
            })
            .collect();
        let host = Arc::new(Host {
            id,
            spec,
            workers,
            pending: AtomicUsize::new(0),
            stopped: AtomicBool::new(false),
        });
        let addr = Arc::as_ptr(&host) as usize;
        for (i, mut rx) in receivers.into_iter().enumerate() {
            let name = format!("warden-{}-{i}", host.id.name);
            let me = Arc::downgrade(&host);
            let t = std::thread::Builder::new().name(name).spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("worker runtime");
                if let Some(h) = me.upgrade() {
                    let _ = h.workers[i].runtime.set(rt.handle().clone());
                }
                THIS_HOST.with(|h| *h.borrow_mut() = me.clone());
                drop(me);
                let local = tokio::task::LocalSet::new();
                CURRENT_WORKER.with(|c| c.set((addr, i)));
                local.block_on(&rt, async move {
                    while let Some(cmd) = rx.recv().await {
                        match cmd {
                            Cmd::Run(job) => job(),
                            Cmd::Stop => break,
                        }
                    }
                });
                // Dropping the LocalSet drops every process still running here; their exit
                // guards publish the exits.
                drop(local);
                CURRENT_WORKER.with(|c| c.set((0, usize::MAX)));
            })?;
            *host.workers[i].thread.lock() = Some(t);
        }
        tracing::debug!(host = %host.id, workers = n, "process host started");
        Ok(host)
    }

    /// Number of worker threads.
    pub fn worker_count(&self) -> usize {
        self.workers.len()
    }

    /// Live processes per worker.
    pub fn load(&self) -> Vec<usize> {
        self.workers
            .iter()
            .map(|w| w.live.load(Ordering::Relaxed))
            .collect()
    }

    /// How long each worker thread has been busy running processes and calls so far.
    pub fn busy(&self) -> Vec<std::time::Duration> {
        self.workers
            .iter()
            .map(|w| {
                w.runtime
                    .get()
                    .map(|h| h.metrics().worker_total_busy_duration(0))
                    .unwrap_or_default()
            })
            .collect()
    }

    /// Spawns accepted but not started yet.
    pub fn pending(&self) -> usize {
        self.pending.load(Ordering::Relaxed)
    }

    /// Runs `job` on one of this host's workers (used for work that must live on a worker
    /// thread, such as benchmarks and tests that need a worker's Lua state).
    pub fn run_on_worker(&self, index: usize, job: impl FnOnce() + Send + 'static) -> bool {
        self.workers
            .get(index)
            .is_some_and(|w| w.tx.send(Cmd::Run(Box::new(job))).is_ok())
    }

    pub(crate) fn reserve(&self) -> Result<(), ProcessError> {
        if self.stopped.load(Ordering::Acquire) {
            return Err(ProcessError::Busy(format!("host {} is stopped", self.id)));
        }
        let prev = self.pending.fetch_add(1, Ordering::AcqRel);
        if prev >= self.spec.queue_size {
            self.pending.fetch_sub(1, Ordering::AcqRel);
            return Err(ProcessError::Busy(format!(
                "host {} queue is full ({} spawns waiting to start, queue_size {})",
                self.id, prev, self.spec.queue_size
            )));
        }
        Ok(())
    }

    fn current_index(&self) -> Option<usize> {
        let (addr, i) = CURRENT_WORKER.with(|c| c.get());
        (addr == self as *const Host as usize).then_some(i)
    }

    /// A process spawned from a process of this host starts on its parent's worker, as
    /// the BEAM places a new process on its parent's scheduler: related processes then talk
    /// without crossing threads (about 0.4 us a message instead of 20 us). Spawns from
    /// anywhere else (the CLI, supervisors) go to the worker with the fewest processes.
    fn pick_worker(&self) -> usize {
        if let Some(mine) = self.current_index() {
            return mine;
        }
        let (mut best, mut best_load) = (0, usize::MAX);
        for (i, w) in self.workers.iter().enumerate() {
            let l = w.live.load(Ordering::Relaxed);
            if l < best_load {
                best = i;
                best_load = l;
            }
        }
        best
    }

    pub(crate) fn start(self: &Arc<Self>, ctx: ProcessContext, body: Body) {
        let idx = self.pick_worker();
        self.workers[idx].live.fetch_add(1, Ordering::Relaxed);
        let node = ctx.node.clone();
        let pid = ctx.me.pid.clone();
        let job = move || {
            let guard = ExitGuard {
                node: ctx.node.clone(),
                me: ctx.me.clone(),
                idx,
                done: false,
            };
            tokio::task::spawn_local(ProcessTask {
                state: TaskState::Start(ctx, body),
                guard,
            });
        };
        if self.current_index() == Some(idx) {
            job();
        } else if self.workers[idx].tx.send(Cmd::Run(Box::new(job))).is_err() {
            self.pending.fetch_sub(1, Ordering::AcqRel);
            self.workers[idx].live.fetch_sub(1, Ordering::Relaxed);
            node.publish_exit(&pid, Exit::Killed(format!("host {} is stopped", self.id)));
        }
    }

    /// Stops the workers; processes still running are killed. Blocks until the worker
    /// threads have ended (call it from outside the workers).
    pub fn shutdown(&self) {
        if self.stopped.swap(true, Ordering::AcqRel) {
            return;
        }
        for w in &self.workers {
            let _ = w.tx.send(Cmd::Stop);
        }
        for w in &self.workers {
            if let Some(t) = w.thread.lock().take() {
                if t.thread().id() != std::thread::current().id() {
                    let _ = t.join();
                }
            }
        }
        tracing::debug!(host = %self.id, "process host stopped");
    }
}

/// Publishes the exit of a process's task exactly once: the body's exit when it ends, or
/// "killed" when the task is dropped without one (its host stopped, a panic).
struct ExitGuard {
    node: Arc<Node>,
    me: Arc<ProcessHandle>,
    idx: usize,
    done: bool,
}

impl ExitGuard {
    fn finish(&mut self, exit: Exit) {
        self.done = true;
        self.me.host.workers[self.idx]
            .live
            .fetch_sub(1, Ordering::Relaxed);
        self.node.publish_exit(&self.me.pid, exit);
    }
}

impl Drop for ExitGuard {
    fn drop(&mut self) {
        if !self.done {
            let host = &self.me.host;
            host.workers[self.idx].live.fetch_sub(1, Ordering::Relaxed);
            let why = if host.stopped.load(Ordering::Acquire) {
                format!("host {} stopped", host.id)
            } else if std::thread::panicking() {
                "process panicked".to_string()
            } else {
                "process aborted".to_string()
            };
            self.node.publish_exit(&self.me.pid, Exit::Killed(why));
        }
    }
}

/// Where a process's task is: its body not built yet (it is built on the worker, at the
/// first poll), running, or ended.
enum TaskState {
    Start(ProcessContext, Body),
    Run(BodyFuture),
    Done,
}

/// The task of one process on its worker: its body and the guard that publishes its exit.
/// Written out, 128 bytes, where an async fn holding the same took 280: tokio aligns a
/// task to 128 bytes, so a process's task takes 256 bytes instead of 384.
struct ProcessTask {
    state: TaskState,
    guard: ExitGuard,
}

impl std::future::Future for ProcessTask {
    type Output = ();

    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<()> {
        let this = &mut *self;
        if matches!(this.state, TaskState::Start(..)) {
            let TaskState::Start(ctx, body) = std::mem::replace(&mut this.state, TaskState::Done)
            else {
                unreachable!("the state was just matched")
            };
            this.guard.me.host.pending.fetch_sub(1, Ordering::AcqRel);
            this.state = TaskState::Run(body(ctx));
        }
        let TaskState::Run(body) = &mut this.state else {
            return std::task::Poll::Ready(());
        };
        match body.as_mut().poll(cx) {
            std::task::Poll::Ready(exit) => {
                // the body's future goes before its exit is published, as it did when
                // this task was an async fn
                this.state = TaskState::Done;
                this.guard.finish(exit);
                std::task::Poll::Ready(())
            }
            std::task::Poll::Pending => std::task::Poll::Pending,
        }
    }
}
