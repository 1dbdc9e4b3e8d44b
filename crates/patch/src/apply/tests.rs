//! Server-side apply scenarios: sequences of applies and ordinary writes, then the object, the
//! managedFields entries or the error they end with. Expected `FieldsV1` documents are
//! upstream's (Kubernetes "Server-Side Apply" docs, and what a 1.3x apiserver records for
//! `kubectl create deployment` / `kubectl apply --server-side`).

use serde_json::{json, Value};

use crate::{
    apply, builtin_meta, track_status_update, track_update, ApplyError, ApplyOptions, Conflict,
    LAST_APPLIED_ANNOTATION,
};

const T0: &str = "2024-05-01T10:00:00Z";
const T1: &str = "2024-05-01T11:00:00Z";

enum Step {
    Apply(&'static str, Value),
    Force(&'static str, Value),
    Update(&'static str, Value),
}

struct Scenario {
    name: &'static str,
    steps: Vec<Step>,
    /// The last step's error, if it fails.
    error: Option<&'static str>,
    /// (JSON pointer, value) in the final object; `null` means absent.
    object: Vec<(&'static str, Value)>,
    /// (manager, operation, fieldsV1) of every final entry, in order.
    owners: Vec<(&'static str, &'static str, Value)>,
}

fn meta_of(object: &Value) -> crate::BuiltinMeta {
    builtin_meta(
        object["apiVersion"].as_str().unwrap_or_default(),
        object["kind"].as_str().unwrap_or_default(),
    )
}

fn run(scenarios: Vec<Scenario>) {
    for s in scenarios {
        let mut live: Option<Value> = None;
        let mut error = None;
        for (i, step) in s.steps.iter().enumerate() {
            let now = if i == 0 { T0 } else { T1 };
            let result = match step {
                Step::Apply(manager, config) | Step::Force(manager, config) => {
                    let opts = ApplyOptions {
                        manager,
                        force: matches!(step, Step::Force(..)),
                        now,
                    };
                    apply(live.as_ref(), config, &meta_of(config), &opts)
                }
                Step::Update(manager, new) => {
                    let mut new = new.clone();
                    if let (Some(old), Some(meta)) = (&live, new["metadata"].as_object_mut()) {
                        if let Some(fields) = old["metadata"].get("managedFields") {
                            meta.insert("managedFields".into(), fields.clone());
                        }
                    }
                    let meta = meta_of(&new);
                    track_update(live.as_ref(), &mut new, &meta, manager, now);
                    Ok(new)
                }
            };
            match result {
                Ok(object) => live = Some(object),
                Err(e) if i + 1 == s.steps.len() => error = Some(e),
                Err(e) => panic!("{}: step {i} failed: {e}", s.name),
            }
        }
        assert_eq!(
            error.as_ref().map(ToString::to_string).as_deref(),
            s.error,
            "{}: error",
            s.name
        );
        let live = live.unwrap_or_default();
        for (pointer, want) in &s.object {
            let got = live.pointer(pointer).cloned().unwrap_or(Value::Null);
            assert_eq!(&got, want, "{}: {pointer} in {live:#}", s.name);
        }
        let entries = live["metadata"]["managedFields"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let got: Vec<(String, String, Value)> = entries
            .iter()
            .map(|e| {
                (
                    e["manager"].as_str().unwrap_or_default().to_string(),
                    e["operation"].as_str().unwrap_or_default().to_string(),
                    e["fieldsV1"].clone(),
                )
            })
            .collect();
        let want: Vec<(String, String, Value)> = s
            .owners
            .iter()
            .map(|(m, o, f)| (m.to_string(), o.to_string(), f.clone()))
            .collect();
        assert_eq!(got, want, "{}: managedFields", s.name);
    }
}

fn cm(data: Value) -> Value {
    json!({"apiVersion": "v1", "kind": "ConfigMap",
           "metadata": {"name": "test-cm", "namespace": "default"}, "data": data})
}

fn deploy(replicas: i64, containers: Value) -> Value {
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "default"},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": containers}}
        }
    })
}

fn deploy_containers_only(containers: Value) -> Value {
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "default"},
        "spec": {"template": {"spec": {"containers": containers}}}
    })
}

