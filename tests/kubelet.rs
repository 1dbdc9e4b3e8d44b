//! The CRI node agent against a private containerd (tests/common/containerd.rs).

mod common;
#[path = "common/containerd.rs"]
mod containerd;

use std::time::Duration;

use containerd::Containerd;
use k8s_cri::v1 as cri;
use kubelab_agent::kubelet::cni::{self, CniConfig};
use kubelab_agent::kubelet::cri::Cri;

#[test]
fn a_sandbox_gets_an_address_from_the_node_pod_cidr() {
    let ctrd = Containerd::start();
    let cni = CniConfig {
        conf_dir: ctrd.cni_conf_dir.clone(),
        bridge: ctrd.bridge.clone(),
        ipam_data_dir: ctrd.root().join("ipam"),
    };
    cni::write_conflist(&cni, "10.199.3.0/24").unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let cri = Cri::new(&ctrd.socket);
        let version = cri.version().await.unwrap();
        assert_eq!(version.runtime_name, "containerd");
        // containerd notices the new conflist asynchronously.
        let until = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            let conditions = cri.status().await.unwrap();
            if conditions
                .iter()
                .any(|c| c.r#type == "NetworkReady" && c.status)
            {
                break;
            }
            assert!(
                tokio::time::Instant::now() < until,
                "network not ready: {conditions:?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let config = cri::PodSandboxConfig {
            metadata: Some(cri::PodSandboxMetadata {
                name: "first".into(),
                uid: "uid-first".into(),
                namespace: "default".into(),
                attempt: 0,
            }),
            hostname: "first".into(),
            log_directory: ctrd.root().join("logs").to_string_lossy().into_owned(),
            labels: [("io.kubernetes.pod.uid".to_string(), "uid-first".to_string())].into(),
            linux: Some(cri::LinuxPodSandboxConfig::default()),
            ..Default::default()
        };
        let sandbox = cri.run_pod_sandbox(config.clone()).await.unwrap();
        let status = cri.pod_sandbox_status(&sandbox).await.unwrap().unwrap();
        let ip: std::net::Ipv4Addr = status.network.unwrap().ip.parse().unwrap();
        assert_eq!(ip.octets()[..3], [10, 199, 3], "{ip}");
        let container = cri
            .create_container(
                &sandbox,
                cri::ContainerConfig {
                    metadata: Some(cri::ContainerMetadata {
                        name: "c".into(),
                        attempt: 0,
                    }),
                    image: Some(cri::ImageSpec {
                        image: containerd::BUSYBOX.into(),
                        ..Default::default()
                    }),
                    command: vec!["sh".into(), "-c".into(), "echo hello; sleep 30".into()],
                    log_path: "c/0.log".into(),
                    ..Default::default()
                },
                config,
            )
            .await
            .unwrap();
        cri.start_container(&container).await.unwrap();
        let out = cri
            .exec_sync(
                &container,
                vec!["ip".into(), "-4".into(), "addr".into()],
                10,
            )
            .await
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.contains(&ip.to_string()), "{text}");
        assert_eq!(
            cri.list_pod_sandboxes(Some("uid-first"))
                .await
                .unwrap()
                .len(),
            1
        );
    });
}

// ---------------------------------------------------------------------------------------------
// The agent end to end: `kubelab server`, a private containerd, `kubelab agent`, real kubectl.

use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};

use common::{eventually, Kubectl, TestServer};
use serde_json::Value;

/// Generous: CI runs every test binary at once on two cores.
const WAIT: Duration = Duration::from_secs(120);

fn k() -> Kubectl {
    Kubectl::new("1.32")
}

/// A server, a containerd and one agent (node `node-1`), torn down in that order reversed.
struct Cluster {
    agent: Option<Child>,
    agent_args: Vec<String>,
    agent_starts: u32,
    /// Outlives the agent (fields drop in order).
    ctrd: Containerd,
    server: TestServer,
}

static NEXT_NET: AtomicU32 = AtomicU32::new(0);

impl Cluster {
    fn start() -> Cluster {
        let ctrd = Containerd::start();
        let n = (std::process::id() + NEXT_NET.fetch_add(1, Ordering::SeqCst) * 7) % 120;
        let cidr = format!("10.{}.0.0/16", 100 + n);
        let server = TestServer::start_args(&["--cluster-cidr", &cidr]);
        let tls = server.data_dir().join("tls");
        let read = |f: &str| std::fs::read_to_string(tls.join(f)).unwrap();
        let ca = kubelab_pki::CertPair {
            cert_pem: read("ca.crt"),
            key_pem: read("ca.key"),
        };
        let cert =
            kubelab_pki::issue_client_cert(&ca, "system:node:node-1", &["system:nodes"]).unwrap();
        let kubeconfig = server.root().join("node-1.kubeconfig");
        let url = server.url();
        kubelab_pki::write_kubeconfig(
            &kubeconfig,
            &kubelab_pki::KubeconfigSpec {
                cluster_name: "kubelab",
                context_name: "kubelab",
                user_name: "system:node:node-1",
                server: &url,
                ca_pem: &ca.cert_pem,
                client: &cert,
            },
        )
        .unwrap();
        let serving = kubelab_pki::issue_node_cert(
            &ca,
            "node-1",
            kubelab_pki::NodeCertKind::Serving,
            &["127.0.0.1".to_string()],
        )
        .unwrap();
        let cert_file = server.root().join("node-1-serving.crt");
        let key_file = server.root().join("node-1-serving.key");
        std::fs::write(&cert_file, &serving.cert_pem).unwrap();
        std::fs::write(&key_file, &serving.key_pem).unwrap();
        let root = ctrd.root().join("agent");
        let agent_args: Vec<String> = vec![
            "agent".into(),
            "--node-name".into(),
            "node-1".into(),
            "--node-ip".into(),
            "127.0.0.1".into(),
            "--kubeconfig".into(),
            kubeconfig.to_string_lossy().into_owned(),
            "--containerd-socket".into(),
            ctrd.socket.to_string_lossy().into_owned(),
            "--root-dir".into(),
            root.to_string_lossy().into_owned(),
            "--cni-conf-dir".into(),
            ctrd.cni_conf_dir.to_string_lossy().into_owned(),
            "--cni-bridge".into(),
            ctrd.bridge.clone(),
            "--kubelet-port".into(),
            "0".into(),
            // The host's network namespace is shared: no service proxy here.
            "--proxy-mode".into(),
            "none".into(),
            "--tls-cert-file".into(),
            cert_file.to_string_lossy().into_owned(),
            "--tls-private-key-file".into(),
            key_file.to_string_lossy().into_owned(),
        ];
        let mut cluster = Cluster {
            agent: None,
            agent_args,
            agent_starts: 0,
            ctrd,
            server,
        };
        cluster.start_agent();
        cluster
    }

