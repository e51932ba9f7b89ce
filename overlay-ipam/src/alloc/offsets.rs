//! [`OffsetAllocator`]: the allocator over positions `0..size`, which
//! [`IpAllocator`](super::IpAllocator) and the Kubernetes port allocator
//! map to addresses and ports.

use std::collections::hash_map::Entry;
use std::collections::{BTreeSet, HashMap};
use std::fmt;
use std::hash::Hash;

use super::AllocError;
use super::bitmap::Bitmap;
use super::hash::FastState;

/// The largest number of positions an allocator holds: 2^32 - 1 (an IPv4
/// `/1` or an IPv6 `/97` and anything smaller). Its bitmap then takes
/// 512 MiB; a `/12` takes 128 KiB and an IPv6 `/104` 2 MiB.
pub const MAX_SIZE: u64 = u32::MAX as u64;

/// Positions per owner page.
const PAGE: u64 = 1024;

/// "No position" in the owner lists.
const NIL: u32 = u32::MAX;

/// The owner of one position and its neighbours in the owner's list.
#[derive(Debug, Clone)]
struct Slot<O> {
    owner: Option<O>,
    prev: u32,
    next: u32,
}

impl<O> Default for Slot<O> {
    fn default() -> Self {
        Slot {
            owner: None,
            prev: NIL,
            next: NIL,
        }
    }
}

/// The owners of `PAGE` consecutive positions; present while one of them is
/// allocated.
type Page<O> = Option<Box<[Slot<O>]>>;

/// Position `off` as a link (every position is below [`MAX_SIZE`]).
fn link(off: u64) -> u32 {
    u32::try_from(off).unwrap_or(NIL)
}

/// An allocator of the positions `0..size` to owners, for ports, addresses
/// or anything numbered.
///
/// Positions are **free**, **allocated** (to an owner `O`) or **reserved**
/// (never allocated: a network or broadcast address, a gateway). Every
/// operation costs a few word operations whatever the fill:
///
/// - a bitmap with summary levels (one bit per position, plus 1/63 of that)
///   finds the next free position with `trailing_zeros` instead of a scan;
/// - owners live in pages of 1024 positions, allocated while one of their
///   positions is allocated, so looking up the owner of a position is an
///   index;
/// - the positions of each owner form a list through those pages, headed by
///   a hash map from owner to its most recent position, so releasing every
///   position of an owner costs as many steps as it holds. That index is
///   built by the first [`release_owner`](Self::release_owner) (one pass
///   over the allocated positions) and kept up to date from then on;
///   allocators that only release position by position never pay for it.
///
/// `O` is a small key chosen by the caller: `()` when owners do not matter,
/// an integer id, a `(container, interface)` pair. It is cloned once per
/// allocation (it is stored in the page and in the owner map). A zero-sized
/// `O` such as `()` costs nothing: no pages or owner map are kept, only the
/// bitmap.
///
/// ```
/// use overlay_ipam::alloc::{AllocError, OffsetAllocator};
///
/// let mut ports = OffsetAllocator::new(4).unwrap();
/// ports.reserve(0).unwrap();
/// assert_eq!(ports.allocate_next("a"), Ok(1));
/// assert_eq!(ports.allocate_next("b"), Ok(2));
/// assert_eq!(ports.allocate_next("a"), Ok(3));
/// assert_eq!(ports.allocate_next("c"), Err(AllocError::Exhausted));
///
/// assert_eq!(ports.release(2), Ok("b"));
/// assert_eq!(ports.release_owner(&"a"), vec![1, 3]);
/// assert_eq!((ports.used(), ports.free(), ports.reserved_count()), (0, 3, 1));
/// // Round-robin: the next allocation continues after the last one, wrapping.
/// assert_eq!(ports.allocate_next("d"), Ok(1));
/// ```
#[derive(Clone)]
pub struct OffsetAllocator<O> {
    size: u64,
    bits: Bitmap,
    /// Zeroed (`None`, `0`) at creation, so that the allocation stays
    /// untouched, and costs no resident memory, until used.
    pages: Vec<Page<O>>,
    /// The allocated positions of each page.
    page_used: Vec<u16>,
    /// One emptied page kept for the next page to fill, so that allocating
    /// and releasing around a page boundary does not allocate each time.
    spare: Option<Box<[Slot<O>]>>,
    /// Each owner's most recent position, the head of its list through the
    /// slots' links; built by the first [`release_owner`]
    /// (Self::release_owner) and kept from then on. Until then the links
    /// are unused (`NIL`), so that allocators whose positions are only
    /// released one by one never pay for it.
    heads: Option<HashMap<O, u32, FastState>>,
    used: u64,
    reserved: BTreeSet<u64>,
    last: Option<u64>,
    /// The owner value when `O` is zero-sized (such as `()`): all values of
    /// such a type are alike, so no page or owner map is kept and every
    /// allocated position belongs to this one.
    zst_owner: Option<O>,
}

