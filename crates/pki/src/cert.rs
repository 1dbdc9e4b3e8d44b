//! Making certificates (a CA, serving and client leaves) and reading them back.

use std::collections::BTreeSet;
use std::fmt;
use std::net::IpAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, PublicKeyData, SanType, SerialNumber,
};
use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::GeneralName;

use crate::der;
use crate::Error;

/// Leaf certificates live one year (kubeadm and k3s both use 365 days).
pub const LEAF_VALIDITY: Duration = Duration::from_secs(365 * 24 * 60 * 60);
/// The CA lives ten years and is never renewed automatically.
pub const CA_VALIDITY: Duration = Duration::from_secs(10 * 365 * 24 * 60 * 60);
/// NotBefore is set this far in the past so that small clock skew between nodes is harmless.
pub const BACKDATE: Duration = Duration::from_secs(5 * 60);

/// A PEM certificate and its PEM (PKCS#8) private key.
#[derive(Clone, PartialEq, Eq)]
pub struct CertPair {
    pub cert_pem: String,
    pub key_pem: String,
}

impl fmt::Debug for CertPair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CertPair")
            .field("cert_pem", &self.cert_pem)
            .field("key_pem", &"<redacted>")
            .finish()
    }
}

impl CertPair {
    /// The DER bytes of the (first) certificate in `cert_pem`.
    pub fn cert_der(&self) -> Result<Vec<u8>, Error> {
        pem_to_der(&self.cert_pem, "certificate")
    }
}

/// Who a client certificate says its holder is: CN is the user, every O is a group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub user: String,
    pub groups: Vec<String>,
}

/// What a leaf certificate may be used for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Usage {
    Server,
    Client,
}

/// A fresh self-signed CA: ECDSA P-256, ten years, NotBefore backdated five minutes.
pub fn generate_ca(common_name: &str) -> Result<CertPair, Error> {
    let key = generate_key(common_name)?;
    self_sign_ca(common_name, &key)
}

/// Self-sign a CA certificate for an existing key (also used to recover a CA whose certificate
/// was lost between writing the key and writing the certificate).
pub(crate) fn self_sign_ca(common_name: &str, key: &KeyPair) -> Result<CertPair, Error> {
    let mut params = base_params(common_name, &[], CA_VALIDITY);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let cert = params.self_signed(key).map_err(|source| Error::Generate {
        operation: "self-sign the CA certificate",
        subject: common_name.to_owned(),
        source,
    })?;
    Ok(CertPair {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    })
}

/// Issue a client certificate (ExtendedKeyUsage clientAuth) signed by `ca`: CN `common_name`,
/// one O per entry of `organizations`, valid 365 days.
pub fn issue_client_cert(
    ca: &CertPair,
    common_name: &str,
    organizations: &[&str],
) -> Result<CertPair, Error> {
    issue_leaf(ca, common_name, organizations, &[], Usage::Client)
}

/// A client certificate of `ca` that expired a minute ago, after four minutes of validity (to
/// test that expired credentials are refused).
pub fn issue_expired_client_cert(
    ca: &CertPair,
    common_name: &str,
    organizations: &[&str],
) -> Result<CertPair, Error> {
    let mut params = leaf_params(common_name, organizations, &[], Usage::Client)?;
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let epoch = rcgen::date_time_ymd(1970, 1, 1);
    params.not_before = epoch + now.saturating_sub(Duration::from_secs(240));
    params.not_after = epoch + now.saturating_sub(Duration::from_secs(60));
    sign_leaf(ca, common_name, organizations, params)
}

/// Issue a leaf certificate signed by `ca` with a fresh key.
pub(crate) fn issue_leaf(
    ca: &CertPair,
    common_name: &str,
    organizations: &[&str],
    sans: &[String],
    usage: Usage,
) -> Result<CertPair, Error> {
    let params = leaf_params(common_name, organizations, sans, usage)?;
    sign_leaf(ca, common_name, organizations, params)
}

