//! Acceptance tests: real kubectl (1.30 and 1.32) and kube-rs against `kubelab server`.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use common::{columns, first_column, fixture, for_each_kubectl, Kubectl, TestServer};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};

const CONFLICT_MESSAGE: &str =
    "the object has been modified; please apply your changes to the latest version and try again";

/// A kubectl AGE cell: "0s", "5m", "2m3s", "4h", "12d", "3y45d".
fn is_age(cell: &str) -> bool {
    cell.chars().next().is_some_and(|c| c.is_ascii_digit())
        && cell.chars().all(|c| c.is_ascii_alphanumeric())
        && cell.ends_with(['s', 'm', 'h', 'd', 'y'])
}

fn header(table: &str) -> Vec<&str> {
    columns(table.lines().next().unwrap_or_default())
}

fn row<'a>(table: &'a str, name: &str) -> Vec<&'a str> {
    table
        .lines()
        .skip(1)
        .map(columns)
        .find(|cols| cols.first() == Some(&name))
        .unwrap_or_else(|| panic!("no row {name:?} in:\n{table}"))
}

fn names(stdout: &str) -> BTreeSet<String> {
    stdout.split_whitespace().map(str::to_owned).collect()
}

fn set<const N: usize>(items: [&str; N]) -> BTreeSet<String> {
    items.iter().map(|s| s.to_string()).collect()
}

fn jsonpath(server: &TestServer, k: &Kubectl, ns: &str, object: &str, path: &str) -> String {
    let arg = format!("jsonpath={{{path}}}");
    server.ok(k, &["get", object, "-n", ns, "-o", &arg])
}

fn resource_version(server: &TestServer, k: &Kubectl, ns: &str, object: &str) -> u64 {
    let rv = jsonpath(server, k, ns, object, ".metadata.resourceVersion");
    rv.trim()
        .parse()
        .unwrap_or_else(|e| panic!("resourceVersion {rv:?} of {object} is not an integer: {e}"))
}

// 1.
#[test]
fn get_namespaces_lists_the_system_namespaces() {
    let server = TestServer::start();
    for_each_kubectl(|k| {
        let out = server.ok(k, &["get", "ns"]);
        assert_eq!(header(&out), ["NAME", "STATUS", "AGE"], "header of:\n{out}");
        for ns in ["default", "kube-system", "kube-public", "kube-node-lease"] {
            let cols = row(&out, ns);
            assert_eq!(cols.len(), 3, "row {cols:?}");
            assert_eq!(cols[1], "Active", "STATUS of {ns} in:\n{out}");
            assert!(is_age(cols[2]), "AGE of {ns} is {:?}", cols[2]);
        }
    });
}

