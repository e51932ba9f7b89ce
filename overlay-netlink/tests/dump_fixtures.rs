//! The recipe of the golden kernel dumps in `tests/fixtures/*.bin`, run live.
//!
//! [`live_kernel_dumps_of_a_flannel_style_overlay`] builds, in a fresh test
//! namespace, the kernel state the overlay module reads, and dumps it with a
//! plain `NETLINK_ROUTE` socket, keeping the kernel's datagrams byte for
//! byte. It checks that the dumps hold what the recipe installed, and, with
//! `OVERLAY_CAPTURE_NETLINK_FIXTURES_DIR` set, writes them there (see
//! `tests/fixtures/README.md`):
//!
//! ```sh
//! sudo -E OVERLAY_REQUIRE_PRIVILEGED=1 \
//!     OVERLAY_CAPTURE_NETLINK_FIXTURES_DIR=$PWD/overlay-netlink/tests/fixtures \
//!     cargo test -p overlay-netlink --test dump_fixtures
//! ```
//!
//! The checked-in bytes are read without root by the dump reader's tests
//! (`src/overlay/dump_reader.rs`), which compare what the dump reader and the
//! message splitter read with what `netlink-packet-route` parses.
// Helpers may unwrap: a panic in a test is a failing test.
#![allow(clippy::unwrap_used)]

mod common;

use std::net::IpAddr;
use std::path::PathBuf;

use netlink_packet_core::{
    NLM_F_DUMP, NLM_F_REQUEST, NetlinkHeader, NetlinkMessage, NetlinkPayload,
};
use netlink_packet_route::link::{InfoKind, LinkAttribute, LinkInfo, LinkMessage};
use netlink_packet_route::neighbour::{NeighbourAddress, NeighbourAttribute, NeighbourMessage};
use netlink_packet_route::route::{RouteAttribute, RouteMessage};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};
use netlink_sys::{Socket, SocketAddr, protocols::NETLINK_ROUTE};
use overlay_netlink::overlay::{Overlay, RemotePeer};
use overlay_netlink::{Address, MacAddr, Vni, VxlanConfig};
use overlay_testsupport::{TestNetns, privileged_test};

/// The environment variable naming the directory to write the dumps to.
const CAPTURE_DIR: &str = "OVERLAY_CAPTURE_NETLINK_FIXTURES_DIR";

/// `NLMSG_DONE` and `NLMSG_ERROR`.
const NLMSG_DONE: u16 = 3;
const NLMSG_ERROR: u16 = 2;

/// The fixtures: file stem and dump request.
fn dumps() -> Vec<(&'static str, RouteNetlinkMessage)> {
    let neighbours = |family| {
        let mut m = NeighbourMessage::default();
        m.header.family = family;
        RouteNetlinkMessage::GetNeighbour(m)
    };
    let routes = |family| {
        let mut m = RouteMessage::default();
        m.header.address_family = family;
        RouteNetlinkMessage::GetRoute(m)
    };
    vec![
        ("neigh-inet", neighbours(AddressFamily::Inet)),
        ("neigh-inet6", neighbours(AddressFamily::Inet6)),
        ("fdb-bridge", neighbours(AddressFamily::Bridge)),
        ("route-inet", routes(AddressFamily::Inet)),
        ("route-inet6", routes(AddressFamily::Inet6)),
        ("link", RouteNetlinkMessage::GetLink(LinkMessage::default())),
    ]
}

/// Peer `n` of the IPv4 overlay: underlay 198.51.100.n, VTEP MAC
/// 02:00:00:00:04:n, VTEP address 10.244.n.0, pods 10.244.n.0/24.
fn peer_v4(n: u8) -> RemotePeer {
    RemotePeer::new(
        IpAddr::from([198, 51, 100, n]),
        MacAddr::new([2, 0, 0, 0, 4, n]),
        IpAddr::from([10, 244, n, 0]),
    )
    .pod_cidr(format!("10.244.{n}.0/24").parse().unwrap())
}

/// Peer `n` of the IPv6 overlay: underlay 2001:db8::n, VTEP MAC
/// 02:00:00:00:06:n, VTEP address 2001:db8:f0:n::, pods 2001:db8:f0:n::/64.
fn peer_v6(n: u8) -> RemotePeer {
    RemotePeer::new(
        format!("2001:db8::{n}").parse().unwrap(),
        MacAddr::new([2, 0, 0, 0, 6, n]),
        format!("2001:db8:f0:{n}::").parse().unwrap(),
    )
    .pod_cidr(format!("2001:db8:f0:{n}::/64").parse().unwrap())
}

