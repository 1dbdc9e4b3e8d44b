//! Joining nodes with the cluster token (issue 5, items 1 and 2; acceptance 8 and 9):
//! `kubelab agent --fake --server URL --token TOKEN` pins the CA before sending credentials,
//! registers a node password, gets its certificates signed, and keeps its node alive through
//! any API server of the store via its client-side load balancer.

mod common;

use std::collections::HashMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{eventually, kubelab_bin, run_with_deadline, Kubectl, Output, TestServer};
use serde_json::Value;

const WAIT: Duration = Duration::from_secs(60);
const AGENT_DEADLINE: Duration = Duration::from_secs(60);

fn k() -> Kubectl {
    Kubectl::new("1.32")
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o777
}

fn node_token(server: &TestServer) -> String {
    let path = server.data_dir().join("node-token");
    assert_eq!(mode(&path), 0o600, "node-token must be private");
    std::fs::read_to_string(path).unwrap().trim().to_owned()
}

/// The `kubelab agent --fake` command joining `url` with `token`.
fn agent_command(url: &str, token: &str, name: &str, data_dir: &Path, extra: &[&str]) -> Command {
    let mut cmd = Command::new(kubelab_bin());
    cmd.env("NO_COLOR", "1")
        .args(["agent", "--fake", "--server", url, "--token", token])
        .args(["--node-name", name, "--data-dir"])
        .arg(data_dir)
        .args(extra);
    cmd
}

/// A running agent; killed on drop. Its stderr goes to a file.
struct Agent {
    child: Child,
    log: PathBuf,
}

impl Agent {
    fn start(root: &Path, tag: &str, mut cmd: Command) -> Agent {
        let log = root.join(format!("agent-{tag}.log"));
        let child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("start kubelab agent");
        Agent { child, log }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("agent log {}:\n{}", self.log.display(), self.log());
        }
    }
}

/// Runs an agent expected to give up; returns what it printed.
fn failing_agent(cmd: Command) -> Output {
    let out = run_with_deadline(cmd, None, AGENT_DEADLINE);
    assert!(
        out.status.is_some() && !out.success(),
        "the agent should have exited with an error\nstdout:\n{}\nstderr:\n{}",
        out.stdout,
        out.stderr
    );
    out
}

/// The one `error: ...` line the agent ends with.
fn error_line(out: &Output) -> String {
    let last = out.stderr.lines().last().unwrap_or_default();
    assert!(
        last.starts_with("error: "),
        "the agent's last line is not its error:\n{}",
        out.stderr
    );
    last.to_owned()
}

fn try_json(server: &TestServer, args: &[&str]) -> Option<Value> {
    let mut full = args.to_vec();
    full.extend(["-o", "json"]);
    let out = server.kubectl(&k(), &full);
    out.success()
        .then(|| serde_json::from_str(&out.stdout).expect("kubectl -o json"))
}

fn ready(node: &Value) -> bool {
    node["status"]["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|c| c["type"] == "Ready" && c["status"] == "True")
}

fn wait_ready(server: &TestServer, name: &str, extra: &[&str]) -> Value {
    let mut args = vec!["get", "node", name];
    args.extend(extra);
    eventually(&format!("node {name} is Ready"), WAIT, || {
        try_json(server, &args).filter(ready)
    })
}

fn password_secret(server: &TestServer, node: &str) -> Option<Value> {
    try_json(
        server,
        &[
            "get",
            "secret",
            "-n",
            "kube-system",
            &format!("{node}.node-password.kubelab"),
        ],
    )
}

/// A request as the impostor saw it: "METHOD /path" and its headers.
type SeenRequest = (String, HashMap<String, String>);

/// A TLS server with a CA of its own that records every request it gets and answers
/// `/cacerts` with its CA: what an impostor of the API server would do.
struct Impostor {
    url: String,
    requests: Arc<Mutex<Vec<SeenRequest>>>,
    _dir: tempfile::TempDir,
}

fn impostor(server: &TestServer) -> Impostor {
    use hyper::service::service_fn;
    let dir = tempfile::tempdir().unwrap();
    let pki = kubelab_pki::ensure_server_pki(dir.path(), "impostor", &[]).unwrap();
    let mut tls = kubelab_pki::server_tls_config(&pki).unwrap();
    tls.alpn_protocols = vec![b"http/1.1".to_vec()];
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(tls));
    let listener = server
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let url = format!("https://{}", listener.local_addr().unwrap());
    let requests: Arc<Mutex<Vec<SeenRequest>>> = Arc::default();
    let seen = requests.clone();
    let ca = pki.ca.cert_pem.clone();
    server.block_on(async move {
        tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    return;
                };
                let acceptor = acceptor.clone();
                let seen = seen.clone();
                let ca = ca.clone();
                tokio::spawn(async move {
                    let Ok(stream) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let service = service_fn(move |req: http::Request<hyper::body::Incoming>| {
                        let headers = req
                            .headers()
                            .iter()
                            .map(|(k, v)| {
                                (k.as_str().to_owned(), v.to_str().unwrap_or("").to_owned())
                            })
                            .collect();
                        seen.lock()
                            .unwrap()
                            .push((format!("{} {}", req.method(), req.uri().path()), headers));
                        let body = if req.uri().path() == "/cacerts" {
                            ca.clone()
                        } else {
                            "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n".into()
                        };
                        async move {
                            Ok::<_, std::convert::Infallible>(http::Response::new(
                                http_body_util::Full::new(bytes::Bytes::from(body)),
                            ))
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                        .await;
                });
            }
        });
    });
    Impostor {
        url,
        requests,
        _dir: dir,
    }
}

