//! Service-account tokens end to end with the real kubectl 1.32: `kubectl create token`
//! (TokenRequest, a protobuf request body), requests authenticated by the token, and revocation
//! by deleting the service account or the object the token is bound to.

mod common;

use common::{Kubectl, TestServer};

fn k() -> Kubectl {
    Kubectl::new("1.32")
}

fn as_token(server: &TestServer, token: &str, args: &[&str]) -> common::Output {
    let config = server.token_kubeconfig(&format!("token-{}", token.len() % 1000), token);
    let mut all = vec!["--kubeconfig", config.to_str().unwrap()];
    all.extend_from_slice(args);
    server.kubectl(&k(), &all)
}

#[test]
fn create_token_authenticates_as_the_service_account_until_it_is_deleted() {
    let server = TestServer::start();
    let k = k();
    server.ok(&k, &["create", "serviceaccount", "robot"]);
    // Authorization is on: the account reads through a binding to `view`.
    server.ok(
        &k,
        &[
            "create",
            "clusterrolebinding",
            "robot-view",
            "--clusterrole=view",
            "--serviceaccount=default:robot",
        ],
    );
    let token = server
        .ok(&k, &["create", "token", "robot"])
        .trim()
        .to_string();
    assert_eq!(token.split('.').count(), 3, "a JWT: {token}");

    let who = as_token(
        &server,
        &token,
        &["auth", "whoami", "-o", "jsonpath={.status.userInfo}"],
    );
    assert!(who.success(), "{}", who.stderr);
    let info: serde_json::Value = serde_json::from_str(&who.stdout).unwrap();
    assert_eq!(info["username"], "system:serviceaccount:default:robot");
    let groups: Vec<&str> = info["groups"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|g| g.as_str())
        .collect();
    for g in [
        "system:serviceaccounts",
        "system:serviceaccounts:default",
        "system:authenticated",
    ] {
        assert!(groups.contains(&g), "{groups:?}");
    }
    let pods = as_token(&server, &token, &["get", "pods", "-A"]);
    assert!(pods.success(), "{}", pods.stderr);

    // A token that does not verify is 401, as is the token once its account is gone.
    let forged = format!("{}x", &token[..token.len() - 1]);
    let denied = as_token(&server, &forged, &["get", "pods"]);
    assert!(!denied.success());
    assert!(
        denied
            .stderr
            .contains("You must be logged in to the server"),
        "{}",
        denied.stderr
    );
    server.ok(&k, &["delete", "serviceaccount", "robot"]);
    let gone = as_token(&server, &token, &["get", "pods"]);
    assert!(!gone.success());
    assert!(
        gone.stderr.contains("You must be logged in to the server"),
        "{}",
        gone.stderr
    );
    // A new account of the same name does not revive the old token (another uid).
    server.ok(&k, &["create", "serviceaccount", "robot"]);
    assert!(!as_token(&server, &token, &["get", "pods"]).success());
}

#[test]
fn a_pod_bound_token_dies_with_its_pod_and_durations_are_checked() {
    let server = TestServer::start();
    let k = k();
    server.ok(&k, &["create", "serviceaccount", "app"]);
    server.ok(
        &k,
        &[
            "create",
            "rolebinding",
            "app-view",
            "--clusterrole=view",
            "--serviceaccount=default:app",
        ],
    );
    server.ok_stdin(
        &k,
        &["apply", "-f", "-"],
        "apiVersion: v1
kind: Pod
metadata:
  name: holder
spec:
  serviceAccountName: app
  containers:
  - name: main
    image: busybox
",
    );
    let token = server
        .ok(
            &k,
            &[
                "create",
                "token",
                "app",
                "--bound-object-kind=Pod",
                "--bound-object-name=holder",
                "--audience=https://kubernetes.default.svc.cluster.local",
                "--duration=1h",
            ],
        )
        .trim()
        .to_string();
    let ok = as_token(&server, &token, &["get", "pod", "holder"]);
    assert!(ok.success(), "{}", ok.stderr);
    // Another audience is not accepted by the API server.
    let vault = server
        .ok(&k, &["create", "token", "app", "--audience=vault"])
        .trim()
        .to_string();
    assert!(!as_token(&server, &vault, &["get", "pods"]).success());

    server.ok(
        &k,
        &["delete", "pod", "holder", "--grace-period=0", "--force"],
    );
    let gone = as_token(&server, &token, &["get", "pods"]);
    assert!(!gone.success(), "the bound pod is gone: {}", gone.stdout);

    let short = server.fails(&k, &["create", "token", "app", "--duration=5m"]);
    assert!(
        short.contains("may not specify a duration less than 10 minutes"),
        "{short}"
    );
    let missing = server.fails(&k, &["create", "token", "nobody"]);
    assert!(
        missing.contains("serviceaccounts \"nobody\" not found"),
        "{missing}"
    );
}
