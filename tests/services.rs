//! End-to-end tests of the service-side controllers against `kubelab server --fake-nodes 3`,
//! driven by real kubectl 1.32: Endpoints and EndpointSlices, the `default` ServiceAccount and
//! `kube-root-ca.crt` in every namespace, the garbage collector (Background, Foreground and
//! Orphan), and the LoadBalancer cleanup finalizer.
//!
//! Pods here are bound by hand to a node no simulated node manages (`manual-node`) and their
//! status is written by the test, so readiness and IPs are under the test's control.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::{eventually, Kubectl, TestServer};
use futures::StreamExt;
use k8s_openapi::api::core::v1::Endpoints;
use kube::api::{Api, WatchEvent, WatchParams};
use serde_json::{json, Value};

const DEADLINE: Duration = Duration::from_secs(20);
const MANUAL_NODE: &str = "manual-node";

fn start() -> (TestServer, Kubectl) {
    (
        TestServer::start_args(&["--fake-nodes", "3"]),
        Kubectl::new("1.32"),
    )
}

fn apply(server: &TestServer, k: &Kubectl, manifest: &Value) {
    server.ok_stdin(k, &["apply", "-f", "-"], &manifest.to_string());
}

/// `kubectl get ... -o json`, or None when kubectl fails (e.g. NotFound).
fn get_json(server: &TestServer, k: &Kubectl, args: &[&str]) -> Option<Value> {
    let mut full = vec!["get"];
    full.extend_from_slice(args);
    full.extend_from_slice(&["-o", "json"]);
    let out = server.kubectl(k, &full);
    if !out.success() {
        return None;
    }
    Some(serde_json::from_str(&out.stdout).expect("kubectl -o json"))
}

fn exists(server: &TestServer, k: &Kubectl, ns: &str, object: &str) -> bool {
    get_json(server, k, &[object, "-n", ns]).is_some()
}

fn pod_manifest(ns: &str, name: &str, labels: Value, port: i32) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": ns, "labels": labels},
        "spec": {
            "nodeName": MANUAL_NODE,
            "containers": [{"name": "app", "image": "busybox",
                            "ports": [{"name": "http", "containerPort": port}]}],
        },
    })
}

/// Writes the pod's status as a node agent would: Running with `ip`, Ready or not.
fn set_pod_status(server: &TestServer, k: &Kubectl, ns: &str, pod: &str, ip: &str, ready: bool) {
    let ready = if ready { "True" } else { "False" };
    let patch = json!({"status": {
        "phase": "Running",
        "hostIP": "172.31.255.1",
        "podIP": ip,
        "podIPs": [{"ip": ip}],
        "conditions": [
            {"type": "Ready", "status": ready},
            {"type": "ContainersReady", "status": ready},
        ],
    }});
    server.ok(
        k,
        &[
            "patch",
            "pod",
            pod,
            "-n",
            ns,
            "--subresource=status",
            "--type=merge",
            "-p",
            &patch.to_string(),
        ],
    );
}

fn ips(v: &Value) -> BTreeSet<String> {
    v.as_array()
        .into_iter()
        .flatten()
        .filter_map(|a| a["ip"].as_str().map(str::to_string))
        .collect()
}

fn set(items: &[&str]) -> BTreeSet<String> {
    items.iter().map(|s| s.to_string()).collect()
}

/// (ready addresses, not-ready addresses) over all subsets of the Endpoints.
fn endpoints_addresses(ep: &Value) -> (BTreeSet<String>, BTreeSet<String>) {
    let mut ready = BTreeSet::new();
    let mut not_ready = BTreeSet::new();
    for subset in ep["subsets"].as_array().into_iter().flatten() {
        ready.extend(ips(&subset["addresses"]));
        not_ready.extend(ips(&subset["notReadyAddresses"]));
    }
    (ready, not_ready)
}

/// The managed EndpointSlices of a Service.
fn slices(server: &TestServer, k: &Kubectl, ns: &str, svc: &str) -> Vec<Value> {
    let selector = format!("kubernetes.io/service-name={svc}");
    get_json(server, k, &["endpointslices", "-n", ns, "-l", &selector])
        .map(|l| l["items"].as_array().cloned().unwrap_or_default())
        .unwrap_or_default()
}

/// address → (ready, serving, terminating) over the Service's slices.
fn slice_endpoints(
    server: &TestServer,
    k: &Kubectl,
    ns: &str,
    svc: &str,
) -> std::collections::BTreeMap<String, (bool, bool, bool)> {
    let mut out = std::collections::BTreeMap::new();
    for slice in slices(server, k, ns, svc) {
        for ep in slice["endpoints"].as_array().into_iter().flatten() {
            let c = &ep["conditions"];
            let flag = |f: &str| c[f].as_bool().unwrap_or(false);
            out.insert(
                ep["addresses"][0].as_str().unwrap_or_default().to_string(),
                (flag("ready"), flag("serving"), flag("terminating")),
            );
        }
    }
    out
}

