//! `overlay`: the reference plugin's CNI executable (type `overlay`).
//!
//! It attaches a pod to the node bridge that `overlayd` created and gets its
//! address from `overlayd` over its unix socket
//! (`overlay_ipam::agent::AgentIpam`), so an `ADD` never waits on the
//! network: it gets an address from the node's own space at once, or fails
//! fast with code 11 ("no space yet", kubelet retries) or 50.
//!
//! - `ADD`: asks `overlayd` for the address and, while the agent allocates,
//!   creates the veth pair (at the bridge's MTU, which the agent keeps at
//!   the overlay MTU; its answer carries that MTU, applied to the pair when
//!   it differs) with the pod end directly in `CNI_NETNS` as `CNI_IFNAME`
//!   (MAC derived from the attachment), attaches the host end to the bridge
//!   with hairpin mode (`hairpinMode`, default on), and configures the pod
//!   in one netlink exchange: the interface up, its host address (`/32` or
//!   `/128`) and a default route through the bridge address, on-link. A
//!   failure releases the allocation and removes the veth pair.
//! - `DEL`: deletes the veth pair (absent is success) while `overlayd`
//!   releases the address; when `overlayd` is down (restarting), the
//!   release is recorded in its journal beside the socket
//!   (`overlay_ipam::agent::ReleaseJournal`) and applied when it is back,
//!   so the DEL still succeeds.
//! - `CHECK`: `overlayd` holds the address; the pod interface has the
//!   `prevResult`'s addresses; the host end is on the bridge.
//! - `STATUS`: `overlayd` is reachable and can allocate (code 50 otherwise).
//! - `GC`: every attachment `overlayd` knows that the runtime does not
//!   list loses its host veth, then its address.
//!
//! ```json
//! {"cniVersion": "1.0.0", "name": "overlay", "type": "overlay",
//!  "socket": "/run/overlay/overlayd.sock", "bridge": "overlay0", "hairpinMode": true}
//! ```
//!
//! It chains with `portmap` and `bandwidth` (see `deploy/10-overlay.conflist`).
//! Error codes: the spec's, plus 100 (a kernel operation failed) and 101
//! (`CNI_IFNAME` is taken in the pod), as `overlay-plugin` defines them.

use std::sync::Arc;

use overlay_cni::config::GcAttachment;
use overlay_cni::ipam::Ipam;
use overlay_cni::{CniError, CniResult, ErrorCode, Request};
use overlay_ipam::agent::{AgentIpam, AgentRequest, Attachment};
use overlay_plugin::error::{CODE_NETLINK, host_handle, open_netns, pod_handle};
use overlay_plugin::veth::{self, Port};
use overlay_plugin::{AsyncPlugin, NetlinkResultExt, gc, iface};
use serde::Deserialize;

/// The plugin's own keys of the network configuration.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Conf {
    #[serde(default = "default_bridge")]
    bridge: String,
    #[serde(default = "default_true")]
    hairpin_mode: bool,
}

fn default_bridge() -> String {
    "overlay0".to_owned()
}

fn default_true() -> bool {
    true
}

impl Conf {
    fn from_request(req: &Request) -> Result<(Conf, AgentIpam), CniError> {
        let extra = serde_json::Value::Object(req.config.extra.clone());
        let conf: Conf = serde_json::from_value(extra).map_err(|e| {
            CniError::new(
                ErrorCode::InvalidNetworkConfig,
                "invalid overlay configuration",
            )
            .with_details(e.to_string())
        })?;
        overlay_netlink::validate_ifname(&conf.bridge).map_err(|e| {
            CniError::new(
                ErrorCode::InvalidNetworkConfig,
                format!("invalid bridge name: {e}"),
            )
        })?;
        Ok((conf, AgentIpam::from_request(req)?))
    }
}

struct Overlay;

