//! A minimal but complete CNI plugin on `overlay_cni::plugin`, and a
//! container runtime (`overlay_cni::runtime`) that runs it.
//!
//! The plugin touches no kernel state. `ADD` gives the container interface
//! an address from the `subnet` of its configuration, chosen from the
//! attachment hash (network, container ID, interface), a MAC from the same
//! hash and a default route through the subnet's first host. It keeps no
//! state (a real plugin keeps a reservation, see `overlay_cni::ipam`), so
//! `DEL` has nothing to release and is idempotent; `CHECK` recomputes the
//! address and MAC and looks for them in `prevResult`.
//!
//! With `CNI_COMMAND` set, this executable is the plugin. Without it, it
//! is a runtime running itself, without root: it writes a conflist to a
//! temporary directory, runs ADD, CHECK, DEL (twice) and VERSION through
//! `Runtime` with its own directory as `CNI_PATH` (and a `CNI_NETNS` the
//! plugin never opens), prints and checks the answers, removes the
//! directory, and exits with status 1 when something is off:
//!
//! ```sh
//! cargo run -p overlay-cni --example minimal_plugin
//! ```

use std::error::Error;
use std::net::Ipv4Addr;
use std::process::ExitCode;

use ipnet::{IpNet, Ipv4Net};
use overlay_cni::result::{Interface, IpConfig, Route};
use overlay_cni::runtime::{Runtime, RuntimeConf, load_conf_list};
use overlay_cni::{CniError, CniResult, ErrorCode, Plugin, Request, Version};

/// Addresses from `"subnet"`, one per attachment, derived from its hash.
struct Minimal;

/// The subnet of the example's network.
const SUBNET: &str = "198.51.100.0/24";

/// Fails a check with a message (the runtime side's checks).
macro_rules! ensure {
    ($ok:expr, $($msg:tt)+) => {
        if !$ok {
            return Err(format!($($msg)+).into());
        }
    };
}

/// The attachment's address in `"subnet"` (a host other than the network
/// and broadcast addresses and the first host) and its gateway (the first
/// host). Code 7 when `subnet` is missing or invalid.
fn address(req: &Request) -> Result<(Ipv4Net, Ipv4Addr), CniError> {
    let subnet = (req.config.extra.get("subnet"))
        .and_then(|s| s.as_str()?.parse::<Ipv4Net>().ok())
        .filter(|s| s.prefix_len() <= 30)
        .ok_or("\"subnet\" must be an IPv4 prefix of /30 or shorter");
    let subnet = subnet.map_err(|msg| CniError::new(ErrorCode::InvalidNetworkConfig, msg))?;
    let first = u32::from(subnet.network());
    let hosts = (1u64 << (32 - subnet.prefix_len())) - 3;
    // Fits: the offset is below the subnet's size.
    let host = Ipv4Addr::from(first + (2 + req.attachment_hash() % hosts) as u32);
    let address = Ipv4Net::new(host, subnet.prefix_len()).map_err(|e| CniError::internal(&e))?;
    Ok((address, Ipv4Addr::from(first + 1)))
}

impl Plugin for Minimal {
    fn add(&self, req: &Request) -> Result<CniResult, CniError> {
        let (address, gateway) = address(req)?;
        let mut result = CniResult::new(req.version);
        let mac = req.container_mac().to_string();
        let iface = Interface::new(req.ifname()).with_mac(mac);
        let iface = iface.with_sandbox(&req.env.netns);
        result.interfaces.push(iface);
        let ip = IpConfig::new(address.into()).with_gateway(gateway.into());
        result.ips.push(ip.with_interface(0));
        let default = Route::new(IpNet::V4(Ipv4Net::default()));
        result.routes.push(default.with_gw(gateway.into()));
        Ok(result)
    }

    fn del(&self, _req: &Request) -> Result<(), CniError> {
        Ok(()) // nothing was reserved: succeeds however often it runs
    }

