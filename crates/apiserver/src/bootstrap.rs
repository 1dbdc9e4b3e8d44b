//! Objects every cluster has from its first start: the four system namespaces and the
//! `kubernetes` Service with its Endpoints. Created through the registry like any other write,
//! and kept current on every start; the Endpoints list every live API server on the store
//! (see [`run_endpoint_reconciler`]).

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use kubelab_resources::catalog::{self, ResourceType};
use serde_json::{json, Value};

use crate::error::{ApiError, ApiResult};
use crate::registry::{DeleteOptions, ListOptions, Registry};

pub const SYSTEM_NAMESPACES: [&str; 4] =
    ["default", "kube-system", "kube-public", "kube-node-lease"];

fn resource(plural: &str) -> ApiResult<&'static ResourceType> {
    catalog::find("", "v1", plural)
        .ok_or_else(|| ApiError::internal(format!("{plural} missing from the catalog")))
}

/// Create `obj` unless it exists; when `keep_current` is false, replace its spec/subsets.
async fn create_or_update(
    reg: &Registry,
    rt: &ResourceType,
    ns: Option<&str>,
    obj: Value,
    fields: &[&str],
) -> ApiResult<()> {
    let name = crate::object::name(&obj).to_string();
    match reg.create(rt, ns, obj.clone(), false).await {
        Ok(_) => Ok(()),
        Err(ApiError::AlreadyExists { .. }) if fields.is_empty() => Ok(()),
        Err(ApiError::AlreadyExists { .. }) => reg
            .update(rt, ns, &name, None, false, |current| {
                let mut next = current.clone();
                for f in fields {
                    next[*f] = obj[*f].clone();
                }
                if let Some(m) = crate::object::metadata_mut(&mut next) {
                    m.remove("resourceVersion");
                }
                Ok(next)
            })
            .await
            .map(|_| ()),
        Err(e) => Err(e),
    }
}

pub async fn ensure(
    reg: &Registry,
    advertise: IpAddr,
    port: u16,
    service_ip: std::net::Ipv4Addr,
) -> ApiResult<()> {
    let service_ip = service_ip.to_string();
    let namespaces = resource("namespaces")?;
    for ns in SYSTEM_NAMESPACES {
        let obj = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}});
        create_or_update(reg, namespaces, None, obj, &[]).await?;
    }
    let service = json!({
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {
            "name": "kubernetes",
            "namespace": "default",
            "labels": {"component": "apiserver", "provider": "kubernetes"},
        },
        "spec": {
            "type": "ClusterIP",
            "clusterIP": service_ip,
            "clusterIPs": [service_ip],
            "ports": [{"name": "https", "port": 443, "protocol": "TCP", "targetPort": port}],
            "sessionAffinity": "None",
        },
    });
    create_or_update(reg, resource("services")?, Some("default"), service, &[]).await?;
    reconcile_endpoints(reg, Some(SocketAddr::new(advertise, port))).await
}

/// Label of the Leases by which API servers announce their address.
pub const ENDPOINT_LEASE_LABEL: &str = "kubelab.dev/apiserver-endpoint";
/// Prefix of their names: `kubelab-apiserver-<ip>-<port>` (dots and colons as dashes).
const ENDPOINT_LEASE_PREFIX: &str = "kubelab-apiserver-";
/// How often each API server renews its Lease and rewrites the `kubernetes` Endpoints.
pub const ENDPOINT_RENEW_INTERVAL: Duration = Duration::from_secs(10);
/// A server whose Lease is older than this is dropped from the Endpoints (upstream's master
/// leases live 15 s with a 10 s reconcile; we are a little more patient).
pub const ENDPOINT_LEASE_SECONDS: i64 = 30;

/// Every API server on the store keeps the `default/kubernetes` Endpoints listing every live
/// server, as upstream's lease endpoint reconciler does: each renews a Lease
/// `kube-system/kubelab-apiserver-<ip>-<port>` (holderIdentity `ip:port`) every
/// [`ENDPOINT_RENEW_INTERVAL`], and writes the Endpoints from the Leases renewed within
/// [`ENDPOINT_LEASE_SECONDS`] (one subset per port, so servers on one host with different ports
/// all appear). Node agents learn the servers from there (their client-side load balancer).
/// Runs until the task is aborted.
pub async fn run_endpoint_reconciler(reg: Arc<Registry>, own: SocketAddr) {
    let mut ticker = tokio::time::interval(ENDPOINT_RENEW_INTERVAL);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ticker.tick().await; // `ensure` just did the first round
    loop {
        ticker.tick().await;
        if let Err(error) = reconcile_endpoints(&reg, Some(own)).await {
            tracing::warn!(%error, "cannot update the kubernetes Endpoints");
        }
    }
}

/// Graceful shutdown: forget this server's Lease and take it out of the Endpoints at once.
pub async fn remove_endpoint(reg: &Registry, own: SocketAddr) -> ApiResult<()> {
    let leases = lease_type()?;
    match reg
        .delete(
            leases,
            Some(LEASE_NAMESPACE),
            &endpoint_lease_name(own),
            &DeleteOptions::default(),
        )
        .await
    {
        Ok(_) | Err(ApiError::NotFound { .. }) => {}
        Err(error) => return Err(error),
    }
    reconcile_endpoints(reg, None).await
}

const LEASE_NAMESPACE: &str = "kube-system";

