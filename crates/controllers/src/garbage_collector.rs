//! The garbage collector (upstream pkg/controller/garbagecollector): deletes objects whose
//! owners are all gone, and carries out Foreground and Orphan deletion.
//!
//! - Monitors: a metadata-only watch on every resource discovery lists with list, watch and
//!   delete (except events), re-discovered periodically so custom resources join in.
//! - The graph builder turns watch events into the [`graph::Graph`] of ownerReferences and
//!   queues work: dependents of a deleted owner, owners entering foreground or orphan deletion,
//!   owners only known from references (to verify they exist).
//! - Workers (upstream `attemptToDelete` / `attemptToOrphan`) check the live objects and act:
//!   an object whose owners are all absent (an owner with the same name but another uid is
//!   absent) is deleted — Background, unless it carries the `orphan` / `foregroundDeletion`
//!   finalizer already, or is itself an owner of an owner in foreground deletion (then
//!   Foreground); references to absent owners are removed from objects that keep a live owner;
//!   an owner in foreground deletion loses its `foregroundDeletion` finalizer once no dependent
//!   with `blockOwnerDeletion` remains; an orphaning owner has its references removed from
//!   every dependent, then loses its `orphan` finalizer.
//!
//! Not a kube-runtime `Controller`: the keys are uids across every resource and the work comes
//! from graph transitions, so this is upstream's design (graph + rate-limited work queue).

mod graph;
mod queue;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::api::{
    Api, ApiResource, DeleteParams, DynamicObject, PartialObjectMeta, Patch, PatchParams,
    Preconditions, PropagationPolicy,
};
use kube::discovery::{verbs, Discovery, Scope};
use kube::runtime::watcher::{self, Event};
use kube::runtime::WatchStreamExt;
use kube::ResourceExt;
use serde_json::json;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::{Context, Error};
use graph::{Graph, Identity, Observed, Work, FOREGROUND_FINALIZER, ORPHAN_FINALIZER};
use queue::WorkQueue;

/// How often discovery runs again to pick up new resources (upstream 30 s).
const DISCOVERY_PERIOD: Duration = Duration::from_secs(30);
/// Retry delay after a failed discovery.
const DISCOVERY_RETRY: Duration = Duration::from_secs(2);
/// Workers start once every monitor has listed, or after this long at the latest.
const SYNC_PATIENCE: Duration = Duration::from_secs(30);
const WORKERS: usize = 8;
const RETRY_BASE: Duration = Duration::from_millis(10);
const RETRY_MAX: Duration = Duration::from_secs(60);
/// Retry delay for a reference to a kind discovery does not know (yet).
const UNKNOWN_KIND_RETRY: Duration = Duration::from_secs(30);
/// Bound of the absent-owner cache (upstream: an LRU of 500).
const ABSENT_CACHE_SIZE: usize = 1000;

type Meta = PartialObjectMeta<DynamicObject>;

/// A watch event for the graph builder.
enum GraphEvent {
    Upsert(Observed),
    Delete(String),
    ResyncStart(String),
    ResyncEnd(String),
}

/// What discovery says about a kind.
#[derive(Clone)]
struct KindInfo {
    resource: ApiResource,
    namespaced: bool,
}

#[derive(Default)]
struct Kinds {
    /// (group, kind) → served versions, preferred first.
    by_group_kind: HashMap<(String, String), Vec<(String, KindInfo)>>,
}

impl Kinds {
    fn resolve(&self, api_version: &str, kind: &str) -> Option<KindInfo> {
        let (group, version) = api_version.rsplit_once('/').unwrap_or(("", api_version));
        let versions = self
            .by_group_kind
            .get(&(group.to_string(), kind.to_string()))?;
        versions
            .iter()
            .find(|(v, _)| v == version)
            .or(versions.first())
            .map(|(_, info)| info.clone())
    }
}

struct GarbageCollector {
    client: kube::Client,
    graph: Mutex<Graph>,
    queue: Arc<WorkQueue<Work>>,
    kinds: RwLock<Kinds>,
    absent_owners: Mutex<HashSet<(String, Option<String>)>>,
}

/// The outcome of one work item.
enum Outcome {
    Done,
    /// Not finished; look again after the item's (growing) retry delay.
    Retry,
    /// Waiting on something slow (discovery): look again after this long.
    RetryAfter(Duration),
}

