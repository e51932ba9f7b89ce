//! In-memory address allocators, IPv4 and IPv6, that stay fast when nearly
//! full and small when large.
//!
//! [`IpAllocator`] hands out the addresses of a prefix or of a contiguous
//! range to owners: the next one round-robin as `host-local` does
//! ([`allocate_next`](IpAllocator::allocate_next)), the lowest free one, a
//! given one, or the first free one of a band
//! ([`allocate_in`](IpAllocator::allocate_in), which the Kubernetes-style
//! allocators of [`crate::k8s`] build on). It keeps no files and formats no
//! CNI JSON: an owner `O` is any small key the caller picks (`()`, a pod
//! id, a `(container, interface)` pair), and
//! [`release_owner`](IpAllocator::release_owner) frees all of an owner's addresses at once.
//! [`OffsetAllocator`] is the same allocator over plain positions
//! `0..size`, for ports or anything numbered.
//!
//! Cost: one bit per address plus summary words (a `/12` costs 128 KiB, an
//! IPv6 `/104` 2 MiB), owner pages only where addresses are allocated, and a
//! handful of word operations per allocation or release at any fill: the
//! next free address is found through the summaries with `trailing_zeros`,
//! never by a scan. Addresses are `u128` offsets from the first address
//! inside and [`IpAddr`] at the API.
//!
//! ```
//! use overlay_ipam::alloc::{AllocError, IpAllocator};
//!
//! // The network and (IPv4) broadcast addresses are reserved.
//! let mut pods = IpAllocator::for_prefix("198.51.100.0/29".parse().unwrap()).unwrap();
//! pods.reserve("198.51.100.1".parse().unwrap()).unwrap(); // the gateway
//! assert_eq!(pods.free(), 5);
//!
//! let a = pods.allocate_next("pod-a").unwrap();
//! let b = pods.allocate_next("pod-b").unwrap();
//! assert_eq!((a.to_string(), b.to_string()), ("198.51.100.2".into(), "198.51.100.3".into()));
//! assert_eq!(pods.owner(b), Some(&"pod-b"));
//!
//! pods.release(a).unwrap();
//! // Round-robin: .4 next, not the .2 just freed.
//! assert_eq!(pods.allocate_next("pod-c").unwrap().to_string(), "198.51.100.4");
//! assert_eq!(pods.release_owner(&"pod-b"), vec![b]);
//! assert_eq!(pods.iter().map(|(ip, o)| (ip.to_string(), *o)).collect::<Vec<_>>(),
//!            [("198.51.100.4".to_string(), "pod-c")]);
//!
//! let taken = pods.allocate("198.51.100.4".parse().unwrap(), "pod-d");
//! assert!(matches!(taken, Err(AllocError::AlreadyAllocated(_))));
//! ```

mod bitmap;
mod hash;
mod offsets;

use std::fmt;
use std::hash::Hash;
use std::net::IpAddr;

use ipnet::IpNet;

pub use offsets::{MAX_SIZE, OffsetAllocator};

use crate::range::{Range, from_bits, to_bits as bits};

/// Why an allocator refused an operation. `T` names a position: an
/// [`IpAddr`] for [`IpAllocator`], a `u64` offset for [`OffsetAllocator`],
/// a port for [`crate::k8s::NodePortAllocator`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AllocError<T = IpAddr> {
    /// No free position is left (in the range or band asked for).
    #[error("the range is full")]
    Exhausted,
    /// The position is outside the range (or of the other address family).
    #[error("{0} is outside the range")]
    OutOfRange(T),
    /// The position is allocated already.
    #[error("{0} is already allocated")]
    AlreadyAllocated(T),
    /// The position is not allocated.
    #[error("{0} is not allocated")]
    NotAllocated(T),
    /// The position is reserved (a network, broadcast or gateway address).
    #[error("{0} is reserved")]
    Reserved(T),
    /// The range would hold no position.
    #[error("the range is empty")]
    Empty,
    /// The range holds more than [`MAX_SIZE`] positions.
    #[error("a range of {size} positions is larger than the maximum of {MAX_SIZE}")]
    TooLarge {
        /// The number of positions asked for.
        size: u128,
    },
    /// The range's first position is after its last.
    #[error("the range starts at {first}, after its end {last}")]
    Inverted {
        /// The first position.
        first: T,
        /// The last position.
        last: T,
    },
    /// The range's ends are of different address families.
    #[error("{first} and {last} are of different address families")]
    MixedFamilies {
        /// The first address.
        first: T,
        /// The last address.
        last: T,
    },
}

