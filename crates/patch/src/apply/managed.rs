//! `metadata.managedFields`: decoding the stored entries into field sets, and encoding them back
//! in upstream's order (operation, then time, manager, apiVersion, subresource).

use serde_json::{Map, Value};

use crate::fieldpath::FieldSet;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Operation {
    Apply,
    Update,
}

impl Operation {
    fn as_str(self) -> &'static str {
        match self {
            Operation::Apply => "Apply",
            Operation::Update => "Update",
        }
    }
}

/// One managedFields entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Entry {
    pub manager: String,
    pub operation: Operation,
    pub api_version: String,
    pub subresource: String,
    pub time: Option<String>,
    pub set: FieldSet,
}

impl Entry {
    /// Upstream's manager identity: an applier is the same manager whatever version it applied
    /// at; an updater is one per apiVersion.
    pub fn is(
        &self,
        manager: &str,
        operation: Operation,
        api_version: &str,
        subresource: &str,
    ) -> bool {
        self.manager == manager
            && self.operation == operation
            && self.subresource == subresource
            && (operation == Operation::Apply || self.api_version == api_version)
    }

    /// Upstream `printManager`: `"kubectl"`, `"kubectl-create" using apps/v1`,
    /// `"kcm" with subresource "status" using apps/v1`.
    pub fn describe(&self) -> String {
        let mut out = crate::fieldpath::go_json(&Value::String(self.manager.clone()));
        if !self.subresource.is_empty() {
            out.push_str(" with subresource ");
            out.push_str(&crate::fieldpath::go_json(&Value::String(
                self.subresource.clone(),
            )));
        }
        if self.operation == Operation::Update {
            out.push_str(" using ");
            out.push_str(&self.api_version);
        }
        out
    }

    fn unix_seconds(&self) -> i64 {
        self.time
            .as_deref()
            .and_then(|t| t.parse::<jiff::Timestamp>().ok())
            .map_or(0, |t| t.as_second())
    }

    fn encode(&self) -> Value {
        let mut out = Map::new();
        if !self.manager.is_empty() {
            out.insert("manager".into(), self.manager.clone().into());
        }
        out.insert("operation".into(), self.operation.as_str().into());
        if !self.api_version.is_empty() {
            out.insert("apiVersion".into(), self.api_version.clone().into());
        }
        if let Some(time) = &self.time {
            out.insert("time".into(), time.clone().into());
        }
        out.insert("fieldsType".into(), "FieldsV1".into());
        out.insert("fieldsV1".into(), self.set.to_fields_v1());
        if !self.subresource.is_empty() {
            out.insert("subresource".into(), self.subresource.clone().into());
        }
        Value::Object(out)
    }

    fn decode(value: &Value) -> Option<Entry> {
        let map = value.as_object()?;
        let text = |key: &str| -> Option<String> {
            match map.get(key) {
                None | Some(Value::Null) => Some(String::new()),
                Some(Value::String(s)) => Some(s.clone()),
                Some(_) => None,
            }
        };
        let operation = match text("operation")?.as_str() {
            "Apply" => Operation::Apply,
            "Update" => Operation::Update,
            _ => return None,
        };
        let fields_type = text("fieldsType")?;
        let set = match map.get("fieldsV1") {
            None | Some(Value::Null) => FieldSet::new(),
            Some(fields) if fields_type == "FieldsV1" => FieldSet::from_fields_v1(fields).ok()?,
            Some(_) => return None,
        };
        let time = text("time")?;
        Some(Entry {
            manager: text("manager")?,
            operation,
            api_version: text("apiVersion")?,
            subresource: text("subresource")?,
            time: (!time.is_empty()).then_some(time),
            set,
        })
    }
}

/// The managers of one object.
#[derive(Clone, Debug, Default)]
pub(crate) struct Managed {
    pub entries: Vec<Entry>,
}

/// The `metadata.managedFields` of `object`, if it has the field.
fn managed_fields(object: &Value) -> Option<&Value> {
    object.get("metadata")?.get("managedFields")
}

impl Managed {
    /// The entries stored in `object`. Like upstream, entries that cannot be decoded (or two
    /// entries for one manager) make the whole list count as empty.
    pub fn decode(object: &Value) -> Managed {
        Self::try_decode(object).unwrap_or_default()
    }

