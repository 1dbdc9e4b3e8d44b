//! Custom resources: the types that CustomResourceDefinitions add to the API, kept current from
//! the stored CRDs, with their structural-schema validation, defaulting and pruning, printer
//! columns and scale paths.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};

use kubelab_resources::catalog::{ResourceType, Subresource};
use kubelab_resources::validation::FieldError;
use serde_json::{json, Value};

/// One served version of a custom resource.
pub struct CustomVersion {
    pub rt: &'static ResourceType,
    pub crd_name: String,
    pub schema: Option<Value>,
    pub printer_columns: Vec<PrinterColumn>,
    pub scale: Option<ScalePaths>,
    /// Every served version of the same resource (for discovery ordering and OpenAPI).
    pub storage: bool,
}

#[derive(Clone, Debug)]
pub struct PrinterColumn {
    pub name: String,
    pub type_: String,
    pub format: String,
    pub description: String,
    pub priority: i64,
    pub json_path: String,
}

/// Where a scalable object keeps its replica counts and selector (JSON pointers).
#[derive(Clone, Debug)]
pub struct ScalePaths {
    pub spec_replicas: String,
    pub status_replicas: String,
    pub label_selector: Option<String>,
}

impl ScalePaths {
    pub fn builtin() -> Self {
        ScalePaths {
            spec_replicas: "/spec/replicas".into(),
            status_replicas: "/status/replicas".into(),
            label_selector: None,
        }
    }
}

/// Every custom type currently served, by (group, version, plural).
#[derive(Default)]
pub struct CustomTypes {
    types: RwLock<HashMap<(String, String, String), Arc<CustomVersion>>>,
}

impl CustomTypes {
    pub fn find(&self, group: &str, version: &str, plural: &str) -> Option<Arc<CustomVersion>> {
        self.types
            .read()
            .ok()?
            .get(&(group.to_string(), version.to_string(), plural.to_string()))
            .cloned()
    }

    /// The custom version behind a resource type, if it is one.
    pub fn of(&self, rt: &ResourceType) -> Option<Arc<CustomVersion>> {
        self.find(rt.group, rt.version, rt.plural)
    }

    /// All served custom types, in a stable order (group, then storage version first).
    pub fn all(&self) -> Vec<Arc<CustomVersion>> {
        let mut all: Vec<Arc<CustomVersion>> = self
            .types
            .read()
            .map(|t| t.values().cloned().collect())
            .unwrap_or_default();
        all.sort_by(|a, b| {
            (a.rt.group, !a.storage, a.rt.version, a.rt.plural).cmp(&(
                b.rt.group,
                !b.storage,
                b.rt.version,
                b.rt.plural,
            ))
        });
        all
    }

    /// Replace the versions served for one CRD.
    pub fn set(&self, crd_name: &str, versions: Vec<CustomVersion>) {
        if let Ok(mut types) = self.types.write() {
            types.retain(|_, v| v.crd_name != crd_name);
            for v in versions {
                let key = (
                    v.rt.group.to_string(),
                    v.rt.version.to_string(),
                    v.rt.plural.to_string(),
                );
                types.insert(key, Arc::new(v));
            }
        }
    }

    pub fn remove(&self, crd_name: &str) {
        if let Ok(mut types) = self.types.write() {
            types.retain(|_, v| v.crd_name != crd_name);
        }
    }
}

/// Strings and descriptors of custom types live for the life of the process; identical ones are
/// shared, so re-registering a CRD costs nothing new.
fn intern(s: &str) -> &'static str {
    static POOL: Mutex<Vec<&'static str>> = Mutex::new(Vec::new());
    let mut pool = POOL.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(found) = pool.iter().find(|p| **p == s) {
        return found;
    }
    let leaked: &'static str = Box::leak(s.to_string().into_boxed_str());
    pool.push(leaked);
    leaked
}

fn intern_list(items: Vec<String>) -> &'static [&'static str] {
    static POOL: Mutex<Vec<&'static [&'static str]>> = Mutex::new(Vec::new());
    let items: Vec<&'static str> = items.iter().map(|s| intern(s)).collect();
    let mut pool = POOL.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(found) = pool.iter().find(|p| **p == items.as_slice()) {
        return found;
    }
    let leaked: &'static [&'static str] = Box::leak(items.into_boxed_slice());
    pool.push(leaked);
    leaked
}

