//! Create a network namespace with a VXLAN device and one remote overlay
//! peer on it (a permanent neighbour entry, a `self` FDB entry with the
//! peer's underlay address, and an on-link route to its pod range), print
//! what the kernel holds, and remove the namespace again.
//!
//! Needs root (`CAP_NET_ADMIN`); without it the example says so and exits
//! with status 1:
//!
//! ```sh
//! sudo cargo run -p overlay-netlink --example create_vxlan
//! ```
//!
//! Addresses are from the documentation ranges (RFC 5737).

use std::process::ExitCode;

use overlay_netlink::overlay::{Overlay, RemotePeer};
use overlay_netlink::{
    Handle, IpFamily, Netns, RouteFilter, RouteKind, TABLE_MAIN, VXLAN_PORT, Vni, VxlanConfig,
};

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    // SAFETY: geteuid has no preconditions and cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!(
            "create_vxlan creates a network namespace and needs root (CAP_NET_ADMIN); \
             run it with sudo"
        );
        return ExitCode::FAILURE;
    }
    let name = format!("create-vxlan-{}", std::process::id());
    let ns = match Netns::create(&name) {
        Ok(ns) => ns,
        Err(e) => {
            eprintln!("create_vxlan: {e}");
            return ExitCode::FAILURE;
        }
    };
    let outcome = match ns.handle() {
        Ok(handle) => program(&handle).await,
        Err(e) => Err(e),
    };
    // The handle's socket is closed by now: the namespace can go.
    if let Err(e) = ns.delete() {
        eprintln!("create_vxlan: {e}");
    }
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("create_vxlan: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn program(handle: &Handle) -> overlay_netlink::Result<()> {
    // A new namespace starts with `lo` down and no local routing table,
    // and the kernel refuses on-link gateways until that table exists.
    handle.link().set_up("lo").await?;
    // `Vni::new` checks the 24-bit range.
    let vni = Vni::new(42).expect("42 fits 24 bits");
    let (vx, ensured) = handle
        .link()
        .ensure_vxlan(
            &VxlanConfig::new("vxlan.42", vni)
                .local("192.0.2.1".parse().expect("a valid address"))
                .port(VXLAN_PORT)
                .mtu(1450),
        )
        .await?;
    handle.link().set_up(vx.index).await?;
    println!(
        "vxlan.42: {ensured:?} (index {}, VNI {vni}, port {VXLAN_PORT})",
        vx.index
    );

    let peer = RemotePeer::new(
        "198.51.100.2".parse().expect("a valid address"),
        "02:00:00:00:00:02".parse().expect("a valid MAC"),
        "10.244.2.0".parse().expect("a valid address"),
    )
    .pod_cidr("10.244.2.0/24".parse().expect("a valid prefix"));
    let overlay = Overlay::new(handle, vx.index);
    let report = overlay.reconcile(&[peer]).await?;
    for change in &report.changes {
        println!("  {change}");
    }

    for n in handle
        .neighbour()
        .list(Some(IpFamily::V4), Some(vx.index))
        .await?
    {
        println!("neighbour {} lladdr {:?} {:?}", n.ip, n.mac, n.state);
    }
    for f in handle.fdb().list(Some(vx.index)).await? {
        if let Some(dst) = f.dst {
            println!("fdb {} dst {dst}", f.mac);
        }
    }
    let routes = handle
        .route()
        .list(
            RouteFilter::new(IpFamily::V4)
                .table(TABLE_MAIN)
                .kind(RouteKind::Unicast),
        )
        .await?;
    for r in routes.iter().filter(|r| r.dev == Some(vx.index)) {
        println!(
            "route {} via {:?} onlink {} metric {:?} proto {:?}",
            r.destination, r.gateway, r.onlink, r.metric, r.protocol
        );
    }
    Ok(())
}