pub async fn run(ctx: Context) {
    let gc = Arc::new(GarbageCollector {
        client: ctx.client.clone(),
        graph: Mutex::new(Graph::default()),
        queue: WorkQueue::new(RETRY_BASE, RETRY_MAX),
        kinds: RwLock::new(Kinds::default()),
        absent_owners: Mutex::new(HashSet::new()),
    });
    let (events_tx, events_rx) = mpsc::channel::<GraphEvent>(4096);
    let (synced_tx, synced_rx) = tokio::sync::watch::channel(false);
    let pending_sync: Arc<Mutex<Option<HashSet<String>>>> = Arc::new(Mutex::new(None));
    // Every task is tied to this future: when it is dropped (leadership lost, shutdown), the
    // builder, the workers and the monitors stop with it.
    let mut tasks: Vec<AbortOnDrop> = Vec::new();
    tasks.push(AbortOnDrop(tokio::spawn(build_graph(
        gc.clone(),
        events_rx,
        pending_sync.clone(),
        synced_tx,
    ))));
    for _ in 0..WORKERS {
        let gc = gc.clone();
        let mut synced = synced_rx.clone();
        tasks.push(AbortOnDrop(tokio::spawn(async move {
            let _ = tokio::time::timeout(SYNC_PATIENCE, synced.wait_for(|s| *s)).await;
            gc.work().await;
        })));
    }
    let mut monitors: HashMap<String, AbortOnDrop> = HashMap::new();
    loop {
        match discover(&gc.client).await {
            Ok((kinds, deletable)) => {
                *gc.kinds.write().unwrap_or_else(|e| e.into_inner()) = kinds;
                let keys: HashSet<String> = deletable.iter().map(|(k, _)| k.clone()).collect();
                {
                    let mut pending = lock(&pending_sync);
                    if pending.is_none() {
                        *pending = Some(keys.clone());
                    }
                }
                monitors.retain(|key, task| {
                    let keep = keys.contains(key) && !task.0.is_finished();
                    if !keep {
                        tracing::debug!(resource = %key, "garbage collector stops watching");
                    }
                    keep
                });
                for (key, info) in deletable {
                    if let std::collections::hash_map::Entry::Vacant(slot) = monitors.entry(key) {
                        let key = slot.key().clone();
                        tracing::debug!(resource = %key, "garbage collector watches");
                        slot.insert(AbortOnDrop(tokio::spawn(monitor(
                            gc.client.clone(),
                            info,
                            key,
                            events_tx.clone(),
                        ))));
                    }
                }
                tokio::time::sleep(DISCOVERY_PERIOD).await;
            }
            Err(e) => {
                tracing::warn!(error = %e, "garbage collector discovery failed");
                tokio::time::sleep(DISCOVERY_RETRY).await;
            }
        }
    }
}

