//! What each fuzz target checks, one function per parser.
//!
//! Every function takes arbitrary bytes and must not panic except on a
//! broken contract of overlay-core's wire codecs:
//!
//! * `Packet::new_checked` and `Repr::parse` never panic, for any input;
//! * after `new_checked` succeeded, no accessor panics (each is called);
//! * whatever `Repr::parse` accepts, `Repr::emit` writes back into a buffer of
//!   `Repr::buffer_len()` bytes without an error (parse never produces a
//!   field that `Repr::check` refuses), and that parses again to the same
//!   `Repr`;
//! * a successful decapsulation of an Ethernet payload returns at least an
//!   Ethernet header's 14 bytes;
//! * fields the `Repr` carries completely are re-emitted byte-exact (the
//!   assertions below say which bytes, and why the others may differ).
//!
//! The targets in `fuzz_targets/` only call these functions, so that a crash
//! found by `cargo fuzz run` reproduces with a plain `cargo test` too.

use std::net::{Ipv4Addr, Ipv6Addr};

use overlay_core::encap::{
    Decapsulated, Encapsulation, GeneveEncap, OuterHeaders, OuterIp, OuterParams, TunnelConfig,
    TunnelHeader, UdpChecksumMode, VxlanEncap,
};
use overlay_core::wire::geneve::GeneveOption;
use overlay_core::wire::udp::{AddrPair, Checksum, ParseOptions};
use overlay_core::wire::{Vni, ethernet, geneve, ipv4, ipv6, udp, vxlan};

/// Ethernet II with an optional 802.1Q tag: every header bit is in the
/// `Repr`, so the header re-emits byte-exact.
pub fn ethernet(data: &[u8]) {
    let Ok(packet) = ethernet::Packet::new_checked(data) else {
        return;
    };
    let _ = (
        packet.dst_addr(),
        packet.src_addr(),
        packet.outer_ethertype(),
    );
    let _ = (packet.has_vlan_tag(), packet.vlan_tag(), packet.ethertype());
    let header_len = packet.header_len();
    assert_eq!(header_len + packet.payload().len(), data.len());
    let Ok(repr) = ethernet::Repr::parse(&packet) else {
        return;
    };
    let mut out = vec![0u8; repr.buffer_len()];
    repr.emit(&mut ethernet::Packet::new_unchecked(&mut out[..]))
        .expect("a parsed Ethernet header emits");
    assert_eq!(out, data[..header_len], "Ethernet header not byte-exact");
    let again = ethernet::Packet::new_checked(&out[..]).expect("emitted header checks");
    assert_eq!(ethernet::Repr::parse(&again), Ok(repr));
}

/// IPv4: the checksum is recomputed on emit (a header whose checksum field
/// is 0xffff where 0x0000 is computed verifies too), so bytes 10-11 are
/// compared by validity, and the reserved flag bit (0x80 of byte 6) is
/// ignored on receipt as documented; every other header bit re-emits exactly.
pub fn ipv4(data: &[u8]) {
    let Ok(packet) = ipv4::Packet::new_checked(data) else {
        return;
    };
    let _ = (
        packet.version(),
        packet.dscp(),
        packet.ecn(),
        packet.ident(),
    );
    let _ = (
        packet.dont_frag(),
        packet.more_frags(),
        packet.reserved_flag(),
    );
    let _ = (packet.frag_offset(), packet.ttl(), packet.protocol());
    let _ = (packet.checksum(), packet.src_addr(), packet.dst_addr());
    let _ = (packet.options(), packet.verify_checksum(), packet.payload());
    let header_len = packet.header_len();
    let total_len = usize::from(packet.total_len());
    assert_eq!(header_len + packet.payload().len(), total_len);
    let Ok(repr) = ipv4::Repr::parse(&packet) else {
        return;
    };
    let mut out = data[..total_len].to_vec();
    out[..header_len].fill(0);
    repr.emit(&mut ipv4::Packet::new_unchecked(&mut out[..]))
        .expect("a parsed IPv4 header emits");
    assert_eq!(repr.buffer_len(), header_len);
    let mut masked_in = data[..header_len].to_vec();
    let mut masked_out = out[..header_len].to_vec();
    masked_in[10..12].fill(0);
    masked_out[10..12].fill(0);
    masked_in[6] &= 0x7f;
    assert_eq!(masked_out, masked_in, "IPv4 header not byte-exact");
    let again = ipv4::Packet::new_checked(&out[..]).expect("emitted header checks");
    assert!(
        again.verify_checksum(),
        "emitted IPv4 checksum does not verify"
    );
    assert_eq!(ipv4::Repr::parse(&again), Ok(repr));
}

