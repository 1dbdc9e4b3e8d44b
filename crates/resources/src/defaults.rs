//! Upstream defaulting (`pkg/apis/*/v1/defaults.go`) plus the create-time filling upstream does
//! in registry strategies and admission that kubectl and controllers rely on: a pod's
//! `serviceAccountName`, priority, default tolerations, `Pending` phase and QoS class; a job's
//! generated selector; a namespace's `kubernetes` finalizer and `Active` phase; a secret's
//! `stringData` folded into `data`.
//!
//! [`apply_defaults`] only fills what is absent and is idempotent: applying it twice equals
//! applying it once. It never panics, whatever types the object carries (fields of an unexpected
//! type are left alone). Allocation that needs cluster state (cluster IPs, node ports) is the API
//! server's.

use serde_json::{json, Map, Value};

use crate::catalog::ResourceType;
use crate::json::{array_mut, ensure_object, object_mut, set_default};

/// Fills the fields upstream defaults for `rt`'s kind.
pub fn apply_defaults(rt: &ResourceType, obj: &mut Value) {
    if !obj.is_object() {
        return;
    }
    if !rt.namespaced {
        // Upstream drops a namespace given to a cluster-scoped object.
        if let Some(meta) = object_mut(obj, &["metadata"]) {
            meta.remove("namespace");
        }
    }
    match (rt.group, rt.kind) {
        ("", "Pod") => pod(obj),
        ("", "PodTemplate") => pod_template(obj, &["template"]),
        ("", "ReplicationController") => replication_controller(obj),
        ("", "Service") => service(obj),
        ("", "Secret") => secret(obj),
        ("", "Namespace") => namespace(obj),
        ("", "PersistentVolumeClaim") => persistent_volume_claim(obj),
        ("", "PersistentVolume") => persistent_volume(obj),
        ("", "Endpoints") => {
            for subset in array_mut(obj, &["subsets"]).into_iter().flatten() {
                ports_protocol(subset, &["ports"]);
            }
        }
        ("", "Node") => node(obj),
        ("apps", "Deployment") => deployment(obj),
        ("apps", "ReplicaSet") => {
            if let Some(spec) = ensure_object(obj, &["spec"]) {
                set_default(spec, "replicas", json!(1));
            }
            pod_template(obj, &["spec", "template"]);
        }
        ("apps", "DaemonSet") => daemon_set(obj),
        ("apps", "StatefulSet") => stateful_set(obj),
        ("batch", "Job") => job(obj),
        ("batch", "CronJob") => cron_job(obj),
        ("networking.k8s.io", "NetworkPolicy") => network_policy(obj),
        ("rbac.authorization.k8s.io", "RoleBinding" | "ClusterRoleBinding") => role_binding(obj),
        ("storage.k8s.io", "StorageClass") => {
            if let Some(m) = obj.as_object_mut() {
                set_default(m, "reclaimPolicy", json!("Delete"));
                set_default(m, "volumeBindingMode", json!("Immediate"));
            }
        }
        ("scheduling.k8s.io", "PriorityClass") => {
            if let Some(m) = obj.as_object_mut() {
                set_default(m, "preemptionPolicy", json!("PreemptLowerPriority"));
            }
        }
        ("autoscaling", "HorizontalPodAutoscaler") => hpa(obj),
        ("apiextensions.k8s.io", "CustomResourceDefinition") => crd(obj),
        ("discovery.k8s.io", "EndpointSlice") => {
            for port in array_mut(obj, &["ports"]).into_iter().flatten() {
                if let Some(p) = port.as_object_mut() {
                    set_default(p, "name", json!(""));
                    set_default(p, "protocol", json!("TCP"));
                }
            }
        }
        _ => {}
    }
}

/// Carries over on update what the server allocated and a client may omit when it replaces the
/// object (upstream keeps them too): a Service's cluster IPs, IP families and node ports.
/// Call before [`apply_defaults`] and validation.
pub fn prepare_for_update(rt: &ResourceType, obj: &mut Value, old: &Value) {
    if !(rt.group.is_empty() && rt.kind == "Service") {
        return;
    }
    let old_spec = old
        .get("spec")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    let is_external = |spec: &Map<String, Value>| {
        spec.get("type").and_then(Value::as_str) == Some("ExternalName")
    };
    let Some(spec) = ensure_object(obj, &["spec"]) else {
        return;
    };
    if is_external(spec) || is_external(&old_spec) {
        return;
    }
    let unset = |spec: &Map<String, Value>, k: &str| match spec.get(k) {
        None | Some(Value::Null) => true,
        Some(Value::String(s)) => s.is_empty(),
        Some(Value::Array(a)) => a.is_empty(),
        _ => false,
    };
    if unset(spec, "clusterIP") && unset(spec, "clusterIPs") {
        for k in ["clusterIP", "clusterIPs", "ipFamilies", "ipFamilyPolicy"] {
            if let Some(v) = old_spec.get(k) {
                if unset(spec, k) {
                    spec.insert(k.to_string(), v.clone());
                }
            }
        }
    }
    if unset(spec, "healthCheckNodePort") {
        if let Some(v) = old_spec.get("healthCheckNodePort") {
            spec.insert("healthCheckNodePort".into(), v.clone());
        }
    }
    let old_ports: Vec<Value> = old_spec
        .get("ports")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let key = |p: &Value| {
        (
            p.get("port").and_then(Value::as_i64),
            p.get("protocol")
                .and_then(Value::as_str)
                .unwrap_or("TCP")
                .to_string(),
        )
    };
    if let Some(ports) = spec.get_mut("ports").and_then(Value::as_array_mut) {
        for port in ports.iter_mut() {
            let k = key(port);
            let Some(p) = port.as_object_mut() else {
                continue;
            };
            if p.get("nodePort").and_then(Value::as_i64).unwrap_or(0) != 0 {
                continue;
            }
            if let Some(np) = old_ports
                .iter()
                .find(|o| key(o) == k)
                .and_then(|o| o.get("nodePort"))
                .filter(|v| v.as_i64().unwrap_or(0) != 0)
            {
                p.insert("nodePort".into(), np.clone());
            }
        }
    }
}

// ---- pods ----

