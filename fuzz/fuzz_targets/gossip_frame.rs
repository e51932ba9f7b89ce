//! Fuzz overlay-gossip: see `overlay_gossip::fuzzing::frames` for what is
//! checked.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| overlay_gossip::fuzzing::frames(data));