    fn agent_log(&self) -> std::path::PathBuf {
        self.server
            .root()
            .join(format!("agent-{}.log", self.agent_starts))
    }

    fn start_agent(&mut self) {
        self.agent_starts += 1;
        let log = std::fs::File::create(self.agent_log()).unwrap();
        let child = Command::new(common::kubelab_bin())
            .args(&self.agent_args)
            .env("RUST_LOG", "info,kubelab_agent=debug")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start kubelab agent");
        self.agent = Some(child);
    }

    /// SIGKILLs the agent (its containers keep running in containerd).
    fn kill_agent(&mut self) {
        if let Some(mut c) = self.agent.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    fn agent_log_tail(&self) -> String {
        let text = std::fs::read_to_string(self.agent_log()).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }

    fn kubectl(&self, args: &[&str]) -> common::Output {
        self.server.kubectl(&k(), args)
    }

    fn ok(&self, args: &[&str]) -> String {
        let out = self.kubectl(args);
        assert!(
            out.success(),
            "kubectl {} failed:\n{}\n{}\nagent log:\n{}",
            args.join(" "),
            out.stdout,
            out.stderr,
            self.agent_log_tail()
        );
        out.stdout
    }

    fn apply(&self, manifest: &str) {
        self.server.ok_stdin(&k(), &["apply", "-f", "-"], manifest);
    }

    fn json(&self, args: &[&str]) -> Option<Value> {
        let mut all = args.to_vec();
        all.extend(["-o", "json"]);
        let out = self.kubectl(&all);
        out.success()
            .then(|| serde_json::from_str(&out.stdout).ok())
            .flatten()
    }

    fn wait_node_ready(&self) -> Value {
        self.eventually("node-1 registers and turns Ready", || {
            let n = self.json(&["get", "node", "node-1"])?;
            let ready = n["status"]["conditions"]
                .as_array()?
                .iter()
                .any(|c| c["type"] == "Ready" && c["status"] == "True");
            ready.then_some(n)
        })
    }

    fn eventually<T>(&self, what: &str, f: impl FnMut() -> Option<T>) -> T {
        let result =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| eventually(what, WAIT, f)));
        match result {
            Ok(v) => v,
            Err(e) => {
                eprintln!("agent log (tail):\n{}", self.agent_log_tail());
                std::panic::resume_unwind(e)
            }
        }
    }

    fn pod(&self, name: &str) -> Option<Value> {
        self.json(&["get", "pod", name])
    }

    fn wait_pod(&self, name: &str, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            self.eventually(&format!("pod {name}: {what}"), || {
                let p = self.pod(name)?;
                pred(&p).then_some(p)
            })
        }));
        result.unwrap_or_else(|e| {
            let d = self.kubectl(&["describe", "pod", name]);
            eprintln!("kubectl describe pod {name}:\n{}{}", d.stdout, d.stderr);
            std::panic::resume_unwind(e)
        })
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.kill_agent();
        if std::thread::panicking() {
            eprintln!("agent log (tail):\n{}", self.agent_log_tail());
        }
    }
}

fn ready(p: &Value) -> bool {
    p["status"]["conditions"].as_array().is_some_and(|c| {
        c.iter()
            .any(|c| c["type"] == "Ready" && c["status"] == "True")
    })
}

fn http_get(ip: &str, port: u16, path: &str) -> Option<String> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect_timeout(
        &format!("{ip}:{port}").parse().ok()?,
        Duration::from_secs(2),
    )
    .ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: {ip}\r\n\r\n").ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    Some(out)
}