/// Whether `O` is zero-sized.
const fn is_zst<O>() -> bool {
    std::mem::size_of::<O>() == 0
}

impl<O> fmt::Debug for OffsetAllocator<O> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OffsetAllocator")
            .field("size", &self.size)
            .field("used", &self.used)
            .field("reserved", &self.reserved.len())
            .field("last", &self.last)
            .finish_non_exhaustive()
    }
}

impl<O: Clone + Eq + Hash> OffsetAllocator<O> {
    /// An allocator of `size` free positions, `1..=`[`MAX_SIZE`].
    ///
    /// ```
    /// use overlay_ipam::alloc::{AllocError, OffsetAllocator, MAX_SIZE};
    ///
    /// assert_eq!(OffsetAllocator::<()>::new(1 << 20).unwrap().free(), 1 << 20);
    /// assert!(matches!(OffsetAllocator::<()>::new(0), Err(AllocError::Empty)));
    /// assert!(matches!(OffsetAllocator::<()>::new(MAX_SIZE + 1), Err(AllocError::TooLarge { .. })));
    /// ```
    pub fn new(size: u64) -> Result<Self, AllocError<u64>> {
        if size == 0 {
            return Err(AllocError::Empty);
        }
        if size > MAX_SIZE {
            return Err(AllocError::TooLarge {
                size: u128::from(size),
            });
        }
        Ok(OffsetAllocator::with_size(size))
    }

    /// [`new`](Self::new) for a `size` known to be `1..=MAX_SIZE`.
    pub(crate) fn with_size(size: u64) -> Self {
        // A zero-sized owner needs no pages.
        let pages = if is_zst::<O>() {
            0
        } else {
            size.div_ceil(PAGE) as usize
        };
        OffsetAllocator {
            size,
            bits: Bitmap::new(size),
            pages: vec![None; pages],
            page_used: vec![0; pages],
            spare: None,
            heads: None,
            used: 0,
            reserved: BTreeSet::new(),
            last: None,
            zst_owner: None,
        }
    }

    /// The number of positions, whatever their state.
    ///
    /// ```
    /// let mut a = overlay_ipam::alloc::OffsetAllocator::new(10).unwrap();
    /// a.reserve(0).unwrap();
    /// a.allocate(1, ()).unwrap();
    /// assert_eq!((a.size(), a.used(), a.reserved_count(), a.free()), (10, 1, 1, 8));
    /// ```
    pub fn size(&self) -> u64 {
        self.size
    }

    /// The number of allocated positions.
    ///
    /// ```
    /// let mut a = overlay_ipam::alloc::OffsetAllocator::new(10).unwrap();
    /// a.allocate_next('x').unwrap();
    /// assert_eq!(a.used(), 1);
    /// ```
    pub fn used(&self) -> u64 {
        self.used
    }

    /// The number of free positions: `size - used - reserved_count`.
    ///
    /// ```
    /// let mut a = overlay_ipam::alloc::OffsetAllocator::new(10).unwrap();
    /// a.reserve(3).unwrap();
    /// a.allocate_next(()).unwrap();
    /// assert_eq!(a.free(), 8);
    /// ```
    pub fn free(&self) -> u64 {
        self.size - self.used - self.reserved.len() as u64
    }

