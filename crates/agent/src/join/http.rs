//! The few HTTPS requests of a join: one connection per request, HTTP/1.1, over rustls with
//! either the pinned cluster CA or (for `/cacerts` only) no verification at all.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};

use super::JoinError;

/// Upper bound for one request, connection included.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// Where the registration server is: what `--server https://host:port` says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerAddress {
    /// `https://host:port` as given (for messages).
    pub url: String,
    pub host: String,
    pub port: u16,
}

impl ServerAddress {
    /// Parse `https://host[:port]` (port 6443 by default).
    pub fn parse(url: &str) -> Result<ServerAddress, JoinError> {
        let invalid = |reason: &str| JoinError::InvalidServer {
            url: url.to_owned(),
            reason: reason.to_owned(),
        };
        let uri: http::Uri = url.parse().map_err(|_| invalid("not a URL"))?;
        if uri.scheme_str() != Some("https") {
            return Err(invalid("the scheme must be https"));
        }
        let host = uri.host().ok_or_else(|| invalid("no host"))?;
        let host = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned();
        if uri.path() != "/" && !uri.path().is_empty() {
            return Err(invalid("it must not have a path"));
        }
        Ok(ServerAddress {
            url: url.trim_end_matches('/').to_owned(),
            host,
            port: uri.port_u16().unwrap_or(6443),
        })
    }

    /// `host:port` (IPv6 hosts in brackets), for TCP connections.
    pub fn host_port(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

/// The TLS configuration that trusts any server: only for fetching the CA bundle, whose hash
/// is checked against the token before anything else is sent.
pub fn insecure_tls() -> rustls::ClientConfig {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .expect("the ring provider supports the default protocol versions")
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AnyServer(provider)))
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    config
}

/// The TLS configuration that trusts only the (pinned) cluster CA.
pub fn pinned_tls(ca_pem: &str) -> Result<rustls::ClientConfig, JoinError> {
    let mut config = kubelab_pki::client_tls_config(ca_pem, None).map_err(JoinError::Pki)?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

/// An answer: status and body.
pub struct Answer {
    pub status: http::StatusCode,
    pub body: String,
}

/// One request to the registration server.
pub async fn request(
    server: &ServerAddress,
    tls: Arc<rustls::ClientConfig>,
    method: http::Method,
    path: &str,
    headers: &[(&str, String)],
    body: Option<String>,
) -> Result<Answer, JoinError> {
    tokio::time::timeout(
        REQUEST_TIMEOUT,
        request_inner(server, tls, method, path, headers, body),
    )
    .await
    .map_err(|_| JoinError::Unreachable {
        server: server.url.clone(),
        reason: format!("no answer within {}s", REQUEST_TIMEOUT.as_secs()),
    })?
}

async fn request_inner(
    server: &ServerAddress,
    tls: Arc<rustls::ClientConfig>,
    method: http::Method,
    path: &str,
    headers: &[(&str, String)],
    body: Option<String>,
) -> Result<Answer, JoinError> {
    let unreachable = |reason: String| JoinError::Unreachable {
        server: server.url.clone(),
        reason,
    };
    let tcp = tokio::net::TcpStream::connect(server.host_port())
        .await
        .map_err(|e| unreachable(e.to_string()))?;
    let name = ServerName::try_from(server.host.clone()).map_err(|e| JoinError::InvalidServer {
        url: server.url.clone(),
        reason: e.to_string(),
    })?;
    let stream = tokio_rustls::TlsConnector::from(tls)
        .connect(name, tcp)
        .await
        .map_err(|e| JoinError::Tls {
            server: server.url.clone(),
            reason: e.to_string(),
        })?;
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .map_err(|e| unreachable(e.to_string()))?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    let mut builder = http::Request::builder()
        .method(method)
        .uri(path)
        .header(http::header::HOST, server.host_port())
        .header(http::header::USER_AGENT, "kubelab-agent");
    for (name, value) in headers {
        builder = builder.header(*name, value);
    }
    if body.is_some() {
        builder = builder.header(http::header::CONTENT_TYPE, "application/x-pem-file");
    }
    let request = builder
        .body(Full::new(Bytes::from(body.unwrap_or_default())))
        .map_err(|e| unreachable(e.to_string()))?;
    let response = sender
        .send_request(request)
        .await
        .map_err(|e| unreachable(e.to_string()))?;
    let status = response.status();
    let body = response
        .into_body()
        .collect()
        .await
        .map_err(|e| unreachable(e.to_string()))?
        .to_bytes();
    Ok(Answer {
        status,
        body: String::from_utf8_lossy(&body).into_owned(),
    })
}

/// Accepts any certificate, but still checks that the server holds its key (so the CA bundle
/// at least comes from whoever terminates TLS).
#[derive(Debug)]
struct AnyServer(Arc<CryptoProvider>);

impl ServerCertVerifier for AnyServer {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_addresses() {
        let a = ServerAddress::parse("https://127.0.0.1:7443/").unwrap();
        assert_eq!((a.host.as_str(), a.port), ("127.0.0.1", 7443));
        assert_eq!(a.host_port(), "127.0.0.1:7443");
        assert_eq!(a.url, "https://127.0.0.1:7443");
        let b = ServerAddress::parse("https://kubelab.example").unwrap();
        assert_eq!(b.port, 6443);
        let c = ServerAddress::parse("https://[::1]:6443").unwrap();
        assert_eq!(c.host, "::1");
        assert_eq!(c.host_port(), "[::1]:6443");
        for bad in ["http://x:1", "x:1", "https://x:1/api", ""] {
            assert!(ServerAddress::parse(bad).is_err(), "{bad}");
        }
    }
}
