//! Workload controllers on simulated nodes (`kubelab server --fake-nodes 3`), driven by real
//! kubectl 1.32: DaemonSets (one pod per eligible node, taints, new and removed nodes, rolling
//! update), StatefulSets (ordered start with one bound claim per pod, ordered scale-down,
//! rolling update) and the default StorageClass with its WaitForFirstConsumer provisioner.

mod common;

use std::collections::BTreeMap;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{eventually, Kubectl, TestServer};
use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::runtime::{watcher, WatchStreamExt};
use serde_json::Value;

/// Generous bounds: each is a failure deadline, not a wait.
const NODES_READY: Duration = Duration::from_secs(60);
const SETTLE: Duration = Duration::from_secs(60);
const ROLLOUT_TIMEOUT: &str = "--timeout=90s";

fn cluster() -> TestServer {
    let server = TestServer::start_args(&["--fake-nodes", "3"]);
    let k = Kubectl::new("1.32");
    eventually("3 registered nodes", NODES_READY, || {
        let out = server.kubectl(&k, &["get", "nodes", "-o", "name"]);
        (out.success() && out.stdout.lines().count() == 3).then_some(())
    });
    server.ok(
        &k,
        &[
            "wait",
            "--for=condition=Ready",
            "node",
            "--all",
            "--timeout=60s",
        ],
    );
    server
}

fn json(server: &TestServer, k: &Kubectl, args: &[&str]) -> Value {
    let mut all = args.to_vec();
    all.extend(["-o", "json"]);
    let out = server.ok(k, &all);
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("kubectl {args:?} -o json: {e}\n{out}"))
}

fn items(list: &Value) -> Vec<Value> {
    list["items"].as_array().cloned().unwrap_or_default()
}

fn name(obj: &Value) -> String {
    obj["metadata"]["name"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

/// The node a daemon pod is for: its nodeName, else the node its affinity pins it to.
fn target_node(pod: &Value) -> String {
    if let Some(node) = pod["spec"]["nodeName"].as_str() {
        return node.to_owned();
    }
    pod.pointer(
        "/spec/affinity/nodeAffinity/requiredDuringSchedulingIgnoredDuringExecution/nodeSelectorTerms/0/matchFields/0/values/0",
    )
    .and_then(Value::as_str)
    .unwrap_or_default()
    .to_owned()
}

/// Non-terminating pods of `selector` in `ns`, counted per target node.
fn pods_per_node(
    server: &TestServer,
    k: &Kubectl,
    ns: &str,
    selector: &str,
) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for pod in items(&json(server, k, &["get", "pods", "-n", ns, "-l", selector])) {
        if pod["metadata"]["deletionTimestamp"].is_null() {
            *counts.entry(target_node(&pod)).or_insert(0) += 1;
        }
    }
    counts
}

/// The REVISION column of `kubectl rollout history`.
fn revision_numbers(history: &str) -> Vec<&str> {
    history
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|c| c.parse::<u32>().is_ok())
        .collect()
}

fn per_node(entries: &[(&str, usize)]) -> BTreeMap<String, usize> {
    entries.iter().map(|(n, c)| (n.to_string(), *c)).collect()
}

const AGENT_DS: &str = r#"
apiVersion: apps/v1
kind: DaemonSet
metadata:
  name: agent
  namespace: ds
spec:
  selector:
    matchLabels: {app: agent}
  template:
    metadata:
      labels: {app: agent}
    spec:
      containers:
      - name: agent
        image: busybox:1.36
        command: ["sleep", "infinity"]
"#;

const INFRA_DS: &str = r#"
apiVersion: apps/v1
kind: DaemonSet
metadata:
  name: infra
  namespace: ds
spec:
  selector:
    matchLabels: {app: infra}
  template:
    metadata:
      labels: {app: infra}
    spec:
      tolerations:
      - {key: dedicated, operator: Equal, value: infra, effect: NoSchedule}
      containers:
      - name: infra
        image: busybox:1.36
        command: ["sleep", "infinity"]
"#;

/// A standalone simulated node (`kubelab agent --fake`) with its own node credentials; killed
/// on drop.
struct Agent(Child);

