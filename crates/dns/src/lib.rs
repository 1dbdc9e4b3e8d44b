//! Cluster DNS: the records CoreDNS's `kubernetes` plugin serves, answered by a hickory server
//! from kube-rs watches of Namespaces, Services and EndpointSlices (what `kubelab dns` runs,
//! as the `coredns` addon's pods).
//!
//! - `index.rs`: the cluster's names as data — built from the watched objects, pure.
//! - `resolve.rs`: a query (name, type) → the response, as CoreDNS would give it (records,
//!   NXDOMAIN vs NODATA with the zone's SOA, or "not ours: forward"), pure.
//! - `upstream.rs`: forwarding other names to the resolvers of a resolv.conf (SERVFAIL when
//!   none answers).
//! - `server.rs`: the hickory `RequestHandler` tying them together, on UDP and TCP.
//! - `watch.rs`: the reflectors feeding the index.
//!
//! It is not a general DNS server: no zone files, no caching of upstream answers, no DNSSEC.

mod index;
mod resolve;
mod server;
mod upstream;
mod watch;

pub use index::{Index, DEFAULT_TTL};
pub use resolve::{resolve, Resolution};
pub use server::{serve, Handler, ServerConfig};
pub use upstream::{parse_resolv_conf, Upstream};
pub use watch::{watch, Snapshot};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid cluster domain {domain:?}: {reason}")]
    Domain { domain: String, reason: String },
    #[error("cannot read the resolver configuration {path}: {source}")]
    ResolvConf {
        path: String,
        source: std::io::Error,
    },
    #[error("cannot listen on {address} ({protocol}): {source}")]
    Listen {
        address: std::net::SocketAddr,
        protocol: &'static str,
        source: std::io::Error,
    },
    #[error("the DNS server stopped: {0}")]
    Serve(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
