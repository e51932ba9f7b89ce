//! The node's side of the ring protocol: messages from peers, timers,
//! digests, free-space reports, donations, claims, stepping down, and the
//! reconciliation of its blocks with the ring.

use super::*;

impl<K: Clone + Eq + Hash + Ord> Node<K> {
    /// Handle a message from peer `from`.
    pub fn handle_message(&mut self, now: Duration, from: PeerId, message: Message) {
        match message {
            Message::SpaceRequest => self.donate(now, from),
            Message::SpaceDenied => {
                if self.request.is_some_and(|(p, _)| p == from) {
                    self.request = None;
                }
            }
            Message::Claim { addresses } => self.grant_claims(from, addresses),
            Message::ClaimReply { granted, refused } => {
                for ip in granted {
                    if let Some(f) = self.foreign.get_mut(&ip)
                        && f.owner == from
                    {
                        f.state = ClaimState::Granted;
                    }
                }
                for ip in refused {
                    if let Some(f) = self.foreign.get_mut(&ip)
                        && f.owner == from
                        && f.state != ClaimState::Refused
                    {
                        f.state = ClaimState::Refused;
                        self.outbox
                            .push_back(Output::Anomaly(Anomaly::ClaimConflict {
                                address: ip,
                                claimant: self.id.peer,
                                owner: from,
                            }));
                    }
                }
            }
            Message::ReleaseClaim { addresses } => {
                for ip in addresses {
                    if let Some(b) = self.block_of_mut(ip)
                        && b.alloc.owner(ip) == Some(&Holder::Peer(from))
                    {
                        let _ = b.alloc.release(ip);
                    }
                }
            }
            Message::Delta(delta) => {
                self.handle_delta(now, &delta);
            }
            Message::Digest { digest, reply } => {
                let ours = self.digest(digest.bucket_bits());
                let Some(buckets) = ours.differing(&digest) else {
                    self.outbox
                        .push_back(Output::Anomaly(Anomaly::GenesisMismatch {
                            ours: self.ring.genesis().id(),
                            theirs: digest.genesis(),
                        }));
                    return;
                };
                if !buckets.is_empty() || ours.tombstone_hash() != digest.tombstone_hash() {
                    let delta = self.ring.delta_for_buckets(digest.bucket_bits(), &buckets);
                    self.outbox.push_back(Output::Send {
                        to: from,
                        message: Message::Delta(delta),
                    });
                    if reply {
                        self.outbox.push_back(Output::Send {
                            to: from,
                            message: Message::Digest {
                                digest: ours,
                                reply: false,
                            },
                        });
                    }
                }
            }
        }
    }

    /// Timers: re-identify after a step-down, keep the reserve (ask a donor
    /// chosen at random weighted by advertised free space when usable free
    /// space is below the low-water mark), repeat unanswered claims, and
    /// publish coarsened free counts.
    ///
    /// ```
    /// use overlay_ipam::ring::{Identity, Message, Node, NodeConfig, Output, Ring};
    /// use overlay_core::PeerId;
    /// use rand::SeedableRng;
    /// use std::time::Duration;
    ///
    /// let (a, b, c) = (PeerId::from_u128(1), PeerId::from_u128(2), PeerId::from_u128(3));
    /// let ring = Ring::from_seeds("198.18.0.0/24".parse().unwrap(), 28, &[a, b]).unwrap();
    /// let mut nc = Node::<u32>::new(Identity::new(c, 1), ring, NodeConfig::default());
    /// let mut rng = rand::rngs::StdRng::seed_from_u64(9);
    /// nc.handle_timeout(Duration::ZERO, &mut rng);
    /// let Some(Output::Send { to, message: Message::SpaceRequest }) = nc.poll_output() else { panic!() };
    /// assert!(to == a || to == b);
    /// // Not again before the retry interval.
    /// nc.handle_timeout(Duration::from_millis(100), &mut rng);
    /// assert_eq!(nc.poll_output(), None);
    /// ```
    pub fn handle_timeout(&mut self, now: Duration, rng: &mut impl Rng) {
        if self.retired.is_some() {
            let old = self.id;
            self.id = Identity::random(rng);
            self.retired = None;
            self.request = None;
            self.outbox
                .push_back(Output::Reidentified { old, new: self.id });
            self.reconcile(now, true);
            self.send_claims(now, true);
            return;
        }
        self.send_claims(now, false);
        self.report_free(now);
        if self.usable_free(now) >= self.config.low_water {
            return;
        }
        if let Some((_, sent)) = self.request
            && now < sent + self.config.retry
        {
            return;
        }
        self.request = None;
        let donors: Vec<(PeerId, u64)> = self
            .ring
            .free_by_owner()
            .into_iter()
            .filter(|(p, free)| *p != self.id.peer && *free > 0)
            .collect();
        let total: u64 = donors.iter().map(|(_, f)| *f).sum();
        if total == 0 {
            return;
        }
        let mut pick = rng.random_range(0..total);
        for (peer, free) in donors {
            if pick < free {
                self.request = Some((peer, now));
                self.outbox.push_back(Output::Send {
                    to: peer,
                    message: Message::SpaceRequest,
                });
                return;
            }
            pick -= free;
        }
    }

