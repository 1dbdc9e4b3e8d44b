//! The server side of a SPDY/3.1 connection: streams the client opens, each answered with a
//! SYN_REPLY at once (as Kubernetes' spdystream servers do), their data delivered in order, and
//! a writer per stream.
//!
//! Two tasks own the connection: a reader (frames in, dispatched to streams) and a writer (one
//! queue of frames out, so frames never interleave and SYN_REPLY always precedes a stream's
//! data). Dropping the [`Session`] stops both and closes the connection.
//!
//! Flow control: received data is acknowledged with WINDOW_UPDATE frames (per stream and for
//! the session) once half the default 64 KiB window is consumed, so a peer that enforces
//! windows never stalls. Send windows are not enforced: Kubernetes' spdystream peers never send
//! WINDOW_UPDATE and would stall after 64 KiB if they were.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use super::frame::{goaway, rst, Frame, FrameDecoder, FrameEncoder, Headers};
use crate::Error;

/// Largest data frame this side sends.
pub const MAX_DATA_FRAME: usize = 32 * 1024;
/// The SPDY/3 default window; a WINDOW_UPDATE goes out once half of it is consumed.
const DEFAULT_WINDOW: u32 = 64 * 1024;
/// Data frames a stream buffers before the connection's reader waits for its consumer.
const STREAM_BUFFER: usize = 32;

enum Out {
    Frame(Frame),
    /// The peer reset this stream: send nothing more on it.
    Forget(u32),
    /// GOAWAY (status OK) naming the last stream the peer opened.
    GoAway,
}

/// A stream the client opened.
pub struct Stream {
    pub id: u32,
    pub headers: Headers,
    /// The client's data, in order; ends at the client's FIN or RST_STREAM.
    pub data: mpsc::Receiver<Bytes>,
    pub writer: StreamWriter,
}

impl std::fmt::Debug for Stream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Stream")
            .field("id", &self.id)
            .field("headers", &self.headers)
            .finish_non_exhaustive()
    }
}

impl Stream {
    /// The `streamtype` header (Kubernetes' stream kinds: error, stdin, stdout, data, ...).
    pub fn stream_type(&self) -> &str {
        self.headers.get("streamtype").unwrap_or("")
    }
}

/// This side of one stream.
#[derive(Clone)]
pub struct StreamWriter {
    id: u32,
    out: mpsc::Sender<Out>,
}

impl StreamWriter {
    pub fn id(&self) -> u32 {
        self.id
    }

    /// Send `data` (split into frames of at most [`MAX_DATA_FRAME`] bytes).
    pub async fn write(&self, data: &[u8]) -> Result<(), Error> {
        for chunk in data.chunks(MAX_DATA_FRAME) {
            self.send(Frame::Data {
                stream_id: self.id,
                fin: false,
                data: Bytes::copy_from_slice(chunk),
            })
            .await?;
        }
        Ok(())
    }

    /// Send owned bytes without copying when they fit one frame.
    pub async fn write_bytes(&self, data: Bytes) -> Result<(), Error> {
        if data.len() <= MAX_DATA_FRAME {
            return self
                .send(Frame::Data {
                    stream_id: self.id,
                    fin: false,
                    data,
                })
                .await;
        }
        self.write(&data).await
    }

    /// Half-close: an empty data frame with FLAG_FIN. Later writes are dropped.
    pub async fn finish(&self) -> Result<(), Error> {
        self.send(Frame::Data {
            stream_id: self.id,
            fin: true,
            data: Bytes::new(),
        })
        .await
    }

    /// Abort the stream with RST_STREAM.
    pub async fn reset(&self, status: u32) -> Result<(), Error> {
        self.send(Frame::RstStream {
            stream_id: self.id,
            status,
        })
        .await
    }

    async fn send(&self, frame: Frame) -> Result<(), Error> {
        self.out
            .send(Out::Frame(frame))
            .await
            .map_err(|_| Error::Closed)
    }
}

/// A served SPDY connection. Dropping it closes the connection.
pub struct Session {
    out: mpsc::Sender<Out>,
    closed: watch::Receiver<bool>,
    reader: JoinHandle<()>,
    writer: JoinHandle<()>,
}

impl Drop for Session {
    fn drop(&mut self) {
        self.reader.abort();
        self.writer.abort();
    }
}