fn pod(obj: &mut Value) {
    if let Some(spec) = ensure_object(obj, &["spec"]) {
        pod_spec(spec, true);
        set_default(spec, "enableServiceLinks", json!(true));
        // ServiceAccount admission.
        if spec
            .get("serviceAccountName")
            .and_then(Value::as_str)
            .unwrap_or("")
            .is_empty()
        {
            spec.insert("serviceAccountName".into(), json!("default"));
        }
        if let Some(sa) = spec.get("serviceAccountName").cloned() {
            spec.insert("serviceAccount".into(), sa);
        }
        // Priority admission.
        set_default(spec, "priority", json!(0));
        set_default(spec, "preemptionPolicy", json!("PreemptLowerPriority"));
        // DefaultTolerationSeconds admission.
        default_tolerations(spec);
        // Requests default to limits.
        for list in ["containers", "initContainers"] {
            for c in spec
                .get_mut(list)
                .and_then(Value::as_array_mut)
                .into_iter()
                .flatten()
            {
                requests_from_limits(c);
            }
        }
        if spec.get("hostNetwork").and_then(Value::as_bool) == Some(true) {
            for list in ["containers", "initContainers"] {
                for c in spec
                    .get_mut(list)
                    .and_then(Value::as_array_mut)
                    .into_iter()
                    .flatten()
                {
                    for p in c
                        .get_mut("ports")
                        .and_then(Value::as_array_mut)
                        .into_iter()
                        .flatten()
                    {
                        if let Some(p) = p.as_object_mut() {
                            if p.get("hostPort").and_then(Value::as_i64).unwrap_or(0) == 0 {
                                if let Some(cp) = p.get("containerPort").cloned() {
                                    p.insert("hostPort".into(), cp);
                                }
                            }
                        }
                    }
                }
            }
        }
    }
    let qos = obj.get("spec").map(qos_class);
    if let Some(status) = ensure_object(obj, &["status"]) {
        set_default(status, "phase", json!("Pending"));
        if let Some(qos) = qos {
            set_default(status, "qosClass", json!(qos));
        }
    }
}

fn default_tolerations(spec: &mut Map<String, Value>) {
    let tolerations = spec.entry("tolerations").or_insert_with(|| json!([]));
    if tolerations.is_null() {
        *tolerations = json!([]);
    }
    let Some(list) = tolerations.as_array_mut() else {
        return;
    };
    for key in [
        "node.kubernetes.io/not-ready",
        "node.kubernetes.io/unreachable",
    ] {
        let tolerated = list.iter().any(|t| {
            let k = t.get("key").and_then(Value::as_str).unwrap_or("");
            let op = t.get("operator").and_then(Value::as_str).unwrap_or("");
            let effect = t.get("effect").and_then(Value::as_str).unwrap_or("");
            (k == key || (k.is_empty() && op == "Exists"))
                && (effect.is_empty() || effect == "NoExecute")
        });
        if !tolerated {
            list.push(json!({
                "key": key,
                "operator": "Exists",
                "effect": "NoExecute",
                "tolerationSeconds": 300
            }));
        }
    }
}

fn requests_from_limits(c: &mut Value) {
    let Some(limits) = c
        .get("resources")
        .and_then(|r| r.get("limits"))
        .and_then(Value::as_object)
        .cloned()
    else {
        return;
    };
    let Some(requests) = ensure_object(c, &["resources", "requests"]) else {
        return;
    };
    for (k, v) in limits {
        requests.entry(k).or_insert(v);
    }
}

/// `GetPodQOS` over cpu and memory.
fn qos_class(spec: &Value) -> &'static str {
    let mut requests: std::collections::BTreeMap<String, f64> = Default::default();
    let mut limits: std::collections::BTreeMap<String, f64> = Default::default();
    let mut guaranteed = true;
    let containers = ["containers", "initContainers"]
        .iter()
        .flat_map(|l| {
            spec.get(*l)
                .and_then(Value::as_array)
                .map(Vec::as_slice)
                .unwrap_or(&[])
        })
        .collect::<Vec<_>>();
    for c in containers {
        let res = c.get("resources");
        let mut found_limits = std::collections::HashSet::new();
        for (kind, acc) in [("requests", &mut requests), ("limits", &mut limits)] {
            for (name, q) in res
                .and_then(|r| r.get(kind))
                .and_then(Value::as_object)
                .into_iter()
                .flatten()
            {
                if name != "cpu" && name != "memory" {
                    continue;
                }
                let v = parse_quantity(q).unwrap_or(0.0);
                if v == 0.0 {
                    continue;
                }
                *acc.entry(name.clone()).or_default() += v;
                if kind == "limits" {
                    found_limits.insert(name.clone());
                }
            }
        }
        if !(found_limits.contains("cpu") && found_limits.contains("memory")) {
            guaranteed = false;
        }
    }
    if requests.is_empty() && limits.is_empty() {
        return "BestEffort";
    }
    if guaranteed {
        for (name, req) in &requests {
            if limits
                .get(name)
                .is_none_or(|l| (l - req).abs() > f64::EPSILON * l.abs().max(1.0))
            {
                guaranteed = false;
            }
        }
    }
    if guaranteed && requests.len() == limits.len() {
        "Guaranteed"
    } else {
        "Burstable"
    }
}

/// A resource quantity as a float (`"500m"` → 0.5, `"1Gi"` → 1073741824).
pub fn parse_quantity(v: &Value) -> Option<f64> {
    let s = match v {
        Value::Number(n) => return n.as_f64(),
        Value::String(s) => s.trim(),
        _ => return None,
    };
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '+' || c == '-'))
        .unwrap_or(s.len());
    let (number, suffix) = s.split_at(split);
    let base: f64 = number.parse().ok()?;
    let factor = match suffix {
        "" => 1.0,
        "n" => 1e-9,
        "u" => 1e-6,
        "m" => 1e-3,
        "k" => 1e3,
        "M" => 1e6,
        "G" => 1e9,
        "T" => 1e12,
        "P" => 1e15,
        "E" => 1e18,
        "Ki" => 1024f64,
        "Mi" => 1024f64.powi(2),
        "Gi" => 1024f64.powi(3),
        "Ti" => 1024f64.powi(4),
        "Pi" => 1024f64.powi(5),
        "Ei" => 1024f64.powi(6),
        e if e.starts_with(['e', 'E']) => 10f64.powi(e[1..].parse().ok()?),
        _ => return None,
    };
    Some(base * factor)
}

/// Pod-template defaults at `path` (`spec.template` of workloads).
fn pod_template(obj: &mut Value, path: &[&str]) {
    let mut spec_path = path.to_vec();
    spec_path.push("spec");
    if let Some(spec) = ensure_object(obj, &spec_path) {
        pod_spec(spec, false);
    }
}

/// `SetDefaults_PodSpec` and what it reaches: containers, probes, volumes.
fn pod_spec(spec: &mut Map<String, Value>, is_pod: bool) {
    set_default(spec, "dnsPolicy", json!("ClusterFirst"));
    set_default(spec, "restartPolicy", json!("Always"));
    set_default(spec, "terminationGracePeriodSeconds", json!(30));
    set_default(spec, "securityContext", json!({}));
    set_default(spec, "schedulerName", json!("default-scheduler"));
    // The deprecated serviceAccount mirrors serviceAccountName (conversion).
    let sa_name = spec
        .get("serviceAccountName")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    let sa = spec
        .get("serviceAccount")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    if sa_name.is_empty() && !sa.is_empty() {
        spec.insert("serviceAccountName".into(), json!(sa));
    } else if !sa_name.is_empty() && !is_pod {
        spec.insert("serviceAccount".into(), json!(sa_name));
    }
    for list in ["containers", "initContainers", "ephemeralContainers"] {
        for c in spec
            .get_mut(list)
            .and_then(Value::as_array_mut)
            .into_iter()
            .flatten()
        {
            container(c);
        }
    }
    for v in spec
        .get_mut("volumes")
        .and_then(Value::as_array_mut)
        .into_iter()
        .flatten()
    {
        volume(v);
    }
}

