//! The merge itself: a port of apimachinery `pkg/util/strategicpatch` `mergeMap` and friends
//! (server-side options: parallel lists are merged, unmatched nulls are dropped).
//!
//! The original is owned and rebuilt; the patch is only borrowed, so field paths can borrow
//! its keys. Every value that comes from the patch goes through [`Merger::materialize`], which
//! strips directives, so none ever reaches the result.

use std::collections::{HashMap, HashSet};
use std::mem;

use serde_json::{Map, Value};

use crate::meta::PatchMeta;
use crate::PatchError;

/// How deep a patch may nest (maps and lists both count). Kubernetes objects stay far below;
/// serde_json refuses to parse documents deeper than 128 anyway.
pub const MAX_DEPTH: usize = 256;

const DIRECTIVE_MARKER: &str = "$patch";
const RETAIN_KEYS: &str = "$retainKeys";
const SET_ELEMENT_ORDER: &str = "$setElementOrder";
const DELETE_FROM_PRIMITIVE_LIST: &str = "$deleteFromPrimitiveList";

/// A `$patch` directive.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Directive {
    Replace,
    Delete,
    Merge,
}

/// The `$patch` directive of a patch map, if any.
fn directive(map: &Map<String, Value>) -> Result<Option<Directive>, PatchError> {
    match map.get(DIRECTIVE_MARKER) {
        None => Ok(None),
        Some(Value::String(s)) if s == "replace" => Ok(Some(Directive::Replace)),
        Some(Value::String(s)) if s == "delete" => Ok(Some(Directive::Delete)),
        Some(Value::String(s)) if s == "merge" => Ok(Some(Directive::Merge)),
        Some(other) => Err(PatchError::UnknownPatchType {
            directive: match other {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            },
            map: Value::Object(map.clone()).to_string(),
        }),
    }
}

/// Whether `key` is one of the directive keys handled before the ordinary fields.
fn is_directive_key(key: &str) -> bool {
    key == DIRECTIVE_MARKER
        || key == RETAIN_KEYS
        || key.starts_with(SET_ELEMENT_ORDER)
        || key.starts_with(DELETE_FROM_PRIMITIVE_LIST)
}

/// The field a `$prefix/<field>` directive names.
fn directive_field<'p>(
    key: &'p str,
    prefix: &str,
    error: PatchError,
) -> Result<&'p str, PatchError> {
    key.strip_prefix(prefix)
        .and_then(|rest| rest.strip_prefix('/'))
        .filter(|field| !field.is_empty())
        .ok_or(error)
}

fn type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn is_container(value: &Value) -> bool {
    matches!(value, Value::Array(_) | Value::Object(_))
}

/// A hashable identity for an element value (or a merge key value): its compact JSON.
fn identity(value: &Value) -> String {
    value.to_string()
}

/// The identity of a list element for ordering: its merge key value for lists of maps, the
/// element itself for lists of primitives. `None` when a map lacks the merge key.
fn element_identity(element: &Value, merge_key: Option<&str>) -> Option<String> {
    match merge_key {
        Some(key) => element.as_object()?.get(key).map(identity),
        None => Some(identity(element)),
    }
}

/// Positions (first occurrence) of the identities of `list`.
fn index_of(list: &[Value], merge_key: Option<&str>) -> HashMap<String, usize> {
    let mut index = HashMap::with_capacity(list.len());
    for (i, element) in list.iter().enumerate() {
        if let Some(id) = element_identity(element, merge_key) {
            index.entry(id).or_insert(i);
        }
    }
    index
}

