//! SPDY/3.1, the multiplexing protocol under `kubectl exec` (fallback) and `kubectl
//! port-forward`: frames with zlib-compressed header blocks ([`frame`]) and the server side of
//! a connection ([`session`]).

mod dictionary;
pub mod frame;
pub mod session;

pub use dictionary::DICTIONARY;
pub use frame::{Frame, FrameDecoder, FrameEncoder, Headers, Setting};
pub use session::{Session, Stream, StreamWriter};

/// The `Upgrade` token of a SPDY connection.
pub const UPGRADE: &str = "SPDY/3.1";
/// The header carrying the offered (request) and chosen (response) Kubernetes sub-protocols.
pub const PROTOCOL_HEADER: &str = "X-Stream-Protocol-Version";

#[cfg(test)]
mod tests;
