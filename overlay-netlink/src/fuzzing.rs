//! Agreement checks between this crate's byte-level netlink readers and
//! `netlink-packet-core`/`netlink-packet-route`, shared by the fuzz targets
//! in the repository's `fuzz/` crate and the golden-bytes tests.
//!
//! **Not a stable API**: compiled only with the `fuzzing` feature (and in
//! this crate's own tests), hidden from the documentation, and free to
//! change in any release.
//!
//! Each check takes arbitrary bytes, must not panic except on a
//! disagreement, and returns what it compared, so that tests can tell a
//! check that compared something from one that skipped everything:
//!
//! * [`split_messages`]: the message splitter that the transport and the
//!   notification mirror use splits a datagram into the same messages
//!   (header fields and payload) as `netlink-packet-core`'s `NetlinkBuffer`
//!   walk, and every message `NetlinkMessage::deserialize` accepts has the
//!   header the splitter read;
//! * [`dump_reader`]: for every message of a datagram, the overlay's dump
//!   reader reads the same fields as `netlink-packet-route` parses from the
//!   same bytes, wherever both accept the message (for a link message, the
//!   same [`Link`](crate::Link)); where the dump reader refuses a
//!   neighbour message, `netlink-packet-route` refuses it too.
//!
//! ```
//! # #[cfg(feature = "fuzzing")] {
//! let seen = overlay_netlink::fuzzing::split_messages(&[0; 3]);
//! assert_eq!(seen.messages, 0);
//! # }
//! ```

use std::net::IpAddr;

use netlink_packet_core::{NetlinkBuffer, NetlinkHeader, NetlinkMessage, Parseable};
use netlink_packet_route::RouteNetlinkMessage;
use netlink_packet_route::address::AddressHeader;
use netlink_packet_route::link::{LinkHeader, LinkMessage};
use netlink_packet_route::neighbour::{NeighbourAddress, NeighbourAttribute, NeighbourMessage};
use netlink_packet_route::route::{RouteAddress, RouteAttribute, RouteMessage};
use overlay_core::MacAddr;

use crate::overlay::dump_reader as reader;
use crate::transport::split_message;

/// What a check compared.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Compared {
    /// Messages split off the input.
    pub messages: usize,
    /// Messages that `netlink-packet-route` parsed whole.
    pub parsed: usize,
    /// Neighbour and FDB messages both readers accepted, fields compared.
    pub neighbours: usize,
    /// Route messages both readers accepted, fields compared.
    pub routes: usize,
    /// Link and address messages whose interface index was compared.
    pub interfaces: usize,
    /// Link messages both readers accepted, read as the same [`Link`](crate::Link).
    pub links: usize,
}

/// The header fields of a netlink header, for comparison.
fn fields(h: &NetlinkHeader) -> (u32, u16, u16, u32, u32) {
    (
        h.length,
        h.message_type,
        h.flags,
        h.sequence_number,
        h.port_number,
    )
}

/// Check the message splitter against `netlink-packet-core` on `data`; see
/// the [module docs](self).
pub fn split_messages(data: &[u8]) -> Compared {
    let mut ours = Vec::new();
    let mut rest = data;
    while let Some((header, payload, whole, next)) = split_message(rest) {
        assert_eq!(whole.len(), header.length as usize);
        assert_eq!(whole.get(16..), Some(payload));
        assert!(next.len() < rest.len(), "the splitter made no progress");
        ours.push((header, payload, whole));
        rest = next;
    }

    let mut theirs = Vec::new();
    let mut offset = 0;
    while let Some(tail) = data.get(offset..) {
        let Ok(buffer) = NetlinkBuffer::new_checked(tail) else {
            break;
        };
        let len = buffer.length() as usize;
        let Ok(header) = NetlinkHeader::parse(&buffer) else {
            break;
        };
        theirs.push((header, buffer.payload()));
        offset += (len + 3) & !3;
    }

    assert_eq!(ours.len(), theirs.len(), "number of messages");
    let mut compared = Compared::default();
    for ((header, payload, whole), (expected, expected_payload)) in ours.iter().zip(&theirs) {
        assert_eq!(fields(header), fields(expected));
        assert_eq!(*payload, *expected_payload);
        compared.messages += 1;
        if let Ok(message) = NetlinkMessage::<RouteNetlinkMessage>::deserialize(whole) {
            assert_eq!(fields(header), fields(&message.header));
            compared.parsed += 1;
        }
    }
    compared
}

/// The dump reader's reading of an address attribute, applied to
/// `netlink-packet-route`'s value of one of another family.
fn ip_of(bytes: &[u8]) -> Option<IpAddr> {
    match bytes.len() {
        4 => <[u8; 4]>::try_from(bytes).ok().map(IpAddr::from),
        16 => <[u8; 16]>::try_from(bytes).ok().map(IpAddr::from),
        _ => None,
    }
}

