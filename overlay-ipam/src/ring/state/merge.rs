//! Changing a ring: merging another replica or a delta (the max-register
//! per address and the grow-only tombstones, with the anomalies they
//! reveal), local writes, reclaims, and deltas for peers.

use super::*;

impl Ring {
    /// Merge `other` into `self`: for every address keep the greatest
    /// stamp, union the tombstones. Commutative, associative, idempotent and
    /// total: it never fails; a ring of another genesis is left out and
    /// reported.
    ///
    /// ```
    /// use overlay_ipam::ring::{Anomaly, Ring};
    /// use overlay_core::PeerId;
    ///
    /// let mut a = Ring::from_seeds("10.0.0.0/16".parse().unwrap(), 26, &[PeerId::from_u128(1)]).unwrap();
    /// let other = Ring::from_seeds("10.0.0.0/16".parse().unwrap(), 26, &[PeerId::from_u128(2)]).unwrap();
    /// let report = a.merge(&other);
    /// assert!(!report.changed);
    /// assert!(matches!(report.anomalies[0], Anomaly::GenesisMismatch { .. }));
    /// ```
    pub fn merge(&mut self, other: &Ring) -> MergeReport {
        if let Some(report) = self.mismatch(other.genesis) {
            return report;
        }
        let mut anomalies = Vec::new();
        let mut changed = false;
        if self.runs != other.runs {
            let merged = self.merge_runs(&other.runs, &mut anomalies);
            changed |= merged != self.runs;
            self.runs = merged;
        }
        changed |= self.merge_tombstones(other.tombstones(), &mut anomalies);
        finish(changed, anomalies)
    }

    pub(super) fn mismatch(&self, theirs: Genesis) -> Option<MergeReport> {
        (theirs != self.genesis).then(|| MergeReport {
            changed: false,
            anomalies: vec![Anomaly::GenesisMismatch {
                ours: self.genesis.id,
                theirs: theirs.id,
            }],
        })
    }

    pub(super) fn merge_runs(&self, theirs: &[Run], anomalies: &mut Vec<Anomaly>) -> Vec<Run> {
        let ours = &self.runs;
        let last = self.genesis.last();
        let end = |runs: &[Run], i: usize| runs.get(i + 1).map_or(last, |r| r.first - 1);
        let mut out: Vec<Run> = Vec::with_capacity(ours.len().max(theirs.len()));
        let (mut i, mut j) = (0, 0);
        let mut pos = self.genesis.first();
        loop {
            let (ea, eb) = (end(ours, i), end(theirs, j));
            let seg_last = ea.min(eb);
            let (sa, sb) = (ours[i].stamp, theirs[j].stamp);
            self.note_conflict(pos, seg_last, sa, sb, anomalies);
            push_run(&mut out, pos, sa.max(sb));
            if seg_last == last {
                break;
            }
            pos = seg_last + 1;
            if ea == seg_last {
                i += 1;
            }
            if eb == seg_last {
                j += 1;
            }
        }
        out
    }

    pub(super) fn note_conflict(
        &self,
        first: u128,
        last: u128,
        a: Stamp,
        b: Stamp,
        anomalies: &mut Vec<Anomaly>,
    ) {
        // Two fences (version 0 above epoch 0) of one block race when two
        // reclaims overlap (a peer and the peer it donated to, or a double
        // reclaim); they resolve to the lowest heir and the tombstones say
        // whether heirs conflict. Equal owner writes are two writers.
        let fences = a.version == 0 && a.epoch > 0;
        if a == b || a.epoch != b.epoch || a.version != b.version || fences {
            return;
        }
        let (lo, hi) = if a < b { (a, b) } else { (b, a) };
        let like = self.genesis.universe.addr();
        if let Some(Anomaly::ConcurrentWrite {
            last: prev_last,
            a: pa,
            b: pb,
            ..
        }) = anomalies.last_mut()
            && *pa == lo
            && *pb == hi
            && to_bits(*prev_last).checked_add(1) == Some(first)
        {
            *prev_last = from_bits(like, last);
            return;
        }
        anomalies.push(Anomaly::ConcurrentWrite {
            first: from_bits(like, first),
            last: from_bits(like, last),
            a: lo,
            b: hi,
        });
    }

