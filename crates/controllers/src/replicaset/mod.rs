//! ReplicaSet controller (upstream `pkg/controller/replicaset`): keeps `spec.replicas` active
//! pods for every ReplicaSet. It creates pods from the template (generateName `<rs>-`, a
//! controller reference to the ReplicaSet), deletes the surplus in upstream's order (see
//! [`ranking`]), adopts orphan pods its selector matches and releases the pods it controls that
//! the selector no longer matches, and reports replicas, fullyLabeledReplicas, readyReplicas,
//! availableReplicas (minReadySeconds) and observedGeneration.
//!
//! Pods are read from the controllers' shared pod cache ([`crate::informer`]); [`expectations`]
//! keep a lagging cache from causing duplicate creations or deletions. The submodules
//! [`events`], [`ownership`] and [`pods`] are shared with the Deployment controller.

pub(crate) mod events;
mod expectations;
pub(crate) mod ownership;
pub(crate) mod pods;
mod ranking;

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::apps::v1::{ReplicaSet, ReplicaSetCondition, ReplicaSetStatus};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::core::{Selector, SelectorExt};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::watcher;
use kube::ResourceExt;
use serde_json::json;

use self::events::{EventRecorder, NORMAL, WARNING};
use self::expectations::{Cached, Expectations};
use self::ownership::{classify, controller_of, controller_ref, Claim};
use crate::{AbortOnDrop, Context, Error, ERROR_REQUEUE};

const COMPONENT: &str = "replicaset-controller";
/// At most this many pods are created or deleted per reconcile (upstream `BurstReplicas`).
const BURST_REPLICAS: usize = 500;
/// Requests in flight at once for one ReplicaSet. Upstream sends a whole slow-start batch at
/// once over one HTTP/2 connection; kube-rs speaks HTTP/1.1, where each request in flight is a
/// connection (and a TLS handshake), so the batch is spread over a bounded set of them.
const WRITE_CONCURRENCY: usize = 32;
/// How soon a ReplicaSet waiting for its pod cache is looked at again.
const EXPECTATIONS_REQUEUE: Duration = Duration::from_millis(100);
/// How soon a write that lost an optimistic-concurrency race is retried.
const CONFLICT_REQUEUE: Duration = Duration::from_millis(200);

struct State {
    client: kube::Client,
    pods: Store<Pod>,
    replica_sets: Store<ReplicaSet>,
    expectations: Expectations,
    recorder: EventRecorder,
}

pub async fn run(ctx: Context) {
    // A task of its own, so its reconciles do not share a thread with every other controller;
    // aborted when this future is dropped (leadership lost).
    let mut task = AbortOnDrop(tokio::spawn(run_controller(ctx)));
    let _ = task.wait().await;
}

async fn run_controller(ctx: Context) {
    let client = ctx.client;
    let pods = ctx.pods.store();
    // The shared pod informer announces a change only once its store shows it: a reconcile
    // never runs ahead of the cache it reads.
    let pod_events = ctx.pods.touched();
    let controller = Controller::new(
        Api::<ReplicaSet>::all(client.clone()),
        watcher::Config::default(),
    );
    let replica_sets = controller.store();
    let for_mapper = replica_sets.clone();
    let state = Arc::new(State {
        client: client.clone(),
        pods,
        replica_sets,
        expectations: Expectations::default(),
        recorder: EventRecorder::new(client, COMPONENT),
    });
    controller
        .watches_shared_stream(pod_events, move |pod| {
            replica_sets_for_pod(&for_mapper, &pod)
        })
        .run(reconcile, error_policy, state)
        .for_each(|result| {
            if let Err(e) = result {
                tracing::debug!(error = %e, "replicaset controller");
            }
            futures::future::ready(())
        })
        .await;
}