    /// An anti-entropy opener for `to`: our digest with `bucket_bits` bits
    /// of buckets.
    ///
    /// ```
    /// use overlay_ipam::ring::{Identity, Message, Node, NodeConfig, Output, Ring};
    /// use overlay_core::PeerId;
    /// use std::time::Duration;
    ///
    /// let (a, b) = (PeerId::from_u128(1), PeerId::from_u128(2));
    /// let ring = Ring::from_seeds("198.18.0.0/24".parse().unwrap(), 28, &[a, b]).unwrap();
    /// let mut na = Node::<u32>::new(Identity::new(a, 1), ring.clone(), NodeConfig::default());
    /// let mut nb = Node::<u32>::new(Identity::new(b, 1), ring, NodeConfig::default());
    /// na.allocate(Duration::from_secs(10), 1).unwrap();
    /// na.handle_timeout(Duration::from_secs(10), &mut rand::rngs::StdRng::from_seed([0; 32]));
    /// while na.poll_output().is_some() {} // the free-count broadcast is lost
    /// // Anti-entropy repairs it: b answers a's digest with its own, a sends the difference.
    /// nb.handle_message(Duration::ZERO, a, na.digest_message(4));
    /// while let Some(Output::Send { message, .. }) = nb.poll_output() {
    ///     na.handle_message(Duration::ZERO, b, message);
    /// }
    /// while let Some(Output::Send { message, .. }) = na.poll_output() {
    ///     nb.handle_message(Duration::ZERO, a, message);
    /// }
    /// assert_eq!(na.ring(), nb.ring());
    /// # use rand::SeedableRng;
    /// ```
    pub fn digest_message(&mut self, bucket_bits: u8) -> Message {
        Message::Digest {
            digest: self.digest(bucket_bits),
            reply: true,
        }
    }

    /// The ring's digest, cached until the ring changes.
    pub(super) fn digest(&mut self, bucket_bits: u8) -> Digest {
        match &self.digest_cache {
            Some(d) if d.bucket_bits() == self.ring.digest_bits(bucket_bits) => d.clone(),
            _ => {
                let d = self.ring.digest(bucket_bits);
                self.digest_cache = Some(d.clone());
                d
            }
        }
    }

    pub(super) fn report_free(&mut self, now: Duration) {
        if self
            .last_free_report
            .is_some_and(|t| now < t + self.config.free_report_interval)
        {
            return;
        }
        let me = self.id.peer;
        let mut records = Vec::new();
        let candidates: Vec<(IpNet, u32)> = self
            .blocks
            .values()
            .filter(|b| b.usable_at <= now)
            .filter_map(|b| {
                let free = u32::try_from(b.alloc.free()).unwrap_or(u32::MAX);
                let size = u32::try_from(b.alloc.size()).unwrap_or(u32::MAX);
                // Coarsened: publish when the count moved by an eighth of
                // the block, or reached or left zero.
                let moved = free.abs_diff(b.reported_free) >= (size / 8).max(1)
                    || (free == 0) != (b.reported_free == 0);
                moved.then_some((b.net, free))
            })
            .collect();
        for (net, free) in candidates {
            if let Ok(r) = self.ring.write(me, net, me, free) {
                records.push(r);
            }
        }
        if records.is_empty() {
            return;
        }
        self.last_free_report = Some(now);
        self.reconcile(now, true);
        for r in &records {
            if let Some(b) = self.blocks.get_mut(&to_bits(r.block.network())) {
                b.reported_free = r.stamp.free;
            }
        }
        self.broadcast(records);
    }

    pub(super) fn broadcast(&mut self, records: Vec<Record>) {
        let mut delta = Delta::new(self.ring.genesis().id());
        delta.records = records;
        self.outbox.push_back(Output::Broadcast(delta));
    }

    pub(super) fn donate(&mut self, now: Duration, to: PeerId) {
        let deny = Output::Send {
            to,
            message: Message::SpaceDenied,
        };
        if self.retired.is_some() || to == self.id.peer {
            self.outbox.push_back(deny);
            return;
        }
        let Some(block) = self.donatable(now) else {
            self.outbox.push_back(deny);
            return;
        };
        let free = u32::try_from(crate::ring::state::host_size(
            block.max_prefix_len(),
            block.prefix_len(),
        ))
        .unwrap_or(u32::MAX);
        match self.ring.write(self.id.peer, block, to, free) {
            Ok(record) => {
                self.reconcile(now, true);
                let mut delta = Delta::new(self.ring.genesis().id());
                delta.records.push(record);
                self.outbox.push_back(Output::Broadcast(delta.clone()));
                self.outbox.push_back(Output::Send {
                    to,
                    message: Message::Delta(delta),
                });
            }
            Err(_) => self.outbox.push_back(deny),
        }
    }

