//! `overlayd`'s status: the `/status` document ([`Status`], the JSON shape
//! `overlayctl` reads) assembled from the main loop's parts, and the HTTP
//! handler that serves it with `/healthz`, `/ready` and `/metrics`.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use overlay_core::PeerId;
use overlay_gossip::PeerRecord;
use overlay_gossip::driver;
use overlay_ipam::agent::service::{AttachmentKey, NodeIpam, ServiceError};
use overlay_ipam::ring::agent::RingAgent;

use super::config::Config;
use super::http::{Handler, Response};
use super::metrics::Metrics;
use super::status::{
    BlockStatus, ConnectionStatus, DatapathStatus, Encryption, GossipCounters, IpamStatus,
    PeerStatus, Status,
};

/// What the status is made of.
pub struct Inputs<'a> {
    /// The main loop's clock.
    pub now: Duration,
    /// The agent's configuration.
    pub config: &'a Config,
    /// The gossip driver's status.
    pub gossip: &'a driver::Status,
    /// Whether gossip is encrypted.
    pub encrypted: bool,
    /// Every peer gossip reported, by id.
    pub peers: &'a BTreeMap<PeerId, PeerRecord>,
    /// The peers gossip declared down.
    pub down: &'a BTreeSet<PeerId>,
    /// The IPAM ring.
    pub ring: &'a RingAgent<AttachmentKey>,
    /// The IPAM service.
    pub ipam: &'a NodeIpam,
    /// The datapath's state.
    pub datapath: DatapathStatus,
}

/// The status document.
pub fn status(i: &Inputs<'_>) -> Status {
    let (now, gossip) = (i.now, i.gossip);
    let own_name = gossip.local.name.clone();
    let own_id = i.ring.identity().peer;
    let name_of = |id: PeerId, peers: &BTreeMap<PeerId, PeerRecord>| match id == own_id {
        true => own_name.clone(),
        false => peers
            .get(&id)
            .map_or_else(|| id.to_string(), |r| r.name.clone()),
    };
    let ring_blocks = |id: PeerId| -> Vec<String> {
        i.ring
            .node()
            .map(|n| {
                n.ring()
                    .entries_of(id)
                    .iter()
                    .map(|e| e.block.to_string())
                    .collect()
            })
            .unwrap_or_default()
    };
    let peer_status = |r: &PeerRecord, state: &str| PeerStatus {
        id: r.id.to_string(),
        name: r.name.clone(),
        incarnation: r.incarnation,
        underlay: r
            .underlay
            .first()
            .map(ToString::to_string)
            .unwrap_or_default(),
        vtep_mac: r.vtep_mac.to_string(),
        blocks: ring_blocks(r.id),
        state: state.to_owned(),
        unreachable: r.unreachable.iter().map(ToString::to_string).collect(),
    };
    let local = gossip.local.clone();
    let mut peers = Vec::new();
    let mut connections = Vec::new();
    for r in i.peers.values().filter(|r| r.id != own_id) {
        let state = if i.down.contains(&r.id) {
            "down"
        } else {
            "alive"
        };
        peers.push(peer_status(r, state));
        connections.push(ConnectionStatus {
            peer: r.id.to_string(),
            address: r
                .underlay
                .first()
                .map(ToString::to_string)
                .unwrap_or_default(),
            state: if state == "alive" {
                "established".into()
            } else {
                "failed".into()
            },
            last_seen_ms: None,
        });
    }
    let mut ipam = IpamStatus {
        range: i.config.range.to_string(),
        anomalies: i.ring.anomalies().map(|a| format!("{a:?}")).collect(),
        ..IpamStatus::default()
    };
    if let Some(node) = i.ring.node() {
        ipam.genesis = format!("{:?}", node.ring().genesis().id());
        for b in i.ipam.blocks(i.ring) {
            ipam.used += b.used;
            ipam.free += b.free;
            ipam.blocks.push(BlockStatus {
                cidr: b.block.to_string(),
                used: b.used,
                free: b.free,
                quarantined: b.adopted,
            });
        }
        for e in node.ring().entries() {
            let size = u64::try_from(e.size()).unwrap_or(u64::MAX);
            *ipam.owners.entry(name_of(e.owner, i.peers)).or_default() += size;
        }
    }
    let reason = match i.ipam.readiness(now, i.ring) {
        Ok(()) => None,
        Err(ServiceError::NotJoined) => Some("waiting for the ring's genesis seed"),
        Err(ServiceError::BlocksFull) => Some("blocks full; more space requested"),
        Err(_) => Some("waiting for a block from a peer"),
    };
    (ipam.state, ipam.reason) = match reason {
        Some(reason) => ("no-space-yet".into(), reason.into()),
        None => ("ready".into(), String::new()),
    };
    let mut rejected = BTreeMap::new();
    let s = &gossip.secure.rejected;
    for (k, v) in [
        ("malformed", s.malformed),
        ("security_mismatch", s.security_mismatch),
        ("unknown_session", s.unknown_session),
        ("replayed", s.replayed),
        ("too_old", s.too_old),
        ("bad_mac", s.bad_mac),
        ("handshake_failed", s.handshake_failed),
        ("rate_limited", s.rate_limited),
    ] {
        rejected.insert(k.to_owned(), v);
    }
    Status {
        version: env!("CARGO_PKG_VERSION").into(),
        node: PeerStatus {
            id: own_id.to_string(),
            name: local.name.clone(),
            incarnation: i.ring.identity().incarnation,
            underlay: gossip.local_addr.to_string(),
            vtep_mac: local.vtep_mac.to_string(),
            blocks: ring_blocks(own_id),
            state: "alive".into(),
            unreachable: vec![],
        },
        encryption: match i.encrypted {
            true => Encryption::Encrypted,
            false => Encryption::Unencrypted,
        },
        peers,
        connections,
        ipam,
        datapath: i.datapath.clone(),
        gossip: GossipCounters {
            bytes_sent: gossip.gossip.bytes_out,
            bytes_received: gossip.gossip.bytes_in,
            rejected,
        },
    }
}

/// The status API's handler.
pub fn handler(status: Arc<RwLock<Status>>, metrics: Arc<Metrics>) -> Handler {
    Arc::new(move |path: &str| {
        let Ok(s) = status.read() else {
            return Response::text(500, "status unavailable\n");
        };
        match path {
            "/status" => Response::json(serde_json::to_vec(&*s).unwrap_or_default()),
            "/healthz" => Response::text(200, "ok\n"),
            "/ready" => match s.ipam.state.as_str() {
                "ready" => Response::text(200, "ready\n"),
                other => Response::text(503, format!("{other}: {}\n", s.ipam.reason)),
            },
            "/metrics" => {
                metrics.observe(&s);
                Response {
                    status: 200,
                    content_type: "application/openmetrics-text; version=1.0.0; charset=utf-8",
                    body: metrics.encode().into_bytes(),
                }
            }
            _ => Response::text(404, "not found\n"),
        }
    })
}
