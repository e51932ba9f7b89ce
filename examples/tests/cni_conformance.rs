//! CNI conformance of the `overlay-bridge` example plugin and of overlay-cni's
//! runtime side, against real software: libcni 1.1.2 (through the Go driver
//! built by `scripts/build-libcni-tools.sh`), libcni's `noop` test plugin and
//! Debian's reference plugins in `/usr/lib/cni`.
//!
//! Every plugin runs inside a host namespace created by the test (see
//! `support`), every pod is a further test namespace, and every case checks
//! that nothing is left behind: no link or address, no firewall rule naming
//! the attachment, no IPAM reservation.

// Helpers of the tests below: a failed unwrap is a failing test.
#![allow(clippy::unwrap_used)]

mod support;

use overlay_testsupport::{TestNetns, privileged_test, unique_name};
use serde_json::{Value, json};
use support::{CniEnv, Host, RuntimeArgs, links_of, result_ips};

/// The config of our plugin for one network, in the shape of the reference
/// `bridge` plugin's.
fn bridge_conf(host: &Host, version: &str, bridge: &str, subnet: &str) -> Value {
    json!({
        "cniVersion": version,
        "name": "ovtnet",
        "type": "overlay-bridge",
        "bridge": bridge,
        "isGateway": true,
        "isDefaultGateway": true,
        "hairpinMode": true,
        "mtu": 1400,
        "ipam": host.host_local(subnet),
    })
}

fn add_env(host: &Host, cid: &str, pod: &TestNetns, ifname: &str) -> CniEnv {
    CniEnv::new("ADD", cid, pod.path(), ifname, &host.cni_path())
}

fn run(host: &Host, env: &CniEnv, conf: &Value) -> support::PluginOutput {
    host.exec_plugin(
        &support::overlay_bridge(),
        env,
        &serde_json::to_vec(conf).unwrap(),
    )
}

/// A host, a pod, a bridge name and our plugin's config for them.
fn setup(version: &str, subnet: &str) -> (Host, TestNetns, String, Value) {
    let host = Host::new();
    let pod = TestNetns::with_kind("pod").unwrap();
    let bridge = unique_name("br");
    let conf = bridge_conf(&host, version, &bridge, subnet);
    (host, pod, bridge, conf)
}

/// Run our plugin with `command` for container `cid`, interface `eth0`.
fn call(
    host: &Host,
    pod: &TestNetns,
    command: &str,
    cid: &str,
    conf: &Value,
) -> support::PluginOutput {
    run(
        host,
        &add_env(host, cid, pod, "eth0").command(command),
        conf,
    )
}

/// ADD then assert the pod side: the interface with the address, the default
/// route via the gateway and the MTU.
fn add_and_check_pod(host: &Host, conf: &Value, cid: &str, pod: &TestNetns, ifname: &str) -> Value {
    let result = run(host, &add_env(host, cid, pod, ifname), conf).ok();
    assert_eq!(result["cniVersion"], conf["cniVersion"], "{result:#}");
    let ips = result_ips(&result);
    assert!(!ips.is_empty(), "{result:#}");
    let addr = String::from_utf8(
        pod.ip(["-o", "addr", "show", "dev", ifname])
            .unwrap()
            .stdout,
    )
    .unwrap();
    assert!(
        addr.contains(&format!("inet {}/", ips[0])),
        "pod address: {addr}"
    );
    let link = String::from_utf8(
        pod.ip(["-o", "link", "show", "dev", ifname])
            .unwrap()
            .stdout,
    )
    .unwrap();
    assert!(link.contains("mtu 1400"), "pod link: {link}");
    let routes =
        String::from_utf8(pod.ip(["-4", "route", "show", "default"]).unwrap().stdout).unwrap();
    let gw = result["ips"][0]["gateway"].as_str().unwrap();
    assert!(
        routes.contains(&format!("default via {gw} dev {ifname}")),
        "pod routes: {routes}"
    );
    result
}

mod raw_protocol {
    use super::*;

    fn expect_error(host: &Host, env: &CniEnv, stdin: &[u8], code: u64) -> Value {
        host.exec_plugin(&support::overlay_bridge(), env, stdin)
            .cni_error(code)
    }

