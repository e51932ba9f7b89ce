//! The gossip wire format: length-framed, versioned messages.
//!
//! A datagram carries one or more frames back to back. Every frame starts
//! with the same six bytes in every protocol version, so a receiver can skip
//! a frame it does not understand:
//!
//! | offset | size | field | notes |
//! |---|---|---|---|
//! | 0 | 2 | magic | `0x4f47` (`"OG"`) |
//! | 2 | 1 | version | [`VERSION`]; receivers accept [`MIN_VERSION`]`..=`[`MAX_VERSION`] |
//! | 3 | 1 | type | see the table below; unknown types are skipped and counted |
//! | 4 | 2 | length | body length in bytes (big-endian) |
//! | 6 | 16 | sender | the sender's [`PeerId`] (version 1) |
//! | 22 | length | body | |
//!
//! A frame is at most [`MAX_FRAME_LEN`] bytes (header included); a datagram
//! at most [`MAX_DATAGRAM_LEN`]. All integers are big-endian.
//!
//! | type | message | body |
//! |---|---|---|
//! | 0 | [`Message::Versions`] | `min: u8`, `max: u8` — the versions the sender speaks; parsed in every version |
//! | 1 | [`Message::Swim`] | SWIM (foca) payload, opaque here, see [`crate::swim`] |
//! | 2 | [`Message::Records`] | `count: u8`, then `count` × (`len: u16`, a [`PeerRecord`]) |
//! | 3 | [`Message::Digest`] | `bits: u8` (0..=12), `first: u16`, `count: u16`, `count` × `hash: u64` |
//! | 4 | [`Message::Summary`] | `lo: PeerId`, `hi: PeerId`, `count: u16`, `count` × (`id: PeerId`, `incarnation: u64`, `version: u64`) |
//! | 5 | [`Message::Pull`] | `count: u16`, `count` × `PeerId` |
//! | 6 | [`Message::Join`] | one [`PeerRecord`] (the joiner's own) |
//! | 7 | [`Message::Broadcast`] | `origin: PeerId`, `seq: u64`, `channel_len: u8`, channel (UTF-8), payload (rest of body) |
//! | 8 | [`Message::Unicast`] | `channel_len: u8`, channel (UTF-8), payload (rest of body) |
//!
//! A record is encoded as: `id: PeerId`, `incarnation: u64`, `version: u64`,
//! `flags: u8`, `vtep_mac: [u8; 6]`, `noise_static: [u8; 32]`, `name_len: u8`,
//! name, `underlay_count: u8` × (`family: u8` (4 or 6), address, `port:
//! u16`), `pod_block_count: u8` × (`family: u8`, address, `prefix: u8`),
//! `unreachable_count: u8` × `PeerId`.
//!
//! # Version negotiation
//!
//! A receiver that gets a frame of a version it does not speak skips it
//! (using the length), counts it and answers with a `Versions` frame. A
//! sender that receives `Versions` picks the highest version both speak for
//! that address ([`negotiate`]) or, when there is none, reports the peer as
//! incompatible.
//!
//! # Panic contract
//!
//! [`parse_frames`] and [`Frame::parse`] never panic on any input;
//! [`Frame::emit`] never panics and refuses (with [`EncodeError`]) a frame
//! that would exceed [`MAX_FRAME_LEN`].

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use overlay_core::PeerId;

use crate::record::{PeerRecord, RecordError};

/// The frame magic, `"OG"`.
pub const MAGIC: u16 = 0x4f47;
/// The version this implementation sends.
pub const VERSION: u8 = 1;
/// The oldest version this implementation accepts.
pub const MIN_VERSION: u8 = 1;
/// The newest version this implementation accepts.
pub const MAX_VERSION: u8 = 1;
/// Bytes before the body: magic, version, type, length, sender.
pub const HEADER_LEN: usize = 22;
/// The largest frame, header included (fits a 1,500-byte MTU with IPv6, UDP
/// and the Noise overhead).
pub const MAX_FRAME_LEN: usize = 1400;
/// The largest datagram the core emits or accepts.
pub const MAX_DATAGRAM_LEN: usize = 1400;
/// The largest number of buckets' hashes in one `Digest` frame.
pub const MAX_DIGEST_HASHES: usize = (MAX_FRAME_LEN - HEADER_LEN - 5) / 8;
/// Size of one `Summary` entry.
pub const SUMMARY_ENTRY_LEN: usize = 32;
/// The largest number of entries in one `Summary` frame.
pub const MAX_SUMMARY_ENTRIES: usize = (MAX_FRAME_LEN - HEADER_LEN - 34) / SUMMARY_ENTRY_LEN;
/// The largest number of ids in one `Pull` frame.
pub const MAX_PULL_IDS: usize = (MAX_FRAME_LEN - HEADER_LEN - 2) / 16;
/// Longest channel name, in bytes.
pub const MAX_CHANNEL_NAME: usize = 32;
/// The finest digest level: 2^12 buckets.
pub const MAX_DIGEST_BITS: u8 = 12;

