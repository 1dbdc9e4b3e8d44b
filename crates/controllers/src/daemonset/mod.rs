//! DaemonSet controller: one pod per eligible node (node name, nodeSelector, required node
//! affinity, taints versus tolerations), a new node gets its pod and an ineligible or removed
//! node loses it; updates roll by `controller-revision-hash` with ControllerRevisions
//! (RollingUpdate with maxUnavailable/maxSurge, or OnDelete); status as upstream so
//! `kubectl rollout status ds/x` works. Modelled on upstream's `pkg/controller/daemon`.
//!
//! Placement: like upstream since 1.12, daemon pods are created unbound with their required node
//! affinity replaced by `matchFields metadata.name In [<node>]`, and the scheduler binds them.
//! Setting `spec.nodeName` directly would be simpler but would bypass the scheduler's resource
//! accounting and filters (a daemon pod that does not fit stays Pending with a FailedScheduling
//! event, as upstream), and `kubectl describe` would show no Scheduled event.

mod placement;

pub(crate) use placement::node_selector_matches;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::{Stream, StreamExt};
use k8s_openapi::api::apps::v1::{ControllerRevision, DaemonSet, DaemonSetSpec};
use k8s_openapi::api::core::v1::{Node, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::controller::{self, Action, Controller};
use kube::runtime::reflector::{self, Store};
use kube::runtime::{watcher, WatchStreamExt};
use kube::{Resource, ResourceExt};
use serde_json::json;

use crate::statefulset::events::Events;
use crate::statefulset::history::{self, REVISION_HASH_LABEL};
use crate::statefulset::pods;
use crate::{Context, Error, ERROR_REQUEUE};

const CONTROLLER: &str = "daemonset-controller";
/// Deprecated label upstream still puts on daemon pods.
const TEMPLATE_GENERATION_LABEL: &str = "pod-template-generation";
/// Collapse bursts of pod/node events into one reconcile.
const DEBOUNCE: Duration = Duration::from_millis(50);
/// How long a reconcile waits for the node cache before trying again later.
const NODE_CACHE_WAIT: Duration = Duration::from_secs(5);
/// Backoff for deleting failed daemon pods on a node (upstream: 1 s doubling to 15 min).
const FAILED_POD_BACKOFF_INITIAL: Duration = Duration::from_secs(1);
const FAILED_POD_BACKOFF_MAX: Duration = Duration::from_secs(15 * 60);
/// Pod creations and deletions in flight at once.
const PARALLEL_WRITES: usize = 16;

struct State {
    client: kube::Client,
    nodes: Store<Node>,
    events: Events,
    /// (daemonset uid, generation, node) -> (last failed-pod deletion, current delay).
    failed_pod_backoff: Mutex<HashMap<String, (Instant, Duration)>>,
}

pub async fn run(ctx: Context) {
    let client = ctx.client;
    let (nodes, writer) = reflector::store::<Node>();
    let node_events = watcher(Api::<Node>::all(client.clone()), watcher::Config::default())
        .default_backoff()
        .reflect(writer);
    let state = Arc::new(State {
        client: client.clone(),
        nodes,
        events: Events::new(client.clone(), CONTROLLER),
        failed_pod_backoff: Mutex::new(HashMap::new()),
    });
    // Daemon pods always carry the revision hash label: only labelled pods concern this one.
    let pods = ctx
        .pods
        .touched()
        .filter(|pod| std::future::ready(pod.labels().contains_key(REVISION_HASH_LABEL)));
    Controller::new(
        Api::<DaemonSet>::all(client.clone()),
        watcher::Config::default(),
    )
    .owns_shared_stream(pods)
    .owns(
        Api::<ControllerRevision>::all(client.clone()),
        watcher::Config::default(),
    )
    .reconcile_all_on(node_changes(node_events))
    .with_config(controller::Config::default().debounce(DEBOUNCE))
    .run(
        reconcile,
        |_ds, err, _state| {
            tracing::warn!(error = %err, "daemonset reconcile failed");
            Action::requeue(ERROR_REQUEUE)
        },
        state,
    )
    .for_each(|result| {
        if let Err(e) = result {
            tracing::debug!(error = %e, "daemonset controller");
        }
        futures::future::ready(())
    })
    .await;
}

/// What about a node matters to placement: its labels, taints and name.
fn node_fingerprint(node: &Node) -> String {
    json!([
        node.metadata.labels,
        node.spec.as_ref().and_then(|s| s.taints.clone()),
    ])
    .to_string()
}

/// One trigger per node change that can alter placement (added, deleted, labels or taints
/// changed); heartbeats and status updates are dropped here.
fn node_changes(
    events: impl Stream<Item = Result<watcher::Event<Node>, watcher::Error>> + Send + 'static,
) -> impl Stream<Item = ()> + Send + 'static {
    let mut seen: HashMap<String, String> = HashMap::new();
    events.filter_map(move |event| {
        let fire = match &event {
            Ok(watcher::Event::Apply(node)) | Ok(watcher::Event::InitApply(node)) => {
                let fingerprint = node_fingerprint(node);
                let changed =
                    seen.insert(node.name_any(), fingerprint.clone()) != Some(fingerprint);
                changed && matches!(event, Ok(watcher::Event::Apply(_)))
            }
            Ok(watcher::Event::Delete(node)) => {
                seen.remove(&node.name_any());
                true
            }
            Ok(watcher::Event::InitDone) => true,
            Ok(watcher::Event::Init) => false,
            Err(e) => {
                tracing::debug!(error = %e, "daemonset node watch");
                false
            }
        };
        futures::future::ready(fire.then_some(()))
    })
}

