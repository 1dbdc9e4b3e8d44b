//! Node lifecycle (upstream's node lifecycle and taint-eviction controllers):
//!
//! - **health**: a node is alive while its Lease in `kube-node-lease` or its Ready condition's
//!   heartbeat keeps changing. When neither changed for `Config.node_monitor_grace_period`
//!   (measured on this process's clock, as upstream does, so clock skew does not matter), every
//!   node condition turns Unknown ("Kubelet stopped posting node status."), and the pods on the
//!   node get Ready=False.
//! - **taints**: Ready=Unknown → `node.kubernetes.io/unreachable` NoExecute and NoSchedule,
//!   Ready=False → `node.kubernetes.io/not-ready` (both effects); pressure conditions and
//!   `spec.unschedulable` get their NoSchedule taints. They go away when the cause does.
//! - **taint-based eviction**: a pod on a node with a NoExecute taint it does not tolerate is
//!   deleted at once; one tolerating every such taint is deleted `tolerationSeconds` (the least
//!   of its matching tolerations) after the taint was added; without tolerationSeconds it stays.
//!
//! One kube-runtime Controller over Nodes, also triggered by Lease changes; pods come from the
//! controllers' shared pod cache ([`crate::informer`]). A node is reconciled again when its
//! grace period would run out and, while it carries NoExecute taints, every monitor period (so
//! pods that land on it later are evicted).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Node, NodeCondition, Pod, Taint, Toleration};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, Time};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams, Patch, PatchParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::watcher;
use kube::{Resource, ResourceExt};
use serde_json::json;

use crate::{Context, Error, ERROR_REQUEUE};

pub const TAINT_UNREACHABLE: &str = "node.kubernetes.io/unreachable";
pub const TAINT_NOT_READY: &str = "node.kubernetes.io/not-ready";
pub const TAINT_UNSCHEDULABLE: &str = "node.kubernetes.io/unschedulable";
const LEASE_NAMESPACE: &str = "kube-node-lease";
/// Condition types whose status=True means a NoSchedule taint (upstream
/// nodeConditionToTaintKeyStatusMap, besides Ready).
const PRESSURE_TAINTS: [(&str, &str); 4] = [
    ("MemoryPressure", "node.kubernetes.io/memory-pressure"),
    ("DiskPressure", "node.kubernetes.io/disk-pressure"),
    ("PIDPressure", "node.kubernetes.io/pid-pressure"),
    (
        "NetworkUnavailable",
        "node.kubernetes.io/network-unavailable",
    ),
];
/// Every taint key this controller owns.
const MANAGED_TAINTS: [&str; 7] = [
    TAINT_UNREACHABLE,
    TAINT_NOT_READY,
    TAINT_UNSCHEDULABLE,
    "node.kubernetes.io/memory-pressure",
    "node.kubernetes.io/disk-pressure",
    "node.kubernetes.io/pid-pressure",
    "node.kubernetes.io/network-unavailable",
];
/// Evictions remembered (not repeated) for this long, while the cache catches up.
const EVICTION_MEMORY: Duration = Duration::from_secs(60);

/// What this process observed of one node's heartbeats.
struct Health {
    lease_renew: Option<MicroTime>,
    ready_heartbeat: Option<Time>,
    /// When one of the two last changed, on this process's clock.
    probe: Instant,
    /// The Ready status seen at the previous reconcile (pods are marked NotReady once, when
    /// it leaves True).
    last_ready: Option<String>,
    /// When NoExecute taints without timeAdded were first seen.
    no_execute_since: Option<Timestamp>,
}

struct State {
    client: kube::Client,
    grace: Duration,
    /// Grace for a node that never posted a Ready condition (upstream: 60 s vs 40 s).
    startup_grace: Duration,
    monitor_period: Duration,
    pods: Store<Pod>,
    health: Mutex<HashMap<String, Health>>,
    /// Pod uid -> when its eviction was issued.
    evicted: Mutex<HashMap<String, Instant>>,
    recorder: Recorder,
}