/// The ReplicaSets a pod event concerns: its controller if that is a ReplicaSet, else (an
/// orphan) every ReplicaSet of its namespace whose selector matches it.
fn replica_sets_for_pod(store: &Store<ReplicaSet>, pod: &Pod) -> Vec<ObjectRef<ReplicaSet>> {
    let ns = pod.namespace().unwrap_or_default();
    if let Some(owner) = controller_of(&pod.metadata) {
        if owner.kind == "ReplicaSet" && owner.api_version.starts_with("apps/") {
            return vec![ObjectRef::new(&owner.name).within(&ns)];
        }
        return vec![];
    }
    let labels = pod.labels();
    store
        .state_filter(|rs| rs.namespace().as_deref() == Some(ns.as_str()))
        .into_iter()
        .filter(|rs| selector_of(rs).is_some_and(|s| s.matches(labels)))
        .map(|rs| ObjectRef::from_obj(rs.as_ref()))
        .collect()
}

/// The ReplicaSet's selector; None for a missing or empty one (which selects nothing here).
fn selector_of(rs: &ReplicaSet) -> Option<Selector> {
    let selector: Selector = rs.spec.as_ref()?.selector.clone().try_into().ok()?;
    (!selector.selects_all()).then_some(selector)
}

fn error_policy(rs: Arc<ReplicaSet>, err: &Error, _state: Arc<State>) -> Action {
    if is_conflict(err) {
        tracing::debug!(replicaset = %rs.name_any(), "replicaset changed meanwhile; retrying");
        return Action::requeue(CONFLICT_REQUEUE);
    }
    tracing::warn!(replicaset = %rs.name_any(), error = %err, "replicaset reconcile failed");
    Action::requeue(ERROR_REQUEUE)
}

pub(crate) fn is_conflict(err: &Error) -> bool {
    matches!(err, Error::Api(kube::Error::Api(e)) if e.code == 409)
}

async fn reconcile(rs: Arc<ReplicaSet>, state: Arc<State>) -> Result<Action, Error> {
    if state.pods.wait_until_ready().await.is_err() {
        return Err(Error::Invalid("the pod cache stopped".into()));
    }
    state.expectations.expire();
    let ns = rs.namespace().unwrap_or_default();
    let key = rs.uid().unwrap_or_default();
    let satisfied = expectations_satisfied(&state, &ns, &key).await?;
    let Some(selector) = selector_of(&rs) else {
        tracing::debug!(replicaset = %rs.name_any(), "replicaset without a usable selector");
        return Ok(Action::await_change());
    };
    let active: Vec<Arc<Pod>> = state
        .pods
        .state_filter(|p| p.namespace().as_deref() == Some(ns.as_str()) && pods::is_active(p));
    let candidates = active.len();
    let claimed = claim_pods(&state, &rs, &selector, active).await?;
    tracing::debug!(
        replicaset = %rs.name_any(),
        satisfied,
        candidates,
        claimed = claimed.len(),
        want = rs.spec.as_ref().and_then(|s| s.replicas),
        "syncing replicaset"
    );

    let managed = if satisfied && rs.metadata.deletion_timestamp.is_none() {
        manage_replicas(&state, &rs, &claimed).await
    } else {
        Ok(())
    };
    let now = pods::now();
    let status = calculate_status(&rs, &claimed, managed.as_ref().err(), now);
    update_status(&state, &rs, status).await?;
    managed?;

    let min_ready = rs
        .spec
        .as_ref()
        .and_then(|s| s.min_ready_seconds)
        .unwrap_or(0);
    let mut next = claimed
        .iter()
        .filter_map(|p| pods::until_available(p, min_ready, now))
        .min();
    if !satisfied {
        next = Some(next.map_or(EXPECTATIONS_REQUEUE, |n| n.min(EXPECTATIONS_REQUEUE)));
    }
    Ok(next.map_or_else(Action::await_change, Action::requeue))
}

