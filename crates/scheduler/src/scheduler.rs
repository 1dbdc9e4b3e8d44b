//! The loop: watch nodes, pods and namespaces into the cache and the queue; take pods off the
//! queue, pick a node, assume the pod there (so the next pod sees the capacity used) and bind it
//! in the background, up to `parallelism` bindings at a time.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use futures::{Stream, StreamExt};
use k8s_openapi::api::core::v1::{
    Binding, Namespace, Node, ObjectReference, PersistentVolume, PersistentVolumeClaim, Pod,
};
use k8s_openapi::api::storage::v1::StorageClass;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, PostParams};
use kube::runtime::watcher::{self, watcher, Event};
use kube::runtime::WatchStreamExt;
use rand::SeedableRng;
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::cache::{self, Cache, ClaimInfo, NodeChange, PodRecord};
use crate::framework;
use crate::queue::{QueueTiming, SchedulingQueue};
use crate::reporter::{PodRef, Report, Reporter};
use crate::Config;

/// What the watch tasks feed the loop.
enum Input {
    Pod(Box<Event<Pod>>),
    Node(Box<Event<Node>>),
    Namespace(Box<Event<Namespace>>),
    Claim(Box<Event<PersistentVolumeClaim>>),
    Volume(Box<Event<PersistentVolume>>),
    StorageClass(Box<Event<StorageClass>>),
}

/// Forward a watch stream into the loop's channel, logging (and riding out) watch errors.
fn forward<K, S>(
    stream: S,
    tx: mpsc::Sender<Input>,
    wrap: fn(Event<K>) -> Input,
    what: &'static str,
) where
    S: Stream<Item = Result<Event<K>, watcher::Error>> + Send + 'static,
    K: Send + 'static,
{
    tokio::spawn(async move {
        let mut stream = std::pin::pin!(stream);
        while let Some(item) = stream.next().await {
            match item {
                Ok(ev) => {
                    if tx.send(wrap(ev)).await.is_err() {
                        return;
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, resource = what, "scheduler watch failed; retrying")
                }
            }
        }
    });
}

/// A binding in flight.
struct InFlight {
    node: String,
    /// The watch already showed the pod on its node.
    confirmed: bool,
}

/// How a binding ended.
struct BindOutcome {
    uid: String,
    pod: PodRef,
    node: String,
    result: Result<(), kube::Error>,
}

/// Objects seen since a watch (re)started, to drop the ones a relist no longer has.
#[derive(Default)]
struct Relist {
    active: bool,
    seen: HashSet<String>,
    /// The first list completed.
    synced: bool,
}

struct State {
    config: Config,
    client: kube::Client,
    cache: Cache,
    queue: SchedulingQueue,
    in_flight: HashMap<String, InFlight>,
    reporter: Reporter,
    rng: rand::rngs::SmallRng,
    pods_synced: bool,
    nodes_synced: bool,
    pod_relist: Relist,
    node_relist: Relist,
    namespace_relist: Relist,
    claim_relist: Relist,
    volume_relist: Relist,
    class_relist: Relist,
    scheduled: u64,
}

/// Keeps `map` (name -> summary) in step with a watch; true when a summary changed.
fn apply_keyed<K, V: PartialEq>(
    map: &mut HashMap<String, V>,
    relist: &mut Relist,
    ev: Event<K>,
    key: fn(&K) -> Option<String>,
    value: fn(&K) -> V,
) -> bool {
    match ev {
        Event::Apply(obj) | Event::InitApply(obj) => {
            let Some(k) = key(&obj) else { return false };
            if relist.active {
                relist.seen.insert(k.clone());
            }
            let v = value(&obj);
            if map.get(&k) == Some(&v) {
                return false;
            }
            map.insert(k, v);
            true
        }
        Event::Delete(obj) => key(&obj).is_some_and(|k| map.remove(&k).is_some()),
        Event::Init => {
            relist.active = true;
            relist.seen.clear();
            false
        }
        Event::InitDone => {
            relist.active = false;
            relist.synced = true;
            let seen = std::mem::take(&mut relist.seen);
            let before = map.len();
            map.retain(|k, _| seen.contains(k));
            map.len() != before
        }
    }
}

fn uid(pod: &Pod) -> Option<&str> {
    pod.metadata.uid.as_deref().filter(|u| !u.is_empty())
}

fn assigned_node(pod: &Pod) -> Option<&str> {
    pod.spec
        .as_ref()
        .and_then(|s| s.node_name.as_deref())
        .filter(|n| !n.is_empty())
}

fn is_terminal(pod: &Pod) -> bool {
    matches!(
        pod.status.as_ref().and_then(|s| s.phase.as_deref()),
        Some("Succeeded" | "Failed")
    )
}

