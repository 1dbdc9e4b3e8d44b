//! Per-kind checks on create and update (upstream `pkg/apis/<group>/validation`).

use serde_json::{Map, Value};

use super::meta::{selector_is_empty, validate_label_selector, validate_labels};
use super::pod::{validate_pod_spec, validate_pod_template};
use super::{child, index, json_repr, key, map_repr, q, selector_repr, strings_repr, Errs};
use crate::catalog::ResourceType;
use crate::json as j;
use crate::labels::{from_label_selector_json, LabelSelector};
use crate::syntax;

const NEGATIVE: &str = "must be greater than or equal to 0";
const IMMUTABLE: &str = "field is immutable";
const MAX_SECRET_SIZE: usize = 1024 * 1024;

pub(crate) fn validate_kind(rt: &ResourceType, obj: &Value, errs: &mut Errs) {
    match (rt.group, rt.kind) {
        ("", "Pod") => {
            validate_pod_spec(j::get(obj, &["spec"]).unwrap_or(&Value::Null), "spec", errs)
        }
        ("", "PodTemplate") => validate_pod_template(j::get(obj, &["template"]), "template", errs),
        ("", "ReplicationController") => replication_controller(obj, errs),
        ("", "Service") => service(obj, errs),
        ("", "ConfigMap") => config_map(obj, errs),
        ("", "Secret") => secret(obj, errs),
        ("", "Namespace") => {
            let path = "spec.finalizers";
            super::meta::validate_finalizers(j::array(obj, &["spec", "finalizers"]), path, errs)
        }
        ("", "Node") => node(obj, errs),
        ("", "PersistentVolume") => persistent_volume(obj, errs),
        ("", "PersistentVolumeClaim") => persistent_volume_claim(obj, errs),
        ("", "Event") => core_event(obj, errs),
        ("", "Endpoints") => endpoints(obj, errs),
        ("", "LimitRange") => limit_range(obj, errs),
        ("apps", "Deployment") => deployment(obj, errs),
        ("apps", "ReplicaSet") => replica_set(obj, errs),
        ("apps", "DaemonSet") => daemon_set(obj, errs),
        ("apps", "StatefulSet") => stateful_set(obj, errs),
        ("apps", "ControllerRevision") => nonneg(obj, &["revision"], "revision", errs),
        ("batch", "Job") => job(obj, errs),
        ("batch", "CronJob") => cron_job(obj, errs),
        ("events.k8s.io", "Event") => events_event(obj, errs),
        ("autoscaling", "HorizontalPodAutoscaler") => hpa(obj, errs),
        ("networking.k8s.io", "Ingress") => ingress(obj, errs),
        ("networking.k8s.io", "IngressClass") => {
            required_string(obj, &["spec", "controller"], "spec.controller", errs)
        }
        ("networking.k8s.io", "NetworkPolicy") => network_policy(obj, errs),
        ("policy", "PodDisruptionBudget") => pdb(obj, errs),
        ("rbac.authorization.k8s.io", "Role") => rbac_rules(obj, true, errs),
        // Aggregated cluster roles get their rules from the aggregation controller.
        ("rbac.authorization.k8s.io", "ClusterRole") => rbac_rules(obj, false, errs),
        ("rbac.authorization.k8s.io", "RoleBinding") => role_binding(obj, true, errs),
        ("rbac.authorization.k8s.io", "ClusterRoleBinding") => role_binding(obj, false, errs),
        ("storage.k8s.io", "StorageClass") => storage_class(obj, errs),
        ("apiextensions.k8s.io", "CustomResourceDefinition") => crd(obj, errs),
        ("scheduling.k8s.io", "PriorityClass") => priority_class(obj, errs),
        ("coordination.k8s.io", "Lease") => lease(obj, errs),
        ("node.k8s.io", "RuntimeClass") => {
            let handler = j::string(obj, &["handler"]);
            if handler.is_empty() {
                errs.required("handler", "");
            } else {
                errs.invalid_each("handler", handler, syntax::is_dns1123_label(handler));
            }
        }
        ("discovery.k8s.io", "EndpointSlice") => endpoint_slice(obj, errs),
        _ => {}
    }
}

pub(crate) fn validate_kind_update(rt: &ResourceType, obj: &Value, old: &Value, errs: &mut Errs) {
    match (rt.group, rt.kind) {
        ("", "Pod") => pod_update(obj, old, errs),
        ("", "Service") => service_update(obj, old, errs),
        ("", "ConfigMap") => immutable_data_update(obj, old, &["data", "binaryData"], errs),
        ("", "Secret") => {
            let (new_t, old_t) = (j::string(obj, &["type"]), j::string(old, &["type"]));
            if new_t != old_t {
                errs.invalid("type", &q(new_t), IMMUTABLE);
            }
            immutable_data_update(obj, old, &["data"], errs);
        }
        ("", "PersistentVolumeClaim") => pvc_update(obj, old, errs),
        ("apps", "Deployment" | "ReplicaSet" | "DaemonSet") => {
            let (new_s, old_s) = (
                j::get(obj, &["spec", "selector"]),
                j::get(old, &["spec", "selector"]),
            );
            if !semantic_eq(new_s, old_s) {
                errs.invalid("spec.selector", &selector_repr(new_s), IMMUTABLE);
            }
        }
        ("apps", "StatefulSet") => stateful_set_update(obj, old, errs),
        ("apps", "ControllerRevision") => immutable_value(obj, old, "data", errs),
        ("batch", "Job") => job_update(obj, old, errs),
        ("rbac.authorization.k8s.io", "RoleBinding" | "ClusterRoleBinding") => {
            role_ref_update(obj, old, errs)
        }
        ("storage.k8s.io", "StorageClass") => {
            if !semantic_eq(j::get(obj, &["parameters"]), j::get(old, &["parameters"])) {
                errs.forbidden("parameters", "updates to parameters are forbidden.");
            }
            if j::string(obj, &["provisioner"]) != j::string(old, &["provisioner"]) {
                errs.forbidden("provisioner", "updates to provisioner are forbidden.");
            }
            if j::string(obj, &["reclaimPolicy"]) != j::string(old, &["reclaimPolicy"]) {
                errs.forbidden("reclaimPolicy", "updates to reclaimPolicy are forbidden.");
            }
            immutable_string(obj, old, &["volumeBindingMode"], "volumeBindingMode", errs);
        }
        ("scheduling.k8s.io", "PriorityClass") => {
            if j::i64_at(obj, &["value"]) != j::i64_at(old, &["value"]) {
                errs.forbidden("value", "may not be changed in an update.");
            }
            immutable_string(obj, old, &["preemptionPolicy"], "preemptionPolicy", errs);
        }
        ("node.k8s.io", "RuntimeClass") => {
            immutable_string(obj, old, &["handler"], "handler", errs)
        }
        ("discovery.k8s.io", "EndpointSlice") => {
            immutable_string(obj, old, &["addressType"], "addressType", errs)
        }
        ("apiextensions.k8s.io", "CustomResourceDefinition") => {
            immutable_string(obj, old, &["spec", "group"], "spec.group", errs);
            immutable_string(obj, old, &["spec", "scope"], "spec.scope", errs);
        }
        _ => {}
    }
}

// ---- helpers ----

fn nonneg(obj: &Value, path: &[&str], field: &str, errs: &mut Errs) {
    if let Some(n) = j::i64_at(obj, path) {
        if n < 0 {
            errs.invalid(field, &n.to_string(), NEGATIVE);
        }
    }
}

fn required_string(obj: &Value, path: &[&str], field: &str, errs: &mut Errs) {
    if j::string(obj, path).is_empty() {
        errs.required(field, "");
    }
}

fn immutable_value(obj: &Value, old: &Value, field: &str, errs: &mut Errs) {
    if !semantic_eq(j::get(obj, &[field]), j::get(old, &[field])) {
        errs.invalid(field, &json_repr(j::get(obj, &[field])), IMMUTABLE);
    }
}

fn role_ref_update(obj: &Value, old: &Value, errs: &mut Errs) {
    if !semantic_eq(j::get(obj, &["roleRef"]), j::get(old, &["roleRef"])) {
        let repr = format!(
            "rbac.RoleRef{{APIGroup:{}, Kind:{}, Name:{}}}",
            q(j::string(obj, &["roleRef", "apiGroup"])),
            q(j::string(obj, &["roleRef", "kind"])),
            q(j::string(obj, &["roleRef", "name"]))
        );
        errs.invalid("roleRef", &repr, "cannot change roleRef");
    }
}

fn immutable_string(obj: &Value, old: &Value, path: &[&str], field: &str, errs: &mut Errs) {
    let (new_v, old_v) = (j::string(obj, path), j::string(old, path));
    if new_v != old_v {
        errs.invalid(field, &q(new_v), IMMUTABLE);
    }
}