/// Whether the pod cache reflects every pod this ReplicaSet created or deleted.
async fn expectations_satisfied(state: &State, ns: &str, key: &str) -> Result<bool, Error> {
    let cached = |name: &str| match state.pods.get(&ObjectRef::new(name).within(ns)) {
        None => Cached::Absent,
        Some(p) => Cached::Present {
            uid: p.uid().unwrap_or_default(),
            active: pods::is_active(&p),
        },
    };
    let check = state.expectations.check(key, cached);
    if check.satisfied || check.stale_creations.is_empty() {
        return Ok(check.satisfied);
    }
    // A creation the cache never showed: if the pod is gone already, stop waiting for it.
    // A few at a time: when the cache merely lags, most of them exist.
    let api: Api<Pod> = Api::namespaced(state.client.clone(), ns);
    let found =
        futures::future::join_all(check.stale_creations.iter().take(WRITE_CONCURRENCY).map(
            |name| {
                let (api, name) = (api.clone(), name.clone());
                async move { api.get_opt(&name).await }
            },
        ))
        .await;
    for (name, pod) in check.stale_creations.iter().zip(found) {
        if pod?.is_none() {
            state.expectations.creation_observed(key, name);
        }
    }
    Ok(state.expectations.check(key, cached).satisfied)
}

/// Upstream `claimPods`: the active pods this ReplicaSet controls after adopting and releasing.
async fn claim_pods(
    state: &State,
    rs: &ReplicaSet,
    selector: &Selector,
    candidates: Vec<Arc<Pod>>,
) -> Result<Vec<Arc<Pod>>, Error> {
    let ns = rs.namespace().unwrap_or_default();
    let uid = rs.uid().unwrap_or_default();
    let deleting = rs.metadata.deletion_timestamp.is_some();
    let api: Api<Pod> = Api::namespaced(state.client.clone(), &ns);
    let mut can_adopt: Option<bool> = None;
    let mut claimed = Vec::new();
    for pod in candidates {
        match classify(&uid, deleting, selector, &pod.metadata) {
            Claim::Owned => claimed.push(pod),
            Claim::Ignore => {}
            Claim::Release => {
                tracing::info!(replicaset = %rs.name_any(), pod = %pod.name_any(), "releasing pod");
                ownership::release(&api, &pod.name_any(), &pod.uid().unwrap_or_default(), &uid)
                    .await?;
            }
            Claim::Adopt => {
                if can_adopt.is_none() {
                    can_adopt = Some(still_current(state, rs).await?);
                }
                if can_adopt != Some(true) {
                    continue;
                }
                tracing::info!(replicaset = %rs.name_any(), pod = %pod.name_any(), "adopting pod");
                let owner = controller_ref(rs);
                if let Some(adopted) = ownership::adopt(
                    &api,
                    &pod.name_any(),
                    &pod.uid().unwrap_or_default(),
                    &owner,
                )
                .await?
                {
                    claimed.push(Arc::new(adopted));
                }
            }
        }
    }
    Ok(claimed)
}

/// Upstream's adoption recheck: the ReplicaSet, read from the API server rather than the cache,
/// is the same object and not being deleted.
async fn still_current(state: &State, rs: &ReplicaSet) -> Result<bool, Error> {
    let api: Api<ReplicaSet> =
        Api::namespaced(state.client.clone(), &rs.namespace().unwrap_or_default());
    Ok(api.get_opt(&rs.name_any()).await?.is_some_and(|fresh| {
        fresh.uid() == rs.uid() && fresh.metadata.deletion_timestamp.is_none()
    }))
}

/// Create or delete pods so the ReplicaSet has `spec.replicas` of them.
async fn manage_replicas(
    state: &State,
    rs: &ReplicaSet,
    claimed: &[Arc<Pod>],
) -> Result<(), Error> {
    let want = rs
        .spec
        .as_ref()
        .and_then(|s| s.replicas)
        .unwrap_or(1)
        .max(0) as usize;
    let have = claimed.len();
    if have < want {
        create_pods(state, rs, (want - have).min(BURST_REPLICAS)).await
    } else if have > want {
        delete_pods(state, rs, claimed, (have - want).min(BURST_REPLICAS)).await
    } else {
        Ok(())
    }
}

