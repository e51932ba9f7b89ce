//! `overlayctl`'s views of a [`Status`]: the `weave status` style summary,
//! one section at a time, and the topology as text or Graphviz DOT. Pure
//! functions of the status, tested here.

use std::fmt::Write as _;

use super::{Encryption, PeerStatus, Status};

fn short(id: &str) -> &str {
    id.get(..12).unwrap_or(id)
}

/// `overlayctl status`: the summary, in the style of `weave status`.
pub fn render_summary(s: &Status) -> String {
    let mut out = String::new();
    let established = s
        .connections
        .iter()
        .filter(|c| c.state == "established")
        .count();
    let alive = s.peers.iter().filter(|p| p.state == "alive").count();
    let rows: Vec<(&str, String)> = vec![
        ("Version", s.version.clone()),
        ("", String::new()),
        ("Service", "router".into()),
        ("Name", format!("{}({})", short(&s.node.id), s.node.name)),
        (
            "Encryption",
            match s.encryption {
                Encryption::Encrypted => "enabled".into(),
                Encryption::Unencrypted => "disabled (no password configured)".into(),
            },
        ),
        (
            "Peers",
            format!("{} ({} alive)", s.peers.len() + 1, alive + 1),
        ),
        (
            "Connections",
            format!("{} ({} established)", s.connections.len(), established),
        ),
        (
            "Rejected",
            format!("{} datagrams", s.gossip.rejected.values().sum::<u64>()),
        ),
        ("", String::new()),
        ("Service", "ipam".into()),
        (
            "Status",
            match s.ipam.reason.is_empty() {
                true => s.ipam.state.clone(),
                false => format!("{} ({})", s.ipam.state, s.ipam.reason),
            },
        ),
        ("Range", s.ipam.range.clone()),
        ("Blocks", s.ipam.blocks.len().to_string()),
        (
            "Addresses",
            format!("{} used, {} free", s.ipam.used, s.ipam.free),
        ),
        ("", String::new()),
        ("Service", "datapath".into()),
        ("Bridge", s.datapath.bridge.clone()),
        (
            "VXLAN",
            format!("{} (MTU {})", s.datapath.vxlan, s.datapath.mtu),
        ),
        (
            "Remote",
            format!(
                "{} peers, {} routes",
                s.datapath.peers_programmed, s.datapath.routes
            ),
        ),
    ];
    for (k, v) in rows {
        if k.is_empty() {
            out.push('\n');
        } else {
            let _ = writeln!(out, "{k:>15}: {v}");
        }
    }
    if !s.ipam.anomalies.is_empty() {
        let _ = writeln!(out, "\n{:>15}: {}", "Anomalies", s.ipam.anomalies.len());
    }
    out
}

/// `overlayctl status peers`.
pub fn render_peers(s: &Status) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<12}  {:<16}  {:<8}  {:<22}  BLOCKS",
        "PEER", "NAME", "STATE", "UNDERLAY"
    );
    let me = PeerStatus {
        state: "self".into(),
        ..s.node.clone()
    };
    for p in std::iter::once(&me).chain(&s.peers) {
        let _ = writeln!(
            out,
            "{:<12}  {:<16}  {:<8}  {:<22}  {}",
            short(&p.id),
            p.name,
            p.state,
            p.underlay,
            p.blocks.join(",")
        );
    }
    out
}

/// `overlayctl status connections`.
pub fn render_connections(s: &Status) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<12}  {:<22}  {:<12}  LAST SEEN",
        "PEER", "ADDRESS", "STATE"
    );
    for c in &s.connections {
        let seen = c.last_seen_ms.map_or_else(
            || "never".to_owned(),
            |ms| format!("{:.1}s ago", ms as f64 / 1000.0),
        );
        let _ = writeln!(
            out,
            "{:<12}  {:<22}  {:<12}  {seen}",
            short(&c.peer),
            c.address,
            c.state
        );
    }
    out
}

/// `overlayctl status ipam`.
pub fn render_ipam(s: &Status) -> String {
    let ipam = &s.ipam;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "range {} (genesis {})",
        ipam.range,
        short(&ipam.genesis)
    );
    let _ = writeln!(
        out,
        "state {}{}",
        ipam.state,
        match ipam.reason.is_empty() {
            true => String::new(),
            false => format!(": {}", ipam.reason),
        }
    );
    let _ = writeln!(out, "\n{:<20}  {:>8}  {:>8}", "OWNED BLOCK", "USED", "FREE");
    for b in &ipam.blocks {
        let _ = writeln!(
            out,
            "{:<20}  {:>8}  {:>8}{}",
            b.cidr,
            b.used,
            b.free,
            if b.quarantined { "  (quarantined)" } else { "" }
        );
    }
    let total: u64 = ipam.owners.values().sum();
    let _ = writeln!(
        out,
        "\n{:<20}  {:>10}  {:>6}",
        "OWNER", "ADDRESSES", "SHARE"
    );
    for (owner, n) in &ipam.owners {
        let share = if total == 0 {
            0.0
        } else {
            *n as f64 * 100.0 / total as f64
        };
        let _ = writeln!(out, "{owner:<20}  {n:>10}  {share:>5.1}%");
    }
    for a in &ipam.anomalies {
        let _ = writeln!(out, "anomaly: {a}");
    }
    out
}

