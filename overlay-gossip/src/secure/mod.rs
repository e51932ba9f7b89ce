//! The secure layer: Noise sessions between gossip peers, sans-IO.
//!
//! Gossip and SWIM messages from the core are byte frames for a socket
//! address. This layer sits between the core and the UDP socket: it wraps
//! every frame in an authenticated, encrypted datagram ([`SecureLayer::seal`])
//! and unwraps received ones ([`SecureLayer::open`]), reporting the sender's
//! static key, which the core binds to the sender's `PeerId`.
//!
//! # Keys
//! * The **cluster key** ([`Psk`]) is mixed into every handshake: derived
//!   from a password with Argon2id (salt `"overlay/psk/v1:" ‖ cluster_id`,
//!   m = 64 MiB, t = 3, p = 1 by default, [`PskParams`]) or from a key file
//!   with HKDF-SHA256. A peer without it cannot complete a handshake, so it
//!   cannot join, read or inject gossip.
//! * Each peer's **static key** ([`StaticKeypair`], X25519) is its identity.
//!
//! # Handshakes
//! `Noise_XXpsk3_25519_ChaChaPoly_BLAKE2s` to an address whose static key is
//! unknown (joining through a seed), `Noise_IKpsk2_25519_ChaChaPoly_BLAKE2s`
//! to a peer whose static key is known from gossip
//! ([`SecureLayer::learn_static`]) or from an earlier handshake. An IKpsk2
//! initiation carries a timestamp, and a responder refuses one that is not
//! newer than the last from the same key (a captured initiation cannot be
//! replayed). Handshake responses are rate limited per source address and
//! globally ([`RateLimit`]), so a flood of initiations cannot burn CPU.
//!
//! # Transport
//! After the handshake every datagram is `header ‖ ChaChaPoly(frame)` with an
//! explicit 64-bit counter as the nonce (snow's `StatelessTransportState`,
//! UDP may reorder and lose). A 2,048-bit sliding window ([`ReplayWindow`],
//! committed only after the tag verified) refuses replays and counters too
//! far behind; tampered datagrams fail the tag. Every drop is counted by
//! reason ([`RejectCounters`]). Sessions rekey by a new handshake after
//! [`SecureConfig::rekey_after_time`] or
//! [`SecureConfig::rekey_after_messages`]. The envelope layout is in
//! [`Frame`].
//!
//! # Unencrypted mode
//! Only when no password or key is configured ([`SecureLayer::unencrypted`]):
//! frames travel as [`Frame::Plain`], [`SecureLayer::security`] reports
//! [`Security::Unencrypted`], and the two modes refuse each other's datagrams
//! ([`Reject::SecurityMismatch`]).

mod config;
mod frame;
mod keys;
mod limit;
mod replay;
mod session;
mod transport;

pub use config::{
    Datagram, Opened, Reject, RejectCounters, SealError, SecureConfig, SecureStats, Security,
};
pub use frame::{
    Frame, FrameError, MAX_HANDSHAKE_LEN, Pattern, TAG_LEN, TRANSPORT_OVERHEAD, VERSION,
};
pub use keys::{
    KEY_FILE_INFO, KEY_LEN, MIN_KEY_FILE_LEN, PASSWORD_SALT_PREFIX, Psk, PskError, PskParams,
    StaticKeypair,
};
pub use limit::RateLimit;
pub use replay::{ReplayError, ReplayWindow, WINDOW_SIZE};
pub use session::{MAX_PLAINTEXT, SecureLayer};

#[cfg(test)]
mod sim_tests;
#[cfg(test)]
mod tests;
