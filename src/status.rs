//! `kubelab status`: a cluster's nodes (role, state, address, Kubernetes readiness), its API
//! endpoint and whether the API answers.

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::core::v1::Node;
use kube::api::{Api, ListParams};
use kubelab_cluster::provider::DockerProvider;
use kubelab_cluster::{cluster, create};

#[derive(clap::Args)]
pub struct StatusArgs {
    /// Cluster name.
    #[arg(default_value = cluster::DEFAULT_NAME)]
    name: String,
}

pub async fn run(args: StatusArgs) -> anyhow::Result<()> {
    let docker = DockerProvider::connect().await?;
    let state = cluster::require(&docker, &args.name).await?;
    let mut ready: BTreeMap<String, String> = BTreeMap::new();
    let mut health = String::from("unreachable");
    if let Ok(entry) = cluster::admin_entry(&docker, &state).await {
        if let Ok(client) = cluster::client(&entry).await {
            let answer =
                tokio::time::timeout(Duration::from_secs(5), client.apiserver_version()).await;
            if let Ok(Ok(version)) = answer {
                health = format!("healthy ({})", version.git_version);
                let nodes: Api<Node> = Api::all(client);
                if let Ok(list) = nodes.list(&ListParams::default()).await {
                    for node in list.items {
                        let name = node.metadata.name.clone().unwrap_or_default();
                        let text = if create::is_ready(&node) {
                            "Ready"
                        } else {
                            "NotReady"
                        };
                        ready.insert(name, text.to_owned());
                    }
                }
            }
        }
    }
    println!("cluster {}", state.name);
    println!(
        "  API:     {} — {health}",
        state.api_url().unwrap_or_else(|| "-".into())
    );
    println!("  network: {}", state.networks.join(", "));
    println!();
    println!(
        "  {:<28} {:<7} {:<9} {:<15} KUBERNETES",
        "NODE", "ROLE", "STATE", "IP"
    );
    for node in &state.nodes {
        println!(
            "  {:<28} {:<7} {:<9} {:<15} {}",
            node.name,
            node.role.as_str(),
            node.state,
            node.ip
                .map(|ip| ip.to_string())
                .unwrap_or_else(|| "-".into()),
            ready.get(&node.name).map(String::as_str).unwrap_or("-")
        );
    }
    Ok(())
}
