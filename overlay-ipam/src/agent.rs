//! Addresses from a node agent over its unix socket: the protocol and the
//! plugin's client.
//!
//! A cluster IPAM (a ring of address blocks shared by every node, such as
//! `overlay_ipam::ring`) lives in a long-running node agent, not in a plugin
//! process. The plugin asks the agent over a unix stream socket; the agent
//! answers from the space its node already owns, so an `ADD` never waits on
//! the network: it gets an address or a typed error at once.
//!
//! # Protocol
//!
//! One request per connection, one response, each a single JSON object on
//! one line (`\n`-terminated, at most [`MAX_MESSAGE`] bytes), carrying the
//! protocol version `"v"` ([`PROTOCOL_VERSION`]):
//!
//! | request `op` | fields | success response `result` |
//! |---|---|---|
//! | `allocate` | `network`, `containerId`, `ifname` | `allocated`: `ips`, `routes` (CNI result form), `mtu` |
//! | `release` | `network`, `containerId`, `ifname` | `done` (also when nothing was allocated) |
//! | `check` | `network`, `containerId`, `ifname` | `done` when the attachment holds its addresses |
//! | `status` | `network` | `done` when an `allocate` can succeed now |
//! | `list` | `network` | `attachments`: every attachment with its addresses |
//!
//! Any request may instead get `{"result":"error","code":N,"msg":..,"details":..}`
//! with a CNI error code: 11 (try again later) when the agent owns no free
//! space yet but expects some, 50 when it cannot allocate at all. A request
//! in a newer protocol version or with an unknown `op` gets an error, never
//! a dropped connection.
//!
//! ```
//! use overlay_ipam::agent::{AgentRequest, AgentResponse, Attachment, decode_request, encode_response};
//!
//! let line = br#"{"v":1,"op":"release","network":"pods","containerId":"c1","ifname":"eth0"}"#;
//! let request = decode_request(line).unwrap();
//! assert_eq!(request, AgentRequest::Release(Attachment::new("pods", "c1", "eth0")));
//! assert_eq!(encode_response(&AgentResponse::Done), b"{\"v\":1,\"result\":\"done\"}\n");
//! ```
//!
//! The plugin side is [`AgentIpam`], an [`Ipam`] like the in-process
//! `host-local`, so a plugin switches from one to the other without other
//! changes. It never hangs: connecting, writing and reading share one
//! deadline ([`DEFAULT_TIMEOUT`] unless configured), and an agent that is
//! not running or does not answer in time is code 11.
//!
//! # Releases while the agent is down
//!
//! A `DEL` must not fail because the agent is restarting: a runtime that
//! cannot delete a pod's network keeps the pod terminating. When the agent
//! cannot be reached (or does not answer), [`AgentIpam::send_release`]
//! records the release in the [`ReleaseJournal`] beside the agent's
//! socket (one small file per attachment) and the `DEL` succeeds. The
//! agent applies the journal before it serves its socket, every few
//! seconds while it runs, and before it allocates for an attachment whose
//! release is recorded (a runtime may retry a failed `ADD` with the same
//! container id after its `DEL`), so a recorded release never frees a
//! later allocation.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::IpAddr;

use ipnet::IpNet;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use overlay_cni::config::GcAttachment;
use overlay_cni::ipam::{Ipam, Lease, StaleAttachment, Teardown};
use overlay_cni::result::{IpConfig, Route};
use overlay_cni::{CniError, CniResult, ErrorCode, Request};
use serde::{Deserialize, Serialize};

/// The protocol version this crate speaks.
pub const PROTOCOL_VERSION: u32 = 1;

/// The longest request or response line, newline included.
pub const MAX_MESSAGE: usize = 64 * 1024;

/// Where the node agent listens unless the configuration says otherwise.
pub const DEFAULT_SOCKET: &str = "/run/overlay/overlayd.sock";

/// How long a plugin waits for the agent in all (connect, send, answer).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(2);

/// One attachment: the network, the container and its interface.
///
/// ```
/// use overlay_ipam::agent::Attachment;
///
/// let a = Attachment::new("pods", "c1", "eth0");
/// assert_eq!(serde_json::to_string(&a).unwrap(), r#"{"network":"pods","containerId":"c1","ifname":"eth0"}"#);
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Attachment {
    /// The CNI network name.
    pub network: String,
    /// `CNI_CONTAINERID`.
    #[serde(rename = "containerId")]
    pub container_id: String,
    /// `CNI_IFNAME`.
    pub ifname: String,
}

impl Attachment {
    /// An attachment from its parts.
    pub fn new(
        network: impl Into<String>,
        container_id: impl Into<String>,
        ifname: impl Into<String>,
    ) -> Self {
        Attachment {
            network: network.into(),
            container_id: container_id.into(),
            ifname: ifname.into(),
        }
    }

    /// The attachment a CNI request is about.
    ///
    /// ```
    /// use overlay_cni::plugin::{CniEnv, Command, Request};
    /// use overlay_ipam::agent::Attachment;
    ///
    /// let env = CniEnv { container_id: "c1".into(), ifname: "eth0".into(), ..CniEnv::default() };
    /// let req = Request::new(Command::Add, env, br#"{"cniVersion":"1.0.0","name":"pods","type":"overlay"}"#).unwrap();
    /// assert_eq!(Attachment::of(&req), Attachment::new("pods", "c1", "eth0"));
    /// ```
    pub fn of(req: &Request) -> Self {
        Attachment::new(req.network_name(), req.container_id(), req.ifname())
    }
}

