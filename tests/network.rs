//! Cluster networking end to end (issue 7, part N): pod routes across nodes and the iptables
//! service proxy of every agent, on 3-node `kubelab up` clusters driven by the real kubectl,
//! with a busybox image FROM scratch.
//!
//! Like tests/cluster.rs these need a Docker engine (`.ci/run` starts one) and fail, saying so,
//! without it. A `Cluster` guard runs `kubelab down` even when a test panics.
//!
//! Busybox notes: Debian's static busybox `wget -T` crashes (SIGSEGV), so requests have no
//! `-T`; a request that could hang is run under busybox `timeout`.

mod common;
#[path = "common/docker.rs"]
mod docker_support;

use std::io::{Read, Write};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use common::eventually;
use docker_support::{build_test_image, docker, engine_with_node_image, Lab as Cluster, WAIT};

const IMAGE: &str = "kubelab-test/busybox:1";

/// Panics, saying how to start one, unless a Docker engine answers; builds the node image
/// of this binary and the busybox test image once.
fn require_docker() {
    static READY: OnceLock<Result<(), String>> = OnceLock::new();
    let ready = READY.get_or_init(|| {
        let scratch = std::env::temp_dir().join("kubelab-network-tests.kubeconfig");
        engine_with_node_image(&scratch, None)?;
        build_test_image(IMAGE).map_err(|e| format!("the busybox test image: {e}"))
    });
    if let Err(message) = ready {
        panic!("{message}");
    }
}

impl Cluster {
    /// A 3-node cluster with the test image loaded, every node Ready.
    fn three_nodes(name: &str) -> Cluster {
        require_docker();
        let cluster = Cluster::new(name);
        cluster.up(&["--nodes", "3"]);
        cluster.load(IMAGE);
        cluster.wait_nodes_ready(3);
        cluster
    }

    /// The body of `http://URL` fetched from inside `pod`, or the error.
    fn fetch(&self, pod: &str, url: &str) -> Result<String, String> {
        let out = self.sh(pod, &format!("timeout 10 wget -q -O- {url}"));
        if out.success() {
            Ok(out.stdout.trim().to_owned())
        } else {
            Err(format!("{}{}", out.stdout, out.stderr))
        }
    }

    /// node name → InternalIP.
    fn node_ips(&self) -> Vec<(String, String)> {
        let out = self.ok(&[
            "get", "nodes", "--no-headers", "-o",
            "custom-columns=NAME:.metadata.name,IP:.status.addresses[?(@.type==\"InternalIP\")].address",
        ]);
        out.lines()
            .filter_map(|l| match common::columns(l)[..] {
                [name, ip] => Some((name.to_owned(), ip.to_owned())),
                _ => None,
            })
            .collect()
    }

    /// (pod, node, podIP) of the Running, ready pods labelled app=APP.
    fn ready_pods(&self, app: &str) -> Vec<(String, String, String)> {
        let out = self.ok(&[
            "get", "pods", "-l", &format!("app={app}"), "--no-headers", "-o",
            "custom-columns=NAME:.metadata.name,NODE:.spec.nodeName,IP:.status.podIP,PHASE:.status.phase,READY:.status.containerStatuses[0].ready,DEL:.metadata.deletionTimestamp",
        ]);
        out.lines()
            .filter_map(|l| match common::columns(l)[..] {
                [name, node, ip, "Running", "true", "<none>"] => {
                    Some((name.to_owned(), node.to_owned(), ip.to_owned()))
                }
                _ => None,
            })
            .collect()
    }
}

/// A pod pinned to `node` that just waits (the client of the requests).
fn client_pod(name: &str, node: &str, host_network: bool) -> String {
    format!(
        r#"apiVersion: v1
kind: Pod
metadata: {{name: {name}, labels: {{app: {name}}}}}
spec:
  nodeName: {node}
  hostNetwork: {host_network}
  terminationGracePeriodSeconds: 1
  containers:
  - name: main
    image: {IMAGE}
    command: ["sh", "-c", "trap 'exit 0' TERM; while :; do sleep 1; done"]
"#
    )
}

