//! The walks of structured-merge-diff `typed` over `serde_json::Value`: the field set of an
//! object, the comparison of two objects, the merge of an applied configuration into a live
//! object, and the removal of fields an applier stopped applying.
//!
//! Lists are matched item by item through hash maps keyed by [`PathElement`], never by scanning.
//! The walks over stored objects are lenient (an item that cannot be identified is addressed by
//! its index); the applied configuration is checked first by [`validate`].

use std::collections::{HashMap, HashSet};

use serde_json::{Map, Value};

use super::schema::{default_value, ListShape, Schema};
use crate::fieldpath::{path_string, FieldSet, PathElement};

/// The element that identifies `item` in a list of `shape`.
pub(crate) fn item_element(shape: &ListShape, item: &Value) -> Result<PathElement, String> {
    match shape {
        ListShape::Keyed(keys) => {
            let map = match item {
                Value::Object(map) => map,
                Value::Null => {
                    return Err("associative list with keys may not have a null element".into())
                }
                _ => return Err("associative list with keys may not have non-map elements".into()),
            };
            let defaults: Vec<Option<Value>> = keys
                .iter()
                .map(|key| key.default.map(default_value))
                .collect();
            let mut fields = Vec::with_capacity(keys.len());
            for (key, default) in keys.iter().zip(&defaults) {
                if let Some(value) = map.get(key.name).or(default.as_ref()) {
                    fields.push((key.name, value));
                }
            }
            if fields.is_empty() {
                let names: Vec<String> = keys.iter().map(|k| format!("{:?}", k.name)).collect();
                return Err(format!(
                    "associative list with keys has an element that omits all key fields [{}] \
                     (and doesn't have default values for any key fields)",
                    names.join(" ")
                ));
            }
            Ok(PathElement::key(fields))
        }
        ListShape::Set => match item {
            Value::Object(_) => {
                Err("associative list without keys has an element that's a map type".into())
            }
            Value::Array(_) => Err("not supported: associative list with lists as elements".into()),
            Value::Null => {
                Err("associative list without keys has an element that's an explicit null".into())
            }
            _ => Ok(PathElement::value(item)),
        },
        ListShape::Atomic => Err("invalid indexing of non-associative list".into()),
    }
}

/// The elements of a stored list's items; items that cannot be identified get their index.
fn item_elements(shape: &ListShape, items: &[Value]) -> Vec<PathElement> {
    items
        .iter()
        .enumerate()
        .map(|(i, item)| item_element(shape, item).unwrap_or(PathElement::Index(i)))
        .collect()
}

/// Positions of each element, in first-seen order.
fn index_elements(pes: &[PathElement]) -> (Vec<&PathElement>, HashMap<&PathElement, Vec<usize>>) {
    let mut order = Vec::with_capacity(pes.len());
    let mut positions: HashMap<&PathElement, Vec<usize>> = HashMap::with_capacity(pes.len());
    for (i, pe) in pes.iter().enumerate() {
        positions
            .entry(pe)
            .or_insert_with(|| {
                order.push(pe);
                Vec::new()
            })
            .push(i);
    }
    (order, positions)
}

fn is_empty_container(value: Option<&Value>) -> bool {
    match value {
        None | Some(Value::Null) => true,
        Some(Value::Object(map)) => map.is_empty(),
        Some(Value::Array(items)) => items.is_empty(),
        Some(_) => false,
    }
}

/// Checks an applied configuration the way upstream's typed conversion does: keyed list items
/// are maps carrying a key, set items are primitives, and no list names an item twice.
pub(crate) fn validate(schema: &Schema, value: &Value) -> Result<(), String> {
    validate_at(schema, value, &mut Vec::new(), &mut Vec::new(), 0)
}

fn validate_at<'v>(
    schema: &Schema,
    value: &'v Value,
    names: &mut Vec<&'v str>,
    path: &mut Vec<PathElement>,
    depth: usize,
) -> Result<(), String> {
    if depth > crate::MAX_DEPTH {
        return Err(format!(
            "{}: nesting exceeds the maximum depth of {}",
            path_string(path),
            crate::MAX_DEPTH
        ));
    }
    match value {
        Value::Object(map) if !schema.atomic_map(names) => {
            for (key, child) in map {
                names.push(key);
                path.push(PathElement::Field(key.clone()));
                let result = validate_at(schema, child, names, path, depth + 1);
                path.pop();
                names.pop();
                result?;
            }
        }
        Value::Array(items) => {
            let shape = schema.list(names);
            if shape == ListShape::Atomic {
                return Ok(());
            }
            let mut seen = HashSet::with_capacity(items.len());
            for (i, item) in items.iter().enumerate() {
                let pe = item_element(&shape, item)
                    .map_err(|e| format!("{}: element {i}: {e}", path_string(path)))?;
                if seen.contains(&pe) {
                    return Err(format!(
                        "{}: duplicate entries for key {pe}",
                        path_string(path)
                    ));
                }
                path.push(pe.clone());
                let result = validate_at(schema, item, names, path, depth + 1);
                path.pop();
                result?;
                seen.insert(pe);
            }
        }
        _ => {}
    }
    Ok(())
}

