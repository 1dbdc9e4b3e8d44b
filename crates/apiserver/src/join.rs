//! The node join endpoints, k3s's supervisor paths on the API server port:
//!
//! - `GET /cacerts`: the cluster CA bundle, to anyone. A joining agent fetches it without
//!   verifying the server, checks its SHA-256 against the hash pinned in its join token, and only
//!   then trusts the server and sends credentials.
//! - `GET|POST /v1-kubelab/client-kubelet.crt` and `/v1-kubelab/serving-kubelet.crt`: the node's
//!   API client certificate (CN `system:node:<name>`, O `system:nodes`) and its kubelet serving
//!   certificate (SANs: the node name, `localhost`, 127.0.0.1 and the node IPs). Basic auth
//!   `node:<secret>` must match the server's node token (`<data-dir>/node-token`); headers
//!   `Kubelab-Node-Name`, `Kubelab-Node-Password` and (optional, comma-separated)
//!   `Kubelab-Node-IP`. A POST carries a PEM certificate signing request and gets the signed
//!   certificate back (the agent keeps its key; what `kubelab agent` does); a GET without a body
//!   gets a certificate followed by a key made here (k3s's behaviour).
//!
//! The node password: the first join under a name stores a salted SHA-256 of the password as the
//! Secret `kube-system/<node>.node-password.kubelab` (written here, through the registry, not by
//! any client); every later join under that name must present the same password, else 403 —
//! k3s's `NodePasswordValidationFailed`. The password is a random 128-bit value the agent keeps
//! in its data directory, so a fast hash is enough. Deleting the Secret frees the name.

use std::net::IpAddr;
use std::sync::Arc;

use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use http::{HeaderMap, Method, StatusCode};
use kubelab_pki::{CertPair, NodeCertKind};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::error::{ApiError, Details};
use crate::registry::Registry;

/// Namespace of the node password Secrets.
pub const NODE_PASSWORD_NAMESPACE: &str = "kube-system";
/// Suffix of a node password Secret's name: `<node>.node-password.kubelab`.
pub const NODE_PASSWORD_SUFFIX: &str = ".node-password.kubelab";
/// Type of the node password Secrets.
pub const NODE_PASSWORD_SECRET_TYPE: &str = "kubelab.dev/node-password";
/// Request headers of a certificate request.
pub const NODE_NAME_HEADER: &str = "kubelab-node-name";
pub const NODE_PASSWORD_HEADER: &str = "kubelab-node-password";
pub const NODE_IP_HEADER: &str = "kubelab-node-ip";

/// Largest accepted certificate signing request.
const MAX_CSR_BYTES: usize = 64 * 1024;

/// What the join endpoints need: the CA (to sign), the node token (to authenticate joins) and
/// the registry (for the node password Secrets).
pub struct JoinService {
    pub ca: CertPair,
    /// The server's node token; `None` disables the certificate endpoints (404).
    pub node_token: Option<String>,
    pub registry: Arc<Registry>,
}

/// The join routes, to merge into the API server's router.
pub fn router<S>(service: Arc<JoinService>) -> axum::Router<S> {
    axum::Router::new()
        .route("/cacerts", axum::routing::get(cacerts))
        .route(
            "/v1-kubelab/{file}",
            axum::routing::get(node_certificate).post(node_certificate),
        )
        .with_state(service)
}

async fn cacerts(State(service): State<Arc<JoinService>>) -> Response {
    (
        StatusCode::OK,
        [(http::header::CONTENT_TYPE, "application/x-pem-file")],
        service.ca.cert_pem.clone(),
    )
        .into_response()
}

async fn node_certificate(
    State(service): State<Arc<JoinService>>,
    Path(file): Path<String>,
    method: Method,
    headers: HeaderMap,
    body: axum::body::Body,
) -> Response {
    let kind = match file.as_str() {
        "client-kubelet.crt" => NodeCertKind::Client,
        "serving-kubelet.crt" => NodeCertKind::Serving,
        _ => return ApiError::NoRoute.into_response(),
    };
    let csr = if method == Method::POST {
        match axum::body::to_bytes(body, MAX_CSR_BYTES).await {
            Ok(bytes) => match String::from_utf8(bytes.to_vec()) {
                Ok(text) if !text.trim().is_empty() => Some(text),
                _ => {
                    return ApiError::bad_request(
                        "the request body must be a PEM certificate signing request",
                    )
                    .into_response()
                }
            },
            Err(_) => {
                return ApiError::TooLarge {
                    limit: MAX_CSR_BYTES,
                }
                .into_response()
            }
        }
    } else {
        None
    };
    match service.sign(kind, &headers, csr.as_deref()).await {
        Ok(pem) => (
            StatusCode::OK,
            [(http::header::CONTENT_TYPE, "application/x-pem-file")],
            pem,
        )
            .into_response(),
        Err(ApiError::Unauthorized) => {
            let mut response = ApiError::Unauthorized.into_response();
            response.headers_mut().insert(
                http::header::WWW_AUTHENTICATE,
                http::HeaderValue::from_static("Basic realm=\"kubelab\""),
            );
            response
        }
        Err(err) => err.into_response(),
    }
}