/// Message type codes.
mod kind {
    pub(super) const VERSIONS: u8 = 0;
    pub(super) const SWIM: u8 = 1;
    pub(super) const RECORDS: u8 = 2;
    pub(super) const DIGEST: u8 = 3;
    pub(super) const SUMMARY: u8 = 4;
    pub(super) const PULL: u8 = 5;
    pub(super) const JOIN: u8 = 6;
    pub(super) const BROADCAST: u8 = 7;
    pub(super) const UNICAST: u8 = 8;
}

/// Why bytes are not a valid frame.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// The input ended inside a field.
    #[error("truncated: {what} at byte {offset}")]
    Truncated {
        /// The field being read.
        what: &'static str,
        /// Where it starts.
        offset: usize,
    },
    /// The frame does not start with [`MAGIC`].
    #[error("bad magic {found:#06x} at byte {offset}")]
    BadMagic {
        /// What was there instead.
        found: u16,
        /// Where the frame starts.
        offset: usize,
    },
    /// The frame's version is outside [`MIN_VERSION`]`..=`[`MAX_VERSION`].
    #[error("unsupported protocol version {version}")]
    UnsupportedVersion {
        /// The frame's version.
        version: u8,
    },
    /// A field holds a value outside its range.
    #[error("invalid {what} at byte {offset}")]
    BadValue {
        /// The field.
        what: &'static str,
        /// Where it starts.
        offset: usize,
    },
    /// A count is larger than its limit.
    #[error("{what} is {len}, the limit is {max}")]
    TooLong {
        /// The count.
        what: &'static str,
        /// Its value.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// Bytes are left over after a complete structure.
    #[error("{extra} unexpected bytes after the {what}")]
    Trailing {
        /// The structure.
        what: &'static str,
        /// How many bytes are left.
        extra: usize,
    },
}

