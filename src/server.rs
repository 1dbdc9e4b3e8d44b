//! `kubelab server`: PKI, store and API server of one control-plane node.

use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use kubelab_controllers::leader::LeaderElection;
use kubelab_pki::{CertPair, KubeconfigSpec};

#[derive(clap::Args)]
pub struct ServerArgs {
    /// Directory for the PKI, the database and the kubeconfig files.
    #[arg(long, default_value = "/var/lib/kubelab/server")]
    data_dir: PathBuf,
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1")]
    bind: IpAddr,
    /// HTTPS port of the API server (0 picks a free one).
    #[arg(long, default_value_t = 6443)]
    port: u16,
    /// Extra name or IP for the serving certificate (repeatable).
    #[arg(long = "tls-san")]
    tls_san: Vec<String>,
    /// Address other nodes reach this server at (default: --bind, or 127.0.0.1 when binding all).
    #[arg(long)]
    advertise_address: Option<IpAddr>,
    /// Range Service ClusterIPs are allocated from.
    #[arg(long, default_value = "10.96.0.0/12")]
    service_cidr: String,
    /// Pod network each node's podCIDR is carved from.
    #[arg(long, default_value = "10.244.0.0/16")]
    cluster_cidr: String,
    /// Range NodePorts are allocated from.
    #[arg(long, default_value = "30000-32767")]
    service_node_port_range: String,
    /// Do not run the controllers in this process (run `kubelab controller-manager` instead).
    #[arg(long)]
    disable_controllers: bool,
    /// Seconds a leader lease (controller manager, scheduler) lasts without renewal.
    #[arg(long, default_value_t = 15)]
    leader_elect_lease_duration: u64,
    /// Seconds without a node heartbeat before the node is marked Unknown.
    #[arg(long, default_value_t = 40)]
    node_monitor_grace_period: u64,
    /// Simulated nodes to run in this process (kwok-style: real Node objects, no containers).
    #[arg(long, default_value_t = 0)]
    fake_nodes: u32,
    /// CPU capacity of each simulated node.
    #[arg(long, default_value = "4")]
    fake_node_cpu: String,
    /// Memory capacity of each simulated node.
    #[arg(long, default_value = "8Gi")]
    fake_node_memory: String,
    /// Pod capacity of each simulated node.
    #[arg(long, default_value_t = 110)]
    fake_node_pods: u32,
    /// An apiserver.config.k8s.io/v1 EncryptionConfiguration (YAML or JSON): which resources
    /// are encrypted at rest, with which providers and keys. Reloaded when it changes.
    #[arg(long)]
    encryption_provider_config: Option<PathBuf>,
}

