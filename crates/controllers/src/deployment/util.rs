//! Pure helpers of the Deployment controller (upstream `pkg/controller/deployment/util`): the
//! pod-template hash, surge/unavailability arithmetic, revision and replica annotations,
//! conditions and status.

use std::cmp::Ordering;
use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{
    Deployment, DeploymentCondition, DeploymentStatus, ReplicaSet, ReplicaSetCondition,
};
use k8s_openapi::api::core::v1::PodTemplateSpec;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use k8s_openapi::jiff::Timestamp;

pub(crate) const REVISION: &str = "deployment.kubernetes.io/revision";
pub(crate) const REVISION_HISTORY: &str = "deployment.kubernetes.io/revision-history";
pub(crate) const DESIRED_REPLICAS: &str = "deployment.kubernetes.io/desired-replicas";
pub(crate) const MAX_REPLICAS: &str = "deployment.kubernetes.io/max-replicas";
pub(crate) const POD_TEMPLATE_HASH: &str = "pod-template-hash";
const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";
const ROLLBACK_TO: &str = "deprecated.deployment.rollback.to";
/// Upper bound of the revision-history annotation (upstream `maxRevHistoryLengthInChars`).
const MAX_REVISION_HISTORY_CHARS: usize = 2000;

// Condition reasons, as upstream.
pub(crate) const NEW_RS_CREATED: &str = "NewReplicaSetCreated";
pub(crate) const FOUND_NEW_RS: &str = "FoundNewReplicaSet";
pub(crate) const RS_UPDATED: &str = "ReplicaSetUpdated";
pub(crate) const NEW_RS_AVAILABLE: &str = "NewReplicaSetAvailable";
pub(crate) const TIMED_OUT: &str = "ProgressDeadlineExceeded";
pub(crate) const PAUSED: &str = "DeploymentPaused";
pub(crate) const RESUMED: &str = "DeploymentResumed";
pub(crate) const FAILED_RS_CREATE: &str = "ReplicaSetCreateError";
pub(crate) const MIN_AVAILABLE: &str = "MinimumReplicasAvailable";
pub(crate) const MIN_UNAVAILABLE: &str = "MinimumReplicasUnavailable";

pub(crate) const PROGRESSING: &str = "Progressing";
pub(crate) const AVAILABLE: &str = "Available";
pub(crate) const REPLICA_FAILURE: &str = "ReplicaFailure";

// ---- small accessors ----------------------------------------------------------------------

pub(crate) fn replicas(d: &Deployment) -> i32 {
    d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1)
}

pub(crate) fn spec_replicas(rs: &ReplicaSet) -> i32 {
    rs.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1)
}

pub(crate) fn status_replicas(rs: &ReplicaSet) -> i32 {
    rs.status.as_ref().map(|s| s.replicas).unwrap_or(0)
}

pub(crate) fn available_replicas(rs: &ReplicaSet) -> i32 {
    rs.status
        .as_ref()
        .and_then(|s| s.available_replicas)
        .unwrap_or(0)
}

pub(crate) fn ready_replicas(rs: &ReplicaSet) -> i32 {
    rs.status
        .as_ref()
        .and_then(|s| s.ready_replicas)
        .unwrap_or(0)
}

pub(crate) fn template(d: &Deployment) -> PodTemplateSpec {
    d.spec
        .as_ref()
        .map(|s| s.template.clone())
        .unwrap_or_default()
}

pub(crate) fn is_recreate(d: &Deployment) -> bool {
    d.spec
        .as_ref()
        .and_then(|s| s.strategy.as_ref())
        .and_then(|s| s.type_.as_deref())
        == Some("Recreate")
}

pub(crate) fn is_paused(d: &Deployment) -> bool {
    d.spec.as_ref().and_then(|s| s.paused).unwrap_or(false)
}

pub(crate) fn progress_deadline(d: &Deployment) -> Option<i32> {
    d.spec
        .as_ref()
        .and_then(|s| s.progress_deadline_seconds)
        .filter(|s| *s != i32::MAX)
}

