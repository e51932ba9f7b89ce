//! Pings between namespaces, and the matrix of every pod pinging every other.

use std::fmt;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use overlay_testsupport::TestNetns;

/// One ping of a [`PingMatrix`].
#[derive(Debug, Clone)]
pub struct PingResult {
    /// Source pod index.
    pub from: usize,
    /// Destination pod index.
    pub to: usize,
    /// Whether every echo was answered.
    pub ok: bool,
}

/// Every pod pinging every other pod.
#[derive(Debug, Clone)]
pub struct PingMatrix {
    /// The pods' labels (`node-1/pod-1 198.19.0.5`), by pod index.
    pub labels: Vec<String>,
    /// One entry per ordered pair.
    pub results: Vec<PingResult>,
}

impl PingMatrix {
    /// The pairs that failed, as `from -> to` labels.
    pub fn failures(&self) -> Vec<String> {
        self.results
            .iter()
            .filter(|r| !r.ok)
            .map(|r| format!("{} -> {}", self.labels[r.from], self.labels[r.to]))
            .collect()
    }

    /// Pairs that answered.
    pub fn passed(&self) -> usize {
        self.results.iter().filter(|r| r.ok).count()
    }
}

impl fmt::Display for PingMatrix {
    /// A table: one row per source pod, a column per destination, `ok`,
    /// `--` (itself) or `FAIL`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.labels.len();
        let width = self.labels.iter().map(String::len).max().unwrap_or(0);
        write!(f, "{:width$} ", "from \\ to")?;
        for j in 0..n {
            write!(f, " {:>4}", format!("#{}", j + 1))?;
        }
        writeln!(f)?;
        for i in 0..n {
            write!(f, "{:width$} ", self.labels[i])?;
            for j in 0..n {
                let cell = match self.results.iter().find(|r| r.from == i && r.to == j) {
                    _ if i == j => "--",
                    Some(r) if r.ok => "ok",
                    Some(_) => "FAIL",
                    None => "",
                };
                write!(f, " {cell:>4}")?;
            }
            writeln!(f, "  #{}", i + 1)?;
        }
        write!(
            f,
            "{} of {} pairs answered",
            self.passed(),
            self.results.len()
        )
    }
}

/// Two echoes from `from` to `to`, two seconds each at most.
pub fn ping(from: &TestNetns, to: IpAddr) -> bool {
    ping_echoes(from, to, 2)
}

/// `echoes` echo requests from `from` to `to`, 0.2 s apart, waiting two
/// seconds at most for each answer; whether any was answered.
pub fn ping_echoes(from: &TestNetns, to: IpAddr, echoes: u32) -> bool {
    let count = echoes.max(1).to_string();
    from.exec([
        "ping",
        "-c",
        &count,
        "-i",
        "0.2",
        "-W",
        "2",
        &to.to_string(),
    ])
    .map(|o| o.status.success())
    .unwrap_or(false)
}

/// Whether `to` answers a ping ([`ping`]) from the namespace `from`
/// within `limit`, trying again until then:
/// [`Cluster::ping_within`](super::Cluster::ping_within) for a namespace
/// that is not one of the cluster's pods.
pub fn ping_within(from: &TestNetns, to: IpAddr, limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        if ping(from, to) {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}
