//! The overlay MTU from the underlay MTU: one definition for every crate.
//!
//! A tunnelled packet is the inner Ethernet frame plus the outer IP, UDP
//! and tunnel headers, and it must fit the underlay MTU (which counts from
//! the outer IP header on; the outer Ethernet header and any VLAN tag do not
//! count). The inner frame's own Ethernet header does count, so the overlay
//! MTU (what the overlay's IP packets may be) is the underlay MTU minus the
//! encapsulation's headroom for an untagged outer frame:
//!
//! | encapsulation | IPv4 underlay | IPv6 underlay |
//! | --- | --- | --- |
//! | VXLAN | underlay − 50 | underlay − 70 |
//! | Geneve, no options | underlay − 50 | underlay − 70 |
//! | Geneve with `n` option bytes | underlay − 50 − n | underlay − 70 − n |
//!
//! A result below the minimum MTU of the overlay's IP family (68 bytes for
//! IPv4, RFC 791; 1280 for IPv6, RFC 8200) is refused with
//! [`MtuError::BelowMinimum`].
//!
//! ```
//! use overlay_core::encap::VxlanEncap;
//! use overlay_core::mtu::{IpFamily, overlay_mtu};
//! use overlay_core::wire::Vni;
//!
//! let vxlan = VxlanEncap::new(Vni::new(42).unwrap());
//! assert_eq!(overlay_mtu(1500, IpFamily::V4, IpFamily::V4, &vxlan), Ok(1450));
//! assert_eq!(overlay_mtu(1500, IpFamily::V6, IpFamily::V4, &vxlan), Ok(1430));
//! // An IPv6 overlay needs 1280 bytes: a 1300-byte IPv4 underlay is too small.
//! assert!(overlay_mtu(1300, IpFamily::V4, IpFamily::V6, &vxlan).is_err());
//! ```

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::MacAddr;
use crate::encap::{Encapsulation, OuterParams};

/// The smallest MTU an IPv4 link may have (RFC 791).
pub const MIN_IPV4_MTU: u32 = 68;
/// The smallest MTU an IPv6 link may have (RFC 8200 section 5).
pub const MIN_IPV6_MTU: u32 = 1280;

pub use crate::family::IpFamily;

/// The largest MTU Linux accepts for an Ethernet device such as a bridge
/// or a veth (`ETH_MAX_MTU`).
pub const MAX_LINK_MTU: u32 = 65535;

/// Why an MTU is refused: no overlay MTU fits the underlay, or a link MTU
/// is outside what the kernel accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum MtuError {
    /// The underlay MTU minus the encapsulation overhead is below the
    /// minimum MTU of the overlay's IP family (or below zero).
    #[error(
        "underlay MTU {underlay_mtu} minus {overhead} bytes of encapsulation leaves less than the {overlay:?} minimum of {minimum}"
    )]
    BelowMinimum {
        /// The underlay MTU given.
        underlay_mtu: u32,
        /// Bytes the encapsulation adds.
        overhead: u32,
        /// The overlay's IP family.
        overlay: IpFamily,
        /// The minimum MTU of that family.
        minimum: u32,
    },
    /// A link MTU outside `family.min_mtu()..=MAX_LINK_MTU`.
    #[error("mtu {mtu} is outside {minimum} to {maximum}, the range of a link carrying {family}")]
    OutOfRange {
        /// The MTU given.
        mtu: u32,
        /// The family the link carries (IPv6 when it carries any).
        family: IpFamily,
        /// The smallest MTU allowed for that family.
        minimum: u32,
        /// [`MAX_LINK_MTU`].
        maximum: u32,
    },
}

/// Checks an MTU for an Ethernet link (a bridge, a veth) that carries
/// `family` (pass [`IpFamily::V6`] when it carries any IPv6: the kernel
/// turns IPv6 off on a link below 1280): from `family.min_mtu()` to
/// [`MAX_LINK_MTU`].
///
/// ```
/// use overlay_core::mtu::{IpFamily, MtuError, check_link_mtu};
///
/// assert_eq!(check_link_mtu(1450, IpFamily::V4), Ok(()));
/// assert_eq!(check_link_mtu(68, IpFamily::V4), Ok(()));
/// assert!(matches!(check_link_mtu(1000, IpFamily::V6), Err(MtuError::OutOfRange { minimum: 1280, .. })));
/// assert!(check_link_mtu(0, IpFamily::V4).is_err());
/// assert!(check_link_mtu(70000, IpFamily::V4).is_err());
/// ```
pub fn check_link_mtu(mtu: u32, family: IpFamily) -> Result<(), MtuError> {
    let minimum = family.min_mtu();
    if (minimum..=MAX_LINK_MTU).contains(&mtu) {
        Ok(())
    } else {
        Err(MtuError::OutOfRange {
            mtu,
            family,
            minimum,
            maximum: MAX_LINK_MTU,
        })
    }
}

