//! Small helpers the batch controllers (job, cronjob, disruption) share: event publishing,
//! label selectors as query strings, pod and condition predicates, time conversions.

use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, Time};

/// Events go out as core/v1 Events (what `kubectl describe` reads), through the workload
/// controllers' publisher.
pub(crate) use crate::statefulset::events::Events;

/// A label selector as a `labelSelector` query value; None when it selects nothing (a nil
/// selector, or an operator the API does not define).
pub(crate) fn selector_query(selector: &LabelSelector) -> Option<String> {
    let mut parts = Vec::new();
    for (k, v) in selector.match_labels.iter().flatten() {
        parts.push(format!("{k}={v}"));
    }
    for expr in selector.match_expressions.iter().flatten() {
        let values = expr.values.clone().unwrap_or_default().join(",");
        parts.push(match expr.operator.as_str() {
            "In" => format!("{} in ({values})", expr.key),
            "NotIn" => format!("{} notin ({values})", expr.key),
            "Exists" => expr.key.clone(),
            "DoesNotExist" => format!("!{}", expr.key),
            _ => return None,
        });
    }
    Some(parts.join(","))
}

pub(crate) fn phase(pod: &Pod) -> &str {
    pod.status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or("")
}

/// The pod's Ready condition is True.
pub(crate) fn is_ready(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// Not terminal and not being deleted (upstream `FilterActivePods`).
pub(crate) fn is_active(pod: &Pod) -> bool {
    !matches!(phase(pod), "Succeeded" | "Failed") && pod.metadata.deletion_timestamp.is_none()
}

/// Being deleted but not terminal yet (upstream `CountTerminatingPods`).
pub(crate) fn is_terminating(pod: &Pod) -> bool {
    !matches!(phase(pod), "Succeeded" | "Failed") && pod.metadata.deletion_timestamp.is_some()
}

pub(crate) fn is_conflict(err: &kube::Error) -> bool {
    matches!(err, kube::Error::Api(e) if e.code == 409)
}

pub(crate) fn is_not_found(err: &kube::Error) -> bool {
    matches!(err, kube::Error::Api(e) if e.code == 404)
}

pub(crate) fn is_already_exists(err: &kube::Error) -> bool {
    matches!(err, kube::Error::Api(e) if e.code == 409 && e.reason == "AlreadyExists")
}

/// Now, at whole-second precision (what the API stores).
pub(crate) fn now() -> Timestamp {
    Timestamp::from_second(Timestamp::now().as_second()).unwrap_or(Timestamp::UNIX_EPOCH)
}

pub(crate) fn time(ts: Timestamp) -> Time {
    Time(ts)
}

/// `later - earlier` as a std Duration, zero when negative.
pub(crate) fn until(earlier: Timestamp, later: Timestamp) -> Duration {
    let d = later.duration_since(earlier);
    Duration::try_from(d).unwrap_or(Duration::ZERO)
}

/// Whether `selector` selects an object with `labels` (an empty selector selects everything).
pub(crate) fn selector_matches(
    selector: &LabelSelector,
    labels: Option<&std::collections::BTreeMap<String, String>>,
) -> bool {
    let get = |k: &str| labels.and_then(|l| l.get(k));
    let labels_match = selector
        .match_labels
        .iter()
        .flatten()
        .all(|(k, v)| get(k) == Some(v));
    labels_match
        && selector.match_expressions.iter().flatten().all(|e| {
            let values = e.values.as_deref().unwrap_or(&[]);
            match e.operator.as_str() {
                "In" => get(&e.key).is_some_and(|v| values.contains(v)),
                "NotIn" => get(&e.key).is_none_or(|v| !values.contains(v)),
                "Exists" => get(&e.key).is_some(),
                "DoesNotExist" => get(&e.key).is_none(),
                _ => false,
            }
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelectorRequirement;

    fn selector() -> LabelSelector {
        LabelSelector {
            match_labels: Some([("app".to_string(), "web".to_string())].into()),
            match_expressions: Some(vec![
                LabelSelectorRequirement {
                    key: "tier".into(),
                    operator: "In".into(),
                    values: Some(vec!["a".into(), "b".into()]),
                },
                LabelSelectorRequirement {
                    key: "canary".into(),
                    operator: "DoesNotExist".into(),
                    values: None,
                },
            ]),
        }
    }

    #[test]
    fn selector_as_query_and_matcher() {
        assert_eq!(
            selector_query(&selector()).unwrap(),
            "app=web,tier in (a,b),!canary"
        );
        assert_eq!(selector_query(&LabelSelector::default()).unwrap(), "");
        let labels = |pairs: &[(&str, &str)]| {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect::<std::collections::BTreeMap<_, _>>()
        };
        assert!(selector_matches(
            &selector(),
            Some(&labels(&[("app", "web"), ("tier", "a")]))
        ));
        assert!(!selector_matches(
            &selector(),
            Some(&labels(&[("app", "web"), ("tier", "c")]))
        ));
        assert!(!selector_matches(
            &selector(),
            Some(&labels(&[("app", "web"), ("tier", "a"), ("canary", "1")]))
        ));
        assert!(selector_matches(&LabelSelector::default(), None));
    }
}
