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
use std::path::Path;

use overlay_core::PeerId;
use overlay_ipam::agent::service::{AllocationRecord, AllocationStore, AttachmentKey, Commit};
use overlay_ipam::ring::{self, agent::RingStore};
use redb::{Database, ReadableTable, TableDefinition};

/// Identity and ring: small values by name.
const META: TableDefinition<'_, &str, &[u8]> = TableDefinition::new("meta");
/// Allocations: [`encode_key`] -> JSON [`AllocationRecord`].
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

/// The store's key of an attachment: its parts joined with `/`, which none
/// of them can contain (network names and interface names exclude it, and
/// the container ID is escaped: `%` as `%25`, `/` as `%2F`).
///
/// This is the on-disk format of every agent store written so far; it must
/// not change (see the golden test below).
fn encode_key(key: &AttachmentKey) -> String {
    format!(
        "{}/{}/{}",
        key.network,
        key.container_id.replace('%', "%25").replace('/', "%2F"),
        key.ifname
    )
}

/// The attachment an [`encode_key`] string names, or `None` if it is not
/// `network/container/ifname`.
fn decode_key(key: &str) -> Option<AttachmentKey> {
    let (network, rest) = key.split_once('/')?;
    let (container, ifname) = rest.rsplit_once('/')?;
    let container_id = container.replace("%2F", "/").replace("%25", "%");
    Some(AttachmentKey::new(network, &container_id, ifname))
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
            let key = decode_key(k.value())
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
                allocations.remove(encode_key(key).as_str()).map_err(db)?;
            }
            for (key, record) in &change.put {
                let value = serde_json::to_vec(record)
                    .map_err(|e| corrupt("allocation", &e.to_string()))?;
                allocations
                    .insert(encode_key(key).as_str(), &value[..])
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
        Store::commit(
            self,
            &Change {
                ring: c.ring.map(<[u8]>::to_vec),
                put: c
                    .put
                    .map(|(k, r)| (k.clone(), r.clone()))
                    .into_iter()
                    .collect(),
                remove: c.remove.cloned().into_iter().collect(),
                identity: None,
            },
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Write `entries` into `table` of a new database at `path`, as some
    /// other (earlier or broken) writer would have.
    fn write_raw(path: &Path, table: TableDefinition<'_, &str, &[u8]>, entries: &[(&str, &[u8])]) {
        let db = Database::create(path).expect("create");
        let txn = db.begin_write().expect("txn");
        {
            let mut table = txn.open_table(table).expect("table");
            for (k, v) in entries {
                table.insert(*k, *v).expect("insert");
            }
        }
        txn.commit().expect("commit");
    }

    fn record(ip: &str) -> AllocationRecord {
        AllocationRecord::new(vec![ip.parse().expect("net")], vec![None])
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

    /// Keys and values as agents have written them since the first store:
    /// the format must not change, or a restarted agent forgets its pods.
    const GOLDEN: [(&str, &str); 3] = [
        (
            "pods/c%2F1%25/eth0",
            r#"{"ips":["10.32.0.2/32"],"gateways":["10.32.0.1"]}"#,
        ),
        // The node's own bridge address (network "").
        (
            "/gateway/bridge",
            r#"{"ips":["10.32.0.1/16"],"gateways":[null]}"#,
        ),
        // Written before records had gateways.
        ("pods/c2/net1", r#"{"ips":["10.32.0.3/26"]}"#),
    ];

    fn golden_allocations() -> [(AttachmentKey, AllocationRecord); 3] {
        let gw = Some("10.32.0.1".parse().expect("ip"));
        [
            (
                AttachmentKey::new("pods", "c/1%", "eth0"),
                AllocationRecord::new(vec!["10.32.0.2/32".parse().expect("net")], vec![gw]),
            ),
            (
                AttachmentKey::gateway(),
                AllocationRecord::new(vec!["10.32.0.1/16".parse().expect("net")], vec![None]),
            ),
            (
                AttachmentKey::new("pods", "c2", "net1"),
                AllocationRecord::new(vec!["10.32.0.3/26".parse().expect("net")], vec![]),
            ),
        ]
    }

    #[test]
    fn allocations_written_in_the_existing_format_load() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("agent.redb");
        let raw = GOLDEN.map(|(k, v)| (k, v.as_bytes()));
        write_raw(&path, ALLOCATIONS, &raw);
        let (store, _) = Store::open(&path, || PeerId::from_u128(4)).expect("open");
        let loaded = store.snapshot().expect("read").allocations;
        assert_eq!(loaded, BTreeMap::from(golden_allocations()));
    }

    #[test]
    fn allocations_are_written_in_the_existing_format() {
        for ((key, _), (golden, _)) in golden_allocations().iter().zip(GOLDEN) {
            assert_eq!(encode_key(key), golden);
            assert_eq!(decode_key(golden).as_ref(), Some(key));
        }
        assert_eq!(decode_key("no-slashes"), None);
        assert_eq!(decode_key("pods/c1"), None);

        // The records with gateways come back byte for byte.
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("agent.redb");
        let (store, _) = Store::open(&path, || PeerId::from_u128(5)).expect("open");
        let put = golden_allocations()[..2].to_vec();
        store
            .commit(&Change {
                put,
                ..Change::default()
            })
            .expect("commit");
        let txn = store.db.begin_read().expect("txn");
        let table = txn.open_table(ALLOCATIONS).expect("table");
        for (k, v) in &GOLDEN[..2] {
            let stored = table.get(*k).expect("get").expect("present");
            assert_eq!(stored.value(), v.as_bytes(), "{k}");
        }
    }

    #[test]
    fn a_corrupt_identity_is_an_error_not_a_new_identity() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("agent.redb");
        write_raw(&path, META, &[(PEER_ID, b"short")]);
        let err = Store::open(&path, || PeerId::from_u128(3))
            .err()
            .expect("refused");
        assert!(matches!(err, StoreError::Corrupt { .. }), "{err}");
    }
}
