//! Pod specs and pod templates (upstream `ValidatePodSpec`, `ValidatePodTemplateSpec`).

use std::collections::HashSet;

use serde_json::Value;

use super::{child, index, q, Errs};
use crate::json as j;
use crate::syntax;

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

/// `ValidatePodTemplateSpec` at `path` (`spec.template`): template labels and annotations, then
/// the pod spec at `path.spec`.
pub(crate) fn validate_pod_template(template: Option<&Value>, path: &str, errs: &mut Errs) {
    let template = template.unwrap_or(&Value::Null);
    let meta = child(path, "metadata");
    super::meta::validate_labels(
        j::get(template, &["metadata", "labels"]),
        &child(&meta, "labels"),
        errs,
    );
    super::meta::validate_annotations(
        j::get(template, &["metadata", "annotations"]),
        &child(&meta, "annotations"),
        errs,
    );
    validate_pod_spec(
        j::get(template, &["spec"]).unwrap_or(&Value::Null),
        &child(path, "spec"),
        errs,
    );
}

/// `ValidatePodSpec` at `path` (`spec` of a Pod, `spec.template.spec` of a workload).
pub(crate) fn validate_pod_spec(spec: &Value, path: &str, errs: &mut Errs) {
    let volumes = validate_volumes(j::array(spec, &["volumes"]), &child(path, "volumes"), errs);

    let containers = j::array(spec, &["containers"]);
    let init_containers = j::array(spec, &["initContainers"]);
    let mut names: HashSet<String> = HashSet::new();
    if containers.is_empty() {
        errs.required(&child(path, "containers"), "");
    }
    for (i, c) in init_containers.iter().enumerate() {
        let p = index(&child(path, "initContainers"), i);
        validate_container(c, &p, &volumes, &mut names, errs);
        if let Some(policy) = j::str_at(c, &["restartPolicy"]) {
            if policy != "Always" {
                errs.not_supported(&child(&p, "restartPolicy"), policy, &["Always"]);
            }
        }
    }
    for (i, c) in containers.iter().enumerate() {
        let p = index(&child(path, "containers"), i);
        validate_container(c, &p, &volumes, &mut names, errs);
        if j::get(c, &["restartPolicy"]).is_some_and(|v| !v.is_null()) {
            errs.forbidden(
                &child(&p, "restartPolicy"),
                "may not be set for non-init containers",
            );
        }
    }

    if let Some(policy) = j::str_at(spec, &["restartPolicy"]) {
        if !matches!(policy, "Always" | "OnFailure" | "Never") {
            errs.not_supported(
                &child(path, "restartPolicy"),
                policy,
                &["Always", "OnFailure", "Never"],
            );
        }
    }
    if let Some(policy) = j::str_at(spec, &["dnsPolicy"]) {
        if !matches!(
            policy,
            "ClusterFirstWithHostNet" | "ClusterFirst" | "Default" | "None"
        ) {
            errs.not_supported(
                &child(path, "dnsPolicy"),
                policy,
                &["ClusterFirstWithHostNet", "ClusterFirst", "Default", "None"],
            );
        }
    }
    super::meta::validate_labels(
        j::get(spec, &["nodeSelector"]),
        &child(path, "nodeSelector"),
        errs,
    );
    if let Some(sa) = j::str_at(spec, &["serviceAccountName"]).filter(|s| !s.is_empty()) {
        errs.invalid_each(
            &child(path, "serviceAccountName"),
            sa,
            syntax::is_dns1123_subdomain(sa),
        );
    }
    for field in ["hostname", "subdomain"] {
        if let Some(v) = j::str_at(spec, &[field]).filter(|s| !s.is_empty()) {
            errs.invalid_each(&child(path, field), v, syntax::is_dns1123_label(v));
        }
    }
    if let Some(n) = j::i64_at(spec, &["activeDeadlineSeconds"]) {
        if n <= 0 {
            errs.invalid(
                &child(path, "activeDeadlineSeconds"),
                &n.to_string(),
                "must be between 1 and 2147483647, inclusive",
            );
        }
    }
    for (i, t) in j::array(spec, &["tolerations"]).iter().enumerate() {
        let p = index(&child(path, "tolerations"), i);
        let key = j::string(t, &["key"]);
        if !key.is_empty() {
            errs.invalid_each(&child(&p, "key"), key, syntax::is_qualified_name(key));
        }
        match j::str_at(t, &["operator"]).unwrap_or("") {
            "" | "Equal" => {}
            "Exists" => {
                if !j::string(t, &["value"]).is_empty() {
                    errs.invalid(
                        &child(&p, "operator"),
                        &q(j::string(t, &["value"])),
                        "value must be empty when `operator` is 'Exists'",
                    );
                }
            }
            other => errs.not_supported(&child(&p, "operator"), other, &["Equal", "Exists"]),
        }
        if let Some(effect) = j::str_at(t, &["effect"]).filter(|e| !e.is_empty()) {
            if !matches!(effect, "NoSchedule" | "PreferNoSchedule" | "NoExecute") {
                errs.not_supported(
                    &child(&p, "effect"),
                    effect,
                    &["NoExecute", "NoSchedule", "PreferNoSchedule"],
                );
            }
        }
    }
}

