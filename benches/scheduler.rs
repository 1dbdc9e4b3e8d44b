//! Scheduler benchmark: `cargo bench --bench scheduler`.
//!
//! Three runs, each on a fresh `kubelab server` (the release build cargo made for this bench, or
//! `KUBELAB_BIN`):
//!
//! 1. **scheduler alone**: 100 Node objects the bench registers (no simulated nodes, so nothing
//!    else writes pods), 3,000 bare pods with one label set created by 16 concurrent kube-rs
//!    clients: the scheduler's throughput (bindings per second) and how long a pod waits for its
//!    node (creation seen -> binding seen).
//! 2. **pods on simulated nodes**: the same on `--fake-nodes 100`, until every pod is Running.
//! 3. **deployment**: a Deployment of 3,000 replicas on `--fake-nodes 100`; the time until all its
//!    pods are Running (controllers, scheduler and simulated nodes together). Skipped when no
//!    deployment controller creates pods.
//!
//! Each reports the server's memory. Figures only: nothing here fails on a missed target.

#[path = "../tests/common/mod.rs"]
mod common;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::TestServer;
use futures::StreamExt;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::watcher::{self, watcher, Event};
use serde_json::json;

const NODES: usize = 100;
const PODS: usize = 3_000;
const CLIENTS: usize = 16;
const NAMESPACE: &str = "bench";
/// Give up waiting after this long.
const DEADLINE: Duration = Duration::from_secs(400);

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

