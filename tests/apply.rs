//! Acceptance tests for `kubectl apply` against `kubelab server` with default validation
//! (fieldValidation=Strict): multi-document files, the course's examples, server-side apply
//! field managers, `diff` and server dry run, and unknown-field rejection. Each runs against
//! kubectl 1.30, 1.32, 1.33 and the current kubectl from PyPI.

mod common;
mod support;

use std::collections::BTreeMap;
use std::time::Duration;

use common::{fixture, Kubectl, TestServer};
use serde_json::{json, Value};
use support::{
    assert_not_found, for_all_kubectls, get_json, named, names_of, resource_version,
    wait_established,
};

const SHOP_CRD: &str = "coupons.shop.kubelab.dev";
/// The objects of apply/shop-v1.yaml as kubectl names them, in file order; the last is custom.
const SHOP_OBJECTS: [&str; 8] = [
    "namespace/shop",
    "configmap/shop-config",
    "secret/shop-secret",
    "deployment.apps/shop-web",
    "service/shop-web",
    "ingress.networking.k8s.io/shop",
    "customresourcedefinition.apiextensions.k8s.io/coupons.shop.kubelab.dev",
    "coupon.shop.kubelab.dev/welcome",
];

/// The documents of a multi-document YAML file, as JSON.
fn documents(path: &str) -> Vec<Value> {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("read {path}: {e}"));
    text.split("\n---\n")
        .map(|doc| {
            serde_yaml::from_str::<Value>(doc).unwrap_or_else(|e| panic!("{path} is not YAML: {e}"))
        })
        .filter(|doc| !doc.is_null())
        .collect()
}

/// The file's document without a Secret's `stringData`, which the server folds into `data`
/// (checked on its own).
fn without_string_data(mut doc: Value) -> Value {
    if let Some(fields) = doc.as_object_mut() {
        fields.remove("stringData");
    }
    doc
}

/// Every field the file sets is in the live object with the same value; lists must have the
/// same length (so a removed container or an added port shows up).
fn assert_subset(path: &str, file: &Value, live: &Value) {
    match (file, live) {
        (Value::Object(want), Value::Object(have)) => {
            for (key, value) in want {
                let here = format!("{path}.{key}");
                let live_value = have
                    .get(key)
                    .unwrap_or_else(|| panic!("{here} is set in the file but missing live"));
                assert_subset(&here, value, live_value);
            }
        }
        (Value::Array(want), Value::Array(have)) => {
            // The ServiceAccount admission adds its token volume and mounts to every pod.
            let have: Vec<&Value> = have
                .iter()
                .filter(|v| {
                    !v.get("name")
                        .and_then(Value::as_str)
                        .is_some_and(|n| n.starts_with("kube-api-access-"))
                })
                .collect();
            assert_eq!(
                want.len(),
                have.len(),
                "{path}: the file has {} elements, live has {}:\nfile: {file}\nlive: {live}",
                want.len(),
                have.len()
            );
            for (i, (w, h)) in want.iter().zip(have).enumerate() {
                assert_subset(&format!("{path}[{i}]"), w, h);
            }
        }
        (Value::Number(want), Value::Number(have)) => {
            assert_eq!(want.as_f64(), have.as_f64(), "{path}")
        }
        _ => assert_eq!(file, live, "{path}: file vs live"),
    }
}

/// Applies a file holding a CRD and objects of it. The first apply may fail on the custom
/// objects (their kind is not served, nor in OpenAPI, until the CRD is Established — upstream
/// kubectl has the same race), but must create everything else; then wait for Established and
/// apply again, which must create the custom objects.
fn apply_with_crd(
    server: &TestServer,
    k: &Kubectl,
    file: &str,
    crd: &str,
    others: &[&str],
    custom: &[&str],
) {
    let first = server.kubectl(k, &["apply", "-f", file]);
    if first.success() {
        return;
    }
    eprintln!(
        "kubectl {} apply -f {file}: first pass failed (CRD race):\n{}",
        k.version, first.stderr
    );
    for object in others {
        let line = format!("{object} created");
        assert!(
            first.stdout.lines().any(|l| l.trim() == line),
            "kubectl {} apply -f {file}: the first pass should create {object} even if the \
             custom objects fail\nstdout:\n{}\nstderr:\n{}",
            k.version,
            first.stdout,
            first.stderr
        );
    }
    wait_established(server, k, crd);
    let out = server.ok(k, &["apply", "-f", file]);
    for object in custom {
        let line = format!("{object} created");
        assert!(
            out.lines().any(|l| l.trim() == line),
            "kubectl {} apply -f {file} after the CRD is Established: no {line:?} in\n{out}",
            k.version
        );
    }
}

