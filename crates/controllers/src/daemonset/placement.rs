//! Which nodes a DaemonSet runs on: upstream's `NodeShouldRunDaemonPod` (node name, nodeSelector,
//! required node affinity, taints against the template's tolerations plus the ones every daemon
//! pod gets), and how a daemon pod is pinned to its node.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::DaemonSet;
use k8s_openapi::api::core::v1::{
    Affinity, Node, NodeAffinity, NodeSelector, NodeSelectorRequirement, NodeSelectorTerm, Pod,
    PodSpec, Taint, Toleration,
};

/// The field daemon pods are pinned by (`matchFields`), as upstream.
const NODE_NAME_FIELD: &str = "metadata.name";

/// Tolerations upstream adds to every daemon pod (`AddOrUpdateDaemonPodTolerations`): daemons keep
/// running on not-ready/unreachable nodes and are placed despite pressure and cordoning.
fn daemon_tolerations(host_network: bool) -> Vec<Toleration> {
    let toleration = |key: &str, effect: &str| Toleration {
        key: Some(key.into()),
        operator: Some("Exists".into()),
        effect: Some(effect.into()),
        ..Toleration::default()
    };
    let mut list = vec![
        toleration("node.kubernetes.io/not-ready", "NoExecute"),
        toleration("node.kubernetes.io/unreachable", "NoExecute"),
        toleration("node.kubernetes.io/disk-pressure", "NoSchedule"),
        toleration("node.kubernetes.io/memory-pressure", "NoSchedule"),
        toleration("node.kubernetes.io/pid-pressure", "NoSchedule"),
        toleration("node.kubernetes.io/unschedulable", "NoSchedule"),
    ];
    if host_network {
        list.push(toleration(
            "node.kubernetes.io/network-unavailable",
            "NoSchedule",
        ));
    }
    list
}

/// Adds the daemon tolerations to a pod spec, replacing ones with the same key, operator, value
/// and effect (upstream's `AddOrUpdateTolerationInPodSpec`).
pub(crate) fn add_daemon_tolerations(spec: &mut PodSpec) {
    let host_network = spec.host_network == Some(true);
    let tolerations = spec.tolerations.get_or_insert_with(Vec::new);
    for extra in daemon_tolerations(host_network) {
        let same = |t: &Toleration| {
            t.key == extra.key
                && t.effect == extra.effect
                && t.operator == extra.operator
                && t.value == extra.value
        };
        match tolerations.iter_mut().find(|t| same(t)) {
            Some(existing) => *existing = extra,
            None => tolerations.push(extra),
        }
    }
}

/// `Toleration.ToleratesTaint`.
pub(crate) fn tolerates(toleration: &Toleration, taint: &Taint) -> bool {
    let effect = toleration.effect.as_deref().unwrap_or_default();
    if !effect.is_empty() && effect != taint.effect {
        return false;
    }
    let key = toleration.key.as_deref().unwrap_or_default();
    if !key.is_empty() && key != taint.key {
        return false;
    }
    match toleration.operator.as_deref().unwrap_or_default() {
        "" | "Equal" => {
            toleration.value.as_deref().unwrap_or_default()
                == taint.value.as_deref().unwrap_or_default()
        }
        "Exists" => true,
        _ => false,
    }
}

/// The first taint with one of `effects` that no toleration tolerates.
pub(crate) fn untolerated_taint<'a>(
    taints: &'a [Taint],
    tolerations: &[Toleration],
    effects: &[&str],
) -> Option<&'a Taint> {
    taints.iter().find(|taint| {
        effects.contains(&taint.effect.as_str()) && !tolerations.iter().any(|t| tolerates(t, taint))
    })
}

fn requirement_matches(req: &NodeSelectorRequirement, value: Option<&str>) -> bool {
    let values = req.values.as_deref().unwrap_or_default();
    match req.operator.as_str() {
        "In" => value.is_some_and(|v| values.iter().any(|x| x == v)),
        "NotIn" => value.is_none_or(|v| !values.iter().any(|x| x == v)),
        "Exists" => value.is_some(),
        "DoesNotExist" => value.is_none(),
        "Gt" | "Lt" => {
            let (Some(v), [bound]) = (value, values) else {
                return false;
            };
            match (v.parse::<i64>(), bound.parse::<i64>()) {
                (Ok(v), Ok(bound)) if req.operator == "Gt" => v > bound,
                (Ok(v), Ok(bound)) => v < bound,
                _ => false,
            }
        }
        _ => false,
    }
}

