//! The HTTPS listener: TLS handshake, client identity, HTTP/1.1 and HTTP/2 serving.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use kubelab_pki::ServerPki;
use kubelab_store::Store;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;
use tower::ServiceExt;

use crate::handlers::{dispatch, ApiState};
use crate::registry::Registry;
use crate::Authenticated;

const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

pub struct ServerConfig {
    pub bind: IpAddr,
    pub port: u16,
    pub pki: ServerPki,
    pub store: Arc<dyn Store>,
    /// The address the `kubernetes` Service's Endpoints point at.
    pub advertise_address: IpAddr,
    /// Service ClusterIP range and NodePort range.
    pub service_ranges: crate::ServiceRanges,
    /// The node join token (`<data-dir>/node-token`); `None` disables node joins.
    pub node_token: Option<String>,
    /// Signs and verifies service-account tokens.
    pub service_account_key: kubelab_pki::ServiceAccountKey,
    /// Local addresses of the kubelets of nodes simulated in this process (others are reached
    /// at their InternalIP).
    pub kubelet_routes: crate::KubeletRoutes,
    /// Encryption at rest (`--encryption-provider-config`); None stores every value as is.
    pub encryption: Option<Arc<crate::encryption::Encryption>>,
}

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("cannot build the TLS configuration: {0}")]
    Tls(#[from] kubelab_pki::Error),
    #[error("cannot build the OpenAPI documents: {0}")]
    OpenApi(#[from] kubelab_openapi::Error),
    #[error("cannot create the bootstrap objects: {0}")]
    Bootstrap(#[from] crate::ApiError),
}

/// A server accepting connections in the background.
pub struct RunningServer {
    pub local_addr: SocketAddr,
    pub task: JoinHandle<()>,
    /// Keeps this server's address in the `kubernetes` Endpoints.
    endpoints: JoinHandle<()>,
    registry: Arc<Registry>,
    advertised: SocketAddr,
}

impl RunningServer {
    /// Stop accepting connections and take this server out of the `kubernetes` Endpoints (so
    /// node agents stop trying it at once rather than when its lease expires).
    pub async fn shutdown(self) {
        self.task.abort();
        self.endpoints.abort();
        let removal = crate::bootstrap::remove_endpoint(&self.registry, self.advertised);
        match tokio::time::timeout(Duration::from_secs(2), removal).await {
            Ok(Ok(())) => {}
            Ok(Err(error)) => {
                tracing::warn!(%error, "cannot remove this server from the kubernetes Endpoints")
            }
            Err(_) => {
                tracing::warn!("removing this server from the kubernetes Endpoints timed out")
            }
        }
    }
}

/// Bind, create the bootstrap objects and start serving.
pub async fn start(config: ServerConfig) -> Result<RunningServer, ServeError> {
    let addr = SocketAddr::new(config.bind, config.port);
    let tls = kubelab_pki::server_tls_config(&config.pki)?;
    let kubelet =
        crate::streaming::kubelet::KubeletClient::new(&config.pki, config.kubelet_routes)?;
    let acceptor = TlsAcceptor::from(Arc::new(tls));
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|source| ServeError::Bind { addr, source })?;
    let local_addr = listener
        .local_addr()
        .map_err(|source| ServeError::Bind { addr, source })?;
    let store: Arc<dyn Store> = match &config.encryption {
        Some(encryption) => Arc::new(crate::encryption::EncryptedStore::new(
            config.store.clone(),
            encryption.clone(),
        )),
        None => config.store.clone(),
    };
    let registry = Arc::new(Registry::with_ranges(store, config.service_ranges.clone()));
    crate::bootstrap::ensure(
        &registry,
        config.advertise_address,
        local_addr.port(),
        config.service_ranges.first(),
    )
    .await?;
    crate::authz::bootstrap::ensure(&registry).await?;
    let authorizer = crate::authz::Authorizer::new(registry.clone()).await?;
    tokio::spawn(authorizer.clone().follow());
    let openapi = tokio::task::spawn_blocking(kubelab_openapi::OpenApi::build)
        .await
        .map_err(|e| ServeError::Bootstrap(crate::ApiError::internal(e)))??;
    tokio::spawn(crate::crd::run(registry.clone()));
    let join = Arc::new(crate::join::JoinService {
        ca: config.pki.ca.clone(),
        node_token: config.node_token.clone(),
        registry: registry.clone(),
    });
    let tokens = crate::authn::TokenAuthority::new(&config.service_account_key)?;
    let state = Arc::new(ApiState {
        tokens,
        authorizer,
        registry: registry.clone(),
        openapi,
        server_address: format!("{}:{}", config.advertise_address, local_addr.port()),
        kubelet,
    });
    let mut app = axum::Router::new().merge(crate::join::router(join));
    if let Some(encryption) = &config.encryption {
        let rotator =
            crate::encryption::rotation::Rotator::new(config.store.clone(), encryption.clone());
        app = app.merge(crate::encryption::router(
            Arc::new(rotator),
            state.authorizer.clone(),
        ));
    }
    let app = app.fallback(dispatch).with_state(state);
    let task = tokio::spawn(accept_loop(listener, acceptor, app));
    let advertised = SocketAddr::new(config.advertise_address, local_addr.port());
    let endpoints = tokio::spawn(crate::bootstrap::run_endpoint_reconciler(
        registry.clone(),
        advertised,
    ));
    tracing::info!(%local_addr, "API server listening");
    Ok(RunningServer {
        local_addr,
        task,
        endpoints,
        registry,
        advertised,
    })
}

async fn accept_loop(listener: TcpListener, acceptor: TlsAcceptor, app: axum::Router) {
    loop {
        let (tcp, peer) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = tcp.set_nodelay(true);
        let acceptor = acceptor.clone();
        let app = app.clone();
        tokio::spawn(async move {
            let tls = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                Ok(Ok(tls)) => tls,
                Ok(Err(e)) => {
                    tracing::debug!(%peer, error = %e, "TLS handshake failed");
                    return;
                }
                Err(_) => {
                    tracing::debug!(%peer, "TLS handshake timed out");
                    return;
                }
            };
            let identity = tls
                .get_ref()
                .1
                .peer_certificates()
                .and_then(|certs| certs.first())
                .and_then(|der| kubelab_pki::identity_from_der(der.as_ref()).ok())
                .map(|mut id| {
                    // Every authenticated user is in system:authenticated, as upstream.
                    if !id.groups.iter().any(|g| g == "system:authenticated") {
                        id.groups.push("system:authenticated".into());
                    }
                    id
                });
            let auth = Authenticated(identity);
            let service = app.map_request(move |mut req: http::Request<hyper::body::Incoming>| {
                req.extensions_mut().insert(auth.clone());
                req
            });
            let result = auto::Builder::new(TokioExecutor::new())
                .serve_connection_with_upgrades(
                    TokioIo::new(tls),
                    TowerToHyperService::new(service),
                )
                .await;
            if let Err(e) = result {
                tracing::debug!(%peer, error = %e, "connection ended with an error");
            }
        });
    }
}
