//! StatefulSet controller: pods with stable names `<set>-<ordinal>`, hostname and subdomain, and
//! one PersistentVolumeClaim per volumeClaimTemplate (`<template>-<set>-<ordinal>`, created before
//! the pod, kept or deleted as persistentVolumeClaimRetentionPolicy says). OrderedReady creates
//! ordinals in order, each once its predecessors are Running and Ready, and removes the highest
//! first, one at a time; Parallel does both at once. RollingUpdate replaces pods from the highest
//! ordinal down to the partition, one at a time, by ControllerRevision. Status as upstream so
//! `kubectl rollout status sts/x` works. Modelled on upstream's `pkg/controller/statefulset`.

pub(crate) mod events;
pub(crate) mod history;
pub(crate) mod pods;

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::apps::v1::{ControllerRevision, StatefulSet, StatefulSetSpec};
use k8s_openapi::api::core::v1::{
    PersistentVolumeClaim, PersistentVolumeClaimVolumeSource, Pod, PodTemplateSpec, Volume,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::core::Selector;
use kube::runtime::controller::{self, Action, Controller};
use kube::runtime::watcher;
use kube::{Resource, ResourceExt};
use serde_json::json;

use self::events::Events;
use self::history::REVISION_HASH_LABEL;
use crate::{Context, Error, ERROR_REQUEUE};

const CONTROLLER: &str = "statefulset-controller";
pub(crate) const POD_NAME_LABEL: &str = "statefulset.kubernetes.io/pod-name";
pub(crate) const POD_INDEX_LABEL: &str = "apps.kubernetes.io/pod-index";
const DEBOUNCE: Duration = Duration::from_millis(50);

struct State {
    client: kube::Client,
    events: Events,
}

pub async fn run(ctx: Context) {
    let client = ctx.client;
    let state = Arc::new(State {
        client: client.clone(),
        events: Events::new(client.clone(), CONTROLLER),
    });
    // Stateful pods always carry the revision label: only labelled pods concern this one.
    let pods = ctx
        .pods
        .touched()
        .filter(|pod| std::future::ready(pod.labels().contains_key(REVISION_HASH_LABEL)));
    Controller::new(
        Api::<StatefulSet>::all(client.clone()),
        watcher::Config::default(),
    )
    .owns_shared_stream(pods)
    .owns(
        Api::<ControllerRevision>::all(client.clone()),
        watcher::Config::default(),
    )
    .with_config(controller::Config::default().debounce(DEBOUNCE))
    .run(
        reconcile,
        |_set, err, _state| {
            tracing::warn!(error = %err, "statefulset reconcile failed");
            Action::requeue(ERROR_REQUEUE)
        },
        state,
    )
    .for_each(|result| {
        if let Err(e) = result {
            tracing::debug!(error = %e, "statefulset controller");
        }
        futures::future::ready(())
    })
    .await;
}

/// The ordinal of a pod named `<set>-<n>`.
pub(crate) fn ordinal(set_name: &str, pod_name: &str) -> Option<i32> {
    let rest = pod_name.strip_prefix(set_name)?.strip_prefix('-')?;
    if rest.is_empty() || !rest.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    rest.parse().ok()
}

fn pod_ordinal(set_name: &str, pod: &Pod) -> Option<i32> {
    ordinal(set_name, pod.metadata.name.as_deref()?)
}

fn revision_of(pod: &Pod) -> &str {
    pod.metadata
        .labels
        .as_ref()
        .and_then(|l| l.get(REVISION_HASH_LABEL))
        .map(String::as_str)
        .unwrap_or_default()
}

fn running_and_ready(pod: &Pod) -> bool {
    pods::phase(pod) == "Running" && pods::is_ready(pod)
}

fn healthy(pod: &Pod) -> bool {
    running_and_ready(pod) && !pods::is_terminating(pod)
}

/// The name of the claim for `template` of ordinal `ordinal`.
pub(crate) fn claim_name(template: &str, set_name: &str, ordinal: i32) -> String {
    format!("{template}-{set_name}-{ordinal}")
}

/// One reconcile's fixed facts about a StatefulSet.
struct Plan<'a> {
    set: &'a StatefulSet,
    spec: &'a StatefulSetSpec,
    name: String,
    namespace: String,
    owner_ref: OwnerReference,
    pod_api: Api<Pod>,
    state: &'a State,
    current_revision: String,
    update_revision: String,
    current_template: PodTemplateSpec,
    start: i32,
    monotonic: bool,
    now: Timestamp,
}

