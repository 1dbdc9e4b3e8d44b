//! The pod status the kubelet reports, computed from the lifecycle stage and what the runtime
//! and the probes say: phase, conditions, container statuses (state, lastState, ready,
//! started, restartCount, image, imageID, containerID), pod IPs, host IPs, startTime, qosClass.

use std::collections::HashMap;

use k8s_openapi::api::core::v1::{Container, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use serde_json::{json, Value};

use super::lifecycle::{latest_by_name, Observed, RunState, Stage};
use super::probes::ContainerProbes;

pub struct Input<'a> {
    pub pod: &'a Pod,
    pub stage: &'a Stage,
    pub containers: &'a [Observed],
    pub sandbox_ready: bool,
    pub pod_ip: Option<&'a str>,
    pub host_ip: &'a str,
    pub waiting: &'a HashMap<String, (String, String)>,
    pub probes: &'a HashMap<String, ContainerProbes>,
    pub termination_messages: &'a (dyn Fn(&str) -> Option<String> + Sync),
}

fn time(nanos: i64) -> Value {
    let t = Timestamp::from_nanosecond(i128::from(nanos)).unwrap_or(Timestamp::UNIX_EPOCH);
    serde_json::to_value(Time(t)).unwrap_or(Value::Null)
}

fn terminated(o: &Observed, message: Option<String>) -> Value {
    match &o.state {
        RunState::Exited {
            exit_code,
            reason,
            message: runtime_message,
            started_at,
            finished_at,
        } => {
            let mut v = json!({
                "exitCode": exit_code,
                "reason": if reason.is_empty() { if *exit_code == 0 { "Completed" } else { "Error" } } else { reason.as_str() },
                "startedAt": time(*started_at),
                "finishedAt": time(*finished_at),
                "containerID": format!("containerd://{}", o.id),
            });
            let msg =
                message.or_else(|| (!runtime_message.is_empty()).then(|| runtime_message.clone()));
            if let Some(m) = msg {
                v["message"] = json!(m);
            }
            v
        }
        _ => Value::Null,
    }
}

/// Status of each container of `list` (init or regular).
fn container_statuses(
    input: &Input<'_>,
    list: &[Container],
    init: bool,
    initialized: bool,
) -> Vec<Value> {
    let latest = latest_by_name(input.containers);
    list.iter()
        .map(|c| {
            let mut attempts: Vec<&Observed> = input.containers.iter().filter(|o| o.name == c.name).collect();
            attempts.sort_by_key(|o| std::cmp::Reverse((o.attempt, o.created_at)));
            let l = latest.get(c.name.as_str()).copied();
            let previous = attempts.get(1).copied();
            let probes = input.probes.get(&c.name).filter(|p| l.is_some_and(|o| o.id == p.container_id));
            let waiting = input.waiting.get(&c.name);
            let running = l.is_some_and(|o| o.is_running());
            let (state, last_state) = match (l, waiting) {
                (Some(o), _) if running => (
                    json!({"running": {"startedAt": match o.state { RunState::Running { started_at } => time(started_at), _ => Value::Null }}}),
                    previous.map(|p| json!({"terminated": terminated(p, None)})),
                ),
                (Some(o), Some((reason, message))) if matches!(o.state, RunState::Exited { .. }) => (
                    json!({"waiting": {"reason": reason, "message": message}}),
                    Some(json!({"terminated": terminated(o, (input.termination_messages)(&c.name))})),
                ),
                (Some(o), None) if matches!(o.state, RunState::Exited { .. }) => (
                    json!({"terminated": terminated(o, (input.termination_messages)(&c.name))}),
                    previous.map(|p| json!({"terminated": terminated(p, None)})),
                ),
                (_, Some((reason, message))) => (
                    json!({"waiting": {"reason": reason, "message": message}}),
                    l.or(previous).filter(|o| matches!(o.state, RunState::Exited { .. })).map(|o| json!({"terminated": terminated(o, None)})),
                ),
                _ => {
                    let reason = if !init && !initialized { "PodInitializing" } else { "ContainerCreating" };
                    (json!({"waiting": {"reason": reason}}), None)
                }
            };
            let ready = running && probes.map_or(c.readiness_probe.is_none() && c.startup_probe.is_none(), |p| p.ready);
            let started = running && probes.map_or(c.startup_probe.is_none(), |p| p.started);
            let mut v = json!({
                "name": c.name,
                "state": state,
                "lastState": last_state.unwrap_or_else(|| json!({})),
                "ready": ready,
                "restartCount": l.map_or(0, |o| o.attempt),
                "image": c.image.clone().unwrap_or_default(),
                "imageID": l.map(|o| o.image_ref.clone()).unwrap_or_default(),
                "started": started,
            });
            if let Some(o) = l {
                v["containerID"] = json!(format!("containerd://{}", o.id));
            }
            v
        })
        .collect()
}

fn condition(
    current: &[Value],
    type_: &str,
    ok: bool,
    reason: Option<&str>,
    message: Option<String>,
) -> Value {
    let status = if ok { "True" } else { "False" };
    let now = serde_json::to_value(Time(Timestamp::now())).unwrap_or(Value::Null);
    let transition = current
        .iter()
        .find(|c| c["type"] == type_ && c["status"] == status)
        .map(|c| c["lastTransitionTime"].clone())
        .unwrap_or(now);
    let mut c = json!({"type": type_, "status": status, "lastProbeTime": null, "lastTransitionTime": transition});
    if let Some(r) = reason {
        c["reason"] = json!(r);
    }
    if let Some(m) = message {
        c["message"] = json!(m);
    }
    c
}