/// Why a frame cannot be encoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EncodeError {
    /// The frame would be larger than [`MAX_FRAME_LEN`].
    #[error("frame of {len} bytes exceeds the limit of {max}")]
    TooBig {
        /// The encoded length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// A list is longer than the format allows.
    #[error("{what} has {len} entries, the limit is {max}")]
    TooMany {
        /// The list.
        what: &'static str,
        /// Its length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// A record breaks its limits.
    #[error(transparent)]
    Record(#[from] RecordError),
}

/// A bounds-checked cursor over untrusted bytes.
pub(crate) struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
    base: usize,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(buf: &'a [u8]) -> Self {
        Reader {
            buf,
            pos: 0,
            base: 0,
        }
    }

    fn with_base(buf: &'a [u8], base: usize) -> Self {
        Reader { buf, pos: 0, base }
    }

    pub(crate) fn offset(&self) -> usize {
        self.base + self.pos
    }

    pub(crate) fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    pub(crate) fn bytes(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], DecodeError> {
        let out = self
            .pos
            .checked_add(n)
            .and_then(|end| self.buf.get(self.pos..end))
            .ok_or(DecodeError::Truncated {
                what,
                offset: self.offset(),
            })?;
        self.pos += n;
        Ok(out)
    }

    pub(crate) fn rest(&mut self) -> &'a [u8] {
        let out = self.buf.get(self.pos..).unwrap_or_default();
        self.pos = self.buf.len();
        out
    }

    pub(crate) fn array<const N: usize>(
        &mut self,
        what: &'static str,
    ) -> Result<[u8; N], DecodeError> {
        let b = self.bytes(N, what)?;
        let mut out = [0u8; N];
        out.copy_from_slice(b);
        Ok(out)
    }

    pub(crate) fn u8(&mut self, what: &'static str) -> Result<u8, DecodeError> {
        Ok(self.array::<1>(what)?[0])
    }

    pub(crate) fn u16(&mut self, what: &'static str) -> Result<u16, DecodeError> {
        Ok(u16::from_be_bytes(self.array(what)?))
    }

    pub(crate) fn u64(&mut self, what: &'static str) -> Result<u64, DecodeError> {
        Ok(u64::from_be_bytes(self.array(what)?))
    }

    pub(crate) fn peer_id(&mut self, what: &'static str) -> Result<PeerId, DecodeError> {
        Ok(PeerId::from_bytes(self.array(what)?))
    }

    /// A one-byte count bounded by `max`.
    pub(crate) fn count(&mut self, what: &'static str, max: usize) -> Result<usize, DecodeError> {
        let n = usize::from(self.u8(what)?);
        if n > max {
            return Err(DecodeError::TooLong { what, len: n, max });
        }
        Ok(n)
    }

    /// A two-byte count bounded by `max`.
    fn count16(&mut self, what: &'static str, max: usize) -> Result<usize, DecodeError> {
        let n = usize::from(self.u16(what)?);
        if n > max {
            return Err(DecodeError::TooLong { what, len: n, max });
        }
        Ok(n)
    }

    pub(crate) fn ip(&mut self, what: &'static str) -> Result<IpAddr, DecodeError> {
        let at = self.offset();
        match self.u8(what)? {
            4 => Ok(IpAddr::V4(Ipv4Addr::from(self.array::<4>(what)?))),
            6 => Ok(IpAddr::V6(Ipv6Addr::from(self.array::<16>(what)?))),
            _ => Err(DecodeError::BadValue { what, offset: at }),
        }
    }

    pub(crate) fn finish(&self, what: &'static str) -> Result<(), DecodeError> {
        match self.remaining() {
            0 => Ok(()),
            extra => Err(DecodeError::Trailing { what, extra }),
        }
    }
}

/// A digest entry: which version of a peer's record a replica holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Stamp {
    /// The record's owner.
    pub id: PeerId,
    /// Its incarnation.
    pub incarnation: u64,
    /// Its version.
    pub version: u64,
}

/// One protocol message (the body of a frame).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Message {
    /// The versions the sender speaks.
    Versions {
        /// Oldest.
        min: u8,
        /// Newest.
        max: u8,
    },
    /// A SWIM (membership, failure detection) payload.
    Swim(Vec<u8>),
    /// Peer records: a delta push or the answer to a `Pull`.
    Records(Vec<PeerRecord>),
    /// Bucket hashes of the sender's live records at depth `bits`
    /// (2^bits buckets by `PeerId` prefix), buckets `first..first+len`.
    Digest {
        /// Depth: the bucket of a peer is the top `bits` bits of its id.
        bits: u8,
        /// Index of the first bucket.
        first: u16,
        /// XOR of the record hashes per bucket.
        hashes: Vec<u64>,
    },
    /// All of the sender's live records with ids in `lo..=hi`, as stamps.
    Summary {
        /// Smallest id covered.
        lo: PeerId,
        /// Largest id covered.
        hi: PeerId,
        /// The stamps, ascending by id.
        entries: Vec<Stamp>,
    },
    /// A request for the full records of these peers.
    Pull(Vec<PeerId>),
    /// A join request carrying the joiner's record.
    Join(PeerRecord),
    /// A channel broadcast, flooded with bounded fan-out.
    Broadcast {
        /// The peer that sent it first.
        origin: PeerId,
        /// The origin's sequence number (deduplication).
        seq: u64,
        /// The channel name.
        channel: String,
        /// The application payload.
        payload: Vec<u8>,
    },
    /// A channel message to one peer.
    Unicast {
        /// The channel name.
        channel: String,
        /// The application payload.
        payload: Vec<u8>,
    },
    /// A message type this version does not know; kept so it can be counted.
    Other {
        /// The type code.
        kind: u8,
        /// The raw body.
        body: Vec<u8>,
    },
}

impl Message {
    /// The type code.
    pub fn kind(&self) -> u8 {
        match self {
            Message::Versions { .. } => kind::VERSIONS,
            Message::Swim(_) => kind::SWIM,
            Message::Records(_) => kind::RECORDS,
            Message::Digest { .. } => kind::DIGEST,
            Message::Summary { .. } => kind::SUMMARY,
            Message::Pull(_) => kind::PULL,
            Message::Join(_) => kind::JOIN,
            Message::Broadcast { .. } => kind::BROADCAST,
            Message::Unicast { .. } => kind::UNICAST,
            Message::Other { kind, .. } => *kind,
        }
    }

