//! The local demo of the overlay SDK.
//!
//! Today it lists the crates of the workspace and what each provides; it grows
//! into a one-command multi-node demo as the crates fill in.

fn main() {
    println!(
        "overlay {} - an SDK for container overlay networks",
        env!("CARGO_PKG_VERSION")
    );
    for (name, role) in [
        (
            "overlay-core",
            "identities, traits, VXLAN/Geneve and outer-header codecs",
        ),
        (
            "overlay-ipam",
            "address allocators and the CRDT ring of ranges",
        ),
        (
            "overlay-gossip",
            "topology gossip: sans-IO core and tokio driver",
        ),
        ("overlay-cni", "CNI 0.3.0-1.1.0: plugin runner and runtime"),
        (
            "overlay-netlink",
            "Linux netlink: links, VXLAN, routes, neighbours, FDB, netns",
        ),
    ] {
        println!("  {name:<16} {role}");
    }
}
