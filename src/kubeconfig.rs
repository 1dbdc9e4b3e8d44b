//! `kubelab kubeconfig`: a cluster's admin kubeconfig, printed, merged or written to a file.

use std::path::PathBuf;

use kubelab_cluster::provider::DockerProvider;
use kubelab_cluster::{cluster, kubeconfig};

#[derive(clap::Args)]
pub struct KubeconfigArgs {
    /// Cluster name.
    #[arg(default_value = cluster::DEFAULT_NAME)]
    name: String,
    /// Merge into $KUBECONFIG's first file or ~/.kube/config (the default).
    #[arg(long, conflicts_with_all = ["print", "path"])]
    merge: bool,
    /// Print it.
    #[arg(long, conflicts_with = "path")]
    print: bool,
    /// Write it (alone) to this file.
    #[arg(long)]
    path: Option<PathBuf>,
    /// With --merge: do not make it the current context.
    #[arg(long)]
    no_switch_context: bool,
}

pub async fn run(args: KubeconfigArgs) -> anyhow::Result<()> {
    let docker = DockerProvider::connect().await?;
    let state = cluster::require(&docker, &args.name).await?;
    let entry = cluster::admin_entry(&docker, &state).await?;
    if args.print {
        print!("{}", entry.standalone_yaml());
    } else if let Some(path) = args.path {
        kubeconfig::write_private(&path, entry.standalone_yaml().as_bytes())?;
        println!("wrote {}", path.display());
    } else {
        let path = kubeconfig::default_path();
        kubeconfig::merge(&path, &entry, !args.no_switch_context)?;
        println!("merged context {} into {}", entry.name, path.display());
    }
    Ok(())
}