/// Orders merged list elements the way upstream `normalizeElementOrder` does: elements named by
/// `patch_order` come in that order, the others ("server-only") keep their order in the original
/// list, and the two runs are interleaved by their positions in the original list; when that
/// cannot decide (an element is new), the patch's element goes first.
fn order_elements(
    merged: Vec<Value>,
    patch_order: &HashMap<String, usize>,
    server_order: &HashMap<String, usize>,
    merge_key: Option<&str>,
) -> Vec<Value> {
    let mut from_patch: Vec<(Option<usize>, Value)> = Vec::new();
    let mut server_only: Vec<(Option<usize>, Value)> = Vec::new();
    for element in merged {
        let id = element_identity(&element, merge_key);
        let server_position = id.as_ref().and_then(|id| server_order.get(id)).copied();
        match id.as_ref().and_then(|id| patch_order.get(id)) {
            Some(&patch_position) => from_patch.push((Some(patch_position), element)),
            None => server_only.push((server_position, element)),
        }
    }
    // Stable sorts; elements with no position go last.
    from_patch.sort_by_key(|(position, _)| position.unwrap_or(usize::MAX));
    server_only.sort_by_key(|(position, _)| position.unwrap_or(usize::MAX));
    // Re-key the patch run by server position for the interleave.
    let right: Vec<(Option<usize>, Value)> = from_patch
        .into_iter()
        .map(|(_, element)| {
            let position =
                element_identity(&element, merge_key).and_then(|id| server_order.get(&id).copied());
            (position, element)
        })
        .collect();

    let mut out = Vec::with_capacity(server_only.len() + right.len());
    let mut left = server_only.into_iter().peekable();
    let mut right = right.into_iter().peekable();
    loop {
        let take_left = match (left.peek(), right.peek()) {
            (None, None) => break,
            (Some(_), None) => true,
            (None, Some(_)) => false,
            (Some((l, _)), Some((r, _))) => matches!((l, r), (Some(l), Some(r)) if l < r),
        };
        let next = if take_left { left.next() } else { right.next() };
        if let Some((_, element)) = next {
            out.push(element);
        }
    }
    out
}

/// The JSON type shared by all elements of the lists (upstream `sliceElementType`).
fn element_type(path: &str, lists: [&[Value]; 2]) -> Result<Option<&'static str>, PatchError> {
    let mut found: Option<&'static str> = None;
    for element in lists.into_iter().flatten() {
        if element.is_array() {
            return Err(PatchError::ListOfLists {
                path: path.to_string(),
            });
        }
        let t = type_name(element);
        match found {
            None => found = Some(t),
            Some(previous) if previous == t => {}
            Some(previous) => {
                return Err(PatchError::MixedListElements {
                    path: path.to_string(),
                    first: previous,
                    other: t,
                })
            }
        }
    }
    Ok(found)
}

pub(crate) struct Merger<'m> {
    pub(crate) meta: &'m dyn PatchMeta,
}

impl<'m> Merger<'m> {
    fn check_depth(&self, depth: usize, path: &[&str]) -> Result<(), PatchError> {
        if depth > MAX_DEPTH {
            return Err(PatchError::TooDeep {
                path: path.join("."),
                max: MAX_DEPTH,
            });
        }
        Ok(())
    }

