//! The addons framework: `addons/<name>/addon.yaml` (metadata) and tera-templated manifests,
//! compiled into the binary. Rendering takes the cluster's facts; enabling applies the
//! manifests (server-side apply), disabling deletes their objects, and an addon counts as
//! enabled in a cluster when every object of its manifests exists there (no state kept
//! elsewhere). An addon may also name a built-in action, run by kubelab itself after its
//! manifests: `secret-encryption` turns on the API server's encryption of Secrets (its
//! `/v1-kubelab/encryption/*` endpoints), and its state is the server's.

use kube::api::{Api, DynamicObject};
use kube::discovery::{Discovery, Scope};
use serde::Deserialize;

use crate::{Error, Result};

/// Every file under `addons/`, by path relative to it.
const FILES: &[(&str, &str)] = &[
    (
        "coredns/addon.yaml",
        include_str!("../../../addons/coredns/addon.yaml"),
    ),
    (
        "coredns/coredns.yaml",
        include_str!("../../../addons/coredns/coredns.yaml"),
    ),
    (
        "ingress/addon.yaml",
        include_str!("../../../addons/ingress/addon.yaml"),
    ),
    (
        "ingress/ingress.yaml",
        include_str!("../../../addons/ingress/ingress.yaml"),
    ),
    (
        "metallb/addon.yaml",
        include_str!("../../../addons/metallb/addon.yaml"),
    ),
    (
        "metallb/crds.yaml",
        include_str!("../../../addons/metallb/crds.yaml"),
    ),
    (
        "metallb/metallb.yaml",
        include_str!("../../../addons/metallb/metallb.yaml"),
    ),
    (
        "metallb/pool.yaml",
        include_str!("../../../addons/metallb/pool.yaml"),
    ),
    (
        "secret-encryption/addon.yaml",
        include_str!("../../../addons/secret-encryption/addon.yaml"),
    ),
    (
        "storage/addon.yaml",
        include_str!("../../../addons/storage/addon.yaml"),
    ),
    (
        "storage/storageclass.yaml",
        include_str!("../../../addons/storage/storageclass.yaml"),
    ),
];

/// An addon's metadata (`addon.yaml`).
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Addon {
    pub api_version: String,
    pub kind: String,
    pub name: String,
    pub description: String,
    /// On unless a profile turns it off.
    pub default: bool,
    /// Addons that must be enabled with it.
    #[serde(default)]
    pub requires: Vec<String>,
    /// Manifest files of the addon's folder, applied in order.
    #[serde(default)]
    pub manifests: Vec<String>,
    /// A built-in action run after the manifests are applied (and undone by disabling).
    #[serde(default)]
    pub builtin: Option<Builtin>,
    /// What `kubelab addons list` shows the addon exposes.
    #[serde(default)]
    pub exposes: Exposes,
}

/// What kubelab itself does for an addon, beyond applying manifests.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq)]
#[serde(rename_all = "kebab-case")]
pub enum Builtin {
    /// Encrypt Secrets at rest with a new aescbc key, and re-encrypt the existing ones.
    SecretEncryption,
}

/// What an addon makes reachable, as `kubelab addons list` reports it.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Exposes {
    /// Ports of the server node whose host mappings are URLs (443: https, else http).
    #[serde(default)]
    pub ports: Vec<u16>,
    /// `namespace/name` of a Service whose LoadBalancer addresses are URLs on those ports.
    #[serde(default)]
    pub load_balancer: Option<String>,
    /// The IPAddressPools of `metallb-system` (their ranges and use).
    #[serde(default)]
    pub address_pools: bool,
}

/// The facts manifests are rendered with.
#[derive(Clone, Debug, serde::Serialize)]
pub struct ClusterFacts {
    pub name: String,
    pub nodes: usize,
    pub pod_subnet: String,
    pub service_subnet: String,
    /// The cluster DNS Service's address.
    pub dns_ip: String,
    pub cluster_domain: String,
    /// The image of kubelab's own pods (built on every node at boot).
    pub system_image: String,
    /// The cluster's Docker network (empty until known: `with_network`).
    pub network_subnet: String,
    /// The `metallb` addon's default pool, `A-B` (by default the top of the network).
    pub metallb_range: String,
}

