//! The connect subresources of pods — `log`, `exec`, `attach`, `portforward` — served by
//! reaching the pod's kubelet ([`kubelet`]) and terminating the clients' protocols here:
//!
//! - `log`: a GET to the kubelet's `/containerLogs`, streamed back as text;
//! - `exec`/`attach`: a WebSocket `v5.channel.k8s.io` client is piped byte for byte to the
//!   kubelet's v5 endpoint; `v4.channel.k8s.io` clients are relayed message by message (close
//!   signals dropped); SPDY/3.1 clients (kubectl's fallback) are translated to v5 ([`exec`]);
//! - `portforward`: kubectl's SPDY (plain, or tunnelled in a WebSocket) is translated, one
//!   kubelet `v4.channel.k8s.io` WebSocket per forwarded connection; kube-rs's v4 WebSocket is
//!   piped ([`portforward`]).
//!
//! Each request is authenticated like any other; the pod and node are read from the store.

mod exec;
pub(crate) mod kubelet;
mod logs;
mod portforward;

use std::sync::Arc;

use axum::response::{IntoResponse, Response};
use http::request::Parts;
use http::{HeaderMap, Method, StatusCode};
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use serde_json::Value;

use crate::error::{ApiError, ApiResult};
use crate::handlers::ApiState;
use crate::route::{self, Route};

pub use kubelet::KubeletRoutes;

/// The connect subresources handled here.
const SUBRESOURCES: [&str; 4] = ["log", "exec", "attach", "portforward"];

/// Serve `path` when it names a pod connect subresource; `None` for every other path.
pub(crate) async fn intercept(
    state: &Arc<ApiState>,
    path: &str,
    parts: &mut Parts,
) -> Option<Response> {
    let Some(Route::Resource(p)) = route::parse(path) else {
        return None;
    };
    if !(p.group.is_empty() && p.version == "v1" && p.resource == "pods") {
        return None;
    }
    let (Some(ns), Some(name), Some(sub)) = (&p.namespace, &p.name, &p.subresource) else {
        return None;
    };
    if !SUBRESOURCES.contains(&sub.as_str()) {
        return None;
    }
    let result = serve(state, ns, name, sub, parts).await;
    Some(result.unwrap_or_else(IntoResponse::into_response))
}

async fn serve(
    state: &Arc<ApiState>,
    ns: &str,
    name: &str,
    sub: &str,
    parts: &mut Parts,
) -> ApiResult<Response> {
    let allowed = match sub {
        "log" => parts.method == Method::GET,
        _ => parts.method == Method::GET || parts.method == Method::POST,
    };
    if !allowed {
        return Err(ApiError::MethodNotAllowed);
    }
    let query = Params::parse(parts.uri.query())?;
    let pods = state
        .registry
        .find_type("", "v1", "pods")
        .ok_or_else(|| ApiError::internal("the pods resource is not served"))?;
    let pod = state.registry.get(pods, Some(ns), name).await?;
    let target = Target {
        state: state.clone(),
        namespace: ns.to_string(),
        pod_name: name.to_string(),
        pod,
    };
    match sub {
        "log" => logs::serve(&target, &query).await,
        "exec" | "attach" => exec::serve(&target, sub == "exec", &query, parts).await,
        _ => portforward::serve(&target, &query, parts).await,
    }
}

/// The pod a streaming request is about.
pub(crate) struct Target {
    state: Arc<ApiState>,
    namespace: String,
    pod_name: String,
    pod: Value,
}

impl Target {
    fn node_name(&self) -> Option<&str> {
        self.pod
            .pointer("/spec/nodeName")
            .and_then(Value::as_str)
            .filter(|n| !n.is_empty())
    }

    fn phase(&self) -> &str {
        self.pod
            .pointer("/status/phase")
            .and_then(Value::as_str)
            .unwrap_or("Pending")
    }

    /// The kubelet of the pod's node; an unscheduled pod is an error.
    async fn kubelet(&self) -> ApiResult<kubelet::Kubelet> {
        let node = self.node_name().ok_or_else(|| {
            ApiError::bad_request(format!(
                "pod {} does not have a host assigned",
                self.pod_name
            ))
        })?;
        self.state.kubelet.locate(&self.state.registry, node).await
    }

