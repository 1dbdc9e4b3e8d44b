//! Client-side load balancing across API servers, as k3s's agent does it: an in-process TCP
//! balancer on `127.0.0.1:<random port>` that every API client of the agent connects to.
//!
//! It starts with the registration address (`--server`) only; once joined, [`follow_endpoints`]
//! watches the `default/kubernetes` Endpoints (every API server lists its own address there) and
//! hands the balancer the full list. Each new client connection goes to the server that
//! accepted the previous one (sticky, so watches and their follow-up requests stay together);
//! when that server refuses or times out, the next ones are tried in order, servers that failed
//! recently last, and the registration address after all learned ones. The bytes are piped
//! unchanged, so TLS runs end to end between the client and the chosen server: every API server's
//! certificate carries 127.0.0.1, and client certificates work as with a direct connection.
//!
//! A connection that dies with its server (the server stopped) ends, the client (hyper, through
//! kube-rs) opens a new one, and that lands on a live server: losing one server of several
//! costs the node one failed request, not its Ready condition.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::core::v1::Endpoints;
use kube::runtime::{watcher, WatchStreamExt};
use tokio::net::{TcpListener, TcpStream};

/// How long one connection attempt to a server may take before the next server is tried.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// A server that refused a connection is tried after the others for this long.
pub const FAILURE_MEMORY: Duration = Duration::from_secs(15);

/// The balancer: a local listener and the list of servers behind it. Cloning shares both; the
/// listener stops when the last clone is dropped.
#[derive(Clone)]
pub struct LoadBalancer {
    local_addr: SocketAddr,
    shared: Arc<Shared>,
    _accept: Arc<AbortOnDrop>,
}

struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

struct Shared {
    state: Mutex<State>,
}

struct State {
    /// The registration address (`host:port`), kept as the last resort.
    default: String,
    /// Addresses learned from the `kubernetes` Endpoints, in their order.
    learned: Vec<String>,
    /// The server that accepted the last connection.
    current: Option<String>,
    /// Servers that refused or timed out, and when.
    failed: HashMap<String, Instant>,
}

impl State {
    /// The servers to try for a new connection, in order.
    fn candidates(&self) -> Vec<String> {
        let now = Instant::now();
        let recently_failed = |s: &String| {
            self.failed
                .get(s)
                .is_some_and(|at| now - *at < FAILURE_MEMORY)
        };
        let mut all: Vec<String> = Vec::new();
        if let Some(current) = &self.current {
            if self.learned.contains(current) || *current == self.default {
                all.push(current.clone());
            }
        }
        for server in self.learned.iter().chain(std::iter::once(&self.default)) {
            if !all.contains(server) {
                all.push(server.clone());
            }
        }
        let (healthy, failed): (Vec<String>, Vec<String>) =
            all.into_iter().partition(|s| !recently_failed(s));
        healthy.into_iter().chain(failed).collect()
    }
}

