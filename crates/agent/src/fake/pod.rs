//! The simulated pod life: one place says which states a pod bound to a simulated node goes
//! through and what status each state reports.
//!
//! ```text
//!   Pending ──start──▶ Running ──(restartPolicy Never/OnFailure, after fake-duration)──▶ Completed
//!      │                  │                                                               │
//!      └──────────────────┴──────────── deletionTimestamp set by a client ────────────────┴──▶ Terminating ──▶ removed
//! ```

use std::net::Ipv4Addr;
use std::time::Duration;

use k8s_openapi::api::core::v1::{
    Container, ContainerState, ContainerStateRunning, ContainerStateTerminated, ContainerStatus,
    HostIP, Pod, PodCondition, PodIP, PodStatus,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::{SignedDuration, Timestamp};

use super::duration::parse_go_duration;
use super::fake_hex;

/// How long a run-to-completion pod runs (Go duration; default 1s).
pub const DURATION_ANNOTATION: &str = "kubelab.dev/fake-duration";
/// `"true"`: a run-to-completion pod fails (exit code 1) instead of succeeding.
pub const FAIL_ANNOTATION: &str = "kubelab.dev/fake-fail";
pub const DEFAULT_DURATION: Duration = Duration::from_secs(1);

/// Where a pod bound to this node is in its simulated life.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stage {
    /// Bound but not started (no IP yet).
    Pending,
    /// Containers running; readiness probes count as passing.
    Running,
    /// Every container exited: phase Succeeded or Failed. Nothing more happens.
    Completed,
    /// A client deleted it: the node confirms with a grace-0 delete.
    Terminating,
}

impl Stage {
    pub fn of(pod: &Pod) -> Stage {
        if pod.metadata.deletion_timestamp.is_some() {
            return Stage::Terminating;
        }
        match phase(pod) {
            "Succeeded" | "Failed" => Stage::Completed,
            "Running" => Stage::Running,
            _ => Stage::Pending,
        }
    }
}

fn phase(pod: &Pod) -> &str {
    pod.status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or("Pending")
}

/// How a run-to-completion pod ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Completion {
    pub after: Duration,
    pub succeeded: bool,
}

/// None for pods that run until deleted (`restartPolicy: Always`, the default).
pub fn completion(pod: &Pod) -> Option<Completion> {
    let policy = pod
        .spec
        .as_ref()
        .and_then(|s| s.restart_policy.as_deref())
        .unwrap_or("Always");
    if policy == "Always" {
        return None;
    }
    let annotations = pod.metadata.annotations.as_ref();
    let after = annotations
        .and_then(|a| a.get(DURATION_ANNOTATION))
        .map(|d| {
            parse_go_duration(d).unwrap_or_else(|| {
                tracing::warn!(
                    pod = pod.metadata.name.as_deref().unwrap_or(""),
                    value = %d,
                    "invalid {DURATION_ANNOTATION}; using the default"
                );
                DEFAULT_DURATION
            })
        })
        .unwrap_or(DEFAULT_DURATION);
    let failed = annotations
        .and_then(|a| a.get(FAIL_ANNOTATION))
        .is_some_and(|v| v == "true");
    Some(Completion {
        after,
        succeeded: !failed,
    })
}

/// What the node decided when it started a pod; every status it reports derives from it, so
/// reporting is idempotent.
#[derive(Clone, Debug)]
pub struct Started {
    pub pod_ip: Ipv4Addr,
    pub host_ip: Ipv4Addr,
    /// Start time, whole seconds (what the API keeps).
    pub at: Timestamp,
}

/// Current time in whole seconds, as `metav1.Time` stores it.
pub fn now_seconds() -> Timestamp {
    truncate(Timestamp::now())
}

fn truncate(t: Timestamp) -> Timestamp {
    Timestamp::from_second(t.as_second()).unwrap_or(t)
}

