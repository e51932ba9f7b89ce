//! The plugin side: a runner that turns a process invocation into a call on
//! a [`Plugin`] (the equivalent of Go's `skel`).
//!
//! [`run`] reads the `CNI_*` environment and stdin, validates them as libcni's
//! runner does, negotiates the version, calls the plugin, prints the result
//! (converted to the configuration's version) or the error JSON on stdout,
//! and exits with status 0 or 1. [`dispatch`] is the same logic without the
//! process around it, for tests.
//!
//! | check | error code |
//! |-------|------------|
//! | `CNI_COMMAND` or a variable the command needs is missing | 4 |
//! | unknown `CNI_COMMAND` | 4 |
//! | stdin is not a JSON object, or a field has the wrong type | 6 |
//! | network name missing or invalid | 7 |
//! | container ID empty / invalid (ADD, DEL, CHECK) | 3 / 4 |
//! | `CNI_IFNAME` invalid (ADD, DEL, CHECK) | 4 |
//! | `cniVersion` not supported by the plugin | 1 |
//! | `CHECK` below 0.4.0, `GC` or `STATUS` below 1.1.0 | 1 |
//!
//! Variables required per command: `ADD` and `CHECK` need `CNI_CONTAINERID`,
//! `CNI_NETNS`, `CNI_IFNAME` and `CNI_PATH`; `DEL` the same except
//! `CNI_NETNS`; `GC` and `STATUS` need `CNI_PATH`; `VERSION` needs nothing.
//!
//! ```
//! use std::collections::HashMap;
//! use overlay_cni::error::CniError;
//! use overlay_cni::plugin::{dispatch, Plugin, Request};
//! use overlay_cni::result::{CniResult, IpConfig};
//!
//! struct Static;
//! impl Plugin for Static {
//!     fn add(&self, req: &Request) -> Result<CniResult, CniError> {
//!         let mut result = CniResult::new(req.version);
//!         result.ips.push(IpConfig::new("198.51.100.7/24".parse().unwrap()));
//!         Ok(result)
//!     }
//!     fn del(&self, _req: &Request) -> Result<(), CniError> { Ok(()) }
//!     fn check(&self, _req: &Request) -> Result<(), CniError> { Ok(()) }
//! }
//!
//! let env: HashMap<String, String> = [
//!     ("CNI_COMMAND", "ADD"), ("CNI_CONTAINERID", "c1"), ("CNI_NETNS", "/run/netns/p"),
//!     ("CNI_IFNAME", "eth0"), ("CNI_PATH", "/opt/cni/bin"),
//! ].into_iter().map(|(k, v)| (k.to_owned(), v.to_owned())).collect();
//! let out = dispatch(&Static, &env, br#"{"cniVersion":"0.4.0","name":"n","type":"static"}"#);
//! assert_eq!(out.exit_code, 0);
//! let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
//! assert_eq!(json["ips"][0]["version"], "4"); // converted to the config's 0.4.0
//! ```

mod attachment;
mod request;
mod runner;

pub use attachment::{attachment_hash, container_mac, host_veth_name};
pub use request::{CniEnv, Command, Request, UnknownCommand};
pub use runner::{Output, dispatch, dispatch_with, run};

use crate::config::GcAttachment;
use crate::error::CniError;
use crate::result::CniResult;
use crate::version::{SUPPORTED_VERSIONS, Version};

/// A CNI plugin: one method per command.
///
/// A plugin is a short-lived process, so the trait is synchronous. The runner
/// has validated the environment and the configuration before any method is
/// called, and converts [`Plugin::add`]'s result to the configuration's
/// version itself (build it in any version, [`Request::version`] is simplest).
///
/// ```
/// use overlay_cni::{CniError, CniResult, ErrorCode, Plugin, Request, Version};
///
/// /// A plugin that only speaks 1.x and reports itself unavailable.
/// struct Draining;
/// impl Plugin for Draining {
///     fn supported_versions(&self) -> &[Version] { &[Version::V1_0_0, Version::V1_1_0] }
///     fn add(&self, _: &Request) -> Result<CniResult, CniError> {
///         Err(CniError::new(ErrorCode::TryAgainLater, "node is draining"))
///     }
///     fn del(&self, _: &Request) -> Result<(), CniError> { Ok(()) }
///     fn check(&self, _: &Request) -> Result<(), CniError> { Ok(()) }
///     fn status(&self, _: &Request) -> Result<(), CniError> {
///         Err(CniError::new(ErrorCode::PluginNotAvailable, "node is draining"))
///     }
/// }
/// let env = [("CNI_COMMAND", "STATUS"), ("CNI_PATH", "/opt/cni/bin")]
///     .into_iter().map(|(k, v)| (k.to_owned(), v.to_owned())).collect();
/// let out = overlay_cni::plugin::dispatch(&Draining, &env, br#"{"cniVersion":"1.1.0","name":"n","type":"d"}"#);
/// assert_eq!(out.exit_code, 1);
/// assert_eq!(out.cni_error().unwrap().code, ErrorCode::PluginNotAvailable);
/// ```
pub trait Plugin {
    /// The versions this plugin accepts; every version this crate implements by default.
    fn supported_versions(&self) -> &[Version] {
        SUPPORTED_VERSIONS
    }

    /// A one-line description printed on stderr when run without `CNI_COMMAND`.
    /// `None` makes that case an error (code 4).
    fn about(&self) -> Option<&str> {
        None
    }

    /// `ADD`: attach the container and return the result.
    fn add(&self, req: &Request) -> Result<CniResult, CniError>;

    /// `DEL`: detach the container and release its resources.
    ///
    /// **DEL is idempotent by contract**: it must succeed when called twice,
    /// when `ADD` never ran or failed half-way, and when the network namespace
    /// ([`Request::netns`] may be `None`) or the interface is already gone.
    /// Release what can be released and return `Ok`.
    fn del(&self, req: &Request) -> Result<(), CniError>;

    /// `CHECK`: verify the attachment described by `prevResult` (0.4.0 and later).
    fn check(&self, req: &Request) -> Result<(), CniError>;

    /// `STATUS` (1.1.0): `Ok` when ready to serve `ADD`; otherwise an error
    /// with code 50 or 51. Ready by default.
    fn status(&self, req: &Request) -> Result<(), CniError> {
        let _ = req;
        Ok(())
    }

    /// `GC` (1.1.0): release resources of every attachment of this network
    /// that is not in `valid` (read from `cni.dev/valid-attachments` or
    /// `cni.dev/attachments`; empty when the runtime sent neither, as in
    /// libcni). Nothing to collect by default.
    fn gc(&self, req: &Request, valid: &[GcAttachment]) -> Result<(), CniError> {
        let _ = (req, valid);
        Ok(())
    }
}
