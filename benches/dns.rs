//! Cluster DNS benchmark: `cargo bench --bench dns` (needs a Docker engine and the service
//! proxy routing 10.96.0.10).
//!
//! On a three-node `kubelab up` cluster (the `coredns` addon's two DNS pods, release build of
//! this tree or `KUBELAB_BIN`), a client process in a pod's network namespace (this bench's own
//! executable, copied into the pod's node — not under its /tmp, a tmpfs `docker cp` does not
//! see — and started there with `nsenter --net` into the pod)
//! asks `web.default.svc.cluster.local A` of 10.96.0.10 over UDP, as a pod's resolver does
//! once its search path expanded the name: one client asking back to back (latency), then 8
//! in parallel (throughput). Prints queries per second and the latency percentiles.
//!
//! Figures only: nothing fails on a missed target (p99 ≤ 5 ms). `KUBELAB_NODE_IMAGE` names a
//! node image of its own to build and use (default: the shared default image).

#[path = "../tests/common/mod.rs"]
mod common;

use std::net::{SocketAddr, UdpSocket};
use std::process::Command;
use std::time::{Duration, Instant};

use common::{kubelab_bin, run_with_deadline, Kubectl, Output};
use hickory_proto::op::{Message, Query, ResponseCode};
use hickory_proto::rr::{Name, RecordType};

const CLUSTER: &str = "kl-dns-bench";
const NAME: &str = "web.default.svc.cluster.local.";
const SERVER: &str = "10.96.0.10:53";
const CLIENT_ENV: &str = "KUBELAB_DNS_BENCH_CLIENT";
const MARKER: &str = "kubelab-dns-bench-client";

fn main() {
    if std::env::var_os(CLIENT_ENV).is_some() {
        let args: Vec<String> = std::env::args().collect();
        let clients: usize = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(1);
        let seconds: u64 = args.get(2).and_then(|a| a.parse().ok()).unwrap_or(5);
        client(clients, Duration::from_secs(seconds));
        return;
    }
    let lab = Lab::up();
    let results: Vec<String> = [(1, 5), (8, 5)]
        .iter()
        .map(|(clients, seconds)| lab.run_client(*clients, *seconds))
        .collect();
    println!("cluster DNS, {NAME} A via {SERVER} from a pod (UDP):");
    for line in results {
        println!("  {line}");
    }
}

/// In the pod's network namespace: `clients` threads asking back to back for `duration`;
/// prints one summary line.
fn client(clients: usize, duration: Duration) {
    let server: SocketAddr = SERVER.parse().expect("server address");
    let mut query = Message::query();
    query.metadata.recursion_desired = true;
    query.add_query(Query::query(
        Name::from_ascii(NAME).expect("name"),
        RecordType::A,
    ));
    let bytes = query.to_vec().expect("encode");
    let started = Instant::now();
    let threads: Vec<_> = (0..clients)
        .map(|t| {
            let mut bytes = bytes.clone();
            std::thread::spawn(move || {
                let socket = UdpSocket::bind("0.0.0.0:0").expect("bind");
                socket.connect(server).expect("connect");
                socket
                    .set_read_timeout(Some(Duration::from_secs(1)))
                    .expect("timeout");
                let mut latencies = Vec::new();
                let mut failures = 0u64;
                let mut buffer = [0u8; 1500];
                let mut id: u16 = (t as u16).wrapping_mul(7919);
                while started.elapsed() < duration {
                    id = id.wrapping_add(1);
                    bytes[..2].copy_from_slice(&id.to_be_bytes());
                    let sent = Instant::now();
                    if socket.send(&bytes).is_err() {
                        failures += 1;
                        continue;
                    }
                    let ok = loop {
                        match socket.recv(&mut buffer) {
                            Ok(n) if n >= 2 && buffer[..2] == id.to_be_bytes() => {
                                break Message::from_vec(&buffer[..n]).is_ok_and(|m| {
                                    m.metadata.response_code == ResponseCode::NoError
                                        && !m.answers.is_empty()
                                });
                            }
                            Ok(_) => continue,
                            Err(_) => break false,
                        }
                    };
                    if ok {
                        latencies.push(sent.elapsed());
                    } else {
                        failures += 1;
                    }
                }
                (latencies, failures)
            })
        })
        .collect();
    let mut all = Vec::new();
    let mut failures = 0;
    for t in threads {
        let (l, f) = t.join().expect("client thread");
        all.extend(l);
        failures += f;
    }
    let elapsed = started.elapsed().as_secs_f64();
    all.sort();
    let pct = |p: f64| {
        all.get(((all.len() as f64 * p) as usize).min(all.len().saturating_sub(1)))
            .map(|d| d.as_secs_f64() * 1000.0)
            .unwrap_or(f64::NAN)
    };
    println!(
        "{clients} client(s): {:.0} queries/s ({} answered, {failures} failed in {elapsed:.1} s); latency p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        all.len() as f64 / elapsed,
        all.len(),
        pct(0.50),
        pct(0.99),
        all.last().map(|d| d.as_secs_f64() * 1000.0).unwrap_or(f64::NAN),
    );
}

