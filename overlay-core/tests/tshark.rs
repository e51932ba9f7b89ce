//! Cross-check with a real dissector: packets built by our encapsulations are
//! written to a pcap file and decoded by `tshark` (Wireshark 4.x), which must
//! see the same field values: VNI, VXLAN-GBP ID and G/D/A bits, Geneve flags
//! and options (including an option class tshark does not know), UDP ports,
//! outer and inner addresses, and checksums that tshark verifies as good.
//!
//! tshark needs no privileges to read a file. When it is not installed the
//! test prints a skip message, or fails under `OVERLAY_REQUIRE_PRIVILEGED=1`
//! (the test command installs tshark and sets that variable).

use std::fs;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};
use std::process::Command;

use overlay_core::MacAddr;
use overlay_core::encap::{
    Encapsulation, GeneveEncap, OuterIp, OuterParams, TunnelConfig, TunnelHeader, UdpChecksumMode,
    VxlanEncap,
};
use overlay_core::wire::geneve::GeneveOption;
use overlay_core::wire::vxlan::Gbp;
use overlay_core::wire::{Vni, ethernet, ipv4, ipv6, udp};
use overlay_testsupport::privileged_required;

#[path = "fixtures/pcap.rs"]
mod pcap;
use pcap::{TempDir, read_pcap, write_pcap};

const OUTER_SRC_MAC: [u8; 6] = [0x02, 0, 0, 0, 0x01, 0x01];
const OUTER_DST_MAC: [u8; 6] = [0x02, 0, 0, 0, 0x01, 0x02];
const INNER_SRC_MAC: [u8; 6] = [0x02, 0, 0, 0, 0x0a, 0x01];
const INNER_DST_MAC: [u8; 6] = [0x02, 0, 0, 0, 0x0a, 0x02];
const INNER_SRC: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
const INNER_DST: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 2);
const INNER_SRC_PORT: u16 = 40_000;
const INNER_DST_PORT: u16 = 8080;

/// tshark's `*.checksum.status` values (`proto_checksum_enum_e`).
const CHECKSUM_GOOD: &str = "1";
const CHECKSUM_NOT_PRESENT: &str = "3";
const CHECKSUM_ILLEGAL: &str = "4";

/// The tshark fields read for every frame, in column order.
const FIELDS: &[&str] = &[
    "eth.src",
    "eth.dst",
    "ip.src",
    "ip.dst",
    "ip.checksum.status",
    "ipv6.src",
    "ipv6.dst",
    "udp.srcport",
    "udp.dstport",
    "udp.length",
    "udp.checksum",
    "udp.checksum.status",
    "vxlan.flag_i",
    "vxlan.flag_g",
    "vxlan.flag_d",
    "vxlan.flag_a",
    "vxlan.gbp",
    "vxlan.vni",
    "geneve.version",
    "geneve.flags.oam",
    "geneve.flags.critical",
    "geneve.proto_type",
    "geneve.vni",
    "geneve.option.class",
    "geneve.option.type",
    "geneve.option.type.critical",
    "geneve.option.length",
    "geneve.option.unknown.data",
    "tcp.srcport",
    "tcp.dstport",
    "tcp.checksum.status",
];

/// One packet to build, and what tshark must say about it.
struct Case {
    name: &'static str,
    encap: Box<dyn Encapsulation>,
    outer: OuterParams,
    /// UDP checksum status tshark must report.
    udp_checksum: &'static str,
    expect: Tunnel,
}

enum Tunnel {
    Vxlan {
        vni: u32,
        gbp: Option<Gbp>,
    },
    Geneve {
        vni: u32,
        oam: bool,
        options: Vec<GeneveOption>,
    },
}

fn outer(src: IpAddr, dst: IpAddr) -> OuterParams {
    OuterParams::new(
        MacAddr::new(OUTER_SRC_MAC),
        MacAddr::new(OUTER_DST_MAC),
        src,
        dst,
    )
}

