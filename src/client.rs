//! API clients of the verbs that run in pods or on the host: from a kubeconfig file, or in a
//! pod from its service account (in-cluster configuration).

use std::path::Path;

use anyhow::Context;
use kube::config::{KubeConfigOptions, Kubeconfig};

/// A client with the credentials of the kubeconfig file at `path`.
pub async fn from_kubeconfig(path: &Path) -> anyhow::Result<kube::Client> {
    let kubeconfig = Kubeconfig::read_from(path)
        .with_context(|| format!("cannot read the kubeconfig {}", path.display()))?;
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .with_context(|| format!("invalid kubeconfig {}", path.display()))?;
    kube::Client::try_from(config).context("cannot build an API client")
}

/// The kubeconfig's client when given, else the pod's service account.
pub async fn kubeconfig_or_in_cluster(path: Option<&Path>) -> anyhow::Result<kube::Client> {
    if let Some(path) = path {
        return from_kubeconfig(path).await;
    }
    let config = kube::Config::incluster().context(
        "not in a pod (no service account token or KUBERNETES_SERVICE_HOST); pass --kubeconfig",
    )?;
    kube::Client::try_from(config).context("cannot build an API client")
}
