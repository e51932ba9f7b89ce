//! `overlay-bridge`: a CNI plugin that does what the reference `bridge`
//! plugin does in the common case, written with `overlay-cni`'s runner and
//! `overlay-netlink`.
//!
//! ADD ensures the bridge (`bridge`, default `cni0`, with `mtu`), creates a
//! veth pair whose container end is created directly in `CNI_NETNS` as
//! `CNI_IFNAME`, attaches the host end to the bridge (`hairpinMode`), runs the
//! `ipam` plugin, puts its addresses on the container interface, the gateway
//! address on the bridge (`isGateway`) and a default route via the gateway in
//! the pod (`isDefaultGateway`). The IPAM plugin runs in parallel with the
//! link setup, and DEL releases the address while the kernel tears the veth
//! down. CHECK verifies the interface and the addresses of `prevResult`; DEL
//! is idempotent and succeeds when the namespace or interface is gone; GC and
//! STATUS are forwarded to the IPAM plugin. `ipMasq` masquerades the pod's
//! traffic leaving its subnet with `iptables`/`ip6tables` in the plugin's
//! namespace, as the reference plugin does. `promiscMode: true` is rejected
//! with code 2 (unsupported field): overlay-netlink has no promiscuity setter.
//!
//! ```json
//! {"cniVersion": "1.1.0", "name": "pods", "type": "overlay-bridge",
//!  "bridge": "cni0", "isGateway": true, "isDefaultGateway": true, "mtu": 1450,
//!  "hairpinMode": true, "ipam": {"type": "host-local", "subnet": "10.22.0.0/16"}}
//! ```

use std::net::IpAddr;
use std::thread;

use ipnet::IpNet;
use overlay_cni::delegate::{self, AddGuard};
use overlay_cni::result::{Interface, IpConfig, Route};
use overlay_cni::{CniError, CniResult, ErrorCode, Plugin, Request};
use overlay_netlink::{Address, Handle, Link, LinkKind, Netns, VethConfig};
use serde::Deserialize;

/// Plugin-specific code: a kernel (netlink) operation failed.
const CODE_NETLINK: u32 = 100;
/// Plugin-specific code: the container interface name is already taken.
const CODE_IFNAME_TAKEN: u32 = 101;
/// Plugin-specific code: an `iptables` command for `ipMasq` failed.
const CODE_IPTABLES: u32 = 102;

/// The plugin's own keys of the network configuration.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct BridgeConf {
    #[serde(default = "default_bridge")]
    bridge: String,
    #[serde(default)]
    is_gateway: bool,
    #[serde(default)]
    is_default_gateway: bool,
    #[serde(default)]
    hairpin_mode: bool,
    #[serde(default)]
    promisc_mode: bool,
    mtu: Option<u32>,
}

fn default_bridge() -> String {
    "cni0".to_owned()
}

impl BridgeConf {
    fn from_request(req: &Request) -> Result<(BridgeConf, String), CniError> {
        let extra = serde_json::Value::Object(req.config.extra.clone());
        let mut conf: BridgeConf = serde_json::from_value(extra).map_err(|e| {
            CniError::new(
                ErrorCode::InvalidNetworkConfig,
                "invalid bridge configuration",
            )
            .with_details(e.to_string())
        })?;
        // As the reference plugin: a default gateway implies a gateway.
        conf.is_gateway |= conf.is_default_gateway;
        let ipam = req
            .config
            .ipam
            .as_ref()
            .map(|i| i.plugin_type.clone())
            .filter(|t| !t.is_empty())
            .ok_or_else(|| {
                CniError::new(ErrorCode::InvalidNetworkConfig, "ipam.type is required")
            })?;
        Ok((conf, ipam))
    }
}

/// The host end's name: derived from the attachment with a hash that is
/// stable across builds (FNV-1a), so DEL finds it without entering the pod's
/// namespace (which may be gone), even after the plugin was upgraded.
fn host_veth_name(req: &Request) -> String {
    let hash = attachment_hash(req);
    format!("veth{:08x}", (hash ^ (hash >> 32)) as u32)
}

/// FNV-1a over the network name, container ID and interface name.
fn attachment_hash(req: &Request) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for part in [req.network_name(), req.container_id(), req.ifname()] {
        for byte in part.bytes().chain([0]) {
            hash = (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3);
        }
    }
    hash
}

