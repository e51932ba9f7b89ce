//! The agent's side of the [plugin protocol](super): a private unix socket
//! on tokio, one request line per connection, each request handed to the
//! code that owns the allocator and its answer written back.
//!
//! The server does no IPAM itself. It accepts connections, reads one line
//! of at most [`MAX_MESSAGE`] bytes within a deadline, decodes it
//! (answering a line it cannot read with the protocol error at once, as
//! [`ProtocolError::to_response`] says) and sends the request with a reply
//! channel to the caller's loop through a bounded [`mpsc`] channel. That
//! keeps a single owner for the allocator and its store, so every change is
//! ordered and made durable before it is answered (see
//! [`service`](super::service)), while any number of plugins wait
//! concurrently without holding the owner up:
//!
//! - a client that sends more than the limit without a newline gets the
//!   [`ProtocolError::TooLarge`] response (CNI code 6), not a hang;
//! - a client that connects and sends nothing (or not a whole line) is
//!   dropped after the read deadline, without an answer;
//! - the socket is created with mode `0600`: only root (the runtime
//!   running the plugin) may allocate. A stale socket file from an earlier
//!   run is replaced, so a restarted agent binds where its plugins look.
//!
//! The same line server serves any other one-line protocol (an admin
//! socket with its own JSON, say) through [`serve_lines`].
//!
//! ```
//! use overlay_ipam::agent::server::{Call, Server};
//! use overlay_ipam::agent::{AgentIpam, AgentRequest, AgentResponse, Network};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let dir = tempfile::tempdir().unwrap();
//! let path = dir.path().join("agent.sock");
//! let server = Server::bind(&path).unwrap();
//! let (calls, mut requests) = tokio::sync::mpsc::channel::<Call>(16);
//! tokio::spawn(server.serve(calls));
//!
//! // The owner's loop: answer every request (here: always ready).
//! tokio::spawn(async move {
//!     while let Some((request, reply)) = requests.recv().await {
//!         assert!(matches!(request, AgentRequest::Status(_)));
//!         let _ = reply.send(AgentResponse::Done);
//!     }
//! });
//!
//! // A plugin's blocking client, on a blocking thread.
//! let answer = tokio::task::spawn_blocking(move || {
//!     AgentIpam::new(path).call(&AgentRequest::Status(Network::new("pods")))
//! })
//! .await
//! .unwrap()
//! .unwrap();
//! assert_eq!(answer, AgentResponse::Done);
//! # }
//! ```

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixListener;
use tokio::sync::{mpsc, oneshot};

use super::{
    AgentRequest, AgentResponse, DEFAULT_TIMEOUT, MAX_MESSAGE, ProtocolError, decode_request,
    encode_response,
};

/// One request on its way to the owner, with the channel for its answer.
/// Dropping the sender closes the client's connection without an answer.
pub type Call = (AgentRequest, oneshot::Sender<AgentResponse>);

/// Why a socket could not be bound.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BindError {
    /// The socket's directory could not be created.
    #[error("create {}: {source}", path.display())]
    CreateDir {
        /// The directory.
        path: PathBuf,
        /// The failure.
        source: std::io::Error,
    },
    /// A file at the socket's path could not be removed.
    #[error("remove stale {}: {source}", path.display())]
    RemoveStale {
        /// The socket's path.
        path: PathBuf,
        /// The failure.
        source: std::io::Error,
    },
    /// The socket could not be bound.
    #[error("bind {}: {source}", path.display())]
    Bind {
        /// The socket's path.
        path: PathBuf,
        /// The failure.
        source: std::io::Error,
    },
    /// The socket's mode could not be set to `0600`.
    #[error("chmod 0600 {}: {source}", path.display())]
    Chmod {
        /// The socket's path.
        path: PathBuf,
        /// The failure.
        source: std::io::Error,
    },
}

