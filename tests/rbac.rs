//! Authorization end to end with the real kubectl 1.32 against `kubelab server`: RBAC over
//! service-account tokens and impersonated users, the upstream 403 messages, `auth can-i`
//! (--list), aggregation, escalation prevention, the revocable admin binding, and the Node
//! authorizer with NodeRestriction.

mod common;

use std::path::PathBuf;
use std::time::Duration;

use common::{Kubectl, TestServer};

fn k() -> Kubectl {
    Kubectl::new("1.32")
}

/// A kubeconfig with a client certificate of the cluster CA for `user` in `groups`.
fn cert_kubeconfig(server: &TestServer, user: &str, groups: &[&str]) -> PathBuf {
    cert_kubeconfig_with(server, &user.replace(':', "_"), |ca| {
        kubelab_pki::issue_client_cert(ca, user, groups)
    })
}

/// A kubeconfig `<file>.kubeconfig` with the client certificate `issue` makes from the CA.
fn cert_kubeconfig_with(
    server: &TestServer,
    file: &str,
    issue: impl FnOnce(&kubelab_pki::CertPair) -> Result<kubelab_pki::CertPair, kubelab_pki::Error>,
) -> PathBuf {
    let tls = server.data_dir().join("tls");
    let read = |f: &str| std::fs::read_to_string(tls.join(f)).expect("read cluster CA");
    let ca = kubelab_pki::CertPair {
        cert_pem: read("ca.crt"),
        key_pem: read("ca.key"),
    };
    let cert = issue(&ca).expect("client certificate");
    let user = file;
    let path = server.root().join(format!("{file}.kubeconfig"));
    let url = server.url();
    kubelab_pki::write_kubeconfig(
        &path,
        &kubelab_pki::KubeconfigSpec {
            cluster_name: "kubelab",
            context_name: "kubelab",
            user_name: user,
            server: &url,
            ca_pem: &ca.cert_pem,
            client: &cert,
        },
    )
    .expect("write kubeconfig");
    path
}

fn with(server: &TestServer, kubeconfig: &std::path::Path, args: &[&str]) -> common::Output {
    let mut all = vec!["--kubeconfig", kubeconfig.to_str().unwrap()];
    all.extend_from_slice(args);
    server.kubectl(&k(), &all)
}

/// kubectl's words for a 401.
fn assert_unauthorized(out: &common::Output) {
    assert!(!out.success(), "should be refused: {}", out.stdout);
    assert!(
        out.stderr.contains("You must be logged in to the server"),
        "expected a 401, got:\n{}",
        out.stderr
    );
}

fn assert_forbidden(out: &common::Output, message: &str) {
    assert!(!out.success(), "should be forbidden: {}", out.stdout);
    assert!(
        out.stderr.contains(message),
        "expected a 403 with {message:?}, got:\n{}",
        out.stderr
    );
}