/// The PodScheduled condition's lastTransitionTime to write for `message`, or None when the pod
/// already carries exactly that condition (upstream writes the condition only when it changes).
fn condition_update(pod: &Pod, message: &str, now: Timestamp) -> Option<Timestamp> {
    let current = pod
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|cs| cs.iter().find(|c| c.type_ == "PodScheduled"));
    match current {
        Some(c)
            if c.status == "False"
                && c.reason.as_deref() == Some("Unschedulable")
                && c.message.as_deref() == Some(message) =>
        {
            None
        }
        Some(c) if c.status == "False" => {
            Some(c.last_transition_time.as_ref().map(|t| t.0).unwrap_or(now))
        }
        _ => Some(now),
    }
}

impl State {
    fn is_ours(&self, pod: &Pod) -> bool {
        let name = pod
            .spec
            .as_ref()
            .and_then(|s| s.scheduler_name.as_deref())
            .filter(|n| !n.is_empty())
            .unwrap_or("default-scheduler");
        name == self.config.scheduler_name
    }

    /// Whether the queue should hold this unassigned pod.
    fn wants(&self, pod: &Pod) -> bool {
        self.is_ours(pod)
            && pod.metadata.deletion_timestamp.is_none()
            && !is_terminal(pod)
            && pod
                .spec
                .as_ref()
                .and_then(|s| s.scheduling_gates.as_ref())
                .is_none_or(|g| g.is_empty())
    }

    fn on_pod(&mut self, pod: Pod, now: Instant) {
        let Some(uid) = uid(&pod).map(str::to_string) else {
            return;
        };
        if self.pod_relist.active {
            self.pod_relist.seen.insert(uid.clone());
        }
        match assigned_node(&pod) {
            Some(node) => {
                self.queue.remove(&uid);
                if let Some(f) = self.in_flight.get_mut(&uid) {
                    f.confirmed = true;
                }
                if is_terminal(&pod) {
                    if self.cache.remove_pod(&uid).is_some() {
                        self.queue.move_all_unschedulable(now);
                    }
                } else {
                    let unchanged = self.cache.pods.get(&uid).is_some_and(|r| {
                        r.node == node
                            && r.terminating == pod.metadata.deletion_timestamp.is_some()
                            && r.labels == *crate::selectors::pod_labels(&pod)
                    });
                    if !unchanged {
                        self.cache.add_pod(&uid, PodRecord::new(&pod, node));
                    }
                }
            }
            None => {
                if self.in_flight.contains_key(&uid) {
                    // Assumed on a node; an older version without the node changes nothing.
                    return;
                }
                if self.wants(&pod) {
                    self.queue.add_or_update(&uid, Arc::new(pod), now);
                } else {
                    self.queue.remove(&uid);
                }
            }
        }
    }

    fn on_pod_deleted(&mut self, uid: &str, now: Instant) {
        self.queue.remove(uid);
        if self.cache.remove_pod(uid).is_some() {
            self.queue.move_all_unschedulable(now);
        }
    }

    fn on_pod_event(&mut self, ev: Event<Pod>, now: Instant) {
        match ev {
            Event::Apply(pod) | Event::InitApply(pod) => self.on_pod(pod, now),
            Event::Delete(pod) => {
                if let Some(uid) = uid(&pod) {
                    self.on_pod_deleted(uid, now);
                }
            }
            Event::Init => {
                self.pod_relist.active = true;
                self.pod_relist.seen.clear();
            }
            Event::InitDone => {
                let seen = std::mem::take(&mut self.pod_relist.seen);
                self.pod_relist.active = false;
                let gone: Vec<String> = self
                    .cache
                    .pods
                    .keys()
                    .filter(|u| !seen.contains(*u) && !self.in_flight.contains_key(*u))
                    .cloned()
                    .collect();
                for u in gone {
                    self.on_pod_deleted(&u, now);
                }
                self.pods_synced = true;
            }
        }
    }

    fn on_node_event(&mut self, ev: Event<Node>, now: Instant) {
        match ev {
            Event::Apply(node) | Event::InitApply(node) => {
                if self.node_relist.active {
                    if let Some(name) = &node.metadata.name {
                        self.node_relist.seen.insert(name.clone());
                    }
                }
                if self.cache.set_node(node) != NodeChange::Unchanged {
                    self.queue.move_all_unschedulable(now);
                }
            }
            Event::Delete(node) => {
                if let Some(name) = &node.metadata.name {
                    self.cache.remove_node(name);
                }
            }
            Event::Init => {
                self.node_relist.active = true;
                self.node_relist.seen.clear();
            }
            Event::InitDone => {
                let seen = std::mem::take(&mut self.node_relist.seen);
                self.node_relist.active = false;
                let gone: Vec<String> = self
                    .cache
                    .nodes
                    .iter()
                    .filter(|(name, info)| info.node.is_some() && !seen.contains(*name))
                    .map(|(name, _)| name.clone())
                    .collect();
                for name in gone {
                    self.cache.remove_node(&name);
                }
                self.nodes_synced = true;
                self.queue.move_all_unschedulable(now);
            }
        }
    }