/// A network, for requests about all of its attachments.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Network {
    /// The CNI network name.
    pub network: String,
}

impl Network {
    /// A network by name.
    pub fn new(network: impl Into<String>) -> Self {
        Network {
            network: network.into(),
        }
    }
}

/// A request from a plugin to the agent.
///
/// ```
/// use overlay_ipam::agent::{AgentRequest, Network, encode_request};
///
/// let line = encode_request(&AgentRequest::Status(Network::new("pods")));
/// assert_eq!(line, b"{\"v\":1,\"op\":\"status\",\"network\":\"pods\"}\n");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "lowercase")]
#[non_exhaustive]
pub enum AgentRequest {
    /// Allocate the attachment's addresses (or return the ones it holds).
    Allocate(Attachment),
    /// Release the attachment's addresses; absent is success.
    Release(Attachment),
    /// Whether the attachment holds its addresses.
    Check(Attachment),
    /// Whether an allocation can succeed now.
    Status(Network),
    /// Every attachment of the network, with its addresses.
    List(Network),
}

/// One address of an allocation, with its gateway.
///
/// ```
/// use overlay_ipam::agent::AllocatedIp;
///
/// let ip = AllocatedIp::new("10.32.0.5/26".parse().unwrap()).with_gateway("10.32.0.1".parse().unwrap());
/// assert_eq!(serde_json::to_string(&ip).unwrap(), r#"{"address":"10.32.0.5/26","gateway":"10.32.0.1"}"#);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct AllocatedIp {
    /// The address with the prefix length of its subnet.
    pub address: IpNet,
    /// The pod's gateway in that subnet, when it has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway: Option<IpAddr>,
}

impl AllocatedIp {
    /// An address without gateway.
    pub fn new(address: IpNet) -> Self {
        AllocatedIp {
            address,
            gateway: None,
        }
    }

    /// The address with a gateway.
    pub fn with_gateway(mut self, gateway: IpAddr) -> Self {
        self.gateway = Some(gateway);
        self
    }
}

/// The addresses of an attachment, as the agent hands them out.
///
/// ```
/// use overlay_ipam::agent::{AllocatedIp, Allocation};
///
/// let a = Allocation::new(vec![AllocatedIp::new("10.32.0.5/26".parse().unwrap())]);
/// assert_eq!(a.mtu, None);
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Allocation {
    /// The addresses, with their gateways.
    pub ips: Vec<AllocatedIp>,
    /// The routes the pod needs, in CNI result form.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub routes: Vec<Route>,
    /// The MTU the pod interface must have (the overlay's), when the agent
    /// knows it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mtu: Option<u32>,
}

impl Allocation {
    /// An allocation of `ips`, without routes or MTU.
    pub fn new(ips: Vec<AllocatedIp>) -> Self {
        Allocation {
            ips,
            routes: Vec::new(),
            mtu: None,
        }
    }
}

/// One attachment and its addresses, as [`AgentRequest::List`] returns it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct AttachmentRecord {
    /// `CNI_CONTAINERID`.
    #[serde(rename = "containerId")]
    pub container_id: String,
    /// `CNI_IFNAME`.
    pub ifname: String,
    /// The addresses it holds.
    pub ips: Vec<IpAddr>,
}

impl AttachmentRecord {
    /// A record from its parts.
    pub fn new(
        container_id: impl Into<String>,
        ifname: impl Into<String>,
        ips: Vec<IpAddr>,
    ) -> Self {
        AttachmentRecord {
            container_id: container_id.into(),
            ifname: ifname.into(),
            ips,
        }
    }
}

/// An error the agent reports, with a CNI error code.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct AgentError {
    /// The CNI error code (11: try again later; 50: not available; ...).
    pub code: u32,
    /// What went wrong, for the operator.
    pub msg: String,
    /// More detail, when there is some.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub details: String,
}

impl AgentError {
    /// An error with a code and a message.
    ///
    /// ```
    /// use overlay_ipam::agent::AgentError;
    /// let e = AgentError::new(11, "no space yet: waiting for a block from a peer");
    /// assert_eq!(e.code, 11);
    /// ```
    pub fn new(code: u32, msg: impl Into<String>) -> Self {
        AgentError {
            code,
            msg: msg.into(),
            details: String::new(),
        }
    }

    /// The same error with details.
    pub fn with_details(mut self, details: impl Into<String>) -> Self {
        self.details = details.into();
        self
    }
}

impl From<AgentError> for CniError {
    fn from(e: AgentError) -> Self {
        CniError::new(ErrorCode::from_code(e.code), e.msg).with_details(e.details)
    }
}

/// The agent's answer to one request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "result", rename_all = "lowercase")]
#[non_exhaustive]
pub enum AgentResponse {
    /// The attachment's addresses.
    Allocated(Allocation),
    /// Success without data.
    Done,
    /// The network's attachments.
    Attachments {
        /// Every attachment with its addresses.
        attachments: Vec<AttachmentRecord>,
    },
    /// The request failed.
    Error(AgentError),
}

