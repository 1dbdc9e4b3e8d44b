//! rustls configurations built from our certificates, always with the `ring` provider (so no
//! process-wide default provider has to be installed).

use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::danger::ClientCertVerifier;
use rustls::server::WebPkiClientVerifier;
use rustls::RootCertStore;

use crate::cert::CertPair;
use crate::server::ServerPki;
use crate::Error;

/// ALPN protocols offered by the API server, in order of preference.
pub const ALPN_PROTOCOLS: [&[u8]; 2] = [b"h2", b"http/1.1"];

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn certificates(pem: &str, what: &str) -> Result<Vec<CertificateDer<'static>>, Error> {
    let certs = rustls_pemfile::certs(&mut pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|err| Error::parse(what, err))?;
    if certs.is_empty() {
        return Err(Error::parse(what, "no PEM CERTIFICATE block found"));
    }
    Ok(certs)
}

fn private_key(pem: &str, what: &str) -> Result<PrivateKeyDer<'static>, Error> {
    match rustls_pemfile::private_key(&mut pem.as_bytes()) {
        Ok(Some(key)) => Ok(key),
        Ok(None) => Err(Error::parse(what, "no PEM PRIVATE KEY block found")),
        Err(err) => Err(Error::parse(what, err)),
    }
}

fn roots(ca_pem: &str) -> Result<RootCertStore, Error> {
    let mut roots = RootCertStore::empty();
    for cert in certificates(ca_pem, "CA certificate")? {
        roots.add(cert).map_err(|source| Error::Tls {
            operation: "add the CA certificate to the trust store",
            source,
        })?;
    }
    Ok(roots)
}

/// Client certificates are optional; a presented one must chain to `ca_pem`. A certificate of
/// that CA that is only outside its validity period passes the handshake, so the request is
/// answered 401 as upstream does ([`crate::identity_from_der`] refuses it), instead of a TLS
/// alert.
fn client_verifier(
    ca_pem: &str,
    provider: Arc<CryptoProvider>,
) -> Result<Arc<dyn ClientCertVerifier>, Error> {
    let inner = WebPkiClientVerifier::builder_with_provider(Arc::new(roots(ca_pem)?), provider)
        .allow_unauthenticated()
        .build()
        .map_err(|source| Error::ClientVerifier { source })?;
    Ok(Arc::new(ExpiryTolerant { inner }))
}

#[derive(Debug)]
struct ExpiryTolerant {
    inner: Arc<dyn ClientCertVerifier>,
}

impl ClientCertVerifier for ExpiryTolerant {
    fn offer_client_auth(&self) -> bool {
        self.inner.offer_client_auth()
    }

    fn client_auth_mandatory(&self) -> bool {
        self.inner.client_auth_mandatory()
    }

