//! Pod status predicates and ownership helpers shared by the workload controllers (upstream's
//! `podutil.IsPodReady` / `IsPodAvailable`).

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::api::{Api, Patch, PatchParams};
use kube::core::{Selector, SelectorExt};
use serde_json::json;

use crate::Error;

/// A request's result with NotFound turned into `None`.
pub(crate) fn not_found_ok<T>(result: Result<T, kube::Error>) -> Result<Option<T>, kube::Error> {
    match result {
        Ok(v) => Ok(Some(v)),
        Err(kube::Error::Api(e)) if e.code == 404 => Ok(None),
        Err(e) => Err(e),
    }
}

pub(crate) fn phase(pod: &Pod) -> &str {
    pod.status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or_default()
}

pub(crate) fn is_terminating(pod: &Pod) -> bool {
    pod.metadata.deletion_timestamp.is_some()
}

/// When the pod's Ready condition last turned True, if it is True now.
fn ready_since(pod: &Pod) -> Option<Option<Timestamp>> {
    pod.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == "Ready" && c.status == "True")
        .map(|c| c.last_transition_time.as_ref().map(|t| t.0))
}

pub(crate) fn is_ready(pod: &Pod) -> bool {
    ready_since(pod).is_some()
}

/// Ready for at least `min_ready_seconds`.
pub(crate) fn is_available(pod: &Pod, min_ready_seconds: i32, now: Timestamp) -> bool {
    match ready_since(pod) {
        None => false,
        Some(_) if min_ready_seconds <= 0 => true,
        Some(None) => false,
        Some(Some(since)) => since + SignedDuration::from_secs(i64::from(min_ready_seconds)) <= now,
    }
}

pub(crate) fn controller_uid(meta: &ObjectMeta) -> Option<&str> {
    meta.owner_references
        .iter()
        .flatten()
        .find(|r| r.controller == Some(true))
        .map(|r| r.uid.as_str())
}

/// A workload's `spec.selector` as a kube selector; `None` for the select-everything selector,
/// which upstream controllers refuse to act on.
pub(crate) fn selector(selector: &LabelSelector) -> Result<Option<Selector>, Error> {
    let parsed = Selector::try_from(selector.clone())
        .map_err(|e| Error::Invalid(format!("invalid selector: {e}")))?;
    Ok((!parsed.selects_all()).then_some(parsed))
}

/// The pods a controller owns: those whose controller reference is `owner_uid`, plus orphans
/// matching its selector that `adoptable` accepts, which are adopted (ownerReference added) as
/// upstream's `ClaimPods` does. Pods controlled by someone else are left alone.
pub(crate) async fn claim(
    api: &Api<Pod>,
    pods: Vec<Pod>,
    selector: &Selector,
    owner_ref: &k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference,
    adoptable: impl Fn(&Pod) -> bool,
) -> Result<Vec<Pod>, Error> {
    let mut owned = Vec::with_capacity(pods.len());
    for pod in pods {
        match controller_uid(&pod.metadata) {
            Some(uid) if uid == owner_ref.uid => owned.push(pod),
            Some(_) => {}
            None => {
                let labels = pod.metadata.labels.clone().unwrap_or_default();
                if is_terminating(&pod) || !selector.matches(&labels) || !adoptable(&pod) {
                    continue;
                }
                let mut refs = pod.metadata.owner_references.clone().unwrap_or_default();
                refs.push(owner_ref.clone());
                let name = pod.metadata.name.clone().unwrap_or_default();
                let patch = json!({"metadata": {
                    "ownerReferences": refs,
                    "resourceVersion": pod.metadata.resource_version,
                }});
                match api
                    .patch(&name, &PatchParams::default(), &Patch::Merge(patch))
                    .await
                {
                    Ok(adopted) => {
                        tracing::info!(pod = %name, owner = %owner_ref.name, "adopted orphan pod");
                        owned.push(adopted);
                    }
                    Err(kube::Error::Api(e)) if e.code == 404 || e.code == 409 => {}
                    Err(e) => return Err(e.into()),
                }
            }
        }
    }
    Ok(owned)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(ready: Option<&str>) -> Pod {
        let conditions = match ready {
            Some(t) => json!([{"type": "Ready", "status": "True", "lastTransitionTime": t}]),
            None => json!([{"type": "Ready", "status": "False"}]),
        };
        serde_json::from_value(json!({
            "metadata": {"name": "p"},
            "status": {"phase": "Running", "conditions": conditions}
        }))
        .unwrap()
    }

    #[test]
    fn availability_honours_min_ready_seconds() {
        let now: Timestamp = "2025-01-01T00:00:10Z".parse().unwrap();
        let p = pod(Some("2025-01-01T00:00:05Z"));
        assert!(is_ready(&p));
        assert!(is_available(&p, 0, now));
        assert!(is_available(&p, 5, now));
        assert!(!is_available(&p, 6, now));
        let not_ready = pod(None);
        assert!(!is_ready(&not_ready));
        assert!(!is_available(&not_ready, 0, now));
    }
}
