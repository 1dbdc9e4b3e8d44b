//! `pods/exec` and `pods/attach`: the kubelet speaks `v5.channel.k8s.io` WebSocket only.
//!
//! - WebSocket v5 client: after both handshakes, the two connections are piped byte for byte
//!   (the frames are end to end: the client masks, the kubelet does not).
//! - WebSocket v4 client: relayed message by message, without v5's close signals.
//! - SPDY/3.1 client (kubectl's fallback, or kubectl < 1.30): its streams (error, stdin,
//!   stdout, stderr, resize) are translated to and from the kubelet's channels; stdin's FIN
//!   becomes the v5 close signal, the kubelet's `Status` on channel 3 goes to the error stream.

use std::collections::HashMap;
use std::time::Duration;

use axum::response::Response;
use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use http::request::Parts;
use hyper::upgrade::Upgraded;
use hyper_util::rt::TokioIo;
use kubelab_streaming::channel::{self, Message as Channel};
use kubelab_streaming::remotecommand::{self, stream_type, ResizeDecoder, StreamOptions};
use kubelab_streaming::spdy::{Session, Stream};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::protocol::Role;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

use super::{
    after_upgrade, kubelet_path, on_upgrade, spdy_accept, spdy_protocols, websocket_accept,
    websocket_protocols, Params, Target,
};
use crate::error::{ApiError, ApiResult};

/// How long a SPDY client gets to open its streams (upstream's stream creation timeout).
const STREAM_CREATION_TIMEOUT: Duration = Duration::from_secs(30);
/// How long the client gets to close the connection after the session ended.
const CLOSE_GRACE: Duration = Duration::from_secs(5);

pub(super) async fn serve(
    target: &Target,
    exec: bool,
    query: &Params,
    parts: &mut Parts,
) -> ApiResult<Response> {
    let container = target.container(query.get("container"))?;
    let command: Vec<String> = query.all("command").map(String::from).collect();
    if exec && command.is_empty() {
        return Err(ApiError::bad_request("you must specify at least 1 command"));
    }
    let opts = StreamOptions {
        stdin: query.flag("stdin")?,
        stdout: query.flag("stdout")?,
        stderr: query.flag("stderr")?,
        tty: query.flag("tty")?,
    }
    .normalized();
    if !opts.any_stream() {
        return Err(ApiError::bad_request(
            "you must specify at least 1 of stdin, stdout, stderr",
        ));
    }
    let phase = target.phase();
    if phase == "Succeeded" || phase == "Failed" {
        return Err(ApiError::bad_request(if exec {
            format!("cannot exec into a container in a completed pod; current phase is {phase}")
        } else {
            format!("cannot attach a container in a completed pod; current phase is {phase}")
        }));
    }
    let websocket = websocket_protocols(&parts.headers);
    let spdy = spdy_protocols(&parts.headers);
    if websocket.is_none() && spdy.is_none() {
        return Err(ApiError::bad_request("Upgrade request required"));
    }
    // Refuse what cannot be negotiated before dialling the kubelet.
    let client_protocol = match (&websocket, &spdy) {
        (Some(offered), _) => [channel::V5, channel::V4]
            .into_iter()
            .find(|p| offered.iter().any(|o| o == p))
            .map(String::from)
            .ok_or_else(|| {
                ApiError::bad_request(format!(
                    "requested protocol(s) are not supported: {offered:?}; supports [{} {}]",
                    channel::V5,
                    channel::V4
                ))
            })?,
        (None, Some(offered)) => {
            remotecommand::negotiate(offered, &remotecommand::SPDY_VERSIONS).ok_or_else(|| {
                ApiError::Forbidden {
                    message: format!(
                        "unable to upgrade: unable to negotiate protocol: client supports {offered:?}, server supports {:?}",
                        remotecommand::SPDY_VERSIONS
                    ),
                    details: None,
                }
            })?
        }
        (None, None) => unreachable!("checked above"),
    };
    let upgrade = on_upgrade(parts)?;
    let kubelet = target.kubelet().await?;
    let mut kubelet_query: Vec<(&str, String)> =
        command.iter().map(|c| ("command", c.clone())).collect();
    kubelet_query.extend(
        opts.kubelet_query()
            .into_iter()
            .map(|(k, v)| (k, v.to_string())),
    );
    let verb = if exec { "exec" } else { "attach" };
    let path = kubelet_path(
        format!(
            "/{verb}/{}/{}/{container}",
            target.namespace, target.pod_name
        ),
        &kubelet_query,
    );
    let kubelet_conn = match target
        .client()
        .websocket(&kubelet, &path, channel::V5)
        .await
    {
        Ok(c) => c,
        Err(refusal) => return Ok(refusal.into_response()),
    };
    if websocket.is_some() {
        let response = websocket_accept(&parts.headers, &client_protocol)?;
        if client_protocol == channel::V5 {
            after_upgrade(upgrade, move |client| pipe(client, kubelet_conn));
        } else {
            after_upgrade(upgrade, move |client| relay_v4(client, kubelet_conn));
        }
        return Ok(response);
    }
    let response = spdy_accept(&client_protocol)?;
    after_upgrade(upgrade, move |client| {
        translate_spdy(client, kubelet_conn, opts)
    });
    Ok(response)
}

