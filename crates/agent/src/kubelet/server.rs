//! The kubelet's HTTPS API, for the API server (see ARCHITECTURE.md, "How the API server
//! reaches the kubelet"): TLS with the node's serving certificate, clients authenticated by a
//! certificate of the cluster CA in group `kubelab:kubelet-api` (the API server) or
//! `system:masters`.
//!
//! - `GET /containerLogs/{ns}/{pod}/{container}`: the container's CRI log file (containerd
//!   writes `<RFC 3339 time> <stream> <P|F> <text>` lines), with `follow`, `previous`,
//!   `tailLines`, `timestamps`, `sinceSeconds`/`sinceTime` and `limitBytes`;
//! - `GET /exec|attach/{ns}/{pod}/{container}` (WebSocket `v5.channel.k8s.io`) and
//!   `GET /portForward/{ns}/{pod}` (`v4.channel.k8s.io`): the runtime's streaming server does
//!   the work (CRI Exec/Attach/PortForward return a URL on it); this server relays WebSocket
//!   messages between the caller and that URL, which containerd serves with
//!   `v4.channel.k8s.io` — the same channel bytes, without v5's stdin close signal; sessions
//!   with stdin go over SPDY instead (`spdy_exec.rs`), where stdin can be closed.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper_util::rt::TokioIo;
use k8s_cri::v1 as cri_api;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::jiff::Timestamp;
use kubelab_streaming::channel;
use kubelab_streaming::remotecommand;
use tokio::io::{AsyncReadExt, AsyncSeekExt};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::Message;

use super::cri::CONTAINER_NAME_LABEL;
use super::Kubelet;
use crate::fake::kubelet_server::{full, param, query, websocket_upgrade, Body, Ws};

/// Groups allowed to use the kubelet API.
const ALLOWED_GROUPS: [&str; 2] = ["kubelab:kubelet-api", "system:masters"];

/// The server's TLS configuration: the node's serving certificate (a self-signed one when the
/// agent has none, as upstream's kubelet does), client certificates of the cluster CA.
fn tls_config(kubelet: &Kubelet) -> Result<rustls::ServerConfig, super::Error> {
    let serving = match &kubelet.config.serving_cert {
        Some(c) => c.clone(),
        None => {
            let mut names = vec![kubelet.config.node_name.clone(), "localhost".into()];
            names.push(kubelet.config.node_ip.to_string());
            let cert = rcgen::generate_simple_self_signed(names)
                .map_err(|e| super::Error::Tls(e.to_string()))?;
            kubelab_pki::CertPair {
                cert_pem: cert.cert.pem(),
                key_pem: cert.signing_key.serialize_pem(),
            }
        }
    };
    kubelab_pki::kubelet_server_tls_config(&serving, &kubelet.config.client_ca_pem)
        .map_err(|e| super::Error::Tls(e.to_string()))
}

/// Binds the kubelet port and serves in the background; returns the bound address.
pub async fn start(kubelet: Arc<Kubelet>) -> Result<SocketAddr, super::Error> {
    let tls = tls_config(&kubelet)?;
    let port = kubelet.config.kubelet_port;
    let listener = TcpListener::bind(("0.0.0.0", port))
        .await
        .map_err(|source| super::Error::Serve { port, source })?;
    let addr = listener
        .local_addr()
        .map_err(|source| super::Error::Serve { port, source })?;
    let acceptor = TlsAcceptor::from(Arc::new(tls));
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            };
            let acceptor = acceptor.clone();
            let kubelet = kubelet.clone();
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
                    let kubelet = kubelet.clone();
                    async move { Ok::<_, Infallible>(handle(&kubelet, req, allowed).await) }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(tls), service)
                    .with_upgrades()
                    .await;
            });
        }
    });
    Ok(addr)
}

/// The runtime containers of a pod's container, newest attempt first.
async fn attempts(kubelet: &Kubelet, pod: &Pod, container: &str) -> Vec<cri_api::Container> {
    let uid = pod.metadata.uid.clone().unwrap_or_default();
    let mut list: Vec<cri_api::Container> = kubelet
        .cri
        .list_containers(Some(&uid))
        .await
        .unwrap_or_default()
        .into_iter()
        .filter(|c| c.labels.get(CONTAINER_NAME_LABEL).map(String::as_str) == Some(container))
        .collect();
    list.sort_by_key(|c| {
        std::cmp::Reverse((c.metadata.as_ref().map_or(0, |m| m.attempt), c.created_at))
    });
    list
}

