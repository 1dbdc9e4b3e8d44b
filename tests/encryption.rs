//! Encryption at rest (issue 8, item 4), judged by real kubectl and by the raw rows of the
//! server's SQLite file: `kubelab server --encryption-provider-config`, the envelopes, reload
//! without restart.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use base64::Engine;
use common::{Kubectl, TestServer};

const RELOAD_DEADLINE: Duration = Duration::from_secs(20);

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// A random 32-byte key, base64.
fn new_key() -> String {
    b64(&rand::random::<[u8; 32]>())
}

/// Writes a configuration file atomically (a reader never sees half of it).
fn write_config(path: &Path, text: &str) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

fn secret_key(ns: &str, name: &str) -> String {
    format!("/registry/core/secrets/{ns}/{name}")
}

/// The server's database, read directly.
fn db(server: &TestServer) -> rusqlite::Connection {
    let conn = rusqlite::Connection::open_with_flags(
        server.data_dir().join("state.db"),
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
    )
    .unwrap();
    conn.busy_timeout(Duration::from_secs(5)).unwrap();
    conn
}

/// The value of the latest row of a key.
fn raw(server: &TestServer, key: &str) -> Vec<u8> {
    db(server)
        .query_row(
            "SELECT value FROM log WHERE key = ?1 ORDER BY revision DESC LIMIT 1",
            [key],
            |row| row.get(0),
        )
        .unwrap_or_else(|e| panic!("no row for {key}: {e}"))
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

struct ConfigFile {
    _dir: tempfile::TempDir,
    path: PathBuf,
}

impl ConfigFile {
    fn new(text: &str) -> ConfigFile {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("encryption-config.yaml");
        write_config(&path, text);
        ConfigFile { _dir: dir, path }
    }

    fn set(&self, text: &str) {
        write_config(&self.path, text);
    }

    fn arg(&self) -> String {
        self.path.display().to_string()
    }
}

fn config(entries: &str) -> String {
    format!("apiVersion: apiserver.config.k8s.io/v1\nkind: EncryptionConfiguration\nresources:\n{entries}")
}

fn create_secret(server: &TestServer, k: &Kubectl, name: &str, value: &str) {
    server.ok(
        k,
        &[
            "create",
            "secret",
            "generic",
            name,
            &format!("--from-literal=password={value}"),
        ],
    );
}

fn read_secret(server: &TestServer, k: &Kubectl, name: &str) -> String {
    let encoded = server.ok(
        k,
        &["get", "secret", name, "-o", "jsonpath={.data.password}"],
    );
    String::from_utf8(
        base64::engine::general_purpose::STANDARD
            .decode(encoded.trim())
            .unwrap(),
    )
    .unwrap()
}

/// Acceptance 5 on `kubelab server`: the configured providers and envelopes, wildcards and
/// opt-outs; the file reloaded without a restart; a broken file leaves the last good one in force.
#[test]
fn secrets_are_stored_in_upstream_envelopes_and_the_file_reloads() {
    let key1 = new_key();
    let key2 = new_key();
    let gcm = b64(&rand::random::<[u8; 16]>());
    let file = ConfigFile::new(&config(&format!(
        "  - resources: [events]\n    providers: [{{identity: {{}}}}]\n\
         \x20 - resources: [secrets]\n    providers:\n      - aescbc: {{keys: [{{name: key1, secret: '{key1}'}}]}}\n      - identity: {{}}\n\
         \x20 - resources: ['*.apps']\n    providers: [{{aesgcm: {{keys: [{{name: g1, secret: '{gcm}'}}]}}}}]\n"
    )));
    let server = TestServer::start_args(&["--encryption-provider-config", &file.arg()]);
    let k = Kubectl::new("1.32");

    let plaintext = "correct-horse-battery-staple";
    create_secret(&server, &k, "first", plaintext);
    let row = raw(&server, &secret_key("default", "first"));
    assert!(
        row.starts_with(b"k8s:enc:aescbc:v1:key1:"),
        "{}",
        String::from_utf8_lossy(&row)
    );
    assert!(!contains(&row, plaintext.as_bytes()));
    assert!(!contains(&row, b64(plaintext.as_bytes()).as_bytes()));
    // IV ‖ whole AES blocks after the envelope.
    assert_eq!((row.len() - b"k8s:enc:aescbc:v1:key1:".len()) % 16, 0);
    for k in common::kubectls() {
        assert_eq!(read_secret(&server, &k, "first"), plaintext);
    }
    let listed = server.ok(&k, &["get", "secrets", "-o", "name"]);
    assert!(listed.contains("secret/first"), "{listed}");

    // Resources not listed stay plaintext; '*.apps' catches Deployments (and the ReplicaSets
    // the controllers make from them through the API).
    server.ok(&k, &["create", "configmap", "plain", "--from-literal=a=b"]);
    assert!(raw(&server, "/registry/core/configmaps/default/plain").starts_with(b"{"));
    server.ok(
        &k,
        &[
            "create",
            "deployment",
            "web",
            "--image=kubelab.local/none:1",
        ],
    );
    assert!(raw(&server, "/registry/apps/deployments/default/web")
        .starts_with(b"k8s:enc:aesgcm:v1:g1:"));
    common::eventually("the ReplicaSet of the Deployment", RELOAD_DEADLINE, || {
        let out = server.ok(&k, &["get", "replicasets", "-o", "name"]);
        out.contains("replicaset.apps/web-").then_some(())
    });
    assert_eq!(
        server.ok(
            &k,
            &[
                "get",
                "deployment",
                "web",
                "-o",
                "jsonpath={.metadata.name}"
            ]
        ),
        "web"
    );

    // A new key first: new writes use it, old values stay readable (no restart).
    file.set(&config(&format!(
        "  - resources: [secrets]\n    providers:\n      - secretbox: {{keys: [{{name: key2, secret: '{key2}'}}]}}\n      - aescbc: {{keys: [{{name: key1, secret: '{key1}'}}]}}\n      - identity: {{}}\n"
    )));
    let probe = common::eventually("the reloaded configuration", RELOAD_DEADLINE, || {
        let name = format!("probe-{}", rand::random::<u32>());
        create_secret(&server, &k, &name, "x");
        raw(&server, &secret_key("default", &name))
            .starts_with(b"k8s:enc:secretbox:v1:key2:")
            .then_some(name)
    });
    assert_eq!(read_secret(&server, &k, &probe), "x");
    assert_eq!(read_secret(&server, &k, "first"), plaintext);
    // An unchanged object is not rewritten, unless stale: `kubectl replace` re-encrypts it
    // (upstream's documented way), a replace of a current value writes nothing.
    create_secret(&server, &k, "replaced", "r");
    let first_json = server.ok(&k, &["get", "secret", "first", "-o", "json"]);
    let old_rv = server.ok(
        &k,
        &[
            "get",
            "secret",
            "first",
            "-o",
            "jsonpath={.metadata.resourceVersion}",
        ],
    );
    server.ok_stdin(&k, &["replace", "-f", "-"], &first_json);
    let new_rv = server.ok(
        &k,
        &[
            "get",
            "secret",
            "first",
            "-o",
            "jsonpath={.metadata.resourceVersion}",
        ],
    );
    assert_ne!(old_rv, new_rv, "a stale value is rewritten");
    assert!(
        raw(&server, &secret_key("default", "first")).starts_with(b"k8s:enc:secretbox:v1:key2:")
    );
    assert_eq!(read_secret(&server, &k, "first"), plaintext);
    let current = server.ok(&k, &["get", "secret", "replaced", "-o", "json"]);
    let rv = server.ok(
        &k,
        &[
            "get",
            "secret",
            "replaced",
            "-o",
            "jsonpath={.metadata.resourceVersion}",
        ],
    );
    server.ok_stdin(&k, &["replace", "-f", "-"], &current);
    assert_eq!(
        server.ok(
            &k,
            &[
                "get",
                "secret",
                "replaced",
                "-o",
                "jsonpath={.metadata.resourceVersion}"
            ]
        ),
        rv,
        "an unchanged current value is not written"
    );
    // Updating the old Secret rewrites it with the write key.
    server.ok(&k, &["label", "secret", "first", "touched=yes"]);
    assert!(
        raw(&server, &secret_key("default", "first")).starts_with(b"k8s:enc:secretbox:v1:key2:")
    );

    // A broken file is refused; the last good configuration stays in force.
    file.set("apiVersion: apiserver.config.k8s.io/v1\nkind: EncryptionConfiguration\nresources:\n  - resources: [secrets]\n    providers: [{aescbc: {keys: [{name: k, secret: dG9vc2hvcnQ=}]}}]\n");
    common::eventually("the refusal logged", RELOAD_DEADLINE, || {
        server
            .stderr_tail(50)
            .contains("secret is not of the expected length")
            .then_some(())
    });
    create_secret(&server, &k, "after-bad-file", "y");
    assert!(raw(&server, &secret_key("default", "after-bad-file"))
        .starts_with(b"k8s:enc:secretbox:v1:key2:"));

    // Without the key, a value cannot be read: an error, never ciphertext as data.
    file.set(&config(&format!(
        "  - resources: [secrets]\n    providers:\n      - aescbc: {{keys: [{{name: key1, secret: '{key1}'}}]}}\n      - identity: {{}}\n"
    )));
    let err = common::eventually("the key2 values unreadable", RELOAD_DEADLINE, || {
        let out = server.kubectl(&k, &["get", "secret", &probe]);
        (!out.success()).then_some(out.stderr)
    });
    assert!(
        err.contains("does not match any of the supported transformers")
            || err.contains("InternalError")
            || err.contains("Internal error"),
        "{err}"
    );
    // After a restart (the file must exist and be valid to start), the same holds.
    server.restart();
    create_secret(&server, &k, "again", "z");
    assert!(raw(&server, &secret_key("default", "again")).starts_with(b"k8s:enc:aescbc:v1:key1:"));
    assert_eq!(read_secret(&server, &k, "again"), "z");
    assert!(!server.kubectl(&k, &["get", "secret", &probe]).success());
}

/// A missing or invalid file stops the server before it serves, naming the problem.
#[test]
fn an_invalid_file_stops_the_server_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let run = |config: &Path| {
        let mut cmd = std::process::Command::new(common::kubelab_bin());
        cmd.arg("server")
            .arg("--data-dir")
            .arg(dir.path().join("data"))
            .arg("--port")
            .arg("0")
            .arg("--encryption-provider-config")
            .arg(config);
        common::run_with_deadline(cmd, None, Duration::from_secs(30))
    };
    let missing = run(&dir.path().join("missing.yaml"));
    assert!(!missing.success());
    assert!(
        missing
            .stderr
            .contains("cannot read the encryption configuration"),
        "{}",
        missing.stderr
    );
    let bad = dir.path().join("bad.yaml");
    std::fs::write(
        &bad,
        config("  - resources: [secrets]\n    providers: [{aescbc: {keys: [{name: k, secret: '!'}]}, identity: {}}]\n"),
    )
    .unwrap();
    let out = run(&bad);
    assert!(!out.success());
    assert!(
        out.stderr
            .contains("more than one provider specified in a single element"),
        "{}",
        out.stderr
    );
}