#[test]
fn a_token_pinning_another_ca_is_refused_before_credentials_are_sent() {
    let server = TestServer::start();
    let token = node_token(&server);
    assert!(token.starts_with("K10"), "{token}");
    let root = server.root().to_path_buf();

    // An impostor with its own CA: the agent fetches /cacerts, sees the hash differ from the
    // token's pin, and stops there.
    let fake = impostor(&server);
    let out = failing_agent(agent_command(
        &fake.url,
        &token,
        "pinned",
        &root.join("agent-impostor"),
        &[],
    ));
    let line = error_line(&out);
    assert!(
        line.contains("is not the one the token pins") && line.contains("no credentials were sent"),
        "{line}"
    );
    let requests = fake.requests.lock().unwrap().clone();
    assert_eq!(
        requests.iter().map(|(r, _)| r.as_str()).collect::<Vec<_>>(),
        ["GET /cacerts"],
        "only the CA bundle may be asked for"
    );
    for (_, headers) in &requests {
        for secret in [
            "authorization",
            "kubelab-node-password",
            "kubelab-node-name",
        ] {
            assert!(!headers.contains_key(secret), "{secret} sent: {headers:?}");
        }
        assert!(
            !headers
                .values()
                .any(|v| v.contains(token.rsplit(':').next().unwrap())),
            "the token secret leaked: {headers:?}"
        );
    }

    // The real server with a token whose pin was tampered with: refused the same way, and
    // nothing is registered.
    let (hash, credentials) = token.strip_prefix("K10").unwrap().split_once("::").unwrap();
    let flipped: String = hash
        .chars()
        .enumerate()
        .map(|(i, c)| {
            if i == 0 {
                if c == '0' {
                    '1'
                } else {
                    '0'
                }
            } else {
                c
            }
        })
        .collect();
    let out = failing_agent(agent_command(
        &server.url(),
        &format!("K10{flipped}::{credentials}"),
        "pinned",
        &root.join("agent-tampered"),
        &[],
    ));
    assert!(
        error_line(&out).contains("is not the one the token pins"),
        "{}",
        out.stderr
    );
    assert!(password_secret(&server, "pinned").is_none());
    assert!(try_json(&server, &["get", "node", "pinned"]).is_none());

    // The right pin but a wrong secret: the server refuses the credentials (401).
    let out = failing_agent(agent_command(
        &server.url(),
        &format!("K10{hash}::node:not-the-secret"),
        "pinned",
        &root.join("agent-wrong-secret"),
        &[],
    ));
    assert!(
        error_line(&out).contains("refused the token"),
        "{}",
        out.stderr
    );
    assert!(password_secret(&server, "pinned").is_none());
}

