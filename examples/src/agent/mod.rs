//! The node agent `overlayd`'s parts that are specific to this reference
//! plugin (its store and its HTTP status API); the protocol logic it runs
//! lives in the crates (`overlay-gossip`, `overlay_ipam::ring`,
//! `overlay_ipam::agent`, `overlay_netlink::overlay`).

pub mod client;
pub mod config;
pub mod daemon;
pub mod http;
pub mod metrics;
pub mod report;
pub mod status;
pub mod store;