fn secs(d: Duration) -> f64 {
    d.as_secs_f64()
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

/// When each bench pod was first seen, first seen bound and first seen Running.
#[derive(Default)]
struct Progress {
    created: HashMap<String, Instant>,
    bound: HashMap<String, Instant>,
    running: HashMap<String, Instant>,
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    println!(
        "kubelab scheduler benchmark ({}), {NODES} simulated nodes, {PODS} pods",
        common::kubelab_bin().display()
    );
    // `KUBELAB_BENCH_RUNS=3` (or `1,3`, ...) picks runs; all by default.
    let only = std::env::var("KUBELAB_BENCH_RUNS").ok();
    let wanted = |n: &str| {
        only.as_deref()
            .is_none_or(|o| o.split(',').any(|r| r.trim() == n))
    };
    if wanted("1") {
        println!("-- run 1: scheduler alone: {PODS} bare pods from {CLIENTS} clients, {NODES} Node objects, no simulated nodes");
        run(Scenario::BarePods, false);
    }
    if wanted("2") {
        println!("-- run 2: {PODS} bare pods from {CLIENTS} clients on {NODES} simulated nodes");
        run(Scenario::BarePods, true);
    }
    if wanted("3") {
        println!("-- run 3: a Deployment of {PODS} replicas on {NODES} simulated nodes");
        run(Scenario::Deployment, true);
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Scenario {
    BarePods,
    Deployment,
}

fn run(scenario: Scenario, fake_nodes: bool) {
    let nodes = NODES.to_string();
    let server = if fake_nodes {
        TestServer::start_args(&["--fake-nodes", &nodes])
    } else {
        // Registered nodes never heartbeat: keep the node lifecycle controller from tainting them.
        TestServer::start_args(&["--node-monitor-grace-period", "3600"])
    };
    server.create_namespace(NAMESPACE);
    server.block_on(async {
        let client = server.client().await;
        let simulated = wait_for_nodes(&Api::all(client.clone()), fake_nodes).await;
        let idle_rss = rss_mib(server.pid(), "VmRSS:");
        let progress = watch_progress(Api::namespaced(client.clone(), NAMESPACE)).await;

        let started = Instant::now();
        match scenario {
            Scenario::BarePods => {
                create_pods(&server).await;
                println!(
                    "created {PODS} pods in {:.2} s ({:.0} creates/s)",
                    secs(started.elapsed()),
                    PODS as f64 / secs(started.elapsed())
                );
            }
            Scenario::Deployment => {
                if !create_deployment(&client).await {
                    println!("no deployment controller created pods within 10 s; skipped");
                    return;
                }
            }
        }

        let mut peak_rss: f64 = 0.0;
        loop {
            let (bound, running) = {
                let p = progress.lock().unwrap();
                (p.bound.len(), p.running.len())
            };
            peak_rss = peak_rss.max(rss_mib(server.pid(), "VmRSS:"));
            if (bound >= PODS && (!simulated || running >= PODS)) || started.elapsed() > DEADLINE
            {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        report(scenario, &progress.lock().unwrap(), started, simulated);
        let pods: Api<Pod> = Api::namespaced(client.clone(), NAMESPACE);
        println!("pods per node: {}", spread_summary(&pods).await);
        let high_water = rss_mib(server.pid(), "VmHWM:");
        println!(
            "server RSS: idle {idle_rss:.0} MiB, peak sampled {peak_rss:.0} MiB, high-water {high_water:.0} MiB  (target <= 300 MB) {}",
            verdict(high_water <= 300.0)
        );
    });
}

fn report(scenario: Scenario, p: &Progress, started: Instant, simulated: bool) {
    let mut bound: Vec<Instant> = p.bound.values().copied().collect();
    bound.sort();
    if bound.len() < PODS {
        println!(
            "only {} of {PODS} pods were bound within {DEADLINE:?}",
            bound.len()
        );
    }
    let (Some(first), Some(last)) = (bound.first(), bound.last()) else {
        return;
    };
    let window = secs(last.duration_since(*first)).max(1e-3);
    let rate = bound.len() as f64 / window;
    let mut waits: Vec<Duration> = p
        .bound
        .iter()
        .filter_map(|(name, b)| p.created.get(name).map(|c| b.saturating_duration_since(*c)))
        .collect();
    waits.sort();
    match scenario {
        Scenario::BarePods => println!(
            "scheduling: {} pods bound in {window:.2} s (first to last binding) = {rate:.0} pods/s  (target >= 300/s) {}",
            bound.len(),
            verdict(rate >= 300.0)
        ),
        Scenario::Deployment => {
            let mut created: Vec<Instant> = p.created.values().copied().collect();
            created.sort();
            let creating = created
                .last()
                .map(|l| secs(l.duration_since(started)))
                .unwrap_or(0.0);
            println!(
                "the controllers created the {} pods within {creating:.2} s; bindings kept pace: {} bound within {:.2} s ({rate:.0} pods/s over the binding window)",
                created.len(),
                bound.len(),
                secs(last.duration_since(started))
            );
        }
    }
    println!(
        "wait for a node (pod seen -> binding seen): p50 {:.0} ms, p99 {:.0} ms, max {:.0} ms",
        secs(percentile(&waits, 0.5)) * 1000.0,
        secs(percentile(&waits, 0.99)) * 1000.0,
        secs(waits.last().copied().unwrap_or_default()) * 1000.0
    );
    if !simulated {
        println!("all Running: not measured (no simulated nodes run the pods)");
        return;
    }
    let mut running: Vec<Instant> = p.running.values().copied().collect();
    running.sort();
    match running.last() {
        Some(last) if running.len() >= PODS => {
            let t = secs(last.duration_since(started));
            let what = match scenario {
                Scenario::BarePods => "the first create",
                Scenario::Deployment => "the Deployment was created",
            };
            println!(
                "all {PODS} pods Running {t:.2} s after {what}  (target <= 20 s) {}",
                verdict(t <= 20.0)
            );
        }
        _ => println!(
            "only {} of {PODS} pods Running within {DEADLINE:?}  MISSED",
            running.len()
        ),
    }
}

/// Waits for the simulated nodes; registers stand-ins when the server runs none. True when the
/// nodes are simulated (they run pods).
async fn wait_for_nodes(nodes: &Api<Node>, fake_nodes: bool) -> bool {
    if !fake_nodes {
        register_nodes(nodes, 0).await;
        return false;
    }
    let t = Instant::now();
    loop {
        let n = nodes
            .list(&ListParams::default())
            .await
            .expect("list nodes")
            .items
            .len();
        if n >= NODES {
            println!(
                "{NODES} simulated nodes registered in {:.1} s",
                secs(t.elapsed())
            );
            return true;
        }
        if t.elapsed() > Duration::from_secs(20) {
            println!("the server registered {n} simulated nodes; registering {NODES} Node objects");
            register_nodes(nodes, n).await;
            return false;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Watches the bench pods, noting when each is first seen, bound and Running.
async fn watch_progress(pods: Api<Pod>) -> Arc<Mutex<Progress>> {
    let progress = Arc::new(Mutex::new(Progress::default()));
    let shared = progress.clone();
    let (synced_tx, synced_rx) = tokio::sync::oneshot::channel();
    tokio::spawn(async move {
        let mut synced = Some(synced_tx);
        let stream = watcher(pods, watcher::Config::default().labels("app=bench"));
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
            let mut p = shared.lock().unwrap();
            p.created.entry(name.clone()).or_insert(now);
            if pod
                .spec
                .as_ref()
                .and_then(|s| s.node_name.as_ref())
                .is_some()
            {
                p.bound.entry(name.clone()).or_insert(now);
            }
            if pod.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running") {
                p.running.entry(name).or_insert(now);
            }
        }
    });
    let _ = synced_rx.await;
    progress
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

/// Creates the Deployment; true when a controller starts creating its pods within 10 s.
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

/// "min M, max N over K nodes".
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