pub async fn run(ctx: Context) {
    let client = ctx.client.clone();
    let grace = ctx.config.node_monitor_grace_period;
    let state = Arc::new(State {
        client: client.clone(),
        grace,
        startup_grace: grace.mul_f64(1.5),
        monitor_period: (grace / 8).clamp(Duration::from_millis(100), Duration::from_secs(5)),
        pods: ctx.pods.store(),
        health: Mutex::new(HashMap::new()),
        evicted: Mutex::new(HashMap::new()),
        recorder: Recorder::new(
            client.clone(),
            Reporter {
                controller: "node-controller".into(),
                instance: None,
            },
        ),
    });
    Controller::new(Api::<Node>::all(client.clone()), watcher::Config::default())
        .watches(
            Api::<Lease>::namespaced(client, LEASE_NAMESPACE),
            watcher::Config::default(),
            |lease: Lease| Some(ObjectRef::<Node>::new(&lease.name_any())),
        )
        .run(
            reconcile,
            |node, err, _| {
                tracing::warn!(node = %node.name_any(), error = %err, "node lifecycle reconcile failed");
                Action::requeue(ERROR_REQUEUE)
            },
            state,
        )
        .for_each(|result| {
            if let Err(e) = result {
                tracing::debug!(error = %e, "node lifecycle controller");
            }
            futures::future::ready(())
        })
        .await;
}

fn condition<'a>(node: &'a Node, type_: &str) -> Option<&'a NodeCondition> {
    node.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == type_)
}

async fn reconcile(node: Arc<Node>, state: Arc<State>) -> Result<Action, Error> {
    if node.metadata.deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let name = node.name_any();
    let leases: Api<Lease> = Api::namespaced(state.client.clone(), LEASE_NAMESPACE);
    let lease_renew = leases
        .get_opt(&name)
        .await?
        .and_then(|l| l.spec)
        .and_then(|s| s.renew_time);
    let ready = condition(&node, "Ready");
    let ready_heartbeat = ready.and_then(|c| c.last_heartbeat_time.clone());
    let now = Instant::now();
    let (since_probe, first_sight) = {
        let mut health = state.health.lock().unwrap_or_else(|e| e.into_inner());
        let mut first_sight = false;
        let entry = health.entry(name.clone()).or_insert_with(|| {
            first_sight = true;
            Health {
                lease_renew: lease_renew.clone(),
                ready_heartbeat: ready_heartbeat.clone(),
                probe: now,
                last_ready: None,
                no_execute_since: None,
            }
        });
        if entry.lease_renew != lease_renew || entry.ready_heartbeat != ready_heartbeat {
            entry.lease_renew = lease_renew;
            entry.ready_heartbeat = ready_heartbeat;
            entry.probe = now;
        }
        (now.duration_since(entry.probe), first_sight)
    };
    if first_sight {
        publish(
            &state,
            &node.object_ref(&()),
            EventType::Normal,
            "RegisteredNode",
            format!("Node {name} event: Registered Node {name} in Controller"),
        )
        .await;
    }

    // Health: no heartbeat for the grace period → every condition Unknown.
    let grace = if ready.is_none() {
        state.startup_grace
    } else {
        state.grace
    };
    let mut ready_status = ready
        .map(|c| c.status.clone())
        .unwrap_or_else(|| "Unknown".into());
    if since_probe >= grace && ready.is_none_or(|c| c.status != "Unknown") {
        match mark_unknown(&state, &node).await? {
            true => {
                tracing::info!(node = %name, "node stopped posting status: Ready=Unknown");
                ready_status = "Unknown".into();
            }
            false => return Ok(Action::requeue(Duration::from_millis(200))),
        }
    }

    // Pods lose readiness once, when the node leaves Ready=True.
    let last_ready = state
        .health
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .get(&name)
        .and_then(|h| h.last_ready.clone());
    if ready_status != "True" && last_ready.as_deref() == Some("True") {
        publish(
            &state,
            &node.object_ref(&()),
            EventType::Normal,
            "NodeNotReady",
            format!("Node {name} status is now: NodeNotReady"),
        )
        .await;
        mark_pods_not_ready(&state, &name).await?;
    }
    if let Some(h) = state
        .health
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .get_mut(&name)
    {
        h.last_ready = Some(ready_status.clone());
    }

    // Taints follow the conditions.
    let taints = desired_taints(&node, &ready_status, Timestamp::now());
    let current = node
        .spec
        .as_ref()
        .and_then(|s| s.taints.clone())
        .unwrap_or_default();
    if !same_taints(&current, &taints) {
        let patch = json!({
            "metadata": {"resourceVersion": node.metadata.resource_version},
            "spec": {"taints": if taints.is_empty() { serde_json::Value::Null } else { json!(taints) }},
        });
        let api: Api<Node> = Api::all(state.client.clone());
        match api
            .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            Ok(_) => tracing::info!(node = %name, ready = %ready_status, "node taints updated"),
            Err(kube::Error::Api(e)) if e.code == 409 || e.code == 404 => {}
            Err(e) => return Err(e.into()),
        }
    }

    // Eviction by NoExecute taints.
    let no_execute: Vec<Taint> = taints
        .into_iter()
        .filter(|t| t.effect == "NoExecute")
        .collect();
    let mut next = None;
    if !no_execute.is_empty() {
        next = Some(state.monitor_period);
        if let Some(wait) = evict_pods(&state, &name, &no_execute).await? {
            next = Some(wait.min(state.monitor_period));
        }
    } else if let Some(h) = state
        .health
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .get_mut(&name)
    {
        h.no_execute_since = None;
    }

    // Come back when the grace period would run out.
    if ready_status != "Unknown" {
        let left = grace.saturating_sub(since_probe) + Duration::from_millis(50);
        next = Some(next.map_or(left, |n: Duration| n.min(left)));
    }
    Ok(match next {
        Some(after) => Action::requeue(after),
        None => Action::await_change(),
    })
}

