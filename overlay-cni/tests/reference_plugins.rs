//! Our runtime side driving Debian's reference plugins (`/usr/lib/cni`,
//! containernetworking-plugins 1.1.1) through ADD, CHECK, DEL and GC.
//!
//! Every plugin runs inside a test namespace acting as the host (the runtime
//! executes plugins from a thread inside it, so they inherit it), and the pod
//! is a second test namespace. host-local's data dir and the result cache
//! are in a temporary directory. Nothing touches the root namespace.

// Test helpers may unwrap: a panic there is a failing test.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use overlay_cni::cache::{CACHE_KIND_V1, CacheEntry};
use overlay_cni::config::GcAttachment;
use overlay_cni::error::ErrorCode;
use overlay_cni::result::CniResult;
use overlay_cni::runtime::{ConfList, Runtime, RuntimeConf, RuntimeError};
use overlay_cni::version::Version;
use overlay_testsupport::{TestNetns, privileged_test};
use serde_json::{Value, json};

const PLUGIN_DIR: &str = "/usr/lib/cni";
const NETWORK: &str = "ovtnet";
const IPTABLES_TOOLS: [&str; 6] = [
    "iptables",
    "iptables-save",
    "iptables-restore",
    "ip6tables",
    "ip6tables-save",
    "ip6tables-restore",
];

struct Fixture {
    host: TestNetns,
    tmp: tempfile::TempDir,
    runtime: Runtime,
}

impl Fixture {
    fn new() -> Fixture {
        for plugin in [
            "bridge",
            "host-local",
            "tuning",
            "portmap",
            "bandwidth",
            "firewall",
        ] {
            assert!(
                Path::new(PLUGIN_DIR).join(plugin).is_file(),
                "reference plugin {plugin} missing in {PLUGIN_DIR}: install containernetworking-plugins"
            );
        }
        let host = TestNetns::with_kind("hst").unwrap();
        let tmp = tempfile::tempdir().unwrap();
        // Plugins get the legacy iptables backend (iptables-nft 1.8.9 reports
        // IPv4 chains to ip6tables as "incompatible"), and an ip6tables that
        // refuses the nat table: portmap 1.1.1's CHECK looks for its IPv4
        // DNAT rules in the IPv6 nat table too and fails whenever that table
        // works, so portmap must see IPv6 NAT as unavailable, while firewall
        // still needs ip6tables' filter table. The full chain runs IPv4-only;
        // dual-stack is covered with bridge + host-local.
        let shim = tmp.path().join("bin");
        std::fs::create_dir(&shim).unwrap();
        for tool in IPTABLES_TOOLS {
            std::os::unix::fs::symlink("/usr/sbin/xtables-legacy-multi", shim.join(tool)).unwrap();
        }
        let ip6tables = shim.join("ip6tables");
        std::fs::remove_file(&ip6tables).unwrap();
        std::fs::write(
            &ip6tables,
            "#!/bin/sh\nfor a in \"$@\"; do [ \"$a\" = nat ] && exit 1; done\nexec /usr/sbin/ip6tables-legacy \"$@\"\n",
        )
        .unwrap();
        std::fs::set_permissions(
            &ip6tables,
            std::os::unix::fs::PermissionsExt::from_mode(0o755),
        )
        .unwrap();
        let runtime = Runtime::new(vec![PathBuf::from(PLUGIN_DIR)])
            .with_cache_dir(tmp.path().join("cache"))
            .with_env(
                "PATH",
                format!("{}:/usr/sbin:/usr/bin:/sbin:/bin", shim.display()),
            );
        Fixture { host, tmp, runtime }
    }

    fn data_dir(&self) -> PathBuf {
        self.tmp.path().join("ipam")
    }

    fn bridge(&self, dual_stack: bool, ip_masq: bool) -> Value {
        let mut ranges = vec![json!([{"subnet": "198.51.100.0/24"}])];
        let mut routes = vec![json!({"dst": "0.0.0.0/0"})];
        if dual_stack {
            ranges.push(json!([{"subnet": "2001:db8:5::/64"}]));
            routes.push(json!({"dst": "::/0"}));
        }
        json!({
            "type": "bridge",
            "bridge": "ovtbr0",
            "isGateway": true,
            "ipMasq": ip_masq,
            "hairpinMode": true,
            "ipam": {
                "type": "host-local",
                "ranges": ranges,
                "routes": routes,
                "dataDir": self.data_dir(),
            }
        })
    }

