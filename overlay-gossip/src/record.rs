//! The peer record: the one small, owner-written fact every peer gossips about
//! itself.
//!
//! A [`PeerRecord`] says where a peer is (underlay endpoints), how to reach its
//! containers (VTEP MAC, pod blocks), which key authenticates it (its Noise
//! static key) and which peers it cannot reach directly. Only the owner writes
//! its record; every change bumps [`PeerRecord::version`], and a restart starts
//! a new [`PeerRecord::incarnation`]. Replicas merge by the pair
//! `(incarnation, version)`: the larger pair wins, equal pairs are the same
//! record.
//!
//! A record is about 100 bytes on the wire (a name of 10 bytes, one IPv4
//! endpoint and one IPv4 pod block); its size is bounded by the limits below,
//! never by the cluster size.

use std::net::{IpAddr, SocketAddr};

use ipnet::IpNet;
use overlay_core::{MacAddr, PeerId};

use crate::wire::{DecodeError, Reader};

/// Longest [`PeerRecord::name`], in bytes.
pub const MAX_NAME_LEN: usize = 64;
/// Most [`PeerRecord::underlay`] endpoints in one record.
pub const MAX_UNDERLAY: usize = 4;
/// Most [`PeerRecord::pod_blocks`] in one record.
pub const MAX_POD_BLOCKS: usize = 16;
/// Most [`PeerRecord::unreachable`] peers in one record.
pub const MAX_UNREACHABLE: usize = 32;

/// Record flag: the owner is leaving the cluster gracefully.
pub const FLAG_LEAVING: u8 = 0x01;

/// One peer's owner-written record.
///
/// ```
/// use overlay_core::{MacAddr, PeerId};
/// use overlay_gossip::PeerRecord;
///
/// let mut rec = PeerRecord::new(PeerId::from_u128(7));
/// rec.name = "node-7".into();
/// rec.underlay = vec!["192.0.2.7:7946".parse().unwrap()];
/// rec.vtep_mac = MacAddr::new([0x02, 0, 0, 0, 0, 7]);
/// rec.pod_blocks = vec!["10.244.7.0/24".parse().unwrap()];
/// assert!(rec.validate().is_ok());
/// let mut buf = Vec::new();
/// rec.emit(&mut buf).unwrap();
/// assert_eq!(buf.len(), rec.buffer_len());
/// assert_eq!(PeerRecord::parse(&buf).unwrap(), rec);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct PeerRecord {
    /// The owner.
    pub id: PeerId,
    /// The owner's life: a new, larger value after every restart or after the
    /// cluster declared the owner down.
    pub incarnation: u64,
    /// Bumped by the owner on every change within one incarnation.
    pub version: u64,
    /// Flag bits ([`FLAG_LEAVING`]); unknown bits are kept.
    pub flags: u8,
    /// A human-readable node name (at most [`MAX_NAME_LEN`] bytes of UTF-8).
    pub name: String,
    /// Underlay endpoints; the first is where the peer receives gossip.
    pub underlay: Vec<SocketAddr>,
    /// The MAC address of the peer's VXLAN tunnel endpoint.
    pub vtep_mac: MacAddr,
    /// Pod address blocks the peer owns.
    pub pod_blocks: Vec<IpNet>,
    /// The peer's Noise static public key (all zero in unencrypted mode).
    pub noise_static: [u8; 32],
    /// Peers the owner cannot reach directly (at most [`MAX_UNREACHABLE`]).
    pub unreachable: Vec<PeerId>,
}

/// A record that breaks one of the size limits.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RecordError {
    /// A list or the name is longer than its limit.
    #[error("record field {field} has {len} entries, the limit is {max}")]
    TooLong {
        /// The field.
        field: &'static str,
        /// Its length.
        len: usize,
        /// The limit.
        max: usize,
    },
}

impl PeerRecord {
    /// An empty record of `id` at incarnation 0, version 0.
    pub fn new(id: PeerId) -> Self {
        PeerRecord {
            id,
            incarnation: 0,
            version: 0,
            flags: 0,
            name: String::new(),
            underlay: Vec::new(),
            vtep_mac: MacAddr::ZERO,
            pod_blocks: Vec::new(),
            noise_static: [0; 32],
            unreachable: Vec::new(),
        }
    }

