//! [`Handle`]: the entry point to the operations.

use std::sync::Arc;

use netlink_packet_core::{NLM_F_ACK, NLM_F_DUMP};
use netlink_packet_route::RouteNetlinkMessage;

use crate::address::AddressOps;
use crate::batch::Batch;
use crate::error::{Error, ErrorKind, KernelError, Result, TransportError};
use crate::fdb::FdbOps;
use crate::link::LinkOps;
use crate::neighbour::NeighbourOps;
use crate::netns::Netns;
use crate::route::RouteOps;
use crate::transport::{RawReply, Reply, Request, SocketTransport, Transport};

/// How many times a dump interrupted by a concurrent change is retried.
const DUMP_RETRIES: usize = 5;

/// A netlink handle bound to one network namespace.
///
/// Operations are grouped: [`Handle::link`], [`Handle::address`],
/// [`Handle::route`], [`Handle::neighbour`] and [`Handle::fdb`]. A handle is
/// cheap to clone; clones share one socket, which closes when the last clone
/// is dropped. Requests from clones are serialised on the socket.
///
/// ```no_run
/// use overlay_netlink::Handle;
///
/// # async fn demo() -> overlay_netlink::Result<()> {
/// let handle = Handle::new()?; // the calling thread's namespace
/// for link in handle.link().list().await? {
///     println!("{} {} up={}", link.index, link.name, link.up);
/// }
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct Handle {
    transport: Arc<dyn Transport>,
    netns: Option<Netns>,
}

impl Handle {
    /// A handle on a new socket in the calling thread's namespace.
    ///
    /// Must be called inside a tokio runtime. To work in another namespace,
    /// use [`Netns::handle`].
    pub fn new() -> Result<Handle> {
        let transport = SocketTransport::new().map_err(|source| Error::Transport {
            operation: "open netlink socket",
            object: "in the current namespace".into(),
            source,
        })?;
        Ok(Handle::from_parts(Arc::new(transport), None))
    }

    /// A handle over any [`Transport`], for example a
    /// [`FakeTransport`](crate::FakeTransport) in unit tests.
    pub fn with_transport(transport: Arc<dyn Transport>) -> Handle {
        Handle::from_parts(transport, None)
    }

    pub(crate) fn from_parts(transport: Arc<dyn Transport>, netns: Option<Netns>) -> Handle {
        Handle { transport, netns }
    }

    /// The namespace this handle was opened in, when opened with
    /// [`Netns::handle`].
    pub fn netns(&self) -> Option<&Netns> {
        self.netns.as_ref()
    }

    /// Whether this handle's requests reach the kernel through a real
    /// netlink socket ([`Transport::is_kernel_socket`]).
    pub(crate) fn is_kernel_socket(&self) -> bool {
        self.transport.is_kernel_socket()
    }

    /// Link operations: get, list, create, configure, delete.
    pub fn link(&self) -> LinkOps<'_> {
        LinkOps::new(self)
    }

    /// IPv4 and IPv6 address operations.
    pub fn address(&self) -> AddressOps<'_> {
        AddressOps::new(self)
    }

    /// Route operations.
    pub fn route(&self) -> RouteOps<'_> {
        RouteOps::new(self)
    }

    /// Neighbour (ARP / NDP) operations.
    pub fn neighbour(&self) -> NeighbourOps<'_> {
        NeighbourOps::new(self)
    }

    /// Bridge forwarding database operations (also VXLAN remote entries).
    pub fn fdb(&self) -> FdbOps<'_> {
        FdbOps::new(self)
    }

    /// Several changes (link up, addresses, routes) sent in one exchange,
    /// each acknowledged on its own: one round trip instead of one per
    /// change. See [`Batch`].
    ///
    /// ```no_run
    /// # async fn demo(handle: overlay_netlink::Handle) -> overlay_netlink::Result<()> {
    /// handle.batch().set_up(4).add_address((4, "10.244.1.5/24".parse().unwrap())).send().await?;
    /// # Ok(()) }
    /// ```
    pub fn batch(&self) -> Batch<'_> {
        Batch::new(self)
    }

    /// Send a batch of requests (every change asks for an ACK); map a
    /// transport failure to [`Error::Transport`].
    pub(crate) async fn exchange(
        &self,
        operation: &'static str,
        object: impl FnOnce() -> String,
        requests: Vec<Request>,
    ) -> Result<Vec<Reply>> {
        let expected = requests.len();
        let replies = self.transport.exchange(with_acks(requests)).await;
        one_reply_per_request(operation, object, expected, replies)
    }

    /// Like [`Handle::exchange`], with unparsed replies.
    pub(crate) async fn exchange_raw(
        &self,
        operation: &'static str,
        object: impl FnOnce() -> String,
        requests: Vec<Request>,
    ) -> Result<Vec<RawReply>> {
        let expected = requests.len();
        let replies = self.transport.exchange_raw(with_acks(requests)).await;
        one_reply_per_request(operation, object, expected, replies)
    }

    /// Send one request and return the kernel's messages, or its error.
    pub(crate) async fn request(
        &self,
        operation: &'static str,
        object: &str,
        message: RouteNetlinkMessage,
        flags: u16,
    ) -> Result<Vec<RouteNetlinkMessage>> {
        let replies = self
            .exchange(
                operation,
                || object.to_string(),
                vec![Request::new(message, flags)],
            )
            .await?;
        only_reply(operation, object, replies)
    }

    /// Like [`Handle::request`], with the kernel's messages unparsed (see
    /// [`crate::transport::raw_messages`]).
    pub(crate) async fn request_raw(
        &self,
        operation: &'static str,
        object: &str,
        message: RouteNetlinkMessage,
        flags: u16,
    ) -> Result<Vec<u8>> {
        let replies = self
            .exchange_raw(
                operation,
                || object.to_string(),
                vec![Request::new(message, flags)],
            )
            .await?;
        only_reply(operation, object, replies)
    }

    /// Dump, retrying when a concurrent change interrupted the dump.
    pub(crate) async fn dump(
        &self,
        operation: &'static str,
        object: &str,
        message: RouteNetlinkMessage,
    ) -> Result<Vec<RouteNetlinkMessage>> {
        retry_interrupted(|| self.request(operation, object, message.clone(), NLM_F_DUMP)).await
    }

    /// Like [`Handle::dump`], with the kernel's messages unparsed.
    pub(crate) async fn dump_raw(
        &self,
        operation: &'static str,
        object: &str,
        message: RouteNetlinkMessage,
    ) -> Result<Vec<u8>> {
        retry_interrupted(|| self.request_raw(operation, object, message.clone(), NLM_F_DUMP)).await
    }
}

