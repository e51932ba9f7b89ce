//! Fuzz the ipv6 codec: see `overlay_fuzz::ipv6` for what is checked.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| overlay_fuzz::ipv6(data));
