//! The generic registry: object semantics on top of the store, for every resource alike
//! (server-owned metadata, defaulting, validation, optimistic concurrency, finalizers, graceful
//! deletion). Per-kind knowledge comes from `kubelab_resources`; there are no per-kind handlers.

use std::sync::Arc;

use base64::Engine;
use kubelab_resources::catalog::{self, ResourceType};
use kubelab_resources::fields::FieldSelector;
use kubelab_resources::labels::LabelSelector;
use kubelab_resources::validation::{self, FieldError, ValidationError};
use kubelab_store::{KeyValue, Revision, Store};
use serde_json::{json, Value};

use crate::allocator::ServiceRanges;
use crate::custom::CustomTypes;
use crate::error::{ApiError, ApiResult};
use crate::object::{self, conflict_modified, not_found};

pub const FOREGROUND_FINALIZER: &str = "foregroundDeletion";
pub const ORPHAN_FINALIZER: &str = "orphan";

/// How many times an unconditional write retries after losing an optimistic-concurrency race.
const MAX_RETRIES: usize = 16;

pub struct Registry {
    store: Arc<dyn Store>,
    custom: Arc<CustomTypes>,
    service_ranges: ServiceRanges,
    /// Serialises Service writes so two never take the same address or port.
    service_lock: tokio::sync::Mutex<()>,
}

/// Filters and paging of a list or watch.
#[derive(Default)]
pub struct ListOptions {
    pub labels: Option<LabelSelector>,
    pub fields: Option<FieldSelector>,
    pub limit: usize,
    pub continue_key: Option<String>,
}

impl ListOptions {
    pub fn matches(&self, rt: &ResourceType, obj: &Value) -> bool {
        let labels_ok = self.labels.as_ref().is_none_or(|s| {
            s.matches(
                object::metadata(obj)
                    .and_then(|m| m.get("labels"))
                    .and_then(Value::as_object),
            )
        });
        labels_ok && self.fields.as_ref().is_none_or(|f| f.matches(rt, obj))
    }
}

pub struct ListPage {
    pub items: Vec<Value>,
    pub revision: Revision,
    pub continue_token: Option<String>,
}

/// DeleteOptions from the body and the query.
#[derive(Default, Debug)]
pub struct DeleteOptions {
    pub grace_period_seconds: Option<i64>,
    /// Foreground, Background or Orphan (None: Background).
    pub propagation: Option<String>,
    pub precondition_uid: Option<String>,
    pub precondition_resource_version: Option<String>,
    pub dry_run: bool,
}

/// What a write decided to do with the store.
enum Write {
    Update(Value),
    Delete(Value),
    Unchanged(Value),
}

pub fn encode_continue(revision: Revision, key: &str) -> String {
    let raw = json!({"rv": revision, "start": key}).to_string();
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw)
}

fn decode_continue(token: &str) -> ApiResult<String> {
    let bad = || {
        ApiError::bad_request("continue key is not valid: incorrect encoded start resourceVersion (version meta.k8s.io/v1)")
    };
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(token)
        .map_err(|_| bad())?;
    let v: Value = serde_json::from_slice(&raw).map_err(|_| bad())?;
    v.get("start")
        .and_then(Value::as_str)
        .map(String::from)
        .ok_or_else(bad)
}

impl ListOptions {
    pub fn set_continue(&mut self, token: &str) -> ApiResult<()> {
        self.continue_key = Some(decode_continue(token)?);
        Ok(())
    }
}

impl Registry {
    #[cfg(test)]
    pub fn new(store: Arc<dyn Store>) -> Self {
        Self::with_ranges(store, ServiceRanges::default())
    }

    pub fn with_ranges(store: Arc<dyn Store>, service_ranges: ServiceRanges) -> Self {
        Registry {
            store,
            custom: Arc::new(CustomTypes::default()),
            service_ranges,
            service_lock: tokio::sync::Mutex::new(()),
        }
    }

    fn is_service(rt: &ResourceType) -> bool {
        rt.group.is_empty() && rt.plural == "services"
    }

    /// Give a Service its ClusterIP and node ports (caller holds `service_lock`).
    async fn allocate_service(&self, rt: &ResourceType, obj: &mut Value) -> ApiResult<()> {
        // The Service itself (same namespace and name) is not an "other": on update it keeps
        // its own allocations, and a create of an existing name fails as AlreadyExists.
        let ns = object::meta_str(obj, "namespace").unwrap_or("");
        let key = object::object_key(rt, Some(ns), object::name(obj));
        let listed = self
            .store
            .list(&object::resource_prefix(rt), None, 0)
            .await?;
        let others: Vec<Value> = listed
            .items
            .iter()
            .filter(|kv| kv.key != key)
            .filter_map(|kv| object::from_kv(kv).ok())
            .collect();
        let name = object::name(obj).to_string();
        crate::allocator::allocate(obj, &others, &self.service_ranges)
            .map_err(|causes| invalid(rt, &name, causes))
    }

    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    pub fn custom(&self) -> &Arc<CustomTypes> {
        &self.custom
    }

