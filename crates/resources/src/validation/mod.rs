//! Validation of objects about to be stored, following upstream `pkg/apis/*/validation`.
//!
//! [`validate`] first decodes the object into its k8s-openapi type: a JSON value of the wrong
//! type anywhere is a 400 ([`ValidationError::BadRequest`]), as upstream's decoder makes it.
//! Then it runs the semantic checks and returns every cause at once for a 422
//! ([`ValidationError::Invalid`]), with upstream's field paths, reasons and messages (bad values
//! are printed as Go prints them where that is short: `"Foo"`, `3`,
//! `map[string]string{"app":"web"}`, `[]string{"a"}`).
//!
//! On update (`old` is `Some`) the immutable fields of each kind are checked as well. The
//! server-side allocation and defaulting (cluster IPs, node ports, generated job selectors)
//! happen before, in the API server and [`crate::defaults`].

mod kinds;
mod meta;
mod pod;

use std::fmt;

use serde_json::Value;

use crate::catalog::ResourceType;
use crate::syntax::go_quote;

/// One cause of a 422 Invalid (`details.causes[]` of the Status).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct FieldError {
    /// `FieldValueRequired`, `FieldValueInvalid`, `FieldValueNotSupported`,
    /// `FieldValueDuplicate`, `FieldValueForbidden`, `FieldValueTooLong`, `FieldValueNotFound`.
    pub reason: &'static str,
    /// The JSON path: `metadata.name`, `spec.template.spec.containers[0].image`, `data[a b]`.
    pub field: String,
    /// Upstream's error body: `Required value`, `Invalid value: "Foo": a lowercase RFC 1123 ...`.
    pub message: String,
}

/// `field: message`, as upstream prints one error inside a Status message.
impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.field.is_empty() {
            f.write_str(&self.message)
        } else {
            write!(f, "{}: {}", self.field, self.message)
        }
    }
}

/// Why an object was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ValidationError {
    /// 422 Invalid with these causes.
    #[error("{}", aggregate(.0))]
    Invalid(Vec<FieldError>),
    /// 400 BadRequest: the JSON does not decode into the kind's type.
    #[error("{0}")]
    BadRequest(String),
}

/// Upstream's aggregate of field errors: one as-is, several as `[a, b]`.
fn aggregate(errs: &[FieldError]) -> String {
    crate::labels::aggregate(errs.iter().map(ToString::to_string).collect())
}

/// The message of upstream's 422 Status: `Deployment.apps "web" is invalid: spec.replicas: ...`.
pub fn invalid_message(rt: &ResourceType, name: &str, errs: &[FieldError]) -> String {
    if errs.is_empty() {
        format!("{} {} is invalid", rt.qualified_kind(), go_quote(name))
    } else {
        format!(
            "{} {} is invalid: {}",
            rt.qualified_kind(),
            go_quote(name),
            aggregate(errs)
        )
    }
}

/// Validates `obj` (already defaulted) for create, or for update when `old` is given.
pub fn validate(
    rt: &ResourceType,
    obj: &Value,
    old: Option<&Value>,
) -> Result<(), ValidationError> {
    if !obj.is_object() {
        return Err(ValidationError::BadRequest(format!(
            "{} in version {} cannot be handled as a {}: the object must be a JSON object",
            rt.kind,
            go_quote(rt.version),
            rt.kind
        )));
    }
    decode(rt, obj)?;
    let mut errs = Errs::default();
    meta::validate_object_meta(rt, obj, &mut errs);
    kinds::validate_kind(rt, obj, &mut errs);
    if let Some(old) = old.filter(|o| o.is_object()) {
        meta::validate_object_meta_update(obj, old, &mut errs);
        kinds::validate_kind_update(rt, obj, old, &mut errs);
    }
    if errs.0.is_empty() {
        Ok(())
    } else {
        Err(ValidationError::Invalid(errs.0))
    }
}

fn check_decodes<T: serde::de::DeserializeOwned>(obj: &Value) -> Result<(), String> {
    match serde_path_to_error::deserialize::<_, T>(obj) {
        Ok(_) => Ok(()),
        Err(e) => {
            let path = e.path().to_string();
            let inner = e.into_inner().to_string();
            Err(if path.is_empty() || path == "." {
                inner
            } else {
                format!("{path}: {inner}")
            })
        }
    }
}