impl<T> AllocError<T> {
    /// The same error naming positions of another kind: offsets as
    /// addresses, addresses as ports.
    ///
    /// ```
    /// use overlay_ipam::alloc::AllocError;
    ///
    /// let e: AllocError<u64> = AllocError::NotAllocated(2);
    /// assert_eq!(e.map(|off| 30000 + off as u16), AllocError::NotAllocated(30002u16));
    /// ```
    pub fn map<U>(self, mut f: impl FnMut(T) -> U) -> AllocError<U> {
        match self {
            AllocError::Exhausted => AllocError::Exhausted,
            AllocError::OutOfRange(t) => AllocError::OutOfRange(f(t)),
            AllocError::AlreadyAllocated(t) => AllocError::AlreadyAllocated(f(t)),
            AllocError::NotAllocated(t) => AllocError::NotAllocated(f(t)),
            AllocError::Reserved(t) => AllocError::Reserved(f(t)),
            AllocError::Empty => AllocError::Empty,
            AllocError::TooLarge { size } => AllocError::TooLarge { size },
            AllocError::Inverted { first, last } => AllocError::Inverted {
                first: f(first),
                last: f(last),
            },
            AllocError::MixedFamilies { first, last } => AllocError::MixedFamilies {
                first: f(first),
                last: f(last),
            },
        }
    }
}

/// An allocator of the addresses of one contiguous range (a prefix, or
/// `first..=last`) to owners `O`. See the [module docs](self).
///
/// Addresses are **free**, **allocated** to an owner, or **reserved**:
/// never handed out ([`for_prefix`](Self::for_prefix) reserves the network
/// and IPv4 broadcast addresses, [`from_host_local`](Self::from_host_local)
/// the gateway; [`reserve`](Self::reserve) adds more). At most [`MAX_SIZE`]
/// addresses.
#[derive(Clone)]
pub struct IpAllocator<O> {
    first: IpAddr,
    offsets: OffsetAllocator<O>,
}

impl<O> fmt::Debug for IpAllocator<O> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IpAllocator")
            .field("first", &self.first)
            .field("offsets", &self.offsets)
            .finish()
    }
}

impl<O: Clone + Eq + Hash> IpAllocator<O> {
    /// An allocator of `first..=last`, both of one family, with nothing
    /// reserved.
    ///
    /// ```
    /// use overlay_ipam::alloc::{AllocError, IpAllocator};
    ///
    /// let a = IpAllocator::<()>::for_range("192.0.2.10".parse().unwrap(), "192.0.2.19".parse().unwrap()).unwrap();
    /// assert_eq!(a.size(), 10);
    /// let v6 = IpAllocator::<()>::for_range("2001:db8::".parse().unwrap(), "2001:db8::ff:ffff".parse().unwrap()).unwrap();
    /// assert_eq!(v6.size(), 1 << 24);
    /// let huge = IpAllocator::<()>::for_range("2001:db8::".parse().unwrap(), "2001:db8::1:0:0".parse().unwrap());
    /// assert!(matches!(huge, Err(AllocError::TooLarge { .. })));
    /// ```
    pub fn for_range(first: IpAddr, last: IpAddr) -> Result<Self, AllocError> {
        if first.is_ipv4() != last.is_ipv4() {
            return Err(AllocError::MixedFamilies { first, last });
        }
        let (lo, hi) = (bits(first), bits(last));
        if lo > hi {
            return Err(AllocError::Inverted { first, last });
        }
        // Saturating: `::/0` holds 2^128 addresses.
        let size = (hi - lo).saturating_add(1);
        let size = u64::try_from(size)
            .ok()
            .filter(|&s| s <= MAX_SIZE)
            .ok_or(AllocError::TooLarge { size })?;
        let offsets = OffsetAllocator::new(size).map_err(|e| e.map(|_| first))?;
        Ok(IpAllocator { first, offsets })
    }

