//! The ingress controller of the `ingress` addon (`kubelab ingress`): a hyper reverse proxy
//! serving networking.k8s.io/v1 Ingresses of the IngressClasses whose controller is
//! `k8s.io/ingress-nginx`, with the common `nginx.ingress.kubernetes.io/*` annotations, so that
//! manifests written for ingress-nginx work unchanged.
//!
//! - `annotations.rs`: the ingress-nginx annotations of one Ingress as typed options, pure.
//! - `routes.rs`: the routing table — built whole from the watched Ingresses, IngressClasses,
//!   Services and EndpointSlices (which Ingresses are ours, hosts, paths by pathType, regex
//!   locations, default backends, ready endpoints) and the request → route decision, pure.
//! - `tls.rs`: the certificates of the Ingresses' `tls` sections (from `kubernetes.io/tls`
//!   Secrets) chosen by SNI, a self-signed fallback certificate.
//! - `proxy.rs`: the HTTP and HTTPS listeners and the request path: redirects, 404/503,
//!   rewrite, X-Forwarded-* headers, forwarding with streaming bodies and upgrades
//!   (WebSocket) to a ready endpoint, round robin.
//! - `watch.rs`: the reflectors that keep the table current and the Ingress status writer.
//!
//! It is not nginx: no configuration snippets, no rate limits, authentication, canaries or
//! session affinity annotations, no TCP/UDP services ConfigMaps; one replica writes status.

mod annotations;
mod proxy;
mod routes;
mod tls;
mod watch;

pub use annotations::{parse_size, BackendProtocol, Options};
pub use proxy::{serve, Listeners};
pub use routes::{Backend, ClassConfig, Decision, Objects, PathKind, Table};
pub use tls::{CertificateStore, SniResolver};
pub use watch::{clear_status, clear_statuses, served_ingresses, watch, Shared, StatusConfig};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot listen on {address}: {source}")]
    Listen {
        address: std::net::SocketAddr,
        source: std::io::Error,
    },
    #[error("tls: {0}")]
    Tls(String),
    #[error("the watches of the cluster ended")]
    WatchEnded,
    #[error("API request failed: {0}")]
    Api(kube::Error),
}
