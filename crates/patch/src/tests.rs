//! Table-driven tests: generic cases ported from upstream `patch_test.go` (over a test schema
//! like upstream's `mergeItem`), then the bodies kubectl really sends for built-in kinds.

use serde_json::{json, Value};

use crate::{builtin_meta, strategic_merge, FieldMeta, PatchError, PatchMeta, MAX_DEPTH};

/// Upstream's `mergeItem` test type, reduced to the fields the cases use.
fn merge_item(path: &[&str]) -> FieldMeta {
    match path.last().copied().unwrap_or_default() {
        "mergingList" => FieldMeta::merge("name"),
        "mergingIntList" => FieldMeta::MERGE_PRIMITIVES,
        "retainKeysMap" => FieldMeta::RETAIN_KEYS,
        "retainKeysMergingList" => FieldMeta::merge_retain_keys("name"),
        "replacedMap" => FieldMeta::REPLACE,
        _ => FieldMeta::DEFAULT,
    }
}

struct Case {
    name: &'static str,
    original: Value,
    patch: Value,
    expected: Value,
}

fn run(cases: Vec<Case>, meta: &dyn PatchMeta) {
    for case in cases {
        let got = strategic_merge(&case.original, &case.patch, meta)
            .unwrap_or_else(|e| panic!("{}: unexpected error: {e}", case.name));
        assert_eq!(
            got,
            case.expected,
            "{}\n got: {}\nwant: {}",
            case.name,
            serde_json::to_string_pretty(&got).unwrap_or_default(),
            serde_json::to_string_pretty(&case.expected).unwrap_or_default()
        );
    }
}

fn case(name: &'static str, original: Value, patch: Value, expected: Value) -> Case {
    Case {
        name,
        original,
        patch,
        expected,
    }
}

#[test]
fn maps_and_nulls() {
    run(
        vec![
            case(
                "add, change and delete keys",
                json!({"a": 1, "b": {"c": 2, "d": 3}}),
                json!({"a": 2, "b": {"c": null, "e": 4}, "f": "x"}),
                json!({"a": 2, "b": {"d": 3, "e": 4}, "f": "x"}),
            ),
            case(
                "null for an absent key is ignored, nested nulls in new values are dropped",
                json!({"a": 1}),
                json!({"zz": null, "n": {"x": null, "y": 1}}),
                json!({"a": 1, "n": {"y": 1}}),
            ),
            case(
                "key order of the original is kept, new keys append",
                json!({"b": 1, "a": 1, "c": 1}),
                json!({"a": 2, "d": 1}),
                json!({"b": 1, "a": 2, "c": 1, "d": 1}),
            ),
            case(
                "delete map from nested map leaves an empty map (upstream)",
                json!({"simpleMap": {"key1": 1, "key2": 1}}),
                json!({"simpleMap": {"$patch": "delete"}}),
                json!({"simpleMap": {}}),
            ),
            case(
                "delete directive on an absent map adds nothing",
                json!({}),
                json!({"simpleMap": {"$patch": "delete"}}),
                json!({}),
            ),
            case(
                "delete all keys from map",
                json!({"name": 1, "value": 1}),
                json!({"$patch": "replace"}),
                json!({}),
            ),
            case(
                "add key and delete all keys from map",
                json!({"name": 1, "value": 1}),
                json!({"other": "a", "$patch": "replace"}),
                json!({"other": "a"}),
            ),
            case(
                "replace a nested map",
                json!({"m": {"a": 1, "b": 2}, "k": 1}),
                json!({"m": {"$patch": "replace", "c": 3}}),
                json!({"m": {"c": 3}, "k": 1}),
            ),
            case(
                "explicit merge directive is the default",
                json!({"m": {"a": 1}}),
                json!({"m": {"$patch": "merge", "b": 2}}),
                json!({"m": {"a": 1, "b": 2}}),
            ),
            case(
                "replace strategy map is replaced whole",
                json!({"replacedMap": {"matchLabels": {"a": "1"}}}),
                json!({"replacedMap": {"matchExpressions": []}}),
                json!({"replacedMap": {"matchExpressions": []}}),
            ),
            case(
                "a null original value takes the patch",
                json!({"m": null}),
                json!({"m": {"a": 1, "b": null}}),
                json!({"m": {"a": 1}}),
            ),
            case(
                "primitives of different types replace each other",
                json!({"maxSurge": "25%"}),
                json!({"maxSurge": 1}),
                json!({"maxSurge": 1}),
            ),
        ],
        &merge_item,
    );
}

