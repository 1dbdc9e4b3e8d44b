//! exec and attach sessions with stdin, bridged from the caller's WebSocket
//! (`v5.channel.k8s.io`) to the runtime's streaming server over SPDY/3.1
//! (`v4.channel.k8s.io` streams). containerd's streaming server predates v5, and its WebSocket
//! protocols cannot say "stdin is closed" (what `kubectl cp` into a pod needs to end `tar xf
//! -`); a SPDY stream can, with a FIN. This is the client end of that SPDY connection, over the
//! framing of `kubelab_streaming::spdy`.

use std::collections::HashMap;

use bytes::{Bytes, BytesMut};
use futures::{SinkExt, StreamExt};
use kubelab_streaming::channel;
use kubelab_streaming::remotecommand;
use kubelab_streaming::spdy::{Frame, FrameDecoder, FrameEncoder, Headers};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::Message;

use crate::fake::kubelet_server::Ws;

/// Which streams the session has (as the CRI request said).
pub struct Streams {
    pub stdin: bool,
    pub stdout: bool,
    pub stderr: bool,
    pub tty: bool,
}

/// Upgrades a connection to the runtime's `url` to SPDY; returns the connection.
async fn connect(url: &str) -> Result<TcpStream, String> {
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| format!("unsupported streaming URL {url}"))?;
    let (host, path) = rest.split_once('/').unwrap_or((rest, ""));
    let mut tcp = TcpStream::connect(host)
        .await
        .map_err(|e| format!("cannot reach the runtime's streaming server {host}: {e}"))?;
    let request = format!(
        "POST /{path} HTTP/1.1\r\nHost: {host}\r\nConnection: Upgrade\r\nUpgrade: SPDY/3.1\r\n\
         X-Stream-Protocol-Version: v4.channel.k8s.io\r\nContent-Length: 0\r\n\r\n"
    );
    tcp.write_all(request.as_bytes())
        .await
        .map_err(|e| e.to_string())?;
    // The response head, byte by byte (SPDY frames follow it at once).
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let mut b = [0u8; 1];
        if tcp.read(&mut b).await.map_err(|e| e.to_string())? == 0 {
            return Err("the streaming server closed the connection".into());
        }
        head.push(b[0]);
        if head.len() > 16 << 10 {
            return Err("response head too long".into());
        }
    }
    let text = String::from_utf8_lossy(&head);
    if !text.starts_with("HTTP/1.1 101") {
        return Err(format!(
            "the streaming server refused the upgrade: {}",
            text.lines().next().unwrap_or("")
        ));
    }
    Ok(tcp)
}

