//! Server-side `meta.k8s.io/v1 Table` and `PartialObjectMetadata` renderings.

use kubelab_resources::catalog::ResourceType;
use kubelab_resources::tables;
use serde_json::{json, Value};

use crate::custom::{self, CustomVersion};
use crate::error::{ApiError, ApiResult};

/// `includeObject`: what each row carries besides its cells.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Include {
    None,
    Metadata,
    Object,
}

impl Include {
    pub fn parse(v: Option<&str>) -> ApiResult<Self> {
        match v {
            None | Some("") | Some("Metadata") => Ok(Include::Metadata),
            Some("None") => Ok(Include::None),
            Some("Object") => Ok(Include::Object),
            Some(other) => Err(ApiError::bad_request(format!(
                "includeObject: Unsupported value: {other:?}: supported values: \"Metadata\", \"None\", \"Object\""
            ))),
        }
    }
}

pub fn partial_metadata(obj: &Value) -> Value {
    json!({
        "kind": "PartialObjectMetadata",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": obj.get("metadata").cloned().unwrap_or_else(|| json!({})),
    })
}

pub fn partial_metadata_list(items: &[Value], list_meta: Value) -> Value {
    json!({
        "kind": "PartialObjectMetadataList",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": list_meta,
        "items": items.iter().map(partial_metadata).collect::<Vec<_>>(),
    })
}

pub struct TableOptions {
    pub include: Include,
    pub v1beta1: bool,
    /// Column definitions are omitted in watch events after the first (upstream `NoHeaders`).
    pub headers: bool,
}

pub fn table(
    rt: &ResourceType,
    custom: Option<&CustomVersion>,
    objs: &[Value],
    list_meta: Value,
    opts: &TableOptions,
) -> Value {
    let now = jiff::Timestamp::now();
    let rows: Vec<Value> = objs
        .iter()
        .map(|obj| {
            let cells = match custom {
                Some(cv) => custom::table_cells(cv, obj, now),
                None => tables::cells(rt, obj, now),
            };
            let mut row = json!({"cells": cells});
            match opts.include {
                Include::None => {}
                Include::Metadata => row["object"] = partial_metadata(obj),
                Include::Object => row["object"] = obj.clone(),
            }
            row
        })
        .collect();
    let mut t = json!({
        "kind": "Table",
        "apiVersion": if opts.v1beta1 { "meta.k8s.io/v1beta1" } else { "meta.k8s.io/v1" },
        "metadata": list_meta,
        "rows": rows,
    });
    if opts.headers {
        t["columnDefinitions"] = match custom {
            Some(cv) => Value::Array(custom::table_columns(cv)),
            None => serde_json::to_value(tables::columns(rt)).unwrap_or_default(),
        };
    }
    t
}
