//! The Node authorizer and NodeRestriction admission: a node credential (user
//! `system:node:<name>` in group `system:nodes`) may change only its own Node and Lease and
//! the pods bound to it, and read only the Secrets, ConfigMaps, PersistentVolumeClaims,
//! PersistentVolumes and ServiceAccounts (tokens) that pods bound to it use.
//!
//! Upstream keeps a graph of pod → node edges; here the relationship is read from the stored
//! pods of the object's namespace when it is asked about (a node's reads are few).

use kubelab_pki::Identity;
use kubelab_resources::catalog::{self, ResourceType};
use serde_json::Value;

use super::Attributes;
use crate::error::{ApiError, ApiResult, Details};
use crate::registry::{ListOptions, Registry};

pub const NODES_GROUP: &str = "system:nodes";
pub const NODE_LEASE_NAMESPACE: &str = "kube-node-lease";

pub enum Decision {
    Allow,
    NoOpinion(String),
}

/// The node a credential belongs to.
pub fn node_name(id: &Identity) -> Option<&str> {
    let name = id.user.strip_prefix("system:node:")?;
    (!name.is_empty() && id.groups.iter().any(|g| g == NODES_GROUP)).then_some(name)
}

/// What a node may do regardless of which object (upstream's `NodeRules`), except the
/// resources handled by relationship below.
fn static_rule_allows(a: &Attributes) -> bool {
    let read = matches!(a.verb.as_str(), "get" | "list" | "watch");
    match (
        a.api_group.as_str(),
        a.resource.as_str(),
        a.subresource.as_str(),
    ) {
        ("", "services" | "endpoints", "") => read,
        ("discovery.k8s.io", "endpointslices", "") => read,
        ("", "events", "") | ("events.k8s.io", "events", "") => {
            matches!(a.verb.as_str(), "create" | "update" | "patch")
        }
        ("certificates.k8s.io", "certificatesigningrequests", "") => {
            matches!(a.verb.as_str(), "create" | "get" | "list" | "watch")
        }
        ("authentication.k8s.io", "tokenreviews", "")
        | ("authorization.k8s.io", "subjectaccessreviews", "")
        | ("authorization.k8s.io", "localsubjectaccessreviews", "") => a.verb == "create",
        ("storage.k8s.io", "csidrivers" | "storageclasses" | "csinodes", "") => read,
        _ => false,
    }
}

fn no_relationship(node: &str) -> Decision {
    Decision::NoOpinion(format!(
        "no relationship found between node '{node}' and this object"
    ))
}

pub async fn authorize(registry: &Registry, id: &Identity, a: &Attributes) -> Decision {
    let Some(node) = node_name(id) else {
        return Decision::NoOpinion(String::new());
    };
    if !a.resource_request {
        return Decision::NoOpinion(String::new());
    }
    if static_rule_allows(a) {
        return Decision::Allow;
    }
    let read = matches!(a.verb.as_str(), "get" | "list" | "watch");
    let ns = a.namespace.as_str();
    let allow = |ok: bool| {
        if ok {
            Decision::Allow
        } else {
            no_relationship(node)
        }
    };
    match (
        a.api_group.as_str(),
        a.resource.as_str(),
        a.subresource.as_str(),
    ) {
        ("", "nodes", _) => match a.verb.as_str() {
            "get" | "list" | "watch" | "create" => Decision::Allow,
            "update" | "patch" | "delete" => allow(a.name == node),
            _ => no_relationship(node),
        },
        ("coordination.k8s.io", "leases", "") if ns == NODE_LEASE_NAMESPACE => {
            match a.verb.as_str() {
                "create" => Decision::Allow,
                "get" | "update" | "patch" | "delete" => allow(a.name == node),
                _ => no_relationship(node),
            }
        }
        ("", "pods", "" | "status") if read => Decision::Allow,
        // NodeRestriction checks the pod's node on create.
        ("", "pods", "") if a.verb == "create" => Decision::Allow,
        ("", "pods", sub)
            if (sub.is_empty() && a.verb == "delete")
                || (sub == "status" && matches!(a.verb.as_str(), "update" | "patch"))
                || (sub == "eviction" && a.verb == "create") =>
        {
            allow(pod_on_node(registry, ns, &a.name, node).await)
        }
        ("", "secrets" | "configmaps" | "persistentvolumeclaims", "")
            if a.verb == "get" || (read && !a.name.is_empty()) =>
        {
            let kind = a.resource.as_str();
            allow(
                pods_on_node(registry, ns, node)
                    .await
                    .iter()
                    .any(|pod| references(pod, kind, &a.name)),
            )
        }
        ("", "persistentvolumes", "") if a.verb == "get" => {
            allow(volume_used_on_node(registry, &a.name, node).await)
        }
        ("", "serviceaccounts", "") if a.verb == "get" => allow(
            pods_on_node(registry, ns, node)
                .await
                .iter()
                .any(|pod| service_account(pod) == a.name),
        ),
        ("", "serviceaccounts", "token") if a.verb == "create" => allow(
            pods_on_node(registry, ns, node)
                .await
                .iter()
                .any(|pod| service_account(pod) == a.name),
        ),
        _ => no_relationship(node),
    }
}

