//! `overlay-bridge`: a CNI plugin that does what the reference `bridge`
//! plugin does in the common case, wired from `overlay-plugin`'s building
//! blocks (runner, IPAM choice, interface configuration, masquerading,
//! bridge and GC helpers), `overlay-cni` and `overlay-netlink`.
//!
//! ADD ensures the bridge (`bridge`, default `cni0`, with `mtu`; a bridge
//! it creates gets a fixed MAC derived from its name,
//! `overlay_plugin::bridge::mac_of`, so the pods' gateway MAC does not
//! change as pods come and go; an existing one is used as it is), creates a
//! veth pair whose container end is created directly in `CNI_NETNS` as
//! `CNI_IFNAME`, attaches the host end to the bridge (`hairpinMode`), gets
//! addresses from IPAM, puts them on the container interface, the gateway
//! address on the bridge (`isGateway`) and a default route via the gateway in
//! the pod (`isDefaultGateway`). The container end's MAC address is derived
//! from the attachment (network, container ID, interface name; locally
//! administered), so a repeated ADD of the same attachment gets the same
//! one. A delegated IPAM plugin runs in parallel with the link setup
//! (in-process `host-local` runs on the plugin's thread: its few file
//! operations cost less than a thread, see `overlay_plugin::ipam`), and
//! DEL releases the address while the kernel tears the veth down; DEL
//! returns as soon as the kernel announces the veth pair deleted (names and
//! addresses are free then), leaving the kernel's deferred teardown (10 to
//! 25 ms) to a short-lived helper process (`LinkOps::delete_detached`). CHECK
//! verifies the interface and the addresses of `prevResult`; DEL is
//! idempotent and succeeds when the namespace or interface is gone. `ipMasq`
//! masquerades the pod's traffic leaving its subnet (except multicast), as
//! the reference plugin does, with one nftables transaction (`nft -f -` in
//! the plugin's namespace: chain `masq-<attachment hash>` of table
//! `inet overlay`, see `overlay_plugin::masq`). `promiscMode: true` is rejected with code 2 (unsupported field):
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
//! | 102 | an nftables transaction (`nft -f -`) failed | ADD, DEL and GC with `ipMasq: true` |
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

use std::sync::Arc;

use ipnet::IpNet;
use overlay_cni::config::GcAttachment;
use overlay_cni::ipam::Ipam;
use overlay_cni::{CniError, CniResult, ErrorCode, Request};
use overlay_core::mtu::{IpFamily, check_link_mtu};
use overlay_netlink::{Address, Handle, Link, Netns, validate_ifname};
use overlay_plugin::error::{
    CODE_NETLINK, host_handle, open_netns, pod_handle, pod_handle_from, pod_socket,
};
use overlay_plugin::masq::{Masquerade, NftCommand};
use overlay_plugin::veth::{self, Port, VethPair};
use overlay_plugin::{AsyncPlugin, NetlinkResultExt, bridge, gc, iface, ipam};
use serde::Deserialize;

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

/// The keys of `CNI_ARGS` this plugin knows (besides `IgnoreUnknown`).
const KNOWN_CNI_ARGS: &[&str] = &[];

fn config_error(msg: String) -> CniError {
    CniError::new(ErrorCode::InvalidNetworkConfig, msg)
}

impl BridgeConf {
    fn from_request(req: &Request) -> Result<(BridgeConf, Arc<dyn Ipam>), CniError> {
        let extra = serde_json::Value::Object(req.config.extra.clone());
        let mut conf: BridgeConf = serde_json::from_value(extra).map_err(|e| {
            config_error("invalid bridge configuration".into()).with_details(e.to_string())
        })?;
        // As the reference plugin: a default gateway implies a gateway.
        conf.is_gateway |= conf.is_default_gateway;
        Ok((conf, ipam::for_request(req)?))
    }

    /// ADD's checks of what the kernel would refuse, before anything is
    /// created (code 7): the bridge name and the MTU. The IPAM
    /// configuration was checked by [`ipam::for_request`].
    fn validate(&self, ipam: &dyn Ipam) -> Result<(), CniError> {
        validate_ifname(&self.bridge)
            .map_err(|e| config_error(format!("invalid bridge name: {e}")))?;
        if let Some(mtu) = self.mtu {
            let family = match ipam.has_ipv6_range() {
                true => IpFamily::V6,
                false => IpFamily::V4,
            };
            check_link_mtu(mtu, family).map_err(|e| config_error(e.to_string()))?;
        }
        Ok(())
    }
}

