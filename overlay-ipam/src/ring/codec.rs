//! Compact, versioned binary forms of the ring: per-block [`Delta`]s for
//! gossip, a bucketed [`Digest`] for anti-entropy, and the full
//! [`Ring`] for the store.
//!
//! Every form starts with two bytes: the format version ([`VERSION`], 1)
//! and the kind (1 delta, 2 ring, 3 digest), then the 16-byte genesis id.
//! Integers that grow (epoch, version, free, counts, incarnations) are
//! LEB128 varints; addresses and ids are big-endian, 4 or 16 bytes.
//!
//! ```text
//! delta:  01 01 genesis[16] n:varint { family:u8 token[4|16] len:u8 stamp }*n  m:varint { peer[16] heir[16] inc:varint }*m
//! ring:   01 02 genesis[16] family:u8 universe[4|16] len:u8 min_len:u8  n:varint { first[4|16] stamp }*n  tombstones
//! digest: 01 03 genesis[16] bits:u8 tombstones:u64 { bucket:u64 }*(2^bits)
//! stamp:  owner[16] epoch:varint version:varint free:varint
//! ```
//!
//! A delta record is one aligned block of a few tens of bytes; the whole
//! ring is never gossiped on a change (Weave sent all of it on every
//! allocation). Panic contract: decoders never panic and never allocate
//! more than the input can describe, whatever the bytes; they return a
//! [`DecodeError`] saying what was wrong and where. A decoded [`Ring`] is
//! valid (its runs tile the universe); a decoded [`Delta`] may still hold
//! records that are not blocks of the receiving ring, which
//! [`Ring::apply`] skips and reports.
//!
//! ```
//! use overlay_ipam::ring::{Delta, Digest, Ring};
//! use overlay_core::PeerId;
//!
//! let (a, b) = (PeerId::from_u128(1), PeerId::from_u128(2));
//! let mut ring = Ring::from_seeds("10.0.0.0/16".parse().unwrap(), 26, &[a, b]).unwrap();
//! let record = ring.write(a, "10.0.0.0/26".parse().unwrap(), b, 64).unwrap();
//! let mut delta = Delta::new(ring.genesis().id());
//! delta.records.push(record);
//! let bytes = delta.encode();
//! assert_eq!(bytes.len(), 2 + 16 + 1 + (1 + 4 + 1 + 16 + 1 + 1 + 1) + 1);
//! assert_eq!(Delta::decode(&bytes).unwrap(), delta);
//!
//! assert_eq!(Ring::decode(&ring.encode()).unwrap(), ring);
//! let digest = ring.digest(4);
//! assert_eq!(Digest::decode(&digest.encode()).unwrap(), digest);
//! ```

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::IpNet;
use overlay_core::PeerId;
use overlay_core::hash::Fnv1a64;

use super::state::{
    Delta, Genesis, GenesisError, GenesisId, Record, Ring, Run, Stamp, Tombstone, host_size,
};
use crate::range::to_bits;

/// The format version written and understood.
pub const VERSION: u8 = 1;

const KIND_DELTA: u8 = 1;
const KIND_RING: u8 = 2;
const KIND_DIGEST: u8 = 3;

/// The most buckets a digest has: 2^16.
pub const MAX_BUCKET_BITS: u8 = 16;

