//! How the API server reaches a kubelet: the pod's node → its address (InternalIP, else
//! ExternalIP) and `status.daemonEndpoints.kubeletEndpoint.Port` → HTTPS, the kubelet's serving
//! certificate verified against the cluster CA for that address, this server authenticated by
//! its `kube-apiserver-kubelet-client` certificate → HTTP/1.1 (a GET, or a WebSocket upgrade).
//!
//! Nodes simulated inside a `kubelab server` process have no network presence: that process
//! registers a local route (a loopback address) for each of them in [`KubeletRoutes`]. The TLS
//! and HTTP exchange is the same; only the TCP destination differs (an egress route, like
//! k3s's agent tunnel). A simulated node without a route is never dialled at its fictional
//! address.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Request, Response, StatusCode};
use http_body_util::{BodyExt, Empty, Limited};
use hyper::body::Incoming;
use hyper::upgrade::Upgraded;
use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use serde_json::Value;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use crate::error::{ApiError, ApiResult};
use crate::registry::Registry;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// How much of a kubelet's error body is read.
const ERROR_BODY_LIMIT: usize = 64 * 1024;
/// Annotation of simulated nodes (see `kubelab_agent::fake`).
const SIMULATED_NODE_ANNOTATION: &str = "kubelab.dev/fake-node";

/// Local addresses of the kubelets of nodes simulated in this process, by node name.
#[derive(Clone, Default, Debug)]
pub struct KubeletRoutes(Arc<RwLock<HashMap<String, SocketAddr>>>);

impl KubeletRoutes {
    /// Reach `node`'s kubelet at `addr` instead of at its advertised address.
    pub fn insert(&self, node: impl Into<String>, addr: SocketAddr) {
        self.0
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(node.into(), addr);
    }

    pub fn remove(&self, node: &str) {
        self.0
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .remove(node);
    }

    fn get(&self, node: &str) -> Option<SocketAddr> {
        self.0
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(node)
            .copied()
    }
}

/// One node's kubelet endpoint.
#[derive(Clone, Debug)]
pub(crate) struct Kubelet {
    pub node: String,
    /// Where to connect.
    dial: SocketAddr,
    /// The address its certificate must name.
    ip: IpAddr,
}

impl Kubelet {
    pub fn describe(&self) -> String {
        format!("{}:{}", self.ip, self.dial.port())
    }
}

/// What a kubelet answered instead of the expected response.
pub(crate) enum Refusal {
    /// The request failed on this side (no route, dial or TLS failure, ...).
    Api(ApiError),
    /// The kubelet answered with an error status.
    Kubelet {
        status: StatusCode,
        content_type: Option<HeaderValue>,
        body: Bytes,
    },
}

impl From<ApiError> for Refusal {
    fn from(e: ApiError) -> Self {
        Refusal::Api(e)
    }
}

impl Refusal {
    /// The kubelet's error as upstream's `GenericHttpResponseChecker` turns it into a Status
    /// (pods/log): 400 → BadRequest with the kubelet's text, 500 → InternalError, ...
    pub fn into_api_error(self, pod: &str) -> ApiError {
        match self {
            Refusal::Api(e) => e,
            Refusal::Kubelet { status, body, .. } => {
                let text = body_message(&body);
                match status {
                    StatusCode::BAD_REQUEST => ApiError::bad_request(text),
                    StatusCode::NOT_FOUND => ApiError::NotFound {
                        group: String::new(),
                        kind: "pods/log".into(),
                        name: pod.into(),
                    },
                    StatusCode::FORBIDDEN => ApiError::Forbidden {
                        message: text,
                        details: None,
                    },
                    _ => ApiError::internal(text),
                }
            }
        }
    }

    /// The response for the client: the kubelet's own answer, relayed as is (upstream proxies
    /// exec/attach/port-forward upgrades byte for byte, errors included).
    pub fn into_response(self) -> axum::response::Response {
        use axum::response::IntoResponse;
        match self {
            Refusal::Api(e) => e.into_response(),
            Refusal::Kubelet {
                status,
                content_type,
                body,
            } => {
                let mut resp = Response::new(axum::body::Body::from(body));
                *resp.status_mut() = status;
                if let Some(ct) = content_type {
                    resp.headers_mut().insert(http::header::CONTENT_TYPE, ct);
                }
                resp
            }
        }
    }
}

/// The text of an error body: a Status's message, else the body itself.
fn body_message(body: &[u8]) -> String {
    if let Ok(v) = serde_json::from_slice::<Value>(body) {
        if let Some(m) = v.get("message").and_then(Value::as_str) {
            return m.to_string();
        }
    }
    String::from_utf8_lossy(body).trim().to_string()
}

/// The API server's client for kubelets.
pub(crate) struct KubeletClient {
    tls: TlsConnector,
    routes: KubeletRoutes,
}