    /// A built-in type, or a custom one currently defined by a CRD.
    pub fn find_type(
        &self,
        group: &str,
        version: &str,
        plural: &str,
    ) -> Option<&'static ResourceType> {
        catalog::find(group, version, plural)
            .or_else(|| self.custom.find(group, version, plural).map(|cv| cv.rt))
    }

    /// Every served type: built-in ones in discovery order, then custom ones.
    pub fn all_types(&self) -> Vec<&'static ResourceType> {
        let mut all: Vec<&'static ResourceType> = catalog::builtin().iter().collect();
        all.extend(self.custom.all().iter().map(|cv| cv.rt));
        all
    }

    /// Custom-resource admission: schema defaults, pruning, structural validation.
    fn admit_custom(&self, rt: &ResourceType, obj: &mut Value, name: &str) -> ApiResult<()> {
        if let Some(cv) = self.custom.of(rt) {
            let errors = cv.admit(obj);
            if !errors.is_empty() {
                return Err(invalid(rt, name, errors));
            }
        }
        Ok(())
    }

    async fn get_kv(&self, rt: &ResourceType, ns: Option<&str>, name: &str) -> ApiResult<KeyValue> {
        self.store
            .get(&object::object_key(rt, ns, name))
            .await?
            .ok_or_else(|| not_found(rt, name))
    }

    pub async fn get(&self, rt: &ResourceType, ns: Option<&str>, name: &str) -> ApiResult<Value> {
        object::from_kv_as(rt, &self.get_kv(rt, ns, name).await?)
    }

    pub async fn list(
        &self,
        rt: &ResourceType,
        ns: Option<&str>,
        opts: &ListOptions,
    ) -> ApiResult<ListPage> {
        let (kvs, revision, continue_token) = self.list_selected_raw(rt, ns, opts).await?;
        let items = kvs
            .iter()
            .map(|kv| object::from_kv_as(rt, kv))
            .collect::<ApiResult<Vec<_>>>()?;
        Ok(ListPage {
            items,
            revision,
            continue_token,
        })
    }

    /// A list without selectors, as stored key-values (the fast path that never decodes).
    pub async fn list_raw(
        &self,
        rt: &ResourceType,
        ns: Option<&str>,
        opts: &ListOptions,
    ) -> ApiResult<(Vec<KeyValue>, Revision, Option<String>)> {
        let prefix = object::collection_prefix(rt, ns);
        let listed = self
            .store
            .list(&prefix, opts.continue_key.as_deref(), opts.limit)
            .await?;
        let token = match (listed.more, listed.items.last()) {
            (true, Some(last)) => Some(encode_continue(listed.revision, &last.key)),
            _ => None,
        };
        Ok((listed.items, listed.revision, token))
    }

    /// A list with selectors, as the stored key-values of the matching objects: each object is
    /// decoded only to be matched, one at a time, so a large list never holds every object
    /// decoded at once. Paging counts matching objects, as [`Registry::list`] does.
    pub async fn list_selected_raw(
        &self,
        rt: &ResourceType,
        ns: Option<&str>,
        opts: &ListOptions,
    ) -> ApiResult<(Vec<KeyValue>, Revision, Option<String>)> {
        let prefix = object::collection_prefix(rt, ns);
        let listed = self
            .store
            .list(&prefix, opts.continue_key.as_deref(), 0)
            .await?;
        let revision = listed.revision;
        let mut items = Vec::new();
        let mut continue_token = None;
        let mut rest = listed.items.into_iter();
        while let Some(kv) = rest.next() {
            if !opts.matches(rt, &object::from_kv_as(rt, &kv)?) {
                continue;
            }
            let key = kv.key.clone();
            items.push(kv);
            if opts.limit > 0 && items.len() == opts.limit {
                let more =
                    rest.any(|kv| object::from_kv_as(rt, &kv).is_ok_and(|o| opts.matches(rt, &o)));
                if more {
                    continue_token = Some(encode_continue(revision, &key));
                }
                break;
            }
        }
        Ok((items, revision, continue_token))
    }

    /// ServiceAccount admission for a new pod: the token volume mounted into its containers,
    /// unless the pod or its ServiceAccount opts out. (Upstream also refuses pods whose
    /// account does not exist yet; kubelab lets them in, so a pod created right after its
    /// namespace does not race the service-account controller.)
    async fn admit_service_account(&self, ns: Option<&str>, pod: &mut Value) -> ApiResult<()> {
        let account = pod
            .pointer("/spec/serviceAccountName")
            .and_then(Value::as_str)
            .unwrap_or("default")
            .to_string();
        let rt = catalog::find("", "v1", "serviceaccounts").expect("serviceaccounts are served");
        let automount = match self.get(rt, ns, &account).await {
            Ok(sa) => sa
                .get("automountServiceAccountToken")
                .and_then(Value::as_bool)
                .unwrap_or(true),
            Err(ApiError::NotFound { .. }) => true,
            Err(e) => return Err(e),
        };
        kubelab_resources::service_account::mount_token(
            pod,
            automount,
            &object::generate_name_suffix(),
        );
        Ok(())
    }

    /// Refuse content in a namespace that is missing or terminating.
    async fn check_namespace(
        &self,
        rt: &ResourceType,
        ns: Option<&str>,
        name: &str,
    ) -> ApiResult<()> {
        let Some(ns) = ns.filter(|_| rt.namespaced) else {
            return Ok(());
        };
        let ns_type = catalog::find("", "v1", "namespaces").ok_or_else(|| {
            ApiError::internal("the namespaces resource is missing from the catalog")
        })?;
        match self.store.get(&object::object_key(ns_type, None, ns)).await? {
            None => Err(not_found(ns_type, ns)),
            Some(kv) if object::is_deleting(&object::from_kv(&kv)?) => Err(ApiError::Forbidden {
                message: format!(
                    "{} \"{name}\" is forbidden: unable to create new content in namespace {ns} because it is being terminated",
                    object::qualified_resource(rt)
                ),
                details: Some(crate::error::Details {
                    group: rt.group.into(),
                    kind: rt.plural.into(),
                    name: name.into(),
                }),
            }),
            Some(_) => Ok(()),
        }
    }

    /// Create an object. `ns` comes from the path and wins over (must match) the body's.
    pub async fn create(
        &self,
        rt: &ResourceType,
        ns: Option<&str>,
        mut obj: Value,
        dry_run: bool,
    ) -> ApiResult<Value> {
        prepare_type_meta(rt, &mut obj)?;
        set_namespace(rt, ns, &mut obj)?;
        let meta = object::metadata_mut(&mut obj)
            .ok_or_else(|| ApiError::bad_request("the object provided is not a JSON object"))?;
        let generate = meta
            .get("generateName")
            .and_then(Value::as_str)
            .map(String::from)
            .filter(|g| !g.is_empty());
        let explicit_name = meta
            .get("name")
            .and_then(Value::as_str)
            .is_some_and(|n| !n.is_empty());
        meta.remove("resourceVersion");
        meta.remove("deletionTimestamp");
        meta.remove("deletionGracePeriodSeconds");
        meta.insert("uid".into(), json!(uuid::Uuid::new_v4().to_string()));
        meta.insert("creationTimestamp".into(), json!(object::now_rfc3339()));
        if rt.has_status() || is_spec_kind(&obj) {
            object::metadata_mut(&mut obj)
                .expect("metadata exists")
                .insert("generation".into(), json!(1));
        }
        if rt.has_status() && rt.plural != "namespaces" {
            if let Some(map) = obj.as_object_mut() {
                map.remove("status");
            }
        }
        initial_status(rt, &mut obj);
        kubelab_resources::defaults::apply_defaults(rt, &mut obj);
        if rt.group.is_empty() && rt.kind == "Pod" {
            self.admit_service_account(ns, &mut obj).await?;
        }
        let display = object::name(&obj).to_string();
        self.admit_custom(rt, &mut obj, &display)?;

        if !explicit_name && generate.is_none() {
            return Err(invalid(
                rt,
                "",
                vec![FieldError {
                    reason: "FieldValueRequired",
                    field: "metadata.name".into(),
                    message: "Required value: name or generateName is required".into(),
                }],
            ));
        }
        let display_name = object::name(&obj).to_string();
        self.check_namespace(rt, ns, &display_name).await?;

        let _service_guard = if Self::is_service(rt) {
            Some(self.service_lock.lock().await)
        } else {
            None
        };
        if Self::is_service(rt) {
            self.allocate_service(rt, &mut obj).await?;
        }
        for _attempt in 0..MAX_RETRIES {
            if !explicit_name {
                let prefix = generate.clone().unwrap_or_default();
                object::metadata_mut(&mut obj)
                    .expect("metadata exists")
                    .insert(
                        "name".into(),
                        json!(format!("{prefix}{}", object::generate_name_suffix())),
                    );
            }
            let name = object::name(&obj).to_string();
            run_validation(rt, &obj, None, &name)?;
            if dry_run {
                return Ok(obj);
            }
            let key = object::object_key(rt, ns, &name);
            match self.store.create(&key, object::to_stored(&obj)?).await {
                Ok(kv) => return object::from_kv_as(rt, &kv),
                Err(kubelab_store::Error::AlreadyExists { .. }) if !explicit_name => continue,
                Err(kubelab_store::Error::AlreadyExists { .. }) => {
                    return Err(ApiError::AlreadyExists {
                        group: rt.group.into(),
                        kind: rt.plural.into(),
                        name,
                    })
                }
                Err(e) => return Err(e.into()),
            }
        }
        Err(ApiError::internal(
            "could not generate a unique name; try again",
        ))
    }

    /// Read-modify-write of one object. `mutate` gets the current object (with its
    /// resourceVersion) and returns the desired one; a desired object carrying a resourceVersion
    /// different from the current one is a conflict (the client's precondition), otherwise lost
    /// races are retried.
    pub async fn update<F>(
        &self,
        rt: &ResourceType,
        ns: Option<&str>,
        name: &str,
        subresource: Option<&str>,
        dry_run: bool,
        mut mutate: F,
    ) -> ApiResult<Value>
    where
        F: FnMut(&Value) -> ApiResult<Value> + Send,
    {
        let _service_guard = if Self::is_service(rt) {
            Some(self.service_lock.lock().await)
        } else {
            None
        };
        for _attempt in 0..MAX_RETRIES {
            let kv = self.get_kv(rt, ns, name).await?;
            let old = object::from_kv_as(rt, &kv)?;
            let mut desired = mutate(&old)?;
            let conditional = match object::meta_str(&desired, "resourceVersion") {
                Some(rv) if !rv.is_empty() => {
                    if rv != kv.mod_revision.to_string() {
                        return Err(conflict_modified(rt, name));
                    }
                    true
                }
                _ => false,
            };
            prepare_type_meta(rt, &mut desired)?;
            let new = match subresource {
                None => prepare_update(rt, ns, name, &old, desired)?,
                Some("status") => with_status_from(&old, &desired),
                Some("finalize") if rt.plural == "namespaces" => {
                    let mut new = old.clone();
                    new["spec"]["finalizers"] = desired
                        .pointer("/spec/finalizers")
                        .cloned()
                        .unwrap_or_else(|| json!([]));
                    new
                }
                Some(other) => {
                    return Err(ApiError::bad_request(format!(
                        "subresource {other} cannot be updated"
                    )))
                }
            };
            let mut new = new;
            self.admit_custom(rt, &mut new, name)?;
            if Self::is_service(rt) && subresource.is_none() {
                self.allocate_service(rt, &mut new).await?;
            }
            run_validation(rt, &new, Some(&old), name)?;
            let write = decide(rt, &old, new);
            if dry_run {
                return match write {
                    Write::Update(v) | Write::Delete(v) | Write::Unchanged(v) => Ok(v),
                };
            }
            let key = object::object_key(rt, ns, name);
            let (outcome, removed) = match write {
                // Unchanged objects are not written, unless the stored value is stale (not
                // under the encryption write key): upstream rewrites those, which is how
                // `kubectl replace` re-encrypts.
                Write::Unchanged(v) if !self.store.is_stale(&key, kv.mod_revision).await => {
                    return Ok(v)
                }
                Write::Unchanged(v) => (
                    self.store
                        .update(&key, object::to_stored(&v)?, Some(kv.mod_revision))
                        .await
                        .map(Some),
                    None,
                ),
                Write::Update(v) => (
                    self.store
                        .update(&key, object::to_stored(&v)?, Some(kv.mod_revision))
                        .await
                        .map(Some),
                    None,
                ),
                Write::Delete(v) => (
                    self.store
                        .delete(&key, Some(kv.mod_revision))
                        .await
                        .map(|_| None),
                    Some(v),
                ),
            };
            match outcome {
                Ok(Some(kv)) => return object::from_kv_as(rt, &kv),
                Ok(None) => return Ok(removed.unwrap_or(Value::Null)),
                Err(kubelab_store::Error::Conflict { .. }) if !conditional => continue,
                Err(kubelab_store::Error::Conflict { .. }) => {
                    return Err(conflict_modified(rt, name))
                }
                Err(kubelab_store::Error::NotFound { .. }) => return Err(not_found(rt, name)),
                Err(e) => return Err(e.into()),
            }
        }
        Err(conflict_modified(rt, name))
    }

    /// Delete one object, honouring finalizers, graceful pod deletion and namespace lifecycle.
    /// Returns the object as it stands after the call (still present if deletion is pending).
    pub async fn delete(
        &self,
        rt: &ResourceType,
        ns: Option<&str>,
        name: &str,
        opts: &DeleteOptions,
    ) -> ApiResult<(Value, bool)> {
        for _attempt in 0..MAX_RETRIES {
            let kv = self.get_kv(rt, ns, name).await?;
            let mut obj = object::from_kv_as(rt, &kv)?;
            check_preconditions(rt, name, &obj, opts)?;
            let key = object::object_key(rt, ns, name);
            let pending = self.pending_deletion(rt, &mut obj, opts);
            if opts.dry_run {
                return Ok((obj, pending.is_none()));
            }
            let result = match pending {
                Some(true) => self
                    .store
                    .update(&key, object::to_stored(&obj)?, Some(kv.mod_revision))
                    .await
                    .map(|kv| (Some(kv), false)),
                Some(false) => return Ok((obj, false)),
                None => self
                    .store
                    .delete(&key, Some(kv.mod_revision))
                    .await
                    .map(|_| (None, true)),
            };
            match result {
                Ok((Some(kv), deleted)) => return Ok((object::from_kv_as(rt, &kv)?, deleted)),
                Ok((None, deleted)) => return Ok((obj, deleted)),
                Err(kubelab_store::Error::Conflict { .. }) => continue,
                Err(kubelab_store::Error::NotFound { .. }) => return Err(not_found(rt, name)),
                Err(e) => return Err(e.into()),
            }
        }
        Err(conflict_modified(rt, name))
    }

    /// Whether deletion must wait: `Some(true)` = mark the object (write it), `Some(false)` =
    /// already marked, nothing to write, `None` = remove it now.
    fn pending_deletion(
        &self,
        rt: &ResourceType,
        obj: &mut Value,
        opts: &DeleteOptions,
    ) -> Option<bool> {
        let now = object::now_rfc3339();
        let deleting = object::is_deleting(obj);
        // Foreground and Orphan deletion hand the object to the garbage collector through a
        // finalizer; it removes the finalizer once dependents are gone or released.
        let gc_finalizer = match opts.propagation.as_deref() {
            Some("Foreground") => Some(FOREGROUND_FINALIZER),
            Some("Orphan") => Some(ORPHAN_FINALIZER),
            _ => None,
        };
        if let Some(f) =
            gc_finalizer.filter(|_| !(rt.plural == "namespaces" && rt.group.is_empty()))
        {
            let mut finalizers = object::finalizers(obj);
            if !finalizers.iter().any(|x| x == f) {
                finalizers.push(f.to_string());
                if let Some(meta) = object::metadata_mut(obj) {
                    meta.insert("finalizers".into(), json!(finalizers));
                }
                if !deleting {
                    mark_deleting(obj, &now, 0);
                }
                return Some(true);
            }
        }
        if rt.plural == "namespaces" && rt.group.is_empty() {
            if namespace_finalized(obj) && object::finalizers(obj).is_empty() {
                return None;
            }
            if deleting {
                return Some(false);
            }
            mark_deleting(obj, &now, 0);
            obj["status"]["phase"] = json!("Terminating");
            return Some(true);
        }
        let graceful_pod = rt.plural == "pods"
            && rt.group.is_empty()
            && obj
                .pointer("/spec/nodeName")
                .and_then(Value::as_str)
                .is_some_and(|n| !n.is_empty())
            && !matches!(
                obj.pointer("/status/phase").and_then(Value::as_str),
                Some("Succeeded" | "Failed")
            );
        if graceful_pod {
            let default_grace = obj
                .pointer("/spec/terminationGracePeriodSeconds")
                .and_then(Value::as_i64)
                .unwrap_or(30);
            let grace = opts.grace_period_seconds.unwrap_or(default_grace).max(0);
            if grace > 0 {
                let current = object::metadata(obj)
                    .and_then(|m| m.get("deletionGracePeriodSeconds"))
                    .and_then(Value::as_i64);
                if deleting && current.is_some_and(|c| c <= grace) {
                    return Some(false);
                }
                let at = jiff::Timestamp::now()
                    .checked_add(jiff::SignedDuration::from_secs(grace))
                    .unwrap_or(jiff::Timestamp::now())
                    .strftime("%Y-%m-%dT%H:%M:%SZ")
                    .to_string();
                mark_deleting(obj, &at, grace);
                return Some(true);
            }
        }
        if !object::finalizers(obj).is_empty() {
            if deleting {
                // A grace-0 delete still shortens a terminating pod's grace period (as
                // upstream), so the pod goes away as soon as its finalizers do.
                let shortens = rt.plural == "pods"
                    && rt.group.is_empty()
                    && opts.grace_period_seconds == Some(0)
                    && object::metadata(obj)
                        .and_then(|m| m.get("deletionGracePeriodSeconds"))
                        .and_then(Value::as_i64)
                        .is_some_and(|g| g > 0);
                if shortens {
                    mark_deleting(obj, &now, 0);
                    return Some(true);
                }
                return Some(false);
            }
            mark_deleting(obj, &now, 0);
            return Some(true);
        }
        None
    }
}

