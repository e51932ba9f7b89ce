//! The conflist that `deploy/` installs on every node parses as a CNI
//! configuration list and chains the plugins the DaemonSet relies on.

use overlay_cni::config::NetworkConfigList;
use overlay_cni::version::Version;

const CONFLIST: &[u8] = include_bytes!("../../deploy/10-overlay.conflist");

#[test]
fn deploy_conflist_is_a_valid_chain_of_overlay_portmap_and_bandwidth() {
    let list = NetworkConfigList::from_slice(CONFLIST).expect("deploy/10-overlay.conflist parses");
    assert_eq!(list.name, "overlay");
    // 1.0.0: the highest version Debian's portmap and bandwidth accept.
    assert_eq!(list.cni_version, Some(Version::V1_0_0));
    let types: Vec<&str> = list
        .plugins
        .iter()
        .map(|p| p.plugin_type.as_str())
        .collect();
    assert_eq!(types, ["overlay", "portmap", "bandwidth"]);
    assert!(list.plugins[1].has_capability("portMappings"));
    assert!(list.plugins[2].has_capability("bandwidth"));
    // A runtime whose libcni stops at 1.0.0 (containerd 1.7) and a 1.1.0
    // runtime both run the chain at 1.0.0.
    assert_eq!(
        list.negotiate_version(&[Version::V0_4_0, Version::V1_0_0]),
        Some(Version::V1_0_0)
    );
    assert_eq!(
        list.negotiate_version(&[Version::V1_0_0, Version::V1_1_0]),
        Some(Version::V1_0_0)
    );
}
