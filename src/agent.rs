//! `kubelab agent`: a node agent. It gets its node credentials (CN `system:node:<name>`, O
//! `system:nodes`) in one of two ways: by joining with `--server URL --token TOKEN`
//! (kubelab_agent::join: CA pinning, node password, certificates signed by the server, API
//! traffic through the client-side load balancer), or from a ready-made `--kubeconfig`. It runs
//! the CRI kubelet (kubelab_agent::kubelet: pods in containerd), or with `--fake` a simulated
//! node (kubelab_agent::fake). A real node also runs the service proxy and pod routes
//! (kubelab_proxy) unless `--proxy-mode none`.

use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use kube::config::{KubeConfigOptions, Kubeconfig};

#[derive(clap::Args)]
#[command(group(clap::ArgGroup::new("credentials").required(true).args(["kubeconfig", "server"])))]
pub struct AgentArgs {
    /// Run a simulated node (real Node, Lease and pod status; no containers).
    #[arg(long)]
    fake: bool,
    /// Kubeconfig with this node's credentials (instead of joining with --server and --token).
    #[arg(long, conflicts_with_all = ["server", "token", "with_node_id"])]
    kubeconfig: Option<PathBuf>,
    /// An API server to join, https://HOST:PORT (the registration address; the agent then
    /// learns every API server from the `kubernetes` Endpoints).
    #[arg(long, requires = "token")]
    server: Option<String>,
    /// The join token: the content of the server's <data-dir>/node-token
    /// (K10<sha256 of the CA>::node:<secret>).
    #[arg(
        long,
        env = "KUBELAB_TOKEN",
        hide_env_values = true,
        requires = "server"
    )]
    token: Option<String>,
    /// Append a random suffix, made once and kept in the data directory, to the node name.
    #[arg(long)]
    with_node_id: bool,
    /// The agent's state: node password, node id, keys and certificates.
    #[arg(long, default_value = "/var/lib/kubelab/agent")]
    data_dir: PathBuf,
    /// Node name (default: this host's name).
    #[arg(long)]
    node_name: Option<String>,
    /// CPU capacity.
    #[arg(long, default_value = "4")]
    cpu: String,
    /// Memory capacity.
    #[arg(long, default_value = "8Gi")]
    memory: String,
    /// Pod capacity.
    #[arg(long, default_value_t = 110)]
    pods: u32,
    /// The node's InternalIP (default: one derived from the node name in 172.31.128.0/17).
    #[arg(long)]
    node_ip: Option<Ipv4Addr>,
    /// Seconds between renewals of the node Lease.
    #[arg(long, default_value_t = 10)]
    lease_renew_interval: u64,
    #[command(flatten)]
    kubelet: KubeletArgs,
}