/// Runs the session until the remote command ends or the caller leaves.
pub async fn bridge(client: Ws, url: String, streams: Streams) {
    let (mut sink, mut source) = client.split();
    let tcp = match connect(&url).await {
        Ok(t) => t,
        Err(e) => {
            tracing::warn!(%url, error = %e, "exec over SPDY failed");
            let _ = sink
                .send(Message::Binary(
                    channel::message(channel::ERROR, &remotecommand::internal_error(&e)).into(),
                ))
                .await;
            let _ = sink.close().await;
            return;
        }
    };
    let (mut rd, mut wr) = tcp.into_split();
    let mut enc = FrameEncoder::new();
    let mut dec = FrameDecoder::new();
    // Streams: error first (the server waits for every expected one before it starts).
    let mut kinds: Vec<(&str, u8)> = vec![("error", channel::ERROR)];
    if streams.stdin {
        kinds.push(("stdin", channel::STDIN));
    }
    if streams.stdout {
        kinds.push(("stdout", channel::STDOUT));
    }
    if streams.stderr && !streams.tty {
        kinds.push(("stderr", channel::STDERR));
    }
    if streams.tty {
        kinds.push(("resize", channel::RESIZE));
    }
    let mut ids: HashMap<u8, u32> = HashMap::new();
    let mut channels: HashMap<u32, u8> = HashMap::new();
    let mut wire = BytesMut::new();
    for (i, (kind, ch)) in kinds.iter().enumerate() {
        let id = 2 * i as u32 + 1;
        ids.insert(*ch, id);
        channels.insert(id, *ch);
        let frame = Frame::SynStream {
            stream_id: id,
            associated_to: 0,
            priority: 0,
            slot: 0,
            // Output-only streams are half-closed by the client at once.
            fin: matches!(*kind, "error" | "stdout" | "stderr"),
            unidirectional: false,
            headers: Headers::new().with("streamtype", kind),
        };
        if enc.encode(&frame, &mut wire).is_err() {
            return;
        }
    }
    if wr.write_all(&wire).await.is_err() {
        return;
    }
    let (frames_tx, mut frames_rx) = tokio::sync::mpsc::channel::<Frame>(64);
    // Writer: frames to the runtime, encoded in order.
    let writer = tokio::spawn(async move {
        while let Some(frame) = frames_rx.recv().await {
            let mut wire = BytesMut::new();
            if enc.encode(&frame, &mut wire).is_err() || wr.write_all(&wire).await.is_err() {
                break;
            }
        }
        let _ = wr.shutdown().await;
    });
    // Caller → runtime: stdin (and its close), terminal resizes.
    let to_runtime = {
        let frames_tx = frames_tx.clone();
        let ids = ids.clone();
        async move {
            while let Some(Ok(msg)) = source.next().await {
                let Message::Binary(b) = msg else {
                    if matches!(msg, Message::Close(_)) {
                        break;
                    }
                    continue;
                };
                match channel::parse(&b) {
                    Some(channel::Message::Data { channel: ch, data }) => {
                        if let Some(id) = ids.get(&ch) {
                            for chunk in data.chunks(32 << 10) {
                                let frame = Frame::Data {
                                    stream_id: *id,
                                    fin: false,
                                    data: Bytes::copy_from_slice(chunk),
                                };
                                if frames_tx.send(frame).await.is_err() {
                                    return;
                                }
                            }
                        }
                    }
                    Some(channel::Message::Close { channel: ch }) => {
                        if let Some(id) = ids.get(&ch) {
                            let frame = Frame::Data {
                                stream_id: *id,
                                fin: true,
                                data: Bytes::new(),
                            };
                            let _ = frames_tx.send(frame).await;
                        }
                    }
                    _ => {}
                }
            }
            // The caller left: stop the session.
        }
    };
    // Runtime → caller: output, and the final status from the error stream.
    let to_caller = async {
        let mut buf = BytesMut::new();
        let mut status: Vec<u8> = Vec::new();
        let mut open: usize = channels
            .values()
            .filter(|c| matches!(**c, channel::ERROR | channel::STDOUT | channel::STDERR))
            .count();
        // Channel-open messages, as the v5 server side sends them.
        loop {
            let frame = loop {
                match dec.decode(&mut buf) {
                    Ok(Some(f)) => break Some(f),
                    Ok(None) => {}
                    Err(_) => break None,
                }
                match rd.read_buf(&mut buf).await {
                    Ok(0) | Err(_) => break None,
                    Ok(_) => {}
                }
            };
            let Some(frame) = frame else { break };
            match frame {
                Frame::Data {
                    stream_id,
                    fin,
                    data,
                } => {
                    match channels.get(&stream_id) {
                        Some(&channel::ERROR) => status.extend_from_slice(&data),
                        Some(&ch)
                            if !data.is_empty()
                                && sink
                                    .send(Message::Binary(channel::message(ch, &data).into()))
                                    .await
                                    .is_err() =>
                        {
                            break;
                        }
                        _ => {}
                    }
                    if fin {
                        open = open.saturating_sub(1);
                        if open == 0 {
                            break;
                        }
                    }
                }
                Frame::Ping { id } => {
                    let _ = frames_tx.send(Frame::Ping { id }).await;
                }
                Frame::RstStream { stream_id, .. }
                    if channels.get(&stream_id) == Some(&channel::ERROR) =>
                {
                    break;
                }
                Frame::GoAway { .. } => break,
                _ => {}
            }
        }
        if status.is_empty() {
            status = remotecommand::success();
        }
        let _ = sink
            .send(Message::Binary(
                channel::message(channel::ERROR, &status).into(),
            ))
            .await;
        let _ = sink
            .send(Message::Close(Some(CloseFrame {
                code: CloseCode::Normal,
                reason: "".into(),
            })))
            .await;
    };
    tokio::select! {
        _ = to_caller => {}
        _ = to_runtime => {}
    }
    drop(frames_tx);
    writer.abort();
}
