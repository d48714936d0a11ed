//! Linear memories carved from batches of reservations, and kept for the next instances.
//!
//! wasmtime's on-demand allocator gives each instance's linear memory a mapping of its
//! own: an `mmap` of the whole reservation (16 MiB + 64 KiB guard here), an `mprotect` of
//! its accessible pages, and an `mmap` of the copy-on-write image of its data over them;
//! then two `munmap`s when the instance ends. Each of these takes the process's mappings
//! lock for writing, and the unmaps flush the other threads' TLBs.
//!
//! Here, on kernels with guard markers (`MADV_GUARD_INSTALL`, Linux 6.13), reservations
//! are mapped [`BATCH`] at a time, readable and writable, in one mapping. A memory takes
//! one and marks the guard region right after its accessible bytes with guard markers
//! (a `madvise` that takes the lock for reading only): any access there faults, as a
//! `PROT_NONE` page would. Growth moves the markers up; growth past the reservation
//! moves the memory to a larger mapping of its own. An ended memory's pages go back to
//! the kernel (`MADV_DONTNEED`, which leaves the markers in place) and its reservation
//! waits for the next memory, up to [`KEEP`] of them.
//!
//! This is sound because of how compiled code checks bounds with these settings (a
//! reservation under 4 GiB): every access to a memory that may move is checked against
//! its current size, and only the access's offset (at most the guard size) may reach past
//! it, into the markers. A memory that cannot move (its maximum fits the reservation) is
//! checked against the reservation instead, so everything after its accessible bytes must
//! fault: such memories get a mapping of their own, inaccessible past their size.
//!
//! Data segments are copied in at instantiation (wasmtime's copy-on-write images need
//! its own memories), which for the small data of a guest costs no more than mapping an
//! image.

use std::sync::Arc;

use parking_lot::Mutex;
use wasmtime::{LinearMemory, MemoryCreator, MemoryType};

use super::stacks::{guard_markers, page_size, MADV_GUARD_INSTALL};

/// Reservations mapped at once when no kept one is free.
pub const BATCH: usize = 32;

/// Most reservations of ended memories kept for the next ones; more are unmapped.
pub const KEEP: usize = 1024;

/// `madvise` advice that removes guard markers (Linux 6.13).
const MADV_GUARD_REMOVE: libc::c_int = 103;

/// A reservation of a batch: `reservation + guard` bytes at `base`, guard markers at
/// `marked..marked + guard` (None: not marked yet).
struct Slot {
    base: *mut u8,
    marked: Option<usize>,
}

// SAFETY: a slot is address space owned by whoever holds it.
unsafe impl Send for Slot {}

struct Shared {
    free: Mutex<Vec<Slot>>,
    reservation: usize,
    guard: usize,
    page: usize,
}

/// The memory creator of the engine: linear memories in batched reservations with guard
/// markers (see the module docs).
pub struct MemoryCache(Arc<Shared>);

impl MemoryCache {
    /// A cache of reservations of `reservation` bytes followed by `guard` bytes of guard
    /// markers. None when the kernel has no guard markers or the sizes are not whole pages.
    pub fn new(reservation: usize, guard: usize) -> Option<MemoryCache> {
        let page = page_size();
        if !guard_markers()
            || guard == 0
            || !reservation.is_multiple_of(page)
            || !guard.is_multiple_of(page)
        {
            return None;
        }
        Some(MemoryCache(Arc::new(Shared {
            free: Mutex::new(Vec::new()),
            reservation,
            guard,
            page,
        })))
    }

    /// Reservations of ended or never used memories waiting for the next ones.
    pub fn kept(&self) -> usize {
        self.0.free.lock().len()
    }