fn intern_type(rt: ResourceType) -> &'static ResourceType {
    static POOL: Mutex<Vec<&'static ResourceType>> = Mutex::new(Vec::new());
    let mut pool = POOL.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(found) = pool.iter().find(|p| ***p == rt) {
        return found;
    }
    let leaked: &'static ResourceType = Box::leak(Box::new(rt));
    pool.push(leaked);
    leaked
}

fn intern_subresources(subs: Vec<Subresource>) -> &'static [Subresource] {
    static POOL: Mutex<Vec<&'static [Subresource]>> = Mutex::new(Vec::new());
    let mut pool = POOL.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(found) = pool.iter().find(|p| **p == subs.as_slice()) {
        return found;
    }
    let leaked: &'static [Subresource] = Box::leak(subs.into_boxed_slice());
    pool.push(leaked);
    leaked
}

const SUBRESOURCE_VERBS: &[&str] = &["get", "patch", "update"];

fn str_list(v: Option<&Value>) -> Vec<String> {
    v.and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|s| s.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default()
}

/// `.spec.replicas` (a CRD's simple JSONPath) as a JSON pointer.
fn dotted_to_pointer(path: &str) -> String {
    path.trim_start_matches('.')
        .split('.')
        .filter(|p| !p.is_empty())
        .fold(String::new(), |acc, p| format!("{acc}/{p}"))
}

/// The served versions a CRD object describes. Empty when the CRD is malformed (validation
/// keeps malformed CRDs out, so this only guards against surprises).
pub fn versions_of(crd: &Value) -> Vec<CustomVersion> {
    let crd_name = crd
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    let spec = match crd.get("spec") {
        Some(s) => s,
        None => return Vec::new(),
    };
    let group = spec
        .get("group")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let names = spec.get("names").cloned().unwrap_or_default();
    let plural = names
        .get("plural")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let kind = names
        .get("kind")
        .and_then(Value::as_str)
        .unwrap_or_default();
    if group.is_empty() || plural.is_empty() || kind.is_empty() {
        return Vec::new();
    }
    let singular = names
        .get("singular")
        .and_then(Value::as_str)
        .map(String::from)
        .unwrap_or_else(|| kind.to_ascii_lowercase());
    let namespaced = spec.get("scope").and_then(Value::as_str) != Some("Cluster");
    let short_names = intern_list(str_list(names.get("shortNames")));
    let categories = intern_list(str_list(names.get("categories")));
    let mut out = Vec::new();
    for v in spec
        .get("versions")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        if v.get("served").and_then(Value::as_bool) == Some(false) {
            continue;
        }
        let Some(version) = v.get("name").and_then(Value::as_str) else {
            continue;
        };
        let mut subs = Vec::new();
        let subresources = v.get("subresources");
        if subresources.and_then(|s| s.get("status")).is_some() {
            subs.push(Subresource {
                name: "status",
                group: intern(group),
                version: intern(version),
                kind: intern(kind),
                verbs: SUBRESOURCE_VERBS,
            });
        }
        let scale = subresources
            .and_then(|s| s.get("scale"))
            .map(|s| ScalePaths {
                spec_replicas: dotted_to_pointer(
                    s.get("specReplicasPath")
                        .and_then(Value::as_str)
                        .unwrap_or(".spec.replicas"),
                ),
                status_replicas: dotted_to_pointer(
                    s.get("statusReplicasPath")
                        .and_then(Value::as_str)
                        .unwrap_or(".status.replicas"),
                ),
                label_selector: s
                    .get("labelSelectorPath")
                    .and_then(Value::as_str)
                    .map(dotted_to_pointer),
            });
        if scale.is_some() {
            subs.push(Subresource {
                name: "scale",
                group: "autoscaling",
                version: "v1",
                kind: "Scale",
                verbs: SUBRESOURCE_VERBS,
            });
        }
        let rt = intern_type(ResourceType {
            group: intern(group),
            version: intern(version),
            kind: intern(kind),
            plural: intern(plural),
            singular: intern(&singular),
            namespaced,
            short_names,
            categories,
            subresources: intern_subresources(subs),
        });
        let printer_columns = v
            .get("additionalPrinterColumns")
            .and_then(Value::as_array)
            .map(|cols| {
                cols.iter()
                    .map(|c| PrinterColumn {
                        name: c.get("name").and_then(Value::as_str).unwrap_or("").into(),
                        type_: c
                            .get("type")
                            .and_then(Value::as_str)
                            .unwrap_or("string")
                            .into(),
                        format: c.get("format").and_then(Value::as_str).unwrap_or("").into(),
                        description: c
                            .get("description")
                            .and_then(Value::as_str)
                            .unwrap_or("")
                            .into(),
                        priority: c.get("priority").and_then(Value::as_i64).unwrap_or(0),
                        json_path: c
                            .get("jsonPath")
                            .and_then(Value::as_str)
                            .unwrap_or("")
                            .into(),
                    })
                    .collect()
            })
            .unwrap_or_default();
        out.push(CustomVersion {
            rt,
            crd_name: crd_name.clone(),
            schema: v.pointer("/schema/openAPIV3Schema").cloned(),
            printer_columns,
            scale,
            storage: v.get("storage").and_then(Value::as_bool).unwrap_or(false),
        });
    }
    out
}

