//! Shared types, traits and zero-copy encapsulation codecs for overlay networks.
//!
//! `overlay-core` sits at the bottom of the dependency graph of the overlay SDK:
//!
//! ```text
//! examples -> { overlay-cni, overlay-gossip, overlay-ipam, overlay-netlink } -> overlay-core
//! ```
//!
//! It does no I/O. It holds what every other crate shares: peer identities, MAC
//! addresses, IP networks (through [`ipnet`]), and the wire codecs for the outer
//! headers of an overlay packet (Ethernet, IPv4, IPv6, UDP) and for the
//! encapsulations themselves (VXLAN, Geneve), written as zero-copy views over
//! caller-owned buffers.
//!
//! ```
//! // The crate is a plain library: depend on it and use its types.
//! let net: ipnet::IpNet = "10.32.0.0/12".parse().unwrap();
//! assert_eq!(net.prefix_len(), 12);
//! ```
#![cfg_attr(docsrs, feature(doc_cfg))]
#![warn(missing_docs)]