/// Writes Unknown on every node condition; false when the node changed meanwhile.
async fn mark_unknown(state: &State, node: &Node) -> Result<bool, Error> {
    let now = Time(Timestamp::now());
    let mut conditions: Vec<NodeCondition> = node
        .status
        .as_ref()
        .and_then(|s| s.conditions.clone())
        .unwrap_or_default();
    let created = node.metadata.creation_timestamp.clone();
    for type_ in ["MemoryPressure", "DiskPressure", "PIDPressure", "Ready"] {
        if !conditions.iter().any(|c| c.type_ == type_) {
            conditions.push(NodeCondition {
                type_: type_.into(),
                status: "Unknown".into(),
                reason: Some("NodeStatusNeverUpdated".into()),
                message: Some("Kubelet never posted node status.".into()),
                last_heartbeat_time: created.clone(),
                last_transition_time: Some(now.clone()),
            });
        }
    }
    for c in conditions.iter_mut() {
        if c.reason.as_deref() == Some("NodeStatusNeverUpdated") {
            continue;
        }
        if c.status != "Unknown" {
            c.status = "Unknown".into();
            c.last_transition_time = Some(now.clone());
        }
        c.reason = Some("NodeStatusUnknown".into());
        c.message = Some("Kubelet stopped posting node status.".into());
    }
    let patch = json!({
        "metadata": {"resourceVersion": node.metadata.resource_version},
        "status": {"conditions": conditions},
    });
    let api: Api<Node> = Api::all(state.client.clone());
    match api
        .patch_status(
            &node.name_any(),
            &PatchParams::default(),
            &Patch::Merge(&patch),
        )
        .await
    {
        Ok(_) => Ok(true),
        Err(kube::Error::Api(e)) if e.code == 409 || e.code == 404 => Ok(false),
        Err(e) => Err(e.into()),
    }
}

fn pods_on(state: &State, node: &str) -> Vec<Arc<Pod>> {
    state.pods.state_filter(|p| {
        p.spec.as_ref().and_then(|s| s.node_name.as_deref()) == Some(node)
            && p.metadata.deletion_timestamp.is_none()
    })
}

