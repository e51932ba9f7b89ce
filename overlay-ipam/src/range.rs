//! Address ranges and range sets, with the reference `host-local` plugin's
//! validation rules and round-robin allocation order.
//!
//! A [`Range`] is a subnet with an inclusive span `start..=end` to allocate
//! from and a gateway that is never handed out. A [`RangeSet`] is an ordered
//! list of non-overlapping ranges of one address family from which one
//! address is allocated; [`RangeSet::candidates`] yields the addresses to try,
//! in `host-local`'s order.
//!
//! ```
//! use overlay_ipam::range::{Range, RangeSet, RangeSpec};
//!
//! let range = Range::new(&RangeSpec::new("198.51.100.0/29".parse().unwrap())).unwrap();
//! // The network address, the gateway (.1 by default) and the broadcast
//! // address are never candidates.
//! let set = RangeSet::new(vec![range]).unwrap();
//! let order: Vec<String> = set.candidates(None).map(|(ip, _)| ip.to_string()).collect();
//! assert_eq!(order, ["198.51.100.2", "198.51.100.3", "198.51.100.4", "198.51.100.5", "198.51.100.6"]);
//!
//! // After .4 was reserved last, allocation resumes at .5 and wraps around.
//! let next: Vec<String> = set
//!     .candidates(Some("198.51.100.4".parse().unwrap()))
//!     .map(|(ip, _)| ip.to_string())
//!     .collect();
//! assert_eq!(next, ["198.51.100.5", "198.51.100.6", "198.51.100.2", "198.51.100.3", "198.51.100.4"]);
//! ```

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

/// Why a range or a range set is invalid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RangeError {
    /// The subnet has bits set beyond its prefix (`198.51.100.5/29`).
    #[error(
        "network has host bits set: for a subnet mask of length {prefix} the network address is {network}"
    )]
    HostBitsSet {
        /// The prefix length.
        prefix: u8,
        /// The subnet's network address.
        network: IpAddr,
    },
    /// The subnet has no room for a gateway and one more address (`/31`, `/32`, `/127`, `/128`).
    #[error("network {0} too small to allocate from")]
    TooSmall(IpNet),
    /// An address of the range lies outside its subnet.
    #[error("{what} {ip} not in network {subnet}")]
    NotInSubnet {
        /// Which address: `gateway`, `rangeStart` or `rangeEnd`.
        what: &'static str,
        /// The address.
        ip: IpAddr,
        /// The subnet.
        subnet: IpNet,
    },
    /// `rangeStart` comes after `rangeEnd`.
    #[error("rangeStart {start} is after rangeEnd {end} in network {subnet}")]
    StartAfterEnd {
        /// `rangeStart`.
        start: IpAddr,
        /// `rangeEnd`.
        end: IpAddr,
        /// The subnet.
        subnet: IpNet,
    },
    /// A range set has no range.
    #[error("empty range set")]
    EmptySet,
    /// A range set mixes IPv4 and IPv6 ranges.
    #[error("mixed address families in range set")]
    MixedFamilies,
    /// Two ranges of a set overlap.
    #[error("ranges {first} and {second} overlap")]
    Overlap {
        /// The first range (`start-end`).
        first: String,
        /// The second range (`start-end`).
        second: String,
    },
}

/// A range as written in a `host-local` configuration: only `subnet` is
/// required; the other addresses default as described on [`Range::new`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct RangeSpec {
    /// The subnet, without host bits.
    pub subnet: IpNet,
    /// The first address to allocate (inclusive).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub range_start: Option<IpAddr>,
    /// The last address to allocate (inclusive).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub range_end: Option<IpAddr>,
    /// The gateway, never allocated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway: Option<IpAddr>,
}

impl RangeSpec {
    /// A spec with only a subnet.
    pub fn new(subnet: IpNet) -> Self {
        RangeSpec {
            subnet,
            range_start: None,
            range_end: None,
            gateway: None,
        }
    }

    /// Set the first address to allocate.
    pub fn range_start(mut self, ip: IpAddr) -> Self {
        self.range_start = Some(ip);
        self
    }

    /// Set the last address to allocate.
    pub fn range_end(mut self, ip: IpAddr) -> Self {
        self.range_end = Some(ip);
        self
    }

    /// Set the gateway.
    pub fn gateway(mut self, ip: IpAddr) -> Self {
        self.gateway = Some(ip);
        self
    }
}

/// A validated range: every address is inside the subnet and of its family,
/// and `start <= end`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Range {
    subnet: IpNet,
    start: IpAddr,
    end: IpAddr,
    gateway: IpAddr,
}

