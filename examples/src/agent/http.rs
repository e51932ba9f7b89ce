//! A small read-only HTTP/1.1 server for the agent's status API and
//! Prometheus metrics, on loopback.
//!
//! Only `GET` and `HEAD`, one request per connection (`Connection: close`),
//! a request head of at most [`MAX_HEAD`] bytes read within [`READ_TIMEOUT`],
//! and at most [`MAX_CONNECTIONS`] connections at once: a slow or hostile
//! client cannot hold the agent's memory or tasks. The handler is a plain
//! function of the path, so the status pages are tested without sockets.

use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;

/// The longest request head (request line and headers).
pub const MAX_HEAD: usize = 8 * 1024;
/// How long a client may take to send its request head.
pub const READ_TIMEOUT: Duration = Duration::from_secs(5);
/// Connections served at once; more wait in the kernel's backlog.
pub const MAX_CONNECTIONS: usize = 32;

/// A response: status code, content type and body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// The HTTP status code.
    pub status: u16,
    /// The `Content-Type`.
    pub content_type: &'static str,
    /// The body.
    pub body: Vec<u8>,
}

impl Response {
    /// `200 OK` with a JSON body.
    pub fn json(body: Vec<u8>) -> Self {
        Response {
            status: 200,
            content_type: "application/json",
            body,
        }
    }

    /// A plain-text response.
    pub fn text(status: u16, body: impl Into<String>) -> Self {
        Response {
            status,
            content_type: "text/plain; charset=utf-8",
            body: body.into().into_bytes(),
        }
    }

    fn reason(&self) -> &'static str {
        match self.status {
            200 => "OK",
            400 => "Bad Request",
            404 => "Not Found",
            405 => "Method Not Allowed",
            408 => "Request Timeout",
            431 => "Request Header Fields Too Large",
            500 => "Internal Server Error",
            503 => "Service Unavailable",
            _ => "Unknown",
        }
    }

    fn to_bytes(&self, head_only: bool) -> Vec<u8> {
        let mut out = format!(
            "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\nConnection: close\r\nCache-Control: no-store\r\n\r\n",
            self.status,
            self.reason(),
            self.content_type,
            self.body.len()
        )
        .into_bytes();
        if !head_only {
            out.extend_from_slice(&self.body);
        }
        out
    }
}

/// The handler: the request path (with its query) to a response.
pub type Handler = Arc<dyn Fn(&str) -> Response + Send + Sync>;

/// Serve `listener` until the task is dropped or aborted.
pub async fn serve(listener: TcpListener, handler: Handler) {
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let Ok(permit) = slots.clone().acquire_owned().await else {
            return;
        };
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let handler = handler.clone();
        tokio::spawn(async move {
            let _ = serve_one(stream, &handler).await;
            drop(permit);
        });
    }
}

/// The request line of a head: method and path.
fn parse_head(head: &[u8]) -> Result<(&str, &str), Response> {
    let line_end = head
        .windows(2)
        .position(|w| w == b"\r\n")
        .unwrap_or(head.len());
    let line = std::str::from_utf8(&head[..line_end])
        .map_err(|_| Response::text(400, "request line is not UTF-8\n"))?;
    let mut parts = line.split(' ');
    match (parts.next(), parts.next(), parts.next(), parts.next()) {
        (Some(method), Some(path), Some(version), None)
            if version.starts_with("HTTP/1.") && path.starts_with('/') =>
        {
            Ok((method, path))
        }
        _ => Err(Response::text(400, "malformed request line\n")),
    }
}

async fn serve_one(mut stream: TcpStream, handler: &Handler) -> std::io::Result<()> {
    let mut head = Vec::with_capacity(512);
    let read = tokio::time::timeout(READ_TIMEOUT, async {
        let mut buf = [0u8; 1024];
        loop {
            if head.windows(4).any(|w| w == b"\r\n\r\n") {
                return Ok(true);
            }
            if head.len() > MAX_HEAD {
                return Ok(false);
            }
            let n = stream.read(&mut buf).await?;
            if n == 0 {
                return Err(std::io::ErrorKind::UnexpectedEof.into());
            }
            head.extend_from_slice(&buf[..n]);
        }
    })
    .await;
    let (response, head_only) = match read {
        Err(_) => (
            Response::text(408, "request head not received in time\n"),
            false,
        ),
        Ok(Err(e)) => return Err(e),
        Ok(Ok(false)) => (Response::text(431, "request head too large\n"), false),
        Ok(Ok(true)) => match parse_head(&head) {
            Err(r) => (r, false),
            Ok(("GET", path)) => (handler(path), false),
            Ok(("HEAD", path)) => (handler(path), true),
            Ok(_) => (Response::text(405, "only GET and HEAD\n"), false),
        },
    };
    stream.write_all(&response.to_bytes(head_only)).await?;
    stream.shutdown().await
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};

    async fn server() -> std::net::SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind loopback");
        let addr = listener.local_addr().expect("address");
        let handler: Handler = Arc::new(|path: &str| match path {
            "/ready" => Response::text(200, "ready\n"),
            "/status" => Response::json(b"{\"peers\":3}".to_vec()),
            _ => Response::text(404, "not found\n"),
        });
        tokio::spawn(serve(listener, handler));
        addr
    }

    fn get(addr: std::net::SocketAddr, request: &[u8]) -> String {
        let mut s = std::net::TcpStream::connect(addr).expect("connect");
        s.write_all(request).expect("send");
        let mut out = String::new();
        s.read_to_string(&mut out).expect("read");
        out
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn serves_get_head_and_refuses_the_rest() {
        let addr = server().await;
        let answers = tokio::task::spawn_blocking(move || {
            [
                get(addr, b"GET /status HTTP/1.1\r\nHost: x\r\n\r\n"),
                get(addr, b"HEAD /ready HTTP/1.1\r\n\r\n"),
                get(addr, b"GET /nope HTTP/1.0\r\n\r\n"),
                get(addr, b"POST /status HTTP/1.1\r\n\r\n"),
                get(addr, b"GARBAGE\r\n\r\n"),
                get(
                    addr,
                    &[b"GET / HTTP/1.1\r\nX: ".as_slice(), &[b'a'; MAX_HEAD + 10]].concat(),
                ),
            ]
        })
        .await
        .expect("client thread");
        assert!(
            answers[0].starts_with("HTTP/1.1 200 OK\r\n"),
            "{}",
            answers[0]
        );
        assert!(
            answers[0].ends_with("\r\n\r\n{\"peers\":3}"),
            "{}",
            answers[0]
        );
        assert!(answers[0].contains("Content-Length: 11\r\n"));
        assert!(answers[1].starts_with("HTTP/1.1 200 OK\r\n") && answers[1].ends_with("\r\n\r\n"));
        assert!(
            answers[1].contains("Content-Length: 6\r\n"),
            "{}",
            answers[1]
        );
        assert!(answers[2].starts_with("HTTP/1.1 404 "));
        assert!(answers[3].starts_with("HTTP/1.1 405 "));
        assert!(answers[4].starts_with("HTTP/1.1 400 "));
        assert!(answers[5].starts_with("HTTP/1.1 431 "));
    }
}
