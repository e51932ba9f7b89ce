//! [`Batch`]: several changes in one exchange with the kernel.
//!
//! Configuring an interface is a short chain of changes (bring it up, add
//! its addresses, add its routes), each normally its own round trip: a
//! `sendto`, a wait for the socket, and reading the acknowledgement. A
//! batch writes all of them back to back, each with its own sequence
//! number, and then collects one acknowledgement per change. The kernel
//! handles the messages of one `sendto` in order, so a change may rely on
//! the ones before it (a route through an address added earlier in the
//! batch), exactly as with separate calls.
//!
//! Unlike separate calls, the kernel does not stop at a failed change: the
//! changes after it are still made (or fail in turn). [`Batch::send`]
//! reports the first failure, [`Batch::send_each`] every change's outcome;
//! a caller that must leave nothing behind on failure undoes the batch as
//! a whole (deleting the link removes its addresses and routes).
//!
//! ```no_run
//! # async fn demo(handle: overlay_netlink::Handle) -> overlay_netlink::Result<()> {
//! use overlay_netlink::{Address, Route};
//!
//! let eth0 = handle.link().get("eth0").await?;
//! handle
//!     .batch()
//!     .set_up(eth0.index)
//!     .add_address(Address::new(eth0.index, "10.244.1.5/24".parse().unwrap()))
//!     .add_route(&Route::new("0.0.0.0/0".parse().unwrap()).gateway("10.244.1.1".parse().unwrap()).dev(eth0.index))
//!     .send()
//!     .await?;
//! # Ok(()) }
//! ```

use netlink_packet_core::{NLM_F_CREATE, NLM_F_EXCL};
use netlink_packet_route::RouteNetlinkMessage;
use netlink_packet_route::link::LinkFlags;

use crate::address::Address;
use crate::error::{Error, Result};
use crate::handle::Handle;
use crate::link::{LinkId, addressed, check_id};
use crate::route::Route;
use crate::transport::Request;

/// One change of a batch: what it is called in errors, and its request.
#[derive(Debug)]
struct Step {
    operation: &'static str,
    object: String,
    request: Request,
}

/// Changes sent to the kernel in one exchange; see [`Handle::batch`].
///
/// Configuring an interface is a short chain of changes (bring it up, add
/// its addresses, add its routes), each normally its own round trip. A
/// batch writes all of them back to back, each with its own sequence
/// number, and then collects one acknowledgement per change. The kernel
/// handles them in order, so a change may rely on the ones before it (a
/// route through an address added earlier in the batch). Unlike separate
/// calls, the kernel does not stop at a failed change: the changes after
/// it are still made (or fail in turn). [`Batch::send`] reports the first
/// failure, [`Batch::send_each`] every change's outcome; a caller that must
/// leave nothing behind undoes the batch as a whole (deleting the link
/// removes its addresses and routes).
///
/// Each change is checked as it is added, as the single operation
/// ([`LinkOps::set_up`](crate::LinkOps::set_up),
/// [`AddressOps::add`](crate::AddressOps::add),
/// [`RouteOps::add`](crate::RouteOps::add)) checks it; when one is
/// invalid, sending fails with that error and sends nothing.
///
/// ```
/// use std::sync::Arc;
/// use overlay_netlink::{Address, FakeTransport, Handle, Route};
///
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// let fake = Arc::new(FakeTransport::new());
/// let handle = Handle::with_transport(fake.clone());
/// let batch = handle
///     .batch()
///     .set_up(7)
///     .add_address(Address::new(7, "198.51.100.7/24".parse().unwrap()))
///     .add_route(&Route::new("0.0.0.0/0".parse().unwrap()).gateway("198.51.100.1".parse().unwrap()).dev(7));
/// assert_eq!(batch.len(), 3);
/// batch.send().await.unwrap();
/// assert_eq!(fake.requests().len(), 3);
/// # });
/// ```
#[derive(Debug)]
#[must_use = "a batch does nothing until sent"]
pub struct Batch<'h> {
    handle: &'h Handle,
    steps: Vec<Step>,
    /// The first change that was refused before sending.
    invalid: Option<Error>,
}

impl<'h> Batch<'h> {
    pub(crate) fn new(handle: &'h Handle) -> Self {
        Batch {
            handle,
            steps: Vec::new(),
            invalid: None,
        }
    }

    fn push(mut self, step: Result<Step>) -> Self {
        match step {
            Ok(step) => self.steps.push(step),
            Err(e) => {
                self.invalid.get_or_insert(e);
            }
        }
        self
    }

    /// Bring a link up ([`LinkOps::set_up`](crate::LinkOps::set_up)).
    pub fn set_up(self, id: impl Into<LinkId>) -> Self {
        const OP: &str = "set link up";
        let id = id.into();
        let step = check_id(OP, &id).map(|()| {
            let mut msg = addressed(&id);
            msg.header.change_mask = LinkFlags::Up;
            msg.header.flags = LinkFlags::Up;
            Step {
                operation: OP,
                object: id.to_string(),
                request: Request::new(RouteNetlinkMessage::SetLink(msg), 0),
            }
        });
        self.push(step)
    }

    /// Add an address ([`AddressOps::add`](crate::AddressOps::add));
    /// `AlreadyExists` if it is there.
    pub fn add_address(self, address: impl Into<Address>) -> Self {
        let address = address.into();
        self.push(Ok(Step {
            operation: "add address",
            object: format!("{} on link index {}", address.addr, address.index),
            request: Request::new(
                RouteNetlinkMessage::NewAddress(address.message()),
                NLM_F_CREATE | NLM_F_EXCL,
            ),
        }))
    }

