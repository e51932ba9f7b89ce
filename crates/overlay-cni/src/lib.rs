//! The Container Network Interface, versions 0.3.0 to 1.1.0.
//!
//! `overlay-cni` implements both sides of CNI: the plugin side (types, a
//! runner that reads the `CNI_*` environment and stdin, IPAM delegation) and
//! the runtime side (conflists, chains, libcni-compatible result cache, GC and
//! STATUS). It depends only on `overlay-core`:
//!
//! ```text
//! examples -> { overlay-cni, overlay-gossip, overlay-ipam, overlay-netlink } -> overlay-core
//! ```
//!
//! ```
//! // CNI configuration is JSON.
//! let conf: serde_json::Value =
//!     serde_json::from_str(r#"{"cniVersion":"1.1.0","name":"net","type":"overlay"}"#).unwrap();
//! assert_eq!(conf["cniVersion"], "1.1.0");
//! ```
#![cfg_attr(docsrs, feature(doc_cfg))]
#![warn(missing_docs)]
