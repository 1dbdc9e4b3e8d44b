//! Cluster DNS (`kubelab dns`, crates/dns). Record answers against `kubelab server` on the host
//! with `kubelab dns` on a loopback port, asked with hickory messages over UDP and TCP; the
//! objects are made with the real kubectl. A fake upstream nameserver on a loopback address
//! (port 53, named by a resolv.conf as the node's would) answers names outside the cluster.

mod common;
#[path = "common/docker.rs"]
mod docker_support;

use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::{eventually, Kubectl, TestServer};
use hickory_proto::op::{Message, Query, ResponseCode};
use hickory_proto::rr::rdata::A;
use hickory_proto::rr::{Name, RData, Record, RecordType};

const DEADLINE: Duration = Duration::from_secs(30);

/// A `kubelab dns` child process, killed on drop.
struct Dns {
    child: Child,
    address: SocketAddr,
}

impl Drop for Dns {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A loopback port free for both UDP and TCP.
fn free_dns_port() -> u16 {
    loop {
        let udp = UdpSocket::bind("127.0.0.1:0").expect("bind udp");
        let port = udp.local_addr().expect("local addr").port();
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

fn start_dns(server: &TestServer, resolv_conf: &Path) -> Dns {
    let address: SocketAddr = ([127, 0, 0, 1], free_dns_port()).into();
    let log = std::fs::File::create(server.root().join(format!("dns-{}.log", address.port())))
        .expect("dns log");
    let child = Command::new(common::kubelab_bin())
        .args(["dns", "--listen", &address.to_string(), "--kubeconfig"])
        .arg(server.kubeconfig_path())
        .arg("--resolv-conf")
        .arg(resolv_conf)
        .args(["--upstream-timeout-ms", "500"])
        .env("RUST_LOG", "info,kubelab_dns=debug")
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("start kubelab dns");
    let dns = Dns { child, address };
    // It listens once the cluster's records are in (as CoreDNS, at most 5 s after the start):
    // its first answer already has them, never a SERVFAIL of a server that has not synced.
    let first = eventually("kubelab dns answers", DEADLINE, || {
        query(
            address,
            "kubernetes.default.svc.cluster.local.",
            RecordType::A,
            false,
        )
    });
    assert_eq!(records(&first), ["A 10.96.0.1"], "{first:?}");
    dns
}

/// One query over UDP (or TCP), or None when nothing answered within a second.
fn query(server: SocketAddr, name: &str, qtype: RecordType, tcp: bool) -> Option<Message> {
    let mut message = Message::query();
    message.metadata.recursion_desired = true;
    message.add_query(Query::query(Name::from_ascii(name).expect("name"), qtype));
    let bytes = message.to_vec().expect("encode");
    let answer = if tcp {
        use std::io::{Read, Write};
        let mut stream =
            std::net::TcpStream::connect_timeout(&server, Duration::from_secs(1)).ok()?;
        stream.set_read_timeout(Some(Duration::from_secs(3))).ok()?;
        let mut framed = (bytes.len() as u16).to_be_bytes().to_vec();
        framed.extend_from_slice(&bytes);
        stream.write_all(&framed).ok()?;
        let mut length = [0u8; 2];
        stream.read_exact(&mut length).ok()?;
        let mut answer = vec![0u8; u16::from_be_bytes(length) as usize];
        stream.read_exact(&mut answer).ok()?;
        answer
    } else {
        let socket = UdpSocket::bind("127.0.0.1:0").ok()?;
        socket.set_read_timeout(Some(Duration::from_secs(3))).ok()?;
        socket.send_to(&bytes, server).ok()?;
        let mut buffer = vec![0u8; 4096];
        let (n, _) = socket.recv_from(&mut buffer).ok()?;
        buffer.truncate(n);
        buffer
    };
    let answer = Message::from_vec(&answer).expect("decode the answer");
    assert_eq!(
        answer.metadata.id, message.metadata.id,
        "answer to another query"
    );
    Some(answer)
}

fn ask(dns: &Dns, name: &str, qtype: RecordType) -> Message {
    query(dns.address, name, qtype, false).unwrap_or_else(|| panic!("no answer for {name}"))
}

/// The answer section as text, sorted (`A 10.96.0.20`, `CNAME web.default.svc...`).
fn records(message: &Message) -> Vec<String> {
    let mut out: Vec<String> = message
        .answers
        .iter()
        .map(|r| format!("{} {}", r.record_type(), r.data))
        .collect();
    out.sort();
    out
}

fn soa_in_authority(message: &Message) -> bool {
    message
        .authorities
        .iter()
        .any(|r| r.record_type() == RecordType::SOA)
}

/// A nameserver on `address`:53 answering `outside.example.` with 192.0.2.10 and NXDOMAIN for
/// anything else; runs until the test process ends.
fn fake_upstream(address: IpAddr) {
    let socket = UdpSocket::bind((address, 53)).expect("bind the fake upstream on port 53");
    std::thread::spawn(move || {
        let mut buffer = vec![0u8; 4096];
        while let Ok((n, from)) = socket.recv_from(&mut buffer) {
            let Ok(request) = Message::from_vec(&buffer[..n]) else {
                continue;
            };
            let mut answer = Message::response(request.metadata.id, request.metadata.op_code);
            answer.metadata.recursion_available = true;
            answer.add_queries(request.queries.clone());
            let asked = request.queries.first().cloned();
            match asked {
                Some(q)
                    if q.name().to_lowercase().to_string() == "outside.example."
                        && q.query_type() == RecordType::A =>
                {
                    answer.add_answer(Record::from_rdata(
                        q.name().clone(),
                        60,
                        RData::A(A::new(192, 0, 2, 10)),
                    ));
                }
                _ => answer.metadata.response_code = ResponseCode::NXDomain,
            }
            let _ = socket.send_to(&answer.to_vec().expect("encode"), from);
        }
    });
}

/// A loopback address of its own for this test process (127.53.x.y), so parallel runs do not
/// share port 53.
fn loopback_address(n: u8) -> IpAddr {
    let pid = std::process::id();
    IpAddr::from([127, 53, (pid % 250) as u8, n])
}

const OBJECTS: &str = r#"
apiVersion: v1
kind: Service
metadata: {name: web, namespace: default}
spec:
  ports: [{name: http, port: 80, protocol: TCP}]
---
apiVersion: v1
kind: Service
metadata: {name: db, namespace: default}
spec:
  clusterIP: None
  ports: [{name: pg, port: 5432, protocol: TCP}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: db-1
  namespace: default
  labels: {kubernetes.io/service-name: db}
addressType: IPv4
ports: [{name: pg, port: 5432, protocol: TCP}]
endpoints:
- addresses: [10.244.1.5]
  hostname: db-0
  conditions: {ready: true}
- addresses: [10.244.2.7]
  conditions: {ready: true}
- addresses: [10.244.3.9]
  conditions: {ready: false}
---
apiVersion: v1
kind: Service
metadata: {name: ext, namespace: default}
spec:
  type: ExternalName
  externalName: web.default.svc.cluster.local
---
apiVersion: v1
kind: Service
metadata: {name: ext-out, namespace: default}
spec:
  type: ExternalName
  externalName: outside.example
"#;

#[test]
fn records_like_coredns_kubernetes_plugin() {
    let server = TestServer::start();
    let k = Kubectl::new("1.32");
    server.ok_stdin(&k, &["apply", "-f", "-"], OBJECTS);
    let web_ip = server.ok(
        &k,
        &["get", "svc", "web", "-o", "jsonpath={.spec.clusterIP}"],
    );
    let upstream = loopback_address(1);
    fake_upstream(upstream);
    let resolv_conf = server.root().join("resolv.conf");
    std::fs::write(
        &resolv_conf,
        format!("search example\nnameserver {upstream}\n"),
    )
    .unwrap();
    let dns = start_dns(&server, &resolv_conf);

    // A Service: its ClusterIP, any case, over UDP and TCP; AAAA of it: NODATA with the SOA.
    let a = ask(&dns, "web.default.svc.cluster.local.", RecordType::A);
    assert_eq!(records(&a), [format!("A {web_ip}")]);
    assert!(a.metadata.authoritative);
    assert_eq!(a.answers[0].ttl, 5);
    let a = query(
        dns.address,
        "WEB.default.svc.Cluster.Local.",
        RecordType::A,
        true,
    )
    .unwrap();
    assert_eq!(records(&a), [format!("A {web_ip}")]);
    let aaaa = ask(&dns, "web.default.svc.cluster.local.", RecordType::AAAA);
    assert_eq!(aaaa.metadata.response_code, ResponseCode::NoError);
    assert!(aaaa.answers.is_empty() && soa_in_authority(&aaaa));

    // NXDOMAIN (with the SOA) for what does not exist; NODATA for an existing namespace.
    for name in [
        "missing.default.svc.cluster.local.",
        "web.nowhere.svc.cluster.local.",
        "web.default.svc.cluster.local.default.svc.cluster.local.",
        "nowhere.svc.cluster.local.",
    ] {
        let m = ask(&dns, name, RecordType::A);
        assert_eq!(m.metadata.response_code, ResponseCode::NXDomain, "{name}");
        assert!(soa_in_authority(&m), "{name}");
    }
    let m = ask(&dns, "default.svc.cluster.local.", RecordType::A);
    assert_eq!(m.metadata.response_code, ResponseCode::NoError);
    assert!(m.answers.is_empty());

    // Headless: one record per ready endpoint; endpoints by hostname or dashed address.
    let m = ask(&dns, "db.default.svc.cluster.local.", RecordType::A);
    assert_eq!(records(&m), ["A 10.244.1.5", "A 10.244.2.7"]);
    let m = ask(&dns, "db-0.db.default.svc.cluster.local.", RecordType::A);
    assert_eq!(records(&m), ["A 10.244.1.5"]);
    let m = ask(
        &dns,
        "10-244-2-7.db.default.svc.cluster.local.",
        RecordType::A,
    );
    assert_eq!(records(&m), ["A 10.244.2.7"]);

    // SRV for named ports, with the targets' addresses as additional records.
    let m = ask(
        &dns,
        "_http._tcp.web.default.svc.cluster.local.",
        RecordType::SRV,
    );
    assert_eq!(records(&m), ["SRV 0 100 80 web.default.svc.cluster.local."]);
    assert_eq!(m.additionals[0].data.to_string(), web_ip);
    let m = ask(
        &dns,
        "_pg._tcp.db.default.svc.cluster.local.",
        RecordType::SRV,
    );
    assert_eq!(
        records(&m),
        [
            "SRV 0 50 5432 10-244-2-7.db.default.svc.cluster.local.",
            "SRV 0 50 5432 db-0.db.default.svc.cluster.local."
        ]
    );
    let m = ask(
        &dns,
        "_nope._tcp.web.default.svc.cluster.local.",
        RecordType::SRV,
    );
    assert_eq!(m.metadata.response_code, ResponseCode::NXDomain);

    // Reverse lookups: a Service IP and a headless endpoint.
    let octets: Vec<&str> = web_ip.split('.').rev().collect();
    let m = ask(
        &dns,
        &format!("{}.in-addr.arpa.", octets.join(".")),
        RecordType::PTR,
    );
    assert_eq!(records(&m), ["PTR web.default.svc.cluster.local."]);
    let m = ask(&dns, "5.1.244.10.in-addr.arpa.", RecordType::PTR);
    assert_eq!(records(&m), ["PTR db-0.db.default.svc.cluster.local."]);

    // ExternalName: a CNAME, followed inside the cluster and upstream.
    let m = ask(&dns, "ext.default.svc.cluster.local.", RecordType::A);
    assert_eq!(
        records(&m),
        [
            format!("A {web_ip}"),
            "CNAME web.default.svc.cluster.local.".into()
        ]
    );
    let m = ask(&dns, "ext-out.default.svc.cluster.local.", RecordType::A);
    assert_eq!(records(&m), ["A 192.0.2.10", "CNAME outside.example."]);

    // An answer over the client's UDP size (512 bytes without EDNS) comes back truncated,
    // and whole over TCP.
    let addresses: Vec<String> = (1..=60).map(|i| format!("10.244.9.{i}")).collect();
    server.ok_stdin(
        &k,
        &["apply", "-f", "-"],
        &format!(
            "apiVersion: v1\nkind: Service\nmetadata: {{name: many}}\nspec: {{clusterIP: None}}\n---\n\
             apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {{name: many-1, labels: {{kubernetes.io/service-name: many}}}}\n\
             addressType: IPv4\nendpoints: [{}]\n",
            addresses
                .iter()
                .map(|a| format!("{{addresses: [{a}]}}"))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    );
    let m = eventually("the big headless Service", DEADLINE, || {
        let m = query(
            dns.address,
            "many.default.svc.cluster.local.",
            RecordType::A,
            true,
        )?;
        (m.answers.len() == 60).then_some(m)
    });
    assert!(!m.metadata.truncation);
    let m = ask(&dns, "many.default.svc.cluster.local.", RecordType::A);
    assert_eq!(m.metadata.response_code, ResponseCode::NoError);
    assert!(m.metadata.truncation && m.answers.is_empty());

    // Pods by address.
    let m = ask(&dns, "10-244-1-5.default.pod.cluster.local.", RecordType::A);
    assert_eq!(records(&m), ["A 10.244.1.5"]);

    // A message of two questions: FORMERR (an answer, not silence).
    let mut two = Message::query();
    two.add_query(Query::query(
        Name::from_ascii("web.default.svc.cluster.local.").unwrap(),
        RecordType::A,
    ));
    two.add_query(Query::query(
        Name::from_ascii("db.default.svc.cluster.local.").unwrap(),
        RecordType::A,
    ));
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(3)))
        .unwrap();
    socket.send_to(&two.to_vec().unwrap(), dns.address).unwrap();
    let mut buffer = vec![0u8; 4096];
    let n = socket
        .recv(&mut buffer)
        .expect("an answer to a two-question message");
    let m = Message::from_vec(&buffer[..n]).unwrap();
    assert_eq!(m.metadata.response_code, ResponseCode::FormErr);

    // Other names go upstream; answers and NXDOMAIN are relayed as they are.
    let m = ask(&dns, "outside.example.", RecordType::A);
    assert_eq!(records(&m), ["A 192.0.2.10"]);
    assert!(!m.metadata.authoritative);
    let m = ask(&dns, "missing.example.", RecordType::A);
    assert_eq!(m.metadata.response_code, ResponseCode::NXDomain);

    // Changes show within moments: an endpoint turns unready, a Service appears.
    server.ok(
        &k,
        &[
            "patch",
            "endpointslice",
            "db-1",
            "--type=json",
            "-p",
            r#"[{"op":"replace","path":"/endpoints/1/conditions/ready","value":false}]"#,
        ],
    );
    eventually(
        "the unready endpoint leaves the headless Service",
        DEADLINE,
        || {
            let m = ask(&dns, "db.default.svc.cluster.local.", RecordType::A);
            (records(&m) == ["A 10.244.1.5"]).then_some(())
        },
    );
    server.ok(
        &k,
        &["create", "service", "clusterip", "late", "--tcp=8080:8080"],
    );
    let late_ip = server.ok(
        &k,
        &["get", "svc", "late", "-o", "jsonpath={.spec.clusterIP}"],
    );
    eventually("a new Service resolves", DEADLINE, || {
        let m = ask(&dns, "late.default.svc.cluster.local.", RecordType::A);
        (records(&m) == [format!("A {late_ip}")]).then_some(())
    });
    server.ok(&k, &["delete", "service", "late"]);
    eventually("a deleted Service is NXDOMAIN", DEADLINE, || {
        let m = ask(&dns, "late.default.svc.cluster.local.", RecordType::A);
        (m.metadata.response_code == ResponseCode::NXDomain).then_some(())
    });
}

#[test]
fn servfail_when_no_upstream_answers() {
    let server = TestServer::start();
    // Nothing listens there: every upstream query fails at once.
    let resolv_conf = server.root().join("resolv.conf");
    std::fs::write(
        &resolv_conf,
        format!("nameserver {}\n", loopback_address(2)),
    )
    .unwrap();
    let dns = start_dns(&server, &resolv_conf);
    let m = ask(&dns, "outside.example.", RecordType::A);
    assert_eq!(m.metadata.response_code, ResponseCode::ServFail);
    let m = query(dns.address, "outside.example.", RecordType::A, true).unwrap();
    assert_eq!(m.metadata.response_code, ResponseCode::ServFail);
    // The cluster's own names do not depend on the upstream.
    let m = ask(&dns, "kubernetes.default.svc.cluster.local.", RecordType::A);
    assert_eq!(records(&m), ["A 10.96.0.1"]);
}

#[test]
fn statefulset_pods_by_hostname() {
    // Simulated nodes give pods addresses and readiness: the endpoints controller publishes
    // the StatefulSet pods' hostnames under their governing headless Service.
    let server = TestServer::start_args(&["--fake-nodes", "1"]);
    let k = Kubectl::new("1.32");
    server.ok_stdin(
        &k,
        &["apply", "-f", "-"],
        r#"
apiVersion: v1
kind: Service
metadata: {name: web, namespace: default}
spec:
  clusterIP: None
  selector: {app: web}
  ports: [{name: http, port: 80}]
---
apiVersion: apps/v1
kind: StatefulSet
metadata: {name: web, namespace: default}
spec:
  serviceName: web
  replicas: 2
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers: [{name: web, image: busybox, ports: [{name: http, containerPort: 80}]}]
"#,
    );
    let resolv_conf = server.root().join("resolv.conf");
    std::fs::write(&resolv_conf, "").unwrap();
    let dns = start_dns(&server, &resolv_conf);
    let ip = |pod: &str| {
        eventually(&format!("{pod} has an address"), DEADLINE, || {
            let ip = server.ok(&k, &["get", "pod", pod, "-o", "jsonpath={.status.podIP}"]);
            (!ip.is_empty()).then_some(ip)
        })
    };
    let (ip0, ip1) = (ip("web-0"), ip("web-1"));
    eventually("web-0.web resolves", DEADLINE, || {
        let m = ask(&dns, "web-0.web.default.svc.cluster.local.", RecordType::A);
        (records(&m) == [format!("A {ip0}")]).then_some(())
    });
    eventually("the headless Service has both pods", DEADLINE, || {
        let m = ask(&dns, "web.default.svc.cluster.local.", RecordType::A);
        let mut want = vec![format!("A {ip0}"), format!("A {ip1}")];
        want.sort();
        (records(&m) == want).then_some(())
    });
    let m = ask(
        &dns,
        "_http._tcp.web.default.svc.cluster.local.",
        RecordType::SRV,
    );
    assert_eq!(
        records(&m),
        [
            "SRV 0 50 80 web-0.web.default.svc.cluster.local.",
            "SRV 0 50 80 web-1.web.default.svc.cluster.local."
        ]
    );
}

// ---------------------------------------------------------------------------------------------
// End to end on a three-node `kubelab up` cluster: the `coredns` addon behind 10.96.0.10 (routed
// by the agents' service proxy), asked from pods of a busybox image with busybox's nslookup and
// wget. They need a Docker engine (as tests/cluster.rs); `KUBELAB_NODE_IMAGE` names another
// node image to use (built from this binary).

mod cluster {
    use std::sync::OnceLock;

    use super::common::eventually;
    pub use super::docker_support::WAIT;
    use super::docker_support::{build_test_image, engine_with_node_image};

    pub const IMAGE: &str = "kubelab-test/busybox:1";

    fn node_image() -> Option<String> {
        std::env::var("KUBELAB_NODE_IMAGE").ok()
    }

    /// Panics unless a Docker engine answers; builds the node image from this binary and the
    /// busybox test image, once per test run.
    fn require_docker() {
        static READY: OnceLock<Result<(), String>> = OnceLock::new();
        let ready = READY.get_or_init(|| {
            let scratch = std::env::temp_dir().join("kubelab-dns-tests.kubeconfig");
            engine_with_node_image(&scratch, node_image().as_deref())?;
            build_test_image(IMAGE)
        });
        if let Err(message) = ready {
            panic!("{message}");
        }
    }

    pub use super::docker_support::Lab as Cluster;

    impl Cluster {
        /// `kubelab up --name NAME --nodes N`, the test image loaded, every node Ready.
        pub fn with_nodes(name: &str, nodes: usize) -> Cluster {
            require_docker();
            let cluster = Cluster::new(name);
            let nodes = nodes.to_string();
            let mut args = vec!["--nodes", &nodes];
            let image = node_image();
            if let Some(image) = &image {
                args.extend(["--image", image]);
            }
            cluster.up(&args);
            cluster.load(IMAGE);
            cluster
        }

        /// Waits until every pod with label app=APP (COUNT of them) is Running and ready.
        pub fn wait_ready(&self, app: &str, count: usize) {
            eventually(&format!("{count} ready pods app={app}"), WAIT, || {
                let out = self.kubectl(&[
                    "get",
                    "pods",
                    "-l",
                    &format!("app={app}"),
                    "--no-headers",
                    "-o",
                    "custom-columns=PHASE:.status.phase,READY:.status.containerStatuses[0].ready",
                ]);
                let ready = out
                    .stdout
                    .lines()
                    .filter(|l| l.split_whitespace().collect::<Vec<_>>() == ["Running", "true"])
                    .count();
                (ready == count && out.stdout.lines().count() == count).then_some(())
            });
        }
    }
}

/// A pod that waits (the client asking the questions).
fn client_pod(name: &str) -> String {
    format!(
        r#"apiVersion: v1
kind: Pod
metadata: {{name: {name}, labels: {{app: {name}}}}}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: main
    image: {}
    command: ["sh", "-c", "trap 'exit 0' TERM; while :; do sleep 1; done"]
"#,
        cluster::IMAGE
    )
}

/// Pods of busybox httpd on port 8080 answering with their own name.
fn web_pod_template() -> String {
    format!(
        r#"
    metadata: {{labels: {{app: web}}}}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
      - name: main
        image: {}
        ports: [{{name: http, containerPort: 8080}}]
        env:
        - name: POD
          valueFrom: {{fieldRef: {{fieldPath: metadata.name}}}}
        command:
        - sh
        - -c
        - |
          mkdir -p /www && echo $POD > /www/index.html
          trap 'exit 0' TERM
          httpd -f -p 8080 -h /www &
          wait
"#,
        cluster::IMAGE
    )
}

/// The addresses busybox's nslookup printed for the name it was asked (after its `Name:`).
fn nslookup_addresses(output: &str) -> Vec<String> {
    let mut out: Vec<String> = output
        .split("Name:")
        .skip(1)
        .flat_map(|block| {
            block
                .lines()
                .filter_map(|l| l.trim().strip_prefix("Address:"))
                .map(|a| a.trim().to_owned())
                .collect::<Vec<_>>()
        })
        .collect();
    out.sort();
    out.dedup();
    out
}

/// Acceptance 2 (the names), 4 and 5 of issue 7: Service names through a pod's search path,
/// headless Services and StatefulSet pod names, ExternalName, SRV, reverse lookups, and names
/// only Docker's embedded DNS on the cluster network knows, forwarded from the DNS pods on the
/// nodes' network.
#[test]
fn cluster_dns_from_pods() {
    let lab = cluster::Cluster::with_nodes("kl-dns", 3);
    lab.apply(&client_pod("client"));
    // The other DNS policies: the node's resolver, none plus dnsConfig, and the cluster's for a
    // pod in the node's network namespace.
    let policy_pod = |name: &str, spec: &str| {
        client_pod(name).replace(
            "  terminationGracePeriodSeconds: 1\n",
            &format!("  terminationGracePeriodSeconds: 1\n{spec}"),
        )
    };
    lab.apply(&policy_pod("dns-default", "  dnsPolicy: Default\n"));
    lab.apply(&policy_pod(
        "dns-none",
        "  dnsPolicy: None\n  dnsConfig:\n    nameservers: [10.96.0.10]\n    searches: [example.test]\n    options: [{name: ndots, value: \"2\"}, {name: edns0}]\n",
    ));
    lab.apply(&policy_pod(
        "dns-hostnet",
        "  hostNetwork: true\n  dnsPolicy: ClusterFirstWithHostNet\n",
    ));
    for pod in ["client", "dns-default", "dns-none", "dns-hostnet"] {
        lab.wait_ready(pod, 1);
    }
    lab.wait_ready_dns();

    // The pod's resolv.conf: the cluster DNS first, the search path, ndots:5.
    let resolv = lab.sh("client", "cat /etc/resolv.conf").stdout;
    assert!(resolv.contains("nameserver 10.96.0.10"), "{resolv}");
    assert!(
        resolv.contains("search default.svc.cluster.local svc.cluster.local cluster.local"),
        "{resolv}"
    );
    assert!(resolv.contains("ndots:5"), "{resolv}");
    let resolv = lab.sh("dns-default", "cat /etc/resolv.conf").stdout;
    assert!(resolv.contains("nameserver 127.0.0.11"), "{resolv}");
    let resolv = lab.sh("dns-none", "cat /etc/resolv.conf").stdout;
    assert_eq!(
        resolv.lines().filter(|l| !l.is_empty()).collect::<Vec<_>>(),
        [
            "search example.test",
            "nameserver 10.96.0.10",
            "options ndots:2 edns0"
        ],
        "{resolv}"
    );
    // From the node's network namespace too (the proxy's OUTPUT path to the DNS pods).
    let resolv = lab.sh("dns-hostnet", "cat /etc/resolv.conf").stdout;
    assert!(resolv.contains("nameserver 10.96.0.10"), "{resolv}");
    let out = lab.sh(
        "dns-hostnet",
        "nslookup kube-dns.kube-system.svc.cluster.local",
    );
    assert_eq!(
        nslookup_addresses(&out.stdout),
        ["10.96.0.10"],
        "{}{}",
        out.stdout,
        out.stderr
    );

    // Acceptance 2's names: a Deployment of 3 httpd behind the ClusterIP Service `web`.
    lab.apply(&format!(
        r#"apiVersion: apps/v1
kind: Deployment
metadata: {{name: web}}
spec:
  replicas: 3
  selector: {{matchLabels: {{app: web}}}}
  template:{}
---
apiVersion: v1
kind: Service
metadata: {{name: web}}
spec:
  selector: {{app: web}}
  ports: [{{name: http, port: 80, targetPort: 8080}}]
"#,
        web_pod_template()
    ));
    lab.wait_ready("web", 3);
    let web_ip = lab.ok(&["get", "svc", "web", "-o", "jsonpath={.spec.clusterIP}"]);
    for url in [
        "http://web",
        "http://web.default",
        "http://web.default.svc.cluster.local",
    ] {
        eventually(
            &format!("{url} answers from a pod"),
            Duration::from_secs(60),
            || {
                // (busybox's `wget -T` crashes in this build: `timeout` bounds it instead)
                let out = lab.sh("client", &format!("timeout 10 wget -q -O- {url}"));
                (out.success() && out.stdout.trim().starts_with("web-")).then_some(())
            },
        );
    }
    let out = lab.sh("client", "nslookup web");
    assert_eq!(
        nslookup_addresses(&out.stdout),
        vec![web_ip.clone()],
        "{}",
        out.stdout
    );

    // Reverse lookup of a Service IP.
    let out = lab.sh("client", "nslookup 10.96.0.10");
    assert!(
        out.stdout
            .contains("kube-dns.kube-system.svc.cluster.local"),
        "{}{}",
        out.stdout,
        out.stderr
    );
    let out = lab.sh("client", &format!("nslookup {web_ip}"));
    assert!(
        out.stdout.contains("web.default.svc.cluster.local"),
        "{}",
        out.stdout
    );

    // SRV for the named port.
    let out = lab.sh(
        "client",
        "nslookup -type=srv _http._tcp.web.default.svc.cluster.local",
    );
    assert!(
        out.stdout
            .contains("0 100 80 web.default.svc.cluster.local"),
        "{}{}",
        out.stdout,
        out.stderr
    );

    // Acceptance 5: another node container's name, known only to Docker's embedded DNS on the
    // cluster network, through the pod's search path and the DNS pods' upstream.
    let node = format!("{}-agent-1", lab.name);
    let node_ip = lab.ok(&[
        "get",
        "node",
        &node,
        "-o",
        "jsonpath={.status.addresses[?(@.type==\"InternalIP\")].address}",
    ]);
    // busybox's nslookup tries only the search domains with a short name: ask for the full
    // name (trailing dot); the libc resolver (wget) goes through the search path to the bare
    // name, as any program in a pod does.
    let out = lab.sh("client", &format!("nslookup {node}."));
    assert_eq!(
        nslookup_addresses(&out.stdout),
        vec![node_ip.clone()],
        "{}{}",
        out.stdout,
        out.stderr
    );
    let out = lab.sh(
        "client",
        &format!("timeout 10 wget -O- http://{node}:10250/ 2>&1"),
    );
    assert!(
        out.stdout.contains(&format!("({node_ip}:10250)")),
        "{}{}",
        out.stdout,
        out.stderr
    );

    // ExternalName: a CNAME (here to that node's name, followed upstream).
    lab.apply(&format!(
        "apiVersion: v1\nkind: Service\nmetadata: {{name: outside}}\nspec: {{type: ExternalName, externalName: {node}}}\n"
    ));
    eventually(
        "the ExternalName Service is a CNAME",
        Duration::from_secs(30),
        || {
            let out = lab.sh(
                "client",
                "nslookup -type=cname outside.default.svc.cluster.local",
            );
            out.stdout
                .contains(&format!("canonical name = {node}"))
                .then_some(())
        },
    );
    let out = lab.sh("client", "nslookup outside.default.svc.cluster.local");
    assert!(out.stdout.contains(&node_ip), "{}", out.stdout);

    // Acceptance 4: a headless Service of a StatefulSet resolves to its 3 pod IPs, and each pod
    // by name (the ClusterIP `web` makes way for the StatefulSet's governing Service).
    lab.ok(&["delete", "deployment", "web"]);
    lab.ok(&["delete", "service", "web"]);
    // The Deployment's pods carry the same label and stay Running while they terminate: wait
    // until they are gone, or they would pass for the StatefulSet's pods below.
    lab.wait_ready("web", 0);
    lab.apply(&format!(
        r#"apiVersion: v1
kind: Service
metadata: {{name: web}}
spec:
  clusterIP: None
  selector: {{app: web}}
  ports: [{{name: http, port: 8080}}]
---
apiVersion: apps/v1
kind: StatefulSet
metadata: {{name: web}}
spec:
  serviceName: web
  replicas: 3
  podManagementPolicy: Parallel
  selector: {{matchLabels: {{app: web}}}}
  template:{}
"#,
        web_pod_template()
    ));
    lab.wait_ready("web", 3);
    let pod_ip = |pod: &str| lab.ok(&["get", "pod", pod, "-o", "jsonpath={.status.podIP}"]);
    let mut ips: Vec<String> = ["web-0", "web-1", "web-2"]
        .iter()
        .map(|p| pod_ip(p))
        .collect();
    ips.sort();
    eventually(
        "the headless Service has the 3 pod IPs",
        Duration::from_secs(30),
        || {
            let out = lab.sh("client", "nslookup web.default.svc.cluster.local");
            (nslookup_addresses(&out.stdout) == ips).then_some(())
        },
    );
    let out = lab.sh("client", "nslookup web-0.web.default.svc.cluster.local");
    assert_eq!(
        nslookup_addresses(&out.stdout),
        [pod_ip("web-0")],
        "{}",
        out.stdout
    );
    let out = lab.sh("client", "timeout 10 wget -q -O- http://web-0.web:8080");
    assert_eq!(out.stdout.trim(), "web-0", "{}", out.stderr);
    let out = lab.sh(
        "client",
        "nslookup -type=srv _http._tcp.web.default.svc.cluster.local",
    );
    for pod in ["web-0", "web-1", "web-2"] {
        assert!(
            out.stdout
                .contains(&format!("8080 {pod}.web.default.svc.cluster.local")),
            "{}",
            out.stdout
        );
    }

    // NXDOMAIN for a name that does not exist anywhere.
    let out = lab.sh("client", "nslookup nothing-here.default.svc.cluster.local");
    assert!(
        !out.success() || out.stdout.contains("NXDOMAIN"),
        "{}",
        out.stdout
    );
}

impl cluster::Cluster {
    /// The DNS pods ready and the cluster's names answered through 10.96.0.10.
    fn wait_ready_dns(&self) {
        eventually("cluster DNS answers on 10.96.0.10", cluster::WAIT, || {
            let out = self.sh(
                "client",
                "nslookup kubernetes.default.svc.cluster.local 10.96.0.10",
            );
            nslookup_addresses(&out.stdout)
                .contains(&"10.96.0.1".to_owned())
                .then_some(())
        });
    }
}