async fn handle(
    kubelet: &Arc<Kubelet>,
    mut req: Request<Incoming>,
    allowed: bool,
) -> Response<Body> {
    if !allowed {
        return full(
            StatusCode::FORBIDDEN,
            "Forbidden: the kubelet API is for the API server",
        );
    }
    let path: Vec<String> = req
        .uri()
        .path()
        .trim_matches('/')
        .split('/')
        .map(String::from)
        .collect();
    if path == ["healthz"] {
        return full(StatusCode::OK, "ok");
    }
    let q = query(&req);
    let (verb, ns, pod_name, container) = match path.as_slice() {
        [verb, ns, pod, container]
            if matches!(verb.as_str(), "containerLogs" | "exec" | "attach") =>
        {
            (
                verb.clone(),
                ns.clone(),
                pod.clone(),
                Some(container.clone()),
            )
        }
        [verb, ns, pod] if verb == "portForward" => (verb.clone(), ns.clone(), pod.clone(), None),
        _ => return full(StatusCode::NOT_FOUND, "404 page not found"),
    };
    let Some(pod) = kubelet.find_pod(&ns, &pod_name) else {
        return full(
            StatusCode::NOT_FOUND,
            format!("pod {ns}/{pod_name} not found on this node"),
        );
    };
    let stream_error =
        |e: super::cri::CriError| full(StatusCode::INTERNAL_SERVER_ERROR, e.to_string());
    match (verb.as_str(), container) {
        ("containerLogs", Some(c)) => logs(kubelet, &pod, &c, &q).await,
        ("exec" | "attach", Some(c)) => {
            let Some(running) = attempts(kubelet, &pod, &c)
                .await
                .into_iter()
                .find(|x| x.state == cri_api::ContainerState::ContainerRunning as i32)
            else {
                return full(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    format!("container not found ({c:?})"),
                );
            };
            let Some(upgrade) = websocket_upgrade(&mut req, channel::V5) else {
                return full(
                    StatusCode::BAD_REQUEST,
                    format!(
                        "a WebSocket upgrade with sub-protocol {} is required",
                        channel::V5
                    ),
                );
            };
            let flag = |k: &str| remotecommand::flag(param(&q, k));
            let url = if verb == "exec" {
                let cmd: Vec<String> = q
                    .iter()
                    .filter(|(k, _)| k == "command")
                    .map(|(_, v)| v.clone())
                    .collect();
                kubelet
                    .cri
                    .exec(cri_api::ExecRequest {
                        container_id: running.id.clone(),
                        cmd,
                        tty: flag("tty"),
                        stdin: flag("stdin"),
                        stdout: flag("stdout"),
                        stderr: flag("stderr") && !flag("tty"),
                    })
                    .await
            } else {
                kubelet
                    .cri
                    .attach(cri_api::AttachRequest {
                        container_id: running.id.clone(),
                        stdin: flag("stdin"),
                        tty: flag("tty"),
                        stdout: flag("stdout"),
                        stderr: flag("stderr") && !flag("tty"),
                    })
                    .await
            };
            // With stdin, SPDY: its streams can be half-closed (the end of `kubectl cp`'s tar).
            let streams = super::spdy_exec::Streams {
                stdin: flag("stdin"),
                stdout: flag("stdout"),
                stderr: flag("stderr"),
                tty: flag("tty"),
            };
            match url {
                Ok(url) if streams.stdin => {
                    upgrade.run(move |ws| super::spdy_exec::bridge(ws, url, streams))
                }
                Ok(url) => upgrade.run(move |ws| relay(ws, url)),
                Err(e) => stream_error(e),
            }
        }
        ("portForward", None) => {
            let ports: Vec<i32> = match kubelab_streaming::portforward::query_ports(
                q.iter()
                    .filter(|(k, _)| k == "port")
                    .map(|(_, v)| v.as_str()),
            ) {
                Ok(p) if !p.is_empty() && p.len() <= channel::MAX_PORTS => {
                    p.into_iter().map(i32::from).collect()
                }
                Ok(_) => {
                    return full(
                        StatusCode::BAD_REQUEST,
                        "query parameter \"port\" is required",
                    )
                }
                Err(e) => return full(StatusCode::BAD_REQUEST, e),
            };
            let uid = pod.metadata.uid.clone().unwrap_or_default();
            let sandbox = kubelet
                .cri
                .list_pod_sandboxes(Some(&uid))
                .await
                .unwrap_or_default()
                .into_iter()
                .find(|s| s.state == cri_api::PodSandboxState::SandboxReady as i32);
            let Some(sandbox) = sandbox else {
                return full(StatusCode::BAD_REQUEST, "pod is not running");
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
            match kubelet.cri.port_forward(&sandbox.id, ports).await {
                Ok(url) => upgrade.run(move |ws| relay(ws, url)),
                Err(e) => stream_error(e),
            }
        }
        _ => full(StatusCode::NOT_FOUND, "404 page not found"),
    }
}

/// Relays WebSocket messages between the caller and the runtime's streaming server.
async fn relay(client: Ws, url: String) {
    let ws_url = url
        .replacen("http://", "ws://", 1)
        .replacen("https://", "wss://", 1);
    let mut request = match ws_url.into_client_request() {
        Ok(r) => r,
        Err(e) => {
            tracing::warn!(%url, error = %e, "bad streaming URL from the runtime");
            return;
        }
    };
    request.headers_mut().insert(
        http::header::SEC_WEBSOCKET_PROTOCOL,
        http::HeaderValue::from_static(channel::V4),
    );
    let (upstream, _) = match tokio_tungstenite::connect_async(request).await {
        Ok((u, resp)) => {
            tracing::debug!(%url, protocol = ?resp.headers().get(http::header::SEC_WEBSOCKET_PROTOCOL), "relaying to the runtime's streaming server");
            (u, resp)
        }
        Err(e) => {
            tracing::warn!(%url, error = %e, "cannot reach the runtime's streaming server");
            let (mut sink, _) = client.split();
            let _ = sink
                .send(Message::Binary(
                    channel::message(
                        channel::ERROR,
                        &remotecommand::internal_error(&e.to_string()),
                    )
                    .into(),
                ))
                .await;
            let _ = sink.close().await;
            return;
        }
    };
    let (mut up_sink, mut up_source) = upstream.split();
    let (mut sink, mut source) = client.split();
    let to_runtime = async {
        while let Some(Ok(msg)) = source.next().await {
            let forward = match &msg {
                // v5's close signal has no v4 equivalent: the runtime never sees it.
                Message::Binary(b) => b.first() != Some(&channel::CLOSE),
                Message::Text(_) => true,
                Message::Close(_) => break,
                _ => false,
            };
            if forward && up_sink.send(msg).await.is_err() {
                break;
            }
        }
        let _ = up_sink.close().await;
    };
    let to_client = async {
        while let Some(msg) = up_source.next().await {
            let Ok(msg) = msg else { break };
            let forward = match &msg {
                Message::Binary(_) | Message::Text(_) => true,
                Message::Close(_) => break,
                _ => false,
            };
            if forward && sink.send(msg).await.is_err() {
                break;
            }
        }
        let _ = sink
            .send(Message::Close(Some(CloseFrame {
                code: CloseCode::Normal,
                reason: "".into(),
            })))
            .await;
    };
    tokio::select! {
        _ = to_client => {}
        _ = to_runtime => {}
    }
}

/// One parsed CRI log line.
#[derive(Debug, PartialEq)]
struct LogLine<'a> {
    time: &'a str,
    content: &'a str,
    partial: bool,
}

