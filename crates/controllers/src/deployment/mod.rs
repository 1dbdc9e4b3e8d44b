//! Deployment controller (upstream `pkg/controller/deployment`): rolls a Deployment's pod
//! template out through ReplicaSets named `<deployment>-<pod-template-hash>`.
//!
//! - RollingUpdate scales the new ReplicaSet up and the old ones down within maxSurge and
//!   maxUnavailable; Recreate scales the old ones to zero, waits for their pods to be gone, then
//!   scales the new one up.
//! - Revisions: `deployment.kubernetes.io/revision` on every ReplicaSet (the new one gets
//!   max(old) + 1, also when an old template comes back, which is what `kubectl rollout undo`
//!   relies on), the Deployment's annotations (`kubernetes.io/change-cause`, ...) copied to the new
//!   ReplicaSet, `revisionHistoryLimit` old ReplicaSets kept.
//! - `spec.paused` stops the rollout (scaling still happens); `kubectl scale` spreads a size
//!   change proportionally over the ReplicaSets of an unfinished rollout.
//! - Status: counters, the Available condition, and the Progressing condition against
//!   `progressDeadlineSeconds` — what `kubectl rollout status` reads.
//!
//! Each sync reads the Deployment and its ReplicaSets from the API server (not a cache): a
//! Deployment has a handful of ReplicaSets, and fresh reads plus resourceVersion-checked writes
//! mean no decision rests on a stale view. The pure arithmetic lives in [`util`], the sync
//! itself in [`rollout`].

mod rollout;
mod util;

use std::collections::BTreeMap;
use std::sync::Arc;

use futures::StreamExt;
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::Api;
use kube::core::PartialObjectMeta;
use kube::core::{Selector, SelectorExt};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::watcher;
use kube::ResourceExt;

use self::rollout::Rollout;
use crate::replicaset::events::EventRecorder;
use crate::replicaset::is_conflict;
use crate::replicaset::ownership::controller_of;
use crate::{AbortOnDrop, Context, Error, ERROR_REQUEUE};

const COMPONENT: &str = "deployment-controller";
static NO_LABELS: BTreeMap<String, String> = BTreeMap::new();
/// How soon a write that lost an optimistic-concurrency race is retried.
const CONFLICT_REQUEUE: std::time::Duration = std::time::Duration::from_millis(200);

struct State {
    client: kube::Client,
    recorder: EventRecorder,
}

pub async fn run(ctx: Context) {
    // A task of its own (see the ReplicaSet controller); aborted when this future is dropped.
    let mut task = AbortOnDrop(tokio::spawn(run_controller(ctx)));
    let _ = task.wait().await;
}

async fn run_controller(ctx: Context) {
    let client = ctx.client;
    let controller = Controller::new(
        Api::<Deployment>::all(client.clone()),
        watcher::Config::default(),
    );
    let for_replica_sets = controller.store();
    let for_pods = controller.store();
    let state = Arc::new(State {
        client: client.clone(),
        recorder: EventRecorder::new(client.clone(), COMPONENT),
    });
    // Only owner references and labels route events: a metadata-only watch is enough for
    // ReplicaSets; pod changes come from the controllers' shared pod informer.
    controller
        .watches(
            Api::<PartialObjectMeta<ReplicaSet>>::all(client.clone()),
            watcher::Config::default(),
            move |rs| deployments_for_replica_set(&for_replica_sets, &rs.metadata),
        )
        .watches_shared_stream(ctx.pods.touched(), move |pod| {
            recreate_deployments_for_pod(&for_pods, &pod.metadata)
        })
        .run(reconcile, error_policy, state)
        .for_each(|result| {
            if let Err(e) = result {
                tracing::debug!(error = %e, "deployment controller");
            }
            futures::future::ready(())
        })
        .await;
}

fn selector_of(d: &Deployment) -> Option<Selector> {
    let selector: Selector = d.spec.as_ref()?.selector.clone().try_into().ok()?;
    (!selector.selects_all()).then_some(selector)
}

fn matching_deployments<'a>(
    store: &'a Store<Deployment>,
    ns: &'a str,
    labels: &'a BTreeMap<String, String>,
) -> impl Iterator<Item = Arc<Deployment>> + 'a {
    store
        .state_filter(move |d| d.namespace().as_deref() == Some(ns))
        .into_iter()
        .filter(move |d| selector_of(d).is_some_and(|s| s.matches(labels)))
}

/// The Deployment a ReplicaSet event concerns: its controller, or for an orphan every
/// Deployment whose selector matches it (it may be adopted).
fn deployments_for_replica_set(
    store: &Store<Deployment>,
    rs: &ObjectMeta,
) -> Vec<ObjectRef<Deployment>> {
    let ns = rs.namespace.clone().unwrap_or_default();
    if let Some(owner) = controller_of(rs) {
        if owner.kind == "Deployment" && owner.api_version.starts_with("apps/") {
            return vec![ObjectRef::new(&owner.name).within(&ns)];
        }
        return vec![];
    }
    matching_deployments(store, &ns, rs.labels.as_ref().unwrap_or(&NO_LABELS))
        .map(|d| ObjectRef::from_obj(d.as_ref()))
        .collect()
}

/// Pod events matter to Recreate Deployments only: they wait for the old pods to be gone.
fn recreate_deployments_for_pod(
    store: &Store<Deployment>,
    pod: &ObjectMeta,
) -> Vec<ObjectRef<Deployment>> {
    if controller_of(pod).is_none_or(|o| o.kind != "ReplicaSet") {
        return vec![];
    }
    let ns = pod.namespace.clone().unwrap_or_default();
    matching_deployments(store, &ns, pod.labels.as_ref().unwrap_or(&NO_LABELS))
        .filter(|d| util::is_recreate(d))
        .map(|d| ObjectRef::from_obj(d.as_ref()))
        .collect()
}

fn error_policy(d: Arc<Deployment>, err: &Error, _state: Arc<State>) -> Action {
    if is_conflict(err) {
        tracing::debug!(deployment = %d.name_any(), error = %err, "deployment changed meanwhile; retrying");
        return Action::requeue(CONFLICT_REQUEUE);
    }
    tracing::warn!(deployment = %d.name_any(), error = %err, "deployment reconcile failed");
    Action::requeue(ERROR_REQUEUE)
}

async fn reconcile(trigger: Arc<Deployment>, state: Arc<State>) -> Result<Action, Error> {
    let api: Api<Deployment> = Api::namespaced(
        state.client.clone(),
        &trigger.namespace().unwrap_or_default(),
    );
    let Some(d) = api.get_opt(&trigger.name_any()).await? else {
        return Ok(Action::await_change());
    };
    let mut rollout = Rollout::new(&state, d);
    rollout.sync_deployment().await?;
    Ok(rollout
        .requeue
        .map_or_else(Action::await_change, Action::requeue))
}
