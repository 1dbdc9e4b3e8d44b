//! `kubelab up` as a list of visible actions (kind's model): network, nodes, PKI, start,
//! API, join, addons, wait, kubeconfig. Each action reports through [`Progress`]; options
//! remove actions from the list rather than branching inside them. On failure everything this
//! run created is removed unless `retain`.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, TcpListener};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Node, ServiceAccount};
use kube::api::{Api, ListParams, Patch, PatchParams};

use crate::cluster::{self, network_name, node_name, volume_name};
use crate::kubeconfig;
use crate::node_init::API_PORT;
use crate::provider::{
    BindMount, NetworkSpec, NodeInfo, NodeSpec, PortMapping, Privileges, Provider, Role,
    API_PORT_LABEL, NODE_CAPABILITIES,
};
use crate::{Error, Result};

/// Reports the actions as they run.
pub trait Progress: Send + Sync {
    /// An action starts; the handle reports how it ended.
    fn begin(&self, title: &str) -> Box<dyn Step>;
    /// A line of information outside the actions.
    fn note(&self, line: &str);
}

/// One running action.
pub trait Step: Send {
    fn succeed(self: Box<Self>, detail: &str);
    fn fail(self: Box<Self>, error: &Error);
}

/// A Progress that reports nothing (tests, library use).
pub struct Silent;

impl Progress for Silent {
    fn begin(&self, _title: &str) -> Box<dyn Step> {
        Box::new(SilentStep)
    }
    fn note(&self, _line: &str) {}
}

struct SilentStep;

impl Step for SilentStep {
    fn succeed(self: Box<Self>, _detail: &str) {}
    fn fail(self: Box<Self>, _error: &Error) {}
}

/// Which nodes a port mapping goes to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NodeFilter {
    /// The first server (the default, like k3d's `server:0`).
    FirstServer,
    AllServers,
    AllAgents,
    All,
    /// One node by its index among the cluster's nodes (servers first).
    Index(u32),
}

/// A port to publish: `host_ip:host_port` → `container_port/protocol` on some nodes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PortSpec {
    pub host_ip: String,
    pub host_port: u16,
    pub container_port: u16,
    pub protocol: String,
    pub nodes: NodeFilter,
}

impl PortSpec {
    /// `[HOST_IP:]HOST_PORT:NODE_PORT[/PROTO]` (k3d/docker style); the host address defaults
    /// to 127.0.0.1.
    pub fn parse(text: &str) -> Result<PortSpec> {
        let invalid = || {
            Error::Invalid(format!(
                "invalid --port {text:?}: use [HOST_IP:]HOST_PORT:NODE_PORT[/tcp|udp|sctp]"
            ))
        };
        let (main, protocol) = match text.rsplit_once('/') {
            Some((m, p)) if ["tcp", "udp", "sctp"].contains(&p) => (m, p.to_owned()),
            Some(_) => return Err(invalid()),
            None => (text, "tcp".to_owned()),
        };
        let parts: Vec<&str> = main.rsplitn(3, ':').collect();
        let (host_ip, host_port, container_port) = match parts.as_slice() {
            [node, host] => ("127.0.0.1".to_owned(), *host, *node),
            [node, host, ip] => (ip.trim_matches(['[', ']']).to_owned(), *host, *node),
            _ => return Err(invalid()),
        };
        Ok(PortSpec {
            host_ip,
            host_port: host_port.parse().map_err(|_| invalid())?,
            container_port: container_port.parse().map_err(|_| invalid())?,
            protocol,
            nodes: NodeFilter::FirstServer,
        })
    }
}

