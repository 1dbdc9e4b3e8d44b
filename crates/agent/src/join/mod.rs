//! Joining a cluster with a token, as a k3s agent does (see the API server's `join` module for
//! the other side):
//!
//! 1. parse the token `K10<sha256 of the CA PEM>::node:<secret>`;
//! 2. `GET /cacerts` without verifying the server, hash the bundle, compare with the token's pin
//!    — a mismatch ends the join before any credential has been sent;
//! 3. from now on trust only that CA: send the node's name, password (made on first join, kept
//!    0600 in the data directory) and IPs with basic auth `node:<secret>`, and a certificate
//!    signing request for each of its two keys (made and kept here: the agent never sees the CA
//!    key and the server never sees the node's keys); get back the client certificate (CN
//!    `system:node:<name>`, O `system:nodes`) and the kubelet serving certificate;
//! 4. start the client-side load balancer ([`crate::lb`]) in front of the registration server,
//!    build the node's API client through it, and let it learn every API server from the
//!    `default/kubernetes` Endpoints.
//!
//! Connection failures are retried (the server may still be starting); refusals are not.

mod http;
mod state;

use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use kubelab_pki::{CertPair, KubeconfigSpec, NodeCertKind};

pub use http::ServerAddress;
pub use state::{StateDir, CA_FILE, KUBECONFIG_FILE, NODE_ID_FILE, NODE_PASSWORD_FILE};

use crate::lb::LoadBalancer;

/// Request headers of the certificate endpoints.
pub const NODE_NAME_HEADER: &str = "Kubelab-Node-Name";
pub const NODE_PASSWORD_HEADER: &str = "Kubelab-Node-Password";
pub const NODE_IP_HEADER: &str = "Kubelab-Node-IP";

/// Longest wait between two attempts to reach the registration server.
const MAX_RETRY_DELAY: Duration = Duration::from_secs(5);

/// What `kubelab agent --server URL --token T [--node-name] [--node-ip] [--with-node-id]
/// [--data-dir]` asks for.
#[derive(Debug, Clone)]
pub struct JoinConfig {
    /// `https://host:port` of any API server (the registration address).
    pub server: String,
    pub token: String,
    /// The node name before any `--with-node-id` suffix.
    pub node_name: String,
    /// Append the random suffix kept in `<data_dir>/node-id` to the name.
    pub with_node_id: bool,
    /// The node's addresses (serving certificate SANs, `Kubelab-Node-IP`).
    pub node_ips: Vec<IpAddr>,
    /// The agent's state directory.
    pub data_dir: PathBuf,
    /// Give up after this many failed attempts to reach the server (`None`: keep trying).
    pub max_attempts: Option<u32>,
}

/// A joined node: its API client (through the load balancer) and its certificates.
pub struct Joined {
    /// The node's name (with the `--with-node-id` suffix if asked).
    pub node_name: String,
    /// API client with the node identity, connected through `load_balancer`.
    pub client: kube::Client,
    pub ca_pem: String,
    /// CN `system:node:<name>`, O `system:nodes`.
    pub client_cert: CertPair,
    /// The kubelet's serving certificate (node name, localhost, 127.0.0.1, node IPs).
    pub serving_cert: CertPair,
    pub load_balancer: LoadBalancer,
    /// Keeps the load balancer's server list in step with the `kubernetes` Endpoints.
    pub endpoints_follower: tokio::task::JoinHandle<()>,
}

impl Drop for Joined {
    fn drop(&mut self) {
        self.endpoints_follower.abort();
    }
}

#[derive(Debug, thiserror::Error)]
pub enum JoinError {
    #[error("invalid --server {url:?}: {reason}")]
    InvalidServer { url: String, reason: String },
    #[error(transparent)]
    Pki(kubelab_pki::Error),
    #[error(
        "the CA of {server} (sha256 {actual}) is not the one the token pins ({expected}): the \
         token belongs to another cluster or something is impersonating the server; no \
         credentials were sent"
    )]
    CaMismatch {
        server: String,
        expected: String,
        actual: String,
    },
    #[error("cannot reach {server}: {reason}")]
    Unreachable { server: String, reason: String },
    #[error("TLS with {server} failed: {reason}")]
    Tls { server: String, reason: String },
    #[error(
        "{server} refused the token: its node credentials do not match the server's node-token"
    )]
    Unauthorized { server: String },
    #[error("{server} refused node {node:?}: {message}")]
    Refused {
        server: String,
        node: String,
        message: String,
    },
    #[error("{server} answered {status} to {what}: {message}")]
    Server {
        server: String,
        what: String,
        status: u16,
        message: String,
    },
    #[error("invalid node name {name:?}: {reason}")]
    InvalidNodeName { name: String, reason: String },
    #[error("cannot {operation} {}: {source}", path.display())]
    State {
        operation: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot start the API server load balancer: {0}")]
    LoadBalancer(std::io::Error),
    #[error("cannot build the node's API client: {0}")]
    Client(String),
}

