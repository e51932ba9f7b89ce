//! `CNI_ARGS` with the rules of the reference plugins' `types.LoadArgs`.
//!
//! `CNI_ARGS` is a `;`-separated list of `KEY=VALUE` pairs. A plugin names
//! the keys it knows; any other key is refused unless the pair
//! `IgnoreUnknown` is `1` or `true` (any case), as the reference plugins do
//! (`types.LoadArgs(envArgs, &BridgeArgs{})` and the like). The syntax is
//! Go's, exactly: every pair holds exactly one `=` (so an empty pair, as
//! after a trailing `;`, is invalid), and an empty string holds no pairs.
//! [`ArgsError`] converts into the [`CniError`] the reference plugins print
//! for the same input: code 999 with the same message.
//!
//! This is the crate's one `CNI_ARGS` parser: plugins call it through
//! [`crate::plugin::Request::load_args`], and `overlay-ipam`'s in-process
//! `host-local` through [`CniArgs::load`] with its own keys (`IP`).
//!
//! ```
//! use overlay_cni::args::CniArgs;
//!
//! let args = CniArgs::load("IgnoreUnknown=1;K8S_POD_NAME=web;MAC=02:00:00:00:00:01", &["MAC"]).unwrap();
//! assert_eq!(args.get("MAC"), Some("02:00:00:00:00:01"));
//! assert!(args.ignore_unknown());
//!
//! let err = CniArgs::load("K8S_POD_NAME=web", &["MAC"]).unwrap_err();
//! assert_eq!(err.to_string(), r#"ARGS: unknown args ["K8S_POD_NAME=web"]"#);
//! let cni: overlay_cni::CniError = err.into();
//! assert_eq!(cni.code, overlay_cni::ErrorCode::Internal);
//! ```

use crate::error::{CniError, ErrorCode};

/// The key that lets unknown keys through.
pub const IGNORE_UNKNOWN: &str = "IgnoreUnknown";

/// Why `CNI_ARGS` was refused; the messages are the reference plugins'.
///
/// ```
/// use overlay_cni::args::{ArgsError, CniArgs};
///
/// assert!(matches!(CniArgs::load("a=b=c", &[]), Err(ArgsError::InvalidPair(p)) if p == "a=b=c"));
/// assert!(matches!(CniArgs::load("IP=192.0.2.9;", &["IP"]), Err(ArgsError::InvalidPair(p)) if p.is_empty()));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ArgsError {
    /// A pair without exactly one `=`.
    #[error("ARGS: invalid pair {0:?}")]
    InvalidPair(String),
    /// `IgnoreUnknown` is not a boolean (`1`, `true`, `0`, `false`, any case).
    #[error(
        "ARGS: error parsing value of pair {pair:?}: boolean unmarshal error: invalid input {value}"
    )]
    InvalidBool {
        /// The whole pair.
        pair: String,
        /// The value.
        value: String,
    },
    /// Keys the plugin does not know, without `IgnoreUnknown`: the whole pairs.
    #[error("ARGS: unknown args {0:?}")]
    Unknown(Vec<String>),
}

impl From<ArgsError> for CniError {
    /// Code 999, the reference plugins' code for these errors (their
    /// `skel` wraps a plain error as `ErrInternal`).
    fn from(e: ArgsError) -> CniError {
        CniError::new(ErrorCode::Internal, e.to_string())
    }
}

/// Parsed `CNI_ARGS`: the pairs of known keys, in order.
///
/// ```
/// let args = overlay_cni::args::CniArgs::load("", &[]).unwrap();
/// assert!(args.pairs().is_empty());
/// assert!(!args.ignore_unknown());
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CniArgs {
    pairs: Vec<(String, String)>,
    ignore_unknown: bool,
}

