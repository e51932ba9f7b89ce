//! Geneve over UDP.

use std::ops::Range;

use super::{
    DecapError, Decapsulated, EncapError, Encapsulation, OuterParams, TunnelConfig, TunnelKind,
    check_inner_len, encapsulate_udp, parse_outer, udp_headroom,
};
use crate::wire::ethernet::EtherType;
use crate::wire::geneve::{self, GeneveOption};
use crate::wire::{Vni, WireError};

/// Geneve encapsulation (RFC 8926) of Ethernet frames, with options.
///
/// Defaults: destination port 6081, protocol type `0x6558` (Transparent
/// Ethernet Bridging), no options, and the [`TunnelConfig`] defaults (zero
/// UDP checksum over IPv4, computed over IPv6; see
/// [`UdpChecksumMode`](super::UdpChecksumMode)). The header with its options
/// is encoded once at construction and copied in front of each frame.
///
/// Decapsulation validates the header like [`geneve::Repr::parse`] (version
/// 0, option lengths, C bit consistent with critical options) without
/// allocating: options are returned as a borrowed iterator. It does not
/// interpret options; a receiver that finds a critical option it does not
/// understand must drop the packet (RFC 8926 section 3.5), which the caller
/// decides from [`GeneveHeader::options`](super::GeneveHeader::options).
/// The payload is returned whatever its protocol type; it is an Ethernet
/// frame when [`GeneveHeader::protocol_type`](super::GeneveHeader::protocol_type)
/// is `0x6558`, and then one shorter than an Ethernet header is refused
/// ([`DecapError::InnerFrameTooShort`]).
///
/// ```
/// use std::net::Ipv6Addr;
/// use overlay_core::MacAddr;
/// use overlay_core::encap::{Encapsulation, GeneveEncap, OuterParams, TunnelHeader};
/// use overlay_core::wire::{Vni, geneve::GeneveOption};
///
/// let geneve = GeneveEncap::new(Vni::new(100).unwrap())
///     .with_options(vec![GeneveOption::new(0x0102, 0x01, vec![0, 0, 0, 1]).unwrap()])
///     .unwrap();
/// let outer = OuterParams::new(MacAddr::ZERO, MacAddr::BROADCAST,
///     "2001:db8::1".parse::<Ipv6Addr>().unwrap().into(),
///     "2001:db8::2".parse::<Ipv6Addr>().unwrap().into());
/// let headroom = geneve.headroom(&outer);
/// assert_eq!(headroom, 14 + 40 + 8 + 8 + 8);
/// let mut buf = vec![0u8; headroom + 60];
/// let range = geneve.encapsulate(&mut buf, headroom, 60, &outer).unwrap();
/// let decap = geneve.decapsulate(&buf[range]).unwrap();
/// let TunnelHeader::Geneve(header) = decap.tunnel() else { unreachable!() };
/// let option = header.options.clone().next().unwrap().unwrap();
/// assert_eq!(option.class(), 0x0102);
/// assert_eq!(decap.inner().len(), 60);
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct GeneveEncap {
    header: geneve::Repr,
    encoded: Vec<u8>,
    config: TunnelConfig,
}

impl GeneveEncap {
    /// Geneve for `vni` carrying Ethernet, without options, with the default
    /// [`TunnelConfig`] on port 6081.
    pub fn new(vni: Vni) -> Self {
        let header = geneve::Repr {
            oam: false,
            protocol_type: EtherType::TransparentEthernetBridging,
            vni,
            options: Vec::new(),
        };
        let mut encoded = vec![0u8; geneve::HEADER_LEN];
        // A header without options always fits: emit cannot fail here.
        let _ = header.emit(&mut geneve::Packet::new_unchecked(&mut encoded[..]));
        GeneveEncap {
            header,
            encoded,
            config: TunnelConfig::new(geneve::DEFAULT_PORT),
        }
    }

    /// Builds from a complete header (options, O bit, protocol type);
    /// fails if the options exceed the 252 bytes Opt Len can describe.
    pub fn from_header(header: geneve::Repr, config: TunnelConfig) -> Result<Self, WireError> {
        let mut encoded = vec![0u8; header.buffer_len()];
        header.emit(&mut geneve::Packet::new_unchecked(&mut encoded[..]))?;
        Ok(GeneveEncap {
            header,
            encoded,
            config,
        })
    }