fn wait_endpoints(
    server: &TestServer,
    k: &Kubectl,
    ns: &str,
    svc: &str,
    ready: &[&str],
    not_ready: &[&str],
) -> Value {
    let want = (set(ready), set(not_ready));
    let mut last = None;
    eventually(
        &format!(
            "Endpoints {ns}/{svc} = ready {ready:?}, not ready {not_ready:?} (last: {last:?})"
        ),
        DEADLINE,
        || {
            let ep = get_json(server, k, &["endpoints", svc, "-n", ns])?;
            let got = endpoints_addresses(&ep);
            if got == want {
                Some(ep)
            } else {
                last = Some(got);
                None
            }
        },
    )
}

fn wait_slices(
    server: &TestServer,
    k: &Kubectl,
    ns: &str,
    svc: &str,
    want: &[(&str, (bool, bool, bool))],
) {
    let want: std::collections::BTreeMap<String, (bool, bool, bool)> =
        want.iter().map(|(ip, c)| (ip.to_string(), *c)).collect();
    eventually(
        &format!("EndpointSlices of {ns}/{svc} = {want:?}"),
        DEADLINE,
        || (slice_endpoints(server, k, ns, svc) == want).then_some(()),
    );
}

const READY: (bool, bool, bool) = (true, true, false);
const NOT_READY: (bool, bool, bool) = (false, false, false);

#[test]
fn endpoints_and_slices_follow_the_ready_pods_of_the_selector() {
    let (server, k) = start();
    let ns = "ep";
    server.ok(&k, &["create", "namespace", ns]);
    apply(
        &server,
        &k,
        &json!({
            "apiVersion": "v1", "kind": "Service",
            "metadata": {"name": "web", "namespace": ns, "labels": {"tier": "front"}},
            "spec": {"selector": {"app": "web"},
                     "ports": [{"name": "http", "port": 80, "targetPort": "http"}]},
        }),
    );
    // A Service with no pods yet: empty Endpoints and one placeholder slice.
    eventually("empty Endpoints", DEADLINE, || {
        get_json(&server, &k, &["endpoints", "web", "-n", ns])
    });
    eventually("placeholder EndpointSlice", DEADLINE, || {
        (slices(&server, &k, ns, "web").len() == 1).then_some(())
    });

    for (name, ip, ready) in [
        ("web-a", "10.244.1.10", true),
        ("web-b", "10.244.2.10", true),
        ("web-c", "10.244.3.10", false),
    ] {
        apply(
            &server,
            &k,
            &pod_manifest(ns, name, json!({"app": "web"}), 8080),
        );
        set_pod_status(&server, &k, ns, name, ip, ready);
    }
    // Pods without an IP, and pods of other selectors, are not endpoints.
    apply(
        &server,
        &k,
        &pod_manifest(ns, "web-noip", json!({"app": "web"}), 8080),
    );
    apply(
        &server,
        &k,
        &pod_manifest(ns, "other", json!({"app": "other"}), 8080),
    );
    set_pod_status(&server, &k, ns, "other", "10.244.1.99", true);

    let ep = wait_endpoints(
        &server,
        &k,
        ns,
        "web",
        &["10.244.1.10", "10.244.2.10"],
        &["10.244.3.10"],
    );
    let subset = &ep["subsets"][0];
    assert_eq!(
        subset["ports"][0]["port"], 8080,
        "named targetPort resolved: {ep}"
    );
    assert_eq!(subset["ports"][0]["name"], "http");
    assert_eq!(
        ep["metadata"]["labels"]["tier"], "front",
        "Service labels copied"
    );
    let a = subset["addresses"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["ip"] == "10.244.1.10")
        .unwrap();
    assert_eq!(a["nodeName"], MANUAL_NODE);
    assert_eq!(a["targetRef"]["kind"], "Pod");
    assert_eq!(a["targetRef"]["name"], "web-a");

    wait_slices(
        &server,
        &k,
        ns,
        "web",
        &[
            ("10.244.1.10", READY),
            ("10.244.2.10", READY),
            ("10.244.3.10", NOT_READY),
        ],
    );
    let all = slices(&server, &k, ns, "web");
    assert_eq!(all.len(), 1, "{all:?}");
    let slice = &all[0];
    assert!(slice["metadata"]["name"]
        .as_str()
        .unwrap()
        .starts_with("web-"));
    assert_eq!(slice["addressType"], "IPv4");
    assert_eq!(
        slice["metadata"]["labels"]["endpointslice.kubernetes.io/managed-by"],
        "endpointslice-controller.k8s.io"
    );
    assert_eq!(slice["metadata"]["labels"]["tier"], "front");
    assert_eq!(slice["metadata"]["ownerReferences"][0]["kind"], "Service");
    assert_eq!(slice["metadata"]["ownerReferences"][0]["name"], "web");
    assert_eq!(slice["ports"][0]["port"], 8080);
    assert_eq!(slice["ports"][0]["name"], "http");
    let table = server.ok(&k, &["get", "endpoints", "web", "-n", ns]);
    assert!(table.contains("10.244.1.10:8080"), "{table}");

    // Readiness flips both ways.
    set_pod_status(&server, &k, ns, "web-c", "10.244.3.10", true);
    set_pod_status(&server, &k, ns, "web-a", "10.244.1.10", false);
    wait_endpoints(
        &server,
        &k,
        ns,
        "web",
        &["10.244.2.10", "10.244.3.10"],
        &["10.244.1.10"],
    );
    wait_slices(
        &server,
        &k,
        ns,
        "web",
        &[
            ("10.244.1.10", NOT_READY),
            ("10.244.2.10", READY),
            ("10.244.3.10", READY),
        ],
    );

    // A pod relabeled out of the selector leaves; a new pod joins.
    server.ok(
        &k,
        &["label", "pod", "web-a", "-n", ns, "app=gone", "--overwrite"],
    );
    apply(
        &server,
        &k,
        &pod_manifest(ns, "web-d", json!({"app": "web"}), 8080),
    );
    set_pod_status(&server, &k, ns, "web-d", "10.244.1.11", true);
    wait_endpoints(
        &server,
        &k,
        ns,
        "web",
        &["10.244.1.11", "10.244.2.10", "10.244.3.10"],
        &[],
    );

    // A deleted (terminating) pod leaves the Endpoints at once and stays in the slices as
    // terminating until it is gone.
    server.ok(&k, &["delete", "pod", "web-b", "-n", ns, "--wait=false"]);
    wait_endpoints(&server, &k, ns, "web", &["10.244.1.11", "10.244.3.10"], &[]);
    wait_slices(
        &server,
        &k,
        ns,
        "web",
        &[
            ("10.244.1.11", READY),
            ("10.244.2.10", (false, true, true)),
            ("10.244.3.10", READY),
        ],
    );
    server.ok(
        &k,
        &[
            "delete",
            "pod",
            "web-b",
            "-n",
            ns,
            "--grace-period=0",
            "--force",
        ],
    );
    wait_slices(
        &server,
        &k,
        ns,
        "web",
        &[("10.244.1.11", READY), ("10.244.3.10", READY)],
    );

    // No write storms: reconciles that change nothing write nothing. Watch the Endpoints,
    // poke the Service a few times, then change a pod: the first modification seen must be
    // the one carrying the new pod.
    server.block_on(async {
        let client = server.client().await;
        let api: Api<Endpoints> = Api::namespaced(client, ns);
        let current = api.get("web").await.expect("get endpoints");
        let rv = current.metadata.resource_version.clone().unwrap();
        let params = WatchParams::default().fields("metadata.name=web");
        let mut stream = api.watch(&params, &rv).await.expect("watch").boxed();
        for i in 0..3 {
            let value = format!("poke-{i}");
            let annotation = format!("kubelab.test/poke={value}");
            server.ok(
                &k,
                &[
                    "annotate",
                    "service",
                    "web",
                    "-n",
                    ns,
                    &annotation,
                    "--overwrite",
                ],
            );
        }
        apply(
            &server,
            &k,
            &pod_manifest(ns, "web-e", json!({"app": "web"}), 8080),
        );
        set_pod_status(&server, &k, ns, "web-e", "10.244.2.11", true);
        let event = tokio::time::timeout(DEADLINE, stream.next())
            .await
            .expect("an Endpoints change")
            .expect("watch stream open")
            .expect("watch event");
        match event {
            WatchEvent::Modified(ep) => {
                let v = serde_json::to_value(&ep).unwrap();
                assert!(
                    endpoints_addresses(&v).0.contains("10.244.2.11"),
                    "first write after no-op reconciles must add web-e: {v}"
                );
            }
            other => panic!("unexpected watch event {other:?}"),
        }
    });

    // The Service goes: its Endpoints go; its slices are collected with it.
    server.ok(&k, &["delete", "service", "web", "-n", ns]);
    eventually("Endpoints deleted with the Service", DEADLINE, || {
        (!exists(&server, &k, ns, "endpoints/web")).then_some(())
    });
    eventually(
        "EndpointSlices collected with the Service",
        DEADLINE,
        || slices(&server, &k, ns, "web").is_empty().then_some(()),
    );
}

