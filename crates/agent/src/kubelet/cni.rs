//! The node's CNI configuration: once node IPAM gives the node its podCIDR, the agent writes a
//! conflist (bridge + host-local + portmap, the reference plugins Debian ships in
//! containernetworking-plugins) into the runtime's CNI configuration directory; containerd
//! picks it up and gives every sandbox an address from the podCIDR.

use std::path::{Path, PathBuf};

use serde_json::json;

/// File name of the conflist (sorted first, so it wins over leftovers).
pub const CONFLIST_FILE: &str = "10-kubelab.conflist";
/// CNI network name.
pub const NETWORK_NAME: &str = "kubelab";

/// How pods get their network.
#[derive(Clone, Debug)]
pub struct CniConfig {
    /// Directory the runtime reads CNI configurations from.
    pub conf_dir: PathBuf,
    /// Name of the Linux bridge the pods are attached to.
    pub bridge: String,
    /// host-local's allocation state directory.
    pub ipam_data_dir: PathBuf,
}

/// The conflist for a node whose pods get addresses from `pod_cidr`.
pub fn conflist(config: &CniConfig, pod_cidr: &str) -> serde_json::Value {
    json!({
        "cniVersion": "1.0.0",
        "name": NETWORK_NAME,
        "plugins": [
            {
                "type": "bridge",
                "bridge": config.bridge,
                "isGateway": true,
                "ipMasq": true,
                "hairpinMode": true,
                "ipam": {
                    "type": "host-local",
                    "ranges": [[{"subnet": pod_cidr}]],
                    "routes": [{"dst": "0.0.0.0/0"}],
                    "dataDir": config.ipam_data_dir,
                }
            },
            {"type": "portmap", "capabilities": {"portMappings": true}, "snat": true}
        ]
    })
}

/// Writes the conflist atomically (temporary file, then rename), unless it already holds
/// exactly this content. Returns whether the file changed.
pub fn write_conflist(config: &CniConfig, pod_cidr: &str) -> std::io::Result<bool> {
    let text = serde_json::to_string_pretty(&conflist(config, pod_cidr)).expect("JSON value");
    let path = config.conf_dir.join(CONFLIST_FILE);
    if std::fs::read_to_string(&path).is_ok_and(|old| old == text) {
        return Ok(false);
    }
    std::fs::create_dir_all(&config.conf_dir)?;
    std::fs::create_dir_all(&config.ipam_data_dir)?;
    let tmp = config.conf_dir.join(format!(".{CONFLIST_FILE}.tmp"));
    std::fs::write(&tmp, text)?;
    std::fs::rename(&tmp, &path)?;
    Ok(true)
}

/// Whether the conflist is in place.
pub fn is_configured(conf_dir: &Path) -> bool {
    conf_dir.join(CONFLIST_FILE).is_file()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conflist_chains_bridge_and_portmap_over_the_pod_cidr() {
        let dir = std::env::temp_dir().join(format!("kubelab-cni-test-{}", std::process::id()));
        let config = CniConfig {
            conf_dir: dir.join("net.d"),
            bridge: "kubelab0".into(),
            ipam_data_dir: dir.join("ipam"),
        };
        assert!(write_conflist(&config, "10.244.1.0/24").unwrap());
        assert!(!write_conflist(&config, "10.244.1.0/24").unwrap());
        let v: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(dir.join("net.d").join(CONFLIST_FILE)).unwrap(),
        )
        .unwrap();
        assert_eq!(v["plugins"][0]["type"], "bridge");
        assert_eq!(
            v["plugins"][0]["ipam"]["ranges"][0][0]["subnet"],
            "10.244.1.0/24"
        );
        assert_eq!(v["plugins"][1]["type"], "portmap");
        assert!(is_configured(&config.conf_dir));
        std::fs::remove_dir_all(dir).unwrap();
    }
}
