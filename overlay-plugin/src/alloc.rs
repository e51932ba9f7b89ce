//! A global allocator for one-shot plugin processes.
//!
//! A CNI plugin is one process per command that lives a few milliseconds
//! and allocates a few hundred KiB. The C library's allocator is built for
//! the opposite: a static musl build's allocator (mallocng) maps and
//! unmaps memory for most blocks of a few KiB and more, some forty `mmap`
//! and `munmap` calls (and their page faults) in an `overlay-bridge` ADD.
//! [`Arena`] serves allocations from a fixed region in the binary's
//! zero-initialised data by bumping an offset: no system call, and a page
//! is faulted in once. Freeing returns only the most recent allocation (so
//! a growing buffer grows in place); everything else stays allocated
//! until the process exits. What does not fit goes to the system
//! allocator, so a command that allocates more than the arena (GC of a
//! large node) still works.
//!
//! Use it only in a process that exits soon, as a plugin does:
//!
//! ```no_run
//! #[global_allocator]
//! static ALLOC: overlay_plugin::alloc::Arena<{ 1 << 20 }> = overlay_plugin::alloc::Arena::new();
//!
//! fn main() {
//!     let v: Vec<u8> = Vec::with_capacity(4096); // from the arena
//!     drop(v);
//! }
//! ```

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::UnsafeCell;
use std::mem::MaybeUninit;
use std::sync::atomic::{AtomicUsize, Ordering};

/// A bump allocator over `N` bytes, falling back to [`System`]; see the
/// [module docs](self).
pub struct Arena<const N: usize> {
    memory: UnsafeCell<[MaybeUninit<u8>; N]>,
    /// Bytes of `memory` handed out (the offset of the next allocation,
    /// before alignment).
    used: AtomicUsize,
}

// SAFETY: `memory` is only reached through the ranges `used` hands out,
// each to one caller; `used` is atomic.
unsafe impl<const N: usize> Sync for Arena<N> {}

impl<const N: usize> Arena<N> {
    /// An empty arena (a `const fn`, for a `static`).
    pub const fn new() -> Self {
        Arena {
            memory: UnsafeCell::new([MaybeUninit::uninit(); N]),
            used: AtomicUsize::new(0),
        }
    }

    /// Bytes handed out so far (including alignment padding and blocks
    /// freed other than last).
    pub fn used(&self) -> usize {
        self.used.load(Ordering::Relaxed)
    }

    fn base(&self) -> usize {
        self.memory.get() as usize
    }

    /// The offset of `ptr` in the arena, when it points into it.
    fn offset(&self, ptr: *mut u8) -> Option<usize> {
        (ptr as usize)
            .checked_sub(self.base())
            .filter(|offset| *offset < N)
    }

    /// Carve `layout` out of the arena, or `None` when it does not fit.
    fn bump(&self, layout: Layout) -> Option<*mut u8> {
        let base = self.base();
        let mut used = self.used.load(Ordering::Relaxed);
        loop {
            // `align` is a power of two.
            let start = (base + used).checked_add(layout.align() - 1)? & !(layout.align() - 1);
            let end = (start - base).checked_add(layout.size())?;
            if end > N {
                return None;
            }
            match self
                .used
                .compare_exchange_weak(used, end, Ordering::Relaxed, Ordering::Relaxed)
            {
                // Pointer from the arena's own address, so it keeps its
                // provenance.
                Ok(_) => return Some(self.memory.get().cast::<u8>().wrapping_add(start - base)),
                Err(now) => used = now,
            }
        }
    }
}

impl<const N: usize> Default for Arena<N> {
    fn default() -> Self {
        Arena::new()
    }
}

impl<const N: usize> std::fmt::Debug for Arena<N> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Arena")
            .field("size", &N)
            .field("used", &self.used())
            .finish()
    }
}

// SAFETY: `bump` hands out disjoint, aligned ranges of `memory` (the
// atomic `used` only grows past a range while it is live; it moves back
// only over the most recent range, when that one is freed or resized);
// other pointers belong to `System` and go back to it.
unsafe impl<const N: usize> GlobalAlloc for Arena<N> {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        match self.bump(layout) {
            Some(ptr) => ptr,
            // SAFETY: the caller's layout has a non-zero size.
            None => unsafe { System.alloc(layout) },
        }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        match self.offset(ptr) {
            // The most recent allocation goes back; others stay until exit.
            Some(offset) => {
                let end = offset + layout.size();
                let _ =
                    self.used
                        .compare_exchange(end, offset, Ordering::Relaxed, Ordering::Relaxed);
            }
            // SAFETY: not from the arena, so from `System` with `layout`.
            None => unsafe { System.dealloc(ptr, layout) },
        }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let Some(offset) = self.offset(ptr) else {
            // SAFETY: from `System` with `layout`, as the caller promises.
            return unsafe { System.realloc(ptr, layout, new_size) };
        };
        // The most recent allocation grows or shrinks in place.
        let end = offset + layout.size();
        if let Some(new_end) = offset.checked_add(new_size).filter(|e| *e <= N)
            && self
                .used
                .compare_exchange(end, new_end, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            return ptr;
        }
        // An older one keeps its place when it shrinks.
        if new_size <= layout.size() {
            return ptr;
        }
        // SAFETY: the caller promises `new_size`, rounded up to the
        // alignment, does not overflow `isize`.
        let new_layout = unsafe { Layout::from_size_align_unchecked(new_size, layout.align()) };
        // SAFETY: `new_layout` has a non-zero size.
        let new = unsafe { self.alloc(new_layout) };
        if !new.is_null() {
            // SAFETY: both blocks are live, distinct and at least
            // `layout.size()` bytes long.
            unsafe {
                std::ptr::copy_nonoverlapping(ptr, new, layout.size());
                self.dealloc(ptr, layout);
            }
        }
        new
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layout(size: usize, align: usize) -> Layout {
        Layout::from_size_align(size, align).expect("valid layout")
    }

