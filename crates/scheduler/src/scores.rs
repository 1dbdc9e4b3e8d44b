//! Score plugins: each rates a feasible node 0..=100 for the pod; the weighted sum picks the node,
//! ties broken at random.

use std::collections::HashMap;

use crate::cache::NodeInfo;
use crate::filters::PodInfo;
use crate::selectors;

pub const MAX_NODE_SCORE: i64 = 100;

/// Weights as in upstream's default profile.
pub const WEIGHT_LEAST_ALLOCATED: i64 = 1;
pub const WEIGHT_BALANCED_ALLOCATION: i64 = 1;
pub const WEIGHT_NODE_AFFINITY: i64 = 2;
pub const WEIGHT_TAINT_TOLERATION: i64 = 3;
pub const WEIGHT_SPREAD: i64 = 2;

/// The zone label spreading also balances over.
pub const ZONE_LABEL: &str = "topology.kubernetes.io/zone";
/// Share of the spread score that comes from zones when nodes have zones.
const ZONE_WEIGHTING: f64 = 2.0 / 3.0;

/// (requested after placing the pod, allocatable) for cpu and memory, non-zero defaults applied.
fn cpu_memory(pod: &PodInfo, node: &NodeInfo) -> [(i64, i64); 2] {
    [
        (
            node.non_zero_cpu + pod.non_zero_cpu,
            node.allocatable.milli_cpu,
        ),
        (
            node.non_zero_memory + pod.non_zero_memory,
            node.allocatable.memory,
        ),
    ]
}

/// NodeResourcesFit, LeastAllocated strategy: the free share of cpu and memory, equally weighted.
pub fn least_allocated(pod: &PodInfo, node: &NodeInfo) -> i64 {
    let mut score = 0;
    let mut weights = 0;
    for (requested, allocatable) in cpu_memory(pod, node) {
        if allocatable == 0 {
            continue;
        }
        score += if requested > allocatable {
            0
        } else {
            (allocatable - requested) * MAX_NODE_SCORE / allocatable
        };
        weights += 1;
    }
    if weights == 0 {
        0
    } else {
        score / weights
    }
}

/// NodeResourcesBalancedAllocation: prefers nodes whose cpu and memory use stay alike.
pub fn balanced_allocation(pod: &PodInfo, node: &NodeInfo) -> i64 {
    let fractions: Vec<f64> = cpu_memory(pod, node)
        .into_iter()
        .filter(|(_, allocatable)| *allocatable > 0)
        .map(|(requested, allocatable)| (requested as f64 / allocatable as f64).min(1.0))
        .collect();
    let std = if fractions.len() == 2 {
        ((fractions[0] - fractions[1]) / 2.0).abs()
    } else {
        0.0
    };
    ((1.0 - std) * MAX_NODE_SCORE as f64) as i64
}

/// NodeAffinity: the summed weights of the preferred node affinity terms the node matches
/// (normalised across nodes).
pub fn node_affinity(pod: &PodInfo, node: &NodeInfo) -> i64 {
    let Some(n) = &node.node else { return 0 };
    pod.pod
        .spec
        .as_ref()
        .and_then(|s| s.affinity.as_ref())
        .and_then(|a| a.node_affinity.as_ref())
        .and_then(|na| {
            na.preferred_during_scheduling_ignored_during_execution
                .as_ref()
        })
        .map(|terms| {
            terms
                .iter()
                .filter(|t| {
                    t.weight != 0 && selectors::node_selector_term_matches(&t.preference, n)
                })
                .map(|t| i64::from(t.weight))
                .sum()
        })
        .unwrap_or(0)
}

/// TaintToleration: how many PreferNoSchedule taints the pod does not tolerate (fewer is better;
/// normalised in reverse).
pub fn taint_toleration(pod: &PodInfo, node: &NodeInfo) -> i64 {
    let prefer: Vec<_> = pod
        .tolerations
        .iter()
        .filter(|t| {
            t.effect
                .as_deref()
                .is_none_or(|e| e.is_empty() || e == "PreferNoSchedule")
        })
        .cloned()
        .collect();
    node.taints
        .iter()
        .filter(|t| t.effect == "PreferNoSchedule" && !selectors::tolerated(&prefer, t))
        .count() as i64
}

