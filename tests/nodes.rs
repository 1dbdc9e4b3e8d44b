//! Simulated nodes and the node controllers, end to end against `kubelab server --fake-nodes 3`
//! with the real kubectl 1.32: registration and heartbeats, node IPAM, the pod life on a
//! simulated node (Running, completion, failure, deletion), node failure (Ready=Unknown, the
//! unreachable taints, taint-based eviction) and recovery, and a standalone `kubelab agent
//! --fake` joining with its own node credentials.

mod common;

use std::net::Ipv4Addr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{columns, eventually, Kubectl, TestServer};
use serde_json::Value;

const WAIT: Duration = Duration::from_secs(30);

fn k() -> Kubectl {
    Kubectl::new("1.32")
}

fn json(server: &TestServer, args: &[&str]) -> Value {
    let mut all = args.to_vec();
    all.extend(["-o", "json"]);
    let out = server.ok(&k(), &all);
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("kubectl {args:?}: not JSON ({e}): {out}"))
}

fn try_json(server: &TestServer, args: &[&str]) -> Option<Value> {
    let mut all = args.to_vec();
    all.extend(["-o", "json"]);
    let out = server.kubectl(&k(), &all);
    out.success()
        .then(|| serde_json::from_str(&out.stdout).ok())
        .flatten()
}

fn condition<'a>(obj: &'a Value, type_: &str) -> Option<&'a Value> {
    obj.pointer("/status/conditions")?
        .as_array()?
        .iter()
        .find(|c| c["type"] == type_)
}

fn condition_status(obj: &Value, type_: &str) -> String {
    condition(obj, type_)
        .and_then(|c| c["status"].as_str())
        .unwrap_or("")
        .to_string()
}

