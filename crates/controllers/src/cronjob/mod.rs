//! CronJob controller (upstream `pkg/controller/cronjob`, the v2 controller): creates a Job
//! named `<cronjob>-<scheduled time in minutes since the epoch>` for each scheduled time, in the
//! CronJob's `timeZone` (else the controller's local zone), honouring `startingDeadlineSeconds`,
//! `concurrencyPolicy` and `suspend`; keeps `status.active`, `lastScheduleTime` and
//! `lastSuccessfulTime`; deletes the oldest finished Jobs beyond the history limits. Each
//! CronJob is requeued for exactly its next scheduled time (plus 100 ms), never polled.

pub mod schedule;

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use jiff::tz::TimeZone;
use jiff::{SignedDuration, Timestamp};
use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::api::{Api, DeleteParams, ListParams, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::watcher;
use kube::{Resource, ResourceExt};

use self::schedule::Schedule;
use crate::job::support::{self, Events};
use crate::job::{finished_condition, COMPLETE};
use crate::{Context, Error, ERROR_REQUEUE};

/// Annotation with the scheduled time of a Job a CronJob created (RFC 3339, in its zone).
pub const SCHEDULED_TIMESTAMP: &str = "batch.kubernetes.io/cronjob-scheduled-timestamp";
/// Padding after the scheduled time before a CronJob is looked at again (upstream 100 ms).
const NEXT_SCHEDULE_DELTA: Duration = Duration::from_millis(100);
/// More missed start times than this only get a TooManyMissedTimes warning.
const MANY_MISSED: i64 = 100;

struct State {
    client: kube::Client,
    events: Events,
    /// The zone of schedules without `timeZone`: the controller process's local zone.
    local: TimeZone,
}

pub async fn run(ctx: Context) {
    let client = ctx.client;
    let cronjobs: Api<CronJob> = Api::all(client.clone());
    let jobs: Api<Job> = Api::all(client.clone());
    let state = Arc::new(State {
        events: Events::new(client.clone(), "cronjob-controller"),
        client,
        local: TimeZone::system(),
    });
    Controller::new(cronjobs, watcher::Config::default())
        .owns(jobs, watcher::Config::default())
        .run(reconcile, error_policy, state)
        .for_each(|result| {
            if let Err(e) = result {
                tracing::debug!(error = %e, "cronjob controller");
            }
            futures::future::ready(())
        })
        .await;
}

fn error_policy(cj: Arc<CronJob>, err: &Error, _state: Arc<State>) -> Action {
    if matches!(err, Error::Api(e) if support::is_conflict(e)) {
        return Action::requeue(Duration::from_millis(100));
    }
    tracing::warn!(cronjob = %cj.name_any(), namespace = ?cj.namespace(), error = %err, "cronjob reconcile failed");
    Action::requeue(ERROR_REQUEUE)
}

async fn reconcile(cached: Arc<CronJob>, state: Arc<State>) -> Result<Action, Error> {
    let Some(namespace) = cached.namespace() else {
        return Ok(Action::await_change());
    };
    let cronjobs: Api<CronJob> = Api::namespaced(state.client.clone(), &namespace);
    let jobs: Api<Job> = Api::namespaced(state.client.clone(), &namespace);
    // The cache may not have our last status write yet: work from the current object.
    let Some(mut cj) = cronjobs.get_opt(&cached.name_any()).await? else {
        return Ok(Action::await_change());
    };
    let uid = cj.uid().unwrap_or_default();
    let children: Vec<Job> = jobs
        .list(&ListParams::default())
        .await?
        .items
        .into_iter()
        .filter(|j| {
            j.metadata
                .owner_references
                .iter()
                .flatten()
                .any(|r| r.controller == Some(true) && r.kind == "CronJob" && r.uid == uid)
        })
        .collect();
    let original = cj.status.clone();
    let mut sync = Sync {
        state: &state,
        jobs,
        reference: cj.object_ref(&()),
    };
    sync.cleanup_finished(&mut cj, &children).await;
    let result = sync.sync(&mut cj, &children, support::now()).await;
    if cj.status != original {
        cronjobs
            .replace_status(&cj.name_any(), &PostParams::default(), &cj)
            .await?;
    }
    Ok(match result? {
        Some(after) => Action::requeue(after),
        None => Action::await_change(),
    })
}

struct Sync<'a> {
    state: &'a State,
    jobs: Api<Job>,
    reference: ObjectReference,
}

