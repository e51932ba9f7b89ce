//! Ethernet MAC addresses.

use std::fmt;
use std::str::FromStr;

/// A 48-bit IEEE 802 MAC address.
///
/// Displays as six lower-case hex octets separated by colons
/// (`02:42:ac:11:00:02`); parses the same form, case-insensitive, with `:` or
/// `-` as separator. Serializes as that string.
///
/// ```
/// use overlay_core::MacAddr;
///
/// let mac: MacAddr = "02:42:AC:11:00:02".parse().unwrap();
/// assert_eq!(mac.to_string(), "02:42:ac:11:00:02");
/// assert!(mac.is_unicast() && mac.is_locally_administered());
/// assert_eq!(<[u8; 6]>::from(mac), [0x02, 0x42, 0xac, 0x11, 0x00, 0x02]);
/// assert!(MacAddr::BROADCAST.is_broadcast());
/// ```
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct MacAddr([u8; 6]);

impl MacAddr {
    /// The broadcast address `ff:ff:ff:ff:ff:ff`.
    pub const BROADCAST: MacAddr = MacAddr([0xff; 6]);
    /// The all-zero address `00:00:00:00:00:00`.
    pub const ZERO: MacAddr = MacAddr([0; 6]);

    /// Builds an address from its six octets, most significant first.
    #[inline]
    pub const fn new(octets: [u8; 6]) -> Self {
        MacAddr(octets)
    }

    /// Returns the six octets, most significant first.
    pub const fn octets(&self) -> [u8; 6] {
        self.0
    }

    /// Returns the octets as a slice.
    pub const fn as_bytes(&self) -> &[u8; 6] {
        &self.0
    }

    /// Reads an address from the first six bytes of `bytes`.
    ///
    /// Returns `None` if `bytes` is shorter than six bytes.
    ///
    /// ```
    /// # use overlay_core::MacAddr;
    /// assert_eq!(MacAddr::from_slice(&[1, 2, 3, 4, 5, 6, 7]), Some(MacAddr::new([1, 2, 3, 4, 5, 6])));
    /// assert_eq!(MacAddr::from_slice(&[1, 2]), None);
    /// ```
    pub fn from_slice(bytes: &[u8]) -> Option<Self> {
        let octets: [u8; 6] = bytes.get(..6)?.try_into().ok()?;
        Some(MacAddr(octets))
    }

    /// True for group addresses (the I/G bit, the lowest bit of the first
    /// octet, is set). The broadcast address is a multicast address.
    #[inline]
    pub const fn is_multicast(&self) -> bool {
        self.0[0] & 0x01 != 0
    }

    /// True for `ff:ff:ff:ff:ff:ff`.
    #[inline]
    pub const fn is_broadcast(&self) -> bool {
        let o = self.0;
        o[0] == 0xff && o[1] == 0xff && o[2] == 0xff && o[3] == 0xff && o[4] == 0xff && o[5] == 0xff
    }

    /// True for individual addresses (the I/G bit is clear).
    #[inline]
    pub const fn is_unicast(&self) -> bool {
        !self.is_multicast()
    }

    /// True if the U/L bit (second-lowest bit of the first octet) is set, as
    /// in addresses that software generates for veth and bridge devices.
    pub const fn is_locally_administered(&self) -> bool {
        self.0[0] & 0x02 != 0
    }

    /// The IPv6 link-local address (`fe80::/64`) whose interface identifier
    /// is this address's modified EUI-64 (RFC 4291 appendix A): `ff:fe` in
    /// the middle and the U/L bit inverted. It is the address the kernel
    /// gives a device with this MAC (`addrgenmode eui64`).
    ///
    /// An overlay uses it as a peer's VTEP address over an IPv6 underlay,
    /// where an on-link gateway must be link-local.
    ///
    /// ```
    /// use std::net::Ipv6Addr;
    /// use overlay_core::MacAddr;
    ///
    /// let mac = MacAddr::new([0x02, 0x42, 0xac, 0x11, 0x00, 0x02]);
    /// let expected: Ipv6Addr = "fe80::42:acff:fe11:2".parse().unwrap();
    /// assert_eq!(mac.ipv6_link_local(), expected);
    /// ```
    pub const fn ipv6_link_local(&self) -> std::net::Ipv6Addr {
        let m = self.0;
        std::net::Ipv6Addr::new(
            0xfe80,
            0,
            0,
            0,
            u16::from_be_bytes([m[0] ^ 0x02, m[1]]),
            u16::from_be_bytes([m[2], 0xff]),
            u16::from_be_bytes([0xfe, m[3]]),
            u16::from_be_bytes([m[4], m[5]]),
        )
    }
}

impl From<[u8; 6]> for MacAddr {
    fn from(octets: [u8; 6]) -> Self {
        MacAddr(octets)
    }
}

impl From<MacAddr> for [u8; 6] {
    fn from(mac: MacAddr) -> Self {
        mac.0
    }
}

impl fmt::Display for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let o = self.0;
        write!(
            f,
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            o[0], o[1], o[2], o[3], o[4], o[5]
        )
    }
}

impl fmt::Debug for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "MacAddr({self})")
    }
}