/// What status reports (upstream's `computeReplicaStatus`, plus revision bookkeeping).
#[derive(Clone, Debug, Default, PartialEq)]
struct Counts {
    replicas: i32,
    ready: i32,
    available: i32,
    current: i32,
    updated: i32,
}

impl Plan<'_> {
    fn min_ready_seconds(&self) -> i32 {
        self.spec.min_ready_seconds.unwrap_or(0)
    }

    fn available(&self, pod: &Pod) -> bool {
        running_and_ready(pod) && pods::is_available(pod, self.min_ready_seconds(), self.now)
    }

    fn reference(&self) -> k8s_openapi::api::core::v1::ObjectReference {
        self.set.object_ref(&())
    }

    fn is_rolling(&self) -> bool {
        self.spec
            .update_strategy
            .as_ref()
            .and_then(|s| s.type_.as_deref())
            .unwrap_or("RollingUpdate")
            == "RollingUpdate"
    }

    fn partition(&self) -> i32 {
        self.spec
            .update_strategy
            .as_ref()
            .and_then(|s| s.rolling_update.as_ref())
            .and_then(|r| r.partition)
            .unwrap_or(0)
    }

    fn counts<'p>(&self, pods: impl Iterator<Item = &'p Pod>) -> Counts {
        let mut c = Counts::default();
        for pod in pods {
            c.replicas += 1;
            if running_and_ready(pod) {
                c.ready += 1;
                if self.available(pod) {
                    c.available += 1;
                }
            }
            if !pods::is_terminating(pod) {
                let revision = revision_of(pod);
                if revision == self.current_revision {
                    c.current += 1;
                }
                if revision == self.update_revision {
                    c.updated += 1;
                }
            }
        }
        c
    }

    /// The claims of ordinal `ordinal` (upstream's `getPersistentVolumeClaims`).
    fn claims(&self, ordinal: i32) -> Vec<PersistentVolumeClaim> {
        let match_labels = self.spec.selector.match_labels.clone().unwrap_or_default();
        let delete_with_set = self
            .spec
            .persistent_volume_claim_retention_policy
            .as_ref()
            .and_then(|p| p.when_deleted.as_deref())
            == Some("Delete");
        self.spec
            .volume_claim_templates
            .iter()
            .flatten()
            .map(|template| {
                let mut claim = template.clone();
                let template_name = template.metadata.name.clone().unwrap_or_default();
                let mut labels = claim.metadata.labels.take().unwrap_or_default();
                labels.extend(match_labels.clone());
                claim.metadata = ObjectMeta {
                    name: Some(claim_name(&template_name, &self.name, ordinal)),
                    namespace: Some(self.namespace.clone()),
                    labels: Some(labels),
                    annotations: claim.metadata.annotations.take(),
                    finalizers: claim.metadata.finalizers.take(),
                    owner_references: delete_with_set.then(|| {
                        vec![OwnerReference {
                            controller: None,
                            block_owner_deletion: None,
                            ..self.owner_ref.clone()
                        }]
                    }),
                    ..ObjectMeta::default()
                };
                claim.status = None;
                claim
            })
            .collect()
    }

    /// A pod for `ordinal` from the template of its revision: below the partition the current
    /// revision, else the update revision (upstream's `newVersionedStatefulSetPod`).
    fn new_pod(&self, ordinal: i32) -> Pod {
        let use_current = self.is_rolling() && ordinal < self.start + self.partition();
        let (template, revision) = if use_current {
            (&self.current_template, &self.current_revision)
        } else {
            (&self.spec.template, &self.update_revision)
        };
        let pod_name = format!("{}-{}", self.name, ordinal);
        let template_meta = template.metadata.clone().unwrap_or_default();
        let mut labels = template_meta.labels.unwrap_or_default();
        labels.insert(POD_NAME_LABEL.into(), pod_name.clone());
        labels.insert(POD_INDEX_LABEL.into(), ordinal.to_string());
        labels.insert(REVISION_HASH_LABEL.into(), revision.clone());
        let mut spec = template.spec.clone().unwrap_or_default();
        spec.hostname = Some(pod_name.clone());
        if let Some(service) = self.spec.service_name.as_deref().filter(|s| !s.is_empty()) {
            spec.subdomain = Some(service.to_owned());
        }
        // Claim volumes replace template volumes of the same name (`updateStorage`).
        let mut volumes: Vec<Volume> = Vec::new();
        let mut claimed = Vec::new();
        for template in self.spec.volume_claim_templates.iter().flatten() {
            let template_name = template.metadata.name.clone().unwrap_or_default();
            volumes.push(Volume {
                name: template_name.clone(),
                persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
                    claim_name: claim_name(&template_name, &self.name, ordinal),
                    read_only: None,
                }),
                ..Volume::default()
            });
            claimed.push(template_name);
        }
        volumes.extend(
            spec.volumes
                .take()
                .into_iter()
                .flatten()
                .filter(|v| !claimed.contains(&v.name)),
        );
        spec.volumes = (!volumes.is_empty()).then_some(volumes);
        Pod {
            metadata: ObjectMeta {
                name: Some(pod_name),
                namespace: Some(self.namespace.clone()),
                labels: Some(labels),
                annotations: template_meta.annotations,
                finalizers: template_meta.finalizers,
                owner_references: Some(vec![self.owner_ref.clone()]),
                ..ObjectMeta::default()
            },
            spec: Some(spec),
            status: None,
        }
    }

    /// Creates the claims of `ordinal` that do not exist yet.
    async fn create_claims(&self, ordinal: i32) -> Result<(), Error> {
        let api: Api<PersistentVolumeClaim> =
            Api::namespaced(self.state.client.clone(), &self.namespace);
        let pod_name = format!("{}-{}", self.name, ordinal);
        for claim in self.claims(ordinal) {
            let claim_name = claim.name_any();
            match api.get_opt(&claim_name).await? {
                Some(existing) if existing.metadata.deletion_timestamp.is_some() => {
                    return Err(Error::Invalid(format!(
                        "pvc {claim_name} is being deleted; waiting before creating pod {pod_name}"
                    )));
                }
                Some(_) => {}
                None => match api.create(&PostParams::default(), &claim).await {
                    Ok(_) => {
                        self.state
                            .events
                            .normal(
                                &self.reference(),
                                "SuccessfulCreate",
                                format!(
                                    "create Claim {claim_name} Pod {pod_name} in StatefulSet {} success",
                                    self.name
                                ),
                            )
                            .await;
                    }
                    Err(kube::Error::Api(e)) if e.code == 409 => {}
                    Err(e) => {
                        self.state
                            .events
                            .warning(
                                &self.reference(),
                                "FailedCreate",
                                format!(
                                    "create Claim {claim_name} for Pod {pod_name} in StatefulSet {} failed error: {e}",
                                    self.name
                                ),
                            )
                            .await;
                        return Err(e.into());
                    }
                },
            }
        }
        Ok(())
    }

    async fn create_pod(&self, ordinal: i32) -> Result<(), Error> {
        self.create_claims(ordinal).await?;
        let pod = self.new_pod(ordinal);
        let pod_name = pod.name_any();
        match self.pod_api.create(&PostParams::default(), &pod).await {
            Ok(_) => {
                tracing::info!(statefulset = %self.name, pod = %pod_name, "created stateful pod");
                self.state
                    .events
                    .normal(
                        &self.reference(),
                        "SuccessfulCreate",
                        format!(
                            "create Pod {pod_name} in StatefulSet {} successful",
                            self.name
                        ),
                    )
                    .await;
                Ok(())
            }
            // Still there from before (e.g. being finalized): the next sync sees it.
            Err(kube::Error::Api(e)) if e.code == 409 => Ok(()),
            Err(e) => {
                self.state
                    .events
                    .warning(
                        &self.reference(),
                        "FailedCreate",
                        format!(
                            "create Pod {pod_name} in StatefulSet {} failed error: {e}",
                            self.name
                        ),
                    )
                    .await;
                Err(e.into())
            }
        }
    }

    async fn delete_pod(&self, pod: &Pod) -> Result<(), Error> {
        let pod_name = pod.name_any();
        match pods::not_found_ok(
            self.pod_api
                .delete(&pod_name, &DeleteParams::default())
                .await,
        ) {
            Ok(_) => {
                tracing::info!(statefulset = %self.name, pod = %pod_name, "deleted stateful pod");
                self.state
                    .events
                    .normal(
                        &self.reference(),
                        "SuccessfulDelete",
                        format!(
                            "delete Pod {pod_name} in StatefulSet {} successful",
                            self.name
                        ),
                    )
                    .await;
                Ok(())
            }
            Err(e) => {
                self.state
                    .events
                    .warning(
                        &self.reference(),
                        "FailedDelete",
                        format!(
                            "delete Pod {pod_name} in StatefulSet {} failed error: {e}",
                            self.name
                        ),
                    )
                    .await;
                Err(e.into())
            }
        }
    }

    /// Restores the identity labels of an existing pod if someone removed them.
    async fn fix_identity(&self, pod: &Pod, ordinal: i32) -> Result<(), Error> {
        let labels = pod.metadata.labels.clone().unwrap_or_default();
        let pod_name = pod.name_any();
        let index = ordinal.to_string();
        if labels.get(POD_NAME_LABEL) == Some(&pod_name)
            && labels.get(POD_INDEX_LABEL) == Some(&index)
        {
            return Ok(());
        }
        let patch =
            json!({"metadata": {"labels": {POD_NAME_LABEL: pod_name, POD_INDEX_LABEL: index}}});
        pods::not_found_ok(
            self.pod_api
                .patch(&pod_name, &PatchParams::default(), &Patch::Merge(patch))
                .await,
        )?;
        Ok(())
    }
}