/// Everything `up` needs to know.
#[derive(Clone, Debug)]
pub struct CreateSpec {
    pub name: String,
    pub servers: u32,
    pub agents: u32,
    pub image: String,
    /// Host port of the API server (None: a free one).
    pub api_port: Option<u16>,
    pub ports: Vec<PortSpec>,
    pub mounts: Vec<BindMount>,
    pub server_args: Vec<String>,
    pub agent_args: Vec<String>,
    /// How long to wait for every node Ready (zero: do not wait).
    pub wait: Duration,
    pub retain: bool,
    /// Where to merge the kubeconfig (None: nowhere), and whether to switch to it.
    pub kubeconfig: Option<(PathBuf, bool)>,
    /// The addons to install, rendered with `facts` once the network is made (the facts
    /// then know its subnet).
    pub addons: Vec<crate::addons::Addon>,
    pub facts: crate::addons::ClusterFacts,
}

/// What `up` made.
#[derive(Clone, Debug)]
pub struct Created {
    pub name: String,
    pub api_url: String,
    pub nodes: Vec<String>,
    pub kubeconfig: Option<PathBuf>,
    pub elapsed: Duration,
}

/// The node containers a spec asks for, in order (servers first).
fn planned_nodes(spec: &CreateSpec, subnet: &str) -> Result<Vec<(String, Role, Ipv4Addr)>> {
    let mut nodes = Vec::new();
    let mut n = 2u8;
    for (role, count) in [(Role::Server, spec.servers), (Role::Agent, spec.agents)] {
        for i in 0..count {
            nodes.push((
                node_name(&spec.name, role, i),
                role,
                cluster::host_address(subnet, n)?,
            ));
            n = n
                .checked_add(1)
                .ok_or_else(|| Error::Invalid("at most 252 nodes per cluster".into()))?;
        }
    }
    Ok(nodes)
}

/// A port on 127.0.0.1 nobody listens on now.
pub fn free_port() -> Result<u16> {
    let listener =
        TcpListener::bind(("127.0.0.1", 0)).map_err(|e| Error::io("bind", "127.0.0.1:0", e))?;
    Ok(listener
        .local_addr()
        .map_err(|e| Error::io("bind", "127.0.0.1:0", e))?
        .port())
}

/// Fails with PortInUse when something listens on the host address already (TCP only; UDP
/// conflicts are reported by the engine).
fn check_port(host_ip: &str, port: u16) -> Result<()> {
    let address = format!("{host_ip}:{port}");
    match TcpListener::bind(address.as_str()) {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => Err(Error::PortInUse { address }),
        Err(_) => Ok(()),
    }
}

/// Shared state of one `up` run.
struct Run<'a> {
    provider: &'a dyn Provider,
    spec: &'a CreateSpec,
    nodes: Vec<(String, Role, Ipv4Addr)>,
    subnet: String,
    api_port: u16,
    token: String,
    entry: Option<kubeconfig::Entry>,
    client: Option<kube::Client>,
    pki_dir: tempfile::TempDir,
}

