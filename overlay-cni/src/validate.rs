//! The spec's rules for network names, container IDs and interface names.
//!
//! Each check returns the [`CniError`] libcni returns for the same input, so
//! plugins and runtimes built on this crate fail with the same codes:
//! code 7 for network names, 3 for an empty container ID, 4 otherwise.
//!
//! ```
//! use overlay_cni::validate;
//! use overlay_cni::error::ErrorCode;
//!
//! assert!(validate::network_name("pod-net_1.v4").is_ok());
//! assert_eq!(validate::network_name("-bad").unwrap_err().code, ErrorCode::InvalidNetworkConfig);
//! assert!(validate::container_id("3f6940ab5ab4").is_ok());
//! assert_eq!(validate::interface_name("eth0:1").unwrap_err().code,
//!            ErrorCode::InvalidEnvironmentVariables);
//! ```

use crate::error::{CniError, ErrorCode};

/// The longest interface name Linux accepts, in bytes (`IFNAMSIZ - 1`); the
/// one definition is [`overlay_core::ifname::MAX_LEN`].
pub const MAX_INTERFACE_NAME_LEN: usize = overlay_core::ifname::MAX_LEN;

/// Whether `s` starts with an ASCII alphanumeric and continues with
/// alphanumerics, `_`, `.` or `-`.
fn is_cni_name(s: &str) -> bool {
    let mut bytes = s.bytes();
    bytes.next().is_some_and(|b| b.is_ascii_alphanumeric())
        && bytes.all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
}

/// Check a network name: non-empty, alphanumerics, `_`, `.` and `-`, starting
/// with an alphanumeric. Fails with [`ErrorCode::InvalidNetworkConfig`].
///
/// ```
/// assert!(overlay_cni::validate::network_name("").is_err());
/// ```
pub fn network_name(name: &str) -> Result<(), CniError> {
    if name.is_empty() {
        return Err(CniError::new(
            ErrorCode::InvalidNetworkConfig,
            "missing network name",
        ));
    }
    if !is_cni_name(name) {
        return Err(CniError::new(
            ErrorCode::InvalidNetworkConfig,
            "invalid characters found in network name",
        )
        .with_details(name));
    }
    Ok(())
}

/// Check a container ID: non-empty ([`ErrorCode::UnknownContainer`] otherwise,
/// as libcni), alphanumerics, `_`, `.` and `-`, starting with an alphanumeric
/// ([`ErrorCode::InvalidEnvironmentVariables`] otherwise).
///
/// ```
/// use overlay_cni::error::ErrorCode;
/// assert_eq!(overlay_cni::validate::container_id("").unwrap_err().code, ErrorCode::UnknownContainer);
/// assert!(overlay_cni::validate::container_id("a/b").is_err());
/// ```
pub fn container_id(id: &str) -> Result<(), CniError> {
    if id.is_empty() {
        return Err(CniError::new(
            ErrorCode::UnknownContainer,
            "missing containerID",
        ));
    }
    if !is_cni_name(id) {
        return Err(CniError::new(
            ErrorCode::InvalidEnvironmentVariables,
            "invalid characters in containerID",
        )
        .with_details(id));
    }
    Ok(())
}

/// Check an interface name with the one rule set of
/// [`overlay_core::ifname::validate`] (what the kernel's `dev_valid_name`
/// and libcni's `ValidateInterfaceName` accept, without control
/// characters). Fails with [`ErrorCode::InvalidEnvironmentVariables`], the
/// name in the details.
///
/// ```
/// assert!(overlay_cni::validate::interface_name("eth0").is_ok());
/// assert!(overlay_cni::validate::interface_name("a-name-of-16-byt").is_err());
/// ```
pub fn interface_name(name: &str) -> Result<(), CniError> {
    overlay_core::ifname::validate(name).map_err(|e| {
        CniError::new(ErrorCode::InvalidEnvironmentVariables, e.to_string()).with_details(name)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn network_names_follow_the_spec_pattern() {
        for ok in ["a", "0", "pods", "pod-net_1.v4", "A.b-c_d"] {
            assert!(network_name(ok).is_ok(), "{ok}");
        }
        for bad in ["", "-a", "_a", ".a", "a b", "a/b", "a:b", "née"] {
            let err = network_name(bad).unwrap_err();
            assert_eq!(err.code, ErrorCode::InvalidNetworkConfig, "{bad}");
        }
    }

    #[test]
    fn container_ids_follow_the_spec_pattern_with_libcni_codes() {
        assert!(container_id("3f6940ab5ab43bc5").is_ok());
        assert_eq!(
            container_id("").unwrap_err().code,
            ErrorCode::UnknownContainer
        );
        for bad in ["-a", "a b", "a;b", "a/b", "ä"] {
            assert_eq!(
                container_id(bad).unwrap_err().code,
                ErrorCode::InvalidEnvironmentVariables,
                "{bad}"
            );
        }
    }

    #[test]
    fn interface_names_follow_linux_rules() {
        for ok in ["eth0", "a", "net1.100", "exactly15bytes_", "..."] {
            assert!(interface_name(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            ".",
            "..",
            "sixteen_bytes_ab",
            "a/b",
            "a:b",
            "a b",
            "a\tb",
            "a\u{a0}b",
            // Control characters: refused here as in overlay-netlink (both
            // call overlay_core::ifname).
            "a\u{1}b",
            "a\u{7f}",
        ] {
            assert_eq!(
                interface_name(bad).unwrap_err().code,
                ErrorCode::InvalidEnvironmentVariables,
                "{bad:?}"
            );
        }
    }

    #[test]
    fn interface_name_length_counts_bytes_not_chars() {
        // 8 two-byte characters: 16 bytes.
        assert!(interface_name("éééééééé").is_err());
        assert!(interface_name("ééééééé").is_ok());
    }
}