fn container(c: &mut Value) {
    let Some(m) = c.as_object_mut() else {
        return;
    };
    set_default(m, "terminationMessagePath", json!("/dev/termination-log"));
    set_default(m, "terminationMessagePolicy", json!("File"));
    let image = m
        .get("image")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    set_default(m, "imagePullPolicy", json!(default_pull_policy(&image)));
    set_default(m, "resources", json!({}));
    for p in m
        .get_mut("ports")
        .and_then(Value::as_array_mut)
        .into_iter()
        .flatten()
    {
        if let Some(p) = p.as_object_mut() {
            set_default(p, "protocol", json!("TCP"));
        }
    }
    for e in m
        .get_mut("env")
        .and_then(Value::as_array_mut)
        .into_iter()
        .flatten()
    {
        if let Some(f) = e
            .get_mut("valueFrom")
            .and_then(|v| v.get_mut("fieldRef"))
            .and_then(Value::as_object_mut)
        {
            set_default(f, "apiVersion", json!("v1"));
        }
    }
    for probe in ["livenessProbe", "readinessProbe", "startupProbe"] {
        if let Some(p) = m.get_mut(probe).and_then(Value::as_object_mut) {
            set_default(p, "timeoutSeconds", json!(1));
            set_default(p, "periodSeconds", json!(10));
            set_default(p, "successThreshold", json!(1));
            set_default(p, "failureThreshold", json!(3));
            http_get(p.get_mut("httpGet"));
        }
    }
    for hook in ["postStart", "preStop"] {
        if let Some(h) = m.get_mut("lifecycle").and_then(|l| l.get_mut(hook)) {
            http_get(h.get_mut("httpGet"));
        }
    }
}

fn http_get(v: Option<&mut Value>) {
    if let Some(h) = v.and_then(Value::as_object_mut) {
        if h.get("path")
            .and_then(Value::as_str)
            .unwrap_or("")
            .is_empty()
        {
            h.insert("path".into(), json!("/"));
        }
        set_default(h, "scheme", json!("HTTP"));
    }
}

/// `Always` for `:latest` or an untagged, undigested image; `IfNotPresent` otherwise.
pub fn default_pull_policy(image: &str) -> &'static str {
    if image.is_empty() {
        return "IfNotPresent";
    }
    let (name, digest) = match image.split_once('@') {
        Some((n, d)) => (n, Some(d)),
        None => (image, None),
    };
    let last = name.rsplit('/').next().unwrap_or(name);
    let tag = last.split_once(':').map(|(_, t)| t);
    match (tag, digest) {
        (Some("latest"), _) | (None, None) => "Always",
        _ => "IfNotPresent",
    }
}

const VOLUME_SOURCES: &[&str] = &[
    "hostPath",
    "emptyDir",
    "gcePersistentDisk",
    "awsElasticBlockStore",
    "gitRepo",
    "secret",
    "nfs",
    "iscsi",
    "glusterfs",
    "persistentVolumeClaim",
    "rbd",
    "flexVolume",
    "cinder",
    "cephfs",
    "flocker",
    "downwardAPI",
    "fc",
    "azureFile",
    "configMap",
    "vsphereVolume",
    "quobyte",
    "azureDisk",
    "photonPersistentDisk",
    "projected",
    "portworxVolume",
    "scaleIO",
    "storageos",
    "csi",
    "ephemeral",
    "image",
];

fn volume(v: &mut Value) {
    let Some(m) = v.as_object_mut() else {
        return;
    };
    let has_source = VOLUME_SOURCES
        .iter()
        .any(|s| m.get(*s).is_some_and(|x| !x.is_null()));
    if !has_source {
        m.insert("emptyDir".into(), json!({}));
    }
    for src in ["secret", "configMap", "downwardAPI", "projected"] {
        if let Some(s) = m.get_mut(src).and_then(Value::as_object_mut) {
            set_default(s, "defaultMode", json!(420));
        }
    }
    if let Some(h) = m.get_mut("hostPath").and_then(Value::as_object_mut) {
        set_default(h, "type", json!(""));
    }
    if let Some(items) = m
        .get_mut("downwardAPI")
        .and_then(|d| d.get_mut("items"))
        .and_then(Value::as_array_mut)
    {
        for item in items {
            if let Some(f) = item.get_mut("fieldRef").and_then(Value::as_object_mut) {
                set_default(f, "apiVersion", json!("v1"));
            }
        }
    }
}

// ---- workloads ----

fn replication_controller(obj: &mut Value) {
    let template_labels = obj
        .pointer("/spec/template/metadata/labels")
        .filter(|l| l.as_object().is_some_and(|m| !m.is_empty()))
        .cloned();
    if let Some(labels) = template_labels {
        if let Some(spec) = ensure_object(obj, &["spec"]) {
            if spec
                .get("selector")
                .and_then(Value::as_object)
                .is_none_or(Map::is_empty)
            {
                spec.insert("selector".into(), labels.clone());
            }
        }
        if let Some(meta) = ensure_object(obj, &["metadata"]) {
            if meta
                .get("labels")
                .and_then(Value::as_object)
                .is_none_or(Map::is_empty)
            {
                meta.insert("labels".into(), labels);
            }
        }
    }
    if let Some(spec) = ensure_object(obj, &["spec"]) {
        set_default(spec, "replicas", json!(1));
    }
    if obj.pointer("/spec/template").is_some_and(Value::is_object) {
        pod_template(obj, &["spec", "template"]);
    }
}

fn deployment(obj: &mut Value) {
    if let Some(spec) = ensure_object(obj, &["spec"]) {
        set_default(spec, "replicas", json!(1));
        set_default(spec, "revisionHistoryLimit", json!(10));
        set_default(spec, "progressDeadlineSeconds", json!(600));
    }
    if let Some(strategy) = ensure_object(obj, &["spec", "strategy"]) {
        if strategy
            .get("type")
            .and_then(Value::as_str)
            .unwrap_or("")
            .is_empty()
        {
            strategy.insert("type".into(), json!("RollingUpdate"));
        }
        if strategy.get("type").and_then(Value::as_str) == Some("RollingUpdate") {
            set_default(strategy, "rollingUpdate", json!({}));
            if let Some(ru) = strategy
                .get_mut("rollingUpdate")
                .and_then(Value::as_object_mut)
            {
                set_default(ru, "maxUnavailable", json!("25%"));
                set_default(ru, "maxSurge", json!("25%"));
            }
        }
    }
    pod_template(obj, &["spec", "template"]);
}