pub(crate) fn revision_history_limit(d: &Deployment) -> Option<i32> {
    d.spec.as_ref().and_then(|s| s.revision_history_limit)
}

/// Only RSs with pods (upstream `FilterActiveReplicaSets`: spec.replicas > 0).
pub(crate) fn is_active(rs: &ReplicaSet) -> bool {
    spec_replicas(rs) > 0
}

/// Oldest first, ties by name (upstream `ReplicaSetsByCreationTimestamp`).
pub(crate) fn by_creation(a: &ReplicaSet, b: &ReplicaSet) -> Ordering {
    let ta = a.metadata.creation_timestamp.as_ref().map(|t| t.0);
    let tb = b.metadata.creation_timestamp.as_ref().map(|t| t.0);
    ta.cmp(&tb)
        .then_with(|| a.metadata.name.cmp(&b.metadata.name))
}

// ---- surge and unavailability -------------------------------------------------------------

/// An int-or-percent scaled against `total` (upstream `GetScaledValueFromIntOrPercent`).
pub(crate) fn scaled_value(value: Option<&IntOrString>, total: i32, round_up: bool) -> i32 {
    match value {
        None => 0,
        Some(IntOrString::Int(i)) => *i,
        Some(IntOrString::String(s)) => {
            let Some(percent) = s.strip_suffix('%').and_then(|p| p.parse::<i64>().ok()) else {
                return s.parse().unwrap_or(0);
            };
            let exact = percent as f64 * total as f64 / 100.0;
            (if round_up {
                exact.ceil()
            } else {
                exact.floor()
            }) as i32
        }
    }
}

/// (maxSurge, maxUnavailable) of a rolling update; never both zero (upstream `ResolveFenceposts`).
pub(crate) fn fenceposts(d: &Deployment) -> (i32, i32) {
    let rolling = d
        .spec
        .as_ref()
        .and_then(|s| s.strategy.as_ref())
        .and_then(|s| s.rolling_update.as_ref());
    let default = IntOrString::String("25%".into());
    let surge_spec = rolling
        .and_then(|r| r.max_surge.as_ref())
        .unwrap_or(&default);
    let unavailable_spec = rolling
        .and_then(|r| r.max_unavailable.as_ref())
        .unwrap_or(&default);
    let desired = replicas(d);
    let surge = scaled_value(Some(surge_spec), desired, true);
    let unavailable = scaled_value(Some(unavailable_spec), desired, false);
    if surge == 0 && unavailable == 0 {
        (0, 1)
    } else {
        (surge, unavailable)
    }
}

pub(crate) fn max_surge(d: &Deployment) -> i32 {
    if is_recreate(d) {
        0
    } else {
        fenceposts(d).0
    }
}

pub(crate) fn max_unavailable(d: &Deployment) -> i32 {
    if is_recreate(d) || replicas(d) == 0 {
        return 0;
    }
    fenceposts(d).1.min(replicas(d))
}

/// What the new ReplicaSet should be scaled to now (upstream `NewRSNewReplicas`). The pods an
/// old ReplicaSet still runs above its spec (scaled down, pods not yet deleted) count as well,
/// so the number of pods never exceeds replicas + maxSurge even while the caches lag.
pub(crate) fn new_rs_new_replicas(d: &Deployment, all: &[&ReplicaSet], new_rs: &ReplicaSet) -> i32 {
    if is_recreate(d) {
        return replicas(d);
    }
    let current: i32 = all
        .iter()
        .map(|rs| spec_replicas(rs).max(status_replicas(rs)))
        .sum();
    let max_total = replicas(d) + max_surge(d);
    if current >= max_total {
        return spec_replicas(new_rs);
    }
    let up = (max_total - current)
        .min(replicas(d) - spec_replicas(new_rs))
        .max(0);
    spec_replicas(new_rs) + up
}