async fn reconcile(set: Arc<StatefulSet>, state: Arc<State>) -> Result<Action, Error> {
    if set.metadata.deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let Some(spec) = set.spec.as_ref() else {
        return Ok(Action::await_change());
    };
    let Some(selector) = pods::selector(&spec.selector)? else {
        state
            .events
            .warning(
                &set.object_ref(&()),
                "SelectingAll",
                "This statefulset is selecting all pods. A non-empty selector is required.".into(),
            )
            .await;
        return Ok(Action::await_change());
    };
    let name = set.name_any();
    let namespace = set.namespace().unwrap_or_default();
    let owner_ref = set
        .controller_owner_ref(&())
        .ok_or_else(|| Error::Invalid(format!("statefulset {namespace}/{name} has no uid")))?;
    let pod_api: Api<Pod> = Api::namespaced(state.client.clone(), &namespace);
    let selector_string = selector.to_string();
    let listed = pod_api
        .list(&ListParams::default().labels(&selector_string))
        .await?
        .items;
    let owned = pods::claim(&pod_api, listed, &selector, &owner_ref, |p| {
        pod_ordinal(&name, p).is_some()
    })
    .await?;

    let status = set.status.clone().unwrap_or_default();
    let revisions = history::sync(
        &state.client,
        &history::Owner {
            name: &name,
            namespace: &namespace,
            uid: &owner_ref.uid,
            owner_ref: owner_ref.clone(),
            annotations: set.annotations().clone(),
            collision_count: status.collision_count.unwrap_or(0),
            selector: selector_string.clone(),
        },
        &spec.template,
    )
    .await?;
    let update_revision = revisions.update.name_any();
    let current = status
        .current_revision
        .as_deref()
        .and_then(|n| revisions.find(n))
        .unwrap_or(&revisions.update);
    let current_revision = current.name_any();
    let current_template = history::template_of(current).unwrap_or_else(|| spec.template.clone());

    let plan = Plan {
        set: &set,
        spec,
        name: name.clone(),
        namespace: namespace.clone(),
        owner_ref,
        pod_api,
        state: &state,
        current_revision,
        update_revision,
        current_template,
        start: spec.ordinals.as_ref().and_then(|o| o.start).unwrap_or(0),
        monotonic: spec.pod_management_policy.as_deref() != Some("Parallel"),
        now: Timestamp::now(),
    };

    let replicas = spec.replicas.unwrap_or(1).max(0);
    let end = plan.start + replicas;
    let mut slots: Vec<Option<&Pod>> = vec![None; usize::try_from(replicas).unwrap_or(0)];
    let mut condemned: Vec<(i32, &Pod)> = Vec::new();
    for pod in &owned {
        let Some(ord) = pod_ordinal(&name, pod) else {
            continue;
        };
        if (plan.start..end).contains(&ord) {
            if let Ok(i) = usize::try_from(ord - plan.start) {
                slots[i] = Some(pod);
            }
        } else {
            condemned.push((ord, pod));
        }
    }
    condemned.sort_by_key(|(ordinal, _)| std::cmp::Reverse(*ordinal));

    let mut counts = plan.counts(
        slots
            .iter()
            .flatten()
            .copied()
            .chain(condemned.iter().map(|(_, p)| *p)),
    );
    let outcome = sync_pods(&plan, &slots, &condemned, &mut counts).await;

    let mut current_revision = plan.current_revision.clone();
    if plan.is_rolling() && counts.updated == counts.replicas && counts.ready == counts.replicas {
        counts.current = counts.updated;
        current_revision = plan.update_revision.clone();
    }

    let mut live: Vec<String> = owned.iter().map(|p| revision_of(p).to_owned()).collect();
    live.push(current_revision.clone());
    live.push(plan.update_revision.clone());
    history::truncate(
        &state.client,
        &namespace,
        &revisions,
        spec.revision_history_limit.unwrap_or(10),
        |r| {
            live.iter()
                .any(|l| r.metadata.name.as_deref() == Some(l.as_str()))
        },
    )
    .await?;

    if outcome.is_ok() {
        delete_scaled_down_claims(&plan, &owned, &selector, end).await?;
    }
    write_status(&plan, &counts, &current_revision, revisions.collision_count).await?;
    outcome?;

    let min_ready = plan.min_ready_seconds();
    if min_ready > 0 && counts.ready != counts.available {
        return Ok(Action::requeue(Duration::from_secs(
            u64::try_from(min_ready).unwrap_or(1),
        )));
    }
    Ok(Action::await_change())
}

