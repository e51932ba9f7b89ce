//! TCP throughput pod to pod across two nodes through the reference
//! plugin's overlay, against the same two node namespaces talking directly
//! over their underlay, measured in the same run (issue 13, item 7a).
//!
//! A 2-node [`Cluster`] (real `overlayd` agents in node namespaces, one
//! veth each into an underlay switch bridge; one pod per node attached by
//! the real `overlay` CNI executable). Subjects, all `iperf3` TCP, one
//! stream, client on the first node's side, server on the second's:
//!
//! * `underlay`: node namespace to node namespace over the underlay veths
//!   (node IPs, MTU 1500): the peer, the ratio's denominator;
//! * `underlay_mss`: the same with the overlay's MSS (`iperf3 -M`, MTU
//!   minus 40), so that the segment size is the overlay's;
//! * `overlay`: pod to pod through `overlayd`'s datapath (pod veth, bridge,
//!   routing onto the VXLAN device, encapsulation, the underlay, and back);
//! * `kernel_vxlan`: a plain kernel VXLAN device made by hand with
//!   `ip link add ... type vxlan` (another VNI and port, same MTU as
//!   ours) between the two node namespaces: the kernel VXLAN ceiling,
//!   which separates our configuration's cost from the kernel's;
//! * `kernel_vxlan_pods`: that hand-made VXLAN with hand-made pods behind
//!   it, the same topology as the overlay's (a pod namespace on a veth into
//!   a bridge with the gateway address, routed onto the VXLAN device),
//!   made with `ip` alone: the ceiling of a pod-to-pod VXLAN overlay, so
//!   `overlay / kernel_vxlan_pods` is what `overlayd`'s configuration
//!   costs and `kernel_vxlan_pods / kernel_vxlan` what the pod hop costs.
//!
//! Methodology for a shared, noisy 2-core machine: `ROUNDS` rounds of
//! every subject, `SECS` seconds each, the subjects' order rotated every
//! round; it prints each subject's median and the medians of the
//! per-round ratios (`overlay / underlay`, ...), which load changes that
//! span a round do not skew. The MTUs of every device on the paths and
//! the offload settings of the underlay veth and the VXLAN devices are
//! printed too.
//!
//! Target: `overlay / underlay` at least 0.70.
//!
//! Environment: `OVERLAY_TPUT_ROUNDS` (default 5), `OVERLAY_TPUT_SECS`
//! (default 5), `OVERLAY_TPUT_ARGS` (more `iperf3` client options for
//! every subject, e.g. `-R` for the other direction, `-A 0,1` to pin),
//! `OVERLAY_TPUT_NODE_SETUP` (a shell command run in both node namespaces
//! before the measurement, with `$UNDERLAY`, `$VXLAN`, `$BRIDGE`,
//! `$KVXLAN` and `$HBRIDGE` naming the node's devices: offload
//! experiments such as `ethtool -K $UNDERLAY gro on`),
//! `OVERLAY_TPUT_KEEP=1` (leave the cluster and the hand-made devices
//! running and print the namespaces), `OVERLAY_BIN_DIR` (binaries built
//! before). `--test` runs one round of one second.
//!
//! Needs root and `iperf3` (`scripts/bench-cluster.sh` installs it). Run
//! with `cargo bench -p overlay-benches --bench pod_throughput`; the
//! binaries are built in the release profile first.

// Benchmark set-up may unwrap: a failure is a broken benchmark, not data.
#![allow(clippy::unwrap_used)]

use std::net::IpAddr;
use std::time::Duration;

use overlay_benches::cluster::{
    Iperf, Spawned, env_u32, have, iperf3, median, release_bins, run_in, wait_listening,
};
use overlay_examples::cluster::{Cluster, ClusterConfig, ping_within};
use overlay_testsupport::TestNetns;

/// The `iperf3` server port.
const PORT: u16 = 5201;
/// The hand-made VXLAN device (the kernel ceiling).
const KVX: &str = "ovtkvx0";
/// Its VNI and UDP port: distinct from `overlayd`'s.
const KVX_VNI: &str = "4242";
const KVX_PORT: &str = "4790";
/// The hand-made pods' bridge and the node end of their veth.
const HBR: &str = "ovthbr0";
const HVETH: &str = "ovthv0";
/// The hand-made pods' subnets (one per node), gateways and addresses.
const HPOD_NET: [&str; 2] = ["192.0.2.0/25", "192.0.2.128/25"];
const HPOD_GW: [&str; 2] = ["192.0.2.1/25", "192.0.2.129/25"];
const HPOD_IP: [&str; 2] = ["192.0.2.2/25", "192.0.2.130/25"];