    pub(super) fn merge_tombstones(
        &mut self,
        incoming: impl IntoIterator<Item = Tombstone>,
        anomalies: &mut Vec<Anomaly>,
    ) -> bool {
        let mut changed = false;
        let mut touched = BTreeSet::new();
        for t in incoming {
            if t.peer == t.heir {
                anomalies.push(Anomaly::InvalidTombstone { peer: t.peer });
                continue;
            }
            let heirs = self.tombstones.entry(t.peer).or_default();
            let before = heirs.len();
            let slot = heirs.entry(t.heir).or_insert(t.up_to_incarnation);
            if *slot < t.up_to_incarnation {
                *slot = t.up_to_incarnation;
                changed = true;
            }
            if heirs.len() != before {
                changed = true;
                touched.insert(t.peer);
            }
        }
        for peer in touched {
            if let Some(heirs) = self.tombstones.get(&peer)
                && heirs.len() > 1
            {
                anomalies.push(Anomaly::ConflictingHeirs {
                    peer,
                    heirs: heirs.keys().copied().collect(),
                });
            }
        }
        changed
    }

    /// Apply a delta (gossip): each record as a merge of its block, each
    /// tombstone added. Total like [`merge`](Self::merge): records that are
    /// not blocks of this ring are skipped and reported, a delta of another
    /// genesis is reported and ignored.
    ///
    /// ```
    /// use overlay_ipam::ring::{Anomaly, Delta, Record, Ring, Stamp};
    /// use overlay_core::PeerId;
    ///
    /// let p = PeerId::from_u128(1);
    /// let mut ring = Ring::from_seeds("10.0.0.0/16".parse().unwrap(), 26, &[p]).unwrap();
    /// let mut d = Delta::new(ring.genesis().id());
    /// let stamp = Stamp { epoch: 0, version: 1, owner: p, free: 10 };
    /// d.records.push(Record { block: "10.0.0.0/26".parse().unwrap(), stamp });
    /// d.records.push(Record { block: "192.0.2.0/26".parse().unwrap(), stamp }); // outside (#3003)
    /// let report = ring.apply(&d);
    /// assert!(report.changed);
    /// assert_eq!(report.anomalies, [Anomaly::InvalidRecord { block: "192.0.2.0/26".parse().unwrap() }]);
    /// ```
    pub fn apply(&mut self, delta: &Delta) -> MergeReport {
        if delta.genesis != self.genesis.id {
            return MergeReport {
                changed: false,
                anomalies: vec![Anomaly::GenesisMismatch {
                    ours: self.genesis.id,
                    theirs: delta.genesis,
                }],
            };
        }
        let mut anomalies = Vec::new();
        let mut changed = false;
        for r in &delta.records {
            if !self.is_block(r.block) {
                anomalies.push(Anomaly::InvalidRecord { block: r.block });
                continue;
            }
            let first = to_bits(r.block.network());
            let last = to_bits(r.block.broadcast());
            changed |= self.apply_range(first, last, r.stamp, &mut anomalies);
        }
        changed |= self.merge_tombstones(delta.tombstones.iter().copied(), &mut anomalies);
        finish(changed, anomalies)
    }

    /// Merge `stamp` over `lo..=hi` (inside the universe).
    pub(super) fn apply_range(
        &mut self,
        lo: u128,
        hi: u128,
        stamp: Stamp,
        anomalies: &mut Vec<Anomaly>,
    ) -> bool {
        let start = self.run_index(lo);
        let end = self.run_index(hi);
        // Include one neighbour on each side so runs coalesce.
        let k0 = start.saturating_sub(1);
        let k1 = (end + 1).min(self.runs.len() - 1);
        let mut repl: Vec<Run> = Vec::with_capacity(k1 - k0 + 3);
        for k in k0..=k1 {
            let run = self.runs[k];
            let run_last = self.run_last(k);
            if run.first < lo {
                push_run(&mut repl, run.first, run.stamp);
            }
            let (a, b) = (run.first.max(lo), run_last.min(hi));
            if a <= b {
                self.note_conflict(a, b, run.stamp, stamp, anomalies);
                push_run(&mut repl, a, run.stamp.max(stamp));
            }
            if run_last > hi {
                push_run(&mut repl, run.first.max(hi + 1), run.stamp);
            }
        }
        if repl[..] == self.runs[k0..=k1] {
            return false;
        }
        self.runs.splice(k0..=k1, repl);
        true
    }

