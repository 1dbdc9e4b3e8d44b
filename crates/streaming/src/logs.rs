//! Container logs: whether a container has logs to show, from the pod's status, with the
//! kubelet's wording (`validateContainerLogStatus`): `kubectl logs` prints these messages as
//! `Error from server (BadRequest): ...`.

use serde_json::Value;

/// Which instance of the container the logs are asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LogSource {
    /// The running (or last terminated) instance: its container id.
    Current(String),
    /// `previous=true`: the instance before the current one.
    Previous(String),
}

/// Check that `container` of `pod` (a Pod as JSON) has logs, and say which instance they
/// come from; the error is the kubelet's message.
pub fn container_log_source(
    pod: &Value,
    container: &str,
    previous: bool,
) -> Result<LogSource, String> {
    let pod_name = pod
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let status = [
        "containerStatuses",
        "initContainerStatuses",
        "ephemeralContainerStatuses",
    ]
    .iter()
    .filter_map(|key| pod.pointer(&format!("/status/{key}"))?.as_array())
    .flatten()
    .find(|s| s.get("name").and_then(Value::as_str) == Some(container));
    let Some(status) = status else {
        // The kubelet reports every container of a pod it admitted, "ContainerCreating"
        // until it starts; a pending pod without statuses is at that stage.
        let phase = pod.pointer("/status/phase").and_then(Value::as_str);
        if matches!(phase, None | Some("Pending")) {
            return Err(format!(
                "container {container:?} in pod {pod_name:?} is waiting to start: ContainerCreating"
            ));
        }
        return Err(format!(
            "container {container:?} in pod {pod_name:?} is not available"
        ));
    };
    let id = |v: Option<&Value>| -> String {
        v.and_then(|t| t.get("containerID"))
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string()
    };
    let last_terminated = status.pointer("/lastState/terminated");
    let state = status.get("state");
    let waiting = state.and_then(|s| s.get("waiting"));
    let running = state.and_then(|s| s.get("running"));
    let terminated = state.and_then(|s| s.get("terminated"));
    if previous {
        let last = id(last_terminated);
        if last.is_empty() {
            return Err(format!(
                "previous terminated container {container:?} in pod {pod_name:?} not found"
            ));
        }
        return Ok(LogSource::Previous(last));
    }
    if running.is_some() {
        return Ok(LogSource::Current(id(Some(status))));
    }
    if terminated.is_some() {
        let current = id(terminated);
        if !current.is_empty() {
            return Ok(LogSource::Current(current));
        }
        let last = id(last_terminated);
        if !last.is_empty() {
            return Ok(LogSource::Current(last));
        }
        return Err(format!(
            "container {container:?} in pod {pod_name:?} is terminated"
        ));
    }
    if last_terminated.is_some() {
        let last = id(last_terminated);
        if last.is_empty() {
            return Err(format!(
                "container {container:?} in pod {pod_name:?} is terminated"
            ));
        }
        return Ok(LogSource::Current(last));
    }
    if let Some(waiting) = waiting {
        let reason = waiting
            .get("reason")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let why = match reason {
            "ErrImagePull" => "image can't be pulled".to_string(),
            "ImagePullBackOff" => "trying and failing to pull image".to_string(),
            other => other.to_string(),
        };
        return Err(format!(
            "container {container:?} in pod {pod_name:?} is waiting to start: {why}"
        ));
    }
    Err(format!(
        "container {container:?} in pod {pod_name:?} is waiting to start - no logs yet"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(statuses: Value) -> Value {
        json!({"metadata": {"name": "web"}, "status": {"containerStatuses": statuses}})
    }

    #[test]
    fn waiting_containers_have_no_logs_yet() {
        let p = pod(json!([{"name": "c", "state": {"waiting": {"reason": "ContainerCreating"}}}]));
        assert_eq!(
            container_log_source(&p, "c", false).unwrap_err(),
            "container \"c\" in pod \"web\" is waiting to start: ContainerCreating"
        );
        let p = pod(json!([{"name": "c", "state": {"waiting": {"reason": "ImagePullBackOff"}}}]));
        assert_eq!(
            container_log_source(&p, "c", false).unwrap_err(),
            "container \"c\" in pod \"web\" is waiting to start: trying and failing to pull image"
        );
        let p = json!({"metadata": {"name": "web"}, "status": {"phase": "Pending"}});
        assert_eq!(
            container_log_source(&p, "c", false).unwrap_err(),
            "container \"c\" in pod \"web\" is waiting to start: ContainerCreating"
        );
        let p = json!({"metadata": {"name": "web"}, "status": {"phase": "Running"}});
        assert_eq!(
            container_log_source(&p, "c", false).unwrap_err(),
            "container \"c\" in pod \"web\" is not available"
        );
    }

    #[test]
    fn running_terminated_and_previous() {
        let p = pod(json!([{"name": "c", "containerID": "containerd://a",
            "state": {"running": {}},
            "lastState": {"terminated": {"containerID": "containerd://old", "exitCode": 1}}}]));
        assert_eq!(
            container_log_source(&p, "c", false),
            Ok(LogSource::Current("containerd://a".into()))
        );
        assert_eq!(
            container_log_source(&p, "c", true),
            Ok(LogSource::Previous("containerd://old".into()))
        );
        let fresh = pod(json!([{"name": "c", "containerID": "x", "state": {"running": {}}}]));
        assert_eq!(
            container_log_source(&fresh, "c", true).unwrap_err(),
            "previous terminated container \"c\" in pod \"web\" not found"
        );
        let crashed = pod(
            json!([{"name": "c", "state": {"waiting": {"reason": "CrashLoopBackOff"}},
            "lastState": {"terminated": {"containerID": "containerd://b"}}}]),
        );
        assert_eq!(
            container_log_source(&crashed, "c", false),
            Ok(LogSource::Current("containerd://b".into()))
        );
    }
}