    /// An allocator of every address of `net`, with its network address
    /// reserved and, for IPv4, its broadcast address, as Kubernetes and
    /// `host-local` do; except for IPv4 `/31` and `/32` and IPv6 `/127` and
    /// `/128`, whose addresses are all usable (RFC 3021, RFC 6164). Host
    /// bits of `net` are ignored. For a block carved out of a larger subnet
    /// (a node's share of a cluster range), whose first and last addresses
    /// are ordinary ones, use [`for_range`](Self::for_range) with the
    /// block's network and broadcast addresses instead.
    ///
    /// ```
    /// use overlay_ipam::alloc::IpAllocator;
    ///
    /// let v4 = IpAllocator::<()>::for_prefix("10.96.0.0/12".parse().unwrap()).unwrap();
    /// assert_eq!((v4.size(), v4.free()), (1 << 20, (1 << 20) - 2));
    /// let v6 = IpAllocator::<()>::for_prefix("2001:db8::/104".parse().unwrap()).unwrap();
    /// assert_eq!(v6.free(), (1 << 24) - 1);
    /// assert_eq!(v6.reserved().map(|ip| ip.to_string()).collect::<Vec<_>>(), ["2001:db8::"]);
    /// let p2p = IpAllocator::<()>::for_prefix("192.0.2.4/31".parse().unwrap()).unwrap();
    /// assert_eq!(p2p.free(), 2);
    /// ```
    pub fn for_prefix(net: IpNet) -> Result<Self, AllocError> {
        let net = net.trunc();
        let mut alloc = IpAllocator::for_range(net.network(), net.broadcast())?;
        if net.prefix_len() + 1 < net.max_prefix_len() {
            alloc.reserve(net.network())?;
            if net.addr().is_ipv4() {
                alloc.reserve(net.broadcast())?;
            }
        }
        Ok(alloc)
    }

    /// An allocator of a `host-local` range: `rangeStart..=rangeEnd` with
    /// the gateway reserved when it lies inside. Its
    /// [`allocate_next`](Self::allocate_next) yields addresses in the
    /// order of [`RangeSet::candidates`](crate::range::RangeSet::candidates).
    ///
    /// ```
    /// use overlay_ipam::alloc::IpAllocator;
    /// use overlay_ipam::range::{Range, RangeSpec};
    ///
    /// let range = Range::new(&RangeSpec::new("198.51.100.0/24".parse().unwrap())).unwrap();
    /// let mut a = IpAllocator::from_host_local(&range).unwrap();
    /// // .1 is the gateway, .255 the broadcast address, .0 the network.
    /// assert_eq!(a.free(), 253);
    /// assert_eq!(a.allocate_next(()).unwrap().to_string(), "198.51.100.2");
    /// ```
    pub fn from_host_local(range: &Range) -> Result<Self, AllocError> {
        let mut alloc = IpAllocator::for_range(range.start(), range.end())?;
        if range.contains(range.gateway()) {
            alloc.reserve(range.gateway())?;
        }
        Ok(alloc)
    }

    /// The first address of the range.
    ///
    /// ```
    /// let a = overlay_ipam::alloc::IpAllocator::<()>::for_prefix("192.0.2.0/24".parse().unwrap()).unwrap();
    /// assert_eq!((a.first().to_string(), a.last().to_string()), ("192.0.2.0".into(), "192.0.2.255".into()));
    /// ```
    pub fn first(&self) -> IpAddr {
        self.first
    }