fn masq(req: &Request) -> Option<Masquerade<NftCommand>> {
    (req.config.ip_masq == Some(true)).then(|| Masquerade::new(NftCommand::default()))
}

/// The links of one attachment.
struct Links {
    bridge: Link,
    /// Whether this ADD created the bridge.
    bridge_created: bool,
    veth: VethPair,
}

struct OverlayBridge;

impl OverlayBridge {
    /// The bridge (created when missing, and up) with the attachment's veth
    /// pair on it; a bridge this call created goes again on failure.
    async fn setup_links(
        req: &Request,
        conf: &BridgeConf,
        host: &Handle,
        pod_ns: &Netns,
    ) -> Result<Links, CniError> {
        let (bridge, created) = bridge::ensure(host, &conf.bridge, conf.mtu).await?;
        // The pod end goes up with its addresses and routes (`configure`).
        let mut port = Port::new()
            .master(bridge.index)
            .hairpin(conf.hairpin_mode)
            .defer_pod_up();
        port.mtu = conf.mtu;
        let veth = async {
            if !bridge.up {
                let up = host.link().set_up(bridge.index).await;
                up.or_cni(CODE_NETLINK, "set bridge up")?;
            }
            veth::create(req, host, pod_ns, &port).await
        };
        match veth.await {
            Ok(veth) => Ok(Links {
                bridge,
                bridge_created: created,
                veth,
            }),
            Err(e) => {
                if created {
                    let _ = bridge::remove_if_unused(host, bridge.index, None).await;
                }
                Err(e)
            }
        }
    }

    /// Undo what a failed ADD created in the host's namespace: the veth
    /// pair (its pod end and addresses go with it) and, unless another
    /// attachment uses the bridge, the bridge when this ADD created it or
    /// else the gateway addresses this ADD added to it.
    async fn undo(host: &Handle, links: &Links, gateways_added: &[IpNet]) {
        let (bridge, host_end) = (links.bridge.index, links.veth.host_end.index);
        let _ = host.link().delete(host_end).await;
        if links.bridge_created {
            let _ = bridge::remove_if_unused(host, bridge, Some(host_end)).await;
        } else if !gateways_added.is_empty()
            && let Ok(false) = bridge::in_use(host, bridge, None).await
        {
            for gw in gateways_added {
                let _ = host.address().delete(Address::new(bridge, *gw)).await;
            }
        }
    }

    /// The result, and the pod's and the host's sides configured at once:
    /// the pod's addresses and routes, the gateway addresses on the bridge
    /// (`isGateway`) and forwarding.
    async fn configure(
        req: &Request,
        conf: &BridgeConf,
        host: &Handle,
        (pod_ns, pod): (&Netns, &Handle),
        links: &Links,
        ipam: &CniResult,
        gateways_added: &mut Vec<IpNet>,
    ) -> Result<CniResult, CniError> {
        let mut result = CniResult::new(req.version);
        result.interfaces = links.veth.interfaces(req, Some(&links.bridge));
        let plan = iface::Plan::with_ifname(
            ipam,
            links.veth.pod_index,
            2,
            conf.is_default_gateway,
            Some(req.ifname()),
        )
        .link_up();
        let gateways = match conf.is_gateway {
            true => &plan.ips[..],
            false => &[],
        };
        let host_side = bridge::add_gateways(host, links.bridge.index, gateways, gateways_added);
        let (pod_side, host_side) = tokio::join!(plan.apply(pod, Some(pod_ns)), host_side);
        pod_side.and(host_side)?;
        result.ips = plan.ips;
        result.routes = plan.routes;
        result.dns = ipam.dns.clone();
        Ok(result)
    }
}

