//! The one `wasmtime::Engine` of a runtime and its epoch ticker.
//!
//! The engine is configured for:
//! * async calls (every call runs on a fiber, so a guest blocked in `wasi:io/poll` or a
//!   clock sleep suspends its task instead of its thread);
//! * epoch interruption: a ticker thread advances the epoch every [`EngineOptions::epoch_tick`];
//!   each store's deadline callback makes a busy guest yield to the executor at every tick
//!   and interrupts it past its `max_execution_ms`;
//! * small virtual-memory reservations. Wasmtime's default reserves 4 GiB + 32 MiB guard
//!   of address space per linear memory (plus 2 GiB for growth), the cause of Lunatic's
//!   out-of-memory at 15-16k processes. Here a memory reserves
//!   [`EngineOptions::memory_reservation`] (16 MiB) + a 64 KiB guard, and moves when it
//!   grows beyond (with 16 MiB more headroom), so 100k instances need ~1.6 TiB of address
//!   space (not memory) instead of 600 TiB. The price is explicit bounds checks in
//!   compiled code. Measured with 200 live `sleep-test.wasm` calls (test
//!   `two_hundred_concurrent_sleeps_on_one_thread`): +17.1 MiB virtual (the memory
//!   reservation and the call's fiber stack) and +29 KiB RSS per live instance.
//!
//! Pooling allocator, measured on this machine (2 cores, `complex.wasm` `echo-point`,
//! instantiate from an `InstancePre` + one call, a new Store each time, best of 3 rounds
//! of 300; then printed by a test, now measured by `cargo bench --bench wasm`):
//!
//! | build | on-demand allocator | pooling allocator |
//! |---|---|---|
//! | release | 28.6-30.2 us | 10.6-10.9 us |
//! | debug (deps at opt-level 1) | 42.7 us | 16.6 us |
//!
//! Pooling is 2.7x faster, but a pool has a fixed capacity: every live instance holds a
//! slot reserved up front, and a pooled linear memory cannot grow past its slot
//! ([`EngineOptions::memory_reservation`]). The default stays the on-demand allocator
//! (no cap on concurrent instances or memory size besides `max_memory`); pooling is
//! opt-in with [`EngineOptions::pooling`], and then calls wait for a free slot instead of
//! failing.
//!
//! On-demand, the async fiber stacks of ended instances are kept for the next ones
//! ([`StackCache`]): an instance that takes one skips an `mmap`, an `mprotect` and a
//! `munmap`, 28% of an instantiate-and-call (30.3 -> 21.7 us, `WasmFunction::call` of
//! `echo-point` with a fresh instance each time). New stacks are mapped in batches, their
//! guard pages guard markers rather than mappings of their own (10,000 first spawns of an
//! echo guest: 19.6-21.0 us -> 15.3-17.0 us a spawn).
//!
//! Linear memories, on-demand and on kernels with guard markers, come from batched
//! reservations ([`MemoryCache`]) instead of a mapping each with a copy-on-write image:
//! 10,000 first spawns of an echo guest, 12 alternated pairs on a slow day, 25.9 us median
//! (17.9-34.6) against 29.7 us (24.7-36.8) with wasmtime's memories
//! (`WARDEN_WASM_MEMORY_BATCHES=0`). A Rust guest (`sleep-test.wasm`) uses the same
//! 18-19 KiB of RSS per live instance either way; the echo guest, which touches none of
//! its memory before its first message, 4 KiB more (its data page is copied in).
//!
//! Either way the number of live instances is capped ([`EngineOptions::max_instances`]).
//! Each on-demand instance takes [`mappings_per_instance`] memory mappings, and a process
//! may have only `vm.max_map_count` of them (65,530 by default): past it every `mmap` of
//! the process fails, thread stacks included, and the runtime aborts (seen at about 11,000
//! idle `process.wasm` guests). The default cap leaves [`MAPPING_HEADROOM`] mappings to the
//! rest of the runtime, so a spawn or a call past it gets an error naming the limit, and
//! raising `vm.max_map_count` raises the cap.

use std::time::Duration;

use super::memories::MemoryCache;
use super::stacks::StackCache;
use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

