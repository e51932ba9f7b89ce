//! Complete encapsulated frames, byte for byte, both ways.
//!
//! The expected bytes come from `tests/golden/make_golden.py`, which builds
//! the same frames from the RFC layouts with Python's `struct` and a textbook
//! RFC 1071 checksum, sharing no code with this crate. Each test checks that
//! our encapsulation writes exactly those bytes (the UDP source port is pinned
//! with a one-port range, since the flow hash is an implementation choice) and
//! that decapsulation and the per-layer `Repr`s read them back to the expected
//! fields and re-emit identical bytes.

// Test helpers: a panic here is a failing test, not a crash on user data.
#![allow(clippy::unwrap_used)]

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use overlay_core::MacAddr;
use overlay_core::encap::{
    DecapError, Decapsulated, Encapsulation, GeneveEncap, OuterIp, OuterParams, TunnelConfig,
    TunnelHeader, UdpChecksumMode, VxlanEncap,
};
use overlay_core::wire::ethernet::{self, EtherType, VlanTag};
use overlay_core::wire::geneve::{self, GeneveOption};
use overlay_core::wire::udp::{self, AddrPair};
use overlay_core::wire::vxlan::{self, Gbp};
use overlay_core::wire::{IpProtocol, Vni, ipv4, ipv6};

const INNER: &str = "0a00000000020a000000000108004500003c010140004001257e0a2000010a20\
    00020800f4c912340001000102030405060708090a0b0c0d0e0f101112131415\
    161718191a1b1c1d1e1f";

const VXLAN_V4: &str = "02000000000202000000000108004500006e000040004011b67bc0000201c000\
    0202c35012b5005a000008000000001389000a00000000020a00000000010800\
    4500003c010140004001257e0a2000010a2000020800f4c91234000100010203\
    0405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";

const VXLAN_GBP_V6_VLAN: &str = "0200000000020200000000018100006486dd60000000005a114020010db80000\
    0000000000000000000120010db8000000000000000000000002c35012b5005a\
    83f188400abcabcdef000a00000000020a000000000108004500003c01014000\
    4001257e0a2000010a2000020800f4c912340001000102030405060708090a0b\
    0c0d0e0f101112131415161718191a1b1c1d1e1f";

const GENEVE_V4: &str = "020000000002020000000001080045000082000040004011b667c0000201c000\
    0202c35017c1006e89ad054065580000640001028001deadbeefffff01020001\
    0203040506070a00000000020a000000000108004500003c010140004001257e\
    0a2000010a2000020800f4c912340001000102030405060708090a0b0c0d0e0f\
    101112131415161718191a1b1c1d1e1f";

fn hex(s: &str) -> Vec<u8> {
    let digits: Vec<u8> = s.bytes().filter(|b| !b.is_ascii_whitespace()).collect();
    digits
        .chunks(2)
        .map(|p| u8::from_str_radix(std::str::from_utf8(p).unwrap(), 16).unwrap())
        .collect()
}

fn outer_params(src: IpAddr, dst: IpAddr) -> OuterParams {
    OuterParams::new(
        MacAddr::new([0x02, 0, 0, 0, 0, 1]),
        MacAddr::new([0x02, 0, 0, 0, 0, 2]),
        src,
        dst,
    )
}

fn v4() -> OuterParams {
    outer_params(
        Ipv4Addr::new(192, 0, 2, 1).into(),
        Ipv4Addr::new(192, 0, 2, 2).into(),
    )
}

fn v6() -> OuterParams {
    outer_params(
        "2001:db8::1".parse::<Ipv6Addr>().unwrap().into(),
        "2001:db8::2".parse::<Ipv6Addr>().unwrap().into(),
    )
}

/// Encapsulates INNER in a buffer with exactly the headroom needed.
fn encapsulate(encap: &dyn Encapsulation, outer: &OuterParams) -> Vec<u8> {
    let inner = hex(INNER);
    let headroom = encap.headroom(outer);
    let mut buf = vec![0u8; headroom + inner.len()];
    buf[headroom..].copy_from_slice(&inner);
    let range = encap
        .encapsulate(&mut buf, headroom, inner.len(), outer)
        .unwrap();
    assert_eq!(range, 0..buf.len());
    buf
}

