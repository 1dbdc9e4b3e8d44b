//! How server-side apply sees a field: atomic or granular maps, and lists that are atomic, sets
//! of primitives or maps keyed by some of their fields.
//!
//! Upstream reads this from the OpenAPI extensions `x-kubernetes-list-type`,
//! `x-kubernetes-list-map-keys`, `x-kubernetes-map-type` and `x-kubernetes-struct-type`. Here it
//! is derived from the strategic-merge [`PatchMeta`] (a merge list with a merge key is a keyed
//! list, one without is a set, any other list is atomic; a `replace` map is atomic), plus the
//! few facts of the built-in kinds that the patch tags do not carry: lists keyed by more than
//! one field (ports by port *and* protocol, defaulting to TCP) and atomic structs and maps
//! (label selectors, node selectors, env var sources).

use serde_json::Value;

use crate::PatchMeta;

/// A key field of a keyed list, with the value an item that omits it gets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct ListKey {
    pub name: &'static str,
    pub default: Option<&'static str>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum ListShape {
    /// Replaced and owned as a whole.
    Atomic,
    /// Items are identified by their key fields and merged field by field.
    Keyed(Vec<ListKey>),
    /// Items are primitives identified by value.
    Set,
}

/// Map fields of the built-in kinds that are atomic for server-side apply
/// (`+structType=atomic` / `+mapType=atomic` upstream).
const ATOMIC_MAPS: &[&str] = &[
    "selector",
    "labelSelector",
    "namespaceSelector",
    "nodeSelector",
    "fieldRef",
    "resourceFieldRef",
    "configMapKeyRef",
    "secretKeyRef",
];

/// Fields that a Go object always carries (non-pointer structs, lists without `omitempty`), so
/// an update that fills them never *adds* them: upstream compares against a zero-valued object
/// where they are present, and their managedFields entries have no `"."`.
const ALWAYS_PRESENT: &[&str] = &[
    "metadata",
    "spec",
    "status",
    "template",
    "strategy",
    "updateStrategy",
    "jobTemplate",
    "containers",
];

pub(crate) struct Schema<'a> {
    meta: &'a dyn PatchMeta,
    builtin: bool,
}

impl<'a> Schema<'a> {
    pub fn new(meta: &'a dyn PatchMeta) -> Schema<'a> {
        Schema {
            meta,
            builtin: meta.is_builtin_kind(),
        }
    }

    /// The shape of the list at `names` (map keys only, list steps transparent).
    pub fn list(&self, names: &[&str]) -> ListShape {
        let field = self.meta.field(names);
        if !field.strategy.merges_lists() {
            return ListShape::Atomic;
        }
        let Some(key) = field.merge_key else {
            return ListShape::Set;
        };
        let protocol = ListKey {
            name: "protocol",
            default: Some("TCP"),
        };
        let first = ListKey {
            name: key,
            default: None,
        };
        let keys = match (self.builtin, key, names.last().copied()) {
            (true, "containerPort", _) | (true, "port", Some("ports")) => vec![first, protocol],
            (true, "topologyKey", _) => vec![
                first,
                ListKey {
                    name: "whenUnsatisfiable",
                    default: None,
                },
            ],
            _ => vec![first],
        };
        ListShape::Keyed(keys)
    }

    /// Whether the map at `names` is owned and replaced as a whole.
    pub fn atomic_map(&self, names: &[&str]) -> bool {
        if names.is_empty() {
            return false;
        }
        self.meta.field(names).strategy.replaces_maps()
            || (self.builtin && names.last().is_some_and(|name| ATOMIC_MAPS.contains(name)))
    }

    /// Whether the field `name` is one an object always has (see [`ALWAYS_PRESENT`]).
    pub fn always_present(&self, name: &str) -> bool {
        self.builtin && ALWAYS_PRESENT.contains(&name)
    }
}

/// The JSON value of a key default.
pub(crate) fn default_value(default: &str) -> Value {
    Value::String(default.to_string())
}