/// Ready=False on every pod of the node whose Ready is True (upstream MarkPodsNotReady).
async fn mark_pods_not_ready(state: &State, node: &str) -> Result<(), Error> {
    let now = Time(Timestamp::now());
    for pod in pods_on(state, node) {
        let ready = pod
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .and_then(|c| c.iter().find(|c| c.type_ == "Ready"));
        if ready.is_none_or(|c| c.status != "True") {
            continue;
        }
        let patch = json!({"status": {"conditions": [
            {"type": "Ready", "status": "False", "lastTransitionTime": now},
        ]}});
        let api: Api<Pod> =
            Api::namespaced(state.client.clone(), &pod.namespace().unwrap_or_default());
        match api
            .patch_status(
                &pod.name_any(),
                &PatchParams::default(),
                &Patch::Strategic(&patch),
            )
            .await
        {
            Ok(_) => {}
            Err(kube::Error::Api(e)) if e.code == 404 => continue,
            Err(e) => return Err(e.into()),
        }
        publish(
            state,
            &pod.object_ref(&()),
            EventType::Warning,
            "NodeNotReady",
            "Node is not ready".into(),
        )
        .await;
    }
    Ok(())
}

/// The node's taints as its conditions want them: unmanaged taints stay as they are, managed
/// ones that stay keep their timeAdded.
pub fn desired_taints(node: &Node, ready_status: &str, now: Timestamp) -> Vec<Taint> {
    let current = node
        .spec
        .as_ref()
        .and_then(|s| s.taints.clone())
        .unwrap_or_default();
    let mut wanted: Vec<(&str, &str)> = Vec::new();
    match ready_status {
        "Unknown" => {
            wanted.push((TAINT_UNREACHABLE, "NoSchedule"));
            wanted.push((TAINT_UNREACHABLE, "NoExecute"));
        }
        "False" => {
            wanted.push((TAINT_NOT_READY, "NoSchedule"));
            wanted.push((TAINT_NOT_READY, "NoExecute"));
        }
        _ => {}
    }
    for (type_, key) in PRESSURE_TAINTS {
        if condition(node, type_).is_some_and(|c| c.status == "True") {
            wanted.push((key, "NoSchedule"));
        }
    }
    if node
        .spec
        .as_ref()
        .and_then(|s| s.unschedulable)
        .unwrap_or(false)
    {
        wanted.push((TAINT_UNSCHEDULABLE, "NoSchedule"));
    }
    let mut out: Vec<Taint> = current
        .iter()
        .filter(|t| !MANAGED_TAINTS.contains(&t.key.as_str()))
        .cloned()
        .collect();
    for (key, effect) in wanted {
        let existing = current
            .iter()
            .find(|t| t.key == key && t.effect == effect)
            .cloned();
        out.push(existing.unwrap_or_else(|| Taint {
            key: key.into(),
            effect: effect.into(),
            time_added: (effect == "NoExecute").then_some(Time(now)),
            value: None,
        }));
    }
    out
}

/// Same taints (key, effect, value), in any order.
fn same_taints(a: &[Taint], b: &[Taint]) -> bool {
    let key = |t: &Taint| (t.key.clone(), t.effect.clone(), t.value.clone());
    let mut a: Vec<_> = a.iter().map(key).collect();
    let mut b: Vec<_> = b.iter().map(key).collect();
    a.sort();
    b.sort();
    a == b
}

/// Whether `toleration` tolerates `taint` (upstream Toleration.ToleratesTaint).
pub fn tolerates(toleration: &Toleration, taint: &Taint) -> bool {
    if let Some(effect) = toleration.effect.as_deref().filter(|e| !e.is_empty()) {
        if effect != taint.effect {
            return false;
        }
    }
    let key = toleration.key.as_deref().unwrap_or("");
    if !key.is_empty() && key != taint.key {
        return false;
    }
    match toleration.operator.as_deref().unwrap_or("Equal") {
        "Exists" => true,
        "Equal" | "" => {
            !key.is_empty()
                && toleration.value.as_deref().unwrap_or("") == taint.value.as_deref().unwrap_or("")
        }
        _ => false,
    }
}