/// Send one dump request on `socket` and return the kernel's datagrams
/// concatenated, up to and including the one with `NLMSG_DONE`.
fn dump(socket: &Socket, request: RouteNetlinkMessage, sequence: u32) -> Vec<u8> {
    let mut header = NetlinkHeader::default();
    header.flags = NLM_F_REQUEST | NLM_F_DUMP;
    header.sequence_number = sequence;
    let mut message = NetlinkMessage::new(header, NetlinkPayload::InnerMessage(request));
    message.finalize();
    let mut out = vec![0; message.buffer_len()];
    message.serialize(&mut out);
    socket.send(&out, 0).unwrap();

    let mut all = Vec::new();
    loop {
        let mut buf = vec![0u8; 1 << 20];
        let len = socket.recv(&mut &mut buf[..], 0).unwrap();
        let datagram = &buf[..len];
        all.extend_from_slice(datagram);
        let mut rest = datagram;
        let mut done = false;
        while rest.len() >= 16 {
            let len = u32::from_ne_bytes(rest[..4].try_into().unwrap()) as usize;
            let kind = u16::from_ne_bytes([rest[4], rest[5]]);
            assert_ne!(kind, NLMSG_ERROR, "the dump failed");
            assert_eq!(
                u32::from_ne_bytes(rest[8..12].try_into().unwrap()),
                sequence
            );
            done |= kind == NLMSG_DONE;
            rest = &rest[((len + 3) & !3).min(rest.len())..];
        }
        if done {
            return all;
        }
    }
}

/// The messages of a concatenation of datagrams, parsed.
fn parsed(bytes: &[u8]) -> Vec<RouteNetlinkMessage> {
    let mut out = Vec::new();
    let mut rest = bytes;
    while rest.len() >= 16 {
        let len = u32::from_ne_bytes(rest[..4].try_into().unwrap()) as usize;
        let message = NetlinkMessage::<RouteNetlinkMessage>::deserialize(&rest[..len]).unwrap();
        if let NetlinkPayload::InnerMessage(inner) = message.payload {
            out.push(inner);
        }
        rest = &rest[((len + 3) & !3).min(rest.len())..];
    }
    out
}