impl Session {
    /// Serve the SPDY connection on `io` (after the HTTP 101). Streams the client opens arrive
    /// on the receiver, already replied to; it ends when the client sends GOAWAY or the
    /// connection closes.
    pub fn serve<T>(io: T) -> (Session, mpsc::Receiver<Stream>)
    where
        T: AsyncRead + AsyncWrite + Send + 'static,
    {
        let (rd, wr) = tokio::io::split(io);
        let (out_tx, out_rx) = mpsc::channel(64);
        let (incoming_tx, incoming_rx) = mpsc::channel(16);
        let (closed_tx, closed_rx) = watch::channel(false);
        let last_stream = Arc::new(AtomicU32::new(0));
        let reader = tokio::spawn(read_loop(
            rd,
            out_tx.clone(),
            incoming_tx,
            closed_tx,
            last_stream.clone(),
        ));
        let writer = tokio::spawn(write_loop(wr, out_rx, last_stream));
        (
            Session {
                out: out_tx,
                closed: closed_rx,
                reader,
                writer,
            },
            incoming_rx,
        )
    }

    /// Send GOAWAY: no new streams; the streams already open go on.
    pub async fn go_away(&self) {
        let _ = self.out.send(Out::GoAway).await;
    }

    /// Wait until the client closed the connection (or it failed).
    pub async fn closed(&self) {
        let mut closed = self.closed.clone();
        let _ = closed.wait_for(|c| *c).await;
    }
}

struct Incoming {
    data: Option<mpsc::Sender<Bytes>>,
    unacknowledged: u32,
}

async fn read_loop<R: AsyncRead>(
    rd: R,
    out: mpsc::Sender<Out>,
    incoming: mpsc::Sender<Stream>,
    closed: watch::Sender<bool>,
    last_stream: Arc<AtomicU32>,
) {
    let mut rd = std::pin::pin!(rd);
    let mut decoder = FrameDecoder::new();
    let mut buf = BytesMut::with_capacity(16 * 1024);
    let mut reader = Reader {
        out,
        incoming: Some(incoming),
        streams: HashMap::new(),
        last_stream,
        session_unacknowledged: 0,
    };
    'read: loop {
        loop {
            match decoder.decode(&mut buf) {
                Ok(Some(frame)) => {
                    if reader.handle(frame).await.is_err() {
                        break 'read;
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    tracing::debug!(error = %e, "SPDY framing error; closing the connection");
                    let _ = reader
                        .out
                        .send(Out::Frame(Frame::GoAway {
                            last_good_stream_id: reader.last_stream.load(Ordering::Relaxed),
                            status: goaway::PROTOCOL_ERROR,
                        }))
                        .await;
                    break 'read;
                }
            }
        }
        match rd.read_buf(&mut buf).await {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) => {
                tracing::debug!(error = %e, "SPDY connection read failed");
                break;
            }
        }
    }
    // Every stream's data ends here; consumers see their receivers close.
    drop(reader);
    let _ = closed.send(true);
}

struct Reader {
    out: mpsc::Sender<Out>,
    incoming: Option<mpsc::Sender<Stream>>,
    streams: HashMap<u32, Incoming>,
    last_stream: Arc<AtomicU32>,
    session_unacknowledged: u32,
}

impl Reader {
    async fn send(&self, frame: Frame) -> Result<(), Error> {
        self.out
            .send(Out::Frame(frame))
            .await
            .map_err(|_| Error::Closed)
    }

