//! Property tests: configurations and results survive serialisation, and
//! result conversion follows libcni's rules for arbitrary inputs.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use overlay_cni::config::{Dns, IpamConfig, NetworkConfig, NetworkConfigList};
use overlay_cni::result::{CniResult, Interface, IpConfig, ResultError, Route};
use overlay_cni::version::{SUPPORTED_VERSIONS, Version};
use proptest::prelude::*;
use serde_json::{Map, Value};

fn version() -> impl Strategy<Value = Version> {
    prop::sample::select(SUPPORTED_VERSIONS.to_vec())
}

fn ip_addr() -> impl Strategy<Value = IpAddr> {
    prop_oneof![
        any::<u32>().prop_map(|a| IpAddr::V4(Ipv4Addr::from(a))),
        any::<u128>().prop_map(|a| IpAddr::V6(Ipv6Addr::from(a))),
    ]
}

fn ip_net() -> impl Strategy<Value = IpNet> {
    prop_oneof![
        (any::<u32>(), 0u8..=32).prop_map(|(a, p)| IpNet::V4(
            Ipv4Net::new(Ipv4Addr::from(a), p).expect("prefix in range")
        )),
        (any::<u128>(), 0u8..=128).prop_map(|(a, p)| IpNet::V6(
            Ipv6Net::new(Ipv6Addr::from(a), p).expect("prefix in range")
        )),
    ]
}

fn text() -> impl Strategy<Value = String> {
    "[a-zA-Z0-9_./:-]{1,20}"
}

fn interface() -> impl Strategy<Value = Interface> {
    (
        "[a-z0-9]{1,15}",
        prop::option::of("[0-9a-f]{2}(:[0-9a-f]{2}){5}"),
        prop::option::of(text()),
        prop::option::of(68u32..65536),
        prop::option::of(text()),
        prop::option::of(text()),
    )
        .prop_map(|(name, mac, sandbox, mtu, socket_path, pci_id)| {
            let mut i = Interface::new(name);
            (i.mac, i.sandbox, i.mtu, i.socket_path, i.pci_id) =
                (mac, sandbox, mtu, socket_path, pci_id);
            i
        })
}

fn route() -> impl Strategy<Value = Route> {
    (
        ip_net(),
        prop::option::of(ip_addr()),
        prop::array::uniform5(prop::option::of(any::<u32>())),
    )
        .prop_map(|(dst, gw, [mtu, advmss, priority, table, scope])| {
            let mut r = Route::new(dst);
            (r.gw, r.mtu, r.advmss, r.priority, r.table, r.scope) =
                (gw, mtu, advmss, priority, table, scope);
            r
        })
}

fn dns() -> impl Strategy<Value = Dns> {
    (
        prop::collection::vec(text(), 0..3),
        prop::option::of(text()),
        prop::collection::vec(text(), 0..3),
        prop::collection::vec(text(), 0..3),
    )
        .prop_map(|(nameservers, domain, search, options)| {
            let mut d = Dns::default();
            (d.nameservers, d.domain, d.search, d.options) = (nameservers, domain, search, options);
            d
        })
}

/// A 1.1.0 result with every field; interface indexes point into `interfaces`.
fn result_1_1() -> impl Strategy<Value = CniResult> {
    (
        prop::collection::vec(interface(), 0..4),
        prop::collection::vec(
            (
                ip_net(),
                prop::option::of(ip_addr()),
                any::<prop::sample::Index>(),
                any::<bool>(),
            ),
            0..5,
        ),
        prop::collection::vec(route(), 0..5),
        dns(),
    )
        .prop_map(|(interfaces, ips, routes, dns)| {
            let n = interfaces.len();
            let ips = ips
                .into_iter()
                .map(|(address, gateway, index, has_index)| {
                    let mut ip = IpConfig::new(address);
                    ip.gateway = gateway;
                    ip.interface = (has_index && n > 0).then(|| index.index(n));
                    ip
                })
                .collect();
            let mut r = CniResult::new(Version::V1_1_0);
            (r.interfaces, r.ips, r.routes, r.dns) = (interfaces, ips, routes, dns);
            r
        })
}

fn json_leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        text().prop_map(Value::from),
    ]
}

