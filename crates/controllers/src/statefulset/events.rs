//! Events the workload controllers publish, as core/v1 Events (what `kubectl describe` and
//! `kubectl get events` read), with upstream's event-correlator habit of counting a repeat of
//! the same reason and message on one Event instead of writing a new one.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Event, EventSource, ObjectReference};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::json;

/// How long a repeat is counted on the first Event.
const SERIES_WINDOW: Duration = Duration::from_secs(600);
/// Series remembered at most (oldest forgotten first).
const MAX_SERIES: usize = 4096;

struct Series {
    namespace: String,
    name: String,
    count: i32,
    first: Instant,
}

/// Publishes Events for one controller (`source.component` / `reportingComponent`).
pub(crate) struct Events {
    client: kube::Client,
    component: String,
    series: Mutex<HashMap<(String, String, String), Series>>,
}

impl Events {
    pub(crate) fn new(client: kube::Client, component: &str) -> Self {
        Events {
            client,
            component: component.to_owned(),
            series: Mutex::new(HashMap::new()),
        }
    }

    pub(crate) async fn normal(&self, regarding: &ObjectReference, reason: &str, message: String) {
        self.publish("Normal", regarding, reason, message).await;
    }

    pub(crate) async fn warning(&self, regarding: &ObjectReference, reason: &str, message: String) {
        self.publish("Warning", regarding, reason, message).await;
    }

    /// Writes the Event; failures are logged, never returned (events are best effort).
    async fn publish(
        &self,
        type_: &str,
        regarding: &ObjectReference,
        reason: &str,
        message: String,
    ) {
        let key = (
            regarding.uid.clone().unwrap_or_default(),
            reason.to_owned(),
            message.clone(),
        );
        let now = Timestamp::now();
        let repeat = {
            let mut series = self.series.lock().unwrap_or_else(|p| p.into_inner());
            series.retain(|_, s| s.first.elapsed() < SERIES_WINDOW);
            series.get_mut(&key).map(|s| {
                s.count += 1;
                (s.namespace.clone(), s.name.clone(), s.count)
            })
        };
        if let Some((namespace, name, count)) = repeat {
            let api: Api<Event> = Api::namespaced(self.client.clone(), &namespace);
            let patch = json!({"count": count, "lastTimestamp": Time(now)});
            match api
                .patch(&name, &PatchParams::default(), &Patch::Merge(patch))
                .await
            {
                Ok(_) => return,
                Err(e) => tracing::debug!(error = %e, reason, "cannot count a repeated event"),
            }
        }
        // Events about cluster-scoped objects live in `default`, as upstream.
        let namespace = regarding
            .namespace
            .clone()
            .filter(|n| !n.is_empty())
            .unwrap_or_else(|| "default".into());
        let name = format!(
            "{}.{:x}",
            regarding.name.as_deref().unwrap_or(&self.component),
            now.as_nanosecond()
        );
        let event = Event {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                namespace: Some(namespace.clone()),
                ..ObjectMeta::default()
            },
            involved_object: regarding.clone(),
            reason: Some(reason.to_owned()),
            message: Some(message),
            type_: Some(type_.to_owned()),
            source: Some(EventSource {
                component: Some(self.component.clone()),
                host: None,
            }),
            first_timestamp: Some(Time(now)),
            last_timestamp: Some(Time(now)),
            count: Some(1),
            reporting_component: Some(self.component.clone()),
            reporting_instance: Some(self.component.clone()),
            ..Event::default()
        };
        let api: Api<Event> = Api::namespaced(self.client.clone(), &namespace);
        match api.create(&PostParams::default(), &event).await {
            Ok(_) => {
                let mut series = self.series.lock().unwrap_or_else(|p| p.into_inner());
                if series.len() >= MAX_SERIES {
                    if let Some(oldest) = series
                        .iter()
                        .min_by_key(|(_, s)| s.first)
                        .map(|(k, _)| k.clone())
                    {
                        series.remove(&oldest);
                    }
                }
                series.insert(
                    key,
                    Series {
                        namespace,
                        name,
                        count: 1,
                        first: Instant::now(),
                    },
                );
            }
            Err(e) => tracing::debug!(error = %e, reason, "cannot publish event"),
        }
    }
}
