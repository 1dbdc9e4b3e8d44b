//! The `metallb` addon end to end (issue 9, part M): on a 3-node `kubelab up` cluster driven by
//! the real kubectl, `kubelab addons enable metallb` gives LoadBalancer Services addresses from
//! the default pool (the top of the cluster's Docker network) and the speaker answers ARP for
//! them, so `curl` from the host reaches the pods; requested addresses, an exhausted pool,
//! the cleanup finalizer, `configure`, `list` and `disable`.
//!
//! Like tests/network.rs these need a Docker engine (`.ci/run` starts one) and fail, saying so,
//! without it. A `Cluster` guard runs `kubelab down` even when a test panics. The node image is
//! built under its own tag so that other suites building the default image meanwhile do not
//! swap the binary under this one.

mod common;
#[path = "common/docker.rs"]
mod docker_support;

use std::process::Command;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use common::{eventually, run_with_deadline, Kubectl};
use docker_support::{build_test_image, engine_with_node_image, Lab as Cluster, WAIT};

/// How soon a LoadBalancer Service must have its address ("within seconds").
const ASSIGN: Duration = Duration::from_secs(20);
const IMAGE: &str = "kubelab-test/busybox:1";
const NODE_IMAGE: &str = "kubelab/node:test-metallb";

fn require_docker() {
    static READY: OnceLock<Result<(), String>> = OnceLock::new();
    let ready = READY.get_or_init(|| {
        let scratch = std::env::temp_dir().join("kubelab-metallb-tests.kubeconfig");
        engine_with_node_image(&scratch, Some(NODE_IMAGE))?;
        build_test_image(IMAGE).map_err(|e| format!("the busybox test image: {e}"))
    });
    if let Err(message) = ready {
        panic!("{message}");
    }
}

/// The tests of this file take turns: two 3-node clusters at once on a 2-core machine would
/// measure the machine, not kubelab.
fn serial() -> std::sync::MutexGuard<'static, ()> {
    static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());
    SERIAL
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Cluster {
    fn three_nodes(name: &str) -> Cluster {
        Cluster::up_with(name, None)
    }

    /// `kubelab up`, with the profile text when given (else `--nodes 3`).
    fn up_with(name: &str, profile: Option<&str>) -> Cluster {
        require_docker();
        let cluster = Cluster::new(name);
        let profile_path = cluster.dir.path().join("profile.yaml");
        let mut args = vec!["--image", NODE_IMAGE];
        match profile {
            Some(text) => {
                std::fs::write(&profile_path, text).expect("write the profile");
                args.extend(["--profile", profile_path.to_str().expect("utf-8 path")]);
            }
            None => args.extend(["--nodes", "3"]),
        }
        cluster.up(&args);
        cluster.load(IMAGE);
        cluster
    }

    /// Waits for a Deployment's rollout (kubectl's own wait, under a deadline above its
    /// timeout: the default 60 s of `kubectl` here would cut it short on a loaded machine).
    fn rollout(&self, deployment: &str) {
        let mut cmd = Command::new(&Kubectl::new("1.32").path);
        cmd.args([
            "rollout",
            "status",
            &format!("deploy/{deployment}"),
            "--timeout=170s",
        ])
        .env("KUBECONFIG", &self.kubeconfig);
        let out = run_with_deadline(cmd, None, WAIT);
        assert!(
            out.success(),
            "kubectl rollout status {deployment}:\n{}{}",
            out.stdout,
            out.stderr
        );
    }

    /// The EXTERNAL-IP column of `kubectl get svc NAME`.
    fn external_ip(&self, service: &str) -> String {
        let out = self.ok(&["get", "svc", service, "--no-headers"]);
        common::columns(&out).get(3).unwrap_or(&"").to_string()
    }

    /// Waits for the Service's EXTERNAL-IP and returns it.
    fn wait_external_ip(&self, service: &str, deadline: Duration) -> String {
        eventually(&format!("an EXTERNAL-IP for {service}"), deadline, || {
            let ip = self.external_ip(service);
            ip.parse::<std::net::Ipv4Addr>().ok().map(|_| ip)
        })
    }

    /// `kubectl get events` about one object, as "REASON MESSAGE" lines.
    fn events(&self, namespace: &str, kind: &str, name: &str) -> String {
        self.ok(&[
            "get",
            "events",
            "-n",
            namespace,
            "--field-selector",
            &format!("involvedObject.kind={kind},involvedObject.name={name}"),
            "-o",
            "custom-columns=REASON:.reason,MESSAGE:.message",
            "--no-headers",
        ])
    }
}

