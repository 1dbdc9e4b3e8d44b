//! Server-side apply (`application/apply-patch+yaml`) and the field ownership it rests on.
//!
//! A port of structured-merge-diff `merge.Updater` plus the apiserver's field-manager chain
//! (apimachinery `pkg/util/managedfields/internal`): [`apply`] merges an applied configuration
//! into the live object, removes what the applier stopped applying (unless another manager
//! owns it), reports conflicts with other managers or takes their fields with `force`, and
//! records the applier's fields in `metadata.managedFields`; [`track_update`] records what an
//! ordinary create, update or patch changed. Field shapes (keyed lists, sets, atomic values)
//! come from the kind's [`PatchMeta`]; see `schema.rs` for the differences that follow.
//!
//! Kept from upstream: the `FieldsV1` encoding, the metadata fields that are never owned, the
//! conflict messages, the upgrade from client-side apply (`kubectl` may take fields whose value
//! still matches the last-applied annotation, and keeps that annotation up to date), the cap
//! of ten Update entries. Not kept: version conversion (managers are compared at the version
//! they wrote), the probabilistic skip of tracking on create. The `status` of an applied
//! configuration is ignored and status is never owned through the main resource; status writes
//! are recorded with [`track_status_update`].

mod managed;
mod schema;
mod typed;

#[cfg(test)]
mod tests;

use serde_json::{Map, Value};

use crate::fieldpath::{path_string, FieldSet, PathElement};
use crate::PatchMeta;
use managed::{Managed, Operation};
use schema::Schema;

/// The annotation client-side `kubectl apply` keeps its last configuration in.
pub const LAST_APPLIED_ANNOTATION: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// Upstream `DefaultMaxUpdateManagers`.
const MAX_UPDATE_MANAGERS: usize = 10;

/// Who applies, and when.
#[derive(Clone, Copy, Debug)]
pub struct ApplyOptions<'a> {
    /// The `fieldManager` query parameter (`kubectl`, `kubectl-last-applied`, ...).
    pub manager: &'a str,
    /// `force=true`: take conflicting fields instead of failing.
    pub force: bool,
    /// RFC 3339 time recorded in the manager's entry.
    pub now: &'a str,
}

/// A field the applier wanted to change but another manager owns. The API server reports each
/// as a `StatusCause` of type `FieldManagerConflict` with this `message` and `field`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Conflict {
    /// The other manager's name.
    pub manager: String,
    /// Upstream's path form: `.spec.replicas`, `.spec.template.spec.containers[name="c"].image`.
    pub field: String,
    /// `conflict with "kubectl-create" using apps/v1` (upstream's cause message).
    pub message: String,
}

/// Why an apply was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ApplyError {
    /// 409 Conflict; the message is upstream's `Status` message.
    #[error("{}", conflict_message(.0))]
    Conflicts(Vec<Conflict>),
    /// 400 BadRequest: the configuration is not an object upstream would apply.
    #[error("{0}")]
    Invalid(String),
}

/// Upstream `getConflictMessage`.
fn conflict_message(conflicts: &[Conflict]) -> String {
    if let [only] = conflicts {
        return format!(
            "Apply failed with 1 conflict: {}: {}",
            only.message, only.field
        );
    }
    let mut groups: Vec<(&str, Vec<&str>)> = Vec::new();
    for conflict in conflicts {
        let who = conflict
            .message
            .strip_prefix("conflict with ")
            .unwrap_or(&conflict.message);
        match groups.iter_mut().find(|(w, _)| *w == who) {
            Some((_, fields)) => fields.push(&conflict.field),
            None => groups.push((who, vec![&conflict.field])),
        }
    }
    groups.sort_by(|a, b| a.0.cmp(b.0));
    let mut lines = Vec::new();
    for (who, fields) in groups {
        lines.push(format!("conflicts with {who}:"));
        lines.extend(fields.into_iter().map(|f| format!("- {f}")));
    }
    format!(
        "Apply failed with {} conflicts: {}",
        conflicts.len(),
        lines.join("\n")
    )
}

/// A conflict before it is printed.
struct RawConflict {
    manager: String,
    describe: String,
    path: Vec<PathElement>,
}

impl RawConflict {
    fn into_conflict(self) -> Conflict {
        Conflict {
            manager: self.manager,
            field: path_string(&self.path),
            message: format!("conflict with {}", self.describe),
        }
    }
}

fn field(name: &str) -> PathElement {
    PathElement::Field(name.to_string())
}