/// Parses every outer layer with the wire `Repr`s and re-emits them; the
/// result must be the original bytes.
fn reemit_outer_layers(frame: &[u8], decap: &Decapsulated<'_>) -> Vec<u8> {
    let mut out = frame.to_vec();
    let eth = ethernet::Packet::new_checked(frame).unwrap();
    let eth_repr = ethernet::Repr::parse(&eth).unwrap();
    assert_eq!(eth_repr, decap.outer().ethernet);
    let l3 = eth.header_len();
    eth_repr
        .emit(&mut ethernet::Packet::new_unchecked(&mut out[..]))
        .unwrap();
    let (addrs, l4) = match decap.outer().ip {
        OuterIp::V4(repr) => {
            let p = ipv4::Packet::new_checked(&frame[l3..]).unwrap();
            assert_eq!(ipv4::Repr::parse(&p).unwrap(), repr);
            repr.emit(&mut ipv4::Packet::new_unchecked(&mut out[l3..]))
                .unwrap();
            (
                AddrPair::from((repr.src_addr, repr.dst_addr)),
                l3 + repr.buffer_len(),
            )
        }
        OuterIp::V6(repr) => {
            let p = ipv6::Packet::new_checked(&frame[l3..]).unwrap();
            assert_eq!(ipv6::Repr::parse(&p).unwrap(), repr);
            repr.emit(&mut ipv6::Packet::new_unchecked(&mut out[l3..]))
                .unwrap();
            (
                AddrPair::from((repr.src_addr, repr.dst_addr)),
                l3 + repr.buffer_len(),
            )
        }
    };
    let udp_packet = udp::Packet::new_checked(&frame[l4..]).unwrap();
    let checksum = if udp_packet.checksum() == 0 {
        udp::Checksum::Zero
    } else {
        udp::Checksum::Compute
    };
    decap
        .outer()
        .udp
        .emit(
            &mut udp::Packet::new_unchecked(&mut out[l4..]),
            &addrs,
            checksum,
        )
        .unwrap();
    out
}

#[test]
fn vxlan_over_ipv4_matches_independent_bytes_both_ways() {
    let vxlan = VxlanEncap::new(Vni::new(5001).unwrap())
        .with_config(TunnelConfig::new(4789).with_src_port_range(50000..=50000));
    let frame = encapsulate(&vxlan, &v4());
    assert_eq!(frame, hex(VXLAN_V4));

    let decap = vxlan.decapsulate(&frame).unwrap();
    assert_eq!(decap.inner(), &hex(INNER)[..]);
    assert_eq!(decap.inner_offset(), 50);
    assert_eq!(
        decap.outer().ethernet.src_addr,
        MacAddr::new([2, 0, 0, 0, 0, 1])
    );
    assert_eq!(decap.outer().ethernet.vlan, None);
    let OuterIp::V4(ip) = decap.outer().ip else {
        panic!("expected IPv4")
    };
    assert_eq!(
        (ip.ttl, ip.dont_frag, ip.protocol),
        (64, true, IpProtocol::Udp)
    );
    assert_eq!(
        (decap.outer().udp.src_port, decap.outer().udp.dst_port),
        (50000, 4789)
    );
    let TunnelHeader::Vxlan(header) = decap.tunnel() else {
        panic!("expected VXLAN")
    };
    assert_eq!(
        header,
        vxlan::Repr {
            vni: Vni::new(5001).unwrap(),
            gbp: None
        }
    );
    assert_eq!(reemit_outer_layers(&frame, &decap), frame);
}

