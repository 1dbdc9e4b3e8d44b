//! ObjectMeta, labels, annotations and label selectors (upstream `ValidateObjectMeta`,
//! `ValidateLabels`, `ValidateAnnotations`, `ValidateLabelSelector`).

use serde_json::Value;

use super::{child, index, q, Errs};
use crate::catalog::ResourceType;
use crate::json as j;
use crate::syntax;

/// Total size of all annotations (keys + values).
const TOTAL_ANNOTATION_SIZE_LIMIT: usize = 256 * 1024;

/// How a kind's names are checked.
pub(crate) fn name_messages(rt: &ResourceType, obj: &Value, name: &str) -> Vec<String> {
    match (rt.group, rt.kind) {
        ("", "Namespace") => syntax::is_dns1123_label(name),
        ("", "Service") => syntax::is_dns1035_label(name),
        ("rbac.authorization.k8s.io", _) => syntax::is_valid_path_segment_name(name),
        ("apiextensions.k8s.io", "CustomResourceDefinition") => {
            let mut msgs = syntax::is_dns1123_subdomain(name);
            let required = format!(
                "{}.{}",
                j::string(obj, &["spec", "names", "plural"]),
                j::string(obj, &["spec", "group"])
            );
            if name != required {
                msgs.push("must be spec.names.plural+\".\"+spec.group".into());
            }
            msgs
        }
        _ => syntax::is_dns1123_subdomain(name),
    }
}

pub(crate) fn validate_object_meta(rt: &ResourceType, obj: &Value, errs: &mut Errs) {
    let meta = j::get(obj, &["metadata"]).unwrap_or(&Value::Null);
    let name = j::string(meta, &["name"]);
    // Legacy core events skip ObjectMeta validation upstream (only the namespace is checked).
    let legacy_event = rt.group.is_empty() && rt.kind == "Event";
    if name.is_empty() {
        errs.required("metadata.name", "name or generateName is required");
    } else if !legacy_event {
        for msg in name_messages(rt, obj, name) {
            errs.invalid("metadata.name", &q(name), &msg);
        }
    }
    let namespace = j::string(meta, &["namespace"]);
    if rt.namespaced {
        if namespace.is_empty() {
            errs.required("metadata.namespace", "");
        } else if !legacy_event {
            errs.invalid_each(
                "metadata.namespace",
                namespace,
                syntax::is_dns1123_label(namespace),
            );
        }
    }
    // A namespace on a cluster-scoped object is dropped by defaulting, as upstream does.
    if legacy_event {
        return;
    }
    validate_labels(j::get(meta, &["labels"]), "metadata.labels", errs);
    validate_annotations(j::get(meta, &["annotations"]), "metadata.annotations", errs);
    validate_finalizers(j::array(meta, &["finalizers"]), "metadata.finalizers", errs);
    validate_owner_references(j::array(meta, &["ownerReferences"]), errs);
}

/// Name, namespace and uid may not change.
pub(crate) fn validate_object_meta_update(obj: &Value, old: &Value, errs: &mut Errs) {
    for field in ["name", "namespace", "uid"] {
        let new_v = j::string(obj, &["metadata", field]);
        let old_v = j::string(old, &["metadata", field]);
        if !old_v.is_empty() && new_v != old_v {
            errs.invalid(
                &format!("metadata.{field}"),
                &q(new_v),
                "field is immutable",
            );
        }
    }
}

/// `ValidateLabels`: every key a qualified name, every value a label value.
pub(crate) fn validate_labels(labels: Option<&Value>, path: &str, errs: &mut Errs) {
    let Some(map) = labels.and_then(Value::as_object) else {
        return;
    };
    for (k, v) in map {
        errs.invalid_each(path, k, syntax::is_qualified_name(k));
        let v = v.as_str().unwrap_or("");
        errs.invalid_each(path, v, syntax::is_valid_label_value(v));
    }
}

/// `ValidateAnnotations`: keys are qualified names (case-insensitive), total size ≤ 256 KiB.
pub(crate) fn validate_annotations(annotations: Option<&Value>, path: &str, errs: &mut Errs) {
    let Some(map) = annotations.and_then(Value::as_object) else {
        return;
    };
    let mut total = 0usize;
    for (k, v) in map {
        for msg in syntax::is_qualified_name(&k.to_lowercase()) {
            errs.invalid(path, &q(k), &msg);
        }
        total += k.len() + v.as_str().map_or(0, str::len);
    }
    if total > TOTAL_ANNOTATION_SIZE_LIMIT {
        errs.too_long(path, TOTAL_ANNOTATION_SIZE_LIMIT);
    }
}

