//! `overlay-bridge`: a CNI plugin that does what the reference `bridge`
//! plugin does in the common case, written with `overlay-cni`'s runner and
//! `overlay-netlink`.
//!
//! ADD ensures the bridge (`bridge`, default `cni0`, with `mtu`), creates a
//! veth pair whose container end is created directly in `CNI_NETNS` as
//! `CNI_IFNAME`, attaches the host end to the bridge (`hairpinMode`), gets
//! addresses from IPAM, puts them on the container interface, the gateway
//! address on the bridge (`isGateway`) and a default route via the gateway in
//! the pod (`isDefaultGateway`). The container end's MAC address is derived
//! from the attachment (network, container ID, interface name; locally
//! administered), so a repeated ADD of the same attachment gets the same
//! one. IPAM runs in parallel with the link setup,
//! and DEL releases the address while the kernel tears the veth down; DEL
//! returns as soon as the kernel announces the veth pair deleted (names and
//! addresses are free then), leaving the kernel's deferred teardown (10 to
//! 25 ms) to a short-lived helper process (see `detached_delete`). CHECK
//! verifies the interface and the addresses of `prevResult`; DEL is
//! idempotent and succeeds when the namespace or interface is gone. `ipMasq`
//! masquerades the pod's traffic leaving its subnet with
//! `iptables`/`ip6tables` in the plugin's namespace, as the reference plugin
//! does. `promiscMode: true` is rejected with code 2 (unsupported field):
//! overlay-netlink has no promiscuity setter.
//!
//! # A failed ADD changes nothing
//!
//! ADD checks the whole configuration before it touches the kernel or the
//! IPAM store: the bridge name (the kernel's interface name rules), `mtu`
//! (68 to 65535, from 1280 with an IPv6 range; `0` is not "unset", leave
//! the key out for the kernel's default), the IPAM configuration and its
//! addresses, `CNI_ARGS` and `CNI_NETNS`. A configuration error is code 7
//! and leaves no link, address, rule or IPAM file. When a kernel step
//! fails later, the ADD undoes what it created: its veth pair, its IPAM
//! reservation, its masquerading rules, and the bridge or the bridge's
//! gateway addresses when this ADD created them and no other attachment
//! uses the bridge. (Forwarding, once enabled, stays enabled, as with the
//! reference plugin.)
//!
//! # `CNI_ARGS`
//!
//! As the reference plugin (`types.LoadArgs` on its `BridgeArgs`), ADD,
//! CHECK and DEL refuse `CNI_ARGS` with a key they do not know unless
//! `IgnoreUnknown` is `1` or `true`, with the reference plugin's code
//! (999) and message (`ARGS: unknown args [...]`); see
//! [`overlay_cni::args`]. This plugin knows no keys: the reference plugin's
//! `MAC` is not supported (the container MAC is derived, see above), and
//! `IP` is for IPAM (runtimes send it with `IgnoreUnknown=1`).
//!
//! # Error codes
//!
//! Besides the spec's codes (1 to 7, 11, 50, and 999 as above), the plugin
//! fails with its own:
//!
//! | code | meaning | when |
//! | ---- | ------- | ---- |
//! | 100 | a kernel (netlink) operation failed | creating the bridge or the veth pair, setting links up, adding addresses and routes, deleting links (DEL, GC); the message names the step and the kernel's reason |
//! | 101 | the container interface name is taken | ADD, when `CNI_IFNAME` already exists in `CNI_NETNS` |
//! | 102 | an `iptables`/`ip6tables` command failed | ADD and DEL with `ipMasq: true` |
//! | 103 | in-process `host-local` IPAM could not allocate, or found no address | ADD (range full, duplicate attachment, requested address unavailable), CHECK (no reservation for the attachment) |
//!
//! # IPAM
//!
//! With `"ipam": {"type": "host-local", ...}` the plugin allocates
//! in-process with `overlay_ipam::host_local` instead of running the
//! `host-local` binary: the same configuration (`ranges`, the legacy
//! `subnet`/`rangeStart`/`rangeEnd`/`gateway`, `routes`, `dataDir`,
//! `resolvConf`, requested IPs from `CNI_ARGS` `IP=`, `args.cni.ips` and
//! `runtimeConfig.ips`), the same files under `<dataDir>/<network>` and the
//! same `flock` on their `lock` file, so this plugin and the reference
//! `host-local` can share a node's data directory safely. ADD, DEL, CHECK
//! and GC act on those files. GC releases every attachment missing from
//! the runtime's valid attachments whole or not at all: it deletes the
//! attachment's host veth (which takes the pod's end and its addresses
//! with it) and masquerading rules first, and frees the reservation only
//! when that succeeded, so no ADD is ever given an address still configured
//! on a live interface. STATUS reports ready when the network's data
//! directory is writable and every range set has a free address (code 50
//! otherwise, with the reason). This saves the `host-local` process (about
//! 5 ms of an ADD).
//!
//! Any other IPAM type is delegated: the plugin found on `CNI_PATH` runs
//! with the same environment and configuration, for every command. To force
//! delegation of `host-local` too (for example to use a patched
//! `host-local` binary), set `"delegate": true` in the `ipam` object; the
//! reference plugin ignores that key.
//!
//! ```json
//! {"cniVersion": "1.1.0", "name": "pods", "type": "overlay-bridge",
//!  "bridge": "cni0", "isGateway": true, "isDefaultGateway": true, "mtu": 1450,
//!  "hairpinMode": true, "ipam": {"type": "host-local", "subnet": "10.22.0.0/16"}}
//! ```