    fn body_len(&self) -> usize {
        match self {
            Message::Versions { .. } => 2,
            Message::Swim(b) => b.len(),
            Message::Records(rs) => 1 + rs.iter().map(|r| 2 + r.buffer_len()).sum::<usize>(),
            Message::Digest { hashes, .. } => 5 + 8 * hashes.len(),
            Message::Summary { entries, .. } => 34 + SUMMARY_ENTRY_LEN * entries.len(),
            Message::Pull(ids) => 2 + 16 * ids.len(),
            Message::Join(r) => r.buffer_len(),
            Message::Broadcast {
                channel, payload, ..
            } => 16 + 8 + 1 + channel.len() + payload.len(),
            Message::Unicast { channel, payload } => 1 + channel.len() + payload.len(),
            Message::Other { body, .. } => body.len(),
        }
    }

    fn emit_body(&self, out: &mut Vec<u8>) -> Result<(), EncodeError> {
        let too_many = |what, len: usize, max: usize| {
            if len > max {
                Err(EncodeError::TooMany { what, len, max })
            } else {
                Ok(())
            }
        };
        match self {
            Message::Versions { min, max } => out.extend_from_slice(&[*min, *max]),
            Message::Swim(b) | Message::Other { body: b, .. } => out.extend_from_slice(b),
            Message::Records(rs) => {
                too_many("records", rs.len(), usize::from(u8::MAX))?;
                out.push(rs.len() as u8);
                for r in rs {
                    r.validate()?;
                    out.extend_from_slice(&(r.buffer_len() as u16).to_be_bytes());
                    r.emit(out)?;
                }
            }
            Message::Digest {
                bits,
                first,
                hashes,
            } => {
                too_many(
                    "digest bits",
                    usize::from(*bits),
                    usize::from(MAX_DIGEST_BITS),
                )?;
                too_many("digest hashes", hashes.len(), MAX_DIGEST_HASHES)?;
                out.push(*bits);
                out.extend_from_slice(&first.to_be_bytes());
                out.extend_from_slice(&(hashes.len() as u16).to_be_bytes());
                for h in hashes {
                    out.extend_from_slice(&h.to_be_bytes());
                }
            }
            Message::Summary { lo, hi, entries } => {
                too_many("summary entries", entries.len(), MAX_SUMMARY_ENTRIES)?;
                out.extend_from_slice(&lo.to_bytes());
                out.extend_from_slice(&hi.to_bytes());
                out.extend_from_slice(&(entries.len() as u16).to_be_bytes());
                for e in entries {
                    out.extend_from_slice(&e.id.to_bytes());
                    out.extend_from_slice(&e.incarnation.to_be_bytes());
                    out.extend_from_slice(&e.version.to_be_bytes());
                }
            }
            Message::Pull(ids) => {
                too_many("pull ids", ids.len(), MAX_PULL_IDS)?;
                out.extend_from_slice(&(ids.len() as u16).to_be_bytes());
                for id in ids {
                    out.extend_from_slice(&id.to_bytes());
                }
            }
            Message::Join(r) => r.emit(out)?,
            Message::Broadcast {
                origin,
                seq,
                channel,
                payload,
            } => {
                too_many("channel name", channel.len(), MAX_CHANNEL_NAME)?;
                out.extend_from_slice(&origin.to_bytes());
                out.extend_from_slice(&seq.to_be_bytes());
                out.push(channel.len() as u8);
                out.extend_from_slice(channel.as_bytes());
                out.extend_from_slice(payload);
            }
            Message::Unicast { channel, payload } => {
                too_many("channel name", channel.len(), MAX_CHANNEL_NAME)?;
                out.push(channel.len() as u8);
                out.extend_from_slice(channel.as_bytes());
                out.extend_from_slice(payload);
            }
        }
        Ok(())
    }