/// Spreading: how many pods of the pod's group (same controller, or same labels) the node already
/// runs (fewer is better; normalised in reverse, zones included).
pub fn spread(pod: &PodInfo, node: &NodeInfo) -> i64 {
    pod.spread_key
        .and_then(|k| node.spread_counts.get(&k))
        .map(|n| i64::from(*n))
        .unwrap_or(0)
}

/// Upstream `DefaultNormalizeScore`: scale to 0..=100 by the maximum, optionally reversed.
pub fn normalize(scores: &mut [i64], reverse: bool) {
    let max = scores.iter().copied().max().unwrap_or(0);
    if max == 0 {
        if reverse {
            scores.iter_mut().for_each(|s| *s = MAX_NODE_SCORE);
        }
        return;
    }
    for s in scores.iter_mut() {
        let v = MAX_NODE_SCORE * *s / max;
        *s = if reverse { MAX_NODE_SCORE - v } else { v };
    }
}

/// Spread normalisation (upstream SelectorSpread): fewer pods of the group on the node (and in its
/// zone, weighted 2/3 when nodes have zones) scores higher.
pub fn normalize_spread(counts: &mut [i64], nodes: &[&NodeInfo]) {
    let mut by_zone: HashMap<&str, i64> = HashMap::new();
    for (count, node) in counts.iter().zip(nodes) {
        if let Some(zone) = node.labels().get(ZONE_LABEL) {
            *by_zone.entry(zone.as_str()).or_default() += count;
        }
    }
    let max_node = counts.iter().copied().max().unwrap_or(0);
    let max_zone = by_zone.values().copied().max().unwrap_or(0);
    let max = MAX_NODE_SCORE as f64;
    for (count, node) in counts.iter_mut().zip(nodes) {
        let mut score = if max_node > 0 {
            max * (max_node - *count) as f64 / max_node as f64
        } else {
            max
        };
        if !by_zone.is_empty() {
            if let Some(zone) = node.labels().get(ZONE_LABEL) {
                let zone_score = if max_zone > 0 {
                    max * (max_zone - by_zone[zone.as_str()]) as f64 / max_zone as f64
                } else {
                    max
                };
                score = score * (1.0 - ZONE_WEIGHTING) + ZONE_WEIGHTING * zone_score;
            }
        }
        *count = score as i64;
    }
}

/// The weighted total score of every feasible node.
pub fn score_nodes(pod: &PodInfo, nodes: &[&NodeInfo]) -> Vec<i64> {
    let n = nodes.len();
    let mut total = vec![0i64; n];
    if n <= 1 {
        return total;
    }
    let mut column = Vec::with_capacity(n);
    for (i, node) in nodes.iter().enumerate() {
        total[i] += WEIGHT_LEAST_ALLOCATED * least_allocated(pod, node)
            + WEIGHT_BALANCED_ALLOCATION * balanced_allocation(pod, node);
    }
    let mut add = |column: &mut Vec<i64>, weight: i64| {
        for (t, s) in total.iter_mut().zip(column.iter()) {
            *t += weight * s;
        }
    };
    column.extend(nodes.iter().map(|node| node_affinity(pod, node)));
    normalize(&mut column, false);
    add(&mut column, WEIGHT_NODE_AFFINITY);
    column.clear();
    column.extend(nodes.iter().map(|node| taint_toleration(pod, node)));
    normalize(&mut column, true);
    add(&mut column, WEIGHT_TAINT_TOLERATION);
    column.clear();
    column.extend(nodes.iter().map(|node| spread(pod, node)));
    normalize_spread(&mut column, nodes);
    add(&mut column, WEIGHT_SPREAD);
    total
}

/// The index of the best score, a uniformly random one among equals (reservoir sampling).
pub fn select_host(scores: &[i64], rng: &mut impl rand::Rng) -> Option<usize> {
    let mut best: Option<usize> = None;
    let mut ties = 0u32;
    for (i, s) in scores.iter().enumerate() {
        match best {
            Some(b) if *s < scores[b] => {}
            Some(b) if *s == scores[b] => {
                ties += 1;
                if rng.random_range(0..ties) == 0 {
                    best = Some(i);
                }
            }
            _ => {
                best = Some(i);
                ties = 1;
            }
        }
    }
    best
}