impl CniArgs {
    /// Parse `args`, keeping the keys in `known` (and `IgnoreUnknown`);
    /// other keys are an error unless `IgnoreUnknown` is true, and are
    /// dropped when it is. The first malformed pair or `IgnoreUnknown`
    /// value is reported before unknown keys, as `types.LoadArgs` does.
    ///
    /// ```
    /// use overlay_cni::args::CniArgs;
    ///
    /// let args = CniArgs::load("IP=192.0.2.9;IgnoreUnknown=TRUE;X=1", &["IP"]).unwrap();
    /// assert_eq!(args.pairs(), [("IP".to_owned(), "192.0.2.9".to_owned())]);
    /// assert!(CniArgs::load("IgnoreUnknown=yes", &[]).is_err());
    /// ```
    pub fn load(args: &str, known: &[&str]) -> Result<CniArgs, ArgsError> {
        let mut out = CniArgs::default();
        if args.is_empty() {
            return Ok(out);
        }
        let mut unknown = Vec::new();
        for pair in args.split(';') {
            let mut parts = pair.split('=');
            let (Some(key), Some(value), None) = (parts.next(), parts.next(), parts.next()) else {
                return Err(ArgsError::InvalidPair(pair.to_owned()));
            };
            if key == IGNORE_UNKNOWN {
                out.ignore_unknown = match value.to_ascii_lowercase().as_str() {
                    "1" | "true" => true,
                    "0" | "false" => false,
                    _ => {
                        return Err(ArgsError::InvalidBool {
                            pair: pair.to_owned(),
                            value: value.to_owned(),
                        });
                    }
                };
            } else if known.contains(&key) {
                out.pairs.push((key.to_owned(), value.to_owned()));
            } else {
                unknown.push(pair.to_owned());
            }
        }
        if !unknown.is_empty() && !out.ignore_unknown {
            return Err(ArgsError::Unknown(unknown));
        }
        Ok(out)
    }

    /// The value of `key` (the last one, when repeated).
    pub fn get(&self, key: &str) -> Option<&str> {
        self.pairs
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// The pairs of known keys, in order.
    pub fn pairs(&self) -> &[(String, String)] {
        &self.pairs
    }

    /// Whether `IgnoreUnknown` was true.
    pub fn ignore_unknown(&self) -> bool {
        self.ignore_unknown
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each case was run through Debian's reference `bridge` plugin 1.1.1
    /// (`CNI_ARGS` only, everything else valid); its message is the expected one.
    #[test]
    fn errors_match_the_reference_bridge_plugin_word_for_word() {
        let cases = [
            (
                "K8S_POD_NAME=web",
                r#"ARGS: unknown args ["K8S_POD_NAME=web"]"#,
            ),
            (
                "K8S_POD_NAME=web;IgnoreUnknown=0",
                r#"ARGS: unknown args ["K8S_POD_NAME=web"]"#,
            ),
            ("IP=192.0.2.9", r#"ARGS: unknown args ["IP=192.0.2.9"]"#),
            ("a", r#"ARGS: invalid pair "a""#),
            ("a=b=c", r#"ARGS: invalid pair "a=b=c""#),
            ("IP=192.0.2.9;", r#"ARGS: invalid pair """#),
            (
                "IgnoreUnknown=yes",
                r#"ARGS: error parsing value of pair "IgnoreUnknown=yes": boolean unmarshal error: invalid input yes"#,
            ),
        ];
        for (args, msg) in cases {
            let err = CniArgs::load(args, &["MAC"]).unwrap_err();
            assert_eq!(err.to_string(), msg, "{args}");
            let cni = CniError::from(err);
            assert_eq!(cni.code, ErrorCode::Internal, "{args}");
        }
    }

    #[test]
    fn ignore_unknown_lets_unknown_keys_through_in_any_position_and_case() {
        for args in [
            "IgnoreUnknown=1;K8S_POD_NAME=web",
            "K8S_POD_NAME=web;IgnoreUnknown=true",
            "K8S_POD_NAME=web;IgnoreUnknown=True",
        ] {
            let parsed = CniArgs::load(args, &[]).unwrap();
            assert!(parsed.ignore_unknown(), "{args}");
            assert!(parsed.pairs().is_empty(), "unknown keys dropped: {args}");
        }
        let last = CniArgs::load("MAC=a;MAC=b", &["MAC"]).unwrap();
        assert_eq!(last.get("MAC"), Some("b"));
        assert_eq!(last.get("IP"), None);
    }
}