impl AsyncPlugin for OverlayBridge {
    async fn add(&self, req: &Request) -> Result<CniResult, CniError> {
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
        conf.validate(&*ipam)?;
        // `open_netns` refuses a CNI_NETNS that is no network namespace
        // before anything is created. IPAM then runs on its own thread
        // (`ipam::add_with`) while this one builds the links; that thread
        // first opens the pod namespace's socket, needed only with the lease.
        let pod_ns = open_netns(req)?;
        let on_side = pod_ns.clone();
        let prepared = ipam::add_with(ipam, req, move || pod_socket(&on_side));
        let host = host_handle()?;
        let (links, prepared) =
            tokio::join!(Self::setup_links(req, &conf, &host, &pod_ns), prepared);
        // On every failure below, dropping the lease releases the allocation.
        let prepared = prepared.and_then(|(socket, lease)| Ok((pod_handle_from(socket)?, lease)));
        let (links, pod, lease) = match (links, prepared) {
            (Ok(links), Ok((pod, lease))) => (links, pod, lease),
            (Err(e), _) => return Err(e),
            (Ok(links), Err(e)) => {
                Self::undo(&host, &links, &[]).await;
                return Err(e);
            }
        };
        let mut gateways_added = Vec::new();
        let pod_side = (&pod_ns, &pod);
        let configured = Self::configure(
            req,
            &conf,
            &host,
            pod_side,
            &links,
            lease.result(),
            &mut gateways_added,
        )
        .await
        .and_then(|result| match masq(req) {
            Some(masq) => {
                let ips: Vec<IpNet> = result.ips.iter().map(|ip| ip.address).collect();
                masq.add(req.attachment_hash(), &ips).map(|()| result)
            }
            None => Ok(result),
        });
        match configured {
            Ok(result) => {
                let _ = lease.commit();
                Ok(result)
            }
            Err(e) => {
                Self::undo(&host, &links, &gateways_added).await;
                Err(e)
            }
        }
    }

    /// Delete the attachment's veth pair through its host end (deleting one
    /// end deletes both; a missing link, after the namespace is gone or a
    /// repeated DEL, is success) while IPAM releases the address.
    async fn del(&self, req: &Request) -> Result<(), CniError> {
        req.load_args(KNOWN_CNI_ARGS)?;
        let (_, ipam) = BridgeConf::from_request(req)?;
        let host = host_handle()?;
        let veth = req.host_veth_name();
        let links = async { host.link().delete_detached(veth.as_str()).await };
        let (links, ipam) = tokio::join!(links, ipam::del(ipam, req));
        let masq = masq(req).map_or(Ok(()), |m| m.del(req.attachment_hash()));
        links.or_cni(CODE_NETLINK, "delete veth pair")?;
        masq?;
        ipam
    }

    async fn check(&self, req: &Request) -> Result<(), CniError> {
        req.load_args(KNOWN_CNI_ARGS)?;
        let (conf, ipam) = BridgeConf::from_request(req)?;
        let prev = req
            .prev_result()
            .ok_or_else(|| config_error("CHECK needs prevResult".into()))?
            .map_err(|e| CniError::new(ErrorCode::DecodingFailure, format!("prevResult: {e}")))?;
        let pod = pod_handle(&open_netns(req)?)?;
        let host = host_handle()?;
        ipam.check(req)?;
        iface::check_addresses(&pod, req.ifname(), &prev).await?;
        veth::check_attached(&host, req, conf.bridge.as_str()).await
    }

    /// Release every stale attachment whole: its host veth (deleting one
    /// end deletes both, and the pod's addresses with them) and its
    /// masquerading, then its reservation; when the links cannot be
    /// removed, the reservation stays and GC fails.
    async fn gc(&self, req: &Request, valid: &[GcAttachment]) -> Result<(), CniError> {
        let (_, ipam) = BridgeConf::from_request(req)?;
        let host = Arc::new(host_handle()?);
        let (network, masq) = (req.network_name().to_owned(), Arc::new(masq(req)));
        gc::collect(ipam, req, valid, move |stale| {
            let (host, network, masq) = (host.clone(), network.clone(), masq.clone());
            async move { gc::teardown_veth(&host, &network, &stale, masq.as_ref().as_ref()).await }
        })
        .await
    }

    async fn status(&self, req: &Request) -> Result<(), CniError> {
        BridgeConf::from_request(req)?.1.status(req)
    }
}

/// A plugin process lives a few milliseconds: allocations come from a
/// bump arena instead of the C library's allocator (which, in the static
/// musl build that `scripts/build-plugin.sh` makes, maps and unmaps memory
/// for most of them); see `overlay_plugin::alloc`.
#[global_allocator]
static ALLOC: overlay_plugin::alloc::Arena<{ 1 << 20 }> = overlay_plugin::alloc::Arena::new();

fn main() {
    overlay_plugin::run_async(&OverlayBridge)
}