fn json_value() -> impl Strategy<Value = Value> {
    json_leaf().prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map("[a-z]{1,8}", inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// Keys no typed field claims, so they land in `extra`.
fn extra() -> impl Strategy<Value = Map<String, Value>> {
    prop::collection::btree_map("x[A-Za-z0-9/._-]{0,12}", json_value(), 0..4)
        .prop_map(|m| m.into_iter().collect())
}

fn plugin_config() -> impl Strategy<Value = NetworkConfig> {
    (
        prop::option::of(version()),
        prop::option::of("[a-z][a-z0-9-]{0,10}"),
        "[a-z][a-z0-9-]{0,10}",
        prop::option::of(prop::collection::btree_map(
            "[a-zA-Z]{1,12}",
            any::<bool>(),
            0..3,
        )),
        prop::option::of(extra()),
        prop::option::of(extra()),
        prop::option::of(any::<bool>()),
        prop::option::of(("[a-z-]{1,10}", extra())),
        prop::option::of(dns()),
        extra(),
    )
        .prop_map(
            |(
                cni_version,
                name,
                plugin_type,
                capabilities,
                runtime_config,
                args,
                ip_masq,
                ipam,
                dns,
                extra,
            )| {
                let mut c = NetworkConfig::new(plugin_type);
                (c.cni_version, c.name, c.capabilities) = (cni_version, name, capabilities);
                (c.runtime_config, c.args, c.ip_masq) = (runtime_config, args, ip_masq);
                c.ipam = ipam.map(|(plugin_type, extra)| {
                    let mut ipam = IpamConfig::default();
                    (ipam.plugin_type, ipam.extra) = (plugin_type, extra);
                    ipam
                });
                (c.dns, c.extra) = (dns, extra);
                c
            },
        )
}

fn conf_list() -> impl Strategy<Value = NetworkConfigList> {
    (
        prop::option::of(version()),
        prop::option::of(prop::collection::vec(version(), 0..4)),
        "[a-z0-9][a-z0-9._-]{0,12}",
        any::<bool>(),
        any::<bool>(),
        prop::collection::vec(plugin_config(), 0..4),
        extra(),
    )
        .prop_map(
            |(cni_version, cni_versions, name, disable_check, disable_gc, plugins, extra)| {
                let mut l = NetworkConfigList::default();
                (l.cni_version, l.cni_versions, l.name) = (cni_version, cni_versions, name);
                (l.disable_check, l.disable_gc) = (disable_check, disable_gc);
                (l.plugins, l.extra) = (plugins, extra);
                l
            },
        )
}

proptest! {
    #[test]
    fn conflists_survive_json_round_trips(list in conf_list()) {
        let bytes = serde_json::to_vec(&list).unwrap();
        let back = NetworkConfigList::from_slice(&bytes).unwrap();
        prop_assert_eq!(&back, &list);
        // And at the JSON level: writing what was read gives the same document.
        let value: Value = serde_json::from_slice(&bytes).unwrap();
        prop_assert_eq!(serde_json::to_value(&back).unwrap(), value);
    }

    #[test]
    fn results_survive_json_round_trips_in_every_version(r in result_1_1(), to in version()) {
        match r.convert(to) {
            Ok(converted) => {
                prop_assert_eq!(converted.cni_version, to);
                let json: Value = serde_json::from_slice(&converted.to_vec()).unwrap();
                prop_assert_eq!(&json["cniVersion"], &Value::from(to.to_string()));
                let back = CniResult::from_slice(&converted.to_vec()).unwrap();
                prop_assert_eq!(back, converted);
            }
            Err(ResultError::NoAddressForLegacy { .. }) => {
                prop_assert!(to.is_legacy() && r.ips.is_empty());
            }
            Err(other) => prop_assert!(false, "unexpected {other}"),
        }
    }

    #[test]
    fn ip_version_field_appears_exactly_for_0_3_and_0_4(r in result_1_1(), to in version()) {
        prop_assume!(!to.is_legacy());
        let json = r.convert(to).unwrap().to_value();
        let ips = json.get("ips").and_then(Value::as_array).cloned().unwrap_or_default();
        for (ip, original) in ips.iter().zip(&r.ips) {
            let expected = to.has_ip_version_field().then(|| {
                Value::from(if original.address.addr().is_ipv4() { "4" } else { "6" })
            });
            prop_assert_eq!(ip.get("version").cloned(), expected);
        }
    }

    #[test]
    fn conversion_between_rich_versions_keeps_addresses_routes_and_interfaces(
        r in result_1_1(),
        a in version(),
        b in version(),
    ) {
        prop_assume!(!a.is_legacy() && !b.is_legacy());
        let via = r.convert(a).unwrap().convert(b).unwrap();
        prop_assert_eq!(&via.ips, &r.ips);
        prop_assert_eq!(via.interfaces.len(), r.interfaces.len());
        prop_assert_eq!(
            via.routes.iter().map(|x| (x.dst, x.gw)).collect::<Vec<_>>(),
            r.routes.iter().map(|x| (x.dst, x.gw)).collect::<Vec<_>>()
        );
        prop_assert_eq!(&via.dns, &r.dns);
    }

    #[test]
    fn legacy_conversion_keeps_first_address_of_each_family(r in result_1_1()) {
        prop_assume!(!r.ips.is_empty());
        let legacy = r.convert(Version::V0_2_0).unwrap();
        let first = |v4: bool| r.ips.iter().find(|ip| ip.address.addr().is_ipv4() == v4).map(|ip| (ip.address, ip.gateway));
        let got = |v4: bool| legacy.ips.iter().find(|ip| ip.address.addr().is_ipv4() == v4).map(|ip| (ip.address, ip.gateway));
        prop_assert_eq!(got(true), first(true));
        prop_assert_eq!(got(false), first(false));
        prop_assert!(legacy.ips.len() <= 2);
        prop_assert!(legacy.interfaces.is_empty());
        for route in &legacy.routes {
            prop_assert!(got(route.dst.addr().is_ipv4()).is_some());
        }
    }

    #[test]
    fn reading_arbitrary_json_never_panics(value in json_value()) {
        let bytes = serde_json::to_vec(&value).unwrap();
        let _ = CniResult::from_slice(&bytes);
        let _ = NetworkConfigList::from_slice(&bytes);
        let _ = NetworkConfig::from_slice(&bytes);
    }
}

/// A plugin that succeeds at everything, so that only the runner can fail.
struct Accepting;

impl overlay_cni::Plugin for Accepting {
    fn add(&self, req: &overlay_cni::Request) -> Result<CniResult, overlay_cni::CniError> {
        let mut r = CniResult::new(Version::V1_1_0);
        r.ips.push(IpConfig::new(
            "198.51.100.7/24".parse().expect("valid literal"),
        ));
        r.interfaces.push(Interface::new(req.ifname()));
        Ok(r)
    }
    fn del(&self, _: &overlay_cni::Request) -> Result<(), overlay_cni::CniError> {
        Ok(())
    }
    fn check(&self, _: &overlay_cni::Request) -> Result<(), overlay_cni::CniError> {
        Ok(())
    }
}

fn env_value() -> impl Strategy<Value = Option<String>> {
    prop_oneof![
        Just(None),
        Just(Some(String::new())),
        "[ -~]{0,20}".prop_map(Some),
        "[a-z0-9]{1,15}".prop_map(Some),
    ]
}

fn stdin_doc() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        prop::collection::vec(any::<u8>(), 0..64),
        (
            prop::option::of(prop_oneof![
                version().prop_map(|v| Value::from(v.to_string())),
                json_leaf()
            ]),
            prop::option::of(prop_oneof!["[a-z0-9][a-z0-9._-]{0,8}", "[ -~]{0,8}"]),
            json_value(),
            json_value(),
        )
            .prop_map(|(version, name, prev, attachments)| {
                let mut doc = Map::new();
                if let Some(v) = version {
                    doc.insert("cniVersion".into(), v);
                }
                if let Some(n) = name {
                    doc.insert("name".into(), Value::from(n));
                }
                doc.insert("type".into(), Value::from("accepting"));
                doc.insert("prevResult".into(), prev);
                doc.insert("cni.dev/valid-attachments".into(), attachments);
                serde_json::to_vec(&Value::Object(doc)).unwrap_or_default()
            }),
    ]
}