    fn list(&self, version: &str, plugins: Vec<Value>) -> ConfList {
        let bytes = serde_json::to_vec(&json!({
            "cniVersion": version,
            "name": NETWORK,
            "plugins": plugins,
        }))
        .unwrap();
        ConfList::from_bytes(bytes).unwrap()
    }

    /// bridge (IPv4, see `Fixture::new`), tuning, portmap, bandwidth and,
    /// from 0.4.0 on (it supports nothing older), firewall.
    fn chain(&self, version: &str) -> ConfList {
        let mut plugins = vec![
            self.bridge(false, true),
            json!({"type": "tuning", "sysctl": {"net.core.somaxconn": "512"}}),
            json!({"type": "portmap", "capabilities": {"portMappings": true}, "snat": true}),
            json!({"type": "bandwidth", "capabilities": {"bandwidth": true}}),
        ];
        if version != "0.3.1" {
            plugins.push(json!({"type": "firewall", "backend": "iptables"}));
        }
        self.list(version, plugins)
    }

    /// Run `f` with the runtime on a thread inside the host namespace.
    fn in_host<T: Send>(&self, f: impl FnOnce(&Runtime) -> T + Send) -> T {
        let runtime = &self.runtime;
        self.host.run_in(|| f(runtime)).unwrap()
    }

    fn ipam_allocations(&self) -> BTreeSet<IpAddr> {
        let dir = self.data_dir().join(NETWORK);
        let Ok(entries) = std::fs::read_dir(dir) else {
            return BTreeSet::new();
        };
        entries
            .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<IpAddr>().ok())
            .collect()
    }

    /// Every IPv4 and IPv6 rule in the host namespace (legacy backend, as the plugins use).
    fn iptables(&self) -> String {
        let mut all = String::new();
        for tool in ["iptables-legacy-save", "ip6tables-legacy-save"] {
            let out = self.host.exec([tool]).unwrap();
            assert!(out.status.success(), "{tool} failed");
            all.push_str(&String::from_utf8_lossy(&out.stdout));
        }
        all
    }
}

fn rt_for(pod: &TestNetns, container_id: &str) -> RuntimeConf {
    RuntimeConf::new(container_id, "eth0")
        .with_netns(pod.path())
        .with_arg("IgnoreUnknown", "1")
        .with_capability(
            "portMappings",
            json!([{"hostPort": 18080, "containerPort": 80, "protocol": "tcp"}]),
        )
        .with_capability(
            "bandwidth",
            json!({"ingressRate": 8_000_000, "ingressBurst": 80_000,
                   "egressRate": 8_000_000, "egressBurst": 80_000}),
        )
}

fn link_names(ns: &TestNetns, kind: Option<&str>) -> Vec<String> {
    ns.link_names(kind).unwrap()
}

