//! `pods/eviction`: a pod deletion a PodDisruptionBudget may refuse.
//!
//! As upstream, an eviction that a budget allows takes one disruption from it *before* the pod
//! is deleted: `status.disruptionsAllowed` is decremented and the pod recorded in
//! `status.disruptedPods`, in one conditional write of the budget's status. Concurrent evictions
//! (kubectl drain evicts every pod of a node at once) therefore cannot together exceed the
//! budget; the disruption controller recomputes the budget once the pods are gone.

use http::StatusCode;
use kubelab_resources::catalog::ResourceType;
use kubelab_resources::labels;
use serde_json::{json, Value};

use crate::error::{ApiError, ApiResult};
use crate::object;
use crate::registry::{DeleteOptions, ListOptions, Registry};

/// How many evictions a budget may hold unconfirmed by the disruption controller.
const MAX_DISRUPTED_PODS: usize = 2000;
/// The message of every refusal by a budget.
const REFUSED: &str = "Cannot evict pod as it would violate the pod's disruption budget.";

fn phase(pod: &Value) -> Option<&str> {
    pod.pointer("/status/phase").and_then(Value::as_str)
}

fn is_ready(pod: &Value) -> bool {
    pod.pointer("/status/conditions")
        .and_then(Value::as_array)
        .is_some_and(|cs| {
            cs.iter().any(|c| {
                c.get("type").and_then(Value::as_str) == Some("Ready")
                    && c.get("status").and_then(Value::as_str) == Some("True")
            })
        })
}

fn status_i64(pdb: &Value, field: &str) -> i64 {
    pdb.pointer(&format!("/status/{field}"))
        .and_then(Value::as_i64)
        .unwrap_or(0)
}

fn too_many_requests(retry_after_seconds: u32, cause: String) -> ApiError {
    ApiError::TooManyRequests {
        message: REFUSED.into(),
        retry_after_seconds,
        causes: vec![("DisruptionBudget".into(), cause)],
    }
}

fn forbidden(pdb: &str, why: &str) -> ApiError {
    ApiError::Forbidden {
        message: format!("poddisruptionbudgets.policy \"{pdb}\" is forbidden: {why}"),
        details: Some(crate::error::Details {
            group: "policy".into(),
            kind: "poddisruptionbudgets".into(),
            name: pdb.into(),
        }),
    }
}

/// The budget with one disruption taken for `pod`, or why the budget refuses it.
fn take_disruption(pdb: &Value, pod: &str, now: &str) -> ApiResult<Value> {
    let name = object::name(pdb);
    let generation = pdb
        .pointer("/metadata/generation")
        .and_then(Value::as_i64)
        .unwrap_or(0);
    if status_i64(pdb, "observedGeneration") < generation {
        return Err(too_many_requests(
            10,
            format!("The disruption budget {name} is still being processed by the server."),
        ));
    }
    let allowed = status_i64(pdb, "disruptionsAllowed");
    if allowed < 0 {
        return Err(forbidden(name, "pdb disruptions allowed is negative"));
    }
    let disrupted = pdb
        .pointer("/status/disruptedPods")
        .and_then(Value::as_object)
        .map_or(0, |m| m.len());
    if disrupted > MAX_DISRUPTED_PODS {
        return Err(forbidden(
            name,
            "DisruptedPods map too big - too many evictions not confirmed by PDB controller",
        ));
    }
    if allowed == 0 {
        return Err(too_many_requests(
            0,
            format!(
                "The disruption budget {name} needs {} healthy pods and has {} currently",
                status_i64(pdb, "desiredHealthy"),
                status_i64(pdb, "currentHealthy"),
            ),
        ));
    }
    let mut next = pdb.clone();
    if let Some(m) = object::metadata_mut(&mut next) {
        m.remove("resourceVersion");
    }
    let status = &mut next["status"];
    status["disruptionsAllowed"] = json!(allowed - 1);
    if !status["disruptedPods"].is_object() {
        status["disruptedPods"] = json!({});
    }
    status["disruptedPods"][pod] = json!(now);
    if allowed == 1 {
        let mut conditions: Vec<Value> =
            status["conditions"].as_array().cloned().unwrap_or_default();
        let changed = !conditions
            .iter()
            .any(|c| c["type"] == "DisruptionAllowed" && c["status"] == "False");
        if changed {
            conditions.retain(|c| c["type"] != "DisruptionAllowed");
            conditions.push(json!({
                "type": "DisruptionAllowed",
                "status": "False",
                "reason": "InsufficientPods",
                "message": "",
                "observedGeneration": status_i64(pdb, "observedGeneration"),
                "lastTransitionTime": now,
            }));
            status["conditions"] = json!(conditions);
        }
    }
    Ok(next)
}

/// The eviction's `deleteOptions`.
fn delete_options(eviction: &Value) -> DeleteOptions {
    let mut opts = DeleteOptions::default();
    if let Some(d) = eviction.get("deleteOptions") {
        opts.grace_period_seconds = d.get("gracePeriodSeconds").and_then(Value::as_i64);
        opts.precondition_uid = d
            .pointer("/preconditions/uid")
            .and_then(Value::as_str)
            .map(String::from);
        opts.precondition_resource_version = d
            .pointer("/preconditions/resourceVersion")
            .and_then(Value::as_str)
            .map(String::from);
        opts.dry_run = d
            .get("dryRun")
            .and_then(Value::as_array)
            .is_some_and(|a| a.iter().any(|v| v == "All"));
    }
    opts
}

