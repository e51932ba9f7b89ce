//! The secure layer's configuration, counters and results.

use std::{net::SocketAddr, time::Duration};

#[cfg(doc)]
use super::session::SecureLayer;
use super::{frame::FrameError, keys::KEY_LEN, limit::RateLimit, session::MAX_PLAINTEXT};

/// Whether gossip is encrypted. Status reports show it, so an unencrypted
/// cluster is never mistaken for a protected one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Security {
    /// Every datagram after a Noise handshake is encrypted and authenticated
    /// with the cluster key.
    Encrypted,
    /// No password or key is configured: gossip travels in plain text and
    /// anyone who can reach the port can join.
    Unencrypted,
}

/// Timers and bounds of the secure layer. The defaults follow WireGuard's
/// timers where they apply.
///
/// ```
/// use std::time::Duration;
/// use overlay_gossip::secure::{RateLimit, SecureConfig};
///
/// let mut config = SecureConfig::default();
/// config.handshake_timeout = Duration::from_secs(1);
/// config.handshake_rate_per_source = RateLimit::new(20, 5);
/// assert_eq!(config.handshake_attempts, 5);
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct SecureConfig {
    /// How long an initiator waits for the answer (or, after XXpsk3, for the
    /// responder's confirmation) before it retries, and how long a responder
    /// keeps a half-done handshake.
    pub handshake_timeout: Duration,
    /// Handshake attempts before the queued plaintext for a peer is dropped.
    /// The next [`SecureLayer::seal`] to that peer starts over.
    pub handshake_attempts: u32,
    /// A new handshake starts when the current session is this old; the old
    /// session keeps working until the new one is confirmed.
    pub rekey_after_time: Duration,
    /// A session is dropped when it is this old.
    pub reject_after_time: Duration,
    /// A new handshake starts after this many datagrams sent on a session.
    pub rekey_after_messages: u64,
    /// When datagrams were sent on a session but nothing came back for this
    /// long, a new handshake starts (the peer may have restarted and lost
    /// its keys).
    pub stale_after: Duration,
    /// Plaintext datagrams queued per peer while a handshake runs; beyond
    /// it the oldest is dropped.
    pub max_queued_per_peer: usize,
    /// Plaintext bytes queued per peer while a handshake runs.
    pub max_queued_bytes_per_peer: usize,
    /// Remote addresses the table keeps state for.
    pub max_peers: usize,
    /// Handshake responses to one source IP address.
    pub handshake_rate_per_source: RateLimit,
    /// Handshake responses in total.
    pub handshake_rate_global: RateLimit,
    /// Wall-clock time at `now == 0`, since the Unix epoch. Handshakes carry
    /// `wall_clock_at_zero + now` as a timestamp and a responder refuses an
    /// IKpsk2 initiation that is not newer than the last one from the same
    /// static key, so a captured initiation cannot be replayed. The driver
    /// sets it from the system clock; simulations leave it at zero.
    pub wall_clock_at_zero: Duration,
}

impl Default for SecureConfig {
    fn default() -> Self {
        Self {
            handshake_timeout: Duration::from_secs(5),
            handshake_attempts: 5,
            rekey_after_time: Duration::from_secs(120),
            reject_after_time: Duration::from_secs(180),
            rekey_after_messages: 1 << 60,
            stale_after: Duration::from_secs(15),
            max_queued_per_peer: 64,
            max_queued_bytes_per_peer: 256 * 1024,
            max_peers: 16_384,
            handshake_rate_per_source: RateLimit::new(10, 20),
            handshake_rate_global: RateLimit::new(500, 1000),
            wall_clock_at_zero: Duration::ZERO,
        }
    }
}

