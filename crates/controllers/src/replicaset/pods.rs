//! Pod predicates shared by the workload controllers (upstream `pkg/api/v1/pod` and
//! `pkg/controller` helpers): active, ready, available.

use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::jiff::Timestamp;

/// Now, truncated to whole seconds: what a `metav1.Time` keeps once stored, so a timestamp
/// written and read back compares equal to the one computed.
pub(crate) fn now() -> Timestamp {
    Timestamp::from_second(Timestamp::now().as_second()).unwrap_or_else(|_| Timestamp::now())
}

pub(crate) fn phase(pod: &Pod) -> &str {
    pod.status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or("")
}

/// Neither terminal (Succeeded/Failed) nor being deleted (upstream `IsPodActive`).
pub(crate) fn is_active(pod: &Pod) -> bool {
    !matches!(phase(pod), "Succeeded" | "Failed") && pod.metadata.deletion_timestamp.is_none()
}

/// The Ready condition's transition time if the pod is Ready.
pub(crate) fn ready_since(pod: &Pod) -> Option<Option<Timestamp>> {
    let cond = pod
        .status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == "Ready")?;
    (cond.status == "True").then(|| cond.last_transition_time.as_ref().map(|t| t.0))
}

pub(crate) fn is_ready(pod: &Pod) -> bool {
    ready_since(pod).is_some()
}

/// Ready for at least `min_ready_seconds` (upstream `IsPodAvailable`).
pub(crate) fn is_available(pod: &Pod, min_ready_seconds: i32, now: Timestamp) -> bool {
    match ready_since(pod) {
        None => false,
        Some(_) if min_ready_seconds <= 0 => true,
        Some(None) => false,
        Some(Some(since)) => since + Duration::from_secs(min_ready_seconds as u64) < now,
    }
}

/// For a Ready pod not yet available because of `min_ready_seconds`: how long until it is.
pub(crate) fn until_available(
    pod: &Pod,
    min_ready_seconds: i32,
    now: Timestamp,
) -> Option<Duration> {
    if min_ready_seconds <= 0 {
        return None;
    }
    let since = ready_since(pod)??;
    let at = since + Duration::from_secs(min_ready_seconds as u64);
    let left = now.duration_until(at);
    (!left.is_negative()).then(|| left.unsigned_abs() + Duration::from_millis(100))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(phase: &str, ready_at: Option<&str>) -> Pod {
        let mut conditions = vec![];
        if let Some(at) = ready_at {
            conditions.push(serde_json::json!({
                "type": "Ready", "status": "True", "lastTransitionTime": at
            }));
        }
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": "p"},
            "status": {"phase": phase, "conditions": conditions}
        }))
        .unwrap()
    }

    #[test]
    fn availability_waits_for_min_ready_seconds() {
        let now: Timestamp = "2024-01-01T00:00:10Z".parse().unwrap();
        let p = pod("Running", Some("2024-01-01T00:00:05Z"));
        assert!(is_available(&p, 0, now));
        assert!(is_available(&p, 4, now));
        assert!(
            !is_available(&p, 5, now),
            "exactly minReadySeconds is not yet"
        );
        assert!(!is_available(&p, 10, now));
        let left = until_available(&p, 10, now).unwrap();
        assert!(left > Duration::from_secs(5) && left < Duration::from_secs(6));
        assert!(!is_available(&pod("Running", None), 0, now));
    }

    #[test]
    fn terminal_and_deleting_pods_are_inactive() {
        assert!(is_active(&pod("Running", None)));
        assert!(is_active(&pod("Pending", None)));
        assert!(!is_active(&pod("Succeeded", None)));
        assert!(!is_active(&pod("Failed", None)));
        let mut p = pod("Running", None);
        p.metadata.deletion_timestamp = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
            Timestamp::now(),
        ));
        assert!(!is_active(&p));
    }
}