fn label(pod: &Pod, key: &str) -> Option<String> {
    pod.metadata.labels.as_ref()?.get(key).cloned()
}

/// Oldest first, bound pods before unbound ones (upstream's `podByCreationTimestampAndPhase`).
fn sort_oldest_first(list: &mut [&Pod]) {
    list.sort_by(|a, b| {
        let unbound = |p: &Pod| {
            p.spec
                .as_ref()
                .and_then(|s| s.node_name.as_deref())
                .is_none_or(str::is_empty)
        };
        unbound(a)
            .cmp(&unbound(b))
            .then_with(|| {
                a.metadata
                    .creation_timestamp
                    .cmp(&b.metadata.creation_timestamp)
            })
            .then_with(|| a.metadata.name.cmp(&b.metadata.name))
    });
}

/// `intstr.GetScaledValueFromIntOrPercent`, rounding percentages up.
fn scaled(value: Option<&IntOrString>, total: i32, default: i32) -> i32 {
    match value {
        None => default,
        Some(IntOrString::Int(n)) => *n,
        Some(IntOrString::String(s)) => match s.strip_suffix('%').map(str::parse::<i64>) {
            Some(Ok(pct)) => {
                let v = (pct * i64::from(total) + 99) / 100;
                i32::try_from(v).unwrap_or(i32::MAX)
            }
            _ => s.parse().unwrap_or(default),
        },
    }
}

/// (maxSurge, maxUnavailable) against the desired count; both zero means maxUnavailable 1.
fn rollout_limits(spec: &DaemonSetSpec, desired: i32) -> (i32, i32) {
    let rolling = spec
        .update_strategy
        .as_ref()
        .and_then(|s| s.rolling_update.as_ref());
    let surge = scaled(rolling.and_then(|r| r.max_surge.as_ref()), desired, 0);
    let unavailable = scaled(rolling.and_then(|r| r.max_unavailable.as_ref()), desired, 1);
    if surge == 0 && unavailable == 0 {
        (0, 1)
    } else {
        (surge, unavailable)
    }
}

/// One reconcile's view of a DaemonSet: its nodes and pods, grouped by target node.
struct Snapshot<'a> {
    ds: &'a DaemonSet,
    spec: &'a DaemonSetSpec,
    nodes: Vec<Arc<Node>>,
    by_node: BTreeMap<String, Vec<&'a Pod>>,
    hash: String,
    now: Timestamp,
}

impl<'a> Snapshot<'a> {
    fn min_ready_seconds(&self) -> i32 {
        self.spec.min_ready_seconds.unwrap_or(0)
    }