    /// Merges a patch map into an original map, honouring a `$patch` directive in the patch.
    pub(crate) fn merge_map<'p>(
        &self,
        original: Map<String, Value>,
        patch: &'p Map<String, Value>,
        path: &mut Vec<&'p str>,
        depth: usize,
    ) -> Result<Map<String, Value>, PatchError> {
        self.check_depth(depth, path)?;
        match directive(patch)? {
            // The patch (without its directives) is the new map.
            Some(Directive::Replace) => self.merge_fields(Map::new(), patch, path, depth),
            // Upstream leaves an empty map behind, not an absent field.
            Some(Directive::Delete) => Ok(Map::new()),
            Some(Directive::Merge) | None => self.merge_fields(original, patch, path, depth),
        }
    }

    /// Merges the fields of `patch` into `original`, ignoring any `$patch` directive.
    fn merge_fields<'p>(
        &self,
        mut original: Map<String, Value>,
        patch: &'p Map<String, Value>,
        path: &mut Vec<&'p str>,
        depth: usize,
    ) -> Result<Map<String, Value>, PatchError> {
        if let Some(retain) = patch.get(RETAIN_KEYS) {
            apply_retain_keys(&mut original, patch, retain, path)?;
        }

        // $setElementOrder/<field> first: it merges its list too.
        let mut ordered: HashSet<&str> = HashSet::new();
        for (key, order) in patch {
            if key.starts_with(SET_ELEMENT_ORDER) {
                let field = directive_field(
                    key,
                    SET_ELEMENT_ORDER,
                    PatchError::BadSetElementOrder {
                        path: path.join("."),
                    },
                )?;
                self.apply_element_order(&mut original, patch, field, order, path, depth)?;
                ordered.insert(field);
            }
        }

        for (key, value) in patch {
            if key == DIRECTIVE_MARKER
                || key == RETAIN_KEYS
                || key.starts_with(SET_ELEMENT_ORDER)
                || ordered.contains(key.as_str())
            {
                continue;
            }
            if key.starts_with(DELETE_FROM_PRIMITIVE_LIST) {
                let field = directive_field(
                    key,
                    DELETE_FROM_PRIMITIVE_LIST,
                    PatchError::BadPrimitiveList {
                        path: path.join("."),
                    },
                )?;
                delete_from_primitive_list(&mut original, field, value, path)?;
                continue;
            }
            if key.starts_with('$') {
                return Err(PatchError::UnknownDirective {
                    path: path.join("."),
                    key: key.clone(),
                });
            }
            if value.is_null() {
                original.shift_remove(key);
                continue;
            }
            path.push(key);
            let merged = match original.get_mut(key) {
                Some(slot) if !slot.is_null() => {
                    let old = mem::take(slot);
                    self.merge_value(old, value, path, depth + 1)
                }
                _ => self.materialize(value, path, depth + 1),
            };
            path.pop();
            match merged? {
                Some(v) => {
                    original.insert(key.clone(), v);
                }
                None => {
                    original.shift_remove(key);
                }
            }
        }
        Ok(original)
    }

    /// Merges a non-null patch value into a non-null original value of field `path`.
    /// `None` means the field goes away.
    fn merge_value<'p>(
        &self,
        original: Value,
        patch: &'p Value,
        path: &mut Vec<&'p str>,
        depth: usize,
    ) -> Result<Option<Value>, PatchError> {
        self.check_depth(depth, path)?;
        let meta = self.meta.field(path);
        match (original, patch) {
            (Value::Object(original), Value::Object(patch)) => {
                let base = if meta.strategy.replaces_maps() {
                    Map::new()
                } else {
                    original
                };
                Ok(Some(Value::Object(
                    self.merge_map(base, patch, path, depth)?,
                )))
            }
            (Value::Array(original), Value::Array(patch)) => {
                let list = if meta.strategy.merges_lists() {
                    self.merge_list(original, patch, meta.merge_key, path, depth)?
                } else {
                    self.atomic_list(patch, path, depth)?
                };
                Ok(Some(Value::Array(list)))
            }
            (Value::Null, patch) => self.materialize(patch, path, depth),
            (original, patch) if !is_container(&original) && !is_container(patch) => {
                Ok(Some(patch.clone()))
            }
            (original, patch) => Err(PatchError::TypeMismatch {
                path: path.join("."),
                expected: type_name(&original),
                actual: type_name(patch),
            }),
        }
    }

    /// A patch value for a field the original lacks: the value with its directives applied to
    /// nothing. `None` for a map that says `$patch: delete`.
    fn materialize<'p>(
        &self,
        patch: &'p Value,
        path: &mut Vec<&'p str>,
        depth: usize,
    ) -> Result<Option<Value>, PatchError> {
        self.check_depth(depth, path)?;
        match patch {
            Value::Object(map) => match directive(map)? {
                Some(Directive::Delete) => Ok(None),
                _ => Ok(Some(Value::Object(self.merge_fields(
                    Map::new(),
                    map,
                    path,
                    depth,
                )?))),
            },
            Value::Array(list) => {
                let meta = self.meta.field(path);
                let list = if meta.strategy.merges_lists() {
                    self.merge_list(Vec::new(), list, meta.merge_key, path, depth)?
                } else {
                    self.atomic_list(list, path, depth)?
                };
                Ok(Some(Value::Array(list)))
            }
            scalar => Ok(Some(scalar.clone())),
        }
    }

    /// The patch's list for an atomic field: elements that are directives are dropped (as
    /// upstream `removeDirectives` does), the rest lose their directives.
    fn atomic_list<'p>(
        &self,
        patch: &'p [Value],
        path: &mut Vec<&'p str>,
        depth: usize,
    ) -> Result<Vec<Value>, PatchError> {
        let mut out = Vec::with_capacity(patch.len());
        for element in patch {
            if let Value::Object(map) = element {
                if directive(map)?.is_some() {
                    continue;
                }
            }
            if let Some(v) = self.materialize(element, path, depth + 1)? {
                out.push(v);
            }
        }
        Ok(out)
    }

    /// Merges lists of a `patchStrategy:"merge"` field (upstream `mergeSlice`).
    fn merge_list<'p>(
        &self,
        original: Vec<Value>,
        patch: &'p [Value],
        merge_key: Option<&'static str>,
        path: &mut Vec<&'p str>,
        depth: usize,
    ) -> Result<Vec<Value>, PatchError> {
        self.check_depth(depth, path)?;
        if original.is_empty() && patch.is_empty() {
            return Ok(original);
        }
        let kind = element_type(&path.join("."), [&original, patch])?;
        if kind != Some("object") {
            // A union of primitives, without duplicates.
            let mut seen = HashSet::new();
            let mut merged = Vec::new();
            for v in original.iter().chain(patch) {
                if seen.insert(identity(v)) {
                    merged.push(v.clone());
                }
            }
            let patch_order = index_of(patch, None);
            let server_order = index_of(&original, None);
            return Ok(order_elements(merged, &patch_order, &server_order, None));
        }

        let Some(key) = merge_key else {
            return Err(PatchError::NoMergeKeyForList {
                path: path.join("."),
            });
        };

        // Special elements first: `$patch: delete` removes by key, `$patch: replace` drops the
        // original list.
        let mut original = original;
        let mut plain: Vec<&'p Value> = Vec::new();
        let mut replace = false;
        for element in patch {
            let Value::Object(map) = element else {
                continue; // unreachable: element_type said every element is a map
            };
            match directive(map)? {
                None => plain.push(element),
                Some(Directive::Delete) => {
                    let Some(value) = map.get(key) else {
                        return Err(no_merge_key(map, key));
                    };
                    original.retain(|o| o.get(key) != Some(value));
                }
                Some(Directive::Replace) => replace = true,
                Some(Directive::Merge) => return Err(PatchError::MergeDirectiveInList),
            }
        }
        let (mut merged, to_merge) = if replace {
            let mut fresh = Vec::with_capacity(plain.len());
            for element in plain {
                if let Some(v) = self.materialize(element, path, depth + 1)? {
                    fresh.push(v);
                }
            }
            (fresh, Vec::new())
        } else {
            (original, plain)
        };

        let server_order = index_of(&merged, Some(key));
        let mut position = server_order.clone();
        let mut patch_order = HashMap::with_capacity(to_merge.len());
        for (i, element) in to_merge.into_iter().enumerate() {
            let Value::Object(map) = element else {
                continue;
            };
            let Some(value) = map.get(key) else {
                return Err(no_merge_key(map, key));
            };
            let id = identity(value);
            patch_order.entry(id.clone()).or_insert(i);
            match position.get(&id) {
                Some(&at) => match mem::take(&mut merged[at]) {
                    Value::Object(old) => {
                        merged[at] = Value::Object(self.merge_map(old, map, path, depth + 1)?);
                    }
                    other => {
                        return Err(PatchError::TypeMismatch {
                            path: path.join("."),
                            expected: type_name(&other),
                            actual: "object",
                        })
                    }
                },
                None => {
                    if let Some(v) = self.materialize(element, path, depth + 1)? {
                        position.insert(id, merged.len());
                        merged.push(v);
                    }
                }
            }
        }
        Ok(order_elements(
            merged,
            &patch_order,
            &server_order,
            Some(key),
        ))
    }

    /// Handles `$setElementOrder/<field>` (upstream `mergePatchIntoOriginal`): merges the
    /// field's list, then orders the result by the directive's list.
    fn apply_element_order<'p>(
        &self,
        original: &mut Map<String, Value>,
        patch: &'p Map<String, Value>,
        field: &'p str,
        order: &'p Value,
        path: &mut Vec<&'p str>,
        depth: usize,
    ) -> Result<(), PatchError> {
        path.push(field);
        let result = self.element_order_inner(original, patch, field, order, path, depth + 1);
        path.pop();
        result
    }

    fn element_order_inner<'p>(
        &self,
        original: &mut Map<String, Value>,
        patch: &'p Map<String, Value>,
        field: &'p str,
        order: &'p Value,
        path: &mut Vec<&'p str>,
        depth: usize,
    ) -> Result<(), PatchError> {
        self.check_depth(depth, path)?;
        let Value::Array(order) = order else {
            return Err(PatchError::BadSetElementOrder {
                path: path.join("."),
            });
        };
        let meta = self.meta.field(path);
        let key = meta.merge_key;
        let patch_list = match patch.get(field) {
            None => None,
            Some(Value::Array(list)) => Some(list.as_slice()),
            Some(other) => {
                return Err(PatchError::TypeMismatch {
                    path: path.join("."),
                    expected: "array",
                    actual: type_name(other),
                })
            }
        };
        if let Some(list) = patch_list {
            validate_order(list, order, key, path)?;
        }
        let original_list = match original.get_mut(field) {
            None | Some(Value::Null) => None,
            Some(Value::Array(list)) => Some(mem::take(list)),
            Some(other) => {
                return Err(PatchError::TypeMismatch {
                    path: path.join("."),
                    expected: type_name(other),
                    actual: "array",
                })
            }
        };
        let server_order = original_list
            .as_deref()
            .map(|list| index_of(list, key))
            .unwrap_or_default();
        let merges = meta.strategy.merges_lists();
        let merged = match (original_list, patch_list) {
            (None, None) => return Ok(()),
            (Some(list), None) => list,
            (None, Some(p)) if merges => self.merge_list(Vec::new(), p, key, path, depth)?,
            (Some(o), Some(p)) if merges => self.merge_list(o, p, key, path, depth)?,
            (_, Some(p)) => self.atomic_list(p, path, depth)?,
        };
        let element_order = index_of(order, key);
        let ordered = order_elements(merged, &element_order, &server_order, key);
        original.insert(field.to_string(), Value::Array(ordered));
        Ok(())
    }
}