// 2.
#[test]
fn create_from_files_and_get_server_side_tables() {
    let server = TestServer::start();
    for_each_kubectl(|k| {
        let ns = format!("create-{}", k.tag());
        server.create_namespace(&ns);
        let (cm, secret, svc, deploy, pod) = (
            fixture("configmap.yaml"),
            fixture("secret.yaml"),
            fixture("service.yaml"),
            fixture("deployment.yaml"),
            fixture("pod.yaml"),
        );
        let out = server.ok(
            k,
            &[
                "create",
                "--validate=false",
                "-n",
                &ns,
                "-f",
                &cm,
                "-f",
                &secret,
                "-f",
                &svc,
                "-f",
                &deploy,
            ],
        );
        for line in [
            "configmap/app-config created",
            "secret/app-secret created",
            "service/web created",
            "deployment.apps/web created",
        ] {
            assert!(
                out.lines().any(|l| l == line),
                "missing {line:?} in:\n{out}"
            );
        }

        let yaml = server.ok(k, &["get", "cm", "app-config", "-n", &ns, "-o", "yaml"]);
        let cm: serde_yaml::Value = serde_yaml::from_str(&yaml).expect("get -o yaml parses");
        let meta = &cm["metadata"];
        assert_eq!(meta["name"].as_str(), Some("app-config"), "{yaml}");
        assert_eq!(meta["namespace"].as_str(), Some(ns.as_str()), "{yaml}");
        assert!(
            meta["uid"].as_str().is_some_and(|u| u.len() >= 32),
            "uid missing or short:\n{yaml}"
        );
        assert!(
            meta["resourceVersion"]
                .as_str()
                .is_some_and(|rv| !rv.is_empty()),
            "resourceVersion missing:\n{yaml}"
        );
        let created = meta["creationTimestamp"].as_str().unwrap_or_default();
        assert!(
            created.len() == 20 && created.ends_with('Z') && created.as_bytes()[10] == b'T',
            "creationTimestamp {created:?} is not RFC 3339 UTC seconds:\n{yaml}"
        );
        assert_eq!(cm["data"]["greeting"].as_str(), Some("hello"), "{yaml}");

        assert_eq!(
            jsonpath(&server, k, &ns, "secret/app-secret", ".data.password"),
            "czNjcjN0"
        );

        let out = server.ok(k, &["get", "deploy", "-n", &ns]);
        assert_eq!(
            header(&out),
            ["NAME", "READY", "UP-TO-DATE", "AVAILABLE", "AGE"],
            "deployment table:\n{out}"
        );
        let cols = row(&out, "web");
        assert_eq!(cols[1], "0/2", "READY of a deployment nothing runs:\n{out}");
        assert!(is_age(cols[4]), "AGE {:?}", cols[4]);

        let out = server.ok(k, &["get", "svc", "-n", &ns]);
        assert_eq!(
            header(&out),
            [
                "NAME",
                "TYPE",
                "CLUSTER-IP",
                "EXTERNAL-IP",
                "PORT(S)",
                "AGE"
            ],
            "service table:\n{out}"
        );
        let cols = row(&out, "web");
        assert_eq!(cols[1], "ClusterIP", "service TYPE:\n{out}");
        assert_eq!(cols[4], "80/TCP", "service PORT(S):\n{out}");

        let out = server.ok(k, &["create", "--validate=false", "-n", &ns, "-f", &pod]);
        assert_eq!(out.trim(), "pod/solo created");
        let out = server.ok(k, &["get", "pods", "-n", &ns, "-o", "wide"]);
        assert_eq!(
            header(&out),
            [
                "NAME",
                "READY",
                "STATUS",
                "RESTARTS",
                "AGE",
                "IP",
                "NODE",
                "NOMINATED",
                "NODE",
                "READINESS",
                "GATES"
            ],
            "pod wide table:\n{out}"
        );
        let cols = row(&out, "solo");
        assert_eq!(&cols[1..3], ["0/1", "Pending"], "pod row:\n{out}");

        let out = server.ok(k, &["get", "pods", "-n", &ns]);
        assert_eq!(
            header(&out),
            ["NAME", "READY", "STATUS", "RESTARTS", "AGE"],
            "pod table without -o wide:\n{out}"
        );
    });
}

// 3.
#[test]
fn get_watch_prints_added_modified_deleted() {
    let server = TestServer::start();
    for_each_kubectl(|k| {
        let ns = format!("watch-{}", k.tag());
        server.create_namespace(&ns);
        let api: Api<ConfigMap> =
            server.block_on(async { Api::namespaced(server.client().await, &ns) });
        let cm = |name: &str, value: &str| -> ConfigMap {
            serde_json::from_value(serde_json::json!({
                "apiVersion": "v1", "kind": "ConfigMap",
                "metadata": {"name": name}, "data": {"v": value}
            }))
            .unwrap()
        };
        server
            .block_on(api.create(&PostParams::default(), &cm("sentinel", "0")))
            .expect("create sentinel");

        let mut watch = server.spawn_kubectl(
            k,
            &[
                "get",
                "configmaps",
                "-n",
                &ns,
                "-w",
                "--output-watch-events",
            ],
        );
        let event = |ty: &'static str, name: &'static str| {
            move |line: &str| {
                let cols = columns(line);
                cols.len() >= 2 && cols[0] == ty && cols[1] == name
            }
        };
        let deadline = Duration::from_secs(20);
        watch.wait_for(
            "initial ADDED sentinel",
            deadline,
            event("ADDED", "sentinel"),
        );

        server
            .block_on(api.create(&PostParams::default(), &cm("watched", "1")))
            .expect("create watched");
        watch.wait_for("ADDED watched", deadline, event("ADDED", "watched"));

        server
            .block_on(api.patch(
                "watched",
                &PatchParams::default(),
                &Patch::Merge(serde_json::json!({"data": {"v": "2", "w": "3"}})),
            ))
            .expect("patch watched");
        let line = watch.wait_for("MODIFIED watched", deadline, event("MODIFIED", "watched"));
        assert_eq!(
            columns(&line).get(2),
            Some(&"2"),
            "DATA count after patch: {line}"
        );

        server
            .block_on(api.delete("watched", &DeleteParams::default()))
            .expect("delete watched");
        watch.wait_for("DELETED watched", deadline, event("DELETED", "watched"));
        assert!(
            watch.child.try_wait().expect("try_wait").is_none(),
            "kubectl get -w exited: the server closed the watch stream"
        );
    });
}

