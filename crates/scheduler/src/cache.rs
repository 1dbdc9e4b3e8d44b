//! The scheduler's view of the cluster: every node with the pods assigned (or assumed) to it,
//! summarised the way the filters and scores read it (requested resources, host ports, pod counts
//! per spread group, pods with anti-affinity).

use std::collections::hash_map::DefaultHasher;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::hash::{Hash, Hasher};

use k8s_openapi::api::core::v1::{
    Node, NodeSelector, PersistentVolume, PersistentVolumeClaim, Pod, PodAffinityTerm, Taint,
};
use k8s_openapi::api::storage::v1::StorageClass;

use crate::resources::{self, Resources};
use crate::selectors::Labels;

/// A host port a pod binds: protocol and IP as upstream sanitises them ("" -> TCP, 0.0.0.0).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct HostPort {
    pub ip: String,
    pub protocol: String,
    pub port: i32,
}

pub const BIND_ALL: &str = "0.0.0.0";

impl HostPort {
    pub fn new(ip: Option<&str>, protocol: Option<&str>, port: i32) -> HostPort {
        HostPort {
            ip: ip.filter(|s| !s.is_empty()).unwrap_or(BIND_ALL).to_string(),
            protocol: protocol
                .filter(|s| !s.is_empty())
                .unwrap_or("TCP")
                .to_string(),
            port,
        }
    }

    /// Upstream `HostPortInfo.CheckConflict`: a wildcard IP conflicts with any IP, a specific IP
    /// with itself and the wildcard.
    pub fn conflicts(&self, used: &HostPort) -> bool {
        self.port == used.port
            && self.protocol == used.protocol
            && (self.ip == BIND_ALL || used.ip == BIND_ALL || self.ip == used.ip)
    }
}

/// The host ports a pod's containers (and sidecars) bind.
pub fn pod_host_ports(pod: &Pod) -> Vec<HostPort> {
    let Some(spec) = &pod.spec else {
        return Vec::new();
    };
    let host_network = spec.host_network == Some(true);
    let sidecars = spec
        .init_containers
        .iter()
        .flatten()
        .filter(|c| c.restart_policy.as_deref() == Some("Always"));
    spec.containers
        .iter()
        .chain(sidecars)
        .flat_map(|c| c.ports.iter().flatten())
        .filter_map(|p| {
            let port = match p.host_port {
                Some(h) if h > 0 => h,
                _ if host_network => p.container_port,
                _ => return None,
            };
            (port > 0).then(|| HostPort::new(p.host_ip.as_deref(), p.protocol.as_deref(), port))
        })
        .collect()
}

/// The group a pod spreads with: its controller (ownerReference with controller=true), else its
/// namespace and exact label set. None for a pod with neither.
pub fn spread_key(pod: &Pod) -> Option<u64> {
    let mut h = DefaultHasher::new();
    if let Some(owner) = pod
        .metadata
        .owner_references
        .iter()
        .flatten()
        .find(|o| o.controller == Some(true))
    {
        "owner".hash(&mut h);
        owner.uid.hash(&mut h);
        return Some(h.finish());
    }
    let labels = pod.metadata.labels.as_ref().filter(|l| !l.is_empty())?;
    "labels".hash(&mut h);
    pod.metadata.namespace.hash(&mut h);
    labels.hash(&mut h);
    Some(h.finish())
}

/// The priority a pod schedules (and would preempt) with.
pub fn pod_priority(pod: &Pod) -> i32 {
    pod.spec.as_ref().and_then(|s| s.priority).unwrap_or(0)
}

/// The required pod anti-affinity terms of a pod.
pub fn required_anti_affinity(pod: &Pod) -> &[PodAffinityTerm] {
    pod.spec
        .as_ref()
        .and_then(|s| s.affinity.as_ref())
        .and_then(|a| a.pod_anti_affinity.as_ref())
        .and_then(|a| {
            a.required_during_scheduling_ignored_during_execution
                .as_deref()
        })
        .unwrap_or_default()
}

/// The required pod affinity terms of a pod.
pub fn required_affinity(pod: &Pod) -> &[PodAffinityTerm] {
    pod.spec
        .as_ref()
        .and_then(|s| s.affinity.as_ref())
        .and_then(|a| a.pod_affinity.as_ref())
        .and_then(|a| {
            a.required_during_scheduling_ignored_during_execution
                .as_deref()
        })
        .unwrap_or_default()
}