impl ClusterFacts {
    pub fn new(name: &str, nodes: usize) -> ClusterFacts {
        ClusterFacts {
            name: name.to_owned(),
            nodes,
            pod_subnet: "10.244.0.0/16".into(),
            service_subnet: "10.96.0.0/12".into(),
            dns_ip: crate::node_init::CLUSTER_DNS.into(),
            cluster_domain: crate::node_init::CLUSTER_DOMAIN.into(),
            system_image: crate::node_init::containerd::system_image(),
            network_subnet: String::new(),
            metallb_range: String::new(),
        }
    }

    /// With the cluster's Docker network, and the metallb pool carved from it (its top 31
    /// addresses, which Docker's IPAM never hands out: `DockerProvider` creates the network
    /// with an `ip_range` of its lower half).
    pub fn with_network(mut self, subnet: &str) -> ClusterFacts {
        self.network_subnet = subnet.to_owned();
        self.metallb_range = kubelab_metallb::addresses::default_pool(subnet)
            .map(|r| r.to_string())
            .unwrap_or_default();
        self
    }
}

fn file(path: &str) -> Option<&'static str> {
    FILES
        .iter()
        .find(|(p, _)| *p == path)
        .map(|(_, text)| *text)
}

/// Parses one addon's metadata.
pub fn parse(path: &str, text: &str) -> Result<Addon> {
    let invalid = |reason: String| Error::Addon {
        name: path.to_owned(),
        reason,
    };
    let addon: Addon = serde_yaml::from_str(text).map_err(|e| invalid(e.to_string()))?;
    if addon.api_version != crate::profile::API_VERSION || addon.kind != "Addon" {
        return Err(invalid(format!(
            "expected apiVersion {} and kind Addon",
            crate::profile::API_VERSION
        )));
    }
    Ok(addon)
}

/// Every addon, sorted by name.
pub fn all() -> Vec<Addon> {
    let mut addons: Vec<Addon> = FILES
        .iter()
        .filter(|(p, _)| p.ends_with("/addon.yaml"))
        .map(|(p, text)| parse(p, text).expect("embedded addons are checked by tests"))
        .collect();
    addons.sort_by(|a, b| a.name.cmp(&b.name));
    addons
}

pub fn names() -> Vec<String> {
    all().into_iter().map(|a| a.name).collect()
}

pub fn find(name: &str) -> Option<Addon> {
    all().into_iter().find(|a| a.name == name)
}

/// The addon, or an error listing the known ones.
pub fn require(name: &str) -> Result<Addon> {
    find(name).ok_or_else(|| Error::Addon {
        name: name.to_owned(),
        reason: format!("no such addon; known: {}", names().join(", ")),
    })
}

/// The addon's manifests rendered for a cluster, as one multi-document YAML stream.
pub fn render(addon: &Addon, facts: &ClusterFacts) -> Result<String> {
    let mut context = tera::Context::new();
    context.insert("cluster", facts);
    let mut out = String::new();
    for manifest in &addon.manifests {
        let path = format!("{}/{manifest}", addon.name);
        let template = file(&path).ok_or_else(|| Error::Addon {
            name: addon.name.clone(),
            reason: format!("manifest {manifest} is not in the binary"),
        })?;
        let rendered =
            tera::Tera::one_off(template, &context, false).map_err(|e| Error::Addon {
                name: addon.name.clone(),
                reason: format!("cannot render {manifest}: {e:?}"),
            })?;
        out.push_str("---\n");
        out.push_str(&rendered);
        out.push('\n');
    }
    Ok(out)
}

