//! `kubelab node-image build`: builds the node image (see kubelab_cluster::node_image).

use anyhow::Context;
use kubelab_cluster::node_image::{self, BaseSource, BuildOptions};
use kubelab_cluster::provider::DockerProvider;

#[derive(clap::Args)]
pub struct NodeImageArgs {
    #[command(subcommand)]
    command: NodeImageCommand,
}

#[derive(clap::Subcommand)]
enum NodeImageCommand {
    /// Build the node image (the base once, then the kubelab binary on top).
    Build(BuildArgs),
    /// Inside a node: make and import the system image into containerd (run at boot by
    /// node-init).
    #[command(hide = true)]
    ImportSystem {
        /// containerd's snapshotter.
        #[arg(long, default_value = "overlayfs")]
        snapshotter: String,
    },
}

#[derive(clap::Args)]
struct BuildArgs {
    /// Image name (default kubelab/node:v<version>).
    #[arg(long)]
    image: Option<String>,
    /// Rebuild the base image too (debootstrap again).
    #[arg(long)]
    rebuild_base: bool,
    /// Do not try a registry for the base (debootstrap directly).
    #[arg(long)]
    offline: bool,
    /// Debian mirror for debootstrap (default: the host's apt source).
    #[arg(long)]
    mirror: Option<String>,
}

pub async fn run(args: NodeImageArgs) -> anyhow::Result<()> {
    match args.command {
        NodeImageCommand::ImportSystem { snapshotter } => {
            let kubelab = std::env::current_exe().context("cannot find the kubelab binary")?;
            let started = std::time::Instant::now();
            if kubelab_cluster::node_init::containerd::ensure_system_image(&kubelab, &snapshotter)?
            {
                println!(
                    "imported {} in {:.1}s",
                    kubelab_cluster::node_init::containerd::system_image(),
                    started.elapsed().as_secs_f64()
                );
            }
            Ok(())
        }
        NodeImageCommand::Build(build) => {
            let docker = DockerProvider::connect().await?;
            let options = BuildOptions {
                image: build.image.unwrap_or_else(node_image::default_image),
                binary: std::env::current_exe().context("cannot find the kubelab binary")?,
                rebuild_base: build.rebuild_base,
                offline: build.offline,
                mirror: build.mirror,
            };
            let report = build_image(&docker, &options).await?;
            println!(
                "built {} ({}) in {:.1}s: {:.0} MB{}",
                report.image,
                &report.id.trim_start_matches("sha256:")[..12.min(report.id.len())],
                report.duration.as_secs_f64(),
                report.size_bytes as f64 / 1e6,
                match report.base {
                    BaseSource::Present => "",
                    BaseSource::CachedRootfs => " (base re-imported from the cached rootfs)",
                    BaseSource::Debootstrap => " (base made with debootstrap)",
                    BaseSource::Registry => " (base from debian:bookworm-slim)",
                }
            );
            Ok(())
        }
    }
}

/// Builds the image, printing each step.
pub async fn build_image(
    docker: &DockerProvider,
    options: &BuildOptions,
) -> anyhow::Result<node_image::BuildReport> {
    let say = |line: &str| eprintln!("  {line}");
    Ok(node_image::build(docker, options, &say).await?)
}
