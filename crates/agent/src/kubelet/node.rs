//! The node: registration (capacity and allocatable read from the machine and this process's
//! cgroup, addresses, nodeInfo with the runtime's version), conditions from the machine's memory,
//! disk and PID headroom and the runtime's readiness, the Lease heartbeat in kube-node-lease,
//! and the podCIDR turned into the CNI configuration.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{
    DaemonEndpoint, Node, NodeAddress, NodeCondition, NodeDaemonEndpoints, NodeSpec, NodeStatus,
    NodeSystemInfo,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta, Time};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::runtime::watcher::{self, watcher};
use kube::runtime::WatchStreamExt;
use serde_json::json;
use tokio::time::MissedTickBehavior;

use super::{cni, Kubelet};
use crate::fake::node::{architecture, lease, LEASE_DURATION_SECONDS, LEASE_NAMESPACE};

/// The version the kubelet reports.
pub const KUBELET_VERSION: &str = "v1.32.0";

/// Eviction thresholds subtracted from capacity (upstream's evictionHard memory default).
const MEMORY_RESERVE: u64 = 100 << 20;

/// Free disk below which the node reports DiskPressure: 5% of the filesystem, at most 2 GiB.
/// Upstream's nodefs.available<10% taints many a developer's laptop (kind turns it off); a dev
/// cluster only cares when the disk is really about to fill up.
fn disk_reserve(total: u64) -> u64 {
    (total / 20).min(2 << 30)
}

/// What the machine offers, read once at start.
#[derive(Clone, Debug)]
pub struct Machine {
    pub cpus: u64,
    pub memory_bytes: u64,
    pub storage_bytes: u64,
    pub machine_id: String,
    pub boot_id: String,
    pub system_uuid: String,
    pub os_image: String,
    pub kernel_version: String,
}

fn read_trimmed(path: &str) -> Option<String> {
    std::fs::read_to_string(path)
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
}

/// `key` from /proc/meminfo, in bytes.
fn meminfo(key: &str) -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = text.lines().find(|l| l.starts_with(&format!("{key}:")))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// The memory limit of this process's cgroup (v2 memory.max, v1 memory.limit_in_bytes).
fn cgroup_memory_limit() -> Option<u64> {
    let cgroups = std::fs::read_to_string("/proc/self/cgroup").ok()?;
    for line in cgroups.lines() {
        let mut parts = line.splitn(3, ':');
        let (_, controllers, path) = (parts.next()?, parts.next()?, parts.next()?);
        let file = if controllers.is_empty() {
            format!("/sys/fs/cgroup{path}/memory.max")
        } else if controllers.split(',').any(|c| c == "memory") {
            format!("/sys/fs/cgroup/memory{path}/memory.limit_in_bytes")
        } else {
            continue;
        };
        if let Some(v) = read_trimmed(&file).and_then(|s| s.parse::<u64>().ok()) {
            return Some(v);
        }
    }
    None
}

/// Total and free bytes of the filesystem holding `path`.
pub fn filesystem(path: &Path) -> Option<(u64, u64)> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes()).ok()?;
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: `c` is a valid NUL-terminated path and `st` a properly sized out-parameter.
    let rc = unsafe { libc::statvfs(c.as_ptr(), &mut st) };
    (rc == 0).then(|| {
        let frsize = st.f_frsize as u64;
        (st.f_blocks as u64 * frsize, st.f_bavail as u64 * frsize)
    })
}

fn os_image() -> String {
    std::fs::read_to_string("/etc/os-release")
        .ok()
        .and_then(|t| {
            t.lines()
                .find_map(|l| l.strip_prefix("PRETTY_NAME="))
                .map(|v| v.trim_matches('"').to_string())
        })
        .unwrap_or_else(|| "Linux".into())
}

impl Machine {
    pub fn read(root_dir: &Path) -> Machine {
        let cpus = std::thread::available_parallelism()
            .map(|n| n.get() as u64)
            .unwrap_or(1);
        let total = meminfo("MemTotal").unwrap_or(1 << 30);
        let memory_bytes = match cgroup_memory_limit() {
            Some(limit) if limit < total => limit,
            _ => total,
        };
        let storage_bytes = filesystem(root_dir).map(|(t, _)| t).unwrap_or(0);
        let machine_id = read_trimmed("/etc/machine-id")
            .or_else(|| read_trimmed("/var/lib/dbus/machine-id"))
            .unwrap_or_else(|| "0".repeat(32));
        Machine {
            cpus,
            memory_bytes,
            storage_bytes,
            boot_id: read_trimmed("/proc/sys/kernel/random/boot_id").unwrap_or_default(),
            system_uuid: read_trimmed("/sys/class/dmi/id/product_uuid")
                .unwrap_or_else(|| machine_id.clone()),
            machine_id,
            os_image: os_image(),
            kernel_version: read_trimmed("/proc/sys/kernel/osrelease").unwrap_or_default(),
        }
    }

