//! [`LinkOps::delete_detached`]: deletion handed to a forked helper
//! process, which carries the kernel's deferred teardown.

use std::os::fd::AsRawFd;

use netlink_packet_route::RouteNetlinkMessage;

use super::{LinkId, LinkOps, addressed, check_id};
use crate::error::{Error, Result};

impl<'h> LinkOps<'h> {
    /// Delete a link and return as soon as the kernel has announced it
    /// deleted, without waiting for the kernel's deferred teardown.
    ///
    /// Deleting a link (a veth pair most of all) blocks the deleting task in
    /// the kernel until the device's deferred teardown has run (an RCU
    /// barrier and the draining of device references: 10 to 25 ms on a test
    /// machine), although the link is unlisted, its name and addresses free,
    /// and its deletion announced on `RTMGRP_LINK` within the first
    /// millisecond. This call subscribes to link events, forks a helper
    /// process that sends the `RTM_DELLINK` request on its own socket and
    /// carries the wait in the kernel, and returns when the announcement
    /// arrives. When the announcement cannot be seen (the event socket
    /// overflowed), it waits for the kernel's answer, which the helper
    /// passes back. A short-lived process (a CNI plugin) can so exit while
    /// the kernel finishes; the helper is detached (its own session, stdio
    /// on `/dev/null`, reparented at once, so nobody has to reap it).
    ///
    /// Returns `false` when the link did not exist (or was deleted by
    /// someone else in the meantime). The handle needs a real socket (not
    /// [`crate::FakeTransport`]). The helper runs only async-signal-safe
    /// code, so this may be called from a multi-threaded process.
    ///
    /// ```no_run
    /// # async fn f() -> overlay_netlink::Result<()> {
    /// let h = overlay_netlink::Handle::new()?;
    /// if h.link().delete_detached("veth0a1b2c3d").await? {
    ///     // gone from the link list; the kernel may still be tearing it down
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn delete_detached(&self, id: impl Into<LinkId>) -> Result<bool> {
        const OP: &str = "delete link (detached)";
        let id = id.into();
        check_id(OP, &id)?;
        // Subscribe first, so that the announcement cannot be missed.
        let mut events = self.handle.link_events().await?;
        let Some(link) = self.find(id).await? else {
            return Ok(false);
        };
        let object = link.name.clone();
        use netlink_packet_core::{
            NLM_F_ACK, NLM_F_REQUEST, NetlinkHeader, NetlinkMessage, NetlinkPayload,
        };
        let mut message = NetlinkMessage::new(
            NetlinkHeader::default(),
            NetlinkPayload::InnerMessage(RouteNetlinkMessage::DelLink(addressed(&LinkId::Index(
                link.index,
            )))),
        );
        message.header.flags = NLM_F_REQUEST | NLM_F_ACK;
        message.header.sequence_number = 1;
        message.finalize();
        let mut request = vec![0; message.buffer_len()];
        message.serialize(&mut request);
        let socket = crate::events::subscribe(self.handle.netns(), 0, OP)?;
        // The helper blocks in send and recv.
        socket
            .set_non_blocking(false)
            .map_err(|source| detached_io_error(OP, &object, "fcntl", source))?;
        let mut pair = [0; 2];
        // SAFETY: socketpair(2) writes two descriptors into `pair`.
        if unsafe {
            libc::socketpair(
                libc::AF_UNIX,
                libc::SOCK_SEQPACKET | libc::SOCK_CLOEXEC,
                0,
                pair.as_mut_ptr(),
            )
        } != 0
        {
            let source = std::io::Error::last_os_error();
            return Err(detached_io_error(OP, &object, "socketpair", source));
        }
        // SAFETY: both descriptors are new and owned by nobody else.
        let (ours, theirs) = unsafe {
            use std::os::fd::FromRawFd;
            (
                std::os::fd::OwnedFd::from_raw_fd(pair[0]),
                std::os::fd::OwnedFd::from_raw_fd(pair[1]),
            )
        };
        // SAFETY: the child runs only async-signal-safe functions on memory
        // allocated before the fork (`detached_helper`) and never returns.
        let child = match unsafe { libc::fork() } {
            -1 => {
                let source = std::io::Error::last_os_error();
                return Err(detached_io_error(OP, &object, "fork", source));
            }
            0 => detached_helper(socket.as_raw_fd(), theirs.as_raw_fd(), &request),
            child => child,
        };
        drop((socket, theirs));
        let mut status = 0;
        // SAFETY: waitpid on our own child (which forks the helper and
        // exits at once), with a valid status pointer.
        unsafe { libc::waitpid(child, &mut status, 0) };
        if tokio::runtime::Handle::try_current().is_err() {
            return Err(Error::Transport {
                operation: OP,
                object,
                source: crate::error::TransportError::NoRuntime,
            });
        }
        // `AsyncFd::new` is deprecated from tokio 1.53 in favour of the
        // unsafe `register`, which tokio 1.47 (the workspace's minimum)
        // lacks. Sound: `OwnedFd` closes its fd only when dropped, after the
        // `AsyncFd` deregistered it.
        #[allow(deprecated)]
        let answer = tokio::io::unix::AsyncFd::new(ours)
            .map_err(|source| detached_io_error(OP, &object, "register", source))?;
        let outcome = |bytes: std::io::Result<Vec<u8>>| -> Result<bool> {
            let unexpected = |detail| Error::UnexpectedReply {
                operation: OP,
                object: link.name.clone(),
                detail,
            };
            let bytes =
                bytes.map_err(|source| detached_io_error(OP, &link.name, "recv", source))?;
            if bytes.is_empty() {
                return Err(unexpected(
                    "the deletion helper exited without the kernel's answer",
                ));
            }
            use netlink_packet_core::{NetlinkMessage, NetlinkPayload};
            match NetlinkMessage::<RouteNetlinkMessage>::deserialize(&bytes) {
                Ok(NetlinkMessage {
                    payload: NetlinkPayload::Error(e),
                    ..
                }) => match e.code {
                    None => Ok(true),
                    Some(code) if -code.get() == libc::ENODEV => Ok(false),
                    Some(code) => Err(Error::Kernel {
                        operation: OP,
                        object: link.name.clone(),
                        source: crate::error::KernelError::new(-code.get()),
                    }),
                },
                Ok(_) => Err(unexpected("no acknowledgement for RTM_DELLINK")),
                Err(_) => Err(unexpected("malformed answer to RTM_DELLINK")),
            }
        };
        loop {
            tokio::select! {
                event = events.next() => match event {
                    Ok(crate::LinkEvent::Deleted(gone)) if gone.index == link.index => return Ok(true),
                    Ok(_) => {}
                    // Overflowed: the kernel's answer tells.
                    Err(_) => return outcome(recv_answer(&answer).await),
                },
                bytes = recv_answer(&answer) => return outcome(bytes),
            }
        }
    }
}

