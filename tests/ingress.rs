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

use common::{eventually, run_with_deadline, Kubectl};
use docker_support::{build_test_image, engine_with_node_image, Lab, WAIT};

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
    lab: Lab,
    http: u16,
    https: u16,
}

impl std::ops::Deref for Cluster {
    type Target = Lab;
    fn deref(&self) -> &Lab {
        &self.lab
    }
}

impl Cluster {
    fn up(name: &str) -> Cluster {
        require_docker();
        let cluster = Cluster {
            lab: Lab::new(name),
            http: free_port(),
            https: free_port(),
        };
        let http = format!("127.0.0.1:{}:80", cluster.http);
        let https = format!("127.0.0.1:{}:443", cluster.https);
        cluster
            .lab
            .up(&["--nodes", "3", "--port", &http, "--port", &https]);
        cluster.load(IMAGE);
        cluster.wait_nodes_ready(3);
        cluster
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
    cmd.args([
        "-sS",
        "--max-time",
        "10",
        "-w",
        "\n%{http_code} %{redirect_url}",
    ])
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
    let (cert, key) = (
        dir.join(format!("{host}.crt")),
        dir.join(format!("{host}.key")),
    );
    let out = Command::new("openssl")
        .args([
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj",
        ])
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
        lab.get("a.test", "/api")
            .ok()
            .filter(|r| r.is(200, "b /api"))
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
    eventually(
        "HTTPS for s.test with the Secret's certificate",
        WAIT,
        || {
            curl(&[
                "--resolve",
                &resolve,
                "--cacert",
                &cert.to_string_lossy(),
                &url,
            ])
            .ok()
            .filter(|r| r.is(200, "b /"))
        },
    );
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
        lab.get("a.test", "/api")
            .ok()
            .filter(|r| r.is(200, "b /api"))
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
    let status = lab.ok(&[
        "get",
        "ingress",
        "web",
        "-o",
        "jsonpath={.status.loadBalancer.ingress}",
    ]);
    assert_eq!(
        status.trim(),
        "",
        "the Ingress status outlived the controller"
    );
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

// ---------------------------------------------------------------------------------------
// The proxy's features against `kubelab server` on the host (no Docker): `kubelab ingress`
// runs as a child process on loopback ports with the admin kubeconfig; the backends are
// HTTP servers of this test on 127.0.0.1, named by hand-made EndpointSlices.

mod local {
    use std::convert::Infallible;
    use std::io::{Read, Write};
    use std::net::{SocketAddr, TcpStream};
    use std::process::{Child, Stdio};
    use std::sync::Arc;

    use bytes::Bytes;
    use http_body_util::{BodyExt, Full, StreamBody};
    use hyper::body::{Frame, Incoming};
    use hyper::{Request, Response};
    use hyper_util::rt::{TokioExecutor, TokioIo};
    use tokio::sync::Notify;

    use super::*;

    pub type Body = http_body_util::combinators::BoxBody<Bytes, Infallible>;

    /// A `kubelab ingress` child process, killed on drop.
    pub struct Controller {
        pub child: Child,
        pub http: u16,
        pub https: u16,
    }

    impl Drop for Controller {
        fn drop(&mut self) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }

    pub fn start_controller(server: &common::TestServer) -> Controller {
        let (http, https) = (free_port(), free_port());
        let log = std::fs::File::create(server.root().join("ingress.log")).expect("log");
        let child = Command::new(common::kubelab_bin())
            .args(["ingress", "--kubeconfig"])
            .arg(server.kubeconfig_path())
            .args(["--http-listen", &format!("127.0.0.1:{http}")])
            .args(["--https-listen", &format!("127.0.0.1:{https}")])
            .args(["--publish-status-address", "127.0.0.1"])
            .env("RUST_LOG", "info,kubelab_ingress=debug")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start kubelab ingress");
        Controller { child, http, https }
    }

    fn text(body: String) -> Response<Body> {
        Response::new(Full::new(Bytes::from(body)).boxed())
    }

    /// The echo backend: the request as text; `/stream` sends "first", then "second" once
    /// `release` is notified; an Upgrade request gets 101 and its bytes echoed.
    async fn echo(
        name: &'static str,
        mut request: Request<Incoming>,
        release: Arc<Notify>,
    ) -> Result<Response<Body>, Infallible> {
        if request.headers().contains_key("upgrade") {
            let upgrade = hyper::upgrade::on(&mut request);
            tokio::spawn(async move {
                if let Ok(upgraded) = upgrade.await {
                    let mut io = TokioIo::new(upgraded);
                    let mut buffer = [0u8; 1024];
                    use tokio::io::{AsyncReadExt, AsyncWriteExt};
                    while let Ok(n) = io.read(&mut buffer).await {
                        if n == 0 || io.write_all(&buffer[..n]).await.is_err() {
                            break;
                        }
                    }
                }
            });
            let mut response = Response::new(Full::new(Bytes::new()).boxed());
            *response.status_mut() = http::StatusCode::SWITCHING_PROTOCOLS;
            response
                .headers_mut()
                .insert("upgrade", "websocket".parse().unwrap());
            response
                .headers_mut()
                .insert("connection", "Upgrade".parse().unwrap());
            return Ok(response);
        }
        if request.uri().path() == "/stream" {
            let stream = futures::stream::unfold(0, move |step| {
                let release = release.clone();
                async move {
                    match step {
                        0 => Some((Ok(Frame::data(Bytes::from("first\n"))), 1)),
                        1 => {
                            release.notified().await;
                            Some((Ok(Frame::data(Bytes::from("second\n"))), 2))
                        }
                        _ => None,
                    }
                }
            });
            return Ok(Response::new(StreamBody::new(stream).boxed()));
        }
        let mut out = format!(
            "backend={name}\nversion={:?}\npath={}\n",
            request.version(),
            request
                .uri()
                .path_and_query()
                .map(|p| p.as_str())
                .unwrap_or("")
        );
        for header in [
            "host",
            "x-forwarded-for",
            "x-real-ip",
            "x-forwarded-host",
            "x-forwarded-port",
            "x-forwarded-proto",
        ] {
            let value = request
                .headers()
                .get(header)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("");
            out.push_str(&format!("{header}={value}\n"));
        }
        let body = request
            .into_body()
            .collect()
            .await
            .map(|b| b.to_bytes().len());
        out.push_str(&format!("body={}\n", body.unwrap_or(0)));
        Ok(text(out))
    }

    /// Serves the echo backend on a loopback port (over TLS with `tls`); its address.
    pub async fn backend(
        name: &'static str,
        tls: Option<tokio_rustls::TlsAcceptor>,
        release: Arc<Notify>,
    ) -> SocketAddr {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let (tls, release) = (tls.clone(), release.clone());
                tokio::spawn(async move {
                    let service =
                        hyper::service::service_fn(move |r| echo(name, r, release.clone()));
                    let builder =
                        hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
                    let _ = match tls {
                        Some(acceptor) => match acceptor.accept(stream).await {
                            Ok(s) => {
                                builder
                                    .serve_connection_with_upgrades(TokioIo::new(s), service)
                                    .await
                            }
                            Err(_) => return,
                        },
                        None => {
                            builder
                                .serve_connection_with_upgrades(TokioIo::new(stream), service)
                                .await
                        }
                    };
                });
            }
        });
        address
    }

    /// A TLS acceptor with a throw-away self-signed certificate.
    pub fn tls_acceptor() -> tokio_rustls::TlsAcceptor {
        let pair = kubelab_pki::generate_ca("backend.test").unwrap();
        let certs = rustls_pemfile::certs(&mut pair.cert_pem.as_bytes())
            .collect::<Result<Vec<_>, _>>()
            .unwrap();
        let key = rustls_pemfile::private_key(&mut pair.key_pem.as_bytes())
            .unwrap()
            .unwrap();
        let config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .unwrap();
        tokio_rustls::TlsAcceptor::from(Arc::new(config))
    }

    /// A Service without selector and its EndpointSlice naming `address`.
    pub fn service(name: &str, address: Option<SocketAddr>) -> String {
        let endpoints = match address {
            Some(a) => format!(
                "endpoints: [{{addresses: [\"{}\"], conditions: {{ready: true}}}}]\nports: [{{name: http, port: {}, protocol: TCP}}]",
                a.ip(),
                a.port()
            ),
            None => "endpoints: []\nports: [{name: http, port: 80, protocol: TCP}]".to_owned(),
        };
        format!(
            "apiVersion: v1\nkind: Service\nmetadata: {{name: {name}}}\nspec:\n  ports: [{{name: http, port: 80, protocol: TCP}}]\n---\napiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata:\n  name: {name}-1\n  labels: {{kubernetes.io/service-name: {name}}}\naddressType: IPv4\n{endpoints}\n---\n"
        )
    }

    /// Sends `request` on a new connection to 127.0.0.1:`port`; reads until `until` is in
    /// what came back (or 5 s passed); the bytes read.
    pub fn raw(stream: &mut TcpStream, request: &[u8], until: &str) -> String {
        stream.set_read_timeout(Some(Duration::from_secs(5))).ok();
        stream.write_all(request).unwrap();
        let mut seen = Vec::new();
        let mut buffer = [0u8; 4096];
        while !String::from_utf8_lossy(&seen).contains(until) {
            match stream.read(&mut buffer) {
                Ok(0) | Err(_) => break,
                Ok(n) => seen.extend_from_slice(&buffer[..n]),
            }
        }
        String::from_utf8_lossy(&seen).into_owned()
    }
}

