//! The server's PKI on disk: `<data_dir>/tls/`, created on first start and reused afterwards.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rcgen::KeyPair;

use crate::cert::{self, CertPair, San, Usage};
use crate::fs;
use crate::Error;

/// Common name of the cluster CA.
pub const CA_COMMON_NAME: &str = "kubelab-ca";
/// Common name of the API serving certificate.
pub const SERVING_COMMON_NAME: &str = "kube-apiserver";
/// The admin user; its group is bound to `cluster-admin` by RBAC, so it can be revoked.
pub const ADMIN_USER: &str = "kubelab-admin";
/// Group of [`ADMIN_USER`].
pub const CLUSTER_ADMINS_GROUP: &str = "kubelab:cluster-admins";
/// The break-glass user, member of `system:masters` (bypasses RBAC); never leaves the server.
pub const SUPER_ADMIN_USER: &str = "kubelab-super-admin";
/// The group that bypasses authorization.
pub const SYSTEM_MASTERS_GROUP: &str = "system:masters";
/// User of the controller manager.
pub const CONTROLLER_MANAGER_USER: &str = "system:kube-controller-manager";
/// User of the scheduler.
pub const SCHEDULER_USER: &str = "system:kube-scheduler";
/// User of the service proxy.
pub const KUBE_PROXY_USER: &str = "system:kube-proxy";
/// User the API server authenticates as to kubelets (kubeadm's `apiserver-kubelet-client`).
pub const KUBELET_CLIENT_USER: &str = "kube-apiserver-kubelet-client";
/// Group of [`KUBELET_CLIENT_USER`]: kubelets let it read logs, exec, attach and port-forward.
pub const KUBELET_API_GROUP: &str = "kubelab:kubelet-api";
/// First IP of the default service CIDR 10.96.0.0/12: the `kubernetes` Service's ClusterIP.
pub const KUBERNETES_SERVICE_IP: &str = "10.96.0.1";

/// A leaf certificate that expires within this window is re-issued at startup (as k3s does).
pub const RENEW_BEFORE: Duration = Duration::from_secs(90 * 24 * 60 * 60);

/// Everything `kubelab server` needs, loaded from (or written to) `<data_dir>/tls/`.
#[derive(Debug, Clone)]
pub struct ServerPki {
    /// The cluster CA (CN `kubelab-ca`, ten years, ECDSA P-256). Signs every other certificate
    /// and is the client CA of the API server.
    pub ca: CertPair,
    /// The API serving certificate (CN `kube-apiserver`, serverAuth).
    pub serving: CertPair,
    /// CN `kubelab-admin`, O `kubelab:cluster-admins`.
    pub admin: CertPair,
    /// CN `kubelab-super-admin`, O `system:masters` (break-glass; stays on the server).
    pub super_admin: CertPair,
    /// CN `system:kube-controller-manager`.
    pub controller_manager: CertPair,
    /// CN `system:kube-scheduler`.
    pub scheduler: CertPair,
    /// CN `system:kube-proxy`.
    pub kube_proxy: CertPair,
    /// CN `kube-apiserver-kubelet-client`, O `kubelab:kubelet-api`: the API server's client
    /// certificate towards kubelets (logs, exec, attach, port-forward).
    pub kubelet_client: CertPair,
}

/// The directory holding the server's certificates and keys.
pub fn tls_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("tls")
}

/// The subject alternative names of the serving certificate, in order, without duplicates:
/// the in-cluster names of the `kubernetes` Service, `localhost`, `host_name`, the Service IP,
/// the loopback addresses, then every `extra_sans` entry.
pub fn serving_sans(host_name: &str, extra_sans: &[String]) -> Result<Vec<String>, Error> {
    let defaults = [
        "kubernetes",
        "kubernetes.default",
        "kubernetes.default.svc",
        "kubernetes.default.svc.cluster.local",
        "localhost",
        host_name,
        KUBERNETES_SERVICE_IP,
        "127.0.0.1",
        "::1",
    ];
    let mut seen = BTreeSet::new();
    let mut sans = Vec::new();
    let candidates = defaults
        .into_iter()
        .chain(extra_sans.iter().map(String::as_str));
    for text in candidates {
        let text = text.trim();
        if text.is_empty() {
            continue;
        }
        if seen.insert(San::parse(text)?) {
            sans.push(text.to_owned());
        }
    }
    Ok(sans)
}

