//! `kubelab load image|archive`: images from the host into every node's containerd.

use std::path::PathBuf;

use kubelab_cluster::cluster;
use kubelab_cluster::load::{self, NodeOutcome};
use kubelab_cluster::provider::{DockerProvider, Provider};

#[derive(clap::Args)]
pub struct LoadArgs {
    #[command(subcommand)]
    command: LoadCommand,
}

#[derive(clap::Subcommand)]
enum LoadCommand {
    /// Stream images from the host's Docker into every node (skipping nodes that have them).
    Image {
        /// Image names as the host's Docker knows them.
        #[arg(required = true)]
        images: Vec<String>,
        /// Cluster name.
        #[arg(long, default_value = cluster::DEFAULT_NAME)]
        name: String,
    },
    /// Load a `docker save` or OCI tarball into every node.
    Archive {
        file: PathBuf,
        /// Cluster name.
        #[arg(long, default_value = cluster::DEFAULT_NAME)]
        name: String,
    },
}

pub async fn run(args: LoadArgs) -> anyhow::Result<()> {
    let docker = DockerProvider::connect().await?;
    match args.command {
        LoadCommand::Image { images, name } => {
            let state = cluster::require(&docker, &name).await?;
            let mut with_ids = Vec::new();
            for image in images {
                let id = docker.image_id(&image).await?.ok_or_else(|| {
                    anyhow::anyhow!(
                        "image {image:?} is not in the host's Docker; build or pull it first"
                    )
                })?;
                with_ids.push((image, id));
            }
            let outcomes = load::load_images(&docker, &state.nodes, &with_ids).await?;
            let names: Vec<&str> = with_ids.iter().map(|(n, _)| n.as_str()).collect();
            for (node, outcome) in outcomes {
                match outcome {
                    NodeOutcome::Loaded => println!("loaded {} into {node}", names.join(", ")),
                    NodeOutcome::Skipped => {
                        println!(
                            "skipped {node}: it already has {} (same image ID)",
                            names.join(", ")
                        )
                    }
                }
            }
        }
        LoadCommand::Archive { file, name } => {
            if !file.is_file() {
                anyhow::bail!("no such archive: {}", file.display());
            }
            let state = cluster::require(&docker, &name).await?;
            for node in load::load_archive(&docker, &state.nodes, &file).await? {
                println!("loaded {} into {node}", file.display());
            }
        }
    }
    Ok(())
}
