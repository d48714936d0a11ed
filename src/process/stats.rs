//! Node-wide counters for the operator's view (`warden run --admin`): exits by kind,
//! messages sent (spawns are the pid counter, `Node::spawned`). Each is cheap enough for the hot path: messages are counted in
//! per-thread slots (no cache line shared between threads), summed when read.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

/// Slots of a [`Sharded`] counter.
const SLOTS: usize = 64;

/// A counter on its own cache line.
#[repr(align(128))]
#[derive(Default)]
struct Padded(AtomicU64);

/// A counter that many threads add to: each thread adds to its own slot.
pub struct Sharded {
    slots: Box<[Padded]>,
}

impl Default for Sharded {
    fn default() -> Self {
        Sharded {
            slots: (0..SLOTS).map(|_| Padded::default()).collect(),
        }
    }
}

static NEXT_SLOT: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    static SLOT: usize = NEXT_SLOT.fetch_add(1, Ordering::Relaxed) % SLOTS;
}

impl Sharded {
    /// Adds `n` (in this thread's slot).
    pub fn add(&self, n: u64) {
        let i = SLOT.with(|s| *s);
        self.slots[i].0.fetch_add(n, Ordering::Relaxed);
    }

    /// The total.
    pub fn get(&self) -> u64 {
        self.slots.iter().map(|s| s.0.load(Ordering::Relaxed)).sum()
    }
}

/// The counters of a node.
#[derive(Default)]
pub struct Stats {
    /// Processes that returned.
    pub exits_normal: AtomicU64,
    /// Processes that failed (an error raised or returned).
    pub exits_error: AtomicU64,
    /// Processes stopped from outside (terminated, killed by a link, canceled).
    pub exits_killed: AtomicU64,
    /// Data messages delivered to mailboxes.
    pub messages: Sharded,
    /// Messages from other nodes dropped because their process's mailbox was full.
    pub remote_dropped: AtomicU64,
}