#[test]
fn lists() {
    run(
        vec![
            case(
                "non-merging list is replaced",
                json!({"nonMergingList": [{"name": 1}, {"name": 2}]}),
                json!({"nonMergingList": [{"name": 3}]}),
                json!({"nonMergingList": [{"name": 3}]}),
            ),
            case(
                "unique scalars when merging lists",
                json!({"mergingIntList": [1, 2]}),
                json!({"mergingIntList": [2, 3]}),
                json!({"mergingIntList": [1, 2, 3]}),
            ),
            case(
                "delete all items from merging list",
                json!({"mergingList": [{"name": 1}, {"name": 2}]}),
                json!({"mergingList": [{"$patch": "replace"}]}),
                json!({"mergingList": []}),
            ),
            case(
                "replace directive keeps the patch's other elements",
                json!({"mergingList": [{"name": 1}, {"name": 2}]}),
                json!({"mergingList": [{"name": 3, "v": null}, {"$patch": "replace"}]}),
                json!({"mergingList": [{"name": 3}]}),
            ),
            case(
                "merge empty merging lists",
                json!({"mergingList": []}),
                json!({"mergingList": []}),
                json!({"mergingList": []}),
            ),
            case(
                "delete all duplicate entries in a merging list",
                json!({"mergingList": [
                    {"name": 1}, {"name": 1}, {"name": 2, "value": "a"}, {"name": 3}, {"name": 3}
                ]}),
                json!({"mergingList": [
                    {"name": 1, "$patch": "delete"}, {"name": 3, "$patch": "delete"}
                ]}),
                json!({"mergingList": [{"name": 2, "value": "a"}]}),
            ),
            case(
                "merge elements by key, null deletes inside an element",
                json!({"mergingList": [{"name": "a", "x": 1, "y": 2}, {"name": "b"}]}),
                json!({"mergingList": [{"name": "a", "x": 5, "y": null}]}),
                json!({"mergingList": [{"name": "a", "x": 5}, {"name": "b"}]}),
            ),
            case(
                "a new element without $setElementOrder goes first (upstream order)",
                json!({"mergingList": [{"name": "a"}, {"name": "b"}]}),
                json!({"mergingList": [{"name": "c"}]}),
                json!({"mergingList": [{"name": "c"}, {"name": "a"}, {"name": "b"}]}),
            ),
            case(
                "preserve the order from the patch in a merging list",
                json!({"mergingList": [{"name": 1}, {"name": 2, "value": "b"}, {"name": 3}]}),
                json!({"mergingList": [
                    {"name": 3, "value": "c"}, {"name": 1, "value": "a"}, {"name": 2, "other": "x"}
                ]}),
                json!({"mergingList": [
                    {"name": 3, "value": "c"}, {"name": 1, "value": "a"},
                    {"name": 2, "value": "b", "other": "x"}
                ]}),
            ),
            case(
                "preserve the order from the patch in a merging list 2",
                json!({"mergingList": [{"name": 1}, {"name": 2, "value": "b"}, {"name": 3}]}),
                json!({"mergingList": [{"name": 3, "value": "c"}, {"name": 1, "value": "a"}]}),
                json!({"mergingList": [
                    {"name": 2, "value": "b"}, {"name": 3, "value": "c"}, {"name": 1, "value": "a"}
                ]}),
            ),
            case(
                "preserve the order from the patch in a merging int list",
                json!({"mergingIntList": [1, 2, 3]}),
                json!({"mergingIntList": [3, 1]}),
                json!({"mergingIntList": [2, 3, 1]}),
            ),
            case(
                "merging list absent from the original: directives are applied to nothing",
                json!({}),
                json!({"mergingList": [{"name": "a", "n": null}, {"name": "b", "$patch": "delete"}]}),
                json!({"mergingList": [{"name": "a"}]}),
            ),
            case(
                "directive elements of an atomic list are dropped",
                json!({"nonMergingList": [{"name": 1}]}),
                json!({"nonMergingList": [{"name": 2}, {"$patch": "replace"}]}),
                json!({"nonMergingList": [{"name": 2}]}),
            ),
            case(
                "retainKeys list can delete a field when no retainKeys directive present",
                json!({"retainKeysMergingList": [{"name": "bar"}, {"name": "foo", "value": "a"}]}),
                json!({"retainKeysMergingList": [{"name": "foo", "value": null}]}),
                json!({"retainKeysMergingList": [{"name": "bar"}, {"name": "foo"}]}),
            ),
        ],
        &merge_item,
    );
}