pub async fn run(args: ServerArgs) -> anyhow::Result<()> {
    let encryption = match &args.encryption_provider_config {
        Some(path) => {
            let encryption = kubelab_apiserver::encryption::Encryption::load(path)?;
            Some(Arc::new(encryption))
        }
        None => None,
    };
    create_private_dir(&args.data_dir)?;
    let host_name = hostname::get()
        .ok()
        .and_then(|h| h.into_string().ok())
        .unwrap_or_else(|| "localhost".into());
    let pki = kubelab_pki::ensure_server_pki(&args.data_dir, &host_name, &args.tls_san)
        .context("cannot prepare the cluster PKI")?;
    // The join token agents present (`kubelab agent --token`), kept across restarts.
    let node_token = kubelab_pki::ensure_node_token(&args.data_dir, &pki.ca.cert_pem)
        .context("cannot prepare the node join token")?;
    let service_account_key =
        kubelab_pki::ensure_service_account_key(&kubelab_pki::tls_dir(&args.data_dir))
            .context("cannot prepare the service-account signing key")?;
    let db = args.data_dir.join("state.db");
    let store = kubelab_store::SqliteStore::open(&db, kubelab_store::SqliteOptions::default())
        .with_context(|| format!("cannot open the database {}", db.display()))?;
    let advertise = args
        .advertise_address
        .unwrap_or(if args.bind.is_unspecified() {
            IpAddr::V4(Ipv4Addr::LOCALHOST)
        } else {
            args.bind
        });
    let ca_pem = pki.ca.cert_pem.clone();
    let ca_pair = pki.ca.clone();
    let clients: Vec<(&str, &str, CertPair)> = vec![
        ("admin.kubeconfig", "kubelab-admin", pki.admin.clone()),
        (
            "super-admin.kubeconfig",
            "kubelab-super-admin",
            pki.super_admin.clone(),
        ),
        (
            "controller-manager.kubeconfig",
            "system:kube-controller-manager",
            pki.controller_manager.clone(),
        ),
        (
            "scheduler.kubeconfig",
            "system:kube-scheduler",
            pki.scheduler.clone(),
        ),
    ];
    let kubelet_routes = kubelab_apiserver::KubeletRoutes::default();
    let running = kubelab_apiserver::start(kubelab_apiserver::ServerConfig {
        bind: args.bind,
        port: args.port,
        pki,
        store: Arc::new(store),
        advertise_address: advertise,
        service_account_key,
        service_ranges: kubelab_apiserver::ServiceRanges::parse(
            &args.service_cidr,
            &args.service_node_port_range,
        )
        .map_err(anyhow::Error::msg)?,
        node_token: Some(node_token),
        kubelet_routes: kubelet_routes.clone(),
        encryption: encryption.clone(),
    })
    .await?;
    let reloader = encryption.as_ref().map(|e| e.spawn_reloader());
    let server_url = format!("https://{}", url_host(advertise, running.local_addr.port()));
    for (file, user, cert) in &clients {
        let path = args.data_dir.join(file);
        kubelab_pki::write_kubeconfig(
            &path,
            &KubeconfigSpec {
                cluster_name: "kubelab",
                context_name: "kubelab",
                user_name: user,
                server: &server_url,
                ca_pem: &ca_pem,
                client: cert,
            },
        )
        .with_context(|| format!("cannot write {}", path.display()))?;
    }
    // Controllers and scheduler run only while this process holds their leases, so several
    // servers on one store never both act.
    let identity = crate::controller_manager::default_identity();
    let controller_client = client_for(
        &server_url,
        &ca_pem,
        &ca_pair_client(&clients, "controller-manager.kubeconfig"),
    )
    .await?;
    let grace_period = std::time::Duration::from_secs(args.node_monitor_grace_period.max(1));
    let controller_config = kubelab_controllers::Config {
        root_ca_pem: ca_pem.clone(),
        node_monitor_grace_period: grace_period,
        cluster_cidr: args.cluster_cidr.clone(),
        ..kubelab_controllers::Config::default()
    };
    let controllers = (!args.disable_controllers).then(|| {
        crate::controller_manager::spawn_controllers(
            controller_client,
            controller_config,
            &identity,
            crate::controller_manager::timing(args.leader_elect_lease_duration),
        )
    });
    let scheduler_client = client_for(
        &server_url,
        &ca_pem,
        &ca_pair_client(&clients, "scheduler.kubeconfig"),
    )
    .await?;
    let scheduler = tokio::spawn(
        LeaderElection::new(
            scheduler_client.clone(),
            "kube-scheduler",
            &identity,
            crate::controller_manager::timing(args.leader_elect_lease_duration),
        )
        .run(move || {
            kubelab_scheduler::run(
                scheduler_client.clone(),
                kubelab_scheduler::Config::default(),
            )
        }),
    );
    let mut fake_nodes = Vec::new();
    for i in 0..args.fake_nodes {
        let name = format!("fake-node-{}", i + 1);
        let cert = kubelab_pki::issue_client_cert(
            &ca_pair,
            &format!("system:node:{name}"),
            &["system:nodes"],
        )
        .context("cannot issue a simulated node's certificate")?;
        let client = client_for(&server_url, &ca_pem, &cert).await?;
        let config = kubelab_agent::fake::FakeNodeConfig {
            name,
            cpu: args.fake_node_cpu.clone(),
            memory: args.fake_node_memory.clone(),
            pods: args.fake_node_pods,
            node_ip: Ipv4Addr::new(172, 31, (i / 250) as u8, (i % 250 + 2) as u8),
            // The kubelet renews every quarter of the grace period (10 s of 40 s).
            lease_renew_interval: (grace_period / 4).min(std::time::Duration::from_secs(10)),
            status_update_interval: std::time::Duration::from_secs(60),
        };
        // Its kubelet endpoint (logs, exec, attach, port-forward) on a loopback port, reached
        // by the API server through a local route: a simulated node has no network presence.
        let serving = kubelab_pki::issue_node_cert(
            &ca_pair,
            &config.name,
            kubelab_pki::NodeCertKind::Serving,
            &[config.node_ip.to_string(), config.name.clone()],
        )
        .context("cannot issue a simulated node's serving certificate")?;
        let (kubelet_addr, _) = kubelab_agent::fake::kubelet_server::start(
            client.clone(),
            kubelab_agent::fake::kubelet_server::KubeletServerConfig {
                node_name: config.name.clone(),
                bind: (Ipv4Addr::LOCALHOST, 0).into(),
                serving,
                ca_pem: ca_pem.clone(),
            },
        )
        .await
        .context("cannot start a simulated node's kubelet endpoint")?;
        kubelet_routes.insert(config.name.clone(), kubelet_addr);
        fake_nodes.push((client, config));
    }
    // One shared watch of Nodes and of bound pods for all of them.
    let fake_nodes = tokio::spawn(kubelab_agent::fake::run_pool(fake_nodes));
    println!(
        "kubelab server ready at {server_url}; kubeconfig: {}",
        args.data_dir.join("admin.kubeconfig").display()
    );
    shutdown_signal().await;
    if let Some(reloader) = reloader {
        reloader.abort();
    }
    fake_nodes.abort();
    scheduler.abort();
    if let Some(c) = controllers {
        c.abort();
    }
    running.shutdown().await;
    Ok(())
}