proptest! {
    #[test]
    fn the_runner_answers_any_invocation_with_a_result_or_an_error_object(
        command in prop_oneof![
            Just(None),
            prop::sample::select(vec!["ADD", "DEL", "CHECK", "VERSION", "STATUS", "GC"]).prop_map(|c| Some(c.to_owned())),
            "[A-Z]{0,6}".prop_map(Some),
        ],
        container_id in env_value(),
        netns in env_value(),
        ifname in env_value(),
        path in env_value(),
        stdin in stdin_doc(),
    ) {
        let mut env = std::collections::HashMap::new();
        for (key, value) in [
            ("CNI_COMMAND", command.clone()),
            ("CNI_CONTAINERID", container_id),
            ("CNI_NETNS", netns),
            ("CNI_IFNAME", ifname),
            ("CNI_PATH", path),
        ] {
            if let Some(value) = value {
                env.insert(key.to_owned(), value);
            }
        }
        let out = overlay_cni::plugin::dispatch(&Accepting, &env, &stdin);
        match out.exit_code {
            0 => {
                if command.as_deref() == Some("ADD") {
                    prop_assert!(CniResult::from_slice(&out.stdout).is_ok());
                }
            }
            1 => {
                let err = out.cni_error();
                prop_assert!(err.is_some(), "stdout: {}", String::from_utf8_lossy(&out.stdout));
                prop_assert!(err.and_then(|e| e.cni_version).is_some());
            }
            other => prop_assert!(false, "exit code {other}"),
        }
    }
}
