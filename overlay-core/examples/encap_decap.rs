//! Build an inner Ethernet/IPv4/UDP frame, encapsulate it in VXLAN in place,
//! decapsulate the result and print what the receiver sees.
//!
//! Needs no privileges and no network: everything happens in a buffer.
//!
//! ```sh
//! cargo run -p overlay-core --example encap_decap
//! ```

use std::net::Ipv4Addr;

use overlay_core::MacAddr;
use overlay_core::encap::{Encapsulation, OuterParams, VxlanEncap};
use overlay_core::mtu::{IpFamily, overlay_mtu};
use overlay_core::wire::ethernet::{self, EtherType};
use overlay_core::wire::vxlan::Gbp;
use overlay_core::wire::{IpProtocol, Vni, ipv4, udp};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // The tunnel: VNI 42 with a group-policy ID, defaults otherwise (port
    // 4789, zero UDP checksum over IPv4).
    let vxlan = VxlanEncap::new(Vni::new(42)?).with_gbp(Gbp {
        dont_learn: false,
        policy_applied: false,
        group_policy_id: 7,
    });
    // Outer addressing: our underlay interface and the peer's.
    let outer = OuterParams::new(
        "02:00:00:00:00:01".parse()?,
        "02:00:00:00:00:02".parse()?,
        Ipv4Addr::new(198, 51, 100, 1).into(),
        Ipv4Addr::new(198, 51, 100, 2).into(),
    );
    println!(
        "overlay MTU over a 1500-byte IPv4 underlay: {}",
        overlay_mtu(1500, IpFamily::V4, IpFamily::V4, &vxlan)?
    );

    // The inner frame goes in at `headroom` bytes into the buffer, so the
    // outer headers can be written in front of it without a copy.
    let payload = b"hello, overlay";
    let headroom = vxlan.headroom(&outer);
    let inner_len = ethernet::HEADER_LEN + ipv4::HEADER_LEN + udp::HEADER_LEN + payload.len();
    let mut buf = vec![0u8; headroom + inner_len];
    write_inner_frame(&mut buf[headroom..], payload)?;

    let packet = vxlan.encapsulate(&mut buf, headroom, inner_len, &outer)?;
    let wire = &buf[packet];
    println!(
        "encapsulated: {} bytes on the wire ({headroom} of outer headers)",
        wire.len()
    );

    // The receiving side.
    let d = vxlan.decapsulate(wire)?;
    let ip = d.ip();
    println!(
        "outer: {} -> {}, UDP {} -> {}, checksum present: {}, verified: {}",
        ip.src_addr(),
        ip.dst_addr(),
        d.udp().src_port,
        d.udp().dst_port,
        d.udp_checksum_present(),
        d.udp_checksum_verified(),
    );
    println!("VXLAN: VNI {}, GBP {:?}", d.vni(), d.gbp());
    let inner = ethernet::Packet::new_checked(d.inner())?;
    let inner_ip = ipv4::Packet::new_checked(inner.payload())?;
    let inner_udp = udp::Packet::new_checked(inner_ip.payload())?;
    println!(
        "inner frame at byte {}: {} -> {}, {} -> {}:{}, payload {:?}",
        d.inner_offset(),
        inner.src_addr(),
        inner.dst_addr(),
        inner_ip.src_addr(),
        inner_ip.dst_addr(),
        inner_udp.dst_port(),
        String::from_utf8_lossy(inner_udp.payload()),
    );
    Ok(())
}

/// Writes Ethernet/IPv4/UDP around `payload` into `frame` with the wire
/// codecs' `Repr`s.
fn write_inner_frame(frame: &mut [u8], payload: &[u8]) -> Result<(), Box<dyn std::error::Error>> {
    let (eth, rest) = frame.split_at_mut(ethernet::HEADER_LEN);
    ethernet::Repr {
        src_addr: MacAddr::new([0x0a, 0, 0, 0, 0, 1]),
        dst_addr: MacAddr::new([0x0a, 0, 0, 0, 0, 2]),
        vlan: None,
        ethertype: EtherType::Ipv4,
    }
    .emit(&mut ethernet::Packet::new_unchecked(eth))?;
    let (src, dst) = (Ipv4Addr::new(10, 32, 0, 1), Ipv4Addr::new(10, 32, 1, 7));
    let udp_len = udp::HEADER_LEN + payload.len();
    let (ip, l4) = rest.split_at_mut(ipv4::HEADER_LEN);
    ipv4::Repr::new(src, dst, IpProtocol::Udp, udp_len)
        .emit(&mut ipv4::Packet::new_unchecked(ip))?;
    l4[udp::HEADER_LEN..].copy_from_slice(payload);
    udp::Repr {
        src_port: 40000,
        dst_port: 5353,
        payload_len: payload.len(),
    }
    .emit(
        &mut udp::Packet::new_unchecked(l4),
        &udp::AddrPair::V4 { src, dst },
        udp::Checksum::Compute,
    )?;
    Ok(())
}