/// `curl http://IP/` from the host: the body, or why not.
fn curl(ip: &str) -> Result<String, String> {
    let mut cmd = Command::new("curl");
    cmd.args(["-sS", "-m", "5", &format!("http://{ip}/")]);
    let out = run_with_deadline(cmd, None, Duration::from_secs(10));
    if out.success() {
        Ok(out.stdout.trim().to_owned())
    } else {
        Err(format!("{}{}", out.stdout, out.stderr))
    }
}

/// A Deployment whose pods answer HTTP on port 80 with their name.
fn web(name: &str, replicas: u32) -> String {
    format!(
        r#"apiVersion: apps/v1
kind: Deployment
metadata: {{name: {name}}}
spec:
  replicas: {replicas}
  selector: {{matchLabels: {{app: {name}}}}}
  template:
    metadata: {{labels: {{app: {name}}}}}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
      - name: main
        image: {IMAGE}
        env:
        - name: POD
          valueFrom: {{fieldRef: {{fieldPath: metadata.name}}}}
        command: ["sh", "-c", "mkdir -p /www && echo $POD > /www/index.html && exec httpd -f -p 80 -h /www"]
        readinessProbe:
          tcpSocket: {{port: 80}}
          periodSeconds: 1
"#
    )
}

fn load_balancer(name: &str, app: &str, annotations: &str) -> String {
    format!(
        r#"apiVersion: v1
kind: Service
metadata:
  name: {name}
  annotations: {{{annotations}}}
spec:
  type: LoadBalancer
  selector: {{app: {app}}}
  ports: [{{port: 80, targetPort: 80}}]
"#
    )
}

