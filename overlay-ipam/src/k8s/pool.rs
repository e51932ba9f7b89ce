//! [`AddressPool`]: MetalLB-style LoadBalancer address pools, and
//! [`PoolRange`], the text of one of their address ranges.

use std::fmt;
use std::hash::Hash;
use std::net::IpAddr;
use std::str::FromStr;

use ipnet::IpNet;
use overlay_core::IpFamily;

use crate::alloc::{AllocError, IpAllocator, MAX_SIZE};
use crate::range::{from_bits, to_bits};

/// One range of an address pool: every address from `first` to `last`.
///
/// Written as a CIDR (`192.0.2.0/28`; host bits are ignored, as MetalLB's
/// Go parser ignores them, and a single address is a `/32` or `/128`) or
/// as `first-last` (spaces around either address allowed).
///
/// ```
/// use overlay_ipam::k8s::{PoolRange, PoolRangeError};
///
/// let cidr: PoolRange = "192.0.2.0/30".parse().unwrap();
/// assert_eq!((cidr.first().to_string(), cidr.last().to_string()), ("192.0.2.0".into(), "192.0.2.3".into()));
/// let range: PoolRange = "198.51.100.10 - 198.51.100.20".parse().unwrap();
/// assert_eq!(range.size(), 11);
/// assert_eq!(range.to_string(), "198.51.100.10-198.51.100.20");
/// assert!(matches!("198.51.100.20-198.51.100.10".parse::<PoolRange>(), Err(PoolRangeError::StartAfterEnd { .. })));
/// assert!(matches!("192.0.2.1".parse::<PoolRange>(), Err(PoolRangeError::InvalidCidr(_))));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PoolRange {
    first: IpAddr,
    last: IpAddr,
}

/// Why the text of a pool range is invalid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PoolRangeError {
    /// Text without `-` that is not a CIDR.
    #[error("invalid CIDR {0:?}")]
    InvalidCidr(String),
    /// An end of a `first-last` range is not an IP address.
    #[error("invalid IP address {0:?} in a range")]
    InvalidAddress(String),
    /// The first address of a range is after its last.
    #[error("invalid IP range: start IP {first} is after the end IP {last}")]
    StartAfterEnd {
        /// The first address.
        first: IpAddr,
        /// The last address.
        last: IpAddr,
    },
    /// The ends of a range are of different families.
    #[error("invalid IP range: {first} and {last} are of different address families")]
    MixedFamilies {
        /// The first address.
        first: IpAddr,
        /// The last address.
        last: IpAddr,
    },
}

impl PoolRange {
    /// The addresses `first..=last`, of one family.
    ///
    /// ```
    /// use overlay_ipam::k8s::{PoolRange, PoolRangeError};
    ///
    /// let ip = |s: &str| s.parse().unwrap();
    /// let r = PoolRange::new(ip("192.0.2.10"), ip("192.0.2.20")).unwrap();
    /// assert_eq!(r.size(), 11);
    /// assert!(matches!(PoolRange::new(ip("192.0.2.10"), ip("2001:db8::")), Err(PoolRangeError::MixedFamilies { .. })));
    /// ```
    pub fn new(first: IpAddr, last: IpAddr) -> Result<Self, PoolRangeError> {
        if first.is_ipv4() != last.is_ipv4() {
            return Err(PoolRangeError::MixedFamilies { first, last });
        }
        if to_bits(first) > to_bits(last) {
            return Err(PoolRangeError::StartAfterEnd { first, last });
        }
        Ok(PoolRange { first, last })
    }

    /// Every address of `net`.
    ///
    /// ```
    /// let r = overlay_ipam::k8s::PoolRange::from_net("2001:db8::/124".parse().unwrap());
    /// assert_eq!(r.to_string(), "2001:db8::-2001:db8::f");
    /// ```
    pub fn from_net(net: IpNet) -> Self {
        PoolRange {
            first: net.network(),
            last: net.broadcast(),
        }
    }

    /// The first address.
    ///
    /// ```
    /// let r: overlay_ipam::k8s::PoolRange = "192.0.2.8/29".parse().unwrap();
    /// assert_eq!((r.first().to_string(), r.last().to_string()), ("192.0.2.8".into(), "192.0.2.15".into()));
    /// ```
    pub fn first(&self) -> IpAddr {
        self.first
    }