/// `ipMasq`: per attachment, a nat chain `OVB-<hash>` that accepts traffic to
/// the pod's subnet and masquerades the rest (except multicast), jumped to
/// from POSTROUTING for the pod's source address; the reference plugin's
/// rule layout. Removal needs no address: it follows the jumps to the chain.
mod masq {
    use super::*;
    use std::process::Command;

    fn chain(req: &Request) -> String {
        format!("OVB-{:016x}", attachment_hash(req))
    }

    fn iptables(tool: &str, args: &[&str]) -> Result<String, CniError> {
        let out = Command::new(tool)
            .args(["-w", "-t", "nat"])
            .args(args)
            .output();
        match out {
            Ok(out) if out.status.success() => {
                Ok(String::from_utf8_lossy(&out.stdout).into_owned())
            }
            Ok(out) => Err(CniError::plugin(
                CODE_IPTABLES,
                format!(
                    "{tool} -t nat {}: {}",
                    args.join(" "),
                    String::from_utf8_lossy(&out.stderr).trim()
                ),
            )),
            Err(e) => Err(CniError::plugin(
                CODE_IPTABLES,
                format!("cannot run {tool}: {e}"),
            )),
        }
    }

    fn tool(v4: bool) -> &'static str {
        if v4 { "iptables" } else { "ip6tables" }
    }

    /// Masquerade `ips`; on failure, remove what was added.
    pub(super) fn add(req: &Request, ips: &[IpConfig]) -> Result<(), CniError> {
        let chain = chain(req);
        let added = ips.iter().try_for_each(|ip| {
            let v4 = ip.address.addr().is_ipv4();
            let (tool, multicast) = (tool(v4), if v4 { "224.0.0.0/4" } else { "ff00::/8" });
            if iptables(tool, &["-S", &chain]).is_err() {
                iptables(tool, &["-N", &chain])?;
            }
            let subnet = ip.address.trunc().to_string();
            iptables(tool, &["-A", &chain, "-d", &subnet, "-j", "ACCEPT"])?;
            iptables(
                tool,
                &["-A", &chain, "!", "-d", multicast, "-j", "MASQUERADE"],
            )?;
            let source = IpNet::from(ip.address.addr()).to_string();
            iptables(tool, &["-A", "POSTROUTING", "-s", &source, "-j", &chain]).map(drop)
        });
        added.inspect_err(|_| {
            let _ = del(req);
        })
    }

    /// Remove the attachment's chain and the jumps to it; absent is success.
    pub(super) fn del(req: &Request) -> Result<(), CniError> {
        let chain = chain(req);
        for tool in [tool(true), tool(false)] {
            if iptables(tool, &["-S", &chain]).is_err() {
                continue; // no chain: nothing of ours in this family
            }
            let rules = iptables(tool, &["-S", "POSTROUTING"])?;
            for rule in rules
                .lines()
                .filter(|r| r.ends_with(&format!("-j {chain}")))
            {
                // "-A POSTROUTING ..." -> "-D POSTROUTING ..."
                let args: Vec<&str> = std::iter::once("-D")
                    .chain(rule.split_whitespace().skip(1))
                    .collect();
                iptables(tool, &args)?;
            }
            iptables(tool, &["-F", &chain])?;
            iptables(tool, &["-X", &chain])?;
        }
        Ok(())
    }
}

fn netlink(what: &str) -> impl FnOnce(overlay_netlink::Error) -> CniError + '_ {
    move |e| CniError::plugin(CODE_NETLINK, format!("{what}: {e}"))
}

fn runtime() -> Result<tokio::runtime::Runtime, CniError> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| CniError::new(ErrorCode::IoFailure, format!("tokio runtime: {e}")))
}

fn open_netns(req: &Request) -> Result<Netns, CniError> {
    let path = req.netns().ok_or_else(|| {
        CniError::new(
            ErrorCode::InvalidEnvironmentVariables,
            "CNI_NETNS is required",
        )
    })?;
    Netns::open_path(path).map_err(|e| {
        CniError::new(
            ErrorCode::UnknownContainer,
            format!("cannot open CNI_NETNS: {e}"),
        )
    })
}

/// The gateway of an IPAM address: its own, or the subnet's first host.
fn gateway_of(ip: &IpConfig) -> Option<IpAddr> {
    ip.gateway.or_else(|| {
        let net = ip.address.trunc();
        match net {
            IpNet::V4(n) => u32::from(n.network())
                .checked_add(1)
                .map(|a| IpAddr::V4(a.into())),
            IpNet::V6(n) => u128::from(n.network())
                .checked_add(1)
                .map(|a| IpAddr::V6(a.into())),
        }
    })
}