/// X-Forwarded-* headers, HTTPS on the listener, 503 without endpoints, app-root,
/// proxy-body-size, backend-protocol HTTPS, rewrite-target with capture groups, WebSocket and
/// streaming pass-through, and the status address, against a host `kubelab server`.
#[test]
fn proxy_features_against_a_local_api_server() {
    use std::sync::Arc;
    let server = common::TestServer::start();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let release = Arc::new(tokio::sync::Notify::new());
    let (echo, secure) = runtime.block_on(async {
        (
            local::backend("echo", None, release.clone()).await,
            local::backend("secure", Some(local::tls_acceptor()), release.clone()).await,
        )
    });
    let kubectl = Kubectl::new("1.32");
    let mut manifest = String::from(
        "apiVersion: networking.k8s.io/v1\nkind: IngressClass\nmetadata:\n  name: nginx\n  annotations: {ingressclass.kubernetes.io/is-default-class: \"true\"}\nspec: {controller: k8s.io/ingress-nginx}\n---\n",
    );
    manifest.push_str(&local::service("echo", Some(echo)));
    manifest.push_str(&local::service("secure", Some(secure)));
    manifest.push_str(&local::service("empty", None));
    let ingress = |name: &str, annotations: &str, host: &str, paths: &str| {
        format!(
            "apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata:\n  name: {name}\n  annotations: {{{annotations}}}\nspec:\n  rules:\n  - host: {host}\n    http:\n      paths:\n{paths}---\n"
        )
    };
    manifest.push_str(&ingress(
        "plain",
        "",
        "p.test",
        &format!(
            "{}{}",
            path("/", "Prefix", "echo"),
            path("/none", "Prefix", "empty")
        ),
    ));
    manifest.push_str(&ingress(
        "root",
        "nginx.ingress.kubernetes.io/app-root: /app",
        "root.test",
        &path("/", "Prefix", "echo"),
    ));
    manifest.push_str(&ingress(
        "small",
        "nginx.ingress.kubernetes.io/proxy-body-size: 1k",
        "small.test",
        &path("/", "Prefix", "echo"),
    ));
    manifest.push_str(&ingress(
        "secure",
        "nginx.ingress.kubernetes.io/backend-protocol: HTTPS",
        "b.test",
        &path("/", "Prefix", "secure"),
    ));
    manifest.push_str(&ingress(
        "regex",
        "nginx.ingress.kubernetes.io/rewrite-target: /$2, nginx.ingress.kubernetes.io/use-regex: \"true\"",
        "r.test",
        &path("\"/something(/|$)(.*)\"", "ImplementationSpecific", "echo"),
    ));
    manifest.push_str(&ingress(
        "grpc",
        "nginx.ingress.kubernetes.io/backend-protocol: GRPC",
        "g.test",
        &path("/", "Prefix", "echo"),
    ));
    server.ok_stdin(&kubectl, &["apply", "-f", "-"], &manifest);
    let controller = local::start_controller(&server);
    let get = |host: &str, path: &str, extra: &[&str]| {
        let url = format!("http://127.0.0.1:{}{path}", controller.http);
        let header = format!("Host: {host}");
        let mut args = vec!["-H", header.as_str()];
        args.extend_from_slice(extra);
        args.push(&url);
        curl(&args)
    };
    let first = eventually("the controller serves p.test", WAIT, || {
        get("p.test", "/x?q=1", &[])
            .ok()
            .filter(|r| r.status == 200)
    });
    let port = controller.http.to_string();
    for line in [
        "backend=echo",
        "path=/x?q=1",
        "host=p.test",
        "x-forwarded-for=127.0.0.1",
        "x-real-ip=127.0.0.1",
        "x-forwarded-host=p.test",
        &format!("x-forwarded-port={port}"),
        "x-forwarded-proto=http",
    ] {
        assert!(
            first.body.lines().any(|l| l == line),
            "{line} not in {first:?}"
        );
    }
    // HTTPS on the listener (the fallback certificate: no tls section).
    let resolve = format!("p.test:{}:127.0.0.1", controller.https);
    let url = format!("https://p.test:{}/", controller.https);
    let secure_reply = curl(&["-k", "--resolve", &resolve, &url]).expect("https");
    assert!(
        secure_reply.body.contains("x-forwarded-proto=https"),
        "{secure_reply:?}"
    );
    let none = get("p.test", "/none", &[]).unwrap();
    assert_eq!(none.status, 503, "{none:?}");
    let root = get("root.test", "/", &[]).unwrap();
    assert_eq!(
        (root.status, root.location.as_str()),
        (302, "http://root.test/app")
    );
    let big = "x".repeat(2048);
    let small = get("small.test", "/", &["--data-binary", &big]).unwrap();
    assert_eq!(small.status, 413, "{small:?}");
    let chunked = get(
        "small.test",
        "/",
        &["-H", "Transfer-Encoding: chunked", "--data-binary", &big],
    )
    .unwrap();
    assert_eq!(chunked.status, 413, "{chunked:?}");
    let fits = get("small.test", "/", &["--data-binary", "0123456789"]).unwrap();
    assert!(fits.body.contains("body=10"), "{fits:?}");
    let tls_backend = get("b.test", "/", &[]).unwrap();
    assert!(
        tls_backend.body.contains("backend=secure"),
        "{tls_backend:?}"
    );
    // backend-protocol GRPC: HTTP/2 without TLS to the pod.
    let grpc = get("g.test", "/svc.Echo/Call", &[]).unwrap();
    assert!(
        grpc.body.contains("version=HTTP/2.0") && grpc.body.contains("path=/svc.Echo/Call"),
        "{grpc:?}"
    );
    let rewritten = get("r.test", "/something/new?a=1", &[]).unwrap();
    assert!(rewritten.body.contains("path=/new?a=1"), "{rewritten:?}");

    // WebSocket: the upgrade goes through, then bytes flow both ways.
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", controller.http)).unwrap();
    let head = local::raw(
        &mut stream,
        b"GET /ws HTTP/1.1\r\nHost: p.test\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n",
        "\r\n\r\n",
    );
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    let echoed = local::raw(&mut stream, b"hello through the tunnel", "tunnel");
    assert_eq!(echoed, "hello through the tunnel");
    // A route change (a new Ingress, served once the table is rebuilt) leaves the open
    // connection alone.
    server.ok_stdin(
        &kubectl,
        &["apply", "-f", "-"],
        &ingress("later", "", "l.test", &path("/", "Prefix", "echo")),
    );
    eventually("the new Ingress is served", WAIT, || {
        get("l.test", "/", &[]).ok().filter(|r| r.status == 200)
    });
    let echoed = local::raw(&mut stream, b"still connected", "connected");
    assert_eq!(echoed, "still connected");

    // Streaming: the first chunk arrives while the backend still holds the second.
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", controller.http)).unwrap();
    let part = local::raw(
        &mut stream,
        b"GET /stream HTTP/1.1\r\nHost: p.test\r\n\r\n",
        "first",
    );
    assert!(part.contains("first") && !part.contains("second"), "{part}");
    release.notify_one();
    let rest = local::raw(&mut stream, b"", "second");
    assert!(rest.contains("second"), "{rest}");

    // Status: the configured address.
    eventually("the Ingress status shows 127.0.0.1", WAIT, || {
        let ip = server.ok(
            &kubectl,
            &[
                "get",
                "ingress",
                "plain",
                "-o",
                "jsonpath={.status.loadBalancer.ingress[0].ip}",
            ],
        );
        (ip.trim() == "127.0.0.1").then_some(())
    });
    drop(controller);
}