    fn client(&self) -> &kubelet::KubeletClient {
        &self.state.kubelet
    }

    /// Every container name: init, regular, ephemeral (upstream's `VisitContainers` order).
    fn container_names(&self) -> Vec<&str> {
        ["initContainers", "containers", "ephemeralContainers"]
            .iter()
            .filter_map(|k| self.pod.pointer(&format!("/spec/{k}"))?.as_array())
            .flatten()
            .filter_map(|c| c.get("name")?.as_str())
            .collect()
    }

    /// The container a request names, or the only one (upstream's `validateContainer`).
    fn container(&self, requested: Option<&str>) -> ApiResult<String> {
        match requested.filter(|c| !c.is_empty()) {
            Some(c) => {
                if self.container_names().contains(&c) {
                    Ok(c.to_string())
                } else {
                    Err(ApiError::bad_request(format!(
                        "container {c} is not valid for pod {}",
                        self.pod_name
                    )))
                }
            }
            None => {
                let containers: Vec<&str> = self
                    .pod
                    .pointer("/spec/containers")
                    .and_then(Value::as_array)
                    .map(|a| a.iter().filter_map(|c| c.get("name")?.as_str()).collect())
                    .unwrap_or_default();
                match containers.as_slice() {
                    [one] => Ok(one.to_string()),
                    [] => Err(ApiError::bad_request(format!(
                        "pod {} does not have a container",
                        self.pod_name
                    ))),
                    _ => Err(ApiError::bad_request(format!(
                        "a container name must be specified for pod {}, choose one of: [{}]",
                        self.pod_name,
                        self.container_names().join(" ")
                    ))),
                }
            }
        }
    }
}

/// Query parameters with repeated keys (`command`, `ports`).
pub(crate) struct Params(Vec<(String, String)>);

impl Params {
    fn parse(raw: Option<&str>) -> ApiResult<Params> {
        match raw {
            None | Some("") => Ok(Params(Vec::new())),
            Some(raw) => serde_urlencoded::from_str(raw)
                .map(Params)
                .map_err(|e| ApiError::bad_request(format!("invalid query string: {e}"))),
        }
    }

    fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    fn all<'a>(&'a self, key: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.0
            .iter()
            .filter(move |(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    fn flag(&self, key: &str) -> ApiResult<bool> {
        match self.get(key) {
            None | Some("") | Some("false") | Some("0") => Ok(false),
            Some("true") | Some("1") => Ok(true),
            Some(other) => Err(ApiError::bad_request(format!(
                "invalid value for {key}: {other:?} is not a boolean"
            ))),
        }
    }

    fn int(&self, key: &str) -> ApiResult<Option<i64>> {
        match self.get(key).filter(|v| !v.is_empty()) {
            None => Ok(None),
            Some(v) => v.parse().map(Some).map_err(|_| {
                ApiError::bad_request(format!("invalid value for {key}: {v:?} is not an integer"))
            }),
        }
    }
}

/// The path and query of a kubelet request.
fn kubelet_path(path: String, query: &[(&str, String)]) -> String {
    if query.is_empty() {
        return path;
    }
    let q = serde_urlencoded::to_string(query).unwrap_or_default();
    format!("{path}?{q}")
}

/// The WebSocket sub-protocols of an upgrade request, or `None` when it is not a WebSocket
/// upgrade.
fn websocket_protocols(headers: &HeaderMap) -> Option<Vec<String>> {
    let upgrade = headers
        .get_all(http::header::UPGRADE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| {
            v.split(',')
                .any(|t| t.trim().eq_ignore_ascii_case("websocket"))
        });
    upgrade.then(|| {
        kubelab_streaming::channel::offered_protocols(
            headers
                .get_all(http::header::SEC_WEBSOCKET_PROTOCOL)
                .iter()
                .filter_map(|v| v.to_str().ok()),
        )
    })
}

/// Whether the request asks for a SPDY/3.1 upgrade; its offered sub-protocols if so.
fn spdy_protocols(headers: &HeaderMap) -> Option<Vec<String>> {
    let upgrade = headers
        .get_all(http::header::UPGRADE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| {
            v.split(',').any(|t| {
                t.trim()
                    .eq_ignore_ascii_case(kubelab_streaming::spdy::UPGRADE)
            })
        });
    upgrade.then(|| {
        kubelab_streaming::remotecommand::offered_versions(
            headers
                .get_all(kubelab_streaming::spdy::PROTOCOL_HEADER)
                .iter()
                .filter_map(|v| v.to_str().ok()),
        )
    })
}

/// The connection upgrade of this request (HTTP/1.1 only).
fn on_upgrade(parts: &mut Parts) -> ApiResult<OnUpgrade> {
    parts
        .extensions
        .remove::<OnUpgrade>()
        .ok_or_else(|| ApiError::bad_request("streaming requires an HTTP/1.1 connection upgrade"))
}

/// 101 for a WebSocket handshake with `protocol`.
fn websocket_accept(headers: &HeaderMap, protocol: &str) -> ApiResult<Response> {
    let key = headers
        .get(http::header::SEC_WEBSOCKET_KEY)
        .ok_or_else(|| ApiError::bad_request("missing Sec-WebSocket-Key"))?;
    let accept = tokio_tungstenite::tungstenite::handshake::derive_accept_key(key.as_bytes());
    Response::builder()
        .status(StatusCode::SWITCHING_PROTOCOLS)
        .header(http::header::CONNECTION, "Upgrade")
        .header(http::header::UPGRADE, "websocket")
        .header(http::header::SEC_WEBSOCKET_ACCEPT, accept)
        .header(http::header::SEC_WEBSOCKET_PROTOCOL, protocol)
        .body(axum::body::Body::empty())
        .map_err(ApiError::internal)
}

/// 101 for a SPDY/3.1 upgrade with Kubernetes sub-protocol `protocol`.
fn spdy_accept(protocol: &str) -> ApiResult<Response> {
    Response::builder()
        .status(StatusCode::SWITCHING_PROTOCOLS)
        .header(http::header::CONNECTION, "Upgrade")
        .header(http::header::UPGRADE, kubelab_streaming::spdy::UPGRADE)
        .header(kubelab_streaming::spdy::PROTOCOL_HEADER, protocol)
        .body(axum::body::Body::empty())
        .map_err(ApiError::internal)
}

/// Run `f` on the client's connection once the 101 went out.
fn after_upgrade<F, Fut>(upgrade: OnUpgrade, f: F)
where
    F: FnOnce(TokioIo<hyper::upgrade::Upgraded>) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    tokio::spawn(async move {
        match upgrade.await {
            Ok(upgraded) => f(TokioIo::new(upgraded)).await,
            Err(e) => tracing::debug!(error = %e, "client connection upgrade failed"),
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upgrade_kinds() {
        let mut h = HeaderMap::new();
        h.insert(http::header::UPGRADE, "websocket".parse().unwrap());
        h.insert(
            http::header::SEC_WEBSOCKET_PROTOCOL,
            "v5.channel.k8s.io, v4.channel.k8s.io".parse().unwrap(),
        );
        assert_eq!(
            websocket_protocols(&h),
            Some(vec!["v5.channel.k8s.io".into(), "v4.channel.k8s.io".into()])
        );
        assert_eq!(spdy_protocols(&h), None);
        let mut h = HeaderMap::new();
        h.insert(http::header::UPGRADE, "SPDY/3.1".parse().unwrap());
        h.append(
            "X-Stream-Protocol-Version",
            "v5.channel.k8s.io".parse().unwrap(),
        );
        h.append(
            "X-Stream-Protocol-Version",
            "v4.channel.k8s.io".parse().unwrap(),
        );
        assert_eq!(
            spdy_protocols(&h),
            Some(vec!["v5.channel.k8s.io".into(), "v4.channel.k8s.io".into()])
        );
        assert_eq!(websocket_protocols(&h), None);
    }

    #[test]
    fn kubelet_paths_encode_repeated_parameters() {
        assert_eq!(
            kubelet_path(
                "/exec/ns/p/c".into(),
                &[
                    ("command", "sh".into()),
                    ("command", "-c".into()),
                    ("command", "echo hi; exit 3".into()),
                    ("stdout", "1".into())
                ]
            ),
            "/exec/ns/p/c?command=sh&command=-c&command=echo+hi%3B+exit+3&stdout=1"
        );
        assert_eq!(kubelet_path("/x".into(), &[]), "/x");
    }
}