#[test]
fn named_ports_headless_services_and_services_without_selector() {
    let (server, k) = start();
    let ns = "named";
    server.ok(&k, &["create", "namespace", ns]);
    // Pods whose named port maps to different numbers: one subset per mapping.
    apply(
        &server,
        &k,
        &pod_manifest(ns, "db-0", json!({"app": "db"}), 5432),
    );
    apply(
        &server,
        &k,
        &pod_manifest(ns, "db-1", json!({"app": "db"}), 6432),
    );
    set_pod_status(&server, &k, ns, "db-0", "10.244.1.20", true);
    set_pod_status(&server, &k, ns, "db-1", "10.244.2.20", true);
    apply(
        &server,
        &k,
        &json!({
            "apiVersion": "v1", "kind": "Service",
            "metadata": {"name": "db", "namespace": ns},
            "spec": {"clusterIP": "None", "selector": {"app": "db"},
                     "ports": [{"name": "pg", "port": 5432, "targetPort": "http"}]},
        }),
    );
    let ep = wait_endpoints(&server, &k, ns, "db", &["10.244.1.20", "10.244.2.20"], &[]);
    let mut mappings: Vec<(i64, Vec<String>)> = ep["subsets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["ports"][0]["port"].as_i64().unwrap(),
                ips(&s["addresses"]).into_iter().collect(),
            )
        })
        .collect();
    mappings.sort();
    assert_eq!(
        mappings,
        vec![
            (5432, vec!["10.244.1.20".to_string()]),
            (6432, vec!["10.244.2.20".to_string()])
        ]
    );
    assert_eq!(
        ep["metadata"]["labels"]["service.kubernetes.io/headless"],
        ""
    );
    // Headless: endpoints but no cluster IP.
    let svc = get_json(&server, &k, &["service", "db", "-n", ns]).unwrap();
    assert_eq!(svc["spec"]["clusterIP"], "None");
    let table = server.ok(&k, &["get", "service", "db", "-n", ns]);
    assert!(table.lines().nth(1).unwrap().contains("None"), "{table}");
    eventually("two slices, one per port mapping", DEADLINE, || {
        let s = slices(&server, &k, ns, "db");
        let ports: BTreeSet<i64> = s
            .iter()
            .filter_map(|s| s["ports"][0]["port"].as_i64())
            .collect();
        (s.len() == 2 && ports == BTreeSet::from([5432, 6432])).then_some(())
    });
    for s in slices(&server, &k, ns, "db") {
        assert_eq!(
            s["metadata"]["labels"]["service.kubernetes.io/headless"],
            ""
        );
    }

    // Hostname and subdomain naming the Service show in the addresses.
    apply(
        &server,
        &k,
        &json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "db-2", "namespace": ns, "labels": {"app": "db"}},
            "spec": {"nodeName": MANUAL_NODE, "hostname": "db-2", "subdomain": "db",
                     "containers": [{"name": "app", "image": "busybox",
                                     "ports": [{"name": "http", "containerPort": 5432}]}]},
        }),
    );
    set_pod_status(&server, &k, ns, "db-2", "10.244.3.20", true);
    let ep = wait_endpoints(
        &server,
        &k,
        ns,
        "db",
        &["10.244.1.20", "10.244.2.20", "10.244.3.20"],
        &[],
    );
    let hostnames: Vec<&str> = ep["subsets"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|s| s["addresses"].as_array().unwrap().iter())
        .filter_map(|a| a["hostname"].as_str())
        .collect();
    assert_eq!(hostnames, ["db-2"], "{ep}");

    // A Service without a selector: its Endpoints are the user's, left alone.
    apply(
        &server,
        &k,
        &json!({
            "apiVersion": "v1", "kind": "Service",
            "metadata": {"name": "external", "namespace": ns},
            "spec": {"ports": [{"port": 80}]},
        }),
    );
    apply(
        &server,
        &k,
        &json!({
            "apiVersion": "v1", "kind": "Endpoints",
            "metadata": {"name": "external", "namespace": ns},
            "subsets": [{"addresses": [{"ip": "192.0.2.1"}], "ports": [{"port": 80}]}],
        }),
    );
    // Once another Service in the namespace was reconciled after it, the user's Endpoints are
    // known to have been seen; they must be unchanged.
    apply(
        &server,
        &k,
        &pod_manifest(ns, "db-3", json!({"app": "db"}), 5432),
    );
    set_pod_status(&server, &k, ns, "db-3", "10.244.3.21", true);
    wait_endpoints(
        &server,
        &k,
        ns,
        "db",
        &["10.244.1.20", "10.244.2.20", "10.244.3.20", "10.244.3.21"],
        &[],
    );
    let external = get_json(&server, &k, &["endpoints", "external", "-n", ns]).unwrap();
    assert_eq!(endpoints_addresses(&external).0, set(&["192.0.2.1"]));
    // They are mirrored into an EndpointSlice, which follows them.
    let mirrored = |want: &[&str]| {
        let want = set(want);
        eventually(
            &format!("mirrored EndpointSlice of external = {want:?}"),
            DEADLINE,
            || {
                let all = slices(&server, &k, ns, "external");
                let got: BTreeSet<String> = all
                    .iter()
                    .flat_map(|s| s["endpoints"].as_array().cloned().unwrap_or_default())
                    .filter_map(|e| e["addresses"][0].as_str().map(str::to_string))
                    .collect();
                let managed_by_mirroring = all.iter().all(|s| {
                    s["metadata"]["labels"]["endpointslice.kubernetes.io/managed-by"]
                        == "endpointslicemirroring-controller.k8s.io"
                });
                (got == want && managed_by_mirroring && (all.len() == 1 || want.is_empty()))
                    .then_some(all)
            },
        )
    };
    let all = mirrored(&["192.0.2.1"]);
    assert_eq!(all[0]["ports"][0]["port"], 80);
    assert_eq!(all[0]["metadata"]["ownerReferences"][0]["name"], "external");
    server.ok(
        &k,
        &[
            "patch",
            "endpoints",
            "external",
            "-n",
            ns,
            "--type=merge",
            "-p",
            r#"{"subsets":[{"addresses":[{"ip":"192.0.2.1"},{"ip":"192.0.2.2"}],"ports":[{"port":80}]}]}"#,
        ],
    );
    mirrored(&["192.0.2.1", "192.0.2.2"]);
    server.ok(&k, &["delete", "endpoints", "external", "-n", ns]);
    mirrored(&[]);

    // The API server's own Service has an EndpointSlice too.
    eventually("EndpointSlice default/kubernetes", DEADLINE, || {
        let s = get_json(
            &server,
            &k,
            &["endpointslice", "kubernetes", "-n", "default"],
        )?;
        (s["ports"][0]["name"] == "https" && s["endpoints"][0]["addresses"][0] == "127.0.0.1")
            .then_some(())
    });
}

