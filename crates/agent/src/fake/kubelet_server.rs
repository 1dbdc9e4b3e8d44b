//! The kubelet HTTPS endpoints of a simulated node, kwok-style, so `kubectl logs`, `exec`,
//! `attach` and `port-forward` work on pods that run no process:
//!
//! - `GET /containerLogs/{ns}/{pod}/{container}`: one synthetic line per container instance
//!   (timestamped with its start when asked), `tailLines`, `sinceSeconds`/`sinceTime`,
//!   `limitBytes`, `previous`; `follow` keeps the stream open while the container runs;
//! - `GET /exec/{ns}/{pod}/{container}?command=...` (WebSocket `v5.channel.k8s.io`): a few
//!   built-in commands — `echo`, `cat`, `true`, `false`, `hostname`, `sleep`, and `sh` (`-c
//!   SCRIPT`, or a script read from stdin) with `;`-separated commands and `exit N`;
//! - `GET /attach/{ns}/{pod}/{container}` (v5): the simulated process echoes its stdin;
//! - `GET /portForward/{ns}/{pod}?port=P` (WebSocket `v4.channel.k8s.io`): every port
//!   echoes what it receives.
//!
//! Same wire protocols as the CRI kubelet's server, so the API server reaches both the same
//! way. Clients must present a certificate of the cluster CA in group `kubelab:kubelet-api`
//! (the API server's) or `system:masters`.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use http::{Request, Response, StatusCode};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper_util::rt::TokioIo;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::jiff::Timestamp;
use kube::api::Api;
use kubelab_streaming::channel::{self, Message as Channel};
use kubelab_streaming::remotecommand;
use serde_json::Value;
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, Role};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

/// Groups allowed to use a simulated kubelet's API.
const ALLOWED_GROUPS: [&str; 2] = ["kubelab:kubelet-api", "system:masters"];
/// How often a followed log checks that its container still runs.
const FOLLOW_POLL: Duration = Duration::from_secs(1);
/// Longest `sleep` a built-in shell command may do.
const MAX_SLEEP: Duration = Duration::from_secs(3600);

pub(crate) type Body = UnsyncBoxBody<Bytes, std::io::Error>;

/// The kubelet endpoint of one simulated node.
pub struct KubeletServerConfig {
    pub node_name: String,
    /// Where to listen (a loopback address: simulated nodes have no network presence).
    pub bind: SocketAddr,
    /// The node's serving certificate.
    pub serving: kubelab_pki::CertPair,
    /// The cluster CA (client certificates must chain to it).
    pub ca_pem: String,
}

/// Listen and serve in the background; the bound address (for the API server's route).
pub async fn start(
    client: kube::Client,
    config: KubeletServerConfig,
) -> std::io::Result<(SocketAddr, JoinHandle<()>)> {
    let tls = kubelab_pki::kubelet_server_tls_config(&config.serving, &config.ca_pem)
        .map_err(std::io::Error::other)?;
    let listener = TcpListener::bind(config.bind).await?;
    let addr = listener.local_addr()?;
    let node = Arc::new(Node {
        client,
        name: config.node_name,
    });
    let acceptor = TlsAcceptor::from(Arc::new(tls));
    let task = tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            };
            let acceptor = acceptor.clone();
            let node = node.clone();
            tokio::spawn(async move {
                let Ok(Ok(tls)) =
                    tokio::time::timeout(Duration::from_secs(10), acceptor.accept(tcp)).await
                else {
                    return;
                };
                let allowed = tls
                    .get_ref()
                    .1
                    .peer_certificates()
                    .and_then(|c| c.first())
                    .and_then(|der| kubelab_pki::identity_from_der(der.as_ref()).ok())
                    .is_some_and(|id| {
                        id.groups
                            .iter()
                            .any(|g| ALLOWED_GROUPS.contains(&g.as_str()))
                    });
                let service = hyper::service::service_fn(move |req| {
                    let node = node.clone();
                    async move { Ok::<_, Infallible>(node.handle(req, allowed).await) }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(tls), service)
                    .with_upgrades()
                    .await;
            });
        }
    });
    Ok((addr, task))
}

