//! Peer-to-peer topology gossip for overlay networks.
//!
//! Every node agent must know every peer: its underlay endpoint, VTEP MAC,
//! pod blocks, Noise static key and the few peers it cannot reach. This crate
//! replicates exactly that — one small owner-written [`PeerRecord`] per peer —
//! to every peer, detects dead peers with SWIM, and carries named channels
//! (the IPAM ring rides on one). It depends only on `overlay-core`:
//!
//! ```text
//! examples -> { overlay-cni, overlay-gossip, overlay-ipam, overlay-netlink } -> overlay-core
//! ```
//!
//! # Design
//!
//! - **Sans-IO core** ([`Gossip`]): time (`now: Duration`) and randomness (a
//!   seeded `rand` RNG) are passed in; the core never reads a clock or
//!   touches a socket. The driver moves datagrams between
//!   [`Gossip::poll_transmit`] / [`Gossip::handle_datagram`] and a UDP socket
//!   and calls [`Gossip::handle_timeout`] at [`Gossip::poll_timeout`].
//! - **Records, merge:** only the owner writes its record; every change bumps
//!   `version`, every restart (or refuted death) a larger `incarnation`.
//!   Replicas keep the record with the larger `(incarnation, version)`. A
//!   record is ~100 B, so a view is O(N) (about 0.5 KiB per peer in memory,
//!   see the `gossip_sim` bench).
//! - **Delta dissemination:** a changed record is queued with a budget of
//!   `retransmit_mult · ⌈log2(N+1)⌉` sends. Every gossip round (200 ms) the
//!   core pushes one coalesced frame of the freshest queued records (and
//!   channel broadcasts) to `fanout` (3) random neighbours. Per-round traffic
//!   per peer is bounded by `fanout` frames whatever N is.
//! - **Anti-entropy:** every `anti_entropy_interval` a peer sends one random
//!   neighbour the digest of its view at depth 6 (64 buckets by `PeerId`
//!   prefix, each the XOR of its records' stamp hashes; 0.5 KiB). The
//!   receiver answers each differing bucket with either the digest of its 64
//!   children (if it holds more than 16 records there) or a summary — the
//!   `(id, incarnation, version)` of its records there. A summary makes the
//!   other side push the records it holds newer and pull the ones it lacks.
//!   The exchange is stateless and converges after any loss; in steady state
//!   it costs one 0.5 KiB frame per interval, independent of N. A joiner
//!   receives the full view this way, O(N) records once.
//! - **Membership and failure detection:** SWIM with suspicion, through
//!   [foca](https://docs.rs/foca) `=2.0.0` behind an internal trait; foca's
//!   timers become entries of the core's own timer queue. foca only says who
//!   is alive; a peer declared down loses its record (a tombstone remembers
//!   its incarnation for `tombstone_ttl`, then it is garbage-collected). A
//!   peer wrongly declared down renews its identity with a larger
//!   incarnation and its record wins again.
//! - **Neighbour limit:** deltas and anti-entropy go to at most
//!   `max_neighbours` peers (a random subset, one replaced per anti-entropy
//!   round so the graph keeps mixing); SWIM probes one member per period.
//! - **Channels:** [`Gossip::register_channel`], [`Gossip::broadcast`]
//!   (flooded with the delta fan-out, deduplicated, best-effort) and
//!   [`Gossip::unicast`] (direct).
//!
//! No message grows with N²: the largest is a frame of at most
//! [`wire::MAX_FRAME_LEN`] bytes, and per-peer state is O(N).
//!
//! # Wire format
//!
//! Versioned, length-framed, at most 1,400 bytes per frame; unknown message
//! types are skipped and counted, unknown versions answered with the
//! versions we speak. The full table of message types and fields is in
//! [`wire`].
//!
//! # Security hook
//!
//! The core does not encrypt. An encrypting layer (Noise, in
//! `overlay_gossip::secure`) sits between the core and the socket and passes
//! each opened datagram's authenticated Noise static key as
//! `handle_datagram(.., sender_static: Some(key), ..)`. The core binds each
//! `PeerId` to the `noise_static` of its record: frames claiming a peer whose
//! record holds another key, and records of the sender itself with another
//! key, are dropped and counted ([`Rejected::key_mismatch`]). A key change
//! is believed from the owner itself or with a larger incarnation, so agents
//! should persist their static key across restarts. In the
//! [simulator](sim), the same layer plugs in as a [`sim::Transport`].
//!
//! Without that layer (unencrypted mode) the sender address is not
//! authenticated, and some requests are answered with more bytes than they
//! carry (a `Pull` or a `Summary` is answered with records, up to the whole
//! view). Run unencrypted only on a trusted network, and rate-limit per
//! source in the driver.
//!
//! # Security
//!
//! [`secure`] is that layer: every gossip datagram is wrapped in Noise
//! (`XXpsk3` to join through a seed address, `IKpsk2` between peers whose
//! static keys are known from their records) with a cluster key derived from
//! a password (Argon2id) or a key file (HKDF), a replay window and
//! per-reason counters of rejected datagrams. Without a password the explicit
//! unencrypted mode frames gossip in plain text and status reports
//! [`secure::Security::Unencrypted`].
//!
//! # Driver
//!
//! `driver` (feature `tokio`, on by default) runs a core and a secure layer
//! on one UDP socket in a tokio task, with bounded queues, handshake rate
//! limits, events to the application on a bounded channel, a status snapshot
//! (security mode and rejected-datagram counters), graceful leave and
//! shutdown.
//!
//! # Example
//!
//! Three peers in the deterministic simulator:
//!
//! ```
//! use std::time::Duration;
//! use overlay_gossip::sim::{Sim, SimConfig};
//!
//! let mut sim = Sim::new(SimConfig::default().with_seed(7));
//! let a = sim.add_node();
//! let b = sim.add_node();
//! let c = sim.add_node();
//! sim.join(b, a);
//! sim.join(c, a);
//! sim.run_for(Duration::from_secs(5));
//! assert!(sim.converged());
//! assert_eq!(sim.gossip(c).len(), 3);
//! ```
#![cfg_attr(docsrs, feature(doc_cfg))]
#![warn(missing_docs)]

mod core;
mod digest;
#[cfg(feature = "tokio")]
#[cfg_attr(docsrs, doc(cfg(feature = "tokio")))]
pub mod driver;
#[cfg(any(test, feature = "fuzzing"))]
#[doc(hidden)]
pub mod fuzzing;
pub mod record;
pub mod secure;
pub mod sim;
pub mod swim;
pub mod wire;

pub use crate::core::{
    ChannelError, ChannelId, Config, Counters, Event, Gossip, Rejected, Transmit,
};
pub use crate::record::{PeerRecord, RecordError};