#[test]
fn every_namespace_has_the_default_service_account_and_the_root_ca() {
    let (server, k) = start();
    let ca = std::fs::read_to_string(server.data_dir().join("tls/ca.crt")).expect("cluster CA");
    let root_ca = |ns: &str| -> Option<String> {
        let cm = get_json(&server, &k, &["configmap", "kube-root-ca.crt", "-n", ns])?;
        cm["data"]["ca.crt"].as_str().map(str::to_string)
    };
    server.ok(&k, &["create", "namespace", "team-a"]);
    for ns in [
        "default",
        "kube-system",
        "kube-public",
        "kube-node-lease",
        "team-a",
    ] {
        eventually(&format!("ServiceAccount default in {ns}"), DEADLINE, || {
            exists(&server, &k, ns, "serviceaccount/default").then_some(())
        });
        eventually(&format!("kube-root-ca.crt in {ns}"), DEADLINE, || {
            (root_ca(ns)? == ca).then_some(())
        });
    }
    let out = server.ok(&k, &["get", "serviceaccounts", "-n", "team-a"]);
    assert!(out.lines().any(|l| l.starts_with("default ")), "{out}");

    // Deleted: recreated. Changed: corrected.
    server.ok(&k, &["delete", "serviceaccount", "default", "-n", "team-a"]);
    server.ok(
        &k,
        &["delete", "configmap", "kube-root-ca.crt", "-n", "team-a"],
    );
    eventually("ServiceAccount default recreated", DEADLINE, || {
        exists(&server, &k, "team-a", "serviceaccount/default").then_some(())
    });
    eventually("kube-root-ca.crt recreated", DEADLINE, || {
        (root_ca("team-a")? == ca).then_some(())
    });
    server.ok(
        &k,
        &[
            "patch",
            "configmap",
            "kube-root-ca.crt",
            "-n",
            "team-a",
            "--type=merge",
            "-p",
            r#"{"data":{"ca.crt":"tampered","extra":"x"}}"#,
        ],
    );
    eventually("kube-root-ca.crt corrected", DEADLINE, || {
        let cm = get_json(
            &server,
            &k,
            &["configmap", "kube-root-ca.crt", "-n", "team-a"],
        )?;
        (cm["data"] == json!({"ca.crt": ca})).then_some(())
    });

    // A namespace being deleted goes away (nothing recreates its contents).
    server.ok(&k, &["delete", "namespace", "team-a", "--timeout=20s"]);
    assert!(server
        .kubectl(&k, &["get", "namespace", "team-a"])
        .stderr
        .contains("NotFound"));
}

