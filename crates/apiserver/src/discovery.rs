//! Discovery documents, aggregated (apidiscovery.k8s.io/v2) and legacy, built from the catalog.

use kubelab_resources::catalog::ResourceType;

/// Every served type, built-in first (in discovery order), then custom ones.
pub type Types<'a> = &'a [&'static ResourceType];
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
fn group_versions(types: Types) -> Vec<(&'static str, &'static str)> {
    let mut out: Vec<(&str, &str)> = Vec::new();
    for rt in types {
        if !rt.group.is_empty() && !out.contains(&(rt.group, rt.version)) {
            out.push((rt.group, rt.version));
        }
    }
    out
}

fn resources_of<'a>(
    types: Types<'a>,
    group: &'a str,
    version: &'a str,
) -> impl Iterator<Item = &'static ResourceType> + 'a {
    types
        .iter()
        .copied()
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

fn aggregated_group(types: Types, name: &str, versions: &[&str]) -> Value {
    json!({
        "metadata": {"name": name, "creationTimestamp": null},
        "versions": versions.iter().map(|v| json!({
            "version": v,
            "freshness": "Current",
            "resources": resources_of(types, name, v).map(aggregated_resource).collect::<Vec<_>>(),
        })).collect::<Vec<_>>(),
    })
}

fn versions_of(types: Types, group: &str) -> Vec<&'static str> {
    group_versions(types)
        .into_iter()
        .filter(|(g, _)| *g == group)
        .map(|(_, v)| v)
        .collect()
}

fn distinct_groups(types: Types) -> Vec<&'static str> {
    let mut groups: Vec<&str> = Vec::new();
    for (g, _) in group_versions(types) {
        if !groups.contains(&g) {
            groups.push(g);
        }
    }
    groups
}

/// `/api` as aggregated discovery.
pub fn aggregated_core(types: Types) -> Value {
    json!({
        "kind": "APIGroupDiscoveryList",
        "apiVersion": "apidiscovery.k8s.io/v2",
        "metadata": {},
        "items": [aggregated_group(types, "", &["v1"])],
    })
}

/// `/apis` as aggregated discovery.
pub fn aggregated_groups(types: Types) -> Value {
    let items: Vec<Value> = distinct_groups(types)
        .into_iter()
        .map(|g| aggregated_group(types, g, &versions_of(types, g)))
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

fn api_group(types: Types, group: &str) -> Value {
    let versions: Vec<Value> = versions_of(types, group)
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
pub fn api_group_list(types: Types) -> Value {
    json!({
        "kind": "APIGroupList",
        "apiVersion": "v1",
        "groups": distinct_groups(types).into_iter().map(|g| api_group(types, g)).collect::<Vec<_>>(),
    })
}

/// `/apis/<group>` legacy, or None for an unknown group.
pub fn group(types: Types, group: &str) -> Option<Value> {
    if versions_of(types, group).is_empty() {
        return None;
    }
    let mut g = api_group(types, group);
    g["kind"] = json!("APIGroup");
    g["apiVersion"] = json!("v1");
    Some(g)
}

/// `/api/v1` or `/apis/<group>/<version>`, or None for an unknown group-version.
pub fn resource_list(types: Types, group: &str, version: &str) -> Option<Value> {
    let mut resources = Vec::new();
    for rt in resources_of(types, group, version) {
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

    fn builtin() -> Vec<&'static ResourceType> {
        kubelab_resources::catalog::builtin().iter().collect()
    }

    #[test]
    fn every_resource_has_a_response_kind() {
        let types = builtin();
        let doc = aggregated_groups(&types);
        for g in doc["items"].as_array().unwrap() {
            for v in g["versions"].as_array().unwrap() {
                for r in v["resources"].as_array().unwrap() {
                    assert!(!r["responseKind"]["kind"].as_str().unwrap().is_empty());
                }
            }
        }
        assert!(resource_list(&types, "apps", "v1").is_some());
        assert!(resource_list(&types, "nope", "v1").is_none());
    }
}
