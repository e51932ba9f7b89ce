//! The dump reader: the few fields of neighbour, route, link and address
//! messages that the crate reads, straight from the bytes.
//!
//! The dumps of a reconcile hold thousands of entries of which a handful of
//! fields matter, so [`neighbour`] and [`route`] read those fields from a
//! message's payload (after the netlink header) instead of parsing the
//! whole message with `netlink-packet-route`; the golden-bytes tests and the
//! `dump_reader` fuzz target check that both read the same values. [`link`]
//! reads a [`Link`](crate::Link) the same way, for every link look-up,
//! listing and creation echo: a link message is over a kilobyte of some
//! forty attributes, of which a `Link` holds eight.
//!
//! Layouts from `linux/neighbour.h`, `linux/rtnetlink.h` and
//! `linux/if_link.h`. Panic contract:
//! no function here panics, for any input. Every access is bounds-checked; a
//! payload too short for its header reads as `None`, and the attributes are
//! read up to the first malformed one (as `netlink-packet-core`'s
//! `NlasIterator` would stop with an error). When an attribute appears more
//! than once, the last one wins.

use std::net::IpAddr;

use overlay_core::{MacAddr, Vni};

use crate::link::{Link, LinkKind, VxlanInfo};

pub(crate) const RTM_NEWLINK: u16 = 16;
pub(crate) const RTM_DELLINK: u16 = 17;
pub(crate) const RTM_NEWADDR: u16 = 20;
pub(crate) const RTM_DELADDR: u16 = 21;
pub(crate) const RTM_NEWROUTE: u16 = 24;
pub(crate) const RTM_DELROUTE: u16 = 25;
pub(crate) const RTM_NEWNEIGH: u16 = 28;
pub(crate) const RTM_DELNEIGH: u16 = 29;
pub(crate) const AF_BRIDGE: u8 = libc::AF_BRIDGE as u8;
pub(crate) const NTF_SELF: u8 = 0x02;
pub(crate) const NTF_PROXY: u8 = 0x08;
/// `RTM_F_CLONED` in `rtm_flags`: a cached (exception) route.
pub(crate) const RTM_F_CLONED: u32 = 0x200;
pub(crate) const NUD_PERMANENT: u16 = 0x80;
const NDA_DST: u16 = 1;
const NDA_LLADDR: u16 = 2;
const RTA_DST: u16 = 1;
const RTA_OIF: u16 = 4;
const RTA_GATEWAY: u16 = 5;
const RTA_PRIORITY: u16 = 6;
const RTA_TABLE: u16 = 15;
pub(crate) const RTNH_F_ONLINK: u32 = 4;
/// `sizeof(struct ndmsg)` and `sizeof(struct rtmsg)`.
const HEADER: usize = 12;
/// `sizeof(struct ifinfomsg)`.
const LINK_HEADER: usize = 16;
const IFLA_ADDRESS: u16 = 1;
const IFLA_IFNAME: u16 = 3;
const IFLA_MTU: u16 = 4;
const IFLA_LINK: u16 = 5;
const IFLA_MASTER: u16 = 10;
const IFLA_LINKINFO: u16 = 18;
const IFLA_INFO_KIND: u16 = 1;
const IFLA_INFO_DATA: u16 = 2;
const IFLA_VXLAN_ID: u16 = 1;
const IFLA_VXLAN_GROUP: u16 = 2;
const IFLA_VXLAN_LINK: u16 = 3;
const IFLA_VXLAN_LOCAL: u16 = 4;
const IFLA_VXLAN_LEARNING: u16 = 7;
const IFLA_VXLAN_PORT: u16 = 15;
const IFLA_VXLAN_GROUP6: u16 = 16;
const IFLA_VXLAN_LOCAL6: u16 = 17;
const IFLA_VXLAN_GBP: u16 = 23;
/// `IFF_UP` and `IFF_LOWER_UP` in `ifi_flags`.
const IFF_UP: u32 = 0x1;
const IFF_LOWER_UP: u32 = 0x1_0000;