impl LoadBalancer {
    /// Listen on 127.0.0.1 (a free port) in front of `default_server` (`host:port`).
    pub async fn start(default_server: impl Into<String>) -> std::io::Result<LoadBalancer> {
        let listener = TcpListener::bind(("127.0.0.1", 0)).await?;
        let local_addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                default: default_server.into(),
                learned: Vec::new(),
                current: None,
                failed: HashMap::new(),
            }),
        });
        let accept = tokio::spawn(accept_loop(listener, shared.clone()));
        tracing::info!(%local_addr, "API server load balancer listening");
        Ok(LoadBalancer {
            local_addr,
            shared,
            _accept: Arc::new(AbortOnDrop(accept)),
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The URL API clients use: `https://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("https://{}", self.local_addr)
    }

    /// Every server the balancer may use: the learned ones, then the registration address.
    pub fn servers(&self) -> Vec<String> {
        let state = self.shared.lock();
        let mut all = state.learned.clone();
        if !all.contains(&state.default) {
            all.push(state.default.clone());
        }
        all
    }

    /// The server that accepted the last connection, if any did.
    pub fn current(&self) -> Option<String> {
        self.shared.lock().current.clone()
    }

    /// Replace the learned servers (an empty list keeps the previous one: a server list never
    /// shrinks to nothing because of one odd Endpoints object).
    pub fn set_servers(&self, servers: Vec<String>) {
        if servers.is_empty() {
            return;
        }
        let mut state = self.shared.lock();
        if state.learned != servers {
            tracing::info!(servers = %servers.join(", "), "API server load balancer: servers updated");
            state.learned = servers;
        }
    }
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

async fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    loop {
        match listener.accept().await {
            Ok((client, _)) => {
                let _ = client.set_nodelay(true);
                tokio::spawn(proxy(client, shared.clone()));
            }
            Err(error) => {
                tracing::warn!(%error, "load balancer: accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

async fn proxy(mut client: TcpStream, shared: Arc<Shared>) {
    let candidates = shared.lock().candidates();
    for server in candidates {
        match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(server.as_str())).await {
            Ok(Ok(mut upstream)) => {
                let _ = upstream.set_nodelay(true);
                {
                    let mut state = shared.lock();
                    state.failed.remove(&server);
                    if state.current.as_ref() != Some(&server) {
                        tracing::info!(%server, "API server load balancer: now using {server}");
                        state.current = Some(server.clone());
                    }
                }
                let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
                return;
            }
            Ok(Err(error)) => {
                tracing::warn!(%server, %error, "API server load balancer: cannot connect");
            }
            Err(_) => {
                tracing::warn!(%server, "API server load balancer: connection timed out");
            }
        }
        shared.lock().failed.insert(server, Instant::now());
    }
    tracing::warn!("API server load balancer: no API server reachable");
}

/// The `host:port` of every API server in the `kubernetes` Endpoints (its `https` port, or its
/// only port), in order, without duplicates.
pub fn endpoint_addresses(endpoints: &Endpoints) -> Vec<String> {
    let mut out = Vec::new();
    for subset in endpoints.subsets.iter().flatten() {
        let ports = subset.ports.as_deref().unwrap_or_default();
        let port = ports
            .iter()
            .find(|p| p.name.as_deref() == Some("https"))
            .or_else(|| (ports.len() == 1).then(|| &ports[0]))
            .map(|p| p.port);
        let Some(port) = port else { continue };
        for address in subset.addresses.iter().flatten() {
            let host = match address.ip.parse::<std::net::IpAddr>() {
                Ok(std::net::IpAddr::V6(v6)) => format!("[{v6}]:{port}"),
                _ => format!("{}:{port}", address.ip),
            };
            if !out.contains(&host) {
                out.push(host);
            }
        }
    }
    out
}

/// Keep the balancer's server list equal to the `default/kubernetes` Endpoints, for as long as
/// the future runs (watch errors are retried with backoff).
pub async fn follow_endpoints(balancer: LoadBalancer, client: kube::Client) {
    let api: kube::Api<Endpoints> = kube::Api::namespaced(client, "default");
    let mut events = std::pin::pin!(watcher(
        api,
        watcher::Config::default().fields("metadata.name=kubernetes"),
    )
    .default_backoff());
    while let Some(event) = events.next().await {
        match event {
            Ok(watcher::Event::Apply(endpoints) | watcher::Event::InitApply(endpoints)) => {
                balancer.set_servers(endpoint_addresses(&endpoints));
            }
            Ok(_) => {}
            Err(error) => {
                tracing::debug!(%error, "watching the kubernetes Endpoints");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    fn endpoints(json: serde_json::Value) -> Endpoints {
        serde_json::from_value(json).unwrap()
    }

    #[test]
    fn addresses_from_endpoints() {
        let e = endpoints(serde_json::json!({
            "metadata": {"name": "kubernetes"},
            "subsets": [
                {"addresses": [{"ip": "10.0.0.1"}, {"ip": "10.0.0.2"}],
                 "ports": [{"name": "https", "port": 6443}]},
                {"addresses": [{"ip": "127.0.0.1"}, {"ip": "fd00::1"}],
                 "ports": [{"name": "https", "port": 7443}]},
                {"addresses": [{"ip": "10.0.0.9"}], "ports": [{"name": "x", "port": 1}, {"name": "y", "port": 2}]},
            ],
        }));
        assert_eq!(
            endpoint_addresses(&e),
            [
                "10.0.0.1:6443",
                "10.0.0.2:6443",
                "127.0.0.1:7443",
                "[fd00::1]:7443"
            ]
        );
        assert!(endpoint_addresses(&endpoints(serde_json::json!({"metadata": {}}))).is_empty());
    }

    #[test]
    fn candidates_prefer_the_current_server_then_healthy_ones() {
        let mut state = State {
            default: "seed:1".into(),
            learned: vec!["a:1".into(), "b:1".into()],
            current: Some("b:1".into()),
            failed: HashMap::new(),
        };
        assert_eq!(state.candidates(), ["b:1", "a:1", "seed:1"]);
        state.failed.insert("b:1".into(), Instant::now());
        assert_eq!(state.candidates(), ["a:1", "seed:1", "b:1"]);
        // A current server that left the Endpoints is not preferred any more.
        state.current = Some("gone:1".into());
        state.failed.clear();
        assert_eq!(state.candidates(), ["a:1", "b:1", "seed:1"]);
    }

    async fn echo_server(tag: &'static str) -> (String, tokio::task::JoinHandle<()>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let task = tokio::spawn(async move {
            loop {
                let Ok((mut conn, _)) = listener.accept().await else {
                    return;
                };
                tokio::spawn(async move {
                    let _ = conn.write_all(tag.as_bytes()).await;
                });
            }
        });
        (addr, task)
    }

    async fn greeting(lb: &LoadBalancer) -> String {
        let mut conn = TcpStream::connect(lb.local_addr()).await.unwrap();
        let mut out = String::new();
        conn.read_to_string(&mut out).await.unwrap();
        out
    }

    #[tokio::test]
    async fn fails_over_to_the_next_server() {
        let (first, first_task) = echo_server("first").await;
        let (second, _second_task) = echo_server("second").await;
        let lb = LoadBalancer::start(first.clone()).await.unwrap();
        assert_eq!(greeting(&lb).await, "first");
        lb.set_servers(vec![first.clone(), second.clone()]);
        assert_eq!(greeting(&lb).await, "first");
        assert_eq!(lb.current().as_deref(), Some(first.as_str()));

        // The first server goes away: new connections land on the second and stay there.
        first_task.abort();
        let _ = first_task.await;
        assert_eq!(greeting(&lb).await, "second");
        assert_eq!(lb.current().as_deref(), Some(second.as_str()));
        assert_eq!(greeting(&lb).await, "second");
        assert_eq!(lb.servers(), [first, second]);
    }
}