/// Status of a running pod.
pub fn running_status(pod: &Pod, started: &Started, now: Timestamp) -> PodStatus {
    let mut status = base_status(pod, started);
    status.phase = Some("Running".into());
    let uid = pod.metadata.uid.as_deref().unwrap_or("");
    let spec = pod.spec.as_ref();
    let containers = spec.map(|s| s.containers.as_slice()).unwrap_or(&[]);
    let init = spec
        .and_then(|s| s.init_containers.as_deref())
        .unwrap_or(&[]);
    status.container_statuses = Some(
        containers
            .iter()
            .map(|c| container_status(uid, c, running(started.at)))
            .collect(),
    );
    status.init_container_statuses = (!init.is_empty()).then(|| {
        init.iter()
            .map(|c| {
                if is_sidecar(c) {
                    container_status(uid, c, running(started.at))
                } else {
                    container_status(uid, c, init_done(started.at))
                }
            })
            .collect()
    });
    let gates = unready_gates(pod);
    let ready_reason = (!gates.is_empty()).then_some("ReadinessGatesNotReady");
    status.conditions = Some(conditions(
        pod,
        now,
        &[
            ("PodReadyToStartContainers", true, None),
            ("Initialized", true, None),
            ("Ready", gates.is_empty(), ready_reason),
            ("ContainersReady", true, None),
            ("PodScheduled", true, None),
        ],
    ));
    status
}

/// Status of a run-to-completion pod once its containers exited.
pub fn completed_status(
    pod: &Pod,
    started: &Started,
    completion: &Completion,
    now: Timestamp,
) -> PodStatus {
    let finished = truncate(
        started
            .at
            .checked_add(SignedDuration::try_from(completion.after).unwrap_or_default())
            .unwrap_or(started.at),
    );
    let code = if completion.succeeded { 0 } else { 1 };
    let mut status = exited_status(pod, started, started.at, finished, code);
    status.phase = Some(
        if completion.succeeded {
            "Succeeded"
        } else {
            "Failed"
        }
        .into(),
    );
    let reason = if completion.succeeded {
        "PodCompleted"
    } else {
        "PodFailed"
    };
    status.conditions = Some(conditions(
        pod,
        now,
        &[
            ("PodReadyToStartContainers", false, None),
            ("Initialized", true, None),
            ("Ready", false, Some(reason)),
            ("ContainersReady", false, Some(reason)),
            ("PodScheduled", true, None),
        ],
    ));
    status
}

/// Status of a deleted pod whose containers were just stopped (the phase stays; the pod is
/// removed right after).
pub fn terminating_status(pod: &Pod, started: &Started, now: Timestamp) -> PodStatus {
    let mut status = exited_status(pod, started, started.at, now, 0);
    status.conditions = Some(conditions(
        pod,
        now,
        &[
            ("PodReadyToStartContainers", false, None),
            ("Initialized", true, None),
            ("Ready", false, Some("ContainersNotReady")),
            ("ContainersReady", false, Some("ContainersNotReady")),
            ("PodScheduled", true, None),
        ],
    ));
    status
}

fn exited_status(
    pod: &Pod,
    started: &Started,
    from: Timestamp,
    until: Timestamp,
    code: i32,
) -> PodStatus {
    let mut status = base_status(pod, started);
    let uid = pod.metadata.uid.as_deref().unwrap_or("");
    let spec = pod.spec.as_ref();
    let containers = spec.map(|s| s.containers.as_slice()).unwrap_or(&[]);
    let init = spec
        .and_then(|s| s.init_containers.as_deref())
        .unwrap_or(&[]);
    status.container_statuses = Some(
        containers
            .iter()
            .map(|c| container_status(uid, c, exited(from, until, code)))
            .collect(),
    );
    status.init_container_statuses = (!init.is_empty()).then(|| {
        init.iter()
            .map(|c| {
                if is_sidecar(c) {
                    container_status(uid, c, exited(from, until, 0))
                } else {
                    container_status(uid, c, init_done(from))
                }
            })
            .collect()
    });
    status
}

