//! The veth pair of an attachment: the host end named and the container
//! end addressed from the attachment (`overlay_cni::plugin::host_veth_name`,
//! `container_mac`), created directly in the container's namespace as
//! `CNI_IFNAME`, attached to a bridge and up in the creating request.
//!
//! ```no_run
//! # async fn f(req: &overlay_cni::Request) -> Result<(), overlay_cni::CniError> {
//! use overlay_plugin::veth::{self, Port};
//!
//! let netns = overlay_plugin::error::open_netns(req)?;
//! let host = overlay_plugin::error::host_handle()?;
//! let (bridge, _) = overlay_plugin::bridge::ensure(&host, "cni0", None).await?;
//! let pair = veth::create(req, &host, &netns, &Port::new().master(bridge.index)).await?;
//! let interfaces = pair.interfaces(req, Some(&bridge));
//! assert_eq!(interfaces.len(), 3);
//! # Ok(()) }
//! ```

use overlay_cni::result::Interface;
use overlay_cni::{CniError, Request};
use overlay_netlink::{Handle, Link, MacAddr, Netns, VethConfig};

use crate::error::{CODE_IFNAME_TAKEN, CODE_NETLINK, NetlinkResultExt, netlink_error};

/// How the host end is attached.
///
/// ```
/// let port = overlay_plugin::veth::Port::new().master(4).mtu(1450).hairpin(true);
/// assert_eq!(port.mtu, Some(1450));
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Port {
    /// The bridge to enslave the host end to.
    pub master: Option<u32>,
    /// Both ends' MTU (the kernel's default when unset).
    pub mtu: Option<u32>,
    /// Hairpin mode on the bridge port.
    pub hairpin: bool,
    /// Leave the container end down (see [`Port::defer_pod_up`]).
    pub defer_pod_up: bool,
}

impl Port {
    /// A port with no bridge, the default MTU and no hairpin.
    pub fn new() -> Self {
        Port::default()
    }

    /// Enslave the host end to the bridge `index`.
    pub fn master(mut self, index: u32) -> Self {
        self.master = Some(index);
        self
    }

    /// Set both ends' MTU.
    pub fn mtu(mut self, mtu: u32) -> Self {
        self.mtu = Some(mtu);
        self
    }

    /// Set hairpin mode on the bridge port.
    pub fn hairpin(mut self, on: bool) -> Self {
        self.hairpin = on;
        self
    }

    /// Leave the container end down: the caller brings it up in the one
    /// exchange that also configures it (`iface::Plan::link_up`), saving a
    /// netlink round trip in the container's namespace.
    ///
    /// ```
    /// assert!(overlay_plugin::veth::Port::new().defer_pod_up().defer_pod_up);
    /// ```
    pub fn defer_pod_up(mut self) -> Self {
        self.defer_pod_up = true;
        self
    }
}

/// A created veth pair.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct VethPair {
    /// The host end.
    pub host_end: Link,
    /// The container end's index, in the container's namespace.
    pub pod_index: u32,
    /// The container end's MAC address.
    pub pod_mac: Option<MacAddr>,
}

impl VethPair {
    /// The result's `interfaces`: the bridge (when given), the host end,
    /// the container end (with its sandbox), in that order.
    pub fn interfaces(&self, req: &Request, bridge: Option<&Link>) -> Vec<Interface> {
        let host_end = Some((self.host_end.name.as_str(), self.host_end.mac, None));
        let bridge = bridge.map(|b| (b.name.as_str(), b.mac, None));
        let pod = Some((req.ifname(), self.pod_mac, req.netns()));
        [bridge, host_end, pod]
            .into_iter()
            .flatten()
            .map(|(name, mac, sandbox)| {
                let mut iface = Interface::new(name);
                iface.mac = mac.map(|m| m.to_string());
                iface.sandbox = sandbox.map(|p| p.display().to_string());
                iface
            })
            .collect()
    }
}