    /// The last address.
    ///
    /// ```
    /// let r: overlay_ipam::k8s::PoolRange = "192.0.2.8-192.0.2.9".parse().unwrap();
    /// assert_eq!(r.last().to_string(), "192.0.2.9");
    /// ```
    pub fn last(&self) -> IpAddr {
        self.last
    }

    /// The family of the addresses.
    ///
    /// ```
    /// use overlay_core::IpFamily;
    ///
    /// let r: overlay_ipam::k8s::PoolRange = "2001:db8::/120".parse().unwrap();
    /// assert_eq!(r.family(), IpFamily::V6);
    /// ```
    pub fn family(&self) -> IpFamily {
        IpFamily::of(self.first)
    }

    /// The number of addresses (saturating at `u128::MAX` for `::/0`).
    ///
    /// ```
    /// let r: overlay_ipam::k8s::PoolRange = "2001:db8::/64".parse().unwrap();
    /// assert_eq!(r.size(), 1 << 64);
    /// ```
    pub fn size(&self) -> u128 {
        (to_bits(self.last) - to_bits(self.first)).saturating_add(1)
    }

    /// Whether `ip` is in the range.
    ///
    /// ```
    /// let r: overlay_ipam::k8s::PoolRange = "192.0.2.8/29".parse().unwrap();
    /// assert!(r.contains("192.0.2.15".parse().unwrap()));
    /// assert!(!r.contains("192.0.2.16".parse().unwrap()));
    /// ```
    pub fn contains(&self, ip: IpAddr) -> bool {
        ip.is_ipv4() == self.first.is_ipv4()
            && (to_bits(self.first)..=to_bits(self.last)).contains(&to_bits(ip))
    }

    fn overlaps(&self, other: &PoolRange) -> bool {
        self.contains(other.first) || other.contains(self.first)
    }
}

impl fmt::Display for PoolRange {
    /// `first-last`, which [`FromStr`] reads back.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.first, self.last)
    }
}

impl FromStr for PoolRange {
    type Err = PoolRangeError;

    fn from_str(s: &str) -> Result<Self, PoolRangeError> {
        match s.split_once('-') {
            None => s
                .parse::<IpNet>()
                .map(|net| PoolRange::from_net(net.trunc()))
                .map_err(|_| PoolRangeError::InvalidCidr(s.to_string())),
            Some((first, last)) => {
                let ip = |t: &str| {
                    t.trim()
                        .parse::<IpAddr>()
                        .map_err(|_| PoolRangeError::InvalidAddress(t.trim().to_string()))
                };
                PoolRange::new(ip(first)?, ip(last)?)
            }
        }
    }
}

/// Why an address pool cannot be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PoolError {
    /// A range's text is invalid.
    #[error(transparent)]
    Range(#[from] PoolRangeError),
    /// The pool has no range.
    #[error("the pool has no address range")]
    Empty,
    /// Two ranges of the pool overlap.
    #[error("range {second} overlaps with range {first}")]
    Overlap {
        /// The earlier range.
        first: PoolRange,
        /// The later range.
        second: PoolRange,
    },
}

