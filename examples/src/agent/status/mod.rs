//! The agent's status, as its HTTP API serves it (`GET /status`, JSON) and as
//! `overlayctl` shows it: the `weave status` style summary, one section at a
//! time (`peers`, `connections`, `ipam`, `datapath`), and the topology as
//! text or Graphviz DOT.
//!
//! The types are the API's schema: `overlayd` fills them, `overlayctl`
//! reads them back and shows them with the renderers of [`render`], pure
//! functions tested there.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

pub mod render;

pub use render::{
    render_connections, render_datapath, render_ipam, render_peers, render_summary,
    render_topology_dot, render_topology_text,
};

/// The whole status of one agent.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Status {
    /// The agent's version.
    pub version: String,
    /// This node.
    pub node: PeerStatus,
    /// Whether the mesh is encrypted.
    pub encryption: Encryption,
    /// Every peer this node knows, itself excluded.
    pub peers: Vec<PeerStatus>,
    /// The gossip sessions with other peers.
    pub connections: Vec<ConnectionStatus>,
    /// The cluster IPAM as this node sees it.
    pub ipam: IpamStatus,
    /// The kernel datapath this node programs.
    pub datapath: DatapathStatus,
    /// Gossip traffic counters.
    pub gossip: GossipCounters,
}

/// Encrypted (a cluster password or key is configured) or not.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Encryption {
    /// Noise with a cluster pre-shared key.
    Encrypted,
    /// No password configured: anyone who can reach the port can join.
    #[default]
    Unencrypted,
}

/// One peer.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerStatus {
    /// The peer identity (hex).
    pub id: String,
    /// Its node name.
    pub name: String,
    /// Its incarnation.
    pub incarnation: u64,
    /// Its underlay address (gossip and VXLAN endpoint).
    pub underlay: String,
    /// Its VTEP MAC address.
    pub vtep_mac: String,
    /// The pod address blocks it owns.
    pub blocks: Vec<String>,
    /// `alive`, `suspect` or `down`.
    pub state: String,
    /// Peers it reports it cannot reach directly (ids).
    #[serde(default)]
    pub unreachable: Vec<String>,
}

/// One gossip session.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConnectionStatus {
    /// The peer's id (hex), when known.
    pub peer: String,
    /// Its address.
    pub address: String,
    /// `established`, `handshaking` or `failed`.
    pub state: String,
    /// Milliseconds since a datagram last came from it.
    pub last_seen_ms: Option<u64>,
}

/// The cluster IPAM.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct IpamStatus {
    /// The cluster range.
    pub range: String,
    /// `ready`, `no-space-yet`, `exhausted` or `conflict`.
    pub state: String,
    /// Why, when not ready.
    #[serde(default)]
    pub reason: String,
    /// The ring's genesis id (hex).
    pub genesis: String,
    /// The blocks this node owns.
    pub blocks: Vec<BlockStatus>,
    /// Addresses this node has handed out.
    pub used: u64,
    /// Free addresses in this node's blocks.
    pub free: u64,
    /// Addresses in the whole range, per owner name (the ring's view).
    pub owners: BTreeMap<String, u64>,
    /// Conflicts the ring merge reported (for operators, never fatal).
    #[serde(default)]
    pub anomalies: Vec<String>,
}

/// One owned block.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlockStatus {
    /// The block.
    pub cidr: String,
    /// Addresses in use.
    pub used: u64,
    /// Free addresses.
    pub free: u64,
    /// Adopted from a dead peer and not yet usable.
    #[serde(default)]
    pub quarantined: bool,
}

/// The datapath.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DatapathStatus {
    /// The node bridge.
    pub bridge: String,
    /// The VXLAN device.
    pub vxlan: String,
    /// The overlay MTU (pods and VXLAN device).
    pub mtu: u32,
    /// Peers programmed on the VXLAN device.
    pub peers_programmed: usize,
    /// Routes to remote blocks.
    pub routes: usize,
    /// Reconciles run, and the last one's error, if it failed.
    pub reconciles: u64,
    /// The last reconcile's error.
    #[serde(default)]
    pub last_error: String,
}

/// Gossip traffic.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GossipCounters {
    /// Bytes sent.
    pub bytes_sent: u64,
    /// Bytes received.
    pub bytes_received: u64,
    /// Datagrams rejected, by reason (replayed, tampered, wrong key...).
    pub rejected: BTreeMap<String, u64>,
}
