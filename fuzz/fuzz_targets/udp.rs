//! Fuzz the udp codec: see `overlay_fuzz::udp` for what is checked.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| overlay_fuzz::udp(data));
