//! Dissemination: the gossip rounds to a bounded set of neighbours, the
//! anti-entropy digest exchange and its drill-down, and the framing of
//! what goes out.

use super::*;

impl Gossip {
    /// Sends per change: `retransmit_mult · ⌈log2(N + 1)⌉`, at least fan-out.
    pub(super) fn budget(&self) -> u32 {
        let n = self.peers.len() as u32 + 1;
        let log = u32::BITS - n.leading_zeros();
        (self.cfg.retransmit_mult * log).max(self.cfg.fanout as u32)
    }

    pub(super) fn refresh_neighbours(&mut self) {
        let limit = self.cfg.max_neighbours.min(self.live_ids.len());
        if self.live_ids.len() <= self.cfg.max_neighbours {
            if self.neighbours.len() != self.live_ids.len() {
                self.neighbours = self.live_ids.clone();
            }
            return;
        }
        let mut tries = 0;
        while self.neighbours.len() < limit && tries < 4 * limit {
            tries += 1;
            let c = self.live_ids[self.rng.random_range(0..self.live_ids.len())];
            if !self.neighbours.contains(&c) {
                self.neighbours.push(c);
            }
        }
    }

    pub(super) fn choose_targets(&mut self, k: usize) -> Vec<PeerId> {
        self.refresh_neighbours();
        let n = self.neighbours.len();
        if n <= k {
            return self.neighbours.clone();
        }
        let mut out = Vec::with_capacity(k);
        while out.len() < k {
            let c = self.neighbours[self.rng.random_range(0..n)];
            if !out.contains(&c) {
                out.push(c);
            }
        }
        out
    }

    pub(super) fn addr_of(&self, id: PeerId) -> Option<SocketAddr> {
        self.peers.get(&id).and_then(|r| r.gossip_addr())
    }

    pub(super) fn record_for_send(&self, id: PeerId) -> Option<Arc<PeerRecord>> {
        self.peers
            .get(&id)
            .cloned()
            .or_else(|| self.tombstones.get(&id).and_then(|t| t.record.clone()))
    }

    pub(super) fn gossip_round(&mut self) {
        if self.pending.is_empty() && self.broadcasts.is_empty() {
            return;
        }
        let targets = self.choose_targets(self.cfg.fanout);
        if targets.is_empty() {
            return;
        }
        // The freshest changes (most sends left) first, as many as fit one
        // frame; every target gets the same coalesced frame.
        let mut order: Vec<(u32, PeerId)> = self.pending.iter().map(|(id, n)| (*n, *id)).collect();
        order.sort_unstable_by(|a, b| b.cmp(a));
        let mut size = HEADER_LEN + 1;
        let mut batch = Vec::new();
        for (_, id) in order {
            let Some(rec) = self.record_for_send(id) else {
                self.pending.remove(&id);
                continue;
            };
            let len = 2 + rec.buffer_len();
            if size + len > MAX_FRAME_LEN || batch.len() == usize::from(u8::MAX) {
                break;
            }
            size += len;
            batch.push(rec);
        }
        let sent = targets.len() as u32;
        for rec in &batch {
            if let Some(n) = self.pending.get_mut(&rec.id) {
                *n = n.saturating_sub(sent);
                if *n == 0 {
                    self.pending.remove(&rec.id);
                }
            }
        }
        let mut msgs = Vec::new();
        if !batch.is_empty() {
            msgs.push(Message::Records(
                batch.iter().map(|r| (**r).clone()).collect(),
            ));
        }
        for b in &mut self.broadcasts {
            msgs.push(Message::Broadcast {
                origin: b.origin,
                seq: b.seq,
                channel: b.channel.clone(),
                payload: b.payload.clone(),
            });
            b.remaining = b.remaining.saturating_sub(sent);
        }
        self.broadcasts.retain(|b| b.remaining > 0);
        for t in targets {
            if let Some(addr) = self.addr_of(t) {
                self.send_frames(addr, msgs.clone());
            }
        }
    }

    pub(super) fn anti_entropy_round(&mut self) {
        self.refresh_neighbours();
        // Rotate one neighbour so the overlay graph keeps mixing.
        if self.live_ids.len() > self.cfg.max_neighbours && !self.neighbours.is_empty() {
            let i = self.rng.random_range(0..self.neighbours.len());
            self.neighbours.swap_remove(i);
            self.refresh_neighbours();
        }
        if self.neighbours.is_empty() {
            return;
        }
        let t = self.neighbours[self.rng.random_range(0..self.neighbours.len())];
        if let Some(addr) = self.addr_of(t) {
            self.send_digest(addr);
        }
    }

    pub(super) fn send_digest(&mut self, to: SocketAddr) {
        let hashes = self.digest.hashes(AE_TOP_BITS, 0, 1 << AE_TOP_BITS);
        self.send_frames(
            to,
            vec![Message::Digest {
                bits: AE_TOP_BITS,
                first: 0,
                hashes,
            }],
        );
    }