/// Why bytes are not a ring form. Offsets are from the start of the input.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// The input ends before a field at `at`.
    #[error("input truncated at byte {at}")]
    Truncated {
        /// Offset of the missing field.
        at: usize,
    },
    /// The format version is not [`VERSION`].
    #[error("unsupported ring format version {0}")]
    UnsupportedVersion(u8),
    /// The kind byte is not the kind asked for.
    #[error("expected kind {expected}, found {found}")]
    WrongKind {
        /// The kind the decoder reads.
        expected: u8,
        /// The kind in the input.
        found: u8,
    },
    /// An address family byte other than 4 or 6.
    #[error("bad address family {family} at byte {at}")]
    BadFamily {
        /// The byte.
        family: u8,
        /// Its offset.
        at: usize,
    },
    /// A prefix length longer than the address.
    #[error("bad prefix length {len} at byte {at}")]
    BadPrefixLen {
        /// The length.
        len: u8,
        /// Its offset.
        at: usize,
    },
    /// A varint longer than its type allows.
    #[error("bad varint at byte {at}")]
    BadVarint {
        /// Its offset.
        at: usize,
    },
    /// A count larger than the rest of the input can hold.
    #[error("count {count} at byte {at} exceeds the input")]
    TooMany {
        /// The count.
        count: u64,
        /// Its offset.
        at: usize,
    },
    /// The ring parameters are invalid.
    #[error("invalid genesis: {0}")]
    Genesis(#[from] GenesisError),
    /// The runs of a ring do not tile its universe (out of order, outside,
    /// not aligned to the minimum block, or two equal neighbours).
    #[error("ring runs do not tile the universe at byte {at}")]
    NotATiling {
        /// Offset of the offending run.
        at: usize,
    },
    /// A tombstone names the dead peer as its own heir.
    #[error("tombstone at byte {at} names its peer as heir")]
    SelfHeir {
        /// Its offset.
        at: usize,
    },
    /// A digest's bucket bits exceed [`MAX_BUCKET_BITS`].
    #[error("digest bucket bits {0} exceed the maximum")]
    BadBucketBits(u8),
    /// Bytes follow the form.
    #[error("trailing bytes at {at}")]
    TrailingBytes {
        /// Offset of the first extra byte.
        at: usize,
    },
}

struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn new(buf: &'a [u8]) -> Self {
        Reader { buf, pos: 0 }
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&e| e <= self.buf.len())
            .ok_or(DecodeError::Truncated { at: self.pos })?;
        let out = &self.buf[self.pos..end];
        self.pos = end;
        Ok(out)
    }

    fn u8(&mut self) -> Result<u8, DecodeError> {
        Ok(self.take(1)?[0])
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], DecodeError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }

    fn varint(&mut self) -> Result<u64, DecodeError> {
        let at = self.pos;
        let mut value = 0u64;
        for shift in (0..64).step_by(7) {
            let b = self.u8()?;
            let bits = u64::from(b & 0x7f);
            if shift == 63 && bits > 1 {
                return Err(DecodeError::BadVarint { at });
            }
            value |= bits << shift;
            if b & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(DecodeError::BadVarint { at })
    }

    fn varint_u32(&mut self) -> Result<u32, DecodeError> {
        let at = self.pos;
        u32::try_from(self.varint()?).map_err(|_| DecodeError::BadVarint { at })
    }

    /// A count of items each at least `min_item` bytes long.
    fn count(&mut self, min_item: usize) -> Result<usize, DecodeError> {
        let at = self.pos;
        let count = self.varint()?;
        let rest = (self.buf.len() - self.pos) as u64;
        if count > rest / min_item as u64 {
            return Err(DecodeError::TooMany { count, at });
        }
        Ok(count as usize)
    }

    fn header(&mut self, kind: u8) -> Result<GenesisId, DecodeError> {
        let version = self.u8()?;
        if version != VERSION {
            return Err(DecodeError::UnsupportedVersion(version));
        }
        let found = self.u8()?;
        if found != kind {
            return Err(DecodeError::WrongKind {
                expected: kind,
                found,
            });
        }
        Ok(GenesisId::from_u128(u128::from_be_bytes(self.array()?)))
    }

    fn family(&mut self) -> Result<bool, DecodeError> {
        let at = self.pos;
        match self.u8()? {
            4 => Ok(false),
            6 => Ok(true),
            family => Err(DecodeError::BadFamily { family, at }),
        }
    }

    fn addr(&mut self, v6: bool) -> Result<IpAddr, DecodeError> {
        Ok(if v6 {
            IpAddr::V6(Ipv6Addr::from(self.array::<16>()?))
        } else {
            IpAddr::V4(Ipv4Addr::from(self.array::<4>()?))
        })
    }

    fn net(&mut self, addr: IpAddr) -> Result<IpNet, DecodeError> {
        let at = self.pos;
        let len = self.u8()?;
        IpNet::new(addr, len).map_err(|_| DecodeError::BadPrefixLen { len, at })
    }

    fn stamp(&mut self) -> Result<Stamp, DecodeError> {
        let owner = PeerId::from_bytes(self.array()?);
        Ok(Stamp {
            owner,
            epoch: self.varint_u32()?,
            version: self.varint()?,
            free: self.varint_u32()?,
        })
    }

    fn tombstones(&mut self) -> Result<Vec<Tombstone>, DecodeError> {
        let n = self.count(33)?;
        let mut out = Vec::with_capacity(n);
        for _ in 0..n {
            let at = self.pos;
            let peer = PeerId::from_bytes(self.array()?);
            let heir = PeerId::from_bytes(self.array()?);
            let up_to_incarnation = self.varint()?;
            if peer == heir {
                return Err(DecodeError::SelfHeir { at });
            }
            out.push(Tombstone {
                peer,
                up_to_incarnation,
                heir,
            });
        }
        Ok(out)
    }

    fn end(&self) -> Result<(), DecodeError> {
        if self.pos == self.buf.len() {
            Ok(())
        } else {
            Err(DecodeError::TrailingBytes { at: self.pos })
        }
    }
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn put_addr(out: &mut Vec<u8>, ip: IpAddr) {
    match ip {
        IpAddr::V4(v4) => out.extend_from_slice(&v4.octets()),
        IpAddr::V6(v6) => out.extend_from_slice(&v6.octets()),
    }
}

fn put_family(out: &mut Vec<u8>, ip: IpAddr) {
    out.push(if ip.is_ipv4() { 4 } else { 6 });
}

fn put_stamp(out: &mut Vec<u8>, s: &Stamp) {
    out.extend_from_slice(&s.owner.to_bytes());
    put_varint(out, u64::from(s.epoch));
    put_varint(out, s.version);
    put_varint(out, u64::from(s.free));
}

fn put_header(out: &mut Vec<u8>, kind: u8, id: GenesisId) {
    out.push(VERSION);
    out.push(kind);
    out.extend_from_slice(&id.as_u128().to_be_bytes());
}

fn put_tombstones(out: &mut Vec<u8>, ts: &[Tombstone]) {
    put_varint(out, ts.len() as u64);
    for t in ts {
        out.extend_from_slice(&t.peer.to_bytes());
        out.extend_from_slice(&t.heir.to_bytes());
        put_varint(out, t.up_to_incarnation);
    }
}

impl Delta {
    /// Append the encoded delta to `out`.
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        put_header(out, KIND_DELTA, self.genesis);
        put_varint(out, self.records.len() as u64);
        for r in &self.records {
            put_family(out, r.block.addr());
            put_addr(out, r.block.addr());
            out.push(r.block.prefix_len());
            put_stamp(out, &r.stamp);
        }
        put_tombstones(out, &self.tombstones);
    }

    /// The encoded delta.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(20 + self.records.len() * 28);
        self.encode_into(&mut out);
        out
    }

    /// Decode a delta from untrusted bytes.
    ///
    /// ```
    /// use overlay_ipam::ring::{DecodeError, Delta};
    ///
    /// assert_eq!(Delta::decode(&[1, 1]), Err(DecodeError::Truncated { at: 2 }));
    /// assert_eq!(Delta::decode(&[9, 1]), Err(DecodeError::UnsupportedVersion(9)));
    /// ```
    pub fn decode(bytes: &[u8]) -> Result<Delta, DecodeError> {
        let mut r = Reader::new(bytes);
        let genesis = r.header(KIND_DELTA)?;
        // family + 4-byte token + len + 16-byte owner + 3 one-byte varints.
        let n = r.count(25)?;
        let mut records = Vec::with_capacity(n);
        for _ in 0..n {
            let v6 = r.family()?;
            let addr = r.addr(v6)?;
            let block = r.net(addr)?;
            let stamp = r.stamp()?;
            records.push(Record { block, stamp });
        }
        let tombstones = r.tombstones()?;
        r.end()?;
        Ok(Delta {
            genesis,
            records,
            tombstones,
        })
    }
}