fn outer_v4() -> OuterParams {
    outer(
        Ipv4Addr::new(198, 51, 100, 1).into(),
        Ipv4Addr::new(198, 51, 100, 2).into(),
    )
}

fn outer_v6() -> OuterParams {
    outer(
        "2001:db8:1::1".parse::<Ipv6Addr>().expect("literal").into(),
        "2001:db8:1::2".parse::<Ipv6Addr>().expect("literal").into(),
    )
}

fn vni(n: u32) -> Vni {
    Vni::new(n).expect("test VNIs fit 24 bits")
}

fn option(class: u16, type_: u8, data: &[u8]) -> GeneveOption {
    GeneveOption::new(class, type_, data.to_vec()).expect("valid test option")
}

fn cases() -> Vec<Case> {
    let gbp_d = Gbp {
        dont_learn: true,
        policy_applied: false,
        group_policy_id: 0x1234,
    };
    let gbp_a = Gbp {
        dont_learn: false,
        policy_applied: true,
        group_policy_id: 0xfedc,
    };
    // 0x0102 is a registered class (Open vSwitch); 0xfff0 is in the
    // experimental range that tshark has no dissector for. Type 0x85 has
    // the critical bit, so the header's C bit must be set.
    let options = vec![
        option(0x0102, 0x01, &[0xde, 0xad, 0xbe, 0xef]),
        option(0xfff0, 0x85, &[1, 2, 3, 4, 5, 6, 7, 8]),
        option(0xfff1, 0x07, &[]),
    ];
    let compute = |port| TunnelConfig::new(port).with_udp_checksum(UdpChecksumMode::Compute);
    let zero = |port| TunnelConfig::new(port).with_udp_checksum(UdpChecksumMode::Zero);
    vec![
        Case {
            name: "vxlan_ipv4_zero_checksum",
            encap: Box::new(VxlanEncap::new(vni(42))),
            outer: outer_v4(),
            udp_checksum: CHECKSUM_NOT_PRESENT,
            expect: Tunnel::Vxlan { vni: 42, gbp: None },
        },
        Case {
            name: "vxlan_ipv4_gbp_computed_checksum",
            encap: Box::new(
                VxlanEncap::new(vni(0x00ab_cdef))
                    .with_gbp(gbp_d)
                    .with_config(compute(4789)),
            ),
            outer: outer_v4(),
            udp_checksum: CHECKSUM_GOOD,
            expect: Tunnel::Vxlan {
                vni: 0x00ab_cdef,
                gbp: Some(gbp_d),
            },
        },
        Case {
            name: "vxlan_ipv6_gbp_default_checksum",
            encap: Box::new(VxlanEncap::new(vni(7)).with_gbp(gbp_a)),
            outer: outer_v6(),
            udp_checksum: CHECKSUM_GOOD,
            expect: Tunnel::Vxlan {
                vni: 7,
                gbp: Some(gbp_a),
            },
        },
        Case {
            // RFC 6935 zero checksum: legal for tunnels, tshark calls it
            // illegal (RFC 8200's general rule), which proves it is zero.
            name: "vxlan_ipv6_zero_checksum",
            encap: Box::new(VxlanEncap::new(vni(8)).with_config(zero(4789))),
            outer: outer_v6(),
            udp_checksum: CHECKSUM_ILLEGAL,
            expect: Tunnel::Vxlan { vni: 8, gbp: None },
        },
        Case {
            name: "geneve_ipv4_options_computed_checksum",
            encap: Box::new(
                GeneveEncap::new(vni(0x0012_3456))
                    .with_options(options.clone())
                    .expect("options fit")
                    .with_config(compute(6081)),
            ),
            outer: outer_v4(),
            udp_checksum: CHECKSUM_GOOD,
            expect: Tunnel::Geneve {
                vni: 0x0012_3456,
                oam: false,
                options: options.clone(),
            },
        },
        Case {
            name: "geneve_ipv4_no_options_zero_checksum",
            encap: Box::new(GeneveEncap::new(vni(1))),
            outer: outer_v4(),
            udp_checksum: CHECKSUM_NOT_PRESENT,
            expect: Tunnel::Geneve {
                vni: 1,
                oam: false,
                options: Vec::new(),
            },
        },
        Case {
            name: "geneve_ipv6_options_default_checksum",
            encap: Box::new(
                GeneveEncap::new(vni(0x00ff_ffff))
                    .with_options(options[..2].to_vec())
                    .expect("options fit"),
            ),
            outer: outer_v6(),
            udp_checksum: CHECKSUM_GOOD,
            expect: Tunnel::Geneve {
                vni: 0x00ff_ffff,
                oam: false,
                options: options[..2].to_vec(),
            },
        },
    ]
}

