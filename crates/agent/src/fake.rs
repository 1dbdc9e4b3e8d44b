//! Simulated nodes (not yet written).

/// One simulated node.
#[derive(Clone, Debug)]
pub struct FakeNodeConfig {
    pub name: String,
    pub cpu: String,
    pub memory: String,
    pub pods: u32,
    pub node_ip: std::net::Ipv4Addr,
}

/// Run one simulated node with its own node credentials until the process ends.
pub async fn run(_client: kube::Client, _config: FakeNodeConfig) {}
