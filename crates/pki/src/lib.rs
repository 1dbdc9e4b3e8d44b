//! The cluster's public-key infrastructure: it makes, stores and loads certificates, keys,
//! kubeconfig files and node join tokens.
//!
//! `ensure_server_pki` creates `<data_dir>/tls/` on a server's first start — a ten-year ECDSA
//! P-256 CA (`kubelab-ca`), the API serving certificate and the client certificates of the
//! built-in users — and reuses it on every later start, re-issuing only leaves that expire within
//! 90 days or, for the serving certificate, lack a requested SAN. The CA is never overwritten.
//! The layout and identities follow kubeadm and k3s (CN is the user, O the groups; the admin is
//! in `kubelab:cluster-admins`, bound by RBAC, and a separate break-glass `system:masters`
//! certificate stays on the server).
//!
//! This crate does not serve anything and does not authenticate or authorize requests: it hands
//! out a `rustls::ServerConfig` and reads identities out of certificates, and the API server
//! decides what they mean. It never talks to the network and has no process-wide state.
//!
//! Architecture invariant: every private key and kubeconfig is written atomically with mode
//! 0600 inside a 0700 directory, and no function in this crate panics on bad input.

mod cert;
mod der;
mod error;
mod fs;
mod kubeconfig;
mod node;
mod server;
mod service_account;
mod tls;
mod token;

pub use cert::{
    generate_ca, identity_from_der, issue_client_cert, issue_expired_client_cert, CertPair,
    Identity, BACKDATE, CA_VALIDITY, LEAF_VALIDITY,
};
pub use error::Error;
pub use kubeconfig::{kubeconfig_yaml, write_kubeconfig, KubeconfigSpec};
pub use node::{
    generate_private_key, issue_node_cert, node_csr, node_user, sign_node_csr, NodeCertKind,
    NODES_GROUP,
};
pub use server::{
    ensure_server_pki, serving_sans, tls_dir, ServerPki, ADMIN_USER, CA_COMMON_NAME,
    CLUSTER_ADMINS_GROUP, CONTROLLER_MANAGER_USER, KUBELET_API_GROUP, KUBELET_CLIENT_USER,
    KUBERNETES_SERVICE_IP, KUBE_PROXY_USER, RENEW_BEFORE, SCHEDULER_USER, SERVING_COMMON_NAME,
    SUPER_ADMIN_USER, SYSTEM_MASTERS_GROUP,
};
pub use service_account::{
    ensure_service_account_key, ServiceAccountKey, SERVICE_ACCOUNT_KEY_FILE,
};
pub use tls::{client_tls_config, kubelet_server_tls_config, server_tls_config, ALPN_PROTOCOLS};
pub use token::{
    ca_hash, ensure_node_token, node_token, parse_token, verify_node_token, ParsedToken,
    NODE_TOKEN_FILE, NODE_TOKEN_USER,
};
