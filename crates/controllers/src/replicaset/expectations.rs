//! Expectations (upstream `ControllerExpectations`): after creating or deleting pods, a
//! ReplicaSet does not act again until its pod cache shows those writes, so a lagging cache
//! never makes it create duplicates or delete twice.
//!
//! Upstream counts adds and deletes as informer events arrive. Here the pending writes are
//! remembered by pod name and checked against the cache when the ReplicaSet is next reconciled:
//! a created pod is observed once the cache holds it, a deleted one once the cache no longer holds
//! it as active. A created pod that was deleted again before the cache ever saw it is confirmed
//! with the API server (see [`Check::stale_creations`]).

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// After this long, a creation still missing from the cache is checked with the API server.
pub(crate) const STALE_AFTER: Duration = Duration::from_secs(2);
/// After this long, pending expectations are dropped whatever the cache says (upstream 5 min).
pub(crate) const TTL: Duration = Duration::from_secs(300);

/// What the pod cache holds under one name.
pub(crate) enum Cached {
    Absent,
    /// Present; the uid and whether it is being deleted or terminal.
    Present {
        uid: String,
        active: bool,
    },
}

#[derive(Default)]
struct Pending {
    creations: HashSet<String>,
    /// name -> uid of the pod deleted.
    deletions: HashMap<String, String>,
    since: Option<Instant>,
}

/// Outcome of [`Expectations::check`].
pub(crate) struct Check {
    pub satisfied: bool,
    /// Creations unobserved for longer than [`STALE_AFTER`]: confirm with a GET, and
    /// [`Expectations::creation_observed`] those that no longer exist.
    pub stale_creations: Vec<String>,
}

/// Pending writes per controller (keyed by the controller's uid).
#[derive(Default)]
pub(crate) struct Expectations {
    pending: Mutex<HashMap<String, Pending>>,
}

impl Expectations {
    pub(crate) fn expect_creations(&self, key: &str, names: impl IntoIterator<Item = String>) {
        let mut all = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        let p = all.entry(key.to_string()).or_default();
        p.creations.extend(names);
        p.since.get_or_insert_with(Instant::now);
    }

    pub(crate) fn expect_deletions(
        &self,
        key: &str,
        pods: impl IntoIterator<Item = (String, String)>,
    ) {
        let mut all = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        let p = all.entry(key.to_string()).or_default();
        p.deletions.extend(pods);
        p.since.get_or_insert_with(Instant::now);
    }

    /// A pending creation that the API server says is gone: nothing more to wait for.
    pub(crate) fn creation_observed(&self, key: &str, name: &str) {
        let mut all = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(p) = all.get_mut(key) {
            p.creations.remove(name);
        }
    }

    /// Drops what `cache` shows as done; satisfied when nothing remains (or the TTL passed).
    pub(crate) fn check(&self, key: &str, cache: impl Fn(&str) -> Cached) -> Check {
        let mut all = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        let Some(p) = all.get_mut(key) else {
            return Check {
                satisfied: true,
                stale_creations: vec![],
            };
        };
        p.creations
            .retain(|name| matches!(cache(name), Cached::Absent));
        p.deletions.retain(|name, uid| match cache(name) {
            Cached::Present { uid: now, active } => now == *uid && active,
            Cached::Absent => false,
        });
        let age = p.since.map(|s| s.elapsed()).unwrap_or_default();
        if (p.creations.is_empty() && p.deletions.is_empty()) || age > TTL {
            all.remove(key);
            return Check {
                satisfied: true,
                stale_creations: vec![],
            };
        }
        let stale_creations = if age > STALE_AFTER {
            p.creations.iter().cloned().collect()
        } else {
            vec![]
        };
        Check {
            satisfied: false,
            stale_creations,
        }
    }

    /// Forgets a controller (it was deleted).
    pub(crate) fn forget(&self, key: &str) {
        let mut all = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        all.remove(key);
    }

    /// Drops entries of controllers not seen for longer than the TTL.
    pub(crate) fn expire(&self) {
        let mut all = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        all.retain(|_, p| p.since.is_none_or(|s| s.elapsed() <= TTL));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn creations_wait_for_the_cache() {
        let e = Expectations::default();
        assert!(e.check("rs", |_| Cached::Absent).satisfied);
        e.expect_creations("rs", ["a".to_string(), "b".to_string()]);
        assert!(!e.check("rs", |_| Cached::Absent).satisfied);
        let seen_a = |n: &str| {
            if n == "a" {
                Cached::Present {
                    uid: "1".into(),
                    active: true,
                }
            } else {
                Cached::Absent
            }
        };
        assert!(!e.check("rs", seen_a).satisfied);
        e.creation_observed("rs", "b");
        assert!(
            e.check("rs", |_| Cached::Absent).satisfied,
            "a was seen before"
        );
    }

    #[test]
    fn deletions_wait_until_the_pod_is_gone_or_terminating() {
        let e = Expectations::default();
        e.expect_deletions("rs", [("a".to_string(), "1".to_string())]);
        let active = |_: &str| Cached::Present {
            uid: "1".into(),
            active: true,
        };
        assert!(!e.check("rs", active).satisfied);
        let terminating = |_: &str| Cached::Present {
            uid: "1".into(),
            active: false,
        };
        assert!(e.check("rs", terminating).satisfied);
        e.expect_deletions("rs", [("a".to_string(), "1".to_string())]);
        let replaced = |_: &str| Cached::Present {
            uid: "2".into(),
            active: true,
        };
        assert!(e.check("rs", replaced).satisfied, "same name, another pod");
    }
}