/// The status the API server reports for an accepted CRD.
pub fn established_status(crd: &Value, now: &str) -> Value {
    let spec = crd.get("spec").cloned().unwrap_or_default();
    let stored: Vec<Value> = spec
        .get("versions")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter(|v| v.get("storage").and_then(Value::as_bool) == Some(true))
        .filter_map(|v| v.get("name").cloned())
        .collect();
    json!({
        "acceptedNames": spec.get("names").cloned().unwrap_or_default(),
        "conditions": [
            {"type": "NamesAccepted", "status": "True", "lastTransitionTime": now,
             "reason": "NoConflicts", "message": "no conflicts found"},
            {"type": "Established", "status": "True", "lastTransitionTime": now,
             "reason": "InitialNamesAccepted", "message": "the initial names have been accepted"},
        ],
        "storedVersions": stored,
    })
}

impl CustomVersion {
    /// Apply schema defaults, drop fields the schema doesn't know (pruning), then validate.
    pub fn admit(&self, obj: &mut Value) -> Vec<FieldError> {
        let Some(schema) = &self.schema else {
            return Vec::new();
        };
        let Some(map) = obj.as_object_mut() else {
            return Vec::new();
        };
        let mut errors = Vec::new();
        let props = schema.get("properties").and_then(Value::as_object);
        let preserve = preserves_unknown(schema);
        let keys: Vec<String> = map.keys().cloned().collect();
        for key in keys {
            if matches!(key.as_str(), "apiVersion" | "kind" | "metadata") {
                continue;
            }
            match props.and_then(|p| p.get(&key)) {
                Some(field_schema) => {
                    if let Some(value) = map.get_mut(&key) {
                        default_and_prune(value, field_schema);
                        validate(value, field_schema, &key, &mut errors);
                    }
                }
                None if preserve => {}
                None => {
                    map.remove(&key);
                }
            }
        }
        if let Some(props) = props {
            for (key, field_schema) in props {
                if matches!(key.as_str(), "apiVersion" | "kind" | "metadata") {
                    continue;
                }
                if !map.contains_key(key) {
                    if let Some(d) = field_schema.get("default") {
                        let mut d = d.clone();
                        default_and_prune(&mut d, field_schema);
                        map.insert(key.clone(), d);
                    }
                }
            }
        }
        for req in str_list(schema.get("required")) {
            if matches!(req.as_str(), "apiVersion" | "kind" | "metadata") {
                continue;
            }
            if !map.contains_key(&req) {
                errors.push(FieldError {
                    reason: "FieldValueRequired",
                    field: req.clone(),
                    message: "Required value".into(),
                });
            }
        }
        errors
    }
}

fn preserves_unknown(schema: &Value) -> bool {
    schema
        .get("x-kubernetes-preserve-unknown-fields")
        .and_then(Value::as_bool)
        .unwrap_or(false)
}

