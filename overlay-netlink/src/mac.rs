//! MAC addresses in netlink attributes. The type is overlay-core's
//! [`MacAddr`], re-exported at the crate root.

use overlay_core::MacAddr;

/// The MAC address in a link-layer attribute, if it is exactly six bytes
/// (other link types carry other address lengths).
pub(crate) fn exact(bytes: &[u8]) -> Option<MacAddr> {
    <[u8; 6]>::try_from(bytes).ok().map(MacAddr::new)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_six_byte_addresses_are_macs() {
        assert_eq!(
            exact(&[2, 0, 0, 0, 0, 1]),
            Some(MacAddr::new([2, 0, 0, 0, 0, 1]))
        );
        assert_eq!(exact(&[1, 2, 3, 4]), None);
        assert_eq!(exact(&[0; 20]), None);
    }
}
