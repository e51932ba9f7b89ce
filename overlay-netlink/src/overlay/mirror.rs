//! The notification mirror: the overlay's copy of the kernel state of its
//! VXLAN device, kept current by the kernel's netlink notifications.
//!
//! [`absorb`] takes one message (a dump entry or a notification) into a
//! [`Current`] and says whether the copy still follows the kernel; it is
//! pure, and tested with emitted messages. [`Watch`] is the subscription
//! (a socket subscribed to [`MIRROR_GROUPS`], opened beside a reconcile);
//! [`Watch::follow`] reads the queued notifications into the copy.

use std::fmt;
use std::io;
use std::os::fd::AsFd;

use ipnet::IpNet;
use netlink_packet_core::NLM_F_REPLACE;
use netlink_sys::Socket;
use overlay_core::MacAddr;

use super::dump_reader as reader;
use super::plan::{Current, RouteSeen};
use crate::error::Result;
use crate::events::{
    self, RTMGRP_IPV4_IFADDR, RTMGRP_IPV4_ROUTE, RTMGRP_IPV6_IFADDR, RTMGRP_IPV6_ROUTE,
    RTMGRP_LINK, RTMGRP_NEIGH,
};
use crate::handle::Handle;
use crate::route::TABLE_MAIN;
use crate::transport::{recv_buffer, recv_queued, split_message};

/// Where a message taken into [`Current`] comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Source {
    /// A dump: lists every entry once.
    Dump,
    /// A multicast notification of one change, with its `NLM_F_*` flags.
    Notification {
        /// The message's `NLM_F_*` flags.
        flags: u16,
    },
}

/// The multicast groups the mirror follows: neighbours and FDB entries,
/// routes, and links and addresses (to notice the changes the kernel makes
/// without notifying them, such as flushing IPv4 routes on link down).
pub(super) const MIRROR_GROUPS: u32 = RTMGRP_LINK
    | RTMGRP_NEIGH
    | RTMGRP_IPV4_IFADDR
    | RTMGRP_IPV6_IFADDR
    | RTMGRP_IPV4_ROUTE
    | RTMGRP_IPV6_ROUTE;

/// The overlay's copy of the kernel state of its VXLAN device, kept current
/// by the notifications of a subscription; shared by the clones of an
/// [`Overlay`](super::Overlay) under a lock, which also serialises their reconciles.
pub(super) struct Mirror {
    /// The subscription.
    pub(super) watch: Watch,
    /// The kernel state, while notifications keep it exact.
    pub(super) state: Option<Current>,
}

impl fmt::Debug for Mirror {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let watch = match self.watch {
            Watch::Off => "off",
            Watch::Idle => "idle",
            Watch::Opening(_) => "opening",
            Watch::Open(_) => "open",
        };
        f.debug_struct("Mirror")
            .field("watch", &watch)
            .field("valid", &self.state.is_some())
            .finish()
    }
}

/// The mirror's subscription.
pub(super) enum Watch {
    /// The handle's transport is not a kernel socket: no mirror, every
    /// reconcile dumps.
    Off,
    /// Not subscribed; the next reconcile subscribes.
    Idle,
    /// The socket is being opened in the overlay's namespace on a thread.
    Opening(tokio::sync::oneshot::Receiver<Result<Socket>>),
    /// Subscribed.
    Open(Monitor),
}

/// A socket subscribed to [`MIRROR_GROUPS`] in the overlay's namespace,
/// read without waiting.
pub(super) struct Monitor {
    socket: Socket,
    buf: Vec<u8>,
}

impl Monitor {
    fn new(socket: Socket) -> Self {
        Monitor {
            socket,
            buf: recv_buffer(),
        }
    }

    /// Read every queued notification without waiting and pass each
    /// message (type, flags, payload) to `each`. An error of kind
    /// `InvalidData` means a datagram did not parse (it is consumed);
    /// `ENOBUFS` that notifications were lost; in both cases the rest is
    /// still queued.
    fn drain(&mut self, mut each: impl FnMut(u16, u16, &[u8])) -> io::Result<()> {
        loop {
            let len = match recv_queued(self.socket.as_fd(), &mut self.buf) {
                Ok(len) => len,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) => return Err(e),
            };
            let mut rest = &self.buf[..len];
            while let Some((header, payload, _, next)) = split_message(rest) {
                each(header.message_type, header.flags, payload);
                rest = next;
            }
            if !rest.is_empty() {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "a notification ends in an incomplete netlink message",
                ));
            }
        }
    }
}

