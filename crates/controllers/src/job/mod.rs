//! Job controller (upstream `pkg/controller/job`, Kubernetes 1.32 behaviour) and the
//! TTL-after-finished controller.
//!
//! A Job's pods come from its template (generateName `<job>-`, or `<job>-<index>-` for Indexed
//! Jobs), carry a controller ownerReference and the `batch.kubernetes.io/job-tracking`
//! finalizer. A terminated pod is first recorded in `status.uncountedTerminatedPods`, then its
//! finalizer is removed, then it moves into `status.succeeded`/`failed`: no completion is lost or
//! counted twice, even when pods are deleted early. As upstream with `JobPodReplacementPolicy`
//! and `JobSuccessPolicy` on, a Job first gets `SuccessCriteriaMet` (reason `CompletionsReached`)
//! or `FailureTarget` (`BackoffLimitExceeded`, `DeadlineExceeded`), and `Complete`/`Failed` once
//! no pod is left terminating. A pod failure delays the next pod creation by 10 s, doubling per
//! consecutive failure (at most 10 min). A finished Job with `ttlSecondsAfterFinished` is deleted
//! that long after it finished.
//!
//! Not implemented: podFailurePolicy, successPolicy, backoffLimitPerIndex, adoption of orphan
//! pods matching a Job's selector, Jobs managed by another controller (`spec.managedBy`) are
//! skipped as upstream.