/// Drops what Go's semantic equality treats as unset: `null`, `""`, `false`, `[]`, `{}`.
fn normalize(v: &Value) -> Option<Value> {
    match v {
        Value::Null => None,
        Value::String(s) if s.is_empty() => None,
        Value::Bool(false) => None,
        Value::Array(a) => {
            let items: Vec<Value> = a
                .iter()
                .map(|x| normalize(x).unwrap_or(Value::Null))
                .collect();
            (!items.is_empty()).then_some(Value::Array(items))
        }
        Value::Object(m) => {
            let map: Map<String, Value> = m
                .iter()
                .filter_map(|(k, v)| Some((k.clone(), normalize(v)?)))
                .collect();
            (!map.is_empty()).then_some(Value::Object(map))
        }
        other => Some(other.clone()),
    }
}

/// Equality where absent, `null` and empty values are the same (upstream's semantic equality
/// over Go zero values).
pub(crate) fn semantic_eq(a: Option<&Value>, b: Option<&Value>) -> bool {
    a.and_then(normalize) == b.and_then(normalize)
}

fn int_or_string_repr(v: Option<&Value>) -> String {
    match v {
        Some(Value::String(s)) => {
            format!("intstr.IntOrString{{Type:1, IntVal:0, StrVal:{}}}", q(s))
        }
        Some(Value::Number(n)) => format!("intstr.IntOrString{{Type:0, IntVal:{n}, StrVal:\"\"}}"),
        _ => "intstr.IntOrString{Type:0, IntVal:0, StrVal:\"\"}".into(),
    }
}

/// `ValidatePositiveIntOrPercent`; returns `(value, is_percent)` when valid.
fn int_or_percent(v: Option<&Value>, field: &str, errs: &mut Errs) -> Option<(i64, bool)> {
    match v {
        None | Some(Value::Null) => Some((0, false)),
        Some(Value::Number(n)) => {
            let n = n.as_i64().unwrap_or(-1);
            if n < 0 {
                errs.invalid(field, &n.to_string(), NEGATIVE);
                None
            } else {
                Some((n, false))
            }
        }
        Some(Value::String(s)) => {
            let digits = s
                .strip_suffix('%')
                .filter(|d| !d.is_empty() && d.bytes().all(|b| b.is_ascii_digit()));
            match digits.and_then(|d| d.parse::<i64>().ok()) {
                Some(n) => Some((n, true)),
                None => {
                    errs.invalid(
                        field,
                        &int_or_string_repr(v),
                        &syntax::regex_error(
                            "a valid percent string must be a numeric string followed by an ending '%'",
                            "[0-9]+%",
                            &["1%", "93%"],
                        ),
                    );
                    None
                }
            }
        }
        Some(_) => {
            errs.invalid(
                field,
                &int_or_string_repr(v),
                "must be an integer or percentage (e.g '5%')",
            );
            None
        }
    }
}

fn not_more_than_100_percent(
    v: Option<(i64, bool)>,
    raw: Option<&Value>,
    field: &str,
    errs: &mut Errs,
) {
    if let Some((n, true)) = v {
        if n > 100 {
            errs.invalid(
                field,
                &int_or_string_repr(raw),
                "must not be greater than 100%",
            );
        }
    }
}

/// Required, valid and non-empty `spec.selector`; returns it parsed when usable.
fn workload_selector(obj: &Value, kind_word: &str, errs: &mut Errs) -> Option<LabelSelector> {
    let sel = j::get(obj, &["spec", "selector"]).filter(|s| !s.is_null());
    let Some(sel) = sel else {
        errs.required("spec.selector", "");
        return None;
    };
    validate_label_selector(Some(sel), "spec.selector", errs);
    if selector_is_empty(sel) {
        errs.invalid(
            "spec.selector",
            &selector_repr(Some(sel)),
            &format!("empty selector is invalid for {kind_word}"),
        );
    }
    match from_label_selector_json(sel) {
        Ok(s) => Some(s),
        Err(_) => {
            errs.invalid(
                "spec.selector",
                &selector_repr(Some(sel)),
                "invalid label selector",
            );
            None
        }
    }
}

/// The template's labels must satisfy the selector (when it selects anything).
fn template_matches(
    obj: &Value,
    template: &[&str],
    selector: Option<&LabelSelector>,
    errs: &mut Errs,
) {
    let Some(selector) = selector.filter(|s| !s.is_empty() && !s.is_nothing()) else {
        return;
    };
    let mut labels_path = template.to_vec();
    labels_path.extend(["metadata", "labels"]);
    let labels = j::object(obj, &labels_path);
    if !selector.matches(labels) {
        errs.invalid(
            &format!("{}.metadata.labels", template.join(".")),
            &map_repr(j::get(obj, &labels_path)),
            "`selector` does not match template `labels`",
        );
    }
}

/// Template checks shared by ReplicaSet, Deployment, DaemonSet, StatefulSet and RC.
fn always_restarting_template(obj: &Value, owner: &str, errs: &mut Errs) {
    validate_pod_template(j::get(obj, &["spec", "template"]), "spec.template", errs);
    let policy = j::string(obj, &["spec", "template", "spec", "restartPolicy"]);
    if policy != "Always" {
        errs.not_supported("spec.template.spec.restartPolicy", policy, &["Always"]);
    }
    if j::get(obj, &["spec", "template", "spec", "activeDeadlineSeconds"])
        .is_some_and(|v| !v.is_null())
    {
        errs.forbidden(
            "spec.template.spec.activeDeadlineSeconds",
            &format!("activeDeadlineSeconds in {owner} is not Supported"),
        );
    }
}

// ---- core ----

fn replication_controller(obj: &Value, errs: &mut Errs) {
    nonneg(
        obj,
        &["spec", "minReadySeconds"],
        "spec.minReadySeconds",
        errs,
    );
    nonneg(obj, &["spec", "replicas"], "spec.replicas", errs);
    let selector = j::object(obj, &["spec", "selector"]).filter(|m| !m.is_empty());
    if selector.is_none() {
        errs.required("spec.selector", "");
    }
    if j::get(obj, &["spec", "template"]).is_none_or(Value::is_null) {
        errs.required("spec.template", "");
        return;
    }
    let selector = selector.map(LabelSelector::from_map);
    template_matches(obj, &["spec", "template"], selector.as_ref(), errs);
    always_restarting_template(obj, "ReplicationController", errs);
}

