//! [`NodePortAllocator`]: NodePorts with Kubernetes' static and dynamic
//! bands, over a [`PortRange`].

use std::fmt;
use std::hash::Hash;
use std::str::FromStr;

use rand::Rng;

use super::{allocate_banded, node_port_band_offset};
use crate::alloc::{AllocError, OffsetAllocator};

/// An inclusive range of ports, as `--service-node-port-range` takes it.
///
/// ```
/// use overlay_ipam::k8s::PortRange;
///
/// let r: PortRange = "30000-32767".parse().unwrap();
/// assert_eq!(r, PortRange::default());
/// assert_eq!(r.size(), 2768);
/// // Kubernetes also accepts `base+offset` and a single port.
/// assert_eq!("30000+99".parse::<PortRange>().unwrap().to_string(), "30000-30099");
/// assert_eq!("8080".parse::<PortRange>().unwrap().size(), 1);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PortRange {
    first: u16,
    last: u16,
}

/// Why a port range is invalid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PortRangeError {
    /// A port is not a number from 0 to 65535.
    #[error("invalid port {0:?}")]
    InvalidPort(String),
    /// The first port is after the last.
    #[error("port range {first}-{last}: the first port is after the last")]
    Inverted {
        /// The first port.
        first: u16,
        /// The last port.
        last: u16,
    },
    /// `base+offset` goes past port 65535.
    #[error("port range {base}+{offset} ends past 65535")]
    TooLong {
        /// The first port.
        base: u16,
        /// The number of ports after it.
        offset: u32,
    },
}

impl PortRange {
    /// Kubernetes' default NodePort range, `30000-32767`.
    pub const DEFAULT_NODE_PORTS: PortRange = PortRange {
        first: 30000,
        last: 32767,
    };

    /// The ports `first..=last`.
    ///
    /// ```
    /// use overlay_ipam::k8s::{PortRange, PortRangeError};
    ///
    /// assert_eq!(PortRange::new(2, 1), Err(PortRangeError::Inverted { first: 2, last: 1 }));
    /// ```
    ///
    /// ```
    /// use overlay_ipam::k8s::{NodePortAllocator, PortRange};
    ///
    /// let ports = NodePortAllocator::<()>::new(PortRange::new(30000, 30127).unwrap());
    /// assert_eq!(ports.free(), 128);
    /// ```
    pub fn new(first: u16, last: u16) -> Result<Self, PortRangeError> {
        if first > last {
            return Err(PortRangeError::Inverted { first, last });
        }
        Ok(PortRange { first, last })
    }

    /// The first port.
    ///
    /// ```
    /// let r = overlay_ipam::k8s::PortRange::default();
    /// assert_eq!((r.first(), r.last()), (30000, 32767));
    /// ```
    pub fn first(&self) -> u16 {
        self.first
    }

    /// The last port.
    ///
    /// ```
    /// let r = overlay_ipam::k8s::PortRange::new(80, 90).unwrap();
    /// assert_eq!(r.last(), 90);
    /// ```
    pub fn last(&self) -> u16 {
        self.last
    }

    /// The number of ports.
    ///
    /// ```
    /// assert_eq!(overlay_ipam::k8s::PortRange::new(0, 65535).unwrap().size(), 65536);
    /// ```
    pub fn size(&self) -> u32 {
        u32::from(self.last - self.first) + 1
    }

    /// Whether `port` is in the range.
    ///
    /// ```
    /// let r = overlay_ipam::k8s::PortRange::default();
    /// assert!(r.contains(30000) && r.contains(32767) && !r.contains(32768));
    /// ```
    pub fn contains(&self, port: u16) -> bool {
        (self.first..=self.last).contains(&port)
    }
}

impl Default for PortRange {
    /// [`PortRange::DEFAULT_NODE_PORTS`].
    fn default() -> Self {
        PortRange::DEFAULT_NODE_PORTS
    }
}

impl fmt::Display for PortRange {
    /// `first-last`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.first, self.last)
    }
}

impl FromStr for PortRange {
    type Err = PortRangeError;

    /// `first-last`, `base+offset` (`base..=base+offset`) or a single port,
    /// with surrounding spaces ignored, as Kubernetes' `ParsePortRange`.
    fn from_str(s: &str) -> Result<Self, PortRangeError> {
        let port = |p: &str| -> Result<u16, PortRangeError> {
            let p = p.trim();
            if p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit()) {
                return Err(PortRangeError::InvalidPort(p.to_string()));
            }
            p.parse()
                .map_err(|_| PortRangeError::InvalidPort(p.to_string()))
        };
        let s = s.trim();
        if let Some((first, last)) = s.split_once('-') {
            PortRange::new(port(first)?, port(last)?)
        } else if let Some((base, offset)) = s.split_once('+') {
            let base = port(base)?;
            let offset = u32::from(port(offset)?);
            let last = u16::try_from(u32::from(base) + offset)
                .map_err(|_| PortRangeError::TooLong { base, offset })?;
            PortRange::new(base, last)
        } else {
            let p = port(s)?;
            PortRange::new(p, p)
        }
    }
}