/// Decodes into the kind's k8s-openapi type to find values of the wrong JSON type.
fn decode(rt: &ResourceType, obj: &Value) -> Result<(), ValidationError> {
    use k8s_openapi::api;
    use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1 as apiextensions;
    let result = match (rt.group, rt.kind) {
        ("", "ConfigMap") => check_decodes::<api::core::v1::ConfigMap>(obj),
        ("", "Endpoints") => check_decodes::<api::core::v1::Endpoints>(obj),
        ("", "Event") => check_decodes::<api::core::v1::Event>(obj),
        ("", "LimitRange") => check_decodes::<api::core::v1::LimitRange>(obj),
        ("", "Namespace") => check_decodes::<api::core::v1::Namespace>(obj),
        ("", "Node") => check_decodes::<api::core::v1::Node>(obj),
        ("", "PersistentVolumeClaim") => check_decodes::<api::core::v1::PersistentVolumeClaim>(obj),
        ("", "PersistentVolume") => check_decodes::<api::core::v1::PersistentVolume>(obj),
        ("", "Pod") => check_decodes::<api::core::v1::Pod>(obj),
        ("", "PodTemplate") => check_decodes::<api::core::v1::PodTemplate>(obj),
        ("", "ReplicationController") => check_decodes::<api::core::v1::ReplicationController>(obj),
        ("", "ResourceQuota") => check_decodes::<api::core::v1::ResourceQuota>(obj),
        ("", "Secret") => check_decodes::<api::core::v1::Secret>(obj),
        ("", "ServiceAccount") => check_decodes::<api::core::v1::ServiceAccount>(obj),
        ("", "Service") => check_decodes::<api::core::v1::Service>(obj),
        ("apps", "ControllerRevision") => check_decodes::<api::apps::v1::ControllerRevision>(obj),
        ("apps", "DaemonSet") => check_decodes::<api::apps::v1::DaemonSet>(obj),
        ("apps", "Deployment") => check_decodes::<api::apps::v1::Deployment>(obj),
        ("apps", "ReplicaSet") => check_decodes::<api::apps::v1::ReplicaSet>(obj),
        ("apps", "StatefulSet") => check_decodes::<api::apps::v1::StatefulSet>(obj),
        ("events.k8s.io", "Event") => check_decodes::<api::events::v1::Event>(obj),
        ("autoscaling", "HorizontalPodAutoscaler") => {
            check_decodes::<api::autoscaling::v2::HorizontalPodAutoscaler>(obj)
        }
        ("batch", "CronJob") => check_decodes::<api::batch::v1::CronJob>(obj),
        ("batch", "Job") => check_decodes::<api::batch::v1::Job>(obj),
        ("networking.k8s.io", "IngressClass") => {
            check_decodes::<api::networking::v1::IngressClass>(obj)
        }
        ("networking.k8s.io", "Ingress") => check_decodes::<api::networking::v1::Ingress>(obj),
        ("networking.k8s.io", "NetworkPolicy") => {
            check_decodes::<api::networking::v1::NetworkPolicy>(obj)
        }
        ("policy", "PodDisruptionBudget") => {
            check_decodes::<api::policy::v1::PodDisruptionBudget>(obj)
        }
        ("rbac.authorization.k8s.io", "ClusterRoleBinding") => {
            check_decodes::<api::rbac::v1::ClusterRoleBinding>(obj)
        }
        ("rbac.authorization.k8s.io", "ClusterRole") => {
            check_decodes::<api::rbac::v1::ClusterRole>(obj)
        }
        ("rbac.authorization.k8s.io", "RoleBinding") => {
            check_decodes::<api::rbac::v1::RoleBinding>(obj)
        }
        ("rbac.authorization.k8s.io", "Role") => check_decodes::<api::rbac::v1::Role>(obj),
        ("storage.k8s.io", "StorageClass") => check_decodes::<api::storage::v1::StorageClass>(obj),
        ("apiextensions.k8s.io", "CustomResourceDefinition") => {
            check_decodes::<apiextensions::CustomResourceDefinition>(obj)
        }
        ("scheduling.k8s.io", "PriorityClass") => {
            check_decodes::<api::scheduling::v1::PriorityClass>(obj)
        }
        ("coordination.k8s.io", "Lease") => check_decodes::<api::coordination::v1::Lease>(obj),
        ("node.k8s.io", "RuntimeClass") => check_decodes::<api::node::v1::RuntimeClass>(obj),
        ("discovery.k8s.io", "EndpointSlice") => {
            check_decodes::<api::discovery::v1::EndpointSlice>(obj)
        }
        _ => Ok(()),
    };
    result.map_err(|e| {
        ValidationError::BadRequest(format!(
            "{} in version {} cannot be handled as a {}: {e}",
            rt.kind,
            go_quote(rt.version),
            rt.kind
        ))
    })
}

/// Collects field errors with upstream's reasons and message shapes.
#[derive(Debug, Default)]
pub(crate) struct Errs(pub(crate) Vec<FieldError>);

impl Errs {
    fn push(&mut self, reason: &'static str, field: &str, message: String) {
        self.0.push(FieldError {
            reason,
            field: field.to_string(),
            message,
        });
    }

    /// `Required value[: detail]`
    pub(crate) fn required(&mut self, field: &str, detail: &str) {
        self.push(
            "FieldValueRequired",
            field,
            with_detail("Required value", detail),
        );
    }

    /// `Invalid value: <repr>: detail` — `repr` is already rendered (see [`q`], [`map_repr`]).
    pub(crate) fn invalid(&mut self, field: &str, repr: &str, detail: &str) {
        self.push(
            "FieldValueInvalid",
            field,
            with_detail(&format!("Invalid value: {repr}"), detail),
        );
    }

