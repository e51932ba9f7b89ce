//! A cluster-wide ring of address blocks that never hands out an address
//! twice: a CRDT of CIDR-aligned block ownership, the node-level allocator
//! built on it, its wire and store forms, and a deterministic simulator.
//!
//! Everything here is a pure data structure or state machine: time is
//! passed in as a [`Duration`](std::time::Duration) since any fixed origin,
//! randomness as a [`rand::Rng`]; nothing reads a clock or opens a socket.
//! The gossip layer carries [`Delta`]s and [`Digest`]s, the node agent
//! persists [`Ring`] (see [`codec`]) together with its allocations in one
//! store transaction.
//!
//! # Design, and the Weave Net failure each rule removes
//!
//! The design note (`agent-design.md`, section 3) traces Weave Net's IPAM
//! failures to their source. The rules:
//!
//! - **Identity is a 128-bit [`PeerId`](overlay_core::PeerId) plus an
//!   incarnation** ([`Identity`]), never a hostname or MAC. Clones are
//!   detected by differing incarnations for one id ([`Node::observe_peer`]);
//!   the lower steps down (Weave: "if two or more peers share the same name
//!   chaos will ensue").
//! - **Genesis without consensus** ([`Genesis`], [`Ring::with_seeds`]): a
//!   seed list every seed sorts and halves identically, or one named seed,
//!   or an id created once by an existing authority. No Paxos, no quorum
//!   count to get wrong (Weave #1559, #1593, #3955 "awaiting consensus").
//!   A ring carries its [`GenesisId`]; rings of different ids are never
//!   merged, and the mismatch is an [`Anomaly`], not a dropped connection
//!   (Weave #3908 "seeded by different peers").
//! - **Blocks, not ranges**: ownership moves in CIDR-aligned blocks no
//!   smaller than the genesis minimum, so a datapath installs one route per
//!   remote block. Tokens are [`IpAddr`](std::net::IpAddr) with `u128`
//!   arithmetic: IPv4 and IPv6 alike.
//! - **Stamps fence** ([`Stamp`]): ordered by `(epoch, version)`; only the
//!   owner raises `version`, only a fencing reclaim raises `epoch`. A dead
//!   owner's later writes carry the old epoch and lose whatever their
//!   version: there is no Weave "+100" margin for a live owner to outrun
//!   (duplicate IPs after `rmpeer`, #2809, #3310).
//! - **Merge is total** ([`Ring::merge`], [`Ring::apply`]): the state is,
//!   per address, the greatest stamp (a max-register per address, held as
//!   sorted runs), and a grow-only set of [`Tombstone`]s. That is a
//!   join-semilattice: merge is commutative, associative and idempotent, and
//!   it cannot fail. Conflicts are returned as [`Anomaly`] values for
//!   status and metrics. Weave's merge returned errors ("Received update
//!   for IP range I own", #3165, #3580) that closed the data-plane
//!   connection and split the cluster.
//! - **Donation is owner-initiated** ([`Node::handle_message`] with a
//!   [`Message::SpaceRequest`]): the donor writes `{owner = requester,
//!   version + 1}` for its largest free aligned block that is at most half
//!   of its free space, so ownership has a single writer. Requesters pick
//!   donors weighted by advertised free space.
//! - **Reclaim by tombstone** ([`Ring::reclaim`]): `(peer, up to
//!   incarnation, heir)`. Every block of the dead peer becomes `{heir,
//!   epoch + 1, version 0}`; two tombstones naming different heirs resolve
//!   to the lowest heir and raise [`Anomaly::ConflictingHeirs`] (Weave's
//!   double `rmpeer` "may allocate the same address twice" and split the
//!   cluster into cliques). Blocks the heir's replica did not yet know to be
//!   the dead peer's are mapped to the heir by the view, so nothing is
//!   stranded on dead peers (Weave #3384, kubicorn #628).
//! - **Quarantine and step-down**: the heir allocates from adopted blocks
//!   last and only after [`NodeConfig::quarantine`]; a returning peer that
//!   finds itself tombstoned steps down, claims its live addresses from the
//!   heir (granted if free, else [`Anomaly::ClaimConflict`] naming both) and
//!   re-identifies. A claim is never reported as success before the owner
//!   grants it (Weave's `noErrorOnUnknown`).
//! - **Allocation never waits on the network** ([`Node::allocate`]): it
//!   succeeds from owned space or fails at once with an [`AllocFailure`]
//!   ([`AllocFailure::cni_code`] maps it to CNI 11 or 50); a reserve policy
//!   asks for space in the background before the node runs out (Weave
//!   blocked the CNI ADD until space arrived).
//! - **Deltas and digests, not the whole ring** ([`codec`], [`Digest`]):
//!   per-block records and a bucketed digest for anti-entropy, instead of
//!   gossiping the whole ring on every change.
//!
//! # Example
//!
//! ```
//! use overlay_ipam::ring::{Node, NodeConfig, Identity, Ring};
//! use overlay_core::PeerId;
//! use std::time::Duration;
//!
//! let (a, b) = (PeerId::from_u128(1), PeerId::from_u128(2));
//! let ring = Ring::from_seeds("10.32.0.0/16".parse().unwrap(), 26, &[a, b]).unwrap();
//! let mut node = Node::new(Identity::new(a, 1), ring, NodeConfig::default());
//! let now = Duration::ZERO;
//! let ip = node.allocate(now, "pod-1").unwrap();
//! assert_eq!(ip.to_string(), "10.32.0.0");
//! assert_eq!(node.release(now, &"pod-1"), vec![ip]);
//! ```

pub mod agent;
pub mod codec;
pub mod message;
mod node;
pub mod sim;
mod state;

pub use codec::{DecodeError, Digest};
pub use node::{AllocFailure, Holder, Identity, Message, Node, NodeConfig, Output};
pub use state::{
    Anomaly, Delta, Entry, Genesis, GenesisError, GenesisId, MergeReport, ReclaimError, Record,
    Ring, Stamp, Tombstone, WriteError,
};
