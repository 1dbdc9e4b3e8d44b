//! Acceptance tests over raw HTTPS: malformed and invalid requests get the right `Status`, and
//! authentication by client certificate.

mod common;

use common::{RawHttps, TestServer};

const CONFIGMAPS: &str = "/api/v1/namespaces/default/configmaps";

/// After an error the server must still answer: GET /api/v1/namespaces -> 200 NamespaceList.
async fn still_serving(raw: &RawHttps, after: &str) -> Result<(), String> {
    let resp = raw
        .get("/api/v1/namespaces")
        .await
        .map_err(|e| format!("server stopped answering after {after}: {e}"))?;
    if resp.status != 200 {
        return Err(format!(
            "GET /api/v1/namespaces after {after}: HTTP {} {}",
            resp.status,
            resp.text()
        ));
    }
    let list: serde_json::Value = serde_json::from_slice(&resp.body)
        .map_err(|e| format!("namespace list after {after} is not JSON: {e}"))?;
    if list["kind"] != "NamespaceList" {
        return Err(format!(
            "GET /api/v1/namespaces after {after}: kind {}",
            list["kind"]
        ));
    }
    Ok(())
}

/// Sends the request and checks the HTTP status, a `kind: Status` body with that code and
/// `reason`, and that the server still serves afterwards. Returns the Status.
/// method, path, Content-Type, body
type Request<'a> = (&'a str, &'a str, Option<&'a str>, Vec<u8>);

async fn expect_status(
    raw: &RawHttps,
    what: &str,
    (method, path, content_type, body): Request<'_>,
    code: u16,
    reason: &str,
) -> Result<serde_json::Value, String> {
    let resp = raw
        .request(method, path, content_type, body)
        .await
        .map_err(|e| format!("{what}: no HTTP response: {e}"));
    let checked = resp.and_then(|resp| {
        if resp.status != code {
            let mut text = resp.text();
            text.truncate(300);
            return Err(format!(
                "{what}: HTTP {} (want {code}), body {text}",
                resp.status
            ));
        }
        if !resp.content_type.starts_with("application/json") {
            return Err(format!("{what}: Content-Type {:?}", resp.content_type));
        }
        let status = resp.try_status_body().map_err(|e| format!("{what}: {e}"))?;
        if status["reason"] != reason {
            return Err(format!(
                "{what}: reason {} (want {reason}): {status}",
                status["reason"]
            ));
        }
        if status["message"].as_str().is_none_or(|m| m.is_empty()) {
            return Err(format!("{what}: Status without message: {status}"));
        }
        Ok(status)
    });
    still_serving(raw, what).await?;
    checked
}

/// Whether a Status names `field` among its `details.causes`.
fn has_cause(status: &serde_json::Value, field: &str) -> Result<(), String> {
    let causes = status["details"]["causes"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    if causes.iter().any(|c| c["field"] == field) {
        Ok(())
    } else {
        Err(format!("422 without a cause on {field}: {status}"))
    }
}

fn json(v: serde_json::Value) -> Vec<u8> {
    serde_json::to_vec(&v).unwrap()
}

// 9.
#[test]
fn bad_requests_get_status_errors_and_the_server_keeps_serving() {
    let server = TestServer::start();
    let raw = server.raw_admin();
    let problems = server.block_on(async {
        still_serving(&raw, "start").await.expect("server answers at start");
        let mut problems: Vec<String> = Vec::new();
        let post = |path: &'static str, ct: &'static str, body: Vec<u8>| ("POST", path, Some(ct), body);
        let post_json = |path: &'static str, v: serde_json::Value| post(path, "application/json", json(v));
        let get = |path: &'static str| ("GET", path, None, Vec::new());

        let cases: Vec<(&str, Request, u16, &str, Option<&str>)> = vec![
            (
                "malformed YAML",
                post(
                    CONFIGMAPS,
                    "application/yaml",
                    b"apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: [unclosed\n data: {\n".to_vec(),
                ),
                400,
                "BadRequest",
                None,
            ),
            (
                "malformed JSON",
                post(
                    CONFIGMAPS,
                    "application/json",
                    br#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"#.to_vec(),
                ),
                400,
                "BadRequest",
                None,
            ),
            ("GET of an unknown resource", get("/api/v1/namespaces/default/foos"), 404, "NotFound", None),
            (
                "POST to an unknown resource",
                post_json(
                    "/api/v1/namespaces/default/foos",
                    serde_json::json!({"apiVersion": "v1", "kind": "Foo", "metadata": {"name": "a"}}),
                ),
                404,
                "NotFound",
                None,
            ),
            ("unknown group", get("/apis/nope.example.com/v1/widgets"), 404, "NotFound", None),
            ("missing configmap", get("/api/v1/namespaces/default/configmaps/absent"), 404, "NotFound", None),
            (
                "invalid name Bad_Name",
                post_json(
                    CONFIGMAPS,
                    serde_json::json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "Bad_Name"}}),
                ),
                422,
                "Invalid",
                Some("metadata.name"),
            ),
            (
                "Deployment without spec.selector",
                post_json(
                    "/apis/apps/v1/namespaces/default/deployments",
                    serde_json::json!({
                        "apiVersion": "apps/v1", "kind": "Deployment",
                        "metadata": {"name": "no-selector"},
                        "spec": {"replicas": 1, "template": {
                            "metadata": {"labels": {"app": "a"}},
                            "spec": {"containers": [{"name": "c", "image": "busybox"}]}
                        }}
                    }),
                ),
                422,
                "Invalid",
                Some("spec.selector"),
            ),
            (
                "Pod without containers",
                post_json(
                    "/api/v1/namespaces/default/pods",
                    serde_json::json!({
                        "apiVersion": "v1", "kind": "Pod",
                        "metadata": {"name": "empty"}, "spec": {"containers": []}
                    }),
                ),
                422,
                "Invalid",
                Some("spec.containers"),
            ),
            (
                "kind that does not match the path",
                post_json(
                    CONFIGMAPS,
                    serde_json::json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "mismatch"}}),
                ),
                400,
                "BadRequest",
                None,
            ),
            (
                "4 MiB body",
                post_json(
                    CONFIGMAPS,
                    serde_json::json!({
                        "apiVersion": "v1", "kind": "ConfigMap",
                        "metadata": {"name": "huge"}, "data": {"big": "x".repeat(4 * 1024 * 1024)}
                    }),
                ),
                413,
                "RequestEntityTooLarge",
                None,
            ),
        ];
        for (what, request, code, reason, cause) in cases {
            let result = expect_status(&raw, what, request, code, reason).await;
            let result = match (result, cause) {
                (Ok(status), Some(field)) => has_cause(&status, field).map_err(|e| format!("{what}: {e}")),
                (result, _) => result.map(|_| ()),
            };
            if let Err(e) = result {
                problems.push(e);
            }
        }

        // None of the rejected objects was stored.
        let resp = raw.get(CONFIGMAPS).await.expect("list configmaps");
        assert_eq!(resp.status, 200);
        let list: serde_json::Value = serde_json::from_slice(&resp.body).unwrap();
        let names: Vec<&str> = list["items"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|i| i["metadata"]["name"].as_str())
            .collect();
        for rejected in ["Bad_Name", "mismatch", "huge"] {
            if names.contains(&rejected) {
                problems.push(format!("rejected object {rejected} was stored"));
            }
        }
        problems
    });
    assert!(
        problems.is_empty(),
        "{} problems:\n{}",
        problems.len(),
        problems.join("\n")
    );
}