    fn available(&self, pod: &Pod) -> bool {
        pods::is_available(pod, self.min_ready_seconds(), self.now)
    }

    fn is_new(&self, pod: &Pod) -> bool {
        label(pod, REVISION_HASH_LABEL).as_deref() == Some(self.hash.as_str())
    }

    fn allows_surge(&self) -> bool {
        self.is_rolling() && rollout_limits(self.spec, self.desired()).0 > 0
    }

    fn is_rolling(&self) -> bool {
        self.spec
            .update_strategy
            .as_ref()
            .and_then(|s| s.type_.as_deref())
            .unwrap_or("RollingUpdate")
            == "RollingUpdate"
    }

    fn desired(&self) -> i32 {
        let n = self
            .nodes
            .iter()
            .filter(|n| placement::should_run(self.ds, n).0)
            .count();
        i32::try_from(n).unwrap_or(i32::MAX)
    }

    /// Pods the manage loop considers: all but terminal pods already being deleted.
    fn live_pods_on(&self, node: &str) -> Vec<&'a Pod> {
        self.by_node
            .get(node)
            .into_iter()
            .flatten()
            .copied()
            .filter(|p| {
                !(pods::is_terminating(p) && matches!(pods::phase(p), "Succeeded" | "Failed"))
            })
            .collect()
    }

    /// The one new and one old non-terminating pod on a node; `None` when there are more (the
    /// manage loop prunes those first).
    fn updated_pods_on(&self, node: &str) -> Option<(Option<&'a Pod>, Option<&'a Pod>)> {
        let (mut new, mut old) = (None, None);
        for pod in self.live_pods_on(node) {
            if pods::is_terminating(pod) {
                continue;
            }
            let slot = if self.is_new(pod) { &mut new } else { &mut old };
            if slot.is_some() {
                return None;
            }
            *slot = Some(pod);
        }
        Some((new, old))
    }
}

/// Pods to create (by node) and delete (by name).
#[derive(Default)]
struct Changes {
    create_on: Vec<String>,
    delete: Vec<String>,
    /// Pods on nodes that no longer exist and were already bound: removed at once, as the pod
    /// garbage collector does upstream (no node will ever finalize them).
    force_delete: Vec<String>,
    requeue: Option<Duration>,
}

impl Changes {
    fn is_empty(&self) -> bool {
        self.create_on.is_empty() && self.delete.is_empty() && self.force_delete.is_empty()
    }
}

