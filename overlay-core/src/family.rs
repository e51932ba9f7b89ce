//! The IP family, shared by every crate of the workspace.

use std::fmt;
use std::net::IpAddr;

use crate::mtu::{MIN_IPV4_MTU, MIN_IPV6_MTU};

/// An IP family: of the underlay (the outer headers) or of the overlay (the
/// packets the overlay carries).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum IpFamily {
    /// IPv4.
    V4,
    /// IPv6.
    V6,
}

impl IpFamily {
    /// The family of `addr`.
    ///
    /// ```
    /// use overlay_core::IpFamily;
    /// assert_eq!(IpFamily::of("2001:db8::1".parse().unwrap()), IpFamily::V6);
    /// ```
    pub fn of(addr: IpAddr) -> IpFamily {
        match addr {
            IpAddr::V4(_) => IpFamily::V4,
            IpAddr::V6(_) => IpFamily::V6,
        }
    }

    /// The smallest MTU a link of this family may have: [`MIN_IPV4_MTU`] or
    /// [`MIN_IPV6_MTU`].
    ///
    /// ```
    /// use overlay_core::IpFamily;
    /// assert_eq!(IpFamily::V6.min_mtu(), 1280);
    /// ```
    pub fn min_mtu(self) -> u32 {
        match self {
            IpFamily::V4 => MIN_IPV4_MTU,
            IpFamily::V6 => MIN_IPV6_MTU,
        }
    }
}

impl fmt::Display for IpFamily {
    /// `IPv4` or `IPv6`.
    ///
    /// ```
    /// assert_eq!(overlay_core::IpFamily::V6.to_string(), "IPv6");
    /// ```
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            IpFamily::V4 => "IPv4",
            IpFamily::V6 => "IPv6",
        })
    }
}