/// IPv6 fixed header: every bit is in the `Repr`.
pub fn ipv6(data: &[u8]) {
    let Ok(packet) = ipv6::Packet::new_checked(data) else {
        return;
    };
    let _ = (
        packet.version(),
        packet.dscp(),
        packet.ecn(),
        packet.flow_label(),
    );
    let _ = (packet.next_header(), packet.hop_limit());
    let _ = (packet.src_addr(), packet.dst_addr());
    let payload_len = usize::from(packet.payload_len());
    assert_eq!(packet.payload().len(), payload_len);
    let Ok(repr) = ipv6::Repr::parse(&packet) else {
        return;
    };
    let mut out = vec![0u8; repr.buffer_len() + payload_len];
    repr.emit(&mut ipv6::Packet::new_unchecked(&mut out[..]))
        .expect("a parsed IPv6 header emits");
    assert_eq!(
        out[..ipv6::HEADER_LEN],
        data[..ipv6::HEADER_LEN],
        "IPv6 header not byte-exact"
    );
    let again = ipv6::Packet::new_checked(&out[..]).expect("emitted header checks");
    assert_eq!(ipv6::Repr::parse(&again), Ok(repr));
}

/// The pseudo-header addresses for [`udp`]: the first byte chooses the
/// family, the next 8 or 32 bytes are the addresses.
fn addr_pair(data: &[u8]) -> Option<(AddrPair, &[u8])> {
    let (&selector, rest) = data.split_first()?;
    if selector & 1 == 0 {
        let (a, rest) = rest.split_first_chunk::<4>()?;
        let (b, rest) = rest.split_first_chunk::<4>()?;
        Some((
            AddrPair::from((Ipv4Addr::from(*a), Ipv4Addr::from(*b))),
            rest,
        ))
    } else {
        let (a, rest) = rest.split_first_chunk::<16>()?;
        let (b, rest) = rest.split_first_chunk::<16>()?;
        Some((
            AddrPair::from((Ipv6Addr::from(*a), Ipv6Addr::from(*b))),
            rest,
        ))
    }
}

/// UDP over an IPv4 or IPv6 pseudo-header: parse with and without checksum
/// verification and with the RFC 6935 exception; the ports and length re-emit
/// byte-exact, and a computed checksum verifies.
pub fn udp(data: &[u8]) {
    let Some((addrs, data)) = addr_pair(data) else {
        return;
    };
    let Ok(packet) = udp::Packet::new_checked(data) else {
        return;
    };
    let _ = (packet.src_port(), packet.dst_port(), packet.checksum());
    let _ = (packet.is_empty(), packet.verify_checksum(&addrs));
    let len = usize::from(packet.len());
    assert_eq!(udp::HEADER_LEN + packet.payload().len(), len);
    let strict = udp::Repr::parse(&packet, &addrs, &ParseOptions::default());
    let lax = ParseOptions::default()
        .verify_checksum(false)
        .allow_zero_checksum_ipv6(true);
    let Ok(repr) = udp::Repr::parse(&packet, &addrs, &lax) else {
        panic!("UDP with a valid length rejected with every check off");
    };
    if let Ok(strict) = strict {
        assert_eq!(strict, repr);
    }
    for checksum in [Checksum::Compute, Checksum::Zero] {
        let mut out = data[..len].to_vec();
        out[..udp::HEADER_LEN].fill(0);
        repr.emit(
            &mut udp::Packet::new_unchecked(&mut out[..]),
            &addrs,
            checksum,
        )
        .expect("a parsed UDP header emits over its own datagram");
        assert_eq!(out[..6], data[..6], "UDP ports and length not byte-exact");
        let again = udp::Packet::new_checked(&out[..]).expect("emitted header checks");
        let options = match checksum {
            Checksum::Compute => ParseOptions::default(),
            _ => lax,
        };
        assert_eq!(udp::Repr::parse(&again, &addrs, &options), Ok(repr));
    }
}

