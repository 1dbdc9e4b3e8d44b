//! `kubelab addons list|enable|disable|configure`: the addons of a cluster (minikube's verbs).

use anyhow::Context;
use kube::api::{Api, DynamicObject, Patch, PatchParams};
use kubelab_cluster::cluster::ClusterState;
use kubelab_cluster::provider::DockerProvider;
use kubelab_cluster::{addons, cluster};

#[derive(clap::Args)]
pub struct AddonsArgs {
    #[command(subcommand)]
    command: AddonsCommand,
}

#[derive(clap::Subcommand)]
enum AddonsCommand {
    /// Each addon, whether it is on by default, its state in the cluster and what it exposes.
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
    /// Change an addon's settings and (re)apply it (`metallb --range A-B`: the default pool).
    Configure {
        addon: String,
        /// metallb: the default pool's addresses, `A-B` (IPv4) or a CIDR.
        #[arg(long)]
        range: Option<String>,
        /// Cluster name.
        #[arg(long, default_value = cluster::DEFAULT_NAME)]
        name: String,
    },
}

/// The metallb addon's default pool as the cluster holds it (what `configure` set).
async fn configured_metallb_range(client: &kube::Client) -> Option<String> {
    let resource = kubelab_metallb::controller::pool_resource();
    let pools: Api<DynamicObject> =
        Api::namespaced_with(client.clone(), "metallb-system", &resource);
    let pool = pools.get_opt("default").await.ok()??;
    pool.data["spec"]["addresses"]
        .as_array()?
        .first()?
        .as_str()
        .map(str::to_owned)
}

async fn connect(name: &str) -> anyhow::Result<(kube::Client, addons::ClusterFacts, ClusterState)> {
    let docker = DockerProvider::connect().await?;
    let state = cluster::require(&docker, name).await?;
    let entry = cluster::admin_entry(&docker, &state).await?;
    let client = cluster::client(&entry).await?;
    let mut facts = addons::ClusterFacts::new(name, state.nodes.len());
    if let Some(subnet) = state.network_subnet() {
        facts = facts.with_network(&subnet);
    }
    if let Some(range) = configured_metallb_range(&client).await {
        facts.metallb_range = range;
    }
    Ok((client, facts, state))
}

async fn enable(
    client: &kube::Client,
    facts: &addons::ClusterFacts,
    wanted: &addons::Addon,
    name: &str,
) -> anyhow::Result<()> {
    let mut all = vec![wanted.clone()];
    for needed in &wanted.requires {
        all.push(addons::require(needed)?);
    }
    for a in all.iter().rev() {
        let done = addons::install(client, &a.name, &addons::render(a, facts)?).await?;
        println!("enabled {} in cluster {name} ({done})", a.name);
    }
    Ok(())
}

/// After `disable metallb`: the addresses it wrote on Services are gone with it (its pools
/// went first, so a controller still stopping assigns nothing meanwhile).
async fn release_load_balancer_addresses(client: &kube::Client) -> anyhow::Result<usize> {
    use k8s_openapi::api::core::v1::Service;
    let all: Api<Service> = Api::all(client.clone());
    let mut released = 0;
    for svc in all.list(&Default::default()).await? {
        let annotations = svc.metadata.annotations.clone().unwrap_or_default();
        if !annotations.contains_key(kubelab_metallb::model::ANNOTATION_ALLOCATED_FROM_POOL) {
            continue;
        }
        let namespace = svc.metadata.namespace.clone().unwrap_or_default();
        let svc_name = svc.metadata.name.clone().unwrap_or_default();
        let api: Api<Service> = Api::namespaced(client.clone(), &namespace);
        let status = serde_json::json!({"status": {"loadBalancer": {"ingress": null}}});
        api.patch_status(&svc_name, &PatchParams::default(), &Patch::Merge(status))
            .await
            .with_context(|| format!("cannot clear the address of {namespace}/{svc_name}"))?;
        let annotation = serde_json::json!({"metadata": {"annotations": {
            kubelab_metallb::model::ANNOTATION_ALLOCATED_FROM_POOL: null}}});
        api.patch(
            &svc_name,
            &PatchParams::default(),
            &Patch::Merge(annotation),
        )
        .await
        .with_context(|| format!("cannot update {namespace}/{svc_name}"))?;
        released += 1;
    }
    Ok(released)
}

pub async fn run(args: AddonsArgs) -> anyhow::Result<()> {
    match args.command {
        AddonsCommand::List { name } => {
            let (client, facts, state) = connect(&name).await?;
            println!(
                "{:<18} {:<8} {:<9} {:<40} DESCRIPTION",
                "ADDON", "DEFAULT", "STATE", "EXPOSES"
            );
            for addon in addons::all() {
                let enabled = addons::is_enabled(&client, &addon, &facts).await?;
                let exposes = if enabled {
                    addons::exposures(&client, &addon, &state).await?.join(", ")
                } else {
                    String::new()
                };
                let description: String = addon
                    .description
                    .split_whitespace()
                    .collect::<Vec<_>>()
                    .join(" ");
                println!(
                    "{:<18} {:<8} {:<9} {:<40} {description}",
                    addon.name,
                    if addon.default { "on" } else { "off" },
                    if enabled { "enabled" } else { "disabled" },
                    if exposes.is_empty() { "-" } else { &exposes },
                );
            }
        }
        AddonsCommand::Enable { addon, name } => {
            let wanted = addons::require(&addon)?;
            let (client, facts, _) = connect(&name).await?;
            enable(&client, &facts, &wanted, &name).await?;
        }
        AddonsCommand::Disable { addon, name } => {
            let wanted = addons::require(&addon)?;
            let (client, facts, _) = connect(&name).await?;
            // The Ingresses whose status the ingress controller wrote: cleared once it is gone.
            let served = match wanted.name.as_str() {
                "ingress" => {
                    kubelab_ingress::served_ingresses(&client, &Default::default()).await?
                }
                _ => Vec::new(),
            };
            let done = addons::uninstall(&client, &wanted, &facts).await?;
            println!("disabled {} in cluster {name} ({done})", wanted.name);
            kubelab_ingress::clear_statuses(&client, &served).await;
            if wanted.name == "metallb" {
                let released = release_load_balancer_addresses(&client).await?;
                if released > 0 {
                    println!("released the LoadBalancer addresses of {released} services");
                }
            }
        }
        AddonsCommand::Configure { addon, range, name } => {
            let wanted = addons::require(&addon)?;
            let (client, mut facts, _) = connect(&name).await?;
            match (wanted.name.as_str(), range) {
                ("metallb", Some(range)) => {
                    let parsed = kubelab_metallb::addresses::Range::parse(&range)?;
                    if let Some(network) = (!facts.network_subnet.is_empty())
                        .then(|| kubelab_metallb::addresses::Range::parse(&facts.network_subnet))
                        .transpose()?
                    {
                        if !network.contains(parsed.first) || !network.contains(parsed.last) {
                            eprintln!(
                                "warning: {range} is outside the cluster network {}: the host reaches those addresses only with a route of its own",
                                facts.network_subnet
                            );
                        }
                    }
                    facts.metallb_range = range.trim().to_owned();
                    enable(&client, &facts, &wanted, &name).await?;
                    println!("metallb: pool default is {}", facts.metallb_range);
                }
                ("metallb", None) => anyhow::bail!("configure metallb needs --range A-B"),
                (other, _) => anyhow::bail!("addon {other} has nothing to configure"),
            }
        }
    }
    Ok(())
}