/// An address as a number, with its family.
pub(crate) fn to_bits(ip: IpAddr) -> u128 {
    match ip {
        IpAddr::V4(v4) => u128::from(u32::from(v4)),
        IpAddr::V6(v6) => u128::from(v6),
    }
}

/// The address of `bits` in the family of `like`; `bits` fits that family
/// whenever it was derived from addresses of the same family.
pub(crate) fn from_bits(like: IpAddr, bits: u128) -> IpAddr {
    match like {
        IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::from(u32::try_from(bits).unwrap_or(u32::MAX))),
        IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::from(bits)),
    }
}

impl Range {
    /// Validate a spec as `host-local` does and fill in the defaults:
    /// `gateway` is the subnet's first host, `rangeStart` the first host,
    /// `rangeEnd` the last address (IPv6) or the one before the broadcast
    /// address (IPv4).
    ///
    /// ```
    /// use overlay_ipam::range::{Range, RangeError, RangeSpec};
    ///
    /// let r = Range::new(&RangeSpec::new("2001:db8::/126".parse().unwrap())).unwrap();
    /// assert_eq!(r.to_string(), "2001:db8::1-2001:db8::3");
    /// assert_eq!(r.gateway(), "2001:db8::1".parse::<std::net::IpAddr>().unwrap());
    ///
    /// let bad = Range::new(&RangeSpec::new("198.51.100.5/29".parse().unwrap()));
    /// assert!(matches!(bad, Err(RangeError::HostBitsSet { prefix: 29, .. })));
    /// ```
    pub fn new(spec: &RangeSpec) -> Result<Range, RangeError> {
        let subnet = spec.subnet;
        if subnet.addr() != subnet.network() {
            return Err(RangeError::HostBitsSet {
                prefix: subnet.prefix_len(),
                network: subnet.network(),
            });
        }
        if subnet.prefix_len() + 2 > subnet.max_prefix_len() {
            return Err(RangeError::TooSmall(subnet));
        }
        let network = to_bits(subnet.network());
        let first_host = from_bits(subnet.addr(), network + 1);
        let inside = |what: &'static str, ip: Option<IpAddr>, default: IpAddr| match ip {
            Some(ip) if subnet.contains(&ip) => Ok(ip),
            Some(ip) => Err(RangeError::NotInSubnet { what, ip, subnet }),
            None => Ok(default),
        };
        let last = match subnet {
            IpNet::V4(_) => from_bits(subnet.addr(), to_bits(subnet.broadcast()) - 1),
            IpNet::V6(_) => subnet.broadcast(),
        };
        let gateway = inside("gateway", spec.gateway, first_host)?;
        let start = inside("rangeStart", spec.range_start, first_host)?;
        let end = inside("rangeEnd", spec.range_end, last)?;
        if to_bits(start) > to_bits(end) {
            return Err(RangeError::StartAfterEnd { start, end, subnet });
        }
        Ok(Range {
            subnet,
            start,
            end,
            gateway,
        })
    }

    /// The subnet.
    pub fn subnet(&self) -> IpNet {
        self.subnet
    }

    /// The first address to allocate (inclusive).
    pub fn start(&self) -> IpAddr {
        self.start
    }

    /// The last address to allocate (inclusive).
    pub fn end(&self) -> IpAddr {
        self.end
    }

    /// The gateway, which is never allocated.
    pub fn gateway(&self) -> IpAddr {
        self.gateway
    }

    /// Whether `ip` is of the range's family and within `start..=end`.
    pub fn contains(&self, ip: IpAddr) -> bool {
        ip.is_ipv4() == self.start.is_ipv4()
            && (to_bits(self.start)..=to_bits(self.end)).contains(&to_bits(ip))
    }

    /// The address `ip` with the subnet's prefix length.
    pub fn with_prefix(&self, ip: IpAddr) -> IpNet {
        // `ip` of the range's family (checked by the callers through
        // `contains`) always accepts the subnet's prefix length.
        IpNet::new(ip, self.subnet.prefix_len()).unwrap_or(self.subnet)
    }

    fn overlaps(&self, other: &Range) -> bool {
        self.start.is_ipv4() == other.start.is_ipv4()
            && (self.contains(other.start)
                || self.contains(other.end)
                || other.contains(self.start)
                || other.contains(self.end))
    }
}

impl fmt::Display for Range {
    /// `start-end`, as `host-local` prints it in its errors.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.start, self.end)
    }
}

/// Ranges of one family that do not overlap; one address is allocated per set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RangeSet {
    ranges: Vec<Range>,
}

impl RangeSet {
    /// Check that the set is not empty, of one family and without overlaps.
    pub fn new(ranges: Vec<Range>) -> Result<RangeSet, RangeError> {
        let first = ranges.first().ok_or(RangeError::EmptySet)?;
        if ranges
            .iter()
            .any(|r| r.start.is_ipv4() != first.start.is_ipv4())
        {
            return Err(RangeError::MixedFamilies);
        }
        let set = RangeSet { ranges };
        set.check_overlaps(&set)?;
        Ok(set)
    }

