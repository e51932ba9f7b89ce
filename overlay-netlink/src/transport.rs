//! The transport: how requests reach the kernel.
//!
//! [`Transport`] is the small seam between the typed operations of this crate
//! and the kernel. [`SocketTransport`] is the real `NETLINK_ROUTE` socket;
//! [`FakeTransport`] records requests and answers them from a closure, for
//! unit tests that need no root.
//!
//! A transport receives a *batch* of requests and returns one [`Reply`] per
//! request, in order. The socket transport writes many requests with one
//! `sendto` and then reads the acknowledgements, so programming thousands of
//! objects costs a few hundred system calls, not thousands of round trips.
//!
//! # The one place `netlink-packet-route` types appear
//!
//! This module is a deliberate extension point for custom transports
//! (recorders, replayers, fakes with their own answers): [`Request`] and
//! [`Reply`] carry [`RouteNetlinkMessage`], `netlink-packet-route`'s message
//! type, re-exported here so that an implementation can name it without a
//! dependency of its own. overlay-netlink pins `netlink-packet-route` to an
//! exact version, and a new version of it is a breaking change of this
//! module. Everywhere else the public API uses this crate's own types
//! ([`Route`](crate::Route), [`RouteKind`](crate::RouteKind),
//! [`NeighbourState`](crate::NeighbourState), ...).

use std::fmt;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::sync::Mutex;

use async_trait::async_trait;
use netlink_packet_core::{DecodeError, ParseableParametrized};
use netlink_packet_core::{
    NLM_F_ACK, NLM_F_DUMP, NLM_F_DUMP_INTR, NLM_F_REQUEST, NetlinkBuffer, NetlinkHeader,
    NetlinkMessage, NetlinkPayload,
};
/// `netlink-packet-route`'s message type (pinned version); see the
/// [module docs](self).
pub use netlink_packet_route::RouteNetlinkMessage;
use netlink_sys::{Socket, SocketAddr, protocols::NETLINK_ROUTE};
use tokio::io::unix::AsyncFd;

use crate::error::{KernelError, TransportError};

/// One request: a route-netlink message and its `NLM_F_*` flags.
///
/// `NLM_F_REQUEST` is implied; the transport sets the sequence number.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// `NLM_F_*` flags, for example `NLM_F_CREATE | NLM_F_EXCL | NLM_F_ACK`.
    pub flags: u16,
    /// The message.
    pub message: RouteNetlinkMessage,
}

impl Request {
    /// A request with the given flags.
    pub fn new(message: RouteNetlinkMessage, flags: u16) -> Self {
        Request { flags, message }
    }

    /// Whether this request is a dump (`NLM_F_DUMP`).
    pub fn is_dump(&self) -> bool {
        self.flags & NLM_F_DUMP == NLM_F_DUMP
    }
}

/// The kernel's answer to one request: the messages it sent back (none for a
/// plain acknowledgement, many for a dump), or its error.
pub type Reply = Result<Vec<RouteNetlinkMessage>, KernelError>;

/// Carries batches of requests to the kernel (or to a fake).
#[async_trait]
pub trait Transport: Send + Sync + fmt::Debug {
    /// Send `requests` in order and return one reply per request, in order.
    ///
    /// The kernel processes the requests in order and continues after a
    /// failed one; each failure is reported in its own [`Reply`]. An `Err`
    /// means the transport itself failed and nothing can be said about the
    /// requests.
    async fn exchange(&self, requests: Vec<Request>) -> Result<Vec<Reply>, TransportError>;

    /// Whether requests reach the kernel through a real `NETLINK_ROUTE`
    /// socket, so that the kernel's multicast notifications describe the
    /// state they change.
    ///
    /// State caches built on notifications (the mirror of
    /// [`Overlay`](crate::overlay::Overlay)) exist only when this is `true`;
    /// with any other transport, every read goes through
    /// [`exchange`](Transport::exchange) or
    /// [`exchange_raw`](Transport::exchange_raw). The provided
    /// implementation returns `false`, right for fakes and recorders;
    /// [`SocketTransport`] returns `true`.
    fn is_kernel_socket(&self) -> bool {
        false
    }