use std::net::IpAddr;
use std::thread;

use ipnet::IpNet;
use overlay_cni::config::GcAttachment;
use overlay_cni::delegate::{self, AddGuard};
use overlay_cni::plugin::attachment_hash;
use overlay_cni::result::{Interface, IpConfig, Route};
use overlay_cni::{CniError, CniResult, ErrorCode, Plugin, Request};
use overlay_ipam::host_local;
use overlay_netlink::{
    Address, Handle, Link, LinkKind, MacAddr, Netns, VethConfig, validate_ifname,
};
use serde::Deserialize;

/// Plugin-specific code: a kernel (netlink) operation failed.
const CODE_NETLINK: u32 = 100;
/// Plugin-specific code: the container interface name is already taken.
const CODE_IFNAME_TAKEN: u32 = 101;
/// Plugin-specific code: an `iptables` command for `ipMasq` failed.
const CODE_IPTABLES: u32 = 102;
/// Plugin-specific code: in-process `host-local` IPAM could not allocate
/// (range full, duplicate attachment, requested address unavailable) or
/// found no address for CHECK.
const CODE_IPAM: u32 = 103;

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

/// The smallest MTU the kernel accepts for a bridge or a veth (`ETH_MIN_MTU`).
const MIN_MTU: u32 = 68;
/// The smallest MTU on which the kernel keeps IPv6 up (`IPV6_MIN_MTU`).
const MIN_MTU_IPV6: u32 = 1280;
/// The largest MTU the kernel accepts for a bridge or a veth (`ETH_MAX_MTU`).
const MAX_MTU: u32 = 65535;

/// The keys of `CNI_ARGS` this plugin knows (besides `IgnoreUnknown`).
const KNOWN_CNI_ARGS: &[&str] = &[];

fn config_error(msg: String) -> CniError {
    CniError::new(ErrorCode::InvalidNetworkConfig, msg)
}

impl BridgeConf {
    fn from_request(req: &Request) -> Result<(BridgeConf, Ipam), CniError> {
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
        Ok((conf, Ipam::from_request(req)?))
    }

    /// ADD's checks of what the kernel would refuse, before anything is
    /// created (code 7): the bridge name and the MTU. The IPAM
    /// configuration was checked by [`Ipam::from_request`].
    fn validate(&self, ipam: &Ipam) -> Result<(), CniError> {
        validate_ifname(&self.bridge)
            .map_err(|e| config_error(format!("invalid bridge name: {e}")))?;
        if let Some(mtu) = self.mtu {
            let (min, why) = match ipam.has_ipv6_range() {
                true => (MIN_MTU_IPV6, " (the network has an IPv6 range)"),
                false => (MIN_MTU, ""),
            };
            if !(min..=MAX_MTU).contains(&mtu) {
                return Err(config_error(format!(
                    "invalid mtu {mtu}: must be {min} to {MAX_MTU}{why}"
                )));
            }
        }
        Ok(())
    }
}

/// Where a request's IPAM runs: see the crate docs' IPAM section.
enum Ipam {
    /// `host-local`, in-process, on the reference plugin's files.
    HostLocal(Box<host_local::Config>),
    /// Any other type (or `"delegate": true`): the plugin on `CNI_PATH`.
    Delegate(String),
}

/// An ADD's allocation, released when dropped unless committed.
enum Lease<'a> {
    Delegated(AddGuard),
    Local(LocalLease<'a>),
}

/// An in-process `host-local` allocation, released when dropped unless
/// committed.
struct LocalLease<'a> {
    config: &'a host_local::Config,
    req: &'a Request,
    /// Some until committed.
    result: Option<CniResult>,
}

impl Lease<'_> {
    fn result(&self) -> &CniResult {
        match self {
            Lease::Delegated(guard) => guard.result(),
            // Invariant: `result` is Some until `commit` consumes the lease.
            Lease::Local(local) => local.result.as_ref().expect("lease holds its result"),
        }
    }

    fn commit(self) {
        match self {
            Lease::Delegated(guard) => drop(guard.commit()),
            Lease::Local(mut local) => local.result = None,
        }
    }
}

impl Drop for LocalLease<'_> {
    fn drop(&mut self) {
        if self.result.is_some() {
            let _ = self
                .config
                .release(self.req.container_id(), self.req.ifname());
        }
    }
}

fn ipam_config_error(e: host_local::ConfigError) -> CniError {
    CniError::new(
        ErrorCode::InvalidNetworkConfig,
        "invalid host-local IPAM configuration",
    )
    .with_details(e.to_string())
}

fn ipam_store_error(e: host_local::StoreError) -> CniError {
    CniError::new(ErrorCode::IoFailure, format!("host-local IPAM store: {e}"))
}

impl Ipam {
    /// Whether in-process `host-local` has an IPv6 range set (a delegated
    /// plugin's ranges are not known before its ADD).
    fn has_ipv6_range(&self) -> bool {
        match self {
            Ipam::HostLocal(config) => config.ranges.iter().any(|set| !set.is_ipv4()),
            Ipam::Delegate(_) => false,
        }
    }

