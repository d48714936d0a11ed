//! The runtime's services the Lua modules use, as one typed record: built once by the
//! runtime (`runtime.rs`) before its node, handed to the Lua launcher and the
//! `function.lua` executor, and carried by every process and call (see
//! [`super::context::Current::services`]). A module reaches a service by field; there is
//! no lookup by type that could miss at run time.

use super::env::EnvState;
use super::system::ExitRequest;
use super::test::Sink;
use crate::registry::actor::Handle;
use crate::supervision::Supervision;
use std::sync::{Arc, OnceLock, Weak};

/// What the Lua modules reach beyond their node.
pub struct Services {
    /// The registry actor (the `registry` module's versions, snapshots and changes).
    pub registry: Handle,
    /// Supervision (the `supervisor` module and the process helpers). Set once it starts,
    /// right after the node; weak, because supervision holds the node, which holds this.
    supervision: OnceLock<Weak<Supervision>>,
    /// The values of memory env storages.
    pub env: EnvState,
    /// `system.exit`'s request to stop the run.
    pub exit: ExitRequest,
    /// Where the `test` module reports (set by the test runner).
    sink: OnceLock<Sink>,
}

impl Services {
    /// The services of a runtime whose registry actor is `registry`.
    pub fn new(registry: Handle) -> Arc<Services> {
        Arc::new(Services {
            registry,
            supervision: OnceLock::new(),
            env: EnvState::default(),
            exit: ExitRequest::default(),
            sink: OnceLock::new(),
        })
    }

    /// Records the runtime's supervision (once).
    pub fn set_supervision(&self, sup: &Arc<Supervision>) {
        let _ = self.supervision.set(Arc::downgrade(sup));
    }

    /// The runtime's supervision, while it runs.
    pub fn supervision(&self) -> Option<Arc<Supervision>> {
        self.supervision.get()?.upgrade()
    }

    /// Sends the `test` module's reports to `sink` (the first sink set stays).
    pub fn set_sink(&self, sink: Sink) {
        let _ = self.sink.set(sink);
    }

    /// Where the `test` module reports, if a test runner listens.
    pub fn sink(&self) -> Option<&Sink> {
        self.sink.get()
    }
}