    fn check(&self, req: &Request) -> Result<(), CniError> {
        let prev = (req.prev_result())
            .ok_or_else(|| CniError::new(ErrorCode::InvalidNetworkConfig, "no prevResult"))?
            .map_err(|e| CniError::new(ErrorCode::DecodingFailure, e.to_string()))?;
        let ((address, _), ifname) = (address(req)?, req.ifname());
        let mac = req.container_mac().to_string();
        let has_ip = (prev.container_ips(ifname)).any(|ip| ip.address == IpNet::V4(address));
        let ours = |i: &Interface| i.name == ifname && i.mac.as_deref() == Some(&*mac);
        let has_mac = prev.interfaces.iter().any(ours);
        if !(has_ip && has_mac) {
            let msg = format!("prevResult lacks {ifname} with {address} and MAC {mac}");
            return Err(CniError::plugin(100, msg));
        }
        Ok(())
    }
}

fn main() -> ExitCode {
    if std::env::var_os("CNI_COMMAND").is_some() {
        overlay_cni::plugin::run(&Minimal);
    }
    match act_as_runtime() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("minimal_plugin: {e}");
            ExitCode::FAILURE
        }
    }
}

/// A runtime's calls on this executable, checked; see the module docs.
fn act_as_runtime() -> Result<(), Box<dyn Error>> {
    let exe = std::env::current_exe()?;
    let (Some(dir), Some(plugin)) = (exe.parent(), exe.file_name().and_then(|n| n.to_str())) else {
        return Err(format!("cannot use {} as a plugin", exe.display()).into());
    };
    let tmp = tempfile::tempdir()?;
    let conflist = serde_json::json!({
        "cniVersion": "1.1.0",
        "name": "example-pods",
        "plugins": [{"type": plugin, "subnet": SUBNET}],
    });
    std::fs::write(tmp.path().join("10-example.conflist"), conflist.to_string())?;
    let list = load_conf_list(tmp.path(), "example-pods")?;
    let cni = Runtime::new(vec![dir.to_owned()]).with_cache_dir(tmp.path().join("cache"));
    let netns = tmp.path().join("netns"); // never opened
    let rt = RuntimeConf::new("3f6940ab5ab4", "eth0").with_netns(&netns);
    println!("plugin {plugin} in {}", dir.display());

    let result = cni.add_network_list(&list, &rt)?;
    println!("ADD: {}", serde_json::to_string_pretty(&result.to_value())?);
    let ip = result.ips.first().ok_or("ADD returned no address")?;
    let inside = SUBNET.parse::<IpNet>()?.contains(&ip.address);
    ensure!(inside, "{} is not in {SUBNET}", ip.address);
    let cached = cni.cached_result(&list, &rt)?;
    ensure!(cached.as_ref() == Some(&result), "ADD's result not cached");

    cni.check_network_list(&list, &rt)?;
    println!("CHECK: ok, prevResult gives eth0 {}", ip.address);
    // Another container's attachment: nothing cached, so no prevResult.
    let other = RuntimeConf::new("c0ffee", "eth0").with_netns(&netns);
    let refused = cni.check_network_list(&list, &other).err();
    let refused = refused.ok_or("CHECK passed without prevResult")?;
    let code = refused.cni_error().map(|e| e.code);
    ensure!(code == Some(ErrorCode::InvalidNetworkConfig), "{refused}");
    println!("CHECK of an attachment never added: {refused}");

    cni.del_network_list(&list, &rt)?;
    cni.del_network_list(&list, &rt)?;
    let cached = cni.cached_result(&list, &rt)?;
    ensure!(cached.is_none(), "DEL left the cache entry");
    println!("DEL: ok, twice (the second without prevResult); cache entry removed");

    let info = cni.version_info(plugin)?;
    println!("VERSION: {}", serde_json::to_string(&info)?);
    ensure!(info.supports(Version::V1_1_0), "no 1.1.0 in VERSION");

    tmp.close()?;
    Ok(())
}
