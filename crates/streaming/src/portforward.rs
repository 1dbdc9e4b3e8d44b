//! Port-forward over SPDY (`portforward.k8s.io`): every forwarded TCP connection is a pair of
//! client-opened streams, `error` and `data`, with the same `requestid` and `port` headers.
//! [`StreamPairs`] matches them up (kubelet's `httpStreamHandler` bookkeeping).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use crate::spdy::Stream;

/// The SPDY sub-protocol of port-forward.
pub const PROTOCOL_V1: &str = "portforward.k8s.io";
/// kubectl ≥ 1.31 tunnels SPDY inside a WebSocket whose sub-protocol is this prefix plus the
/// SPDY one: `SPDY/3.1+portforward.k8s.io`.
pub const WEBSOCKET_TUNNEL_PREFIX: &str = "SPDY/3.1+";

/// Stream headers.
pub mod header {
    pub const STREAM_TYPE: &str = "streamtype";
    pub const PORT: &str = "port";
    pub const REQUEST_ID: &str = "requestid";
}

/// `streamtype` values.
pub mod stream_type {
    pub const ERROR: &str = "error";
    pub const DATA: &str = "data";
}

/// How long the second stream of a pair may take to arrive (upstream's stream creation
/// timeout).
pub const PAIR_TIMEOUT: Duration = Duration::from_secs(30);

/// The WebSocket sub-protocol of the SPDY tunnel.
pub fn tunnel_protocol() -> String {
    format!("{WEBSOCKET_TUNNEL_PREFIX}{PROTOCOL_V1}")
}

/// One forwarded connection: both streams present.
pub struct Pair {
    pub request_id: String,
    pub port: u16,
    pub data: Stream,
    pub error: Stream,
}

struct Partial {
    port: u16,
    data: Option<Stream>,
    error: Option<Stream>,
    since: Instant,
}

/// Why a stream cannot be part of a pair; the text is what goes to the client.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PairError {
    #[error("invalid stream type {0:?}")]
    StreamType(String),
    #[error("{0}")]
    Port(String),
    #[error("stream of type {stream_type} for request {request_id} received twice")]
    Duplicate {
        stream_type: String,
        request_id: String,
    },
}

/// The request id of a stream; old clients send none, so derive one from the stream id as
/// upstream does (error stream `id`, data stream `id - 2`).
pub fn request_id(stream: &Stream) -> String {
    if let Some(id) = stream.headers.get(header::REQUEST_ID) {
        if !id.is_empty() {
            return id.to_string();
        }
    }
    match stream.stream_type() {
        stream_type::DATA => stream.id.saturating_sub(2).to_string(),
        _ => stream.id.to_string(),
    }
}

/// Parse the `port` header like the kubelet: a number from 1 to 65535.
pub fn parse_port(value: Option<&str>) -> Result<u16, PairError> {
    let value = value.unwrap_or("");
    if value.is_empty() {
        return Err(PairError::Port("\"port\" header is required".into()));
    }
    match value.parse::<u16>() {
        Ok(p) if p > 0 => Ok(p),
        _ => Err(PairError::Port(format!(
            "unable to parse {value:?} as a port: must be a number from 1 to 65535"
        ))),
    }
}

/// Streams waiting for their partner, by request id.
#[derive(Default)]
pub struct StreamPairs {
    pending: HashMap<String, Partial>,
}

impl StreamPairs {
    pub fn new() -> StreamPairs {
        StreamPairs::default()
    }

    /// Add a stream; the pair once both halves are in. A stream refused with an error is
    /// handed back for the caller to reset.
    #[allow(clippy::result_large_err)]
    pub fn add(&mut self, stream: Stream) -> Result<Option<Pair>, (PairError, Stream)> {
        let kind = stream.stream_type().to_string();
        if kind != stream_type::DATA && kind != stream_type::ERROR {
            return Err((PairError::StreamType(kind), stream));
        }
        let port = match parse_port(stream.headers.get(header::PORT)) {
            Ok(p) => p,
            Err(e) => return Err((e, stream)),
        };
        let id = request_id(&stream);
        let entry = self.pending.entry(id.clone()).or_insert_with(|| Partial {
            port,
            data: None,
            error: None,
            since: Instant::now(),
        });
        let slot = if kind == stream_type::DATA {
            &mut entry.data
        } else {
            &mut entry.error
        };
        if slot.is_some() {
            return Err((
                PairError::Duplicate {
                    stream_type: kind,
                    request_id: id,
                },
                stream,
            ));
        }
        *slot = Some(stream);
        if entry.data.is_some() && entry.error.is_some() {
            let p = self.pending.remove(&id).expect("entry just filled");
            return Ok(Some(Pair {
                request_id: id,
                port: p.port,
                data: p.data.expect("present"),
                error: p.error.expect("present"),
            }));
        }
        Ok(None)
    }

    /// Remove the halves that waited longer than `timeout` for their partner.
    pub fn expire(&mut self, timeout: Duration) -> Vec<Stream> {
        let now = Instant::now();
        let old: Vec<String> = self
            .pending
            .iter()
            .filter(|(_, p)| now.duration_since(p.since) >= timeout)
            .map(|(id, _)| id.clone())
            .collect();
        old.into_iter()
            .filter_map(|id| self.pending.remove(&id))
            .flat_map(|p| p.data.into_iter().chain(p.error))
            .collect()
    }

    pub fn pending(&self) -> usize {
        self.pending.len()
    }
}

/// The ports of a port-forward request's query: repeated `ports=` (or the kubelet's `port=`)
/// parameters, each possibly comma-separated (kube-rs sends `ports=80,8080`).
pub fn query_ports<'a>(values: impl IntoIterator<Item = &'a str>) -> Result<Vec<u16>, String> {
    let mut ports = Vec::new();
    for v in values {
        for p in v.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            match p.parse::<u16>() {
                Ok(port) if port > 0 => ports.push(port),
                _ => {
                    return Err(format!(
                        "invalid port {p:?}: must be a number from 1 to 65535"
                    ))
                }
            }
        }
    }
    Ok(ports)
}