async fn reconcile(ds: Arc<DaemonSet>, state: Arc<State>) -> Result<Action, Error> {
    if ds.metadata.deletion_timestamp.is_some() {
        // Pods and revisions are the garbage collector's now; status would be meaningless.
        return Ok(Action::await_change());
    }
    let Some(spec) = ds.spec.as_ref() else {
        return Ok(Action::await_change());
    };
    let Some(selector) = pods::selector(&spec.selector)? else {
        state
            .events
            .warning(
                &ds.object_ref(&()),
                "SelectingAll",
                "This daemon set is selecting all pods. A non-empty selector is required.".into(),
            )
            .await;
        return Ok(Action::await_change());
    };
    if tokio::time::timeout(NODE_CACHE_WAIT, state.nodes.wait_until_ready())
        .await
        .is_err()
    {
        return Ok(Action::requeue(ERROR_REQUEUE));
    }
    let namespace = ds.namespace().unwrap_or_default();
    let name = ds.name_any();
    let owner_ref = ds
        .controller_owner_ref(&())
        .ok_or_else(|| Error::Invalid(format!("daemonset {namespace}/{name} has no uid")))?;
    let pod_api: Api<Pod> = Api::namespaced(state.client.clone(), &namespace);
    let selector_string = selector.to_string();
    let listed = pod_api
        .list(&ListParams::default().labels(&selector_string))
        .await?
        .items;
    let owned = pods::claim(&pod_api, listed, &selector, &owner_ref, |_| true).await?;

    let status = ds.status.clone().unwrap_or_default();
    let revisions = history::sync(
        &state.client,
        &history::Owner {
            name: &name,
            namespace: &namespace,
            uid: &owner_ref.uid,
            owner_ref: owner_ref.clone(),
            annotations: ds.annotations().clone(),
            collision_count: status.collision_count.unwrap_or(0),
            selector: selector_string,
        },
        &spec.template,
    )
    .await?;
    let hash = history::revision_hash(&revisions.update);

    let mut by_node: BTreeMap<String, Vec<&Pod>> = BTreeMap::new();
    for pod in &owned {
        if let Some(node) = placement::target_node(pod) {
            by_node.entry(node).or_default().push(pod);
        }
    }
    let snapshot = Snapshot {
        ds: &ds,
        spec,
        nodes: state.nodes.state(),
        by_node,
        hash: hash.clone(),
        now: Timestamp::now(),
    };

    let mut changes = manage(&snapshot, &state);
    if changes.is_empty() && snapshot.is_rolling() {
        changes = if snapshot.allows_surge() {
            rolling_update_surge(&snapshot)
        } else {
            rolling_update(&snapshot)
        };
    }
    apply(&ds, &pod_api, &state, &snapshot, &changes).await?;

    let live_hashes: Vec<String> = owned
        .iter()
        .filter_map(|p| label(p, REVISION_HASH_LABEL))
        .collect();
    history::truncate(
        &state.client,
        &namespace,
        &revisions,
        spec.revision_history_limit.unwrap_or(10),
        |r| {
            let h = history::revision_hash(r);
            h == hash || live_hashes.contains(&h)
        },
    )
    .await?;

    let (ready, available) =
        update_status(&ds, &state, &snapshot, revisions.collision_count).await?;
    let mut requeue = changes.requeue;
    let min_ready = snapshot.min_ready_seconds();
    if min_ready > 0 && ready != available {
        let wait = Duration::from_secs(u64::try_from(min_ready).unwrap_or(1));
        requeue = Some(requeue.map_or(wait, |r| r.min(wait)));
    }
    Ok(requeue.map_or_else(Action::await_change, Action::requeue))
}

/// Upstream's `manage`/`podsShouldBeOnNode`: create missing pods, delete failed, excess and
/// misplaced ones.
fn manage(s: &Snapshot<'_>, state: &State) -> Changes {
    let mut changes = Changes::default();
    let surge = s.allows_surge();
    for node in &s.nodes {
        let node_name = node.name_any();
        let (should_run, should_continue) = placement::should_run(s.ds, node);
        let on_node = s.live_pods_on(&node_name);
        let exists = !on_node.is_empty();
        if should_run && !exists {
            changes.create_on.push(node_name);
            continue;
        }
        if should_continue {
            let mut running: Vec<&Pod> = Vec::new();
            for pod in on_node {
                if pods::is_terminating(pod) {
                    continue;
                }
                match pods::phase(pod) {
                    "Failed" => {
                        let key = format!(
                            "{}/{}/{}",
                            s.ds.uid().unwrap_or_default(),
                            s.ds.metadata.generation.unwrap_or(0),
                            node_name
                        );
                        match failed_pod_backoff(state, &key) {
                            Some(delay) => {
                                changes.requeue =
                                    Some(changes.requeue.map_or(delay, |r| r.min(delay)));
                            }
                            None => changes.delete.push(pod.name_any()),
                        }
                    }
                    "Succeeded" => changes.delete.push(pod.name_any()),
                    _ => running.push(pod),
                }
            }
            sort_oldest_first(&mut running);
            if !surge {
                // Keep the oldest; more than one pod per node is never wanted without surge.
                changes
                    .delete
                    .extend(running.iter().skip(1).map(|p| p.name_any()));
                continue;
            }
            if running.is_empty() {
                if should_run {
                    changes.create_on.push(node_name);
                }
                continue;
            }
            // Surging: keep the oldest new and oldest old pod while the new one is not yet
            // available and the old one still ready; delete everything else.
            let (mut oldest_new, mut oldest_old) = (None, None);
            for pod in running {
                let slot = if s.is_new(pod) {
                    &mut oldest_new
                } else {
                    &mut oldest_old
                };
                if slot.is_none() {
                    *slot = Some(pod);
                } else {
                    changes.delete.push(pod.name_any());
                }
            }
            if let (Some(new), Some(old)) = (oldest_new, oldest_old) {
                if !pods::is_ready(old) || s.available(new) {
                    changes.delete.push(old.name_any());
                }
            }
        } else if exists {
            changes.delete.extend(
                on_node
                    .iter()
                    .filter(|p| !pods::is_terminating(p))
                    .map(|p| p.name_any()),
            );
        }
    }
    // Pods for nodes that no longer exist.
    for (node, list) in &s.by_node {
        if s.nodes.iter().any(|n| n.name_any() == *node) {
            continue;
        }
        for pod in list {
            let bound = pod
                .spec
                .as_ref()
                .and_then(|sp| sp.node_name.as_deref())
                .is_some_and(|n| !n.is_empty());
            if bound {
                changes.force_delete.push(pod.name_any());
            } else if !pods::is_terminating(pod) {
                changes.delete.push(pod.name_any());
            }
        }
    }
    changes
}