fn service(obj: &Value, errs: &mut Errs) {
    let svc_type = j::str_at(obj, &["spec", "type"]).unwrap_or("ClusterIP");
    if !matches!(
        svc_type,
        "ClusterIP" | "ExternalName" | "LoadBalancer" | "NodePort"
    ) {
        errs.not_supported(
            "spec.type",
            svc_type,
            &["ClusterIP", "ExternalName", "LoadBalancer", "NodePort"],
        );
    }
    let cluster_ip = effective_cluster_ip(obj);
    let headless = cluster_ip == "None";
    let ports = j::array(obj, &["spec", "ports"]);
    if ports.is_empty() && !headless && svc_type != "ExternalName" {
        errs.required("spec.ports", "");
    }
    if svc_type == "ExternalName" {
        let name = j::string(obj, &["spec", "externalName"]);
        if name.is_empty() {
            errs.required("spec.externalName", "");
        } else {
            let trimmed = name.strip_suffix('.').unwrap_or(name);
            errs.invalid_each(
                "spec.externalName",
                name,
                syntax::is_dns1123_subdomain(trimmed),
            );
        }
    }
    if !cluster_ip.is_empty() && !headless && cluster_ip.parse::<std::net::IpAddr>().is_err() {
        errs.invalid(
            "spec.clusterIPs[0]",
            &q(cluster_ip),
            "must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)",
        );
    }
    let mut names = std::collections::HashSet::new();
    let mut keys = std::collections::HashSet::new();
    for (i, p) in ports.iter().enumerate() {
        let path = index("spec.ports", i);
        let name = j::string(p, &["name"]);
        if name.is_empty() {
            if ports.len() > 1 {
                errs.required(&child(&path, "name"), "");
            }
        } else {
            errs.invalid_each(&child(&path, "name"), name, syntax::is_dns1123_label(name));
            if !names.insert(name.to_string()) {
                errs.duplicate(&child(&path, "name"), &q(name));
            }
        }
        let port = j::i64_at(p, &["port"]).unwrap_or(0);
        for m in syntax::is_valid_port_num(port) {
            errs.invalid(&child(&path, "port"), &port.to_string(), &m);
        }
        let protocol = j::str_at(p, &["protocol"]).unwrap_or("TCP");
        if !matches!(protocol, "TCP" | "UDP" | "SCTP") {
            errs.not_supported(&child(&path, "protocol"), protocol, &["SCTP", "TCP", "UDP"]);
        }
        match j::get(p, &["targetPort"]) {
            Some(Value::Number(n)) => {
                let n = n.as_i64().unwrap_or(0);
                for m in syntax::is_valid_port_num(n) {
                    errs.invalid(&child(&path, "targetPort"), &n.to_string(), &m);
                }
            }
            Some(Value::String(s)) if !s.is_empty() => errs.invalid_each(
                &child(&path, "targetPort"),
                s,
                syntax::is_valid_port_name(s),
            ),
            _ => {}
        }
        if let Some(np) = j::i64_at(p, &["nodePort"]).filter(|n| *n != 0) {
            if matches!(svc_type, "ClusterIP" | "ExternalName") {
                errs.forbidden(
                    &child(&path, "nodePort"),
                    &format!("may not be used when `type` is '{svc_type}'"),
                );
            } else {
                for m in syntax::is_valid_port_num(np) {
                    errs.invalid(&child(&path, "nodePort"), &np.to_string(), &m);
                }
            }
        }
        if !keys.insert((port, protocol.to_string())) {
            errs.duplicate(
                &path,
                &format!(
                    "core.ServicePort{{Name:\"\", Protocol:{}, AppProtocol:(*string)(nil), Port:{port}, TargetPort:intstr.IntOrString{{Type:0, IntVal:0, StrVal:\"\"}}, NodePort:0}}",
                    q(protocol)
                ),
            );
        }
    }
    validate_labels(j::get(obj, &["spec", "selector"]), "spec.selector", errs);
    if let Some(a) = j::str_at(obj, &["spec", "sessionAffinity"]) {
        if !matches!(a, "ClientIP" | "None") {
            errs.not_supported("spec.sessionAffinity", a, &["ClientIP", "None"]);
        }
    }
    if let Some(p) = j::str_at(obj, &["spec", "externalTrafficPolicy"]).filter(|s| !s.is_empty()) {
        if !matches!(p, "Cluster" | "Local") {
            errs.not_supported("spec.externalTrafficPolicy", p, &["Cluster", "Local"]);
        }
    }
    if let Some(p) = j::str_at(obj, &["spec", "internalTrafficPolicy"]) {
        if !matches!(p, "Cluster" | "Local") {
            errs.not_supported("spec.internalTrafficPolicy", p, &["Cluster", "Local"]);
        }
    }
    if let Some(p) = j::str_at(obj, &["spec", "ipFamilyPolicy"]) {
        if !matches!(p, "SingleStack" | "PreferDualStack" | "RequireDualStack") {
            errs.not_supported(
                "spec.ipFamilyPolicy",
                p,
                &["PreferDualStack", "RequireDualStack", "SingleStack"],
            );
        }
    }
    for (i, f) in j::array(obj, &["spec", "ipFamilies"]).iter().enumerate() {
        let f = f.as_str().unwrap_or("");
        if !matches!(f, "IPv4" | "IPv6") {
            errs.not_supported(&index("spec.ipFamilies", i), f, &["IPv4", "IPv6"]);
        }
    }
}

/// `spec.clusterIP`, or the first of `spec.clusterIPs`.
pub(crate) fn effective_cluster_ip(obj: &Value) -> &str {
    let ip = j::string(obj, &["spec", "clusterIP"]);
    if !ip.is_empty() {
        return ip;
    }
    j::array(obj, &["spec", "clusterIPs"])
        .first()
        .and_then(Value::as_str)
        .unwrap_or("")
}

fn service_update(obj: &Value, old: &Value, errs: &mut Errs) {
    let external = |v: &Value| j::string(v, &["spec", "type"]) == "ExternalName";
    if external(obj) || external(old) {
        return;
    }
    let old_ip = effective_cluster_ip(old);
    let new_ip = effective_cluster_ip(obj);
    if !old_ip.is_empty() && new_ip != old_ip {
        errs.invalid(
            "spec.clusterIPs[0]",
            &format!("[]string{{{}}}", q(new_ip)),
            "may not change once set",
        );
    }
}

fn data_keys(obj: &Value, field: &str, errs: &mut Errs) -> usize {
    let mut size = 0;
    if let Some(m) = j::object(obj, &[field]) {
        for (k, v) in m {
            errs.invalid_each(&key(field, k), k, syntax::is_config_map_key(k));
            size += v.as_str().map_or(0, str::len);
        }
    }
    size
}

fn config_map(obj: &Value, errs: &mut Errs) {
    let mut size = data_keys(obj, "data", errs);
    // binaryData is base64 in JSON; its decoded size is about 3/4 of that.
    size += data_keys(obj, "binaryData", errs) * 3 / 4;
    if let (Some(data), Some(binary)) = (j::object(obj, &["data"]), j::object(obj, &["binaryData"]))
    {
        for k in data.keys().filter(|k| binary.contains_key(*k)) {
            errs.invalid(
                &key("data", k),
                &q(k),
                "duplicate of key present in binaryData",
            );
        }
    }
    if size > MAX_SECRET_SIZE {
        errs.too_long("", MAX_SECRET_SIZE);
    }
}

fn secret(obj: &Value, errs: &mut Errs) {
    let size = data_keys(obj, "data", errs) * 3 / 4
        + j::object(obj, &["stringData"]).map_or(0, |m| m.len());
    if size > MAX_SECRET_SIZE {
        errs.too_long("data", MAX_SECRET_SIZE);
    }
    let has = |k: &str| {
        j::str_at(obj, &["data", k]).is_some_and(|v| !v.is_empty())
            || j::str_at(obj, &["stringData", k]).is_some()
    };
    let secret_type = j::string(obj, &["type"]);
    let required: &[&str] = match secret_type {
        "kubernetes.io/dockercfg" => &[".dockercfg"],
        "kubernetes.io/dockerconfigjson" => &[".dockerconfigjson"],
        "kubernetes.io/ssh-auth" => &["ssh-privatekey"],
        "kubernetes.io/tls" => &["tls.crt", "tls.key"],
        "kubernetes.io/basic-auth" if !has("username") && !has("password") => {
            &["username", "password"]
        }
        _ => &[],
    };
    for k in required.iter().filter(|k| !has(k)) {
        errs.required(&key("data", k), "");
    }
    let sa_annotation = [
        "metadata",
        "annotations",
        "kubernetes.io/service-account.name",
    ];
    if secret_type == "kubernetes.io/service-account-token"
        && j::string(obj, &sa_annotation).is_empty()
    {
        errs.required(
            "metadata.annotations[kubernetes.io/service-account.name]",
            "",
        );
    }
}

/// ConfigMaps and Secrets marked `immutable: true` keep their data (and the mark) forever.
fn immutable_data_update(obj: &Value, old: &Value, fields: &[&str], errs: &mut Errs) {
    if j::bool_at(old, &["immutable"]) != Some(true) {
        return;
    }
    const MSG: &str = "field is immutable when `immutable` is set";
    if j::bool_at(obj, &["immutable"]) != Some(true) {
        errs.forbidden("immutable", MSG);
    }
    for f in fields {
        if !semantic_eq(j::get(obj, &[f]), j::get(old, &[f])) {
            errs.forbidden(f, MSG);
        }
    }
}

fn node(obj: &Value, errs: &mut Errs) {
    for (i, t) in j::array(obj, &["spec", "taints"]).iter().enumerate() {
        let p = index("spec.taints", i);
        let k = j::string(t, &["key"]);
        errs.invalid_each(&child(&p, "key"), k, syntax::is_qualified_name(k));
        let effect = j::string(t, &["effect"]);
        if effect.is_empty() {
            errs.required(&child(&p, "effect"), "");
        } else if !matches!(effect, "NoSchedule" | "PreferNoSchedule" | "NoExecute") {
            errs.not_supported(
                &child(&p, "effect"),
                effect,
                &["NoSchedule", "PreferNoSchedule", "NoExecute"],
            );
        }
    }
}

const ACCESS_MODES: &[&str] = &[
    "ReadOnlyMany",
    "ReadWriteMany",
    "ReadWriteOnce",
    "ReadWriteOncePod",
];

fn access_modes(obj: &Value, path: &str, required_detail: &str, errs: &mut Errs) {
    let modes = j::array(obj, &["spec", "accessModes"]);
    if modes.is_empty() {
        errs.required(path, required_detail);
    }
    for m in modes {
        let m = m.as_str().unwrap_or("");
        if !ACCESS_MODES.contains(&m) {
            errs.not_supported(path, m, ACCESS_MODES);
        }
    }
}