    fn parse_body(kind: u8, r: &mut Reader<'_>) -> Result<Message, DecodeError> {
        let msg = match kind {
            kind::VERSIONS => Message::Versions {
                min: r.u8("versions min")?,
                max: r.u8("versions max")?,
            },
            kind::SWIM => Message::Swim(r.rest().to_vec()),
            kind::RECORDS => {
                let n = r.count("record count", usize::from(u8::MAX))?;
                let mut rs = Vec::with_capacity(n.min(16));
                for _ in 0..n {
                    let len = usize::from(r.u16("record length")?);
                    let base = r.offset();
                    let bytes = r.bytes(len, "record")?;
                    let mut rr = Reader::with_base(bytes, base);
                    let rec = PeerRecord::read(&mut rr)?;
                    rr.finish("record")?;
                    rs.push(rec);
                }
                Message::Records(rs)
            }
            kind::DIGEST => {
                let at = r.offset();
                let bits = r.u8("digest bits")?;
                if bits > MAX_DIGEST_BITS {
                    return Err(DecodeError::BadValue {
                        what: "digest bits",
                        offset: at,
                    });
                }
                let first = r.u16("digest first bucket")?;
                let n = r.count16("digest hash count", MAX_DIGEST_HASHES)?;
                if usize::from(first) + n > 1usize << bits {
                    return Err(DecodeError::BadValue {
                        what: "digest bucket range",
                        offset: at + 1,
                    });
                }
                let mut hashes = Vec::with_capacity(n);
                for _ in 0..n {
                    hashes.push(r.u64("digest hash")?);
                }
                Message::Digest {
                    bits,
                    first,
                    hashes,
                }
            }
            kind::SUMMARY => {
                let lo = r.peer_id("summary lo")?;
                let hi = r.peer_id("summary hi")?;
                let n = r.count16("summary entry count", MAX_SUMMARY_ENTRIES)?;
                let mut entries = Vec::with_capacity(n);
                for _ in 0..n {
                    entries.push(Stamp {
                        id: r.peer_id("summary id")?,
                        incarnation: r.u64("summary incarnation")?,
                        version: r.u64("summary version")?,
                    });
                }
                Message::Summary { lo, hi, entries }
            }
            kind::PULL => {
                let n = r.count16("pull count", MAX_PULL_IDS)?;
                let mut ids = Vec::with_capacity(n);
                for _ in 0..n {
                    ids.push(r.peer_id("pull id")?);
                }
                Message::Pull(ids)
            }
            kind::JOIN => Message::Join(PeerRecord::read(r)?),
            kind::BROADCAST => {
                let origin = r.peer_id("broadcast origin")?;
                let seq = r.u64("broadcast seq")?;
                let channel = read_channel(r)?;
                Message::Broadcast {
                    origin,
                    seq,
                    channel,
                    payload: r.rest().to_vec(),
                }
            }
            kind::UNICAST => {
                let channel = read_channel(r)?;
                Message::Unicast {
                    channel,
                    payload: r.rest().to_vec(),
                }
            }
            other => Message::Other {
                kind: other,
                body: r.rest().to_vec(),
            },
        };
        r.finish("message body")?;
        Ok(msg)
    }
}

fn read_channel(r: &mut Reader<'_>) -> Result<String, DecodeError> {
    let n = r.count("channel name length", MAX_CHANNEL_NAME)?;
    let at = r.offset();
    let b = r.bytes(n, "channel name")?;
    std::str::from_utf8(b)
        .map(str::to_owned)
        .map_err(|_| DecodeError::BadValue {
            what: "channel name (not UTF-8)",
            offset: at,
        })
}

/// One frame: header fields and message.
///
/// ```
/// use overlay_core::PeerId;
/// use overlay_gossip::wire::{parse_frames, Frame, Message};
///
/// let frame = Frame::new(PeerId::from_u128(1), Message::Pull(vec![PeerId::from_u128(2)]));
/// let mut dgram = Vec::new();
/// frame.emit(&mut dgram).unwrap();
/// let parsed: Vec<_> = parse_frames(&dgram).collect();
/// assert_eq!(parsed, vec![Ok(frame)]);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// Protocol version of the frame.
    pub version: u8,
    /// The sending peer.
    pub sender: PeerId,
    /// The message.
    pub message: Message,
}

impl Frame {
    /// A frame of the current [`VERSION`].
    pub fn new(sender: PeerId, message: Message) -> Self {
        Frame {
            version: VERSION,
            sender,
            message,
        }
    }

    /// The encoded length, header included.
    pub fn buffer_len(&self) -> usize {
        HEADER_LEN + self.message.body_len()
    }

