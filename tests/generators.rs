//! Acceptance tests for kubectl's imperative verbs against `kubelab server`: the `create`
//! generators (protobuf request bodies from kubectl 1.32 on), `scale`, `set image`,
//! `rollout restart`, `edit` with a scripted editor, and `apply -k`. Each runs against kubectl
//! 1.30, 1.32, 1.33 and the current kubectl from PyPI.

mod common;
mod support;

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;

use common::{fixture, TestServer};
use serde_json::{json, Value};
use support::{for_all_kubectls, get_json, kubectl_env};

fn labels(obj: &Value) -> BTreeMap<String, String> {
    serde_json::from_value(obj["metadata"]["labels"].clone()).unwrap_or_default()
}

fn map(items: &[(&str, &str)]) -> BTreeMap<String, String> {
    items
        .iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect()
}

fn generation(obj: &Value) -> i64 {
    obj["metadata"]["generation"]
        .as_i64()
        .unwrap_or_else(|| panic!("no metadata.generation in {obj}"))
}

// 5. The create generators (protobuf bodies from 1.32 on) make the objects they describe.
#[test]
fn create_generators_make_the_described_objects() {
    let server = TestServer::start();
    for_all_kubectls(|k| {
        let ns = format!("gen-{}", k.tag());
        let out = server.ok(k, &["create", "namespace", &ns]);
        assert_eq!(out.trim(), format!("namespace/{ns} created"));
        let namespace = get_json(&server, k, None, &format!("namespace/{ns}"));
        assert_eq!(namespace["status"]["phase"], "Active", "{namespace}");

        for (args, expected) in [
            (
                vec!["deployment", "web", "--image=busybox", "--replicas=2"],
                "deployment.apps/web created",
            ),
            (
                vec!["configmap", "x", "--from-literal=a=b"],
                "configmap/x created",
            ),
            (
                vec!["secret", "generic", "s", "--from-literal=k=v"],
                "secret/s created",
            ),
            (vec!["job", "j", "--image=busybox"], "job.batch/j created"),
        ] {
            let mut full = vec!["create"];
            full.extend(args);
            full.extend(["-n", &ns]);
            let out = server.ok(k, &full);
            assert_eq!(out.trim(), expected, "kubectl {} {full:?}", k.version);
        }

        let deploy = get_json(&server, k, Some(&ns), "deployment/web");
        assert_eq!(deploy["spec"]["replicas"], 2);
        assert_eq!(
            deploy["spec"]["selector"],
            json!({"matchLabels": {"app": "web"}})
        );
        let template = &deploy["spec"]["template"];
        assert_eq!(labels(template), map(&[("app", "web")]));
        let containers = template["spec"]["containers"].as_array().unwrap();
        assert_eq!(containers.len(), 1, "{containers:?}");
        assert_eq!(
            (&containers[0]["name"], &containers[0]["image"]),
            (&json!("busybox"), &json!("busybox"))
        );
        assert_eq!(
            deploy["spec"]["strategy"]["type"], "RollingUpdate",
            "defaulted strategy"
        );

        let cm = get_json(&server, k, Some(&ns), "configmap/x");
        assert_eq!(cm["data"], json!({"a": "b"}));

        let secret = get_json(&server, k, Some(&ns), "secret/s");
        assert_eq!(secret["data"], json!({"k": "dg=="}), "base64 of \"v\"");
        assert_eq!(secret["type"], "Opaque");

        let job = get_json(&server, k, Some(&ns), "job/j");
        let pod = &job["spec"]["template"]["spec"];
        assert_eq!(pod["containers"][0]["name"], "j");
        assert_eq!(pod["containers"][0]["image"], "busybox");
        assert_eq!(pod["restartPolicy"], "Never");
        assert_eq!(
            job["spec"]["selector"]["matchLabels"]["batch.kubernetes.io/controller-uid"],
            job["metadata"]["uid"],
            "a job without manualSelector gets a generated selector on its uid: {}",
            job["spec"]
        );
    });
}