fn active_list(cj: &mut CronJob) -> &mut Vec<ObjectReference> {
    cj.status
        .get_or_insert_with(Default::default)
        .active
        .get_or_insert_with(Vec::new)
}

fn in_active_list(cj: &CronJob, uid: &str) -> bool {
    cj.status
        .as_ref()
        .and_then(|s| s.active.as_ref())
        .is_some_and(|a| a.iter().any(|r| r.uid.as_deref() == Some(uid)))
}

fn remove_from_active(cj: &mut CronJob, uid: &str) {
    let active = active_list(cj);
    active.retain(|r| r.uid.as_deref() != Some(uid));
    if active.is_empty() {
        if let Some(status) = cj.status.as_mut() {
            status.active = None;
        }
    }
}

fn job_name(cj: &CronJob, scheduled: Timestamp) -> String {
    format!("{}-{}", cj.name_any(), scheduled.as_second().div_euclid(60))
}

fn job_reference(job: &Job) -> ObjectReference {
    ObjectReference {
        api_version: Some("batch/v1".into()),
        kind: Some("Job".into()),
        name: job.metadata.name.clone(),
        namespace: job.metadata.namespace.clone(),
        uid: job.metadata.uid.clone(),
        resource_version: job.metadata.resource_version.clone(),
        ..ObjectReference::default()
    }
}

/// `time.RFC3339` as Go prints it: `Z` for a zero offset.
fn rfc3339(t: Timestamp, tz: &TimeZone) -> String {
    let zoned = t.to_zoned(tz.clone());
    if zoned.offset().seconds() == 0 {
        zoned.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
    } else {
        zoned.strftime("%Y-%m-%dT%H:%M:%S%:z").to_string()
    }
}

/// How many start times were missed, as upstream classifies them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Missed {
    None,
    Few,
    Many,
}

/// Upstream `mostRecentScheduleTime`: (the earliest time considered, the most recent scheduled
/// time not after `now` if any, how many were missed). Err when the schedule never fires.
fn most_recent_schedule_time(
    cj: &CronJob,
    now: Timestamp,
    schedule: &Schedule,
    tz: &TimeZone,
    include_starting_deadline: bool,
) -> Result<(Timestamp, Option<Timestamp>, Missed), String> {
    let mut earliest = cj
        .status
        .as_ref()
        .and_then(|s| s.last_schedule_time.as_ref())
        .or(cj.metadata.creation_timestamp.as_ref())
        .map(|t| t.0)
        .unwrap_or(now);
    if include_starting_deadline {
        if let Some(deadline) = cj.spec.as_ref().and_then(|s| s.starting_deadline_seconds) {
            let scheduling_deadline = now - SignedDuration::from_secs(deadline);
            if scheduling_deadline > earliest {
                earliest = scheduling_deadline;
            }
        }
    }
    let never = || "the schedule has no next activation".to_string();
    let t1 = schedule.next(earliest, tz).ok_or_else(never)?;
    let t2 = schedule.next(t1, tz).ok_or_else(never)?;
    if now < t1 {
        return Ok((earliest, None, Missed::None));
    }
    if now < t2 {
        return Ok((earliest, Some(t1), Missed::None));
    }
    let between = t2.duration_since(t1).as_secs();
    if between < 1 {
        return Err("time difference between two schedules is less than 1 second".into());
    }
    let elapsed = now.duration_since(t1).as_secs();
    let missed = elapsed / between + 1;
    // Start one interval before the estimate and walk forward: exact for irregular schedules.
    let mut t = t1 + SignedDuration::from_secs((missed - 2) * between);
    let mut most_recent = None;
    while let Some(next) = schedule.next(t, tz) {
        if next > now {
            break;
        }
        most_recent = Some(next);
        t = next;
    }
    let missed = if missed > MANY_MISSED {
        Missed::Many
    } else if missed > 0 {
        Missed::Few
    } else {
        Missed::None
    };
    Ok((earliest, most_recent, missed))
}

/// Upstream `nextScheduleTimeDuration`: how long until the next scheduled time after the most
/// recent one (plus 100 ms).
fn next_schedule_delay(
    cj: &CronJob,
    now: Timestamp,
    schedule: &Schedule,
    tz: &TimeZone,
) -> Option<Duration> {
    let from = match most_recent_schedule_time(cj, now, schedule, tz, false) {
        Err(_) => now,
        Ok((_, Some(recent), _)) => recent,
        Ok((earliest, None, Missed::None)) => earliest,
        Ok((_, None, _)) => now,
    };
    let next = schedule.next(from, tz)?;
    Some(support::until(now, next) + NEXT_SCHEDULE_DELTA)
}