fn persistent_volume(obj: &Value, errs: &mut Errs) {
    access_modes(obj, "spec.accessModes", "", errs);
    let capacity = j::object(obj, &["spec", "capacity"]);
    match capacity {
        None => errs.required("spec.capacity", ""),
        Some(c) if !c.contains_key("storage") || c.len() > 1 => errs.not_supported(
            "spec.capacity",
            &json_repr(j::get(obj, &["spec", "capacity"])),
            &["storage"],
        ),
        Some(_) => {}
    }
    const SOURCES: &[&str] = &[
        "hostPath",
        "local",
        "csi",
        "nfs",
        "iscsi",
        "fc",
        "rbd",
        "cephfs",
        "cinder",
        "flexVolume",
        "flocker",
        "glusterfs",
        "gcePersistentDisk",
        "awsElasticBlockStore",
        "azureFile",
        "azureDisk",
        "vsphereVolume",
        "quobyte",
        "photonPersistentDisk",
        "portworxVolume",
        "scaleIO",
        "storageos",
    ];
    let n = SOURCES
        .iter()
        .filter(|s| j::get(obj, &["spec", s]).is_some_and(|v| !v.is_null()))
        .count();
    if n == 0 {
        errs.required("spec", "must specify a volume type");
    } else if n > 1 {
        errs.forbidden("spec", "may not specify more than 1 volume type");
    }
    if let Some(p) = j::str_at(obj, &["spec", "persistentVolumeReclaimPolicy"]) {
        if !matches!(p, "Delete" | "Recycle" | "Retain") {
            errs.not_supported(
                "spec.persistentVolumeReclaimPolicy",
                p,
                &["Delete", "Recycle", "Retain"],
            );
        }
    }
    if let Some(m) = j::str_at(obj, &["spec", "volumeMode"]) {
        if !matches!(m, "Block" | "Filesystem") {
            errs.not_supported("spec.volumeMode", m, &["Block", "Filesystem"]);
        }
    }
}

fn persistent_volume_claim(obj: &Value, errs: &mut Errs) {
    access_modes(
        obj,
        "spec.accessModes",
        "at least 1 access mode is required",
        errs,
    );
    if j::get(obj, &["spec", "resources", "requests", "storage"]).is_none_or(Value::is_null) {
        errs.required("spec.resources[storage]", "");
    }
    if let Some(m) = j::str_at(obj, &["spec", "volumeMode"]) {
        if !matches!(m, "Block" | "Filesystem") {
            errs.not_supported("spec.volumeMode", m, &["Block", "Filesystem"]);
        }
    }
    validate_label_selector(j::get(obj, &["spec", "selector"]), "spec.selector", errs);
}

fn pvc_update(obj: &Value, old: &Value, errs: &mut Errs) {
    // Retroactive default StorageClass (GA in 1.28): a claim without a class may get one.
    let class_was_unset = j::get(old, &["spec", "storageClassName"]).is_none_or(Value::is_null)
        && !j::string(obj, &["spec", "storageClassName"]).is_empty();
    let strip = |v: &Value, allow_volume_name: bool| {
        let mut spec = j::get(v, &["spec"]).cloned().unwrap_or(Value::Null);
        if let Some(m) = spec.as_object_mut() {
            m.remove("volumeAttributesClassName");
            if allow_volume_name {
                m.remove("volumeName");
            }
            if class_was_unset {
                m.remove("storageClassName");
            }
            if let Some(r) = m.get_mut("resources").and_then(Value::as_object_mut) {
                r.remove("requests");
            }
        }
        spec
    };
    let volume_name_was_empty = j::string(old, &["spec", "volumeName"]).is_empty();
    if !semantic_eq(
        Some(&strip(obj, volume_name_was_empty)),
        Some(&strip(old, volume_name_was_empty)),
    ) {
        errs.forbidden(
            "spec",
            "spec is immutable after creation except resources.requests and volumeAttributesClassName for bound claims",
        );
    }
}

fn core_event(obj: &Value, errs: &mut Errs) {
    let ns = j::string(obj, &["metadata", "namespace"]);
    let involved_ns = j::string(obj, &["involvedObject", "namespace"]);
    let event_time = j::str_at(obj, &["eventTime"]).is_some_and(|s| !s.is_empty());
    let mismatch = if !event_time {
        if involved_ns.is_empty() {
            !ns.is_empty() && ns != "default"
        } else {
            ns != involved_ns
        }
    } else {
        involved_ns.is_empty() && ns != "default" && ns != "kube-system"
    };
    if mismatch {
        errs.invalid(
            "involvedObject.namespace",
            &q(involved_ns),
            "does not match event.namespace",
        );
    }
    if event_time {
        for (field, name) in [
            ("reportingComponent", "reportingComponent"),
            ("reportingInstance", "reportingInstance"),
            ("action", "action"),
        ] {
            if j::string(obj, &[field]).is_empty() {
                errs.required(name, "");
            }
        }
    }
    if !ns.is_empty() {
        errs.invalid_each("namespace", ns, syntax::is_dns1123_subdomain(ns));
    }
}

fn events_event(obj: &Value, errs: &mut Errs) {
    if j::str_at(obj, &["eventTime"]).is_none_or(str::is_empty) {
        errs.required("eventTime", "");
    }
    let t = j::string(obj, &["type"]);
    if t != "Normal" && t != "Warning" {
        errs.invalid("type", "\"\"", &format!("has invalid value: {t}"));
    }
    for field in [
        "reportingController",
        "reportingInstance",
        "action",
        "reason",
    ] {
        if j::string(obj, &[field]).is_empty() {
            errs.required(field, "");
        }
    }
    let controller = j::string(obj, &["reportingController"]);
    if !controller.is_empty() {
        errs.invalid_each(
            "reportingController",
            controller,
            syntax::is_qualified_name(controller),
        );
    }
    let ns = j::string(obj, &["metadata", "namespace"]);
    let regarding_ns = j::string(obj, &["regarding", "namespace"]);
    if regarding_ns.is_empty() && ns != "default" && ns != "kube-system" && !ns.is_empty() {
        // Upstream validates the internal type, whose field is involvedObject.
        errs.invalid(
            "involvedObject.namespace",
            &q(regarding_ns),
            "does not match event.namespace",
        );
    }
}

fn endpoints(obj: &Value, errs: &mut Errs) {
    for (i, ss) in j::array(obj, &["subsets"]).iter().enumerate() {
        let p = index("subsets", i);
        for field in ["addresses", "notReadyAddresses"] {
            for (ai, a) in j::array(ss, &[field]).iter().enumerate() {
                let ip = j::string(a, &["ip"]);
                if ip.parse::<std::net::IpAddr>().is_err() {
                    errs.invalid(
                        &child(&index(&child(&p, field), ai), "ip"),
                        &q(ip),
                        "must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)",
                    );
                }
            }
        }
        for (pi, port) in j::array(ss, &["ports"]).iter().enumerate() {
            let pp = index(&child(&p, "ports"), pi);
            let n = j::i64_at(port, &["port"]).unwrap_or(0);
            for m in syntax::is_valid_port_num(n) {
                errs.invalid(&child(&pp, "port"), &n.to_string(), &m);
            }
            if let Some(proto) = j::str_at(port, &["protocol"]) {
                if !matches!(proto, "TCP" | "UDP" | "SCTP") {
                    errs.not_supported(&child(&pp, "protocol"), proto, &["SCTP", "TCP", "UDP"]);
                }
            }
        }
    }
}

fn limit_range(obj: &Value, errs: &mut Errs) {
    for (i, l) in j::array(obj, &["spec", "limits"]).iter().enumerate() {
        let t = j::string(l, &["type"]);
        if !matches!(t, "Pod" | "Container" | "PersistentVolumeClaim") {
            errs.not_supported(
                &child(&index("spec.limits", i), "type"),
                t,
                &["Container", "PersistentVolumeClaim", "Pod"],
            );
        }
    }
}

fn pod_update(obj: &Value, old: &Value, errs: &mut Errs) {
    let old_node = j::string(old, &["spec", "nodeName"]);
    let mask = |v: &Value| {
        let mut spec = j::get(v, &["spec"]).cloned().unwrap_or(Value::Null);
        if let Some(m) = spec.as_object_mut() {
            for field in [
                "activeDeadlineSeconds",
                "tolerations",
                "terminationGracePeriodSeconds",
                "schedulingGates",
                "ephemeralContainers",
            ] {
                m.remove(field);
            }
            if old_node.is_empty() {
                m.remove("nodeName");
            }
            for list in ["containers", "initContainers"] {
                if let Some(cs) = m.get_mut(list).and_then(Value::as_array_mut) {
                    for c in cs.iter_mut().filter_map(Value::as_object_mut) {
                        c.remove("image");
                    }
                }
            }
        }
        spec
    };
    if !semantic_eq(Some(&mask(obj)), Some(&mask(old))) {
        errs.forbidden(
            "spec",
            "pod updates may not change fields other than `spec.containers[*].image`,`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,`spec.tolerations` (only additions to existing tolerations),`spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was previously negative)",
        );
    }
}