/// A MetalLB-style address pool for LoadBalancer Services: ranges of
/// either family, allocated first fit (the lowest free address of the
/// first range of the family with one, in the order given).
///
/// Unlike a subnet, a pool has no network or broadcast address: every
/// address of a CIDR is handed out, unless the pool avoids buggy IPs
/// (IPv4 addresses ending in `.0` or `.255`), which are then never
/// allocated, not even on request.
///
/// A range of more than [`MAX_SIZE`] addresses (an IPv6 range wider than
/// a `/97`) is used from its start for [`MAX_SIZE`] addresses: first fit
/// never gets further, and a request for an address beyond is refused as
/// [`AllocError::OutOfRange`].
///
/// ```
/// use overlay_core::IpFamily;
/// use overlay_ipam::alloc::AllocError;
/// use overlay_ipam::k8s::AddressPool;
///
/// let mut pool = AddressPool::parse(["192.0.2.255-192.0.3.1", "2001:db8::/126"], true).unwrap();
/// // .255 and .0 are skipped.
/// assert_eq!(pool.allocate(IpFamily::V4, "a").unwrap().to_string(), "192.0.3.1");
/// assert_eq!(pool.allocate(IpFamily::V4, "b"), Err(AllocError::Exhausted));
/// assert_eq!(pool.allocate(IpFamily::V6, "b").unwrap().to_string(), "2001:db8::");
/// let buggy = "192.0.3.0".parse().unwrap();
/// assert_eq!(pool.allocate_ip(buggy, "c"), Err(AllocError::Reserved(buggy)));
/// assert_eq!(pool.capacity(), 1 + 4);
/// ```
#[derive(Debug, Clone)]
pub struct AddressPool<O> {
    ranges: Vec<(PoolRange, IpAllocator<O>)>,
    avoid_buggy_ips: bool,
}

impl<O: Clone + Eq + Hash> AddressPool<O> {
    /// A pool of `ranges`, which must not overlap; with `avoid_buggy_ips`,
    /// IPv4 addresses ending in `.0` or `.255` are never allocated.
    ///
    /// ```
    /// use overlay_ipam::k8s::{AddressPool, PoolRange};
    ///
    /// let ranges = [PoolRange::from_net("192.0.2.0/24".parse().unwrap())];
    /// let pool = AddressPool::<()>::new(ranges, true).unwrap();
    /// assert_eq!(pool.capacity(), 254);
    /// ```
    pub fn new(
        ranges: impl IntoIterator<Item = PoolRange>,
        avoid_buggy_ips: bool,
    ) -> Result<Self, PoolError> {
        let mut built: Vec<(PoolRange, IpAllocator<O>)> = Vec::new();
        for range in ranges {
            if let Some((earlier, _)) = built.iter().find(|(r, _)| r.overlaps(&range)) {
                return Err(PoolError::Overlap {
                    first: *earlier,
                    second: range,
                });
            }
            let first = to_bits(range.first);
            let last = to_bits(range.last).min(first.saturating_add(u128::from(MAX_SIZE) - 1));
            let mut alloc = IpAllocator::for_range(range.first, from_bits(range.first, last))
                .map_err(|_| {
                    PoolError::Range(PoolRangeError::StartAfterEnd {
                        first: range.first,
                        last: range.last,
                    })
                })?;
            if avoid_buggy_ips && range.first.is_ipv4() {
                // The addresses ending in .0 and .255, which some consumer
                // routers wrongly drop: 2 per 256.
                let mut at = first & !0xff;
                while at <= last {
                    for buggy in [at, at + 255] {
                        if (first..=last).contains(&buggy) {
                            // In range and free: reserving cannot fail.
                            let _ = alloc.reserve(from_bits(range.first, buggy));
                        }
                    }
                    at += 256;
                }
            }
            built.push((range, alloc));
        }
        if built.is_empty() {
            return Err(PoolError::Empty);
        }
        Ok(AddressPool {
            ranges: built,
            avoid_buggy_ips,
        })
    }

    /// A pool of ranges written as text (see [`PoolRange`]), as in an
    /// `IPAddressPool`'s `spec.addresses`.
    ///
    /// ```
    /// use overlay_ipam::k8s::{AddressPool, PoolError};
    ///
    /// let pool = AddressPool::<()>::parse(["192.168.10.0/24", "192.168.9.1-192.168.9.5", "fc00:f853:ccd:e799::/124"], false).unwrap();
    /// assert_eq!(pool.capacity(), 256 + 5 + 16);
    /// let overlap = AddressPool::<()>::parse(["192.168.10.0/24", "192.168.10.7-192.168.11.1"], false);
    /// assert!(matches!(overlap, Err(PoolError::Overlap { .. })));
    /// ```
    pub fn parse<S: AsRef<str>>(
        addresses: impl IntoIterator<Item = S>,
        avoid_buggy_ips: bool,
    ) -> Result<Self, PoolError> {
        let ranges = addresses
            .into_iter()
            .map(|s| s.as_ref().parse::<PoolRange>())
            .collect::<Result<Vec<_>, _>>()?;
        AddressPool::new(ranges, avoid_buggy_ips)
    }