#[test]
fn node_registers_and_a_pod_serves_http_on_its_pod_ip() {
    let cluster = Cluster::start();
    let node = cluster.wait_node_ready();
    let status = &node["status"];
    assert!(status["capacity"]["cpu"].as_str().is_some(), "{status}");
    assert!(status["capacity"]["memory"]
        .as_str()
        .unwrap()
        .ends_with("Ki"));
    assert_eq!(status["capacity"]["pods"], "110");
    assert!(status["allocatable"]["ephemeral-storage"]
        .as_str()
        .is_some());
    assert_eq!(status["addresses"][0]["type"], "InternalIP");
    assert_eq!(status["addresses"][0]["address"], "127.0.0.1");
    assert_eq!(status["addresses"][1]["type"], "Hostname");
    let runtime = status["nodeInfo"]["containerRuntimeVersion"]
        .as_str()
        .unwrap();
    assert!(runtime.starts_with("containerd://"), "{runtime}");
    assert_eq!(status["nodeInfo"]["kubeletVersion"], "v1.32.0");
    let types: Vec<&str> = status["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["type"].as_str().unwrap())
        .collect();
    assert_eq!(
        types,
        ["MemoryPressure", "DiskPressure", "PIDPressure", "Ready"]
    );
    let describe = cluster.ok(&["describe", "node", "node-1"]);
    for needle in [
        "Capacity:",
        "Allocatable:",
        "InternalIP:  127.0.0.1",
        "Hostname:    node-1",
        "HolderIdentity:  node-1",
        "Container Runtime Version:  containerd://",
        "Kubelet Version:            v1.32.0",
        "PodCIDR:",
    ] {
        assert!(describe.contains(needle), "{needle:?} missing:\n{describe}");
    }
    let cidr = cluster.json(&["get", "node", "node-1"]).unwrap()["spec"]["podCIDR"]
        .as_str()
        .unwrap()
        .to_string();

    cluster.apply(&format!(
        "apiVersion: v1
kind: Pod
metadata:
  name: web
spec:
  containers:
  - name: httpd
    image: {}
    command: [sh, -c, 'echo hello-from-kubelab > /var/www/index.html; exec httpd -f -p 80 -h /var/www']
    ports:
    - containerPort: 80
",
        containerd::BUSYBOX
    ));
    let pod = cluster.wait_pod("web", "Running and Ready", |p| {
        p["status"]["phase"] == "Running" && ready(p)
    });
    let ip = pod["status"]["podIP"].as_str().unwrap().to_string();
    let prefix: Vec<&str> = cidr.split('.').take(3).collect();
    assert!(
        ip.starts_with(&prefix.join(".")),
        "pod IP {ip} not in {cidr}"
    );
    assert_eq!(pod["status"]["hostIP"], "127.0.0.1");
    assert_eq!(pod["status"]["qosClass"], "BestEffort");
    let cs = &pod["status"]["containerStatuses"][0];
    assert_eq!(cs["ready"], true);
    assert_eq!(cs["started"], true);
    assert_eq!(cs["restartCount"], 0);
    assert!(cs["containerID"]
        .as_str()
        .unwrap()
        .starts_with("containerd://"));
    assert!(cs["imageID"].as_str().unwrap().contains("sha256:"), "{cs}");
    assert!(cs["state"]["running"]["startedAt"].is_string());
    let body = cluster.eventually("httpd answers on the pod IP", || http_get(&ip, 80, "/"));
    assert!(body.contains("hello-from-kubelab"), "{body}");
    let table = cluster.ok(&["get", "pods", "-o", "wide"]);
    assert!(table.contains("node-1") && table.contains(&ip), "{table}");
}

impl Cluster {
    /// Runs `cmd` in the pod's container through CRI ExecSync; (exit code, stdout).
    fn exec(&self, pod: &str, container: &str, cmd: &[&str]) -> (i32, String) {
        let p = self
            .pod(pod)
            .unwrap_or_else(|| panic!("pod {pod} not found"));
        let statuses = p["status"]["containerStatuses"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let id = statuses
            .iter()
            .find(|c| c["name"] == container)
            .and_then(|c| c["containerID"].as_str())
            .and_then(|id| id.strip_prefix("containerd://"))
            .unwrap_or_else(|| panic!("no container {container} in {p}"))
            .to_string();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let cri = Cri::new(&self.ctrd.socket);
            let out = cri
                .exec_sync(&id, cmd.iter().map(|s| s.to_string()).collect(), 10)
                .await
                .unwrap_or_else(|e| panic!("exec {cmd:?} in {pod}/{container}: {e}"));
            (
                out.exit_code,
                String::from_utf8_lossy(&out.stdout).into_owned(),
            )
        })
    }

    /// Runs kubectl on a pseudo-terminal (through script(1)), so `-t` gets a real TTY.
    fn in_terminal(&self, args: &[&str]) -> common::Output {
        let home = self.server.root().join(format!(
            "tty-home-{}",
            NEXT_NET.fetch_add(1, Ordering::SeqCst)
        ));
        let mut line = vec![
            k().path.to_string_lossy().into_owned(),
            "--kubeconfig".into(),
            self.server.kubeconfig_path().to_string_lossy().into_owned(),
            "--cache-dir".into(),
            home.join("cache").to_string_lossy().into_owned(),
        ];
        line.extend(args.iter().map(|a| a.to_string()));
        let line: Vec<String> = line.iter().map(|w| sh_quote(w)).collect();
        let mut cmd = Command::new("script");
        cmd.env("HOME", &home).env_remove("KUBECONFIG").args([
            "-qec",
            &line.join(" "),
            "/dev/null",
        ]);
        common::run_with_deadline(cmd, None, WAIT)
    }

    fn events(&self, pod: &str) -> String {
        self.ok(&[
            "get",
            "events",
            "--field-selector",
            &format!("involvedObject.name={pod}"),
        ])
    }
}

fn container_status<'a>(p: &'a Value, name: &str) -> &'a Value {
    p["status"]["containerStatuses"]
        .as_array()
        .and_then(|a| a.iter().find(|c| c["name"] == name))
        .unwrap_or(&Value::Null)
}

