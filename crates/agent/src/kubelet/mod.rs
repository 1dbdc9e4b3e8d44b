//! kubelab's kubelet: runs the pods bound to this node in containerd over the CRI gRPC API.
//!
//! - `node.rs`: registers the Node (capacity from the machine and its cgroup, nodeInfo with the
//!   runtime version), keeps its conditions and Lease fresh, and turns the podCIDR into the CNI
//!   configuration (`cni.rs`) containerd reads.
//! - One [`worker::Worker`] task per pod drives it through the explicit state machine of
//!   `lifecycle.rs` (sandbox → images → init containers → containers → Running →
//!   Succeeded/Failed, restarts with CrashLoopBackOff, graceful termination), with `volumes.rs`,
//!   `env.rs` and `probes.rs`, and reports its status (`status.rs`).
//! - `server.rs`: the kubelet's HTTPS API (container logs; exec, attach and port-forward relayed
//!   to the runtime's streaming server).
//! - A relist of the runtime every second (upstream's PLEG) wakes the worker of a pod whose
//!   containers changed state.
//!
//! Everything the kubelet needs to resume is in the runtime (labels, attempts) and the API,
//! so a restarted agent adopts the running pods as they are. It is an API client like any
//! other; it never touches the store.

pub mod cni;
pub mod cri;
pub mod env;
pub mod events;
pub mod lifecycle;
pub mod node;
pub mod probes;
pub mod quantity;
pub mod server;
pub mod spdy_exec;
pub mod status;
pub mod volumes;
pub mod worker;

use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use k8s_cri::v1 as cri_api;
use k8s_openapi::api::core::v1::{Container, Pod};
use kube::api::Api;
use kube::runtime::watcher::{self, watcher};
use kube::runtime::WatchStreamExt;
use tokio::sync::{watch, Notify};

use self::cri::Cri;

/// How the kubelet runs on this node.
#[derive(Clone, Debug)]
pub struct KubeletConfig {
    pub node_name: String,
    /// The node's InternalIP (hostIP of its pods).
    pub node_ip: Ipv4Addr,
    /// containerd's socket.
    pub containerd_socket: PathBuf,
    /// State: pod directories (volumes, /etc/hosts), container logs.
    pub root_dir: PathBuf,
    /// Where containerd reads CNI configurations.
    pub cni_conf_dir: PathBuf,
    /// The pods' Linux bridge.
    pub cni_bridge: String,
    /// Port of the kubelet's HTTPS server (0: pick a free one).
    pub kubelet_port: u16,
    /// PEM of the cluster CA: clients of the kubelet server must present a certificate it signed.
    pub client_ca_pem: String,
    /// The node's serving certificate (None: a self-signed one, as upstream's kubelet does).
    pub serving_cert: Option<kubelab_pki::CertPair>,
    pub max_pods: u32,
    pub lease_renew_interval: Duration,
    /// How often the node conditions are checked (and posted when they change).
    pub node_status_interval: Duration,
    /// Cluster DNS servers for `dnsPolicy: ClusterFirst` (empty: the host's resolv.conf).
    pub cluster_dns: Vec<Ipv4Addr>,
    pub cluster_domain: String,
}

