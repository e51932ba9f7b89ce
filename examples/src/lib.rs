//! Example binaries for the overlay SDK.
//!
//! The binaries in `src/bin/` only wire the library crates together; anything
//! reusable lives in a crate.

pub mod agent;
pub mod cluster;
pub mod demo;
