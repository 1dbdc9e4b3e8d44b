use std::sync::OnceLock;

use serde_json::{json, Value};

use super::*;

fn openapi() -> &'static OpenApi {
    static OPENAPI: OnceLock<OpenApi> = OnceLock::new();
    OPENAPI.get_or_init(|| match OpenApi::build() {
        Ok(openapi) => openapi,
        Err(error) => panic!("build: {error}"),
    })
}

fn document(gv_path: &str) -> Value {
    let (bytes, _) = openapi().document(gv_path).expect("document served");
    serde_json::from_slice(bytes).expect("document is JSON")
}

#[test]
fn index_lists_every_catalog_group_version() {
    let index = openapi().index();
    let paths = index["paths"].as_object().unwrap();
    for rt in catalog::builtin() {
        let gv = gv_path(rt.group, rt.version);
        let entry = &paths[&gv]["serverRelativeURL"];
        let (_, hash) = openapi().document(&gv).unwrap();
        assert_eq!(entry, &json!(format!("/openapi/v3/{gv}?hash={hash}")));
        assert_eq!(hash.len(), 128);
    }
    assert!(paths.contains_key("api/v1") && paths.contains_key("apis/apps/v1"));
    assert!(openapi().document("/apis/apps/v1").is_some());
    assert!(openapi().document("apis/nope/v1").is_none());
}

/// kubectl's check before `create`/`apply` with default validation: some PATCH operation
/// carries the GVK and a `fieldValidation` query parameter; and every PATCH operation of the
/// GVK does (kubectl stops at the first one it finds, in random order).
#[test]
fn every_kind_has_patch_with_field_validation() {
    for rt in catalog::builtin()
        .iter()
        .filter(|rt| rt.supports_verb("patch"))
    {
        let doc = document(&gv_path(rt.group, rt.version));
        let gvk = json!({"group": rt.group, "version": rt.version, "kind": rt.kind});
        let mut found = 0;
        for (path, item) in doc["paths"].as_object().unwrap() {
            let Some(patch) = item.get("patch") else {
                continue;
            };
            if patch["x-kubernetes-group-version-kind"] != gvk {
                continue;
            }
            let has_param = patch["parameters"]
                .as_array()
                .unwrap()
                .iter()
                .any(|p| p["name"] == "fieldValidation" && p["in"] == "query");
            assert!(has_param, "{path}: PATCH without fieldValidation");
            found += 1;
        }
        assert!(found > 0, "no PATCH for {gvk}");
    }
}

