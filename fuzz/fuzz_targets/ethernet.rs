//! Fuzz the ethernet codec: see `overlay_fuzz::ethernet` for what is checked.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| overlay_fuzz::ethernet(data));