struct Node {
    client: kube::Client,
    name: String,
}

pub(crate) fn full(status: StatusCode, text: impl Into<String>) -> Response<Body> {
    let mut resp = Response::new(
        Full::new(Bytes::from(text.into()))
            .map_err(|never| match never {})
            .boxed_unsync(),
    );
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    resp
}

/// Query parameters, repeated keys kept.
pub(crate) fn query(req: &Request<Incoming>) -> Vec<(String, String)> {
    req.uri()
        .query()
        .and_then(|q| serde_urlencoded::from_str(q).ok())
        .unwrap_or_default()
}

pub(crate) fn param<'a>(q: &'a [(String, String)], key: &str) -> Option<&'a str> {
    q.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
}

impl Node {
    async fn handle(&self, mut req: Request<Incoming>, allowed: bool) -> Response<Body> {
        if !allowed {
            return full(
                StatusCode::FORBIDDEN,
                "Forbidden: the kubelet API is for the API server",
            );
        }
        if req.method() != http::Method::GET && req.method() != http::Method::POST {
            return full(StatusCode::METHOD_NOT_ALLOWED, "method not allowed");
        }
        let path: Vec<String> = req
            .uri()
            .path()
            .trim_matches('/')
            .split('/')
            .map(String::from)
            .collect();
        let q = query(&req);
        let (verb, ns, pod_name, container) = match path.as_slice() {
            [verb, ns, pod, container]
                if matches!(verb.as_str(), "containerLogs" | "exec" | "attach") =>
            {
                (verb.as_str(), ns, pod, Some(container.as_str()))
            }
            [verb, ns, pod] if verb == "portForward" => (verb.as_str(), ns, pod, None),
            _ => return full(StatusCode::NOT_FOUND, "404 page not found"),
        };
        let pod = match Api::<Pod>::namespaced(self.client.clone(), ns)
            .get_opt(pod_name)
            .await
        {
            Ok(Some(p)) => p,
            Ok(None) => {
                return full(
                    StatusCode::NOT_FOUND,
                    format!("pod {ns}/{pod_name} not found"),
                )
            }
            Err(e) => return full(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
        };
        let pod = serde_json::to_value(&pod).unwrap_or_default();
        if pod.pointer("/spec/nodeName").and_then(Value::as_str) != Some(self.name.as_str()) {
            return full(
                StatusCode::NOT_FOUND,
                format!("pod {ns}/{pod_name} does not run on node {}", self.name),
            );
        }
        if let Some(c) = container {
            if !container_names(&pod).contains(&c) {
                return full(
                    StatusCode::NOT_FOUND,
                    format!("container not found ({c:?})"),
                );
            }
        }
        match (verb, container) {
            ("containerLogs", Some(c)) => self.logs(&pod, c, &q),
            ("exec" | "attach", Some(c)) => {
                if !container_running(&pod, c) {
                    return full(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        format!("container not found ({c:?})"),
                    );
                }
                let Some(upgrade) = websocket_upgrade(&mut req, channel::V5) else {
                    return full(
                        StatusCode::BAD_REQUEST,
                        format!(
                            "a WebSocket upgrade with sub-protocol {} is required",
                            channel::V5
                        ),
                    );
                };
                let opts = remotecommand::StreamOptions {
                    stdin: remotecommand::flag(param(&q, "stdin")),
                    stdout: remotecommand::flag(param(&q, "stdout")),
                    stderr: remotecommand::flag(param(&q, "stderr")),
                    tty: remotecommand::flag(param(&q, "tty")),
                };
                let command: Option<Vec<String>> = (verb == "exec").then(|| {
                    q.iter()
                        .filter(|(k, _)| k == "command")
                        .map(|(_, v)| v.clone())
                        .collect()
                });
                let pod_name = pod_name.clone();
                upgrade.run(move |ws| remote_command(ws, opts, command, pod_name))
            }
            ("portForward", None) => {
                if pod.pointer("/status/phase").and_then(Value::as_str) != Some("Running") {
                    return full(StatusCode::BAD_REQUEST, "pod is not running");
                }
                let ports = match kubelab_streaming::portforward::query_ports(
                    q.iter()
                        .filter(|(k, _)| k == "port")
                        .map(|(_, v)| v.as_str()),
                ) {
                    Ok(p) if !p.is_empty() && p.len() <= channel::MAX_PORTS => p,
                    Ok(_) => {
                        return full(
                            StatusCode::BAD_REQUEST,
                            "query parameter \"port\" is required",
                        )
                    }
                    Err(e) => return full(StatusCode::BAD_REQUEST, e),
                };
                let Some(upgrade) = websocket_upgrade(&mut req, channel::V4) else {
                    return full(
                        StatusCode::BAD_REQUEST,
                        format!(
                            "a WebSocket upgrade with sub-protocol {} is required",
                            channel::V4
                        ),
                    );
                };
                upgrade.run(move |ws| port_forward_echo(ws, ports))
            }
            _ => full(StatusCode::NOT_FOUND, "404 page not found"),
        }
    }

    fn logs(&self, pod: &Value, container: &str, q: &[(String, String)]) -> Response<Body> {
        let previous = remotecommand::flag(param(q, "previous"));
        if let Err(message) =
            kubelab_streaming::logs::container_log_source(pod, container, previous)
        {
            return full(StatusCode::BAD_REQUEST, message);
        }
        let status = container_status(pod, container);
        let started = status
            .and_then(|s| {
                let state = if previous {
                    s.pointer("/lastState/terminated")
                } else {
                    s.pointer("/state/running")
                        .or_else(|| s.pointer("/state/terminated"))
                        .or_else(|| s.pointer("/lastState/terminated"))
                };
                state?.get("startedAt")?.as_str()?.parse::<Timestamp>().ok()
            })
            .unwrap_or_else(Timestamp::now);
        let line = format!(
            "{} container {container:?} of pod {:?} started on simulated node {:?}: no process runs here (kubelab fake kubelet)\n",
            if previous { "previous" } else { "current" },
            pod.pointer("/metadata/name").and_then(Value::as_str).unwrap_or_default(),
            self.name,
        );
        let mut text = String::new();
        let since = param(q, "sinceTime")
            .and_then(|t| t.parse::<Timestamp>().ok())
            .or_else(|| {
                let secs: i64 = param(q, "sinceSeconds")?.parse().ok()?;
                Timestamp::now()
                    .checked_sub(k8s_openapi::jiff::SignedDuration::from_secs(secs))
                    .ok()
            });
        let tail: Option<usize> = param(q, "tailLines").and_then(|t| t.parse().ok());
        if since.is_none_or(|s| started >= s) && tail != Some(0) {
            if remotecommand::flag(param(q, "timestamps")) {
                // RFC 3339 with the fraction only when there is one, like RFC3339Nano.
                text.push_str(&format!("{started} "));
            }
            text.push_str(&line);
        }
        if let Some(limit) = param(q, "limitBytes").and_then(|l| l.parse::<usize>().ok()) {
            text.truncate(limit);
        }
        let follow = remotecommand::flag(param(q, "follow")) && !previous;
        if !follow {
            return full(StatusCode::OK, text);
        }
        // Follow: the line, then an open stream until the container stops or the pod goes.
        let pods: Api<Pod> = Api::namespaced(
            self.client.clone(),
            pod.pointer("/metadata/namespace")
                .and_then(Value::as_str)
                .unwrap_or("default"),
        );
        let name = pod
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        let uid = pod
            .pointer("/metadata/uid")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        let container = container.to_string();
        let first = Some(Bytes::from(text));
        let stream = futures::stream::unfold((first, pods), move |(first, pods)| {
            let (name, uid, container) = (name.clone(), uid.clone(), container.clone());
            async move {
                if let Some(bytes) = first {
                    return Some((Ok::<_, std::io::Error>(Frame::data(bytes)), (None, pods)));
                }
                loop {
                    tokio::time::sleep(FOLLOW_POLL).await;
                    tracing::trace!(pod = %name, container = %container, "followed log: container still running?");
                    let pod = pods.get_opt(&name).await.ok()?;
                    let pod = serde_json::to_value(pod?).ok()?;
                    let same =
                        pod.pointer("/metadata/uid").and_then(Value::as_str) == Some(uid.as_str());
                    let deleting = pod.pointer("/metadata/deletionTimestamp").is_some();
                    if !same || deleting || !container_running(&pod, &container) {
                        return None;
                    }
                }
            }
        });
        let mut resp = Response::new(BodyExt::boxed_unsync(StreamBody::new(stream)));
        resp.headers_mut().insert(
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_static("text/plain"),
        );
        resp
    }
}

fn container_names(pod: &Value) -> Vec<&str> {
    ["initContainers", "containers", "ephemeralContainers"]
        .iter()
        .filter_map(|k| pod.pointer(&format!("/spec/{k}"))?.as_array())
        .flatten()
        .filter_map(|c| c.get("name")?.as_str())
        .collect()
}

fn container_status<'a>(pod: &'a Value, container: &str) -> Option<&'a Value> {
    [
        "containerStatuses",
        "initContainerStatuses",
        "ephemeralContainerStatuses",
    ]
    .iter()
    .filter_map(|k| pod.pointer(&format!("/status/{k}"))?.as_array())
    .flatten()
    .find(|s| s.get("name").and_then(Value::as_str) == Some(container))
}