fn config_map(ns: &str, name: &str, owners: Value, finalizers: &[&str]) -> Value {
    json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": ns, "ownerReferences": owners,
                     "finalizers": finalizers},
        "data": {"k": "v"},
    })
}

fn uid(server: &TestServer, k: &Kubectl, ns: &str, object: &str) -> String {
    get_json(server, k, &[object, "-n", ns]).unwrap()["metadata"]["uid"]
        .as_str()
        .unwrap()
        .to_string()
}

fn owner(name: &str, uid: &str, block: bool) -> Value {
    json!({"apiVersion": "v1", "kind": "ConfigMap", "name": name, "uid": uid,
           "blockOwnerDeletion": block})
}

#[test]
fn garbage_collector_background_dangling_and_unknown_kinds() {
    let (server, k) = start();
    let ns = "gc";
    server.ok(&k, &["create", "namespace", ns]);
    apply(&server, &k, &config_map(ns, "owner", json!([]), &[]));
    apply(&server, &k, &config_map(ns, "keeper", json!([]), &[]));
    let owner_uid = uid(&server, &k, ns, "configmap/owner");
    let keeper_uid = uid(&server, &k, ns, "configmap/keeper");
    apply(
        &server,
        &k,
        &config_map(ns, "child", json!([owner("owner", &owner_uid, false)]), &[]),
    );
    apply(
        &server,
        &k,
        &config_map(
            ns,
            "shared",
            json!([
                owner("owner", &owner_uid, false),
                owner("keeper", &keeper_uid, false)
            ]),
            &[],
        ),
    );
    // An owner of a kind that does not exist: never collected on its account.
    apply(
        &server,
        &k,
        &config_map(
            ns,
            "unknown-kind",
            json!([{"apiVersion": "example.com/v1", "kind": "Nope", "name": "x", "uid": "u-x"}]),
            &[],
        ),
    );
    // Same name as the owner, different uid: the owner is gone.
    apply(
        &server,
        &k,
        &config_map(
            ns,
            "wrong-uid",
            json!([owner(
                "owner",
                "00000000-0000-0000-0000-000000000000",
                false
            )]),
            &[],
        ),
    );
    eventually(
        "dependent of an owner with another uid collected",
        DEADLINE,
        || (!exists(&server, &k, ns, "configmap/wrong-uid")).then_some(()),
    );
    assert!(
        exists(&server, &k, ns, "configmap/child"),
        "owner alive: child stays"
    );

    server.ok(&k, &["delete", "configmap", "owner", "-n", ns]);
    eventually("dependent collected after its owner", DEADLINE, || {
        (!exists(&server, &k, ns, "configmap/child")).then_some(())
    });
    eventually(
        "reference to the deleted owner removed, object kept",
        DEADLINE,
        || {
            let cm = get_json(&server, &k, &["configmap", "shared", "-n", ns])?;
            let owners = cm["metadata"]["ownerReferences"].as_array()?.clone();
            (owners.len() == 1 && owners[0]["name"] == "keeper").then_some(())
        },
    );
    assert!(exists(&server, &k, ns, "configmap/unknown-kind"));
    // A dependent created for an owner already gone is collected too.
    apply(
        &server,
        &k,
        &config_map(ns, "late", json!([owner("owner", &owner_uid, false)]), &[]),
    );
    eventually("late dependent of a gone owner collected", DEADLINE, || {
        (!exists(&server, &k, ns, "configmap/late")).then_some(())
    });
    assert!(exists(&server, &k, ns, "configmap/unknown-kind"));
    assert!(exists(&server, &k, ns, "configmap/keeper"));
}

