//! Processes: pids, the process table, mailboxes, monitors, links, names and exits.
//!
//! A process is a lightweight actor: one task on a host worker thread (see [`host`]) plus
//! two mailbox queues (control signals and data messages) in its handle, which the node's
//! process table holds. This layer is language-neutral: what a process runs is a [`Body`]
//! built by the [`Launcher`] of the entry's kind (the Lua and WebAssembly hosts register
//! theirs as [`ProcessKind`]s). It names no entry kind.
//!
//! Exits are published exactly once, on every path (return, error, terminate, panic, worker
//! shutdown), by an exit guard owned by the process task: monitors receive an EXIT signal,
//! linked processes a LINK_DOWN signal (abnormal exits only), and registered names are
//! freed.
//!
//! The files, bottom up: `pid.rs` (pids), `exit.rs` (how a process ends), `mailbox.rs`
//! (signals, messages, the handle), `relations.rs` (monitors, links, names: the only code
//! that edits them), `node.rs` (the table, names, send, cancel, terminate, monitor, link),
//! `spawn.rs` (spawn and the exit path), `remote.rs` (what crosses to other nodes),
//! `host.rs` (worker threads), `stats.rs` (counters). Beside them, two services every
//! node has: `events.rs` (the event bus) and `pg.rs` (process groups).

pub mod events;
mod exit;
pub mod host;
mod mailbox;
mod node;
pub mod pg;
mod pid;
mod relations;
mod remote;
mod spawn;
pub mod stats;

pub use exit::{error_kind, noconnection, Exit, ExitError, ERROR_KINDS};
pub use host::Host;
pub use mailbox::{Message, ProcessHandle, Signal, Taken, CANCEL_LIMIT, MAILBOX_LIMIT};
pub use node::{Node, ProcessError};
pub use pid::{Pid, CREATION_SHIFT};
pub use relations::ExitCallback;
pub use remote::{Remote, RemoteOp};
pub use spawn::{
    Body, BodyFuture, Launcher, ProcessContext, ProcessKind, SpawnOptions, StartNotice, Started,
};