fn taints(node: &Value) -> Vec<(String, String)> {
    node.pointer("/spec/taints")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .map(|t| {
                    (
                        t["key"].as_str().unwrap_or("").to_string(),
                        t["effect"].as_str().unwrap_or("").to_string(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

/// The node's podCIDR, once node IPAM assigned it.
fn pod_cidr(server: &TestServer, node: &str) -> (Ipv4Addr, u8) {
    eventually(&format!("{node} gets a podCIDR"), WAIT, || {
        let n = try_json(server, &["get", "node", node])?;
        let cidr = n.pointer("/spec/podCIDR")?.as_str()?.to_string();
        assert_eq!(
            n.pointer("/spec/podCIDRs/0").and_then(Value::as_str),
            Some(cidr.as_str()),
            "podCIDRs mirrors podCIDR"
        );
        let (addr, prefix) = cidr.split_once('/')?;
        Some((addr.parse().ok()?, prefix.parse().ok()?))
    })
}

fn in_cidr(ip: Ipv4Addr, (net, prefix): (Ipv4Addr, u8)) -> bool {
    let mask = u32::MAX << (32 - u32::from(prefix));
    u32::from(ip) & mask == u32::from(net) & mask
}

fn pod_manifest(name: &str, node: &str, extra_spec: &str, annotations: &str) -> String {
    format!(
        "apiVersion: v1
kind: Pod
metadata:
  name: {name}
  annotations: {{{annotations}}}
spec:
  nodeName: {node}
{extra_spec}
  containers:
  - name: app
    image: busybox:1.36
"
    )
}

fn wait_ready(server: &TestServer, pod: &str) {
    server.ok(
        &k(),
        &[
            "wait",
            "--for=condition=Ready",
            &format!("pod/{pod}"),
            "--timeout=30s",
        ],
    );
}

fn wait_phase(server: &TestServer, pod: &str, phase: &str) {
    server.ok(
        &k(),
        &[
            "wait",
            &format!("--for=jsonpath={{.status.phase}}={phase}"),
            &format!("pod/{pod}"),
            "--timeout=30s",
        ],
    );
}

fn pod_ip(server: &TestServer, pod: &str) -> Ipv4Addr {
    let p = json(server, &["get", "pod", pod]);
    p.pointer("/status/podIP")
        .and_then(Value::as_str)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("pod {pod} has no podIP: {p}"))
}

#[test]
fn simulated_nodes_register_ready_with_distinct_pod_cidrs() {
    // A grace period of 8 s makes the nodes renew their leases every 2 s.
    let server = TestServer::start_args(&["--fake-nodes", "3", "--node-monitor-grace-period", "8"]);
    let k = k();
    let table = eventually("3 Ready nodes", WAIT, || {
        let out = server.kubectl(&k, &["get", "nodes", "-o", "wide"]);
        let ready = out
            .stdout
            .lines()
            .skip(1)
            .filter(|l| columns(l).get(1) == Some(&"Ready"))
            .count();
        (out.success() && ready == 3).then_some(out.stdout)
    });
    let header = columns(table.lines().next().unwrap());
    let version = header.iter().position(|c| *c == "VERSION").unwrap();
    let internal_ip = header.iter().position(|c| *c == "INTERNAL-IP").unwrap();
    for (i, line) in table.lines().skip(1).enumerate() {
        let cols = columns(line);
        assert_eq!(cols[0], format!("fake-node-{}", i + 1), "{table}");
        assert_eq!(cols[version], "v1.32.0", "{table}");
        assert_eq!(cols[internal_ip], format!("172.31.0.{}", i + 2), "{table}");
    }
    let cidrs: Vec<(Ipv4Addr, u8)> = (1..=3)
        .map(|i| pod_cidr(&server, &format!("fake-node-{i}")))
        .collect();
    for (i, c) in cidrs.iter().enumerate() {
        assert_eq!(c.1, 24);
        assert_eq!(c.0.octets()[..2], [10, 244]);
        assert!(
            !cidrs[..i].contains(c),
            "podCIDRs must be distinct: {cidrs:?}"
        );
    }

    let node = json(&server, &["get", "node", "fake-node-1"]);
    assert_eq!(node["status"]["capacity"]["pods"], "110");
    assert_eq!(node["status"]["allocatable"]["cpu"], "4");
    assert_eq!(
        node["status"]["nodeInfo"]["containerRuntimeVersion"],
        "kubelab-fake://0.1"
    );
    assert_eq!(
        node["metadata"]["labels"]["kubernetes.io/hostname"],
        "fake-node-1"
    );
    assert_eq!(node["metadata"]["labels"]["kubernetes.io/os"], "linux");
    for c in ["MemoryPressure", "DiskPressure", "PIDPressure"] {
        assert_eq!(condition_status(&node, c), "False", "{c}");
    }
    assert!(condition(&node, "Ready").unwrap()["lastHeartbeatTime"].is_string());

    let lease = json(
        &server,
        &["get", "lease", "-n", "kube-node-lease", "fake-node-1"],
    );
    assert_eq!(lease["spec"]["holderIdentity"], "fake-node-1");
    assert_eq!(lease["spec"]["leaseDurationSeconds"], 40);
    assert_eq!(lease["metadata"]["ownerReferences"][0]["kind"], "Node");
    // The lease is renewed.
    let first = lease["spec"]["renewTime"].as_str().unwrap().to_string();
    eventually("the node lease is renewed", Duration::from_secs(10), || {
        let l = try_json(
            &server,
            &["get", "lease", "-n", "kube-node-lease", "fake-node-1"],
        )?;
        (l["spec"]["renewTime"].as_str()? != first).then_some(())
    });

    let described = server.ok(&k, &["describe", "node", "fake-node-1"]);
    for needle in [
        "HolderIdentity:  fake-node-1",
        "Kubelet Version:            v1.32.0",
        "InternalIP:  172.31.0.2",
        "KubeletReady",
        "PodCIDR:",
    ] {
        assert!(described.contains(needle), "no {needle:?} in:\n{described}");
    }
}

#[test]
fn pods_on_a_simulated_node_run_complete_fail_and_delete() {
    let server = TestServer::start_args(&["--fake-nodes", "3"]);
    let k = k();
    let cidr = pod_cidr(&server, "fake-node-1");

    server.ok_stdin(
        &k,
        &["apply", "-f", "-"],
        &pod_manifest(
            "web",
            "fake-node-1",
            "  initContainers:\n  - name: setup\n    image: busybox\n",
            "",
        ),
    );
    wait_ready(&server, "web");
    let pod = json(&server, &["get", "pod", "web"]);
    let status = &pod["status"];
    assert_eq!(status["phase"], "Running");
    let ip: Ipv4Addr = status["podIP"].as_str().unwrap().parse().unwrap();
    assert!(in_cidr(ip, cidr), "pod IP {ip} not in {cidr:?}");
    assert_eq!(status["podIPs"][0]["ip"], status["podIP"]);
    assert_eq!(status["hostIP"], "172.31.0.2");
    assert_eq!(status["hostIPs"][0]["ip"], "172.31.0.2");
    assert!(status["startTime"].is_string());
    assert_eq!(status["qosClass"], "BestEffort");
    for c in ["PodScheduled", "Initialized", "ContainersReady", "Ready"] {
        assert_eq!(condition_status(&pod, c), "True", "{c}: {status}");
    }
    let cs = &status["containerStatuses"][0];
    assert_eq!(cs["name"], "app");
    assert_eq!(cs["image"], "docker.io/library/busybox:1.36");
    assert!(cs["imageID"]
        .as_str()
        .unwrap()
        .starts_with("docker.io/library/busybox@sha256:"));
    assert!(cs["containerID"]
        .as_str()
        .unwrap()
        .starts_with("kubelab-fake://"));
    assert_eq!(
        (cs["ready"].clone(), cs["started"].clone()),
        (true.into(), true.into())
    );
    assert_eq!(cs["restartCount"], 0);
    assert!(cs["state"]["running"]["startedAt"].is_string());
    let init = &status["initContainerStatuses"][0];
    assert_eq!(init["state"]["terminated"]["reason"], "Completed");
    assert_eq!(init["state"]["terminated"]["exitCode"], 0);
    let wide = server.ok(&k, &["get", "pod", "web", "-o", "wide"]);
    let row = columns(wide.lines().nth(1).unwrap()).join(" ");
    assert!(
        row.starts_with("web 1/1 Running 0") && row.contains(&ip.to_string()),
        "{wide}"
    );

    // A second pod on the node gets another address; a freed one is handed out again.
    server.ok_stdin(
        &k,
        &["apply", "-f", "-"],
        &pod_manifest("web2", "fake-node-1", "", ""),
    );
    wait_ready(&server, "web2");
    let ip2 = pod_ip(&server, "web2");
    assert_ne!(ip, ip2);
    assert!(in_cidr(ip2, cidr));

    // Deletion completes promptly: the node confirms it.
    let started = Instant::now();
    server.ok(&k, &["delete", "pod", "web", "--timeout=20s"]);
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "kubectl delete pod took {:?}",
        started.elapsed()
    );
    server.fails(&k, &["get", "pod", "web"]);
    server.ok_stdin(
        &k,
        &["apply", "-f", "-"],
        &pod_manifest("web3", "fake-node-1", "", ""),
    );
    wait_ready(&server, "web3");
    assert_eq!(pod_ip(&server, "web3"), ip, "the freed address is reused");

    // hostNetwork pods use the node's address.
    server.ok_stdin(
        &k,
        &["apply", "-f", "-"],
        &pod_manifest("hostnet", "fake-node-2", "  hostNetwork: true\n", ""),
    );
    wait_ready(&server, "hostnet");
    assert_eq!(pod_ip(&server, "hostnet"), Ipv4Addr::new(172, 31, 0, 3));

    // Run-to-completion pods succeed, or fail with the annotation.
    server.ok_stdin(
        &k,
        &["apply", "-f", "-"],
        &pod_manifest(
            "done",
            "fake-node-2",
            "  restartPolicy: Never\n",
            "kubelab.dev/fake-duration: 500ms",
        ),
    );
    server.ok_stdin(
        &k,
        &["apply", "-f", "-"],
        &pod_manifest(
            "broken",
            "fake-node-3",
            "  restartPolicy: OnFailure\n",
            "kubelab.dev/fake-fail: \"true\"",
        ),
    );
    wait_phase(&server, "done", "Succeeded");
    wait_phase(&server, "broken", "Failed");
    let done = json(&server, &["get", "pod", "done"]);
    let term = &done["status"]["containerStatuses"][0]["state"]["terminated"];
    assert_eq!(
        (term["exitCode"].clone(), term["reason"].clone()),
        (0.into(), "Completed".into())
    );
    assert_eq!(condition_status(&done, "Ready"), "False");
    let broken = json(&server, &["get", "pod", "broken"]);
    let term = &broken["status"]["containerStatuses"][0]["state"]["terminated"];
    assert_eq!(
        (term["exitCode"].clone(), term["reason"].clone()),
        (1.into(), "Error".into())
    );
    let table = server.ok(&k, &["get", "pods", "done", "broken"]);
    assert!(
        table.contains("Completed") && table.contains("Error"),
        "{table}"
    );
    // Ended pods are deleted at once.
    server.ok(&k, &["delete", "pod", "done", "broken", "--timeout=20s"]);
}

#[test]
fn a_stopped_node_turns_unknown_is_tainted_and_loses_its_pods_then_recovers() {
    let server = TestServer::start_args(&["--fake-nodes", "3", "--node-monitor-grace-period", "3"]);
    let k = k();
    pod_cidr(&server, "fake-node-3");
    let quick = "  tolerations:\n  - key: node.kubernetes.io/unreachable\n    operator: Exists\n    effect: NoExecute\n    tolerationSeconds: 2\n";
    server.ok_stdin(
        &k,
        &["apply", "-f", "-"],
        &pod_manifest("victim", "fake-node-3", quick, ""),
    );
    server.ok_stdin(
        &k,
        &["apply", "-f", "-"],
        &pod_manifest("patient", "fake-node-3", "", ""),
    );
    wait_ready(&server, "victim");
    wait_ready(&server, "patient");
    // A Deployment whose pods tolerate the unreachable taint for 2 s, spread over the nodes.
    server.ok_stdin(
        &k,
        &["apply", "-f", "-"],
        &format!(
            "apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  replicas: 3
  selector:
    matchLabels: {{app: web}}
  template:
    metadata:
      labels: {{app: web}}
    spec:
{quick}      containers:
      - name: app
        image: busybox:1.36
",
            quick = quick
                .lines()
                .map(|l| format!("    {l}\n"))
                .collect::<String>()
        ),
    );
    server.ok(&k, &["rollout", "status", "deploy/web", "--timeout=30s"]);
    let on_node = |node: &str| -> Vec<String> {
        let pods = json(&server, &["get", "pods", "-l", "app=web"]);
        pods["items"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|p| {
                p["spec"]["nodeName"] == node && p["metadata"]["deletionTimestamp"].is_null()
            })
            .map(|p| p["metadata"]["name"].as_str().unwrap().to_string())
            .collect()
    };
    let doomed = on_node("fake-node-3");
    assert!(
        !doomed.is_empty(),
        "the Deployment spread its pods: none on fake-node-3"
    );
    let patient = json(&server, &["get", "pod", "patient"]);
    assert!(
        patient["spec"]["tolerations"]
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t["key"] == "node.kubernetes.io/unreachable" && t["tolerationSeconds"] == 300),
        "default tolerations: {}",
        patient["spec"]
    );

    server.ok(
        &k,
        &[
            "annotate",
            "node",
            "fake-node-3",
            "kubelab.dev/fake-stopped=true",
        ],
    );
    let node = eventually(
        "fake-node-3 turns Ready=Unknown with the unreachable taints",
        WAIT,
        || {
            let n = try_json(&server, &["get", "node", "fake-node-3"])?;
            let t = taints(&n);
            (condition_status(&n, "Ready") == "Unknown"
                && t.contains(&("node.kubernetes.io/unreachable".into(), "NoExecute".into()))
                && t.contains(&("node.kubernetes.io/unreachable".into(), "NoSchedule".into())))
            .then_some(n)
        },
    );
    let ready = condition(&node, "Ready").unwrap();
    assert_eq!(ready["reason"], "NodeStatusUnknown");
    assert_eq!(ready["message"], "Kubelet stopped posting node status.");
    assert_eq!(condition_status(&node, "MemoryPressure"), "Unknown");
    let table = server.ok(&k, &["get", "node", "fake-node-3"]);
    assert!(table.contains("NotReady"), "{table}");
    // The other nodes are unaffected.
    let other = json(&server, &["get", "node", "fake-node-1"]);
    assert_eq!(condition_status(&other, "Ready"), "True");
    assert!(taints(&other).is_empty());

    // The victim is evicted after its 2 s; the stopped node cannot confirm, so it stays
    // Terminating. The pod with the default 300 s toleration stays, not ready.
    eventually("the victim is evicted", WAIT, || {
        let p = try_json(&server, &["get", "pod", "victim"])?;
        p.pointer("/metadata/deletionTimestamp")?;
        Some(())
    });
    let victim = json(&server, &["get", "pod", "victim"]);
    assert_eq!(
        condition(&victim, "DisruptionTarget").map(|c| c["reason"].clone()),
        Some("DeletionByTaintManager".into())
    );
    // The Deployment's pods of fake-node-3 are replaced by Ready pods on the other nodes.
    eventually(
        "the Deployment's pods are replaced on the other nodes",
        WAIT,
        || {
            let pods = json(&server, &["get", "pods", "-l", "app=web"]);
            let live: Vec<&Value> = pods["items"]
                .as_array()?
                .iter()
                .filter(|p| p["metadata"]["deletionTimestamp"].is_null())
                .collect();
            let elsewhere_ready = live
                .iter()
                .filter(|p| {
                    p["spec"]["nodeName"] != "fake-node-3" && condition_status(p, "Ready") == "True"
                })
                .count();
            (live.len() == 3 && elsewhere_ready == 3).then_some(())
        },
    );
    for name in &doomed {
        let p = json(&server, &["get", "pod", name]);
        assert!(
            p.pointer("/metadata/deletionTimestamp").is_some(),
            "{name} evicted"
        );
    }
    let patient = json(&server, &["get", "pod", "patient"]);
    assert!(patient.pointer("/metadata/deletionTimestamp").is_none());
    assert_eq!(condition_status(&patient, "Ready"), "False");

    // Back: Ready, no taints, the evicted pod finalized, the other ready again.
    server.ok(
        &k,
        &[
            "annotate",
            "node",
            "fake-node-3",
            "kubelab.dev/fake-stopped-",
        ],
    );
    eventually("fake-node-3 is Ready again without taints", WAIT, || {
        let n = try_json(&server, &["get", "node", "fake-node-3"])?;
        (condition_status(&n, "Ready") == "True" && taints(&n).is_empty()).then_some(())
    });
    eventually("the evicted pod is gone", WAIT, || {
        (!server.kubectl(&k, &["get", "pod", "victim"]).success()).then_some(())
    });
    wait_ready(&server, "patient");
}

/// `kubelab agent --fake` as a child process; killed on drop.
struct AgentProcess(Child);

impl Drop for AgentProcess {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn standalone_agent_joins_with_node_credentials() {
    let server = TestServer::start();
    let k = k();
    let tls = server.data_dir().join("tls");
    let read = |f: &str| std::fs::read_to_string(tls.join(f)).unwrap();
    let ca = kubelab_pki::CertPair {
        cert_pem: read("ca.crt"),
        key_pem: read("ca.key"),
    };
    let cert =
        kubelab_pki::issue_client_cert(&ca, "system:node:edge-1", &["system:nodes"]).unwrap();
    let kubeconfig = server.root().join("edge-1.kubeconfig");
    let url = server.url();
    kubelab_pki::write_kubeconfig(
        &kubeconfig,
        &kubelab_pki::KubeconfigSpec {
            cluster_name: "kubelab",
            context_name: "kubelab",
            user_name: "system:node:edge-1",
            server: &url,
            ca_pem: &ca.cert_pem,
            client: &cert,
        },
    )
    .unwrap();
    let log = std::fs::File::create(server.root().join("agent.log")).unwrap();
    let _agent = AgentProcess(
        Command::new(common::kubelab_bin())
            .args([
                "agent",
                "--fake",
                "--node-name",
                "edge-1",
                "--cpu",
                "8",
                "--memory",
                "16Gi",
            ])
            .args(["--node-ip", "192.0.2.10", "--kubeconfig"])
            .arg(&kubeconfig)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start kubelab agent"),
    );
    let node = eventually("edge-1 registers and is Ready", WAIT, || {
        let n = try_json(&server, &["get", "node", "edge-1"])?;
        (condition_status(&n, "Ready") == "True").then_some(n)
    });
    assert_eq!(node["status"]["capacity"]["cpu"], "8");
    assert_eq!(node["status"]["capacity"]["memory"], "16Gi");
    assert_eq!(node["status"]["addresses"][0]["address"], "192.0.2.10");
    let table = server.ok(&k, &["get", "nodes"]);
    assert!(
        table
            .lines()
            .any(|l| columns(l)[..2] == ["edge-1", "Ready"]),
        "{table}"
    );
    let lease = json(
        &server,
        &["get", "lease", "-n", "kube-node-lease", "edge-1"],
    );
    assert_eq!(lease["spec"]["holderIdentity"], "edge-1");
    let cidr = pod_cidr(&server, "edge-1");
    server.ok_stdin(
        &k,
        &["apply", "-f", "-"],
        &pod_manifest("edge-pod", "edge-1", "", ""),
    );
    wait_ready(&server, "edge-pod");
    assert!(in_cidr(pod_ip(&server, "edge-pod"), cidr));
    let agent_log = std::fs::read_to_string(server.root().join("agent.log")).unwrap_or_default();
    assert!(
        agent_log.contains("registered simulated node"),
        "agent log:\n{agent_log}"
    );
}

// A pod's containers start only once its claims are Bound (the kubelet's volume manager).
#[test]
fn a_pod_waits_for_its_claims_to_be_bound() {
    let server = TestServer::start_args(&["--fake-nodes", "1"]);
    let k = k();
    pod_cidr(&server, "fake-node-1");
    // A claim on a class no provisioner serves: Pending until a matching volume appears.
    server.ok_stdin(
        &k,
        &["apply", "-f", "-"],
        "apiVersion: v1
kind: PersistentVolumeClaim
metadata:
  name: data
spec:
  storageClassName: manual
  accessModes: [ReadWriteOnce]
  resources:
    requests:
      storage: 1Gi
",
    );
    let with_claim =
        "  volumes:\n  - name: data\n    persistentVolumeClaim:\n      claimName: data\n";
    server.ok_stdin(
        &k,
        &["apply", "-f", "-"],
        &pod_manifest("user", "fake-node-1", with_claim, ""),
    );
    server.ok_stdin(
        &k,
        &["apply", "-f", "-"],
        &pod_manifest("plain", "fake-node-1", "", ""),
    );
    // The pod without claims runs; the pod with one is still Pending after that.
    wait_ready(&server, "plain");
    let user = json(&server, &["get", "pod", "user"]);
    assert_eq!(user["status"]["phase"], "Pending", "{}", user["status"]);
    assert!(user["status"]["podIP"].is_null(), "{}", user["status"]);

    server.ok_stdin(
        &k,
        &["apply", "-f", "-"],
        "apiVersion: v1
kind: PersistentVolume
metadata:
  name: manual-1
spec:
  storageClassName: manual
  accessModes: [ReadWriteOnce]
  capacity:
    storage: 1Gi
  hostPath:
    path: /tmp/manual-1
",
    );
    wait_ready(&server, "user");
    assert_eq!(
        server.ok(
            &k,
            &["get", "pvc", "data", "-o", "jsonpath={.status.phase}"]
        ),
        "Bound"
    );
}