    fn capacity(&self, max_pods: u32) -> BTreeMap<String, Quantity> {
        BTreeMap::from([
            ("cpu".to_string(), Quantity(self.cpus.to_string())),
            (
                "ephemeral-storage".into(),
                Quantity(format!("{}Ki", self.storage_bytes / 1024)),
            ),
            ("hugepages-1Gi".into(), Quantity("0".into())),
            ("hugepages-2Mi".into(), Quantity("0".into())),
            (
                "memory".into(),
                Quantity(format!("{}Ki", self.memory_bytes / 1024)),
            ),
            ("pods".into(), Quantity(max_pods.to_string())),
        ])
    }

    fn allocatable(&self, max_pods: u32) -> BTreeMap<String, Quantity> {
        let mut a = self.capacity(max_pods);
        a.insert(
            "memory".into(),
            Quantity(format!(
                "{}Ki",
                self.memory_bytes.saturating_sub(MEMORY_RESERVE) / 1024
            )),
        );
        a.insert(
            "ephemeral-storage".into(),
            Quantity((self.storage_bytes - disk_reserve(self.storage_bytes)).to_string()),
        );
        a
    }
}

/// Pressure the node is under now.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Pressure {
    memory: bool,
    disk: bool,
    pid: bool,
}

fn pressure(root_dir: &Path) -> Pressure {
    let memory = meminfo("MemAvailable").is_some_and(|a| a < MEMORY_RESERVE);
    let disk =
        filesystem(root_dir).is_some_and(|(total, free)| total > 0 && free < disk_reserve(total));
    let pid = (|| {
        let max: u64 = read_trimmed("/proc/sys/kernel/pid_max")?.parse().ok()?;
        let running = std::fs::read_dir("/proc")
            .ok()?
            .filter_map(Result::ok)
            .filter(|e| {
                e.file_name()
                    .to_string_lossy()
                    .bytes()
                    .all(|b| b.is_ascii_digit())
            })
            .count() as u64;
        Some(running * 10 > max * 9)
    })()
    .unwrap_or(false);
    Pressure { memory, disk, pid }
}

/// The runtime's readiness: Ok, or why the node is not ready.
async fn runtime_readiness(kubelet: &Kubelet) -> Result<(), String> {
    let conditions = kubelet
        .cri
        .status()
        .await
        .map_err(|e| format!("container runtime is down: {e}"))?;
    for wanted in ["RuntimeReady", "NetworkReady"] {
        match conditions.iter().find(|c| c.r#type == wanted) {
            Some(c) if c.status => {}
            Some(c) if wanted == "NetworkReady" => {
                return Err(format!(
                    "container runtime network not ready: NetworkReady=false reason:{} message:{}",
                    c.reason, c.message
                ))
            }
            Some(c) => {
                return Err(format!(
                    "container runtime not ready: {} {}",
                    c.reason, c.message
                ))
            }
            None => return Err(format!("container runtime reports no {wanted} condition")),
        }
    }
    Ok(())
}

fn condition(
    current: &[NodeCondition],
    type_: &str,
    status: &str,
    reason: &str,
    message: &str,
    now: Timestamp,
) -> NodeCondition {
    let transition = current
        .iter()
        .find(|c| c.type_ == type_ && c.status == status)
        .and_then(|c| c.last_transition_time.clone())
        .unwrap_or(Time(now));
    NodeCondition {
        type_: type_.into(),
        status: status.into(),
        reason: Some(reason.into()),
        message: Some(message.into()),
        last_heartbeat_time: Some(Time(now)),
        last_transition_time: Some(transition),
    }
}

