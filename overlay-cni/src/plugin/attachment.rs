//! Names and addresses derived from an attachment (network, container,
//! interface), fixed by definition so that `DEL` and `GC` find them again.

#[cfg(doc)]
use super::Request;

/// The attachment hash of [`Request::attachment_hash`] from its three
/// parts, for a plugin that knows an attachment without a request for it
/// (GC finds stale attachments in its own state): FNV-1a 64 over the
/// network name, container ID and interface name, each followed by a NUL
/// byte.
///
/// ```
/// assert_eq!(
///     overlay_cni::plugin::attachment_hash("pods", "c1", "eth0"),
///     overlay_cni::plugin::attachment_hash("pods", "c1", "eth0"),
/// );
/// assert_ne!(
///     overlay_cni::plugin::attachment_hash("pods", "c1", "eth0"),
///     overlay_cni::plugin::attachment_hash("pods", "c", "1eth0"),
/// );
/// ```
pub fn attachment_hash(network: &str, container_id: &str, ifname: &str) -> u64 {
    let mut hash = overlay_core::hash::Fnv1a64::new();
    for part in [network, container_id, ifname] {
        hash.write(part.as_bytes()).write(&[0]);
    }
    hash.finish()
}

/// The name of an attachment's host-side veth end: `veth` and eight hex
/// digits folded from the [`attachment_hash`] (its upper 32 bits XORed into
/// its lower 32 bits).
///
/// The value is fixed by this definition, so `DEL` and `GC` find the host
/// end without the container's namespace (which may be gone), even after
/// the plugin was upgraded; existing deployments depend on it. The name is
/// 12 bytes, within the kernel's 15.
///
/// ```
/// use overlay_cni::plugin::{attachment_hash, host_veth_name};
///
/// let name = host_veth_name(attachment_hash("pods", "c1", "eth0"));
/// assert_eq!(name, "veth143f844a");
/// ```
pub fn host_veth_name(attachment_hash: u64) -> String {
    // Truncation intended: the fold keeps 32 bits.
    format!(
        "veth{:08x}",
        (attachment_hash ^ (attachment_hash >> 32)) as u32
    )
}

/// The MAC address of an attachment's container interface: locally
/// administered and unicast, from other bits of the [`attachment_hash`]
/// than [`host_veth_name`] uses (the hash rotated left by 29, its first six
/// bytes big-endian, the first byte's multicast bit cleared and its local
/// bit set).
///
/// A repeated `ADD` of the same attachment gets the same address, and the
/// plugin knows it without asking the container's namespace. The value is
/// fixed by this definition.
///
/// ```
/// use overlay_cni::plugin::{attachment_hash, container_mac};
///
/// let mac = container_mac(attachment_hash("pods", "c1", "eth0"));
/// assert_eq!(mac.to_string(), "d6:79:9e:bb:95:fe");
/// assert!(mac.is_unicast());
/// ```
pub fn container_mac(attachment_hash: u64) -> overlay_core::MacAddr {
    let h = attachment_hash.rotate_left(29).to_be_bytes();
    overlay_core::MacAddr::new([(h[0] & 0xfe) | 0x02, h[1], h[2], h[3], h[4], h[5]])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attachment_hash_is_fnv1a_with_nul_separators_and_separates_fields() {
        // FNV-1a 64 of the empty input is the offset basis; of "\0\0\0" it
        // is three rounds of (xor 0, multiply by the prime).
        let prime: u64 = 0x0100_0000_01b3;
        let basis: u64 = 0xcbf2_9ce4_8422_2325;
        let expected = basis
            .wrapping_mul(prime)
            .wrapping_mul(prime)
            .wrapping_mul(prime);
        assert_eq!(attachment_hash("", "", ""), expected);
        // Published FNV-1a 64 test vector: "a" -> 0xaf63dc4c8601ec8c; the
        // NUL and two empty fields continue from there.
        let a = (basis ^ u64::from(b'a')).wrapping_mul(prime);
        assert_eq!(a, 0xaf63_dc4c_8601_ec8c);
        assert_eq!(
            attachment_hash("a", "", ""),
            a.wrapping_mul(prime)
                .wrapping_mul(prime)
                .wrapping_mul(prime)
        );
        // Moving bytes between fields changes the hash.
        assert_ne!(
            attachment_hash("ab", "c", "eth0"),
            attachment_hash("a", "bc", "eth0")
        );
        assert_ne!(
            attachment_hash("net", "c1", "eth0"),
            attachment_hash("net", "c1", "eth1")
        );
    }
}