fn with_prefix(addr: IpAddr, of: &IpNet) -> IpNet {
    // The prefix length comes from an existing IpNet of the same family.
    IpNet::new(addr, of.prefix_len()).unwrap_or(*of)
}

struct OverlayBridge;

impl OverlayBridge {
    /// Delete the attachment's veth pair through its host end; deleting one
    /// end deletes both, and a missing link (namespace gone, repeated DEL)
    /// is success.
    fn remove_host_veth(req: &Request) -> Result<(), CniError> {
        let rt = runtime()?;
        let _in_runtime = rt.enter();
        let host = Handle::new().map_err(netlink("netlink socket"))?;
        match rt.block_on(host.link().delete(host_veth_name(req))) {
            Err(e) if !e.is_not_found() => Err(netlink("delete veth pair")(e)),
            _ => Ok(()),
        }
    }

    async fn setup_links(
        req: &Request,
        conf: &BridgeConf,
        host: &Handle,
        pod_ns: &Netns,
        pod: &Handle,
    ) -> Result<(Link, Link, Link), CniError> {
        let bridge = match host
            .link()
            .find(conf.bridge.as_str())
            .await
            .map_err(netlink("find bridge"))?
        {
            Some(b) if b.kind != Some(LinkKind::Bridge) => {
                return Err(CniError::new(
                    ErrorCode::InvalidNetworkConfig,
                    format!("{} already exists but is not a bridge", conf.bridge),
                ));
            }
            Some(b) => b,
            None => {
                let b = host
                    .link()
                    .ensure_bridge(&conf.bridge)
                    .await
                    .map_err(netlink("create bridge"))?;
                if let Some(mtu) = conf.mtu {
                    host.link()
                        .set_mtu(b.index, mtu)
                        .await
                        .map_err(netlink("set bridge MTU"))?;
                }
                b
            }
        };
        if !bridge.up {
            host.link()
                .set_up(bridge.index)
                .await
                .map_err(netlink("set bridge up"))?;
        }
        let mut veth = VethConfig::new(host_veth_name(req), req.ifname()).peer_netns(pod_ns);
        if let Some(mtu) = conf.mtu {
            veth = veth.mtu(mtu);
        }
        let host_end = host
            .link()
            .add_veth(&veth)
            .await
            .map_err(netlink("create veth pair"))?;
        let attach = async {
            host.link()
                .set_master(host_end.index, bridge.index)
                .await
                .map_err(netlink("attach veth to bridge"))?;
            if conf.hairpin_mode {
                host.link()
                    .set_hairpin(host_end.index, true)
                    .await
                    .map_err(netlink("set hairpin mode"))?;
            }
            host.link()
                .set_up(host_end.index)
                .await
                .map_err(netlink("set host veth up"))?;
            let pod_end = pod
                .link()
                .get(req.ifname())
                .await
                .map_err(netlink("find container veth"))?;
            pod.link()
                .set_up(pod_end.index)
                .await
                .map_err(netlink("set container veth up"))?;
            Ok::<_, CniError>(pod_end)
        };
        match attach.await {
            Ok(pod_end) => Ok((bridge, host_end, pod_end)),
            Err(e) => {
                let _ = host.link().delete(host_end.index).await;
                Err(e)
            }
        }
    }