impl Ring {
    /// Append the full state to `out` (the store's form).
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        let g = self.genesis();
        put_header(out, KIND_RING, g.id());
        let u = g.universe();
        put_family(out, u.addr());
        put_addr(out, u.network());
        out.push(u.prefix_len());
        out.push(g.min_block_len());
        put_varint(out, self.runs().len() as u64);
        let like = u.addr();
        for run in self.runs() {
            put_addr(out, crate::range::from_bits(like, run.first));
            put_stamp(out, &run.stamp);
        }
        put_tombstones(out, &self.tombstones());
    }

    /// The full state, encoded.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(64 + self.runs().len() * 24);
        self.encode_into(&mut out);
        out
    }

    /// Decode a full state from untrusted bytes; the result is a valid
    /// ring (its runs tile the universe on minimum-block boundaries, in
    /// canonical form).
    ///
    /// ```
    /// use overlay_ipam::ring::{DecodeError, Ring};
    /// use overlay_core::PeerId;
    ///
    /// let ring = Ring::from_seeds("10.0.0.0/16".parse().unwrap(), 26, &[PeerId::from_u128(1)]).unwrap();
    /// let mut bytes = ring.encode();
    /// bytes.push(0);
    /// assert!(matches!(Ring::decode(&bytes), Err(DecodeError::TrailingBytes { .. })));
    /// ```
    pub fn decode(bytes: &[u8]) -> Result<Ring, DecodeError> {
        let mut r = Reader::new(bytes);
        let id = r.header(KIND_RING)?;
        let v6 = r.family()?;
        let addr = r.addr(v6)?;
        let universe = r.net(addr)?;
        let min_block_len = r.u8()?;
        let genesis = Genesis::new(id, universe, min_block_len)?;
        let universe = genesis.universe();
        let width = universe.max_prefix_len();
        let min_size = host_size(width, min_block_len);
        let (ufirst, ulast) = (to_bits(universe.network()), to_bits(universe.broadcast()));
        let n = r.count(if v6 { 35 } else { 23 })?;
        let mut runs: Vec<Run> = Vec::with_capacity(n);
        for _ in 0..n {
            let at = r.pos;
            let first = to_bits(r.addr(v6)?);
            let stamp = r.stamp()?;
            let ok = match runs.last() {
                None => first == ufirst,
                Some(prev) => first > prev.first && prev.stamp != stamp,
            };
            let ok = ok && first <= ulast && (first - ufirst).is_multiple_of(min_size);
            if !ok {
                return Err(DecodeError::NotATiling { at });
            }
            runs.push(Run { first, stamp });
        }
        if runs.is_empty() {
            return Err(DecodeError::NotATiling { at: r.pos });
        }
        let mut tombstones: BTreeMap<PeerId, BTreeMap<PeerId, u64>> = BTreeMap::new();
        for t in r.tombstones()? {
            let slot = tombstones
                .entry(t.peer)
                .or_default()
                .entry(t.heir)
                .or_insert(0);
            *slot = (*slot).max(t.up_to_incarnation);
        }
        r.end()?;
        Ok(Ring::from_parts(genesis, runs, tombstones))
    }

    /// The bucket bits a digest asked for with `bits` really has (capped).
    pub(crate) fn digest_bits(&self, bits: u8) -> u8 {
        self.bucket_bits(bits)
    }

    fn bucket_bits(&self, bits: u8) -> u8 {
        let g = self.genesis();
        bits.min(MAX_BUCKET_BITS)
            .min(g.min_block_len() - g.universe().prefix_len())
    }

    fn bucket_host_bits(&self, bits: u8) -> u32 {
        let u = self.genesis().universe();
        u32::from(u.max_prefix_len() - u.prefix_len() - bits)
    }

    /// The anti-entropy digest: the universe cut into `2^bits` buckets
    /// (`bits` capped at [`MAX_BUCKET_BITS`] and so that a bucket is no
    /// smaller than the minimum block), a stable hash of the runs in each,
    /// and a hash of the tombstones. Two replicas exchange digests and send
    /// each other the records of the buckets that differ
    /// ([`delta_for_buckets`](Self::delta_for_buckets)).
    ///
    /// ```
    /// use overlay_ipam::ring::Ring;
    /// use overlay_core::PeerId;
    ///
    /// let (a, b) = (PeerId::from_u128(1), PeerId::from_u128(2));
    /// let x = Ring::from_seeds("10.0.0.0/16".parse().unwrap(), 26, &[a, b]).unwrap();
    /// let mut y = x.clone();
    /// y.write(b, "10.0.255.192/26".parse().unwrap(), b, 3).unwrap();
    /// let diff = y.digest(4).differing(&x.digest(4)).unwrap();
    /// assert_eq!(diff, [15]);
    /// let mut x = x;
    /// x.apply(&y.delta_for_buckets(4, &diff));
    /// assert_eq!(x, y);
    /// ```
    pub fn digest(&self, bits: u8) -> Digest {
        let bits = self.bucket_bits(bits);
        let hb = self.bucket_host_bits(bits);
        let ufirst = to_bits(self.genesis().universe().network());
        let mut hashes = vec![Fnv1a64::new(); 1usize << bits];
        let runs = self.runs();
        for (k, run) in runs.iter().enumerate() {
            let last = self.run_last(k);
            let (ia, ib) = ((run.first - ufirst) >> hb, (last - ufirst) >> hb);
            for i in ia..=ib {
                let bucket_first = ufirst + (i << hb);
                let first = run.first.max(bucket_first);
                // `i` < 2^bits by construction.
                if let Some(h) = hashes.get_mut(i as usize) {
                    h.write(&first.to_be_bytes())
                        .write(&run.stamp.owner.to_bytes())
                        .write(&run.stamp.epoch.to_be_bytes())
                        .write(&run.stamp.version.to_be_bytes())
                        .write(&run.stamp.free.to_be_bytes());
                }
            }
        }
        let mut th = Fnv1a64::new();
        for t in self.tombstones() {
            th.write(&t.peer.to_bytes())
                .write(&t.heir.to_bytes())
                .write(&t.up_to_incarnation.to_be_bytes());
        }
        Digest {
            genesis: self.genesis().id(),
            bucket_bits: bits,
            tombstones: th.finish(),
            buckets: hashes.iter().map(Fnv1a64::finish).collect(),
        }
    }

    /// The records of the given buckets (of a digest of `bits`) and every
    /// tombstone: the repair for a peer whose digest differs there.
    pub fn delta_for_buckets(&self, bits: u8, buckets: &[u32]) -> Delta {
        let bits = self.bucket_bits(bits);
        let hb = self.bucket_host_bits(bits);
        let ufirst = to_bits(self.genesis().universe().network());
        let mut delta = Delta::new(self.genesis().id());
        for &i in buckets {
            if u64::from(i) >> bits != 0 {
                continue;
            }
            let lo = ufirst + (u128::from(i) << hb);
            let hi = lo + super::state::low_mask(hb);
            delta.records.extend(self.delta_between(lo, hi).records);
        }
        delta.tombstones = self.tombstones();
        delta
    }
}

