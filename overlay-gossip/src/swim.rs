//! SWIM membership and failure detection, through foca.
//!
//! foca (pinned `=2.0.0`) runs SWIM with suspicion and refutation. It is
//! sans-IO: it asks for timers through `Runtime::submit_after`, which this
//! module turns into `(now + delay, timer)` entries of its own queue, exposed
//! as `poll_timeout` / `handle_timeout` of an internal `Membership` trait. The core
//! uses foca only for liveness ("who is alive"); peer records travel on our own
//! dissemination and anti-entropy (see the crate docs).
//!
//! The SWIM identity is a [`SwimId`]: the [`PeerId`], the record incarnation
//! (a restart or a refuted death starts a larger one, which wins foca's
//! address conflict) and the gossip endpoint. The SWIM payload is encoded by
//! [`SwimCodec`], a compact big-endian format that never panics on bad input.

use std::cmp::Ordering;
use std::collections::BinaryHeap;
use std::net::{IpAddr, SocketAddr};
use std::num::{NonZeroU8, NonZeroUsize};
use std::time::Duration;

use bytes::{Buf, BufMut};
use foca::{
    Foca, Header, Identity, Member, Message, NoCustomBroadcast, Notification, Runtime, State, Timer,
};
use overlay_core::PeerId;
use rand::rngs::SmallRng;

use crate::record::emit_ip;
use crate::wire::{HEADER_LEN, MAX_FRAME_LEN};

/// A peer's SWIM identity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SwimId {
    /// The peer.
    pub peer: PeerId,
    /// The record incarnation this identity belongs to.
    pub incarnation: u64,
    /// Where the peer receives gossip.
    pub addr: SocketAddr,
}

impl Identity for SwimId {
    type Addr = PeerId;

    fn renew(&self) -> Option<Self> {
        Some(SwimId {
            incarnation: self.incarnation.checked_add(1)?,
            ..*self
        })
    }

    fn addr(&self) -> PeerId {
        self.peer
    }

    fn win_addr_conflict(&self, adversary: &Self) -> bool {
        self.incarnation > adversary.incarnation
    }
}

