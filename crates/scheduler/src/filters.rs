//! Filter plugins: each decides whether one node can take the pod, and if not says why in
//! upstream's words (the reasons end up, counted, in the FailedScheduling message).
//!
//! They run in upstream's order and the first rejection wins, so a node contributes the reasons
//! of one plugin only.

use std::borrow::Cow;
use std::collections::HashMap;

use k8s_openapi::api::core::v1::{Pod, PodAffinityTerm, Taint, Toleration};

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
    affinity: AffinityState<'a>,
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

impl<'a> PodInfo<'a> {
    pub fn new(pod: &'a Pod, cache: &Cache) -> PodInfo<'a> {
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
        PodInfo {
            pod,
            namespace,
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
    inter_pod_affinity,
];

/// Runs the filters in order; the first rejection is the node's.
pub fn run_filters(pod: &PodInfo, node: &NodeInfo) -> FilterResult {
    for filter in FILTERS {
        filter(pod, node)?;
    }
    Ok(())
}