mod indexes;
pub(crate) mod support;

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use jiff::{SignedDuration, Timestamp};
use k8s_openapi::api::batch::v1::{Job, JobCondition, JobSpec, JobStatus};
use k8s_openapi::api::core::v1::{
    EnvVar, EnvVarSource, ObjectFieldSelector, ObjectReference, Pod, PodSpec,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::api::{
    Api, DeleteParams, ListParams, Patch, PatchParams, PostParams, Preconditions, PropagationPolicy,
};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::watcher;
use kube::{Resource, ResourceExt};
use serde_json::json;

use self::support::{is_active, is_ready, is_terminating, phase, Events};
use crate::informer::SharedPods;
use crate::{Context, Error, ERROR_REQUEUE};

/// Finalizer the controller puts on every pod it creates until the pod is counted.
pub const TRACKING_FINALIZER: &str = "batch.kubernetes.io/job-tracking";
/// Annotation (and label) with an Indexed Job pod's completion index.
pub const COMPLETION_INDEX: &str = "batch.kubernetes.io/job-completion-index";
/// `spec.managedBy` value meaning this controller.
const MANAGED_BY_SELF: &str = "kubernetes.io/job-controller";

pub(crate) const COMPLETE: &str = "Complete";
pub(crate) const FAILED: &str = "Failed";
const FAILURE_TARGET: &str = "FailureTarget";
const SUCCESS_CRITERIA_MET: &str = "SuccessCriteriaMet";
const SUSPENDED: &str = "Suspended";

/// First delay after a pod failure; it doubles per consecutive failure.
const POD_FAILURE_BACKOFF: Duration = Duration::from_secs(10);
const MAX_POD_FAILURE_BACKOFF: Duration = Duration::from_secs(600);
/// Upstream caps `uncountedTerminatedPods` (and pod creations/deletions per sync) at 500.
const MAX_UNCOUNTED_PODS: usize = 500;
const MAX_POD_CREATE_DELETE_PER_SYNC: i32 = 500;
/// Requeue after a write conflict: the next read sees the newer object.
const CONFLICT_REQUEUE: Duration = Duration::from_millis(100);

struct State {
    client: kube::Client,
    events: Events,
    /// Consecutive pod failures per Job uid (upstream's backoff store; in memory only).
    backoff: Mutex<HashMap<String, BackoffRecord>>,
}

pub async fn run(ctx: Context) {
    let client = ctx.client;
    let jobs: Api<Job> = Api::all(client.clone());
    let controller =
        Controller::new(jobs, watcher::Config::default()).owns_shared_stream(ctx.pods.touched());
    let store = controller.store();
    let state = Arc::new(State {
        client: client.clone(),
        events: Events::new(client.clone(), "job-controller"),
        backoff: Mutex::new(HashMap::new()),
    });
    let jobs = controller
        .run(reconcile, error_policy, state)
        .for_each(|result| {
            if let Err(e) = result {
                tracing::debug!(error = %e, "job controller");
            }
            futures::future::ready(())
        });
    tokio::join!(jobs, release_orphaned_pods(client, ctx.pods, store));
}

fn error_policy(job: Arc<Job>, err: &Error, _state: Arc<State>) -> Action {
    if matches!(err, Error::Api(e) if support::is_conflict(e)) {
        return Action::requeue(CONFLICT_REQUEUE);
    }
    tracing::warn!(job = %job.name_any(), namespace = ?job.namespace(), error = %err, "job reconcile failed");
    Action::requeue(ERROR_REQUEUE)
}

/// The Job's `Complete` or `Failed` condition with status True, if it finished.
pub(crate) fn finished_condition(job: &Job) -> Option<&JobCondition> {
    conditions(job)
        .iter()
        .find(|c| (c.type_ == COMPLETE || c.type_ == FAILED) && c.status == "True")
}

fn conditions(job: &Job) -> &[JobCondition] {
    job.status
        .as_ref()
        .and_then(|s| s.conditions.as_deref())
        .unwrap_or(&[])
}

async fn reconcile(cached: Arc<Job>, state: Arc<State>) -> Result<Action, Error> {
    let Some(namespace) = cached.namespace() else {
        return Ok(Action::await_change());
    };
    let jobs: Api<Job> = Api::namespaced(state.client.clone(), &namespace);
    // The cache may lag behind our own last status write; work from the current object.
    let Some(job) = jobs.get_opt(&cached.name_any()).await? else {
        return Ok(Action::await_change());
    };
    if job.metadata.uid != cached.metadata.uid {
        return Ok(Action::await_change());
    }
    let managed_by = job.spec.as_ref().and_then(|s| s.managed_by.as_deref());
    if managed_by.is_some_and(|m| m != MANAGED_BY_SELF) {
        return Ok(Action::await_change());
    }
    if finished_condition(&job).is_some() {
        if let Ok(mut backoff) = state.backoff.lock() {
            backoff.remove(job.uid().as_deref().unwrap_or(""));
        }
        return delete_after_ttl(&jobs, &job).await;
    }
    let mut sync = Sync::new(&state, jobs, job);
    sync.run().await
}

// ---- TTL after finished ----

/// Deletes a finished Job once `ttlSecondsAfterFinished` have passed since it finished
/// (upstream's ttl-after-finished controller), or requeues it for that moment. Dependents go
/// with background propagation (upstream uses foreground).
async fn delete_after_ttl(jobs: &Api<Job>, job: &Job) -> Result<Action, Error> {
    let Some(ttl) = job.spec.as_ref().and_then(|s| s.ttl_seconds_after_finished) else {
        return Ok(Action::await_change());
    };
    if job.metadata.deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let Some(finished_at) = finished_condition(job)
        .and_then(|c| c.last_transition_time.as_ref())
        .map(|t| t.0)
    else {
        return Ok(Action::await_change());
    };
    let expires = finished_at + SignedDuration::from_secs(i64::from(ttl));
    let now = Timestamp::now();
    if now < expires {
        return Ok(Action::requeue(support::until(now, expires)));
    }
    let params = DeleteParams {
        propagation_policy: Some(PropagationPolicy::Background),
        preconditions: Some(Preconditions {
            uid: job.uid(),
            resource_version: None,
        }),
        ..DeleteParams::default()
    };
    match jobs.delete(&job.name_any(), &params).await {
        Ok(_) => {
            tracing::info!(job = %job.name_any(), namespace = ?job.namespace(), "deleted job after ttlSecondsAfterFinished")
        }
        Err(e) if support::is_not_found(&e) || support::is_conflict(&e) => {}
        Err(e) => return Err(e.into()),
    }
    Ok(Action::await_change())
}

// ---- pod predicates ----

fn uid_of(pod: &Pod) -> &str {
    pod.metadata.uid.as_deref().unwrap_or("")
}

fn has_tracking_finalizer(meta: &ObjectMeta) -> bool {
    meta.finalizers
        .iter()
        .flatten()
        .any(|f| f == TRACKING_FINALIZER)
}

fn completion_index(pod: &Pod) -> Option<i32> {
    pod.metadata
        .annotations
        .as_ref()?
        .get(COMPLETION_INDEX)?
        .parse()
        .ok()
        .filter(|i| *i >= 0)
}

fn controller_uid(meta: &ObjectMeta) -> Option<&OwnerReference> {
    meta.owner_references
        .iter()
        .flatten()
        .find(|r| r.controller == Some(true))
}

/// Failed, or (unless only failed pods are replaced) deleted before succeeding.
fn is_pod_failed(pod: &Pod, only_replace_failed: bool) -> bool {
    let phase = phase(pod);
    if phase == "Failed" {
        return true;
    }
    !only_replace_failed && pod.metadata.deletion_timestamp.is_some() && phase != "Succeeded"
}

/// When the pod terminated: its containers' last finishedAt, else when it stopped being Ready,
/// else its deletion or creation time.
fn finished_time(pod: &Pod) -> Timestamp {
    let status = pod.status.as_ref();
    let from_containers = status
        .and_then(|s| s.container_statuses.as_ref())
        .into_iter()
        .flatten()
        .filter_map(|c| c.state.as_ref()?.terminated.as_ref()?.finished_at.as_ref())
        .map(|t| t.0)
        .max();
    let from_ready = || {
        status
            .and_then(|s| s.conditions.as_ref())
            .into_iter()
            .flatten()
            .find(|c| c.type_ == "Ready" && c.status == "False")
            .and_then(|c| c.last_transition_time.as_ref())
            .map(|t| t.0)
    };
    from_containers
        .or_else(from_ready)
        .or_else(|| pod.metadata.deletion_timestamp.as_ref().map(|t| t.0))
        .or_else(|| pod.metadata.creation_timestamp.as_ref().map(|t| t.0))
        .unwrap_or_else(Timestamp::now)
}

/// Upstream's `controller.ActivePods` order: the pods to remove first come first
/// (unscheduled, then pending, then not ready, then the newest).
fn removal_order(a: &Pod, b: &Pod) -> std::cmp::Ordering {
    let scheduled = |p: &Pod| {
        p.spec
            .as_ref()
            .and_then(|s| s.node_name.as_deref())
            .is_some_and(|n| !n.is_empty())
    };
    let phase_rank = |p: &Pod| match phase(p) {
        "Pending" => 0,
        "Unknown" => 1,
        "Running" => 2,
        _ => 3,
    };
    let created = |p: &Pod| p.metadata.creation_timestamp.as_ref().map(|t| t.0);
    scheduled(a)
        .cmp(&scheduled(b))
        .then(phase_rank(a).cmp(&phase_rank(b)))
        .then(is_ready(a).cmp(&is_ready(b)))
        .then(created(b).cmp(&created(a)))
}

// ---- pod failure backoff ----

#[derive(Clone, Copy, Debug, Default, PartialEq)]
struct BackoffRecord {
    failures_after_last_success: u32,
    last_failure: Option<Timestamp>,
}

impl BackoffRecord {
    /// The record after newly counted pods (upstream `newBackoffRecord`).
    fn with(mut self, new_succeeded: &[&Pod], new_failed: &[&Pod]) -> Self {
        let mut failed: Vec<Timestamp> = new_failed.iter().map(|p| finished_time(p)).collect();
        failed.sort();
        let last_success = new_succeeded.iter().map(|p| finished_time(p)).max();
        match last_success {
            None => {
                if let Some(last) = failed.last() {
                    self.failures_after_last_success += failed.len() as u32;
                    self.last_failure = Some(*last);
                }
            }
            Some(success) => {
                let after: Vec<&Timestamp> = failed.iter().filter(|t| **t > success).collect();
                self.failures_after_last_success = after.len() as u32;
                self.last_failure = after.last().map(|t| **t);
            }
        }
        self
    }

    fn remaining(&self, now: Timestamp) -> Duration {
        let Some(last) = self.last_failure else {
            return Duration::ZERO;
        };
        if self.failures_after_last_success == 0 {
            return Duration::ZERO;
        }
        let mut delay = POD_FAILURE_BACKOFF;
        for _ in 1..self.failures_after_last_success {
            delay *= 2;
            if delay >= MAX_POD_FAILURE_BACKOFF {
                delay = MAX_POD_FAILURE_BACKOFF;
                break;
            }
        }
        delay.saturating_sub(support::until(last, now))
    }
}

// ---- conditions ----

fn new_condition(
    type_: &str,
    status: &str,
    reason: &str,
    message: &str,
    now: Timestamp,
) -> JobCondition {
    JobCondition {
        type_: type_.to_string(),
        status: status.to_string(),
        reason: Some(reason.to_string()),
        message: Some(message.to_string()),
        last_probe_time: Some(support::time(now)),
        last_transition_time: Some(support::time(now)),
    }
}

/// Upstream `ensureJobConditionStatus`: update the condition of that type if it differs, or add
/// it unless it would be added as False. Returns whether anything changed.
fn ensure_condition(
    list: &mut Vec<JobCondition>,
    type_: &str,
    status: &str,
    reason: &str,
    message: &str,
    now: Timestamp,
) -> bool {
    if let Some(c) = list.iter_mut().find(|c| c.type_ == type_) {
        if c.status != status
            || c.reason.as_deref() != Some(reason)
            || c.message.as_deref() != Some(message)
        {
            *c = new_condition(type_, status, reason, message, now);
            return true;
        }
        return false;
    }
    if status != "False" {
        list.push(new_condition(type_, status, reason, message, now));
        return true;
    }
    false
}

// ---- one sync of one Job ----

struct Sync<'a> {
    state: &'a State,
    jobs: Api<Job>,
    pods_api: Api<Pod>,
    job: Job,
    spec: JobSpec,
    reference: ObjectReference,
    uid: String,
    name: String,
    indexed: bool,
    only_replace_failed: bool,
}