// Acceptance 1 and 3.
#[test]
fn a_service_account_bound_to_view_reads_only_its_namespace() {
    let server = TestServer::start();
    let k = k();
    server.create_namespace("a");
    server.create_namespace("b");
    server.ok(&k, &["create", "serviceaccount", "reader", "-n", "a"]);
    server.ok(
        &k,
        &[
            "create",
            "rolebinding",
            "reader-view",
            "--clusterrole=view",
            "--serviceaccount=a:reader",
            "-n",
            "a",
        ],
    );
    let token = server
        .ok(&k, &["create", "token", "reader", "-n", "a"])
        .trim()
        .to_string();
    let reader = server.token_kubeconfig("reader", &token);

    let listed = with(&server, &reader, &["get", "pods", "-n", "a"]);
    assert!(listed.success(), "{}", listed.stderr);
    assert_forbidden(
        &with(&server, &reader, &["get", "pods", "-n", "b"]),
        "pods is forbidden: User \"system:serviceaccount:a:reader\" cannot list resource \"pods\" in API group \"\" in the namespace \"b\"",
    );
    assert_forbidden(
        &with(&server, &reader, &["create", "configmap", "x", "-n", "a"]),
        "configmaps is forbidden: User \"system:serviceaccount:a:reader\" cannot create resource \"configmaps\" in API group \"\" in the namespace \"a\"",
    );
    assert_forbidden(
        &with(&server, &reader, &["get", "secrets", "-n", "a"]),
        "cannot list resource \"secrets\"",
    );
    assert_forbidden(
        &with(&server, &reader, &["get", "nodes"]),
        "cannot list resource \"nodes\" in API group \"\" at the cluster scope",
    );
    let can = with(
        &server,
        &reader,
        &["auth", "can-i", "list", "pods", "-n", "a"],
    );
    assert_eq!(can.stdout.trim(), "yes", "{}", can.stderr);
    let cannot = with(
        &server,
        &reader,
        &["auth", "can-i", "delete", "pods", "-n", "a"],
    );
    assert_eq!(cannot.stdout.trim(), "no", "{}", cannot.stderr);

    // can-i --list shows exactly what is granted: view's rules plus the defaults every
    // authenticated user has.
    let list = server.ok(
        &k,
        &[
            "auth",
            "can-i",
            "--list",
            "--as",
            "system:serviceaccount:a:reader",
            "-n",
            "a",
        ],
    );
    let row = |resource: &str| {
        list.lines()
            .find(|l| common::columns(l).first() == Some(&resource))
            .map(|l| l.to_string())
    };
    let pods = row("pods").unwrap_or_else(|| panic!("no pods row:\n{list}"));
    assert!(pods.contains("[get list watch]"), "{pods}");
    assert!(row("deployments.apps").is_some(), "{list}");
    assert!(
        row("selfsubjectaccessreviews.authorization.k8s.io").is_some(),
        "{list}"
    );
    assert!(
        row("secrets").is_none(),
        "view does not read secrets:\n{list}"
    );
    assert!(row("roles.rbac.authorization.k8s.io").is_none(), "{list}");
    assert!(
        !list.contains("[*]"),
        "nothing is granted wholesale:\n{list}"
    );
    let other = server.ok(
        &k,
        &[
            "auth",
            "can-i",
            "--list",
            "--as",
            "system:serviceaccount:a:reader",
            "-n",
            "b",
        ],
    );
    assert!(
        !other
            .lines()
            .any(|l| common::columns(l).first() == Some(&"pods")),
        "{other}"
    );

    // No credential is 401; a certificate from another CA is refused.
    let other_ca = kubelab_pki::generate_ca("other").unwrap();
    let mallory =
        kubelab_pki::issue_client_cert(&other_ca, "mallory", &["system:masters"]).unwrap();
    server.block_on(async {
        let anonymous = server
            .raw(None)
            .get("/api/v1/namespaces/a/pods")
            .await
            .unwrap();
        assert_eq!(anonymous.status, 401, "{}", anonymous.text());
        // Refused in the handshake, or else unauthenticated.
        if let Ok(resp) = server.raw(Some(&mallory)).get("/api/v1/pods").await {
            assert_eq!(resp.status, 401, "{}", resp.text());
        }
    });

    // TokenReview answers from the token authenticator.
    let review = server.ok_stdin(
        &k,
        &["create", "--validate=false", "-o", "json", "-f", "-"],
        &format!(
            "apiVersion: authentication.k8s.io/v1\nkind: TokenReview\nspec: {{token: {token}}}\n"
        ),
    );
    let review: serde_json::Value = serde_json::from_str(&review).unwrap();
    assert_eq!(review["status"]["authenticated"], true, "{review}");
    assert_eq!(
        review["status"]["user"]["username"], "system:serviceaccount:a:reader",
        "{review}"
    );

    // An expired certificate of the cluster CA is 401, as upstream (not a TLS alert).
    let expired = cert_kubeconfig_with(&server, "expired", |ca| {
        kubelab_pki::issue_expired_client_cert(ca, "kubelab-admin", &["kubelab:cluster-admins"])
    });
    assert_unauthorized(&with(&server, &expired, &["get", "pods", "-n", "a"]));

    // The same token re-signed with the server's own key: accepted while its times are
    // current, 401 once `exp` has passed (the signature alone does not make it valid).
    let key =
        kubelab_pki::ensure_service_account_key(&kubelab_pki::tls_dir(&server.data_dir())).unwrap();
    let resign = |shift: i64| {
        let header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256);
        let payload = token.split('.').nth(1).expect("a JWT");
        use base64::Engine;
        let payload = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(payload)
            .unwrap();
        let mut claims: serde_json::Value = serde_json::from_slice(&payload).unwrap();
        for field in ["exp", "iat", "nbf"] {
            claims[field] = (claims[field].as_i64().unwrap() + shift).into();
        }
        let signer = jsonwebtoken::EncodingKey::from_ec_pem(key.private_pem.as_bytes()).unwrap();
        jsonwebtoken::encode(&header, &claims, &signer).unwrap()
    };
    let current = server.token_kubeconfig("resigned", &resign(0));
    let ok = with(&server, &current, &["get", "pods", "-n", "a"]);
    assert!(ok.success(), "{}", ok.stderr);
    let expired = server.token_kubeconfig("expired-token", &resign(-2 * 86_400));
    assert_unauthorized(&with(&server, &expired, &["get", "pods", "-n", "a"]));

    // Acceptance 3: the token stops working with its ServiceAccount.
    server.ok(&k, &["delete", "serviceaccount", "reader", "-n", "a"]);
    assert_unauthorized(&with(&server, &reader, &["get", "pods", "-n", "a"]));
}