/// What the cache keeps of a pod assigned to a node.
#[derive(Clone, Debug)]
pub struct PodRecord {
    pub namespace: String,
    pub name: String,
    pub node: String,
    pub labels: Labels,
    pub requests: Resources,
    pub non_zero_cpu: i64,
    pub non_zero_memory: i64,
    pub host_ports: Vec<HostPort>,
    pub spread_key: Option<u64>,
    pub required_anti_affinity: Vec<PodAffinityTerm>,
    pub priority: i32,
    /// Has a deletionTimestamp (still holds its resources, but no longer counts for spreading).
    pub terminating: bool,
}

impl PodRecord {
    pub fn new(pod: &Pod, node: &str) -> PodRecord {
        let non_zero = resources::pod_requests(pod, true);
        PodRecord {
            namespace: pod.metadata.namespace.clone().unwrap_or_default(),
            name: pod.metadata.name.clone().unwrap_or_default(),
            node: node.to_string(),
            labels: pod.metadata.labels.clone().unwrap_or_default(),
            requests: resources::pod_requests(pod, false),
            non_zero_cpu: non_zero.milli_cpu,
            non_zero_memory: non_zero.memory,
            host_ports: pod_host_ports(pod),
            spread_key: spread_key(pod),
            required_anti_affinity: required_anti_affinity(pod).to_vec(),
            priority: pod_priority(pod),
            terminating: pod.metadata.deletion_timestamp.is_some(),
        }
    }
}

/// What the cache keeps of a PersistentVolumeClaim.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClaimInfo {
    /// `spec.volumeName`: the claim is bound (or being bound) to this volume.
    pub volume_name: Option<String>,
    pub storage_class: Option<String>,
    pub deleting: bool,
    pub lost: bool,
}

impl ClaimInfo {
    pub fn new(claim: &PersistentVolumeClaim) -> ClaimInfo {
        let spec = claim.spec.as_ref();
        ClaimInfo {
            volume_name: spec
                .and_then(|s| s.volume_name.clone())
                .filter(|v| !v.is_empty()),
            storage_class: spec
                .and_then(|s| s.storage_class_name.clone())
                .filter(|c| !c.is_empty()),
            deleting: claim.metadata.deletion_timestamp.is_some(),
            lost: claim.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Lost"),
        }
    }
}

/// The node affinity a PersistentVolume pins its consumers to (None: any node).
pub fn volume_node_affinity(pv: &PersistentVolume) -> Option<NodeSelector> {
    pv.spec
        .as_ref()
        .and_then(|s| s.node_affinity.as_ref())
        .and_then(|a| a.required.clone())
}

/// Whether a StorageClass delays binding until a consumer pod is scheduled.
pub fn waits_for_first_consumer(class: &StorageClass) -> bool {
    class.volume_binding_mode.as_deref() == Some("WaitForFirstConsumer")
}

/// Node condition -> the NoSchedule taint the node lifecycle controller derives from it
/// (upstream `nodeConditionToTaintKeyStatusMap`); the scheduler applies them itself so a node
/// that is not Ready gets no pods even before that controller reacts.
const CONDITION_TAINTS: &[(&str, &str, &str)] = &[
    ("Ready", "False", "node.kubernetes.io/not-ready"),
    ("Ready", "Unknown", "node.kubernetes.io/unreachable"),
    (
        "MemoryPressure",
        "True",
        "node.kubernetes.io/memory-pressure",
    ),
    ("DiskPressure", "True", "node.kubernetes.io/disk-pressure"),
    ("PIDPressure", "True", "node.kubernetes.io/pid-pressure"),
    (
        "NetworkUnavailable",
        "True",
        "node.kubernetes.io/network-unavailable",
    ),
];

/// The taints the scheduler enforces on a node: its own, plus those its conditions imply. A node
/// without a Ready condition counts as not ready.
pub fn effective_taints(node: &Node) -> Vec<Taint> {
    let mut taints: Vec<Taint> = node
        .spec
        .as_ref()
        .and_then(|s| s.taints.clone())
        .unwrap_or_default();
    let conditions = node
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_deref())
        .unwrap_or_default();
    let mut implied: Vec<&str> = Vec::new();
    if !conditions.iter().any(|c| c.type_ == "Ready") {
        implied.push("node.kubernetes.io/not-ready");
    }
    for c in conditions {
        for (ty, status, key) in CONDITION_TAINTS {
            if c.type_ == *ty && c.status == *status {
                implied.push(key);
            }
        }
    }
    for key in implied {
        let present = taints
            .iter()
            .any(|t| t.key == key && matches!(t.effect.as_str(), "NoSchedule" | "NoExecute"));
        if !present {
            taints.push(Taint {
                key: key.to_string(),
                value: None,
                effect: "NoSchedule".into(),
                time_added: None,
            });
        }
    }
    taints
}

