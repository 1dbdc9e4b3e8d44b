//! Where node containers live. The `Provider` trait is everything cluster code asks of a
//! container engine; `DockerProvider` implements it over the Docker Engine API (bollard), and
//! podman would be one more implementation. A cluster's whole state is the labelled
//! containers, network and volumes a provider holds: there is no state file to drift.

mod docker;
#[cfg(test)]
pub(crate) mod fake;

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::pin::Pin;

use async_trait::async_trait;
use bytes::Bytes;
use futures::Stream;

pub(crate) use docker::short_error as docker_error;
pub use docker::DockerProvider;

use crate::Result;

/// Label holding the cluster name, on every container, network and volume kubelab creates.
pub const CLUSTER_LABEL: &str = "dev.kubelab.cluster";
/// Label holding the node role (`server` or `agent`) on node containers, `network`/`volume`
/// on the others.
pub const ROLE_LABEL: &str = "dev.kubelab.role";
/// Host port of the API server, on server containers.
pub const API_PORT_LABEL: &str = "dev.kubelab.api-port";
/// The node's fixed address on the cluster network.
pub const NODE_IP_LABEL: &str = "dev.kubelab.node-ip";

/// A byte stream (image archives, tarballs).
pub type ByteStream = Pin<Box<dyn Stream<Item = std::io::Result<Bytes>> + Send>>;

/// The role of a node container.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Role {
    /// Runs `kubelab server` (and an agent, so it is a node too).
    Server,
    /// Runs `kubelab agent`.
    Agent,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Server => "server",
            Role::Agent => "agent",
        }
    }

    pub fn parse(s: &str) -> Option<Role> {
        match s {
            "server" => Some(Role::Server),
            "agent" => Some(Role::Agent),
            _ => None,
        }
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // pad, not write_str: tables align on `{:<7}`.
        f.pad(self.as_str())
    }
}

/// What the engine can do, found once per engine.
#[derive(Clone, Debug)]
pub struct EngineInfo {
    /// Engine ID (stable per installation).
    pub id: String,
    pub version: String,
    /// 1 or 2.
    pub cgroup_version: u8,
}

/// How much privilege a node container gets.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Privileges {
    /// `--privileged`.
    Full,
    /// The explicit capability set, for engines that refuse `--privileged` (e.g. a dockerd whose
    /// own bounding set lacks some capabilities).
    Capabilities(Vec<String>),
}

/// The capabilities a node needs when `--privileged` is refused: enough for containerd, runc,
/// mounts, cgroups, CNI and iptables.
pub const NODE_CAPABILITIES: &[&str] = &[
    "SYS_ADMIN",
    "NET_ADMIN",
    "NET_RAW",
    "SYS_PTRACE",
    "DAC_READ_SEARCH",
    "SYS_CHROOT",
    "IPC_LOCK",
    "SYS_NICE",
    "SETPCAP",
    "MKNOD",
    "AUDIT_WRITE",
];

/// A cluster's bridge network.
#[derive(Clone, Debug)]
pub struct NetworkSpec {
    pub name: String,
    pub cluster: String,
    /// e.g. 172.30.7.0/24
    pub subnet: String,
    pub gateway: Ipv4Addr,
}

/// A published port: `host_ip:host_port` on the host to `container_port` in the node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PortMapping {
    pub host_ip: String,
    pub host_port: u16,
    pub container_port: u16,
    /// `tcp`, `udp` or `sctp`.
    pub protocol: String,
}

/// A host directory mounted into the node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BindMount {
    pub host_path: String,
    pub container_path: String,
    pub read_only: bool,
}

/// One node container to create.
#[derive(Clone, Debug)]
pub struct NodeSpec {
    /// Container name, host name and Kubernetes node name.
    pub name: String,
    pub cluster: String,
    pub role: Role,
    pub image: String,
    pub network: String,
    pub ip: Ipv4Addr,
    /// Named volume mounted at /var (the node's state: containerd, kubelab, logs).
    pub var_volume: String,
    pub binds: Vec<BindMount>,
    pub ports: Vec<PortMapping>,
    pub env: Vec<String>,
    /// Arguments after the image's entrypoint (`kubelab node-init`).
    pub args: Vec<String>,
    /// Extra labels (the cluster and role labels are always set).
    pub labels: BTreeMap<String, String>,
    pub privileges: Privileges,
}

