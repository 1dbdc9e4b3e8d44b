//! Validation (in progress).

use serde_json::Value;

use crate::catalog::ResourceType;

/// One cause of a 422 Invalid.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct FieldError {
    pub reason: &'static str,
    pub field: String,
    pub message: String,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ValidationError {
    #[error("invalid object")]
    Invalid(Vec<FieldError>),
    #[error("{0}")]
    BadRequest(String),
}

/// Validates an object about to be stored (`old` on update).
pub fn validate(
    _rt: &ResourceType,
    _obj: &Value,
    _old: Option<&Value>,
) -> Result<(), ValidationError> {
    Ok(())
}