/// A certificate request, as read from its headers.
#[derive(Debug)]
struct NodeRequest {
    name: String,
    password: String,
    ips: Vec<IpAddr>,
}

impl JoinService {
    async fn sign(
        &self,
        kind: NodeCertKind,
        headers: &HeaderMap,
        csr: Option<&str>,
    ) -> Result<String, ApiError> {
        let Some(token) = &self.node_token else {
            return Err(ApiError::NoRoute);
        };
        authenticate(headers, token)?;
        let request = node_request(headers)?;
        self.check_node_password(&request.name, &request.password)
            .await?;
        let mut sans = vec![
            request.name.clone(),
            "localhost".to_owned(),
            "127.0.0.1".to_owned(),
        ];
        for ip in &request.ips {
            let ip = ip.to_string();
            if !sans.contains(&ip) {
                sans.push(ip);
            }
        }
        let pem = match csr {
            Some(csr) => kubelab_pki::sign_node_csr(&self.ca, csr, &request.name, kind, &sans)
                .map_err(|err| ApiError::bad_request(err.to_string()))?,
            None => {
                let pair = kubelab_pki::issue_node_cert(&self.ca, &request.name, kind, &sans)
                    .map_err(ApiError::internal)?;
                format!("{}{}", pair.cert_pem, pair.key_pem)
            }
        };
        tracing::info!(node = %request.name, ?kind, generated_key = csr.is_none(), "signed a node certificate");
        Ok(pem)
    }

    /// Accept the first password presented for `node` and, afterwards, only that one.
    async fn check_node_password(&self, node: &str, password: &str) -> Result<(), ApiError> {
        let rt = kubelab_resources::catalog::find("", "v1", "secrets")
            .ok_or_else(|| ApiError::internal("secrets missing from the catalog"))?;
        let name = node_password_secret_name(node);
        let ns = Some(NODE_PASSWORD_NAMESPACE);
        // Two rounds: a concurrent first join may create the Secret between our get and create.
        for _ in 0..2 {
            match self.registry.get(rt, ns, &name).await {
                Ok(secret) => {
                    return if stored_password_matches(&secret, password) {
                        Ok(())
                    } else {
                        Err(password_rejected(node, &name))
                    };
                }
                Err(ApiError::NotFound { .. }) => {}
                Err(err) => return Err(err),
            }
            let secret = json!({
                "apiVersion": "v1",
                "kind": "Secret",
                "metadata": {"name": name, "namespace": NODE_PASSWORD_NAMESPACE},
                "type": NODE_PASSWORD_SECRET_TYPE,
                "immutable": true,
                "data": {"hash": base64::engine::general_purpose::STANDARD.encode(hash_password(password))},
            });
            match self.registry.create(rt, ns, secret, false).await {
                Ok(_) => {
                    tracing::info!(%node, secret = %name, "stored the password of a new node");
                    return Ok(());
                }
                Err(ApiError::AlreadyExists { .. }) => continue,
                Err(err) => return Err(err),
            }
        }
        Err(ApiError::internal(format!(
            "the node password Secret {NODE_PASSWORD_NAMESPACE}/{name} keeps changing"
        )))
    }
}

/// `kube-system/<node>.node-password.kubelab`'s name.
pub fn node_password_secret_name(node: &str) -> String {
    format!("{node}{NODE_PASSWORD_SUFFIX}")
}

fn password_rejected(node: &str, secret: &str) -> ApiError {
    ApiError::Forbidden {
        message: format!(
            "node password rejected (NodePasswordValidationFailed): node \"{node}\" already \
             joined with another password; join under another name (--node-name or \
             --with-node-id), reuse the first agent's data directory, or delete Secret \
             {NODE_PASSWORD_NAMESPACE}/{secret} if that node is gone"
        ),
        details: Some(Details {
            group: String::new(),
            kind: "nodes".into(),
            name: node.into(),
        }),
    }
}

/// Basic auth `node:<secret>` against the server's node token (any user name the token carries).
fn authenticate(headers: &HeaderMap, server_token: &str) -> Result<(), ApiError> {
    let credentials = headers
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Basic "))
        .and_then(|v| {
            base64::engine::general_purpose::STANDARD
                .decode(v.trim())
                .ok()
        })
        .and_then(|bytes| String::from_utf8(bytes).ok())
        .ok_or(ApiError::Unauthorized)?;
    if !credentials.contains(':') {
        return Err(ApiError::Unauthorized);
    }
    kubelab_pki::verify_node_token(&credentials, server_token)
        .map(|_| ())
        .map_err(|_| ApiError::Unauthorized)
}

