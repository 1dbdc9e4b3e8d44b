//! What the scheduler tells the API about its decisions, off the scheduling path: Events
//! (Scheduled, FailedScheduling; repeats of one message counted on one Event like upstream's
//! event correlator) and the PodScheduled=False condition of pods no node fits.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use futures::stream::{FuturesUnordered, StreamExt};
use k8s_openapi::api::core::v1::{Event, EventSource, ObjectReference, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::json;
use tokio::sync::mpsc;

/// Requests the reporter has in flight at most.
const CONCURRENCY: usize = 8;
/// How long a repeated event is folded into the first one.
const SERIES_WINDOW: Duration = Duration::from_secs(600);

/// The pod an event or condition is about.
#[derive(Clone, Debug)]
pub struct PodRef {
    pub namespace: String,
    pub name: String,
    pub uid: String,
    pub resource_version: Option<String>,
}

impl PodRef {
    pub fn new(pod: &Pod) -> PodRef {
        PodRef {
            namespace: pod.metadata.namespace.clone().unwrap_or_default(),
            name: pod.metadata.name.clone().unwrap_or_default(),
            uid: pod.metadata.uid.clone().unwrap_or_default(),
            resource_version: pod.metadata.resource_version.clone(),
        }
    }
}

pub enum Report {
    /// Normal Scheduled: "Successfully assigned <ns>/<pod> to <node>".
    Scheduled { pod: PodRef, node: String },
    /// Warning FailedScheduling with `message`; with `condition`, also write
    /// PodScheduled=False/Unschedulable (its lastTransitionTime given).
    Failed {
        pod: PodRef,
        message: String,
        condition: Option<Timestamp>,
    },
}

/// Handle to the reporter task.
#[derive(Clone)]
pub struct Reporter {
    tx: mpsc::UnboundedSender<Report>,
}

impl Reporter {
    pub fn spawn(client: kube::Client, component: String) -> Reporter {
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(run(client, component, rx));
        Reporter { tx }
    }

    pub fn send(&self, report: Report) {
        let _ = self.tx.send(report);
    }
}

/// An event already written, to count repeats on.
struct Series {
    name: String,
    count: i32,
    first: Instant,
}

fn instance_name(component: &str) -> String {
    let host = std::env::var("HOSTNAME")
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "kubelab".into());
    format!("{component}-{host}")
}

async fn run(client: kube::Client, component: String, mut rx: mpsc::UnboundedReceiver<Report>) {
    let instance = instance_name(&component);
    let mut series: HashMap<(String, String, String), Series> = HashMap::new();
    let mut in_flight = FuturesUnordered::new();
    let mut last_prune = Instant::now();
    loop {
        tokio::select! {
            report = rx.recv(), if in_flight.len() < CONCURRENCY => {
                let Some(report) = report else { break };
                if last_prune.elapsed() > SERIES_WINDOW {
                    series.retain(|_, s| s.first.elapsed() < SERIES_WINDOW);
                    last_prune = Instant::now();
                }
                let (pod, type_, reason, action, message, condition) = match report {
                    Report::Scheduled { pod, node } => {
                        let message = format!("Successfully assigned {}/{} to {node}", pod.namespace, pod.name);
                        (pod, "Normal", "Scheduled", "Binding", message, None)
                    }
                    Report::Failed { pod, message, condition } => {
                        (pod, "Warning", "FailedScheduling", "Scheduling", message, condition)
                    }
                };
                if let Some(transition) = condition {
                    in_flight.push(tokio::spawn(patch_condition(client.clone(), pod.clone(), message.clone(), transition)));
                }
                // A pod is scheduled once: only failures repeat.
                let key = (type_ == "Warning").then(|| (pod.uid.clone(), reason.to_string(), message.clone()));
                let now = Timestamp::now();
                let events: Api<Event> = Api::namespaced(client.clone(), &pod.namespace);
                match key.as_ref().and_then(|k| series.get_mut(k)) {
                    Some(s) if s.first.elapsed() < SERIES_WINDOW => {
                        s.count += 1;
                        let patch = json!({"count": s.count, "lastTimestamp": Time(now)});
                        let name = s.name.clone();
                        in_flight.push(tokio::spawn(async move {
                            if let Err(e) = events.patch(&name, &PatchParams::default(), &Patch::Merge(&patch)).await {
                                tracing::debug!(error = %e, event = %name, "cannot update event");
                            }
                        }));
                    }
                    _ => {
                        let name = format!("{}.{:x}", pod.name, now.as_nanosecond());
                        if let Some(key) = key {
                            series.insert(key, Series { name: name.clone(), count: 1, first: Instant::now() });
                        }
                        let event = Event {
                            metadata: ObjectMeta {
                                name: Some(name.clone()),
                                namespace: Some(pod.namespace.clone()),
                                ..ObjectMeta::default()
                            },
                            involved_object: ObjectReference {
                                api_version: Some("v1".into()),
                                kind: Some("Pod".into()),
                                namespace: Some(pod.namespace.clone()),
                                name: Some(pod.name.clone()),
                                uid: Some(pod.uid.clone()),
                                resource_version: pod.resource_version.clone(),
                                field_path: None,
                            },
                            reason: Some(reason.into()),
                            message: Some(message),
                            type_: Some(type_.into()),
                            action: Some(action.into()),
                            source: Some(EventSource { component: Some(component.clone()), host: None }),
                            reporting_component: Some(component.clone()),
                            reporting_instance: Some(instance.clone()),
                            first_timestamp: Some(Time(now)),
                            last_timestamp: Some(Time(now)),
                            count: Some(1),
                            ..Event::default()
                        };
                        in_flight.push(tokio::spawn(async move {
                            if let Err(e) = events.create(&PostParams::default(), &event).await {
                                tracing::debug!(error = %e, event = %name, "cannot create event");
                            }
                        }));
                    }
                }
            }
            Some(_) = in_flight.next(), if !in_flight.is_empty() => {}
        }
    }
}

/// PodScheduled=False, reason Unschedulable, through a strategic merge patch of the status
/// (conditions merge by type, like upstream's two-way patch).
async fn patch_condition(
    client: kube::Client,
    pod: PodRef,
    message: String,
    transition: Timestamp,
) {
    let pods: Api<Pod> = Api::namespaced(client, &pod.namespace);
    let patch = json!({
        "status": {"conditions": [{
            "type": "PodScheduled",
            "status": "False",
            "reason": "Unschedulable",
            "message": message,
            "lastProbeTime": null,
            "lastTransitionTime": Time(transition),
        }]}
    });
    match pods
        .patch_status(
            &pod.name,
            &PatchParams::default(),
            &Patch::Strategic(&patch),
        )
        .await
    {
        Ok(_) => {}
        Err(kube::Error::Api(e)) if e.code == 404 || e.code == 409 => {}
        Err(e) => {
            tracing::warn!(error = %e, pod = %pod.name, namespace = %pod.namespace, "cannot set the PodScheduled condition")
        }
    }
}