/// The addons enabled by default, with `overrides` (name → on/off) applied, requirements
/// included.
pub fn enabled(overrides: &std::collections::BTreeMap<String, bool>) -> Result<Vec<Addon>> {
    let mut on: Vec<Addon> = Vec::new();
    for addon in all() {
        if *overrides.get(&addon.name).unwrap_or(&addon.default) {
            on.push(addon);
        }
    }
    let mut i = 0;
    while i < on.len() {
        for needed in on[i].requires.clone() {
            if !on.iter().any(|a| a.name == needed) {
                on.push(require(&needed)?);
            }
        }
        i += 1;
    }
    Ok(on)
}

/// Installs an addon's rendered manifests, then runs its built-in action; says what it did.
pub async fn install(client: &kube::Client, name: &str, manifests: &str) -> Result<String> {
    let applied = crate::apply::apply_all(client, manifests).await?;
    let mut done = format!("{applied} object{}", if applied == 1 { "" } else { "s" });
    if let Some(builtin) = find(name).and_then(|a| a.builtin) {
        done = match builtin {
            Builtin::SecretEncryption => {
                let report = encryption_call(client, "POST", "enable").await?;
                format!(
                    "secrets encrypted at rest ({} re-encrypted)",
                    report["reencrypted"]
                )
            }
        };
    }
    Ok(done)
}

/// Undoes an addon's built-in action, then deletes its objects; says what it did.
pub async fn uninstall(
    client: &kube::Client,
    addon: &Addon,
    facts: &ClusterFacts,
) -> Result<String> {
    let mut done = Vec::new();
    if let Some(Builtin::SecretEncryption) = addon.builtin {
        let report = encryption_call(client, "POST", "disable").await?;
        done.push(format!(
            "secrets written in plain again ({} rewritten; the keys stay in the server's configuration to read old backups)",
            report["reencrypted"]
        ));
    }
    let deleted = crate::apply::delete_all(client, &render(addon, facts)?).await?;
    if !addon.manifests.is_empty() || done.is_empty() {
        done.push(format!(
            "{deleted} object{} removed",
            if deleted == 1 { "" } else { "s" }
        ));
    }
    Ok(done.join("; "))
}

/// One of the API server's encryption endpoints (`/v1-kubelab/encryption/<what>`).
async fn encryption_call(
    client: &kube::Client,
    method: &str,
    what: &str,
) -> Result<serde_json::Value> {
    let request = http::Request::builder()
        .method(method)
        .uri(format!("/v1-kubelab/encryption/{what}"))
        .body(Vec::new())
        .map_err(|e| Error::Invalid(format!("encryption request: {e}")))?;
    let text = client.request_text(request).await.map_err(|e| {
        let reason = match e {
            kube::Error::Api(status) => status.message,
            other => other.to_string(),
        };
        Error::Addon {
            name: "secret-encryption".into(),
            reason: format!("the API server's encryption {what} failed: {reason}"),
        }
    })?;
    serde_json::from_str(&text).map_err(|e| Error::Invalid(format!("encryption {what}: {e}")))
}

/// Whether every object of the rendered manifests exists in the cluster (and the built-in
/// action's effect is in force).
pub async fn is_enabled(
    client: &kube::Client,
    addon: &Addon,
    facts: &ClusterFacts,
) -> Result<bool> {
    if let Some(Builtin::SecretEncryption) = addon.builtin {
        let status = encryption_call(client, "GET", "status").await?;
        if status["encryptionStatus"] != "Enabled" {
            return Ok(false);
        }
    }
    let objects = crate::apply::documents(&render(addon, facts)?)?;
    let discovery = Discovery::new(client.clone())
        .run()
        .await
        .map_err(|e| Error::Invalid(format!("API discovery: {e}")))?;
    for object in &objects {
        let Some(types) = &object.types else {
            return Ok(false);
        };
        let (group, version) = match types.api_version.split_once('/') {
            Some((g, v)) => (g, v),
            None => ("", types.api_version.as_str()),
        };
        let gvk = kube::core::GroupVersionKind::gvk(group, version, &types.kind);
        let Some((resource, caps)) = discovery.resolve_gvk(&gvk) else {
            return Ok(false);
        };
        let api: Api<DynamicObject> = match caps.scope {
            Scope::Namespaced => Api::namespaced_with(
                client.clone(),
                object.metadata.namespace.as_deref().unwrap_or("default"),
                &resource,
            ),
            Scope::Cluster => Api::all_with(client.clone(), &resource),
        };
        let name = object.metadata.name.clone().unwrap_or_default();
        match api.get_opt(&name).await {
            Ok(Some(_)) => {}
            Ok(None) => return Ok(false),
            Err(e) => {
                return Err(Error::Invalid(format!(
                    "cannot read {} {name}: {e}",
                    resource.kind
                )))
            }
        }
    }
    Ok(true)
}