    /// Like [`Transport::exchange`], but each reply is the kernel's messages
    /// unparsed: whole netlink messages (headers included, each padded to 4
    /// bytes) one after another. Hot paths that read large dumps and need
    /// only a few attributes parse these themselves.
    ///
    /// The provided implementation serialises the replies of `exchange`.
    async fn exchange_raw(&self, requests: Vec<Request>) -> Result<Vec<RawReply>, TransportError> {
        let replies = self.exchange(requests).await?;
        Ok(replies
            .into_iter()
            .map(|reply| {
                reply.map(|messages| {
                    let mut out = Vec::new();
                    for inner in messages {
                        let mut message = NetlinkMessage::new(
                            NetlinkHeader::default(),
                            NetlinkPayload::InnerMessage(inner),
                        );
                        message.finalize();
                        let start = out.len();
                        let len = message.buffer_len();
                        out.resize(start + ((len + 3) & !3), 0);
                        message.serialize(&mut out[start..start + len]);
                    }
                    out
                })
            })
            .collect())
    }
}

/// A reply in raw form: the kernel's messages, unparsed and concatenated.
pub type RawReply = Result<Vec<u8>, KernelError>;

/// Iterate over the messages of a [`RawReply`]: `(message type, payload)`.
/// Stops at the first incomplete message.
pub fn raw_messages(raw: &[u8]) -> impl Iterator<Item = (u16, &[u8])> {
    let mut rest = raw;
    std::iter::from_fn(move || {
        let (header, payload, _, next) = split_message(rest)?;
        rest = next;
        Some((header.message_type, payload))
    })
}

/// Requests written per `sendto`, and in flight before reading their ACKs.
/// Each ACK costs about a kilobyte of receive buffer; with the 4 MiB buffer
/// requested below this leaves ample headroom.
const WINDOW: usize = 512;
/// Upper bound of bytes per `sendto` (the kernel limit is the send buffer).
const MAX_SEND: usize = 64 * 1024;
/// Receive buffer requested from the kernel.
const RCVBUF: usize = 4 * 1024 * 1024;
/// Initial user-space receive buffer, one page: enough for ACKs and single
/// replies; it grows to the size of larger datagrams (the length is peeked
/// first). Pages are touched only as datagrams need them, which matters for
/// short-lived programs: a fresh page costs a fault, and a CNI plugin opens a
/// socket or two per run.
const INITIAL_RECV: usize = 4096;

/// A fresh receive buffer for [`recv_datagram`] and [`recv_queued`], which
/// grow it to each datagram; every socket of the crate starts with one.
pub(crate) fn recv_buffer() -> Vec<u8> {
    vec![0; INITIAL_RECV]
}

/// `NETLINK_EXT_ACK` socket option (error messages in ACKs).
const NETLINK_EXT_ACK: libc::c_int = 11;
/// `NETLINK_CAP_ACK` socket option (ACKs do not echo the request).
const NETLINK_CAP_ACK: libc::c_int = 10;
/// `NLMSGERR_ATTR_MSG`: the extended-ACK message string.
const NLMSGERR_ATTR_MSG: u16 = 1;
/// `NLM_F_ACK_TLVS` on an `NLMSG_ERROR`: extended-ACK TLVs follow.
const NLM_F_ACK_TLVS: u16 = 0x200;

/// A `NETLINK_ROUTE` socket registered with the tokio reactor.
///
/// The socket belongs to the network namespace of the thread that opened it;
/// see [`crate::Netns::handle`]. Dropping the transport closes the socket.
pub struct SocketTransport {
    state: tokio::sync::Mutex<Conn>,
}

struct Conn {
    fd: AsyncFd<Socket>,
    seq: u32,
    recv: Vec<u8>,
    send: Vec<u8>,
    /// Sequence number of a dump whose end has not been read. Set while an
    /// exchange runs; still set at the start of the next one only if that
    /// exchange was cancelled, in which case the dump is drained first (the
    /// kernel refuses a second dump on a socket with `EBUSY`).
    open_dump: Option<u32>,
}

impl fmt::Debug for SocketTransport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SocketTransport").finish_non_exhaustive()
    }
}

/// Open a `NETLINK_ROUTE` socket in the calling thread's network namespace,
/// bound to `groups` (0 for a request socket), non-blocking.
pub(crate) fn open_socket(groups: u32) -> io::Result<Socket> {
    let mut socket = Socket::new(NETLINK_ROUTE)?;
    socket.bind(&SocketAddr::new(0, groups))?;
    socket.set_non_blocking(true)?;
    // Best effort: SO_RCVBUFFORCE exceeds rmem_max when privileged; fall back.
    if force_rcvbuf(&socket, RCVBUF).is_err() {
        let _ = socket.set_rx_buf_sz(RCVBUF);
    }
    set_int_opt(&socket, NETLINK_EXT_ACK, 1)?;
    set_int_opt(&socket, NETLINK_CAP_ACK, 1)?;
    Ok(socket)
}

