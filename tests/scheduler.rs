//! Scheduler acceptance tests: real kubectl 1.32 against `kubelab server`, on Node objects this
//! test registers itself (capacity, labels, taints, Ready) through kube-rs, so each test controls
//! exactly the nodes it schedules onto.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::{eventually, Kubectl, TestServer};
use k8s_openapi::api::core::v1::Node;
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::{json, Value};

/// How long a scheduling decision may take in these tests.
const DEADLINE: Duration = Duration::from_secs(30);

/// A server without simulated nodes; the tests' own nodes never heartbeat, so the node lifecycle
/// controller is told to wait long enough not to mark them unreachable mid-test.
fn server_with_own_nodes() -> TestServer {
    TestServer::start_args(&["--node-monitor-grace-period", "600"])
}

fn kubectl() -> Kubectl {
    Kubectl::new("1.32")
}

/// A Ready node with `cpu` cores, 8Gi, 110 pods, the hostname label and `extra` merged into it.
fn add_node(server: &TestServer, name: &str, cpu: &str, extra: Value) {
    let mut node = json!({
        "apiVersion": "v1", "kind": "Node",
        "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name, "kubernetes.io/os": "linux"}},
        "spec": {}
    });
    merge(&mut node, extra);
    let now = k8s_openapi::jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string();
    let resources =
        json!({"cpu": cpu, "memory": "8Gi", "pods": "110", "ephemeral-storage": "50Gi"});
    let status = json!({"status": {
        "capacity": resources, "allocatable": resources,
        "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady",
            "message": "kubelet is posting ready status",
            "lastHeartbeatTime": now, "lastTransitionTime": now}],
        "addresses": [{"type": "Hostname", "address": name}]
    }});
    server.block_on(async {
        let nodes: Api<Node> = Api::all(server.client().await);
        let node: Node = serde_json::from_value(node).unwrap();
        nodes
            .create(&PostParams::default(), &node)
            .await
            .unwrap_or_else(|e| panic!("create node {name}: {e}"));
        nodes
            .patch_status(name, &PatchParams::default(), &Patch::Merge(&status))
            .await
            .unwrap_or_else(|e| panic!("node {name} status: {e}"));
    });
}

fn merge(a: &mut Value, b: Value) {
    match (a, b) {
        (Value::Object(a), Value::Object(b)) => {
            for (k, v) in b {
                merge(a.entry(k).or_insert(Value::Null), v);
            }
        }
        (a, b) => *a = b,
    }
}

/// A busybox pod manifest (labels app=<app>) with `spec` merged into its spec.
fn pod_yaml(name: &str, app: &str, spec: Value) -> String {
    let mut pod = json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "labels": {"app": app}},
        "spec": {"containers": [{"name": "main", "image": "busybox", "command": ["sleep", "3600"]}]}
    });
    merge(&mut pod, json!({"spec": spec}));
    serde_json::to_string(&pod).unwrap()
}

fn create_pod(server: &TestServer, name: &str, app: &str, spec: Value) {
    server.ok_stdin(
        &kubectl(),
        &["create", "-f", "-"],
        &pod_yaml(name, app, spec),
    );
}

fn jsonpath(server: &TestServer, args: &[&str], path: &str) -> String {
    let expr = format!("jsonpath={path}");
    let mut all: Vec<&str> = args.to_vec();
    all.extend(["-o", expr.as_str()]);
    server.ok(&kubectl(), &all)
}

/// Waits until the pod is bound; returns its node.
fn scheduled_node(server: &TestServer, pod: &str) -> String {
    eventually(&format!("pod {pod} bound to a node"), DEADLINE, || {
        let node = jsonpath(server, &["get", "pod", pod], "{.spec.nodeName}");
        (!node.is_empty()).then_some(node)
    })
}

/// Waits for the pod's PodScheduled=False condition and returns its message, after checking the
/// pod is still unbound and Pending.
fn unschedulable_message(server: &TestServer, pod: &str) -> String {
    let message = eventually(&format!("pod {pod} marked unschedulable"), DEADLINE, || {
        let out = jsonpath(
            server,
            &["get", "pod", pod],
            r#"{.status.conditions[?(@.type=="PodScheduled")].status}|{.status.conditions[?(@.type=="PodScheduled")].reason}|{.status.conditions[?(@.type=="PodScheduled")].message}"#,
        );
        let mut parts = out.splitn(3, '|');
        match (parts.next(), parts.next(), parts.next()) {
            (Some("False"), Some("Unschedulable"), Some(m)) if !m.is_empty() => Some(m.to_string()),
            _ => None,
        }
    });
    let state = jsonpath(
        server,
        &["get", "pod", pod],
        "{.spec.nodeName}|{.status.phase}",
    );
    assert_eq!(state, "|Pending", "pod {pod} should be unbound and Pending");
    message
}

