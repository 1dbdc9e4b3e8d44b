//! Ingress benchmark: `cargo bench --bench ingress` (needs a Docker engine and `wrk`,
//! `apt-get install wrk`).
//!
//! On a 3-node cluster of the release build with the `ingress` addon and one busybox httpd
//! backend pod (a 13-byte page), wrk from the host, 50 connections, 2 threads, 10 s each:
//!
//! 1. direct to the pod (a host route to the pod's address via its node, removed afterwards);
//! 2. through the ingress controller on the server node's address, port 80;
//! 3. through the ingress controller on the port published on 127.0.0.1 (Docker's proxy too).
//!
//! Throughput and p50/p99 latency of each, and the time from `kubectl apply` of a new Ingress
//! to its first 200 (five times). Figures only: nothing here fails on a number.

#[path = "../tests/common/mod.rs"]
mod common;
#[path = "../tests/common/docker.rs"]
mod docker_support;

use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use common::{eventually, run_with_deadline, Kubectl, Output};
use docker_support::{build_test_image, engine_with_node_image, kubelab};

const IMAGE: &str = "kubelab-test/busybox:1";
const NAME: &str = "kl-ingress-bench";
const WAIT: Duration = Duration::from_secs(300);

struct Bench {
    _dir: tempfile::TempDir,
    kubeconfig: PathBuf,
    route: Option<String>,
}

impl Drop for Bench {
    fn drop(&mut self) {
        if let Some(route) = &self.route {
            let _ = Command::new("ip").args(["route", "del", route]).status();
        }
        let _ = kubelab(&self.kubeconfig, &["down", NAME], Duration::from_secs(120));
    }
}

impl Bench {
    fn kubectl(&self, args: &[&str], stdin: Option<&str>) -> Output {
        let mut cmd = Command::new(&Kubectl::new("1.32").path);
        cmd.args(args).env("KUBECONFIG", &self.kubeconfig);
        let out = run_with_deadline(cmd, stdin, Duration::from_secs(240));
        assert!(
            out.success(),
            "kubectl {args:?}: {}{}",
            out.stdout,
            out.stderr
        );
        out
    }
}

fn ok(out: Output, what: &str) -> Output {
    assert!(out.success(), "{what}: {}{}", out.stdout, out.stderr);
    out
}