fn mark_deleting(obj: &mut Value, at: &str, grace: i64) {
    if let Some(meta) = object::metadata_mut(obj) {
        meta.insert("deletionTimestamp".into(), json!(at));
        meta.insert("deletionGracePeriodSeconds".into(), json!(grace));
    }
}

fn namespace_finalized(obj: &Value) -> bool {
    obj.pointer("/spec/finalizers")
        .and_then(Value::as_array)
        .is_none_or(|a| a.is_empty())
}

/// After an update: remove the object when it is being deleted and nothing holds it any more.
fn decide(rt: &ResourceType, old: &Value, new: Value) -> Write {
    if object::is_deleting(&new) && object::finalizers(&new).is_empty() {
        let is_namespace = rt.plural == "namespaces" && rt.group.is_empty();
        let graceful_pod = rt.plural == "pods"
            && rt.group.is_empty()
            && object::metadata(&new)
                .and_then(|m| m.get("deletionGracePeriodSeconds"))
                .and_then(Value::as_i64)
                .unwrap_or(0)
                > 0;
        if (!is_namespace || namespace_finalized(&new)) && !graceful_pod {
            return Write::Delete(new);
        }
    }
    // A write that changes nothing but managedFields timestamps is no write at all (upstream's
    // IgnoreManagedFieldsTimestampsTransformer): the resourceVersion stays.
    let mut a = old.clone();
    let mut b = new.clone();
    for v in [&mut a, &mut b] {
        if let Some(m) = object::metadata_mut(v) {
            m.remove("resourceVersion");
            if let Some(entries) = m.get_mut("managedFields").and_then(Value::as_array_mut) {
                for e in entries.iter_mut().filter_map(Value::as_object_mut) {
                    e.remove("time");
                }
            }
        }
    }
    if a == b {
        Write::Unchanged(old.clone())
    } else {
        Write::Update(new)
    }
}

