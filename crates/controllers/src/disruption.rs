//! Disruption controller: keeps PodDisruptionBudget status current (upstream
//! `pkg/controller/disruption`). `expectedPods`, `desiredHealthy` (from `minAvailable` or
//! `maxUnavailable`, integer or percentage, rounded up), `currentHealthy` (Ready pods of the
//! selector that are not being deleted nor recently disrupted), `disruptionsAllowed =
//! max(0, currentHealthy - desiredHealthy)`, `observedGeneration`, and the `DisruptionAllowed`
//! condition (`SufficientPods` / `InsufficientPods`, or `SyncFailed`). The API server's eviction
//! subresource reads `disruptionsAllowed`.
//!
//! Percentages and `maxUnavailable` scale with the pods' controllers as upstream: the
//! `spec.replicas` of the Deployment (through its ReplicaSet), ReplicaSet, StatefulSet or
//! ReplicationController of each pod. Pods of other controllers count one each (upstream asks
//! their `scale` subresource).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use jiff::{SignedDuration, Timestamp};
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet, StatefulSet};
use k8s_openapi::api::core::v1::{Pod, ReplicationController};
use k8s_openapi::api::policy::v1::{PodDisruptionBudget, PodDisruptionBudgetStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, OwnerReference, Time};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::api::{Api, ListParams, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use kube::ResourceExt;

use crate::job::support::{self, is_ready};
use crate::{Context, Error, ERROR_REQUEUE};

const DISRUPTION_ALLOWED: &str = "DisruptionAllowed";
/// A pod recorded in `disruptedPods` that still exists this long afterwards counts again.
const DELETION_TIMEOUT: SignedDuration = SignedDuration::from_mins(2);

struct State {
    client: kube::Client,
}

pub async fn run(ctx: Context) {
    let client = ctx.client;
    let pdbs: Api<PodDisruptionBudget> = Api::all(client.clone());
    let controller = Controller::new(pdbs, watcher::Config::default());
    let budgets = controller.store();
    controller
        .watches_shared_stream(ctx.pods.touched(), move |pod: Arc<Pod>| {
            let namespace = pod.namespace();
            let labels = pod.metadata.labels.clone();
            budgets
                .state()
                .into_iter()
                .filter(|pdb| pdb.namespace() == namespace)
                .filter(|pdb| {
                    pdb.spec
                        .as_ref()
                        .and_then(|s| s.selector.as_ref())
                        .is_some_and(|s| support::selector_matches(s, labels.as_ref()))
                })
                .map(|pdb| ObjectRef::from_obj(&*pdb))
                .collect::<Vec<_>>()
        })
        .run(reconcile, error_policy, Arc::new(State { client }))
        .for_each(|result| {
            if let Err(e) = result {
                tracing::debug!(error = %e, "disruption controller");
            }
            futures::future::ready(())
        })
        .await;
}

fn error_policy(pdb: Arc<PodDisruptionBudget>, err: &Error, _state: Arc<State>) -> Action {
    if matches!(err, Error::Api(e) if support::is_conflict(e)) {
        return Action::requeue(Duration::from_millis(100));
    }
    tracing::warn!(pdb = %pdb.name_any(), namespace = ?pdb.namespace(), error = %err, "poddisruptionbudget reconcile failed");
    Action::requeue(ERROR_REQUEUE)
}

async fn reconcile(cached: Arc<PodDisruptionBudget>, state: Arc<State>) -> Result<Action, Error> {
    let Some(namespace) = cached.namespace() else {
        return Ok(Action::await_change());
    };
    let api: Api<PodDisruptionBudget> = Api::namespaced(state.client.clone(), &namespace);
    let Some(mut pdb) = api.get_opt(&cached.name_any()).await? else {
        return Ok(Action::await_change());
    };
    let spec = pdb.spec.clone().unwrap_or_default();
    // A nil selector selects nothing; an empty one selects every pod of the namespace.
    let pods: Vec<Pod> = match spec.selector.as_ref().map(support::selector_query) {
        Some(Some(query)) => {
            let pods: Api<Pod> = Api::namespaced(state.client.clone(), &namespace);
            pods.list(&ListParams::default().labels(&query))
                .await?
                .items
        }
        _ => Vec::new(),
    };
    let now = support::now();
    let old = pdb.status.clone().unwrap_or_default();
    let generation = pdb.metadata.generation;
    let (status, recheck) = match counts(&state.client, &namespace, &spec, &pods).await {
        Ok((expected, desired)) => {
            let (disrupted, recheck) = disrupted_pods(old.disrupted_pods.as_ref(), &pods, now);
            let healthy = pods
                .iter()
                .filter(|p| p.metadata.deletion_timestamp.is_none())
                .filter(|p| !disrupted.contains_key(&p.name_any()))
                .filter(|p| is_ready(p))
                .count() as i32;
            let mut allowed = healthy - desired;
            if expected <= 0 || allowed <= 0 {
                allowed = 0;
            }
            let (condition_status, reason, message) = if allowed > 0 {
                ("True", "SufficientPods", String::new())
            } else {
                ("False", "InsufficientPods", String::new())
            };
            let status = PodDisruptionBudgetStatus {
                current_healthy: healthy,
                desired_healthy: desired,
                expected_pods: expected,
                disruptions_allowed: allowed,
                disrupted_pods: (!disrupted.is_empty()).then_some(disrupted),
                observed_generation: generation,
                conditions: Some(set_condition(
                    old.conditions.clone().unwrap_or_default(),
                    condition_status,
                    reason,
                    message,
                    generation,
                    now,
                )),
            };
            (status, recheck)
        }
        // Upstream's fail-safe: no disruptions while the numbers cannot be computed.
        Err(message) => {
            let status = PodDisruptionBudgetStatus {
                disruptions_allowed: 0,
                observed_generation: generation,
                conditions: Some(set_condition(
                    old.conditions.clone().unwrap_or_default(),
                    "False",
                    "SyncFailed",
                    message,
                    generation,
                    now,
                )),
                ..old.clone()
            };
            (status, None)
        }
    };
    if Some(&status) != pdb.status.as_ref() {
        pdb.status = Some(status);
        api.replace_status(&pdb.name_any(), &PostParams::default(), &pdb)
            .await?;
    }
    Ok(match recheck {
        Some(at) => Action::requeue(support::until(now, at) + Duration::from_millis(100)),
        None => Action::await_change(),
    })
}

/// (expectedPods, desiredHealthy) as upstream `getExpectedPodCount`.
async fn counts(
    client: &kube::Client,
    namespace: &str,
    spec: &k8s_openapi::api::policy::v1::PodDisruptionBudgetSpec,
    pods: &[Pod],
) -> Result<(i32, i32), String> {
    if let Some(max_unavailable) = &spec.max_unavailable {
        let expected = expected_scale(client, namespace, pods).await?;
        let unavailable = scaled(max_unavailable, expected)?;
        return Ok((expected, (expected - unavailable).max(0)));
    }
    match &spec.min_available {
        Some(IntOrString::Int(n)) => Ok((pods.len() as i32, *n)),
        Some(percent @ IntOrString::String(_)) => {
            let expected = expected_scale(client, namespace, pods).await?;
            Ok((expected, scaled(percent, expected)?))
        }
        None => Ok((0, 0)),
    }
}

/// An int, or a percentage of `total` rounded up (`GetScaledValueFromIntOrPercent`).
fn scaled(value: &IntOrString, total: i32) -> Result<i32, String> {
    match value {
        IntOrString::Int(n) => Ok(*n),
        IntOrString::String(s) => {
            let percent: i64 = s
                .strip_suffix('%')
                .and_then(|p| p.parse().ok())
                .ok_or_else(|| format!("invalid value for IntOrString: invalid value {s:?}"))?;
            Ok(((percent * i64::from(total) + 99) / 100) as i32)
        }
    }
}

fn controller_of(pod: &Pod) -> Option<&OwnerReference> {
    pod.metadata
        .owner_references
        .iter()
        .flatten()
        .find(|r| r.controller == Some(true))
}

/// Sum of the replicas of the pods' controllers (upstream `getExpectedScale`).
async fn expected_scale(
    client: &kube::Client,
    namespace: &str,
    pods: &[Pod],
) -> Result<i32, String> {
    // controller uid -> replicas
    let mut scales: HashMap<String, i32> = HashMap::new();
    // owner uid -> the scale it resolves to (a ReplicaSet may resolve to its Deployment)
    let mut resolved: HashMap<String, (String, Option<i32>)> = HashMap::new();
    let mut uncontrolled = 0;
    for pod in pods {
        let Some(owner) = controller_of(pod) else {
            return Err(format!(
                "found no controller ref for pod {:?}",
                pod.name_any()
            ));
        };
        if !resolved.contains_key(&owner.uid) {
            let scale = owner_scale(client, namespace, owner).await.map_err(|e| {
                format!("cannot get the scale of {} {}: {e}", owner.kind, owner.name)
            })?;
            resolved.insert(owner.uid.clone(), scale);
        }
        match &resolved[&owner.uid] {
            (uid, Some(replicas)) => {
                scales.insert(uid.clone(), *replicas);
            }
            (_, None) => uncontrolled += 1,
        }
    }
    Ok(scales.values().sum::<i32>() + uncontrolled)
}

/// (uid of the controller whose scale counts, its replicas); None replicas: unknown kind or
/// gone, the pod counts one.
async fn owner_scale(
    client: &kube::Client,
    namespace: &str,
    owner: &OwnerReference,
) -> Result<(String, Option<i32>), kube::Error> {
    let uid_matches = |meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta| {
        meta.uid.as_deref() == Some(owner.uid.as_str())
    };
    let unknown = Ok((owner.uid.clone(), None));
    match (owner.api_version.as_str(), owner.kind.as_str()) {
        ("apps/v1", "ReplicaSet") => {
            let api: Api<ReplicaSet> = Api::namespaced(client.clone(), namespace);
            let Some(rs) = api
                .get_opt(&owner.name)
                .await?
                .filter(|r| uid_matches(&r.metadata))
            else {
                return unknown;
            };
            let deployment = rs.metadata.owner_references.iter().flatten().find(|r| {
                r.controller == Some(true) && r.kind == "Deployment" && r.api_version == "apps/v1"
            });
            if let Some(d) = deployment {
                let api: Api<Deployment> = Api::namespaced(client.clone(), namespace);
                if let Some(dep) = api.get_opt(&d.name).await? {
                    if dep.metadata.uid.as_deref() == Some(d.uid.as_str()) {
                        let replicas = dep.spec.and_then(|s| s.replicas).unwrap_or(1);
                        return Ok((d.uid.clone(), Some(replicas)));
                    }
                }
            }
            Ok((
                owner.uid.clone(),
                Some(rs.spec.and_then(|s| s.replicas).unwrap_or(1)),
            ))
        }
        ("apps/v1", "StatefulSet") => {
            let api: Api<StatefulSet> = Api::namespaced(client.clone(), namespace);
            Ok(
                match api
                    .get_opt(&owner.name)
                    .await?
                    .filter(|s| uid_matches(&s.metadata))
                {
                    Some(s) => (
                        owner.uid.clone(),
                        Some(s.spec.and_then(|s| s.replicas).unwrap_or(1)),
                    ),
                    None => (owner.uid.clone(), None),
                },
            )
        }
        ("v1", "ReplicationController") => {
            let api: Api<ReplicationController> = Api::namespaced(client.clone(), namespace);
            Ok(
                match api
                    .get_opt(&owner.name)
                    .await?
                    .filter(|s| uid_matches(&s.metadata))
                {
                    Some(rc) => (
                        owner.uid.clone(),
                        Some(rc.spec.and_then(|s| s.replicas).unwrap_or(1)),
                    ),
                    None => (owner.uid.clone(), None),
                },
            )
        }
        _ => unknown,
    }
}

/// Keeps the `disruptedPods` entries of pods that still exist, are not being deleted and were
/// disrupted less than two minutes ago; returns them and when the oldest kept entry expires.
fn disrupted_pods(
    old: Option<&BTreeMap<String, Time>>,
    pods: &[Pod],
    now: Timestamp,
) -> (BTreeMap<String, Time>, Option<Timestamp>) {
    let mut kept = BTreeMap::new();
    let mut recheck: Option<Timestamp> = None;
    let Some(old) = old else {
        return (kept, None);
    };
    for pod in pods {
        if pod.metadata.deletion_timestamp.is_some() {
            continue;
        }
        let name = pod.name_any();
        let Some(at) = old.get(&name) else {
            continue;
        };
        let expected_deletion = at.0 + DELETION_TIMEOUT;
        if expected_deletion < now {
            tracing::info!(pod = %name, "pod was expected to be deleted but it was not");
            continue;
        }
        kept.insert(name, at.clone());
        recheck = Some(recheck.map_or(expected_deletion, |r| r.min(expected_deletion)));
    }
    (kept, recheck)
}

/// Sets the DisruptionAllowed condition (`meta.SetStatusCondition`: the transition time moves
/// only when the status changes).
fn set_condition(
    mut list: Vec<Condition>,
    status: &str,
    reason: &str,
    message: String,
    generation: Option<i64>,
    now: Timestamp,
) -> Vec<Condition> {
    match list.iter_mut().find(|c| c.type_ == DISRUPTION_ALLOWED) {
        Some(c) => {
            if c.status != status {
                c.status = status.to_string();
                c.last_transition_time = Time(now);
            }
            c.reason = reason.to_string();
            c.message = message;
            c.observed_generation = generation;
        }
        None => list.push(Condition {
            type_: DISRUPTION_ALLOWED.to_string(),
            status: status.to_string(),
            reason: reason.to_string(),
            message,
            observed_generation: generation,
            last_transition_time: Time(now),
        }),
    }
    list
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentages_round_up() {
        assert_eq!(scaled(&IntOrString::String("50%".into()), 3), Ok(2));
        assert_eq!(scaled(&IntOrString::String("34%".into()), 3), Ok(2));
        assert_eq!(scaled(&IntOrString::String("33%".into()), 3), Ok(1));
        assert_eq!(scaled(&IntOrString::String("100%".into()), 5), Ok(5));
        assert_eq!(scaled(&IntOrString::String("0%".into()), 5), Ok(0));
        assert_eq!(scaled(&IntOrString::Int(2), 5), Ok(2));
        assert!(scaled(&IntOrString::String("half".into()), 5).is_err());
    }

    #[test]
    fn disrupted_entries_expire() {
        let now: Timestamp = "2024-05-01T10:05:00Z".parse().unwrap();
        let pod = |name: &str| Pod {
            metadata: k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
                name: Some(name.into()),
                ..Default::default()
            },
            ..Default::default()
        };
        let old: BTreeMap<String, Time> = [
            (
                "fresh".to_string(),
                Time("2024-05-01T10:04:00Z".parse().unwrap()),
            ),
            (
                "stale".to_string(),
                Time("2024-05-01T10:00:00Z".parse().unwrap()),
            ),
            (
                "gone".to_string(),
                Time("2024-05-01T10:04:30Z".parse().unwrap()),
            ),
        ]
        .into();
        let (kept, recheck) = disrupted_pods(Some(&old), &[pod("fresh"), pod("stale")], now);
        assert_eq!(kept.keys().collect::<Vec<_>>(), ["fresh"]);
        assert_eq!(recheck, Some("2024-05-01T10:06:00Z".parse().unwrap()));
    }

    #[test]
    fn condition_transition_time_moves_only_on_change() {
        let t1: Timestamp = "2024-05-01T10:00:00Z".parse().unwrap();
        let t2: Timestamp = "2024-05-01T10:01:00Z".parse().unwrap();
        let list = set_condition(
            Vec::new(),
            "True",
            "SufficientPods",
            String::new(),
            Some(1),
            t1,
        );
        let list = set_condition(list, "True", "SufficientPods", String::new(), Some(2), t2);
        assert_eq!(list[0].last_transition_time, Time(t1));
        assert_eq!(list[0].observed_generation, Some(2));
        let list = set_condition(
            list,
            "False",
            "InsufficientPods",
            String::new(),
            Some(2),
            t2,
        );
        assert_eq!(list[0].last_transition_time, Time(t2));
        assert_eq!(list.len(), 1);
    }
}