    async fn configure(
        req: &Request,
        conf: &BridgeConf,
        host: &Handle,
        pod: &Handle,
        links: &(Link, Link, Link),
        ipam: &CniResult,
    ) -> Result<CniResult, CniError> {
        let (bridge, host_end, pod_end) = links;
        let mut result = CniResult::new(req.version);
        for (link, sandbox) in [(bridge, None), (host_end, None), (pod_end, req.netns())] {
            let mut iface = Interface::new(link.name.clone());
            iface.mac = link.mac.map(|m| m.to_string());
            iface.sandbox = sandbox.map(|p| p.display().to_string());
            result.interfaces.push(iface);
        }
        result.routes = ipam.routes.clone();
        result.dns = ipam.dns.clone();
        for ip in &ipam.ips {
            let gateway = gateway_of(ip);
            pod.address()
                .add(match ip.address {
                    IpNet::V6(_) => Address::new(pod_end.index, ip.address).nodad(),
                    IpNet::V4(_) => Address::new(pod_end.index, ip.address),
                })
                .await
                .map_err(netlink("add address to container interface"))?;
            if let (true, Some(gw)) = (conf.is_gateway, gateway) {
                let gw_net = with_prefix(gw, &ip.address);
                match host.address().add(Address::new(bridge.index, gw_net)).await {
                    Err(e) if !e.is_already_exists() => {
                        return Err(netlink("add gateway address to bridge")(e));
                    }
                    _ => {}
                }
                let key = if gw.is_ipv4() {
                    "net/ipv4/ip_forward"
                } else {
                    "net/ipv6/conf/all/forwarding"
                };
                std::fs::write(format!("/proc/sys/{key}"), "1").map_err(|e| {
                    CniError::new(
                        ErrorCode::IoFailure,
                        format!("enable forwarding ({key}): {e}"),
                    )
                })?;
            }
            let has_default = |gw: &IpAddr| {
                ipam.routes
                    .iter()
                    .any(|r| r.dst.prefix_len() == 0 && r.dst.addr().is_ipv4() == gw.is_ipv4())
            };
            if let (true, Some(gw)) = (
                conf.is_default_gateway,
                gateway.filter(|gw| !has_default(gw)),
            ) {
                let default = if gw.is_ipv4() {
                    IpNet::V4(Default::default())
                } else {
                    IpNet::V6(Default::default())
                };
                let route = overlay_netlink::Route::new(default)
                    .gateway(gw)
                    .dev(pod_end.index);
                pod.route()
                    .add(&route)
                    .await
                    .map_err(netlink("add default route"))?;
                result.routes.push(Route::new(default).with_gw(gw));
            }
            let mut ip = ip.clone();
            ip.interface = Some(2);
            ip.gateway = gateway;
            result.ips.push(ip);
        }
        for route in &ipam.routes {
            let mut r = overlay_netlink::Route::new(route.dst).dev(pod_end.index);
            let same_family =
                |ip: &&IpConfig| ip.address.addr().is_ipv4() == route.dst.addr().is_ipv4();
            if let Some(gw) = route.gw.or_else(|| {
                result
                    .ips
                    .iter()
                    .find(same_family)
                    .and_then(|ip| ip.gateway)
            }) {
                r = r.gateway(gw);
            }
            pod.route()
                .add(&r)
                .await
                .map_err(netlink("add IPAM route"))?;
        }
        Ok(result)
    }
}

impl Plugin for OverlayBridge {
    fn add(&self, req: &Request) -> Result<CniResult, CniError> {
        let (conf, ipam_type) = BridgeConf::from_request(req)?;
        if conf.promisc_mode {
            // Only ADD refuses it: DEL of such a config must still succeed.
            return Err(CniError::new(
                ErrorCode::UnsupportedField,
                "promiscMode: true is not supported",
            )
            .with_details("overlay-netlink has no promiscuity setter; set it to false"));
        }
        let pod_ns = open_netns(req)?;
        let rt = runtime()?;
        let _in_runtime = rt.enter();
        let pod = pod_ns
            .handle()
            .map_err(netlink("netlink socket in CNI_NETNS"))?;
        let host = Handle::new().map_err(netlink("netlink socket"))?;
        let taken = rt.block_on(pod.link().find(req.ifname()));
        if taken.map_err(netlink("look up CNI_IFNAME"))?.is_some() {
            return Err(CniError::plugin(
                CODE_IFNAME_TAKEN,
                format!(
                    "interface {} already exists in {}",
                    req.ifname(),
                    pod_ns.path().display()
                ),
            ));
        }
        // The IPAM plugin (a separate process) runs while we build the links.
        let (links, ipam) = thread::scope(|s| {
            let ipam =
                s.spawn(|| delegate::delegate_add_guarded(&ipam_type, &req.config_bytes, &req.env));
            let links = rt.block_on(Self::setup_links(req, &conf, &host, &pod_ns, &pod));
            (links, ipam.join())
        });
        let ipam: Result<AddGuard, CniError> = match ipam {
            Ok(delegated) => delegated.map_err(CniError::from),
            Err(_) => Err(CniError::new(ErrorCode::Internal, "IPAM thread panicked")),
        };
        // On every failure below, dropping `ipam` runs the IPAM plugin's DEL.
        let (links, ipam) = match (links, ipam) {
            (Ok(links), Ok(ipam)) => (links, ipam),
            (Err(e), _) => return Err(e),
            (Ok(links), Err(e)) => {
                let _ = rt.block_on(host.link().delete(links.1.index));
                return Err(e);
            }
        };
        match rt
            .block_on(Self::configure(
                req,
                &conf,
                &host,
                &pod,
                &links,
                ipam.result(),
            ))
            .and_then(|result| match req.config.ip_masq {
                Some(true) => masq::add(req, &result.ips).map(|()| result),
                _ => Ok(result),
            }) {
            Ok(result) => {
                ipam.commit();
                Ok(result)
            }
            Err(e) => {
                let _ = rt.block_on(host.link().delete(links.1.index));
                Err(e)
            }
        }
    }