fn check_preconditions(
    rt: &ResourceType,
    name: &str,
    obj: &Value,
    opts: &DeleteOptions,
) -> ApiResult<()> {
    let conflict = |what: &str, want: &str, have: &str| {
        ApiError::Conflict {
        group: rt.group.into(),
        kind: rt.plural.into(),
        name: name.into(),
        message: format!(
            "Operation cannot be fulfilled on {} \"{name}\": Precondition failed: {what} in precondition: {want}, {what} in object meta: {have}",
            object::qualified_resource(rt)
        ),
    }
    };
    if let Some(uid) = &opts.precondition_uid {
        let have = object::meta_str(obj, "uid").unwrap_or("");
        if uid != have {
            return Err(conflict("UID", uid, have));
        }
    }
    if let Some(rv) = &opts.precondition_resource_version {
        let have = object::meta_str(obj, "resourceVersion").unwrap_or("");
        if rv != have {
            return Err(conflict("ResourceVersion", rv, have));
        }
    }
    Ok(())
}

/// Fill or check apiVersion and kind against the endpoint.
fn prepare_type_meta(rt: &ResourceType, obj: &mut Value) -> ApiResult<()> {
    let want_version = rt.api_version();
    let map = obj
        .as_object_mut()
        .ok_or_else(|| ApiError::bad_request("the object provided is not a JSON object"))?;
    match map.get("apiVersion").and_then(Value::as_str) {
        None | Some("") => {
            map.insert("apiVersion".into(), json!(want_version));
        }
        Some(v) if v == want_version => {}
        Some(v) => {
            return Err(ApiError::bad_request(format!(
                "the API version in the data ({v}) does not match the expected API version ({want_version})"
            )))
        }
    }
    match map.get("kind").and_then(Value::as_str) {
        None | Some("") => {
            map.insert("kind".into(), json!(rt.kind));
        }
        Some(k) if k == rt.kind => {}
        Some(k) => {
            return Err(ApiError::bad_request(format!(
                "the kind in the data ({k}) does not match the expected kind ({})",
                rt.kind
            )))
        }
    }
    Ok(())
}