/// What `manage_job` did.
#[derive(Default)]
struct Managed {
    active: i32,
    removed: i32,
    removed_ready: i32,
    requeue: Option<Duration>,
    error: Option<Error>,
}

impl<'a> Sync<'a> {
    fn new(state: &'a State, jobs: Api<Job>, job: Job) -> Self {
        let namespace = job.namespace().unwrap_or_default();
        let spec = job.spec.clone().unwrap_or_default();
        let indexed = spec.completion_mode.as_deref() == Some("Indexed");
        Sync {
            state,
            pods_api: Api::namespaced(state.client.clone(), &namespace),
            jobs,
            reference: job.object_ref(&()),
            uid: job.uid().unwrap_or_default(),
            name: job.name_any(),
            only_replace_failed: spec.pod_replacement_policy.as_deref() == Some("Failed"),
            indexed,
            spec,
            job,
        }
    }

    fn completions(&self) -> Option<i32> {
        self.spec.completions
    }

    fn valid_index(&self, pod: &Pod) -> bool {
        !self.indexed || completion_index(pod).is_some_and(|i| i < self.completions().unwrap_or(0))
    }

    async fn run(&mut self) -> Result<Action, Error> {
        match self.spec.completion_mode.as_deref() {
            None | Some("NonIndexed") | Some("Indexed") => {}
            Some(_) => {
                self.state
                    .events
                    .warning(
                        &self.reference,
                        "UnknownCompletionMode",
                        "Skipped Job sync because completion mode is unknown".into(),
                    )
                    .await;
                return Ok(Action::await_change());
            }
        }
        if self.indexed && self.completions().is_none() {
            return Err(Error::Invalid(format!(
                "indexed job {} has no completions",
                self.name
            )));
        }
        let selector = self
            .spec
            .selector
            .as_ref()
            .and_then(support::selector_query)
            .ok_or_else(|| Error::Invalid(format!("job {} has no usable selector", self.name)))?;
        let pods: Vec<Pod> = self
            .pods_api
            .list(&ListParams::default().labels(&selector))
            .await?
            .items
            .into_iter()
            .filter(|p| {
                controller_uid(&p.metadata).map(|r| r.uid.as_str()) == Some(self.uid.as_str())
            })
            .collect();
        self.sync(&pods).await
    }

