//! Filter plugins: each decides whether one node can take the pod, and if not says why in
//! upstream's words (the reasons end up, counted, in the FailedScheduling message).
//!
//! They run in upstream's order and the first rejection wins, so a node contributes the reasons
//! of one plugin only.

use std::borrow::Cow;
use std::collections::HashMap;

use k8s_openapi::api::core::v1::{
    NodeSelector, Pod, PodAffinityTerm, Taint, Toleration, TopologySpreadConstraint,
};

use crate::cache::{self, Cache, HostPort, NodeInfo};
use crate::resources::{self, Resources};
use crate::selectors::{self, Labels};

/// How final a rejection is (upstream status codes).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Code {
    /// Removing pods (preemption) might make the node fit.
    Unschedulable,
    /// Nothing on the node's side of the pod can change that.
    UnschedulableAndUnresolvable,
}

/// Why a node cannot take the pod.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rejection {
    pub code: Code,
    pub reasons: Vec<Cow<'static, str>>,
}

impl Rejection {
    fn one(code: Code, reason: impl Into<Cow<'static, str>>) -> Rejection {
        Rejection {
            code,
            reasons: vec![reason.into()],
        }
    }
}

pub type FilterResult = Result<(), Rejection>;

pub const ERR_NODE_UNSCHEDULABLE: &str = "node(s) were unschedulable";
pub const ERR_NODE_NAME: &str = "node(s) didn't match the requested node name";
pub const ERR_NODE_AFFINITY: &str = "node(s) didn't match Pod's node affinity/selector";
pub const ERR_NODE_PORTS: &str = "node(s) didn't have free ports for the requested pod ports";
pub const ERR_TOO_MANY_PODS: &str = "Too many pods";
pub const ERR_POD_AFFINITY: &str = "node(s) didn't match pod affinity rules";
pub const ERR_POD_ANTI_AFFINITY: &str = "node(s) didn't match pod anti-affinity rules";
pub const ERR_EXISTING_ANTI_AFFINITY: &str =
    "node(s) didn't satisfy existing pods anti-affinity rules";
pub const ERR_VOLUME_NODE_CONFLICT: &str = "node(s) had volume node affinity conflict";
pub const ERR_VOLUME_MISSING: &str =
    "node(s) unavailable due to one or more pvc(s) bound to non-existent pv(s)";
pub const ERR_UNBOUND_IMMEDIATE: &str = "pod has unbound immediate PersistentVolumeClaims";
pub const ERR_SPREAD: &str = "node(s) didn't match pod topology spread constraints";
pub const ERR_SPREAD_MISSING_LABEL: &str =
    "node(s) didn't match pod topology spread constraints (missing required label)";

/// A topology domain: (topology key, node label value).
type Domain = (String, String);

/// What the filters and scores need about the pod being scheduled, computed once per attempt
/// (upstream PreFilter state).
pub struct PodInfo<'a> {
    pub pod: &'a Pod,
    pub namespace: &'a str,
    pub requests: Resources,
    pub non_zero_cpu: i64,
    pub non_zero_memory: i64,
    pub host_ports: Vec<HostPort>,
    pub tolerations: &'a [Toleration],
    pub spread_key: Option<u64>,
    pub priority: i32,
    /// Why no node can take the pod whatever the node (upstream PreFilter rejection).
    pub prefilter: Option<String>,
    affinity: AffinityState<'a>,
    /// The node affinity of the volumes bound to the pod's claims (None: the volume is missing).
    bound_volumes: Vec<Option<&'a NodeSelector>>,
    spread_constraints: Vec<SpreadState<'a>>,
}

/// One DoNotSchedule topology spread constraint: matching pods per domain.
struct SpreadState<'a> {
    constraint: &'a TopologySpreadConstraint,
    counts: HashMap<String, i64>,
    min: i64,
    self_match: bool,
}

/// Pod (anti-)affinity counts per topology domain.
#[derive(Default)]
struct AffinityState<'a> {
    affinity_terms: &'a [PodAffinityTerm],
    anti_affinity_terms: &'a [PodAffinityTerm],
    /// Domains holding pods that match all of the pod's required affinity terms.
    affinity_counts: HashMap<Domain, u32>,
    /// Domains holding pods that match one of the pod's required anti-affinity terms.
    anti_affinity_counts: HashMap<Domain, u32>,
    /// Domains whose pods' required anti-affinity terms match the pod.
    existing_anti_affinity_counts: HashMap<Domain, u32>,
    /// The pod matches its own affinity terms (the first pod of a group may go anywhere).
    matches_own_affinity: bool,
}