// Acceptance 7.
#[test]
fn whoami_names_the_admin_and_impersonated_users_need_a_binding() {
    let server = TestServer::start();
    let k = k();
    let who = server.ok(&k, &["auth", "whoami", "-o", "json"]);
    let review: serde_json::Value = serde_json::from_str(&who).unwrap();
    assert_eq!(
        review["status"]["userInfo"]["username"], "kubelab-admin",
        "{review}"
    );
    let groups = review["status"]["userInfo"]["groups"].to_string();
    assert!(
        groups.contains("kubelab:cluster-admins") && groups.contains("system:authenticated"),
        "{groups}"
    );

    assert_forbidden(
        &server.kubectl(&k, &["get", "pods", "--as=jane"]),
        "pods is forbidden: User \"jane\" cannot list resource \"pods\" in API group \"\" in the namespace \"default\"",
    );
    let whoami = server.ok(
        &k,
        &[
            "auth",
            "whoami",
            "--as=jane",
            "--as-group=devs",
            "-o",
            "json",
        ],
    );
    let jane: serde_json::Value = serde_json::from_str(&whoami).unwrap();
    assert_eq!(jane["status"]["userInfo"]["username"], "jane");
    assert_eq!(
        jane["status"]["userInfo"]["groups"],
        serde_json::json!(["devs", "system:authenticated"])
    );
    server.ok(
        &k,
        &[
            "create",
            "rolebinding",
            "jane-view",
            "--clusterrole=view",
            "--user=jane",
        ],
    );
    let listed = server.kubectl(&k, &["get", "pods", "--as=jane"]);
    assert!(listed.success(), "{}", listed.stderr);
    assert_eq!(
        server
            .ok(&k, &["auth", "can-i", "list", "pods", "--as=jane"])
            .trim(),
        "yes"
    );
    assert_eq!(
        server
            .kubectl(
                &k,
                &[
                    "auth",
                    "can-i",
                    "list",
                    "pods",
                    "--as=jane",
                    "-n",
                    "kube-system"
                ]
            )
            .stdout
            .trim(),
        "no"
    );
    // A group binding applies to impersonated groups.
    server.ok(
        &k,
        &[
            "create",
            "clusterrolebinding",
            "devs-view",
            "--clusterrole=view",
            "--group=devs",
        ],
    );
    let as_group = server.kubectl(
        &k,
        &[
            "get",
            "pods",
            "-n",
            "kube-system",
            "--as=bob",
            "--as-group=devs",
        ],
    );
    assert!(as_group.success(), "{}", as_group.stderr);

    // Impersonating needs the impersonate verb: jane may not become anyone.
    server.ok(
        &k,
        &[
            "create",
            "clusterrolebinding",
            "jane-basic",
            "--clusterrole=view",
            "--user=jane",
        ],
    );
    let jane_config = cert_kubeconfig(&server, "jane", &[]);
    assert_forbidden(
        &with(&server, &jane_config, &["get", "--raw", "/api/v1/namespaces/default/pods", "--as=kubelab-admin"]),
        "users \"kubelab-admin\" is forbidden: User \"jane\" cannot impersonate resource \"users\" in API group \"\" at the cluster scope",
    );
    assert!(with(&server, &jane_config, &["get", "pods"]).success());
}