/// Acceptance 5 and 7 (metallb): addresses from the default pool reach the pods from the
/// host; the cleanup finalizer; a requested address; an exhausted pool; freeing on delete;
/// `configure`, `list`; the BGP kinds accepted as unsupported; `disable` removes everything.
#[test]
fn load_balancer_addresses_reach_pods_from_the_host() {
    let _turn = serial();
    let cluster = Cluster::three_nodes("mlb");
    let out = cluster.kubelab_ok(&["addons", "enable", "metallb", "--name", "mlb"], WAIT);
    assert!(out.contains("enabled metallb"), "{out}");
    let range = cluster.ok(&[
        "get",
        "ipaddresspools.metallb.io",
        "default",
        "-n",
        "metallb-system",
        "-o",
        "jsonpath={.spec.addresses[0]}",
    ]);
    let (first, last) = range.split_once('-').expect("a range A-B");
    assert!(first.ends_with(".224") && last.ends_with(".254"), "{range}");
    let prefix = first.trim_end_matches("224");
    // The CRDs' printer columns, as MetalLB's.
    let pools = cluster.ok(&["get", "ipaddresspools", "-n", "metallb-system"]);
    assert!(
        pools.contains("AUTO ASSIGN")
            && pools
                .lines()
                .any(|l| l.starts_with("default ") && l.contains("true") && l.contains(&range)),
        "{pools}"
    );
    let ads = cluster.ok(&["get", "l2advertisements", "-n", "metallb-system"]);
    assert!(ads.lines().any(|l| l.starts_with("default ")), "{ads}");
    eventually("the controller and 3 speakers ready", WAIT, || {
        let out = cluster.ok(&["get", "pods", "-n", "metallb-system", "--no-headers"]);
        let ready = out
            .lines()
            .filter(|l| common::columns(l).get(1) == Some(&"1/1"))
            .count();
        (ready == 4).then_some(())
    });

    // kubectl expose: an address from the pool within seconds, and the pods from the host.
    cluster.apply(&web("web", 2));
    cluster.rollout("web");
    cluster.ok(&[
        "expose",
        "deploy",
        "web",
        "--type=LoadBalancer",
        "--port",
        "80",
    ]);
    let started = Instant::now();
    let ip = cluster.wait_external_ip("web", ASSIGN);
    let assigned_in = started.elapsed();
    assert_eq!(ip, format!("{prefix}224"), "the first address of the pool");
    let body = eventually("curl http://<ip>/ from the host", WAIT, || curl(&ip).ok());
    assert!(body.starts_with("web-"), "{body}");
    eprintln!("address assigned in {assigned_in:?}");
    let finalizers = cluster.ok(&["get", "svc", "web", "-o", "jsonpath={.metadata.finalizers}"]);
    assert!(
        finalizers.contains("service.kubernetes.io/load-balancer-cleanup"),
        "{finalizers}"
    );
    let pool = cluster.ok(&[
        "get",
        "svc",
        "web",
        "-o",
        "jsonpath={.metadata.annotations.metallb\\.io/ip-allocated-from-pool}",
    ]);
    assert_eq!(pool, "default");
    let events = cluster.events("default", "Service", "web");
    assert!(events.contains("IPAllocated"), "{events}");
    eventually(
        "a nodeAssigned event from the elected speaker",
        WAIT,
        || {
            cluster
                .events("default", "Service", "web")
                .contains("nodeAssigned")
                .then_some(())
        },
    );

    // A second Service asks for a specific address (MetalLB's annotation).
    let wanted = format!("{prefix}230");
    cluster.apply(&load_balancer(
        "web2",
        "web",
        &format!("metallb.universe.tf/loadBalancerIPs: {wanted}"),
    ));
    assert_eq!(cluster.wait_external_ip("web2", ASSIGN), wanted);
    let body = eventually("curl the requested address", WAIT, || curl(&wanted).ok());
    assert!(body.starts_with("web-"), "{body}");

    // configure: the pool shrinks to the two addresses in use; a third Service stays pending
    // with an event saying the pool is exhausted.
    let narrow = format!("{prefix}224-{prefix}225");
    cluster.kubelab_ok(
        &[
            "addons",
            "configure",
            "metallb",
            "--range",
            &narrow,
            "--name",
            "mlb",
        ],
        WAIT,
    );
    eventually("web2 loses the address outside the new range", WAIT, || {
        (cluster.external_ip("web2") == "<pending>").then_some(())
    });
    let events = eventually("web2's AllocationFailed event", WAIT, || {
        let events = cluster.events("default", "Service", "web2");
        events.contains("AllocationFailed").then_some(events)
    });
    assert!(events.contains("not allowed in config"), "{events}");
    cluster.apply(&load_balancer("web3", "web", ""));
    assert_eq!(
        cluster.wait_external_ip("web3", ASSIGN),
        format!("{prefix}225")
    );
    cluster.apply(&load_balancer("web4", "web", ""));
    let events = eventually("web4's AllocationFailed event", WAIT, || {
        let events = cluster.events("default", "Service", "web4");
        events.contains("AllocationFailed").then_some(events)
    });
    assert!(events.contains("no available IPs"), "{events}");
    assert_eq!(cluster.external_ip("web4"), "<pending>");
    let list = cluster.kubelab_ok(&["addons", "list", "--name", "mlb"], WAIT);
    let line = list
        .lines()
        .find(|l| l.starts_with("metallb "))
        .unwrap_or_else(|| panic!("{list}"));
    assert!(
        line.contains("enabled") && line.contains(&format!("pool default: {narrow} (2 of 2 used)")),
        "{line}"
    );

    // Deleting a Service frees its address (the finalizer goes away with it): web4 gets it.
    cluster.ok(&["delete", "svc", "web", "--timeout=60s"]);
    let gone = cluster.kubectl(&["get", "svc", "web"]);
    assert!(
        !gone.success() && gone.stderr.contains("NotFound"),
        "{}",
        gone.stderr
    );
    assert_eq!(
        cluster.wait_external_ip("web4", ASSIGN),
        format!("{prefix}224")
    );
    let body = eventually("curl web4's address", WAIT, || {
        curl(&format!("{prefix}224")).ok()
    });
    assert!(body.starts_with("web-"), "{body}");

    // The BGP kinds are accepted and reported as unsupported.
    cluster.apply(
        "apiVersion: metallb.io/v1beta1\nkind: BGPPeer\nmetadata: {name: peer, namespace: metallb-system}\nspec: {myASN: 64500, peerASN: 64501, peerAddress: 10.0.0.1}\n",
    );
    eventually("the BGPPeer marked unsupported", WAIT, || {
        let table = cluster.ok(&["get", "bgppeers", "-n", "metallb-system"]);
        table
            .lines()
            .any(|l| l.starts_with("peer ") && l.contains("Unsupported"))
            .then_some(())
    });
    eventually("the BGPPeer's Unsupported event", WAIT, || {
        cluster
            .events("metallb-system", "BGPPeer", "peer")
            .contains("Unsupported")
            .then_some(())
    });

    // disable removes everything the addon made, addresses on Services included.
    let out = cluster.kubelab_ok(&["addons", "disable", "metallb", "--name", "mlb"], WAIT);
    assert!(out.contains("disabled metallb"), "{out}");
    eventually("metallb-system and the CRDs gone", WAIT, || {
        let ns = cluster.kubectl(&["get", "namespace", "metallb-system"]);
        let crds = cluster.ok(&["get", "crd", "-o", "name"]);
        (!ns.success() && !crds.contains("metallb.io")).then_some(())
    });
    for svc in ["web2", "web3", "web4"] {
        assert_eq!(cluster.external_ip(svc), "<pending>", "{svc}");
        let annotations =
            cluster.ok(&["get", "svc", svc, "-o", "jsonpath={.metadata.annotations}"]);
        assert!(
            !annotations.contains("metallb.io/ip-allocated-from-pool"),
            "{annotations}"
        );
    }
    for kind in ["clusterrole", "clusterrolebinding"] {
        let names = cluster.ok(&["get", kind, "-o", "name"]);
        assert!(!names.contains("metallb"), "{kind}: {names}");
    }
    let list = cluster.kubelab_ok(&["addons", "list", "--name", "mlb"], WAIT);
    assert!(
        list.lines()
            .any(|l| l.starts_with("metallb ") && l.contains("disabled")),
        "{list}"
    );
}