/// Whether a pod affinity term of a pod in `term_namespace` selects a pod in `namespace` with
/// `labels` (upstream `AffinityTerm.Matches`).
pub fn term_matches(
    term: &PodAffinityTerm,
    term_namespace: &str,
    namespace: &str,
    labels: &Labels,
    cache: &Cache,
) -> bool {
    let namespaces = term.namespaces.as_deref().unwrap_or_default();
    let namespace_ok = if namespaces.is_empty() && term.namespace_selector.is_none() {
        namespace == term_namespace
    } else {
        namespaces.iter().any(|n| n == namespace)
            || term.namespace_selector.as_ref().is_some_and(|s| {
                selectors::label_selector_matches(Some(s), cache.namespace_labels(namespace))
            })
    };
    namespace_ok && selectors::label_selector_matches(term.label_selector.as_ref(), labels)
}

/// Whether a topology spread constraint of a pod selects `labels` (its selector plus the pod's
/// values of `matchLabelKeys`).
fn spread_selects(c: &TopologySpreadConstraint, pod_labels: &Labels, labels: &Labels) -> bool {
    selectors::label_selector_matches(c.label_selector.as_ref(), labels)
        && c.match_label_keys
            .iter()
            .flatten()
            .all(|k| match pod_labels.get(k) {
                Some(v) => labels.get(k) == Some(v),
                None => true,
            })
}

/// Upstream VolumeBinding PreFilter: the pod's claims must exist, not be going away, and be bound
/// unless their class waits for the first consumer. Returns the bound volumes' node affinities.
fn volume_prefilter<'a>(
    pod: &Pod,
    cache: &'a Cache,
) -> Result<Vec<Option<&'a NodeSelector>>, String> {
    let namespace = pod.metadata.namespace.as_deref().unwrap_or_default();
    let pod_name = pod.metadata.name.as_deref().unwrap_or_default();
    let mut bound = Vec::new();
    let mut unbound_immediate = false;
    let volumes = pod
        .spec
        .as_ref()
        .and_then(|s| s.volumes.as_deref())
        .unwrap_or_default();
    for v in volumes {
        let (name, ephemeral) = match (&v.persistent_volume_claim, &v.ephemeral) {
            (Some(pvc), _) => (pvc.claim_name.clone(), false),
            (None, Some(_)) => (format!("{pod_name}-{}", v.name), true),
            _ => continue,
        };
        let Some(claim) = cache.claims.get(&format!("{namespace}/{name}")) else {
            return Err(if ephemeral {
                format!("waiting for ephemeral volume controller to create the persistentvolumeclaim {name:?}")
            } else {
                format!("persistentvolumeclaim {name:?} not found")
            });
        };
        if claim.lost {
            return Err(format!(
                "persistentvolumeclaim {name:?} bound to non-existent persistentvolume {:?}",
                claim.volume_name.as_deref().unwrap_or_default()
            ));
        }
        if claim.deleting {
            return Err(format!("persistentvolumeclaim {name:?} is being deleted"));
        }
        match &claim.volume_name {
            Some(volume) => bound.push(match cache.volumes.get(volume) {
                Some(affinity) => affinity.as_ref().or(Some(&ANY_NODE)),
                None => None,
            }),
            None => {
                let delayed = claim
                    .storage_class
                    .as_ref()
                    .and_then(|c| cache.storage_classes.get(c))
                    .copied()
                    .unwrap_or(false);
                if !delayed {
                    unbound_immediate = true;
                }
            }
        }
    }
    if unbound_immediate {
        return Err(ERR_UNBOUND_IMMEDIATE.to_string());
    }
    Ok(bound)
}

/// A volume without node affinity.
static ANY_NODE: NodeSelector = NodeSelector {
    node_selector_terms: Vec::new(),
};

