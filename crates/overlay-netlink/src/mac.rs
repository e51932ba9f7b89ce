//! Ethernet MAC addresses.

use std::fmt;
use std::str::FromStr;

/// A 48-bit Ethernet MAC address.
///
/// ```
/// use overlay_netlink::MacAddr;
/// let mac: MacAddr = "02:42:ac:11:00:02".parse().unwrap();
/// assert_eq!(mac.to_string(), "02:42:ac:11:00:02");
/// assert!(mac.is_unicast() && mac.is_local());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct MacAddr(pub [u8; 6]);

impl MacAddr {
    /// The all-zero address (used by VXLAN for default-destination FDB entries).
    pub const ZERO: MacAddr = MacAddr([0; 6]);

    /// The address bytes.
    pub fn octets(&self) -> [u8; 6] {
        self.0
    }

    /// Whether the group bit is clear and the address is not all zeros.
    pub fn is_unicast(&self) -> bool {
        self.0[0] & 1 == 0 && *self != Self::ZERO
    }

    /// Whether the locally administered bit is set.
    pub fn is_local(&self) -> bool {
        self.0[0] & 2 != 0
    }

    /// Parse from the bytes of a netlink attribute (exactly six bytes).
    pub fn from_slice(bytes: &[u8]) -> Option<MacAddr> {
        <[u8; 6]>::try_from(bytes).ok().map(MacAddr)
    }
}

impl From<[u8; 6]> for MacAddr {
    fn from(bytes: [u8; 6]) -> Self {
        MacAddr(bytes)
    }
}

impl fmt::Display for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = self.0;
        write!(
            f,
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            b[0], b[1], b[2], b[3], b[4], b[5]
        )
    }
}

/// The error of parsing a [`MacAddr`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid MAC address {0:?}: expected six hex bytes separated by ':'")]
pub struct ParseMacError(String);

impl FromStr for MacAddr {
    type Err = ParseMacError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut out = [0u8; 6];
        let mut parts = s.split(':');
        for byte in &mut out {
            let part = parts.next().ok_or_else(|| ParseMacError(s.into()))?;
            if part.is_empty() || part.len() > 2 {
                return Err(ParseMacError(s.into()));
            }
            *byte = u8::from_str_radix(part, 16).map_err(|_| ParseMacError(s.into()))?;
        }
        if parts.next().is_some() {
            return Err(ParseMacError(s.into()));
        }
        Ok(MacAddr(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mac_parses_and_formats_round_trip() {
        let mac: MacAddr = "0A:0b:0c:0d:0e:0f".parse().unwrap();
        assert_eq!(mac.0, [10, 11, 12, 13, 14, 15]);
        assert_eq!(mac.to_string(), "0a:0b:0c:0d:0e:0f");
        for bad in [
            "",
            "1:2:3:4:5",
            "1:2:3:4:5:6:7",
            "zz:0:0:0:0:0",
            "100:0:0:0:0:0",
        ] {
            assert!(bad.parse::<MacAddr>().is_err(), "{bad}");
        }
        assert_eq!(MacAddr::from_slice(&[1, 2, 3]), None);
        assert!(!MacAddr::ZERO.is_unicast());
        assert!(!MacAddr([1, 0, 0, 0, 0, 0]).is_unicast());
    }
}