    fn on_input(&mut self, input: Input, now: Instant) {
        match input {
            Input::Pod(ev) => self.on_pod_event(*ev, now),
            Input::Node(ev) => self.on_node_event(*ev, now),
            Input::Namespace(ev) => {
                let changed = apply_keyed(
                    &mut self.cache.namespaces,
                    &mut self.namespace_relist,
                    *ev,
                    |ns| ns.metadata.name.clone(),
                    |ns| ns.metadata.labels.clone().unwrap_or_default(),
                );
                if changed && !self.cache.anti_affinity_pods.is_empty() {
                    self.queue.move_all_unschedulable(now);
                }
            }
            Input::Claim(ev) => {
                let changed = apply_keyed(
                    &mut self.cache.claims,
                    &mut self.claim_relist,
                    *ev,
                    |c| {
                        Some(format!(
                            "{}/{}",
                            c.metadata.namespace.as_deref()?,
                            c.metadata.name.as_deref()?
                        ))
                    },
                    ClaimInfo::new,
                );
                if changed {
                    self.queue.move_all_unschedulable(now);
                }
            }
            Input::Volume(ev) => {
                let changed = apply_keyed(
                    &mut self.cache.volumes,
                    &mut self.volume_relist,
                    *ev,
                    |pv| pv.metadata.name.clone(),
                    cache::volume_node_affinity,
                );
                if changed {
                    self.queue.move_all_unschedulable(now);
                }
            }
            Input::StorageClass(ev) => {
                let changed = apply_keyed(
                    &mut self.cache.storage_classes,
                    &mut self.class_relist,
                    *ev,
                    |c| c.metadata.name.clone(),
                    cache::waits_for_first_consumer,
                );
                if changed {
                    self.queue.move_all_unschedulable(now);
                }
            }
        }
    }

    /// Schedule queued pods while bindings may start.
    fn schedule_ready(&mut self, binds: &mut JoinSet<BindOutcome>) {
        let synced = self.pods_synced
            && self.nodes_synced
            && [
                &self.namespace_relist,
                &self.claim_relist,
                &self.volume_relist,
                &self.class_relist,
            ]
            .iter()
            .all(|r| r.synced);
        if !synced {
            return;
        }
        while binds.len() < self.config.parallelism {
            let Some((uid, pod)) = self.queue.pop() else {
                break;
            };
            let now = Instant::now();
            match framework::schedule(&pod, &self.cache, &mut self.rng) {
                Ok(node) => {
                    self.cache.add_pod(&uid, PodRecord::new(&pod, &node));
                    self.in_flight.insert(
                        uid.clone(),
                        InFlight {
                            node: node.clone(),
                            confirmed: false,
                        },
                    );
                    binds.spawn(bind(self.client.clone(), uid, PodRef::new(&pod), node));
                }
                Err(message) => {
                    tracing::debug!(pod = ?pod.metadata.name, %message, "unschedulable");
                    self.queue.unschedulable(&uid, now);
                    let condition = condition_update(&pod, &message, Timestamp::now());
                    self.reporter.send(Report::Failed {
                        pod: PodRef::new(&pod),
                        message,
                        condition,
                    });
                }
            }
        }
    }

    fn on_bind(&mut self, outcome: BindOutcome, now: Instant) {
        let Some(flight) = self.in_flight.remove(&outcome.uid) else {
            return;
        };
        match outcome.result {
            Ok(()) => {
                self.scheduled += 1;
                self.queue.remove(&outcome.uid);
                self.reporter.send(Report::Scheduled {
                    pod: outcome.pod,
                    node: outcome.node,
                });
            }
            Err(e) => {
                if !flight.confirmed {
                    // Forget the assumption; the capacity it held is free again.
                    if self
                        .cache
                        .pods
                        .get(&outcome.uid)
                        .is_some_and(|r| r.node == flight.node)
                    {
                        self.cache.remove_pod(&outcome.uid);
                        self.queue.move_all_unschedulable(now);
                    }
                }
                match &e {
                    kube::Error::Api(s) if s.code == 404 => self.queue.remove(&outcome.uid),
                    kube::Error::Api(s) if s.code == 409 => {
                        // Being deleted, or already bound: the watch tells the rest.
                        tracing::debug!(pod = %outcome.pod.name, error = %s.message, "binding conflict");
                        self.queue.remove(&outcome.uid);
                    }
                    _ => {
                        tracing::warn!(pod = %outcome.pod.name, namespace = %outcome.pod.namespace,
                            node = %outcome.node, error = %e, "binding failed");
                        self.queue.retry_later(&outcome.uid, now);
                        self.reporter.send(Report::Failed {
                            pod: outcome.pod,
                            message: format!("Binding rejected: {e}"),
                            condition: None,
                        });
                    }
                }
            }
        }
    }
}