    async fn handle(&mut self, frame: Frame) -> Result<(), Error> {
        match frame {
            Frame::SynStream {
                stream_id,
                fin,
                headers,
                ..
            } => {
                let last = self.last_stream.load(Ordering::Relaxed);
                if stream_id % 2 == 0 || stream_id <= last {
                    return self
                        .send(Frame::RstStream {
                            stream_id,
                            status: rst::PROTOCOL_ERROR,
                        })
                        .await;
                }
                self.last_stream.store(stream_id, Ordering::Relaxed);
                let Some(incoming) = self.incoming.clone() else {
                    return self
                        .send(Frame::RstStream {
                            stream_id,
                            status: rst::REFUSED_STREAM,
                        })
                        .await;
                };
                self.send(Frame::SynReply {
                    stream_id,
                    fin: false,
                    headers: Headers::new(),
                })
                .await?;
                let (tx, rx) = mpsc::channel(STREAM_BUFFER);
                if !fin {
                    self.streams.insert(
                        stream_id,
                        Incoming {
                            data: Some(tx),
                            unacknowledged: 0,
                        },
                    );
                }
                let stream = Stream {
                    id: stream_id,
                    headers,
                    data: rx,
                    writer: StreamWriter {
                        id: stream_id,
                        out: self.out.clone(),
                    },
                };
                if incoming.send(stream).await.is_err() {
                    self.streams.remove(&stream_id);
                    self.send(Frame::RstStream {
                        stream_id,
                        status: rst::REFUSED_STREAM,
                    })
                    .await?;
                }
            }
            Frame::Data {
                stream_id,
                fin,
                data,
            } => {
                let len = data.len() as u32;
                if let Some(stream) = self.streams.get_mut(&stream_id) {
                    if !data.is_empty() {
                        if let Some(tx) = &stream.data {
                            if tx.send(data).await.is_err() {
                                // The consumer stopped reading: drop its data.
                                stream.data = None;
                            }
                        }
                        stream.unacknowledged += len;
                        if !fin && stream.unacknowledged >= DEFAULT_WINDOW / 2 {
                            let delta = std::mem::take(&mut stream.unacknowledged);
                            self.send(Frame::WindowUpdate { stream_id, delta }).await?;
                        }
                    }
                    if fin {
                        self.streams.remove(&stream_id);
                    }
                }
                self.session_unacknowledged += len;
                if self.session_unacknowledged >= DEFAULT_WINDOW / 2 {
                    let delta = std::mem::take(&mut self.session_unacknowledged);
                    self.send(Frame::WindowUpdate {
                        stream_id: 0,
                        delta,
                    })
                    .await?;
                }
            }
            Frame::RstStream { stream_id, .. } => {
                self.streams.remove(&stream_id);
                let _ = self.out.send(Out::Forget(stream_id)).await;
            }
            Frame::Ping { id } => {
                // Odd ids are the client's own pings (a server's are even): echo them.
                if id % 2 == 1 {
                    self.send(Frame::Ping { id }).await?;
                }
            }
            Frame::GoAway { .. } => {
                self.incoming = None;
            }
            Frame::SynReply { .. }
            | Frame::Headers { .. }
            | Frame::Settings { .. }
            | Frame::WindowUpdate { .. }
            | Frame::Unknown { .. } => {}
        }
        Ok(())
    }
}

async fn write_loop<W: AsyncWrite>(
    wr: W,
    mut queue: mpsc::Receiver<Out>,
    last_stream: Arc<AtomicU32>,
) {
    let mut wr = std::pin::pin!(wr);
    let mut encoder = FrameEncoder::new();
    let mut buf = BytesMut::with_capacity(16 * 1024);
    // Streams this side finished or the peer reset: nothing more is sent on them.
    let mut done: HashSet<u32> = HashSet::new();
    while let Some(first) = queue.recv().await {
        let mut next = Some(first);
        while let Some(item) = next.take() {
            let frame = match item {
                Out::Forget(id) => {
                    done.insert(id);
                    None
                }
                Out::GoAway => Some(Frame::GoAway {
                    last_good_stream_id: last_stream.load(Ordering::Relaxed),
                    status: goaway::OK,
                }),
                Out::Frame(frame) => match &frame {
                    Frame::Data { stream_id, fin, .. } => {
                        if done.contains(stream_id) {
                            None
                        } else {
                            if *fin {
                                done.insert(*stream_id);
                            }
                            Some(frame)
                        }
                    }
                    Frame::RstStream { stream_id, .. } => done.insert(*stream_id).then_some(frame),
                    _ => Some(frame),
                },
            };
            if let Some(frame) = frame {
                if let Err(e) = encoder.encode(&frame, &mut buf) {
                    tracing::debug!(error = %e, "cannot encode a SPDY frame");
                    return;
                }
            }
            if buf.len() < 64 * 1024 {
                next = queue.try_recv().ok();
            }
        }
        if buf.is_empty() {
            continue;
        }
        if wr.write_all(&buf).await.is_err() || wr.flush().await.is_err() {
            return;
        }
        buf.clear();
    }
    let _ = wr.shutdown().await;
}