    fn from_request(req: &Request) -> Result<Ipam, CniError> {
        let ipam = req
            .config
            .ipam
            .as_ref()
            .filter(|i| !i.plugin_type.is_empty())
            .ok_or_else(|| {
                CniError::new(ErrorCode::InvalidNetworkConfig, "ipam.type is required")
            })?;
        let delegate = match ipam.extra.get("delegate") {
            None => false,
            Some(serde_json::Value::Bool(b)) => *b,
            Some(other) => {
                return Err(CniError::new(
                    ErrorCode::InvalidNetworkConfig,
                    format!("ipam.delegate must be true or false, not {other}"),
                ));
            }
        };
        if ipam.plugin_type != "host-local" || delegate {
            return Ok(Ipam::Delegate(ipam.plugin_type.clone()));
        }
        host_local::Config::from_network_config(&req.config_bytes, &req.env.args)
            .map(|c| Ipam::HostLocal(Box::new(c)))
            .map_err(ipam_config_error)
    }

    fn add<'a>(&'a self, req: &'a Request) -> Result<Lease<'a>, CniError> {
        match self {
            Ipam::Delegate(ty) => Ok(Lease::Delegated(delegate::delegate_add_guarded(
                ty,
                &req.config_bytes,
                &req.env,
            )?)),
            Ipam::HostLocal(config) => {
                let got =
                    config
                        .allocate(req.container_id(), req.ifname())
                        .map_err(|e| match e {
                            host_local::AllocError::Store(e) => ipam_store_error(e),
                            other => CniError::plugin(CODE_IPAM, other.to_string()),
                        })?;
                let mut result = CniResult::new(req.version);
                result.ips = got
                    .ips
                    .iter()
                    .map(|ip| IpConfig::new(ip.address).with_gateway(ip.gateway))
                    .collect();
                result.routes = got
                    .routes
                    .iter()
                    .map(|r| match r.gw {
                        Some(gw) => Route::new(r.dst).with_gw(gw),
                        None => Route::new(r.dst),
                    })
                    .collect();
                result.dns.nameservers = got.dns.nameservers;
                result.dns.domain = got.dns.domain;
                result.dns.search = got.dns.search;
                result.dns.options = got.dns.options;
                Ok(Lease::Local(LocalLease {
                    config,
                    req,
                    result: Some(result),
                }))
            }
        }
    }

    fn del(&self, req: &Request) -> Result<(), CniError> {
        match self {
            Ipam::Delegate(ty) => Ok(delegate::delegate_del(ty, &req.config_bytes, &req.env)?),
            Ipam::HostLocal(config) => config
                .release(req.container_id(), req.ifname())
                .map(drop)
                .map_err(ipam_store_error),
        }
    }

    fn check(&self, req: &Request) -> Result<(), CniError> {
        match self {
            Ipam::Delegate(ty) => Ok(delegate::delegate_check(ty, &req.config_bytes, &req.env)?),
            Ipam::HostLocal(config) => match config.check(req.container_id(), req.ifname()) {
                Ok(true) => Ok(()),
                Ok(false) => Err(CniError::plugin(
                    CODE_IPAM,
                    format!(
                        "host-local: failed to find address added by container {}",
                        req.container_id()
                    ),
                )),
                Err(e) => Err(ipam_store_error(e)),
            },
        }
    }

    /// GC of in-process `host-local`: `teardown` removes what else a stale
    /// attachment holds; its reservation is freed only when that succeeded.
    fn gc(
        &self,
        req: &Request,
        valid: &[GcAttachment],
        teardown: impl FnMut(&host_local::Owner, &[IpAddr]) -> Result<(), CniError>,
    ) -> Result<(), CniError> {
        match self {
            Ipam::Delegate(ty) => Ok(delegate::delegate_gc(ty, &req.config_bytes, &req.env)?),
            Ipam::HostLocal(config) => {
                let valid: Vec<(&str, &str)> = valid
                    .iter()
                    .map(|a| (a.container_id.as_str(), a.ifname.as_str()))
                    .collect();
                let outcome = config.gc_with(&valid, teardown).map_err(ipam_store_error)?;
                let Some((_, _, first)) = outcome.kept.first() else {
                    return Ok(());
                };
                let kept: Vec<String> = outcome
                    .kept
                    .iter()
                    .map(|(owner, ips, e)| {
                        format!(
                            "{}/{} ({}): {}",
                            owner.container_id,
                            owner.ifname.as_deref().unwrap_or("?"),
                            display_ips(ips),
                            e.msg
                        )
                    })
                    .collect();
                Err(CniError::new(
                    first.code,
                    format!(
                        "GC kept {} stale attachment(s) it could not tear down whole; their addresses stay reserved",
                        kept.len()
                    ),
                )
                .with_details(kept.join("; ")))
            }
        }
    }