// ---- apps ----

fn deployment(obj: &Value, errs: &mut Errs) {
    nonneg(obj, &["spec", "replicas"], "spec.replicas", errs);
    let selector = workload_selector(obj, "deployment", errs);
    template_matches(obj, &["spec", "template"], selector.as_ref(), errs);
    always_restarting_template(obj, "ReplicaSet", errs);

    let strategy_type = j::str_at(obj, &["spec", "strategy", "type"]).unwrap_or("RollingUpdate");
    let rolling = j::get(obj, &["spec", "strategy", "rollingUpdate"]).filter(|v| !v.is_null());
    match strategy_type {
        "Recreate" => {
            if rolling.is_some() {
                errs.forbidden(
                    "spec.strategy.rollingUpdate",
                    "may not be specified when strategy `type` is 'Recreate'",
                );
            }
        }
        "RollingUpdate" => {
            if let Some(ru) = rolling {
                let mu_raw = ru.get("maxUnavailable");
                let ms_raw = ru.get("maxSurge");
                let mu = int_or_percent(mu_raw, "spec.strategy.rollingUpdate.maxUnavailable", errs);
                let ms = int_or_percent(ms_raw, "spec.strategy.rollingUpdate.maxSurge", errs);
                if mu.is_some_and(|(n, _)| n == 0) && ms.is_some_and(|(n, _)| n == 0) {
                    errs.invalid(
                        "spec.strategy.rollingUpdate.maxUnavailable",
                        &int_or_string_repr(mu_raw),
                        "may not be 0 when `maxSurge` is 0",
                    );
                }
                not_more_than_100_percent(
                    mu,
                    mu_raw,
                    "spec.strategy.rollingUpdate.maxUnavailable",
                    errs,
                );
            }
        }
        other => errs.not_supported("spec.strategy", other, &["Recreate", "RollingUpdate"]),
    }
    nonneg(
        obj,
        &["spec", "revisionHistoryLimit"],
        "spec.revisionHistoryLimit",
        errs,
    );
    nonneg(
        obj,
        &["spec", "minReadySeconds"],
        "spec.minReadySeconds",
        errs,
    );
    if let Some(pds) = j::i64_at(obj, &["spec", "progressDeadlineSeconds"]) {
        nonneg(
            obj,
            &["spec", "progressDeadlineSeconds"],
            "spec.progressDeadlineSeconds",
            errs,
        );
        if pds <= j::i64_at(obj, &["spec", "minReadySeconds"]).unwrap_or(0) {
            errs.invalid(
                "spec.progressDeadlineSeconds",
                &pds.to_string(),
                "must be greater than minReadySeconds",
            );
        }
    }
}

fn replica_set(obj: &Value, errs: &mut Errs) {
    nonneg(obj, &["spec", "replicas"], "spec.replicas", errs);
    nonneg(
        obj,
        &["spec", "minReadySeconds"],
        "spec.minReadySeconds",
        errs,
    );
    let selector = workload_selector(obj, "deployment", errs);
    if j::get(obj, &["spec", "template"]).is_none_or(Value::is_null) {
        errs.required("spec.template", "");
        return;
    }
    template_matches(obj, &["spec", "template"], selector.as_ref(), errs);
    always_restarting_template(obj, "ReplicaSet", errs);
}

fn daemon_set(obj: &Value, errs: &mut Errs) {
    let selector = workload_selector(obj, "daemonset", errs);
    template_matches(obj, &["spec", "template"], selector.as_ref(), errs);
    always_restarting_template(obj, "DaemonSet", errs);
    nonneg(
        obj,
        &["spec", "minReadySeconds"],
        "spec.minReadySeconds",
        errs,
    );
    nonneg(
        obj,
        &["spec", "revisionHistoryLimit"],
        "spec.revisionHistoryLimit",
        errs,
    );
    match j::str_at(obj, &["spec", "updateStrategy", "type"]).unwrap_or("RollingUpdate") {
        "OnDelete" => {}
        "RollingUpdate" => {
            let Some(ru) =
                j::get(obj, &["spec", "updateStrategy", "rollingUpdate"]).filter(|v| !v.is_null())
            else {
                errs.required("spec.updateStrategy.rollingUpdate", "");
                return;
            };
            let mu_raw = ru.get("maxUnavailable");
            let ms_raw = ru.get("maxSurge");
            let base = "spec.updateStrategy.rollingUpdate";
            let mu = int_or_percent(mu_raw, &child(base, "maxUnavailable"), errs);
            let ms = int_or_percent(ms_raw, &child(base, "maxSurge"), errs);
            if mu.is_some_and(|(n, _)| n == 0) && ms.is_some_and(|(n, _)| n == 0) {
                errs.invalid(
                    &child(base, "maxUnavailable"),
                    &int_or_string_repr(mu_raw),
                    "may not be 0 when `maxSurge` is 0",
                );
            }
            not_more_than_100_percent(mu, mu_raw, &child(base, "maxUnavailable"), errs);
            not_more_than_100_percent(ms, ms_raw, &child(base, "maxSurge"), errs);
        }
        other => errs.not_supported("spec.updateStrategy", other, &["RollingUpdate", "OnDelete"]),
    }
}

fn stateful_set(obj: &Value, errs: &mut Errs) {
    match j::str_at(obj, &["spec", "podManagementPolicy"]).unwrap_or("") {
        "" => errs.required("spec.podManagementPolicy", ""),
        "OrderedReady" | "Parallel" => {}
        other => errs.invalid(
            "spec.podManagementPolicy",
            &q(other),
            "must be 'OrderedReady' or 'Parallel'",
        ),
    }
    match j::str_at(obj, &["spec", "updateStrategy", "type"]).unwrap_or("") {
        "" => errs.required("spec.updateStrategy", ""),
        "OnDelete" => {
            if j::get(obj, &["spec", "updateStrategy", "rollingUpdate"])
                .is_some_and(|v| !v.is_null())
            {
                errs.invalid(
                    "spec.updateStrategy.rollingUpdate",
                    &json_repr(j::get(obj, &["spec", "updateStrategy", "rollingUpdate"])),
                    "only allowed for updateStrategy 'RollingUpdate'",
                );
            }
        }
        "RollingUpdate" => nonneg(
            obj,
            &["spec", "updateStrategy", "rollingUpdate", "partition"],
            "spec.updateStrategy.rollingUpdate.partition",
            errs,
        ),
        other => errs.invalid(
            "spec.updateStrategy",
            &q(other),
            "must be 'RollingUpdate' or 'OnDelete'",
        ),
    }
    for field in ["whenDeleted", "whenScaled"] {
        if let Some(v) = j::str_at(
            obj,
            &["spec", "persistentVolumeClaimRetentionPolicy", field],
        ) {
            if !matches!(v, "Retain" | "Delete") {
                errs.not_supported(
                    &format!("spec.persistentVolumeClaimRetentionPolicy.{field}"),
                    v,
                    &["Retain", "Delete"],
                );
            }
        }
    }
    nonneg(obj, &["spec", "replicas"], "spec.replicas", errs);
    nonneg(
        obj,
        &["spec", "minReadySeconds"],
        "spec.minReadySeconds",
        errs,
    );
    let selector = workload_selector(obj, "statefulset", errs);
    template_matches(obj, &["spec", "template"], selector.as_ref(), errs);
    // Upstream's `ValidatePodTemplateSpecForStatefulSet` leaves the pod spec unchecked: its
    // volumeMounts name volumeClaimTemplates, which are no volumes of the template.
    validate_labels(
        j::get(obj, &["spec", "template", "metadata", "labels"]),
        "spec.template.labels",
        errs,
    );
    super::meta::validate_annotations(
        j::get(obj, &["spec", "template", "metadata", "annotations"]),
        "spec.template.annotations",
        errs,
    );
    let policy = j::string(obj, &["spec", "template", "spec", "restartPolicy"]);
    if policy != "Always" {
        errs.not_supported("spec.template.spec.restartPolicy", policy, &["Always"]);
    }
    if j::get(obj, &["spec", "template", "spec", "activeDeadlineSeconds"])
        .is_some_and(|v| !v.is_null())
    {
        errs.forbidden(
            "spec.template.spec.activeDeadlineSeconds",
            "activeDeadlineSeconds in StatefulSet is not Supported",
        );
    }
}

