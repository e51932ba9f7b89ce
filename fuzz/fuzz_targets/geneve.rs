//! Fuzz the geneve codec: see `overlay_fuzz::geneve` for what is checked.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| overlay_fuzz::geneve(data));
