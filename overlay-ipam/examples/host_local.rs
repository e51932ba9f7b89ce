//! The in-process `host-local` store in a temporary data directory:
//! allocate for three containers, print the files the reference
//! `host-local` plugin would see (and could share, under the same `flock`),
//! release one, allocate again, and show that a repeated ADD is refused, a
//! repeated DEL is a no-op and no address is ever held twice.
//!
//! Needs no privileges and no network:
//!
//! ```sh
//! cargo run -p overlay-ipam --example host_local
//! ```
//!
//! Addresses are from the documentation ranges (RFC 5737).

use std::collections::HashSet;
use std::error::Error;
use std::path::Path;
use std::process::ExitCode;

use overlay_ipam::host_local::{AllocError, AllocatedIp, Config, Store};

/// The network name: the store is `<dataDir>/pods`.
const NETWORK: &str = "pods";

fn main() -> ExitCode {
    let dir = match tempfile::Builder::new()
        .prefix("host-local-example-")
        .tempdir()
    {
        Ok(dir) => dir,
        Err(e) => {
            eprintln!("host_local: cannot create a temporary directory: {e}");
            return ExitCode::FAILURE;
        }
    };
    let outcome = run(dir.path());
    let removed = dir.close();
    match (outcome, removed) {
        (Ok(()), Ok(())) => ExitCode::SUCCESS,
        (Err(e), _) => {
            eprintln!("host_local: {e}");
            ExitCode::FAILURE
        }
        (Ok(()), Err(e)) => {
            eprintln!("host_local: cannot remove the temporary directory: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(data_dir: &Path) -> Result<(), Box<dyn Error>> {
    // The network configuration as a runtime hands it to `host-local`:
    // 198.51.100.0/29 gives .2 to .6 (.1 is the gateway, .7 the broadcast).
    let data_dir_text = data_dir.to_str().ok_or("the temporary path is not UTF-8")?;
    let net = serde_json::json!({
        "cniVersion": "1.0.0",
        "name": NETWORK,
        "type": "bridge",
        "ipam": {
            "type": "host-local",
            "dataDir": data_dir_text,
            "ranges": [[{ "subnet": "198.51.100.0/29" }]],
            "routes": [{ "dst": "0.0.0.0/0" }],
        },
    });
    let config = Config::from_network_config(net.to_string().as_bytes(), "")?;

    println!("ADD for three containers:");
    let mut held = Vec::new();
    for id in ["ctr-a", "ctr-b", "ctr-c"] {
        let ip = add(&config, id)?;
        println!("  {id}/eth0 -> {} via {}", ip.address, ip.gateway);
        held.push(ip.address.addr());
    }

    println!("files in <dataDir>/{NETWORK}:");
    show_files(&data_dir.join(NETWORK))?;

    let released = config.release("ctr-b", "eth0")?;
    println!("DEL ctr-b/eth0 released {released:?}");
    check(released == held[1..2], "DEL released ctr-b's address")?;
    check(!config.check("ctr-b", "eth0")?, "ctr-b holds nothing now")?;
    let again = config.release("ctr-b", "eth0")?;
    println!("DEL ctr-b/eth0 again released {again:?} (success, nothing to do)");
    check(again.is_empty(), "a second DEL releases nothing")?;

    // Round-robin: the next address after the last one reserved, not the
    // address ctr-b just gave back (a new pod does not inherit it at once).
    let d = add(&config, "ctr-d")?;
    println!("ADD ctr-d/eth0 -> {}", d.address);
    check(
        d.address.addr() != held[1],
        "ctr-b's address not reused at once",
    )?;

    match config.allocate("ctr-a", "eth0") {
        Err(e @ AllocError::Duplicate { .. }) => println!("ADD ctr-a/eth0 again: refused: {e}"),
        Ok(a) => return Err(format!("a second ADD of ctr-a/eth0 got {:?}", a.ips).into()),
        Err(e) => return Err(format!("a second ADD of ctr-a/eth0 failed otherwise: {e}").into()),
    }

    // What the store holds now, read the way `host-local` reads it.
    let store = Store::open(data_dir, NETWORK)?;
    let reservations = store.lock()?.reservations()?;
    let mut owners: Vec<String> = reservations
        .iter()
        .map(|r| format!("{} {}", r.ip, r.owner.container_id))
        .collect();
    owners.sort();
    println!("reservations: {}", owners.join(", "));
    let distinct: HashSet<_> = reservations.iter().map(|r| r.ip).collect();
    check(
        distinct.len() == reservations.len(),
        "no address held twice",
    )?;
    check(reservations.len() == 3, "one address per live container")?;
    for id in ["ctr-a", "ctr-c", "ctr-d"] {
        check(
            config.check(id, "eth0")?,
            "CHECK passes for live containers",
        )?;
    }
    println!("ok: no duplicates, DEL is idempotent, a repeated ADD is refused");
    Ok(())
}

/// ADD for `id`/eth0: its (only) address.
fn add(config: &Config, id: &str) -> Result<AllocatedIp, Box<dyn Error>> {
    let allocation = config.allocate(id, "eth0")?;
    Ok(allocation.ips.into_iter().next().ok_or("no address")?)
}

/// Print each file of the network's directory and its content.
fn show_files(dir: &Path) -> Result<(), Box<dyn Error>> {
    let mut entries = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let content = std::fs::read(entry.path())?;
        entries.push((entry.file_name().to_string_lossy().into_owned(), content));
    }
    entries.sort();
    for (name, content) in entries {
        println!("  {name:<18} {:?}", String::from_utf8_lossy(&content));
    }
    Ok(())
}

/// An error unless `holds`.
fn check(holds: bool, property: &str) -> Result<(), Box<dyn Error>> {
    if holds {
        Ok(())
    } else {
        Err(format!("expected: {property}").into())
    }
}