fn stateful_set_update(obj: &Value, old: &Value, errs: &mut Errs) {
    let strip = |v: &Value| {
        let mut spec = j::get(v, &["spec"]).cloned().unwrap_or(Value::Null);
        if let Some(m) = spec.as_object_mut() {
            for field in [
                "replicas",
                "template",
                "updateStrategy",
                "minReadySeconds",
                "ordinals",
                "revisionHistoryLimit",
                "persistentVolumeClaimRetentionPolicy",
            ] {
                m.remove(field);
            }
        }
        spec
    };
    if !semantic_eq(Some(&strip(obj)), Some(&strip(old))) {
        errs.forbidden(
            "spec",
            "updates to statefulset spec for fields other than 'replicas', 'ordinals', 'template', 'updateStrategy', 'revisionHistoryLimit', 'persistentVolumeClaimRetentionPolicy' and 'minReadySeconds' are forbidden",
        );
    }
}

// ---- batch ----

/// `validateJobSpec` at `base` (`spec`, or `spec.jobTemplate.spec`).
fn job_spec(spec: &Value, base: &str, errs: &mut Errs) {
    for field in [
        "parallelism",
        "completions",
        "activeDeadlineSeconds",
        "backoffLimit",
        "ttlSecondsAfterFinished",
    ] {
        nonneg(spec, &[field], &child(base, field), errs);
    }
    if let Some(mode) = j::str_at(spec, &["completionMode"]) {
        match mode {
            "NonIndexed" => {}
            "Indexed" => {
                if j::i64_at(spec, &["completions"]).is_none() {
                    errs.required(
                        &child(base, "completions"),
                        "when completion mode is Indexed",
                    );
                }
            }
            other => errs.not_supported(
                &child(base, "completionMode"),
                other,
                &["NonIndexed", "Indexed"],
            ),
        }
    }
    validate_pod_template(j::get(spec, &["template"]), &child(base, "template"), errs);
    let policy = j::string(spec, &["template", "spec", "restartPolicy"]);
    if policy != "OnFailure" && policy != "Never" {
        errs.not_supported(
            &child(base, "template.spec.restartPolicy"),
            policy,
            &["OnFailure", "Never"],
        );
    }
}

fn job(obj: &Value, errs: &mut Errs) {
    let spec = j::get(obj, &["spec"]).unwrap_or(&Value::Null);
    job_spec(spec, "spec", errs);
    let manual = j::bool_at(spec, &["manualSelector"]) == Some(true);
    match j::get(spec, &["selector"]).filter(|s| !s.is_null()) {
        // Without manualSelector the selector is generated from the uid (see defaults).
        None if manual => errs.required("spec.selector", ""),
        None => {}
        Some(sel) => {
            validate_label_selector(Some(sel), "spec.selector", errs);
            if let Ok(s) = from_label_selector_json(sel) {
                if !s.matches(j::object(spec, &["template", "metadata", "labels"])) {
                    errs.invalid(
                        "spec.template.metadata.labels",
                        &map_repr(j::get(spec, &["template", "metadata", "labels"])),
                        "`selector` does not match template `labels`",
                    );
                }
            }
        }
    }
}

fn job_update(obj: &Value, old: &Value, errs: &mut Errs) {
    let (new_s, old_s) = (
        j::get(obj, &["spec", "selector"]),
        j::get(old, &["spec", "selector"]),
    );
    if old_s.is_some_and(|s| !s.is_null()) && !semantic_eq(new_s, old_s) {
        errs.invalid("spec.selector", &selector_repr(new_s), IMMUTABLE);
    }
    // A suspended job that never started may change its scheduling directives.
    let mutable_scheduling = j::bool_at(old, &["spec", "suspend"]) == Some(true)
        && j::get(old, &["status", "startTime"]).is_none();
    let template = |v: &Value| {
        let mut t = j::get(v, &["spec", "template"])
            .cloned()
            .unwrap_or(Value::Null);
        if mutable_scheduling {
            if let Some(m) = t.get_mut("metadata").and_then(Value::as_object_mut) {
                m.remove("labels");
                m.remove("annotations");
            }
            if let Some(m) = t.get_mut("spec").and_then(Value::as_object_mut) {
                for f in ["nodeSelector", "tolerations", "schedulingGates", "affinity"] {
                    m.remove(f);
                }
            }
        }
        t
    };
    if !semantic_eq(Some(&template(obj)), Some(&template(old))) {
        errs.invalid(
            "spec.template",
            &json_repr(j::get(obj, &["spec", "template"])),
            IMMUTABLE,
        );
    }
    immutable_string(
        obj,
        old,
        &["spec", "completionMode"],
        "spec.completionMode",
        errs,
    );
    let elastic = j::string(obj, &["spec", "completionMode"]) == "Indexed"
        && j::i64_at(obj, &["spec", "completions"]) == j::i64_at(obj, &["spec", "parallelism"]);
    let (new_c, old_c) = (
        j::i64_at(obj, &["spec", "completions"]),
        j::i64_at(old, &["spec", "completions"]),
    );
    if new_c != old_c && !elastic {
        errs.invalid(
            "spec.completions",
            &new_c.map_or("null".to_string(), |n| n.to_string()),
            IMMUTABLE,
        );
    }
    for field in [
        "podFailurePolicy",
        "backoffLimitPerIndex",
        "managedBy",
        "successPolicy",
    ] {
        if !semantic_eq(j::get(obj, &["spec", field]), j::get(old, &["spec", field])) {
            errs.invalid(
                &format!("spec.{field}"),
                &json_repr(j::get(obj, &["spec", field])),
                IMMUTABLE,
            );
        }
    }
}

fn cron_job(obj: &Value, errs: &mut Errs) {
    let name = j::string(obj, &["metadata", "name"]);
    if name.len() > 52 {
        errs.invalid(
            "metadata.name",
            &q(name),
            "must be no more than 52 characters",
        );
    }
    let schedule = j::string(obj, &["spec", "schedule"]);
    if schedule.is_empty() {
        errs.required("spec.schedule", "");
    } else {
        if let Err(e) = parse_cron(schedule) {
            errs.invalid("spec.schedule", &q(schedule), &e);
        }
        if schedule.contains("TZ") {
            errs.invalid(
                "spec.schedule",
                &q(schedule),
                "cannot use TZ or CRON_TZ in schedule, use timeZone field instead",
            );
        }
    }
    nonneg(
        obj,
        &["spec", "startingDeadlineSeconds"],
        "spec.startingDeadlineSeconds",
        errs,
    );
    match j::str_at(obj, &["spec", "concurrencyPolicy"]).unwrap_or("") {
        "Allow" | "Forbid" | "Replace" => {}
        "" => errs.required("spec.concurrencyPolicy", ""),
        other => errs.not_supported(
            "spec.concurrencyPolicy",
            other,
            &["Allow", "Forbid", "Replace"],
        ),
    }
    let job_spec_value = j::get(obj, &["spec", "jobTemplate", "spec"]).unwrap_or(&Value::Null);
    job_spec(job_spec_value, "spec.jobTemplate.spec", errs);
    if j::get(job_spec_value, &["selector"]).is_some_and(|s| !s.is_null()) {
        errs.invalid(
            "spec.jobTemplate.spec.selector",
            &selector_repr(j::get(job_spec_value, &["selector"])),
            "`selector` will be auto-generated",
        );
    }
    if j::bool_at(job_spec_value, &["manualSelector"]) == Some(true) {
        errs.not_supported(
            "spec.jobTemplate.spec.manualSelector",
            "true",
            &["nil", "false"],
        );
    }
    nonneg(
        obj,
        &["spec", "successfulJobsHistoryLimit"],
        "spec.successfulJobsHistoryLimit",
        errs,
    );
    nonneg(
        obj,
        &["spec", "failedJobsHistoryLimit"],
        "spec.failedJobsHistoryLimit",
        errs,
    );
}

