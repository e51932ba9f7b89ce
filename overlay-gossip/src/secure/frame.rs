//! The secure envelope: the outer framing of every gossip datagram.
//!
//! Every datagram starts with a version byte ([`VERSION`]) and a type byte;
//! all integers are big-endian.
//!
//! ```text
//! Plain       | 1 | 1 | payload ...                                  (unencrypted mode only)
//! Initiation  | 1 | 2 | pattern (1) | sender index (4) | Noise message 1
//! Response    | 1 | 3 | sender index (4) | receiver index (4) | Noise message 2
//! Finish      | 1 | 4 | receiver index (4) | Noise message 3            (XXpsk3 only)
//! Transport   | 1 | 5 | receiver index (4) | counter (8) | ChaChaPoly ciphertext + tag (16)
//! ```
//!
//! The indices are random 32-bit session ids chosen by the side that
//! receives with them (as in WireGuard), so a datagram finds its session
//! without trusting the source address alone. snow 0.10 has no associated
//! data for its stateless transport, but no header bit goes unauthenticated:
//! the counter is the AEAD nonce, a changed receiver index selects a session
//! whose key does not open the ciphertext, and a changed type or version is
//! parsed as another frame whose check fails.
//!
//! Panic contract: [`Frame::parse`] never panics on any input;
//! [`Frame::emit`] never panics on a buffer of [`Frame::buffer_len`] bytes
//! (it returns [`FrameError::BufferTooSmall`] for a shorter one).

/// The envelope version this crate speaks. A datagram with another version
/// is refused with [`FrameError::UnsupportedVersion`].
pub const VERSION: u8 = 1;

/// Length of the AEAD tag at the end of every ciphertext.
pub const TAG_LEN: usize = 16;

/// Bytes a transport datagram adds to its plaintext (header and tag).
pub const TRANSPORT_OVERHEAD: usize = TRANSPORT_HEADER_LEN + TAG_LEN;

/// The largest Noise handshake message the envelope accepts. Our handshake
/// messages are at most 96 bytes plus an 8-byte payload and tag.
pub const MAX_HANDSHAKE_LEN: usize = 256;

const TRANSPORT_HEADER_LEN: usize = 2 + 4 + 8;

/// Noise message 1 carries at least an ephemeral public key.
const MIN_HANDSHAKE_LEN: usize = 32;

/// Frame type bytes (the second byte).
mod kind {
    pub(super) const PLAIN: u8 = 1;
    pub(super) const INITIATION: u8 = 2;
    pub(super) const RESPONSE: u8 = 3;
    pub(super) const FINISH: u8 = 4;
    pub(super) const TRANSPORT: u8 = 5;
}

/// The Noise handshake pattern an [`Frame::Initiation`] starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Pattern {
    /// `Noise_XXpsk3_25519_ChaChaPoly_BLAKE2s`: joining through an address
    /// whose static key is not known yet (1.5 round trips).
    Xxpsk3,
    /// `Noise_IKpsk2_25519_ChaChaPoly_BLAKE2s`: the responder's static key is
    /// known from gossip (1 round trip).
    Ikpsk2,
}

impl Pattern {
    /// The Noise protocol name.
    pub const fn noise_name(self) -> &'static str {
        match self {
            Pattern::Xxpsk3 => "Noise_XXpsk3_25519_ChaChaPoly_BLAKE2s",
            Pattern::Ikpsk2 => "Noise_IKpsk2_25519_ChaChaPoly_BLAKE2s",
        }
    }

    const fn code(self) -> u8 {
        match self {
            Pattern::Xxpsk3 => 1,
            Pattern::Ikpsk2 => 2,
        }
    }

    const fn from_code(code: u8) -> Option<Self> {
        match code {
            1 => Some(Pattern::Xxpsk3),
            2 => Some(Pattern::Ikpsk2),
            _ => None,
        }
    }
}