fn addresses(ns: &TestNetns, dev: &str) -> String {
    let out = ns.ip(["-o", "addr", "show", "dev", dev]).unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn pod_ipv4(result: &overlay_cni::result::CniResult) -> IpAddr {
    result
        .ips
        .iter()
        .map(|ip| ip.address.addr())
        .find(IpAddr::is_ipv4)
        .expect("the result has an IPv4 address")
}

/// After DEL: no veth in the host, only `lo` in the pod, no IPAM allocation,
/// no iptables rule naming the container or its address, no cache file.
fn assert_clean(fx: &Fixture, pod: &TestNetns, container_id: &str, result: &CniResult) {
    assert_clean_beside(fx, pod, container_id, result, 0);
}

/// [`assert_clean`] when `other_pods` other attachments (one veth each) remain.
fn assert_clean_beside(
    fx: &Fixture,
    pod: &TestNetns,
    container_id: &str,
    result: &CniResult,
    other_pods: usize,
) {
    assert_eq!(link_names(&fx.host, Some("veth")).len(), other_pods);
    assert_eq!(link_names(pod, None), vec!["lo".to_owned()]);
    let rules = fx.iptables();
    for ip in result.ips.iter().map(|ip| ip.address.addr()) {
        assert!(!fx.ipam_allocations().contains(&ip), "{ip} still allocated");
        for line in rules.lines().filter(|l| l.starts_with('-')) {
            assert!(
                !line.contains(container_id) && !line.contains(&format!("{ip}/")),
                "iptables rule left behind: {line}"
            );
        }
    }
    assert!(
        CacheEntry::read(fx.runtime.cache_dir(), NETWORK, container_id, "eth0")
            .unwrap()
            .is_none()
    );
}

#[test]
fn bridge_and_host_local_dual_stack_add_check_del_leave_nothing_behind() {
    privileged_test!();
    let fx = Fixture::new();
    let pod = TestNetns::with_kind("pod").unwrap();
    // ipMasq off: it would need ip6tables for the IPv6 range (see Fixture::new).
    let list = fx.list("1.0.0", vec![fx.bridge(true, false)]);
    let rt = RuntimeConf::new("ovtc1", "eth0").with_netns(pod.path());

    let result = fx.in_host(|r| r.add_network_list(&list, &rt)).unwrap();
    assert_eq!(result.cni_version, Version::V1_0_0);
    assert_eq!(result.ips.len(), 2, "{result:?}");
    let v4 = pod_ipv4(&result);
    let v6 = result
        .ips
        .iter()
        .map(|ip| ip.address.addr())
        .find(IpAddr::is_ipv6)
        .unwrap();
    assert!(addresses(&pod, "eth0").contains(&v4.to_string()));
    assert!(addresses(&pod, "eth0").contains(&v6.to_string()));
    assert_eq!(fx.ipam_allocations(), BTreeSet::from([v4, v6]));
    assert_eq!(link_names(&fx.host, Some("veth")).len(), 1);
    // The pod interface is in the result, with the pod's namespace as sandbox.
    let eth0 = result.interfaces.iter().find(|i| i.name == "eth0").unwrap();
    assert_eq!(eth0.sandbox.as_deref(), Some(pod.path().to_str().unwrap()));

    fx.in_host(|r| r.check_network_list(&list, &rt)).unwrap();
    fx.in_host(|r| r.del_network_list(&list, &rt)).unwrap();
    assert_clean(&fx, &pod, "ovtc1", &result);
    // DEL is idempotent along the whole chain, also without a cached result.
    fx.in_host(|r| r.del_network_list(&list, &rt)).unwrap();
}

#[test]
fn full_reference_chain_add_check_del_at_every_version_with_check() {
    privileged_test!();
    for version in ["0.4.0", "1.0.0"] {
        let fx = Fixture::new();
        let pod = TestNetns::with_kind("pod").unwrap();
        let list = fx.chain(version);
        let rt = rt_for(&pod, "ovtchain1");
        let result = fx.in_host(|r| r.add_network_list(&list, &rt)).unwrap();
        assert_eq!(result.cni_version.to_string(), version);
        let ip = pod_ipv4(&result);

        // portmap, bandwidth and firewall left their marks in the host namespace.
        let rules = fx.iptables();
        assert!(rules.contains("18080"), "no port mapping rule: {rules}");
        assert!(
            rules.contains(&format!("{ip}/32")),
            "no firewall rule for {ip}"
        );
        assert!(
            !link_names(&fx.host, Some("ifb")).is_empty(),
            "bandwidth made no ifb"
        );
        // tuning set the sysctl inside the pod.
        let somaxconn = pod.exec(["cat", "/proc/sys/net/core/somaxconn"]).unwrap();
        assert_eq!(String::from_utf8_lossy(&somaxconn.stdout).trim(), "512");

        fx.in_host(|r| r.check_network_list(&list, &rt)).unwrap();
        fx.in_host(|r| r.del_network_list(&list, &rt)).unwrap();
        assert_clean(&fx, &pod, "ovtchain1", &result);
        assert_eq!(link_names(&fx.host, Some("ifb")), Vec::<String>::new());
        fx.in_host(|r| r.del_network_list(&list, &rt)).unwrap();
    }
}

#[test]
fn chain_at_0_3_1_adds_and_deletes_but_refuses_check() {
    privileged_test!();
    let fx = Fixture::new();
    let pod = TestNetns::with_kind("pod").unwrap();
    let list = fx.chain("0.3.1");
    let rt = rt_for(&pod, "ovtold");
    let result = fx.in_host(|r| r.add_network_list(&list, &rt)).unwrap();
    let json = result.to_value();
    assert_eq!(json["cniVersion"], "0.3.1");
    assert_eq!(json["ips"][0]["version"], "4");
    let err = fx
        .in_host(|r| r.check_network_list(&list, &rt))
        .unwrap_err();
    assert!(
        matches!(err, RuntimeError::CheckNotSupported { .. }),
        "{err}"
    );
    fx.in_host(|r| r.del_network_list(&list, &rt)).unwrap();
    assert_clean(&fx, &pod, "ovtold", &result);
}

#[test]
fn check_fails_when_the_pod_lost_its_address() {
    privileged_test!();
    let fx = Fixture::new();
    let pod = TestNetns::with_kind("pod").unwrap();
    // Without ipMasq: bridge tears masquerade rules down by the addresses it
    // finds on the interface, and this test removes the address.
    let list = fx.list("1.0.0", vec![fx.bridge(false, false)]);
    let rt = RuntimeConf::new("ovtbroken", "eth0").with_netns(pod.path());
    let result = fx.in_host(|r| r.add_network_list(&list, &rt)).unwrap();
    let ip = result.ips[0].address;
    assert!(fx.iptables().lines().all(|l| !l.contains("ovtbroken")));
    pod.ip(["addr", "del", &ip.to_string(), "dev", "eth0"])
        .unwrap();
    let err = fx
        .in_host(|r| r.check_network_list(&list, &rt))
        .unwrap_err();
    assert!(
        matches!(err, RuntimeError::Plugin { ref plugin_type, .. } if plugin_type == "bridge"),
        "{err}"
    );
    assert!(
        err.cni_error().is_some(),
        "the plugin's error JSON was read: {err}"
    );
    fx.in_host(|r| r.del_network_list(&list, &rt)).unwrap();
    assert_clean(&fx, &pod, "ovtbroken", &result);
}

#[test]
fn del_succeeds_after_the_pod_namespace_is_gone() {
    privileged_test!();
    let fx = Fixture::new();
    let pod = TestNetns::with_kind("pod").unwrap();
    let list = fx.list("1.0.0", vec![fx.bridge(false, true)]);
    let rt = RuntimeConf::new("ovtgone", "eth0").with_netns(pod.path());
    let result = fx.in_host(|r| r.add_network_list(&list, &rt)).unwrap();
    let ip = pod_ipv4(&result);
    drop(pod);
    let rt_without_netns = RuntimeConf::new("ovtgone", "eth0");
    fx.in_host(|r| r.del_network_list(&list, &rt_without_netns))
        .unwrap();
    assert!(!fx.ipam_allocations().contains(&ip));
}

#[test]
fn cache_file_has_libcni_layout_and_feeds_prev_result() {
    privileged_test!();
    let fx = Fixture::new();
    let pod = TestNetns::with_kind("pod").unwrap();
    let list = fx.chain("1.0.0");
    let rt = rt_for(&pod, "ovtcache");
    let result = fx.in_host(|r| r.add_network_list(&list, &rt)).unwrap();

    let path = fx
        .runtime
        .cache_dir()
        .join(format!("results/{NETWORK}-ovtcache-eth0"));
    let raw: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    let keys: BTreeSet<&str> = raw
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        keys,
        BTreeSet::from([
            "kind",
            "containerId",
            "config",
            "ifName",
            "networkName",
            "netns",
            "cniArgs",
            "capabilityArgs",
            "result",
        ])
    );
    assert_eq!(raw["kind"], CACHE_KIND_V1);
    assert_eq!(raw["containerId"], "ovtcache");
    assert_eq!(raw["ifName"], "eth0");
    assert_eq!(raw["networkName"], NETWORK);
    assert_eq!(raw["netns"], pod.path().to_str().unwrap());
    assert_eq!(raw["cniArgs"], json!([["IgnoreUnknown", "1"]]));
    assert_eq!(raw["capabilityArgs"]["portMappings"][0]["hostPort"], 18080);
    assert_eq!(raw["result"], result.to_value());
    let entry = CacheEntry::read(fx.runtime.cache_dir(), NETWORK, "ovtcache", "eth0")
        .unwrap()
        .unwrap();
    assert_eq!(entry.config, list.bytes, "config is the conflist's bytes");
    assert_eq!(
        fx.runtime.cached_result(&list, &rt).unwrap().unwrap(),
        result
    );
    fx.in_host(|r| r.del_network_list(&list, &rt)).unwrap();
    assert!(!path.exists());
}