/// Error returned when a string is not a MAC address.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ParseMacAddrError {
    /// The string does not have the `xx:xx:xx:xx:xx:xx` shape (17 characters).
    #[error("MAC address must be 17 characters `xx:xx:xx:xx:xx:xx`, got {len}")]
    BadLength {
        /// Length of the input in bytes.
        len: usize,
    },
    /// A separator is neither `:` nor `-`, or separators are mixed.
    #[error("bad separator at byte {offset} of MAC address (expected `:` or `-`)")]
    BadSeparator {
        /// Byte offset of the separator.
        offset: usize,
    },
    /// An octet is not two hex digits.
    #[error("octet {index} of MAC address is not two hex digits")]
    BadOctet {
        /// Zero-based index of the octet.
        index: usize,
    },
}

impl FromStr for MacAddr {
    type Err = ParseMacAddrError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let b = s.as_bytes();
        if b.len() != 17 {
            return Err(ParseMacAddrError::BadLength { len: b.len() });
        }
        let sep = b[2];
        let mut octets = [0u8; 6];
        for (index, octet) in octets.iter_mut().enumerate() {
            let at = index * 3;
            if index > 0 && (b[at - 1] != sep || !(sep == b':' || sep == b'-')) {
                return Err(ParseMacAddrError::BadSeparator { offset: at - 1 });
            }
            let hi = hex_val(b[at]).ok_or(ParseMacAddrError::BadOctet { index })?;
            let lo = hex_val(b[at + 1]).ok_or(ParseMacAddrError::BadOctet { index })?;
            *octet = (hi << 4) | lo;
        }
        Ok(MacAddr(octets))
    }
}

/// Value of one ASCII hex digit.
pub(crate) fn hex_val(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

crate::serde_via_str!(MacAddr);

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn link_local_holds_the_mac_as_modified_eui64(octets in any::<[u8; 6]>()) {
            let ip = MacAddr::new(octets).ipv6_link_local().octets();
            prop_assert_eq!(&ip[..8], &[0xfe, 0x80, 0, 0, 0, 0, 0, 0]);
            prop_assert_eq!(&ip[11..13], &[0xff, 0xfe]);
            let back = [ip[8] ^ 0x02, ip[9], ip[10], ip[13], ip[14], ip[15]];
            prop_assert_eq!(back, octets);
        }
    }

    #[test]
    fn parses_colon_and_dash_forms_case_insensitively() {
        let want = MacAddr::new([0xaa, 0xbb, 0xcc, 0x0d, 0xee, 0xff]);
        assert_eq!("aa:bb:cc:0d:ee:ff".parse::<MacAddr>().unwrap(), want);
        assert_eq!("AA-BB-CC-0D-EE-FF".parse::<MacAddr>().unwrap(), want);
    }

    #[test]
    fn rejects_malformed_strings_with_position() {
        assert_eq!(
            "aa:bb:cc:dd:ee".parse::<MacAddr>(),
            Err(ParseMacAddrError::BadLength { len: 14 })
        );
        assert_eq!(
            "aa:bb-cc:dd:ee:ff".parse::<MacAddr>(),
            Err(ParseMacAddrError::BadSeparator { offset: 5 })
        );
        assert_eq!(
            "aa.bb.cc.dd.ee.ff".parse::<MacAddr>(),
            Err(ParseMacAddrError::BadSeparator { offset: 2 })
        );
        assert_eq!(
            "aa:bb:cc:dd:eg:ff".parse::<MacAddr>(),
            Err(ParseMacAddrError::BadOctet { index: 4 })
        );
        // Multi-byte UTF-8 must not panic on byte indexing.
        assert!("aa:bb:cc:dd:ee:é".parse::<MacAddr>().is_err());
    }

    #[test]
    fn classifies_address_kinds() {
        let mcast = MacAddr::new([0x01, 0x00, 0x5e, 0x00, 0x00, 0x01]);
        assert!(mcast.is_multicast() && !mcast.is_broadcast() && !mcast.is_unicast());
        assert!(MacAddr::BROADCAST.is_multicast() && MacAddr::BROADCAST.is_broadcast());
        let uni = MacAddr::new([0x00, 0x1b, 0x21, 0x00, 0x00, 0x01]);
        assert!(uni.is_unicast() && !uni.is_locally_administered());
    }

    #[test]
    fn serde_uses_the_display_string() {
        let mac = MacAddr::new([0x02, 0, 0, 0, 0, 0x2a]);
        let json = serde_json::to_string(&mac).unwrap();
        assert_eq!(json, "\"02:00:00:00:00:2a\"");
        assert_eq!(serde_json::from_str::<MacAddr>(&json).unwrap(), mac);
        assert!(serde_json::from_str::<MacAddr>("\"nonsense\"").is_err());
    }

    proptest! {
        #[test]
        fn display_then_parse_round_trips(octets in any::<[u8; 6]>()) {
            let mac = MacAddr::from(octets);
            prop_assert_eq!(mac.to_string().parse::<MacAddr>().unwrap(), mac);
        }

        #[test]
        fn parse_never_panics(s in ".{0,40}") {
            let _ = s.parse::<MacAddr>();
        }
    }
}