fn no_merge_key(map: &Map<String, Value>, key: &str) -> PatchError {
    PatchError::NoMergeKey {
        map: Value::Object(map.clone()).to_string(),
        key: key.to_string(),
    }
}

/// `$retainKeys`: clears the original's keys the list does not name, after checking that every
/// field the patch sets is named (upstream `applyRetainKeysDirective`).
fn apply_retain_keys(
    original: &mut Map<String, Value>,
    patch: &Map<String, Value>,
    retain: &Value,
    path: &[&str],
) -> Result<(), PatchError> {
    let bad = || PatchError::BadRetainKeys {
        path: path.join("."),
    };
    let Value::Array(list) = retain else {
        return Err(bad());
    };
    let mut keep = HashSet::with_capacity(list.len());
    for v in list {
        keep.insert(v.as_str().ok_or_else(bad)?);
    }
    for (key, value) in patch {
        if value.is_null() || is_directive_key(key) {
            continue;
        }
        if !keep.contains(key.as_str()) {
            return Err(PatchError::RetainKeysMismatch {
                path: path.join("."),
                key: key.clone(),
            });
        }
    }
    original.retain(|key, _| keep.contains(key.as_str()));
    Ok(())
}

/// `$deleteFromPrimitiveList/<field>`: removes the values from the original's list, whatever the
/// field's strategy; an absent or non-list field is left alone.
fn delete_from_primitive_list(
    original: &mut Map<String, Value>,
    field: &str,
    values: &Value,
    path: &[&str],
) -> Result<(), PatchError> {
    let bad = || PatchError::BadPrimitiveList {
        path: if path.is_empty() {
            field.to_string()
        } else {
            format!("{}.{field}", path.join("."))
        },
    };
    let Value::Array(values) = values else {
        return Err(bad());
    };
    if values.iter().any(is_container) {
        return Err(bad());
    }
    if let Some(Value::Array(list)) = original.get_mut(field) {
        let remove: HashSet<String> = values.iter().map(identity).collect();
        list.retain(|v| !remove.contains(&identity(v)));
    }
    Ok(())
}