    async fn sync(&mut self, pods: &[Pod]) -> Result<Action, Error> {
        let now = support::now();
        let original = self.job.status.clone().unwrap_or_default();
        let mut status = original.clone();
        let suspended = self.spec.suspend == Some(true);
        let backoff_limit = self.spec.backoff_limit.unwrap_or(6);
        let uncounted = status.uncounted_terminated_pods.clone().unwrap_or_default();
        let uncounted_succeeded: BTreeSet<String> =
            uncounted.succeeded.into_iter().flatten().collect();
        let uncounted_failed: BTreeSet<String> = uncounted.failed.into_iter().flatten().collect();

        let active_pods: Vec<&Pod> = pods.iter().filter(|p| is_active(p)).collect();
        let mut active = active_pods.len() as i32;
        let mut ready = active_pods.iter().filter(|p| is_ready(p)).count() as i32;
        let mut terminating = pods.iter().filter(|p| is_terminating(p)).count() as i32;
        let tracked = |p: &&Pod| has_tracking_finalizer(&p.metadata) && self.valid_index(p);
        let new_succeeded: Vec<&Pod> = pods
            .iter()
            .filter(tracked)
            .filter(|p| !uncounted_succeeded.contains(uid_of(p)) && phase(p) == "Succeeded")
            .collect();
        let new_failed: Vec<&Pod> = pods
            .iter()
            .filter(tracked)
            .filter(|p| {
                !uncounted_failed.contains(uid_of(p)) && is_pod_failed(p, self.only_replace_failed)
            })
            .collect();
        let mut succeeded = status.succeeded.unwrap_or(0)
            + new_succeeded.len() as i32
            + uncounted_succeeded.len() as i32;
        let failed =
            status.failed.unwrap_or(0) + new_failed.len() as i32 + uncounted_failed.len() as i32;
        if status.start_time.is_none() && !suspended {
            status.start_time = Some(support::time(now));
        }
        let backoff = self
            .state
            .backoff
            .lock()
            .map(|b| b.get(&self.uid).copied().unwrap_or_default())
            .unwrap_or_default()
            .with(&new_succeeded, &new_failed);
        let mut requeue: Option<Duration> = None;

        // Why the Job is finishing, if it is.
        let mut finished: Option<JobCondition> = status
            .conditions
            .iter()
            .flatten()
            .find(|c| c.type_ == SUCCESS_CRITERIA_MET && c.status == "True")
            .cloned();
        if finished.is_none() {
            if let Some(target) = status
                .conditions
                .iter()
                .flatten()
                .find(|c| c.type_ == FAILURE_TARGET && c.status == "True")
            {
                finished = Some(new_condition(
                    FAILED,
                    "True",
                    target.reason.as_deref().unwrap_or(""),
                    target.message.as_deref().unwrap_or(""),
                    now,
                ));
            }
        }
        if finished.is_none() {
            let deadline = self
                .spec
                .active_deadline_seconds
                .filter(|_| !suspended)
                .zip(status.start_time.as_ref())
                .map(|(secs, start)| start.0 + SignedDuration::from_secs(secs));
            if failed > backoff_limit || self.past_backoff_limit_on_failure(pods, backoff_limit) {
                finished = Some(new_condition(
                    FAILURE_TARGET,
                    "True",
                    "BackoffLimitExceeded",
                    "Job has reached the specified backoff limit",
                    now,
                ));
            } else if let Some(deadline) = deadline {
                if now >= deadline {
                    finished = Some(new_condition(
                        FAILURE_TARGET,
                        "True",
                        "DeadlineExceeded",
                        "Job was active longer than specified deadline",
                        now,
                    ));
                } else {
                    requeue = Some(support::until(now, deadline));
                }
            }
        }

        let completions = self.completions();
        let mut prev_indexes = BTreeSet::new();
        let mut succeeded_indexes = BTreeSet::new();
        if self.indexed {
            let total = completions.unwrap_or(0);
            prev_indexes = indexes::parse(status.completed_indexes.as_deref().unwrap_or(""), total);
            succeeded_indexes = prev_indexes.clone();
            for pod in pods.iter().filter(|p| phase(p) == "Succeeded") {
                if let Some(i) = completion_index(pod).filter(|i| *i < total) {
                    succeeded_indexes.insert(i);
                }
            }
            succeeded = succeeded_indexes.len() as i32;
        }

        let mut manage_error = None;
        if finished.is_some() {
            let (deleted_ready, deleted, error) = self.delete_pods(&active_pods, false).await;
            if deleted != active {
                // Some deletion failed: not finished until every pod is going away.
                finished = None;
            }
            active -= deleted;
            terminating += deleted;
            ready -= deleted_ready;
            manage_error = error;
        } else {
            let mut managed_now = false;
            if self.job.metadata.deletion_timestamp.is_none() {
                let managed = self
                    .manage(
                        &active_pods,
                        succeeded,
                        terminating,
                        &succeeded_indexes,
                        &backoff,
                        now,
                    )
                    .await;
                active = managed.active;
                terminating += managed.removed;
                ready -= managed.removed_ready;
                manage_error = managed.error;
                requeue = min_duration(requeue, managed.requeue);
                managed_now = true;
            }
            let complete = match completions {
                None => succeeded > 0 && active == 0,
                Some(c) => succeeded >= c && active == 0,
            };
            if complete {
                finished = Some(new_condition(
                    SUCCESS_CRITERIA_MET,
                    "True",
                    "CompletionsReached",
                    "Reached expected number of succeeded pods",
                    now,
                ));
            } else if managed_now {
                let list = status.conditions.get_or_insert_with(Vec::new);
                if suspended {
                    if ensure_condition(
                        list,
                        SUSPENDED,
                        "True",
                        "JobSuspended",
                        "Job suspended",
                        now,
                    ) {
                        self.state
                            .events
                            .normal(&self.reference, "Suspended", "Job suspended".into())
                            .await;
                    }
                } else if ensure_condition(
                    list,
                    SUSPENDED,
                    "False",
                    "JobResumed",
                    "Job resumed",
                    now,
                ) {
                    self.state
                        .events
                        .normal(&self.reference, "Resumed", "Job resumed".into())
                        .await;
                    // activeDeadlineSeconds counts from the resume.
                    status.start_time = Some(support::time(now));
                }
                if status.conditions.as_ref().is_some_and(Vec::is_empty) {
                    status.conditions = None;
                }
            }
        }
        status.active = Some(active);
        status.ready = Some(ready);
        status.terminating = Some(terminating);

        let tracked = self
            .track(
                pods,
                status,
                &original,
                finished,
                terminating,
                succeeded_indexes,
                &prev_indexes,
                backoff,
                now,
            )
            .await;
        if let Some(e) = manage_error {
            return Err(e);
        }
        let more = tracked?;
        Ok(match min_duration(requeue, more) {
            Some(d) => Action::requeue(d),
            None => Action::await_change(),
        })
    }

    /// Sum of container restarts of running pods reached the backoff limit
    /// (restartPolicy OnFailure).
    fn past_backoff_limit_on_failure(&self, pods: &[Pod], backoff_limit: i32) -> bool {
        let on_failure = self
            .spec
            .template
            .spec
            .as_ref()
            .and_then(|s| s.restart_policy.as_deref())
            == Some("OnFailure");
        if !on_failure {
            return false;
        }
        let restarts: i32 = pods
            .iter()
            .filter(|p| matches!(phase(p), "Running" | "Pending"))
            .filter_map(|p| p.status.as_ref())
            .flat_map(|s| {
                s.init_container_statuses
                    .iter()
                    .flatten()
                    .chain(s.container_statuses.iter().flatten())
            })
            .map(|c| c.restart_count)
            .sum();
        if backoff_limit == 0 {
            restarts > 0
        } else {
            restarts >= backoff_limit
        }
    }