fn set_namespace(rt: &ResourceType, ns: Option<&str>, obj: &mut Value) -> ApiResult<()> {
    let meta = object::metadata_mut(obj)
        .ok_or_else(|| ApiError::bad_request("the object provided is not a JSON object"))?;
    if !rt.namespaced {
        meta.remove("namespace");
        return Ok(());
    }
    let Some(ns) = ns else {
        return Err(ApiError::bad_request(
            "the namespace of the object must be set by the request path",
        ));
    };
    match meta.get("namespace").and_then(Value::as_str) {
        Some(body_ns) if !body_ns.is_empty() && body_ns != ns => Err(ApiError::bad_request(
            "the namespace of the provided object does not match the namespace sent on the request",
        )),
        _ => {
            meta.insert("namespace".into(), json!(ns));
            Ok(())
        }
    }
}

/// Kinds whose changes outside metadata/status count as spec changes (everything with a spec).
fn is_spec_kind(obj: &Value) -> bool {
    obj.get("spec").is_some()
}

/// Status the server sets on create.
fn initial_status(rt: &ResourceType, obj: &mut Value) {
    if !rt.group.is_empty() {
        return;
    }
    match rt.plural {
        "pods" => {
            let qos = pod_qos_class(obj);
            obj["status"] = json!({"phase": "Pending", "qosClass": qos});
        }
        "namespaces" => {
            obj["status"] = json!({"phase": "Active"});
        }
        _ => {}
    }
}