    fn root_hint_subjects(&self) -> &[rustls::DistinguishedName] {
        self.inner.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::server::danger::ClientCertVerified, rustls::Error> {
        use rustls::CertificateError;
        match self
            .inner
            .verify_client_cert(end_entity, intermediates, now)
        {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::Expired
                | CertificateError::ExpiredContext { .. }
                | CertificateError::NotValidYet
                | CertificateError::NotValidYetContext { .. },
            )) => {
                // Check everything else at the last moment the certificate was valid.
                let (_, cert) =
                    x509_parser::parse_x509_certificate(end_entity.as_ref()).map_err(|_| {
                        rustls::Error::InvalidCertificate(CertificateError::BadEncoding)
                    })?;
                let valid_at = (cert.validity().not_after.timestamp() - 1).max(0) as u64;
                let at = rustls::pki_types::UnixTime::since_unix_epoch(
                    std::time::Duration::from_secs(valid_at),
                );
                self.inner.verify_client_cert(end_entity, intermediates, at)
            }
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// The API server's TLS configuration: the serving certificate; client certificates are optional
/// but, when presented, must chain to the cluster CA; ALPN `h2`, `http/1.1`.
pub fn server_tls_config(pki: &ServerPki) -> Result<rustls::ServerConfig, Error> {
    let provider = provider();
    let verifier = client_verifier(&pki.ca.cert_pem, provider.clone())?;
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|source| Error::Tls {
            operation: "select TLS protocol versions",
            source,
        })?
        .with_client_cert_verifier(verifier)
        .with_single_cert(
            certificates(&pki.serving.cert_pem, "serving certificate")?,
            private_key(&pki.serving.key_pem, "serving key")?,
        )
        .map_err(|source| Error::Tls {
            operation: "use the serving certificate and key",
            source,
        })?;
    config.alpn_protocols = ALPN_PROTOCOLS.iter().map(|p| p.to_vec()).collect();
    Ok(config)
}

/// A kubelet's HTTPS configuration: its serving certificate, and a client certificate chaining
/// to `client_ca_pem` is required (the kubelet API has no anonymous access). ALPN `http/1.1`:
/// its streaming endpoints are HTTP/1.1 upgrades.
pub fn kubelet_server_tls_config(
    serving: &CertPair,
    client_ca_pem: &str,
) -> Result<rustls::ServerConfig, Error> {
    let provider = provider();
    let verifier = WebPkiClientVerifier::builder_with_provider(
        Arc::new(roots(client_ca_pem)?),
        provider.clone(),
    )
    .build()
    .map_err(|source| Error::ClientVerifier { source })?;
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|source| Error::Tls {
            operation: "select TLS protocol versions",
            source,
        })?
        .with_client_cert_verifier(verifier)
        .with_single_cert(
            certificates(&serving.cert_pem, "kubelet serving certificate")?,
            private_key(&serving.key_pem, "kubelet serving key")?,
        )
        .map_err(|source| Error::Tls {
            operation: "use the kubelet serving certificate and key",
            source,
        })?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

/// A client configuration trusting only `ca_pem`, optionally authenticating with `client`
/// (for node agents and tests). ALPN `h2`, `http/1.1`.
pub fn client_tls_config(
    ca_pem: &str,
    client: Option<&CertPair>,
) -> Result<rustls::ClientConfig, Error> {
    let builder = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|source| Error::Tls {
            operation: "select TLS protocol versions",
            source,
        })?
        .with_root_certificates(roots(ca_pem)?);
    let mut config = match client {
        Some(pair) => builder
            .with_client_auth_cert(
                certificates(&pair.cert_pem, "client certificate")?,
                private_key(&pair.key_pem, "client key")?,
            )
            .map_err(|source| Error::Tls {
                operation: "use the client certificate and key",
                source,
            })?,
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = ALPN_PROTOCOLS.iter().map(|p| p.to_vec()).collect();
    Ok(config)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ensure_server_pki;

    #[test]
    fn server_config_builds_with_alpn() {
        let dir = tempfile::tempdir().unwrap();
        let pki = ensure_server_pki(dir.path(), "node-1", &[]).unwrap();
        let config = server_tls_config(&pki).unwrap();
        assert_eq!(
            config.alpn_protocols,
            vec![b"h2".to_vec(), b"http/1.1".to_vec()]
        );
        client_tls_config(&pki.ca.cert_pem, Some(&pki.admin)).unwrap();
        client_tls_config(&pki.ca.cert_pem, None).unwrap();
    }

    #[test]
    fn client_certificates_must_chain_to_the_cluster_ca() {
        use crate::{generate_ca, issue_client_cert};
        use rustls::pki_types::UnixTime;

        let dir = tempfile::tempdir().unwrap();
        let pki = ensure_server_pki(dir.path(), "node-1", &[]).unwrap();
        let verifier = client_verifier(&pki.ca.cert_pem, provider()).unwrap();
        assert!(!verifier.client_auth_mandatory());
        let verify = |pair: &CertPair| {
            let der = CertificateDer::from(pair.cert_der().unwrap());
            verifier.verify_client_cert(&der, &[], UnixTime::now())
        };
        verify(&pki.admin).unwrap();
        verify(&pki.kube_proxy).unwrap();
        // Several groups: the re-signed certificate is still valid for webpki.
        let multi = issue_client_cert(&pki.ca, "carol", &["g1", "g2", "g3"]).unwrap();
        verify(&multi).unwrap();
        // A certificate from a foreign CA with the same CA name is refused.
        let foreign = generate_ca(crate::CA_COMMON_NAME).unwrap();
        let intruder = issue_client_cert(&foreign, "kubelab-admin", &["system:masters"]).unwrap();
        assert!(verify(&intruder).is_err());
        // The serving certificate is not a client certificate.
        assert!(verify(&pki.serving).is_err());
    }

    #[test]
    fn kubelet_server_config_serves_http11_with_the_node_certificate() {
        use crate::{issue_node_cert, NodeCertKind};
        let dir = tempfile::tempdir().unwrap();
        let pki = ensure_server_pki(dir.path(), "node-1", &[]).unwrap();
        let serving =
            issue_node_cert(&pki.ca, "n1", NodeCertKind::Serving, &["10.0.0.5".into()]).unwrap();
        let config = kubelet_server_tls_config(&serving, &pki.ca.cert_pem).unwrap();
        assert_eq!(config.alpn_protocols, vec![b"http/1.1".to_vec()]);
        let info = crate::cert::inspect(&serving.cert_pem, "serving").unwrap();
        assert!(info
            .sans
            .contains(&crate::cert::San::Ip("10.0.0.5".parse().unwrap())));
    }

    #[test]
    fn mismatched_serving_key_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let mut pki = ensure_server_pki(dir.path(), "node-1", &[]).unwrap();
        pki.serving.key_pem = pki.admin.key_pem.clone();
        let err = server_tls_config(&pki).unwrap_err();
        assert!(matches!(err, Error::Tls { .. }), "{err}");
    }

    #[test]
    fn garbage_ca_is_a_parse_error() {
        let err = client_tls_config("not pem", None).unwrap_err();
        assert!(matches!(err, Error::Parse { .. }), "{err}");
    }
}