/// The fields of a node that scheduling decisions read; a change in any of them may make a pending
/// pod schedulable.
fn scheduling_view(node: &Node) -> impl PartialEq + '_ {
    let spec = node.spec.as_ref();
    let status = node.status.as_ref();
    (
        node.metadata.labels.as_ref(),
        spec.and_then(|s| s.taints.as_ref()),
        spec.and_then(|s| s.unschedulable),
        status.and_then(|s| s.allocatable.as_ref()),
        status.and_then(|s| s.capacity.as_ref()),
        status.and_then(|s| s.conditions.as_ref()).map(|cs| {
            cs.iter()
                .map(|c| (c.type_.as_str(), c.status.as_str()))
                .collect::<Vec<_>>()
        }),
    )
}

/// One node and what is assigned to it.
#[derive(Clone, Debug, Default)]
pub struct NodeInfo {
    pub name: String,
    /// None while pods name a node the cache has not seen (or no longer has).
    pub node: Option<Node>,
    pub allocatable: Resources,
    pub allowed_pods: i64,
    pub taints: Vec<Taint>,
    pub requested: Resources,
    pub non_zero_cpu: i64,
    pub non_zero_memory: i64,
    /// UIDs of the pods assigned to the node.
    pub pods: HashSet<String>,
    pub used_ports: Vec<(HostPort, u32)>,
    /// Pods per spread group.
    pub spread_counts: HashMap<u64, u32>,
}

impl NodeInfo {
    fn new(name: &str) -> NodeInfo {
        NodeInfo {
            name: name.to_string(),
            ..NodeInfo::default()
        }
    }

    pub fn labels(&self) -> &Labels {
        static EMPTY: Labels = BTreeMap::new();
        self.node
            .as_ref()
            .and_then(|n| n.metadata.labels.as_ref())
            .unwrap_or(&EMPTY)
    }

    fn set_node(&mut self, node: Node) {
        let (allocatable, allowed_pods) = resources::node_allocatable(&node);
        self.allocatable = allocatable;
        self.allowed_pods = allowed_pods;
        self.taints = effective_taints(&node);
        self.node = Some(node);
    }

    fn add_pod(&mut self, uid: &str, pod: &PodRecord) {
        if !self.pods.insert(uid.to_string()) {
            return;
        }
        self.requested.add(&pod.requests);
        self.non_zero_cpu += pod.non_zero_cpu;
        self.non_zero_memory += pod.non_zero_memory;
        for port in &pod.host_ports {
            match self.used_ports.iter_mut().find(|(p, _)| p == port) {
                Some((_, n)) => *n += 1,
                None => self.used_ports.push((port.clone(), 1)),
            }
        }
        if let Some(key) = pod.spread_key {
            *self.spread_counts.entry(key).or_default() += 1;
        }
    }

    pub(crate) fn remove_pod(&mut self, uid: &str, pod: &PodRecord) {
        if !self.pods.remove(uid) {
            return;
        }
        self.requested.subtract(&pod.requests);
        self.non_zero_cpu -= pod.non_zero_cpu;
        self.non_zero_memory -= pod.non_zero_memory;
        for port in &pod.host_ports {
            if let Some(i) = self.used_ports.iter().position(|(p, _)| p == port) {
                self.used_ports[i].1 -= 1;
                if self.used_ports[i].1 == 0 {
                    self.used_ports.swap_remove(i);
                }
            }
        }
        if let Some(key) = pod.spread_key {
            if let Some(n) = self.spread_counts.get_mut(&key) {
                *n -= 1;
                if *n == 0 {
                    self.spread_counts.remove(&key);
                }
            }
        }
    }
}

/// How a node update matters to pending pods.
#[derive(Debug, PartialEq, Eq)]
pub enum NodeChange {
    Added,
    /// Something the filters read changed.
    Updated,
    /// Only fields scheduling ignores changed (heartbeats).
    Unchanged,
}

