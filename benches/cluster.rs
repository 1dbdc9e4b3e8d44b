//! `kubelab up` benchmark: `cargo bench --bench cluster` (needs a Docker engine).
//!
//! With the release build cargo made for this bench (or `KUBELAB_BIN`), side by side:
//!
//! 1. the floor: `docker run -d` of 1 and of 3 bare containers from the node image (its
//!    entrypoint replaced by `sleep`), in parallel, until the engine reports them started;
//! 2. `kubelab up` of 1 and of 3 nodes until every node is Ready (what `up` waits for), the
//!    node image already built;
//! 3. the memory of the 3-node cluster: the sum over its node containers (cgroup usage less
//!    inactive page cache, as `docker stats` counts it) once its nodes are Ready and idle;
//! 4. the node image size.
//!
//! Figures only: nothing here fails on a missed target (1 node ≤ 3 s, 3 nodes ≤ 4 s, cluster
//! memory ≤ 400 MB).

#[path = "../tests/common/mod.rs"]
mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::{kubelab_bin, run_with_deadline, Output};

fn docker(args: &[&str]) -> Output {
    let mut cmd = Command::new("docker");
    cmd.args(args);
    run_with_deadline(cmd, None, Duration::from_secs(120))
}

fn kubelab(kubeconfig: &std::path::Path, args: &[&str]) -> Output {
    let mut cmd = Command::new(kubelab_bin());
    cmd.args(args).env("KUBECONFIG", kubeconfig);
    run_with_deadline(cmd, None, Duration::from_secs(600))
}

fn check(out: Output, what: &str) -> Output {
    assert!(
        out.success(),
        "{what} failed:\n{}\n{}",
        out.stdout,
        out.stderr
    );
    out
}

/// Seconds to `docker run -d` `n` containers from `image` in parallel.
fn bare_containers(image: &str, n: usize) -> f64 {
    let names: Vec<String> = (0..n).map(|i| format!("kubelab-bench-bare-{i}")).collect();
    for name in &names {
        let _ = docker(&["rm", "-f", name]);
    }
    let started = Instant::now();
    let runs: Vec<_> = names
        .iter()
        .map(|name| {
            let (name, image) = (name.clone(), image.to_owned());
            std::thread::spawn(move || {
                docker(&[
                    "run",
                    "-d",
                    "--name",
                    &name,
                    "--entrypoint",
                    "sleep",
                    &image,
                    "infinity",
                ])
            })
        })
        .collect();
    for run in runs {
        check(run.join().unwrap(), "docker run");
    }
    let elapsed = started.elapsed().as_secs_f64();
    for name in &names {
        let _ = docker(&["rm", "-f", name]);
    }
    elapsed
}

/// Seconds `kubelab up --nodes n` takes until every node is Ready.
fn up(kubeconfig: &std::path::Path, name: &str, n: usize) -> f64 {
    let _ = kubelab(kubeconfig, &["down", name]);
    let nodes = n.to_string();
    let started = Instant::now();
    check(
        kubelab(kubeconfig, &["up", "--name", name, "--nodes", &nodes]),
        "kubelab up",
    );
    started.elapsed().as_secs_f64()
}

/// Bytes of memory the cluster's node containers use.
fn cluster_memory(name: &str) -> u64 {
    let filter = format!("label=dev.kubelab.cluster={name}");
    let ids = check(docker(&["ps", "-q", "--filter", &filter]), "docker ps").stdout;
    let mut total = 0;
    for id in ids.lines() {
        let out = check(
            docker(&["stats", "--no-stream", "--format", "{{.MemUsage}}", id]),
            "docker stats",
        );
        let used = out.stdout.split('/').next().unwrap_or("").trim().to_owned();
        total += parse_size(&used);
    }
    total
}

/// "60.04MiB" → bytes.
fn parse_size(text: &str) -> u64 {
    let split = text
        .find(|c: char| c.is_ascii_alphabetic())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let value: f64 = number.trim().parse().unwrap_or(0.0);
    let factor = match unit {
        "B" => 1.0,
        "KiB" => 1024.0,
        "MiB" => 1024.0 * 1024.0,
        "GiB" => 1024.0 * 1024.0 * 1024.0,
        "kB" => 1e3,
        "MB" => 1e6,
        "GB" => 1e9,
        _ => 0.0,
    };
    (value * factor) as u64
}

fn main() {
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("config");
    let out = kubelab(&kubeconfig, &["list"]);
    assert!(out.success(), "a Docker engine is needed: {}", out.stderr);
    check(
        kubelab(&kubeconfig, &["node-image", "build"]),
        "kubelab node-image build",
    );
    let image = format!("kubelab/node:v{}", env!("CARGO_PKG_VERSION"));
    let size = check(
        docker(&["image", "inspect", "--format", "{{.Size}}", &image]),
        "docker image inspect",
    )
    .stdout
    .trim()
    .parse::<u64>()
    .unwrap_or(0);

    let bare_1 = bare_containers(&image, 1);
    let up_1 = up(&kubeconfig, "bench-1", 1);
    let _ = kubelab(&kubeconfig, &["down", "bench-1"]);
    let bare_3 = bare_containers(&image, 3);
    let up_3 = up(&kubeconfig, "bench-3", 3);
    // Idle: the background system image import has finished on every node.
    let system = format!("kubelab.local/system:v{}", env!("CARGO_PKG_VERSION"));
    for node in ["bench-3-server-0", "bench-3-agent-0", "bench-3-agent-1"] {
        common::eventually(
            "the system image imported",
            Duration::from_secs(300),
            || {
                let out = docker(&["exec", node, "ctr", "-n", "k8s.io", "images", "ls", "-q"]);
                out.stdout.lines().any(|l| l == system).then_some(())
            },
        );
    }
    let memory = cluster_memory("bench-3");
    let _ = kubelab(&kubeconfig, &["down", "bench-3"]);

    println!();
    println!("| measure | kubelab | floor (bare docker run) | target |");
    println!("|---|---|---|---|");
    println!("| 1 node: up to Ready | {up_1:.1} s | {bare_1:.2} s | ≤ 3 s |");
    println!("| 3 nodes: up to Ready | {up_3:.1} s | {bare_3:.2} s | ≤ 4 s |");
    println!(
        "| 3-node cluster memory (sum over node containers) | {:.0} MB | | ≤ 400 MB |",
        memory as f64 / 1e6
    );
    println!("| node image size | {:.0} MB | | |", size as f64 / 1e6);
}
