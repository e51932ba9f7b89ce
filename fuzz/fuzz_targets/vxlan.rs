//! Fuzz the vxlan codec: see `overlay_fuzz::vxlan` for what is checked.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| overlay_fuzz::vxlan(data));