fn ca_pair_client(clients: &[(&str, &str, CertPair)], file: &str) -> CertPair {
    clients
        .iter()
        .find(|(f, _, _)| *f == file)
        .map(|(_, _, c)| c.clone())
        .expect("every component kubeconfig is in the list")
}

/// An API client of this server with the given client certificate (in-process components).
async fn client_for(server: &str, ca_pem: &str, cert: &CertPair) -> anyhow::Result<kube::Client> {
    let yaml = kubelab_pki::kubeconfig_yaml(&KubeconfigSpec {
        cluster_name: "kubelab",
        context_name: "kubelab",
        user_name: "component",
        server,
        ca_pem,
        client: cert,
    })?;
    let kubeconfig = kube::config::Kubeconfig::from_yaml(&yaml).context("invalid kubeconfig")?;
    let config = kube::Config::from_custom_kubeconfig(
        kubeconfig,
        &kube::config::KubeConfigOptions::default(),
    )
    .await
    .context("invalid component kubeconfig")?;
    kube::Client::try_from(config).context("cannot build an API client")
}

fn url_host(ip: IpAddr, port: u16) -> String {
    match ip {
        IpAddr::V6(v6) => format!("[{v6}]:{port}"),
        IpAddr::V4(v4) => format!("{v4}:{port}"),
    }
}

fn create_private_dir(dir: &std::path::Path) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(dir)
        .with_context(|| format!("cannot create the data directory {}", dir.display()))?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
        .with_context(|| format!("cannot restrict permissions of {}", dir.display()))?;
    Ok(())
}

pub async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    tracing::info!("shutting down");
}
