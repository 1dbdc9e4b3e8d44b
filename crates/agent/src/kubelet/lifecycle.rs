//! The pod lifecycle as an explicit state machine, as pure functions over what the runtime
//! reports. One place says which stages a pod goes through, which transitions exist, and what
//! each stage reports as the pod phase; the worker (`worker.rs`) only executes the actions
//! decided here.
//!
//! ```text
//!  Preparing ──(volumes, podCIDR, sandbox)──▶ Initializing{next} ──(all init containers
//!      │                                          │ exited 0)──▶ Running ──(every container
//!      │                                          │                 │     ended for good)──▶ Completed
//!      │                                          └─(init failed, restartPolicy Never)──────▶ Completed(Failed)
//!      └──────────── any stage ──(deletionTimestamp)──▶ Terminating ──(stopped, grace-0 DELETE)──▶ gone
//! ```
//!
//! A container goes Waiting → Running → Exited; an exited container restarts per the pod's
//! restartPolicy, after an exponential back-off (10 s doubling to 5 min, reset after 10 min of
//! good running) while in which it reports `CrashLoopBackOff`.

use std::collections::HashMap;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Container, PodSpec};
use tokio::time::Instant;

/// What the runtime says about one container attempt.
#[derive(Clone, Debug, PartialEq)]
pub enum RunState {
    Created,
    Running {
        started_at: i64,
    },
    Exited {
        exit_code: i32,
        reason: String,
        message: String,
        started_at: i64,
        finished_at: i64,
    },
    Unknown,
}

/// One container attempt as the runtime has it (times in nanoseconds since the epoch).
#[derive(Clone, Debug)]
pub struct Observed {
    pub id: String,
    pub sandbox_id: String,
    pub name: String,
    pub attempt: u32,
    pub state: RunState,
    pub image: String,
    pub image_ref: String,
    pub created_at: i64,
}

impl Observed {
    pub fn is_running(&self) -> bool {
        matches!(self.state, RunState::Running { .. })
    }

    pub fn exit_code(&self) -> Option<i32> {
        match self.state {
            RunState::Exited { exit_code, .. } => Some(exit_code),
            _ => None,
        }
    }
}

/// The latest attempt of each container name (highest attempt, then newest).
pub fn latest_by_name(observed: &[Observed]) -> HashMap<&str, &Observed> {
    let mut latest: HashMap<&str, &Observed> = HashMap::new();
    for o in observed {
        match latest.get(o.name.as_str()) {
            Some(cur) if (cur.attempt, cur.created_at) >= (o.attempt, o.created_at) => {}
            _ => {
                latest.insert(&o.name, o);
            }
        }
    }
    latest
}

/// The stage a pod is in.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Stage {
    /// Before the sandbox runs: waiting for the podCIDR, volumes, or the sandbox itself.
    Preparing,
    /// Init container `next` (index into spec.initContainers) runs or is about to.
    Initializing { next: usize },
    /// The init containers completed; the regular containers run or restart.
    Running,
    /// Every container ended and none will restart.
    Completed { succeeded: bool },
    /// Deleted: containers stop within the grace period, then the deletion is confirmed.
    Terminating,
}

impl Stage {
    /// The pod phase this stage reports.
    pub fn phase(&self, any_container_started: bool) -> &'static str {
        match self {
            Stage::Preparing | Stage::Initializing { .. } => "Pending",
            Stage::Running => "Running",
            Stage::Completed { succeeded: true } => "Succeeded",
            Stage::Completed { succeeded: false } => "Failed",
            Stage::Terminating if any_container_started => "Running",
            Stage::Terminating => "Pending",
        }
    }
}

/// What to do with one container now.
#[derive(Clone, Debug, PartialEq)]
pub enum Decision {
    /// Create and start attempt `attempt`.
    Start { attempt: u32 },
    /// It runs (or completed for good): nothing to do.
    Keep,
    /// It exited and restarts once the back-off expires at `until` (CrashLoopBackOff).
    BackOff { until: Instant, delay: Duration },
}

/// Whether an exited container restarts under `policy` (Always, OnFailure, Never).
pub fn should_restart(policy: &str, exit_code: i32) -> bool {
    match policy {
        "Never" => false,
        "OnFailure" => exit_code != 0,
        _ => true,
    }
}

