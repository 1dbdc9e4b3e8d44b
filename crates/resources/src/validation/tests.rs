use serde_json::{json, Value};

use super::*;
use crate::catalog::find;

fn rt(group: &str, plural: &str) -> &'static ResourceType {
    let version = if group == "autoscaling" { "v2" } else { "v1" };
    find(group, version, plural).unwrap()
}

fn causes(rt: &ResourceType, obj: &Value, old: Option<&Value>) -> Vec<FieldError> {
    match validate(rt, obj, old) {
        Ok(()) => Vec::new(),
        Err(ValidationError::Invalid(c)) => c,
        Err(ValidationError::BadRequest(m)) => panic!("unexpected bad request: {m}"),
    }
}

fn pod() -> Value {
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "web", "namespace": "default", "labels": {"app": "web"}},
        "spec": {"containers": [{"name": "nginx", "image": "nginx:1.27", "ports": [{"containerPort": 80}]}],
                 "restartPolicy": "Always", "dnsPolicy": "ClusterFirst"}
    })
}

fn deployment() -> Value {
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "default"},
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [{"name": "nginx", "image": "nginx"}], "restartPolicy": "Always"}
            },
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}},
            "progressDeadlineSeconds": 600
        }
    })
}

/// (reason, field, message) of each cause.
fn summary(c: &[FieldError]) -> Vec<(&str, &str, &str)> {
    c.iter()
        .map(|e| (e.reason, e.field.as_str(), e.message.as_str()))
        .collect()
}