fn docker(args: &[&str]) -> Output {
    let mut cmd = Command::new("docker");
    cmd.args(args);
    run_with_deadline(cmd, None, Duration::from_secs(120))
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

/// The cluster (removed on drop), the client pod's node and the PID of its process there.
struct Lab {
    dir: tempfile::TempDir,
    node: String,
    pid: String,
}

impl Lab {
    fn kubelab(&self, args: &[&str]) -> Output {
        let mut cmd = Command::new(kubelab_bin());
        cmd.args(args)
            .env("KUBECONFIG", self.dir.path().join("config"));
        run_with_deadline(cmd, None, Duration::from_secs(600))
    }

    fn kubectl(&self, args: &[&str], stdin: Option<&str>) -> Output {
        let mut cmd = Command::new(Kubectl::new("1.32").path);
        cmd.args(args)
            .env("KUBECONFIG", self.dir.path().join("config"));
        run_with_deadline(cmd, stdin, Duration::from_secs(60))
    }

    fn up() -> Lab {
        let mut lab = Lab {
            dir: tempfile::tempdir().expect("temp dir"),
            node: String::new(),
            pid: String::new(),
        };
        let _ = lab.kubelab(&["down", CLUSTER]);
        // `KUBELAB_NODE_IMAGE`: a node image of its own (built from this binary).
        let node_image = std::env::var("KUBELAB_NODE_IMAGE").ok();
        let image_args: Vec<&str> = node_image
            .as_deref()
            .map(|image| vec!["--image", image])
            .unwrap_or_default();
        let mut build = vec!["node-image", "build"];
        build.extend(&image_args);
        check(lab.kubelab(&build), "kubelab node-image build");
        let mut up = vec!["up", "--name", CLUSTER, "--nodes", "3", "--wait", "180s"];
        up.extend(&image_args);
        check(lab.kubelab(&up), "kubelab up");
        let image = format!("kubelab.local/system:v{}", env!("CARGO_PKG_VERSION"));
        let manifest = format!(
            r#"apiVersion: v1
kind: Service
metadata: {{name: web}}
spec:
  ports: [{{name: http, port: 80}}]
---
apiVersion: v1
kind: Pod
metadata: {{name: client}}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: main
    image: {image}
    imagePullPolicy: Never
    command: ["/bin/sh", "-c", "trap 'exit 0' TERM; while :; do sleep 1; done # {MARKER}"]
"#
        );
        check(
            lab.kubectl(&["apply", "-f", "-"], Some(&manifest)),
            "kubectl apply",
        );
        check(
            lab.kubectl(
                &[
                    "wait",
                    "--for=condition=Ready",
                    "pod/client",
                    "--timeout=180s",
                ],
                None,
            ),
            "the client pod Ready",
        );
        lab.node = check(
            lab.kubectl(
                &["get", "pod", "client", "-o", "jsonpath={.spec.nodeName}"],
                None,
            ),
            "the client's node",
        )
        .stdout
        .trim()
        .to_owned();
        let find = format!(
            "for p in /proc/[0-9]*; do grep -q {MARKER} $p/cmdline 2>/dev/null && echo ${{p#/proc/}} && break; done"
        );
        lab.pid = check(
            docker(&["exec", &lab.node, "sh", "-c", &find]),
            "the client's PID",
        )
        .stdout
        .trim()
        .to_owned();
        assert!(
            !lab.pid.is_empty(),
            "no process of the client pod on {}",
            lab.node
        );
        let exe = std::env::current_exe().expect("this executable");
        check(
            docker(&[
                "cp",
                exe.to_str().unwrap(),
                &format!("{}:/usr/local/bin/{MARKER}", lab.node),
            ]),
            "docker cp",
        );
        // The DNS pods ready and synced (the cluster's names answered).
        let deadline = Instant::now() + Duration::from_secs(180);
        loop {
            let line = lab.run_client(1, 1);
            if line.contains("queries/s") && !line.contains("(0 answered") {
                break lab;
            }
            assert!(
                Instant::now() < deadline,
                "the cluster DNS does not answer from the pod: {line}"
            );
        }
    }

    /// The client in the pod's network namespace; its summary line.
    fn run_client(&self, clients: usize, seconds: u64) -> String {
        let out = docker(&[
            "exec",
            "-e",
            &format!("{CLIENT_ENV}=1"),
            &self.node,
            "nsenter",
            "-t",
            &self.pid,
            "-n",
            &format!("/usr/local/bin/{MARKER}"),
            &clients.to_string(),
            &seconds.to_string(),
        ]);
        format!("{}{}", out.stdout.trim(), out.stderr.trim())
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        let _ = self.kubelab(&["down", CLUSTER]);
    }
}