/// Fields no manager ever owns (upstream `stripMetaManager`).
fn strip_meta(set: &FieldSet) -> FieldSet {
    let mut strip = FieldSet::new();
    strip.insert(&[field("apiVersion")]);
    strip.insert(&[field("kind")]);
    strip.insert(&[field("metadata")]);
    for name in [
        "name",
        "namespace",
        "creationTimestamp",
        "selfLink",
        "uid",
        "clusterName",
        "generation",
        "managedFields",
        "resourceVersion",
    ] {
        strip.insert(&[field("metadata"), field(name)]);
    }
    set.difference(&strip)
}

/// Which part of the object a write may own: everything but `status` through the main
/// resource, only `status` through the status subresource.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Scope {
    Main,
    Status,
}

impl Scope {
    fn subresource(self) -> &'static str {
        match self {
            Scope::Main => "",
            Scope::Status => "status",
        }
    }

    fn filter(self, set: FieldSet) -> FieldSet {
        let mut status = FieldSet::new();
        status.insert(&[field("status")]);
        match self {
            Scope::Main => set.recursive_difference(&status),
            Scope::Status => set.difference(&set.recursive_difference(&status)),
        }
    }
}

/// A copy of `object` without `metadata.managedFields`.
fn without_managed_fields(object: &Value) -> Value {
    let mut object = object.clone();
    if let Some(metadata) = object.get_mut("metadata").and_then(Value::as_object_mut) {
        metadata.shift_remove("managedFields");
    }
    object
}

fn str_field<'v>(object: &'v Value, name: &str) -> &'v str {
    object.get(name).and_then(Value::as_str).unwrap_or_default()
}

/// Upstream `GroupVersionKind.String()`: `apps/v1, Kind=Deployment`, `/v1, Kind=ConfigMap`.
fn gvk_string(api_version: &str, kind: &str) -> String {
    let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
    format!("{group}/{version}, Kind={kind}")
}

/// Server-side apply `config` (a full object with apiVersion, kind and metadata.name) to `live`
/// (`None`: the object does not exist yet and is created). Returns the new object with
/// `metadata.managedFields` updated.
pub fn apply(
    live: Option<&Value>,
    config: &Value,
    meta: &dyn PatchMeta,
    opts: &ApplyOptions,
) -> Result<Value, ApplyError> {
    let schema = Schema::new(meta);
    let invalid = |message: String| ApplyError::Invalid(message);
    let Value::Object(config_map) = config else {
        return Err(invalid(
            "the applied configuration must be an object".into(),
        ));
    };
    let api_version = str_field(config, "apiVersion");
    let kind = str_field(config, "kind");
    if api_version.is_empty() || kind.is_empty() {
        return Err(invalid(
            "the applied configuration must set apiVersion and kind".into(),
        ));
    }
    if let Some(live) = live {
        let (live_version, live_kind) = (str_field(live, "apiVersion"), str_field(live, "kind"));
        if live_version != api_version {
            return Err(invalid(format!(
                "Incorrect version specified in apply patch. Specified patch version: {api_version}, expected: {live_version}"
            )));
        }
        if live_kind != kind {
            return Err(invalid(format!(
                "invalid object type: {}",
                gvk_string(api_version, kind)
            )));
        }
    }
    if config
        .get("metadata")
        .and_then(|m| m.get("managedFields"))
        .is_some_and(|f| !f.is_null())
    {
        return Err(invalid("metadata.managedFields must be nil".into()));
    }
    typed::validate(&schema, config).map_err(|e| {
        invalid(format!(
            "failed to create typed patch object ({}): {e}",
            gvk_string(api_version, kind)
        ))
    })?;

    let mut applied = config_map.clone();
    applied.shift_remove("status");
    let applied = Value::Object(applied);
    let live_object = live.map_or_else(|| Value::Object(Map::new()), without_managed_fields);
    let managed = live.map(Managed::decode).unwrap_or_default();
    let attempt = |force: bool| {
        apply_once(
            &schema,
            &live_object,
            &applied,
            managed.clone(),
            opts,
            api_version,
            force,
        )
    };
    let (mut object, mut managed) = match attempt(opts.force) {
        Ok(done) => done,
        Err(conflicts) => {
            // Upstream `lastAppliedManager`: kubectl may take over fields whose value still
            // matches its client-side last-applied configuration.
            let allowed = (opts.manager == "kubectl")
                .then(|| allowed_from_last_applied(&schema, &live_object))
                .flatten();
            let remaining: Vec<RawConflict> = match &allowed {
                Some(allowed) => conflicts
                    .into_iter()
                    .filter(|c| !allowed.has(&c.path))
                    .collect(),
                None => conflicts,
            };
            if !remaining.is_empty() {
                return Err(ApplyError::Conflicts(
                    remaining
                        .into_iter()
                        .map(RawConflict::into_conflict)
                        .collect(),
                ));
            }
            attempt(true).map_err(|c| {
                ApplyError::Conflicts(c.into_iter().map(RawConflict::into_conflict).collect())
            })?
        }
    };

    // A no-op apply keeps the time of the manager's previous apply.
    let changed = object != live_object;
    if let Some(i) = managed.find(opts.manager, Operation::Apply, api_version, "") {
        let entry = &mut managed.entries[i];
        if changed || entry.time.is_none() {
            entry.time = Some(opts.now.to_string());
        }
    }
    if opts.manager == "kubectl" {
        update_last_applied(&mut object, config);
    }
    managed.encode(&mut object);
    Ok(object)
}