fn parse_line(line: &str) -> Option<LogLine<'_>> {
    let mut parts = line.splitn(4, ' ');
    let time = parts.next()?;
    let _stream = parts.next()?;
    let tag = parts.next()?;
    let content = parts.next().unwrap_or("");
    Some(LogLine {
        time,
        content,
        partial: tag == "P",
    })
}

/// Log options from the query.
struct LogOptions {
    timestamps: bool,
    tail: Option<usize>,
    since: Option<Timestamp>,
    limit: Option<usize>,
}

/// Renders complete log lines (partial ones joined) from CRI log text.
fn render(text: &str, opts: &LogOptions) -> (String, usize) {
    let mut out: Vec<String> = Vec::new();
    let mut pending = String::new();
    let mut pending_time: Option<String> = None;
    let mut consumed = 0;
    for raw in text.split_inclusive('\n') {
        if !raw.ends_with('\n') {
            break;
        }
        consumed += raw.len();
        let Some(line) = parse_line(raw.trim_end_matches('\n')) else {
            continue;
        };
        pending.push_str(line.content);
        let time = pending_time
            .get_or_insert_with(|| line.time.to_string())
            .clone();
        if line.partial {
            continue;
        }
        pending_time = None;
        let keep = opts
            .since
            .is_none_or(|s| time.parse::<Timestamp>().is_ok_and(|t| t >= s));
        if keep {
            out.push(if opts.timestamps {
                format!("{time} {pending}\n")
            } else {
                format!("{pending}\n")
            });
        }
        pending.clear();
    }
    // Unterminated partial lines stay for the next read.
    if !pending.is_empty() {
        consumed -= text[..consumed]
            .lines()
            .rev()
            .take_while(|l| parse_line(l).is_some_and(|p| p.partial))
            .map(|l| l.len() + 1)
            .sum::<usize>();
    }
    if let Some(n) = opts.tail {
        let skip = out.len().saturating_sub(n);
        out.drain(..skip);
    }
    (out.concat(), consumed)
}

