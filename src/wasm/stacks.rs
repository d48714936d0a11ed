//! Async fiber stacks kept for the next instance, and mapped in batches.
//!
//! Every call of a guest runs on a fiber with a stack of its own (`async_stack_size` plus
//! a guard page), and a `process.wasm` keeps its fiber as long as it lives. wasmtime's
//! on-demand allocator maps a fresh stack for each instance and unmaps it when the
//! instance ends: an `mmap`, an `mprotect` and a `munmap` (which must also flush the
//! other threads' TLBs) per instance, and page faults on its first frames. Here a stack
//! whose instance ended goes to a free list and the next instance takes it as it is: the
//! first `resident` kept stacks with the pages their frames touched (one page for a guest
//! idle in `receive`), the others given back to the kernel (`MADV_DONTNEED`), up to `keep`
//! in all. A kept stack still holds its memory mapping; `keep` is the runtime's cap on live
//! instances, and an instance that takes a kept stack maps none, so live instances and
//! kept stacks together stay within the mappings the cap allows.
//!
//! New stacks are mapped [`BATCH`] at a time, in one mapping, and each one's guard page is
//! a guard marker (`MADV_GUARD_INSTALL`, Linux 6.13) instead of a `PROT_NONE` mapping of
//! its own: one `mmap` a batch and a light `madvise` a stack instead of an `mmap` and an
//! `mprotect` a stack, each splitting the process's mappings and taking their lock for
//! writing.
//! Measured on this machine, mapping a stack and faulting in its top page: 5.7 us one by
//! one, 2.4 us in batches of 64. Older kernels refuse the marker; then stacks are mapped one
//! by one with a `PROT_NONE` guard page as before.
//!
//! Measured with 10,000 `process.wasm` echo guests spawned, terminated and spawned
//! again: 26 us a spawn without reuse, 22 us with 1,024 warm stacks and the rest cold,
//! 19 us with all of them warm (and 77 MB more resident memory).

use std::ops::Range;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;
use wasmtime::{StackCreator, StackMemory};

/// Stacks mapped at once when no kept one is free.
pub const BATCH: usize = 32;

/// `madvise` advice that makes pages fault on any access without a mapping of their own
/// (Linux 6.13, `include/uapi/asm-generic/mman-common.h`; not in the `libc` crate yet).
pub(crate) const MADV_GUARD_INSTALL: libc::c_int = 102;

/// Whether this kernel has guard markers (`MADV_GUARD_INSTALL`), tried once on a scratch
/// mapping.
pub fn guard_markers() -> bool {
    static HAS: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *HAS.get_or_init(|| {
        let page = page_size();
        matches!(Mapping::batch(2 * page, page, 1), Ok(Some(_)))
    })
}

/// The host's page size.
pub(crate) fn page_size() -> usize {
    // SAFETY: sysconf has no preconditions.
    unsafe { libc::sysconf(libc::_SC_PAGESIZE) }.max(4096) as usize
}

/// One stack mapping: a guard page at `base`, then the stack up to `base + len`.
struct Mapping {
    base: *mut u8,
    len: usize,
}

// SAFETY: a mapping is plain memory owned by whoever holds the `Mapping`.
unsafe impl Send for Mapping {}
// SAFETY: as above; `&Mapping` gives no access to the memory.
unsafe impl Sync for Mapping {}

impl Mapping {
    /// Maps `len` bytes, the first page inaccessible.
    fn new(len: usize, page: usize) -> std::io::Result<Mapping> {
        // SAFETY: a fresh anonymous mapping, then a change of protection inside it.
        unsafe {
            let base = libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_NONE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            );
            if base == libc::MAP_FAILED {
                return Err(std::io::Error::last_os_error());
            }
            let m = Mapping {
                base: base.cast(),
                len,
            };
            if libc::mprotect(
                base.cast::<u8>().add(page).cast(),
                len - page,
                libc::PROT_READ | libc::PROT_WRITE,
            ) != 0
            {
                return Err(std::io::Error::last_os_error());
            }
            Ok(m)
        }
    }

    /// Maps `n` stacks of `len` bytes in one mapping, the first page of each a guard
    /// marker. None when the kernel has no guard markers.
    fn batch(len: usize, page: usize, n: usize) -> std::io::Result<Option<Vec<Mapping>>> {
        let total = len * n;
        // SAFETY: a fresh anonymous mapping, then advice on pages inside it.
        unsafe {
            let base = libc::mmap(
                std::ptr::null_mut(),
                total,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            );
            if base == libc::MAP_FAILED {
                return Err(std::io::Error::last_os_error());
            }
            for i in 0..n {
                if libc::madvise(
                    base.cast::<u8>().add(i * len).cast(),
                    page,
                    MADV_GUARD_INSTALL,
                ) != 0
                {
                    let e = std::io::Error::last_os_error();
                    libc::munmap(base, total);
                    return match e.raw_os_error() {
                        Some(libc::EINVAL) => Ok(None),
                        _ => Err(e),
                    };
                }
            }
            Ok(Some(
                (0..n)
                    .map(|i| Mapping {
                        base: base.cast::<u8>().add(i * len),
                        len,
                    })
                    .collect(),
            ))
        }
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: the mapping was made by `Mapping::new` and nothing uses it any more.
        unsafe {
            libc::munmap(self.base.cast(), self.len);
        }
    }
}