    fn status(&self, req: &Request) -> Result<(), CniError> {
        match self {
            Ipam::Delegate(ty) => Ok(delegate::delegate_status(ty, &req.config_bytes, &req.env)?),
            Ipam::HostLocal(config) => {
                let unavailable = |msg: String| CniError::new(ErrorCode::PluginNotAvailable, msg);
                config.status().map_err(|e| {
                    unavailable(format!("host-local IPAM store is not usable: {e}"))
                })?;
                match config.full_range_set() {
                    Ok(None) => Ok(()),
                    Ok(Some(index)) => Err(unavailable(format!(
                        "host-local IPAM has no free address in range set {index} ({}): ADD cannot succeed",
                        config
                            .ranges
                            .get(index)
                            .map(ToString::to_string)
                            .unwrap_or_default()
                    ))),
                    Err(e) => Err(unavailable(format!(
                        "host-local IPAM store is not usable: {e}"
                    ))),
                }
            }
        }
    }
}

/// The host end's name: derived from the attachment with a hash that is
/// stable across builds (FNV-1a), so DEL finds it without entering the pod's
/// namespace (which may be gone), even after the plugin was upgraded.
fn host_veth_name(req: &Request) -> String {
    host_veth_name_of(req.attachment_hash())
}

/// [`host_veth_name`] from an attachment hash (GC knows attachments from
/// IPAM's files, not from a request).
fn host_veth_name_of(hash: u64) -> String {
    format!("veth{:08x}", (hash ^ (hash >> 32)) as u32)
}

fn display_ips(ips: &[IpAddr]) -> String {
    ips.iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(" ")
}

/// The container end's MAC address: locally administered and unicast,
/// derived from the attachment like the host end's name (different bits of
/// the hash), so the plugin knows it without asking the pod's namespace.
fn pod_mac(req: &Request) -> MacAddr {
    let h = req.attachment_hash().rotate_left(29).to_be_bytes();
    MacAddr::new([(h[0] & 0xfe) | 0x02, h[1], h[2], h[3], h[4], h[5]])
}

/// The links of one attachment.
struct Links {
    bridge: Link,
    /// Whether this ADD created the bridge.
    bridge_created: bool,
    host_end: Link,
    /// The container end, in the pod's namespace.
    pod_index: u32,
    pod_mac: Option<MacAddr>,
}

/// `ipMasq`: per attachment, a nat chain `OVB-<hash>` that accepts traffic to
/// the pod's subnet and masquerades the rest (except multicast), jumped to
/// from POSTROUTING for the pod's source address; the reference plugin's
/// rule layout. Removal needs no address: it follows the jumps to the chain.
mod masq {
    use super::*;
    use std::process::Command;