async fn logs(
    kubelet: &Arc<Kubelet>,
    pod: &Pod,
    container: &str,
    q: &[(String, String)],
) -> Response<Body> {
    let previous = remotecommand::flag(param(q, "previous"));
    let list = attempts(kubelet, pod, container).await;
    let target = if previous { list.get(1) } else { list.first() };
    let Some(target) = target.cloned() else {
        let message = if previous {
            format!(
                "previous terminated container \"{container}\" in pod \"{}\" not found",
                pod.metadata.name.clone().unwrap_or_default()
            )
        } else {
            format!(
                "container \"{container}\" in pod \"{}\" is waiting to start: ContainerCreating",
                pod.metadata.name.clone().unwrap_or_default()
            )
        };
        return full(StatusCode::BAD_REQUEST, message);
    };
    let status = match kubelet.cri.container_status(&target.id).await {
        Ok(Some(s)) => s,
        Ok(None) => return full(StatusCode::NOT_FOUND, "container not found"),
        Err(e) => return full(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    };
    let path = PathBuf::from(&status.log_path);
    let opts = LogOptions {
        timestamps: remotecommand::flag(param(q, "timestamps")),
        tail: param(q, "tailLines").and_then(|t| t.parse().ok()),
        since: param(q, "sinceTime")
            .and_then(|t| t.parse::<Timestamp>().ok())
            .or_else(|| {
                let secs: i64 = param(q, "sinceSeconds")?.parse().ok()?;
                Timestamp::now()
                    .checked_sub(k8s_openapi::jiff::SignedDuration::from_secs(secs))
                    .ok()
            }),
        limit: param(q, "limitBytes").and_then(|l| l.parse().ok()),
    };
    let text = tokio::fs::read_to_string(&path).await.unwrap_or_default();
    let (mut first, offset) = render(&text, &opts);
    let follow = remotecommand::flag(param(q, "follow"))
        && !previous
        && status.state == cri_api::ContainerState::ContainerRunning as i32;
    let mut limit = opts.limit;
    if let Some(l) = limit {
        first.truncate(l);
        limit = Some(l - first.len());
    }
    if !follow {
        return full(StatusCode::OK, first);
    }
    // Follow: what is there, then what the container writes until it stops.
    let kubelet = kubelet.clone();
    let id = target.id.clone();
    let follow_opts = LogOptions { tail: None, ..opts };
    let state = (Some(Bytes::from(first)), offset as u64, limit, false);
    let stream = futures::stream::unfold(state, move |(first, mut offset, mut limit, done)| {
        let kubelet = kubelet.clone();
        let id = id.clone();
        let path = path.clone();
        let opts = LogOptions {
            since: follow_opts.since,
            timestamps: follow_opts.timestamps,
            tail: None,
            limit: None,
        };
        async move {
            if let Some(bytes) = first {
                return Some((
                    Ok::<_, std::io::Error>(Frame::data(bytes)),
                    (None, offset, limit, false),
                ));
            }
            if done || limit == Some(0) {
                return None;
            }
            loop {
                let running = matches!(kubelet.cri.container_status(&id).await, Ok(Some(s)) if s.state == cri_api::ContainerState::ContainerRunning as i32);
                let mut chunk = String::new();
                if let Ok(mut f) = tokio::fs::File::open(&path).await {
                    if f.seek(std::io::SeekFrom::Start(offset)).await.is_ok() {
                        let _ = f.read_to_string(&mut chunk).await;
                    }
                }
                let (mut text, used) = render(&chunk, &opts);
                offset += used as u64;
                if let Some(l) = limit {
                    text.truncate(l);
                    limit = Some(l - text.len());
                }
                if !text.is_empty() {
                    return Some((
                        Ok(Frame::data(Bytes::from(text))),
                        (None, offset, limit, !running),
                    ));
                }
                if !running {
                    return None;
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
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

#[cfg(test)]
mod tests {
    use super::*;

    fn opts() -> LogOptions {
        LogOptions {
            timestamps: false,
            tail: None,
            since: None,
            limit: None,
        }
    }

    #[test]
    fn cri_log_lines_render_with_partials_joined() {
        let text = "2026-01-01T00:00:00.1Z stdout F one\n2026-01-01T00:00:01Z stdout P tw\n2026-01-01T00:00:01Z stdout F o\n2026-01-01T00:00:02Z stderr F three\n2026-01-01T00:00:03Z stdout P unfini";
        let (out, used) = render(text, &opts());
        assert_eq!(out, "one\ntwo\nthree\n");
        assert_eq!(&text[used..], "2026-01-01T00:00:03Z stdout P unfini");
        let (out, _) = render(
            text,
            &LogOptions {
                tail: Some(1),
                timestamps: true,
                ..opts()
            },
        );
        assert_eq!(out, "2026-01-01T00:00:02Z three\n");
        let since = "2026-01-01T00:00:01Z".parse().ok();
        let (out, _) = render(text, &LogOptions { since, ..opts() });
        assert_eq!(out, "two\nthree\n");
    }
}