/// The attributes (type, value) of a message body.
fn attributes(mut buf: &[u8]) -> impl Iterator<Item = (u16, &[u8])> {
    std::iter::from_fn(move || {
        let len = usize::from(u16::from_ne_bytes([*buf.first()?, *buf.get(1)?]));
        let kind = u16::from_ne_bytes([*buf.get(2)?, *buf.get(3)?]) & 0x3fff;
        if len < 4 || len > buf.len() {
            return None;
        }
        let value = &buf[4..len];
        buf = buf.get(((len + 3) & !3).min(buf.len())..).unwrap_or(&[]);
        Some((kind, value))
    })
}

fn ip(value: &[u8]) -> Option<IpAddr> {
    match value.len() {
        4 => <[u8; 4]>::try_from(value).ok().map(IpAddr::from),
        16 => <[u8; 16]>::try_from(value).ok().map(IpAddr::from),
        _ => None,
    }
}

fn u32_of(value: &[u8]) -> Option<u32> {
    <[u8; 4]>::try_from(value).ok().map(u32::from_ne_bytes)
}

/// The fields of a neighbour (`ndmsg`) message the overlay reads; an FDB
/// entry is a neighbour message of family `AF_BRIDGE`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Neigh {
    /// `ndm_family`.
    pub(crate) family: u8,
    /// `ndm_ifindex`.
    pub(crate) ifindex: u32,
    /// `ndm_state` (`NUD_*`).
    pub(crate) state: u16,
    /// `ndm_flags` (`NTF_*`).
    pub(crate) flags: u8,
    /// `NDA_DST` when it is 4 or 16 bytes: the neighbour's address, or an
    /// FDB entry's remote (underlay) address.
    pub(crate) dst: Option<IpAddr>,
    /// `NDA_LLADDR` when it is 6 bytes.
    pub(crate) mac: Option<MacAddr>,
}

/// Read a neighbour message's payload; `None` when it is shorter than an
/// `ndmsg`.
pub(crate) fn neighbour(payload: &[u8]) -> Option<Neigh> {
    let h = payload.get(..HEADER)?;
    let mut n = Neigh {
        family: h[0],
        ifindex: u32::from_ne_bytes([h[4], h[5], h[6], h[7]]),
        state: u16::from_ne_bytes([h[8], h[9]]),
        flags: h[10],
        dst: None,
        mac: None,
    };
    for (kind, value) in attributes(&payload[HEADER..]) {
        match kind {
            NDA_DST => n.dst = ip(value),
            NDA_LLADDR => n.mac = crate::mac::exact(value),
            _ => {}
        }
    }
    Some(n)
}

/// A string attribute: its bytes without one trailing NUL (as
/// `netlink-packet-core` reads it), invalid UTF-8 replaced.
fn string(value: &[u8]) -> String {
    let value = value.strip_suffix(&[0]).unwrap_or(value);
    String::from_utf8_lossy(value).into_owned()
}

/// An address attribute that is not the unspecified address.
fn specified(value: &[u8], len: usize) -> Option<IpAddr> {
    (value.len() == len)
        .then(|| ip(value))
        .flatten()
        .filter(|a| !a.is_unspecified())
}

/// Read a link (`ifinfomsg`) message's payload as a [`Link`]; `None` when
/// it is shorter than an `ifinfomsg`. An attribute of the wrong size is
/// left unread (`netlink-packet-route` refuses such a message whole).
pub(crate) fn link(payload: &[u8]) -> Option<Link> {
    let h = payload.get(..LINK_HEADER)?;
    let flags = u32::from_ne_bytes([h[8], h[9], h[10], h[11]]);
    let mut link = Link {
        index: u32::from_ne_bytes([h[4], h[5], h[6], h[7]]),
        name: String::new(),
        kind: None,
        mtu: None,
        mac: None,
        up: flags & IFF_UP != 0,
        lower_up: flags & IFF_LOWER_UP != 0,
        master: None,
        parent: None,
        vxlan: None,
    };
    for (kind, value) in attributes(&payload[LINK_HEADER..]) {
        match kind {
            IFLA_IFNAME => link.name = string(value),
            IFLA_MTU => link.mtu = u32_of(value),
            IFLA_ADDRESS => link.mac = crate::mac::exact(value),
            IFLA_MASTER => {
                if let Some(m) = u32_of(value).filter(|m| *m != 0) {
                    link.master = Some(m);
                }
            }
            IFLA_LINK => {
                if let Some(p) = u32_of(value).filter(|p| *p != 0) {
                    link.parent = Some(p);
                }
            }
            IFLA_LINKINFO => {
                let mut driver = None;
                for (kind, value) in attributes(value) {
                    match kind {
                        IFLA_INFO_KIND => {
                            let name = string(value);
                            link.kind = Some(LinkKind::from_name(&name));
                            driver = Some(name);
                        }
                        IFLA_INFO_DATA if driver.as_deref() == Some("vxlan") => {
                            link.vxlan = Some(vxlan(value));
                        }
                        _ => {}
                    }
                }
            }
            _ => {}
        }
    }
    Some(link)
}