/// The messages of the pod's events with `reason`.
fn event_messages(server: &TestServer, pod: &str, reason: &str) -> Vec<String> {
    let selector = format!("involvedObject.name={pod},reason={reason}");
    let out = jsonpath(
        server,
        &["get", "events", "--field-selector", &selector],
        r#"{range .items[*]}{.message}{"\n"}{end}"#,
    );
    out.lines().map(str::to_owned).collect()
}

#[test]
fn pods_of_one_app_spread_over_the_nodes() {
    let server = server_with_own_nodes();
    for n in ["node-a", "node-b", "node-c"] {
        add_node(&server, n, "4", json!({}));
    }
    for i in 0..3 {
        create_pod(&server, &format!("web-{i}"), "web", json!({}));
    }
    let nodes: BTreeSet<String> = (0..3)
        .map(|i| scheduled_node(&server, &format!("web-{i}")))
        .collect();
    assert_eq!(
        nodes.len(),
        3,
        "pods should land on 3 distinct nodes: {nodes:?}"
    );

    // The binding wrote PodScheduled=True; the scheduler reported it as upstream does.
    let cond = jsonpath(
        &server,
        &["get", "pod", "web-0"],
        r#"{.status.conditions[?(@.type=="PodScheduled")].status}"#,
    );
    assert_eq!(cond, "True");
    let node = jsonpath(&server, &["get", "pod", "web-0"], "{.spec.nodeName}");
    let scheduled = eventually("Scheduled event", DEADLINE, || {
        let m = event_messages(&server, "web-0", "Scheduled");
        (!m.is_empty()).then_some(m)
    });
    assert_eq!(
        scheduled,
        [format!("Successfully assigned default/web-0 to {node}")]
    );
    let source = jsonpath(
        &server,
        &[
            "get",
            "events",
            "--field-selector",
            "involvedObject.name=web-0,reason=Scheduled",
        ],
        "{.items[0].type}|{.items[0].source.component}|{.items[0].reportingComponent}|{.items[0].involvedObject.kind}",
    );
    assert_eq!(source, "Normal|default-scheduler|default-scheduler|Pod");
}

#[test]
fn node_selector_and_required_node_affinity() {
    let server = server_with_own_nodes();
    add_node(
        &server,
        "ssd-1",
        "4",
        json!({"metadata": {"labels": {"disk": "ssd", "cores": "16"}}}),
    );
    add_node(
        &server,
        "hdd-1",
        "4",
        json!({"metadata": {"labels": {"disk": "hdd", "cores": "4"}}}),
    );
    add_node(
        &server,
        "hdd-2",
        "4",
        json!({"metadata": {"labels": {"disk": "hdd", "cores": "4"}}}),
    );

    create_pod(
        &server,
        "wants-ssd",
        "a",
        json!({"nodeSelector": {"disk": "ssd"}}),
    );
    assert_eq!(scheduled_node(&server, "wants-ssd"), "ssd-1");

    create_pod(
        &server,
        "many-cores",
        "b",
        json!({"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
        "nodeSelectorTerms": [
            {"matchExpressions": [{"key": "cores", "operator": "Gt", "values": ["8"]}]}
        ]}}}}),
    );
    assert_eq!(scheduled_node(&server, "many-cores"), "ssd-1");

    create_pod(
        &server,
        "not-ssd",
        "c",
        json!({"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
        "nodeSelectorTerms": [
            {"matchExpressions": [{"key": "disk", "operator": "NotIn", "values": ["ssd"]}]},
            {"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["nowhere"]}]}
        ]}}}}),
    );
    assert!(scheduled_node(&server, "not-ssd").starts_with("hdd-"));

    create_pod(
        &server,
        "wants-nvme",
        "d",
        json!({"nodeSelector": {"disk": "nvme"}}),
    );
    assert_eq!(
        unschedulable_message(&server, "wants-nvme"),
        "0/3 nodes are available: 3 node(s) didn't match Pod's node affinity/selector. \
         preemption: 0/3 nodes are available: 3 Preemption is not helpful for scheduling."
    );
    // Labelling a node makes the pod schedulable: the node update requeues it.
    server.ok(
        &kubectl(),
        &["label", "node", "hdd-2", "disk=nvme", "--overwrite"],
    );
    assert_eq!(scheduled_node(&server, "wants-nvme"), "hdd-2");
}