/// VXLAN: reserved bits are ignored on receipt, so the header re-emits
/// byte-exact exactly when none is set.
pub fn vxlan(data: &[u8]) {
    let Ok(packet) = vxlan::Packet::new_checked(data) else {
        return;
    };
    let _ = (packet.flags(), packet.vni_flag(), packet.gbp_flag());
    let _ = (packet.dont_learn(), packet.policy_applied());
    let _ = (packet.group_policy_id(), packet.vni(), packet.payload());
    let reserved = packet.reserved_bits_set();
    let Ok(repr) = vxlan::Repr::parse(&packet) else {
        return;
    };
    let mut out = vec![0u8; repr.buffer_len()];
    repr.emit(&mut vxlan::Packet::new_unchecked(&mut out[..]))
        .expect("a parsed VXLAN header emits");
    if !reserved {
        assert_eq!(
            out,
            data[..vxlan::HEADER_LEN],
            "VXLAN header not byte-exact"
        );
    }
    let again = vxlan::Packet::new_checked(&out[..]).expect("emitted header checks");
    assert!(!again.reserved_bits_set(), "emit set a reserved bit");
    assert_eq!(vxlan::Repr::parse(&again), Ok(repr));
}

/// Geneve, options included: the option iterator terminates and accounts for
/// every byte of the option area or reports where it stopped; the option area
/// of an accepted header (unknown options included) re-emits byte-exact but
/// for each option's three reserved R bits (ignored on receipt, RFC 8926
/// section 3.5), and so does the fixed header when no reserved bit is set and
/// the C bit agrees with the options (the `Repr` derives C from the options'
/// critical bits).
pub fn geneve(data: &[u8]) {
    // The iterator on its own, over arbitrary bytes.
    let mut consumed = 0;
    for option in geneve::Options::new(data) {
        match option {
            Ok(option) => {
                let _ = (option.class(), option.type_(), option.is_critical());
                consumed += geneve::OPTION_HEADER_LEN + option.data().len();
            }
            Err(_) => {
                consumed = data.len();
                break;
            }
        }
        assert!(consumed <= data.len(), "options ran past their area");
    }
    assert_eq!(consumed, data.len(), "options did not cover their area");

    let Ok(packet) = geneve::Packet::new_checked(data) else {
        return;
    };
    let _ = (packet.version(), packet.oam(), packet.critical());
    let _ = (packet.protocol_type(), packet.vni(), packet.payload());
    let header_len = packet.header_len();
    assert_eq!(header_len, geneve::HEADER_LEN + packet.options_len());
    assert_eq!(packet.options_bytes().len(), packet.options_len());
    let reserved = packet.reserved_bits_set();
    let Ok(repr) = geneve::Repr::parse(&packet) else {
        return;
    };
    assert_eq!(repr.buffer_len(), header_len);
    let mut out = vec![0u8; repr.buffer_len()];
    repr.emit(&mut geneve::Packet::new_unchecked(&mut out[..]))
        .expect("a parsed Geneve header emits");
    let mut area = data[geneve::HEADER_LEN..header_len].to_vec();
    let mut at = 0;
    for option in &repr.options {
        area[at + 3] &= 0x1f; // R1-R3
        at += option.wire_len();
    }
    assert_eq!(at, area.len(), "options do not fill the option area");
    assert_eq!(
        out[geneve::HEADER_LEN..],
        area[..],
        "Geneve options not byte-exact"
    );
    if !reserved && packet.critical() == repr.critical() {
        assert_eq!(
            out[..geneve::HEADER_LEN],
            data[..geneve::HEADER_LEN],
            "Geneve fixed header not byte-exact"
        );
    }
    let again = geneve::Packet::new_checked(&out[..]).expect("emitted header checks");
    assert_eq!(geneve::Repr::parse(&again), Ok(repr));
}