/// A spawned task that is aborted when its handle is dropped.
struct AbortOnDrop(JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Every kind the server serves, and the resources to watch (key: group/version/plural).
async fn discover(client: &kube::Client) -> Result<(Kinds, Vec<(String, KindInfo)>), Error> {
    let discovery = match Discovery::new(client.clone()).run_aggregated().await {
        Ok(d) => d,
        Err(_) => Discovery::new(client.clone())
            .run()
            .await
            .map_err(|e| Error::Discovery(e.to_string()))?,
    };
    let mut kinds = Kinds::default();
    let mut deletable = Vec::new();
    for group in discovery.groups() {
        let preferred = group.preferred_version_or_latest().to_string();
        let mut versions: Vec<&str> = group.versions().collect();
        versions.sort_by_key(|v| *v != preferred);
        for version in versions {
            for (resource, caps) in group.versioned_resources(version) {
                let info = KindInfo {
                    namespaced: caps.scope == Scope::Namespaced,
                    resource: resource.clone(),
                };
                kinds
                    .by_group_kind
                    .entry((resource.group.clone(), resource.kind.clone()))
                    .or_default()
                    .push((version.to_string(), info));
            }
        }
        for (resource, caps) in group.recommended_resources() {
            let watchable = [verbs::LIST, verbs::WATCH, verbs::DELETE]
                .iter()
                .all(|v| caps.supports_operation(v));
            if !watchable || resource.plural == "events" {
                continue;
            }
            let key = format!(
                "{}/{}/{}",
                resource.group, resource.version, resource.plural
            );
            deletable.push((
                key,
                KindInfo {
                    namespaced: caps.scope == Scope::Namespaced,
                    resource,
                },
            ));
        }
    }
    Ok((kinds, deletable))
}

/// Watches the metadata of one resource and feeds the graph builder.
async fn monitor(
    client: kube::Client,
    info: KindInfo,
    key: String,
    events: mpsc::Sender<GraphEvent>,
) {
    let api: Api<Meta> = Api::all_with(client, &info.resource);
    let mut stream = watcher::watcher(api, watcher::Config::default())
        .default_backoff()
        .boxed();
    while let Some(event) = stream.next().await {
        let graph_event = match event {
            Ok(Event::Init) => GraphEvent::ResyncStart(key.clone()),
            Ok(Event::InitDone) => GraphEvent::ResyncEnd(key.clone()),
            Ok(Event::Apply(obj) | Event::InitApply(obj)) => {
                match observed(&obj, &info.resource, &key) {
                    Some(o) => GraphEvent::Upsert(o),
                    None => continue,
                }
            }
            Ok(Event::Delete(obj)) => match obj.metadata.uid {
                Some(uid) => GraphEvent::Delete(uid),
                None => continue,
            },
            Err(e) => {
                tracing::debug!(resource = %key, error = %e, "garbage collector watch failed");
                continue;
            }
        };
        if events.send(graph_event).await.is_err() {
            return;
        }
    }
}

fn observed(obj: &Meta, resource: &ApiResource, key: &str) -> Option<Observed> {
    let uid = obj.metadata.uid.clone()?;
    Some(Observed {
        identity: Identity {
            api_version: resource.api_version.clone(),
            kind: resource.kind.clone(),
            namespace: obj.metadata.namespace.clone(),
            name: obj.metadata.name.clone().unwrap_or_default(),
            uid,
        },
        owners: obj.metadata.owner_references.clone().unwrap_or_default(),
        being_deleted: obj.metadata.deletion_timestamp.is_some(),
        finalizers: obj.metadata.finalizers.clone().unwrap_or_default(),
        resource: key.to_string(),
    })
}

/// The single writer of the graph: applies watch events in order and queues the work they
/// cause.
async fn build_graph(
    gc: Arc<GarbageCollector>,
    mut events: mpsc::Receiver<GraphEvent>,
    pending_sync: Arc<Mutex<Option<HashSet<String>>>>,
    synced: tokio::sync::watch::Sender<bool>,
) {
    let mut relisting: HashMap<String, HashSet<String>> = HashMap::new();
    while let Some(event) = events.recv().await {
        let work = match event {
            GraphEvent::Upsert(obj) => {
                if let Some(seen) = relisting.get_mut(&obj.resource) {
                    seen.insert(obj.identity.uid.clone());
                }
                lock(&gc.graph).upsert(obj)
            }
            GraphEvent::Delete(uid) => {
                let mut graph = lock(&gc.graph);
                if graph.get(&uid).is_some_and(|n| !n.dependents.is_empty()) {
                    gc.remember_absent(&uid, None);
                }
                graph.remove(&uid)
            }
            GraphEvent::ResyncStart(key) => {
                relisting.insert(key, HashSet::new());
                Vec::new()
            }
            GraphEvent::ResyncEnd(key) => {
                let seen = relisting.remove(&key).unwrap_or_default();
                let mut graph = lock(&gc.graph);
                // Objects deleted while the watch was down.
                let gone: Vec<String> = graph
                    .observed_of(&key)
                    .into_iter()
                    .filter(|uid| !seen.contains(uid))
                    .collect();
                let mut work = Vec::new();
                for uid in gone {
                    work.extend(graph.remove(&uid));
                }
                drop(graph);
                let mut pending = lock(&pending_sync);
                if let Some(p) = pending.as_mut() {
                    p.remove(&key);
                    if p.is_empty() {
                        tracing::debug!(
                            nodes = lock(&gc.graph).len(),
                            "garbage collector graph synced"
                        );
                        let _ = synced.send(true);
                    }
                }
                work
            }
        };
        for w in work {
            gc.queue.add(w);
        }
    }
}

impl GarbageCollector {
    async fn work(self: Arc<Self>) {
        loop {
            let item = self.queue.get().await;
            let outcome = match &item {
                Work::Delete(uid) => self.attempt_to_delete(uid).await,
                Work::Orphan(uid) => self.attempt_to_orphan(uid).await,
            };
            self.queue.done(&item);
            match outcome {
                Ok(Outcome::Done) => self.queue.forget(&item),
                Ok(Outcome::Retry) => self.queue.add_rate_limited(item),
                Ok(Outcome::RetryAfter(delay)) => self.queue.add_after(item, delay),
                Err(e) => {
                    tracing::debug!(item = ?item, error = %e, "garbage collector retries");
                    self.queue.add_rate_limited(item);
                }
            }
        }
    }

    fn node(&self, uid: &str) -> Option<graph::Node> {
        lock(&self.graph).get(uid).cloned()
    }

    fn enqueue_removal(&self, uid: &str) {
        let work = lock(&self.graph).remove(uid);
        for w in work {
            self.queue.add(w);
        }
    }

    fn resolve(&self, api_version: &str, kind: &str) -> Option<KindInfo> {
        self.kinds
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .resolve(api_version, kind)
    }

    fn api(&self, info: &KindInfo, namespace: Option<&str>) -> Api<Meta> {
        match (info.namespaced, namespace) {
            (true, Some(ns)) => Api::namespaced_with(self.client.clone(), ns, &info.resource),
            _ => Api::all_with(self.client.clone(), &info.resource),
        }
    }

    /// The live metadata of `id`, None when absent (404 or another uid under that name).
    async fn get_live(&self, info: &KindInfo, id: &Identity) -> Result<Option<Meta>, Error> {
        match self.api(info, id.namespace.as_deref()).get(&id.name).await {
            Ok(obj) if obj.metadata.uid.as_deref() == Some(id.uid.as_str()) => Ok(Some(obj)),
            Ok(_) => Ok(None),
            Err(kube::Error::Api(e)) if e.code == 404 => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    fn remember_absent(&self, uid: &str, namespace: Option<&str>) {
        let mut cache = lock(&self.absent_owners);
        if cache.len() >= ABSENT_CACHE_SIZE {
            cache.clear();
        }
        cache.insert((uid.to_string(), namespace.map(str::to_string)));
    }

    fn known_absent(&self, uid: &str, namespace: Option<&str>) -> bool {
        let cache = lock(&self.absent_owners);
        cache.contains(&(uid.to_string(), None))
            || cache.contains(&(uid.to_string(), namespace.map(str::to_string)))
    }

    async fn attempt_to_delete(&self, uid: &str) -> Result<Outcome, Error> {
        let Some(node) = self.node(uid) else {
            return Ok(Outcome::Done);
        };
        let Some(info) = self.resolve(&node.identity.api_version, &node.identity.kind) else {
            tracing::debug!(kind = %node.identity.kind, api_version = %node.identity.api_version, "garbage collector: unknown kind");
            return Ok(Outcome::RetryAfter(UNKNOWN_KIND_RETRY));
        };
        if !node.observed {
            // A virtual node: does the owner exist?
            let id = scoped(&node.identity, &info);
            return match self.get_live(&info, &id).await? {
                None => {
                    self.remember_absent(uid, id.namespace.as_deref());
                    self.enqueue_removal(uid);
                    Ok(Outcome::Done)
                }
                // It exists; wait until its watch reports it.
                Some(_) => Ok(Outcome::Retry),
            };
        }
        if node.being_deleted && !node.deleting_dependents {
            // On its way out; its dependents are handled when it is gone.
            return Ok(Outcome::Done);
        }
        let Some(latest) = self.get_live(&info, &node.identity).await? else {
            self.enqueue_removal(uid);
            return Ok(Outcome::Done);
        };
        if node.deleting_dependents {
            return self
                .process_deleting_dependents(&info, &node, &latest)
                .await;
        }
        let references = latest.metadata.owner_references.clone().unwrap_or_default();
        if references.is_empty() {
            return Ok(Outcome::Done);
        }
        let mut solid = Vec::new();
        let mut dangling = Vec::new();
        let mut waiting = Vec::new();
        for reference in references {
            match self.classify(&reference, &node.identity).await? {
                OwnerState::Unknown => {
                    tracing::debug!(item = %node.identity.name, kind = %reference.kind, api_version = %reference.api_version, "garbage collector: owner of unknown kind");
                    return Ok(Outcome::RetryAfter(UNKNOWN_KIND_RETRY));
                }
                OwnerState::InvalidScope => {
                    tracing::warn!(item = %node.identity.name, owner = %reference.name, "cluster-scoped object refers to a namespaced owner");
                    return Ok(Outcome::Done);
                }
                OwnerState::Absent => dangling.push(reference),
                OwnerState::DeletingDependents => waiting.push(reference),
                OwnerState::Present => solid.push(reference),
            }
        }
        let id = &node.identity;
        if !solid.is_empty() {
            if dangling.is_empty() && waiting.is_empty() {
                return Ok(Outcome::Done);
            }
            // Keep the object; drop the references that are gone or waiting for us, or the
            // owners waiting would be stuck forever.
            let drop_uids: HashSet<&str> = dangling
                .iter()
                .chain(waiting.iter())
                .map(|r| r.uid.as_str())
                .collect();
            let kept: Vec<&OwnerReference> = latest
                .owner_references()
                .iter()
                .filter(|r| !drop_uids.contains(r.uid.as_str()))
                .collect();
            tracing::info!(kind = %id.kind, namespace = ?id.namespace, name = %id.name, "garbage collector removes references to deleted owners");
            self.patch_meta(&info, id, &latest, json!({"ownerReferences": kept}))
                .await?;
            return Ok(Outcome::Done);
        }
        if !waiting.is_empty() && !node.dependents.is_empty() {
            // An owner waits for us and we have dependents: go in foreground ourselves. If one
            // of our dependents is itself deleting its dependents, unblock our references first
            // so a cycle cannot deadlock (upstream's cycle breaking).
            let dependent_deleting = {
                let graph = lock(&self.graph);
                node.dependents
                    .iter()
                    .any(|d| graph.get(d).is_some_and(|n| n.deleting_dependents))
            };
            if dependent_deleting {
                let unblocked: Vec<OwnerReference> = latest
                    .owner_references()
                    .iter()
                    .cloned()
                    .map(|mut r| {
                        r.block_owner_deletion = Some(false);
                        r
                    })
                    .collect();
                self.patch_meta(&info, id, &latest, json!({"ownerReferences": unblocked}))
                    .await?;
            }
            self.delete(&info, id, PropagationPolicy::Foreground)
                .await?;
            return Ok(Outcome::Done);
        }
        let finalizers = latest.finalizers();
        let policy = if finalizers.iter().any(|f| f == ORPHAN_FINALIZER) {
            PropagationPolicy::Orphan
        } else if finalizers.iter().any(|f| f == FOREGROUND_FINALIZER) {
            PropagationPolicy::Foreground
        } else {
            PropagationPolicy::Background
        };
        self.delete(&info, id, policy).await?;
        Ok(Outcome::Done)
    }

    /// An owner in foreground deletion: delete its blocking dependents; once none is left,
    /// remove the `foregroundDeletion` finalizer (the API server then deletes the owner).
    async fn process_deleting_dependents(
        &self,
        info: &KindInfo,
        node: &graph::Node,
        latest: &Meta,
    ) -> Result<Outcome, Error> {
        let blocking = lock(&self.graph).blocking_dependents(&node.identity.uid);
        if blocking.is_empty() {
            self.remove_finalizer(info, &node.identity, latest, FOREGROUND_FINALIZER)
                .await?;
            return Ok(Outcome::Done);
        }
        for (dependent, deleting_dependents) in blocking {
            if !deleting_dependents {
                self.queue.add(Work::Delete(dependent));
            }
        }
        // Woken again as the dependents go.
        Ok(Outcome::Done)
    }

    /// An owner in orphan deletion: remove its references from every dependent, then its
    /// `orphan` finalizer.
    async fn attempt_to_orphan(&self, uid: &str) -> Result<Outcome, Error> {
        let Some(node) = self.node(uid) else {
            return Ok(Outcome::Done);
        };
        let Some(owner_info) = self.resolve(&node.identity.api_version, &node.identity.kind) else {
            return Ok(Outcome::RetryAfter(UNKNOWN_KIND_RETRY));
        };
        for dependent in &node.dependents {
            let Some(dep) = self.node(dependent) else {
                continue;
            };
            let Some(info) = self.resolve(&dep.identity.api_version, &dep.identity.kind) else {
                return Ok(Outcome::RetryAfter(UNKNOWN_KIND_RETRY));
            };
            let Some(latest) = self.get_live(&info, &dep.identity).await? else {
                continue;
            };
            if !latest.owner_references().iter().any(|r| r.uid == uid) {
                continue;
            }
            let kept: Vec<&OwnerReference> = latest
                .owner_references()
                .iter()
                .filter(|r| r.uid != uid)
                .collect();
            self.patch_meta(
                &info,
                &dep.identity,
                &latest,
                json!({"ownerReferences": kept}),
            )
            .await?;
        }
        let Some(latest) = self.get_live(&owner_info, &node.identity).await? else {
            return Ok(Outcome::Done);
        };
        tracing::info!(kind = %node.identity.kind, namespace = ?node.identity.namespace, name = %node.identity.name, dependents = node.dependents.len(), "garbage collector orphaned dependents");
        self.remove_finalizer(&owner_info, &node.identity, &latest, ORPHAN_FINALIZER)
            .await?;
        Ok(Outcome::Done)
    }

    async fn classify(
        &self,
        reference: &OwnerReference,
        item: &Identity,
    ) -> Result<OwnerState, Error> {
        if self.known_absent(&reference.uid, item.namespace.as_deref()) {
            return Ok(OwnerState::Absent);
        }
        let Some(info) = self.resolve(&reference.api_version, &reference.kind) else {
            return Ok(OwnerState::Unknown);
        };
        if info.namespaced && item.namespace.is_none() {
            return Ok(OwnerState::InvalidScope);
        }
        let owner = Identity {
            api_version: reference.api_version.clone(),
            kind: reference.kind.clone(),
            namespace: if info.namespaced {
                item.namespace.clone()
            } else {
                None
            },
            name: reference.name.clone(),
            uid: reference.uid.clone(),
        };
        match self.get_live(&info, &owner).await? {
            None => {
                self.remember_absent(&reference.uid, owner.namespace.as_deref());
                Ok(OwnerState::Absent)
            }
            Some(o)
                if o.metadata.deletion_timestamp.is_some()
                    && o.finalizers().iter().any(|f| f == FOREGROUND_FINALIZER) =>
            {
                Ok(OwnerState::DeletingDependents)
            }
            Some(_) => Ok(OwnerState::Present),
        }
    }

    async fn delete(
        &self,
        info: &KindInfo,
        id: &Identity,
        policy: PropagationPolicy,
    ) -> Result<(), Error> {
        let params = DeleteParams {
            propagation_policy: Some(policy.clone()),
            preconditions: Some(Preconditions {
                uid: Some(id.uid.clone()),
                resource_version: None,
            }),
            ..DeleteParams::default()
        };
        match self
            .api(info, id.namespace.as_deref())
            .delete(&id.name, &params)
            .await
        {
            Ok(_) => {
                tracing::info!(kind = %id.kind, namespace = ?id.namespace, name = %id.name, policy = ?policy, "garbage collector deleted object");
                Ok(())
            }
            // Gone already, or another object under that name now.
            Err(kube::Error::Api(e)) if e.code == 404 || e.code == 409 => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// A merge patch of `metadata` guarded by the resourceVersion it was computed from.
    async fn patch_meta(
        &self,
        info: &KindInfo,
        id: &Identity,
        latest: &Meta,
        mut fields: serde_json::Value,
    ) -> Result<(), Error> {
        if let Some(map) = fields.as_object_mut() {
            for value in map.values_mut() {
                if value.as_array().is_some_and(|a| a.is_empty()) {
                    *value = serde_json::Value::Null;
                }
            }
            map.insert("resourceVersion".into(), json!(latest.resource_version()));
        }
        let patch = json!({ "metadata": fields });
        match self
            .api(info, id.namespace.as_deref())
            .patch(&id.name, &PatchParams::default(), &Patch::Merge(patch))
            .await
        {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(e)) if e.code == 404 => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    async fn remove_finalizer(
        &self,
        info: &KindInfo,
        id: &Identity,
        latest: &Meta,
        finalizer: &str,
    ) -> Result<(), Error> {
        if !latest.finalizers().iter().any(|f| f == finalizer) {
            return Ok(());
        }
        let kept: Vec<&String> = latest
            .finalizers()
            .iter()
            .filter(|f| *f != finalizer)
            .collect();
        tracing::info!(kind = %id.kind, namespace = ?id.namespace, name = %id.name, finalizer, "garbage collector removes finalizer");
        self.patch_meta(info, id, latest, json!({ "finalizers": kept }))
            .await
    }
}

enum OwnerState {
    Present,
    Absent,
    DeletingDependents,
    /// The reference names a kind discovery does not know.
    Unknown,
    /// A cluster-scoped object naming a namespaced owner.
    InvalidScope,
}

/// A virtual node's identity with the namespace dropped for cluster-scoped kinds.
fn scoped(id: &Identity, info: &KindInfo) -> Identity {
    let mut id = id.clone();
    if !info.namespaced {
        id.namespace = None;
    }
    id
}
