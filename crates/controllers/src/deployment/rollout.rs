//! One sync of one Deployment (upstream `syncDeployment` with `sync.go`, `rolling.go`,
//! `recreate.go` and `progress.go`). A [`Rollout`] holds the Deployment as last read or written
//! and every ReplicaSet it controls, kept current as they are written, so each step decides on
//! the latest state it knows and every write carries the resourceVersion it was based on.

use std::collections::HashMap;
use std::time::Duration;

use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet, ReplicaSetSpec};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::core::Selector;
use kube::ResourceExt;
use serde_json::json;

use super::util::{self, *};
use super::State;
use crate::replicaset::events::{NORMAL, WARNING};
use crate::replicaset::ownership::{self, classify, controller_of, controller_ref, Claim};
use crate::replicaset::pods;
use crate::Error;

/// Pods of the Deployment grouped by the uid of the ReplicaSet controlling them.
type PodMap = HashMap<String, Vec<Pod>>;

pub(super) struct Rollout<'a> {
    state: &'a State,
    d: Deployment,
    deployments: Api<Deployment>,
    replica_sets: Api<ReplicaSet>,
    /// Every ReplicaSet this Deployment controls.
    rss: Vec<ReplicaSet>,
    /// When to look at the Deployment again without a change (progress deadline).
    pub(super) requeue: Option<Duration>,
}

impl<'a> Rollout<'a> {
    pub(super) fn new(state: &'a State, d: Deployment) -> Self {
        let ns = d.namespace().unwrap_or_default();
        Rollout {
            state,
            deployments: Api::namespaced(state.client.clone(), &ns),
            replica_sets: Api::namespaced(state.client.clone(), &ns),
            d,
            rss: Vec::new(),
            requeue: None,
        }
    }

    fn name(&self) -> String {
        self.d.name_any()
    }

    /// Upstream `syncDeployment`.
    pub(super) async fn sync_deployment(&mut self) -> Result<(), Error> {
        let selector = self
            .d
            .spec
            .as_ref()
            .map(|s| s.selector.clone())
            .unwrap_or_default();
        let selector: Selector = selector
            .try_into()
            .map_err(|e| Error::Invalid(format!("invalid selector: {e}")))?;
        if selector.selects_all() {
            self.state.recorder.record(
                &self.d,
                WARNING,
                "SelectingAll",
                "This deployment is selecting all pods. A non-empty selector is required.".into(),
            );
            let status = self.d.status.get_or_insert_with(Default::default);
            if status.observed_generation < self.d.metadata.generation {
                status.observed_generation = self.d.metadata.generation;
                self.update_status().await?;
            }
            return Ok(());
        }
        self.rss = self.claim_replica_sets(&selector).await?;
        if self.d.metadata.deletion_timestamp.is_some() {
            return self.sync_status_only().await;
        }
        self.check_paused_conditions().await?;
        if is_paused(&self.d) {
            return self.sync().await;
        }
        if self.is_scaling_event().await? {
            return self.sync().await;
        }
        if is_recreate(&self.d) {
            let pod_map = self.pod_map(&selector).await?;
            self.rollout_recreate(&pod_map).await
        } else {
            self.rollout_rolling().await
        }
    }

    // ---- ReplicaSets ------------------------------------------------------------------------

    /// The ReplicaSets of the namespace this Deployment controls, after adopting orphans its
    /// selector matches and releasing its own that no longer match.
    async fn claim_replica_sets(&self, selector: &Selector) -> Result<Vec<ReplicaSet>, Error> {
        let uid = self.d.uid().unwrap_or_default();
        let deleting = self.d.metadata.deletion_timestamp.is_some();
        let mut owned = Vec::new();
        for rs in self.replica_sets.list(&ListParams::default()).await?.items {
            match classify(&uid, deleting, selector, &rs.metadata) {
                Claim::Owned => owned.push(rs),
                Claim::Ignore => {}
                Claim::Adopt => {
                    tracing::info!(deployment = %self.name(), replicaset = %rs.name_any(), "adopting replicaset");
                    let owner = controller_ref(&self.d);
                    let rs_uid = rs.uid().unwrap_or_default();
                    if let Some(adopted) =
                        ownership::adopt(&self.replica_sets, &rs.name_any(), &rs_uid, &owner)
                            .await?
                    {
                        owned.push(adopted);
                    }
                }
                Claim::Release => {
                    tracing::info!(deployment = %self.name(), replicaset = %rs.name_any(), "releasing replicaset");
                    let rs_uid = rs.uid().unwrap_or_default();
                    ownership::release(&self.replica_sets, &rs.name_any(), &rs_uid, &uid).await?;
                }
            }
        }
        Ok(owned)
    }