    /// Sets the options sent on every packet; fails if they exceed 252 bytes.
    pub fn with_options(self, options: Vec<GeneveOption>) -> Result<Self, WireError> {
        let header = geneve::Repr {
            options,
            ..self.header
        };
        Self::from_header(header, self.config)
    }

    /// Replaces the outer UDP/IP settings.
    pub fn with_config(mut self, config: TunnelConfig) -> Self {
        self.config = config;
        self
    }

    /// The Geneve header written on every packet.
    pub fn header(&self) -> &geneve::Repr {
        &self.header
    }

    /// The outer UDP/IP settings.
    pub fn config(&self) -> &TunnelConfig {
        &self.config
    }

    /// The tunnel header as written on the wire.
    #[cfg(test)]
    pub(super) fn encoded_header(&self) -> &[u8] {
        &self.encoded
    }
}

impl Encapsulation for GeneveEncap {
    fn headroom(&self, outer: &OuterParams) -> usize {
        udp_headroom(outer, self.encoded.len())
    }

    fn encapsulate(
        &self,
        buf: &mut [u8],
        inner_start: usize,
        inner_len: usize,
        outer: &OuterParams,
    ) -> Result<Range<usize>, EncapError> {
        check_inner_len(
            inner_len,
            self.header.protocol_type == EtherType::TransparentEthernetBridging,
        )?;
        encapsulate_udp(
            &self.config,
            &self.encoded,
            buf,
            inner_start,
            inner_len,
            outer,
        )
    }

    #[inline]
    fn decapsulate<'a>(&self, packet: &'a [u8]) -> Result<Decapsulated<'a>, DecapError> {
        // Only the fixed header is certain: the payload need not be Ethernet.
        let located = parse_outer(packet, &self.config, geneve::HEADER_LEN)?;
        let header =
            geneve::Packet::new_checked(located.udp_payload).map_err(located.tunnel_error())?;
        header.validate().map_err(located.tunnel_error())?;
        let header_len = header.header_len();
        let ethernet = header.protocol_type() == EtherType::TransparentEthernetBridging;
        located.finish(packet, TunnelKind::Geneve, header_len, ethernet)
    }
}

#[cfg(test)]
mod tests {
    use super::super::TunnelHeader;
    use super::super::UdpChecksumMode;
    use super::super::tests::{outer_v4, outer_v6};
    use super::*;
    use crate::wire::geneve::tests::arb_option;
    use proptest::prelude::*;

    #[test]
    fn too_many_options_are_refused_at_construction() {
        let big = GeneveOption::new(1, 1, vec![0; 124]).unwrap();
        assert!(matches!(
            GeneveEncap::new(Vni::new(1).unwrap()).with_options(vec![
                big.clone(),
                big.clone(),
                big
            ]),
            Err(WireError::ValueOutOfRange { .. })
        ));
    }

    #[test]
    fn critical_option_sets_c_bit_and_decapsulates() {
        let geneve = GeneveEncap::new(Vni::new(3).unwrap())
            .with_options(vec![GeneveOption::new(0xffff, 0x81, vec![9; 8]).unwrap()])
            .unwrap();
        let outer = outer_v4();
        let h = geneve.headroom(&outer);
        let mut buf = vec![0u8; h + 64];
        geneve.encapsulate(&mut buf, h, 64, &outer).unwrap();
        assert_eq!(buf[42 + 1] & 0x40, 0x40);
        let decap = geneve.decapsulate(&buf).unwrap();
        let TunnelHeader::Geneve(hdr) = decap.tunnel() else {
            panic!("not Geneve")
        };
        assert!(hdr.critical);
        let opts: Vec<_> = hdr.options.map(|o| o.unwrap().to_owned()).collect();
        assert_eq!(opts, geneve.header().options);
        // Clearing C on the wire makes the packet invalid.
        buf[43] = 0;
        assert_eq!(
            geneve.decapsulate(&buf).unwrap_err(),
            DecapError::Wire {
                offset: 42,
                error: WireError::CriticalBitNotSet {
                    offset: 8,
                    type_: 0x81
                }
            }
        );
    }