/// The decapsulators a decapsulation target runs: the defaults, and one that
/// verifies no UDP checksum and accepts zero ones over IPv6, so that inputs
/// with a wrong checksum still reach the tunnel header.
fn decap_configs(port: u16) -> [TunnelConfig; 2] {
    [
        TunnelConfig::new(port),
        TunnelConfig::new(port)
            .with_verify_udp_checksum(false)
            .with_allow_zero_udp_checksum_ipv6(true),
    ]
}

/// What every successful decapsulation must satisfy: the inner frame is the
/// sub-slice at `inner_offset`, the offsets are in order, and every accessor
/// reads without panicking.
fn check_located(data: &[u8], d: &Decapsulated<'_>) -> OuterHeaders {
    assert!(
        std::ptr::eq(d.packet(), data),
        "decapsulated another buffer"
    );
    assert!(d.inner_offset() <= data.len());
    assert!(
        std::ptr::eq(d.inner().as_ptr(), data[d.inner_offset()..].as_ptr()),
        "inner frame is not the sub-slice at inner_offset"
    );
    assert!(d.inner_offset() + d.inner().len() <= data.len());
    assert!(d.ip_offset() < d.udp_offset() && d.udp_offset() < d.tunnel_offset());
    assert!(
        d.tunnel_offset() + 8 <= d.inner_offset(),
        "tunnel header shorter than 8 bytes"
    );
    let outer = d.outer();
    assert_eq!(outer.ethernet, d.ethernet());
    assert_eq!(outer.ip, d.ip());
    assert_eq!(outer.udp, d.udp());
    assert_eq!(d.outer_src_addr(), outer.ip.src_addr());
    assert_eq!(d.outer_dst_addr(), outer.ip.dst_addr());
    assert_eq!(d.udp_src_port(), outer.udp.src_port);
    assert_eq!(d.tunnel().vni(), d.vni());
    outer
}

/// Outer parameters and UDP/IP settings that reproduce `outer`, with a
/// computed UDP checksum.
fn reproduce(outer: &OuterHeaders, port: u16) -> (OuterParams, TunnelConfig) {
    let mut params = OuterParams::new(
        outer.ethernet.src_addr,
        outer.ethernet.dst_addr,
        outer.ip.src_addr(),
        outer.ip.dst_addr(),
    );
    if let Some(tag) = outer.ethernet.vlan {
        params = params.with_vlan(tag);
    }
    let mut config = TunnelConfig::new(port)
        .with_udp_checksum(UdpChecksumMode::Compute)
        .with_ttl(outer.ip.ttl());
    match outer.ip {
        OuterIp::V4(ip) => {
            params = params.with_ipv4_ident(ip.ident);
            config = config
                .with_dont_fragment(ip.dont_frag)
                .with_dscp_ecn(ip.dscp, ip.ecn);
        }
        OuterIp::V6(ip) => config = config.with_dscp_ecn(ip.dscp, ip.ecn),
    }
    (params, config)
}

