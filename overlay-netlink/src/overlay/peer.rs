//! The peer types: what a remote node is, what reconcile changes, and how
//! route metrics are chosen. Plain data, no I/O.

use std::fmt;
use std::net::IpAddr;

use ipnet::IpNet;
use overlay_core::MacAddr;

use crate::error::{Error, InvalidInput, IpFamily, KernelError, Result};
use crate::validate;

/// A remote node of the overlay.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct RemotePeer {
    /// The peer's underlay address (where its VXLAN packets go).
    pub underlay: IpAddr,
    /// The MAC address of the peer's VXLAN device.
    pub vtep_mac: MacAddr,
    /// The address of the peer's VXLAN device: the gateway of its pod ranges
    /// (flannel uses the network address of the peer's subnet).
    pub vtep_ip: IpAddr,
    /// The peer's pod ranges, routed via `vtep_ip`.
    pub pod_cidrs: Vec<IpNet>,
}

impl RemotePeer {
    /// A peer without pod ranges yet; add them with [`RemotePeer::pod_cidr`].
    pub fn new(underlay: IpAddr, vtep_mac: MacAddr, vtep_ip: IpAddr) -> Self {
        RemotePeer {
            underlay,
            vtep_mac,
            vtep_ip,
            pod_cidrs: Vec::new(),
        }
    }

    /// A peer whose VTEP address follows its underlay's family: over IPv4
    /// the underlay address itself (so the VXLAN device needs no address of
    /// its own), over IPv6 the link-local address of `vtep_mac`
    /// ([`MacAddr::ipv6_link_local`]), because the kernel refuses an on-link
    /// IPv6 gateway that a route on another device (the underlay's subnet)
    /// covers, and accepts any link-local one.
    ///
    /// ```
    /// use overlay_core::MacAddr;
    /// use overlay_netlink::overlay::RemotePeer;
    ///
    /// let mac = MacAddr::new([0x02, 0, 0, 0, 0, 0x07]);
    /// let v4 = RemotePeer::on_underlay("198.51.100.7".parse().unwrap(), mac);
    /// assert_eq!(v4.vtep_ip, v4.underlay);
    /// let v6 = RemotePeer::on_underlay("2001:db8::7".parse().unwrap(), mac);
    /// assert_eq!(v6.vtep_ip.to_string(), "fe80::ff:fe00:7");
    /// ```
    pub fn on_underlay(underlay: IpAddr, vtep_mac: MacAddr) -> Self {
        let vtep_ip = match underlay {
            IpAddr::V4(_) => underlay,
            IpAddr::V6(_) => IpAddr::V6(vtep_mac.ipv6_link_local()),
        };
        RemotePeer::new(underlay, vtep_mac, vtep_ip)
    }

    /// Add a pod range.
    pub fn pod_cidr(mut self, cidr: IpNet) -> Self {
        self.pod_cidrs.push(cidr);
        self
    }

    pub(super) fn validate(&self, operation: &'static str) -> Result<()> {
        let object = self.underlay;
        if !self.vtep_mac.is_unicast() || self.vtep_mac == MacAddr::ZERO {
            return Err(Error::invalid(
                operation,
                object,
                InvalidInput::MacNotUnicast {
                    mac: self.vtep_mac.to_string(),
                },
            ));
        }
        for cidr in &self.pod_cidrs {
            validate::prefix(operation, *cidr)?;
            validate::family(
                operation,
                &object,
                "VTEP address",
                self.vtep_ip,
                IpFamily::of(cidr.addr()),
            )?;
        }
        Ok(())
    }
}

/// One change made (or attempted) on the kernel.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Change {
    /// Installed or updated a neighbour entry.
    ReplaceNeighbour {
        /// VTEP address.
        ip: IpAddr,
        /// VTEP MAC.
        mac: MacAddr,
    },
    /// Installed or updated an FDB entry.
    ReplaceFdb {
        /// VTEP MAC.
        mac: MacAddr,
        /// Underlay destination.
        dst: IpAddr,
    },
    /// Installed or updated a route.
    ReplaceRoute {
        /// Pod range.
        destination: IpNet,
        /// VTEP address.
        gateway: IpAddr,
    },
    /// Deleted a neighbour entry.
    DeleteNeighbour {
        /// Its address.
        ip: IpAddr,
    },
    /// Deleted an FDB entry.
    DeleteFdb {
        /// Its MAC.
        mac: MacAddr,
        /// Its destination.
        dst: IpAddr,
    },
    /// Deleted a route.
    DeleteRoute {
        /// Its destination.
        destination: IpNet,
    },
}

impl fmt::Display for Change {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Change::ReplaceNeighbour { ip, mac } => {
                write!(f, "replace neighbour {ip} lladdr {mac}")
            }
            Change::ReplaceFdb { mac, dst } => write!(f, "replace fdb {mac} dst {dst}"),
            Change::ReplaceRoute {
                destination,
                gateway,
            } => {
                write!(f, "replace route {destination} via {gateway}")
            }
            Change::DeleteNeighbour { ip } => write!(f, "delete neighbour {ip}"),
            Change::DeleteFdb { mac, dst } => write!(f, "delete fdb {mac} dst {dst}"),
            Change::DeleteRoute { destination } => write!(f, "delete route {destination}"),
        }
    }
}