/// Nodes, the pods assigned to them, and namespace labels (for affinity namespace selectors).
#[derive(Debug, Default)]
pub struct Cache {
    pub nodes: BTreeMap<String, NodeInfo>,
    /// Pods assigned or assumed to a node, by UID; terminated pods are not kept.
    pub pods: HashMap<String, PodRecord>,
    /// UIDs of the cached pods that have required anti-affinity terms.
    pub anti_affinity_pods: HashSet<String>,
    pub namespaces: HashMap<String, Labels>,
    /// PersistentVolumeClaims by "namespace/name".
    pub claims: HashMap<String, ClaimInfo>,
    /// PersistentVolumes by name, with their required node affinity.
    pub volumes: HashMap<String, Option<NodeSelector>>,
    /// StorageClasses by name: whether they wait for the first consumer.
    pub storage_classes: HashMap<String, bool>,
}

impl Cache {
    /// Nodes that exist (not only named by pods).
    pub fn node_count(&self) -> usize {
        self.nodes.values().filter(|n| n.node.is_some()).count()
    }

    pub fn set_node(&mut self, node: Node) -> NodeChange {
        let name = node.metadata.name.clone().unwrap_or_default();
        let info = self
            .nodes
            .entry(name.clone())
            .or_insert_with(|| NodeInfo::new(&name));
        let change = match &info.node {
            None => NodeChange::Added,
            Some(old) if scheduling_view(old) != scheduling_view(&node) => NodeChange::Updated,
            Some(_) => NodeChange::Unchanged,
        };
        info.set_node(node);
        change
    }

    pub fn remove_node(&mut self, name: &str) {
        if let Some(info) = self.nodes.get_mut(name) {
            if info.pods.is_empty() {
                self.nodes.remove(name);
            } else {
                info.node = None;
            }
        }
    }

    /// Account `pod` (by UID) on its node, replacing an earlier record of it.
    pub fn add_pod(&mut self, uid: &str, pod: PodRecord) {
        self.remove_pod(uid);
        let info = self
            .nodes
            .entry(pod.node.clone())
            .or_insert_with(|| NodeInfo::new(&pod.node));
        info.add_pod(uid, &pod);
        if !pod.required_anti_affinity.is_empty() {
            self.anti_affinity_pods.insert(uid.to_string());
        }
        self.pods.insert(uid.to_string(), pod);
    }

    pub fn remove_pod(&mut self, uid: &str) -> Option<PodRecord> {
        let pod = self.pods.remove(uid)?;
        self.anti_affinity_pods.remove(uid);
        if let Some(info) = self.nodes.get_mut(&pod.node) {
            info.remove_pod(uid, &pod);
            if info.node.is_none() && info.pods.is_empty() {
                self.nodes.remove(&pod.node);
            }
        }
        Some(pod)
    }