/// `kubectl get -f file -o json`: the live objects in the file's order.
fn live_objects(server: &TestServer, k: &Kubectl, file: &str, ns: &[&str]) -> Vec<Value> {
    let mut args = vec!["get", "-f", file, "-o", "json"];
    args.extend(ns);
    let out = server.ok(k, &args);
    let list: Value = serde_json::from_str(&out)
        .unwrap_or_else(|e| panic!("get -f {file} -o json is not JSON ({e}):\n{out}"));
    if list["kind"] != "List" {
        return vec![list];
    }
    list["items"]
        .as_array()
        .unwrap_or_else(|| panic!("get -f {file} -o json has no items:\n{out}"))
        .clone()
}

/// Every document of `file` is live and has the file's fields; `ns` is `[]` or `["-n", ns]`.
fn assert_file_is_live(server: &TestServer, k: &Kubectl, file: &str, ns: &[&str]) -> Vec<Value> {
    let docs = documents(file);
    let live = live_objects(server, k, file, ns);
    assert_eq!(
        docs.len(),
        live.len(),
        "kubectl {}: get -f {file} returned {} objects for {} documents",
        k.version,
        live.len(),
        docs.len()
    );
    for (doc, obj) in docs.into_iter().zip(&live) {
        let what = format!("{}/{}", doc["kind"], doc["metadata"]["name"]);
        assert_subset(&what, &without_string_data(doc), obj);
    }
    live
}

fn labels(obj: &Value) -> BTreeMap<String, String> {
    serde_json::from_value(obj["metadata"]["labels"].clone()).unwrap_or_default()
}