fn container_running(pod: &Value, container: &str) -> bool {
    container_status(pod, container).is_some_and(|s| s.pointer("/state/running").is_some())
}

/// An accepted WebSocket upgrade, not yet answered.
pub(crate) struct Upgrade {
    on_upgrade: hyper::upgrade::OnUpgrade,
    accept: String,
    protocol: &'static str,
}

pub(crate) fn websocket_upgrade(
    req: &mut Request<Incoming>,
    protocol: &'static str,
) -> Option<Upgrade> {
    let wants = req
        .headers()
        .get(http::header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("websocket"));
    let offered = channel::offered_protocols(
        req.headers()
            .get_all(http::header::SEC_WEBSOCKET_PROTOCOL)
            .iter()
            .filter_map(|v| v.to_str().ok()),
    );
    let key = req
        .headers()
        .get(http::header::SEC_WEBSOCKET_KEY)?
        .as_bytes()
        .to_vec();
    if !wants || !offered.iter().any(|p| p == protocol) {
        return None;
    }
    let on_upgrade = req.extensions_mut().remove::<hyper::upgrade::OnUpgrade>()?;
    Some(Upgrade {
        on_upgrade,
        accept: tokio_tungstenite::tungstenite::handshake::derive_accept_key(&key),
        protocol,
    })
}

