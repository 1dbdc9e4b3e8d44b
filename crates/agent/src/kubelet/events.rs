//! core/v1 Events about pods (what `kubectl describe pod` shows), source `kubelet` on this
//! node. A repeat of the same event bumps the count of the first one instead of piling up.

use std::collections::HashMap;
use std::sync::Mutex;

use k8s_openapi::api::core::v1::{Event, EventSource, ObjectReference, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::json;

/// (pod uid, reason, message) of an event.
type EventKey = (String, String, String);
/// (event namespace, event name, count) of the recorded event.
type Recorded = (String, String, i32);

pub struct Recorder {
    client: kube::Client,
    node: String,
    /// (pod uid, reason, message) → (event namespace, event name, count).
    seen: Mutex<HashMap<EventKey, Recorded>>,
}

impl Recorder {
    pub fn new(client: kube::Client, node: &str) -> Recorder {
        Recorder {
            client,
            node: node.to_string(),
            seen: Mutex::new(HashMap::new()),
        }
    }

    /// Records an event about `pod` (and `container`, as its fieldPath) in the background.
    pub fn pod(
        &self,
        pod: &Pod,
        container: Option<&str>,
        warning: bool,
        reason: &str,
        message: &str,
    ) {
        let ns = pod
            .metadata
            .namespace
            .clone()
            .unwrap_or_else(|| "default".into());
        let uid = pod.metadata.uid.clone().unwrap_or_default();
        let key = (uid.clone(), reason.to_string(), message.to_string());
        let previous = {
            let mut seen = self.seen.lock().expect("events lock");
            if seen.len() > 4096 {
                seen.clear();
            }
            let entry = seen.get_mut(&key).map(|e| {
                e.2 += 1;
                e.clone()
            });
            entry
        };
        let client = self.client.clone();
        let now = Timestamp::now();
        if let Some((ns, name, count)) = previous {
            tokio::spawn(async move {
                let api: Api<Event> = Api::namespaced(client, &ns);
                let patch = json!({"count": count, "lastTimestamp": Time(now)});
                if let Err(e) = api
                    .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
                    .await
                {
                    tracing::debug!(error = %e, "cannot update an event");
                }
            });
            return;
        }
        let pod_name = pod.metadata.name.clone().unwrap_or_default();
        let name = format!(
            "{pod_name}.{:x}",
            now.as_nanosecond() as u64 ^ (u64::from(rand_u16()) << 48)
        );
        self.seen
            .lock()
            .expect("events lock")
            .insert(key, (ns.clone(), name.clone(), 1));
        let event = Event {
            metadata: ObjectMeta {
                name: Some(name),
                namespace: Some(ns.clone()),
                ..Default::default()
            },
            involved_object: ObjectReference {
                api_version: Some("v1".into()),
                kind: Some("Pod".into()),
                name: Some(pod_name),
                namespace: Some(ns.clone()),
                uid: Some(uid),
                resource_version: pod.metadata.resource_version.clone(),
                field_path: container.map(|c| format!("spec.containers{{{c}}}")),
            },
            reason: Some(reason.into()),
            message: Some(message.into()),
            type_: Some(if warning { "Warning" } else { "Normal" }.into()),
            source: Some(EventSource {
                component: Some("kubelet".into()),
                host: Some(self.node.clone()),
            }),
            reporting_component: Some("kubelet".into()),
            reporting_instance: Some(self.node.clone()),
            first_timestamp: Some(Time(now)),
            last_timestamp: Some(Time(now)),
            count: Some(1),
            ..Default::default()
        };
        tokio::spawn(async move {
            let api: Api<Event> = Api::namespaced(client, &ns);
            if let Err(e) = api.create(&PostParams::default(), &event).await {
                tracing::debug!(error = %e, "cannot record an event");
            }
        });
    }
}

fn rand_u16() -> u16 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u8(0);
    h.finish() as u16
}