#[test]
fn vxlan_gbp_over_tagged_ipv6_matches_independent_bytes_both_ways() {
    let gbp = Gbp {
        dont_learn: true,
        policy_applied: false,
        group_policy_id: 0x0abc,
    };
    let vxlan = VxlanEncap::new(Vni::new(0xab_cdef).unwrap())
        .with_gbp(gbp)
        .with_config(TunnelConfig::new(4789).with_src_port_range(50000..=50000));
    let outer = v6().with_vlan(VlanTag::new(0, false, 100).unwrap());
    let frame = encapsulate(&vxlan, &outer);
    assert_eq!(frame, hex(VXLAN_GBP_V6_VLAN));

    let decap = vxlan.decapsulate(&frame).unwrap();
    assert_eq!(decap.inner(), &hex(INNER)[..]);
    assert_eq!(decap.outer().ethernet.vlan.unwrap().vid(), 100);
    assert_eq!(decap.outer().ethernet.ethertype, EtherType::Ipv6);
    assert_eq!(decap.outer().ip.src_addr(), outer.src_ip);
    assert_eq!(decap.outer().ip.ttl(), 64);
    let TunnelHeader::Vxlan(header) = decap.tunnel() else {
        panic!("expected VXLAN")
    };
    assert_eq!(header.gbp, Some(gbp));
    assert_eq!(reemit_outer_layers(&frame, &decap), frame);
}

#[test]
fn geneve_with_options_over_ipv4_matches_independent_bytes_both_ways() {
    let options = vec![
        GeneveOption::new(0x0102, 0x80, vec![0xde, 0xad, 0xbe, 0xef]).unwrap(),
        GeneveOption::new(0xffff, 0x01, (0..8).collect()).unwrap(),
    ];
    let geneve = GeneveEncap::new(Vni::new(100).unwrap())
        .with_options(options.clone())
        .unwrap()
        .with_config(
            TunnelConfig::new(6081)
                .with_src_port_range(50000..=50000)
                .with_udp_checksum(UdpChecksumMode::Compute),
        );
    let frame = encapsulate(&geneve, &v4());
    assert_eq!(frame, hex(GENEVE_V4));

    let decap = geneve.decapsulate(&frame).unwrap();
    assert_eq!(decap.inner(), &hex(INNER)[..]);
    let TunnelHeader::Geneve(header) = decap.tunnel().clone() else {
        panic!("expected Geneve")
    };
    assert!(header.critical && !header.oam);
    assert_eq!(header.protocol_type, EtherType::TransparentEthernetBridging);
    assert_eq!(header.vni.get(), 100);
    let got: Vec<GeneveOption> = header.options.map(|o| o.unwrap().to_owned()).collect();
    assert_eq!(got, options);

    // The Geneve header itself, both ways through the wire codec.
    let tunnel = &frame[42..decap.inner_offset()];
    let repr = geneve::Repr::parse(&geneve::Packet::new_checked(tunnel).unwrap()).unwrap();
    let mut out = vec![0u8; repr.buffer_len()];
    repr.emit(&mut geneve::Packet::new_unchecked(&mut out[..]))
        .unwrap();
    assert_eq!(out, tunnel);
    assert_eq!(reemit_outer_layers(&frame, &decap), frame);
}

#[test]
fn every_truncation_of_a_golden_frame_is_an_error_not_a_panic() {
    let vxlan = VxlanEncap::new(Vni::new(1).unwrap());
    let geneve = GeneveEncap::new(Vni::new(1).unwrap());
    for (frame, encap) in [
        (hex(VXLAN_V4), &vxlan as &dyn Encapsulation),
        (hex(VXLAN_GBP_V6_VLAN), &vxlan),
        (hex(GENEVE_V4), &geneve),
    ] {
        assert!(encap.decapsulate(&frame).is_ok());
        for cut in 0..frame.len() {
            let err = encap.decapsulate(&frame[..cut]).unwrap_err();
            assert!(matches!(err, DecapError::Wire { .. }), "cut {cut}: {err}");
        }
    }
}

#[test]
fn trailing_link_layer_padding_is_not_part_of_the_inner_frame() {
    let vxlan = VxlanEncap::new(Vni::new(5001).unwrap());
    let mut frame = hex(VXLAN_V4);
    frame.extend_from_slice(&[0; 8]);
    assert_eq!(vxlan.decapsulate(&frame).unwrap().inner(), &hex(INNER)[..]);
}