/// When a pod on a node with `taints` (all NoExecute) must go: None = never (tolerated
/// forever), Some(ZERO) = now (a taint is not tolerated), else after that long.
pub fn eviction_delay(tolerations: &[Toleration], taints: &[Taint]) -> Option<Duration> {
    let mut least: Option<i64> = None;
    for taint in taints {
        let matching: Vec<&Toleration> =
            tolerations.iter().filter(|t| tolerates(t, taint)).collect();
        if matching.is_empty() {
            return Some(Duration::ZERO);
        }
        for t in matching {
            if let Some(seconds) = t.toleration_seconds {
                least = Some(least.map_or(seconds, |l| l.min(seconds)));
            }
        }
    }
    least.map(|s| Duration::from_secs(s.max(0) as u64))
}

/// Deletes the pods the NoExecute taints no longer allow on the node; returns how long until
/// the next one is due.
async fn evict_pods(
    state: &State,
    node: &str,
    taints: &[Taint],
) -> Result<Option<Duration>, Error> {
    let now = Timestamp::now();
    let since = {
        let mut health = state.health.lock().unwrap_or_else(|e| e.into_inner());
        let first_seen = health
            .get_mut(node)
            .map(|h| *h.no_execute_since.get_or_insert(now))
            .unwrap_or(now);
        taints
            .iter()
            .filter_map(|t| t.time_added.as_ref().map(|t| t.0))
            .min()
            .unwrap_or(first_seen)
    };
    let elapsed = Duration::try_from(now.duration_since(since)).unwrap_or_default();
    {
        let mut evicted = state.evicted.lock().unwrap_or_else(|e| e.into_inner());
        evicted.retain(|_, at| at.elapsed() < EVICTION_MEMORY);
    }
    let mut next: Option<Duration> = None;
    for pod in pods_on(state, node) {
        let uid = pod.metadata.uid.clone().unwrap_or_default();
        if state
            .evicted
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains_key(&uid)
        {
            continue;
        }
        let tolerations = pod
            .spec
            .as_ref()
            .and_then(|s| s.tolerations.clone())
            .unwrap_or_default();
        let Some(delay) = eviction_delay(&tolerations, taints) else {
            continue;
        };
        if delay > elapsed {
            let left = delay - elapsed;
            next = Some(next.map_or(left, |n| n.min(left)));
            continue;
        }
        evict(state, &pod).await?;
        state
            .evicted
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(uid, Instant::now());
    }
    Ok(next)
}

async fn evict(state: &State, pod: &Pod) -> Result<(), Error> {
    let name = pod.name_any();
    let namespace = pod.namespace().unwrap_or_default();
    let api: Api<Pod> = Api::namespaced(state.client.clone(), &namespace);
    let patch = json!({"status": {"conditions": [{
        "type": "DisruptionTarget",
        "status": "True",
        "reason": "DeletionByTaintManager",
        "message": "Taint manager: deleting due to NoExecute taint",
        "lastTransitionTime": Time(Timestamp::now()),
    }]}});
    if let Err(e) = api
        .patch_status(&name, &PatchParams::default(), &Patch::Strategic(&patch))
        .await
    {
        tracing::debug!(pod = %name, error = %e, "cannot add the DisruptionTarget condition");
    }
    let params = DeleteParams {
        preconditions: Some(kube::api::Preconditions {
            uid: pod.metadata.uid.clone(),
            resource_version: None,
        }),
        ..DeleteParams::default()
    };
    match api.delete(&name, &params).await {
        Ok(_) => {}
        Err(kube::Error::Api(e)) if e.code == 404 || e.code == 409 => return Ok(()),
        Err(e) => return Err(e.into()),
    }
    tracing::info!(pod = %format!("{namespace}/{name}"), "evicted by NoExecute taint");
    publish(
        state,
        &pod.object_ref(&()),
        EventType::Normal,
        "TaintManagerEviction",
        format!("Marking for deletion Pod {namespace}/{name}"),
    )
    .await;
    Ok(())
}

