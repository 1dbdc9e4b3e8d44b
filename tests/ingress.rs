//! The `ingress` addon end to end (issue 9, part I): `kubelab addons enable ingress` on a
//! 3-node `kubelab up` cluster whose server node's ports 80 and 443 are published on free
//! host ports, Ingresses made with the real kubectl, requests sent from the host with curl.
//!
//! The backends are busybox httpd pods whose pages name their Service: `/` answers
//! "<name> /", `/api` answers "<name> /api", and any other path the 404 page "<name> 404" —
//! so every answer says which backend got the request and which path it saw.
//!
//! Like tests/network.rs these need a Docker engine (`.ci/run` starts one) and fail, saying
//! so, without it. A `Cluster` guard runs `kubelab down` even when a test panics.

mod common;
#[path = "common/docker.rs"]
mod docker_support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

use common::{eventually, run_with_deadline, Kubectl, Output};
use docker_support::{build_test_image, engine_with_node_image, kubelab};

const UP_DEADLINE: Duration = Duration::from_secs(400);
const WAIT: Duration = Duration::from_secs(180);
const IMAGE: &str = "kubelab-test/busybox:1";

/// Panics, saying how to start one, unless a Docker engine answers; builds the node image
/// of this binary and the busybox test image once.
fn require_docker() {
    static READY: OnceLock<Result<(), String>> = OnceLock::new();
    let ready = READY.get_or_init(|| {
        let scratch = std::env::temp_dir().join("kubelab-ingress-tests.kubeconfig");
        engine_with_node_image(&scratch, None)?;
        build_test_image(IMAGE).map_err(|e| format!("the busybox test image: {e}"))
    });
    if let Err(message) = ready {
        panic!("{message}");
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// A 3-node cluster with the server node's 80 and 443 published on `http` and `https` of
/// 127.0.0.1 and the test image loaded; removed (`kubelab down`) when dropped.
struct Cluster {
    name: String,
    dir: tempfile::TempDir,
    kubeconfig: PathBuf,
    http: u16,
    https: u16,
}

impl Cluster {
    fn up(name: &str) -> Cluster {
        require_docker();
        let dir = tempfile::tempdir().expect("temp dir");
        let kubeconfig = dir.path().join("config");
        let _ = kubelab(&kubeconfig, &["down", name], Duration::from_secs(60));
        let cluster = Cluster {
            name: name.to_owned(),
            dir,
            kubeconfig,
            http: free_port(),
            https: free_port(),
        };
        let http = format!("127.0.0.1:{}:80", cluster.http);
        let https = format!("127.0.0.1:{}:443", cluster.https);
        let out = cluster.kubelab(
            &[
                "up", "--name", name, "--nodes", "3", "--wait", "180s", "--port", &http,
                "--port", &https,
            ],
            UP_DEADLINE,
        );
        assert!(
            out.success(),
            "kubelab up {name}:\n{}{}",
            out.stdout,
            out.stderr
        );
        let out = cluster.kubelab(&["load", "image", IMAGE, "--name", name], WAIT);
        assert!(
            out.success(),
            "kubelab load image:\n{}{}",
            out.stdout,
            out.stderr
        );
        eventually("3 nodes Ready", WAIT, || {
            let out = cluster.kubectl(&["get", "nodes", "--no-headers"]);
            (out.stdout
                .lines()
                .filter(|l| common::columns(l).get(1) == Some(&"Ready"))
                .count()
                == 3)
                .then_some(())
        });
        cluster
    }

    fn kubelab(&self, args: &[&str], deadline: Duration) -> Output {
        kubelab(&self.kubeconfig, args, deadline)
    }

    fn kubectl(&self, args: &[&str]) -> Output {
        let mut cmd = Command::new(&Kubectl::new("1.32").path);
        cmd.args(args).env("KUBECONFIG", &self.kubeconfig);
        run_with_deadline(cmd, None, Duration::from_secs(60))
    }

    fn ok(&self, args: &[&str]) -> String {
        let out = self.kubectl(args);
        assert!(
            out.success(),
            "kubectl {args:?}:\n{}{}",
            out.stdout,
            out.stderr
        );
        out.stdout
    }

    fn apply(&self, manifest: &str) {
        let mut cmd = Command::new(&Kubectl::new("1.32").path);
        cmd.args(["apply", "-f", "-"])
            .env("KUBECONFIG", &self.kubeconfig);
        let out = run_with_deadline(cmd, Some(manifest), Duration::from_secs(60));
        assert!(
            out.success(),
            "kubectl apply:\n{}{}\n{manifest}",
            out.stdout,
            out.stderr
        );
    }

    fn enable_ingress(&self) {
        let out = self.kubelab(&["addons", "enable", "ingress", "--name", &self.name], WAIT);
        assert!(
            out.success(),
            "kubelab addons enable ingress:\n{}{}",
            out.stdout,
            out.stderr
        );
        self.ok(&[
            "-n",
            "ingress-nginx",
            "rollout",
            "status",
            "deployment/ingress-nginx-controller",
            "--timeout=180s",
        ]);
    }

    /// `GET http://127.0.0.1:<http>PATH` with `Host: HOST`.
    fn get(&self, host: &str, path: &str) -> Result<Reply, String> {
        curl(&[
            "-H",
            &format!("Host: {host}"),
            &format!("http://127.0.0.1:{}{path}", self.http),
        ])
    }

    /// The server node's InternalIP.
    fn server_ip(&self) -> String {
        self.ok(&[
            "get",
            "node",
            &format!("{}-server-0", self.name),
            "-o",
            "jsonpath={.status.addresses[?(@.type==\"InternalIP\")].address}",
        ])
        .trim()
        .to_owned()
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let out = self.kubelab(&["down", &self.name], Duration::from_secs(120));
        if !out.success() {
            eprintln!("cleanup of cluster {} failed: {}", self.name, out.stderr);
        }
    }
}

/// An HTTP answer as curl saw it.
#[derive(Debug, PartialEq)]
struct Reply {
    status: u16,
    body: String,
    /// The `Location` of a redirect (empty otherwise).
    location: String,
}

impl Reply {
    fn is(&self, status: u16, body: &str) -> bool {
        self.status == status && self.body == body
    }
}

/// `curl ARGS` (no retries, 10 s at most).
fn curl(args: &[&str]) -> Result<Reply, String> {
    let mut cmd = Command::new("curl");
    cmd.args(["-sS", "--max-time", "10", "-w", "\n%{http_code} %{redirect_url}"])
        .args(args);
    let out = run_with_deadline(cmd, None, Duration::from_secs(20));
    if !out.success() {
        return Err(format!("curl {args:?}: {}", out.stderr.trim()));
    }
    let (body, tail) = out.stdout.rsplit_once('\n').ok_or(out.stdout.clone())?;
    let (status, location) = tail.split_once(' ').unwrap_or((tail, ""));
    Ok(Reply {
        status: status.parse().map_err(|_| out.stdout.clone())?,
        body: body.trim().to_owned(),
        location: location.trim().to_owned(),
    })
}

/// A Deployment `web-NAME` of busybox httpd pods and its Service `web-NAME` (port 80).
fn backend(name: &str) -> String {
    format!(
        r#"apiVersion: apps/v1
kind: Deployment
metadata: {{name: web-{name}}}
spec:
  replicas: 1
  selector: {{matchLabels: {{app: web-{name}}}}}
  template:
    metadata: {{labels: {{app: web-{name}}}}}
    spec:
      terminationGracePeriodSeconds: 2
      containers:
      - name: httpd
        image: {IMAGE}
        command:
        - sh
        - -c
        - |
          mkdir -p /www /etc
          echo "{name} /" > /www/index.html
          echo "{name} /api" > /www/api
          echo "{name} 404" > /www/404.html
          echo "E404:/www/404.html" > /etc/httpd.conf
          exec httpd -f -p 8080 -h /www -c /etc/httpd.conf
        readinessProbe:
          tcpSocket: {{port: 8080}}
          periodSeconds: 1
---
apiVersion: v1
kind: Service
metadata: {{name: web-{name}}}
spec:
  selector: {{app: web-{name}}}
  ports: [{{name: http, port: 80, targetPort: 8080}}]
---
"#
    )
}

fn path(path: &str, kind: &str, service: &str) -> String {
    format!(
        "      - {{path: {path}, pathType: {kind}, backend: {{service: {{name: {service}, port: {{number: 80}}}}}}}}\n"
    )
}

/// A self-signed certificate and key for `host` (openssl), as files in `dir`.
fn certificate(dir: &Path, host: &str) -> (PathBuf, PathBuf) {
    let (cert, key) = (dir.join(format!("{host}.crt")), dir.join(format!("{host}.key")));
    let out = Command::new("openssl")
        .args(["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj"])
        .arg(format!("/CN={host}"))
        .arg("-addext")
        .arg(format!("subjectAltName=DNS:{host}"))
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .expect("openssl (apt-get install openssl)");
    assert!(
        out.status.success(),
        "openssl: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    (cert, key)
}

/// Acceptance 1–4 and 7 of issue 9 on one cluster: host and path routing (Prefix, Exact),
/// the course's `minimal-ingress` with rewrite-target, TLS from a `kubectl create secret tls`
/// Secret with ssl-redirect, 503/200 following a backend's scale, 404 for unknown hosts, the
/// Ingress status, and `kubelab addons disable ingress` removing everything.
#[test]
fn ingress_addon_routes_tls_scaling_and_disable() {
    let lab = Cluster::up("kl-ingress");
    lab.enable_ingress();
    let controller_pod = |lab: &Cluster| {
        lab.ok(&[
            "-n",
            "ingress-nginx",
            "get",
            "pods",
            "-o",
            "jsonpath={range .items[*]}{.metadata.name} {.status.containerStatuses[0].restartCount}{end}",
        ])
    };
    let controller = controller_pod(&lab);

    // Acceptance 1: host a.test, `/` (Prefix) to A, `/api` (Prefix) to B, `/exact` (Exact)
    // to B.
    let mut manifest = backend("a");
    manifest.push_str(&backend("b"));
    manifest.push_str(&format!(
        "apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata: {{name: web}}\nspec:\n  ingressClassName: nginx\n  rules:\n  - host: a.test\n    http:\n      paths:\n{}{}{}",
        path("/", "Prefix", "web-a"),
        path("/api", "Prefix", "web-b"),
        path("/exact", "Exact", "web-b"),
    ));
    lab.apply(&manifest);
    for name in ["web-a", "web-b"] {
        lab.ok(&[
            "rollout",
            "status",
            &format!("deployment/{name}"),
            "--timeout=180s",
        ]);
    }
    let first = eventually("a.test / reaches A through the mapped port", WAIT, || {
        lab.get("a.test", "/").ok().filter(|r| r.is(200, "a /"))
    });
    assert_eq!(first.body, "a /");
    eventually("a.test /api reaches B", WAIT, || {
        lab.get("a.test", "/api").ok().filter(|r| r.is(200, "b /api"))
    });
    for (path, status, body) in [
        ("/api/v1", 404, "b 404"),
        ("/apix", 404, "a 404"),
        ("/index.html", 200, "a /"),
        ("/exact", 404, "b 404"),
        // An Exact path does not match its sub-paths.
        ("/exact/sub", 404, "a 404"),
    ] {
        let reply = lab.get("a.test", path).expect("curl");
        assert!(reply.is(status, body), "a.test{path}: {reply:?}");
    }
    // Status: the controller's node (no load-balancer address without metallb).
    let server_ip = lab.server_ip();
    eventually("the Ingress status shows the node's address", WAIT, || {
        let ip = lab.ok(&[
            "get",
            "ingress",
            "web",
            "-o",
            "jsonpath={.status.loadBalancer.ingress[0].ip}",
        ]);
        (ip.trim() == server_ip).then_some(())
    });

    // Acceptance 2: the course's example, with an IngressClass of its name.
    lab.apply(
        r#"apiVersion: networking.k8s.io/v1
kind: IngressClass
metadata: {name: nginx-example}
spec: {controller: k8s.io/ingress-nginx}
---
apiVersion: v1
kind: Service
metadata: {name: test}
spec:
  selector: {app: web-a}
  ports: [{port: 80, targetPort: 8080}]
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata:
  name: minimal-ingress
  annotations:
    nginx.ingress.kubernetes.io/rewrite-target: /
spec:
  ingressClassName: nginx-example
  rules:
  - http:
      paths:
      - path: /testpath
        pathType: Prefix
        backend:
          service:
            name: test
            port:
              number: 80
"#,
    );
    eventually("/testpath/x reaches the backend as /", WAIT, || {
        lab.get("any.test", "/testpath/x")
            .ok()
            .filter(|r| r.is(200, "a /"))
    });

    // Acceptance 3: TLS from `kubectl create secret tls`, ssl-redirect.
    let (cert, key) = certificate(lab.dir.path(), "s.test");
    lab.ok(&[
        "create",
        "secret",
        "tls",
        "s-tls",
        "--cert",
        &cert.to_string_lossy(),
        "--key",
        &key.to_string_lossy(),
    ]);
    lab.apply(&format!(
        "apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata: {{name: secure}}\nspec:\n  tls:\n  - hosts: [s.test]\n    secretName: s-tls\n  rules:\n  - host: s.test\n    http:\n      paths:\n{}",
        path("/", "Prefix", "web-b"),
    ));
    let resolve = format!("s.test:{}:127.0.0.1", lab.https);
    let url = format!("https://s.test:{}/", lab.https);
    // curl verifies the served certificate against the Secret's: only that one passes.
    eventually("HTTPS for s.test with the Secret's certificate", WAIT, || {
        curl(&["--resolve", &resolve, "--cacert", &cert.to_string_lossy(), &url])
            .ok()
            .filter(|r| r.is(200, "b /"))
    });
    let fallback = curl(&["--resolve", &resolve, &url]);
    assert!(
        fallback.is_err(),
        "without the CA the certificate must not verify: {fallback:?}"
    );
    let redirect = lab.get("s.test", "/x?y=1").expect("curl");
    assert_eq!(redirect.status, 308, "{redirect:?}");
    assert_eq!(redirect.location, "https://s.test/x?y=1");

    // Acceptance 4: 503 without ready endpoints, 200 again after scaling up, no controller
    // restart; unknown hosts get 404.
    lab.ok(&["scale", "deployment/web-b", "--replicas=0"]);
    let unavailable = eventually("a.test /api answers 503", WAIT, || {
        lab.get("a.test", "/api").ok().filter(|r| r.status == 503)
    });
    assert!(
        !unavailable.body.is_empty() && unavailable.body.len() < 200,
        "{unavailable:?}"
    );
    lab.ok(&["scale", "deployment/web-b", "--replicas=1"]);
    eventually("a.test /api answers 200 again", WAIT, || {
        lab.get("a.test", "/api").ok().filter(|r| r.is(200, "b /api"))
    });
    let unknown = lab.get("unknown.test", "/").expect("curl");
    assert_eq!(unknown.status, 404, "{unknown:?}");
    assert!(
        !unknown.body.is_empty() && unknown.body.len() < 200,
        "{unknown:?}"
    );
    assert_eq!(
        controller_pod(&lab),
        controller,
        "the controller pod changed or restarted"
    );

    // Acceptance 7: disabling removes everything the addon made.
    let out = lab.kubelab(&["addons", "disable", "ingress", "--name", &lab.name], WAIT);
    assert!(out.success(), "disable:\n{}{}", out.stdout, out.stderr);
    eventually("the namespace ingress-nginx is gone", WAIT, || {
        let out = lab.kubectl(&["get", "namespace", "ingress-nginx"]);
        (!out.success() && out.stderr.contains("NotFound")).then_some(())
    });
    for (kind, name) in [
        ("ingressclass", "nginx"),
        ("clusterrole", "ingress-nginx"),
        ("clusterrolebinding", "ingress-nginx"),
    ] {
        let out = lab.kubectl(&["get", kind, name]);
        assert!(
            !out.success() && out.stderr.contains("NotFound"),
            "{kind} {name} is still there: {}",
            out.stdout
        );
    }
    eventually("nothing answers on port 80", WAIT, || {
        lab.get("a.test", "/").is_err().then_some(())
    });
    let list = lab.kubelab(&["addons", "list", "--name", &lab.name], WAIT);
    let line = list
        .stdout
        .lines()
        .find(|l| l.starts_with("ingress "))
        .unwrap_or_default()
        .to_owned();
    assert!(line.contains("disabled"), "{}", list.stdout);
}