// 6. scale, set image and rollout restart change the Deployment as kubectl means them to.
#[test]
fn scale_set_image_and_rollout_restart() {
    let server = TestServer::start();
    for_all_kubectls(|k| {
        let ns = format!("roll-{}", k.tag());
        server.create_namespace(&ns);
        server.ok(
            k,
            &[
                "create",
                "deployment",
                "web",
                "--image=busybox",
                "--replicas=2",
                "-n",
                &ns,
            ],
        );
        let created = get_json(&server, k, Some(&ns), "deployment/web");

        let out = server.ok(k, &["scale", "deploy", "web", "--replicas=5", "-n", &ns]);
        assert_eq!(out.trim(), "deployment.apps/web scaled");
        let scaled = get_json(&server, k, Some(&ns), "deployment/web");
        assert_eq!(scaled["spec"]["replicas"], 5);
        assert!(
            generation(&scaled) > generation(&created),
            "scaling changes the spec, so metadata.generation grows: {} -> {}",
            generation(&created),
            generation(&scaled)
        );

        let out = server.ok(
            k,
            &["set", "image", "deploy/web", "busybox=busybox:2", "-n", &ns],
        );
        assert_eq!(out.trim(), "deployment.apps/web image updated");
        let updated = get_json(&server, k, Some(&ns), "deployment/web");
        let containers = &updated["spec"]["template"]["spec"]["containers"];
        assert_eq!(
            containers,
            &json!([containers[0].clone()]),
            "still one container"
        );
        assert_eq!(containers[0]["image"], "busybox:2");
        assert_eq!(updated["spec"]["replicas"], 5, "set image keeps replicas");
        assert!(generation(&updated) > generation(&scaled));

        let out = server.ok(k, &["rollout", "restart", "deploy/web", "-n", &ns]);
        assert_eq!(out.trim(), "deployment.apps/web restarted");
        let restarted = get_json(&server, k, Some(&ns), "deployment/web");
        let at = &restarted["spec"]["template"]["metadata"]["annotations"]
            ["kubectl.kubernetes.io/restartedAt"];
        let at = at.as_str().unwrap_or_else(|| {
            panic!(
                "kubectl {}: no restartedAt annotation on the template: {}",
                k.version, restarted["spec"]["template"]
            )
        });
        assert!(
            at.len() >= 20 && at.as_bytes()[10] == b'T',
            "restartedAt is an RFC 3339 time: {at:?}"
        );
        assert_eq!(
            restarted["spec"]["template"]["spec"]["containers"][0]["image"],
            "busybox:2"
        );
        assert!(generation(&restarted) > generation(&updated));
    });
}

// 7a. `kubectl edit` with a scripted EDITOR changes the object.
#[test]
fn edit_with_a_scripted_editor() {
    let server = TestServer::start();
    let editor = server.root().join("editor.sh");
    std::fs::write(
        &editor,
        "#!/bin/sh\n# kubectl edit passes the file to edit as the last argument.\n\
         for f; do :; done\nsed -i 's/^  a: b$/  a: edited/' \"$f\"\n",
    )
    .unwrap();
    std::fs::set_permissions(&editor, std::fs::Permissions::from_mode(0o755)).unwrap();
    let editor = editor.to_string_lossy().into_owned();
    for_all_kubectls(|k| {
        let ns = format!("edit-{}", k.tag());
        server.create_namespace(&ns);
        server.ok(
            k,
            &[
                "create",
                "configmap",
                "x",
                "--from-literal=a=b",
                "--from-literal=c=d",
                "-n",
                &ns,
            ],
        );
        let out = kubectl_env(
            &server,
            k,
            &["edit", "cm", "x", "-n", &ns],
            &[("EDITOR", &editor)],
        );
        assert!(
            out.success() && out.stdout.trim() == "configmap/x edited",
            "kubectl {} edit cm x: {out:?}\nserver stderr:\n{}",
            k.version,
            server.stderr_tail(20)
        );
        let cm = get_json(&server, k, Some(&ns), "configmap/x");
        assert_eq!(cm["data"], json!({"a": "edited", "c": "d"}));
    });
}

// 7b. `kubectl apply -k`: a base, then an overlay that patches replicas and adds a label.
#[test]
fn apply_kustomization_base_then_overlay() {
    let (base, overlay) = (fixture("kustomize/base"), fixture("kustomize/overlays/dev"));
    let server = TestServer::start();
    for_all_kubectls(|k| {
        let ns = format!("kust-{}", k.tag());
        server.create_namespace(&ns);
        let out = server.ok(k, &["apply", "-k", &base, "-n", &ns]);
        assert!(
            out.contains("deployment.apps/kapp created") && out.contains("service/kapp created"),
            "kubectl {} apply -k base:\n{out}",
            k.version
        );
        let deploy = get_json(&server, k, Some(&ns), "deployment/kapp");
        assert_eq!(deploy["spec"]["replicas"], 1);

        let out = server.ok(k, &["apply", "-k", &overlay, "-n", &ns]);
        assert!(
            out.contains("deployment.apps/kapp configured")
                && out.contains("service/kapp configured"),
            "kubectl {} apply -k overlay:\n{out}",
            k.version
        );
        let deploy = get_json(&server, k, Some(&ns), "deployment/kapp");
        assert_eq!(deploy["spec"]["replicas"], 3, "the overlay's patch");
        assert_eq!(labels(&deploy), map(&[("app", "kapp"), ("env", "dev")]));
        assert_eq!(
            deploy["spec"]["selector"],
            json!({"matchLabels": {"app": "kapp"}}),
            "the overlay leaves selectors alone"
        );
        assert_eq!(
            deploy["spec"]["template"]["spec"]["containers"][0]["image"],
            "nginx:1.27"
        );
        let svc = get_json(&server, k, Some(&ns), "service/kapp");
        assert_eq!(labels(&svc), map(&[("app", "kapp"), ("env", "dev")]));
        assert_eq!(svc["spec"]["selector"], json!({"app": "kapp"}));
    });
}