/// Why a SWIM payload does not decode.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SwimCodecError {
    /// The payload ended inside a field.
    #[error("SWIM payload truncated reading {0}")]
    Truncated(&'static str),
    /// A field holds an invalid value.
    #[error("SWIM payload has an invalid {0}")]
    BadValue(&'static str),
    /// The output buffer (one frame) is full.
    #[error("SWIM payload does not fit the frame")]
    BufferFull,
}

/// foca's codec for [`SwimId`]: a compact big-endian encoding.
///
/// `SwimId` = `peer: [u8; 16]`, `incarnation: u64`, `family: u8` (4 or 6),
/// address, `port: u16`. `Header` = `src: SwimId`, `src_incarnation: u16`,
/// `dst: SwimId`, `message: u8` (0 ping, 1 ack, 2 ping-req, 3 indirect ping,
/// 4 indirect ack, 5 forwarded ack, 6 announce, 7 feed, 8 gossip, 9
/// broadcast, 10 turn-undead) followed for 0..=5 by the probe fields
/// (`SwimId` then `probe: u8` for 2..=5, `probe: u8` for 0 and 1).
/// `Member` = `SwimId`, `incarnation: u16`, `state: u8` (0 alive, 1 suspect,
/// 2 down).
#[derive(Debug, Clone, Copy, Default)]
pub struct SwimCodec;

fn take<const N: usize>(buf: &mut impl Buf, what: &'static str) -> Result<[u8; N], SwimCodecError> {
    if buf.remaining() < N {
        return Err(SwimCodecError::Truncated(what));
    }
    let mut out = [0u8; N];
    buf.copy_to_slice(&mut out);
    Ok(out)
}

fn put_id(id: &SwimId, v: &mut Vec<u8>) {
    v.extend_from_slice(&id.peer.to_bytes());
    v.extend_from_slice(&id.incarnation.to_be_bytes());
    emit_ip(v, id.addr.ip());
    v.extend_from_slice(&id.addr.port().to_be_bytes());
}

/// Writes `v` whole or not at all (foca hands in a size-limited buffer).
fn put_all(buf: &mut impl BufMut, v: &[u8]) -> Result<(), SwimCodecError> {
    if buf.remaining_mut() < v.len() {
        return Err(SwimCodecError::BufferFull);
    }
    buf.put_slice(v);
    Ok(())
}

fn get_id(buf: &mut impl Buf) -> Result<SwimId, SwimCodecError> {
    let peer = PeerId::from_bytes(take(buf, "identity peer")?);
    let incarnation = u64::from_be_bytes(take(buf, "identity incarnation")?);
    let ip = match take::<1>(buf, "identity family")?[0] {
        4 => IpAddr::from(take::<4>(buf, "identity address")?),
        6 => IpAddr::from(take::<16>(buf, "identity address")?),
        _ => return Err(SwimCodecError::BadValue("identity family")),
    };
    let port = u16::from_be_bytes(take(buf, "identity port")?);
    Ok(SwimId {
        peer,
        incarnation,
        addr: SocketAddr::new(ip, port),
    })
}

impl foca::Codec<SwimId> for SwimCodec {
    type Error = SwimCodecError;

    fn encode_header(
        &mut self,
        h: &Header<SwimId>,
        mut buf: impl BufMut,
    ) -> Result<(), Self::Error> {
        let mut v = Vec::with_capacity(2 * 43 + 48);
        put_id(&h.src, &mut v);
        v.extend_from_slice(&h.src_incarnation.to_be_bytes());
        put_id(&h.dst, &mut v);
        match &h.message {
            Message::Ping(p) => v.extend_from_slice(&[0, *p]),
            Message::Ack(p) => v.extend_from_slice(&[1, *p]),
            Message::PingReq {
                target: id,
                probe_number: p,
            }
            | Message::IndirectPing {
                origin: id,
                probe_number: p,
            }
            | Message::IndirectAck {
                target: id,
                probe_number: p,
            }
            | Message::ForwardedAck {
                origin: id,
                probe_number: p,
            } => {
                v.push(match &h.message {
                    Message::PingReq { .. } => 2,
                    Message::IndirectPing { .. } => 3,
                    Message::IndirectAck { .. } => 4,
                    _ => 5,
                });
                put_id(id, &mut v);
                v.push(*p);
            }
            Message::Announce => v.push(6),
            Message::Feed => v.push(7),
            Message::Gossip => v.push(8),
            Message::Broadcast => v.push(9),
            Message::TurnUndead => v.push(10),
        }
        put_all(&mut buf, &v)
    }

    fn decode_header(&mut self, mut buf: impl Buf) -> Result<Header<SwimId>, Self::Error> {
        let src = get_id(&mut buf)?;
        let src_incarnation = u16::from_be_bytes(take(&mut buf, "header incarnation")?);
        let dst = get_id(&mut buf)?;
        let code = take::<1>(&mut buf, "message type")?[0];
        let message = match code {
            0 => Message::Ping(take::<1>(&mut buf, "probe number")?[0]),
            1 => Message::Ack(take::<1>(&mut buf, "probe number")?[0]),
            2..=5 => {
                let id = get_id(&mut buf)?;
                let probe_number = take::<1>(&mut buf, "probe number")?[0];
                match code {
                    2 => Message::PingReq {
                        target: id,
                        probe_number,
                    },
                    3 => Message::IndirectPing {
                        origin: id,
                        probe_number,
                    },
                    4 => Message::IndirectAck {
                        target: id,
                        probe_number,
                    },
                    _ => Message::ForwardedAck {
                        origin: id,
                        probe_number,
                    },
                }
            }
            6 => Message::Announce,
            7 => Message::Feed,
            8 => Message::Gossip,
            9 => Message::Broadcast,
            10 => Message::TurnUndead,
            _ => return Err(SwimCodecError::BadValue("message type")),
        };
        Ok(Header {
            src,
            src_incarnation,
            dst,
            message,
        })
    }

    fn encode_member(
        &mut self,
        m: &Member<SwimId>,
        mut buf: impl BufMut,
    ) -> Result<(), Self::Error> {
        let mut v = Vec::with_capacity(46);
        put_id(m.id(), &mut v);
        v.extend_from_slice(&m.incarnation().to_be_bytes());
        v.push(match m.state() {
            State::Alive => 0,
            State::Suspect => 1,
            State::Down => 2,
        });
        put_all(&mut buf, &v)
    }

    fn decode_member(&mut self, mut buf: impl Buf) -> Result<Member<SwimId>, Self::Error> {
        let id = get_id(&mut buf)?;
        let inc = u16::from_be_bytes(take(&mut buf, "member incarnation")?);
        let state = match take::<1>(&mut buf, "member state")?[0] {
            0 => State::Alive,
            1 => State::Suspect,
            2 => State::Down,
            _ => return Err(SwimCodecError::BadValue("member state")),
        };
        Ok(Member::new(id, inc, state))
    }
}

/// Decodes the SWIM header of a payload (to check its sender) without
/// consuming anything else. Never panics.
pub fn decode_swim_header(payload: &[u8]) -> Result<Header<SwimId>, SwimCodecError> {
    foca::Codec::decode_header(&mut SwimCodec, payload)
}

/// What the membership layer reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum MemberEvent {
    Up(SwimId),
    Down(SwimId),
    /// Our own identity was declared down and renewed to this one.
    Renewed(SwimId),
}

