//! The `nginx.ingress.kubernetes.io/*` annotations this controller honours, read from one
//! Ingress into typed options. Values ingress-nginx would reject fall back to its defaults.

use std::collections::BTreeMap;

const PREFIX: &str = "nginx.ingress.kubernetes.io/";

/// ingress-nginx's default `proxy-body-size` (nginx's `client_max_body_size`): 1m.
pub const DEFAULT_BODY_LIMIT: u64 = 1024 * 1024;

/// How the controller talks to the backend pods (`backend-protocol`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum BackendProtocol {
    #[default]
    Http,
    /// TLS to the pod, its certificate not verified (as ingress-nginx's default).
    Https,
    /// HTTP/2 without TLS (h2c).
    Grpc,
    /// HTTP/2 over TLS.
    Grpcs,
}

/// The options one Ingress's annotations give its paths.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Options {
    /// `rewrite-target`: the request path becomes this (`$1`... from the path's regex).
    pub rewrite_target: Option<String>,
    /// `use-regex` (also implied by `rewrite-target`): paths are case-insensitive regexes.
    pub use_regex: bool,
    /// `ssl-redirect` (default true): plain HTTP to a host with TLS is redirected (308).
    pub ssl_redirect: bool,
    /// `force-ssl-redirect`: redirect to HTTPS even without TLS for the host.
    pub force_ssl_redirect: bool,
    /// `app-root`: requests for `/` are redirected (302) there.
    pub app_root: Option<String>,
    /// `proxy-body-size`: the largest request body in bytes; None = unlimited ("0").
    pub body_limit: Option<u64>,
    /// `backend-protocol`.
    pub backend_protocol: BackendProtocol,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            rewrite_target: None,
            use_regex: false,
            ssl_redirect: true,
            force_ssl_redirect: false,
            app_root: None,
            body_limit: Some(DEFAULT_BODY_LIMIT),
            backend_protocol: BackendProtocol::Http,
        }
    }
}

impl Options {
    /// The options of an Ingress with these annotations.
    pub fn from_annotations(annotations: &BTreeMap<String, String>) -> Options {
        let get = |name: &str| {
            annotations
                .get(&format!("{PREFIX}{name}"))
                .map(|v| v.trim())
        };
        let flag = |name: &str, default: bool| match get(name) {
            Some("true") => true,
            Some("false") => false,
            _ => default,
        };
        let mut options = Options::default();
        options.rewrite_target = get("rewrite-target")
            .filter(|v| !v.is_empty())
            .map(str::to_owned);
        options.use_regex = flag("use-regex", false) || options.rewrite_target.is_some();
        options.ssl_redirect = flag("ssl-redirect", true);
        options.force_ssl_redirect = flag("force-ssl-redirect", false);
        options.app_root = get("app-root")
            .filter(|v| v.starts_with('/'))
            .map(str::to_owned);
        if let Some(size) = get("proxy-body-size") {
            match parse_size(size) {
                Some(0) => options.body_limit = None,
                Some(n) => options.body_limit = Some(n),
                None => tracing::warn!(value = size, "invalid proxy-body-size; using 1m"),
            }
        }
        options.backend_protocol = match get("backend-protocol").map(str::to_ascii_uppercase) {
            Some(p) if p == "HTTPS" => BackendProtocol::Https,
            Some(p) if p == "GRPC" => BackendProtocol::Grpc,
            Some(p) if p == "GRPCS" => BackendProtocol::Grpcs,
            _ => BackendProtocol::Http,
        };
        options
    }
}

/// An nginx size: bytes, or a number with `k`, `m` or `g` (either case).
pub fn parse_size(text: &str) -> Option<u64> {
    let text = text.trim();
    let (digits, unit) = match text.char_indices().last()? {
        (i, c) if c.is_ascii_alphabetic() => (&text[..i], c.to_ascii_lowercase()),
        _ => (text, 'b'),
    };
    let n: u64 = digits.parse().ok()?;
    let factor = match unit {
        'b' => 1,
        'k' => 1024,
        'm' => 1024 * 1024,
        'g' => 1024 * 1024 * 1024,
        _ => return None,
    };
    n.checked_mul(factor)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options(pairs: &[(&str, &str)]) -> Options {
        let map = pairs
            .iter()
            .map(|(k, v)| (format!("{PREFIX}{k}"), v.to_string()))
            .collect();
        Options::from_annotations(&map)
    }

    #[test]
    fn defaults_are_ingress_nginx_defaults() {
        let o = options(&[]);
        assert_eq!(o, Options::default());
        assert!(o.ssl_redirect && !o.force_ssl_redirect && !o.use_regex);
        assert_eq!(o.body_limit, Some(1024 * 1024));
    }

    #[test]
    fn rewrite_target_implies_regex() {
        let o = options(&[("rewrite-target", "/$2")]);
        assert_eq!(o.rewrite_target.as_deref(), Some("/$2"));
        assert!(o.use_regex);
    }

    #[test]
    fn flags_sizes_and_protocols() {
        let o = options(&[
            ("ssl-redirect", "false"),
            ("force-ssl-redirect", "true"),
            ("app-root", "/app"),
            ("proxy-body-size", "8m"),
            ("backend-protocol", "https"),
        ]);
        assert!(!o.ssl_redirect && o.force_ssl_redirect);
        assert_eq!(o.app_root.as_deref(), Some("/app"));
        assert_eq!(o.body_limit, Some(8 * 1024 * 1024));
        assert_eq!(o.backend_protocol, BackendProtocol::Https);
        assert_eq!(options(&[("proxy-body-size", "0")]).body_limit, None);
        assert_eq!(
            options(&[("proxy-body-size", "lots")]).body_limit,
            Some(DEFAULT_BODY_LIMIT)
        );
        assert_eq!(
            options(&[("backend-protocol", "GRPC")]).backend_protocol,
            BackendProtocol::Grpc
        );
        assert_eq!(options(&[("app-root", "app")]).app_root, None);
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("100"), Some(100));
        assert_eq!(parse_size("2k"), Some(2048));
        assert_eq!(parse_size("1G"), Some(1 << 30));
        assert_eq!(parse_size("1x"), None);
        assert_eq!(parse_size(""), None);
        assert_eq!(parse_size("m"), None);
    }
}