pub(crate) type Ws = WebSocketStream<TokioIo<hyper::upgrade::Upgraded>>;

impl Upgrade {
    /// Answer 101 and run `f` on the WebSocket.
    pub(crate) fn run<F, Fut>(self, f: F) -> Response<Body>
    where
        F: FnOnce(Ws) -> Fut + Send + 'static,
        Fut: std::future::Future<Output = ()> + Send + 'static,
    {
        let on_upgrade = self.on_upgrade;
        tokio::spawn(async move {
            if let Ok(upgraded) = on_upgrade.await {
                let ws =
                    WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Server, None)
                        .await;
                f(ws).await;
            }
        });
        let mut resp = full(StatusCode::SWITCHING_PROTOCOLS, "");
        let h = resp.headers_mut();
        h.remove(http::header::CONTENT_TYPE);
        h.insert(
            http::header::CONNECTION,
            http::HeaderValue::from_static("Upgrade"),
        );
        h.insert(
            http::header::UPGRADE,
            http::HeaderValue::from_static("websocket"),
        );
        if let Ok(v) = http::HeaderValue::from_str(&self.accept) {
            h.insert(http::header::SEC_WEBSOCKET_ACCEPT, v);
        }
        h.insert(
            http::header::SEC_WEBSOCKET_PROTOCOL,
            http::HeaderValue::from_static(self.protocol),
        );
        resp
    }
}

