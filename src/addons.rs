//! `kubelab addons list|enable|disable`: the addons of a cluster (minikube's verbs).

use kubelab_cluster::provider::DockerProvider;
use kubelab_cluster::{addons, cluster};

#[derive(clap::Args)]
pub struct AddonsArgs {
    #[command(subcommand)]
    command: AddonsCommand,
}

#[derive(clap::Subcommand)]
enum AddonsCommand {
    /// Each addon, whether it is on by default, and its state in the cluster.
    List {
        /// Cluster name.
        #[arg(long, default_value = cluster::DEFAULT_NAME)]
        name: String,
    },
    /// Install an addon (and those it needs) into the cluster.
    Enable {
        addon: String,
        /// Cluster name.
        #[arg(long, default_value = cluster::DEFAULT_NAME)]
        name: String,
    },
    /// Remove an addon's objects from the cluster.
    Disable {
        addon: String,
        /// Cluster name.
        #[arg(long, default_value = cluster::DEFAULT_NAME)]
        name: String,
    },
}

async fn client_and_facts(name: &str) -> anyhow::Result<(kube::Client, addons::ClusterFacts)> {
    let docker = DockerProvider::connect().await?;
    let state = cluster::require(&docker, name).await?;
    let entry = cluster::admin_entry(&docker, &state).await?;
    let client = cluster::client(&entry).await?;
    Ok((client, addons::ClusterFacts::new(name, state.nodes.len())))
}

pub async fn run(args: AddonsArgs) -> anyhow::Result<()> {
    match args.command {
        AddonsCommand::List { name } => {
            let (client, facts) = client_and_facts(&name).await?;
            println!(
                "{:<18} {:<8} {:<9} DESCRIPTION",
                "ADDON", "DEFAULT", "STATE"
            );
            for addon in addons::all() {
                let state = if addons::is_enabled(&client, &addon, &facts).await? {
                    "enabled"
                } else {
                    "disabled"
                };
                let description: String = addon
                    .description
                    .split_whitespace()
                    .collect::<Vec<_>>()
                    .join(" ");
                println!(
                    "{:<18} {:<8} {:<9} {description}",
                    addon.name,
                    if addon.default { "on" } else { "off" },
                    state
                );
            }
        }
        AddonsCommand::Enable { addon, name } => {
            let wanted = addons::require(&addon)?;
            let (client, facts) = client_and_facts(&name).await?;
            let mut all = vec![wanted.clone()];
            for needed in &wanted.requires {
                all.push(addons::require(needed)?);
            }
            for a in all.iter().rev() {
                let done = addons::install(&client, &a.name, &addons::render(a, &facts)?).await?;
                println!("enabled {} in cluster {name} ({done})", a.name);
            }
        }
        AddonsCommand::Disable { addon, name } => {
            let wanted = addons::require(&addon)?;
            let (client, facts) = client_and_facts(&name).await?;
            let done = addons::uninstall(&client, &wanted, &facts).await?;
            println!("disabled {} in cluster {name} ({done})", wanted.name);
        }
    }
    Ok(())
}
