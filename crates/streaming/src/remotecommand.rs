//! Kubernetes' remote command protocol (exec and attach): the sub-protocol versions, which
//! streams a session has, the `Status` that ends it, and terminal resize messages.

use serde_json::{json, Value};

/// SPDY sub-protocol versions (`X-Stream-Protocol-Version`).
pub mod version {
    /// Like v4 over SPDY; over WebSocket it adds close signals.
    pub const V5: &str = "v5.channel.k8s.io";
    /// The error stream carries a `Status` JSON (exit codes).
    pub const V4: &str = "v4.channel.k8s.io";
    pub const V3: &str = "v3.channel.k8s.io";
    pub const V2: &str = "v2.channel.k8s.io";
    pub const V1: &str = "channel.k8s.io";
}

/// The SPDY versions this server speaks, best first: both carry the final `Status` on the
/// error stream, which is what a v5 WebSocket kubelet sends on channel 3.
pub const SPDY_VERSIONS: [&str; 2] = [version::V5, version::V4];

/// The `streamtype` header values of SPDY exec/attach streams.
pub mod stream_type {
    pub const ERROR: &str = "error";
    pub const STDIN: &str = "stdin";
    pub const STDOUT: &str = "stdout";
    pub const STDERR: &str = "stderr";
    pub const RESIZE: &str = "resize";
}

/// The first protocol the client offers that the server supports (the client's order
/// decides, as in apimachinery's `httpstream.Handshake`).
pub fn negotiate(offered: &[String], supported: &[&str]) -> Option<String> {
    offered
        .iter()
        .find(|o| supported.iter().any(|s| s == o))
        .cloned()
}

/// Protocol versions from one or several header values, comma-separated.
pub fn offered_versions<'a>(headers: impl IntoIterator<Item = &'a str>) -> Vec<String> {
    crate::channel::offered_protocols(headers)
}

/// A boolean query parameter: kubectl sends `true`, the API server sends kubelets `1`.
pub fn flag(value: Option<&str>) -> bool {
    matches!(value, Some("1" | "true" | "True" | "TRUE"))
}

/// Which streams an exec or attach session has.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct StreamOptions {
    pub stdin: bool,
    pub stdout: bool,
    pub stderr: bool,
    pub tty: bool,
}

impl StreamOptions {
    /// A terminal merges stderr into stdout (upstream drops stderr when tty is set).
    pub fn normalized(mut self) -> StreamOptions {
        if self.tty {
            self.stderr = false;
        }
        self
    }

    /// At least one of stdin, stdout, stderr must be requested.
    pub fn any_stream(&self) -> bool {
        self.stdin || self.stdout || self.stderr
    }

    /// The SPDY streams a client opens for these options (error first), as upstream
    /// servers expect them: resize only with a terminal.
    pub fn spdy_stream_types(&self) -> Vec<&'static str> {
        let o = self.normalized();
        let mut types = vec![stream_type::ERROR];
        if o.stdin {
            types.push(stream_type::STDIN);
        }
        if o.stdout {
            types.push(stream_type::STDOUT);
        }
        if o.stderr {
            types.push(stream_type::STDERR);
        }
        if o.tty {
            types.push(stream_type::RESIZE);
        }
        types
    }

    /// Query parameters for a kubelet (`stdin=1&...`, upstream's `streamParams`).
    pub fn kubelet_query(&self) -> Vec<(&'static str, &'static str)> {
        let mut q = Vec::new();
        for (set, name) in [
            (self.stdin, "stdin"),
            (self.stdout, "stdout"),
            (self.stderr, "stderr"),
            (self.tty, "tty"),
        ] {
            if set {
                q.push((name, "1"));
            }
        }
        q
    }
}

/// The `Status` ending a session: success.
pub fn success() -> Vec<u8> {
    br#"{"metadata":{},"status":"Success"}"#.to_vec()
}

/// The `Status` ending a session whose command exited with `code` (non-zero), worded like the
/// kubelet's: kubectl exits with the code found in the `ExitCode` cause.
pub fn non_zero_exit(command: &[String], code: i32) -> Vec<u8> {
    status_bytes(&json!({
        "metadata": {},
        "status": "Failure",
        "message": format!(
            "command terminated with non-zero exit code: error executing command [{}], exit code {code}",
            command.join(" ")
        ),
        "reason": "NonZeroExitCode",
        "details": {"causes": [{"reason": "ExitCode", "message": code.to_string()}]},
    }))
}

/// The `Status` ending a session that failed before or while running (500, InternalError).
pub fn internal_error(message: &str) -> Vec<u8> {
    status_bytes(&json!({
        "metadata": {},
        "status": "Failure",
        "message": format!("Internal error occurred: {message}"),
        "reason": "InternalError",
        "details": {"causes": [{"message": message}]},
        "code": 500,
    }))
}

fn status_bytes(v: &Value) -> Vec<u8> {
    serde_json::to_vec(v).unwrap_or_default()
}

