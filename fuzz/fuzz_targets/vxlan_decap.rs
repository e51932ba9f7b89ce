//! Fuzz vxlan decapsulation of whole frames: see `overlay_fuzz::vxlan_decap`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| overlay_fuzz::vxlan_decap(data));