/// A protocol message that cannot be read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ProtocolError {
    /// Longer than [`MAX_MESSAGE`].
    #[error("message longer than {MAX_MESSAGE} bytes")]
    TooLarge,
    /// Not a message of this protocol (bad JSON, unknown `op`, missing field).
    #[error("malformed message: {0}")]
    Malformed(String),
    /// A protocol version this side does not speak.
    #[error("protocol version {0} is not supported (this side speaks {PROTOCOL_VERSION})")]
    UnsupportedVersion(u32),
    /// The connection failed or closed before a whole message.
    #[error("connection: {0}")]
    Io(#[from] std::io::Error),
}

impl ProtocolError {
    /// The response an agent sends for a request it cannot read.
    ///
    /// ```
    /// use overlay_ipam::agent::{AgentResponse, decode_request};
    ///
    /// let err = decode_request(br#"{"v":1,"op":"teleport"}"#).unwrap_err();
    /// let AgentResponse::Error(e) = err.to_response() else { panic!() };
    /// assert_eq!(e.code, 6);
    /// ```
    pub fn to_response(&self) -> AgentResponse {
        let code = match self {
            ProtocolError::UnsupportedVersion(_) => ErrorCode::IncompatibleCniVersion,
            ProtocolError::Io(_) => ErrorCode::IoFailure,
            _ => ErrorCode::DecodingFailure,
        };
        AgentResponse::Error(AgentError::new(code.code(), self.to_string()))
    }
}

/// A message with the protocol version beside its body.
#[derive(Serialize, Deserialize)]
struct Envelope<T> {
    v: u32,
    #[serde(flatten)]
    body: T,
}

/// Only the version, read first so a newer peer gets a version error
/// rather than a confusing field error.
#[derive(Deserialize)]
struct VersionOnly {
    v: u32,
}