#[test]
fn garbage_collector_foreground_and_orphan_deletion() {
    let (server, k) = start();
    let ns = "cascade";
    server.ok(&k, &["create", "namespace", ns]);

    // Foreground: the API server adds the `foregroundDeletion` finalizer, the garbage
    // collector deletes the blocking dependents, then removes it.
    apply(&server, &k, &config_map(ns, "fg-owner", json!([]), &[]));
    let fg_uid = uid(&server, &k, ns, "configmap/fg-owner");
    apply(
        &server,
        &k,
        &config_map(
            ns,
            "fg-held",
            json!([owner("fg-owner", &fg_uid, true)]),
            &["kubelab.test/hold"],
        ),
    );
    apply(
        &server,
        &k,
        &config_map(
            ns,
            "fg-plain",
            json!([owner("fg-owner", &fg_uid, true)]),
            &[],
        ),
    );
    apply(
        &server,
        &k,
        &config_map(
            ns,
            "fg-nonblocking",
            json!([owner("fg-owner", &fg_uid, false)]),
            &[],
        ),
    );
    server.ok(
        &k,
        &[
            "delete",
            "configmap",
            "fg-owner",
            "-n",
            ns,
            "--cascade=foreground",
            "--wait=false",
        ],
    );
    eventually("dependents deleted first", DEADLINE, || {
        let held = get_json(&server, &k, &["configmap", "fg-held", "-n", ns])?;
        (held["metadata"]["deletionTimestamp"].is_string()
            && !exists(&server, &k, ns, "configmap/fg-plain")
            && !exists(&server, &k, ns, "configmap/fg-nonblocking"))
        .then_some(())
    });
    let owner_now = get_json(&server, &k, &["configmap", "fg-owner", "-n", ns])
        .expect("owner waits for its blocking dependent");
    assert!(owner_now["metadata"]["deletionTimestamp"].is_string());
    server.ok(
        &k,
        &[
            "patch",
            "configmap",
            "fg-held",
            "-n",
            ns,
            "--type=merge",
            "-p",
            r#"{"metadata":{"finalizers":null}}"#,
        ],
    );
    eventually(
        "owner deleted once its dependents are gone",
        DEADLINE,
        || (!exists(&server, &k, ns, "configmap/fg-owner")).then_some(()),
    );

    // An object without dependents deleted in foreground goes at once.
    apply(&server, &k, &config_map(ns, "lonely", json!([]), &[]));
    server.ok(
        &k,
        &[
            "delete",
            "configmap",
            "lonely",
            "-n",
            ns,
            "--cascade=foreground",
            "--timeout=20s",
        ],
    );

    // Orphan: the API server adds the `orphan` finalizer; the garbage collector removes the
    // references to the owner from its dependents, then the finalizer.
    apply(&server, &k, &config_map(ns, "or-owner", json!([]), &[]));
    let or_uid = uid(&server, &k, ns, "configmap/or-owner");
    apply(&server, &k, &config_map(ns, "or-owner-2", json!([]), &[]));
    let or2_uid = uid(&server, &k, ns, "configmap/or-owner-2");
    for name in ["or-a", "or-b"] {
        apply(
            &server,
            &k,
            &config_map(
                ns,
                name,
                json!([
                    owner("or-owner", &or_uid, true),
                    owner("or-owner-2", &or2_uid, false)
                ]),
                &[],
            ),
        );
    }
    server.ok(
        &k,
        &[
            "delete",
            "configmap",
            "or-owner",
            "-n",
            ns,
            "--cascade=orphan",
            "--timeout=20s",
        ],
    );
    for name in ["or-a", "or-b"] {
        let cm = get_json(&server, &k, &["configmap", name, "-n", ns]).expect("orphan kept");
        let owners: Vec<&str> = cm["metadata"]["ownerReferences"]
            .as_array()
            .unwrap()
            .iter()
            .map(|o| o["name"].as_str().unwrap())
            .collect();
        assert_eq!(owners, ["or-owner-2"], "{cm}");
    }
}