/// Why bytes are not a valid envelope, or a buffer too small to emit into.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FrameError {
    /// Fewer bytes than the frame type needs.
    #[error("truncated {what}: {len} bytes, at least {min} needed")]
    Truncated {
        /// The frame (or header) that was cut short.
        what: &'static str,
        /// The length that was given.
        len: usize,
        /// The minimum length of that frame.
        min: usize,
    },
    /// The first byte is not [`VERSION`].
    #[error("unsupported envelope version {0} (this peer speaks {VERSION})")]
    UnsupportedVersion(u8),
    /// The type byte is not a known frame type.
    #[error("unknown frame type {0}")]
    UnknownType(u8),
    /// The handshake pattern byte of an initiation is unknown.
    #[error("unknown handshake pattern {0}")]
    UnknownPattern(u8),
    /// A handshake message is longer than [`MAX_HANDSHAKE_LEN`].
    #[error("handshake message of {0} bytes exceeds {MAX_HANDSHAKE_LEN}")]
    HandshakeTooLong(usize),
    /// [`Frame::emit`] was given fewer than [`Frame::buffer_len`] bytes.
    #[error("buffer of {len} bytes, {needed} needed")]
    BufferTooSmall {
        /// The buffer length.
        len: usize,
        /// [`Frame::buffer_len`].
        needed: usize,
    },
}

/// A parsed envelope, borrowing its variable part from the datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Frame<'a> {
    /// Unencrypted gossip (only in the explicit unencrypted mode).
    Plain {
        /// The gossip frame.
        payload: &'a [u8],
    },
    /// Noise message 1.
    Initiation {
        /// The pattern the initiator chose.
        pattern: Pattern,
        /// The initiator's session index.
        sender: u32,
        /// The Noise message.
        noise: &'a [u8],
    },
    /// Noise message 2.
    Response {
        /// The responder's session index.
        sender: u32,
        /// The initiator's session index from the initiation.
        receiver: u32,
        /// The Noise message.
        noise: &'a [u8],
    },
    /// Noise message 3 of XXpsk3.
    Finish {
        /// The responder's session index.
        receiver: u32,
        /// The Noise message.
        noise: &'a [u8],
    },
    /// An encrypted gossip datagram.
    Transport {
        /// The receiving side's session index.
        receiver: u32,
        /// The 64-bit message counter, the AEAD nonce.
        counter: u64,
        /// Ciphertext and tag.
        ciphertext: &'a [u8],
    },
}

fn be_u32(bytes: &[u8], at: usize) -> u32 {
    let mut b = [0u8; 4];
    if let Some(s) = bytes.get(at..at + 4) {
        b.copy_from_slice(s);
    }
    u32::from_be_bytes(b)
}

fn be_u64(bytes: &[u8], at: usize) -> u64 {
    let mut b = [0u8; 8];
    if let Some(s) = bytes.get(at..at + 8) {
        b.copy_from_slice(s);
    }
    u64::from_be_bytes(b)
}

fn need(what: &'static str, bytes: &[u8], min: usize) -> Result<(), FrameError> {
    if bytes.len() < min {
        Err(FrameError::Truncated {
            what,
            len: bytes.len(),
            min,
        })
    } else {
        Ok(())
    }
}

fn handshake(noise: &[u8]) -> Result<&[u8], FrameError> {
    if noise.len() > MAX_HANDSHAKE_LEN {
        return Err(FrameError::HandshakeTooLong(noise.len()));
    }
    Ok(noise)
}

