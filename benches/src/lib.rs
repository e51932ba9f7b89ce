//! Criterion benchmarks for the overlay SDK.
//!
//! Each benchmark measures our code and a named peer (another crate, a
//! hand-written floor, or a reference tool) in the same run, so that results
//! are read as ratios on a shared, noisy machine. Run them with
//! `cargo bench -p overlay-benches`.

pub mod cluster;