/// Fill `default`s of missing properties and prune unknown ones, recursively.
fn default_and_prune(value: &mut Value, schema: &Value) {
    if schema
        .get("x-kubernetes-int-or-string")
        .and_then(Value::as_bool)
        == Some(true)
        || schema
            .get("x-kubernetes-embedded-resource")
            .and_then(Value::as_bool)
            == Some(true)
    {
        return;
    }
    match value {
        Value::Object(map) => {
            if let Some(props) = schema.get("properties").and_then(Value::as_object) {
                for (key, field_schema) in props {
                    if !map.contains_key(key) {
                        if let Some(d) = field_schema.get("default") {
                            map.insert(key.clone(), d.clone());
                        }
                    }
                }
                let preserve = preserves_unknown(schema);
                let additional = schema.get("additionalProperties");
                let keys: Vec<String> = map.keys().cloned().collect();
                for key in keys {
                    match props.get(&key) {
                        Some(s) => {
                            if let Some(v) = map.get_mut(&key) {
                                default_and_prune(v, s);
                            }
                        }
                        None if preserve
                            || additional.is_some_and(|a| a != &Value::Bool(false)) => {}
                        None => {
                            map.remove(&key);
                        }
                    }
                }
            } else if let Some(additional) =
                schema.get("additionalProperties").filter(|a| a.is_object())
            {
                for v in map.values_mut() {
                    default_and_prune(v, additional);
                }
            } else if !preserves_unknown(schema)
                && schema.get("type").and_then(Value::as_str) == Some("object")
                && schema.get("additionalProperties").is_none()
            {
                // An object with no properties and no additionalProperties keeps nothing.
                map.clear();
            }
        }
        Value::Array(items) => {
            if let Some(item_schema) = schema.get("items") {
                for item in items {
                    default_and_prune(item, item_schema);
                }
            }
        }
        _ => {}
    }
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// Structural-schema validation of one value: types, required, enum, bounds, lengths.
fn validate(value: &Value, schema: &Value, path: &str, errors: &mut Vec<FieldError>) {
    let int_or_string = schema
        .get("x-kubernetes-int-or-string")
        .and_then(Value::as_bool)
        == Some(true);
    if value.is_null() {
        if schema.get("nullable").and_then(Value::as_bool) != Some(true)
            && schema.get("type").is_some()
        {
            errors.push(FieldError {
                reason: "FieldValueTypeInvalid",
                field: path.into(),
                message: format!(
                    "Invalid value: \"null\": {path} in body must be of type {}: \"null\"",
                    schema
                        .get("type")
                        .and_then(Value::as_str)
                        .unwrap_or("object")
                ),
            });
        }
        return;
    }
    if int_or_string {
        if !matches!(type_name(value), "integer" | "string") {
            errors.push(FieldError {
                reason: "FieldValueTypeInvalid",
                field: path.into(),
                message: format!(
                    "Invalid value: {value}: {path} in body must be of type integer or string"
                ),
            });
        }
        return;
    }
    if let Some(want) = schema.get("type").and_then(Value::as_str) {
        let have = type_name(value);
        let ok = have == want || (want == "number" && have == "integer");
        if !ok {
            errors.push(FieldError {
                reason: "FieldValueTypeInvalid",
                field: path.into(),
                message: format!(
                    "Invalid value: \"{have}\": {path} in body must be of type {want}: \"{have}\""
                ),
            });
            return;
        }
    }
    if let Some(allowed) = schema.get("enum").and_then(Value::as_array) {
        if !allowed.contains(value) {
            let list: Vec<String> = allowed.iter().map(Value::to_string).collect();
            errors.push(FieldError {
                reason: "FieldValueNotSupported",
                field: path.into(),
                message: format!(
                    "Unsupported value: {value}: supported values: {}",
                    list.join(", ")
                ),
            });
        }
    }
    if let Some(n) = value.as_f64() {
        if let Some(min) = schema.get("minimum").and_then(Value::as_f64) {
            if n < min {
                errors.push(FieldError {
                    reason: "FieldValueInvalid",
                    field: path.into(),
                    message: format!("Invalid value: {value}: {path} in body should be greater than or equal to {min}"),
                });
            }
        }
        if let Some(max) = schema.get("maximum").and_then(Value::as_f64) {
            if n > max {
                errors.push(FieldError {
                    reason: "FieldValueInvalid",
                    field: path.into(),
                    message: format!("Invalid value: {value}: {path} in body should be less than or equal to {max}"),
                });
            }
        }
    }
    if let Some(s) = value.as_str() {
        let len = s.chars().count() as u64;
        if let Some(max) = schema.get("maxLength").and_then(Value::as_u64) {
            if len > max {
                errors.push(FieldError {
                    reason: "FieldValueTooLong",
                    field: path.into(),
                    message: format!("Too long: may not be more than {max} bytes"),
                });
            }
        }
        if let Some(min) = schema.get("minLength").and_then(Value::as_u64) {
            if len < min {
                errors.push(FieldError {
                    reason: "FieldValueInvalid",
                    field: path.into(),
                    message: format!("Invalid value: \"{s}\": {path} in body should be at least {min} chars long"),
                });
            }
        }
    }
    match value {
        Value::Object(map) => {
            for req in str_list(schema.get("required")) {
                if !map.contains_key(&req) {
                    errors.push(FieldError {
                        reason: "FieldValueRequired",
                        field: format!("{path}.{req}"),
                        message: "Required value".into(),
                    });
                }
            }
            let props = schema.get("properties").and_then(Value::as_object);
            let additional = schema.get("additionalProperties").filter(|a| a.is_object());
            for (k, v) in map {
                if let Some(s) = props.and_then(|p| p.get(k)).or(additional) {
                    validate(v, s, &format!("{path}.{k}"), errors);
                }
            }
        }
        Value::Array(items) => {
            if let Some(max) = schema.get("maxItems").and_then(Value::as_u64) {
                if items.len() as u64 > max {
                    errors.push(FieldError {
                        reason: "FieldValueTooMany",
                        field: path.into(),
                        message: format!(
                            "Too many: {}: must have at most {max} items",
                            items.len()
                        ),
                    });
                }
            }
            if let Some(s) = schema.get("items") {
                for (i, item) in items.iter().enumerate() {
                    validate(item, s, &format!("{path}[{i}]"), errors);
                }
            }
        }
        _ => {}
    }
}

/// Evaluate a printer column's simple JSONPath (`.spec.size`, `.status.conditions[0].type`).
pub fn json_path_value<'a>(obj: &'a Value, path: &str) -> Option<&'a Value> {
    let mut cur = obj;
    for part in path.trim_start_matches('.').split('.') {
        if part.is_empty() {
            continue;
        }
        let (name, index) = match part.find('[') {
            Some(i) => (&part[..i], Some(&part[i..])),
            None => (part, None),
        };
        if !name.is_empty() {
            cur = cur.get(name)?;
        }
        if let Some(index) = index {
            for idx in index.split('[').filter(|s| !s.is_empty()) {
                let n: usize = idx.trim_end_matches(']').parse().ok()?;
                cur = cur.get(n)?;
            }
        }
    }
    Some(cur)
}