#[test]
fn config_map_operations_as_upstream() {
    let doc = document("api/v1");
    assert_eq!(doc["openapi"], "3.0.0");
    assert_eq!(
        doc["info"],
        json!({"title": "Kubernetes", "version": "v1.32.0"})
    );
    let paths = &doc["paths"];
    let item = &paths["/api/v1/namespaces/{namespace}/configmaps/{name}"];
    let patch = &item["patch"];
    assert_eq!(patch["operationId"], "patchCoreV1NamespacedConfigMap");
    assert_eq!(patch["x-kubernetes-action"], "patch");
    assert_eq!(
        patch["x-kubernetes-group-version-kind"],
        json!({"group": "", "version": "v1", "kind": "ConfigMap"})
    );
    let names: Vec<&str> = patch["parameters"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        ["dryRun", "fieldManager", "fieldValidation", "force"]
    );
    let content = patch["requestBody"]["content"].as_object().unwrap();
    assert!(content.contains_key("application/strategic-merge-patch+json"));
    assert!(content.contains_key("application/apply-patch+yaml"));
    assert_eq!(
        patch["responses"]["200"]["content"]["application/json"]["schema"]["$ref"],
        "#/components/schemas/io.k8s.api.core.v1.ConfigMap"
    );
    assert_eq!(item["get"]["operationId"], "readCoreV1NamespacedConfigMap");
    assert_eq!(
        item["put"]["operationId"],
        "replaceCoreV1NamespacedConfigMap"
    );
    assert_eq!(
        item["delete"]["operationId"],
        "deleteCoreV1NamespacedConfigMap"
    );

    let collection = &paths["/api/v1/namespaces/{namespace}/configmaps"];
    assert_eq!(
        collection["get"]["operationId"],
        "listCoreV1NamespacedConfigMap"
    );
    assert_eq!(collection["get"]["x-kubernetes-action"], "list");
    assert_eq!(
        collection["get"]["responses"]["200"]["content"]["application/json"]["schema"]["$ref"],
        "#/components/schemas/io.k8s.api.core.v1.ConfigMapList"
    );
    assert_eq!(
        collection["post"]["operationId"],
        "createCoreV1NamespacedConfigMap"
    );
    assert_eq!(
        collection["delete"]["operationId"],
        "deleteCoreV1CollectionNamespacedConfigMap"
    );
    assert_eq!(
        paths["/api/v1/configmaps"]["get"]["operationId"],
        "listCoreV1ConfigMapForAllNamespaces"
    );
    assert_eq!(
        paths["/api/v1/nodes/{name}"]["get"]["operationId"],
        "readCoreV1Node"
    );
    assert_eq!(
        paths["/api/v1/namespaces/{namespace}/pods/{name}/status"]["patch"]["operationId"],
        "patchCoreV1NamespacedPodStatus"
    );
    assert_eq!(
        paths["/api/v1/namespaces/{namespace}/pods/{name}/exec"]["post"]["operationId"],
        "connectCoreV1PostNamespacedPodExec"
    );
    assert_eq!(
        paths["/api/v1/namespaces/{namespace}/pods/{name}/eviction"]["post"]
            ["x-kubernetes-group-version-kind"],
        json!({"group": "policy", "version": "v1", "kind": "Eviction"})
    );
    // Namespaces have no deletecollection.
    assert!(paths["/api/v1/namespaces"].get("delete").is_none());
}

#[test]
fn scale_subresource() {
    let doc = document("apis/apps/v1");
    let scale = &doc["paths"]["/apis/apps/v1/namespaces/{namespace}/deployments/{name}/scale"];
    assert_eq!(
        scale["get"]["operationId"],
        "readAppsV1NamespacedDeploymentScale"
    );
    assert_eq!(
        scale["patch"]["x-kubernetes-group-version-kind"],
        json!({"group": "autoscaling", "version": "v1", "kind": "Scale"})
    );
    let schemas = &doc["components"]["schemas"];
    assert_eq!(
        schemas["io.k8s.api.autoscaling.v1.Scale"]["x-kubernetes-group-version-kind"],
        json!([{"group": "autoscaling", "kind": "Scale", "version": "v1"}])
    );
    let rbac = document("apis/rbac.authorization.k8s.io/v1");
    assert_eq!(
        rbac["paths"]["/apis/rbac.authorization.k8s.io/v1/clusterroles/{name}"]["get"]
            ["operationId"],
        "readRbacAuthorizationV1ClusterRole"
    );
}