impl AsyncPlugin for Overlay {
    async fn add(&self, req: &Request) -> Result<CniResult, CniError> {
        req.load_args(&[])?;
        let (conf, agent) = Conf::from_request(req)?;
        let pod_ns = open_netns(req)?;
        let pod = pod_handle(&pod_ns)?;
        let host = host_handle()?;
        let bridge = host
            .link()
            .find(conf.bridge.as_str())
            .await
            .or_cni(CODE_NETLINK, "look up the node bridge")?
            .ok_or_else(|| {
                CniError::new(
                    ErrorCode::TryAgainLater,
                    format!(
                        "the node bridge {} does not exist yet: is overlayd running?",
                        conf.bridge
                    ),
                )
            })?;
        // The address request goes out first and the agent allocates (and
        // commits) while this process creates the veth pair; its answer is
        // read after. The agent keeps the bridge at the overlay MTU, so the
        // pair is created with the bridge's; when the answer carries
        // another, the pair is set to that.
        let attachment = Attachment::of(req);
        let pending = agent.send(&AgentRequest::Allocate(attachment.clone()))?;
        let release = || {
            let _ = agent.send_release(attachment.clone()).finish();
        };
        // The pod end goes up with its address and route (`plan.apply`).
        let mut port = Port::new()
            .master(bridge.index)
            .hairpin(conf.hairpin_mode)
            .defer_pod_up();
        port.mtu = bridge.mtu;
        let created = veth::create(req, &host, &pod_ns, &port).await;
        // A failed allocation is the error (as when it ran first), and
        // leaves no veth pair; a failed creation gives the address back.
        let (pair, allocation) = match (created, pending.allocated()) {
            (Ok(pair), Ok(allocation)) => (pair, allocation),
            (created, Err(e)) => {
                if let Ok(pair) = created {
                    let _ = host.link().delete(pair.host_end.index).await;
                }
                return Err(e);
            }
            (Err(e), Ok(_)) => {
                release();
                return Err(e);
            }
        };
        let configured = async {
            if let Some(mtu) = allocation.mtu.filter(|m| Some(*m) != bridge.mtu) {
                let (host_links, pod_links) = (host.link(), pod.link());
                let (host_end, pod_end) = tokio::join!(
                    host_links.set_mtu(pair.host_end.index, mtu),
                    pod_links.set_mtu(pair.pod_index, mtu)
                );
                host_end.or_cni(CODE_NETLINK, "set host veth MTU")?;
                pod_end.or_cni(CODE_NETLINK, "set container veth MTU")?;
            }
            let mut ipam = CniResult::new(req.version);
            ipam.ips = allocation
                .ips
                .iter()
                .map(|ip| {
                    let c = overlay_cni::result::IpConfig::new(ip.address);
                    match ip.gateway {
                        Some(gw) => c.with_gateway(gw),
                        None => c,
                    }
                })
                .collect();
            ipam.routes = allocation.routes.clone();
            let plan = iface::Plan::with_ifname(&ipam, pair.pod_index, 2, true, Some(req.ifname()))
                .gateways_on_link()
                .link_up();
            plan.apply(&pod, Some(&pod_ns)).await.map(|()| plan)
        };
        let plan = match configured.await {
            Ok(plan) => plan,
            Err(e) => {
                let _ = host.link().delete(pair.host_end.index).await;
                release();
                return Err(e);
            }
        };
        let mut result = CniResult::new(req.version);
        result.interfaces = pair.interfaces(req, Some(&bridge));
        result.ips = plan.ips;
        result.routes = plan.routes;
        Ok(result)
    }

    /// The release goes out first; the agent commits it while this process
    /// deletes the veth pair.
    async fn del(&self, req: &Request) -> Result<(), CniError> {
        let (_, agent) = Conf::from_request(req)?;
        let host = host_handle()?;
        let veth = req.host_veth_name();
        // Journaled when the agent is down (restarting): the DEL succeeds
        // and the agent releases when it is back.
        let release = agent.send_release(Attachment::of(req));
        let links = host.link().delete_detached(veth.as_str()).await;
        let released = release.finish();
        links.or_cni(CODE_NETLINK, "delete veth pair")?;
        released
    }

    async fn check(&self, req: &Request) -> Result<(), CniError> {
        let (conf, agent) = Conf::from_request(req)?;
        let prev = req
            .prev_result()
            .ok_or_else(|| {
                CniError::new(ErrorCode::InvalidNetworkConfig, "CHECK needs prevResult")
            })?
            .map_err(|e| CniError::new(ErrorCode::DecodingFailure, format!("prevResult: {e}")))?;
        agent.check(req)?;
        let pod = pod_handle(&open_netns(req)?)?;
        iface::check_addresses(&pod, req.ifname(), &prev).await?;
        let host = host_handle()?;
        veth::check_attached(&host, req, conf.bridge.as_str()).await
    }

    async fn gc(&self, req: &Request, valid: &[GcAttachment]) -> Result<(), CniError> {
        let (_, agent) = Conf::from_request(req)?;
        let host = Arc::new(host_handle()?);
        let network = req.network_name().to_owned();
        let ipam: Arc<dyn Ipam> = Arc::new(agent);
        gc::collect(ipam, req, valid, move |stale| {
            let (host, network) = (host.clone(), network.clone());
            async move {
                gc::teardown_veth::<overlay_plugin::masq::NftCommand>(&host, &network, &stale, None)
                    .await
            }
        })
        .await
    }

    async fn status(&self, req: &Request) -> Result<(), CniError> {
        Conf::from_request(req)?.1.status(req)
    }
}

/// A plugin process lives a few milliseconds: allocations come from a
/// bump arena instead of the C library's allocator (which, in the static
/// musl build that `scripts/build-plugin.sh` makes, maps and unmaps memory
/// for most of them); see `overlay_plugin::alloc`.
#[global_allocator]
static ALLOC: overlay_plugin::alloc::Arena<{ 1 << 20 }> = overlay_plugin::alloc::Arena::new();

fn main() {
    overlay_plugin::run_async(&Overlay)
}