/// The new ReplicaSet runs every replica and all are available (upstream `IsSaturated`).
pub(crate) fn is_saturated(d: &Deployment, rs: Option<&ReplicaSet>) -> bool {
    let Some(rs) = rs else {
        return false;
    };
    let desired = annotation_i32(rs, DESIRED_REPLICAS);
    spec_replicas(rs) == replicas(d)
        && desired == Some(replicas(d))
        && available_replicas(rs) == replicas(d)
}

/// How much of `to_add` this ReplicaSet takes in a proportional scale (upstream `GetProportion`).
pub(crate) fn proportion(rs: &ReplicaSet, d: &Deployment, to_add: i32, added: i32) -> i32 {
    if spec_replicas(rs) == 0 || to_add == 0 || to_add == added {
        return 0;
    }
    let fraction = fraction(rs, d);
    let allowed = to_add - added;
    if to_add > 0 {
        fraction.min(allowed)
    } else {
        fraction.max(allowed)
    }
}

fn fraction(rs: &ReplicaSet, d: &Deployment) -> i32 {
    if replicas(d) == 0 {
        return -spec_replicas(rs);
    }
    let max_now = replicas(d) + max_surge(d);
    let before = match annotation_i32(rs, MAX_REPLICAS) {
        Some(n) if n != 0 => n,
        _ => {
            let n = d.status.as_ref().and_then(|s| s.replicas).unwrap_or(0);
            if n == 0 {
                return 0;
            }
            n
        }
    };
    let size = spec_replicas(rs) as f64 * max_now as f64 / before as f64;
    size.round() as i32 - spec_replicas(rs)
}

// ---- the pod-template hash ----------------------------------------------------------------

/// FNV-1a, 32 bits (what upstream's `ComputeHash` feeds).
fn fnv32a(data: &[u8]) -> u32 {
    let mut hash: u32 = 0x811c_9dc5;
    for b in data {
        hash ^= u32::from(*b);
        hash = hash.wrapping_mul(0x0100_0193);
    }
    hash
}

/// Upstream `rand.SafeEncodeString`: no vowels (no words), no look-alike characters.
fn safe_encode(s: &str) -> String {
    const ALPHANUMS: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    s.bytes()
        .map(|b| ALPHANUMS[usize::from(b) % ALPHANUMS.len()] as char)
        .collect()
}

/// The `pod-template-hash` of a template: FNV-1a over its canonical JSON plus the collision
/// count, encoded like upstream's (upstream hashes Go's deep printing of the struct, which has
/// no Rust equivalent; the values differ from upstream's, the shape and stability do not).
pub(crate) fn compute_hash(template: &PodTemplateSpec, collision_count: Option<i32>) -> String {
    let mut data = serde_json::to_vec(&without_hash(template)).unwrap_or_default();
    if let Some(c) = collision_count {
        let mut bytes = [0u8; 8];
        bytes[..4].copy_from_slice(&(c as u32).to_le_bytes());
        data.extend_from_slice(&bytes);
    }
    safe_encode(&fnv32a(&data).to_string())
}

/// The template without the `pod-template-hash` label, empty maps as absent.
fn without_hash(t: &PodTemplateSpec) -> PodTemplateSpec {
    let mut t = t.clone();
    let meta = t.metadata.get_or_insert_with(Default::default);
    if let Some(labels) = meta.labels.as_mut() {
        labels.remove(POD_TEMPLATE_HASH);
    }
    if meta.labels.as_ref().is_some_and(BTreeMap::is_empty) {
        meta.labels = None;
    }
    if meta.annotations.as_ref().is_some_and(BTreeMap::is_empty) {
        meta.annotations = None;
    }
    t
}

/// Same template apart from the hash label (upstream `EqualIgnoreHash`).
pub(crate) fn equal_ignore_hash(a: &PodTemplateSpec, b: &PodTemplateSpec) -> bool {
    without_hash(a) == without_hash(b)
}

// ---- annotations --------------------------------------------------------------------------