// Acceptance 2.
#[test]
fn aggregated_roles_follow_their_labels_and_nobody_grants_what_they_lack() {
    let server = TestServer::start();
    let k = k();
    server.ok_stdin(
        &k,
        &["apply", "-f", "-"],
        r#"apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata:
  name: widgets-admin
  labels:
    rbac.authorization.k8s.io/aggregate-to-admin: "true"
rules:
- apiGroups: [example.com]
  resources: [widgets]
  verbs: [get, list, frobnicate]
"#,
    );
    common::eventually(
        "admin gathers widgets-admin",
        Duration::from_secs(10),
        || {
            let admin = server.ok(&k, &["get", "clusterrole", "admin", "-o", "json"]);
            admin.contains("frobnicate").then_some(())
        },
    );
    // Removing the label takes the rules out again.
    server.ok(
        &k,
        &[
            "label",
            "clusterrole",
            "widgets-admin",
            "rbac.authorization.k8s.io/aggregate-to-admin-",
        ],
    );
    common::eventually("admin drops widgets-admin", Duration::from_secs(10), || {
        let admin = server.ok(&k, &["get", "clusterrole", "admin", "-o", "json"]);
        (!admin.contains("frobnicate")).then_some(())
    });

    // dev may manage Roles and RoleBindings in team and read pods, nothing more.
    server.create_namespace("team");
    server.ok(
        &k,
        &[
            "create",
            "role",
            "role-manager",
            "-n",
            "team",
            "--verb=create,get,list,update,patch",
            "--resource=roles.rbac.authorization.k8s.io,rolebindings.rbac.authorization.k8s.io",
        ],
    );
    server.ok(
        &k,
        &[
            "create",
            "role",
            "pod-reader",
            "-n",
            "team",
            "--verb=get,list",
            "--resource=pods",
        ],
    );
    for role in ["role-manager", "pod-reader"] {
        server.ok(
            &k,
            &[
                "create",
                "rolebinding",
                role,
                "-n",
                "team",
                &format!("--role={role}"),
                "--user=dev",
            ],
        );
    }
    let as_dev = |args: &[&str]| {
        let mut all = args.to_vec();
        all.extend_from_slice(&["--as=dev", "-n", "team"]);
        server.kubectl(&k, &all)
    };
    let within = as_dev(&["create", "role", "readers", "--verb=get", "--resource=pods"]);
    assert!(within.success(), "{}", within.stderr);
    assert_forbidden(
        &as_dev(&["create", "role", "deleters", "--verb=delete", "--resource=pods"]),
        "roles.rbac.authorization.k8s.io \"deleters\" is forbidden: user \"dev\" (groups=[\"system:authenticated\"]) is attempting to grant RBAC permissions not currently held",
    );
    assert_forbidden(
        &as_dev(&[
            "create",
            "role",
            "secret-reader",
            "--verb=get",
            "--resource=secrets",
        ]),
        "attempting to grant RBAC permissions not currently held",
    );
    // Binding: a role within dev's permissions may be bound, cluster role edit may not.
    let bind = as_dev(&[
        "create",
        "rolebinding",
        "eve-reads",
        "--role=readers",
        "--user=eve",
    ]);
    assert!(bind.success(), "{}", bind.stderr);
    assert_forbidden(
        &as_dev(&[
            "create",
            "rolebinding",
            "eve-edits",
            "--clusterrole=edit",
            "--user=eve",
        ]),
        "rolebindings.rbac.authorization.k8s.io \"eve-edits\" is forbidden",
    );
    // Updating a role beyond one's permissions is refused too.
    assert_forbidden(
        &as_dev(&[
            "patch",
            "role",
            "readers",
            "--type=json",
            "-p",
            r#"[{"op":"add","path":"/rules/0/verbs/-","value":"delete"}]"#,
        ]),
        "attempting to grant RBAC permissions not currently held",
    );
    // With `bind` on edit, binding it becomes possible (upstream's escape hatch).
    server.ok(
        &k,
        &[
            "create",
            "clusterrole",
            "bind-edit",
            "--verb=bind",
            "--resource=clusterroles",
            "--resource-name=edit",
        ],
    );
    server.ok(
        &k,
        &[
            "create",
            "rolebinding",
            "dev-bind-edit",
            "-n",
            "team",
            "--clusterrole=bind-edit",
            "--user=dev",
        ],
    );
    let bound = as_dev(&[
        "create",
        "rolebinding",
        "eve-edits",
        "--clusterrole=edit",
        "--user=eve",
    ]);
    assert!(bound.success(), "{}", bound.stderr);
}

