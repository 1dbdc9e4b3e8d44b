//! A byte stream carried in binary WebSocket messages, as kubectl ≥ 1.31 tunnels its SPDY
//! port-forward connection (client-go `TunnelingConnection`): message boundaries mean nothing,
//! text messages are an error, a close frame is the end of the stream.

use std::time::Duration;

use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, DuplexStream};
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

/// Largest message this side sends.
const CHUNK: usize = 32 * 1024;
/// How long the peer gets to answer our close frame.
const CLOSE_GRACE: Duration = Duration::from_secs(5);

/// Expose `ws` as a byte stream. The returned stream reads what the peer sends and writes
/// binary messages; the task ends when both directions are done (dropping the stream sends
/// a close frame).
pub fn byte_stream<S>(ws: WebSocketStream<S>) -> (DuplexStream, JoinHandle<()>)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (local, remote) = tokio::io::duplex(64 * 1024);
    let task = tokio::spawn(async move {
        let (mut sink, mut stream) = ws.split();
        let (mut rd, mut wr) = tokio::io::split(remote);
        let outgoing = async move {
            let mut buf = vec![0u8; CHUNK];
            loop {
                match rd.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        let msg = Message::Binary(Bytes::copy_from_slice(&buf[..n]));
                        if sink.send(msg).await.is_err() {
                            return;
                        }
                    }
                }
            }
            let _ = sink
                .send(Message::Close(Some(CloseFrame {
                    code: CloseCode::Normal,
                    reason: "".into(),
                })))
                .await;
            let _ = sink.flush().await;
        };
        let incoming = async move {
            while let Some(msg) = stream.next().await {
                match msg {
                    Ok(Message::Binary(data)) => {
                        if wr.write_all(&data).await.is_err() {
                            break;
                        }
                    }
                    Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_)) => {}
                    Ok(Message::Text(_)) => {
                        tracing::debug!("text message in a binary tunnel; closing it");
                        break;
                    }
                    Ok(Message::Close(_)) | Err(_) => break,
                }
            }
            let _ = wr.shutdown().await;
        };
        let mut outgoing = tokio::spawn(outgoing);
        tokio::pin!(incoming);
        tokio::select! {
            _ = &mut incoming => {
                // The peer closed: give our side a moment to send what is left.
                if tokio::time::timeout(CLOSE_GRACE, &mut outgoing).await.is_err() {
                    outgoing.abort();
                }
            }
            _ = &mut outgoing => {
                // We closed: give the peer a moment to answer the close frame.
                let _ = tokio::time::timeout(CLOSE_GRACE, incoming).await;
            }
        }
    });
    (local, task)
}
