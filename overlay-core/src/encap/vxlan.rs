//! VXLAN over UDP.

use std::ops::Range;

use super::{
    DecapError, Decapsulated, EncapError, Encapsulation, OuterParams, TunnelConfig, TunnelKind,
    V4Template, check_inner_len, encapsulate_udp, encapsulate_v4_fast, parse_outer, udp_headroom,
};
use crate::wire::vxlan::{self, Gbp};
use crate::wire::{Vni, ethernet};

/// The shortest UDP payload a VXLAN packet can have: the VXLAN header and an
/// inner Ethernet header.
const MIN_UDP_PAYLOAD: usize = vxlan::HEADER_LEN + ethernet::HEADER_LEN;

/// VXLAN encapsulation (RFC 7348), optionally with the group-policy
/// extension.
///
/// Defaults: destination port 4789, zero UDP checksum over IPv4 (as RFC 7348
/// section 5 recommends; a Linux VXLAN device computes it unless created
/// with `noudpcsum`, see [`UdpChecksumMode`](super::UdpChecksumMode)) and
/// computed over IPv6, TTL 64, DF set, source port hashed into
/// 49152..=65535 (see [`TunnelConfig`]).
///
/// Decapsulation checks the outer headers (IPv4 header checksum, UDP
/// checksum as configured, UDP destination port), refuses outer IPv4
/// fragments and inner frames shorter than an Ethernet header
/// ([`DecapError::InnerFrameTooShort`]), and returns the VNI without
/// filtering on it, so one instance can serve several VNIs.
///
/// ```
/// use std::net::Ipv4Addr;
/// use overlay_core::MacAddr;
/// use overlay_core::encap::{Encapsulation, OuterParams, TunnelHeader, VxlanEncap};
/// use overlay_core::wire::{Vni, vxlan::Gbp};
///
/// let vxlan = VxlanEncap::new(Vni::new(7).unwrap()).with_gbp(Gbp {
///     dont_learn: false,
///     policy_applied: false,
///     group_policy_id: 100,
/// });
/// let outer = OuterParams::new(MacAddr::ZERO, MacAddr::BROADCAST,
///     Ipv4Addr::new(198, 51, 100, 1).into(), Ipv4Addr::new(198, 51, 100, 2).into());
/// let mut buf = vec![0u8; 2048];
/// let inner_start = 128; // any offset with enough headroom
/// let range = vxlan.encapsulate(&mut buf, inner_start, 60, &outer).unwrap();
/// assert_eq!(range, 78..188);
/// let TunnelHeader::Vxlan(header) = vxlan.decapsulate(&buf[range]).unwrap().tunnel() else {
///     unreachable!()
/// };
/// assert_eq!(header.gbp.unwrap().group_policy_id, 100);
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct VxlanEncap {
    header: vxlan::Repr,
    encoded: [u8; vxlan::HEADER_LEN],
    config: TunnelConfig,
    /// The outer headers of the common case, if `config` allows it.
    fast_v4: Option<V4Template>,
}

impl VxlanEncap {
    /// VXLAN for `vni` with the default [`TunnelConfig`] on port 4789.
    pub fn new(vni: Vni) -> Self {
        Self::from_parts(
            vxlan::Repr { vni, gbp: None },
            TunnelConfig::new(vxlan::DEFAULT_PORT),
        )
    }

    fn from_parts(header: vxlan::Repr, config: TunnelConfig) -> Self {
        let mut encoded = [0u8; vxlan::HEADER_LEN];
        // A VXLAN header always fits its 8 bytes: emit cannot fail here.
        let _ = header.emit(&mut vxlan::Packet::new_unchecked(&mut encoded[..]));
        VxlanEncap {
            header,
            fast_v4: V4Template::new(&config, &encoded),
            encoded,
            config,
        }
    }

    /// Adds the group-policy extension to every packet sent.
    pub fn with_gbp(self, gbp: Gbp) -> Self {
        let header = vxlan::Repr {
            gbp: Some(gbp),
            ..self.header
        };
        Self::from_parts(header, self.config)
    }

    /// Replaces the outer UDP/IP settings.
    pub fn with_config(self, config: TunnelConfig) -> Self {
        Self::from_parts(self.header, config)
    }