/// Encapsulate `inner` with `encap` in a fresh buffer and decapsulate it
/// again with `decap`; checks what is fixed and returns the packet.
fn round_trip(
    encap: &dyn Encapsulation,
    decap: &dyn Encapsulation,
    params: &OuterParams,
    inner: &[u8],
) -> Option<Vec<u8>> {
    let headroom = encap.headroom(params);
    let mut buf = vec![0u8; headroom];
    buf.extend_from_slice(inner);
    // Too long for the 16-bit length fields once the headers are added.
    let range = encap
        .encapsulate(&mut buf, headroom, inner.len(), params)
        .ok()?;
    assert_eq!(range, 0..buf.len());
    assert_eq!(
        buf[headroom..],
        inner[..],
        "encapsulation changed the inner frame"
    );
    let again = decap
        .decapsulate(&buf)
        .unwrap_or_else(|e| panic!("our own encapsulation does not decapsulate: {e}"));
    check_located(&buf, &again);
    assert_eq!(again.inner(), inner);
    let outer = again.outer();
    assert_eq!(outer.ethernet.src_addr, params.src_mac);
    assert_eq!(outer.ethernet.dst_addr, params.dst_mac);
    assert_eq!(outer.ethernet.vlan, params.vlan);
    assert_eq!(
        (outer.ip.src_addr(), outer.ip.dst_addr()),
        (params.src_ip, params.dst_ip)
    );
    Some(buf)
}

/// VXLAN decapsulation of whole frames: never panics, locates the inner frame
/// as a sub-slice, and what it reads re-encapsulates (with our VXLAN) into a
/// packet that decapsulates to the same VNI, GBP fields, addresses and inner
/// frame.
pub fn vxlan_decap(data: &[u8]) {
    let vni = Vni::new(0).expect("zero is a VNI");
    for config in decap_configs(vxlan::DEFAULT_PORT) {
        let decap = VxlanEncap::new(vni).with_config(config);
        let Ok(d) = decap.decapsulate(data) else {
            continue;
        };
        let outer = check_located(data, &d);
        assert!(
            d.inner().len() >= ethernet::HEADER_LEN,
            "VXLAN inner frame of {} bytes, shorter than an Ethernet header",
            d.inner().len()
        );
        let TunnelHeader::Vxlan(header) = d.tunnel() else {
            panic!("VXLAN decapsulation returned another tunnel header");
        };
        let (params, config) = reproduce(&outer, vxlan::DEFAULT_PORT);
        let mut encap = VxlanEncap::new(header.vni).with_config(config);
        if let Some(gbp) = header.gbp {
            encap = encap.with_gbp(gbp);
        }
        let strict = VxlanEncap::new(vni);
        let Some(packet) = round_trip(&encap, &strict, &params, d.inner()) else {
            continue;
        };
        let again = strict.decapsulate(&packet).expect("checked by round_trip");
        assert!(matches!(again.tunnel(), TunnelHeader::Vxlan(h) if h == header));
    }
}

/// Geneve decapsulation of whole frames: never panics, locates the inner
/// frame, yields only well-formed options, and what it reads re-encapsulates
/// (with our Geneve) into a packet that decapsulates to the same VNI, flags,
/// protocol type, options and inner frame.
pub fn geneve_decap(data: &[u8]) {
    let vni = Vni::new(0).expect("zero is a VNI");
    for config in decap_configs(geneve::DEFAULT_PORT) {
        let decap = GeneveEncap::new(vni).with_config(config);
        let Ok(d) = decap.decapsulate(data) else {
            continue;
        };
        let outer = check_located(data, &d);
        let TunnelHeader::Geneve(header) = d.tunnel() else {
            panic!("Geneve decapsulation returned another tunnel header");
        };
        if header.protocol_type == ethernet::EtherType::TransparentEthernetBridging {
            assert!(
                d.inner().len() >= ethernet::HEADER_LEN,
                "Geneve Ethernet payload of {} bytes, shorter than an Ethernet header",
                d.inner().len()
            );
        }
        let options: Vec<GeneveOption> = header
            .options
            .clone()
            .map(|o| o.expect("decapsulation validated the options").to_owned())
            .collect();
        let repr = geneve::Repr {
            oam: header.oam,
            protocol_type: header.protocol_type,
            vni: header.vni,
            options: options.clone(),
        };
        let (params, config) = reproduce(&outer, geneve::DEFAULT_PORT);
        let encap = GeneveEncap::from_header(repr.clone(), config)
            .expect("options that were decoded fit the option length");
        let strict = GeneveEncap::new(vni);
        let Some(packet) = round_trip(&encap, &strict, &params, d.inner()) else {
            continue;
        };
        let again = strict.decapsulate(&packet).expect("checked by round_trip");
        let TunnelHeader::Geneve(h) = again.tunnel() else {
            panic!("our Geneve packet decapsulated to another tunnel header");
        };
        assert_eq!(
            (h.oam, h.protocol_type, h.vni),
            (repr.oam, repr.protocol_type, repr.vni)
        );
        assert_eq!(h.critical, repr.critical());
        let reread: Vec<GeneveOption> = h
            .options
            .map(|o| o.expect("our own options are well-formed").to_owned())
            .collect();
        assert_eq!(reread, options);
    }
}