/// QoS class from the containers' requests and limits (upstream GetPodQOS, simplified to cpu
/// and memory).
fn pod_qos_class(pod: &Value) -> &'static str {
    let containers: Vec<&Value> = ["containers", "initContainers"]
        .iter()
        .filter_map(|f| pod.pointer(&format!("/spec/{f}")).and_then(Value::as_array))
        .flatten()
        .collect();
    let mut any = false;
    let mut guaranteed = true;
    for c in containers {
        for res in ["cpu", "memory"] {
            let req = c.pointer(&format!("/resources/requests/{res}"));
            let lim = c.pointer(&format!("/resources/limits/{res}"));
            if req.is_some() || lim.is_some() {
                any = true;
            }
            let eff_req = req.or(lim);
            if lim.is_none() || eff_req != lim {
                guaranteed = false;
            }
        }
    }
    match (any, guaranteed) {
        (false, _) => "BestEffort",
        (true, true) => "Guaranteed",
        (true, false) => "Burstable",
    }
}

/// Carry server-owned fields from `old` into an update of the main resource.
fn prepare_update(
    rt: &ResourceType,
    ns: Option<&str>,
    name: &str,
    old: &Value,
    mut new: Value,
) -> ApiResult<Value> {
    set_namespace(rt, ns, &mut new)?;
    let body_name = object::name(&new).to_string();
    if !body_name.is_empty() && body_name != name {
        return Err(ApiError::bad_request(format!(
            "the name of the object ({body_name}) does not match the name on the URL ({name})"
        )));
    }
    let old_meta = object::metadata(old).cloned().unwrap_or_default();
    let was_deleting = object::is_deleting(old);
    let old_finalizers = object::finalizers(old);
    let meta = object::metadata_mut(&mut new)
        .ok_or_else(|| ApiError::bad_request("the object provided is not a JSON object"))?;
    meta.insert("name".into(), json!(name));
    for field in [
        "uid",
        "creationTimestamp",
        "deletionTimestamp",
        "deletionGracePeriodSeconds",
        "generation",
    ] {
        match old_meta.get(field) {
            Some(v) => {
                meta.insert(field.into(), v.clone());
            }
            None => {
                meta.remove(field);
            }
        }
    }
    if meta.get("generateName").is_none() {
        if let Some(g) = old_meta.get("generateName") {
            meta.insert("generateName".into(), g.clone());
        }
    }
    if was_deleting {
        let new_finalizers: Vec<String> = meta
            .get("finalizers")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|v| v.as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default();
        if new_finalizers.iter().any(|f| !old_finalizers.contains(f)) {
            return Err(invalid(
                rt,
                name,
                vec![FieldError {
                    reason: "FieldValueForbidden",
                    field: "metadata.finalizers".into(),
                    message:
                        "Forbidden: no new finalizers can be added if the object is being deleted"
                            .into(),
                }],
            ));
        }
    }
    if rt.has_status() {
        match old.get("status") {
            Some(s) => new["status"] = s.clone(),
            None => {
                if let Some(m) = new.as_object_mut() {
                    m.remove("status");
                }
            }
        }
    }
    if rt.plural == "namespaces" && rt.group.is_empty() {
        // spec.finalizers changes only through the finalize subresource.
        if let Some(f) = old.pointer("/spec/finalizers") {
            new["spec"]["finalizers"] = f.clone();
        }
    }
    kubelab_resources::defaults::prepare_for_update(rt, &mut new, old);
    kubelab_resources::defaults::apply_defaults(rt, &mut new);
    if !object::spec_equal(old, &new) {
        let generation = old_meta
            .get("generation")
            .and_then(Value::as_i64)
            .unwrap_or(0);
        if generation > 0 || is_spec_kind(&new) {
            object::metadata_mut(&mut new)
                .expect("metadata exists")
                .insert("generation".into(), json!(generation + 1));
        }
    }
    Ok(new)
}