/// Byte-for-byte copy between two upgraded connections until both sides are done.
pub(super) async fn pipe(client: TokioIo<Upgraded>, kubelet: Upgraded) {
    let mut client = client;
    let mut kubelet = TokioIo::new(kubelet);
    if let Err(e) = tokio::io::copy_bidirectional(&mut client, &mut kubelet).await {
        tracing::debug!(error = %e, "streaming pipe ended with an error");
    }
}

/// A v4 client against the v5 kubelet: messages relayed, the kubelet's close signals dropped.
async fn relay_v4(client: TokioIo<Upgraded>, kubelet: Upgraded) {
    let client = WebSocketStream::from_raw_socket(client, Role::Server, None).await;
    let kubelet = WebSocketStream::from_raw_socket(TokioIo::new(kubelet), Role::Client, None).await;
    let (mut client_tx, mut client_rx) = client.split();
    let (mut kubelet_tx, mut kubelet_rx) = kubelet.split();
    let up = async {
        while let Some(Ok(msg)) = client_rx.next().await {
            let close = matches!(msg, Message::Close(_));
            if matches!(msg, Message::Binary(_) | Message::Close(_))
                && kubelet_tx.send(msg).await.is_err()
            {
                break;
            }
            if close {
                break;
            }
        }
    };
    let down = async {
        while let Some(Ok(msg)) = kubelet_rx.next().await {
            let (forward, last) = match &msg {
                // v4 has no close signals.
                Message::Binary(b) => (
                    !matches!(channel::parse(b), Some(Channel::Close { .. })),
                    false,
                ),
                Message::Close(_) => (true, true),
                _ => (false, false),
            };
            if (forward && client_tx.send(msg).await.is_err()) || last {
                break;
            }
        }
    };
    tokio::select! {
        _ = up => {}
        _ = down => {}
    }
}

