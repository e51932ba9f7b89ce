//! The CNI error object: `{cniVersion, code, msg, details}`.
//!
//! Plugins print an [`CniError`] on stdout and exit non-zero; runtimes read it
//! back. [`ErrorCode`] names the spec's well-known codes and keeps any other
//! number in [`ErrorCode::Other`], so nothing is lost in a round trip.
//!
//! ```
//! use overlay_cni::error::{CniError, ErrorCode};
//! use overlay_cni::version::Version;
//!
//! let err = CniError::new(ErrorCode::TryAgainLater, "address pool is being rebalanced")
//!     .with_details("retry in 1s")
//!     .with_version(Version::V1_1_0);
//! assert_eq!(
//!     serde_json::to_string(&err).unwrap(),
//!     r#"{"cniVersion":"1.1.0","code":11,"msg":"address pool is being rebalanced","details":"retry in 1s"}"#
//! );
//! let back: CniError = serde_json::from_str(r#"{"code":104,"msg":"quota"}"#).unwrap();
//! assert_eq!(back.code, ErrorCode::Other(104));
//! ```

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::version::Version;

/// A CNI error code.
///
/// Codes 1-99 are reserved by the spec; 100 and up are plugin-specific and
/// travel in [`ErrorCode::Other`].
///
/// ```
/// use overlay_cni::error::ErrorCode;
///
/// let code: ErrorCode = serde_json::from_str("51").unwrap();
/// assert_eq!(code, ErrorCode::PluginNotAvailableLimitedConnectivity);
/// assert_eq!(serde_json::to_string(&ErrorCode::Other(130)).unwrap(), "130");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorCode {
    /// 1: incompatible CNI version.
    IncompatibleCniVersion,
    /// 2: unsupported field in the network configuration.
    UnsupportedField,
    /// 3: container unknown or does not exist.
    UnknownContainer,
    /// 4: invalid necessary environment variables, like `CNI_COMMAND` or `CNI_CONTAINERID`.
    InvalidEnvironmentVariables,
    /// 5: I/O failure, for example reading the network configuration from stdin.
    IoFailure,
    /// 6: failed to decode content, for example bad JSON on stdin.
    DecodingFailure,
    /// 7: invalid network configuration.
    InvalidNetworkConfig,
    /// 11: try again later; the plugin detected a transient condition.
    TryAgainLater,
    /// 50: the plugin is not available (`STATUS`).
    PluginNotAvailable,
    /// 51: the plugin is not available and existing containers may have limited connectivity.
    PluginNotAvailableLimitedConnectivity,
    /// 999: libcni's catch-all for errors that carry no code of their own.
    Internal,
    /// Any other code: 0, unassigned spec codes, and plugin-specific codes (100 and up).
    Other(u32),
}

impl ErrorCode {
    /// The numeric code.
    ///
    /// ```
    /// use overlay_cni::error::ErrorCode;
    /// assert_eq!(ErrorCode::DecodingFailure.code(), 6);
    /// assert_eq!(ErrorCode::Other(120).code(), 120);
    /// ```
    pub fn code(self) -> u32 {
        match self {
            ErrorCode::IncompatibleCniVersion => 1,
            ErrorCode::UnsupportedField => 2,
            ErrorCode::UnknownContainer => 3,
            ErrorCode::InvalidEnvironmentVariables => 4,
            ErrorCode::IoFailure => 5,
            ErrorCode::DecodingFailure => 6,
            ErrorCode::InvalidNetworkConfig => 7,
            ErrorCode::TryAgainLater => 11,
            ErrorCode::PluginNotAvailable => 50,
            ErrorCode::PluginNotAvailableLimitedConnectivity => 51,
            ErrorCode::Internal => 999,
            ErrorCode::Other(code) => code,
        }
    }

    /// The code for a number; unknown numbers become [`ErrorCode::Other`].
    ///
    /// ```
    /// use overlay_cni::error::ErrorCode;
    /// assert_eq!(ErrorCode::from_code(11), ErrorCode::TryAgainLater);
    /// assert_eq!(ErrorCode::from_code(101), ErrorCode::Other(101));
    /// ```
    pub fn from_code(code: u32) -> Self {
        match code {
            1 => ErrorCode::IncompatibleCniVersion,
            2 => ErrorCode::UnsupportedField,
            3 => ErrorCode::UnknownContainer,
            4 => ErrorCode::InvalidEnvironmentVariables,
            5 => ErrorCode::IoFailure,
            6 => ErrorCode::DecodingFailure,
            7 => ErrorCode::InvalidNetworkConfig,
            11 => ErrorCode::TryAgainLater,
            50 => ErrorCode::PluginNotAvailable,
            51 => ErrorCode::PluginNotAvailableLimitedConnectivity,
            999 => ErrorCode::Internal,
            other => ErrorCode::Other(other),
        }
    }

    /// Whether the code is plugin-specific (100 and up, except libcni's 999).
    ///
    /// ```
    /// use overlay_cni::error::ErrorCode;
    /// assert!(ErrorCode::Other(100).is_plugin_specific());
    /// assert!(!ErrorCode::TryAgainLater.is_plugin_specific());
    /// ```
    pub fn is_plugin_specific(self) -> bool {
        matches!(self, ErrorCode::Other(code) if code >= 100)
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.code())
    }
}

impl Serialize for ErrorCode {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_u32(self.code())
    }
}

impl<'de> Deserialize<'de> for ErrorCode {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        u32::deserialize(deserializer).map(ErrorCode::from_code)
    }
}

