//! CNI specification versions and the `VERSION` command's answer.
//!
//! A [`Version`] is a `major.minor.patch` triple, ordered numerically. The
//! versions this crate implements are listed in [`SUPPORTED_VERSIONS`].
//!
//! ```
//! use overlay_cni::version::Version;
//!
//! let v: Version = "0.4.0".parse().unwrap();
//! assert!(v < Version::V1_0_0);
//! assert!(v.supports_check());
//! assert!(!v.supports_gc_and_status());
//! assert_eq!(v.to_string(), "0.4.0");
//! ```

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A CNI specification version such as `1.1.0`.
///
/// ```
/// use overlay_cni::version::{Version, SUPPORTED_VERSIONS};
///
/// let mut versions: Vec<Version> = ["1.0.0", "0.10.0", "0.4.0"].iter().map(|s| s.parse().unwrap()).collect();
/// versions.sort();
/// assert_eq!(versions[2], Version::V1_0_0);
/// assert_eq!(SUPPORTED_VERSIONS.last(), Some(&Version::LATEST));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Version {
    /// Major number.
    pub major: u32,
    /// Minor number.
    pub minor: u32,
    /// Patch number.
    pub patch: u32,
}

impl Version {
    /// Spec 0.1.0 (results with `ip4`/`ip6`).
    pub const V0_1_0: Version = Version::new(0, 1, 0);
    /// Spec 0.2.0 (adds `VERSION`; results with `ip4`/`ip6`).
    pub const V0_2_0: Version = Version::new(0, 2, 0);
    /// Spec 0.3.0 (rich results with `interfaces`, `ips[].version`; chaining).
    pub const V0_3_0: Version = Version::new(0, 3, 0);
    /// Spec 0.3.1 (typo fixes only).
    pub const V0_3_1: Version = Version::new(0, 3, 1);
    /// Spec 0.4.0 (adds `CHECK` and `prevResult` on `DEL`).
    pub const V0_4_0: Version = Version::new(0, 4, 0);
    /// Spec 1.0.0 (drops `ips[].version`, conflists only).
    pub const V1_0_0: Version = Version::new(1, 0, 0);
    /// Spec 1.1.0 (adds `STATUS`, `GC`, `cniVersions`, new interface and route fields).
    pub const V1_1_0: Version = Version::new(1, 1, 0);
    /// The newest version this crate implements.
    pub const LATEST: Version = Version::V1_1_0;

    /// Make a version from its three numbers.
    ///
    /// ```
    /// assert_eq!(overlay_cni::version::Version::new(1, 0, 0).to_string(), "1.0.0");
    /// ```
    pub const fn new(major: u32, minor: u32, patch: u32) -> Self {
        Version {
            major,
            minor,
            patch,
        }
    }

    /// Whether this crate implements this version (see [`SUPPORTED_VERSIONS`]).
    ///
    /// ```
    /// use overlay_cni::version::Version;
    /// assert!(Version::V0_3_1.is_supported());
    /// assert!(!Version::new(0, 5, 0).is_supported());
    /// ```
    pub fn is_supported(self) -> bool {
        SUPPORTED_VERSIONS.contains(&self)
    }

    /// Whether results of this version use the legacy `ip4`/`ip6` form (before 0.3.0).
    ///
    /// ```
    /// use overlay_cni::version::Version;
    /// assert!(Version::V0_2_0.is_legacy());
    /// assert!(!Version::V0_3_0.is_legacy());
    /// ```
    pub fn is_legacy(self) -> bool {
        self < Version::V0_3_0
    }

    /// Whether results of this version carry `ips[].version` (0.3.0 up to 0.4.x).
    ///
    /// ```
    /// use overlay_cni::version::Version;
    /// assert!(Version::V0_4_0.has_ip_version_field());
    /// assert!(!Version::V1_0_0.has_ip_version_field());
    /// ```
    pub fn has_ip_version_field(self) -> bool {
        self >= Version::V0_3_0 && self < Version::V1_0_0
    }

    /// Whether the `CHECK` command exists in this version (0.4.0 and later).
    ///
    /// ```
    /// assert!(!overlay_cni::version::Version::V0_3_1.supports_check());
    /// ```
    pub fn supports_check(self) -> bool {
        self >= Version::V0_4_0
    }