    /// An owner's write: `writer`, owning all of `block` in the view, gives
    /// it to `owner` (itself, to update `free`, or another peer: a
    /// donation) with a stamp above every stamp in the block. Returns the
    /// record to gossip.
    ///
    /// ```
    /// use overlay_ipam::ring::{Ring, WriteError};
    /// use overlay_core::PeerId;
    ///
    /// let (a, b) = (PeerId::from_u128(1), PeerId::from_u128(2));
    /// let mut ring = Ring::from_seeds("10.0.0.0/16".parse().unwrap(), 26, &[a, b]).unwrap();
    /// let r = ring.write(a, "10.0.0.0/17".parse().unwrap(), a, 100).unwrap();
    /// assert_eq!((r.stamp.version, r.stamp.free), (1, 100));
    /// // Only the owner writes.
    /// let refused = ring.write(b, "10.0.0.0/26".parse().unwrap(), b, 0);
    /// assert!(matches!(refused, Err(WriteError::NotOwner { .. })));
    /// ```
    pub fn write(
        &mut self,
        writer: PeerId,
        block: IpNet,
        owner: PeerId,
        free: u32,
    ) -> Result<Record, WriteError> {
        if !self.is_block(block) {
            return Err(WriteError::NotABlock(block));
        }
        if self.tombstones.contains_key(&owner) {
            return Err(WriteError::DeadOwner(owner));
        }
        let lo = to_bits(block.network());
        let hi = to_bits(block.broadcast());
        let mut top: Option<(u32, u64)> = None;
        for k in self.run_index(lo)..=self.run_index(hi) {
            let view = self.view_stamp(self.runs[k].stamp);
            if view.owner != writer {
                return Err(WriteError::NotOwner { block, writer });
            }
            let key = (view.epoch, view.version);
            top = Some(top.map_or(key, |t| t.max(key)));
        }
        let (epoch, version) = top.unwrap_or((0, 0));
        let version = version
            .checked_add(1)
            .ok_or(WriteError::VersionExhausted(block))?;
        let stamp = Stamp {
            epoch,
            version,
            owner,
            free,
        };
        let mut ignored = Vec::new();
        self.apply_range(lo, hi, stamp, &mut ignored);
        Ok(Record { block, stamp })
    }

    /// Reclaim a dead peer: add `tombstone` and write the fencing records
    /// (every view block of the dead peer becomes the heir's, epoch + 1,
    /// version 0). Returns the delta to gossip. A peer's later writes carry
    /// the old epoch and lose to the fence whatever their version.
    ///
    /// ```
    /// use overlay_ipam::ring::{Ring, Stamp, Tombstone};
    /// use overlay_core::PeerId;
    ///
    /// let (p, heir) = (PeerId::from_u128(1), PeerId::from_u128(2));
    /// let mut ring = Ring::from_seeds("10.0.0.0/16".parse().unwrap(), 26, &[p, heir]).unwrap();
    /// let delta = ring.reclaim(Tombstone { peer: p, up_to_incarnation: 0, heir }).unwrap();
    /// assert_eq!(delta.records[0].stamp, Stamp { epoch: 1, version: 0, owner: heir, free: 32768 });
    /// assert!(ring.entries().iter().all(|e| e.owner == heir));
    /// ```
    pub fn reclaim(&mut self, tombstone: Tombstone) -> Result<Delta, ReclaimError> {
        if tombstone.peer == tombstone.heir {
            return Err(ReclaimError::SelfHeir(tombstone.peer));
        }
        let mut delta = Delta::new(self.genesis.id);
        for e in self.entries_of(tombstone.peer) {
            delta.records.push(Record {
                block: e.block,
                stamp: Stamp {
                    epoch: e.epoch.saturating_add(1),
                    version: 0,
                    owner: tombstone.heir,
                    free: e.free,
                },
            });
        }
        delta.tombstones.push(tombstone);
        self.apply(&delta);
        Ok(delta)
    }

    /// The whole state as one delta (records of every run, every
    /// tombstone): what a new replica needs.
    ///
    /// ```
    /// use overlay_ipam::ring::Ring;
    /// use overlay_core::PeerId;
    ///
    /// let (a, b) = (PeerId::from_u128(1), PeerId::from_u128(2));
    /// let mut x = Ring::from_seeds("10.0.0.0/16".parse().unwrap(), 26, &[a, b]).unwrap();
    /// let mut y = x.clone();
    /// x.write(a, "10.0.0.64/26".parse().unwrap(), b, 1).unwrap();
    /// y.apply(&x.to_delta());
    /// assert_eq!(x, y);
    /// ```
    pub fn to_delta(&self) -> Delta {
        self.delta_between(self.genesis.first(), self.genesis.last())
    }

    /// The records of every run inside `lo..=hi` (clipped), and every
    /// tombstone.
    pub(crate) fn delta_between(&self, lo: u128, hi: u128) -> Delta {
        let mut delta = Delta::new(self.genesis.id);
        let like = self.genesis.universe.addr();
        let width = self.genesis.width();
        for k in self.run_index(lo)..=self.run_index(hi) {
            let run = self.runs[k];
            let (a, b) = (run.first.max(lo), self.run_last(k).min(hi));
            for (first, len) in cidr_cover(a, b, width) {
                delta.records.push(Record {
                    block: net_of(like, first, len),
                    stamp: run.stamp,
                });
            }
        }
        delta.tombstones = self.tombstones();
        delta
    }
}
