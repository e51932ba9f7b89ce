//! What the cluster benchmarks (`pod_throughput`, `cluster_convergence`)
//! share: the release binaries of the reference plugin, processes in a
//! namespace, `iperf3` runs parsed from its JSON report, and medians.
//!
//! The benchmarks drive [`overlay_examples::cluster::Cluster`]: real
//! `overlayd` agents in node namespaces on one underlay switch, pods
//! attached by the real `overlay` CNI executable.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{Context, Result, bail};

/// Build `overlayd`, `overlay` and `overlayctl` in the release profile
/// (`cargo build --release -p overlay-examples --bins`) into the target
/// directory this program runs from, and return the directory holding
/// them.
///
/// `OVERLAY_BIN_DIR=<dir>` uses the binaries in `dir` instead (built
/// before, or another build to compare).
pub fn release_bins() -> Result<PathBuf> {
    if let Some(dir) = std::env::var_os("OVERLAY_BIN_DIR") {
        return Ok(PathBuf::from(dir));
    }
    // A bench runs from <target>/release/deps/.
    let exe = std::env::current_exe().context("current_exe")?;
    let target_dir = exe
        .ancestors()
        .nth(3)
        .context("the bench binary lives in <target>/<profile>/deps")?
        .to_path_buf();
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("../Cargo.toml");
    let status = Command::new(cargo)
        .args(["build", "--release", "-p", "overlay-examples", "--bins"])
        .arg("--manifest-path")
        .arg(&manifest)
        .env("CARGO_TARGET_DIR", &target_dir)
        .stdout(Stdio::inherit())
        .stderr(Stdio::inherit())
        .status()
        .context("run cargo build")?;
    if !status.success() {
        bail!("cargo build --release -p overlay-examples --bins failed");
    }
    let dir = target_dir.join("release");
    for bin in ["overlayd", "overlay", "overlayctl"] {
        if !dir.join(bin).exists() {
            bail!("{} missing after the build", dir.join(bin).display());
        }
    }
    Ok(dir)
}

