//! What a wasmtime `Store` holds for one call: the guest's WASI context, its resource
//! table, and the limiter that caps its linear memory.

use wasmtime::component::ResourceTable;
use wasmtime::ResourceLimiter;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

/// Tables may not grow beyond this many elements (a guard against table-growth bombs).
const MAX_TABLE_ELEMENTS: usize = 1 << 20;

/// The data of a store: one per instance (a fresh one per call, or a warm one reused by
/// a pool that keeps instances).
pub struct StoreState {
    /// The guest's WASI view of the world (args, env, preopens; nothing ambient).
    pub wasi: WasiCtx,
    /// Handles of WASI resources (streams, pollables, descriptors).
    pub table: ResourceTable,
    /// Caps memory growth.
    pub limiter: MemoryLimiter,
    /// When the running call must stop (`max_execution_ms`); set per call, so a warm
    /// instance can serve many calls.
    pub deadline: Option<std::time::Instant>,
    /// What warden's host interfaces act for (set per call).
    pub host: Option<super::host::GuestHost>,
}

impl WasiView for StoreState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
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