/// One attempt of upstream `Updater.Apply`.
fn apply_once(
    schema: &Schema,
    live: &Value,
    config: &Value,
    mut managed: Managed,
    opts: &ApplyOptions,
    api_version: &str,
    force: bool,
) -> Result<(Value, Managed), Vec<RawConflict>> {
    let mut object = typed::merge(schema, live, config);
    // The applier's new set keeps metadata.name and friends until the end, so that pruning
    // never sees metadata as unowned.
    let set = Scope::Main.filter(typed::field_set(schema, config));
    let index = match managed.find(opts.manager, Operation::Apply, api_version, "") {
        Some(i) => i,
        None => {
            managed.entries.push(managed::Entry {
                manager: opts.manager.to_string(),
                operation: Operation::Apply,
                api_version: api_version.to_string(),
                subresource: String::new(),
                time: None,
                set: FieldSet::new(),
            });
            managed.entries.len() - 1
        }
    };
    let entry = &mut managed.entries[index];
    let last = std::mem::replace(&mut entry.set, set);
    entry.api_version = api_version.to_string();
    if !last.is_empty() {
        let mut all = FieldSet::new();
        for entry in &managed.entries {
            all.union_with(&entry.set);
        }
        typed::prune(schema, &mut object, &last, &all);
    }
    update(
        schema,
        live,
        &object,
        &mut managed,
        Some(index),
        Scope::Main,
        force,
    )?;
    if let Some(i) = managed.find(opts.manager, Operation::Apply, api_version, "") {
        let entry = &mut managed.entries[i];
        entry.set = strip_meta(&entry.set);
    }
    managed.remove_empty();
    Ok((object, managed))
}

/// Upstream `Updater.update`: the fields `old` → `new` changed are taken from every manager but
/// `skip` (a conflict unless `force`), the fields it removed are dropped from every manager.
fn update(
    schema: &Schema,
    old: &Value,
    new: &Value,
    managed: &mut Managed,
    skip: Option<usize>,
    scope: Scope,
    force: bool,
) -> Result<typed::Comparison, Vec<RawConflict>> {
    let comparison = typed::compare(schema, old, new).filter(|set| scope.filter(set));
    let changed = comparison.changed();
    if !force {
        let mut conflicts = Vec::new();
        let mut order: Vec<&managed::Entry> = managed
            .entries
            .iter()
            .enumerate()
            .filter(|(i, _)| Some(*i) != skip)
            .map(|(_, e)| e)
            .collect();
        order.sort_by(|a, b| (&a.manager, a.operation).cmp(&(&b.manager, b.operation)));
        for entry in order {
            for path in entry.set.intersection(&changed).paths() {
                conflicts.push(RawConflict {
                    manager: entry.manager.clone(),
                    describe: entry.describe(),
                    path,
                });
            }
        }
        if !conflicts.is_empty() {
            return Err(conflicts);
        }
    }
    for (i, entry) in managed.entries.iter_mut().enumerate() {
        if Some(i) != skip {
            entry.set = entry
                .set
                .difference(&changed)
                .difference(&comparison.removed);
        }
    }
    let skipped = skip.map(|i| managed.entries[i].clone());
    managed
        .entries
        .retain(|e| !e.set.is_empty() || Some(e) == skipped.as_ref());
    Ok(comparison)
}