#[test]
fn node_password_guards_the_node_name_and_with_node_id_joins_a_distinct_node() {
    let server = TestServer::start();
    let k = k();
    let token = node_token(&server);
    let root = server.root().to_path_buf();

    // First join: the password Secret appears and the node turns Ready.
    let first_dir = root.join("agent-first");
    let first = Agent::start(
        &root,
        "first",
        agent_command(&server.url(), &token, "join-a", &first_dir, &[]),
    );
    wait_ready(&server, "join-a", &[]);
    let secret = password_secret(&server, "join-a").expect("the node password Secret");
    assert_eq!(secret["type"], "kubelab.dev/node-password");
    assert!(secret["data"]["hash"].is_string());
    assert_eq!(mode(&first_dir), 0o700);
    assert_eq!(mode(&first_dir.join("node-password")), 0o600);
    assert_eq!(mode(&first_dir.join("client-kubelet.key")), 0o600);
    assert_eq!(mode(&first_dir.join("serving-kubelet.key")), 0o600);

    // The certificates the server signed: the node identity, and a serving certificate for the
    // kubelet; the node's own kubeconfig works with kubectl.
    let read = |f: &str| std::fs::read_to_string(first_dir.join(f)).unwrap();
    let client = kubelab_pki::CertPair {
        cert_pem: read("client-kubelet.crt"),
        key_pem: read("client-kubelet.key"),
    };
    let identity = kubelab_pki::identity_from_der(&client.cert_der().unwrap()).unwrap();
    assert_eq!(identity.user, "system:node:join-a");
    assert_eq!(identity.groups, ["system:nodes"]);
    let serving = kubelab_pki::CertPair {
        cert_pem: read("serving-kubelet.crt"),
        key_pem: read("serving-kubelet.key"),
    };
    let serving_identity = kubelab_pki::identity_from_der(&serving.cert_der().unwrap()).unwrap();
    assert_eq!(serving_identity.user, "system:node:join-a");
    let out = run_with_deadline(
        {
            let mut cmd = Command::new(&k.path);
            cmd.arg("--kubeconfig")
                .arg(first_dir.join("kubelet.kubeconfig"))
                .args(["get", "node", "join-a", "-o", "name"]);
            cmd
        },
        None,
        common::KUBECTL_DEADLINE,
    );
    assert_eq!(out.stdout.trim(), "node/join-a", "{}", out.stderr);

    // A second agent under the same name with its own (other) password: 403, one clear line,
    // a non-zero exit, and the stored password untouched.
    let second_dir = root.join("agent-second");
    let out = failing_agent(agent_command(
        &server.url(),
        &token,
        "join-a",
        &second_dir,
        &[],
    ));
    let line = error_line(&out);
    assert!(
        line.contains("refused node \"join-a\"")
            && line.contains("NodePasswordValidationFailed")
            && line.contains("--with-node-id"),
        "{line}"
    );
    assert_eq!(
        password_secret(&server, "join-a").unwrap()["data"],
        secret["data"]
    );

    // With --with-node-id it joins as a distinct node, named with the id kept in its data dir.
    let third = Agent::start(
        &root,
        "with-node-id",
        agent_command(
            &server.url(),
            &token,
            "join-a",
            &second_dir,
            &["--with-node-id"],
        ),
    );
    let id = eventually("the node id is stored", WAIT, || {
        std::fs::read_to_string(second_dir.join("node-id"))
            .ok()
            .map(|s| s.trim().to_owned())
            .filter(|s| !s.is_empty())
    });
    let distinct = format!("join-a-{id}");
    wait_ready(&server, &distinct, &[]);
    assert!(password_secret(&server, &distinct).is_some());
    let nodes = server.ok(&k, &["get", "nodes", "-o", "name"]);
    assert!(
        nodes.contains("node/join-a\n") && nodes.contains(&format!("node/{distinct}")),
        "{nodes}"
    );

    // The first agent restarts with its data dir: same password, accepted again.
    drop(first);
    drop(third);
    let again = Agent::start(
        &root,
        "first-again",
        agent_command(&server.url(), &token, "join-a", &first_dir, &[]),
    );
    eventually("the restarted agent joins again", WAIT, || {
        again
            .log()
            .contains("joined: node certificates signed")
            .then_some(())
    });
    wait_ready(&server, "join-a", &[]);
}

/// A second `kubelab server` on the first one's data directory (so on its store).
struct SecondServer {
    child: Child,
    url: String,
}

