//! A stream of link events (created, changed, deleted) for one namespace.

use std::collections::{HashSet, VecDeque};

use netlink_packet_core::NetlinkPayload;
use netlink_packet_route::RouteNetlinkMessage;
use netlink_sys::Socket;
use tokio::io::unix::AsyncFd;

use crate::error::{Error, Result};
use crate::handle::Handle;
use crate::link::Link;
use crate::netns::Netns;
use crate::transport::{open_socket, parse_datagram, recv_buffer, recv_datagram, register};

/// `RTMGRP_LINK`: the multicast group of link notifications.
pub(crate) const RTMGRP_LINK: u32 = 0x1;
/// `RTMGRP_NEIGH`: neighbour notifications, and bridge FDB ones (`AF_BRIDGE`,
/// the VXLAN device's own table included).
pub(crate) const RTMGRP_NEIGH: u32 = 0x4;
/// `RTMGRP_IPV4_IFADDR`: IPv4 address notifications.
pub(crate) const RTMGRP_IPV4_IFADDR: u32 = 0x10;
/// `RTMGRP_IPV4_ROUTE`: IPv4 route notifications.
pub(crate) const RTMGRP_IPV4_ROUTE: u32 = 0x40;
/// `RTMGRP_IPV6_IFADDR`: IPv6 address notifications.
pub(crate) const RTMGRP_IPV6_IFADDR: u32 = 0x100;
/// `RTMGRP_IPV6_ROUTE`: IPv6 route notifications.
pub(crate) const RTMGRP_IPV6_ROUTE: u32 = 0x400;

/// How errors name a namespace: `netns`, or the calling thread's.
fn namespace_object(netns: Option<&Netns>) -> String {
    match netns {
        Some(ns) => format!("in network namespace {}", ns.path().display()),
        None => "in the calling thread's network namespace".to_string(),
    }
}

/// Open a `NETLINK_ROUTE` socket subscribed to the multicast `groups`
/// (`RTMGRP_*` bits) in `netns`, or in the calling thread's namespace for
/// `None`. The socket is non-blocking, has the transport's large receive
/// buffer (`NETLINK_NO_ENOBUFS` is not set: an overflow is reported) and is
/// not registered with any runtime. With a namespace it is opened on a
/// short-lived thread (see [`Netns::run`]), so this blocks briefly.
pub(crate) fn subscribe(
    netns: Option<&Netns>,
    groups: u32,
    operation: &'static str,
) -> Result<Socket> {
    match netns {
        Some(ns) => ns.open_socket(groups, operation),
        None => open_socket(groups).map_err(|source| Error::Transport {
            operation,
            object: namespace_object(None),
            source: crate::error::TransportError::Io {
                operation: "open",
                source,
            },
        }),
    }
}

/// A change to the links of a namespace.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum LinkEvent {
    /// A link appeared (created, or moved into the namespace).
    Created(Link),
    /// A known link changed (flags, MTU, master, ...).
    Changed(Link),
    /// A link disappeared (deleted, or moved out of the namespace).
    Deleted(Link),
}

/// Link events of one namespace, from a socket subscribed to `RTMGRP_LINK`.
///
/// Links that exist when the subscription starts are known; a notification
/// for an unknown index is [`LinkEvent::Created`], for a known one
/// [`LinkEvent::Changed`].
///
/// ```no_run
/// # async fn demo(handle: overlay_netlink::Handle) -> overlay_netlink::Result<()> {
/// use overlay_netlink::LinkEvent;
/// let mut events = handle.link_events().await?;
/// while let Ok(event) = events.next().await {
///     if let LinkEvent::Deleted(link) = event {
///         println!("{} is gone", link.name);
///     }
/// }
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct LinkEvents {
    fd: AsyncFd<Socket>,
    buf: Vec<u8>,
    known: HashSet<u32>,
    queue: VecDeque<LinkEvent>,
}

impl Handle {
    /// Subscribe to link events of this handle's namespace.
    ///
    /// The subscription opens its own socket (in the namespace of
    /// [`Handle::netns`], or the calling thread's for other handles), then
    /// lists the existing links.
    pub async fn link_events(&self) -> Result<LinkEvents> {
        const OP: &str = "subscribe to link events";
        let socket = subscribe(self.netns(), RTMGRP_LINK, OP)?;
        let fd = register(socket).map_err(|source| Error::Transport {
            operation: OP,
            object: namespace_object(self.netns()),
            source,
        })?;
        let known = self
            .link()
            .list()
            .await?
            .into_iter()
            .map(|l| l.index)
            .collect();
        Ok(LinkEvents {
            fd,
            buf: recv_buffer(),
            known,
            queue: VecDeque::new(),
        })
    }
}

impl LinkEvents {
    /// Wait for the next event. An error means the socket failed (for
    /// example its buffer overflowed, `ENOBUFS`); list the links again and
    /// resubscribe.
    pub async fn next(&mut self) -> Result<LinkEvent> {
        loop {
            if let Some(event) = self.queue.pop_front() {
                return Ok(event);
            }
            let map = |source| Error::Transport {
                operation: "receive link events",
                object: String::new(),
                source,
            };
            let len = recv_datagram(&self.fd, &mut self.buf).await.map_err(map)?;
            for message in parse_datagram(&self.buf[..len]).map_err(map)? {
                let NetlinkPayload::InnerMessage(inner) = message.payload else {
                    continue;
                };
                let event = match inner {
                    RouteNetlinkMessage::NewLink(m) => {
                        let link = Link::from_message(&m);
                        if self.known.insert(link.index) {
                            LinkEvent::Created(link)
                        } else {
                            LinkEvent::Changed(link)
                        }
                    }
                    RouteNetlinkMessage::DelLink(m) => {
                        let link = Link::from_message(&m);
                        self.known.remove(&link.index);
                        LinkEvent::Deleted(link)
                    }
                    _ => continue,
                };
                self.queue.push_back(event);
            }
        }
    }

    /// Move the subscription onto a task and receive its events on a
    /// channel of `capacity`. The task ends when the receiver is dropped or
    /// after delivering an error.
    pub fn into_receiver(
        mut self,
        capacity: usize,
    ) -> tokio::sync::mpsc::Receiver<Result<LinkEvent>> {
        let (tx, rx) = tokio::sync::mpsc::channel(capacity.max(1));
        tokio::spawn(async move {
            loop {
                let event = tokio::select! {
                    event = self.next() => event,
                    () = tx.closed() => return,
                };
                let failed = event.is_err();
                if tx.send(event).await.is_err() || failed {
                    return;
                }
            }
        });
        rx
    }
}
