//! Peer-to-peer topology gossip for overlay networks.
//!
//! `overlay-gossip` will keep every peer's view of the cluster topology. It
//! has no code yet and so no dependencies; when it does, it depends only on
//! `overlay-core`:
//!
//! ```text
//! examples -> { overlay-cni, overlay-gossip, overlay-ipam, overlay-netlink } -> overlay-core
//! ```
//!
//! The protocol is a sans-IO state machine (peer records, versioned merge,
//! route computation, named channels) with time passed in; a thin tokio driver
//! owns the sockets. A deterministic simulator drives thousands of peers in
//! tests and benchmarks.
//!
//! ```
//! // Time is always passed in; the crate never reads the wall clock itself.
//! let now = std::time::Duration::from_millis(1500);
//! assert_eq!(now.as_secs(), 1);
//! ```
//!
//! # Security
//! [`secure`] wraps every gossip datagram in Noise (`XXpsk3` to join through
//! a seed address, `IKpsk2` between peers whose static keys are known) with a
//! cluster key derived from a password (Argon2id) or a key file (HKDF), a
//! replay window and per-reason counters of rejected datagrams. Without a
//! password the explicit unencrypted mode frames gossip in plain text and
//! status reports `Security::Unencrypted`.
#![cfg_attr(docsrs, feature(doc_cfg))]
#![warn(missing_docs)]

pub mod secure;
