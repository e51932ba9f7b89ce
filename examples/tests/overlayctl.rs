//! `overlayctl` against a stand-in agent: the status API served by the
//! agent's own HTTP server from a fixed status, and an admin socket.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixListener;
use std::process::Command;
use std::sync::Arc;

use overlay_examples::agent::client::{AdminRequest, AdminResponse};
use overlay_examples::agent::http::{self, Handler, Response};
use overlay_examples::agent::status::{Encryption, PeerStatus, Status};

fn sample() -> Status {
    let peer = |id: &str, name: &str| PeerStatus {
        id: id.into(),
        name: name.into(),
        incarnation: 2,
        underlay: "198.18.0.2:6783".into(),
        vtep_mac: "02:00:00:00:00:02".into(),
        blocks: vec!["10.32.0.0/14".into()],
        state: "alive".into(),
        unreachable: vec![],
    };
    let mut s = Status {
        version: "0.1.0".into(),
        node: peer("0123456789abcdef0123456789abcdef", "node-1"),
        encryption: Encryption::Encrypted,
        peers: vec![peer("fedcba9876543210fedcba9876543210", "node-2")],
        ..Status::default()
    };
    s.ipam.state = "no-space-yet".into();
    s.ipam.reason = "asked node-2 for a block".into();
    s
}

fn overlayctl(addr: std::net::SocketAddr, args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_overlayctl"))
        .arg("--status-addr")
        .arg(addr.to_string())
        .args(args)
        .output()
        .expect("run overlayctl");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_sections_json_and_topology_render_the_agents_status() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("address");
    let json = serde_json::to_vec(&sample()).expect("json");
    let handler: Handler = Arc::new(move |path: &str| match path {
        "/status" => Response::json(json.clone()),
        _ => Response::text(404, "not found\n"),
    });
    tokio::spawn(http::serve(listener, handler));
    let results = tokio::task::spawn_blocking(move || {
        [
            overlayctl(addr, &["status"]),
            overlayctl(addr, &["status", "peers"]),
            overlayctl(addr, &["status", "--json"]),
            overlayctl(addr, &["topology", "--dot"]),
            overlayctl(addr, &["status", "ipam"]),
        ]
    })
    .await
    .expect("runs");
    for (ok, _, err) in &results {
        assert!(ok, "{err}");
    }
    assert!(
        results[0]
            .1
            .contains("Status: no-space-yet (asked node-2 for a block)"),
        "{}",
        results[0].1
    );
    assert!(results[0].1.contains("Encryption: enabled"));
    assert!(
        results[1].1.contains("node-2") && results[1].1.contains("self"),
        "{}",
        results[1].1
    );
    let back: Status = serde_json::from_str(&results[2].1).expect("the API's JSON");
    assert_eq!(back, sample());
    assert!(
        results[3].1.starts_with("graph overlay {"),
        "{}",
        results[3].1
    );
    assert!(
        results[4].1.contains("state no-space-yet: asked node-2"),
        "{}",
        results[4].1
    );
}

#[test]
fn an_absent_agent_is_a_clear_error() {
    // A port nothing listens on: bind, note, close.
    let addr = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port");
    let (ok, _, err) = overlayctl(addr, &["status"]);
    assert!(!ok);
    assert!(
        err.contains("cannot reach overlayd") && err.contains("is it running?"),
        "{err}"
    );
}

#[test]
fn rmpeer_sends_the_admin_request_and_prints_the_reclaimed_blocks() {
    let dir = tempfile::tempdir().expect("temp dir");
    let socket = dir.path().join("admin.sock");
    let listener = UnixListener::bind(&socket).expect("bind");
    let agent = std::thread::spawn(move || {
        let (stream, _) = listener.accept().expect("accept");
        let mut line = String::new();
        BufReader::new(&stream).read_line(&mut line).expect("read");
        let request: AdminRequest = serde_json::from_str(&line).expect("admin request");
        let answer = AdminResponse::Done {
            reclaimed: vec!["10.36.0.0/14".into()],
            heir: "0123".into(),
        };
        let mut out = serde_json::to_vec(&answer).expect("json");
        out.push(b'\n');
        (&stream).write_all(&out).expect("answer");
        request
    });
    let out = Command::new(env!("CARGO_BIN_EXE_overlayctl"))
        .arg("--admin-socket")
        .arg(&socket)
        .args(["rmpeer", "node-2"])
        .output()
        .expect("run overlayctl");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("heir 0123 adopts 1 block(s): 10.36.0.0/14"),
        "{stdout}"
    );
    assert_eq!(
        agent.join().expect("agent"),
        AdminRequest::Rmpeer {
            peer: "node-2".into()
        }
    );
}
