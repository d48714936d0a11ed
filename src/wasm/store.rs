//! What a wasmtime `Store` holds for one call: the guest's WASI context, its resource
//! table, and the limiter that caps its linear memory.

use crate::functions::CallContext;
use crate::process::{Node, ProcessHandle};
use std::sync::Arc;
use wasmtime::component::ResourceTable;
use wasmtime::ResourceLimiter;
use wasmtime_wasi::{WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};

/// What the interfaces warden gives guests (`guest_api.rs`) act for: the node, the calling process (for
/// `warden:process`), and the call context that travels with function calls.
#[derive(Clone)]
pub struct GuestCtx {
    /// The node.
    pub node: Arc<Node>,
    /// The process the guest runs as (None for a function call).
    pub me: Option<Arc<ProcessHandle>>,
    /// The context passed on to functions the guest calls.
    pub context: Arc<CallContext>,
}

/// Tables may not grow beyond this many elements (a guard against table-growth bombs).
const MAX_TABLE_ELEMENTS: usize = 1 << 20;

/// The data of a store: one per instance (a fresh one per call, or a warm one reused by
/// a pool that keeps instances).
pub struct StoreState {
    /// The guest's WASI view of the world (args, env, preopens; nothing ambient); None
    /// for an entry that grants no `wasi:` group (see [`StoreState::wasi`]). Boxed: a
    /// context is 272 bytes, and every store holds this field.
    pub wasi: Option<Box<WasiCtx>>,
    /// Handles of WASI resources (streams, pollables, descriptors).
    pub table: ResourceTable,
    /// Caps memory growth.
    pub limiter: MemoryLimiter,
    /// When the running call must stop (`max_execution_ms`); set per call, so a warm
    /// instance can serve many calls.
    pub deadline: Option<std::time::Instant>,
    /// What warden's host interfaces act for (set per call).
    pub host: Option<GuestCtx>,
    /// For a `process.wasm`: how long it has computed since it last waited, and the most
    /// it may (`max_execution_ms` there is the longest stretch without waiting, as for
    /// Lua processes, not a cap on the process's life).
    pub busy: Option<(std::sync::Arc<BusyClock>, std::time::Duration)>,
}

/// The time a guest has computed since it last waited. The task that runs the guest
/// marks each poll; a poll that returns Pending because the guest waits (receive, a
/// function call, a WASI sleep or poll) ends the stretch, a yield at an epoch tick does not.
#[derive(Default)]
pub struct BusyClock(parking_lot::Mutex<BusyInner>);

#[derive(Default)]
struct BusyInner {
    before: std::time::Duration,
    poll_start: Option<std::time::Instant>,
    tick_yield: bool,
}

impl BusyClock {
    /// A poll of the guest's task begins.
    pub fn poll_started(&self) {
        let mut i = self.0.lock();
        i.poll_start = Some(std::time::Instant::now());
        i.tick_yield = false;
    }

    /// The poll ended; `pending` when the guest did not finish.
    pub fn poll_ended(&self, pending: bool) {
        let mut i = self.0.lock();
        let ran = i.poll_start.take().map(|s| s.elapsed()).unwrap_or_default();
        if pending && !i.tick_yield {
            i.before = std::time::Duration::ZERO;
        } else {
            i.before += ran;
        }
    }

    /// The guest yields at an epoch tick (not a wait).
    pub fn tick_yield(&self) {
        self.0.lock().tick_yield = true;
    }

    /// Computing time of the current stretch.
    pub fn busy(&self) -> std::time::Duration {
        let i = self.0.lock();
        i.before + i.poll_start.map(|s| s.elapsed()).unwrap_or_default()
    }
}

impl StoreState {
    /// The WASI context; an empty one (no args, env, preopens or stdio) is made if the
    /// store was made without one, though no import of such an entry reaches here.
    pub fn wasi(&mut self) -> &mut WasiCtx {
        self.wasi.get_or_insert_with(empty_wasi)
    }
}

/// A WASI context with nothing in it.
fn empty_wasi() -> Box<WasiCtx> {
    Box::new(WasiCtxBuilder::new().build())
}

impl WasiView for StoreState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: self.wasi.get_or_insert_with(empty_wasi),
            table: &mut self.table,
        }
    }
}

/// Refuses linear-memory growth beyond `max_memory` bytes: the growing instruction traps
/// with a [`MemoryLimitExceeded`] error (so the caller gets an error naming the limit,
/// not a guest that limps on).
#[derive(Debug, Default)]
pub struct MemoryLimiter {
    /// The cap in bytes (None: no cap beyond the engine's).
    pub max_memory: Option<u64>,
}

/// The error of a memory growth above `max_memory`.
#[derive(Debug, Clone, PartialEq)]
pub struct MemoryLimitExceeded {
    /// Bytes the memory would have had.
    pub desired: u64,
    /// The limit.
    pub max_memory: u64,
}

impl std::fmt::Display for MemoryLimitExceeded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "memory limit exceeded: linear memory would grow to {} bytes, max_memory is {} bytes",
            self.desired, self.max_memory
        )
    }
}

impl std::error::Error for MemoryLimitExceeded {}

impl ResourceLimiter for MemoryLimiter {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        match self.max_memory {
            Some(max) if desired as u64 > max => Err(wasmtime::Error::new(MemoryLimitExceeded {
                desired: desired as u64,
                max_memory: max,
            })),
            _ => Ok(true),
        }
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= MAX_TABLE_ELEMENTS)
    }
}
