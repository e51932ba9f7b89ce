//! What `overlay-demo` prints: counts in words, the IPAM table of the
//! cluster, and the help for a cluster left running.

use std::net::IpAddr;
use std::path::Path;

use crate::agent::status::Status;

/// `1 pod`, `2 pods`.
pub fn plural(n: usize, word: &str) -> String {
    if n == 1 {
        format!("1 {word}")
    } else {
        format!("{n} {word}s")
    }
}

/// The blocks joined by spaces, or `no block yet`.
pub fn blocks_or_none(blocks: &[String]) -> String {
    if blocks.is_empty() {
        "no block yet".into()
    } else {
        blocks.join(" ")
    }
}

/// One row of [`ipam_table`]: a node, as its agent reports it.
#[derive(Debug, Clone)]
pub struct IpamRow<'a> {
    /// The agent's status.
    pub status: &'a Status,
    /// The node's underlay address.
    pub underlay: IpAddr,
    /// The node's pods: container id and address.
    pub pods: Vec<(String, IpAddr)>,
}

/// One row per node: its blocks, the addresses used and free in them, and
/// its pods; then the range and the IPAM state of the first node.
pub fn ipam_table(rows: &[IpamRow<'_>]) -> String {
    let mut cells = vec![[
        "NODE".to_owned(),
        "UNDERLAY".into(),
        "BLOCKS".into(),
        "USED".into(),
        "FREE".into(),
        "PODS".into(),
    ]];
    for row in rows {
        let s = row.status;
        let pods: Vec<String> = row
            .pods
            .iter()
            .map(|(id, ip)| format!("{id} {ip}"))
            .collect();
        cells.push([
            s.node.name.clone(),
            row.underlay.to_string(),
            s.ipam
                .blocks
                .iter()
                .map(|b| b.cidr.as_str())
                .collect::<Vec<_>>()
                .join(" "),
            s.ipam.used.to_string(),
            s.ipam.free.to_string(),
            pods.join(", "),
        ]);
    }
    let mut widths = [0usize; 6];
    for row in &cells {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.len());
        }
    }
    let mut out = String::new();
    for row in &cells {
        let line: Vec<String> = row
            .iter()
            .zip(widths)
            .enumerate()
            .map(|(c, (cell, w))| match c {
                3 | 4 => format!("{cell:>w$}"),
                5 => cell.clone(),
                _ => format!("{cell:<w$}"),
            })
            .collect();
        out.push_str(line.join("  ").trim_end());
        out.push('\n');
    }
    let first = rows.first().map(|r| &r.status.ipam);
    out.push_str(&format!(
        "range {} (state {} on every node; `overlayctl status ipam` shows one node's full view)",
        first.map_or("", |i| i.range.as_str()),
        first.map_or("", |i| i.state.as_str()),
    ));
    out
}

/// What a demo left running (`--keep`) is made of, and where.
#[derive(Debug, Clone)]
pub struct Kept<'a> {
    /// The namespaces left, by name.
    pub names: &'a [String],
    /// Their common prefix (`ovd-<pid>`): node 1 is `<prefix>-n1`.
    pub prefix: &'a str,
    /// Where `overlayctl` is.
    pub bin_dir: &'a Path,
    /// The agents' state and logs.
    pub work_dir: &'a Path,
    /// A pod's namespace to ping from, and another pod's address to ping.
    pub ping: Option<(String, IpAddr)>,
}