/// Whether `program` is on `PATH`.
pub fn have(program: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {program}")])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// A process started in a namespace, killed (SIGKILL) and reaped when
/// dropped.
#[derive(Debug)]
pub struct Spawned(Child);

impl Spawned {
    /// Start `argv` in the namespace `netns` (`ip netns exec`, which execs
    /// the program: the child is the program itself), output discarded.
    pub fn start(netns: &str, argv: &[&str]) -> Result<Spawned> {
        let child = Command::new("ip")
            .args(["netns", "exec", netns])
            .args(argv)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .with_context(|| format!("start {} in {netns}", argv.join(" ")))?;
        Ok(Spawned(child))
    }
}

impl Drop for Spawned {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Run `argv` in the namespace `netns` and return its standard output;
/// fails unless it exits with status 0.
pub fn run_in(netns: &str, argv: &[&str]) -> Result<String> {
    let out = Command::new("ip")
        .args(["netns", "exec", netns])
        .args(argv)
        .output()
        .with_context(|| format!("run {} in {netns}", argv.join(" ")))?;
    if !out.status.success() {
        bail!(
            "{} in {netns}: {}{}",
            argv.join(" "),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// One `iperf3` client run: what the receiver got.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Iperf {
    /// Received bits per second over the whole run.
    pub bits_per_second: f64,
    /// TCP retransmissions of the sender.
    pub retransmits: u64,
}

impl Iperf {
    /// Gbit/s.
    pub fn gbps(&self) -> f64 {
        self.bits_per_second / 1e9
    }
}

/// Parse `iperf3 -J`'s report of a TCP test: `end.sum_received` and
/// `end.sum_sent.retransmits`.
pub fn parse_iperf(json: &str) -> Result<Iperf> {
    let v: serde_json::Value = serde_json::from_str(json).context("iperf3 JSON")?;
    if let Some(e) = v.get("error").and_then(|e| e.as_str()) {
        bail!("iperf3: {e}");
    }
    let end = v.get("end").context("iperf3 JSON has no `end`")?;
    let bits_per_second = end
        .pointer("/sum_received/bits_per_second")
        .and_then(serde_json::Value::as_f64)
        .context("iperf3 JSON has no end.sum_received.bits_per_second")?;
    let retransmits = end
        .pointer("/sum_sent/retransmits")
        .and_then(serde_json::Value::as_u64)
        .unwrap_or(0);
    Ok(Iperf {
        bits_per_second,
        retransmits,
    })
}

/// Run an `iperf3` TCP client in `netns` against a server on `server`
/// (port `port`) for `secs` seconds; `extra` are more client options
/// (`-R`, `-M 1398`, `-A 0,1`, ...).
pub fn iperf3(netns: &str, server: IpAddr, port: u16, secs: u32, extra: &[&str]) -> Result<Iperf> {
    let (server, port, secs) = (server.to_string(), port.to_string(), secs.to_string());
    let mut argv = vec!["iperf3", "-J", "-c", &server, "-p", &port, "-t", &secs];
    argv.extend_from_slice(extra);
    let out = Command::new("ip")
        .args(["netns", "exec", netns])
        .args(&argv)
        .output()
        .context("run iperf3")?;
    let json = String::from_utf8_lossy(&out.stdout);
    parse_iperf(&json).with_context(|| format!("iperf3 {} in {netns}", argv.join(" ")))
}

/// Wait until a TCP server listens on `port` in `netns` (`ss -ltn`).
pub fn wait_listening(netns: &str, port: u16, limit: Duration) -> Result<()> {
    let deadline = std::time::Instant::now() + limit;
    let needle = format!(":{port} ");
    loop {
        if run_in(netns, &["ss", "-ltnH"]).is_ok_and(|s| s.contains(&needle)) {
            return Ok(());
        }
        if std::time::Instant::now() > deadline {
            bail!("nothing listens on port {port} in {netns} after {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The median of `values` (the mean of the middle two for an even count);
/// `NaN` when empty.
///
/// ```
/// assert_eq!(overlay_benches::cluster::median(&[3.0, 1.0, 2.0]), 2.0);
/// assert_eq!(overlay_benches::cluster::median(&[4.0, 1.0, 2.0, 3.0]), 2.5);
/// ```
pub fn median(values: &[f64]) -> f64 {
    let mut v: Vec<f64> = values.iter().copied().filter(|x| !x.is_nan()).collect();
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// The largest of `values`; `NaN` when empty.
pub fn max(values: &[f64]) -> f64 {
    values.iter().copied().fold(f64::NAN, f64::max)
}

/// A `u32` from the environment variable `name`, else `default`.
pub fn env_u32(name: &str, default: u32) -> u32 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_an_iperf3_tcp_report() {
        let json = r#"{"start":{},"intervals":[],"end":{
            "sum_sent":{"bits_per_second":9.5e9,"retransmits":12},
            "sum_received":{"bits_per_second":9.4e9}}}"#;
        let r = parse_iperf(json).expect("parse");
        assert_eq!(r.retransmits, 12);
        assert!((r.gbps() - 9.4).abs() < 1e-9);
    }

    #[test]
    fn an_iperf3_error_report_is_an_error() {
        let json = r#"{"start":{},"intervals":[],"end":{},"error":"unable to connect to server"}"#;
        let e = parse_iperf(json).expect_err("error report");
        assert!(format!("{e:#}").contains("unable to connect"));
        assert!(parse_iperf("not json").is_err());
    }

    #[test]
    fn median_and_max_skip_nothing_but_nan() {
        assert!(median(&[]).is_nan());
        assert_eq!(median(&[1.0, f64::NAN, 5.0, 3.0]), 3.0);
        assert_eq!(max(&[1.0, 7.0, 3.0]), 7.0);
    }
}