/// Upstream `allowedConflictsFromLastApplied`: the fields of the last-applied annotation whose
/// value the live object still has.
fn allowed_from_last_applied(schema: &Schema, live: &Value) -> Option<FieldSet> {
    let text = live
        .get("metadata")?
        .get("annotations")?
        .get(LAST_APPLIED_ANNOTATION)?
        .as_str()?;
    let last: Value = serde_json::from_str(text).ok()?;
    if !last.is_object() || str_field(&last, "apiVersion") != str_field(live, "apiVersion") {
        return None;
    }
    let comparison = typed::compare(schema, &last, live);
    Some(
        typed::field_set(schema, &last)
            .difference(&comparison.modified)
            .difference(&comparison.added)
            .difference(&comparison.removed),
    )
}

/// Upstream `lastAppliedUpdater`: when `kubectl` applies to an object that has the
/// last-applied annotation, the annotation becomes the applied configuration.
fn update_last_applied(object: &mut Value, config: &Value) {
    let Some(annotations) = object
        .get_mut("metadata")
        .and_then(|m| m.get_mut("annotations"))
        .and_then(Value::as_object_mut)
    else {
        return;
    };
    if annotations
        .get(LAST_APPLIED_ANNOTATION)
        .and_then(Value::as_str)
        .is_none_or(str::is_empty)
    {
        return;
    }
    let mut config = config.clone();
    if let Some(config_annotations) = config
        .get_mut("metadata")
        .and_then(|m| m.get_mut("annotations"))
        .and_then(Value::as_object_mut)
    {
        config_annotations.shift_remove(LAST_APPLIED_ANNOTATION);
    }
    let encoded = format!("{}\n", crate::fieldpath::go_json(&sorted(&config)));
    annotations.insert(LAST_APPLIED_ANNOTATION.into(), Value::String(encoded));
}

/// A copy with every map's keys in order, as Go's `encoding/json` writes maps.
fn sorted(value: &Value) -> Value {
    match value {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            Value::Object(
                keys.into_iter()
                    .map(|k| (k.clone(), sorted(&map[k])))
                    .collect(),
            )
        }
        Value::Array(items) => Value::Array(items.iter().map(sorted).collect()),
        other => other.clone(),
    }
}

/// Records an ordinary write (create, update or patch by `manager`, operation `Update`) in
/// `new`'s `metadata.managedFields`: the fields that changed between `old` (`None` for a
/// create) and `new` become owned by `manager` and are taken from every other manager. `new`'s
/// own managedFields are kept when they are valid and non-empty (`[]` or `[{}]` resets them),
/// otherwise `old`'s are used. Changes to `status` are not recorded.
pub fn track_update(
    old: Option<&Value>,
    new: &mut Value,
    meta: &dyn PatchMeta,
    manager: &str,
    now: &str,
) {
    track(old, new, meta, manager, now, Scope::Main);
}

/// Like [`track_update`], for a write through the `status` subresource: only changes to
/// `status` are recorded, in an entry with `subresource: status`.
pub fn track_status_update(
    old: Option<&Value>,
    new: &mut Value,
    meta: &dyn PatchMeta,
    manager: &str,
    now: &str,
) {
    track(old, new, meta, manager, now, Scope::Status);
}

fn track(
    old: Option<&Value>,
    new: &mut Value,
    meta: &dyn PatchMeta,
    manager: &str,
    now: &str,
    scope: Scope,
) {
    if !new.is_object() {
        return;
    }
    let schema = Schema::new(meta);
    let mut managed = Managed::decode_live_or_new(old, new);
    let old_object = old.map_or_else(|| Value::Object(Map::new()), without_managed_fields);
    let new_object = without_managed_fields(new);
    let api_version = str_field(new, "apiVersion").to_string();
    let Ok(comparison) = update(
        &schema,
        &old_object,
        &new_object,
        &mut managed,
        None,
        scope,
        true,
    ) else {
        return;
    };
    let set = strip_meta(&comparison.changed());
    if !set.is_empty() {
        let subresource = scope.subresource();
        match managed.find(manager, Operation::Update, &api_version, subresource) {
            Some(i) => {
                let entry = &mut managed.entries[i];
                entry.set.union_with(&set);
                entry.time = Some(now.to_string());
            }
            None => managed.entries.push(managed::Entry {
                manager: manager.to_string(),
                operation: Operation::Update,
                api_version,
                subresource: subresource.to_string(),
                time: Some(now.to_string()),
                set,
            }),
        }
    }
    managed.cap_updates(MAX_UPDATE_MANAGERS);
    managed.encode(new);
}