/// Take one message into `current`: an entry of a dump, or a
/// notification of a change. The dumps of a reconcile hold thousands of
/// entries of which a few fields matter, so messages are read straight
/// from the bytes (see [`reader`]) instead of being parsed whole.
///
/// Returns `false` when a notification leaves `current` unable to
/// follow the kernel, so that the state must be dumped again: a link or
/// address change on the device (the kernel flushes IPv4 routes on link
/// down and on some address changes without notifying them), a message
/// that does not parse, an FDB notification for a MAC with other
/// destinations (the kernel sends the same one whether `replace`
/// changed the first destination or `append` added one), or a route
/// notification that adds a second route under the key (destination and
/// metric) of one held.
pub(super) fn absorb(
    vxlan: u32,
    current: &mut Current,
    source: Source,
    message_type: u16,
    payload: &[u8],
) -> bool {
    let notified = matches!(source, Source::Notification { .. });
    match message_type {
        reader::RTM_NEWNEIGH | reader::RTM_DELNEIGH => {
            let Some(n) = reader::neighbour(payload) else {
                return !notified;
            };
            if n.ifindex != vxlan || n.flags & reader::NTF_PROXY != 0 {
                return true;
            }
            let new = message_type == reader::RTM_NEWNEIGH;
            let permanent = n.state == reader::NUD_PERMANENT;
            if n.family == reader::AF_BRIDGE {
                let (Some(mac), Some(dst)) = (n.mac, n.dst) else {
                    return true;
                };
                if n.flags & reader::NTF_SELF == 0 || mac == MacAddr::ZERO {
                    return true;
                }
                if !new {
                    if let Some(dsts) = current.fdb.get_mut(&mac) {
                        dsts.retain(|(d, _)| *d != dst);
                        if dsts.is_empty() {
                            current.fdb.remove(&mac);
                        }
                    }
                    return true;
                }
                let dsts = current.fdb.entry(mac).or_default();
                if !notified || dsts.is_empty() {
                    dsts.push((dst, permanent));
                } else if let Some(seen) = dsts.iter_mut().find(|(d, _)| *d == dst) {
                    seen.1 = permanent;
                } else {
                    return false;
                }
            } else if let Some(ip) = n.dst {
                if new {
                    current.neighbours.insert(ip, (n.mac, permanent));
                } else {
                    current.neighbours.remove(&ip);
                }
            }
            true
        }
        reader::RTM_NEWROUTE | reader::RTM_DELROUTE => {
            let Some(r) = reader::route(payload) else {
                return !notified;
            };
            let Ok(destination) = IpNet::new(r.dst, r.dst_len) else {
                return !notified;
            };
            if r.table != TABLE_MAIN || r.cloned {
                return true;
            }
            let ours = r.oif == Some(vxlan) && r.gateway.is_some();
            let seen = RouteSeen {
                gateway: r.gateway,
                onlink: r.onlink,
                metric: r.metric,
            };
            let Source::Notification { flags } = source else {
                // A dump lists each route once.
                if ours {
                    current.routes.entry(destination).or_default().push(seen);
                }
                return true;
            };
            let held = current.routes.entry(destination).or_default();
            let same_key = held.iter().position(|s| s.key() == seen.key());
            let new = message_type == reader::RTM_NEWROUTE;
            let keep = match (new, same_key) {
                // A deleted route: ours goes; one without a single
                // device (multipath) under our key cannot be placed.
                (false, Some(i)) => match r.oif {
                    Some(oif) if oif == vxlan => {
                        held.remove(i);
                        true
                    }
                    Some(_) => true,
                    None => false,
                },
                (false, None) => true,
                // A replacing route takes the key, ours or not.
                (true, i) if flags & NLM_F_REPLACE != 0 => {
                    match (i, ours) {
                        (Some(i), true) => held[i] = seen,
                        (Some(i), false) => {
                            held.remove(i);
                        }
                        (None, true) => held.push(seen),
                        (None, false) => {}
                    }
                    true
                }
                // A created route: new under its key, or the one held
                // again (a notification replayed after a dump). Anything
                // else adds a second route under a key held (prepend,
                // append, multipath), which one entry per key cannot
                // follow.
                (true, None) => {
                    if ours {
                        held.push(seen);
                    }
                    true
                }
                (true, Some(i)) => ours && held[i] == seen,
            };
            if held.is_empty() {
                current.routes.remove(&destination);
            }
            keep
        }
        reader::RTM_NEWLINK | reader::RTM_DELLINK | reader::RTM_NEWADDR | reader::RTM_DELADDR => {
            reader::ifindex(payload).is_some_and(|index| index != vxlan)
        }
        _ => true,
    }
}

