//! kubelab's service proxy and pod network (the roles of kube-proxy in iptables mode and of
//! kindnetd), run by every `kubelab agent` on a real node. It follows Services,
//! EndpointSlices and Nodes with kube-rs watches and programs this node's network namespace:
//!
//! - `model`: Services and EndpointSlices reduced to what routing needs (one
//!   [`model::ServicePort`] per Service port, with its ready endpoints), pure functions;
//! - `rules`: the iptables chains for those ports, pure functions; and the difference between
//!   what is programmed and what is wanted, as `iptables-restore --noflush` input that rewrites
//!   only the chains that changed;
//! - `routes`: a route to every other node's podCIDR through its InternalIP;
//! - `system`: the boundary to the kernel ([`system::Iptables`], [`system::RouteTable`],
//!   [`system::Conntrack`]) with the real implementations (iptables-restore, `ip route`,
//!   netlink) and fakes for tests;
//! - `conntrack`: ctnetlink messages deleting the connection-tracking entries of removed UDP
//!   endpoints;
//! - `proxier`: the loop — reflectors, then a sync after every batch of changes.
//!
//! It is not a load balancer in user space: packets never pass through this process. It does
//! not allocate ClusterIPs or NodePorts (the API server does) nor compute endpoints (the
//! endpoints controllers do).

pub mod conntrack;
pub mod model;
pub mod proxier;
pub mod routes;
pub mod rules;
pub mod system;

pub use model::Cidr;
pub use proxier::{run, Config};

/// Errors of the proxy.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A command (iptables-restore, ip) could not run or failed.
    #[error("{command} failed: {message}")]
    Command { command: String, message: String },
    /// A cluster CIDR that is not `a.b.c.d/n`.
    #[error("invalid CIDR {0:?}: expected an IPv4 network such as 10.244.0.0/16")]
    InvalidCidr(String),
}