/// The VXLAN attributes of a link's `IFLA_INFO_DATA`.
fn vxlan(data: &[u8]) -> VxlanInfo {
    let mut info = VxlanInfo::unset();
    for (kind, value) in attributes(data) {
        match kind {
            // The kernel holds 24 bits.
            IFLA_VXLAN_ID => {
                if let Some(v) = u32_of(value) {
                    info.vni = Vni::from_u24_masked(v);
                }
            }
            IFLA_VXLAN_LOCAL => info.local = specified(value, 4).or(info.local),
            IFLA_VXLAN_LOCAL6 => info.local = specified(value, 16).or(info.local),
            IFLA_VXLAN_GROUP => info.remote = specified(value, 4).or(info.remote),
            IFLA_VXLAN_GROUP6 => info.remote = specified(value, 16).or(info.remote),
            IFLA_VXLAN_LINK => {
                if let Some(l) = u32_of(value).filter(|l| *l != 0) {
                    info.underlay = Some(l);
                }
            }
            // Network byte order.
            IFLA_VXLAN_PORT => {
                if let Ok(p) = <[u8; 2]>::try_from(value) {
                    info.port = u16::from_be_bytes(p);
                }
            }
            IFLA_VXLAN_LEARNING => {
                if let [l] = value {
                    info.learning = *l != 0;
                }
            }
            IFLA_VXLAN_GBP => info.gbp = true,
            _ => {}
        }
    }
    info
}

/// The interface index of a link (`ifinfomsg`) or address
/// (`ifaddrmsg`) message: both hold it at offset 4.
pub(crate) fn ifindex(payload: &[u8]) -> Option<u32> {
    u32_of(payload.get(4..8)?)
}

/// The fields of a route (`rtmsg`) message the overlay reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Rt {
    /// `RTA_DST`, or the unspecified address of the family (a default route).
    pub(crate) dst: IpAddr,
    /// `rtm_dst_len`.
    pub(crate) dst_len: u8,
    /// `RTA_TABLE`, or else `rtm_table`.
    pub(crate) table: u32,
    /// `RTNH_F_ONLINK` in `rtm_flags`.
    pub(crate) onlink: bool,
    /// `RTM_F_CLONED` in `rtm_flags`.
    pub(crate) cloned: bool,
    /// `RTA_OIF` when it is 4 bytes.
    pub(crate) oif: Option<u32>,
    /// `RTA_GATEWAY` when it is 4 or 16 bytes.
    pub(crate) gateway: Option<IpAddr>,
    /// `RTA_PRIORITY` when it is 4 bytes.
    pub(crate) metric: Option<u32>,
}