/// Settings of the engine. [`EngineOptions::default`] is what warden uses.
#[derive(Clone, Debug, PartialEq)]
pub struct EngineOptions {
    /// Use the pooling instance allocator with this many instance slots (None: allocate
    /// on demand).
    pub pooling: Option<u32>,
    /// How often the epoch advances (the granularity of `max_execution_ms` and of the
    /// yields of busy guests).
    pub epoch_tick: Duration,
    /// Address space reserved per linear memory, in bytes.
    pub memory_reservation: u64,
    /// Guard region after each linear memory, in bytes.
    pub memory_guard: u64,
    /// Largest wasm stack of a call, in bytes.
    pub max_wasm_stack: usize,
    /// Initialize linear memories from copy-on-write images of their data (wasmtime's
    /// default) rather than by copying the data segments into fresh memory.
    pub memory_cow: bool,
    /// Carve linear memories from batched reservations guarded by guard markers
    /// ([`MemoryCache`]) on kernels that have them, instead of wasmtime's mapping per
    /// memory. Replaces copy-on-write images (data segments are copied in). On-demand
    /// allocator only.
    pub memory_batches: bool,
    /// Most instances alive at once (functions' idle instances and `process.wasm` guests
    /// included). None: the pooling slots, or what the kernel's `vm.max_map_count` allows
    /// ([`instance_budget`]).
    pub max_instances: Option<u32>,
}

/// Memory mappings one on-demand instance takes: three for its linear memory (the
/// accessible pages, their copy-on-write image, the rest of the reservation with its
/// guard) and its async fiber stack's: with guard markers a share of a batch of stacks, at
/// most one once stacks unmapped from the middle split it; without them a stack and a
/// guard page. Measured on `/proc/self/maps` with 10,000 idle echo guests: 30,392 mappings
/// with batched stacks, 50,079 with a stack and a guard mapping each.
pub fn mappings_per_instance() -> usize {
    if super::stacks::guard_markers() {
        4
    } else {
        5
    }
}

/// Mappings kept for everything but instances: threads, the allocator's arenas, compiled
/// code, Lua states.
pub const MAPPING_HEADROOM: usize = 8192;

/// How many on-demand instances fit in this process's memory mappings, and the kernel
/// limit it follows (`vm.max_map_count`; 65,530 when it cannot be read).
pub fn instance_budget() -> (u32, usize) {
    static BUDGET: std::sync::OnceLock<(u32, usize)> = std::sync::OnceLock::new();
    *BUDGET.get_or_init(|| {
        let max = std::fs::read_to_string("/proc/sys/vm/max_map_count")
            .ok()
            .and_then(|s| s.trim().parse::<usize>().ok())
            .unwrap_or(65_530);
        let cap = max.saturating_sub(MAPPING_HEADROOM) / mappings_per_instance();
        (cap.clamp(1, u32::MAX as usize) as u32, max)
    })
}

impl Default for EngineOptions {
    /// On-demand allocation, unless `WARDEN_WASM_POOLING=<slots>` asks for the pooling
    /// allocator (faster instantiation, a fixed number of concurrent instances).
    fn default() -> Self {
        EngineOptions {
            pooling: std::env::var("WARDEN_WASM_POOLING")
                .ok()
                .and_then(|v| v.parse().ok()),
            epoch_tick: Duration::from_millis(5),
            memory_reservation: 16 << 20,
            memory_guard: 64 << 10,
            max_wasm_stack: 512 << 10,
            memory_cow: std::env::var("WARDEN_WASM_COW").map_or(true, |v| v != "0"),
            memory_batches: std::env::var("WARDEN_WASM_MEMORY_BATCHES").map_or(true, |v| v != "0"),
            max_instances: std::env::var("WARDEN_WASM_MAX_INSTANCES")
                .ok()
                .and_then(|v| v.parse().ok()),
        }
    }
}

/// Unused fiber stacks kept with their pages (about 8 KiB each); more are kept without
/// them (see [`StackCache`]).
pub const WARM_STACKS: usize = 1024;

/// The cap on live instances of one runtime: a permit per instance, held while it lives.
pub struct InstanceLimit {
    permits: std::sync::Arc<tokio::sync::Semaphore>,
    cap: u32,
    reason: String,
}

impl InstanceLimit {
    /// The cap `options` set: `max_instances`, else the pooling slots, else the kernel's
    /// mapping budget.
    pub fn new(options: &EngineOptions) -> InstanceLimit {
        let (cap, reason) = Self::cap_and_reason(options);
        InstanceLimit {
            permits: std::sync::Arc::new(tokio::sync::Semaphore::new(cap as usize)),
            cap,
            reason,
        }
    }

    /// The cap `options` set (see [`InstanceLimit::new`]).
    pub fn cap_of(options: &EngineOptions) -> u32 {
        Self::cap_and_reason(options).0
    }