    /// Whether the `GC` and `STATUS` commands exist in this version (1.1.0 and later).
    ///
    /// ```
    /// assert!(overlay_cni::version::Version::V1_1_0.supports_gc_and_status());
    /// ```
    pub fn supports_gc_and_status(self) -> bool {
        self >= Version::V1_1_0
    }
}

impl Default for Version {
    /// The version a configuration without `cniVersion` means: 0.1.0, as in libcni.
    fn default() -> Self {
        Version::V0_1_0
    }
}

/// The versions this crate implements, oldest first.
///
/// 0.1.0 and 0.2.0 are accepted in configurations and produce `ip4`/`ip6`
/// results, as libcni does.
pub const SUPPORTED_VERSIONS: &[Version] = &[
    Version::V0_1_0,
    Version::V0_2_0,
    Version::V0_3_0,
    Version::V0_3_1,
    Version::V0_4_0,
    Version::V1_0_0,
    Version::V1_1_0,
];

/// A string that is not a `major.minor.patch` version.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid CNI version {input:?}: expected major.minor.patch with decimal numbers")]
pub struct ParseVersionError {
    /// The rejected input.
    pub input: String,
}

impl FromStr for Version {
    type Err = ParseVersionError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || ParseVersionError {
            input: s.to_owned(),
        };
        let mut parts = s.split('.');
        let mut next = || -> Result<u32, ParseVersionError> {
            let part = parts.next().ok_or_else(err)?;
            if part.is_empty() || !part.bytes().all(|b| b.is_ascii_digit()) {
                return Err(err());
            }
            part.parse().map_err(|_| err())
        };
        let (major, minor, patch) = (next()?, next()?, next()?);
        if parts.next().is_some() {
            return Err(err());
        }
        Ok(Version::new(major, minor, patch))
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.patch)
    }
}

impl Serialize for Version {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Version {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = String::deserialize(deserializer)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// The answer to the `VERSION` command.
///
/// ```
/// use overlay_cni::version::{Version, VersionInfo};
///
/// let info: VersionInfo = serde_json::from_str(
///     r#"{"cniVersion":"1.0.0","supportedVersions":["0.3.1","0.4.0","1.0.0"]}"#,
/// )
/// .unwrap();
/// assert!(info.supports(Version::V0_4_0));
/// assert!(!info.supports(Version::V1_1_0));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VersionInfo {
    /// The version of this answer's own format.
    #[serde(rename = "cniVersion")]
    pub cni_version: Version,
    /// Every version the plugin supports.
    #[serde(rename = "supportedVersions", default)]
    pub supported_versions: Vec<Version>,
}

impl VersionInfo {
    /// Whether `version` is in [`VersionInfo::supported_versions`].
    pub fn supports(&self, version: Version) -> bool {
        self.supported_versions.contains(&version)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_prints_every_supported_version() {
        for v in SUPPORTED_VERSIONS {
            assert_eq!(v.to_string().parse::<Version>().unwrap(), *v);
        }
    }

    #[test]
    fn rejects_malformed_versions() {
        for bad in [
            "", "1", "1.0", "1.0.0.0", "a.b.c", "1..0", "-1.0.0", "1.0.0 ", "+1.0.0",
        ] {
            assert!(bad.parse::<Version>().is_err(), "{bad:?} parsed");
        }
    }

    #[test]
    fn orders_numerically_not_lexically() {
        assert!(Version::new(0, 10, 0) > Version::new(0, 9, 0));
        assert!(Version::V0_3_1 > Version::V0_3_0);
        assert!(Version::V1_0_0 > Version::V0_4_0);
    }

    #[test]
    fn command_availability_follows_the_spec() {
        assert!(!Version::V0_3_1.supports_check());
        assert!(Version::V0_4_0.supports_check());
        assert!(!Version::V1_0_0.supports_gc_and_status());
        assert!(Version::V1_1_0.supports_gc_and_status());
    }

    #[test]
    fn version_info_serialises_with_spec_field_names() {
        let info = VersionInfo {
            cni_version: Version::V1_1_0,
            supported_versions: vec![Version::V0_4_0, Version::V1_1_0],
        };
        assert_eq!(
            serde_json::to_string(&info).unwrap(),
            r#"{"cniVersion":"1.1.0","supportedVersions":["0.4.0","1.1.0"]}"#
        );
    }
}
