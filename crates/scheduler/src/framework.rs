//! One scheduling attempt: filter every node, score the feasible ones, pick the best; or explain,
//! in upstream's words, why no node fits.

use std::collections::HashMap;

use k8s_openapi::api::core::v1::Pod;

use crate::cache::{Cache, NodeInfo};
use crate::filters::{self, Code, PodInfo, Rejection};
use crate::scores;

/// Upstream `ErrNoNodesAvailable`.
pub const NO_NODES_AVAILABLE: &str = "no nodes available to schedule pods";
const NO_VICTIMS: &str = "No preemption victims found for incoming pod";
const PREEMPTION_NOT_HELPFUL: &str = "Preemption is not helpful for scheduling";
const NOT_ELIGIBLE_NEVER: &str = "not eligible due to preemptionPolicy=Never.";

/// Picks a node for `pod`, or returns the FailedScheduling message.
pub fn schedule(pod: &Pod, cache: &Cache, rng: &mut impl rand::Rng) -> Result<String, String> {
    let num_nodes = cache.node_count();
    if num_nodes == 0 {
        return Err(NO_NODES_AVAILABLE.to_string());
    }
    let info = PodInfo::new(pod, cache);
    if let Some(message) = &info.prefilter {
        // Every node rejects the pod alike; preemption cannot help.
        let post_filter = format!(
            "preemption: {}",
            fit_error_message(
                num_nodes,
                std::iter::repeat_n(&not_helpful(), num_nodes),
                None,
                None
            )
        );
        return Err(fit_error_message(
            num_nodes,
            std::iter::empty(),
            Some(message),
            Some(&post_filter),
        ));
    }
    let mut feasible: Vec<&NodeInfo> = Vec::with_capacity(num_nodes);
    let mut rejected: Vec<(&NodeInfo, Rejection)> = Vec::new();
    for node in cache.nodes.values().filter(|n| n.node.is_some()) {
        match filters::run_filters(&info, node) {
            Ok(()) => feasible.push(node),
            Err(r) => rejected.push((node, r)),
        }
    }
    if feasible.is_empty() {
        let post_filter = preemption_message(&info, cache, &rejected, num_nodes);
        return Err(fit_error_message(
            num_nodes,
            rejected.iter().map(|(_, r)| r),
            None,
            post_filter.as_deref(),
        ));
    }
    let scores = scores::score_nodes(&info, &feasible);
    let best = scores::select_host(&scores, rng).unwrap_or(0);
    Ok(feasible[best].name.clone())
}

fn not_helpful() -> Rejection {
    Rejection {
        code: Code::UnschedulableAndUnresolvable,
        reasons: vec![PREEMPTION_NOT_HELPFUL.into()],
    }
}

/// Ends `message` with `part` as a sentence: " <part>." (no doubled period).
fn push_sentence(message: &mut String, part: &str) {
    message.push(' ');
    message.push_str(part);
    if !part.ends_with('.') {
        message.push('.');
    }
}

/// Upstream `FitError.Error()`: "0/N nodes are available: <count> <reason>, ... ." with the
/// "<count> <reason>" strings sorted (or the PreFilter message instead), then the post-filter
/// (preemption) message.
pub fn fit_error_message<'a>(
    num_nodes: usize,
    rejections: impl Iterator<Item = &'a Rejection>,
    pre_filter: Option<&str>,
    post_filter: Option<&str>,
) -> String {
    let mut message = format!("0/{num_nodes} nodes are available:");
    if let Some(pre) = pre_filter {
        push_sentence(&mut message, pre);
        if let Some(post) = post_filter.filter(|p| !p.is_empty()) {
            push_sentence(&mut message, post);
        }
        return message;
    }
    let mut counts: HashMap<&str, usize> = HashMap::new();
    for r in rejections {
        for reason in &r.reasons {
            *counts.entry(reason.as_ref()).or_default() += 1;
        }
    }
    let mut histogram: Vec<String> = counts
        .into_iter()
        .map(|(reason, n)| format!("{n} {reason}"))
        .collect();
    histogram.sort();
    if !histogram.is_empty() {
        push_sentence(&mut message, &histogram.join(", "));
    }
    if let Some(post) = post_filter.filter(|p| !p.is_empty()) {
        push_sentence(&mut message, post);
    }
    message
}

/// What upstream's DefaultPreemption would report: per node, whether evicting lower-priority pods
/// could help. None when some node would fit after evictions (upstream would preempt there; this
/// scheduler does not preempt, and reports the filter message alone).
pub fn preemption_message(
    pod: &PodInfo,
    cache: &Cache,
    rejected: &[(&NodeInfo, Rejection)],
    num_nodes: usize,
) -> Option<String> {
    let never = pod
        .pod
        .spec
        .as_ref()
        .and_then(|s| s.preemption_policy.as_deref())
        == Some("Never");
    if never {
        return Some(format!("preemption: {NOT_ELIGIBLE_NEVER}"));
    }
    let mut statuses: Vec<Rejection> = Vec::with_capacity(rejected.len());
    for (node, rejection) in rejected {
        if rejection.code == Code::UnschedulableAndUnresolvable {
            statuses.push(not_helpful());
            continue;
        }
        let victims: Vec<&String> = node
            .pods
            .iter()
            .filter(|uid| {
                cache
                    .pods
                    .get(*uid)
                    .is_some_and(|p| p.priority < pod.priority)
            })
            .collect();
        if victims.is_empty() {
            statuses.push(Rejection {
                code: Code::UnschedulableAndUnresolvable,
                reasons: vec![NO_VICTIMS.into()],
            });
            continue;
        }
        let mut without = (*node).clone();
        for uid in victims {
            if let Some(p) = cache.pods.get(uid) {
                without.remove_pod(uid, p);
            }
        }
        match filters::run_filters(pod, &without) {
            Ok(()) => {
                tracing::debug!(
                    node = %node.name,
                    "evicting lower-priority pods would make room; preemption is not implemented"
                );
                return None;
            }
            Err(r) => statuses.push(r),
        }
    }
    Some(format!(
        "preemption: {}",
        fit_error_message(num_nodes, statuses.iter(), None, None)
    ))
}