/// Table columns and cells for a custom type.
pub fn table_columns(cv: &CustomVersion) -> Vec<Value> {
    let mut cols = vec![json!({"name": "Name", "type": "string", "format": "name",
        "description": "Name must be unique within a namespace.", "priority": 0})];
    if cv.printer_columns.is_empty() {
        cols.push(json!({"name": "Age", "type": "date", "format": "",
            "description": "CreationTimestamp is a timestamp representing the server time when this object was created.",
            "priority": 0}));
    }
    for c in &cv.printer_columns {
        cols.push(json!({"name": c.name, "type": c.type_, "format": c.format,
            "description": c.description, "priority": c.priority}));
    }
    cols
}

pub fn table_cells(cv: &CustomVersion, obj: &Value, now: jiff::Timestamp) -> Vec<Value> {
    let age = |v: Option<&Value>| -> Value {
        let ts = v
            .and_then(Value::as_str)
            .and_then(|s| s.parse::<jiff::Timestamp>().ok());
        match ts {
            Some(t) => json!(kubelab_resources::tables::human_duration(
                now.duration_since(t)
            )),
            None => json!("<unknown>"),
        }
    };
    let mut cells = vec![obj.pointer("/metadata/name").cloned().unwrap_or(json!(""))];
    if cv.printer_columns.is_empty() {
        cells.push(age(obj.pointer("/metadata/creationTimestamp")));
    }
    for c in &cv.printer_columns {
        let v = json_path_value(obj, &c.json_path);
        cells.push(match (c.type_.as_str(), v) {
            (_, None) => Value::Null,
            ("date", v) => age(v),
            (_, Some(Value::Object(_) | Value::Array(_))) => json!(v.map(Value::to_string)),
            (_, Some(v)) => v.clone(),
        });
    }
    cells
}