#[test]
fn set_element_order() {
    run(
        vec![
            case(
                "$setElementOrder contains an item not in the list",
                json!({"mergingList": [{"name": 1}, {"name": 3}]}),
                json!({
                    "$setElementOrder/mergingList": [{"name": 3}, {"name": 2}, {"name": 1}],
                    "mergingList": [{"name": 3, "value": 3}, {"name": 1, "value": 1}]
                }),
                json!({"mergingList": [{"name": 3, "value": 3}, {"name": 1, "value": 1}]}),
            ),
            case(
                "$setElementOrder alone reorders an int list",
                json!({"mergingIntList": [1, 3]}),
                json!({"$setElementOrder/mergingIntList": [3, 2, 1]}),
                json!({"mergingIntList": [3, 1]}),
            ),
            case(
                "delete map from merging list",
                json!({"mergingList": [{"name": 1}, {"name": 2, "other": "b"}]}),
                json!({
                    "$setElementOrder/mergingList": [{"name": 2}],
                    "mergingList": [{"name": 1, "$patch": "delete"}]
                }),
                json!({"mergingList": [{"name": 2, "other": "b"}]}),
            ),
            case(
                "server-only elements keep their place after ordered ones",
                json!({"mergingList": [{"name": "a"}, {"name": "s"}, {"name": "b"}]}),
                json!({
                    "$setElementOrder/mergingList": [{"name": "b"}, {"name": "a"}, {"name": "n"}],
                    "mergingList": [{"name": "n"}]
                }),
                json!({"mergingList": [{"name": "s"}, {"name": "b"}, {"name": "a"}, {"name": "n"}]}),
            ),
            case(
                "$setElementOrder for a list absent everywhere is dropped",
                json!({"x": 1}),
                json!({"$setElementOrder/mergingList": [{"name": 1}]}),
                json!({"x": 1}),
            ),
        ],
        &merge_item,
    );
}

#[test]
fn primitive_lists_and_retain_keys() {
    run(
        vec![
            case(
                "$deleteFromPrimitiveList of a nonexistent item adds nothing",
                json!({"mergingIntList": [1, 2]}),
                json!({"$deleteFromPrimitiveList/mergingIntList": [3]}),
                json!({"mergingIntList": [1, 2]}),
            ),
            case(
                "$deleteFromPrimitiveList on a null list",
                json!({"mergingIntList": null}),
                json!({"$deleteFromPrimitiveList/mergingIntList": [3]}),
                json!({"mergingIntList": null}),
            ),
            case(
                "$deleteFromPrimitiveList on a nonexistent list adds no list",
                json!({"foo": ["bar"]}),
                json!({"$deleteFromPrimitiveList/mergingIntList": [3]}),
                json!({"foo": ["bar"]}),
            ),
            case(
                "$deleteFromPrimitiveList deletes from a merging list",
                json!({"mergingIntList": [1, 2, 3]}),
                json!({"$deleteFromPrimitiveList/mergingIntList": [2]}),
                json!({"mergingIntList": [1, 3]}),
            ),
            case(
                "$deleteFromPrimitiveList deletes from a non-merging list too",
                json!({"nonMergingIntList": [1, 2, 3]}),
                json!({"$deleteFromPrimitiveList/nonMergingIntList": [2]}),
                json!({"nonMergingIntList": [1, 3]}),
            ),
            case(
                "retainKeys map merges when no directive is present",
                json!({"retainKeysMap": {"name": "foo", "value": "a"}}),
                json!({"retainKeysMap": {"value": "b"}}),
                json!({"retainKeysMap": {"name": "foo", "value": "b"}}),
            ),
            case(
                "$retainKeys clears unnamed keys",
                json!({"retainKeysMap": {"name": "foo", "value": "a", "other": 1}}),
                json!({"retainKeysMap": {"$retainKeys": ["name", "value"], "value": "b"}}),
                json!({"retainKeysMap": {"name": "foo", "value": "b"}}),
            ),
            case(
                "$retainKeys inside merging list elements",
                json!({"retainKeysMergingList": [{"name": "v", "emptyDir": {}, "x": 1}]}),
                json!({"retainKeysMergingList": [
                    {"name": "v", "$retainKeys": ["name", "hostPath"], "hostPath": {"path": "/"}}
                ]}),
                json!({"retainKeysMergingList": [{"name": "v", "hostPath": {"path": "/"}}]}),
            ),
        ],
        &merge_item,
    );
}