fn conditions(
    current: &[NodeCondition],
    p: Pressure,
    ready: &Result<(), String>,
    now: Timestamp,
) -> Vec<NodeCondition> {
    let mut out = vec![
        if p.memory {
            condition(
                current,
                "MemoryPressure",
                "True",
                "KubeletHasInsufficientMemory",
                "kubelet has insufficient memory available",
                now,
            )
        } else {
            condition(
                current,
                "MemoryPressure",
                "False",
                "KubeletHasSufficientMemory",
                "kubelet has sufficient memory available",
                now,
            )
        },
        if p.disk {
            condition(
                current,
                "DiskPressure",
                "True",
                "KubeletHasDiskPressure",
                "kubelet has disk pressure",
                now,
            )
        } else {
            condition(
                current,
                "DiskPressure",
                "False",
                "KubeletHasNoDiskPressure",
                "kubelet has no disk pressure",
                now,
            )
        },
        if p.pid {
            condition(
                current,
                "PIDPressure",
                "True",
                "KubeletHasInsufficientPID",
                "kubelet has insufficient PID available",
                now,
            )
        } else {
            condition(
                current,
                "PIDPressure",
                "False",
                "KubeletHasSufficientPID",
                "kubelet has sufficient PID available",
                now,
            )
        },
    ];
    out.push(match ready {
        Ok(()) => condition(
            current,
            "Ready",
            "True",
            "KubeletReady",
            "kubelet is posting ready status",
            now,
        ),
        Err(why) => condition(current, "Ready", "False", "KubeletNotReady", why, now),
    });
    out
}

/// The node's labels (as the kubelet sets them).
fn labels(name: &str) -> BTreeMap<String, String> {
    let arch = architecture().to_string();
    BTreeMap::from([
        ("beta.kubernetes.io/arch".into(), arch.clone()),
        ("beta.kubernetes.io/os".into(), "linux".into()),
        ("kubernetes.io/arch".into(), arch),
        ("kubernetes.io/hostname".into(), name.to_string()),
        ("kubernetes.io/os".into(), "linux".into()),
    ])
}

/// The node's status apart from its conditions.
fn static_status(kubelet: &Kubelet, runtime_version: &str) -> NodeStatus {
    let m = &kubelet.machine;
    let c = &kubelet.config;
    NodeStatus {
        capacity: Some(m.capacity(c.max_pods)),
        allocatable: Some(m.allocatable(c.max_pods)),
        addresses: Some(vec![
            NodeAddress {
                type_: "InternalIP".into(),
                address: c.node_ip.to_string(),
            },
            NodeAddress {
                type_: "Hostname".into(),
                address: c.node_name.clone(),
            },
        ]),
        daemon_endpoints: Some(NodeDaemonEndpoints {
            kubelet_endpoint: Some(DaemonEndpoint {
                port: i32::from(kubelet.kubelet_port()),
            }),
        }),
        node_info: Some(NodeSystemInfo {
            architecture: architecture().into(),
            boot_id: m.boot_id.clone(),
            container_runtime_version: runtime_version.into(),
            kernel_version: m.kernel_version.clone(),
            kube_proxy_version: String::new(),
            kubelet_version: KUBELET_VERSION.into(),
            machine_id: m.machine_id.clone(),
            operating_system: "linux".into(),
            os_image: m.os_image.clone(),
            system_uuid: m.system_uuid.clone(),
        }),
        ..Default::default()
    }
}

