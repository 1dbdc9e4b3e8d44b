//! `kubelab agent`: a node agent that joins a running `kubelab server` with a kubeconfig
//! carrying its node credentials (CN `system:node:<name>`, O `system:nodes`). Today only
//! `--fake`: a simulated node (kubelab_agent::fake); the container-running agent comes later.

use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use kube::config::{KubeConfigOptions, Kubeconfig};

#[derive(clap::Args)]
pub struct AgentArgs {
    /// Run a simulated node (real Node, Lease and pod status; no containers).
    #[arg(long)]
    fake: bool,
    /// Kubeconfig with this node's credentials.
    #[arg(long)]
    kubeconfig: PathBuf,
    /// Node name (default: this host's name).
    #[arg(long)]
    node_name: Option<String>,
    /// CPU capacity.
    #[arg(long, default_value = "4")]
    cpu: String,
    /// Memory capacity.
    #[arg(long, default_value = "8Gi")]
    memory: String,
    /// Pod capacity.
    #[arg(long, default_value_t = 110)]
    pods: u32,
    /// The node's InternalIP (default: one derived from the node name in 172.31.128.0/17).
    #[arg(long)]
    node_ip: Option<Ipv4Addr>,
    /// Seconds between renewals of the node Lease.
    #[arg(long, default_value_t = 10)]
    lease_renew_interval: u64,
}

pub async fn run(args: AgentArgs) -> anyhow::Result<()> {
    if !args.fake {
        anyhow::bail!("only simulated nodes exist yet: pass --fake");
    }
    let name = match args.node_name {
        Some(n) => n,
        None => hostname::get()
            .ok()
            .and_then(|h| h.into_string().ok())
            .context("cannot read the host name; pass --node-name")?
            .to_lowercase(),
    };
    if !is_dns_subdomain(&name) {
        anyhow::bail!("invalid node name {name:?}: use lower-case letters, digits, '-' and '.'");
    }
    let kubeconfig = Kubeconfig::read_from(&args.kubeconfig)
        .with_context(|| format!("cannot read the kubeconfig {}", args.kubeconfig.display()))?;
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .with_context(|| format!("invalid kubeconfig {}", args.kubeconfig.display()))?;
    let server = config.cluster_url.to_string();
    let client = kube::Client::try_from(config).context("cannot build an API client")?;
    let node_ip = args.node_ip.unwrap_or_else(|| derived_node_ip(&name));
    let mut fake = kubelab_agent::fake::FakeNodeConfig::new(name.clone(), node_ip);
    fake.cpu = args.cpu;
    fake.memory = args.memory;
    fake.pods = args.pods;
    fake.lease_renew_interval = Duration::from_secs(args.lease_renew_interval.max(1));
    println!("kubelab agent: simulated node {name} ({node_ip}) joining {server}");
    tokio::select! {
        _ = kubelab_agent::fake::run(client, fake) => {}
        _ = shutdown_signal() => tracing::info!("shutting down"),
    }
    Ok(())
}

fn is_dns_subdomain(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 253
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.')
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name.ends_with(|c: char| c.is_ascii_alphanumeric())
}

/// A stable address for a named node, away from the in-process nodes' 172.31.0.2.. range.
fn derived_node_ip(name: &str) -> Ipv4Addr {
    let hash = name.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    });
    let host = (hash % (128 * 256 - 2)) as u32 + 1;
    Ipv4Addr::new(172, 31, 128 + (host / 256) as u8, (host % 256) as u8)
}

async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
        }
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