    /// The largest free aligned block (no smaller than the ring's minimum)
    /// inside an unquarantined owned block, of at most half the usable free
    /// space; the highest address among equals (the donor allocates from
    /// the bottom of its blocks).
    pub(super) fn donatable(&self, now: Duration) -> Option<IpNet> {
        let half = self.usable_free(now) / 2;
        let min_len = self.ring.genesis().min_block_len();
        let mut best: Option<(u8, u128)> = None;
        for b in self.blocks.values().filter(|b| b.usable_at <= now) {
            let width = b.net.max_prefix_len();
            let (lo, hi) = (to_bits(b.net.network()), to_bits(b.net.broadcast()));
            let mut cursor = lo;
            let used: Vec<u128> = b.alloc.iter().map(|(ip, _)| to_bits(ip)).collect();
            let gaps = used
                .iter()
                .map(|&u| (u, true))
                .chain(std::iter::once((hi, false)));
            for (bound, is_used) in gaps {
                let gap_last = if is_used {
                    bound.checked_sub(1)
                } else {
                    Some(bound)
                };
                if let Some(gap_last) = gap_last
                    && cursor <= gap_last
                {
                    for (first, len) in cidr_cover(cursor, gap_last, width) {
                        if len > min_len {
                            continue;
                        }
                        // Shrink to the cap (at most half the free space),
                        // keeping the top of the free block.
                        let orig = crate::ring::state::host_size(width, len);
                        let mut len = len;
                        while len < min_len
                            && u64::try_from(crate::ring::state::host_size(width, len))
                                .map_or(true, |s| s > half)
                        {
                            len += 1;
                        }
                        let size = crate::ring::state::host_size(width, len);
                        if u64::try_from(size).map_or(true, |s| s > half) {
                            continue;
                        }
                        let first = first + (orig - size);
                        if best.is_none_or(|(bl, bf)| len < bl || (len == bl && first > bf)) {
                            best = Some((len, first));
                        }
                    }
                }
                cursor = bound.saturating_add(1);
            }
        }
        let like = self.ring.genesis().universe().addr();
        best.map(|(len, first)| net_of(like, first, len))
    }

    pub(super) fn grant_claims(&mut self, from: PeerId, addresses: Vec<IpAddr>) {
        let (mut granted, mut refused) = (Vec::new(), Vec::new());
        for ip in addresses {
            let me = self.id.peer;
            let Some(b) = self.block_of_mut(ip) else {
                // Not ours (any more): the claimant asks the owner it sees.
                continue;
            };
            match b.alloc.owner(ip) {
                None => {
                    if b.alloc.allocate(ip, Holder::Peer(from)).is_ok() {
                        granted.push(ip);
                    }
                }
                Some(Holder::Peer(p)) if *p == from => granted.push(ip),
                Some(_) => {
                    refused.push(ip);
                    self.outbox
                        .push_back(Output::Anomaly(Anomaly::ClaimConflict {
                            address: ip,
                            claimant: from,
                            owner: me,
                        }));
                }
            }
        }
        if !granted.is_empty() || !refused.is_empty() {
            self.outbox.push_back(Output::Send {
                to: from,
                message: Message::ClaimReply { granted, refused },
            });
        }
    }

    pub(super) fn step_down(&mut self, _now: Duration) {
        let heir = self
            .ring
            .tombstone_of(self.id.peer)
            .map_or(self.id.peer, |t| t.heir);
        self.outbox.push_back(Output::Anomaly(Anomaly::SteppedDown {
            peer: self.id.peer,
            heir,
        }));
        self.retired = Some(self.id.peer);
        let blocks = std::mem::take(&mut self.blocks);
        for b in blocks.into_values() {
            for (ip, h) in b.alloc.iter() {
                if let Holder::Pod(k) = h {
                    let owner = self.ring.entry_at(ip).map_or(heir, |e| e.owner);
                    self.foreign.insert(
                        ip,
                        Foreign {
                            key: k.clone(),
                            owner,
                            state: ClaimState::Pending { sent: None },
                        },
                    );
                }
            }
        }
    }