    #[test]
    fn version_lists_every_supported_version() {
        privileged_test!();
        let host = Host::new();
        let pod = TestNetns::with_kind("pod").unwrap();
        let env = add_env(&host, "c1", &pod, "eth0").command("VERSION");
        let out = host
            .exec_plugin(
                &support::overlay_bridge(),
                &env,
                br#"{"cniVersion":"1.1.0"}"#,
            )
            .ok();
        assert_eq!(out["cniVersion"], "1.1.0");
        let versions: Vec<&str> = out["supportedVersions"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(Value::as_str)
            .collect();
        for v in ["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"] {
            assert!(versions.contains(&v), "{v} missing from {versions:?}");
        }
    }

    #[test]
    fn unsupported_version_is_code_1() {
        privileged_test!();
        let (host, pod, _, mut conf) = setup("9.9.9", "198.18.1.0/24");
        let env = add_env(&host, "c1", &pod, "eth0");
        expect_error(&host, &env, &serde_json::to_vec(&conf).unwrap(), 1);
        conf["cniVersion"] = json!("0.0.1");
        expect_error(&host, &env, &serde_json::to_vec(&conf).unwrap(), 1);
        host.assert_clean(&[], &[]);
    }

    #[test]
    fn each_missing_variable_is_code_4() {
        privileged_test!();
        let (host, pod, _, conf) = setup("1.0.0", "198.18.2.0/24");
        let stdin = serde_json::to_vec(&conf).unwrap();
        let cases: [(&str, &[&str]); 3] = [
            (
                "ADD",
                &[
                    "CNI_COMMAND",
                    "CNI_CONTAINERID",
                    "CNI_NETNS",
                    "CNI_IFNAME",
                    "CNI_PATH",
                ],
            ),
            (
                "CHECK",
                &["CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME", "CNI_PATH"],
            ),
            ("DEL", &["CNI_CONTAINERID", "CNI_IFNAME", "CNI_PATH"]),
        ];
        for (command, required) in cases {
            for var in required {
                let mut env = add_env(&host, "c1", &pod, "eth0").command(command);
                match *var {
                    "CNI_COMMAND" => env.command = None,
                    "CNI_CONTAINERID" => env.container_id = None,
                    "CNI_NETNS" => env.netns = None,
                    "CNI_IFNAME" => env.ifname = None,
                    _ => env.path = None,
                }
                let err = expect_error(&host, &env, &stdin, 4);
                let text = err.to_string();
                assert!(text.contains(var), "{command} without {var}: {text}");
            }
        }
        assert_eq!(links_of(&pod).len(), 1, "only lo in the pod");
        host.assert_clean(&[], &[]);
    }

    #[test]
    fn bad_json_is_code_6() {
        privileged_test!();
        let host = Host::new();
        let pod = TestNetns::with_kind("pod").unwrap();
        let env = add_env(&host, "c1", &pod, "eth0");
        expect_error(&host, &env, b"{\"cniVersion\": \"1.0.0\", \"name\": ", 6);
        expect_error(&host, &env, b"not json at all", 6);
        host.assert_clean(&[], &[]);
    }

    #[test]
    fn bad_network_name_is_code_7() {
        privileged_test!();
        let (host, pod, _, mut conf) = setup("1.0.0", "198.18.3.0/24");
        let env = add_env(&host, "c1", &pod, "eth0");
        conf["name"] = json!("bad/name with spaces");
        expect_error(&host, &env, &serde_json::to_vec(&conf).unwrap(), 7);
        conf.as_object_mut().unwrap().remove("name");
        expect_error(&host, &env, &serde_json::to_vec(&conf).unwrap(), 7);
        host.assert_clean(&[], &[]);
    }

    #[test]
    fn ifname_over_15_bytes_is_code_4() {
        privileged_test!();
        let (host, pod, _, conf) = setup("1.0.0", "198.18.4.0/24");
        let env = add_env(&host, "c1", &pod, "eth0123456789abc");
        expect_error(&host, &env, &serde_json::to_vec(&conf).unwrap(), 4);
        // Exactly 15 bytes is fine.
        let ok_name = "eth0123456789ab";
        let result = run(&host, &add_env(&host, "c1", &pod, ok_name), &conf).ok();
        assert!(links_of(&pod).contains(ok_name), "{result:#}");
        run(
            &host,
            &add_env(&host, "c1", &pod, ok_name).command("DEL"),
            &conf,
        )
        .ok();
        host.assert_clean(&[conf["bridge"].as_str().unwrap()], &[]);
    }

    #[test]
    fn check_below_0_4_0_is_code_1() {
        privileged_test!();
        let host = Host::new();
        let pod = TestNetns::with_kind("pod").unwrap();
        for version in ["0.3.0", "0.3.1"] {
            let conf = bridge_conf(&host, version, &unique_name("br"), "198.18.5.0/24");
            let env = add_env(&host, "c1", &pod, "eth0").command("CHECK");
            expect_error(&host, &env, &serde_json::to_vec(&conf).unwrap(), 1);
        }
        host.assert_clean(&[], &[]);
    }

    #[test]
    fn gc_and_status_below_1_1_0_are_code_1() {
        privileged_test!();
        let host = Host::new();
        let pod = TestNetns::with_kind("pod").unwrap();
        for version in ["0.3.1", "0.4.0", "1.0.0"] {
            let conf = bridge_conf(&host, version, &unique_name("br"), "198.18.6.0/24");
            for command in ["GC", "STATUS"] {
                let env = add_env(&host, "c1", &pod, "eth0").command(command);
                expect_error(&host, &env, &serde_json::to_vec(&conf).unwrap(), 1);
            }
        }
        host.assert_clean(&[], &[]);
    }

    #[test]
    fn unknown_command_is_code_4() {
        privileged_test!();
        let (host, pod, _, conf) = setup("1.0.0", "198.18.7.0/24");
        let env = add_env(&host, "c1", &pod, "eth0").command("ATTACH");
        let err = expect_error(&host, &env, &serde_json::to_vec(&conf).unwrap(), 4);
        assert!(err.to_string().contains("ATTACH"), "{err}");
        host.assert_clean(&[], &[]);
    }

    #[test]
    fn add_check_del_and_del_again_succeed() {
        privileged_test!();
        let (host, pod, bridge, conf) = setup("1.0.0", "198.18.8.0/24");
        let cid = unique_name("c");
        let mut result = add_and_check_pod(&host, &conf, &cid, &pod, "eth0");
        // The result names the bridge, the host veth and the pod's interface.
        let ifaces = result["interfaces"].as_array().unwrap();
        assert_eq!(ifaces.len(), 3, "{result:#}");
        assert_eq!(ifaces[0]["name"], json!(bridge));
        assert_eq!(ifaces[2]["name"], "eth0");
        assert_eq!(ifaces[2]["sandbox"], json!(pod.path()));
        let host_veth = ifaces[1]["name"].as_str().unwrap().to_string();
        let master = host.sh(&["ip", "-o", "link", "show", "dev", &host_veth]);
        assert!(master.contains(&format!("master {bridge}")), "{master}");
        let gw = host.sh(&["ip", "-o", "addr", "show", "dev", &bridge]);
        assert!(gw.contains("inet 198.18.8.1/24"), "bridge address: {gw}");
        let hairpin = host.sh(&[
            "cat",
            &format!("/sys/class/net/{host_veth}/brport/hairpin_mode"),
        ]);
        assert_eq!(hairpin.trim(), "1");
        // The pod reaches its gateway.
        let ping = pod.exec(["ping", "-c1", "-W2", "198.18.8.1"]).unwrap();
        assert!(ping.status.success(), "{ping:?}");

        let mut check = conf.clone();
        check["prevResult"] = result.take();
        call(&host, &pod, "CHECK", &cid, &check).ok();
        call(&host, &pod, "DEL", &cid, &check).ok();
        assert_eq!(links_of(&pod).len(), 1, "only lo left in the pod");
        call(&host, &pod, "DEL", &cid, &check).ok();
        call(&host, &pod, "DEL", &cid, &conf).ok();
        host.assert_clean(&[&bridge], &[cid]);
    }

    #[test]
    fn dual_stack_add_check_del() {
        privileged_test!();
        let (host, pod, bridge, mut conf) = setup("1.0.0", "198.18.14.0/24");
        conf["ipam"]["ranges"]
            .as_array_mut()
            .unwrap()
            .push(json!([{"subnet": "2001:db8:14::/64"}]));
        let result = add_and_check_pod(&host, &conf, "c6", &pod, "eth0");
        let ips = result_ips(&result);
        assert_eq!(ips.len(), 2, "{result:#}");
        assert!(ips[1].starts_with("2001:db8:14::"), "{result:#}");
        let addr6 = String::from_utf8(
            pod.ip(["-6", "-o", "addr", "show", "dev", "eth0"])
                .unwrap()
                .stdout,
        )
        .unwrap();
        assert!(addr6.contains(&format!("inet6 {}/64", ips[1])), "{addr6}");
        let routes6 =
            String::from_utf8(pod.ip(["-6", "route", "show", "default"]).unwrap().stdout).unwrap();
        assert!(
            routes6.contains("default via 2001:db8:14::1 dev eth0"),
            "{routes6}"
        );
        let gw6 = host.sh(&["ip", "-6", "-o", "addr", "show", "dev", &bridge]);
        assert!(gw6.contains("2001:db8:14::1/64"), "bridge address: {gw6}");
        let mut check = conf.clone();
        check["prevResult"] = result;
        call(&host, &pod, "CHECK", "c6", &check).ok();
        call(&host, &pod, "DEL", "c6", &check).ok();
        assert_eq!(links_of(&pod).len(), 1, "only lo left in the pod");
        host.assert_clean(&[&bridge], &ips);
    }

    #[test]
    fn ip_masq_masquerades_the_pod_and_del_removes_the_rules() {
        privileged_test!();
        let (host, pod, bridge, mut conf) = setup("1.0.0", "198.18.15.0/24");
        conf["ipMasq"] = json!(true);
        conf["ipam"]["ranges"]
            .as_array_mut()
            .unwrap()
            .push(json!([{"subnet": "2001:db8:15::/64"}]));
        let result = add_and_check_pod(&host, &conf, "cmasq", &pod, "eth0");
        let ips = result_ips(&result);
        let rules = host.snapshot().rules.join("\n");
        // One nftables rule per address (overlay_plugin::masq): from the
        // pod, leaving its subnet, not multicast.
        for (ip, family, subnet) in [
            (&ips[0], "ip", "198.18.15.0/24"),
            (&ips[1], "ip6", "2001:db8:15::/64"),
        ] {
            let rule = format!("{family} saddr {ip} {family} daddr != {subnet} {family} daddr != ");
            assert!(rules.contains(&rule), "{rule} missing:\n{rules}");
        }
        assert_eq!(rules.matches(" masquerade").count(), 2, "{rules}");
        let mut check = conf.clone();
        check["prevResult"] = result;
        call(&host, &pod, "CHECK", "cmasq", &check).ok();
        call(&host, &pod, "DEL", "cmasq", &check).ok();
        call(&host, &pod, "DEL", "cmasq", &check).ok();
        let mut markers = ips;
        markers.extend(["masq-".to_owned(), "masquerade".to_owned()]);
        host.assert_clean(&[&bridge], &markers);
    }

    #[test]
    fn promisc_mode_is_rejected_with_code_2() {
        privileged_test!();
        let (host, pod, _, mut conf) = setup("1.0.0", "198.18.16.0/24");
        conf["promiscMode"] = json!(true);
        let out = host.exec_plugin(
            &support::overlay_bridge(),
            &add_env(&host, "c1", &pod, "eth0"),
            &serde_json::to_vec(&conf).unwrap(),
        );
        let err = out.cni_error(2);
        assert!(
            err["msg"].as_str().unwrap().contains("promiscMode"),
            "{err}"
        );
        call(&host, &pod, "DEL", "c1", &conf).ok();
        assert_eq!(links_of(&pod).len(), 1, "only lo in the pod");
        host.assert_clean(&[], &[]);
    }

    #[test]
    fn check_fails_when_the_interface_is_gone() {
        privileged_test!();
        let (host, pod, bridge, conf) = setup("1.0.0", "198.18.9.0/24");
        let mut check = conf.clone();
        check["prevResult"] = add_and_check_pod(&host, &conf, "c1", &pod, "eth0");
        pod.ip(["link", "del", "eth0"]).unwrap();
        let out = call(&host, &pod, "CHECK", "c1", &check);
        assert!(!out.success, "{out:#?}");
        out.json();
        call(&host, &pod, "DEL", "c1", &check).ok();
        host.assert_clean(&[&bridge], &[]);
    }

    #[test]
    fn del_succeeds_when_the_netns_is_gone() {
        privileged_test!();
        let host = Host::new();
        let pod = TestNetns::with_kind("pod").unwrap();
        let pod_path = pod.path().to_path_buf();
        let bridge = unique_name("br");
        let conf = bridge_conf(&host, "1.0.0", &bridge, "198.18.10.0/24");
        add_and_check_pod(&host, &conf, "c1", &pod, "eth0");
        drop(pod);
        let env = CniEnv::new("DEL", "c1", &pod_path, "eth0", &host.cni_path());
        run(&host, &env, &conf).ok();
        run(&host, &env, &conf).ok();
        // The kernel destroys the veth with the namespace, asynchronously.
        wait_for("the pod's veth to go with its namespace", || {
            host_links_settled(&host, &bridge)
        });
        host.assert_clean(&[&bridge], &[]);
    }

    #[test]
    fn del_without_netns_variable_releases_the_address() {
        privileged_test!();
        let (host, pod, bridge, conf) = setup("1.0.0", "198.18.11.0/24");
        add_and_check_pod(&host, &conf, "c1", &pod, "eth0");
        let mut env = add_env(&host, "c1", &pod, "eth0").command("DEL");
        env.netns = None;
        run(&host, &env, &conf).ok();
        drop(pod);
        wait_for("the pod's veth to go with its namespace", || {
            host_links_settled(&host, &bridge)
        });
        host.assert_clean(&[&bridge], &[]);
    }

    #[test]
    fn add_of_an_existing_interface_name_fails_and_leaks_nothing() {
        privileged_test!();
        let (host, pod, bridge, conf) = setup("1.0.0", "198.18.12.0/24");
        let first = add_and_check_pod(&host, &conf, "c1", &pod, "eth0");
        let links_before = host.snapshot().links;
        let out = call(&host, &pod, "ADD", "c2", &conf);
        let err = out.json();
        assert!(!out.success, "{out:#?}");
        assert!(err["msg"].as_str().unwrap().contains("eth0"), "{err}");
        assert_eq!(host.snapshot().links, links_before, "no extra host veth");
        assert_eq!(
            support::ipam_reservations(&host.ipam_dir()).len(),
            1,
            "c2's address released"
        );
        call(&host, &pod, "DEL", "c1", &conf).ok();
        let _ = first;
        host.assert_clean(&[&bridge], &[]);
    }

    #[test]
    fn twenty_parallel_adds_get_distinct_addresses_and_all_delete() {
        privileged_test!();
        let host = Host::new();
        let bridge = unique_name("br");
        let conf = bridge_conf(&host, "1.0.0", &bridge, "198.18.13.0/24");
        let pods: Vec<TestNetns> = (0..20)
            .map(|_| TestNetns::with_kind("pod").unwrap())
            .collect();
        let results: Vec<Value> = std::thread::scope(|s| {
            let handles: Vec<_> = pods
                .iter()
                .enumerate()
                .map(|(i, pod)| {
                    let (host, conf) = (&host, &conf);
                    s.spawn(move || {
                        let env = add_env(host, &format!("c{i}"), pod, &format!("net{i}"));
                        run(host, &env, conf).ok()
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        let mut ips: Vec<String> = results.iter().flat_map(result_ips).collect();
        ips.sort();
        ips.dedup();
        assert_eq!(ips.len(), 20, "distinct addresses: {ips:?}");
        for (i, pod) in pods.iter().enumerate() {
            assert!(links_of(pod).contains(&format!("net{i}")));
        }
        std::thread::scope(|s| {
            for (i, pod) in pods.iter().enumerate() {
                let (host, conf) = (&host, &conf);
                s.spawn(move || {
                    let env =
                        add_env(host, &format!("c{i}"), pod, &format!("net{i}")).command("DEL");
                    run(host, &env, conf).ok();
                });
            }
        });
        host.assert_clean(&[&bridge], &ips);
    }
}

/// How long [`wait_for`] waits for the kernel.
const WAIT_LIMIT: std::time::Duration = std::time::Duration::from_secs(10);

/// Poll `check` until it returns `Ok` (kernel teardown after a namespace is
/// deleted is asynchronous), or fail the test with `what` and the state
/// `check` last reported once [`WAIT_LIMIT`] has passed. The limit only
/// bounds the wait: the outcome is decided by `check`, never by a sleep.
fn wait_for(what: &str, mut check: impl FnMut() -> Result<(), String>) {
    let deadline = std::time::Instant::now() + WAIT_LIMIT;
    loop {
        let last = match check() {
            Ok(()) => return,
            Err(state) => state,
        };
        assert!(
            std::time::Instant::now() < deadline,
            "timed out after {WAIT_LIMIT:?} waiting for {what}: {last}"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// `Ok` once the host has no link beyond its baseline but `bridge`; else the
/// extra links.
fn host_links_settled(host: &Host, bridge: &str) -> Result<(), String> {
    let now = host.snapshot().links;
    let extra: Vec<&String> = now
        .difference(&host.baseline.links)
        .filter(|l| l.as_str() != bridge)
        .collect();
    if extra.is_empty() {
        Ok(())
    } else {
        Err(format!("links beyond the baseline and {bridge}: {extra:?}"))
    }
}

mod libcni_chain {
    use super::*;

    /// Our plugin first, then Debian's tuning, portmap, bandwidth and firewall.
    fn chain(host: &Host, version: &str, bridge: &str, subnet: &str) -> Value {
        let mut first = bridge_conf(host, version, bridge, subnet);
        let first = first.as_object_mut().unwrap();
        first.remove("cniVersion");
        first.remove("name");
        json!({
            "cniVersion": version,
            "name": "ovtchain",
            "plugins": [
                first,
                {"type": "tuning", "sysctl": {"net.ipv4.conf.IFNAME.arp_notify": "1"}},
                {"type": "portmap", "capabilities": {"portMappings": true}, "snat": true},
                {"type": "bandwidth", "ingressRate": 8_000_000, "ingressBurst": 1_000_000,
                 "egressRate": 8_000_000, "egressBurst": 1_000_000},
                {"type": "firewall", "backend": "iptables"},
            ],
        })
    }

    fn libcni_drives_our_plugin_in_a_chain(version: &str, subnet: &str, gateway: &str) {
        let host = Host::new().without_ipv6_nat();
        let pod = TestNetns::with_kind("pod").unwrap();
        let bridge = unique_name("br");
        let mut conflist = chain(&host, version, &bridge, subnet);
        if version == "0.3.1" {
            // Debian's firewall plugin supports 0.4.0 and later only.
            conflist["plugins"].as_array_mut().unwrap().pop();
        }
        // tuning's sysctl keys name the interface.
        conflist["plugins"][1]["sysctl"] = json!({"net.ipv4.conf.eth0.arp_notify": "1"});
        let file = host.write_conflist("10-chain.conflist", &conflist);
        let cid = unique_name("c");
        let rt = RuntimeArgs {
            container_id: &cid,
            netns: pod.path(),
            ifname: "eth0",
            cap_args: json!({"portMappings": [
                {"hostPort": 18080, "containerPort": 80, "protocol": "tcp"}
            ]}),
        };
        let result = host.driver(&file, "add", &rt).ok();
        assert_eq!(result["cniVersion"], version, "{result:#}");
        // Results before 1.0.0 carry ips[].version; 1.0.0 dropped it.
        let ip_version = (version != "1.0.0").then_some("4");
        assert_eq!(
            result["ips"][0]["version"].as_str(),
            ip_version,
            "{result:#}"
        );
        assert_eq!(
            result["interfaces"][2]["sandbox"],
            json!(pod.path()),
            "{result:#}"
        );
        let ips = result_ips(&result);
        assert_eq!(ips.len(), 1, "{result:#}");
        let pod_ip = &ips[0];

        // Each plugin of the chain did its part.
        let sysctl = pod
            .exec(["cat", "/proc/sys/net/ipv4/conf/eth0/arp_notify"])
            .unwrap();
        assert_eq!(
            String::from_utf8_lossy(&sysctl.stdout).trim(),
            "1",
            "tuning"
        );
        let rules = host.snapshot().rules.join("\n");
        assert!(
            rules.contains(&format!("{pod_ip}:80")),
            "portmap DNAT missing:\n{rules}"
        );
        assert!(
            rules.contains(&cid),
            "portmap rules name the container:\n{rules}"
        );
        if version != "0.3.1" {
            let forward = format!("-A CNI-FORWARD -s {pod_ip}/32 -j ACCEPT");
            assert!(rules.contains(&forward), "firewall rule missing:\n{rules}");
        }
        let qdisc = host.sh(&["tc", "qdisc", "show"]);
        assert!(qdisc.contains("tbf"), "bandwidth shaping missing: {qdisc}");
        let ping = pod.exec(["ping", "-c1", "-W2", gateway]).unwrap();
        assert!(ping.status.success(), "{ping:?}");

        // libcni reads back its cache.
        let cached = host.driver(&file, "getcached", &rt).ok();
        assert_eq!(result_ips(&cached), ips);

        let check = host.driver(&file, "check", &rt);
        if version == "0.3.1" {
            // libcni refuses CHECK below 0.4.0 before running any plugin.
            assert!(
                !check.success && check.stdout.contains("CHECK"),
                "{check:#?}"
            );
        } else {
            check.ok();
        }

        host.driver(&file, "del", &rt).ok();
        assert_eq!(links_of(&pod).len(), 1, "only lo left in the pod");
        host.driver(&file, "del", &rt).ok();
        let mut markers = ips.clone();
        markers.push(cid);
        host.assert_clean(&[&bridge], &markers);
    }

    #[test]
    fn libcni_drives_our_plugin_with_reference_chain_at_0_3_1() {
        privileged_test!();
        libcni_drives_our_plugin_in_a_chain("0.3.1", "198.18.20.0/24", "198.18.20.1");
    }

    #[test]
    fn libcni_drives_our_plugin_with_reference_chain_at_0_4_0() {
        privileged_test!();
        libcni_drives_our_plugin_in_a_chain("0.4.0", "198.18.21.0/24", "198.18.21.1");
    }

    #[test]
    fn libcni_drives_our_plugin_with_reference_chain_at_1_0_0() {
        privileged_test!();
        libcni_drives_our_plugin_in_a_chain("1.0.0", "198.18.22.0/24", "198.18.22.1");
    }

    #[test]
    fn libcni_reports_our_plugin_versions() {
        privileged_test!();
        let host = Host::new();
        let pod = TestNetns::with_kind("pod").unwrap();
        let file = host.write_conflist(
            "10-v.conflist",
            &chain(&host, "1.0.0", &unique_name("br"), "198.18.23.0/24"),
        );
        let rt = RuntimeArgs {
            container_id: "c1",
            netns: pod.path(),
            ifname: "eth0",
            cap_args: json!({}),
        };
        let versions = host.driver(&file, "version", &rt).ok();
        let ours = versions["overlay-bridge"].as_array().unwrap();
        assert!(
            ours.contains(&json!("1.1.0")) && ours.contains(&json!("0.3.0")),
            "{versions}"
        );
        host.assert_clean(&[], &[]);
    }
}

mod ipam_delegation {
    use super::*;
    use std::fs;
    use std::path::Path;

    /// Our plugin's config with libcni's noop plugin as IPAM, recording into
    /// `debug`; noop answers ADD with `result`.
    fn noop_conf(bridge: &str, debug: &Path, result: Value) -> Value {
        let record = json!({"ReportResult": result.to_string()});
        fs::write(debug, record.to_string()).unwrap();
        json!({
            "cniVersion": "1.0.0",
            "name": "ovtnoop",
            "type": "overlay-bridge",
            "bridge": bridge,
            "isGateway": true,
            "isDefaultGateway": true,
            "debugFile": debug,
            "ipam": {"type": "noop"},
        })
    }

    /// What noop recorded: its command, environment and stdin.
    fn recorded(debug: &Path) -> Value {
        serde_json::from_slice(&fs::read(debug).unwrap()).unwrap()
    }

    fn recorded_stdin(debug: &Path) -> Value {
        // skel.CmdArgs.StdinData is a []byte: base64 in JSON.
        let b64 = recorded(debug)["CmdArgs"]["StdinData"]
            .as_str()
            .unwrap()
            .to_string();
        serde_json::from_slice(&support::base64_decode(&b64)).unwrap()
    }

    #[test]
    fn ipam_plugin_receives_the_full_config_and_environment() {
        privileged_test!();
        let host = Host::new().with_noop();
        let pod = TestNetns::with_kind("pod").unwrap();
        let bridge = unique_name("br");
        let debug = host.debug_dir().join("noop.json");
        let ipam_result = json!({
            "cniVersion": "1.0.0",
            "ips": [{"address": "198.18.30.5/24", "gateway": "198.18.30.1"}],
            "dns": {"nameservers": ["198.18.30.53"]},
        });
        let conf = noop_conf(&bridge, &debug, ipam_result);
        let mut env = add_env(&host, "cnoop", &pod, "eth0");
        env.args = Some("IgnoreUnknown=true;K8S_POD_NAME=web".into());
        let result = run(&host, &env, &conf).ok();

        // The IPAM plugin's address and DNS come back in our result...
        assert_eq!(result_ips(&result), ["198.18.30.5"]);
        assert_eq!(result["ips"][0]["gateway"], "198.18.30.1");
        assert_eq!(result["dns"]["nameservers"][0], "198.18.30.53");
        let addr = String::from_utf8(
            pod.ip(["-o", "addr", "show", "dev", "eth0"])
                .unwrap()
                .stdout,
        )
        .unwrap();
        assert!(addr.contains("inet 198.18.30.5/24"), "{addr}");

        // ...and it was run with our full stdin and the same CNI environment.
        let rec = recorded(&debug);
        assert_eq!(rec["Command"], "ADD");
        assert_eq!(rec["CmdArgs"]["ContainerID"], "cnoop");
        assert_eq!(rec["CmdArgs"]["Netns"], json!(pod.path()));
        assert_eq!(rec["CmdArgs"]["IfName"], "eth0");
        assert_eq!(
            rec["CmdArgs"]["Args"],
            "IgnoreUnknown=true;K8S_POD_NAME=web"
        );
        assert_eq!(rec["CmdArgs"]["Path"], host.cni_path());
        assert_eq!(recorded_stdin(&debug), conf);

        let mut check = conf.clone();
        check["prevResult"] = result;
        call(&host, &pod, "CHECK", "cnoop", &check).ok();
        assert_eq!(recorded(&debug)["Command"], "CHECK");
        assert_eq!(recorded_stdin(&debug), check);

        call(&host, &pod, "DEL", "cnoop", &check).ok();
        assert_eq!(recorded(&debug)["Command"], "DEL");
        assert_eq!(recorded_stdin(&debug), check);
        assert_eq!(links_of(&pod).len(), 1, "only lo left in the pod");
        host.assert_clean(&[&bridge], &[]);
    }

    #[test]
    fn failed_add_after_ipam_runs_ipam_del() {
        privileged_test!();
        let host = Host::new().with_noop();
        let pod = TestNetns::with_kind("pod").unwrap();
        let debug = host.debug_dir().join("noop.json");
        let ipam_result = json!({"cniVersion": "1.0.0", "ips": [{"address": "198.18.31.5/24"}]});
        // "lo" exists and is not a bridge: the link setup fails.
        let conf = noop_conf("lo", &debug, ipam_result);
        let out = call(&host, &pod, "ADD", "cfail", &conf);
        assert!(!out.success, "{out:#?}");
        assert!(
            out.json()["msg"].as_str().unwrap().contains("lo"),
            "{out:#?}"
        );
        assert_eq!(
            recorded(&debug)["Command"],
            "DEL",
            "IPAM DEL after the failed ADD"
        );
        assert_eq!(links_of(&pod).len(), 1, "only lo in the pod");
        host.assert_clean(&[], &[]);
    }

    #[test]
    fn ipam_error_is_passed_through_and_nothing_is_left() {
        privileged_test!();
        let host = Host::new().with_noop();
        let pod = TestNetns::with_kind("pod").unwrap();
        let bridge = unique_name("br");
        let debug = host.debug_dir().join("noop.json");
        let conf = noop_conf(&bridge, &debug, json!({}));
        let record = json!({"ReportError": "pool exhausted", "ReportStderr": "noop says hi\n"});
        fs::write(&debug, record.to_string()).unwrap();
        let out = call(&host, &pod, "ADD", "cerr", &conf);
        assert!(!out.success, "{out:#?}");
        assert!(
            out.json()["msg"]
                .as_str()
                .unwrap()
                .contains("pool exhausted"),
            "{out:#?}"
        );
        assert!(
            out.stderr.contains("noop says hi"),
            "IPAM stderr passed through: {out:#?}"
        );
        assert_eq!(links_of(&pod).len(), 1, "only lo in the pod");
        host.assert_clean(&[&bridge], &[]);
    }

    /// An IPAM plugin that records each command's stdin and environment and
    /// answers STATUS with the code in `<debug>/status-code` if present.
    fn install_recorder(host: &Host) {
        let script = format!(
            r#"#!/bin/sh
d={debug}
cat > "$d/$CNI_COMMAND.stdin"
env | grep '^CNI_' | sort > "$d/$CNI_COMMAND.env"
if [ "$CNI_COMMAND" = VERSION ]; then
  echo '{{"cniVersion":"1.1.0","supportedVersions":["1.0.0","1.1.0"]}}'
elif [ "$CNI_COMMAND" = STATUS ] && [ -f "$d/status-code" ]; then
  echo "{{\"cniVersion\":\"1.1.0\",\"code\":$(cat "$d/status-code"),\"msg\":\"pool not ready\"}}"
  exit 1
fi
"#,
            debug = host.debug_dir().display()
        );
        let path = host.dir.path().join("bin/recorder");
        fs::write(&path, script).unwrap();
        fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    }

    #[test]
    fn gc_and_status_are_forwarded_to_the_ipam_plugin() {
        privileged_test!();
        let host = Host::new();
        install_recorder(&host);
        let pod = TestNetns::with_kind("pod").unwrap();
        let valid = json!([{"containerID": "keep", "ifname": "eth0"}]);
        let conf = json!({
            "cniVersion": "1.1.0",
            "name": "ovtgc",
            "type": "overlay-bridge",
            "bridge": unique_name("br"),
            "ipam": {"type": "recorder"},
            "cni.dev/valid-attachments": valid,
            "cni.dev/attachments": valid,
        });
        let mut env = add_env(&host, "x", &pod, "eth0").command("GC");
        env.container_id = None;
        env.netns = None;
        env.ifname = None;
        run(&host, &env, &conf).ok();
        let stdin: Value =
            serde_json::from_slice(&fs::read(host.debug_dir().join("GC.stdin")).unwrap()).unwrap();
        assert_eq!(stdin, conf, "GC forwarded with the valid attachments");
        let genv = fs::read_to_string(host.debug_dir().join("GC.env")).unwrap();
        assert!(genv.contains("CNI_COMMAND=GC"), "{genv}");
        assert!(
            genv.contains(&format!("CNI_PATH={}", host.cni_path())),
            "{genv}"
        );

        let status_env = env.clone().command("STATUS");
        run(&host, &status_env, &conf).ok();
        let stdin: Value =
            serde_json::from_slice(&fs::read(host.debug_dir().join("STATUS.stdin")).unwrap())
                .unwrap();
        assert_eq!(stdin, conf);
        fs::write(host.debug_dir().join("status-code"), "50").unwrap();
        let err = host
            .exec_plugin(
                &support::overlay_bridge(),
                &status_env,
                &serde_json::to_vec(&conf).unwrap(),
            )
            .cni_error(50);
        assert!(
            err["msg"].as_str().unwrap().contains("pool not ready"),
            "{err}"
        );
        host.assert_clean(&[], &[]);
    }

    #[test]
    fn gc_and_status_through_the_libcni_driver_reach_the_ipam_plugin() {
        privileged_test!();
        let host = Host::new();
        install_recorder(&host);
        let pod = TestNetns::with_kind("pod").unwrap();
        let file = host.write_conflist(
            "30-gc.conflist",
            &json!({
                "cniVersion": "1.1.0",
                "name": "ovtgcl",
                "plugins": [{"type": "overlay-bridge", "bridge": unique_name("br"),
                             "ipam": {"type": "recorder"}}],
            }),
        );
        let rt = RuntimeArgs {
            container_id: "unused",
            netns: pod.path(),
            ifname: "eth0",
            cap_args: json!({}),
        };
        host.driver(&file, "gc", &rt).ok();
        let stdin: Value =
            serde_json::from_slice(&fs::read(host.debug_dir().join("GC.stdin")).unwrap()).unwrap();
        assert_eq!(stdin["name"], "ovtgcl", "name injected: {stdin}");
        assert_eq!(stdin["cniVersion"], "1.1.0", "cniVersion injected: {stdin}");
        assert_eq!(stdin["cni.dev/valid-attachments"], json!([]), "{stdin}");
        host.driver(&file, "status", &rt).ok();
        let stdin: Value =
            serde_json::from_slice(&fs::read(host.debug_dir().join("STATUS.stdin")).unwrap())
                .unwrap();
        assert_eq!(stdin["name"], "ovtgcl");
        fs::write(host.debug_dir().join("status-code"), "50").unwrap();
        let out = host.driver(&file, "status", &rt);
        assert!(!out.success, "{out:#?}");
        assert_eq!(out.json()["code"], 50, "{out:#?}");
        host.assert_clean(&[], &[]);
    }
}

mod runtime_side {
    use super::*;
    use overlay_cni::runtime::{self, Runtime, RuntimeConf};

    /// Debian's bridge + host-local, then the same chain as above.
    fn reference_chain(host: &Host, version: &str, bridge: &str, subnet: &str) -> Value {
        json!({
            "cniVersion": version,
            "name": "refchain",
            "plugins": [
                {"type": "bridge", "bridge": bridge, "isGateway": true, "isDefaultGateway": true,
                 "hairpinMode": true, "mtu": 1400, "ipam": host.host_local(subnet)},
                {"type": "tuning", "sysctl": {"net.ipv4.conf.eth0.arp_notify": "1"}},
                {"type": "portmap", "capabilities": {"portMappings": true}, "snat": true},
                {"type": "bandwidth", "ingressRate": 8_000_000, "ingressBurst": 1_000_000,
                 "egressRate": 8_000_000, "egressBurst": 1_000_000},
                {"type": "firewall", "backend": "iptables"},
            ],
        })
    }

    fn runtime(host: &Host) -> Runtime {
        let path = overlay_cni::exec::split_path(&host.cni_path());
        Runtime::new(path)
            .with_cache_dir(host.cache_dir())
            .with_env("PATH", host.path_env.clone())
    }

    fn port_mappings() -> Value {
        json!([{"hostPort": 18081, "containerPort": 8080, "protocol": "tcp"}])
    }

    fn our_runtime_drives_the_reference_chain(version: &str, subnet: &str) {
        let host = Host::new().without_ipv6_nat();
        let pod = TestNetns::with_kind("pod").unwrap();
        let bridge = unique_name("br");
        let file = host.write_conflist(
            "20-ref.conflist",
            &reference_chain(&host, version, &bridge, subnet),
        );
        // Loaded from the directory by name, as libcni's LoadConfList does.
        let list = runtime::load_conf_list(host.conf_dir(), "refchain").unwrap();
        let cid = unique_name("c");
        let rt = RuntimeConf::new(cid.clone(), "eth0")
            .with_netns(pod.path())
            .with_capability("portMappings", port_mappings());
        let ours = runtime(&host);

        // Plugins inherit the namespace of the thread that runs them.
        let result = host
            .ns
            .run_in(|| ours.add_network_list(&list, &rt))
            .unwrap()
            .unwrap_or_else(|e| panic!("ADD failed: {e}"));
        assert_eq!(result.cni_version.to_string(), version);
        let ips: Vec<String> = result
            .ips
            .iter()
            .map(|ip| ip.address.addr().to_string())
            .collect();
        assert_eq!(ips.len(), 1, "{result:?}");
        let rules = host.snapshot().rules.join("\n");
        assert!(
            rules.contains(&format!("{}:8080", ips[0])),
            "portmap DNAT missing:\n{rules}"
        );

        // libcni reads our cache: the result and the config with runtime args.
        let args = RuntimeArgs {
            container_id: &cid,
            netns: pod.path(),
            ifname: "eth0",
            cap_args: json!({"portMappings": port_mappings()}),
        };
        let cached = host.driver(&file, "getcached", &args).ok();
        assert_eq!(cached["cniVersion"], version);
        assert_eq!(result_ips(&cached), ips);
        let cached_conf = host.driver(&file, "getcachedconfig", &args).ok();
        assert_eq!(cached_conf["config"]["name"], "refchain");
        assert_eq!(cached_conf["runtimeConf"]["ContainerID"], json!(cid));
        assert_eq!(cached_conf["runtimeConf"]["IfName"], "eth0");
        assert_eq!(
            cached_conf["runtimeConf"]["CapabilityArgs"]["portMappings"],
            port_mappings()
        );

        // CHECK from both runtimes, each using the cached result as prevResult.
        host.ns
            .run_in(|| ours.check_network_list(&list, &rt))
            .unwrap()
            .unwrap_or_else(|e| panic!("CHECK failed: {e}"));
        host.driver(&file, "check", &args).ok();

        host.ns
            .run_in(|| ours.del_network_list(&list, &rt))
            .unwrap()
            .unwrap_or_else(|e| panic!("DEL failed: {e}"));
        assert!(
            !host.driver(&file, "getcached", &args).success,
            "cache entry removed by DEL"
        );
        assert_eq!(links_of(&pod).len(), 1, "only lo left in the pod");
        let mut markers = ips;
        markers.push(cid);
        host.assert_clean(&[&bridge], &markers);
    }

    #[test]
    fn our_runtime_drives_reference_bridge_chain_at_0_4_0_and_libcni_reads_the_cache() {
        privileged_test!();
        our_runtime_drives_the_reference_chain("0.4.0", "198.18.40.0/24");
    }

    #[test]
    fn our_runtime_drives_reference_bridge_chain_at_1_0_0_and_libcni_reads_the_cache() {
        privileged_test!();
        our_runtime_drives_the_reference_chain("1.0.0", "198.18.41.0/24");
    }

    #[test]
    fn our_runtime_reads_the_cache_libcni_wrote_and_deletes() {
        privileged_test!();
        let host = Host::new().without_ipv6_nat();
        let pod = TestNetns::with_kind("pod").unwrap();
        let bridge = unique_name("br");
        let file = host.write_conflist(
            "20-ref.conflist",
            &reference_chain(&host, "1.0.0", &bridge, "198.18.42.0/24"),
        );
        let cid = unique_name("c");
        let args = RuntimeArgs {
            container_id: &cid,
            netns: pod.path(),
            ifname: "eth0",
            cap_args: json!({"portMappings": port_mappings()}),
        };
        let added = host.driver(&file, "add", &args).ok();
        let list = runtime::ConfList::from_file(&file).unwrap();
        let rt = RuntimeConf::new(cid.clone(), "eth0")
            .with_netns(pod.path())
            .with_capability("portMappings", port_mappings());
        let ours = runtime(&host);
        let cached = ours
            .cached_result(&list, &rt)
            .unwrap()
            .expect("libcni's cache entry");
        let ips: Vec<String> = cached
            .ips
            .iter()
            .map(|ip| ip.address.addr().to_string())
            .collect();
        assert_eq!(ips, result_ips(&added));
        host.ns
            .run_in(|| ours.check_network_list(&list, &rt))
            .unwrap()
            .unwrap_or_else(|e| panic!("CHECK failed: {e}"));
        host.ns
            .run_in(|| ours.del_network_list(&list, &rt))
            .unwrap()
            .unwrap_or_else(|e| panic!("DEL failed: {e}"));
        assert!(ours.cached_result(&list, &rt).unwrap().is_none());
        let mut markers = ips;
        markers.push(cid);
        host.assert_clean(&[&bridge], &markers);
    }
}

/// Issue 9, items 3 and 4: a failed ADD changes nothing, configuration
/// errors are code 7 and every error says why.
mod failed_add {
    use super::*;
    use std::fs;
    use std::path::Path;

    fn add_fails(host: &Host, pod: &TestNetns, conf: &Value, code: u64) -> Value {
        host.exec_plugin(
            &support::overlay_bridge(),
            &add_env(host, "cfail", pod, "eth0"),
            &serde_json::to_vec(conf).unwrap(),
        )
        .cni_error(code)
    }

    #[test]
    fn mtu_out_of_range_is_code_7_and_leaves_nothing() {
        privileged_test!();
        let (host, pod, _, mut conf) = setup("1.0.0", "192.0.2.0/24");
        for mtu in [0, 67, 65536, 70000] {
            conf["mtu"] = json!(mtu);
            let err = add_fails(&host, &pod, &conf, 7);
            assert!(
                err["msg"].as_str().unwrap().contains(&format!("mtu {mtu}")),
                "{err}"
            );
            host.assert_untouched();
        }
        // IPv6 needs 1280.
        conf["mtu"] = json!(1279);
        conf["ipam"]["ranges"]
            .as_array_mut()
            .unwrap()
            .push(json!([{"subnet": "2001:db8:9::/64"}]));
        let err = add_fails(&host, &pod, &conf, 7);
        assert!(err["msg"].as_str().unwrap().contains("IPv6"), "{err}");
        host.assert_untouched();
        assert_eq!(links_of(&pod).len(), 1, "only lo in the pod");
    }

    #[test]
    fn bridge_name_the_kernel_refuses_is_code_7_and_leaves_nothing() {
        privileged_test!();
        let (host, pod, _, mut conf) = setup("1.0.0", "192.0.2.0/24");
        for name in ["ovtbr0123456789a", "ovt/br", "ovt br", "ovt:br", ""] {
            conf["bridge"] = json!(name);
            let err = add_fails(&host, &pod, &conf, 7);
            assert!(
                err["msg"].as_str().unwrap().contains("bridge name"),
                "{name:?}: {err}"
            );
            host.assert_untouched();
        }
        assert_eq!(links_of(&pod).len(), 1, "only lo in the pod");
    }

    /// The kernel step that fails comes after the bridge was created: the
    /// bridge goes too, as do the veth and the reservation.
    #[test]
    fn a_failed_add_removes_the_bridge_it_created() {
        privileged_test!();
        let (host, pod, _, conf) = setup("1.0.0", "192.0.2.0/24");
        // Any link named eth0 will do (this kernel may lack `dummy`).
        let taken = pod.ip(["link", "add", "eth0", "type", "bridge"]).unwrap();
        assert!(taken.status.success(), "{taken:?}");
        let err = add_fails(&host, &pod, &conf, 101);
        assert!(err["msg"].as_str().unwrap().contains("eth0"), "{err}");
        host.assert_clean(&[], &[]);
    }

    /// A pod route that cannot be installed fails the ADD after the gateway
    /// address was put on the (pre-existing, otherwise unused) bridge: the
    /// address is taken off again; the bridge, not created by the ADD, stays.
    #[test]
    fn a_failed_add_removes_the_gateway_address_it_added() {
        privileged_test!();
        let (host, pod, bridge, mut conf) = setup("1.0.0", "198.51.100.0/24");
        // Not on-link for the pod: the kernel refuses the route.
        conf["ipam"]["routes"] = json!([{"dst": "203.0.113.0/24", "gw": "192.0.2.77"}]);
        host.sh(&["ip", "link", "add", &bridge, "type", "bridge"]);
        let err = add_fails(&host, &pod, &conf, 100);
        assert!(err["msg"].as_str().unwrap().contains("route"), "{err}");
        let v4 = host.sh(&["ip", "-4", "-o", "addr", "show", "dev", &bridge]);
        assert!(v4.trim().is_empty(), "gateway address left: {v4}");
        assert!(host.snapshot().links.contains(&bridge), "bridge kept");
        assert_eq!(links_of(&pod).len(), 1, "only lo in the pod");
        host.assert_clean(&[&bridge], &[]);

        // The same failure on a bridge this ADD creates: the bridge goes.
        host.sh(&["ip", "link", "del", &bridge]);
        add_fails(&host, &pod, &conf, 100);
        host.assert_clean(&[], &[]);
    }

    #[test]
    fn cni_netns_naming_a_regular_file_or_a_directory_fails_with_the_os_reason() {
        privileged_test!();
        let (host, pod, _, conf) = setup("1.0.0", "192.0.2.0/24");
        let dir = host.dir.path().join("not-a-netns-dir");
        let file = host.dir.path().join("not-a-netns-file");
        fs::create_dir_all(&dir).unwrap();
        fs::write(&file, "").unwrap();
        let einval = std::io::Error::from_raw_os_error(libc_einval()).to_string();
        for (path, kind) in [(&dir, "a directory"), (&file, "a regular file")] {
            for command in ["ADD", "CHECK"] {
                let mut conf = conf.clone();
                if command == "CHECK" {
                    conf["prevResult"] =
                        json!({"cniVersion": "1.0.0", "ips": [{"address": "192.0.2.2/24"}]});
                }
                let env = CniEnv::new(command, "cfail", path, "eth0", &host.cni_path());
                let err = host
                    .exec_plugin(
                        &support::overlay_bridge(),
                        &env,
                        &serde_json::to_vec(&conf).unwrap(),
                    )
                    .cni_error(4);
                let msg = err["msg"].as_str().unwrap();
                assert!(msg.contains("CNI_NETNS"), "{command}: {err}");
                assert!(
                    msg.contains(&path.display().to_string()),
                    "{command}: {err}"
                );
                assert!(msg.contains(&einval), "the OS's reason: {err}");
                assert!(msg.contains(kind), "{command}: {err}");
                if command == "ADD" {
                    host.assert_untouched();
                }
            }
        }
        let _ = pod;
    }

    /// `EINVAL`'s number, without a libc dependency in the tests.
    fn libc_einval() -> i32 {
        22
    }

    /// What the reference `bridge` plugin prints for `args`, on `conf`
    /// turned into its configuration.
    fn reference_error(
        host: &Host,
        pod: &TestNetns,
        command: &str,
        args: &str,
        conf: &Value,
    ) -> Value {
        let mut reference = conf.clone();
        reference["type"] = json!("bridge");
        let mut env = add_env(host, "cargs", pod, "eth0").command(command);
        env.args = Some(args.into());
        let out = host.exec_plugin(
            &Path::new(support::DEBIAN_PLUGINS).join("bridge"),
            &env,
            &serde_json::to_vec(&reference).unwrap(),
        );
        assert!(!out.success, "reference accepted {args:?}: {out:#?}");
        out.json()
    }

    #[test]
    fn unknown_cni_args_are_refused_as_the_reference_plugin_refuses_them() {
        privileged_test!();
        let (host, pod, bridge, conf) = setup("1.0.0", "192.0.2.0/24");
        let mut with_prev = conf.clone();
        with_prev["prevResult"] =
            json!({"cniVersion": "1.0.0", "ips": [{"address": "192.0.2.2/24"}]});
        for args in [
            "K8S_POD_NAME=web",
            "K8S_POD_NAME=web;IgnoreUnknown=0",
            "IP=192.0.2.9",
            "a=b=c",
            "IgnoreUnknown=yes",
            "IgnoreUnknown=1;",
        ] {
            for (command, conf) in [("ADD", &conf), ("CHECK", &with_prev), ("DEL", &conf)] {
                let want = reference_error(&host, &pod, command, args, conf);
                let mut env = add_env(&host, "cargs", &pod, "eth0").command(command);
                env.args = Some(args.into());
                let got = run(&host, &env, conf).cni_error(want["code"].as_u64().unwrap());
                assert_eq!(got["msg"], want["msg"], "{command} {args:?}");
            }
            host.assert_untouched();
        }
        // With IgnoreUnknown, unknown keys pass.
        for ignore in ["IgnoreUnknown=1", "IgnoreUnknown=true"] {
            let mut env = add_env(&host, "cargs", &pod, "eth0");
            env.args = Some(format!("{ignore};K8S_POD_NAME=web"));
            run(&host, &env, &conf).ok();
            run(&host, &env.clone().command("DEL"), &conf).ok();
        }
        host.assert_clean(&[&bridge], &[]);
    }
}
