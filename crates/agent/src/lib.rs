//! kubelab's node agent: `kubelet` drives containerd over CRI (pods, volumes, probes,
//! streaming), `fake` simulates nodes kwok-style (real Node objects, Lease heartbeats and pod
//! status without containers). An API client like any other; it never touches the store.
//!
//! Getting there: `join` turns a cluster token into node credentials (k3s-style: CA pinning,
//! node password, certificates signed by the server for keys made here), and `lb` is the
//! client-side load balancer all of the agent's API traffic goes through, so that it survives
//! the loss of any one API server.

pub mod fake;
pub mod join;
pub mod kubelet;
pub mod lb;

/// Requests one agent has in flight to the API server at once. Without a bound, a burst of pod
/// workers opens a pooled TLS connection per concurrent request (35 for 50 pods created at
/// once), each kept with its buffers afterwards; queueing beyond this costs milliseconds.
/// Watches hold a slot only until their response headers arrive.
pub const MAX_API_REQUESTS: usize = 4;

/// The agent's API client for `config`: kube-rs's default stack, with at most
/// [`MAX_API_REQUESTS`] requests in flight.
pub fn api_client(config: kube::Config) -> Result<kube::Client, kube::Error> {
    Ok(kube::client::ClientBuilder::try_from(config)?
        .with_layer(&tower::limit::ConcurrencyLimitLayer::new(MAX_API_REQUESTS))
        .build())
}