/// Load the PKI from `<data_dir>/tls/`, generating anything missing.
///
/// The CA is created once and never overwritten. Leaf certificates are reused unless they are
/// missing, unreadable as a pair, not signed by the CA, or expire within [`RENEW_BEFORE`]; the
/// serving certificate is also re-issued when it lacks one of the requested SANs (see
/// [`serving_sans`]). Every `*.key` is 0600, the tls directory 0700.
pub fn ensure_server_pki(
    data_dir: &Path,
    host_name: &str,
    extra_sans: &[String],
) -> Result<ServerPki, Error> {
    // Validate the requested SANs before touching the disk.
    let sans = serving_sans(host_name, extra_sans)?;
    let requested: BTreeSet<San> = sans
        .iter()
        .map(|san| San::parse(san))
        .collect::<Result<_, _>>()?;

    let tls = tls_dir(data_dir);
    fs::ensure_private_dir(&tls)?;
    let ca = ensure_ca(&tls)?;

    let serving = ensure_leaf(
        &tls,
        &ca,
        &LeafSpec {
            file_stem: "serving-kube-apiserver",
            common_name: SERVING_COMMON_NAME,
            organizations: &[],
            usage: Usage::Server,
            sans: &sans,
            required_sans: Some(&requested),
        },
    )?;
    let client = |name: &'static str, common_name: &'static str, organizations: &[&str]| {
        let file_stem = format!("client-{name}");
        ensure_leaf(
            &tls,
            &ca,
            &LeafSpec {
                file_stem: &file_stem,
                common_name,
                organizations,
                usage: Usage::Client,
                sans: &[],
                required_sans: None,
            },
        )
    };
    let admin = client("admin", ADMIN_USER, &[CLUSTER_ADMINS_GROUP])?;
    let super_admin = client("super-admin", SUPER_ADMIN_USER, &[SYSTEM_MASTERS_GROUP])?;
    let controller_manager = client("controller-manager", CONTROLLER_MANAGER_USER, &[])?;
    let scheduler = client("scheduler", SCHEDULER_USER, &[])?;
    let kube_proxy = client("kube-proxy", KUBE_PROXY_USER, &[])?;
    let kubelet_client = client(
        "kube-apiserver-kubelet-client",
        KUBELET_CLIENT_USER,
        &[KUBELET_API_GROUP],
    )?;

    Ok(ServerPki {
        ca,
        serving,
        admin,
        super_admin,
        controller_manager,
        scheduler,
        kube_proxy,
        kubelet_client,
    })
}

fn ensure_ca(tls: &Path) -> Result<CertPair, Error> {
    let cert_path = tls.join("ca.crt");
    let key_path = tls.join("ca.key");
    let cert_pem = fs::read_optional(&cert_path)?;
    let key_pem = fs::read_optional(&key_path)?;
    match (cert_pem, key_pem) {
        (Some(cert_pem), Some(key_pem)) => {
            fs::tighten_private_file(&key_path)?;
            let pair = CertPair { cert_pem, key_pem };
            let what = format!("CA pair {} / {}", cert_path.display(), key_path.display());
            if !cert::key_matches(&pair, &what)? {
                return Err(Error::CaKeyMismatch {
                    cert: cert_path,
                    key: key_path,
                });
            }
            tracing::debug!(path = %cert_path.display(), "reusing cluster CA");
            Ok(pair)
        }
        (Some(_), None) => Err(Error::CaKeyMissing {
            cert: cert_path,
            key: key_path,
        }),
        (None, Some(key_pem)) => {
            // We write the key before the certificate, so this is an interrupted first start:
            // finish it with the key that is already there rather than replacing it.
            fs::tighten_private_file(&key_path)?;
            let key = KeyPair::from_pem(&key_pem)
                .map_err(|err| Error::parse(format!("CA key {}", key_path.display()), err))?;
            tracing::warn!(path = %cert_path.display(), "CA key present without certificate; self-signing a certificate for the existing key");
            let pair = cert::self_sign_ca(CA_COMMON_NAME, &key)?;
            fs::write_atomic(&cert_path, pair.cert_pem.as_bytes(), fs::PUBLIC_FILE_MODE)?;
            Ok(pair)
        }
        (None, None) => {
            tracing::info!(path = %cert_path.display(), "generating cluster CA");
            let pair = cert::generate_ca(CA_COMMON_NAME)?;
            write_pair(&cert_path, &key_path, &pair)?;
            Ok(pair)
        }
    }
}

struct LeafSpec<'a> {
    file_stem: &'a str,
    common_name: &'a str,
    organizations: &'a [&'a str],
    usage: Usage,
    sans: &'a [String],
    /// For the serving certificate: the SANs an existing certificate must contain to be reused.
    required_sans: Option<&'a BTreeSet<San>>,
}

