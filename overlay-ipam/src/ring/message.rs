//! The wire form of [`Message`]: what node allocators send each other
//! through the gossip layer's channel.
//!
//! ```text
//! message: 01 04 tag:u8 body
//!   tag 1 SpaceRequest   (no body)
//!   tag 2 SpaceDenied    (no body)
//!   tag 3 Claim          addrs
//!   tag 4 ClaimReply     addrs(granted) addrs(refused)
//!   tag 5 ReleaseClaim   addrs
//!   tag 6 Delta          the delta's own form (codec: 01 01 ...)
//!   tag 7 Digest         reply:u8 (0 or 1), the digest's own form (01 03 ...)
//! addrs: n:u16 { family:u8 (4|6) addr[4|16] }*n
//! ```
//!
//! Decoding never panics and never allocates more than the input can
//! describe; an unknown tag is [`DecodeError::WrongKind`] (a newer peer's
//! message, which the receiver skips).
//!
//! ```
//! use overlay_ipam::ring::Message;
//!
//! let m = Message::Claim { addresses: vec!["10.32.0.5".parse().unwrap(), "2001:db8::5".parse().unwrap()] };
//! let bytes = m.encode();
//! assert_eq!(bytes.len(), 3 + 2 + 5 + 17);
//! assert_eq!(Message::decode(&bytes).unwrap(), m);
//! assert!(Message::decode(&bytes[..7]).is_err());
//! ```

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::codec::{DecodeError, Digest, VERSION};
use super::node::Message;
use super::state::Delta;

/// The kind byte of a message (after the ring forms' 1 to 3).
const KIND_MESSAGE: u8 = 4;

const TAG_SPACE_REQUEST: u8 = 1;
const TAG_SPACE_DENIED: u8 = 2;
const TAG_CLAIM: u8 = 3;
const TAG_CLAIM_REPLY: u8 = 4;
const TAG_RELEASE_CLAIM: u8 = 5;
const TAG_DELTA: u8 = 6;
const TAG_DIGEST: u8 = 7;

fn put_addrs(out: &mut Vec<u8>, addrs: &[IpAddr]) {
    // Longer lists than a u16 counts are cut: a node never claims that
    // many addresses in one message (its blocks hold far fewer pods).
    let n = addrs.len().min(usize::from(u16::MAX));
    out.extend_from_slice(&u16::try_from(n).unwrap_or(u16::MAX).to_be_bytes());
    for a in &addrs[..n] {
        match a {
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
}

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        let end = self
            .at
            .checked_add(n)
            .filter(|end| *end <= self.bytes.len())
            .ok_or(DecodeError::Truncated { at: self.at })?;
        let out = &self.bytes[self.at..end];
        self.at = end;
        Ok(out)
    }

    fn u8(&mut self) -> Result<u8, DecodeError> {
        Ok(self.take(1)?[0])
    }

    fn rest(&mut self) -> &'a [u8] {
        let out = &self.bytes[self.at..];
        self.at = self.bytes.len();
        out
    }

    fn addrs(&mut self) -> Result<Vec<IpAddr>, DecodeError> {
        let at = self.at;
        let count = u16::from_be_bytes([self.u8()?, self.u8()?]);
        // Each address takes at least 5 bytes.
        let left = self.bytes.len() - self.at;
        if usize::from(count) * 5 > left {
            return Err(DecodeError::TooMany {
                count: u64::from(count),
                at,
            });
        }
        let mut out = Vec::with_capacity(usize::from(count));
        for _ in 0..count {
            let at = self.at;
            match self.u8()? {
                4 => {
                    let b: [u8; 4] = self
                        .take(4)?
                        .try_into()
                        .map_err(|_| DecodeError::Truncated { at })?;
                    out.push(IpAddr::V4(Ipv4Addr::from(b)));
                }
                6 => {
                    let b: [u8; 16] = self
                        .take(16)?
                        .try_into()
                        .map_err(|_| DecodeError::Truncated { at })?;
                    out.push(IpAddr::V6(Ipv6Addr::from(b)));
                }
                family => return Err(DecodeError::BadFamily { family, at }),
            }
        }
        Ok(out)
    }
}

impl Message {
    /// The message's wire form (see the [module docs](self)).
    pub fn encode(&self) -> Vec<u8> {
        let mut out = vec![VERSION, KIND_MESSAGE];
        match self {
            Message::SpaceRequest => out.push(TAG_SPACE_REQUEST),
            Message::SpaceDenied => out.push(TAG_SPACE_DENIED),
            Message::Claim { addresses } => {
                out.push(TAG_CLAIM);
                put_addrs(&mut out, addresses);
            }
            Message::ClaimReply { granted, refused } => {
                out.push(TAG_CLAIM_REPLY);
                put_addrs(&mut out, granted);
                put_addrs(&mut out, refused);
            }
            Message::ReleaseClaim { addresses } => {
                out.push(TAG_RELEASE_CLAIM);
                put_addrs(&mut out, addresses);
            }
            Message::Delta(delta) => {
                out.push(TAG_DELTA);
                delta.encode_into(&mut out);
            }
            Message::Digest { digest, reply } => {
                out.push(TAG_DIGEST);
                out.push(u8::from(*reply));
                digest.encode_into(&mut out);
            }
        }
        out
    }

