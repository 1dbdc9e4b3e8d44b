//! Field paths and sets of them: the ownership records of server-side apply.
//!
//! A port of the data model of structured-merge-diff `fieldpath`: a [`PathElement`] names one
//! step into an object (a map field, a keyed list item, a set item or a list index), a
//! [`FieldSet`] is a trie of paths with upstream's set algebra, and [`FieldSet::to_fields_v1`] /
//! [`FieldSet::from_fields_v1`] are the `FieldsV1` JSON encoding stored in
//! `metadata.managedFields[].fieldsV1`: `f:<field>`, `k:{"name":"c"}`, `v:<json>`, `i:<index>`,
//! with `".": {}` marking an element that is itself a member and also has members below it.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde_json::{Map, Value};

/// One step of a field path. The derived order is upstream's: fields, then keys, then values,
/// then indices.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum PathElement {
    /// A field of a map (`f:<name>`).
    Field(String),
    /// A list item identified by its key fields (`k:{...}`): canonical JSON of an object whose
    /// fields are sorted by name.
    Key(String),
    /// A list item identified by its own primitive value (`v:<json>`): canonical JSON.
    Value(String),
    /// A list item by position (`i:<index>`), used only where nothing identifies an item.
    Index(usize),
}

/// A `FieldsV1` document that is not one upstream would write or read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FieldPathError {
    #[error("FieldsV1 must be a JSON object")]
    NotAnObject,
    #[error("unknown path element {0:?}")]
    BadElement(String),
    #[error("FieldsV1 nesting exceeds the maximum depth of {0}")]
    TooDeep(usize),
}

impl PathElement {
    /// The element of a keyed list item from its key fields (any order).
    pub fn key<'a>(fields: impl IntoIterator<Item = (&'a str, &'a Value)>) -> PathElement {
        let mut fields: Vec<(&str, &Value)> = fields.into_iter().collect();
        fields.sort_by(|a, b| a.0.cmp(b.0));
        let mut out = String::from("{");
        for (i, (name, value)) in fields.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            out.push_str(&go_json(&Value::String((*name).to_string())));
            out.push(':');
            out.push_str(&go_json(value));
        }
        out.push('}');
        PathElement::Key(out)
    }

    /// The element of a set item.
    pub fn value(value: &Value) -> PathElement {
        PathElement::Value(go_json(value))
    }

    /// The `FieldsV1` key of this element (`f:name`, `k:{...}`, `v:...`, `i:3`).
    pub fn to_fields_v1_key(&self) -> String {
        match self {
            PathElement::Field(name) => format!("f:{name}"),
            PathElement::Key(json) => format!("k:{json}"),
            PathElement::Value(json) => format!("v:{json}"),
            PathElement::Index(index) => format!("i:{index}"),
        }
    }

    /// Parses a `FieldsV1` key, canonicalising key and value JSON.
    pub fn from_fields_v1_key(key: &str) -> Result<PathElement, FieldPathError> {
        let bad = || FieldPathError::BadElement(key.to_string());
        let (kind, rest) = key.split_at_checked(2).ok_or_else(bad)?;
        match kind {
            "f:" => Ok(PathElement::Field(rest.to_string())),
            "k:" => match serde_json::from_str::<Value>(rest) {
                Ok(Value::Object(fields)) => Ok(PathElement::key(
                    fields.iter().map(|(k, v)| (k.as_str(), v)),
                )),
                _ => Err(bad()),
            },
            "v:" => serde_json::from_str::<Value>(rest)
                .map(|value| PathElement::value(&value))
                .map_err(|_| bad()),
            "i:" => rest.parse().map(PathElement::Index).map_err(|_| bad()),
            _ => Err(bad()),
        }
    }
}

