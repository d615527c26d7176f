//! A cache of small freed blocks in front of the system allocator, made
//! for the static musl build and used by every build.
//!
//! musl's allocator takes one global lock for every `malloc` and `free` and
//! gives memory back to the kernel eagerly: under load the proxy's short-
//! lived buffers (request heads, JSON values, ids) made it `mmap` and
//! `munmap` pages about once per call, and every `munmap` in a process with
//! threads on several CPUs is a TLB shootdown (bench findings). This cache
//! keeps freed blocks of up to [`MAX_CACHED_SIZE`] bytes in power-of-two
//! classes, at most [`CACHE_BYTES_PER_CLASS`] per class, and serves them
//! again; everything else goes straight to the system allocator. Rust
//! passes the layout to `dealloc`, so a block's class is known without a
//! header. glibc's allocator has per-thread caches of its own and gains
//! nothing measurable from this, but the glibc build uses it too, so that
//! `make test` and `make interop` exercise the allocator the static
//! binary runs with. No threads.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::UnsafeCell;
use std::ptr;
use std::sync::atomic::{AtomicBool, Ordering};

/// The smallest class: 16 bytes, which also holds the free-list link.
const MIN_SHIFT: u32 = 4;
/// Blocks above this size are not cached.
pub const MAX_CACHED_SIZE: usize = 4096;
/// Classes 16, 32, ..., 4096 bytes.
const CLASSES: usize = 9;
/// Freed memory kept per class; beyond it blocks go back to the system.
pub const CACHE_BYTES_PER_CLASS: usize = 128 * 1024;
/// Every cached block is aligned to this (musl's own alignment).
const BLOCK_ALIGN: usize = 16;
/// Spins on a held class lock before yielding the CPU.
const SPINS_BEFORE_YIELD: u32 = 64;

struct FreeBlock {
    next: *mut FreeBlock,
}

struct Class {
    locked: AtomicBool,
    head: UnsafeCell<*mut FreeBlock>,
    len: UnsafeCell<usize>,
}

// SAFETY: `head` and `len` are only touched while `locked` is held, and
// the blocks they point to belong to no thread while they are listed.
unsafe impl Sync for Class {}
// SAFETY: as above.
unsafe impl Send for Class {}

impl Class {
    const fn new() -> Class {
        Class {
            locked: AtomicBool::new(false),
            head: UnsafeCell::new(ptr::null_mut()),
            len: UnsafeCell::new(0),
        }
    }

    fn lock(&self) {
        let mut spins = 0;
        while self
            .locked
            .compare_exchange_weak(false, true, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            spins += 1;
            if spins < SPINS_BEFORE_YIELD {
                std::hint::spin_loop();
            } else {
                // The holder was preempted: let it run (no allocation here).
                std::thread::yield_now();
            }
        }
    }

    fn unlock(&self) {
        self.locked.store(false, Ordering::Release);
    }
}

/// The allocator: the binary's `#[global_allocator]` (main.rs).
pub struct CachingAlloc {
    classes: [Class; CLASSES],
}

impl Default for CachingAlloc {
    fn default() -> Self {
        Self::new()
    }
}

impl CachingAlloc {
    pub const fn new() -> CachingAlloc {
        CachingAlloc {
            classes: [
                Class::new(),
                Class::new(),
                Class::new(),
                Class::new(),
                Class::new(),
                Class::new(),
                Class::new(),
                Class::new(),
                Class::new(),
            ],
        }
    }

    /// Blocks currently cached in each class (for tests).
    pub fn cached(&self) -> [usize; CLASSES] {
        let mut out = [0; CLASSES];
        for (o, c) in out.iter_mut().zip(&self.classes) {
            c.lock();
            // SAFETY: the lock is held.
            *o = unsafe { *c.len.get() };
            c.unlock();
        }
        out
    }

    fn pop(&self, class: usize) -> *mut u8 {
        let c = &self.classes[class];
        c.lock();
        // SAFETY: the lock is held; every block on the list is a live,
        // unused block of this class whose first word is the link.
        let block = unsafe {
            let head = *c.head.get();
            if !head.is_null() {
                *c.head.get() = (*head).next;
                *c.len.get() -= 1;
            }
            head
        };
        c.unlock();
        block.cast()
    }

    /// False when the class is full and the block must go back.
    fn push(&self, class: usize, block: *mut u8) -> bool {
        let c = &self.classes[class];
        let max = CACHE_BYTES_PER_CLASS >> (class as u32 + MIN_SHIFT);
        c.lock();
        // SAFETY: the lock is held; `block` is a whole block of this class
        // that its owner just gave up, at least 16 bytes and 16-aligned.
        let kept = unsafe {
            if *c.len.get() < max {
                let b: *mut FreeBlock = block.cast();
                (*b).next = *c.head.get();
                *c.head.get() = b;
                *c.len.get() += 1;
                true
            } else {
                false
            }
        };
        c.unlock();
        kept
    }
}