impl Sync<'_> {
    /// Deletes the oldest finished Jobs beyond the history limits (upstream
    /// `cleanupFinishedJobs`).
    async fn cleanup_finished(&self, cj: &mut CronJob, children: &[Job]) {
        let spec = cj.spec.clone().unwrap_or_default();
        let mut succeeded: Vec<&Job> = Vec::new();
        let mut failed: Vec<&Job> = Vec::new();
        for job in children {
            match finished_condition(job) {
                Some(c) if c.type_ == COMPLETE => succeeded.push(job),
                Some(_) => failed.push(job),
                None => {}
            }
        }
        if let Some(limit) = spec.successful_jobs_history_limit {
            self.remove_oldest(cj, succeeded, limit).await;
        }
        if let Some(limit) = spec.failed_jobs_history_limit {
            self.remove_oldest(cj, failed, limit).await;
        }
    }

    async fn remove_oldest(&self, cj: &mut CronJob, mut jobs: Vec<&Job>, limit: i32) {
        let excess = jobs.len().saturating_sub(limit.max(0) as usize);
        if excess == 0 {
            return;
        }
        // Oldest start first; jobs that never started last; names break ties.
        jobs.sort_by(|a, b| {
            let start = |j: &Job| {
                j.status
                    .as_ref()
                    .and_then(|s| s.start_time.as_ref())
                    .map(|t| t.0)
            };
            match (start(a), start(b)) {
                (Some(x), Some(y)) if x != y => x.cmp(&y),
                (Some(_), None) => std::cmp::Ordering::Less,
                (None, Some(_)) => std::cmp::Ordering::Greater,
                _ => a.name_any().cmp(&b.name_any()),
            }
        });
        for job in jobs.into_iter().take(excess) {
            self.delete_job(cj, job).await;
        }
    }

    /// Deletes a Job (background propagation) and drops it from the active list.
    async fn delete_job(&self, cj: &mut CronJob, job: &Job) -> bool {
        match self
            .jobs
            .delete(&job.name_any(), &DeleteParams::background())
            .await
        {
            Ok(_) => {}
            Err(e) if support::is_not_found(&e) => {
                // Someone else deleted it: nothing to report.
                remove_from_active(cj, job.uid().as_deref().unwrap_or(""));
                return true;
            }
            Err(e) => {
                self.state
                    .events
                    .warning(&self.reference, "FailedDelete", format!("Deleted job: {e}"))
                    .await;
                return false;
            }
        }
        remove_from_active(cj, job.uid().as_deref().unwrap_or(""));
        self.state
            .events
            .normal(
                &self.reference,
                "SuccessfulDelete",
                format!("Deleted job {}", job.name_any()),
            )
            .await;
        true
    }

    /// Upstream `syncCronJob`: reconcile the active list with the Jobs, then start the Job of
    /// the most recent unmet scheduled time. Returns when to look again.
    async fn sync(
        &mut self,
        cj: &mut CronJob,
        children: &[Job],
        now: Timestamp,
    ) -> Result<Option<Duration>, Error> {
        for job in children {
            let uid = job.uid().unwrap_or_default();
            let found = in_active_list(cj, &uid);
            let finished = finished_condition(job);
            if !found && finished.is_none() {
                self.state
                    .events
                    .warning(
                        &self.reference,
                        "UnexpectedJob",
                        format!(
                            "Saw a job that the controller did not create or forgot: {}",
                            job.name_any()
                        ),
                    )
                    .await;
            } else if let (true, Some(cond)) = (found, finished) {
                remove_from_active(cj, &uid);
                self.state
                    .events
                    .normal(
                        &self.reference,
                        "SawCompletedJob",
                        format!(
                            "Saw completed job: {}, condition: {}",
                            job.name_any(),
                            cond.type_
                        ),
                    )
                    .await;
            }
            if finished.is_some_and(|c| c.type_ == COMPLETE) {
                let completed = job.status.as_ref().and_then(|s| s.completion_time.clone());
                let status = cj.status.get_or_insert_with(Default::default);
                if let Some(t) = completed {
                    if status
                        .last_successful_time
                        .as_ref()
                        .is_none_or(|last| t.0 > last.0)
                    {
                        status.last_successful_time = Some(t);
                    }
                }
            }
        }
        // Active entries whose Job is gone.
        let listed: Vec<String> = children.iter().filter_map(|j| j.uid()).collect();
        let stale: Vec<ObjectReference> = cj
            .status
            .as_ref()
            .and_then(|s| s.active.clone())
            .unwrap_or_default()
            .into_iter()
            .filter(|r| !listed.iter().any(|u| Some(u) == r.uid.as_ref()))
            .collect();
        for r in stale {
            let name = r.name.clone().unwrap_or_default();
            let exists = self
                .jobs
                .get_opt(&name)
                .await?
                .is_some_and(|j| j.metadata.uid == r.uid);
            if !exists {
                self.state
                    .events
                    .normal(
                        &self.reference,
                        "MissingJob",
                        format!("Active job went missing: {name}"),
                    )
                    .await;
                remove_from_active(cj, r.uid.as_deref().unwrap_or(""));
            }
        }

        if cj.metadata.deletion_timestamp.is_some() {
            return Ok(None);
        }
        let spec = cj.spec.clone().unwrap_or_default();
        let mut zone = self.state.local.clone();
        let mut annotation_zone = TimeZone::UTC;
        if let Some(name) = spec.time_zone.as_deref() {
            match TimeZone::get(name) {
                Ok(tz) => {
                    zone = tz.clone();
                    annotation_zone = tz;
                }
                Err(e) => {
                    self.state
                        .events
                        .warning(
                            &self.reference,
                            "UnknownTimeZone",
                            format!("invalid timeZone: {name:?}: {e}"),
                        )
                        .await;
                    return Ok(None);
                }
            }
        }
        if spec.suspend == Some(true) {
            return Ok(None);
        }
        if spec.schedule.contains("TZ") {
            self.state
                .events
                .warning(
                    &self.reference,
                    "UnsupportedSchedule",
                    format!(
                        "CRON_TZ or TZ used in schedule {:?} is not officially supported, see https://kubernetes.io/docs/concepts/workloads/controllers/cron-jobs/ for more details",
                        spec.schedule
                    ),
                )
                .await;
        }
        let schedule = match Schedule::parse(&spec.schedule) {
            Ok(s) => s,
            Err(e) => {
                self.state
                    .events
                    .warning(
                        &self.reference,
                        "UnparseableSchedule",
                        format!("unparseable schedule: {:?} : {e}", spec.schedule),
                    )
                    .await;
                return Ok(None);
            }
        };
        let zone = schedule.zone(&zone).clone();

        let scheduled = match most_recent_schedule_time(cj, now, &schedule, &zone, true) {
            Err(e) => {
                self.state
                    .events
                    .warning(
                        &self.reference,
                        "InvalidSchedule",
                        format!("invalid schedule: {} : {e}", spec.schedule),
                    )
                    .await;
                return Ok(None);
            }
            Ok((_, None, _)) => {
                return Ok(next_schedule_delay(cj, now, &schedule, &zone));
            }
            Ok((_, Some(t), missed)) => {
                if missed == Missed::Many {
                    self.state
                        .events
                        .warning(
                            &self.reference,
                            "TooManyMissedTimes",
                            "too many missed start times. Set or decrease .spec.startingDeadlineSeconds or check clock skew".into(),
                        )
                        .await;
                    tracing::info!(cronjob = %cj.name_any(), "too many missed times");
                }
                t
            }
        };
        let next = |cj: &CronJob| next_schedule_delay(cj, now, &schedule, &zone);

        if let Some(deadline) = spec.starting_deadline_seconds {
            if scheduled + SignedDuration::from_secs(deadline) < now {
                let missed_at = scheduled
                    .to_zoned(TimeZone::UTC)
                    .strftime("%a, %d %b %Y %H:%M:%S +0000");
                self.state
                    .events
                    .warning(
                        &self.reference,
                        "MissSchedule",
                        format!("Missed scheduled time to start a job: {missed_at}"),
                    )
                    .await;
                return Ok(next(cj));
            }
        }
        let name = job_name(cj, scheduled);
        let status = cj.status.clone().unwrap_or_default();
        let already = status
            .active
            .iter()
            .flatten()
            .any(|r| r.name.as_deref() == Some(name.as_str()))
            || status.last_schedule_time.as_ref().map(|t| t.0) == Some(scheduled);
        if already {
            return Ok(next(cj));
        }
        let policy = spec.concurrency_policy.as_deref().unwrap_or("Allow");
        if policy == "Forbid" && status.active.as_ref().is_some_and(|a| !a.is_empty()) {
            self.state
                .events
                .normal(
                    &self.reference,
                    "JobAlreadyActive",
                    "Not starting job because prior execution is running and concurrency policy is Forbid".into(),
                )
                .await;
            return Ok(next(cj));
        }
        if policy == "Replace" {
            for r in status.active.clone().unwrap_or_default() {
                let job_name = r.name.clone().unwrap_or_default();
                let job = match self.jobs.get_opt(&job_name).await {
                    Ok(Some(job)) => job,
                    Ok(None) => {
                        remove_from_active(cj, r.uid.as_deref().unwrap_or(""));
                        continue;
                    }
                    Err(e) => {
                        self.state
                            .events
                            .warning(&self.reference, "FailedGet", format!("Get job: {e}"))
                            .await;
                        return Err(e.into());
                    }
                };
                if !self.delete_job(cj, &job).await {
                    return Err(Error::Invalid(format!("could not replace job {job_name}")));
                }
            }
        }

        let request = job_from_template(cj, scheduled, &annotation_zone);
        let created = match self.jobs.create(&PostParams::default(), &request).await {
            Ok(job) => {
                self.state
                    .events
                    .normal(
                        &self.reference,
                        "SuccessfulCreate",
                        format!("Created job {name}"),
                    )
                    .await;
                tracing::info!(cronjob = %cj.name_any(), job = %name, "created job");
                job
            }
            Err(e) if support::is_already_exists(&e) => {
                let job = self.jobs.get(&name).await?;
                let ours = job.metadata.owner_references.iter().flatten().any(|r| {
                    r.controller == Some(true) && Some(&r.uid) == cj.metadata.uid.as_ref()
                });
                if !ours || in_active_list(cj, job.uid().as_deref().unwrap_or("")) {
                    return Ok(None);
                }
                job
            }
            Err(e) => {
                self.state
                    .events
                    .warning(
                        &self.reference,
                        "FailedCreate",
                        format!("Error creating job: {e}"),
                    )
                    .await;
                return Err(e.into());
            }
        };
        active_list(cj).push(job_reference(&created));
        cj.status
            .get_or_insert_with(Default::default)
            .last_schedule_time = Some(support::time(scheduled));
        Ok(next(cj))
    }
}

