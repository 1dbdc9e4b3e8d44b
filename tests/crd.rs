//! Acceptance tests for CustomResourceDefinitions in `kubelab server`, driven by kubectl 1.30,
//! 1.32, 1.33 and the current kubectl from PyPI: additionalPrinterColumns in `kubectl get`, and
//! deleting a CRD deleting its objects.

mod common;
mod support;

use std::time::Duration;

use common::{columns, fixture, Kubectl, TestServer};
use serde_json::Value;
use support::{assert_not_found, for_all_kubectls, wait_established};

const CRD: &str = "widgets.lab.kubelab.dev";

fn apply_crd(server: &TestServer, k: &Kubectl) {
    server.ok(k, &["apply", "-f", &fixture("crd/widgets-crd.yaml")]);
    wait_established(server, k, CRD);
}

fn table_row<'a>(table: &'a str, name: &str) -> Vec<&'a str> {
    table
        .lines()
        .skip(1)
        .map(columns)
        .find(|cols| cols.first() == Some(&name))
        .unwrap_or_else(|| panic!("no row {name:?} in:\n{table}"))
}

/// GET on the raw API path of the widgets in `ns`: (HTTP status, body).
fn raw_list(server: &TestServer, ns: &str) -> (u16, Value) {
    let path = format!("/apis/lab.kubelab.dev/v1/namespaces/{ns}/widgets");
    let raw = server.raw_admin();
    let resp = server
        .block_on(raw.get(&path))
        .unwrap_or_else(|e| panic!("GET {path}: {e}"));
    let body = serde_json::from_slice(&resp.body).unwrap_or(Value::Null);
    (resp.status, body)
}

// 10 (first part). `kubectl get <plural>` shows the CRD's additionalPrinterColumns.
#[test]
fn get_custom_resources_shows_printer_columns() {
    let server = TestServer::start();
    for_all_kubectls(|k| {
        apply_crd(&server, k);
        let ns = format!("cols-{}", k.tag());
        server.create_namespace(&ns);
        server.ok(k, &["apply", "-f", &fixture("crd/widgets.yaml"), "-n", &ns]);
        for resource in ["widgets", "wdg", "widgets.lab.kubelab.dev"] {
            let table = server.ok(k, &["get", resource, "-n", &ns]);
            assert_eq!(
                columns(table.lines().next().unwrap_or_default()),
                ["NAME", "SIZE", "COLOR", "AGE"],
                "kubectl {} get {resource}: header of\n{table}",
                k.version
            );
            assert_eq!(table_row(&table, "small")[1..3], ["3", "teal"], "{table}");
            assert_eq!(
                table_row(&table, "large")[1..3],
                ["42", "crimson"],
                "{table}"
            );
        }
        let wide = server.ok(k, &["get", "widget", "large", "-n", &ns, "-o", "wide"]);
        assert_eq!(table_row(&wide, "large")[1..3], ["42", "crimson"], "{wide}");
    });
}

// Deleting a CRD deletes its objects: the list call 404s, and a re-created CRD starts empty.
#[test]
fn deleting_a_crd_deletes_its_objects() {
    let server = TestServer::start();
    for_all_kubectls(|k| {
        apply_crd(&server, k);
        let ns = format!("gone-{}", k.tag());
        server.create_namespace(&ns);
        server.ok(k, &["apply", "-f", &fixture("crd/widgets.yaml"), "-n", &ns]);
        let (status, list) = raw_list(&server, &ns);
        assert_eq!(status, 200, "{list}");
        assert_eq!(list["items"].as_array().map(Vec::len), Some(2), "{list}");

        let out = server.ok(k, &["delete", "crd", CRD]);
        assert!(
            out.contains(&format!("\"{CRD}\" deleted")),
            "kubectl {} delete crd: {out}",
            k.version
        );
        assert_not_found(&server, k, None, &format!("crd/{CRD}"));
        let (status, body) = common::eventually(
            "the widgets list call answers 404 once the CRD is gone",
            Duration::from_secs(5),
            || Some(raw_list(&server, &ns)).filter(|(status, _)| *status == 404),
        );
        assert_eq!(status, 404);
        assert_eq!(body["kind"], "Status", "{body}");
        let stderr = server.fails(k, &["get", "widgets", "-n", &ns]);
        assert!(
            stderr.contains("the server doesn't have a resource type \"widgets\""),
            "kubectl {} get widgets after the CRD is gone:\n{stderr}",
            k.version
        );

        apply_crd(&server, k);
        let (status, list) = raw_list(&server, &ns);
        assert_eq!(status, 200, "{list}");
        assert_eq!(
            list["items"],
            Value::Array(vec![]),
            "the re-created CRD shows old objects"
        );
        let all: Value =
            serde_json::from_str(&server.ok(k, &["get", "widgets", "-A", "-o", "json"])).unwrap();
        assert_eq!(all["items"], Value::Array(vec![]), "{all}");
        let out = server.kubectl(k, &["get", "widgets", "-A"]);
        assert!(
            out.success() && out.stdout.is_empty() && out.stderr.contains("No resources found"),
            "kubectl {} get widgets -A after re-creation: {out:?}",
            k.version
        );
    });
}