/// The pod a ReplicaSet creates from its template (upstream `GetPodFromTemplate`).
fn pod_from_template(rs: &ReplicaSet) -> Pod {
    let template = rs
        .spec
        .as_ref()
        .and_then(|s| s.template.clone())
        .unwrap_or_default();
    let meta = template.metadata.unwrap_or_default();
    Pod {
        metadata: ObjectMeta {
            generate_name: Some(format!("{}-", rs.name_any())),
            namespace: rs.namespace(),
            labels: meta.labels,
            annotations: meta.annotations,
            finalizers: meta.finalizers,
            owner_references: Some(vec![controller_ref(rs)]),
            ..ObjectMeta::default()
        },
        spec: template.spec,
        status: None,
    }
}

/// Creates `count` pods in slow-start batches (1, 2, 4, ...), stopping at the first failure
/// (upstream `slowStartBatch`): a quota or admission error then costs one request, not hundreds.
async fn create_pods(state: &State, rs: &ReplicaSet, count: usize) -> Result<(), Error> {
    let ns = rs.namespace().unwrap_or_default();
    let key = rs.uid().unwrap_or_default();
    let api: Api<Pod> = Api::namespaced(state.client.clone(), &ns);
    let pod = pod_from_template(rs);
    let mut done = 0;
    let mut batch = 1;
    while done < count {
        let size = batch.min(count - done);
        let results: Vec<_> = futures::stream::iter((0..size).map(|_| {
            let (api, pod) = (api.clone(), pod.clone());
            async move { api.create(&PostParams::default(), &pod).await }
        }))
        .buffer_unordered(WRITE_CONCURRENCY)
        .collect()
        .await;
        let mut failure = None;
        let mut created = Vec::new();
        for result in results {
            match result {
                Ok(p) => created.push(p.name_any()),
                Err(e) => failure = Some(e),
            }
        }
        state
            .expectations
            .expect_creations(&key, created.iter().cloned());
        for name in created {
            state.recorder.record(
                rs,
                NORMAL,
                "SuccessfulCreate",
                format!("Created pod: {name}"),
            );
        }
        if let Some(e) = failure {
            let forbidden_by_namespace = matches!(&e, kube::Error::Api(s) if s.code == 403);
            if !forbidden_by_namespace {
                state
                    .recorder
                    .record(rs, WARNING, "FailedCreate", format!("Error creating: {e}"));
            }
            return Err(e.into());
        }
        done += size;
        batch *= 2;
    }
    tracing::debug!(replicaset = %rs.name_any(), count, "created pods");
    Ok(())
}

/// Deletes the `count` pods upstream would pick first.
async fn delete_pods(
    state: &State,
    rs: &ReplicaSet,
    claimed: &[Arc<Pod>],
    count: usize,
) -> Result<(), Error> {
    let ns = rs.namespace().unwrap_or_default();
    let key = rs.uid().unwrap_or_default();
    let mut victims: Vec<Arc<Pod>> = claimed.to_vec();
    if count < victims.len() {
        let related = related_pods(state, rs, &ns);
        ranking::sort_for_deletion(&mut victims, &related, pods::now());
    }
    victims.truncate(count);
    let api: Api<Pod> = Api::namespaced(state.client.clone(), &ns);
    let names: Vec<String> = victims.iter().map(|p| p.name_any()).collect();
    let results: Vec<_> = futures::stream::iter(names.into_iter().map(|name| {
        let api = api.clone();
        async move { api.delete(&name, &DeleteParams::default()).await }
    }))
    .buffered(WRITE_CONCURRENCY)
    .collect()
    .await;
    let mut failure = None;
    let mut deleted = Vec::new();
    for (pod, result) in victims.iter().zip(results) {
        match result {
            Ok(_) => deleted.push(pod),
            Err(kube::Error::Api(e)) if e.code == 404 => {}
            Err(e) => failure = Some(e),
        }
    }
    state.expectations.expect_deletions(
        &key,
        deleted
            .iter()
            .map(|p| (p.name_any(), p.uid().unwrap_or_default())),
    );
    for pod in deleted {
        state.recorder.record(
            rs,
            NORMAL,
            "SuccessfulDelete",
            format!("Deleted pod: {}", pod.name_any()),
        );
    }
    if let Some(e) = failure {
        state
            .recorder
            .record(rs, WARNING, "FailedDelete", format!("Error deleting: {e}"));
        return Err(e.into());
    }
    Ok(())
}