/// A standard 5-field cron schedule or a descriptor, with robfig/cron's error texts.
pub(crate) fn parse_cron(spec: &str) -> Result<(), String> {
    let spec = spec.trim();
    if let Some(descriptor) = spec.strip_prefix('@') {
        return match descriptor {
            "yearly" | "annually" | "monthly" | "weekly" | "daily" | "midnight" | "hourly" => {
                Ok(())
            }
            d if d.starts_with("every ") && d.len() > 6 => Ok(()),
            _ => Err(format!("unrecognized descriptor: {spec}")),
        };
    }
    let fields: Vec<&str> = spec.split_whitespace().collect();
    if fields.len() != 5 {
        return Err(format!(
            "expected exactly 5 fields, found {}: [{}]",
            fields.len(),
            fields.join(" ")
        ));
    }
    const MONTHS: &[&str] = &[
        "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
    ];
    const DAYS: &[&str] = &["sun", "mon", "tue", "wed", "thu", "fri", "sat"];
    let bounds: [(i64, i64, &[&str], i64); 5] = [
        (0, 59, &[], 0),
        (0, 23, &[], 0),
        (1, 31, &[], 0),
        (1, 12, MONTHS, 1),
        (0, 6, DAYS, 0),
    ];
    for (field, (min, max, names, name_base)) in fields.iter().zip(bounds) {
        for expr in field.split(',') {
            let (range, step) = match expr.split_once('/') {
                Some((r, s)) => (r, Some(s)),
                None => (expr, None),
            };
            let number = |s: &str| -> Result<i64, String> {
                if let Some(pos) = names.iter().position(|n| n.eq_ignore_ascii_case(s)) {
                    return Ok(pos as i64 + name_base);
                }
                s.parse::<i64>().map_err(|_| {
                    format!(
                        "failed to parse int from {s}: strconv.Atoi: parsing {}: invalid syntax",
                        q(s)
                    )
                })
            };
            let (start, end) = if range == "*" || range == "?" {
                (min, max)
            } else if let Some((a, b)) = range.split_once('-') {
                (number(a)?, number(b)?)
            } else {
                let n = number(range)?;
                (n, if step.is_some() { max } else { n })
            };
            let step = match step {
                Some(s) => s.parse::<i64>().map_err(|_| {
                    format!(
                        "failed to parse int from {s}: strconv.Atoi: parsing {}: invalid syntax",
                        q(s)
                    )
                })?,
                None => 1,
            };
            if start < min {
                return Err(format!(
                    "beginning of range ({start}) below minimum ({min}): {expr}"
                ));
            }
            if end > max {
                return Err(format!(
                    "end of range ({end}) above maximum ({max}): {expr}"
                ));
            }
            if start > end {
                return Err(format!(
                    "beginning of range ({start}) beyond end of range ({end}): {expr}"
                ));
            }
            if step <= 0 {
                return Err(format!("step of range should be a positive number: {expr}"));
            }
        }
    }
    Ok(())
}

// ---- other groups ----

fn hpa(obj: &Value, errs: &mut Errs) {
    for field in ["kind", "name"] {
        if j::string(obj, &["spec", "scaleTargetRef", field]).is_empty() {
            errs.required(&format!("spec.scaleTargetRef.{field}"), "");
        }
    }
    let min = j::i64_at(obj, &["spec", "minReplicas"]);
    if let Some(m) = min.filter(|m| *m < 1) {
        errs.invalid(
            "spec.minReplicas",
            &m.to_string(),
            "must be greater than or equal to 1",
        );
    }
    let max = j::i64_at(obj, &["spec", "maxReplicas"]).unwrap_or(0);
    if max < 1 {
        errs.invalid(
            "spec.maxReplicas",
            &max.to_string(),
            "must be greater than 0",
        );
    }
    if let Some(m) = min {
        if max < m {
            errs.invalid(
                "spec.maxReplicas",
                &max.to_string(),
                "must be greater than or equal to `minReplicas`",
            );
        }
    }
    for (i, m) in j::array(obj, &["spec", "metrics"]).iter().enumerate() {
        let t = j::string(m, &["type"]);
        if !matches!(
            t,
            "ContainerResource" | "External" | "Object" | "Pods" | "Resource"
        ) {
            errs.not_supported(
                &child(&index("spec.metrics", i), "type"),
                t,
                &[
                    "ContainerResource",
                    "External",
                    "Object",
                    "Pods",
                    "Resource",
                ],
            );
        }
    }
}

fn ingress_backend(b: &Value, path: &str, errs: &mut Errs) {
    let has_resource = b.get("resource").is_some_and(|v| !v.is_null());
    let has_service = b.get("service").is_some_and(|v| !v.is_null());
    match (has_resource, has_service) {
        (true, true) => errs.invalid(
            path,
            "\"\"",
            "cannot set both resource and service backends",
        ),
        (true, false) => {}
        (false, true) => {
            let name = j::string(b, &["service", "name"]);
            if name.is_empty() {
                errs.required(&format!("{path}.service.name"), "");
            } else {
                errs.invalid_each(
                    &format!("{path}.service.name"),
                    name,
                    syntax::is_dns1035_label(name),
                );
            }
            let port_name = j::string(b, &["service", "port", "name"]);
            let port_number = j::i64_at(b, &["service", "port", "number"]).unwrap_or(0);
            match (!port_name.is_empty(), port_number != 0) {
                (true, true) => {
                    errs.invalid(path, "\"\"", "cannot set both port name & port number")
                }
                (true, false) => errs.invalid_each(
                    &format!("{path}.service.port.name"),
                    port_name,
                    syntax::is_valid_port_name(port_name),
                ),
                (false, true) => {
                    for m in syntax::is_valid_port_num(port_number) {
                        errs.invalid(
                            &format!("{path}.service.port.number"),
                            &port_number.to_string(),
                            &m,
                        );
                    }
                }
                (false, false) => errs.required(path, "port name or number is required"),
            }
        }
        (false, false) => errs.invalid(path, "\"\"", "resource or service backend is required"),
    }
}

fn ingress(obj: &Value, errs: &mut Errs) {
    let rules = j::array(obj, &["spec", "rules"]);
    let default_backend = j::get(obj, &["spec", "defaultBackend"]).filter(|v| !v.is_null());
    if rules.is_empty() && default_backend.is_none() {
        errs.invalid(
            "spec",
            "[]networking.IngressRule(nil)",
            "either `defaultBackend` or `rules` must be specified",
        );
    }
    if let Some(b) = default_backend {
        ingress_backend(b, "spec.defaultBackend", errs);
    }
    if let Some(class) = j::str_at(obj, &["spec", "ingressClassName"]) {
        errs.invalid_each(
            "spec.ingressClassName",
            class,
            syntax::is_dns1123_subdomain(class),
        );
    }
    for (i, rule) in rules.iter().enumerate() {
        let rp = index("spec.rules", i);
        let host = j::string(rule, &["host"]);
        if !host.is_empty() {
            let check = host.strip_prefix("*.").unwrap_or(host);
            errs.invalid_each(
                &child(&rp, "host"),
                host,
                syntax::is_dns1123_subdomain(check),
            );
        }
        let Some(http) = j::get(rule, &["http"]).filter(|v| !v.is_null()) else {
            continue;
        };
        let paths = j::array(http, &["paths"]);
        if paths.is_empty() {
            errs.required(&format!("{rp}.http.paths"), "");
        }
        for (pi, p) in paths.iter().enumerate() {
            let pp = index(&format!("{rp}.http.paths"), pi);
            let path_value = j::string(p, &["path"]);
            match j::str_at(p, &["pathType"]) {
                None | Some("") => {
                    errs.required(&child(&pp, "pathType"), "pathType must be specified")
                }
                Some("Exact" | "Prefix") => {
                    if !path_value.starts_with('/') {
                        errs.invalid(
                            &child(&pp, "path"),
                            &q(path_value),
                            "must be an absolute path",
                        );
                    }
                }
                Some("ImplementationSpecific") => {
                    if !path_value.is_empty() && !path_value.starts_with('/') {
                        errs.invalid(
                            &child(&pp, "path"),
                            &q(path_value),
                            "must be an absolute path",
                        );
                    }
                }
                Some(other) => errs.not_supported(
                    &child(&pp, "pathType"),
                    other,
                    &["Exact", "ImplementationSpecific", "Prefix"],
                ),
            }
            ingress_backend(
                j::get(p, &["backend"]).unwrap_or(&Value::Null),
                &child(&pp, "backend"),
                errs,
            );
        }
    }
}

fn network_policy(obj: &Value, errs: &mut Errs) {
    validate_label_selector(
        j::get(obj, &["spec", "podSelector"]),
        "spec.podSelector",
        errs,
    );
    let types = j::array(obj, &["spec", "policyTypes"]);
    for (i, t) in types.iter().enumerate() {
        let t = t.as_str().unwrap_or("");
        if !matches!(t, "Ingress" | "Egress") {
            errs.not_supported(&index("spec.policyTypes", i), t, &["Ingress", "Egress"]);
        }
    }
}

fn pdb(obj: &Value, errs: &mut Errs) {
    let min = j::get(obj, &["spec", "minAvailable"]).filter(|v| !v.is_null());
    let max = j::get(obj, &["spec", "maxUnavailable"]).filter(|v| !v.is_null());
    if min.is_some() && max.is_some() {
        errs.invalid(
            "spec",
            &json_repr(j::get(obj, &["spec"])),
            "minAvailable and maxUnavailable cannot be both set",
        );
    }
    for (v, field) in [(min, "spec.minAvailable"), (max, "spec.maxUnavailable")] {
        if let Some(v) = v {
            let parsed = int_or_percent(Some(v), field, errs);
            not_more_than_100_percent(parsed, Some(v), field, errs);
        }
    }
    validate_label_selector(j::get(obj, &["spec", "selector"]), "spec.selector", errs);
}