/// What a final `Status` says: `Ok(())` for success, `Err(Some(code))` for a non-zero exit,
/// `Err(None)` for any other failure (or an unreadable status).
pub fn outcome(status: &[u8]) -> Result<(), Option<i32>> {
    let Ok(v) = serde_json::from_slice::<Value>(status) else {
        return Err(None);
    };
    if v.get("status").and_then(Value::as_str) == Some("Success") {
        return Ok(());
    }
    if v.get("reason").and_then(Value::as_str) == Some("NonZeroExitCode") {
        let code = v
            .pointer("/details/causes")
            .and_then(Value::as_array)
            .and_then(|causes| {
                causes
                    .iter()
                    .find(|c| c.get("reason").and_then(Value::as_str) == Some("ExitCode"))
            })
            .and_then(|c| c.get("message")?.as_str()?.parse().ok());
        return Err(code);
    }
    Err(None)
}

/// Splits the resize stream of a SPDY session (JSON objects, one after another) into
/// messages, whatever the frame boundaries.
#[derive(Debug, Default)]
pub struct ResizeDecoder {
    buf: Vec<u8>,
}

impl ResizeDecoder {
    /// Feed bytes; returns the complete JSON objects, re-serialized compactly.
    pub fn push(&mut self, data: &[u8]) -> Vec<Vec<u8>> {
        self.buf.extend_from_slice(data);
        let mut out = Vec::new();
        let mut consumed = 0;
        {
            let mut stream = serde_json::Deserializer::from_slice(&self.buf).into_iter::<Value>();
            loop {
                match stream.next() {
                    Some(Ok(v)) => {
                        consumed = stream.byte_offset();
                        out.push(serde_json::to_vec(&v).unwrap_or_default());
                    }
                    Some(Err(e)) if e.is_eof() => break,
                    Some(Err(_)) => {
                        // Garbage: drop everything buffered.
                        consumed = self.buf.len();
                        break;
                    }
                    None => {
                        consumed = self.buf.len();
                        break;
                    }
                }
            }
        }
        self.buf.drain(..consumed);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn negotiation_follows_the_client_order() {
        let kubectl: Vec<String> = [
            version::V5,
            version::V4,
            version::V3,
            version::V2,
            version::V1,
        ]
        .map(String::from)
        .to_vec();
        assert_eq!(
            negotiate(&kubectl, &SPDY_VERSIONS).as_deref(),
            Some(version::V5)
        );
        let old = vec![version::V4.to_string(), version::V3.to_string()];
        assert_eq!(
            negotiate(&old, &SPDY_VERSIONS).as_deref(),
            Some(version::V4)
        );
        let ancient = vec![version::V2.to_string()];
        assert_eq!(negotiate(&ancient, &SPDY_VERSIONS), None);
        assert_eq!(
            offered_versions(["v5.channel.k8s.io", "v4.channel.k8s.io, channel.k8s.io"]),
            vec![version::V5, version::V4, version::V1]
        );
    }

    #[test]
    fn streams_of_a_session() {
        let it = StreamOptions {
            stdin: true,
            stdout: true,
            stderr: true,
            tty: true,
        };
        assert_eq!(
            it.spdy_stream_types(),
            vec!["error", "stdin", "stdout", "resize"]
        );
        let plain = StreamOptions {
            stdout: true,
            stderr: true,
            ..Default::default()
        };
        assert_eq!(plain.spdy_stream_types(), vec!["error", "stdout", "stderr"]);
        assert_eq!(
            plain.kubelet_query(),
            vec![("stdout", "1"), ("stderr", "1")]
        );
        assert!(flag(Some("true")) && flag(Some("1")) && !flag(Some("false")) && !flag(None));
    }

    #[test]
    fn statuses_match_the_kubelet() {
        assert_eq!(success(), br#"{"metadata":{},"status":"Success"}"#);
        let failed = non_zero_exit(&["sh".into(), "-c".into(), "exit 3".into()], 3);
        let v: Value = serde_json::from_slice(&failed).unwrap();
        assert_eq!(v["reason"], "NonZeroExitCode");
        assert_eq!(v["details"]["causes"][0]["reason"], "ExitCode");
        assert_eq!(v["details"]["causes"][0]["message"], "3");
        assert_eq!(
            v["message"],
            "command terminated with non-zero exit code: error executing command [sh -c exit 3], exit code 3"
        );
        assert_eq!(outcome(&failed), Err(Some(3)));
        assert_eq!(outcome(&success()), Ok(()));
        assert_eq!(outcome(&internal_error("boom")), Err(None));
        assert_eq!(outcome(b"not json"), Err(None));
    }

    #[test]
    fn resize_messages_split_across_frames() {
        let mut d = ResizeDecoder::default();
        assert!(d.push(b"{\"Width\":80,").is_empty());
        let out = d.push(b"\"Height\":24}\n{\"Width\":100,\"Height\":40}\n{\"Wi");
        assert_eq!(
            out,
            vec![
                br#"{"Width":80,"Height":24}"#.to_vec(),
                br#"{"Width":100,"Height":40}"#.to_vec()
            ]
        );
        assert_eq!(
            d.push(b"dth\":1,\"Height\":2}"),
            vec![br#"{"Width":1,"Height":2}"#.to_vec()]
        );
    }
}
