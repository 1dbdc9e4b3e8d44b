//! kubelab's scheduler: filter -> score -> bind, as pure functions over k8s-openapi types plus a
//! thin loop that watches unscheduled pods and binds them through the `pods/binding`
//! subresource. An API client like any other; it never touches the store.

/// Scheduler settings.
#[derive(Clone, Debug)]
pub struct Config {
    /// Pods whose `spec.schedulerName` is this are ours.
    pub scheduler_name: String,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            scheduler_name: "default-scheduler".into(),
        }
    }
}

/// Schedule pods until the process ends.
pub async fn run(_client: kube::Client, _config: Config) {}
