//! `kubelab up` end to end (issue 6): real Docker node containers, the node image built from
//! this binary, the merged kubeconfig, and the real kubectl.
//!
//! These tests need a Docker engine. Without one they fail, saying how to start it (`.ci/run`
//! installs docker.io and starts dockerd when none answers); they never pass silently.
//! Each test uses its own cluster names and its own kubeconfig file (`KUBECONFIG`), and a
//! `Cluster` guard removes its cluster even when the test panics.

mod common;
#[path = "common/docker.rs"]
mod docker_support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

use common::{eventually, kubelab_bin, run_with_deadline, Kubectl, Output};
use docker_support::{build_test_image, docker, engine_with_node_image, kubelab};

/// Upper bound for one `kubelab up` (image build excluded: done once, first).
const UP_DEADLINE: Duration = Duration::from_secs(400);
const WAIT: Duration = Duration::from_secs(180);

fn k() -> Kubectl {
    Kubectl::new("1.32")
}

/// Panics, saying how to start one, unless a Docker engine answers; then makes sure the node
/// image matches this binary (built once per test run, before any cluster).
fn require_docker() {
    static READY: OnceLock<Result<(), String>> = OnceLock::new();
    let ready = READY.get_or_init(|| {
        let scratch = std::env::temp_dir().join("kubelab-cluster-tests.kubeconfig");
        let built = engine_with_node_image(&scratch, None)?;
        eprintln!("{}", built.trim());
        Ok(())
    });
    if let Err(message) = ready {
        panic!("{message}");
    }
}

/// A cluster made by a test, removed (with `kubelab down`) when dropped.
struct Cluster {
    name: String,
    _dir: tempfile::TempDir,
    kubeconfig: PathBuf,
}

impl Cluster {
    /// `kubelab up --name NAME ARGS...`; panics with the output when it fails.
    fn up(name: &str, args: &[&str]) -> Cluster {
        let cluster = Cluster::new(name);
        let out = cluster.try_up(args);
        assert!(
            out.success(),
            "kubelab up {name} failed:\n{}\n{}",
            out.stdout,
            out.stderr
        );
        cluster
    }

    /// A guard for a cluster not created yet (its kubeconfig file is fresh).
    fn new(name: &str) -> Cluster {
        require_docker();
        let dir = tempfile::tempdir().expect("temp dir");
        let kubeconfig = dir.path().join("config");
        // Leftovers of an earlier, killed run.
        let _ = kubelab(&kubeconfig, &["down", name], Duration::from_secs(60));
        Cluster {
            name: name.to_owned(),
            _dir: dir,
            kubeconfig,
        }
    }

    fn try_up(&self, args: &[&str]) -> Output {
        let mut all = vec!["up", "--name", &self.name, "--wait", "180s"];
        all.extend_from_slice(args);
        let out = kubelab(&self.kubeconfig, &all, UP_DEADLINE);
        eprintln!("{}{}", out.stderr, out.stdout);
        out
    }

    fn kubelab(&self, args: &[&str]) -> Output {
        kubelab(&self.kubeconfig, args, Duration::from_secs(120))
    }

    fn ok(&self, args: &[&str]) -> String {
        let out = self.kubelab(args);
        assert!(
            out.success(),
            "kubelab {args:?} failed:\n{}\n{}",
            out.stdout,
            out.stderr
        );
        out.stdout
    }

    /// kubectl with no flags but the merged kubeconfig (as a user would type it).
    fn kubectl(&self, args: &[&str]) -> Output {
        let mut cmd = Command::new(&k().path);
        cmd.args(args).env("KUBECONFIG", &self.kubeconfig);
        run_with_deadline(cmd, None, Duration::from_secs(60))
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let out = kubelab(
            &self.kubeconfig,
            &["down", &self.name],
            Duration::from_secs(120),
        );
        if !out.success() {
            eprintln!("cleanup of cluster {} failed: {}", self.name, out.stderr);
        }
    }
}