/// One subject: where the client runs and whom it talks to.
struct Subject {
    name: &'static str,
    client_ns: String,
    server: IpAddr,
    extra: Vec<String>,
}

fn sysfs(ns: &str, dev: &str, file: &str) -> String {
    run_in(ns, &["cat", &format!("/sys/class/net/{dev}/{file}")])
        .map(|s| s.trim().to_owned())
        .unwrap_or_else(|e| format!("? ({e:#})"))
}

/// The offload features that matter for VXLAN over veth.
fn offloads(ns: &str, dev: &str) -> String {
    let wanted = [
        "tx-checksumming",
        "scatter-gather",
        "tcp-segmentation-offload",
        "generic-segmentation-offload",
        "generic-receive-offload",
        "rx-gro-list",
        "rx-udp-gro-forwarding",
        "tx-udp_tnl-segmentation",
        "tx-udp_tnl-csum-segmentation",
    ];
    match run_in(ns, &["ethtool", "-k", dev]) {
        Ok(text) => text
            .lines()
            .filter_map(|l| {
                let (k, v) = l.trim().split_once(':')?;
                wanted
                    .contains(&k)
                    .then(|| format!("{k}={}", v.split_whitespace().next().unwrap_or("")))
            })
            .collect::<Vec<_>>()
            .join(" "),
        Err(e) => format!("? ({e:#})"),
    }
}

