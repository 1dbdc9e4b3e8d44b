//! Matching helpers: node selector terms, label selectors, tolerations.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    Node, NodeSelectorRequirement, NodeSelectorTerm, Pod, Taint, Toleration,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

pub type Labels = BTreeMap<String, String>;

static NO_LABELS: Labels = BTreeMap::new();

pub fn node_labels(node: &Node) -> &Labels {
    node.metadata.labels.as_ref().unwrap_or(&NO_LABELS)
}

pub fn pod_labels(pod: &Pod) -> &Labels {
    pod.metadata.labels.as_ref().unwrap_or(&NO_LABELS)
}

/// One `matchExpressions` entry of a node selector term against node labels. Invalid
/// requirements (unknown operator, unparsable Gt/Lt) match nothing.
pub fn node_requirement_matches(req: &NodeSelectorRequirement, labels: &Labels) -> bool {
    let values = req.values.as_deref().unwrap_or_default();
    let value = labels.get(&req.key);
    match req.operator.as_str() {
        "In" => value.is_some_and(|v| values.contains(v)),
        "NotIn" => value.is_none_or(|v| !values.contains(v)),
        "Exists" => value.is_some(),
        "DoesNotExist" => value.is_none(),
        op @ ("Gt" | "Lt") => {
            let [bound] = values else { return false };
            let (Ok(bound), Some(Ok(actual))) =
                (bound.parse::<i64>(), value.map(|v| v.parse::<i64>()))
            else {
                return false;
            };
            if op == "Gt" {
                actual > bound
            } else {
                actual < bound
            }
        }
        _ => false,
    }
}

/// One `matchFields` entry: only `metadata.name` with In/NotIn and exactly one value.
fn node_field_matches(req: &NodeSelectorRequirement, node: &Node) -> bool {
    if req.key != "metadata.name" {
        return false;
    }
    let name = node.metadata.name.as_deref().unwrap_or_default();
    match (
        req.operator.as_str(),
        req.values.as_deref().unwrap_or_default(),
    ) {
        ("In", [v]) => v == name,
        ("NotIn", [v]) => v != name,
        _ => false,
    }
}

/// A node selector term: all its expressions and fields hold. A term without any matches nothing.
pub fn node_selector_term_matches(term: &NodeSelectorTerm, node: &Node) -> bool {
    let expressions = term.match_expressions.as_deref().unwrap_or_default();
    let fields = term.match_fields.as_deref().unwrap_or_default();
    if expressions.is_empty() && fields.is_empty() {
        return false;
    }
    let labels = node_labels(node);
    expressions
        .iter()
        .all(|r| node_requirement_matches(r, labels))
        && fields.iter().all(|r| node_field_matches(r, node))
}

/// `spec.nodeSelector` and the required node affinity of a pod against a node
/// (upstream `nodeaffinity.GetRequiredNodeAffinity(pod).Match(node)`).
pub fn required_node_affinity_matches(pod: &Pod, node: &Node) -> bool {
    let Some(spec) = &pod.spec else { return true };
    if let Some(selector) = &spec.node_selector {
        let labels = node_labels(node);
        if !selector.iter().all(|(k, v)| labels.get(k) == Some(v)) {
            return false;
        }
    }
    let required = spec
        .affinity
        .as_ref()
        .and_then(|a| a.node_affinity.as_ref())
        .and_then(|na| {
            na.required_during_scheduling_ignored_during_execution
                .as_ref()
        });
    match required {
        Some(selector) => selector
            .node_selector_terms
            .iter()
            .any(|t| node_selector_term_matches(t, node)),
        None => true,
    }
}

/// A `metav1.LabelSelector` against labels. None (a nil selector) matches nothing; an empty
/// selector matches everything; invalid expressions match nothing.
pub fn label_selector_matches(selector: Option<&LabelSelector>, labels: &Labels) -> bool {
    let Some(selector) = selector else {
        return false;
    };
    if let Some(match_labels) = &selector.match_labels {
        if !match_labels.iter().all(|(k, v)| labels.get(k) == Some(v)) {
            return false;
        }
    }
    selector.match_expressions.iter().flatten().all(|e| {
        let values = e.values.as_deref().unwrap_or_default();
        let value = labels.get(&e.key);
        match e.operator.as_str() {
            "In" => value.is_some_and(|v| values.contains(v)),
            "NotIn" => value.is_none_or(|v| !values.contains(v)),
            "Exists" => value.is_some(),
            "DoesNotExist" => value.is_none(),
            _ => false,
        }
    })
}

/// Upstream `Toleration.ToleratesTaint`.
pub fn tolerates(toleration: &Toleration, taint: &Taint) -> bool {
    if let Some(effect) = toleration.effect.as_deref().filter(|e| !e.is_empty()) {
        if effect != taint.effect {
            return false;
        }
    }
    if let Some(key) = toleration.key.as_deref().filter(|k| !k.is_empty()) {
        if key != taint.key {
            return false;
        }
    }
    match toleration.operator.as_deref().unwrap_or("") {
        "" | "Equal" => {
            toleration.value.as_deref().unwrap_or("") == taint.value.as_deref().unwrap_or("")
        }
        "Exists" => true,
        _ => false,
    }
}

/// Whether any of `tolerations` tolerates `taint`.
pub fn tolerated(tolerations: &[Toleration], taint: &Taint) -> bool {
    tolerations.iter().any(|t| tolerates(t, taint))
}