#[tokio::test]
async fn live_kernel_dumps_of_a_flannel_style_overlay() {
    privileged_test!();
    let t = TestNetns::new().unwrap();
    let ns = common::netns(&t);
    let h = ns.handle().unwrap();

    // Two VXLAN devices, as flannel makes them: flannel.1 over IPv4 and
    // flannel-v6.1 over IPv6, each with a fixed MAC address and an address.
    let (v4, _) = h
        .link()
        .ensure_vxlan(
            &VxlanConfig::new("flannel.1", Vni::new(1).unwrap())
                .local("192.0.2.1".parse().unwrap())
                .port(8472),
        )
        .await
        .unwrap();
    let (v6, _) = h
        .link()
        .ensure_vxlan(
            &VxlanConfig::new("flannel-v6.1", Vni::new(1).unwrap())
                .local("2001:db8::1".parse().unwrap())
                .port(8472),
        )
        .await
        .unwrap();
    for (dev, mac) in [
        ("flannel.1", "02:00:00:00:04:01"),
        ("flannel-v6.1", "02:00:00:00:06:01"),
    ] {
        t.ip(["link", "set", dev, "address", mac]).unwrap();
    }
    h.address()
        .add(Address::new(v4.index, "10.244.1.0/32".parse().unwrap()))
        .await
        .unwrap();
    h.address()
        .add(Address::new(
            v6.index,
            "2001:db8:f0:1::/128".parse().unwrap(),
        ))
        .await
        .unwrap();
    h.link().set_up(v4.index).await.unwrap();
    h.link().set_up(v6.index).await.unwrap();

    // Three remote peers per family: permanent neighbour entries, `self`
    // FDB entries with a destination, on-link routes with spread metrics.
    let peers_v4: Vec<RemotePeer> = (2..=4).map(peer_v4).collect();
    let peers_v6: Vec<RemotePeer> = (2..=4).map(peer_v6).collect();
    Overlay::new(&h, v4.index)
        .reconcile(&peers_v4)
        .await
        .unwrap();
    Overlay::new(&h, v6.index)
        .reconcile(&peers_v6)
        .await
        .unwrap();

    // Routes of other kinds, protocols and tables, for the route list API.
    for args in [
        &["route", "add", "blackhole", "203.0.113.0/24"][..],
        &[
            "route",
            "add",
            "prohibit",
            "203.0.113.128/25",
            "table",
            "100",
        ],
        &[
            "-6",
            "route",
            "add",
            "unreachable",
            "2001:db8:dead::/48",
            "proto",
            "static",
        ],
    ] {
        t.ip(args).unwrap();
    }

    // A socket of our own in the namespace, so that the bytes are the
    // kernel's datagrams as received.
    let socket = ns
        .run(|| {
            let mut socket = Socket::new(NETLINK_ROUTE).unwrap();
            socket.bind(&SocketAddr::new(0, 0)).unwrap();
            socket.connect(&SocketAddr::new(0, 0)).unwrap();
            socket
        })
        .unwrap();
    let captured: Vec<(&str, Vec<u8>)> = dumps()
        .into_iter()
        .enumerate()
        .map(|(i, (name, request))| (name, dump(&socket, request, 1 + i as u32)))
        .collect();

    // The dumps hold what the recipe installed.
    let find = |name: &str| &captured.iter().find(|(n, _)| *n == name).unwrap().1;
    let neighbour_dsts = |name: &str, index: u32| -> Vec<IpAddr> {
        parsed(find(name))
            .iter()
            .filter_map(|m| match m {
                RouteNetlinkMessage::NewNeighbour(n) if n.header.ifindex == index => {
                    n.attributes.iter().find_map(|a| match a {
                        NeighbourAttribute::Destination(NeighbourAddress::Inet(a)) => {
                            Some(IpAddr::V4(*a))
                        }
                        NeighbourAttribute::Destination(NeighbourAddress::Inet6(a)) => {
                            Some(IpAddr::V6(*a))
                        }
                        // FDB entries (family AF_BRIDGE) carry raw bytes.
                        NeighbourAttribute::Destination(NeighbourAddress::Other(v)) => {
                            match v.len() {
                                4 => <[u8; 4]>::try_from(v.as_slice()).ok().map(IpAddr::from),
                                16 => <[u8; 16]>::try_from(v.as_slice()).ok().map(IpAddr::from),
                                _ => None,
                            }
                        }
                        _ => None,
                    })
                }
                _ => None,
            })
            .collect()
    };
    for p in &peers_v4 {
        assert!(neighbour_dsts("neigh-inet", v4.index).contains(&p.vtep_ip));
        assert!(neighbour_dsts("fdb-bridge", v4.index).contains(&p.underlay));
    }
    for p in &peers_v6 {
        assert!(neighbour_dsts("neigh-inet6", v6.index).contains(&p.vtep_ip));
        assert!(neighbour_dsts("fdb-bridge", v6.index).contains(&p.underlay));
    }
    for (name, index, count) in [("route-inet", v4.index, 3), ("route-inet6", v6.index, 3)] {
        let onlink_via_gateway = parsed(find(name))
            .iter()
            .filter(|m| match m {
                RouteNetlinkMessage::NewRoute(r) => {
                    r.attributes.contains(&RouteAttribute::Oif(index))
                        && r.attributes
                            .iter()
                            .any(|a| matches!(a, RouteAttribute::Gateway(_)))
                }
                _ => false,
            })
            .count();
        assert_eq!(onlink_via_gateway, count, "{name}");
    }

    let vxlan_links: Vec<u32> = parsed(find("link"))
        .iter()
        .filter_map(|m| match m {
            RouteNetlinkMessage::NewLink(l)
                if l.attributes.iter().any(|a| {
                    matches!(a, LinkAttribute::LinkInfo(i)
                        if i.contains(&LinkInfo::Kind(InfoKind::Vxlan)))
                }) =>
            {
                Some(l.header.index)
            }
            _ => None,
        })
        .collect();
    assert_eq!(vxlan_links, [v4.index, v6.index]);

    if let Some(dir) = std::env::var_os(CAPTURE_DIR) {
        let dir = PathBuf::from(dir);
        std::fs::create_dir_all(&dir).unwrap();
        for (name, bytes) in &captured {
            std::fs::write(dir.join(format!("{name}.bin")), bytes).unwrap();
        }
        eprintln!("wrote {} dumps to {}", captured.len(), dir.display());
    }
}