#[test]
fn valid_objects_pass() {
    assert_eq!(causes(rt("", "pods"), &pod(), None), vec![]);
    assert_eq!(
        causes(rt("apps", "deployments"), &deployment(), None),
        vec![]
    );
    let svc = json!({"metadata": {"name": "web", "namespace": "default"},
        "spec": {"type": "ClusterIP", "selector": {"app": "web"}, "ports": [{"port": 80, "targetPort": 8080, "protocol": "TCP"}]}});
    assert_eq!(causes(rt("", "services"), &svc, None), vec![]);
    let cm = json!({"metadata": {"name": "cfg", "namespace": "default"}, "data": {"a.txt": "x", "B_2": "y"}});
    assert_eq!(causes(rt("", "configmaps"), &cm, None), vec![]);
    let ns = json!({"metadata": {"name": "team-a"}, "spec": {"finalizers": ["kubernetes"]}});
    assert_eq!(causes(rt("", "namespaces"), &ns, None), vec![]);
    let role = json!({"metadata": {"name": "system:reader", "namespace": "x"},
        "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]}]});
    assert_eq!(
        causes(rt("rbac.authorization.k8s.io", "roles"), &role, None),
        vec![]
    );
    let job = json!({"metadata": {"name": "pi", "namespace": "default", "uid": "u"},
        "spec": {"template": {"spec": {"containers": [{"name": "pi", "image": "perl"}], "restartPolicy": "Never"}}}});
    assert_eq!(causes(rt("batch", "jobs"), &job, None), vec![]);
    let cj = json!({"metadata": {"name": "hello", "namespace": "default"},
        "spec": {"schedule": "*/5 * * * mon-fri", "concurrencyPolicy": "Allow",
            "jobTemplate": {"spec": {"template": {"spec": {"containers": [{"name": "c", "image": "busybox"}], "restartPolicy": "OnFailure"}}}}}});
    assert_eq!(causes(rt("batch", "cronjobs"), &cj, None), vec![]);
}

#[test]
fn metadata_errors() {
    let mut p = pod();
    p["metadata"]["name"] = json!("Web_1");
    p["metadata"]["labels"] = json!({"-bad": "ok", "good": "not ok"});
    let c = causes(rt("", "pods"), &p, None);
    assert_eq!(c[0].reason, "FieldValueInvalid");
    assert_eq!(c[0].field, "metadata.name");
    assert_eq!(
        c[0].message,
        "Invalid value: \"Web_1\": a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')"
    );
    assert_eq!(c[1].field, "metadata.labels");
    assert!(c[1]
        .message
        .starts_with("Invalid value: \"-bad\": name part must consist of"));
    assert_eq!(c[2].field, "metadata.labels");
    assert!(c[2]
        .message
        .starts_with("Invalid value: \"not ok\": a valid label must be"));
    assert_eq!(c.len(), 3);

    let mut p = pod();
    p["metadata"]["name"] = json!("");
    let c = causes(rt("", "pods"), &p, None);
    assert_eq!(
        summary(&c),
        [(
            "FieldValueRequired",
            "metadata.name",
            "Required value: name or generateName is required"
        )]
    );

    let ns = json!({"metadata": {"name": "a.b"}});
    assert_eq!(
        summary(&causes(rt("", "namespaces"), &ns, None)),
        [(
            "FieldValueInvalid",
            "metadata.name",
            "Invalid value: \"a.b\": must not contain dots"
        )]
    );
    let svc =
        json!({"metadata": {"name": "1web", "namespace": "d"}, "spec": {"ports": [{"port": 80}]}});
    let c = causes(rt("", "services"), &svc, None);
    assert_eq!(c[0].field, "metadata.name");
    assert!(c[0].message.contains("a DNS-1035 label"));
    let role = json!({"metadata": {"name": "a/b", "namespace": "x"}});
    assert_eq!(
        summary(&causes(
            rt("rbac.authorization.k8s.io", "roles"),
            &role,
            None
        )),
        [(
            "FieldValueInvalid",
            "metadata.name",
            "Invalid value: \"a/b\": may not contain '/'"
        )]
    );
    let cm = json!({"metadata": {"name": "c", "namespace": "d", "annotations": {"a/b/c": "x"},
        "finalizers": ["foo"]}});
    let c = causes(rt("", "configmaps"), &cm, None);
    assert_eq!(c[0].field, "metadata.annotations");
    assert_eq!(c[1].field, "metadata.finalizers");
    assert_eq!(
        c[1].message,
        "Invalid value: \"foo\": name is neither a standard finalizer name nor is it fully qualified"
    );
}

#[test]
fn pod_spec_errors() {
    let mut p = pod();
    p["spec"]["containers"] = json!([]);
    assert_eq!(
        summary(&causes(rt("", "pods"), &p, None)),
        [("FieldValueRequired", "spec.containers", "Required value")]
    );

    let mut p = pod();
    p["spec"]["containers"] = json!([
        {"name": "a", "image": ""},
        {"name": "a", "image": "x", "ports": [{"containerPort": 70000, "protocol": "XTP"}]},
        {"name": "B", "image": "x", "volumeMounts": [{"name": "data", "mountPath": "/d"}]}
    ]);
    let c = causes(rt("", "pods"), &p, None);
    let s = summary(&c);
    assert_eq!(
        s[0],
        (
            "FieldValueRequired",
            "spec.containers[0].image",
            "Required value"
        )
    );
    assert_eq!(
        s[1],
        (
            "FieldValueDuplicate",
            "spec.containers[1].name",
            "Duplicate value: \"a\""
        )
    );
    assert_eq!(
        s[2],
        (
            "FieldValueInvalid",
            "spec.containers[1].ports[0].containerPort",
            "Invalid value: 70000: must be between 1 and 65535, inclusive"
        )
    );
    assert_eq!(
        s[3],
        (
            "FieldValueNotSupported",
            "spec.containers[1].ports[0].protocol",
            "Unsupported value: \"XTP\": supported values: \"SCTP\", \"TCP\", \"UDP\""
        )
    );
    assert_eq!(s[4].1, "spec.containers[2].name");
    assert!(s[4].2.contains("a lowercase RFC 1123 label"));
    assert_eq!(
        s[5],
        (
            "FieldValueNotFound",
            "spec.containers[2].volumeMounts[0].name",
            "Not found: \"data\""
        )
    );
    assert_eq!(s.len(), 6);

    let mut p = pod();
    p["spec"]["restartPolicy"] = json!("Sometimes");
    assert_eq!(
        summary(&causes(rt("", "pods"), &p, None)),
        [("FieldValueNotSupported", "spec.restartPolicy", "Unsupported value: \"Sometimes\": supported values: \"Always\", \"OnFailure\", \"Never\"")]
    );
}

#[test]
fn type_errors_are_bad_requests() {
    let mut d = deployment();
    d["spec"]["replicas"] = json!("three");
    match validate(rt("apps", "deployments"), &d, None) {
        Err(ValidationError::BadRequest(m)) => {
            assert!(m.starts_with("Deployment in version \"v1\" cannot be handled as a Deployment: spec.replicas: invalid type"), "{m}");
        }
        other => panic!("{other:?}"),
    }
    let mut p = pod();
    p["metadata"]["labels"] = json!({"a": 1});
    assert!(matches!(
        validate(rt("", "pods"), &p, None),
        Err(ValidationError::BadRequest(_))
    ));
    assert!(matches!(
        validate(rt("", "pods"), &json!([1]), None),
        Err(ValidationError::BadRequest(_))
    ));
    // Quantities may be numbers, as upstream accepts.
    let mut p = pod();
    p["spec"]["containers"][0]["resources"] = json!({"limits": {"cpu": 1, "memory": "64Mi"}});
    assert_eq!(causes(rt("", "pods"), &p, None), vec![]);
}

#[test]
fn workload_selector_errors() {
    let mut d = deployment();
    d["spec"]["template"]["metadata"]["labels"] = json!({"app": "other"});
    assert_eq!(
        summary(&causes(rt("apps", "deployments"), &d, None)),
        [(
            "FieldValueInvalid",
            "spec.template.metadata.labels",
            "Invalid value: map[string]string{\"app\":\"other\"}: `selector` does not match template `labels`"
        )]
    );
    let mut d = deployment();
    d["spec"].as_object_mut().unwrap().remove("selector");
    assert_eq!(
        summary(&causes(rt("apps", "deployments"), &d, None)),
        [("FieldValueRequired", "spec.selector", "Required value")]
    );
    let mut d = deployment();
    d["spec"]["selector"] = json!({});
    let c = causes(rt("apps", "deployments"), &d, None);
    assert_eq!(c[0].field, "spec.selector");
    assert!(c[0]
        .message
        .ends_with("empty selector is invalid for deployment"));
    let mut d = deployment();
    d["spec"]["template"]["spec"]["restartPolicy"] = json!("Never");
    d["spec"]["replicas"] = json!(-1);
    assert_eq!(
        summary(&causes(rt("apps", "deployments"), &d, None)),
        [
            (
                "FieldValueInvalid",
                "spec.replicas",
                "Invalid value: -1: must be greater than or equal to 0"
            ),
            (
                "FieldValueNotSupported",
                "spec.template.spec.restartPolicy",
                "Unsupported value: \"Never\": supported values: \"Always\""
            ),
        ]
    );
    let mut d = deployment();
    d["spec"]["strategy"] =
        json!({"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 0, "maxUnavailable": "0%"}});
    assert_eq!(
        summary(&causes(rt("apps", "deployments"), &d, None)),
        [(
            "FieldValueInvalid",
            "spec.strategy.rollingUpdate.maxUnavailable",
            "Invalid value: intstr.IntOrString{Type:1, IntVal:0, StrVal:\"0%\"}: may not be 0 when `maxSurge` is 0"
        )]
    );
}

#[test]
fn immutable_selectors() {
    let old = deployment();
    let mut new = deployment();
    new["spec"]["selector"] = json!({"matchLabels": {"app": "web2"}});
    new["spec"]["template"]["metadata"]["labels"] = json!({"app": "web2"});
    assert_eq!(
        summary(&causes(rt("apps", "deployments"), &new, Some(&old))),
        [(
            "FieldValueInvalid",
            "spec.selector",
            "Invalid value: v1.LabelSelector{MatchLabels:map[string]string{\"app\":\"web2\"}, MatchExpressions:[]v1.LabelSelectorRequirement(nil)}: field is immutable"
        )]
    );
    // Equal modulo empty fields is not a change.
    let mut same = deployment();
    same["spec"]["selector"]["matchExpressions"] = json!([]);
    same["spec"]["replicas"] = json!(5);
    assert_eq!(causes(rt("apps", "deployments"), &same, Some(&old)), vec![]);

    let mut renamed = deployment();
    renamed["metadata"]["name"] = json!("other");
    assert_eq!(
        summary(&causes(rt("apps", "deployments"), &renamed, Some(&old))),
        [(
            "FieldValueInvalid",
            "metadata.name",
            "Invalid value: \"other\": field is immutable"
        )]
    );
}

#[test]
fn service_rules() {
    let svc = |spec: Value| json!({"metadata": {"name": "s", "namespace": "d"}, "spec": spec});
    let s = rt("", "services");
    assert_eq!(
        summary(&causes(s, &svc(json!({"type": "ClusterIP"})), None)),
        [("FieldValueRequired", "spec.ports", "Required value")]
    );
    assert_eq!(causes(s, &svc(json!({"clusterIP": "None"})), None), vec![]);
    assert_eq!(
        causes(
            s,
            &svc(json!({"type": "ExternalName", "externalName": "example.com"})),
            None
        ),
        vec![]
    );
    assert_eq!(
        summary(&causes(
            s,
            &svc(json!({"ports": [{"port": 0}, {"name": "b", "port": 80, "nodePort": 30000}]})),
            None
        )),
        [
            ("FieldValueRequired", "spec.ports[0].name", "Required value"),
            (
                "FieldValueInvalid",
                "spec.ports[0].port",
                "Invalid value: 0: must be between 1 and 65535, inclusive"
            ),
            (
                "FieldValueForbidden",
                "spec.ports[1].nodePort",
                "Forbidden: may not be used when `type` is 'ClusterIP'"
            ),
        ]
    );
    let old = svc(
        json!({"clusterIP": "10.96.0.5", "clusterIPs": ["10.96.0.5"], "ports": [{"port": 80}]}),
    );
    let new = svc(
        json!({"clusterIP": "10.96.0.6", "clusterIPs": ["10.96.0.6"], "ports": [{"port": 80}]}),
    );
    assert_eq!(
        summary(&causes(s, &new, Some(&old))),
        [(
            "FieldValueInvalid",
            "spec.clusterIPs[0]",
            "Invalid value: []string{\"10.96.0.6\"}: may not change once set"
        )]
    );
    assert_eq!(causes(s, &old, Some(&old)), vec![]);
}

#[test]
fn config_and_secret_rules() {
    let cm = json!({"metadata": {"name": "c", "namespace": "d"}, "data": {"a b": "x"}});
    assert_eq!(
        summary(&causes(rt("", "configmaps"), &cm, None)),
        [(
            "FieldValueInvalid",
            "data[a b]",
            "Invalid value: \"a b\": a valid config key must consist of alphanumeric characters, '-', '_' or '.' (e.g. 'key.name',  or 'KEY_NAME',  or 'key-name', regex used for validation is '[-._a-zA-Z0-9]+')"
        )]
    );
    let old =
        json!({"metadata": {"name": "c", "namespace": "d"}, "data": {"a": "1"}, "immutable": true});
    let new =
        json!({"metadata": {"name": "c", "namespace": "d"}, "data": {"a": "2"}, "immutable": true});
    assert_eq!(
        summary(&causes(rt("", "configmaps"), &new, Some(&old))),
        [(
            "FieldValueForbidden",
            "data",
            "Forbidden: field is immutable when `immutable` is set"
        )]
    );
    let old = json!({"metadata": {"name": "s", "namespace": "d"}, "type": "Opaque"});
    let new = json!({"metadata": {"name": "s", "namespace": "d"}, "type": "kubernetes.io/tls",
        "data": {"tls.crt": "YQ==", "tls.key": "YQ=="}});
    assert_eq!(
        summary(&causes(rt("", "secrets"), &new, Some(&old))),
        [(
            "FieldValueInvalid",
            "type",
            "Invalid value: \"kubernetes.io/tls\": field is immutable"
        )]
    );
    let tls = json!({"metadata": {"name": "s", "namespace": "d"}, "type": "kubernetes.io/tls"});
    assert_eq!(
        summary(&causes(rt("", "secrets"), &tls, None)),
        [
            ("FieldValueRequired", "data[tls.crt]", "Required value"),
            ("FieldValueRequired", "data[tls.key]", "Required value"),
        ]
    );
    let bad_base64 = json!({"metadata": {"name": "s", "namespace": "d"}, "data": {"a": "%%%"}});
    assert!(matches!(
        validate(rt("", "secrets"), &bad_base64, None),
        Err(ValidationError::BadRequest(_))
    ));
}

#[test]
fn jobs_and_cronjobs() {
    let job = |restart: &str| {
        json!({"metadata": {"name": "j", "namespace": "d"},
        "spec": {"template": {"spec": {"containers": [{"name": "c", "image": "x"}], "restartPolicy": restart}}}})
    };
    assert_eq!(
        summary(&causes(rt("batch", "jobs"), &job("Always"), None)),
        [(
            "FieldValueNotSupported",
            "spec.template.spec.restartPolicy",
            "Unsupported value: \"Always\": supported values: \"OnFailure\", \"Never\""
        )]
    );
    let mut old = job("Never");
    old["spec"]["selector"] = json!({"matchLabels": {"batch.kubernetes.io/controller-uid": "u"}});
    old["spec"]["template"]["metadata"] =
        json!({"labels": {"batch.kubernetes.io/controller-uid": "u"}});
    let mut new = old.clone();
    new["spec"]["template"]["spec"]["containers"][0]["image"] = json!("y");
    let c = causes(rt("batch", "jobs"), &new, Some(&old));
    assert_eq!(c.len(), 1);
    assert_eq!(c[0].field, "spec.template");
    assert!(c[0].message.ends_with(": field is immutable"));

    let cj = |schedule: &str| {
        json!({"metadata": {"name": "c", "namespace": "d"},
        "spec": {"schedule": schedule, "concurrencyPolicy": "Allow",
            "jobTemplate": {"spec": {"template": {"spec": {"containers": [{"name": "c", "image": "x"}], "restartPolicy": "Never"}}}}}})
    };
    assert_eq!(
        summary(&causes(rt("batch", "cronjobs"), &cj("* * *"), None)),
        [(
            "FieldValueInvalid",
            "spec.schedule",
            "Invalid value: \"* * *\": expected exactly 5 fields, found 3: [* * *]"
        )]
    );
    assert_eq!(
        causes(rt("batch", "cronjobs"), &cj("0 24 * * *"), None)[0].message,
        "Invalid value: \"0 24 * * *\": end of range (24) above maximum (23): 24"
    );
    assert_eq!(
        causes(rt("batch", "cronjobs"), &cj("@hourly"), None),
        vec![]
    );
    assert_eq!(
        causes(rt("batch", "cronjobs"), &cj("0 0 1 jan,jul sun"), None),
        vec![]
    );
}

#[test]
fn other_kinds() {
    let rb = json!({"metadata": {"name": "rb", "namespace": "d"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "r"},
        "subjects": [{"kind": "ServiceAccount", "name": "default", "namespace": "d"}, {"kind": "Robot", "name": "x"}]});
    let r = rt("rbac.authorization.k8s.io", "rolebindings");
    assert_eq!(
        summary(&causes(r, &rb, None)),
        [("FieldValueNotSupported", "subjects[1].kind", "Unsupported value: \"Robot\": supported values: \"ServiceAccount\", \"User\", \"Group\"")]
    );
    let mut changed = rb.clone();
    changed["roleRef"]["name"] = json!("other");
    changed["subjects"] = json!([]);
    assert_eq!(
        summary(&causes(r, &changed, Some(&rb))),
        [("FieldValueInvalid", "roleRef", "Invalid value: rbac.RoleRef{APIGroup:\"rbac.authorization.k8s.io\", Kind:\"Role\", Name:\"other\"}: cannot change roleRef")]
    );
    let pvc = json!({"metadata": {"name": "p", "namespace": "d"}, "spec": {"accessModes": ["ReadWriteOnce"]}});
    assert_eq!(
        summary(&causes(rt("", "persistentvolumeclaims"), &pvc, None)),
        [(
            "FieldValueRequired",
            "spec.resources[storage]",
            "Required value"
        )]
    );
    let old = json!({"metadata": {"name": "p", "namespace": "d"},
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}});
    let mut bigger = old.clone();
    bigger["spec"]["resources"]["requests"]["storage"] = json!("2Gi");
    bigger["spec"]["volumeName"] = json!("pv-1");
    assert_eq!(
        causes(rt("", "persistentvolumeclaims"), &bigger, Some(&old)),
        vec![]
    );
    let mut classed = old.clone();
    classed["spec"]["storageClassName"] = json!("standard");
    assert_eq!(
        causes(rt("", "persistentvolumeclaims"), &classed, Some(&old)),
        vec![]
    );
    let mut reclassed = classed.clone();
    reclassed["spec"]["storageClassName"] = json!("other");
    assert_eq!(
        causes(rt("", "persistentvolumeclaims"), &reclassed, Some(&classed))[0].reason,
        "FieldValueForbidden"
    );
    let mut other_mode = old.clone();
    other_mode["spec"]["accessModes"] = json!(["ReadWriteMany"]);
    assert_eq!(
        causes(rt("", "persistentvolumeclaims"), &other_mode, Some(&old))[0].reason,
        "FieldValueForbidden"
    );

    let ing = json!({"metadata": {"name": "i", "namespace": "d"}, "spec": {"rules": [{"host": "a.example.com",
        "http": {"paths": [{"path": "/", "backend": {"service": {"name": "web"}}}]}}]}});
    assert_eq!(
        summary(&causes(rt("networking.k8s.io", "ingresses"), &ing, None)),
        [
            (
                "FieldValueRequired",
                "spec.rules[0].http.paths[0].pathType",
                "Required value: pathType must be specified"
            ),
            (
                "FieldValueRequired",
                "spec.rules[0].http.paths[0].backend",
                "Required value: port name or number is required"
            ),
        ]
    );
    let crd = json!({"metadata": {"name": "things.example.com"}, "spec": {"group": "example.com",
        "names": {"plural": "things", "kind": "Thing"}, "scope": "Namespaced",
        "versions": [{"name": "v1", "served": true, "storage": true, "schema": {"openAPIV3Schema": {"type": "object"}}}]}});
    assert_eq!(
        causes(
            rt("apiextensions.k8s.io", "customresourcedefinitions"),
            &crd,
            None
        ),
        vec![]
    );
    let mut wrong = crd.clone();
    wrong["metadata"]["name"] = json!("thing.example.com");
    assert_eq!(
        causes(
            rt("apiextensions.k8s.io", "customresourcedefinitions"),
            &wrong,
            None
        )[0]
        .message,
        "Invalid value: \"thing.example.com\": must be spec.names.plural+\".\"+spec.group"
    );
    let ev = json!({"metadata": {"name": "e.1", "namespace": "kube-system"}, "involvedObject": {"kind": "Pod", "namespace": "default", "name": "p"}});
    assert_eq!(
        summary(&causes(rt("", "events"), &ev, None)),
        [(
            "FieldValueInvalid",
            "involvedObject.namespace",
            "Invalid value: \"default\": does not match event.namespace"
        )]
    );
}

#[test]
fn messages_and_never_panics() {
    let errs = vec![
        FieldError {
            reason: "FieldValueRequired",
            field: "spec.a".into(),
            message: "Required value".into(),
        },
        FieldError {
            reason: "FieldValueRequired",
            field: "spec.b".into(),
            message: "Required value".into(),
        },
    ];
    assert_eq!(
        invalid_message(rt("apps", "deployments"), "web", &errs),
        "Deployment.apps \"web\" is invalid: [spec.a: Required value, spec.b: Required value]"
    );
    assert_eq!(
        invalid_message(rt("", "pods"), "p", &errs[..1]),
        "Pod \"p\" is invalid: spec.a: Required value"
    );
    let junk = [
        json!({}),
        json!({"metadata": 1}),
        json!({"metadata": {"name": "x", "namespace": "y"}, "spec": {"template": 5, "selector": "x", "containers": {"a": 1}}}),
        json!({"metadata": {"name": "x", "namespace": "y"}, "spec": null, "data": [1]}),
    ];
    for rt in crate::catalog::builtin() {
        for obj in &junk {
            let _ = validate(rt, obj, Some(obj));
            let _ = validate(rt, obj, Some(&json!(3)));
        }
    }
}

/// What `kubectl create ...` / `kubectl run` send, after defaulting, must validate.
#[test]
fn kubectl_generated_objects_pass_after_defaulting() {
    let cases = [
        (
            "apps",
            "deployments",
            json!({"apiVersion":"apps/v1","kind":"Deployment","metadata":{"creationTimestamp":null,"labels":{"app":"nginx"},"name":"nginx","namespace":"default"},"spec":{"replicas":1,"selector":{"matchLabels":{"app":"nginx"}},"strategy":{},"template":{"metadata":{"creationTimestamp":null,"labels":{"app":"nginx"}},"spec":{"containers":[{"image":"nginx","name":"nginx","resources":{}}]}}},"status":{}}),
        ),
        (
            "",
            "pods",
            json!({"apiVersion":"v1","kind":"Pod","metadata":{"creationTimestamp":null,"labels":{"run":"nginx"},"name":"nginx","namespace":"default"},"spec":{"containers":[{"image":"nginx","name":"nginx","resources":{}}],"dnsPolicy":"ClusterFirst","restartPolicy":"Always"},"status":{}}),
        ),
        (
            "",
            "services",
            json!({"apiVersion":"v1","kind":"Service","metadata":{"creationTimestamp":null,"labels":{"app":"my"},"name":"my","namespace":"default"},"spec":{"ports":[{"name":"80-8080","port":80,"protocol":"TCP","targetPort":8080}],"selector":{"app":"my"},"type":"ClusterIP"},"status":{"loadBalancer":{}}}),
        ),
        (
            "batch",
            "jobs",
            json!({"apiVersion":"batch/v1","kind":"Job","metadata":{"creationTimestamp":null,"name":"pi","namespace":"default","uid":"0b5c7d36-7a48-4a59-9f0b-6b8f4a3b9a10"},"spec":{"template":{"metadata":{"creationTimestamp":null},"spec":{"containers":[{"image":"perl","name":"pi","resources":{}}],"restartPolicy":"Never"}}},"status":{}}),
        ),
        (
            "batch",
            "cronjobs",
            json!({"apiVersion":"batch/v1","kind":"CronJob","metadata":{"creationTimestamp":null,"name":"hello","namespace":"default"},"spec":{"jobTemplate":{"metadata":{"creationTimestamp":null,"name":"hello"},"spec":{"template":{"metadata":{"creationTimestamp":null},"spec":{"containers":[{"image":"busybox","name":"hello","resources":{}}],"restartPolicy":"OnFailure"}}}},"schedule":"*/1 * * * *"},"status":{}}),
        ),
        (
            "",
            "secrets",
            json!({"apiVersion":"v1","kind":"Secret","metadata":{"creationTimestamp":null,"name":"s","namespace":"default"},"data":{"a":"Yg=="}}),
        ),
        (
            "",
            "configmaps",
            json!({"apiVersion":"v1","kind":"ConfigMap","metadata":{"creationTimestamp":null,"name":"c","namespace":"default"},"data":{"a":"b"}}),
        ),
        (
            "",
            "namespaces",
            json!({"apiVersion":"v1","kind":"Namespace","metadata":{"creationTimestamp":null,"name":"team"},"spec":{},"status":{}}),
        ),
        (
            "rbac.authorization.k8s.io",
            "roles",
            json!({"apiVersion":"rbac.authorization.k8s.io/v1","kind":"Role","metadata":{"creationTimestamp":null,"name":"pod-reader","namespace":"default"},"rules":[{"apiGroups":[""],"resources":["pods"],"verbs":["get"]}]}),
        ),
        (
            "rbac.authorization.k8s.io",
            "rolebindings",
            json!({"apiVersion":"rbac.authorization.k8s.io/v1","kind":"RoleBinding","metadata":{"creationTimestamp":null,"name":"rb","namespace":"default"},"roleRef":{"apiGroup":"rbac.authorization.k8s.io","kind":"Role","name":"pod-reader"},"subjects":[{"kind":"ServiceAccount","name":"x","namespace":"default"}]}),
        ),
        (
            "networking.k8s.io",
            "ingresses",
            json!({"apiVersion":"networking.k8s.io/v1","kind":"Ingress","metadata":{"creationTimestamp":null,"name":"simple","namespace":"default"},"spec":{"rules":[{"host":"foo.com","http":{"paths":[{"backend":{"service":{"name":"svc1","port":{"number":8080}}},"path":"/bar","pathType":"Exact"}]}}]},"status":{"loadBalancer":{}}}),
        ),
        (
            "policy",
            "poddisruptionbudgets",
            json!({"apiVersion":"policy/v1","kind":"PodDisruptionBudget","metadata":{"creationTimestamp":null,"name":"my","namespace":"default"},"spec":{"minAvailable":1,"selector":{"matchLabels":{"app":"x"}}},"status":{"currentHealthy":0,"desiredHealthy":0,"disruptionsAllowed":0,"expectedPods":0}}),
        ),
        (
            "apps",
            "statefulsets",
            json!({"apiVersion":"apps/v1","kind":"StatefulSet","metadata":{"name":"web","namespace":"default"},"spec":{"serviceName":"web","selector":{"matchLabels":{"app":"web"}},"template":{"metadata":{"labels":{"app":"web"}},"spec":{"containers":[{"name":"nginx","image":"nginx","volumeMounts":[{"name":"www","mountPath":"/usr/share/nginx/html"}]}]}},"volumeClaimTemplates":[{"metadata":{"name":"www"},"spec":{"accessModes":["ReadWriteOnce"],"resources":{"requests":{"storage":"1Gi"}}}}]}}),
        ),
        (
            "apps",
            "daemonsets",
            json!({"apiVersion":"apps/v1","kind":"DaemonSet","metadata":{"name":"agent","namespace":"kube-system"},"spec":{"selector":{"matchLabels":{"app":"agent"}},"template":{"metadata":{"labels":{"app":"agent"}},"spec":{"containers":[{"name":"a","image":"busybox"}],"tolerations":[{"operator":"Exists"}]}}}}),
        ),
    ];
    for (group, plural, mut obj) in cases {
        let rt = crate::catalog::builtin()
            .iter()
            .find(|r| r.group == group && r.plural == plural)
            .unwrap();
        crate::defaults::apply_defaults(rt, &mut obj);
        assert_eq!(causes(rt, &obj, None), vec![], "{plural}");
        // Re-applying the same object is a no-op update.
        assert_eq!(causes(rt, &obj, Some(&obj)), vec![], "{plural} update");
    }
}