/// Registers the node and keeps its status, Lease and CNI configuration up to date. Never
/// returns.
pub async fn run(kubelet: Arc<Kubelet>) {
    let name = kubelet.config.node_name.clone();
    let nodes: Api<Node> = Api::all(kubelet.client.clone());
    let leases: Api<Lease> = Api::namespaced(kubelet.client.clone(), LEASE_NAMESPACE);
    let runtime_version = loop {
        match kubelet.cri.version().await {
            Ok(v) => break format!("{}://{}", v.runtime_name, v.runtime_version),
            Err(e) => {
                tracing::warn!(error = %e, "waiting for the container runtime");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    };
    let mut backoff = Duration::from_millis(200);
    let mut node = loop {
        match register(&kubelet, &nodes, &runtime_version).await {
            Ok(n) => break n,
            Err(e) => {
                tracing::warn!(node = %name, error = %e, "cannot register the node; retrying");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(10));
            }
        }
    };
    tracing::info!(node = %name, "registered node");
    let node_uid = node.metadata.uid.clone();
    renew_lease(&leases, &name, node_uid.as_deref()).await;
    let mut lease_tick = tokio::time::interval(kubelet.config.lease_renew_interval);
    lease_tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut status_tick = tokio::time::interval(kubelet.config.node_status_interval);
    status_tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let watch = watcher(
        nodes.clone(),
        watcher::Config::default().fields(&format!("metadata.name={name}")),
    )
    .default_backoff()
    .applied_objects();
    futures::pin_mut!(watch);
    let mut last_posted: Option<(Pressure, Result<(), String>)> = None;
    let mut last_full_post = tokio::time::Instant::now();
    loop {
        tokio::select! {
            _ = lease_tick.tick() => renew_lease(&leases, &name, node_uid.as_deref()).await,
            // Until the node is Ready (runtime and pod network up), look again every 250 ms
            // rather than every status interval: a new node turns Ready as soon as it can.
            _ = tokio::time::sleep(Duration::from_millis(250)),
                if !matches!(last_posted, Some((_, Ok(())))) => status_tick.reset_immediately(),
            _ = status_tick.tick() => {
                let p = pressure(&kubelet.config.root_dir);
                let ready = runtime_readiness(&kubelet).await;
                let due = last_full_post.elapsed() >= Duration::from_secs(60);
                if last_posted.as_ref() != Some(&(p, ready.clone())) || due {
                    let current = node.status.as_ref().and_then(|s| s.conditions.clone()).unwrap_or_default();
                    let body = json!({"status": {"conditions": conditions(&current, p, &ready, Timestamp::now())}});
                    match nodes.patch_status(&name, &PatchParams::default(), &Patch::Merge(&body)).await {
                        Ok(n) => {
                            node = n;
                            last_posted = Some((p, ready));
                            last_full_post = tokio::time::Instant::now();
                        }
                        Err(e) => tracing::warn!(error = %e, "cannot post node status"),
                    }
                }
            }
            next = watch.next() => match next {
                Some(Ok(n)) => {
                    if let Some(cidr) = n.spec.as_ref().and_then(|s| s.pod_cidr.clone()) {
                        kubelet.set_pod_cidr(&cidr);
                    }
                    node = n;
                }
                Some(Err(e)) => tracing::debug!(error = %e, "node watch error"),
                None => tokio::time::sleep(Duration::from_secs(1)).await,
            },
        }
    }
}

/// Creates the Node, or takes over an existing one (an agent restart), then posts its status.
async fn register(
    kubelet: &Kubelet,
    nodes: &Api<Node>,
    runtime_version: &str,
) -> Result<Node, kube::Error> {
    let name = &kubelet.config.node_name;
    let now = Timestamp::now();
    let ready = runtime_readiness(kubelet).await;
    let mut status = static_status(kubelet, runtime_version);
    status.conditions = Some(conditions(
        &[],
        pressure(&kubelet.config.root_dir),
        &ready,
        now,
    ));
    let node = Node {
        metadata: ObjectMeta {
            name: Some(name.clone()),
            labels: Some(labels(name)),
            annotations: Some(BTreeMap::from([
                ("node.alpha.kubernetes.io/ttl".into(), "0".into()),
                (
                    "volumes.kubernetes.io/controller-managed-attach-detach".into(),
                    "true".into(),
                ),
            ])),
            ..Default::default()
        },
        spec: Some(NodeSpec::default()),
        status: Some(status.clone()),
    };
    let existing = match nodes.create(&PostParams::default(), &node).await {
        Ok(n) => n,
        Err(kube::Error::Api(e)) if e.code == 409 => {
            let patch = json!({"metadata": {"labels": node.metadata.labels}});
            nodes
                .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
                .await?
        }
        Err(e) => return Err(e),
    };
    let current = existing
        .status
        .as_ref()
        .and_then(|s| s.conditions.clone())
        .unwrap_or_default();
    status.conditions = Some(conditions(
        &current,
        pressure(&kubelet.config.root_dir),
        &ready,
        now,
    ));
    let registered = nodes
        .patch_status(
            name,
            &PatchParams::default(),
            &Patch::Merge(&json!({ "status": status })),
        )
        .await?;
    if let Some(cidr) = registered.spec.as_ref().and_then(|s| s.pod_cidr.clone()) {
        kubelet.set_pod_cidr(&cidr);
    }
    Ok(registered)
}

async fn renew_lease(leases: &Api<Lease>, name: &str, node_uid: Option<&str>) {
    let now = Timestamp::now();
    let patch = json!({"spec": {
        "holderIdentity": name,
        "leaseDurationSeconds": LEASE_DURATION_SECONDS,
        "renewTime": MicroTime(now),
    }});
    let result = match leases
        .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
    {
        Err(kube::Error::Api(e)) if e.code == 404 => leases
            .create(&PostParams::default(), &lease(name, node_uid, now))
            .await
            .map(drop),
        other => other.map(drop),
    };
    if let Err(e) = result {
        tracing::warn!(node = name, error = %e, "cannot renew the node lease");
    }
}

/// Writes the CNI configuration for `cidr` (called when the podCIDR is first seen).
pub fn configure_network(config: &cni::CniConfig, cidr: &str) {
    match cni::write_conflist(config, cidr) {
        Ok(true) => {
            tracing::info!(%cidr, dir = %config.conf_dir.display(), "pod network configured")
        }
        Ok(false) => {}
        Err(e) => tracing::error!(%cidr, error = %e, "cannot write the CNI configuration"),
    }
}
