//! The wire protocols of Kubernetes' streaming subresources (`pods/exec`, `pods/attach`,
//! `pods/portforward`), for the API server and for kubelets:
//!
//! - [`spdy`]: SPDY/3.1 framing (every control frame, zlib header blocks primed with the SPDY/3
//!   dictionary) and the server side of a SPDY connection;
//! - [`channel`]: the `v4`/`v5.channel.k8s.io` WebSocket channel framing;
//! - [`remotecommand`]: exec/attach sub-protocol negotiation, stream sets, the final `Status`;
//! - [`portforward`]: port-forward stream pairs over SPDY and its sub-protocol names;
//! - [`tunnel`]: a byte stream in binary WebSocket messages (SPDY tunnelled in a WebSocket);
//! - [`logs`]: whether a container has logs, in the kubelet's words.
//!
//! It is not an HTTP server or client: callers do the HTTP upgrade and hand over the
//! connection. Flow control follows what Kubernetes' Go peers do (see [`spdy::session`]).

pub mod channel;
pub mod logs;
pub mod portforward;
pub mod remotecommand;
pub mod spdy;
pub mod tunnel;

/// Protocol failures.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("SPDY protocol error: {0}")]
    Protocol(String),
    #[error("unsupported SPDY version {0} (only 3 is spoken)")]
    UnsupportedVersion(u16),
    #[error("header block compression failed: {0}")]
    Compression(String),
    #[error("the connection is closed")]
    Closed,
}