/// Bytes `encapsulation` adds to an overlay packet over an underlay of
/// `underlay` family: its headroom for an untagged outer frame (the outer
/// Ethernet header stands in for the inner one, which the underlay MTU
/// counts and the overlay MTU does not).
///
/// ```
/// use overlay_core::encap::VxlanEncap;
/// use overlay_core::mtu::{IpFamily, overhead};
/// use overlay_core::wire::Vni;
/// let vxlan = VxlanEncap::new(Vni::new(1).unwrap());
/// assert_eq!((overhead(IpFamily::V4, &vxlan), overhead(IpFamily::V6, &vxlan)), (50, 70));
/// ```
pub fn overhead(underlay: IpFamily, encapsulation: &dyn Encapsulation) -> u32 {
    let addr = match underlay {
        IpFamily::V4 => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        IpFamily::V6 => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
    };
    let headroom =
        encapsulation.headroom(&OuterParams::new(MacAddr::ZERO, MacAddr::ZERO, addr, addr));
    // At most 14 + 40 + 8 + 8 + 252 bytes for the encapsulations of this
    // crate; saturate for any other.
    u32::try_from(headroom).unwrap_or(u32::MAX)
}

/// The MTU of an overlay of `overlay` family carried by `encapsulation` over
/// an underlay of `underlay` family with MTU `underlay_mtu`: the underlay
/// MTU minus [`overhead`]. Refused if that is below the overlay family's
/// minimum ([`IpFamily::min_mtu`]).
///
/// ```
/// use overlay_core::encap::GeneveEncap;
/// use overlay_core::mtu::{IpFamily, MtuError, overlay_mtu};
/// use overlay_core::wire::{Vni, geneve::GeneveOption};
///
/// let geneve = GeneveEncap::new(Vni::new(1).unwrap())
///     .with_options(vec![GeneveOption::new(0x0102, 1, vec![0; 4]).unwrap()])
///     .unwrap();
/// // 8 option bytes on top of the 70 of Geneve over IPv6.
/// assert_eq!(overlay_mtu(9000, IpFamily::V6, IpFamily::V6, &geneve), Ok(8922));
/// assert_eq!(
///     overlay_mtu(100, IpFamily::V4, IpFamily::V4, &geneve),
///     Err(MtuError::BelowMinimum { underlay_mtu: 100, overhead: 58, overlay: IpFamily::V4, minimum: 68 })
/// );
/// ```
pub fn overlay_mtu(
    underlay_mtu: u32,
    underlay: IpFamily,
    overlay: IpFamily,
    encapsulation: &dyn Encapsulation,
) -> Result<u32, MtuError> {
    let overhead = overhead(underlay, encapsulation);
    let minimum = overlay.min_mtu();
    underlay_mtu
        .checked_sub(overhead)
        .filter(|&mtu| mtu >= minimum)
        .ok_or(MtuError::BelowMinimum {
            underlay_mtu,
            overhead,
            overlay,
            minimum,
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn link_mtu_bounds_are_inclusive_and_follow_the_family() {
        for (mtu, family, ok) in [
            (67, IpFamily::V4, false),
            (68, IpFamily::V4, true),
            (1279, IpFamily::V6, false),
            (1280, IpFamily::V6, true),
            (65535, IpFamily::V6, true),
            (65536, IpFamily::V4, false),
        ] {
            assert_eq!(check_link_mtu(mtu, family).is_ok(), ok, "{mtu} {family}");
        }
    }
    use crate::encap::{GeneveEncap, VxlanEncap};
    use crate::wire::Vni;

    #[test]
    fn vxlan_takes_50_bytes_over_ipv4_and_70_over_ipv6() {
        let vxlan = VxlanEncap::new(Vni::new(1).unwrap());
        assert_eq!(
            overlay_mtu(1500, IpFamily::V4, IpFamily::V4, &vxlan),
            Ok(1450)
        );
        assert_eq!(
            overlay_mtu(1500, IpFamily::V6, IpFamily::V6, &vxlan),
            Ok(1430)
        );
        assert_eq!(
            overlay_mtu(9000, IpFamily::V4, IpFamily::V6, &vxlan),
            Ok(8950)
        );
    }

    #[test]
    fn geneve_options_add_to_the_overhead() {
        let geneve = GeneveEncap::new(Vni::new(1).unwrap());
        assert_eq!(overhead(IpFamily::V4, &geneve), 50);
        let geneve = geneve
            .with_options(vec![
                crate::wire::geneve::GeneveOption::new(1, 1, vec![0; 12]).unwrap(),
            ])
            .unwrap();
        assert_eq!(overhead(IpFamily::V6, &geneve), 70 + 16);
    }

    #[test]
    fn results_below_the_overlay_family_minimum_are_refused() {
        let vxlan = VxlanEncap::new(Vni::new(1).unwrap());
        assert_eq!(overlay_mtu(118, IpFamily::V4, IpFamily::V4, &vxlan), Ok(68));
        assert_eq!(
            overlay_mtu(117, IpFamily::V4, IpFamily::V4, &vxlan),
            Err(MtuError::BelowMinimum {
                underlay_mtu: 117,
                overhead: 50,
                overlay: IpFamily::V4,
                minimum: 68
            })
        );
        assert_eq!(
            overlay_mtu(1350, IpFamily::V6, IpFamily::V6, &vxlan),
            Ok(1280)
        );
        assert!(overlay_mtu(1349, IpFamily::V6, IpFamily::V6, &vxlan).is_err());
        // Less than the overhead itself.
        assert!(overlay_mtu(10, IpFamily::V4, IpFamily::V4, &vxlan).is_err());
    }
}
