//! `kubelab stop` and `kubelab start`: stop a cluster's nodes keeping their state (the /var
//! volumes), start them again with the same addresses and API port.

use std::time::Duration;

use kubelab_cluster::provider::DockerProvider;
use kubelab_cluster::{cluster, nodes};

use crate::progress::Steps;

#[derive(clap::Args)]
pub struct StopArgs {
    /// Cluster name.
    #[arg(default_value = cluster::DEFAULT_NAME)]
    name: String,
}

#[derive(clap::Args)]
pub struct StartArgs {
    /// Cluster name.
    #[arg(default_value = cluster::DEFAULT_NAME)]
    name: String,
    /// How long to wait for every node Ready.
    #[arg(long, default_value = "120s", value_parser = crate::up::parse_duration)]
    wait: Duration,
}

pub async fn stop(args: StopArgs) -> anyhow::Result<()> {
    let docker = DockerProvider::connect().await?;
    nodes::stop(&docker, &args.name, &Steps::new()).await?;
    println!(
        "stopped cluster {}; `kubelab start {}` brings it back",
        args.name, args.name
    );
    Ok(())
}

pub async fn start(args: StartArgs) -> anyhow::Result<()> {
    let docker = DockerProvider::connect().await?;
    nodes::start(&docker, &args.name, args.wait, &Steps::new()).await?;
    println!("started cluster {}", args.name);
    Ok(())
}