/// With `--keep`: what is left running, how to look at it and how to
/// delete it.
pub fn keep_help(kept: &Kept<'_>) -> String {
    let ctl = kept.bin_dir.join("overlayctl");
    let ctl = ctl.display();
    let node1 = format!("{}-n1", kept.prefix);
    let admin = kept.work_dir.join("node-1").join("admin.sock");
    let work = kept.work_dir.display();
    let mut out = format!(
        "\nkept running: {} namespaces ({}), the agents' state and logs in {work}\n",
        kept.names.len(),
        kept.names.join(" "),
    );
    out.push_str(
        "look at it with overlayctl in a node's namespace (the status API is on its loopback):\n",
    );
    for args in ["status", "status ipam", "topology"] {
        out.push_str(&format!("    ip netns exec {node1} {ctl} {args}\n"));
    }
    if let Some((from, to)) = &kept.ping {
        out.push_str(&format!(
            "pods are namespaces too:\n    ip netns exec {from} ping {to}\n"
        ));
    }
    out.push_str(&format!(
        "admin commands go to the agent's admin socket, e.g. declaring a node dead:\n    \
         ip netns exec {node1} {ctl} --admin-socket {} rmpeer node-2\n",
        admin.display()
    ));
    out.push_str(&format!(
        "delete it (kills the agents, deletes every namespace and link):\n    \
         for ns in $(cd /run/netns && ls -d {p}-*); do ip netns pids $ns | xargs -r kill -9; ip netns del $ns; done; rm -rf {work}",
        p = kept.prefix
    ));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::agent::status::BlockStatus;

    fn status(name: &str, blocks: &[&str], used: u64, free: u64) -> Status {
        let mut s = Status::default();
        s.node.name = name.into();
        s.ipam.range = "198.19.0.0/16".into();
        s.ipam.state = "ready".into();
        s.ipam.blocks = blocks
            .iter()
            .map(|b| BlockStatus {
                cidr: (*b).into(),
                ..BlockStatus::default()
            })
            .collect();
        s.ipam.used = used;
        s.ipam.free = free;
        s
    }

    #[test]
    fn words_count() {
        assert_eq!(plural(1, "pod"), "1 pod");
        assert_eq!(plural(0, "pod"), "0 pods");
        assert_eq!(plural(3, "node"), "3 nodes");
        assert_eq!(blocks_or_none(&[]), "no block yet");
        assert_eq!(
            blocks_or_none(&["198.19.0.0/26".into(), "198.19.1.0/26".into()]),
            "198.19.0.0/26 198.19.1.0/26"
        );
    }

    #[test]
    fn the_ipam_table_aligns_its_columns() {
        let (a, b) = (
            status("node-1", &["198.19.0.0/26"], 2, 60),
            status("node-10", &["198.19.0.64/26", "198.19.1.0/26"], 12, 114),
        );
        let rows = [
            IpamRow {
                status: &a,
                underlay: "198.18.0.1".parse().unwrap(),
                pods: vec![("pod1".into(), "198.19.0.2".parse().unwrap())],
            },
            IpamRow {
                status: &b,
                underlay: "198.18.0.10".parse().unwrap(),
                pods: vec![],
            },
        ];
        let table = ipam_table(&rows);
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(
            lines,
            [
                "NODE     UNDERLAY     BLOCKS                        USED  FREE  PODS",
                "node-1   198.18.0.1   198.19.0.0/26                    2    60  pod1 198.19.0.2",
                "node-10  198.18.0.10  198.19.0.64/26 198.19.1.0/26    12   114",
                "range 198.19.0.0/16 (state ready on every node; `overlayctl status ipam` shows one node's full view)",
            ]
        );
    }

    #[test]
    fn the_keep_help_names_node_one_and_the_ping() {
        let names = ["ovd-7-sw".to_owned(), "ovd-7-n1".to_owned()];
        let kept = Kept {
            names: &names,
            prefix: "ovd-7",
            bin_dir: Path::new("/opt/bin"),
            work_dir: Path::new("/tmp/ovd-7"),
            ping: Some(("ovd-7-n1p1".into(), "198.19.0.9".parse().unwrap())),
        };
        let help = keep_help(&kept);
        assert!(help.contains("kept running: 2 namespaces (ovd-7-sw ovd-7-n1), the agents' state and logs in /tmp/ovd-7"), "{help}");
        assert!(help.contains("ip netns exec ovd-7-n1 /opt/bin/overlayctl status ipam\n"));
        assert!(help.contains("ip netns exec ovd-7-n1p1 ping 198.19.0.9\n"));
        assert!(help.contains("--admin-socket /tmp/ovd-7/node-1/admin.sock rmpeer node-2"));
        assert!(help.ends_with("rm -rf /tmp/ovd-7"));
        let quiet = keep_help(&Kept { ping: None, ..kept });
        assert!(!quiet.contains("pods are namespaces too"));
    }
}
