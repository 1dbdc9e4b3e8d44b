//! Clusters as the engine holds them: names, listing by label, deletion, the network's subnet,
//! the API endpoint, credentials read back from a server node.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use crate::kubeconfig;
use crate::node_init::SERVER_DATA_DIR;
use crate::provider::{NodeInfo, Provider, Role};
use crate::{Error, Result};

/// The cluster name when none is given.
pub const DEFAULT_NAME: &str = "kubelab";

/// The network of a cluster.
pub fn network_name(cluster: &str) -> String {
    format!("kubelab-{cluster}")
}

/// A node container's name (also its host name and Kubernetes node name).
pub fn node_name(cluster: &str, role: Role, index: u32) -> String {
    format!("{cluster}-{role}-{index}")
}

/// The volume mounted at a node's /var.
pub fn volume_name(node: &str) -> String {
    format!("{node}-var")
}

/// Checks a cluster name: it becomes part of container, network, volume and DNS names.
pub fn validate_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 40
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && !name.ends_with('-');
    if ok {
        Ok(())
    } else {
        Err(Error::Invalid(format!(
            "invalid cluster name {name:?}: use 1 to 40 lower-case letters, digits and '-', starting with a letter"
        )))
    }
}

/// What the engine holds for one cluster.
#[derive(Clone, Debug, Default)]
pub struct ClusterState {
    pub name: String,
    pub nodes: Vec<NodeInfo>,
    pub networks: Vec<String>,
    pub volumes: Vec<String>,
}

impl ClusterState {
    pub fn servers(&self) -> impl Iterator<Item = &NodeInfo> {
        self.nodes.iter().filter(|n| n.role == Role::Server)
    }

    pub fn agents(&self) -> impl Iterator<Item = &NodeInfo> {
        self.nodes.iter().filter(|n| n.role == Role::Agent)
    }

    /// The host port of the API server (the first server's).
    pub fn api_port(&self) -> Option<u16> {
        self.servers().find_map(NodeInfo::api_port)
    }

    /// The cluster's Docker network: the /24 of its nodes' addresses (`pick_subnet` makes
    /// every cluster network a /24 and nodes get static addresses in it).
    pub fn network_subnet(&self) -> Option<String> {
        let ip = self.nodes.iter().find_map(|n| n.ip)?;
        let [a, b, c, _] = ip.octets();
        Some(format!("{a}.{b}.{c}.0/24"))
    }

    /// `https://127.0.0.1:<port>`.
    pub fn api_url(&self) -> Option<String> {
        self.api_port().map(|p| format!("https://127.0.0.1:{p}"))
    }
}

/// Every cluster the engine holds something of (nodes, network or volumes), by name.
pub async fn list(provider: &dyn Provider) -> Result<BTreeMap<String, ClusterState>> {
    let mut clusters: BTreeMap<String, ClusterState> = BTreeMap::new();
    let entry = |clusters: &mut BTreeMap<String, ClusterState>, name: &str| {
        clusters
            .entry(name.to_owned())
            .or_insert_with(|| ClusterState {
                name: name.to_owned(),
                ..Default::default()
            })
            .name
            .clone()
    };
    for node in provider.list_nodes(None).await? {
        let name = entry(&mut clusters, &node.cluster);
        clusters
            .get_mut(&name)
            .expect("just inserted")
            .nodes
            .push(node);
    }
    for (network, cluster) in provider.list_networks(None).await? {
        let name = entry(&mut clusters, &cluster);
        clusters
            .get_mut(&name)
            .expect("just inserted")
            .networks
            .push(network);
    }
    for (volume, cluster) in provider.list_volumes(None).await? {
        let name = entry(&mut clusters, &cluster);
        clusters
            .get_mut(&name)
            .expect("just inserted")
            .volumes
            .push(volume);
    }
    Ok(clusters)
}

/// One cluster's state (empty when nothing exists).
pub async fn get(provider: &dyn Provider, name: &str) -> Result<ClusterState> {
    let (nodes, networks, volumes) = futures::try_join!(
        provider.list_nodes(Some(name)),
        provider.list_networks(Some(name)),
        provider.list_volumes(Some(name)),
    )?;
    Ok(ClusterState {
        name: name.to_owned(),
        nodes,
        networks: networks.into_iter().map(|(n, _)| n).collect(),
        volumes: volumes.into_iter().map(|(v, _)| v).collect(),
    })
}

/// One cluster, or ClusterNotFound.
pub async fn require(provider: &dyn Provider, name: &str) -> Result<ClusterState> {
    let state = get(provider, name).await?;
    if state.nodes.is_empty() && state.networks.is_empty() && state.volumes.is_empty() {
        return Err(Error::ClusterNotFound {
            name: name.to_owned(),
        });
    }
    Ok(state)
}

/// Removes every container, volume and network labelled with the cluster's name.
pub async fn delete(provider: &dyn Provider, name: &str) -> Result<ClusterState> {
    let state = get(provider, name).await?;
    futures::future::try_join_all(state.nodes.iter().map(|n| provider.remove_node(&n.name)))
        .await?;
    // Volumes and the network go once no container uses them (listed again: an `up` may have
    // created some between the two listings).
    let volumes = provider.list_volumes(Some(name)).await?;
    futures::future::try_join_all(volumes.iter().map(|(v, _)| provider.remove_volume(v))).await?;
    for (network, _) in provider.list_networks(Some(name)).await? {
        provider.remove_network(&network).await?;
    }
    Ok(state)
}