/// Containers, networks and volumes labelled with the cluster's name.
fn leftovers(name: &str) -> Vec<String> {
    let filter = format!("label=dev.kubelab.cluster={name}");
    let mut found = Vec::new();
    for (kind, args) in [
        ("container", vec!["ps", "-a", "-q", "--filter", &filter]),
        ("network", vec!["network", "ls", "-q", "--filter", &filter]),
        ("volume", vec!["volume", "ls", "-q", "--filter", &filter]),
    ] {
        let out = docker(&args);
        assert!(out.success(), "docker {args:?}: {}", out.stderr);
        found.extend(out.stdout.lines().map(|l| format!("{kind} {l}")));
    }
    found
}

fn ready_nodes(cluster: &Cluster) -> Option<Vec<String>> {
    let out = cluster.kubectl(&["get", "nodes", "--no-headers"]);
    if !out.success() {
        return None;
    }
    Some(
        out.stdout
            .lines()
            .filter(|l| l.split_whitespace().nth(1) == Some("Ready"))
            .map(|l| l.split_whitespace().next().unwrap_or_default().to_owned())
            .collect(),
    )
}

/// Acceptance 1 and 9: one node Ready through the merged kubeconfig (no kubectl flags);
/// `list` and `status` show it; `down` leaves no container, network, volume or kubeconfig entry.
#[test]
fn one_node_cluster_up_and_down() {
    let cluster = Cluster::up("kl-one", &[]);
    let config = std::fs::read_to_string(&cluster.kubeconfig).expect("kubeconfig written");
    assert!(
        config.contains("current-context: kubelab-kl-one"),
        "{config}"
    );
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&cluster.kubeconfig)
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o600);
    let nodes = eventually("the server node Ready", WAIT, || {
        ready_nodes(&cluster).filter(|n| !n.is_empty())
    });
    assert_eq!(nodes, ["kl-one-server-0"]);
    let wide = cluster.kubectl(&["get", "nodes", "-o", "wide"]);
    assert!(wide.stdout.contains("control-plane"), "{}", wide.stdout);

    let list = cluster.ok(&["list"]);
    let line = list
        .lines()
        .find(|l| l.starts_with("kl-one "))
        .unwrap_or_else(|| panic!("{list}"));
    assert!(
        line.contains("1/1") && line.contains("https://127.0.0.1:"),
        "{line}"
    );
    let status = cluster.ok(&["status", "kl-one"]);
    assert!(status.contains("healthy"), "{status}");
    assert!(
        status.lines().any(|l| l.contains("kl-one-server-0")
            && l.contains("server")
            && l.contains("running")
            && l.contains("Ready")),
        "{status}"
    );

    // The system image is made and imported at boot, in the background; a pod runs kubelab
    // from it.
    let image = format!("kubelab.local/system:v{}", env!("CARGO_PKG_VERSION"));
    eventually(
        "the system image in the node's containerd",
        Duration::from_secs(180),
        || {
            let out = docker(&[
                "exec",
                "kl-one-server-0",
                "ctr",
                "-n",
                "k8s.io",
                "images",
                "ls",
                "-q",
            ]);
            out.stdout.lines().any(|l| l == image).then_some(())
        },
    );
    let out = cluster.kubectl(&[
        "run",
        "version",
        "--image",
        &image,
        "--restart=Never",
        "--",
        "--version",
    ]);
    assert!(out.success(), "{}", out.stderr);
    eventually("kubelab --version in a pod", WAIT, || {
        let out = cluster.kubectl(&["logs", "version"]);
        out.stdout.starts_with("kubelab ").then_some(())
    });

    let out = cluster.kubelab(&["down", "kl-one"]);
    assert!(out.success(), "{}", out.stderr);
    assert_eq!(leftovers("kl-one"), Vec::<String>::new());
    let config = std::fs::read_to_string(&cluster.kubeconfig).unwrap();
    assert!(!config.contains("kubelab-kl-one"), "{config}");
}

