//! Async fiber stacks kept for the next instance.
//!
//! Every call of a guest runs on a fiber with a stack of its own (`async_stack_size` plus
//! a guard page), and a `process.wasm` keeps its fiber as long as it lives. wasmtime's
//! on-demand allocator maps a fresh stack for each instance and unmaps it when the
//! instance ends: an `mmap`, an `mprotect` and a `munmap` (which must also flush the
//! other threads' TLBs) per instance, and page faults on its first frames. Here a stack
//! whose instance ended goes to a free list and the next instance takes it as it is: the
//! first `resident` kept stacks with the pages their frames touched (about 8 KiB each),
//! the others given back to the kernel (`MADV_DONTNEED`), up to `keep` in all. A kept
//! stack still holds its two memory mappings; `keep` is the runtime's cap on live
//! instances, and an instance that takes a kept stack maps none, so live instances and
//! kept stacks together stay within the mappings the cap allows.
//!
//! Measured with 10,000 `process.wasm` echo guests spawned, terminated and spawned
//! again: 26 us a spawn without reuse, 22 us with 1,024 warm stacks and the rest cold,
//! 19 us with all of them warm (and 77 MB more resident memory).

use std::ops::Range;
use std::sync::Arc;

use parking_lot::Mutex;
use wasmtime::{StackCreator, StackMemory};

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
        // SAFETY: sysconf has no preconditions.
        let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) }.max(4096) as usize;
        StackCache(Arc::new(Kept {
            free: Mutex::new(Free::default()),
            keep,
            resident: resident.min(keep),
            page,
        }))
    }

    /// Unused stacks kept now: (with their pages, without).
    pub fn kept(&self) -> (usize, usize) {
        let f = self.0.free.lock();
        (f.warm.len(), f.cold.len())
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
            None => Mapping::new(len, page)?,
        };
        Ok(Box::new(Lent {
            mapping: Some(mapping),
            kept: self.0.clone(),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SIZE: usize = 64 << 10;

    fn lend(c: &StackCache, zeroed: bool) -> Box<dyn StackMemory> {
        c.new_stack(SIZE, zeroed).unwrap()
    }

    #[test]
    fn ended_stacks_are_lent_again_warm_first_then_cold_then_unmapped() {
        let c = StackCache::new(3, 1);
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
        let c = StackCache::new(4, 4);
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
}
