//! The node agent's store: identity, ring and allocations in one `redb`
//! file, changed only in whole transactions that are durable before the
//! agent answers.
//!
//! Weave's duplicate addresses after restarts came from state that was
//! acknowledged before it was on disk, or written in pieces. Here every
//! change the agent makes (an allocation, a release, a new ring state) is one
//! [`Change`], committed in one write transaction with immediate durability
//! (redb's default: fsync before `commit` returns). A crash leaves either the
//! state before the change or after it, never a mixture; an address is
//! reported to a CNI `ADD` only after its transaction committed.
//!
//! On every start [`Store::open`] bumps the incarnation durably before the
//! agent does anything else, so that gossip and the ring can tell this run
//! from any earlier one.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::Path;

use overlay_core::PeerId;
use overlay_ipam::agent::service::{self, AllocationStore, Commit};
use overlay_ipam::ring::{self, agent::RingStore};
use redb::{Database, ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize};

/// Identity and ring: small values by name.
const META: TableDefinition<'_, &str, &[u8]> = TableDefinition::new("meta");
/// Allocations: `network/containerId/ifname` -> JSON [`AllocationRecord`].
const ALLOCATIONS: TableDefinition<'_, &str, &[u8]> = TableDefinition::new("allocations");

const PEER_ID: &str = "peer_id";
const INCARNATION: &str = "incarnation";
const STATIC_KEY: &str = "noise_static_private";
const RING: &str = "ring";

/// A store failure.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database could not be opened, read or written.
    #[error("store: {0}")]
    Db(Box<redb::Error>),
    /// A value in the store is not what this agent wrote.
    #[error("store: corrupt {what}: {why}")]
    Corrupt {
        /// The key or table.
        what: String,
        /// What is wrong with it.
        why: String,
    },
}

fn db<E: Into<redb::Error>>(e: E) -> StoreError {
    StoreError::Db(Box::new(e.into()))
}

/// Who this agent is: created on first start, kept forever (until the ring
/// tells it to re-identify), with an incarnation bumped on every start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// The 128-bit random peer identity.
    pub peer_id: PeerId,
    /// This run's incarnation (1 on the first start).
    pub incarnation: u64,
    /// The Noise static private key (32 bytes), when one was stored.
    pub static_private: Option<[u8; 32]>,
}

/// The addresses of one attachment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AllocationRecord {
    /// The addresses, with the prefix length handed out.
    pub ips: Vec<ipnet::IpNet>,
    /// The gateway of each address, in the same order.
    #[serde(default)]
    pub gateways: Vec<Option<IpAddr>>,
}

/// The key of one attachment in the store.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct AttachmentKey {
    /// The CNI network.
    pub network: String,
    /// The container ID.
    pub container_id: String,
    /// The interface name.
    pub ifname: String,
}

impl AttachmentKey {
    /// A key from its parts.
    pub fn new(network: &str, container_id: &str, ifname: &str) -> Self {
        AttachmentKey {
            network: network.to_owned(),
            container_id: container_id.to_owned(),
            ifname: ifname.to_owned(),
        }
    }

    /// The store's key. The parts are joined with `/`, which none of them
    /// can contain (network names and interface names exclude it, and the
    /// container ID is escaped).
    fn encode(&self) -> String {
        format!(
            "{}/{}/{}",
            self.network,
            self.container_id.replace('%', "%25").replace('/', "%2F"),
            self.ifname
        )
    }

    fn decode(key: &str) -> Option<Self> {
        let (network, rest) = key.split_once('/')?;
        let (container, ifname) = rest.rsplit_once('/')?;
        Some(AttachmentKey {
            network: network.to_owned(),
            container_id: container.replace("%2F", "/").replace("%25", "%"),
            ifname: ifname.to_owned(),
        })
    }
}

/// One atomic change: everything in it lands, or nothing does.
#[derive(Debug, Default, Clone)]
pub struct Change {
    /// The new ring state (serialised), when it changed.
    pub ring: Option<Vec<u8>>,
    /// Allocations to record.
    pub put: Vec<(AttachmentKey, AllocationRecord)>,
    /// Allocations to forget.
    pub remove: Vec<AttachmentKey>,
    /// A new identity (after the ring told this peer to step down).
    pub identity: Option<(PeerId, u64)>,
}

/// What the store holds, read at start-up.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    /// The last committed ring state, if any.
    pub ring: Option<Vec<u8>>,
    /// Every allocation.
    pub allocations: BTreeMap<AttachmentKey, AllocationRecord>,
}

/// The agent's store (see the [module docs](self)).
pub struct Store {
    db: Database,
}

