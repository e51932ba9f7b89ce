//! Async Linux netlink for overlay datapaths.
//!
//! `overlay-netlink` programs the kernel: links, veth pairs, bridges, VXLAN
//! devices, addresses, routes, neighbours, bridge FDB entries and network
//! namespaces. It depends only on `overlay-core`:
//!
//! ```text
//! examples -> { overlay-cni, overlay-gossip, overlay-ipam, overlay-netlink } -> overlay-core
//! ```
//!
//! It is built on `netlink-packet-route` and `netlink-sys` behind a small
//! transport trait, so that unit tests run against a recording fake without
//! root.
//!
//! ```
//! // Interface names are at most 15 bytes on Linux.
//! assert!("vxlan-overlay".len() <= 15);
//! ```
#![cfg_attr(docsrs, feature(doc_cfg))]
#![warn(missing_docs)]
