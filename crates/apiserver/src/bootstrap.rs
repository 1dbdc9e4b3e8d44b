//! Objects every cluster has from its first start: the four system namespaces and the
//! `kubernetes` Service with its Endpoints. Created through the registry like any other write,
//! and kept current on every start.

use std::net::IpAddr;

use kubelab_resources::catalog::{self, ResourceType};
use serde_json::{json, Value};

use crate::error::{ApiError, ApiResult};
use crate::registry::Registry;

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
    let endpoints = json!({
        "apiVersion": "v1",
        "kind": "Endpoints",
        "metadata": {
            "name": "kubernetes",
            "namespace": "default",
            "labels": {"endpointslice.kubernetes.io/skip-mirror": "true"},
        },
        "subsets": [{
            "addresses": [{"ip": advertise.to_string()}],
            "ports": [{"name": "https", "port": port, "protocol": "TCP"}],
        }],
    });
    create_or_update(
        reg,
        resource("endpoints")?,
        Some("default"),
        endpoints,
        &["subsets"],
    )
    .await
}
