//! A process's mailbox and what the rest of the node sees of it: control signals ahead of
//! data messages, both bounded, and the [`ProcessHandle`] that holds them with the
//! process's flags and relations.

use super::exit::Exit;
use super::host::Host;
use super::node::ProcessError;
use super::pid::Pid;
use super::relations::Relations;
use crate::registry::{Entry, Id};
use crate::value::Value;
use parking_lot::Mutex;
use std::collections::VecDeque;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::task::Waker;

/// A control signal, delivered before data messages.
#[derive(Debug)]
pub enum Signal {
    /// A monitored process ended.
    Down {
        /// The process that ended.
        from: Pid,
        /// How it ended.
        exit: Arc<Exit>,
    },
    /// A linked process ended abnormally.
    LinkDown {
        /// The process that ended.
        from: Pid,
        /// How it ended.
        exit: Arc<Exit>,
    },
    /// A polite request to stop.
    Cancel {
        /// Who asked (None: the runtime).
        from: Option<Pid>,
        /// Why.
        reason: Option<String>,
    },
    /// Stop now (with this reason; None: `terminated`).
    Terminate(Option<String>),
    /// The process's code (its entry or a library it imports) changed in the registry;
    /// the changed ids wait in its handle ([`ProcessHandle::take_outdated`]). Sent only
    /// to a process that opted in ([`ProcessHandle::set_upgradable`]).
    Outdated,
}

/// A data message.
#[derive(Debug, Clone)]
pub struct Message {
    /// Sender (None when sent by the runtime or a CLI).
    pub from: Option<Pid>,
    /// Topic.
    pub topic: String,
    /// Payload values (copied).
    pub payload: Vec<Value>,
}

/// What [`ProcessHandle::take_next`] took.
#[derive(Debug)]
pub enum Taken {
    /// A control signal (no messages were taken).
    Signal(Signal),
    /// The messages that fit (perhaps none); `more` when others still wait.
    Messages {
        /// Messages still wait in the mailbox.
        more: bool,
    },
}

/// Most data messages a mailbox holds; past it `send` fails with "mailbox is full"
/// (senders get an error, they never block).
pub const MAILBOX_LIMIT: usize = 65_536;

/// Most CANCEL requests that wait for one process; past it `cancel` fails (UNAVAILABLE).
/// The other control signals are bounded by what causes them: one terminate waits at a
/// time (the first one's reason is the exit's), and an EXIT or LINK_DOWN comes once per
/// monitor or link.
pub const CANCEL_LIMIT: usize = 1024;

#[derive(Default)]
struct Queues {
    ctrl: VecDeque<Signal>,
    data: VecDeque<Message>,
    closed: bool,
    /// A terminate waits in `ctrl`.
    terminating: bool,
    /// CANCELs waiting in `ctrl`.
    cancels: usize,
    /// Messages the process's task took from `data` but holds back because the channel
    /// they go to is full (see `lua::Parked`): they count against the mailbox's limit.
    parked: usize,
    /// The waker of the task that runs the process (registered by its polls, kept after a
    /// wake: the task takes messages under this lock, so no wake-up is lost).
    waker: Option<Waker>,
    /// The task was woken and has not registered since (later pushes need not wake it).
    woken: bool,
    /// It asked to hear of changes to its code (Wippy's `upgradable` option).
    upgradable: bool,
    /// The changed ids of a pending [`Signal::Outdated`] (later changes join the same one).
    /// Boxed: one pointer in every mailbox rather than a vector's three words.
    #[allow(clippy::box_collection)]
    outdated: Option<Box<Vec<Id>>>,
}

impl Queues {
    /// Keeps `w` as the task's waker (unless it is the same one).
    fn register(&mut self, w: &Waker) {
        self.woken = false;
        match &mut self.waker {
            Some(old) if old.will_wake(w) => {}
            slot => *slot = Some(w.clone()),
        }
    }