fn encode<T: Serialize>(body: &T) -> Vec<u8> {
    let mut line = serde_json::to_vec(&Envelope {
        v: PROTOCOL_VERSION,
        body,
    })
    .unwrap_or_else(|e| {
        // The message types serialize infallibly (strings, numbers and
        // addresses); keep the line well-formed if that ever changes.
        format!(r#"{{"v":{PROTOCOL_VERSION},"result":"error","code":999,"msg":"encoding: {e}"}}"#)
            .into_bytes()
    });
    line.push(b'\n');
    line
}

fn decode<T: for<'de> Deserialize<'de>>(line: &[u8]) -> Result<T, ProtocolError> {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    if line.len() >= MAX_MESSAGE {
        return Err(ProtocolError::TooLarge);
    }
    let malformed = |e: serde_json::Error| ProtocolError::Malformed(e.to_string());
    let VersionOnly { v } = serde_json::from_slice(line).map_err(malformed)?;
    if v != PROTOCOL_VERSION {
        return Err(ProtocolError::UnsupportedVersion(v));
    }
    let Envelope { body, .. } = serde_json::from_slice(line).map_err(malformed)?;
    Ok(body)
}

/// One request line, newline included.
pub fn encode_request(request: &AgentRequest) -> Vec<u8> {
    encode(request)
}

/// One response line, newline included.
pub fn encode_response(response: &AgentResponse) -> Vec<u8> {
    encode(response)
}

/// A request from one line (with or without its newline).
///
/// ```
/// use overlay_ipam::agent::{ProtocolError, decode_request};
///
/// assert!(matches!(decode_request(br#"{"v":2,"op":"status","network":"n"}"#), Err(ProtocolError::UnsupportedVersion(2))));
/// assert!(matches!(decode_request(b"not json"), Err(ProtocolError::Malformed(_))));
/// ```
pub fn decode_request(line: &[u8]) -> Result<AgentRequest, ProtocolError> {
    decode(line)
}

/// A response from one line (with or without its newline).
pub fn decode_response(line: &[u8]) -> Result<AgentResponse, ProtocolError> {
    decode(line)
}

/// Read one `\n`-terminated line of at most [`MAX_MESSAGE`] bytes.
///
/// ```
/// let mut input: &[u8] = b"{\"v\":1}\nrest";
/// assert_eq!(overlay_ipam::agent::read_line(&mut input).unwrap(), b"{\"v\":1}\n");
/// ```
pub fn read_line(reader: impl Read) -> Result<Vec<u8>, ProtocolError> {
    let mut line = Vec::new();
    let limit = u64::try_from(MAX_MESSAGE).unwrap_or(u64::MAX);
    BufReader::new(reader.take(limit)).read_until(b'\n', &mut line)?;
    if line.last() != Some(&b'\n') {
        return Err(if line.len() >= MAX_MESSAGE {
            ProtocolError::TooLarge
        } else {
            ProtocolError::Io(std::io::ErrorKind::UnexpectedEof.into())
        });
    }
    Ok(line)
}

/// A plugin's IPAM served by the node agent (see the [module docs](self)).
///
/// ```no_run
/// use overlay_cni::ipam::Ipam;
/// use overlay_ipam::agent::AgentIpam;
///
/// # fn f(req: &overlay_cni::Request) -> Result<(), overlay_cni::CniError> {
/// let ipam = AgentIpam::from_request(req)?;
/// let lease = ipam.add(req)?;
/// println!("{}", lease.result().ips[0].address);
/// let _ = lease.commit();
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct AgentIpam {
    socket: PathBuf,
    timeout: Duration,
}

impl AgentIpam {
    /// The agent at `socket`, with [`DEFAULT_TIMEOUT`].
    pub fn new(socket: impl Into<PathBuf>) -> Self {
        AgentIpam {
            socket: socket.into(),
            timeout: DEFAULT_TIMEOUT,
        }
    }

    /// The agent named by the request's configuration: `"socket"` in the
    /// plugin's object (a path), else [`DEFAULT_SOCKET`]; `"agentTimeoutMs"`
    /// for the deadline. Code 7 when they are not a string and a positive
    /// number.
    ///
    /// ```
    /// use overlay_cni::plugin::{CniEnv, Command, Request};
    /// use overlay_ipam::agent::AgentIpam;
    ///
    /// let conf = br#"{"cniVersion":"1.0.0","name":"n","type":"overlay","socket":"/tmp/a.sock","agentTimeoutMs":500}"#;
    /// let req = Request::new(Command::Add, CniEnv::default(), conf).unwrap();
    /// let ipam = AgentIpam::from_request(&req).unwrap();
    /// assert_eq!(ipam.socket(), std::path::Path::new("/tmp/a.sock"));
    /// assert_eq!(ipam.timeout().as_millis(), 500);
    /// ```
    pub fn from_request(req: &Request) -> Result<Self, CniError> {
        let invalid = |msg: String| CniError::new(ErrorCode::InvalidNetworkConfig, msg);
        let socket = match req.config.extra.get("socket") {
            None => DEFAULT_SOCKET,
            Some(serde_json::Value::String(s)) if !s.is_empty() => s.as_str(),
            Some(other) => return Err(invalid(format!("socket must be a path, not {other}"))),
        };
        let mut ipam = AgentIpam::new(socket);
        match req.config.extra.get("agentTimeoutMs") {
            None => {}
            Some(v) => match v.as_u64().filter(|ms| *ms > 0) {
                Some(ms) => ipam.timeout = Duration::from_millis(ms),
                None => {
                    return Err(invalid(format!(
                        "agentTimeoutMs must be a positive number of milliseconds, not {v}"
                    )));
                }
            },
        }
        Ok(ipam)
    }

    /// The same client with another deadline.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The agent's socket.
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// The deadline of one request.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Send one request and read its response, within the deadline. An
    /// unreachable or silent agent is code 11; an error response is the
    /// agent's code.
    pub fn call(&self, request: &AgentRequest) -> Result<AgentResponse, CniError> {
        self.send(request)?.response()
    }

    /// Send one request and return at once, without waiting for the
    /// response: the plugin works on while the agent answers, and reads the
    /// answer with [`PendingCall::response`]. [`call`](Self::call) is both
    /// at once; the deadline counts from here. An unreachable agent is code
    /// 11.
    ///
    /// ```no_run
    /// use overlay_ipam::agent::{AgentIpam, AgentRequest, Attachment};
    ///
    /// # fn f(req: &overlay_cni::Request) -> Result<(), overlay_cni::CniError> {
    /// let agent = AgentIpam::from_request(req)?;
    /// let pending = agent.send(&AgentRequest::Allocate(Attachment::of(req)))?;
    /// // ... create the links while the agent allocates ...
    /// let response = pending.response()?;
    /// # Ok(()) }
    /// ```
    pub fn send(&self, request: &AgentRequest) -> Result<PendingCall<'_>, CniError> {
        let deadline = Instant::now() + self.timeout;
        let stream = connect(&self.socket, deadline)
            .map_err(|e| self.unreachable("is not reachable (is overlayd running?)", &e))?;
        let pending = PendingCall {
            agent: self,
            stream,
            deadline,
        };
        pending
            .stream
            .set_write_timeout(Some(pending.left()))
            .map_err(|e| pending.io(e))?;
        (&pending.stream)
            .write_all(&encode_request(request))
            .map_err(|e| pending.io(e))?;
        Ok(pending)
    }

    /// Send the release of `attachment` and return at once (as
    /// [`send`](Self::send)); [`PendingRelease::finish`] reads the answer,
    /// or records the release in the [`journal`](Self::journal) when the
    /// agent cannot be reached or does not answer in time.
    ///
    /// ```no_run
    /// use overlay_ipam::agent::{AgentIpam, Attachment};
    ///
    /// # fn f(req: &overlay_cni::Request) -> Result<(), overlay_cni::CniError> {
    /// let agent = AgentIpam::from_request(req)?;
    /// let release = agent.send_release(Attachment::of(req));
    /// // ... delete the links meanwhile ...
    /// release.finish()?; // Ok also when the agent is down: journaled
    /// # Ok(()) }
    /// ```
    pub fn send_release(&self, attachment: Attachment) -> PendingRelease<'_> {
        let call = self.send(&AgentRequest::Release(attachment.clone()));
        PendingRelease {
            agent: self,
            attachment,
            call,
        }
    }

    /// The journal of releases the agent has yet to apply, beside its
    /// socket ([`ReleaseJournal::beside`]).
    ///
    /// ```
    /// let agent = overlay_ipam::agent::AgentIpam::new("/run/overlay/overlayd.sock");
    /// assert_eq!(agent.journal().dir(), std::path::Path::new("/run/overlay/pending-release"));
    /// ```
    pub fn journal(&self) -> ReleaseJournal {
        ReleaseJournal::beside(&self.socket)
    }

    /// Code 11: the agent cannot be reached or did not answer.
    fn unreachable(&self, what: &str, e: &dyn std::fmt::Display) -> CniError {
        CniError::new(
            ErrorCode::TryAgainLater,
            format!("the node agent at {} {what}: {e}", self.socket.display()),
        )
    }

    /// [`call`](Self::call), with an error response as an error.
    fn call_ok(&self, request: &AgentRequest) -> Result<AgentResponse, CniError> {
        match self.call(request)? {
            AgentResponse::Error(e) => Err(e.into()),
            other => Ok(other),
        }
    }

    fn unexpected(&self, op: &str, got: &AgentResponse) -> CniError {
        CniError::new(
            ErrorCode::Internal,
            format!(
                "the node agent at {} answered {op} with {got:?}",
                self.socket.display()
            ),
        )
    }

    fn expect_done(&self, op: &str, request: &AgentRequest) -> Result<(), CniError> {
        self.send(request)?.done(op)
    }
}