struct Kept {
    free: Mutex<Free>,
    keep: usize,
    resident: usize,
    page: usize,
    /// Cleared when the kernel refuses guard markers: stacks are then mapped one by one.
    batches: AtomicBool,
}

/// Unused stacks: `warm` ones keep their touched pages, `cold` ones were given back to
/// the kernel (`MADV_DONTNEED`) and keep only their mappings.
#[derive(Default)]
struct Free {
    warm: Vec<Mapping>,
    cold: Vec<Mapping>,
}

/// The stack creator of the engine: reuses the stacks of ended instances.
pub struct StackCache(Arc<Kept>);

impl StackCache {
    /// A cache that keeps up to `keep` unused stacks, the first `resident` of them with
    /// their pages.
    pub fn new(keep: usize, resident: usize) -> StackCache {
        let page = page_size();
        StackCache(Arc::new(Kept {
            free: Mutex::new(Free::default()),
            keep,
            resident: resident.min(keep),
            page,
            batches: AtomicBool::new(guard_markers()),
        }))
    }

    /// Unused stacks kept now: (with their pages, without).
    pub fn kept(&self) -> (usize, usize) {
        let f = self.0.free.lock();
        (f.warm.len(), f.cold.len())
    }

    /// A new stack of `len` bytes: one of a new batch (the others kept as given-back
    /// stacks, within `keep`), or a mapping of its own.
    fn fresh(&self, len: usize) -> std::io::Result<Mapping> {
        let k = &self.0;
        if k.batches.load(Ordering::Relaxed) {
            let room = {
                let free = k.free.lock();
                k.keep.saturating_sub(free.warm.len() + free.cold.len())
            };
            let n = room.min(BATCH);
            if n > 1 {
                match Mapping::batch(len, k.page, n)? {
                    Some(mut stacks) => {
                        let mine = stacks.pop().expect("a batch of two or more");
                        k.free.lock().cold.extend(stacks);
                        return Ok(mine);
                    }
                    None => {
                        tracing::debug!("no guard markers (MADV_GUARD_INSTALL) in this kernel: wasm fiber stacks are mapped one by one");
                        k.batches.store(false, Ordering::Relaxed);
                    }
                }
            }
        }
        Mapping::new(len, k.page)
    }

    /// Whether new stacks are mapped in batches (the kernel has guard markers).
    pub fn batches(&self) -> bool {
        self.0.batches.load(Ordering::Relaxed)
    }
}

/// A stack lent to one fiber; back to the cache when dropped.
struct Lent {
    mapping: Option<Mapping>,
    kept: Arc<Kept>,
}

// SAFETY: `top`, `range` and `guard_range` describe the mapping, which stays mapped and
// unused by anything else while the fiber holds this stack.
unsafe impl StackMemory for Lent {
    fn top(&self) -> *mut u8 {
        let m = self.mapping.as_ref().expect("a lent stack has its mapping");
        m.base.wrapping_add(m.len)
    }

    fn range(&self) -> Range<usize> {
        let m = self.mapping.as_ref().expect("a lent stack has its mapping");
        (m.base as usize + self.kept.page)..(m.base as usize + m.len)
    }

    fn guard_range(&self) -> Range<*mut u8> {
        let m = self.mapping.as_ref().expect("a lent stack has its mapping");
        m.base..m.base.wrapping_add(self.kept.page)
    }
}

impl Drop for Lent {
    fn drop(&mut self) {
        let Some(m) = self.mapping.take() else {
            return;
        };
        let k = &self.kept;
        {
            let mut free = k.free.lock();
            if free.warm.len() < k.resident {
                free.warm.push(m);
                return;
            }
            if free.warm.len() + free.cold.len() >= k.keep {
                drop(free);
                return; // `m` is unmapped here
            }
        }
        // SAFETY: the stack part of a mapping no fiber uses any more.
        unsafe {
            libc::madvise(
                m.base.add(k.page).cast(),
                m.len - k.page,
                libc::MADV_DONTNEED,
            );
        }
        let mut free = k.free.lock();
        if free.warm.len() + free.cold.len() < k.keep {
            free.cold.push(m);
        }
    }
}