/// A 3-container Deployment as `kubectl create` leaves it.
fn deployment() -> Value {
    json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "default", "finalizers": ["a.io/x", "b.io/y"]},
        "spec": {
            "replicas": 1,
            "strategy": {
                "type": "RollingUpdate",
                "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}
            },
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {
                    "containers": [
                        {
                            "name": "a", "image": "nginx:1",
                            "ports": [{"containerPort": 80, "protocol": "TCP"}],
                            "env": [{"name": "X", "value": "1"}, {"name": "Y", "value": "2"}]
                        },
                        {"name": "b", "image": "redis"},
                        {"name": "c", "image": "busybox:1"}
                    ],
                    "volumes": [{"name": "data", "emptyDir": {}}]
                }
            }
        }
    })
}

fn deploy_at(value: &Value, pointer: &str) -> Value {
    value.pointer(pointer).cloned().unwrap_or(Value::Null)
}

#[test]
fn kubectl_apply_bodies_on_a_deployment() {
    let meta = builtin_meta("apps/v1", "Deployment");
    let cases: Vec<(&str, Value, &str, Value)> = vec![
        (
            "captured: containers changed and one deleted",
            json!({"spec":{"template":{"spec":{
                "$setElementOrder/containers":[{"name":"a"},{"name":"c"}],
                "containers":[{"image":"nginx:2","name":"a"},{"image":"busybox","name":"c"},
                              {"$patch":"delete","name":"b"}]}}}}),
            "/spec/template/spec/containers",
            json!([
                {
                    "name": "a", "image": "nginx:2",
                    "ports": [{"containerPort": 80, "protocol": "TCP"}],
                    "env": [{"name": "X", "value": "1"}, {"name": "Y", "value": "2"}]
                },
                {"name": "c", "image": "busybox"}
            ]),
        ),
        (
            "container added in the middle",
            json!({"spec":{"template":{"spec":{
                "$setElementOrder/containers":[{"name":"a"},{"name":"n"},{"name":"b"},{"name":"c"}],
                "containers":[{"image":"x","name":"n"}]}}}}),
            "/spec/template/spec/containers/1",
            json!({"image": "x", "name": "n"}),
        ),
        (
            "env merged by name, one removed, one added",
            json!({"spec":{"template":{"spec":{
                "$setElementOrder/containers":[{"name":"a"},{"name":"b"},{"name":"c"}],
                "containers":[{"name":"a",
                    "$setElementOrder/env":[{"name":"Z"},{"name":"X"}],
                    "env":[{"name":"Z","value":"3"},{"$patch":"delete","name":"Y"}]}]}}}}),
            "/spec/template/spec/containers/0/env",
            json!([{"name": "Z", "value": "3"}, {"name": "X", "value": "1"}]),
        ),
        (
            "ports merged by containerPort",
            json!({"spec":{"template":{"spec":{"containers":[{"name":"a",
                "$setElementOrder/ports":[{"containerPort":80},{"containerPort":443}],
                "ports":[{"containerPort":80,"name":"http"},{"containerPort":443}]}]}}}}),
            "/spec/template/spec/containers/0/ports",
            json!([
                {"containerPort": 80, "protocol": "TCP", "name": "http"},
                {"containerPort": 443}
            ]),
        ),
        (
            "$retainKeys: Recreate replaces RollingUpdate",
            json!({"spec":{"strategy":{"$retainKeys":["type"],"rollingUpdate":null,"type":"Recreate"}}}),
            "/spec/strategy",
            json!({"type": "Recreate"}),
        ),
        (
            "volume source switched with $retainKeys",
            json!({"spec":{"template":{"spec":{
                "$setElementOrder/volumes":[{"name":"data"}],
                "volumes":[{"$retainKeys":["configMap","name"],"configMap":{"name":"cm"},
                            "emptyDir":null,"name":"data"}]}}}}),
            "/spec/template/spec/volumes",
            json!([{"name": "data", "configMap": {"name": "cm"}}]),
        ),
        (
            "finalizers: union, then $deleteFromPrimitiveList",
            json!({"metadata":{
                "$deleteFromPrimitiveList/finalizers":["a.io/x"],
                "$setElementOrder/finalizers":["c.io/z","b.io/y"],
                "finalizers":["c.io/z"]}}),
            "/metadata/finalizers",
            json!(["c.io/z", "b.io/y"]),
        ),
        (
            "finalizers union without order",
            json!({"metadata":{"finalizers":["b.io/y","c.io/z"]}}),
            "/metadata/finalizers",
            json!(["a.io/x", "b.io/y", "c.io/z"]),
        ),
        (
            "kubectl rollout restart",
            json!({"spec":{"template":{"metadata":{"annotations":{
                "kubectl.kubernetes.io/restartedAt":"2025-01-01T00:00:00Z"}}}}}),
            "/spec/template/metadata",
            json!({"labels": {"app": "web"}, "annotations": {
                "kubectl.kubernetes.io/restartedAt": "2025-01-01T00:00:00Z"}}),
        ),
        (
            "kubectl set image",
            json!({"spec":{"template":{"spec":{"containers":[{"image":"busybox:2","name":"c"}]}}}}),
            "/spec/template/spec/containers/2",
            json!({"name": "c", "image": "busybox:2"}),
        ),
    ];
    for (name, patch, pointer, expected) in cases {
        let got = strategic_merge(&deployment(), &patch, &meta)
            .unwrap_or_else(|e| panic!("{name}: unexpected error: {e}"));
        assert_eq!(deploy_at(&got, pointer), expected, "{name}");
        assert!(
            !got.to_string().contains("\"$"),
            "{name}: a directive leaked: {got}"
        );
    }
}