impl JoinError {
    /// Worth another attempt: the server may be starting or briefly away.
    fn is_transient(&self) -> bool {
        matches!(self, JoinError::Unreachable { .. })
            || matches!(self, JoinError::Server { status, .. } if *status >= 500)
    }
}

/// Join the cluster (see the module documentation).
pub async fn join(config: &JoinConfig) -> Result<Joined, JoinError> {
    let token = kubelab_pki::parse_token(&config.token).map_err(JoinError::Pki)?;
    let server = ServerAddress::parse(&config.server)?;
    let state = StateDir::open(&config.data_dir)?;
    let node_name = final_node_name(config)?;

    let ca_pem = retry(config, &server, || fetch_ca(&server)).await?;
    match &token.ca_hash {
        Some(expected) => {
            let actual = kubelab_pki::ca_hash(&ca_pem);
            if *expected != actual {
                return Err(JoinError::CaMismatch {
                    server: server.url.clone(),
                    expected: expected.clone(),
                    actual,
                });
            }
        }
        None => tracing::warn!(
            server = %server.url,
            "the token does not pin the cluster CA (no K10<hash>:: prefix): trusting the CA the server sent"
        ),
    }
    state.write_public(CA_FILE, &ca_pem)?;
    let tls = Arc::new(http::pinned_tls(&ca_pem)?);

    let password = state.node_password()?;
    let ips = config
        .node_ips
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(",");
    let basic = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD
            .encode(format!("{}:{}", token.username, token.password))
    );
    let mut headers = vec![
        ("Authorization", basic),
        (NODE_NAME_HEADER, node_name.clone()),
        (NODE_PASSWORD_HEADER, password),
    ];
    if !ips.is_empty() {
        headers.push((NODE_IP_HEADER, ips));
    }
    let certificate = |kind: NodeCertKind| {
        let (file, key_file) = match kind {
            NodeCertKind::Client => ("client-kubelet.crt", "client-kubelet.key"),
            NodeCertKind::Serving => ("serving-kubelet.crt", "serving-kubelet.key"),
        };
        let state = &state;
        let server = &server;
        let tls = tls.clone();
        let headers = &headers;
        let node_name = &node_name;
        async move {
            let key_pem = state.private_key(key_file)?;
            let csr = kubelab_pki::node_csr(&key_pem, node_name).map_err(JoinError::Pki)?;
            let cert_pem = retry(config, server, || {
                request_certificate(server, tls.clone(), file, headers, node_name, &csr)
            })
            .await?;
            state.write_public(file, &cert_pem)?;
            Ok::<_, JoinError>(CertPair { cert_pem, key_pem })
        }
    };
    let client_cert = certificate(NodeCertKind::Client).await?;
    let serving_cert = certificate(NodeCertKind::Serving).await?;
    tracing::info!(node = %node_name, server = %server.url, "joined: node certificates signed");

    // The node's credentials against the registration server, for humans and tools.
    let kubeconfig = kubeconfig(&server.url, &ca_pem, &client_cert)?;
    state.write_private(KUBECONFIG_FILE, &kubeconfig)?;

    let load_balancer = LoadBalancer::start(server.host_port())
        .await
        .map_err(JoinError::LoadBalancer)?;
    let client = client(&load_balancer.url(), &ca_pem, &client_cert).await?;
    let endpoints_follower = tokio::spawn(crate::lb::follow_endpoints(
        load_balancer.clone(),
        client.clone(),
    ));
    Ok(Joined {
        node_name,
        client,
        ca_pem,
        client_cert,
        serving_cert,
        load_balancer,
        endpoints_follower,
    })
}

/// The name the node joins under: `node_name`, with `-<node-id>` appended when
/// `with_node_id` (the id is made once and kept in the data directory).
pub fn final_node_name(config: &JoinConfig) -> Result<String, JoinError> {
    let name = if config.with_node_id {
        let state = StateDir::open(&config.data_dir)?;
        format!("{}-{}", config.node_name, state.node_id()?)
    } else {
        config.node_name.clone()
    };
    check_node_name(&name)?;
    Ok(name)
}

async fn fetch_ca(server: &ServerAddress) -> Result<String, JoinError> {
    let answer = http::request(
        server,
        Arc::new(http::insecure_tls()),
        ::http::Method::GET,
        "/cacerts",
        &[],
        None,
    )
    .await?;
    if answer.status != ::http::StatusCode::OK || !answer.body.contains("BEGIN CERTIFICATE") {
        return Err(JoinError::Server {
            server: server.url.clone(),
            what: "GET /cacerts".into(),
            status: answer.status.as_u16(),
            message: status_message(&answer.body),
        });
    }
    Ok(answer.body)
}

