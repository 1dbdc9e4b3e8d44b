//! The CRI kubelet (placeholder while it is written).

pub mod cni;
pub mod cri;
