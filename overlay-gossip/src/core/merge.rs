//! Merging received records into the view: live peers, tombstones, SWIM's
//! verdicts and garbage collection.

use super::*;

impl Gossip {
    /// Merges a received record; returns true when it changed the view.
    pub(super) fn merge(
        &mut self,
        now: Duration,
        rec: PeerRecord,
        sender: PeerId,
        key: Option<[u8; 32]>,
    ) -> bool {
        if rec.validate().is_err() {
            self.counters.rejected.malformed += 1;
            return false;
        }
        if rec.id == self.me {
            // Someone holds a newer record of ours than we do (we restarted
            // with a stale incarnation): take a larger incarnation.
            if rec.stamp() > self.local().stamp() && !self.left {
                let mut own = self.local().clone();
                own.incarnation = rec.incarnation.saturating_add(1);
                own.version = 0;
                self.replace_own(now, own);
            }
            return false;
        }
        if rec.id == sender
            && let Some(k) = key
            && rec.noise_static != k
        {
            self.counters.rejected.key_mismatch += 1;
            return false;
        }
        if self.tombstones.get(&rec.id).is_some_and(|t| {
            (t.incarnation, t.version) >= rec.stamp()
                || (t.incarnation >= rec.incarnation && !rec.is_leaving())
        }) {
            self.counters.records_stale += 1;
            return false;
        }
        let current = self.peers.get(&rec.id).cloned();
        if let Some(cur) = &current {
            if cur.stamp() >= rec.stamp() {
                self.counters.records_stale += 1;
                return false;
            }
            // A key change within one incarnation is only believed from the
            // owner itself, authenticated by the new key.
            if cur.noise_static != rec.noise_static
                && cur.incarnation == rec.incarnation
                && !(rec.id == sender && key == Some(rec.noise_static))
            {
                self.counters.rejected.key_mismatch += 1;
                return false;
            }
        }
        self.counters.records_merged += 1;
        let id = rec.id;
        let budget = self.budget();
        self.pending.insert(id, budget);
        let rec = Arc::new(rec);
        if rec.is_leaving() {
            if current.is_some() {
                self.remove_live(now, id, Some(rec));
            } else {
                self.tombstones.insert(
                    id,
                    Tombstone {
                        incarnation: rec.incarnation,
                        version: rec.version,
                        expires: now + self.cfg.tombstone_ttl,
                        record: Some(rec),
                    },
                );
            }
            return true;
        }
        self.tombstones.remove(&id);
        let addr_changed = current.as_ref().is_none_or(|c| {
            c.incarnation != rec.incarnation || c.gossip_addr() != rec.gossip_addr()
        });
        if addr_changed && let Some(addr) = rec.gossip_addr() {
            self.swim.add_member(now, swim_id(&rec, addr));
        }
        let event = if current.is_some() {
            Event::PeerChanged((*rec).clone())
        } else {
            Event::PeerUp((*rec).clone())
        };
        self.insert_live(rec);
        self.push_event(event);
        true
    }

    pub(super) fn insert_live(&mut self, rec: Arc<PeerRecord>) {
        let id = rec.id;
        self.digest.add(&stamp_of(&rec));
        match self.peers.insert(id, rec) {
            Some(old) => self.digest.remove(&stamp_of(&old)),
            None => self.live_ids.push(id),
        }
    }

    pub(super) fn remove_live(
        &mut self,
        now: Duration,
        id: PeerId,
        leaving: Option<Arc<PeerRecord>>,
    ) {
        let Some(old) = self.peers.remove(&id) else {
            return;
        };
        self.digest.remove(&stamp_of(&old));
        if let Some(i) = self.live_ids.iter().position(|p| *p == id) {
            self.live_ids.swap_remove(i);
        }
        self.neighbours.retain(|p| *p != id);
        let (incarnation, version) = leaving.as_ref().map_or(old.stamp(), |r| r.stamp());
        if leaving.is_none() {
            self.pending.remove(&id);
        }
        self.tombstones.insert(
            id,
            Tombstone {
                incarnation,
                version,
                expires: now + self.cfg.tombstone_ttl,
                record: leaving,
            },
        );
        self.push_event(Event::PeerDown(id));
    }

    pub(super) fn drain_swim(&mut self, now: Duration) {
        while let Some((to, payload)) = self.swim.poll_send() {
            self.send_frames(to.addr, vec![Message::Swim(payload)]);
        }
        while let Some(ev) = self.swim.poll_event() {
            match ev {
                MemberEvent::Up(id) => {
                    if !self.peers.contains_key(&id.peer)
                        && self
                            .tombstones
                            .get(&id.peer)
                            .is_none_or(|t| t.incarnation < id.incarnation)
                    {
                        self.send_frames(id.addr, vec![Message::Pull(vec![id.peer])]);
                    }
                }
                MemberEvent::Down(id) => {
                    if self
                        .peers
                        .get(&id.peer)
                        .is_some_and(|r| r.incarnation <= id.incarnation)
                    {
                        self.remove_live(now, id.peer, None);
                    }
                }
                MemberEvent::Renewed(id) => {
                    let mut own = self.local().clone();
                    own.incarnation = own.incarnation.max(id.incarnation);
                    own.version += 1;
                    let incarnation = own.incarnation;
                    self.replace_own(now, own);
                    self.push_event(Event::Renewed { incarnation });
                }
            }
        }
    }

    pub(super) fn gc(&mut self, now: Duration) {
        self.tombstones.retain(|_, t| t.expires > now);
        self.pending.retain(|_, n| *n > 0);
        if self.pending.capacity() > 4 * self.pending.len().max(64) {
            self.pending.shrink_to_fit();
        }
    }
}