#[test]
fn config_map_data_with_null() {
    let original = json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "cfg2", "namespace": "default", "annotations": {"old": "x"}},
        "data": {"a": "1", "b": "2", "c": "3"}
    });
    let patch = json!({"data":{"c":null,"d":"4"},"metadata":{"annotations":{
        "kubectl.kubernetes.io/last-applied-configuration":"{}\n"}}});
    let got = strategic_merge(&original, &patch, &builtin_meta("v1", "ConfigMap"));
    assert_eq!(
        got,
        Ok(json!({
            "apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "cfg2", "namespace": "default", "annotations": {
                "old": "x", "kubectl.kubernetes.io/last-applied-configuration": "{}\n"}},
            "data": {"a": "1", "b": "2", "d": "4"}
        }))
    );
}

#[test]
fn service_ports_and_node_status() {
    let svc = json!({"spec": {"ports": [{"port": 80, "targetPort": 8080}, {"port": 443}]}});
    let patch = json!({"spec": {"ports": [{"port": 80, "targetPort": 9090}]}});
    let got = strategic_merge(&svc, &patch, &builtin_meta("v1", "Service"));
    assert_eq!(
        got,
        Ok(json!({"spec": {"ports": [{"port": 80, "targetPort": 9090}, {"port": 443}]}}))
    );

    // The kubelet's node status patch: conditions merge by type; taints are atomic.
    let node = json!({
        "spec": {"taints": [{"key": "a", "effect": "NoSchedule"}]},
        "status": {"conditions": [
            {"type": "Ready", "status": "False"}, {"type": "MemoryPressure", "status": "False"}
        ]}
    });
    let patch = json!({
        "spec": {"taints": [{"key": "b", "effect": "NoExecute"}]},
        "status": {
            "$setElementOrder/conditions": [{"type": "MemoryPressure"}, {"type": "Ready"}],
            "conditions": [{"type": "Ready", "status": "True"}]
        }
    });
    let got = strategic_merge(&node, &patch, &builtin_meta("v1", "Node"));
    assert_eq!(
        got,
        Ok(json!({
            "spec": {"taints": [{"key": "b", "effect": "NoExecute"}]},
            "status": {"conditions": [
                {"type": "MemoryPressure", "status": "False"}, {"type": "Ready", "status": "True"}
            ]}
        }))
    );
}

