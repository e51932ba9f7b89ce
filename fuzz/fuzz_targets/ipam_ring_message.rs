//! Fuzz the IPAM ring's node messages: see `overlay_fuzz::ipam_ring_message`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| overlay_fuzz::ipam_ring_message(data));