/// A /24 for a new cluster, from 172.30.0.0/16 then 10.213.0.0/16, not overlapping any network
/// the engine has; the start point is a hash of the name so clusters rarely race for one.
pub fn pick_subnet(used: &[String], name: &str) -> Result<(String, Ipv4Addr)> {
    let used: Vec<(u32, u32)> = used.iter().filter_map(|s| parse_cidr(s)).collect();
    let hash = name
        .bytes()
        .fold(0u32, |h, b| h.wrapping_mul(31).wrapping_add(b as u32));
    for (a, b) in [(172u8, 30u8), (10, 213)] {
        for i in 0..256u32 {
            let third = ((hash + i) % 256) as u8;
            let base = u32::from(Ipv4Addr::new(a, b, third, 0));
            let overlaps = used
                .iter()
                .any(|&(start, mask)| (base & mask) == start || (start & 0xffff_ff00) == base);
            if !overlaps {
                let subnet = format!("{}/24", Ipv4Addr::from(base));
                return Ok((subnet, Ipv4Addr::from(base + 1)));
            }
        }
    }
    Err(Error::Invalid(
        "no free /24 left in 172.30.0.0/16 and 10.213.0.0/16 for the cluster network; remove unused Docker networks".into(),
    ))
}

/// (network address, mask) of an IPv4 CIDR.
fn parse_cidr(cidr: &str) -> Option<(u32, u32)> {
    let (ip, len) = cidr.split_once('/')?;
    let ip: Ipv4Addr = ip.parse().ok()?;
    let len: u32 = len.parse().ok()?;
    let mask = if len == 0 {
        0
    } else {
        u32::MAX << (32 - len.min(32))
    };
    Some((u32::from(ip) & mask, mask))
}

/// The `n`-th host address of a /24 subnet (2 is the first node; 1 is the gateway).
pub fn host_address(subnet: &str, n: u8) -> Result<Ipv4Addr> {
    let (base, _) =
        parse_cidr(subnet).ok_or_else(|| Error::Invalid(format!("invalid subnet {subnet}")))?;
    Ok(Ipv4Addr::from(base + n as u32))
}

/// The first free node address (from .2) given the nodes present.
pub fn free_address(subnet: &str, nodes: &[NodeInfo]) -> Result<Ipv4Addr> {
    for n in 2..=254u8 {
        let ip = host_address(subnet, n)?;
        if !nodes.iter().any(|node| node.ip == Some(ip)) {
            return Ok(ip);
        }
    }
    Err(Error::Invalid(format!("no free address left in {subnet}")))
}

/// The admin kubeconfig entry of a running cluster, read from its first server node and pointed
/// at the published API port.
pub async fn admin_entry(
    provider: &dyn Provider,
    state: &ClusterState,
) -> Result<kubeconfig::Entry> {
    let server = state.servers().find(|n| n.running()).ok_or_else(|| {
        Error::Invalid(format!(
            "cluster {:?} has no running server node; `kubelab start {}`",
            state.name, state.name
        ))
    })?;
    let url = state
        .api_url()
        .ok_or_else(|| Error::Invalid(format!("cluster {:?} publishes no API port", state.name)))?;
    let path = format!("{SERVER_DATA_DIR}/admin.kubeconfig");
    let output = provider.exec(&server.name, &["cat", &path], None).await?;
    if !output.success() {
        return Err(Error::NodeCommand {
            node: server.name.clone(),
            command: format!("cat {path}"),
            code: output.exit_code,
            output: output.message(),
        });
    }
    kubeconfig::Entry::from_kubeconfig(&state.name, &output.stdout_text(), &url)
}

/// An API client with the admin credentials.
pub async fn client(entry: &kubeconfig::Entry) -> Result<kube::Client> {
    let kubeconfig = kube::config::Kubeconfig::from_yaml(&entry.standalone_yaml())
        .map_err(|e| Error::Invalid(format!("admin kubeconfig: {e}")))?;
    let config = kube::Config::from_custom_kubeconfig(
        kubeconfig,
        &kube::config::KubeConfigOptions::default(),
    )
    .await
    .map_err(|e| Error::Invalid(format!("admin kubeconfig: {e}")))?;
    kube::Client::try_from(config).map_err(|e| Error::Invalid(format!("API client: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subnets_avoid_used_ranges() {
        let (subnet, gateway) = pick_subnet(&[], "lab").unwrap();
        assert!(subnet.starts_with("172.30.") && subnet.ends_with(".0/24"));
        assert_eq!(gateway, host_address(&subnet, 1).unwrap());
        // Everything in 172.30/16 taken by one /16: the fallback range.
        let (subnet, _) = pick_subnet(&["172.30.0.0/16".into()], "lab").unwrap();
        assert!(subnet.starts_with("10.213."));
        // A /24 taken: the next one.
        let (first, _) = pick_subnet(&[], "x").unwrap();
        let (second, _) = pick_subnet(std::slice::from_ref(&first), "x").unwrap();
        assert_ne!(first, second);
    }

    #[test]
    fn names() {
        assert_eq!(node_name("lab", Role::Server, 0), "lab-server-0");
        assert_eq!(volume_name("lab-agent-2"), "lab-agent-2-var");
        assert_eq!(network_name("lab"), "kubelab-lab");
        assert!(validate_name("lab-2").is_ok());
        for bad in ["", "Lab", "2lab", "lab-", "a_b", &"x".repeat(41)] {
            assert!(validate_name(bad).is_err(), "{bad}");
        }
    }
}
