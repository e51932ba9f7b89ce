//! The agent's Prometheus metrics (`GET /metrics`), with `prometheus-client`.
//!
//! Every metric is derived from the same [`Status`] the status API serves,
//! so the two never disagree: [`Metrics::observe`] takes a status snapshot
//! and sets the gauges, and advances the counters by what grew since the
//! previous snapshot.
//!
//! | metric | type | labels |
//! |---|---|---|
//! | `overlay_peers` | gauge | `state` (alive, suspect, down) |
//! | `overlay_connections` | gauge | `state` |
//! | `overlay_ipam_addresses` | gauge | `kind` (used, free) |
//! | `overlay_ipam_blocks` | gauge | |
//! | `overlay_ipam_ready` | gauge | (1 when an allocation can succeed now) |
//! | `overlay_ipam_anomalies` | gauge | |
//! | `overlay_datapath_peers` | gauge | |
//! | `overlay_datapath_routes` | gauge | |
//! | `overlay_datapath_reconciles_total` | counter | |
//! | `overlay_gossip_bytes_total` | counter | `direction` (sent, received) |
//! | `overlay_gossip_rejected_total` | counter | `reason` |
//! | `overlay_encrypted` | gauge | (1 when the mesh is encrypted) |

use std::collections::BTreeMap;
use std::sync::Mutex;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use super::status::{Encryption, Status};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct State {
    state: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Kind {
    kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Direction {
    direction: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Reason {
    reason: String,
}

/// The totals of the previous snapshot, to advance counters by the growth.
#[derive(Default)]
struct Seen {
    reconciles: u64,
    sent: u64,
    received: u64,
    rejected: BTreeMap<String, u64>,
}

/// The agent's metrics (see the [module docs](self)).
pub struct Metrics {
    registry: Registry,
    peers: Family<State, Gauge>,
    connections: Family<State, Gauge>,
    addresses: Family<Kind, Gauge>,
    blocks: Gauge,
    ready: Gauge,
    anomalies: Gauge,
    dp_peers: Gauge,
    dp_routes: Gauge,
    reconciles: Counter,
    bytes: Family<Direction, Counter>,
    rejected: Family<Reason, Counter>,
    encrypted: Gauge,
    seen: Mutex<Seen>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

fn gauge(n: impl TryInto<i64>) -> i64 {
    n.try_into().unwrap_or(i64::MAX)
}

impl Metrics {
    /// Metrics registered under the `overlay` prefix, all zero.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("overlay");
        let m = Metrics {
            peers: Family::default(),
            connections: Family::default(),
            addresses: Family::default(),
            blocks: Gauge::default(),
            ready: Gauge::default(),
            anomalies: Gauge::default(),
            dp_peers: Gauge::default(),
            dp_routes: Gauge::default(),
            reconciles: Counter::default(),
            bytes: Family::default(),
            rejected: Family::default(),
            encrypted: Gauge::default(),
            seen: Mutex::new(Seen::default()),
            registry: Registry::default(),
        };
        registry.register("peers", "Peers this node knows, by state", m.peers.clone());
        registry.register(
            "connections",
            "Gossip sessions, by state",
            m.connections.clone(),
        );
        registry.register(
            "ipam_addresses",
            "Addresses in this node's blocks, used and free",
            m.addresses.clone(),
        );
        registry.register(
            "ipam_blocks",
            "Address blocks this node owns",
            m.blocks.clone(),
        );
        registry.register(
            "ipam_ready",
            "1 when a pod ADD can get an address now",
            m.ready.clone(),
        );
        registry.register(
            "ipam_anomalies",
            "Conflicts the ring merge reported",
            m.anomalies.clone(),
        );
        registry.register(
            "datapath_peers",
            "Remote peers programmed on the VXLAN device",
            m.dp_peers.clone(),
        );
        registry.register(
            "datapath_routes",
            "Routes to remote pod blocks",
            m.dp_routes.clone(),
        );
        registry.register(
            "datapath_reconciles",
            "Datapath reconciles run",
            m.reconciles.clone(),
        );
        registry.register(
            "gossip_bytes",
            "Gossip bytes, by direction",
            m.bytes.clone(),
        );
        registry.register(
            "gossip_rejected",
            "Gossip datagrams rejected, by reason",
            m.rejected.clone(),
        );
        registry.register(
            "encrypted",
            "1 when the gossip mesh is encrypted",
            m.encrypted.clone(),
        );
        Metrics { registry, ..m }
    }

    /// Bring every metric to `status`.
    pub fn observe(&self, status: &Status) {
        for family in [&self.peers, &self.connections] {
            family.clear();
        }
        let count = |family: &Family<State, Gauge>, state: &str| {
            family
                .get_or_create(&State {
                    state: state.to_owned(),
                })
                .inc();
        };
        for p in &status.peers {
            count(&self.peers, &p.state);
        }
        for c in &status.connections {
            count(&self.connections, &c.state);
        }
        let kind = |k: &str| Kind { kind: k.to_owned() };
        self.addresses
            .get_or_create(&kind("used"))
            .set(gauge(status.ipam.used));
        self.addresses
            .get_or_create(&kind("free"))
            .set(gauge(status.ipam.free));
        self.blocks.set(gauge(status.ipam.blocks.len()));
        self.ready.set(i64::from(status.ipam.state == "ready"));
        self.anomalies.set(gauge(status.ipam.anomalies.len()));
        self.dp_peers.set(gauge(status.datapath.peers_programmed));
        self.dp_routes.set(gauge(status.datapath.routes));
        self.encrypted
            .set(i64::from(status.encryption == Encryption::Encrypted));

        let Ok(mut seen) = self.seen.lock() else {
            return;
        };
        let grow = |counter: &Counter, last: &mut u64, now: u64| {
            counter.inc_by(now.saturating_sub(*last));
            *last = now.max(*last);
        };
        grow(
            &self.reconciles,
            &mut seen.reconciles,
            status.datapath.reconciles,
        );
        let dir = |d: &str| Direction {
            direction: d.to_owned(),
        };
        grow(
            &self.bytes.get_or_create(&dir("sent")),
            &mut seen.sent,
            status.gossip.bytes_sent,
        );
        grow(
            &self.bytes.get_or_create(&dir("received")),
            &mut seen.received,
            status.gossip.bytes_received,
        );
        for (reason, n) in &status.gossip.rejected {
            let last = seen.rejected.entry(reason.clone()).or_default();
            let counter = self.rejected.get_or_create(&Reason {
                reason: reason.clone(),
            });
            grow(&counter, last, *n);
        }
    }

    /// The OpenMetrics text of every metric.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = encode(&mut out, &self.registry);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::agent::status::{ConnectionStatus, PeerStatus};

    #[test]
    fn metrics_follow_the_status_and_counters_only_grow() {
        let m = Metrics::new();
        let mut s = Status {
            peers: vec![
                PeerStatus {
                    state: "alive".into(),
                    ..PeerStatus::default()
                },
                PeerStatus {
                    state: "down".into(),
                    ..PeerStatus::default()
                },
            ],
            connections: vec![ConnectionStatus {
                state: "established".into(),
                ..ConnectionStatus::default()
            }],
            encryption: Encryption::Encrypted,
            ..Status::default()
        };
        s.ipam.state = "ready".into();
        s.ipam.used = 5;
        s.ipam.free = 59;
        s.gossip.bytes_sent = 1000;
        s.gossip.rejected.insert("replayed".into(), 2);
        m.observe(&s);
        s.gossip.bytes_sent = 1500;
        s.gossip.rejected.insert("replayed".into(), 3);
        m.observe(&s);
        let text = m.encode();
        for line in [
            "overlay_peers{state=\"alive\"} 1",
            "overlay_peers{state=\"down\"} 1",
            "overlay_connections{state=\"established\"} 1",
            "overlay_ipam_addresses{kind=\"used\"} 5",
            "overlay_ipam_addresses{kind=\"free\"} 59",
            "overlay_ipam_ready 1",
            "overlay_encrypted 1",
            "overlay_gossip_bytes_total{direction=\"sent\"} 1500",
            "overlay_gossip_rejected_total{reason=\"replayed\"} 3",
        ] {
            assert!(text.contains(line), "missing {line:?} in\n{text}");
        }
        assert!(text.ends_with("# EOF\n"));
    }
}