/// A node container as the engine reports it.
#[derive(Clone, Debug)]
pub struct NodeInfo {
    pub name: String,
    pub cluster: String,
    pub role: Role,
    /// `running`, `exited`, `created`, ...
    pub state: String,
    pub ip: Option<Ipv4Addr>,
    pub image: String,
    pub labels: BTreeMap<String, String>,
    /// (host ip, host port, container port/proto)
    pub ports: Vec<PortMapping>,
}

impl NodeInfo {
    pub fn running(&self) -> bool {
        self.state == "running"
    }

    /// The host port the API server is published on (server nodes).
    pub fn api_port(&self) -> Option<u16> {
        self.labels.get(API_PORT_LABEL)?.parse().ok()
    }
}

/// What a command run in a node printed, and how it ended.
#[derive(Clone, Debug, Default)]
pub struct ExecOutput {
    pub exit_code: i64,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
}

impl ExecOutput {
    pub fn success(&self) -> bool {
        self.exit_code == 0
    }

    pub fn stdout_text(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }

    /// stderr, or stdout when stderr is empty, trimmed: for error messages.
    pub fn message(&self) -> String {
        let text = if self.stderr.is_empty() {
            &self.stdout
        } else {
            &self.stderr
        };
        String::from_utf8_lossy(text).trim().to_owned()
    }
}

/// Everything cluster code asks of a container engine.
#[async_trait]
pub trait Provider: Send + Sync {
    /// Checks the engine answers and reports what it is.
    async fn engine_info(&self) -> Result<EngineInfo>;

    /// Whether the engine accepts `--privileged` containers from `image` (probed once).
    async fn privileged_allowed(&self, image: &str) -> Result<bool>;

    /// Creates the network, or does nothing when one made by kubelab for this cluster exists.
    async fn ensure_network(&self, spec: &NetworkSpec) -> Result<()>;
    /// The subnets of every network on the engine (to pick a free one).
    async fn used_subnets(&self) -> Result<Vec<String>>;
    /// The subnet of a network, if it exists.
    async fn network_subnet(&self, name: &str) -> Result<Option<String>>;
    async fn remove_network(&self, name: &str) -> Result<()>;
    /// Names of the networks labelled with `cluster` (every cluster's with None).
    async fn list_networks(&self, cluster: Option<&str>) -> Result<Vec<(String, String)>>;

    async fn create_volume(&self, name: &str, cluster: &str) -> Result<()>;
    async fn remove_volume(&self, name: &str) -> Result<()>;
    /// (volume, cluster) of the volumes labelled with `cluster` (all clusters' with None).
    async fn list_volumes(&self, cluster: Option<&str>) -> Result<Vec<(String, String)>>;

    /// Creates the node container without starting it.
    async fn create_node(&self, spec: &NodeSpec) -> Result<()>;
    /// Extracts a tar archive into `dir` of a (created or running) node.
    async fn upload(&self, node: &str, dir: &str, tar: Vec<u8>) -> Result<()>;
    async fn start_node(&self, name: &str) -> Result<()>;
    async fn stop_node(&self, name: &str, timeout_seconds: u32) -> Result<()>;
    async fn remove_node(&self, name: &str) -> Result<()>;
    /// Node containers labelled with `cluster` (every kubelab node with None).
    async fn list_nodes(&self, cluster: Option<&str>) -> Result<Vec<NodeInfo>>;
    /// Whether any container (kubelab's or not) has this name.
    async fn container_exists(&self, name: &str) -> Result<bool>;

    /// Runs a command in a running node; `stdin` is streamed to it when given.
    async fn exec(
        &self,
        node: &str,
        command: &[&str],
        stdin: Option<ByteStream>,
    ) -> Result<ExecOutput>;
    /// The node container's own output (its entrypoint's stdout and stderr).
    async fn logs(&self, node: &str) -> Result<Vec<u8>>;
    /// The engine's description of the container, as JSON.
    async fn inspect(&self, node: &str) -> Result<serde_json::Value>;

    /// The image's ID, or None when the engine does not have it.
    async fn image_id(&self, image: &str) -> Result<Option<String>>;
    /// The image's labels, or None when the engine does not have it.
    async fn image_labels(&self, image: &str) -> Result<Option<BTreeMap<String, String>>>;
    /// `docker save` of the images, as a stream.
    fn save_images(&self, images: &[String]) -> ByteStream;
}