/// Checks volumes; returns their names (for volumeMount lookups).
fn validate_volumes(volumes: &[Value], path: &str, errs: &mut Errs) -> HashSet<String> {
    let mut names = HashSet::new();
    for (i, v) in volumes.iter().enumerate() {
        let p = index(path, i);
        let name = j::string(v, &["name"]);
        if name.is_empty() {
            errs.required(&child(&p, "name"), "");
        } else {
            errs.invalid_each(&child(&p, "name"), name, syntax::is_dns1123_label(name));
            if !names.insert(name.to_string()) {
                errs.duplicate(&child(&p, "name"), &q(name));
            }
        }
        let sources: Vec<&str> = VOLUME_SOURCES
            .iter()
            .copied()
            .filter(|s| j::get(v, &[s]).is_some_and(|x| !x.is_null()))
            .collect();
        match sources.as_slice() {
            [] => errs.required(&p, "must specify a volume type"),
            [_] => {}
            [_, second, ..] => errs.forbidden(
                &child(&p, second),
                "may not specify more than 1 volume type",
            ),
        }
        if let Some(src) = j::object(v, &["configMap"]) {
            if src
                .get("name")
                .and_then(Value::as_str)
                .unwrap_or("")
                .is_empty()
            {
                errs.required(&child(&child(&p, "configMap"), "name"), "");
            }
        }
        if j::object(v, &["secret"]).is_some() && j::string(v, &["secret", "secretName"]).is_empty()
        {
            errs.required(&child(&child(&p, "secret"), "secretName"), "");
        }
        if j::object(v, &["persistentVolumeClaim"]).is_some()
            && j::string(v, &["persistentVolumeClaim", "claimName"]).is_empty()
        {
            errs.required(&child(&child(&p, "persistentVolumeClaim"), "claimName"), "");
        }
        if j::object(v, &["hostPath"]).is_some() && j::string(v, &["hostPath", "path"]).is_empty() {
            errs.required(&child(&child(&p, "hostPath"), "path"), "");
        }
    }
    names
}

fn validate_container(
    c: &Value,
    path: &str,
    volumes: &HashSet<String>,
    names: &mut HashSet<String>,
    errs: &mut Errs,
) {
    let name = j::string(c, &["name"]);
    if name.is_empty() {
        errs.required(&child(path, "name"), "");
    } else {
        errs.invalid_each(&child(path, "name"), name, syntax::is_dns1123_label(name));
        if !names.insert(name.to_string()) {
            errs.duplicate(&child(path, "name"), &q(name));
        }
    }
    if j::string(c, &["image"]).is_empty() {
        errs.required(&child(path, "image"), "");
    }
    if let Some(p) = j::str_at(c, &["imagePullPolicy"]) {
        if !matches!(p, "Always" | "IfNotPresent" | "Never") {
            errs.not_supported(
                &child(path, "imagePullPolicy"),
                p,
                &["Always", "IfNotPresent", "Never"],
            );
        }
    }
    if let Some(p) = j::str_at(c, &["terminationMessagePolicy"]) {
        if !matches!(p, "File" | "FallbackToLogsOnError") {
            errs.not_supported(
                &child(path, "terminationMessagePolicy"),
                p,
                &["File", "FallbackToLogsOnError"],
            );
        }
    }

    let mut port_names = HashSet::new();
    for (i, port) in j::array(c, &["ports"]).iter().enumerate() {
        let p = index(&child(path, "ports"), i);
        if let Some(name) = j::str_at(port, &["name"]).filter(|n| !n.is_empty()) {
            errs.invalid_each(&child(&p, "name"), name, syntax::is_valid_port_name(name));
            if !port_names.insert(name.to_string()) {
                errs.duplicate(&child(&p, "name"), &q(name));
            }
        }
        match j::i64_at(port, &["containerPort"]) {
            None | Some(0) => errs.required(&child(&p, "containerPort"), ""),
            Some(n) => {
                for m in syntax::is_valid_port_num(n) {
                    errs.invalid(&child(&p, "containerPort"), &n.to_string(), &m);
                }
            }
        }
        if let Some(n) = j::i64_at(port, &["hostPort"]).filter(|n| *n != 0) {
            for m in syntax::is_valid_port_num(n) {
                errs.invalid(&child(&p, "hostPort"), &n.to_string(), &m);
            }
        }
        match j::str_at(port, &["protocol"]) {
            None => {}
            Some("") => errs.required(&child(&p, "protocol"), ""),
            Some(proto) if !matches!(proto, "TCP" | "UDP" | "SCTP") => {
                errs.not_supported(&child(&p, "protocol"), proto, &["SCTP", "TCP", "UDP"])
            }
            Some(_) => {}
        }
    }

    for (i, env) in j::array(c, &["env"]).iter().enumerate() {
        let p = index(&child(path, "env"), i);
        let name = j::string(env, &["name"]);
        if name.is_empty() {
            errs.required(&child(&p, "name"), "");
        } else if name.contains('=') || !name.bytes().all(|b| (32..127).contains(&b)) {
            errs.invalid(
                &child(&p, "name"),
                &q(name),
                "a valid environment variable name must consist only of printable ASCII characters other than '='",
            );
        }
    }

    let mut mount_paths = HashSet::new();
    for (i, m) in j::array(c, &["volumeMounts"]).iter().enumerate() {
        let p = index(&child(path, "volumeMounts"), i);
        let name = j::string(m, &["name"]);
        if name.is_empty() {
            errs.required(&child(&p, "name"), "");
        } else if !volumes.contains(name) {
            errs.not_found(&child(&p, "name"), &q(name));
        }
        let mount_path = j::string(m, &["mountPath"]);
        if mount_path.is_empty() {
            errs.required(&child(&p, "mountPath"), "");
        } else if !mount_paths.insert(mount_path.to_string()) {
            errs.invalid(&child(&p, "mountPath"), &q(mount_path), "must be unique");
        }
    }
}
