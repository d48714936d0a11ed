//! The timer tasks of one process or one function call (`time.after`, `time.timer`,
//! `time.ticker`): each belongs to the code that started it and is aborted when that
//! process or call ends, so a process that exits with a timer of an hour pending leaves
//! nothing behind for that hour.

use std::cell::{OnceCell, RefCell};
use std::collections::HashMap;
use std::future::Future;
use std::rc::Rc;
use std::sync::atomic::{AtomicUsize, Ordering};
use tokio::task::AbortHandle;

/// Timer tasks alive on this node (all workers): what `/metrics` shows as
/// `warden_timer_tasks`.
static ALIVE: AtomicUsize = AtomicUsize::new(0);

/// How many timer tasks are alive now.
pub fn alive() -> usize {
    ALIVE.load(Ordering::Relaxed)
}

/// Counts one alive task while it exists (dropped when the task ends or is aborted).
struct Alive;

impl Alive {
    fn new() -> Alive {
        ALIVE.fetch_add(1, Ordering::Relaxed);
        Alive
    }
}

impl Drop for Alive {
    fn drop(&mut self) {
        ALIVE.fetch_sub(1, Ordering::Relaxed);
    }
}

#[derive(Default)]
struct Inner {
    next: u64,
    tasks: HashMap<u64, AbortHandle>,
}

/// The timer tasks of one process or call; dropping it aborts those still running.
/// Nothing is allocated until the first task (most calls start none).
#[derive(Default)]
pub(crate) struct TaskSet(OnceCell<Rc<RefCell<Inner>>>);

impl TaskSet {
    /// Runs `fut` on this worker thread as a task of this set (it leaves the set when it
    /// ends).
    pub(crate) fn spawn(&self, fut: impl Future<Output = ()> + 'static) {
        let inner = self.0.get_or_init(Default::default);
        let id = {
            let mut inner = inner.borrow_mut();
            inner.next += 1;
            inner.next
        };
        let set = Rc::downgrade(inner);
        let alive = Alive::new();
        let handle = tokio::task::spawn_local(async move {
            let _alive = alive;
            fut.await;
            if let Some(set) = set.upgrade() {
                set.borrow_mut().tasks.remove(&id);
            }
        });
        inner.borrow_mut().tasks.insert(id, handle.abort_handle());
    }

    /// Aborts every task of the set.
    pub(crate) fn abort_all(&self) {
        let Some(inner) = self.0.get() else {
            return;
        };
        let tasks = std::mem::take(&mut inner.borrow_mut().tasks);
        for (_, h) in tasks {
            h.abort();
        }
    }
}

impl Drop for TaskSet {
    fn drop(&mut self) {
        self.abort_all();
    }
}

/// Runs a timer task for the code running now: owned by its process or call, or (outside
/// both) a plain task of this thread.
pub(crate) fn spawn(fut: impl Future<Output = ()> + 'static) {
    match crate::lua::current_any() {
        Some(crate::lua::Current::Process(p)) => p.tasks.spawn(fut),
        Some(crate::lua::Current::Call(c)) => c.tasks.spawn(fut),
        None => {
            let alive = Alive::new();
            tokio::task::spawn_local(async move {
                let _alive = alive;
                fut.await;
            });
        }
    }
}