fn collect_refs<'a>(value: &'a Value, refs: &mut Vec<&'a str>) {
    match value {
        Value::Object(map) => {
            for (key, child) in map {
                match (key.as_str(), child) {
                    ("$ref", Value::String(reference)) => refs.push(reference),
                    _ => collect_refs(child, refs),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|item| collect_refs(item, refs)),
        _ => {}
    }
}

#[test]
fn every_ref_resolves_inside_its_document() {
    for gv in openapi().group_versions() {
        let doc = document(gv);
        let schemas = doc["components"]["schemas"].as_object().unwrap();
        let mut refs = Vec::new();
        collect_refs(&doc, &mut refs);
        assert!(!refs.is_empty());
        for reference in refs {
            let name = reference
                .strip_prefix("#/components/schemas/")
                .unwrap_or_else(|| panic!("{gv}: foreign $ref {reference}"));
            assert!(
                schemas.contains_key(name),
                "{gv}: dangling $ref {reference}"
            );
        }
        // No `$ref` has siblings (OpenAPI 3.0 ignores them): descriptions go via allOf.
        let text = String::from_utf8(openapi().document(gv).unwrap().0.to_vec()).unwrap();
        assert!(!text.contains("$defs"), "{gv}");
    }
}

#[test]
fn explain_metadata() {
    let doc = document("apis/apps/v1");
    let schemas = &doc["components"]["schemas"];
    let deployment = &schemas["io.k8s.api.apps.v1.Deployment"];
    assert_eq!(
        deployment["x-kubernetes-group-version-kind"],
        json!([{"group": "apps", "kind": "Deployment", "version": "v1"}])
    );
    assert_eq!(
        deployment["properties"]["spec"]["allOf"][0]["$ref"],
        "#/components/schemas/io.k8s.api.apps.v1.DeploymentSpec"
    );
    assert!(deployment["properties"]["spec"]["description"].is_string());
    assert_eq!(
        schemas["io.k8s.api.apps.v1.DeploymentSpec"]["properties"]["replicas"]["type"],
        "integer"
    );
    assert_eq!(
        schemas["io.k8s.api.apps.v1.DeploymentList"]["x-kubernetes-group-version-kind"],
        json!([{"group": "apps", "kind": "DeploymentList", "version": "v1"}])
    );
    let meta = &schemas["io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"];
    assert!(meta["description"].as_str().unwrap().contains("ObjectMeta"));
    let status_gvks = schemas["io.k8s.apimachinery.pkg.apis.meta.v1.Status"]
        ["x-kubernetes-group-version-kind"]
        .as_array()
        .unwrap();
    assert!(status_gvks.contains(&json!({"group": "apps", "kind": "Status", "version": "v1"})));
}

#[test]
fn patch_metadata() {
    let doc = document("api/v1");
    let schemas = &doc["components"]["schemas"];
    let containers = &schemas["io.k8s.api.core.v1.PodSpec"]["properties"]["containers"];
    assert_eq!(containers["x-kubernetes-patch-merge-key"], "name");
    assert_eq!(containers["x-kubernetes-patch-strategy"], "merge");
    assert_eq!(containers["x-kubernetes-list-type"], "map");
    assert_eq!(containers["x-kubernetes-list-map-keys"], json!(["name"]));
    let volumes = &schemas["io.k8s.api.core.v1.PodSpec"]["properties"]["volumes"];
    assert_eq!(volumes["x-kubernetes-patch-strategy"], "merge,retainKeys");
    let container = &schemas["io.k8s.api.core.v1.Container"]["properties"];
    assert_eq!(
        container["ports"]["x-kubernetes-patch-merge-key"],
        "containerPort"
    );
    assert_eq!(container["env"]["x-kubernetes-patch-merge-key"], "name");
    assert_eq!(
        container["volumeMounts"]["x-kubernetes-patch-merge-key"],
        "mountPath"
    );
    let ephemeral = &schemas["io.k8s.api.core.v1.EphemeralContainer"]["properties"];
    assert_eq!(ephemeral["env"]["x-kubernetes-patch-merge-key"], "name");
    let service_ports = &schemas["io.k8s.api.core.v1.ServiceSpec"]["properties"]["ports"];
    assert_eq!(service_ports["x-kubernetes-patch-merge-key"], "port");
    assert_eq!(
        service_ports["x-kubernetes-list-map-keys"],
        json!(["port", "protocol"])
    );
    let meta = &schemas["io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"]["properties"];
    assert_eq!(meta["finalizers"]["x-kubernetes-patch-strategy"], "merge");
    assert_eq!(
        meta["ownerReferences"]["x-kubernetes-patch-merge-key"],
        "uid"
    );
    let apps = document("apis/apps/v1");
    let conditions = &apps["components"]["schemas"]["io.k8s.api.apps.v1.DeploymentStatus"]
        ["properties"]["conditions"];
    assert_eq!(conditions["x-kubernetes-patch-merge-key"], "type");
}

#[test]
fn unknown_fields_with_paths() {
    let deployment = json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web", "labels": {"app": "web"}, "annotations": {"a/b": "c"}},
        "spec": {
            "replicass": 3,
            "selector": {"matchLabels": {"app": "web"}},
            "strategy": {"rollingUpdate": {"maxSurge": "25%", "maxUnavailable": 1}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [
                    {"name": "web", "imagee": "nginx",
                     "ports": [{"containerPort": 80}],
                     "resources": {"limits": {"cpu": "1", "memory": 128}},
                     "livenessProbe": {"httpGet": {"port": "http", "path": "/"}}},
                    {"name": "side", "image": "busybox", "env": [{"name": "A", "valu": "1"}]}
                ]}
            }
        }
    });
    assert_eq!(
        openapi().unknown_fields("apps/v1", "Deployment", &deployment),
        [
            r#"unknown field "spec.replicass""#,
            r#"unknown field "spec.template.spec.containers[0].imagee""#,
            r#"unknown field "spec.template.spec.containers[1].env[0].valu""#,
        ]
    );
}