/// overlay-ipam's range texts: a MetalLB pool range (`PoolRange`: a CIDR or
/// `first-last`) and a port range (`PortRange`: `a-b`, `a+n` or `a`).
/// Parsing never panics; whatever parses prints to text that parses back to
/// the same range; an accepted pool range has ordered ends of one family,
/// and a pool of it (small enough to build quickly) hands out its first
/// address first; a NodePort allocator over an accepted port range splits
/// it into a static band below a dynamic band that ends at the last port.
pub fn ipam_ranges(data: &[u8]) {
    use overlay_ipam::k8s::{AddressPool, NodePortAllocator, PoolRange, PortRange};

    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(range) = text.parse::<PoolRange>() {
        assert_eq!(range.to_string().parse::<PoolRange>(), Ok(range));
        assert_eq!(range.first().is_ipv4(), range.last().is_ipv4());
        assert!(range.size() >= 1);
        if range.size() <= 1 << 16 {
            for avoid in [false, true] {
                let mut pool =
                    AddressPool::new([range], avoid).expect("a single range is a valid pool");
                match pool.allocate(range.family(), ()) {
                    Ok(ip) => assert!(range.contains(ip)),
                    // Only a range of nothing but avoided addresses is full.
                    Err(_) => assert!(avoid && pool.capacity() == 0),
                }
                if !avoid {
                    assert_eq!(pool.iter().next().map(|(ip, _)| ip), Some(range.first()));
                }
            }
        }
    }
    if let Ok(ports) = text.parse::<PortRange>() {
        assert_eq!(ports.to_string().parse::<PortRange>(), Ok(ports));
        let alloc = NodePortAllocator::<()>::new(ports);
        let (low, high) = alloc.dynamic_band();
        assert_eq!(high, ports.last());
        assert!(low >= ports.first());
        match alloc.static_band() {
            Some((first, last)) => assert!(first == ports.first() && last + 1 == low),
            None => assert_eq!(low, ports.first()),
        }
    }
}

/// The node agent's socket protocol (`overlay_ipam::agent`): decoding a
/// request or a response never panics, and whatever decodes re-encodes to
/// one line that decodes to the same message.
pub fn agent_protocol(data: &[u8]) {
    use overlay_ipam::agent::{
        decode_request, decode_response, encode_request, encode_response, read_line,
    };
    if let Ok(request) = decode_request(data) {
        let line = encode_request(&request);
        assert_eq!(line.iter().filter(|b| **b == b'\n').count(), 1);
        assert_eq!(decode_request(&line).ok(), Some(request));
    }
    if let Ok(response) = decode_response(data) {
        let line = encode_response(&response);
        assert_eq!(decode_response(&line).ok(), Some(response));
    }
    if let Ok(line) = read_line(data) {
        assert!(line.len() <= overlay_ipam::agent::MAX_MESSAGE);
        assert_eq!(line.last(), Some(&b'\n'));
    }
}

/// The IPAM ring's node messages (`overlay_ipam::ring::Message`): decoding
/// never panics, and whatever decodes re-encodes to bytes that decode to
/// the same message.
pub fn ipam_ring_message(data: &[u8]) {
    use overlay_ipam::ring::Message;
    if let Ok(message) = Message::decode(data) {
        assert_eq!(Message::decode(&message.encode()).ok(), Some(message));
    }
}