/// SWIM timing, derived from the gossip config.
#[derive(Debug, Clone)]
pub(crate) struct SwimConfig {
    pub(crate) probe_period: Duration,
    pub(crate) probe_rtt: Duration,
    pub(crate) suspect_to_down: Duration,
    pub(crate) remove_down_after: Duration,
    pub(crate) announce_down_every: Duration,
    pub(crate) expected_size: u32,
}

/// The membership service the core depends on; foca implements it. The trait
/// keeps foca replaceable (its licence is MPL-2.0; a second implementation
/// could slot in here).
pub(crate) trait Membership {
    /// Starts contact with a member whose identity is known.
    fn add_member(&mut self, now: Duration, id: SwimId);
    /// Hands in a SWIM payload.
    fn handle_data(&mut self, now: Duration, payload: &[u8]) -> Result<(), foca::Error>;
    fn poll_timeout(&self) -> Option<Duration>;
    fn handle_timeout(&mut self, now: Duration);
    /// Takes a new identity (a new incarnation) and tells the cluster.
    fn change_identity(&mut self, now: Duration, id: SwimId);
    /// Announces our departure.
    fn leave(&mut self, now: Duration);
    /// Drains one outgoing SWIM payload.
    fn poll_send(&mut self) -> Option<(SwimId, Vec<u8>)>;
    /// Drains one membership event.
    fn poll_event(&mut self) -> Option<MemberEvent>;
    fn num_members(&self) -> usize;
    fn identity(&self) -> SwimId;
    /// Approximate bytes held per member.
    fn memory_size(&self) -> usize;
}

struct TimerEntry {
    at: Duration,
    seq: u64,
    timer: Timer<SwimId>,
}