/// Everything but phase, conditions and container statuses, from the pod's current status.
fn base_status(pod: &Pod, started: &Started) -> PodStatus {
    let mut status = pod.status.clone().unwrap_or_default();
    status.host_ip = Some(started.host_ip.to_string());
    status.host_ips = Some(vec![HostIP {
        ip: started.host_ip.to_string(),
    }]);
    status.pod_ip = Some(started.pod_ip.to_string());
    status.pod_ips = Some(vec![PodIP {
        ip: started.pod_ip.to_string(),
    }]);
    status.start_time = Some(Time(started.at));
    status
}

enum ContainerLife {
    Running {
        since: Timestamp,
    },
    Exited {
        from: Timestamp,
        until: Timestamp,
        code: i32,
        /// A completed init container reports ready, like the kubelet.
        ready: bool,
    },
}

fn running(since: Timestamp) -> ContainerLife {
    ContainerLife::Running { since }
}

fn exited(from: Timestamp, until: Timestamp, code: i32) -> ContainerLife {
    ContainerLife::Exited {
        from,
        until,
        code,
        ready: false,
    }
}

fn init_done(at: Timestamp) -> ContainerLife {
    ContainerLife::Exited {
        from: at,
        until: at,
        code: 0,
        ready: true,
    }
}

fn is_sidecar(c: &Container) -> bool {
    c.restart_policy.as_deref() == Some("Always")
}

fn container_status(pod_uid: &str, c: &Container, life: ContainerLife) -> ContainerStatus {
    let image = c.image.clone().unwrap_or_default();
    let (image_name, image_id) = image_reference(&image);
    let container_id = format!("kubelab-fake://{}", fake_hex(&[pod_uid, &c.name]));
    let (ready, started, state) = match life {
        ContainerLife::Running { since } => (
            true,
            true,
            ContainerState {
                running: Some(ContainerStateRunning {
                    started_at: Some(Time(since)),
                }),
                ..Default::default()
            },
        ),
        ContainerLife::Exited {
            from,
            until,
            code,
            ready,
        } => (
            ready,
            false,
            ContainerState {
                terminated: Some(ContainerStateTerminated {
                    container_id: Some(container_id.clone()),
                    exit_code: code,
                    reason: Some(if code == 0 { "Completed" } else { "Error" }.into()),
                    started_at: Some(Time(from)),
                    finished_at: Some(Time(until)),
                    ..Default::default()
                }),
                ..Default::default()
            },
        ),
    };
    ContainerStatus {
        name: c.name.clone(),
        image: image_name,
        image_id,
        container_id: Some(container_id),
        ready,
        started: Some(started),
        restart_count: 0,
        state: Some(state),
        last_state: Some(ContainerState::default()),
        ..Default::default()
    }
}

/// Conditions in the kubelet's order, each keeping its lastTransitionTime while its status
/// holds; conditions the node does not own (DisruptionTarget, readiness gates) are kept.
fn conditions(
    pod: &Pod,
    now: Timestamp,
    owned: &[(&str, bool, Option<&str>)],
) -> Vec<PodCondition> {
    let current: &[PodCondition] = pod
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_deref())
        .unwrap_or(&[]);
    let mut out: Vec<PodCondition> = owned
        .iter()
        .map(|&(type_, ok, reason)| {
            let status = if ok { "True" } else { "False" };
            let transition = current
                .iter()
                .find(|c| c.type_ == type_ && c.status == status)
                .and_then(|c| c.last_transition_time.clone())
                .unwrap_or(Time(now));
            PodCondition {
                type_: type_.into(),
                status: status.into(),
                reason: reason.map(Into::into),
                last_transition_time: Some(transition),
                ..Default::default()
            }
        })
        .collect();
    out.extend(
        current
            .iter()
            .filter(|c| !owned.iter().any(|(t, _, _)| *t == c.type_))
            .cloned(),
    );
    out
}