// ---------------------------------------------------------------------------
// Inner frames
// ---------------------------------------------------------------------------

/// RFC 1071 checksum, written out here so that the inner frame does not
/// depend on the code under test.
fn internet_checksum(words: &[u8]) -> u16 {
    let mut sum: u32 = words
        .chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], c.get(1).copied().unwrap_or(0)])))
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// An inner Ethernet/IPv4/TCP frame (SYN, no payload) with valid checksums.
fn inner_frame() -> Vec<u8> {
    let mut f = vec![0u8; 14 + 20 + 20];
    f[0..6].copy_from_slice(&INNER_DST_MAC);
    f[6..12].copy_from_slice(&INNER_SRC_MAC);
    f[12..14].copy_from_slice(&[0x08, 0x00]);
    let ip = &mut f[14..34];
    ip.copy_from_slice(&[
        0x45, 0, 0, 40, 0x12, 0x34, 0x40, 0, 64, 6, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    ]);
    ip[12..16].copy_from_slice(&INNER_SRC.octets());
    ip[16..20].copy_from_slice(&INNER_DST.octets());
    let sum = internet_checksum(ip);
    ip[10..12].copy_from_slice(&sum.to_be_bytes());
    let tcp = &mut f[34..54];
    tcp[0..2].copy_from_slice(&INNER_SRC_PORT.to_be_bytes());
    tcp[2..4].copy_from_slice(&INNER_DST_PORT.to_be_bytes());
    tcp[4..8].copy_from_slice(&1u32.to_be_bytes());
    tcp[12] = 5 << 4;
    tcp[13] = 0x02; // SYN
    tcp[14..16].copy_from_slice(&64_240u16.to_be_bytes());
    let mut pseudo = Vec::with_capacity(12 + 20);
    pseudo.extend_from_slice(&INNER_SRC.octets());
    pseudo.extend_from_slice(&INNER_DST.octets());
    pseudo.extend_from_slice(&[0, 6, 0, 20]);
    pseudo.extend_from_slice(tcp);
    let sum = internet_checksum(&pseudo);
    tcp[16..18].copy_from_slice(&sum.to_be_bytes());
    f
}

/// Encapsulate the inner frame in place (in a buffer with exactly the
/// headroom the encapsulation asks for) and return the packet.
fn build(case: &Case) -> Vec<u8> {
    let inner = inner_frame();
    let headroom = case.encap.headroom(&case.outer);
    let mut buf = vec![0u8; headroom];
    buf.extend_from_slice(&inner);
    let range = case
        .encap
        .encapsulate(&mut buf, headroom, inner.len(), &case.outer)
        .unwrap_or_else(|e| panic!("{}: encapsulate: {e}", case.name));
    assert_eq!(range, 0..buf.len(), "{}", case.name);
    assert_eq!(
        buf[headroom..],
        inner[..],
        "{}: inner frame changed",
        case.name
    );
    buf
}

// ---------------------------------------------------------------------------
// Running tshark
// ---------------------------------------------------------------------------