/// Upstream's `updateStatefulSet` after status is computed: replicas in ordinal order, then
/// condemned pods from the highest ordinal, then the rolling update. In OrderedReady mode every
/// step that changes something or must wait ends the sync.
async fn sync_pods(
    plan: &Plan<'_>,
    slots: &[Option<&Pod>],
    condemned: &[(i32, &Pod)],
    counts: &mut Counts,
) -> Result<(), Error> {
    let monotonic = plan.monotonic;
    // The first unhealthy pod: a missing replica, an unhealthy replica, or else the lowest
    // unhealthy condemned pod. Only it may be deleted while unhealthy in OrderedReady mode.
    let first_unhealthy: Option<i32> = slots
        .iter()
        .enumerate()
        .find(|(_, slot)| slot.is_none_or(|p| !healthy(p)))
        .map(|(i, _)| plan.start + i32::try_from(i).unwrap_or(0))
        .or_else(|| {
            condemned
                .iter()
                .rev()
                .find(|(_, p)| !healthy(p))
                .map(|(ord, _)| *ord)
        });

    for (i, slot) in slots.iter().enumerate() {
        let ordinal = plan.start + i32::try_from(i).unwrap_or(0);
        let Some(pod) = slot else {
            plan.create_pod(ordinal).await?;
            if monotonic {
                return Ok(());
            }
            continue;
        };
        if matches!(pods::phase(pod), "Failed" | "Succeeded") {
            if !pods::is_terminating(pod) {
                plan.state
                    .events
                    .warning(
                        &plan.reference(),
                        "RecreatingFailedPod",
                        format!(
                            "StatefulSet {}/{} is recreating failed Pod {}",
                            plan.namespace,
                            plan.name,
                            pod.name_any()
                        ),
                    )
                    .await;
                plan.delete_pod(pod).await?;
                counts.replicas -= 1;
                if revision_of(pod) == plan.current_revision {
                    counts.current -= 1;
                }
                if revision_of(pod) == plan.update_revision {
                    counts.updated -= 1;
                }
            }
            if monotonic {
                return Ok(());
            }
            continue;
        }
        if pods::phase(pod) == "Pending" {
            plan.create_claims(ordinal).await?;
        }
        if monotonic && (pods::is_terminating(pod) || !plan.available(pod)) {
            return Ok(());
        }
        plan.fix_identity(pod, ordinal).await?;
    }

    for (ordinal, pod) in condemned {
        if pods::is_terminating(pod) {
            if monotonic {
                return Ok(());
            }
            continue;
        }
        if monotonic && !plan.available(pod) && first_unhealthy != Some(*ordinal) {
            return Ok(());
        }
        plan.delete_pod(pod).await?;
        if monotonic {
            return Ok(());
        }
    }

    if !plan.is_rolling() {
        return Ok(());
    }
    let update_min = usize::try_from(plan.partition().max(0)).unwrap_or(0);
    for slot in slots.iter().skip(update_min).rev() {
        let Some(pod) = slot else {
            return Ok(());
        };
        if revision_of(pod) != plan.update_revision && !pods::is_terminating(pod) {
            plan.delete_pod(pod).await?;
            counts.current -= 1;
            return Ok(());
        }
        if !healthy(pod) {
            return Ok(());
        }
    }
    Ok(())
}

