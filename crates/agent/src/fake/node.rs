//! What a simulated node reports about itself: its Node object (capacity, addresses, nodeInfo,
//! labels), its conditions and its Lease in `kube-node-lease`.

use std::collections::BTreeMap;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::api::core::v1::{
    DaemonEndpoint, Node, NodeAddress, NodeCondition, NodeDaemonEndpoints, NodeSpec, NodeStatus,
    NodeSystemInfo,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta, OwnerReference, Time};
use k8s_openapi::jiff::Timestamp;

use super::{fake_hex, FakeNodeConfig};

pub const KUBELET_VERSION: &str = "v1.32.0";
pub const CONTAINER_RUNTIME_VERSION: &str = "kubelab-fake://0.1";
pub const OS_IMAGE: &str = "kubelab simulated node";
/// Seconds a node Lease is valid without renewal (the kubelet's default).
pub const LEASE_DURATION_SECONDS: i32 = 40;
pub const LEASE_NAMESPACE: &str = "kube-node-lease";
/// Annotation marking a node as simulated.
pub const FAKE_NODE_ANNOTATION: &str = "kubelab.dev/fake-node";
/// Annotation that stops a simulated node: no heartbeats and no pod handling while "true".
pub const STOPPED_ANNOTATION: &str = "kubelab.dev/fake-stopped";

/// The kubelet's architecture name for this build (`GOARCH` spelling).
pub fn architecture() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        "powerpc64" => "ppc64le",
        other => other,
    }
}

fn kernel_version() -> String {
    std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_string())
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "6.1.0".into())
}

/// The labels the kubelet puts on its Node.
pub fn labels(config: &FakeNodeConfig) -> BTreeMap<String, String> {
    let arch = architecture().to_string();
    BTreeMap::from([
        ("beta.kubernetes.io/arch".into(), arch.clone()),
        ("beta.kubernetes.io/os".into(), "linux".into()),
        ("kubernetes.io/arch".into(), arch),
        ("kubernetes.io/hostname".into(), config.name.clone()),
        ("kubernetes.io/os".into(), "linux".into()),
        (
            "node.kubernetes.io/instance-type".into(),
            "kubelab-fake".into(),
        ),
    ])
}

/// The Node the agent registers.
pub fn node_object(config: &FakeNodeConfig, now: Timestamp) -> Node {
    Node {
        metadata: ObjectMeta {
            name: Some(config.name.clone()),
            labels: Some(labels(config)),
            annotations: Some(BTreeMap::from([
                ("node.alpha.kubernetes.io/ttl".into(), "0".into()),
                (
                    "volumes.kubernetes.io/controller-managed-attach-detach".into(),
                    "true".into(),
                ),
                (FAKE_NODE_ANNOTATION.into(), "true".into()),
            ])),
            ..Default::default()
        },
        spec: Some(NodeSpec::default()),
        status: Some(node_status(config, &[], now)),
    }
}

/// The full status: capacity, addresses, nodeInfo and healthy conditions.
pub fn node_status(
    config: &FakeNodeConfig,
    current: &[NodeCondition],
    now: Timestamp,
) -> NodeStatus {
    let resources = BTreeMap::from([
        ("cpu".to_string(), Quantity(config.cpu.clone())),
        ("ephemeral-storage".into(), Quantity("100Gi".into())),
        ("hugepages-1Gi".into(), Quantity("0".into())),
        ("hugepages-2Mi".into(), Quantity("0".into())),
        ("memory".into(), Quantity(config.memory.clone())),
        ("pods".into(), Quantity(config.pods.to_string())),
    ]);
    let id = fake_hex(&["machine", &config.name]);
    NodeStatus {
        capacity: Some(resources.clone()),
        allocatable: Some(resources),
        addresses: Some(vec![
            NodeAddress {
                type_: "InternalIP".into(),
                address: config.node_ip.to_string(),
            },
            NodeAddress {
                type_: "Hostname".into(),
                address: config.name.clone(),
            },
        ]),
        conditions: Some(healthy_conditions(current, now)),
        daemon_endpoints: Some(NodeDaemonEndpoints {
            kubelet_endpoint: Some(DaemonEndpoint { port: 10250 }),
        }),
        node_info: Some(NodeSystemInfo {
            architecture: architecture().into(),
            boot_id: uuid_like(&fake_hex(&["boot", &config.name])),
            container_runtime_version: CONTAINER_RUNTIME_VERSION.into(),
            kernel_version: kernel_version(),
            kube_proxy_version: String::new(),
            kubelet_version: KUBELET_VERSION.into(),
            machine_id: id[..32].to_string(),
            operating_system: "linux".into(),
            os_image: OS_IMAGE.into(),
            system_uuid: uuid_like(&id),
        }),
        ..Default::default()
    }
}