/// Acceptance 10 and item 10: a taken API port fails before anything is created, with one
/// line naming the port; a taken cluster name is refused without touching the existing cluster.
#[test]
fn failing_up_prints_one_line_and_leaves_nothing() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port().to_string();
    let cluster = Cluster::new("kl-fail");
    let out = cluster.try_up(&["--api-port", &port]);
    assert!(!out.success());
    let error: Vec<&str> = out
        .stderr
        .lines()
        .filter(|l| l.starts_with("error:"))
        .collect();
    assert_eq!(error.len(), 1, "{}", out.stderr);
    assert!(
        error[0].contains(&format!("127.0.0.1:{port} is already in use")),
        "{}",
        error[0]
    );
    assert_eq!(leftovers("kl-fail"), Vec::<String>::new());

    // A port taken by the engine itself (published by another container) is only found when
    // the node starts: everything created is removed.
    drop(listener);
    let taken = Cluster::up("kl-taken", &[]);
    let api_port = taken.ok(&["list"]);
    let api_port = api_port
        .lines()
        .find(|l| l.starts_with("kl-taken "))
        .and_then(|l| l.rsplit(':').next())
        .unwrap()
        .trim()
        .to_owned();
    let out = cluster.try_up(&["--port", &format!("127.0.0.1:{api_port}:80")]);
    assert!(!out.success());
    assert!(out.stderr.contains("already in use"), "{}", out.stderr);
    assert_eq!(leftovers("kl-fail"), Vec::<String>::new());

    // The same name twice: refused, and the first cluster still answers.
    let again = Cluster::new("kl-taken-again");
    let out = kubelab(
        &again.kubeconfig,
        &["up", "--name", "kl-taken"],
        UP_DEADLINE,
    );
    assert!(!out.success());
    assert!(out.stderr.contains("already exists"), "{}", out.stderr);
    assert!(taken.ok(&["status", "kl-taken"]).contains("healthy"));
}

/// Acceptance 7: two clusters at once, created concurrently, both in one kubeconfig.
#[test]
fn two_concurrent_ups_share_one_kubeconfig() {
    let a = Cluster::new("kl-par-a");
    let b = Cluster::new("kl-par-b");
    // Both write the same kubeconfig file.
    let shared = a.kubeconfig.clone();
    let run = |name: &'static str| {
        let shared = shared.clone();
        std::thread::spawn(move || {
            kubelab(
                &shared,
                &["up", "--name", name, "--wait", "180s"],
                UP_DEADLINE,
            )
        })
    };
    let (ta, tb) = (run("kl-par-a"), run("kl-par-b"));
    for out in [ta.join().unwrap(), tb.join().unwrap()] {
        assert!(out.success(), "{}\n{}", out.stdout, out.stderr);
    }
    let config = std::fs::read_to_string(&shared).unwrap();
    for name in ["kubelab-kl-par-a", "kubelab-kl-par-b"] {
        assert!(
            config.contains(&format!("name: {name}")),
            "{name} missing:\n{config}"
        );
    }
    for context in ["kubelab-kl-par-a", "kubelab-kl-par-b"] {
        let mut cmd = Command::new(&k().path);
        cmd.args(["--context", context, "get", "nodes", "--no-headers"])
            .env("KUBECONFIG", &shared);
        let out = run_with_deadline(cmd, None, Duration::from_secs(60));
        assert!(
            out.success() && out.stdout.contains("Ready"),
            "{context}: {}{}",
            out.stdout,
            out.stderr
        );
    }
    let out = kubelab(&shared, &["down", "kl-par-b"], Duration::from_secs(120));
    assert!(out.success(), "{}", out.stderr);
    drop(b);
    let config = std::fs::read_to_string(&shared).unwrap();
    assert!(!config.contains("kubelab-kl-par-b"), "{config}");
    assert!(config.contains("kubelab-kl-par-a"), "{config}");
}