impl PartialEq for TimerEntry {
    fn eq(&self, o: &Self) -> bool {
        (self.at, self.seq) == (o.at, o.seq)
    }
}
impl Eq for TimerEntry {}
impl PartialOrd for TimerEntry {
    fn partial_cmp(&self, o: &Self) -> Option<Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for TimerEntry {
    // Reversed: BinaryHeap is a max-heap, the earliest timer must come first.
    fn cmp(&self, o: &Self) -> Ordering {
        (o.at, o.seq).cmp(&(self.at, self.seq))
    }
}

#[derive(Default)]
struct Outbox {
    now: Duration,
    seq: u64,
    timers: BinaryHeap<TimerEntry>,
    sends: std::collections::VecDeque<(SwimId, Vec<u8>)>,
    events: std::collections::VecDeque<MemberEvent>,
}

impl Runtime<SwimId> for Outbox {
    fn notify(&mut self, n: Notification<'_, SwimId>) {
        match n {
            Notification::MemberUp(id) => self.events.push_back(MemberEvent::Up(*id)),
            Notification::MemberDown(id) => self.events.push_back(MemberEvent::Down(*id)),
            Notification::Rename(old, new) => {
                self.events.push_back(MemberEvent::Down(*old));
                self.events.push_back(MemberEvent::Up(*new));
            }
            Notification::Rejoin(id) => self.events.push_back(MemberEvent::Renewed(*id)),
            _ => {}
        }
    }

    fn send_to(&mut self, to: SwimId, data: &[u8]) {
        self.sends.push_back((to, data.to_vec()));
    }

    fn submit_after(&mut self, timer: Timer<SwimId>, after: Duration) {
        self.seq += 1;
        self.timers.push(TimerEntry {
            at: self.now + after,
            seq: self.seq,
            timer,
        });
    }
}

/// foca behind [`Membership`], with its timers in our own queue.
pub(crate) struct FocaMembership {
    foca: Foca<SwimId, SwimCodec, SmallRng, NoCustomBroadcast>,
    out: Outbox,
}

impl FocaMembership {
    pub(crate) fn new(id: SwimId, cfg: &SwimConfig, rng: SmallRng) -> Self {
        let n = f64::from(cfg.expected_size.max(1)) + 1.0;
        let max_tx = (4.0 * n.log10()).clamp(2.0, 255.0) as u8;
        let config = foca::Config {
            probe_period: cfg.probe_period,
            probe_rtt: cfg.probe_rtt,
            num_indirect_probes: NonZeroUsize::MIN.saturating_add(2),
            max_transmissions: NonZeroU8::new(max_tx).unwrap_or(NonZeroU8::MIN),
            suspect_to_down_after: cfg.suspect_to_down,
            remove_down_after: Some(cfg.remove_down_after),
            max_packet_size: NonZeroUsize::MIN.saturating_add(MAX_FRAME_LEN - HEADER_LEN - 1),
            notify_down_members: true,
            periodic_announce: Some(foca::PeriodicParams {
                frequency: cfg.announce_down_every * 3,
                num_members: NonZeroUsize::MIN,
            }),
            periodic_announce_to_down_members: Some(foca::PeriodicParams {
                frequency: cfg.announce_down_every,
                num_members: NonZeroUsize::MIN.saturating_add(1),
            }),
            periodic_gossip: Some(foca::PeriodicParams {
                frequency: cfg.probe_period / 5,
                num_members: NonZeroUsize::MIN.saturating_add(2),
            }),
        };
        FocaMembership {
            foca: Foca::new(id, config, rng, SwimCodec),
            out: Outbox::default(),
        }
    }
}

impl Membership for FocaMembership {
    fn add_member(&mut self, now: Duration, id: SwimId) {
        self.out.now = now;
        // Errors here are encode errors of our own codec, which has none.
        let _ = self.foca.apply_many(
            std::iter::once(Member::new(id, 0, State::Alive)),
            false,
            &mut self.out,
        );
    }

    fn handle_data(&mut self, now: Duration, payload: &[u8]) -> Result<(), foca::Error> {
        self.out.now = now;
        self.foca.handle_data(payload, &mut self.out)
    }

    fn poll_timeout(&self) -> Option<Duration> {
        self.out.timers.peek().map(|t| t.at)
    }