fn force_rcvbuf(socket: &Socket, size: usize) -> io::Result<()> {
    let value = libc::c_int::try_from(size).unwrap_or(libc::c_int::MAX);
    setsockopt(socket, libc::SOL_SOCKET, libc::SO_RCVBUFFORCE, value)
}

fn set_int_opt(socket: &Socket, opt: libc::c_int, value: libc::c_int) -> io::Result<()> {
    setsockopt(socket, libc::SOL_NETLINK, opt, value)
}

fn setsockopt(
    socket: &Socket,
    level: libc::c_int,
    opt: libc::c_int,
    value: libc::c_int,
) -> io::Result<()> {
    // SAFETY: the fd is open for the lifetime of `socket`; the option value is
    // a c_int on the stack whose size we pass.
    let rc = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            level,
            opt,
            (&value as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Length of the next datagram, without consuming it (`MSG_PEEK | MSG_TRUNC`).
fn peek_len(fd: BorrowedFd<'_>) -> io::Result<usize> {
    // SAFETY: a zero-length receive into a null buffer; with MSG_TRUNC the
    // kernel returns the datagram's full length and writes nothing.
    let n = unsafe {
        libc::recv(
            fd.as_raw_fd(),
            std::ptr::null_mut(),
            0,
            libc::MSG_PEEK | libc::MSG_TRUNC | libc::MSG_DONTWAIT,
        )
    };
    usize::try_from(n).map_err(|_| io::Error::last_os_error())
}

/// Receive one datagram into `buf`, which must be at least as long as it.
fn recv_into(fd: BorrowedFd<'_>, buf: &mut [u8]) -> io::Result<usize> {
    // SAFETY: `buf` is a valid writable slice of the length we pass.
    let n = unsafe {
        libc::recv(
            fd.as_raw_fd(),
            buf.as_mut_ptr().cast(),
            buf.len(),
            libc::MSG_TRUNC | libc::MSG_DONTWAIT,
        )
    };
    usize::try_from(n).map_err(|_| io::Error::last_os_error())
}

fn send_all(fd: BorrowedFd<'_>, buf: &[u8]) -> io::Result<usize> {
    // SAFETY: `buf` is a valid readable slice; the destination is the kernel
    // (a zeroed sockaddr_nl with nl_family = AF_NETLINK).
    let n = unsafe {
        let mut addr: libc::sockaddr_nl = std::mem::zeroed();
        addr.nl_family = libc::AF_NETLINK as libc::sa_family_t;
        libc::sendto(
            fd.as_raw_fd(),
            buf.as_ptr().cast(),
            buf.len(),
            libc::MSG_DONTWAIT,
            (&addr as *const libc::sockaddr_nl).cast(),
            std::mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t,
        )
    };
    usize::try_from(n).map_err(|_| io::Error::last_os_error())
}

/// Whether a message changes state and answers only with an ACK or an error
/// (as opposed to a `Get*` request, which answers with data).
fn is_change(message: &RouteNetlinkMessage) -> bool {
    !matches!(
        message,
        RouteNetlinkMessage::GetLink(_)
            | RouteNetlinkMessage::GetAddress(_)
            | RouteNetlinkMessage::GetNeighbour(_)
            | RouteNetlinkMessage::GetRoute(_)
            | RouteNetlinkMessage::GetRule(_)
            | RouteNetlinkMessage::GetNsId(_)
            | RouteNetlinkMessage::GetNeighbourTable(_)
            | RouteNetlinkMessage::GetAddrLabel(_)
            | RouteNetlinkMessage::GetQueueDiscipline(_)
            | RouteNetlinkMessage::GetTrafficClass(_)
            | RouteNetlinkMessage::GetTrafficFilter(_)
            | RouteNetlinkMessage::GetTrafficAction(_)
            | RouteNetlinkMessage::GetTrafficChain(_)
            | RouteNetlinkMessage::GetStats(_)
    )
}

/// Length of a netlink message header.
const HEADER_LEN: usize = 16;
/// `NLMSG_NOOP`.
const NLMSG_NOOP: u16 = 1;
/// `NLMSG_ERROR`.
const NLMSG_ERROR: u16 = 2;
/// `NLMSG_DONE`.
const NLMSG_DONE: u16 = 3;
/// `NLMSG_OVERRUN`.
const NLMSG_OVERRUN: u16 = 4;

/// What one request got: parsed messages, or raw ones in raw mode.
type Outcome = Result<(Vec<RouteNetlinkMessage>, Vec<u8>), KernelError>;

/// Progress of one request while its replies arrive.
struct Pending {
    dump: bool,
    /// Sent without `NLM_F_ACK`: success is implied by any reply to a
    /// later request (the kernel handles a socket's requests in order and
    /// always reports errors).
    silent: bool,
    messages: Vec<RouteNetlinkMessage>,
    /// The unparsed messages, in raw mode.
    raw: Vec<u8>,
    result: Option<Result<(), KernelError>>,
    interrupted: bool,
}

impl SocketTransport {
    /// Open a socket in the calling thread's network namespace.
    ///
    /// Must be called inside a tokio runtime with I/O enabled.
    pub fn new() -> Result<Self, TransportError> {
        let socket = open_socket(0).map_err(|source| TransportError::Io {
            operation: "open",
            source,
        })?;
        Self::from_socket(socket)
    }

    /// Wrap an already opened, bound, non-blocking socket (for example one
    /// opened on a thread inside another network namespace).
    pub(crate) fn from_socket(socket: Socket) -> Result<Self, TransportError> {
        let fd = register(socket)?;
        Ok(SocketTransport {
            state: tokio::sync::Mutex::new(Conn {
                fd,
                seq: 0,
                recv: recv_buffer(),
                send: Vec::with_capacity(MAX_SEND),
                open_dump: None,
            }),
        })
    }
}

/// Register a socket with the current tokio reactor.
pub(crate) fn register(socket: Socket) -> Result<AsyncFd<Socket>, TransportError> {
    if tokio::runtime::Handle::try_current().is_err() {
        return Err(TransportError::NoRuntime);
    }
    // `AsyncFd::new` is deprecated from tokio 1.53 in favour of the unsafe
    // `register`; the workspace supports tokio 1.47, which lacks `register`.
    // The use is sound: `Socket` owns its fd and closes it only when dropped,
    // which happens after the `AsyncFd` deregisters it.
    #[allow(deprecated)]
    AsyncFd::new(socket).map_err(|source| TransportError::Io {
        operation: "register",
        source,
    })
}

/// Receive one datagram from `fd` into `buf` (grown to fit), waiting for
/// readiness. Returns the datagram's length.
pub(crate) async fn recv_datagram(
    fd: &AsyncFd<Socket>,
    buf: &mut Vec<u8>,
) -> Result<usize, TransportError> {
    let io_err = |source| TransportError::Io {
        operation: "recv",
        source,
    };
    loop {
        let mut guard = fd.readable().await.map_err(io_err)?;
        match guard.try_io(|inner| recv_queued(inner.get_ref().as_fd(), buf)) {
            Ok(result) => return result.map_err(io_err),
            Err(_would_block) => continue,
        }
    }
}

/// Receive the next queued datagram whole into `buf` (grown to fit)
/// without waiting, and return its length. An error of kind `WouldBlock`
/// means nothing is queued; `ENOBUFS` means the socket's receive buffer
/// overflowed and datagrams were lost (reported once, then the queued
/// datagrams follow).
pub(crate) fn recv_queued(fd: BorrowedFd<'_>, buf: &mut Vec<u8>) -> io::Result<usize> {
    let len = peek_len(fd)?;
    if buf.len() < len {
        buf.resize(len.next_power_of_two(), 0);
    }
    // The datagram is queued, so this does not block.
    let got = recv_into(fd, buf)?;
    Ok(got.min(buf.len()))
}

/// A decoder error as a [`TransportError`].
fn decode_error(e: DecodeError) -> TransportError {
    TransportError::Decode(Box::new(e))
}

/// Parse the netlink messages in one datagram.
pub(crate) fn parse_datagram(
    data: &[u8],
) -> Result<Vec<NetlinkMessage<RouteNetlinkMessage>>, TransportError> {
    let mut out = Vec::new();
    let mut offset = 0;
    while offset + 16 <= data.len() {
        let rest = &data[offset..];
        let len = NetlinkBuffer::new_checked(rest)
            .map_err(decode_error)?
            .length() as usize;
        if len < 16 || len > rest.len() {
            break;
        }
        let message = NetlinkMessage::<RouteNetlinkMessage>::deserialize(&rest[..len])
            .map_err(decode_error)?;
        out.push(message);
        offset += (len + 3) & !3;
    }
    Ok(out)
}

/// The extended-ACK message in an `NLMSG_ERROR` payload (after the error
/// code): the capped original header, then TLVs.
fn extack_message(flags: u16, after_code: &[u8]) -> Option<String> {
    if flags & NLM_F_ACK_TLVS == 0 {
        return None;
    }
    // With NETLINK_CAP_ACK the original request is echoed as a bare header.
    let orig_len = 16;
    let mut tlvs = after_code.get(orig_len..)?;
    while tlvs.len() >= 4 {
        let len = usize::from(u16::from_ne_bytes([tlvs[0], tlvs[1]]));
        let kind = u16::from_ne_bytes([tlvs[2], tlvs[3]]) & 0x3fff;
        if len < 4 || len > tlvs.len() {
            return None;
        }
        if kind == NLMSGERR_ATTR_MSG {
            let value = &tlvs[4..len];
            let end = value.iter().position(|&b| b == 0).unwrap_or(value.len());
            return Some(String::from_utf8_lossy(&value[..end]).into_owned());
        }
        let step = (len + 3) & !3;
        tlvs = tlvs.get(step..)?;
    }
    None
}

impl Conn {
    async fn flush(&mut self) -> Result<(), TransportError> {
        let mut sent = 0;
        while sent < self.send.len() {
            let mut guard = self
                .fd
                .writable()
                .await
                .map_err(|source| TransportError::Io {
                    operation: "send",
                    source,
                })?;
            let chunk = &self.send[sent..];
            match guard.try_io(|inner| {
                let raw = inner.get_ref().as_raw_fd();
                // SAFETY: `raw` stays open while `inner` is borrowed.
                send_all(unsafe { BorrowedFd::borrow_raw(raw) }, chunk)
            }) {
                Ok(Ok(_)) => {
                    // A netlink datagram is sent whole or not at all.
                    sent = self.send.len();
                }
                Ok(Err(source)) => {
                    return Err(TransportError::Io {
                        operation: "send",
                        source,
                    });
                }
                Err(_would_block) => continue,
            }
        }
        self.send.clear();
        Ok(())
    }

    /// Read and drop replies until the dump with sequence number `seq` ends.
    async fn drain_dump(&mut self, seq: u32) -> Result<(), TransportError> {
        loop {
            let len = recv_datagram(&self.fd, &mut self.recv).await?;
            let mut rest = &self.recv[..len];
            while let Some((header, _, _, next)) = split_message(rest) {
                rest = next;
                // A dump ends with NLMSG_DONE, or fails with an error (never
                // ACKed: dumps are sent without NLM_F_ACK).
                if header.sequence_number == seq
                    && matches!(header.message_type, NLMSG_DONE | NLMSG_ERROR)
                {
                    self.open_dump = None;
                    return Ok(());
                }
            }
        }
    }

    /// Run one window of requests: send them (in datagrams of at most
    /// `MAX_SEND` bytes) and read until every one is answered.
    async fn window(
        &mut self,
        requests: Vec<Request>,
        raw: bool,
    ) -> Result<Vec<Outcome>, TransportError> {
        // Bytes left by an exchange that was cancelled while sending.
        self.send.clear();
        if let Some(seq) = self.open_dump {
            self.drain_dump(seq).await?;
        }
        let first = self.seq.wrapping_add(1);
        let count = requests.len();
        let mut pending: Vec<Pending> = Vec::with_capacity(count);
        for (i, request) in requests.into_iter().enumerate() {
            self.seq = self.seq.wrapping_add(1);
            let dump = request.is_dump();
            // A change followed by another request in this window needs no
            // ACK of its own: the later reply confirms it, and an error is
            // reported whether or not an ACK was asked for. This saves one
            // datagram (two system calls) per change in large batches.
            let silent = !dump && i + 1 < count && is_change(&request.message);
            let mut header = NetlinkHeader::default();
            header.flags = (request.flags | NLM_F_REQUEST) & !NLM_F_ACK;
            if !dump && !silent {
                header.flags |= NLM_F_ACK;
            }
            header.sequence_number = self.seq;
            if dump {
                self.open_dump = Some(self.seq);
            }
            let mut message =
                NetlinkMessage::new(header, NetlinkPayload::InnerMessage(request.message));
            message.finalize();
            let len = message.buffer_len();
            if !self.send.is_empty() && self.send.len() + len > MAX_SEND {
                self.flush().await?;
            }
            let start = self.send.len();
            self.send.resize(start + ((len + 3) & !3), 0);
            message.serialize(&mut self.send[start..start + len]);
            pending.push(Pending {
                dump,
                silent,
                messages: Vec::new(),
                raw: Vec::new(),
                result: None,
                interrupted: false,
            });
        }
        self.flush().await?;

        let mut open = pending.len();
        // Silent requests before this index are settled.
        let mut settled = 0;
        while open > 0 {
            let len = recv_datagram(&self.fd, &mut self.recv).await?;
            let mut rest = &self.recv[..len];
            while let Some((header, payload, whole, next)) = split_message(rest) {
                rest = next;
                let slot = header.sequence_number.wrapping_sub(first) as usize;
                // Replies to requests of an earlier, abandoned exchange.
                if slot >= pending.len() {
                    continue;
                }
                // A reply to `slot` means every earlier request was handled;
                // silent ones without an error succeeded.
                while settled < slot {
                    let p = &mut pending[settled];
                    if p.silent && p.result.is_none() {
                        p.result = Some(Ok(()));
                        open -= 1;
                    }
                    settled += 1;
                }
                let p = &mut pending[slot];
                if p.result.is_some() {
                    continue;
                }
                if header.flags & NLM_F_DUMP_INTR != 0 {
                    p.interrupted = true;
                }

                match header.message_type {
                    NLMSG_NOOP | NLMSG_OVERRUN => {}
                    NLMSG_DONE => {
                        self.open_dump = None;
                        let code = payload
                            .get(..4)
                            .map_or(0, |b| i32::from_ne_bytes([b[0], b[1], b[2], b[3]]));
                        p.result = Some(if code < 0 {
                            Err(KernelError::new(code.saturating_neg()))
                        } else if p.interrupted {
                            Err(KernelError {
                                errno: libc::EINTR,
                                message: Some("dump was interrupted by a concurrent change".into()),
                            })
                        } else {
                            Ok(())
                        });
                        open -= 1;
                    }
                    NLMSG_ERROR => {
                        let Some(code) = payload
                            .get(..4)
                            .map(|b| i32::from_ne_bytes([b[0], b[1], b[2], b[3]]))
                        else {
                            return Err(decode_error(DecodeError::from(
                                "NLMSG_ERROR shorter than its error code",
                            )));
                        };
                        if code == 0 {
                            if p.dump {
                                continue; // an ACK before DONE; keep reading
                            }
                            p.result = Some(Ok(()));
                        } else {
                            if p.dump {
                                self.open_dump = None;
                            }
                            p.result = Some(Err(KernelError {
                                errno: code.saturating_abs(),
                                message: extack_message(header.flags, &payload[4..]),
                            }));
                        }
                        open -= 1;
                    }
                    _ if raw => p.raw.extend_from_slice(whole),
                    message_type => {
                        let inner = RouteNetlinkMessage::parse_with_param(payload, message_type)
                            .map_err(decode_error)?;
                        p.messages.push(inner);
                    }
                }
            }
        }
        Ok(pending
            .into_iter()
            .map(|p| match p.result {
                Some(Ok(())) => Ok((p.messages, p.raw)),
                Some(Err(e)) => Err(e),
                None => Err(KernelError::new(libc::EIO)),
            })
            .collect())
    }
}

/// The first netlink message of a buffer, split off by [`split_message`]:
/// its header, its payload, the whole message, and the rest of the buffer
/// (after alignment).
pub(crate) type Split<'a> = (NetlinkHeader, &'a [u8], &'a [u8], &'a [u8]);

/// Split the first netlink message off `data`. `None` when no complete
/// message remains.
pub(crate) fn split_message(data: &[u8]) -> Option<Split<'_>> {
    let len = usize::try_from(u32::from_ne_bytes(data.get(..4)?.try_into().ok()?)).ok()?;
    if len < HEADER_LEN || len > data.len() {
        return None;
    }
    let whole = &data[..len];
    let mut header = NetlinkHeader::default();
    header.length = len as u32;
    header.message_type = u16::from_ne_bytes([whole[4], whole[5]]);
    header.flags = u16::from_ne_bytes([whole[6], whole[7]]);
    header.sequence_number = u32::from_ne_bytes([whole[8], whole[9], whole[10], whole[11]]);
    header.port_number = u32::from_ne_bytes([whole[12], whole[13], whole[14], whole[15]]);
    let next = data.get(((len + 3) & !3).min(data.len())..).unwrap_or(&[]);
    Some((header, &whole[HEADER_LEN..], whole, next))
}