/// Create the attachment's veth pair: the host end in `host`'s namespace,
/// the container end as `CNI_IFNAME` in `pod_ns`, both up (the container
/// end left down with [`Port::defer_pod_up`]). A taken `CNI_IFNAME` is
/// [`CODE_IFNAME_TAKEN`]; other kernel failures are [`CODE_NETLINK`]. On
/// failure nothing is left.
///
/// The creation goes through `host`: the kernel creates the container end
/// in its namespace and reports its index. A handle in the container's
/// namespace is opened only when needed: to set the container end up
/// (unless deferred), to say why a creation failed, or on kernels that do
/// not report the peer.
pub async fn create(
    req: &Request,
    host: &Handle,
    pod_ns: &Netns,
    port: &Port,
) -> Result<VethPair, CniError> {
    let container_mac = req.container_mac();
    let mut veth = VethConfig::new(req.host_veth_name(), req.ifname())
        .peer_netns(pod_ns)
        .peer_mac(container_mac)
        // One queue each way, as a pod's veth uses: saves the kernel two
        // expedited RCU grace periods of cutting one queue per CPU back to
        // one (measured ~0.1-0.2 ms of an ADD).
        .queues(1)
        .up();
    if let Some(master) = port.master {
        veth = veth.master(master);
    }
    if let Some(mtu) = port.mtu {
        veth = veth.mtu(mtu);
    }
    // A taken CNI_IFNAME makes the creation fail with EEXIST; only then is
    // it worth a look-up to report it precisely.
    let host_end = match host.link().add_veth(&veth).await {
        Ok(link) => link,
        Err(e) if e.is_already_exists() => {
            let pod = crate::error::pod_handle(pod_ns)?;
            let taken = pod.link().find(req.ifname()).await;
            return Err(match taken.or_cni(CODE_NETLINK, "look up CNI_IFNAME")? {
                Some(_) => CniError::plugin(
                    CODE_IFNAME_TAKEN,
                    format!(
                        "interface {} already exists in {}",
                        req.ifname(),
                        pod_ns.path().display()
                    ),
                ),
                None => netlink_error(CODE_NETLINK, "create veth pair", &e),
            });
        }
        Err(e) => return Err(netlink_error(CODE_NETLINK, "create veth pair", &e)),
    };
    // The host end reports its peer's index (IFLA_LINK) and the MAC was
    // chosen above, so the pod's namespace needs no look-up; the host and
    // pod requests go out together.
    let attach = async {
        let (pod, pod_index, pod_mac) = match host_end.parent {
            Some(index) => {
                let pod = match port.defer_pod_up {
                    true => None,
                    false => Some(crate::error::pod_handle(pod_ns)?),
                };
                (pod, index, Some(container_mac))
            }
            None => {
                let pod = crate::error::pod_handle(pod_ns)?;
                let link = pod.link().get(req.ifname()).await;
                let link = link.or_cni(CODE_NETLINK, "find container veth")?;
                (Some(pod), link.index, link.mac)
            }
        };
        let hairpin = async {
            match port.hairpin {
                true => host.link().set_hairpin(host_end.index, true).await,
                false => Ok(()),
            }
        };
        let up = async {
            match (&pod, port.defer_pod_up) {
                (Some(pod), false) => pod.link().set_up(pod_index).await,
                _ => Ok(()),
            }
        };
        let (hairpin, up) = tokio::join!(hairpin, up);
        hairpin.or_cni(CODE_NETLINK, "set hairpin mode")?;
        up.or_cni(CODE_NETLINK, "set container veth up")?;
        Ok((pod_index, pod_mac))
    };
    match attach.await {
        Ok((pod_index, pod_mac)) => Ok(VethPair {
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

/// `CHECK`'s host half of a veth attachment: the attachment's host end
/// exists in `host`'s namespace and is a port of the bridge `bridge`.
/// Failures are [`CODE_NETLINK`], naming the interface and the bridge.
///
/// ```no_run
/// # async fn f(host: &overlay_netlink::Handle, req: &overlay_cni::Request) -> Result<(), overlay_cni::CniError> {
/// overlay_plugin::veth::check_attached(host, req, "cni0").await?;
/// # Ok(()) }
/// ```
pub async fn check_attached(host: &Handle, req: &Request, bridge: &str) -> Result<(), CniError> {
    let host_end = host.link().find(req.host_veth_name()).await;
    let host_end = host_end.or_cni(CODE_NETLINK, "look up host veth")?;
    let found = host.link().find(bridge).await;
    match (host_end, found.or_cni(CODE_NETLINK, "look up bridge")?) {
        (Some(h), Some(b)) if h.master == Some(b.index) => Ok(()),
        _ => Err(CniError::plugin(
            CODE_NETLINK,
            format!("host veth of {} is not attached to {bridge}", req.ifname()),
        )),
    }
}