fn rbac_rules(obj: &Value, namespaced: bool, errs: &mut Errs) {
    if j::get(obj, &["aggregationRule"]).is_some_and(|v| !v.is_null()) {
        return;
    }
    for (i, rule) in j::array(obj, &["rules"]).iter().enumerate() {
        let p = index("rules", i);
        if j::len_at(rule, &["verbs"]) == 0 {
            errs.required(&child(&p, "verbs"), "verbs must contain at least one value");
        }
        let urls = j::get(rule, &["nonResourceURLs"]);
        if j::len_at(rule, &["nonResourceURLs"]) > 0 {
            if namespaced {
                errs.invalid(
                    &child(&p, "nonResourceURLs"),
                    &strings_repr(urls),
                    "namespaced rules cannot apply to non-resource URLs",
                );
            }
            if j::len_at(rule, &["apiGroups"]) > 0
                || j::len_at(rule, &["resources"]) > 0
                || j::len_at(rule, &["resourceNames"]) > 0
            {
                errs.invalid(
                    &child(&p, "nonResourceURLs"),
                    &strings_repr(urls),
                    "rules cannot apply to both regular resources and non-resource URLs",
                );
            }
            continue;
        }
        if j::get(rule, &["apiGroups"])
            .and_then(Value::as_array)
            .is_none_or(Vec::is_empty)
        {
            errs.required(
                &child(&p, "apiGroups"),
                "resource rules must supply at least one api group",
            );
        }
        if j::len_at(rule, &["resources"]) == 0 {
            errs.required(
                &child(&p, "resources"),
                "resource rules must supply at least one resource",
            );
        }
    }
}

fn role_binding(obj: &Value, namespaced: bool, errs: &mut Errs) {
    const RBAC: &str = "rbac.authorization.k8s.io";
    let api_group = j::string(obj, &["roleRef", "apiGroup"]);
    if api_group != RBAC {
        errs.not_supported("roleRef.apiGroup", api_group, &[RBAC]);
    }
    let kind = j::string(obj, &["roleRef", "kind"]);
    let kinds: &[&str] = if namespaced {
        &["Role", "ClusterRole"]
    } else {
        &["ClusterRole"]
    };
    if !kinds.contains(&kind) {
        errs.not_supported("roleRef.kind", kind, kinds);
    }
    let name = j::string(obj, &["roleRef", "name"]);
    if name.is_empty() {
        errs.required("roleRef.name", "");
    } else {
        errs.invalid_each(
            "roleRef.name",
            name,
            syntax::is_valid_path_segment_name(name),
        );
    }
    for (i, s) in j::array(obj, &["subjects"]).iter().enumerate() {
        let p = index("subjects", i);
        let name = j::string(s, &["name"]);
        if name.is_empty() {
            errs.required(&child(&p, "name"), "");
        }
        let group = j::string(s, &["apiGroup"]);
        match j::string(s, &["kind"]) {
            "ServiceAccount" => {
                if !name.is_empty() {
                    errs.invalid_each(&child(&p, "name"), name, syntax::is_dns1123_subdomain(name));
                }
                if !group.is_empty() {
                    errs.not_supported(&child(&p, "apiGroup"), group, &[""]);
                }
                if !namespaced && j::string(s, &["namespace"]).is_empty() {
                    errs.required(&child(&p, "namespace"), "");
                }
            }
            "User" | "Group" => {
                if group != RBAC {
                    errs.not_supported(&child(&p, "apiGroup"), group, &[RBAC]);
                }
            }
            other => errs.not_supported(
                &child(&p, "kind"),
                other,
                &["ServiceAccount", "User", "Group"],
            ),
        }
    }
}

fn storage_class(obj: &Value, errs: &mut Errs) {
    let provisioner = j::string(obj, &["provisioner"]);
    if provisioner.is_empty() {
        errs.required("provisioner", "");
    } else {
        errs.invalid_each(
            "provisioner",
            provisioner,
            syntax::is_qualified_name(&provisioner.to_lowercase()),
        );
    }
    if let Some(p) = j::str_at(obj, &["reclaimPolicy"]) {
        if !matches!(p, "Delete" | "Retain") {
            errs.not_supported("reclaimPolicy", p, &["Delete", "Retain"]);
        }
    }
    if let Some(m) = j::str_at(obj, &["volumeBindingMode"]) {
        if !matches!(m, "Immediate" | "WaitForFirstConsumer") {
            errs.not_supported(
                "volumeBindingMode",
                m,
                &["Immediate", "WaitForFirstConsumer"],
            );
        }
    }
}

fn crd(obj: &Value, errs: &mut Errs) {
    let group = j::string(obj, &["spec", "group"]);
    if group.is_empty() {
        errs.required("spec.group", "");
    } else {
        errs.invalid_each("spec.group", group, syntax::is_dns1123_subdomain(group));
        if !group.contains('.') {
            errs.invalid(
                "spec.group",
                &q(group),
                "should be a domain with at least one dot",
            );
        }
    }
    for (field, check) in [
        ("plural", true),
        ("singular", true),
        ("kind", false),
        ("listKind", false),
    ] {
        let v = j::string(obj, &["spec", "names", field]);
        let path = format!("spec.names.{field}");
        if v.is_empty() {
            if field != "singular" && field != "listKind" {
                errs.required(&path, "");
            }
        } else if check {
            errs.invalid_each(&path, v, syntax::is_dns1035_label(v));
        }
    }
    let scope = j::string(obj, &["spec", "scope"]);
    if !matches!(scope, "Cluster" | "Namespaced") {
        if scope.is_empty() {
            errs.required("spec.scope", "");
        } else {
            errs.not_supported("spec.scope", scope, &["Cluster", "Namespaced"]);
        }
    }
    let versions = j::array(obj, &["spec", "versions"]);
    let storage = versions
        .iter()
        .filter(|v| j::bool_at(v, &["storage"]) == Some(true))
        .count();
    if storage != 1 {
        errs.invalid(
            "spec.versions",
            &json_repr(j::get(obj, &["spec", "versions"])),
            "must have exactly one version marked as storage version",
        );
    }
    for (i, v) in versions.iter().enumerate() {
        let p = index("spec.versions", i);
        let name = j::string(v, &["name"]);
        if name.is_empty() {
            errs.required(&child(&p, "name"), "");
        } else {
            errs.invalid_each(&child(&p, "name"), name, syntax::is_dns1035_label(name));
        }
        if j::get(v, &["schema", "openAPIV3Schema"]).is_none_or(Value::is_null) {
            errs.required(&child(&p, "schema.openAPIV3Schema"), "schemas are required");
        }
    }
}

fn priority_class(obj: &Value, errs: &mut Errs) {
    let name = j::string(obj, &["metadata", "name"]);
    let value = j::i64_at(obj, &["value"]).unwrap_or(0);
    if value > 1_000_000_000 && !name.starts_with("system-") {
        errs.forbidden(
            "value",
            "maximum allowed value of a user defined priority is 1000000000",
        );
    }
    if let Some(p) = j::str_at(obj, &["preemptionPolicy"]) {
        if !matches!(p, "Never" | "PreemptLowerPriority") {
            errs.not_supported("preemptionPolicy", p, &["Never", "PreemptLowerPriority"]);
        }
    }
}

fn lease(obj: &Value, errs: &mut Errs) {
    if let Some(d) = j::i64_at(obj, &["spec", "leaseDurationSeconds"]) {
        if d <= 0 {
            errs.invalid(
                "spec.leaseDurationSeconds",
                &d.to_string(),
                "must be greater than 0",
            );
        }
    }
    nonneg(
        obj,
        &["spec", "leaseTransitions"],
        "spec.leaseTransitions",
        errs,
    );
}

fn endpoint_slice(obj: &Value, errs: &mut Errs) {
    match j::str_at(obj, &["addressType"]).unwrap_or("") {
        "IPv4" | "IPv6" | "FQDN" => {}
        "" => errs.required("addressType", ""),
        other => errs.not_supported("addressType", other, &["IPv4", "IPv6", "FQDN"]),
    }
    for (i, e) in j::array(obj, &["endpoints"]).iter().enumerate() {
        let p = index("endpoints", i);
        if j::len_at(e, &["addresses"]) == 0 {
            errs.required(&child(&p, "addresses"), "must contain at least 1 address");
        }
    }
    for (i, port) in j::array(obj, &["ports"]).iter().enumerate() {
        let p = index("ports", i);
        if let Some(n) = j::i64_at(port, &["port"]) {
            for m in syntax::is_valid_port_num(n) {
                errs.invalid(&child(&p, "port"), &n.to_string(), &m);
            }
        }
        if let Some(proto) = j::str_at(port, &["protocol"]) {
            if !matches!(proto, "TCP" | "UDP" | "SCTP") {
                errs.not_supported(&child(&p, "protocol"), proto, &["SCTP", "TCP", "UDP"]);
            }
        }
    }
}