    /// Creates or deletes pods toward the wanted number of active pods (upstream `manageJob`).
    async fn manage(
        &self,
        active_pods: &[&Pod],
        succeeded: i32,
        terminating: i32,
        succeeded_indexes: &BTreeSet<i32>,
        backoff: &BackoffRecord,
        now: Timestamp,
    ) -> Managed {
        let active = active_pods.len() as i32;
        let parallelism = self.spec.parallelism.unwrap_or(1).max(0);
        if self.spec.suspend == Some(true) {
            let (removed_ready, removed, error) = self.delete_pods(active_pods, true).await;
            return Managed {
                active: active - removed,
                removed,
                removed_ready,
                requeue: None,
                error,
            };
        }
        let want_active = match self.completions() {
            None if succeeded > 0 => active,
            None => parallelism,
            Some(c) => (c - succeeded).clamp(0, parallelism),
        };
        let remove_at_least = (active - want_active).max(0) as usize;
        let mut to_delete = self.pods_for_removal(active_pods, remove_at_least);
        to_delete.truncate(MAX_POD_CREATE_DELETE_PER_SYNC as usize);
        if !to_delete.is_empty() {
            let (removed_ready, removed, error) = self.delete_pods(&to_delete, true).await;
            return Managed {
                active: active - removed,
                removed,
                removed_ready,
                requeue: None,
                error,
            };
        }
        let replacing = if self.only_replace_failed {
            terminating
        } else {
            0
        };
        let mut diff = want_active - replacing - active;
        if diff <= 0 {
            return Managed {
                active,
                ..Managed::default()
            };
        }
        let wait = backoff.remaining(now);
        if !wait.is_zero() {
            return Managed {
                active,
                requeue: Some(wait),
                ..Managed::default()
            };
        }
        diff = diff.min(MAX_POD_CREATE_DELETE_PER_SYNC);
        let mut indexes: Vec<Option<i32>> = vec![None; diff as usize];
        if self.indexed {
            indexes = self
                .first_pending_indexes(active_pods, succeeded_indexes, diff as usize)
                .into_iter()
                .map(Some)
                .collect();
        }
        let (created, error) = self.create_pods(indexes).await;
        Managed {
            active: active + created,
            error,
            ..Managed::default()
        }
    }