fn sign_leaf(
    ca: &CertPair,
    common_name: &str,
    organizations: &[&str],
    params: CertificateParams,
) -> Result<CertPair, Error> {
    let issuer = load_issuer(ca, common_name)?;
    let key = generate_key(common_name)?;
    let cert = params
        .signed_by(&key, &issuer)
        .map_err(|source| Error::Generate {
            operation: "sign the certificate",
            subject: common_name.to_owned(),
            source,
        })?;
    let cert_pem = if organizations.len() > 1 {
        // rcgen keeps only one O; see the `der` module.
        let subject = der::name(common_name, organizations);
        let der =
            der::replace_subject(cert.der(), &subject, issuer.key()).map_err(|err| match err {
                der::ResignError::Sign(source) => Error::Generate {
                    operation: "sign the certificate",
                    subject: common_name.to_owned(),
                    source,
                },
                der::ResignError::Malformed(reason) => {
                    Error::parse(format!("generated certificate for {common_name}"), reason)
                }
            })?;
        der::certificate_pem(&der)
    } else {
        cert.pem()
    };
    Ok(CertPair {
        cert_pem,
        key_pem: key.serialize_pem(),
    })
}

/// The parameters of a leaf certificate: subject, SANs, key usages, one year of validity.
pub(crate) fn leaf_params(
    common_name: &str,
    organizations: &[&str],
    sans: &[String],
    usage: Usage,
) -> Result<CertificateParams, Error> {
    let mut params = base_params(common_name, organizations, LEAF_VALIDITY);
    params.subject_alt_names = sans
        .iter()
        .map(|san| san_type(san))
        .collect::<Result<_, _>>()?;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![match usage {
        Usage::Server => ExtendedKeyUsagePurpose::ServerAuth,
        Usage::Client => ExtendedKeyUsagePurpose::ClientAuth,
    }];
    params.use_authority_key_identifier_extension = true;
    Ok(params)
}

/// The CA as an rcgen issuer (`common_name` names the certificate being made, for errors).
pub(crate) fn load_issuer(
    ca: &CertPair,
    common_name: &str,
) -> Result<Issuer<'static, KeyPair>, Error> {
    let ca_key = KeyPair::from_pem(&ca.key_pem).map_err(|source| Error::Generate {
        operation: "load the CA key",
        subject: common_name.to_owned(),
        source,
    })?;
    Issuer::from_ca_cert_pem(&ca.cert_pem, ca_key).map_err(|source| Error::Generate {
        operation: "load the CA certificate",
        subject: common_name.to_owned(),
        source,
    })
}

pub(crate) fn generate_key(common_name: &str) -> Result<KeyPair, Error> {
    // ECDSA P-256, like k3s.
    KeyPair::generate().map_err(|source| Error::Generate {
        operation: "generate a key",
        subject: common_name.to_owned(),
        source,
    })
}

fn base_params(common_name: &str, organizations: &[&str], lifetime: Duration) -> CertificateParams {
    let mut params = CertificateParams::default();
    let mut name = DistinguishedName::new();
    name.push(DnType::CommonName, common_name);
    // rcgen keeps one value per attribute type; more organizations are added by `der`.
    if let Some(organization) = organizations.first() {
        name.push(DnType::OrganizationName, *organization);
    }
    params.distinguished_name = name;
    params.serial_number = Some(random_serial());

    // rcgen takes `time::OffsetDateTime`; we reach it through rcgen's own constructor instead of
    // depending on the `time` crate directly.
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let epoch = rcgen::date_time_ymd(1970, 1, 1);
    params.not_before = epoch + now.saturating_sub(BACKDATE);
    params.not_after = epoch + (now + lifetime);
    params
}

fn random_serial() -> SerialNumber {
    let mut bytes: [u8; 16] = rand::random();
    // Positive and without a leading zero byte, so it encodes in exactly 16 bytes.
    bytes[0] = (bytes[0] & 0x7f) | 0x40;
    SerialNumber::from_slice(&bytes)
}

/// A subject alternative name as we compare them: DNS names case-insensitively, IPs by value.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum San {
    Dns(String),
    Ip(IpAddr),
}

impl San {
    pub(crate) fn parse(text: &str) -> Result<San, Error> {
        if let Ok(ip) = text.parse::<IpAddr>() {
            return Ok(San::Ip(ip));
        }
        validate_dns_name(text)?;
        Ok(San::Dns(text.to_ascii_lowercase()))
    }
}

fn san_type(text: &str) -> Result<SanType, Error> {
    match San::parse(text)? {
        San::Ip(ip) => Ok(SanType::IpAddress(ip)),
        San::Dns(name) => {
            let name = name
                .try_into()
                .map_err(|err: rcgen::Error| Error::InvalidSan {
                    san: text.to_owned(),
                    reason: err.to_string(),
                })?;
            Ok(SanType::DnsName(name))
        }
    }
}

