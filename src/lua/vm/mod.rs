//! The Lua VM of a worker thread: its state and sandbox (`worker.rs`, `sandbox.lua`),
//! preemption (`preempt.rs`: the hook and the limits; `watchdog.rs`: the timer that arms
//! it), the raw C calls on values (`raw.rs`), and the timer tasks of a process or call
//! (`tasks.rs`).

pub(super) mod preempt;
pub(super) mod raw;
pub(super) mod tasks;
pub(super) mod watchdog;
pub(super) mod worker;
