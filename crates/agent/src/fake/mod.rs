//! Simulated nodes, kwok-style: a real Node object with capacity, conditions and a Lease kept
//! fresh in `kube-node-lease`, and realistic status for every pod bound to it — without
//! running any container.
//!
//! One simulated node is one task fed by two watches (its own Node, and the pods with
//! `spec.nodeName=<name>`: [`run`]; or, for many nodes in one process, one shared watch of each
//! dispatched by node name: [`run_pool`]), with two heartbeat tickers and one timer queue for
//! pods that complete, so a laptop runs hundreds of them. The pod life is the state machine in
//! `pod.rs`.
//!
//! Annotations understood:
//! - on the Node, `kubelab.dev/fake-stopped: "true"`: the node stops heartbeating (Lease and
//!   conditions) and stops touching its pods until the annotation goes away — a node failure;
//! - on a pod with `restartPolicy: Never|OnFailure`, `kubelab.dev/fake-duration` (Go duration,
//!   default `1s`): how long it runs before it Succeeds; `kubelab.dev/fake-fail: "true"`: it
//!   Fails (exit code 1) instead.

mod duration;
mod ip_pool;
pub mod kubelet_server;
pub(crate) mod node;
mod pod;

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, HashSet};
use std::net::Ipv4Addr;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Node, PersistentVolumeClaim, Pod, PodStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams, Preconditions};
use kube::runtime::watcher::{self, watcher};
use kube::runtime::WatchStreamExt;
use serde_json::json;
use sha2::{Digest, Sha256};
use tokio::time::{Instant, MissedTickBehavior};

pub use duration::parse_go_duration;
pub use ip_pool::{Ipv4Cidr, PodIpPool};
pub use node::{FAKE_NODE_ANNOTATION, LEASE_NAMESPACE, STOPPED_ANNOTATION};
pub use pod::{DURATION_ANNOTATION, FAIL_ANNOTATION};

use pod::{Stage, Started};

/// One simulated node.
#[derive(Clone, Debug)]
pub struct FakeNodeConfig {
    pub name: String,
    /// CPU capacity (a quantity: "4", "500m").
    pub cpu: String,
    /// Memory capacity (a quantity: "8Gi").
    pub memory: String,
    /// Pod capacity.
    pub pods: u32,
    /// The node's InternalIP (also the hostIP of its pods, and the podIP of hostNetwork pods).
    pub node_ip: Ipv4Addr,
    /// How often the node Lease is renewed (kubelet: 10 s, a quarter of the lease duration).
    pub lease_renew_interval: Duration,
    /// How often the conditions' heartbeat times are refreshed even when nothing changed.
    pub status_update_interval: Duration,
}