/// The decision for a regular container given its latest attempt.
pub fn decide_container(
    policy: &str,
    latest: Option<&Observed>,
    backoff: &mut Backoff,
    now: Instant,
) -> Decision {
    let Some(latest) = latest else {
        return Decision::Start { attempt: 0 };
    };
    match &latest.state {
        RunState::Running { .. } => Decision::Keep,
        // Created but never started (the agent died in between): start a fresh attempt.
        RunState::Created | RunState::Unknown => Decision::Start {
            attempt: latest.attempt + 1,
        },
        RunState::Exited {
            exit_code,
            finished_at,
            started_at,
            ..
        } => {
            if !should_restart(policy, *exit_code) {
                return Decision::Keep;
            }
            let ran_for = Duration::from_nanos((finished_at - started_at).max(0) as u64);
            match backoff.check(&latest.id, ran_for, now) {
                None => Decision::Start {
                    attempt: latest.attempt + 1,
                },
                Some((until, delay)) => Decision::BackOff { until, delay },
            }
        }
    }
}

/// The next step of the init sequence.
#[derive(Clone, Debug, PartialEq)]
pub enum InitStep {
    /// Every init container exited 0.
    Done,
    /// Init container `index` must be acted on (`decision`).
    Act { index: usize, decision: Decision },
    /// Init container `index` failed and the pod's restartPolicy is Never: the pod fails.
    Failed { index: usize },
}

/// Walks the init containers in order: the first one that has not exited 0 is the one to act on.
pub fn decide_init(
    spec: &PodSpec,
    observed: &HashMap<&str, &Observed>,
    backoff: &mut Backoff,
    now: Instant,
) -> InitStep {
    let policy = spec.restart_policy.as_deref().unwrap_or("Always");
    for (index, c) in spec.init_containers.iter().flatten().enumerate() {
        let latest = observed.get(c.name.as_str()).copied();
        match latest.map(|o| &o.state) {
            Some(RunState::Exited { exit_code: 0, .. }) => continue,
            Some(RunState::Exited { .. }) if policy == "Never" => {
                return InitStep::Failed { index }
            }
            _ => {}
        }
        // Init containers restart on failure under Always and OnFailure alike.
        let decision = decide_container("OnFailure", latest, backoff, now);
        return InitStep::Act { index, decision };
    }
    InitStep::Done
}

/// Whether every regular container ended for good: Some(succeeded) then, None while one runs
/// or will restart (upstream's getPhase for restartPolicy Never/OnFailure).
pub fn completion(
    containers: &[Container],
    policy: &str,
    observed: &HashMap<&str, &Observed>,
) -> Option<bool> {
    if policy == "Always" {
        return None;
    }
    let mut succeeded = true;
    for c in containers {
        let code = observed.get(c.name.as_str())?.exit_code()?;
        if should_restart(policy, code) {
            return None;
        }
        if code != 0 {
            succeeded = false;
        }
    }
    Some(succeeded)
}

/// The kubelet's crash-loop back-off: per container, 10 s doubling up to 5 min; a container
/// that ran 10 min without trouble starts over at 10 s.
#[derive(Debug)]
pub struct Backoff {
    initial: Duration,
    max: Duration,
    /// container name → (the exited attempt the back-off is for, restart allowed at, delay).
    entries: HashMap<String, (Instant, Duration)>,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff::new(Duration::from_secs(10), Duration::from_secs(300))
    }
}

impl Backoff {
    pub fn new(initial: Duration, max: Duration) -> Backoff {
        Backoff {
            initial,
            max,
            entries: HashMap::new(),
        }
    }

    /// For the exited attempt `id`: None if it may restart now (and the next delay is armed),
    /// else when it may.
    pub fn check(
        &mut self,
        id: &str,
        ran_for: Duration,
        now: Instant,
    ) -> Option<(Instant, Duration)> {
        if let Some((until, delay)) = self.entries.get(id) {
            return (now < *until).then_some((*until, *delay));
        }
        // First look at this exited attempt: arm the next delay, counting from the previous one.
        let previous = self
            .entries
            .iter()
            .filter(|(k, _)| k.as_str() != id)
            .map(|(_, (_, d))| *d)
            .max();
        let delay = match previous {
            _ if ran_for >= Duration::from_secs(600) => None,
            Some(d) => Some((d * 2).min(self.max)),
            None => None,
        };
        self.entries.clear();
        match delay {
            // The first exit restarts at once; its successor waits `initial`.
            None => {
                self.entries.insert(id.to_string(), (now, self.initial / 2));
                None
            }
            Some(d) => {
                self.entries.insert(id.to_string(), (now + d, d));
                Some((now + d, d))
            }
        }
    }
}

/// The image pull back-off (ErrImagePull, then ImagePullBackOff): same shape, per image.
#[derive(Debug, Default)]
pub struct PullBackoff {
    entries: HashMap<String, (Instant, Duration)>,
}

impl PullBackoff {
    /// Records a failed pull; returns the delay before the next try.
    pub fn failed(&mut self, image: &str, now: Instant) -> Duration {
        let delay = match self.entries.get(image) {
            Some((_, d)) => (*d * 2).min(Duration::from_secs(300)),
            None => Duration::from_secs(10),
        };
        self.entries.insert(image.to_string(), (now + delay, delay));
        delay
    }

