//! kubelab's node agent (its kubelet). Today: simulated nodes (`fake`), kwok-style — real Node
//! objects, Lease heartbeats and realistic pod status without running containers. The CRI-driven
//! agent comes next. An API client like any other; it never touches the store.

pub mod fake;
pub mod join;
pub mod lb;