/// The class of a layout, if it is cached.
fn class_of(size: usize, align: usize) -> Option<usize> {
    if align > BLOCK_ALIGN || size > MAX_CACHED_SIZE {
        return None;
    }
    let bits = size
        .max(1 << MIN_SHIFT)
        .next_power_of_two()
        .trailing_zeros();
    Some((bits - MIN_SHIFT) as usize)
}

fn class_layout(class: usize) -> Layout {
    Layout::from_size_align(1 << (class as u32 + MIN_SHIFT), BLOCK_ALIGN)
        .expect("class sizes are small powers of two")
}

// SAFETY: every block handed out is at least `layout.size()` bytes with at
// least `layout.align()` alignment (a class block is its power of two,
// 16-aligned), and each block goes back to the system with the layout it
// was allocated with (the class layout, or the caller's for uncached ones).
unsafe impl GlobalAlloc for CachingAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        match class_of(layout.size(), layout.align()) {
            None => System.alloc(layout),
            Some(c) => {
                let p = self.pop(c);
                if p.is_null() {
                    System.alloc(class_layout(c))
                } else {
                    p
                }
            }
        }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        match class_of(layout.size(), layout.align()) {
            None => System.dealloc(ptr, layout),
            Some(c) => {
                if !self.push(c, ptr) {
                    System.dealloc(ptr, class_layout(c));
                }
            }
        }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let old = class_of(layout.size(), layout.align());
        let new = class_of(new_size, layout.align());
        match (old, new) {
            // The block already has room: a class block is its whole class.
            (Some(a), Some(b)) if a == b => ptr,
            (None, None) => System.realloc(ptr, layout, new_size),
            _ => {
                let new_layout = Layout::from_size_align_unchecked(new_size, layout.align());
                let p = self.alloc(new_layout);
                if !p.is_null() {
                    ptr::copy_nonoverlapping(ptr, p, layout.size().min(new_size));
                    self.dealloc(ptr, layout);
                }
                p
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classes_are_powers_of_two_up_to_the_limit() {
        assert_eq!(class_of(1, 1), Some(0));
        assert_eq!(class_of(16, 8), Some(0));
        assert_eq!(class_of(17, 8), Some(1));
        assert_eq!(class_of(4096, 16), Some(8));
        assert_eq!(class_of(4097, 8), None);
        assert_eq!(
            class_of(64, 32),
            None,
            "over-aligned layouts are not cached"
        );
    }

    #[test]
    fn a_freed_block_is_served_again_and_keeps_data_intact() {
        let a = CachingAlloc::new();
        unsafe {
            let l = Layout::from_size_align(100, 8).unwrap();
            let p = a.alloc(l);
            assert!(!p.is_null());
            assert_eq!(p as usize % BLOCK_ALIGN, 0);
            ptr::write_bytes(p, 0xab, 100);
            a.dealloc(p, l);
            assert_eq!(a.cached()[3], 1);
            // Same class (65..=128 bytes): the same block comes back.
            let l2 = Layout::from_size_align(128, 16).unwrap();
            let q = a.alloc(l2);
            assert_eq!(q, p);
            assert_eq!(a.cached()[3], 0);
            // Growing within the class keeps the block; beyond it, the
            // data moves.
            ptr::write_bytes(q, 7, 128);
            let r = a.realloc(q, l2, 120);
            assert_eq!(r, q);
            let big = a.realloc(r, Layout::from_size_align(120, 16).unwrap(), 10_000);
            assert!(!big.is_null());
            assert!((0..120).all(|i| *big.add(i) == 7));
            assert_eq!(a.cached()[3], 1, "the small block went to the cache");
            let l3 = Layout::from_size_align(10_000, 16).unwrap();
            let small = a.realloc(big, l3, 20);
            assert!((0..20).all(|i| *small.add(i) == 7));
            a.dealloc(small, Layout::from_size_align(20, 16).unwrap());
        }
    }

    #[test]
    fn each_class_keeps_at_most_its_share() {
        let a = CachingAlloc::new();
        let l = Layout::from_size_align(4096, 16).unwrap();
        let max = CACHE_BYTES_PER_CLASS / 4096;
        unsafe {
            let blocks: Vec<*mut u8> = (0..max + 10).map(|_| a.alloc(l)).collect();
            for b in blocks {
                a.dealloc(b, l);
            }
        }
        assert_eq!(a.cached()[8], max);
    }

    #[test]
    fn threads_share_the_cache_without_losing_blocks() {
        let a = std::sync::Arc::new(CachingAlloc::new());
        let handles: Vec<_> = (0..4)
            .map(|t| {
                let a = a.clone();
                std::thread::spawn(move || {
                    let l = Layout::from_size_align(24 + t * 8, 8).unwrap();
                    for i in 0..20_000u32 {
                        unsafe {
                            let p = a.alloc(l);
                            assert!(!p.is_null());
                            p.cast::<u32>().write(i);
                            assert_eq!(p.cast::<u32>().read(), i);
                            a.dealloc(p, l);
                        }
                    }
                })
            })
            .collect();
        for h in handles {
            h.join().expect("no thread panics");
        }
        let cached: usize = a.cached().iter().sum();
        assert!(cached <= 8, "each thread returned its block: {cached}");
    }
}