/// Run `dump` again, up to [`DUMP_RETRIES`] times, while a concurrent
/// change interrupts it.
async fn retry_interrupted<T, F>(mut dump: impl FnMut() -> F) -> Result<T>
where
    F: std::future::Future<Output = Result<T>>,
{
    let mut attempt = 0;
    loop {
        match dump().await {
            Err(e) if e.kind() == Some(ErrorKind::Interrupted) && attempt < DUMP_RETRIES => {
                attempt += 1;
            }
            other => return other,
        }
    }
}

/// `requests` with an ACK asked for every one that is not a dump.
fn with_acks(mut requests: Vec<Request>) -> Vec<Request> {
    for r in &mut requests {
        if !r.is_dump() {
            r.flags |= NLM_F_ACK;
        }
    }
    requests
}

/// The one reply of a one-request exchange, or the kernel's error naming
/// `operation` and `object`.
fn only_reply<T>(
    operation: &'static str,
    object: &str,
    mut replies: Vec<std::result::Result<T, KernelError>>,
) -> Result<T> {
    match replies.pop() {
        Some(Ok(reply)) => Ok(reply),
        Some(Err(source)) => Err(Error::Kernel {
            operation,
            object: object.to_string(),
            source,
        }),
        None => Err(Error::UnexpectedReply {
            operation,
            object: object.to_string(),
            detail: "no reply",
        }),
    }
}

/// The replies of one exchange, or the error naming `operation` and `object`
/// when the transport failed or did not answer every request once.
fn one_reply_per_request<T>(
    operation: &'static str,
    object: impl FnOnce() -> String,
    expected: usize,
    replies: std::result::Result<Vec<T>, TransportError>,
) -> Result<Vec<T>> {
    match replies {
        Ok(replies) if replies.len() == expected => Ok(replies),
        Ok(_) => Err(Error::UnexpectedReply {
            operation,
            object: object(),
            detail: "the transport returned a different number of replies than requests",
        }),
        Err(source) => Err(Error::Transport {
            operation,
            object: object(),
            source,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_short_or_failed_exchange_names_the_operation_and_object() {
        let short = one_reply_per_request("add route", || "10.0.0.0/8".into(), 2, Ok(vec![()]));
        let err = short.unwrap_err();
        assert!(matches!(err, Error::UnexpectedReply { .. }), "{err:?}");
        assert!(
            err.to_string().starts_with("add route 10.0.0.0/8: "),
            "{err}"
        );

        let failed = one_reply_per_request::<()>(
            "add route",
            || "10.0.0.0/8".into(),
            1,
            Err(TransportError::NoRuntime),
        );
        let err = failed.unwrap_err();
        assert!(matches!(err, Error::Transport { .. }), "{err:?}");
        assert!(err.to_string().contains("10.0.0.0/8"), "{err}");

        let ok = one_reply_per_request("add route", || unreachable!(), 1, Ok(vec![7]));
        assert_eq!(ok.unwrap(), vec![7]);
    }
}