fn detached_io_error(
    operation: &'static str,
    object: &str,
    step: &'static str,
    source: std::io::Error,
) -> Error {
    Error::Transport {
        operation,
        object: object.to_owned(),
        source: crate::error::TransportError::Io {
            operation: step,
            source,
        },
    }
}

/// The helper process of [`LinkOps::delete_detached`]: fork again (so the
/// helper is reparented and nobody has to reap it), detach from the
/// caller's output and session, send `request` on `netlink`, and pass the
/// kernel's answer to `report`. Only async-signal-safe functions, on memory
/// allocated before the fork.
fn detached_helper(netlink: libc::c_int, report: libc::c_int, request: &[u8]) -> ! {
    // SAFETY: fork, open, dup2, setsid, send, recv and _exit are
    // async-signal-safe; `request` was allocated before the fork; the
    // buffer below is on this stack.
    unsafe {
        // In the first child: exit at once, the grandchild does the work
        // (or this child, when the second fork fails).
        if libc::fork() > 0 {
            libc::_exit(0);
        }
        let null = libc::open(c"/dev/null".as_ptr(), libc::O_RDWR);
        if null >= 0 {
            for fd in 0..=2 {
                libc::dup2(null, fd);
            }
        }
        libc::setsid();
        let mut answer = [0u8; 4096];
        if libc::send(netlink, request.as_ptr().cast(), request.len(), 0) >= 0 {
            let len = libc::recv(netlink, answer.as_mut_ptr().cast(), answer.len(), 0);
            if len > 0 {
                libc::send(
                    report,
                    answer.as_ptr().cast(),
                    len as usize,
                    libc::MSG_NOSIGNAL,
                );
            }
        }
        libc::_exit(0)
    }
}

/// One datagram from the helper of [`LinkOps::delete_detached`]; empty
/// when it exited without sending.
async fn recv_answer(
    fd: &tokio::io::unix::AsyncFd<std::os::fd::OwnedFd>,
) -> std::io::Result<Vec<u8>> {
    let mut buf = vec![0u8; 4096];
    loop {
        let mut guard = fd.readable().await?;
        // SAFETY: recv(2) into `buf`, at most its length.
        let len = unsafe {
            libc::recv(
                fd.as_raw_fd(),
                buf.as_mut_ptr().cast(),
                buf.len(),
                libc::MSG_DONTWAIT,
            )
        };
        match usize::try_from(len) {
            Ok(len) => {
                buf.truncate(len);
                return Ok(buf);
            }
            Err(_) => {
                let e = std::io::Error::last_os_error();
                if e.kind() != std::io::ErrorKind::WouldBlock {
                    return Err(e);
                }
                guard.clear_ready();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    // Test helpers: a failed unwrap is a failing test.
    #![allow(clippy::unwrap_used)]
    use crate::{Handle, Netns, VethConfig};
    use overlay_testsupport::{TestNetns, privileged_test};

    #[tokio::test]
    async fn delete_detached_returns_once_the_veth_pair_is_gone_and_then_reports_absent() {
        privileged_test!();
        let t = TestNetns::new().unwrap();
        let h: Handle = Netns::open_path(t.path()).unwrap().handle().unwrap();
        h.link()
            .add_veth(&VethConfig::new("ovt-dd0", "ovt-dd1"))
            .await
            .unwrap();
        assert!(h.link().delete_detached("ovt-dd0").await.unwrap());
        // Both ends are unlisted when it returns.
        assert!(h.link().find("ovt-dd0").await.unwrap().is_none());
        assert!(h.link().find("ovt-dd1").await.unwrap().is_none());
        assert!(!h.link().delete_detached("ovt-dd0").await.unwrap());
        // The name is free again at once.
        h.link()
            .add_veth(&VethConfig::new("ovt-dd0", "ovt-dd1"))
            .await
            .unwrap();
        assert!(h.link().delete_detached("ovt-dd1").await.unwrap());
    }

    #[tokio::test]
    async fn delete_detached_refuses_an_invalid_name_before_any_request() {
        let h = Handle::with_transport(std::sync::Arc::new(crate::FakeTransport::new()));
        let err = h.link().delete_detached("a/b").await.unwrap_err();
        assert!(matches!(err, crate::Error::InvalidInput { .. }), "{err:?}");
    }
}