/// PodTopologySpread PreFilter: matching pods per domain for each DoNotSchedule constraint, over
/// the nodes the pod could go to that carry every constraint's topology key.
fn spread_prefilter<'a>(pod: &'a Pod, cache: &Cache) -> Vec<SpreadState<'a>> {
    let constraints: Vec<&TopologySpreadConstraint> = pod
        .spec
        .as_ref()
        .and_then(|s| s.topology_spread_constraints.as_deref())
        .unwrap_or_default()
        .iter()
        .filter(|c| c.when_unsatisfiable == "DoNotSchedule")
        .collect();
    if constraints.is_empty() {
        return Vec::new();
    }
    let namespace = pod.metadata.namespace.as_deref().unwrap_or_default();
    let pod_labels = selectors::pod_labels(pod);
    let tolerations = selectors::pod_tolerations(pod);
    let mut states: Vec<SpreadState> = constraints
        .iter()
        .map(|c| SpreadState {
            constraint: c,
            counts: HashMap::new(),
            min: 0,
            self_match: spread_selects(c, pod_labels, pod_labels),
        })
        .collect();
    for info in cache.nodes.values() {
        let Some(node) = &info.node else { continue };
        let labels = info.labels();
        if !constraints
            .iter()
            .all(|c| labels.contains_key(&c.topology_key))
        {
            continue;
        }
        for state in states.iter_mut() {
            let c = state.constraint;
            if c.node_affinity_policy.as_deref() != Some("Ignore")
                && !selectors::required_node_affinity_matches(pod, node)
            {
                continue;
            }
            if c.node_taints_policy.as_deref() == Some("Honor")
                && info.taints.iter().any(|t| {
                    matches!(t.effect.as_str(), "NoSchedule" | "NoExecute")
                        && !selectors::tolerated(tolerations, t)
                })
            {
                continue;
            }
            let matching = info
                .pods
                .iter()
                .filter_map(|uid| cache.pods.get(uid))
                .filter(|p| {
                    !p.terminating
                        && p.namespace == namespace
                        && spread_selects(c, pod_labels, &p.labels)
                })
                .count() as i64;
            *state
                .counts
                .entry(labels[&c.topology_key].clone())
                .or_default() += matching;
        }
    }
    for state in states.iter_mut() {
        let domains = state.counts.len() as i64;
        state.min = match state.constraint.min_domains {
            Some(min) if domains < i64::from(min) => 0,
            _ => state.counts.values().copied().min().unwrap_or(0),
        };
    }
    states
}

impl<'a> PodInfo<'a> {
    pub fn new(pod: &'a Pod, cache: &'a Cache) -> PodInfo<'a> {
        let non_zero = resources::pod_requests(pod, true);
        let namespace = pod.metadata.namespace.as_deref().unwrap_or_default();
        let labels = selectors::pod_labels(pod);
        let mut affinity = AffinityState {
            affinity_terms: cache::required_affinity(pod),
            anti_affinity_terms: cache::required_anti_affinity(pod),
            ..AffinityState::default()
        };
        let domain_of = |node: &str, key: &str| -> Option<Domain> {
            let value = cache.nodes.get(node)?.labels().get(key)?;
            Some((key.to_string(), value.clone()))
        };
        if !affinity.affinity_terms.is_empty() || !affinity.anti_affinity_terms.is_empty() {
            for existing in cache.pods.values() {
                let matches = |t: &PodAffinityTerm| {
                    term_matches(t, namespace, &existing.namespace, &existing.labels, cache)
                };
                if !affinity.affinity_terms.is_empty()
                    && affinity.affinity_terms.iter().all(matches)
                {
                    for t in affinity.affinity_terms {
                        if let Some(d) = domain_of(&existing.node, &t.topology_key) {
                            *affinity.affinity_counts.entry(d).or_default() += 1;
                        }
                    }
                }
                for t in affinity.anti_affinity_terms {
                    if matches(t) {
                        if let Some(d) = domain_of(&existing.node, &t.topology_key) {
                            *affinity.anti_affinity_counts.entry(d).or_default() += 1;
                        }
                    }
                }
            }
            affinity.matches_own_affinity = affinity
                .affinity_terms
                .iter()
                .all(|t| term_matches(t, namespace, namespace, labels, cache));
        }
        for uid in &cache.anti_affinity_pods {
            let Some(existing) = cache.pods.get(uid) else {
                continue;
            };
            for t in &existing.required_anti_affinity {
                if term_matches(t, &existing.namespace, namespace, labels, cache) {
                    if let Some(d) = domain_of(&existing.node, &t.topology_key) {
                        *affinity.existing_anti_affinity_counts.entry(d).or_default() += 1;
                    }
                }
            }
        }
        let (prefilter, bound_volumes) = match volume_prefilter(pod, cache) {
            Ok(bound) => (None, bound),
            Err(message) => (Some(message), Vec::new()),
        };
        PodInfo {
            pod,
            namespace,
            prefilter,
            bound_volumes,
            spread_constraints: spread_prefilter(pod, cache),
            requests: resources::pod_requests(pod, false),
            non_zero_cpu: non_zero.milli_cpu,
            non_zero_memory: non_zero.memory,
            host_ports: cache::pod_host_ports(pod),
            tolerations: selectors::pod_tolerations(pod),
            spread_key: cache::spread_key(pod),
            priority: cache::pod_priority(pod),
            affinity,
        }
    }
}