const SECRETS: usize = 60;

/// k3s's file shape: one entry for Secrets, the write provider first.
fn k3s_config(providers: &str) -> String {
    config(&format!(
        "  - resources: [secrets]\n    providers:\n{providers}"
    ))
}

fn aescbc(keys: &[(&str, &str)]) -> String {
    let keys: Vec<String> = keys
        .iter()
        .map(|(name, secret)| format!("{{name: '{name}', secret: '{secret}'}}"))
        .collect();
    format!("      - aescbc: {{keys: [{}]}}\n", keys.join(", "))
}

const IDENTITY: &str = "      - identity: {}\n";

fn secrets_cli(server: &TestServer, args: &[&str]) -> common::Output {
    let mut cmd = std::process::Command::new(common::kubelab_bin());
    cmd.arg("secrets")
        .args(args)
        .arg("--kubeconfig")
        .arg(server.kubeconfig_path());
    common::run_with_deadline(cmd, None, Duration::from_secs(120))
}

fn secrets_ok(server: &TestServer, args: &[&str]) -> String {
    let out = secrets_cli(server, args);
    assert!(
        out.success(),
        "kubelab secrets {args:?}: {}\n{}\nserver:\n{}",
        out.stdout,
        out.stderr,
        server.stderr_tail(30)
    );
    out.stdout
}