/// The MAC the host's neighbour table holds for `ip` (after a request reached it).
fn host_neighbour(ip: &str) -> Option<String> {
    let mut cmd = Command::new("ip");
    cmd.args(["neigh", "show", ip]);
    let out = run_with_deadline(cmd, None, Duration::from_secs(10));
    let columns = common::columns(&out.stdout)
        .into_iter()
        .map(str::to_owned)
        .collect::<Vec<_>>();
    let at = columns.iter().position(|c| c == "lladdr")?;
    columns.get(at + 1).cloned()
}

/// The MAC of a node container on its cluster network.
fn node_mac(node: &str) -> String {
    let out = docker_support::docker(&[
        "inspect",
        "-f",
        "{{range .NetworkSettings.Networks}}{{.MacAddress}}{{end}}",
        node,
    ]);
    assert!(out.success(), "docker inspect {node}: {}", out.stderr);
    out.stdout.trim().to_owned()
}

/// Whether a `nodeAssigned` event of the Service names `node`.
fn announced_from(cluster: &Cluster, service: &str, node: &str) -> bool {
    cluster
        .events("default", "Service", service)
        .lines()
        .any(|l| l.starts_with("nodeAssigned") && l.contains(&format!("from node \"{node}\"")))
}

/// The speakers' election as documented (crates/metallb/src/speaker/election.rs): the
/// candidate with the smallest SHA-256 of `<node>#<address>`.
fn elected<'a>(candidates: &[&'a str], ip: &str) -> &'a str {
    use sha2::{Digest, Sha256};
    candidates
        .iter()
        .min_by_key(|n| Sha256::digest(format!("{n}#{ip}").as_bytes()))
        .copied()
        .expect("candidates")
}