    /// A free reservation, or the first of a new batch (the rest kept).
    fn take(&self) -> std::io::Result<Slot> {
        let s = &self.0;
        if let Some(slot) = s.free.lock().pop() {
            return Ok(slot);
        }
        let len = s.reservation + s.guard;
        let base = map(len * BATCH, libc::PROT_READ | libc::PROT_WRITE)?;
        let mut slots: Vec<Slot> = (0..BATCH)
            .map(|i| Slot {
                // SAFETY: inside the mapping just made
                base: unsafe { base.add(i * len) },
                marked: None,
            })
            .collect();
        let mine = slots.pop().expect("a batch has slots");
        // the batch's lowest reservations are taken first
        slots.reverse();
        s.free.lock().extend(slots);
        Ok(mine)
    }
}

/// A fresh private anonymous mapping of `len` bytes with protection `prot`.
fn map(len: usize, prot: libc::c_int) -> std::io::Result<*mut u8> {
    // SAFETY: a fresh mapping at an address the kernel picks.
    let base = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            prot,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
            -1,
            0,
        )
    };
    if base == libc::MAP_FAILED {
        return Err(std::io::Error::last_os_error());
    }
    Ok(base.cast())
}

/// `madvise(addr, len, advice)`, its error as an `io::Error`.
///
/// # Safety
/// The range must be inside a mapping the caller owns.
unsafe fn advise(addr: *mut u8, len: usize, advice: libc::c_int) -> std::io::Result<()> {
    if len > 0 && unsafe { libc::madvise(addr.cast(), len, advice) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// Moves the `guard` bytes of guard markers at `from` (None: none yet) to `to`, all offsets
/// from `base`. The new markers go in first, so a failure never leaves bytes past the old
/// size unguarded.
///
/// # Safety
/// Both ranges must lie in a reservation the caller owns.
unsafe fn move_markers(
    base: *mut u8,
    from: Option<usize>,
    to: usize,
    guard: usize,
) -> std::io::Result<()> {
    if from == Some(to) {
        return Ok(());
    }
    unsafe {
        advise(base.add(to), guard, MADV_GUARD_INSTALL)?;
        if let Some(from) = from {
            // the old markers outside the new ones: below them, then above them
            let below = from..(from + guard).min(to);
            let above = from.max(to + guard)..from + guard;
            for r in [below, above] {
                advise(base.add(r.start), r.len(), MADV_GUARD_REMOVE)?;
            }
        }
    }
    Ok(())
}

/// Where a memory's bytes live.
enum Backing {
    /// A reservation of the cache, guarded by markers.
    Slot(Arc<Shared>),
    /// A mapping of its own, `len` bytes, inaccessible past the memory's size.
    Own { len: usize },
}

/// One linear memory.
struct Memory {
    base: *mut u8,
    /// Accessible bytes.
    size: usize,
    /// Bytes it may grow to without moving.
    capacity: usize,
    /// Bytes a move past `capacity` reserves beyond the new size.
    growth: usize,
    page: usize,
    backing: Backing,
}

// SAFETY: the memory's bytes are owned by the instance that holds it; wasmtime
// synchronizes access to them.
unsafe impl Send for Memory {}
// SAFETY: as above; `&Memory` only reads sizes.
unsafe impl Sync for Memory {}

impl Memory {
    fn round(&self, n: usize) -> usize {
        n.div_ceil(self.page) * self.page
    }

    /// A mapping of its own for `size` accessible bytes and room to grow to `capacity`,
    /// followed by `guard` inaccessible bytes.
    fn own(
        size: usize,
        capacity: usize,
        guard: usize,
        growth: usize,
        page: usize,
    ) -> std::io::Result<Memory> {
        let capacity = capacity.max(size).div_ceil(page) * page;
        let len = capacity + guard;
        let base = map(len, libc::PROT_NONE)?;
        let mut m = Memory {
            base,
            size: 0,
            capacity,
            growth,
            page,
            backing: Backing::Own { len },
        };
        m.open(0, size)?;
        m.size = size;
        Ok(m)
    }

    /// Makes bytes `from..to` of an own mapping accessible.
    fn open(&self, from: usize, to: usize) -> std::io::Result<()> {
        let (from, to) = (self.round(from), self.round(to));
        if to > from {
            // SAFETY: inside this memory's own mapping.
            let r = unsafe {
                libc::mprotect(
                    self.base.add(from).cast(),
                    to - from,
                    libc::PROT_READ | libc::PROT_WRITE,
                )
            };
            if r != 0 {
                return Err(std::io::Error::last_os_error());
            }
        }
        Ok(())
    }
}

impl Drop for Memory {
    fn drop(&mut self) {
        match &self.backing {
            Backing::Own { len } => {
                // SAFETY: the mapping is this memory's and nothing uses it any more.
                unsafe {
                    libc::munmap(self.base.cast(), *len);
                }
            }
            Backing::Slot(shared) => {
                let used = self.round(self.size);
                // SAFETY: the accessible pages of this memory's reservation, unused now;
                // they read as zeros on the next touch, and the markers stay.
                let cleared = unsafe { advise(self.base, used, libc::MADV_DONTNEED) };
                let mut free = shared.free.lock();
                if cleared.is_ok() && free.len() < KEEP {
                    free.push(Slot {
                        base: self.base,
                        marked: Some(used),
                    });
                } else {
                    drop(free);
                    // SAFETY: the reservation is this memory's and nothing uses it.
                    unsafe {
                        libc::munmap(self.base.cast(), shared.reservation + shared.guard);
                    }
                }
            }
        }
    }
}

// SAFETY: `as_ptr` is the start of `byte_capacity` bytes (plus the guard) that stay
// reserved while the memory lives, the first `byte_size` of them accessible and the
// guard after them faulting; growth within the capacity keeps the base.
unsafe impl LinearMemory for Memory {
    fn byte_size(&self) -> usize {
        self.size
    }

    fn byte_capacity(&self) -> usize {
        self.capacity
    }

    fn grow_to(&mut self, new_size: usize) -> wasmtime::Result<()> {
        if new_size <= self.size {
            return Ok(());
        }
        if new_size > self.capacity {
            // move to a larger mapping of its own
            let guard = match &self.backing {
                Backing::Slot(s) => s.guard,
                Backing::Own { len } => len - self.capacity,
            };
            let moved = Memory::own(
                new_size,
                new_size.saturating_add(self.growth),
                guard,
                self.growth,
                self.page,
            )?;
            // SAFETY: both ranges are accessible and `size` bytes long; they are
            // different mappings.
            unsafe { std::ptr::copy_nonoverlapping(self.base, moved.base, self.size) };
            // the old backing is released when `moved` takes its place
            *self = moved;
            return Ok(());
        }
        match &self.backing {
            Backing::Own { .. } => self.open(self.size, new_size)?,
            Backing::Slot(s) => {
                let (old, new) = (self.round(self.size), self.round(new_size));
                // SAFETY: both ranges lie in this memory's reservation and guard.
                unsafe { move_markers(self.base, Some(old), new, s.guard)? };
            }
        }
        self.size = new_size;
        Ok(())
    }

    fn as_ptr(&self) -> *mut u8 {
        self.base
    }
}

// SAFETY: every memory is zero-filled, reserves `reservation + guard` bytes (or more) and
// faults on access past its size within the reach of compiled code (module docs).
unsafe impl MemoryCreator for MemoryCache {
    fn new_memory(
        &self,
        ty: MemoryType,
        minimum: usize,
        maximum: Option<usize>,
        reserved_size_in_bytes: Option<usize>,
        guard_size_in_bytes: usize,
    ) -> Result<Box<dyn LinearMemory>, String> {
        let s = &self.0;
        let reservation = reserved_size_in_bytes.unwrap_or(s.reservation);
        // wasmtime's rule (`Memory::memory_may_move`): a memory that never grows or whose
        // maximum fits the reservation stays put, and compiled code then checks accesses
        // against the reservation rather than the size.
        let may_move = !ty.is_shared()
            && maximum != Some(minimum)
            && maximum.is_none_or(|max| max > reservation);
        let fits = minimum <= s.reservation
            && reservation == s.reservation
            && guard_size_in_bytes == s.guard;
        let memory = if may_move && fits {
            let slot = self.take().map_err(|e| e.to_string())?;
            let at = minimum.div_ceil(s.page) * s.page;
            // SAFETY: the ranges lie in the slot's reservation and guard.
            if let Err(e) = unsafe { move_markers(slot.base, slot.marked, at, s.guard) } {
                // SAFETY: the slot is ours and unused.
                unsafe { libc::munmap(slot.base.cast(), s.reservation + s.guard) };
                return Err(format!("cannot mark a linear memory's guard region: {e}"));
            }
            Memory {
                base: slot.base,
                size: minimum,
                capacity: s.reservation,
                growth: s.reservation,
                page: s.page,
                backing: Backing::Slot(s.clone()),
            }
        } else {
            // room to grow in place: the reservation, or as much again past a larger
            // minimum when it may move
            let capacity = if may_move {
                minimum.saturating_add(s.reservation)
            } else {
                reservation
            };
            Memory::own(
                minimum,
                capacity,
                guard_size_in_bytes,
                s.reservation,
                s.page,
            )
            .map_err(|e| format!("cannot map a linear memory of {minimum} bytes: {e}"))?
        };
        Ok(Box::new(memory))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wasm::stacks::tests::signal_of_write;

    const RES: usize = 1 << 20;
    const GUARD: usize = 64 << 10;
    const WASM_PAGE: usize = 64 << 10;

    /// A memory of `min` wasm pages (at most `max`) from `cache`.
    fn memory(cache: &MemoryCache, min: u32, max: Option<u32>) -> Box<dyn LinearMemory> {
        let ty = MemoryType::new(min, max);
        cache
            .new_memory(
                ty,
                min as usize * WASM_PAGE,
                max.map(|m| m as usize * WASM_PAGE),
                Some(RES),
                GUARD,
            )
            .unwrap()
    }

    fn writable(m: &dyn LinearMemory, offset: usize) -> bool {
        signal_of_write(m.as_ptr() as usize + offset) == 0
    }

    /// Whether a write `offset` bytes into `m` faults (SIGSEGV).
    fn faults(m: &dyn LinearMemory, offset: usize) -> bool {
        signal_of_write(m.as_ptr() as usize + offset) == libc::SIGSEGV
    }

    /// The cache, when this kernel has guard markers; a kernel of 6.13 or later must have
    /// them (so these tests skip only where the cache is rightly off).
    fn cache() -> Option<MemoryCache> {
        let cache = MemoryCache::new(RES, GUARD);
        if cache.is_none() {
            let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
            let mut it = release.trim().split(['.', '-']);
            let major: u32 = it.next().and_then(|v| v.parse().ok()).unwrap_or(0);
            let minor: u32 = it.next().and_then(|v| v.parse().ok()).unwrap_or(0);
            assert!(
                (major, minor) < (6, 13),
                "kernel {} has guard markers, yet no memory cache was made",
                release.trim()
            );
        }
        cache
    }

    fn bytes(m: &dyn LinearMemory) -> &[u8] {
        // SAFETY: the accessible bytes of a live memory nothing else uses.
        unsafe { std::slice::from_raw_parts(m.as_ptr(), m.byte_size()) }
    }

    #[test]
    fn a_memory_is_zeroed_and_faults_in_the_guard_after_its_size() {
        let Some(cache) = cache() else {
            return; // no guard markers in this kernel: wasmtime's memories are used
        };
        let m = memory(&cache, 2, None);
        assert_eq!(m.byte_size(), 2 * WASM_PAGE);
        assert_eq!(m.byte_capacity(), RES);
        assert!(bytes(&*m).iter().all(|b| *b == 0));
        assert!(writable(&*m, 0));
        assert!(writable(&*m, 2 * WASM_PAGE - 1));
        assert!(faults(&*m, 2 * WASM_PAGE));
        assert!(faults(&*m, 2 * WASM_PAGE + GUARD - 1));
        // the rest of a batch waits for the next memories
        assert_eq!(cache.kept(), BATCH - 1);
    }

    #[test]
    fn growth_moves_the_guard_up_and_past_the_reservation_moves_the_memory() {
        let Some(cache) = cache() else {
            return; // no guard markers in this kernel: wasmtime's memories are used
        };
        let mut m = memory(&cache, 1, None);
        let base = m.as_ptr();
        // SAFETY: inside the accessible bytes.
        unsafe { *base.add(100) = 7 };
        m.grow_to(3 * WASM_PAGE).unwrap();
        assert_eq!((m.as_ptr(), m.byte_size()), (base, 3 * WASM_PAGE));
        assert!(writable(&*m, WASM_PAGE));
        assert!(writable(&*m, 3 * WASM_PAGE - 1));
        assert!(faults(&*m, 3 * WASM_PAGE));

        // up to the whole reservation in place, then a move that keeps the bytes
        m.grow_to(RES).unwrap();
        assert_eq!(m.as_ptr(), base);
        m.grow_to(RES + WASM_PAGE).unwrap();
        assert_ne!(m.as_ptr(), base);
        assert_eq!(m.byte_size(), RES + WASM_PAGE);
        assert!(m.byte_capacity() >= RES + WASM_PAGE);
        assert_eq!(bytes(&*m)[100], 7);
        assert!(writable(&*m, RES + WASM_PAGE - 1));
        assert!(faults(&*m, m.byte_size()));
        // the reservation it left is free again
        assert_eq!(cache.kept(), BATCH);
    }

    #[test]
    fn an_ended_memory_is_lent_again_zeroed_with_its_guard_where_the_next_one_ends() {
        let Some(cache) = cache() else {
            return; // no guard markers in this kernel: wasmtime's memories are used
        };
        let m = memory(&cache, 1, None);
        let base = m.as_ptr();
        // SAFETY: inside the accessible bytes.
        unsafe { std::ptr::write_bytes(base, 0xab, WASM_PAGE) };
        drop(m);
        assert_eq!(cache.kept(), BATCH);
        let m = memory(&cache, 4, None);
        assert_eq!(m.as_ptr(), base);
        assert!(bytes(&*m).iter().all(|b| *b == 0));
        // the old guard is gone, the new one is after the new size
        assert!(writable(&*m, WASM_PAGE));
        assert!(writable(&*m, 4 * WASM_PAGE - 1));
        assert!(faults(&*m, 4 * WASM_PAGE));
    }

    #[test]
    fn a_smaller_memory_in_a_reused_reservation_leaves_no_stale_guard_to_grow_into() {
        let Some(cache) = cache() else {
            return; // no guard markers in this kernel: wasmtime's memories are used
        };
        let m = memory(&cache, 4, None);
        let base = m.as_ptr();
        drop(m);
        let mut m = memory(&cache, 1, None);
        assert_eq!(m.as_ptr(), base);
        assert!(faults(&*m, WASM_PAGE));
        // where the bigger memory's guard was is plain memory once grown past it
        m.grow_to(6 * WASM_PAGE).unwrap();
        assert!(writable(&*m, 4 * WASM_PAGE));
        assert!(writable(&*m, 4 * WASM_PAGE + GUARD - 1));
        assert!(faults(&*m, 6 * WASM_PAGE));
    }

    #[test]
    fn a_memory_that_cannot_move_gets_a_mapping_that_faults_past_its_size() {
        let Some(cache) = cache() else {
            return; // no guard markers in this kernel: wasmtime's memories are used
        };
        // its maximum fits the reservation: compiled code checks accesses against the
        // reservation, so everything past the size must fault, not only the guard
        let mut m = memory(&cache, 1, Some(8));
        assert_eq!(cache.kept(), 0);
        assert!(writable(&*m, WASM_PAGE - 1));
        for at in [WASM_PAGE, WASM_PAGE + GUARD, RES - 1] {
            assert!(faults(&*m, at), "{at}");
        }
        m.grow_to(8 * WASM_PAGE).unwrap();
        assert!(writable(&*m, 8 * WASM_PAGE - 1));
        assert!(faults(&*m, 8 * WASM_PAGE));
    }
}