impl FakeNodeConfig {
    /// A node with the defaults of `kubelab server --fake-nodes`: 4 CPUs, 8Gi, 110 pods.
    pub fn new(name: impl Into<String>, node_ip: Ipv4Addr) -> FakeNodeConfig {
        FakeNodeConfig {
            name: name.into(),
            cpu: "4".into(),
            memory: "8Gi".into(),
            pods: 110,
            node_ip,
            lease_renew_interval: Duration::from_secs(10),
            status_update_interval: Duration::from_secs(60),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot register node {node}: {source}")]
    Register { node: String, source: kube::Error },
}

/// What a simulated node reacts to: changes of its Node and of the pods bound to it.
// Both variants are large; each value is moved once, so boxing would only add allocations.
#[allow(clippy::large_enum_variant)]
enum Input {
    Node(watcher::Event<Node>),
    Pod(watcher::Event<Pod>),
}

/// Run one simulated node with its own node credentials until the process ends. It watches
/// its own Node (`metadata.name=<name>`) and its pods (`spec.nodeName=<name>`), like a kubelet.
pub async fn run(client: kube::Client, config: FakeNodeConfig) {
    let name = config.name.clone();
    let nodes = watcher(
        Api::<Node>::all(client.clone()),
        watcher::Config::default().fields(&format!("metadata.name={name}")),
    )
    .default_backoff()
    .filter_map(|e| futures::future::ready(log_watch_error(e, "its Node")))
    .map(Input::Node);
    let pods = watcher(
        Api::<Pod>::all(client.clone()),
        watcher::Config::default().fields(&format!("spec.nodeName={name}")),
    )
    .modify(|p| p.metadata.managed_fields = None)
    .default_backoff()
    .filter_map(|e| futures::future::ready(log_watch_error(e, "its pods")))
    .map(Input::Pod);
    Agent::new(client, config)
        .run(futures::stream::select(nodes, pods))
        .await;
}

/// Run many simulated nodes in this process. Each writes with its own client (its own node
/// credentials), but they share one watch of Nodes and one of bound pods (with the first
/// node's client), dispatched by node name: N nodes cost the API server two watches, not 2N.
/// Dropping the future stops every node.
pub async fn run_pool(nodes: Vec<(kube::Client, FakeNodeConfig)>) {
    let Some(watch_client) = nodes.first().map(|(c, _)| c.clone()) else {
        return;
    };
    let mut agents = tokio::task::JoinSet::new();
    let mut inboxes: HashMap<String, futures::channel::mpsc::UnboundedSender<Input>> =
        HashMap::new();
    for (client, config) in nodes {
        let (tx, rx) = futures::channel::mpsc::unbounded();
        inboxes.insert(config.name.clone(), tx);
        agents.spawn(Agent::new(client, config).run(rx));
    }
    let node_events = watcher(
        Api::<Node>::all(watch_client.clone()),
        watcher::Config::default(),
    )
    .default_backoff()
    .filter_map(|e| futures::future::ready(log_watch_error(e, "Nodes")))
    .map(Input::Node);
    let pod_events = watcher(
        Api::<Pod>::all(watch_client),
        watcher::Config::default().fields("spec.nodeName!="),
    )
    .modify(|p| p.metadata.managed_fields = None)
    .default_backoff()
    .filter_map(|e| futures::future::ready(log_watch_error(e, "bound pods")))
    .map(Input::Pod);
    let events = futures::stream::select(node_events, pod_events);
    futures::pin_mut!(events);
    while let Some(input) = events.next().await {
        let target = match &input {
            Input::Node(
                watcher::Event::Apply(n) | watcher::Event::InitApply(n) | watcher::Event::Delete(n),
            ) => Some(n.metadata.name.clone().unwrap_or_default()),
            Input::Pod(
                watcher::Event::Apply(p) | watcher::Event::InitApply(p) | watcher::Event::Delete(p),
            ) => Some(
                p.spec
                    .as_ref()
                    .and_then(|s| s.node_name.clone())
                    .unwrap_or_default(),
            ),
            _ => None,
        };
        match target {
            Some(name) => {
                if let Some(inbox) = inboxes.get(&name) {
                    let _ = inbox.unbounded_send(input);
                }
            }
            // Init and InitDone frame a relist: every node sees them.
            None => {
                for inbox in inboxes.values() {
                    let copy = match &input {
                        Input::Node(watcher::Event::Init) => Input::Node(watcher::Event::Init),
                        Input::Node(_) => Input::Node(watcher::Event::InitDone),
                        Input::Pod(watcher::Event::Init) => Input::Pod(watcher::Event::Init),
                        Input::Pod(_) => Input::Pod(watcher::Event::InitDone),
                    };
                    let _ = inbox.unbounded_send(copy);
                }
            }
        }
    }
    tracing::warn!("the simulated nodes' watches ended");
}

fn log_watch_error<K>(
    event: Result<watcher::Event<K>, watcher::Error>,
    what: &str,
) -> Option<watcher::Event<K>> {
    match event {
        Ok(e) => Some(e),
        Err(e) => {
            tracing::warn!(error = %e, "simulated node: watch of {what} failed; retrying");
            None
        }
    }
}

/// A 64-digit hex string derived from `parts`: stable fake IDs (container IDs, digests).
pub(crate) fn fake_hex(parts: &[&str]) -> String {
    let mut hasher = Sha256::new();
    for part in parts {
        hasher.update(part.as_bytes());
        hasher.update([0]);
    }
    hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// What the node remembers about a pod it started.
struct PodRecord {
    started: Started,
    /// When the pod started, on this process's clock (completion timers count from it).
    started_instant: Instant,
    /// The address taken from the pool (None for hostNetwork pods).
    pooled_ip: Option<Ipv4Addr>,
    /// A completion timer is queued for this instant.
    completion_timer: Option<Instant>,
}

/// Delay before a failed pod write is tried again.
const RETRY: Duration = Duration::from_secs(1);

struct Agent {
    config: FakeNodeConfig,
    nodes: Api<Node>,
    client: kube::Client,
    leases: Api<Lease>,
    /// The Node as last observed (None before registration or after it was deleted).
    node: Option<Node>,
    node_seen_in_relist: bool,
    stopped: bool,
    pool: PodIpPool,
    /// Pods bound to this node, by uid.
    pods: HashMap<String, Pod>,
    /// Pods received during a (re)list, swapped in at its end.
    relist: Option<HashMap<String, Pod>>,
    records: HashMap<String, PodRecord>,
    /// uids whose grace-0 delete was sent.
    finalized: HashSet<String>,
    timers: BinaryHeap<Reverse<(Instant, String)>>,
    /// A pod waits for a free address; sync every pod once one is released.
    waiting_for_ip: bool,
    resync_needed: bool,
}

impl Agent {
    fn new(client: kube::Client, config: FakeNodeConfig) -> Agent {
        Agent {
            nodes: Api::all(client.clone()),
            leases: Api::namespaced(client.clone(), LEASE_NAMESPACE),
            client,
            config,
            node: None,
            node_seen_in_relist: false,
            stopped: false,
            pool: PodIpPool::default(),
            pods: HashMap::new(),
            relist: None,
            records: HashMap::new(),
            finalized: HashSet::new(),
            timers: BinaryHeap::new(),
            waiting_for_ip: false,
            resync_needed: false,
        }
    }

    fn name(&self) -> &str {
        &self.config.name
    }

    /// Registers the node, then follows `events` until they end.
    async fn run(mut self, events: impl futures::Stream<Item = Input>) {
        let mut backoff = Duration::from_millis(500);
        while let Err(e) = self.register().await {
            tracing::warn!(node = %self.name(), error = %e, "cannot register; retrying");
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(10));
        }
        self.renew_lease().await;
        futures::pin_mut!(events);
        let name = self.config.name.clone();
        let mut lease_tick = ticker(&name, self.config.lease_renew_interval);
        let mut status_tick = ticker(&name, self.config.status_update_interval);
        loop {
            let next_timer = self.timers.peek().map(|Reverse((at, _))| *at);
            tokio::select! {
                input = events.next() => match input {
                    Some(Input::Node(event)) => self.on_node_event(event).await,
                    Some(Input::Pod(event)) => self.on_pod_event(event).await,
                    None => {
                        tracing::warn!(node = %name, "simulated node: its watches ended");
                        return;
                    }
                },
                _ = lease_tick.tick() => self.renew_lease().await,
                _ = status_tick.tick() => self.post_status(false).await,
                _ = tokio::time::sleep_until(next_timer.unwrap_or_else(Instant::now)),
                    if next_timer.is_some() => self.fire_timers().await,
            }
            if std::mem::take(&mut self.resync_needed) {
                self.sync_all_pods().await;
            }
        }
    }

    /// Creates the Node, or takes over an existing one (an agent restart), then posts its full
    /// status.
    async fn register(&mut self) -> Result<(), Error> {
        let now = pod::now_seconds();
        let node = node::node_object(&self.config, now);
        let registered = match self.nodes.create(&PostParams::default(), &node).await {
            Ok(n) => {
                tracing::info!(node = %self.name(), "registered simulated node");
                n
            }
            Err(kube::Error::Api(e)) if e.code == 409 => {
                let patch = json!({"metadata": {
                    "labels": node.metadata.labels,
                    "annotations": {FAKE_NODE_ANNOTATION: "true"},
                }});
                self.nodes
                    .patch(self.name(), &PatchParams::default(), &Patch::Merge(&patch))
                    .await
                    .map_err(|source| Error::Register {
                        node: self.name().into(),
                        source,
                    })?
            }
            Err(source) => {
                return Err(Error::Register {
                    node: self.name().into(),
                    source,
                })
            }
        };
        self.stopped = node::is_stopped(&registered);
        self.node = Some(registered);
        self.post_status(true).await;
        Ok(())
    }

    /// Refreshes the node's conditions (and with `full`, its capacity, addresses, nodeInfo).
    async fn post_status(&mut self, full: bool) {
        if self.stopped {
            return;
        }
        let Some(current) = &self.node else {
            return;
        };
        let conditions = current
            .status
            .as_ref()
            .and_then(|s| s.conditions.clone())
            .unwrap_or_default();
        let now = pod::now_seconds();
        let body = if full {
            json!({"status": node::node_status(&self.config, &conditions, now)})
        } else {
            json!({"status": {"conditions": node::healthy_conditions(&conditions, now)}})
        };
        match self
            .nodes
            .patch_status(self.name(), &PatchParams::default(), &Patch::Merge(&body))
            .await
        {
            Ok(n) => self.node = Some(n),
            Err(e) => tracing::warn!(node = %self.name(), error = %e, "cannot post node status"),
        }
    }

    async fn renew_lease(&mut self) {
        if self.stopped {
            return;
        }
        let Some(node_uid) = self.node.as_ref().and_then(|n| n.metadata.uid.clone()) else {
            return;
        };
        let now = Timestamp::now();
        let patch = json!({"spec": {
            "holderIdentity": self.name(),
            "leaseDurationSeconds": node::LEASE_DURATION_SECONDS,
            "renewTime": MicroTime(now),
        }});
        let result = match self
            .leases
            .patch(self.name(), &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            Err(kube::Error::Api(e)) if e.code == 404 => self
                .leases
                .create(
                    &PostParams::default(),
                    &node::lease(self.name(), Some(&node_uid), now),
                )
                .await
                .map(|_| ()),
            other => other.map(|_| ()),
        };
        if let Err(e) = result {
            tracing::warn!(node = %self.name(), error = %e, "cannot renew the node lease");
        }
    }

    async fn on_node_event(&mut self, event: watcher::Event<Node>) {
        match event {
            watcher::Event::Init => self.node_seen_in_relist = false,
            watcher::Event::InitApply(n) => {
                self.node_seen_in_relist = true;
                self.observe_node(n).await;
            }
            watcher::Event::Apply(n) => self.observe_node(n).await,
            watcher::Event::InitDone => {
                if !self.node_seen_in_relist {
                    // The list may predate our registration (a shared watch): ask.
                    match self.nodes.get_opt(&self.config.name).await {
                        Ok(Some(n)) => self.observe_node(n).await,
                        Ok(None) => self.node_gone(),
                        Err(e) => {
                            tracing::debug!(node = %self.name(), error = %e, "cannot read the node")
                        }
                    }
                }
            }
            watcher::Event::Delete(_) => self.node_gone(),
        }
    }

    fn node_gone(&mut self) {
        if self.node.take().is_some() {
            tracing::warn!(node = %self.name(), "node object deleted; this simulated node is idle");
        }
    }

    async fn observe_node(&mut self, n: Node) {
        let was_absent = self.node.is_none();
        let was_stopped = self.stopped;
        self.stopped = node::is_stopped(&n);
        let cidr = n
            .spec
            .as_ref()
            .and_then(|s| s.pod_cidr.as_deref())
            .and_then(Ipv4Cidr::parse);
        let mut cidr_changed = false;
        if let Some(cidr) = cidr {
            if self.pool.set_cidr(cidr) {
                cidr_changed = true;
                tracing::info!(node = %self.name(), %cidr, "pod CIDR assigned");
                for record in self.records.values() {
                    if let Some(ip) = record.pooled_ip {
                        self.pool.reserve(ip);
                    }
                }
            }
        }
        self.node = Some(n);
        if was_absent && !self.stopped {
            // Created again by someone else after it was deleted: report in full.
            tracing::info!(node = %self.name(), "node object is back");
            self.post_status(true).await;
            self.renew_lease().await;
            self.resync_needed = true;
        }
        match (was_stopped, self.stopped) {
            (false, true) => {
                tracing::info!(node = %self.name(), "simulated node stopped: no heartbeats, pods untouched");
            }
            (true, false) => {
                tracing::info!(node = %self.name(), "simulated node resumed");
                self.renew_lease().await;
                self.post_status(false).await;
                self.resync_needed = true;
            }
            _ if cidr_changed => self.resync_needed = true,
            _ => {}
        }
    }

    async fn on_pod_event(&mut self, event: watcher::Event<Pod>) {
        match event {
            watcher::Event::Init => self.relist = Some(HashMap::new()),
            watcher::Event::InitApply(p) => {
                if let (Some(relist), Some(uid)) = (self.relist.as_mut(), p.metadata.uid.clone()) {
                    relist.insert(uid, p);
                }
            }
            watcher::Event::InitDone => {
                let fresh = self.relist.take().unwrap_or_default();
                let gone: Vec<String> = self
                    .pods
                    .keys()
                    .filter(|uid| !fresh.contains_key(*uid))
                    .cloned()
                    .collect();
                for uid in gone {
                    self.forget(&uid);
                }
                self.finalized.retain(|uid| fresh.contains_key(uid));
                self.pods = fresh;
                self.resync_needed = true;
            }
            watcher::Event::Apply(p) => {
                let Some(uid) = p.metadata.uid.clone() else {
                    return;
                };
                self.pods.insert(uid.clone(), p);
                self.sync_pod(&uid).await;
            }
            watcher::Event::Delete(p) => {
                if let Some(uid) = p.metadata.uid.as_deref() {
                    self.pods.remove(uid);
                    self.forget(uid);
                    self.finalized.remove(uid);
                }
            }
        }
    }

    async fn sync_all_pods(&mut self) {
        let uids: Vec<String> = self.pods.keys().cloned().collect();
        for uid in uids {
            self.sync_pod(&uid).await;
        }
    }

    /// Moves one pod along its life (see [`pod::Stage`]).
    async fn sync_pod(&mut self, uid: &str) {
        if self.stopped || self.node.is_none() {
            return;
        }
        let Some(pod) = self.pods.get(uid).cloned() else {
            return;
        };
        match Stage::of(&pod) {
            Stage::Terminating => self.finalize(uid, &pod).await,
            Stage::Completed => self.forget(uid),
            Stage::Pending | Stage::Running => self.run_pod(uid, &pod).await,
        }
    }

    /// Starts the pod if needed, completes it when its time has come, and reports its status.
    async fn run_pod(&mut self, uid: &str, pod: &Pod) {
        if !self.records.contains_key(uid) {
            // Like the kubelet's volume manager: containers start once every claim is Bound.
            match self.claims_bound(pod).await {
                Ok(true) => {}
                Ok(false) => {
                    self.retry(uid);
                    return;
                }
                Err(e) => {
                    tracing::warn!(node = %self.name(), pod = %pod_key(pod), error = %e, "cannot read the pod's claims");
                    self.retry(uid);
                    return;
                }
            }
            let Some(record) = self.start(pod) else {
                return;
            };
            self.records.insert(uid.to_string(), record);
        }
        let record = self.records.get_mut(uid).expect("record inserted above");
        let now = pod::now_seconds();
        let status = match pod::completion(pod) {
            Some(completion) => {
                let due = record.started_instant + completion.after;
                if Instant::now() >= due {
                    pod::completed_status(pod, &record.started, &completion, now)
                } else {
                    if record.completion_timer != Some(due) {
                        record.completion_timer = Some(due);
                        self.timers.push(Reverse((due, uid.to_string())));
                    }
                    pod::running_status(pod, &record.started, now)
                }
            }
            None => pod::running_status(pod, &record.started, now),
        };
        let terminal = matches!(status.phase.as_deref(), Some("Succeeded" | "Failed"));
        if pod.status.as_ref() != Some(&status) {
            match self.write_status(pod, &status).await {
                Ok(Some(updated)) => {
                    self.pods.insert(uid.to_string(), updated);
                }
                Ok(None) => return,
                Err(e) => {
                    tracing::warn!(node = %self.name(), pod = %pod_key(pod), error = %e, "cannot report pod status");
                    self.retry(uid);
                    return;
                }
            }
        }
        if terminal {
            self.forget(uid);
        }
    }

    /// Whether every PersistentVolumeClaim the pod mounts exists and is Bound.
    async fn claims_bound(&self, pod: &Pod) -> Result<bool, kube::Error> {
        let claims: Vec<&str> = pod
            .spec
            .iter()
            .flat_map(|s| s.volumes.iter().flatten())
            .filter_map(|v| v.persistent_volume_claim.as_ref())
            .map(|c| c.claim_name.as_str())
            .collect();
        if claims.is_empty() {
            return Ok(true);
        }
        let api: Api<PersistentVolumeClaim> =
            Api::namespaced(self.client.clone(), pod_namespace(pod));
        for name in claims {
            let bound = api
                .get_opt(name)
                .await?
                .is_some_and(|c| c.status.and_then(|s| s.phase).as_deref() == Some("Bound"));
            if !bound {
                tracing::debug!(node = %self.name(), pod = %pod_key(pod), claim = name, "waiting for the claim to be bound");
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// Decides a new pod's address and start time; None while it cannot start (no podCIDR
    /// yet, or no free address). A pod already Running (this agent restarted) keeps its own.
    fn start(&mut self, pod: &Pod) -> Option<PodRecord> {
        let host_network = pod
            .spec
            .as_ref()
            .and_then(|s| s.host_network)
            .unwrap_or(false);
        let status = pod.status.as_ref();
        let adopted = (Stage::of(pod) == Stage::Running)
            .then(|| {
                let ip: Ipv4Addr = status?.pod_ip.as_deref()?.parse().ok()?;
                let at = status?.start_time.as_ref()?.0;
                Some((ip, at))
            })
            .flatten();
        let (pod_ip, pooled_ip) = if host_network {
            (self.config.node_ip, None)
        } else {
            if self.pool.cidr().is_none() {
                tracing::debug!(node = %self.name(), pod = %pod_key(pod), "waiting for the node's podCIDR");
                return None;
            }
            let ip = match adopted {
                Some((ip, _)) if self.pool.reserve(ip) => Some(ip),
                _ => self.pool.allocate(),
            };
            let Some(ip) = ip else {
                tracing::warn!(node = %self.name(), pod = %pod_key(pod), "no free pod IP on this node");
                self.waiting_for_ip = true;
                return None;
            };
            (ip, Some(ip))
        };
        let now = pod::now_seconds();
        let at = adopted.map(|(_, at)| at).unwrap_or(now);
        let age = Duration::try_from(now.duration_since(at)).unwrap_or_default();
        let started_instant = Instant::now().checked_sub(age).unwrap_or_else(Instant::now);
        Some(PodRecord {
            started: Started {
                pod_ip,
                host_ip: self.config.node_ip,
                at,
            },
            started_instant,
            pooled_ip,
            completion_timer: None,
        })
    }

    /// A deleted pod: stop its containers and confirm the deletion with a grace-0 delete.
    async fn finalize(&mut self, uid: &str, pod: &Pod) {
        if self.finalized.contains(uid) {
            return;
        }
        if let Some(record) = self.records.get(uid) {
            let started = record.started.clone();
            let running = pod
                .status
                .as_ref()
                .is_some_and(|s| s.phase.as_deref() == Some("Running"));
            if running {
                let status = pod::terminating_status(pod, &started, pod::now_seconds());
                if let Err(e) = self.write_status(pod, &status).await {
                    tracing::debug!(pod = %pod_key(pod), error = %e, "cannot report terminated containers");
                }
            }
        }
        self.forget(uid);
        let api: Api<Pod> = Api::namespaced(self.client.clone(), pod_namespace(pod));
        let params = DeleteParams {
            grace_period_seconds: Some(0),
            preconditions: Some(Preconditions {
                uid: Some(uid.to_string()),
                resource_version: None,
            }),
            ..DeleteParams::default()
        };
        match api.delete(pod_name(pod), &params).await {
            Ok(_) => {}
            Err(kube::Error::Api(e)) if e.code == 404 || e.code == 409 => {}
            Err(e) => {
                tracing::warn!(node = %self.name(), pod = %pod_key(pod), error = %e, "cannot finalize pod deletion");
                self.retry(uid);
                return;
            }
        }
        self.finalized.insert(uid.to_string());
    }

    /// Writes a pod's status (merge patch guarded by its resourceVersion). Ok(None) when the
    /// pod changed or went away meanwhile: its next watch event brings the news.
    async fn write_status(
        &self,
        pod: &Pod,
        status: &PodStatus,
    ) -> Result<Option<Pod>, kube::Error> {
        let api: Api<Pod> = Api::namespaced(self.client.clone(), pod_namespace(pod));
        let patch = json!({
            "metadata": {"resourceVersion": pod.metadata.resource_version},
            "status": status,
        });
        match api
            .patch_status(
                pod_name(pod),
                &PatchParams::default(),
                &Patch::Merge(&patch),
            )
            .await
        {
            Ok(p) => Ok(Some(p)),
            Err(kube::Error::Api(e)) if e.code == 404 || e.code == 409 => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Drops what the node holds for a pod that ended or went away: its record and address.
    fn forget(&mut self, uid: &str) {
        if let Some(record) = self.records.remove(uid) {
            if let Some(ip) = record.pooled_ip {
                self.pool.release(ip);
                if std::mem::take(&mut self.waiting_for_ip) {
                    self.resync_needed = true;
                }
            }
        }
    }

    fn retry(&mut self, uid: &str) {
        self.timers
            .push(Reverse((Instant::now() + RETRY, uid.to_string())));
    }

    async fn fire_timers(&mut self) {
        let now = Instant::now();
        let mut due = Vec::new();
        while let Some(Reverse((at, _))) = self.timers.peek() {
            if *at > now {
                break;
            }
            let Some(Reverse((at, uid))) = self.timers.pop() else {
                break;
            };
            if let Some(record) = self.records.get_mut(&uid) {
                if record.completion_timer == Some(at) {
                    record.completion_timer = None;
                }
            }
            due.push(uid);
        }
        due.dedup();
        for uid in due {
            self.sync_pod(&uid).await;
        }
    }
}

/// A ticker whose first tick comes after a per-node offset, so many nodes do not beat in step.
fn ticker(name: &str, period: Duration) -> tokio::time::Interval {
    let period = period.max(Duration::from_millis(50));
    let hash = fake_hex(&["jitter", name]);
    let fraction = u64::from_str_radix(&hash[..8], 16).unwrap_or(0) as f64 / f64::from(u32::MAX);
    let mut interval =
        tokio::time::interval_at(Instant::now() + period.mul_f64(fraction.min(1.0)), period);
    interval.set_missed_tick_behavior(MissedTickBehavior::Delay);
    interval
}

fn pod_namespace(pod: &Pod) -> &str {
    pod.metadata.namespace.as_deref().unwrap_or("default")
}

fn pod_name(pod: &Pod) -> &str {
    pod.metadata.name.as_deref().unwrap_or("")
}

fn pod_key(pod: &Pod) -> String {
    format!("{}/{}", pod_namespace(pod), pod_name(pod))
}