fn term_matches(term: &NodeSelectorTerm, node: &Node) -> bool {
    let expressions = term.match_expressions.as_deref().unwrap_or_default();
    let fields = term.match_fields.as_deref().unwrap_or_default();
    if expressions.is_empty() && fields.is_empty() {
        // An empty term selects nothing.
        return false;
    }
    let empty = BTreeMap::new();
    let labels = node.metadata.labels.as_ref().unwrap_or(&empty);
    let name = node.metadata.name.as_deref();
    expressions
        .iter()
        .all(|r| requirement_matches(r, labels.get(&r.key).map(String::as_str)))
        && fields.iter().all(|r| {
            r.key == NODE_NAME_FIELD
                && matches!(r.operator.as_str(), "In" | "NotIn")
                && requirement_matches(r, name)
        })
}

/// A `NodeSelector` (terms ORed, requirements ANDed) against a node.
pub(crate) fn node_selector_matches(selector: &NodeSelector, node: &Node) -> bool {
    selector
        .node_selector_terms
        .iter()
        .any(|t| term_matches(t, node))
}

/// `spec.nodeSelector` and required node affinity of a pod spec against a node.
pub(crate) fn required_affinity_matches(spec: &PodSpec, node: &Node) -> bool {
    let empty = BTreeMap::new();
    let labels = node.metadata.labels.as_ref().unwrap_or(&empty);
    let selector_ok = spec
        .node_selector
        .iter()
        .flatten()
        .all(|(k, v)| labels.get(k) == Some(v));
    let affinity_ok = spec
        .affinity
        .as_ref()
        .and_then(|a| a.node_affinity.as_ref())
        .and_then(|a| {
            a.required_during_scheduling_ignored_during_execution
                .as_ref()
        })
        .is_none_or(|required| node_selector_matches(required, node));
    selector_ok && affinity_ok
}

/// Upstream's `NodeShouldRunDaemonPod`: (should run a pod here, may keep running one here).
/// An untolerated NoSchedule taint stops new pods but keeps existing ones; NoExecute stops both.
pub(crate) fn should_run(ds: &DaemonSet, node: &Node) -> (bool, bool) {
    let Some(mut spec) = ds.spec.as_ref().and_then(|s| s.template.spec.clone()) else {
        return (false, false);
    };
    let node_name = node.metadata.name.as_deref().unwrap_or_default();
    if spec
        .node_name
        .as_deref()
        .is_some_and(|n| !n.is_empty() && n != node_name)
    {
        return (false, false);
    }
    if !required_affinity_matches(&spec, node) {
        return (false, false);
    }
    add_daemon_tolerations(&mut spec);
    let tolerations = spec.tolerations.as_deref().unwrap_or_default();
    let taints = node
        .spec
        .as_ref()
        .and_then(|s| s.taints.as_deref())
        .unwrap_or_default();
    if untolerated_taint(taints, tolerations, &["NoSchedule", "NoExecute"]).is_none() {
        return (true, true);
    }
    let evicting = untolerated_taint(taints, tolerations, &["NoExecute"]).is_some();
    (false, !evicting)
}

/// The node a daemon pod is for: its `spec.nodeName` once bound, else the node its required
/// affinity pins it to (upstream's `GetTargetNodeName`).
pub(crate) fn target_node(pod: &Pod) -> Option<String> {
    let spec = pod.spec.as_ref()?;
    if let Some(name) = spec.node_name.as_deref().filter(|n| !n.is_empty()) {
        return Some(name.to_owned());
    }
    let terms = &spec
        .affinity
        .as_ref()?
        .node_affinity
        .as_ref()?
        .required_during_scheduling_ignored_during_execution
        .as_ref()?
        .node_selector_terms;
    terms.iter().find_map(|term| {
        term.match_fields.iter().flatten().find_map(|r| {
            match (r.key.as_str(), r.operator.as_str(), r.values.as_deref()) {
                (NODE_NAME_FIELD, "In", Some([one])) => Some(one.clone()),
                _ => None,
            }
        })
    })
}

