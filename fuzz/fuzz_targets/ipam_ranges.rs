//! Fuzz overlay-ipam's pool and port range texts: see
//! `overlay_fuzz::ipam_ranges` for what is checked.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| overlay_fuzz::ipam_ranges(data));