/// NodePorts from one [`PortRange`], as kube-apiserver allocates them: its
/// first [`band_offset`](Self::band_offset) ports form the static band, for
/// ports users ask for; dynamic allocation takes the upper band first.
///
/// ```
/// use overlay_ipam::alloc::AllocError;
/// use overlay_ipam::k8s::{NodePortAllocator, PortRange};
/// use rand::SeedableRng;
///
/// let mut rng = rand::rngs::StdRng::seed_from_u64(5);
/// let mut ports = NodePortAllocator::new(PortRange::default());
/// assert_eq!(ports.static_band(), Some((30000, 30085)));
/// assert_eq!(ports.dynamic_band(), (30086, 32767));
///
/// ports.allocate(30080, "ingress").unwrap();
/// assert_eq!(ports.allocate(30080, "other"), Err(AllocError::AlreadyAllocated(30080)));
/// assert_eq!(ports.allocate(80, "other"), Err(AllocError::OutOfRange(80)));
/// let p = ports.allocate_dynamic(&mut rng, "web").unwrap();
/// assert!(p >= 30086);
/// assert_eq!(ports.release(p), Ok("web"));
/// ```
#[derive(Debug, Clone)]
pub struct NodePortAllocator<O> {
    range: PortRange,
    ports: OffsetAllocator<O>,
    offset: u64,
}

impl<O: Clone + Eq + Hash> NodePortAllocator<O> {
    /// An allocator of the ports of `range`.
    pub fn new(range: PortRange) -> Self {
        let size = u64::from(range.size());
        NodePortAllocator {
            range,
            // 1 to 65536 positions, within the allocator's limits.
            ports: OffsetAllocator::with_size(size),
            offset: node_port_band_offset(size),
        }
    }

    /// The port range.
    ///
    /// ```
    /// use overlay_ipam::k8s::{NodePortAllocator, PortRange};
    ///
    /// let ports = NodePortAllocator::<()>::new(PortRange::default());
    /// assert_eq!(ports.range().to_string(), "30000-32767");
    /// ```
    pub fn range(&self) -> PortRange {
        self.range
    }

    /// The number of ports in the static band (see
    /// [`node_port_band_offset`]).
    ///
    /// ```
    /// use overlay_ipam::k8s::{NodePortAllocator, PortRange};
    ///
    /// assert_eq!(NodePortAllocator::<()>::new(PortRange::default()).band_offset(), 86);
    /// ```
    pub fn band_offset(&self) -> u64 {
        self.offset
    }

    fn port(&self, off: u64) -> u16 {
        // Offsets are below the range's size, so the port fits.
        u16::try_from(u64::from(self.range.first) + off).unwrap_or(self.range.last)
    }

    fn offset(&self, port: u16) -> Result<u64, AllocError<u16>> {
        if self.range.contains(port) {
            Ok(u64::from(port - self.range.first))
        } else {
            Err(AllocError::OutOfRange(port))
        }
    }

    /// The first and last port of the static band; `None` for a range of
    /// 16 ports or fewer, which has none.
    ///
    /// ```
    /// use overlay_ipam::k8s::{NodePortAllocator, PortRange};
    ///
    /// let small = NodePortAllocator::<()>::new("30000-30015".parse().unwrap());
    /// assert_eq!(small.static_band(), None);
    /// let large = NodePortAllocator::<()>::new("30000-34095".parse().unwrap());
    /// assert_eq!(large.static_band(), Some((30000, 30127)));
    /// ```
    pub fn static_band(&self) -> Option<(u16, u16)> {
        (self.offset > 0).then(|| (self.range.first, self.port(self.offset - 1)))
    }

    /// The first and last port of the dynamic band.
    ///
    /// ```
    /// use overlay_ipam::k8s::{NodePortAllocator, PortRange};
    ///
    /// let ports = NodePortAllocator::<()>::new("30000-30127".parse().unwrap());
    /// assert_eq!(ports.dynamic_band(), (30016, 30127));
    /// ```
    pub fn dynamic_band(&self) -> (u16, u16) {
        (self.port(self.offset), self.range.last)
    }