/// A bucketed digest of a ring for anti-entropy ([`Ring::digest`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Digest {
    genesis: GenesisId,
    bucket_bits: u8,
    tombstones: u64,
    buckets: Vec<u64>,
}

impl Digest {
    /// The ring's id.
    pub fn genesis(&self) -> GenesisId {
        self.genesis
    }

    /// `log2` of the number of buckets.
    pub fn bucket_bits(&self) -> u8 {
        self.bucket_bits
    }

    /// The hash of the tombstone set.
    pub fn tombstone_hash(&self) -> u64 {
        self.tombstones
    }

    /// The bucket hashes.
    pub fn buckets(&self) -> &[u64] {
        &self.buckets
    }

    /// The buckets whose hashes differ, or `None` when the digests are of
    /// different rings or bucket counts (never compared).
    pub fn differing(&self, other: &Digest) -> Option<Vec<u32>> {
        if self.genesis != other.genesis || self.bucket_bits != other.bucket_bits {
            return None;
        }
        Some(
            self.buckets
                .iter()
                .zip(&other.buckets)
                .enumerate()
                .filter(|(_, (a, b))| a != b)
                .map(|(i, _)| i as u32)
                .collect(),
        )
    }

    /// Append the encoded digest to `out`.
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        put_header(out, KIND_DIGEST, self.genesis);
        out.push(self.bucket_bits);
        out.extend_from_slice(&self.tombstones.to_be_bytes());
        for b in &self.buckets {
            out.extend_from_slice(&b.to_be_bytes());
        }
    }

    /// The encoded digest.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(27 + 8 * self.buckets.len());
        self.encode_into(&mut out);
        out
    }

    /// Decode a digest from untrusted bytes.
    ///
    /// ```
    /// use overlay_ipam::ring::{DecodeError, Digest};
    ///
    /// let mut bytes = vec![1, 3];
    /// bytes.extend([0; 16]);
    /// bytes.push(17);
    /// assert_eq!(Digest::decode(&bytes), Err(DecodeError::BadBucketBits(17)));
    /// ```
    pub fn decode(bytes: &[u8]) -> Result<Digest, DecodeError> {
        let mut r = Reader::new(bytes);
        let genesis = r.header(KIND_DIGEST)?;
        let bucket_bits = r.u8()?;
        if bucket_bits > MAX_BUCKET_BITS {
            return Err(DecodeError::BadBucketBits(bucket_bits));
        }
        let tombstones = u64::from_be_bytes(r.array()?);
        let n = 1usize << bucket_bits;
        let mut buckets = Vec::with_capacity(n.min((bytes.len() - r.pos) / 8));
        for _ in 0..n {
            buckets.push(u64::from_be_bytes(r.array()?));
        }
        r.end()?;
        Ok(Digest {
            genesis,
            bucket_bits,
            tombstones,
            buckets,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varints_round_trip_and_reject_overlong() {
        for v in [0, 1, 127, 128, 300, u64::from(u32::MAX), u64::MAX] {
            let mut out = Vec::new();
            put_varint(&mut out, v);
            assert_eq!(Reader::new(&out).varint(), Ok(v));
        }
        let overlong = [0xff; 11];
        assert_eq!(
            Reader::new(&overlong).varint(),
            Err(DecodeError::BadVarint { at: 0 })
        );
        let too_big = [0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02];
        assert_eq!(
            Reader::new(&too_big).varint(),
            Err(DecodeError::BadVarint { at: 0 })
        );
    }

    #[test]
    fn golden_delta_bytes() {
        let mut d = Delta::new(GenesisId::from_u128(0x0102));
        d.records.push(Record {
            block: "10.0.0.64/26".parse().unwrap(),
            stamp: Stamp {
                epoch: 1,
                version: 300,
                owner: PeerId::from_u128(7),
                free: 5,
            },
        });
        d.tombstones.push(Tombstone {
            peer: PeerId::from_u128(3),
            up_to_incarnation: 2,
            heir: PeerId::from_u128(4),
        });
        let mut want = vec![1, 1];
        want.extend(0x0102u128.to_be_bytes());
        want.extend([1, 4, 10, 0, 0, 64, 26]);
        want.extend(7u128.to_be_bytes());
        want.extend([1, 0xac, 0x02, 5, 1]);
        want.extend(3u128.to_be_bytes());
        want.extend(4u128.to_be_bytes());
        want.push(2);
        assert_eq!(d.encode(), want);
        assert_eq!(Delta::decode(&want), Ok(d));
    }
}