/// Upstream `ToFieldSet`: every leaf, every list item, every empty or null map field; maps with
/// content are reached through their children only.
pub(crate) fn field_set(schema: &Schema, value: &Value) -> FieldSet {
    let mut set = FieldSet::new();
    field_set_at(schema, value, &mut Vec::new(), &mut Vec::new(), &mut set);
    set
}

fn field_set_at<'v>(
    schema: &Schema,
    value: &'v Value,
    names: &mut Vec<&'v str>,
    path: &mut Vec<PathElement>,
    set: &mut FieldSet,
) {
    match value {
        Value::Object(map) if !schema.atomic_map(names) => {
            for (key, child) in map {
                names.push(key);
                path.push(PathElement::Field(key.clone()));
                field_set_at(schema, child, names, path, set);
                if is_empty_container(Some(child)) && !child.is_array() {
                    set.insert(path);
                }
                path.pop();
                names.pop();
            }
        }
        Value::Array(items) => {
            let shape = schema.list(names);
            if shape == ListShape::Atomic {
                set.insert(path);
                return;
            }
            let pes = item_elements(&shape, items);
            let (_, positions) = index_elements(&pes);
            for (item, pe) in items.iter().zip(&pes) {
                path.push(pe.clone());
                if positions.get(pe).is_some_and(|p| p.len() > 1) {
                    // Duplicates are owned as one opaque member.
                    set.insert(path);
                } else {
                    field_set_at(schema, item, names, path, set);
                    set.insert(path);
                }
                path.pop();
            }
        }
        _ => set.insert(path),
    }
}

/// What changed between two objects: upstream `typed.Comparison`.
#[derive(Debug, Default)]
pub(crate) struct Comparison {
    pub added: FieldSet,
    pub modified: FieldSet,
    pub removed: FieldSet,
}

impl Comparison {
    /// Added or modified.
    pub fn changed(&self) -> FieldSet {
        self.added.union(&self.modified)
    }

    pub fn filter(self, keep: impl Fn(FieldSet) -> FieldSet) -> Comparison {
        Comparison {
            added: keep(self.added),
            modified: keep(self.modified),
            removed: keep(self.removed),
        }
    }
}

pub(crate) fn compare(schema: &Schema, old: &Value, new: &Value) -> Comparison {
    let mut out = Comparison::default();
    compare_at(
        schema,
        Some(old),
        Some(new),
        &mut Vec::new(),
        &mut Vec::new(),
        &mut out,
    );
    out
}

fn kind(value: &Value) -> u8 {
    match value {
        Value::Object(_) => 1,
        Value::Array(_) => 2,
        _ => 0,
    }
}

fn compare_leaf(
    old: Option<&Value>,
    new: Option<&Value>,
    path: &[PathElement],
    out: &mut Comparison,
) {
    match (old, new) {
        (None, _) => out.added.insert(path),
        (_, None) => out.removed.insert(path),
        (Some(a), Some(b)) if a != b => out.modified.insert(path),
        _ => {}
    }
}

fn compare_at<'v>(
    schema: &Schema,
    old: Option<&'v Value>,
    new: Option<&'v Value>,
    names: &mut Vec<&'v str>,
    path: &mut Vec<PathElement>,
    out: &mut Comparison,
) {
    let Some(present) = new.or(old) else {
        return;
    };
    if let (Some(a), Some(b)) = (old, new) {
        if kind(a) != kind(b) {
            compare_leaf(old, new, path, out);
            return;
        }
    }
    match present {
        Value::Object(_) => {
            let old_map = old.and_then(Value::as_object);
            let new_map = new.and_then(Value::as_object);
            let both_empty = old_map.is_none_or(Map::is_empty) && new_map.is_none_or(Map::is_empty);
            if both_empty || schema.atomic_map(names) {
                compare_leaf(old, new, path, out);
                return;
            }
            for (key, old_child) in old_map.into_iter().flatten() {
                names.push(key);
                path.push(PathElement::Field(key.clone()));
                let new_child = new_map.and_then(|m| m.get(key));
                compare_at(schema, Some(old_child), new_child, names, path, out);
                path.pop();
                names.pop();
            }
            for (key, new_child) in new_map.into_iter().flatten() {
                if old_map.is_some_and(|m| m.contains_key(key)) {
                    continue;
                }
                names.push(key);
                path.push(PathElement::Field(key.clone()));
                compare_at(schema, None, Some(new_child), names, path, out);
                path.pop();
                names.pop();
            }
        }
        Value::Array(_) => {
            let old_items = old.and_then(Value::as_array).map(Vec::as_slice);
            let new_items = new.and_then(Value::as_array).map(Vec::as_slice);
            let both_empty = old_items.is_none_or(<[Value]>::is_empty)
                && new_items.is_none_or(<[Value]>::is_empty);
            let shape = schema.list(names);
            if both_empty || shape == ListShape::Atomic {
                compare_leaf(old, new, path, out);
                return;
            }
            compare_items(
                schema,
                &shape,
                old_items.unwrap_or_default(),
                new_items.unwrap_or_default(),
                names,
                path,
                out,
            );
        }
        _ => {
            compare_leaf(old, new, path, out);
            return;
        }
    }
    // The node itself, for maps and lists that were walked.
    if old.is_none() {
        let always_present =
            matches!(path.last(), Some(PathElement::Field(name)) if schema.always_present(name));
        if !always_present {
            out.added.insert(path);
        }
    } else if new.is_none() {
        out.removed.insert(path);
    }
}