/// The pods of every ReplicaSet controlled by the same object as `rs` (upstream
/// `getIndirectlyRelatedPods`), or just those of `rs` when it has no controller.
fn related_pods(state: &State, rs: &ReplicaSet, ns: &str) -> Vec<Arc<Pod>> {
    let mut owners: Vec<String> = vec![rs.uid().unwrap_or_default()];
    if let Some(ctrl) = controller_of(&rs.metadata) {
        owners.extend(
            state
                .replica_sets
                .state_filter(|other| {
                    other.namespace().as_deref() == Some(ns)
                        && controller_of(&other.metadata).is_some_and(|c| c.uid == ctrl.uid)
                })
                .iter()
                .filter_map(|other| other.uid()),
        );
    }
    state.pods.state_filter(|p| {
        p.namespace().as_deref() == Some(ns)
            && controller_of(&p.metadata).is_some_and(|c| owners.contains(&c.uid))
    })
}

/// Upstream `calculateStatus`.
fn calculate_status(
    rs: &ReplicaSet,
    claimed: &[Arc<Pod>],
    manage_error: Option<&Error>,
    now: Timestamp,
) -> ReplicaSetStatus {
    let spec = rs.spec.as_ref();
    let template_labels = spec
        .and_then(|s| s.template.as_ref())
        .and_then(|t| t.metadata.as_ref())
        .and_then(|m| m.labels.clone())
        .unwrap_or_default();
    let min_ready = spec.and_then(|s| s.min_ready_seconds).unwrap_or(0);
    let mut fully_labeled = 0;
    let mut ready = 0;
    let mut available = 0;
    for pod in claimed {
        let labels = pod.labels();
        if template_labels
            .iter()
            .all(|(k, v)| labels.get(k) == Some(v))
        {
            fully_labeled += 1;
        }
        if pods::is_ready(pod) {
            ready += 1;
            if pods::is_available(pod, min_ready, now) {
                available += 1;
            }
        }
    }
    let mut conditions: Vec<ReplicaSetCondition> = rs
        .status
        .as_ref()
        .and_then(|s| s.conditions.clone())
        .unwrap_or_default();
    let has_failure = conditions.iter().any(|c| c.type_ == "ReplicaFailure");
    match manage_error {
        Some(err) if !has_failure => {
            let want = spec.and_then(|s| s.replicas).unwrap_or(1) as usize;
            let reason = if claimed.len() < want {
                "FailedCreate"
            } else {
                "FailedDelete"
            };
            conditions.push(ReplicaSetCondition {
                type_: "ReplicaFailure".into(),
                status: "True".into(),
                reason: Some(reason.into()),
                message: Some(err.to_string()),
                last_transition_time: Some(Time(now)),
            });
        }
        None if has_failure => conditions.retain(|c| c.type_ != "ReplicaFailure"),
        _ => {}
    }
    let nonzero = |n: i32| (n != 0).then_some(n);
    ReplicaSetStatus {
        replicas: claimed.len() as i32,
        fully_labeled_replicas: nonzero(fully_labeled),
        ready_replicas: nonzero(ready),
        available_replicas: nonzero(available),
        observed_generation: rs.metadata.generation,
        conditions: (!conditions.is_empty()).then_some(conditions),
    }
}

