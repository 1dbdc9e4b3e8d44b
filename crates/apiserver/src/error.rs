//! API errors and their one mapping to a Kubernetes `Status` response.

use axum::response::{IntoResponse, Response};
use http::StatusCode;
use kubelab_resources::validation::FieldError;
use serde_json::{json, Value};

/// Every failure of a request. Converted to a `Status` object in exactly one place
/// ([`ApiError::status_body`]).
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{message}")]
    BadRequest { message: String },
    #[error("Unauthorized")]
    Unauthorized,
    #[error("{message}")]
    Forbidden {
        message: String,
        details: Option<Details>,
    },
    #[error("{kind} \"{name}\" not found")]
    NotFound {
        group: String,
        kind: String,
        name: String,
    },
    #[error("the server could not find the requested resource")]
    NoRoute,
    #[error("the server does not allow this method on the requested resource")]
    MethodNotAllowed,
    #[error("{kind} \"{name}\" already exists")]
    AlreadyExists {
        group: String,
        kind: String,
        name: String,
    },
    #[error("{message}")]
    Conflict {
        group: String,
        kind: String,
        name: String,
        message: String,
    },
    #[error("{message}")]
    Gone { message: String },
    /// Server-side apply conflicts: (field, message) per conflicting field.
    #[error("{message}")]
    ApplyConflict {
        message: String,
        causes: Vec<(String, String)>,
    },
    #[error("{kind} \"{name}\" is invalid: {}", summarize(.causes))]
    Invalid {
        group: String,
        kind: String,
        name: String,
        causes: Vec<FieldError>,
    },
    #[error("the body of the request was in an unknown format - accepted media types include: application/json, application/yaml")]
    UnsupportedMediaType { content_type: String },
    #[error("the request body is too large: the limit is {limit} bytes")]
    TooLarge { limit: usize },
    #[error("{message}")]
    NotAcceptable { message: String },
    /// 429, with `details.retryAfterSeconds` (and the Retry-After header) when non-zero and the
    /// causes as (reason, message).
    #[error("{message}")]
    TooManyRequests {
        message: String,
        retry_after_seconds: u32,
        causes: Vec<(String, String)>,
    },
    #[error("Internal error occurred: {message}")]
    Internal { message: String },
    /// 503: a backend the request needs (a kubelet) cannot be reached.
    #[error("{message}")]
    ServiceUnavailable { message: String },
}

#[derive(Debug, Clone)]
pub struct Details {
    pub group: String,
    pub kind: String,
    pub name: String,
}

fn summarize(causes: &[FieldError]) -> String {
    let parts: Vec<String> = causes
        .iter()
        .map(|c| format!("{}: {}", c.field, c.message))
        .collect();
    if parts.len() == 1 {
        parts[0].clone()
    } else {
        format!("[{}]", parts.join(", "))
    }
}

impl ApiError {
    pub fn internal(e: impl std::fmt::Display) -> Self {
        ApiError::Internal {
            message: e.to_string(),
        }
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        ApiError::BadRequest {
            message: message.into(),
        }
    }