/// The URLs of `exposes.ports`: through the server node's published ports (`127.0.0.1` for a
/// mapping on every host address), then on each LoadBalancer address.
fn urls(
    exposes: &Exposes,
    published: &[crate::provider::PortMapping],
    load_balancer_ips: &[String],
) -> Vec<String> {
    let scheme = |port: u16| if port == 443 { "https" } else { "http" };
    let mut out = Vec::new();
    for port in &exposes.ports {
        let mapping = published
            .iter()
            .find(|p| p.container_port == *port && p.protocol.eq_ignore_ascii_case("tcp"));
        if let Some(p) = mapping {
            let host = match p.host_ip.as_str() {
                "" | "0.0.0.0" => "127.0.0.1",
                ip => ip,
            };
            out.push(format!("{}://{host}:{}", scheme(*port), p.host_port));
        }
    }
    for ip in load_balancer_ips {
        for port in &exposes.ports {
            out.push(if matches!(port, 80 | 443) {
                format!("{}://{ip}", scheme(*port))
            } else {
                format!("{}://{ip}:{port}", scheme(*port))
            });
        }
    }
    out
}

/// What the addon exposes in a cluster, one entry each: URLs through the server node's
/// published ports and a Service's LoadBalancer addresses, address pools with their use.
pub async fn exposures(
    client: &kube::Client,
    addon: &Addon,
    state: &crate::cluster::ClusterState,
) -> Result<Vec<String>> {
    let published: Vec<crate::provider::PortMapping> = state
        .servers()
        .flat_map(|n| n.ports.iter().cloned())
        .collect();
    let mut load_balancer_ips = Vec::new();
    if let Some((namespace, name)) = addon
        .exposes
        .load_balancer
        .as_deref()
        .and_then(|s| s.split_once('/'))
    {
        let services: Api<k8s_openapi::api::core::v1::Service> =
            Api::namespaced(client.clone(), namespace);
        if let Ok(Some(svc)) = services.get_opt(name).await {
            load_balancer_ips = svc
                .status
                .and_then(|s| s.load_balancer)
                .and_then(|lb| lb.ingress)
                .unwrap_or_default()
                .into_iter()
                .filter_map(|i| i.ip)
                .collect();
        }
    }
    let mut out = urls(&addon.exposes, &published, &load_balancer_ips);
    if addon.exposes.address_pools {
        let resource = kube::discovery::ApiResource::from_gvk_with_plural(
            &kube::core::GroupVersionKind::gvk("metallb.io", "v1beta1", "IPAddressPool"),
            "ipaddresspools",
        );
        let pools: Api<DynamicObject> =
            Api::namespaced_with(client.clone(), "metallb-system", &resource);
        if let Ok(list) = pools.list(&Default::default()).await {
            for pool in list {
                let addresses: Vec<&str> = pool.data["spec"]["addresses"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|a| a.as_str())
                    .collect();
                let status = &pool.data["status"];
                let used = match (
                    status["assignedIPv4"].as_u64(),
                    status["availableIPv4"].as_u64(),
                ) {
                    (Some(a), Some(f)) => format!(" ({a} of {} used)", a + f),
                    _ => String::new(),
                };
                out.push(format!(
                    "pool {}: {}{used}",
                    pool.metadata.name.unwrap_or_default(),
                    addresses.join(",")
                ));
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every file in addons/ is compiled in, and every addon parses and renders.
    #[test]
    fn every_addon_file_is_embedded_parsed_and_rendered() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../addons");
        let mut on_disk = Vec::new();
        for dir in std::fs::read_dir(&root).unwrap() {
            let dir = dir.unwrap().path();
            if !dir.is_dir() {
                continue;
            }
            for f in std::fs::read_dir(&dir).unwrap() {
                let f = f.unwrap().path();
                let rel = f.strip_prefix(&root).unwrap().display().to_string();
                let text = std::fs::read_to_string(&f).unwrap();
                assert_eq!(
                    file(&rel),
                    Some(text.as_str()),
                    "{rel} is not (or not as is) in FILES"
                );
                on_disk.push(rel);
            }
        }
        assert_eq!(
            on_disk.len(),
            FILES.len(),
            "FILES lists a file that is not in addons/"
        );
        let facts = ClusterFacts::new("lab", 3).with_network("172.30.7.0/24");
        for addon in all() {
            assert!(!addon.description.is_empty());
            let yaml = render(&addon, &facts).unwrap();
            let objects = crate::apply::documents(&yaml).unwrap();
            assert!(
                !objects.is_empty() || addon.builtin.is_some(),
                "{} renders no object and has no built-in action",
                addon.name
            );
        }
        let coredns = render(&find("coredns").unwrap(), &facts).unwrap();
        assert!(find("coredns").unwrap().default);
        for expected in [
            "clusterIP: 10.96.0.10",
            "replicas: 2",
            "--cluster-domain=cluster.local",
            &format!(
                "image: \"{}\"",
                crate::node_init::containerd::system_image()
            ),
        ] {
            assert!(coredns.contains(expected), "{expected} not in {coredns}");
        }
        let one_node = render(&find("coredns").unwrap(), &ClusterFacts::new("lab", 1)).unwrap();
        assert!(one_node.contains("replicas: 1"), "{one_node}");
        let metallb = find("metallb").unwrap();
        assert!(!metallb.default && metallb.exposes.address_pools);
        let rendered = render(&metallb, &facts).unwrap();
        assert!(
            rendered.contains("- \"172.30.7.224-172.30.7.254\""),
            "{rendered}"
        );
        let storage = find("storage").unwrap();
        assert!(storage.default);
        assert!(render(&storage, &facts)
            .unwrap()
            .contains("dev.kubelab.cluster: \"lab\""));
    }

    #[test]
    fn exposed_urls_from_published_ports_and_load_balancer_addresses() {
        let exposes = Exposes {
            ports: vec![80, 443, 8080],
            load_balancer: Some("ns/svc".into()),
            address_pools: false,
        };
        let mapping =
            |host_ip: &str, host_port: u16, container_port: u16| crate::provider::PortMapping {
                host_ip: host_ip.into(),
                host_port,
                container_port,
                protocol: "tcp".into(),
            };
        let published = [
            mapping("0.0.0.0", 8081, 80),
            mapping("127.0.0.2", 8443, 443),
        ];
        assert_eq!(
            urls(&exposes, &published, &["172.30.7.224".into()]),
            [
                "http://127.0.0.1:8081",
                "https://127.0.0.2:8443",
                "http://172.30.7.224",
                "https://172.30.7.224",
                "http://172.30.7.224:8080",
            ]
        );
        assert!(urls(&Exposes::default(), &published, &[]).is_empty());
    }

    #[test]
    fn overrides_turn_defaults_off() {
        let none = enabled(&[("storage".to_owned(), false)].into_iter().collect()).unwrap();
        assert!(none.iter().all(|a| a.name != "storage"));
        let default = enabled(&Default::default()).unwrap();
        assert!(default.iter().any(|a| a.name == "storage"));
    }
}