/// Whether tshark can run; `false` after printing a skip message, and a
/// panic when `OVERLAY_REQUIRE_PRIVILEGED=1` makes the cross-check mandatory.
fn tshark_available() -> bool {
    match Command::new("tshark").arg("--version").output() {
        Ok(out) if out.status.success() => true,
        result => {
            let why = match result {
                Ok(out) => format!("`tshark --version` failed: {}", out.status),
                Err(e) => format!("cannot run tshark: {e}"),
            };
            assert!(
                !privileged_required(),
                "{why}; OVERLAY_REQUIRE_PRIVILEGED=1 makes the tshark cross-check mandatory \
                 (apt-get install tshark)"
            );
            println!("skipped: {why} (install tshark to cross-check the codecs)");
            eprintln!("skipped: {why} (install tshark to cross-check the codecs)");
            false
        }
    }
}

/// One decoded frame: per field, its occurrences (outer first, then inner).
struct Decoded {
    name: &'static str,
    fields: Vec<Vec<String>>,
}

impl Decoded {
    fn all(&self, field: &str) -> &[String] {
        let i = FIELDS
            .iter()
            .position(|f| *f == field)
            .unwrap_or_else(|| panic!("field {field} is not requested"));
        &self.fields[i]
    }

    /// The `n`-th occurrence of `field` (0: outermost).
    fn nth(&self, field: &str, n: usize) -> &str {
        self.all(field)
            .get(n)
            .unwrap_or_else(|| panic!("{}: tshark shows no {field} #{n}", self.name))
    }

    fn first(&self, field: &str) -> &str {
        self.nth(field, 0)
    }

    /// The first occurrence as a number (tshark prints decimal or `0x` hex).
    fn number(&self, field: &str) -> u64 {
        parse_number(self.first(field))
            .unwrap_or_else(|| panic!("{}: {field} is not a number", self.name))
    }

    /// The first occurrence as a boolean (tshark prints `1`/`0` or
    /// `True`/`False`).
    fn flag(&self, field: &str) -> bool {
        match self.first(field) {
            "1" | "True" | "true" => true,
            "0" | "False" | "false" => false,
            other => panic!("{}: {field} = {other:?} is not a boolean", self.name),
        }
    }
}

fn parse_number(s: &str) -> Option<u64> {
    match s.strip_prefix("0x") {
        Some(hex) => u64::from_str_radix(hex, 16).ok(),
        None => s.parse().ok(),
    }
}

/// Decode `file` with tshark, with IPv4 and UDP checksum verification on.
fn tshark(file: &Path, names: &[&'static str]) -> Vec<Decoded> {
    let mut cmd = Command::new("tshark");
    cmd.arg("-r")
        .arg(file)
        .args(["-n", "-o", "ip.check_checksum:TRUE"])
        .args(["-o", "udp.check_checksum:TRUE"])
        .args(["-o", "tcp.check_checksum:TRUE"])
        .args(["-T", "fields", "-E", "separator=/t", "-E", "occurrence=a"])
        .args(["-E", "aggregator=;", "-E", "quote=n"]);
    for field in FIELDS {
        cmd.args(["-e", field]);
    }
    let out = cmd.output().expect("run tshark");
    assert!(
        out.status.success(),
        "tshark failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).expect("tshark prints UTF-8");
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), names.len(), "tshark output:\n{text}");
    lines
        .iter()
        .zip(names)
        .map(|(line, &name)| {
            let columns: Vec<&str> = line.split('\t').collect();
            assert_eq!(columns.len(), FIELDS.len(), "{name}: tshark line {line:?}");
            Decoded {
                name,
                fields: columns
                    .iter()
                    .map(|c| {
                        c.split(';')
                            .filter(|s| !s.is_empty())
                            .map(str::to_string)
                            .collect()
                    })
                    .collect(),
            }
        })
        .collect()
}