/// Bind a unix stream socket at `path` that only its owner may use (mode
/// `0600`): the directory is created when missing, and a file already at
/// `path` (a stale socket of an earlier run) is replaced.
///
/// Must be called within a tokio runtime (the listener registers with its
/// reactor).
///
/// ```
/// use std::os::unix::fs::PermissionsExt;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let dir = tempfile::tempdir().unwrap();
/// let path = dir.path().join("run/admin.sock");
/// std::fs::create_dir_all(path.parent().unwrap()).unwrap();
/// std::fs::write(&path, b"stale").unwrap();
/// let _listener = overlay_ipam::agent::server::bind_private(&path).unwrap();
/// let mode = std::fs::metadata(&path).unwrap().permissions().mode();
/// assert_eq!(mode & 0o777, 0o600);
/// # }
/// ```
pub fn bind_private(path: &Path) -> Result<UnixListener, BindError> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|source| BindError::CreateDir {
            path: dir.to_owned(),
            source,
        })?;
    }
    match std::fs::remove_file(path) {
        Err(source) if source.kind() != std::io::ErrorKind::NotFound => {
            return Err(BindError::RemoveStale {
                path: path.to_owned(),
                source,
            });
        }
        _ => {}
    }
    let listener = UnixListener::bind(path).map_err(|source| BindError::Bind {
        path: path.to_owned(),
        source,
    })?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(|source| {
        BindError::Chmod {
            path: path.to_owned(),
            source,
        }
    })?;
    Ok(listener)
}

/// How a line server treats each client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct LineLimits {
    /// The longest request line, newline included.
    pub max_line: usize,
    /// How long a client has to send its whole line.
    pub read_timeout: Duration,
}

impl LineLimits {
    /// Limits of `max_line` bytes and `read_timeout`.
    pub fn new(max_line: usize, read_timeout: Duration) -> Self {
        LineLimits {
            max_line,
            read_timeout,
        }
    }
}

impl Default for LineLimits {
    /// The plugin protocol's: [`MAX_MESSAGE`] bytes within
    /// [`DEFAULT_TIMEOUT`] (the plugin's own deadline: a client that has
    /// not sent its line by then has given up).
    fn default() -> Self {
        LineLimits::new(MAX_MESSAGE, DEFAULT_TIMEOUT)
    }
}

/// Serve `listener` forever, one request line per connection: each line is
/// read within `limits` (a client over either is dropped; a line cut at
/// `max_line` reaches `decode` without its newline), decoded by `decode` (a
/// refusal is written back at once), handed to the owner through `calls`,
/// and its answer written back by `encode`. Each connection runs on its own
/// task; the owner is the only place requests are answered.
///
/// When the owner drops the receiving end of `calls`, or a call's reply
/// sender, the client's connection closes without an answer.
///
/// ```
/// use overlay_ipam::agent::server::{LineLimits, bind_private, serve_lines};
/// use std::io::{BufRead, BufReader, Write};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let dir = tempfile::tempdir().unwrap();
/// let path = dir.path().join("echo.sock");
/// let (calls, mut requests) = tokio::sync::mpsc::channel(4);
/// let decode = |line: &[u8]| -> Result<String, String> {
///     std::str::from_utf8(line).map(|s| s.trim_end().to_owned()).map_err(|_| "not UTF-8".into())
/// };
/// let encode = |answer: &String| format!("{answer}\n").into_bytes();
/// tokio::spawn(serve_lines(bind_private(&path).unwrap(), calls, LineLimits::default(), decode, encode));
/// tokio::spawn(async move {
///     while let Some((line, reply)) = requests.recv().await {
///         let _ = reply.send(format!("you said {line}"));
///     }
/// });
/// let answer = tokio::task::spawn_blocking(move || {
///     let mut stream = std::os::unix::net::UnixStream::connect(&path).unwrap();
///     stream.write_all(b"hello\n").unwrap();
///     let mut answer = String::new();
///     BufReader::new(stream).read_line(&mut answer).unwrap();
///     answer
/// })
/// .await
/// .unwrap();
/// assert_eq!(answer, "you said hello\n");
/// # }
/// ```
pub async fn serve_lines<Req, Resp, D, E>(
    listener: UnixListener,
    calls: mpsc::Sender<(Req, oneshot::Sender<Resp>)>,
    limits: LineLimits,
    decode: D,
    encode: E,
) where
    Req: Send + 'static,
    Resp: Send + 'static,
    D: Fn(&[u8]) -> Result<Req, Resp> + Clone + Send + 'static,
    E: Fn(&Resp) -> Vec<u8> + Clone + Send + 'static,
{
    let limit = u64::try_from(limits.max_line).unwrap_or(u64::MAX);
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let calls = calls.clone();
        let (decode, encode) = (decode.clone(), encode.clone());
        tokio::spawn(async move {
            let (read, mut write) = stream.into_split();
            let mut line = Vec::new();
            let mut reader = BufReader::new(read.take(limit));
            match tokio::time::timeout(limits.read_timeout, reader.read_until(b'\n', &mut line))
                .await
            {
                Ok(Ok(_)) => {}
                _ => return,
            }
            let response = match decode(&line) {
                Ok(request) => {
                    let (tx, rx) = oneshot::channel();
                    if calls.send((request, tx)).await.is_err() {
                        return;
                    }
                    match rx.await {
                        Ok(response) => response,
                        Err(_) => return,
                    }
                }
                Err(refusal) => refusal,
            };
            let _ = write.write_all(&encode(&response)).await;
        });
    }
}