fn busybox_pod(name: &str, spec_extra: &str, container_extra: &str, command: &str) -> String {
    format!(
        "apiVersion: v1
kind: Pod
metadata:
  name: {name}
spec:
  terminationGracePeriodSeconds: 2
{spec_extra}
  containers:
  - name: main
    image: {image}
    command: [sh, -c, '{command}']
{container_extra}
",
        image = containerd::BUSYBOX
    )
}

// Acceptance 3: the course's example-pod (image `nginx`, here the busybox image under that
// name, present on the node) sees DB_HOST and DB_USER from its ConfigMap and Secret.
#[test]
fn course_example_pod_gets_env_from_config_map_and_secret() {
    let cluster = Cluster::start();
    cluster.ctrd.import_busybox_as(
        "docker.io/library/nginx:latest",
        &["httpd", "-f", "-p", "80"],
    );
    cluster.wait_node_ready();
    for f in [
        "example-config.yaml",
        "example-secret.yaml",
        "example-pod.yaml",
    ] {
        cluster.ok(&["apply", "-f", &common::fixture(&format!("course/{f}"))]);
    }
    let pod = cluster.wait_pod("example-pod", "Running", |p| {
        p["status"]["phase"] == "Running"
    });
    assert_eq!(container_status(&pod, "my-container")["image"], "nginx");
    let (code, env) = cluster.exec("example-pod", "my-container", &["env"]);
    assert_eq!(code, 0);
    assert!(env.lines().any(|l| l == "DB_HOST=db.example.com"), "{env}");
    assert!(env.lines().any(|l| l == "DB_USER=admin"), "{env}");
    assert!(
        env.lines()
            .any(|l| l.starts_with("KUBERNETES_SERVICE_HOST=")),
        "{env}"
    );
}