#[test]
fn scenarios() {
    run(vec![
        Scenario {
            name: "create via apply owns every field of the configuration (docs ConfigMap)",
            steps: vec![Step::Apply(
                "kubectl",
                json!({"apiVersion": "v1", "kind": "ConfigMap",
                       "metadata": {"name": "test-cm", "namespace": "default",
                                    "labels": {"test-label": "test"}},
                       "data": {"key": "some value"}}),
            )],
            error: None,
            object: vec![
                ("/data/key", json!("some value")),
                ("/metadata/labels/test-label", json!("test")),
                ("/metadata/managedFields/0/apiVersion", json!("v1")),
                ("/metadata/managedFields/0/time", json!(T0)),
                ("/metadata/managedFields/0/fieldsType", json!("FieldsV1")),
            ],
            owners: vec![(
                "kubectl",
                "Apply",
                json!({"f:data": {"f:key": {}}, "f:metadata": {"f:labels": {"f:test-label": {}}}}),
            )],
        },
        Scenario {
            name: "re-applying without a field removes it",
            steps: vec![
                Step::Apply("kubectl", cm(json!({"a": "1", "b": "2"}))),
                Step::Apply("kubectl", cm(json!({"a": "1"}))),
            ],
            error: None,
            object: vec![("/data/a", json!("1")), ("/data/b", Value::Null)],
            owners: vec![("kubectl", "Apply", json!({"f:data": {"f:a": {}}}))],
        },
        Scenario {
            name: "a field another applier also applies is not removed",
            steps: vec![
                Step::Apply("a", cm(json!({"x": "1", "y": "2"}))),
                Step::Apply("b", cm(json!({"x": "1"}))),
                Step::Apply("a", cm(json!({"y": "2"}))),
            ],
            error: None,
            object: vec![("/data/x", json!("1")), ("/data/y", json!("2"))],
            owners: vec![
                ("a", "Apply", json!({"f:data": {"f:y": {}}})),
                ("b", "Apply", json!({"f:data": {"f:x": {}}})),
            ],
        },
        Scenario {
            name: "two appliers, same field, different values: conflict",
            steps: vec![
                Step::Apply("mgr-a", cm(json!({"key": "a"}))),
                Step::Apply("mgr-b", cm(json!({"key": "b"}))),
            ],
            error: Some(r#"Apply failed with 1 conflict: conflict with "mgr-a": .data.key"#),
            object: vec![("/data/key", json!("a"))],
            owners: vec![("mgr-a", "Apply", json!({"f:data": {"f:key": {}}}))],
        },
        Scenario {
            name: "force moves ownership",
            steps: vec![
                Step::Apply("mgr-a", cm(json!({"key": "a", "other": "o"}))),
                Step::Force("mgr-b", cm(json!({"key": "b"}))),
            ],
            error: None,
            object: vec![("/data/key", json!("b")), ("/data/other", json!("o"))],
            owners: vec![
                ("mgr-a", "Apply", json!({"f:data": {"f:other": {}}})),
                ("mgr-b", "Apply", json!({"f:data": {"f:key": {}}})),
            ],
        },
        Scenario {
            name: "same value: both own it",
            steps: vec![
                Step::Apply("mgr-a", cm(json!({"key": "v"}))),
                Step::Apply("mgr-b", cm(json!({"key": "v"}))),
            ],
            error: None,
            object: vec![("/data/key", json!("v"))],
            owners: vec![
                ("mgr-a", "Apply", json!({"f:data": {"f:key": {}}})),
                ("mgr-b", "Apply", json!({"f:data": {"f:key": {}}})),
            ],
        },
        Scenario {
            name: "keyed list: two appliers own different containers",
            steps: vec![
                Step::Apply("a", deploy(1, json!([{"name": "a", "image": "nginx"}]))),
                Step::Apply("b", deploy_containers_only(json!([{"name": "b", "image": "redis"}]))),
            ],
            error: None,
            object: vec![
                ("/spec/template/spec/containers/0/name", json!("a")),
                ("/spec/template/spec/containers/1/name", json!("b")),
                ("/spec/template/spec/containers/1/image", json!("redis")),
            ],
            owners: vec![
                (
                    "a",
                    "Apply",
                    json!({"f:spec": {"f:replicas": {}, "f:selector": {}, "f:template": {
                        "f:metadata": {"f:labels": {"f:app": {}}},
                        "f:spec": {"f:containers": {"k:{\"name\":\"a\"}": {
                            ".": {}, "f:image": {}, "f:name": {}}}}}}}),
                ),
                (
                    "b",
                    "Apply",
                    json!({"f:spec": {"f:template": {"f:spec": {"f:containers": {
                        "k:{\"name\":\"b\"}": {".": {}, "f:image": {}, "f:name": {}}}}}}}),
                ),
            ],
        },
        Scenario {
            name: "keyed list: an applier dropping its container removes only that one",
            steps: vec![
                Step::Apply("a", deploy(1, json!([{"name": "a", "image": "nginx"}]))),
                Step::Apply("b", deploy_containers_only(json!([{"name": "b", "image": "redis"}]))),
                Step::Apply("b", deploy_containers_only(json!([]))),
            ],
            error: None,
            object: vec![
                ("/spec/template/spec/containers/0/name", json!("a")),
                ("/spec/template/spec/containers/1", Value::Null),
            ],
            owners: vec![(
                "a",
                "Apply",
                json!({"f:spec": {"f:replicas": {}, "f:selector": {}, "f:template": {
                    "f:metadata": {"f:labels": {"f:app": {}}},
                    "f:spec": {"f:containers": {"k:{\"name\":\"a\"}": {
                        ".": {}, "f:image": {}, "f:name": {}}}}}}}),
            )],
        },
        Scenario {
            name: "keyed list: another applier changing a container's image conflicts",
            steps: vec![
                Step::Apply("a", deploy(1, json!([{"name": "a", "image": "nginx"}]))),
                Step::Apply("b", deploy_containers_only(json!([{"name": "a", "image": "nginx:2"}]))),
            ],
            error: Some(
                r#"Apply failed with 1 conflict: conflict with "a": .spec.template.spec.containers[name="a"].image"#,
            ),
            object: vec![("/spec/template/spec/containers/0/image", json!("nginx"))],
            owners: vec![(
                "a",
                "Apply",
                json!({"f:spec": {"f:replicas": {}, "f:selector": {}, "f:template": {
                    "f:metadata": {"f:labels": {"f:app": {}}},
                    "f:spec": {"f:containers": {"k:{\"name\":\"a\"}": {
                        ".": {}, "f:image": {}, "f:name": {}}}}}}}),
            )],
        },
        Scenario {
            name: "kubectl create, then apply changing replicas: conflict with the updater",
            steps: vec![
                Step::Update("kubectl-create", deploy(1, json!([{"name": "web", "image": "nginx"}]))),
                Step::Apply("kubectl", deploy(3, json!([{"name": "web", "image": "nginx"}]))),
            ],
            error: Some(
                r#"Apply failed with 1 conflict: conflict with "kubectl-create" using apps/v1: .spec.replicas"#,
            ),
            object: vec![("/spec/replicas", json!(1))],
            owners: vec![(
                "kubectl-create",
                "Update",
                json!({"f:spec": {"f:replicas": {}, "f:selector": {}, "f:template": {
                    "f:metadata": {"f:labels": {".": {}, "f:app": {}}},
                    "f:spec": {"f:containers": {"k:{\"name\":\"web\"}": {
                        ".": {}, "f:image": {}, "f:name": {}}}}}}}),
            )],
        },
        Scenario {
            name: "kubectl create, then apply with the same values: shared, no conflict",
            steps: vec![
                Step::Update("kubectl-create", cm(json!({"k": "v"}))),
                Step::Apply("kubectl", cm(json!({"k": "v"}))),
            ],
            error: None,
            object: vec![("/data/k", json!("v"))],
            owners: vec![
                ("kubectl", "Apply", json!({"f:data": {"f:k": {}}})),
                ("kubectl-create", "Update", json!({"f:data": {".": {}, "f:k": {}}})),
            ],
        },
        Scenario {
            name: "an update takes the fields it changes from an applier",
            steps: vec![
                Step::Apply("kubectl", cm(json!({"k": "v", "j": "w"}))),
                Step::Update("kubectl-edit", cm(json!({"k": "edited", "j": "w"}))),
            ],
            error: None,
            object: vec![("/data/k", json!("edited"))],
            owners: vec![
                ("kubectl", "Apply", json!({"f:data": {"f:j": {}}})),
                ("kubectl-edit", "Update", json!({"f:data": {"f:k": {}}})),
            ],
        },
        Scenario {
            name: "an update that changes nothing records nothing",
            steps: vec![
                Step::Apply("kubectl", cm(json!({"k": "v"}))),
                Step::Update("kubectl-edit", cm(json!({"k": "v"}))),
            ],
            error: None,
            object: vec![("/metadata/managedFields/0/time", json!(T0))],
            owners: vec![("kubectl", "Apply", json!({"f:data": {"f:k": {}}}))],
        },
        Scenario {
            name: "several conflicts are grouped by manager",
            steps: vec![
                Step::Apply("a", cm(json!({"x": "1", "y": "1"}))),
                Step::Update("b", cm(json!({"x": "1", "y": "1", "z": "1"}))),
                Step::Apply("c", cm(json!({"x": "2", "y": "2", "z": "2"}))),
            ],
            error: Some(
                "Apply failed with 3 conflicts: conflicts with \"a\":\n- .data.x\n- .data.y\nconflicts with \"b\" using v1:\n- .data.z",
            ),
            object: vec![],
            owners: vec![
                ("a", "Apply", json!({"f:data": {"f:x": {}, "f:y": {}}})),
                ("b", "Update", json!({"f:data": {"f:z": {}}})),
            ],
        },
        Scenario {
            name: "sets own items by value",
            steps: vec![Step::Apply(
                "kubectl",
                json!({"apiVersion": "v1", "kind": "ConfigMap",
                       "metadata": {"name": "c", "finalizers": ["example.com/a", "b"]}}),
            )],
            error: None,
            object: vec![("/metadata/finalizers/1", json!("b"))],
            owners: vec![(
                "kubectl",
                "Apply",
                json!({"f:metadata": {"f:finalizers": {"v:\"b\"": {}, "v:\"example.com/a\"": {}}}}),
            )],
        },
        Scenario {
            name: "status in an applied configuration is ignored",
            steps: vec![Step::Apply(
                "kubectl",
                json!({"apiVersion": "apps/v1", "kind": "Deployment",
                       "metadata": {"name": "d"}, "spec": {"paused": true},
                       "status": {"replicas": 5}}),
            )],
            error: None,
            object: vec![("/status", Value::Null), ("/spec/paused", json!(true))],
            owners: vec![("kubectl", "Apply", json!({"f:spec": {"f:paused": {}}}))],
        },
    ]);
}

#[test]
fn deployment_fields_v1_match_upstream() {
    // `kubectl apply --server-side` of the docs' nginx Deployment.
    let config = json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "nginx-deployment", "labels": {"app": "nginx"}},
        "spec": {
            "replicas": 3,
            "selector": {"matchLabels": {"app": "nginx"}},
            "template": {
                "metadata": {"labels": {"app": "nginx"}},
                "spec": {"containers": [{"name": "nginx", "image": "nginx:1.14.2",
                                         "ports": [{"containerPort": 80}]}]}
            }
        }
    });
    let meta = builtin_meta("apps/v1", "Deployment");
    let opts = ApplyOptions {
        manager: "kubectl",
        force: false,
        now: T0,
    };
    let object = apply(None, &config, &meta, &opts).unwrap();
    assert_eq!(
        object["metadata"]["managedFields"],
        json!([{
            "manager": "kubectl", "operation": "Apply", "apiVersion": "apps/v1", "time": T0,
            "fieldsType": "FieldsV1",
            "fieldsV1": {
                "f:metadata": {"f:labels": {"f:app": {}}},
                "f:spec": {
                    "f:replicas": {},
                    "f:selector": {},
                    "f:template": {
                        "f:metadata": {"f:labels": {"f:app": {}}},
                        "f:spec": {"f:containers": {"k:{\"name\":\"nginx\"}": {
                            ".": {}, "f:image": {}, "f:name": {},
                            "f:ports": {"k:{\"containerPort\":80,\"protocol\":\"TCP\"}": {
                                ".": {}, "f:containerPort": {}}}}}}
                    }
                }
            }
        }])
    );
    assert_eq!(object["spec"]["template"], config["spec"]["template"]);

    // `kubectl create deployment` (after defaulting), recorded as an Update.
    let mut created = json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "nginx", "namespace": "default", "labels": {"app": "nginx"},
                     "uid": "u", "resourceVersion": "1", "creationTimestamp": T0},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": "nginx"}},
            "strategy": {"type": "RollingUpdate",
                         "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}},
            "template": {
                "metadata": {"labels": {"app": "nginx"}},
                "spec": {
                    "containers": [{"name": "nginx", "image": "nginx", "resources": {},
                                    "ports": [{"containerPort": 80, "protocol": "TCP"}]}],
                    "dnsPolicy": "ClusterFirst"
                }
            }
        },
        "status": {}
    });
    track_update(None, &mut created, &meta, "kubectl-create", T0);
    assert_eq!(
        created["metadata"]["managedFields"][0]["fieldsV1"],
        json!({
            "f:metadata": {"f:labels": {".": {}, "f:app": {}}},
            "f:spec": {
                "f:replicas": {},
                "f:selector": {},
                "f:strategy": {"f:rollingUpdate": {".": {}, "f:maxSurge": {}, "f:maxUnavailable": {}},
                               "f:type": {}},
                "f:template": {
                    "f:metadata": {"f:labels": {".": {}, "f:app": {}}},
                    "f:spec": {
                        "f:containers": {"k:{\"name\":\"nginx\"}": {
                            ".": {}, "f:image": {}, "f:name": {},
                            "f:ports": {".": {}, "k:{\"containerPort\":80,\"protocol\":\"TCP\"}": {
                                ".": {}, "f:containerPort": {}, "f:protocol": {}}},
                            "f:resources": {}}},
                        "f:dnsPolicy": {}
                    }
                }
            }
        })
    );
    assert_eq!(
        created["metadata"]["managedFields"][0]["manager"],
        json!("kubectl-create")
    );
}