/// Decode one plugin request line as the server reads it: a line without
/// its newline was cut at the limit ([`ProtocolError::TooLarge`]); a line
/// that is not a request gets its protocol error as the answer.
///
/// ```
/// use overlay_ipam::agent::AgentResponse;
/// use overlay_ipam::agent::server::decode_line;
///
/// let Err(AgentResponse::Error(e)) = decode_line(b"{\"v\":1,\"op\":\"sta") else { panic!() };
/// assert_eq!(e.code, 6);
/// assert!(e.msg.contains("longer than"), "{}", e.msg);
/// assert!(decode_line(b"{\"v\":1,\"op\":\"status\",\"network\":\"pods\"}\n").is_ok());
/// ```
pub fn decode_line(line: &[u8]) -> Result<AgentRequest, AgentResponse> {
    if line.last() != Some(&b'\n') {
        return Err(ProtocolError::TooLarge.to_response());
    }
    decode_request(line).map_err(|e| e.to_response())
}

/// The plugin socket of a node agent (see the [module docs](self)).
#[derive(Debug)]
pub struct Server {
    listener: UnixListener,
    path: PathBuf,
    limits: LineLimits,
}

impl Server {
    /// Bind the plugin socket at `path` with [`bind_private`] and the
    /// default [`LineLimits`]. Must be called within a tokio runtime.
    pub fn bind(path: impl AsRef<Path>) -> Result<Self, BindError> {
        let path = path.as_ref();
        Ok(Server {
            listener: bind_private(path)?,
            path: path.to_owned(),
            limits: LineLimits::default(),
        })
    }

    /// The same server with another read deadline per client.
    pub fn with_read_timeout(mut self, timeout: Duration) -> Self {
        self.limits.read_timeout = timeout;
        self
    }

    /// Where the socket is.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The limits each client gets.
    pub fn limits(&self) -> LineLimits {
        self.limits
    }

    /// Serve forever, handing each request to `calls` (see
    /// [`serve_lines`]). Spawn it; abort the task to stop serving (the
    /// socket file stays until the caller removes it).
    pub async fn serve(self, calls: mpsc::Sender<Call>) {
        serve_lines(
            self.listener,
            calls,
            self.limits,
            decode_line,
            encode_response,
        )
        .await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::agent::{AgentError, AgentIpam, Attachment, Network, decode_response, read_line};
    use overlay_cni::ErrorCode;
    use std::io::{Read, Write};
    use std::time::Instant;

    /// A server at `dir/agent.sock` whose owner answers with `answer`,
    /// counting the requests that reached it.
    fn start(
        dir: &Path,
        timeout: Duration,
        answer: fn(&AgentRequest) -> AgentResponse,
    ) -> (PathBuf, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
        let path = dir.join("agent.sock");
        let server = Server::bind(&path)
            .expect("bind")
            .with_read_timeout(timeout);
        let (calls, mut requests) = mpsc::channel::<Call>(8);
        tokio::spawn(server.serve(calls));
        let seen = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let count = seen.clone();
        tokio::spawn(async move {
            while let Some((request, reply)) = requests.recv().await {
                count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let _ = reply.send(answer(&request));
            }
        });
        (path, seen)
    }

    async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
        tokio::task::spawn_blocking(f).await.expect("client thread")
    }

