//! kubelab's Kubernetes API server: HTTPS front (rustls, client-certificate authentication),
//! REST verbs over generic JSON objects, watch, discovery and server-side Tables.
//!
//! It is the only component that touches the store (`kubelab_store`); everything else —
//! controllers, scheduler, agents, the CLI — talks to it over HTTPS like any Kubernetes client.
//! Per-kind knowledge (catalog, defaults, validation, table columns, selectors) lives in
//! `kubelab_resources`; this crate has no per-kind handlers or tables.

mod allocator;
mod authn;
mod authz;
mod bootstrap;
mod crd;
mod custom;
mod discovery;
pub mod encryption;
mod error;
mod eviction;
mod handlers;
mod join;
mod object;
mod registry;
mod request;
mod route;
mod server;
mod streaming;
mod table;
mod watch;

pub use allocator::ServiceRanges;
pub use error::ApiError;
pub use server::{start, RunningServer, ServeError, ServerConfig};
pub use streaming::KubeletRoutes;

/// The authenticated user of a request, inserted by the TLS layer (None: no valid client
/// certificate).
#[derive(Clone, Debug)]
pub struct Authenticated(pub Option<kubelab_pki::Identity>);
