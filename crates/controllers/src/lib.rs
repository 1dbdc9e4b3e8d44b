//! kubelab's controllers: level-triggered reconcilers (kube-runtime), one module per
//! controller. They are ordinary API clients of the kubelab API server, authenticated with the
//! controller-manager certificate; they never touch the store.

pub mod namespace;

use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("API request failed: {0}")]
    Api(#[from] kube::Error),
    #[error("discovery failed: {0}")]
    Discovery(String),
}

/// Requeue delay after a failed reconcile.
pub(crate) const ERROR_REQUEUE: Duration = Duration::from_secs(2);

/// Run every controller until the client's server goes away for good.
pub async fn run_all(client: kube::Client) {
    namespace::run(client).await;
}