    /// Add a route ([`RouteOps::add`](crate::RouteOps::add));
    /// `AlreadyExists` if an identical one is installed.
    pub fn add_route(self, route: &Route) -> Self {
        const OP: &str = "add route";
        let step = route.validate(OP).map(|()| Step {
            operation: OP,
            object: format!("to {}", route.destination),
            request: Request::new(
                RouteNetlinkMessage::NewRoute(route.message(false)),
                NLM_F_CREATE | NLM_F_EXCL,
            ),
        });
        self.push(step)
    }

    /// How many changes the batch holds (those refused before sending not
    /// counted).
    pub fn len(&self) -> usize {
        self.steps.len()
    }

    /// Whether the batch holds no change.
    pub fn is_empty(&self) -> bool {
        self.steps.is_empty()
    }

    /// Send the changes in one exchange; the first failure, if any (the
    /// kernel still made the changes after it, see [`Batch`]). An empty
    /// batch sends nothing.
    pub async fn send(self) -> Result<()> {
        self.send_each().await?.into_iter().collect()
    }

    /// Send the changes in one exchange and return each one's outcome, in
    /// the order they were added. The outer error is one that concerns the
    /// whole batch: a change refused before sending (then nothing was
    /// sent), or a transport failure.
    pub async fn send_each(self) -> Result<Vec<Result<()>>> {
        if let Some(e) = self.invalid {
            return Err(e);
        }
        if self.steps.is_empty() {
            return Ok(Vec::new());
        }
        let (names, requests): (Vec<_>, Vec<_>) = self
            .steps
            .into_iter()
            .map(|s| ((s.operation, s.object), s.request))
            .unzip();
        let count = requests.len();
        let replies = self
            .handle
            .exchange("send batch", || format!("of {count} changes"), requests)
            .await?;
        Ok(names
            .into_iter()
            .zip(replies)
            .map(|((operation, object), reply)| match reply {
                Ok(_) => Ok(()),
                Err(source) => Err(Error::Kernel {
                    operation,
                    object,
                    source,
                }),
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use netlink_packet_core::NLM_F_ACK;
    use netlink_packet_route::address::AddressAttribute;

    use super::*;
    use crate::error::{ErrorKind, KernelError};
    use crate::transport::FakeTransport;

    fn route() -> Route {
        Route::new("0.0.0.0/0".parse().unwrap())
            .gateway("198.51.100.1".parse().unwrap())
            .dev(7)
    }

    #[tokio::test]
    async fn a_batch_is_one_exchange_with_the_single_operations_requests_in_order() {
        let fake = Arc::new(FakeTransport::new());
        let handle = Handle::with_transport(fake.clone());
        let address = Address::new(7, "198.51.100.7/24".parse().unwrap());
        handle
            .batch()
            .set_up(7)
            .add_address(address.clone())
            .add_route(&route())
            .send()
            .await
            .unwrap();
        let batched = fake.take_requests();
        // The same requests as the single operations send, one by one.
        handle.link().set_up(7).await.unwrap();
        handle.address().add(address).await.unwrap();
        handle.route().add(&route()).await.unwrap();
        assert_eq!(batched, fake.take_requests());
        assert_eq!(batched.len(), 3);
        assert!(batched.iter().all(|r| r.flags & NLM_F_ACK != 0));
        let RouteNetlinkMessage::NewAddress(a) = &batched[1].message else {
            panic!("{:?}", batched[1]);
        };
        assert!(
            a.attributes
                .contains(&AddressAttribute::Local("198.51.100.7".parse().unwrap()))
        );
    }

    #[tokio::test]
    async fn a_failed_change_is_reported_as_its_own_operation_and_the_rest_still_answered() {
        // The kernel refuses the address; the route after it is still made.
        let fake = Arc::new(FakeTransport::with_responder(|r| match r.message {
            RouteNetlinkMessage::NewAddress(_) => Err(KernelError::new(libc::EEXIST)),
            _ => Ok(Vec::new()),
        }));
        let handle = Handle::with_transport(fake.clone());
        let batch = || {
            handle
                .batch()
                .set_up("eth0")
                .add_address((7, "198.51.100.7/24".parse().unwrap()))
                .add_route(&route())
        };
        let each = batch().send_each().await.unwrap();
        assert!(each[0].is_ok() && each[2].is_ok());
        let err = each[1].as_ref().unwrap_err();
        assert_eq!(err.kind(), Some(ErrorKind::AlreadyExists));
        assert!(
            err.to_string()
                .starts_with("add address 198.51.100.7/24 on link index 7: "),
            "{err}"
        );
        let err = batch().send().await.unwrap_err();
        assert!(err.is_already_exists(), "{err}");
        assert_eq!(fake.requests().len(), 6);
    }

    #[tokio::test]
    async fn an_invalid_change_fails_the_batch_before_anything_is_sent() {
        let fake = Arc::new(FakeTransport::new());
        let handle = Handle::with_transport(fake.clone());
        // A gateway of the wrong family, and a name the kernel would refuse.
        let wrong =
            Route::new("0.0.0.0/0".parse().unwrap()).gateway("2001:db8::1".parse().unwrap());
        let batch = handle.batch().set_up(7).add_route(&wrong).set_up("a/b");
        assert_eq!(batch.len(), 1);
        let err = batch.send_each().await.unwrap_err();
        assert!(matches!(err, Error::InvalidInput { .. }), "{err:?}");
        assert!(err.to_string().starts_with("add route "), "{err}");
        assert!(fake.requests().is_empty());
        // An empty batch sends nothing and succeeds.
        let empty = handle.batch();
        assert!(empty.is_empty());
        empty.send().await.unwrap();
        assert!(fake.requests().is_empty());
    }
}