    /// Wakes the task once until it registers again (the waker stays: the task takes
    /// what is queued under this lock).
    fn wake(&mut self) {
        if self.woken {
            return;
        }
        if let Some(w) = &self.waker {
            self.woken = true;
            w.wake_by_ref();
        }
    }
}

/// A live process as the rest of the node sees it: its mailbox and relations.
///
/// The mailbox is two queues (control signals, data messages) and the waker of the
/// process task, under one lock; empty queues allocate nothing.
pub struct ProcessHandle {
    /// Its pid.
    pub pid: Pid,
    /// Its pid as text (`{node|id}`), formatted once: what its spawner returns and its own
    /// code reads.
    pub text: Box<str>,
    /// The entry it runs.
    pub entry: Arc<Entry>,
    queues: Mutex<Queues>,
    /// Set by terminate; a running body checks it at its preemption points.
    pub kill_requested: AtomicBool,
    /// Set once someone asked it to stop with `cancel` (a service that then ends is Exited,
    /// not Stopped).
    pub cancel_requested: AtomicBool,
    /// Set once the process can see a CANCEL (a Lua process that took its events channel;
    /// every WebAssembly process). A supervisor stops a process that cannot at once, as
    /// Erlang's `shutdown` kills a process that does not trap exits.
    pub sees_cancel: AtomicBool,
    /// The host it runs on.
    pub host: Arc<Host>,
    /// When it was spawned.
    pub started: std::time::Instant,
    pub(super) relations: Mutex<Relations>,
}

impl ProcessHandle {
    /// The handle of a new process `pid` running `entry` on `host`, with the relations it
    /// starts with; `sees_cancel` when its kind sees a CANCEL from the start (see
    /// [`super::ProcessKind`]).
    pub(super) fn new(
        pid: Pid,
        entry: Arc<Entry>,
        host: Arc<Host>,
        rel: Relations,
        sees_cancel: bool,
    ) -> Arc<ProcessHandle> {
        Arc::new(ProcessHandle {
            text: pid.text().into_boxed_str(),
            pid,
            sees_cancel: AtomicBool::new(sees_cancel),
            entry,
            queues: Mutex::new(Queues::default()),
            kill_requested: AtomicBool::new(false),
            cancel_requested: AtomicBool::new(false),
            host,
            started: std::time::Instant::now(),
            relations: Mutex::new(rel),
        })
    }

    /// Opts in to (or out of) [`Signal::Outdated`].
    pub fn set_upgradable(&self, on: bool) {
        self.queues.lock().upgradable = on;
    }

    /// Whether it opted in to [`Signal::Outdated`].
    pub fn is_upgradable(&self) -> bool {
        self.queues.lock().upgradable
    }

    /// The changed ids of its pending [`Signal::Outdated`], taken (empty when none).
    pub fn take_outdated(&self) -> Vec<Id> {
        self.queues
            .lock()
            .outdated
            .take()
            .map(|b| *b)
            .unwrap_or_default()
    }

    /// Tells it (if it opted in) that `sources` changed: a new [`Signal::Outdated`], or
    /// the ids joined to the one still pending.
    pub(super) fn outdate(&self, sources: Vec<Id>) {
        let mut q = self.queues.lock();
        if q.closed || !q.upgradable || sources.is_empty() {
            return;
        }
        match &mut q.outdated {
            Some(pending) => {
                for id in sources {
                    if !pending.contains(&id) {
                        pending.push(id);
                    }
                }
            }
            None => {
                q.outdated = Some(Box::new(sources));
                q.ctrl.push_back(Signal::Outdated);
                q.wake();
            }
        }
    }

    /// Queues control signal `s` (false: the process has ended).
    pub(super) fn signal(&self, s: Signal) -> bool {
        let mut q = self.queues.lock();
        if q.closed {
            return false;
        }
        match &s {
            Signal::Terminate(_) if q.terminating => return true,
            Signal::Terminate(_) => q.terminating = true,
            Signal::Cancel { .. } => q.cancels += 1,
            _ => {}
        }
        q.ctrl.push_back(s);
        q.wake();
        true
    }

