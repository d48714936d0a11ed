//! The global allocator: mimalloc (see the design notes), called straight for the common
//! case.
//!
//! The `mimalloc` crate's allocator calls mimalloc's aligned entry points for every
//! allocation. Every mimalloc block is aligned to a machine word, so an allocation that
//! needs no more than that takes the plain entry points, which skip the alignment checks
//! and offsets (tens of instructions an allocation; a small `funcs.call` makes about
//! fifteen). Larger alignments still go to the aligned ones.
//!
//! mimalloc asks the kernel for transparent huge pages on its 1 GiB arena (`MADV_HUGEPAGE`),
//! so the first touch of each 2 MiB there zeroes a whole huge page. A runtime of many small
//! processes touches its heap a few KiB at a time; on this machine (a VM, where fresh 2 MiB
//! blocks seem to cost the host far more to back than recycled 4 KiB pages) huge pages made
//! bursts of WebAssembly spawns bimodal, 15-17 us a spawn in some runs and 35-41 us in
//! others, and Lua spawns 4 or 14 us; without them every run landed near the middle
//! (BENCHMARKS.md). [`no_huge_pages`] turns them off for the process, as Erlang's runtime
//! leaves them off by default.

use libmimalloc_sys as mi;
use std::alloc::{GlobalAlloc, Layout};
use std::ffi::c_void;

/// Turns transparent huge pages off for this process (`PR_SET_THP_DISABLE`; mimalloc's
/// `MIMALLOC_ALLOW_THP=0` does the same, but only when set before the process starts),
/// unless `WARDEN_HUGE_PAGES=1`. Call it first thing in `main`.
pub fn no_huge_pages() {
    if std::env::var("WARDEN_HUGE_PAGES").is_ok_and(|v| v == "1") {
        return;
    }
    // SAFETY: prctl with PR_SET_THP_DISABLE only sets a flag of this process.
    let r = unsafe { libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0) };
    if r != 0 {
        tracing::debug!(
            "cannot turn transparent huge pages off: {}",
            std::io::Error::last_os_error()
        );
    }
}

/// Whether transparent huge pages are off for this process (see [`no_huge_pages`]).
pub fn huge_pages_off() -> bool {
    // SAFETY: prctl with PR_GET_THP_DISABLE only reads a flag of this process.
    unsafe { libc::prctl(libc::PR_GET_THP_DISABLE, 0, 0, 0, 0) == 1 }
}

/// mimalloc as Rust's global allocator:
/// `#[global_allocator] static GLOBAL: warden::alloc::MiMalloc = warden::alloc::MiMalloc;`
pub struct MiMalloc;

/// The alignment of every mimalloc block (a machine word).
const WORD: usize = std::mem::size_of::<usize>();

// SAFETY: forwards to mimalloc, whose blocks are word-aligned; larger alignments use its
// aligned functions, and every block is freed with mi_free, which takes either kind.
unsafe impl GlobalAlloc for MiMalloc {
    #[inline]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if layout.align() <= WORD {
            mi::mi_malloc(layout.size()) as *mut u8
        } else {
            mi::mi_malloc_aligned(layout.size(), layout.align()) as *mut u8
        }
    }

    #[inline]
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if layout.align() <= WORD {
            mi::mi_zalloc(layout.size()) as *mut u8
        } else {
            mi::mi_zalloc_aligned(layout.size(), layout.align()) as *mut u8
        }
    }

    #[inline]
    unsafe fn dealloc(&self, ptr: *mut u8, _layout: Layout) {
        mi::mi_free(ptr as *mut c_void)
    }

    #[inline]
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if layout.align() <= WORD {
            mi::mi_realloc(ptr as *mut c_void, new_size) as *mut u8
        } else {
            mi::mi_realloc_aligned(ptr as *mut c_void, new_size, layout.align()) as *mut u8
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn huge_pages_can_be_turned_off() {
        if std::env::var("WARDEN_HUGE_PAGES").is_ok_and(|v| v == "1") {
            return;
        }
        no_huge_pages();
        assert!(huge_pages_off());
    }

    #[test]
    fn blocks_have_their_alignment_keep_their_bytes_and_start_zeroed_when_asked() {
        let a = MiMalloc;
        for align in [1usize, 2, 8, 16, 64, 4096] {
            for size in [1usize, 7, 8, 24, 100, 5000] {
                let size = size.max(align);
                let layout = Layout::from_size_align(size, align).unwrap();
                // SAFETY: a non-zero layout; each block is written within its size and freed
                // with the layout it was allocated (or reallocated) with
                unsafe {
                    let z = a.alloc_zeroed(layout);
                    assert_eq!(z as usize % align, 0, "zeroed {size}/{align}");
                    assert!(std::slice::from_raw_parts(z, size).iter().all(|b| *b == 0));
                    a.dealloc(z, layout);

                    let p = a.alloc(layout);
                    assert_eq!(p as usize % align, 0, "alloc {size}/{align}");
                    for i in 0..size {
                        *p.add(i) = (i % 251) as u8;
                    }
                    let q = a.realloc(p, layout, size * 3);
                    assert_eq!(q as usize % align, 0, "realloc {size}/{align}");
                    for i in 0..size {
                        assert_eq!(*q.add(i), (i % 251) as u8);
                    }
                    a.dealloc(q, Layout::from_size_align(size * 3, align).unwrap());
                }
            }
        }
    }
}
