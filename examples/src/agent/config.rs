//! `overlayd`'s configuration: command-line flags, each with an environment
//! variable (the DaemonSet in `deploy/` sets the variables), and the
//! cluster secret from a file or the environment.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;

use clap::{Parser, ValueEnum};
use ipnet::IpNet;

/// The node agent of the overlay network.
#[derive(Debug, Clone, Parser)]
#[command(name = "overlayd", version, about = "The overlay node agent")]
pub struct Config {
    /// This node's name (a label; the identity is the stored peer id).
    #[arg(long, env = "OVERLAY_NODE_NAME")]
    pub node_name: Option<String>,
    /// This node's underlay address (gossip and VXLAN).
    #[arg(long, env = "OVERLAY_NODE_IP")]
    pub node_ip: IpAddr,
    /// Seed peers to join through, comma-separated `address[:port]` (as
    /// Weave's KUBE_PEERS). A node that lists itself or no one founds a
    /// new cluster when it is the genesis seed.
    #[arg(long, env = "OVERLAY_PEERS", value_delimiter = ',', default_value = "")]
    pub peers: Vec<String>,
    /// A file of more seed peers: addresses separated by commas, spaces or
    /// lines, `#` starts a comment. Read whenever the agent looks for
    /// seeds, so a sidecar (or a ConfigMap mount) can keep it current; a
    /// file that does not exist (yet) lists no one.
    #[arg(long, env = "OVERLAY_PEERS_FILE")]
    pub peers_file: Option<PathBuf>,
    /// The cluster pod range that the IPAM ring divides among the nodes.
    #[arg(long, env = "OVERLAY_RANGE", default_value = "10.32.0.0/12")]
    pub range: IpNet,
    /// The prefix length of the blocks nodes own (default: /26 for IPv4,
    /// /122 for IPv6).
    #[arg(long, env = "OVERLAY_BLOCK_PREFIX")]
    pub block_prefix: Option<u8>,
    /// The genesis seed: the one node that creates the ring, by underlay
    /// address. Default: the lowest address among the seed peers and this
    /// node, so every seed computes the same.
    #[arg(long, env = "OVERLAY_GENESIS")]
    pub genesis: Option<IpAddr>,
    /// A fixed overlay MTU; empty or unset: derived from the underlay.
    #[arg(long, env = "OVERLAY_MTU", value_parser = parse_mtu, default_value = "")]
    pub mtu: MtuSetting,
    /// The cluster password (prefer --password-file).
    #[arg(long, env = "OVERLAY_PASSWORD", hide_env_values = true)]
    pub password: Option<String>,
    /// A file holding the cluster password.
    #[arg(long, env = "OVERLAY_PASSWORD_FILE")]
    pub password_file: Option<PathBuf>,
    /// The UDP port of the gossip mesh.
    #[arg(long, env = "OVERLAY_GOSSIP_PORT", default_value_t = 6783)]
    pub gossip_port: u16,
    /// The status API and metrics (loopback only by default).
    #[arg(long, env = "OVERLAY_STATUS_ADDR", default_value = "127.0.0.1:6784")]
    pub status_addr: SocketAddr,
    /// The directory of the store.
    #[arg(long, env = "OVERLAY_STATE_DIR", default_value = "/var/lib/overlay")]
    pub state_dir: PathBuf,
    /// The socket the CNI plugin asks for addresses (mode 0600).
    #[arg(
        long,
        env = "OVERLAY_SOCKET",
        default_value = "/run/overlay/overlayd.sock"
    )]
    pub socket: PathBuf,
    /// The admin socket `overlayctl rmpeer` uses (mode 0600).
    #[arg(
        long,
        env = "OVERLAY_ADMIN_SOCKET",
        default_value = "/run/overlay/admin.sock"
    )]
    pub admin_socket: PathBuf,
    /// Seconds the blocks of a peer declared dead (`overlayctl rmpeer`)
    /// stay in quarantine before this node allocates from them, so that a
    /// pod the dead node still runs (a partition, not a crash) is not
    /// given a twin address at once.
    #[arg(long, env = "OVERLAY_QUARANTINE", default_value_t = 30)]
    pub quarantine: u64,
    /// The pods' bridge.
    #[arg(long, env = "OVERLAY_BRIDGE", default_value = "overlay0")]
    pub bridge: String,
    /// The VXLAN device.
    #[arg(long, env = "OVERLAY_VXLAN", default_value = "vxlan.overlay")]
    pub vxlan: String,
    /// The VXLAN network identifier.
    #[arg(long, env = "OVERLAY_VNI", default_value_t = 6784)]
    pub vni: u32,
    /// The VXLAN UDP port.
    #[arg(long, env = "OVERLAY_VXLAN_PORT", default_value_t = 4789)]
    pub vxlan_port: u16,
    /// Log format.
    #[arg(long, env = "OVERLAY_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// Log filter (`tracing_subscriber::EnvFilter` syntax).
    #[arg(long, env = "OVERLAY_LOG", default_value = "info")]
    pub log: String,
}

/// How logs are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// `--mtu`: a number, or empty for "derive it".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MtuSetting(pub Option<u32>);

fn parse_mtu(s: &str) -> Result<MtuSetting, String> {
    match s.trim() {
        "" => Ok(MtuSetting(None)),
        n => n
            .parse()
            .map(|m| MtuSetting(Some(m)))
            .map_err(|e| format!("{n:?}: {e}")),
    }
}

impl Config {
    /// The fixed MTU, if one is configured.
    pub fn fixed_mtu(&self) -> Option<u32> {
        self.mtu.0
    }