/// A request sent to the agent whose response has not been read yet; see
/// [`AgentIpam::send`]. Dropping it abandons the response (the agent still
/// carries out the request).
#[derive(Debug)]
pub struct PendingCall<'a> {
    agent: &'a AgentIpam,
    stream: UnixStream,
    deadline: Instant,
}

impl PendingCall<'_> {
    /// Wait for the response, until the deadline set when the request was
    /// sent. A silent agent is code 11; an error response is returned as
    /// the agent sent it ([`AgentResponse::Error`]).
    pub fn response(self) -> Result<AgentResponse, CniError> {
        self.stream
            .set_read_timeout(Some(self.left()))
            .map_err(|e| self.io(e))?;
        let line = read_line(&self.stream).map_err(|e| match e {
            ProtocolError::Io(e) => self.io(e),
            other => self.agent.unreachable("sent an unreadable answer", &other),
        })?;
        decode_response(&line).map_err(|e| self.agent.unreachable("sent an unreadable answer", &e))
    }

    /// The response to an `allocate`: the allocation; the agent's error
    /// response as that error, anything else code 999.
    pub fn allocated(self) -> Result<Allocation, CniError> {
        let agent = self.agent;
        match self.response()? {
            AgentResponse::Allocated(a) => Ok(a),
            AgentResponse::Error(e) => Err(e.into()),
            other => Err(agent.unexpected("allocate", &other)),
        }
    }

    /// The response to a request answered with `done` (`release`,
    /// `check`, named `op` in errors); the agent's error response as that
    /// error, anything else code 999.
    pub fn done(self, op: &str) -> Result<(), CniError> {
        let agent = self.agent;
        match self.response()? {
            AgentResponse::Done => Ok(()),
            AgentResponse::Error(e) => Err(e.into()),
            other => Err(agent.unexpected(op, &other)),
        }
    }

    /// The time left until the deadline (at least a millisecond: a zero
    /// timeout would mean none).
    fn left(&self) -> Duration {
        self.deadline
            .saturating_duration_since(Instant::now())
            .max(Duration::from_millis(1))
    }

    /// An I/O failure of the exchange: code 11, naming a timeout as such.
    fn io(&self, e: std::io::Error) -> CniError {
        if matches!(
            e.kind(),
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
        ) {
            let what = format!("did not answer within {:?}", self.agent.timeout);
            self.agent.unreachable(&what, &e)
        } else {
            self.agent.unreachable("failed", &e)
        }
    }
}

/// Connect to a unix socket, giving up at `deadline` (a socket whose
/// listener is not accepting cannot block us: a unix connect that would
/// block returns `EAGAIN` at once, retried until the deadline).
fn connect(path: &Path, deadline: Instant) -> std::io::Result<UnixStream> {
    loop {
        match UnixStream::connect(path) {
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock && Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(5));
            }
            other => return other,
        }
    }
}

impl Ipam for AgentIpam {
    fn add(&self, req: &Request) -> Result<Lease, CniError> {
        let attachment = Attachment::of(req);
        let allocation = self
            .send(&AgentRequest::Allocate(attachment.clone()))?
            .allocated()?;
        let mut result = CniResult::new(req.version);
        result.ips = allocation
            .ips
            .iter()
            .map(|ip| {
                let config = IpConfig::new(ip.address);
                match ip.gateway {
                    Some(gw) => config.with_gateway(gw),
                    None => config,
                }
            })
            .collect();
        result.routes = allocation.routes;
        let client = self.clone();
        Ok(Lease::new(result, move || {
            // A failed ADD gives the address back now, or through the
            // journal when the agent went away meanwhile.
            let _ = client.send_release(attachment).finish();
        }))
    }

    fn del(&self, req: &Request) -> Result<(), CniError> {
        self.send_release(Attachment::of(req)).finish()
    }

    fn check(&self, req: &Request) -> Result<(), CniError> {
        self.expect_done("check", &AgentRequest::Check(Attachment::of(req)))
    }