    /// Some(until) while a pull of `image` must not be retried.
    pub fn blocked(&self, image: &str, now: Instant) -> Option<Instant> {
        self.entries
            .get(image)
            .and_then(|(until, _)| (now < *until).then_some(*until))
    }

    pub fn succeeded(&mut self, image: &str) {
        self.entries.remove(image);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exited(id: &str, name: &str, attempt: u32, code: i32) -> Observed {
        Observed {
            id: id.into(),
            sandbox_id: String::new(),
            name: name.into(),
            attempt,
            state: RunState::Exited {
                exit_code: code,
                reason: if code == 0 { "Completed" } else { "Error" }.into(),
                message: String::new(),
                started_at: 0,
                finished_at: 1_000_000,
            },
            image: String::new(),
            image_ref: String::new(),
            created_at: i64::from(attempt),
        }
    }

    #[test]
    fn restart_policies() {
        assert!(should_restart("Always", 0));
        assert!(should_restart("OnFailure", 1));
        assert!(!should_restart("OnFailure", 0));
        assert!(!should_restart("Never", 1));
    }

    #[test]
    fn crash_loop_back_off_doubles() {
        let mut b = Backoff::default();
        let t0 = Instant::now();
        let run = Duration::from_millis(10);
        // First exit: restart at once.
        assert_eq!(b.check("a0", run, t0), None);
        // Second exit: 10 s.
        let (until, delay) = b.check("a1", run, t0).unwrap();
        assert_eq!(delay, Duration::from_secs(10));
        assert_eq!(until, t0 + delay);
        assert!(b.check("a1", run, t0 + Duration::from_secs(5)).is_some());
        assert_eq!(b.check("a1", run, t0 + Duration::from_secs(10)), None);
        // Third exit: 20 s, then 40 s.
        assert_eq!(b.check("a2", run, t0).unwrap().1, Duration::from_secs(20));
        assert_eq!(b.check("a3", run, t0).unwrap().1, Duration::from_secs(40));
        // A long good run resets it.
        assert_eq!(b.check("a4", Duration::from_secs(700), t0), None);
    }

    #[test]
    fn decisions_follow_the_policy() {
        let mut b = Backoff::default();
        let now = Instant::now();
        assert_eq!(
            decide_container("Always", None, &mut b, now),
            Decision::Start { attempt: 0 }
        );
        let done = exited("x", "c", 0, 0);
        assert_eq!(
            decide_container("OnFailure", Some(&done), &mut b, now),
            Decision::Keep
        );
        assert_eq!(
            decide_container("Always", Some(&done), &mut b, now),
            Decision::Start { attempt: 1 }
        );
    }

    #[test]
    fn init_containers_run_in_order_and_fail_the_pod_under_never() {
        let spec: PodSpec = serde_json::from_value(serde_json::json!({
            "restartPolicy": "Never",
            "initContainers": [{"name": "a"}, {"name": "b"}],
            "containers": [{"name": "main"}],
        }))
        .unwrap();
        let now = Instant::now();
        let mut b = Backoff::default();
        let none = HashMap::new();
        assert_eq!(
            decide_init(&spec, &none, &mut b, now),
            InitStep::Act {
                index: 0,
                decision: Decision::Start { attempt: 0 }
            }
        );
        let a_ok = exited("1", "a", 0, 0);
        let b_bad = exited("2", "b", 0, 2);
        let obs: Vec<Observed> = vec![a_ok.clone(), b_bad];
        let latest = latest_by_name(&obs);
        assert_eq!(
            decide_init(&spec, &latest, &mut b, now),
            InitStep::Failed { index: 1 }
        );
        let obs = vec![a_ok, exited("3", "b", 0, 0)];
        assert_eq!(
            decide_init(&spec, &latest_by_name(&obs), &mut b, now),
            InitStep::Done
        );
    }

    #[test]
    fn completion_needs_every_container_done_for_good() {
        let containers: Vec<Container> =
            serde_json::from_value(serde_json::json!([{"name": "a"}, {"name": "b"}])).unwrap();
        let obs = vec![exited("1", "a", 0, 0), exited("2", "b", 0, 1)];
        let latest = latest_by_name(&obs);
        assert_eq!(completion(&containers, "Never", &latest), Some(false));
        assert_eq!(completion(&containers, "OnFailure", &latest), None);
        assert_eq!(completion(&containers, "Always", &latest), None);
        let obs = vec![exited("1", "a", 0, 0), exited("2", "b", 0, 0)];
        assert_eq!(
            completion(&containers, "OnFailure", &latest_by_name(&obs)),
            Some(true)
        );
    }
}
