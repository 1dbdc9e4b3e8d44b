//! `kubelab down`: remove a cluster's containers, volumes, network and kubeconfig entries.

use kubelab_cluster::provider::DockerProvider;
use kubelab_cluster::{cluster, kubeconfig};

#[derive(clap::Args)]
pub struct DownArgs {
    /// Cluster name.
    #[arg(default_value = cluster::DEFAULT_NAME, conflicts_with = "all")]
    name: String,
    /// Remove every kubelab cluster.
    #[arg(long)]
    all: bool,
}

pub async fn run(args: DownArgs) -> anyhow::Result<()> {
    let docker = DockerProvider::connect().await?;
    let names: Vec<String> = if args.all {
        cluster::list(&docker).await?.into_keys().collect()
    } else {
        vec![args.name]
    };
    if names.is_empty() {
        println!("no kubelab cluster to remove");
    }
    let path = kubeconfig::default_path();
    for name in names {
        let removed = cluster::delete(&docker, &name).await?;
        let entry = kubeconfig::remove(&path, &name)?;
        if removed.nodes.is_empty() && removed.networks.is_empty() && removed.volumes.is_empty() {
            println!(
                "no cluster named {name:?}{}",
                if entry {
                    " (removed its kubeconfig entries)"
                } else {
                    ""
                }
            );
            continue;
        }
        println!(
            "removed cluster {name}: {} node{}, {} volume{}, {} network{}{}",
            removed.nodes.len(),
            plural(removed.nodes.len()),
            removed.volumes.len(),
            plural(removed.volumes.len()),
            removed.networks.len(),
            plural(removed.networks.len()),
            if entry {
                format!(
                    ", context {} from {}",
                    kubeconfig::entry_name(&name),
                    path.display()
                )
            } else {
                String::new()
            }
        );
    }
    Ok(())
}

fn plural(n: usize) -> &'static str {
    if n == 1 {
        ""
    } else {
        "s"
    }
}