fn annotation<'a>(rs: &'a ReplicaSet, key: &str) -> Option<&'a str> {
    rs.metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(key))
        .map(String::as_str)
}

fn annotation_i32(rs: &ReplicaSet, key: &str) -> Option<i32> {
    annotation(rs, key).and_then(|v| v.parse().ok())
}

pub(crate) fn desired_replicas_annotation(rs: &ReplicaSet) -> Option<i32> {
    annotation_i32(rs, DESIRED_REPLICAS)
}

/// The revision of a ReplicaSet: 0 without the annotation, None if it does not parse.
pub(crate) fn revision(rs: &ReplicaSet) -> Option<i64> {
    match annotation(rs, REVISION) {
        None => Some(0),
        Some(v) => v.parse().ok(),
    }
}

pub(crate) fn max_revision(rss: &[ReplicaSet]) -> i64 {
    rss.iter().filter_map(revision).max().unwrap_or(0)
}

/// Annotations a Deployment never passes on to its ReplicaSets.
fn skip_copy(key: &str) -> bool {
    matches!(
        key,
        LAST_APPLIED | REVISION | REVISION_HISTORY | DESIRED_REPLICAS | MAX_REPLICAS | ROLLBACK_TO
    )
}

/// Upstream `SetNewReplicaSetAnnotations`: copy the Deployment's annotations, raise the
/// revision (remembering the previous ones when a ReplicaSet is brought back), and on creation
/// set the replica annotations. Returns whether anything changed.
pub(crate) fn set_new_rs_annotations(
    d: &Deployment,
    rs: &mut ReplicaSet,
    new_revision: i64,
    exists: bool,
) -> bool {
    let mut changed = false;
    let annotations = rs.metadata.annotations.get_or_insert_with(BTreeMap::new);
    for (k, v) in d.metadata.annotations.iter().flatten() {
        if skip_copy(k) || annotations.get(k) == Some(v) {
            continue;
        }
        annotations.insert(k.clone(), v.clone());
        changed = true;
    }
    let old = annotations.get(REVISION).cloned();
    let old_number = match old.as_deref() {
        None => 0,
        Some(v) => match v.parse::<i64>() {
            Ok(n) => n,
            Err(_) => return changed,
        },
    };
    if old_number < new_revision {
        annotations.insert(REVISION.into(), new_revision.to_string());
        changed = true;
        if let Some(old) = old {
            let history = annotations
                .get(REVISION_HISTORY)
                .cloned()
                .unwrap_or_default();
            let joined = if history.is_empty() {
                old
            } else {
                let mut parts: Vec<&str> = history.split(',').collect();
                let mut total = history.len() + old.len() + 1;
                while total > MAX_REVISION_HISTORY_CHARS && !parts.is_empty() {
                    total -= parts[0].len() + 1;
                    parts.remove(0);
                }
                parts.push(&old);
                parts.join(",")
            };
            annotations.insert(REVISION_HISTORY.into(), joined);
        }
    }
    if !exists && set_replicas_annotations(rs, replicas(d), replicas(d) + max_surge(d)) {
        changed = true;
    }
    changed
}

/// Sets desired-replicas and max-replicas; returns whether they changed.
pub(crate) fn set_replicas_annotations(rs: &mut ReplicaSet, desired: i32, max: i32) -> bool {
    let annotations = rs.metadata.annotations.get_or_insert_with(BTreeMap::new);
    let mut changed = false;
    for (key, value) in [(DESIRED_REPLICAS, desired), (MAX_REPLICAS, max)] {
        let value = value.to_string();
        if annotations.get(key) != Some(&value) {
            annotations.insert(key.into(), value);
            changed = true;
        }
    }
    changed
}

pub(crate) fn replicas_annotations_need_update(rs: &ReplicaSet, desired: i32, max: i32) -> bool {
    annotation(rs, DESIRED_REPLICAS) != Some(desired.to_string().as_str())
        || annotation(rs, MAX_REPLICAS) != Some(max.to_string().as_str())
}

