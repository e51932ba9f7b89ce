//! The parts of `overlay-demo` that are more than wiring: taking the stop
//! signals ([`signals`]), capturing the underlay and decoding what crossed it
//! ([`capture`]), and the tables and help it prints ([`report`]).
//!
//! The demo binary puts them together with [`crate::cluster`]; each piece is
//! tested here on its own.

pub mod capture;
pub mod report;
pub mod signals;
