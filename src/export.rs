//! `kubelab export logs`: a cluster's logs and state into a directory.

use std::path::PathBuf;

use kubelab_cluster::provider::DockerProvider;
use kubelab_cluster::{cluster, export};

#[derive(clap::Args)]
pub struct ExportArgs {
    #[command(subcommand)]
    command: ExportCommand,
}

#[derive(clap::Subcommand)]
enum ExportCommand {
    /// Per node: entrypoint, containerd, server and agent logs, `docker inspect`, images; the
    /// cluster's nodes, pods and events.
    Logs {
        /// Cluster name.
        #[arg(default_value = cluster::DEFAULT_NAME)]
        name: String,
        /// Where to write (default: a new temporary directory).
        dir: Option<PathBuf>,
    },
}

pub async fn run(args: ExportArgs) -> anyhow::Result<()> {
    let ExportCommand::Logs { name, dir } = args.command;
    let docker = DockerProvider::connect().await?;
    let dir = match dir {
        Some(d) => d,
        None => tempfile::Builder::new()
            .prefix(&format!("kubelab-logs-{name}-"))
            .tempdir()?
            .keep(),
    };
    let files = export::export_logs(&docker, &name, &dir).await?;
    println!(
        "exported {} files of cluster {name} to {}",
        files.len(),
        dir.display()
    );
    Ok(())
}
