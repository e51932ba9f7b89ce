//! [`ServiceIpAllocator`]: Service ClusterIPs with Kubernetes' static and
//! dynamic bands.

use std::hash::Hash;
use std::net::IpAddr;

use ipnet::IpNet;
use rand::Rng;

use super::{allocate_banded, service_band_offset};
use crate::alloc::{AllocError, IpAllocator, MAX_SIZE};
use crate::range::{from_bits, to_bits as bits};

/// Service ClusterIPs from one Service CIDR, as kube-apiserver allocates
/// them.
///
/// The usable addresses run from the one after the network address to the
/// one before the broadcast address (IPv4) or to the last address (IPv6).
/// The first [`band_offset`](Self::band_offset) of them form the static
/// band, for addresses users ask for; dynamic allocation takes the upper
/// band first. A user may still ask for any usable address, in either band.
///
/// An IPv6 CIDR larger than [`MAX_SIZE`] addresses is used from its start
/// for [`MAX_SIZE`] addresses (Kubernetes' bitmap allocator used only the
/// first 65,536); the band offset is computed from the whole CIDR, as
/// Kubernetes does.
///
/// ```
/// use overlay_ipam::alloc::AllocError;
/// use overlay_ipam::k8s::ServiceIpAllocator;
/// use rand::SeedableRng;
///
/// let mut rng = rand::rngs::StdRng::seed_from_u64(1);
/// let mut s = ServiceIpAllocator::new("10.96.0.0/24".parse().unwrap()).unwrap();
/// assert_eq!(s.band_offset(), 16);
/// let (lo, hi) = s.static_band().unwrap();
/// assert_eq!((lo.to_string(), hi.to_string()), ("10.96.0.1".into(), "10.96.0.16".into()));
///
/// let ip = s.allocate_dynamic(&mut rng, 1).unwrap();
/// assert!(!s.is_static(ip));
/// let net = "10.96.0.0".parse().unwrap();
/// assert_eq!(s.allocate_static(net, 2), Err(AllocError::OutOfRange(net)));
/// assert_eq!(s.release(ip), Ok(1));
/// ```
#[derive(Debug, Clone)]
pub struct ServiceIpAllocator<O> {
    cidr: IpNet,
    ips: IpAllocator<O>,
    offset: u64,
}

impl<O: Clone + Eq + Hash> ServiceIpAllocator<O> {
    /// An allocator for the Service CIDR `cidr` (host bits are ignored).
    /// A CIDR without a usable address (an IPv4 `/31` or `/32`, an IPv6
    /// `/128`) is refused with [`AllocError::Empty`].
    ///
    /// ```
    /// use overlay_ipam::alloc::AllocError;
    /// use overlay_ipam::k8s::ServiceIpAllocator;
    ///
    /// let v6 = ServiceIpAllocator::<()>::new("fd00::/108".parse().unwrap()).unwrap();
    /// // 2^20 addresses but the network address.
    /// assert_eq!(v6.free(), (1 << 20) - 1);
    /// let p2p = ServiceIpAllocator::<()>::new("10.0.0.0/31".parse().unwrap());
    /// assert!(matches!(p2p, Err(AllocError::Empty)));
    /// ```
    pub fn new(cidr: IpNet) -> Result<Self, AllocError> {
        let cidr = cidr.trunc();
        let host_bits = cidr.max_prefix_len() - cidr.prefix_len();
        let cidr_size = 1u128.checked_shl(u32::from(host_bits)).unwrap_or(u128::MAX);
        let network = bits(cidr.network());
        // The last IPv6 address as a /128 has no address after it.
        let first = network.checked_add(1).ok_or(AllocError::Empty)?;
        let mut last = bits(cidr.broadcast());
        if cidr.addr().is_ipv4() {
            last = last.saturating_sub(1);
        }
        if last < first {
            return Err(AllocError::Empty);
        }
        last = last.min(first.saturating_add(u128::from(MAX_SIZE) - 1));
        let at = |b: u128| from_bits(cidr.addr(), b);
        let ips = IpAllocator::for_range(at(first), at(last))?;
        let offset = service_band_offset(cidr_size).min(ips.size());
        Ok(ServiceIpAllocator { cidr, ips, offset })
    }