fn compare_items<'v>(
    schema: &Schema,
    shape: &ListShape,
    old: &'v [Value],
    new: &'v [Value],
    names: &mut Vec<&'v str>,
    path: &mut Vec<PathElement>,
    out: &mut Comparison,
) {
    let old_pes = item_elements(shape, old);
    let new_pes = item_elements(shape, new);
    let (mut order, old_at) = index_elements(&old_pes);
    let (new_order, new_at) = index_elements(&new_pes);
    order.extend(new_order.into_iter().filter(|pe| !old_at.contains_key(pe)));
    let none: Vec<usize> = Vec::new();
    for pe in order {
        let old_idx = old_at.get(pe).unwrap_or(&none);
        let new_idx = new_at.get(pe).unwrap_or(&none);
        path.push(pe.clone());
        match (old_idx.len(), new_idx.len()) {
            (0..=1, 0..=1) => {
                let a = old_idx.first().map(|&i| &old[i]);
                let b = new_idx.first().map(|&i| &new[i]);
                compare_at(schema, a, b, names, path, out);
            }
            (l, r) if l >= 2 && r >= 2 => {
                let differ = l != r || old_idx.iter().zip(new_idx).any(|(&i, &j)| old[i] != new[j]);
                if differ {
                    out.modified.insert(path);
                }
            }
            (l, _) if l >= 2 => {
                if let Some(&j) = new_idx.first() {
                    compare_at(schema, None, Some(&new[j]), names, path, out);
                }
                out.removed.insert(path);
            }
            _ => {
                if let Some(&i) = old_idx.first() {
                    compare_at(schema, Some(&old[i]), None, names, path, out);
                }
                out.added.insert(path);
            }
        }
        path.pop();
    }
}

/// Upstream `Merge`: the applied configuration `config` laid over `live`. Maps merge key by
/// key, keyed lists and sets item by item (live order, with the configuration's items in the
/// configuration's order), anything else is replaced. A `null` in the configuration removes the
/// field, as it does when upstream decodes the result into a Go object.
pub(crate) fn merge(schema: &Schema, live: &Value, config: &Value) -> Value {
    merge_at(schema, live, config, &mut Vec::new())
}

fn merge_at<'v>(
    schema: &Schema,
    live: &'v Value,
    config: &'v Value,
    names: &mut Vec<&'v str>,
) -> Value {
    match (live, config) {
        (Value::Object(l), Value::Object(r))
            if !(schema.atomic_map(names) || (l.is_empty() && r.is_empty())) =>
        {
            let mut out = Map::with_capacity(l.len().max(r.len()));
            for (key, lv) in l {
                match r.get(key) {
                    Some(Value::Null) => {}
                    Some(rv) => {
                        names.push(key);
                        out.insert(key.clone(), merge_at(schema, lv, rv, names));
                        names.pop();
                    }
                    None => {
                        out.insert(key.clone(), lv.clone());
                    }
                }
            }
            for (key, rv) in r {
                if !l.contains_key(key) && !rv.is_null() {
                    out.insert(key.clone(), without_nulls(rv));
                }
            }
            Value::Object(out)
        }
        (Value::Array(l), Value::Array(r)) if !(l.is_empty() && r.is_empty()) => {
            let shape = schema.list(names);
            if shape == ListShape::Atomic {
                return without_nulls(config);
            }
            Value::Array(merge_items(schema, &shape, l, r, names))
        }
        _ => without_nulls(config),
    }
}

