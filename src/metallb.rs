//! `kubelab metallb controller|speaker`: kubelab's MetalLB (kubelab_metallb) — what the
//! `metallb` addon's pods run. The controller assigns addresses from IPAddressPools to
//! LoadBalancer Services; the speaker (one per node, hostNetwork, CAP_NET_RAW) answers ARP for
//! the addresses its node is elected for.

use std::path::PathBuf;

#[derive(clap::Args)]
pub struct MetallbArgs {
    #[command(subcommand)]
    role: Role,
    /// Kubeconfig to watch the cluster with (default: the pod's service account, in-cluster).
    #[arg(long, global = true)]
    kubeconfig: Option<PathBuf>,
    /// The namespace of the IPAddressPools, L2Advertisements and speaker pods.
    #[arg(long, global = true, default_value = "metallb-system")]
    namespace: String,
}

#[derive(clap::Subcommand)]
enum Role {
    /// Assign addresses from the pools to LoadBalancer Services.
    Controller,
    /// Answer ARP for the addresses this node is elected to announce.
    Speaker {
        /// This node's name (the pod gets it from `spec.nodeName`).
        #[arg(long, env = "NODE_NAME")]
        node_name: String,
    },
}

pub async fn run(args: MetallbArgs) -> anyhow::Result<()> {
    let client = crate::client::kubeconfig_or_in_cluster(args.kubeconfig.as_deref()).await?;
    let work = async {
        match &args.role {
            Role::Controller => kubelab_metallb::controller::run(client, &args.namespace).await,
            Role::Speaker { node_name } => {
                kubelab_metallb::speaker::run(client, node_name, &args.namespace).await
            }
        }
    };
    tokio::select! {
        result = work => result?,
        _ = crate::server::shutdown_signal() => {}
    }
    Ok(())
}
