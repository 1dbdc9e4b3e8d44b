//! `pods/log`: validated `PodLogOptions`, then the kubelet's `/containerLogs` streamed back.

use axum::response::{IntoResponse, Response};
use http::StatusCode;
use kubelab_resources::validation::FieldError;

use super::{kubelet_path, Params, Target};
use crate::error::{ApiError, ApiResult};

pub(super) async fn serve(target: &Target, query: &Params) -> ApiResult<Response> {
    let container = target.container(query.get("container"))?;
    let mut kubelet_query: Vec<(&str, String)> = Vec::new();
    let mut errors = Vec::new();
    let previous = query.flag("previous")?;
    for key in ["follow", "previous", "timestamps"] {
        if query.flag(key)? {
            kubelet_query.push((key, "true".into()));
        }
    }
    let since_seconds = query.int("sinceSeconds")?;
    let since_time = query.get("sinceTime").filter(|v| !v.is_empty());
    if let Some(s) = since_seconds {
        if s < 1 {
            errors.push(invalid(
                "sinceSeconds",
                format!("Invalid value: {s}: must be greater than 0"),
            ));
        }
        kubelet_query.push(("sinceSeconds", s.to_string()));
    }
    if let Some(t) = since_time {
        if t.parse::<jiff::Timestamp>().is_err() {
            return Err(ApiError::bad_request(format!(
                "sinceTime: {t:?} is not an RFC 3339 time"
            )));
        }
        kubelet_query.push(("sinceTime", t.to_string()));
    }
    if since_seconds.is_some() && since_time.is_some() {
        errors.push(FieldError {
            reason: "FieldValueForbidden",
            field: String::new(),
            message: "at most one of `sinceTime` or `sinceSeconds` may be specified".into(),
        });
    }
    if let Some(n) = query.int("tailLines")? {
        if n < 0 {
            errors.push(invalid(
                "tailLines",
                format!("Invalid value: {n}: must be greater than or equal to 0"),
            ));
        }
        kubelet_query.push(("tailLines", n.to_string()));
    }
    if let Some(n) = query.int("limitBytes")? {
        if n < 1 {
            errors.push(invalid(
                "limitBytes",
                format!("Invalid value: {n}: must be greater than 0"),
            ));
        }
        kubelet_query.push(("limitBytes", n.to_string()));
    }
    if !errors.is_empty() {
        return Err(ApiError::Invalid {
            group: String::new(),
            kind: "PodLogOptions".into(),
            name: target.pod_name.clone(),
            causes: errors,
        });
    }
    // An unscheduled pod has no logs yet: an empty answer, as upstream.
    if target.node_name().is_none() {
        return Ok(text(axum::body::Body::empty()));
    }
    // What the kubelet would say about a container without logs, from the pod's status.
    kubelab_streaming::logs::container_log_source(&target.pod, &container, previous)
        .map_err(ApiError::bad_request)?;
    let kubelet = target.kubelet().await?;
    let path = kubelet_path(
        format!(
            "/containerLogs/{}/{}/{container}",
            target.namespace, target.pod_name
        ),
        &kubelet_query,
    );
    let resp = target
        .client()
        .get(&kubelet, &path)
        .await
        .map_err(|r| r.into_api_error(&target.pod_name))?;
    Ok(text(axum::body::Body::new(resp.into_body())))
}

fn invalid(field: &str, message: String) -> FieldError {
    FieldError {
        reason: "FieldValueInvalid",
        field: field.into(),
        message,
    }
}

fn text(body: axum::body::Body) -> Response {
    (
        StatusCode::OK,
        [(http::header::CONTENT_TYPE, "text/plain")],
        body,
    )
        .into_response()
}