fn env_pairs(container: &Value) -> Vec<(String, String)> {
    container["env"]
        .as_array()
        .map(|env| {
            env.iter()
                .map(|e| {
                    (
                        e["name"].as_str().unwrap_or_default().to_owned(),
                        e["value"].as_str().unwrap_or_default().to_owned(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

fn ports(container: &Value) -> Vec<(String, i64, String)> {
    container["ports"]
        .as_array()
        .map(|ports| {
            ports
                .iter()
                .map(|p| {
                    (
                        p["name"].as_str().unwrap_or_default().to_owned(),
                        p["containerPort"].as_i64().unwrap_or_default(),
                        p["protocol"].as_str().unwrap_or_default().to_owned(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

fn pairs(items: &[(&str, &str)]) -> Vec<(String, String)> {
    items
        .iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect()
}

fn unix_seconds() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs()
}

fn by_kind<'a>(live: &'a [Value], kind: &str) -> &'a Value {
    live.iter()
        .find(|o| o["kind"] == kind)
        .unwrap_or_else(|| panic!("no {kind} among the live objects"))
}

// 1. One multi-document file creates everything; a changed file converges the live objects.
#[test]
fn apply_multi_document_file_then_changed_file() {
    let (v1, v2) = (fixture("apply/shop-v1.yaml"), fixture("apply/shop-v2.yaml"));
    for_all_kubectls(|k| {
        let server = TestServer::start();
        apply_with_crd(
            &server,
            k,
            &v1,
            SHOP_CRD,
            &SHOP_OBJECTS[..7],
            &SHOP_OBJECTS[7..],
        );
        // The CRD's own writes (finalizer, status) are over once it is Established.
        wait_established(&server, k, SHOP_CRD);
        let before = assert_file_is_live(&server, k, &v1, &[]);

        let deploy = by_kind(&before, "Deployment");
        let containers = &deploy["spec"]["template"]["spec"]["containers"];
        assert_eq!(names_of(containers), ["web", "sidecar"]);
        assert_eq!(
            ports(named(containers, "web")),
            [("http".into(), 8080, "TCP".into())],
            "ports default their protocol to TCP"
        );
        let secret = by_kind(&before, "Secret");
        assert_eq!(secret["data"], json!({"password": "czNjcmV0"}));
        assert!(
            secret.get("stringData").is_none(),
            "stringData is stored as data: {secret}"
        );

        // managedFields times have one-second resolution: make sure the clock has moved past
        // the last v1 write, so a no-op write that refreshes a time would show.
        let written = unix_seconds();
        common::eventually("the next wall-clock second", Duration::from_secs(2), || {
            (unix_seconds() > written).then_some(())
        });
        let out = server.ok(k, &["apply", "-f", &v2]);
        for object in SHOP_OBJECTS {
            // A Secret applied with stringData is always "configured" (the live object keeps
            // only data, so kubectl's patch re-sends stringData), as with upstream; the write
            // is a no-op, so its resourceVersion stays (checked below).
            let verb = if object.starts_with("deployment")
                || object.starts_with("coupon")
                || object.starts_with("secret")
            {
                "configured"
            } else {
                "unchanged"
            };
            let line = format!("{object} {verb}");
            assert!(
                out.lines().any(|l| l.trim() == line),
                "kubectl {} apply of the changed file: no line {line:?} in:\n{out}",
                k.version
            );
        }

        let after = assert_file_is_live(&server, k, &v2, &[]);
        let deploy = by_kind(&after, "Deployment");
        assert_eq!(
            labels(deploy),
            BTreeMap::from([
                ("app".to_string(), "shop".to_string()),
                ("tier".to_string(), "web".to_string())
            ]),
            "the removed label is gone and nothing else changed"
        );
        let containers = &deploy["spec"]["template"]["spec"]["containers"];
        assert_eq!(
            names_of(containers),
            ["web"],
            "the removed container is gone"
        );
        let web = named(containers, "web");
        assert_eq!(
            env_pairs(web),
            pairs(&[("LOG_LEVEL", "info"), ("MODE", "green")])
        );
        assert_eq!(
            ports(web),
            [
                ("http".into(), 8080, "TCP".into()),
                ("https".into(), 8443, "TCP".into())
            ]
        );
        assert_eq!(web["image"], "nginx:1.27");
        assert_eq!(deploy["spec"]["replicas"], 2);
        assert_eq!(
            by_kind(&after, "Coupon")["spec"],
            json!({"code": "WELCOME", "percent": 25}),
            "merge patch of a custom object removes the dropped field"
        );

        for (old, new) in before.iter().zip(&after) {
            if old["kind"] == "Deployment" || old["kind"] == "Coupon" {
                continue;
            }
            assert_eq!(
                resource_version(old),
                resource_version(new),
                "kubectl {}: {}/{} was not in the change but its resourceVersion moved",
                k.version,
                old["kind"],
                old["metadata"]["name"]
            );
        }
    });
}

// 2. The course's YAML examples apply as written, with default validation.
#[test]
fn course_examples_apply_with_default_validation() {
    let files = [
        "example-config",
        "example-secret",
        "example-pod",
        "my-pvc",
        "my-pod",
        "my-app-service",
        "minimal-ingress",
    ];
    let server = TestServer::start();
    for_all_kubectls(|k| {
        let ns = format!("course-{}", k.tag());
        server.create_namespace(&ns);
        for name in files {
            let file = fixture(&format!("course/{name}.yaml"));
            let out = server.ok(k, &["apply", "-f", &file, "-n", &ns]);
            assert!(
                out.contains(&format!("/{name} created")),
                "kubectl {} apply -f {file}: {out}",
                k.version
            );
            assert_file_is_live(&server, k, &file, &["-n", &ns]);
        }
        let cm = get_json(&server, k, Some(&ns), "configmap/example-config");
        assert_eq!(cm["data"]["database_host"], "db.example.com");
        let secret = get_json(&server, k, Some(&ns), "secret/example-secret");
        assert_eq!(secret["data"]["password"], "c2VjcmV0MTIz");
        let pod = get_json(&server, k, Some(&ns), "pod/example-pod");
        assert_eq!(
            pod["spec"]["containers"][0]["env"][1]["valueFrom"]["secretKeyRef"]["key"],
            "username"
        );
        let pvc = get_json(&server, k, Some(&ns), "pvc/my-pvc");
        assert_eq!(pvc["spec"]["resources"]["requests"]["storage"], "1Gi");
        let svc = get_json(&server, k, Some(&ns), "service/my-app-service");
        assert_eq!(svc["spec"]["type"], "LoadBalancer");
        assert_eq!(svc["spec"]["ports"][0]["targetPort"], 3000);
        let ingress = get_json(&server, k, Some(&ns), "ingress/minimal-ingress");
        assert_eq!(
            ingress["spec"]["rules"][0]["http"]["paths"][0]["path"],
            "/testpath"
        );
    });
}

/// `kubectl get -o json` hides managedFields unless asked.
fn managed_fields(obj: &Value) -> BTreeMap<String, Value> {
    obj["metadata"]["managedFields"]
        .as_array()
        .unwrap_or_else(|| panic!("no managedFields in {obj}"))
        .iter()
        .map(|m| {
            (
                m["manager"].as_str().unwrap_or_default().to_owned(),
                m.clone(),
            )
        })
        .collect()
}

// 3. Server-side apply: two managers, a conflict, --force-conflicts, managedFields.
#[test]
fn server_side_apply_conflicts_between_field_managers() {
    let (a, b) = (fixture("apply/ssa-a.yaml"), fixture("apply/ssa-b.yaml"));
    let server = TestServer::start();
    for_all_kubectls(|k| {
        let ns = format!("ssa-{}", k.tag());
        server.create_namespace(&ns);
        let out = server.ok(
            k,
            &[
                "apply",
                "--server-side",
                "--field-manager=a",
                "-f",
                &a,
                "-n",
                &ns,
            ],
        );
        assert!(out.contains("configmap/shared serverside-applied"), "{out}");

        let stderr = server.fails(
            k,
            &[
                "apply",
                "--server-side",
                "--field-manager=b",
                "-f",
                &b,
                "-n",
                &ns,
            ],
        );
        assert!(
            stderr.contains("conflict with \"a\"") && stderr.contains(".data.color"),
            "kubectl {}: the conflict message should name manager a and .data.color:\n{stderr}",
            k.version
        );
        let live = get_json(&server, k, Some(&ns), "configmap/shared");
        assert_eq!(live["data"]["color"], "red", "a conflict writes nothing");

        server.ok(
            k,
            &[
                "apply",
                "--server-side",
                "--field-manager=b",
                "--force-conflicts",
                "-f",
                &b,
                "-n",
                &ns,
            ],
        );
        let out = server.ok(
            k,
            &[
                "get",
                "configmap/shared",
                "-n",
                &ns,
                "-o",
                "json",
                "--show-managed-fields",
            ],
        );
        let live: Value = serde_json::from_str(&out).unwrap();
        assert_eq!(live["data"], json!({"color": "blue", "owner-a": "yes"}));
        let managers = managed_fields(&live);
        assert_eq!(
            managers.keys().collect::<Vec<_>>(),
            ["a", "b"],
            "managedFields: {}",
            live["metadata"]["managedFields"]
        );
        for manager in ["a", "b"] {
            assert_eq!(managers[manager]["operation"], "Apply", "{manager}");
        }
        let a_fields = &managers["a"]["fieldsV1"]["f:data"];
        assert!(
            a_fields.get("f:owner-a").is_some() && a_fields.get("f:color").is_none(),
            "after the forced apply, a keeps owner-a and loses color: {a_fields}"
        );
        assert!(
            managers["b"]["fieldsV1"]["f:data"].get("f:color").is_some(),
            "b owns color: {}",
            managers["b"]["fieldsV1"]
        );
    });
}

/// The changed lines of a unified diff (without the ---/+++ file headers).
fn changed_lines(diff: &str) -> Vec<&str> {
    diff.lines()
        .filter(|l| l.starts_with('+') || l.starts_with('-'))
        .filter(|l| !l.starts_with("+++") && !l.starts_with("---"))
        .collect()
}

// 4. `diff` shows a pending change and writes nothing; `apply --dry-run=server` stores nothing.
#[test]
fn diff_and_server_dry_run_write_nothing() {
    let (v1, v2, draft) = (
        fixture("apply/settings-v1.yaml"),
        fixture("apply/settings-v2.yaml"),
        fixture("apply/draft.yaml"),
    );
    let server = TestServer::start();
    for_all_kubectls(|k| {
        let ns = format!("diff-{}", k.tag());
        server.create_namespace(&ns);
        server.ok(k, &["apply", "-f", &v1, "-n", &ns]);
        let before = get_json(&server, k, Some(&ns), "configmap/settings");
        let mut watch = server.spawn_kubectl(k, &["get", "configmap", "-n", &ns, "-w"]);
        watch.wait_for("the listed settings row", Duration::from_secs(30), |l| {
            l.starts_with("settings ")
        });

        let same = server.kubectl(k, &["diff", "-f", &v1, "-n", &ns]);
        assert_eq!(
            (same.status.and_then(|s| s.code()), same.stdout.as_str()),
            (Some(0), ""),
            "kubectl {} diff of the applied file: no differences expected\nstderr:\n{}",
            k.version,
            same.stderr
        );

        let diff = server.kubectl(k, &["diff", "-f", &v2, "-n", &ns]);
        assert_eq!(
            diff.status.and_then(|s| s.code()),
            Some(1),
            "kubectl {} diff exits 1 when there are differences\nstdout:\n{}\nstderr:\n{}",
            k.version,
            diff.stdout,
            diff.stderr
        );
        let changed = changed_lines(&diff.stdout);
        assert!(
            changed.contains(&"-  mode: safe") && changed.contains(&"+  mode: turbo"),
            "kubectl {} diff should show mode safe -> turbo:\n{}",
            k.version,
            diff.stdout
        );
        assert!(
            changed.iter().all(|l| l.contains("mode")),
            "kubectl {} diff shows changes besides data.mode (and its last-applied copy):\n{}",
            k.version,
            diff.stdout
        );
        let after = get_json(&server, k, Some(&ns), "configmap/settings");
        assert_eq!(after["data"]["mode"], "safe", "diff wrote the change");
        assert_eq!(resource_version(&before), resource_version(&after));

        let new = server.kubectl(k, &["diff", "-f", &draft, "-n", &ns]);
        assert_eq!(new.status.and_then(|s| s.code()), Some(1), "{new:?}");
        assert!(
            changed_lines(&new.stdout).contains(&"+  state: dry"),
            "kubectl {} diff of an absent object shows all of it:\n{}",
            k.version,
            new.stdout
        );
        let out = server.ok(k, &["apply", "--dry-run=server", "-f", &draft, "-n", &ns]);
        assert!(
            out.contains("configmap/draft created (server dry run)"),
            "{out}"
        );
        assert_not_found(&server, k, Some(&ns), "configmap/draft");

        // A real write after the dry runs: the watch sees it, and nothing about draft before it.
        server.ok(k, &["create", "configmap", "sentinel", "-n", &ns]);
        watch.wait_for("the sentinel row", Duration::from_secs(30), |l| {
            assert!(
                !l.starts_with("draft "),
                "kubectl {} get -w saw the dry-run object: {l}",
                k.version
            );
            l.starts_with("sentinel ")
        });
    });
}

// 9. A misspelled field is an error under default validation, naming the field.
#[test]
fn misspelled_field_is_rejected_by_default_validation() {
    let file = fixture("apply/misspelled-deployment.yaml");
    let server = TestServer::start();
    for_all_kubectls(|k| {
        let ns = format!("typo-{}", k.tag());
        server.create_namespace(&ns);
        for verb in ["apply", "create"] {
            let stderr = server.fails(k, &[verb, "-f", &file, "-n", &ns]);
            assert!(
                stderr.contains("unknown field \"spec.replica\""),
                "kubectl {} {verb} -f: the error should name spec.replica:\n{stderr}",
                k.version
            );
            assert_not_found(&server, k, Some(&ns), "deployment/typo");
        }
    });
}

/// Server-side applies that create the same new object at once all succeed: the ones that lose
/// the create race become updates, as upstream's atomic create-on-update (a `kubelab up` addon
/// install racing the server's own default StorageClass once failed with AlreadyExists).
#[test]
fn concurrent_creating_applies_all_succeed() {
    use kube::api::{Api, Patch, PatchParams};
    let server = TestServer::start();
    let failures = server.block_on(async {
        let client = server.client().await;
        let api: Api<k8s_openapi::api::core::v1::ConfigMap> = Api::namespaced(client, "default");
        let mut failures = Vec::new();
        for round in 0..10 {
            let name = format!("raced-{round}");
            let applies = (0..8).map(|i| {
                let api = api.clone();
                let name = name.clone();
                async move {
                    let body = json!({
                        "apiVersion": "v1",
                        "kind": "ConfigMap",
                        "metadata": {"name": name},
                        "data": {format!("k{i}"): "v"},
                    });
                    let params = PatchParams::apply(&format!("manager-{i}")).force();
                    api.patch(&name, &params, &Patch::Apply(body)).await
                }
            });
            for result in futures::future::join_all(applies).await {
                if let Err(e) = result {
                    failures.push(format!("{name}: {e}"));
                }
            }
        }
        failures
    });
    assert!(failures.is_empty(), "{failures:#?}");
}