    fn try_decode(object: &Value) -> Option<Managed> {
        let items = match managed_fields(object) {
            None | Some(Value::Null) => return Some(Managed::default()),
            Some(Value::Array(items)) => items,
            Some(_) => return None,
        };
        let mut managed = Managed::default();
        for item in items {
            let entry = Entry::decode(item)?;
            let duplicate = managed.find(
                &entry.manager,
                entry.operation,
                &entry.api_version,
                &entry.subresource,
            );
            if duplicate.is_some() {
                return None;
            }
            managed.entries.push(entry);
        }
        Some(managed)
    }

    /// Upstream `decodeLiveOrNew` for writes: the request object's entries when it carries
    /// valid, non-empty ones; none at all when it asks for a reset (`[]` or `[{}]`); else the
    /// stored object's.
    pub fn decode_live_or_new(old: Option<&Value>, new: &Value) -> Managed {
        match managed_fields(new) {
            Some(Value::Array(items))
                if items.is_empty()
                    || (items.len() == 1 && items[0].as_object().is_some_and(Map::is_empty)) =>
            {
                return Managed::default();
            }
            _ => {}
        }
        match Self::try_decode(new) {
            Some(managed) if !managed.entries.is_empty() => managed,
            _ => old.map(Managed::decode).unwrap_or_default(),
        }
    }

    pub fn find(
        &self,
        manager: &str,
        operation: Operation,
        api_version: &str,
        subresource: &str,
    ) -> Option<usize> {
        self.entries
            .iter()
            .position(|e| e.is(manager, operation, api_version, subresource))
    }

    pub fn remove_empty(&mut self) {
        self.entries.retain(|e| !e.set.is_empty());
    }

    /// Upstream `capUpdateManagers`: past `max` Update entries, the oldest are merged into one
    /// `ancient-changes` entry per apiVersion.
    pub fn cap_updates(&mut self, max: usize) {
        const BUCKET: &str = "ancient-changes";
        let mut updaters: Vec<(i64, String, String, String)> = self
            .entries
            .iter()
            .filter(|e| e.operation == Operation::Update)
            .map(|e| {
                (
                    e.unix_seconds(),
                    e.manager.clone(),
                    e.api_version.clone(),
                    e.subresource.clone(),
                )
            })
            .collect();
        if updaters.len() <= max {
            return;
        }
        updaters.sort();
        let mut length = updaters.len();
        let mut first_of_version: Vec<(String, (String, String))> = Vec::new();
        for (_, manager, version, subresource) in updaters {
            if length <= max {
                break;
            }
            let Some(first) = first_of_version
                .iter()
                .find(|(v, _)| *v == version)
                .map(|(_, first)| first.clone())
            else {
                first_of_version.push((version, (manager, subresource)));
                continue;
            };
            let Some(index) = self.find(&manager, Operation::Update, &version, &subresource) else {
                continue;
            };
            let merged = self.entries.remove(index);
            let bucket = match self.find(BUCKET, Operation::Update, &version, "") {
                Some(bucket) => bucket,
                None => {
                    let Some(first) = self.find(&first.0, Operation::Update, &version, &first.1)
                    else {
                        continue;
                    };
                    self.entries[first].manager = BUCKET.to_string();
                    self.entries[first].subresource = String::new();
                    first
                }
            };
            let bucket = &mut self.entries[bucket];
            bucket.set.union_with(&merged.set);
            bucket.time = merged.time;
            length -= 1;
        }
    }

    /// Writes the entries into `object`'s metadata (removing the field when there are none).
    pub fn encode(mut self, object: &mut Value) {
        let Some(metadata) = object
            .as_object_mut()
            .and_then(|o| o.get_mut("metadata"))
            .and_then(Value::as_object_mut)
        else {
            return;
        };
        self.remove_empty();
        if self.entries.is_empty() {
            metadata.shift_remove("managedFields");
            return;
        }
        let mut keyed: Vec<_> = self
            .entries
            .into_iter()
            .map(|e| {
                let key = (
                    e.operation,
                    e.unix_seconds(),
                    e.manager.clone(),
                    e.api_version.clone(),
                    e.subresource.clone(),
                );
                (key, e)
            })
            .collect();
        keyed.sort_by(|a, b| a.0.cmp(&b.0));
        let list = keyed.iter().map(|(_, e)| e.encode()).collect();
        metadata.insert("managedFields".into(), Value::Array(list));
    }
}