/// Checks that the patch list's elements (deletions and directives aside) appear in the
/// `$setElementOrder` list in the same relative order (upstream `validatePatchWithSetOrderList`).
fn validate_order(
    patch: &[Value],
    order: &[Value],
    merge_key: Option<&str>,
    path: &[&str],
) -> Result<(), PatchError> {
    if patch.is_empty() || order.is_empty() {
        return Ok(());
    }
    let key_of = |v: &Value| -> Result<String, PatchError> {
        match merge_key {
            None => Ok(identity(v)),
            Some(key) => match v {
                Value::Object(map) => map
                    .get(key)
                    .map(identity)
                    .ok_or_else(|| no_merge_key(map, key)),
                other => Err(PatchError::TypeMismatch {
                    path: path.join("."),
                    expected: "object",
                    actual: type_name(other),
                }),
            },
        }
    };
    let mut elements = Vec::with_capacity(patch.len());
    for v in patch {
        if let Value::Object(map) = v {
            if map.contains_key(DIRECTIVE_MARKER) {
                continue;
            }
        }
        elements.push(key_of(v)?);
    }
    let mut next = 0;
    for v in order {
        if next == elements.len() {
            break;
        }
        if key_of(v)? == elements[next] {
            next += 1;
        }
    }
    if next < elements.len() {
        return Err(PatchError::SetElementOrderMismatch {
            path: path.join("."),
            patch: Value::Array(patch.to_vec()).to_string(),
            order: Value::Array(order.to_vec()).to_string(),
        });
    }
    Ok(())
}