/// `Some(delay)` while deleting another failed pod for `key` is held back.
fn failed_pod_backoff(state: &State, key: &str) -> Option<Duration> {
    let mut map = state
        .failed_pod_backoff
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let now = Instant::now();
    map.retain(|_, (last, delay)| {
        now.duration_since(*last) < (*delay * 2).max(FAILED_POD_BACKOFF_MAX)
    });
    match map.get_mut(key) {
        Some((last, delay)) if now.duration_since(*last) < *delay => {
            Some(*delay - now.duration_since(*last))
        }
        Some((last, delay)) => {
            *last = now;
            *delay = (*delay * 2).min(FAILED_POD_BACKOFF_MAX);
            None
        }
        None => {
            map.insert(key.to_owned(), (now, FAILED_POD_BACKOFF_INITIAL));
            None
        }
    }
}

/// The nodes a rolling update looks at: every node with pods plus every node that should run
/// one, in name order.
fn rollout_nodes(s: &Snapshot<'_>) -> Vec<String> {
    let mut names: Vec<String> = s
        .nodes
        .iter()
        .filter(|n| placement::should_run(s.ds, n).0)
        .map(|n| n.name_any())
        .collect();
    names.extend(s.by_node.keys().cloned());
    names.sort();
    names.dedup();
    names
}

/// Upstream's `rollingUpdate` without surge: delete old pods while at most maxUnavailable
/// nodes are without an available pod; unavailable old pods go first and always.
fn rolling_update(s: &Snapshot<'_>) -> Changes {
    let (_, max_unavailable) = rollout_limits(s.spec, s.desired());
    let mut unavailable = 0;
    let mut replace_now = Vec::new();
    let mut candidates = Vec::new();
    for node in rollout_nodes(s) {
        let Some(pair) = s.updated_pods_on(&node) else {
            unavailable += 1;
            continue;
        };
        match pair {
            (None, None) | (Some(_), Some(_)) => unavailable += 1,
            (Some(new), None) => {
                if !s.available(new) {
                    unavailable += 1;
                }
            }
            (None, Some(old)) => {
                if !s.available(old) {
                    replace_now.push(old.name_any());
                } else if unavailable < max_unavailable {
                    candidates.push(old.name_any());
                }
            }
        }
    }
    let room = usize::try_from((max_unavailable - unavailable).max(0)).unwrap_or(0);
    replace_now.extend(candidates.into_iter().take(room));
    Changes {
        delete: replace_now,
        ..Changes::default()
    }
}