// 4a.
#[test]
fn delete_removes_the_object() {
    let server = TestServer::start();
    for_each_kubectl(|k| {
        let ns = format!("delete-{}", k.tag());
        server.create_namespace(&ns);
        let cm = fixture("configmap.yaml");
        server.ok(k, &["create", "--validate=false", "-n", &ns, "-f", &cm]);
        let out = server.ok(k, &["delete", "cm", "app-config", "-n", &ns]);
        assert_eq!(out.trim(), "configmap \"app-config\" deleted");
        let err = server.fails(k, &["get", "cm", "app-config", "-n", &ns]);
        assert!(
            err.contains("Error from server (NotFound): configmaps \"app-config\" not found"),
            "get after delete: {err}"
        );
        let err = server.fails(k, &["delete", "cm", "app-config", "-n", &ns]);
        assert!(err.contains("(NotFound)"), "second delete: {err}");
    });
}

// 4b.
#[test]
fn finalizer_holds_the_object_until_removed() {
    let server = TestServer::start();
    for_each_kubectl(|k| {
        let ns = format!("final-{}", k.tag());
        server.create_namespace(&ns);
        let held = fixture("configmap-finalizer.yaml");
        server.ok(k, &["create", "--validate=false", "-n", &ns, "-f", &held]);
        server.ok(k, &["delete", "cm", "held", "-n", &ns, "--wait=false"]);

        let stamp = jsonpath(&server, k, &ns, "cm/held", ".metadata.deletionTimestamp");
        assert!(
            stamp.ends_with('Z') && stamp.contains('T'),
            "deletionTimestamp after delete of a finalized object: {stamp:?}"
        );
        assert_eq!(
            jsonpath(&server, k, &ns, "cm/held", ".metadata.finalizers[0]"),
            "example.com/hold"
        );
        // Still listed, and still there a moment later (nothing removes it on its own).
        let listed = server.ok(k, &["get", "cm", "-n", &ns, "-o", "name"]);
        assert!(listed.lines().any(|l| l == "configmap/held"), "{listed}");

        server.ok(
            k,
            &[
                "patch",
                "cm",
                "held",
                "-n",
                &ns,
                "--type=merge",
                "-p",
                r#"{"metadata":{"finalizers":null}}"#,
            ],
        );
        common::eventually(
            "held configmap gone after its finalizer was removed",
            Duration::from_secs(10),
            || {
                let out = server.kubectl(k, &["get", "cm", "held", "-n", &ns]);
                (!out.success() && out.stderr.contains("(NotFound)")).then_some(())
            },
        );
    });
}

// 4c.
#[test]
fn delete_namespace_removes_its_contents() {
    let server = TestServer::start();
    for_each_kubectl(|k| {
        let ns = format!("doomed-{}", k.tag());
        let out = server.ok(k, &["create", "ns", &ns]);
        assert_eq!(out.trim(), format!("namespace/{ns} created"));
        let cm = fixture("configmap.yaml");
        server.ok(k, &["create", "--validate=false", "-n", &ns, "-f", &cm]);
        let out = server.ok(k, &["delete", "ns", &ns, "--timeout=60s"]);
        assert_eq!(out.trim(), format!("namespace \"{ns}\" deleted"));
        let err = server.fails(k, &["get", "ns", &ns]);
        assert!(err.contains("(NotFound)"), "get ns after delete: {err}");
        let err = server.fails(k, &["get", "cm", "app-config", "-n", &ns]);
        assert!(
            err.contains("(NotFound)"),
            "configmap of a deleted namespace: {err}"
        );
        let left = server.ok(k, &["get", "cm", "-n", &ns, "-o", "name"]);
        assert_eq!(left.trim(), "", "objects left in deleted namespace {ns}");
    });
}