/// `up` with a profile enabling metallb (its pool carved from the network `up` made); one
/// node answers ARP for an address (the host's neighbour entry is the elected node's MAC, and
/// its speaker says so in a `nodeAssigned` event); excluding that node moves the address
/// (gratuitous ARP) and the host keeps reaching the pods; a node labelled
/// exclude-from-external-load-balancers never announces; `externalTrafficPolicy: Local` is
/// announced from the node of its endpoint; a stopped node's addresses move to a live one.
#[test]
fn one_node_answers_and_the_address_moves() {
    let _turn = serial();
    let cluster = Cluster::up_with(
        "mlb2",
        Some("apiVersion: kubelab.dev/v1alpha1\nkind: Cluster\nname: mlb2\nservers: 1\nagents: 2\naddons:\n  metallb: true\n"),
    );
    let range = cluster.ok(&[
        "get",
        "ipaddresspools.metallb.io",
        "default",
        "-n",
        "metallb-system",
        "-o",
        "jsonpath={.spec.addresses[0]}",
    ]);
    let server_ip = cluster.ok(&[
        "get",
        "node",
        "mlb2-server-0",
        "-o",
        "jsonpath={.status.addresses[?(@.type==\"InternalIP\")].address}",
    ]);
    let network = server_ip.rsplit_once('.').expect("an IPv4 address").0;
    assert_eq!(
        range,
        format!("{network}.224-{network}.254"),
        "the pool of the network up made"
    );
    let exclude = "node.kubernetes.io/exclude-from-external-load-balancers=";
    cluster.ok(&["label", "node", "mlb2-server-0", exclude]);
    eventually("the controller and 3 speakers ready", WAIT, || {
        let out = cluster.ok(&["get", "pods", "-n", "metallb-system", "--no-headers"]);
        let ready = out
            .lines()
            .filter(|l| common::columns(l).get(1) == Some(&"1/1"))
            .count();
        (ready == 4).then_some(())
    });
    cluster.apply(&web("web", 2));
    cluster.rollout("web");
    cluster.apply(&load_balancer("web", "web", ""));
    let ip = cluster.wait_external_ip("web", ASSIGN);
    let agents = ["mlb2-agent-0", "mlb2-agent-1"];
    let winner = elected(&agents, &ip);
    let other = agents.into_iter().find(|a| *a != winner).unwrap();
    let winner_mac = node_mac(winner);
    eventually(
        "the host reaches the pods through the elected node",
        WAIT,
        || {
            curl(&ip).ok()?;
            (host_neighbour(&ip)? == winner_mac).then_some(())
        },
    );
    eventually("the elected node's nodeAssigned event", WAIT, || {
        announced_from(&cluster, "web", winner).then_some(())
    });
    assert!(
        !announced_from(&cluster, "web", "mlb2-server-0"),
        "an excluded node announced"
    );

    // Excluding the elected node moves the address to the other agent.
    cluster.ok(&["label", "node", winner, exclude]);
    let other_mac = node_mac(other);
    eventually(
        "the host reaches the pods through the other agent",
        WAIT,
        || {
            curl(&ip).ok()?;
            (host_neighbour(&ip)? == other_mac).then_some(())
        },
    );
    assert!(announced_from(&cluster, "web", other));
    cluster.ok(&[
        "label",
        "node",
        winner,
        "node.kubernetes.io/exclude-from-external-load-balancers-",
    ]);

    // externalTrafficPolicy Local: announced from the node of the only endpoint.
    let solo = web("solo", 1).replace(
        "      terminationGracePeriodSeconds: 1\n",
        &format!(
            "      terminationGracePeriodSeconds: 1\n      nodeSelector: {{kubernetes.io/hostname: {other}}}\n"
        ),
    );
    cluster.apply(&solo);
    cluster.rollout("solo");
    cluster.apply(&load_balancer("solo", "solo", "").replace(
        "  type: LoadBalancer\n",
        "  type: LoadBalancer\n  externalTrafficPolicy: Local\n",
    ));
    let solo_ip = cluster.wait_external_ip("solo", ASSIGN);
    let body = eventually("curl solo through its endpoint's node", WAIT, || {
        let body = curl(&solo_ip).ok()?;
        (host_neighbour(&solo_ip)? == other_mac).then_some(body)
    });
    assert!(body.starts_with("solo-"), "{body}");
    assert!(announced_from(&cluster, "solo", other));

    // The elected node (no longer excluded) has the address back; stopping it moves the
    // address to the live agent once the node is NotReady (node-monitor grace period, 40 s).
    eventually("the address back on the elected node", WAIT, || {
        curl(&ip).ok()?;
        (host_neighbour(&ip)? == winner_mac).then_some(())
    });
    let out = docker_support::docker(&["stop", "-t", "1", winner]);
    assert!(out.success(), "docker stop {winner}: {}", out.stderr);
    eventually(
        "the host reaches the pods through the surviving agent",
        WAIT,
        || {
            curl(&ip).ok()?;
            (host_neighbour(&ip)? == other_mac).then_some(())
        },
    );
}