impl KubeletClient {
    pub fn new(
        pki: &kubelab_pki::ServerPki,
        routes: KubeletRoutes,
    ) -> Result<Self, kubelab_pki::Error> {
        let mut config =
            kubelab_pki::client_tls_config(&pki.ca.cert_pem, Some(&pki.kubelet_client))?;
        // Upgrades (exec, attach, port-forward) are HTTP/1.1 only.
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(KubeletClient {
            tls: TlsConnector::from(Arc::new(config)),
            routes,
        })
    }

    /// The kubelet of node `name`.
    pub async fn locate(&self, registry: &Registry, name: &str) -> ApiResult<Kubelet> {
        let rt = registry
            .find_type("", "v1", "nodes")
            .ok_or_else(|| ApiError::internal("the nodes resource is not served"))?;
        let node = registry.get(rt, None, name).await?;
        let ip = node_address(&node).ok_or_else(|| ApiError::ServiceUnavailable {
            message: format!("node {name:?} has no InternalIP or ExternalIP address"),
        })?;
        let port = node
            .pointer("/status/daemonEndpoints/kubeletEndpoint/Port")
            .and_then(Value::as_u64)
            .filter(|p| *p > 0 && *p <= u64::from(u16::MAX))
            .ok_or_else(|| ApiError::ServiceUnavailable {
                message: format!("node {name:?} reports no kubelet endpoint port"),
            })? as u16;
        let dial = match self.routes.get(name) {
            Some(addr) => addr,
            None if node
                .pointer(&format!("/metadata/annotations/{}", SIMULATED_NODE_ANNOTATION.replace('/', "~1")))
                .and_then(Value::as_str)
                == Some("true") =>
            {
                return Err(ApiError::ServiceUnavailable {
                    message: format!(
                        "node {name:?} is simulated outside this API server's process; its kubelet endpoint is not reachable from here"
                    ),
                })
            }
            None => SocketAddr::new(ip, port),
        };
        Ok(Kubelet {
            node: name.to_string(),
            dial,
            ip,
        })
    }

    async fn connect(
        &self,
        kubelet: &Kubelet,
    ) -> ApiResult<hyper::client::conn::http1::SendRequest<Empty<Bytes>>> {
        let unreachable = |what: String| ApiError::ServiceUnavailable {
            message: format!("error dialing backend: {what}"),
        };
        let tcp = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(kubelet.dial))
            .await
            .map_err(|_| unreachable(format!("dial tcp {}: i/o timeout", kubelet.describe())))?
            .map_err(|e| unreachable(format!("dial tcp {}: {e}", kubelet.describe())))?;
        let _ = tcp.set_nodelay(true);
        let name = ServerName::IpAddress(kubelet.ip.into());
        let tls = tokio::time::timeout(HANDSHAKE_TIMEOUT, self.tls.connect(name, tcp))
            .await
            .map_err(|_| {
                unreachable(format!(
                    "TLS handshake with {} timed out",
                    kubelet.describe()
                ))
            })?
            .map_err(|e| {
                unreachable(format!(
                    "TLS handshake with the kubelet of node {:?} at {}: {e}",
                    kubelet.node,
                    kubelet.describe()
                ))
            })?;
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
            .await
            .map_err(|e| unreachable(e.to_string()))?;
        tokio::spawn(async move {
            if let Err(e) = conn.with_upgrades().await {
                tracing::debug!(error = %e, "kubelet connection ended with an error");
            }
        });
        Ok(sender)
    }

    fn request(kubelet: &Kubelet, path_and_query: &str) -> http::request::Builder {
        Request::builder()
            .uri(path_and_query)
            .header(http::header::HOST, kubelet.describe())
            .header(http::header::USER_AGENT, "kubelab-apiserver")
    }

    /// `GET path_and_query`; a non-2xx answer is a [`Refusal::Kubelet`].
    pub async fn get(
        &self,
        kubelet: &Kubelet,
        path_and_query: &str,
    ) -> Result<Response<Incoming>, Refusal> {
        let mut sender = self.connect(kubelet).await?;
        let req = Self::request(kubelet, path_and_query)
            .method(http::Method::GET)
            .body(Empty::new())
            .map_err(ApiError::internal)?;
        let resp = sender
            .send_request(req)
            .await
            .map_err(|e| ApiError::ServiceUnavailable {
                message: format!(
                    "error talking to the kubelet of node {:?}: {e}",
                    kubelet.node
                ),
            })?;
        if !resp.status().is_success() {
            return Err(refusal(resp).await);
        }
        Ok(resp)
    }

    /// Open a WebSocket to `path_and_query` with sub-protocol `protocol`; the raw upgraded
    /// connection (frames not yet parsed) on success.
    pub async fn websocket(
        &self,
        kubelet: &Kubelet,
        path_and_query: &str,
        protocol: &str,
    ) -> Result<Upgraded, Refusal> {
        let mut sender = self.connect(kubelet).await?;
        let key = websocket_key();
        let req = Self::request(kubelet, path_and_query)
            .method(http::Method::GET)
            .header(http::header::CONNECTION, "Upgrade")
            .header(http::header::UPGRADE, "websocket")
            .header(http::header::SEC_WEBSOCKET_VERSION, "13")
            .header(http::header::SEC_WEBSOCKET_KEY, &key)
            .header(http::header::SEC_WEBSOCKET_PROTOCOL, protocol)
            .body(Empty::new())
            .map_err(ApiError::internal)?;
        let resp = sender
            .send_request(req)
            .await
            .map_err(|e| ApiError::ServiceUnavailable {
                message: format!(
                    "error talking to the kubelet of node {:?}: {e}",
                    kubelet.node
                ),
            })?;
        if resp.status() != StatusCode::SWITCHING_PROTOCOLS {
            return Err(refusal(resp).await);
        }
        let expected = tokio_tungstenite::tungstenite::handshake::derive_accept_key(key.as_bytes());
        let header = |name: http::header::HeaderName| {
            resp.headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_string()
        };
        if header(http::header::SEC_WEBSOCKET_ACCEPT) != expected {
            return Err(ApiError::ServiceUnavailable {
                message: format!(
                    "the kubelet of node {:?} answered a bad WebSocket handshake",
                    kubelet.node
                ),
            }
            .into());
        }
        let chosen = header(http::header::SEC_WEBSOCKET_PROTOCOL);
        if chosen != protocol {
            return Err(ApiError::ServiceUnavailable {
                message: format!(
                    "the kubelet of node {:?} chose the WebSocket protocol {chosen:?}, not {protocol:?}",
                    kubelet.node
                ),
            }
            .into());
        }
        hyper::upgrade::on(resp).await.map_err(|e| {
            Refusal::Api(ApiError::ServiceUnavailable {
                message: format!("upgrade of the kubelet connection failed: {e}"),
            })
        })
    }
}

