//! The scheduling queue: pods waiting for a node.
//!
//! A pending pod is in exactly one of four places: `active` (ready to be tried, highest priority
//! first, then first come), `backoff` (failed recently, waiting out its backoff), `unschedulable`
//! (no node fitted; waits for a cluster change or the periodic flush) or in flight (being
//! scheduled or bound).

use std::cmp::Reverse;
use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use tokio::time::Instant;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Place {
    Active(Reverse<i32>, u64),
    Backoff(Instant),
    Unschedulable(Instant),
    InFlight,
}

struct Entry {
    pod: Arc<Pod>,
    place: Place,
    attempts: u32,
    /// When its backoff ends (the earliest it may be retried after a failure).
    backoff_until: Option<Instant>,
}

/// Backoff and flush periods.
#[derive(Clone, Copy, Debug)]
pub struct QueueTiming {
    pub initial_backoff: Duration,
    pub max_backoff: Duration,
    /// How long an unschedulable pod waits for a cluster change before it is retried anyway.
    pub unschedulable_flush: Duration,
}

pub struct SchedulingQueue {
    timing: QueueTiming,
    entries: HashMap<String, Entry>,
    active: BTreeSet<(Reverse<i32>, u64, String)>,
    backoff: BTreeSet<(Instant, String)>,
    unschedulable: BTreeSet<(Instant, String)>,
    seq: u64,
}

fn priority(pod: &Pod) -> i32 {
    crate::cache::pod_priority(pod)
}

/// Whether an update of a pending pod may change where it fits (not a status-only write, such as
/// the scheduler's own PodScheduled condition).
fn scheduling_relevant_change(old: &Pod, new: &Pod) -> bool {
    old.spec != new.spec || old.metadata.labels != new.metadata.labels
}