/// NodeUnschedulable: a cordoned node takes only pods tolerating
/// `node.kubernetes.io/unschedulable:NoSchedule`.
pub fn node_unschedulable(pod: &PodInfo, node: &NodeInfo) -> FilterResult {
    let cordoned = node
        .node
        .as_ref()
        .and_then(|n| n.spec.as_ref())
        .and_then(|s| s.unschedulable)
        .unwrap_or(false);
    if !cordoned {
        return Ok(());
    }
    let taint = Taint {
        key: "node.kubernetes.io/unschedulable".into(),
        effect: "NoSchedule".into(),
        value: None,
        time_added: None,
    };
    if selectors::tolerated(pod.tolerations, &taint) {
        Ok(())
    } else {
        Err(Rejection::one(
            Code::UnschedulableAndUnresolvable,
            ERR_NODE_UNSCHEDULABLE,
        ))
    }
}

/// NodeName: a pod naming a node in `spec.nodeName` fits only there.
pub fn node_name(pod: &PodInfo, node: &NodeInfo) -> FilterResult {
    match pod
        .pod
        .spec
        .as_ref()
        .and_then(|s| s.node_name.as_deref())
        .filter(|n| !n.is_empty())
    {
        Some(wanted) if wanted != node.name => Err(Rejection::one(
            Code::UnschedulableAndUnresolvable,
            ERR_NODE_NAME,
        )),
        _ => Ok(()),
    }
}

/// TaintToleration: every NoSchedule/NoExecute taint must be tolerated; the first one that is
/// not is named.
pub fn taint_toleration(pod: &PodInfo, node: &NodeInfo) -> FilterResult {
    let untolerated = node.taints.iter().find(|t| {
        matches!(t.effect.as_str(), "NoSchedule" | "NoExecute")
            && !selectors::tolerated(pod.tolerations, t)
    });
    match untolerated {
        None => Ok(()),
        Some(t) => Err(Rejection::one(
            Code::UnschedulableAndUnresolvable,
            format!(
                "node(s) had untolerated taint {{{}: {}}}",
                t.key,
                t.value.as_deref().unwrap_or("")
            ),
        )),
    }
}

/// NodeAffinity: `spec.nodeSelector` and the required node affinity.
pub fn node_affinity(pod: &PodInfo, node: &NodeInfo) -> FilterResult {
    let Some(n) = &node.node else {
        return Err(Rejection::one(
            Code::UnschedulableAndUnresolvable,
            ERR_NODE_AFFINITY,
        ));
    };
    if selectors::required_node_affinity_matches(pod.pod, n) {
        Ok(())
    } else {
        Err(Rejection::one(
            Code::UnschedulableAndUnresolvable,
            ERR_NODE_AFFINITY,
        ))
    }
}

/// NodePorts: no host port of the pod may be in use on the node (same protocol, overlapping IP).
pub fn node_ports(pod: &PodInfo, node: &NodeInfo) -> FilterResult {
    let conflict = pod
        .host_ports
        .iter()
        .any(|want| node.used_ports.iter().any(|(used, _)| want.conflicts(used)));
    if conflict {
        Err(Rejection::one(Code::Unschedulable, ERR_NODE_PORTS))
    } else {
        Ok(())
    }
}

/// NodeResourcesFit: the pod count and every requested resource within allocatable minus what
/// the node's pods already request.
pub fn node_resources_fit(pod: &PodInfo, node: &NodeInfo) -> FilterResult {
    let mut reasons: Vec<Cow<'static, str>> = Vec::new();
    if node.pods.len() as i64 + 1 > node.allowed_pods {
        reasons.push(ERR_TOO_MANY_PODS.into());
    }
    let want = &pod.requests;
    let free = |alloc: i64, used: i64| alloc - used;
    if want.milli_cpu > 0
        && want.milli_cpu > free(node.allocatable.milli_cpu, node.requested.milli_cpu)
    {
        reasons.push("Insufficient cpu".into());
    }
    if want.memory > 0 && want.memory > free(node.allocatable.memory, node.requested.memory) {
        reasons.push("Insufficient memory".into());
    }
    if want.ephemeral_storage > 0
        && want.ephemeral_storage
            > free(
                node.allocatable.ephemeral_storage,
                node.requested.ephemeral_storage,
            )
    {
        reasons.push("Insufficient ephemeral-storage".into());
    }
    for (name, amount) in &want.scalar {
        if *amount > 0 && *amount > free(node.allocatable.scalar(name), node.requested.scalar(name))
        {
            reasons.push(format!("Insufficient {name}").into());
        }
    }
    if reasons.is_empty() {
        Ok(())
    } else {
        Err(Rejection {
            code: Code::Unschedulable,
            reasons,
        })
    }
}