    /// Asks the agent for the network's attachments, tears down each one
    /// not in `valid` and releases it only when that succeeded. When some
    /// could not be torn down, fails with the first teardown's code and
    /// every kept attachment in the details (as `host-local`'s GC does).
    fn gc(
        &self,
        req: &Request,
        valid: &[GcAttachment],
        teardown: &mut Teardown<'_>,
    ) -> Result<(), CniError> {
        let network = req.network_name().to_owned();
        let attachments = match self.call_ok(&AgentRequest::List(Network::new(network.clone())))? {
            AgentResponse::Attachments { attachments } => attachments,
            other => return Err(self.unexpected("list", &other)),
        };
        let mut kept: Vec<(String, CniError)> = Vec::new();
        for a in attachments.iter().filter(|a| {
            !valid
                .iter()
                .any(|v| v.container_id == a.container_id && v.ifname == a.ifname)
        }) {
            let stale = StaleAttachment::new(&a.container_id, Some(&a.ifname), &a.ips);
            match teardown(&stale) {
                Ok(()) => self.expect_done(
                    "release",
                    &AgentRequest::Release(Attachment::new(
                        network.clone(),
                        a.container_id.clone(),
                        a.ifname.clone(),
                    )),
                )?,
                Err(e) => kept.push((format!("{}/{}", a.container_id, a.ifname), e)),
            }
        }
        let Some((_, first)) = kept.first() else {
            return Ok(());
        };
        let details: Vec<String> = kept
            .iter()
            .map(|(who, e)| format!("{who}: {}", e.msg))
            .collect();
        Err(CniError::new(
            first.code,
            format!(
                "GC kept {} stale attachment(s) it could not tear down whole; their addresses stay reserved",
                kept.len()
            ),
        )
        .with_details(details.join("; ")))
    }

    fn status(&self, req: &Request) -> Result<(), CniError> {
        let network = Network::new(req.network_name());
        match self.call(&AgentRequest::Status(network)) {
            Ok(AgentResponse::Done) => Ok(()),
            Ok(AgentResponse::Error(e)) => Err(CniError::new(
                ErrorCode::PluginNotAvailable,
                format!("the node agent cannot allocate now: {}", e.msg),
            )
            .with_details(e.details)),
            Ok(other) => Err(self.unexpected("status", &other)),
            // STATUS speaks of availability: an unreachable agent is 50.
            Err(e) => Err(CniError::new(ErrorCode::PluginNotAvailable, e.msg)),
        }
    }
}

// The agent's side: the node-side service (sans-IO) and its socket server.

#[cfg(feature = "agent-server")]
#[cfg_attr(docsrs, doc(cfg(feature = "agent-server")))]
pub mod server;
pub mod service;

