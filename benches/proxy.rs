//! Service proxy benchmark: `cargo bench --bench proxy` (as root; part 2 needs a Docker
//! engine).
//!
//! 1. Rule programming with 1,000 Services (3 ready endpoints each, every fourth a NodePort):
//!    the real `iptables-restore` of this machine, in a private network namespace (the bench
//!    runs itself again under `unshare -n`, so the host's tables are never touched). The first
//!    sync (every chain), a sync with nothing changed, one endpoint added to one Service (the
//!    incremental case), and a restarted proxy (reads the tables, rewrites them all).
//! 2. Time from a new endpoint becoming Ready to receiving traffic, on a 3-node `kubelab up`
//!    cluster: a Service with no endpoints, a client on the host connecting to its NodePort in
//!    a loop (refused at once while there is no endpoint), then a pod with a readiness probe
//!    created; Ready is the moment a watch from the host sees the pod's Ready condition, the
//!    EndpointSlice moment when a watch sees the endpoint ready. Several rounds.
//!
//! Figures only: nothing here fails on a missed target (Ready → traffic ≤ 1 s).

#[path = "../tests/common/mod.rs"]
mod common;

use std::net::TcpStream;
use std::process::Command;
use std::sync::mpsc;
use std::time::{Duration, Instant, SystemTime};

use common::{kubelab_bin, run_with_deadline, Output};
use kubelab_proxy::model::{Endpoint, Protocol, ServicePort};
use kubelab_proxy::proxier::Syncer;
use kubelab_proxy::system::{FakeRoutes, IptablesCommand};

const NETNS_ENV: &str = "KUBELAB_BENCH_PROXY_NETNS";

fn main() {
    if std::env::var_os(NETNS_ENV).is_some() {
        rule_programming(1_000);
        return;
    }
    let exe = std::env::current_exe().expect("bench executable");
    let status = Command::new("unshare")
        .arg("-n")
        .arg(exe)
        .env(NETNS_ENV, "1")
        .status()
        .expect("unshare -n (util-linux; needs root)");
    assert!(status.success(), "rule programming bench failed");
    ready_to_traffic(5);
}