// ---------------------------------------------------------------------------
// The comparison
// ---------------------------------------------------------------------------

/// The UDP header of a packet we built, read with our own view.
fn our_udp(case: &Case, packet: &[u8]) -> (u16, u16, u16, u16) {
    let l3 = &packet[ethernet::HEADER_LEN..];
    let l4 = match case.outer.src_ip {
        IpAddr::V4(_) => {
            let ip = ipv4::Packet::new_checked(l3).expect("our IPv4");
            &l3[ip.header_len()..]
        }
        IpAddr::V6(_) => &l3[ipv6::HEADER_LEN..],
    };
    let udp = udp::Packet::new_checked(l4).expect("our UDP");
    (udp.src_port(), udp.dst_port(), udp.len(), udp.checksum())
}

fn mac(bytes: [u8; 6]) -> String {
    bytes.map(|b| format!("{b:02x}")).join(":")
}

fn check(case: &Case, packet: &[u8], d: &Decoded) {
    let name = case.name;
    // Outer and inner Ethernet, in that order.
    assert_eq!(
        d.all("eth.src"),
        [mac(OUTER_SRC_MAC), mac(INNER_SRC_MAC)],
        "{name}"
    );
    assert_eq!(
        d.all("eth.dst"),
        [mac(OUTER_DST_MAC), mac(INNER_DST_MAC)],
        "{name}"
    );

    // Outer IP; the inner IPv4 header follows the outer one in `ip.*`.
    let (src, dst) = (case.outer.src_ip.to_string(), case.outer.dst_ip.to_string());
    let inner_ip = [INNER_SRC.to_string(), INNER_DST.to_string()];
    match case.outer.src_ip {
        IpAddr::V4(_) => {
            assert_eq!(d.all("ip.src"), [src, inner_ip[0].clone()], "{name}");
            assert_eq!(d.all("ip.dst"), [dst, inner_ip[1].clone()], "{name}");
            assert_eq!(d.all("ip.checksum.status"), [CHECKSUM_GOOD; 2], "{name}");
        }
        IpAddr::V6(_) => {
            assert_eq!(d.all("ipv6.src"), [src], "{name}");
            assert_eq!(d.all("ipv6.dst"), [dst], "{name}");
            assert_eq!(d.all("ip.src"), [inner_ip[0].clone()], "{name}");
            assert_eq!(d.all("ip.dst"), [inner_ip[1].clone()], "{name}");
            assert_eq!(d.all("ip.checksum.status"), [CHECKSUM_GOOD], "{name}");
        }
    }

    // Outer UDP: our ports, length and checksum, as tshark reads them.
    let (src_port, dst_port, len, checksum) = our_udp(case, packet);
    assert_eq!(d.number("udp.srcport"), u64::from(src_port), "{name}");
    assert_eq!(d.number("udp.dstport"), u64::from(dst_port), "{name}");
    assert_eq!(d.number("udp.length"), u64::from(len), "{name}");
    assert_eq!(d.number("udp.checksum"), u64::from(checksum), "{name}");
    assert_eq!(d.first("udp.checksum.status"), case.udp_checksum, "{name}");

    // The inner TCP segment is intact (its checksum covers every byte).
    assert_eq!(d.number("tcp.srcport"), u64::from(INNER_SRC_PORT), "{name}");
    assert_eq!(d.number("tcp.dstport"), u64::from(INNER_DST_PORT), "{name}");
    assert_eq!(d.first("tcp.checksum.status"), CHECKSUM_GOOD, "{name}");

    match &case.expect {
        Tunnel::Vxlan { vni, gbp } => {
            assert_eq!(dst_port, 4789, "{name}");
            assert!(d.flag("vxlan.flag_i"), "{name}: I flag");
            assert_eq!(d.number("vxlan.vni"), u64::from(*vni), "{name}");
            assert_eq!(d.flag("vxlan.flag_g"), gbp.is_some(), "{name}: G flag");
            let gbp = gbp.unwrap_or_default();
            assert_eq!(d.flag("vxlan.flag_d"), gbp.dont_learn, "{name}: D flag");
            assert_eq!(d.flag("vxlan.flag_a"), gbp.policy_applied, "{name}: A flag");
            assert_eq!(
                d.number("vxlan.gbp"),
                u64::from(gbp.group_policy_id),
                "{name}"
            );
            assert!(d.all("geneve.vni").is_empty(), "{name}: seen as Geneve");
        }
        Tunnel::Geneve { vni, oam, options } => {
            assert_eq!(dst_port, 6081, "{name}");
            assert_eq!(d.number("geneve.version"), 0, "{name}");
            assert_eq!(d.number("geneve.vni"), u64::from(*vni), "{name}");
            assert_eq!(d.number("geneve.proto_type"), 0x6558, "{name}");
            assert_eq!(d.flag("geneve.flags.oam"), *oam, "{name}: O bit");
            let critical = options.iter().any(GeneveOption::is_critical);
            assert_eq!(d.flag("geneve.flags.critical"), critical, "{name}: C bit");
            let numbers = |field| -> Vec<u64> {
                d.all(field)
                    .iter()
                    .map(|s| parse_number(s).expect("numeric field"))
                    .collect()
            };
            let classes: Vec<u64> = options.iter().map(|o| u64::from(o.class())).collect();
            let types: Vec<u64> = options.iter().map(|o| u64::from(o.type_())).collect();
            // tshark names the header's option length (in bytes) and each
            // option's length (in bytes, option header included) alike.
            let area: usize = options.iter().map(GeneveOption::wire_len).sum();
            let lens: Vec<u64> = std::iter::once(area)
                .chain(options.iter().map(GeneveOption::wire_len))
                .map(|n| n as u64)
                .collect();
            assert_eq!(numbers("geneve.option.class"), classes, "{name}");
            assert_eq!(numbers("geneve.option.type"), types, "{name}");
            assert_eq!(numbers("geneve.option.length"), lens, "{name}");
            let critical_bits: Vec<bool> = d
                .all("geneve.option.type.critical")
                .iter()
                .map(|s| matches!(s.as_str(), "1" | "True" | "true"))
                .collect();
            let expected_bits: Vec<bool> = options.iter().map(GeneveOption::is_critical).collect();
            assert_eq!(critical_bits, expected_bits, "{name}: option critical bits");
            // Option data, as tshark shows it for classes it has no
            // dissector for (all of ours): hex without separators, and
            // `<MISSING>` for an option without data.
            let data: Vec<String> = options
                .iter()
                .map(|o| match o.data() {
                    [] => "<MISSING>".to_string(),
                    data => data.iter().map(|b| format!("{b:02x}")).collect(),
                })
                .collect();
            assert_eq!(d.all("geneve.option.unknown.data"), data, "{name}");
            assert!(d.all("vxlan.vni").is_empty(), "{name}: seen as VXLAN");
        }
    }
}