fn validate_dns_name(name: &str) -> Result<(), Error> {
    let invalid = |reason: &str| Error::InvalidSan {
        san: name.to_owned(),
        reason: reason.to_owned(),
    };
    if name.is_empty() {
        return Err(invalid("it is empty"));
    }
    if name.len() > 253 {
        return Err(invalid("it is longer than 253 characters"));
    }
    let body = name.strip_prefix("*.").unwrap_or(name);
    for label in body.split('.') {
        if label.is_empty() || label.len() > 63 {
            return Err(invalid("every label must be 1 to 63 characters long"));
        }
        if !label
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return Err(invalid("only letters, digits, '-' and '.' are allowed"));
        }
        if label.starts_with('-') || label.ends_with('-') {
            return Err(invalid("a label cannot start or end with '-'"));
        }
    }
    Ok(())
}

/// The DER of the first CERTIFICATE block in `pem`.
pub(crate) fn pem_to_der(pem: &str, what: &str) -> Result<Vec<u8>, Error> {
    match rustls_pemfile::certs(&mut pem.as_bytes()).next() {
        Some(Ok(der)) => Ok(der.to_vec()),
        Some(Err(err)) => Err(Error::parse(what, err)),
        None => Err(Error::parse(what, "no PEM CERTIFICATE block found")),
    }
}

fn parse_der<'a>(der: &'a [u8], what: &str) -> Result<X509Certificate<'a>, Error> {
    match x509_parser::parse_x509_certificate(der) {
        Ok((_, cert)) => Ok(cert),
        Err(err) => Err(Error::parse(what, err)),
    }
}

/// The facts about an existing certificate that decide whether it can be reused.
#[derive(Debug, Clone)]
pub(crate) struct CertInfo {
    pub(crate) not_after_unix: i64,
    pub(crate) sans: BTreeSet<San>,
}

pub(crate) fn inspect(cert_pem: &str, what: &str) -> Result<CertInfo, Error> {
    let der = pem_to_der(cert_pem, what)?;
    let cert = parse_der(&der, what)?;
    let mut sans = BTreeSet::new();
    if let Ok(Some(extension)) = cert.subject_alternative_name() {
        for name in &extension.value.general_names {
            match name {
                GeneralName::DNSName(dns) => {
                    sans.insert(San::Dns(dns.to_ascii_lowercase()));
                }
                GeneralName::IPAddress(bytes) => {
                    if let Some(ip) = ip_from_bytes(bytes) {
                        sans.insert(San::Ip(ip));
                    }
                }
                _ => {}
            }
        }
    }
    Ok(CertInfo {
        not_after_unix: cert.validity().not_after.timestamp(),
        sans,
    })
}

fn ip_from_bytes(bytes: &[u8]) -> Option<IpAddr> {
    match bytes.len() {
        4 => <[u8; 4]>::try_from(bytes).ok().map(IpAddr::from),
        16 => <[u8; 16]>::try_from(bytes).ok().map(IpAddr::from),
        _ => None,
    }
}

/// Whether `cert_pem` carries a valid signature by the key of `ca_pem`.
pub(crate) fn is_signed_by(cert_pem: &str, ca_pem: &str) -> Result<bool, Error> {
    let cert_der = pem_to_der(cert_pem, "certificate")?;
    let ca_der = pem_to_der(ca_pem, "CA certificate")?;
    let cert = parse_der(&cert_der, "certificate")?;
    let ca = parse_der(&ca_der, "CA certificate")?;
    Ok(cert.issuer() == ca.subject() && cert.verify_signature(Some(ca.public_key())).is_ok())
}

/// Whether `pair.key_pem` is the private key of `pair.cert_pem`.
pub(crate) fn key_matches(pair: &CertPair, what: &str) -> Result<bool, Error> {
    let key = KeyPair::from_pem(&pair.key_pem).map_err(|err| Error::parse(what, err))?;
    let der = pem_to_der(&pair.cert_pem, what)?;
    let cert = parse_der(&der, what)?;
    Ok(key.subject_public_key_info() == cert.public_key().raw)
}