// ---- conditions ---------------------------------------------------------------------------

pub(crate) fn condition<'a>(
    status: &'a DeploymentStatus,
    type_: &str,
) -> Option<&'a DeploymentCondition> {
    status
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == type_)
}

pub(crate) fn new_condition(
    type_: &str,
    status: &str,
    reason: &str,
    message: String,
    now: Timestamp,
) -> DeploymentCondition {
    DeploymentCondition {
        type_: type_.into(),
        status: status.into(),
        reason: Some(reason.into()),
        message: Some(message),
        last_update_time: Some(Time(now)),
        last_transition_time: Some(Time(now)),
    }
}

/// Upstream `SetDeploymentCondition`: no change for the same status and reason; the transition
/// time stays while the status does.
pub(crate) fn set_condition(status: &mut DeploymentStatus, mut cond: DeploymentCondition) {
    if let Some(current) = condition(status, &cond.type_) {
        if current.status == cond.status && current.reason == cond.reason {
            return;
        }
        if current.status == cond.status {
            cond.last_transition_time = current.last_transition_time.clone();
        }
    }
    remove_condition(status, &cond.type_);
    status.conditions.get_or_insert_with(Vec::new).push(cond);
}

pub(crate) fn remove_condition(status: &mut DeploymentStatus, type_: &str) {
    if let Some(conds) = status.conditions.as_mut() {
        conds.retain(|c| c.type_ != type_);
    }
}

pub(crate) fn from_rs_condition(c: &ReplicaSetCondition) -> DeploymentCondition {
    DeploymentCondition {
        type_: c.type_.clone(),
        status: c.status.clone(),
        reason: c.reason.clone(),
        message: c.message.clone(),
        last_update_time: c.last_transition_time.clone(),
        last_transition_time: c.last_transition_time.clone(),
    }
}

// ---- status -------------------------------------------------------------------------------

fn n(v: Option<i32>) -> i32 {
    v.unwrap_or(0)
}

fn nonzero(v: i32) -> Option<i32> {
    (v != 0).then_some(v)
}

/// Upstream `calculateStatus`: counters from the ReplicaSets, the Available condition.
pub(crate) fn calculate_status(
    all: &[&ReplicaSet],
    new_rs: Option<&ReplicaSet>,
    d: &Deployment,
    now: Timestamp,
) -> DeploymentStatus {
    let available: i32 = all.iter().map(|rs| available_replicas(rs)).sum();
    let total: i32 = all.iter().map(|rs| spec_replicas(rs)).sum();
    let current = d.status.clone().unwrap_or_default();
    let mut status = DeploymentStatus {
        observed_generation: d.metadata.generation,
        replicas: nonzero(all.iter().map(|rs| status_replicas(rs)).sum()),
        updated_replicas: nonzero(new_rs.map(status_replicas).unwrap_or(0)),
        ready_replicas: nonzero(all.iter().map(|rs| ready_replicas(rs)).sum()),
        available_replicas: nonzero(available),
        unavailable_replicas: nonzero((total - available).max(0)),
        collision_count: current.collision_count,
        conditions: current.conditions.clone(),
    };
    let cond = if available >= replicas(d) - max_unavailable(d) {
        new_condition(
            AVAILABLE,
            "True",
            MIN_AVAILABLE,
            "Deployment has minimum availability.".into(),
            now,
        )
    } else {
        new_condition(
            AVAILABLE,
            "False",
            MIN_UNAVAILABLE,
            "Deployment does not have minimum availability.".into(),
            now,
        )
    };
    set_condition(&mut status, cond);
    status
}

/// Every replica updated and available, and the spec observed (upstream `DeploymentComplete`).
pub(crate) fn is_complete(d: &Deployment, status: &DeploymentStatus) -> bool {
    let want = replicas(d);
    n(status.updated_replicas) == want
        && n(status.replicas) == want
        && n(status.available_replicas) == want
        && status.observed_generation.unwrap_or(0) >= d.metadata.generation.unwrap_or(0)
}