async fn bind(client: kube::Client, uid: String, pod: PodRef, node: String) -> BindOutcome {
    let api: Api<Pod> = Api::namespaced(client, &pod.namespace);
    let binding = Binding {
        metadata: ObjectMeta {
            name: Some(pod.name.clone()),
            namespace: Some(pod.namespace.clone()),
            uid: Some(pod.uid.clone()),
            ..ObjectMeta::default()
        },
        target: ObjectReference {
            api_version: Some("v1".into()),
            kind: Some("Node".into()),
            name: Some(node.clone()),
            ..ObjectReference::default()
        },
    };
    let result = api
        .create_subresource::<_, serde_json::Value>(
            "binding",
            &pod.name,
            &PostParams::default(),
            &binding,
        )
        .await
        .map(|_| ());
    BindOutcome {
        uid,
        pod,
        node,
        result,
    }
}

/// Run the scheduler until the process ends.
pub async fn run(client: kube::Client, config: Config) {
    let (tx, mut rx) = mpsc::channel::<Input>(4096);
    let config_watch = watcher::Config::default().page_size(1000);
    forward(
        watcher(Api::<Pod>::all(client.clone()), config_watch.clone())
            .modify(|p| p.metadata.managed_fields = None)
            .default_backoff(),
        tx.clone(),
        |e| Input::Pod(Box::new(e)),
        "pods",
    );
    forward(
        watcher(Api::<Node>::all(client.clone()), config_watch.clone()).default_backoff(),
        tx.clone(),
        |e| Input::Node(Box::new(e)),
        "nodes",
    );
    forward(
        watcher(Api::<Namespace>::all(client.clone()), config_watch.clone()).default_backoff(),
        tx.clone(),
        |e| Input::Namespace(Box::new(e)),
        "namespaces",
    );
    forward(
        watcher(
            Api::<PersistentVolumeClaim>::all(client.clone()),
            config_watch.clone(),
        )
        .default_backoff(),
        tx.clone(),
        |e| Input::Claim(Box::new(e)),
        "persistentvolumeclaims",
    );
    forward(
        watcher(
            Api::<PersistentVolume>::all(client.clone()),
            config_watch.clone(),
        )
        .default_backoff(),
        tx.clone(),
        |e| Input::Volume(Box::new(e)),
        "persistentvolumes",
    );
    forward(
        watcher(Api::<StorageClass>::all(client.clone()), config_watch).default_backoff(),
        tx,
        |e| Input::StorageClass(Box::new(e)),
        "storageclasses",
    );
    let mut state = State {
        queue: SchedulingQueue::new(QueueTiming {
            initial_backoff: config.initial_backoff,
            max_backoff: config.max_backoff,
            unschedulable_flush: config.unschedulable_flush,
        }),
        reporter: Reporter::spawn(client.clone(), config.scheduler_name.clone()),
        config,
        client,
        cache: Cache::default(),
        in_flight: HashMap::new(),
        rng: rand::rngs::SmallRng::from_os_rng(),
        pods_synced: false,
        nodes_synced: false,
        pod_relist: Relist::default(),
        node_relist: Relist::default(),
        namespace_relist: Relist::default(),
        claim_relist: Relist::default(),
        volume_relist: Relist::default(),
        class_relist: Relist::default(),
        scheduled: 0,
    };
    let mut binds: JoinSet<BindOutcome> = JoinSet::new();
    tracing::info!(scheduler = %state.config.scheduler_name, "scheduler starting");
    loop {
        state.schedule_ready(&mut binds);
        let now = Instant::now();
        let wake = state
            .queue
            .tick(now)
            .unwrap_or(now + std::time::Duration::from_secs(3600));
        if state.queue.has_active() && binds.len() < state.config.parallelism {
            continue;
        }
        tokio::select! {
            input = rx.recv() => {
                let Some(input) = input else { return };
                let now = Instant::now();
                state.on_input(input, now);
                // Take whatever else is already there before scheduling again.
                for _ in 0..1024 {
                    match rx.try_recv() {
                        Ok(input) => state.on_input(input, now),
                        Err(_) => break,
                    }
                }
            }
            Some(done) = binds.join_next(), if !binds.is_empty() => {
                if let Ok(outcome) = done {
                    state.on_bind(outcome, Instant::now());
                }
            }
            _ = tokio::time::sleep_until(wake) => {}
        }
    }
}
