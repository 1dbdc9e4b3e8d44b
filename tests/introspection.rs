//! Acceptance tests for what kubectl asks the server about itself: `kubectl explain` of
//! built-in and custom kinds (OpenAPI v3 field docs), `auth can-i` and `auth whoami`. Each runs
//! against kubectl 1.30, 1.32, 1.33 and the current kubectl from PyPI.

mod common;
mod support;

use common::{fixture, TestServer};
use serde_json::Value;
use support::{for_all_kubectls, kubectl_until, wait_established, CRD_DEADLINE};

// 8 (built-in). `kubectl explain deployment.spec.strategy` prints the field's docs.
#[test]
fn explain_prints_built_in_field_docs() {
    let server = TestServer::start();
    for_all_kubectls(|k| {
        let out = server.ok(k, &["explain", "deployment.spec.strategy"]);
        for expected in [
            "KIND:",
            "Deployment",
            "DESCRIPTION:",
            "FIELDS:",
            "rollingUpdate",
            "RollingUpdate",
            "Recreate",
        ] {
            assert!(
                out.contains(expected),
                "kubectl {} explain deployment.spec.strategy lacks {expected:?}:\n{out}",
                k.version
            );
        }
        let out = server.ok(k, &["explain", "pods.spec.containers.ports"]);
        assert!(
            out.contains("containerPort") && out.contains("<integer>"),
            "kubectl {} explain pods.spec.containers.ports:\n{out}",
            k.version
        );
    });
}

// 8 (custom). `kubectl explain <crd kind>.spec` prints the CRD schema's descriptions.
#[test]
fn explain_prints_custom_resource_schema_docs() {
    let server = TestServer::start();
    for_all_kubectls(|k| {
        server.ok(k, &["apply", "-f", &fixture("crd/widgets-crd.yaml")]);
        wait_established(&server, k, "widgets.lab.kubelab.dev");
        // The schema reaches /openapi/v3 after the CRD is Established (upstream too): poll.
        let out = kubectl_until(
            &server,
            k,
            &["explain", "widgets.spec"],
            CRD_DEADLINE,
            |out| out.contains("Number of sprockets"),
        );
        for expected in [
            "KIND:",
            "Widget",
            "WidgetSpec is the desired shape of the widget.",
            "size",
            "<integer>",
            "Number of sprockets the widget carries.",
            "color",
            "<string>",
            "Paint colour of the widget casing.",
        ] {
            assert!(
                out.contains(expected),
                "kubectl {} explain widgets.spec lacks {expected:?}:\n{out}",
                k.version
            );
        }
        let out = server.ok(k, &["explain", "widget"]);
        assert!(
            out.contains("Widget is a test gadget with a size and a color."),
            "kubectl {} explain widget:\n{out}",
            k.version
        );
    });
}

// 10 (second part). The admin may do anything.
#[test]
fn auth_can_i_answers_yes_for_the_admin() {
    let server = TestServer::start();
    for_all_kubectls(|k| {
        for args in [
            vec!["auth", "can-i", "create", "pods"],
            vec![
                "auth",
                "can-i",
                "delete",
                "deployments.apps",
                "-n",
                "kube-system",
            ],
            vec!["auth", "can-i", "get", "nodes"],
        ] {
            let out = server.ok(k, &args);
            assert_eq!(
                out.trim(),
                "yes",
                "kubectl {} {}",
                k.version,
                args.join(" ")
            );
        }
    });
}

// 10 (third part). `kubectl auth whoami` names the admin user of admin.kubeconfig.
#[test]
fn auth_whoami_prints_the_admin_user() {
    let server = TestServer::start();
    for_all_kubectls(|k| {
        let out = server.ok(k, &["auth", "whoami"]);
        let username = out
            .lines()
            .map(common::columns)
            .find(|cols| cols.first() == Some(&"Username"))
            .unwrap_or_else(|| {
                panic!("kubectl {} auth whoami: no Username row:\n{out}", k.version)
            });
        assert_eq!(username[1..], ["kubelab-admin"], "{out}");

        let out = server.ok(k, &["auth", "whoami", "-o", "json"]);
        let review: Value = serde_json::from_str(&out).unwrap();
        assert_eq!(review["kind"], "SelfSubjectReview", "{review}");
        let user = &review["status"]["userInfo"];
        assert_eq!(user["username"], "kubelab-admin", "{review}");
        let groups: Vec<&str> = user["groups"]
            .as_array()
            .map(|g| g.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        assert!(
            groups.contains(&"kubelab:cluster-admins") && groups.contains(&"system:authenticated"),
            "groups of the admin: {groups:?}"
        );
    });
}
