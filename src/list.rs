//! `kubelab list`: the clusters the engine holds, from their labels.

use kubelab_cluster::cluster;
use kubelab_cluster::provider::DockerProvider;

#[derive(clap::Args)]
pub struct ListArgs {}

pub async fn run(_args: ListArgs) -> anyhow::Result<()> {
    let docker = DockerProvider::connect().await?;
    let clusters = cluster::list(&docker).await?;
    if clusters.is_empty() {
        println!("no kubelab cluster; create one with `kubelab up`");
        return Ok(());
    }
    println!(
        "{:<20} {:>7} {:>6} {:>8}  API",
        "NAME", "SERVERS", "AGENTS", "RUNNING"
    );
    for state in clusters.values() {
        let running = state.nodes.iter().filter(|n| n.running()).count();
        println!(
            "{:<20} {:>7} {:>6} {:>8}  {}",
            state.name,
            state.servers().count(),
            state.agents().count(),
            format!("{running}/{}", state.nodes.len()),
            state.api_url().unwrap_or_else(|| "-".into())
        );
    }
    Ok(())
}