#[test]
fn taints_keep_pods_without_tolerations_away() {
    let server = server_with_own_nodes();
    add_node(&server, "plain", "4", json!({}));
    add_node(
        &server,
        "gpu",
        "4",
        json!({"metadata": {"labels": {"gpu": "true"}}}),
    );
    server.ok(
        &kubectl(),
        &["taint", "node", "gpu", "dedicated=gpu:NoSchedule"],
    );

    // Without a toleration only the plain node fits, whatever the scores say.
    for i in 0..4 {
        create_pod(&server, &format!("plain-{i}"), "plain", json!({}));
    }
    for i in 0..4 {
        assert_eq!(scheduled_node(&server, &format!("plain-{i}")), "plain");
    }

    create_pod(
        &server,
        "untolerated",
        "x",
        json!({"nodeSelector": {"gpu": "true"}}),
    );
    assert_eq!(
        unschedulable_message(&server, "untolerated"),
        "0/2 nodes are available: 1 node(s) didn't match Pod's node affinity/selector, \
         1 node(s) had untolerated taint {dedicated: gpu}. \
         preemption: 0/2 nodes are available: 2 Preemption is not helpful for scheduling."
    );

    create_pod(
        &server,
        "tolerant",
        "y",
        json!({"nodeSelector": {"gpu": "true"},
               "tolerations": [{"key": "dedicated", "operator": "Equal", "value": "gpu", "effect": "NoSchedule"}]}),
    );
    assert_eq!(scheduled_node(&server, "tolerant"), "gpu");

    // Removing the taint lets the waiting pod in.
    server.ok(&kubectl(), &["taint", "node", "gpu", "dedicated-"]);
    assert_eq!(scheduled_node(&server, "untolerated"), "gpu");
}

#[test]
fn too_big_a_request_waits_for_a_bigger_node() {
    let server = server_with_own_nodes();
    for n in ["small-1", "small-2", "small-3"] {
        add_node(&server, n, "2", json!({}));
    }
    create_pod(
        &server,
        "big",
        "big",
        json!({"containers": [{"name": "main", "image": "busybox",
            "resources": {"requests": {"cpu": "3", "memory": "1Gi"}}}]}),
    );
    let expected = "0/3 nodes are available: 3 Insufficient cpu. \
        preemption: 0/3 nodes are available: 3 No preemption victims found for incoming pod.";
    assert_eq!(unschedulable_message(&server, "big"), expected);
    let events = eventually("FailedScheduling event", DEADLINE, || {
        let m = event_messages(&server, "big", "FailedScheduling");
        (!m.is_empty()).then_some(m)
    });
    assert_eq!(events[0], expected);
    let kind = jsonpath(
        &server,
        &[
            "get",
            "events",
            "--field-selector",
            "involvedObject.name=big,reason=FailedScheduling",
        ],
        "{.items[0].type}|{.items[0].source.component}",
    );
    assert_eq!(kind, "Warning|default-scheduler");
    // kubectl describe shows it in the pod's events.
    let describe = server.ok(&kubectl(), &["describe", "pod", "big"]);
    assert!(
        describe.contains("FailedScheduling")
            && describe.contains("0/3 nodes are available: 3 Insufficient cpu."),
        "describe pod big:\n{describe}"
    );
    assert!(describe.contains("default-scheduler"), "{describe}");

    add_node(&server, "large", "8", json!({}));
    assert_eq!(scheduled_node(&server, "big"), "large");
    let scheduled = eventually("Scheduled event", DEADLINE, || {
        let m = event_messages(&server, "big", "Scheduled");
        (!m.is_empty()).then_some(m)
    });
    assert_eq!(scheduled, ["Successfully assigned default/big to large"]);
}

#[test]
fn cordoned_nodes_get_no_pods() {
    let server = server_with_own_nodes();
    for n in ["node-a", "node-b", "node-c"] {
        add_node(&server, n, "4", json!({}));
    }
    server.ok(&kubectl(), &["cordon", "node-a"]);
    for i in 0..6 {
        create_pod(&server, &format!("web-{i}"), "web", json!({}));
    }
    for i in 0..6 {
        assert_ne!(scheduled_node(&server, &format!("web-{i}")), "node-a");
    }
    server.ok(&kubectl(), &["cordon", "node-b"]);
    server.ok(&kubectl(), &["cordon", "node-c"]);
    create_pod(&server, "late", "late", json!({}));
    assert_eq!(
        unschedulable_message(&server, "late"),
        "0/3 nodes are available: 3 node(s) were unschedulable. \
         preemption: 0/3 nodes are available: 3 Preemption is not helpful for scheduling."
    );
    // A pod tolerating the unschedulable taint may still go there (like DaemonSet pods).
    create_pod(
        &server,
        "tolerant",
        "tolerant",
        json!({"tolerations": [{"key": "node.kubernetes.io/unschedulable", "operator": "Exists", "effect": "NoSchedule"}]}),
    );
    scheduled_node(&server, "tolerant");
    server.ok(&kubectl(), &["uncordon", "node-b"]);
    assert_eq!(scheduled_node(&server, "late"), "node-b");
}