/// Read a route message's payload; `None` when it is shorter than an
/// `rtmsg`, of a family other than IPv4 and IPv6, or has an `RTA_DST` that
/// is not an address or an `RTA_TABLE` that is not 4 bytes.
pub(crate) fn route(payload: &[u8]) -> Option<Rt> {
    let h = payload.get(..HEADER)?;
    let unspecified = match i32::from(h[0]) {
        libc::AF_INET => IpAddr::from([0u8; 4]),
        libc::AF_INET6 => IpAddr::from([0u8; 16]),
        _ => return None,
    };
    let mut r = Rt {
        dst: unspecified,
        dst_len: h[1],
        table: u32::from(h[4]),
        onlink: u32::from_ne_bytes([h[8], h[9], h[10], h[11]]) & RTNH_F_ONLINK != 0,
        cloned: u32::from_ne_bytes([h[8], h[9], h[10], h[11]]) & RTM_F_CLONED != 0,
        oif: None,
        gateway: None,
        metric: None,
    };
    for (kind, value) in attributes(&payload[HEADER..]) {
        match kind {
            RTA_DST => r.dst = ip(value)?,
            RTA_OIF => r.oif = u32_of(value),
            RTA_GATEWAY => r.gateway = ip(value),
            RTA_PRIORITY => r.metric = u32_of(value),
            RTA_TABLE => r.table = u32_of(value)?,
            _ => {}
        }
    }
    Some(r)
}

/// The golden kernel dumps in `tests/fixtures/` (see the README there and
/// `tests/dump_fixtures.rs`, which captured them): a namespace with
/// `flannel.1` (index 2, IPv4 underlay) and `flannel-v6.1` (index 3, IPv6
/// underlay), three remote peers on each as the overlay installs them, and
/// a blackhole, a prohibit (table 100) and an unreachable route.
#[cfg(test)]
pub(crate) mod fixtures {
    /// `RTM_GETNEIGH` dump, `AF_INET`.
    pub(crate) const NEIGH_INET: &[u8] = include_bytes!("../../tests/fixtures/neigh-inet.bin");
    /// `RTM_GETNEIGH` dump, `AF_INET6`.
    pub(crate) const NEIGH_INET6: &[u8] = include_bytes!("../../tests/fixtures/neigh-inet6.bin");
    /// `RTM_GETNEIGH` dump, `AF_BRIDGE`: the FDB.
    pub(crate) const FDB: &[u8] = include_bytes!("../../tests/fixtures/fdb-bridge.bin");
    /// `RTM_GETROUTE` dump, `AF_INET`.
    pub(crate) const ROUTE_INET: &[u8] = include_bytes!("../../tests/fixtures/route-inet.bin");
    /// `RTM_GETROUTE` dump, `AF_INET6`.
    pub(crate) const ROUTE_INET6: &[u8] = include_bytes!("../../tests/fixtures/route-inet6.bin");
    /// `RTM_GETLINK` dump (statistics included): `lo` and the two VXLAN
    /// devices.
    pub(crate) const LINK: &[u8] = include_bytes!("../../tests/fixtures/link.bin");
    /// The dumps a reconcile reads, with their file names.
    pub(crate) const RECONCILE: [(&str, &[u8]); 5] = [
        ("neigh-inet.bin", NEIGH_INET),
        ("neigh-inet6.bin", NEIGH_INET6),
        ("fdb-bridge.bin", FDB),
        ("route-inet.bin", ROUTE_INET),
        ("route-inet6.bin", ROUTE_INET6),
    ];
    /// Every fixture, with its file name.
    pub(crate) const ALL: [(&str, &[u8]); 6] = [
        RECONCILE[0],
        RECONCILE[1],
        RECONCILE[2],
        RECONCILE[3],
        RECONCILE[4],
        ("link.bin", LINK),
    ];
    /// Index of `flannel.1`.
    pub(crate) const V4_DEVICE: u32 = 2;
    /// Index of `flannel-v6.1`.
    pub(crate) const V6_DEVICE: u32 = 3;
}

#[cfg(test)]
mod tests {
    use netlink_packet_core::Emitable;

    use super::*;
    use crate::fdb::FdbEntry;
    use crate::neighbour::Neighbour;
    use crate::route::Route;

    fn bytes(e: &impl Emitable) -> Vec<u8> {
        let mut b = vec![0; e.buffer_len()];
        e.emit(&mut b);
        b
    }