impl Drop for SecondServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn second_server(first: &TestServer, args: &[&str]) -> SecondServer {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let stdout = first.root().join("second-server.stdout.log");
    let child = Command::new(kubelab_bin())
        .env("NO_COLOR", "1")
        .arg("server")
        .arg("--data-dir")
        .arg(first.data_dir())
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
        .args(args)
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&stdout).unwrap())
        .stderr(std::fs::File::create(first.root().join("second-server.stderr.log")).unwrap())
        .spawn()
        .expect("start the second kubelab server");
    let second = SecondServer {
        child,
        url: format!("https://127.0.0.1:{port}"),
    };
    eventually("the second server is ready", common::START_DEADLINE, || {
        std::fs::read_to_string(&stdout)
            .unwrap_or_default()
            .contains("kubelab server ready")
            .then_some(())
    });
    second
}

fn endpoint_ports(server: &TestServer, via: &str) -> Vec<String> {
    let out = server.kubectl(
        &k(),
        &[
            "--server",
            via,
            "get",
            "endpoints",
            "kubernetes",
            "-o",
            "jsonpath={.subsets[*].ports[*].port}",
        ],
    );
    let mut ports: Vec<String> = out.stdout.split_whitespace().map(str::to_owned).collect();
    ports.sort();
    ports
}

#[test]
fn losing_the_server_an_agent_joined_through_does_not_lose_the_node() {
    let flags = [
        "--node-monitor-grace-period",
        "8",
        "--leader-elect-lease-duration",
        "3",
    ];
    let first = TestServer::start_args(&flags);
    let second = second_server(&first, &flags);
    let first_port = first.port().to_string();
    let second_port = second.url.rsplit(':').next().unwrap().to_owned();

    // Both servers list themselves in the kubernetes Endpoints.
    let mut both = vec![first_port.clone(), second_port.clone()];
    both.sort();
    eventually("both servers in the kubernetes Endpoints", WAIT, || {
        (endpoint_ports(&first, &second.url) == both).then_some(())
    });

    // The agent registers through the first server and learns both from the Endpoints.
    let token = node_token(&first);
    let agent = Agent::start(
        first.root(),
        "ha",
        agent_command(
            &first.url(),
            &token,
            "ha-node",
            &first.root().join("agent-ha"),
            &["--lease-renew-interval", "1"],
        ),
    );
    eventually("the agent learns both servers", WAIT, || {
        agent
            .log()
            .lines()
            .filter(|l| l.contains("servers updated"))
            .any(|l| {
                l.contains(&format!("127.0.0.1:{first_port}"))
                    && l.contains(&format!("127.0.0.1:{second_port}"))
            })
            .then_some(())
    });
    assert!(agent
        .log()
        .contains(&format!("now using 127.0.0.1:{first_port}")));
    wait_ready(&first, "ha-node", &["--server", &second.url]);

    // Stop the first server: the agent moves to the second, keeps renewing its Lease, and the
    // node stays Ready past the grace period (8 s), as seen by the surviving server.
    first.kill9();
    let stopped = Instant::now();
    let renew_time = |server: &TestServer| {
        try_json(
            server,
            &[
                "--server",
                &second.url,
                "get",
                "lease",
                "-n",
                "kube-node-lease",
                "ha-node",
            ],
        )
        .and_then(|lease| lease["spec"]["renewTime"].as_str().map(str::to_owned))
    };
    let before = renew_time(&first).expect("the node lease");
    eventually("the agent switches to the second server", WAIT, || {
        agent
            .log()
            .contains(&format!("now using 127.0.0.1:{second_port}"))
            .then_some(())
    });
    eventually(
        "the lease is renewed through the second server",
        WAIT,
        || renew_time(&first).filter(|now| *now > before),
    );
    let mut dropped_from_endpoints = false;
    while stopped.elapsed() < Duration::from_secs(20) || !dropped_from_endpoints {
        assert!(
            stopped.elapsed() < Duration::from_secs(90),
            "the stopped server never left the kubernetes Endpoints"
        );
        let node = try_json(&first, &["--server", &second.url, "get", "node", "ha-node"])
            .expect("get the node through the second server");
        assert!(
            ready(&node),
            "the node lost Ready {:?} after the first server stopped: {}",
            stopped.elapsed(),
            node["status"]["conditions"]
        );
        // Its lease expired, the stopped server leaves the Endpoints.
        dropped_from_endpoints = endpoint_ports(&first, &second.url) == [second_port.clone()];
    }
    eventually("the agent forgets the stopped server", WAIT, || {
        agent
            .log()
            .contains(&format!("servers=127.0.0.1:{second_port}\n"))
            .then_some(())
    });
}