#[test]
fn host_port_conflict_leaves_the_second_pod_pending() {
    let server = server_with_own_nodes();
    add_node(&server, "only", "4", json!({}));
    let with_port = |port: Value| json!({"containers": [{"name": "main", "image": "busybox", "ports": [port]}]});
    create_pod(
        &server,
        "first",
        "p",
        with_port(json!({"containerPort": 80, "hostPort": 8080})),
    );
    assert_eq!(scheduled_node(&server, "first"), "only");
    // Same port over UDP does not conflict.
    create_pod(
        &server,
        "udp",
        "p",
        with_port(json!({"containerPort": 80, "hostPort": 8080, "protocol": "UDP"})),
    );
    assert_eq!(scheduled_node(&server, "udp"), "only");
    create_pod(
        &server,
        "second",
        "p",
        with_port(json!({"containerPort": 8080, "hostPort": 8080, "hostIP": "127.0.0.1"})),
    );
    assert_eq!(
        unschedulable_message(&server, "second"),
        "0/1 nodes are available: 1 node(s) didn't have free ports for the requested pod ports. \
         preemption: 0/1 nodes are available: 1 No preemption victims found for incoming pod."
    );
    // Deleting the holder frees the port; the pending pod is retried.
    server.ok(
        &kubectl(),
        &["delete", "pod", "first", "--grace-period=0", "--force"],
    );
    assert_eq!(scheduled_node(&server, "second"), "only");
}

#[test]
fn required_pod_anti_affinity_on_hostname() {
    let server = server_with_own_nodes();
    add_node(&server, "node-a", "4", json!({}));
    add_node(&server, "node-b", "4", json!({}));
    let anti = json!({"affinity": {"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
        {"labelSelector": {"matchLabels": {"app": "db"}}, "topologyKey": "kubernetes.io/hostname"}
    ]}}});
    create_pod(&server, "db-0", "db", anti.clone());
    create_pod(&server, "db-1", "db", anti.clone());
    let a = scheduled_node(&server, "db-0");
    let b = scheduled_node(&server, "db-1");
    assert_ne!(a, b, "anti-affine pods share a node");
    create_pod(&server, "db-2", "db", anti);
    assert_eq!(
        unschedulable_message(&server, "db-2"),
        "0/2 nodes are available: 2 node(s) didn't match pod anti-affinity rules. \
         preemption: 0/2 nodes are available: 2 No preemption victims found for incoming pod."
    );
    // A pod without anti-affinity of its own is still kept off by the existing pods' rules.
    create_pod(&server, "db-extra", "db", json!({}));
    assert_eq!(
        unschedulable_message(&server, "db-extra"),
        "0/2 nodes are available: 2 node(s) didn't satisfy existing pods anti-affinity rules. \
         preemption: 0/2 nodes are available: 2 No preemption victims found for incoming pod."
    );
    // Required pod affinity: next to db-0.
    create_pod(
        &server,
        "cache",
        "cache",
        json!({"affinity": {"podAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
            {"labelSelector": {"matchExpressions": [{"key": "app", "operator": "In", "values": ["db"]}]},
             "topologyKey": "kubernetes.io/hostname"}
        ]}}}),
    );
    scheduled_node(&server, "cache");
    // A third node gives db-2 a place (db-extra would compete for it: remove it first).
    server.ok(
        &kubectl(),
        &["delete", "pod", "db-extra", "--grace-period=0", "--force"],
    );
    add_node(&server, "node-c", "4", json!({}));
    assert_eq!(scheduled_node(&server, "db-2"), "node-c");
}

#[test]
fn deployment_replicas_spread_over_simulated_nodes() {
    let server = TestServer::start_args(&["--fake-nodes", "3"]);
    let k = kubectl();
    eventually("3 simulated nodes Ready", DEADLINE, || {
        let ready = jsonpath(
            &server,
            &["get", "nodes"],
            r#"{range .items[*]}{.status.conditions[?(@.type=="Ready")].status}{"\n"}{end}"#,
        );
        (ready.lines().filter(|l| *l == "True").count() == 3).then_some(())
    });
    server.ok(
        &k,
        &[
            "create",
            "deployment",
            "web",
            "--image=busybox",
            "--replicas=3",
        ],
    );
    server.ok(
        &k,
        &["rollout", "status", "deployment/web", "--timeout=60s"],
    );
    let placed = jsonpath(
        &server,
        &["get", "pods", "-l", "app=web"],
        r#"{range .items[*]}{.spec.nodeName} {.status.phase}{"\n"}{end}"#,
    );
    let nodes: BTreeSet<&str> = placed
        .lines()
        .map(|l| {
            let (node, phase) = l.split_once(' ').unwrap_or((l, ""));
            assert_eq!(phase, "Running", "{placed}");
            node
        })
        .collect();
    assert_eq!(
        nodes,
        BTreeSet::from(["fake-node-1", "fake-node-2", "fake-node-3"]),
        "{placed}"
    );
}