#[test]
fn conflicts_carry_upstream_causes() {
    let meta = builtin_meta("apps/v1", "Deployment");
    let mut live = deploy(1, json!([{"name": "web", "image": "nginx"}]));
    track_update(None, &mut live, &meta, "kubectl-client-side-apply", T0);
    let opts = ApplyOptions {
        manager: "flux",
        force: false,
        now: T1,
    };
    let err = apply(
        Some(&live),
        &deploy(2, json!([{"name": "web", "image": "nginx:2"}])),
        &meta,
        &opts,
    )
    .unwrap_err();
    let ApplyError::Conflicts(conflicts) = err else {
        panic!("expected conflicts, got {err}");
    };
    let message = r#"conflict with "kubectl-client-side-apply" using apps/v1"#;
    assert_eq!(
        conflicts,
        vec![
            Conflict {
                manager: "kubectl-client-side-apply".into(),
                field: ".spec.replicas".into(),
                message: message.into(),
            },
            Conflict {
                manager: "kubectl-client-side-apply".into(),
                field: r#".spec.template.spec.containers[name="web"].image"#.into(),
                message: message.into(),
            },
        ]
    );
}

#[test]
fn kubectl_takes_over_from_client_side_apply() {
    let meta = builtin_meta("v1", "ConfigMap");
    let mut live = cm(json!({"k": "v"}));
    let last = r#"{"apiVersion":"v1","data":{"k":"v"},"kind":"ConfigMap","metadata":{"annotations":{},"name":"test-cm","namespace":"default"}}"#;
    live["metadata"]["annotations"] = json!({ LAST_APPLIED_ANNOTATION: format!("{last}\n") });
    track_update(None, &mut live, &meta, "kubectl-client-side-apply", T0);

    // Another manager conflicts on the client-side-applied field...
    let other = ApplyOptions {
        manager: "other",
        force: false,
        now: T1,
    };
    assert!(matches!(
        apply(Some(&live), &cm(json!({"k": "new"})), &meta, &other),
        Err(ApplyError::Conflicts(_))
    ));
    // ...kubectl may take it, and rewrites the annotation.
    let kubectl = ApplyOptions {
        manager: "kubectl",
        ..other
    };
    let object = apply(Some(&live), &cm(json!({"k": "new"})), &meta, &kubectl).unwrap();
    assert_eq!(object["data"]["k"], json!("new"));
    assert_eq!(
        object["metadata"]["annotations"][LAST_APPLIED_ANNOTATION],
        json!("{\"apiVersion\":\"v1\",\"data\":{\"k\":\"new\"},\"kind\":\"ConfigMap\",\"metadata\":{\"name\":\"test-cm\",\"namespace\":\"default\"}}\n")
    );
    let managers: Vec<&str> = object["metadata"]["managedFields"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["manager"].as_str().unwrap())
        .collect();
    assert_eq!(managers, ["kubectl", "kubectl-client-side-apply"]);
    assert_eq!(
        object["metadata"]["managedFields"][1]["fieldsV1"],
        // The map itself stays owned: only the changed leaf moved (upstream's non-recursive
        // set difference).
        json!({"f:data": {},
               "f:metadata": {"f:annotations": {".": {}, "f:kubectl.kubernetes.io/last-applied-configuration": {}}}})
    );
}

