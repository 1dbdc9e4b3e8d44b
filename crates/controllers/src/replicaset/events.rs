//! Events as the upstream controllers write them: core/v1 `Event` objects whose
//! `involvedObject` is the object acted on, so `kubectl describe` and `kubectl get events` show
//! them.
//!
//! kube-runtime's `Recorder` writes `events.k8s.io/v1` Events and merges events that differ only
//! in their note into one series (keeping the first note), which would turn "Scaled up replica
//! set web-x to 2 from 1" into a repeat of "... to 1". Upstream controllers still use the core/v1
//! recorder, so this one does too.
//!
//! Like client-go's recorder, it drops events about one object beyond a burst of 25, refilled at
//! one per five minutes (`EventSourceObjectSpamFilter`): scaling a ReplicaSet to 3,000 replicas
//! writes 25 SuccessfulCreate events, not 3,000. Events are written in the background; a
//! reconcile never waits for them.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Event, EventSource, ObjectReference};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, PostParams};
use kube::Resource;

pub(crate) const NORMAL: &str = "Normal";
pub(crate) const WARNING: &str = "Warning";

/// Events one object may get at once (client-go `defaultSpamBurst`).
const SPAM_BURST: f64 = 25.0;
/// Refill of that allowance (client-go `defaultSpamQPS`: one per five minutes).
const SPAM_REFILL_PER_SECOND: f64 = 1.0 / 300.0;
/// Beyond this many tracked objects, the ones with a full allowance are forgotten.
const SPAM_TRACKED: usize = 4096;

struct Allowance {
    tokens: f64,
    at: Instant,
}

/// Writes core/v1 Events on behalf of one controller (`source.component`).
#[derive(Clone)]
pub(crate) struct EventRecorder {
    client: kube::Client,
    component: &'static str,
    allowances: Arc<Mutex<HashMap<String, Allowance>>>,
}

impl EventRecorder {
    pub(crate) fn new(client: kube::Client, component: &'static str) -> Self {
        EventRecorder {
            client,
            component,
            allowances: Arc::default(),
        }
    }

    /// Whether one more event about the object keyed `key` may be written now.
    fn allow(&self, key: String, now: Instant) -> bool {
        let mut all = self.allowances.lock().unwrap_or_else(|e| e.into_inner());
        if all.len() > SPAM_TRACKED {
            let full = Duration::from_secs_f64(SPAM_BURST / SPAM_REFILL_PER_SECOND);
            all.retain(|_, a| now.duration_since(a.at) < full);
        }
        let a = all.entry(key).or_insert(Allowance {
            tokens: SPAM_BURST,
            at: now,
        });
        let refill = now.duration_since(a.at).as_secs_f64() * SPAM_REFILL_PER_SECOND;
        a.tokens = (a.tokens + refill).min(SPAM_BURST);
        a.at = now;
        if a.tokens >= 1.0 {
            a.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    /// Records an event about `obj` in the background. Failures are logged, never returned: an
    /// event is a side note, not part of the reconcile.
    pub(crate) fn record<K>(&self, obj: &K, type_: &str, reason: &str, message: String)
    where
        K: Resource<DynamicType = ()>,
    {
        let meta = obj.meta();
        let key = format!(
            "{}/{}/{}",
            K::kind(&()),
            meta.namespace.as_deref().unwrap_or(""),
            meta.uid.as_deref().or(meta.name.as_deref()).unwrap_or("")
        );
        if !self.allow(key, Instant::now()) {
            tracing::debug!(reason, %message, "event dropped (too many about one object)");
            return;
        }
        let namespace = meta.namespace.clone().unwrap_or_else(|| "default".into());
        let name = meta.name.clone().unwrap_or_default();
        let now = Timestamp::now();
        let event = Event {
            metadata: ObjectMeta {
                name: Some(format!("{name}.{:x}", now.as_nanosecond())),
                namespace: Some(namespace.clone()),
                ..ObjectMeta::default()
            },
            involved_object: ObjectReference {
                api_version: Some(K::api_version(&()).into_owned()),
                kind: Some(K::kind(&()).into_owned()),
                name: Some(name.clone()),
                namespace: meta.namespace.clone(),
                uid: meta.uid.clone(),
                resource_version: meta.resource_version.clone(),
                ..ObjectReference::default()
            },
            reason: Some(reason.into()),
            message: Some(message),
            type_: Some(type_.into()),
            source: Some(EventSource {
                component: Some(self.component.into()),
                host: None,
            }),
            first_timestamp: Some(Time(now)),
            last_timestamp: Some(Time(now)),
            count: Some(1),
            reporting_component: Some(self.component.into()),
            reporting_instance: Some(String::new()),
            ..Event::default()
        };
        let api: Api<Event> = Api::namespaced(self.client.clone(), &namespace);
        let reason = reason.to_string();
        tokio::spawn(async move {
            if let Err(e) = api.create(&PostParams::default(), &event).await {
                tracing::debug!(error = %e, object = %name, %reason, "cannot record event");
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn one_object_gets_a_burst_then_one_per_five_minutes() {
        let client =
            kube::Client::try_from(kube::Config::new("http://127.0.0.1:1".parse().unwrap()))
                .unwrap();
        let r = EventRecorder::new(client, "test");
        let t0 = Instant::now();
        let allowed = (0..40).filter(|_| r.allow("a".into(), t0)).count();
        assert_eq!(allowed, 25);
        assert!(
            r.allow("b".into(), t0),
            "another object has its own allowance"
        );
        assert!(!r.allow("a".into(), t0 + Duration::from_secs(299)));
        assert!(r.allow("a".into(), t0 + Duration::from_secs(301)));
    }
}