/// `overlayctl status datapath`.
pub fn render_datapath(s: &Status) -> String {
    let d = &s.datapath;
    let mut out = format!(
        "bridge {}\nvxlan {} mtu {}\nremote peers programmed {}\nroutes to remote blocks {}\nreconciles {}\n",
        d.bridge, d.vxlan, d.mtu, d.peers_programmed, d.routes, d.reconciles
    );
    if !d.last_error.is_empty() {
        let _ = writeln!(out, "last error: {}", d.last_error);
    }
    out
}

/// `overlayctl topology`: every peer and its blocks, with the peers it
/// cannot reach.
pub fn render_topology_text(s: &Status) -> String {
    let mut out = String::new();
    let name = |id: &str| {
        std::iter::once(&s.node)
            .chain(&s.peers)
            .find(|p| p.id == id)
            .map_or_else(|| short(id).to_owned(), |p| p.name.clone())
    };
    for p in std::iter::once(&s.node).chain(&s.peers) {
        let _ = writeln!(
            out,
            "{} [{}] {} {}",
            p.name,
            p.state_or_self(&s.node),
            p.underlay,
            p.blocks.join(" ")
        );
        for u in &p.unreachable {
            let _ = writeln!(out, "  -x- {} (unreachable)", name(u));
        }
    }
    out
}

/// `overlayctl topology --dot`: peers as nodes (labelled with their blocks),
/// the overlay's full mesh as edges, unreachable pairs dashed red.
pub fn render_topology_dot(s: &Status) -> String {
    let all: Vec<&PeerStatus> = std::iter::once(&s.node).chain(&s.peers).collect();
    let mut out = String::from("graph overlay {\n  node [shape=box];\n");
    for p in &all {
        let _ = writeln!(
            out,
            "  \"{}\" [label=\"{}\\n{}\\n{}\"{}];",
            p.id,
            escape(&p.name),
            escape(&p.underlay),
            escape(&p.blocks.join(" ")),
            if p.state == "down" {
                ", style=dashed"
            } else {
                ""
            }
        );
    }
    for (i, a) in all.iter().enumerate() {
        for b in &all[i + 1..] {
            let cut = a.unreachable.contains(&b.id) || b.unreachable.contains(&a.id);
            let _ = writeln!(
                out,
                "  \"{}\" -- \"{}\"{};",
                a.id,
                b.id,
                if cut {
                    " [style=dashed, color=red]"
                } else {
                    ""
                }
            );
        }
    }
    out.push_str("}\n");
    out
}

fn escape(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"")
}

impl PeerStatus {
    fn state_or_self(&self, node: &PeerStatus) -> &str {
        if self.id == node.id {
            "self"
        } else {
            &self.state
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Status {
        let peer = |id: &str, name: &str, block: &str| PeerStatus {
            id: id.into(),
            name: name.into(),
            incarnation: 1,
            underlay: format!("198.18.0.{}:6783", name.len()),
            vtep_mac: "02:00:00:00:00:01".into(),
            blocks: vec![block.into()],
            state: "alive".into(),
            unreachable: vec![],
        };
        let mut s = Status {
            version: "0.1.0".into(),
            node: peer("aaaaaaaaaaaaaaaa", "node-1", "10.32.0.0/14"),
            encryption: Encryption::Encrypted,
            peers: vec![
                peer("bbbbbbbbbbbbbbbb", "node-2", "10.36.0.0/14"),
                peer("cccccccccccccccc", "node-3", "10.40.0.0/14"),
            ],
            ..Status::default()
        };
        s.peers[1].unreachable = vec!["aaaaaaaaaaaaaaaa".into()];
        s.ipam.state = "ready".into();
        s.ipam.owners.insert("node-1".into(), 3);
        s.ipam.owners.insert("node-2".into(), 1);
        s
    }

    #[test]
    fn summary_counts_peers_and_says_whether_encrypted() {
        let text = render_summary(&sample());
        assert!(text.contains("          Peers: 3 (3 alive)"), "{text}");
        assert!(text.contains("     Encryption: enabled"), "{text}");
        let mut open = sample();
        open.encryption = Encryption::Unencrypted;
        assert!(render_summary(&open).contains("disabled (no password configured)"));
    }

    #[test]
    fn the_status_round_trips_through_its_json() {
        let s = sample();
        let json = serde_json::to_vec(&s).expect("serialize");
        assert_eq!(serde_json::from_slice::<Status>(&json).expect("parse"), s);
    }

    #[test]
    fn dot_has_every_pair_once_and_marks_unreachable_pairs() {
        let dot = render_topology_dot(&sample());
        assert_eq!(dot.matches(" -- ").count(), 3, "{dot}");
        assert_eq!(dot.matches("color=red").count(), 1, "{dot}");
        assert!(dot.starts_with("graph overlay {") && dot.ends_with("}\n"));
        let text = render_topology_text(&sample());
        assert!(text.contains("node-3 [alive]"), "{text}");
        assert!(text.contains("-x- node-1 (unreachable)"), "{text}");
    }

    #[test]
    fn ipam_shows_the_share_of_each_owner() {
        let text = render_ipam(&sample());
        assert!(
            text.contains("node-1                         3   75.0%"),
            "{text}"
        );
    }
}