#[test]
fn cronjob_pod_template_and_unknown_kinds() {
    let cronjob = json!({"spec": {"jobTemplate": {"spec": {"template": {"spec": {
        "containers": [{"name": "a", "image": "x"}, {"name": "b", "image": "y"}]}}}}}});
    let patch = json!({"spec": {"jobTemplate": {"spec": {"template": {"spec": {
        "containers": [{"name": "b", "image": "z"}]}}}}}});
    let got = strategic_merge(&cronjob, &patch, &builtin_meta("batch/v1", "CronJob"));
    assert_eq!(
        got.map(|v| deploy_at(&v, "/spec/jobTemplate/spec/template/spec/containers")),
        Ok(json!([{"name": "a", "image": "x"}, {"name": "b", "image": "z"}]))
    );

    // A custom resource: lists are replaced.
    let widget = json!({"spec": {"items": [{"name": "a"}], "m": {"x": 1}}});
    let patch = json!({"spec": {"items": [{"name": "b"}], "m": {"y": 2}}});
    let got = strategic_merge(&widget, &patch, &builtin_meta("example.com/v1", "Widget"));
    assert_eq!(
        got,
        Ok(json!({"spec": {"items": [{"name": "b"}], "m": {"x": 1, "y": 2}}}))
    );
}

fn error_of(original: Value, patch: Value) -> PatchError {
    match strategic_merge(&original, &patch, &merge_item) {
        Ok(v) => panic!("expected an error, got {v}"),
        Err(e) => e,
    }
}

#[test]
fn errors() {
    let cases: Vec<(&str, Value, Value, &str)> = vec![
        (
            "order in $setElementOrder and patch list must match",
            json!({"mergingList": [{"name": 1}, {"name": 3}, {"name": 2}]}),
            json!({
                "$setElementOrder/mergingList": [{"name": 1}, {"name": 2}, {"name": 3}],
                "mergingList": [{"name": 3, "value": 3}, {"name": 1, "value": 1}]
            }),
            "doesn't match",
        ),
        (
            "order in $setElementOrder and int patch list must match",
            json!({"mergingIntList": [1, 3, 2]}),
            json!({"$setElementOrder/mergingIntList": [1, 2, 3], "mergingIntList": [3, 1]}),
            "doesn't match",
        ),
        (
            "missing merge key",
            json!({"mergingList": [{"name": 1, "value": "a"}]}),
            json!({"mergingList": [{"value": "b"}]}),
            "does not contain declared merge key: name",
        ),
        (
            "delete directive without merge key",
            json!({"mergingList": [{"name": 1}]}),
            json!({"mergingList": [{"$patch": "delete"}]}),
            "does not contain declared merge key",
        ),
        (
            "unknown $patch in a map",
            json!({"m": {}}),
            json!({"m": {"$patch": "explode"}}),
            "unknown patch type: explode",
        ),
        (
            "merge directive in a list",
            json!({"mergingList": [{"name": 1}]}),
            json!({"mergingList": [{"$patch": "merge"}]}),
            "merging lists cannot yet be specified in the patch",
        ),
        (
            "unknown directive",
            json!({}),
            json!({"spec": {"$frobnicate": 1}}),
            "unknown patch directive \"$frobnicate\" in spec",
        ),
        (
            "map where the original has a list",
            json!({"spec": {"containers": [{"name": "a"}]}}),
            json!({"spec": {"containers": {"name": "a"}}}),
            "invalid type for spec.containers: got \"object\", expected \"array\"",
        ),
        (
            "list where the original has a primitive",
            json!({"replicas": 1}),
            json!({"replicas": [1]}),
            "invalid type for replicas",
        ),
        (
            "mixed element types in a merging list",
            json!({"mergingIntList": [1]}),
            json!({"mergingIntList": ["a"]}),
            "list element types are not identical",
        ),
        (
            "lists of lists",
            json!({"mergingIntList": [[1]]}),
            json!({"mergingIntList": [[2]]}),
            "lists of lists are not supported",
        ),
        (
            "merging list of maps without a declared merge key",
            json!({"mergingIntList": [{"a": 1}]}),
            json!({"mergingIntList": [{"a": 2}]}),
            "cannot merge lists without merge key for mergingIntList",
        ),
        (
            "$retainKeys that is not a list",
            json!({"retainKeysMap": {}}),
            json!({"retainKeysMap": {"$retainKeys": "name"}}),
            "invalid patch format of retainKeys",
        ),
        (
            "patch sets a key its $retainKeys does not name",
            json!({"retainKeysMap": {}}),
            json!({"retainKeysMap": {"$retainKeys": ["name"], "value": 1}}),
            "patch content doesn't match retainKeys list",
        ),
        (
            "$setElementOrder without a field",
            json!({}),
            json!({"$setElementOrder": []}),
            "invalid patch format of setElementOrder list",
        ),
        (
            "$setElementOrder that is not a list",
            json!({}),
            json!({"$setElementOrder/mergingList": {"name": 1}}),
            "invalid patch format of setElementOrder list at mergingList",
        ),
        (
            "$deleteFromPrimitiveList of maps",
            json!({"mergingIntList": [1]}),
            json!({"$deleteFromPrimitiveList/mergingIntList": [{"a": 1}]}),
            "invalid patch format of primitive list",
        ),
        (
            "patch is not an object",
            json!({}),
            json!([1]),
            "invalid JSON document",
        ),
        (
            "original is not an object",
            json!("x"),
            json!({}),
            "invalid JSON document",
        ),
    ];
    for (name, original, patch, message) in cases {
        let err = error_of(original, patch).to_string();
        assert!(err.contains(message), "{name}: {err:?} lacks {message:?}");
    }
}