/// Fields of `obj` that the schema would prune, as strict-decoding messages
/// (`unknown field "spec.colour"`).
pub fn unknown_fields(cv: &CustomVersion, obj: &Value) -> Vec<String> {
    let mut out = Vec::new();
    if let Some(schema) = &cv.schema {
        collect_unknown(obj, schema, "", true, &mut out);
    }
    out
}

fn collect_unknown(value: &Value, schema: &Value, path: &str, top: bool, out: &mut Vec<String>) {
    if preserves_unknown(schema)
        || schema
            .get("x-kubernetes-int-or-string")
            .and_then(Value::as_bool)
            == Some(true)
        || schema
            .get("x-kubernetes-embedded-resource")
            .and_then(Value::as_bool)
            == Some(true)
    {
        return;
    }
    let join = |k: &str| {
        if path.is_empty() {
            k.to_string()
        } else {
            format!("{path}.{k}")
        }
    };
    match value {
        Value::Object(map) => {
            let props = schema.get("properties").and_then(Value::as_object);
            let additional = schema.get("additionalProperties");
            for (k, v) in map {
                if top && matches!(k.as_str(), "apiVersion" | "kind" | "metadata") {
                    continue;
                }
                match props.and_then(|p| p.get(k)) {
                    Some(s) => collect_unknown(v, s, &join(k), false, out),
                    None => match additional {
                        Some(a) if a.is_object() => collect_unknown(v, a, &join(k), false, out),
                        Some(Value::Bool(true)) => {}
                        _ => out.push(format!("unknown field \"{}\"", join(k))),
                    },
                }
            }
        }
        Value::Array(items) => {
            if let Some(s) = schema.get("items") {
                for (i, item) in items.iter().enumerate() {
                    collect_unknown(item, s, &format!("{path}[{i}]"), false, out);
                }
            }
        }
        _ => {}
    }
}