/// VolumeBinding: the volumes bound to the pod's claims must allow the node.
pub fn volume_binding(pod: &PodInfo, node: &NodeInfo) -> FilterResult {
    let mut reasons: Vec<Cow<'static, str>> = Vec::new();
    for affinity in &pod.bound_volumes {
        match (affinity, &node.node) {
            (None, _) => {
                if !reasons.iter().any(|r| r == ERR_VOLUME_MISSING) {
                    reasons.push(ERR_VOLUME_MISSING.into());
                }
            }
            (Some(selector), Some(n)) => {
                let terms = &selector.node_selector_terms;
                if !terms.is_empty()
                    && !terms
                        .iter()
                        .any(|t| selectors::node_selector_term_matches(t, n))
                    && !reasons.iter().any(|r| r == ERR_VOLUME_NODE_CONFLICT)
                {
                    reasons.push(ERR_VOLUME_NODE_CONFLICT.into());
                }
            }
            (Some(_), None) => {}
        }
    }
    if reasons.is_empty() {
        Ok(())
    } else {
        Err(Rejection {
            code: Code::UnschedulableAndUnresolvable,
            reasons,
        })
    }
}

/// PodTopologySpread: for each DoNotSchedule constraint, placing the pod must keep the node's
/// domain within maxSkew of the least populated domain.
pub fn pod_topology_spread(pod: &PodInfo, node: &NodeInfo) -> FilterResult {
    let labels = node.labels();
    for state in &pod.spread_constraints {
        let c = state.constraint;
        let Some(value) = labels.get(&c.topology_key) else {
            return Err(Rejection::one(
                Code::UnschedulableAndUnresolvable,
                ERR_SPREAD_MISSING_LABEL,
            ));
        };
        let matching = state.counts.get(value).copied().unwrap_or(0);
        let skew = matching + i64::from(state.self_match) - state.min;
        if skew > i64::from(c.max_skew) {
            return Err(Rejection::one(Code::Unschedulable, ERR_SPREAD));
        }
    }
    Ok(())
}

/// InterPodAffinity: the pod's required affinity and anti-affinity, and the required
/// anti-affinity of the pods already placed.
pub fn inter_pod_affinity(pod: &PodInfo, node: &NodeInfo) -> FilterResult {
    let state = &pod.affinity;
    let labels = node.labels();
    if !state.affinity_terms.is_empty() {
        let mut pods_exist = true;
        for t in state.affinity_terms {
            let Some(value) = labels.get(&t.topology_key) else {
                return Err(Rejection::one(
                    Code::UnschedulableAndUnresolvable,
                    ERR_POD_AFFINITY,
                ));
            };
            let count = state
                .affinity_counts
                .get(&(t.topology_key.clone(), value.clone()))
                .copied()
                .unwrap_or(0);
            if count == 0 {
                pods_exist = false;
            }
        }
        // The first pod of a group that matches its own terms may go anywhere.
        let first_of_group = state.affinity_counts.is_empty() && state.matches_own_affinity;
        if !pods_exist && !first_of_group {
            return Err(Rejection::one(
                Code::UnschedulableAndUnresolvable,
                ERR_POD_AFFINITY,
            ));
        }
    }
    for t in state.anti_affinity_terms {
        if let Some(value) = labels.get(&t.topology_key) {
            let key = (t.topology_key.clone(), value.clone());
            if state.anti_affinity_counts.get(&key).copied().unwrap_or(0) > 0 {
                return Err(Rejection::one(Code::Unschedulable, ERR_POD_ANTI_AFFINITY));
            }
        }
    }
    if !state.existing_anti_affinity_counts.is_empty() {
        for (key, value) in labels {
            let domain = (key.clone(), value.clone());
            if state
                .existing_anti_affinity_counts
                .get(&domain)
                .copied()
                .unwrap_or(0)
                > 0
            {
                return Err(Rejection::one(
                    Code::Unschedulable,
                    ERR_EXISTING_ANTI_AFFINITY,
                ));
            }
        }
    }
    Ok(())
}

/// A filter plugin.
pub type Filter = fn(&PodInfo, &NodeInfo) -> FilterResult;

/// The filter plugins in upstream's order.
pub const FILTERS: &[Filter] = &[
    node_unschedulable,
    node_name,
    taint_toleration,
    node_affinity,
    node_ports,
    node_resources_fit,
    volume_binding,
    pod_topology_spread,
    inter_pod_affinity,
];

/// Runs the filters in order; the first rejection is the node's.
pub fn run_filters(pod: &PodInfo, node: &NodeInfo) -> FilterResult {
    for filter in FILTERS {
        filter(pod, node)?;
    }
    Ok(())
}