impl SchedulingQueue {
    pub fn new(timing: QueueTiming) -> SchedulingQueue {
        SchedulingQueue {
            timing,
            entries: HashMap::new(),
            active: BTreeSet::new(),
            backoff: BTreeSet::new(),
            unschedulable: BTreeSet::new(),
            seq: 0,
        }
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn contains(&self, uid: &str) -> bool {
        self.entries.contains_key(uid)
    }

    pub fn has_active(&self) -> bool {
        !self.active.is_empty()
    }

    fn unplace(&mut self, uid: &str) {
        let Some(e) = self.entries.get(uid) else {
            return;
        };
        let key = uid.to_string();
        match e.place {
            Place::Active(p, s) => {
                self.active.remove(&(p, s, key));
            }
            Place::Backoff(t) => {
                self.backoff.remove(&(t, key));
            }
            Place::Unschedulable(t) => {
                self.unschedulable.remove(&(t, key));
            }
            Place::InFlight => {}
        }
    }

    fn place(&mut self, uid: &str, place: Place) {
        self.unplace(uid);
        let Some(e) = self.entries.get_mut(uid) else {
            return;
        };
        e.place = place;
        match place {
            Place::Active(p, s) => {
                self.active.insert((p, s, uid.to_string()));
            }
            Place::Backoff(t) => {
                self.backoff.insert((t, uid.to_string()));
            }
            Place::Unschedulable(t) => {
                self.unschedulable.insert((t, uid.to_string()));
            }
            Place::InFlight => {}
        }
    }

    /// Active if its backoff is over, else waiting in backoff.
    fn activate(&mut self, uid: &str, now: Instant) {
        let Some(e) = self.entries.get(uid) else {
            return;
        };
        let place = match e.backoff_until {
            Some(t) if t > now => Place::Backoff(t),
            _ => {
                self.seq += 1;
                Place::Active(Reverse(priority(&e.pod)), self.seq)
            }
        };
        self.place(uid, place);
    }

    /// A pending pod appeared or changed.
    pub fn add_or_update(&mut self, uid: &str, pod: Arc<Pod>, now: Instant) {
        match self.entries.get_mut(uid) {
            None => {
                self.entries.insert(
                    uid.to_string(),
                    Entry {
                        pod,
                        place: Place::InFlight,
                        attempts: 0,
                        backoff_until: None,
                    },
                );
                self.activate(uid, now);
            }
            Some(e) => {
                let relevant = scheduling_relevant_change(&e.pod, &pod);
                e.pod = pod;
                if relevant && matches!(e.place, Place::Unschedulable(_)) {
                    self.activate(uid, now);
                }
            }
        }
    }

    /// The pod is gone or no longer pending.
    pub fn remove(&mut self, uid: &str) {
        self.unplace(uid);
        self.entries.remove(uid);
    }

    /// The next pod to try, now in flight.
    pub fn pop(&mut self) -> Option<(String, Arc<Pod>)> {
        let (_, _, uid) = self.active.pop_first()?;
        let e = self.entries.get_mut(&uid)?;
        e.place = Place::InFlight;
        Some((uid.clone(), e.pod.clone()))
    }

    /// The latest version of a queued pod.
    pub fn pod(&self, uid: &str) -> Option<&Arc<Pod>> {
        self.entries.get(uid).map(|e| &e.pod)
    }

    fn backoff_for(&self, attempts: u32) -> Duration {
        let factor = 1u32 << attempts.saturating_sub(1).min(16);
        self.timing
            .initial_backoff
            .saturating_mul(factor)
            .min(self.timing.max_backoff)
    }

    /// No node fitted: wait for a cluster change (or the flush), and at least the backoff.
    pub fn unschedulable(&mut self, uid: &str, now: Instant) {
        let Some(e) = self.entries.get_mut(uid) else {
            return;
        };
        e.attempts += 1;
        let attempts = e.attempts;
        let until = now + self.backoff_for(attempts);
        if let Some(e) = self.entries.get_mut(uid) {
            e.backoff_until = Some(until);
        }
        self.place(uid, Place::Unschedulable(now));
    }

    /// An error (API failure): retry after the backoff.
    pub fn retry_later(&mut self, uid: &str, now: Instant) {
        let Some(e) = self.entries.get_mut(uid) else {
            return;
        };
        e.attempts += 1;
        let attempts = e.attempts;
        let until = now + self.backoff_for(attempts);
        if let Some(e) = self.entries.get_mut(uid) {
            e.backoff_until = Some(until);
        }
        self.place(uid, Place::Backoff(until));
    }

    /// Something in the cluster changed that may make unschedulable pods fit: retry them all
    /// (each once its backoff is over).
    pub fn move_all_unschedulable(&mut self, now: Instant) {
        let uids: Vec<String> = self
            .unschedulable
            .iter()
            .map(|(_, uid)| uid.clone())
            .collect();
        for uid in uids {
            self.activate(&uid, now);
        }
    }

    /// Moves pods whose backoff ended, and unschedulable pods waiting longer than the flush period,
    /// to active. Returns when this should run next.
    pub fn tick(&mut self, now: Instant) -> Option<Instant> {
        while let Some((t, uid)) = self.backoff.first().cloned() {
            if t > now {
                break;
            }
            self.backoff.pop_first();
            if let Some(e) = self.entries.get_mut(&uid) {
                e.place = Place::InFlight;
            }
            self.activate(&uid, now);
        }
        while let Some((t, uid)) = self.unschedulable.first().cloned() {
            if t + self.timing.unschedulable_flush > now {
                break;
            }
            self.activate(&uid, now);
            // Still backing off: it went to `backoff`.
        }
        let next_backoff = self.backoff.first().map(|(t, _)| *t);
        let next_flush = self
            .unschedulable
            .first()
            .map(|(t, _)| *t + self.timing.unschedulable_flush);
        match (next_backoff, next_flush) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(name: &str, priority: i32) -> Arc<Pod> {
        Arc::new(
            serde_json::from_value(json!({"metadata": {"name": name},
                "spec": {"priority": priority, "containers": []}}))
            .unwrap(),
        )
    }

    fn queue() -> SchedulingQueue {
        SchedulingQueue::new(QueueTiming {
            initial_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(10),
            unschedulable_flush: Duration::from_secs(30),
        })
    }

    #[test]
    fn priority_then_arrival() {
        let now = Instant::now();
        let mut q = queue();
        q.add_or_update("a", pod("a", 0), now);
        q.add_or_update("b", pod("b", 10), now);
        q.add_or_update("c", pod("c", 0), now);
        let order: Vec<String> = std::iter::from_fn(|| q.pop().map(|(u, _)| u)).collect();
        assert_eq!(order, ["b", "a", "c"]);
        assert_eq!(q.len(), 3, "popped pods stay in flight until done");
        q.remove("a");
        assert_eq!(q.len(), 2);
    }

    #[test]
    fn unschedulable_waits_for_a_change_and_its_backoff() {
        let now = Instant::now();
        let mut q = queue();
        q.add_or_update("a", pod("a", 0), now);
        q.pop();
        q.unschedulable("a", now);
        assert!(!q.has_active());
        // A change during the backoff: waits out the backoff, then is active.
        q.move_all_unschedulable(now + Duration::from_millis(100));
        assert!(!q.has_active());
        assert_eq!(
            q.tick(now + Duration::from_millis(200)),
            Some(now + Duration::from_secs(1))
        );
        q.tick(now + Duration::from_secs(1));
        assert!(q.has_active());
        // Second failure: 2 s backoff; without changes only the flush brings it back.
        q.pop();
        let later = now + Duration::from_secs(2);
        q.unschedulable("a", later);
        assert_eq!(
            q.tick(later + Duration::from_secs(5)),
            Some(later + Duration::from_secs(30))
        );
        assert!(!q.has_active());
        q.tick(later + Duration::from_secs(30));
        assert!(q.has_active());
    }

    #[test]
    fn backoff_doubles_up_to_the_maximum() {
        let q = queue();
        let secs: Vec<u64> = (1..=6).map(|a| q.backoff_for(a).as_secs()).collect();
        assert_eq!(secs, [1, 2, 4, 8, 10, 10]);
    }

    #[test]
    fn status_writes_do_not_requeue() {
        let now = Instant::now();
        let mut q = queue();
        q.add_or_update("a", pod("a", 0), now);
        q.pop();
        q.unschedulable("a", now);
        let mut with_status = (*pod("a", 0)).clone();
        with_status.status = Some(Default::default());
        q.add_or_update("a", Arc::new(with_status), now + Duration::from_secs(5));
        assert!(!q.has_active());
        let mut relabelled = (*pod("a", 0)).clone();
        relabelled.metadata.labels = Some([("x".to_string(), "y".to_string())].into());
        q.add_or_update("a", Arc::new(relabelled), now + Duration::from_secs(5));
        assert!(q.has_active());
    }
}