// SAFETY: stacks are page-aligned mappings with an inaccessible guard page below them;
// a reused one is zeroed when asked.
unsafe impl StackCreator for StackCache {
    fn new_stack(&self, size: usize, zeroed: bool) -> wasmtime::Result<Box<dyn StackMemory>> {
        let page = self.0.page;
        let len = size.div_ceil(page) * page + page;
        let reused = {
            let mut free = self.0.free.lock();
            let Free { warm, cold } = &mut *free;
            let take = |list: &mut Vec<Mapping>| {
                let at = list.iter().rposition(|m| m.len == len);
                at.map(|i| list.swap_remove(i))
            };
            take(warm).or_else(|| take(cold))
        };
        let mapping = match reused {
            Some(m) => {
                if zeroed {
                    // SAFETY: the stack part of a mapping no fiber uses; DONTNEED gives
                    // zero pages on the next touch.
                    unsafe {
                        libc::madvise(m.base.add(page).cast(), len - page, libc::MADV_DONTNEED);
                    }
                }
                m
            }
            None => self.fresh(len)?,
        };
        Ok(Box::new(Lent {
            mapping: Some(mapping),
            kept: self.0.clone(),
        }))
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    const SIZE: usize = 64 << 10;

    fn lend(c: &StackCache, zeroed: bool) -> Box<dyn StackMemory> {
        c.new_stack(SIZE, zeroed).unwrap()
    }

    /// A cache that maps its stacks one by one (as on kernels without guard markers).
    fn one_by_one(keep: usize, resident: usize) -> StackCache {
        let c = StackCache::new(keep, resident);
        c.0.batches.store(false, Ordering::Relaxed);
        c
    }

    #[test]
    fn ended_stacks_are_lent_again_warm_first_then_cold_then_unmapped() {
        let c = one_by_one(3, 1);
        let stacks: Vec<_> = (0..4).map(|_| lend(&c, false)).collect();
        let ranges: Vec<_> = stacks.iter().map(|s| s.range()).collect();
        for s in &stacks {
            assert_eq!(s.range().end, s.top() as usize);
            assert_eq!(s.range().len(), SIZE);
            assert_eq!(s.guard_range().end as usize, s.range().start);
        }
        assert_eq!(c.kept(), (0, 0));
        drop(stacks);
        // one warm, two cold, the fourth unmapped
        assert_eq!(c.kept(), (1, 2));
        let again: Vec<_> = (0..4).map(|_| lend(&c, false)).collect();
        assert_eq!(c.kept(), (0, 0));
        let reused = again.iter().filter(|s| ranges.contains(&s.range())).count();
        // (the fourth may land where the unmapped one was)
        assert!(reused >= 3, "{reused}");
    }

    #[test]
    fn a_stack_is_writable_and_a_reused_one_is_zeroed_when_asked() {
        let c = one_by_one(4, 4);
        let s = lend(&c, false);
        let r = s.range();
        // SAFETY: the range is the stack's writable memory, not in use by any fiber.
        unsafe {
            std::ptr::write_bytes(r.start as *mut u8, 0xab, r.len());
        }
        drop(s);
        let warm = lend(&c, false);
        assert_eq!(warm.range(), r);
        // SAFETY: as above.
        assert_eq!(unsafe { *((r.end - 8) as *const u8) }, 0xab);
        drop(warm);
        let zeroed = lend(&c, true);
        assert_eq!(zeroed.range(), r);
        // SAFETY: as above.
        let bytes = unsafe { std::slice::from_raw_parts(r.start as *const u8, r.len()) };
        assert!(bytes.iter().all(|b| *b == 0));
    }

    /// Writes a byte at `addr` in a child process; the signal that killed it (0: none).
    pub(crate) fn signal_of_write(addr: usize) -> i32 {
        // SAFETY: the child only resets a signal, writes and exits, all async-signal-safe.
        unsafe {
            let pid = libc::fork();
            assert!(pid >= 0);
            if pid == 0 {
                libc::signal(libc::SIGSEGV, libc::SIG_DFL);
                libc::signal(libc::SIGBUS, libc::SIG_DFL);
                std::ptr::write_volatile(addr as *mut u8, 1);
                libc::_exit(0);
            }
            let mut status = 0;
            assert_eq!(libc::waitpid(pid, &mut status, 0), pid);
            if libc::WIFSIGNALED(status) {
                libc::WTERMSIG(status)
            } else {
                0
            }
        }
    }

    #[test]
    fn new_stacks_come_in_batches_within_keep_each_with_a_guard_page_that_faults() {
        let c = StackCache::new(100, 10);
        let first = lend(&c, false);
        if !c.batches() {
            // a kernel without guard markers: one mapping a stack
            assert_eq!(c.kept(), (0, 0));
            return;
        }
        assert_eq!(c.kept(), (0, BATCH - 1));
        let rest: Vec<_> = (1..BATCH).map(|_| lend(&c, false)).collect();
        assert_eq!(c.kept(), (0, 0));
        for s in rest.iter().chain([&first]) {
            assert_eq!(s.range().len(), SIZE);
            assert_eq!(s.guard_range().end as usize, s.range().start);
            assert_eq!(signal_of_write(s.range().end - 1), 0);
            assert_eq!(signal_of_write(s.range().start), 0);
            assert_eq!(
                signal_of_write(s.guard_range().start as usize),
                libc::SIGSEGV
            );
            assert_eq!(
                signal_of_write(s.guard_range().end as usize - 1),
                libc::SIGSEGV
            );
        }
        let next = lend(&c, false);
        assert_eq!(c.kept(), (0, BATCH - 1));
        drop((first, rest, next));

        // a batch never takes the kept stacks past `keep`
        let c = StackCache::new(3, 1);
        let s = lend(&c, false);
        assert_eq!(c.kept(), (0, 2));
        drop(s);
        assert_eq!(c.kept(), (1, 2));
    }
}