/// A channel that may be absent: pending forever when it is.
async fn recv(rx: &mut Option<mpsc::Receiver<Bytes>>) -> Option<Bytes> {
    match rx {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

/// A SPDY client against the v5 kubelet.
async fn translate_spdy(client: TokioIo<Upgraded>, kubelet: Upgraded, opts: StreamOptions) {
    let (session, mut incoming) = Session::serve(client);
    let expected = opts.spdy_stream_types();
    let mut streams: HashMap<&'static str, Stream> = HashMap::new();
    let deadline = tokio::time::Instant::now() + STREAM_CREATION_TIMEOUT;
    while streams.len() < expected.len() {
        match tokio::time::timeout_at(deadline, incoming.recv()).await {
            Ok(Some(stream)) => {
                let kind = stream.stream_type().to_string();
                match expected.iter().find(|t| **t == kind) {
                    Some(t) if !streams.contains_key(t) => {
                        streams.insert(t, stream);
                    }
                    _ => {
                        tracing::debug!(stream_type = %kind, "unexpected exec stream");
                        let _ = stream
                            .writer
                            .reset(kubelab_streaming::spdy::frame::rst::PROTOCOL_ERROR)
                            .await;
                    }
                }
            }
            Ok(None) | Err(_) => {
                tracing::debug!(
                    got = streams.len(),
                    expected = expected.len(),
                    "exec client did not open its streams"
                );
                return;
            }
        }
    }
    let ws = WebSocketStream::from_raw_socket(TokioIo::new(kubelet), Role::Client, None).await;
    let (mut ws_tx, mut ws_rx) = ws.split();
    let error = streams.remove(stream_type::ERROR);
    let stdout = streams.remove(stream_type::STDOUT);
    let stderr = streams.remove(stream_type::STDERR);
    let mut stdin = streams.remove(stream_type::STDIN).map(|s| s.data);
    let mut resize = streams.remove(stream_type::RESIZE).map(|s| s.data);

    // Client to kubelet: stdin (its FIN is the v5 close signal) and terminal sizes.
    let upstream = tokio::spawn(async move {
        let mut sizes = ResizeDecoder::default();
        while stdin.is_some() || resize.is_some() {
            tokio::select! {
                data = recv(&mut stdin) => match data {
                    Some(data) => {
                        let msg = Message::Binary(channel::message(channel::STDIN, &data).into());
                        if ws_tx.send(msg).await.is_err() {
                            return;
                        }
                    }
                    None => {
                        stdin = None;
                        let msg = Message::Binary(channel::close_signal(channel::STDIN).into());
                        if ws_tx.send(msg).await.is_err() {
                            return;
                        }
                    }
                },
                data = recv(&mut resize) => match data {
                    Some(data) => {
                        for size in sizes.push(&data) {
                            let msg = Message::Binary(channel::message(channel::RESIZE, &size).into());
                            if ws_tx.send(msg).await.is_err() {
                                return;
                            }
                        }
                    }
                    None => resize = None,
                },
            }
        }
        // Keep the sink open until the session ends (dropping it closes nothing by itself).
        std::future::pending::<()>().await;
    });

    // Kubelet to client: stdout, stderr, and the final Status on the error stream.
    let downstream = async {
        while let Some(msg) = ws_rx.next().await {
            let data = match msg {
                Ok(Message::Binary(data)) => data,
                Ok(Message::Close(_)) | Err(_) => break,
                Ok(_) => continue,
            };
            let writer_of = |ch: u8| match ch {
                channel::STDOUT => stdout.as_ref(),
                channel::STDERR => stderr.as_ref(),
                channel::ERROR => error.as_ref(),
                _ => None,
            };
            match channel::parse(&data) {
                Some(Channel::Data { channel: ch, data }) if !data.is_empty() => {
                    if let Some(s) = writer_of(ch) {
                        let _ = s.writer.write(data).await;
                    }
                }
                Some(Channel::Close { channel: ch }) => {
                    if let Some(s) = writer_of(ch) {
                        let _ = s.writer.finish().await;
                    }
                }
                _ => {}
            }
        }
    };
    tokio::select! {
        _ = downstream => {}
        _ = session.closed() => {}
    }
    upstream.abort();
    for s in [&stdout, &stderr, &error].into_iter().flatten() {
        let _ = s.writer.finish().await;
    }
    session.go_away().await;
    // Let the client read everything and close first (closing with unread input could reset
    // the connection under the data).
    let _ = tokio::time::timeout(CLOSE_GRACE, session.closed()).await;
}
