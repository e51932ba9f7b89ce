//! Checks the fuzz targets in the repository's `fuzz/` crate run on
//! arbitrary bytes. Not a stable API.

use std::net::SocketAddr;
use std::time::Duration;

use foca::Codec;
use overlay_core::PeerId;
use rand::SeedableRng;
use rand::rngs::SmallRng;

use crate::swim::SwimCodec;
use crate::wire::{Frame, parse_frames};
use crate::{Config, Gossip, PeerRecord};

/// Frames: parsing never panics and every frame it accepts re-emits into
/// bytes that parse to the same frame.
pub fn frames(data: &[u8]) {
    for frame in parse_frames(data).flatten() {
        let mut out = Vec::new();
        frame.emit(&mut out).expect("a parsed frame emits");
        assert_eq!(Frame::parse(&out), Ok(frame), "frame round trip");
    }
}

/// Records: parsing never panics; what parses re-emits byte-exact.
pub fn record(data: &[u8]) {
    if let Ok(r) = PeerRecord::parse(data) {
        let mut out = Vec::new();
        r.emit(&mut out).expect("a parsed record emits");
        assert_eq!(out, data, "record not byte-exact");
    }
}

/// SWIM payloads: header and members decode without panicking and re-encode
/// to what decodes the same.
pub fn swim(data: &[u8]) {
    let mut buf = data;
    let Ok(h) = SwimCodec.decode_header(&mut buf) else {
        return;
    };
    let mut out = Vec::new();
    SwimCodec
        .encode_header(&h, &mut out)
        .expect("a decoded header encodes");
    assert_eq!(
        SwimCodec.decode_header(&out[..]).ok(),
        Some(h),
        "header round trip"
    );
    while !buf.is_empty() {
        let Ok(m) = SwimCodec.decode_member(&mut buf) else {
            return;
        };
        let mut out = Vec::new();
        SwimCodec
            .encode_member(&m, &mut out)
            .expect("a decoded member encodes");
        assert_eq!(SwimCodec.decode_member(&out[..]).ok(), Some(m));
    }
}

/// The whole core: any datagram, with or without a sender key, at any time,
/// never panics and never makes the core emit an oversized datagram.
pub fn core(data: &[u8]) {
    let mut me = PeerRecord::new(PeerId::from_u128(1));
    me.underlay = vec![SocketAddr::from(([192, 0, 2, 1], 7946))];
    let mut g = Gossip::new(Config::new(me), &mut SmallRng::seed_from_u64(1));
    let ch = g.register_channel("fuzz").expect("valid name");
    let from = SocketAddr::from(([192, 0, 2, 2], 7946));
    let key = data.first().map(|&b| [b; 32]);
    let mut now = Duration::ZERO;
    for chunk in data.split(|&b| b == 0xfe) {
        g.handle_datagram(now, from, key, chunk);
        now += Duration::from_millis(150);
        g.handle_timeout(now);
        let _ = g.broadcast(now, ch, chunk);
        while let Some(t) = g.poll_transmit() {
            assert!(t.payload.len() <= crate::wire::MAX_DATAGRAM_LEN);
            for f in parse_frames(&t.payload) {
                assert!(f.is_ok(), "the core emitted an invalid frame");
            }
        }
        while g.poll_event().is_some() {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::Message;

    #[test]
    fn checks_pass_on_valid_inputs() {
        let mut r = PeerRecord::new(PeerId::from_u128(2));
        r.underlay = vec![SocketAddr::from(([192, 0, 2, 2], 7946))];
        let mut rb = Vec::new();
        r.emit(&mut rb).unwrap();
        record(&rb);
        let mut dgram = Vec::new();
        Frame::new(PeerId::from_u128(2), Message::Join(r.clone()))
            .emit(&mut dgram)
            .unwrap();
        Frame::new(PeerId::from_u128(2), Message::Records(vec![r]))
            .emit(&mut dgram)
            .unwrap();
        frames(&dgram);
        core(&dgram);
        core(b"\xfe\xfe garbage");
        swim(&[0; 64]);
    }
}
