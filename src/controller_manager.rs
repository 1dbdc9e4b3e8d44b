//! `kubelab controller-manager`: the controllers out of process, as a separate API client —
//! the same code `kubelab server` runs in-process, under the same leader election, so several
//! candidates never act at once.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use kubelab_controllers::leader::{LeaderElection, Timing};

#[derive(clap::Args)]
pub struct ControllerManagerArgs {
    /// Kubeconfig with the controller-manager's credentials (`DIR/controller-manager.kubeconfig`).
    #[arg(long)]
    kubeconfig: PathBuf,
    /// Identity in the leader lease (default: host name and process id).
    #[arg(long)]
    identity: Option<String>,
    /// Seconds a leader lease lasts without renewal.
    #[arg(long, default_value_t = 15)]
    leader_elect_lease_duration: u64,
    /// Seconds without a node heartbeat before the node is marked Unknown.
    #[arg(long, default_value_t = 40)]
    node_monitor_grace_period: u64,
}

/// The election timing for a lease of `lease_secs` (upstream proportions: renew deadline 2/3,
/// retry period 2/15 of the lease).
pub fn timing(lease_secs: u64) -> Timing {
    let lease = Duration::from_secs(lease_secs.max(1));
    Timing {
        lease_duration: lease,
        renew_deadline: lease * 2 / 3,
        retry_period: (lease * 2 / 15).max(Duration::from_millis(200)),
    }
}

/// Run the controllers whenever `identity` holds the controller-manager lease.
pub fn spawn_controllers(
    client: kube::Client,
    config: kubelab_controllers::Config,
    identity: &str,
    timing: Timing,
) -> tokio::task::JoinHandle<()> {
    let election = LeaderElection::new(client.clone(), "kube-controller-manager", identity, timing);
    tokio::spawn(election.run(move || kubelab_controllers::run_all(client.clone(), config.clone())))
}

pub fn default_identity() -> String {
    let host = hostname::get()
        .ok()
        .and_then(|h| h.into_string().ok())
        .unwrap_or_else(|| "localhost".into());
    format!("{host}_{}", std::process::id())
}

pub async fn run(args: ControllerManagerArgs) -> anyhow::Result<()> {
    let kubeconfig = kube::config::Kubeconfig::read_from(&args.kubeconfig)
        .with_context(|| format!("cannot read {}", args.kubeconfig.display()))?;
    let root_ca_pem = kubeconfig
        .clusters
        .first()
        .and_then(|c| c.cluster.as_ref())
        .and_then(|c| c.certificate_authority_data.as_ref())
        .and_then(|b64| {
            use base64::Engine;
            base64::engine::general_purpose::STANDARD.decode(b64).ok()
        })
        .and_then(|pem| String::from_utf8(pem).ok())
        .unwrap_or_default();
    let config = kube::Config::from_custom_kubeconfig(
        kubeconfig,
        &kube::config::KubeConfigOptions::default(),
    )
    .await
    .context("invalid kubeconfig")?;
    let client = kube::Client::try_from(config).context("cannot build an API client")?;
    let identity = args.identity.unwrap_or_else(default_identity);
    eprintln!(
        "kubelab controller-manager {identity}: campaigning for the kube-controller-manager lease"
    );
    let task = spawn_controllers(
        client,
        kubelab_controllers::Config {
            root_ca_pem,
            node_monitor_grace_period: Duration::from_secs(args.node_monitor_grace_period),
            ..kubelab_controllers::Config::default()
        },
        &identity,
        timing(args.leader_elect_lease_duration),
    );
    crate::server::shutdown_signal().await;
    task.abort();
    Ok(())
}