/// A web server in every pod answering with its pod name; on SIGTERM it keeps serving for
/// `linger` seconds before it stops (a pod that is deleted but not yet terminated).
fn web_server(linger: u32) -> String {
    format!(
        r#"
      terminationGracePeriodSeconds: 60
      containers:
      - name: main
        image: {IMAGE}
        env:
        - name: POD
          valueFrom: {{fieldRef: {{fieldPath: metadata.name}}}}
        command:
        - sh
        - -c
        - |
          mkdir -p /www && echo $POD > /www/index.html
          httpd -f -v -p 8080 -h /www &
          server=$!
          trap "sleep {linger}; kill $server; exit 0" TERM
          while :; do wait; done
"#
    )
}

/// The HTTP body of `GET /` at `addr` from the host (no busybox: std's TCP client).
fn host_get(addr: &str) -> Result<String, String> {
    let mut stream = std::net::TcpStream::connect_timeout(
        &addr.parse().map_err(|e| format!("{addr}: {e}"))?,
        Duration::from_secs(5),
    )
    .map_err(|e| format!("{addr}: {e}"))?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok();
    stream
        .write_all(b"GET / HTTP/1.0\r\nHost: test\r\n\r\n")
        .map_err(|e| e.to_string())?;
    let mut response = String::new();
    stream
        .read_to_string(&mut response)
        .map_err(|e| e.to_string())?;
    let (head, body) = response.split_once("\r\n\r\n").ok_or(response.clone())?;
    if !head.starts_with("HTTP/1.1 200") && !head.starts_with("HTTP/1.0 200") {
        return Err(head.to_owned());
    }
    Ok(body.trim().to_owned())
}

/// The API server behind the `kubernetes` Service answered on https://10.96.0.1 from `pod`:
/// either the version document, or a TLS alert from the peer (busybox's own TLS client cannot
/// agree on a signature scheme with the API server's ECDSA certificate: the alert still comes
/// from the API server, through the ClusterIP).
fn reaches_api_server(cluster: &Cluster, pod: &str) -> Result<(), String> {
    let out = cluster.sh(
        pod,
        "timeout 10 wget --no-check-certificate -q -O- https://10.96.0.1/version",
    );
    let all = format!("{}{}", out.stdout, out.stderr);
    if all.contains("gitVersion") || all.contains("TLS error from peer") {
        Ok(())
    } else {
        Err(all)
    }
}