    #[test]
    fn short_payload_is_refused_only_when_it_is_an_ethernet_frame() {
        let outer = outer_v4();
        for (protocol_type, refused) in [
            (EtherType::TransparentEthernetBridging, true),
            (EtherType::Ipv4, false),
        ] {
            let header = geneve::Repr {
                oam: false,
                protocol_type,
                vni: Vni::new(9).unwrap(),
                options: vec![GeneveOption::new(1, 1, vec![0; 4]).unwrap()],
            };
            let geneve = GeneveEncap::from_header(header, TunnelConfig::new(6081)).unwrap();
            let h = geneve.headroom(&outer);
            let mut buf = vec![0u8; h + 13];
            let sent = geneve.encapsulate(&mut buf.clone(), h, 13, &outer);
            // Written below encapsulation's check, as another sender might.
            super::super::encapsulate_udp(
                geneve.config(),
                geneve.encoded_header(),
                &mut buf,
                h,
                13,
                &outer,
            )
            .unwrap();
            let result = geneve.decapsulate(&buf);
            if refused {
                assert_eq!(sent, Err(EncapError::InnerFrameTooShort { len: 13 }));
                assert_eq!(
                    result.unwrap_err(),
                    DecapError::InnerFrameTooShort { offset: h, len: 13 }
                );
            } else {
                assert_eq!(sent, Ok(0..h + 13));
                assert_eq!(result.unwrap().inner().len(), 13);
            }
        }
    }

    proptest! {
        #[test]
        fn encapsulate_then_decapsulate_returns_the_exact_inner_slice(
            inner in proptest::collection::vec(any::<u8>(), 14..1600),
            options in proptest::collection::vec(arb_option(), 0..4),
            oam in any::<bool>(),
            v6 in any::<bool>(),
            csum in prop_oneof![Just(UdpChecksumMode::Auto), Just(UdpChecksumMode::Compute)],
            vni in 0u32..=0xff_ffff,
        ) {
            let header = geneve::Repr {
                oam,
                protocol_type: EtherType::TransparentEthernetBridging,
                vni: Vni::new(vni).unwrap(),
                options,
            };
            let geneve = GeneveEncap::from_header(
                header.clone(),
                TunnelConfig::new(6081).with_udp_checksum(csum),
            ).unwrap();
            let outer = if v6 { outer_v6() } else { outer_v4() };
            let start = geneve.headroom(&outer);
            let mut buf = vec![0u8; start + inner.len()];
            buf[start..].copy_from_slice(&inner);
            let range = geneve.encapsulate(&mut buf, start, inner.len(), &outer).unwrap();
            let decap = geneve.decapsulate(&buf[range]).unwrap();
            prop_assert_eq!(decap.inner(), &inner[..]);
            prop_assert_eq!(decap.inner_offset(), start);
            let TunnelHeader::Geneve(h) = decap.tunnel() else { panic!("not Geneve") };
            prop_assert_eq!(h.vni, header.vni);
            prop_assert_eq!(h.oam, oam);
            let opts: Vec<GeneveOption> = h.options.map(|o| o.unwrap().to_owned()).collect();
            prop_assert_eq!(opts, header.options);
        }

        #[test]
        fn decapsulate_never_panics_on_arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..2000)) {
            let _ = GeneveEncap::new(Vni::new(1).unwrap()).decapsulate(&bytes);
        }

        #[test]
        fn decapsulate_never_panics_on_truncated_or_corrupted_packets(
            cut in 0usize..200, flip in 0usize..200, bit in 0u8..8,
        ) {
            let geneve = GeneveEncap::new(Vni::new(1).unwrap())
                .with_options(vec![GeneveOption::new(7, 0x80, vec![1; 12]).unwrap()])
                .unwrap()
                .with_config(TunnelConfig::new(6081).with_verify_udp_checksum(false));
            let outer = outer_v4();
            let h = geneve.headroom(&outer);
            let mut buf = vec![0u8; h + 100];
            geneve.encapsulate(&mut buf, h, 100, &outer).unwrap();
            let _ = geneve.decapsulate(&buf[..cut.min(buf.len())]);
            let at = flip % buf.len();
            buf[at] ^= 1 << bit;
            let _ = geneve.decapsulate(&buf);
        }
    }
}
