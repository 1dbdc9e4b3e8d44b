//! Node agent benchmark: `cargo bench --bench kubelet`.
//!
//! A fresh `kubelab server`, a private containerd (tests/common/containerd.rs) and one
//! `kubelab agent`; pods of the preloaded busybox image (`sleep`, imagePullPolicy
//! IfNotPresent) created by kube-rs in two phases, as clusterloader2 measures pod startup:
//! a latency phase (50 pods at `KUBELAB_BENCH_RATE` pods/s, 5 by default, so the node fills
//! up to 50 pods) and, once those are deleted, a saturation burst (50 pods at once). Reports
//! pod startup latency (creation request → Running and Ready seen through a watch)
//! p50/p99/max of each phase, the same two phases asked of containerd's CRI directly (the
//! runtime's floor), and the agent's RSS. Figures only: nothing here fails on a missed target
//! (p99 ≤ 1 s, RSS ≤ 24 MB).

#[path = "../tests/common/mod.rs"]
mod common;
#[path = "../tests/common/containerd.rs"]
mod containerd;

use std::collections::HashMap;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::TestServer;
use containerd::Containerd;
use futures::StreamExt;
use k8s_cri::v1 as cri_api;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, PostParams};
use kube::runtime::watcher::{self, watcher, Event};
use kubelab_agent::kubelet::cni::{self, CniConfig};
use kubelab_agent::kubelet::cri::Cri;

const PODS: usize = 50;
const NAMESPACE: &str = "default";
const DEADLINE: Duration = Duration::from_secs(300);

fn rss_mib(pid: u32, field: &str) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map(|kib| kib / 1024.0)
        .unwrap_or(f64::NAN)
}

/// A field of `/proc/PID/smaps_rollup` (PSS: shared pages divided among their users), in MiB.
fn rollup_mib(pid: u32, field: &str) -> f64 {
    let rollup = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).unwrap_or_default();
    rollup
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map(|kib| kib / 1024.0)
        .unwrap_or(f64::NAN)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i]
}