    fn cap_and_reason(options: &EngineOptions) -> (u32, String) {
        match (options.max_instances, options.pooling) {
            (Some(n), _) => (n, format!("max_instances is {n}")),
            (None, Some(n)) => (n, format!("the pooling allocator has {n} slots")),
            (None, None) => {
                let (n, max) = instance_budget();
                (
                    n,
                    format!(
                        "the kernel's vm.max_map_count of {max} leaves room for that many, at {} memory mappings each; raise it with sysctl for more",
                        mappings_per_instance()
                    ),
                )
            }
        }
    }

    /// The cap.
    pub fn cap(&self) -> u32 {
        self.cap
    }

    /// Instances alive now.
    pub fn live(&self) -> u32 {
        self.cap
            .saturating_sub(self.permits.available_permits() as u32)
    }

    /// A permit for one more instance, waiting for one to end if the cap is reached.
    pub async fn acquire(&self) -> tokio::sync::OwnedSemaphorePermit {
        // the semaphore is never closed
        self.permits
            .clone()
            .acquire_owned()
            .await
            .expect("instance permits are never closed")
    }

    /// A permit for one more instance, if the cap is not reached.
    pub fn try_acquire(&self) -> Option<tokio::sync::OwnedSemaphorePermit> {
        self.permits.clone().try_acquire_owned().ok()
    }

    /// Why no instance can be made now.
    pub fn exhausted(&self) -> String {
        format!(
            "{} WebAssembly instances are alive, the most this runtime allows ({})",
            self.cap, self.reason
        )
    }
}

/// Builds an engine with `options` and starts its epoch ticker (a thread that stops when
/// the engine is dropped).
pub fn new_engine(options: &EngineOptions) -> wasmtime::Result<Engine> {
    let mut config = Config::new();
    config
        .wasm_component_model(true)
        .epoch_interruption(true)
        .parallel_compilation(true)
        .max_wasm_stack(options.max_wasm_stack)
        .async_stack_size(options.max_wasm_stack + (512 << 10))
        .memory_reservation(options.memory_reservation)
        .memory_guard_size(options.memory_guard)
        .memory_reservation_for_growth(options.memory_reservation)
        .memory_may_move(true)
        // no guard region before each memory: compiled code checks bounds explicitly
        // (the reservation is under 4 GiB), and the region was a mapping per instance
        .guard_before_linear_memory(false)
        .memory_init_cow(options.memory_cow);
    if options.pooling.is_none() {
        // ended instances' fiber stacks serve the next ones (the pooling allocator has
        // its own stack pool)
        let keep = InstanceLimit::cap_of(options) as usize;
        config.with_host_stack(std::sync::Arc::new(StackCache::new(keep, WARM_STACKS)));
        if options.memory_batches {
            let cache = MemoryCache::new(
                options.memory_reservation as usize,
                options.memory_guard as usize,
            );
            if let Some(cache) = cache {
                // wasmtime's copy-on-write images need its own memories
                config
                    .with_host_memory(std::sync::Arc::new(cache))
                    .memory_init_cow(false);
            }
        }
    }
    if let Some(slots) = options.pooling {
        let mut pool = PoolingAllocationConfig::new();
        pool.total_component_instances(slots)
            // a component is several core instances: its module and the shims that
            // lower its imports (three for a guest importing warden:process)
            .total_core_instances(slots * 4)
            .total_memories(slots * 2)
            .total_tables(slots * 2)
            .total_stacks(slots)
            .max_memory_size(options.memory_reservation as usize);
        config.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
        // A pooled memory cannot move: its slot is its reservation.
        config.memory_may_move(false);
    }
    let engine = Engine::new(&config)?;
    start_ticker(&engine, options.epoch_tick);
    Ok(engine)
}

/// Advances `engine`'s epoch every `tick` until the engine is dropped.
fn start_ticker(engine: &Engine, tick: Duration) {
    let weak = engine.weak();
    let spawned = std::thread::Builder::new()
        .name("warden-wasm-epoch".into())
        .spawn(move || loop {
            std::thread::sleep(tick);
            match weak.upgrade() {
                Some(engine) => engine.increment_epoch(),
                None => break,
            }
        });
    if let Err(e) = spawned {
        tracing::error!("cannot start the wasm epoch ticker: {e}; max_execution_ms will not interrupt busy guests");
    }
}

/// A stable text hash of what makes compiled artifacts of `engine` compatible (wasmtime
/// version, target, settings): part of the on-disk cache key.
pub fn compatibility_hash(engine: &Engine) -> String {
    use std::hash::{Hash, Hasher};
    // SipHash with fixed keys: stable for a given build of warden, which is all the
    // cache needs (a different build at worst misses the cache).
    #[allow(deprecated)]
    let mut h = std::hash::SipHasher::new();
    engine.precompile_compatibility_hash().hash(&mut h);
    format!("{:016x}", h.finish())
}