fn uuid_like(hex: &str) -> String {
    format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

/// The four kubelet conditions of a healthy node, heartbeat `now`; a condition keeps its
/// lastTransitionTime while its status does not change.
pub fn healthy_conditions(current: &[NodeCondition], now: Timestamp) -> Vec<NodeCondition> {
    [
        (
            "MemoryPressure",
            "False",
            "KubeletHasSufficientMemory",
            "kubelet has sufficient memory available",
        ),
        (
            "DiskPressure",
            "False",
            "KubeletHasNoDiskPressure",
            "kubelet has no disk pressure",
        ),
        (
            "PIDPressure",
            "False",
            "KubeletHasSufficientPID",
            "kubelet has sufficient PID available",
        ),
        (
            "Ready",
            "True",
            "KubeletReady",
            "kubelet is posting ready status",
        ),
    ]
    .into_iter()
    .map(|(type_, status, reason, message)| {
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
    })
    .collect()
}

/// The node's Lease, owned by its Node (so it goes away with it).
pub fn lease(name: &str, node_uid: Option<&str>, now: Timestamp) -> Lease {
    Lease {
        metadata: ObjectMeta {
            name: Some(name.into()),
            namespace: Some(LEASE_NAMESPACE.into()),
            owner_references: node_uid.map(|uid| {
                vec![OwnerReference {
                    api_version: "v1".into(),
                    kind: "Node".into(),
                    name: name.into(),
                    uid: uid.into(),
                    ..Default::default()
                }]
            }),
            ..Default::default()
        },
        spec: Some(LeaseSpec {
            holder_identity: Some(name.into()),
            lease_duration_seconds: Some(LEASE_DURATION_SECONDS),
            renew_time: Some(MicroTime(now)),
            ..Default::default()
        }),
    }
}

/// Whether the node carries the stop annotation.
pub fn is_stopped(node: &Node) -> bool {
    node.metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(STOPPED_ANNOTATION))
        .is_some_and(|v| v == "true")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> FakeNodeConfig {
        FakeNodeConfig::new("fake-node-1", "172.31.0.2".parse().unwrap())
    }

    #[test]
    fn registers_a_complete_node() {
        let now = Timestamp::from_second(1_700_000_000).unwrap();
        let node = node_object(&config(), now);
        let labels = node.metadata.labels.as_ref().unwrap();
        assert_eq!(labels["kubernetes.io/hostname"], "fake-node-1");
        assert_eq!(labels["kubernetes.io/os"], "linux");
        let status = node.status.unwrap();
        assert_eq!(status.capacity.as_ref().unwrap()["pods"].0, "110");
        assert_eq!(status.allocatable.as_ref().unwrap()["cpu"].0, "4");
        let info = status.node_info.unwrap();
        assert_eq!(info.kubelet_version, "v1.32.0");
        assert_eq!(info.container_runtime_version, "kubelab-fake://0.1");
        let conditions = status.conditions.unwrap();
        let types: Vec<_> = conditions.iter().map(|c| c.type_.as_str()).collect();
        assert_eq!(
            types,
            ["MemoryPressure", "DiskPressure", "PIDPressure", "Ready"]
        );
        assert_eq!(status.addresses.unwrap()[0].address, "172.31.0.2");
    }

    #[test]
    fn transition_time_survives_heartbeats_but_not_status_changes() {
        let t0 = Timestamp::from_second(1_700_000_000).unwrap();
        let t1 = Timestamp::from_second(1_700_000_100).unwrap();
        let first = healthy_conditions(&[], t0);
        let again = healthy_conditions(&first, t1);
        let ready = again.iter().find(|c| c.type_ == "Ready").unwrap();
        assert_eq!(ready.last_transition_time, Some(Time(t0)));
        assert_eq!(ready.last_heartbeat_time, Some(Time(t1)));
        let mut unknown = first.clone();
        unknown[3].status = "Unknown".into();
        let back = healthy_conditions(&unknown, t1);
        assert_eq!(back[3].last_transition_time, Some(Time(t1)));
    }
}