/// The Job for one scheduled time (upstream `getJobFromTemplate2`).
fn job_from_template(cj: &CronJob, scheduled: Timestamp, annotation_zone: &TimeZone) -> Job {
    let template = cj
        .spec
        .as_ref()
        .map(|s| s.job_template.clone())
        .unwrap_or_default();
    let meta = template.metadata.unwrap_or_default();
    let mut annotations = meta.annotations.unwrap_or_default();
    annotations.insert(
        SCHEDULED_TIMESTAMP.into(),
        rfc3339(scheduled, annotation_zone),
    );
    Job {
        metadata: ObjectMeta {
            name: Some(job_name(cj, scheduled)),
            namespace: cj.namespace(),
            labels: meta.labels,
            annotations: Some(annotations),
            owner_references: Some(vec![OwnerReference {
                api_version: "batch/v1".into(),
                kind: "CronJob".into(),
                name: cj.name_any(),
                uid: cj.uid().unwrap_or_default(),
                controller: Some(true),
                block_owner_deletion: Some(true),
            }]),
            ..ObjectMeta::default()
        },
        spec: template.spec,
        status: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::batch::v1::{CronJobSpec, CronJobStatus};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn cronjob(created: &str, last: Option<&str>, deadline: Option<i64>) -> CronJob {
        CronJob {
            metadata: ObjectMeta {
                name: Some("cj".into()),
                creation_timestamp: Some(Time(ts(created))),
                ..Default::default()
            },
            spec: Some(CronJobSpec {
                schedule: "*/1 * * * *".into(),
                starting_deadline_seconds: deadline,
                ..Default::default()
            }),
            status: Some(CronJobStatus {
                last_schedule_time: last.map(|l| Time(ts(l))),
                ..Default::default()
            }),
        }
    }

    #[test]
    fn most_recent_unmet_time() {
        let s = Schedule::parse("*/1 * * * *").unwrap();
        let utc = TimeZone::UTC;
        let cj = cronjob("2024-05-01T10:00:30Z", None, None);
        // Nothing due yet.
        let (_, t, m) =
            most_recent_schedule_time(&cj, ts("2024-05-01T10:00:59Z"), &s, &utc, true).unwrap();
        assert_eq!((t, m), (None, Missed::None));
        // Exactly one due.
        let (_, t, m) =
            most_recent_schedule_time(&cj, ts("2024-05-01T10:01:00.1Z"), &s, &utc, true).unwrap();
        assert_eq!((t, m), (Some(ts("2024-05-01T10:01:00Z")), Missed::None));
        // Several missed: the most recent one counts.
        let (_, t, m) =
            most_recent_schedule_time(&cj, ts("2024-05-01T10:05:30Z"), &s, &utc, true).unwrap();
        assert_eq!((t, m), (Some(ts("2024-05-01T10:05:00Z")), Missed::Few));
        // Hours missed: many.
        let (_, t, m) =
            most_recent_schedule_time(&cj, ts("2024-05-01T13:00:30Z"), &s, &utc, true).unwrap();
        assert_eq!((t, m), (Some(ts("2024-05-01T13:00:00Z")), Missed::Many));
        // A starting deadline bounds how far back to look.
        let cj = cronjob("2024-05-01T10:00:30Z", None, Some(90));
        let (earliest, t, m) =
            most_recent_schedule_time(&cj, ts("2024-05-01T13:00:30Z"), &s, &utc, true).unwrap();
        assert_eq!(earliest, ts("2024-05-01T12:59:00Z"));
        assert_eq!((t, m), (Some(ts("2024-05-01T13:00:00Z")), Missed::None));
        // lastScheduleTime is where counting starts.
        let cj = cronjob("2024-05-01T10:00:30Z", Some("2024-05-01T10:04:00Z"), None);
        let (_, t, _) =
            most_recent_schedule_time(&cj, ts("2024-05-01T10:04:30Z"), &s, &utc, true).unwrap();
        assert_eq!(t, None);
    }

    #[test]
    fn irregular_schedules_find_the_exact_most_recent_time() {
        // 06:30, 10:30, 14:30 on weekdays: the interval estimate is wrong across nights.
        let s = Schedule::parse("30 6-16/4 * * 1-5").unwrap();
        let utc = TimeZone::UTC;
        let cj = cronjob("2024-05-03T07:00:00Z", None, None); // Friday
        let (_, t, m) =
            most_recent_schedule_time(&cj, ts("2024-05-06T11:00:00Z"), &s, &utc, true).unwrap();
        assert_eq!(t, Some(ts("2024-05-06T10:30:00Z")));
        assert_eq!(m, Missed::Few);
    }

    #[test]
    fn never_firing_schedule_is_an_error() {
        let s = Schedule::parse("0 0 30 2 *").unwrap();
        let cj = cronjob("2024-05-01T10:00:00Z", None, None);
        assert!(most_recent_schedule_time(
            &cj,
            ts("2024-06-01T00:00:00Z"),
            &s,
            &TimeZone::UTC,
            true
        )
        .is_err());
    }

    #[test]
    fn requeue_lands_just_after_the_next_time() {
        let s = Schedule::parse("*/5 * * * *").unwrap();
        let cj = cronjob("2024-05-01T10:00:30Z", Some("2024-05-01T10:05:00Z"), None);
        let d = next_schedule_delay(&cj, ts("2024-05-01T10:06:00Z"), &s, &TimeZone::UTC).unwrap();
        assert_eq!(d, Duration::from_secs(240) + NEXT_SCHEDULE_DELTA);
    }

    #[test]
    fn job_names_and_annotations() {
        let cj = cronjob("2024-05-01T10:00:30Z", None, None);
        let t = ts("2024-05-01T10:01:00Z");
        assert_eq!(job_name(&cj, t), format!("cj-{}", t.as_second() / 60));
        assert_eq!(rfc3339(t, &TimeZone::UTC), "2024-05-01T10:01:00Z");
        let tokyo = TimeZone::get("Asia/Tokyo").unwrap();
        assert_eq!(rfc3339(t, &tokyo), "2024-05-01T19:01:00+09:00");
        let job = job_from_template(&cj, t, &TimeZone::UTC);
        assert_eq!(
            job.metadata.annotations.unwrap()[SCHEDULED_TIMESTAMP],
            "2024-05-01T10:01:00Z"
        );
        assert_eq!(job.metadata.owner_references.unwrap()[0].kind, "CronJob");
    }
}