impl SocketTransport {
    async fn run(&self, requests: Vec<Request>, raw: bool) -> Result<Vec<Outcome>, TransportError> {
        let mut conn = self.state.lock().await;
        let mut outcomes = Vec::with_capacity(requests.len());
        let mut requests = requests.into_iter().peekable();
        while requests.peek().is_some() {
            // The kernel runs one dump per socket at a time (a second one
            // fails with EBUSY), so a dump closes its window.
            let mut window = Vec::new();
            while window.len() < WINDOW {
                let Some(request) = requests.next() else {
                    break;
                };
                let dump = request.is_dump();
                window.push(request);
                if dump {
                    break;
                }
            }
            outcomes.extend(conn.window(window, raw).await?);
        }
        Ok(outcomes)
    }
}

#[async_trait]
impl Transport for SocketTransport {
    fn is_kernel_socket(&self) -> bool {
        true
    }

    async fn exchange(&self, requests: Vec<Request>) -> Result<Vec<Reply>, TransportError> {
        let outcomes = self.run(requests, false).await?;
        Ok(outcomes
            .into_iter()
            .map(|o| o.map(|(messages, _)| messages))
            .collect())
    }

    async fn exchange_raw(&self, requests: Vec<Request>) -> Result<Vec<RawReply>, TransportError> {
        let outcomes = self.run(requests, true).await?;
        Ok(outcomes
            .into_iter()
            .map(|o| o.map(|(_, raw)| raw))
            .collect())
    }
}