/// What `netlink-packet-route` makes of a neighbour message, in the dump
/// reader's terms.
fn their_neighbour(m: &NeighbourMessage) -> reader::Neigh {
    let mut n = reader::Neigh {
        family: u8::from(m.header.family),
        ifindex: m.header.ifindex,
        state: u16::from(m.header.state),
        flags: m.header.flags.bits(),
        dst: None,
        mac: None,
    };
    for attribute in &m.attributes {
        match attribute {
            NeighbourAttribute::Destination(NeighbourAddress::Inet(a)) => {
                n.dst = Some(IpAddr::V4(*a));
            }
            NeighbourAttribute::Destination(NeighbourAddress::Inet6(a)) => {
                n.dst = Some(IpAddr::V6(*a));
            }
            NeighbourAttribute::Destination(NeighbourAddress::Other(v)) => n.dst = ip_of(v),
            NeighbourAttribute::LinkLayerAddress(v) => {
                n.mac = <[u8; 6]>::try_from(v.as_slice()).ok().map(MacAddr::new);
            }
            _ => {}
        }
    }
    n
}

/// What `netlink-packet-route` makes of a route message, in the dump
/// reader's terms; `None` for families the dump reader does not read.
fn their_route(m: &RouteMessage) -> Option<reader::Rt> {
    let unspecified = match i32::from(u8::from(m.header.address_family)) {
        libc::AF_INET => IpAddr::from([0u8; 4]),
        libc::AF_INET6 => IpAddr::from([0u8; 16]),
        _ => return None,
    };
    let flags = m.header.flags.bits();
    let mut r = reader::Rt {
        dst: unspecified,
        dst_len: m.header.destination_prefix_length,
        table: u32::from(m.header.table),
        onlink: flags & reader::RTNH_F_ONLINK != 0,
        cloned: flags & reader::RTM_F_CLONED != 0,
        oif: None,
        gateway: None,
        metric: None,
    };
    let address = |a: &RouteAddress| match a {
        RouteAddress::Inet(v) => Some(IpAddr::V4(*v)),
        RouteAddress::Inet6(v) => Some(IpAddr::V6(*v)),
        RouteAddress::Other(v) => ip_of(v),
        _ => None,
    };
    for attribute in &m.attributes {
        match attribute {
            RouteAttribute::Destination(a) => r.dst = address(a)?,
            RouteAttribute::Oif(i) => r.oif = Some(*i),
            RouteAttribute::Gateway(a) => r.gateway = address(a),
            RouteAttribute::Priority(p) => r.metric = Some(*p),
            RouteAttribute::Table(t) => r.table = *t,
            _ => {}
        }
    }
    Some(r)
}

/// Check the dump reader against `netlink-packet-route` on every message of
/// `data`; see the [module docs](self).
pub fn dump_reader(data: &[u8]) -> Compared {
    let mut compared = Compared::default();
    let mut rest = data;
    while let Some((header, payload, _, next)) = split_message(rest) {
        rest = next;
        compared.messages += 1;
        match header.message_type {
            reader::RTM_NEWNEIGH | reader::RTM_DELNEIGH => {
                let ours = reader::neighbour(payload);
                match NeighbourMessage::parse(payload) {
                    Ok(theirs) => {
                        compared.parsed += 1;
                        let ours = ours.expect("netlink-packet-route read a neighbour message");
                        assert_eq!(ours, their_neighbour(&theirs));
                        compared.neighbours += 1;
                    }
                    Err(_) => assert!(payload.len() >= 12 || ours.is_none()),
                }
            }
            reader::RTM_NEWROUTE | reader::RTM_DELROUTE => {
                let ours = reader::route(payload);
                if let Ok(theirs) = RouteMessage::parse(payload) {
                    compared.parsed += 1;
                    if let Some(expected) = their_route(&theirs) {
                        let ours = ours.expect("netlink-packet-route read an IP route message");
                        assert_eq!(ours, expected);
                        compared.routes += 1;
                    }
                }
            }
            reader::RTM_NEWLINK | reader::RTM_DELLINK => {
                if let Ok(theirs) = LinkHeader::parse(payload) {
                    assert_eq!(reader::ifindex(payload), Some(theirs.index));
                    compared.interfaces += 1;
                }
                if let Ok(theirs) = LinkMessage::parse(payload) {
                    compared.parsed += 1;
                    let ours = reader::link(payload).expect("netlink-packet-route read a link");
                    assert_eq!(ours, crate::Link::from_message(&theirs));
                    compared.links += 1;
                }
            }
            reader::RTM_NEWADDR | reader::RTM_DELADDR => {
                if let Ok(theirs) = AddressHeader::parse(payload) {
                    assert_eq!(reader::ifindex(payload), Some(theirs.index));
                    compared.interfaces += 1;
                }
            }
            _ => {}
        }
    }
    compared
}