impl<'a> Frame<'a> {
    /// Parses a datagram. Never panics.
    ///
    /// ```
    /// use overlay_gossip::secure::{Frame, FrameError};
    ///
    /// let frame = Frame::Plain { payload: b"hello" };
    /// let mut buf = vec![0; frame.buffer_len()];
    /// frame.emit(&mut buf)?;
    /// assert_eq!(buf, b"\x01\x01hello");
    /// assert_eq!(Frame::parse(&buf)?, frame);
    /// assert_eq!(Frame::parse(b"\x02\x01"), Err(FrameError::UnsupportedVersion(2)));
    /// # Ok::<(), FrameError>(())
    /// ```
    ///
    /// # Errors
    /// [`FrameError`] says what is wrong.
    pub fn parse(bytes: &'a [u8]) -> Result<Self, FrameError> {
        need("envelope header", bytes, 2)?;
        let (version, ty) = (bytes[0], bytes[1]);
        if version != VERSION {
            return Err(FrameError::UnsupportedVersion(version));
        }
        match ty {
            kind::PLAIN => Ok(Frame::Plain {
                payload: &bytes[2..],
            }),
            kind::INITIATION => {
                need("initiation", bytes, 7 + MIN_HANDSHAKE_LEN)?;
                let pattern =
                    Pattern::from_code(bytes[2]).ok_or(FrameError::UnknownPattern(bytes[2]))?;
                Ok(Frame::Initiation {
                    pattern,
                    sender: be_u32(bytes, 3),
                    noise: handshake(&bytes[7..])?,
                })
            }
            kind::RESPONSE => {
                need("response", bytes, 10 + MIN_HANDSHAKE_LEN)?;
                Ok(Frame::Response {
                    sender: be_u32(bytes, 2),
                    receiver: be_u32(bytes, 6),
                    noise: handshake(&bytes[10..])?,
                })
            }
            kind::FINISH => {
                need("finish", bytes, 6 + MIN_HANDSHAKE_LEN)?;
                Ok(Frame::Finish {
                    receiver: be_u32(bytes, 2),
                    noise: handshake(&bytes[6..])?,
                })
            }
            kind::TRANSPORT => {
                need("transport", bytes, TRANSPORT_OVERHEAD)?;
                Ok(Frame::Transport {
                    receiver: be_u32(bytes, 2),
                    counter: be_u64(bytes, 6),
                    ciphertext: &bytes[TRANSPORT_HEADER_LEN..],
                })
            }
            other => Err(FrameError::UnknownType(other)),
        }
    }

    /// The number of bytes [`Frame::emit`] writes.
    pub fn buffer_len(&self) -> usize {
        match self {
            Frame::Plain { payload } => 2 + payload.len(),
            Frame::Initiation { noise, .. } => 7 + noise.len(),
            Frame::Response { noise, .. } => 10 + noise.len(),
            Frame::Finish { noise, .. } => 6 + noise.len(),
            Frame::Transport { ciphertext, .. } => TRANSPORT_HEADER_LEN + ciphertext.len(),
        }
    }

    /// Writes the frame to the start of `buf` and returns the length written.
    ///
    /// # Errors
    /// [`FrameError::BufferTooSmall`] when `buf` is shorter than
    /// [`Frame::buffer_len`].
    pub fn emit(&self, buf: &mut [u8]) -> Result<usize, FrameError> {
        let needed = self.buffer_len();
        let Some(buf) = buf.get_mut(..needed) else {
            return Err(FrameError::BufferTooSmall {
                len: buf.len(),
                needed,
            });
        };
        buf[0] = VERSION;
        match *self {
            Frame::Plain { payload } => {
                buf[1] = kind::PLAIN;
                buf[2..].copy_from_slice(payload);
            }
            Frame::Initiation {
                pattern,
                sender,
                noise,
            } => {
                buf[1] = kind::INITIATION;
                buf[2] = pattern.code();
                buf[3..7].copy_from_slice(&sender.to_be_bytes());
                buf[7..].copy_from_slice(noise);
            }
            Frame::Response {
                sender,
                receiver,
                noise,
            } => {
                buf[1] = kind::RESPONSE;
                buf[2..6].copy_from_slice(&sender.to_be_bytes());
                buf[6..10].copy_from_slice(&receiver.to_be_bytes());
                buf[10..].copy_from_slice(noise);
            }
            Frame::Finish { receiver, noise } => {
                buf[1] = kind::FINISH;
                buf[2..6].copy_from_slice(&receiver.to_be_bytes());
                buf[6..].copy_from_slice(noise);
            }
            Frame::Transport {
                receiver,
                counter,
                ciphertext,
            } => {
                buf[1] = kind::TRANSPORT;
                buf[2..6].copy_from_slice(&receiver.to_be_bytes());
                buf[6..14].copy_from_slice(&counter.to_be_bytes());
                buf[14..].copy_from_slice(ciphertext);
            }
        }
        Ok(needed)
    }

    /// Emits the frame into a new vector.
    pub fn to_vec(&self) -> Vec<u8> {
        let mut buf = vec![0; self.buffer_len()];
        // `buf` has exactly `buffer_len()` bytes, so emit cannot fail.
        let _ = self.emit(&mut buf);
        buf
    }
}