fn ready(p: &Pod) -> bool {
    p.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

struct Agent(std::process::Child);

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The runtime's own floor: PODS sandboxes (CNI included) each with one started container,
/// asked of containerd's CRI directly and all at once, without any kubelet. Per-pod latency
/// (first call → container started), sorted, and the wall time. Everything is removed after.
fn runtime_floor(ctrd: &Containerd, rate: Option<f64>) -> (Vec<Duration>, Duration) {
    let cni = CniConfig {
        conf_dir: ctrd.cni_conf_dir.clone(),
        bridge: ctrd.bridge.clone(),
        ipam_data_dir: ctrd.root().join("floor-ipam"),
    };
    // The agent's podCIDR (the first /24 of --cluster-cidr): the bridge keeps one gateway.
    cni::write_conflist(&cni, "10.231.0.0/24").unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let cri = Cri::new(&ctrd.socket);
        let until = Instant::now() + DEADLINE;
        while !cri.status().await.is_ok_and(|conditions| {
            conditions
                .iter()
                .any(|c| c.r#type == "NetworkReady" && c.status)
        }) {
            assert!(
                Instant::now() < until,
                "containerd's network never got ready"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let logs = ctrd.root().join("floor-logs");
        let start = Instant::now();
        let runs = (0..PODS).map(|i| {
            let cri = cri.clone();
            let logs = logs.clone();
            async move {
                if let Some(rate) = rate {
                    tokio::time::sleep_until(
                        (start + Duration::from_secs_f64(i as f64 / rate)).into(),
                    )
                    .await;
                }
                let began = Instant::now();
                let uid = format!("floor-{i}");
                let config = cri_api::PodSandboxConfig {
                    metadata: Some(cri_api::PodSandboxMetadata {
                        name: uid.clone(),
                        uid: uid.clone(),
                        namespace: "floor".into(),
                        attempt: 0,
                    }),
                    hostname: uid.clone(),
                    log_directory: logs.join(&uid).to_string_lossy().into_owned(),
                    linux: Some(cri_api::LinuxPodSandboxConfig::default()),
                    ..Default::default()
                };
                let sandbox = cri.run_pod_sandbox(config.clone()).await.unwrap();
                let container = cri
                    .create_container(
                        &sandbox,
                        cri_api::ContainerConfig {
                            metadata: Some(cri_api::ContainerMetadata {
                                name: "main".into(),
                                attempt: 0,
                            }),
                            image: Some(cri_api::ImageSpec {
                                image: containerd::BUSYBOX.into(),
                                ..Default::default()
                            }),
                            command: vec!["sleep".into(), "3600".into()],
                            log_path: "main.log".into(),
                            ..Default::default()
                        },
                        config,
                    )
                    .await
                    .unwrap();
                cri.start_container(&container).await.unwrap();
                (began.elapsed(), sandbox)
            }
        });
        let done = futures::future::join_all(runs).await;
        let wall = start.elapsed();
        for (_, sandbox) in &done {
            let _ = cri.stop_pod_sandbox(sandbox).await;
            let _ = cri.remove_pod_sandbox(sandbox).await;
        }
        let mut latencies: Vec<Duration> = done.into_iter().map(|(d, _)| d).collect();
        latencies.sort();
        (latencies, wall)
    })
}

fn main() {
    let ctrd = Containerd::start();
    let rate = bench_rate();
    let (floor_paced, _) = runtime_floor(&ctrd, Some(rate));
    let (floor, floor_wall) = runtime_floor(&ctrd, None);
    let server = TestServer::start_args(&["--cluster-cidr", "10.231.0.0/16"]);
    let tls = server.data_dir().join("tls");
    let read = |f: &str| std::fs::read_to_string(tls.join(f)).unwrap();
    let ca = kubelab_pki::CertPair {
        cert_pem: read("ca.crt"),
        key_pem: read("ca.key"),
    };
    let cert =
        kubelab_pki::issue_client_cert(&ca, "system:node:bench-node", &["system:nodes"]).unwrap();
    let kubeconfig = server.root().join("bench-node.kubeconfig");
    let url = server.url();
    kubelab_pki::write_kubeconfig(
        &kubeconfig,
        &kubelab_pki::KubeconfigSpec {
            cluster_name: "kubelab",
            context_name: "kubelab",
            user_name: "system:node:bench-node",
            server: &url,
            ca_pem: &ca.cert_pem,
            client: &cert,
        },
    )
    .unwrap();
    let log = std::fs::File::create(server.root().join("agent.log")).unwrap();
    let agent = Agent(
        Command::new(common::kubelab_bin())
            .args([
                "agent",
                "--node-name",
                "bench-node",
                "--node-ip",
                "127.0.0.1",
                "--kubelet-port",
                "0",
                "--kubeconfig",
            ])
            .arg(&kubeconfig)
            .arg("--containerd-socket")
            .arg(&ctrd.socket)
            .arg("--root-dir")
            .arg(ctrd.root().join("agent"))
            .arg("--cni-conf-dir")
            .arg(&ctrd.cni_conf_dir)
            .args(["--cni-bridge", &ctrd.bridge])
            .args(["--proxy-mode", "none"])
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start kubelab agent"),
    );
    let pid = agent.0.id();
    let ((paced, paced_total), paced_rss, (latencies, total), idle_rss) = server.block_on(async {
        let client = server.client().await;
        let pods: Api<Pod> = Api::namespaced(client.clone(), NAMESPACE);
        // Wait for the node to be Ready, then for one warm-up pod (not counted).
        let nodes: Api<k8s_openapi::api::core::v1::Node> = Api::all(client.clone());
        let until = Instant::now() + DEADLINE;
        loop {
            let node_ready = nodes
                .get_opt("bench-node")
                .await
                .ok()
                .flatten()
                .is_some_and(|n| {
                    n.status
                        .and_then(|s| s.conditions)
                        .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
                });
            if node_ready {
                break;
            }
            assert!(Instant::now() < until, "the node never got Ready");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let warm = pod("warm-up");
        pods.create(&PostParams::default(), &warm).await.unwrap();
        let until = Instant::now() + DEADLINE;
        while !pods
            .get("warm-up")
            .await
            .map(|p| ready(&p))
            .unwrap_or(false)
        {
            assert!(Instant::now() < until, "the warm-up pod never got Ready");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let idle_rss = rss_mib(pid, "VmRSS:");
        let readied: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
        let watch = {
            let readied = readied.clone();
            let pods = pods.clone();
            tokio::spawn(async move {
                let stream = watcher(pods, watcher::Config::default().labels("bench=kubelet"));
                futures::pin_mut!(stream);
                while let Some(Ok(event)) = stream.next().await {
                    if let Event::Apply(p) | Event::InitApply(p) = event {
                        if ready(&p) {
                            let name = p.metadata.name.clone().unwrap_or_default();
                            readied
                                .lock()
                                .unwrap()
                                .entry(name)
                                .or_insert_with(Instant::now);
                        }
                    }
                }
            })
        };
        tokio::time::sleep(Duration::from_millis(500)).await;
        // Latency phase first, on an agent with only the warm-up pod.
        let paced = run_phase(&pods, &readied, "paced", Some(rate)).await;
        let paced_rss = rss_mib(pid, "VmRSS:");
        // Remove those pods, wait until they are gone, then the saturation phase.
        pods.delete_collection(
            &kube::api::DeleteParams::default(),
            &kube::api::ListParams::default().labels("bench=kubelet"),
        )
        .await
        .unwrap();
        let until = Instant::now() + DEADLINE;
        while !pods
            .list(&kube::api::ListParams::default().labels("bench=kubelet"))
            .await
            .unwrap()
            .items
            .is_empty()
        {
            assert!(Instant::now() < until, "the paced pods were never removed");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        // And until the runtime has released their sandboxes (only the warm-up pod's is left).
        let cri = Cri::new(&ctrd.socket);
        while cri.list_pod_sandboxes(None).await.unwrap().len() > 1 {
            assert!(
                Instant::now() < until,
                "the paced pods' sandboxes were never removed"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let burst = run_phase(&pods, &readied, "burst", None).await;
        watch.abort();
        (paced, paced_rss, burst, idle_rss)
    });
    // KUBELAB_BENCH_SMAPS=FILE keeps the agent's /proc/PID/smaps, for a look at where it goes.
    if let Some(out) = std::env::var_os("KUBELAB_BENCH_SMAPS") {
        let _ = std::fs::copy(format!("/proc/{pid}/smaps"), out);
    }
    // Connections kept after the burst: one per request that was in flight at once, without
    // the agent's bound on them (kubelab_agent::MAX_API_REQUESTS).
    let sockets = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|dir| {
            dir.filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
                .filter(|target| target.to_string_lossy().starts_with("socket:"))
                .count()
        })
        .unwrap_or(0);
    let rss = rss_mib(pid, "VmRSS:");
    let peak = rss_mib(pid, "VmHWM:");
    // RSS counts every page of the multi-call binary the agent has mapped, though they are
    // shared with the server (and every other kubelab process of a node): the kernel maps code
    // in 64 KiB fault-around windows. The private part and PSS say what the agent itself costs.
    let anon = rss_mib(pid, "RssAnon:");
    let file = rss_mib(pid, "RssFile:");
    let pss = rollup_mib(pid, "Pss:");
    let private = rollup_mib(pid, "Private_Clean:") + rollup_mib(pid, "Private_Dirty:");
    let target = |p99: Duration| {
        if p99 <= Duration::from_secs(1) {
            "ok"
        } else {
            "MISSED"
        }
    };
    let figures = |l: &[Duration]| {
        format!(
            "p50 {:.3} s, p99 {:.3} s, max {:.3} s",
            percentile(l, 0.50).as_secs_f64(),
            percentile(l, 0.99).as_secs_f64(),
            l.last().copied().unwrap_or_default().as_secs_f64()
        )
    };
    println!("kubelet benchmark: {PODS} pods of a preloaded image on one agent");
    println!(
        "  latency phase, {rate} pods/s: {}/{PODS} Ready in {:.2} s; {}  (target p99 <= 1 s: {})",
        paced.len(),
        paced_total.as_secs_f64(),
        figures(&paced),
        target(percentile(&paced, 0.99))
    );
    println!(
        "  burst, all at once:        {}/{PODS} Ready in {:.2} s; {}  (target p99 <= 1 s: {})",
        latencies.len(),
        total.as_secs_f64(),
        figures(&latencies),
        target(percentile(&latencies, 0.99))
    );
    println!(
        "  runtime floor (CRI directly, no kubelet, no API server): {rate} pods/s: {}; all at once: {} in {:.2} s",
        figures(&floor_paced),
        figures(&floor),
        floor_wall.as_secs_f64(),
    );
    match agent_layout_mib(&common::kubelab_bin()) {
        Some(mib) => println!(
            "  code layout: the agent's functions in .text.agent, {mib:.1} MiB (build.rs, src/agent.order)"
        ),
        None => println!("  code layout: none (not a release build with LLD, or KUBELAB_NO_LAYOUT)"),
    }
    println!("  agent RSS idle (1 pod): {idle_rss:.1} MiB");
    println!(
        "  agent RSS after the latency phase ({} pods): {paced_rss:.1} MiB",
        PODS + 1
    );
    println!(
        "  agent RSS after the burst ({} pods): {rss:.1} MiB, peak {peak:.1} MiB  (target <= 24 MB: {})",
        PODS + 1,
        if peak <= 24.0 * 1e6 / (1 << 20) as f64 {
            "ok"
        } else {
            "MISSED"
        }
    );
    println!("  agent sockets open after the burst: {sockets}");
    println!(
        "  of which: anonymous {anon:.1} MiB, binary and libraries {file:.1} MiB; private (USS) {private:.1} MiB, PSS {pss:.1} MiB"
    );
}

fn pod(name: &str) -> Pod {
    serde_json::from_value(serde_json::json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name},
        "spec": {
            "terminationGracePeriodSeconds": 0,
            "containers": [{
                "name": "main",
                "image": containerd::BUSYBOX,
                "imagePullPolicy": "IfNotPresent",
                "command": ["sleep", "3600"],
            }],
        },
    }))
    .unwrap()
}

/// Pods per second of the latency phase: `KUBELAB_BENCH_RATE`, 5 by default.
fn bench_rate() -> f64 {
    std::env::var("KUBELAB_BENCH_RATE")
        .ok()
        .and_then(|r| r.parse::<f64>().ok())
        .filter(|r| *r > 0.0)
        .unwrap_or(5.0)
}

/// Creates PODS pods named `<prefix>-<i>`: at `rate` pods per second, or all at once when
/// `rate` is None. Returns each pod's latency (creation request → Ready seen by the watch in
/// `readied`), sorted, and the wall time from the first creation until every pod is Ready.
async fn run_phase(
    pods: &Api<Pod>,
    readied: &Arc<Mutex<HashMap<String, Instant>>>,
    prefix: &str,
    rate: Option<f64>,
) -> (Vec<Duration>, Duration) {
    let created: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
    let start = Instant::now();
    let creates = (0..PODS).map(|i| {
        let pods = pods.clone();
        let created = created.clone();
        let name = format!("{prefix}-{i}");
        async move {
            if let Some(rate) = rate {
                tokio::time::sleep_until((start + Duration::from_secs_f64(i as f64 / rate)).into())
                    .await;
            }
            let mut p = pod(&name);
            p.metadata.labels = Some([("bench".to_string(), "kubelet".to_string())].into());
            created.lock().unwrap().insert(name, Instant::now());
            pods.create(&PostParams::default(), &p).await.unwrap();
        }
    });
    futures::future::join_all(creates).await;
    let until = Instant::now() + DEADLINE;
    let dash = format!("{prefix}-");
    let mine = |readied: &HashMap<String, Instant>| {
        readied.keys().filter(|k| k.starts_with(&dash)).count()
    };
    while mine(&readied.lock().unwrap()) < PODS && Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let total = start.elapsed();
    let created = created.lock().unwrap().clone();
    let readied = readied.lock().unwrap();
    let mut latencies: Vec<Duration> = created
        .iter()
        .filter_map(|(name, at)| Some(readied.get(name)?.saturating_duration_since(*at)))
        .collect();
    latencies.sort();
    (latencies, total)
}

/// Size of the binary's `.text.agent` section (build.rs), in MiB, if it has one.
fn agent_layout_mib(bin: &std::path::Path) -> Option<f64> {
    let out = Command::new("readelf").arg("-SW").arg(bin).output().ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text.lines().find(|l| l.contains(" .text.agent "))?;
    // [Nr] Name Type Address Off Size ...: the size is the third field after the name.
    let mut fields = line
        .split_whitespace()
        .skip_while(|f| *f != ".text.agent")
        .skip(4);
    let size = u64::from_str_radix(fields.next()?, 16).ok()?;
    Some(size as f64 / (1u64 << 20) as f64)
}