/// With `whenScaled: Delete`, claims of ordinals beyond the replicas go once their pod is gone.
async fn delete_scaled_down_claims(
    plan: &Plan<'_>,
    owned: &[Pod],
    selector: &Selector,
    end: i32,
) -> Result<(), Error> {
    let delete_on_scale = plan
        .spec
        .persistent_volume_claim_retention_policy
        .as_ref()
        .and_then(|p| p.when_scaled.as_deref())
        == Some("Delete");
    let templates: Vec<String> = plan
        .spec
        .volume_claim_templates
        .iter()
        .flatten()
        .filter_map(|t| t.metadata.name.clone())
        .collect();
    if !delete_on_scale || templates.is_empty() {
        return Ok(());
    }
    let api: Api<PersistentVolumeClaim> =
        Api::namespaced(plan.state.client.clone(), &plan.namespace);
    let claims = api
        .list(&ListParams::default().labels(&selector.to_string()))
        .await?
        .items;
    let pod_ordinals: Vec<i32> = owned
        .iter()
        .filter_map(|p| pod_ordinal(&plan.name, p))
        .collect();
    for claim in claims {
        let claim_name = claim.name_any();
        let ordinal = templates.iter().find_map(|t| {
            claim_name
                .strip_prefix(t.as_str())
                .and_then(|rest| rest.strip_prefix('-'))
                .and_then(|rest| ordinal(&plan.name, rest))
        });
        let Some(ordinal) = ordinal else {
            continue;
        };
        let condemned = ordinal < plan.start || ordinal >= end;
        if !condemned
            || pod_ordinals.contains(&ordinal)
            || claim.metadata.deletion_timestamp.is_some()
        {
            continue;
        }
        match api.delete(&claim_name, &DeleteParams::default()).await {
            Ok(_) => {
                plan.state
                    .events
                    .normal(
                        &plan.reference(),
                        "SuccessfulDelete",
                        format!(
                            "delete Claim {claim_name} in StatefulSet {} successful",
                            plan.name
                        ),
                    )
                    .await;
            }
            Err(kube::Error::Api(e)) if e.code == 404 => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

async fn write_status(
    plan: &Plan<'_>,
    counts: &Counts,
    current_revision: &str,
    collision_count: i32,
) -> Result<(), Error> {
    let old = plan.set.status.clone().unwrap_or_default();
    let generation = plan.set.metadata.generation;
    let unchanged = old.replicas == counts.replicas
        && old.ready_replicas.unwrap_or(0) == counts.ready
        && old.available_replicas.unwrap_or(0) == counts.available
        && old.current_replicas.unwrap_or(0) == counts.current
        && old.updated_replicas.unwrap_or(0) == counts.updated
        && old.current_revision.as_deref() == Some(current_revision)
        && old.update_revision.as_deref() == Some(plan.update_revision.as_str())
        && old.observed_generation >= generation
        && old.collision_count.unwrap_or(0) == collision_count;
    if unchanged {
        return Ok(());
    }
    let mut status = json!({
        "observedGeneration": generation,
        "replicas": counts.replicas,
        "readyReplicas": counts.ready,
        "availableReplicas": counts.available,
        "currentReplicas": counts.current,
        "updatedReplicas": counts.updated,
        "currentRevision": current_revision,
        "updateRevision": plan.update_revision,
    });
    if collision_count != 0 {
        status["collisionCount"] = json!(collision_count);
    }
    let api: Api<StatefulSet> = Api::namespaced(plan.state.client.clone(), &plan.namespace);
    pods::not_found_ok(
        api.patch_status(
            &plan.name,
            &PatchParams::default(),
            &Patch::Merge(json!({ "status": status })),
        )
        .await,
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ordinals_parse_only_for_members() {
        assert_eq!(ordinal("web", "web-0"), Some(0));
        assert_eq!(ordinal("web", "web-12"), Some(12));
        assert_eq!(ordinal("web", "web-"), None);
        assert_eq!(ordinal("web", "web-x1"), None);
        assert_eq!(ordinal("web", "webby-1"), None);
        assert_eq!(ordinal("web", "web-api-1"), None);
        assert_eq!(claim_name("www", "web", 2), "www-web-2");
    }
}