/// (node, pod) of the Running pods with label app=APP.
fn running_pods(cluster: &Cluster, app: &str) -> Vec<(String, String)> {
    let out = cluster.kubectl(&[
        "get", "pods", "-l", &format!("app={app}"), "--no-headers", "-o",
        "custom-columns=NAME:.metadata.name,NODE:.spec.nodeName,PHASE:.status.phase,READY:.status.containerStatuses[0].ready",
    ]);
    out.stdout
        .lines()
        .filter_map(|l| {
            let c: Vec<&str> = l.split_whitespace().collect();
            (c.len() == 4 && c[2] == "Running" && c[3] == "true")
                .then(|| (c[1].to_owned(), c[0].to_owned()))
        })
        .collect()
}

/// node → InternalIP.
fn node_ips(cluster: &Cluster) -> Vec<(String, String)> {
    let out = cluster.kubectl(&[
        "get", "nodes", "--no-headers", "-o",
        "custom-columns=NAME:.metadata.name,IP:.status.addresses[?(@.type==\"InternalIP\")].address",
    ]);
    let mut ips: Vec<(String, String)> = out
        .stdout
        .lines()
        .filter_map(|l| {
            let c: Vec<&str> = l.split_whitespace().collect();
            (c.len() == 2).then(|| (c[0].to_owned(), c[1].to_owned()))
        })
        .collect();
    ips.sort();
    ips
}

/// Every pod of the app answers `kubectl exec` (its container really runs) and has logs.
fn pods_answer(cluster: &Cluster, app: &str, count: usize) -> bool {
    let pods = running_pods(cluster, app);
    pods.len() == count
        && pods.iter().all(|(_, pod)| {
            let out = cluster.kubectl(&["exec", pod, "--", "sh", "-c", "echo exec-ok"]);
            out.success() && out.stdout.trim() == "exec-ok"
        })
}