/// Creates a cluster. On failure removes what it made unless `spec.retain`.
pub async fn create(
    provider: &dyn Provider,
    spec: &CreateSpec,
    progress: &dyn Progress,
) -> Result<Created> {
    let started = Instant::now();
    cluster::validate_name(&spec.name)?;
    if spec.servers == 0 {
        return Err(Error::Invalid("a cluster needs at least one server".into()));
    }
    if spec.servers > 1 {
        return Err(Error::Invalid(
            "more than one server needs the HA datastore, which kubelab does not have yet; use --servers 1 and add agents with --nodes".into(),
        ));
    }
    // Checks that touch nothing come first: a failure here leaves no trace and does not
    // remove a cluster that exists.
    let existing = cluster::get(provider, &spec.name).await?;
    if !existing.nodes.is_empty() || !existing.networks.is_empty() || !existing.volumes.is_empty() {
        return Err(Error::ClusterExists {
            name: spec.name.clone(),
        });
    }
    let api_port = match spec.api_port {
        Some(p) => {
            check_port("127.0.0.1", p)?;
            p
        }
        None => free_port()?,
    };
    for port in &spec.ports {
        if port.protocol == "tcp" {
            check_port(&port.host_ip, port.host_port)?;
        }
    }
    let (subnet, _) = cluster::pick_subnet(&provider.used_subnets().await?, &spec.name)?;
    let nodes = planned_nodes(spec, &subnet)?;
    for (name, _, _) in &nodes {
        if provider.container_exists(name).await? {
            return Err(Error::NameTaken {
                kind: "container",
                name: name.clone(),
            });
        }
    }
    let mut run = Run {
        provider,
        spec,
        nodes,
        subnet,
        api_port,
        token: String::new(),
        entry: None,
        client: None,
        pki_dir: tempfile::tempdir()
            .map_err(|e| Error::io("create a temporary directory in", std::env::temp_dir(), e))?,
    };
    let result = run.actions(progress).await;
    match result {
        Ok(()) => Ok(Created {
            name: spec.name.clone(),
            api_url: format!("https://127.0.0.1:{api_port}"),
            nodes: run.nodes.iter().map(|(n, _, _)| n.clone()).collect(),
            kubeconfig: spec.kubeconfig.as_ref().map(|(p, _)| p.clone()),
            elapsed: started.elapsed(),
        }),
        Err(e) => {
            if spec.retain {
                progress.note(&format!(
                    "keeping what was created (--retain); remove it with `kubelab down {}`",
                    spec.name
                ));
            } else {
                let step = progress.begin("Removing what was created");
                match cluster::delete(provider, &spec.name).await {
                    Ok(_) => step.succeed(""),
                    Err(cleanup) => step.fail(&cleanup),
                }
            }
            Err(e)
        }
    }
}

/// Runs one action, reporting it.
async fn action<T>(
    progress: &dyn Progress,
    title: &str,
    work: impl std::future::Future<Output = Result<(T, String)>>,
) -> Result<T> {
    let step = progress.begin(title);
    match work.await {
        Ok((value, detail)) => {
            step.succeed(&detail);
            Ok(value)
        }
        Err(e) => {
            step.fail(&e);
            Err(e)
        }
    }
}