/// The spec's error object, as printed by a failing plugin.
///
/// `cniVersion` is optional when reading (old plugins omit it) and printed
/// when set; [`crate::plugin`] always sets it.
///
/// ```
/// use overlay_cni::error::{CniError, ErrorCode};
///
/// let err: CniError = serde_json::from_str(
///     r#"{"cniVersion":"1.0.0","code":7,"msg":"invalid config","details":"no bridge"}"#,
/// ).unwrap();
/// assert_eq!(err.code, ErrorCode::InvalidNetworkConfig);
/// assert_eq!(err.to_string(), "CNI error 7: invalid config; no bridge");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub struct CniError {
    /// The version of the error's format, normally the configuration's version.
    #[serde(
        rename = "cniVersion",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub cni_version: Option<Version>,
    /// The error code.
    pub code: ErrorCode,
    /// A short message.
    pub msg: String,
    /// A longer explanation; empty when there is none (then omitted from JSON).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub details: String,
}

impl fmt::Display for CniError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CNI error {}: {}", self.code, self.msg)?;
        if !self.details.is_empty() {
            write!(f, "; {}", self.details)?;
        }
        Ok(())
    }
}

impl CniError {
    /// An error with a code and a message, no details and no version.
    ///
    /// ```
    /// use overlay_cni::error::{CniError, ErrorCode};
    /// let e = CniError::new(ErrorCode::InvalidNetworkConfig, "missing bridge name");
    /// assert_eq!(e.to_string(), "CNI error 7: missing bridge name");
    /// ```
    pub fn new(code: ErrorCode, msg: impl Into<String>) -> Self {
        CniError {
            cni_version: None,
            code,
            msg: msg.into(),
            details: String::new(),
        }
    }

    /// Set the details.
    pub fn with_details(mut self, details: impl Into<String>) -> Self {
        self.details = details.into();
        self
    }

    /// Set the version.
    pub fn with_version(mut self, version: Version) -> Self {
        self.cni_version = Some(version);
        self
    }

    /// A plugin-specific error (code 100 and up); `code` below 100 is raised to 100.
    ///
    /// ```
    /// use overlay_cni::error::{CniError, ErrorCode};
    /// assert_eq!(CniError::plugin(120, "quota").code, ErrorCode::Other(120));
    /// ```
    pub fn plugin(code: u32, msg: impl Into<String>) -> Self {
        CniError::new(ErrorCode::from_code(code.max(100)), msg)
    }

    /// An [`ErrorCode::Internal`] error from any displayable failure, as
    /// libcni's plugin runner does for errors without a code.
    ///
    /// ```
    /// use overlay_cni::error::{CniError, ErrorCode};
    /// let io = std::io::Error::other("disk on fire");
    /// assert_eq!(CniError::internal(&io).code, ErrorCode::Internal);
    /// ```
    pub fn internal(err: &dyn fmt::Display) -> Self {
        CniError::new(ErrorCode::Internal, err.to_string())
    }

    /// The error as pretty-printed JSON, as a plugin prints it on stdout.
    pub fn to_json(&self) -> Vec<u8> {
        // Serialising plain strings and numbers cannot fail.
        serde_json::to_vec_pretty(self).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_well_known_code_round_trips_through_its_number() {
        let all = [
            (ErrorCode::IncompatibleCniVersion, 1),
            (ErrorCode::UnsupportedField, 2),
            (ErrorCode::UnknownContainer, 3),
            (ErrorCode::InvalidEnvironmentVariables, 4),
            (ErrorCode::IoFailure, 5),
            (ErrorCode::DecodingFailure, 6),
            (ErrorCode::InvalidNetworkConfig, 7),
            (ErrorCode::TryAgainLater, 11),
            (ErrorCode::PluginNotAvailable, 50),
            (ErrorCode::PluginNotAvailableLimitedConnectivity, 51),
            (ErrorCode::Internal, 999),
        ];
        for (code, n) in all {
            assert_eq!(code.code(), n);
            assert_eq!(ErrorCode::from_code(n), code);
        }
        for n in [0, 8, 12, 49, 52, 100, 4242] {
            assert_eq!(ErrorCode::from_code(n), ErrorCode::Other(n));
            assert_eq!(ErrorCode::Other(n).code(), n);
        }
    }

    #[test]
    fn error_json_matches_the_spec_golden_form() {
        let e = CniError::new(
            ErrorCode::IncompatibleCniVersion,
            "incompatible CNI versions",
        )
        .with_details("config is \"0.5.0\", plugin supports [\"1.0.0\"]")
        .with_version(Version::V1_0_0);
        let v: serde_json::Value = serde_json::from_slice(&e.to_json()).unwrap();
        assert_eq!(
            v,
            serde_json::json!({
                "cniVersion": "1.0.0",
                "code": 1,
                "msg": "incompatible CNI versions",
                "details": "config is \"0.5.0\", plugin supports [\"1.0.0\"]"
            })
        );
    }

    #[test]
    fn error_without_details_or_version_omits_them() {
        let e = CniError::new(ErrorCode::DecodingFailure, "bad JSON");
        assert_eq!(
            serde_json::to_string(&e).unwrap(),
            r#"{"code":6,"msg":"bad JSON"}"#
        );
    }

    #[test]
    fn reads_libcni_error_without_version() {
        let e: CniError =
            serde_json::from_str(r#"{"code":7,"msg":"invalid","details":"x"}"#).unwrap();
        assert_eq!(e.code, ErrorCode::InvalidNetworkConfig);
        assert_eq!(e.cni_version, None);
        assert_eq!(e.details, "x");
    }

    #[test]
    fn plugin_codes_are_at_least_100() {
        assert_eq!(CniError::plugin(5, "x").code, ErrorCode::Other(100));
        assert!(CniError::plugin(150, "x").code.is_plugin_specific());
    }
}
