//! Discovery documents, aggregated (apidiscovery.k8s.io/v2) and legacy, built from the catalog.

use kubelab_resources::catalog::{self, ResourceType};
use serde_json::{json, Value};

pub const AGGREGATED_CONTENT_TYPE: &str =
    "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList";

/// Whether the client accepts the aggregated v2 document.
pub fn wants_aggregated(accept: &str) -> bool {
    accept.split(',').any(|media| {
        let params: Vec<&str> = media.split(';').map(str::trim).collect();
        params.first() == Some(&"application/json")
            && params.contains(&"g=apidiscovery.k8s.io")
            && params.contains(&"v=v2")
            && params.contains(&"as=APIGroupDiscoveryList")
    })
}

/// Group-versions in priority order (the order of first appearance in the catalog), core
/// excluded.
fn group_versions() -> Vec<(&'static str, &'static str)> {
    let mut out: Vec<(&str, &str)> = Vec::new();
    for rt in catalog::builtin() {
        if !rt.group.is_empty() && !out.contains(&(rt.group, rt.version)) {
            out.push((rt.group, rt.version));
        }
    }
    out
}

fn resources_of<'a>(
    group: &'a str,
    version: &'a str,
) -> impl Iterator<Item = &'static ResourceType> + 'a {
    catalog::builtin()
        .iter()
        .filter(move |rt| rt.group == group && rt.version == version)
}

fn aggregated_resource(rt: &ResourceType) -> Value {
    let subresources: Vec<Value> = rt
        .subresources
        .iter()
        .map(|s| {
            json!({
                "subresource": s.name,
                "responseKind": {"group": s.group, "version": s.version, "kind": s.kind},
                "verbs": s.verbs,
            })
        })
        .collect();
    let mut r = json!({
        "resource": rt.plural,
        "responseKind": {"group": rt.group, "version": rt.version, "kind": rt.kind},
        "scope": if rt.namespaced { "Namespaced" } else { "Cluster" },
        "singularResource": rt.singular,
        "verbs": rt.verbs(),
    });
    if !rt.short_names.is_empty() {
        r["shortNames"] = json!(rt.short_names);
    }
    if !rt.categories.is_empty() {
        r["categories"] = json!(rt.categories);
    }
    if !subresources.is_empty() {
        r["subresources"] = json!(subresources);
    }
    r
}

fn aggregated_group(name: &str, versions: &[&str]) -> Value {
    json!({
        "metadata": {"name": name, "creationTimestamp": null},
        "versions": versions.iter().map(|v| json!({
            "version": v,
            "freshness": "Current",
            "resources": resources_of(name, v).map(aggregated_resource).collect::<Vec<_>>(),
        })).collect::<Vec<_>>(),
    })
}

fn versions_of(group: &str) -> Vec<&'static str> {
    group_versions()
        .into_iter()
        .filter(|(g, _)| *g == group)
        .map(|(_, v)| v)
        .collect()
}

fn distinct_groups() -> Vec<&'static str> {
    let mut groups: Vec<&str> = Vec::new();
    for (g, _) in group_versions() {
        if !groups.contains(&g) {
            groups.push(g);
        }
    }
    groups
}

/// `/api` as aggregated discovery.
pub fn aggregated_core() -> Value {
    json!({
        "kind": "APIGroupDiscoveryList",
        "apiVersion": "apidiscovery.k8s.io/v2",
        "metadata": {},
        "items": [aggregated_group("", &["v1"])],
    })
}

/// `/apis` as aggregated discovery.
pub fn aggregated_groups() -> Value {
    let items: Vec<Value> = distinct_groups()
        .into_iter()
        .map(|g| aggregated_group(g, &versions_of(g)))
        .collect();
    json!({
        "kind": "APIGroupDiscoveryList",
        "apiVersion": "apidiscovery.k8s.io/v2",
        "metadata": {},
        "items": items,
    })
}

/// `/api` legacy.
pub fn api_versions(server_address: &str) -> Value {
    json!({
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": server_address}],
    })
}

fn api_group(group: &str) -> Value {
    let versions: Vec<Value> = versions_of(group)
        .iter()
        .map(|v| json!({"groupVersion": format!("{group}/{v}"), "version": v}))
        .collect();
    json!({
        "name": group,
        "versions": versions,
        "preferredVersion": versions.first().cloned().unwrap_or(Value::Null),
    })
}

/// `/apis` legacy.
pub fn api_group_list() -> Value {
    json!({
        "kind": "APIGroupList",
        "apiVersion": "v1",
        "groups": distinct_groups().into_iter().map(api_group).collect::<Vec<_>>(),
    })
}

/// `/apis/<group>` legacy, or None for an unknown group.
pub fn group(group: &str) -> Option<Value> {
    if versions_of(group).is_empty() {
        return None;
    }
    let mut g = api_group(group);
    g["kind"] = json!("APIGroup");
    g["apiVersion"] = json!("v1");
    Some(g)
}

/// `/api/v1` or `/apis/<group>/<version>`, or None for an unknown group-version.
pub fn resource_list(group: &str, version: &str) -> Option<Value> {
    let mut resources = Vec::new();
    for rt in resources_of(group, version) {
        let mut r = json!({
            "name": rt.plural,
            "singularName": rt.singular,
            "namespaced": rt.namespaced,
            "kind": rt.kind,
            "verbs": rt.verbs(),
        });
        if !rt.short_names.is_empty() {
            r["shortNames"] = json!(rt.short_names);
        }
        if !rt.categories.is_empty() {
            r["categories"] = json!(rt.categories);
        }
        resources.push(r);
        for s in rt.subresources {
            let mut sr = json!({
                "name": format!("{}/{}", rt.plural, s.name),
                "singularName": "",
                "namespaced": rt.namespaced,
                "kind": s.kind,
                "verbs": s.verbs,
            });
            if s.group != rt.group || s.version != rt.version {
                sr["group"] = json!(s.group);
                sr["version"] = json!(s.version);
            }
            resources.push(sr);
        }
    }
    if resources.is_empty() {
        return None;
    }
    let group_version = if group.is_empty() {
        version.to_string()
    } else {
        format!("{group}/{version}")
    };
    Some(json!({
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": group_version,
        "resources": resources,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aggregated_accept_detection() {
        assert!(wants_aggregated("application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList,application/json"));
        assert!(!wants_aggregated("application/json"));
    }

    #[test]
    fn every_resource_has_a_response_kind() {
        let doc = aggregated_groups();
        for g in doc["items"].as_array().unwrap() {
            for v in g["versions"].as_array().unwrap() {
                for r in v["resources"].as_array().unwrap() {
                    assert!(!r["responseKind"]["kind"].as_str().unwrap().is_empty());
                }
            }
        }
        assert!(resource_list("apps", "v1").is_some());
        assert!(resource_list("nope", "v1").is_none());
    }
}