    /// `Unsupported value: "x": supported values: "a", "b"`
    pub(crate) fn not_supported(&mut self, field: &str, value: &str, supported: &[&str]) {
        let detail = if supported.is_empty() {
            String::new()
        } else {
            format!(
                "supported values: {}",
                supported
                    .iter()
                    .map(|s| go_quote(s))
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        };
        self.push(
            "FieldValueNotSupported",
            field,
            with_detail(&format!("Unsupported value: {}", go_quote(value)), &detail),
        );
    }

    /// `Duplicate value: <repr>`
    pub(crate) fn duplicate(&mut self, field: &str, repr: &str) {
        self.push(
            "FieldValueDuplicate",
            field,
            format!("Duplicate value: {repr}"),
        );
    }

    /// `Forbidden: detail`
    pub(crate) fn forbidden(&mut self, field: &str, detail: &str) {
        self.push(
            "FieldValueForbidden",
            field,
            with_detail("Forbidden", detail),
        );
    }

    /// `Too long: may not be more than N bytes`
    pub(crate) fn too_long(&mut self, field: &str, max: usize) {
        self.push(
            "FieldValueTooLong",
            field,
            format!("Too long: may not be more than {max} bytes"),
        );
    }

    /// `Not found: <repr>`
    pub(crate) fn not_found(&mut self, field: &str, repr: &str) {
        self.push("FieldValueNotFound", field, format!("Not found: {repr}"));
    }

    /// One `Invalid` per message (upstream's `for _, msg := range IsX(v)` loops).
    pub(crate) fn invalid_each(&mut self, field: &str, value: &str, msgs: Vec<String>) {
        for m in msgs {
            self.invalid(field, &q(value), &m);
        }
    }
}

fn with_detail(head: &str, detail: &str) -> String {
    if detail.is_empty() {
        head.to_string()
    } else {
        format!("{head}: {detail}")
    }
}

/// A string bad value, as `%q`.
pub(crate) fn q(s: &str) -> String {
    go_quote(s)
}

/// `a.b`, or `b` when `a` is empty.
pub(crate) fn child(base: &str, name: &str) -> String {
    if base.is_empty() {
        name.to_string()
    } else {
        format!("{base}.{name}")
    }
}

/// `a[3]`
pub(crate) fn index(base: &str, i: usize) -> String {
    format!("{base}[{i}]")
}

/// `a[key]`
pub(crate) fn key(base: &str, k: &str) -> String {
    format!("{base}[{k}]")
}

/// A `map[string]string` as Go's `%#v` prints it (keys sorted); `map[string]string(nil)` when
/// absent.
pub(crate) fn map_repr(v: Option<&Value>) -> String {
    match v.and_then(Value::as_object) {
        None => "map[string]string(nil)".into(),
        Some(m) => {
            let mut pairs: Vec<(String, String)> = m
                .iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or("").to_string()))
                .collect();
            pairs.sort();
            format!(
                "map[string]string{{{}}}",
                pairs
                    .iter()
                    .map(|(k, v)| format!("{}:{}", q(k), q(v)))
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        }
    }
}

/// A `[]string` as Go's `%#v` prints it; `[]string(nil)` when absent.
pub(crate) fn strings_repr(v: Option<&Value>) -> String {
    match v.and_then(Value::as_array) {
        None => "[]string(nil)".into(),
        Some(a) => format!(
            "[]string{{{}}}",
            a.iter()
                .map(|s| q(s.as_str().unwrap_or("")))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

/// A `metav1.LabelSelector` as Go's `%#v` prints it (the famous `field is immutable` message).
pub(crate) fn selector_repr(v: Option<&Value>) -> String {
    let v = v.unwrap_or(&Value::Null);
    let labels = map_repr(v.get("matchLabels").filter(|m| m.is_object()));
    let exprs = match v.get("matchExpressions").and_then(Value::as_array) {
        None => "[]v1.LabelSelectorRequirement(nil)".to_string(),
        Some(a) => format!(
            "[]v1.LabelSelectorRequirement{{{}}}",
            a.iter()
                .map(|e| format!(
                    "v1.LabelSelectorRequirement{{Key:{}, Operator:{}, Values:{}}}",
                    q(e.get("key").and_then(Value::as_str).unwrap_or("")),
                    q(e.get("operator").and_then(Value::as_str).unwrap_or("")),
                    strings_repr(e.get("values"))
                ))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    };
    format!("v1.LabelSelector{{MatchLabels:{labels}, MatchExpressions:{exprs}}}")
}

/// Any other bad value: compact JSON (upstream prints Go structs here).
pub(crate) fn json_repr(v: Option<&Value>) -> String {
    match v {
        None | Some(Value::Null) => "null".into(),
        Some(Value::String(s)) => q(s),
        Some(other) => other.to_string(),
    }
}

#[cfg(test)]
mod tests;