impl Store {
    /// Open (or create) the store at `path` and start a new incarnation:
    /// the identity is created on first use (from `new_peer_id`) and the
    /// incarnation bumped, durably, before this returns.
    pub fn open(
        path: &Path,
        new_peer_id: impl FnOnce() -> PeerId,
    ) -> Result<(Self, Identity), StoreError> {
        let db = Database::create(path).map_err(db)?;
        let store = Store { db };
        let identity = store.start(new_peer_id)?;
        Ok((store, identity))
    }

    fn start(&self, new_peer_id: impl FnOnce() -> PeerId) -> Result<Identity, StoreError> {
        let txn = self.db.begin_write().map_err(db)?;
        let identity = {
            let mut meta = txn.open_table(META).map_err(db)?;
            let peer_id = match meta.get(PEER_ID).map_err(db)? {
                Some(v) => {
                    let bytes: [u8; 16] = v
                        .value()
                        .try_into()
                        .map_err(|_| corrupt(PEER_ID, "not 16 bytes"))?;
                    PeerId::from_bytes(bytes)
                }
                None => new_peer_id(),
            };
            let incarnation = match meta.get(INCARNATION).map_err(db)? {
                Some(v) => u64::from_le_bytes(
                    v.value()
                        .try_into()
                        .map_err(|_| corrupt(INCARNATION, "not 8 bytes"))?,
                ),
                None => 0,
            }
            .checked_add(1)
            .ok_or_else(|| corrupt(INCARNATION, "at its maximum"))?;
            let static_private = match meta.get(STATIC_KEY).map_err(db)? {
                Some(v) => Some(
                    <[u8; 32]>::try_from(v.value())
                        .map_err(|_| corrupt(STATIC_KEY, "not 32 bytes"))?,
                ),
                None => None,
            };
            meta.insert(PEER_ID, &peer_id.to_bytes()[..]).map_err(db)?;
            meta.insert(INCARNATION, &incarnation.to_le_bytes()[..])
                .map_err(db)?;
            Identity {
                peer_id,
                incarnation,
                static_private,
            }
        };
        txn.commit().map_err(db)?;
        Ok(identity)
    }

    /// Keep the Noise static private key (once, on first start).
    pub fn set_static_private(&self, key: &[u8; 32]) -> Result<(), StoreError> {
        let txn = self.db.begin_write().map_err(db)?;
        txn.open_table(META)
            .map_err(db)?
            .insert(STATIC_KEY, &key[..])
            .map_err(db)?;
        txn.commit().map_err(db)
    }

    /// Everything the store holds.
    pub fn snapshot(&self) -> Result<Snapshot, StoreError> {
        let txn = self.db.begin_read().map_err(db)?;
        let mut snapshot = Snapshot::default();
        // A fresh store has no tables yet: nothing to read.
        match txn.open_table(META) {
            Ok(meta) => snapshot.ring = meta.get(RING).map_err(db)?.map(|v| v.value().to_vec()),
            Err(redb::TableError::TableDoesNotExist(_)) => {}
            Err(e) => return Err(db(e)),
        }
        let allocations = match txn.open_table(ALLOCATIONS) {
            Ok(t) => t,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(snapshot),
            Err(e) => return Err(db(e)),
        };
        for entry in allocations.iter().map_err(db)? {
            let (k, v) = entry.map_err(db)?;
            let key = AttachmentKey::decode(k.value())
                .ok_or_else(|| corrupt(k.value(), "not network/container/ifname"))?;
            let record: AllocationRecord = serde_json::from_slice(v.value())
                .map_err(|e| corrupt(k.value(), &e.to_string()))?;
            snapshot.allocations.insert(key, record);
        }
        Ok(snapshot)
    }

    /// Commit `change` in one durable transaction.
    pub fn commit(&self, change: &Change) -> Result<(), StoreError> {
        let txn = self.db.begin_write().map_err(db)?;
        {
            let mut meta = txn.open_table(META).map_err(db)?;
            if let Some(ring) = &change.ring {
                meta.insert(RING, &ring[..]).map_err(db)?;
            }
            if let Some((peer_id, incarnation)) = change.identity {
                meta.insert(PEER_ID, &peer_id.to_bytes()[..]).map_err(db)?;
                meta.insert(INCARNATION, &incarnation.to_le_bytes()[..])
                    .map_err(db)?;
            }
            let mut allocations = txn.open_table(ALLOCATIONS).map_err(db)?;
            for key in &change.remove {
                allocations.remove(key.encode().as_str()).map_err(db)?;
            }
            for (key, record) in &change.put {
                let value = serde_json::to_vec(record)
                    .map_err(|e| corrupt("allocation", &e.to_string()))?;
                allocations
                    .insert(key.encode().as_str(), &value[..])
                    .map_err(db)?;
            }
        }
        txn.commit().map_err(db)
    }
}