/// Upstream's human form, as in conflict messages: `.name`, `[name="c",protocol="TCP"]`,
/// `[="x"]`, `[3]`.
impl fmt::Display for PathElement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PathElement::Field(name) => write!(f, ".{name}"),
            PathElement::Key(json) => {
                let fields = match serde_json::from_str::<Value>(json) {
                    Ok(Value::Object(fields)) => fields,
                    _ => Map::new(),
                };
                let parts: Vec<String> = fields
                    .iter()
                    .map(|(name, value)| format!("{name}={}", go_string(value)))
                    .collect();
                write!(f, "[{}]", parts.join(","))
            }
            PathElement::Value(json) => {
                let value = serde_json::from_str(json).unwrap_or(Value::Null);
                write!(f, "[={}]", go_string(&value))
            }
            PathElement::Index(index) => write!(f, "[{index}]"),
        }
    }
}

/// A path as upstream prints it: `.spec.template.spec.containers[name="nginx"].image`.
pub fn path_string(path: &[PathElement]) -> String {
    path.iter().map(ToString::to_string).collect()
}

/// Upstream `value.ToString`: strings quoted, numbers and booleans bare.
fn go_string(value: &Value) -> String {
    match value {
        Value::Null => "null".to_string(),
        Value::String(_) => go_json(value),
        Value::Number(n) => n.to_string(),
        Value::Bool(b) => b.to_string(),
        Value::Array(items) => {
            let parts: Vec<String> = items.iter().map(go_string).collect();
            format!("[{}]", parts.join(","))
        }
        Value::Object(map) => map
            .iter()
            .map(|(k, v)| format!("{k}={}", go_string(v)))
            .collect(),
    }
}

/// JSON as Go's `encoding/json` writes it: `<`, `>`, `&`, U+2028 and U+2029 escaped, integral
/// floats written as integers (Go decodes them into int64 first).
pub(crate) fn go_json(value: &Value) -> String {
    let text = match value {
        Value::Number(n) => match n.as_f64() {
            Some(f) if n.is_f64() && f.fract() == 0.0 && f.abs() < 9.0e15 => {
                return format!("{}", f as i64);
            }
            _ => n.to_string(),
        },
        _ => serde_json::to_string(value).unwrap_or_default(),
    };
    if !text.contains(['<', '>', '&', '\u{2028}', '\u{2029}']) {
        return text;
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        match c {
            '<' => out.push_str("\\u003c"),
            '>' => out.push_str("\\u003e"),
            '&' => out.push_str("\\u0026"),
            '\u{2028}' => out.push_str("\\u2028"),
            '\u{2029}' => out.push_str("\\u2029"),
            c => out.push(c),
        }
    }
    out
}

/// A set of field paths, as a trie: `members` are the paths ending at this node, `children`
/// the non-empty sets below an element. Upstream's `fieldpath.Set`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FieldSet {
    members: BTreeSet<PathElement>,
    children: BTreeMap<PathElement, FieldSet>,
}

impl FieldSet {
    pub fn new() -> FieldSet {
        FieldSet::default()
    }

    /// Adds a path; its parents are not members unless added too. The empty path (the whole
    /// object) is not tracked.
    pub fn insert(&mut self, path: &[PathElement]) {
        let Some((last, parents)) = path.split_last() else {
            return;
        };
        let mut set = self;
        for pe in parents {
            set = set.children.entry(pe.clone()).or_default();
        }
        set.members.insert(last.clone());
    }

    /// Whether `path` is a member.
    pub fn has(&self, path: &[PathElement]) -> bool {
        let Some((last, parents)) = path.split_last() else {
            return false;
        };
        let mut set = self;
        for pe in parents {
            match set.children.get(pe) {
                Some(child) => set = child,
                None => return false,
            }
        }
        set.members.contains(last)
    }

    pub fn is_empty(&self) -> bool {
        self.members.is_empty() && self.children.is_empty()
    }

    /// Whether `pe` (one step below this node) is a member.
    pub fn is_member(&self, pe: &PathElement) -> bool {
        self.members.contains(pe)
    }

    /// The set below `pe`, if it has any member.
    pub fn child(&self, pe: &PathElement) -> Option<&FieldSet> {
        self.children.get(pe)
    }