    /// Appends the frame to `out`. On error nothing is appended.
    pub fn emit(&self, out: &mut Vec<u8>) -> Result<(), EncodeError> {
        let len = self.buffer_len();
        if len > MAX_FRAME_LEN {
            return Err(EncodeError::TooBig {
                len,
                max: MAX_FRAME_LEN,
            });
        }
        let start = out.len();
        out.extend_from_slice(&MAGIC.to_be_bytes());
        out.push(self.version);
        out.push(self.message.kind());
        // len <= MAX_FRAME_LEN, so the body length fits a u16.
        out.extend_from_slice(&((len - HEADER_LEN) as u16).to_be_bytes());
        out.extend_from_slice(&self.sender.to_bytes());
        if let Err(e) = self.message.emit_body(out) {
            out.truncate(start);
            return Err(e);
        }
        debug_assert_eq!(out.len() - start, len);
        Ok(())
    }

    /// Parses exactly one frame that fills `bytes`. Never panics.
    pub fn parse(bytes: &[u8]) -> Result<Frame, DecodeError> {
        let mut it = parse_frames(bytes);
        let frame = it.next().unwrap_or(Err(DecodeError::Truncated {
            what: "frame header",
            offset: 0,
        }))?;
        match it.rest_len() {
            0 => Ok(frame),
            extra => Err(DecodeError::Trailing {
                what: "frame",
                extra,
            }),
        }
    }
}

/// Iterates over the frames of a datagram; see [`parse_frames`].
#[derive(Debug, Clone)]
pub struct Frames<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl Frames<'_> {
    fn rest_len(&self) -> usize {
        self.buf.len().saturating_sub(self.pos)
    }
}

impl Iterator for Frames<'_> {
    type Item = Result<Frame, DecodeError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.pos >= self.buf.len() {
            return None;
        }
        let start = self.pos;
        let mut r = Reader::with_base(self.buf.get(start..)?, start);
        let header = (|| {
            let magic = r.u16("frame magic")?;
            if magic != MAGIC {
                return Err(DecodeError::BadMagic {
                    found: magic,
                    offset: start,
                });
            }
            let version = r.u8("frame version")?;
            let kind = r.u8("frame type")?;
            let len = usize::from(r.u16("frame length")?);
            if HEADER_LEN + len > MAX_FRAME_LEN {
                return Err(DecodeError::TooLong {
                    what: "frame length",
                    len: HEADER_LEN + len,
                    max: MAX_FRAME_LEN,
                });
            }
            Ok((version, kind, len))
        })();
        let (version, kind, len) = match header {
            Ok(h) => h,
            Err(e) => {
                // The frame boundary is lost: stop here.
                self.pos = self.buf.len();
                return Some(Err(e));
            }
        };
        let sender = match r.peer_id("frame sender") {
            Ok(s) => s,
            Err(e) => {
                self.pos = self.buf.len();
                return Some(Err(e));
            }
        };
        let body = match r.bytes(len, "frame body") {
            Ok(b) => b,
            Err(e) => {
                self.pos = self.buf.len();
                return Some(Err(e));
            }
        };
        // The header is intact: whatever the body holds, the next frame
        // starts after it.
        self.pos = start + HEADER_LEN + len;
        if kind != kind::VERSIONS && !(MIN_VERSION..=MAX_VERSION).contains(&version) {
            return Some(Err(DecodeError::UnsupportedVersion { version }));
        }
        let mut br = Reader::with_base(body, start + HEADER_LEN);
        Some(Message::parse_body(kind, &mut br).map(|message| Frame {
            version,
            sender,
            message,
        }))
    }
}

/// Parses the frames of one datagram. A frame with a bad body yields an
/// error and parsing continues with the next frame; a bad header (magic,
/// length) ends the iteration after its error.
pub fn parse_frames(datagram: &[u8]) -> Frames<'_> {
    Frames {
        buf: datagram,
        pos: 0,
    }
}

/// The version to speak with a peer that speaks `their_min..=their_max`:
/// the highest both sides speak, if any.
///
/// ```
/// use overlay_gossip::wire::negotiate;
/// assert_eq!(negotiate(1, 5), Some(1));
/// assert_eq!(negotiate(2, 5), None);
/// ```
pub fn negotiate(their_min: u8, their_max: u8) -> Option<u8> {
    let v = their_max.min(MAX_VERSION);
    (v >= their_min.max(MIN_VERSION)).then_some(v)
}