fn daemon_set(obj: &mut Value) {
    if let Some(spec) = ensure_object(obj, &["spec"]) {
        set_default(spec, "revisionHistoryLimit", json!(10));
    }
    if let Some(strategy) = ensure_object(obj, &["spec", "updateStrategy"]) {
        if strategy
            .get("type")
            .and_then(Value::as_str)
            .unwrap_or("")
            .is_empty()
        {
            strategy.insert("type".into(), json!("RollingUpdate"));
        }
        if strategy.get("type").and_then(Value::as_str) == Some("RollingUpdate") {
            set_default(strategy, "rollingUpdate", json!({}));
            if let Some(ru) = strategy
                .get_mut("rollingUpdate")
                .and_then(Value::as_object_mut)
            {
                set_default(ru, "maxUnavailable", json!(1));
                set_default(ru, "maxSurge", json!(0));
            }
        }
    }
    pod_template(obj, &["spec", "template"]);
}

fn stateful_set(obj: &mut Value) {
    if let Some(spec) = ensure_object(obj, &["spec"]) {
        set_default(spec, "replicas", json!(1));
        set_default(spec, "revisionHistoryLimit", json!(10));
        if spec
            .get("podManagementPolicy")
            .and_then(Value::as_str)
            .unwrap_or("")
            .is_empty()
        {
            spec.insert("podManagementPolicy".into(), json!("OrderedReady"));
        }
    }
    if let Some(strategy) = ensure_object(obj, &["spec", "updateStrategy"]) {
        if strategy
            .get("type")
            .and_then(Value::as_str)
            .unwrap_or("")
            .is_empty()
        {
            strategy.insert("type".into(), json!("RollingUpdate"));
        }
        if strategy.get("type").and_then(Value::as_str) == Some("RollingUpdate") {
            set_default(strategy, "rollingUpdate", json!({}));
            if let Some(ru) = strategy
                .get_mut("rollingUpdate")
                .and_then(Value::as_object_mut)
            {
                set_default(ru, "partition", json!(0));
            }
        }
    }
    if let Some(policy) = ensure_object(obj, &["spec", "persistentVolumeClaimRetentionPolicy"]) {
        set_default(policy, "whenDeleted", json!("Retain"));
        set_default(policy, "whenScaled", json!("Retain"));
    }
    for pvc in array_mut(obj, &["spec", "volumeClaimTemplates"])
        .into_iter()
        .flatten()
    {
        persistent_volume_claim(pvc);
    }
    pod_template(obj, &["spec", "template"]);
}

/// Job labels and selector generated from the uid, as upstream's job strategy does on create.
pub const JOB_CONTROLLER_UID_LABEL: &str = "batch.kubernetes.io/controller-uid";
/// The job-name label upstream adds to a job's pod template.
pub const JOB_NAME_LABEL: &str = "batch.kubernetes.io/job-name";

fn job(obj: &mut Value) {
    if let Some(spec) = ensure_object(obj, &["spec"]) {
        job_spec(spec);
    }
    let copy_labels = obj
        .pointer("/metadata/labels")
        .and_then(Value::as_object)
        .is_none_or(Map::is_empty)
        && obj
            .pointer("/spec/template/metadata/labels")
            .is_some_and(Value::is_object);
    generate_job_selector(obj);
    if copy_labels {
        if let Some(labels) = obj.pointer("/spec/template/metadata/labels").cloned() {
            if let Some(meta) = ensure_object(obj, &["metadata"]) {
                meta.insert("labels".into(), labels);
            }
        }
    }
    pod_template(obj, &["spec", "template"]);
}

fn job_spec(spec: &mut Map<String, Value>) {
    let unset = |spec: &Map<String, Value>, k: &str| spec.get(k).is_none_or(Value::is_null);
    if unset(spec, "completions") && unset(spec, "parallelism") {
        spec.insert("completions".into(), json!(1));
        spec.insert("parallelism".into(), json!(1));
    }
    set_default(spec, "parallelism", json!(1));
    let per_index = !unset(spec, "backoffLimitPerIndex");
    set_default(
        spec,
        "backoffLimit",
        json!(if per_index { i32::MAX as i64 } else { 6 }),
    );
    set_default(spec, "completionMode", json!("NonIndexed"));
    set_default(spec, "suspend", json!(false));
    let failure_policy = !unset(spec, "podFailurePolicy");
    set_default(
        spec,
        "podReplacementPolicy",
        json!(if failure_policy {
            "Failed"
        } else {
            "TerminatingOrFailed"
        }),
    );
}

/// Adds the uid/job-name template labels and the `controller-uid` selector a job without
/// `manualSelector: true` gets on create (needs `metadata.uid`; no-op without it).
pub fn generate_job_selector(obj: &mut Value) {
    if obj.pointer("/spec/manualSelector").and_then(Value::as_bool) == Some(true) {
        return;
    }
    let uid = obj
        .pointer("/metadata/uid")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    let name = obj
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    if uid.is_empty() || obj.pointer("/spec/selector").is_some_and(|s| !s.is_null()) {
        return;
    }
    if let Some(labels) = ensure_object(obj, &["spec", "template", "metadata", "labels"]) {
        for (k, v) in [
            ("job-name", &name),
            (JOB_NAME_LABEL, &name),
            ("controller-uid", &uid),
            (JOB_CONTROLLER_UID_LABEL, &uid),
        ] {
            labels.entry(k).or_insert_with(|| json!(v));
        }
    }
    if let Some(match_labels) = ensure_object(obj, &["spec", "selector", "matchLabels"]) {
        match_labels
            .entry(JOB_CONTROLLER_UID_LABEL)
            .or_insert_with(|| json!(uid));
    }
}

fn cron_job(obj: &mut Value) {
    if let Some(spec) = ensure_object(obj, &["spec"]) {
        set_default(spec, "concurrencyPolicy", json!("Allow"));
        set_default(spec, "suspend", json!(false));
        set_default(spec, "successfulJobsHistoryLimit", json!(3));
        set_default(spec, "failedJobsHistoryLimit", json!(1));
    }
    pod_template(obj, &["spec", "jobTemplate", "spec", "template"]);
}

// ---- core, other ----

fn ports_protocol(obj: &mut Value, path: &[&str]) {
    for p in array_mut(obj, path).into_iter().flatten() {
        if let Some(p) = p.as_object_mut() {
            set_default(p, "protocol", json!("TCP"));
        }
    }
}

