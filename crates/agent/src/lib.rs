//! kubelab's node agent (its kubelet). Today: simulated nodes (`fake`), kwok-style — real Node
//! objects, Lease heartbeats and realistic pod status without running containers. The CRI-driven
//! agent comes next. An API client like any other; it never touches the store.
//!
//! Getting there: `join` turns a cluster token into node credentials (k3s-style: CA pinning,
//! node password, certificates signed by the server for keys made here), and `lb` is the
//! client-side load balancer all of the agent's API traffic goes through, so that it survives
//! the loss of any one API server.

pub mod fake;
pub mod join;
pub mod kubelet;
pub mod lb;