/// Flags of the CRI kubelet (ignored with `--fake`).
#[derive(clap::Args)]
struct KubeletArgs {
    /// containerd's CRI socket.
    #[arg(long, default_value = "/run/containerd/containerd.sock")]
    containerd_socket: PathBuf,
    /// Kubelet state: pod directories, volumes, container logs.
    #[arg(long, default_value = "/var/lib/kubelab/agent")]
    root_dir: PathBuf,
    /// Directory containerd reads CNI configurations from.
    #[arg(long, default_value = "/etc/cni/net.d")]
    cni_conf_dir: PathBuf,
    /// Linux bridge the pods are attached to.
    #[arg(long, default_value = "kubelab0")]
    cni_bridge: String,
    /// HTTPS port of the kubelet API (logs, exec, port-forward); 0 picks a free one.
    #[arg(long, default_value_t = 10250)]
    kubelet_port: u16,
    /// The kubelet's serving certificate (PEM; default: the one the join got, else self-signed).
    #[arg(long, requires = "tls_private_key_file")]
    tls_cert_file: Option<PathBuf>,
    /// The key of --tls-cert-file.
    #[arg(long, requires = "tls_cert_file")]
    tls_private_key_file: Option<PathBuf>,
    /// Cluster DNS server for pods with `dnsPolicy: ClusterFirst` (repeatable; none: pods get
    /// the node's resolv.conf).
    #[arg(long)]
    cluster_dns: Vec<Ipv4Addr>,
    /// The cluster domain of the pods' DNS search list.
    #[arg(long, default_value = "cluster.local")]
    cluster_domain: String,
    /// The service proxy and pod routes: `iptables` programs this host's network namespace
    /// (kube-proxy's and kindnetd's roles), `none` leaves it alone (tests on a shared host).
    #[arg(long, value_enum, default_value_t = ProxyMode::Iptables)]
    proxy_mode: ProxyMode,
    /// The network every pod address is in (node IPAM's cluster CIDR).
    #[arg(long, default_value = "10.244.0.0/16")]
    cluster_cidr: kubelab_proxy::Cidr,
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum ProxyMode {
    Iptables,
    None,
}

pub async fn run(args: AgentArgs) -> anyhow::Result<()> {
    let base_name = match &args.node_name {
        Some(n) => n.clone(),
        None => hostname::get()
            .ok()
            .and_then(|h| h.into_string().ok())
            .context("cannot read the host name; pass --node-name")?
            .to_lowercase(),
    };
    if !is_dns_subdomain(&base_name) {
        anyhow::bail!(
            "invalid node name {base_name:?}: use lower-case letters, digits, '-' and '.'"
        );
    }
    let connection = connect(&args, base_name).await?;
    if !args.fake {
        return run_kubelet(
            connection,
            args.pods,
            args.kubelet,
            args.kubeconfig.as_deref(),
        )
        .await;
    }
    let name = connection.name;
    let node_ip = connection.node_ip;
    let mut fake = kubelab_agent::fake::FakeNodeConfig::new(name.clone(), node_ip);
    fake.cpu = args.cpu;
    fake.memory = args.memory;
    fake.pods = args.pods;
    fake.lease_renew_interval = Duration::from_secs(args.lease_renew_interval.max(1));
    println!(
        "kubelab agent: simulated node {name} ({node_ip}) joining {}",
        connection.server
    );
    tokio::select! {
        _ = kubelab_agent::fake::run(connection.client, fake) => {}
        _ = shutdown_signal() => tracing::info!("shutting down"),
    }
    drop(connection.joined);
    Ok(())
}

/// A node's API connection, however it was obtained.
struct Connection {
    name: String,
    node_ip: Ipv4Addr,
    client: kube::Client,
    /// Where the agent registered (for messages).
    server: String,
    /// The join's certificates and load balancer (None with --kubeconfig).
    joined: Option<kubelab_agent::join::Joined>,
}

async fn connect(args: &AgentArgs, base_name: String) -> anyhow::Result<Connection> {
    if let (Some(server), Some(token)) = (&args.server, &args.token) {
        let mut config = kubelab_agent::join::JoinConfig {
            server: server.clone(),
            token: token.clone(),
            node_name: base_name,
            with_node_id: args.with_node_id,
            node_ips: Vec::new(),
            data_dir: args.data_dir.clone(),
            max_attempts: None,
        };
        let name = kubelab_agent::join::final_node_name(&config)?;
        let node_ip = node_ip_or_default(args, &name);
        config.node_ips = vec![IpAddr::V4(node_ip)];
        let joined = kubelab_agent::join::join(&config)
            .await
            .context("cannot join the cluster")?;
        println!(
            "kubelab agent: node {name} joined {server}; API servers through {}",
            joined.load_balancer.url()
        );
        return Ok(Connection {
            name,
            node_ip,
            client: joined.client.clone(),
            server: server.clone(),
            joined: Some(joined),
        });
    }
    let path = args
        .kubeconfig
        .as_ref()
        .context("pass --server and --token to join, or --kubeconfig")?;
    let kubeconfig = Kubeconfig::read_from(path)
        .with_context(|| format!("cannot read the kubeconfig {}", path.display()))?;
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .with_context(|| format!("invalid kubeconfig {}", path.display()))?;
    let server = config.cluster_url.to_string();
    let client = kubelab_agent::api_client(config).context("cannot build an API client")?;
    let node_ip = node_ip_or_default(args, &base_name);
    Ok(Connection {
        name: base_name,
        node_ip,
        client,
        server,
        joined: None,
    })
}

/// Runs the CRI kubelet with `client` (this node's identity) until a signal.
async fn run_kubelet(
    connection: Connection,
    pods: u32,
    args: KubeletArgs,
    kubeconfig: Option<&std::path::Path>,
) -> anyhow::Result<()> {
    let name = connection.name.clone();
    let node_ip = connection.node_ip;
    let mut config = kubelab_agent::kubelet::KubeletConfig::new(name.clone(), node_ip);
    config.containerd_socket = args.containerd_socket;
    config.root_dir = args.root_dir;
    config.cni_conf_dir = args.cni_conf_dir;
    config.cni_bridge = args.cni_bridge;
    config.kubelet_port = args.kubelet_port;
    config.cluster_dns = args.cluster_dns;
    config.cluster_domain = args.cluster_domain;
    match &connection.joined {
        Some(joined) => {
            config.client_ca_pem = joined.ca_pem.clone();
            config.serving_cert = Some(joined.serving_cert.clone());
        }
        None => config.client_ca_pem = kubeconfig.map(ca_pem).unwrap_or_default(),
    }
    if let (Some(cert), Some(key)) = (&args.tls_cert_file, &args.tls_private_key_file) {
        let read = |p: &PathBuf| {
            std::fs::read_to_string(p).with_context(|| format!("cannot read {}", p.display()))
        };
        config.serving_cert = Some(kubelab_pki::CertPair {
            cert_pem: read(cert)?,
            key_pem: read(key)?,
        });
    }
    config.max_pods = pods;
    println!("kubelab agent: node {name} ({node_ip}) running pods in containerd");
    let _proxy = (args.proxy_mode == ProxyMode::Iptables).then(|| {
        let proxy = kubelab_proxy::Config {
            node_name: name.clone(),
            cluster_cidr: args.cluster_cidr,
        };
        let client = connection.client.clone();
        AbortOnDrop(tokio::spawn(async move {
            let iptables = kubelab_proxy::system::IptablesCommand;
            let routes = kubelab_proxy::system::IpRoute;
            let conntrack = kubelab_proxy::system::NetlinkConntrack;
            if let Err(e) = kubelab_proxy::run(client, proxy, iptables, routes, conntrack).await {
                tracing::error!(error = %e, "the service proxy stopped");
            }
        }))
    });
    tokio::select! {
        r = kubelab_agent::kubelet::run(connection.client.clone(), config) => r.context("the kubelet stopped")?,
        _ = shutdown_signal() => tracing::info!("shutting down; pods keep running"),
    }
    drop(connection.joined);
    Ok(())
}

/// Aborts a task when dropped.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// --node-ip, else for a real node this host's address, else (simulated) one derived from the
/// node name.
fn node_ip_or_default(args: &AgentArgs, name: &str) -> Ipv4Addr {
    args.node_ip
        .or_else(|| (!args.fake).then(default_ipv4).flatten())
        .unwrap_or_else(|| derived_node_ip(name))
}

/// The cluster CA of a kubeconfig (PEM), if it embeds one.
fn ca_pem(path: &std::path::Path) -> String {
    use base64::Engine;
    Kubeconfig::read_from(path)
        .ok()
        .and_then(|k| k.clusters.into_iter().next())
        .and_then(|c| c.cluster)
        .and_then(|c| c.certificate_authority_data)
        .and_then(|d| base64::engine::general_purpose::STANDARD.decode(d).ok())
        .and_then(|b| String::from_utf8(b).ok())
        .unwrap_or_default()
}

/// The source address of this host's default route.
fn default_ipv4() -> Option<Ipv4Addr> {
    let socket = std::net::UdpSocket::bind("0.0.0.0:0").ok()?;
    socket.connect("192.0.2.1:9").ok()?;
    match socket.local_addr().ok()?.ip() {
        std::net::IpAddr::V4(ip) if !ip.is_unspecified() => Some(ip),
        _ => None,
    }
}

fn is_dns_subdomain(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 253
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.')
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name.ends_with(|c: char| c.is_ascii_alphanumeric())
}

/// A stable address for a named node, away from the in-process nodes' 172.31.0.2.. range.
fn derived_node_ip(name: &str) -> Ipv4Addr {
    let hash = name.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    });
    let host = (hash % (128 * 256 - 2)) as u32 + 1;
    Ipv4Addr::new(172, 31, 128 + (host / 256) as u8, (host % 256) as u8)
}

async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
        }
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