    pub(super) fn on_digest(&mut self, from: SocketAddr, bits: u8, first: usize, hashes: &[u64]) {
        let mut out = Vec::new();
        let mut summaries = Vec::new();
        for (i, h) in hashes.iter().enumerate() {
            let idx = first + i;
            if self.digest.hash_at(bits, idx) == *h {
                continue;
            }
            if bits >= MAX_DIGEST_BITS || self.digest.count_at(bits, idx) <= SUMMARY_THRESHOLD {
                summaries.push(bucket_range(bits, idx));
            } else {
                let cbits = (bits + AE_STEP_BITS).min(MAX_DIGEST_BITS);
                let span = 1usize << (cbits - bits);
                out.push(Message::Digest {
                    bits: cbits,
                    first: (idx * span) as u16,
                    hashes: self.digest.hashes(cbits, idx * span, span),
                });
            }
        }
        for (lo, hi) in summaries {
            self.summaries(lo, hi, &mut out);
        }
        self.send_frames(from, out);
    }

    /// Summary frames covering `lo..=hi`, split to fit.
    pub(super) fn summaries(&self, lo: PeerId, hi: PeerId, out: &mut Vec<Message>) {
        let entries: Vec<Stamp> = self
            .peers
            .range(lo..=hi)
            .map(|(_, r)| stamp_of(r))
            .collect();
        if entries.is_empty() {
            out.push(Message::Summary { lo, hi, entries });
            return;
        }
        let chunks: Vec<&[Stamp]> = entries.chunks(MAX_SUMMARY_ENTRIES).collect();
        let mut start = lo;
        for (i, chunk) in chunks.iter().enumerate() {
            let end = if i + 1 == chunks.len() {
                hi
            } else {
                chunk.last().map_or(hi, |s| s.id)
            };
            out.push(Message::Summary {
                lo: start,
                hi: end,
                entries: chunk.to_vec(),
            });
            start = PeerId::from_u128(end.as_u128().saturating_add(1));
        }
    }

    pub(super) fn on_summary(
        &mut self,
        from: SocketAddr,
        lo: PeerId,
        hi: PeerId,
        entries: &[Stamp],
    ) {
        let theirs: HashMap<PeerId, (u64, u64)> = entries
            .iter()
            .filter(|e| e.id >= lo && e.id <= hi)
            .map(|e| (e.id, (e.incarnation, e.version)))
            .collect();
        let mut pull = Vec::new();
        for (id, stamp) in &theirs {
            if *id == self.me {
                continue;
            }
            let ours = self.peers.get(id).map(|r| r.stamp());
            let dead = self
                .tombstones
                .get(id)
                .is_some_and(|t| t.incarnation >= stamp.0);
            if !dead && ours.is_none_or(|o| o < *stamp) {
                pull.push(*id);
            }
        }
        let push: Vec<PeerRecord> = self
            .peers
            .range(lo..=hi)
            .filter(|(id, r)| theirs.get(id).is_none_or(|s| *s < r.stamp()))
            .map(|(_, r)| (**r).clone())
            .collect();
        self.send_records(from, push);
        pull.sort_unstable();
        let msgs: Vec<Message> = pull
            .chunks(MAX_PULL_IDS)
            .map(|c| Message::Pull(c.to_vec()))
            .collect();
        self.send_frames(from, msgs);
    }

    pub(super) fn send_records(&mut self, to: SocketAddr, recs: Vec<PeerRecord>) {
        let mut msgs = Vec::new();
        let mut batch = Vec::new();
        let mut size = HEADER_LEN + 1;
        for r in recs {
            let len = 2 + r.buffer_len();
            if !batch.is_empty()
                && (size + len > MAX_FRAME_LEN || batch.len() == usize::from(u8::MAX))
            {
                msgs.push(Message::Records(std::mem::take(&mut batch)));
                size = HEADER_LEN + 1;
            }
            size += len;
            batch.push(r);
        }
        if !batch.is_empty() {
            msgs.push(Message::Records(batch));
        }
        self.send_frames(to, msgs);
    }

    /// Packs messages into as few datagrams as fit and queues them.
    pub(super) fn send_frames(&mut self, to: SocketAddr, msgs: Vec<Message>) {
        let mut dgram = Vec::new();
        for m in msgs {
            let frame = Frame::new(self.me, m);
            if !dgram.is_empty() && dgram.len() + frame.buffer_len() > MAX_DATAGRAM_LEN {
                self.queue(to, std::mem::take(&mut dgram));
            }
            // Our own frames are built within the limits; one that is not
            // (an oversized record list) is dropped rather than sent.
            if frame.emit(&mut dgram).is_ok() {
                self.counters.frames_out += 1;
            }
        }
        if !dgram.is_empty() {
            self.queue(to, dgram);
        }
    }

    pub(super) fn queue(&mut self, dst: SocketAddr, payload: Vec<u8>) {
        self.counters.datagrams_out += 1;
        self.counters.bytes_out += payload.len() as u64;
        self.transmits.push_back(Transmit { dst, payload });
    }
}