#[cfg(test)]
mod tests {
    use super::*;
    use overlay_core::MacAddr;
    use proptest::prelude::*;

    fn id(n: u128) -> PeerId {
        PeerId::from_u128(n)
    }

    #[test]
    fn golden_pull_frame() {
        let f = Frame::new(id(1), Message::Pull(vec![id(2)]));
        let mut b = Vec::new();
        f.emit(&mut b).unwrap();
        let mut want = vec![0x4f, 0x47, 1, 5, 0, 18];
        want.extend_from_slice(&id(1).to_bytes());
        want.extend_from_slice(&[0, 1]);
        want.extend_from_slice(&id(2).to_bytes());
        assert_eq!(b, want);
        assert_eq!(Frame::parse(&want), Ok(f));
    }

    #[test]
    fn unknown_type_is_kept_as_other_and_the_next_frame_still_parses() {
        let mut b = Vec::new();
        Frame::new(
            id(1),
            Message::Other {
                kind: 200,
                body: vec![1, 2, 3],
            },
        )
        .emit(&mut b)
        .unwrap();
        Frame::new(id(1), Message::Versions { min: 1, max: 1 })
            .emit(&mut b)
            .unwrap();
        let got: Vec<_> = parse_frames(&b).collect();
        assert_eq!(got.len(), 2);
        assert!(matches!(
            got[0],
            Ok(Frame {
                message: Message::Other { kind: 200, .. },
                ..
            })
        ));
        assert!(got[1].is_ok());
    }

    #[test]
    fn future_version_is_skipped_by_length() {
        let mut b = Vec::new();
        let mut f = Frame::new(id(1), Message::Pull(vec![]));
        f.version = 9;
        f.emit(&mut b).unwrap();
        Frame::new(id(1), Message::Pull(vec![]))
            .emit(&mut b)
            .unwrap();
        let got: Vec<_> = parse_frames(&b).collect();
        assert_eq!(got[0], Err(DecodeError::UnsupportedVersion { version: 9 }));
        assert!(got[1].is_ok());
        // Versions frames parse in every version.
        let mut v = Vec::new();
        let mut f = Frame::new(id(1), Message::Versions { min: 2, max: 9 });
        f.version = 9;
        f.emit(&mut v).unwrap();
        assert_eq!(Frame::parse(&v), Ok(f));
    }

    #[test]
    fn oversized_frame_is_refused_both_ways() {
        let f = Frame::new(id(1), Message::Swim(vec![0; MAX_FRAME_LEN]));
        let mut b = vec![9];
        assert!(matches!(f.emit(&mut b), Err(EncodeError::TooBig { .. })));
        assert_eq!(b, vec![9]);
        let mut hdr = vec![0x4f, 0x47, 1, 1, 0xff, 0xff];
        hdr.extend_from_slice(&[0; 16]);
        assert!(matches!(
            Frame::parse(&hdr),
            Err(DecodeError::TooLong { .. })
        ));
    }

    #[test]
    fn negotiation_picks_highest_common() {
        assert_eq!(negotiate(0, 0), None);
        assert_eq!(negotiate(1, 1), Some(1));
        assert_eq!(negotiate(0, 200), Some(MAX_VERSION));
    }

    fn arb_ip() -> impl Strategy<Value = IpAddr> {
        prop_oneof![
            any::<[u8; 4]>().prop_map(|o| IpAddr::V4(o.into())),
            any::<[u8; 16]>().prop_map(|o| IpAddr::V6(o.into())),
        ]
    }

    pub(crate) fn arb_record() -> impl Strategy<Value = PeerRecord> {
        (
            any::<u128>(),
            any::<(u64, u64, u8)>(),
            "[a-z0-9-]{0,20}",
            prop::collection::vec((arb_ip(), any::<u16>()), 0..=4),
            any::<[u8; 6]>(),
            prop::collection::vec(arb_ip(), 0..=4),
            any::<[u8; 32]>(),
            prop::collection::vec(any::<u128>(), 0..=32),
        )
            .prop_map(|(i, (inc, ver, flags), name, ul, mac, blocks, key, unr)| {
                let mut r = PeerRecord::new(PeerId::from_u128(i));
                r.incarnation = inc;
                r.version = ver;
                r.flags = flags;
                r.name = name;
                r.underlay = ul
                    .into_iter()
                    .map(|(ip, p)| std::net::SocketAddr::new(ip, p))
                    .collect();
                r.vtep_mac = MacAddr::new(mac);
                r.pod_blocks = blocks
                    .into_iter()
                    .map(|ip| {
                        let p = if ip.is_ipv4() { 24 } else { 64 };
                        ipnet::IpNet::new(ip, p).unwrap()
                    })
                    .collect();
                r.noise_static = key;
                r.unreachable = unr.into_iter().map(PeerId::from_u128).collect();
                r
            })
    }