/// Where a built-in command writes: stdout and stderr channels (stderr goes to stdout on a
/// terminal).
struct Output {
    tx: mpsc::Sender<Vec<u8>>,
    tty: bool,
}

impl Output {
    async fn out(&self, text: &str) {
        self.write(channel::STDOUT, text).await;
    }

    async fn err(&self, text: &str) {
        let ch = if self.tty {
            channel::STDOUT
        } else {
            channel::STDERR
        };
        self.write(ch, text).await;
    }

    async fn write(&self, ch: u8, text: &str) {
        // A terminal turns LF into CR LF.
        let text = if self.tty {
            std::borrow::Cow::Owned(text.replace('\n', "\r\n"))
        } else {
            std::borrow::Cow::Borrowed(text)
        };
        let _ = self.tx.send(channel::message(ch, text.as_bytes())).await;
    }
}

/// exec (`command` is Some) or attach (the simulated process echoes stdin) over v5.
async fn remote_command(
    ws: Ws,
    opts: remotecommand::StreamOptions,
    command: Option<Vec<String>>,
    pod_name: String,
) {
    let (mut sink, mut source) = ws.split();
    let (out_tx, mut out_rx) = mpsc::channel::<Vec<u8>>(64);
    let (stdin_tx, stdin_rx) = mpsc::channel::<Vec<u8>>(64);
    // Client messages: stdin until its close signal; the session ends if the client leaves.
    let (gone_tx, mut gone_rx) = tokio::sync::watch::channel(false);
    let reader = tokio::spawn(async move {
        let mut stdin = Some(stdin_tx);
        while let Some(Ok(msg)) = source.next().await {
            match msg {
                Message::Binary(b) => match channel::parse(&b) {
                    Some(Channel::Data {
                        channel: channel::STDIN,
                        data,
                    }) => {
                        if let Some(tx) = &stdin {
                            let _ = tx.send(data.to_vec()).await;
                        }
                    }
                    Some(Channel::Close {
                        channel: channel::STDIN,
                    }) => stdin = None,
                    _ => {}
                },
                Message::Close(_) => break,
                _ => {}
            }
        }
        let _ = gone_tx.send(true);
    });
    let writer = tokio::spawn(async move {
        while let Some(m) = out_rx.recv().await {
            if sink.send(Message::Binary(m.into())).await.is_err() {
                break;
            }
        }
        sink
    });
    let output = Output {
        tx: out_tx,
        tty: opts.tty,
    };
    let mut stdin = Stdin {
        rx: if opts.stdin { Some(stdin_rx) } else { None },
        pending: Vec::new(),
    };
    let run = async {
        match &command {
            Some(argv) => {
                let code = Shell {
                    out: &output,
                    stdin: &mut stdin,
                    pod_name: &pod_name,
                    tty: opts.tty,
                }
                .run_argv(argv)
                .await;
                if code == 0 {
                    remotecommand::success()
                } else {
                    remotecommand::non_zero_exit(argv, code)
                }
            }
            None => {
                // attach: the simulated main process echoes its input until stdin closes.
                if stdin.rx.is_none() {
                    std::future::pending::<()>().await;
                }
                while let Some(data) = stdin.chunk().await {
                    output.out(&String::from_utf8_lossy(&data)).await;
                }
                remotecommand::success()
            }
        }
    };
    let status = tokio::select! {
        s = run => Some(s),
        _ = gone_rx.wait_for(|g| *g) => None,
    };
    if let Some(status) = status {
        let _ = output
            .tx
            .send(channel::message(channel::ERROR, &status))
            .await;
    }
    drop(output);
    if let Ok(mut sink) = writer.await {
        let _ = sink
            .send(Message::Close(Some(CloseFrame {
                code: CloseCode::Normal,
                reason: "".into(),
            })))
            .await;
    }
    let _ = tokio::time::timeout(Duration::from_secs(5), reader).await;
}