    /// Queues data message `m`: an error when the process has ended or its mailbox is full.
    pub(super) fn message(&self, m: Message) -> Result<(), ProcessError> {
        let mut q = self.queues.lock();
        if q.closed {
            return Err(ProcessError::NotFound(format!(
                "process not found ({} is not running)",
                self.pid
            )));
        }
        if q.data.len() + q.parked >= MAILBOX_LIMIT {
            return Err(ProcessError::Busy(format!(
                "mailbox of {} is full ({MAILBOX_LIMIT} messages waiting)",
                self.pid
            )));
        }
        q.data.push_back(m);
        q.wake();
        Ok(())
    }

    /// Registers the waker of the task that owns this mailbox. Call it before popping, so
    /// that a push after the last pop wakes the task.
    pub fn register(&self, w: &Waker) {
        self.queues.lock().register(w);
    }

    /// The next control signal, if any.
    pub fn pop_signal(&self) -> Option<Signal> {
        let mut q = self.queues.lock();
        let s = q.ctrl.pop_front();
        if matches!(s, Some(Signal::Cancel { .. })) {
            q.cancels -= 1;
        }
        s
    }

    /// Whether another CANCEL may wait for this process (fewer than [`CANCEL_LIMIT`] do).
    pub(super) fn cancel_has_room(&self) -> bool {
        self.queues.lock().cancels < CANCEL_LIMIT
    }

    /// Under one lock, what a process's task takes when it runs: the next control signal
    /// if one waits; else up to `max` data messages, moved to the end of `out` (whole, by
    /// swapping the queues, when `out` is empty and they fit).
    /// `waker` is registered first, under the same lock.
    pub fn take_next(&self, waker: &Waker, out: &mut VecDeque<Message>, max: usize) -> Taken {
        let mut q = self.queues.lock();
        q.register(waker);
        if let Some(s) = q.ctrl.pop_front() {
            if matches!(s, Signal::Cancel { .. }) {
                q.cancels -= 1;
            }
            return Taken::Signal(s);
        }
        if out.is_empty() && q.data.len() <= max {
            std::mem::swap(out, &mut q.data);
            return Taken::Messages { more: false };
        }
        let n = max.min(q.data.len());
        out.extend(q.data.drain(..n));
        Taken::Messages {
            more: !q.data.is_empty(),
        }
    }

    /// The next data message, if any.
    pub fn pop_message(&self) -> Option<Message> {
        self.queues.lock().data.pop_front()
    }

    /// The reason of a pending terminate (`terminated` when it gave none): the exit of a
    /// process stopped at a preemption point rather than at its signal.
    pub fn terminate_reason(&self) -> String {
        self.queues
            .lock()
            .ctrl
            .iter()
            .find_map(|s| match s {
                Signal::Terminate(r) => Some(r.clone()),
                _ => None,
            })
            .flatten()
            .unwrap_or_else(|| "terminated".into())
    }

    /// Its links, the number of its monitors (watchers of it), and its names.
    pub fn relations(&self) -> (Vec<Pid>, usize, Vec<String>) {
        self.relations.lock().snapshot()
    }

    /// Closes the mailbox for good (the process exited): what waits in it is dropped and
    /// nothing more is queued.
    pub(super) fn close(&self) {
        let mut q = self.queues.lock();
        q.closed = true;
        q.ctrl.clear();
        q.data.clear();
        q.waker = None;
    }

    /// Messages waiting in the mailbox (with those its task holds back).
    pub fn queued_messages(&self) -> usize {
        let q = self.queues.lock();
        q.data.len() + q.parked
    }

    /// Counts `n` more (or, negative, fewer) messages held back by the process's task
    /// (taken from the mailbox, still waiting for room in their channel).
    pub fn add_parked(&self, n: isize) {
        let mut q = self.queues.lock();
        q.parked = q.parked.saturating_add_signed(n);
    }
}