async fn publish(
    state: &State,
    reference: &k8s_openapi::api::core::v1::ObjectReference,
    type_: EventType,
    reason: &str,
    note: String,
) {
    let event = Event {
        type_,
        reason: reason.into(),
        note: Some(note),
        action: reason.into(),
        secondary: None,
    };
    if let Err(e) = state.recorder.publish(&event, reference).await {
        tracing::debug!(reason, error = %e, "cannot record event");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn taint(key: &str, effect: &str) -> Taint {
        Taint {
            key: key.into(),
            effect: effect.into(),
            ..Default::default()
        }
    }

    fn toleration(v: serde_json::Value) -> Toleration {
        serde_json::from_value(v).unwrap()
    }

    fn node(v: serde_json::Value) -> Node {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn tolerations_match_like_upstream() {
        let t = taint(TAINT_UNREACHABLE, "NoExecute");
        assert!(tolerates(&toleration(json!({"operator": "Exists"})), &t));
        assert!(tolerates(
            &toleration(
                json!({"key": TAINT_UNREACHABLE, "operator": "Exists", "effect": "NoExecute"})
            ),
            &t
        ));
        assert!(!tolerates(
            &toleration(
                json!({"key": TAINT_UNREACHABLE, "operator": "Exists", "effect": "NoSchedule"})
            ),
            &t
        ));
        assert!(!tolerates(
            &toleration(json!({"key": TAINT_NOT_READY, "operator": "Exists"})),
            &t
        ));
        let mut valued = taint("dedicated", "NoExecute");
        valued.value = Some("gpu".into());
        assert!(tolerates(
            &toleration(json!({"key": "dedicated", "value": "gpu"})),
            &valued
        ));
        assert!(!tolerates(
            &toleration(json!({"key": "dedicated", "value": "cpu"})),
            &valued
        ));
    }

    #[test]
    fn eviction_delay_is_the_least_toleration() {
        let taints = [taint(TAINT_UNREACHABLE, "NoExecute")];
        assert_eq!(eviction_delay(&[], &taints), Some(Duration::ZERO));
        let defaults = [
            toleration(
                json!({"key": TAINT_NOT_READY, "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300}),
            ),
            toleration(
                json!({"key": TAINT_UNREACHABLE, "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 2}),
            ),
        ];
        assert_eq!(
            eviction_delay(&defaults, &taints),
            Some(Duration::from_secs(2))
        );
        let forever = [toleration(json!({"operator": "Exists"}))];
        assert_eq!(eviction_delay(&forever, &taints), None);
    }

    #[test]
    fn taints_follow_ready_and_keep_unmanaged_ones() {
        let now = Timestamp::from_second(1_700_000_000).unwrap();
        let n = node(json!({
            "metadata": {"name": "n"},
            "spec": {"unschedulable": true, "taints": [
                {"key": "dedicated", "value": "x", "effect": "NoSchedule"},
                {"key": TAINT_NOT_READY, "effect": "NoExecute", "timeAdded": "2023-01-01T00:00:00Z"}
            ]},
            "status": {"conditions": [{"type": "Ready", "status": "Unknown"}]}
        }));
        let t = desired_taints(&n, "Unknown", now);
        let keys: Vec<_> = t
            .iter()
            .map(|t| (t.key.as_str(), t.effect.as_str()))
            .collect();
        assert_eq!(
            keys,
            [
                ("dedicated", "NoSchedule"),
                (TAINT_UNREACHABLE, "NoSchedule"),
                (TAINT_UNREACHABLE, "NoExecute"),
                (TAINT_UNSCHEDULABLE, "NoSchedule"),
            ]
        );
        assert_eq!(t[2].time_added, Some(Time(now)));
        assert_eq!(t[1].time_added, None);
        let healthy = desired_taints(&n, "True", now);
        assert_eq!(healthy.len(), 2);
        assert!(same_taints(
            &healthy,
            &[healthy[1].clone(), healthy[0].clone()]
        ));
    }
}