fn service(obj: &mut Value) {
    let Some(spec) = ensure_object(obj, &["spec"]) else {
        return;
    };
    if spec
        .get("type")
        .and_then(Value::as_str)
        .unwrap_or("")
        .is_empty()
    {
        spec.insert("type".into(), json!("ClusterIP"));
    }
    let svc_type = spec
        .get("type")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    if spec
        .get("sessionAffinity")
        .and_then(Value::as_str)
        .unwrap_or("")
        .is_empty()
    {
        spec.insert("sessionAffinity".into(), json!("None"));
    }
    match spec.get("sessionAffinity").and_then(Value::as_str) {
        Some("None") => {
            spec.remove("sessionAffinityConfig");
        }
        Some("ClientIP") => {
            if let Some(cfg) = ensure_object_in(spec, &["sessionAffinityConfig", "clientIP"]) {
                set_default(cfg, "timeoutSeconds", json!(10800));
            }
        }
        _ => {}
    }
    for port in spec
        .get_mut("ports")
        .and_then(Value::as_array_mut)
        .into_iter()
        .flatten()
    {
        let Some(p) = port.as_object_mut() else {
            continue;
        };
        set_default(p, "protocol", json!("TCP"));
        let target_unset = match p.get("targetPort") {
            None | Some(Value::Null) => true,
            Some(Value::Number(n)) => n.as_i64() == Some(0),
            Some(Value::String(s)) => s.is_empty(),
            _ => false,
        };
        if target_unset {
            if let Some(port) = p.get("port").cloned() {
                p.insert("targetPort".into(), port);
            }
        }
    }
    let has_external_ips = spec
        .get("externalIPs")
        .and_then(Value::as_array)
        .is_some_and(|a| !a.is_empty());
    let externally_accessible = svc_type == "LoadBalancer"
        || svc_type == "NodePort"
        || (svc_type == "ClusterIP" && has_external_ips);
    if externally_accessible
        && spec
            .get("externalTrafficPolicy")
            .and_then(Value::as_str)
            .unwrap_or("")
            .is_empty()
    {
        spec.insert("externalTrafficPolicy".into(), json!("Cluster"));
    }
    if matches!(svc_type.as_str(), "ClusterIP" | "NodePort" | "LoadBalancer") {
        set_default(spec, "internalTrafficPolicy", json!("Cluster"));
    }
    if svc_type == "LoadBalancer" {
        set_default(spec, "allocateLoadBalancerNodePorts", json!(true));
    }
    if svc_type == "ExternalName" {
        return;
    }
    // clusterIP and clusterIPs mirror each other.
    let ip = spec
        .get("clusterIP")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    let first = spec
        .get("clusterIPs")
        .and_then(Value::as_array)
        .and_then(|a| a.first())
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    if !ip.is_empty() && first.is_empty() {
        spec.insert("clusterIPs".into(), json!([ip]));
    } else if ip.is_empty() && !first.is_empty() {
        spec.insert("clusterIP".into(), json!(first));
    }
    let family = if ip.contains(':') || first.contains(':') {
        "IPv6"
    } else {
        "IPv4"
    };
    set_default(spec, "ipFamilyPolicy", json!("SingleStack"));
    let families_unset = spec
        .get("ipFamilies")
        .is_none_or(|f| f.is_null() || f.as_array().is_some_and(Vec::is_empty));
    if families_unset {
        spec.insert("ipFamilies".into(), json!([family]));
    }
}

fn ensure_object_in<'a>(
    map: &'a mut Map<String, Value>,
    path: &[&str],
) -> Option<&'a mut Map<String, Value>> {
    let (first, rest) = path.split_first()?;
    let entry = map.entry(first.to_string()).or_insert(Value::Null);
    if entry.is_null() {
        *entry = json!({});
    }
    ensure_object(entry, rest)
}

fn secret(obj: &mut Value) {
    let Some(m) = obj.as_object_mut() else {
        return;
    };
    if m.get("type")
        .and_then(Value::as_str)
        .unwrap_or("")
        .is_empty()
    {
        m.insert("type".into(), json!("Opaque"));
    }
    // stringData is write-only: it is folded into data (base64) and dropped.
    if let Some(Value::Object(string_data)) = m.remove("stringData") {
        let data = m.entry("data").or_insert_with(|| json!({}));
        if data.is_null() {
            *data = json!({});
        }
        if let Some(data) = data.as_object_mut() {
            for (k, v) in string_data {
                if let Some(s) = v.as_str() {
                    data.insert(k, json!(base64_encode(s.as_bytes())));
                }
            }
        }
    }
}