#[test]
fn unknown_fields_accept_maps_and_free_form_values() {
    let config_map = json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "c", "labels": {"any": "x"}, "annotations": {"k": "v"},
                     "managedFields": [{"manager": "m", "fieldsV1": {"f:data": {"f:x": {}}}}]},
        "data": {"anything": "goes", "a.b": "c"},
        "binaryData": {"x": "eA=="}
    });
    assert!(openapi()
        .unknown_fields("v1", "ConfigMap", &config_map)
        .is_empty());

    let bogus =
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"nam": "c"}, "dta": {}});
    assert_eq!(
        openapi().unknown_fields("v1", "ConfigMap", &bogus),
        [r#"unknown field "metadata.nam""#, r#"unknown field "dta""#]
    );

    let crd = json!({
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": "widgets.example.com"},
        "spec": {"group": "example.com", "scope": "Namespaced",
                 "names": {"plural": "widgets", "kind": "Widget"},
                 "versions": [{"name": "v1", "served": true, "storage": true,
                    "schema": {"openAPIV3Schema": {"type": "object",
                        "properties": {"spec": {"type": "object", "default": {"x": 1},
                            "x-kubernetes-preserve-unknown-fields": true,
                            "items": {"type": "string"}, "bogus": 1}}}}}]}
    });
    assert_eq!(
        openapi().unknown_fields("apiextensions.k8s.io/v1", "CustomResourceDefinition", &crd),
        [r#"unknown field "spec.versions[0].schema.openAPIV3Schema.properties.spec.bogus""#]
    );

    // Kinds without a schema are not checked.
    assert!(openapi()
        .unknown_fields("example.com/v1", "Widget", &json!({"x": 1}))
        .is_empty());
    // Lists and subresource kinds are.
    let scale =
        json!({"apiVersion": "autoscaling/v1", "kind": "Scale", "spec": {"replicas": 1, "x": 1}});
    assert_eq!(
        openapi().unknown_fields("autoscaling/v1", "Scale", &scale),
        [r#"unknown field "spec.x""#]
    );
    let list =
        json!({"apiVersion": "v1", "kind": "PodList", "items": [{"spec": {"nodeNam": "n"}}]});
    assert_eq!(
        openapi().unknown_fields("v1", "PodList", &list),
        [r#"unknown field "items[0].spec.nodeNam""#]
    );
}

#[test]
fn build_is_deterministic() {
    let again = OpenApi::build().unwrap();
    for gv in openapi().group_versions() {
        assert_eq!(openapi().document(gv), again.document(gv), "{gv}");
    }
}