    #[test]
    fn readers_agree_with_messages_netlink_packet_route_emits() {
        let mac = MacAddr::new([2, 0, 0, 0, 0, 7]);
        let n = bytes(&Neighbour::permanent(9, "192.0.2.7".parse().unwrap(), mac).message());
        let got = neighbour(&n).unwrap();
        assert_eq!(
            (got.ifindex, got.state, got.mac),
            (9, NUD_PERMANENT, Some(mac))
        );
        assert_eq!(got.dst, Some("192.0.2.7".parse().unwrap()));

        let f = bytes(
            &FdbEntry::new(9, mac)
                .dst("2001:db8::2".parse().unwrap())
                .message(),
        );
        let got = neighbour(&f).unwrap();
        assert_eq!((got.family, got.flags & NTF_SELF), (AF_BRIDGE, NTF_SELF));
        assert_eq!(got.dst, Some("2001:db8::2".parse().unwrap()));

        let route = Route::new("10.244.2.0/24".parse().unwrap())
            .gateway("10.244.2.0".parse().unwrap())
            .dev(9)
            .onlink()
            .metric(5)
            .table(1000);
        let got = super::route(&bytes(&route.message(false))).unwrap();
        assert_eq!(
            (got.dst_len, got.table, got.oif, got.metric),
            (24, 1000, Some(9), Some(5))
        );
        assert!(got.onlink);
        assert_eq!(got.gateway, route.gateway);
    }

    #[test]
    fn readers_reject_short_or_malformed_input_without_panicking() {
        assert!(neighbour(&[0; 11]).is_none());
        assert!(route(&[0; 5]).is_none());
        // A header, then an attribute claiming more bytes than exist.
        let mut bad = vec![0u8; 12];
        bad[0] = libc::AF_INET as u8;
        bad.extend_from_slice(&[200, 0, 1, 0, 1, 2]);
        assert!(route(&bad).is_some_and(|r| r.gateway.is_none()));
        for len in 0..bad.len() {
            let _ = neighbour(&bad[..len]);
            let _ = route(&bad[..len]);
        }
    }

    /// The payloads of the messages of `type` in a fixture.
    fn payloads(bytes: &[u8], message_type: u16) -> Vec<&[u8]> {
        crate::transport::raw_messages(bytes)
            .filter(|(t, _)| *t == message_type)
            .map(|(_, p)| p)
            .collect()
    }

    #[test]
    fn the_splitter_and_the_reader_agree_with_netlink_packet_route_on_kernel_dumps() {
        // (fixture, messages with NLMSG_DONE, neighbour messages, routes)
        for ((name, bytes), (messages, neighbours, routes)) in fixtures::ALL.iter().zip([
            (4, 3, 0),
            (6, 5, 0),
            (7, 6, 0),
            (10, 0, 9),
            (11, 0, 10),
            (4, 0, 0),
        ]) {
            let split = crate::fuzzing::split_messages(bytes);
            assert_eq!(
                (split.messages, split.parsed),
                (messages, messages),
                "{name}"
            );
            let read = crate::fuzzing::dump_reader(bytes);
            assert_eq!(
                (read.messages, read.neighbours, read.routes),
                (messages, neighbours, routes),
                "{name}"
            );
            // Every byte belongs to a message.
            let last = crate::transport::raw_messages(bytes).last().unwrap();
            assert_eq!(last.0, 3, "{name} ends with NLMSG_DONE");
        }
    }

    #[test]
    fn kernel_fdb_entries_read_as_self_permanent_with_their_underlay_destination() {
        let read: Vec<Neigh> = payloads(fixtures::FDB, RTM_NEWNEIGH)
            .into_iter()
            .map(|p| neighbour(p).unwrap())
            .collect();
        for (n, device, dst) in [
            (2u8, fixtures::V4_DEVICE, "198.51.100.2"),
            (4, fixtures::V4_DEVICE, "198.51.100.4"),
            (3, fixtures::V6_DEVICE, "2001:db8::3"),
        ] {
            let family_byte = if device == fixtures::V4_DEVICE { 4 } else { 6 };
            let mac = MacAddr::new([2, 0, 0, 0, family_byte, n]);
            let entry = read.iter().find(|e| e.mac == Some(mac)).unwrap();
            assert_eq!(
                (entry.family, entry.ifindex, entry.state, entry.flags),
                (AF_BRIDGE, device, NUD_PERMANENT, NTF_SELF)
            );
            assert_eq!(entry.dst, Some(dst.parse().unwrap()));
        }
    }