    #[tokio::test]
    async fn the_real_client_gets_the_owners_answers() {
        let dir = tempfile::tempdir().expect("temp dir");
        let (path, seen) = start(dir.path(), Duration::from_secs(2), |r| match r {
            AgentRequest::Status(_) => AgentResponse::Error(AgentError::new(11, "no space yet")),
            _ => AgentResponse::Done,
        });
        let client = AgentIpam::new(&path);
        let (status, release) = blocking(move || {
            (
                client.call(&AgentRequest::Status(Network::new("pods"))),
                client.call(&AgentRequest::Release(Attachment::new("pods", "c", "eth0"))),
            )
        })
        .await;
        assert_eq!(
            status.expect("answered"),
            AgentResponse::Error(AgentError::new(11, "no space yet"))
        );
        assert_eq!(release.expect("answered"), AgentResponse::Done);
        assert_eq!(seen.load(std::sync::atomic::Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn an_oversized_line_is_refused_with_the_protocol_error() {
        let dir = tempfile::tempdir().expect("temp dir");
        let (path, seen) = start(dir.path(), Duration::from_secs(2), |_| AgentResponse::Done);
        // The real client with a container id longer than a message.
        let client = AgentIpam::new(&path);
        let huge = "c".repeat(MAX_MESSAGE + 100);
        let answer = blocking(move || {
            client.call(&AgentRequest::Allocate(Attachment::new(
                "pods", huge, "eth0",
            )))
        })
        .await
        .expect("answered");
        let AgentResponse::Error(e) = answer else {
            panic!("an error response, got {answer:?}")
        };
        assert_eq!(e.code, ErrorCode::DecodingFailure.code());
        assert!(e.msg.contains("longer than"), "{}", e.msg);
        // A raw line over the limit with no newline at all: the same.
        let raw = path.clone();
        let line = blocking(move || {
            let mut stream = std::os::unix::net::UnixStream::connect(raw).expect("connect");
            stream
                .write_all(&vec![b'x'; MAX_MESSAGE + 1])
                .expect("write");
            read_line(&stream).expect("an answer line")
        })
        .await;
        assert_eq!(
            decode_response(&line).expect("a response"),
            ProtocolError::TooLarge.to_response()
        );
        assert_eq!(seen.load(std::sync::atomic::Ordering::SeqCst), 0);
    }

    #[tokio::test]
    async fn a_silent_client_is_dropped_after_the_deadline() {
        let dir = tempfile::tempdir().expect("temp dir");
        let (path, seen) = start(dir.path(), Duration::from_millis(150), |_| {
            AgentResponse::Done
        });
        let (read, waited) = blocking(move || {
            let mut stream = std::os::unix::net::UnixStream::connect(path).expect("connect");
            // Half a request, never finished.
            stream.write_all(b"{\"v\":1,").expect("write");
            stream
                .set_read_timeout(Some(Duration::from_secs(5)))
                .expect("read timeout");
            let started = Instant::now();
            let mut buf = Vec::new();
            let read = stream.read_to_end(&mut buf).expect("closed, not timed out");
            (read, started.elapsed())
        })
        .await;
        assert_eq!(read, 0, "no answer, the connection is closed");
        assert!(waited >= Duration::from_millis(100), "{waited:?}");
        assert!(waited < Duration::from_secs(4), "{waited:?}");
        assert_eq!(seen.load(std::sync::atomic::Ordering::SeqCst), 0);
    }

    #[tokio::test]
    async fn the_socket_is_private_and_replaces_a_stale_file() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("nested/run/agent.sock");
        // A stale socket from an earlier run: bound, then its owner gone.
        std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        drop(std::os::unix::net::UnixListener::bind(&path).expect("stale bind"));
        assert!(path.exists());
        let server = Server::bind(&path).expect("rebinds over the stale file");
        assert_eq!(server.path(), path);
        let mode = std::fs::metadata(&path)
            .expect("socket")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "mode {mode:o}");
        let (calls, mut requests) = mpsc::channel::<Call>(1);
        tokio::spawn(server.serve(calls));
        tokio::spawn(async move {
            while let Some((_, reply)) = requests.recv().await {
                let _ = reply.send(AgentResponse::Done);
            }
        });
        let client = AgentIpam::new(&path);
        let answer = blocking(move || client.call(&AgentRequest::Status(Network::new("n")))).await;
        assert_eq!(answer.expect("served"), AgentResponse::Done);
        // A directory in the way is an error naming the step, not a panic.
        let blocked = dir.path().join("dir-in-the-way");
        std::fs::create_dir(&blocked).expect("mkdir");
        std::fs::write(blocked.join("x"), b"x").expect("file");
        assert!(matches!(
            bind_private(&blocked),
            Err(BindError::RemoveStale { .. })
        ));
    }

    #[tokio::test]
    async fn an_owner_that_drops_the_call_closes_the_connection() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("agent.sock");
        let server = Server::bind(&path).expect("bind");
        let (calls, mut requests) = mpsc::channel::<Call>(1);
        tokio::spawn(server.serve(calls));
        tokio::spawn(async move {
            while let Some((_request, reply)) = requests.recv().await {
                drop(reply);
            }
        });
        let client = AgentIpam::new(&path).with_timeout(Duration::from_secs(2));
        let started = Instant::now();
        let err = blocking(move || client.call(&AgentRequest::Status(Network::new("n"))))
            .await
            .expect_err("no answer");
        assert_eq!(err.code, ErrorCode::TryAgainLater);
        assert!(started.elapsed() < Duration::from_secs(2));
    }
}