async fn refusal(resp: Response<Incoming>) -> Refusal {
    let status = resp.status();
    let content_type = resp.headers().get(http::header::CONTENT_TYPE).cloned();
    let body = Limited::new(resp.into_body(), ERROR_BODY_LIMIT)
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    Refusal::Kubelet {
        status,
        content_type,
        body,
    }
}

fn websocket_key() -> String {
    use base64::Engine;
    let key: [u8; 16] = rand::random();
    base64::engine::general_purpose::STANDARD.encode(key)
}

/// The node's InternalIP, else its ExternalIP (first of each kind).
fn node_address(node: &Value) -> Option<IpAddr> {
    let addresses = node.pointer("/status/addresses")?.as_array()?;
    ["InternalIP", "ExternalIP"].iter().find_map(|kind| {
        addresses
            .iter()
            .filter(|a| a.get("type").and_then(Value::as_str) == Some(kind))
            .find_map(|a| a.get("address")?.as_str()?.parse().ok())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn internal_ip_first() {
        let node = json!({"status": {"addresses": [
            {"type": "Hostname", "address": "n1"},
            {"type": "ExternalIP", "address": "203.0.113.9"},
            {"type": "InternalIP", "address": "10.0.0.4"},
        ]}});
        assert_eq!(node_address(&node), Some("10.0.0.4".parse().unwrap()));
        let external =
            json!({"status": {"addresses": [{"type": "ExternalIP", "address": "203.0.113.9"}]}});
        assert_eq!(
            node_address(&external),
            Some("203.0.113.9".parse().unwrap())
        );
        assert_eq!(node_address(&json!({"status": {}})), None);
    }

    #[test]
    fn kubelet_errors_become_statuses_like_upstream() {
        let refusal = |status: StatusCode, body: &'static str| Refusal::Kubelet {
            status,
            content_type: None,
            body: Bytes::from_static(body.as_bytes()),
        };
        let e = refusal(
            StatusCode::BAD_REQUEST,
            "container \"c\" in pod \"web\" is waiting to start: ContainerCreating\n",
        )
        .into_api_error("web");
        assert_eq!(e.code(), StatusCode::BAD_REQUEST);
        assert_eq!(
            e.to_string(),
            "container \"c\" in pod \"web\" is waiting to start: ContainerCreating"
        );
        let e = refusal(
            StatusCode::INTERNAL_SERVER_ERROR,
            r#"{"kind":"Status","message":"boom"}"#,
        )
        .into_api_error("web");
        assert_eq!(e.to_string(), "Internal error occurred: boom");
    }
}
