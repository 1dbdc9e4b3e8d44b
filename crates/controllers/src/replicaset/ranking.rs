//! Which pods a ReplicaSet deletes first when it has too many (upstream
//! `ActivePodsWithRanks.Less` with PodDeletionCost and LogarithmicScaleDown, both on by default):
//!
//! 1. unscheduled before scheduled;
//! 2. Pending before Unknown before Running;
//! 3. not Ready before Ready;
//! 4. lower `controller.kubernetes.io/pod-deletion-cost` first;
//! 5. more related pods on the same node first (doubled-up pods);
//! 6. Ready for a shorter time first (log2 buckets of the age, then uid);
//! 7. more container restarts first;
//! 8. newer first (log2 buckets of the age, then uid).

use std::cmp::Ordering;
use std::collections::HashMap;

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::jiff::Timestamp;

use super::pods;

const DELETION_COST: &str = "controller.kubernetes.io/pod-deletion-cost";

fn node(pod: &Pod) -> &str {
    pod.spec
        .as_ref()
        .and_then(|s| s.node_name.as_deref())
        .unwrap_or("")
}

fn phase_ordinal(pod: &Pod) -> u8 {
    match pods::phase(pod) {
        "Pending" => 0,
        "Unknown" => 1,
        "Running" => 2,
        _ => 3,
    }
}

fn deletion_cost(pod: &Pod) -> i32 {
    pod.metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(DELETION_COST))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn max_restarts(pod: &Pod) -> i32 {
    pod.status
        .as_ref()
        .and_then(|s| s.container_statuses.as_ref())
        .map(|cs| cs.iter().map(|c| c.restart_count).max().unwrap_or(0))
        .unwrap_or(0)
}

fn uid(pod: &Pod) -> &str {
    pod.metadata.uid.as_deref().unwrap_or("")
}

/// log2 of the age in nanoseconds, -1 for a time not in the past.
fn log_rank(t: Timestamp, now: Timestamp) -> i64 {
    let age = now.as_nanosecond() - t.as_nanosecond();
    if age > 0 {
        (age as f64).log2() as i64
    } else {
        -1
    }
}

/// Upstream `afterOrZero` then logarithmic bucketing: true ordering "i before j" for times where
/// the newer (or missing) one goes first.
fn newer_first(
    a: Option<Timestamp>,
    b: Option<Timestamp>,
    ua: &str,
    ub: &str,
    now: Timestamp,
) -> Ordering {
    match (a, b) {
        (None, None) => Ordering::Equal,
        (None, Some(_)) => Ordering::Less,
        (Some(_), None) => Ordering::Greater,
        (Some(a), Some(b)) if a == b => Ordering::Equal,
        (Some(a), Some(b)) => {
            let diff = log_rank(a, now) - log_rank(b, now);
            if diff == 0 {
                ua.cmp(ub)
            } else {
                diff.cmp(&0)
            }
        }
    }
}

/// Orders `candidates` so the ones to delete first come first. `related` are the pods of every
/// ReplicaSet with the same controller (they define how crowded each node is).
pub(crate) fn sort_for_deletion(
    candidates: &mut [std::sync::Arc<Pod>],
    related: &[std::sync::Arc<Pod>],
    now: Timestamp,
) {
    let mut on_node: HashMap<&str, usize> = HashMap::new();
    for p in related.iter().filter(|p| pods::is_active(p)) {
        *on_node.entry(node(p)).or_default() += 1;
    }
    let rank = |p: &Pod| on_node.get(node(p)).copied().unwrap_or(0);
    candidates.sort_by(|a, b| {
        let (na, nb) = (node(a), node(b));
        if na != nb && (na.is_empty() || nb.is_empty()) {
            return nb.is_empty().cmp(&na.is_empty());
        }
        let by_phase = phase_ordinal(a).cmp(&phase_ordinal(b));
        if by_phase != Ordering::Equal {
            return by_phase;
        }
        let (ra, rb) = (pods::is_ready(a), pods::is_ready(b));
        if ra != rb {
            return ra.cmp(&rb);
        }
        let by_cost = deletion_cost(a).cmp(&deletion_cost(b));
        if by_cost != Ordering::Equal {
            return by_cost;
        }
        let by_rank = rank(b).cmp(&rank(a));
        if by_rank != Ordering::Equal {
            return by_rank;
        }
        if ra && rb {
            let ta = pods::ready_since(a).flatten();
            let tb = pods::ready_since(b).flatten();
            let o = newer_first(ta, tb, uid(a), uid(b), now);
            if o != Ordering::Equal {
                return o;
            }
        }
        let by_restarts = max_restarts(b).cmp(&max_restarts(a));
        if by_restarts != Ordering::Equal {
            return by_restarts;
        }
        let ca = a.metadata.creation_timestamp.as_ref().map(|t| t.0);
        let cb = b.metadata.creation_timestamp.as_ref().map(|t| t.0);
        newer_first(ca, cb, uid(a), uid(b), now)
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn pod(name: &str, node: &str, phase: &str, ready_at: Option<&str>, created: &str) -> Arc<Pod> {
        let mut conditions = vec![];
        if let Some(at) = ready_at {
            conditions.push(
                serde_json::json!({"type": "Ready", "status": "True", "lastTransitionTime": at}),
            );
        }
        Arc::new(
            serde_json::from_value(serde_json::json!({
                "metadata": {"name": name, "uid": name, "creationTimestamp": created},
                "spec": {"nodeName": node, "containers": []},
                "status": {"phase": phase, "conditions": conditions}
            }))
            .unwrap(),
        )
    }

    fn names(pods: &[Arc<Pod>]) -> Vec<&str> {
        pods.iter()
            .map(|p| p.metadata.name.as_deref().unwrap())
            .collect()
    }

    #[test]
    fn deletes_unscheduled_pending_unready_then_newest() {
        let now: Timestamp = "2024-01-01T01:00:00Z".parse().unwrap();
        let old_ready = pod(
            "old-ready",
            "n1",
            "Running",
            Some("2024-01-01T00:00:10Z"),
            "2024-01-01T00:00:00Z",
        );
        let new_ready = pod(
            "new-ready",
            "n2",
            "Running",
            Some("2024-01-01T00:59:50Z"),
            "2024-01-01T00:59:40Z",
        );
        let unready = pod("unready", "n3", "Running", None, "2024-01-01T00:00:00Z");
        let pending = pod("pending", "n4", "Pending", None, "2024-01-01T00:00:00Z");
        let unscheduled = pod("unscheduled", "", "Pending", None, "2024-01-01T00:00:00Z");
        let mut all = vec![old_ready, new_ready, unready, pending, unscheduled];
        let related = all.clone();
        sort_for_deletion(&mut all, &related, now);
        assert_eq!(
            names(&all),
            [
                "unscheduled",
                "pending",
                "unready",
                "new-ready",
                "old-ready"
            ]
        );
    }

    #[test]
    fn doubled_up_pods_go_first() {
        let now: Timestamp = "2024-01-01T01:00:00Z".parse().unwrap();
        let t = Some("2024-01-01T00:00:10Z");
        let c = "2024-01-01T00:00:00Z";
        let mut all = vec![
            pod("alone", "n1", "Running", t, c),
            pod("crowded", "n2", "Running", t, c),
        ];
        let related = vec![
            all[0].clone(),
            all[1].clone(),
            pod("other", "n2", "Running", t, c),
        ];
        sort_for_deletion(&mut all, &related, now);
        assert_eq!(names(&all), ["crowded", "alone"]);
    }
}