/// Upstream's `rollingUpdate` with surge: start new pods beside old ones (at most maxSurge at a
/// time, at once where the old pod is unavailable); old pods go when their replacement is
/// available.
fn rolling_update_surge(s: &Snapshot<'_>) -> Changes {
    let (max_surge, _) = rollout_limits(s.spec, s.desired());
    let mut surging = 0;
    let mut changes = Changes::default();
    let mut allowed = Vec::new();
    let mut candidates = Vec::new();
    for node in rollout_nodes(s) {
        let Some(pair) = s.updated_pods_on(&node) else {
            surging += 1;
            continue;
        };
        match pair {
            (_, None) => {}
            (None, Some(old)) => {
                if !s.available(old) {
                    let should_run = s
                        .nodes
                        .iter()
                        .find(|n| n.name_any() == node)
                        .is_some_and(|n| placement::should_run(s.ds, n).0);
                    if should_run {
                        allowed.push(node);
                    } else {
                        changes.delete.push(old.name_any());
                    }
                } else if surging < max_surge {
                    candidates.push(node);
                }
            }
            (Some(new), Some(old)) => {
                if s.available(new) {
                    changes.delete.push(old.name_any());
                } else {
                    surging += 1;
                }
            }
        }
    }
    let room = usize::try_from((max_surge - surging).max(0)).unwrap_or(0);
    allowed.extend(candidates.into_iter().take(room));
    changes.create_on = allowed;
    changes
}

/// A daemon pod for `node` (upstream's `CreatePodTemplate` + node pinning).
fn new_pod(ds: &DaemonSet, spec: &DaemonSetSpec, node: &str, hash: &str) -> Result<Pod, Error> {
    let template = &spec.template;
    let template_meta = template.metadata.clone().unwrap_or_default();
    let mut labels = template_meta.labels.unwrap_or_default();
    labels.insert(REVISION_HASH_LABEL.into(), hash.to_owned());
    if let Some(generation) = ds.metadata.generation {
        labels.insert(TEMPLATE_GENERATION_LABEL.into(), generation.to_string());
    }
    let owner = ds
        .controller_owner_ref(&())
        .ok_or_else(|| Error::Invalid("daemonset has no uid".into()))?;
    // Only labels, annotations and finalizers come from the template (`GetPodFromTemplate`).
    let metadata = ObjectMeta {
        generate_name: Some(format!("{}-", ds.name_any())),
        namespace: ds.namespace(),
        labels: Some(labels),
        annotations: template_meta.annotations,
        finalizers: template_meta.finalizers,
        owner_references: Some(vec![owner]),
        ..ObjectMeta::default()
    };
    let mut pod_spec = template.spec.clone().unwrap_or_default();
    placement::add_daemon_tolerations(&mut pod_spec);
    pod_spec.affinity = Some(placement::pin_to_node(pod_spec.affinity.take(), node));
    Ok(Pod {
        metadata,
        spec: Some(pod_spec),
        status: None,
    })
}

async fn apply(
    ds: &DaemonSet,
    pod_api: &Api<Pod>,
    state: &State,
    s: &Snapshot<'_>,
    changes: &Changes,
) -> Result<(), Error> {
    let reference = ds.object_ref(&());
    let mut first_error: Option<Error> = None;
    let creates = futures::stream::iter(changes.create_on.clone())
        .map(|node: String| async move {
            let pod = new_pod(ds, s.spec, &node, &s.hash)?;
            pod_api
                .create(&PostParams::default(), &pod)
                .await
                .map_err(Error::from)
        })
        .buffer_unordered(PARALLEL_WRITES)
        .collect::<Vec<_>>()
        .await;
    for result in creates {
        match result {
            Ok(pod) => {
                let name = pod.name_any();
                tracing::info!(daemonset = %ds.name_any(), pod = %name, "created daemon pod");
                state
                    .events
                    .normal(
                        &reference,
                        "SuccessfulCreate",
                        format!("Created pod: {name}"),
                    )
                    .await;
            }
            Err(e) => {
                state
                    .events
                    .warning(&reference, "FailedCreate", format!("Error creating: {e}"))
                    .await;
                first_error.get_or_insert(e);
            }
        }
    }
    let mut deletes: Vec<(String, DeleteParams)> = Vec::new();
    for name in &changes.delete {
        deletes.push((name.clone(), DeleteParams::default()));
    }
    for name in &changes.force_delete {
        deletes.push((name.clone(), DeleteParams::default().grace_period(0)));
    }
    let results = futures::stream::iter(deletes)
        .map(|(name, params): (String, DeleteParams)| async move {
            let result = pod_api.delete(&name, &params).await;
            (name, result)
        })
        .buffer_unordered(PARALLEL_WRITES)
        .collect::<Vec<_>>()
        .await;
    for (name, result) in results {
        match result {
            Ok(_) => {
                tracing::info!(daemonset = %ds.name_any(), pod = %name, "deleted daemon pod");
                state
                    .events
                    .normal(
                        &reference,
                        "SuccessfulDelete",
                        format!("Deleted pod: {name}"),
                    )
                    .await;
            }
            Err(kube::Error::Api(e)) if e.code == 404 => {}
            Err(e) => {
                state
                    .events
                    .warning(&reference, "FailedDelete", format!("Error deleting: {e}"))
                    .await;
                first_error.get_or_insert(e.into());
            }
        }
    }
    first_error.map_or(Ok(()), Err)
}