    /// Remember a ReplicaSet as written.
    fn store(&mut self, rs: &ReplicaSet) {
        match self.rss.iter_mut().find(|r| r.uid() == rs.uid()) {
            Some(slot) => *slot = rs.clone(),
            None => self.rss.push(rs.clone()),
        }
    }

    /// (the new ReplicaSet, the old ones): the new one is the oldest whose template equals the
    /// Deployment's (upstream `FindNewReplicaSet`/`FindOldReplicaSets`).
    fn split(&self) -> (Option<ReplicaSet>, Vec<ReplicaSet>) {
        let mut sorted = self.rss.clone();
        sorted.sort_by(by_creation);
        let template = template(&self.d);
        let position = sorted.iter().position(|rs| {
            rs.spec
                .as_ref()
                .and_then(|s| s.template.as_ref())
                .is_some_and(|t| equal_ignore_hash(t, &template))
        });
        let new = position.map(|i| sorted.remove(i));
        (new, sorted)
    }

    /// The current versions of `new` and the others.
    fn refresh(&self, new: Option<&ReplicaSet>) -> (Option<ReplicaSet>, Vec<ReplicaSet>) {
        let new_uid = new.and_then(|n| n.uid());
        let fresh_new = new_uid.as_ref().and_then(|u| {
            self.rss
                .iter()
                .find(|r| r.uid().as_ref() == Some(u))
                .cloned()
        });
        let old = self
            .rss
            .iter()
            .filter(|r| new_uid.is_none() || r.uid() != new_uid)
            .cloned()
            .collect();
        (fresh_new, old)
    }

    /// Upstream `getAllReplicaSetsAndSyncRevision`.
    async fn all_and_sync_revision(
        &mut self,
        create: bool,
    ) -> Result<(Option<ReplicaSet>, Vec<ReplicaSet>), Error> {
        let (existing, old) = self.split();
        let new = self.new_replica_set(existing, &old, create).await?;
        Ok((new, old))
    }

    /// Upstream `getNewReplicaSet`: sync the annotations of the existing new ReplicaSet and the
    /// Deployment's revision, or create the new ReplicaSet.
    async fn new_replica_set(
        &mut self,
        existing: Option<ReplicaSet>,
        old: &[ReplicaSet],
        create: bool,
    ) -> Result<Option<ReplicaSet>, Error> {
        let new_revision = max_revision(old) + 1;
        let min_ready = self.d.spec.as_ref().and_then(|s| s.min_ready_seconds);
        if let Some(existing) = existing {
            let mut copy = existing.clone();
            let annotations_changed =
                set_new_rs_annotations(&self.d, &mut copy, new_revision, true);
            let spec = copy.spec.get_or_insert_with(Default::default);
            let min_ready_changed = spec.min_ready_seconds.unwrap_or(0) != min_ready.unwrap_or(0);
            if annotations_changed || min_ready_changed {
                spec.min_ready_seconds = min_ready;
                let updated = self
                    .replica_sets
                    .replace(&copy.name_any(), &PostParams::default(), &copy)
                    .await?;
                self.store(&updated);
                return Ok(Some(updated));
            }
            let revision = copy
                .annotations()
                .get(REVISION)
                .cloned()
                .unwrap_or_default();
            self.set_revision(&revision).await?;
            let has_deadline = progress_deadline(&self.d).is_some();
            let status = self.d.status.get_or_insert_with(Default::default);
            if has_deadline && condition(status, PROGRESSING).is_none() {
                let msg = format!("Found new replica set \"{}\"", copy.name_any());
                set_condition(
                    status,
                    new_condition(PROGRESSING, "True", FOUND_NEW_RS, msg, pods::now()),
                );
                self.update_status().await?;
            }
            return Ok(Some(copy));
        }
        if !create {
            return Ok(None);
        }

        let mut template = template(&self.d);
        let hash = compute_hash(
            &template,
            self.d.status.as_ref().and_then(|s| s.collision_count),
        );
        let meta = template.metadata.get_or_insert_with(Default::default);
        meta.labels
            .get_or_insert_with(Default::default)
            .insert(POD_TEMPLATE_HASH.into(), hash.clone());
        let labels = meta.labels.clone();
        let mut selector = self
            .d
            .spec
            .as_ref()
            .map(|s| s.selector.clone())
            .unwrap_or_default();
        selector
            .match_labels
            .get_or_insert_with(Default::default)
            .insert(POD_TEMPLATE_HASH.into(), hash.clone());
        let name = format!("{}-{hash}", self.name());
        let mut rs = ReplicaSet {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                namespace: self.d.namespace(),
                owner_references: Some(vec![controller_ref(&self.d)]),
                labels,
                ..ObjectMeta::default()
            },
            spec: Some(ReplicaSetSpec {
                replicas: Some(0),
                min_ready_seconds: min_ready,
                selector,
                template: Some(template),
            }),
            status: None,
        };
        let mut all: Vec<&ReplicaSet> = old.iter().collect();
        all.push(&rs);
        let count = new_rs_new_replicas(&self.d, &all, &rs);
        if let Some(spec) = rs.spec.as_mut() {
            spec.replicas = Some(count);
        }
        set_new_rs_annotations(&self.d, &mut rs, new_revision, false);