/// Acceptance 1: a pod on node A fetches from pods on nodes B and C by pod IP (routes to the
/// other nodes' podCIDRs; pod-to-pod traffic keeps its addresses); traffic leaving the pod
/// network is masqueraded. Routes follow a node joining and leaving. Pods and hostNetwork pods
/// reach the API server at 10.96.0.1.
#[test]
fn pods_reach_pods_on_other_nodes() {
    let lab = Cluster::three_nodes("kl-net-routes");
    let nodes: Vec<String> = lab.node_ips().into_iter().map(|(n, _)| n).collect();
    assert_eq!(nodes.len(), 3);
    let mut manifest = format!(
        r#"apiVersion: apps/v1
kind: DaemonSet
metadata: {{name: echo}}
spec:
  selector: {{matchLabels: {{app: echo}}}}
  template:
    metadata: {{labels: {{app: echo}}}}
    spec:{}"#,
        web_server(0)
    );
    manifest.push_str("---\n");
    manifest.push_str(&client_pod("client", &nodes[0], false));
    manifest.push_str("---\n");
    manifest.push_str(&client_pod("host-client", &nodes[1], true));
    lab.apply(&manifest);
    let echo = eventually("an echo pod Running on every node", WAIT, || {
        Some(lab.ready_pods("echo")).filter(|p| p.len() == 3)
    });
    eventually("client pods Running", WAIT, || {
        (lab.ready_pods("client").len() == 1 && lab.ready_pods("host-client").len() == 1)
            .then_some(())
    });
    let client_ip = lab.ok(&["get", "pod", "client", "-o", "jsonpath={.status.podIP}"]);
    for (pod, node, ip) in &echo {
        let body = eventually(&format!("{pod} on {node} answers the client"), WAIT, || {
            lab.fetch("client", &format!("http://{ip}:8080/")).ok()
        });
        assert_eq!(&body, pod, "{node}");
        // The server saw the client's pod IP, not its node's (no masquerade inside the pod
        // network; httpd -v logs every client address).
        let logs = lab.ok(&["logs", pod]);
        assert!(logs.contains(&format!(":{client_ip}]:")), "{node}: {logs}");
    }
    // hostNetwork pods and the nodes themselves use the same routes.
    for (pod, _, ip) in &echo {
        assert_eq!(
            lab.fetch("host-client", &format!("http://{ip}:8080/"))
                .as_deref(),
            Ok(pod.as_str())
        );
    }
    for pod in ["client", "host-client"] {
        eventually(
            &format!("10.96.0.1 reaches the API server from {pod}"),
            WAIT,
            || reaches_api_server(&lab, pod).ok(),
        );
    }

    // Pod traffic leaving the cluster network is masqueraded: the host (which has no route to
    // the pods) sees the client's node address and can answer.
    let network = format!("kubelab-{}", lab.name);
    let gateway = docker(&[
        "network",
        "inspect",
        &network,
        "-f",
        "{{(index .IPAM.Config 0).Gateway}}",
    ]);
    assert!(gateway.success(), "{}", gateway.stderr);
    let listener = std::net::TcpListener::bind("0.0.0.0:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let (peers, peer) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        while let Ok((mut stream, from)) = listener.accept() {
            let mut request = [0u8; 512];
            let _ = stream.read(&mut request);
            let _ = stream.write_all(b"HTTP/1.0 200 OK\r\n\r\nfrom the host\n");
            let _ = peers.send(from.ip().to_string());
        }
    });
    let body = lab.fetch(
        "client",
        &format!("http://{}:{port}/", gateway.stdout.trim()),
    );
    assert_eq!(body.as_deref(), Ok("from the host"));
    let node_ip = lab
        .node_ips()
        .into_iter()
        .find(|(n, _)| *n == nodes[0])
        .map(|(_, ip)| ip);
    assert_eq!(
        peer.recv_timeout(Duration::from_secs(10)).ok(),
        node_ip,
        "the host sees the client's node"
    );

    // Routes follow nodes: a new node's pods are reachable, a removed node's route goes.
    let out = lab.kubelab(&["node", "add", &lab.name], WAIT);
    assert!(out.success(), "node add:\n{}{}", out.stdout, out.stderr);
    let added = format!("{}-agent-2", lab.name);
    let out = lab.kubelab(&["load", "image", IMAGE, "--name", &lab.name], WAIT);
    assert!(out.success(), "load image:\n{}{}", out.stdout, out.stderr);
    let (pod, ip) = eventually("an echo pod on the new node", WAIT, || {
        lab.ready_pods("echo")
            .into_iter()
            .find(|(_, node, _)| *node == added)
            .map(|(pod, _, ip)| (pod, ip))
    });
    let body = eventually("the new node's pod answers", WAIT, || {
        lab.fetch("client", &format!("http://{ip}:8080/")).ok()
    });
    assert_eq!(body, pod);
    let cidr = lab.ok(&["get", "node", &added, "-o", "jsonpath={.spec.podCIDR}"]);
    let out = lab.kubelab(&["node", "remove", &lab.name, &added], WAIT);
    assert!(out.success(), "node remove:\n{}{}", out.stdout, out.stderr);
    eventually("the removed node's route is gone", WAIT, || {
        let routes = docker(&["exec", &nodes[0], "ip", "route"]);
        (routes.success() && !routes.stdout.contains(&cidr)).then_some(())
    });
}

/// Names answering `count` requests to `url` made one after the other from `pod`.
fn answers(cluster: &Cluster, pod: &str, url: &str, count: usize) -> Vec<String> {
    let out = cluster.sh(
        pod,
        &format!("for i in $(seq {count}); do timeout 10 wget -q -O- {url} || echo FAILED; done"),
    );
    assert!(out.success(), "{}", out.stderr);
    out.stdout.lines().map(|l| l.trim().to_owned()).collect()
}

fn distinct(names: &[String]) -> std::collections::BTreeSet<&str> {
    names.iter().map(String::as_str).collect()
}