    pub fn code(&self) -> StatusCode {
        match self {
            ApiError::BadRequest { .. } => StatusCode::BAD_REQUEST,
            ApiError::Unauthorized => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden { .. } => StatusCode::FORBIDDEN,
            ApiError::NotFound { .. } | ApiError::NoRoute => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::AlreadyExists { .. }
            | ApiError::Conflict { .. }
            | ApiError::ApplyConflict { .. } => StatusCode::CONFLICT,
            ApiError::Gone { .. } => StatusCode::GONE,
            ApiError::Invalid { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::UnsupportedMediaType { .. } => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::NotAcceptable { .. } => StatusCode::NOT_ACCEPTABLE,
            ApiError::TooManyRequests { .. } => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Internal { .. } => StatusCode::INTERNAL_SERVER_ERROR,
            ApiError::ServiceUnavailable { .. } => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    fn reason(&self) -> &'static str {
        match self {
            ApiError::BadRequest { .. } => "BadRequest",
            ApiError::Unauthorized => "Unauthorized",
            ApiError::Forbidden { .. } => "Forbidden",
            ApiError::NotFound { .. } | ApiError::NoRoute => "NotFound",
            ApiError::MethodNotAllowed => "MethodNotAllowed",
            ApiError::AlreadyExists { .. } => "AlreadyExists",
            ApiError::Conflict { .. } | ApiError::ApplyConflict { .. } => "Conflict",
            ApiError::Gone { .. } => "Expired",
            ApiError::Invalid { .. } => "Invalid",
            ApiError::UnsupportedMediaType { .. } => "UnsupportedMediaType",
            ApiError::TooLarge { .. } => "RequestEntityTooLarge",
            ApiError::NotAcceptable { .. } => "NotAcceptable",
            ApiError::TooManyRequests { .. } => "TooManyRequests",
            ApiError::Internal { .. } => "InternalError",
            ApiError::ServiceUnavailable { .. } => "ServiceUnavailable",
        }
    }

    /// The `Status` object for this error: the only place errors become API responses.
    pub fn status_body(&self) -> Value {
        let mut status = json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.to_string(),
            "reason": self.reason(),
            "code": self.code().as_u16(),
        });
        let details = match self {
            ApiError::NotFound { group, kind, name }
            | ApiError::AlreadyExists { group, kind, name }
            | ApiError::Conflict {
                group, kind, name, ..
            } => Some(details_json(group, kind, name)),
            ApiError::Forbidden {
                details: Some(d), ..
            } => Some(details_json(&d.group, &d.kind, &d.name)),
            ApiError::Invalid {
                group,
                kind,
                name,
                causes,
            } => {
                let mut d = details_json(group, kind, name);
                d["causes"] = causes
                    .iter()
                    .map(|c| json!({"reason": c.reason, "message": c.message, "field": c.field}))
                    .collect();
                Some(d)
            }
            ApiError::Internal { message } => Some(json!({"causes": [{"message": message}]})),
            ApiError::TooManyRequests {
                retry_after_seconds,
                causes,
                ..
            } => {
                let mut d = json!({});
                if *retry_after_seconds > 0 {
                    d["retryAfterSeconds"] = json!(retry_after_seconds);
                }
                if !causes.is_empty() {
                    d["causes"] = causes
                        .iter()
                        .map(|(reason, message)| json!({"reason": reason, "message": message}))
                        .collect();
                }
                Some(d)
            }
            _ => None,
        };
        if let Some(d) = details {
            status["details"] = d;
        }
        status
    }
}

fn details_json(group: &str, kind: &str, name: &str) -> Value {
    let mut d = json!({"name": name, "kind": kind});
    if !group.is_empty() {
        d["group"] = json!(group);
    }
    d
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if let ApiError::Internal { message } = &self {
            tracing::error!(%message, "internal error");
        }
        let body = serde_json::to_vec(&self.status_body()).unwrap_or_default();
        let mut response = (
            self.code(),
            [(http::header::CONTENT_TYPE, "application/json")],
            body,
        )
            .into_response();
        if let ApiError::TooManyRequests {
            retry_after_seconds,
            ..
        } = &self
        {
            if *retry_after_seconds > 0 {
                response
                    .headers_mut()
                    .insert(http::header::RETRY_AFTER, (*retry_after_seconds).into());
            }
        }
        response
    }
}

impl From<kubelab_store::Error> for ApiError {
    fn from(e: kubelab_store::Error) -> Self {
        match e {
            kubelab_store::Error::Compacted { requested, oldest } => ApiError::Gone {
                message: format!("too old resource version: {requested} ({oldest})"),
            },
            other => ApiError::internal(other),
        }
    }
}

pub type ApiResult<T> = Result<T, ApiError>;