// 5.
#[test]
fn label_annotate_patch_replace_and_stale_update_conflict() {
    let server = TestServer::start();
    for_each_kubectl(|k| {
        let ns = format!("edit-{}", k.tag());
        server.create_namespace(&ns);
        let cm = fixture("configmap.yaml");
        server.ok(k, &["create", "--validate=false", "-n", &ns, "-f", &cm]);
        let obj = "configmap/app-config";
        let mut rv = resource_version(&server, k, &ns, obj);
        let mut check_rv_grew = |what: &str| {
            let now = resource_version(&server, k, &ns, obj);
            assert!(
                now > rv,
                "resourceVersion did not grow after {what}: {rv} -> {now}"
            );
            rv = now;
        };

        let out = server.ok(k, &["label", obj, "-n", &ns, "tier=frontend"]);
        assert_eq!(out.trim(), "configmap/app-config labeled");
        assert_eq!(
            jsonpath(&server, k, &ns, obj, ".metadata.labels.tier"),
            "frontend"
        );
        assert_eq!(
            jsonpath(&server, k, &ns, obj, ".metadata.labels.app"),
            "web"
        );
        check_rv_grew("label");

        let out = server.ok(k, &["annotate", obj, "-n", &ns, "example.com/note=hello"]);
        assert_eq!(out.trim(), "configmap/app-config annotated");
        assert_eq!(
            jsonpath(
                &server,
                k,
                &ns,
                obj,
                r".metadata.annotations.example\.com/note"
            ),
            "hello"
        );
        check_rv_grew("annotate");

        let out = server.ok(k, &["label", obj, "-n", &ns, "tier-"]);
        assert_eq!(out.trim(), "configmap/app-config unlabeled");
        assert_eq!(jsonpath(&server, k, &ns, obj, ".metadata.labels.tier"), "");
        check_rv_grew("unlabel");

        server.ok(
            k,
            &[
                "patch",
                obj,
                "-n",
                &ns,
                "--type=merge",
                "-p",
                r#"{"data":{"mode":"prod"}}"#,
            ],
        );
        assert_eq!(jsonpath(&server, k, &ns, obj, ".data.mode"), "prod");
        assert_eq!(jsonpath(&server, k, &ns, obj, ".data.greeting"), "hello");
        check_rv_grew("merge patch");

        server.ok(
            k,
            &[
                "patch",
                obj,
                "-n",
                &ns,
                "--type=json",
                "-p",
                r#"[{"op":"add","path":"/data/extra","value":"x"},{"op":"remove","path":"/data/greeting"}]"#,
            ],
        );
        assert_eq!(jsonpath(&server, k, &ns, obj, ".data.extra"), "x");
        assert_eq!(jsonpath(&server, k, &ns, obj, ".data.greeting"), "");
        check_rv_grew("json patch");

        let err = server.fails(
            k,
            &[
                "patch",
                obj,
                "-n",
                &ns,
                "--type=json",
                "-p",
                r#"[{"op":"test","path":"/data/mode","value":"nope"}]"#,
            ],
        );
        assert!(
            err.contains("Error from server"),
            "failed json-patch test op: {err}"
        );

        // replace -f with the current object (kubectl keeps the resourceVersion in the file).
        let current = server.ok(k, &["get", obj, "-n", &ns, "-o", "yaml"]);
        let mut edited: serde_yaml::Value = serde_yaml::from_str(&current).unwrap();
        edited["data"]["mode"] = "replaced".into();
        let out = server.ok_stdin(
            k,
            &["replace", "--validate=false", "-n", &ns, "-f", "-"],
            &serde_yaml::to_string(&edited).unwrap(),
        );
        assert_eq!(out.trim(), "configmap/app-config replaced");
        assert_eq!(jsonpath(&server, k, &ns, obj, ".data.mode"), "replaced");
        check_rv_grew("replace");

        // replace -f with the stale resourceVersion: 409 Conflict.
        let mut stale: serde_yaml::Value = serde_yaml::from_str(&current).unwrap();
        stale["data"]["mode"] = "stale".into();
        let out = server.kubectl_stdin(
            k,
            &["replace", "--validate=false", "-n", &ns, "-f", "-"],
            &serde_yaml::to_string(&stale).unwrap(),
        );
        assert!(!out.success(), "stale replace succeeded: {}", out.stdout);
        assert!(
            out.stderr.contains("Error from server (Conflict)")
                && out.stderr.contains(CONFLICT_MESSAGE),
            "stale replace stderr: {}",
            out.stderr
        );
        assert_eq!(jsonpath(&server, k, &ns, obj, ".data.mode"), "replaced");

        // The same through kube-rs: Api::replace with an old resourceVersion.
        server.block_on(async {
            let api: Api<ConfigMap> = Api::namespaced(server.client().await, &ns);
            let mut old = api.get("app-config").await.expect("get");
            api.patch(
                "app-config",
                &PatchParams::default(),
                &Patch::Merge(serde_json::json!({"data": {"bump": "1"}})),
            )
            .await
            .expect("bump");
            old.data
                .get_or_insert_with(Default::default)
                .insert("mode".into(), "kube-rs".into());
            match api
                .replace("app-config", &PostParams::default(), &old)
                .await
            {
                Err(kube::Error::Api(status)) => {
                    assert_eq!(status.code, 409, "{status:?}");
                    assert_eq!(status.reason, "Conflict", "{status:?}");
                    assert!(status.message.contains(CONFLICT_MESSAGE), "{status:?}");
                }
                other => panic!("stale PUT should be a 409 Conflict, got {other:?}"),
            }
        });
    });
}

