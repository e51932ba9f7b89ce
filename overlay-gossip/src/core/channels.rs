//! Application channels: registration, broadcasts and unicasts, and the
//! deduplication of broadcasts received.

use super::*;

impl Gossip {
    /// Registers a channel by name (1 to [`MAX_CHANNEL_NAME`] bytes); the
    /// same name on every peer is the same channel. Registering twice returns
    /// the same id.
    pub fn register_channel(&mut self, name: &str) -> Result<ChannelId, ChannelError> {
        if name.is_empty() || name.len() > MAX_CHANNEL_NAME {
            return Err(ChannelError::BadName { len: name.len() });
        }
        if let Some(i) = self.channels.iter().position(|c| c == name) {
            return Ok(ChannelId(i as u16));
        }
        if self.channels.len() >= usize::from(u16::MAX) {
            return Err(ChannelError::BadName { len: name.len() });
        }
        self.channels.push(name.to_owned());
        Ok(ChannelId((self.channels.len() - 1) as u16))
    }

    pub(super) fn channel_name(&self, ch: ChannelId) -> Result<String, ChannelError> {
        self.channels
            .get(usize::from(ch.0))
            .cloned()
            .ok_or(ChannelError::UnknownChannel)
    }

    /// The largest broadcast payload on `channel`.
    pub fn max_broadcast_len(&self, channel: ChannelId) -> Result<usize, ChannelError> {
        let name = self.channel_name(channel)?;
        Ok(MAX_FRAME_LEN - HEADER_LEN - 25 - name.len())
    }

    /// Sends `bytes` to every peer on `channel`: flooded with the same
    /// bounded fan-out as records, deduplicated by `(origin, seq)`.
    /// Best-effort: broadcasts are not repaired by anti-entropy.
    pub fn broadcast(
        &mut self,
        _now: Duration,
        channel: ChannelId,
        bytes: &[u8],
    ) -> Result<(), ChannelError> {
        let max = self.max_broadcast_len(channel)?;
        if bytes.len() > max {
            return Err(ChannelError::TooBig {
                len: bytes.len(),
                max,
            });
        }
        let name = self.channel_name(channel)?;
        self.broadcast_seq += 1;
        self.remember((self.me, self.broadcast_seq));
        let remaining = self.budget();
        self.broadcasts.push(PendingBroadcast {
            origin: self.me,
            seq: self.broadcast_seq,
            channel: name,
            payload: bytes.to_vec(),
            remaining,
        });
        Ok(())
    }

    /// Sends `bytes` to one peer on `channel`, directly.
    pub fn unicast(
        &mut self,
        _now: Duration,
        channel: ChannelId,
        peer: PeerId,
        bytes: &[u8],
    ) -> Result<(), ChannelError> {
        let name = self.channel_name(channel)?;
        let max = MAX_FRAME_LEN - HEADER_LEN - 1 - name.len();
        if bytes.len() > max {
            return Err(ChannelError::TooBig {
                len: bytes.len(),
                max,
            });
        }
        let addr = self
            .peers
            .get(&peer)
            .filter(|_| peer != self.me)
            .and_then(|r| r.gossip_addr())
            .ok_or(ChannelError::UnknownPeer(peer))?;
        self.send_frames(
            addr,
            vec![Message::Unicast {
                channel: name,
                payload: bytes.to_vec(),
            }],
        );
        Ok(())
    }

    pub(super) fn remember(&mut self, key: (PeerId, u64)) -> bool {
        if !self.seen.insert(key) {
            return false;
        }
        self.seen_order.push_back(key);
        if self.seen_order.len() > SEEN_CAPACITY
            && let Some(old) = self.seen_order.pop_front()
        {
            self.seen.remove(&old);
        }
        true
    }

    pub(super) fn on_broadcast(
        &mut self,
        origin: PeerId,
        seq: u64,
        channel: String,
        payload: Vec<u8>,
    ) {
        if origin == self.me || !self.remember((origin, seq)) {
            return;
        }
        let Some(i) = self.channels.iter().position(|c| *c == channel) else {
            self.counters.rejected.unknown_channel += 1;
            return;
        };
        self.push_event(Event::ChannelMessage {
            channel: ChannelId(i as u16),
            from: origin,
            bytes: payload.clone(),
        });
        let remaining = self.budget();
        self.broadcasts.push(PendingBroadcast {
            origin,
            seq,
            channel,
            payload,
            remaining,
        });
    }
}