fn corrupt(what: &str, why: &str) -> StoreError {
    StoreError::Corrupt {
        what: what.to_owned(),
        why: why.to_owned(),
    }
}

// The persistence hooks of `overlay_ipam`'s ring agent and IPAM service:
// each commit is one `Change`, durable before it returns.

impl From<&service::AttachmentKey> for AttachmentKey {
    fn from(k: &service::AttachmentKey) -> Self {
        AttachmentKey::new(&k.network, &k.container_id, &k.ifname)
    }
}

impl Snapshot {
    /// The allocations as the IPAM service keeps them.
    pub fn records(&self) -> BTreeMap<service::AttachmentKey, service::AllocationRecord> {
        self.allocations
            .iter()
            .map(|(k, r)| {
                let key = service::AttachmentKey::new(&k.network, &k.container_id, &k.ifname);
                let record = service::AllocationRecord::new(r.ips.clone(), r.gateways.clone());
                (key, record)
            })
            .collect()
    }
}

impl RingStore for Store {
    type Error = StoreError;

    fn save_ring(&mut self, ring: &[u8]) -> Result<(), StoreError> {
        Store::commit(
            self,
            &Change {
                ring: Some(ring.to_vec()),
                ..Change::default()
            },
        )
    }

    fn save_identity(&mut self, identity: ring::Identity) -> Result<(), StoreError> {
        Store::commit(
            self,
            &Change {
                identity: Some((identity.peer, identity.incarnation)),
                ..Change::default()
            },
        )
    }
}

impl AllocationStore for Store {
    type Error = StoreError;

    fn commit(&mut self, c: &Commit<'_>) -> Result<(), StoreError> {
        let put = c.put.map(|(k, r)| {
            let record = AllocationRecord {
                ips: r.ips.clone(),
                gateways: r.gateways.clone(),
            };
            (AttachmentKey::from(k), record)
        });
        Store::commit(
            self,
            &Change {
                ring: c.ring.map(<[u8]>::to_vec),
                put: put.into_iter().collect(),
                remove: c.remove.map(AttachmentKey::from).into_iter().collect(),
                identity: None,
            },
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(ip: &str) -> AllocationRecord {
        AllocationRecord {
            ips: vec![ip.parse().expect("net")],
            gateways: vec![None],
        }
    }

    #[test]
    fn identity_is_kept_and_the_incarnation_grows_on_every_open() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("agent.redb");
        let (_, first) = Store::open(&path, || PeerId::from_u128(7)).expect("open");
        assert_eq!(
            (first.peer_id, first.incarnation),
            (PeerId::from_u128(7), 1)
        );
        let (_, second) = Store::open(&path, || PeerId::from_u128(99)).expect("reopen");
        assert_eq!(
            (second.peer_id, second.incarnation),
            (PeerId::from_u128(7), 2)
        );
    }

    #[test]
    fn a_change_lands_whole_and_survives_a_reopen() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("agent.redb");
        let a = AttachmentKey::new("pods", "c/1%", "eth0");
        let b = AttachmentKey::new("pods", "c2", "eth0");
        {
            let (store, _) = Store::open(&path, || PeerId::from_u128(1)).expect("open");
            assert!(store.snapshot().expect("read").allocations.is_empty());
            store
                .commit(&Change {
                    ring: Some(vec![1, 2, 3]),
                    put: vec![
                        (a.clone(), record("10.32.0.2/26")),
                        (b.clone(), record("10.32.0.3/26")),
                    ],
                    ..Change::default()
                })
                .expect("commit");
            store
                .commit(&Change {
                    remove: vec![b.clone()],
                    ..Change::default()
                })
                .expect("commit");
            store.set_static_private(&[9; 32]).expect("key");
        }
        let (store, identity) = Store::open(&path, || PeerId::from_u128(2)).expect("reopen");
        assert_eq!(identity.static_private, Some([9; 32]));
        let snapshot = store.snapshot().expect("read");
        assert_eq!(snapshot.ring, Some(vec![1, 2, 3]));
        assert_eq!(snapshot.allocations.len(), 1);
        assert_eq!(snapshot.allocations[&a], record("10.32.0.2/26"));
    }

    #[test]
    fn a_corrupt_identity_is_an_error_not_a_new_identity() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("agent.redb");
        {
            let db = Database::create(&path).expect("create");
            let txn = db.begin_write().expect("txn");
            txn.open_table(META)
                .expect("table")
                .insert(PEER_ID, &b"short"[..])
                .expect("insert");
            txn.commit().expect("commit");
        }
        let err = Store::open(&path, || PeerId::from_u128(3))
            .err()
            .expect("refused");
        assert!(matches!(err, StoreError::Corrupt { .. }), "{err}");
    }
}
