//! Upstream defaulting (in progress).

use serde_json::Value;

use crate::catalog::ResourceType;

/// Fills the fields upstream defaults. Idempotent.
pub fn apply_defaults(_rt: &ResourceType, _obj: &mut Value) {}