/// `ValidateFinalizers` (core rules: a bare name must be a standard finalizer).
pub(crate) fn validate_finalizers(finalizers: &[Value], path: &str, errs: &mut Errs) {
    for f in finalizers {
        let f = f.as_str().unwrap_or("");
        let msgs = syntax::is_qualified_name(f);
        if !msgs.is_empty() {
            errs.invalid_each(path, f, msgs);
            continue;
        }
        if !f.contains('/')
            && !matches!(
                f,
                "kubernetes"
                    | "orphan"
                    | "foregroundDeletion"
                    | "customresourcecleanup.apiextensions.k8s.io"
            )
        {
            errs.invalid(
                path,
                &q(f),
                "name is neither a standard finalizer name nor is it fully qualified",
            );
        }
    }
}

fn validate_owner_references(refs: &[Value], errs: &mut Errs) {
    let path = "metadata.ownerReferences";
    let mut controllers = Vec::new();
    for r in refs {
        let api_version = j::string(r, &["apiVersion"]);
        let (_, version) = crate::catalog::split_api_version(api_version);
        if version.is_empty() {
            errs.invalid(
                &child(path, "apiVersion"),
                &q(api_version),
                "version must not be empty",
            );
        }
        let kind = j::string(r, &["kind"]);
        if kind.is_empty() {
            errs.invalid(&child(path, "kind"), &q(kind), "kind must not be empty");
        }
        let name = j::string(r, &["name"]);
        if name.is_empty() {
            errs.invalid(&child(path, "name"), &q(name), "name must not be empty");
        }
        let uid = j::string(r, &["uid"]);
        if uid.is_empty() {
            errs.invalid(&child(path, "uid"), &q(uid), "uid must not be empty");
        }
        if j::bool_at(r, &["controller"]) == Some(true) {
            controllers.push(format!("{kind}/{name}"));
        }
    }
    if controllers.len() > 1 {
        errs.invalid(
            path,
            &super::json_repr(Some(&Value::Array(refs.to_vec()))),
            &format!(
                "Only one reference can have Controller set to true. Found \"true\" in references for {}",
                controllers.join(" and ")
            ),
        );
    }
}

/// `ValidateLabelSelector` for a structured selector at `path` (absent is fine here).
pub(crate) fn validate_label_selector(sel: Option<&Value>, path: &str, errs: &mut Errs) {
    let Some(sel) = sel.filter(|s| s.is_object()) else {
        return;
    };
    validate_labels(sel.get("matchLabels"), &child(path, "matchLabels"), errs);
    for (i, expr) in j::array(sel, &["matchExpressions"]).iter().enumerate() {
        let p = index(&child(path, "matchExpressions"), i);
        let values = j::array(expr, &["values"]);
        let operator = j::string(expr, &["operator"]);
        match operator {
            "In" | "NotIn" => {
                if values.is_empty() {
                    errs.required(
                        &child(&p, "values"),
                        "must be specified when `operator` is 'In' or 'NotIn'",
                    );
                }
            }
            "Exists" | "DoesNotExist" => {
                if !values.is_empty() {
                    errs.forbidden(
                        &child(&p, "values"),
                        "may not be specified when `operator` is 'Exists' or 'DoesNotExist'",
                    );
                }
            }
            other => errs.invalid(
                &child(&p, "operator"),
                &q(other),
                "not a valid selector operator",
            ),
        }
        let key = j::string(expr, &["key"]);
        errs.invalid_each(&child(&p, "key"), key, syntax::is_qualified_name(key));
        for (vi, v) in values.iter().enumerate() {
            let v = v.as_str().unwrap_or("");
            errs.invalid_each(
                &index(&child(&p, "values"), vi),
                v,
                syntax::is_valid_label_value(v),
            );
        }
    }
}

/// Whether a structured selector has neither matchLabels nor matchExpressions.
pub(crate) fn selector_is_empty(sel: &Value) -> bool {
    j::len_at(sel, &["matchLabels"]) == 0 && j::len_at(sel, &["matchExpressions"]) == 0
}