fn main() {
    if !overlay_testsupport::require_privileged() {
        return;
    }
    let test_mode = std::env::args().any(|a| a == "--test");
    if !have("iperf3") {
        eprintln!(
            "pod_throughput needs iperf3 (apt-get install iperf3; scripts/bench-cluster.sh installs it)"
        );
        std::process::exit(1);
    }
    let rounds = if test_mode {
        1
    } else {
        env_u32("OVERLAY_TPUT_ROUNDS", 5)
    };
    let secs = if test_mode {
        1
    } else {
        env_u32("OVERLAY_TPUT_SECS", 5)
    };
    let extra: Vec<String> = std::env::var("OVERLAY_TPUT_ARGS")
        .unwrap_or_default()
        .split_whitespace()
        .map(str::to_owned)
        .collect();

    let bin_dir = release_bins().unwrap();
    let work = tempfile::tempdir().unwrap();
    let mut config = ClusterConfig::new(bin_dir, work.path());
    config.nodes = 2;
    let mut cluster = Cluster::start(config).unwrap();
    cluster.wait_ready(Duration::from_secs(60)).unwrap();
    let a = cluster.attach(0, "tput-a").unwrap();
    let b = cluster.attach(1, "tput-b").unwrap();
    let (pod_b_ip, node_b_ip) = (cluster.pods()[b].ip, cluster.nodes()[1].ip);
    assert!(
        cluster.ping_within(a, pod_b_ip, Duration::from_secs(20)),
        "pod a does not reach pod b"
    );

    let node_ns: Vec<String> = cluster
        .nodes()
        .iter()
        .map(|n| n.netns().name().to_owned())
        .collect();
    let pod_ns: Vec<String> = [a, b]
        .iter()
        .map(|p| cluster.pods()[*p].netns().name().to_owned())
        .collect();
    let overlay_mtu = sysfs(&node_ns[0], &cluster.config().vxlan, "mtu");

    // The kernel ceiling: a plain VXLAN device by hand between the nodes,
    // with the overlay's MTU.
    let kvx_ip = ["203.0.113.1", "203.0.113.2"];
    for i in 0..2 {
        let (local, remote) = (
            cluster.nodes()[i].ip.to_string(),
            cluster.nodes()[1 - i].ip.to_string(),
        );
        let up = format!("ovtu{i}");
        let ns = &node_ns[i];
        run_in(
            ns,
            &[
                "ip", "link", "add", KVX, "type", "vxlan", "id", KVX_VNI, "local", &local,
                "remote", &remote, "dstport", KVX_PORT, "dev", &up,
            ],
        )
        .unwrap();
        run_in(ns, &["ip", "link", "set", KVX, "mtu", &overlay_mtu, "up"]).unwrap();
        run_in(
            ns,
            &[
                "ip",
                "addr",
                "add",
                &format!("{}/24", kvx_ip[i]),
                "dev",
                KVX,
            ],
        )
        .unwrap();
    }
    let kvx_b: IpAddr = kvx_ip[1].parse().unwrap();

    // Hand-made pods behind it: the overlay's topology without overlayd.
    let hand_pods: Vec<TestNetns> = (0..2)
        .map(|_| TestNetns::with_kind("hp").unwrap())
        .collect();
    for i in 0..2 {
        let (ns, pod) = (&node_ns[i], hand_pods[i].name());
        let mtu = overlay_mtu.as_str();
        for argv in [
            &["ip", "link", "add", HBR, "mtu", mtu, "type", "bridge"][..],
            &["ip", "link", "set", HBR, "up"][..],
            &[
                "ip", "link", "add", HVETH, "mtu", mtu, "type", "veth", "peer", "name", "eth0",
                "mtu", mtu, "netns", pod,
            ][..],
            &["ip", "link", "set", HVETH, "master", HBR, "up"][..],
            &["ip", "addr", "add", HPOD_GW[i], "dev", HBR][..],
            &[
                "ip",
                "route",
                "add",
                HPOD_NET[1 - i],
                "via",
                kvx_ip[1 - i],
                "dev",
                KVX,
            ][..],
        ] {
            run_in(ns, argv).unwrap();
        }
        let gw = HPOD_GW[i].split('/').next().unwrap();
        for argv in [
            &["ip", "link", "set", "lo", "up"][..],
            &["ip", "addr", "add", HPOD_IP[i], "dev", "eth0"][..],
            &["ip", "link", "set", "eth0", "up"][..],
            &["ip", "route", "add", "default", "via", gw][..],
        ] {
            run_in(pod, argv).unwrap();
        }
    }
    let hpod_b: IpAddr = HPOD_IP[1].split('/').next().unwrap().parse().unwrap();
    assert!(
        ping_within(&hand_pods[0], hpod_b, Duration::from_secs(10)),
        "hand-made pod a does not reach hand-made pod b"
    );

    // Servers: one in the second node (its underlay and hand VXLAN
    // addresses), one in the second pod.
    let port = PORT.to_string();
    let _servers = [
        Spawned::start(&node_ns[1], &["iperf3", "-s", "-p", &port]).unwrap(),
        Spawned::start(&pod_ns[1], &["iperf3", "-s", "-p", &port]).unwrap(),
        Spawned::start(hand_pods[1].name(), &["iperf3", "-s", "-p", &port]).unwrap(),
    ];
    for ns in [node_ns[1].as_str(), pod_ns[1].as_str(), hand_pods[1].name()] {
        wait_listening(ns, PORT, Duration::from_secs(5)).unwrap();
    }

    if let Ok(setup) = std::env::var("OVERLAY_TPUT_NODE_SETUP") {
        for (i, ns) in node_ns.iter().enumerate() {
            let status = std::process::Command::new("ip")
                .args(["netns", "exec", ns, "sh", "-c", &setup])
                .env("UNDERLAY", format!("ovtu{i}"))
                .env("VXLAN", &cluster.config().vxlan)
                .env("BRIDGE", &cluster.config().bridge)
                .env("KVXLAN", KVX)
                .env("HBRIDGE", HBR)
                .status()
                .unwrap();
            assert!(status.success(), "OVERLAY_TPUT_NODE_SETUP failed in {ns}");
        }
        println!("node setup: {setup}");
    }

    let mss = overlay_mtu
        .parse::<u32>()
        .map(|m| m.saturating_sub(40).to_string())
        .unwrap_or_else(|_| "1410".into());
    let with = |more: &[&str]| -> Vec<String> {
        let mut v = extra.clone();
        v.extend(more.iter().map(|s| (*s).to_owned()));
        v
    };
    let subjects = [
        Subject {
            name: "underlay",
            client_ns: node_ns[0].clone(),
            server: node_b_ip,
            extra: with(&[]),
        },
        Subject {
            name: "underlay_mss",
            client_ns: node_ns[0].clone(),
            server: node_b_ip,
            extra: with(&["-M", &mss]),
        },
        Subject {
            name: "overlay",
            client_ns: pod_ns[0].clone(),
            server: pod_b_ip,
            extra: with(&[]),
        },
        Subject {
            name: "kernel_vxlan",
            client_ns: node_ns[0].clone(),
            server: kvx_b,
            extra: with(&[]),
        },
        Subject {
            name: "kernel_vxlan_pods",
            client_ns: hand_pods[0].name().to_owned(),
            server: hpod_b,
            extra: with(&[]),
        },
    ];

    let vx = cluster.config().vxlan.clone();
    let br = cluster.config().bridge.clone();
    println!("pod_throughput: {rounds} rounds x {secs} s per subject, iperf3 TCP, 1 stream");
    println!("client options: {extra:?}");
    println!(
        "MTU: underlay veth {} | {vx} {} , {br} {} , pod eth0 {} | {KVX} {} | MSS for underlay_mss {mss}",
        sysfs(&node_ns[0], "ovtu0", "mtu"),
        overlay_mtu,
        sysfs(&node_ns[0], &br, "mtu"),
        sysfs(&pod_ns[0], "eth0", "mtu"),
        sysfs(&node_ns[0], KVX, "mtu"),
    );
    for (label, dev) in [
        ("underlay veth", "ovtu0"),
        ("overlayd vxlan", &vx),
        ("hand vxlan", KVX),
    ] {
        println!("offloads {label}: {}", offloads(&node_ns[0], dev));
    }
    for dev in [vx.as_str(), KVX] {
        let d = run_in(&node_ns[0], &["ip", "-d", "link", "show", dev]).unwrap_or_default();
        println!("{}", d.trim_end());
    }

    let n = subjects.len();
    let mut results: Vec<Vec<Iperf>> = vec![Vec::new(); n];
    for round in 0..rounds as usize {
        let mut line = format!("round {}:", round + 1);
        for k in 0..n {
            let s = (round + k) % n;
            let subject = &subjects[s];
            let extra: Vec<&str> = subject.extra.iter().map(String::as_str).collect();
            let r = iperf3(&subject.client_ns, subject.server, PORT, secs, &extra).unwrap();
            line.push_str(&format!(
                " {}={:.2}G(retr {})",
                subject.name,
                r.gbps(),
                r.retransmits
            ));
            results[s].push(r);
        }
        println!("{line}");
    }

    println!("\nmedians (Gbit/s):");
    let gbps: Vec<Vec<f64>> = results
        .iter()
        .map(|rs| rs.iter().map(Iperf::gbps).collect())
        .collect();
    for (s, subject) in subjects.iter().enumerate() {
        let retr: Vec<f64> = results[s].iter().map(|r| r.retransmits as f64).collect();
        println!(
            "  {:<17} {:>6.2}  (min {:.2}, max {:.2}, median retransmits {})",
            subject.name,
            median(&gbps[s]),
            gbps[s].iter().copied().fold(f64::INFINITY, f64::min),
            overlay_benches::cluster::max(&gbps[s]),
            median(&retr)
        );
    }
    let index = |name: &str| subjects.iter().position(|s| s.name == name).unwrap();
    let ratio = |num: &str, den: &str| -> f64 {
        let (i, j) = (index(num), index(den));
        let per_round: Vec<f64> = gbps[i].iter().zip(&gbps[j]).map(|(x, y)| x / y).collect();
        median(&per_round)
    };
    println!("median of per-round ratios:");
    for (num, den, note) in [
        ("overlay", "underlay", "target >= 0.70"),
        ("overlay", "underlay_mss", "same segment size"),
        ("kernel_vxlan", "underlay", "the kernel VXLAN ceiling"),
        ("overlay", "kernel_vxlan", "the pod hop included"),
        (
            "kernel_vxlan_pods",
            "underlay",
            "the ceiling of pods on a VXLAN",
        ),
        (
            "overlay",
            "kernel_vxlan_pods",
            "overlayd's configuration against it",
        ),
        (
            "kernel_vxlan_pods",
            "kernel_vxlan",
            "what the pod hop costs",
        ),
    ] {
        println!("  {num:>17} / {den:<17} {:.3}  ({note})", ratio(num, den));
    }

    if std::env::var_os("OVERLAY_TPUT_KEEP").is_some() {
        std::mem::forget(_servers);
        let mut kept = cluster.keep();
        kept.extend(hand_pods.into_iter().map(TestNetns::keep));
        println!("kept: {kept:?} (state in {})", work.keep().display());
    }
}
