//! What an `ADD` and a `DEL` of a bridge-type plugin built on
//! `overlay-plugin` do for one pod, worked out without touching the
//! kernel: the addresses from in-process `host-local` (`ipam`), the plan
//! for the pod's interface (`iface::Plan`: the addresses, routes and
//! sysctls `Plan::apply` would install, and the `ips` and `routes` the
//! plugin reports) and the nftables transactions of its masquerading
//! (`masq`, recorded instead of applied). Then `DEL` releases the
//! addresses (twice: it is idempotent) and removes the masquerading.
//!
//! Needs no privileges: `host-local` keeps its reservations in a
//! temporary directory, removed at the end, and nothing reaches the
//! kernel or `nft`. Exits with status 1 when a result is not as expected:
//!
//! ```sh
//! cargo run -p overlay-plugin --example plan_attachment
//! ```
//!
//! Addresses are from the documentation ranges (RFC 5737, RFC 3849).

use std::error::Error;
use std::process::ExitCode;

use ipnet::IpNet;
use overlay_cni::Request;
use overlay_cni::plugin::{CniEnv, Command};
use overlay_cni::result::{CniResult, Interface};
use overlay_plugin::iface::Plan;
use overlay_plugin::masq::{Masquerade, RecordingRunner};

/// Fails the example with a message.
macro_rules! ensure {
    ($ok:expr, $($msg:tt)+) => {
        if !$ok {
            return Err(format!($($msg)+).into());
        }
    };
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    match program().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("plan_attachment: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn program() -> Result<(), Box<dyn Error>> {
    let data_dir = tempfile::tempdir()?;
    let conf = serde_json::json!({
        "cniVersion": "1.1.0", "name": "example-pods", "type": "example-bridge", "ipMasq": true,
        "ipam": {
            "type": "host-local",
            "dataDir": data_dir.path().to_str().ok_or("temporary directory not UTF-8")?,
            "ranges": [[{"subnet": "198.51.100.0/24"}], [{"subnet": "2001:db8:42::/64"}]],
        },
    })
    .to_string();
    let env = CniEnv {
        container_id: "3f6940ab5ab4".into(),
        netns: "/run/netns/ovt-pod".into(), // never opened
        ifname: "eth0".into(),
        ..CniEnv::default()
    };
    let add = Request::new(Command::Add, env.clone(), conf.as_bytes())?;

    // ADD: allocate (on the IPAM's own thread), then plan the pod's side.
    let ipam = overlay_plugin::ipam::for_request(&add)?;
    let lease = overlay_plugin::ipam::add(ipam.clone(), &add).await?;
    // Kernel index 2 for the pod's eth0 (nothing is created), entry 0 of
    // the result's interfaces, and a default route per family.
    let plan = Plan::with_ifname(lease.result(), 2, 0, true, Some(add.ifname())).link_up();
    println!("plan for eth0 (index {}, up: {}):", plan.index, plan.up);
    for key in &plan.sysctls {
        println!("  sysctl {key} = 0");
    }
    for a in &plan.addresses {
        println!("  address {} (nodad: {})", a.addr, a.nodad);
    }
    for (what, r) in &plan.kernel_routes {
        let via = r.gateway.map(|gw| format!(" via {gw}")).unwrap_or_default();
        println!("  {what}: {}{via} dev {}", r.destination, plan.index);
    }
    let mut result = CniResult::new(add.version);
    let iface = Interface::new(add.ifname()).with_mac(add.container_mac().to_string());
    result.interfaces.push(iface.with_sandbox(&add.env.netns));
    (result.ips, result.routes) = (plan.ips.clone(), plan.routes.clone());
    let json = serde_json::to_string_pretty(&result.to_value())?;
    println!("result: {json}");
    let masq = Masquerade::new(RecordingRunner::default());
    let ips: Vec<IpNet> = result.ips.iter().map(|ip| ip.address).collect();
    masq.add(add.attachment_hash(), &ips)?;
    let _ = lease.commit(); // the ADD succeeded: keep the addresses
    let added = masq.runner().scripts().concat();
    println!("nft -f - (ADD):\n{added}");

    let v4 = ips.iter().find(|ip| ip.addr().is_ipv4());
    let v4 = v4.ok_or("no IPv4 address")?;
    let range: IpNet = "198.51.100.0/24".parse()?;
    ensure!(ips.len() == 2, "not one address per family: {ips:?}");
    ensure!(v4.trunc() == range, "{v4} outside {range}");
    let routes = &plan.kernel_routes;
    let defaults = routes
        .iter()
        .filter(|(_, r)| r.destination.prefix_len() == 0);
    ensure!(defaults.count() == 2, "not one default route per family");
    ensure!(plan.sysctls.len() == 2, "IPv6 without its sysctls");
    let rule = format!("ip saddr {} ip daddr != {range}", v4.addr());
    ensure!(added.contains(&rule), "no rule {rule:?}");
    let check = Request::new(Command::Check, env.clone(), conf.as_bytes())?;
    ipam.check(&check)?;

    // DEL: masquerading first, then the addresses; a second DEL finds nothing.
    let del = Request::new(Command::Del, env, conf.as_bytes())?;
    masq.del(del.attachment_hash())?;
    overlay_plugin::ipam::del(ipam.clone(), &del).await?;
    overlay_plugin::ipam::del(ipam.clone(), &del).await?;
    let scripts = masq.runner().scripts();
    let deleted = scripts.last().filter(|_| scripts.len() == 2);
    let deleted = deleted.ok_or("no DEL transaction")?;
    println!("nft -f - (DEL):\n{deleted}");
    let chain = Masquerade::<RecordingRunner>::chain(add.attachment_hash());
    let wanted = format!("delete chain inet overlay {chain}");
    ensure!(deleted.contains(&wanted), "{chain} kept");
    let gone = ipam.check(&check).err();
    let gone = gone.ok_or("the reservation outlived DEL")?;
    println!("CHECK after DEL: {}", gone.msg);

    data_dir.close()?;
    Ok(())
}