fn lease_type() -> ApiResult<&'static ResourceType> {
    catalog::find("coordination.k8s.io", "v1", "leases")
        .ok_or_else(|| ApiError::internal("leases missing from the catalog"))
}

fn endpoint_lease_name(addr: SocketAddr) -> String {
    let ip: String = addr
        .ip()
        .to_string()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    format!("{ENDPOINT_LEASE_PREFIX}{ip}-{}", addr.port())
}

/// Renew `own`'s Lease (when given), drop expired Leases, and write the Endpoints if they
/// changed.
async fn reconcile_endpoints(reg: &Registry, own: Option<SocketAddr>) -> ApiResult<()> {
    let leases = lease_type()?;
    let now = jiff::Timestamp::now();
    if let Some(own) = own {
        let lease = json!({
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": {
                "name": endpoint_lease_name(own),
                "namespace": LEASE_NAMESPACE,
                "labels": {ENDPOINT_LEASE_LABEL: "true"},
            },
            "spec": {
                "holderIdentity": own.to_string(),
                "leaseDurationSeconds": ENDPOINT_LEASE_SECONDS,
                "renewTime": now.strftime("%Y-%m-%dT%H:%M:%S.%6fZ").to_string(),
            },
        });
        create_or_update(reg, leases, Some(LEASE_NAMESPACE), lease, &["spec"]).await?;
    }
    let listed = reg
        .list(leases, Some(LEASE_NAMESPACE), &ListOptions::default())
        .await?;
    let mut live: BTreeSet<(u16, IpAddr)> = BTreeSet::new();
    if let Some(own) = own {
        live.insert((own.port(), own.ip()));
    }
    for lease in &listed.items {
        if lease["metadata"]["labels"][ENDPOINT_LEASE_LABEL] != "true" {
            continue;
        }
        let Some(addr) = lease["spec"]["holderIdentity"]
            .as_str()
            .and_then(|s| s.parse::<SocketAddr>().ok())
        else {
            continue;
        };
        let renewed = lease["spec"]["renewTime"]
            .as_str()
            .and_then(|s| s.parse::<jiff::Timestamp>().ok());
        let fresh =
            renewed.is_some_and(|at| now.duration_since(at).as_secs() < ENDPOINT_LEASE_SECONDS);
        if fresh {
            live.insert((addr.port(), addr.ip()));
        } else if Some(addr) != own {
            let name = crate::object::name(lease).to_string();
            tracing::info!(server = %addr, "API server lease expired; removing it from the kubernetes Endpoints");
            match reg
                .delete(
                    leases,
                    Some(LEASE_NAMESPACE),
                    &name,
                    &DeleteOptions::default(),
                )
                .await
            {
                Ok(_) | Err(ApiError::NotFound { .. }) => {}
                Err(error) => {
                    tracing::debug!(%error, lease = %name, "cannot delete an expired lease")
                }
            }
        }
    }
    write_endpoints(reg, &live).await
}

/// One subset per port, addresses in order.
fn endpoint_subsets(live: &BTreeSet<(u16, IpAddr)>) -> Value {
    let mut by_port: BTreeMap<u16, Vec<Value>> = BTreeMap::new();
    for (port, ip) in live {
        by_port
            .entry(*port)
            .or_default()
            .push(json!({"ip": ip.to_string()}));
    }
    Value::Array(
        by_port
            .into_iter()
            .map(|(port, addresses)| {
                json!({
                    "addresses": addresses,
                    "ports": [{"name": "https", "port": port, "protocol": "TCP"}],
                })
            })
            .collect(),
    )
}

async fn write_endpoints(reg: &Registry, live: &BTreeSet<(u16, IpAddr)>) -> ApiResult<()> {
    let rt = resource("endpoints")?;
    let subsets = endpoint_subsets(live);
    match reg.get(rt, Some("default"), "kubernetes").await {
        Ok(current) if current["subsets"] == subsets => return Ok(()),
        Ok(_) | Err(ApiError::NotFound { .. }) => {}
        Err(error) => return Err(error),
    }
    let endpoints = json!({
        "apiVersion": "v1",
        "kind": "Endpoints",
        "metadata": {
            "name": "kubernetes",
            "namespace": "default",
            "labels": {"endpointslice.kubernetes.io/skip-mirror": "true"},
        },
        "subsets": subsets,
    });
    create_or_update(reg, rt, Some("default"), endpoints, &["subsets"]).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_subset_per_port() {
        let live: BTreeSet<(u16, IpAddr)> = [
            (7443, "127.0.0.1".parse().unwrap()),
            (6443, "10.0.0.2".parse().unwrap()),
            (6443, "10.0.0.1".parse().unwrap()),
        ]
        .into_iter()
        .collect();
        assert_eq!(
            endpoint_subsets(&live),
            json!([
                {"addresses": [{"ip": "10.0.0.1"}, {"ip": "10.0.0.2"}],
                 "ports": [{"name": "https", "port": 6443, "protocol": "TCP"}]},
                {"addresses": [{"ip": "127.0.0.1"}],
                 "ports": [{"name": "https", "port": 7443, "protocol": "TCP"}]},
            ])
        );
    }

    #[test]
    fn lease_names_are_valid_object_names() {
        assert_eq!(
            endpoint_lease_name("127.0.0.1:6443".parse().unwrap()),
            "kubelab-apiserver-127-0-0-1-6443"
        );
        assert_eq!(
            endpoint_lease_name("[fd00::1]:6443".parse().unwrap()),
            "kubelab-apiserver-fd00--1-6443"
        );
    }
}