    /// Validate the specs with [`Range::new`] and build the set.
    pub fn from_specs(specs: &[RangeSpec]) -> Result<RangeSet, RangeError> {
        RangeSet::new(specs.iter().map(Range::new).collect::<Result<_, _>>()?)
    }

    /// Whether this set and `other` share an address (for `self == other`:
    /// whether two of its ranges overlap).
    fn check_overlaps(&self, other: &RangeSet) -> Result<(), RangeError> {
        for (i, a) in self.ranges.iter().enumerate() {
            for (j, b) in other.ranges.iter().enumerate() {
                let same_set = std::ptr::eq(self, other);
                if (!same_set || i < j) && a.overlaps(b) {
                    return Err(RangeError::Overlap {
                        first: a.to_string(),
                        second: b.to_string(),
                    });
                }
            }
        }
        Ok(())
    }

    /// Whether any address of this set is also in `other`.
    pub fn overlaps(&self, other: &RangeSet) -> bool {
        self.check_overlaps(other).is_err()
    }

    /// The ranges, in order.
    pub fn ranges(&self) -> &[Range] {
        &self.ranges
    }

    /// Whether the set is IPv4.
    pub fn is_ipv4(&self) -> bool {
        self.ranges.first().is_some_and(|r| r.start.is_ipv4())
    }

    /// The range holding `ip`, if any.
    pub fn range_for(&self, ip: IpAddr) -> Option<&Range> {
        self.ranges.iter().find(|r| r.contains(ip))
    }

    /// Whether a range of the set holds `ip`.
    pub fn contains(&self, ip: IpAddr) -> bool {
        self.range_for(ip).is_some()
    }

    /// The addresses to try, each with its range, in `host-local`'s
    /// round-robin order: from the address after `last_reserved` (when the
    /// set holds it; otherwise from the first range's start) through the
    /// ends of the ranges, wrapping around, until the starting point comes
    /// back. Gateways are skipped. Every allocatable address is yielded
    /// exactly once.
    pub fn candidates(&self, last_reserved: Option<IpAddr>) -> Candidates<'_> {
        let resume = last_reserved.and_then(|ip| {
            self.ranges
                .iter()
                .position(|r| r.contains(ip))
                .map(|index| (index, to_bits(ip)))
        });
        Candidates {
            set: self,
            index: resume.map_or(0, |(index, _)| index),
            cur: resume.map(|(_, bits)| bits),
            first: None,
        }
    }
}

impl fmt::Display for RangeSet {
    /// The ranges as `start-end`, comma-separated.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, r) in self.ranges.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{r}")?;
        }
        Ok(())
    }
}

/// The iterator of [`RangeSet::candidates`].
#[derive(Debug, Clone)]
pub struct Candidates<'a> {
    set: &'a RangeSet,
    index: usize,
    /// The last position yielded or resumed from.
    cur: Option<u128>,
    /// The first position reached, (range index, address); reaching it
    /// again ends the iteration.
    first: Option<(usize, u128)>,
}