/// Something moved since the last status (upstream `DeploymentProgressing`).
pub(crate) fn is_progressing(d: &Deployment, new: &DeploymentStatus) -> bool {
    let old = d.status.clone().unwrap_or_default();
    let old_old = n(old.replicas) - n(old.updated_replicas);
    let new_old = n(new.replicas) - n(new.updated_replicas);
    n(new.updated_replicas) > n(old.updated_replicas)
        || new_old < old_old
        || n(new.ready_replicas) > n(old.ready_replicas)
        || n(new.available_replicas) > n(old.available_replicas)
}

/// The Progressing condition was last updated longer ago than the deadline (upstream
/// `DeploymentTimedOut`).
pub(crate) fn is_timed_out(d: &Deployment, status: &DeploymentStatus, now: Timestamp) -> bool {
    let Some(deadline) = progress_deadline(d) else {
        return false;
    };
    let Some(cond) = condition(status, PROGRESSING) else {
        return false;
    };
    match cond.reason.as_deref() {
        Some(NEW_RS_AVAILABLE) => false,
        Some(TIMED_OUT) => true,
        _ => cond
            .last_update_time
            .as_ref()
            .is_some_and(|t| t.0 + std::time::Duration::from_secs(deadline.max(0) as u64) < now),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn deployment(
        replicas: i32,
        surge: serde_json::Value,
        unavailable: serde_json::Value,
    ) -> Deployment {
        serde_json::from_value(json!({
            "metadata": {"name": "web", "generation": 2, "annotations": {
                "kubernetes.io/change-cause": "v2", REVISION: "1",
                "kubectl.kubernetes.io/last-applied-configuration": "{}"
            }},
            "spec": {
                "replicas": replicas,
                "selector": {"matchLabels": {"app": "web"}},
                "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": surge, "maxUnavailable": unavailable}},
                "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "c", "image": "busybox"}]}}
            }
        }))
        .unwrap()
    }

    fn rs(
        name: &str,
        spec: i32,
        status: i32,
        available: i32,
        annotations: serde_json::Value,
    ) -> ReplicaSet {
        serde_json::from_value(json!({
            "metadata": {"name": name, "annotations": annotations},
            "spec": {"replicas": spec, "selector": {"matchLabels": {"app": "web"}}},
            "status": {"replicas": status, "availableReplicas": available, "readyReplicas": available}
        }))
        .unwrap()
    }

    #[test]
    fn surge_rounds_up_and_unavailable_down() {
        assert_eq!(
            fenceposts(&deployment(3, json!("25%"), json!("25%"))),
            (1, 0)
        );
        assert_eq!(
            fenceposts(&deployment(10, json!("25%"), json!("25%"))),
            (3, 2)
        );
        assert_eq!(fenceposts(&deployment(4, json!(2), json!("50%"))), (2, 2));
        assert_eq!(
            fenceposts(&deployment(3, json!(0), json!(0))),
            (0, 1),
            "never both zero"
        );
        assert_eq!(
            max_unavailable(&deployment(1, json!(0), json!(5))),
            1,
            "capped at replicas"
        );
    }

    #[test]
    fn hash_is_stable_encoded_and_ignores_its_own_label() {
        let d = deployment(3, json!(1), json!(0));
        let t = template(&d);
        let h = compute_hash(&t, None);
        assert_eq!(h, compute_hash(&t, None));
        assert!(h.chars().all(|c| "456789bcdf".contains(c)), "{h}");
        assert_ne!(
            h,
            compute_hash(&t, Some(1)),
            "collision count changes the hash"
        );
        let mut labelled = t.clone();
        labelled
            .metadata
            .as_mut()
            .unwrap()
            .labels
            .as_mut()
            .unwrap()
            .insert(POD_TEMPLATE_HASH.into(), h.clone());
        assert!(equal_ignore_hash(&t, &labelled));
        assert_eq!(compute_hash(&labelled, None), h);
        let mut other = t.clone();
        other.spec.as_mut().unwrap().containers[0].image = Some("nginx".into());
        assert!(!equal_ignore_hash(&t, &other));
        assert_ne!(compute_hash(&other, None), h);
    }

    #[test]
    fn new_rs_scales_within_surge() {
        let d = deployment(3, json!(1), json!(0));
        let old = rs("old", 3, 3, 3, json!({}));
        let new = rs("new", 0, 0, 0, json!({}));
        assert_eq!(new_rs_new_replicas(&d, &[&old, &new], &new), 1);
        let new1 = rs("new", 1, 1, 0, json!({}));
        assert_eq!(
            new_rs_new_replicas(&d, &[&old, &new1], &new1),
            1,
            "at max total"
        );
        // Old scaled to 2 but its third pod is still counted: no room yet.
        let old_lagging = rs("old", 2, 3, 3, json!({}));
        assert_eq!(new_rs_new_replicas(&d, &[&old_lagging, &new1], &new1), 1);
        let old2 = rs("old", 2, 2, 2, json!({}));
        assert_eq!(new_rs_new_replicas(&d, &[&old2, &new1], &new1), 2);
    }

    #[test]
    fn annotations_carry_revision_history_and_skip_private_keys() {
        let d = deployment(3, json!(1), json!(0));
        let mut r = rs("web-1", 0, 0, 0, json!({REVISION: "1"}));
        assert!(set_new_rs_annotations(&d, &mut r, 3, true));
        let a = r.metadata.annotations.clone().unwrap();
        assert_eq!(a[REVISION], "3");
        assert_eq!(a[REVISION_HISTORY], "1");
        assert_eq!(a["kubernetes.io/change-cause"], "v2");
        assert!(!a.contains_key(LAST_APPLIED));
        assert!(
            !a.contains_key(DESIRED_REPLICAS),
            "existing RS: replica annotations untouched"
        );
        assert!(!set_new_rs_annotations(&d, &mut r, 3, true), "idempotent");
        let mut fresh = rs("web-2", 0, 0, 0, json!({}));
        set_new_rs_annotations(&d, &mut fresh, 4, false);
        let a = fresh.metadata.annotations.unwrap();
        assert_eq!(
            (
                a[REVISION].as_str(),
                a[DESIRED_REPLICAS].as_str(),
                a[MAX_REPLICAS].as_str()
            ),
            ("4", "3", "4")
        );
        assert!(!a.contains_key(REVISION_HISTORY));
    }

    #[test]
    fn proportional_scaling_follows_max_replicas() {
        // 10 replicas, surge 3: an RS of 5 created when max was 13, now scaled to 20 (max 23).
        let d = deployment(20, json!(3), json!(0));
        let r = rs("a", 5, 5, 5, json!({MAX_REPLICAS: "13"}));
        assert_eq!(proportion(&r, &d, 10, 0), 4); // round(5*23/13)=9 -> +4
        assert_eq!(proportion(&r, &d, 3, 0), 3, "capped at what is left");
    }

    #[test]
    fn status_and_completion() {
        let d = deployment(3, json!(1), json!(0));
        let new = rs("new", 3, 3, 3, json!({}));
        let now = Timestamp::now();
        let s = calculate_status(&[&new], Some(&new), &d, now);
        assert_eq!(
            (
                s.replicas,
                s.updated_replicas,
                s.available_replicas,
                s.unavailable_replicas
            ),
            (Some(3), Some(3), Some(3), None)
        );
        assert!(is_complete(&d, &s));
        assert_eq!(
            condition(&s, AVAILABLE).unwrap().reason.as_deref(),
            Some(MIN_AVAILABLE)
        );
        let old = rs("old", 1, 1, 1, json!({}));
        let s = calculate_status(&[&old, &new], Some(&new), &d, now);
        assert!(!is_complete(&d, &s), "an old pod remains");
    }
}