/// Read the identity out of a DER client certificate: CN is the user, every O is a group.
pub fn identity_from_der(der: &[u8]) -> Result<Identity, Error> {
    const WHAT: &str = "client certificate";
    let cert = parse_der(der, WHAT)?;
    let subject = cert.subject();
    let user = match subject.iter_common_name().next() {
        Some(attribute) => attribute
            .as_str()
            .map_err(|err| Error::parse(WHAT, format!("common name is not a string: {err}")))?,
        None => return Err(Error::NoCommonName),
    };
    if user.is_empty() {
        return Err(Error::NoCommonName);
    }
    if !cert.validity().is_valid() {
        return Err(Error::NotValidNow);
    }
    let groups = subject
        .iter_organization()
        .map(|attribute| {
            attribute
                .as_str()
                .map(str::to_owned)
                .map_err(|err| Error::parse(WHAT, format!("organization is not a string: {err}")))
        })
        .collect::<Result<_, _>>()?;
    Ok(Identity {
        user: user.to_owned(),
        groups,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_cert_carries_identity_and_is_signed_by_its_ca() {
        let ca = generate_ca("test-ca").unwrap();
        let pair = issue_client_cert(&ca, "alice", &["devs", "ops"]).unwrap();
        let identity = identity_from_der(&pair.cert_der().unwrap()).unwrap();
        assert_eq!(identity.user, "alice");
        assert_eq!(identity.groups, vec!["devs".to_owned(), "ops".to_owned()]);
        assert!(is_signed_by(&pair.cert_pem, &ca.cert_pem).unwrap());
        assert!(key_matches(&pair, "pair").unwrap());

        let foreign = generate_ca("test-ca").unwrap();
        assert!(!is_signed_by(&pair.cert_pem, &foreign.cert_pem).unwrap());

        // One organization goes through rcgen alone.
        let single = issue_client_cert(&ca, "bob", &["devs"]).unwrap();
        let identity = identity_from_der(&single.cert_der().unwrap()).unwrap();
        assert_eq!(identity.groups, vec!["devs".to_owned()]);
    }

    #[test]
    fn ca_is_a_ca_and_lives_ten_years() {
        let ca = generate_ca("test-ca").unwrap();
        let info = inspect(&ca.cert_pem, "ca").unwrap();
        let der = ca.cert_der().unwrap();
        assert!(parse_der(&der, "ca").unwrap().is_ca());
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64;
        let left = info.not_after_unix - now;
        assert!((left - CA_VALIDITY.as_secs() as i64).abs() < 60, "{left}");
        assert!(key_matches(&ca, "ca").unwrap());
    }

    #[test]
    fn leaf_is_backdated_five_minutes_and_lives_a_year() {
        let ca = generate_ca("test-ca").unwrap();
        let pair = issue_client_cert(&ca, "bob", &[]).unwrap();
        let der = pair.cert_der().unwrap();
        let cert = parse_der(&der, "leaf").unwrap();
        let not_before = cert.validity().not_before.timestamp();
        let not_after = cert.validity().not_after.timestamp();
        assert_eq!(
            not_after - not_before,
            (LEAF_VALIDITY + BACKDATE).as_secs() as i64
        );
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64;
        assert!(now - not_before >= 299 && now - not_before <= 310);
        assert!(!cert.is_ca());
    }

    #[test]
    fn expired_client_certificates_name_nobody() {
        let ca = generate_ca("test-ca").unwrap();
        let expired = issue_expired_client_cert(&ca, "alice", &["devs"]).unwrap();
        assert!(is_signed_by(&expired.cert_pem, &ca.cert_pem).unwrap());
        assert!(matches!(
            identity_from_der(&expired.cert_der().unwrap()),
            Err(Error::NotValidNow)
        ));
    }

    #[test]
    fn identity_without_common_name_is_refused() {
        assert!(matches!(
            identity_from_der(b"not a certificate"),
            Err(Error::Parse { .. })
        ));
    }

    #[test]
    fn san_parsing() {
        assert_eq!(
            San::parse("10.0.0.1").unwrap(),
            San::Ip("10.0.0.1".parse().unwrap())
        );
        assert_eq!(San::parse("::1").unwrap(), San::Ip("::1".parse().unwrap()));
        assert_eq!(
            San::parse("Example.COM").unwrap(),
            San::Dns("example.com".into())
        );
        assert!(San::parse("*.apps.local").is_ok());
        for bad in ["", "has space", "a..b", "-lead.x", "x/y"] {
            assert!(
                matches!(San::parse(bad), Err(Error::InvalidSan { .. })),
                "{bad:?}"
            );
        }
    }
}
