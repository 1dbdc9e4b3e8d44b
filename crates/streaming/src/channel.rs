//! WebSocket channel framing of Kubernetes' `v4.channel.k8s.io` and `v5.channel.k8s.io`
//! sub-protocols: every message is binary, its first byte names the channel, the rest is data.
//!
//! - exec/attach: channel 0 stdin, 1 stdout, 2 stderr, 3 error (a `Status` JSON at the end),
//!   4 resize (`{"Width":80,"Height":24}`); v5 adds the close signal `[255, channel]` (the
//!   sender will write nothing more on that channel: stdin EOF).
//! - port-forward (v4): per requested port `i`, data on channel `2i` and errors on `2i+1`; the
//!   first message the server sends on each of them is the port, 2 bytes little-endian.

/// The exec/attach protocol with close signals (kubectl ≥ 1.30 offers only this one).
pub const V5: &str = "v5.channel.k8s.io";
/// The exec/attach protocol without close signals; also kube-rs's port-forward protocol.
pub const V4: &str = "v4.channel.k8s.io";

pub const STDIN: u8 = 0;
pub const STDOUT: u8 = 1;
pub const STDERR: u8 = 2;
pub const ERROR: u8 = 3;
pub const RESIZE: u8 = 4;
/// v5: the first byte of a close signal; the second names the closed channel.
pub const CLOSE: u8 = 255;

/// A message on `channel`.
pub fn message(channel: u8, data: &[u8]) -> Vec<u8> {
    let mut m = Vec::with_capacity(data.len() + 1);
    m.push(channel);
    m.extend_from_slice(data);
    m
}

/// The v5 close signal for `channel`.
pub fn close_signal(channel: u8) -> Vec<u8> {
    vec![CLOSE, channel]
}

/// What one binary message says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Message<'a> {
    Data {
        channel: u8,
        data: &'a [u8],
    },
    /// v5 close signal.
    Close {
        channel: u8,
    },
}

/// Parse one binary message; `None` for an empty one (no channel byte).
pub fn parse(message: &[u8]) -> Option<Message<'_>> {
    match message {
        [] => None,
        [CLOSE, channel, ..] => Some(Message::Close { channel: *channel }),
        [channel, data @ ..] => Some(Message::Data {
            channel: *channel,
            data,
        }),
    }
}

/// Port-forward (v4): the data channel of the `index`-th requested port.
pub fn port_data_channel(index: usize) -> u8 {
    (index * 2) as u8
}

/// Port-forward (v4): the error channel of the `index`-th requested port.
pub fn port_error_channel(index: usize) -> u8 {
    (index * 2 + 1) as u8
}

/// Port-forward (v4): the first message on each of a port's channels.
pub fn port_prefix(channel: u8, port: u16) -> Vec<u8> {
    let p = port.to_le_bytes();
    vec![channel, p[0], p[1]]
}

/// The most ports one port-forward WebSocket may carry (two channels each, and 255 is taken).
pub const MAX_PORTS: usize = 127;

/// The WebSocket sub-protocols a client offered (`Sec-WebSocket-Protocol`, one header or
/// several, comma-separated), in its order.
pub fn offered_protocols<'a>(headers: impl IntoIterator<Item = &'a str>) -> Vec<String> {
    headers
        .into_iter()
        .flat_map(|h| h.split(','))
        .map(|p| p.trim().to_string())
        .filter(|p| !p.is_empty())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_round_trip() {
        assert_eq!(message(STDOUT, b"hi"), b"\x01hi");
        assert_eq!(
            parse(b"\x02err"),
            Some(Message::Data {
                channel: STDERR,
                data: b"err"
            })
        );
        assert_eq!(
            parse(&close_signal(STDIN)),
            Some(Message::Close { channel: STDIN })
        );
        assert_eq!(
            parse(b"\x00"),
            Some(Message::Data {
                channel: STDIN,
                data: b""
            })
        );
        assert_eq!(parse(b""), None);
    }

    #[test]
    fn port_forward_channels() {
        assert_eq!((port_data_channel(0), port_error_channel(0)), (0, 1));
        assert_eq!((port_data_channel(2), port_error_channel(2)), (4, 5));
        // 8080 = 0x1f90, little-endian.
        assert_eq!(port_prefix(1, 8080), vec![1, 0x90, 0x1f]);
    }

    #[test]
    fn protocols_from_one_or_several_headers() {
        assert_eq!(
            offered_protocols(["v5.channel.k8s.io, v4.channel.k8s.io"]),
            vec![V5, V4]
        );
        assert_eq!(
            offered_protocols(["SPDY/3.1+portforward.k8s.io", " x "]),
            vec!["SPDY/3.1+portforward.k8s.io", "x"]
        );
    }
}