#[test]
fn invalid_configurations() {
    let meta = builtin_meta("apps/v1", "Deployment");
    let opts = ApplyOptions {
        manager: "kubectl",
        force: false,
        now: T0,
    };
    let live = deploy(1, json!([]));
    let mut with_managed = deploy(1, json!([]));
    with_managed["metadata"]["managedFields"] = json!([]);
    let mut wrong_version = deploy(1, json!([]));
    wrong_version["apiVersion"] = json!("apps/v1beta1");
    let cases: Vec<(&str, Value, &str)> = vec![
        ("not an object", json!([1]), "the applied configuration must be an object"),
        ("no kind", json!({"apiVersion": "v1"}), "the applied configuration must set apiVersion and kind"),
        ("managedFields", with_managed, "metadata.managedFields must be nil"),
        (
            "version",
            wrong_version,
            "Incorrect version specified in apply patch. Specified patch version: apps/v1beta1, expected: apps/v1",
        ),
        (
            "duplicate keys",
            deploy(1, json!([{"name": "a"}, {"name": "a"}])),
            r#"failed to create typed patch object (apps/v1, Kind=Deployment): .spec.template.spec.containers: duplicate entries for key [name="a"]"#,
        ),
        (
            "item without key",
            deploy(1, json!([{"image": "x"}])),
            r#"failed to create typed patch object (apps/v1, Kind=Deployment): .spec.template.spec.containers: element 0: associative list with keys has an element that omits all key fields ["name"] (and doesn't have default values for any key fields)"#,
        ),
        (
            "scalar item in keyed list",
            deploy(1, json!(["x"])),
            r#"failed to create typed patch object (apps/v1, Kind=Deployment): .spec.template.spec.containers: element 0: associative list with keys may not have non-map elements"#,
        ),
    ];
    for (name, config, want) in cases {
        match apply(Some(&live), &config, &meta, &opts) {
            Err(ApplyError::Invalid(message)) => assert_eq!(message, want, "{name}"),
            other => panic!("{name}: expected Invalid, got {other:?}"),
        }
    }
}