fn ensure_leaf(tls: &Path, ca: &CertPair, spec: &LeafSpec<'_>) -> Result<CertPair, Error> {
    let cert_path = tls.join(format!("{}.crt", spec.file_stem));
    let key_path = tls.join(format!("{}.key", spec.file_stem));
    let cert_pem = fs::read_optional(&cert_path)?;
    let key_pem = fs::read_optional(&key_path)?;

    match (cert_pem, key_pem) {
        (Some(cert_pem), Some(key_pem)) => {
            fs::tighten_private_file(&key_path)?;
            let pair = CertPair { cert_pem, key_pem };
            match reuse_problem(&pair, ca, spec.required_sans) {
                None => {
                    tracing::debug!(path = %cert_path.display(), "reusing certificate");
                    return Ok(pair);
                }
                Some(problem) => {
                    tracing::warn!(path = %cert_path.display(), common_name = spec.common_name, reason = %problem, "re-issuing certificate");
                }
            }
        }
        _ => {
            tracing::info!(path = %cert_path.display(), common_name = spec.common_name, "issuing certificate");
        }
    }
    let pair = cert::issue_leaf(
        ca,
        spec.common_name,
        spec.organizations,
        spec.sans,
        spec.usage,
    )?;
    write_pair(&cert_path, &key_path, &pair)?;
    Ok(pair)
}

/// Why an existing leaf cannot be reused, or `None` when it can.
fn reuse_problem(
    pair: &CertPair,
    ca: &CertPair,
    required_sans: Option<&BTreeSet<San>>,
) -> Option<String> {
    let info = match cert::inspect(&pair.cert_pem, "certificate") {
        Ok(info) => info,
        Err(err) => return Some(err.to_string()),
    };
    match cert::key_matches(pair, "certificate") {
        Ok(true) => {}
        Ok(false) => return Some("its key does not match the certificate".to_owned()),
        Err(err) => return Some(err.to_string()),
    }
    match cert::is_signed_by(&pair.cert_pem, &ca.cert_pem) {
        Ok(true) => {}
        Ok(false) => return Some("it is not signed by the cluster CA".to_owned()),
        Err(err) => return Some(err.to_string()),
    }
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let renew_at = (now + RENEW_BEFORE).as_secs();
    if info.not_after_unix <= i64::try_from(renew_at).unwrap_or(i64::MAX) {
        return Some("it expires within 90 days".to_owned());
    }
    if let Some(required) = required_sans {
        let missing: Vec<String> = required
            .difference(&info.sans)
            .map(|san| match san {
                San::Dns(name) => name.clone(),
                San::Ip(ip) => ip.to_string(),
            })
            .collect();
        if !missing.is_empty() {
            return Some(format!("it lacks SANs {}", missing.join(", ")));
        }
    }
    None
}