// Acceptance 1 (admin through a revocable binding; break-glass stays).
#[test]
fn the_admin_binding_is_revocable_and_the_super_admin_is_not() {
    let server = TestServer::start();
    let k = k();
    server.ok(
        &k,
        &["delete", "clusterrolebinding", "kubelab:cluster-admins"],
    );
    assert_forbidden(
        &server.kubectl(&k, &["get", "pods"]),
        "User \"kubelab-admin\" cannot list resource \"pods\"",
    );
    let super_admin = server.data_dir().join("super-admin.kubeconfig");
    let out = with(
        &server,
        &super_admin,
        &["get", "clusterrolebinding", "cluster-admin"],
    );
    assert!(out.success(), "{}", out.stderr);
    // A restart reconciles the default roles but does not bring the revoked binding back.
    server.restart();
    assert!(!server.kubectl(&k, &["get", "pods"]).success());
    let roles = with(
        &server,
        &super_admin,
        &["get", "clusterroles", "-o", "name"],
    );
    for role in [
        "cluster-admin",
        "admin",
        "edit",
        "view",
        "system:discovery",
        "system:basic-user",
        "system:public-info-viewer",
    ] {
        assert!(
            roles
                .stdout
                .contains(&format!("clusterrole.rbac.authorization.k8s.io/{role}\n")),
            "{role}: {}",
            roles.stdout
        );
    }
}