    fn del(&self, req: &Request) -> Result<(), CniError> {
        let (_, ipam_type) = BridgeConf::from_request(req)?;
        thread::scope(|s| {
            let ipam = s.spawn(|| delegate::delegate_del(&ipam_type, &req.config_bytes, &req.env));
            let links = Self::remove_host_veth(req);
            let masq = match req.config.ip_masq {
                Some(true) => masq::del(req),
                _ => Ok(()),
            };
            let ipam = ipam
                .join()
                .map_err(|_| CniError::new(ErrorCode::Internal, "IPAM thread panicked"))?;
            links?;
            masq?;
            ipam.map_err(CniError::from)
        })
    }

    fn check(&self, req: &Request) -> Result<(), CniError> {
        let (conf, ipam_type) = BridgeConf::from_request(req)?;
        let prev = req
            .prev_result()
            .ok_or_else(|| {
                CniError::new(ErrorCode::InvalidNetworkConfig, "CHECK needs prevResult")
            })?
            .map_err(|e| CniError::new(ErrorCode::DecodingFailure, format!("prevResult: {e}")))?;
        delegate::delegate_check(&ipam_type, &req.config_bytes, &req.env)?;
        let pod_ns = open_netns(req)?;
        let rt = runtime()?;
        let _in_runtime = rt.enter();
        let pod = pod_ns
            .handle()
            .map_err(netlink("netlink socket in CNI_NETNS"))?;
        let host = Handle::new().map_err(netlink("netlink socket"))?;
        rt.block_on(async {
            let pod_end = pod
                .link()
                .find(req.ifname())
                .await
                .map_err(netlink("look up CNI_IFNAME"))?
                .ok_or_else(|| {
                    CniError::plugin(
                        CODE_NETLINK,
                        format!(
                            "interface {} not found in {}",
                            req.ifname(),
                            pod_ns.path().display()
                        ),
                    )
                })?;
            let have = pod
                .address()
                .list(None, Some(pod_end.index))
                .await
                .map_err(netlink("list addresses"))?;
            let ifindex = prev
                .interfaces
                .iter()
                .position(|i| i.name == req.ifname() && i.sandbox.is_some());
            for ip in prev
                .ips
                .iter()
                .filter(|ip| ip.interface.is_none() || ip.interface == ifindex)
            {
                if !have.iter().any(|a| a.addr == ip.address) {
                    return Err(CniError::plugin(
                        CODE_NETLINK,
                        format!("address {} missing on {}", ip.address, req.ifname()),
                    ));
                }
            }
            let host_end = host
                .link()
                .find(host_veth_name(req))
                .await
                .map_err(netlink("look up host veth"))?;
            let bridge = host
                .link()
                .find(conf.bridge.as_str())
                .await
                .map_err(netlink("look up bridge"))?;
            match (host_end, bridge) {
                (Some(h), Some(b)) if h.master == Some(b.index) => Ok(()),
                _ => Err(CniError::plugin(
                    CODE_NETLINK,
                    format!(
                        "host veth of {} is not attached to {}",
                        req.ifname(),
                        conf.bridge
                    ),
                )),
            }
        })
    }

    fn gc(
        &self,
        req: &Request,
        _valid: &[overlay_cni::config::GcAttachment],
    ) -> Result<(), CniError> {
        let (_, ipam_type) = BridgeConf::from_request(req)?;
        Ok(delegate::delegate_gc(
            &ipam_type,
            &req.config_bytes,
            &req.env,
        )?)
    }

    fn status(&self, req: &Request) -> Result<(), CniError> {
        let (_, ipam_type) = BridgeConf::from_request(req)?;
        Ok(delegate::delegate_status(
            &ipam_type,
            &req.config_bytes,
            &req.env,
        )?)
    }
}

fn main() {
    overlay_cni::plugin::run(&OverlayBridge)
}