    /// Active pods to delete: for Indexed Jobs every pod with an invalid or duplicated index,
    /// then the first of [`removal_order`] until at least `at_least` are chosen.
    fn pods_for_removal<'p>(&self, pods: &[&'p Pod], at_least: usize) -> Vec<&'p Pod> {
        let mut remove: Vec<&Pod> = Vec::new();
        let mut left: Vec<&Pod> = Vec::new();
        if self.indexed {
            let mut by_index: std::collections::BTreeMap<i32, Vec<&Pod>> = Default::default();
            for pod in pods {
                match completion_index(pod).filter(|_| self.valid_index(pod)) {
                    Some(i) => by_index.entry(i).or_default().push(pod),
                    None => remove.push(pod),
                }
            }
            for (_, mut same) in by_index {
                same.sort_by(|a, b| removal_order(a, b));
                let keep = same.pop();
                remove.extend(same);
                left.extend(keep);
            }
        } else {
            left = pods.to_vec();
        }
        if remove.len() < at_least {
            left.sort_by(|a, b| removal_order(a, b));
            let more = at_least - remove.len();
            remove.extend(left.into_iter().take(more));
        }
        remove
    }

    fn first_pending_indexes(
        &self,
        active_pods: &[&Pod],
        succeeded: &BTreeSet<i32>,
        count: usize,
    ) -> Vec<i32> {
        let running: BTreeSet<i32> = active_pods
            .iter()
            .filter_map(|p| completion_index(p))
            .collect();
        (0..self.completions().unwrap_or(0))
            .filter(|i| !succeeded.contains(i) && !running.contains(i))
            .take(count)
            .collect()
    }

    /// Creates pods in slow-start batches (1, 2, 4, ...), stopping at the first failed batch.
    /// Returns how many were created.
    async fn create_pods(&self, indexes: Vec<Option<i32>>) -> (i32, Option<Error>) {
        let mut created = 0;
        let mut rest = indexes.as_slice();
        let mut batch = 1;
        while !rest.is_empty() {
            let (now, later) = rest.split_at(batch.min(rest.len()));
            rest = later;
            let results = futures::future::join_all(now.iter().map(|index| async move {
                let pod = self.pod_from_template(*index);
                self.pods_api.create(&PostParams::default(), &pod).await
            }))
            .await;
            let mut error = None;
            for result in results {
                match result {
                    Ok(pod) => {
                        created += 1;
                        self.state
                            .events
                            .normal(
                                &self.reference,
                                "SuccessfulCreate",
                                format!("Created pod: {}", pod.name_any()),
                            )
                            .await;
                    }
                    Err(e) => {
                        self.state
                            .events
                            .warning(
                                &self.reference,
                                "FailedCreate",
                                format!("Error creating: {e}"),
                            )
                            .await;
                        error = Some(Error::from(e));
                    }
                }
            }
            if error.is_some() {
                return (created, error);
            }
            batch *= 2;
        }
        (created, None)
    }

    fn pod_from_template(&self, index: Option<i32>) -> Pod {
        let template = &self.spec.template;
        let meta = template.metadata.clone().unwrap_or_default();
        let mut labels = meta.labels.unwrap_or_default();
        let mut annotations = meta.annotations.unwrap_or_default();
        let mut finalizers = meta.finalizers.unwrap_or_default();
        if !finalizers.iter().any(|f| f == TRACKING_FINALIZER) {
            finalizers.push(TRACKING_FINALIZER.to_string());
        }
        let mut spec: PodSpec = template.spec.clone().unwrap_or_default();
        let mut generate_name = format!("{}-", self.name);
        if let Some(i) = index {
            annotations.insert(COMPLETION_INDEX.into(), i.to_string());
            labels.insert(COMPLETION_INDEX.into(), i.to_string());
            spec.hostname = Some(format!("{}-{i}", self.name));
            generate_name = format!("{}-{i}-", self.name);
            add_completion_index_env(&mut spec);
        }
        // The API server appends five characters; names stay within 63.
        if generate_name.len() > 58 {
            let mut cut = 58;
            while !generate_name.is_char_boundary(cut) {
                cut -= 1;
            }
            generate_name.truncate(cut);
        }
        Pod {
            metadata: ObjectMeta {
                generate_name: Some(generate_name),
                namespace: self.job.namespace(),
                labels: Some(labels),
                annotations: (!annotations.is_empty()).then_some(annotations),
                finalizers: Some(finalizers),
                owner_references: Some(vec![OwnerReference {
                    api_version: "batch/v1".into(),
                    kind: "Job".into(),
                    name: self.name.clone(),
                    uid: self.uid.clone(),
                    controller: Some(true),
                    block_owner_deletion: Some(true),
                }]),
                ..ObjectMeta::default()
            },
            spec: Some(spec),
            status: None,
        }
    }

    /// Deletes pods (concurrently); with `release`, their tracking finalizer goes first so they
    /// are not counted. Returns (ready pods deleted, pods deleted, first error).
    async fn delete_pods(&self, pods: &[&Pod], release: bool) -> (i32, i32, Option<Error>) {
        let results = futures::future::join_all(pods.iter().map(|pod| async move {
            let name = pod.name_any();
            if release && has_tracking_finalizer(&pod.metadata) {
                match release_finalizer(&self.pods_api, &name).await {
                    Ok(()) => {}
                    Err(e) if support::is_not_found(&e) => {}
                    Err(e) => return Err(e),
                }
            }
            match self.pods_api.delete(&name, &DeleteParams::default()).await {
                Ok(_) => Ok(true),
                Err(e) if support::is_not_found(&e) => Ok(false),
                Err(e) => Err(e),
            }
        }))
        .await;
        let mut deleted_ready = 0;
        let mut deleted = 0;
        let mut error = None;
        for (pod, result) in pods.iter().zip(results) {
            match result {
                Ok(existed) => {
                    deleted += 1;
                    if is_ready(pod) {
                        deleted_ready += 1;
                    }
                    if existed {
                        self.state
                            .events
                            .normal(
                                &self.reference,
                                "SuccessfulDelete",
                                format!("Deleted pod: {}", pod.name_any()),
                            )
                            .await;
                    }
                }
                Err(e) => {
                    self.state
                        .events
                        .warning(
                            &self.reference,
                            "FailedDelete",
                            format!("Error deleting: {e}"),
                        )
                        .await;
                    error = Some(Error::from(e));
                }
            }
        }
        (deleted_ready, deleted, error)
    }

    /// Records terminated pods in `uncountedTerminatedPods`, removes their finalizers, moves
    /// them into the counters, and sets the final condition when nothing is left uncounted or
    /// terminating (upstream `trackJobStatusAndRemoveFinalizers`). Returns a requeue when the
    /// per-sync cap on uncounted pods was hit.
    #[allow(clippy::too_many_arguments)]
    async fn track(
        &mut self,
        pods: &[Pod],
        mut status: JobStatus,
        original: &JobStatus,
        finished: Option<JobCondition>,
        terminating: i32,
        mut succeeded_indexes: BTreeSet<i32>,
        prev_indexes: &BTreeSet<i32>,
        backoff: BackoffRecord,
        now: Timestamp,
    ) -> Result<Option<Duration>, Error> {
        let deleting = self.job.metadata.deletion_timestamp.is_some();
        let mut with_finalizer: BTreeSet<String> = pods
            .iter()
            .filter(|p| has_tracking_finalizer(&p.metadata))
            .map(|p| uid_of(p).to_string())
            .collect();
        count_released(&mut status, &with_finalizer);
        let start = status.uncounted_terminated_pods.clone().unwrap_or_default();
        let was_uncounted_failed: BTreeSet<String> =
            start.failed.iter().flatten().cloned().collect();
        let mut uncounted_succeeded = start.succeeded.unwrap_or_default();
        let mut uncounted_failed = start.failed.unwrap_or_default();
        let mut release: Vec<&Pod> = Vec::new();
        let mut new_indexes = 0;
        let mut reached_max = false;
        let finishing_unsuccessfully = finished
            .as_ref()
            .is_some_and(|c| c.type_ != SUCCESS_CRITERIA_MET);
        for pod in pods.iter().filter(|p| has_tracking_finalizer(&p.metadata)) {
            let pod_failed = is_pod_failed(pod, self.only_replace_failed);
            let pod_succeeded = phase(pod) == "Succeeded";
            if !(deleting || finished.is_some() || pod_succeeded || pod_failed) {
                continue;
            }
            release.push(pod);
            let uid = uid_of(pod).to_string();
            if pod_succeeded && !was_uncounted_failed.contains(&uid) {
                if self.indexed {
                    if let Some(i) = completion_index(pod).filter(|_| self.valid_index(pod)) {
                        if !prev_indexes.contains(&i) {
                            succeeded_indexes.insert(i);
                            new_indexes += 1;
                        }
                    }
                } else if !uncounted_succeeded.contains(&uid) {
                    uncounted_succeeded.push(uid);
                }
            } else if (pod_failed || finishing_unsuccessfully)
                && !uncounted_failed.contains(&uid)
                && self.valid_index(pod)
            {
                uncounted_failed.push(uid);
            }
            if new_indexes + uncounted_succeeded.len() + uncounted_failed.len()
                >= MAX_UNCOUNTED_PODS
            {
                reached_max = true;
                break;
            }
        }
        status.uncounted_terminated_pods =
            Some(k8s_openapi::api::batch::v1::UncountedTerminatedPods {
                succeeded: (!uncounted_succeeded.is_empty()).then_some(uncounted_succeeded),
                failed: (!uncounted_failed.is_empty()).then_some(uncounted_failed),
            });
        if self.indexed {
            status.completed_indexes = Some(indexes::format(&succeeded_indexes));
            status.succeeded = Some(succeeded_indexes.len() as i32);
        }
        // The interim condition is recorded before finalizers go; the final one after.
        let mut finished = finished;
        if let Some(cond) = finished.take() {
            let list = status.conditions.get_or_insert_with(Vec::new);
            let (interim, final_type) = match cond.type_.as_str() {
                FAILURE_TARGET => (true, FAILED),
                SUCCESS_CRITERIA_MET => (true, COMPLETE),
                other => (false, if other == FAILED { FAILED } else { COMPLETE }),
            };
            if interim
                && !list
                    .iter()
                    .any(|c| c.type_ == cond.type_ && c.status == "True")
            {
                list.push(cond.clone());
            }
            finished = Some(new_condition(
                final_type,
                "True",
                cond.reason.as_deref().unwrap_or(""),
                cond.message.as_deref().unwrap_or(""),
                now,
            ));
        }
        if status != *original {
            self.write_status(status.clone()).await?;
        }
        if let Ok(mut records) = self.state.backoff.lock() {
            records.insert(self.uid.clone(), backoff);
        }

        let pods_api = &self.pods_api;
        let results = futures::future::join_all(release.iter().map(|pod| async move {
            match release_finalizer(pods_api, &pod.name_any()).await {
                Ok(()) => Ok(()),
                Err(e) if support::is_not_found(&e) => Ok(()),
                Err(e) => Err(e),
            }
        }))
        .await;
        let mut release_error = None;
        for (pod, result) in release.iter().zip(results) {
            match result {
                Ok(()) => {
                    with_finalizer.remove(uid_of(pod));
                }
                Err(e) => release_error = Some(Error::from(e)),
            }
        }
        let before = status.clone();
        count_released(&mut status, &with_finalizer);
        if let Some(e) = release_error {
            if status != before {
                self.write_status(status).await?;
            }
            return Err(e);
        }
        let finished_now =
            !reached_max && enact_finished(&mut status, finished.as_ref(), terminating, now);
        if status != before {
            self.write_status(status.clone()).await?;
        }
        if finished_now {
            if let Some(cond) = &finished {
                self.record_finished(cond, &status).await;
            }
        }
        Ok(reached_max.then_some(CONFLICT_REQUEUE))
    }

    async fn write_status(&mut self, status: JobStatus) -> Result<(), Error> {
        self.job.status = Some(status);
        self.job = self
            .jobs
            .replace_status(&self.name, &PostParams::default(), &self.job)
            .await?;
        Ok(())
    }

    async fn record_finished(&self, cond: &JobCondition, status: &JobStatus) {
        if cond.type_ == COMPLETE {
            if let Some(c) = self.completions() {
                if status.succeeded.unwrap_or(0) > c {
                    self.state
                        .events
                        .warning(
                            &self.reference,
                            "TooManySucceededPods",
                            "Too many succeeded pods running after completion count reached".into(),
                        )
                        .await;
                }
            }
            self.state
                .events
                .normal(&self.reference, "Completed", "Job completed".into())
                .await;
            tracing::info!(job = %self.name, namespace = ?self.job.namespace(), "job completed");
        } else {
            let reason = cond.reason.clone().unwrap_or_default();
            self.state
                .events
                .warning(
                    &self.reference,
                    &reason,
                    cond.message.clone().unwrap_or_default(),
                )
                .await;
            tracing::info!(job = %self.name, namespace = ?self.job.namespace(), %reason, "job failed");
        }
    }
}