fn node_request(headers: &HeaderMap) -> Result<NodeRequest, ApiError> {
    let header = |name: &str| {
        headers
            .get(name)
            .map(|v| {
                v.to_str()
                    .map(|s| s.trim().to_owned())
                    .map_err(|_| ApiError::bad_request(format!("header {name} is not ASCII")))
            })
            .transpose()
    };
    let name = header(NODE_NAME_HEADER)?
        .filter(|n| !n.is_empty())
        .ok_or_else(|| ApiError::bad_request("the Kubelab-Node-Name header is required"))?;
    let max_name = 253 - NODE_PASSWORD_SUFFIX.len();
    if !is_dns_subdomain(&name) || name.len() > max_name {
        return Err(ApiError::bad_request(format!(
            "invalid node name {name:?}: a DNS subdomain of at most {max_name} characters \
             (lower-case letters, digits, '-' and '.') is required"
        )));
    }
    let password = header(NODE_PASSWORD_HEADER)?
        .filter(|p| !p.is_empty())
        .ok_or_else(|| ApiError::bad_request("the Kubelab-Node-Password header is required"))?;
    let ips = match header(NODE_IP_HEADER)? {
        None => Vec::new(),
        Some(list) => list
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|s| {
                s.parse::<IpAddr>().map_err(|_| {
                    ApiError::bad_request(format!("invalid IP address {s:?} in Kubelab-Node-IP"))
                })
            })
            .collect::<Result<_, _>>()?,
    };
    Ok(NodeRequest {
        name,
        password,
        ips,
    })
}

fn is_dns_subdomain(name: &str) -> bool {
    !name.is_empty()
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
}

/// `sha256:<salt hex>:<hex of sha256(salt || password)>`.
fn hash_password(password: &str) -> String {
    let salt: [u8; 16] = rand::random();
    format!(
        "sha256:{}:{}",
        hex(&salt),
        hex(&salted_digest(&salt, password))
    )
}

fn salted_digest(salt: &[u8], password: &str) -> Vec<u8> {
    let mut hasher = Sha256::new();
    hasher.update(salt);
    hasher.update(password.as_bytes());
    hasher.finalize().to_vec()
}

fn stored_password_matches(secret: &Value, password: &str) -> bool {
    let Some(stored) = secret["data"]["hash"]
        .as_str()
        .and_then(|b64| base64::engine::general_purpose::STANDARD.decode(b64).ok())
        .and_then(|bytes| String::from_utf8(bytes).ok())
    else {
        return false;
    };
    let mut parts = stored.splitn(3, ':');
    let (Some("sha256"), Some(salt), Some(digest)) = (parts.next(), parts.next(), parts.next())
    else {
        return false;
    };
    let Some(salt) = unhex(salt) else {
        return false;
    };
    let expected = hex(&salted_digest(&salt, password));
    constant_time_eq(expected.as_bytes(), digest.as_bytes())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn basic(credentials: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        let value = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(credentials)
        );
        headers.insert(http::header::AUTHORIZATION, value.parse().unwrap());
        headers
    }

    #[test]
    fn basic_auth_against_the_node_token() {
        let token = kubelab_pki::node_token("CA", "s3cret");
        assert!(authenticate(&basic("node:s3cret"), &token).is_ok());
        assert!(authenticate(&basic("node:wrong"), &token).is_err());
        assert!(authenticate(&basic("other:s3cret"), &token).is_err());
        assert!(authenticate(&basic("s3cret"), &token).is_err());
        assert!(authenticate(&HeaderMap::new(), &token).is_err());
    }

    #[test]
    fn password_hash_round_trip() {
        let stored = hash_password("pw-1");
        let secret =
            json!({"data": {"hash": base64::engine::general_purpose::STANDARD.encode(&stored)}});
        assert!(stored_password_matches(&secret, "pw-1"));
        assert!(!stored_password_matches(&secret, "pw-2"));
        assert!(!stored_password_matches(&json!({}), "pw-1"));
        // Salted: the same password hashes differently twice.
        assert_ne!(hash_password("pw-1"), stored);
    }

    #[test]
    fn request_headers() {
        let mut headers = HeaderMap::new();
        headers.insert(NODE_NAME_HEADER, "worker-1".parse().unwrap());
        headers.insert(NODE_PASSWORD_HEADER, "pw".parse().unwrap());
        headers.insert(NODE_IP_HEADER, "10.0.0.1, fd00::1".parse().unwrap());
        let request = node_request(&headers).unwrap();
        assert_eq!(request.name, "worker-1");
        assert_eq!(request.ips.len(), 2);

        headers.insert(NODE_NAME_HEADER, "Worker_1".parse().unwrap());
        assert!(matches!(
            node_request(&headers),
            Err(ApiError::BadRequest { .. })
        ));
        headers.insert(NODE_NAME_HEADER, "worker-1".parse().unwrap());
        headers.insert(NODE_IP_HEADER, "not-an-ip".parse().unwrap());
        assert!(node_request(&headers).is_err());
        headers.remove(NODE_IP_HEADER);
        headers.remove(NODE_PASSWORD_HEADER);
        assert!(node_request(&headers).is_err());
    }
}