    fn chain(hash: u64) -> String {
        format!("OVB-{hash:016x}")
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
        let chain = chain(req.attachment_hash());
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
            let _ = del(req.attachment_hash());
        })
    }

    /// Remove the chain of the attachment with hash `hash` and the jumps
    /// to it; absent is success.
    pub(super) fn del(hash: u64) -> Result<(), CniError> {
        let chain = chain(hash);
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

/// Deleting a veth pair blocks the deleting task in the kernel until the
/// deferred teardown has run (an RCU barrier and the draining of device
/// references: 10 to 25 ms on a test machine), although both ends are
/// unlisted, and announced as deleted on `RTMGRP_LINK`, within the first
/// millisecond. DEL waits for that announcement only: a forked helper
/// process sends the delete request and stays in the kernel until the
/// teardown is done, while the plugin reports success and exits. When the
/// announcement cannot be seen (the event socket overflowed), the plugin
/// waits for the helper's exit status, which carries the kernel's answer.
mod detached_delete {
    use super::*;
    use netlink_packet_core::{
        NLM_F_ACK, NLM_F_REQUEST, NetlinkHeader, NetlinkMessage, NetlinkPayload,
    };
    use netlink_packet_route::RouteNetlinkMessage;
    use netlink_packet_route::link::LinkMessage;
    use overlay_netlink::{LinkEvent, LinkEvents};
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
    use std::time::Duration;

    /// `NLMSG_ERROR`: the type of the kernel's answer to a request.
    const NLMSG_ERROR: u16 = 2;

    /// A deletion whose helper process was started.
    pub(super) struct Pending {
        events: LinkEvents,
        index: u32,
        child: libc::pid_t,
    }

    fn io_error(what: &str) -> CniError {
        CniError::plugin(
            CODE_NETLINK,
            format!("{what}: {}", std::io::Error::last_os_error()),
        )
    }

    /// `RTM_DELLINK` of link `index`, with an ACK request.
    fn request(index: u32) -> Vec<u8> {
        let mut link = LinkMessage::default();
        link.header.index = index;
        let mut header = NetlinkHeader::default();
        header.flags = NLM_F_REQUEST | NLM_F_ACK;
        header.sequence_number = 1;
        let mut message = NetlinkMessage::new(
            header,
            NetlinkPayload::InnerMessage(RouteNetlinkMessage::DelLink(link)),
        );
        message.finalize();
        let mut buf = vec![0; message.buffer_len()];
        message.serialize(&mut buf);
        buf
    }

    /// Start deleting link `name` of `host`'s namespace; `None` when it
    /// does not exist. Call before the process starts any thread: the
    /// helper is forked.
    pub(super) async fn start(host: &Handle, name: &str) -> Result<Option<Pending>, CniError> {
        // Subscribe first, so that the announcement cannot be missed.
        let events = host
            .link_events()
            .await
            .map_err(netlink("subscribe to link events"))?;
        let Some(link) = host.link().find(name).await.map_err(netlink("find veth"))? else {
            return Ok(None);
        };
        let request = request(link.index);
        // SAFETY: plain socket(2); the result is checked before use.
        let raw = unsafe {
            libc::socket(
                libc::AF_NETLINK,
                libc::SOCK_RAW | libc::SOCK_CLOEXEC,
                libc::NETLINK_ROUTE,
            )
        };
        if raw < 0 {
            return Err(io_error("netlink socket"));
        }
        // SAFETY: `raw` is a new descriptor owned by nobody else.
        let socket = unsafe { OwnedFd::from_raw_fd(raw) };
        // SAFETY: the child runs only async-signal-safe functions (see
        // `helper`) and never returns into Rust code of the parent.
        match unsafe { libc::fork() } {
            -1 => Err(io_error("fork the veth deletion helper")),
            0 => helper(socket.as_raw_fd(), &request),
            child => Ok(Some(Pending {
                events,
                index: link.index,
                child,
            })),
        }
    }

    /// The helper process: detach from the plugin's output and session,
    /// send the request, and exit with the kernel's error number (0 for
    /// success).
    fn helper(socket: libc::c_int, request: &[u8]) -> ! {
        // SAFETY: open, dup2, setsid, send, recv and _exit are
        // async-signal-safe; `request` was allocated before the fork; the
        // buffer below is on this stack.
        unsafe {
            let null = libc::open(c"/dev/null".as_ptr(), libc::O_RDWR);
            if null >= 0 {
                for fd in 0..=2 {
                    libc::dup2(null, fd);
                }
            }
            libc::setsid();
            if libc::send(socket, request.as_ptr().cast(), request.len(), 0) < 0 {
                libc::_exit((*libc::__errno_location()).clamp(1, 255));
            }
            let mut answer = [0u8; 1024];
            let len = libc::recv(socket, answer.as_mut_ptr().cast(), answer.len(), 0);
            let code = match (len >= 20, answer.get(4..6), answer.get(16..20)) {
                (true, Some(&[t0, t1]), Some(&[e0, e1, e2, e3]))
                    if u16::from_ne_bytes([t0, t1]) == NLMSG_ERROR =>
                {
                    i32::from_ne_bytes([e0, e1, e2, e3]).saturating_neg()
                }
                _ => libc::EPROTO,
            };
            libc::_exit(code.clamp(0, 255))
        }
    }

    impl Pending {
        /// The helper's exit status, without waiting when `block` is false.
        fn reap(&self, block: bool) -> Result<Option<i32>, CniError> {
            let mut status = 0;
            let flags = if block { 0 } else { libc::WNOHANG };
            // SAFETY: waitpid on our own child, with a valid status pointer.
            match unsafe { libc::waitpid(self.child, &mut status, flags) } {
                0 => Ok(None),
                pid if pid == self.child && libc::WIFEXITED(status) => {
                    Ok(Some(libc::WEXITSTATUS(status)))
                }
                pid if pid == self.child => Ok(Some(libc::EINTR)),
                _ => Err(io_error("wait for the veth deletion helper")),
            }
        }

        fn outcome(code: i32) -> Result<(), CniError> {
            match code {
                // Gone already (a concurrent DEL, or the namespace's teardown).
                0 | libc::ENODEV => Ok(()),
                code => Err(CniError::plugin(
                    CODE_NETLINK,
                    format!(
                        "delete veth pair: {}",
                        std::io::Error::from_raw_os_error(code)
                    ),
                )),
            }
        }

        /// Wait until the link is announced deleted or the helper exits.
        pub(super) async fn wait(mut self) -> Result<(), CniError> {
            loop {
                tokio::select! {
                    event = self.events.next() => match event {
                        Ok(LinkEvent::Deleted(link)) if link.index == self.index => return Ok(()),
                        Ok(_) => {}
                        Err(_) => {
                            let code = self.reap(true)?.unwrap_or(libc::EPROTO);
                            return Self::outcome(code);
                        }
                    },
                    () = tokio::time::sleep(Duration::from_millis(2)) => {
                        if let Some(code) = self.reap(false)? {
                            return Self::outcome(code);
                        }
                    }
                }
            }
        }
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

/// A netlink handle in the pod's namespace, opened on this thread (inside
/// `rt`'s context, before any task runs). A `CNI_NETNS` that names no
/// network namespace (a regular file, a directory) fails here, with code 4
/// and the operating system's reason.
fn pod_handle(pod_ns: &Netns) -> Result<Handle, CniError> {
    pod_ns.handle_on_current_thread().map_err(|e| match e {
        overlay_netlink::Error::Namespace { .. } => CniError::new(
            ErrorCode::InvalidEnvironmentVariables,
            format!("CNI_NETNS is not a usable network namespace: {e}"),
        ),
        e => netlink("netlink socket in CNI_NETNS")(e),
    })
}

fn with_prefix(addr: IpAddr, of: &IpNet) -> IpNet {
    // The prefix length comes from an existing IpNet of the same family.
    IpNet::new(addr, of.prefix_len()).unwrap_or(*of)
}

struct OverlayBridge;

impl OverlayBridge {
    async fn setup_links(
        req: &Request,
        conf: &BridgeConf,
        host: &Handle,
        pod_ns: &Netns,
        pod: &Handle,
    ) -> Result<Links, CniError> {
        let (bridge, created) = Self::ensure_bridge(conf, host).await?;
        let links = Self::attach(req, conf, host, pod_ns, pod, bridge, created).await;
        if let (Err(_), Some(bridge)) = (&links, created) {
            let _ = Self::remove_bridge_if_unused(host, bridge, None).await;
        }
        links
    }

    /// The bridge, and its index when this call created it.
    async fn ensure_bridge(
        conf: &BridgeConf,
        host: &Handle,
    ) -> Result<(Link, Option<u32>), CniError> {
        let not_a_bridge = || {
            CniError::new(
                ErrorCode::InvalidNetworkConfig,
                format!("{} already exists but is not a bridge", conf.bridge),
            )
        };
        let existing = host
            .link()
            .find(conf.bridge.as_str())
            .await
            .map_err(netlink("find bridge"))?;
        if let Some(b) = existing {
            return match b.kind {
                Some(LinkKind::Bridge) => Ok((b, None)),
                _ => Err(not_a_bridge()),
            };
        }
        let b = match host.link().add_bridge(&conf.bridge).await {
            Ok(b) => b,
            // Created by a concurrent ADD in the meantime.
            Err(e) if e.is_already_exists() => {
                let b = host
                    .link()
                    .get(conf.bridge.as_str())
                    .await
                    .map_err(netlink("find bridge"))?;
                return match b.kind {
                    Some(LinkKind::Bridge) => Ok((b, None)),
                    _ => Err(not_a_bridge()),
                };
            }
            Err(e) => return Err(netlink("create bridge")(e)),
        };
        let configured = async {
            if let Some(mtu) = conf.mtu {
                host.link()
                    .set_mtu(b.index, mtu)
                    .await
                    .map_err(netlink("set bridge MTU"))?;
            }
            Ok::<_, CniError>(())
        };
        match configured.await {
            Ok(()) => Ok((b.clone(), Some(b.index))),
            Err(e) => {
                let _ = host.link().delete(b.index).await;
                Err(e)
            }
        }
    }

    /// Delete the bridge `index` (created by this ADD) unless a port other
    /// than `leaving` is attached to it: another attachment uses it then.
    async fn remove_bridge_if_unused(
        host: &Handle,
        index: u32,
        leaving: Option<u32>,
    ) -> Result<bool, overlay_netlink::Error> {
        let links = host.link().list().await?;
        let in_use = links
            .iter()
            .any(|l| l.master == Some(index) && Some(l.index) != leaving);
        if in_use {
            return Ok(false);
        }
        match host.link().delete(index).await {
            Err(e) if !e.is_not_found() => Err(e),
            _ => Ok(true),
        }
    }

    /// Undo what a failed ADD created in the host's namespace: the veth
    /// pair (its pod end and addresses go with it) and, unless another
    /// attachment uses the bridge, the bridge when this ADD created it or
    /// else the gateway addresses this ADD added to it.
    async fn undo(host: &Handle, links: &Links, gateways_added: &[IpNet]) {
        let _ = host.link().delete(links.host_end.index).await;
        let bridge = links.bridge.index;
        if links.bridge_created {
            let _ = Self::remove_bridge_if_unused(host, bridge, Some(links.host_end.index)).await;
            return;
        }
        if gateways_added.is_empty() {
            return;
        }
        let in_use = host
            .link()
            .list()
            .await
            .map(|links_now| links_now.iter().any(|l| l.master == Some(bridge)));
        if let Ok(false) = in_use {
            for gw in gateways_added {
                let _ = host.address().delete(Address::new(bridge, *gw)).await;
            }
        }
    }

    async fn attach(
        req: &Request,
        conf: &BridgeConf,
        host: &Handle,
        pod_ns: &Netns,
        pod: &Handle,
        bridge: Link,
        created: Option<u32>,
    ) -> Result<Links, CniError> {
        if !bridge.up {
            host.link()
                .set_up(bridge.index)
                .await
                .map_err(netlink("set bridge up"))?;
        }
        // Attached to the bridge and up in the creating request.
        let container_mac = pod_mac(req);
        let mut veth = VethConfig::new(host_veth_name(req), req.ifname())
            .peer_netns(pod_ns)
            .peer_mac(container_mac)
            .master(bridge.index)
            .up();
        if let Some(mtu) = conf.mtu {
            veth = veth.mtu(mtu);
        }
        // A taken CNI_IFNAME makes the creation fail with EEXIST; only then
        // is it worth a look-up to report it precisely.
        let host_end = match host.link().add_veth(&veth).await {
            Ok(link) => link,
            Err(e) if e.is_already_exists() => {
                let taken = pod.link().find(req.ifname()).await;
                return Err(match taken.map_err(netlink("look up CNI_IFNAME"))? {
                    Some(_) => CniError::plugin(
                        CODE_IFNAME_TAKEN,
                        format!(
                            "interface {} already exists in {}",
                            req.ifname(),
                            pod_ns.path().display()
                        ),
                    ),
                    None => netlink("create veth pair")(e),
                });
            }
            Err(e) => return Err(netlink("create veth pair")(e)),
        };
        // The host end reports its peer's index (IFLA_LINK) and the MAC was
        // chosen above, so the pod's namespace needs no look-up; the host
        // and pod requests go out together.
        let attach = async {
            let pod_end = match host_end.parent {
                Some(index) => (index, Some(container_mac)),
                None => {
                    let link = pod
                        .link()
                        .get(req.ifname())
                        .await
                        .map_err(netlink("find container veth"))?;
                    (link.index, link.mac)
                }
            };
            let hairpin = async {
                if conf.hairpin_mode {
                    host.link()
                        .set_hairpin(host_end.index, true)
                        .await
                        .map_err(netlink("set hairpin mode"))?;
                }
                Ok::<_, CniError>(())
            };
            let up = async {
                pod.link()
                    .set_up(pod_end.0)
                    .await
                    .map_err(netlink("set container veth up"))
            };
            let (hairpin, up) = tokio::join!(hairpin, up);
            hairpin.and(up).map(|()| pod_end)
        };
        match attach.await {
            Ok((pod_index, pod_mac)) => Ok(Links {
                bridge,
                bridge_created: created.is_some(),
                host_end,
                pod_index,
                pod_mac,
            }),
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
        links: &Links,
        ipam: &CniResult,
        gateways_added: &mut Vec<IpNet>,
    ) -> Result<CniResult, CniError> {
        let Links {
            bridge, host_end, ..
        } = links;
        let pod_index = links.pod_index;
        let mut result = CniResult::new(req.version);
        for (name, mac, sandbox) in [
            (bridge.name.as_str(), bridge.mac, None),
            (host_end.name.as_str(), host_end.mac, None),
            (req.ifname(), links.pod_mac, req.netns()),
        ] {
            let mut iface = Interface::new(name);
            iface.mac = mac.map(|m| m.to_string());
            iface.sandbox = sandbox.map(|p| p.display().to_string());
            result.interfaces.push(iface);
        }
        result.routes = ipam.routes.clone();
        result.dns = ipam.dns.clone();
        // What to install, worked out first: the pod's side (addresses, then
        // routes, which need them) and the host's side (gateway addresses on
        // the bridge, forwarding) then go out at the same time.
        let mut pod_addresses = Vec::new();
        let mut pod_routes = Vec::new();
        let mut gateways = Vec::new();
        for ip in &ipam.ips {
            let gateway = ip.gateway_or_first_host();
            pod_addresses.push(match ip.address {
                IpNet::V6(_) => Address::new(pod_index, ip.address).nodad(),
                IpNet::V4(_) => Address::new(pod_index, ip.address),
            });
            if let (true, Some(gw)) = (conf.is_gateway, gateway) {
                gateways.push(with_prefix(gw, &ip.address));
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
                pod_routes.push((
                    "add default route",
                    overlay_netlink::Route::new(default)
                        .gateway(gw)
                        .dev(pod_index),
                ));
                result.routes.push(Route::new(default).with_gw(gw));
            }
            let mut ip = ip.clone();
            ip.interface = Some(2);
            ip.gateway = gateway;
            result.ips.push(ip);
        }
        for route in &ipam.routes {
            let mut r = overlay_netlink::Route::new(route.dst).dev(pod_index);
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
            pod_routes.push(("add IPAM route", r));
        }
        let pod_side = async {
            for address in pod_addresses {
                pod.address()
                    .add(address)
                    .await
                    .map_err(netlink("add address to container interface"))?;
            }
            for (what, route) in &pod_routes {
                pod.route().add(route).await.map_err(netlink(what))?;
            }
            Ok::<_, CniError>(())
        };
        let host_side = async {
            for gw_net in gateways {
                match host.address().add(Address::new(bridge.index, gw_net)).await {
                    Ok(()) => gateways_added.push(gw_net),
                    Err(e) if !e.is_already_exists() => {
                        return Err(netlink("add gateway address to bridge")(e));
                    }
                    Err(_) => {}
                }
                let key = if gw_net.addr().is_ipv4() {
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
            Ok(())
        };
        let (pod_side, host_side) = tokio::join!(pod_side, host_side);
        pod_side.and(host_side)?;
        Ok(result)
    }
}

impl Plugin for OverlayBridge {
    fn add(&self, req: &Request) -> Result<CniResult, CniError> {
        req.load_args(KNOWN_CNI_ARGS)?;
        let (conf, ipam) = BridgeConf::from_request(req)?;
        if conf.promisc_mode {
            // Only ADD refuses it: DEL of such a config must still succeed.
            return Err(CniError::new(
                ErrorCode::UnsupportedField,
                "promiscMode: true is not supported",
            )
            .with_details("overlay-netlink has no promiscuity setter; set it to false"));
        }
        conf.validate(&ipam)?;
        let pod_ns = open_netns(req)?;
        // The sockets first (microseconds, and a CNI_NETNS that is no
        // network namespace fails here, before IPAM has written anything);
        // then IPAM (in-process, or a separate process) runs on its own
        // thread while this one builds the links.
        let rt = runtime()?;
        let in_runtime = rt.enter();
        let pod = pod_handle(&pod_ns)?;
        let host = Handle::new().map_err(netlink("netlink socket"))?;
        drop(in_runtime);
        let (links, lease) = thread::scope(|s| {
            let lease = s.spawn(|| ipam.add(req));
            let links = rt.block_on(Self::setup_links(req, &conf, &host, &pod_ns, &pod));
            (links, lease.join())
        });
        let _in_runtime = rt.enter();
        let lease = lease
            .unwrap_or_else(|_| Err(CniError::new(ErrorCode::Internal, "IPAM thread panicked")));
        // On every failure below, dropping the lease releases the allocation.
        let (links, lease) = match (links, lease) {
            (Ok(links), Ok(lease)) => (links, lease),
            (Err(e), _) => return Err(e),
            (Ok(links), Err(e)) => {
                rt.block_on(Self::undo(&host, &links, &[]));
                return Err(e);
            }
        };
        let mut gateways_added = Vec::new();
        match rt
            .block_on(Self::configure(
                req,
                &conf,
                &host,
                &pod,
                &links,
                lease.result(),
                &mut gateways_added,
            ))
            .and_then(|result| match req.config.ip_masq {
                Some(true) => masq::add(req, &result.ips).map(|()| result),
                _ => Ok(result),
            }) {
            Ok(result) => {
                lease.commit();
                Ok(result)
            }
            Err(e) => {
                rt.block_on(Self::undo(&host, &links, &gateways_added));
                Err(e)
            }
        }
    }

    /// Delete the attachment's veth pair through its host end (deleting one
    /// end deletes both; a missing link, after the namespace is gone or a
    /// repeated DEL, is success) while IPAM releases the address.
    fn del(&self, req: &Request) -> Result<(), CniError> {
        req.load_args(KNOWN_CNI_ARGS)?;
        let (_, ipam) = BridgeConf::from_request(req)?;
        let rt = runtime()?;
        let _in_runtime = rt.enter();
        let host = Handle::new().map_err(netlink("netlink socket"))?;
        // Forks: before any thread is started.
        let deletion = rt.block_on(detached_delete::start(&host, &host_veth_name(req)));
        thread::scope(|s| {
            let ipam = s.spawn(|| ipam.del(req));
            let masq = match req.config.ip_masq {
                Some(true) => masq::del(req.attachment_hash()),
                _ => Ok(()),
            };
            let links = match deletion {
                Ok(Some(pending)) => rt.block_on(pending.wait()),
                Ok(None) => Ok(()),
                Err(e) => Err(e),
            };
            let ipam = ipam
                .join()
                .map_err(|_| CniError::new(ErrorCode::Internal, "IPAM thread panicked"))?;
            links?;
            masq?;
            ipam
        })
    }

    fn check(&self, req: &Request) -> Result<(), CniError> {
        req.load_args(KNOWN_CNI_ARGS)?;
        let (conf, ipam) = BridgeConf::from_request(req)?;
        let prev = req
            .prev_result()
            .ok_or_else(|| {
                CniError::new(ErrorCode::InvalidNetworkConfig, "CHECK needs prevResult")
            })?
            .map_err(|e| CniError::new(ErrorCode::DecodingFailure, format!("prevResult: {e}")))?;
        let pod_ns = open_netns(req)?;
        let rt = runtime()?;
        let _in_runtime = rt.enter();
        let pod = pod_handle(&pod_ns)?;
        let host = Handle::new().map_err(netlink("netlink socket"))?;
        ipam.check(req)?;
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
            for ip in prev.container_ips(req.ifname()) {
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

    /// Release every stale attachment whole: its host veth (deleting one
    /// end deletes both, and the pod's addresses with them) and its
    /// masquerading rules, then its reservation; when the links cannot be
    /// removed, the reservation stays and GC fails.
    fn gc(&self, req: &Request, valid: &[GcAttachment]) -> Result<(), CniError> {
        let (_, ipam) = BridgeConf::from_request(req)?;
        if let Ipam::Delegate(_) = ipam {
            return ipam.gc(req, valid, |_, _| Ok(()));
        }
        let rt = runtime()?;
        let _in_runtime = rt.enter();
        let host = Handle::new().map_err(netlink("netlink socket"))?;
        let network = req.network_name();
        ipam.gc(req, valid, |owner, _ips| {
            let Some(ifname) = owner.ifname.as_deref() else {
                return Err(CniError::plugin(
                    CODE_NETLINK,
                    "reservation recorded without an interface name: its host veth cannot be found",
                ));
            };
            let hash = attachment_hash(network, &owner.container_id, ifname);
            let veth = host_veth_name_of(hash);
            rt.block_on(async {
                match host.link().find(veth.as_str()).await {
                    Ok(None) => Ok(()),
                    Ok(Some(link)) => match host.link().delete(link.index).await {
                        Err(e) if !e.is_not_found() => Err(netlink("delete host veth")(e)),
                        _ => Ok(()),
                    },
                    Err(e) => Err(netlink("look up host veth")(e)),
                }
            })?;
            match req.config.ip_masq {
                Some(true) => masq::del(hash),
                _ => Ok(()),
            }
        })
    }

    fn status(&self, req: &Request) -> Result<(), CniError> {
        BridgeConf::from_request(req)?.1.status(req)
    }
}

fn main() {
    overlay_cni::plugin::run(&OverlayBridge)
}