    /// The last address of the range.
    ///
    /// ```
    /// let a = overlay_ipam::alloc::IpAllocator::<()>::for_prefix("2001:db8::/126".parse().unwrap()).unwrap();
    /// assert_eq!(a.last().to_string(), "2001:db8::3");
    /// ```
    pub fn last(&self) -> IpAddr {
        self.address_at(self.offsets.size() - 1)
    }

    /// Whether the range holds `ip` (of its family).
    ///
    /// ```
    /// let a = overlay_ipam::alloc::IpAllocator::<()>::for_prefix("192.0.2.0/24".parse().unwrap()).unwrap();
    /// assert!(a.contains("192.0.2.0".parse().unwrap())); // reserved, but in the range
    /// assert!(!a.contains("192.0.3.0".parse().unwrap()));
    /// assert!(!a.contains("::".parse().unwrap()));
    /// ```
    pub fn contains(&self, ip: IpAddr) -> bool {
        self.offset_of(ip).is_ok()
    }

    /// The number of addresses in the range, whatever their state.
    ///
    /// ```
    /// let mut a = overlay_ipam::alloc::IpAllocator::for_prefix("192.0.2.0/28".parse().unwrap()).unwrap();
    /// a.allocate_next(()).unwrap();
    /// assert_eq!((a.size(), a.used(), a.reserved_count(), a.free()), (16, 1, 2, 13));
    /// ```
    pub fn size(&self) -> u64 {
        self.offsets.size()
    }

    /// The number of allocated addresses.
    ///
    /// ```
    /// let mut a = overlay_ipam::alloc::IpAllocator::for_prefix("2001:db8::/120".parse().unwrap()).unwrap();
    /// a.allocate_next(7u8).unwrap();
    /// assert_eq!(a.used(), 1);
    /// ```
    pub fn used(&self) -> u64 {
        self.offsets.used()
    }

    /// The number of free addresses: neither allocated nor reserved.
    ///
    /// ```
    /// let a = overlay_ipam::alloc::IpAllocator::<()>::for_prefix("192.0.2.0/24".parse().unwrap()).unwrap();
    /// assert_eq!(a.free(), 254);
    /// ```
    pub fn free(&self) -> u64 {
        self.offsets.free()
    }

    /// The number of reserved addresses.
    ///
    /// ```
    /// let v6 = overlay_ipam::alloc::IpAllocator::<()>::for_prefix("2001:db8::/64".parse().unwrap());
    /// // 2^64 addresses are more than one allocator holds.
    /// assert!(v6.is_err());
    /// let v6 = overlay_ipam::alloc::IpAllocator::<()>::for_prefix("2001:db8::/100".parse().unwrap()).unwrap();
    /// assert_eq!(v6.reserved_count(), 1); // the network address
    /// ```
    pub fn reserved_count(&self) -> u64 {
        self.offsets.reserved_count()
    }