    /// Bring the owned blocks in line with the ring's view: keep unchanged
    /// blocks, build allocators for new ones (quarantined if adopted), move
    /// live allocations, and turn allocations in blocks we lost into
    /// claims. Steps down if the ring has a tombstone for us.
    pub(super) fn reconcile(&mut self, now: Duration, quarantine_new: bool) {
        self.digest_cache = None;
        if self.retired.is_some() {
            return;
        }
        if self.ring.tombstone_of(self.id.peer).is_some() {
            self.step_down(now);
            return;
        }
        let me = self.id.peer;
        let mine: Vec<Entry> = self.ring.entries_of(me);
        let unchanged = mine.len() == self.blocks.len()
            && mine.iter().all(|e| {
                self.blocks
                    .get(&to_bits(e.block.network()))
                    .is_some_and(|b| b.net == e.block)
            });
        if !unchanged {
            let mut old = std::mem::take(&mut self.blocks);
            let mut moved: Vec<(IpAddr, Holder<K>)> = Vec::new();
            for e in &mine {
                let key = to_bits(e.block.network());
                if old.get(&key).is_some_and(|b| b.net == e.block)
                    && let Some(b) = old.remove(&key)
                {
                    self.blocks.insert(key, b);
                    continue;
                }
                let Ok(alloc) = IpAllocator::for_range(e.block.network(), e.block.broadcast())
                else {
                    continue;
                };
                self.blocks.insert(
                    key,
                    Block {
                        net: e.block,
                        alloc,
                        usable_at: if e.is_adopted() && quarantine_new {
                            now + self.config.quarantine
                        } else {
                            Duration::ZERO
                        },
                        adopted: e.is_adopted(),
                        reported_free: e.free,
                    },
                );
            }
            let quarantine: Vec<(IpNet, Duration, bool)> = old
                .values()
                .map(|b| (b.net, b.usable_at, b.adopted))
                .collect();
            for b in old.into_values() {
                moved.extend(b.alloc.iter().map(|(ip, h)| (ip, h.clone())));
            }
            // A reshaped block keeps the quarantine of the blocks it came from.
            for b in self.blocks.values_mut() {
                for (net, until, adopted) in &quarantine {
                    if b.net.contains(&net.network()) || net.contains(&b.net.network()) {
                        b.usable_at = b.usable_at.max(*until);
                        b.adopted |= *adopted;
                    }
                }
            }
            for (ip, h) in moved {
                let placed = self
                    .block_of_mut(ip)
                    .map(|b| b.alloc.allocate(ip, h.clone()).is_ok())
                    .unwrap_or(false);
                if !placed
                    && let Holder::Pod(key) = h
                    && let Some(e) = self.ring.entry_at(ip)
                {
                    self.foreign.insert(
                        ip,
                        Foreign {
                            key,
                            owner: e.owner,
                            state: ClaimState::Pending { sent: None },
                        },
                    );
                }
            }
        }
        // Claimed addresses that are now in our blocks come home; those
        // whose owner changed are claimed from the new owner.
        let ips: Vec<IpAddr> = self.foreign.keys().copied().collect();
        for ip in ips {
            let Some(f) = self.foreign.get(&ip).cloned() else {
                continue;
            };
            if f.state == ClaimState::Refused {
                continue;
            }
            if let Some(b) = self.block_of_mut(ip) {
                if b.alloc.allocate(ip, Holder::Pod(f.key.clone())).is_ok()
                    || b.alloc.owner(ip) == Some(&Holder::Pod(f.key.clone()))
                {
                    self.foreign.remove(&ip);
                }
                continue;
            }
            if let Some(e) = self.ring.entry_at(ip)
                && e.owner != f.owner
                && let Some(slot) = self.foreign.get_mut(&ip)
            {
                slot.owner = e.owner;
                slot.state = ClaimState::Pending { sent: None };
            }
        }
    }

    /// Send claims that are pending and due (all pending ones if `all`).
    pub(super) fn send_claims(&mut self, now: Duration, all: bool) {
        if self.retired.is_some() {
            return;
        }
        let retry = self.config.retry;
        let mut by_owner: BTreeMap<PeerId, Vec<IpAddr>> = BTreeMap::new();
        let mut fresh: BTreeMap<PeerId, usize> = BTreeMap::new();
        for (ip, f) in self.foreign.iter_mut() {
            if let ClaimState::Pending { sent } = f.state
                && (all || sent.is_none_or(|t| now >= t + retry))
                && f.owner != self.id.peer
            {
                if sent.is_none() {
                    *fresh.entry(f.owner).or_default() += 1;
                }
                f.state = ClaimState::Pending { sent: Some(now) };
                by_owner.entry(f.owner).or_default().push(*ip);
            }
        }
        for (owner, count) in fresh {
            self.outbox
                .push_back(Output::Anomaly(Anomaly::LostAllocations { owner, count }));
        }
        for (to, addresses) in by_owner {
            self.outbox.push_back(Output::Send {
                to,
                message: Message::Claim { addresses },
            });
        }
    }
}