impl<'a> Iterator for Candidates<'a> {
    type Item = (IpAddr, &'a Range);

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            let range = self.set.ranges.get(self.index)?;
            let next = match self.cur {
                None => to_bits(range.start),
                Some(cur) if cur >= to_bits(range.end) => {
                    self.index = (self.index + 1) % self.set.ranges.len();
                    to_bits(self.set.ranges.get(self.index)?.start)
                }
                Some(cur) => cur + 1,
            };
            self.cur = Some(next);
            match self.first {
                Some(first) if first == (self.index, next) => {
                    // Exhausted: stay exhausted.
                    self.index = self.set.ranges.len();
                    return None;
                }
                Some(_) => {}
                None => self.first = Some((self.index, next)),
            }
            let range = self.set.ranges.get(self.index)?;
            let ip = from_bits(range.start, next);
            if ip != range.gateway {
                return Some((ip, range));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn range(subnet: &str) -> Range {
        Range::new(&RangeSpec::new(subnet.parse().unwrap())).unwrap()
    }

    fn order(set: &RangeSet, last: Option<&str>) -> Vec<String> {
        set.candidates(last.map(ip))
            .map(|(a, _)| a.to_string())
            .collect()
    }

    #[test]
    fn defaults_skip_network_gateway_and_ipv4_broadcast() {
        let r = range("198.51.100.0/24");
        assert_eq!(r.start(), ip("198.51.100.1"));
        assert_eq!(r.end(), ip("198.51.100.254"));
        assert_eq!(r.gateway(), ip("198.51.100.1"));
        let v6 = range("2001:db8::/64");
        assert_eq!(v6.end(), ip("2001:db8::ffff:ffff:ffff:ffff"));
    }

    #[test]
    fn invalid_ranges_are_rejected_with_the_reason() {
        let spec = |s: &str| RangeSpec::new(s.parse().unwrap());
        assert_eq!(
            Range::new(&spec("198.51.100.0/31")),
            Err(RangeError::TooSmall("198.51.100.0/31".parse().unwrap()))
        );
        assert!(matches!(
            Range::new(&spec("198.51.100.0/24").gateway(ip("203.0.113.1"))),
            Err(RangeError::NotInSubnet {
                what: "gateway",
                ..
            })
        ));
        assert!(matches!(
            Range::new(
                &spec("198.51.100.0/24")
                    .range_start(ip("198.51.100.9"))
                    .range_end(ip("198.51.100.8"))
            ),
            Err(RangeError::StartAfterEnd { .. })
        ));
        assert!(matches!(
            Range::new(&spec("198.51.100.0/24").range_end(ip("2001:db8::1"))),
            Err(RangeError::NotInSubnet {
                what: "rangeEnd",
                ..
            })
        ));
    }

    #[test]
    fn sets_reject_mixed_families_overlaps_and_emptiness() {
        assert_eq!(RangeSet::new(vec![]), Err(RangeError::EmptySet));
        assert_eq!(
            RangeSet::new(vec![range("198.51.100.0/24"), range("2001:db8::/64")]),
            Err(RangeError::MixedFamilies)
        );
        assert!(matches!(
            RangeSet::new(vec![range("198.51.100.0/24"), range("198.51.100.128/25")]),
            Err(RangeError::Overlap { .. })
        ));
        let a = RangeSet::new(vec![range("198.51.100.0/24")]).unwrap();
        let b = RangeSet::new(vec![range("203.0.113.0/24")]).unwrap();
        assert!(!a.overlaps(&b));
        assert!(a.overlaps(&a.clone()));
    }

    #[test]
    fn candidates_cross_ranges_and_skip_each_gateway() {
        let set = RangeSet::new(vec![range("198.51.100.0/30"), range("203.0.113.0/30")]).unwrap();
        assert_eq!(order(&set, None), ["198.51.100.2", "203.0.113.2"]);
        assert_eq!(
            order(&set, Some("198.51.100.2")),
            ["203.0.113.2", "198.51.100.2"]
        );
        // A last address outside the set restarts from the beginning.
        assert_eq!(
            order(&set, Some("192.0.2.7")),
            ["198.51.100.2", "203.0.113.2"]
        );
    }

    #[test]
    fn a_range_holding_only_its_gateway_has_no_candidate() {
        let spec = RangeSpec::new("198.51.100.0/24".parse().unwrap())
            .range_start(ip("198.51.100.1"))
            .range_end(ip("198.51.100.1"));
        let set = RangeSet::new(vec![Range::new(&spec).unwrap()]).unwrap();
        assert!(order(&set, None).is_empty());
        assert!(order(&set, Some("198.51.100.1")).is_empty());
    }

    proptest! {
        /// Whatever the last reserved address, every allocatable address
        /// (in a range, not a gateway) is a candidate exactly once.
        #[test]
        fn candidates_are_total_and_unique(
            prefix in 24u8..=30,
            start_off in 0u32..8,
            len in 0u32..40,
            gw_off in 0u32..64,
            last_off in 0u32..70,
        ) {
            let subnet: IpNet = format!("198.51.100.0/{prefix}").parse().unwrap();
            let size = 1u32 << (32 - prefix);
            let base = u32::from(Ipv4Addr::new(198, 51, 100, 0));
            let start = base + 1 + start_off % (size - 2);
            let end = (start + len).min(base + size - 2);
            let gateway = base + 1 + gw_off % (size - 2);
            let spec = RangeSpec::new(subnet)
                .range_start(IpAddr::V4(start.into()))
                .range_end(IpAddr::V4(end.into()))
                .gateway(IpAddr::V4(gateway.into()));
            let set = RangeSet::new(vec![Range::new(&spec).unwrap()]).unwrap();
            let last = IpAddr::V4((base + last_off % size).into());
            let mut got: Vec<u32> = set
                .candidates(Some(last))
                .map(|(a, _)| match a { IpAddr::V4(v) => u32::from(v), IpAddr::V6(_) => 0 })
                .collect();
            got.sort_unstable();
            let want: Vec<u32> = (start..=end).filter(|a| *a != gateway).collect();
            prop_assert_eq!(got, want);
        }
    }
}
