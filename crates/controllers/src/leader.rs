//! Leader election on a coordination.k8s.io Lease, as client-go's leaderelection does: one
//! holder at a time renews the Lease; a candidate takes it over only after it expired. The work
//! runs only while the lease is held and is stopped when a renewal deadline passes.

use std::future::Future;
use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use kube::api::{Api, ObjectMeta, PostParams};

/// Timing of an election (upstream defaults: 15 s lease, 10 s renew deadline, 2 s retry).
#[derive(Clone, Debug)]
pub struct Timing {
    pub lease_duration: Duration,
    pub renew_deadline: Duration,
    pub retry_period: Duration,
}

impl Default for Timing {
    fn default() -> Self {
        Timing {
            lease_duration: Duration::from_secs(15),
            renew_deadline: Duration::from_secs(10),
            retry_period: Duration::from_secs(2),
        }
    }
}

pub struct LeaderElection {
    api: Api<Lease>,
    name: String,
    identity: String,
    timing: Timing,
}

impl LeaderElection {
    /// An election on Lease `kube-system/<name>` for candidate `identity`.
    pub fn new(client: kube::Client, name: &str, identity: &str, timing: Timing) -> Self {
        LeaderElection {
            api: Api::namespaced(client, "kube-system"),
            name: name.to_string(),
            identity: identity.to_string(),
            timing,
        }
    }

    /// Run `work` whenever this candidate leads, for ever: acquire, run, renew; on a missed
    /// renewal deadline stop the work and campaign again.
    pub async fn run<F, Fut>(self, mut work: F)
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = ()> + Send + 'static,
    {
        loop {
            while !self.try_acquire_or_renew().await {
                tokio::time::sleep(self.timing.retry_period).await;
            }
            tracing::info!(lease = %self.name, identity = %self.identity, "became leader");
            let task = tokio::spawn(work());
            let mut last_renew = Instant::now();
            loop {
                tokio::time::sleep(self.timing.retry_period).await;
                if self.try_acquire_or_renew().await {
                    last_renew = Instant::now();
                } else if last_renew.elapsed() > self.timing.renew_deadline {
                    break;
                }
            }
            task.abort();
            tracing::warn!(lease = %self.name, identity = %self.identity, "lost leadership; stopped");
        }
    }

    /// One attempt: true when this candidate holds the lease afterwards.
    pub async fn try_acquire_or_renew(&self) -> bool {
        let now = MicroTime(jiff::Timestamp::now());
        let duration_secs = self.timing.lease_duration.as_secs() as i32;
        let current = match self.api.get_opt(&self.name).await {
            Ok(c) => c,
            Err(e) => {
                tracing::debug!(error = %e, "reading the leader lease failed");
                return false;
            }
        };
        let Some(mut lease) = current else {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(self.name.clone()),
                    namespace: Some("kube-system".into()),
                    ..ObjectMeta::default()
                },
                spec: Some(LeaseSpec {
                    holder_identity: Some(self.identity.clone()),
                    lease_duration_seconds: Some(duration_secs),
                    acquire_time: Some(now.clone()),
                    renew_time: Some(now),
                    lease_transitions: Some(0),
                    ..LeaseSpec::default()
                }),
            };
            return self
                .api
                .create(&PostParams::default(), &lease)
                .await
                .is_ok();
        };
        let spec = lease.spec.get_or_insert_with(LeaseSpec::default);
        let mine = spec.holder_identity.as_deref() == Some(self.identity.as_str());
        if !mine {
            let held_for = spec
                .lease_duration_seconds
                .map(|s| jiff::SignedDuration::from_secs(s.max(0) as i64))
                .unwrap_or_default();
            let expired = match (&spec.renew_time, spec.holder_identity.as_deref()) {
                (Some(renew), Some(holder)) if !holder.is_empty() => renew
                    .0
                    .checked_add(held_for)
                    .map(|end| end < now.0)
                    .unwrap_or(true),
                _ => true,
            };
            if !expired {
                return false;
            }
            spec.holder_identity = Some(self.identity.clone());
            spec.acquire_time = Some(now.clone());
            spec.lease_transitions = Some(spec.lease_transitions.unwrap_or(0) + 1);
        }
        spec.renew_time = Some(now);
        spec.lease_duration_seconds = Some(duration_secs);
        // The replace carries the resourceVersion we read: a concurrent candidate loses with 409.
        self.api
            .replace(&self.name, &PostParams::default(), &lease)
            .await
            .is_ok()
    }
}