#[test]
fn noop_apply_keeps_time_and_status_writes_are_separate() {
    let meta = builtin_meta("apps/v1", "Deployment");
    let config = deploy(1, json!([{"name": "web", "image": "nginx"}]));
    let first = apply(
        None,
        &config,
        &meta,
        &ApplyOptions {
            manager: "kubectl",
            force: false,
            now: T0,
        },
    )
    .unwrap();
    let again = apply(
        Some(&first),
        &config,
        &meta,
        &ApplyOptions {
            manager: "kubectl",
            force: false,
            now: T1,
        },
    )
    .unwrap();
    assert_eq!(again, first);

    let mut with_status = again.clone();
    with_status["status"] = json!({"replicas": 1});
    track_status_update(
        Some(&again),
        &mut with_status,
        &meta,
        "kube-controller-manager",
        T1,
    );
    let entries = with_status["metadata"]["managedFields"].as_array().unwrap();
    assert_eq!(entries.len(), 2);
    assert_eq!(entries[1]["subresource"], json!("status"));
    assert_eq!(
        entries[1]["fieldsV1"],
        json!({"f:status": {"f:replicas": {}}})
    );
    // The main resource's writes never touch status ownership.
    let mut edited = with_status.clone();
    edited["spec"]["paused"] = json!(true);
    track_update(Some(&with_status), &mut edited, &meta, "kubectl-edit", T1);
    let entries = edited["metadata"]["managedFields"].as_array().unwrap();
    assert_eq!(entries.len(), 3);
    assert_eq!(entries[2]["manager"], json!("kubectl-edit"));
    assert_eq!(entries[2]["fieldsV1"], json!({"f:spec": {"f:paused": {}}}));
}

#[test]
fn update_managers_are_capped() {
    let meta = builtin_meta("v1", "ConfigMap");
    let mut live = cm(json!({}));
    for i in 0..12 {
        let mut next = live.clone();
        next["data"][format!("k{i}")] = json!("v");
        let now = format!("2024-05-01T10:00:{i:02}Z");
        track_update(Some(&live), &mut next, &meta, &format!("m{i}"), &now);
        live = next;
    }
    let managers: Vec<&str> = live["metadata"]["managedFields"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["manager"].as_str().unwrap())
        .collect();
    assert_eq!(managers.len(), 10);
    assert_eq!(managers[0], "ancient-changes");
    assert_eq!(
        live["metadata"]["managedFields"][0]["fieldsV1"]["f:data"]
            .as_object()
            .unwrap()
            .len(),
        3, // the fields of m0, m1 and m2
    );
}
