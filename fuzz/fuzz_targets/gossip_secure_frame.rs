//! Fuzz the gossip secure envelope codec (`overlay_gossip::secure::Frame`):
//! `parse` never panics; whatever it accepts emits into exactly
//! `buffer_len()` bytes, byte-exact, and parses again to the same frame.
#![no_main]

use overlay_gossip::secure::Frame;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let Ok(frame) = Frame::parse(data) else {
        return;
    };
    let mut out = vec![0u8; frame.buffer_len()];
    let n = frame.emit(&mut out).expect("a parsed frame emits into buffer_len bytes");
    assert_eq!(n, out.len());
    assert_eq!(out, data, "the envelope re-emits byte-exact");
    assert_eq!(Frame::parse(&out), Ok(frame));
});