    /// The VXLAN header written on every packet.
    pub fn header(&self) -> &vxlan::Repr {
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

impl Encapsulation for VxlanEncap {
    fn headroom(&self, outer: &OuterParams) -> usize {
        udp_headroom(outer, vxlan::HEADER_LEN)
    }

    #[inline]
    fn encapsulate(
        &self,
        buf: &mut [u8],
        inner_start: usize,
        inner_len: usize,
        outer: &OuterParams,
    ) -> Result<Range<usize>, EncapError> {
        if let Some(template) = &self.fast_v4
            && let Some(range) =
                encapsulate_v4_fast::<false>(template, buf, inner_start, inner_len, outer)
        {
            return Ok(range);
        }
        self.encapsulate_general(buf, inner_start, inner_len, outer)
    }

    #[inline(always)]
    fn decapsulate<'a>(&self, packet: &'a [u8]) -> Result<Decapsulated<'a>, DecapError> {
        let located = parse_outer(packet, &self.config, MIN_UDP_PAYLOAD)?;
        let header =
            vxlan::Packet::new_checked(located.udp_payload).map_err(located.tunnel_error())?;
        header.validate().map_err(located.tunnel_error())?;
        located.finish(packet, TunnelKind::Vxlan, vxlan::HEADER_LEN, true)
    }
}