#[test]
fn tshark_decodes_our_vxlan_and_geneve_packets_to_the_same_fields() {
    if !tshark_available() {
        return;
    }
    let cases = cases();
    let packets: Vec<Vec<u8>> = cases.iter().map(build).collect();
    let dir = TempDir::new("ts");
    let file = dir.0.join("encapsulated.pcap");
    fs::write(&file, write_pcap(&packets)).expect("write pcap");
    let names: Vec<&'static str> = cases.iter().map(|c| c.name).collect();
    let decoded = tshark(&file, &names);
    for ((case, packet), d) in cases.iter().zip(&packets).zip(&decoded) {
        check(case, packet, d);
    }
}

/// The kernel fixtures (`tests/fixtures/vxlan-*.pcap`), sorted by name.
fn kernel_fixtures() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let mut files: Vec<PathBuf> = fs::read_dir(&dir)
        .expect("read tests/fixtures")
        .map(|entry| entry.expect("list tests/fixtures").path())
        .filter(|p| {
            let name = p.file_name().and_then(|n| n.to_str()).unwrap_or_default();
            name.starts_with("vxlan-") && name.ends_with(".pcap")
        })
        .collect();
    files.sort();
    files
}

/// tshark and our decapsulation read the same fields off the frames the
/// kernel's own VXLAN device sent (see tests/fixtures/README.md).
#[test]
fn tshark_and_our_decapsulation_agree_on_the_kernel_fixtures() {
    if !tshark_available() {
        return;
    }
    let files = kernel_fixtures();
    assert!(files.len() >= 5, "kernel fixtures missing: {files:?}");
    let decap = VxlanEncap::new(vni(0))
        .with_config(TunnelConfig::new(4789).with_allow_zero_udp_checksum_ipv6(true));
    for file in files {
        let frames = read_pcap(&fs::read(&file).expect("read fixture"));
        let decoded = tshark(&file, &vec!["kernel fixture"; frames.len()]);
        for (i, (frame, d)) in frames.iter().zip(&decoded).enumerate() {
            let what = format!("{} frame {i}", file.display());
            let ours = decap
                .decapsulate(frame)
                .unwrap_or_else(|e| panic!("{what}: {e}"));
            let outer = ours.outer();
            assert_eq!(
                d.first("eth.src"),
                mac(outer.ethernet.src_addr.octets()),
                "{what}"
            );
            assert_eq!(
                d.first("eth.dst"),
                mac(outer.ethernet.dst_addr.octets()),
                "{what}"
            );
            let (src, dst) = (
                outer.ip.src_addr().to_string(),
                outer.ip.dst_addr().to_string(),
            );
            match outer.ip {
                OuterIp::V4(_) => {
                    assert_eq!(
                        (d.first("ip.src"), d.first("ip.dst")),
                        (&*src, &*dst),
                        "{what}"
                    );
                    assert_eq!(d.first("ip.checksum.status"), CHECKSUM_GOOD, "{what}");
                }
                OuterIp::V6(_) => {
                    assert_eq!(
                        (d.first("ipv6.src"), d.first("ipv6.dst")),
                        (&*src, &*dst),
                        "{what}"
                    );
                }
            }
            assert_eq!(
                d.number("udp.srcport"),
                u64::from(outer.udp.src_port),
                "{what}"
            );
            assert_eq!(
                d.number("udp.dstport"),
                u64::from(outer.udp.dst_port),
                "{what}"
            );
            // We verified every non-zero checksum; tshark must agree, and
            // call a zero one absent (IPv4) or illegal (IPv6, RFC 8200).
            let status = match (d.number("udp.checksum"), &outer.ip) {
                (0, OuterIp::V4(_)) => CHECKSUM_NOT_PRESENT,
                (0, OuterIp::V6(_)) => CHECKSUM_ILLEGAL,
                _ => CHECKSUM_GOOD,
            };
            assert_eq!(d.first("udp.checksum.status"), status, "{what}");
            let TunnelHeader::Vxlan(header) = ours.tunnel() else {
                panic!("{what}: not VXLAN");
            };
            assert_eq!(d.number("vxlan.vni"), u64::from(header.vni.get()), "{what}");
            assert!(d.flag("vxlan.flag_i"), "{what}");
            assert_eq!(d.flag("vxlan.flag_g"), header.gbp.is_some(), "{what}");
            let gbp = header.gbp.unwrap_or_default();
            assert_eq!(d.flag("vxlan.flag_d"), gbp.dont_learn, "{what}");
            assert_eq!(d.flag("vxlan.flag_a"), gbp.policy_applied, "{what}");
            assert_eq!(
                d.number("vxlan.gbp"),
                u64::from(gbp.group_policy_id),
                "{what}"
            );
        }
    }
}