    fn handle_timeout(&mut self, now: Duration) {
        self.out.now = now;
        while self.out.timers.peek().is_some_and(|t| t.at <= now) {
            if let Some(t) = self.out.timers.pop() {
                // Timer errors are stale-token or encode errors; foca stays
                // consistent and the next timer proceeds.
                let _ = self.foca.handle_timer(t.timer, &mut self.out);
            }
        }
    }

    fn change_identity(&mut self, now: Duration, id: SwimId) {
        self.out.now = now;
        let _ = self.foca.change_identity(id, &mut self.out);
    }

    fn leave(&mut self, now: Duration) {
        self.out.now = now;
        let _ = self.foca.leave_cluster(&mut self.out);
    }

    fn poll_send(&mut self) -> Option<(SwimId, Vec<u8>)> {
        self.out.sends.pop_front()
    }

    fn poll_event(&mut self) -> Option<MemberEvent> {
        self.out.events.pop_front()
    }

    fn num_members(&self) -> usize {
        self.foca.iter_membership_state().len()
    }

    fn identity(&self) -> SwimId {
        *self.foca.identity()
    }

    fn memory_size(&self) -> usize {
        // foca keeps one `Member<SwimId>` per known member plus its shuffled
        // probe list and update buffers; count the member twice for those.
        self.foca.iter_membership_state().len() * 2 * std::mem::size_of::<Member<SwimId>>()
            + self.out.timers.len() * std::mem::size_of::<TimerEntry>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use foca::Codec;

    fn sid(n: u128) -> SwimId {
        SwimId {
            peer: PeerId::from_u128(n),
            incarnation: 4,
            addr: "192.0.2.1:7946".parse().unwrap(),
        }
    }

    #[test]
    fn header_round_trips_for_every_message() {
        let msgs = vec![
            Message::Ping(1),
            Message::Ack(2),
            Message::PingReq {
                target: sid(3),
                probe_number: 3,
            },
            Message::IndirectPing {
                origin: sid(4),
                probe_number: 4,
            },
            Message::IndirectAck {
                target: sid(5),
                probe_number: 5,
            },
            Message::ForwardedAck {
                origin: sid(6),
                probe_number: 6,
            },
            Message::Announce,
            Message::Feed,
            Message::Gossip,
            Message::Broadcast,
            Message::TurnUndead,
        ];
        for message in msgs {
            let h = Header {
                src: sid(1),
                src_incarnation: 7,
                dst: sid(2),
                message,
            };
            let mut buf = Vec::new();
            SwimCodec.encode_header(&h, &mut buf).unwrap();
            assert_eq!(decode_swim_header(&buf).unwrap(), h);
            for cut in 0..buf.len() {
                assert!(decode_swim_header(&buf[..cut]).is_err());
            }
        }
    }

    #[test]
    fn member_round_trips_and_rejects_bad_state() {
        let m = Member::new(sid(9), 3, State::Suspect);
        let mut buf = Vec::new();
        SwimCodec.encode_member(&m, &mut buf).unwrap();
        assert_eq!(SwimCodec.decode_member(&buf[..]).unwrap(), m);
        let last = buf.len() - 1;
        buf[last] = 9;
        assert_eq!(
            SwimCodec.decode_member(&buf[..]),
            Err(SwimCodecError::BadValue("member state"))
        );
    }

    #[test]
    fn encoding_into_a_full_buffer_fails_instead_of_panicking() {
        let m = Member::new(sid(9), 3, State::Alive);
        let mut backing = [0u8; 10];
        let mut buf = &mut backing[..];
        assert_eq!(
            SwimCodec.encode_member(&m, &mut buf),
            Err(SwimCodecError::BufferFull)
        );
        assert_eq!(buf.len(), 10, "nothing written");
    }

    #[test]
    fn renewed_identity_wins_the_address_conflict() {
        let a = sid(1);
        let b = a.renew().unwrap();
        assert!(b.win_addr_conflict(&a));
        assert!(!a.win_addr_conflict(&b));
    }
}