impl VxlanEncap {
    /// Every configuration, field by field: what
    /// [`encapsulate`](Encapsulation::encapsulate) falls back to when the
    /// fast path does not apply, and what the property tests compare it to.
    #[inline(never)]
    fn encapsulate_general(
        &self,
        buf: &mut [u8],
        inner_start: usize,
        inner_len: usize,
        outer: &OuterParams,
    ) -> Result<Range<usize>, EncapError> {
        check_inner_len(inner_len, true)?;
        encapsulate_udp(
            &self.config,
            &self.encoded,
            buf,
            inner_start,
            inner_len,
            outer,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::super::TunnelHeader;
    use super::super::tests::{outer_v4, outer_v6};
    use super::super::{OuterIp, UdpChecksumMode};
    use super::*;
    use crate::wire::{Layer, WireError, ipv4, udp};
    use proptest::prelude::*;

    fn inner_frame(len: usize) -> Vec<u8> {
        let mut f: Vec<u8> = (0..len).map(|i| i as u8).collect();
        if len >= 14 {
            f[12..14].copy_from_slice(&[0x08, 0x00]);
        }
        f
    }

    fn encap_roundtrip(vxlan: &VxlanEncap, outer: &OuterParams, inner: &[u8]) -> Vec<u8> {
        let headroom = vxlan.headroom(outer);
        let mut buf = vec![0u8; headroom + inner.len()];
        buf[headroom..].copy_from_slice(inner);
        let range = vxlan
            .encapsulate(&mut buf, headroom, inner.len(), outer)
            .unwrap();
        assert_eq!(range, 0..buf.len());
        buf
    }

    #[test]
    fn ipv4_default_writes_zero_udp_checksum_and_valid_ip_checksum() {
        let vxlan = VxlanEncap::new(Vni::new(5001).unwrap());
        let buf = encap_roundtrip(&vxlan, &outer_v4(), &inner_frame(60));
        let ip = ipv4::Packet::new_checked(&buf[14..]).unwrap();
        assert!(ip.verify_checksum());
        assert!(ip.dont_frag());
        assert_eq!(ip.ttl(), 64);
        let udp = udp::Packet::new_checked(ip.payload()).unwrap();
        assert_eq!(udp.checksum(), 0);
        assert_eq!(udp.dst_port(), 4789);
        assert!((49152..=65535).contains(&udp.src_port()));
        let decap = vxlan.decapsulate(&buf).unwrap();
        assert_eq!(decap.inner(), &inner_frame(60)[..]);
        assert_eq!(decap.inner_offset(), 50);
        assert_eq!(decap.tunnel().vni().get(), 5001);
    }

    #[test]
    fn ipv6_default_computes_udp_checksum() {
        let vxlan = VxlanEncap::new(Vni::new(1).unwrap());
        let outer = outer_v6();
        assert_eq!(vxlan.headroom(&outer), 70);
        let buf = encap_roundtrip(&vxlan, &outer, &inner_frame(100));
        let decap = vxlan.decapsulate(&buf).unwrap();
        assert_eq!(decap.inner(), &inner_frame(100)[..]);
        assert!(matches!(decap.outer().ip, OuterIp::V6(r) if r.hop_limit == 64));
        let udp = udp::Packet::new_checked(&buf[54..]).unwrap();
        assert_ne!(udp.checksum(), 0);
    }

    #[test]
    fn ipv6_zero_checksum_needs_the_receiver_opt_in() {
        let tx = VxlanEncap::new(Vni::new(1).unwrap())
            .with_config(TunnelConfig::new(4789).with_udp_checksum(UdpChecksumMode::Zero));
        let buf = encap_roundtrip(&tx, &outer_v6(), &inner_frame(60));
        assert_eq!(
            VxlanEncap::new(Vni::new(1).unwrap())
                .decapsulate(&buf)
                .unwrap_err(),
            DecapError::Wire {
                offset: 54,
                error: WireError::ZeroUdpChecksumIpv6
            }
        );
        let rx = VxlanEncap::new(Vni::new(1).unwrap())
            .with_config(TunnelConfig::new(4789).with_allow_zero_udp_checksum_ipv6(true));
        assert!(rx.decapsulate(&buf).is_ok());
    }

    #[test]
    fn corrupted_inner_byte_is_caught_when_udp_checksum_is_on() {
        let vxlan = VxlanEncap::new(Vni::new(1).unwrap())
            .with_config(TunnelConfig::new(4789).with_udp_checksum(UdpChecksumMode::Compute));
        let mut buf = encap_roundtrip(&vxlan, &outer_v4(), &inner_frame(60));
        buf[80] ^= 0x10;
        assert!(matches!(
            vxlan.decapsulate(&buf),
            Err(DecapError::Wire {
                offset: 34,
                error: WireError::BadChecksum {
                    layer: Layer::Udp,
                    ..
                }
            })
        ));
    }

    #[test]
    fn errors_name_the_header_offset_layer_and_field() {
        let vxlan = VxlanEncap::new(Vni::new(1).unwrap());
        let mut buf = encap_roundtrip(&vxlan, &outer_v4(), &inner_frame(60));
        buf[14 + 10] ^= 0xff;
        let err = vxlan.decapsulate(&buf).unwrap_err();
        let DecapError::Wire { offset, error } = &err else {
            panic!("unexpected {err:?}")
        };
        assert_eq!(*offset, 14);
        assert!(matches!(
            error,
            WireError::BadChecksum {
                layer: Layer::Ipv4,
                offset: 10,
                ..
            }
        ));
        let text = err.to_string();
        assert!(
            text.starts_with("header at byte 14 of the packet: IPv4: bad checksum"),
            "{text}"
        );
        assert!(text.ends_with("at byte 10"), "{text}");

        let buf = encap_roundtrip(&vxlan, &outer_v4(), &inner_frame(60));
        let mut no_vni = buf.clone();
        no_vni[42] = 0;
        assert_eq!(
            vxlan.decapsulate(&no_vni).unwrap_err(),
            DecapError::Wire {
                offset: 42,
                error: WireError::VxlanVniFlagClear
            }
        );
    }

    #[test]
    fn wrong_port_non_udp_and_fragments_are_refused() {
        let vxlan = VxlanEncap::new(Vni::new(1).unwrap());
        let buf = encap_roundtrip(&vxlan, &outer_v4(), &inner_frame(60));
        let other = VxlanEncap::new(Vni::new(1).unwrap()).with_config(TunnelConfig::new(8472));
        assert_eq!(
            other.decapsulate(&buf).unwrap_err(),
            DecapError::UnexpectedPort {
                expected: 8472,
                got: 4789
            }
        );
        let mut frag = buf.clone();
        let mut ip = ipv4::Packet::new_unchecked(&mut frag[14..]);
        ip.set_flags_and_frag_offset(false, true, 0);
        ip.fill_checksum();
        assert_eq!(
            vxlan.decapsulate(&frag).unwrap_err(),
            DecapError::Fragmented {
                offset: 0,
                more: true
            }
        );
        let mut tcp = buf.clone();
        let mut ip = ipv4::Packet::new_unchecked(&mut tcp[14..]);
        ip.set_protocol(crate::wire::IpProtocol::Tcp);
        ip.fill_checksum();
        assert_eq!(
            vxlan.decapsulate(&tcp).unwrap_err(),
            DecapError::NotUdp(crate::wire::IpProtocol::Tcp)
        );
        let mut arp = buf;
        arp[12..14].copy_from_slice(&[0x08, 0x06]);
        assert_eq!(
            vxlan.decapsulate(&arp).unwrap_err(),
            DecapError::NotIp(crate::wire::ethernet::EtherType::Arp)
        );
    }

    #[test]
    fn encapsulation_leaves_bytes_outside_the_packet_and_the_inner_frame_alone() {
        let vxlan = VxlanEncap::new(Vni::new(9).unwrap());
        let mut buf = vec![0xeeu8; 300];
        let inner = inner_frame(80);
        buf[100..180].copy_from_slice(&inner);
        let range = vxlan.encapsulate(&mut buf, 100, 80, &outer_v4()).unwrap();
        assert_eq!(range, 50..180);
        assert!(buf[..50].iter().all(|&b| b == 0xee));
        assert!(buf[180..].iter().all(|&b| b == 0xee));
        assert_eq!(&buf[100..180], &inner[..]);
    }

    #[test]
    fn inner_frames_shorter_than_ethernet_are_refused_without_writing() {
        let vxlan = VxlanEncap::new(Vni::new(1).unwrap());
        for outer in [outer_v4(), outer_v6()] {
            let headroom = vxlan.headroom(&outer);
            for len in 0..ethernet::HEADER_LEN {
                let mut buf = vec![0xeeu8; headroom + len];
                assert_eq!(
                    vxlan.encapsulate(&mut buf, headroom, len, &outer),
                    Err(EncapError::InnerFrameTooShort { len })
                );
                assert!(buf.iter().all(|&b| b == 0xee), "nothing written");
            }
            let mut buf = vec![0u8; headroom + ethernet::HEADER_LEN];
            let range = vxlan
                .encapsulate(&mut buf, headroom, ethernet::HEADER_LEN, &outer)
                .unwrap();
            assert_eq!(vxlan.decapsulate(&buf[range]).unwrap().inner().len(), 14);
        }
        assert_eq!(
            EncapError::InnerFrameTooShort { len: 3 }.to_string(),
            "inner Ethernet frame is 3 bytes, shorter than the 14-byte Ethernet header"
        );
    }

    #[test]
    fn decapsulated_reports_udp_checksum_presence_and_verification() {
        let cases = [
            // (send mode, verify on receipt, outer, present, verified)
            (UdpChecksumMode::Auto, true, outer_v4(), false, false),
            (UdpChecksumMode::Compute, true, outer_v4(), true, true),
            (UdpChecksumMode::Compute, false, outer_v4(), true, false),
            (UdpChecksumMode::Auto, true, outer_v6(), true, true),
            (UdpChecksumMode::Auto, false, outer_v6(), true, false),
        ];
        for (mode, verify, outer, present, verified) in cases {
            let tx = VxlanEncap::new(Vni::new(1).unwrap())
                .with_config(TunnelConfig::new(4789).with_udp_checksum(mode));
            let rx = VxlanEncap::new(Vni::new(1).unwrap())
                .with_config(TunnelConfig::new(4789).with_verify_udp_checksum(verify));
            let buf = encap_roundtrip(&tx, &outer, &inner_frame(60));
            let d = rx.decapsulate(&buf).unwrap();
            assert_eq!(
                (d.udp_checksum_present(), d.udp_checksum_verified()),
                (present, verified),
                "{mode:?} verify={verify} {outer:?}"
            );
        }
    }

    #[test]
    fn decapsulated_gives_the_gbp_fields_only_when_present() {
        let gbp = Gbp {
            dont_learn: true,
            policy_applied: true,
            group_policy_id: 0xbeef,
        };
        let plain = VxlanEncap::new(Vni::new(5).unwrap());
        let buf = encap_roundtrip(&plain, &outer_v4(), &inner_frame(60));
        assert_eq!(plain.decapsulate(&buf).unwrap().gbp(), None);
        let with_gbp = plain.with_gbp(gbp);
        let buf = encap_roundtrip(&with_gbp, &outer_v6(), &inner_frame(60));
        let d = with_gbp.decapsulate(&buf).unwrap();
        assert_eq!((d.vni().get(), d.gbp()), (5, Some(gbp)));
    }

    #[test]
    fn out_of_range_dscp_or_ecn_is_refused_without_writing() {
        for (dscp, ecn, field, value, max) in [(64, 0, "dscp", 64, 63), (0, 4, "ecn", 4, 3)] {
            let vxlan = VxlanEncap::new(Vni::new(1).unwrap())
                .with_config(TunnelConfig::new(4789).with_dscp_ecn(dscp, ecn));
            for (outer, layer) in [(outer_v4(), Layer::Ipv4), (outer_v6(), Layer::Ipv6)] {
                let headroom = vxlan.headroom(&outer);
                let mut buf = vec![0xeeu8; headroom + 60];
                assert_eq!(
                    vxlan.encapsulate(&mut buf, headroom, 60, &outer),
                    Err(EncapError::Header(WireError::ValueOutOfRange {
                        layer,
                        field,
                        value,
                        max
                    }))
                );
                assert!(buf.iter().all(|&b| b == 0xee), "nothing written");
            }
        }
        // In range, both families carry the same DSCP and ECN.
        let vxlan = VxlanEncap::new(Vni::new(1).unwrap())
            .with_config(TunnelConfig::new(4789).with_dscp_ecn(46, 1));
        for outer in [outer_v4(), outer_v6()] {
            let buf = encap_roundtrip(&vxlan, &outer, &inner_frame(60));
            let (dscp, ecn) = match vxlan.decapsulate(&buf).unwrap().ip() {
                OuterIp::V4(ip) => (ip.dscp, ip.ecn),
                OuterIp::V6(ip) => (ip.dscp, ip.ecn),
            };
            assert_eq!((dscp, ecn), (46, 1));
        }
    }

    #[test]
    fn default_ipv4_configuration_takes_the_fast_path() {
        let vxlan = VxlanEncap::new(Vni::new(1).unwrap());
        let template = vxlan.fast_v4.as_ref().expect("a template for the defaults");
        for inner in [inner_frame(60), vec![0x5a; 60]] {
            let mut buf = vec![0u8; 50 + inner.len()];
            buf[50..].copy_from_slice(&inner);
            assert_eq!(
                encapsulate_v4_fast::<false>(template, &mut buf, 50, inner.len(), &outer_v4()),
                Some(0..110)
            );
        }
        let computed = VxlanEncap::new(Vni::new(1).unwrap())
            .with_config(TunnelConfig::new(4789).with_udp_checksum(UdpChecksumMode::Compute));
        assert!(computed.fast_v4.is_none());
    }

    fn arb_config() -> impl Strategy<Value = TunnelConfig> {
        (
            any::<u16>(),
            any::<u16>(),
            any::<u16>(),
            prop_oneof![
                Just(UdpChecksumMode::Auto),
                Just(UdpChecksumMode::Zero),
                Just(UdpChecksumMode::Compute)
            ],
            any::<u8>(),
            any::<bool>(),
            prop_oneof![0u8..=63, any::<u8>()],
            prop_oneof![0u8..=3, any::<u8>()],
        )
            .prop_map(|(dst_port, lo, hi, csum, ttl, df, dscp, ecn)| {
                TunnelConfig::new(dst_port)
                    .with_src_port_range(lo..=hi)
                    .with_udp_checksum(csum)
                    .with_ttl(ttl)
                    .with_dont_fragment(df)
                    .with_dscp_ecn(dscp, ecn)
            })
    }

    /// An inner frame: random bytes, often shaped like untagged IPv4 (with
    /// or without options, TCP, UDP or another protocol, fragments) so that
    /// both flow-hash paths are exercised.
    fn arb_inner() -> impl Strategy<Value = Vec<u8>> {
        (
            proptest::collection::vec(any::<u8>(), 0..120),
            any::<bool>(),
            prop_oneof![Just(0x45u8), Just(0x46), any::<u8>()],
            prop_oneof![Just(6u8), Just(17), any::<u8>()],
        )
            .prop_map(|(mut f, ipv4, ver_ihl, protocol)| {
                if ipv4 && f.len() >= 24 {
                    f[12..14].copy_from_slice(&[0x08, 0x00]);
                    f[14] = ver_ihl;
                    f[23] = protocol;
                }
                f
            })
    }

    proptest! {
        /// The fast path (IPv4, untagged, zero UDP checksum) writes the
        /// same bytes and returns the same result as the general path, for
        /// every configuration, addressing, buffer layout and inner frame,
        /// errors included; bytes outside the packet stay untouched.
        #[test]
        fn fast_path_writes_what_the_general_path_writes(
            cfg in arb_config(),
            gbp in proptest::option::of(crate::wire::vxlan::tests::arb_gbp()),
            vni in 0u32..=0xff_ffff,
            inner in arb_inner(),
            src_mac in any::<[u8; 6]>(),
            dst_mac in any::<[u8; 6]>(),
            src in any::<u32>(),
            dst in any::<u32>(),
            ident in any::<u16>(),
            family in 0u8..4,
            vlan in proptest::option::of(crate::wire::ethernet::tests::arb_vlan()),
            headroom_delta in -2isize..8,
            extra_tail in 0usize..4,
            short_buf in any::<bool>(),
        ) {
            let mut vxlan = VxlanEncap::new(Vni::new(vni).unwrap()).with_config(cfg);
            if let Some(gbp) = gbp {
                vxlan = vxlan.with_gbp(gbp);
            }
            let v6 = std::net::IpAddr::from(std::net::Ipv6Addr::LOCALHOST);
            let (src_ip, dst_ip) = match family {
                // Mostly IPv4, the fast path's case.
                0 | 1 => (std::net::Ipv4Addr::from(src).into(), std::net::Ipv4Addr::from(dst).into()),
                2 => (std::net::Ipv4Addr::from(src).into(), v6),
                _ => (v6, v6),
            };
            let mut outer = OuterParams::new(src_mac.into(), dst_mac.into(), src_ip, dst_ip)
                .with_ipv4_ident(ident);
            outer.vlan = vlan;
            let inner_start = (vxlan.headroom(&outer) as isize + headroom_delta).max(0) as usize;
            let mut buf: Vec<u8> = (0..inner_start).map(|i| i as u8).collect();
            buf.extend_from_slice(&inner);
            buf.extend(std::iter::repeat_n(0xa5, extra_tail));
            let inner_len = if short_buf { inner.len() + extra_tail + 1 } else { inner.len() };
            let mut general = buf.clone();
            let fast_result = vxlan.encapsulate(&mut buf, inner_start, inner_len, &outer);
            let general_result = vxlan.encapsulate_general(&mut general, inner_start, inner_len, &outer);
            prop_assert_eq!(&fast_result, &general_result);
            prop_assert_eq!(&buf, &general);
        }

        #[test]
        fn encapsulate_then_decapsulate_returns_the_exact_inner_slice(
            inner in proptest::collection::vec(any::<u8>(), 14..1600),
            extra_headroom in 0usize..64,
            v6 in any::<bool>(),
            vlan in proptest::option::of(crate::wire::ethernet::tests::arb_vlan()),
            gbp in proptest::option::of(crate::wire::vxlan::tests::arb_gbp()),
            csum in prop_oneof![Just(UdpChecksumMode::Auto), Just(UdpChecksumMode::Compute)],
            vni in 0u32..=0xff_ffff,
        ) {
            let mut vxlan = VxlanEncap::new(Vni::new(vni).unwrap())
                .with_config(TunnelConfig::new(4789).with_udp_checksum(csum));
            if let Some(gbp) = gbp {
                vxlan = vxlan.with_gbp(gbp);
            }
            let mut outer = if v6 { outer_v6() } else { outer_v4() };
            outer.vlan = vlan;
            let start = vxlan.headroom(&outer) + extra_headroom;
            let mut buf = vec![0u8; start + inner.len()];
            buf[start..].copy_from_slice(&inner);
            let range = vxlan.encapsulate(&mut buf, start, inner.len(), &outer).unwrap();
            prop_assert_eq!(range.clone(), extra_headroom..buf.len());
            let decap = vxlan.decapsulate(&buf[range.clone()]).unwrap();
            prop_assert_eq!(decap.inner(), &inner[..]);
            prop_assert_eq!(decap.inner_offset() + range.start, start);
            prop_assert_eq!(decap.outer().ethernet.vlan, vlan);
            prop_assert_eq!(decap.outer().ip.src_addr(), outer.src_ip);
            prop_assert_eq!(decap.outer().udp.dst_port, 4789);
            let TunnelHeader::Vxlan(h) = decap.tunnel() else { panic!("not VXLAN") };
            prop_assert_eq!(h, vxlan::Repr { vni: Vni::new(vni).unwrap(), gbp });
        }

        #[test]
        fn decapsulate_never_panics_on_arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..2000)) {
            let _ = VxlanEncap::new(Vni::new(1).unwrap()).decapsulate(&bytes);
        }

        #[test]
        fn decapsulate_never_panics_on_truncated_or_corrupted_packets(
            cut in 0usize..200, flip in 0usize..200, bit in 0u8..8, v6 in any::<bool>(),
        ) {
            let vxlan = VxlanEncap::new(Vni::new(1).unwrap())
                .with_config(TunnelConfig::new(4789).with_verify_udp_checksum(false));
            let outer = if v6 { outer_v6() } else { outer_v4() };
            let mut buf = encap_roundtrip(&vxlan, &outer, &inner_frame(100));
            let _ = vxlan.decapsulate(&buf[..cut.min(buf.len())]);
            if cut < buf.len() - 100 {
                prop_assert!(vxlan.decapsulate(&buf[..cut]).is_err());
            }
            let at = flip % buf.len();
            buf[at] ^= 1 << bit;
            let _ = vxlan.decapsulate(&buf);
        }
    }
}
