//! Clusters of container nodes on the host: what `kubelab up`, `down`, `list`, `status` and
//! friends do, as a library.
//!
//! - [`provider`]: the `Provider` trait (everything asked of a container engine) and its Docker
//!   implementation; a cluster's only state is the labelled containers, network and volumes.
//! - [`node_image`]: builds the node image (Debian bookworm, containerd, runc, CNI plugins,
//!   iptables, the `kubelab` binary), offline from a debootstrap base when no registry answers.
//! - [`node_init`]: the node container's entrypoint (`kubelab node-init`): cgroups, mounts,
//!   sysctls, then containerd and `kubelab server` / `kubelab agent` under one supervisor.
//!
//! This crate does not run the control plane or the kubelet (those run inside the nodes, from
//! the same binary) and does not print anything: progress goes through the `Progress` trait the
//! binary implements.

pub mod addons;
pub mod apply;
pub mod cluster;
pub mod create;
mod error;
pub mod export;
pub mod kubeconfig;
pub mod load;
pub mod node_image;
pub mod node_init;
pub mod nodes;
pub mod oci;
pub mod paths;
pub mod profile;
pub mod provider;

pub use error::{Error, Result};