    /// The reserved addresses, in order.
    ///
    /// ```
    /// let a = overlay_ipam::alloc::IpAllocator::<()>::for_prefix("192.0.2.0/24".parse().unwrap()).unwrap();
    /// let r: Vec<String> = a.reserved().map(|ip| ip.to_string()).collect();
    /// assert_eq!(r, ["192.0.2.0", "192.0.2.255"]);
    /// ```
    pub fn reserved(&self) -> impl Iterator<Item = IpAddr> + '_ {
        self.offsets.reserved().map(|off| self.address_at(off))
    }

    /// The allocator of offsets underneath: offset `n` is the `n`th address
    /// from [`first`](Self::first).
    ///
    /// ```
    /// let mut a = overlay_ipam::alloc::IpAllocator::for_prefix("192.0.2.0/24".parse().unwrap()).unwrap();
    /// a.allocate("192.0.2.9".parse().unwrap(), 'x').unwrap();
    /// assert_eq!(a.offsets().owner(9), Some(&'x'));
    /// ```
    pub fn offsets(&self) -> &OffsetAllocator<O> {
        &self.offsets
    }

    pub(crate) fn offsets_mut(&mut self) -> &mut OffsetAllocator<O> {
        &mut self.offsets
    }

    /// The offset of `ip` from the first address.
    ///
    /// ```
    /// use overlay_ipam::alloc::{AllocError, IpAllocator};
    ///
    /// let a = IpAllocator::<()>::for_prefix("192.0.2.0/24".parse().unwrap()).unwrap();
    /// assert_eq!(a.offset_of("192.0.2.7".parse().unwrap()), Ok(7));
    /// assert!(matches!(a.offset_of("2001:db8::".parse().unwrap()), Err(AllocError::OutOfRange(_))));
    /// ```
    pub fn offset_of(&self, ip: IpAddr) -> Result<u64, AllocError> {
        if ip.is_ipv4() != self.first.is_ipv4() {
            return Err(AllocError::OutOfRange(ip));
        }
        bits(ip)
            .checked_sub(bits(self.first))
            .and_then(|off| u64::try_from(off).ok())
            .filter(|&off| off < self.offsets.size())
            .ok_or(AllocError::OutOfRange(ip))
    }

    /// The address at `offset` from the first address (which must be below
    /// [`size`](Self::size); larger offsets give the last address).
    ///
    /// ```
    /// let a = overlay_ipam::alloc::IpAllocator::<()>::for_prefix("2001:db8::/120".parse().unwrap()).unwrap();
    /// assert_eq!(a.address_at(255).to_string(), "2001:db8::ff");
    /// ```
    pub fn address_at(&self, offset: u64) -> IpAddr {
        // Within the range, so the sum stays in the family.
        let off = u128::from(offset.min(self.offsets.size() - 1));
        from_bits(self.first, bits(self.first) + off)
    }

    fn to_ip(&self, e: AllocError<u64>) -> AllocError {
        e.map(|off| self.address_at(off))
    }

    /// Mark `ip` as never to be allocated (see
    /// [`OffsetAllocator::reserve`]).
    ///
    /// ```
    /// use overlay_ipam::alloc::{AllocError, IpAllocator};
    ///
    /// let mut a = IpAllocator::for_prefix("192.0.2.0/24".parse().unwrap()).unwrap();
    /// let gw = "192.0.2.1".parse().unwrap();
    /// a.reserve(gw).unwrap();
    /// assert_eq!(a.allocate(gw, ()), Err(AllocError::Reserved(gw)));
    /// let outside = "198.51.100.1".parse().unwrap();
    /// assert_eq!(a.reserve(outside), Err(AllocError::OutOfRange(outside)));
    /// ```
    pub fn reserve(&mut self, ip: IpAddr) -> Result<(), AllocError> {
        let off = self.offset_of(ip)?;
        self.offsets.reserve(off).map_err(|e| self.to_ip(e))
    }

    /// Make the reserved `ip` free again; whether it was reserved.
    ///
    /// ```
    /// let mut a = overlay_ipam::alloc::IpAllocator::<()>::for_prefix("192.0.2.0/24".parse().unwrap()).unwrap();
    /// let net = "192.0.2.0".parse().unwrap();
    /// assert!(a.unreserve(net));
    /// assert!(a.is_free(net));
    /// ```
    pub fn unreserve(&mut self, ip: IpAddr) -> bool {
        self.offset_of(ip)
            .is_ok_and(|off| self.offsets.unreserve(off))
    }

    /// Whether `ip` is reserved.
    ///
    /// ```
    /// let a = overlay_ipam::alloc::IpAllocator::<()>::for_prefix("192.0.2.0/24".parse().unwrap()).unwrap();
    /// assert!(a.is_reserved("192.0.2.255".parse().unwrap()));
    /// assert!(!a.is_reserved("192.0.2.254".parse().unwrap()));
    /// ```
    pub fn is_reserved(&self, ip: IpAddr) -> bool {
        self.offset_of(ip)
            .is_ok_and(|off| self.offsets.is_reserved(off))
    }

    /// Whether `ip` is in the range and free.
    ///
    /// ```
    /// let mut a = overlay_ipam::alloc::IpAllocator::for_prefix("192.0.2.0/24".parse().unwrap()).unwrap();
    /// let ip = a.allocate_next(()).unwrap();
    /// assert!(!a.is_free(ip));
    /// assert!(!a.is_free("192.0.2.0".parse().unwrap()));
    /// assert!(a.is_free("192.0.2.2".parse().unwrap()));
    /// ```
    pub fn is_free(&self, ip: IpAddr) -> bool {
        self.offset_of(ip)
            .is_ok_and(|off| self.offsets.is_free(off))
    }

    /// The owner of `ip`, if it is allocated.
    ///
    /// ```
    /// let mut a = overlay_ipam::alloc::IpAllocator::for_prefix("192.0.2.0/24".parse().unwrap()).unwrap();
    /// let ip = a.allocate_next(("container-1", "eth0")).unwrap();
    /// assert_eq!(a.owner(ip), Some(&("container-1", "eth0")));
    /// ```
    pub fn owner(&self, ip: IpAddr) -> Option<&O> {
        self.offsets.owner(self.offset_of(ip).ok()?)
    }

    /// The address the last allocation took.
    ///
    /// ```
    /// let mut a = overlay_ipam::alloc::IpAllocator::for_prefix("192.0.2.0/24".parse().unwrap()).unwrap();
    /// assert_eq!(a.last_allocated(), None);
    /// a.allocate("192.0.2.77".parse().unwrap(), ()).unwrap();
    /// assert_eq!(a.last_allocated(), Some("192.0.2.77".parse().unwrap()));
    /// ```
    pub fn last_allocated(&self) -> Option<IpAddr> {
        self.offsets
            .last_allocated()
            .map(|off| self.address_at(off))
    }

    /// Set where [`allocate_next`](Self::allocate_next) continues from (the
    /// address after `last`), as `host-local` does with its
    /// `last_reserved_ip` file; an address outside the range makes it start
    /// from the first address.
    ///
    /// ```
    /// let mut a = overlay_ipam::alloc::IpAllocator::for_prefix("192.0.2.0/24".parse().unwrap()).unwrap();
    /// a.set_last_allocated(Some("192.0.2.200".parse().unwrap()));
    /// assert_eq!(a.allocate_next(()).unwrap().to_string(), "192.0.2.201");
    /// a.set_last_allocated(Some("198.51.100.1".parse().unwrap()));
    /// assert_eq!(a.allocate_next(()).unwrap().to_string(), "192.0.2.1");
    /// ```
    pub fn set_last_allocated(&mut self, last: Option<IpAddr>) {
        let last = last.and_then(|ip| self.offset_of(ip).ok());
        self.offsets.set_last_allocated(last);
    }

    /// The address [`allocate_next`](Self::allocate_next) would take.
    ///
    /// ```
    /// let mut a = overlay_ipam::alloc::IpAllocator::for_prefix("192.0.2.0/24".parse().unwrap()).unwrap();
    /// a.allocate("192.0.2.254".parse().unwrap(), ()).unwrap();
    /// // Wraps past the end (the broadcast address is reserved).
    /// assert_eq!(a.next_free(), Some("192.0.2.1".parse().unwrap()));
    /// ```
    pub fn next_free(&self) -> Option<IpAddr> {
        self.offsets.next_free().map(|off| self.address_at(off))
    }

    /// The lowest free address.
    ///
    /// ```
    /// let mut a = overlay_ipam::alloc::IpAllocator::for_prefix("192.0.2.0/30".parse().unwrap()).unwrap();
    /// assert_eq!(a.lowest_free(), Some("192.0.2.1".parse().unwrap()));
    /// a.allocate_lowest(()).unwrap();
    /// a.allocate_lowest(()).unwrap();
    /// assert_eq!(a.lowest_free(), None);
    /// ```
    pub fn lowest_free(&self) -> Option<IpAddr> {
        self.offsets.lowest_free().map(|off| self.address_at(off))
    }

    /// Allocate `ip` to `owner`.
    ///
    /// ```
    /// use overlay_ipam::alloc::{AllocError, IpAllocator};
    ///
    /// let mut a = IpAllocator::for_prefix("192.0.2.0/24".parse().unwrap()).unwrap();
    /// let ip = "192.0.2.9".parse().unwrap();
    /// a.allocate(ip, 1).unwrap();
    /// assert_eq!(a.allocate(ip, 2), Err(AllocError::AlreadyAllocated(ip)));
    /// let net = "192.0.2.0".parse().unwrap();
    /// assert_eq!(a.allocate(net, 2), Err(AllocError::Reserved(net)));
    /// ```
    pub fn allocate(&mut self, ip: IpAddr, owner: O) -> Result<(), AllocError> {
        let off = self.offset_of(ip)?;
        self.offsets.allocate(off, owner).map_err(|e| self.to_ip(e))
    }

    /// Allocate the next free address round-robin, as `host-local` does:
    /// the first free one after the last allocation, wrapping past the end,
    /// skipping reserved addresses; from the first address when nothing was
    /// allocated yet. See [`OffsetAllocator::allocate_next`].
    ///
    /// ```
    /// use overlay_ipam::alloc::{AllocError, IpAllocator};
    ///
    /// let mut a = IpAllocator::for_prefix("2001:db8::/126".parse().unwrap()).unwrap();
    /// assert_eq!(a.allocate_next(1).unwrap().to_string(), "2001:db8::1");
    /// assert_eq!(a.allocate_next(2).unwrap().to_string(), "2001:db8::2");
    /// assert_eq!(a.allocate_next(3).unwrap().to_string(), "2001:db8::3");
    /// assert_eq!(a.allocate_next(4), Err(AllocError::Exhausted));
    /// ```
    pub fn allocate_next(&mut self, owner: O) -> Result<IpAddr, AllocError> {
        let off = self
            .offsets
            .allocate_next(owner)
            .map_err(|e| self.to_ip(e))?;
        Ok(self.address_at(off))
    }

    /// Allocate the lowest free address.
    ///
    /// ```
    /// let mut a = overlay_ipam::alloc::IpAllocator::for_prefix("2001:db8::/120".parse().unwrap()).unwrap();
    /// a.set_last_allocated(Some("2001:db8::80".parse().unwrap()));
    /// assert_eq!(a.allocate_lowest(()).unwrap().to_string(), "2001:db8::1");
    /// ```
    pub fn allocate_lowest(&mut self, owner: O) -> Result<IpAddr, AllocError> {
        let off = self
            .offsets
            .allocate_lowest(owner)
            .map_err(|e| self.to_ip(e))?;
        Ok(self.address_at(off))
    }

    /// Allocate the first free address at or after `start` within
    /// `lo..=hi`, wrapping around to `lo`.
    ///
    /// ```
    /// use overlay_ipam::alloc::{AllocError, IpAllocator};
    ///
    /// let ip = |s: &str| s.parse().unwrap();
    /// let mut a = IpAllocator::for_prefix("192.0.2.0/24".parse().unwrap()).unwrap();
    /// assert_eq!(a.allocate_in(ip("192.0.2.16"), ip("192.0.2.17"), ip("192.0.2.17"), ()), Ok(ip("192.0.2.17")));
    /// assert_eq!(a.allocate_in(ip("192.0.2.16"), ip("192.0.2.17"), ip("192.0.2.17"), ()), Ok(ip("192.0.2.16")));
    /// assert_eq!(a.allocate_in(ip("192.0.2.16"), ip("192.0.2.17"), ip("192.0.2.16"), ()), Err(AllocError::Exhausted));
    /// ```
    pub fn allocate_in(
        &mut self,
        lo: IpAddr,
        hi: IpAddr,
        start: IpAddr,
        owner: O,
    ) -> Result<IpAddr, AllocError> {
        let (lo, hi, start) = (
            self.offset_of(lo)?,
            self.offset_of(hi)?,
            self.offset_of(start)?,
        );
        let off = self
            .offsets
            .allocate_in(lo, hi, start, owner)
            .map_err(|e| self.to_ip(e))?;
        Ok(self.address_at(off))
    }

    /// Release `ip`; its owner.
    ///
    /// ```
    /// use overlay_ipam::alloc::{AllocError, IpAllocator};
    ///
    /// let mut a = IpAllocator::for_prefix("192.0.2.0/24".parse().unwrap()).unwrap();
    /// let ip = a.allocate_next("pod").unwrap();
    /// assert_eq!(a.release(ip), Ok("pod"));
    /// assert_eq!(a.release(ip), Err(AllocError::NotAllocated(ip)));
    /// ```
    pub fn release(&mut self, ip: IpAddr) -> Result<O, AllocError> {
        let off = self.offset_of(ip)?;
        self.offsets.release(off).map_err(|e| self.to_ip(e))
    }

    /// Release every address of `owner`; the addresses, in order.
    ///
    /// ```
    /// let mut a = overlay_ipam::alloc::IpAllocator::for_prefix("192.0.2.0/24".parse().unwrap()).unwrap();
    /// let x = a.allocate_next("pod").unwrap();
    /// let y = a.allocate_next("pod").unwrap();
    /// a.allocate_next("other").unwrap();
    /// assert_eq!(a.release_owner(&"pod"), vec![x, y]);
    /// assert_eq!(a.used(), 1);
    /// ```
    pub fn release_owner(&mut self, owner: &O) -> Vec<IpAddr> {
        let offsets = self.offsets.release_owner(owner);
        offsets
            .into_iter()
            .map(|off| self.address_at(off))
            .collect()
    }

    /// The addresses of `owner`, in order.
    ///
    /// ```
    /// let mut a = overlay_ipam::alloc::IpAllocator::for_prefix("192.0.2.0/24".parse().unwrap()).unwrap();
    /// let x = a.allocate_next(5u32).unwrap();
    /// assert_eq!(a.addresses_of(&5), vec![x]);
    /// assert!(a.addresses_of(&6).is_empty());
    /// ```
    pub fn addresses_of(&self, owner: &O) -> Vec<IpAddr> {
        let offsets = self.offsets.offsets_of(owner);
        offsets
            .into_iter()
            .map(|off| self.address_at(off))
            .collect()
    }

    /// The allocated addresses with their owners, in order.
    ///
    /// ```
    /// let mut a = overlay_ipam::alloc::IpAllocator::for_prefix("192.0.2.0/24".parse().unwrap()).unwrap();
    /// a.allocate("192.0.2.9".parse().unwrap(), 'b').unwrap();
    /// a.allocate("192.0.2.3".parse().unwrap(), 'a').unwrap();
    /// let used: Vec<(String, char)> = a.iter().map(|(ip, o)| (ip.to_string(), *o)).collect();
    /// assert_eq!(used, [("192.0.2.3".to_string(), 'a'), ("192.0.2.9".to_string(), 'b')]);
    /// ```
    pub fn iter(&self) -> impl Iterator<Item = (IpAddr, &O)> + '_ {
        self.offsets
            .iter()
            .map(|(off, owner)| (self.address_at(off), owner))
    }

    /// Approximate heap bytes held (see [`OffsetAllocator::heap_bytes`]).
    ///
    /// ```
    /// // A /12 without owners: its bitmap, 128 KiB and a little.
    /// let a = overlay_ipam::alloc::IpAllocator::<()>::for_prefix("10.96.0.0/12".parse().unwrap()).unwrap();
    /// assert!(a.heap_bytes() < 140 << 10);
    /// ```
    pub fn heap_bytes(&self) -> usize {
        self.offsets.heap_bytes()
    }
}