/// How a [`FakeTransport`] answers one request.
pub type Responder = dyn Fn(&Request) -> Reply + Send + Sync;

/// A transport that records every request and answers from a closure.
///
/// By default every request is acknowledged and every dump is empty. Use it
/// to test code that builds netlink requests without root:
///
/// ```
/// use std::sync::Arc;
/// use overlay_netlink::{FakeTransport, Handle};
///
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// let fake = Arc::new(FakeTransport::new());
/// let handle = Handle::with_transport(fake.clone());
/// // The fake acknowledges the creation but its look-up finds nothing, so
/// // `add_bridge` fails and rolls back: create, look-up, delete.
/// handle.link().add_bridge("br0").await.unwrap_err();
/// assert_eq!(fake.requests().len(), 3);
/// # });
/// ```
pub struct FakeTransport {
    log: Mutex<Vec<Request>>,
    responder: Box<Responder>,
}

impl fmt::Debug for FakeTransport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FakeTransport")
            .field("requests", &self.requests().len())
            .finish_non_exhaustive()
    }
}

impl Default for FakeTransport {
    fn default() -> Self {
        Self::new()
    }
}

impl FakeTransport {
    /// A fake that acknowledges every request and answers dumps with nothing.
    pub fn new() -> Self {
        Self::with_responder(|_| Ok(Vec::new()))
    }