/// Upstream's `updateDaemonSetStatus`; returns (numberReady, numberAvailable).
async fn update_status(
    ds: &DaemonSet,
    state: &State,
    s: &Snapshot<'_>,
    collision_count: i32,
) -> Result<(i32, i32), Error> {
    let (mut desired, mut current, mut misscheduled) = (0, 0, 0);
    let (mut ready, mut available, mut updated) = (0, 0, 0);
    for node in &s.nodes {
        let (should_run, _) = placement::should_run(s.ds, node);
        let mut on_node: Vec<&Pod> = s.by_node.get(&node.name_any()).cloned().unwrap_or_default();
        if !should_run {
            if !on_node.is_empty() {
                misscheduled += 1;
            }
            continue;
        }
        desired += 1;
        sort_oldest_first(&mut on_node);
        let Some(pod) = on_node.first() else {
            continue;
        };
        current += 1;
        if pods::is_ready(pod) {
            ready += 1;
            if s.available(pod) {
                available += 1;
            }
        }
        if s.is_new(pod) {
            updated += 1;
        }
    }
    let old = ds.status.clone().unwrap_or_default();
    let generation = ds.metadata.generation;
    let unchanged = old.desired_number_scheduled == desired
        && old.current_number_scheduled == current
        && old.number_misscheduled == misscheduled
        && old.number_ready == ready
        && old.updated_number_scheduled.unwrap_or(0) == updated
        && old.number_available.unwrap_or(0) == available
        && old.number_unavailable.unwrap_or(0) == desired - available
        && old.observed_generation >= generation
        && old.collision_count.unwrap_or(0) == collision_count;
    if unchanged {
        return Ok((ready, available));
    }
    let mut status = json!({
        "observedGeneration": generation,
        "desiredNumberScheduled": desired,
        "currentNumberScheduled": current,
        "numberMisscheduled": misscheduled,
        "numberReady": ready,
        "updatedNumberScheduled": updated,
        "numberAvailable": available,
        "numberUnavailable": desired - available,
    });
    if collision_count != 0 {
        status["collisionCount"] = json!(collision_count);
    }
    let api: Api<DaemonSet> =
        Api::namespaced(state.client.clone(), &ds.namespace().unwrap_or_default());
    match api
        .patch_status(
            &ds.name_any(),
            &PatchParams::default(),
            &Patch::Merge(json!({ "status": status })),
        )
        .await
    {
        Ok(_) => Ok((ready, available)),
        Err(kube::Error::Api(e)) if e.code == 404 => Ok((ready, available)),
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scaled_values_round_percentages_up() {
        assert_eq!(scaled(Some(&IntOrString::Int(2)), 10, 1), 2);
        assert_eq!(scaled(Some(&IntOrString::String("25%".into())), 10, 1), 3);
        assert_eq!(scaled(Some(&IntOrString::String("0%".into())), 10, 1), 0);
        assert_eq!(scaled(None, 10, 1), 1);
    }

    #[test]
    fn zero_surge_and_unavailable_means_one_unavailable() {
        let spec: DaemonSetSpec = serde_json::from_value(json!({
            "selector": {"matchLabels": {"a": "b"}},
            "template": {"spec": {"containers": [{"name": "c", "image": "i"}]}},
            "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 0}}
        }))
        .unwrap();
        assert_eq!(rollout_limits(&spec, 3), (0, 1));
    }
}