/// Acceptance 6: with the metallb addon on too, the controller's own Service
/// `ingress-nginx-controller` gets a load-balancer address from the pool, Ingresses answer on
/// it from the host (HTTP and HTTPS), and their status shows it.
#[test]
fn ingress_answers_on_its_load_balancer_address_with_metallb() {
    let lab = Cluster::up("kl-ingress-lb");
    let out = lab.kubelab(&["addons", "enable", "metallb", "--name", &lab.name], WAIT);
    assert!(
        out.success(),
        "kubelab addons enable metallb:\n{}{}",
        out.stdout,
        out.stderr
    );
    lab.enable_ingress();
    let mut manifest = backend("a");
    manifest.push_str(&format!(
        "apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata: {{name: web}}\nspec:\n  rules:\n  - host: lb.test\n    http:\n      paths:\n{}",
        path("/", "Prefix", "web-a"),
    ));
    lab.apply(&manifest);
    lab.ok(&["rollout", "status", "deployment/web-a", "--timeout=180s"]);
    let ip = eventually("ingress-nginx-controller gets an EXTERNAL-IP", WAIT, || {
        let ip = lab.ok(&[
            "-n",
            "ingress-nginx",
            "get",
            "service",
            "ingress-nginx-controller",
            "-o",
            "jsonpath={.status.loadBalancer.ingress[0].ip}",
        ]);
        Some(ip.trim().to_owned()).filter(|ip| !ip.is_empty())
    });
    eventually("lb.test answers on the load-balancer address", WAIT, || {
        curl(&["-H", "Host: lb.test", &format!("http://{ip}/")])
            .ok()
            .filter(|r| r.is(200, "a /"))
    });
    let https = curl(&[
        "-k",
        "--resolve",
        &format!("lb.test:443:{ip}"),
        "https://lb.test/",
    ])
    .expect("HTTPS on the load-balancer address");
    assert!(https.is(200, "a /"), "{https:?}");
    eventually(
        "the Ingress status shows the load-balancer address",
        WAIT,
        || {
            let status = lab.ok(&[
                "get",
                "ingress",
                "web",
                "-o",
                "jsonpath={.status.loadBalancer.ingress[0].ip}",
            ]);
            (status.trim() == ip).then_some(())
        },
    );
    let unknown = curl(&["-H", "Host: nope.test", &format!("http://{ip}/")]).expect("curl");
    assert_eq!(unknown.status, 404, "{unknown:?}");
    // `kubelab addons list` shows the URLs: the published ports and the address.
    let list = lab.kubelab(&["addons", "list", "--name", &lab.name], WAIT);
    let line = list
        .stdout
        .lines()
        .find(|l| l.starts_with("ingress "))
        .unwrap_or_default()
        .to_owned();
    for url in [
        format!("http://127.0.0.1:{}", lab.http),
        format!("https://127.0.0.1:{}", lab.https),
        format!("http://{ip}"),
        format!("https://{ip}"),
    ] {
        assert!(line.contains(&url), "{url} not in {line}");
    }
}
