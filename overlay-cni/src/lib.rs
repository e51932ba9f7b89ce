//! The Container Network Interface, versions 0.1.0 to 1.1.0, both sides.
//!
//! `overlay-cni` implements what a CNI plugin and a CNI runtime need, with
//! libcni's behaviour where the spec leaves room:
//!
//! - [`config`]: network configurations and conflists, every field of spec
//!   1.1.0, unknown fields preserved;
//! - [`result`]: results for every version and libcni's conversion rules;
//! - [`error`]: the error object and its codes;
//! - [`version`]: versions, negotiation and the `VERSION` answer;
//! - [`args`]: `CNI_ARGS` with the reference plugins' rules (`IgnoreUnknown`);
//! - [`validate`]: network name, container ID and interface name rules;
//! - [`plugin`]: the plugin runner (Go's `skel`), the [`plugin::Plugin`] trait
//!   and the names derived from an attachment (host veth, container MAC);
//! - [`delegate`]: IPAM delegation;
//! - [`ipam`]: a plugin's IPAM behind one trait ([`ipam::Ipam`]), with the
//!   release-on-failure [`ipam::Lease`];
//! - [`exec`]: finding and running plugin executables;
//! - [`runtime`]: loading conflists, running chains, GC and STATUS;
//! - [`cache`]: libcni's on-disk result cache.
//!
//! It sits beside the other overlay crates:
//!
//! ```text
//! examples -> overlay-plugin -> { overlay-cni, overlay-netlink, overlay-ipam } -> overlay-core
//! ```
//!
//! It never depends on `overlay-netlink` (plugin building blocks that need
//! both live in `overlay-plugin`); `overlay-ipam` implements [`ipam::Ipam`]
//! for its in-process `host-local` through its `host-local` feature.
//!
//! A plugin is a `main` that calls [`plugin::run`]:
//!
//! ```
//! use overlay_cni::error::{CniError, ErrorCode};
//! use overlay_cni::plugin::{Plugin, Request};
//! use overlay_cni::result::{CniResult, Interface};
//!
//! struct Loopback;
//!
//! impl Plugin for Loopback {
//!     fn add(&self, req: &Request) -> Result<CniResult, CniError> {
//!         let mut result = CniResult::new(req.version);
//!         result.interfaces.push(Interface::new("lo"));
//!         Ok(result)
//!     }
//!     fn del(&self, _req: &Request) -> Result<(), CniError> {
//!         Ok(()) // idempotent: nothing to release
//!     }
//!     fn check(&self, req: &Request) -> Result<(), CniError> {
//!         match req.prev_result() {
//!             Some(Ok(_)) => Ok(()),
//!             _ => Err(CniError::new(ErrorCode::InvalidNetworkConfig, "prevResult missing")),
//!         }
//!     }
//! }
//!
//! // In a binary: `fn main() { overlay_cni::plugin::run(&Loopback) }`.
//! let env = [("CNI_COMMAND", "VERSION")]
//!     .into_iter()
//!     .map(|(k, v)| (k.to_owned(), v.to_owned()))
//!     .collect();
//! let out = overlay_cni::plugin::dispatch(&Loopback, &env, b"");
//! assert_eq!(out.exit_code, 0);
//! ```
#![cfg_attr(docsrs, feature(doc_cfg))]
#![warn(missing_docs)]

pub mod args;
pub mod cache;
pub mod config;
pub mod delegate;
pub mod error;
pub mod exec;
pub mod ipam;
pub mod plugin;
pub mod result;
pub mod runtime;
pub mod validate;
pub mod version;

pub use config::{NetworkConfig, NetworkConfigList};
pub use error::{CniError, ErrorCode};
pub use plugin::{Plugin, Request};
pub use result::CniResult;
pub use version::Version;