fn min_duration(a: Option<Duration>, b: Option<Duration>) -> Option<Duration> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// Moves pods whose finalizer is gone from `uncountedTerminatedPods` into the counters.
fn count_released(status: &mut JobStatus, with_finalizer: &BTreeSet<String>) -> bool {
    let Some(uncounted) = status.uncounted_terminated_pods.as_mut() else {
        return false;
    };
    let mut changed = false;
    let mut move_counted = |list: &mut Option<Vec<String>>, counter: &mut Option<i32>| {
        let Some(uids) = list.as_mut() else {
            return;
        };
        let before = uids.len();
        uids.retain(|u| with_finalizer.contains(u));
        let counted = (before - uids.len()) as i32;
        if counted > 0 {
            *counter = Some(counter.unwrap_or(0) + counted);
            changed = true;
        }
        if uids.is_empty() {
            *list = None;
        }
    };
    let mut succeeded = status.succeeded;
    let mut failed = status.failed;
    move_counted(&mut uncounted.succeeded, &mut succeeded);
    move_counted(&mut uncounted.failed, &mut failed);
    status.succeeded = succeeded;
    status.failed = failed;
    changed
}

/// Adds the Complete/Failed condition once every terminated pod is counted and none is left
/// terminating (upstream `enactJobFinished`).
fn enact_finished(
    status: &mut JobStatus,
    finished: Option<&JobCondition>,
    terminating: i32,
    now: Timestamp,
) -> bool {
    let Some(cond) = finished else {
        return false;
    };
    let uncounted = status
        .uncounted_terminated_pods
        .as_ref()
        .map(|u| u.succeeded.as_ref().map_or(0, Vec::len) + u.failed.as_ref().map_or(0, Vec::len))
        .unwrap_or(0);
    if uncounted > 0 || terminating > 0 {
        return false;
    }
    let list = status.conditions.get_or_insert_with(Vec::new);
    ensure_condition(
        list,
        &cond.type_,
        "True",
        cond.reason.as_deref().unwrap_or(""),
        cond.message.as_deref().unwrap_or(""),
        now,
    );
    if cond.type_ == COMPLETE {
        status.completion_time = Some(support::time(now));
    }
    true
}

fn add_completion_index_env(spec: &mut PodSpec) {
    let env = || EnvVar {
        name: "JOB_COMPLETION_INDEX".into(),
        value: None,
        value_from: Some(EnvVarSource {
            field_ref: Some(ObjectFieldSelector {
                api_version: None,
                field_path: format!("metadata.annotations['{COMPLETION_INDEX}']"),
            }),
            ..EnvVarSource::default()
        }),
    };
    let containers = spec
        .containers
        .iter_mut()
        .chain(spec.init_containers.iter_mut().flatten());
    for c in containers {
        let list = c.env.get_or_insert_with(Vec::new);
        if !list.iter().any(|e| e.name == "JOB_COMPLETION_INDEX") {
            list.push(env());
        }
    }
}

/// Removes the tracking finalizer with a strategic-merge patch (no resourceVersion: the pod's
/// status may change concurrently).
async fn release_finalizer(pods: &Api<Pod>, name: &str) -> Result<(), kube::Error> {
    let patch = json!({"metadata": {"$deleteFromPrimitiveList/finalizers": [TRACKING_FINALIZER]}});
    pods.patch(name, &PatchParams::default(), &Patch::Strategic(patch))
        .await
        .map(|_| ())
}

// ---- pods whose Job is gone or finished ----

/// Follows every pod change and releases the tracking finalizer of pods whose owning Job is
/// gone, finished, or that have no controller (upstream's orphan queue); otherwise a deleted
/// Job's pods would never go away.
async fn release_orphaned_pods(client: kube::Client, pods: SharedPods, jobs: Store<Job>) {
    let mut stream = std::pin::pin!(pods.touched());
    while let Some(pod) = stream.next().await {
        if !has_tracking_finalizer(&pod.metadata) {
            continue;
        }
        let client = client.clone();
        let jobs = jobs.clone();
        let meta = pod.metadata.clone();
        tokio::spawn(async move { release_if_orphaned(client, jobs, meta).await });
    }
}

