//! kubelab's controllers: level-triggered reconcilers (kube-runtime), one module per
//! controller. They are ordinary API clients of the kubelab API server, authenticated with the
//! controller-manager certificate; they never touch the store.

pub mod clusterrole_aggregation;
pub mod cronjob;
pub mod daemonset;
pub mod deployment;
pub mod disruption;
pub mod endpoints;
pub mod garbage_collector;
pub mod informer;
pub mod job;
pub mod leader;
pub mod namespace;
pub mod node_ipam;
pub mod node_lifecycle;
pub mod replicaset;
pub mod service_lb;
pub mod serviceaccount;
pub mod statefulset;
pub mod volume;

use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("API request failed: {0}")]
    Api(#[from] kube::Error),
    #[error("discovery failed: {0}")]
    Discovery(String),
    #[error("{0}")]
    Invalid(String),
}

/// Requeue delay after a failed reconcile.
pub(crate) const ERROR_REQUEUE: Duration = Duration::from_secs(2);

/// Tunables of the controllers; every period is configurable so tests run in seconds.
#[derive(Clone, Debug)]
pub struct Config {
    /// A node without a heartbeat for this long turns Ready=Unknown (upstream 40 s).
    pub node_monitor_grace_period: Duration,
    /// Pod network the node IPAM carves per-node ranges from.
    pub cluster_cidr: String,
    /// Prefix length of each node's podCIDR.
    pub node_cidr_mask_size: u8,
    /// PEM of the cluster CA, published as the `kube-root-ca.crt` ConfigMap in every namespace.
    pub root_ca_pem: String,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            node_monitor_grace_period: Duration::from_secs(40),
            cluster_cidr: "10.244.0.0/16".into(),
            node_cidr_mask_size: 24,
            root_ca_pem: String::new(),
        }
    }
}

/// What every controller gets: a client with the controller-manager identity, the config, and
/// the one pod informer they share.
#[derive(Clone)]
pub struct Context {
    pub client: kube::Client,
    pub config: Config,
    pub pods: informer::SharedPods,
}

/// Run every controller until the process ends.
pub async fn run_all(client: kube::Client, config: Config) {
    let pod_informer = informer::PodInformer::new();
    let ctx = Context {
        client,
        config,
        pods: pod_informer.pods(),
    };
    tokio::join!(
        pod_informer.run(ctx.client.clone()),
        namespace::run(ctx.client.clone()),
        deployment::run(ctx.clone()),
        replicaset::run(ctx.clone()),
        daemonset::run(ctx.clone()),
        statefulset::run(ctx.clone()),
        job::run(ctx.clone()),
        cronjob::run(ctx.clone()),
        garbage_collector::run(ctx.clone()),
        endpoints::run(ctx.clone()),
        serviceaccount::run(ctx.clone()),
        volume::run(ctx.clone()),
        disruption::run(ctx.clone()),
        node_ipam::run(ctx.clone()),
        node_lifecycle::run(ctx.clone()),
        service_lb::run(ctx.clone()),
        clusterrole_aggregation::run(ctx.clone()),
    );
}

/// A spawned task that ends when its handle is dropped.
pub(crate) struct AbortOnDrop<T>(pub(crate) tokio::task::JoinHandle<T>);

impl<T> AbortOnDrop<T> {
    pub(crate) async fn wait(&mut self) -> Result<T, tokio::task::JoinError> {
        (&mut self.0).await
    }
}

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Drops an object's managedFields before it enters a cache: no controller reads them, and they
/// are the bulk of a pod in memory (upstream's informers strip them the same way).
pub(crate) fn strip_managed_fields<K: kube::Resource>(obj: &mut K) {
    obj.meta_mut().managed_fields = None;
}