/// Write the key (0600) before the certificate (0644): after a crash between the two, the
/// mismatch is detected and the pair is re-issued (or, for the CA, finished).
fn write_pair(cert_path: &Path, key_path: &Path, pair: &CertPair) -> Result<(), Error> {
    fs::write_atomic(key_path, pair.key_pem.as_bytes(), fs::PRIVATE_FILE_MODE)?;
    fs::write_atomic(cert_path, pair.cert_pem.as_bytes(), fs::PUBLIC_FILE_MODE)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity_from_der;
    use std::net::IpAddr;

    fn mode(path: &Path) -> u32 {
        use std::os::unix::fs::PermissionsExt;
        std::fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    fn read(path: PathBuf) -> String {
        std::fs::read_to_string(path).unwrap()
    }

    const FILE_STEMS: [&str; 8] = [
        "ca",
        "serving-kube-apiserver",
        "client-admin",
        "client-super-admin",
        "client-controller-manager",
        "client-scheduler",
        "client-kube-proxy",
        "client-kube-apiserver-kubelet-client",
    ];

    #[test]
    fn first_start_writes_every_file_with_private_modes() {
        let dir = tempfile::tempdir().unwrap();
        let pki = ensure_server_pki(dir.path(), "node-1", &[]).unwrap();
        let tls = tls_dir(dir.path());
        assert_eq!(mode(&tls), 0o700);
        for stem in FILE_STEMS {
            let key = tls.join(format!("{stem}.key"));
            let crt = tls.join(format!("{stem}.crt"));
            assert_eq!(mode(&key), 0o600, "{}", key.display());
            assert!(crt.is_file(), "{}", crt.display());
        }
        assert_eq!(read(tls.join("ca.crt")), pki.ca.cert_pem);
        assert_eq!(read(tls.join("client-admin.key")), pki.admin.key_pem);
        // No temporary files left behind.
        let stray: Vec<_> = std::fs::read_dir(&tls)
            .unwrap()
            .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|name| name.starts_with('.'))
            .collect();
        assert!(stray.is_empty(), "{stray:?}");
    }

    #[test]
    fn restart_reuses_identical_certificates() {
        let dir = tempfile::tempdir().unwrap();
        let first = ensure_server_pki(dir.path(), "node-1", &["api.example.com".into()]).unwrap();
        let second = ensure_server_pki(dir.path(), "node-1", &["api.example.com".into()]).unwrap();
        assert_eq!(first.ca, second.ca);
        assert_eq!(first.serving, second.serving);
        assert_eq!(first.admin, second.admin);
        assert_eq!(first.super_admin, second.super_admin);
        assert_eq!(first.controller_manager, second.controller_manager);
        assert_eq!(first.scheduler, second.scheduler);
        assert_eq!(first.kube_proxy, second.kube_proxy);
    }

    #[test]
    fn new_tls_san_reissues_only_the_serving_certificate() {
        let dir = tempfile::tempdir().unwrap();
        let first = ensure_server_pki(dir.path(), "node-1", &[]).unwrap();
        let second = ensure_server_pki(
            dir.path(),
            "node-1",
            &["192.168.50.7".into(), "api.example.com".into()],
        )
        .unwrap();
        assert_eq!(first.ca, second.ca);
        assert_eq!(first.admin, second.admin);
        assert_eq!(first.kube_proxy, second.kube_proxy);
        assert_ne!(first.serving, second.serving);
        assert!(cert::is_signed_by(&second.serving.cert_pem, &second.ca.cert_pem).unwrap());

        let info = cert::inspect(&second.serving.cert_pem, "serving").unwrap();
        assert!(info
            .sans
            .contains(&San::Ip("192.168.50.7".parse::<IpAddr>().unwrap())));
        assert!(info.sans.contains(&San::Dns("api.example.com".into())));
        assert_eq!(
            read(tls_dir(dir.path()).join("serving-kube-apiserver.crt")),
            second.serving.cert_pem
        );

        // Dropping the extra SAN again does not force a re-issue: a superset is fine.
        let third = ensure_server_pki(dir.path(), "node-1", &[]).unwrap();
        assert_eq!(second.serving, third.serving);
    }

    #[test]
    fn serving_certificate_is_a_leaf_with_every_san() {
        let dir = tempfile::tempdir().unwrap();
        let pki = ensure_server_pki(dir.path(), "node-1", &["10.1.2.3".into()]).unwrap();
        let der = pki.serving.cert_der().unwrap();
        let (_, cert) = x509_parser::parse_x509_certificate(&der).unwrap();
        assert!(!cert.is_ca());
        let cn = cert.subject().iter_common_name().next().unwrap();
        assert_eq!(cn.as_str().unwrap(), "kube-apiserver");
        let eku = cert.extended_key_usage().unwrap().unwrap().value;
        assert!(eku.server_auth);
        assert!(!eku.client_auth);

        let info = cert::inspect(&pki.serving.cert_pem, "serving").unwrap();
        for dns in [
            "kubernetes",
            "kubernetes.default",
            "kubernetes.default.svc",
            "kubernetes.default.svc.cluster.local",
            "localhost",
            "node-1",
        ] {
            assert!(info.sans.contains(&San::Dns(dns.into())), "{dns}");
        }
        for ip in ["10.96.0.1", "127.0.0.1", "::1", "10.1.2.3"] {
            assert!(info.sans.contains(&San::Ip(ip.parse().unwrap())), "{ip}");
        }
        assert_eq!(info.sans.len(), 10);
    }

    #[test]
    fn client_identities() {
        let dir = tempfile::tempdir().unwrap();
        let pki = ensure_server_pki(dir.path(), "node-1", &[]).unwrap();
        let identity = |pair: &CertPair| identity_from_der(&pair.cert_der().unwrap()).unwrap();

        let admin = identity(&pki.admin);
        assert_eq!(admin.user, "kubelab-admin");
        assert_eq!(admin.groups, vec!["kubelab:cluster-admins".to_owned()]);
        let super_admin = identity(&pki.super_admin);
        assert_eq!(super_admin.user, "kubelab-super-admin");
        assert_eq!(super_admin.groups, vec!["system:masters".to_owned()]);
        assert_eq!(
            identity(&pki.controller_manager).user,
            "system:kube-controller-manager"
        );
        assert_eq!(identity(&pki.scheduler).user, "system:kube-scheduler");
        let proxy = identity(&pki.kube_proxy);
        assert_eq!(proxy.user, "system:kube-proxy");
        assert!(proxy.groups.is_empty());
        let kubelet_client = identity(&pki.kubelet_client);
        assert_eq!(kubelet_client.user, "kube-apiserver-kubelet-client");
        assert_eq!(
            kubelet_client.groups,
            vec!["kubelab:kubelet-api".to_owned()]
        );
    }

    #[test]
    fn existing_ca_is_never_overwritten() {
        let dir = tempfile::tempdir().unwrap();
        let tls = tls_dir(dir.path());
        let first = ensure_server_pki(dir.path(), "node-1", &[]).unwrap();

        // A missing CA key is an error, not a reason to make a new CA.
        std::fs::remove_file(tls.join("ca.key")).unwrap();
        let err = ensure_server_pki(dir.path(), "node-1", &[]).unwrap_err();
        assert!(matches!(err, Error::CaKeyMissing { .. }), "{err}");
        assert_eq!(read(tls.join("ca.crt")), first.ca.cert_pem);

        // A key that does not belong to the certificate is an error too.
        let other = cert::generate_ca("other").unwrap();
        std::fs::write(tls.join("ca.key"), &other.key_pem).unwrap();
        let err = ensure_server_pki(dir.path(), "node-1", &[]).unwrap_err();
        assert!(matches!(err, Error::CaKeyMismatch { .. }), "{err}");
        assert_eq!(read(tls.join("ca.crt")), first.ca.cert_pem);
    }

    #[test]
    fn ca_key_without_certificate_is_finished_with_the_same_key() {
        let dir = tempfile::tempdir().unwrap();
        let tls = tls_dir(dir.path());
        let first = ensure_server_pki(dir.path(), "node-1", &[]).unwrap();
        std::fs::remove_file(tls.join("ca.crt")).unwrap();
        let second = ensure_server_pki(dir.path(), "node-1", &[]).unwrap();
        assert_eq!(first.ca.key_pem, second.ca.key_pem);
        // Same key and same subject: the old leaves still verify and are kept.
        assert_eq!(first.admin, second.admin);
    }

    #[test]
    fn leaves_signed_by_a_foreign_ca_or_torn_are_reissued() {
        let dir = tempfile::tempdir().unwrap();
        let tls = tls_dir(dir.path());
        let first = ensure_server_pki(dir.path(), "node-1", &[]).unwrap();

        let foreign = cert::generate_ca(CA_COMMON_NAME).unwrap();
        let intruder = cert::issue_client_cert(&foreign, ADMIN_USER, &[]).unwrap();
        std::fs::write(tls.join("client-admin.crt"), &intruder.cert_pem).unwrap();
        std::fs::write(tls.join("client-admin.key"), &intruder.key_pem).unwrap();
        // A torn pair: new key, old certificate.
        std::fs::write(tls.join("client-scheduler.key"), &intruder.key_pem).unwrap();
        // A missing file.
        std::fs::remove_file(tls.join("client-kube-proxy.crt")).unwrap();

        let second = ensure_server_pki(dir.path(), "node-1", &[]).unwrap();
        assert_eq!(first.ca, second.ca);
        for pair in [&second.admin, &second.scheduler, &second.kube_proxy] {
            assert!(cert::is_signed_by(&pair.cert_pem, &second.ca.cert_pem).unwrap());
            assert!(cert::key_matches(pair, "pair").unwrap());
        }
        assert_ne!(second.admin.cert_pem, intruder.cert_pem);
        assert_eq!(first.super_admin, second.super_admin);
    }

    #[test]
    fn loose_key_permissions_are_tightened() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let tls = tls_dir(dir.path());
        ensure_server_pki(dir.path(), "node-1", &[]).unwrap();
        let key = tls.join("client-admin.key");
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
        ensure_server_pki(dir.path(), "node-1", &[]).unwrap();
        assert_eq!(mode(&key), 0o600);
    }

    #[test]
    fn invalid_extra_san_is_refused_before_writing_anything() {
        let dir = tempfile::tempdir().unwrap();
        let err = ensure_server_pki(dir.path(), "node-1", &["not a name".into()]).unwrap_err();
        assert!(matches!(err, Error::InvalidSan { .. }), "{err}");
        assert!(!tls_dir(dir.path()).exists());
    }

    #[test]
    fn host_name_that_is_an_ip_becomes_an_ip_san() {
        let sans = serving_sans("172.18.0.2", &["localhost".into(), "LOCALHOST".into()]).unwrap();
        assert!(sans.contains(&"172.18.0.2".to_owned()));
        assert_eq!(
            sans.iter()
                .filter(|s| s.eq_ignore_ascii_case("localhost"))
                .count(),
            1
        );
    }
}
