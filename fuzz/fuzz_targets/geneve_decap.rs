//! Fuzz geneve decapsulation of whole frames: see `overlay_fuzz::geneve_decap`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| overlay_fuzz::geneve_decap(data));
