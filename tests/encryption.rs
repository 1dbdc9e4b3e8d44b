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
        &["create", "deployment", "web", "--image=kubelab.local/none:1"],
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
            &["get", "deployment", "web", "-o", "jsonpath={.metadata.name}"]
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
    // Updating the old Secret rewrites it with the write key.
    server.ok(
        &k,
        &["label", "secret", "first", "touched=yes"],
    );
    assert!(raw(&server, &secret_key("default", "first"))
        .starts_with(b"k8s:enc:secretbox:v1:key2:"));

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
        missing.stderr.contains("cannot read the encryption configuration"),
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
        out.stderr.contains("more than one provider specified in a single element"),
        "{}",
        out.stderr
    );
}
