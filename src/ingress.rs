//! `kubelab ingress`: the ingress controller (kubelab_ingress) — what the `ingress` addon's
//! pods run. Serves the Ingresses of the IngressClasses with controller `k8s.io/ingress-nginx`
//! on `--http-listen`/`--https-listen`, from watches through `--kubeconfig`, or in a pod from
//! its service-account token. Flags follow ingress-nginx's controller where they overlap.

use std::net::SocketAddr;
use std::path::PathBuf;

#[derive(clap::Args)]
pub struct IngressArgs {
    /// Address of the plain HTTP listener.
    #[arg(long, default_value = "0.0.0.0:80")]
    http_listen: SocketAddr,
    /// Address of the HTTPS listener.
    #[arg(long, default_value = "0.0.0.0:443")]
    https_listen: SocketAddr,
    /// Kubeconfig to watch the cluster with (default: the pod's service account, in-cluster).
    #[arg(long)]
    kubeconfig: Option<PathBuf>,
    /// Ingresses annotated `kubernetes.io/ingress.class` with this name are served.
    #[arg(long, default_value = "nginx")]
    ingress_class: String,
    /// IngressClasses with this `spec.controller` are served.
    #[arg(long, default_value = "k8s.io/ingress-nginx")]
    controller_class: String,
    /// Also serve Ingresses without a class when no IngressClass of ours is the default.
    #[arg(long)]
    watch_ingress_without_class: bool,
    /// NAMESPACE/NAME of the Service whose load-balancer addresses go into Ingress status.
    #[arg(long)]
    publish_service: Option<String>,
    /// Addresses for Ingress status while the publish Service has none (comma-separated).
    #[arg(long, env = "KUBELAB_INGRESS_STATUS_ADDRESS", value_delimiter = ',')]
    publish_status_address: Vec<String>,
}

pub async fn run(args: IngressArgs) -> anyhow::Result<()> {
    let client = crate::client::kubeconfig_or_in_cluster(args.kubeconfig.as_deref()).await?;
    let shared = kubelab_ingress::Shared::new()?;
    let classes = kubelab_ingress::ClassConfig {
        ingress_class: args.ingress_class,
        controller: args.controller_class,
        watch_without_class: args.watch_ingress_without_class,
    };
    let status = kubelab_ingress::StatusConfig {
        publish_service: args.publish_service,
        addresses: args
            .publish_status_address
            .into_iter()
            .filter(|a| !a.is_empty())
            .collect(),
    };
    let listeners = kubelab_ingress::Listeners {
        http: args.http_listen,
        https: Some(args.https_listen),
    };
    let watch = tokio::spawn(kubelab_ingress::watch(
        client.clone(),
        classes,
        status,
        shared.clone(),
    ));
    tokio::select! {
        served = kubelab_ingress::serve(listeners, shared.clone()) => served?,
        ended = watch => anyhow::bail!("{}", ended.map(|e| e.to_string()).unwrap_or_else(|e| e.to_string())),
        _ = crate::server::shutdown_signal() => {
            // Nothing serves these Ingresses once this replica is gone.
            kubelab_ingress::clear_status(&client, &shared).await;
        }
    }
    Ok(())
}