/// A command's stdin: chunks as they come, or lines.
struct Stdin {
    rx: Option<mpsc::Receiver<Vec<u8>>>,
    pending: Vec<u8>,
}

impl Stdin {
    async fn chunk(&mut self) -> Option<Vec<u8>> {
        if !self.pending.is_empty() {
            return Some(std::mem::take(&mut self.pending));
        }
        self.rx.as_mut()?.recv().await
    }

    /// The next line (ended by LF, or by CR as a terminal's Enter key sends it). On a
    /// terminal, what is typed is echoed and Ctrl-D on an empty line is end of input, as a
    /// pty's line discipline would do.
    async fn line(&mut self, echo: Option<&Output>) -> Option<String> {
        loop {
            if let Some(i) = self.pending.iter().position(|b| *b == b'\n' || *b == b'\r') {
                let line: Vec<u8> = self.pending.drain(..=i).collect();
                return Some(String::from_utf8_lossy(&line[..i]).into_owned());
            }
            if echo.is_some() && self.pending == [0x04] {
                self.pending.clear();
                return None;
            }
            match self.rx.as_mut() {
                Some(rx) => match rx.recv().await {
                    Some(data) => {
                        if let Some(out) = echo {
                            let shown = String::from_utf8_lossy(&data).replace('\r', "\n");
                            out.out(&shown.replace('\u{4}', "")).await;
                        }
                        self.pending.extend_from_slice(&data);
                    }
                    None => {
                        self.rx = None;
                        if self.pending.is_empty() {
                            return None;
                        }
                        let rest = std::mem::take(&mut self.pending);
                        return Some(String::from_utf8_lossy(&rest).into_owned());
                    }
                },
                None => return None,
            }
        }
    }
}

/// The simulated container's few commands.
struct Shell<'a> {
    out: &'a Output,
    stdin: &'a mut Stdin,
    pod_name: &'a str,
    tty: bool,
}

enum Flow {
    Next(i32),
    Exit(i32),
}