    fn arb_message() -> impl Strategy<Value = Message> {
        prop_oneof![
            any::<(u8, u8)>().prop_map(|(min, max)| Message::Versions { min, max }),
            prop::collection::vec(any::<u8>(), 0..200).prop_map(Message::Swim),
            prop::collection::vec(arb_record(), 0..3).prop_map(Message::Records),
            (0u8..=6, prop::collection::vec(any::<u64>(), 0..=64)).prop_map(|(bits, hashes)| {
                let hashes: Vec<u64> = hashes.into_iter().take(1 << bits).collect();
                Message::Digest {
                    bits,
                    first: 0,
                    hashes,
                }
            }),
            (
                any::<(u128, u128)>(),
                prop::collection::vec(any::<(u128, u64, u64)>(), 0..=MAX_SUMMARY_ENTRIES)
            )
                .prop_map(|((lo, hi), es)| Message::Summary {
                    lo: id(lo),
                    hi: id(hi),
                    entries: es
                        .into_iter()
                        .map(|(i, incarnation, version)| Stamp {
                            id: id(i),
                            incarnation,
                            version
                        })
                        .collect(),
                }),
            prop::collection::vec(any::<u128>(), 0..=MAX_PULL_IDS)
                .prop_map(|v| Message::Pull(v.into_iter().map(id).collect())),
            arb_record().prop_map(Message::Join),
            (
                any::<(u128, u64)>(),
                "[a-z/]{0,32}",
                prop::collection::vec(any::<u8>(), 0..100)
            )
                .prop_map(|((o, seq), channel, payload)| Message::Broadcast {
                    origin: id(o),
                    seq,
                    channel,
                    payload
                }),
            ("[a-z/]{0,32}", prop::collection::vec(any::<u8>(), 0..100))
                .prop_map(|(channel, payload)| Message::Unicast { channel, payload }),
            (9u8..=255, prop::collection::vec(any::<u8>(), 0..50))
                .prop_map(|(kind, body)| Message::Other { kind, body }),
        ]
    }

    proptest! {
        #[test]
        fn frames_round_trip(sender in any::<u128>(), msgs in prop::collection::vec(arb_message(), 1..3)) {
            let mut dgram = Vec::new();
            let mut want = Vec::new();
            for m in msgs {
                let f = Frame::new(id(sender), m);
                if f.emit(&mut dgram).is_ok() {
                    want.push(Ok(f));
                }
            }
            let got: Vec<_> = parse_frames(&dgram).collect();
            prop_assert_eq!(got, want);
        }

        #[test]
        fn parse_never_panics_and_reemits_what_it_accepts(bytes in prop::collection::vec(any::<u8>(), 0..600)) {
            for f in parse_frames(&bytes).flatten() {
                let mut out = Vec::new();
                f.emit(&mut out).unwrap();
                prop_assert_eq!(Frame::parse(&out), Ok(f));
            }
        }

        #[test]
        fn record_round_trip(r in arb_record()) {
            let mut b = Vec::new();
            r.emit(&mut b).unwrap();
            prop_assert_eq!(b.len(), r.buffer_len());
            prop_assert_eq!(PeerRecord::parse(&b), Ok(r));
        }

        #[test]
        fn mutated_frames_never_panic(r in arb_record(), flips in prop::collection::vec((any::<usize>(), any::<u8>()), 1..8)) {
            let mut b = Vec::new();
            Frame::new(id(1), Message::Records(vec![r])).emit(&mut b).unwrap();
            for (at, v) in flips {
                let n = b.len();
                b[at % n] = v;
            }
            for f in parse_frames(&b).flatten() {
                let mut out = Vec::new();
                if f.emit(&mut out).is_ok() {
                    prop_assert_eq!(Frame::parse(&out), Ok(f));
                }
            }
        }
    }
}