fn port(i: usize, endpoints: usize) -> ServicePort {
    let ip = |base: u32| std::net::Ipv4Addr::from(base + i as u32);
    ServicePort {
        name: format!("bench/svc-{i}:http"),
        cluster_ip: ip(u32::from(std::net::Ipv4Addr::new(10, 100, 0, 0))),
        port: 80,
        protocol: Protocol::Tcp,
        node_port: i.is_multiple_of(4).then(|| 30_000 + (i / 4) as u16),
        external_ips: Vec::new(),
        external_local: false,
        affinity_seconds: None,
        endpoints: (0..endpoints)
            .map(|k| Endpoint {
                ip: std::net::Ipv4Addr::new(10, 244, (i % 250) as u8, (k * 50 + i / 250) as u8 + 2),
                port: 8080,
                local: k == 0,
            })
            .collect(),
    }
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

fn rule_programming(services: usize) {
    let config = kubelab_proxy::Config {
        node_name: "bench".into(),
        cluster_cidr: "10.244.0.0/16".parse().unwrap(),
    };
    let mut ports: Vec<ServicePort> = (0..services).map(|i| port(i, 3)).collect();

    let started = Instant::now();
    let rules = kubelab_proxy::rules::ruleset(&ports, config.cluster_cidr);
    let compute = started.elapsed();

    let mut syncer = Syncer::new(config.clone(), IptablesCommand, FakeRoutes::default());
    let started = Instant::now();
    let first = syncer.sync_ports(&ports).expect("first sync");
    let first_time = started.elapsed();

    let started = Instant::now();
    let noop = syncer.sync_ports(&ports).expect("no-op sync");
    let noop_time = started.elapsed();

    let mut one_times = Vec::new();
    let mut one_chains = 0;
    for round in 0..10 {
        ports[round * 97].endpoints.push(Endpoint {
            ip: std::net::Ipv4Addr::new(10, 244, 251, round as u8 + 2),
            port: 8080,
            local: false,
        });
        let started = Instant::now();
        one_chains = syncer
            .sync_ports(&ports)
            .expect("incremental sync")
            .chains_written;
        one_times.push(started.elapsed());
    }
    one_times.sort();

    let mut restarted = Syncer::new(config, IptablesCommand, FakeRoutes::default());
    let started = Instant::now();
    let restart = restarted.sync_ports(&ports).expect("restart sync");
    let restart_time = started.elapsed();

    println!("rule programming, {services} Services (3 endpoints each, 1 in 4 a NodePort), iptables-restore in a private netns:");
    println!(
        "  rules: {} in {} chains",
        rules.rule_count(),
        rules.tables.values().map(|c| c.len()).sum::<usize>()
    );
    println!("  computing the rules:               {}", ms(compute));
    println!(
        "  first sync (every chain):          {} ({} chains written)",
        ms(first_time),
        first.chains_written
    );
    println!(
        "  sync with nothing changed:         {} ({} chains written)",
        ms(noop_time),
        noop.chains_written
    );
    println!(
        "  one endpoint added to one Service: median {} max {} ({} chains written)",
        ms(one_times[one_times.len() / 2]),
        ms(*one_times.last().unwrap()),
        one_chains
    );
    println!(
        "  restarted proxy (read + rewrite):  {} ({} chains written)",
        ms(restart_time),
        restart.chains_written
    );
}

fn kubelab(kubeconfig: &std::path::Path, args: &[&str]) -> Output {
    let mut cmd = Command::new(kubelab_bin());
    cmd.args(args).env("KUBECONFIG", kubeconfig);
    run_with_deadline(cmd, None, Duration::from_secs(600))
}

fn kubectl(kubeconfig: &std::path::Path, args: &[&str], stdin: Option<&str>) -> Output {
    let mut cmd = Command::new(common::Kubectl::new("1.32").path);
    cmd.args(args).env("KUBECONFIG", kubeconfig);
    let out = run_with_deadline(cmd, stdin, Duration::from_secs(60));
    assert!(
        out.success(),
        "kubectl {args:?}: {}{}",
        out.stdout,
        out.stderr
    );
    out
}

/// A watch from the host: sends the time it first sees, per pod name, the pod Ready (`pod`)
/// and its address ready in the Service's EndpointSlice (`slice`).
fn watch_readiness(
    kubeconfig: std::path::PathBuf,
    events: mpsc::Sender<(&'static str, String, SystemTime)>,
) {
    use futures::StreamExt;
    use k8s_openapi::api::core::v1::Pod;
    use k8s_openapi::api::discovery::v1::EndpointSlice;
    use kube::runtime::watcher;
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Runtime::new().unwrap();
        runtime.block_on(async move {
            let config = kube::Config::from_custom_kubeconfig(
                kube::config::Kubeconfig::read_from(&kubeconfig).unwrap(),
                &Default::default(),
            )
            .await
            .unwrap();
            let client = kube::Client::try_from(config).unwrap();
            let pods = watcher(
                kube::Api::<Pod>::namespaced(client.clone(), "default"),
                watcher::Config::default().labels("app=lat"),
            );
            let slices = watcher(
                kube::Api::<EndpointSlice>::namespaced(client, "default"),
                watcher::Config::default().labels("kubernetes.io/service-name=lat"),
            );
            let pod_events = events.clone();
            let pods = pods.for_each(move |e| {
                if let Ok(watcher::Event::Apply(p) | watcher::Event::InitApply(p)) = e {
                    let ready = p
                        .status
                        .as_ref()
                        .and_then(|s| s.conditions.as_ref())
                        .is_some_and(|c| {
                            c.iter().any(|c| c.type_ == "Ready" && c.status == "True")
                        });
                    if ready {
                        let name = p.metadata.name.clone().unwrap_or_default();
                        let _ = pod_events.send(("pod", name, SystemTime::now()));
                    }
                }
                async {}
            });
            let slices = slices.for_each(move |e| {
                if let Ok(watcher::Event::Apply(s) | watcher::Event::InitApply(s)) = e {
                    for endpoint in &s.endpoints {
                        let ready =
                            endpoint.conditions.as_ref().and_then(|c| c.ready) == Some(true);
                        let name = endpoint.target_ref.as_ref().and_then(|r| r.name.clone());
                        if let (true, Some(name)) = (ready, name) {
                            let _ = events.send(("slice", name, SystemTime::now()));
                        }
                    }
                }
                async {}
            });
            futures::join!(pods, slices);
        });
    });
}

/// Whether a TCP connection to `addr` is accepted and answered.
fn answers(addr: &std::net::SocketAddr) -> bool {
    use std::io::{Read, Write};
    let Ok(mut stream) = TcpStream::connect_timeout(addr, Duration::from_secs(1)) else {
        return false;
    };
    stream.set_read_timeout(Some(Duration::from_secs(2))).ok();
    let mut buf = [0u8; 12];
    stream.write_all(b"GET / HTTP/1.0\r\n\r\n").is_ok()
        && stream.read_exact(&mut buf).is_ok()
        && buf.starts_with(b"HTTP/1.")
}

