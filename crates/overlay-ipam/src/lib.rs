//! IP address management for overlay networks.
//!
//! `overlay-ipam` hands out pod addresses. It depends only on `overlay-core`
//! and does no I/O except through its store:
//!
//! ```text
//! examples -> { overlay-cni, overlay-gossip, overlay-ipam, overlay-netlink } -> overlay-core
//! ```
//!
//! It will hold range and bitmap allocators, a store compatible with the
//! reference `host-local` plugin, and a distributed ring of address ranges
//! owned by peers (a CRDT that merges, donates space and reclaims the space of
//! dead peers safely).
//!
//! ```
//! // Addresses are IPv4 and IPv6 alike throughout the SDK.
//! let range: ipnet::IpNet = "fd00:10::/64".parse().unwrap();
//! assert!(range.contains(&"fd00:10::1".parse::<std::net::IpAddr>().unwrap()));
//! ```
#![cfg_attr(docsrs, feature(doc_cfg))]
#![warn(missing_docs)]