// 10.
#[test]
fn client_certificates_authenticate_and_health_endpoints_are_open() {
    let server = TestServer::start();
    let anonymous = server.raw(None);
    let admin = server.raw_admin();
    let other_ca = kubelab_pki::generate_ca("other").expect("generate another CA");
    let mallory = kubelab_pki::issue_client_cert(&other_ca, "mallory", &["system:masters"])
        .expect("issue a client cert from the other CA");
    let foreign = server.raw(Some(&mallory));
    server.block_on(async {
        for path in ["/healthz", "/livez", "/readyz"] {
            let resp = anonymous
                .get(path)
                .await
                .unwrap_or_else(|e| panic!("{path}: {e}"));
            assert_eq!(
                resp.status,
                200,
                "{path} without a client cert: {}",
                resp.text()
            );
            assert_eq!(resp.text(), "ok", "{path} body");
        }

        let resp = anonymous.get("/version").await.expect("/version");
        assert_eq!(
            resp.status,
            200,
            "/version without a client cert: {}",
            resp.text()
        );
        let version: serde_json::Value = serde_json::from_slice(&resp.body).expect("version JSON");
        assert_eq!(version["major"], "1", "{version}");
        assert_eq!(version["minor"], "32", "{version}");
        assert!(
            version["gitVersion"]
                .as_str()
                .is_some_and(|v| v.starts_with("v1.32.")),
            "{version}"
        );

        for path in [
            "/api/v1/pods",
            "/api/v1/namespaces/default/configmaps",
            "/apis",
            "/api",
        ] {
            let resp = anonymous
                .get(path)
                .await
                .unwrap_or_else(|e| panic!("{path}: {e}"));
            assert_eq!(
                resp.status,
                401,
                "{path} without a client cert: {}",
                resp.text()
            );
            let status = resp.status_body();
            assert_eq!(status["reason"], "Unauthorized", "{status}");
        }
        let resp = anonymous
            .request(
                "POST",
                "/api/v1/namespaces/default/configmaps",
                Some("application/json"),
                serde_json::to_vec(&serde_json::json!({
                    "apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "anon"}
                }))
                .unwrap(),
            )
            .await
            .expect("anonymous POST");
        assert_eq!(resp.status, 401, "anonymous create: {}", resp.text());
        resp.status_body();

        let resp = admin.get("/api/v1/pods").await.expect("admin GET");
        assert_eq!(resp.status, 200, "admin GET /api/v1/pods: {}", resp.text());
        let list: serde_json::Value = serde_json::from_slice(&resp.body).unwrap();
        assert_eq!(list["kind"], "PodList", "{list}");

        // A certificate from another CA must not authenticate (handshake failure or 401).
        match foreign.get("/api/v1/pods").await {
            Err(e) => eprintln!("foreign client certificate refused: {e}"),
            Ok(resp) => {
                assert_eq!(
                    resp.status,
                    401,
                    "a client certificate from another CA was accepted: {}",
                    resp.text()
                );
                resp.status_body();
            }
        }
        let resp = admin
            .get("/api/v1/namespaces")
            .await
            .expect("admin after foreign");
        assert_eq!(resp.status, 200);
    });
}
