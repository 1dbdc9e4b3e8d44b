//! kubeconfig files with every certificate embedded (no paths to other files).

use std::path::Path;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use serde::{Deserialize, Serialize};

use crate::cert::CertPair;
use crate::fs;
use crate::Error;

/// What goes into a single-cluster, single-user kubeconfig.
#[derive(Debug, Clone, Copy)]
pub struct KubeconfigSpec<'a> {
    pub cluster_name: &'a str,
    pub context_name: &'a str,
    pub user_name: &'a str,
    /// The API server URL, e.g. `https://127.0.0.1:6443`.
    pub server: &'a str,
    /// The CA that signed the serving certificate, PEM.
    pub ca_pem: &'a str,
    /// The client certificate and key the user authenticates with.
    pub client: &'a CertPair,
}

// The subset of the kubeconfig schema (clientcmd v1) that we write.

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub(crate) struct Kubeconfig {
    #[serde(rename = "apiVersion")]
    pub(crate) api_version: String,
    pub(crate) kind: String,
    pub(crate) clusters: Vec<NamedCluster>,
    pub(crate) contexts: Vec<NamedContext>,
    pub(crate) users: Vec<NamedUser>,
    pub(crate) current_context: String,
    pub(crate) preferences: Preferences,
}

#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Preferences {}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct NamedCluster {
    pub(crate) name: String,
    pub(crate) cluster: Cluster,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub(crate) struct Cluster {
    pub(crate) server: String,
    pub(crate) certificate_authority_data: String,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct NamedContext {
    pub(crate) name: String,
    pub(crate) context: Context,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Context {
    pub(crate) cluster: String,
    pub(crate) user: String,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct NamedUser {
    pub(crate) name: String,
    pub(crate) user: User,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub(crate) struct User {
    pub(crate) client_certificate_data: String,
    pub(crate) client_key_data: String,
}

/// Render a kubeconfig (apiVersion v1, kind Config) with one cluster, one user and one context,
/// `current-context` set, and the CA, client certificate and key base64-embedded.
pub fn kubeconfig_yaml(spec: &KubeconfigSpec) -> Result<String, Error> {
    let config = Kubeconfig {
        api_version: "v1".to_owned(),
        kind: "Config".to_owned(),
        clusters: vec![NamedCluster {
            name: spec.cluster_name.to_owned(),
            cluster: Cluster {
                server: spec.server.to_owned(),
                certificate_authority_data: BASE64.encode(spec.ca_pem),
            },
        }],
        contexts: vec![NamedContext {
            name: spec.context_name.to_owned(),
            context: Context {
                cluster: spec.cluster_name.to_owned(),
                user: spec.user_name.to_owned(),
            },
        }],
        users: vec![NamedUser {
            name: spec.user_name.to_owned(),
            user: User {
                client_certificate_data: BASE64.encode(&spec.client.cert_pem),
                client_key_data: BASE64.encode(&spec.client.key_pem),
            },
        }],
        current_context: spec.context_name.to_owned(),
        preferences: Preferences::default(),
    };
    serde_yaml::to_string(&config).map_err(|source| Error::Kubeconfig { source })
}

/// Write [`kubeconfig_yaml`] to `path` atomically with mode 0600, creating the parent directory
/// if it is missing.
pub fn write_kubeconfig(path: &Path, spec: &KubeconfigSpec) -> Result<(), Error> {
    let yaml = kubeconfig_yaml(spec)?;
    fs::ensure_parent_dir(path)?;
    fs::write_atomic(path, yaml.as_bytes(), fs::PRIVATE_FILE_MODE)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{generate_ca, issue_client_cert};

    fn decode(data: &str) -> String {
        String::from_utf8(BASE64.decode(data).unwrap()).unwrap()
    }

    #[test]
    fn yaml_parses_back_with_every_field() {
        let ca = generate_ca("kubelab-ca").unwrap();
        let client = issue_client_cert(&ca, "kubelab-admin", &["kubelab:cluster-admins"]).unwrap();
        let spec = KubeconfigSpec {
            cluster_name: "kubelab-dev",
            context_name: "kubelab-dev",
            user_name: "kubelab-dev-admin",
            server: "https://127.0.0.1:6443",
            ca_pem: &ca.cert_pem,
            client: &client,
        };
        let yaml = kubeconfig_yaml(&spec).unwrap();
        assert!(yaml.contains("certificate-authority-data:"));
        assert!(yaml.contains("current-context: kubelab-dev"));

        let parsed: Kubeconfig = serde_yaml::from_str(&yaml).unwrap();
        assert_eq!(parsed.api_version, "v1");
        assert_eq!(parsed.kind, "Config");
        assert_eq!(parsed.current_context, "kubelab-dev");
        let [cluster] = &parsed.clusters[..] else {
            panic!("one cluster expected")
        };
        assert_eq!(cluster.name, "kubelab-dev");
        assert_eq!(cluster.cluster.server, "https://127.0.0.1:6443");
        assert_eq!(
            decode(&cluster.cluster.certificate_authority_data),
            ca.cert_pem
        );
        let [context] = &parsed.contexts[..] else {
            panic!("one context expected")
        };
        assert_eq!(context.name, "kubelab-dev");
        assert_eq!(context.context.cluster, "kubelab-dev");
        assert_eq!(context.context.user, "kubelab-dev-admin");
        let [user] = &parsed.users[..] else {
            panic!("one user expected")
        };
        assert_eq!(user.name, "kubelab-dev-admin");
        assert_eq!(decode(&user.user.client_certificate_data), client.cert_pem);
        assert_eq!(decode(&user.user.client_key_data), client.key_pem);

        // Also as untyped YAML, the way kubectl reads it.
        let value: serde_yaml::Value = serde_yaml::from_str(&yaml).unwrap();
        assert_eq!(
            value["users"][0]["user"]["client-key-data"]
                .as_str()
                .map(decode),
            Some(client.key_pem.clone())
        );
    }

    #[test]
    fn written_file_is_private_and_replaced_atomically() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nested/dir/kubeconfig");
        let ca = generate_ca("kubelab-ca").unwrap();
        let client = issue_client_cert(&ca, "u", &[]).unwrap();
        let spec = KubeconfigSpec {
            cluster_name: "c",
            context_name: "x",
            user_name: "u",
            server: "https://localhost:6443",
            ca_pem: &ca.cert_pem,
            client: &client,
        };
        write_kubeconfig(&path, &spec).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let yaml = std::fs::read_to_string(&path).unwrap();
        assert_eq!(yaml, kubeconfig_yaml(&spec).unwrap());

        // Overwriting works and leaves no temporary file.
        let spec = KubeconfigSpec {
            server: "https://127.0.0.1:7443",
            ..spec
        };
        write_kubeconfig(&path, &spec).unwrap();
        assert!(std::fs::read_to_string(&path).unwrap().contains("7443"));
        assert_eq!(
            std::fs::read_dir(path.parent().unwrap()).unwrap().count(),
            1
        );
    }
}
