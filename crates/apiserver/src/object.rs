//! Generic object helpers: storage keys, server-owned metadata, resourceVersion injection.

use kubelab_resources::catalog::ResourceType;
use kubelab_store::{KeyValue, Revision};
use serde_json::{json, Map, Value};

use crate::error::{ApiError, ApiResult};

/// `/registry/<group or core>/<resource>/` — every key of one resource starts with it.
pub fn resource_prefix(rt: &ResourceType) -> String {
    let group = if rt.group.is_empty() {
        "core"
    } else {
        rt.group
    };
    format!("/registry/{group}/{}/", rt.plural)
}

/// The prefix of one namespace's objects of a resource, or of all of them.
pub fn collection_prefix(rt: &ResourceType, namespace: Option<&str>) -> String {
    match namespace {
        Some(ns) if rt.namespaced => format!("{}{ns}/", resource_prefix(rt)),
        _ => resource_prefix(rt),
    }
}

pub fn object_key(rt: &ResourceType, namespace: Option<&str>, name: &str) -> String {
    match namespace {
        Some(ns) if rt.namespaced => format!("{}{ns}/{name}", resource_prefix(rt)),
        _ => format!("{}{name}", resource_prefix(rt)),
    }
}

/// Decode a stored value and set `metadata.resourceVersion` from the store revision.
pub fn from_kv(kv: &KeyValue) -> ApiResult<Value> {
    let mut obj: Value = serde_json::from_slice(&kv.value)
        .map_err(|e| ApiError::internal(format!("corrupt object at {}: {e}", kv.key)))?;
    set_resource_version(&mut obj, kv.mod_revision);
    Ok(obj)
}

/// The bytes stored for an object: everything but `metadata.resourceVersion`, which the store
/// revision provides.
/// [`from_kv`] as the given type's version: custom resources are stored once and served in
/// every version of their definition.
pub fn from_kv_as(rt: &ResourceType, kv: &KeyValue) -> ApiResult<Value> {
    let mut obj = from_kv(kv)?;
    if let Some(map) = obj.as_object_mut() {
        map.insert("apiVersion".into(), json!(rt.api_version()));
    }
    Ok(obj)
}

/// The stored form starts with `apiVersion`, `kind`, `metadata` (in that order), so that the
/// first `"metadata":{` in the bytes is the object's own: [`write_with_resource_version`] relies
/// on it.
pub fn to_stored(obj: &Value) -> ApiResult<Vec<u8>> {
    let Some(map) = obj.as_object() else {
        return serde_json::to_vec(obj).map_err(ApiError::internal);
    };
    let mut ordered = Map::with_capacity(map.len());
    for key in ["apiVersion", "kind", "metadata"] {
        if let Some(v) = map.get(key) {
            ordered.insert(key.to_string(), v.clone());
        }
    }
    for (k, v) in map {
        if !ordered.contains_key(k) {
            ordered.insert(k.clone(), v.clone());
        }
    }
    if let Some(meta) = ordered.get_mut("metadata").and_then(Value::as_object_mut) {
        meta.remove("resourceVersion");
    }
    serde_json::to_vec(&Value::Object(ordered)).map_err(ApiError::internal)
}

/// Append a stored object to `out` with its resourceVersion spliced in, without decoding it
/// (the list fast path). False, with nothing written, when the bytes are not in stored form.
pub fn write_with_resource_version(kv: &KeyValue, out: &mut Vec<u8>) -> bool {
    const MARKER: &[u8] = b"\"metadata\":{";
    let raw = &kv.value;
    let head_ok = raw.starts_with(b"{\"apiVersion\":") || raw.starts_with(b"{\"kind\":");
    let Some(pos) = head_ok
        .then(|| raw.windows(MARKER.len()).position(|w| w == MARKER))
        .flatten()
    else {
        return false;
    };
    let split = pos + MARKER.len();
    out.extend_from_slice(&raw[..split]);
    out.extend_from_slice(b"\"resourceVersion\":\"");
    out.extend_from_slice(kv.mod_revision.to_string().as_bytes());
    out.push(b'"');
    if raw.get(split) != Some(&b'}') {
        out.push(b',');
    }
    out.extend_from_slice(&raw[split..]);
    true
}

pub fn set_resource_version(obj: &mut Value, rv: Revision) {
    if let Some(meta) = metadata_mut(obj) {
        meta.insert("resourceVersion".into(), json!(rv.to_string()));
    }
}

pub fn metadata(obj: &Value) -> Option<&Map<String, Value>> {
    obj.get("metadata").and_then(Value::as_object)
}