fn nested(depth: usize) -> Value {
    let mut v = json!(1);
    for i in 0..depth {
        let mut map = serde_json::Map::new();
        map.insert("a".to_string(), v);
        v = if i % 2 == 0 {
            Value::Object(map)
        } else {
            Value::Array(vec![Value::Object(map)])
        };
    }
    v
}

#[test]
fn deep_patches_are_refused_not_overflowed() {
    // Building, cloning and dropping a 5000-deep `Value` recurses in serde_json itself, so the
    // fixtures need a big stack; the merge gives up at MAX_DEPTH long before that.
    let worker = std::thread::Builder::new().stack_size(512 << 20).spawn(|| {
        for depth in [MAX_DEPTH + 10, 1000, 5000] {
            let patch = json!({ "x": nested(depth) });
            // Against an absent field and against an equally deep original.
            for original in [json!({}), json!({ "x": nested(depth) })] {
                let err = strategic_merge(&original, &patch, &merge_item);
                assert!(
                    matches!(err, Err(PatchError::TooDeep { .. })),
                    "depth {depth}: {err:?}"
                );
            }
        }
    });
    let joined = worker.map(|handle| handle.join());
    assert!(matches!(joined, Ok(Ok(()))), "deep patch test failed");

    // On an ordinary test thread, a patch under the limit (nested() adds 1.5 levels a step) merges.
    let patch = json!({ "x": nested(MAX_DEPTH / 2) });
    let merged = strategic_merge(&json!({"x": nested(MAX_DEPTH / 2)}), &patch, &merge_item);
    assert!(merged.is_ok(), "{merged:?}");
}

#[test]
fn directives_never_leak_from_new_values() {
    let meta = builtin_meta("v1", "Pod");
    let patch = json!({"spec": {"containers": [{
        "name": "new",
        "$setElementOrder/env": [{"name": "A"}],
        "env": [{"name": "A", "value": "1"}, {"name": "B", "$patch": "delete"}],
        "resources": {"$patch": "replace", "limits": {"cpu": "1"}}
    }]}});
    let got = strategic_merge(&json!({"spec": {}}), &patch, &meta);
    assert_eq!(
        got,
        Ok(json!({"spec": {"containers": [{
            "name": "new",
            "env": [{"name": "A", "value": "1"}],
            "resources": {"limits": {"cpu": "1"}}
        }]}}))
    );
}