    #[test]
    fn kernel_neighbour_entries_read_with_address_mac_and_state() {
        let v4: Vec<Neigh> = payloads(fixtures::NEIGH_INET, RTM_NEWNEIGH)
            .into_iter()
            .map(|p| neighbour(p).unwrap())
            .collect();
        assert!(v4.iter().all(|n| n.state == NUD_PERMANENT
            && n.ifindex == fixtures::V4_DEVICE
            && n.family == libc::AF_INET as u8));
        let two = v4
            .iter()
            .find(|n| n.dst == Some("10.244.2.0".parse().unwrap()))
            .unwrap();
        assert_eq!(two.mac, Some(MacAddr::new([2, 0, 0, 0, 4, 2])));
        // IPv6 holds the permanent entries and the kernel's own NOARP
        // entries for the MLD group on each device.
        let v6: Vec<Neigh> = payloads(fixtures::NEIGH_INET6, RTM_NEWNEIGH)
            .into_iter()
            .map(|p| neighbour(p).unwrap())
            .collect();
        let permanent = v6.iter().filter(|n| n.state == NUD_PERMANENT).count();
        assert_eq!((v6.len(), permanent), (5, 3));
        assert!(
            v6.iter()
                .any(|n| n.dst == Some("2001:db8:f0:4::".parse().unwrap())
                    && n.mac == Some(MacAddr::new([2, 0, 0, 0, 6, 4])))
        );
    }

    #[test]
    fn kernel_routes_read_with_gateway_onlink_device_table_and_metric() {
        use crate::overlay::RouteMetric;
        for (bytes, device, peer) in [
            (fixtures::ROUTE_INET, fixtures::V4_DEVICE, "10.244.3.0"),
            (
                fixtures::ROUTE_INET6,
                fixtures::V6_DEVICE,
                "2001:db8:f0:3::",
            ),
        ] {
            let routes: Vec<Rt> = payloads(bytes, RTM_NEWROUTE)
                .into_iter()
                .map(|p| route(p).unwrap())
                .collect();
            let gateway: IpAddr = peer.parse().unwrap();
            let r = routes.iter().find(|r| r.gateway == Some(gateway)).unwrap();
            let cidr = ipnet::IpNet::new(gateway, r.dst_len).unwrap();
            assert_eq!((r.dst, r.oif, r.table), (gateway, Some(device), 254));
            assert!(r.onlink && !r.cloned);
            // The kernel kept the metric the overlay chose.
            assert_eq!(r.metric, Some(RouteMetric::default().metric_for(&cidr)));
        }
        // The prohibit route of table 100 reads its table from RTA_TABLE.
        let in_100: Vec<Rt> = payloads(fixtures::ROUTE_INET, RTM_NEWROUTE)
            .into_iter()
            .filter_map(route)
            .filter(|r| r.table == 100)
            .collect();
        assert_eq!(in_100.len(), 1);
        assert_eq!(in_100[0].dst, "203.0.113.128".parse::<IpAddr>().unwrap());
    }

    #[test]
    fn truncated_kernel_messages_read_as_none_or_fewer_attributes_never_panic() {
        for (_, bytes) in fixtures::ALL {
            for (_, payload) in crate::transport::raw_messages(bytes) {
                for len in 0..payload.len() {
                    let _ = neighbour(&payload[..len]);
                    let _ = route(&payload[..len]);
                    let _ = ifindex(&payload[..len]);
                    let _ = link(&payload[..len]);
                }
            }
            for len in 0..bytes.len() {
                crate::fuzzing::split_messages(&bytes[..len]);
                crate::fuzzing::dump_reader(&bytes[..len]);
            }
        }
    }