/// The OpenAPI v3 document of one custom group-version: enough for kubectl's field-validation
/// probe (PATCH operations with the GVK and `fieldValidation`) and for `kubectl explain`.
pub fn openapi_document(group: &str, version: &str, types: &[Arc<CustomVersion>]) -> Value {
    let mut paths = serde_json::Map::new();
    let mut schemas = serde_json::Map::new();
    let reversed_group: Vec<&str> = group.split('.').rev().collect();
    let schema_prefix = reversed_group.join(".");
    for cv in types {
        let rt = cv.rt;
        let gvk = json!({"group": group, "version": version, "kind": rt.kind});
        let schema_name = format!("{schema_prefix}.{version}.{}", rt.kind);
        let reference = json!({"$ref": format!("#/components/schemas/{schema_name}")});
        let params = json!([
            {"name": "dryRun", "in": "query", "schema": {"type": "string", "uniqueItems": true}},
            {"name": "fieldManager", "in": "query", "schema": {"type": "string", "uniqueItems": true}},
            {"name": "fieldValidation", "in": "query", "schema": {"type": "string", "uniqueItems": true}},
        ]);
        let op = |action: &str, verb: &str| {
            json!({
                "operationId": format!("{verb}{}", rt.kind),
                "x-kubernetes-action": action,
                "x-kubernetes-group-version-kind": gvk,
                "parameters": params,
                "responses": {"200": {"description": "OK", "content": {"application/json": {"schema": reference}}}},
            })
        };
        let base = if rt.namespaced {
            format!(
                "/apis/{group}/{version}/namespaces/{{namespace}}/{}",
                rt.plural
            )
        } else {
            format!("/apis/{group}/{version}/{}", rt.plural)
        };
        paths.insert(
            base.clone(),
            json!({"get": op("list", "list"), "post": op("post", "create")}),
        );
        let mut patch = op("patch", "patch");
        patch["requestBody"] = json!({"content": {
            "application/json-patch+json": {"schema": {"type": "object"}},
            "application/merge-patch+json": {"schema": {"type": "object"}},
            "application/apply-patch+yaml": {"schema": {"type": "object"}},
        }});
        paths.insert(
            format!("{base}/{{name}}"),
            json!({"get": op("get", "read"), "put": op("put", "replace"), "patch": patch, "delete": op("delete", "delete")}),
        );
        let mut schema = cv
            .schema
            .clone()
            .unwrap_or_else(|| json!({"type": "object"}));
        if let Some(props) = schema.get_mut("properties").and_then(Value::as_object_mut) {
            props.insert("apiVersion".into(), json!({"type": "string",
                "description": "APIVersion defines the versioned schema of this representation of an object."}));
            props.insert("kind".into(), json!({"type": "string",
                "description": "Kind is a string value representing the REST resource this object represents."}));
            props.insert("metadata".into(), json!({"type": "object",
                "description": "Standard object's metadata. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#metadata"}));
        }
        schema["x-kubernetes-group-version-kind"] = json!([gvk]);
        schemas.insert(schema_name, schema);
    }
    json!({
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes CRD Swagger", "version": "v0.1.0"},
        "paths": paths,
        "components": {"schemas": schemas},
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn crd() -> Value {
        json!({
            "metadata": {"name": "widgets.example.com"},
            "spec": {
                "group": "example.com",
                "scope": "Namespaced",
                "names": {"plural": "widgets", "singular": "widget", "kind": "Widget", "shortNames": ["wd"]},
                "versions": [{
                    "name": "v1", "served": true, "storage": true,
                    "subresources": {"status": {}, "scale": {"specReplicasPath": ".spec.size", "statusReplicasPath": ".status.size"}},
                    "additionalPrinterColumns": [{"name": "Size", "type": "integer", "jsonPath": ".spec.size"}],
                    "schema": {"openAPIV3Schema": {"type": "object", "properties": {
                        "spec": {"type": "object", "required": ["size"], "properties": {
                            "size": {"type": "integer", "minimum": 1},
                            "color": {"type": "string", "default": "blue", "enum": ["blue", "red"]}
                        }},
                        "status": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}
                    }}}
                }]
            }
        })
    }

    #[test]
    fn versions_describe_the_type() {
        let vs = versions_of(&crd());
        assert_eq!(vs.len(), 1);
        let v = &vs[0];
        assert_eq!(v.rt.kind, "Widget");
        assert_eq!(v.rt.short_names, &["wd"]);
        assert!(v.rt.has_status());
        assert_eq!(v.scale.as_ref().unwrap().spec_replicas, "/spec/size");
        // Interning hands out the same descriptor again.
        let again = versions_of(&crd());
        assert!(std::ptr::eq(v.rt, again[0].rt));
    }

    #[test]
    fn admission_defaults_prunes_and_validates() {
        let v = &versions_of(&crd())[0];
        let mut ok = json!({"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "a"},
            "spec": {"size": 2, "extra": 1}, "junk": true});
        assert!(v.admit(&mut ok).is_empty());
        assert_eq!(ok["spec"]["color"], "blue");
        assert!(ok["spec"].get("extra").is_none());
        assert!(ok.get("junk").is_none());
        let mut bad = json!({"spec": {"size": "big", "color": "green"}});
        let errs = v.admit(&mut bad);
        assert!(errs.iter().any(|e| e.field == "spec.size"), "{errs:?}");
        assert!(errs.iter().any(|e| e.field == "spec.color"), "{errs:?}");
        let mut missing = json!({"spec": {}});
        let errs = v.admit(&mut missing);
        assert!(errs
            .iter()
            .any(|e| e.field == "spec.size" && e.reason == "FieldValueRequired"));
    }

    #[test]
    fn printer_columns_render() {
        let v = &versions_of(&crd())[0];
        let cols = table_columns(v);
        assert_eq!(cols[1]["name"], "Size");
        let cells = table_cells(
            v,
            &json!({"metadata": {"name": "a"}, "spec": {"size": 3}}),
            jiff::Timestamp::now(),
        );
        assert_eq!(cells, vec![json!("a"), json!(3)]);
    }
}