fn base64_encode(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

fn namespace(obj: &mut Value) {
    let name = obj
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    let deleting = obj
        .pointer("/metadata/deletionTimestamp")
        .is_some_and(|v| !v.is_null());
    let creating = obj
        .pointer("/metadata/resourceVersion")
        .is_none_or(|v| v.is_null() || v == "");
    if !name.is_empty() {
        if let Some(labels) = ensure_object(obj, &["metadata", "labels"]) {
            labels.insert("kubernetes.io/metadata.name".into(), json!(name));
        }
    }
    if !deleting {
        if let Some(spec) = ensure_object(obj, &["spec"]) {
            match spec.get_mut("finalizers") {
                None | Some(Value::Null) => {
                    spec.insert("finalizers".into(), json!(["kubernetes"]));
                }
                Some(Value::Array(list)) if creating && !list.iter().any(|f| f == "kubernetes") => {
                    list.push(json!("kubernetes"));
                }
                _ => {}
            }
        }
    }
    if let Some(status) = ensure_object(obj, &["status"]) {
        if status
            .get("phase")
            .and_then(Value::as_str)
            .unwrap_or("")
            .is_empty()
        {
            status.insert("phase".into(), json!("Active"));
        }
    }
}

fn persistent_volume_claim(obj: &mut Value) {
    if let Some(spec) = ensure_object(obj, &["spec"]) {
        set_default(spec, "volumeMode", json!("Filesystem"));
    }
    if let Some(status) = ensure_object(obj, &["status"]) {
        if status
            .get("phase")
            .and_then(Value::as_str)
            .unwrap_or("")
            .is_empty()
        {
            status.insert("phase".into(), json!("Pending"));
        }
    }
}

fn persistent_volume(obj: &mut Value) {
    if let Some(spec) = ensure_object(obj, &["spec"]) {
        if spec
            .get("persistentVolumeReclaimPolicy")
            .and_then(Value::as_str)
            .unwrap_or("")
            .is_empty()
        {
            spec.insert("persistentVolumeReclaimPolicy".into(), json!("Retain"));
        }
        set_default(spec, "volumeMode", json!("Filesystem"));
        if let Some(h) = spec.get_mut("hostPath").and_then(Value::as_object_mut) {
            set_default(h, "type", json!(""));
        }
    }
    if let Some(status) = ensure_object(obj, &["status"]) {
        if status
            .get("phase")
            .and_then(Value::as_str)
            .unwrap_or("")
            .is_empty()
        {
            status.insert("phase".into(), json!("Pending"));
        }
    }
}

fn node(obj: &mut Value) {
    let capacity = obj
        .pointer("/status/capacity")
        .filter(|c| c.is_object())
        .cloned();
    if let (Some(capacity), Some(status)) = (capacity, object_mut(obj, &["status"])) {
        set_default(status, "allocatable", capacity);
    }
}

fn network_policy(obj: &mut Value) {
    let Some(spec) = ensure_object(obj, &["spec"]) else {
        return;
    };
    set_default(spec, "podSelector", json!({}));
    let types_unset = spec
        .get("policyTypes")
        .is_none_or(|t| t.is_null() || t.as_array().is_some_and(Vec::is_empty));
    if types_unset {
        let has_egress = spec
            .get("egress")
            .and_then(Value::as_array)
            .is_some_and(|e| !e.is_empty());
        let types = if has_egress {
            json!(["Ingress", "Egress"])
        } else {
            json!(["Ingress"])
        };
        spec.insert("policyTypes".into(), types);
    }
    for direction in ["ingress", "egress"] {
        for rule in spec
            .get_mut(direction)
            .and_then(Value::as_array_mut)
            .into_iter()
            .flatten()
        {
            ports_protocol(rule, &["ports"]);
        }
    }
}

fn role_binding(obj: &mut Value) {
    if let Some(role_ref) = object_mut(obj, &["roleRef"]) {
        if role_ref
            .get("apiGroup")
            .and_then(Value::as_str)
            .unwrap_or("")
            .is_empty()
        {
            role_ref.insert("apiGroup".into(), json!("rbac.authorization.k8s.io"));
        }
    }
    for s in array_mut(obj, &["subjects"]).into_iter().flatten() {
        let Some(s) = s.as_object_mut() else { continue };
        if !s
            .get("apiGroup")
            .and_then(Value::as_str)
            .unwrap_or("")
            .is_empty()
        {
            continue;
        }
        match s.get("kind").and_then(Value::as_str) {
            Some("User" | "Group") => {
                s.insert("apiGroup".into(), json!("rbac.authorization.k8s.io"));
            }
            Some("ServiceAccount") => {
                s.insert("apiGroup".into(), json!(""));
            }
            _ => {}
        }
    }
}

fn hpa(obj: &mut Value) {
    let Some(spec) = ensure_object(obj, &["spec"]) else {
        return;
    };
    set_default(spec, "minReplicas", json!(1));
    let metrics_unset = spec
        .get("metrics")
        .is_none_or(|m| m.is_null() || m.as_array().is_some_and(Vec::is_empty));
    if metrics_unset {
        spec.insert(
            "metrics".into(),
            json!([{"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 80}}}]),
        );
    }
    let Some(behavior) = spec.get_mut("behavior").and_then(Value::as_object_mut) else {
        return;
    };
    let rules = [
        (
            "scaleUp",
            0,
            json!([{"type": "Pods", "value": 4, "periodSeconds": 15}, {"type": "Percent", "value": 100, "periodSeconds": 15}]),
        ),
        (
            "scaleDown",
            300,
            json!([{"type": "Percent", "value": 100, "periodSeconds": 15}]),
        ),
    ];
    for (name, window, policies) in rules {
        set_default(behavior, name, json!({}));
        if let Some(r) = behavior.get_mut(name).and_then(Value::as_object_mut) {
            set_default(r, "stabilizationWindowSeconds", json!(window));
            set_default(r, "selectPolicy", json!("Max"));
            set_default(r, "policies", policies);
        }
    }
}

fn crd(obj: &mut Value) {
    if let Some(names) = ensure_object(obj, &["spec", "names"]) {
        let kind = names
            .get("kind")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        if names
            .get("singular")
            .and_then(Value::as_str)
            .unwrap_or("")
            .is_empty()
        {
            names.insert("singular".into(), json!(kind.to_lowercase()));
        }
        if names
            .get("listKind")
            .and_then(Value::as_str)
            .unwrap_or("")
            .is_empty()
            && !kind.is_empty()
        {
            names.insert("listKind".into(), json!(format!("{kind}List")));
        }
    }
    if let Some(spec) = ensure_object(obj, &["spec"]) {
        set_default(spec, "conversion", json!({"strategy": "None"}));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::{builtin, find};

    fn defaulted(group: &str, plural: &str, mut obj: Value) -> Value {
        let rt = builtin()
            .iter()
            .find(|r| r.group == group && r.plural == plural)
            .unwrap();
        apply_defaults(rt, &mut obj);
        let once = obj.clone();
        apply_defaults(rt, &mut obj);
        assert_eq!(obj, once, "defaults of {plural} are idempotent");
        obj
    }

    #[test]
    fn pod_defaults() {
        let p = defaulted(
            "",
            "pods",
            json!({
                "metadata": {"name": "p", "namespace": "d"},
                "spec": {"containers": [
                    {"name": "a", "image": "nginx", "ports": [{"containerPort": 80}],
                     "resources": {"limits": {"cpu": "500m", "memory": "64Mi"}},
                     "readinessProbe": {"httpGet": {"port": 80}}},
                    {"name": "b", "image": "busybox:1.36"}
                ], "volumes": [{"name": "scratch"}, {"name": "cfg", "configMap": {"name": "c"}}]}
            }),
        );
        let spec = &p["spec"];
        assert_eq!(spec["restartPolicy"], "Always");
        assert_eq!(spec["dnsPolicy"], "ClusterFirst");
        assert_eq!(spec["terminationGracePeriodSeconds"], 30);
        assert_eq!(spec["schedulerName"], "default-scheduler");
        assert_eq!(spec["securityContext"], json!({}));
        assert_eq!(spec["enableServiceLinks"], true);
        assert_eq!(spec["serviceAccountName"], "default");
        assert_eq!(spec["serviceAccount"], "default");
        assert_eq!(spec["priority"], 0);
        assert_eq!(spec["tolerations"].as_array().unwrap().len(), 2);
        let a = &spec["containers"][0];
        assert_eq!(a["imagePullPolicy"], "Always");
        assert_eq!(a["terminationMessagePath"], "/dev/termination-log");
        assert_eq!(a["terminationMessagePolicy"], "File");
        assert_eq!(a["ports"][0]["protocol"], "TCP");
        assert_eq!(
            a["resources"]["requests"],
            json!({"cpu": "500m", "memory": "64Mi"})
        );
        assert_eq!(a["readinessProbe"]["periodSeconds"], 10);
        assert_eq!(a["readinessProbe"]["httpGet"]["path"], "/");
        assert_eq!(a["readinessProbe"]["httpGet"]["scheme"], "HTTP");
        let b = &spec["containers"][1];
        assert_eq!(b["imagePullPolicy"], "IfNotPresent");
        assert_eq!(b["resources"], json!({}));
        assert_eq!(spec["volumes"][0]["emptyDir"], json!({}));
        assert_eq!(spec["volumes"][1]["configMap"]["defaultMode"], 420);
        assert_eq!(p["status"]["phase"], "Pending");
        assert_eq!(p["status"]["qosClass"], "Burstable");
    }

    #[test]
    fn pull_policy_and_qos() {
        assert_eq!(default_pull_policy("nginx"), "Always");
        assert_eq!(default_pull_policy("nginx:latest"), "Always");
        assert_eq!(default_pull_policy("registry:5000/nginx"), "Always");
        assert_eq!(
            default_pull_policy("registry:5000/nginx:1.2"),
            "IfNotPresent"
        );
        assert_eq!(default_pull_policy("nginx@sha256:abc"), "IfNotPresent");
        assert_eq!(default_pull_policy(""), "IfNotPresent");
        let spec = |res: Value| json!({"containers": [{"resources": res}]});
        assert_eq!(qos_class(&spec(json!({}))), "BestEffort");
        assert_eq!(
            qos_class(&spec(
                json!({"limits": {"cpu": "1", "memory": "1Gi"}, "requests": {"cpu": "1000m", "memory": "1Gi"}})
            )),
            "Guaranteed"
        );
        assert_eq!(
            qos_class(&spec(json!({"requests": {"cpu": "1"}}))),
            "Burstable"
        );
        assert_eq!(parse_quantity(&json!("1.5Gi")), Some(1.5 * 1024f64.powi(3)));
        assert_eq!(parse_quantity(&json!("2e3")), Some(2000.0));
        assert_eq!(parse_quantity(&json!("x")), None);
    }

    #[test]
    fn workload_defaults() {
        let d = defaulted(
            "apps",
            "deployments",
            json!({"metadata": {"name": "d"}, "spec": {
            "selector": {"matchLabels": {"a": "b"}},
            "template": {"metadata": {"labels": {"a": "b"}}, "spec": {"containers": [{"name": "c", "image": "x:1"}]}}}}),
        );
        assert_eq!(d["spec"]["replicas"], 1);
        assert_eq!(d["spec"]["revisionHistoryLimit"], 10);
        assert_eq!(d["spec"]["progressDeadlineSeconds"], 600);
        assert_eq!(
            d["spec"]["strategy"],
            json!({"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": "25%", "maxSurge": "25%"}})
        );
        let t = &d["spec"]["template"]["spec"];
        assert_eq!(t["restartPolicy"], "Always");
        assert!(
            t.get("enableServiceLinks").is_none(),
            "pod-only defaults stay off templates"
        );
        assert!(t.get("serviceAccountName").is_none());

        let r = defaulted(
            "apps",
            "deployments",
            json!({"spec": {"strategy": {"type": "Recreate"}}}),
        );
        assert_eq!(r["spec"]["strategy"], json!({"type": "Recreate"}));

        let ds = defaulted("apps", "daemonsets", json!({"spec": {}}));
        assert_eq!(
            ds["spec"]["updateStrategy"],
            json!({"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1, "maxSurge": 0}})
        );
        let sts = defaulted(
            "apps",
            "statefulsets",
            json!({"spec": {"volumeClaimTemplates": [{"metadata": {"name": "data"}, "spec": {}}]}}),
        );
        assert_eq!(sts["spec"]["podManagementPolicy"], "OrderedReady");
        assert_eq!(
            sts["spec"]["updateStrategy"],
            json!({"type": "RollingUpdate", "rollingUpdate": {"partition": 0}})
        );
        assert_eq!(
            sts["spec"]["persistentVolumeClaimRetentionPolicy"],
            json!({"whenDeleted": "Retain", "whenScaled": "Retain"})
        );
        assert_eq!(
            sts["spec"]["volumeClaimTemplates"][0]["spec"]["volumeMode"],
            "Filesystem"
        );
        let rs = defaulted("apps", "replicasets", json!({}));
        assert_eq!(rs["spec"]["replicas"], 1);
    }

    #[test]
    fn job_defaults_and_selector() {
        let j = defaulted(
            "batch",
            "jobs",
            json!({
                "metadata": {"name": "pi", "uid": "1234"},
                "spec": {"template": {"metadata": {"labels": {"app": "pi"}}, "spec": {"containers": [{"name": "c", "image": "perl"}], "restartPolicy": "Never"}}}
            }),
        );
        let spec = &j["spec"];
        assert_eq!(spec["completions"], 1);
        assert_eq!(spec["parallelism"], 1);
        assert_eq!(spec["backoffLimit"], 6);
        assert_eq!(spec["completionMode"], "NonIndexed");
        assert_eq!(spec["suspend"], false);
        assert_eq!(spec["podReplacementPolicy"], "TerminatingOrFailed");
        assert_eq!(
            spec["selector"],
            json!({"matchLabels": {"batch.kubernetes.io/controller-uid": "1234"}})
        );
        assert_eq!(
            spec["template"]["metadata"]["labels"]["batch.kubernetes.io/job-name"],
            "pi"
        );
        assert_eq!(
            spec["template"]["metadata"]["labels"]["controller-uid"],
            "1234"
        );
        assert_eq!(j["metadata"]["labels"]["app"], "pi");
        assert_eq!(j["metadata"]["labels"]["job-name"], "pi");

        let parallel = defaulted("batch", "jobs", json!({"spec": {"parallelism": 3}}));
        assert!(parallel["spec"].get("completions").is_none());
        assert!(
            parallel["spec"].get("selector").is_none(),
            "no uid, no selector"
        );
        let manual = defaulted(
            "batch",
            "jobs",
            json!({"metadata": {"uid": "u"}, "spec": {"manualSelector": true}}),
        );
        assert!(manual["spec"].get("selector").is_none());

        let cj = defaulted(
            "batch",
            "cronjobs",
            json!({"spec": {"jobTemplate": {"spec": {"template": {"spec": {"containers": [{"name": "c", "image": "x"}]}}}}}}),
        );
        assert_eq!(cj["spec"]["concurrencyPolicy"], "Allow");
        assert_eq!(cj["spec"]["successfulJobsHistoryLimit"], 3);
        assert_eq!(cj["spec"]["failedJobsHistoryLimit"], 1);
        assert_eq!(cj["spec"]["suspend"], false);
        assert_eq!(
            cj["spec"]["jobTemplate"]["spec"]["template"]["spec"]["dnsPolicy"],
            "ClusterFirst"
        );
        assert!(cj["spec"]["jobTemplate"]["spec"]
            .get("backoffLimit")
            .is_none());
    }

    #[test]
    fn service_defaults() {
        let s = defaulted(
            "",
            "services",
            json!({"spec": {"ports": [{"port": 80}, {"port": 53, "protocol": "UDP", "targetPort": "dns"}], "clusterIP": "10.96.0.10"}}),
        );
        let spec = &s["spec"];
        assert_eq!(spec["type"], "ClusterIP");
        assert_eq!(spec["sessionAffinity"], "None");
        assert_eq!(
            spec["ports"][0],
            json!({"port": 80, "protocol": "TCP", "targetPort": 80})
        );
        assert_eq!(spec["ports"][1]["targetPort"], "dns");
        assert_eq!(spec["internalTrafficPolicy"], "Cluster");
        assert_eq!(spec["ipFamilyPolicy"], "SingleStack");
        assert_eq!(spec["ipFamilies"], json!(["IPv4"]));
        assert_eq!(spec["clusterIPs"], json!(["10.96.0.10"]));
        assert!(spec.get("externalTrafficPolicy").is_none());

        let lb = defaulted(
            "",
            "services",
            json!({"spec": {"type": "LoadBalancer", "ports": [{"port": 80}]}}),
        );
        assert_eq!(lb["spec"]["externalTrafficPolicy"], "Cluster");
        assert_eq!(lb["spec"]["allocateLoadBalancerNodePorts"], true);
        let ext = defaulted(
            "",
            "services",
            json!({"spec": {"type": "ExternalName", "externalName": "x.com"}}),
        );
        assert!(ext["spec"].get("ipFamilies").is_none());
        assert!(ext["spec"].get("internalTrafficPolicy").is_none());

        let svcs = find("", "v1", "services").unwrap();
        let old = json!({"spec": {"clusterIP": "10.96.0.9", "clusterIPs": ["10.96.0.9"], "type": "NodePort",
            "ipFamilies": ["IPv4"], "ports": [{"port": 80, "protocol": "TCP", "nodePort": 30080}]}});
        let mut new = json!({"spec": {"type": "NodePort", "ports": [{"port": 80}]}});
        prepare_for_update(svcs, &mut new, &old);
        assert_eq!(new["spec"]["clusterIP"], "10.96.0.9");
        assert_eq!(new["spec"]["clusterIPs"], json!(["10.96.0.9"]));
        assert_eq!(new["spec"]["ports"][0]["nodePort"], 30080);
    }

    #[test]
    fn other_defaults() {
        let s = defaulted(
            "",
            "secrets",
            json!({"stringData": {"user": "admin", "x": ""}, "data": {"a": "YQ=="}}),
        );
        assert_eq!(s["type"], "Opaque");
        assert_eq!(s["data"], json!({"a": "YQ==", "user": "YWRtaW4=", "x": ""}));
        assert!(s.get("stringData").is_none());
        assert_eq!(base64_encode(b"ab"), "YWI=");
        assert_eq!(base64_encode(b"abc"), "YWJj");

        let ns = defaulted(
            "",
            "namespaces",
            json!({"metadata": {"name": "team", "namespace": "junk"}}),
        );
        assert_eq!(ns["spec"]["finalizers"], json!(["kubernetes"]));
        assert_eq!(ns["status"]["phase"], "Active");
        assert_eq!(
            ns["metadata"]["labels"]["kubernetes.io/metadata.name"],
            "team"
        );
        assert!(ns["metadata"].get("namespace").is_none());
        let finalized = defaulted(
            "",
            "namespaces",
            json!({
            "metadata": {"name": "t", "resourceVersion": "5", "deletionTimestamp": "2024-01-01T00:00:00Z"},
            "spec": {}, "status": {"phase": "Terminating"}}),
        );
        assert!(finalized["spec"].get("finalizers").is_none());
        assert_eq!(finalized["status"]["phase"], "Terminating");

        let pvc = defaulted("", "persistentvolumeclaims", json!({"spec": {}}));
        assert_eq!(pvc["spec"]["volumeMode"], "Filesystem");
        assert_eq!(pvc["status"]["phase"], "Pending");
        let rb = defaulted(
            "rbac.authorization.k8s.io",
            "rolebindings",
            json!({
            "roleRef": {"kind": "Role", "name": "r"},
            "subjects": [{"kind": "User", "name": "u"}, {"kind": "ServiceAccount", "name": "s"}]}),
        );
        assert_eq!(rb["roleRef"]["apiGroup"], "rbac.authorization.k8s.io");
        assert_eq!(rb["subjects"][0]["apiGroup"], "rbac.authorization.k8s.io");
        assert_eq!(rb["subjects"][1]["apiGroup"], "");
        let np = defaulted(
            "networking.k8s.io",
            "networkpolicies",
            json!({"spec": {"egress": [{"ports": [{"port": 53}]}]}}),
        );
        assert_eq!(np["spec"]["policyTypes"], json!(["Ingress", "Egress"]));
        assert_eq!(np["spec"]["egress"][0]["ports"][0]["protocol"], "TCP");
        let sc = defaulted(
            "storage.k8s.io",
            "storageclasses",
            json!({"provisioner": "p"}),
        );
        assert_eq!(sc["reclaimPolicy"], "Delete");
        assert_eq!(sc["volumeBindingMode"], "Immediate");
        let hpa = defaulted(
            "autoscaling",
            "horizontalpodautoscalers",
            json!({"spec": {"behavior": {"scaleDown": {"selectPolicy": "Min"}}}}),
        );
        assert_eq!(hpa["spec"]["minReplicas"], 1);
        assert_eq!(
            hpa["spec"]["metrics"][0]["resource"]["target"]["averageUtilization"],
            80
        );
        assert_eq!(hpa["spec"]["behavior"]["scaleDown"]["selectPolicy"], "Min");
        assert_eq!(
            hpa["spec"]["behavior"]["scaleDown"]["stabilizationWindowSeconds"],
            300
        );
        assert_eq!(
            hpa["spec"]["behavior"]["scaleUp"]["policies"]
                .as_array()
                .unwrap()
                .len(),
            2
        );
        let crd = defaulted(
            "apiextensions.k8s.io",
            "customresourcedefinitions",
            json!({"spec": {"names": {"kind": "Thing", "plural": "things"}}}),
        );
        assert_eq!(crd["spec"]["names"]["singular"], "thing");
        assert_eq!(crd["spec"]["names"]["listKind"], "ThingList");
        assert_eq!(crd["spec"]["conversion"], json!({"strategy": "None"}));
        let rc = defaulted(
            "",
            "replicationcontrollers",
            json!({"spec": {"template": {"metadata": {"labels": {"a": "b"}}, "spec": {"containers": []}}}}),
        );
        assert_eq!(rc["spec"]["selector"], json!({"a": "b"}));
        assert_eq!(rc["metadata"]["labels"], json!({"a": "b"}));
        assert_eq!(rc["spec"]["replicas"], 1);
        let node = defaulted("", "nodes", json!({"status": {"capacity": {"cpu": "4"}}}));
        assert_eq!(node["status"]["allocatable"], json!({"cpu": "4"}));
    }

    #[test]
    fn never_panics_and_is_idempotent_on_junk() {
        let junk = [
            json!(null),
            json!(3),
            json!({"metadata": "x", "spec": 5}),
            json!({"spec": {"containers": 5, "template": [], "ports": "x", "strategy": 1, "selector": null}}),
            json!({"spec": {"containers": [1, "x", {"ports": 3, "env": [null]}], "volumes": [3, {"secret": 1}]}}),
            json!({"spec": {"template": {"spec": {"containers": [{"resources": {"limits": 3}}]}}}, "stringData": 4}),
        ];
        for rt in builtin() {
            for obj in &junk {
                let mut v = obj.clone();
                apply_defaults(rt, &mut v);
                let once = v.clone();
                apply_defaults(rt, &mut v);
                assert_eq!(v, once, "{}", rt.plural);
                let mut u = obj.clone();
                prepare_for_update(rt, &mut u, obj);
            }
        }
    }
}