/// A status write: everything from `old` but the status.
fn with_status_from(old: &Value, desired: &Value) -> Value {
    let mut new = old.clone();
    match desired.get("status") {
        Some(s) => new["status"] = s.clone(),
        None => {
            if let Some(m) = new.as_object_mut() {
                m.remove("status");
            }
        }
    }
    new
}

pub fn invalid(rt: &ResourceType, name: &str, causes: Vec<FieldError>) -> ApiError {
    ApiError::Invalid {
        group: rt.group.into(),
        kind: rt.kind.into(),
        name: name.into(),
        causes,
    }
}

fn run_validation(
    rt: &ResourceType,
    obj: &Value,
    old: Option<&Value>,
    name: &str,
) -> ApiResult<()> {
    match validation::validate(rt, obj, old) {
        Ok(()) => Ok(()),
        Err(ValidationError::Invalid(causes)) => Err(invalid(rt, name, causes)),
        Err(ValidationError::BadRequest(message)) => Err(ApiError::BadRequest { message }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kubelab_store::MemoryStore;

    fn rt(group: &str, plural: &str) -> &'static ResourceType {
        catalog::find(group, "v1", plural).unwrap()
    }

    async fn registry() -> Registry {
        let reg = Registry::new(Arc::new(MemoryStore::default()));
        for ns in ["default", "other"] {
            reg.create(
                rt("", "namespaces"),
                None,
                json!({"metadata": {"name": ns}}),
                false,
            )
            .await
            .unwrap();
        }
        reg
    }

    fn cm(name: &str) -> Value {
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": {"a": "1"}})
    }

    #[tokio::test]
    async fn create_sets_server_metadata_and_refuses_duplicates() {
        let reg = registry().await;
        let cms = rt("", "configmaps");
        let obj = reg
            .create(cms, Some("default"), cm("x"), false)
            .await
            .unwrap();
        let meta = object::metadata(&obj).unwrap();
        assert_eq!(meta["namespace"], "default");
        assert!(meta["uid"].as_str().unwrap().len() >= 32);
        assert!(meta["creationTimestamp"].as_str().unwrap().ends_with('Z'));
        assert!(
            meta["resourceVersion"]
                .as_str()
                .unwrap()
                .parse::<i64>()
                .unwrap()
                > 0
        );
        let err = reg
            .create(cms, Some("default"), cm("x"), false)
            .await
            .unwrap_err();
        assert!(matches!(err, ApiError::AlreadyExists { .. }), "{err:?}");
        let err = reg
            .create(cms, Some("missing"), cm("x"), false)
            .await
            .unwrap_err();
        assert!(matches!(err, ApiError::NotFound { .. }), "{err:?}");
    }

    #[tokio::test]
    async fn generate_name_fills_a_unique_name() {
        let reg = registry().await;
        let cms = rt("", "configmaps");
        let body = json!({"metadata": {"generateName": "web-"}});
        let a = reg
            .create(cms, Some("default"), body.clone(), false)
            .await
            .unwrap();
        let b = reg.create(cms, Some("default"), body, false).await.unwrap();
        assert!(object::name(&a).starts_with("web-") && object::name(&a).len() == 9);
        assert_ne!(object::name(&a), object::name(&b));
    }

    #[tokio::test]
    async fn stale_update_conflicts_and_generation_follows_spec() {
        let reg = registry().await;
        let deploys = rt("apps", "deployments");
        let d = json!({"metadata": {"name": "web"}, "spec": {
            "selector": {"matchLabels": {"app": "web"}},
            "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "c", "image": "busybox"}]}}}});
        let created = reg
            .create(deploys, Some("default"), d, false)
            .await
            .unwrap();
        assert_eq!(created["metadata"]["generation"], 1);
        let stale = created.clone();
        let labelled = reg
            .update(deploys, Some("default"), "web", None, false, |cur| {
                let mut n = cur.clone();
                n["metadata"]["labels"] = json!({"x": "y"});
                Ok(n)
            })
            .await
            .unwrap();
        assert_eq!(
            labelled["metadata"]["generation"], 1,
            "metadata change keeps generation"
        );
        let err = reg
            .update(deploys, Some("default"), "web", None, false, |_| {
                Ok(stale.clone())
            })
            .await
            .unwrap_err();
        assert!(
            err.to_string().contains("the object has been modified"),
            "{err}"
        );
        let scaled = reg
            .update(deploys, Some("default"), "web", None, false, |cur| {
                let mut n = cur.clone();
                n["spec"]["replicas"] = json!(3);
                Ok(n)
            })
            .await
            .unwrap();
        assert_eq!(scaled["metadata"]["generation"], 2);
    }

    #[tokio::test]
    async fn finalizers_hold_deletion_until_removed() {
        let reg = registry().await;
        let cms = rt("", "configmaps");
        let mut body = cm("held");
        body["metadata"]["finalizers"] = json!(["example.com/hold"]);
        reg.create(cms, Some("default"), body, false).await.unwrap();
        let (obj, deleted) = reg
            .delete(cms, Some("default"), "held", &DeleteOptions::default())
            .await
            .unwrap();
        assert!(!deleted);
        assert!(object::is_deleting(&obj));
        assert!(reg.get(cms, Some("default"), "held").await.is_ok());
        reg.update(cms, Some("default"), "held", None, false, |cur| {
            let mut n = cur.clone();
            n["metadata"]["finalizers"] = json!([]);
            Ok(n)
        })
        .await
        .unwrap();
        assert!(matches!(
            reg.get(cms, Some("default"), "held").await,
            Err(ApiError::NotFound { .. })
        ));
    }

    #[tokio::test]
    async fn namespace_terminates_then_goes_when_finalized() {
        let reg = registry().await;
        let nss = rt("", "namespaces");
        let cms = rt("", "configmaps");
        let (obj, _) = reg
            .delete(nss, None, "other", &DeleteOptions::default())
            .await
            .unwrap();
        assert_eq!(obj["status"]["phase"], "Terminating");
        let err = reg
            .create(cms, Some("other"), cm("late"), false)
            .await
            .unwrap_err();
        assert!(matches!(err, ApiError::Forbidden { .. }), "{err:?}");
        reg.update(nss, None, "other", Some("finalize"), false, |cur| {
            let mut n = cur.clone();
            n["spec"]["finalizers"] = json!([]);
            Ok(n)
        })
        .await
        .unwrap();
        assert!(matches!(
            reg.get(nss, None, "other").await,
            Err(ApiError::NotFound { .. })
        ));
    }

    #[tokio::test]
    async fn services_get_unique_addresses_and_keep_them() {
        let reg = registry().await;
        let svcs = rt("", "services");
        let svc = |name: &str, ip: &str| json!({"metadata": {"name": name}, "spec": {"clusterIP": ip, "ports": [{"port": 80}]}});
        reg.create(svcs, Some("default"), svc("k", "10.96.0.1"), false)
            .await
            .unwrap();
        // Creating the same Service again is AlreadyExists, not an address clash.
        let err = reg
            .create(svcs, Some("default"), svc("k", "10.96.0.1"), false)
            .await
            .unwrap_err();
        assert!(matches!(err, ApiError::AlreadyExists { .. }), "{err:?}");
        let err = reg
            .create(svcs, Some("default"), svc("other", "10.96.0.1"), false)
            .await
            .unwrap_err();
        assert!(err.to_string().contains("already allocated"), "{err}");
        let a = reg
            .create(svcs, Some("default"), svc("a", ""), false)
            .await
            .unwrap();
        let updated = reg
            .update(svcs, Some("default"), "a", None, false, |cur| {
                let mut n = cur.clone();
                n["metadata"]["labels"] = json!({"x": "y"});
                n["metadata"]
                    .as_object_mut()
                    .unwrap()
                    .remove("resourceVersion");
                Ok(n)
            })
            .await
            .unwrap();
        assert_eq!(a["spec"]["clusterIP"], updated["spec"]["clusterIP"]);
    }

    #[tokio::test]
    async fn timestamp_only_changes_are_not_written() {
        let reg = registry().await;
        let cms = rt("", "configmaps");
        let mut body = cm("t");
        body["metadata"]["managedFields"] = json!([{"manager": "m", "operation": "Update",
            "time": "2020-01-01T00:00:00Z", "fieldsType": "FieldsV1", "fieldsV1": {"f:data": {}}}]);
        let created = reg.create(cms, Some("default"), body, false).await.unwrap();
        let same = reg
            .update(cms, Some("default"), "t", None, false, |cur| {
                let mut n = cur.clone();
                n["metadata"]["managedFields"][0]["time"] = json!("2030-01-01T00:00:00Z");
                Ok(n)
            })
            .await
            .unwrap();
        assert_eq!(
            created["metadata"]["resourceVersion"],
            same["metadata"]["resourceVersion"]
        );
    }

    #[tokio::test]
    async fn bound_pods_delete_gracefully() {
        let reg = registry().await;
        let pods = rt("", "pods");
        let pod = json!({"metadata": {"name": "p"}, "spec": {"nodeName": "n1", "containers": [{"name": "c", "image": "busybox"}]}});
        reg.create(pods, Some("default"), pod, false).await.unwrap();
        let (obj, deleted) = reg
            .delete(pods, Some("default"), "p", &DeleteOptions::default())
            .await
            .unwrap();
        assert!(!deleted);
        assert_eq!(obj["metadata"]["deletionGracePeriodSeconds"], 30);
        let (_, deleted) = reg
            .delete(
                pods,
                Some("default"),
                "p",
                &DeleteOptions {
                    grace_period_seconds: Some(0),
                    ..DeleteOptions::default()
                },
            )
            .await
            .unwrap();
        assert!(deleted);
    }

    #[tokio::test]
    async fn grace_zero_delete_of_a_terminating_pod_with_finalizers() {
        let reg = registry().await;
        let pods = rt("", "pods");
        let pod = json!({"metadata": {"name": "p", "finalizers": ["example.com/hold"]}, "spec": {"nodeName": "n1", "containers": [{"name": "c", "image": "busybox"}]}});
        reg.create(pods, Some("default"), pod, false).await.unwrap();
        let zero = DeleteOptions {
            grace_period_seconds: Some(0),
            ..DeleteOptions::default()
        };
        reg.delete(pods, Some("default"), "p", &DeleteOptions::default())
            .await
            .unwrap();
        let (obj, deleted) = reg.delete(pods, Some("default"), "p", &zero).await.unwrap();
        assert!(!deleted);
        assert_eq!(obj["metadata"]["deletionGracePeriodSeconds"], 0);
        reg.update(pods, Some("default"), "p", None, false, |cur| {
            let mut n = cur.clone();
            n["metadata"]["finalizers"] = json!([]);
            Ok(n)
        })
        .await
        .unwrap();
        assert!(matches!(
            reg.get(pods, Some("default"), "p").await,
            Err(ApiError::NotFound { .. })
        ));
    }
}
