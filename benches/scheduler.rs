//! Scheduler benchmark: `cargo bench --bench scheduler`.
//!
//! Starts `kubelab server --fake-nodes 100` (the release build cargo made for this bench, or
//! `KUBELAB_BIN`), creates a Deployment of 3,000 replicas (or, when no deployment controller
//! creates its pods, 3,000 bare pods with the same labels from 16 kube-rs clients), and prints
//! scheduling throughput, the time until every pod is bound and Running, and server memory, beside
//! the targets. When the server registers no simulated nodes, the bench registers 100 Node objects
//! itself (nothing runs pods on them then, so "all Running" is reported as not measured).
//! Figures only: nothing here fails on a missed target.

#[path = "../tests/common/mod.rs"]
mod common;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::TestServer;
use futures::StreamExt;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::watcher::{self, watcher, Event};
use serde_json::json;

const NODES: usize = 100;
const PODS: usize = 3_000;
const CLIENTS: usize = 16;
const NAMESPACE: &str = "bench";
/// Give up waiting after this long.
const DEADLINE: Duration = Duration::from_secs(300);

fn rss_mib(pid: Option<u32>, field: &str) -> f64 {
    let Some(pid) = pid else { return f64::NAN };
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map(|kib| kib / 1024.0)
        .unwrap_or(f64::NAN)
}

fn verdict(ok: bool) -> &'static str {
    if ok {
        "ok"
    } else {
        "MISSED"
    }
}

/// When each pod was first seen bound and first seen Running.
#[derive(Default)]
struct Progress {
    bound: HashMap<String, Instant>,
    running: HashMap<String, Instant>,
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let server = TestServer::start_args(&["--fake-nodes", &NODES.to_string()]);
    println!(
        "kubelab scheduler benchmark ({})",
        common::kubelab_bin().display()
    );
    server.create_namespace(NAMESPACE);
    server.block_on(async {
        let client = server.client().await;
        let nodes: Api<Node> = Api::all(client.clone());

        // Simulated nodes, or stand-ins.
        let mut simulated = true;
        let wait_nodes = Instant::now();
        loop {
            let n = nodes.list(&ListParams::default()).await.expect("list nodes").items.len();
            if n >= NODES {
                break;
            }
            if wait_nodes.elapsed() > Duration::from_secs(20) {
                simulated = false;
                println!("the server registered {n} simulated nodes; registering {NODES} Node objects");
                register_nodes(&nodes, n).await;
                break;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        if simulated {
            println!("{NODES} simulated nodes registered in {:.1} s", wait_nodes.elapsed().as_secs_f64());
        }
        let idle_rss = rss_mib(server.pid(), "VmRSS:");

        // Watch the bench pods: when each is bound, when it runs.
        let progress = Arc::new(Mutex::new(Progress::default()));
        let pods: Api<Pod> = Api::namespaced(client.clone(), NAMESPACE);
        let watch_progress = progress.clone();
        let watch_api = pods.clone();
        let (synced_tx, synced_rx) = tokio::sync::oneshot::channel();
        tokio::spawn(async move {
            let mut synced = Some(synced_tx);
            let stream = watcher(watch_api, watcher::Config::default().labels("app=bench"));
            let mut stream = std::pin::pin!(stream);
            while let Some(ev) = stream.next().await {
                let pod = match ev {
                    Ok(Event::Apply(p)) | Ok(Event::InitApply(p)) => p,
                    Ok(Event::InitDone) => {
                        if let Some(tx) = synced.take() {
                            let _ = tx.send(());
                        }
                        continue;
                    }
                    _ => continue,
                };
                let now = Instant::now();
                let name = pod.metadata.name.clone().unwrap_or_default();
                let mut p = watch_progress.lock().unwrap();
                if pod.spec.as_ref().and_then(|s| s.node_name.as_ref()).is_some() {
                    p.bound.entry(name.clone()).or_insert(now);
                }
                if pod.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running") {
                    p.running.entry(name).or_insert(now);
                }
            }
        });
        let _ = synced_rx.await;

        let started = Instant::now();
        let by_deployment = create_deployment(&client).await;
        let created_at = if by_deployment {
            println!("Deployment bench created with {PODS} replicas");
            started
        } else {
            println!("no deployment controller created pods; creating {PODS} bare pods (app=bench) from {CLIENTS} clients");
            let t = Instant::now();
            create_pods(&server).await;
            println!("created {PODS} pods in {:.2} s ({:.0} creates/s)", t.elapsed().as_secs_f64(),
                PODS as f64 / t.elapsed().as_secs_f64());
            t
        };

        // Wait for all bound, then (with simulated nodes) all Running.
        let mut peak_rss: f64 = 0.0;
        loop {
            let (bound, running) = {
                let p = progress.lock().unwrap();
                (p.bound.len(), p.running.len())
            };
            peak_rss = peak_rss.max(rss_mib(server.pid(), "VmRSS:"));
            let done = bound >= PODS && (!simulated || running >= PODS);
            if done || started.elapsed() > DEADLINE {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let p = progress.lock().unwrap();
        let mut bound_times: Vec<Instant> = p.bound.values().copied().collect();
        bound_times.sort();
        if bound_times.len() < PODS {
            println!("only {} of {PODS} pods were bound within {DEADLINE:?}", bound_times.len());
        }
        if let (Some(first), Some(last)) = (bound_times.first(), bound_times.last()) {
            let all_bound = last.duration_since(created_at);
            let window = last.duration_since(*first).as_secs_f64().max(1e-3);
            let rate = bound_times.len() as f64 / window;
            println!(
                "scheduling: {} pods bound in {:.2} s (first to last binding) = {rate:.0} pods/s  (target >= 300/s) {}",
                bound_times.len(), window, verdict(rate >= 300.0)
            );
            println!(
                "all {} pods bound {:.2} s after the first create; {:.0} pods/s end to end",
                bound_times.len(),
                all_bound.as_secs_f64(),
                bound_times.len() as f64 / all_bound.as_secs_f64()
            );
        }
        if simulated {
            let mut running: Vec<Instant> = p.running.values().copied().collect();
            running.sort();
            match running.last() {
                Some(last) if running.len() >= PODS => {
                    let t = last.duration_since(started).as_secs_f64();
                    println!("all {PODS} pods Running {t:.2} s after the {} was created  (target <= 20 s) {}",
                        if by_deployment { "Deployment" } else { "first pod" }, verdict(t <= 20.0));
                }
                _ => println!("only {} of {PODS} pods Running within {DEADLINE:?}  MISSED", running.len()),
            }
        } else {
            println!("all Running: not measured (no simulated nodes run the pods)");
        }
        let spread = spread_summary(&pods).await;
        println!("pods per node: {spread}");
        println!(
            "server RSS: idle {idle_rss:.0} MiB, peak sampled {peak_rss:.0} MiB, high-water {:.0} MiB  (target <= 300 MB) {}",
            rss_mib(server.pid(), "VmHWM:"),
            verdict(rss_mib(server.pid(), "VmHWM:") <= 300.0)
        );
    });
}

/// 100 Ready nodes of 4 cpu / 8Gi / 110 pods, like the simulated ones.
async fn register_nodes(nodes: &Api<Node>, existing: usize) {
    let now = k8s_openapi::jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string();
    for i in existing..NODES {
        let name = format!("bench-node-{}", i + 1);
        let node: Node = serde_json::from_value(json!({
            "apiVersion": "v1", "kind": "Node",
            "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name}}
        }))
        .unwrap();
        nodes
            .create(&PostParams::default(), &node)
            .await
            .expect("create node");
        let resources = json!({"cpu": "4", "memory": "8Gi", "pods": "110"});
        let status = json!({"status": {"capacity": resources, "allocatable": resources,
            "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady",
                "message": "bench", "lastHeartbeatTime": now, "lastTransitionTime": now}]}});
        nodes
            .patch_status(&name, &PatchParams::default(), &Patch::Merge(&status))
            .await
            .expect("node status");
    }
}

/// Creates the Deployment; true when a controller starts creating its pods within 10 s (else the
/// Deployment is removed again).
async fn create_deployment(client: &kube::Client) -> bool {
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), NAMESPACE);
    let deployment: Deployment = serde_json::from_value(json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "bench"},
        "spec": {
            "replicas": PODS,
            "selector": {"matchLabels": {"app": "bench"}},
            "template": {
                "metadata": {"labels": {"app": "bench"}},
                "spec": {"containers": [{"name": "main", "image": "busybox"}]}
            }
        }
    }))
    .unwrap();
    deployments
        .create(&PostParams::default(), &deployment)
        .await
        .expect("create deployment");
    let pods: Api<Pod> = Api::namespaced(client.clone(), NAMESPACE);
    let t = Instant::now();
    while t.elapsed() < Duration::from_secs(10) {
        let some = pods
            .list(&ListParams::default().labels("app=bench").limit(1))
            .await
            .expect("list pods");
        if !some.items.is_empty() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let _ = deployments.delete("bench", &DeleteParams::default()).await;
    false
}