#[test]
fn gc_deletes_only_attachments_missing_from_the_valid_list() {
    privileged_test!();
    let fx = Fixture::new();
    let keep_pod = TestNetns::with_kind("pod").unwrap();
    let stale_pod = TestNetns::with_kind("pod").unwrap();
    let list = fx.list("1.0.0", vec![fx.bridge(false, true)]);
    let keep = RuntimeConf::new("ovtkeep", "eth0").with_netns(keep_pod.path());
    let stale = RuntimeConf::new("ovtstale", "eth0").with_netns(stale_pod.path());
    let kept = fx.in_host(|r| r.add_network_list(&list, &keep)).unwrap();
    let gone = fx.in_host(|r| r.add_network_list(&list, &stale)).unwrap();

    let valid = [GcAttachment {
        container_id: "ovtkeep".into(),
        ifname: "eth0".into(),
    }];
    fx.in_host(|r| r.gc_network_list(&list, &valid)).unwrap();
    assert_clean_beside(&fx, &stale_pod, "ovtstale", &gone, 1);
    assert!(fx.ipam_allocations().contains(&pod_ipv4(&kept)));
    assert_eq!(link_names(&keep_pod, None).len(), 2);
    assert_eq!(fx.runtime.cached_attachments().unwrap().len(), 1);

    // disableGC: nothing is collected.
    let mut disabled = list.clone();
    disabled.config.disable_gc = true;
    fx.in_host(|r| r.gc_network_list(&disabled, &[])).unwrap();
    assert!(fx.ipam_allocations().contains(&pod_ipv4(&kept)));

    fx.in_host(|r| r.del_network_list(&list, &keep)).unwrap();
    assert_clean(&fx, &keep_pod, "ovtkeep", &kept);
}