impl Watch {
    /// Read the queued notifications into `state` (or drop them when it is
    /// `None`). Returns whether `state` still follows the kernel: `false`
    /// without a subscription, when a notification could not be followed
    /// (see [`absorb`]), when notifications were lost (`ENOBUFS`) or did not
    /// parse, and when the socket failed (the subscription then closes, and
    /// the next reconcile subscribes again).
    pub(super) fn follow(&mut self, vxlan: u32, mut state: Option<&mut Current>) -> bool {
        let Watch::Open(monitor) = self else {
            return false;
        };
        let mut exact = state.is_some();
        loop {
            let drained = monitor.drain(|message_type, flags, payload| {
                if let Some(current) = state.as_deref_mut() {
                    exact &= absorb(
                        vxlan,
                        current,
                        Source::Notification { flags },
                        message_type,
                        payload,
                    );
                }
            });
            match drained {
                Ok(()) => return exact,
                // Lost or unreadable notifications; the rest is still queued.
                Err(e)
                    if e.raw_os_error() == Some(libc::ENOBUFS)
                        || e.kind() == io::ErrorKind::InvalidData =>
                {
                    exact = false;
                }
                Err(_) => {
                    *self = Watch::Idle;
                    return false;
                }
            }
        }
    }

    /// Advance the subscription: start it when there is none (in the
    /// background when the socket must be opened in another namespace),
    /// or take the socket whose opening the previous reconcile started.
    pub(super) async fn advance(&mut self, handle: &Handle) {
        const OP: &str = "subscribe to overlay state changes";
        match self {
            Watch::Idle => {
                *self = match handle.netns().cloned() {
                    // Opening a socket in the calling thread's namespace is
                    // cheap: subscribe now.
                    None => match events::subscribe(None, MIRROR_GROUPS, OP) {
                        Ok(socket) => Watch::Open(Monitor::new(socket)),
                        Err(_) => Watch::Idle,
                    },
                    // In another namespace it takes a thread: open the
                    // socket beside this reconcile, and use it from the next.
                    Some(netns) => {
                        let (opened, socket) = tokio::sync::oneshot::channel();
                        let spawned = std::thread::Builder::new()
                            .name("overlay-watch".into())
                            .spawn(move || {
                                let _ =
                                    opened.send(events::subscribe(Some(&netns), MIRROR_GROUPS, OP));
                            });
                        match spawned {
                            Ok(_) => Watch::Opening(socket),
                            Err(_) => Watch::Idle,
                        }
                    }
                };
            }
            Watch::Opening(socket) => {
                let opened = socket.await;
                *self = match opened {
                    Ok(Ok(socket)) => Watch::Open(Monitor::new(socket)),
                    // Could not subscribe: dump, and try again next time.
                    Ok(Err(_)) | Err(_) => Watch::Idle,
                };
            }
            Watch::Off | Watch::Open(_) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use std::net::IpAddr;

    use netlink_packet_core::NLM_F_CREATE;

    use super::*;
    use crate::overlay::RemotePeer;
    use crate::overlay::RouteMetric;
    use crate::overlay::plan::Planner;

    fn emitted(message: &impl netlink_packet_core::Emitable) -> Vec<u8> {
        let mut bytes = vec![0; message.buffer_len()];
        message.emit(&mut bytes);
        bytes
    }

    const OV: Planner = Planner {
        vxlan: 5,
        metric: RouteMetric::Spread {
            base: 1024,
            span: 4096,
        },
    };

    fn peer(n: u8) -> RemotePeer {
        RemotePeer::new(
            IpAddr::from([198, 51, 100, n]),
            MacAddr::new([2, 0, 0, 0, 0, n]),
            IpAddr::from([10, 244, n, 0]),
        )
        .pod_cidr(format!("10.244.{n}.0/24").parse().unwrap())
    }

    const NOTIFIED: Source = Source::Notification {
        flags: NLM_F_CREATE,
    };
    const REPLACED: Source = Source::Notification {
        flags: NLM_F_REPLACE,
    };

    #[test]
    fn notifications_add_and_remove_entries_and_replays_change_nothing() {
        let p = peer(1);
        let cidr = p.pod_cidrs[0];
        let neigh = emitted(&OV.neighbour(&p).message());
        let fdb = emitted(&OV.fdb(&p).message());
        let route = emitted(&OV.route(cidr, p.vtep_ip).message(false));
        let mut c = Current::default();
        for _ in 0..2 {
            assert!(absorb(5, &mut c, NOTIFIED, reader::RTM_NEWNEIGH, &neigh));
            assert!(absorb(5, &mut c, NOTIFIED, reader::RTM_NEWNEIGH, &fdb));
            assert!(absorb(5, &mut c, NOTIFIED, reader::RTM_NEWROUTE, &route));
        }
        assert_eq!(c.neighbours[&p.vtep_ip], (Some(p.vtep_mac), true));
        assert_eq!(c.fdb[&p.vtep_mac], vec![(p.underlay, true)]);
        assert_eq!(c.routes[&cidr].len(), 1);
        assert_eq!(c.routes[&cidr][0].gateway, Some(p.vtep_ip));
        // The same message as a deletion removes each entry.
        assert!(absorb(5, &mut c, NOTIFIED, reader::RTM_DELNEIGH, &neigh));
        assert!(absorb(5, &mut c, NOTIFIED, reader::RTM_DELNEIGH, &fdb));
        assert!(absorb(5, &mut c, NOTIFIED, reader::RTM_DELROUTE, &route));
        assert!(c.neighbours.is_empty() && c.fdb.is_empty() && c.routes.is_empty());
        // Entries of other devices are not the overlay's.
        assert!(absorb(6, &mut c, NOTIFIED, reader::RTM_NEWNEIGH, &neigh));
        assert!(absorb(6, &mut c, NOTIFIED, reader::RTM_NEWROUTE, &route));
        assert!(c.neighbours.is_empty() && c.routes.is_empty());
    }

    #[test]
    fn a_route_replaced_by_one_on_another_device_leaves_the_mirror() {
        let p = peer(1);
        let cidr = p.pod_cidrs[0];
        let ours = OV.route(cidr, p.vtep_ip);
        let mut c = Current::default();
        assert!(absorb(
            5,
            &mut c,
            NOTIFIED,
            reader::RTM_NEWROUTE,
            &emitted(&ours.message(false))
        ));
        let mut elsewhere = ours.clone();
        elsewhere.dev = Some(9);
        let elsewhere = emitted(&elsewhere.message(false));
        assert!(absorb(
            5,
            &mut c,
            REPLACED,
            reader::RTM_NEWROUTE,
            &elsewhere
        ));
        assert!(c.routes.is_empty());
        // Its deletion concerns no route of the overlay.
        assert!(absorb(
            5,
            &mut c,
            NOTIFIED,
            reader::RTM_DELROUTE,
            &elsewhere
        ));
    }

    #[test]
    fn notifications_the_mirror_cannot_follow_invalidate_it() {
        let p = peer(1);
        let mut c = Current::default();
        assert!(absorb(
            5,
            &mut c,
            NOTIFIED,
            reader::RTM_NEWNEIGH,
            &emitted(&OV.fdb(&p).message())
        ));
        // Another destination for the MAC: `replace` of the first one or
        // `append`, the kernel sends the same notification.
        let mut moved = p.clone();
        moved.underlay = IpAddr::from([198, 51, 100, 77]);
        let moved = emitted(&OV.fdb(&moved).message());
        assert!(!absorb(5, &mut c, NOTIFIED, reader::RTM_NEWNEIGH, &moved));
        // In a dump it is simply a second destination.
        assert!(absorb(
            5,
            &mut c,
            Source::Dump,
            reader::RTM_NEWNEIGH,
            &moved
        ));
        assert_eq!(c.fdb[&p.vtep_mac].len(), 2);

        // A second route under the key of one held (prepend, append).
        let cidr = p.pod_cidrs[0];
        let route = OV.route(cidr, p.vtep_ip);
        assert!(absorb(
            5,
            &mut c,
            NOTIFIED,
            reader::RTM_NEWROUTE,
            &emitted(&route.message(false))
        ));
        let mut second = route.clone();
        second.gateway = Some(IpAddr::from([10, 244, 1, 9]));
        let second = emitted(&second.message(false));
        assert!(!absorb(5, &mut c, NOTIFIED, reader::RTM_NEWROUTE, &second));
        // Replacing it is fine.
        assert!(absorb(5, &mut c, REPLACED, reader::RTM_NEWROUTE, &second));
        assert_eq!(
            c.routes[&cidr][0].gateway,
            Some(IpAddr::from([10, 244, 1, 9]))
        );

        // Link and address changes of the device; not of another one.
        let mut link = netlink_packet_route::link::LinkMessage::default();
        link.header.index = 5;
        let link_5 = emitted(&link);
        link.header.index = 6;
        let link_6 = emitted(&link);
        for kind in [reader::RTM_NEWLINK, reader::RTM_DELLINK] {
            assert!(!absorb(5, &mut c, NOTIFIED, kind, &link_5));
            assert!(absorb(5, &mut c, NOTIFIED, kind, &link_6));
        }
        let mut addr = netlink_packet_route::address::AddressMessage::default();
        addr.header.index = 5;
        for kind in [reader::RTM_NEWADDR, reader::RTM_DELADDR] {
            assert!(!absorb(5, &mut c, NOTIFIED, kind, &emitted(&addr)));
        }
        // A notification too short to read.
        for kind in [
            reader::RTM_NEWNEIGH,
            reader::RTM_DELROUTE,
            reader::RTM_NEWLINK,
        ] {
            assert!(!absorb(5, &mut c, NOTIFIED, kind, &[0; 3]));
        }
    }

    /// What reconcile would read from the golden kernel dumps for `device`.
    fn current_from_fixtures(device: u32) -> Current {
        use crate::overlay::dump_reader::fixtures;
        let mut c = Current::default();
        for (_, bytes) in fixtures::RECONCILE {
            for (message_type, payload) in crate::transport::raw_messages(bytes) {
                assert!(absorb(device, &mut c, Source::Dump, message_type, payload));
            }
        }
        c
    }

    #[test]
    fn the_kernel_state_of_the_golden_dumps_is_exactly_the_peers_installed() {
        use crate::overlay::dump_reader::fixtures;
        use crate::overlay::plan::Wanted;
        let planner = |vxlan| Planner {
            vxlan,
            metric: RouteMetric::default(),
        };
        let v4: Vec<RemotePeer> = (2..=4)
            .map(|n| {
                RemotePeer::new(
                    IpAddr::from([198, 51, 100, n]),
                    MacAddr::new([2, 0, 0, 0, 4, n]),
                    IpAddr::from([10, 244, n, 0]),
                )
                .pod_cidr(format!("10.244.{n}.0/24").parse().unwrap())
            })
            .collect();
        let v6: Vec<RemotePeer> = (2..=4)
            .map(|n| {
                RemotePeer::new(
                    format!("2001:db8::{n}").parse().unwrap(),
                    MacAddr::new([2, 0, 0, 0, 6, n]),
                    format!("2001:db8:f0:{n}::").parse().unwrap(),
                )
                .pod_cidr(format!("2001:db8:f0:{n}::/64").parse().unwrap())
            })
            .collect();
        for (device, peers) in [(fixtures::V4_DEVICE, &v4), (fixtures::V6_DEVICE, &v6)] {
            let current = current_from_fixtures(device);
            // The kernel's NOARP multicast neighbours are not permanent, and
            // the blackhole, prohibit and local routes are not the overlay's.
            assert_eq!(
                (current.fdb.len(), current.routes.len()),
                (3, 3),
                "device {device}"
            );
            let wanted = Wanted::new("test", peers).unwrap();
            let plan = planner(device).plan(peers, &wanted, &current);
            assert!(
                plan.changes.is_empty(),
                "device {device}: {:?}",
                plan.report
            );
            assert_eq!(plan.report.unchanged.len(), 3);
        }
    }
}