pub fn pod_tolerations(pod: &Pod) -> &[Toleration] {
    pod.spec
        .as_ref()
        .and_then(|s| s.tolerations.as_deref())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn node(labels: serde_json::Value) -> Node {
        serde_json::from_value(json!({"metadata": {"name": "node-a", "labels": labels}})).unwrap()
    }

    fn req(key: &str, op: &str, values: &[&str]) -> NodeSelectorRequirement {
        NodeSelectorRequirement {
            key: key.into(),
            operator: op.into(),
            values: Some(values.iter().map(|s| s.to_string()).collect()),
        }
    }

    #[test]
    fn node_selector_operators() {
        let n = node(json!({"disk": "ssd", "cores": "8"}));
        let l = node_labels(&n);
        assert!(node_requirement_matches(
            &req("disk", "In", &["ssd", "nvme"]),
            l
        ));
        assert!(!node_requirement_matches(&req("disk", "In", &["hdd"]), l));
        assert!(node_requirement_matches(&req("disk", "NotIn", &["hdd"]), l));
        assert!(node_requirement_matches(&req("zone", "NotIn", &["a"]), l));
        assert!(node_requirement_matches(&req("disk", "Exists", &[]), l));
        assert!(node_requirement_matches(
            &req("zone", "DoesNotExist", &[]),
            l
        ));
        assert!(node_requirement_matches(&req("cores", "Gt", &["4"]), l));
        assert!(!node_requirement_matches(&req("cores", "Lt", &["4"]), l));
        assert!(!node_requirement_matches(&req("disk", "Gt", &["4"]), l));
        assert!(!node_requirement_matches(
            &req("cores", "Gt", &["4", "5"]),
            l
        ));
        assert!(!node_requirement_matches(
            &req("disk", "Matches", &["ssd"]),
            l
        ));
    }

    #[test]
    fn terms_are_ored_and_requirements_anded() {
        let n = node(json!({"disk": "ssd"}));
        let term = |exprs: Vec<NodeSelectorRequirement>, fields: Vec<NodeSelectorRequirement>| {
            NodeSelectorTerm {
                match_expressions: Some(exprs),
                match_fields: Some(fields),
            }
        };
        assert!(!node_selector_term_matches(&term(vec![], vec![]), &n));
        assert!(node_selector_term_matches(
            &term(vec![], vec![req("metadata.name", "In", &["node-a"])]),
            &n
        ));
        assert!(!node_selector_term_matches(
            &term(
                vec![req("disk", "In", &["ssd"])],
                vec![req("metadata.name", "In", &["node-b"])]
            ),
            &n
        ));
        let pod: Pod = serde_json::from_value(json!({"metadata": {"name": "p"}, "spec": {
            "containers": [],
            "nodeSelector": {"disk": "ssd"},
            "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
                "nodeSelectorTerms": [
                    {"matchExpressions": [{"key": "disk", "operator": "In", "values": ["hdd"]}]},
                    {"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["node-a"]}]}
                ]}}}
        }}))
        .unwrap();
        assert!(required_node_affinity_matches(&pod, &n));
        assert!(!required_node_affinity_matches(
            &pod,
            &node(json!({"disk": "hdd"}))
        ));
    }

    #[test]
    fn label_selectors() {
        let labels: Labels = [("app".to_string(), "web".to_string())].into();
        assert!(!label_selector_matches(None, &labels));
        assert!(label_selector_matches(
            Some(&LabelSelector::default()),
            &labels
        ));
        let sel: LabelSelector = serde_json::from_value(json!({
            "matchLabels": {"app": "web"},
            "matchExpressions": [{"key": "tier", "operator": "DoesNotExist"}]
        }))
        .unwrap();
        assert!(label_selector_matches(Some(&sel), &labels));
        let sel: LabelSelector = serde_json::from_value(
            json!({"matchExpressions": [{"key": "app", "operator": "NotIn", "values": ["web"]}]}),
        )
        .unwrap();
        assert!(!label_selector_matches(Some(&sel), &labels));
    }

    #[test]
    fn toleration_semantics() {
        let taint = |key: &str, value: Option<&str>, effect: &str| Taint {
            key: key.into(),
            value: value.map(Into::into),
            effect: effect.into(),
            time_added: None,
        };
        let tol =
            |key: Option<&str>, op: Option<&str>, value: Option<&str>, effect: Option<&str>| {
                Toleration {
                    key: key.map(Into::into),
                    operator: op.map(Into::into),
                    value: value.map(Into::into),
                    effect: effect.map(Into::into),
                    toleration_seconds: None,
                }
            };
        let t = taint("dedicated", Some("gpu"), "NoSchedule");
        assert!(tolerates(
            &tol(
                Some("dedicated"),
                Some("Equal"),
                Some("gpu"),
                Some("NoSchedule")
            ),
            &t
        ));
        assert!(tolerates(
            &tol(Some("dedicated"), None, Some("gpu"), None),
            &t
        ));
        assert!(!tolerates(
            &tol(Some("dedicated"), Some("Equal"), Some("cpu"), None),
            &t
        ));
        assert!(tolerates(
            &tol(Some("dedicated"), Some("Exists"), None, None),
            &t
        ));
        assert!(!tolerates(
            &tol(Some("dedicated"), Some("Exists"), None, Some("NoExecute")),
            &t
        ));
        assert!(tolerates(&tol(None, Some("Exists"), None, None), &t));
        assert!(!tolerates(
            &tol(Some("other"), Some("Exists"), None, None),
            &t
        ));
    }
}
