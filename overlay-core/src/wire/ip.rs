//! IP protocol numbers, shared by IPv4 and IPv6.

use std::fmt;

/// An IP protocol number (IPv4 `protocol`, IPv6 `next header`).
///
/// Unknown values survive a round trip through [`IpProtocol::Other`];
/// `IpProtocol::from(u8)` never produces `Other` for a value that has a named
/// variant.
///
/// ```
/// use overlay_core::wire::IpProtocol;
///
/// assert_eq!(IpProtocol::from(17), IpProtocol::Udp);
/// assert_eq!(u8::from(IpProtocol::Other(253)), 253);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum IpProtocol {
    /// IPv6 hop-by-hop options (0).
    HopByHop,
    /// ICMP (1).
    Icmp,
    /// TCP (6).
    Tcp,
    /// UDP (17).
    Udp,
    /// IPv6 routing header (43).
    Ipv6Route,
    /// IPv6 fragment header (44).
    Ipv6Frag,
    /// ICMPv6 (58).
    Icmpv6,
    /// IPv6 "no next header" (59).
    Ipv6NoNxt,
    /// IPv6 destination options (60).
    Ipv6Opts,
    /// Any other protocol number.
    Other(u8),
}

impl From<u8> for IpProtocol {
    #[inline(always)]
    fn from(value: u8) -> Self {
        match value {
            0 => IpProtocol::HopByHop,
            1 => IpProtocol::Icmp,
            6 => IpProtocol::Tcp,
            17 => IpProtocol::Udp,
            43 => IpProtocol::Ipv6Route,
            44 => IpProtocol::Ipv6Frag,
            58 => IpProtocol::Icmpv6,
            59 => IpProtocol::Ipv6NoNxt,
            60 => IpProtocol::Ipv6Opts,
            other => IpProtocol::Other(other),
        }
    }
}

impl From<IpProtocol> for u8 {
    #[inline(always)]
    fn from(value: IpProtocol) -> u8 {
        match value {
            IpProtocol::HopByHop => 0,
            IpProtocol::Icmp => 1,
            IpProtocol::Tcp => 6,
            IpProtocol::Udp => 17,
            IpProtocol::Ipv6Route => 43,
            IpProtocol::Ipv6Frag => 44,
            IpProtocol::Icmpv6 => 58,
            IpProtocol::Ipv6NoNxt => 59,
            IpProtocol::Ipv6Opts => 60,
            IpProtocol::Other(other) => other,
        }
    }
}

impl fmt::Display for IpProtocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            IpProtocol::Other(n) => write!(f, "protocol {n}"),
            IpProtocol::Tcp => f.write_str("TCP"),
            IpProtocol::Udp => f.write_str("UDP"),
            IpProtocol::Icmp => f.write_str("ICMP"),
            IpProtocol::Icmpv6 => f.write_str("ICMPv6"),
            other => write!(f, "protocol {}", u8::from(*other)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_number_round_trips_and_named_values_are_canonical() {
        for n in 0..=u8::MAX {
            let p = IpProtocol::from(n);
            assert_eq!(u8::from(p), n);
            if let IpProtocol::Other(_) = p {
                assert!(![0, 1, 6, 17, 43, 44, 58, 59, 60].contains(&n));
            }
        }
    }
}