impl Run<'_> {
    async fn actions(&mut self, progress: &dyn Progress) -> Result<()> {
        let spec = self.spec;
        let network = network_name(&spec.name);
        action(progress, &format!("Creating network {network}"), async {
            // Another `up` may take the same /24 between our listing and our creation: the
            // engine refuses the overlap, and the next free one is tried.
            let mut taken: Vec<String> = Vec::new();
            for attempt in 0.. {
                let gateway = cluster::host_address(&self.subnet, 1)?;
                let created = self
                    .provider
                    .ensure_network(&NetworkSpec {
                        name: network.clone(),
                        cluster: spec.name.clone(),
                        subnet: self.subnet.clone(),
                        gateway,
                    })
                    .await;
                match created {
                    Ok(()) => break,
                    Err(Error::Engine { message, .. })
                        if message.contains("overlap") && attempt < 8 =>
                    {
                        taken.push(self.subnet.clone());
                        let mut used = self.provider.used_subnets().await?;
                        used.extend(taken.iter().cloned());
                        self.subnet = cluster::pick_subnet(&used, &spec.name)?.0;
                        self.nodes = planned_nodes(spec, &self.subnet)?;
                    }
                    Err(e) => return Err(e),
                }
            }
            Ok(((), self.subnet.clone()))
        })
        .await?;

        action(progress, "Generating the cluster PKI", async {
            let (server, _, ip) = self.nodes[0].clone();
            let sans = vec![ip.to_string(), server.clone()];
            let pki = kubelab_pki::ensure_server_pki(self.pki_dir.path(), &server, &sans)?;
            self.token = kubelab_pki::ensure_node_token(self.pki_dir.path(), &pki.ca.cert_pem)?;
            let yaml = kubelab_pki::kubeconfig_yaml(&kubelab_pki::KubeconfigSpec {
                cluster_name: "kubelab",
                context_name: "kubelab",
                user_name: "kubelab-admin",
                server: "https://127.0.0.1",
                ca_pem: &pki.ca.cert_pem,
                client: &pki.admin,
            })?;
            self.entry = Some(kubeconfig::Entry::from_kubeconfig(
                &spec.name,
                &yaml,
                &format!("https://127.0.0.1:{}", self.api_port),
            )?);
            Ok((
                (),
                "CA, serving and client certificates, join token".to_owned(),
            ))
        })
        .await?;

        let count = self.nodes.len();
        action(
            progress,
            &format!("Creating {count} node container{}", plural(count)),
            async {
                let privileges = if self.provider.privileged_allowed(&spec.image).await? {
                    Privileges::Full
                } else {
                    Privileges::Capabilities(
                        NODE_CAPABILITIES.iter().map(|c| c.to_string()).collect(),
                    )
                };
                let detail = match privileges {
                    Privileges::Full => "privileged",
                    Privileges::Capabilities(_) => {
                        "explicit capabilities (--privileged refused here)"
                    }
                };
                let specs: Vec<NodeSpec> = self
                    .nodes
                    .iter()
                    .enumerate()
                    .map(|(index, (name, role, ip))| {
                        self.node_spec(index as u32, name, *role, *ip, &privileges)
                    })
                    .collect();
                let provider = self.provider;
                futures::future::try_join_all(specs.iter().map(|node| async move {
                    provider.create_volume(&node.var_volume, &spec.name).await?;
                    provider.create_node(node).await
                }))
                .await?;
                // The first server gets the PKI and the token before it starts.
                let tar = pki_archive(self.pki_dir.path())?;
                self.provider
                    .upload(&self.nodes[0].0, "/var/lib", tar)
                    .await?;
                Ok(((), detail.to_owned()))
            },
        )
        .await?;

        action(
            progress,
            &format!("Starting {count} node{}", plural(count)),
            async {
                let provider = self.provider;
                futures::future::try_join_all(
                    self.nodes
                        .iter()
                        .map(|(name, _, _)| provider.start_node(name)),
                )
                .await?;
                Ok(((), String::new()))
            },
        )
        .await?;

        let api_url = format!("https://127.0.0.1:{}", self.api_port);
        action(
            progress,
            &format!("Waiting for the API server at {api_url}"),
            async {
                let entry = self.entry.clone().expect("set by the PKI action");
                let client = cluster::client(&entry).await?;
                let version = wait_api(&client, spec.wait.max(Duration::from_secs(60))).await?;
                self.client = Some(client);
                Ok(((), version))
            },
        )
        .await?;

        if !spec.wait.is_zero() {
            let client = self.client.clone().expect("set by the API action");
            let names: Vec<String> = self.nodes.iter().map(|(n, _, _)| n.clone()).collect();
            let servers: Vec<String> = self
                .nodes
                .iter()
                .filter(|(_, r, _)| *r == Role::Server)
                .map(|(n, _, _)| n.clone())
                .collect();
            action(
                progress,
                &format!("Joining {count} node{}", plural(count)),
                async {
                    wait_registered(&client, &names, &servers, spec.wait).await?;
                    Ok(((), String::new()))
                },
            )
            .await?;
        }

        let facts = spec.facts.clone().with_network(&self.subnet);
        for addon in &spec.addons {
            let client = self.client.clone().expect("set by the API action");
            let manifests = crate::addons::render(addon, &facts)?;
            action(
                progress,
                &format!("Installing addon {}", addon.name),
                async {
                    Ok((
                        (),
                        crate::addons::install(&client, &addon.name, &manifests).await?,
                    ))
                },
            )
            .await?;
        }

        if !spec.wait.is_zero() {
            let client = self.client.clone().expect("set by the API action");
            action(
                progress,
                &format!("Waiting for {count} node{} Ready", plural(count)),
                async {
                    wait_ready(&client, count, spec.wait).await?;
                    Ok(((), String::new()))
                },
            )
            .await?;
        }

        if let Some((path, switch)) = &spec.kubeconfig {
            let entry = self.entry.clone().expect("set by the API action");
            action(
                progress,
                &format!("Merging kubeconfig into {}", path.display()),
                async {
                    let path = path.clone();
                    let switch = *switch;
                    tokio::task::spawn_blocking(move || kubeconfig::merge(&path, &entry, switch))
                        .await
                        .map_err(|e| Error::Invalid(format!("kubeconfig merge: {e}")))??;
                    Ok((
                        (),
                        format!(
                            "context {}{}",
                            kubeconfig::entry_name(&spec.name),
                            if switch { " (current)" } else { "" }
                        ),
                    ))
                },
            )
            .await?;
        }
        Ok(())
    }

    fn node_spec(
        &self,
        index: u32,
        name: &str,
        role: Role,
        ip: Ipv4Addr,
        privileges: &Privileges,
    ) -> NodeSpec {
        let spec = self.spec;
        let mut labels = BTreeMap::new();
        let mut ports = Vec::new();
        let mut args = vec![
            "--role".to_owned(),
            role.to_string(),
            "--node-name".into(),
            name.to_owned(),
            "--node-ip".into(),
            ip.to_string(),
        ];
        let mut env = Vec::new();
        let first_server = role == Role::Server && index == 0;
        if first_server {
            labels.insert(API_PORT_LABEL.to_owned(), self.api_port.to_string());
            ports.push(PortMapping {
                host_ip: "127.0.0.1".into(),
                host_port: self.api_port,
                container_port: API_PORT,
                protocol: "tcp".into(),
            });
        }
        if role == Role::Agent {
            let server_ip = self.nodes[0].2;
            args.extend(["--server".into(), format!("https://{server_ip}:{API_PORT}")]);
            env.push(format!("KUBELAB_TOKEN={}", self.token));
        }
        for port in &spec.ports {
            let applies = match &port.nodes {
                NodeFilter::FirstServer => first_server,
                NodeFilter::AllServers => role == Role::Server,
                NodeFilter::AllAgents => role == Role::Agent,
                NodeFilter::All => true,
                NodeFilter::Index(i) => *i == index,
            };
            if applies {
                ports.push(PortMapping {
                    host_ip: port.host_ip.clone(),
                    host_port: port.host_port,
                    container_port: port.container_port,
                    protocol: port.protocol.clone(),
                });
            }
        }
        for a in &spec.server_args {
            if role == Role::Server {
                args.push(format!("--server-arg={a}"));
            }
        }
        for a in &spec.agent_args {
            args.push(format!("--agent-arg={a}"));
        }
        NodeSpec {
            name: name.to_owned(),
            cluster: spec.name.clone(),
            role,
            image: spec.image.clone(),
            network: network_name(&spec.name),
            ip,
            var_volume: volume_name(name),
            binds: spec.mounts.clone(),
            ports,
            env,
            args,
            labels,
            privileges: privileges.clone(),
        }
    }
}