/// The transport header for `receiver` and `counter`; the ciphertext follows.
pub(crate) fn transport_header(receiver: u32, counter: u64) -> [u8; TRANSPORT_HEADER_LEN] {
    let mut h = [0u8; TRANSPORT_HEADER_LEN];
    h[0] = VERSION;
    h[1] = kind::TRANSPORT;
    h[2..6].copy_from_slice(&receiver.to_be_bytes());
    h[6..14].copy_from_slice(&counter.to_be_bytes());
    h
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn golden_transport_bytes_round_trip() {
        let ct = [0xaa; 16];
        let bytes = [
            &[1u8, 5, 0xde, 0xad, 0xbe, 0xef, 0, 0, 0, 0, 0, 0, 1, 2][..],
            &ct[..],
        ]
        .concat();
        let frame = Frame::parse(&bytes).unwrap();
        assert_eq!(
            frame,
            Frame::Transport {
                receiver: 0xdead_beef,
                counter: 0x102,
                ciphertext: &ct
            }
        );
        assert_eq!(frame.to_vec(), bytes);
        let mut header = transport_header(0xdead_beef, 0x102).to_vec();
        header.extend_from_slice(&ct);
        assert_eq!(header, bytes);
    }

    #[test]
    fn golden_initiation_bytes_round_trip() {
        let noise = [7u8; 32];
        let bytes = [&[1u8, 2, 2, 0, 0, 0, 9][..], &noise[..]].concat();
        let frame = Frame::parse(&bytes).unwrap();
        assert_eq!(
            frame,
            Frame::Initiation {
                pattern: Pattern::Ikpsk2,
                sender: 9,
                noise: &noise
            }
        );
        assert_eq!(frame.to_vec(), bytes);
    }

    #[test]
    fn refusals_name_the_problem() {
        assert_eq!(
            Frame::parse(&[]),
            Err(FrameError::Truncated {
                what: "envelope header",
                len: 0,
                min: 2
            })
        );
        assert_eq!(Frame::parse(&[1, 9]), Err(FrameError::UnknownType(9)));
        assert_eq!(
            Frame::parse(&[1, 5, 0, 0]),
            Err(FrameError::Truncated {
                what: "transport",
                len: 4,
                min: 30
            })
        );
        let mut init = vec![1, 2, 7, 0, 0, 0, 1];
        init.extend_from_slice(&[0; 32]);
        assert_eq!(Frame::parse(&init), Err(FrameError::UnknownPattern(7)));
        let mut long = vec![1, 4, 0, 0, 0, 1];
        long.extend_from_slice(&[0; MAX_HANDSHAKE_LEN + 1]);
        assert_eq!(
            Frame::parse(&long),
            Err(FrameError::HandshakeTooLong(MAX_HANDSHAKE_LEN + 1))
        );
        let frame = Frame::Plain { payload: b"abc" };
        assert_eq!(
            frame.emit(&mut [0; 4]),
            Err(FrameError::BufferTooSmall { len: 4, needed: 5 })
        );
    }

    fn any_frame() -> impl Strategy<Value = (u8, u32, u32, u64, Vec<u8>)> {
        (
            0u8..5,
            any::<u32>(),
            any::<u32>(),
            any::<u64>(),
            proptest::collection::vec(any::<u8>(), 32..200),
        )
    }

    proptest! {
        #[test]
        fn parse_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
            let _ = Frame::parse(&bytes);
        }

        #[test]
        fn emit_then_parse_round_trips((which, a, b, counter, body) in any_frame()) {
            let frame = match which {
                0 => Frame::Plain { payload: &body },
                1 => Frame::Initiation { pattern: if a % 2 == 0 { Pattern::Xxpsk3 } else { Pattern::Ikpsk2 }, sender: a, noise: &body },
                2 => Frame::Response { sender: a, receiver: b, noise: &body },
                3 => Frame::Finish { receiver: b, noise: &body },
                _ => Frame::Transport { receiver: b, counter, ciphertext: &body },
            };
            let bytes = frame.to_vec();
            prop_assert_eq!(bytes.len(), frame.buffer_len());
            prop_assert_eq!(Frame::parse(&bytes), Ok(frame));
        }
    }
}