/// Acceptance 2 to 6 on one three-node cluster: nodes and roles, list and status; a local
/// image loaded into every node (then skipped), a Deployment across the three nodes with logs
/// and exec through the published API port; node add and remove; stop/start and `docker
/// restart` keeping addresses, objects and running pods; export logs.
#[test]
fn lab_of_three_nodes() {
    let image = "kubelab-test/busybox:1";
    build_test_image(image).unwrap_or_else(|e| panic!("{e}"));
    let lab = Cluster::up("kl-lab", &["--nodes", "3"]);
    let nodes = eventually("3 nodes Ready", WAIT, || {
        ready_nodes(&lab).filter(|n| n.len() == 3)
    });
    assert_eq!(
        nodes,
        ["kl-lab-agent-0", "kl-lab-agent-1", "kl-lab-server-0"]
    );
    let roles = lab.kubectl(&["get", "node", "kl-lab-server-0", "--no-headers"]);
    assert!(roles.stdout.contains("control-plane"), "{}", roles.stdout);
    let agent_roles = lab.kubectl(&["get", "node", "kl-lab-agent-0", "--no-headers"]);
    assert!(
        !agent_roles.stdout.contains("control-plane"),
        "{}",
        agent_roles.stdout
    );
    let list = lab.ok(&["list"]);
    let line = list
        .lines()
        .find(|l| l.starts_with("kl-lab "))
        .unwrap_or_else(|| panic!("{list}"));
    assert_eq!(common::columns(line)[1..4], ["1", "2", "3/3"], "{line}");
    let status = lab.ok(&["status", "kl-lab"]);
    for node in &nodes {
        assert!(
            status
                .lines()
                .any(|l| l.contains(node.as_str()) && l.contains("running") && l.contains("Ready")),
            "{status}"
        );
    }

    // Acceptance 3.
    let loaded = lab.ok(&["load", "image", image, "--name", "kl-lab"]);
    assert_eq!(
        loaded.lines().filter(|l| l.starts_with("loaded")).count(),
        3,
        "{loaded}"
    );
    let manifest = format!(
        r#"apiVersion: apps/v1
kind: Deployment
metadata: {{name: spread}}
spec:
  replicas: 3
  selector: {{matchLabels: {{app: spread}}}}
  template:
    metadata: {{labels: {{app: spread}}}}
    spec:
      topologySpreadConstraints:
      - {{maxSkew: 1, topologyKey: kubernetes.io/hostname, whenUnsatisfiable: DoNotSchedule, labelSelector: {{matchLabels: {{app: spread}}}}}}
      containers:
      - name: main
        image: {image}
        command: ["sh", "-c", "echo hello from the lab; while :; do sleep 1; done"]
"#
    );
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("spread.yaml");
    std::fs::write(&file, manifest).unwrap();
    let out = lab.kubectl(&["apply", "-f", file.to_str().unwrap()]);
    assert!(out.success(), "{}", out.stderr);
    let pods = eventually("3 pods Running", WAIT, || {
        Some(running_pods(&lab, "spread")).filter(|p| p.len() == 3)
    });
    let mut on: Vec<&str> = pods.iter().map(|(n, _)| n.as_str()).collect();
    on.sort();
    assert_eq!(
        on,
        ["kl-lab-agent-0", "kl-lab-agent-1", "kl-lab-server-0"],
        "one pod per node"
    );
    for (node, pod) in &pods {
        let logs = eventually("pod logs", WAIT, || {
            let out = lab.kubectl(&["logs", pod]);
            (out.success() && out.stdout.contains("hello from the lab")).then_some(out.stdout)
        });
        assert!(logs.contains("hello"), "{node}: {logs}");
        let out = lab.kubectl(&[
            "exec",
            pod,
            "--",
            "sh",
            "-c",
            "echo exec on $0; exit 3",
            node,
        ]);
        assert_eq!(
            out.stdout.trim(),
            format!("exec on {node}"),
            "{}",
            out.stderr
        );
        assert_eq!(out.status.and_then(|s| s.code()), Some(3), "{}", out.stderr);
    }
    let again = lab.ok(&["load", "image", image, "--name", "kl-lab"]);
    assert_eq!(
        again.lines().filter(|l| l.starts_with("skipped")).count(),
        3,
        "{again}"
    );

    // Acceptance 4.
    let added = lab.ok(&["node", "add", "kl-lab"]);
    assert!(added.contains("kl-lab-agent-2"), "{added}");
    eventually("4 nodes Ready", WAIT, || {
        ready_nodes(&lab).filter(|n| n.len() == 4)
    });
    let removed = lab.ok(&["node", "remove", "kl-lab", "kl-lab-agent-2"]);
    assert!(removed.contains("removed node kl-lab-agent-2"), "{removed}");
    let nodes = lab.kubectl(&["get", "nodes", "--no-headers"]);
    assert!(!nodes.stdout.contains("kl-lab-agent-2"), "{}", nodes.stdout);
    assert!(leftovers("kl-lab").iter().all(|l| !l.contains("agent-2")));
    assert!(docker(&["inspect", "kl-lab-agent-2"])
        .status
        .is_some_and(|s| !s.success()));

    // Acceptance 5: stop/start.
    let out = lab.kubectl(&["create", "configmap", "survivor", "--from-literal=k=v"]);
    assert!(out.success(), "{}", out.stderr);
    let ips = node_ips(&lab);
    assert_eq!(ips.len(), 3);
    lab.ok(&["stop", "kl-lab"]);
    let list = lab.ok(&["list"]);
    assert!(
        list.lines()
            .any(|l| l.starts_with("kl-lab ") && l.contains("0/3")),
        "{list}"
    );
    // Every component stopped on SIGTERM (none had to be killed).
    let logs = docker(&["logs", "kl-lab-server-0"]);
    let all = format!("{}{}", logs.stdout, logs.stderr);
    assert!(
        all.contains("stopped agent") && all.contains("stopped server"),
        "{all}"
    );
    assert!(!all.contains("killed"), "{all}");
    lab.ok(&["start", "kl-lab"]);
    eventually("pods answering after start", WAIT, || {
        pods_answer(&lab, "spread", 3).then_some(())
    });
    assert_eq!(node_ips(&lab), ips, "same node addresses after start");
    let out = lab.kubectl(&["get", "configmap", "survivor", "-o", "jsonpath={.data.k}"]);
    assert_eq!(out.stdout, "v", "{}", out.stderr);

    // The same after `docker restart` of every node container.
    let out = docker(&[
        "restart",
        "kl-lab-server-0",
        "kl-lab-agent-0",
        "kl-lab-agent-1",
    ]);
    assert!(out.success(), "{}", out.stderr);
    eventually("3 nodes Ready after docker restart", WAIT, || {
        ready_nodes(&lab).filter(|n| n.len() == 3)
    });
    eventually("pods answering after docker restart", WAIT, || {
        pods_answer(&lab, "spread", 3).then_some(())
    });
    assert_eq!(
        node_ips(&lab),
        ips,
        "same node addresses after docker restart"
    );

    // Acceptance 6.
    let export = tempfile::tempdir().unwrap();
    let out = lab.ok(&["export", "logs", "kl-lab", export.path().to_str().unwrap()]);
    assert!(out.contains("exported"), "{out}");
    for file in ["nodes.yaml", "pods.yaml", "events.yaml", "docker-info.txt"] {
        assert!(export.path().join(file).is_file(), "{file} missing");
    }
    for node in ["kl-lab-server-0", "kl-lab-agent-0", "kl-lab-agent-1"] {
        for file in [
            "node-init.log",
            "containerd.log",
            "agent.log",
            "inspect.json",
            "images.txt",
        ] {
            let path = export.path().join(node).join(file);
            assert!(path.is_file(), "{} missing", path.display());
        }
    }
    let server_log =
        std::fs::read_to_string(export.path().join("kl-lab-server-0/server.log")).unwrap();
    assert!(server_log.contains("kubelab server ready"), "{server_log}");
    let pods_yaml = std::fs::read_to_string(export.path().join("pods.yaml")).unwrap();
    assert!(pods_yaml.contains("spread-"), "{pods_yaml}");
}