async fn create_pods(server: &TestServer) {
    let mut tasks = Vec::new();
    for c in 0..CLIENTS {
        let client = server.client().await;
        tasks.push(tokio::spawn(async move {
            let api: Api<Pod> = Api::namespaced(client, NAMESPACE);
            let mut i = c;
            while i < PODS {
                let pod: Pod = serde_json::from_value(json!({
                    "apiVersion": "v1", "kind": "Pod",
                    "metadata": {"name": format!("bench-{i:04}"), "labels": {"app": "bench"}},
                    "spec": {"containers": [{"name": "main", "image": "busybox"}]}
                }))
                .unwrap();
                api.create(&PostParams::default(), &pod)
                    .await
                    .expect("create pod");
                i += CLIENTS;
            }
        }));
    }
    for t in tasks {
        t.await.expect("creator task");
    }
}

/// "min/max over N nodes".
async fn spread_summary(pods: &Api<Pod>) -> String {
    let list = pods
        .list(&ListParams::default().labels("app=bench"))
        .await
        .expect("list pods");
    let mut per_node: HashMap<String, usize> = HashMap::new();
    for p in list.items {
        if let Some(n) = p.spec.and_then(|s| s.node_name) {
            *per_node.entry(n).or_default() += 1;
        }
    }
    let min = per_node.values().min().copied().unwrap_or(0);
    let max = per_node.values().max().copied().unwrap_or(0);
    format!("min {min}, max {max} over {} nodes", per_node.len())
}