// Acceptance 4.
#[test]
fn a_node_reads_and_changes_only_what_its_pods_use() {
    let server = TestServer::start_args(&["--fake-nodes", "2"]);
    let k = k();
    common::eventually("two fake nodes", Duration::from_secs(20), || {
        let nodes = server.ok(&k, &["get", "nodes", "-o", "name"]);
        (nodes.lines().count() == 2).then_some(())
    });
    server.ok(
        &k,
        &[
            "create",
            "secret",
            "generic",
            "two-only",
            "--from-literal=k=v",
        ],
    );
    server.ok(
        &k,
        &[
            "create",
            "secret",
            "generic",
            "one-only",
            "--from-literal=k=v",
        ],
    );
    let pod = |name: &str, node: &str, secret: &str| {
        format!(
            r#"apiVersion: v1
kind: Pod
metadata: {{name: {name}}}
spec:
  nodeName: {node}
  containers: [{{name: c, image: busybox, envFrom: [{{secretRef: {{name: {secret}}}}}]}}]
"#
        )
    };
    server.ok_stdin(
        &k,
        &["apply", "-f", "-"],
        &pod("on-two", "fake-node-2", "two-only"),
    );
    server.ok_stdin(
        &k,
        &["apply", "-f", "-"],
        &pod("on-one", "fake-node-1", "one-only"),
    );
    let node1 = cert_kubeconfig(&server, "system:node:fake-node-1", &["system:nodes"]);
    let node2 = cert_kubeconfig(&server, "system:node:fake-node-2", &["system:nodes"]);

    assert_forbidden(
        &with(&server, &node1, &["get", "secret", "two-only"]),
        "secrets \"two-only\" is forbidden: User \"system:node:fake-node-1\" cannot get resource \"secrets\" in API group \"\" in the namespace \"default\": no relationship found between node 'fake-node-1' and this object",
    );
    assert!(with(&server, &node2, &["get", "secret", "two-only"]).success());
    assert!(with(&server, &node1, &["get", "secret", "one-only"]).success());
    assert_forbidden(
        &with(&server, &node1, &["get", "secrets"]),
        "cannot list resource \"secrets\"",
    );

    assert_forbidden(
        &with(
            &server,
            &node1,
            &["label", "node", "fake-node-2", "stolen=yes"],
        ),
        "nodes \"fake-node-2\" is forbidden",
    );
    let own = with(
        &server,
        &node1,
        &["label", "node", "fake-node-1", "mine=yes"],
    );
    assert!(own.success(), "{}", own.stderr);

    let status = r#"{"status":{"conditions":[{"type":"kubelab.dev/Checked","status":"True"}]}}"#;
    let patched = with(
        &server,
        &node1,
        &[
            "patch",
            "pod",
            "on-one",
            "--subresource=status",
            "--type=merge",
            "-p",
            status,
        ],
    );
    assert!(patched.success(), "{}", patched.stderr);
    assert_forbidden(
        &with(
            &server,
            &node1,
            &[
                "patch",
                "pod",
                "on-two",
                "--subresource=status",
                "--type=merge",
                "-p",
                status,
            ],
        ),
        "pods \"on-two\" is forbidden",
    );
    // Tokens only for its own pods' accounts, bound to those pods.
    let token = |node: &std::path::Path, pod: &str| {
        with(
            &server,
            node,
            &[
                "create",
                "token",
                "default",
                "--bound-object-kind=Pod",
                &format!("--bound-object-name={pod}"),
            ],
        )
    };
    let own_token = token(&node1, "on-one");
    assert!(own_token.success(), "{}", own_token.stderr);
    assert_forbidden(
        &token(&node1, "on-two"),
        "can only create tokens for the service account of its own pods",
    );
    assert_forbidden(
        &with(&server, &node1, &["create", "token", "default"]),
        "can only create tokens bound to a pod",
    );
    // A node cannot create a pod for another node, nor delete another node's pod.
    let mut stolen = pod("sneaky", "fake-node-2", "two-only");
    stolen.push('\n');
    let created = server.kubectl_stdin(
        &k,
        &["--kubeconfig", node1.to_str().unwrap(), "create", "-f", "-"],
        &stolen,
    );
    assert!(
        !created.success() && created.stderr.contains("Forbidden"),
        "{}",
        created.stderr
    );
    assert_forbidden(
        &with(&server, &node1, &["delete", "pod", "on-two"]),
        "pods \"on-two\" is forbidden",
    );
}