async fn release_if_orphaned(client: kube::Client, jobs: Store<Job>, mut meta: ObjectMeta) {
    let Some(namespace) = meta.namespace.clone() else {
        return;
    };
    let name = meta.name.clone().unwrap_or_default();
    let pods: Api<Pod> = Api::namespaced(client.clone(), &namespace);
    let mut delay = Duration::from_millis(500);
    for _ in 0..6 {
        match owner_keeps_finalizer(&client, &jobs, &namespace, &meta).await {
            Ok(true) => return,
            Ok(false) => match release_finalizer(&pods, &name).await {
                Ok(()) => {
                    tracing::debug!(pod = %name, %namespace, "released tracking finalizer of orphaned pod");
                    return;
                }
                Err(e) if support::is_not_found(&e) => return,
                Err(e) => {
                    tracing::debug!(pod = %name, error = %e, "cannot release tracking finalizer")
                }
            },
            Err(e) => tracing::debug!(pod = %name, error = %e, "cannot look up the pod's job"),
        }
        tokio::time::sleep(delay).await;
        delay *= 2;
        match pods.get_metadata_opt(&name).await {
            Ok(Some(fresh)) if has_tracking_finalizer(&fresh.metadata) => meta = fresh.metadata,
            Ok(_) => return,
            Err(_) => {}
        }
    }
}

/// Whether the pod's finalizer is still the business of a running Job (or of something that
/// is not a Job at all).
async fn owner_keeps_finalizer(
    client: &kube::Client,
    jobs: &Store<Job>,
    namespace: &str,
    meta: &ObjectMeta,
) -> Result<bool, kube::Error> {
    let Some(owner) = controller_uid(meta) else {
        return Ok(false);
    };
    if owner.kind != "Job" || owner.api_version != "batch/v1" {
        return Ok(true);
    }
    let running = |job: &Job| {
        job.uid().as_deref() == Some(owner.uid.as_str()) && finished_condition(job).is_none()
    };
    if let Some(job) = jobs.get(&ObjectRef::new(&owner.name).within(namespace)) {
        if running(&job) {
            return Ok(true);
        }
    }
    // The cache may lag: confirm with the API before releasing.
    let api: Api<Job> = Api::namespaced(client.clone(), namespace);
    Ok(api
        .get_opt(&owner.name)
        .await?
        .is_some_and(|job| running(&job)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{
        ContainerState, ContainerStateTerminated, ContainerStatus, PodStatus,
    };
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    fn failed_pod(at: &str) -> Pod {
        Pod {
            status: Some(PodStatus {
                phase: Some("Failed".into()),
                container_statuses: Some(vec![ContainerStatus {
                    state: Some(ContainerState {
                        terminated: Some(ContainerStateTerminated {
                            finished_at: Some(Time(at.parse().unwrap())),
                            ..Default::default()
                        }),
                        ..Default::default()
                    }),
                    ..Default::default()
                }]),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn backoff_doubles_per_consecutive_failure() {
        let t0: Timestamp = "2024-05-01T10:00:00Z".parse().unwrap();
        let p1 = failed_pod("2024-05-01T10:00:00Z");
        let record = BackoffRecord::default().with(&[], &[&p1]);
        assert_eq!(record.failures_after_last_success, 1);
        assert_eq!(record.remaining(t0), Duration::from_secs(10));
        assert_eq!(
            record.remaining(t0 + SignedDuration::from_secs(4)),
            Duration::from_secs(6)
        );
        let p2 = failed_pod("2024-05-01T10:00:30Z");
        let record = record.with(&[], &[&p2]);
        assert_eq!(record.failures_after_last_success, 2);
        assert_eq!(
            record.remaining(t0 + SignedDuration::from_secs(30)),
            Duration::from_secs(20)
        );
        let mut many = record;
        many.failures_after_last_success = 12;
        assert_eq!(
            many.remaining(t0 + SignedDuration::from_secs(30)),
            MAX_POD_FAILURE_BACKOFF
        );
        // A success resets the count.
        let mut ok = failed_pod("2024-05-01T10:01:00Z");
        ok.status.as_mut().unwrap().phase = Some("Succeeded".into());
        let reset = record.with(&[&ok], &[]);
        assert_eq!(reset, BackoffRecord::default());
    }

    #[test]
    fn conditions_update_only_on_change() {
        let now: Timestamp = "2024-05-01T10:00:00Z".parse().unwrap();
        let mut list = Vec::new();
        assert!(!ensure_condition(
            &mut list,
            SUSPENDED,
            "False",
            "JobResumed",
            "Job resumed",
            now
        ));
        assert!(list.is_empty());
        assert!(ensure_condition(
            &mut list,
            SUSPENDED,
            "True",
            "JobSuspended",
            "Job suspended",
            now
        ));
        assert!(!ensure_condition(
            &mut list,
            SUSPENDED,
            "True",
            "JobSuspended",
            "Job suspended",
            now
        ));
        assert!(ensure_condition(
            &mut list,
            SUSPENDED,
            "False",
            "JobResumed",
            "Job resumed",
            now
        ));
        assert_eq!(list.len(), 1);
        assert_eq!(list[0].status, "False");
    }

    #[test]
    fn released_pods_move_into_the_counters() {
        let mut status = JobStatus {
            succeeded: Some(1),
            uncounted_terminated_pods: Some(k8s_openapi::api::batch::v1::UncountedTerminatedPods {
                succeeded: Some(vec!["a".into(), "b".into()]),
                failed: Some(vec!["c".into()]),
            }),
            ..Default::default()
        };
        let still: BTreeSet<String> = ["b".to_string()].into();
        assert!(count_released(&mut status, &still));
        assert_eq!(status.succeeded, Some(2));
        assert_eq!(status.failed, Some(1));
        let u = status.uncounted_terminated_pods.unwrap();
        assert_eq!(u.succeeded, Some(vec!["b".to_string()]));
        assert_eq!(u.failed, None);
    }
}
