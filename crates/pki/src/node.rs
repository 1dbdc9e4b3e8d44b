//! Node certificates: the key and signing request a joining agent makes, and the client and
//! serving certificates the server signs for it (k3s's `client-kubelet.crt` and
//! `serving-kubelet.crt`). The agent keeps its private keys; the CA key stays on the server.

use rcgen::{CertificateParams, CertificateSigningRequestParams, KeyPair};

use crate::cert::{self, CertPair, Usage};
use crate::Error;

/// The group of every node identity.
pub const NODES_GROUP: &str = "system:nodes";

/// The user a node authenticates as: `system:node:<name>`.
pub fn node_user(node_name: &str) -> String {
    format!("system:node:{node_name}")
}

/// Which of its two certificates a node asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeCertKind {
    /// The kubelet's API client certificate (clientAuth).
    Client,
    /// The kubelet's HTTPS serving certificate (serverAuth, with the node's names and IPs).
    Serving,
}

impl NodeCertKind {
    fn usage(self) -> Usage {
        match self {
            NodeCertKind::Client => Usage::Client,
            NodeCertKind::Serving => Usage::Server,
        }
    }
}

/// A fresh private key (ECDSA P-256, PKCS#8 PEM), made where it will be used.
pub fn generate_private_key() -> Result<String, Error> {
    Ok(cert::generate_key("node")?.serialize_pem())
}

/// A PEM certificate signing request for `node_name`, signed with `key_pem`. The subject is
/// informative only: the server decides the names in the certificate.
pub fn node_csr(key_pem: &str, node_name: &str) -> Result<String, Error> {
    let key = KeyPair::from_pem(key_pem).map_err(|err| Error::parse("node private key", err))?;
    let subject = node_user(node_name);
    let mut params = CertificateParams::default();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, subject.as_str());
    let csr = params
        .serialize_request(&key)
        .map_err(|source| Error::Generate {
            operation: "make the certificate signing request",
            subject: subject.clone(),
            source,
        })?;
    csr.pem().map_err(|source| Error::Generate {
        operation: "encode the certificate signing request",
        subject,
        source,
    })
}

/// Server side: sign the public key of `csr_pem` for `node_name`. The request's own signature
/// must verify (proof that the requester holds the key); its subject and extensions are ignored:
/// the certificate says CN `system:node:<name>`, O `system:nodes`, and, for a serving
/// certificate, the SANs in `sans`.
pub fn sign_node_csr(
    ca: &CertPair,
    csr_pem: &str,
    node_name: &str,
    kind: NodeCertKind,
    sans: &[String],
) -> Result<String, Error> {
    let user = node_user(node_name);
    let mut request = CertificateSigningRequestParams::from_pem(csr_pem)
        .map_err(|err| Error::parse("certificate signing request", err))?;
    request.params = cert::leaf_params(&user, &[NODES_GROUP], sans_for(kind, sans), kind.usage())?;
    let issuer = cert::load_issuer(ca, &user)?;
    let signed = request
        .signed_by(&issuer)
        .map_err(|source| Error::Generate {
            operation: "sign the certificate",
            subject: user,
            source,
        })?;
    Ok(signed.pem())
}

/// Server side, for agents that send no request: a node certificate with a key made here.
pub fn issue_node_cert(
    ca: &CertPair,
    node_name: &str,
    kind: NodeCertKind,
    sans: &[String],
) -> Result<CertPair, Error> {
    cert::issue_leaf(
        ca,
        &node_user(node_name),
        &[NODES_GROUP],
        sans_for(kind, sans),
        kind.usage(),
    )
}

fn sans_for(kind: NodeCertKind, sans: &[String]) -> &[String] {
    match kind {
        NodeCertKind::Client => &[],
        NodeCertKind::Serving => sans,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity_from_der;

    #[test]
    fn signed_csr_carries_the_node_identity_and_the_requesters_key() {
        let ca = cert::generate_ca("test-ca").unwrap();
        let key = generate_private_key().unwrap();
        let csr = node_csr(&key, "worker-1").unwrap();
        let cert_pem = sign_node_csr(&ca, &csr, "worker-1", NodeCertKind::Client, &[]).unwrap();
        let pair = CertPair {
            cert_pem,
            key_pem: key.clone(),
        };
        assert!(cert::key_matches(&pair, "node").unwrap());
        assert!(cert::is_signed_by(&pair.cert_pem, &ca.cert_pem).unwrap());
        let identity = identity_from_der(&pair.cert_der().unwrap()).unwrap();
        assert_eq!(identity.user, "system:node:worker-1");
        assert_eq!(identity.groups, vec!["system:nodes".to_owned()]);

        // The server names the node, whatever the request says.
        let other = sign_node_csr(&ca, &csr, "worker-2", NodeCertKind::Client, &[]).unwrap();
        let der = cert::pem_to_der(&other, "cert").unwrap();
        assert_eq!(
            identity_from_der(&der).unwrap().user,
            "system:node:worker-2"
        );
    }

    #[test]
    fn serving_cert_has_the_requested_sans() {
        let ca = cert::generate_ca("test-ca").unwrap();
        let key = generate_private_key().unwrap();
        let csr = node_csr(&key, "worker-1").unwrap();
        let sans = vec!["worker-1".to_owned(), "10.0.0.7".to_owned()];
        let cert_pem = sign_node_csr(&ca, &csr, "worker-1", NodeCertKind::Serving, &sans).unwrap();
        let info = cert::inspect(&cert_pem, "serving").unwrap();
        assert!(info.sans.contains(&cert::San::Dns("worker-1".into())));
        assert!(info
            .sans
            .contains(&cert::San::Ip("10.0.0.7".parse().unwrap())));

        let issued = issue_node_cert(&ca, "worker-1", NodeCertKind::Serving, &sans).unwrap();
        assert_eq!(cert::inspect(&issued.cert_pem, "s").unwrap().sans.len(), 2);
        assert!(cert::key_matches(&issued, "issued").unwrap());
    }

    #[test]
    fn garbage_or_tampered_requests_are_refused() {
        let ca = cert::generate_ca("test-ca").unwrap();
        assert!(matches!(
            sign_node_csr(&ca, "not a csr", "n", NodeCertKind::Client, &[]),
            Err(Error::Parse { .. })
        ));
        let key = generate_private_key().unwrap();
        let csr = node_csr(&key, "worker-1").unwrap();
        // Flip a byte inside the base64 body: the signature no longer verifies (or it no
        // longer parses); either way nothing is signed.
        let mut lines: Vec<String> = csr.lines().map(str::to_owned).collect();
        let middle = lines.len() / 2;
        let mut bytes = lines[middle].clone().into_bytes();
        bytes[10] = if bytes[10] == b'A' { b'B' } else { b'A' };
        lines[middle] = String::from_utf8(bytes).unwrap();
        let tampered = lines.join("\n");
        assert!(sign_node_csr(&ca, &tampered, "n", NodeCertKind::Client, &[]).is_err());
    }
}