    #[test]
    fn allocations_are_aligned_disjoint_and_the_last_one_is_given_back() {
        let arena = Arena::<256>::new();
        // SAFETY (whole test): layouts have non-zero sizes; each pointer is
        // freed once, with its layout.
        unsafe {
            let a = arena.alloc(layout(3, 1));
            let b = arena.alloc(layout(8, 8));
            assert_eq!(arena.offset(a), Some(0));
            assert_eq!(arena.offset(b), Some(8), "aligned up from 3");
            assert_eq!(arena.used(), 16);
            // Not the last: stays.
            arena.dealloc(a, layout(3, 1));
            assert_eq!(arena.used(), 16);
            // The last: given back, and handed out again.
            arena.dealloc(b, layout(8, 8));
            assert_eq!(arena.used(), 8);
            let c = arena.alloc(layout(8, 8));
            assert_eq!(c, b);
            arena.dealloc(c, layout(8, 8));
        }
    }

    #[test]
    fn what_does_not_fit_comes_from_the_system_allocator() {
        let arena = Arena::<64>::new();
        // SAFETY: as above.
        unsafe {
            let small = arena.alloc(layout(48, 8));
            assert!(arena.offset(small).is_some());
            let big = arena.alloc(layout(32, 8));
            assert!(!big.is_null());
            assert_eq!(arena.offset(big), None);
            big.write_bytes(7, 32);
            assert_eq!(*big.add(31), 7);
            arena.dealloc(big, layout(32, 8));
            assert_eq!(arena.used(), 48);
            arena.dealloc(small, layout(48, 8));
            assert_eq!(arena.used(), 0);
        }
    }

    #[test]
    fn realloc_grows_the_last_block_in_place_and_moves_others_with_their_bytes() {
        let arena = Arena::<128>::new();
        // SAFETY: as above; every realloc'd pointer is then used with the
        // new size.
        unsafe {
            let a = arena.alloc(layout(8, 8));
            a.copy_from_nonoverlapping([1u8, 2, 3, 4, 5, 6, 7, 8].as_ptr(), 8);
            // Last: grows in place.
            let a2 = arena.realloc(a, layout(8, 8), 32);
            assert_eq!(a2, a);
            assert_eq!(arena.used(), 32);
            let b = arena.alloc(layout(8, 8));
            // Not last: moves, keeping its bytes.
            let a3 = arena.realloc(a2, layout(32, 8), 48);
            assert_ne!(a3, a2);
            assert_eq!(std::slice::from_raw_parts(a3, 8), &[1, 2, 3, 4, 5, 6, 7, 8]);
            // Too big for what is left: the system allocator, bytes kept.
            let a4 = arena.realloc(a3, layout(48, 8), 1000);
            assert_eq!(arena.offset(a4), None);
            assert_eq!(std::slice::from_raw_parts(a4, 8), &[1, 2, 3, 4, 5, 6, 7, 8]);
            // And back from it through the system allocator.
            let a5 = arena.realloc(a4, layout(1000, 8), 2000);
            assert_eq!(*a5.add(7), 8);
            arena.dealloc(a5, layout(2000, 8));
            // Shrinking an older block keeps it in place.
            let c = arena.alloc(layout(4, 4));
            assert_eq!(arena.realloc(b, layout(8, 8), 4), b);
            arena.dealloc(c, layout(4, 4));
        }
    }

    #[test]
    fn threads_get_disjoint_blocks() {
        static ARENA: Arena<{ 64 * 1024 }> = Arena::new();
        let blocks: Vec<Vec<usize>> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..4)
                .map(|t| {
                    s.spawn(move || {
                        (0..64)
                            .map(|_| {
                                // SAFETY: non-zero size; written once and
                                // never freed (the arena is a static).
                                let p = unsafe { ARENA.alloc(layout(64, 16)) };
                                // SAFETY: 64 bytes at `p` belong to us.
                                unsafe { p.write_bytes(t, 64) };
                                p as usize
                            })
                            .collect::<Vec<_>>()
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().expect("thread"))
                .collect()
        });
        let mut all: Vec<usize> = blocks.iter().flatten().copied().collect();
        all.sort_unstable();
        assert!(all.windows(2).all(|w| w[1] - w[0] >= 64), "overlap");
        for (t, ptrs) in blocks.iter().enumerate() {
            for p in ptrs {
                // SAFETY: each block was written by thread `t` only.
                assert_eq!(unsafe { *(*p as *const u8) }, t as u8);
            }
        }
    }
}