#[test]
fn load_balancer_services_carry_the_cleanup_finalizer() {
    let (server, k) = start();
    let ns = "lb";
    let finalizer = "service.kubernetes.io/load-balancer-cleanup";
    server.ok(&k, &["create", "namespace", ns]);
    server.ok(
        &k,
        &[
            "create",
            "service",
            "loadbalancer",
            "front",
            "-n",
            ns,
            "--tcp=80:8080",
        ],
    );
    let finalizers = |name: &str| -> Option<Vec<String>> {
        let svc = get_json(&server, &k, &["service", name, "-n", ns])?;
        Some(
            svc["metadata"]["finalizers"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|f| f.as_str().map(str::to_string))
                .collect(),
        )
    };
    eventually("LoadBalancer Service gets the finalizer", DEADLINE, || {
        (finalizers("front")? == [finalizer]).then_some(())
    });
    server.ok(
        &k,
        &[
            "patch",
            "service",
            "front",
            "-n",
            ns,
            "--subresource=status",
            "--type=merge",
            "-p",
            r#"{"status":{"loadBalancer":{"ingress":[{"ip":"192.0.2.10"}]}}}"#,
        ],
    );
    // No longer a LoadBalancer: status cleared, finalizer gone.
    server.ok(
        &k,
        &[
            "patch",
            "service",
            "front",
            "-n",
            ns,
            "--type=merge",
            "-p",
            r#"{"spec":{"type":"ClusterIP"}}"#,
        ],
    );
    eventually(
        "finalizer and load balancer status removed",
        DEADLINE,
        || {
            let svc = get_json(&server, &k, &["service", "front", "-n", ns])?;
            (finalizers("front")?.is_empty()
                && svc["status"]["loadBalancer"]["ingress"]
                    .as_array()
                    .is_none_or(|i| i.is_empty()))
            .then_some(())
        },
    );
    let events = server.ok(
        &k,
        &[
            "get",
            "events",
            "-n",
            ns,
            "--field-selector",
            "reason=DeletedLoadBalancer",
            "-o",
            "name",
        ],
    );
    assert_eq!(events.lines().count(), 1, "{events}");
    // Back to LoadBalancer, then deleted: the delete completes.
    server.ok(
        &k,
        &[
            "patch",
            "service",
            "front",
            "-n",
            ns,
            "--type=merge",
            "-p",
            r#"{"spec":{"type":"LoadBalancer"}}"#,
        ],
    );
    eventually("finalizer added again", DEADLINE, || {
        (finalizers("front")? == [finalizer]).then_some(())
    });
    server.ok(
        &k,
        &["delete", "service", "front", "-n", ns, "--timeout=20s"],
    );
    assert!(finalizers("front").is_none());
}

/// Sets a readiness-gate condition on a pod; strategic merge keeps the node's conditions.
fn set_gate(server: &TestServer, k: &Kubectl, ns: &str, pod: &str, ok: bool) {
    let patch = json!({"status": {"conditions": [
        {"type": "kubelab.test/gate", "status": if ok { "True" } else { "False" }}
    ]}});
    server.ok(
        k,
        &[
            "patch",
            "pod",
            pod,
            "-n",
            ns,
            "--subresource=status",
            "-p",
            &patch.to_string(),
        ],
    );
}