    /// The cluster password: the file's first line, else the variable;
    /// `None` runs the mesh unencrypted.
    pub fn password(&self) -> std::io::Result<Option<String>> {
        if let Some(path) = &self.password_file {
            let text = std::fs::read_to_string(path)?;
            let line = text.lines().next().unwrap_or("").trim_end();
            return Ok((!line.is_empty()).then(|| line.to_owned()));
        }
        Ok(self.password.clone().filter(|p| !p.is_empty()))
    }

    /// The seed peers as socket addresses (the gossip port when none is
    /// given), from `--peers` and then `--peers-file`, without repeats;
    /// names are not resolved (the agent runs before cluster DNS).
    pub fn seed_addrs(&self) -> Result<Vec<SocketAddr>, String> {
        let mut words: Vec<String> = self.peers.clone();
        if let Some(path) = &self.peers_file {
            let text = match std::fs::read_to_string(path) {
                Ok(text) => text,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
                Err(e) => return Err(format!("peers file {}: {e}", path.display())),
            };
            for line in text.lines() {
                let line = line.split('#').next().unwrap_or("");
                words.extend(
                    line.split(|c: char| c == ',' || c.is_whitespace())
                        .map(str::to_owned),
                );
            }
        }
        let mut seeds = Vec::new();
        for p in words.iter().map(|p| p.trim()).filter(|p| !p.is_empty()) {
            let addr = p
                .parse::<SocketAddr>()
                .or_else(|_| {
                    p.parse::<IpAddr>()
                        .map(|ip| SocketAddr::new(ip, self.gossip_port))
                })
                .map_err(|_| format!("peer {p:?} is not an address or address:port"))?;
            if !seeds.contains(&addr) {
                seeds.push(addr);
            }
        }
        Ok(seeds)
    }

    /// The block prefix length for the range's family.
    pub fn block_prefix(&self) -> u8 {
        self.block_prefix.unwrap_or(match self.range {
            IpNet::V4(_) => 26,
            IpNet::V6(_) => 122,
        })
    }
}

/// Start logging in the configured format.
pub fn init_logging(config: &Config) {
    let filter = tracing_subscriber::EnvFilter::try_new(&config.log)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    // A second initialisation (tests) keeps the first subscriber.
    let _ = match config.log_format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Config {
        Config::try_parse_from(std::iter::once("overlayd").chain(args.iter().copied()))
            .expect("valid flags")
    }

    #[test]
    fn defaults_peers_mtu_and_password() {
        let c = parse(&[
            "--node-ip",
            "198.18.0.1",
            "--peers",
            "198.18.0.2,198.18.0.3:7000",
        ]);
        assert_eq!(c.range.to_string(), "10.32.0.0/12");
        assert_eq!(c.block_prefix(), 26);
        assert_eq!(c.fixed_mtu(), None);
        assert_eq!(
            c.seed_addrs().expect("addresses"),
            [
                "198.18.0.2:6783".parse().expect("addr"),
                "198.18.0.3:7000".parse().expect("addr")
            ]
        );
        let c = parse(&[
            "--node-ip",
            "2001:db8::1",
            "--range",
            "fd00::/104",
            "--mtu",
            "1400",
        ]);
        assert_eq!((c.block_prefix(), c.fixed_mtu()), (122, Some(1400)));
        assert!(c.seed_addrs().expect("none").is_empty());
        let dir = tempfile::tempdir().expect("temp dir");
        let file = dir.path().join("password");
        std::fs::write(&file, "s3cret\n").expect("write");
        let c = parse(&[
            "--node-ip",
            "198.18.0.1",
            "--password-file",
            file.to_str().expect("utf-8"),
        ]);
        assert_eq!(c.password().expect("read").as_deref(), Some("s3cret"));
        let c = parse(&["--node-ip", "198.18.0.1", "--peers", "node-2"]);
        assert_eq!(c.quarantine, 30, "the ring's default");
        assert!(c.seed_addrs().is_err());
    }

    #[test]
    fn seeds_from_a_file_add_to_the_flag_without_repeats() {
        let dir = tempfile::tempdir().expect("temp dir");
        let file = dir.path().join("peers");
        std::fs::write(
            &file,
            "# written by a sidecar\n198.18.0.2 198.18.0.4:7000\n198.18.0.5, # node-5\n\n",
        )
        .expect("write");
        let path = file.to_str().expect("utf-8");
        let c = parse(&[
            "--node-ip",
            "198.18.0.1",
            "--peers",
            "198.18.0.2,198.18.0.3",
            "--peers-file",
            path,
        ]);
        let want: Vec<SocketAddr> = [
            "198.18.0.2:6783",
            "198.18.0.3:6783",
            "198.18.0.4:7000",
            "198.18.0.5:6783",
        ]
        .iter()
        .map(|a| a.parse().expect("addr"))
        .collect();
        assert_eq!(c.seed_addrs().expect("seeds"), want);
        std::fs::write(&file, "198.18.0.2\nnot-an-address\n").expect("write");
        let err = c.seed_addrs().expect_err("a bad line is refused");
        assert!(err.contains("not-an-address"), "{err}");
        // An optional ConfigMap not created yet: the flag's seeds only.
        std::fs::remove_file(&file).expect("remove");
        assert_eq!(c.seed_addrs().expect("seeds"), want[..2]);
        // Unreadable is an error (a directory here).
        std::fs::create_dir(&file).expect("mkdir");
        let err = c.seed_addrs().expect_err("unreadable");
        assert!(err.contains("peers file"), "{err}");
    }
}
