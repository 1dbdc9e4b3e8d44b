//! API server benchmark: `cargo bench --bench apiserver`.
//!
//! Starts `kubelab server` (the release build cargo made for this bench, or `KUBELAB_BIN`),
//! creates 10,000 ConfigMaps from 16 concurrent kube-rs clients, then LISTs them, and prints
//! throughput, latency percentiles, list time and server memory beside the targets.
//! Figures only: nothing here fails on a missed target.

#[path = "../tests/common/mod.rs"]
mod common;

use std::time::{Duration, Instant};

use common::TestServer;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, ListParams, PostParams};

const CLIENTS: usize = 16;
const TOTAL: usize = 10_000;
const NAMESPACE: &str = "bench";

fn rss_mib(pid: Option<u32>) -> f64 {
    let Some(pid) = pid else { return f64::NAN };
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map(|kib| kib / 1024.0)
        .unwrap_or(f64::NAN)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` passes nothing useful either way.
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let server = TestServer::start();
    println!(
        "kubelab apiserver benchmark ({})",
        common::kubelab_bin().display()
    );
    let idle = rss_mib(server.pid());
    server.create_namespace(NAMESPACE);
    server.block_on(async {
        let mut clients = Vec::new();
        for _ in 0..CLIENTS {
            clients.push(server.client().await);
        }
        // Warm-up: one request per client opens its connection.
        for client in &clients {
            let api: Api<ConfigMap> = Api::namespaced(client.clone(), NAMESPACE);
            api.list(&ListParams::default().limit(1)).await.expect("warm-up list");
        }

        let started = Instant::now();
        let mut tasks = Vec::new();
        for (c, client) in clients.into_iter().enumerate() {
            tasks.push(tokio::spawn(async move {
                let api: Api<ConfigMap> = Api::namespaced(client, NAMESPACE);
                let mut latencies = Vec::with_capacity(TOTAL / CLIENTS);
                let mut i = c;
                while i < TOTAL {
                    let cm: ConfigMap = serde_json::from_value(serde_json::json!({
                        "apiVersion": "v1", "kind": "ConfigMap",
                        "metadata": {"name": format!("cm-{i:05}"), "labels": {"bench": "true"}},
                        "data": {"index": i.to_string(), "payload": "0123456789abcdef".repeat(8)}
                    }))
                    .unwrap();
                    let t = Instant::now();
                    api.create(&PostParams::default(), &cm).await.expect("create");
                    latencies.push(t.elapsed());
                    i += CLIENTS;
                }
                latencies
            }));
        }
        let mut latencies = Vec::with_capacity(TOTAL);
        for task in tasks {
            latencies.extend(task.await.expect("client task"));
        }
        let elapsed = started.elapsed();
        latencies.sort_unstable();
        let rate = TOTAL as f64 / elapsed.as_secs_f64();
        println!(
            "creates: {TOTAL} by {CLIENTS} clients in {:.2} s = {rate:.0} creates/s  (target >= 2000/s) {}",
            elapsed.as_secs_f64(),
            verdict(rate >= 2000.0)
        );
        let p50 = percentile(&latencies, 0.50);
        let p99 = percentile(&latencies, 0.99);
        println!("create latency: p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms  (target p99 <= 20 ms) {}",
            ms(p50), ms(p99), ms(*latencies.last().unwrap()), verdict(p99 <= Duration::from_millis(20)));

        let api: Api<ConfigMap> = Api::namespaced(server.client().await, NAMESPACE);
        let mut times = Vec::new();
        for _ in 0..3 {
            let t = Instant::now();
            let list = api.list(&ListParams::default()).await.expect("list");
            times.push(t.elapsed());
            assert_eq!(list.items.len(), TOTAL, "LIST returned {} items", list.items.len());
        }
        let best = *times.iter().min().unwrap();
        println!(
            "list of {TOTAL}: {}  (best {:.1} ms; target <= 100 ms) {}",
            times.iter().map(|t| format!("{:.1} ms", ms(*t))).collect::<Vec<_>>().join(", "),
            ms(best),
            verdict(best <= Duration::from_millis(100))
        );
    });
    let after = rss_mib(server.pid());
    println!(
        "server RSS: idle {idle:.1} MiB  (target <= 64 MB) {}",
        verdict(idle <= 64.0)
    );
    println!("server RSS: after {TOTAL} creates and lists {after:.1} MiB");
}

fn verdict(ok: bool) -> &'static str {
    if ok {
        "ok"
    } else {
        "MISSED"
    }
}
