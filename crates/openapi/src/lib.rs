//! The OpenAPI v3 documents kube-apiserver serves at `/openapi/v3` (one document per built-in
//! group-version, plus the index that lists them), built once at start-up from the resource
//! catalog and the k8s-openapi schemas, and the strict field checks of `fieldValidation`
//! (unknown fields against those schemas, duplicate fields in the raw JSON).
//!
//! kubectl reads these documents to decide whether the server validates fields itself
//! (a PATCH operation carrying the kind's `x-kubernetes-group-version-kind` and a
//! `fieldValidation` parameter), for `kubectl explain`, and for the patch metadata of
//! strategic merge. This crate is not an HTTP handler (the API server serves the bytes), does
//! not serve `/openapi/v2`, and does not validate values (types, formats, required fields):
//! that is `kubelab-resources`' validation.

mod field_metadata;
mod kinds;
mod paths;
mod strict;

use std::collections::{BTreeSet, HashMap};

use kubelab_resources::catalog::{self, ResourceType};
use schemars::generate::SchemaSettings;
use serde_json::{json, Map, Value};
use sha2::{Digest, Sha512};

pub use strict::{duplicate_fields, strict_decoding_error};

/// What `info.version` of every document says.
pub const KUBERNETES_VERSION: &str = "v1.32.0";

/// Errors while building the documents.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The catalog serves a kind this crate has no schema for.
    #[error(
        "no OpenAPI schema for kind {kind} of {api_version}: add it to crates/openapi/src/kinds.rs"
    )]
    NoSchema { api_version: String, kind: String },
    /// A document could not be serialized.
    #[error("cannot serialize the OpenAPI document of {gv_path}: {source}")]
    Serialize {
        gv_path: String,
        #[source]
        source: serde_json::Error,
    },
}

/// One serialized group-version document.
#[derive(Debug)]
struct Document {
    bytes: Vec<u8>,
    hash: String,
}

/// The OpenAPI v3 documents of every built-in group-version, and the schemas behind them.
#[derive(Debug)]
pub struct OpenApi {
    /// By group-version path (`api/v1`, `apis/apps/v1`), in catalog order.
    documents: Vec<(String, Document)>,
    /// The schemas of all documents together (names are fully qualified, so they don't clash).
    schemas: Map<String, Value>,
    /// Schema name by `(apiVersion, kind)`, for the kinds of objects clients send.
    kinds: HashMap<(String, String), String>,
}

impl OpenApi {
    /// Builds the documents of every group-version of the built-in catalog.
    pub fn build() -> Result<Self, Error> {
        let mut groups: Vec<((&str, &str), Vec<&ResourceType>)> = Vec::new();
        for rt in catalog::builtin() {
            let gv = (rt.group, rt.version);
            match groups.iter_mut().find(|(key, _)| *key == gv) {
                Some((_, resources)) => resources.push(rt),
                None => groups.push((gv, vec![rt])),
            }
        }
        let served: Vec<(&str, &str)> = groups.iter().map(|(gv, _)| *gv).collect();

        let mut openapi = OpenApi {
            documents: Vec::new(),
            schemas: Map::new(),
            kinds: HashMap::new(),
        };
        for ((group, version), resources) in &groups {
            let gv_path = gv_path(group, version);
            let built = build_document(resources, &served)?;
            let bytes = serde_json::to_vec(&built.document).map_err(|source| Error::Serialize {
                gv_path: gv_path.clone(),
                source,
            })?;
            let hash = hex_upper(&Sha512::digest(&bytes));
            for (name, schema) in built.schemas {
                openapi.schemas.entry(name).or_insert(schema);
            }
            openapi.kinds.extend(built.kinds);
            openapi.documents.push((gv_path, Document { bytes, hash }));
        }
        Ok(openapi)
    }

    /// The `/openapi/v3` index:
    /// `{"paths": {"api/v1": {"serverRelativeURL": "/openapi/v3/api/v1?hash=<HASH>"}, ...}}`.
    pub fn index(&self) -> Value {
        let paths: Map<String, Value> = self
            .documents
            .iter()
            .map(|(gv_path, document)| {
                (
                    gv_path.clone(),
                    json!({"serverRelativeURL": format!("/openapi/v3/{gv_path}?hash={}", document.hash)}),
                )
            })
            .collect();
        json!({ "paths": paths })
    }

    /// The serialized document of `api/v1` or `apis/<group>/<version>` (a leading `/` is
    /// ignored), and its hash (upper-case hex SHA-512, as upstream: use it as the ETag).
    pub fn document(&self, gv_path: &str) -> Option<(&[u8], &str)> {
        let gv_path = gv_path.trim_start_matches('/');
        self.documents
            .iter()
            .find(|(path, _)| path == gv_path)
            .map(|(_, document)| (document.bytes.as_slice(), document.hash.as_str()))
    }

    /// The group-version paths served, in catalog order (`api/v1`, `apis/apps/v1`, ...).
    pub fn group_versions(&self) -> impl Iterator<Item = &str> {
        self.documents.iter().map(|(path, _)| path.as_str())
    }

    /// The unknown fields of an object of `api_version`/`kind`, as strict decoding reports
    /// them: `unknown field "spec.replicass"`,
    /// `unknown field "spec.template.spec.containers[0].imagee"` (at most 100, in document
    /// order). Empty for kinds without a schema.
    pub fn unknown_fields(&self, api_version: &str, kind: &str, object: &Value) -> Vec<String> {
        match self.kinds.get(&(api_version.to_string(), kind.to_string())) {
            Some(schema_name) => strict::SchemaWalker {
                schemas: &self.schemas,
            }
            .unknown_fields(schema_name, object),
            None => Vec::new(),
        }
    }