/// Acceptance 8 and item 8: a profile (ci.yaml: storage off) drives `up`; `addons list` shows
/// each addon's state; enable/disable add and remove the StorageClass; a claim of the default
/// class binds once a pod uses it.
#[test]
fn addons_and_profiles() {
    let image = "kubelab-test/busybox:1";
    build_test_image(image).unwrap_or_else(|e| panic!("{e}"));
    let profile = Path::new(env!("CARGO_MANIFEST_DIR")).join("profiles/ci.yaml");
    let cluster = Cluster::up("kl-addons", &["--profile", profile.to_str().unwrap()]);
    // ci.yaml merges without switching the current context.
    let config = std::fs::read_to_string(&cluster.kubeconfig).unwrap();
    assert!(config.contains("name: kubelab-kl-addons"), "{config}");
    assert!(
        !config.contains("current-context: kubelab-kl-addons"),
        "{config}"
    );
    let kubectl = |args: &[&str]| {
        let mut all = vec!["--context", "kubelab-kl-addons"];
        all.extend_from_slice(args);
        cluster.kubectl(&all)
    };
    let state = |cluster: &Cluster| {
        let list = cluster.ok(&["addons", "list", "--name", "kl-addons"]);
        list.lines()
            .find(|l| l.starts_with("storage "))
            .map(|l| common::columns(l)[2].to_owned())
            .unwrap_or_else(|| panic!("{list}"))
    };
    // The server makes `standard` itself at first start; the addon owns it from then on.
    cluster.ok(&["addons", "disable", "storage", "--name", "kl-addons"]);
    assert_eq!(state(&cluster), "disabled");
    let out = kubectl(&["get", "storageclass", "standard"]);
    assert!(!out.success(), "{}", out.stdout);
    cluster.ok(&["addons", "enable", "storage", "--name", "kl-addons"]);
    assert_eq!(state(&cluster), "enabled");
    let out = kubectl(&["get", "storageclass"]);
    assert!(out.stdout.contains("standard (default)"), "{}", out.stdout);

    cluster.ok(&["load", "image", image, "--name", "kl-addons"]);
    let manifest = format!(
        r#"apiVersion: v1
kind: PersistentVolumeClaim
metadata: {{name: data}}
spec:
  accessModes: [ReadWriteOnce]
  resources: {{requests: {{storage: 1Mi}}}}
---
apiVersion: v1
kind: Pod
metadata: {{name: writer}}
spec:
  containers:
  - name: main
    image: {image}
    command: ["sh", "-c", "echo persisted > /data/file; while :; do sleep 1; done"]
    volumeMounts: [{{name: data, mountPath: /data}}]
  volumes:
  - name: data
    persistentVolumeClaim: {{claimName: data}}
"#
    );
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("pvc.yaml");
    std::fs::write(&file, manifest).unwrap();
    let out = kubectl(&["apply", "-f", file.to_str().unwrap()]);
    assert!(out.success(), "{}", out.stderr);
    eventually("the claim Bound", WAIT, || {
        let out = kubectl(&["get", "pvc", "data", "-o", "jsonpath={.status.phase}"]);
        (out.stdout == "Bound").then_some(())
    });
    eventually("the pod writing to its volume", WAIT, || {
        let out = kubectl(&["exec", "writer", "--", "cat", "/data/file"]);
        (out.stdout.trim() == "persisted").then_some(())
    });
}