/// Upstream's list merge: items of both keep the configuration's relative order, live-only
/// items stay where they were.
fn merge_items<'v>(
    schema: &Schema,
    shape: &ListShape,
    live: &'v [Value],
    config: &'v [Value],
    names: &mut Vec<&'v str>,
) -> Vec<Value> {
    let live_pes = item_elements(shape, live);
    let config_pes = item_elements(shape, config);
    let (_, live_at) = index_elements(&live_pes);
    let config_at: HashMap<&PathElement, usize> = config_pes
        .iter()
        .enumerate()
        .map(|(i, pe)| (pe, i))
        .collect();
    // The live item an element merges with; none when the live list repeats it.
    let live_item = |pe: &PathElement| match live_at.get(pe) {
        Some(positions) if positions.len() == 1 => Some(&live[positions[0]]),
        _ => None,
    };
    let mut shared = config_pes.iter().filter(|pe| live_at.contains_key(pe));
    let mut next_shared = shared.next();
    let mut merged: HashSet<&PathElement> = HashSet::with_capacity(config_pes.len());
    let mut out = Vec::with_capacity(live.len().max(config.len()));
    let (mut li, mut ri) = (0, 0);
    let merge_item = |pe: &PathElement, ri: usize, names: &mut Vec<&'v str>| match live_item(pe) {
        Some(l) => merge_at(schema, l, &config[ri], names),
        None => without_nulls(&config[ri]),
    };
    while li < live.len() || ri < config.len() {
        if li < live.len() && ri < config.len() {
            let pe = &live_pes[li];
            if *pe == config_pes[ri] {
                merged.insert(pe);
                out.push(merge_item(pe, ri, names));
                li += 1;
                ri += 1;
                next_shared = shared.next();
                continue;
            }
            if config_at.contains_key(pe) && next_shared.is_some_and(|next| next != pe) {
                li += 1;
                continue;
            }
        }
        if li < live.len() {
            let pe = &live_pes[li];
            if !config_at.contains_key(pe) {
                out.push(live[li].clone());
                li += 1;
                continue;
            } else if merged.contains(pe) {
                li += 1;
            }
        }
        if ri < config.len() {
            let pe = &config_pes[ri];
            merged.insert(pe);
            out.push(merge_item(pe, ri, names));
            ri += 1;
            if next_shared == Some(pe) {
                next_shared = shared.next();
            }
        }
    }
    out
}

/// A copy without `null` map fields.
fn without_nulls(value: &Value) -> Value {
    match value {
        Value::Object(map) => Value::Object(
            map.iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| (k.clone(), without_nulls(v)))
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.iter().map(without_nulls).collect()),
        other => other.clone(),
    }
}

/// Upstream `prune`: removes from `object` what `last` (the applier's previous set) holds and
/// no manager in `managed` (all current sets, the applier's new one included) claims. A map
/// field counts as claimed when anything below it is; a list item only when it is a member.
/// Maps and lists emptied by the removal go too.
pub(crate) fn prune(schema: &Schema, object: &mut Value, last: &FieldSet, managed: &FieldSet) {
    prune_at(schema, object, last, Some(managed), &mut Vec::new());
}

fn prune_at(
    schema: &Schema,
    value: &mut Value,
    last: &FieldSet,
    managed: Option<&FieldSet>,
    names: &mut Vec<String>,
) {
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    match value {
        Value::Object(map) => {
            if schema.atomic_map(&refs) {
                return;
            }
            for pe in last.elements() {
                let PathElement::Field(key) = pe else {
                    continue;
                };
                let Some(child) = map.get_mut(key) else {
                    continue;
                };
                let claimed = managed.is_some_and(|s| s.is_member(pe) || s.child(pe).is_some());
                if !claimed {
                    map.shift_remove(key);
                    continue;
                }
                if let Some(below) = last.child(pe) {
                    let was_empty = is_empty_container(Some(child));
                    names.push(key.clone());
                    prune_at(
                        schema,
                        child,
                        below,
                        managed.and_then(|s| s.child(pe)),
                        names,
                    );
                    names.pop();
                    if !was_empty && is_empty_container(Some(child)) {
                        map.shift_remove(key);
                    }
                }
            }
        }
        Value::Array(items) => {
            let shape = schema.list(&refs);
            if shape == ListShape::Atomic {
                return;
            }
            let pes = item_elements(&shape, items);
            let (_, positions) = index_elements(&pes);
            let mut remove = vec![false; items.len()];
            for pe in last.elements() {
                let Some(at) = positions.get(pe) else {
                    continue;
                };
                let claimed = managed.is_some_and(|s| s.is_member(pe));
                if last.is_member(pe) && !claimed {
                    for &i in at {
                        remove[i] = true;
                    }
                } else if let Some(below) = last.child(pe) {
                    for &i in at {
                        prune_at(
                            schema,
                            &mut items[i],
                            below,
                            managed.and_then(|s| s.child(pe)),
                            names,
                        );
                    }
                }
            }
            let mut i = 0;
            items.retain(|_| {
                i += 1;
                !remove[i - 1]
            });
        }
        _ => {}
    }
}