/// The object's metadata map, created if missing. None only when the object is not a JSON object.
pub fn metadata_mut(obj: &mut Value) -> Option<&mut Map<String, Value>> {
    let map = obj.as_object_mut()?;
    let meta = map
        .entry("metadata")
        .or_insert_with(|| Value::Object(Map::new()));
    if !meta.is_object() {
        *meta = Value::Object(Map::new());
    }
    meta.as_object_mut()
}

pub fn meta_str<'a>(obj: &'a Value, field: &str) -> Option<&'a str> {
    metadata(obj)?.get(field)?.as_str()
}

pub fn name(obj: &Value) -> &str {
    meta_str(obj, "name").unwrap_or("")
}

pub fn finalizers(obj: &Value) -> Vec<String> {
    metadata(obj)
        .and_then(|m| m.get("finalizers"))
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default()
}

pub fn is_deleting(obj: &Value) -> bool {
    metadata(obj)
        .and_then(|m| m.get("deletionTimestamp"))
        .is_some_and(|v| !v.is_null())
}

/// RFC 3339 with second precision, as Kubernetes writes `metav1.Time`.
pub fn now_rfc3339() -> String {
    jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

/// Everything outside metadata and status: a change here bumps `metadata.generation`.
pub fn spec_equal(a: &Value, b: &Value) -> bool {
    let strip = |v: &Value| -> Map<String, Value> {
        v.as_object()
            .map(|m| {
                m.iter()
                    .filter(|(k, _)| {
                        !matches!(k.as_str(), "metadata" | "status" | "apiVersion" | "kind")
                    })
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect()
            })
            .unwrap_or_default()
    };
    strip(a) == strip(b)
}

/// Characters upstream uses for generateName suffixes.
const GENERATE_ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";

pub fn generate_name_suffix() -> String {
    use rand::Rng;
    let mut rng = rand::rng();
    (0..5)
        .map(|_| GENERATE_ALPHABET[rng.random_range(0..GENERATE_ALPHABET.len())] as char)
        .collect()
}

/// The group-qualified resource name used in messages: `deployments.apps`, `pods`.
pub fn qualified_resource(rt: &ResourceType) -> String {
    if rt.group.is_empty() {
        rt.plural.to_string()
    } else {
        format!("{}.{}", rt.plural, rt.group)
    }
}

pub fn not_found(rt: &ResourceType, name: &str) -> ApiError {
    ApiError::NotFound {
        group: rt.group.into(),
        kind: rt.plural.into(),
        name: name.into(),
    }
}

pub fn conflict_modified(rt: &ResourceType, name: &str) -> ApiError {
    ApiError::Conflict {
        group: rt.group.into(),
        kind: rt.plural.into(),
        name: name.into(),
        message: format!(
            "Operation cannot be fulfilled on {} \"{name}\": the object has been modified; please apply your changes to the latest version and try again",
            qualified_resource(rt)
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spec_equality_ignores_metadata_and_status() {
        let a = json!({"metadata": {"name": "a"}, "spec": {"x": 1}, "status": {"y": 1}});
        let b = json!({"metadata": {"name": "b"}, "spec": {"x": 1}, "status": {"y": 2}});
        let c = json!({"metadata": {"name": "a"}, "spec": {"x": 2}});
        assert!(spec_equal(&a, &b));
        assert!(!spec_equal(&a, &c));
    }

    #[test]
    fn stored_form_splices_resource_version() {
        let obj = json!({"data": {"x": "\"metadata\":{"}, "kind": "ConfigMap", "apiVersion": "v1",
            "metadata": {"name": "a", "resourceVersion": "3"}});
        let kv = KeyValue {
            key: "k".into(),
            value: to_stored(&obj).unwrap(),
            create_revision: 7,
            mod_revision: 9,
        };
        let mut out = Vec::new();
        assert!(write_with_resource_version(&kv, &mut out));
        let back: Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(back, from_kv(&kv).unwrap());
        assert_eq!(back["metadata"]["resourceVersion"], "9");
        let empty_meta = KeyValue {
            value: to_stored(&json!({"apiVersion": "v1", "kind": "X", "metadata": {}})).unwrap(),
            ..kv
        };
        let mut out = Vec::new();
        assert!(write_with_resource_version(&empty_meta, &mut out));
        let back: Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(back["metadata"]["resourceVersion"], "9");
    }

    #[test]
    fn generated_suffix_shape() {
        let s = generate_name_suffix();
        assert_eq!(s.len(), 5);
        assert!(s.bytes().all(|b| GENERATE_ALPHABET.contains(&b)));
    }
}
