//! Fuzz the ipv4 codec: see `overlay_fuzz::ipv4` for what is checked.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| overlay_fuzz::ipv4(data));