    /// The schema of `api_version`/`kind` (`$ref`s point into `components.schemas` of its
    /// group-version's document).
    pub fn schema(&self, api_version: &str, kind: &str) -> Option<&Value> {
        let name = self
            .kinds
            .get(&(api_version.to_string(), kind.to_string()))?;
        self.schemas.get(name)
    }
}

/// `api/v1` for the core group, `apis/<group>/<version>` otherwise.
fn gv_path(group: &str, version: &str) -> String {
    paths::api_prefix(group, version)
        .trim_start_matches('/')
        .to_string()
}

fn api_version(group: &str, version: &str) -> String {
    if group.is_empty() {
        version.to_string()
    } else {
        format!("{group}/{version}")
    }
}

fn hex_upper(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02X}")).collect()
}

/// A document and what the strict checks need from it.
struct BuiltDocument {
    document: Value,
    schemas: Map<String, Value>,
    kinds: Vec<((String, String), String)>,
}

fn build_document(
    resources: &[&ResourceType],
    served: &[(&str, &str)],
) -> Result<BuiltDocument, Error> {
    let mut generator = SchemaSettings::openapi3().into_generator();
    let meta = kinds::add_meta_types(&mut generator);

    // (group, version, kind) -> schema name, for the kinds of resources and subresources.
    let mut names = paths::SchemaNames::new();
    let mut lists = Vec::new();
    for rt in resources {
        let name =
            kinds::add_kind(&mut generator, rt.group, rt.version, rt.kind).ok_or_else(|| {
                Error::NoSchema {
                    api_version: rt.api_version(),
                    kind: rt.kind.to_string(),
                }
            })?;
        lists.push((*rt, format!("{name}List")));
        names.insert(key(rt.group, rt.version, rt.kind), name);
        for sub in rt.subresources {
            // Connect kinds (PodExecOptions, ...) are query parameters, not bodies: no schema.
            if let Some(name) = kinds::add_kind(&mut generator, sub.group, sub.version, sub.kind) {
                names.insert(key(sub.group, sub.version, sub.kind), name);
            }
        }
    }

    let mut schemas = generator.take_definitions(true);
    for (rt, list_name) in &lists {
        let item = &names[&key(rt.group, rt.version, rt.kind)];
        schemas.insert(list_name.clone(), list_schema(rt, item, &meta.list_meta));
    }
    field_metadata::add_field_metadata(&mut schemas);

    // x-kubernetes-group-version-kind, which `kubectl explain` looks kinds up by.
    let mut kinds = Vec::new();
    for ((group, version, kind), name) in &names {
        set_gvks(&mut schemas, name, &[(group, version, kind)]);
        kinds.push(((api_version(group, version), kind.clone()), name.clone()));
    }
    for (rt, list_name) in &lists {
        let list_kind = rt.list_kind();
        set_gvks(
            &mut schemas,
            list_name,
            &[(rt.group, rt.version, &list_kind)],
        );
        kinds.push(((rt.api_version(), list_kind), list_name.clone()));
    }
    for (name, kind) in [
        (&meta.status, "Status"),
        (&meta.delete_options, "DeleteOptions"),
        (&meta.watch_event, "WatchEvent"),
    ] {
        let gvks: BTreeSet<(&str, &str, &str)> = served
            .iter()
            .map(|(group, version)| (*group, *version, kind))
            .collect();
        set_gvks(&mut schemas, name, &gvks.into_iter().collect::<Vec<_>>());
    }

    let mut paths = Map::new();
    for rt in resources {
        paths::ResourcePaths {
            resource: rt,
            schemas: &names,
            meta: &meta,
        }
        .add_to(&mut paths);
    }

    let document = json!({
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes", "version": KUBERNETES_VERSION},
        "paths": paths,
        "components": {"schemas": schemas},
    });
    Ok(BuiltDocument {
        document,
        schemas,
        kinds,
    })
}

fn key(group: &str, version: &str, kind: &str) -> (String, String, String) {
    (group.to_string(), version.to_string(), kind.to_string())
}

fn set_gvks(schemas: &mut Map<String, Value>, name: &str, gvks: &[(&str, &str, &str)]) {
    if let Some(schema) = schemas.get_mut(name).and_then(Value::as_object_mut) {
        let gvks: Vec<Value> = gvks
            .iter()
            .map(|(group, version, kind)| json!({"group": group, "kind": kind, "version": version}))
            .collect();
        schema.insert("x-kubernetes-group-version-kind".into(), Value::Array(gvks));
    }
}

/// `ConfigMapList` and friends, which k8s-openapi has as a generic `List<T>` without a schema.
fn list_schema(rt: &ResourceType, item: &str, list_meta: &str) -> Value {
    json!({
        "description": format!("{}List is a list of {} objects.", rt.kind, rt.kind),
        "type": "object",
        "properties": {
            "apiVersion": {
                "description": "APIVersion defines the versioned schema of this representation of an object. Servers should convert recognized schemas to the latest internal value, and may reject unrecognized values. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#resources",
                "type": "string",
            },
            "items": {
                "description": format!("List of {}.", rt.plural),
                "type": "array",
                "items": {"allOf": [{"$ref": format!("#/components/schemas/{item}")}], "default": {}},
            },
            "kind": {
                "description": "Kind is a string value representing the REST resource this object represents. Servers may infer this from the endpoint the client submits requests to. Cannot be updated. In CamelCase. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#types-kinds",
                "type": "string",
            },
            "metadata": {
                "description": "Standard list metadata. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#types-kinds",
                "allOf": [{"$ref": format!("#/components/schemas/{list_meta}")}],
                "default": {},
            },
        },
        "required": ["items"],
    })
}

#[cfg(test)]
mod tests;