fn plural(n: usize) -> &'static str {
    if n == 1 {
        ""
    } else {
        "s"
    }
}

/// A tar of `<pki_dir>/{tls/, node-token}` as `kubelab/server/...`, extracted under /var/lib.
fn pki_archive(pki_dir: &std::path::Path) -> Result<Vec<u8>> {
    let mut tar = tar::Builder::new(Vec::new());
    tar.mode(tar::HeaderMode::Complete);
    let io = |e| Error::io("archive", pki_dir, e);
    for dir in ["kubelab", "kubelab/server"] {
        let mut header = tar::Header::new_gnu();
        header.set_entry_type(tar::EntryType::Directory);
        header.set_mode(0o700);
        header.set_size(0);
        header.set_cksum();
        tar.append_data(&mut header, dir, std::io::empty())
            .map_err(io)?;
    }
    tar.append_dir_all("kubelab/server/tls", pki_dir.join("tls"))
        .map_err(io)?;
    tar.append_path_with_name(pki_dir.join("node-token"), "kubelab/server/node-token")
        .map_err(io)?;
    tar.into_inner().map_err(io)
}

/// Polls /version until it answers; returns the git version.
pub async fn wait_api(client: &kube::Client, timeout: Duration) -> Result<String> {
    let deadline = Instant::now() + timeout;
    loop {
        match client.apiserver_version().await {
            Ok(v) => return Ok(v.git_version),
            Err(e) if Instant::now() >= deadline => {
                return Err(Error::Timeout {
                    what: format!("the API server to answer (last error: {e})"),
                    seconds: timeout.as_secs(),
                })
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}

/// Waits until every node in `names` is registered and labels the servers with the
/// control-plane role.
pub async fn wait_registered(
    client: &kube::Client,
    names: &[String],
    servers: &[String],
    timeout: Duration,
) -> Result<()> {
    let nodes: Api<Node> = Api::all(client.clone());
    let deadline = Instant::now() + timeout;
    loop {
        let list = nodes.list(&ListParams::default()).await;
        if let Ok(list) = &list {
            let present: Vec<&str> = list
                .items
                .iter()
                .filter_map(|n| n.metadata.name.as_deref())
                .collect();
            let missing: Vec<&String> = names
                .iter()
                .filter(|n| !present.contains(&n.as_str()))
                .collect();
            if missing.is_empty() {
                break;
            }
            if Instant::now() >= deadline {
                return Err(Error::Timeout {
                    what: format!(
                        "nodes to register (missing: {})",
                        missing
                            .iter()
                            .map(|s| s.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                    seconds: timeout.as_secs(),
                });
            }
        } else if Instant::now() >= deadline {
            return Err(Error::Timeout {
                what: "the node list".into(),
                seconds: timeout.as_secs(),
            });
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    label_servers(client, servers).await
}

/// Labels server nodes `node-role.kubernetes.io/control-plane` (the agent cannot: a node may
/// not give itself a role, as with upstream's NodeRestriction).
pub async fn label_servers(client: &kube::Client, servers: &[String]) -> Result<()> {
    let nodes: Api<Node> = Api::all(client.clone());
    let patch = serde_json::json!({"metadata": {"labels": {
        "node-role.kubernetes.io/control-plane": "",
        "node-role.kubernetes.io/master": "",
    }}});
    for server in servers {
        nodes
            .patch(server, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .map_err(|e| Error::Invalid(format!("cannot label node {server}: {e}")))?;
    }
    Ok(())
}

/// Waits until `count` nodes are Ready and the default ServiceAccount exists.
pub async fn wait_ready(client: &kube::Client, count: usize, timeout: Duration) -> Result<()> {
    let nodes: Api<Node> = Api::all(client.clone());
    let accounts: Api<ServiceAccount> = Api::namespaced(client.clone(), "default");
    let deadline = Instant::now() + timeout;
    let mut last = String::from("no answer");
    loop {
        if let Ok(list) = nodes.list(&ListParams::default()).await {
            let ready = list.items.iter().filter(|n| is_ready(n)).count();
            let account = accounts.get_opt("default").await.ok().flatten().is_some();
            if ready >= count && account {
                return Ok(());
            }
            last = format!(
                "{ready}/{count} Ready{}",
                if account {
                    ""
                } else {
                    ", no default ServiceAccount"
                }
            );
        }
        if Instant::now() >= deadline {
            return Err(Error::Timeout {
                what: format!("nodes Ready ({last})"),
                seconds: timeout.as_secs(),
            });
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Whether a Node's Ready condition is True.
pub fn is_ready(node: &Node) -> bool {
    node.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// Keeps the nodes list type in scope for callers.
pub type Nodes = Vec<NodeInfo>;

/// An Arc'd provider, as the binary holds it.
pub type SharedProvider = Arc<dyn Provider>;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::provider::fake::{FakeProvider, FakeState};

    fn spec(name: &str) -> CreateSpec {
        CreateSpec {
            name: name.into(),
            servers: 1,
            agents: 1,
            image: "kubelab/node:test".into(),
            api_port: None,
            ports: vec![],
            mounts: vec![],
            server_args: vec![],
            agent_args: vec![],
            wait: Duration::from_secs(1),
            retain: false,
            kubeconfig: None,
            addons: vec![],
            facts: crate::addons::ClusterFacts::new(name, 1),
        }
    }

    /// A /24 another `up` takes between our listing and our creation is skipped (the nodes get
    /// addresses in the next one), and a failure later removes everything this run made.
    #[tokio::test]
    async fn a_subnet_taken_meanwhile_is_skipped_and_a_failure_removes_everything() {
        let (first, _) = cluster::pick_subnet(&[], "race").unwrap();
        let fake = FakeProvider::with(FakeState {
            race_subnets: vec![first.clone()],
            fail_start: Some("port is already allocated".into()),
            ..Default::default()
        });
        let err = create(&fake, &spec("race"), &Silent).await.unwrap_err();
        assert!(
            err.to_string().contains("port is already allocated"),
            "{err}"
        );
        let state = fake.state.lock().unwrap();
        let attempts: Vec<&String> = state
            .calls
            .iter()
            .filter(|c| c.starts_with("ensure_network"))
            .collect();
        assert_eq!(attempts.len(), 2, "{:?}", state.calls);
        assert!(attempts[0].ends_with(&first));
        assert!(!attempts[1].ends_with(&first));
        assert!(state.calls.iter().any(|c| c == "create_node race-server-0"));
        assert!(state
            .calls
            .iter()
            .any(|c| c == "upload race-server-0 /var/lib"));
        assert!(state.nodes.is_empty(), "{:?}", state.nodes.keys());
        assert!(state.volumes.is_empty(), "{:?}", state.volumes);
        assert!(state.networks.is_empty(), "{:?}", state.networks);
    }

    /// `--retain` keeps what a failed run made.
    #[tokio::test]
    async fn retain_keeps_a_failed_cluster() {
        let fake = FakeProvider::with(FakeState {
            fail_start: Some("no".into()),
            ..Default::default()
        });
        let mut spec = spec("kept");
        spec.retain = true;
        create(&fake, &spec, &Silent).await.unwrap_err();
        let state = fake.state.lock().unwrap();
        assert_eq!(state.nodes.len(), 2);
        assert_eq!(state.volumes.len(), 2);
        assert_eq!(state.networks.len(), 1);
    }

    /// A name in use is refused before anything is made, and the existing cluster is left alone.
    #[tokio::test]
    async fn an_existing_cluster_is_never_touched() {
        let fake = FakeProvider::default();
        fake.create_volume("taken-server-0-var", "taken")
            .await
            .unwrap();
        let err = create(&fake, &spec("taken"), &Silent).await.unwrap_err();
        assert!(matches!(err, Error::ClusterExists { .. }), "{err}");
        let state = fake.state.lock().unwrap();
        assert_eq!(state.volumes.len(), 1);
        assert!(!state
            .calls
            .iter()
            .any(|c| c.starts_with("remove") || c.starts_with("ensure")));
    }

    #[test]
    fn port_specs() {
        let p = PortSpec::parse("8080:80").unwrap();
        assert_eq!(
            (
                p.host_ip.as_str(),
                p.host_port,
                p.container_port,
                p.protocol.as_str()
            ),
            ("127.0.0.1", 8080, 80, "tcp")
        );
        let p = PortSpec::parse("0.0.0.0:5353:53/udp").unwrap();
        assert_eq!(
            (
                p.host_ip.as_str(),
                p.host_port,
                p.container_port,
                p.protocol.as_str()
            ),
            ("0.0.0.0", 5353, 53, "udp")
        );
        assert!(PortSpec::parse("80").is_err());
        assert!(PortSpec::parse("a:80").is_err());
        assert!(PortSpec::parse("80:80/icmp").is_err());
    }
}