fn ready_to_traffic(rounds: usize) {
    if !Command::new("docker")
        .arg("info")
        .output()
        .is_ok_and(|o| o.status.success())
    {
        println!("endpoint Ready → traffic: skipped (no Docker engine)");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("config");
    let name = "kl-bench-proxy";
    let _ = kubelab(&kubeconfig, &["down", name]);
    let out = kubelab(
        &kubeconfig,
        &["up", "--name", name, "--nodes", "3", "--wait", "180s"],
    );
    assert!(out.success(), "kubelab up: {}{}", out.stdout, out.stderr);
    struct Down<'a>(&'a std::path::Path, &'a str);
    impl Drop for Down<'_> {
        fn drop(&mut self) {
            let _ = kubelab(self.0, &["down", self.1]);
        }
    }
    let _down = Down(&kubeconfig, name);
    // The busybox test image, as tests/network.rs builds it.
    let busybox = std::path::Path::new("/bin/busybox");
    let applets =
        String::from_utf8(Command::new(busybox).arg("--list").output().unwrap().stdout).unwrap();
    let applets: Vec<&str> = applets.split_whitespace().collect();
    let image = "kubelab-test/busybox:1";
    let archive = kubelab_cluster::oci::docker_archive(
        image,
        &kubelab_cluster::oci::busybox_entries(busybox, &applets),
        &kubelab_cluster::oci::ImageConfig {
            cmd: vec!["sh".into()],
            ..Default::default()
        },
    )
    .unwrap();
    let tar = dir.path().join("image.tar");
    std::fs::write(&tar, archive).unwrap();
    assert!(Command::new("docker")
        .args(["load", "-i"])
        .arg(&tar)
        .output()
        .unwrap()
        .status
        .success());
    let out = kubelab(&kubeconfig, &["load", "image", image, "--name", name]);
    assert!(out.success(), "load image: {}", out.stderr);

    kubectl(
        &kubeconfig,
        &["apply", "-f", "-"],
        Some("apiVersion: v1\nkind: Service\nmetadata: {name: lat}\nspec:\n  type: NodePort\n  selector: {app: lat}\n  ports: [{port: 80, targetPort: 8080}]\n"),
    );
    let node_port = kubectl(
        &kubeconfig,
        &[
            "get",
            "svc",
            "lat",
            "-o",
            "jsonpath={.spec.ports[0].nodePort}",
        ],
        None,
    )
    .stdout;
    let nodes = kubectl(
        &kubeconfig,
        &["get", "nodes", "-o", "jsonpath={range .items[*]}{.metadata.name} {.status.addresses[?(@.type==\"InternalIP\")].address}{\"\\n\"}{end}"],
        None,
    )
    .stdout;
    let nodes: Vec<(String, String)> = nodes
        .lines()
        .filter_map(|l| l.split_once(' ').map(|(a, b)| (a.to_owned(), b.to_owned())))
        .collect();
    let (tx, rx) = mpsc::channel();
    watch_readiness(kubeconfig.clone(), tx);

    let mut from_ready = Vec::new();
    let mut from_slice = Vec::new();
    for round in 0..rounds {
        // The pod on one node, traffic through the NodePort of the next one (cross-node).
        let (pod_node, _) = &nodes[round % nodes.len()];
        let (_, ip) = &nodes[(round + 1) % nodes.len()];
        let addr: std::net::SocketAddr = format!("{ip}:{node_port}").parse().unwrap();
        let pod = format!("lat-{round}");
        let deadline = Instant::now() + Duration::from_secs(60);
        while answers(&addr) {
            assert!(
                Instant::now() < deadline,
                "the Service still answers without endpoints"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        kubectl(
            &kubeconfig,
            &["apply", "-f", "-"],
            Some(&format!(
                "apiVersion: v1\nkind: Pod\nmetadata: {{name: {pod}, labels: {{app: lat}}}}\nspec:\n  nodeName: {pod_node}\n  terminationGracePeriodSeconds: 0\n  containers:\n  - name: main\n    image: {image}\n    command: [sh, -c, 'mkdir -p /www && echo ok > /www/index.html && exec httpd -f -p 8080 -h /www']\n    readinessProbe: {{tcpSocket: {{port: 8080}}, periodSeconds: 1}}\n"
            )),
        );
        let deadline = Instant::now() + Duration::from_secs(120);
        while !answers(&addr) {
            assert!(Instant::now() < deadline, "{pod} never got traffic");
            std::thread::sleep(Duration::from_millis(5));
        }
        let traffic = SystemTime::now();
        let (mut ready, mut sliced) = (None, None);
        // The watch may see the change after the traffic did: wait for both sightings.
        while ready.is_none() || sliced.is_none() {
            let Ok((what, name, at)) = rx.recv_timeout(Duration::from_secs(10)) else {
                break;
            };
            if name == pod {
                match what {
                    "pod" => ready = ready.or(Some(at)),
                    _ => sliced = sliced.or(Some(at)),
                }
            }
        }
        let since = |t: Option<SystemTime>| {
            t.and_then(|t| traffic.duration_since(t).ok())
                .unwrap_or_default()
        };
        from_ready.push(since(ready));
        from_slice.push(since(sliced));
        kubectl(
            &kubeconfig,
            &["delete", "pod", &pod, "--grace-period=0", "--wait=false"],
            None,
        );
    }
    from_ready.sort();
    from_slice.sort();
    println!(
        "endpoint Ready → traffic, 3-node cluster, NodePort of another node, {rounds} rounds:"
    );
    println!(
        "  pod Ready seen → first answer:          median {} max {}",
        ms(from_ready[rounds / 2]),
        ms(*from_ready.last().unwrap())
    );
    println!(
        "  EndpointSlice ready seen → first answer: median {} max {}",
        ms(from_slice[rounds / 2]),
        ms(*from_slice.last().unwrap())
    );
}