impl Agent {
    fn start(server: &TestServer, name: &str) -> Agent {
        let tls = server.data_dir().join("tls");
        let read = |f: &str| std::fs::read_to_string(tls.join(f)).expect("read cluster CA");
        let ca = kubelab_pki::CertPair {
            cert_pem: read("ca.crt"),
            key_pem: read("ca.key"),
        };
        let cert =
            kubelab_pki::issue_client_cert(&ca, &format!("system:node:{name}"), &["system:nodes"])
                .expect("node certificate");
        let kubeconfig = server.root().join(format!("{name}.kubeconfig"));
        let url = server.url();
        let user = format!("system:node:{name}");
        kubelab_pki::write_kubeconfig(
            &kubeconfig,
            &kubelab_pki::KubeconfigSpec {
                cluster_name: "kubelab",
                context_name: "kubelab",
                user_name: &user,
                server: &url,
                ca_pem: &ca.cert_pem,
                client: &cert,
            },
        )
        .expect("node kubeconfig");
        let log = std::fs::File::create(server.root().join(format!("{name}.log"))).unwrap();
        let child = Command::new(common::kubelab_bin())
            .args(["agent", "--fake", "--node-name", name, "--kubeconfig"])
            .arg(&kubeconfig)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start kubelab agent --fake");
        Agent(child)
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

// Acceptance 4: one pod per node; a NoSchedule taint is skipped unless tolerated; a new node gets
// its pod and a removed or evicting node loses it; a rolling update completes.
#[test]
fn daemonset_runs_one_pod_per_eligible_node() {
    let server = cluster();
    let k = Kubectl::new("1.32");
    server.create_namespace("ds");
    server.ok(
        &k,
        &[
            "taint",
            "nodes",
            "fake-node-3",
            "dedicated=infra:NoSchedule",
        ],
    );
    server.ok_stdin(&k, &["apply", "-f", "-"], AGENT_DS);
    server.ok_stdin(&k, &["apply", "-f", "-"], INFRA_DS);
    for ds in ["ds/agent", "ds/infra"] {
        server.ok(&k, &["rollout", "status", ds, "-n", "ds", ROLLOUT_TIMEOUT]);
    }

    assert_eq!(
        pods_per_node(&server, &k, "ds", "app=agent"),
        per_node(&[("fake-node-1", 1), ("fake-node-2", 1)]),
        "the untolerating DaemonSet skips the tainted node"
    );
    assert_eq!(
        pods_per_node(&server, &k, "ds", "app=infra"),
        per_node(&[("fake-node-1", 1), ("fake-node-2", 1), ("fake-node-3", 1)]),
        "the tolerating DaemonSet runs everywhere"
    );
    let agent = json(&server, &k, &["get", "ds", "agent", "-n", "ds"]);
    let status = &agent["status"];
    assert_eq!(status["desiredNumberScheduled"], 2, "{status}");
    assert_eq!(status["currentNumberScheduled"], 2, "{status}");
    assert_eq!(status["numberReady"], 2, "{status}");
    assert_eq!(status["numberAvailable"], 2, "{status}");
    assert_eq!(status["updatedNumberScheduled"], 2, "{status}");
    assert_eq!(status["numberMisscheduled"], 0, "{status}");
    assert_eq!(
        status["observedGeneration"],
        agent["metadata"]["generation"]
    );
    for pod in items(&json(
        &server,
        &k,
        &["get", "pods", "-n", "ds", "-l", "app=agent"],
    )) {
        let owner = &pod["metadata"]["ownerReferences"][0];
        assert_eq!(owner["kind"], "DaemonSet", "{pod}");
        assert_eq!(owner["controller"], true, "{pod}");
        assert_eq!(pod["status"]["phase"], "Running", "{pod}");
        let tolerations = pod["spec"]["tolerations"].to_string();
        for key in [
            "node.kubernetes.io/not-ready",
            "node.kubernetes.io/unschedulable",
        ] {
            assert!(
                tolerations.contains(key),
                "daemon pod lacks {key}: {tolerations}"
            );
        }
        assert!(
            !pod["metadata"]["labels"]["controller-revision-hash"].is_null(),
            "{pod}"
        );
    }

    // A fourth node gets its pod.
    let agent = Agent::start(&server, "fake-node-4");
    eventually("fake-node-4 registers", NODES_READY, || {
        server
            .kubectl(&k, &["get", "node", "fake-node-4"])
            .success()
            .then_some(())
    });
    server.ok(
        &k,
        &[
            "wait",
            "--for=condition=Ready",
            "node/fake-node-4",
            "--timeout=60s",
        ],
    );
    server.ok(
        &k,
        &["rollout", "status", "ds/agent", "-n", "ds", ROLLOUT_TIMEOUT],
    );
    assert_eq!(
        pods_per_node(&server, &k, "ds", "app=agent"),
        per_node(&[("fake-node-1", 1), ("fake-node-2", 1), ("fake-node-4", 1)]),
    );
    let pods = items(&json(
        &server,
        &k,
        &["get", "pods", "-n", "ds", "-l", "app=agent"],
    ));
    assert!(
        pods.iter()
            .any(|p| p["spec"]["nodeName"] == "fake-node-4" && p["status"]["phase"] == "Running"),
        "no running agent pod on fake-node-4: {pods:?}"
    );
    drop(agent);
    // ... and the pod goes when the node does.
    server.ok(&k, &["delete", "node", "fake-node-4", "--wait=false"]);
    eventually("no agent pod left for fake-node-4", SETTLE, || {
        let counts = pods_per_node(&server, &k, "ds", "app=agent");
        (counts == per_node(&[("fake-node-1", 1), ("fake-node-2", 1)])).then_some(())
    });

    // A NoExecute taint the DaemonSet does not tolerate removes its pod from that node.
    server.ok(
        &k,
        &["taint", "nodes", "fake-node-2", "maintenance=now:NoExecute"],
    );
    eventually("agent pod gone from fake-node-2", SETTLE, || {
        let counts = pods_per_node(&server, &k, "ds", "app=agent");
        (counts == per_node(&[("fake-node-1", 1)])).then_some(())
    });
    server.ok(&k, &["taint", "nodes", "fake-node-2", "maintenance-"]);
    server.ok(
        &k,
        &["rollout", "status", "ds/agent", "-n", "ds", ROLLOUT_TIMEOUT],
    );

    let events = json(
        &server,
        &k,
        &[
            "get",
            "events",
            "-n",
            "ds",
            "--field-selector",
            "involvedObject.kind=DaemonSet,involvedObject.name=agent,reason=SuccessfulCreate",
        ],
    );
    let messages: Vec<String> = items(&events)
        .iter()
        .filter_map(|e| e["message"].as_str().map(str::to_owned))
        .collect();
    assert!(
        !messages.is_empty()
            && messages
                .iter()
                .all(|m| m.starts_with("Created pod: agent-")),
        "SuccessfulCreate events: {messages:?}"
    );

    // Rolling update by ControllerRevision, then back.
    server.ok(
        &k,
        &["set", "image", "ds/agent", "agent=busybox:1.37", "-n", "ds"],
    );
    server.ok(
        &k,
        &["rollout", "status", "ds/agent", "-n", "ds", ROLLOUT_TIMEOUT],
    );
    let pods = items(&json(
        &server,
        &k,
        &["get", "pods", "-n", "ds", "-l", "app=agent"],
    ));
    assert_eq!(pods.len(), 2, "{pods:?}");
    for pod in &pods {
        assert_eq!(
            pod["spec"]["containers"][0]["image"], "busybox:1.37",
            "{pod}"
        );
    }
    let history = server.ok(&k, &["rollout", "history", "ds/agent", "-n", "ds"]);
    assert_eq!(
        revision_numbers(&history),
        ["1", "2"],
        "rollout history:\n{history}"
    );
    server.ok(&k, &["rollout", "undo", "ds/agent", "-n", "ds"]);
    server.ok(
        &k,
        &["rollout", "status", "ds/agent", "-n", "ds", ROLLOUT_TIMEOUT],
    );
    eventually("agent pods back on busybox:1.36", SETTLE, || {
        let pods = items(&json(
            &server,
            &k,
            &["get", "pods", "-n", "ds", "-l", "app=agent"],
        ));
        (pods.len() == 2
            && pods
                .iter()
                .all(|p| p["spec"]["containers"][0]["image"] == "busybox:1.36"))
        .then_some(())
    });

    // Surging: the new pod starts beside the old one, which goes once the new one is available.
    server.ok(
        &k,
        &[
            "patch",
            "ds/agent",
            "-n",
            "ds",
            "--type=merge",
            "-p",
            r#"{"spec":{"updateStrategy":{"rollingUpdate":{"maxSurge":1,"maxUnavailable":0}}}}"#,
        ],
    );
    server.ok(
        &k,
        &["rollout", "status", "ds/agent", "-n", "ds", ROLLOUT_TIMEOUT],
    );
    server.ok(
        &k,
        &["set", "image", "ds/agent", "agent=busybox:1.37", "-n", "ds"],
    );
    server.ok(
        &k,
        &["rollout", "status", "ds/agent", "-n", "ds", ROLLOUT_TIMEOUT],
    );
    eventually("one busybox:1.37 agent pod per node", SETTLE, || {
        let pods = items(&json(
            &server,
            &k,
            &["get", "pods", "-n", "ds", "-l", "app=agent"],
        ));
        (pods.len() == 2
            && pods
                .iter()
                .all(|p| p["spec"]["containers"][0]["image"] == "busybox:1.37"))
        .then_some(())
    });
}

/// What a pod watch saw, in order.
#[derive(Clone, Debug, PartialEq)]
enum Seen {
    Created(String),
    Ready(String),
    Terminating(String),
    Deleted(String),
}

/// Records pod events in a namespace (a kube-rs watch on its own thread and runtime).
struct PodLog {
    seen: Arc<Mutex<Vec<Seen>>>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl PodLog {
    fn start(server: &TestServer, namespace: &str) -> PodLog {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let started = Arc::new(AtomicBool::new(false));
        let kubeconfig = server.kubeconfig_path();
        let namespace = namespace.to_owned();
        let (seen2, stop2, started2) = (seen.clone(), stop.clone(), started.clone());
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            runtime.block_on(async move {
                let config = kube::Config::from_custom_kubeconfig(
                    Kubeconfig::read_from(kubeconfig).expect("kubeconfig"),
                    &KubeConfigOptions::default(),
                )
                .await
                .expect("config");
                let client = kube::Client::try_from(config).expect("client");
                let api: kube::Api<Pod> = kube::Api::namespaced(client, &namespace);
                let mut stream = watcher(api, watcher::Config::default())
                    .default_backoff()
                    .boxed();
                let mut ready: BTreeMap<String, bool> = BTreeMap::new();
                let mut terminating: BTreeMap<String, bool> = BTreeMap::new();
                while !stop2.load(Ordering::SeqCst) {
                    let next =
                        tokio::time::timeout(Duration::from_millis(100), stream.next()).await;
                    let Ok(Some(event)) = next else {
                        continue;
                    };
                    let mut log = seen2.lock().unwrap();
                    match event {
                        Ok(watcher::Event::InitDone) => started2.store(true, Ordering::SeqCst),
                        Ok(watcher::Event::Apply(pod)) | Ok(watcher::Event::InitApply(pod)) => {
                            let name = pod.metadata.name.clone().unwrap_or_default();
                            if !ready.contains_key(&name) {
                                log.push(Seen::Created(name.clone()));
                                ready.insert(name.clone(), false);
                            }
                            let is_ready = pod
                                .status
                                .as_ref()
                                .and_then(|s| s.conditions.as_ref())
                                .is_some_and(|c| {
                                    c.iter().any(|c| c.type_ == "Ready" && c.status == "True")
                                });
                            if is_ready && !ready[&name] {
                                log.push(Seen::Ready(name.clone()));
                                ready.insert(name.clone(), true);
                            }
                            if pod.metadata.deletion_timestamp.is_some()
                                && !terminating.get(&name).copied().unwrap_or(false)
                            {
                                log.push(Seen::Terminating(name.clone()));
                                terminating.insert(name, true);
                            }
                        }
                        Ok(watcher::Event::Delete(pod)) => {
                            let name = pod.metadata.name.clone().unwrap_or_default();
                            if !terminating.get(&name).copied().unwrap_or(false) {
                                log.push(Seen::Terminating(name.clone()));
                            }
                            log.push(Seen::Deleted(name.clone()));
                            ready.remove(&name);
                            terminating.remove(&name);
                        }
                        _ => {}
                    }
                }
            });
        });
        eventually("pod watch started", Duration::from_secs(30), || {
            started.load(Ordering::SeqCst).then_some(())
        });
        PodLog {
            seen,
            stop,
            thread: Some(thread),
        }
    }

    fn events(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    fn position(&self, event: &Seen) -> usize {
        let events = self.events();
        events
            .iter()
            .position(|e| e == event)
            .unwrap_or_else(|| panic!("{event:?} not seen; pod events: {events:?}"))
    }
}

impl Drop for PodLog {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

const WEB_STS: &str = r#"
apiVersion: v1
kind: Service
metadata:
  name: web
  namespace: sts
spec:
  clusterIP: None
  selector: {app: web}
  ports:
  - {name: http, port: 80}
---
apiVersion: apps/v1
kind: StatefulSet
metadata:
  name: web
  namespace: sts
spec:
  serviceName: web
  replicas: 3
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      containers:
      - name: nginx
        image: nginx:1.27
        ports:
        - {name: http, containerPort: 80}
        volumeMounts:
        - {name: www, mountPath: /usr/share/nginx/html}
  volumeClaimTemplates:
  - metadata:
      name: www
    spec:
      accessModes: [ReadWriteOnce]
      resources:
        requests:
          storage: 1Gi
"#;

// Acceptance 5: web-0, web-1, web-2 start in order, each after the previous is Ready, with one
// bound claim each; scaling to 1 removes web-2 then web-1; a rolling update completes.
#[test]
fn statefulset_starts_and_stops_in_order_with_bound_claims() {
    let server = cluster();
    let k = Kubectl::new("1.32");
    let classes = server.ok(&k, &["get", "storageclass"]);
    assert!(
        classes
            .lines()
            .any(|l| l.starts_with("standard (default)") && l.contains("kubelab.dev/local-path")),
        "default class missing:\n{classes}"
    );
    server.create_namespace("sts");
    let log = PodLog::start(&server, "sts");
    server.ok_stdin(&k, &["apply", "-f", "-"], WEB_STS);
    server.ok(
        &k,
        &["rollout", "status", "sts/web", "-n", "sts", ROLLOUT_TIMEOUT],
    );

    let created: Vec<String> = log
        .events()
        .into_iter()
        .filter_map(|e| match e {
            Seen::Created(n) => Some(n),
            _ => None,
        })
        .collect();
    assert_eq!(created, ["web-0", "web-1", "web-2"], "creation order");
    for (before, after) in [("web-0", "web-1"), ("web-1", "web-2")] {
        assert!(
            log.position(&Seen::Ready(before.into())) < log.position(&Seen::Created(after.into())),
            "{after} was created before {before} was Ready: {:?}",
            log.events()
        );
    }

    let pods = items(&json(
        &server,
        &k,
        &["get", "pods", "-n", "sts", "-l", "app=web"],
    ));
    let nodes: BTreeMap<String, String> = pods
        .iter()
        .map(|p| {
            (
                name(p),
                p["spec"]["nodeName"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
            )
        })
        .collect();
    for (i, pod) in pods.iter().enumerate() {
        let pod_name = format!("web-{i}");
        assert_eq!(name(pod), pod_name);
        assert_eq!(pod["spec"]["hostname"], pod_name.as_str(), "{pod}");
        assert_eq!(pod["spec"]["subdomain"], "web", "{pod}");
        let labels = &pod["metadata"]["labels"];
        assert_eq!(
            labels["statefulset.kubernetes.io/pod-name"],
            pod_name.as_str()
        );
        assert_eq!(
            labels["apps.kubernetes.io/pod-index"],
            i.to_string().as_str()
        );
        let volume = pod["spec"]["volumes"]
            .as_array()
            .and_then(|v| v.iter().find(|v| v["name"] == "www"))
            .unwrap_or_else(|| panic!("no www volume in {pod}"));
        assert_eq!(
            volume["persistentVolumeClaim"]["claimName"],
            format!("www-web-{i}").as_str()
        );
    }
    let claims = items(&json(&server, &k, &["get", "pvc", "-n", "sts"]));
    let claim_names: Vec<String> = claims.iter().map(name).collect();
    assert_eq!(claim_names, ["www-web-0", "www-web-1", "www-web-2"]);
    for claim in &claims {
        let status = &claim["status"];
        assert_eq!(status["phase"], "Bound", "{claim}");
        assert_eq!(status["capacity"]["storage"], "1Gi", "{claim}");
        assert_eq!(claim["spec"]["storageClassName"], "standard", "{claim}");
        let annotations = &claim["metadata"]["annotations"];
        assert_eq!(
            annotations["pv.kubernetes.io/bind-completed"], "yes",
            "{claim}"
        );
        let volume_name = claim["spec"]["volumeName"].as_str().unwrap_or_default();
        assert_eq!(
            volume_name,
            format!(
                "pvc-{}",
                claim["metadata"]["uid"].as_str().unwrap_or_default()
            )
        );
        let pv = json(&server, &k, &["get", "pv", volume_name]);
        assert_eq!(pv["status"]["phase"], "Bound", "{pv}");
        assert_eq!(
            pv["spec"]["persistentVolumeReclaimPolicy"], "Delete",
            "{pv}"
        );
        assert_eq!(
            pv["spec"]["claimRef"]["name"], claim["metadata"]["name"],
            "{pv}"
        );
        assert_eq!(
            pv["spec"]["hostPath"]["path"],
            format!("/var/lib/kubelab/storage/{volume_name}").as_str()
        );
        // The volume is pinned to the node its first consumer landed on.
        let pod_name = name(claim).trim_start_matches("www-").to_owned();
        let affinity = pv["spec"]["nodeAffinity"]["required"].to_string();
        assert!(
            affinity.contains(&format!("\"{}\"", nodes[&pod_name])),
            "{volume_name} not pinned to {}: {affinity}",
            nodes[&pod_name]
        );
    }

    let events = server.ok(
        &k,
        &[
            "get",
            "events",
            "-n",
            "sts",
            "--field-selector",
            "involvedObject.kind=StatefulSet,involvedObject.name=web",
        ],
    );
    for message in [
        "create Claim www-web-0 Pod web-0 in StatefulSet web success",
        "create Pod web-2 in StatefulSet web successful",
    ] {
        assert!(events.contains(message), "no event {message:?}:\n{events}");
    }

    // Scale down: web-2 goes first, web-1 only once web-2 is gone; the claims stay.
    server.ok(&k, &["scale", "sts/web", "-n", "sts", "--replicas=1"]);
    server.ok(
        &k,
        &["rollout", "status", "sts/web", "-n", "sts", ROLLOUT_TIMEOUT],
    );
    eventually("only web-0 left", SETTLE, || {
        let pods = items(&json(
            &server,
            &k,
            &["get", "pods", "-n", "sts", "-l", "app=web"],
        ));
        (pods.iter().map(name).collect::<Vec<_>>() == ["web-0"]).then_some(())
    });
    assert!(
        log.position(&Seen::Deleted("web-2".into()))
            < log.position(&Seen::Terminating("web-1".into())),
        "web-1 was deleted before web-2 was gone: {:?}",
        log.events()
    );
    let claims = items(&json(&server, &k, &["get", "pvc", "-n", "sts"]));
    assert_eq!(claims.len(), 3, "claims are retained after scale-down");

    // Rolling update: highest ordinal first, by revision.
    server.ok(&k, &["scale", "sts/web", "-n", "sts", "--replicas=3"]);
    server.ok(
        &k,
        &["rollout", "status", "sts/web", "-n", "sts", ROLLOUT_TIMEOUT],
    );
    let before = log.events().len();
    server.ok(
        &k,
        &["set", "image", "sts/web", "nginx=nginx:1.28", "-n", "sts"],
    );
    server.ok(
        &k,
        &["rollout", "status", "sts/web", "-n", "sts", ROLLOUT_TIMEOUT],
    );
    let replaced: Vec<Seen> = log.events()[before..]
        .iter()
        .filter(|e| matches!(e, Seen::Terminating(_)))
        .cloned()
        .collect();
    assert_eq!(
        replaced,
        [
            Seen::Terminating("web-2".into()),
            Seen::Terminating("web-1".into()),
            Seen::Terminating("web-0".into())
        ]
    );
    let history = server.ok(&k, &["rollout", "history", "sts/web", "-n", "sts"]);
    assert_eq!(
        revision_numbers(&history),
        ["1", "2"],
        "rollout history:\n{history}"
    );
    let sts = json(&server, &k, &["get", "sts", "web", "-n", "sts"]);
    let status = &sts["status"];
    assert_eq!(
        status["currentRevision"], status["updateRevision"],
        "{status}"
    );
    assert_eq!(status["updatedReplicas"], 3, "{status}");
    assert_eq!(status["readyReplicas"], 3, "{status}");
    for pod in items(&json(
        &server,
        &k,
        &["get", "pods", "-n", "sts", "-l", "app=web"],
    )) {
        assert_eq!(pod["spec"]["containers"][0]["image"], "nginx:1.28", "{pod}");
        assert_eq!(
            pod["metadata"]["labels"]["controller-revision-hash"],
            status["updateRevision"]
        );
    }
}

const DB_STS: &str = r#"
apiVersion: apps/v1
kind: StatefulSet
metadata:
  name: db
  namespace: par
spec:
  serviceName: db
  replicas: 3
  podManagementPolicy: Parallel
  updateStrategy:
    type: RollingUpdate
    rollingUpdate: {partition: 2}
  persistentVolumeClaimRetentionPolicy: {whenScaled: Delete, whenDeleted: Retain}
  selector:
    matchLabels: {app: db}
  template:
    metadata:
      labels: {app: db}
    spec:
      containers:
      - name: db
        image: postgres:16
        volumeMounts:
        - {name: data, mountPath: /var/lib/postgresql/data}
  volumeClaimTemplates:
  - metadata:
      name: data
    spec:
      accessModes: [ReadWriteOnce]
      resources:
        requests:
          storage: 10Mi
"#;

/// Pod name -> image of its first container.
fn images(server: &TestServer, k: &Kubectl, ns: &str, selector: &str) -> BTreeMap<String, String> {
    items(&json(server, k, &["get", "pods", "-n", ns, "-l", selector]))
        .iter()
        .map(|p| {
            let image = p["spec"]["containers"][0]["image"]
                .as_str()
                .unwrap_or_default();
            (name(p), image.to_owned())
        })
        .collect()
}

// Parallel pod management, a partitioned rolling update, and claims deleted on scale-down.
#[test]
fn statefulset_parallel_partitioned_update_and_claim_retention() {
    let server = cluster();
    let k = Kubectl::new("1.32");
    server.create_namespace("par");
    server.ok_stdin(&k, &["apply", "-f", "-"], DB_STS);
    server.ok(
        &k,
        &["rollout", "status", "sts/db", "-n", "par", ROLLOUT_TIMEOUT],
    );
    let claims = items(&json(&server, &k, &["get", "pvc", "-n", "par"]));
    assert_eq!(
        claims.iter().map(name).collect::<Vec<_>>(),
        ["data-db-0", "data-db-1", "data-db-2"]
    );

    // Only ordinals at or above the partition move to the new revision.
    server.ok(
        &k,
        &["set", "image", "sts/db", "db=postgres:17", "-n", "par"],
    );
    let out = server.ok(
        &k,
        &["rollout", "status", "sts/db", "-n", "par", ROLLOUT_TIMEOUT],
    );
    assert!(
        out.contains("partitioned roll out complete: 1 new pods have been updated"),
        "{out}"
    );
    let expected: BTreeMap<String, String> = [
        ("db-0", "postgres:16"),
        ("db-1", "postgres:16"),
        ("db-2", "postgres:17"),
    ]
    .iter()
    .map(|(a, b)| (a.to_string(), b.to_string()))
    .collect();
    eventually("only db-2 updated", SETTLE, || {
        (images(&server, &k, "par", "app=db") == expected).then_some(())
    });
    let status = json(&server, &k, &["get", "sts", "db", "-n", "par"])["status"].clone();
    assert_eq!(status["updatedReplicas"], 1, "{status}");
    assert_eq!(status["currentReplicas"], 2, "{status}");
    assert_ne!(
        status["currentRevision"], status["updateRevision"],
        "{status}"
    );

    server.ok(
        &k,
        &[
            "patch",
            "sts/db",
            "-n",
            "par",
            "--type=merge",
            "-p",
            r#"{"spec":{"updateStrategy":{"rollingUpdate":{"partition":0}}}}"#,
        ],
    );
    server.ok(
        &k,
        &["rollout", "status", "sts/db", "-n", "par", ROLLOUT_TIMEOUT],
    );
    let status = eventually("every pod on the update revision", SETTLE, || {
        let status = json(&server, &k, &["get", "sts", "db", "-n", "par"])["status"].clone();
        (status["updatedReplicas"] == 3 && status["currentRevision"] == status["updateRevision"])
            .then_some(status)
    });
    assert_eq!(status["currentReplicas"], 3, "{status}");
    let all = images(&server, &k, "par", "app=db");
    assert!(all.values().all(|i| i == "postgres:17"), "{all:?}");

    // whenScaled: Delete removes the claims of the removed ordinals.
    server.ok(&k, &["scale", "sts/db", "-n", "par", "--replicas=1"]);
    eventually("claims of db-1 and db-2 deleted", SETTLE, || {
        let claims = items(&json(&server, &k, &["get", "pvc", "-n", "par"]));
        (claims.iter().map(name).collect::<Vec<_>>() == ["data-db-0"]).then_some(())
    });
    let pods = images(&server, &k, "par", "app=db");
    assert_eq!(pods.keys().collect::<Vec<_>>(), ["db-0"]);
}

// Claims outside StatefulSets: a pre-created volume binds at once (Immediate), a `standard`
// claim waits for its first consumer, and deleting a claim deletes its Delete-policy volume.
#[test]
fn claims_bind_to_volumes_and_release_them() {
    let server = cluster();
    let k = Kubectl::new("1.32");
    server.create_namespace("vol");
    server.ok_stdin(
        &k,
        &["apply", "-f", "-"],
        r#"
apiVersion: storage.k8s.io/v1
kind: StorageClass
metadata: {name: manual}
provisioner: kubernetes.io/no-provisioner
volumeBindingMode: Immediate
---
apiVersion: v1
kind: PersistentVolume
metadata: {name: manual-small, labels: {size: small}}
spec:
  storageClassName: manual
  capacity: {storage: 1Gi}
  accessModes: [ReadWriteOnce]
  persistentVolumeReclaimPolicy: Retain
  hostPath: {path: /tmp/manual-small}
---
apiVersion: v1
kind: PersistentVolume
metadata: {name: manual-big}
spec:
  storageClassName: manual
  capacity: {storage: 5Gi}
  accessModes: [ReadWriteOnce]
  persistentVolumeReclaimPolicy: Retain
  hostPath: {path: /tmp/manual-big}
---
apiVersion: v1
kind: PersistentVolumeClaim
metadata: {name: manual, namespace: vol}
spec:
  storageClassName: manual
  accessModes: [ReadWriteOnce]
  resources: {requests: {storage: 2Gi}}
---
apiVersion: v1
kind: PersistentVolumeClaim
metadata: {name: lazy, namespace: vol}
spec:
  accessModes: [ReadWriteOnce]
  resources: {requests: {storage: 100Mi}}
"#,
    );
    server.ok(
        &k,
        &[
            "wait",
            "--for=jsonpath={.status.phase}=Bound",
            "pvc/manual",
            "-n",
            "vol",
            "--timeout=60s",
        ],
    );
    let manual = json(&server, &k, &["get", "pvc", "manual", "-n", "vol"]);
    assert_eq!(
        manual["spec"]["volumeName"], "manual-big",
        "the smallest volume that fits"
    );
    assert_eq!(manual["status"]["capacity"]["storage"], "5Gi");
    let lazy = eventually("lazy claim gets the default class", SETTLE, || {
        let claim = json(&server, &k, &["get", "pvc", "lazy", "-n", "vol"]);
        (claim["spec"]["storageClassName"] == "standard").then_some(claim)
    });
    assert_eq!(
        lazy["status"]["phase"], "Pending",
        "waits for its first consumer: {lazy}"
    );
    let events = server.ok(
        &k,
        &[
            "get",
            "events",
            "-n",
            "vol",
            "--field-selector",
            "involvedObject.name=lazy",
        ],
    );
    assert!(events.contains("WaitForFirstConsumer"), "{events}");

    server.ok_stdin(
        &k,
        &["apply", "-f", "-"],
        r#"
apiVersion: v1
kind: Pod
metadata: {name: consumer, namespace: vol}
spec:
  containers:
  - {name: c, image: busybox, command: ["sleep", "infinity"], volumeMounts: [{name: data, mountPath: /data}]}
  volumes:
  - {name: data, persistentVolumeClaim: {claimName: lazy}}
"#,
    );
    server.ok(
        &k,
        &[
            "wait",
            "--for=jsonpath={.status.phase}=Bound",
            "pvc/lazy",
            "-n",
            "vol",
            "--timeout=60s",
        ],
    );
    server.ok(
        &k,
        &[
            "wait",
            "--for=condition=Ready",
            "pod/consumer",
            "-n",
            "vol",
            "--timeout=60s",
        ],
    );
    let lazy = json(&server, &k, &["get", "pvc", "lazy", "-n", "vol"]);
    let node =
        json(&server, &k, &["get", "pod", "consumer", "-n", "vol"])["spec"]["nodeName"].clone();
    assert_eq!(
        lazy["metadata"]["annotations"]["volume.kubernetes.io/selected-node"],
        node
    );
    let volume = lazy["spec"]["volumeName"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let pv = json(&server, &k, &["get", "pv", &volume]);
    assert_eq!(
        pv["metadata"]["annotations"]["pv.kubernetes.io/provisioned-by"],
        "kubelab.dev/local-path"
    );
    assert_eq!(pv["spec"]["storageClassName"], "standard");

    // Deleting the claims: the provisioned (Delete) volume goes, the Retain one is Released.
    server.ok(&k, &["delete", "pod", "consumer", "-n", "vol"]);
    server.ok(&k, &["delete", "pvc", "lazy", "manual", "-n", "vol"]);
    eventually("provisioned volume deleted", SETTLE, || {
        (!server.kubectl(&k, &["get", "pv", &volume]).success()).then_some(())
    });
    server.ok(
        &k,
        &[
            "wait",
            "--for=jsonpath={.status.phase}=Released",
            "pv/manual-big",
            "--timeout=60s",
        ],
    );
    let small = json(&server, &k, &["get", "pv", "manual-small"]);
    assert_eq!(small["status"]["phase"], "Available", "{small}");
}