/// Item 10: `kubelab` without a reachable engine says how to start it, in one line.
#[test]
fn unreachable_engine_says_how_to_start_it() {
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = Command::new(kubelab_bin());
    cmd.args(["list"]).env(
        "DOCKER_HOST",
        format!("unix://{}/no-docker.sock", dir.path().display()),
    );
    let out = run_with_deadline(cmd, None, Duration::from_secs(30));
    assert!(!out.success());
    let lines: Vec<&str> = out.stderr.lines().collect();
    assert_eq!(lines.len(), 1, "{}", out.stderr);
    assert!(
        lines[0].contains("cannot reach the Docker engine") && lines[0].contains("dockerd"),
        "{}",
        lines[0]
    );
}

/// The latest stored value of each Secret of the cluster's single server, read from a copy of
/// its SQLite files (taken with `docker cp`; a copy caught mid-write is taken again).
fn stored_secrets(node: &str) -> Vec<(String, Vec<u8>)> {
    eventually("a readable copy of the server's database", WAIT, || {
        let dir = tempfile::tempdir().unwrap();
        for file in ["state.db", "state.db-wal"] {
            let from = format!("{node}:/var/lib/kubelab/server/{file}");
            let out = docker(&["cp", &from, dir.path().to_str().unwrap()]);
            if !out.success() && file == "state.db" {
                panic!("docker cp {from}: {}", out.stderr);
            }
        }
        let conn = rusqlite::Connection::open(dir.path().join("state.db")).ok()?;
        let mut query = conn
            .prepare(
                "SELECT key, value FROM log WHERE key LIKE '/registry/core/secrets/default/%' \
                 AND revision IN (SELECT MAX(revision) FROM log GROUP BY key) AND deleted = 0",
            )
            .ok()?;
        let rows = query
            .query_map([], |row| Ok((row.get(0)?, row.get(1)?)))
            .ok()?
            .collect::<Result<Vec<(String, Vec<u8>)>, _>>()
            .ok()?;
        Some(rows)
    })
}

fn has(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w == needle.as_bytes())
}

