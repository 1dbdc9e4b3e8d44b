//! `pods/portforward`: the kubelet speaks the `v4.channel.k8s.io` WebSocket protocol (one
//! WebSocket per forwarded connection, the ports in its query).
//!
//! - kubectl ≥ 1.31: SPDY tunnelled in a WebSocket (`SPDY/3.1+portforward.k8s.io`);
//! - kubectl's fallback and older kubectl: plain SPDY/3.1 (`portforward.k8s.io`);
//!
//! either way every forwarded connection is a pair of SPDY streams (`data`, `error`), turned
//! into one kubelet WebSocket. kube-rs speaks v4 itself: piped byte for byte.

use std::sync::Arc;
use std::time::Duration;

use axum::response::Response;
use futures::{SinkExt, StreamExt};
use http::request::Parts;
use hyper_util::rt::TokioIo;
use kubelab_streaming::channel::{self, Message as Channel};
use kubelab_streaming::portforward::{self, Pair, StreamPairs, PAIR_TIMEOUT};
use kubelab_streaming::spdy::frame::rst;
use kubelab_streaming::spdy::Session;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, Role};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

use super::kubelet::{Kubelet, KubeletClient};
use super::{
    after_upgrade, kubelet_path, on_upgrade, spdy_accept, spdy_protocols, websocket_accept,
    websocket_protocols, Params, Target,
};
use crate::error::{ApiError, ApiResult};
use crate::handlers::ApiState;

/// After the client stops sending on a connection, how long the pod's answer may still flow
/// before the connection is closed (containerd's port-forward waits the same).
const HALF_CLOSE_GRACE: Duration = Duration::from_secs(1);

pub(super) async fn serve(
    target: &Target,
    query: &Params,
    parts: &mut Parts,
) -> ApiResult<Response> {
    if target.phase() != "Running" {
        return Err(ApiError::bad_request(format!(
            "unable to forward port because pod is not running. Current status={}",
            target.phase()
        )));
    }
    let websocket = websocket_protocols(&parts.headers);
    let spdy = spdy_protocols(&parts.headers);
    let tunnel = portforward::tunnel_protocol();
    match (websocket, spdy) {
        (Some(offered), _) if offered.contains(&tunnel) => {
            let upgrade = on_upgrade(parts)?;
            let forwarder = Forwarder::new(target).await?;
            let response = websocket_accept(&parts.headers, &tunnel)?;
            after_upgrade(upgrade, move |client| async move {
                let ws = WebSocketStream::from_raw_socket(client, Role::Server, None).await;
                let (bytes, pump) = kubelab_streaming::tunnel::byte_stream(ws);
                forwarder.serve_spdy(bytes).await;
                let _ = pump.await;
            });
            Ok(response)
        }
        (Some(offered), _) if offered.iter().any(|p| p == channel::V4) => {
            let ports = portforward::query_ports(query.all("ports").chain(query.all("port")))
                .map_err(ApiError::bad_request)?;
            if ports.is_empty() {
                return Err(ApiError::bad_request(
                    "query parameter \"ports\" is required",
                ));
            }
            if ports.len() > channel::MAX_PORTS {
                return Err(ApiError::bad_request(format!(
                    "at most {} ports may be forwarded at once",
                    channel::MAX_PORTS
                )));
            }
            let upgrade = on_upgrade(parts)?;
            let kubelet = target.kubelet().await?;
            let q: Vec<(&str, String)> = ports.iter().map(|p| ("port", p.to_string())).collect();
            let path = kubelet_path(
                format!("/portForward/{}/{}", target.namespace, target.pod_name),
                &q,
            );
            let kubelet_conn = match target
                .client()
                .websocket(&kubelet, &path, channel::V4)
                .await
            {
                Ok(c) => c,
                Err(refusal) => return Ok(refusal.into_response()),
            };
            let response = websocket_accept(&parts.headers, channel::V4)?;
            after_upgrade(upgrade, move |client| {
                super::exec::pipe(client, kubelet_conn)
            });
            Ok(response)
        }
        (Some(offered), _) => Err(ApiError::bad_request(format!(
            "requested protocol(s) are not supported: {offered:?}; supports [{tunnel} {}]",
            channel::V4
        ))),
        (None, Some(offered)) => {
            if !offered.iter().any(|p| p == portforward::PROTOCOL_V1) {
                return Err(ApiError::Forbidden {
                    message: format!(
                        "unable to upgrade: unable to negotiate protocol: client supports {offered:?}, server supports [\"{}\"]",
                        portforward::PROTOCOL_V1
                    ),
                    details: None,
                });
            }
            let upgrade = on_upgrade(parts)?;
            let forwarder = Forwarder::new(target).await?;
            let response = spdy_accept(portforward::PROTOCOL_V1)?;
            after_upgrade(upgrade, move |client| forwarder.serve_spdy(client));
            Ok(response)
        }
        (None, None) => Err(ApiError::bad_request("Upgrade request required")),
    }
}