    /// The merge order key: the larger `(incarnation, version)` wins.
    pub fn stamp(&self) -> (u64, u64) {
        (self.incarnation, self.version)
    }

    /// True when the owner announced a graceful leave.
    pub fn is_leaving(&self) -> bool {
        self.flags & FLAG_LEAVING != 0
    }

    /// The endpoint gossip is sent to (the first underlay endpoint).
    pub fn gossip_addr(&self) -> Option<SocketAddr> {
        self.underlay.first().copied()
    }

    /// Checks the size limits.
    pub fn validate(&self) -> Result<(), RecordError> {
        let check = |field, len, max| {
            if len > max {
                Err(RecordError::TooLong { field, len, max })
            } else {
                Ok(())
            }
        };
        check("name", self.name.len(), MAX_NAME_LEN)?;
        check("underlay", self.underlay.len(), MAX_UNDERLAY)?;
        check("pod_blocks", self.pod_blocks.len(), MAX_POD_BLOCKS)?;
        check("unreachable", self.unreachable.len(), MAX_UNREACHABLE)
    }

    /// The encoded length in bytes.
    pub fn buffer_len(&self) -> usize {
        let addrs: usize = self.underlay.iter().map(|a| 1 + ip_len(a.ip()) + 2).sum();
        let blocks: usize = self
            .pod_blocks
            .iter()
            .map(|b| 1 + ip_len(b.addr()) + 1)
            .sum();
        FIXED_LEN + self.name.len() + addrs + blocks + 16 * self.unreachable.len()
    }

    /// Appends the encoding to `out`. Fails (and appends nothing) when a limit
    /// is broken.
    pub fn emit(&self, out: &mut Vec<u8>) -> Result<(), RecordError> {
        self.validate()?;
        out.reserve(self.buffer_len());
        out.extend_from_slice(&self.id.to_bytes());
        out.extend_from_slice(&self.incarnation.to_be_bytes());
        out.extend_from_slice(&self.version.to_be_bytes());
        out.push(self.flags);
        out.extend_from_slice(self.vtep_mac.as_bytes());
        out.extend_from_slice(&self.noise_static);
        // Lengths fit a u8: validate() bounds them well below 256.
        out.push(self.name.len() as u8);
        out.extend_from_slice(self.name.as_bytes());
        out.push(self.underlay.len() as u8);
        for a in &self.underlay {
            emit_ip(out, a.ip());
            out.extend_from_slice(&a.port().to_be_bytes());
        }
        out.push(self.pod_blocks.len() as u8);
        for b in &self.pod_blocks {
            emit_ip(out, b.addr());
            out.push(b.prefix_len());
        }
        out.push(self.unreachable.len() as u8);
        for p in &self.unreachable {
            out.extend_from_slice(&p.to_bytes());
        }
        Ok(())
    }

    /// Parses one record that fills `bytes` exactly. Never panics.
    pub fn parse(bytes: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(bytes);
        let rec = Self::read(&mut r)?;
        r.finish("record")?;
        Ok(rec)
    }

    pub(crate) fn read(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let id = r.peer_id("record id")?;
        let incarnation = r.u64("record incarnation")?;
        let version = r.u64("record version")?;
        let flags = r.u8("record flags")?;
        let vtep_mac = MacAddr::new(r.array("record vtep mac")?);
        let noise_static = r.array("record noise key")?;
        let name_len = r.count("record name", MAX_NAME_LEN)?;
        let at = r.offset();
        let name = std::str::from_utf8(r.bytes(name_len, "record name")?)
            .map_err(|_| DecodeError::BadValue {
                what: "record name (not UTF-8)",
                offset: at,
            })?
            .to_owned();
        let n = r.count("record underlay count", MAX_UNDERLAY)?;
        let mut underlay = Vec::with_capacity(n);
        for _ in 0..n {
            let ip = r.ip("record underlay address")?;
            let port = r.u16("record underlay port")?;
            underlay.push(SocketAddr::new(ip, port));
        }
        let n = r.count("record pod block count", MAX_POD_BLOCKS)?;
        let mut pod_blocks = Vec::with_capacity(n);
        for _ in 0..n {
            let ip = r.ip("record pod block address")?;
            let at = r.offset();
            let prefix = r.u8("record pod block prefix")?;
            let net = IpNet::new(ip, prefix).map_err(|_| DecodeError::BadValue {
                what: "record pod block prefix",
                offset: at,
            })?;
            pod_blocks.push(net);
        }
        let n = r.count("record unreachable count", MAX_UNREACHABLE)?;
        let mut unreachable = Vec::with_capacity(n);
        for _ in 0..n {
            unreachable.push(r.peer_id("record unreachable peer")?);
        }
        Ok(PeerRecord {
            id,
            incarnation,
            version,
            flags,
            name,
            underlay,
            vtep_mac,
            pod_blocks,
            noise_static,
            unreachable,
        })
    }

