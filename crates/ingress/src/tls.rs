//! TLS: the certificates of our Ingresses' `tls` sections, chosen by the client's SNI name,
//! and the rustls configurations of the HTTPS listener and of HTTPS backends.
//!
//! A host is served the certificate of the first `tls` entry (oldest Ingress first) listing it
//! whose Secret holds a usable `tls.crt`/`tls.key`; a wildcard entry covers one label. Any other
//! name (or no SNI) gets the controller's self-signed fallback certificate, as ingress-nginx
//! serves its "fake" one.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use k8s_openapi::api::core::v1::Secret;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

use crate::routes::{host_matches, TlsEntry};
use crate::Error;

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The certificates by host name.
#[derive(Debug, Default)]
pub struct CertificateStore {
    /// Host pattern (exact or `*.domain`) → certificate, in the order they apply.
    certificates: Vec<(String, Arc<CertifiedKey>)>,
}

fn certified_key(cert_pem: &[u8], key_pem: &[u8]) -> Result<CertifiedKey, String> {
    let certs: Vec<CertificateDer<'static>> = rustls_pemfile::certs(&mut &cert_pem[..])
        .collect::<Result<_, _>>()
        .map_err(|e| format!("tls.crt: {e}"))?;
    if certs.is_empty() {
        return Err("tls.crt holds no PEM certificate".into());
    }
    let key: PrivateKeyDer<'static> = rustls_pemfile::private_key(&mut &key_pem[..])
        .map_err(|e| format!("tls.key: {e}"))?
        .ok_or("tls.key holds no PEM private key")?;
    let signing = provider()
        .key_provider
        .load_private_key(key)
        .map_err(|e| format!("tls.key: {e}"))?;
    Ok(CertifiedKey::new(certs, signing))
}

impl CertificateStore {
    /// The certificates of `entries` from `secrets`; entries whose Secret is missing or
    /// unusable are skipped (with a warning).
    pub fn build(entries: &[TlsEntry], secrets: &[Arc<Secret>]) -> CertificateStore {
        let by_name: HashMap<(&str, &str), &Secret> = secrets
            .iter()
            .filter_map(|s| {
                Some((
                    (
                        s.metadata.namespace.as_deref()?,
                        s.metadata.name.as_deref()?,
                    ),
                    s.as_ref(),
                ))
            })
            .collect();
        let mut parsed: HashMap<(&str, &str), Option<Arc<CertifiedKey>>> = HashMap::new();
        let mut store = CertificateStore::default();
        for entry in entries {
            let key = (entry.namespace.as_str(), entry.secret_name.as_str());
            let certificate = parsed
                .entry(key)
                .or_insert_with(|| {
                    let secret = by_name.get(&key)?;
                    let data = secret.data.as_ref();
                    let field = |name: &str| data.and_then(|d| d.get(name)).map(|b| &b.0[..]);
                    let result = match (field("tls.crt"), field("tls.key")) {
                        (Some(cert), Some(key)) => certified_key(cert, key),
                        _ => Err("the Secret has no tls.crt and tls.key".into()),
                    };
                    match result {
                        Ok(c) => Some(Arc::new(c)),
                        Err(e) => {
                            tracing::warn!(secret = %format!("{}/{}", key.0, key.1), error = %e, "unusable TLS Secret");
                            None
                        }
                    }
                })
                .clone();
            if let Some(certificate) = certificate {
                for host in &entry.hosts {
                    store
                        .certificates
                        .push((host.to_ascii_lowercase(), certificate.clone()));
                }
            }
        }
        store
    }

    /// The certificate for the SNI name `host`: an exact entry first, then a wildcard.
    pub fn find(&self, host: &str) -> Option<Arc<CertifiedKey>> {
        let host = host.to_ascii_lowercase();
        self.certificates
            .iter()
            .find(|(pattern, _)| !pattern.starts_with('*') && *pattern == host)
            .or_else(|| {
                self.certificates
                    .iter()
                    .find(|(pattern, _)| host_matches(pattern, &host))
            })
            .map(|(_, c)| c.clone())
    }
}