/// Issue 8, acceptance 5 end to end: the `secret-encryption` addon, on from the profile at
/// `up`, then off and on again with `kubelab addons`: new and existing Secrets are stored under
/// `k8s:enc:aescbc:v1:` without their plaintext, and kubectl reads them all along.
#[test]
fn secret_encryption_addon() {
    let dir = tempfile::tempdir().unwrap();
    let profile = dir.path().join("enc.yaml");
    std::fs::write(
        &profile,
        "apiVersion: kubelab.dev/v1alpha1\nkind: Cluster\nname: kl-enc\nservers: 1\nagents: 0\n\
         addons:\n  storage: false\n  coredns: false\n  secret-encryption: true\n",
    )
    .unwrap();
    let cluster = Cluster::up("kl-enc", &["--profile", profile.to_str().unwrap()]);
    let node = "kl-enc-server-0";
    let state = || {
        let list = cluster.ok(&["addons", "list", "--name", "kl-enc"]);
        list.lines()
            .find(|l| l.starts_with("secret-encryption "))
            .map(|l| common::columns(l)[2].to_owned())
            .unwrap_or_else(|| panic!("{list}"))
    };
    let create = |name: &str, value: &str| {
        let literal = format!("--from-literal=password={value}");
        let out = cluster.kubectl(&["create", "secret", "generic", name, &literal]);
        assert!(out.success(), "{}", out.stderr);
    };
    let read = |name: &str| {
        let out = cluster.kubectl(&["get", "secret", name, "-o", "jsonpath={.data.password}"]);
        assert!(out.success(), "{}", out.stderr);
        out.stdout
    };
    let b64 = |s: &str| {
        use base64::Engine;
        base64::engine::general_purpose::STANDARD.encode(s)
    };
    let assert_stored = |name: &str, value: &str, encrypted: bool| {
        let rows = stored_secrets(node);
        let key = format!("/registry/core/secrets/default/{name}");
        let (_, raw) = rows
            .iter()
            .find(|(k, _)| *k == key)
            .unwrap_or_else(|| panic!("no row for {key}"));
        assert_eq!(
            raw.starts_with(b"k8s:enc:aescbc:v1:"),
            encrypted,
            "{key}: {}",
            String::from_utf8_lossy(&raw[..raw.len().min(40)])
        );
        // Stored in plain, the value shows as is or in base64 (JSON); encrypted, in neither.
        assert_eq!(
            has(raw, value) || has(raw, &b64(value)),
            !encrypted,
            "{key} holds its value in clear: {encrypted}"
        );
    };

    // On from the profile: the file has a key, only root reads it.
    assert_eq!(state(), "enabled");
    let out = docker(&[
        "exec",
        node,
        "stat",
        "-c",
        "%a",
        "/var/lib/kubelab/server/encryption-config.json",
    ]);
    assert_eq!(out.stdout.trim(), "600", "{}", out.stderr);
    create("first", "first-plaintext-4711");
    assert_stored("first", "first-plaintext-4711", true);
    assert_eq!(read("first"), b64("first-plaintext-4711"));

    // Off: every Secret is rewritten in plain, and stays readable.
    let out = cluster.ok(&["addons", "disable", "secret-encryption", "--name", "kl-enc"]);
    assert!(out.contains("plain"), "{out}");
    assert_eq!(state(), "disabled");
    assert_stored("first", "first-plaintext-4711", false);
    create("second", "second-plaintext-4712");
    assert_stored("second", "second-plaintext-4712", false);

    // On again: the Secret made while it was off is re-encrypted.
    let out = cluster.ok(&["addons", "enable", "secret-encryption", "--name", "kl-enc"]);
    assert!(out.contains("secrets encrypted at rest"), "{out}");
    assert_eq!(state(), "enabled");
    assert_stored("first", "first-plaintext-4711", true);
    assert_stored("second", "second-plaintext-4712", true);
    assert_eq!(read("second"), b64("second-plaintext-4712"));
    let status = cluster.ok(&["secrets", "status", "--name", "kl-enc"]);
    assert!(status.contains("Encryption Status: Enabled"), "{status}");
}