/// Pins a daemon pod to `node` by replacing its required node affinity terms with
/// `matchFields metadata.name In [node]` (upstream's `ReplaceDaemonSetPodNodeNameNodeAffinity`).
/// The controller already checked the node satisfies the original affinity.
pub(crate) fn pin_to_node(affinity: Option<Affinity>, node: &str) -> Affinity {
    let term = NodeSelectorTerm {
        match_fields: Some(vec![NodeSelectorRequirement {
            key: NODE_NAME_FIELD.into(),
            operator: "In".into(),
            values: Some(vec![node.to_owned()]),
        }]),
        match_expressions: None,
    };
    let mut affinity = affinity.unwrap_or_default();
    let node_affinity = affinity
        .node_affinity
        .get_or_insert_with(NodeAffinity::default);
    node_affinity.required_during_scheduling_ignored_during_execution = Some(NodeSelector {
        node_selector_terms: vec![term],
    });
    affinity
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn node(name: &str, labels: serde_json::Value, taints: serde_json::Value) -> Node {
        serde_json::from_value(json!({
            "metadata": {"name": name, "labels": labels},
            "spec": {"taints": taints}
        }))
        .unwrap()
    }

    fn ds(spec: serde_json::Value) -> DaemonSet {
        serde_json::from_value(json!({
            "metadata": {"name": "d"},
            "spec": {
                "selector": {"matchLabels": {"a": "b"}},
                "template": {"metadata": {"labels": {"a": "b"}}, "spec": spec}
            }
        }))
        .unwrap()
    }

    const CONTAINERS: &str = r#"[{"name":"c","image":"i"}]"#;

    fn containers() -> serde_json::Value {
        serde_json::from_str(CONTAINERS).unwrap()
    }

    #[test]
    fn no_schedule_taint_skips_unless_tolerated() {
        let tainted = node(
            "n",
            json!({}),
            json!([{"key": "k", "value": "v", "effect": "NoSchedule"}]),
        );
        let plain = ds(json!({"containers": containers()}));
        assert_eq!(should_run(&plain, &tainted), (false, true));
        let tolerant = ds(json!({
            "containers": containers(),
            "tolerations": [{"key": "k", "operator": "Equal", "value": "v", "effect": "NoSchedule"}]
        }));
        assert_eq!(should_run(&tolerant, &tainted), (true, true));
        let everything =
            ds(json!({"containers": containers(), "tolerations": [{"operator": "Exists"}]}));
        assert_eq!(should_run(&everything, &tainted), (true, true));
    }

    #[test]
    fn no_execute_taint_evicts_but_default_tolerations_cover_node_conditions() {
        let plain = ds(json!({"containers": containers()}));
        let evicting = node("n", json!({}), json!([{"key": "k", "effect": "NoExecute"}]));
        assert_eq!(should_run(&plain, &evicting), (false, false));
        let cordoned = node(
            "n",
            json!({}),
            json!([
                {"key": "node.kubernetes.io/unschedulable", "effect": "NoSchedule"},
                {"key": "node.kubernetes.io/not-ready", "effect": "NoExecute"}
            ]),
        );
        assert_eq!(should_run(&plain, &cordoned), (true, true));
    }

    #[test]
    fn node_selector_and_affinity() {
        let n = node("n1", json!({"disk": "ssd", "cores": "8"}), json!([]));
        let by_selector = ds(json!({"containers": containers(), "nodeSelector": {"disk": "ssd"}}));
        assert_eq!(should_run(&by_selector, &n), (true, true));
        let wrong = ds(json!({"containers": containers(), "nodeSelector": {"disk": "hdd"}}));
        assert_eq!(should_run(&wrong, &n), (false, false));
        let affinity = |expr: serde_json::Value| {
            ds(
                json!({"containers": containers(), "affinity": {"nodeAffinity": {
                    "requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [expr]}
                }}}),
            )
        };
        let gt = affinity(
            json!({"matchExpressions": [{"key": "cores", "operator": "Gt", "values": ["4"]}]}),
        );
        assert!(should_run(&gt, &n).0);
        let lt = affinity(
            json!({"matchExpressions": [{"key": "cores", "operator": "Lt", "values": ["4"]}]}),
        );
        assert!(!should_run(&lt, &n).0);
        let field = affinity(
            json!({"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["n1"]}]}),
        );
        assert!(should_run(&field, &n).0);
        let other = affinity(
            json!({"matchFields": [{"key": "metadata.name", "operator": "NotIn", "values": ["n1"]}]}),
        );
        assert!(!should_run(&other, &n).0);
        assert!(
            !should_run(&affinity(json!({})), &n).0,
            "an empty term selects nothing"
        );
    }

    #[test]
    fn pinned_pods_target_their_node() {
        let affinity = pin_to_node(None, "n7");
        let pod = Pod {
            spec: Some(PodSpec {
                affinity: Some(affinity),
                ..PodSpec::default()
            }),
            ..Pod::default()
        };
        assert_eq!(target_node(&pod).as_deref(), Some("n7"));
        let n7 = node("n7", json!({}), json!([]));
        let n8 = node("n8", json!({}), json!([]));
        let spec = pod.spec.as_ref().unwrap();
        assert!(required_affinity_matches(spec, &n7));
        assert!(!required_affinity_matches(spec, &n8));
    }

    #[test]
    fn daemon_tolerations_are_added_once() {
        let mut spec = PodSpec::default();
        add_daemon_tolerations(&mut spec);
        add_daemon_tolerations(&mut spec);
        assert_eq!(spec.tolerations.as_ref().map(Vec::len), Some(6));
        spec.host_network = Some(true);
        add_daemon_tolerations(&mut spec);
        assert_eq!(spec.tolerations.as_ref().map(Vec::len), Some(7));
    }
}