/// The labels of selector fixture `i` (10 configmaps, sel-00 .. sel-09).
fn selector_labels(suite: &str, i: usize) -> BTreeMap<String, String> {
    let mut labels = BTreeMap::new();
    labels.insert("suite".to_owned(), suite.to_owned());
    labels.insert(
        "app".to_owned(),
        if i.is_multiple_of(2) { "x" } else { "y" }.to_owned(),
    );
    if i != 4 && i != 8 {
        labels.insert("tier".to_owned(), ["web", "db", "cache"][i % 3].to_owned());
    }
    labels.insert("env".to_owned(), ["a", "b", "c", "d"][i % 4].to_owned());
    labels
}

// 6.
#[test]
fn selectors_sorting_jsonpath_and_chunking() {
    let server = TestServer::start();
    for_each_kubectl(|k| {
        let suite = format!("sel-{}", k.tag());
        let ns = suite.clone();
        let other_ns = format!("{suite}-other");
        server.create_namespace(&ns);
        server.create_namespace(&other_ns);
        let order = [7, 2, 9, 0, 5, 3, 8, 1, 6, 4];
        server.block_on(async {
            let client = server.client().await;
            let api: Api<ConfigMap> = Api::namespaced(client.clone(), &ns);
            for i in order {
                let cm: ConfigMap = serde_json::from_value(serde_json::json!({
                    "apiVersion": "v1", "kind": "ConfigMap",
                    "metadata": {"name": format!("sel-{i:02}"), "labels": selector_labels(&suite, i)},
                    "data": {"i": i.to_string()}
                }))
                .unwrap();
                api.create(&PostParams::default(), &cm).await.expect("create");
            }
            let other: Api<ConfigMap> = Api::namespaced(client, &other_ns);
            let cm: ConfigMap = serde_json::from_value(serde_json::json!({
                "apiVersion": "v1", "kind": "ConfigMap",
                "metadata": {"name": "elsewhere", "labels": {"suite": suite, "app": "x", "env": "a"}},
            }))
            .unwrap();
            other.create(&PostParams::default(), &cm).await.expect("create");
        });
        let all: Vec<String> = (0..10).map(|i| format!("sel-{i:02}")).collect();
        let expect = |pred: &dyn Fn(&BTreeMap<String, String>) -> bool| -> BTreeSet<String> {
            (0..10)
                .filter(|&i| pred(&selector_labels(&suite, i)))
                .map(|i| format!("sel-{i:02}"))
                .collect()
        };
        let get_names = |extra: &[&str]| -> BTreeSet<String> {
            let mut args = vec![
                "get",
                "cm",
                "-n",
                &ns,
                "-o",
                "jsonpath={.items[*].metadata.name}",
            ];
            args.extend_from_slice(extra);
            let mut got = names(&server.ok(k, &args));
            got.remove("kube-root-ca.crt");
            got
        };

        let l = |m: &BTreeMap<String, String>, key: &str| m.get(key).cloned();
        assert_eq!(
            get_names(&["-l", "app=x,tier!=db"]),
            expect(
                &|m| l(m, "app").as_deref() == Some("x") && l(m, "tier").as_deref() != Some("db")
            ),
            "-l app=x,tier!=db"
        );
        assert_eq!(
            get_names(&["-l", "env in (a,b)"]),
            expect(&|m| matches!(l(m, "env").as_deref(), Some("a" | "b"))),
            "-l env in (a,b)"
        );
        assert_eq!(
            get_names(&["-l", "!tier"]),
            expect(&|m| !m.contains_key("tier")),
            "-l !tier"
        );
        assert_eq!(
            get_names(&["-l", "app notin (x),env"]),
            expect(&|m| l(m, "app").as_deref() != Some("x") && m.contains_key("env")),
            "-l app notin (x),env"
        );
        assert_eq!(
            get_names(&["--field-selector", "metadata.name=sel-03"]),
            set(["sel-03"]),
            "--field-selector metadata.name=sel-03"
        );
        assert_eq!(
            get_names(&["--field-selector", "metadata.name!=sel-03", "-l", "app=y"]),
            set(["sel-01", "sel-05", "sel-07", "sel-09"]),
            "--field-selector metadata.name!=sel-03 -l app=y"
        );
        assert_eq!(
            get_names(&[]),
            all.iter().cloned().collect(),
            "-o jsonpath over all"
        );

        // -A: across namespaces, with namespace/name pairs.
        let label = format!("suite={suite}");
        let out = server.ok(
            k,
            &[
                "get",
                "cm",
                "-A",
                "-l",
                &label,
                "-o",
                r#"jsonpath={range .items[*]}{.metadata.namespace}/{.metadata.name}{"\n"}{end}"#,
            ],
        );
        let mut expected: BTreeSet<String> = all.iter().map(|n| format!("{ns}/{n}")).collect();
        expected.insert(format!("{other_ns}/elsewhere"));
        assert_eq!(names(&out), expected, "-A -l {label}");
        let out = server.ok(k, &["get", "cm", "-A", "-l", &label]);
        assert_eq!(
            header(&out),
            ["NAMESPACE", "NAME", "DATA", "AGE"],
            "-A table:\n{out}"
        );
        assert_eq!(out.lines().count(), 12, "-A table rows:\n{out}");
        let cols = row(&out, &other_ns);
        assert_eq!(&cols[1..3], ["elsewhere", "0"], "-A row:\n{out}");

        // --sort-by (needs full objects in Table rows).
        let out = server.ok(
            k,
            &[
                "get",
                "cm",
                "-n",
                &ns,
                "-l",
                &label,
                "--sort-by=.metadata.name",
            ],
        );
        assert_eq!(header(&out), ["NAME", "DATA", "AGE"], "{out}");
        assert_eq!(first_column(&out), all, "--sort-by=.metadata.name:\n{out}");
        let out = server.ok(
            k,
            &[
                "get",
                "cm",
                "-n",
                &ns,
                "-l",
                &label,
                "--sort-by=.data.i",
                "-o",
                "name",
            ],
        );
        let sorted: Vec<String> = all.iter().map(|n| format!("configmap/{n}")).collect();
        assert_eq!(
            out.lines().collect::<Vec<_>>(),
            sorted,
            "--sort-by=.data.i -o name"
        );

        // --chunk-size=2: paging with limit/continue returns everything, once.
        for output in [&["-o", "name"][..], &[][..]] {
            let mut args = vec!["get", "cm", "-n", &ns, "-l", &label, "--chunk-size=2"];
            args.extend_from_slice(output);
            let out = server.ok(k, &args);
            let mut got: Vec<String> = if output.is_empty() {
                assert_eq!(header(&out), ["NAME", "DATA", "AGE"], "{out}");
                first_column(&out)
            } else {
                out.lines()
                    .map(|l| l.trim_start_matches("configmap/").to_owned())
                    .collect()
            };
            let count = got.len();
            got.sort();
            got.dedup();
            assert_eq!(
                count, 10,
                "--chunk-size=2 {output:?} returned {count} rows:\n{out}"
            );
            assert_eq!(got, all, "--chunk-size=2 {output:?}");
        }
    });
}

