//! `kubelab node add|remove`: change a running cluster's nodes.

use std::time::Duration;

use kubelab_cluster::provider::DockerProvider;
use kubelab_cluster::{cluster, nodes};

use crate::progress::Steps;

#[derive(clap::Args)]
pub struct NodeArgs {
    #[command(subcommand)]
    command: NodeCommand,
}

#[derive(clap::Subcommand)]
enum NodeCommand {
    /// Add a node to a cluster and wait until it is Ready.
    Add {
        /// Cluster name.
        #[arg(default_value = cluster::DEFAULT_NAME)]
        name: String,
        /// `agent` (servers need the HA datastore, not there yet).
        #[arg(long, default_value = "agent")]
        role: String,
        /// How long to wait for the node Ready.
        #[arg(long, default_value = "120s", value_parser = crate::up::parse_duration)]
        wait: Duration,
    },
    /// Drain a node, then remove it from the cluster.
    Remove {
        /// Cluster name.
        name: String,
        /// Node name (see `kubelab status NAME`).
        node: String,
        /// How long the drain may take.
        #[arg(long, default_value = "120s", value_parser = crate::up::parse_duration)]
        timeout: Duration,
    },
}

pub async fn run(args: NodeArgs) -> anyhow::Result<()> {
    let docker = DockerProvider::connect().await?;
    let steps = Steps::new();
    match args.command {
        NodeCommand::Add { name, role, wait } => {
            match role.as_str() {
                "agent" => {}
                "server" => anyhow::bail!(
                    "adding a server needs the HA datastore, which kubelab does not have yet; add an agent"
                ),
                other => anyhow::bail!("invalid --role {other:?}: use agent"),
            }
            let node = nodes::add_agent(&docker, &name, wait, &steps).await?;
            println!("added node {node} to cluster {name}");
        }
        NodeCommand::Remove {
            name,
            node,
            timeout,
        } => {
            nodes::remove_node(&docker, &name, &node, timeout, &steps).await?;
            println!("removed node {node} from cluster {name}");
        }
    }
    Ok(())
}