mod journal;
pub use journal::{PendingRelease, PendingReleases, ReleaseJournal};

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::UnixListener;
    use std::sync::{Arc, Mutex};

    use overlay_cni::plugin::{CniEnv, Command};

    fn request(command: Command, socket: &Path) -> Request {
        let conf = format!(
            r#"{{"cniVersion":"1.0.0","name":"pods","type":"overlay","socket":"{}"}}"#,
            socket.display()
        );
        let env = CniEnv {
            container_id: "c1".into(),
            ifname: "eth0".into(),
            ..CniEnv::default()
        };
        Request::new(command, env, conf.as_bytes()).expect("valid request")
    }

    /// An agent on a thread: answers each connection with `answer`,
    /// recording the requests.
    fn agent(
        dir: &Path,
        answer: impl Fn(&AgentRequest) -> AgentResponse + Send + 'static,
    ) -> (PathBuf, Arc<Mutex<Vec<AgentRequest>>>) {
        let path = dir.join("agent.sock");
        let listener = UnixListener::bind(&path).expect("bind");
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = seen.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { return };
                let response = match read_line(&stream).and_then(|l| decode_request(&l)) {
                    Ok(req) => {
                        let resp = answer(&req);
                        log.lock().expect("log").push(req);
                        resp
                    }
                    Err(e) => e.to_response(),
                };
                let _ = stream.write_all(&encode_response(&response));
            }
        });
        (path, seen)
    }

    #[test]
    fn add_returns_the_agents_addresses_and_a_dropped_lease_releases_them() {
        let dir = tempfile::tempdir().expect("temp dir");
        let (socket, seen) = agent(dir.path(), |req| match req {
            AgentRequest::Allocate(_) => {
                let mut a = Allocation::new(vec![
                    AllocatedIp::new("10.32.0.5/26".parse().expect("net"))
                        .with_gateway("10.32.0.1".parse().expect("ip")),
                ]);
                a.routes = vec![Route::new("0.0.0.0/0".parse().expect("net"))];
                a.mtu = Some(1450);
                AgentResponse::Allocated(a)
            }
            _ => AgentResponse::Done,
        });
        let req = request(Command::Add, &socket);
        let ipam = AgentIpam::from_request(&req).expect("config");
        let lease = ipam.add(&req).expect("allocated");
        assert_eq!(lease.result().ips[0].address.to_string(), "10.32.0.5/26");
        assert_eq!(lease.result().routes.len(), 1);
        drop(lease);
        let seen = seen.lock().expect("log").clone();
        let attachment = Attachment::new("pods", "c1", "eth0");
        assert_eq!(
            seen,
            [
                AgentRequest::Allocate(attachment.clone()),
                AgentRequest::Release(attachment)
            ]
        );
    }

    #[test]
    fn no_space_yet_is_the_agents_code_11() {
        let dir = tempfile::tempdir().expect("temp dir");
        let (socket, _) = agent(dir.path(), |_| {
            AgentResponse::Error(AgentError::new(
                11,
                "no space yet: asked 2 peers for a block",
            ))
        });
        let req = request(Command::Add, &socket);
        let err = AgentIpam::from_request(&req)
            .expect("config")
            .add(&req)
            .expect_err("refused");
        assert_eq!(err.code, ErrorCode::TryAgainLater);
        assert!(err.msg.contains("no space yet"), "{}", err.msg);
    }

    #[test]
    fn an_absent_agent_is_code_11_and_status_50_at_once() {
        let dir = tempfile::tempdir().expect("temp dir");
        let socket = dir.path().join("nobody.sock");
        let req = request(Command::Add, &socket);
        let ipam = AgentIpam::from_request(&req).expect("config");
        let err = ipam.add(&req).expect_err("refused");
        assert_eq!(err.code, ErrorCode::TryAgainLater);
        assert!(err.msg.contains("is overlayd running"), "{}", err.msg);
        let err = ipam.status(&req).expect_err("not available");
        assert_eq!(err.code, ErrorCode::PluginNotAvailable);
    }

    #[test]
    fn del_with_the_agent_down_is_journaled_and_succeeds() {
        let dir = tempfile::tempdir().expect("temp dir");
        let socket = dir.path().join("run/overlayd.sock");
        let req = request(Command::Del, &socket);
        let ipam = AgentIpam::from_request(&req).expect("config");
        ipam.del(&req).expect("journaled, not failed");
        ipam.del(&req).expect("again: one entry");
        let journal = ipam.journal();
        assert_eq!(journal.dir(), dir.path().join("run/pending-release"));
        let pending = journal.pending().expect("readable");
        assert_eq!(pending.attachments, [Attachment::new("pods", "c1", "eth0")]);
        assert!(pending.unreadable.is_empty());
        // Owner-only: the journal tells which pods a node had.
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(journal.dir())
            .expect("dir")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o700);
    }

    #[test]
    fn an_answering_agent_is_never_journaled_and_its_refusal_is_the_error() {
        let dir = tempfile::tempdir().expect("temp dir");
        let (socket, _) = agent(dir.path(), |_| {
            AgentResponse::Error(AgentError::new(104, "store unwritable"))
        });
        let req = request(Command::Del, &socket);
        let ipam = AgentIpam::from_request(&req).expect("config");
        let err = ipam.del(&req).expect_err("refused");
        assert_eq!(err.code, ErrorCode::Other(104));
        assert!(
            ipam.journal()
                .pending()
                .expect("readable")
                .attachments
                .is_empty()
        );
        let dir2 = tempfile::tempdir().expect("temp dir");
        let (socket, _) = agent(dir2.path(), |_| AgentResponse::Done);
        let req = request(Command::Del, &socket);
        let ipam = AgentIpam::from_request(&req).expect("config");
        ipam.del(&req).expect("released");
        assert!(!ipam.journal().dir().exists(), "nothing journaled");
    }

    #[test]
    fn a_silent_agent_is_journaled_after_the_deadline() {
        let dir = tempfile::tempdir().expect("temp dir");
        let socket = dir.path().join("agent.sock");
        // Accepts connections (the kernel's backlog) but never answers.
        let _listener = UnixListener::bind(&socket).expect("bind");
        let ipam = AgentIpam::new(&socket).with_timeout(Duration::from_millis(50));
        let a = Attachment::new("pods", "c9", "eth1");
        ipam.send_release(a.clone()).finish().expect("journaled");
        assert!(ipam.journal().contains(&a));
    }

    #[test]
    fn the_journal_skips_temporary_files_and_reports_foreign_ones() {
        let dir = tempfile::tempdir().expect("temp dir");
        let journal = ReleaseJournal::new(dir.path().join("j"));
        let (a, b) = (
            Attachment::new("pods", "a", "eth0"),
            Attachment::new("pods", "b", "eth0"),
        );
        journal.record(&a).expect("record");
        journal.record(&b).expect("record");
        let j = journal.dir();
        std::fs::write(j.join("0000000000000000.tmp42"), b"partial").expect("write");
        std::fs::write(
            j.join("0000000000000001.release"),
            b"{\"v\":1,\"op\":\"status\",\"network\":\"pods\"}\n",
        )
        .expect("write");
        // A valid release under another attachment's name is not trusted.
        let line = encode_request(&AgentRequest::Release(a.clone()));
        std::fs::write(j.join("0000000000000002.release"), line).expect("write");
        let pending = journal.pending().expect("readable");
        let mut got = pending.attachments.clone();
        got.sort_by(|x, y| x.container_id.cmp(&y.container_id));
        assert_eq!(got, [a.clone(), b.clone()]);
        assert_eq!(pending.unreadable.len(), 2, "{:?}", pending.unreadable);
        journal.remove(&a).expect("remove");
        journal.remove(&a).expect("absent is fine");
        assert!(!journal.contains(&a) && journal.contains(&b));
        // No directory: nothing pending.
        let none = ReleaseJournal::new(dir.path().join("absent"))
            .pending()
            .expect("empty");
        assert_eq!(none, PendingReleases::default());
    }

    #[test]
    fn a_sent_request_reaches_the_agent_before_its_response_is_read() {
        let dir = tempfile::tempdir().expect("temp dir");
        let (socket, seen) = agent(dir.path(), |_| AgentResponse::Done);
        let ipam = AgentIpam::new(&socket);
        let attachment = Attachment::new("n", "c1", "eth0");
        let pending = ipam
            .send(&AgentRequest::Release(attachment.clone()))
            .expect("sent");
        // The agent gets and handles the request while the response waits.
        let deadline = Instant::now() + Duration::from_secs(5);
        while seen.lock().expect("log").is_empty() {
            assert!(Instant::now() < deadline, "the agent never got the request");
            std::thread::sleep(Duration::from_millis(1));
        }
        assert_eq!(pending.response().expect("answer"), AgentResponse::Done);
        assert_eq!(
            *seen.lock().expect("log"),
            [AgentRequest::Release(attachment)]
        );
        // An absent agent fails the send, not the response.
        let err = AgentIpam::new(dir.path().join("absent.sock"))
            .send(&AgentRequest::Status(Network::new("n")))
            .expect_err("unreachable");
        assert_eq!(err.code, ErrorCode::TryAgainLater);
    }

    #[test]
    fn a_silent_agent_is_code_11_after_the_deadline_not_a_hang() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("silent.sock");
        let listener = UnixListener::bind(&path).expect("bind");
        // Accepts and reads, never answers.
        let hold = std::thread::spawn(move || {
            let (stream, _) = listener.accept().expect("accept");
            let _ = read_line(&stream);
            std::thread::sleep(Duration::from_millis(500));
        });
        let req = request(Command::Add, &path);
        let ipam = AgentIpam::from_request(&req)
            .expect("config")
            .with_timeout(Duration::from_millis(100));
        let started = Instant::now();
        let err = ipam.add(&req).expect_err("timed out");
        assert_eq!(err.code, ErrorCode::TryAgainLater);
        assert!(err.msg.contains("did not answer"), "{}", err.msg);
        assert!(started.elapsed() < Duration::from_millis(450));
        hold.join().expect("agent thread");
    }

    #[test]
    fn gc_tears_down_and_releases_only_stale_attachments() {
        let dir = tempfile::tempdir().expect("temp dir");
        let (socket, seen) = agent(dir.path(), |req| match req {
            AgentRequest::List(_) => AgentResponse::Attachments {
                attachments: vec![
                    AttachmentRecord::new("live", "eth0", vec!["10.32.0.2".parse().expect("ip")]),
                    AttachmentRecord::new("gone", "eth0", vec!["10.32.0.3".parse().expect("ip")]),
                    AttachmentRecord::new("stuck", "eth0", vec!["10.32.0.4".parse().expect("ip")]),
                ],
            },
            _ => AgentResponse::Done,
        });
        let req = request(Command::Gc, &socket);
        let ipam = AgentIpam::from_request(&req).expect("config");
        let valid: Vec<GcAttachment> =
            serde_json::from_str(r#"[{"containerID":"live","ifname":"eth0"}]"#)
                .expect("valid attachments");
        let mut torn = Vec::new();
        let err = ipam
            .gc(&req, &valid, &mut |a: &StaleAttachment<'_>| {
                torn.push(a.container_id.to_owned());
                if a.container_id == "stuck" {
                    Err(CniError::plugin(101, "veth busy"))
                } else {
                    Ok(())
                }
            })
            .expect_err("one kept");
        assert_eq!(torn, ["gone", "stuck"]);
        assert_eq!(err.code, ErrorCode::Other(101));
        assert!(err.details.contains("stuck/eth0"), "{}", err.details);
        let released: Vec<_> = seen
            .lock()
            .expect("log")
            .iter()
            .filter_map(|r| match r {
                AgentRequest::Release(a) => Some(a.container_id.clone()),
                _ => None,
            })
            .collect();
        assert_eq!(released, ["gone"]);
    }

    #[test]
    fn a_newer_protocol_or_unknown_op_gets_an_error_response() {
        let err = decode_request(br#"{"v":9,"op":"allocate"}"#).expect_err("newer");
        assert!(matches!(err, ProtocolError::UnsupportedVersion(9)));
        let AgentResponse::Error(e) = err.to_response() else {
            panic!("an error response")
        };
        assert_eq!(e.code, 1);
        let err = decode_request(br#"{"v":1,"op":"teleport","network":"n"}"#).expect_err("unknown");
        assert!(matches!(err, ProtocolError::Malformed(_)));
        let long = vec![b'x'; MAX_MESSAGE + 10];
        assert!(matches!(read_line(&long[..]), Err(ProtocolError::TooLarge)));
        assert!(matches!(
            decode_request(&long),
            Err(ProtocolError::TooLarge)
        ));
    }

    #[test]
    fn every_request_and_response_round_trips() {
        let a = Attachment::new("pods", "c1", "eth0");
        for req in [
            AgentRequest::Allocate(a.clone()),
            AgentRequest::Release(a.clone()),
            AgentRequest::Check(a),
            AgentRequest::Status(Network::new("pods")),
            AgentRequest::List(Network::new("pods")),
        ] {
            assert_eq!(
                decode_request(&encode_request(&req)).expect("round trip"),
                req
            );
        }
        let mut alloc = Allocation::new(vec![AllocatedIp::new(
            "2001:db8::5/64".parse().expect("net"),
        )]);
        alloc.mtu = Some(1430);
        for resp in [
            AgentResponse::Allocated(alloc),
            AgentResponse::Done,
            AgentResponse::Attachments {
                attachments: vec![AttachmentRecord::new("c", "eth0", vec![])],
            },
            AgentResponse::Error(AgentError::new(50, "exhausted").with_details("ring full")),
        ] {
            assert_eq!(
                decode_response(&encode_response(&resp)).expect("round trip"),
                resp
            );
        }
    }
}