/// (plural, apiVersion, namespaced, kind, short names) of every built-in resource kubelab serves.
const RESOURCES: &[(&str, &str, bool, &str, &[&str])] = &[
    ("namespaces", "v1", false, "Namespace", &["ns"]),
    ("pods", "v1", true, "Pod", &["po"]),
    ("services", "v1", true, "Service", &["svc"]),
    ("endpoints", "v1", true, "Endpoints", &["ep"]),
    ("configmaps", "v1", true, "ConfigMap", &["cm"]),
    ("secrets", "v1", true, "Secret", &[]),
    ("serviceaccounts", "v1", true, "ServiceAccount", &["sa"]),
    ("nodes", "v1", false, "Node", &["no"]),
    ("events", "v1", true, "Event", &["ev"]),
    (
        "persistentvolumes",
        "v1",
        false,
        "PersistentVolume",
        &["pv"],
    ),
    (
        "persistentvolumeclaims",
        "v1",
        true,
        "PersistentVolumeClaim",
        &["pvc"],
    ),
    ("limitranges", "v1", true, "LimitRange", &["limits"]),
    ("resourcequotas", "v1", true, "ResourceQuota", &["quota"]),
    ("deployments", "apps/v1", true, "Deployment", &["deploy"]),
    ("replicasets", "apps/v1", true, "ReplicaSet", &["rs"]),
    ("daemonsets", "apps/v1", true, "DaemonSet", &["ds"]),
    ("statefulsets", "apps/v1", true, "StatefulSet", &["sts"]),
    (
        "controllerrevisions",
        "apps/v1",
        true,
        "ControllerRevision",
        &[],
    ),
    ("jobs", "batch/v1", true, "Job", &[]),
    ("cronjobs", "batch/v1", true, "CronJob", &["cj"]),
    (
        "ingresses",
        "networking.k8s.io/v1",
        true,
        "Ingress",
        &["ing"],
    ),
    (
        "ingressclasses",
        "networking.k8s.io/v1",
        false,
        "IngressClass",
        &[],
    ),
    (
        "networkpolicies",
        "networking.k8s.io/v1",
        true,
        "NetworkPolicy",
        &["netpol"],
    ),
    ("roles", "rbac.authorization.k8s.io/v1", true, "Role", &[]),
    (
        "rolebindings",
        "rbac.authorization.k8s.io/v1",
        true,
        "RoleBinding",
        &[],
    ),
    (
        "clusterroles",
        "rbac.authorization.k8s.io/v1",
        false,
        "ClusterRole",
        &[],
    ),
    (
        "clusterrolebindings",
        "rbac.authorization.k8s.io/v1",
        false,
        "ClusterRoleBinding",
        &[],
    ),
    ("leases", "coordination.k8s.io/v1", true, "Lease", &[]),
    (
        "endpointslices",
        "discovery.k8s.io/v1",
        true,
        "EndpointSlice",
        &[],
    ),
    (
        "storageclasses",
        "storage.k8s.io/v1",
        false,
        "StorageClass",
        &["sc"],
    ),
    (
        "poddisruptionbudgets",
        "policy/v1",
        true,
        "PodDisruptionBudget",
        &["pdb"],
    ),
    ("events", "events.k8s.io/v1", true, "Event", &["ev"]),
    (
        "horizontalpodautoscalers",
        "autoscaling/v2",
        true,
        "HorizontalPodAutoscaler",
        &["hpa"],
    ),
    (
        "customresourcedefinitions",
        "apiextensions.k8s.io/v1",
        false,
        "CustomResourceDefinition",
        &["crd", "crds"],
    ),
];