        let (created, already_existed) = match self
            .replica_sets
            .create(&PostParams::default(), &rs)
            .await
        {
            Ok(created) => (created, false),
            Err(kube::Error::Api(e)) if e.reason == "AlreadyExists" => {
                let found = self.replica_sets.get(&name).await?;
                let ours = controller_of(&found.metadata)
                    .is_some_and(|r| Some(&r.uid) == self.d.metadata.uid.as_ref());
                let same = found
                    .spec
                    .as_ref()
                    .and_then(|s| s.template.as_ref())
                    .is_some_and(|t| equal_ignore_hash(t, &util::template(&self.d)));
                if !(ours && same) {
                    // A hash collision: a different ReplicaSet holds the name. Bump the
                    // collision count so the next hash differs.
                    let status = self.d.status.get_or_insert_with(Default::default);
                    status.collision_count = Some(status.collision_count.unwrap_or(0) + 1);
                    tracing::info!(deployment = %self.name(), replicaset = %name, "hash collision; bumping collisionCount");
                    self.update_status().await?;
                    return Err(kube::Error::Api(e).into());
                }
                (found, true)
            }
            Err(e) => {
                let msg = format!("Failed to create new replica set \"{name}\": {e}");
                if progress_deadline(&self.d).is_some() {
                    let status = self.d.status.get_or_insert_with(Default::default);
                    set_condition(
                        status,
                        new_condition(
                            PROGRESSING,
                            "False",
                            FAILED_RS_CREATE,
                            msg.clone(),
                            pods::now(),
                        ),
                    );
                    if let Err(status_err) = self.update_status().await {
                        tracing::debug!(error = %status_err, "cannot report the failed creation");
                    }
                }
                self.state
                    .recorder
                    .record(&self.d, WARNING, FAILED_RS_CREATE, msg);
                return Err(e.into());
            }
        };
        self.store(&created);
        if !already_existed && count > 0 {
            self.state.recorder.record(
                &self.d,
                NORMAL,
                "ScalingReplicaSet",
                format!("Scaled up replica set {name} to {count}"),
            );
        }
        self.set_revision(&new_revision.to_string()).await?;
        if !already_existed && progress_deadline(&self.d).is_some() {
            let msg = format!("Created new replica set \"{name}\"");
            let status = self.d.status.get_or_insert_with(Default::default);
            set_condition(
                status,
                new_condition(PROGRESSING, "True", NEW_RS_CREATED, msg, pods::now()),
            );
            self.update_status().await?;
        }
        Ok(Some(created))
    }

    /// Scale a ReplicaSet (and refresh its replica annotations); records ScalingReplicaSet.
    /// Returns whether the size changed, and the ReplicaSet as written.
    async fn scale_replica_set(
        &mut self,
        rs: &ReplicaSet,
        to: i32,
    ) -> Result<(bool, ReplicaSet), Error> {
        let from = spec_replicas(rs);
        let desired = replicas(&self.d);
        let max = desired + max_surge(&self.d);
        let resize = from != to;
        if !resize && !replicas_annotations_need_update(rs, desired, max) {
            return Ok((false, rs.clone()));
        }
        let mut copy = rs.clone();
        copy.spec.get_or_insert_with(Default::default).replicas = Some(to);
        set_replicas_annotations(&mut copy, desired, max);
        let updated = self
            .replica_sets
            .replace(&copy.name_any(), &PostParams::default(), &copy)
            .await?;
        self.store(&updated);
        if resize {
            let direction = if from < to { "up" } else { "down" };
            self.state.recorder.record(
                &self.d,
                NORMAL,
                "ScalingReplicaSet",
                format!(
                    "Scaled {direction} replica set {} to {to} from {from}",
                    rs.name_any()
                ),
            );
        }
        Ok((resize, updated))
    }

    /// Upstream `scaleReplicaSetAndRecordEvent`: nothing to do at the right size.
    async fn scale_to(&mut self, rs: &ReplicaSet, to: i32) -> Result<(bool, ReplicaSet), Error> {
        if spec_replicas(rs) == to {
            return Ok((false, rs.clone()));
        }
        self.scale_replica_set(rs, to).await
    }

    // ---- Deployment writes ------------------------------------------------------------------

    /// Sets the Deployment's revision annotation (a metadata patch: the status subresource does
    /// not take annotations here).
    async fn set_revision(&mut self, revision: &str) -> Result<(), Error> {
        if self.d.annotations().get(REVISION).map(String::as_str) == Some(revision) {
            return Ok(());
        }
        let patch = json!({"metadata": {"annotations": {REVISION: revision}}});
        let patched = self
            .deployments
            .patch(&self.name(), &PatchParams::default(), &Patch::Merge(patch))
            .await?;
        self.d.metadata = patched.metadata;
        Ok(())
    }

    /// Writes `self.d.status` (optimistic concurrency on the resourceVersion last seen).
    async fn update_status(&mut self) -> Result<(), Error> {
        let written = self
            .deployments
            .replace_status(&self.name(), &PostParams::default(), &self.d)
            .await?;
        self.d = written;
        Ok(())
    }

    // ---- sync: scaling, paused, deleted -----------------------------------------------------

    /// Upstream `checkPausedConditions`.
    async fn check_paused_conditions(&mut self) -> Result<(), Error> {
        if progress_deadline(&self.d).is_none() {
            return Ok(());
        }
        let paused = is_paused(&self.d);
        let status = self.d.status.get_or_insert_with(Default::default);
        let reason = condition(status, PROGRESSING).and_then(|c| c.reason.clone());
        if reason.as_deref() == Some(TIMED_OUT) {
            return Ok(());
        }
        let paused_recorded = reason.as_deref() == Some(PAUSED);
        let cond = if paused && !paused_recorded {
            new_condition(
                PROGRESSING,
                "Unknown",
                PAUSED,
                "Deployment is paused".into(),
                pods::now(),
            )
        } else if !paused && paused_recorded {
            new_condition(
                PROGRESSING,
                "Unknown",
                RESUMED,
                "Deployment is resumed".into(),
                pods::now(),
            )
        } else {
            return Ok(());
        };
        set_condition(status, cond);
        self.update_status().await
    }

    /// Upstream `isScalingEvent`: an active ReplicaSet was sized for another replica count.
    async fn is_scaling_event(&mut self) -> Result<bool, Error> {
        let (new, old) = self.all_and_sync_revision(false).await?;
        let want = replicas(&self.d);
        Ok(old
            .iter()
            .chain(new.iter())
            .filter(|rs| is_active(rs))
            .any(|rs| desired_replicas_annotation(rs).is_some_and(|d| d != want)))
    }

    /// Upstream `sync`: scale without rolling out (paused, or a scaling event).
    async fn sync(&mut self) -> Result<(), Error> {
        let (new, old) = self.all_and_sync_revision(false).await?;
        self.scale(new.as_ref(), &old).await?;
        let (new, old) = self.refresh(new.as_ref());
        if is_paused(&self.d) {
            self.cleanup(&old).await?;
        }
        let (new, old) = self.refresh(new.as_ref());
        self.sync_status(new.as_ref(), &old).await
    }

    async fn sync_status_only(&mut self) -> Result<(), Error> {
        let (new, old) = self.all_and_sync_revision(false).await?;
        self.sync_status(new.as_ref(), &old).await
    }

    /// Upstream `scale`: one active ReplicaSet takes the whole size; otherwise (a rolling update
    /// under way) the change is spread over the active ReplicaSets in proportion to their size.
    async fn scale(&mut self, new: Option<&ReplicaSet>, old: &[ReplicaSet]) -> Result<(), Error> {
        let want = replicas(&self.d);
        let mut newest_first: Vec<&ReplicaSet> = old.iter().collect();
        newest_first.sort_by(|a, b| by_creation(b, a));
        let active: Vec<&ReplicaSet> = newest_first
            .iter()
            .copied()
            .chain(new)
            .filter(|rs| is_active(rs))
            .collect();
        let single = match active.len() {
            0 => new.or(newest_first.first().copied()),
            1 => Some(active[0]),
            _ => None,
        };
        if let Some(rs) = single {
            if spec_replicas(rs) != want {
                let rs = rs.clone();
                self.scale_to(&rs, want).await?;
            }
            return Ok(());
        }
        if is_saturated(&self.d, new) {
            for rs in old.iter().filter(|rs| is_active(rs)) {
                self.scale_to(rs, 0).await?;
            }
            return Ok(());
        }
        if is_recreate(&self.d) {
            return Ok(());
        }
        let mut active: Vec<ReplicaSet> = active.into_iter().cloned().collect();
        let current: i32 = active.iter().map(spec_replicas).sum();
        let allowed = if want > 0 {
            want + max_surge(&self.d)
        } else {
            0
        };
        let to_add = allowed - current;
        if to_add > 0 {
            // Larger first; between equals, newer first.
            active.sort_by(|a, b| {
                spec_replicas(b)
                    .cmp(&spec_replicas(a))
                    .then_with(|| by_creation(b, a))
            });
        } else if to_add < 0 {
            // Larger first; between equals, older first.
            active.sort_by(|a, b| {
                spec_replicas(b)
                    .cmp(&spec_replicas(a))
                    .then_with(|| by_creation(a, b))
            });
        }
        let mut added = 0;
        let mut sizes = Vec::with_capacity(active.len());
        for rs in &active {
            if to_add != 0 {
                let p = proportion(rs, &self.d, to_add, added);
                sizes.push(spec_replicas(rs) + p);
                added += p;
            } else {
                sizes.push(spec_replicas(rs));
            }
        }
        for (i, rs) in active.iter().enumerate() {
            if i == 0 && to_add != 0 {
                sizes[0] = (sizes[0] + to_add - added).max(0);
            }
            self.scale_replica_set(rs, sizes[i]).await?;
        }
        Ok(())
    }

    /// Upstream `cleanupDeployment`: delete the oldest old ReplicaSets beyond
    /// `revisionHistoryLimit`, if they are fully scaled down.
    async fn cleanup(&mut self, old: &[ReplicaSet]) -> Result<(), Error> {
        let Some(limit) = revision_history_limit(&self.d) else {
            return Ok(());
        };
        let mut cleanable: Vec<&ReplicaSet> = old
            .iter()
            .filter(|rs| rs.metadata.deletion_timestamp.is_none())
            .collect();
        let excess = cleanable.len() as i64 - i64::from(limit);
        if excess <= 0 {
            return Ok(());
        }
        cleanable.sort_by(|a, b| match (revision(a), revision(b)) {
            (Some(ra), Some(rb)) if ra != rb => ra.cmp(&rb),
            _ => by_creation(a, b),
        });
        for rs in cleanable.into_iter().take(excess as usize) {
            let observed = rs
                .status
                .as_ref()
                .and_then(|s| s.observed_generation)
                .unwrap_or(0);
            if status_replicas(rs) != 0
                || spec_replicas(rs) != 0
                || rs.metadata.generation.unwrap_or(0) > observed
            {
                continue;
            }
            tracing::info!(deployment = %self.name(), replicaset = %rs.name_any(), "deleting old replicaset");
            match self
                .replica_sets
                .delete(&rs.name_any(), &DeleteParams::default())
                .await
            {
                Ok(_) => {}
                Err(kube::Error::Api(e)) if e.code == 404 => {}
                Err(e) => return Err(e.into()),
            }
            let uid = rs.uid();
            self.rss.retain(|r| r.uid() != uid);
        }
        Ok(())
    }

    // ---- status -----------------------------------------------------------------------------

    /// Upstream `syncDeploymentStatus`: counters and Available, no progress estimate.
    async fn sync_status(
        &mut self,
        new: Option<&ReplicaSet>,
        old: &[ReplicaSet],
    ) -> Result<(), Error> {
        let all: Vec<&ReplicaSet> = old.iter().chain(new).collect();
        let status = calculate_status(&all, new, &self.d, pods::now());
        if self.d.status.clone().unwrap_or_default() == status {
            return Ok(());
        }
        self.d.status = Some(status);
        self.update_status().await
    }

    /// Upstream `syncRolloutStatus`: counters, Available, and the Progressing condition against
    /// the progress deadline.
    async fn sync_rollout_status(
        &mut self,
        new: Option<&ReplicaSet>,
        old: &[ReplicaSet],
    ) -> Result<(), Error> {
        let now = pods::now();
        let all: Vec<&ReplicaSet> = old.iter().chain(new).collect();
        let mut status = calculate_status(&all, new, &self.d, now);
        let current_status = self.d.status.clone().unwrap_or_default();
        let current = condition(&current_status, PROGRESSING).cloned();
        if progress_deadline(&self.d).is_none() {
            remove_condition(&mut status, PROGRESSING);
        }
        let rollout_done = status.replicas == status.updated_replicas
            && current
                .as_ref()
                .is_some_and(|c| c.reason.as_deref() == Some(NEW_RS_AVAILABLE));
        if progress_deadline(&self.d).is_some() && !rollout_done {
            let subject = match new {
                Some(rs) => format!("ReplicaSet \"{}\"", rs.name_any()),
                None => format!("Deployment \"{}\"", self.name()),
            };
            if is_complete(&self.d, &status) {
                let msg = format!("{subject} has successfully progressed.");
                set_condition(
                    &mut status,
                    new_condition(PROGRESSING, "True", NEW_RS_AVAILABLE, msg, now),
                );
            } else if is_progressing(&self.d, &status) {
                let msg = format!("{subject} is progressing.");
                let mut cond = new_condition(PROGRESSING, "True", RS_UPDATED, msg, now);
                if let Some(current) = &current {
                    if current.status == "True" {
                        cond.last_transition_time = current.last_transition_time.clone();
                    }
                    remove_condition(&mut status, PROGRESSING);
                }
                set_condition(&mut status, cond);
            } else if is_timed_out(&self.d, &status, now) {
                let msg = format!("{subject} has timed out progressing.");
                set_condition(
                    &mut status,
                    new_condition(PROGRESSING, "False", TIMED_OUT, msg, now),
                );
            }
        }
        let failure = new
            .into_iter()
            .chain(old.iter())
            .flat_map(|rs| rs.status.iter().flat_map(|s| s.conditions.iter().flatten()))
            .find(|c| c.type_ == REPLICA_FAILURE)
            .map(from_rs_condition);
        match failure {
            Some(cond) => set_condition(&mut status, cond),
            None => remove_condition(&mut status, REPLICA_FAILURE),
        }
        if status.conditions.as_ref().is_some_and(Vec::is_empty) {
            status.conditions = None;
        }
        if current_status == status {
            self.requeue_if_stuck(&status, now);
            return Ok(());
        }
        self.d.status = Some(status);
        self.update_status().await
    }

    /// Upstream `requeueStuckDeployment`: look again when the progress deadline would pass.
    fn requeue_if_stuck(
        &mut self,
        new: &k8s_openapi::api::apps::v1::DeploymentStatus,
        now: k8s_openapi::jiff::Timestamp,
    ) {
        let Some(deadline) = progress_deadline(&self.d) else {
            return;
        };
        let status = self.d.status.clone().unwrap_or_default();
        let Some(cond) = condition(&status, PROGRESSING) else {
            return;
        };
        if is_complete(&self.d, new) || cond.reason.as_deref() == Some(TIMED_OUT) {
            return;
        }
        let Some(updated) = cond.last_update_time.as_ref() else {
            return;
        };
        let at = updated.0 + Duration::from_secs(deadline.max(0) as u64);
        let after = now.duration_until(at);
        self.requeue = Some(if after.is_negative() || after.as_secs() < 1 {
            Duration::from_millis(500)
        } else {
            after.unsigned_abs() + Duration::from_secs(1)
        });
    }

    // ---- RollingUpdate ----------------------------------------------------------------------

    /// Upstream `rolloutRolling`.
    async fn rollout_rolling(&mut self) -> Result<(), Error> {
        let (new, _) = self.all_and_sync_revision(true).await?;
        let Some(new) = new else {
            return Err(Error::Invalid("no new replica set".into()));
        };
        if self.reconcile_new(&new).await? {
            let (new, old) = self.refresh(Some(&new));
            return self.sync_rollout_status(new.as_ref(), &old).await;
        }
        let (fresh_new, _) = self.refresh(Some(&new));
        let new = fresh_new.unwrap_or(new);
        if self.reconcile_old(&new).await? {
            let (new, old) = self.refresh(Some(&new));
            return self.sync_rollout_status(new.as_ref(), &old).await;
        }
        let (new, old) = self.refresh(Some(&new));
        if is_complete(&self.d, &self.d.status.clone().unwrap_or_default()) {
            self.cleanup(&old).await?;
        }
        let (new, old) = self.refresh(new.as_ref());
        self.sync_rollout_status(new.as_ref(), &old).await
    }

    /// Upstream `reconcileNewReplicaSet`.
    async fn reconcile_new(&mut self, new: &ReplicaSet) -> Result<bool, Error> {
        let want = replicas(&self.d);
        let have = spec_replicas(new);
        if have == want {
            return Ok(false);
        }
        if have > want {
            return Ok(self.scale_to(new, want).await?.0);
        }
        let all: Vec<&ReplicaSet> = self.rss.iter().collect();
        let to = new_rs_new_replicas(&self.d, &all, new);
        Ok(self.scale_to(new, to).await?.0)
    }

    /// Upstream `reconcileOldReplicaSets`: scale old ReplicaSets down as far as availability
    /// allows, unhealthy pods first.
    async fn reconcile_old(&mut self, new: &ReplicaSet) -> Result<bool, Error> {
        let (_, old) = self.refresh(Some(new));
        let active_old: Vec<ReplicaSet> = old.into_iter().filter(is_active).collect();
        let old_pods: i32 = active_old.iter().map(spec_replicas).sum();
        if old_pods == 0 {
            return Ok(false);
        }
        let all_pods: i32 = self.rss.iter().map(spec_replicas).sum();
        let min_available = replicas(&self.d) - max_unavailable(&self.d);
        let new_unavailable = spec_replicas(new) - available_replicas(new);
        let max_scaled_down = all_pods - min_available - new_unavailable;
        if max_scaled_down <= 0 {
            return Ok(false);
        }
        let cleaned = self.cleanup_unhealthy(active_old, max_scaled_down).await?;
        let scaled = self.scale_down_old(new).await?;
        Ok(cleaned + scaled > 0)
    }

    /// Upstream `cleanupUnhealthyReplicas`: first take away old replicas that are not available.
    async fn cleanup_unhealthy(
        &mut self,
        mut old: Vec<ReplicaSet>,
        max: i32,
    ) -> Result<i32, Error> {
        old.sort_by(by_creation);
        let mut total = 0;
        for rs in &old {
            if total >= max {
                break;
            }
            let spec = spec_replicas(rs);
            let available = available_replicas(rs);
            if spec == 0 || available >= spec {
                continue;
            }
            let down = (max - total).min(spec - available);
            self.scale_to(rs, spec - down).await?;
            total += down;
        }
        Ok(total)
    }

    /// Upstream `scaleDownOldReplicaSetsForRollingUpdate`: scale old ReplicaSets down while
    /// more than replicas − maxUnavailable pods are available. A ReplicaSet counts at most its
    /// spec's worth of available pods: pods it is about to delete are not counted on.
    async fn scale_down_old(&mut self, new: &ReplicaSet) -> Result<i32, Error> {
        let min_available = replicas(&self.d) - max_unavailable(&self.d);
        let available: i32 = self
            .rss
            .iter()
            .map(|rs| available_replicas(rs).min(spec_replicas(rs)))
            .sum();
        if available <= min_available {
            return Ok(0);
        }
        let budget = available - min_available;
        let (_, mut old) = self.refresh(Some(new));
        old.sort_by(by_creation);
        let mut total = 0;
        for rs in &old {
            if total >= budget {
                break;
            }
            let spec = spec_replicas(rs);
            if spec == 0 {
                continue;
            }
            let down = spec.min(budget - total);
            self.scale_to(rs, spec - down).await?;
            total += down;
        }
        Ok(total)
    }

    // ---- Recreate ---------------------------------------------------------------------------

    /// Every pod the Deployment's selector matches, by controlling ReplicaSet (terminating pods
    /// included: Recreate waits for them to be gone).
    async fn pod_map(&self, selector: &Selector) -> Result<PodMap, Error> {
        let api: Api<Pod> = Api::namespaced(
            self.state.client.clone(),
            &self.d.namespace().unwrap_or_default(),
        );
        let uids: Vec<String> = self.rss.iter().filter_map(|rs| rs.uid()).collect();
        let mut map = PodMap::new();
        let params = ListParams::default().labels(&selector.to_string());
        for pod in api.list(&params).await?.items {
            if let Some(owner) = controller_of(&pod.metadata) {
                if uids.contains(&owner.uid) {
                    map.entry(owner.uid.clone()).or_default().push(pod);
                }
            }
        }
        Ok(map)
    }

    /// Upstream `rolloutRecreate`: scale every old ReplicaSet to zero, wait until their pods
    /// are gone, then create and scale up the new one.
    async fn rollout_recreate(&mut self, pod_map: &PodMap) -> Result<(), Error> {
        let (new, old) = self.all_and_sync_revision(false).await?;
        let mut scaled_down = false;
        for rs in old.iter().filter(|rs| is_active(rs)) {
            scaled_down |= self.scale_to(rs, 0).await?.0;
        }
        if scaled_down {
            let (new, old) = self.refresh(new.as_ref());
            return self.sync_rollout_status(new.as_ref(), &old).await;
        }
        if old_pods_running(new.as_ref(), &old, pod_map) {
            return self.sync_rollout_status(new.as_ref(), &old).await;
        }
        let new = match new {
            Some(new) => new,
            None => match self.all_and_sync_revision(true).await?.0 {
                Some(new) => new,
                None => return Err(Error::Invalid("no new replica set".into())),
            },
        };
        self.scale_to(&new, replicas(&self.d)).await?;
        let (new, old) = self.refresh(Some(&new));
        if is_complete(&self.d, &self.d.status.clone().unwrap_or_default()) {
            self.cleanup(&old).await?;
        }
        let (new, old) = self.refresh(new.as_ref());
        self.sync_rollout_status(new.as_ref(), &old).await
    }
}

/// Upstream `oldPodsRunning`: an old ReplicaSet still reports pods, or one of their pods exists
/// in a non-terminal phase (even while terminating).
fn old_pods_running(new: Option<&ReplicaSet>, old: &[ReplicaSet], pod_map: &PodMap) -> bool {
    if old.iter().map(status_replicas).sum::<i32>() > 0 {
        return true;
    }
    let new_uid = new.and_then(|n| n.uid());
    pod_map
        .iter()
        .filter(|(uid, _)| Some(*uid) != new_uid.as_ref())
        .flat_map(|(_, owned)| owned)
        .any(|pod| !matches!(pods::phase(pod), "Succeeded" | "Failed"))
}