    pub fn namespace_labels(&self, namespace: &str) -> &Labels {
        static EMPTY: Labels = BTreeMap::new();
        self.namespaces.get(namespace).unwrap_or(&EMPTY)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(v: serde_json::Value) -> Pod {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn accounting_follows_add_and_remove() {
        let mut cache = Cache::default();
        let node: Node = serde_json::from_value(json!({"metadata": {"name": "n1"},
            "status": {"allocatable": {"cpu": "2", "memory": "4Gi", "pods": "10"},
                       "conditions": [{"type": "Ready", "status": "True"}]}}))
        .unwrap();
        assert_eq!(cache.set_node(node.clone()), NodeChange::Added);
        assert_eq!(cache.set_node(node), NodeChange::Unchanged);
        let p = pod(
            json!({"metadata": {"name": "a", "namespace": "default", "labels": {"app": "x"}},
            "spec": {"containers": [{"name": "c", "resources": {"requests": {"cpu": "500m"}},
                "ports": [{"containerPort": 80, "hostPort": 8080}]}]}}),
        );
        cache.add_pod("uid-a", PodRecord::new(&p, "n1"));
        cache.add_pod("uid-a", PodRecord::new(&p, "n1"));
        let info = &cache.nodes["n1"];
        assert_eq!(info.requested.milli_cpu, 500);
        assert_eq!(info.non_zero_memory, resources::DEFAULT_MEMORY_REQUEST);
        assert_eq!(info.pods.len(), 1);
        assert_eq!(info.used_ports.len(), 1);
        assert_eq!(info.spread_counts.values().sum::<u32>(), 1);
        cache.remove_pod("uid-a");
        let info = &cache.nodes["n1"];
        assert_eq!(info.requested, Resources::default());
        assert!(info.used_ports.is_empty() && info.spread_counts.is_empty());
    }

    #[test]
    fn pods_on_unknown_nodes_keep_a_placeholder() {
        let mut cache = Cache::default();
        let p = pod(json!({"metadata": {"name": "a"}, "spec": {"containers": []}}));
        cache.add_pod("u", PodRecord::new(&p, "ghost"));
        assert_eq!(cache.node_count(), 0);
        assert!(cache.nodes.contains_key("ghost"));
        cache.remove_pod("u");
        assert!(!cache.nodes.contains_key("ghost"));
    }

    #[test]
    fn spread_key_prefers_the_controller() {
        let owned = pod(json!({"metadata": {"name": "a", "labels": {"app": "x"},
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "rs",
                "uid": "rs-uid", "controller": true}]}}));
        let other = pod(json!({"metadata": {"name": "b", "labels": {"app": "y"},
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "rs",
                "uid": "rs-uid", "controller": true}]}}));
        assert_eq!(spread_key(&owned), spread_key(&other));
        let bare1 =
            pod(json!({"metadata": {"name": "c", "namespace": "ns", "labels": {"app": "x"}}}));
        let bare2 =
            pod(json!({"metadata": {"name": "d", "namespace": "ns", "labels": {"app": "x"}}}));
        let bare3 =
            pod(json!({"metadata": {"name": "e", "namespace": "other", "labels": {"app": "x"}}}));
        assert_eq!(spread_key(&bare1), spread_key(&bare2));
        assert_ne!(spread_key(&bare1), spread_key(&bare3));
        assert_eq!(spread_key(&pod(json!({"metadata": {"name": "f"}}))), None);
    }

    #[test]
    fn host_ports_sanitised_and_conflicting() {
        let p = pod(
            json!({"metadata": {"name": "a"}, "spec": {"containers": [{"name": "c", "ports": [
                {"containerPort": 80, "hostPort": 8080},
                {"containerPort": 53, "hostPort": 53, "protocol": "UDP", "hostIP": "10.0.0.1"},
                {"containerPort": 90}
            ]}]}}),
        );
        let ports = pod_host_ports(&p);
        assert_eq!(ports.len(), 2);
        assert_eq!(ports[0], HostPort::new(None, None, 8080));
        assert!(HostPort::new(Some("10.0.0.2"), Some("TCP"), 8080).conflicts(&ports[0]));
        assert!(!HostPort::new(None, Some("UDP"), 8080).conflicts(&ports[0]));
        assert!(!HostPort::new(Some("10.0.0.2"), Some("UDP"), 53).conflicts(&ports[1]));
        assert!(HostPort::new(None, Some("UDP"), 53).conflicts(&ports[1]));
        let host_net = pod(
            json!({"metadata": {"name": "h"}, "spec": {"hostNetwork": true,
            "containers": [{"name": "c", "ports": [{"containerPort": 9100}]}]}}),
        );
        assert_eq!(pod_host_ports(&host_net)[0].port, 9100);
    }

    #[test]
    fn conditions_imply_taints() {
        let node = |conds: serde_json::Value| -> Node {
            serde_json::from_value(
                json!({"metadata": {"name": "n"}, "status": {"conditions": conds}}),
            )
            .unwrap()
        };
        let keys = |n: &Node| {
            effective_taints(n)
                .into_iter()
                .map(|t| t.key)
                .collect::<Vec<_>>()
        };
        assert!(keys(&node(json!([{"type": "Ready", "status": "True"}]))).is_empty());
        assert_eq!(
            keys(&node(json!([{"type": "Ready", "status": "False"}]))),
            ["node.kubernetes.io/not-ready"]
        );
        assert_eq!(
            keys(&node(
                json!([{"type": "Ready", "status": "Unknown"}, {"type": "DiskPressure", "status": "True"}])
            )),
            [
                "node.kubernetes.io/unreachable",
                "node.kubernetes.io/disk-pressure"
            ]
        );
        assert_eq!(keys(&node(json!([]))), ["node.kubernetes.io/not-ready"]);
    }
}
