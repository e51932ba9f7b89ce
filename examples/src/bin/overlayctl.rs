//! `overlayctl`: the operator's view of a node's `overlayd`, as `weave
//! status` was for Weave Net.
//!
//! ```text
//! overlayctl status                     summary: router, IPAM, datapath
//! overlayctl status peers|connections|ipam|datapath
//! overlayctl status --json              the status API's JSON, unchanged
//! overlayctl topology [--dot]           peers and links, as text or Graphviz DOT
//! overlayctl rmpeer <peer id or name>   declare a peer dead, reclaim its blocks (fenced)
//! ```
//!
//! It reads the agent's status API on loopback (`--status-addr`, default
//! `127.0.0.1:6784`, or `OVERLAY_STATUS_ADDR`) and sends admin commands to
//! the agent's admin socket (`--admin-socket`, default
//! `/run/overlay/admin.sock`, root only).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};
use overlay_examples::agent::client::{self, AdminRequest, AdminResponse};
use overlay_examples::agent::status;

#[derive(Parser)]
#[command(version, about = "Status and administration of the overlay node agent")]
struct Cli {
    /// The agent's status API.
    #[arg(long, env = "OVERLAY_STATUS_ADDR", default_value = "127.0.0.1:6784")]
    status_addr: SocketAddr,
    /// The agent's admin socket.
    #[arg(
        long,
        env = "OVERLAY_ADMIN_SOCKET",
        default_value = "/run/overlay/admin.sock"
    )]
    admin_socket: PathBuf,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// The node's status: the summary, or one section.
    Status {
        /// One section only.
        section: Option<Section>,
        /// Print the status API's JSON.
        #[arg(long)]
        json: bool,
    },
    /// The cluster's peers and links.
    Topology {
        /// As Graphviz DOT (`overlayctl topology --dot | dot -Tsvg`).
        #[arg(long)]
        dot: bool,
    },
    /// Declare a peer dead and reclaim its address blocks (a fenced
    /// tombstone: the peer's later writes never win).
    Rmpeer {
        /// The peer's id (hex) or node name.
        peer: String,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum Section {
    Peers,
    Connections,
    Ipam,
    Datapath,
}

fn run(cli: Cli) -> Result<String, client::ClientError> {
    match cli.command {
        Command::Status { json: true, .. } => {
            let body = client::http_get(cli.status_addr, "/status")?;
            Ok(String::from_utf8_lossy(&body).into_owned() + "\n")
        }
        Command::Status { section, .. } => {
            let s = client::status(cli.status_addr)?;
            Ok(match section {
                None => status::render_summary(&s),
                Some(Section::Peers) => status::render_peers(&s),
                Some(Section::Connections) => status::render_connections(&s),
                Some(Section::Ipam) => status::render_ipam(&s),
                Some(Section::Datapath) => status::render_datapath(&s),
            })
        }
        Command::Topology { dot } => {
            let s = client::status(cli.status_addr)?;
            Ok(match dot {
                true => status::render_topology_dot(&s),
                false => status::render_topology_text(&s),
            })
        }
        Command::Rmpeer { peer } => {
            match client::admin(
                &cli.admin_socket,
                &AdminRequest::Rmpeer { peer: peer.clone() },
            )? {
                AdminResponse::Done { reclaimed, heir } => Ok(format!(
                    "{peer} is tombstoned; heir {heir} adopts {} block(s): {}\n",
                    reclaimed.len(),
                    reclaimed.join(" ")
                )),
                AdminResponse::Error { msg } => Err(client::ClientError::Refused(msg)),
            }
        }
    }
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(out) => {
            print!("{out}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("overlayctl: {e}");
            ExitCode::FAILURE
        }
    }
}