    /// An attribute: length, type, value, padding.
    fn nla(kind: u16, value: &[u8]) -> Vec<u8> {
        let len = u16::try_from(4 + value.len()).unwrap();
        let mut b = [len.to_ne_bytes(), kind.to_ne_bytes()].concat();
        b.extend_from_slice(value);
        b.resize((b.len() + 3) & !3, 0);
        b
    }

    /// A link message payload: `ifinfomsg`, then `attributes`.
    fn link_payload(index: u32, flags: u32, attributes: &[Vec<u8>]) -> Vec<u8> {
        let mut b = vec![0u8, 0, 1, 0];
        b.extend_from_slice(&index.to_ne_bytes());
        b.extend_from_slice(&flags.to_ne_bytes());
        b.extend_from_slice(&u32::MAX.to_ne_bytes());
        for a in attributes {
            b.extend_from_slice(a);
        }
        b
    }

    /// What `netlink-packet-route` makes of `payload`, as a `Link`.
    fn theirs(payload: &[u8]) -> Link {
        use netlink_packet_core::Parseable;
        let msg = netlink_packet_route::link::LinkMessage::parse(payload).expect("valid");
        Link::from_message(&msg)
    }

    #[test]
    fn links_read_as_netlink_packet_route_reads_them() {
        let info = |kind: &str, data: &[Vec<u8>]| {
            let mut v = nla(IFLA_INFO_KIND, format!("{kind}\0").as_bytes());
            if !data.is_empty() {
                v.extend(nla(IFLA_INFO_DATA, &data.concat()));
            }
            nla(IFLA_LINKINFO, &v)
        };
        let vxlan = [
            nla(IFLA_VXLAN_ID, &0x0100_0042u32.to_ne_bytes()),
            nla(IFLA_VXLAN_LOCAL, &[192, 0, 2, 1]),
            nla(
                IFLA_VXLAN_GROUP6,
                &[0x20, 1, 0xd, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 9],
            ),
            nla(IFLA_VXLAN_LINK, &3u32.to_ne_bytes()),
            nla(IFLA_VXLAN_PORT, &8472u16.to_be_bytes()),
            nla(IFLA_VXLAN_LEARNING, &[0]),
            nla(IFLA_VXLAN_GBP, &[]),
        ];
        let cases = [
            // A VXLAN device: every field.
            link_payload(
                7,
                IFF_UP | IFF_LOWER_UP,
                &[
                    nla(IFLA_IFNAME, b"vx0\0"),
                    nla(IFLA_MTU, &1450u32.to_ne_bytes()),
                    nla(IFLA_ADDRESS, &[2, 0, 0, 0, 0, 7]),
                    nla(IFLA_MASTER, &4u32.to_ne_bytes()),
                    info("vxlan", &vxlan),
                ],
            ),
            // A veth end: its peer in IFLA_LINK, no VXLAN data read.
            link_payload(
                9,
                IFF_UP,
                &[
                    nla(IFLA_IFNAME, b"veth1\0"),
                    nla(IFLA_LINK, &2u32.to_ne_bytes()),
                    nla(IFLA_MASTER, &0u32.to_ne_bytes()),
                    info("veth", &[]),
                ],
            ),
            // Unspecified VXLAN addresses read as none; a later duplicate
            // wins; an address that is no MAC is none.
            link_payload(
                3,
                0,
                &[
                    nla(IFLA_IFNAME, b"first\0"),
                    nla(IFLA_IFNAME, b"last"),
                    nla(IFLA_ADDRESS, &[0; 4]),
                    info(
                        "vxlan",
                        &[
                            nla(IFLA_VXLAN_LOCAL, &[0; 4]),
                            nla(IFLA_VXLAN_GROUP, &[0; 4]),
                        ],
                    ),
                ],
            ),
            // No attributes at all.
            link_payload(1, 0, &[]),
        ];
        for payload in &cases {
            assert_eq!(
                link(payload).as_ref(),
                Some(&theirs(payload)),
                "{payload:?}"
            );
        }
        let vx = link(&cases[0]).unwrap();
        assert_eq!(
            (vx.index, vx.name.as_str(), vx.mtu, vx.master),
            (7, "vx0", Some(1450), Some(4))
        );
        assert!(vx.up && vx.lower_up);
        let vxlan = vx.vxlan.unwrap();
        assert_eq!(vxlan.vni, Vni::from_u24_masked(0x42));
        assert_eq!(
            (vxlan.port, vxlan.underlay, vxlan.learning, vxlan.gbp),
            (8472, Some(3), false, true)
        );
        assert_eq!(vxlan.remote, Some("2001:db8::9".parse().unwrap()));
        assert_eq!(link(&cases[2]).unwrap().name, "last");

        // Every driver name reads as the same kind.
        for kind in [
            "bridge",
            "veth",
            "vxlan",
            "dummy",
            "macvlan",
            "macvtap",
            "ipvlan",
            "vlan",
            "bond",
            "tun",
            "geneve",
            "wireguard",
            "vrf",
            "gre",
            "ipip",
            "sit",
            "xfrm",
            "netkit",
            "made-up",
        ] {
            let payload = link_payload(5, 0, &[info(kind, &[])]);
            assert_eq!(link(&payload), Some(theirs(&payload)), "{kind}");
        }
    }