    /// A message from its wire form.
    pub fn decode(bytes: &[u8]) -> Result<Message, DecodeError> {
        let mut r = Reader { bytes, at: 0 };
        let version = r.u8()?;
        if version != VERSION {
            return Err(DecodeError::UnsupportedVersion(version));
        }
        let kind = r.u8()?;
        if kind != KIND_MESSAGE {
            return Err(DecodeError::WrongKind {
                expected: KIND_MESSAGE,
                found: kind,
            });
        }
        let message = match r.u8()? {
            TAG_SPACE_REQUEST => Message::SpaceRequest,
            TAG_SPACE_DENIED => Message::SpaceDenied,
            TAG_CLAIM => Message::Claim {
                addresses: r.addrs()?,
            },
            TAG_CLAIM_REPLY => Message::ClaimReply {
                granted: r.addrs()?,
                refused: r.addrs()?,
            },
            TAG_RELEASE_CLAIM => Message::ReleaseClaim {
                addresses: r.addrs()?,
            },
            TAG_DELTA => return Ok(Message::Delta(Delta::decode(r.rest())?)),
            TAG_DIGEST => {
                let reply = match r.u8()? {
                    0 => false,
                    1 => true,
                    other => {
                        return Err(DecodeError::WrongKind {
                            expected: 1,
                            found: other,
                        });
                    }
                };
                return Ok(Message::Digest {
                    digest: Digest::decode(r.rest())?,
                    reply,
                });
            }
            other => {
                return Err(DecodeError::WrongKind {
                    expected: KIND_MESSAGE,
                    found: other,
                });
            }
        };
        if r.at != bytes.len() {
            return Err(DecodeError::Truncated { at: r.at });
        }
        Ok(message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ring::Ring;
    use overlay_core::PeerId;
    use proptest::prelude::*;

    fn ring() -> Ring {
        Ring::from_seeds(
            "10.32.0.0/16".parse().expect("net"),
            26,
            &[PeerId::from_u128(1), PeerId::from_u128(2)],
        )
        .expect("ring")
    }

    #[test]
    fn every_message_round_trips() {
        let ring = ring();
        let a: IpAddr = "10.32.0.9".parse().expect("ip");
        let b: IpAddr = "2001:db8::9".parse().expect("ip");
        for m in [
            Message::SpaceRequest,
            Message::SpaceDenied,
            Message::Claim {
                addresses: vec![a, b],
            },
            Message::ClaimReply {
                granted: vec![a],
                refused: vec![b],
            },
            Message::ReleaseClaim { addresses: vec![] },
            Message::Delta(ring.to_delta()),
            Message::Digest {
                digest: ring.digest(4),
                reply: true,
            },
        ] {
            assert_eq!(Message::decode(&m.encode()), Ok(m));
        }
    }

    #[test]
    fn bad_input_is_a_typed_error() {
        assert_eq!(Message::decode(&[]), Err(DecodeError::Truncated { at: 0 }));
        assert_eq!(
            Message::decode(&[2, 4, 1]),
            Err(DecodeError::UnsupportedVersion(2))
        );
        assert!(matches!(
            Message::decode(&[1, 1, 1]),
            Err(DecodeError::WrongKind { .. })
        ));
        assert!(matches!(
            Message::decode(&[1, 4, 99]),
            Err(DecodeError::WrongKind { .. })
        ));
        assert!(matches!(
            Message::decode(&[1, 4, TAG_CLAIM, 0xff, 0xff, 4]),
            Err(DecodeError::TooMany { .. })
        ));
        assert!(matches!(
            Message::decode(&[1, 4, TAG_CLAIM, 0, 1, 5, 1, 2, 3, 4]),
            Err(DecodeError::BadFamily { family: 5, .. })
        ));
        // Trailing bytes after a complete message.
        assert!(Message::decode(&[1, 4, TAG_SPACE_REQUEST, 0]).is_err());
    }

    proptest! {
        #[test]
        fn decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            let _ = Message::decode(&bytes);
        }

        #[test]
        fn claims_round_trip(v4 in proptest::collection::vec(any::<u32>(), 0..8), v6 in proptest::collection::vec(any::<u128>(), 0..8)) {
            let addresses: Vec<IpAddr> = v4.into_iter().map(|a| IpAddr::V4(a.into()))
                .chain(v6.into_iter().map(|a| IpAddr::V6(a.into()))).collect();
            let m = Message::ClaimReply { granted: addresses.clone(), refused: addresses };
            prop_assert_eq!(Message::decode(&m.encode()), Ok(m));
        }
    }
}