impl Shell<'_> {
    async fn run_argv(&mut self, argv: &[String]) -> i32 {
        match self.command(argv).await {
            Flow::Next(code) | Flow::Exit(code) => code,
        }
    }

    async fn script(&mut self, script: &str) -> Flow {
        let mut code = 0;
        for part in script.split(['\n', ';']) {
            let Some(argv) = split_words(part) else {
                self.out
                    .err("sh: syntax error: unterminated quoted string\n")
                    .await;
                return Flow::Exit(2);
            };
            if argv.is_empty() {
                continue;
            }
            match Box::pin(self.command(&argv)).await {
                Flow::Next(c) => code = c,
                exit => return exit,
            }
        }
        Flow::Next(code)
    }

    async fn command(&mut self, argv: &[String]) -> Flow {
        let args = &argv[1..];
        match argv[0].as_str() {
            "echo" if args.last().is_some_and(|a| a == ">&2" || a == "1>&2") => {
                let mut text = args[..args.len() - 1].join(" ");
                text.push('\n');
                self.out.err(&text).await;
                Flow::Next(0)
            }
            "echo" => {
                let (newline, words) = match args.first().map(String::as_str) {
                    Some("-n") => (false, &args[1..]),
                    _ => (true, args),
                };
                let mut text = words.join(" ");
                if newline {
                    text.push('\n');
                }
                self.out.out(&text).await;
                Flow::Next(0)
            }
            "cat" if args.is_empty() || args == ["-"] => {
                while let Some(data) = self.stdin.chunk().await {
                    self.out.out(&String::from_utf8_lossy(&data)).await;
                }
                Flow::Next(0)
            }
            "true" => Flow::Next(0),
            "false" => Flow::Next(1),
            "hostname" => {
                self.out.out(&format!("{}\n", self.pod_name)).await;
                Flow::Next(0)
            }
            "sleep" => {
                let secs: f64 = args.first().and_then(|a| a.parse().ok()).unwrap_or(0.0);
                let d = Duration::try_from_secs_f64(secs.max(0.0)).unwrap_or(MAX_SLEEP);
                tokio::time::sleep(d.min(MAX_SLEEP)).await;
                Flow::Next(0)
            }
            "exit" => {
                let code = args.first().and_then(|a| a.parse().ok()).unwrap_or(0);
                Flow::Exit(code)
            }
            "sh" | "/bin/sh" | "bash" | "/bin/bash" => match args {
                [flag, script, ..] if flag == "-c" => match self.script(script).await {
                    Flow::Next(c) | Flow::Exit(c) => Flow::Next(c),
                },
                [] => {
                    // A script read from stdin, line by line (a prompt on a terminal).
                    let mut code = 0;
                    loop {
                        if self.tty {
                            self.out.out("$ ").await;
                        }
                        let echo = self.tty.then_some(self.out);
                        let Some(line) = self.stdin.line(echo).await else {
                            break;
                        };
                        match self.script(&line).await {
                            Flow::Next(c) => code = c,
                            Flow::Exit(c) => return Flow::Next(c),
                        }
                    }
                    Flow::Next(code)
                }
                _ => {
                    self.out
                        .err("sh: only `sh -c SCRIPT` and `sh` are simulated\n")
                        .await;
                    Flow::Next(2)
                }
            },
            other => {
                self.out
                    .err(&format!(
                        "exec: {other:?}: executable file not found in $PATH (simulated node: built-in commands are echo, cat, true, false, hostname, sleep, sh)\n"
                    ))
                    .await;
                Flow::Next(127)
            }
        }
    }
}

/// Split a simple command into words: whitespace-separated, with '...' and "..." quoting.
/// `None` for an unterminated quote.
fn split_words(s: &str) -> Option<Vec<String>> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        match c {
            '\'' | '"' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some(q) if q == c => break,
                        Some('\\') if c == '"' => word.extend(chars.next()),
                        Some(other) => word.push(other),
                        None => return None,
                    }
                }
            }
            '\\' => {
                in_word = true;
                word.extend(chars.next());
            }
            c if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut word));
                    in_word = false;
                }
            }
            c => {
                in_word = true;
                word.push(c);
            }
        }
    }
    if in_word {
        words.push(word);
    }
    Some(words)
}

/// v4 port-forward: the port prefix on each channel, then every port echoes its data.
async fn port_forward_echo(ws: Ws, ports: Vec<u16>) {
    let (mut sink, mut source) = ws.split();
    for (i, port) in ports.iter().enumerate() {
        for ch in [
            channel::port_data_channel(i),
            channel::port_error_channel(i),
        ] {
            if sink
                .send(Message::Binary(channel::port_prefix(ch, *port).into()))
                .await
                .is_err()
            {
                return;
            }
        }
    }
    while let Some(Ok(msg)) = source.next().await {
        match msg {
            Message::Binary(b) => {
                if let Some(Channel::Data { channel: ch, data }) = channel::parse(&b) {
                    if usize::from(ch) / 2 < ports.len() && ch % 2 == 0 && !data.is_empty() {
                        let echo = Message::Binary(channel::message(ch, data).into());
                        if sink.send(echo).await.is_err() {
                            break;
                        }
                    }
                }
            }
            Message::Close(_) => break,
            _ => {}
        }
    }
    let _ = sink.send(Message::Close(None)).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_and_quotes() {
        assert_eq!(
            split_words(r#" echo 'a b'  "c\"d" e\ f "#).unwrap(),
            vec!["echo", "a b", "c\"d", "e f"]
        );
        assert_eq!(split_words("   ").unwrap(), Vec::<String>::new());
        assert!(split_words("echo 'oops").is_none());
    }
}
