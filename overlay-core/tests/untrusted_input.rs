//! The never-panic contract, checked through the public API only.
//!
//! Every parser and both decapsulations get arbitrary bytes of any length
//! (0 to 2000), and valid encapsulated frames that are truncated or have bits
//! flipped. They may return errors; they must not panic, and whatever they
//! accept must stay within the input.

// Test helpers: a panic here is a failing test, not a crash on user data.
#![allow(clippy::unwrap_used)]

use std::net::{Ipv4Addr, Ipv6Addr};

use overlay_core::MacAddr;
use overlay_core::encap::{
    Encapsulation, GeneveEncap, OuterParams, TunnelConfig, TunnelHeader, UdpChecksumMode,
    VxlanEncap, flow_hash,
};
use overlay_core::wire::geneve::GeneveOption;
use overlay_core::wire::udp::AddrPair;
use overlay_core::wire::{Vni, ethernet, geneve, ipv4, ipv6, udp, vxlan};
use proptest::prelude::*;

/// Runs every parser of the crate over `bytes`, touching every accessor that
/// `check_len` guarantees.
fn parse_everything(bytes: &[u8]) {
    if let Ok(p) = ethernet::Packet::new_checked(bytes) {
        let _ = ethernet::Repr::parse(&p);
        let _ = (p.vlan_tag(), p.ethertype(), p.payload().len());
    }
    if let Ok(p) = ipv4::Packet::new_checked(bytes) {
        let _ = ipv4::Repr::parse(&p);
        let _ = (p.options().len(), p.payload().len(), p.verify_checksum());
    }
    if let Ok(p) = ipv6::Packet::new_checked(bytes) {
        let _ = ipv6::Repr::parse(&p);
        let _ = (p.flow_label(), p.payload().len());
    }
    if let Ok(p) = udp::Packet::new_checked(bytes) {
        for addrs in [
            AddrPair::from((Ipv4Addr::new(192, 0, 2, 1), Ipv4Addr::new(192, 0, 2, 2))),
            AddrPair::from((Ipv6Addr::LOCALHOST, Ipv6Addr::LOCALHOST)),
        ] {
            let _ = udp::Repr::parse(&p, &addrs, &udp::ParseOptions::default());
        }
        let _ = p.payload().len();
    }
    if let Ok(p) = vxlan::Packet::new_checked(bytes) {
        let _ = vxlan::Repr::parse(&p);
        let _ = (p.reserved_bits_set(), p.payload().len());
    }
    if let Ok(p) = geneve::Packet::new_checked(bytes) {
        let _ = geneve::Repr::parse(&p);
        let _ = (p.validate(), p.options().count(), p.payload().len());
    }
    let _ = geneve::Options::new(bytes).count();
    let _ = flow_hash(bytes);
}

fn encaps() -> Vec<Box<dyn Encapsulation>> {
    let relaxed = TunnelConfig::new(4789)
        .with_verify_udp_checksum(false)
        .with_allow_zero_udp_checksum_ipv6(true);
    vec![
        Box::new(VxlanEncap::new(Vni::new(1).unwrap())),
        Box::new(VxlanEncap::new(Vni::new(1).unwrap()).with_config(relaxed.clone())),
        Box::new(GeneveEncap::new(Vni::new(1).unwrap())),
        Box::new(
            GeneveEncap::new(Vni::new(1).unwrap())
                .with_options(vec![GeneveOption::new(0x0102, 0x80, vec![7; 8]).unwrap()])
                .unwrap()
                .with_config(relaxed.with_dst_port(6081)),
        ),
    ]
}

/// Decapsulates with every encapsulation; accepted inner frames must be
/// sub-slices of the input at the offset reported.
fn decapsulate_everything(bytes: &[u8]) {
    for encap in encaps() {
        if let Ok(d) = encap.decapsulate(bytes) {
            let end = d.inner_offset() + d.inner().len();
            assert!(end <= bytes.len());
            assert_eq!(d.inner(), &bytes[d.inner_offset()..end]);
            // Every accessor reads validated bytes and must not panic.
            let _ = (d.outer(), d.vni(), d.packet().len());
            if let TunnelHeader::Geneve(h) = d.tunnel() {
                assert!(h.options.into_iter().all(|o| o.is_ok()));
            }
        }
    }
}

/// A valid frame from each encapsulation, over IPv4 or IPv6; `inner` holds
/// at least an Ethernet header, as encapsulation requires.
fn valid_frames(inner: &[u8], v6: bool) -> Vec<Vec<u8>> {
    let outer = if v6 {
        OuterParams::new(
            MacAddr::ZERO,
            MacAddr::BROADCAST,
            "2001:db8::1".parse::<Ipv6Addr>().unwrap().into(),
            "2001:db8::2".parse::<Ipv6Addr>().unwrap().into(),
        )
    } else {
        OuterParams::new(
            MacAddr::ZERO,
            MacAddr::BROADCAST,
            Ipv4Addr::new(198, 51, 100, 1).into(),
            Ipv4Addr::new(198, 51, 100, 2).into(),
        )
    };
    encaps()
        .iter()
        .map(|encap| {
            let h = encap.headroom(&outer);
            let mut buf = vec![0u8; h + inner.len()];
            buf[h..].copy_from_slice(inner);
            let range = encap.encapsulate(&mut buf, h, inner.len(), &outer).unwrap();
            buf[range].to_vec()
        })
        .collect()
}

#[test]
fn empty_input_is_an_error_everywhere() {
    parse_everything(&[]);
    for encap in encaps() {
        assert!(encap.decapsulate(&[]).is_err());
    }
}

#[test]
fn checksum_mode_compute_frames_still_decapsulate_after_round_trip() {
    let vxlan = VxlanEncap::new(Vni::new(2).unwrap())
        .with_config(TunnelConfig::new(4789).with_udp_checksum(UdpChecksumMode::Compute));
    let outer = OuterParams::new(
        MacAddr::ZERO,
        MacAddr::BROADCAST,
        Ipv4Addr::new(198, 51, 100, 1).into(),
        Ipv4Addr::new(198, 51, 100, 2).into(),
    );
    let mut buf = vec![0u8; 50 + 1500];
    let range = vxlan.encapsulate(&mut buf, 50, 1500, &outer).unwrap();
    assert_eq!(vxlan.decapsulate(&buf[range]).unwrap().inner().len(), 1500);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn parsers_and_decapsulation_never_panic_on_arbitrary_bytes(
        bytes in proptest::collection::vec(any::<u8>(), 0..2000),
    ) {
        parse_everything(&bytes);
        decapsulate_everything(&bytes);
    }

    #[test]
    fn truncated_valid_frames_never_panic(
        inner in proptest::collection::vec(any::<u8>(), 14..300),
        v6 in any::<bool>(),
        cut in any::<prop::sample::Index>(),
    ) {
        for frame in valid_frames(&inner, v6) {
            let cut = cut.index(frame.len() + 1);
            parse_everything(&frame[..cut]);
            decapsulate_everything(&frame[..cut]);
            for start in [14usize, 18, 34, 42, 54, 62] {
                if let Some(rest) = frame.get(start..cut) {
                    parse_everything(rest);
                }
            }
        }
    }

    #[test]
    fn corrupted_valid_frames_never_panic(
        inner in proptest::collection::vec(any::<u8>(), 14..300),
        v6 in any::<bool>(),
        flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..6),
    ) {
        for mut frame in valid_frames(&inner, v6) {
            for (at, value) in &flips {
                let i = at.index(frame.len());
                frame[i] = *value;
            }
            parse_everything(&frame);
            decapsulate_everything(&frame);
        }
    }
}