// 7.
#[test]
fn api_resources_and_kube_rs_discovery() {
    let server = TestServer::start();
    for_each_kubectl(|k| {
        let out = server.ok(k, &["api-resources"]);
        assert_eq!(
            header(&out),
            ["NAME", "SHORTNAMES", "APIVERSION", "NAMESPACED", "KIND"],
            "api-resources header:\n{out}"
        );
        // (name, apiVersion) -> (short names, namespaced, kind)
        let mut rows: BTreeMap<(String, String), (Vec<String>, String, String)> = BTreeMap::new();
        for line in out.lines().skip(1) {
            let cols = columns(line);
            let (name, short, rest) = match cols.len() {
                5 => (
                    cols[0],
                    cols[1].split(',').map(str::to_owned).collect(),
                    &cols[2..],
                ),
                4 => (cols[0], Vec::new(), &cols[1..]),
                _ => panic!("api-resources line {line:?}"),
            };
            rows.insert(
                (name.to_owned(), rest[0].to_owned()),
                (short, rest[1].to_owned(), rest[2].to_owned()),
            );
        }
        let mut problems = Vec::new();
        for (plural, api_version, namespaced, kind, short) in RESOURCES {
            match rows.get(&(plural.to_string(), api_version.to_string())) {
                None => problems.push(format!("{plural} ({api_version}) missing")),
                Some((got_short, got_ns, got_kind)) => {
                    let want: Vec<String> = short.iter().map(|s| s.to_string()).collect();
                    if *got_short != want {
                        problems.push(format!(
                            "{plural}: short names {got_short:?}, want {want:?}"
                        ));
                    }
                    if *got_ns != namespaced.to_string() {
                        problems.push(format!("{plural}: NAMESPACED {got_ns}, want {namespaced}"));
                    }
                    if got_kind != kind {
                        problems.push(format!("{plural}: KIND {got_kind}, want {kind}"));
                    }
                }
            }
        }
        assert!(
            problems.is_empty(),
            "kubectl api-resources:\n{}\n\n{out}",
            problems.join("\n")
        );

        // Short names resolve in get.
        for short in [
            "cm", "ns", "deploy", "sts", "netpol", "crd", "hpa", "pdb", "sc", "quota",
        ] {
            server.ok(k, &["get", short, "-A", "-o", "name"]);
        }
    });

    server.block_on(async {
        let discovery = kube::discovery::Discovery::new(server.client().await)
            .run()
            .await
            .expect("kube-rs discovery");
        let mut problems = Vec::new();
        for (plural, api_version, namespaced, kind, _) in RESOURCES {
            let (group, version) = api_version.rsplit_once('/').unwrap_or(("", api_version));
            let Some(api_group) = discovery.get(group) else {
                problems.push(format!("group {group:?} not discovered"));
                continue;
            };
            let found = api_group
                .versioned_resources(version)
                .into_iter()
                .find(|(ar, _)| ar.plural == *plural);
            match found {
                None => problems.push(format!("{plural} in {api_version} not discovered")),
                Some((ar, caps)) => {
                    if ar.kind != *kind {
                        problems.push(format!("{plural}: kind {}", ar.kind));
                    }
                    let scope_ok = matches!(
                        (&caps.scope, namespaced),
                        (kube::discovery::Scope::Namespaced, true)
                            | (kube::discovery::Scope::Cluster, false)
                    );
                    if !scope_ok {
                        problems.push(format!("{plural}: scope {:?}", caps.scope));
                    }
                    for verb in [
                        "create", "get", "list", "watch", "update", "patch", "delete",
                    ] {
                        if !caps.supports_operation(verb) {
                            problems.push(format!("{plural}: verb {verb} not advertised"));
                        }
                    }
                }
            }
        }
        assert!(
            problems.is_empty(),
            "kube-rs Discovery:\n{}",
            problems.join("\n")
        );
    });
}
