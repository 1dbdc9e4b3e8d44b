//! `kubelab dns`: the cluster DNS server (kubelab_dns) — what the `coredns` addon's pods run.
//! Records come from watches through `--kubeconfig`, or in a pod from its service-account
//! token; names outside the cluster domain go to the nameservers of `--resolv-conf`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

#[derive(clap::Args)]
pub struct DnsArgs {
    /// UDP and TCP address to answer on.
    #[arg(long, default_value = "0.0.0.0:53")]
    listen: SocketAddr,
    /// Kubeconfig to watch the cluster with (default: the pod's service account, in-cluster).
    #[arg(long)]
    kubeconfig: Option<PathBuf>,
    /// The cluster domain.
    #[arg(long, default_value = "cluster.local")]
    cluster_domain: String,
    /// The resolv.conf whose nameservers get the names outside the cluster domain.
    #[arg(long, default_value = "/etc/resolv.conf")]
    resolv_conf: PathBuf,
    /// Milliseconds to wait for one upstream nameserver before trying the next (SERVFAIL when
    /// none answered).
    #[arg(long, default_value_t = 2000)]
    upstream_timeout_ms: u64,
}

pub async fn run(args: DnsArgs) -> anyhow::Result<()> {
    let client = crate::client::kubeconfig_or_in_cluster(args.kubeconfig.as_deref()).await?;
    let upstream = kubelab_dns::Upstream::from_resolv_conf(
        &args.resolv_conf,
        Duration::from_millis(args.upstream_timeout_ms),
    )?;
    if upstream.servers().is_empty() {
        tracing::warn!(
            resolv_conf = %args.resolv_conf.display(),
            "no nameserver: names outside the cluster get SERVFAIL"
        );
    }
    let snapshot = kubelab_dns::Snapshot::default();
    let watch = tokio::spawn(kubelab_dns::watch(client, snapshot.clone()));
    let server = kubelab_dns::ServerConfig {
        listen: args.listen,
        cluster_domain: args.cluster_domain,
        upstream,
    };
    tokio::select! {
        served = kubelab_dns::serve(server, snapshot) => served?,
        _ = watch => anyhow::bail!("the watches of the cluster ended"),
        _ = crate::server::shutdown_signal() => {}
    }
    Ok(())
}