    /// The ranges, in order.
    ///
    /// ```
    /// let pool = overlay_ipam::k8s::AddressPool::<()>::parse(["192.0.2.0/30", "2001:db8::/127"], false).unwrap();
    /// let texts: Vec<String> = pool.ranges().map(|r| r.to_string()).collect();
    /// assert_eq!(texts, ["192.0.2.0-192.0.2.3", "2001:db8::-2001:db8::1"]);
    /// ```
    pub fn ranges(&self) -> impl Iterator<Item = PoolRange> + '_ {
        self.ranges.iter().map(|(r, _)| *r)
    }

    /// Whether IPv4 addresses ending in `.0` or `.255` are avoided.
    ///
    /// ```
    /// let pool = overlay_ipam::k8s::AddressPool::<()>::parse(["192.0.2.0/24"], true).unwrap();
    /// assert!(pool.avoids_buggy_ips());
    /// ```
    pub fn avoids_buggy_ips(&self) -> bool {
        self.avoid_buggy_ips
    }

    fn range_of(&self, ip: IpAddr) -> Option<&IpAllocator<O>> {
        self.ranges
            .iter()
            .find(|(r, _)| r.contains(ip))
            .map(|(_, a)| a)
    }

    fn range_of_mut(&mut self, ip: IpAddr) -> Result<&mut IpAllocator<O>, AllocError> {
        self.ranges
            .iter_mut()
            .find(|(r, _)| r.contains(ip))
            .map(|(_, a)| a)
            .ok_or(AllocError::OutOfRange(ip))
    }

    /// Allocate the first free address of `family`: the lowest free one of
    /// the first range of that family that has one.
    ///
    /// ```
    /// use overlay_core::IpFamily;
    /// use overlay_ipam::k8s::AddressPool;
    ///
    /// let mut pool = AddressPool::parse(["192.0.2.10-192.0.2.11", "198.51.100.0/31"], false).unwrap();
    /// let got: Vec<String> = (0..4).map(|_| pool.allocate(IpFamily::V4, ()).unwrap().to_string()).collect();
    /// assert_eq!(got, ["192.0.2.10", "192.0.2.11", "198.51.100.0", "198.51.100.1"]);
    /// ```
    pub fn allocate(&mut self, family: IpFamily, owner: O) -> Result<IpAddr, AllocError> {
        for (range, alloc) in &mut self.ranges {
            if range.family() != family {
                continue;
            }
            if let Some(ip) = alloc.lowest_free() {
                alloc.allocate(ip, owner)?;
                return Ok(ip);
            }
        }
        Err(AllocError::Exhausted)
    }

    /// Allocate the address a Service asked for
    /// (`metallb.universe.tf/loadBalancerIPs` or `spec.loadBalancerIP`).
    ///
    /// ```
    /// use overlay_ipam::alloc::AllocError;
    /// use overlay_ipam::k8s::AddressPool;
    ///
    /// let mut pool = AddressPool::parse(["192.0.2.0/24"], false).unwrap();
    /// let ip = "192.0.2.77".parse().unwrap();
    /// pool.allocate_ip(ip, "svc").unwrap();
    /// assert_eq!(pool.allocate_ip(ip, "other"), Err(AllocError::AlreadyAllocated(ip)));
    /// let outside = "192.0.3.1".parse().unwrap();
    /// assert_eq!(pool.allocate_ip(outside, "other"), Err(AllocError::OutOfRange(outside)));
    /// ```
    pub fn allocate_ip(&mut self, ip: IpAddr, owner: O) -> Result<(), AllocError> {
        self.range_of_mut(ip)?.allocate(ip, owner)
    }

    /// Release `ip`; its owner.
    ///
    /// ```
    /// use overlay_ipam::alloc::AllocError;
    /// use overlay_ipam::k8s::AddressPool;
    ///
    /// let mut pool = AddressPool::parse(["198.51.100.7/32"], false).unwrap();
    /// let ip = "198.51.100.7".parse().unwrap();
    /// pool.allocate_ip(ip, "svc").unwrap();
    /// assert_eq!(pool.release(ip), Ok("svc"));
    /// assert_eq!(pool.release(ip), Err(AllocError::NotAllocated(ip)));
    /// ```
    pub fn release(&mut self, ip: IpAddr) -> Result<O, AllocError> {
        self.range_of_mut(ip)?.release(ip)
    }

    /// Release every address of `owner`; the addresses, in range order.
    ///
    /// ```
    /// use overlay_core::IpFamily;
    /// use overlay_ipam::k8s::AddressPool;
    ///
    /// let mut pool = AddressPool::parse(["192.0.2.0/24", "2001:db8::/120"], false).unwrap();
    /// let v4 = pool.allocate(IpFamily::V4, "dual-stack").unwrap();
    /// let v6 = pool.allocate(IpFamily::V6, "dual-stack").unwrap();
    /// assert_eq!(pool.release_owner(&"dual-stack"), [v4, v6]);
    /// ```
    pub fn release_owner(&mut self, owner: &O) -> Vec<IpAddr> {
        self.ranges
            .iter_mut()
            .flat_map(|(_, a)| a.release_owner(owner))
            .collect()
    }

    /// The owner of `ip`, if it is allocated.
    ///
    /// ```
    /// use overlay_core::IpFamily;
    ///
    /// let mut pool = overlay_ipam::k8s::AddressPool::parse(["192.0.2.0/24"], false).unwrap();
    /// let ip = pool.allocate(IpFamily::V4, "svc").unwrap();
    /// assert_eq!(pool.owner(ip), Some(&"svc"));
    /// ```
    pub fn owner(&self, ip: IpAddr) -> Option<&O> {
        self.range_of(ip)?.owner(ip)
    }

    /// The allocated addresses with their owners, range by range.
    ///
    /// ```
    /// use overlay_core::IpFamily;
    ///
    /// let mut pool = overlay_ipam::k8s::AddressPool::parse(["192.0.2.0/24"], false).unwrap();
    /// pool.allocate(IpFamily::V4, 'a').unwrap();
    /// assert_eq!(pool.iter().map(|(ip, o)| (ip.to_string(), *o)).collect::<Vec<_>>(), [("192.0.2.0".to_string(), 'a')]);
    /// ```
    pub fn iter(&self) -> impl Iterator<Item = (IpAddr, &O)> + '_ {
        self.ranges.iter().flat_map(|(_, a)| a.iter())
    }

    /// The number of addresses the pool can hand out (MetalLB's pool
    /// capacity): every address of its ranges, less the avoided ones.
    ///
    /// ```
    /// let pool = overlay_ipam::k8s::AddressPool::<()>::parse(["192.0.2.0/23"], true).unwrap();
    /// assert_eq!(pool.capacity(), 512 - 4);
    /// ```
    pub fn capacity(&self) -> u128 {
        self.ranges
            .iter()
            .map(|(r, a)| r.size() - u128::from(a.reserved_count()))
            .sum()
    }

    /// The number of allocated addresses.
    ///
    /// ```
    /// use overlay_core::IpFamily;
    ///
    /// let mut pool = overlay_ipam::k8s::AddressPool::parse(["192.0.2.0/24"], false).unwrap();
    /// pool.allocate(IpFamily::V4, ()).unwrap();
    /// assert_eq!(pool.used(), 1);
    /// ```
    pub fn used(&self) -> u64 {
        self.ranges.iter().map(|(_, a)| a.used()).sum()
    }

    /// The number of free addresses of `family` (within the first
    /// [`MAX_SIZE`] of each range).
    ///
    /// ```
    /// use overlay_core::IpFamily;
    ///
    /// let pool = overlay_ipam::k8s::AddressPool::<()>::parse(["192.0.2.0/24", "2001:db8::/120"], false).unwrap();
    /// assert_eq!((pool.free(IpFamily::V4), pool.free(IpFamily::V6)), (256, 256));
    /// ```
    pub fn free(&self, family: IpFamily) -> u64 {
        self.ranges
            .iter()
            .filter(|(r, _)| r.family() == family)
            .map(|(_, a)| a.free())
            .sum()
    }
}