/// Why a datagram was dropped. Each reason has a counter in
/// [`RejectCounters`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Reject {
    /// Not a valid envelope.
    #[error("malformed datagram: {0}")]
    Malformed(FrameError),
    /// A plain frame while encrypted, or a handshake or encrypted frame in
    /// the unencrypted mode.
    #[error("security mode mismatch")]
    SecurityMismatch,
    /// No session (or half-done handshake) with that index from that address,
    /// or the session expired.
    #[error("unknown session")]
    UnknownSession,
    /// The counter (or an IKpsk2 initiation's timestamp) was seen before.
    #[error("replayed datagram")]
    Replayed,
    /// The counter is behind the replay window.
    #[error("counter behind the replay window")]
    TooOld,
    /// The AEAD tag did not verify: the datagram was tampered with or forged.
    #[error("authentication failed")]
    BadMac,
    /// A handshake message did not verify (a wrong cluster key, a changed
    /// static key or a forged message).
    #[error("handshake failed")]
    HandshakeFailed,
    /// Handshake work refused by the rate limits or the table bounds.
    #[error("rate limited")]
    RateLimited,
}

/// Counters of dropped datagrams, by [`Reject`] reason.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct RejectCounters {
    /// [`Reject::Malformed`].
    pub malformed: u64,
    /// [`Reject::SecurityMismatch`].
    pub security_mismatch: u64,
    /// [`Reject::UnknownSession`].
    pub unknown_session: u64,
    /// [`Reject::Replayed`].
    pub replayed: u64,
    /// [`Reject::TooOld`].
    pub too_old: u64,
    /// [`Reject::BadMac`].
    pub bad_mac: u64,
    /// [`Reject::HandshakeFailed`].
    pub handshake_failed: u64,
    /// [`Reject::RateLimited`].
    pub rate_limited: u64,
}

impl RejectCounters {
    pub(crate) fn count(&mut self, reason: Reject) {
        let c = match reason {
            Reject::Malformed(_) => &mut self.malformed,
            Reject::SecurityMismatch => &mut self.security_mismatch,
            Reject::UnknownSession => &mut self.unknown_session,
            Reject::Replayed => &mut self.replayed,
            Reject::TooOld => &mut self.too_old,
            Reject::BadMac => &mut self.bad_mac,
            Reject::HandshakeFailed => &mut self.handshake_failed,
            Reject::RateLimited => &mut self.rate_limited,
        };
        *c += 1;
    }

    /// The sum of all counters.
    pub fn total(&self) -> u64 {
        self.malformed
            + self.security_mismatch
            + self.unknown_session
            + self.replayed
            + self.too_old
            + self.bad_mac
            + self.handshake_failed
            + self.rate_limited
    }
}

/// Counters of the secure layer.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct SecureStats {
    /// Datagrams sealed and sent (not counting handshakes and keepalives).
    pub sealed: u64,
    /// Datagrams opened that carried a gossip payload.
    pub opened: u64,
    /// Handshakes this side initiated (each attempt counts).
    pub handshakes_initiated: u64,
    /// Handshakes that ended in a confirmed session, either role.
    pub handshakes_completed: u64,
    /// Initiator handshakes given up after [`SecureConfig::handshake_attempts`].
    pub handshakes_timed_out: u64,
    /// Plaintext dropped from a full queue or when a handshake was given up.
    pub queue_dropped: u64,
    /// Dropped incoming datagrams by reason.
    pub rejected: RejectCounters,
}

/// A datagram to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Datagram {
    /// Where to send it.
    pub dst: SocketAddr,
    /// The envelope bytes.
    pub bytes: Vec<u8>,
}

/// What [`SecureLayer::open`] made of an accepted datagram.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Opened {
    /// The gossip payload, if the datagram carried one (handshake messages
    /// and keepalives do not).
    pub plaintext: Option<Vec<u8>>,
    /// The sender's authenticated static key (its identity); `None` in the
    /// unencrypted mode and for handshake messages that do not reveal it yet.
    pub remote_static: Option<[u8; KEY_LEN]>,
    /// Datagrams to send in answer: handshake messages, a confirmation, and
    /// queued plaintext now that a session is up.
    pub replies: Vec<Datagram>,
}

/// Why [`SecureLayer::seal`] refused a plaintext.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SealError {
    /// The plaintext is longer than [`MAX_PLAINTEXT`].
    #[error("plaintext of {0} bytes exceeds {MAX_PLAINTEXT}")]
    TooLarge(usize),
}