/// Evicts `ns/name`: deletes it when no budget objects, after taking a disruption from the one
/// that selects it; 429 when that budget has none to give.
pub async fn evict(
    reg: &Registry,
    rt: &ResourceType,
    ns: &str,
    name: &str,
    eviction: &Value,
) -> ApiResult<StatusCode> {
    let opts = delete_options(eviction);
    let pod = reg.get(rt, Some(ns), name).await?;
    // Pods that are done, not started or already going need no budget.
    let exempt = matches!(phase(&pod), Some("Succeeded" | "Failed" | "Pending"))
        || object::is_deleting(&pod);
    let pdb_type = kubelab_resources::catalog::find("policy", "v1", "poddisruptionbudgets");
    if let (false, Some(pdb_type)) = (exempt, pdb_type) {
        let pdbs = reg
            .list(pdb_type, Some(ns), &ListOptions::default())
            .await?;
        let pod_labels = object::metadata(&pod)
            .and_then(|m| m.get("labels"))
            .and_then(Value::as_object);
        let matching: Vec<&Value> = pdbs
            .items
            .iter()
            .filter(|pdb| {
                pdb.pointer("/spec/selector")
                    .and_then(|s| labels::from_label_selector_json(s).ok())
                    .is_some_and(|s| !s.is_empty() && s.matches(pod_labels))
            })
            .collect();
        if matching.len() > 1 {
            return Err(ApiError::Internal {
                message: "This pod has more than one PodDisruptionBudget, which the eviction subresource does not support.".into(),
            });
        }
        if let Some(pdb) = matching.first() {
            // An unready pod of a budget that is already met disrupts nothing (the default
            // IfHealthyBudget policy); AlwaysAllow lets unready pods go regardless.
            let unready_ok = !is_ready(&pod)
                && match pdb
                    .pointer("/spec/unhealthyPodEvictionPolicy")
                    .and_then(Value::as_str)
                {
                    Some("AlwaysAllow") => true,
                    _ => {
                        status_i64(pdb, "currentHealthy") >= status_i64(pdb, "desiredHealthy")
                            && status_i64(pdb, "desiredHealthy") > 0
                    }
                };
            if !unready_ok {
                let now = object::now_rfc3339();
                reg.update(
                    pdb_type,
                    Some(ns),
                    object::name(pdb),
                    Some("status"),
                    opts.dry_run,
                    |current| take_disruption(current, name, &now),
                )
                .await?;
            }
        }
    }
    reg.delete(rt, Some(ns), name, &opts).await?;
    Ok(StatusCode::CREATED)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pdb(allowed: i64, generation: i64, observed: i64) -> Value {
        json!({"metadata": {"name": "db", "generation": generation, "resourceVersion": "7"},
            "status": {"disruptionsAllowed": allowed, "observedGeneration": observed,
                "desiredHealthy": 2, "currentHealthy": 2 + allowed, "expectedPods": 3}})
    }

    #[test]
    fn a_disruption_is_taken_and_recorded() {
        let next = take_disruption(&pdb(2, 1, 1), "db-0", "2026-11-25T00:00:00Z").unwrap();
        assert_eq!(next["status"]["disruptionsAllowed"], 1);
        assert_eq!(
            next["status"]["disruptedPods"]["db-0"],
            "2026-11-25T00:00:00Z"
        );
        assert!(next["metadata"].get("resourceVersion").is_none());
        assert!(next["status"].get("conditions").is_none());
        let last = take_disruption(&next, "db-1", "2026-11-25T00:00:01Z").unwrap();
        assert_eq!(last["status"]["disruptionsAllowed"], 0);
        assert_eq!(
            last["status"]["disruptedPods"].as_object().unwrap().len(),
            2
        );
        assert_eq!(
            last["status"]["conditions"][0]["reason"],
            "InsufficientPods"
        );
    }

    #[test]
    fn no_disruption_left_is_429_with_the_budget_as_cause() {
        let err = take_disruption(&pdb(0, 1, 1), "db-0", "now").unwrap_err();
        let status = err.status_body();
        assert_eq!(status["code"], 429);
        assert_eq!(status["message"], REFUSED);
        assert_eq!(
            status["details"]["causes"][0],
            json!({"reason": "DisruptionBudget",
                "message": "The disruption budget db needs 2 healthy pods and has 2 currently"})
        );
        assert!(status["details"].get("retryAfterSeconds").is_none());
    }

    #[test]
    fn an_unprocessed_budget_asks_to_retry() {
        let status = take_disruption(&pdb(1, 2, 1), "db-0", "now")
            .unwrap_err()
            .status_body();
        assert_eq!(status["code"], 429);
        assert_eq!(status["details"]["retryAfterSeconds"], 10);
        let negative = take_disruption(&pdb(-1, 1, 1), "db-0", "now")
            .unwrap_err()
            .status_body();
        assert_eq!(negative["code"], 403);
    }
}