#[test]
fn endpoints_of_pods_scheduled_on_simulated_nodes() {
    let (server, k) = start();
    let ns = "sim";
    server.ok(&k, &["create", "namespace", ns]);
    server.ok(
        &k,
        &[
            "create",
            "service",
            "nodeport",
            "web",
            "-n",
            ns,
            "--tcp=80:http",
        ],
    );
    let svc = get_json(&server, &k, &["service", "web", "-n", ns]).unwrap();
    let cluster_ip: std::net::Ipv4Addr =
        svc["spec"]["clusterIP"].as_str().unwrap().parse().unwrap();
    let octets = cluster_ip.octets();
    assert!(
        octets[0] == 10 && (96..112).contains(&octets[1]),
        "ClusterIP in 10.96.0.0/12: {svc}"
    );
    let node_port = svc["spec"]["ports"][0]["nodePort"].as_i64().unwrap();
    assert!((30000..=32767).contains(&node_port), "{svc}");

    // Scheduled by the scheduler, run by the simulated nodes; Ready only once the test opens
    // their readiness gate.
    for i in 0..3 {
        let mut pod = pod_manifest(ns, &format!("web-{i}"), json!({"app": "web"}), 8080);
        let spec = pod["spec"].as_object_mut().unwrap();
        spec.remove("nodeName");
        spec.insert(
            "readinessGates".into(),
            json!([{"conditionType": "kubelab.test/gate"}]),
        );
        apply(&server, &k, &pod);
    }
    let pod_ips = eventually("pods running with IPs", DEADLINE, || {
        let pods = get_json(&server, &k, &["pods", "-n", ns, "-l", "app=web"])?;
        let ips: Vec<String> = pods["items"]
            .as_array()?
            .iter()
            .filter(|p| p["status"]["phase"] == "Running")
            .filter_map(|p| p["status"]["podIP"].as_str().map(str::to_string))
            .collect();
        (ips.len() == 3).then_some(ips)
    });
    let ip = |i: usize| pod_ips[i].as_str();
    let ep = wait_endpoints(&server, &k, ns, "web", &[], &[ip(0), ip(1), ip(2)]);
    let nodes: BTreeSet<&str> = ep["subsets"][0]["notReadyAddresses"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|a| a["nodeName"].as_str())
        .collect();
    assert!(nodes.iter().all(|n| n.starts_with("fake-node-")), "{ep}");

    for i in 0..3 {
        set_gate(&server, &k, ns, &format!("web-{i}"), true);
    }
    server.ok(
        &k,
        &[
            "wait",
            "--for=condition=Ready",
            "pod",
            "-l",
            "app=web",
            "-n",
            ns,
            "--timeout=20s",
        ],
    );
    wait_endpoints(&server, &k, ns, "web", &[ip(0), ip(1), ip(2)], &[]);
    wait_slices(
        &server,
        &k,
        ns,
        "web",
        &[(ip(0), READY), (ip(1), READY), (ip(2), READY)],
    );

    set_gate(&server, &k, ns, "web-1", false);
    wait_endpoints(&server, &k, ns, "web", &[ip(0), ip(2)], &[ip(1)]);

    // Deleting a pod waits for its node to finalize it; then it is gone everywhere.
    server.ok(&k, &["delete", "pod", "web-2", "-n", ns, "--timeout=20s"]);
    wait_endpoints(&server, &k, ns, "web", &[ip(0)], &[ip(1)]);
    wait_slices(
        &server,
        &k,
        ns,
        "web",
        &[(ip(0), READY), (ip(1), NOT_READY)],
    );

    // A namespace with a Service, its Endpoints and slices, and running pods goes away.
    server.ok(&k, &["delete", "namespace", ns, "--timeout=30s"]);
}

/// IPs of the Running pods matching `selector`.
fn running_pod_ips(server: &TestServer, k: &Kubectl, ns: &str, selector: &str) -> BTreeSet<String> {
    get_json(server, k, &["pods", "-n", ns, "-l", selector])
        .map(|pods| {
            pods["items"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|p| p["status"]["phase"] == "Running")
                .filter(|p| p["metadata"]["deletionTimestamp"].is_null())
                .filter_map(|p| p["status"]["podIP"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// Waits until the Endpoints and the EndpointSlices of `svc` hold exactly the `n` Running pods
/// of `selector`, all ready.
fn wait_service_backends(
    server: &TestServer,
    k: &Kubectl,
    ns: &str,
    svc: &str,
    selector: &str,
    n: usize,
) {
    eventually(
        &format!("{ns}/{svc} backed by exactly its {n} running pods"),
        Duration::from_secs(30),
        || {
            let pods = running_pod_ips(server, k, ns, selector);
            if pods.len() != n {
                return None;
            }
            let ep = get_json(server, k, &["endpoints", svc, "-n", ns])?;
            let slice_ready: BTreeSet<String> = slice_endpoints(server, k, ns, svc)
                .into_iter()
                .filter(|(_, c)| *c == READY)
                .map(|(ip, _)| ip)
                .collect();
            (endpoints_addresses(&ep) == (pods.clone(), BTreeSet::new()) && slice_ready == pods)
                .then_some(())
        },
    );
}

#[test]
fn service_of_a_deployment_follows_scaling_and_its_namespace_deletes() {
    let (server, k) = start();
    let ns = "shop";
    server.ok(&k, &["create", "namespace", ns]);
    server.ok(
        &k,
        &[
            "create",
            "deployment",
            "web",
            "-n",
            ns,
            "--image=busybox",
            "--replicas=3",
            "--port=8080",
        ],
    );
    server.ok(
        &k,
        &[
            "expose",
            "deployment",
            "web",
            "-n",
            ns,
            "--port=80",
            "--target-port=8080",
        ],
    );
    server.ok(
        &k,
        &[
            "rollout",
            "status",
            "deployment/web",
            "-n",
            ns,
            "--timeout=60s",
        ],
    );
    wait_service_backends(&server, &k, ns, "web", "app=web", 3);

    server.ok(
        &k,
        &["scale", "deployment", "web", "-n", ns, "--replicas=5"],
    );
    server.ok(
        &k,
        &[
            "rollout",
            "status",
            "deployment/web",
            "-n",
            ns,
            "--timeout=60s",
        ],
    );
    wait_service_backends(&server, &k, ns, "web", "app=web", 5);

    server.ok(
        &k,
        &["scale", "deployment", "web", "-n", ns, "--replicas=1"],
    );
    wait_service_backends(&server, &k, ns, "web", "app=web", 1);

    // Deleting the namespace removes the Deployment, its ReplicaSets and pods, the Service and
    // its Endpoints and slices, and completes.
    server.ok(&k, &["delete", "namespace", ns, "--timeout=60s"]);
    assert!(server
        .kubectl(&k, &["get", "namespace", ns])
        .stderr
        .contains("NotFound"));
}