// Acceptance 5: probes, CrashLoopBackOff, ImagePullBackOff.
#[test]
fn probes_restarts_and_back_offs() {
    let cluster = Cluster::start();
    cluster.wait_node_ready();
    cluster.apply(&busybox_pod(
        "liveness",
        "",
        "    livenessProbe:
      exec:
        command: [cat, /tmp/healthy]
      periodSeconds: 1
      failureThreshold: 2",
        "touch /tmp/healthy; sleep 3; rm /tmp/healthy; sleep 3600",
    ));
    cluster.apply(&busybox_pod(
        "unready",
        "",
        "    readinessProbe:
      httpGet:
        path: /
        port: 8080
      periodSeconds: 1",
        "sleep 3600",
    ));
    cluster.apply(&busybox_pod("crash", "", "", "echo bye; exit 3"));
    cluster.apply(
        "apiVersion: v1
kind: Pod
metadata:
  name: absent
spec:
  containers:
  - name: main
    image: kubelab.local/absent:1
",
    );
    // A failing liveness probe restarts the container; lastState says how it ended.
    let p = cluster.wait_pod("liveness", "restarted by its liveness probe", |p| {
        container_status(p, "main")["restartCount"].as_i64() >= Some(1)
    });
    let last = &container_status(&p, "main")["lastState"]["terminated"];
    assert_eq!(last["exitCode"], 137, "{p}");
    assert!(
        last["reason"].is_string() && last["finishedAt"].is_string(),
        "{p}"
    );
    let events = cluster.events("liveness");
    assert!(events.contains("Liveness probe failed"), "{events}");
    assert!(
        events.contains("failed liveness probe, will be restarted"),
        "{events}"
    );
    // A failing readiness probe keeps the pod Running but not Ready.
    let p = cluster.wait_pod("unready", "Running", |p| p["status"]["phase"] == "Running");
    assert_eq!(container_status(&p, "main")["ready"], false);
    assert_eq!(container_status(&p, "main")["started"], true);
    let ready = p["status"]["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == "Ready")
        .unwrap()
        .clone();
    assert_eq!(ready["status"], "False");
    assert_eq!(ready["reason"], "ContainersNotReady");
    // A container that exits at once: CrashLoopBackOff with growing delays.
    let p = cluster.wait_pod("crash", "in CrashLoopBackOff (10s)", |p| {
        container_status(p, "main")["state"]["waiting"]["reason"] == "CrashLoopBackOff"
    });
    let cs = container_status(&p, "main");
    assert!(
        cs["state"]["waiting"]["message"]
            .as_str()
            .unwrap()
            .contains("back-off 10s"),
        "{cs}"
    );
    assert_eq!(cs["lastState"]["terminated"]["exitCode"], 3);
    let first_restarts = cs["restartCount"].as_i64().unwrap();
    let p = cluster.wait_pod("crash", "back-off grows to 20s", |p| {
        container_status(p, "main")["state"]["waiting"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("back-off 20s"))
    });
    assert!(
        container_status(&p, "main")["restartCount"]
            .as_i64()
            .unwrap()
            > first_restarts
    );
    let table = cluster.ok(&["get", "pod", "crash"]);
    assert!(table.contains("CrashLoopBackOff"), "{table}");
    let previous = cluster.ok(&["logs", "crash", "--previous"]);
    assert_eq!(previous, "bye\n");
    // An absent image: ErrImagePull, then ImagePullBackOff, with events.
    cluster.wait_pod("absent", "ImagePullBackOff", |p| {
        container_status(p, "main")["state"]["waiting"]["reason"] == "ImagePullBackOff"
    });
    let events = cluster.events("absent");
    assert!(
        events.contains("Failed to pull image \"kubelab.local/absent:1\""),
        "{events}"
    );
    assert!(events.contains("ErrImagePull"), "{events}");
    assert!(events.contains("Back-off pulling image"), "{events}");
}

// Acceptance 6: configMap/secret files (content, modes, updates), emptyDir shared by two
// containers, a projected service-account token that authenticates.
/// Lets the `default` ServiceAccount of `default` read, as a pod listing pods needs.
const DEFAULT_ACCOUNT_VIEWS: &str = "apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata:
  name: default-view
roleRef:
  apiGroup: rbac.authorization.k8s.io
  kind: ClusterRole
  name: view
subjects:
- kind: ServiceAccount
  name: default
  namespace: default
";

#[test]
fn volumes_config_map_secret_empty_dir_and_token() {
    let cluster = Cluster::start();
    cluster.wait_node_ready();
    // Authorization is on: the pod's account reads through a binding to `view`.
    cluster.apply(DEFAULT_ACCOUNT_VIEWS);
    cluster.apply(
        "apiVersion: v1
kind: ConfigMap
metadata:
  name: settings
data:
  color: blue
  size: large
---
apiVersion: v1
kind: Secret
metadata:
  name: creds
stringData:
  password: s3cret
",
    );
    cluster.apply(&format!(
        "apiVersion: v1
kind: Pod
metadata:
  name: vols
  labels:
    app: vols
spec:
  terminationGracePeriodSeconds: 1
  volumes:
  - name: settings
    configMap:
      name: settings
      defaultMode: 0400
      items:
      - key: color
        path: conf/color
  - name: all-settings
    configMap:
      name: settings
  - name: creds
    secret:
      secretName: creds
      defaultMode: 0440
  - name: shared
    emptyDir: {{}}
  - name: scratch
    emptyDir:
      medium: Memory
  - name: info
    downwardAPI:
      items:
      - path: labels
        fieldRef:
          fieldPath: metadata.labels
  - name: token
    projected:
      sources:
      - serviceAccountToken:
          path: token
          expirationSeconds: 3600
      - configMap:
          name: kube-root-ca.crt
          items:
          - key: ca.crt
            path: ca.crt
  containers:
  - name: writer
    image: {image}
    command: [sh, -c, 'echo from-writer > /shared/note; sleep 3600']
    volumeMounts:
    - {{name: shared, mountPath: /shared}}
    - {{name: settings, mountPath: /etc/settings}}
    - {{name: all-settings, mountPath: /etc/all}}
    - {{name: all-settings, mountPath: /etc/size, subPath: size}}
    - {{name: creds, mountPath: /etc/creds, readOnly: true}}
    - {{name: scratch, mountPath: /scratch}}
    - {{name: info, mountPath: /etc/info}}
    - {{name: token, mountPath: /var/run/secrets/kubernetes.io/serviceaccount}}
  - name: reader
    image: {image}
    command: [sh, -c, 'sleep 3600']
    volumeMounts:
    - {{name: shared, mountPath: /data}}
",
        image = containerd::BUSYBOX
    ));
    cluster.wait_pod("vols", "Running and Ready", |p| {
        p["status"]["phase"] == "Running" && ready(p)
    });
    let sh = |container: &str, script: &str| cluster.exec("vols", container, &["sh", "-c", script]);
    assert_eq!(sh("writer", "cat /etc/settings/conf/color").1, "blue");
    assert_eq!(
        sh("writer", "stat -L -c %a /etc/settings/conf/color")
            .1
            .trim(),
        "400"
    );
    assert_eq!(sh("writer", "cat /etc/creds/password").1, "s3cret");
    assert_eq!(
        sh("writer", "stat -L -c %a /etc/creds/password").1.trim(),
        "440"
    );
    assert_eq!(sh("writer", "cat /etc/size").1, "large");
    assert!(sh("writer", "cat /etc/info/labels")
        .1
        .contains("app=\"vols\""));
    assert!(
        sh("writer", "grep -c ' /scratch tmpfs' /proc/mounts")
            .1
            .trim()
            == "1"
    );
    // emptyDir: what one container writes, the other reads.
    let note = cluster.eventually("the reader sees the writer's file", || {
        let (code, out) = sh("reader", "cat /data/note");
        (code == 0).then_some(out)
    });
    assert_eq!(note.trim(), "from-writer");
    // A ConfigMap update reaches the mounted files.
    cluster.ok(&[
        "patch",
        "configmap",
        "settings",
        "-p",
        r#"{"data":{"color":"green"}}"#,
    ]);
    cluster.eventually("the updated ConfigMap reaches the file", || {
        (sh("writer", "cat /etc/all/color").1 == "green").then_some(())
    });
    cluster.eventually("and the file with items", || {
        (sh("writer", "cat /etc/settings/conf/color").1 == "green").then_some(())
    });
    // The projected token is a service-account token the API server accepts.
    let (_, token) = sh(
        "writer",
        "cat /var/run/secrets/kubernetes.io/serviceaccount/token",
    );
    assert_eq!(token.split('.').count(), 3, "not a JWT: {token:?}");
    let (_, ca) = sh(
        "writer",
        "cat /var/run/secrets/kubernetes.io/serviceaccount/ca.crt",
    );
    assert!(ca.contains("BEGIN CERTIFICATE"), "{ca}");
    let names = cluster.server.block_on(async {
        let mut config = kube::Config::new(cluster.server.url().parse().unwrap());
        let der = kubelab_pki_ca_der(&ca);
        config.root_cert = Some(vec![der]);
        config.auth_info.token = Some(token.trim().to_string().into());
        let client = kube::Client::try_from(config).unwrap();
        let pods: kube::Api<k8s_openapi::api::core::v1::Pod> =
            kube::Api::namespaced(client, "default");
        pods.list(&Default::default()).await.map(|l| l.items.len())
    });
    assert!(
        names.as_ref().is_ok_and(|n| *n >= 1),
        "listing pods with the pod's token: {names:?}"
    );
}

// Acceptance 6 (the token part, from inside a pod): the ServiceAccount admission mounts a
// token into every pod, and kubectl run in a pod (the host's static kubectl binary, mounted
// with hostPath) lists pods through the API with its in-cluster configuration: the token, the
// CA and KUBERNETES_SERVICE_HOST/PORT (here the server's loopback address, reachable with
// hostNetwork; pods use the kubernetes Service once the service proxy runs).
#[test]
fn the_automounted_token_lets_a_pod_list_pods() {
    let cluster = Cluster::start();
    cluster.wait_node_ready();
    // Authorization is on: the pod's account reads through a binding to `view`.
    cluster.apply(DEFAULT_ACCOUNT_VIEWS);
    cluster.apply(&busybox_pod(
        "client",
        &format!(
            "  hostNetwork: true
  volumes:
  - name: kubectl
    hostPath: {{path: {}, type: File}}",
            k().path.display()
        ),
        &format!(
            "    env:
    - {{name: KUBERNETES_SERVICE_HOST, value: 127.0.0.1}}
    - {{name: KUBERNETES_SERVICE_PORT, value: \"{}\"}}
    - {{name: HOME, value: /tmp}}
    volumeMounts:
    - {{name: kubectl, mountPath: /kubectl}}",
            cluster.server.port()
        ),
        "sleep 3600",
    ));
    let pod = cluster.wait_pod("client", "Running", |p| p["status"]["phase"] == "Running");
    let volumes = pod["spec"]["volumes"].to_string();
    assert!(volumes.contains("kube-api-access-"), "{volumes}");
    let dir = "/var/run/secrets/kubernetes.io/serviceaccount";
    assert_eq!(
        cluster
            .exec("client", "main", &["cat", &format!("{dir}/namespace")])
            .1,
        "default"
    );
    let (code, out) = cluster.exec(
        "client",
        "main",
        &["sh", "-c", "/kubectl get pods -o name 2>&1"],
    );
    assert_eq!(
        (code, out.as_str()),
        (0, "pod/client\n"),
        "kubectl in the pod"
    );
    // A wrong token is refused.
    let (code, out) = cluster.exec(
        "client",
        "main",
        &["sh", "-c", "/kubectl get pods --token=not-a-token 2>&1"],
    );
    assert_ne!(code, 0, "{out}");
    assert!(out.contains("Unauthorized"), "{out}");
}

fn kubelab_pki_ca_der(pem: &str) -> Vec<u8> {
    use base64::Engine;
    let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    base64::engine::general_purpose::STANDARD
        .decode(body)
        .unwrap()
}

// Acceptance 7: deletion waits for the grace period of a container that ignores SIGTERM; an
// agent restart leaves running containers running and adopted.
#[test]
fn graceful_deletion_and_adoption_after_an_agent_restart() {
    let mut cluster = Cluster::start();
    cluster.wait_node_ready();
    cluster.apply(
        &busybox_pod(
            "stubborn",
            "",
            "",
            "trap \"\" TERM; while :; do sleep 1; done",
        )
        .replace(
            "terminationGracePeriodSeconds: 2",
            "terminationGracePeriodSeconds: 4",
        ),
    );
    cluster.apply(&busybox_pod("steady", "", "", "sleep 3600"));
    cluster.wait_pod("stubborn", "Running", |p| p["status"]["phase"] == "Running");
    let before = cluster.wait_pod("steady", "Running", |p| p["status"]["phase"] == "Running");
    let id = container_status(&before, "main")["containerID"].clone();
    // The agent dies and comes back: the container keeps running and is adopted as it is.
    cluster.kill_agent();
    cluster.start_agent();
    cluster.eventually("the restarted agent renews the node lease", || {
        std::fs::read_to_string(cluster.agent_log())
            .ok()?
            .contains("registered node")
            .then_some(())
    });
    let (code, _) = cluster.exec("steady", "main", &["true"]);
    assert_eq!(code, 0);
    let after = cluster.pod("steady").unwrap();
    assert_eq!(container_status(&after, "main")["containerID"], id);
    assert_eq!(container_status(&after, "main")["restartCount"], 0);
    assert_eq!(after["status"]["phase"], "Running");
    // Deleting waits for the grace period, then the pod is gone.
    let started = std::time::Instant::now();
    cluster.ok(&["delete", "pod", "stubborn", "--wait=true", "--timeout=60s"]);
    let took = started.elapsed();
    assert!(
        took >= Duration::from_secs(3),
        "deleted after {took:?}, before the grace period"
    );
    assert!(!cluster.kubectl(&["get", "pod", "stubborn"]).success());
    // Its sandbox is gone from the runtime too.
    let out = cluster.ctrd.ctr(&["containers", "ls", "-q"]);
    let left = String::from_utf8_lossy(&out.stdout).lines().count();
    cluster.ok(&["delete", "pod", "steady", "--wait=true", "--timeout=60s"]);
    let out = cluster.ctrd.ctr(&["containers", "ls", "-q"]);
    let now = String::from_utf8_lossy(&out.stdout).lines().count();
    assert!(
        now < left && now == 0,
        "containers left: {now} (before the last delete: {left})"
    );
}

// Acceptance 4 (the kubelet side): logs, exec with its exit code, port-forward, cp.
#[test]
fn logs_exec_port_forward_and_cp_through_the_api_server() {
    let cluster = Cluster::start();
    cluster.wait_node_ready();
    cluster.apply(&busybox_pod(
        "talker",
        "",
        "",
        "echo hello-www > /var/www/index.html; (httpd -f -p 8080 -h /var/www &); i=0; while :; do i=$((i+1)); echo line-$i; sleep 0.2; done",
    ));
    cluster.wait_pod("talker", "Running", |p| p["status"]["phase"] == "Running");
    let logs = cluster.eventually("kubectl logs shows lines", || {
        let out = cluster.kubectl(&["logs", "talker"]);
        (out.success() && out.stdout.contains("line-3")).then_some(out.stdout)
    });
    assert!(logs.starts_with("line-1\n"), "{logs}");
    let tail = cluster.ok(&["logs", "talker", "--tail=2", "--timestamps"]);
    assert_eq!(tail.lines().count(), 2, "{tail}");
    assert!(
        tail.lines()
            .all(|l| l.split(' ').next().is_some_and(|t| t.ends_with('Z'))),
        "{tail}"
    );
    // -f streams new lines as they come.
    let mut follow = cluster
        .server
        .spawn_kubectl(&k(), &["logs", "-f", "talker", "-c", "main"]);
    let before: usize = logs.lines().count();
    follow.wait_for("a fresh line from logs -f", WAIT, |l| {
        l.strip_prefix("line-")
            .and_then(|n| n.parse::<usize>().ok())
            .is_some_and(|n| n > before + 5)
    });
    drop(follow);
    // exec: output and the exit code.
    let out = cluster.kubectl(&["exec", "talker", "--", "sh", "-c", "echo hi; exit 3"]);
    assert_eq!(out.stdout, "hi\n", "{out:?}");
    assert_eq!(out.status.and_then(|s| s.code()), Some(3), "{out:?}");
    let out = cluster.server.kubectl_stdin(
        &k(),
        &[
            "exec",
            "-i",
            "talker",
            "--",
            "sh",
            "-c",
            "read x; echo got-$x",
        ],
        "abc\n",
    );
    assert!(out.stdout.contains("got-abc"), "{out:?}");
    // port-forward, then HTTP through it.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let mut pf = cluster.server.spawn_kubectl(
        &k(),
        &["port-forward", "pod/talker", &format!("{port}:8080")],
    );
    pf.wait_for("port-forward is ready", WAIT, |l| {
        l.contains("Forwarding from")
    });
    let body = cluster.eventually("HTTP through port-forward", || {
        http_get("127.0.0.1", port, "/")
    });
    assert!(body.contains("hello-www"), "{body}");
    drop(pf);
    // cp out of the pod (tar on the container's stdout).
    let dest = cluster.server.root().join("copied.html");
    cluster.ok(&["cp", "talker:/var/www/index.html", &dest.to_string_lossy()]);
    assert_eq!(std::fs::read_to_string(&dest).unwrap(), "hello-www\n");
    // cp into the pod: tar reads stdin to its end.
    let src = cluster.server.root().join("upload.txt");
    std::fs::write(&src, "uploaded-content\n").unwrap();
    cluster.ok(&["cp", &src.to_string_lossy(), "talker:/tmp/upload.txt"]);
    let (_, text) = cluster.exec("talker", "main", &["cat", "/tmp/upload.txt"]);
    assert_eq!(text, "uploaded-content\n");
    // stdin closes: `cat` ends and its exit code comes back.
    let out = cluster.server.kubectl_stdin(
        &k(),
        &["exec", "-i", "talker", "--", "sh", "-c", "cat; exit 4"],
        "piped\n",
    );
    assert_eq!(out.stdout, "piped\n", "{out:?}");
    assert_eq!(out.status.and_then(|s| s.code()), Some(4), "{out:?}");
    // -it on a real terminal (script(1) gives kubectl one): the command runs on a TTY, its
    // output and exit code come back.
    let out = cluster.in_terminal(&[
        "exec",
        "-it",
        "talker",
        "--",
        "sh",
        "-c",
        "tty; echo hi; exit 3",
    ]);
    assert!(out.stdout.contains("/dev/pts/"), "no TTY: {out:?}");
    assert!(out.stdout.contains("hi\r\n"), "{out:?}");
    assert_eq!(out.status.and_then(|s| s.code()), Some(3), "{out:?}");
    // `kubectl run -it --rm`: attach to a new pod's terminal, then the pod is deleted.
    let image = format!("--image={}", containerd::BUSYBOX);
    let out = cluster.in_terminal(&[
        "run",
        "once",
        &image,
        "--restart=Never",
        "-it",
        "--rm",
        "--command",
        "--",
        "sh",
        "-c",
        "sleep 1; tty; echo from-attach",
    ]);
    assert!(out.stdout.contains("from-attach"), "{out:?}");
    assert!(out.success(), "{out:?}");
    cluster.eventually("the --rm pod is gone", || {
        cluster
            .kubectl(&["get", "pod", "once"])
            .stderr
            .contains("NotFound")
            .then_some(())
    });
}

/// Shell-quotes one word.
fn sh_quote(word: &str) -> String {
    format!("'{}'", word.replace('\'', r"'\''"))
}

// Init containers run in order before the containers; restartPolicy Never ends in Succeeded
// or Failed.
#[test]
fn init_containers_then_completion() {
    let cluster = Cluster::start();
    cluster.wait_node_ready();
    cluster.apply(&format!(
        "apiVersion: v1
kind: Pod
metadata:
  name: job-like
spec:
  restartPolicy: Never
  volumes:
  - name: work
    emptyDir: {{}}
  initContainers:
  - name: first
    image: {image}
    command: [sh, -c, 'echo one > /work/steps']
    volumeMounts: [{{name: work, mountPath: /work}}]
  - name: second
    image: {image}
    command: [sh, -c, 'echo two >> /work/steps']
    volumeMounts: [{{name: work, mountPath: /work}}]
  containers:
  - name: main
    image: {image}
    command: [sh, -c, 'test \"$(cat /work/steps)\" = \"$(printf \"one\\ntwo\")\" && echo in-order']
    volumeMounts: [{{name: work, mountPath: /work}}]
---
apiVersion: v1
kind: Pod
metadata:
  name: fails
spec:
  restartPolicy: Never
  containers:
  - name: main
    image: {image}
    command: [sh, -c, 'echo failing > /dev/termination-log; exit 7']
",
        image = containerd::BUSYBOX
    ));
    let p = cluster.wait_pod("job-like", "Succeeded", |p| {
        p["status"]["phase"] == "Succeeded"
    });
    let init = p["status"]["initContainerStatuses"].as_array().unwrap();
    assert_eq!(init.len(), 2);
    for s in init {
        assert_eq!(s["state"]["terminated"]["reason"], "Completed", "{s}");
        assert_eq!(s["state"]["terminated"]["exitCode"], 0, "{s}");
    }
    assert_eq!(
        container_status(&p, "main")["state"]["terminated"]["exitCode"],
        0
    );
    assert_eq!(cluster.ok(&["logs", "job-like"]), "in-order\n");
    let p = cluster.wait_pod("fails", "Failed", |p| p["status"]["phase"] == "Failed");
    let t = &container_status(&p, "main")["state"]["terminated"];
    assert_eq!(t["exitCode"], 7, "{p}");
    assert_eq!(t["reason"], "Error", "{p}");
    assert_eq!(t["message"], "failing\n", "{p}");
    let table = cluster.ok(&["get", "pods"]);
    assert!(
        table
            .lines()
            .any(|l| l.starts_with("job-like") && l.contains("Completed")),
        "{table}"
    );
    assert!(
        table
            .lines()
            .any(|l| l.starts_with("fails") && l.contains("Error")),
        "{table}"
    );
}

// Resources become cgroup limits; securityContext applies; a hostPort reaches the pod.
#[test]
fn resources_security_context_and_host_port() {
    let cluster = Cluster::start();
    cluster.wait_node_ready();
    cluster.apply(&format!(
        "apiVersion: v1
kind: Pod
metadata:
  name: limited
spec:
  securityContext:
    runAsUser: 1000
    runAsGroup: 3000
  containers:
  - name: main
    image: {image}
    command: [sh, -c, 'echo host-port-ok > /tmp/index.html; exec httpd -f -p 8080 -h /tmp']
    workingDir: /tmp
    env:
    - name: MEM
      valueFrom:
        resourceFieldRef:
          resource: limits.memory
          divisor: 1Mi
    ports:
    - containerPort: 8080
      hostPort: 18{port}
    resources:
      requests: {{cpu: 100m, memory: 32Mi}}
      limits: {{cpu: 500m, memory: 64Mi}}
    securityContext:
      readOnlyRootFilesystem: false
      capabilities:
        drop: [ALL]
  - name: readonly
    image: {image}
    command: [sh, -c, 'sleep 3600']
    securityContext:
      readOnlyRootFilesystem: true
",
        image = containerd::BUSYBOX,
        port = 100 + std::process::id() % 800
    ));
    let p = cluster.wait_pod("limited", "Running", |p| p["status"]["phase"] == "Running");
    assert_eq!(p["status"]["qosClass"], "Burstable");
    let sh = |c: &str, script: &str| cluster.exec("limited", c, &["sh", "-c", script]);
    assert_eq!(sh("main", "id -u; id -g; pwd").1, "1000\n3000\n/tmp\n");
    assert_eq!(sh("main", "echo $MEM").1, "64\n");
    let limit = sh("main", "cat /sys/fs/cgroup/memory/memory.limit_in_bytes 2>/dev/null || cat /sys/fs/cgroup/memory.max").1;
    assert_eq!(limit.trim(), (64u64 << 20).to_string());
    let quota = sh("main", "cat /sys/fs/cgroup/cpu/cpu.cfs_quota_us 2>/dev/null || cut -d' ' -f1 /sys/fs/cgroup/cpu.max").1;
    assert_eq!(quota.trim(), "50000");
    let caps = sh("main", "grep CapEff /proc/self/status").1;
    assert!(caps.contains("0000000000000000"), "{caps}");
    let (code, _) = sh("readonly", "touch /should-fail");
    assert_ne!(code, 0, "the root filesystem should be read-only");
    let host_port: u16 = 18000 + 100 + (std::process::id() % 800) as u16;
    // portmap DNATs traffic to the host's addresses (127.0.0.1 would need route_localnet).
    let host_ip = {
        let s = std::net::UdpSocket::bind("0.0.0.0:0").unwrap();
        s.connect("192.0.2.1:9").ok();
        s.local_addr()
            .map(|a| a.ip().to_string())
            .unwrap_or_default()
    };
    let body = cluster.eventually("the hostPort answers", || {
        http_get(&host_ip, host_port, "/").filter(|b| b.contains("host-port-ok"))
    });
    assert!(body.contains("200 OK"), "{body}");
}