/// Writes the status when it changed (a merge patch: explicit nulls clear zeroed counters).
async fn update_status(
    state: &State,
    rs: &ReplicaSet,
    status: ReplicaSetStatus,
) -> Result<(), Error> {
    let current = rs.status.clone().unwrap_or_default();
    if current == status {
        return Ok(());
    }
    let api: Api<ReplicaSet> =
        Api::namespaced(state.client.clone(), &rs.namespace().unwrap_or_default());
    let patch = json!({"status": {
        "replicas": status.replicas,
        "fullyLabeledReplicas": status.fully_labeled_replicas,
        "readyReplicas": status.ready_replicas,
        "availableReplicas": status.available_replicas,
        "observedGeneration": status.observed_generation,
        "conditions": status.conditions,
    }});
    match api
        .patch_status(
            &rs.name_any(),
            &PatchParams::default(),
            &Patch::Merge(patch),
        )
        .await
    {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(e)) if e.code == 404 => {
            state.expectations.forget(&rs.uid().unwrap_or_default());
            Ok(())
        }
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rs() -> ReplicaSet {
        serde_json::from_value(json!({
            "metadata": {"name": "web-abc", "namespace": "default", "uid": "rs-uid", "generation": 3},
            "spec": {
                "replicas": 2,
                "minReadySeconds": 0,
                "selector": {"matchLabels": {"app": "web"}},
                "template": {
                    "metadata": {"labels": {"app": "web", "tier": "front"}, "annotations": {"a": "b"}},
                    "spec": {"containers": [{"name": "c", "image": "busybox"}]}
                }
            }
        }))
        .unwrap()
    }

    fn pod(labels: serde_json::Value, ready: bool) -> Arc<Pod> {
        let status = if ready { "True" } else { "False" };
        Arc::new(
            serde_json::from_value(json!({
                "metadata": {"name": "p", "labels": labels},
                "status": {"phase": "Running", "conditions": [
                    {"type": "Ready", "status": status, "lastTransitionTime": "2024-01-01T00:00:00Z"}
                ]}
            }))
            .unwrap(),
        )
    }

    #[test]
    fn pods_come_from_the_template_with_a_controller_ref() {
        let pod = pod_from_template(&rs());
        assert_eq!(pod.metadata.generate_name.as_deref(), Some("web-abc-"));
        assert_eq!(pod.labels().get("tier").map(String::as_str), Some("front"));
        assert_eq!(pod.annotations().get("a").map(String::as_str), Some("b"));
        let owner = &pod.metadata.owner_references.as_ref().unwrap()[0];
        assert_eq!(
            (owner.kind.as_str(), owner.uid.as_str()),
            ("ReplicaSet", "rs-uid")
        );
        assert_eq!(owner.controller, Some(true));
        assert_eq!(owner.block_owner_deletion, Some(true));
    }

    #[test]
    fn status_counts_labeled_ready_and_available_pods() {
        let pods = vec![
            pod(json!({"app": "web", "tier": "front"}), true),
            pod(json!({"app": "web"}), true),
            pod(json!({"app": "web", "tier": "front"}), false),
        ];
        let now: Timestamp = "2024-01-01T00:01:00Z".parse().unwrap();
        let s = calculate_status(&rs(), &pods, None, now);
        assert_eq!(s.replicas, 3);
        assert_eq!(s.fully_labeled_replicas, Some(2));
        assert_eq!(s.ready_replicas, Some(2));
        assert_eq!(s.available_replicas, Some(2));
        assert_eq!(s.observed_generation, Some(3));
        let err = Error::Invalid("quota".into());
        let failed = calculate_status(&rs(), &pods[..1], Some(&err), now);
        let cond = &failed.conditions.unwrap()[0];
        assert_eq!(cond.reason.as_deref(), Some("FailedCreate"));
    }
}