    /// The number of reserved positions.
    ///
    /// ```
    /// let mut a = overlay_ipam::alloc::OffsetAllocator::<()>::new(10).unwrap();
    /// a.reserve(3).unwrap();
    /// a.reserve(3).unwrap();
    /// assert_eq!(a.reserved_count(), 1);
    /// ```
    pub fn reserved_count(&self) -> u64 {
        self.reserved.len() as u64
    }

    /// The reserved positions, in order.
    ///
    /// ```
    /// let mut a = overlay_ipam::alloc::OffsetAllocator::<()>::new(8).unwrap();
    /// a.reserve(7).unwrap();
    /// a.reserve(0).unwrap();
    /// assert_eq!(a.reserved().collect::<Vec<_>>(), [0, 7]);
    /// ```
    pub fn reserved(&self) -> impl Iterator<Item = u64> + '_ {
        self.reserved.iter().copied()
    }

    /// The number of distinct owners holding a position.
    ///
    /// ```
    /// let mut a = overlay_ipam::alloc::OffsetAllocator::new(10).unwrap();
    /// a.allocate_next("a").unwrap();
    /// a.allocate_next("a").unwrap();
    /// a.allocate_next("b").unwrap();
    /// assert_eq!(a.owners(), 2);
    /// ```
    pub fn owners(&self) -> usize {
        if is_zst::<O>() {
            usize::from(self.used > 0)
        } else if let Some(heads) = &self.heads {
            heads.len()
        } else {
            let owners: std::collections::HashSet<&O, FastState> =
                self.iter().map(|(_, o)| o).collect();
            owners.len()
        }
    }

    fn check(&self, off: u64) -> Result<(), AllocError<u64>> {
        if off < self.size {
            Ok(())
        } else {
            Err(AllocError::OutOfRange(off))
        }
    }

    /// Mark `off` as never to be allocated. Reserving a reserved position
    /// again does nothing; an allocated one is refused.
    ///
    /// ```
    /// use overlay_ipam::alloc::{AllocError, OffsetAllocator};
    ///
    /// let mut a = OffsetAllocator::new(4).unwrap();
    /// a.reserve(1).unwrap();
    /// assert_eq!(a.allocate(1, ()), Err(AllocError::Reserved(1)));
    /// a.allocate(2, ()).unwrap();
    /// assert_eq!(a.reserve(2), Err(AllocError::AlreadyAllocated(2)));
    /// assert_eq!(a.reserve(4), Err(AllocError::OutOfRange(4)));
    /// ```
    pub fn reserve(&mut self, off: u64) -> Result<(), AllocError<u64>> {
        self.check(off)?;
        if self.reserved.contains(&off) {
            return Ok(());
        }
        if self.bits.get(off) {
            return Err(AllocError::AlreadyAllocated(off));
        }
        self.bits.set(off);
        self.reserved.insert(off);
        Ok(())
    }

    /// Make a reserved position free again; whether it was reserved.
    ///
    /// ```
    /// let mut a = overlay_ipam::alloc::OffsetAllocator::<()>::new(4).unwrap();
    /// a.reserve(1).unwrap();
    /// assert!(a.unreserve(1));
    /// assert!(!a.unreserve(1));
    /// assert_eq!(a.free(), 4);
    /// ```
    pub fn unreserve(&mut self, off: u64) -> bool {
        if self.reserved.remove(&off) {
            self.bits.clear(off);
            true
        } else {
            false
        }
    }

    /// Whether `off` is reserved.
    ///
    /// ```
    /// let mut a = overlay_ipam::alloc::OffsetAllocator::<()>::new(4).unwrap();
    /// a.reserve(2).unwrap();
    /// assert!(a.is_reserved(2) && !a.is_reserved(1));
    /// ```
    pub fn is_reserved(&self, off: u64) -> bool {
        self.reserved.contains(&off)
    }

    /// Whether `off` is a free position (in range, neither allocated nor
    /// reserved).
    ///
    /// ```
    /// let mut a = overlay_ipam::alloc::OffsetAllocator::new(4).unwrap();
    /// a.allocate(1, ()).unwrap();
    /// assert!(!a.is_free(1) && a.is_free(2) && !a.is_free(4));
    /// ```
    pub fn is_free(&self, off: u64) -> bool {
        off < self.size && !self.bits.get(off)
    }

    /// The owner of `off`, if it is allocated.
    ///
    /// ```
    /// let mut a = overlay_ipam::alloc::OffsetAllocator::new(4).unwrap();
    /// a.allocate(3, 'x').unwrap();
    /// assert_eq!(a.owner(3), Some(&'x'));
    /// assert_eq!(a.owner(2), None);
    /// ```
    pub fn owner(&self, off: u64) -> Option<&O> {
        if is_zst::<O>() {
            let owned = off < self.size && self.bits.get(off) && !self.reserved.contains(&off);
            return self.zst_owner.as_ref().filter(|_| owned);
        }
        self.slot(off)?.owner.as_ref()
    }

    /// The position the last allocation took: where
    /// [`allocate_next`](Self::allocate_next) continues from.
    ///
    /// ```
    /// let mut a = overlay_ipam::alloc::OffsetAllocator::new(8).unwrap();
    /// a.allocate(6, ()).unwrap();
    /// assert_eq!(a.last_allocated(), Some(6));
    /// ```
    pub fn last_allocated(&self) -> Option<u64> {
        self.last
    }

    /// Set where [`allocate_next`](Self::allocate_next) continues from, for
    /// example from a persisted `last_reserved_ip`. A position out of range
    /// is ignored as `host-local` ignores a last address outside its range:
    /// allocation starts from the first position.
    ///
    /// ```
    /// let mut a = overlay_ipam::alloc::OffsetAllocator::new(8).unwrap();
    /// a.set_last_allocated(Some(5));
    /// assert_eq!(a.allocate_next(()), Ok(6));
    /// a.set_last_allocated(Some(99));
    /// assert_eq!(a.allocate_next(()), Ok(0));
    /// ```
    pub fn set_last_allocated(&mut self, last: Option<u64>) {
        self.last = last.filter(|&l| l < self.size);
    }

    /// The first free position at or after `start` within `lo..=hi`,
    /// wrapping around to `lo`; `None` when `lo..=hi` is full.
    ///
    /// ```
    /// use overlay_ipam::alloc::{AllocError, OffsetAllocator};
    ///
    /// let mut a = OffsetAllocator::new(10).unwrap();
    /// for off in [4, 5, 6] {
    ///     a.allocate(off, ()).unwrap();
    /// }
    /// assert_eq!(a.next_free_in(2, 6, 4), Ok(Some(2)));
    /// assert_eq!(a.next_free_in(4, 6, 5), Ok(None));
    /// assert_eq!(a.next_free_in(4, 7, 5), Ok(Some(7)));
    /// assert_eq!(a.next_free_in(4, 10, 5), Err(AllocError::OutOfRange(10)));
    /// ```
    pub fn next_free_in(
        &self,
        lo: u64,
        hi: u64,
        start: u64,
    ) -> Result<Option<u64>, AllocError<u64>> {
        self.check(hi)?;
        if lo > hi {
            return Err(AllocError::Inverted {
                first: lo,
                last: hi,
            });
        }
        if !(lo..=hi).contains(&start) {
            return Err(AllocError::OutOfRange(start));
        }
        Ok(self
            .bits
            .next_clear(start)
            .filter(|&i| i <= hi)
            .or_else(|| self.bits.next_clear(lo).filter(|&i| i < start)))
    }

    /// The position [`allocate_next`](Self::allocate_next) would take.
    ///
    /// ```
    /// let mut a = overlay_ipam::alloc::OffsetAllocator::new(8).unwrap();
    /// a.allocate(7, ()).unwrap();
    /// a.allocate(0, ()).unwrap();
    /// // After 0, the last allocation.
    /// assert_eq!(a.next_free(), Some(1));
    /// ```
    pub fn next_free(&self) -> Option<u64> {
        let start = match self.last {
            Some(last) if last + 1 < self.size => last + 1,
            _ => 0,
        };
        self.bits
            .next_clear(start)
            .or_else(|| self.bits.next_clear(0).filter(|&i| i < start))
    }

    /// The lowest free position.
    ///
    /// ```
    /// let mut a = overlay_ipam::alloc::OffsetAllocator::new(8).unwrap();
    /// a.allocate(0, ()).unwrap();
    /// assert_eq!(a.lowest_free(), Some(1));
    /// ```
    pub fn lowest_free(&self) -> Option<u64> {
        self.bits.next_clear(0)
    }

    /// Allocate `off` to `owner`.
    ///
    /// ```
    /// use overlay_ipam::alloc::{AllocError, OffsetAllocator};
    ///
    /// let mut a = OffsetAllocator::new(4).unwrap();
    /// assert_eq!(a.allocate(2, 7u32), Ok(()));
    /// assert_eq!(a.allocate(2, 8u32), Err(AllocError::AlreadyAllocated(2)));
    /// assert_eq!(a.allocate(9, 8u32), Err(AllocError::OutOfRange(9)));
    /// ```
    pub fn allocate(&mut self, off: u64, owner: O) -> Result<(), AllocError<u64>> {
        self.check(off)?;
        if self.bits.get(off) {
            return Err(if self.reserved.contains(&off) {
                AllocError::Reserved(off)
            } else {
                AllocError::AlreadyAllocated(off)
            });
        }
        self.take(off, owner);
        Ok(())
    }

    /// Allocate the next free position round-robin, as `host-local` does:
    /// the first free one after the last allocation (from any of the
    /// `allocate*` calls), wrapping past the end; from position 0 when
    /// nothing was allocated yet.
    ///
    /// ```
    /// let mut a = overlay_ipam::alloc::OffsetAllocator::new(3).unwrap();
    /// assert_eq!(a.allocate_next(()), Ok(0));
    /// assert_eq!(a.allocate_next(()), Ok(1));
    /// a.release(0).unwrap();
    /// // Continues after 1, wraps to 0.
    /// assert_eq!(a.allocate_next(()), Ok(2));
    /// assert_eq!(a.allocate_next(()), Ok(0));
    /// ```
    pub fn allocate_next(&mut self, owner: O) -> Result<u64, AllocError<u64>> {
        let off = self.next_free().ok_or(AllocError::Exhausted)?;
        self.take(off, owner);
        Ok(off)
    }

    /// Allocate the lowest free position.
    ///
    /// ```
    /// let mut a = overlay_ipam::alloc::OffsetAllocator::new(3).unwrap();
    /// a.allocate(0, ()).unwrap();
    /// a.allocate(2, ()).unwrap();
    /// assert_eq!(a.allocate_lowest(()), Ok(1));
    /// ```
    pub fn allocate_lowest(&mut self, owner: O) -> Result<u64, AllocError<u64>> {
        let off = self.lowest_free().ok_or(AllocError::Exhausted)?;
        self.take(off, owner);
        Ok(off)
    }

    /// Allocate the first free position at or after `start` within
    /// `lo..=hi`, wrapping around to `lo` (see
    /// [`next_free_in`](Self::next_free_in)).
    ///
    /// ```
    /// use overlay_ipam::alloc::{AllocError, OffsetAllocator};
    ///
    /// let mut a = OffsetAllocator::new(10).unwrap();
    /// assert_eq!(a.allocate_in(5, 6, 6, ()), Ok(6));
    /// assert_eq!(a.allocate_in(5, 6, 6, ()), Ok(5));
    /// assert_eq!(a.allocate_in(5, 6, 5, ()), Err(AllocError::Exhausted));
    /// ```
    pub fn allocate_in(
        &mut self,
        lo: u64,
        hi: u64,
        start: u64,
        owner: O,
    ) -> Result<u64, AllocError<u64>> {
        let off = self
            .next_free_in(lo, hi, start)?
            .ok_or(AllocError::Exhausted)?;
        self.take(off, owner);
        Ok(off)
    }

    /// Release `off`; its owner.
    ///
    /// ```
    /// use overlay_ipam::alloc::{AllocError, OffsetAllocator};
    ///
    /// let mut a = OffsetAllocator::new(4).unwrap();
    /// a.reserve(0).unwrap();
    /// a.allocate(1, "pod").unwrap();
    /// assert_eq!(a.release(1), Ok("pod"));
    /// assert_eq!(a.release(1), Err(AllocError::NotAllocated(1)));
    /// assert_eq!(a.release(0), Err(AllocError::Reserved(0)));
    /// ```
    pub fn release(&mut self, off: u64) -> Result<O, AllocError<u64>> {
        self.check(off)?;
        if !self.bits.get(off) {
            return Err(AllocError::NotAllocated(off));
        }
        self.untake(off).ok_or(AllocError::Reserved(off))
    }

    /// Release every position of `owner`; the positions, in order.
    ///
    /// ```
    /// let mut a = overlay_ipam::alloc::OffsetAllocator::new(8).unwrap();
    /// a.allocate(5, 1).unwrap();
    /// a.allocate(2, 1).unwrap();
    /// a.allocate(3, 2).unwrap();
    /// assert_eq!(a.release_owner(&1), vec![2, 5]);
    /// assert_eq!(a.release_owner(&1), Vec::<u64>::new());
    /// assert_eq!(a.used(), 1);
    /// ```
    pub fn release_owner(&mut self, owner: &O) -> Vec<u64> {
        if !is_zst::<O>() {
            self.build_owner_index();
        }
        let offsets = self.offsets_of(owner);
        for &off in &offsets {
            self.untake(off);
        }
        offsets
    }

    /// The positions of `owner`, in order.
    ///
    /// ```
    /// let mut a = overlay_ipam::alloc::OffsetAllocator::new(8).unwrap();
    /// a.allocate(6, "a").unwrap();
    /// a.allocate(1, "a").unwrap();
    /// assert_eq!(a.offsets_of(&"a"), vec![1, 6]);
    /// ```
    pub fn offsets_of(&self, owner: &O) -> Vec<u64> {
        if is_zst::<O>() {
            return self.iter().map(|(off, _)| off).collect();
        }
        let Some(heads) = &self.heads else {
            return self
                .iter()
                .filter(|(_, o)| *o == owner)
                .map(|(off, _)| off)
                .collect();
        };
        let mut offsets = Vec::new();
        let mut at = heads.get(owner).copied().unwrap_or(NIL);
        while at != NIL {
            offsets.push(u64::from(at));
            at = self.slot(u64::from(at)).map_or(NIL, |s| s.next);
        }
        offsets.sort_unstable();
        offsets
    }

    /// The allocated positions with their owners, in order.
    ///
    /// ```
    /// let mut a = overlay_ipam::alloc::OffsetAllocator::new(8).unwrap();
    /// a.reserve(0).unwrap();
    /// a.allocate(4, 'b').unwrap();
    /// a.allocate(2, 'a').unwrap();
    /// assert_eq!(a.iter().collect::<Vec<_>>(), [(2, &'a'), (4, &'b')]);
    /// ```
    pub fn iter(&self) -> impl Iterator<Item = (u64, &O)> + '_ {
        self.bits
            .iter_set(0)
            .filter_map(|off| Some((off, self.owner(off)?)))
    }

    /// Approximate heap bytes held: the bitmap, the owner pages in use and
    /// the owner map.
    ///
    /// ```
    /// // An IPv6 /104: 16 Mi positions in about 2 MiB while empty.
    /// let a = overlay_ipam::alloc::OffsetAllocator::<u32>::new(1 << 24).unwrap();
    /// assert!(a.heap_bytes() < 3 << 20);
    /// ```
    pub fn heap_bytes(&self) -> usize {
        let slot = std::mem::size_of::<Slot<O>>();
        let page_bytes = PAGE as usize * slot;
        let pages_in_use =
            self.pages.iter().filter(|p| p.is_some()).count() + usize::from(self.spare.is_some());
        self.bits.heap_bytes()
            + self.pages.capacity() * std::mem::size_of::<Page<O>>()
            + self.page_used.capacity() * 2
            + pages_in_use * page_bytes
            + self.heads.as_ref().map_or(0, |h| h.capacity())
                * (std::mem::size_of::<(O, u32)>() + 1)
            + self.reserved.len() * 3 * std::mem::size_of::<u64>()
    }

    fn slot(&self, off: u64) -> Option<&Slot<O>> {
        self.pages
            .get((off / PAGE) as usize)?
            .as_ref()?
            .get((off % PAGE) as usize)
    }

    fn slot_mut(&mut self, off: u64) -> Option<&mut Slot<O>> {
        self.pages
            .get_mut((off / PAGE) as usize)?
            .as_mut()?
            .get_mut((off % PAGE) as usize)
    }

    /// Build the owner index (the heads and the slots' links) from the
    /// allocated positions, if it is not built yet.
    fn build_owner_index(&mut self) {
        if self.heads.is_some() {
            return;
        }
        let mut heads: HashMap<O, u32, FastState> = HashMap::default();
        let allocated: Vec<u64> = self.iter().map(|(off, _)| off).collect();
        for off in allocated {
            let Some(owner) = self.slot(off).and_then(|s| s.owner.clone()) else {
                continue;
            };
            let next = heads.insert(owner, link(off)).unwrap_or(NIL);
            if next != NIL
                && let Some(s) = self.slot_mut(u64::from(next))
            {
                s.prev = link(off);
            }
            if let Some(s) = self.slot_mut(off) {
                s.prev = NIL;
                s.next = next;
            }
        }
        self.heads = Some(heads);
    }

    /// Take the position between `prev` and `next` out of `owner`'s list.
    fn unlink(&mut self, owner: &O, prev: u32, next: u32) {
        if prev == NIL {
            if let Some(heads) = &mut self.heads {
                if next == NIL {
                    heads.remove(owner);
                } else if let Some(head) = heads.get_mut(owner) {
                    *head = next;
                }
            }
        } else if let Some(s) = self.slot_mut(u64::from(prev)) {
            s.next = next;
        }
        if next != NIL
            && let Some(s) = self.slot_mut(u64::from(next))
        {
            s.prev = prev;
        }
    }

    /// Allocate the free, unreserved, in-range position `off`.
    fn take(&mut self, off: u64, owner: O) {
        self.bits.set(off);
        self.used += 1;
        self.last = Some(off);
        if is_zst::<O>() {
            if self.zst_owner.is_none() {
                self.zst_owner = Some(owner);
            }
            return;
        }
        let page = (off / PAGE) as usize;
        if let Some(slots @ None) = self.pages.get_mut(page) {
            *slots = Some(
                self.spare
                    .take()
                    .unwrap_or_else(|| (0..PAGE).map(|_| Slot::default()).collect()),
            );
        }
        if let Some(used) = self.page_used.get_mut(page) {
            *used += 1;
        }
        let next = match &mut self.heads {
            None => NIL,
            Some(heads) => match heads.entry(owner.clone()) {
                Entry::Occupied(mut head) => std::mem::replace(head.get_mut(), link(off)),
                Entry::Vacant(head) => {
                    head.insert(link(off));
                    NIL
                }
            },
        };
        if next != NIL
            && let Some(s) = self.slot_mut(u64::from(next))
        {
            s.prev = link(off);
        }
        if let Some(s) = self.slot_mut(off) {
            *s = Slot {
                owner: Some(owner),
                prev: NIL,
                next,
            };
        }
    }

    /// Release the allocated position `off`; `None` when it has no owner
    /// (it is reserved).
    fn untake(&mut self, off: u64) -> Option<O> {
        if is_zst::<O>() {
            if self.reserved.contains(&off) {
                return None;
            }
            self.bits.clear(off);
            self.used -= 1;
            return self.zst_owner.clone();
        }
        let slot = self.slot_mut(off)?;
        let owner = slot.owner.take()?;
        let (prev, next) = (slot.prev, slot.next);
        slot.prev = NIL;
        slot.next = NIL;
        if self.heads.is_some() {
            self.unlink(&owner, prev, next);
        }
        self.bits.clear(off);
        self.used -= 1;
        let page = (off / PAGE) as usize;
        if let Some(used) = self.page_used.get_mut(page) {
            *used -= 1;
            if *used == 0
                && let Some(slots) = self.pages.get_mut(page)
            {
                let emptied = slots.take();
                if self.spare.is_none() {
                    self.spare = emptied;
                }
            }
        }
        Some(owner)
    }
}