fn service_account(pod: &Value) -> &str {
    pod.pointer("/spec/serviceAccountName")
        .and_then(Value::as_str)
        .unwrap_or("default")
}

async fn pod_on_node(registry: &Registry, ns: &str, name: &str, node: &str) -> bool {
    let Some(rt) = catalog::find("", "v1", "pods") else {
        return false;
    };
    match registry.get(rt, Some(ns), name).await {
        Ok(pod) => pod.pointer("/spec/nodeName").and_then(Value::as_str) == Some(node),
        Err(_) => false,
    }
}

/// Pods bound to `node` in `ns` ("" = every namespace).
async fn pods_on_node(registry: &Registry, ns: &str, node: &str) -> Vec<Value> {
    let Some(rt) = catalog::find("", "v1", "pods") else {
        return Vec::new();
    };
    let ns = (!ns.is_empty()).then_some(ns);
    match registry.list(rt, ns, &ListOptions::default()).await {
        Ok(page) => page
            .items
            .into_iter()
            .filter(|p| p.pointer("/spec/nodeName").and_then(Value::as_str) == Some(node))
            .collect(),
        Err(_) => Vec::new(),
    }
}

async fn volume_used_on_node(registry: &Registry, pv: &str, node: &str) -> bool {
    let Some(pvcs) = catalog::find("", "v1", "persistentvolumeclaims") else {
        return false;
    };
    for pod in pods_on_node(registry, "", node).await {
        let ns = pod
            .pointer("/metadata/namespace")
            .and_then(Value::as_str)
            .unwrap_or("");
        for claim in referenced(&pod, "persistentvolumeclaims") {
            if let Ok(pvc) = registry.get(pvcs, Some(ns), &claim).await {
                if pvc.pointer("/spec/volumeName").and_then(Value::as_str) == Some(pv) {
                    return true;
                }
            }
        }
    }
    false
}

fn references(pod: &Value, kind: &str, name: &str) -> bool {
    referenced(pod, kind).iter().any(|n| n == name)
}

/// The names of the Secrets, ConfigMaps or PVCs (`kind` is the plural) a pod uses: volumes
/// (projected sources too), env and envFrom of every container, imagePullSecrets.
fn referenced(pod: &Value, kind: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut push = |v: Option<&Value>| {
        if let Some(s) = v.and_then(Value::as_str) {
            out.push(s.to_string());
        }
    };
    let spec = pod.get("spec").cloned().unwrap_or(Value::Null);
    let arr = |v: &Value, key: &str| {
        v.get(key)
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default()
    };
    for vol in arr(&spec, "volumes") {
        match kind {
            "secrets" => {
                push(vol.pointer("/secret/secretName"));
                for src in arr(vol.get("projected").unwrap_or(&Value::Null), "sources") {
                    push(src.pointer("/secret/name"));
                }
            }
            "configmaps" => {
                push(vol.pointer("/configMap/name"));
                for src in arr(vol.get("projected").unwrap_or(&Value::Null), "sources") {
                    push(src.pointer("/configMap/name"));
                }
            }
            _ => push(vol.pointer("/persistentVolumeClaim/claimName")),
        }
    }
    if kind == "secrets" {
        for s in arr(&spec, "imagePullSecrets") {
            push(s.get("name"));
        }
    }
    for list in ["initContainers", "containers", "ephemeralContainers"] {
        for c in arr(&spec, list) {
            for e in arr(&c, "env") {
                match kind {
                    "secrets" => push(e.pointer("/valueFrom/secretKeyRef/name")),
                    "configmaps" => push(e.pointer("/valueFrom/configMapKeyRef/name")),
                    _ => {}
                }
            }
            for e in arr(&c, "envFrom") {
                match kind {
                    "secrets" => push(e.pointer("/secretRef/name")),
                    "configmaps" => push(e.pointer("/configMapRef/name")),
                    _ => {}
                }
            }
        }
    }
    out
}

