//! Kubernetes strategic merge patch (`application/strategic-merge-patch+json`) over
//! `serde_json::Value`: the server side of `kubectl apply` (client-side), `kubectl set image`,
//! `rollout restart`, `cordon` and `kubectl patch --type=strategic`. It is a port of the apply
//! half of apimachinery `pkg/util/strategicpatch` (`StrategicMergeMapPatch`): maps merge, `null`
//! deletes, lists merge by merge key or are replaced according to the field's patch metadata,
//! and the directives `$patch`, `$setElementOrder/<field>`, `$retainKeys` and
//! `$deleteFromPrimitiveList/<field>` are honoured and never reach the result. [`builtin_meta`]
//! carries the `patchStrategy` / `patchMergeKey` tags of the built-in kinds.
//!
//! It also does server-side apply (`application/apply-patch+yaml`, `kubectl apply
//! --server-side`): [`apply`] merges an applied configuration by field ownership, with
//! conflicts between managers, and [`track_update`] records ordinary writes, both in
//! `metadata.managedFields` ([`fieldpath`] is the `FieldsV1` set of field paths). Upstream that
//! is structured-merge-diff plus the apiserver's field manager; here the field shapes come
//! from the same [`PatchMeta`].
//!
//! It is not a patch *generator* (no two- or three-way diff: kubectl computes patches), not JSON
//! merge patch or JSON patch (the `json-patch` crate does those), and it knows nothing about
//! HTTP, storage or validation of the patched object. It never panics on input: malformed
//! patches, type mismatches and over-deep nesting are [`PatchError`]s or [`ApplyError`]s.
//!
//! Deliberate differences from upstream, each making a malformed patch an error instead of a
//! silently odd object: a map patched onto a list (or any container onto a different JSON type)
//! is [`PatchError::TypeMismatch`] where upstream would replace the value; unknown `$` keys are
//! [`PatchError::UnknownDirective`] where upstream would store them; `$patch: merge` in a map is
//! accepted as the no-op it names; directives inside values that are added whole (new list
//! elements, new fields) are applied and stripped, where upstream copies some of them verbatim.

mod apply;
pub mod fieldpath;
mod merge;
pub mod meta;

use serde_json::{Map, Value};

pub use apply::{
    apply, track_status_update, track_update, ApplyError, ApplyOptions, Conflict,
    LAST_APPLIED_ANNOTATION,
};
pub use merge::MAX_DEPTH;
pub use meta::{builtin_meta, BuiltinMeta, FieldMeta, NoMeta, PatchMeta, Strategy};

/// Why a strategic merge patch could not be applied. Messages follow upstream's where it has
/// one; the API server answers all of them with 400 BadRequest (422 for none).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PatchError {
    /// The original or the patch is not a JSON object.
    #[error("invalid JSON document")]
    InvalidDocument,
    /// A `$patch` directive other than `replace`, `delete` or `merge`.
    #[error("unknown patch type: {directive} in map: {map}")]
    UnknownPatchType { directive: String, map: String },
    /// A `$`-prefixed key that is no directive this implementation knows.
    #[error("unknown patch directive {key:?} in {}", display_path(path))]
    UnknownDirective { path: String, key: String },
    /// An element of a merging list of maps lacks the merge key.
    #[error("map: {map} does not contain declared merge key: {key}")]
    NoMergeKey { map: String, key: String },
    /// A merging list holds maps but the field declares no merge key.
    #[error("cannot merge lists without merge key for {}", display_path(path))]
    NoMergeKeyForList { path: String },
    /// `$patch: merge` as a list element.
    #[error("merging lists cannot yet be specified in the patch")]
    MergeDirectiveInList,
    #[error("lists of lists are not supported (at {})", display_path(path))]
    ListOfLists { path: String },
    /// A merging list mixes element types.
    #[error(
        "list element types are not identical at {}: {first} and {other}",
        display_path(path)
    )]
    MixedListElements {
        path: String,
        first: &'static str,
        other: &'static str,
    },
    /// `$retainKeys` is not a list of strings.
    #[error("invalid patch format of retainKeys at {}", display_path(path))]
    BadRetainKeys { path: String },
    /// The patch sets a field its own `$retainKeys` list does not name.
    #[error(
        "patch content doesn't match retainKeys list: {key:?} at {}",
        display_path(path)
    )]
    RetainKeysMismatch { path: String, key: String },
    /// `$setElementOrder` without a field name, or whose value is not a list.
    #[error(
        "invalid patch format of setElementOrder list at {}",
        display_path(path)
    )]
    BadSetElementOrder { path: String },
    /// The patch list's elements are not in the `$setElementOrder` list's order.
    #[error(
        "the order in patch list:\n{patch}\n doesn't match $setElementOrder list:\n{order}\n (at {})",
        display_path(path)
    )]
    SetElementOrderMismatch {
        path: String,
        patch: String,
        order: String,
    },
    /// `$deleteFromPrimitiveList` without a field name, or not a list of primitives.
    #[error("invalid patch format of primitive list at {}", display_path(path))]
    BadPrimitiveList { path: String },
    /// The patch's value and the original's disagree on being a map, a list or a primitive.
    #[error(
        "invalid type for {}: got {actual:?}, expected {expected:?}",
        display_path(path)
    )]
    TypeMismatch {
        path: String,
        expected: &'static str,
        actual: &'static str,
    },
    /// The patch nests deeper than [`MAX_DEPTH`].
    #[error(
        "patch nesting exceeds the maximum depth of {max} at {}",
        display_path(path)
    )]
    TooDeep { path: String, max: usize },
}

fn display_path(path: &str) -> &str {
    if path.is_empty() {
        "the top level"
    } else {
        path
    }
}

/// Applies the strategic merge patch `patch` to `original` and returns the patched object.
///
/// `original` is the stored object (`null` counts as `{}`); `patch` is the request body, a JSON
/// object. `meta` says how each field merges, usually `&builtin_meta(apiVersion, kind)` of the
/// stored object.
pub fn strategic_merge(
    original: &Value,
    patch: &Value,
    meta: &dyn PatchMeta,
) -> Result<Value, PatchError> {
    let Value::Object(patch) = patch else {
        return Err(PatchError::InvalidDocument);
    };
    let original = match original {
        Value::Object(map) => map.clone(),
        Value::Null => Map::new(),
        _ => return Err(PatchError::InvalidDocument),
    };
    let merger = merge::Merger { meta };
    let mut path = Vec::new();
    merger
        .merge_map(original, patch, &mut path, 0)
        .map(Value::Object)
}

#[cfg(test)]
mod tests;