    /// The Service CIDR.
    ///
    /// ```
    /// let s = overlay_ipam::k8s::ServiceIpAllocator::<()>::new("10.96.0.7/12".parse().unwrap()).unwrap();
    /// assert_eq!(s.cidr().to_string(), "10.96.0.0/12");
    /// ```
    pub fn cidr(&self) -> IpNet {
        self.cidr
    }

    /// The number of addresses in the static band (see
    /// [`service_band_offset`]).
    ///
    /// ```
    /// let s = overlay_ipam::k8s::ServiceIpAllocator::<()>::new("fd00::/118".parse().unwrap()).unwrap();
    /// assert_eq!(s.band_offset(), 64);
    /// ```
    pub fn band_offset(&self) -> u64 {
        self.offset
    }

    /// The first and last address of the static band; `None` for a CIDR of
    /// 16 addresses or fewer, which has none.
    ///
    /// ```
    /// use overlay_ipam::k8s::ServiceIpAllocator;
    ///
    /// let s = ServiceIpAllocator::<()>::new("10.96.0.0/20".parse().unwrap()).unwrap();
    /// let (lo, hi) = s.static_band().unwrap();
    /// assert_eq!((lo.to_string(), hi.to_string()), ("10.96.0.1".into(), "10.96.1.0".into()));
    /// let small = ServiceIpAllocator::<()>::new("10.96.0.0/28".parse().unwrap()).unwrap();
    /// assert_eq!(small.static_band(), None);
    /// ```
    pub fn static_band(&self) -> Option<(IpAddr, IpAddr)> {
        (self.offset > 0).then(|| (self.ips.first(), self.ips.address_at(self.offset - 1)))
    }

    /// The first and last address of the dynamic band.
    ///
    /// ```
    /// let s = overlay_ipam::k8s::ServiceIpAllocator::<()>::new("10.96.0.0/20".parse().unwrap()).unwrap();
    /// let (lo, hi) = s.dynamic_band();
    /// assert_eq!((lo.to_string(), hi.to_string()), ("10.96.1.1".into(), "10.96.15.254".into()));
    /// ```
    pub fn dynamic_band(&self) -> (IpAddr, IpAddr) {
        (self.ips.address_at(self.offset), self.ips.last())
    }

    /// Whether `ip` lies in the static band.
    ///
    /// ```
    /// let s = overlay_ipam::k8s::ServiceIpAllocator::<()>::new("10.96.0.0/24".parse().unwrap()).unwrap();
    /// assert!(s.is_static("10.96.0.16".parse().unwrap()));
    /// assert!(!s.is_static("10.96.0.17".parse().unwrap()));
    /// ```
    pub fn is_static(&self, ip: IpAddr) -> bool {
        self.ips.offset_of(ip).is_ok_and(|off| off < self.offset)
    }

    /// Allocate a free address as kube-apiserver does for a Service without
    /// a requested ClusterIP: from a random start in the dynamic band,
    /// wrapping within it; only when it is full, from a random start in the
    /// static band.
    ///
    /// ```
    /// use overlay_ipam::alloc::AllocError;
    /// use overlay_ipam::k8s::ServiceIpAllocator;
    /// use rand::SeedableRng;
    ///
    /// let mut rng = rand::rngs::StdRng::seed_from_u64(3);
    /// // A /27: 30 usable addresses, 16 of them static.
    /// let mut s = ServiceIpAllocator::new("192.0.2.32/27".parse().unwrap()).unwrap();
    /// let mut order = Vec::new();
    /// while let Ok(ip) = s.allocate_dynamic(&mut rng, ()) {
    ///     order.push(s.is_static(ip));
    /// }
    /// assert_eq!(order.len(), 30);
    /// // The 14 dynamic addresses went first.
    /// assert!(order[..14].iter().all(|is_static| !is_static));
    /// assert!(order[14..].iter().all(|is_static| *is_static));
    /// assert_eq!(s.allocate_dynamic(&mut rng, ()), Err(AllocError::Exhausted));
    /// ```
    pub fn allocate_dynamic<R: Rng + ?Sized>(
        &mut self,
        rng: &mut R,
        owner: O,
    ) -> Result<IpAddr, AllocError> {
        let result = allocate_banded(self.ips.offsets_mut(), self.offset, rng, owner);
        result
            .map(|off| self.ips.address_at(off))
            .map_err(|e| e.map(|off| self.ips.address_at(off)))
    }