    #[test]
    fn kernel_links_read_with_kind_and_vxlan_parameters() {
        let read: Vec<Link> = payloads(fixtures::LINK, RTM_NEWLINK)
            .into_iter()
            .map(|p| {
                let ours = link(p).unwrap();
                assert_eq!(ours, theirs(p));
                ours
            })
            .collect();
        let names: Vec<&str> = read.iter().map(|l| l.name.as_str()).collect();
        assert_eq!(names, ["lo", "flannel.1", "flannel-v6.1"]);
        assert_eq!(read[0].kind, None);
        assert_eq!(crate::fuzzing::dump_reader(fixtures::LINK).links, 3);
        for (l, index, local) in [
            (&read[1], fixtures::V4_DEVICE, "192.0.2.1"),
            (&read[2], fixtures::V6_DEVICE, "2001:db8::1"),
        ] {
            assert_eq!((l.index, l.kind.clone()), (index, Some(LinkKind::Vxlan)));
            assert!(l.up);
            let vxlan = l.vxlan.as_ref().unwrap();
            assert_eq!((vxlan.vni, vxlan.port), (Vni::new(1).unwrap(), 8472));
            assert_eq!(vxlan.local, Some(local.parse().unwrap()));
        }
        assert_eq!(read[1].mac, Some("02:00:00:00:04:01".parse().unwrap()));
    }

    #[test]
    fn links_netlink_packet_route_emits_read_back() {
        let mut msg = crate::link::addressed(&crate::LinkId::Name("br0".into()));
        msg.header.index = 12;
        msg.attributes
            .push(netlink_packet_route::link::LinkAttribute::Mtu(9000));
        msg.attributes
            .push(netlink_packet_route::link::LinkAttribute::LinkInfo(vec![
                netlink_packet_route::link::LinkInfo::Kind(
                    netlink_packet_route::link::InfoKind::Bridge,
                ),
            ]));
        let read = link(&bytes(&msg)).unwrap();
        assert_eq!(read, Link::from_message(&msg));
        assert_eq!(
            (read.name.as_str(), read.kind),
            ("br0", Some(LinkKind::Bridge))
        );
    }

    #[test]
    fn short_or_malformed_links_read_without_panicking() {
        assert!(link(&[0; 15]).is_none());
        let whole = link_payload(
            4,
            IFF_UP,
            &[
                nla(IFLA_IFNAME, b"eth0\0"),
                nla(IFLA_MTU, &[1, 2]),
                nla(IFLA_LINKINFO, &nla(IFLA_INFO_KIND, b"vxlan\0")),
            ],
        );
        // A wrong-size MTU is left unread.
        assert_eq!(link(&whole).unwrap().mtu, None);
        for len in 0..whole.len() {
            let _ = link(&whole[..len]);
        }
        // Invalid UTF-8 in a name is replaced, not refused.
        let odd = link_payload(4, 0, &[nla(IFLA_IFNAME, &[0xff, b'x', 0])]);
        assert_eq!(link(&odd).unwrap().name, "\u{fffd}x");
    }
}