    /// The elements one step below this node that are members or have members below them, in
    /// order.
    pub fn elements(&self) -> impl Iterator<Item = &PathElement> + '_ {
        let mut all: Vec<&PathElement> = self.members.iter().collect();
        all.extend(
            self.children
                .keys()
                .filter(|pe| !self.members.contains(*pe)),
        );
        all.sort();
        all.into_iter()
    }

    pub fn union(&self, other: &FieldSet) -> FieldSet {
        let mut out = self.clone();
        out.union_with(other);
        out
    }

    pub fn union_with(&mut self, other: &FieldSet) {
        self.members.extend(other.members.iter().cloned());
        for (pe, child) in &other.children {
            match self.children.get_mut(pe) {
                Some(mine) => mine.union_with(child),
                None => {
                    self.children.insert(pe.clone(), child.clone());
                }
            }
        }
    }

    /// Members of both, level by level.
    pub fn intersection(&self, other: &FieldSet) -> FieldSet {
        let members = self.members.intersection(&other.members).cloned().collect();
        let mut children = BTreeMap::new();
        for (pe, child) in &self.children {
            if let Some(theirs) = other.children.get(pe) {
                let both = child.intersection(theirs);
                if !both.is_empty() {
                    children.insert(pe.clone(), both);
                }
            }
        }
        FieldSet { members, children }
    }

    /// Upstream `Difference`: members of `self` not members of `other`, level by level; a
    /// member of `other` does not remove what lies below it in `self`.
    pub fn difference(&self, other: &FieldSet) -> FieldSet {
        let members = self.members.difference(&other.members).cloned().collect();
        let mut children = BTreeMap::new();
        for (pe, child) in &self.children {
            let rest = match other.children.get(pe) {
                Some(theirs) => child.difference(theirs),
                None => child.clone(),
            };
            if !rest.is_empty() {
                children.insert(pe.clone(), rest);
            }
        }
        FieldSet { members, children }
    }

    /// Upstream `RecursiveDifference`: like [`FieldSet::difference`], but a member of `other`
    /// also removes everything below it.
    pub fn recursive_difference(&self, other: &FieldSet) -> FieldSet {
        let members = self.members.difference(&other.members).cloned().collect();
        let mut children = BTreeMap::new();
        for (pe, child) in &self.children {
            if other.members.contains(pe) {
                continue;
            }
            let rest = match other.children.get(pe) {
                Some(theirs) => child.recursive_difference(theirs),
                None => child.clone(),
            };
            if !rest.is_empty() {
                children.insert(pe.clone(), rest);
            }
        }
        FieldSet { members, children }
    }

    /// Every member path, in upstream's iteration order (a node's members, then its children).
    pub fn paths(&self) -> Vec<Vec<PathElement>> {
        let mut out = Vec::new();
        let mut prefix = Vec::new();
        self.collect_paths(&mut prefix, &mut out);
        out
    }

    fn collect_paths(&self, prefix: &mut Vec<PathElement>, out: &mut Vec<Vec<PathElement>>) {
        for pe in &self.members {
            let mut path = prefix.clone();
            path.push(pe.clone());
            out.push(path);
        }
        for (pe, child) in &self.children {
            prefix.push(pe.clone());
            child.collect_paths(prefix, out);
            prefix.pop();
        }
    }

    /// The `FieldsV1` encoding, keys in upstream's order.
    pub fn to_fields_v1(&self) -> Value {
        Value::Object(self.encode(false))
    }

    fn encode(&self, include_self: bool) -> Map<String, Value> {
        let mut out = Map::new();
        if include_self && !self.is_empty() {
            out.insert(".".to_string(), Value::Object(Map::new()));
        }
        for pe in self.elements() {
            let value = match self.children.get(pe) {
                Some(child) => child.encode(self.members.contains(pe)),
                None => Map::new(),
            };
            out.insert(pe.to_fields_v1_key(), Value::Object(value));
        }
        out
    }

    /// Parses a `FieldsV1` document.
    pub fn from_fields_v1(value: &Value) -> Result<FieldSet, FieldPathError> {
        let Value::Object(map) = value else {
            return Err(FieldPathError::NotAnObject);
        };
        Self::decode(map, 0).map(|(set, _)| set)
    }

    fn decode(map: &Map<String, Value>, depth: usize) -> Result<(FieldSet, bool), FieldPathError> {
        if depth > crate::MAX_DEPTH {
            return Err(FieldPathError::TooDeep(crate::MAX_DEPTH));
        }
        let mut set = FieldSet::default();
        let mut is_member = false;
        for (key, value) in map {
            if key == "." {
                is_member = true;
                continue;
            }
            let pe = PathElement::from_fields_v1_key(key)?;
            let Value::Object(sub) = value else {
                return Err(FieldPathError::NotAnObject);
            };
            let (child, member) = Self::decode(sub, depth + 1)?;
            if member || child.is_empty() {
                set.members.insert(pe.clone());
            }
            if !child.is_empty() {
                set.children.insert(pe, child);
            }
        }
        Ok((set, is_member))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn f(name: &str) -> PathElement {
        PathElement::Field(name.to_string())
    }

    #[test]
    fn fields_v1_round_trips_in_upstream_order() {
        let doc = json!({
            "f:metadata": {"f:labels": {".": {}, "f:app": {}}},
            "f:spec": {
                "f:containers": {
                    "k:{\"name\":\"nginx\"}": {
                        ".": {},
                        "f:image": {},
                        "f:ports": {
                            "k:{\"containerPort\":80,\"protocol\":\"TCP\"}": {".": {}, "f:containerPort": {}}
                        }
                    }
                },
                "f:finalizers": {"v:\"a\\u003cb\"": {}, "v:\"x\"": {}},
                "f:args": {"i:0": {}}
            }
        });
        let set = FieldSet::from_fields_v1(&doc).unwrap();
        let nginx = PathElement::key([("name", &json!("nginx"))]);
        assert!(set.has(&[f("spec"), f("containers"), nginx.clone()]));
        assert!(set.has(&[f("spec"), f("containers"), nginx.clone(), f("image")]));
        assert!(set.has(&[f("metadata"), f("labels")]));
        assert!(!set.has(&[f("metadata")]));
        let encoded = set.to_fields_v1();
        assert_eq!(encoded, doc);
        assert_eq!(
            serde_json::to_string(&encoded["f:spec"]).unwrap(),
            r#"{"f:args":{"i:0":{}},"f:containers":{"k:{\"name\":\"nginx\"}":{".":{},"f:image":{},"f:ports":{"k:{\"containerPort\":80,\"protocol\":\"TCP\"}":{".":{},"f:containerPort":{}}}}},"f:finalizers":{"v:\"a\\u003cb\"":{},"v:\"x\"":{}}}"#
        );
    }

    #[test]
    fn keys_are_sorted_and_printed_like_upstream() {
        let pe = PathElement::key([("protocol", &json!("TCP")), ("containerPort", &json!(80.0))]);
        assert_eq!(
            pe.to_fields_v1_key(),
            r#"k:{"containerPort":80,"protocol":"TCP"}"#
        );
        let path = [f("spec"), f("ports"), pe, f("name")];
        assert_eq!(
            path_string(&path),
            r#".spec.ports[containerPort=80,protocol="TCP"].name"#
        );
        assert_eq!(PathElement::value(&json!("x")).to_string(), r#"[="x"]"#);
        assert!(PathElement::from_fields_v1_key("q:x").is_err());
        assert!(PathElement::from_fields_v1_key("k:[1]").is_err());
        assert!(PathElement::from_fields_v1_key("").is_err());
    }

    #[test]
    fn set_algebra_follows_upstream() {
        let set = |paths: &[&[&str]]| {
            let mut s = FieldSet::new();
            for p in paths {
                let p: Vec<PathElement> = p.iter().map(|n| f(n)).collect();
                s.insert(&p);
            }
            s
        };
        let a = set(&[&["a", "b"], &["a", "c"], &["d"]]);
        let b = set(&[&["a"], &["a", "b"]]);
        // parent - child = parent; child - parent = child (non-recursive).
        assert_eq!(a.difference(&b), set(&[&["a", "c"], &["d"]]));
        assert_eq!(a.recursive_difference(&b), set(&[&["d"]]));
        assert_eq!(a.intersection(&b), set(&[&["a", "b"]]));
        assert_eq!(a.union(&b).paths().len(), 4);
        assert!(a.difference(&a).is_empty());
    }
}
