//! Query parameters, request bodies and content negotiation.

use http::HeaderMap;
use serde_json::Value;

use crate::error::{ApiError, ApiResult};

/// Query parameters as sent (repeated keys kept).
#[derive(Debug, Default, Clone)]
pub struct Query {
    pairs: Vec<(String, String)>,
}

impl Query {
    pub fn parse(raw: Option<&str>) -> ApiResult<Self> {
        let pairs = match raw {
            None | Some("") => Vec::new(),
            Some(raw) => serde_urlencoded::from_str::<Vec<(String, String)>>(raw)
                .map_err(|e| ApiError::bad_request(format!("invalid query string: {e}")))?,
        };
        Ok(Query { pairs })
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.pairs
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// A parameter that must be empty or absent; non-empty values are returned.
    pub fn non_empty(&self, key: &str) -> Option<&str> {
        self.get(key).filter(|v| !v.is_empty())
    }

    pub fn flag(&self, key: &str) -> bool {
        matches!(self.get(key), Some("true" | "1"))
    }

    pub fn int(&self, key: &str) -> ApiResult<Option<i64>> {
        match self.non_empty(key) {
            None => Ok(None),
            Some(v) => v.parse::<i64>().map(Some).map_err(|_| {
                ApiError::bad_request(format!("invalid value for {key}: {v:?} is not an integer"))
            }),
        }
    }

    pub fn dry_run(&self) -> ApiResult<bool> {
        let mut dry = false;
        for (k, v) in &self.pairs {
            if k == "dryRun" {
                match v.as_str() {
                    "All" => dry = true,
                    "" => {}
                    other => {
                        return Err(ApiError::bad_request(format!(
                            "invalid dry run value: {other:?}, supported values: All"
                        )))
                    }
                }
            }
        }
        Ok(dry)
    }
}

/// What the client wants back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Output {
    Object,
    /// `application/json;as=Table;v=v1|v1beta1;g=meta.k8s.io`
    Table {
        v1beta1: bool,
    },
    /// `as=PartialObjectMetadata` / `PartialObjectMetadataList`
    Metadata,
}

pub fn negotiate(headers: &HeaderMap) -> Output {
    let accept = headers
        .get(http::header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    for media in accept.split(',') {
        let params: Vec<&str> = media.split(';').map(str::trim).collect();
        let base = params.first().copied().unwrap_or("");
        if base != "application/json" && base != "*/*" {
            continue;
        }
        let param = |name: &str| {
            params
                .iter()
                .skip(1)
                .find_map(|p| p.strip_prefix(name).and_then(|r| r.strip_prefix('=')))
        };
        match (param("as"), param("g"), param("v")) {
            (None, _, _) => return Output::Object,
            (Some("Table"), Some("meta.k8s.io"), Some(v)) if v == "v1" || v == "v1beta1" => {
                return Output::Table {
                    v1beta1: v == "v1beta1",
                }
            }
            (
                Some("PartialObjectMetadata" | "PartialObjectMetadataList"),
                Some("meta.k8s.io"),
                _,
            ) => return Output::Metadata,
            _ => continue,
        }
    }
    Output::Object
}

/// The media type of a request body, without parameters.
pub fn content_type(headers: &HeaderMap) -> String {
    headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("application/json")
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase()
}

/// Decode an object body sent as JSON or YAML.
pub fn decode_object(body: &[u8], content_type: &str) -> ApiResult<Value> {
    let value: Value = match content_type {
        "application/json" | "" | "*/*" => serde_json::from_slice(body).map_err(|e| {
            ApiError::bad_request(format!(
                "the object provided is unrecognized (json parse error: {e})"
            ))
        })?,
        "application/yaml" | "application/x-yaml" | "text/yaml" => serde_yaml::from_slice(body)
            .map_err(|e| {
                ApiError::bad_request(format!(
                    "the object provided is unrecognized (yaml parse error: {e})"
                ))
            })?,
        kubelab_protobuf::MEDIA_TYPE => kubelab_protobuf::decode(body).map_err(|e| {
            ApiError::bad_request(format!(
                "the object provided is unrecognized (protobuf: {e})"
            ))
        })?,
        other => {
            return Err(ApiError::UnsupportedMediaType {
                content_type: other.to_string(),
            })
        }
    };
    if !value.is_object() {
        return Err(ApiError::bad_request(
            "the object provided is unrecognized: expected a JSON object",
        ));
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn accept(v: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(http::header::ACCEPT, v.parse().unwrap());
        h
    }

    #[test]
    fn negotiates_tables_like_kubectl() {
        let kubectl = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json;as=Table;v=v1beta1;g=meta.k8s.io,application/json";
        assert_eq!(
            negotiate(&accept(kubectl)),
            Output::Table { v1beta1: false }
        );
        assert_eq!(negotiate(&accept("application/json")), Output::Object);
        assert_eq!(
            negotiate(&accept(
                "application/vnd.kubernetes.protobuf,application/json"
            )),
            Output::Object
        );
        assert_eq!(
            negotiate(&accept(
                "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1"
            )),
            Output::Metadata
        );
    }

    #[test]
    fn decodes_json_and_yaml() {
        assert!(decode_object(b"{\"a\":1}", "application/json").is_ok());
        assert!(decode_object(b"a: 1\n", "application/yaml").is_ok());
        assert!(matches!(
            decode_object(b"{", "application/json"),
            Err(ApiError::BadRequest { .. })
        ));
        assert!(matches!(
            decode_object(b"a: [", "application/yaml"),
            Err(ApiError::BadRequest { .. })
        ));
        assert!(matches!(
            decode_object(b"[1]", "application/json"),
            Err(ApiError::BadRequest { .. })
        ));
    }
}
