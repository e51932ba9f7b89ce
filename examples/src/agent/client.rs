//! `overlayctl`'s side of the agent: the status API over HTTP on loopback and
//! the admin commands over the agent's admin unix socket.
//!
//! The admin socket (`/run/overlay/admin.sock`, mode 0600, so only root) takes
//! one JSON line per connection and answers one:
//!
//! | request | answer |
//! |---|---|
//! | `{"op":"rmpeer","peer":"<id or name>"}` | `{"result":"done","reclaimed":["10.36.0.0/14", ...],"heir":"<id>"}` |
//! | anything else | `{"result":"error","msg":"..."}` |
//!
//! `rmpeer` declares a peer dead for good: the agent issues a tombstone
//! (that peer, up to its current incarnation, this node as heir), which
//! fences every later write of the dead peer and hands its blocks to the
//! heir after the quarantine.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::status::Status;

/// How long `overlayctl` waits for the agent.
pub const TIMEOUT: Duration = Duration::from_secs(5);

/// The longest answer `overlayctl` reads.
const MAX_BODY: u64 = 16 * 1024 * 1024;

/// A failure to talk to the agent.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The agent cannot be reached.
    #[error("cannot reach overlayd at {0}: {1} (is it running?)")]
    Unreachable(String, std::io::Error),
    /// The answer is not what the agent sends.
    #[error("unexpected answer from overlayd: {0}")]
    Protocol(String),
    /// The agent refused the command.
    #[error("overlayd: {0}")]
    Refused(String),
}

/// `GET path` on the status API; the body of a 200 answer.
pub fn http_get(addr: SocketAddr, path: &str) -> Result<Vec<u8>, ClientError> {
    let unreachable = |e| ClientError::Unreachable(addr.to_string(), e);
    let mut stream = TcpStream::connect_timeout(&addr, TIMEOUT).map_err(unreachable)?;
    stream
        .set_read_timeout(Some(TIMEOUT))
        .map_err(unreachable)?;
    stream
        .set_write_timeout(Some(TIMEOUT))
        .map_err(unreachable)?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .map_err(unreachable)?;
    let mut answer = Vec::new();
    stream
        .take(MAX_BODY)
        .read_to_end(&mut answer)
        .map_err(unreachable)?;
    let split = answer
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| ClientError::Protocol("no HTTP head".into()))?;
    let head = String::from_utf8_lossy(&answer[..split]);
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse::<u16>().ok())
        .ok_or_else(|| ClientError::Protocol(format!("bad status line: {head}")))?;
    let body = answer[split + 4..].to_vec();
    match status {
        200 => Ok(body),
        _ => Err(ClientError::Refused(format!(
            "{path}: HTTP {status}: {}",
            String::from_utf8_lossy(&body).trim()
        ))),
    }
}

/// The agent's whole status.
pub fn status(addr: SocketAddr) -> Result<Status, ClientError> {
    let body = http_get(addr, "/status")?;
    serde_json::from_slice(&body).map_err(|e| ClientError::Protocol(e.to_string()))
}

/// An admin request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "lowercase")]
pub enum AdminRequest {
    /// Declare a peer dead and reclaim its blocks.
    Rmpeer {
        /// The peer's id (hex) or node name.
        peer: String,
    },
}

/// An admin answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "result", rename_all = "lowercase")]
pub enum AdminResponse {
    /// Done.
    Done {
        /// The blocks the tombstone moved to the heir.
        reclaimed: Vec<String>,
        /// The heir's id.
        heir: String,
    },
    /// Refused.
    Error {
        /// Why.
        msg: String,
    },
}

/// Send one admin request over the admin socket.
pub fn admin(socket: &Path, request: &AdminRequest) -> Result<AdminResponse, ClientError> {
    let unreachable = |e| ClientError::Unreachable(socket.display().to_string(), e);
    let mut stream = UnixStream::connect(socket).map_err(unreachable)?;
    stream
        .set_read_timeout(Some(TIMEOUT))
        .map_err(unreachable)?;
    stream
        .set_write_timeout(Some(TIMEOUT))
        .map_err(unreachable)?;
    let mut line = serde_json::to_vec(request).map_err(|e| ClientError::Protocol(e.to_string()))?;
    line.push(b'\n');
    stream.write_all(&line).map_err(unreachable)?;
    let mut answer = Vec::new();
    BufReader::new(stream.take(MAX_BODY))
        .read_until(b'\n', &mut answer)
        .map_err(unreachable)?;
    match serde_json::from_slice(&answer).map_err(|e| ClientError::Protocol(e.to_string()))? {
        AdminResponse::Error { msg } => Err(ClientError::Refused(msg)),
        done => Ok(done),
    }
}