/// Acceptance 2 (by ClusterIP), 3 and 6, and the rest of the proxy's features: random
/// balancing over every ready replica, hairpin, hostNetwork clients, sessionAffinity
/// ClientIP, NodePort on every node with externalTrafficPolicy Cluster and Local, a
/// LoadBalancer ingress IP, a deleted pod taken out before it terminates, an immediate
/// "connection refused" without ready endpoints.
#[test]
fn services_through_the_proxy() {
    let lab = Cluster::three_nodes("kl-net-svc");
    let nodes: Vec<(String, String)> = lab.node_ips();
    assert_eq!(nodes.len(), 3);
    let mut manifest = format!(
        r#"apiVersion: apps/v1
kind: Deployment
metadata: {{name: web}}
spec:
  replicas: 3
  selector: {{matchLabels: {{app: web}}}}
  template:
    metadata: {{labels: {{app: web}}}}
    spec:
      topologySpreadConstraints:
      - {{maxSkew: 1, topologyKey: kubernetes.io/hostname, whenUnsatisfiable: DoNotSchedule, labelSelector: {{matchLabels: {{app: web}}}}}}{}---
apiVersion: v1
kind: Service
metadata: {{name: web}}
spec:
  selector: {{app: web}}
  ports: [{{name: http, port: 80, targetPort: 8080}}]
---
"#,
        web_server(20)
    );
    manifest.push_str(&client_pod("client", &nodes[0].0, false));
    manifest.push_str("---\n");
    manifest.push_str(&client_pod("host-client", &nodes[1].0, true));
    lab.apply(&manifest);
    let web = eventually("3 web replicas ready", WAIT, || {
        Some(lab.ready_pods("web")).filter(|p| p.len() == 3)
    });
    let names: std::collections::BTreeSet<&str> = web.iter().map(|(p, _, _)| p.as_str()).collect();
    eventually("client pods Running", WAIT, || {
        (lab.ready_pods("client").len() == 1 && lab.ready_pods("host-client").len() == 1)
            .then_some(())
    });
    let cluster_ip = lab.ok(&["get", "service", "web", "-o", "jsonpath={.spec.clusterIP}"]);
    let url = format!("http://{cluster_ip}/");

    // Acceptance 2: 60 requests reach every replica.
    eventually("the ClusterIP answers", WAIT, || {
        lab.fetch("client", &url).ok()
    });
    eventually("every replica answers within 60 requests", WAIT, || {
        let got = answers(&lab, "client", &url, 60);
        assert!(got.iter().all(|n| names.contains(n.as_str())), "{got:?}");
        (distinct(&got) == names).then_some(())
    });
    // Hairpin: a replica reaches itself through the Service.
    let (own, _, _) = &web[0];
    let got = answers(&lab, own, &url, 30);
    assert!(got.contains(own), "{own} never answered itself: {got:?}");
    // Nodes and hostNetwork pods reach ClusterIPs (the OUTPUT chain).
    let got = answers(&lab, "host-client", &url, 10);
    assert!(got.iter().all(|n| names.contains(n.as_str())), "{got:?}");

    // sessionAffinity ClientIP: one client, one replica.
    lab.ok(&[
        "patch",
        "service",
        "web",
        "-p",
        r#"{"spec":{"sessionAffinity":"ClientIP"}}"#,
    ]);
    eventually("affinity pins the client to one replica", WAIT, || {
        (distinct(&answers(&lab, "client", &url, 20)).len() == 1).then_some(())
    });
    lab.ok(&[
        "patch",
        "service",
        "web",
        "-p",
        r#"{"spec":{"sessionAffinity":"None"}}"#,
    ]);

    // Acceptance 3: NodePort on every node's IP, from the host.
    lab.ok(&[
        "patch",
        "service",
        "web",
        "-p",
        r#"{"spec":{"type":"NodePort"}}"#,
    ]);
    let node_port = lab.ok(&[
        "get",
        "service",
        "web",
        "-o",
        "jsonpath={.spec.ports[0].nodePort}",
    ]);
    for (node, ip) in &nodes {
        let addr = format!("{ip}:{node_port}");
        let body = eventually(&format!("NodePort on {node}"), WAIT, || {
            host_get(&addr).ok()
        });
        assert!(names.contains(body.as_str()), "{node}: {body}");
    }
    // externalTrafficPolicy Local: each node answers with its own replica only.
    lab.ok(&[
        "patch",
        "service",
        "web",
        "-p",
        r#"{"spec":{"externalTrafficPolicy":"Local"}}"#,
    ]);
    for (node, ip) in &nodes {
        let local = &web
            .iter()
            .find(|(_, n, _)| n == node)
            .expect("a replica per node")
            .0;
        let addr = format!("{ip}:{node_port}");
        eventually(
            &format!("{node} answers with its own replica"),
            WAIT,
            || {
                let got: Vec<String> = (0..10).filter_map(|_| host_get(&addr).ok()).collect();
                (got.len() == 10 && got.iter().all(|n| n == local)).then_some(())
            },
        );
    }
    lab.ok(&[
        "patch",
        "service",
        "web",
        "-p",
        r#"{"spec":{"externalTrafficPolicy":"Cluster"}}"#,
    ]);

    // A LoadBalancer ingress IP is routed like the ClusterIP (what the MetalLB addon will set).
    lab.ok(&[
        "patch",
        "service",
        "web",
        "-p",
        r#"{"spec":{"type":"LoadBalancer"}}"#,
    ]);
    lab.ok(&[
        "patch",
        "service",
        "web",
        "--subresource=status",
        "--type=merge",
        "-p",
        r#"{"status":{"loadBalancer":{"ingress":[{"ip":"192.0.2.50"}]}}}"#,
    ]);
    let body = eventually("the ingress IP answers", WAIT, || {
        lab.fetch("client", "http://192.0.2.50/").ok()
    });
    assert!(names.contains(body.as_str()), "{body}");

    // Acceptance 6: a deleted replica (still serving for 20 s after SIGTERM) gets no traffic.
    let (gone, _, gone_ip) = &web[2];
    lab.ok(&["delete", "pod", gone, "--wait=false"]);
    eventually(&format!("{gone} out of the rotation"), WAIT, || {
        let got = answers(&lab, "client", &url, 30);
        (!got.contains(gone)).then_some(())
    });
    // ... before it terminated: it still answers on its own address, and still exists.
    assert_eq!(
        lab.fetch("client", &format!("http://{gone_ip}:8080/"))
            .as_deref(),
        Ok(gone.as_str()),
        "{gone} should still be serving while terminating"
    );
    let out = lab.kubectl(&[
        "get",
        "pod",
        gone,
        "-o",
        "jsonpath={.metadata.deletionTimestamp}",
    ]);
    assert!(
        out.success() && !out.stdout.is_empty(),
        "{gone} already gone: {}",
        out.stderr
    );

    // Acceptance 2: scaled to 0, the next request is refused at once; scaled back, it works.
    lab.ok(&["scale", "deployment", "web", "--replicas=0"]);
    eventually("no ready endpoint left", WAIT, || {
        let out = lab.ok(&[
            "get",
            "endpointslices",
            "-l",
            "kubernetes.io/service-name=web",
            "-o",
            "jsonpath={.items[*].endpoints[*].conditions.ready}",
        ]);
        (!out.contains("true")).then_some(())
    });
    eventually(
        "a request is refused at once",
        Duration::from_secs(10),
        || {
            let started = Instant::now();
            let result = lab.fetch("client", &url);
            let took = started.elapsed();
            match result {
                Err(e) if e.contains("refused") => {
                    assert!(took < Duration::from_secs(5), "refused after {took:?}");
                    Some(())
                }
                _ => None,
            }
        },
    );
    // Every request refused at once, also many in a row (a TCP reset: ICMP errors are
    // rate-limited by the kernel, a fast client would wait for SYN retransmissions).
    let started = Instant::now();
    let out = lab.sh(
        "client",
        &format!("for i in $(seq 20); do timeout 10 wget -q -O- {url} 2>&1; done"),
    );
    let took = started.elapsed();
    assert_eq!(out.stdout.matches("refused").count(), 20, "{}", out.stdout);
    assert!(took < Duration::from_secs(5), "20 refusals took {took:?}");
    lab.ok(&["scale", "deployment", "web", "--replicas=3"]);
    eventually("the Service answers again", WAIT, || {
        lab.fetch("client", &url).ok()
    });

    // Rules flushed behind the proxy's back (`iptables -F`) are put back by its periodic check.
    let node = &nodes[0].0;
    let out = docker(&[
        "exec",
        node,
        "iptables",
        "-t",
        "nat",
        "-F",
        "KUBELAB-SERVICES",
    ]);
    assert!(out.success(), "{}", out.stderr);
    eventually("the flushed rules are back", WAIT, || {
        let out = docker(&[
            "exec",
            node,
            "iptables",
            "-t",
            "nat",
            "-S",
            "KUBELAB-SERVICES",
        ]);
        out.stdout
            .contains(&format!("-d {cluster_ip}/32"))
            .then_some(())
    });
    assert!(lab.fetch("client", &url).is_ok());
}
