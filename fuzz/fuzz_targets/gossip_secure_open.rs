//! Fuzz `overlay_gossip::secure::SecureLayer::open` with arbitrary datagrams:
//! an encrypted layer (with one established session, so transport frames
//! reach the replay window and the AEAD) and an unencrypted one never panic,
//! and the encrypted layer never yields plaintext from bytes that were not
//! sealed by its peer.
#![no_main]

use std::{
    net::SocketAddr,
    sync::{Mutex, OnceLock},
    time::Duration,
};

use overlay_gossip::secure::{Psk, SecureConfig, SecureLayer, StaticKeypair};
use rand::{SeedableRng, rngs::StdRng};

const A: SocketAddr = SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 1)), 7946);
const B: SocketAddr = SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 2)), 7946);
const NOW: Duration = Duration::from_secs(1);

struct Layers {
    secure: SecureLayer,
    plain: SecureLayer,
}

/// B holds a confirmed session with A (built once: key generation is slow).
fn layers() -> &'static Mutex<Layers> {
    static LAYERS: OnceLock<Mutex<Layers>> = OnceLock::new();
    LAYERS.get_or_init(|| {
        let mut rng = StdRng::seed_from_u64(1);
        let psk = Psk::from_key([1u8; 32], "fuzz").expect("32-byte key");
        let mut a = SecureLayer::encrypted(psk.clone(), StaticKeypair::generate(&mut rng), SecureConfig::default(), &mut rng);
        let mut b = SecureLayer::encrypted(psk, StaticKeypair::generate(&mut rng), SecureConfig::default(), &mut rng);
        let mut to_b = a.seal(NOW, B, b"hello").expect("small plaintext");
        while !to_b.is_empty() {
            let mut to_a = Vec::new();
            for d in to_b.drain(..) {
                to_a.extend(b.open(NOW, A, &d.bytes).expect("genuine handshake").replies);
            }
            for d in to_a {
                to_b.extend(a.open(NOW, B, &d.bytes).expect("genuine handshake").replies);
            }
        }
        assert!(b.has_session(NOW, A));
        let plain = SecureLayer::unencrypted(SecureConfig::default(), &mut rng);
        Mutex::new(Layers { secure: b, plain })
    })
}

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let mut layers = layers().lock().unwrap_or_else(|e| e.into_inner());
    if let Ok(opened) = layers.secure.open(NOW, A, data) {
        assert!(opened.plaintext.is_none(), "plaintext from bytes A never sealed");
    }
    let _ = layers.plain.open(NOW, A, data);
});