/// Every stored row (history included) of every Secret.
fn secret_rows(server: &TestServer) -> Vec<(String, Vec<u8>)> {
    let conn = db(server);
    let mut stmt = conn
        .prepare("SELECT key, value FROM log WHERE key LIKE '/registry/core/secrets/%' ORDER BY revision")
        .unwrap();
    let rows = stmt
        .query_map([], |row| Ok((row.get(0)?, row.get(1)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    rows
}

/// Every Secret of the test, read through the API: name → decoded password.
fn read_all(server: &TestServer, k: &Kubectl) -> Result<Vec<(String, String)>, String> {
    let out = server.kubectl(k, &["get", "secrets", "-n", "rot", "-o", "json"]);
    if !out.success() {
        return Err(out.stderr);
    }
    let list: serde_json::Value = serde_json::from_str(&out.stdout).map_err(|e| e.to_string())?;
    let mut all = Vec::new();
    for item in list["items"].as_array().into_iter().flatten() {
        let name = item["metadata"]["name"].as_str().unwrap_or("").to_owned();
        let value = item["data"]["password"].as_str().unwrap_or("");
        let value = base64::engine::general_purpose::STANDARD
            .decode(value)
            .map_err(|e| e.to_string())?;
        all.push((name, String::from_utf8_lossy(&value).into_owned()));
    }
    all.sort();
    Ok(all)
}

fn expected_secrets() -> Vec<(String, String)> {
    let mut all: Vec<(String, String)> = (0..SECRETS)
        .map(|i| (format!("s{i:03}"), format!("value-{i}")))
        .collect();
    all.push(("before".into(), "made-before-encryption".into()));
    all.sort();
    all
}

fn write_key_of(file: &ConfigFile) -> String {
    let text = std::fs::read_to_string(&file.path).unwrap();
    let config: serde_json::Value = serde_yaml::from_str(&text).unwrap();
    config["resources"][0]["providers"][0]["aescbc"]["keys"][0]["name"]
        .as_str()
        .unwrap()
        .to_owned()
}

fn key_count(file: &ConfigFile) -> usize {
    let text = std::fs::read_to_string(&file.path).unwrap();
    let config: serde_json::Value = serde_yaml::from_str(&text).unwrap();
    config["resources"][0]["providers"][0]["aescbc"]["keys"]
        .as_array()
        .map_or(0, Vec::len)
}

/// Acceptance 5 (a Secret made before encryption is re-encrypted) and 6: `kubelab secrets
/// rotate` keeps every Secret readable, leaves no row under the old key, the file without the
/// old key still reads everything; a kill -9 in the middle, then a rerun, ends the same way.
#[test]
fn rotation_reencrypts_everything_and_survives_kill_9() {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;

    let key1 = new_key();
    // Encryption off (identity writes), the key already there to read: k3s's "disabled" shape.
    let file = ConfigFile::new(&k3s_config(&format!(
        "{IDENTITY}{}",
        aescbc(&[("aescbckey", &key1)])
    )));
    let server = TestServer::start_args(&["--encryption-provider-config", &file.arg()]);
    let k = Kubectl::new("1.32");
    server.create_namespace("rot");
    server.ok(
        &k,
        &[
            "-n",
            "rot",
            "create",
            "secret",
            "generic",
            "before",
            "--from-literal=password=made-before-encryption",
        ],
    );
    let before_key = secret_key("rot", "before");
    assert!(raw(&server, &before_key).starts_with(b"{"));
    let status = secrets_ok(&server, &["status"]);
    assert!(status.contains("Encryption Status: Disabled"), "{status}");

    // Enable: aescbc first; re-encrypt the Secret made before.
    file.set(&k3s_config(&format!(
        "{}{IDENTITY}",
        aescbc(&[("aescbckey", &key1)])
    )));
    let out = secrets_ok(&server, &["reencrypt"]);
    assert!(out.contains("re-encrypted: 1"), "{out}");
    let row = raw(&server, &before_key);
    assert!(row.starts_with(b"k8s:enc:aescbc:v1:aescbckey:"));
    assert!(!contains(&row, b"made-before-encryption"));
    assert!(!contains(&row, b64(b"made-before-encryption").as_bytes()));

    server.block_on(async {
        use k8s_openapi::api::core::v1::Secret;
        let api: kube::Api<Secret> = kube::Api::namespaced(server.client().await, "rot");
        for i in 0..SECRETS {
            let secret: Secret = serde_json::from_value(serde_json::json!({
                "metadata": {"name": format!("s{i:03}")},
                "stringData": {"password": format!("value-{i}")},
            }))
            .unwrap();
            api.create(&Default::default(), &secret).await.unwrap();
        }
    });
    assert_eq!(read_all(&server, &k).unwrap(), expected_secrets());

    // Readers all along the rotation: every Secret, every time.
    let stop = Arc::new(AtomicBool::new(false));
    let reader = {
        let stop = stop.clone();
        let kubeconfig = server.kubeconfig_path();
        let k = k.clone();
        std::thread::spawn(move || {
            let mut reads = 0;
            while !stop.load(Ordering::SeqCst) {
                let mut cmd = std::process::Command::new(&k.path);
                cmd.arg("--kubeconfig").arg(&kubeconfig).args([
                    "get",
                    "secrets",
                    "-n",
                    "rot",
                    "-o",
                    "jsonpath={range .items[*]}{.metadata.name}={.data.password}{\"\\n\"}{end}",
                ]);
                let out = common::run_with_deadline(cmd, None, Duration::from_secs(60));
                assert!(
                    out.success(),
                    "a read failed during the rotation: {}",
                    out.stderr
                );
                assert_eq!(out.stdout.lines().count(), SECRETS + 1, "{}", out.stdout);
                reads += 1;
            }
            reads
        })
    };
    let out = secrets_ok(&server, &["rotate", "--rate", "40"]);
    stop.store(true, Ordering::SeqCst);
    let reads = reader
        .join()
        .expect("every read during the rotation succeeded");
    assert!(reads >= 1);
    let new_key = write_key_of(&file);
    assert!(out.contains(&format!("new write key: {new_key}")), "{out}");
    assert!(new_key.starts_with("aescbckey-"), "{new_key}");
    assert_eq!(key_count(&file), 1, "the old key is dropped from the file");
    let prefix = format!("k8s:enc:aescbc:v1:{new_key}:");
    for (key, value) in secret_rows(&server) {
        assert!(
            value.starts_with(prefix.as_bytes()),
            "{key} still has a row not under the new key: {}",
            String::from_utf8_lossy(&value[..value.len().min(40)])
        );
    }
    let status = secrets_ok(&server, &["status"]);
    assert!(
        status.contains("Current Rotation Stage: reencrypt_finished"),
        "{status}"
    );
    assert!(status.contains(&new_key), "{status}");
    // The file without the old key reads everything, also after a restart.
    server.restart();
    assert_eq!(read_all(&server, &k).unwrap(), expected_secrets());

    // Interrupted: kill -9 the server in the middle of the re-encryption, then rerun.
    let mut rotate = std::process::Command::new(common::kubelab_bin())
        .args(["secrets", "rotate", "--rate", "10", "--kubeconfig"])
        .arg(server.kubeconfig_path())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let third_key = common::eventually(
        "the re-encryption under way",
        Duration::from_secs(60),
        || {
            let rows = secret_rows(&server);
            let current: Vec<&Vec<u8>> = {
                let mut latest = std::collections::BTreeMap::new();
                for (key, value) in &rows {
                    latest.insert(key.clone(), value);
                }
                latest.into_values().collect()
            };
            let old = current
                .iter()
                .filter(|v| v.starts_with(prefix.as_bytes()))
                .count();
            (old > 0 && old < current.len() - 5 && key_count(&file) == 2)
                .then(|| write_key_of(&file))
        },
    );
    server.kill9();
    let _ = rotate.wait();
    assert_ne!(third_key, new_key);
    assert_eq!(
        key_count(&file),
        2,
        "interrupted with both keys in the file"
    );
    server.restart();
    assert_eq!(read_all(&server, &k).unwrap(), expected_secrets());
    let status = secrets_ok(&server, &["status"]);
    assert!(
        status.contains("Current Rotation Stage: reencrypt_pending"),
        "{status}"
    );
    let out = secrets_ok(&server, &["rotate"]);
    assert!(out.contains("finished an interrupted rotation"), "{out}");
    assert_eq!(write_key_of(&file), third_key);
    assert_eq!(key_count(&file), 1);
    let prefix = format!("k8s:enc:aescbc:v1:{third_key}:");
    for (key, value) in secret_rows(&server) {
        assert!(
            value.starts_with(prefix.as_bytes()),
            "{key} not under {third_key}"
        );
    }
    assert_eq!(read_all(&server, &k).unwrap(), expected_secrets());
    let status = secrets_ok(&server, &["status"]);
    assert!(
        status.contains("Current Rotation Stage: reencrypt_finished"),
        "{status}"
    );
}

/// The encryption endpoints are authorized by RBAC like any non-resource URL (impersonation
/// included): the admin may, a user without a rule gets 403, a ClusterRole with
/// `nonResourceURLs: [/v1-kubelab/encryption/*]` lets a user read the status and nothing more.
#[test]
fn encryption_endpoints_follow_rbac() {
    let file = ConfigFile::new(&k3s_config(&format!(
        "{}{IDENTITY}",
        aescbc(&[("k1", &new_key())])
    )));
    let server = TestServer::start_args(&["--encryption-provider-config", &file.arg()]);
    let k = Kubectl::new("1.32");
    let status = server.ok(&k, &["get", "--raw", "/v1-kubelab/encryption/status"]);
    assert!(
        status.contains("\"encryptionStatus\":\"Enabled\""),
        "{status}"
    );

    let denied = server.kubectl(
        &k,
        &[
            "get",
            "--raw",
            "/v1-kubelab/encryption/status",
            "--as",
            "jane",
        ],
    );
    assert!(!denied.success(), "{}", denied.stdout);
    assert!(
        denied.stderr.contains("forbidden") && denied.stderr.contains("jane"),
        "{}",
        denied.stderr
    );
    server.ok(
        &k,
        &[
            "create",
            "clusterrole",
            "encryption-reader",
            "--verb=get",
            "--non-resource-url=/v1-kubelab/encryption/*",
        ],
    );
    server.ok(
        &k,
        &[
            "create",
            "clusterrolebinding",
            "jane-encryption-reader",
            "--clusterrole=encryption-reader",
            "--user=jane",
        ],
    );
    common::eventually("jane reading the status", Duration::from_secs(30), || {
        server
            .kubectl(
                &k,
                &[
                    "get",
                    "--raw",
                    "/v1-kubelab/encryption/status",
                    "--as",
                    "jane",
                ],
            )
            .success()
            .then_some(())
    });
    let rotate = server.kubectl_stdin(
        &k,
        &[
            "create",
            "--raw",
            "/v1-kubelab/encryption/rotate",
            "-f",
            "-",
            "--as",
            "jane",
        ],
        "{}",
    );
    assert!(!rotate.success(), "{}", rotate.stdout);
    assert!(rotate.stderr.contains("forbidden"), "{}", rotate.stderr);
    assert_eq!(key_count(&file), 1, "the refused rotation added a key");
}