impl KubeletConfig {
    pub fn new(node_name: impl Into<String>, node_ip: Ipv4Addr) -> KubeletConfig {
        KubeletConfig {
            node_name: node_name.into(),
            node_ip,
            containerd_socket: "/run/containerd/containerd.sock".into(),
            root_dir: "/var/lib/kubelab/agent".into(),
            cni_conf_dir: "/etc/cni/net.d".into(),
            cni_bridge: "kubelab0".into(),
            kubelet_port: 10250,
            client_ca_pem: String::new(),
            serving_cert: None,
            max_pods: 110,
            lease_renew_interval: Duration::from_secs(10),
            node_status_interval: Duration::from_secs(10),
            cluster_dns: Vec::new(),
            cluster_domain: "cluster.local".into(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot create the kubelet directory {}: {source}", path.display())]
    RootDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot serve the kubelet API on port {port}: {source}")]
    Serve { port: u16, source: std::io::Error },
    #[error("kubelet TLS: {0}")]
    Tls(String),
}

/// What every part of the kubelet shares.
pub struct Kubelet {
    pub client: kube::Client,
    pub cri: Cri,
    pub config: KubeletConfig,
    pub machine: node::Machine,
    pub events: events::Recorder,
    pod_cidr: Mutex<Option<String>>,
    port: Mutex<u16>,
    /// The pods bound here, by uid (for the kubelet server).
    pods: Mutex<HashMap<String, Pod>>,
    /// Projected service-account tokens, reused until they need a refresh.
    pub tokens: volumes::TokenCache,
}

impl Kubelet {
    pub fn pod_cidr(&self) -> Option<String> {
        self.pod_cidr.lock().expect("lock").clone()
    }

    /// Records the node's podCIDR and writes the CNI configuration for it.
    pub fn set_pod_cidr(&self, cidr: &str) {
        let mut current = self.pod_cidr.lock().expect("lock");
        if current.as_deref() == Some(cidr) {
            return;
        }
        node::configure_network(&self.cni_config(), cidr);
        *current = Some(cidr.to_string());
    }

    pub fn cni_config(&self) -> cni::CniConfig {
        cni::CniConfig {
            conf_dir: self.config.cni_conf_dir.clone(),
            bridge: self.config.cni_bridge.clone(),
            ipam_data_dir: self.config.root_dir.join("cni").join("networks"),
        }
    }

    pub fn kubelet_port(&self) -> u16 {
        *self.port.lock().expect("lock")
    }

    /// The directory of a pod's container logs.
    pub fn log_dir(&self, namespace: &str, name: &str, uid: &str) -> PathBuf {
        self.config
            .root_dir
            .join("logs")
            .join(format!("{namespace}_{name}_{uid}"))
    }

    /// A pod bound to this node, by namespace and name.
    pub fn find_pod(&self, namespace: &str, name: &str) -> Option<Pod> {
        self.pods
            .lock()
            .expect("lock")
            .values()
            .find(|p| {
                p.metadata.namespace.as_deref() == Some(namespace)
                    && p.metadata.name.as_deref() == Some(name)
            })
            .cloned()
    }

    fn dns_config(&self, pod: &Pod) -> cri_api::DnsConfig {
        let spec = pod.spec.clone().unwrap_or_default();
        let policy = spec
            .dns_policy
            .clone()
            .unwrap_or_else(|| "ClusterFirst".into());
        let ns = pod
            .metadata
            .namespace
            .clone()
            .unwrap_or_else(|| "default".into());
        let host = host_resolv_conf();
        let cluster = !self.config.cluster_dns.is_empty()
            && (policy == "ClusterFirst" && !spec.host_network.unwrap_or(false)
                || policy == "ClusterFirstWithHostNet");
        let mut dns = if policy == "None" {
            cri_api::DnsConfig::default()
        } else if cluster {
            let d = &self.config.cluster_domain;
            cri_api::DnsConfig {
                servers: self
                    .config
                    .cluster_dns
                    .iter()
                    .map(|s| s.to_string())
                    .collect(),
                searches: [format!("{ns}.svc.{d}"), format!("svc.{d}"), d.clone()]
                    .into_iter()
                    .chain(host.searches.clone())
                    .collect(),
                options: vec!["ndots:5".into()],
            }
        } else {
            host
        };
        if let Some(c) = &spec.dns_config {
            dns.servers
                .extend(c.nameservers.clone().unwrap_or_default());
            dns.searches.extend(c.searches.clone().unwrap_or_default());
            for o in c.options.iter().flatten() {
                let name = o.name.clone().unwrap_or_default();
                dns.options
                    .retain(|x| x.split(':').next() != Some(name.as_str()));
                dns.options.push(match &o.value {
                    Some(v) => format!("{name}:{v}"),
                    None => name,
                });
            }
        }
        dns
    }

    /// The sandbox configuration of a pod.
    pub fn sandbox_config(&self, pod: &Pod, attempt: u32) -> cri_api::PodSandboxConfig {
        let spec = pod.spec.clone().unwrap_or_default();
        let name = pod.metadata.name.clone().unwrap_or_default();
        let ns = pod
            .metadata
            .namespace
            .clone()
            .unwrap_or_else(|| "default".into());
        let uid = pod.metadata.uid.clone().unwrap_or_default();
        let mode = |node: bool, shared: bool| {
            if node {
                cri_api::NamespaceMode::Node as i32
            } else if shared {
                cri_api::NamespaceMode::Pod as i32
            } else {
                cri_api::NamespaceMode::Container as i32
            }
        };
        let share_pid = spec.share_process_namespace.unwrap_or(false);
        let sc = spec.security_context.clone().unwrap_or_default();
        let port_mappings = spec
            .containers
            .iter()
            .flat_map(|c| c.ports.iter().flatten())
            .filter(|p| p.host_port.is_some_and(|h| h > 0))
            .map(|p| cri_api::PortMapping {
                protocol: match p.protocol.as_deref() {
                    Some("UDP") => cri_api::Protocol::Udp as i32,
                    Some("SCTP") => cri_api::Protocol::Sctp as i32,
                    _ => cri_api::Protocol::Tcp as i32,
                },
                container_port: p.container_port,
                host_port: p.host_port.unwrap_or(0),
                host_ip: p.host_ip.clone().unwrap_or_default(),
            })
            .collect();
        let qos = status::qos_class(pod);
        let cgroup_parent = match qos {
            "Guaranteed" => format!("/kubepods/pod{uid}"),
            other => format!("/kubepods/{}/pod{uid}", other.to_lowercase()),
        };
        cri_api::PodSandboxConfig {
            metadata: Some(cri_api::PodSandboxMetadata {
                name: name.clone(),
                uid: uid.clone(),
                namespace: ns.clone(),
                attempt,
            }),
            hostname: if spec.host_network.unwrap_or(false) {
                String::new()
            } else {
                spec.hostname.clone().unwrap_or_else(|| name.clone())
            },
            log_directory: self
                .log_dir(&ns, &name, &uid)
                .to_string_lossy()
                .into_owned(),
            dns_config: Some(self.dns_config(pod)),
            port_mappings,
            labels: worker::sandbox_labels(pod),
            annotations: pod
                .metadata
                .annotations
                .clone()
                .unwrap_or_default()
                .into_iter()
                .collect(),
            linux: Some(cri_api::LinuxPodSandboxConfig {
                cgroup_parent,
                security_context: Some(cri_api::LinuxSandboxSecurityContext {
                    namespace_options: Some(cri_api::NamespaceOption {
                        network: mode(spec.host_network.unwrap_or(false), true),
                        pid: mode(spec.host_pid.unwrap_or(false), share_pid),
                        ipc: mode(spec.host_ipc.unwrap_or(false), true),
                        ..Default::default()
                    }),
                    run_as_user: sc.run_as_user.map(|value| cri_api::Int64Value { value }),
                    run_as_group: sc.run_as_group.map(|value| cri_api::Int64Value { value }),
                    supplemental_groups: sc.supplemental_groups.clone().unwrap_or_default(),
                    ..Default::default()
                }),
                sysctls: sc
                    .sysctls
                    .iter()
                    .flatten()
                    .map(|s| (s.name.clone(), s.value.clone()))
                    .collect(),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    /// The container configuration of one container attempt.
    pub fn container_config(
        &self,
        pod: &Pod,
        c: &Container,
        attempt: u32,
        image: &str,
        envs: Vec<(String, String)>,
        mounts: Vec<cri_api::Mount>,
    ) -> cri_api::ContainerConfig {
        let spec = pod.spec.clone().unwrap_or_default();
        let pod_sc = spec.security_context.clone().unwrap_or_default();
        let sc = c.security_context.clone().unwrap_or_default();
        let command = env::expand_all(c.command.as_deref().unwrap_or_default(), &envs);
        let args = env::expand_all(c.args.as_deref().unwrap_or_default(), &envs);
        let share_pid = spec.share_process_namespace.unwrap_or(false);
        let ns_mode = |node: bool, shared: bool| {
            if node {
                cri_api::NamespaceMode::Node as i32
            } else if shared {
                cri_api::NamespaceMode::Pod as i32
            } else {
                cri_api::NamespaceMode::Container as i32
            }
        };
        let oom = match status::qos_class(pod) {
            "Guaranteed" => -997,
            "BestEffort" => 1000,
            _ => 500,
        };
        let caps = sc.capabilities.clone().unwrap_or_default();
        let mut annotations: HashMap<String, String> = HashMap::from([
            worker::termination_annotation(c),
            (
                "io.kubernetes.container.restartCount".to_string(),
                attempt.to_string(),
            ),
        ]);
        annotations.insert(
            "io.kubernetes.pod.terminationGracePeriod".into(),
            worker::grace_period(pod).to_string(),
        );
        cri_api::ContainerConfig {
            metadata: Some(cri_api::ContainerMetadata {
                name: c.name.clone(),
                attempt,
            }),
            image: Some(cri_api::ImageSpec {
                image: image.to_string(),
                user_specified_image: c.image.clone().unwrap_or_default(),
                ..Default::default()
            }),
            command,
            args,
            working_dir: c.working_dir.clone().unwrap_or_default(),
            envs: envs
                .into_iter()
                .map(|(key, value)| cri_api::KeyValue { key, value })
                .collect(),
            mounts,
            labels: worker::container_labels(pod, &c.name),
            annotations,
            log_path: format!("{}/{attempt}.log", c.name),
            stdin: c.stdin.unwrap_or(false),
            stdin_once: c.stdin_once.unwrap_or(false),
            tty: c.tty.unwrap_or(false),
            linux: Some(cri_api::LinuxContainerConfig {
                resources: Some(worker::linux_resources(c, oom)),
                security_context: Some(cri_api::LinuxContainerSecurityContext {
                    capabilities: Some(cri_api::Capability {
                        add_capabilities: caps.add.clone().unwrap_or_default(),
                        drop_capabilities: caps.drop.clone().unwrap_or_default(),
                        ..Default::default()
                    }),
                    privileged: sc.privileged.unwrap_or(false),
                    namespace_options: Some(cri_api::NamespaceOption {
                        network: ns_mode(spec.host_network.unwrap_or(false), true),
                        pid: ns_mode(spec.host_pid.unwrap_or(false), share_pid),
                        ipc: ns_mode(spec.host_ipc.unwrap_or(false), true),
                        ..Default::default()
                    }),
                    run_as_user: sc
                        .run_as_user
                        .or(pod_sc.run_as_user)
                        .map(|value| cri_api::Int64Value { value }),
                    run_as_group: sc
                        .run_as_group
                        .or(pod_sc.run_as_group)
                        .map(|value| cri_api::Int64Value { value }),
                    readonly_rootfs: sc.read_only_root_filesystem.unwrap_or(false),
                    supplemental_groups: pod_sc
                        .supplemental_groups
                        .clone()
                        .unwrap_or_default()
                        .into_iter()
                        .chain(pod_sc.fs_group)
                        .collect(),
                    no_new_privs: sc.allow_privilege_escalation == Some(false),
                    ..Default::default()
                }),
            }),
            ..Default::default()
        }
    }
}

/// The host's resolver configuration (for dnsPolicy Default, or without cluster DNS).
fn host_resolv_conf() -> cri_api::DnsConfig {
    let text = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
    let mut dns = cri_api::DnsConfig::default();
    for line in text.lines() {
        let mut words = line.split_whitespace();
        match words.next() {
            Some("nameserver") => dns.servers.extend(words.next().map(str::to_string)),
            Some("search") | Some("domain") => dns.searches.extend(words.map(str::to_string)),
            Some("options") => dns.options.extend(words.map(str::to_string)),
            _ => {}
        }
    }
    dns
}

/// What the pod manager keeps per pod worker.
struct WorkerHandle {
    pod: watch::Sender<Option<Pod>>,
    wake: Arc<Notify>,
    task: tokio::task::JoinHandle<()>,
}

/// Runs the kubelet until the process ends: node registration and heartbeats, the pod
/// workers, and the kubelet's HTTPS server.
pub async fn run(client: kube::Client, config: KubeletConfig) -> Result<(), Error> {
    for dir in [config.root_dir.join("pods"), config.root_dir.join("logs")] {
        std::fs::create_dir_all(&dir).map_err(|source| Error::RootDir {
            path: dir.clone(),
            source,
        })?;
    }
    let machine = node::Machine::read(&config.root_dir);
    let kubelet = Arc::new(Kubelet {
        events: events::Recorder::new(client.clone(), &config.node_name),
        cri: Cri::new(&config.containerd_socket),
        machine,
        client,
        pod_cidr: Mutex::new(None),
        port: Mutex::new(config.kubelet_port),
        pods: Mutex::new(HashMap::new()),
        tokens: volumes::TokenCache::default(),
        config,
    });
    let addr = server::start(kubelet.clone()).await?;
    *kubelet.port.lock().expect("lock") = addr.port();
    tracing::info!(%addr, "kubelet API serving");
    let node = tokio::spawn(node::run(kubelet.clone()));
    let pods = tokio::spawn(manage_pods(kubelet.clone()));
    let _ = tokio::join!(node, pods);
    Ok(())
}

/// Follows the pods bound to this node: one worker per pod, woken by pod changes and by the
/// runtime relist.
async fn manage_pods(kubelet: Arc<Kubelet>) {
    let name = kubelet.config.node_name.clone();
    let api: Api<Pod> = Api::all(kubelet.client.clone());
    let events = watcher(
        api,
        watcher::Config::default().fields(&format!("spec.nodeName={name}")),
    )
    .modify(|p| p.metadata.managed_fields = None)
    .default_backoff();
    futures::pin_mut!(events);
    let mut workers: HashMap<String, WorkerHandle> = HashMap::new();
    let mut relist_seen: Option<HashMap<String, Pod>> = None;
    let mut relist = tokio::time::interval(Duration::from_secs(1));
    relist.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut runtime_states: HashMap<String, Vec<(String, i32)>> = HashMap::new();
    let mut cleaned_orphans = false;
    loop {
        tokio::select! {
            event = events.next() => {
                let Some(event) = event else { return };
                match event {
                    Ok(watcher::Event::Init) => relist_seen = Some(HashMap::new()),
                    Ok(watcher::Event::InitApply(p)) => {
                        if let (Some(seen), Some(uid)) = (relist_seen.as_mut(), p.metadata.uid.clone()) {
                            seen.insert(uid, p);
                        }
                    }
                    Ok(watcher::Event::InitDone) => {
                        let seen = relist_seen.take().unwrap_or_default();
                        let gone: Vec<String> = workers.keys().filter(|u| !seen.contains_key(*u)).cloned().collect();
                        for uid in gone {
                            pod_gone(&kubelet, &mut workers, &uid);
                        }
                        for (uid, p) in seen {
                            pod_changed(&kubelet, &mut workers, uid, p);
                        }
                        if !cleaned_orphans {
                            cleaned_orphans = true;
                            let known: Vec<String> = workers.keys().cloned().collect();
                            tokio::spawn(remove_orphans(kubelet.clone(), known));
                        }
                    }
                    Ok(watcher::Event::Apply(p)) => {
                        if let Some(uid) = p.metadata.uid.clone() {
                            pod_changed(&kubelet, &mut workers, uid, p);
                        }
                    }
                    Ok(watcher::Event::Delete(p)) => {
                        if let Some(uid) = p.metadata.uid.as_deref() {
                            pod_gone(&kubelet, &mut workers, uid);
                        }
                    }
                    Err(e) => tracing::warn!(error = %e, "watch of this node's pods failed; retrying"),
                }
            }
            _ = relist.tick() => {
                workers.retain(|_, w| !w.task.is_finished());
                // PLEG: wake the worker of every pod whose containers changed state.
                if let Ok(containers) = kubelet.cri.list_containers(None).await {
                    let mut now: HashMap<String, Vec<(String, i32)>> = HashMap::new();
                    for c in containers {
                        if let Some(uid) = c.labels.get(cri::POD_UID_LABEL) {
                            now.entry(uid.clone()).or_default().push((c.id, c.state));
                        }
                    }
                    for v in now.values_mut() {
                        v.sort();
                    }
                    for (uid, w) in &workers {
                        if now.get(uid) != runtime_states.get(uid) {
                            w.wake.notify_one();
                        }
                    }
                    runtime_states = now;
                }
            }
        }
    }
}

fn pod_changed(
    kubelet: &Arc<Kubelet>,
    workers: &mut HashMap<String, WorkerHandle>,
    uid: String,
    pod: Pod,
) {
    kubelet
        .pods
        .lock()
        .expect("lock")
        .insert(uid.clone(), pod.clone());
    if let Some(w) = workers.get(&uid) {
        if !w.task.is_finished() {
            w.pod.send_replace(Some(pod));
            return;
        }
    }
    let (tx, rx) = watch::channel(Some(pod));
    let wake = Arc::new(Notify::new());
    let worker = worker::Worker::new(kubelet.clone(), uid.clone(), rx, wake.clone());
    let task = tokio::spawn(worker.run());
    workers.insert(
        uid,
        WorkerHandle {
            pod: tx,
            wake,
            task,
        },
    );
}

fn pod_gone(kubelet: &Arc<Kubelet>, workers: &mut HashMap<String, WorkerHandle>, uid: &str) {
    kubelet.pods.lock().expect("lock").remove(uid);
    if let Some(w) = workers.get(uid) {
        w.pod.send_replace(None);
    }
}

/// Removes sandboxes of pods the API no longer has (deleted while the agent was down).
async fn remove_orphans(kubelet: Arc<Kubelet>, known: Vec<String>) {
    let Ok(sandboxes) = kubelet.cri.list_pod_sandboxes(None).await else {
        return;
    };
    for s in sandboxes {
        let Some(uid) = s.labels.get(cri::POD_UID_LABEL) else {
            continue;
        };
        if known.contains(uid) {
            continue;
        }
        tracing::info!(sandbox = %s.id, pod_uid = %uid, "removing the sandbox of a pod that no longer exists");
        if let Ok(containers) = kubelet.cri.list_containers(Some(uid)).await {
            for c in containers {
                let _ = kubelet.cri.stop_container(&c.id, 0).await;
                let _ = kubelet.cri.remove_container(&c.id).await;
            }
        }
        let _ = kubelet.cri.stop_pod_sandbox(&s.id).await;
        let _ = kubelet.cri.remove_pod_sandbox(&s.id).await;
        volumes::tear_down(&kubelet.config.root_dir.join("pods").join(uid));
        if let Some(m) = &s.metadata {
            let _ = std::fs::remove_dir_all(kubelet.log_dir(&m.namespace, &m.name, uid));
        }
    }
}