fn restricted(rt: &ResourceType, name: &str, message: String) -> ApiError {
    let qualified = if rt.group.is_empty() {
        rt.plural.to_string()
    } else {
        format!("{}.{}", rt.plural, rt.group)
    };
    ApiError::Forbidden {
        message: format!("{qualified} {name:?} is forbidden: {message}"),
        details: Some(Details {
            group: rt.group.into(),
            kind: rt.plural.into(),
            name: name.into(),
        }),
    }
}

/// NodeRestriction: what a node writes must be its own.
pub fn admit(
    id: &Identity,
    rt: &ResourceType,
    ns: Option<&str>,
    current: Option<&Value>,
    new: &Value,
) -> ApiResult<()> {
    let Some(node) = node_name(id) else {
        return Ok(());
    };
    let name = crate::object::name(new);
    match (rt.group, rt.plural) {
        ("", "nodes") if name != node => Err(restricted(
            rt,
            name,
            format!("node {node:?} is not allowed to modify node {name:?}"),
        )),
        ("", "pods") => {
            let bound =
                |p: &Value| p.pointer("/spec/nodeName").and_then(Value::as_str) == Some(node);
            if !bound(new) || current.is_some_and(|c| !bound(c)) {
                return Err(restricted(
                    rt,
                    name,
                    format!("node {node:?} can only create or change pods with spec.nodeName set to itself"),
                ));
            }
            Ok(())
        }
        ("coordination.k8s.io", "leases") if ns != Some(NODE_LEASE_NAMESPACE) || name != node => {
            Err(restricted(
                rt,
                name,
                "can only access node lease with the same name as the requesting node".to_string(),
            ))
        }
        _ => Ok(()),
    }
}

/// NodeRestriction for TokenRequests: a node may only ask for tokens bound to a pod that is
/// bound to it and runs as that service account.
pub async fn admit_token_request(
    registry: &Registry,
    id: &Identity,
    ns: &str,
    account: &str,
    request: &Value,
) -> ApiResult<()> {
    let Some(node) = node_name(id) else {
        return Ok(());
    };
    let refused = |message: String| {
        let rt = catalog::find("", "v1", "serviceaccounts").expect("serviceaccounts are served");
        Err(restricted(rt, account, message))
    };
    let bound = request.pointer("/spec/boundObjectRef");
    let kind = bound.and_then(|b| b.get("kind")).and_then(Value::as_str);
    let pod_name = bound
        .and_then(|b| b.get("name"))
        .and_then(Value::as_str)
        .unwrap_or("");
    if kind != Some("Pod") || pod_name.is_empty() {
        return refused(format!(
            "node {node:?} can only create tokens bound to a pod"
        ));
    }
    let Some(pods) = catalog::find("", "v1", "pods") else {
        return refused("pods are not served".into());
    };
    let pod = match registry.get(pods, Some(ns), pod_name).await {
        Ok(pod) => pod,
        Err(ApiError::NotFound { .. }) => {
            return refused(format!(
                "node {node:?} can only create tokens for its own pods"
            ))
        }
        Err(e) => return Err(e),
    };
    let on_node = pod.pointer("/spec/nodeName").and_then(Value::as_str) == Some(node);
    if !on_node || service_account(&pod) != account {
        return refused(format!(
            "node {node:?} can only create tokens for the service account of its own pods"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn pods_reference_what_they_mount_and_read() {
        let pod = json!({"spec": {
            "volumes": [
                {"name": "a", "secret": {"secretName": "s1"}},
                {"name": "b", "configMap": {"name": "c1"}},
                {"name": "c", "persistentVolumeClaim": {"claimName": "data"}},
                {"name": "d", "projected": {"sources": [{"secret": {"name": "s2"}}, {"configMap": {"name": "kube-root-ca.crt"}}]}}
            ],
            "imagePullSecrets": [{"name": "pull"}],
            "containers": [{"name": "x",
                "env": [{"name": "E", "valueFrom": {"secretKeyRef": {"name": "s3", "key": "k"}}}],
                "envFrom": [{"configMapRef": {"name": "c2"}}]}]
        }});
        assert_eq!(referenced(&pod, "secrets"), ["s1", "s2", "pull", "s3"]);
        assert_eq!(
            referenced(&pod, "configmaps"),
            ["c1", "kube-root-ca.crt", "c2"]
        );
        assert_eq!(referenced(&pod, "persistentvolumeclaims"), ["data"]);
    }

    #[test]
    fn only_node_credentials_are_nodes() {
        let node = Identity {
            user: "system:node:n1".into(),
            groups: vec![NODES_GROUP.into()],
        };
        assert_eq!(node_name(&node), Some("n1"));
        let impostor = Identity {
            user: "system:node:n1".into(),
            groups: vec![],
        };
        assert_eq!(node_name(&impostor), None);
    }
}