    /// Bytes of memory this record holds, its heap parts included.
    pub fn memory_size(&self) -> usize {
        std::mem::size_of::<Self>()
            + self.name.capacity()
            + self.underlay.capacity() * std::mem::size_of::<SocketAddr>()
            + self.pod_blocks.capacity() * std::mem::size_of::<IpNet>()
            + self.unreachable.capacity() * std::mem::size_of::<PeerId>()
    }
}

/// id, incarnation, version, flags, MAC, key and the four length bytes.
const FIXED_LEN: usize = 16 + 8 + 8 + 1 + 6 + 32 + 4;

fn ip_len(ip: IpAddr) -> usize {
    match ip {
        IpAddr::V4(_) => 4,
        IpAddr::V6(_) => 16,
    }
}

pub(crate) fn emit_ip(out: &mut Vec<u8>, ip: IpAddr) {
    match ip {
        IpAddr::V4(v4) => {
            out.push(4);
            out.extend_from_slice(&v4.octets());
        }
        IpAddr::V6(v6) => {
            out.push(6);
            out.extend_from_slice(&v6.octets());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn sample(id: u128) -> PeerRecord {
        let mut r = PeerRecord::new(PeerId::from_u128(id));
        r.incarnation = 3;
        r.version = 9;
        r.name = "node-a".into();
        r.underlay = vec!["192.0.2.1:7946".parse().unwrap()];
        r.vtep_mac = MacAddr::new([2, 0, 0, 0, 0, 1]);
        r.pod_blocks = vec!["10.244.1.0/24".parse().unwrap()];
        r.noise_static = [7; 32];
        r
    }

    #[test]
    fn typical_record_is_about_100_bytes() {
        let r = sample(1);
        let mut buf = Vec::new();
        r.emit(&mut buf).unwrap();
        assert_eq!(buf.len(), r.buffer_len());
        assert_eq!(buf.len(), 16 + 8 + 8 + 1 + 6 + 32 + 4 + 6 + 7 + 6);
        assert_eq!(PeerRecord::parse(&buf).unwrap(), r);
    }

    #[test]
    fn emit_refuses_oversized_lists_and_appends_nothing() {
        let mut r = sample(1);
        r.unreachable = vec![PeerId::from_u128(1); MAX_UNREACHABLE + 1];
        let mut buf = vec![0xaa];
        assert_eq!(
            r.emit(&mut buf),
            Err(RecordError::TooLong {
                field: "unreachable",
                len: 33,
                max: 32
            })
        );
        assert_eq!(buf, vec![0xaa]);
    }

    #[test]
    fn parse_reports_truncation_with_offset() {
        let r = sample(1);
        let mut buf = Vec::new();
        r.emit(&mut buf).unwrap();
        buf.truncate(20);
        assert_eq!(
            PeerRecord::parse(&buf),
            Err(DecodeError::Truncated {
                what: "record incarnation",
                offset: 16
            })
        );
    }

    #[test]
    fn parse_rejects_bad_prefix_and_trailing_bytes() {
        let r = sample(1);
        let mut buf = Vec::new();
        r.emit(&mut buf).unwrap();
        let mut trailing = buf.clone();
        trailing.push(0);
        assert!(matches!(
            PeerRecord::parse(&trailing),
            Err(DecodeError::Trailing { .. })
        ));
        // The pod block prefix is the byte before the unreachable count.
        let at = buf.len() - 2;
        buf[at] = 33;
        assert_eq!(
            PeerRecord::parse(&buf),
            Err(DecodeError::BadValue {
                what: "record pod block prefix",
                offset: at
            })
        );
    }
}
