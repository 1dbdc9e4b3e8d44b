//! Events as the upstream controllers write them: core/v1 `Event` objects whose
//! `involvedObject` is the object acted on, so `kubectl describe` and `kubectl get events` show
//! them.
//!
//! kube-runtime's `Recorder` writes `events.k8s.io/v1` Events and merges events that differ only
//! in their note into one series (keeping the first note), which would turn "Scaled up replica
//! set web-x to 2 from 1" into a repeat of "... to 1". Upstream controllers still use the core/v1
//! recorder, so this one does too.

use k8s_openapi::api::core::v1::{Event, EventSource, ObjectReference};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, PostParams};
use kube::Resource;

pub(crate) const NORMAL: &str = "Normal";
pub(crate) const WARNING: &str = "Warning";

/// Writes core/v1 Events on behalf of one controller (`source.component`).
#[derive(Clone)]
pub(crate) struct EventRecorder {
    client: kube::Client,
    component: &'static str,
}

impl EventRecorder {
    pub(crate) fn new(client: kube::Client, component: &'static str) -> Self {
        EventRecorder { client, component }
    }

    /// Records an event about `obj`. Failures are logged, never returned: an event is a side
    /// note, not part of the reconcile.
    pub(crate) async fn record<K>(&self, obj: &K, type_: &str, reason: &str, message: String)
    where
        K: Resource<DynamicType = ()>,
    {
        let meta = obj.meta();
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
        if let Err(e) = api.create(&PostParams::default(), &event).await {
            tracing::debug!(error = %e, object = %name, reason, "cannot record event");
        }
    }
}