    /// A fake that answers each request with `responder`.
    pub fn with_responder(responder: impl Fn(&Request) -> Reply + Send + Sync + 'static) -> Self {
        FakeTransport {
            log: Mutex::new(Vec::new()),
            responder: Box::new(responder),
        }
    }

    /// Every request received so far, in order.
    pub fn requests(&self) -> Vec<Request> {
        match self.log.lock() {
            Ok(log) => log.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Take the recorded requests, leaving the log empty.
    pub fn take_requests(&self) -> Vec<Request> {
        match self.log.lock() {
            Ok(mut log) => std::mem::take(&mut *log),
            Err(poisoned) => std::mem::take(&mut *poisoned.into_inner()),
        }
    }
}

#[async_trait]
impl Transport for FakeTransport {
    async fn exchange(&self, requests: Vec<Request>) -> Result<Vec<Reply>, TransportError> {
        let replies = requests.iter().map(|r| (self.responder)(r)).collect();
        match self.log.lock() {
            Ok(mut log) => log.extend(requests),
            Err(poisoned) => poisoned.into_inner().extend(requests),
        }
        Ok(replies)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extack_message_is_read_from_tlvs_after_the_capped_header() {
        let mut payload = vec![0u8; 16];
        let msg = b"Unknown device type\0";
        let len = (4 + msg.len()) as u16;
        payload.extend_from_slice(&len.to_ne_bytes());
        payload.extend_from_slice(&NLMSGERR_ATTR_MSG.to_ne_bytes());
        payload.extend_from_slice(msg);
        assert_eq!(
            extack_message(NLM_F_ACK_TLVS, &payload).as_deref(),
            Some("Unknown device type")
        );
        assert_eq!(extack_message(0, &payload), None);
        assert_eq!(extack_message(NLM_F_ACK_TLVS, &payload[..10]), None);
    }

    #[test]
    fn parse_datagram_stops_at_a_truncated_message_without_panicking() {
        // A header that claims 64 bytes in a 20-byte datagram.
        let mut data = vec![0u8; 20];
        data[0..4].copy_from_slice(&64u32.to_ne_bytes());
        assert!(parse_datagram(&data).map(|v| v.is_empty()).unwrap_or(true));
    }

    #[test]
    fn split_message_walks_aligned_messages_and_stops_at_a_short_one() {
        // Two messages: 20 bytes (padded to 20) and 17 bytes (padded to 20),
        // then 3 stray bytes.
        let mut data = Vec::new();
        for (len, kind, seq) in [(20u32, 24u16, 7u32), (17, 28, 8)] {
            data.extend_from_slice(&len.to_ne_bytes());
            data.extend_from_slice(&kind.to_ne_bytes());
            data.extend_from_slice(&0u16.to_ne_bytes());
            data.extend_from_slice(&seq.to_ne_bytes());
            data.extend_from_slice(&0u32.to_ne_bytes());
            data.resize(data.len() + (len as usize - 16), 0xaa);
            data.resize((data.len() + 3) & !3, 0);
        }
        data.extend_from_slice(&[1, 2, 3]);
        let types: Vec<(u16, usize)> = raw_messages(&data).map(|(t, p)| (t, p.len())).collect();
        assert_eq!(types, [(24, 4), (28, 1)]);
        let (h, _, whole, rest) = split_message(&data).unwrap();
        assert_eq!((h.sequence_number, whole.len(), rest.len()), (7, 20, 23));
        // Lengths below the header size or beyond the buffer end the walk.
        assert!(split_message(&[0; 15]).is_none());
        let mut bad = data.clone();
        bad[0..4].copy_from_slice(&8u32.to_ne_bytes());
        assert!(split_message(&bad).is_none());
        bad[0..4].copy_from_slice(&4096u32.to_ne_bytes());
        assert!(split_message(&bad).is_none());
    }

    #[test]
    fn only_get_requests_are_not_changes() {
        assert!(!is_change(
            &RouteNetlinkMessage::GetLink(Default::default())
        ));
        assert!(!is_change(&RouteNetlinkMessage::GetRoute(
            Default::default()
        )));
        assert!(is_change(&RouteNetlinkMessage::NewLink(Default::default())));
        assert!(is_change(&RouteNetlinkMessage::DelNeighbour(
            Default::default()
        )));
    }

    #[tokio::test]
    async fn fake_transport_records_requests_in_order_and_answers_each() {
        let fake = FakeTransport::with_responder(|r| {
            if r.is_dump() {
                Ok(Vec::new())
            } else {
                Err(KernelError::new(libc::EEXIST))
            }
        });
        let msg = RouteNetlinkMessage::GetLink(Default::default());
        let replies = fake
            .exchange(vec![
                Request::new(msg.clone(), NLM_F_DUMP),
                Request::new(msg, 0),
            ])
            .await
            .unwrap();
        assert_eq!(replies.len(), 2);
        assert!(replies[0].is_ok());
        assert_eq!(replies[1].as_ref().unwrap_err().errno, libc::EEXIST);
        assert_eq!(fake.take_requests().len(), 2);
        assert!(fake.requests().is_empty());
    }
}
