//! kubelab's scheduler: filter -> score -> bind, as pure functions over k8s-openapi types plus a
//! thin loop that watches unscheduled pods and binds them through the `pods/binding`
//! subresource. An API client like any other; it never touches the store.
//!
//! - [`filters`] and [`scores`] are upstream's default plugins that matter on a dev cluster
//!   (NodeUnschedulable, NodeName, TaintToleration, NodeAffinity, NodePorts, NodeResourcesFit,
//!   InterPodAffinity; LeastAllocated, BalancedAllocation, preferred node affinity,
//!   PreferNoSchedule taints, spreading of one controller's pods), over the [`cache`] of nodes
//!   and the pods assigned to them.
//! - [`framework`] runs one attempt and words a failure like upstream
//!   ("0/3 nodes are available: 3 Insufficient cpu. preemption: ...").
//! - [`queue`] holds pending pods: priority order, backoff, retry on cluster changes.
//! - [`scheduler`] is the loop: watches, assume-then-bind with bounded concurrency, reporting.
//!
//! Not here: preemption (reported as upstream would, never performed), volume topology, pod
//! topology spread constraints, extenders, multiple profiles.

use std::time::Duration;

pub mod cache;
pub mod filters;
pub mod framework;
pub mod quantity;
pub mod queue;
pub mod reporter;
pub mod resources;
pub mod scheduler;
pub mod scores;
pub mod selectors;

/// Scheduler settings.
#[derive(Clone, Debug)]
pub struct Config {
    /// Pods whose `spec.schedulerName` is this are ours (also the Events' reporting component).
    pub scheduler_name: String,
    /// Bindings in flight at most.
    pub parallelism: usize,
    /// Backoff after the first failed attempt; doubles per attempt up to `max_backoff`.
    pub initial_backoff: Duration,
    pub max_backoff: Duration,
    /// An unschedulable pod is retried at the latest after this long, cluster changes or not.
    pub unschedulable_flush: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            scheduler_name: "default-scheduler".into(),
            parallelism: 16,
            initial_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(10),
            unschedulable_flush: Duration::from_secs(10),
        }
    }
}

/// Schedule pods until the process ends.
pub async fn run(client: kube::Client, config: Config) {
    scheduler::run(client, config).await
}

#[cfg(test)]
mod tests;
