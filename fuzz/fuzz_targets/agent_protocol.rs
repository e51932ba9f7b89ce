//! Fuzz the node agent's socket protocol: see `overlay_fuzz::agent_protocol`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| overlay_fuzz::agent_protocol(data));