    /// Allocate the address a user asked for (a Service with
    /// `spec.clusterIP` set), in either band.
    ///
    /// ```
    /// use overlay_ipam::alloc::AllocError;
    ///
    /// let mut s = overlay_ipam::k8s::ServiceIpAllocator::new("10.96.0.0/24".parse().unwrap()).unwrap();
    /// let dns = "10.96.0.10".parse().unwrap();
    /// s.allocate_static(dns, "kube-dns").unwrap();
    /// assert_eq!(s.allocate_static(dns, "other"), Err(AllocError::AlreadyAllocated(dns)));
    /// // The dynamic band is allowed too.
    /// s.allocate_static("10.96.0.200".parse().unwrap(), "pinned").unwrap();
    /// ```
    pub fn allocate_static(&mut self, ip: IpAddr, owner: O) -> Result<(), AllocError> {
        self.ips.allocate(ip, owner)
    }

    /// The lowest free address, which lies in the static band while that
    /// has room: the address to suggest to a user who wants a fixed
    /// ClusterIP with the least risk of colliding with dynamic allocations.
    ///
    /// ```
    /// use overlay_ipam::k8s::ServiceIpAllocator;
    ///
    /// let mut s = ServiceIpAllocator::new("10.96.0.0/16".parse().unwrap()).unwrap();
    /// s.allocate_static("10.96.0.1".parse().unwrap(), "kubernetes").unwrap();
    /// let suggestion = s.lowest_free().unwrap();
    /// assert_eq!(suggestion.to_string(), "10.96.0.2");
    /// assert!(s.is_static(suggestion));
    /// ```
    pub fn lowest_free(&self) -> Option<IpAddr> {
        self.ips.lowest_free()
    }

    /// Release `ip`; its owner.
    ///
    /// ```
    /// let mut s = overlay_ipam::k8s::ServiceIpAllocator::new("10.96.0.0/24".parse().unwrap()).unwrap();
    /// let ip = "10.96.0.10".parse().unwrap();
    /// s.allocate_static(ip, "kube-dns").unwrap();
    /// assert_eq!(s.release(ip), Ok("kube-dns"));
    /// ```
    pub fn release(&mut self, ip: IpAddr) -> Result<O, AllocError> {
        self.ips.release(ip)
    }

    /// The number of allocated addresses.
    ///
    /// ```
    /// let mut s = overlay_ipam::k8s::ServiceIpAllocator::new("10.96.0.0/24".parse().unwrap()).unwrap();
    /// s.allocate_static("10.96.0.10".parse().unwrap(), ()).unwrap();
    /// assert_eq!((s.used(), s.free()), (1, 253));
    /// ```
    pub fn used(&self) -> u64 {
        self.ips.used()
    }

    /// The number of free addresses.
    ///
    /// ```
    /// let s = overlay_ipam::k8s::ServiceIpAllocator::<()>::new("fd00::/120".parse().unwrap()).unwrap();
    /// assert_eq!(s.free(), 255);
    /// ```
    pub fn free(&self) -> u64 {
        self.ips.free()
    }

    /// The allocator of the usable addresses, for owners, iteration and
    /// counts.
    ///
    /// ```
    /// let mut s = overlay_ipam::k8s::ServiceIpAllocator::new("10.96.0.0/24".parse().unwrap()).unwrap();
    /// s.allocate_static("10.96.0.10".parse().unwrap(), "kube-dns").unwrap();
    /// let owners: Vec<&str> = s.allocator().iter().map(|(_, o)| *o).collect();
    /// assert_eq!(owners, ["kube-dns"]);
    /// ```
    pub fn allocator(&self) -> &IpAllocator<O> {
        &self.ips
    }
}