    /// Allocate a free port as kube-apiserver does for a NodePort Service
    /// without a requested port: from a random start in the dynamic band,
    /// wrapping within it; only when it is full, from a random start in the
    /// static band.
    ///
    /// ```
    /// use overlay_ipam::alloc::AllocError;
    /// use overlay_ipam::k8s::{NodePortAllocator, PortRange};
    /// use rand::SeedableRng;
    ///
    /// let mut rng = rand::rngs::StdRng::seed_from_u64(8);
    /// let mut ports = NodePortAllocator::new("30000-30015".parse().unwrap());
    /// for _ in 0..16 {
    ///     ports.allocate_dynamic(&mut rng, ()).unwrap();
    /// }
    /// assert_eq!(ports.allocate_dynamic(&mut rng, ()), Err(AllocError::Exhausted));
    /// ```
    pub fn allocate_dynamic<R: Rng + ?Sized>(
        &mut self,
        rng: &mut R,
        owner: O,
    ) -> Result<u16, AllocError<u16>> {
        let result = allocate_banded(&mut self.ports, self.offset, rng, owner);
        result
            .map(|off| self.port(off))
            .map_err(|e| e.map(|off| self.port(off)))
    }

    /// Allocate the port a user asked for, in either band.
    ///
    /// ```
    /// use overlay_ipam::k8s::{NodePortAllocator, PortRange};
    ///
    /// let mut ports = NodePortAllocator::new(PortRange::default());
    /// // Either band may be asked for.
    /// ports.allocate(30001, "a").unwrap();
    /// ports.allocate(32000, "b").unwrap();
    /// assert_eq!(ports.used(), 2);
    /// ```
    pub fn allocate(&mut self, port: u16, owner: O) -> Result<(), AllocError<u16>> {
        let off = self.offset(port)?;
        self.ports.allocate(off, owner).map_err(|e| e.map(|_| port))
    }

    /// Release `port`; its owner.
    ///
    /// ```
    /// use overlay_ipam::alloc::AllocError;
    /// use overlay_ipam::k8s::{NodePortAllocator, PortRange};
    ///
    /// let mut ports = NodePortAllocator::new(PortRange::default());
    /// ports.allocate(30001, "a").unwrap();
    /// assert_eq!(ports.release(30001), Ok("a"));
    /// assert_eq!(ports.release(30001), Err(AllocError::NotAllocated(30001)));
    /// ```
    pub fn release(&mut self, port: u16) -> Result<O, AllocError<u16>> {
        let off = self.offset(port)?;
        self.ports.release(off).map_err(|e| e.map(|_| port))
    }

    /// Release every port of `owner`; the ports, in order.
    ///
    /// ```
    /// use overlay_ipam::k8s::{NodePortAllocator, PortRange};
    ///
    /// let mut ports = NodePortAllocator::new(PortRange::default());
    /// ports.allocate(30001, "svc").unwrap();
    /// ports.allocate(30000, "svc").unwrap();
    /// assert_eq!(ports.release_owner(&"svc"), [30000, 30001]);
    /// ```
    pub fn release_owner(&mut self, owner: &O) -> Vec<u16> {
        let offsets = self.ports.release_owner(owner);
        offsets.into_iter().map(|off| self.port(off)).collect()
    }

    /// The owner of `port`, if it is allocated.
    ///
    /// ```
    /// use overlay_ipam::k8s::{NodePortAllocator, PortRange};
    ///
    /// let mut ports = NodePortAllocator::new(PortRange::default());
    /// ports.allocate(30001, "a").unwrap();
    /// assert_eq!(ports.owner(30001), Some(&"a"));
    /// assert_eq!(ports.owner(80), None);
    /// ```
    pub fn owner(&self, port: u16) -> Option<&O> {
        self.ports.owner(self.offset(port).ok()?)
    }

    /// The allocated ports with their owners, in order.
    ///
    /// ```
    /// use overlay_ipam::k8s::{NodePortAllocator, PortRange};
    ///
    /// let mut ports = NodePortAllocator::new(PortRange::default());
    /// ports.allocate(30009, 'b').unwrap();
    /// ports.allocate(30001, 'a').unwrap();
    /// assert_eq!(ports.iter().collect::<Vec<_>>(), [(30001, &'a'), (30009, &'b')]);
    /// ```
    pub fn iter(&self) -> impl Iterator<Item = (u16, &O)> + '_ {
        self.ports.iter().map(|(off, o)| (self.port(off), o))
    }

    /// The number of allocated ports.
    ///
    /// ```
    /// use overlay_ipam::k8s::{NodePortAllocator, PortRange};
    ///
    /// let mut ports = NodePortAllocator::new(PortRange::default());
    /// ports.allocate(30001, ()).unwrap();
    /// assert_eq!((ports.used(), ports.free()), (1, 2767));
    /// ```
    pub fn used(&self) -> u64 {
        self.ports.used()
    }

    /// The number of free ports.
    ///
    /// ```
    /// use overlay_ipam::k8s::{NodePortAllocator, PortRange};
    ///
    /// assert_eq!(NodePortAllocator::<()>::new(PortRange::default()).free(), 2768);
    /// ```
    pub fn free(&self) -> u64 {
        self.ports.free()
    }
}
