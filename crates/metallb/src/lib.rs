//! kubelab's MetalLB: the `metallb.io/v1beta1` API served by a controller that assigns
//! addresses from IPAddressPools to LoadBalancer Services, and a layer-2 speaker that answers
//! ARP for them from one elected node per address (what `kubelab metallb controller|speaker`
//! run, as the `metallb` addon's pods).
//!
//! - `addresses.rs`: pool address syntax (CIDR, `A-B` ranges) and iteration, pure.
//! - `model.rs`: the API objects as the controller and speaker read them (pools, L2
//!   advertisements, the MetalLB-relevant view of a Service), pure.
//! - `allocate.rs`: Services + pools → the address (or the failure) of every Service, pure:
//!   requested addresses, pool annotation, sharing keys, autoAssign, pool selection.
//! - `controller.rs`: reflectors, the plan written back (status, annotation, events), pool
//!   status, the unsupported kinds (BGP and friends) reported as such.
//! - `speaker/`: `election.rs` (which node announces which address, pure), `arp.rs` (ARP
//!   packets, pure), `socket.rs` (AF_PACKET raw socket, interfaces), `mod.rs` (the loop).
//!
//! It is not MetalLB: IPv4 and layer 2 only (no BGP, no IPv6 NDP), no memberlist (the
//! election reads node and speaker-pod readiness from the API instead).

pub mod addresses;
pub mod allocate;
pub mod controller;
mod events;
pub mod model;
pub mod speaker;

/// The API group and version of every MetalLB kind.
pub const GROUP: &str = "metallb.io";
pub const VERSION: &str = "v1beta1";

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid address range {range:?}: {reason}")]
    Range { range: String, reason: String },
    #[error("kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    #[error("{operation} on interface {interface}: {source}")]
    Socket {
        operation: &'static str,
        interface: String,
        source: std::io::Error,
    },
    #[error("the watches of {0} ended")]
    WatchEnded(&'static str),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
