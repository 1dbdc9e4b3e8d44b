//! The service-account token signing key: an ECDSA P-256 key pair (ES256 JSON Web Tokens), made
//! on a server's first start and kept in `<data_dir>/tls/service-account.key`. Servers sharing a
//! data directory share it, so a token issued by one verifies on every other.

use std::path::Path;

use rcgen::{KeyPair, PKCS_ECDSA_P256_SHA256};

use crate::error::Error;
use crate::fs;

/// File name of the signing key inside the TLS directory.
pub const SERVICE_ACCOUNT_KEY_FILE: &str = "service-account.key";

/// The token signing key, as PEM: the private key in PKCS#8, the public key in SPKI.
#[derive(Clone)]
pub struct ServiceAccountKey {
    pub private_pem: String,
    pub public_pem: String,
}

impl std::fmt::Debug for ServiceAccountKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServiceAccountKey").finish_non_exhaustive()
    }
}

/// Loads the signing key from `tls_dir`, creating it (0600) when absent.
pub fn ensure_service_account_key(tls_dir: &Path) -> Result<ServiceAccountKey, Error> {
    fs::ensure_private_dir(tls_dir)?;
    let path = tls_dir.join(SERVICE_ACCOUNT_KEY_FILE);
    let key = match fs::read_optional(&path)? {
        Some(pem) => {
            fs::tighten_private_file(&path)?;
            KeyPair::from_pem(&pem)
                .map_err(|e| Error::parse(format!("service-account key {}", path.display()), e))?
        }
        None => {
            let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).map_err(|source| {
                Error::Generate {
                    operation: "generate key",
                    subject: "service-account token signer".into(),
                    source,
                }
            })?;
            fs::write_atomic(&path, key.serialize_pem().as_bytes(), 0o600)?;
            tracing::info!(path = %path.display(), "generated the service-account signing key");
            key
        }
    };
    Ok(ServiceAccountKey {
        private_pem: key.serialize_pem(),
        public_pem: key.public_key_pem(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn created_once_then_reused() {
        let dir = tempfile::tempdir().unwrap();
        let tls = dir.path().join("tls");
        let first = ensure_service_account_key(&tls).unwrap();
        let mode = std::fs::metadata(tls.join(SERVICE_ACCOUNT_KEY_FILE))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let second = ensure_service_account_key(&tls).unwrap();
        assert_eq!(first.public_pem, second.public_pem);
        assert!(first.private_pem.contains("BEGIN PRIVATE KEY"));
        assert!(first.public_pem.contains("BEGIN PUBLIC KEY"));
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(SERVICE_ACCOUNT_KEY_FILE), "nope").unwrap();
        assert!(ensure_service_account_key(dir.path()).is_err());
    }
}