/// rustls's certificate choice: the current store by SNI, else the fallback.
#[derive(Debug)]
pub struct SniResolver {
    current: RwLock<Arc<CertificateStore>>,
    fallback: Arc<CertifiedKey>,
}

impl SniResolver {
    /// With a fresh self-signed fallback certificate.
    pub fn new() -> Result<SniResolver, Error> {
        let generated = rcgen::generate_simple_self_signed(vec!["ingress.local".to_owned()])
            .map_err(|e| Error::Tls(format!("cannot make the fallback certificate: {e}")))?;
        let fallback = certified_key(
            generated.cert.pem().as_bytes(),
            generated.signing_key.serialize_pem().as_bytes(),
        )
        .map_err(Error::Tls)?;
        Ok(SniResolver {
            current: RwLock::new(Arc::new(CertificateStore::default())),
            fallback: Arc::new(fallback),
        })
    }

    pub fn set(&self, store: CertificateStore) {
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(store);
    }

    fn store(&self) -> Arc<CertificateStore> {
        self.current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

impl ResolvesServerCert for SniResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        hello
            .server_name()
            .and_then(|name| self.store().find(name))
            .or_else(|| Some(self.fallback.clone()))
    }
}

/// The HTTPS listener's configuration: certificates by SNI, ALPN h2 and http/1.1.
pub fn server_config(resolver: Arc<SniResolver>) -> Result<rustls::ServerConfig, Error> {
    let mut config = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::Tls(e.to_string()))?
        .with_no_client_auth()
        .with_cert_resolver(resolver);
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}

/// Backends over TLS (`backend-protocol: HTTPS|GRPCS`): their certificates are not verified,
/// as ingress-nginx does unless told otherwise.
pub fn backend_client_config() -> rustls::ClientConfig {
    let provider = provider();
    rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .expect("the ring provider supports the default protocol versions")
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AnyBackend(provider)))
        .with_no_client_auth()
}

#[derive(Debug)]
struct AnyBackend(Arc<CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for AnyBackend {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
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
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::ByteString;

    fn secret(name: &str, host: &str) -> Arc<Secret> {
        let generated = rcgen::generate_simple_self_signed(vec![host.to_owned()]).unwrap();
        let mut secret = Secret::default();
        secret.metadata.name = Some(name.into());
        secret.metadata.namespace = Some("default".into());
        secret.type_ = Some("kubernetes.io/tls".into());
        secret.data = Some(
            [
                (
                    "tls.crt".to_owned(),
                    ByteString(generated.cert.pem().into_bytes()),
                ),
                (
                    "tls.key".to_owned(),
                    ByteString(generated.signing_key.serialize_pem().into_bytes()),
                ),
            ]
            .into_iter()
            .collect(),
        );
        Arc::new(secret)
    }

    fn entry(secret: &str, hosts: &[&str]) -> TlsEntry {
        TlsEntry {
            namespace: "default".into(),
            secret_name: secret.into(),
            hosts: hosts.iter().map(|h| h.to_string()).collect(),
        }
    }

    #[test]
    fn certificates_by_exact_then_wildcard_host() {
        let secrets = vec![secret("exact", "a.test"), secret("wild", "*.b.test")];
        let store = CertificateStore::build(
            &[
                entry("wild", &["*.b.test"]),
                entry("exact", &["a.test", "x.b.test"]),
                entry("missing", &["c.test"]),
            ],
            &secrets,
        );
        let der = |c: Arc<CertifiedKey>| c.cert[0].to_vec();
        let exact = der(store.find("A.test").unwrap());
        assert_eq!(der(store.find("x.b.test").unwrap()), exact);
        assert_ne!(der(store.find("y.b.test").unwrap()), exact);
        assert!(store.find("c.test").is_none());
        assert!(store.find("z.y.b.test").is_none());
    }

    #[test]
    fn unusable_secrets_are_skipped() {
        let mut broken = (*secret("broken", "a.test")).clone();
        broken
            .data
            .as_mut()
            .unwrap()
            .insert("tls.key".into(), ByteString(b"nope".to_vec()));
        let store = CertificateStore::build(&[entry("broken", &["a.test"])], &[Arc::new(broken)]);
        assert!(store.find("a.test").is_none());
        assert!(SniResolver::new().is_ok());
    }
}