/// Readiness gates whose condition is not True.
fn unready_gates(pod: &Pod) -> Vec<String> {
    let gates = pod
        .spec
        .as_ref()
        .and_then(|s| s.readiness_gates.as_deref())
        .unwrap_or(&[]);
    let conditions = pod
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_deref())
        .unwrap_or(&[]);
    gates
        .iter()
        .filter(|g| {
            !conditions
                .iter()
                .any(|c| c.type_ == g.condition_type && c.status == "True")
        })
        .map(|g| g.condition_type.clone())
        .collect()
}

/// The image as a runtime reports it (`docker.io/library/busybox:latest`) and a stable fake
/// image ID (`docker.io/library/busybox@sha256:…`).
pub fn image_reference(image: &str) -> (String, String) {
    let (name, digest) = match image.split_once('@') {
        Some((n, d)) => (n, Some(d.to_string())),
        None => (image, None),
    };
    let (repository, tag) = match name.rsplit_once(':') {
        Some((repo, tag)) if !tag.contains('/') => (repo, Some(tag)),
        _ => (name, None),
    };
    let first = repository.split('/').next().unwrap_or("");
    let has_domain = repository.contains('/')
        && (first.contains('.') || first.contains(':') || first == "localhost");
    let repository = if has_domain {
        repository.to_string()
    } else if repository.contains('/') {
        format!("docker.io/{repository}")
    } else {
        format!("docker.io/library/{repository}")
    };
    let shown = match (&digest, tag) {
        (Some(d), _) => format!("{repository}@{d}"),
        (None, Some(t)) => format!("{repository}:{t}"),
        (None, None) => format!("{repository}:latest"),
    };
    let digest = digest.unwrap_or_else(|| format!("sha256:{}", fake_hex(&["image", &shown])));
    (shown, format!("{repository}@{digest}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(yaml: serde_json::Value) -> Pod {
        serde_json::from_value(yaml).unwrap()
    }

    fn web() -> Pod {
        pod(serde_json::json!({
            "metadata": {"name": "web", "namespace": "default", "uid": "u1"},
            "spec": {
                "nodeName": "fake-node-1",
                "initContainers": [{"name": "init", "image": "busybox"}],
                "containers": [{"name": "c", "image": "nginx:1.27"}]
            },
            "status": {
                "phase": "Pending",
                "qosClass": "BestEffort",
                "conditions": [{"type": "PodScheduled", "status": "True",
                                "lastTransitionTime": "2024-01-01T00:00:00Z"}]
            }
        }))
    }

    fn started() -> Started {
        Started {
            pod_ip: Ipv4Addr::new(10, 244, 1, 2),
            host_ip: Ipv4Addr::new(172, 31, 0, 2),
            at: Timestamp::from_second(1_700_000_000).unwrap(),
        }
    }

    #[test]
    fn stages_follow_phase_and_deletion() {
        let mut p = web();
        assert_eq!(Stage::of(&p), Stage::Pending);
        p.status.as_mut().unwrap().phase = Some("Running".into());
        assert_eq!(Stage::of(&p), Stage::Running);
        p.status.as_mut().unwrap().phase = Some("Failed".into());
        assert_eq!(Stage::of(&p), Stage::Completed);
        p.metadata.deletion_timestamp = Some(Time(Timestamp::now()));
        assert_eq!(Stage::of(&p), Stage::Terminating);
    }

    #[test]
    fn running_status_is_complete_and_idempotent() {
        let p = web();
        let now = Timestamp::from_second(1_700_000_005).unwrap();
        let s = running_status(&p, &started(), now);
        assert_eq!(s.phase.as_deref(), Some("Running"));
        assert_eq!(s.pod_ip.as_deref(), Some("10.244.1.2"));
        assert_eq!(s.host_ip.as_deref(), Some("172.31.0.2"));
        assert_eq!(s.qos_class.as_deref(), Some("BestEffort"));
        let cs = &s.container_statuses.as_ref().unwrap()[0];
        assert!(cs.ready && cs.started == Some(true) && cs.restart_count == 0);
        assert_eq!(cs.image, "docker.io/library/nginx:1.27");
        assert!(cs.image_id.starts_with("docker.io/library/nginx@sha256:"));
        assert!(cs
            .container_id
            .as_deref()
            .unwrap()
            .starts_with("kubelab-fake://"));
        assert!(cs.state.as_ref().unwrap().running.is_some());
        let init = &s.init_container_statuses.as_ref().unwrap()[0];
        let term = init.state.as_ref().unwrap().terminated.as_ref().unwrap();
        assert_eq!(term.reason.as_deref(), Some("Completed"));
        let conds = s.conditions.as_ref().unwrap();
        let types: Vec<_> = conds.iter().map(|c| c.type_.as_str()).collect();
        assert_eq!(
            types,
            [
                "PodReadyToStartContainers",
                "Initialized",
                "Ready",
                "ContainersReady",
                "PodScheduled"
            ]
        );
        assert!(conds.iter().all(|c| c.status == "True"));
        let scheduled = conds.iter().find(|c| c.type_ == "PodScheduled").unwrap();
        assert_eq!(
            scheduled.last_transition_time,
            Some(Time(Timestamp::from_second(1_704_067_200).unwrap()))
        );
        // Reporting again later changes nothing.
        let mut again = p.clone();
        again.status = Some(s.clone());
        let later = Timestamp::from_second(1_700_000_100).unwrap();
        assert_eq!(running_status(&again, &started(), later), s);
    }

    #[test]
    fn completion_follows_restart_policy_and_annotations() {
        let mut p = web();
        assert_eq!(completion(&p), None);
        p.spec.as_mut().unwrap().restart_policy = Some("Never".into());
        assert_eq!(
            completion(&p),
            Some(Completion {
                after: Duration::from_secs(1),
                succeeded: true
            })
        );
        p.metadata.annotations = Some(
            [
                (DURATION_ANNOTATION.to_string(), "250ms".to_string()),
                (FAIL_ANNOTATION.to_string(), "true".to_string()),
            ]
            .into(),
        );
        let c = completion(&p).unwrap();
        assert_eq!(c.after, Duration::from_millis(250));
        assert!(!c.succeeded);
        let s = completed_status(&p, &started(), &c, Timestamp::now());
        assert_eq!(s.phase.as_deref(), Some("Failed"));
        let cs = &s.container_statuses.as_ref().unwrap()[0];
        let term = cs.state.as_ref().unwrap().terminated.as_ref().unwrap();
        assert_eq!((term.exit_code, term.reason.as_deref()), (1, Some("Error")));
        assert!(!cs.ready);
        let ready = s
            .conditions
            .as_ref()
            .unwrap()
            .iter()
            .find(|c| c.type_ == "Ready")
            .unwrap();
        assert_eq!(ready.status, "False");
    }

    #[test]
    fn image_references_are_normalized() {
        let (shown, id) = image_reference("busybox");
        assert_eq!(shown, "docker.io/library/busybox:latest");
        assert!(id.starts_with("docker.io/library/busybox@sha256:") && id.len() > 40);
        assert_eq!(
            image_reference("registry.k8s.io/pause:3.10").0,
            "registry.k8s.io/pause:3.10"
        );
        assert_eq!(
            image_reference("bitnami/redis").0,
            "docker.io/bitnami/redis:latest"
        );
        assert_eq!(
            image_reference("localhost:5000/app:v1").0,
            "localhost:5000/app:v1"
        );
        let (_, id) = image_reference("nginx@sha256:abc");
        assert_eq!(id, "docker.io/library/nginx@sha256:abc");
    }

    #[test]
    fn readiness_gates_hold_ready_back() {
        let mut p = web();
        p.spec.as_mut().unwrap().readiness_gates =
            Some(vec![k8s_openapi::api::core::v1::PodReadinessGate {
                condition_type: "example.com/lb".into(),
            }]);
        let s = running_status(&p, &started(), Timestamp::now());
        let ready = s
            .conditions
            .as_ref()
            .unwrap()
            .iter()
            .find(|c| c.type_ == "Ready")
            .unwrap();
        assert_eq!(ready.status, "False");
    }
}
