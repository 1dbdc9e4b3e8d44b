//! Decodes Kubernetes protobuf request bodies (`Content-Type: application/vnd.kubernetes.protobuf`)
//! into the JSON object a JSON client would have sent for the same object. kubectl 1.32+ sends
//! protobuf for every typed-client command (`create <generator>`, `create token`, `auth can-i`,
//! `auth whoami`, drain's evictions) and does not fall back to JSON on 415, so the API server
//! decodes here and then handles the body exactly like a JSON one.
//!
//! A body is the magic `k8s\0` followed by a `runtime.Unknown` envelope whose `typeMeta` names the
//! kind and whose `raw` holds the object message. The message is decoded with the prost types of
//! [`k8s_pb`] and turned into JSON by per-message field tables (`src/generated.rs`, produced by
//! `tools/generate.py` from the Go API types: JSON names and `omitempty` behaviour are Go's,
//! matched to prost fields by protobuf tag number). Every kind of every GA group-version is
//! covered; [`KINDS`] lists them.
//!
//! This crate is not a protobuf encoder (responses are JSON: kubectl's Accept always includes
//! `application/json`), does not validate or default objects, and knows nothing about
//! CustomResourceDefinition schemas or alpha/beta versions.

mod fields;
mod generated;
mod special;

use prost::Message;
use serde_json::{Map, Value};

use fields::ToJson;

/// The Content-Type of a Kubernetes protobuf body.
pub const MEDIA_TYPE: &str = "application/vnd.kubernetes.protobuf";

/// The four bytes every Kubernetes protobuf body starts with.
pub const MAGIC: &[u8] = b"k8s\0";

/// Kinds that are the same message in every group-version: a typed client sends them tagged
/// with its own group-version (`apps/v1` `DeleteOptions`).
const META_KINDS: &str = "meta.k8s.io/v1";

/// Why a protobuf body could not be turned into JSON.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("protobuf body does not start with the magic bytes k8s\\0 (6b 38 73 00)")]
    BadMagic,
    #[error("cannot decode the runtime.Unknown envelope of a protobuf body: {0}")]
    Envelope(#[source] prost::DecodeError),
    #[error("protobuf envelope has no {field}; it must name the object's apiVersion and kind")]
    MissingTypeMeta { field: &'static str },
    #[error(
        "protobuf envelope uses content encoding {encoding:?}; only unencoded bodies are supported"
    )]
    ContentEncoding { encoding: String },
    #[error(
        "protobuf bodies of kind {kind} in {api_version} are not supported; send JSON instead"
    )]
    UnsupportedKind { api_version: String, kind: String },
    #[error("cannot decode the {kind} message in a protobuf body: {source}")]
    Message {
        kind: String,
        #[source]
        source: prost::DecodeError,
    },
    #[error("protobuf envelope says content type application/json but raw is not JSON: {0}")]
    RawJson(#[source] serde_json::Error),
    #[error("{message} in a protobuf body does not hold JSON: {source}")]
    EmbeddedJson {
        message: &'static str,
        #[source]
        source: serde_json::Error,
    },
    #[error("protobuf envelope holds JSON that is not an object")]
    NotAnObject,
    #[error("protobuf body nests objects (runtime.RawExtension) more than {limit} deep")]
    TooDeep { limit: u32 },
    #[error("time {seconds}s {nanos}ns is outside the years 0000-9999 that RFC 3339 can write")]
    Time { seconds: i64, nanos: i32 },
    #[error("number {value} has no JSON form")]
    NotFinite { value: f64 },
}

/// Decodes a `k8s\0` + `runtime.Unknown` body into the JSON object a JSON client would send,
/// with `apiVersion` and `kind` taken from the envelope.
pub fn decode(body: &[u8]) -> Result<Value, DecodeError> {
    let envelope = body.strip_prefix(MAGIC).ok_or(DecodeError::BadMagic)?;
    let unknown = k8s_pb::apimachinery::pkg::runtime::Unknown::decode(envelope)
        .map_err(DecodeError::Envelope)?;
    let type_meta = unknown.type_meta.unwrap_or_default();
    let api_version = type_meta
        .api_version
        .filter(|value| !value.is_empty())
        .ok_or(DecodeError::MissingTypeMeta {
            field: "apiVersion",
        })?;
    let kind = type_meta
        .kind
        .filter(|value| !value.is_empty())
        .ok_or(DecodeError::MissingTypeMeta { field: "kind" })?;
    if let Some(encoding) = unknown.content_encoding.filter(|value| !value.is_empty()) {
        return Err(DecodeError::ContentEncoding { encoding });
    }
    let raw = unknown.raw.unwrap_or_default();

    let fields = match unknown.content_type.as_deref() {
        Some(content_type) if content_type.starts_with("application/json") => {
            serde_json::from_slice(&raw).map_err(DecodeError::RawJson)?
        }
        _ => match generated::convert(&api_version, &kind, &raw) {
            Err(DecodeError::UnsupportedKind { .. }) => generated::convert(META_KINDS, &kind, &raw)
                .map_err(|error| match error {
                    DecodeError::UnsupportedKind { .. } => DecodeError::UnsupportedKind {
                        api_version: api_version.clone(),
                        kind: kind.clone(),
                    },
                    other => other,
                })?,
            other => other?,
        },
    };

    let Value::Object(fields) = fields else {
        return Err(DecodeError::NotAnObject);
    };
    let mut object = Map::new();
    object.insert("apiVersion".to_owned(), Value::String(api_version));
    object.insert("kind".to_owned(), Value::String(kind));
    for (name, value) in fields {
        object.entry(name).or_insert(value);
    }
    Ok(Value::Object(object))
}

fn object<T: Message + Default + ToJson>(kind: &str, raw: &[u8]) -> Result<Value, DecodeError> {
    let message = T::decode(raw).map_err(|source| DecodeError::Message {
        kind: kind.to_owned(),
        source,
    })?;
    message.to_json()
}

/// `kinds! { "apiVersion" "Kind" => path::To::Message; ... }` builds [`KINDS`] and the
/// dispatch from an envelope's type to its message.
macro_rules! kinds {
    ($($api_version:literal $kind:literal => $($segment:ident)::+;)*) => {
        /// Every (apiVersion, kind) [`decode`](crate::decode) accepts. Kinds of
        /// `meta.k8s.io/v1` (DeleteOptions, CreateOptions, ...) are also accepted under any
        /// apiVersion.
        pub const KINDS: &[(&str, &str)] = &[$(($api_version, $kind),)*];

        pub(crate) fn convert(
            api_version: &str,
            kind: &str,
            raw: &[u8],
        ) -> Result<serde_json::Value, $crate::DecodeError> {
            match (api_version, kind) {
                $(($api_version, $kind) => $crate::object::<k8s_pb::$($segment)::+>(kind, raw),)*
                _ => Err($crate::DecodeError::UnsupportedKind {
                    api_version: api_version.to_owned(),
                    kind: kind.to_owned(),
                }),
            }
        }
    };
}
use kinds;

pub use generated::KINDS;