/// The pod's QoS class.
pub fn qos_class(pod: &Pod) -> &'static str {
    let containers: Vec<&Container> = pod
        .spec
        .iter()
        .flat_map(|s| {
            s.containers
                .iter()
                .chain(s.init_containers.iter().flatten())
        })
        .collect();
    let mut any = false;
    let mut guaranteed = true;
    for c in &containers {
        let res = c.resources.clone().unwrap_or_default();
        let requests = res.requests.unwrap_or_default();
        let limits = res.limits.unwrap_or_default();
        for r in ["cpu", "memory"] {
            let req = requests.get(r).or(limits.get(r));
            let lim = limits.get(r);
            if req.is_some() || lim.is_some() {
                any = true;
            }
            match (req, lim) {
                (Some(a), Some(b))
                    if super::quantity::parse(&a.0) == super::quantity::parse(&b.0) => {}
                _ => guaranteed = false,
            }
        }
    }
    if !any {
        "BestEffort"
    } else if guaranteed {
        "Guaranteed"
    } else {
        "Burstable"
    }
}

/// The status to write (a merge patch body's `status`).
pub fn pod_status(input: &Input<'_>) -> Value {
    let pod = input.pod;
    let spec = pod.spec.clone().unwrap_or_default();
    let current_conditions: Vec<Value> = pod
        .status
        .as_ref()
        .and_then(|s| serde_json::to_value(&s.conditions).ok())
        .and_then(|v| v.as_array().cloned())
        .unwrap_or_default();
    let initialized = !matches!(input.stage, Stage::Preparing | Stage::Initializing { .. });
    let init = container_statuses(
        input,
        spec.init_containers.as_deref().unwrap_or_default(),
        true,
        initialized,
    );
    let regular = container_statuses(input, &spec.containers, false, initialized);
    let any_started = input
        .containers
        .iter()
        .any(|o| !matches!(o.state, RunState::Created));
    let phase = input.stage.phase(any_started);
    let all_ready = !regular.is_empty() && regular.iter().all(|c| c["ready"] == true);
    let not_ready: Vec<String> = regular
        .iter()
        .filter(|c| c["ready"] != true)
        .map(|c| c["name"].as_str().unwrap_or("").to_string())
        .collect();
    let unready_message = (!not_ready.is_empty())
        .then(|| format!("containers with unready status: [{}]", not_ready.join(" ")));
    let gates_ok = spec.readiness_gates.iter().flatten().all(|g| {
        current_conditions
            .iter()
            .any(|c| c["type"] == g.condition_type.as_str() && c["status"] == "True")
    });
    let completed = matches!(input.stage, Stage::Completed { .. });
    let uninitialized: Vec<String> = init
        .iter()
        .filter(|c| c["state"]["terminated"]["exitCode"] != 0)
        .map(|c| c["name"].as_str().unwrap_or("").to_string())
        .collect();
    let mut conditions: Vec<Value> = current_conditions
        .iter()
        .filter(|c| {
            !matches!(
                c["type"].as_str(),
                Some("PodReadyToStartContainers" | "Initialized" | "Ready" | "ContainersReady")
            )
        })
        .cloned()
        .collect();
    conditions.push(condition(
        &current_conditions,
        "PodReadyToStartContainers",
        input.sandbox_ready,
        None,
        None,
    ));
    conditions.push(if initialized {
        condition(&current_conditions, "Initialized", true, None, None)
    } else {
        condition(
            &current_conditions,
            "Initialized",
            false,
            Some("ContainersNotInitialized"),
            Some(format!(
                "containers with incomplete status: [{}]",
                uninitialized.join(" ")
            )),
        )
    });
    let reason = |ok: bool| {
        if ok {
            None
        } else if completed {
            Some("PodCompleted")
        } else {
            Some("ContainersNotReady")
        }
    };
    let ready = all_ready && !completed;
    conditions.push(condition(
        &current_conditions,
        "ContainersReady",
        ready,
        reason(ready),
        if ready || completed {
            None
        } else {
            unready_message.clone()
        },
    ));
    let pod_ready = ready && gates_ok;
    conditions.push(condition(
        &current_conditions,
        "Ready",
        pod_ready,
        reason(pod_ready),
        if pod_ready || completed {
            None
        } else {
            unready_message
        },
    ));
    let start_time = pod
        .status
        .as_ref()
        .and_then(|s| s.start_time.clone())
        .unwrap_or(Time(Timestamp::now()));
    let mut status = json!({
        "phase": phase,
        "conditions": conditions,
        "hostIP": input.host_ip,
        "hostIPs": [{"ip": input.host_ip}],
        "startTime": start_time,
        "containerStatuses": regular,
        "qosClass": qos_class(pod),
    });
    if !init.is_empty() {
        status["initContainerStatuses"] = json!(init);
    }
    if let Some(ip) = input.pod_ip.filter(|ip| !ip.is_empty()) {
        status["podIP"] = json!(ip);
        status["podIPs"] = json!([{"ip": ip}]);
    }
    status
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn qos_classes() {
        let pod = |res: Value| -> Pod {
            serde_json::from_value(
                json!({"spec": {"containers": [{"name": "c", "resources": res}]}}),
            )
            .unwrap()
        };
        assert_eq!(qos_class(&pod(json!({}))), "BestEffort");
        assert_eq!(
            qos_class(&pod(json!({"limits": {"cpu": "1", "memory": "1Gi"}}))),
            "Guaranteed"
        );
        assert_eq!(
            qos_class(&pod(json!({"requests": {"cpu": "100m"}}))),
            "Burstable"
        );
    }
}