/// A change the kernel refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// The change.
    pub change: Change,
    /// The kernel's error.
    pub error: KernelError,
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.change, self.error)
    }
}

/// What [`Overlay::reconcile`](super::Overlay::reconcile) did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ReconcileReport {
    /// Underlay addresses of desired peers of which nothing was installed.
    pub added: Vec<IpAddr>,
    /// Underlay addresses of desired peers that were partly or wrongly installed.
    pub updated: Vec<IpAddr>,
    /// Underlay addresses of desired peers that were already fully installed.
    pub unchanged: Vec<IpAddr>,
    /// Number of peers removed (distinct VTEP MACs of removed FDB entries).
    pub removed_peers: usize,
    /// Every change applied successfully, in order.
    pub changes: Vec<Change>,
    /// Changes the kernel refused.
    pub failures: Vec<Failure>,
}

impl ReconcileReport {
    /// Whether the kernel holds the desired state (nothing failed).
    pub fn is_complete(&self) -> bool {
        self.failures.is_empty()
    }

    /// Whether nothing had to change.
    pub fn is_noop(&self) -> bool {
        self.changes.is_empty() && self.failures.is_empty()
    }
}

/// How [`Overlay`](super::Overlay) chooses the metric of the routes to peers' pod ranges.
///
/// The default, [`RouteMetric::Spread`], matters at scale. The IPv4 FIB
/// shares route attributes (`fib_info`) between routes, and looks for one to
/// share in a hash table keyed by protocol, scope, preferred source, metric
/// and device, but not by gateway. An overlay has one gateway (VTEP address)
/// per peer on one device, so with a single metric every route lands in the
/// same bucket and each insertion scans all earlier ones: programming N peers
/// costs O(N^2) in the kernel. Spreading the metric over a range, as a pure
/// function of the destination, keeps the buckets short while every
/// destination keeps exactly one route (so `replace` still replaces, and
/// forwarding is unchanged: no two overlay routes share a destination).
///
/// ```
/// use overlay_netlink::overlay::RouteMetric;
/// let cidr = "10.244.7.0/24".parse().unwrap();
/// let m = RouteMetric::default().metric_for(&cidr);
/// assert_eq!(m, RouteMetric::default().metric_for(&cidr)); // stable
/// assert_eq!(RouteMetric::Fixed(0).metric_for(&cidr), 0);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum RouteMetric {
    /// Every route gets this metric (flannel's behaviour with 0).
    Fixed(u32),
    /// `base + hash(destination) % span`: stable per destination.
    Spread {
        /// The lowest metric used.
        base: u32,
        /// How many distinct metrics are used (at least 1).
        span: u32,
    },
}

impl Default for RouteMetric {
    fn default() -> Self {
        RouteMetric::Spread {
            base: 1024,
            span: 4096,
        }
    }
}

impl RouteMetric {
    /// The metric of the route to `destination`.
    pub fn metric_for(&self, destination: &IpNet) -> u32 {
        match *self {
            RouteMetric::Fixed(m) => m,
            RouteMetric::Spread { base, span } => {
                // FNV-1a over the prefix bytes and length: stable across
                // processes and versions, unlike std's RandomState.
                let mut h = overlay_core::hash::Fnv1a32::new();
                match destination.network() {
                    IpAddr::V4(a) => h.write(&a.octets()),
                    IpAddr::V6(a) => h.write(&a.octets()),
                };
                let h = h.write(&[destination.prefix_len()]).finish();
                base.saturating_add(h % span.max(1))
            }
        }
    }
}

/// Whether `change` removes something (a removal of what is already gone
/// has reached its goal).
pub(super) fn is_delete(change: &Change) -> bool {
    matches!(
        change,
        Change::DeleteNeighbour { .. } | Change::DeleteFdb { .. } | Change::DeleteRoute { .. }
    )
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    #[test]
    fn spread_metrics_are_stable_and_within_their_range() {
        let m = RouteMetric::Spread {
            base: 100,
            span: 16,
        };
        let mut seen = HashSet::new();
        for n in 0..=255u8 {
            let cidr: IpNet = format!("10.244.{n}.0/24").parse().unwrap();
            let v = m.metric_for(&cidr);
            assert!((100..116).contains(&v));
            assert_eq!(v, m.metric_for(&cidr));
            seen.insert(v);
        }
        // 256 destinations over 16 metrics use (nearly) all of them.
        assert!(seen.len() >= 14, "{seen:?}");
        let zero_span = RouteMetric::Spread { base: 7, span: 0 };
        assert_eq!(zero_span.metric_for(&"10.0.0.0/8".parse().unwrap()), 7);
    }

    #[test]
    fn default_metrics_are_fnv1a_of_the_prefix_bytes_and_length_for_both_families() {
        // Pinned values (FNV-1a computed independently): a change to the hash
        // would move every installed route on upgrade.
        let m = RouteMetric::default();
        assert_eq!(m.metric_for(&"10.244.7.0/24".parse().unwrap()), 2460);
        assert_eq!(m.metric_for(&"2001:db8:4::/64".parse().unwrap()), 1281);
        // The prefix length is part of the key.
        assert_ne!(
            m.metric_for(&"10.244.7.0/24".parse().unwrap()),
            m.metric_for(&"10.244.7.0/25".parse().unwrap())
        );
    }
}