#[test]
fn reference_plugins_reject_1_1_0_with_code_1_and_report_their_versions() {
    privileged_test!();
    let fx = Fixture::new();
    let pod = TestNetns::with_kind("pod").unwrap();
    let info = fx.runtime.version_info("bridge").unwrap();
    assert!(info.supports(Version::V1_0_0) && info.supports(Version::V0_3_1));
    assert!(!info.supports(Version::V1_1_0));

    let list = fx.list("1.1.0", vec![fx.bridge(false, true)]);
    assert!(fx.runtime.validate_network_list(&list).is_err());
    let rt = RuntimeConf::new("ovtnew", "eth0").with_netns(pod.path());
    let err = fx.in_host(|r| r.add_network_list(&list, &rt)).unwrap_err();
    assert_eq!(
        err.cni_error().map(|e| e.code),
        Some(ErrorCode::IncompatibleCniVersion),
        "{err}"
    );
    assert_eq!(link_names(&pod, None), vec!["lo".to_owned()]);
    let caps = fx
        .runtime
        .validate_network_list(&fx.chain("1.0.0"))
        .unwrap();
    assert_eq!(
        caps,
        vec!["bandwidth".to_owned(), "portMappings".to_owned()]
    );
}

#[test]
fn twenty_parallel_adds_and_dels_get_distinct_addresses_and_clean_up() {
    privileged_test!();
    let fx = Fixture::new();
    let list = fx.list("1.0.0", vec![fx.bridge(false, true)]);
    let pods: Vec<TestNetns> = (0..20)
        .map(|_| TestNetns::with_kind("pod").unwrap())
        .collect();
    let rts: Vec<RuntimeConf> = pods
        .iter()
        .enumerate()
        .map(|(i, pod)| RuntimeConf::new(format!("ovtpar{i}"), "eth0").with_netns(pod.path()))
        .collect();
    let results: Vec<CniResult> = std::thread::scope(|scope| {
        let handles: Vec<_> = rts
            .iter()
            .map(|rt| {
                let (fx, list) = (&fx, &list);
                scope.spawn(move || fx.in_host(|r| r.add_network_list(list, rt)).unwrap())
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let addresses: BTreeSet<IpAddr> = results.iter().map(pod_ipv4).collect();
    assert_eq!(addresses.len(), 20, "every pod got its own address");
    assert_eq!(fx.ipam_allocations(), addresses);
    assert_eq!(link_names(&fx.host, Some("veth")).len(), 20);
    assert_eq!(fx.runtime.cached_attachments().unwrap().len(), 20);

    std::thread::scope(|scope| {
        for rt in &rts {
            let (fx, list) = (&fx, &list);
            scope.spawn(move || fx.in_host(|r| r.del_network_list(list, rt)).unwrap());
        }
    });
    assert_eq!(link_names(&fx.host, Some("veth")), Vec::<String>::new());
    assert!(fx.ipam_allocations().is_empty());
    assert!(fx.runtime.cached_attachments().unwrap().is_empty());
    for (pod, (rt, result)) in pods.iter().zip(rts.iter().zip(&results)) {
        assert_clean(&fx, pod, &rt.container_id, result);
    }
}