async fn request_certificate(
    server: &ServerAddress,
    tls: Arc<rustls::ClientConfig>,
    file: &str,
    headers: &[(&str, String)],
    node_name: &str,
    csr: &str,
) -> Result<String, JoinError> {
    let path = format!("/v1-kubelab/{file}");
    let answer = http::request(
        server,
        tls,
        ::http::Method::POST,
        &path,
        headers,
        Some(csr.to_owned()),
    )
    .await?;
    match answer.status {
        ::http::StatusCode::OK if answer.body.contains("BEGIN CERTIFICATE") => Ok(answer.body),
        ::http::StatusCode::UNAUTHORIZED => Err(JoinError::Unauthorized {
            server: server.url.clone(),
        }),
        ::http::StatusCode::FORBIDDEN => Err(JoinError::Refused {
            server: server.url.clone(),
            node: node_name.to_owned(),
            message: status_message(&answer.body),
        }),
        status => Err(JoinError::Server {
            server: server.url.clone(),
            what: format!("POST {path}"),
            status: status.as_u16(),
            message: status_message(&answer.body),
        }),
    }
}

/// The `message` of a `Status` body, else the body itself (trimmed, one line).
fn status_message(body: &str) -> String {
    serde_json::from_str::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v["message"].as_str().map(str::to_owned))
        .unwrap_or_else(|| body.trim().replace('\n', " "))
}

/// Run `attempt` until it succeeds or fails for good; transient failures are retried with a
/// growing delay (capped), up to `config.max_attempts`.
async fn retry<T, F, Fut>(
    config: &JoinConfig,
    server: &ServerAddress,
    mut attempt: F,
) -> Result<T, JoinError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, JoinError>>,
{
    let mut delay = Duration::from_millis(200);
    let mut attempts = 0u32;
    loop {
        match attempt().await {
            Ok(value) => return Ok(value),
            Err(error) if error.is_transient() => {
                attempts += 1;
                if config.max_attempts.is_some_and(|max| attempts >= max) {
                    return Err(error);
                }
                tracing::warn!(server = %server.url, %error, "cannot join yet; retrying");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(MAX_RETRY_DELAY);
            }
            Err(error) => return Err(error),
        }
    }
}

fn check_node_name(name: &str) -> Result<(), JoinError> {
    let invalid = |reason: &str| JoinError::InvalidNodeName {
        name: name.to_owned(),
        reason: reason.to_owned(),
    };
    // The node password Secret is `<name>.node-password.kubelab`, at most 253 characters.
    if name.is_empty() || name.len() > 230 {
        return Err(invalid("it must be 1 to 230 characters long"));
    }
    let labels_ok = name.split('.').all(|label| {
        !label.is_empty()
            && label.len() <= 63
            && label
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            && !label.starts_with('-')
            && !label.ends_with('-')
    });
    if !labels_ok {
        return Err(invalid(
            "use lower-case letters, digits, '-' and '.', starting and ending with a letter or digit",
        ));
    }
    Ok(())
}

fn kubeconfig(server: &str, ca_pem: &str, cert: &CertPair) -> Result<String, JoinError> {
    kubelab_pki::kubeconfig_yaml(&KubeconfigSpec {
        cluster_name: "kubelab",
        context_name: "kubelab",
        user_name: "node",
        server,
        ca_pem,
        client: cert,
    })
    .map_err(JoinError::Pki)
}

/// An API client for `server` with the node's certificate.
async fn client(server: &str, ca_pem: &str, cert: &CertPair) -> Result<kube::Client, JoinError> {
    let yaml = kubeconfig(server, ca_pem, cert)?;
    let kubeconfig =
        kube::config::Kubeconfig::from_yaml(&yaml).map_err(|e| JoinError::Client(e.to_string()))?;
    let config = kube::Config::from_custom_kubeconfig(
        kubeconfig,
        &kube::config::KubeConfigOptions::default(),
    )
    .await
    .map_err(|e| JoinError::Client(e.to_string()))?;
    crate::api_client(config).map_err(|e| JoinError::Client(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_names() {
        assert!(check_node_name("worker-1").is_ok());
        assert!(check_node_name("worker-1.lab").is_ok());
        for bad in ["", "Worker", "-w", "w-", "a..b", &"x".repeat(231)] {
            assert!(check_node_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn status_messages() {
        assert_eq!(
            status_message(r#"{"kind":"Status","message":"nope"}"#),
            "nope"
        );
        assert_eq!(status_message("plain\ntext\n"), "plain text");
    }
}