/// Forwards a SPDY client's connections to one pod's kubelet.
struct Forwarder {
    state: Arc<ApiState>,
    kubelet: Kubelet,
    namespace: String,
    pod: String,
}

impl Forwarder {
    async fn new(target: &Target) -> ApiResult<Arc<Forwarder>> {
        Ok(Arc::new(Forwarder {
            state: target.state.clone(),
            kubelet: target.kubelet().await?,
            namespace: target.namespace.clone(),
            pod: target.pod_name.clone(),
        }))
    }

    fn client(&self) -> &KubeletClient {
        &self.state.kubelet
    }

    async fn serve_spdy<T>(self: Arc<Self>, io: T)
    where
        T: AsyncRead + AsyncWrite + Send + 'static,
    {
        let (session, mut incoming) = Session::serve(io);
        let mut pairs = StreamPairs::new();
        let mut connections = tokio::task::JoinSet::new();
        let mut expiry = tokio::time::interval(Duration::from_secs(5));
        loop {
            tokio::select! {
                stream = incoming.recv() => match stream {
                    Some(stream) => match pairs.add(stream) {
                        Ok(Some(pair)) => {
                            connections.spawn(self.clone().forward(pair));
                        }
                        Ok(None) => {}
                        Err((e, stream)) => {
                            tracing::debug!(error = %e, "refused port-forward stream");
                            let _ = stream.writer.reset(rst::PROTOCOL_ERROR).await;
                        }
                    },
                    // GOAWAY or the connection closed.
                    None => break,
                },
                _ = expiry.tick() => {
                    for stream in pairs.expire(PAIR_TIMEOUT) {
                        let _ = stream.writer.reset(rst::CANCEL).await;
                    }
                }
                Some(_) = connections.join_next(), if !connections.is_empty() => {}
            }
        }
        // Open connections go on until the client closes the session.
        session.closed().await;
    }

    /// One forwarded connection: its kubelet WebSocket, then bytes both ways.
    async fn forward(self: Arc<Self>, pair: Pair) {
        let Pair {
            port, data, error, ..
        } = pair;
        let path = kubelet_path(
            format!("/portForward/{}/{}", self.namespace, self.pod),
            &[("port", port.to_string())],
        );
        let conn = match self
            .client()
            .websocket(&self.kubelet, &path, channel::V4)
            .await
        {
            Ok(c) => c,
            Err(refusal) => {
                let message = match refusal {
                    super::kubelet::Refusal::Api(e) => e.to_string(),
                    super::kubelet::Refusal::Kubelet { status, body, .. } => {
                        format!("{status}: {}", String::from_utf8_lossy(&body).trim())
                    }
                };
                let text = format!(
                    "error forwarding port {port} to pod {}/{}: {message}",
                    self.namespace, self.pod
                );
                let _ = error.writer.write(text.as_bytes()).await;
                let _ = error.writer.finish().await;
                let _ = data.writer.finish().await;
                return;
            }
        };
        let ws = WebSocketStream::from_raw_socket(TokioIo::new(conn), Role::Client, None).await;
        let (mut ws_tx, mut ws_rx) = ws.split();
        let mut client_data = Some(data.data);
        let mut prefix_seen = [false, false];
        let grace = tokio::time::sleep(Duration::MAX);
        tokio::pin!(grace);
        loop {
            tokio::select! {
                bytes = async { client_data.as_mut()?.recv().await }, if client_data.is_some() => match bytes {
                    Some(bytes) => {
                        let msg = Message::Binary(channel::message(channel::port_data_channel(0), &bytes).into());
                        if ws_tx.send(msg).await.is_err() {
                            break;
                        }
                    }
                    None => {
                        client_data = None;
                        grace.as_mut().reset(tokio::time::Instant::now() + HALF_CLOSE_GRACE);
                    }
                },
                _ = &mut grace => break,
                msg = ws_rx.next() => match msg {
                    Some(Ok(Message::Binary(bytes))) => {
                        let Some(Channel::Data { channel: ch, data: payload }) = channel::parse(&bytes) else {
                            continue;
                        };
                        let index = usize::from(ch);
                        if index > 1 {
                            continue;
                        }
                        // The first message on each channel starts with the port.
                        let payload = if prefix_seen[index] {
                            payload
                        } else {
                            prefix_seen[index] = true;
                            payload.get(2..).unwrap_or_default()
                        };
                        if payload.is_empty() {
                            continue;
                        }
                        let writer = if index == 0 { &data.writer } else { &error.writer };
                        if writer.write(payload).await.is_err() {
                            break;
                        }
                    }
                    Some(Ok(Message::Close(_))) | Some(Err(_)) | None => break,
                    Some(Ok(_)) => {}
                },
            }
        }
        let _ = ws_tx
            .send(Message::Close(Some(CloseFrame {
                code: CloseCode::Normal,
                reason: "".into(),
            })))
            .await;
        let _ = data.writer.finish().await;
        let _ = error.writer.finish().await;
    }
}