/// The status code of `GET /` with `Host: host` at `address`, if any.
fn status(address: &str, host: &str) -> Option<u16> {
    let mut stream = std::net::TcpStream::connect(address).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    write!(
        stream,
        "GET / HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut head = [0u8; 12];
    stream.read_exact(&mut head).ok()?;
    std::str::from_utf8(&head[9..12]).ok()?.parse().ok()
}

struct Figures {
    requests_per_second: f64,
    p50: String,
    p99: String,
    errors: String,
}

fn wrk(url: &str, host: Option<&str>) -> Figures {
    let mut cmd = Command::new("wrk");
    cmd.args(["-t2", "-c50", "-d10s", "--latency"]);
    if let Some(host) = host {
        cmd.args(["-H", &format!("Host: {host}")]);
    }
    cmd.arg(url);
    let out = ok(run_with_deadline(cmd, None, Duration::from_secs(60)), "wrk");
    let field = |prefix: &str| {
        out.stdout
            .lines()
            .map(str::trim)
            .find(|l| l.starts_with(prefix))
            .and_then(|l| l.split_whitespace().last())
            .unwrap_or("-")
            .to_owned()
    };
    let errors = out
        .stdout
        .lines()
        .filter(|l| l.contains("Non-2xx") || l.contains("Socket errors"))
        .map(str::trim)
        .collect::<Vec<_>>()
        .join("; ");
    Figures {
        requests_per_second: field("Requests/sec:").parse().unwrap_or(0.0),
        p50: field("50%"),
        p99: field("99%"),
        errors: if errors.is_empty() {
            "none".into()
        } else {
            errors
        },
    }
}

fn main() {
    if Command::new("wrk").arg("--version").output().is_err() {
        eprintln!("this benchmark needs wrk: apt-get install wrk");
        std::process::exit(1);
    }
    let dir = tempfile::tempdir().unwrap();
    let mut bench = Bench {
        kubeconfig: dir.path().join("config"),
        _dir: dir,
        route: None,
    };
    if let Err(e) = engine_with_node_image(&bench.kubeconfig, None) {
        eprintln!("{e}");
        std::process::exit(1);
    }
    build_test_image(IMAGE).expect("the busybox test image");
    let http = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let port = format!("127.0.0.1:{http}:80");
    let _ = kubelab(&bench.kubeconfig, &["down", NAME], WAIT);
    ok(
        kubelab(
            &bench.kubeconfig,
            &[
                "up", "--name", NAME, "--nodes", "3", "--wait", "180s", "--port", &port,
            ],
            WAIT,
        ),
        "kubelab up",
    );
    ok(
        kubelab(
            &bench.kubeconfig,
            &["load", "image", IMAGE, "--name", NAME],
            WAIT,
        ),
        "kubelab load",
    );
    ok(
        kubelab(
            &bench.kubeconfig,
            &["addons", "enable", "ingress", "--name", NAME],
            WAIT,
        ),
        "addons enable ingress",
    );
    bench.kubectl(
        &[
            "-n",
            "ingress-nginx",
            "rollout",
            "status",
            "deployment/ingress-nginx-controller",
            "--timeout=240s",
        ],
        None,
    );
    let backend = format!(
        r#"apiVersion: apps/v1
kind: Deployment
metadata: {{name: web}}
spec:
  replicas: 1
  selector: {{matchLabels: {{app: web}}}}
  template:
    metadata: {{labels: {{app: web}}}}
    spec:
      containers:
      - name: httpd
        image: {IMAGE}
        command: [sh, -c, "mkdir -p /www && echo hello ingress > /www/index.html && exec httpd -f -p 8080 -h /www"]
        readinessProbe: {{tcpSocket: {{port: 8080}}, periodSeconds: 1}}
---
apiVersion: v1
kind: Service
metadata: {{name: web}}
spec:
  selector: {{app: web}}
  ports: [{{port: 80, targetPort: 8080}}]
"#
    );
    bench.kubectl(&["apply", "-f", "-"], Some(&backend));
    bench.kubectl(
        &["rollout", "status", "deployment/web", "--timeout=240s"],
        None,
    );
    let ingress = |host: &str, name: &str| {
        format!(
            "apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata: {{name: {name}}}\nspec:\n  rules:\n  - host: {host}\n    http:\n      paths:\n      - {{path: /, pathType: Prefix, backend: {{service: {{name: web, port: {{number: 80}}}}}}}}\n"
        )
    };
    let mapped = format!("127.0.0.1:{http}");

    // Apply → first 200, five new Ingresses.
    let mut apply_to_200 = Vec::new();
    for i in 0..5 {
        let host = format!("t{i}.bench");
        let started = Instant::now();
        bench.kubectl(
            &["apply", "-f", "-"],
            Some(&ingress(&host, &format!("t{i}"))),
        );
        eventually("the new Ingress answers 200", WAIT, || {
            (status(&mapped, &host) == Some(200)).then_some(())
        });
        apply_to_200.push(started.elapsed().as_secs_f64() * 1000.0);
    }
    bench.kubectl(&["apply", "-f", "-"], Some(&ingress("bench.test", "bench")));
    eventually("bench.test answers", WAIT, || {
        (status(&mapped, "bench.test") == Some(200)).then_some(())
    });

    let pod = bench
        .kubectl(
            &[
                "get",
                "pods",
                "-l",
                "app=web",
                "-o",
                "jsonpath={.items[0].status.podIP} {.items[0].status.hostIP}",
            ],
            None,
        )
        .stdout;
    let (pod_ip, node_ip) = pod.trim().split_once(' ').expect("pod and node address");
    let server_ip = bench
        .kubectl(
            &[
                "get",
                "node",
                &format!("{NAME}-server-0"),
                "-o",
                "jsonpath={.status.addresses[?(@.type==\"InternalIP\")].address}",
            ],
            None,
        )
        .stdout;
    let route = format!("{pod_ip}/32");
    let added = Command::new("ip")
        .args(["route", "replace", &route, "via", node_ip])
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    if added {
        bench.route = Some(route);
    }

    let direct = added.then(|| wrk(&format!("http://{pod_ip}:8080/"), None));
    let via_node = wrk(&format!("http://{}/", server_ip.trim()), Some("bench.test"));
    let via_mapped = wrk(&format!("http://{mapped}/"), Some("bench.test"));

    println!("ingress benchmark (release build, wrk -t2 -c50 -d10s, busybox httpd backend)");
    println!(
        "{:<44} {:>10} {:>10} {:>10}  errors",
        "target", "req/s", "p50", "p99"
    );
    let row = |name: &str, f: &Figures| {
        println!(
            "{:<44} {:>10.0} {:>10} {:>10}  {}",
            name, f.requests_per_second, f.p50, f.p99, f.errors
        );
    };
    match &direct {
        Some(f) => row("direct to the pod (host route via its node)", f),
        None => println!("direct to the pod: no host route (needs root)"),
    }
    row("ingress, server node address :80", &via_node);
    row("ingress, published 127.0.0.1 port", &via_mapped);
    apply_to_200.sort_by(|a, b| a.total_cmp(b));
    println!(
        "kubectl apply of an Ingress → first 200: median {:.0} ms, max {:.0} ms ({:?})",
        apply_to_200[apply_to_200.len() / 2],
        apply_to_200[apply_to_200.len() - 1],
        apply_to_200
            .iter()
            .map(|m| m.round() as u64)
            .collect::<Vec<_>>()
    );
}
