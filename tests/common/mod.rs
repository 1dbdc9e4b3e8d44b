//! Test harness: runs `kubelab server` as a child process on a free port with a throw-away data
//! directory and drives it with the real kubectl builds (1.30 and 1.32), kube-rs, and a raw HTTPS
//! client for requests that kube-rs or kubectl would never send.
//!
//! A `TestServer` is an RAII guard: dropping it SIGKILLs the server. When the test panicked, the
//! data directory (PKI, database, server stdout/stderr) is kept and its path printed.

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use kube::config::{KubeConfigOptions, Kubeconfig};

/// How long a server gets to print its ready line.
pub const START_DEADLINE: Duration = Duration::from_secs(30);
/// Upper bound for one kubectl invocation (a hung kubectl fails the test instead of hanging it).
pub const KUBECTL_DEADLINE: Duration = Duration::from_secs(120);
/// The line `kubelab server` prints once it serves.
pub const READY_PREFIX: &str = "kubelab server ready at https://127.0.0.1:";

/// The kubectl versions every cheap kubectl test runs against.
pub const KUBECTL_VERSIONS: [&str; 2] = ["1.30", "1.32"];

/// One real kubectl build (`kubectl.1.30`, `kubectl.1.32` beside gcloud's dispatcher).
#[derive(Clone, Debug)]
pub struct Kubectl {
    pub version: &'static str,
    pub path: PathBuf,
}

impl Kubectl {
    pub fn new(version: &'static str) -> Self {
        let path = kubectl_dir().join(format!("kubectl.{version}"));
        assert!(
            path.is_file(),
            "kubectl build {} not found (set KUBELAB_KUBECTL_DIR to the directory holding kubectl.1.3X)",
            path.display()
        );
        Kubectl { version, path }
    }

    /// A suffix usable in Kubernetes names: "130" for 1.30.
    pub fn tag(&self) -> String {
        self.version.replace('.', "")
    }
}

/// Every kubectl version of [`KUBECTL_VERSIONS`].
pub fn kubectls() -> Vec<Kubectl> {
    KUBECTL_VERSIONS.iter().map(|v| Kubectl::new(v)).collect()
}

/// Runs `f` once per kubectl version; the panic message of a failure names the version.
pub fn for_each_kubectl(mut f: impl FnMut(&Kubectl)) {
    for k in kubectls() {
        eprintln!("--- kubectl {} ---", k.version);
        f(&k);
    }
}

/// The directory of the versioned kubectl builds: `KUBELAB_KUBECTL_DIR`, else the directory the
/// `kubectl` on PATH resolves to (gcloud's dispatcher lives beside the builds).
pub fn kubectl_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("KUBELAB_KUBECTL_DIR") {
        return PathBuf::from(dir);
    }
    if let Some(paths) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&paths) {
            let candidate = dir.join("kubectl");
            if candidate.is_file() {
                if let Ok(real) = std::fs::canonicalize(&candidate) {
                    if let Some(parent) = real.parent() {
                        return parent.to_path_buf();
                    }
                }
            }
        }
    }
    PathBuf::from("/usr/lib/google-cloud-sdk/bin")
}

/// The `kubelab` binary: `KUBELAB_BIN` if set, else the one cargo built for this test.
pub fn kubelab_bin() -> PathBuf {
    std::env::var_os("KUBELAB_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_kubelab")))
}

/// A fixture file under tests/fixtures.
pub fn fixture(name: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
        .to_string_lossy()
        .into_owned()
}

fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    listener.local_addr().expect("local addr").port()
}

/// Output of a finished (or timed-out) child process.
#[derive(Debug)]
pub struct Output {
    pub status: Option<ExitStatus>,
    pub stdout: String,
    pub stderr: String,
}

impl Output {
    pub fn success(&self) -> bool {
        self.status.map(|s| s.success()).unwrap_or(false)
    }
}

/// Runs `cmd` to completion with a deadline; on timeout the child is killed and `status` is None.
pub fn run_with_deadline(mut cmd: Command, stdin: Option<&str>, deadline: Duration) -> Output {
    cmd.stdin(if stdin.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    })
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    if let Some(input) = stdin {
        let mut pipe = child.stdin.take().expect("stdin pipe");
        let input = input.to_owned();
        std::thread::spawn(move || {
            let _ = pipe.write_all(input.as_bytes());
        });
    }
    let mut out_pipe = child.stdout.take().expect("stdout pipe");
    let mut err_pipe = child.stderr.take().expect("stderr pipe");
    let out_thread = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = out_pipe.read_to_string(&mut s);
        s
    });
    let err_thread = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = err_pipe.read_to_string(&mut s);
        s
    });
    let until = Instant::now() + deadline;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break Some(status),
            Ok(None) if Instant::now() >= until => {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(20)),
            Err(e) => panic!("waiting for {cmd:?}: {e}"),
        }
    };
    let stdout = out_thread.join().unwrap_or_default();
    let mut stderr = err_thread.join().unwrap_or_default();
    if status.is_none() {
        stderr.push_str(&format!("\n[harness: killed after {deadline:?}]"));
    }
    Output {
        status,
        stdout,
        stderr,
    }
}

/// A running `kubelab server` child process and its data directory.
pub struct TestServer {
    dir: Option<tempfile::TempDir>,
    port: u16,
    bin: PathBuf,
    extra_args: Vec<String>,
    child: Mutex<Option<Child>>,
    starts: AtomicUsize,
    runtime: Option<tokio::runtime::Runtime>,
}

impl TestServer {
    /// Starts a server on a free port with a fresh data directory and waits until it is ready.
    pub fn start() -> TestServer {
        Self::start_with(kubelab_bin())
    }

    /// Starts a server with extra `kubelab server` flags (e.g. `--fake-nodes 3`).
    pub fn start_args(args: &[&str]) -> TestServer {
        Self::start_full(kubelab_bin(), args)
    }

    pub fn start_with(bin: PathBuf) -> TestServer {
        Self::start_full(bin, &[])
    }

    fn start_full(bin: PathBuf, args: &[&str]) -> TestServer {
        let dir = tempfile::Builder::new()
            .prefix("kubelab-test-")
            .tempdir()
            .expect("create temp dir");
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(4)
            .enable_all()
            .build()
            .expect("tokio runtime");
        let server = TestServer {
            dir: Some(dir),
            port: free_port(),
            bin,
            extra_args: args.iter().map(|a| a.to_string()).collect(),
            child: Mutex::new(None),
            starts: AtomicUsize::new(0),
            runtime: Some(runtime),
        };
        server.spawn_and_wait();
        server
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The tempdir holding everything: `data/` (the server's --data-dir), logs, kubectl homes.
    pub fn root(&self) -> &Path {
        self.dir.as_ref().expect("temp dir").path()
    }

    pub fn data_dir(&self) -> PathBuf {
        self.root().join("data")
    }

    /// A kubeconfig whose user is only `token` (no client certificate).
    pub fn token_kubeconfig(&self, name: &str, token: &str) -> PathBuf {
        let path = self.root().join(format!("{name}.kubeconfig"));
        let ca = self.data_dir().join("tls").join("ca.crt");
        let text = format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n    server: {}\n    \
             certificate-authority: {}\nusers:\n- name: u\n  user:\n    token: {token}\n\
             contexts:\n- name: x\n  context: {{cluster: c, user: u}}\ncurrent-context: x\n",
            self.url(),
            ca.display()
        );
        std::fs::write(&path, text).expect("write token kubeconfig");
        path
    }

    pub fn kubeconfig_path(&self) -> PathBuf {
        self.data_dir().join("admin.kubeconfig")
    }

    pub fn url(&self) -> String {
        format!("https://127.0.0.1:{}", self.port)
    }

    /// The server's process id (None while it is down).
    pub fn pid(&self) -> Option<u32> {
        self.child.lock().unwrap().as_ref().map(|c| c.id())
    }

    fn log_path(&self, stream: &str, start: usize) -> PathBuf {
        self.root().join(format!("server-{start}.{stream}.log"))
    }

    fn spawn_and_wait(&self) {
        let start = self.starts.fetch_add(1, Ordering::SeqCst);
        let stdout_path = self.log_path("stdout", start);
        let stderr_path = self.log_path("stderr", start);
        let stdout = std::fs::File::create(&stdout_path).expect("create stdout log");
        let stderr = std::fs::File::create(&stderr_path).expect("create stderr log");
        let mut child = Command::new(&self.bin)
            .env("NO_COLOR", "1")
            .arg("server")
            .arg("--data-dir")
            .arg(self.data_dir())
            .arg("--port")
            .arg(self.port.to_string())
            .arg("--bind")
            .arg("127.0.0.1")
            .args(&self.extra_args)
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(stderr)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", self.bin.display()));
        let until = Instant::now() + START_DEADLINE;
        let expected = format!(
            "kubelab server ready at https://127.0.0.1:{}; kubeconfig: {}",
            self.port,
            self.kubeconfig_path().display()
        );
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                panic!(
                    "kubelab server exited with {status} before it was ready\nstderr:\n{}",
                    tail(&stderr_path, 60)
                );
            }
            let out = std::fs::read_to_string(&stdout_path).unwrap_or_default();
            if let Some(line) = out.lines().find(|l| l.starts_with("kubelab server ready")) {
                assert_eq!(line, expected, "unexpected ready line");
                if self.kubeconfig_path().is_file() {
                    break;
                }
            }
            if Instant::now() >= until {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "kubelab server not ready after {START_DEADLINE:?}\nstdout:\n{}\nstderr:\n{}",
                    tail(&stdout_path, 20),
                    tail(&stderr_path, 60)
                );
            }
            std::thread::sleep(Duration::from_millis(25));
        }
        *self.child.lock().unwrap() = Some(child);
    }

    /// SIGKILLs the server (no graceful shutdown) and reaps it.
    pub fn kill9(&self) {
        if let Some(mut child) = self.child.lock().unwrap().take() {
            child.kill().expect("SIGKILL the server");
            let _ = child.wait();
        }
    }

    /// Starts the server again on the same data directory and port (after `kill9`).
    pub fn restart(&self) {
        self.kill9();
        self.spawn_and_wait();
    }

    /// The last lines of the server's stderr (current process), for failure messages.
    pub fn stderr_tail(&self, lines: usize) -> String {
        let start = self.starts.load(Ordering::SeqCst).saturating_sub(1);
        tail(&self.log_path("stderr", start), lines)
    }

    /// Runs a future on this server's runtime (kube-rs clients must be used on it).
    pub fn block_on<F: std::future::Future>(&self, f: F) -> F::Output {
        self.runtime.as_ref().expect("runtime").block_on(f)
    }

    /// A kube-rs client authenticated with the admin kubeconfig.
    pub async fn client(&self) -> kube::Client {
        let kubeconfig =
            Kubeconfig::read_from(self.kubeconfig_path()).expect("read admin.kubeconfig");
        let config =
            kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
                .await
                .expect("kube config from admin.kubeconfig");
        kube::Client::try_from(config).expect("kube client")
    }

    /// Creates a namespace with kube-rs (JSON), for tests whose subject is not namespace creation.
    pub fn create_namespace(&self, name: &str) {
        use k8s_openapi::api::core::v1::Namespace;
        self.block_on(async {
            let api: kube::Api<Namespace> = kube::Api::all(self.client().await);
            let ns: Namespace = serde_json::from_value(serde_json::json!({
                "apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}
            }))
            .unwrap();
            api.create(&Default::default(), &ns)
                .await
                .unwrap_or_else(|e| panic!("create namespace {name}: {e}"));
        });
    }

    fn kubectl_command(&self, k: &Kubectl, args: &[&str]) -> (Command, tempfile::TempDir) {
        let home = tempfile::Builder::new()
            .prefix("kubectl-home-")
            .tempdir_in(self.root())
            .expect("kubectl home");
        let mut cmd = Command::new(&k.path);
        cmd.env("HOME", home.path())
            .env_remove("KUBECONFIG")
            .arg("--kubeconfig")
            .arg(self.kubeconfig_path())
            .arg("--cache-dir")
            .arg(home.path().join("cache"))
            .args(args);
        (cmd, home)
    }

    /// Runs kubectl (fresh HOME and --cache-dir) and returns whatever it did.
    pub fn kubectl(&self, k: &Kubectl, args: &[&str]) -> Output {
        let (cmd, _home) = self.kubectl_command(k, args);
        run_with_deadline(cmd, None, KUBECTL_DEADLINE)
    }

    /// Runs kubectl with `stdin` piped in (for `-f -`).
    pub fn kubectl_stdin(&self, k: &Kubectl, args: &[&str], stdin: &str) -> Output {
        let (cmd, _home) = self.kubectl_command(k, args);
        run_with_deadline(cmd, Some(stdin), KUBECTL_DEADLINE)
    }

    /// Runs kubectl, panics (with its stderr and the server's log tail) unless it succeeded.
    pub fn ok(&self, k: &Kubectl, args: &[&str]) -> String {
        let out = self.kubectl(k, args);
        self.expect_ok(k, args, out)
    }

    pub fn ok_stdin(&self, k: &Kubectl, args: &[&str], stdin: &str) -> String {
        let out = self.kubectl_stdin(k, args, stdin);
        self.expect_ok(k, args, out)
    }

    fn expect_ok(&self, k: &Kubectl, args: &[&str], out: Output) -> String {
        if !out.success() {
            panic!(
                "kubectl {} {} failed ({:?})\nstdout:\n{}\nstderr:\n{}\nserver stderr (tail):\n{}",
                k.version,
                args.join(" "),
                out.status,
                out.stdout,
                out.stderr,
                self.stderr_tail(30)
            );
        }
        out.stdout
    }

    /// Runs kubectl expecting failure; returns its stderr.
    pub fn fails(&self, k: &Kubectl, args: &[&str]) -> String {
        let out = self.kubectl(k, args);
        assert!(
            out.status.is_some() && !out.success(),
            "kubectl {} {} should have failed\nstdout:\n{}\nstderr:\n{}",
            k.version,
            args.join(" "),
            out.stdout,
            out.stderr
        );
        out.stderr
    }

    /// Starts a long-running kubectl (e.g. `get -w`); its stdout lines arrive on the receiver.
    pub fn spawn_kubectl(&self, k: &Kubectl, args: &[&str]) -> LineChild {
        let (mut cmd, home) = self.kubectl_command(k, args);
        let stderr_path = home.path().join("stderr.log");
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&stderr_path).expect("stderr file"))
            .spawn()
            .expect("spawn kubectl");
        let stdout = child.stdout.take().expect("stdout pipe");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                match line {
                    Ok(line) => {
                        if tx.send(line).is_err() {
                            break;
                        }
                    }
                    Err(_) => break,
                }
            }
        });
        LineChild {
            child,
            lines: rx,
            seen: Vec::new(),
            stderr_path,
            _home: home,
        }
    }

    /// Admin credentials for raw HTTPS requests: (CA PEM, admin client certificate).
    pub fn admin_credentials(&self) -> (String, kubelab_pki::CertPair) {
        let tls = self.data_dir().join("tls");
        let read = |f: &str| {
            std::fs::read_to_string(tls.join(f))
                .unwrap_or_else(|e| panic!("read {}: {e}", tls.join(f).display()))
        };
        (
            read("ca.crt"),
            kubelab_pki::CertPair {
                cert_pem: read("client-admin.crt"),
                key_pem: read("client-admin.key"),
            },
        )
    }

    /// A raw HTTPS client trusting the cluster CA, presenting `client` (if any).
    pub fn raw(&self, client: Option<&kubelab_pki::CertPair>) -> RawHttps {
        let (ca, _) = self.admin_credentials();
        let mut config = kubelab_pki::client_tls_config(&ca, client).expect("client tls config");
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        RawHttps {
            port: self.port,
            tls: Arc::new(config),
        }
    }

    /// A raw HTTPS client with the admin client certificate.
    pub fn raw_admin(&self) -> RawHttps {
        let (_, admin) = self.admin_credentials();
        self.raw(Some(&admin))
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.kill9();
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
        if std::thread::panicking() {
            if let Some(dir) = self.dir.take() {
                let path = dir.keep();
                eprintln!(
                    "kubelab test failed; server data and logs kept in {}\nserver stderr (tail):\n{}",
                    path.display(),
                    tail(
                        &path.join(format!(
                            "server-{}.stderr.log",
                            self.starts.load(Ordering::SeqCst).saturating_sub(1)
                        )),
                        40
                    )
                );
            }
        }
    }
}

fn tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// A long-running child whose stdout lines are read on a thread.
pub struct LineChild {
    pub child: Child,
    lines: mpsc::Receiver<String>,
    seen: Vec<String>,
    stderr_path: PathBuf,
    _home: tempfile::TempDir,
}

impl LineChild {
    /// Waits (up to `deadline`) for a line satisfying `pred`; returns it. Lines before it are
    /// consumed (and kept for diagnostics).
    pub fn wait_for(
        &mut self,
        what: &str,
        deadline: Duration,
        pred: impl Fn(&str) -> bool,
    ) -> String {
        let until = Instant::now() + deadline;
        loop {
            let left = until.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if pred(&line) {
                        return line;
                    }
                }
                Err(e) => panic!(
                    "no line for {what} within {deadline:?} ({e}); lines so far:\n{}\nkubectl stderr:\n{}",
                    self.seen.join("\n"),
                    std::fs::read_to_string(&self.stderr_path).unwrap_or_default()
                ),
            }
        }
    }
}

impl Drop for LineChild {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An HTTP response as raw bytes.
#[derive(Debug)]
pub struct RawResponse {
    pub status: u16,
    pub content_type: String,
    pub body: Bytes,
}

impl RawResponse {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body as a `kind: Status`, asserting its shape and that `code` equals the HTTP status.
    pub fn status_body(&self) -> serde_json::Value {
        self.try_status_body().unwrap_or_else(|e| panic!("{e}"))
    }

    /// The body as a `kind: Status` whose `code` equals the HTTP status, or what is wrong with it.
    pub fn try_status_body(&self) -> Result<serde_json::Value, String> {
        let v: serde_json::Value = serde_json::from_slice(&self.body).map_err(|e| {
            format!(
                "HTTP {} body is not JSON ({e}): {:?}",
                self.status,
                self.text()
            )
        })?;
        let problems: Vec<String> = [
            (v["kind"] == "Status", "kind is not Status"),
            (v["apiVersion"] == "v1", "apiVersion is not v1"),
            (v["status"] == "Failure", "status is not Failure"),
            (
                v["code"].as_u64() == Some(u64::from(self.status)),
                "code differs from the HTTP status",
            ),
        ]
        .iter()
        .filter(|(ok, _)| !ok)
        .map(|(_, msg)| msg.to_string())
        .collect();
        if problems.is_empty() {
            Ok(v)
        } else {
            Err(format!(
                "HTTP {} error body: {}: {v}",
                self.status,
                problems.join(", ")
            ))
        }
    }
}

/// A minimal HTTPS/1.1 client over tokio-rustls + hyper: one connection per request.
#[derive(Clone)]
pub struct RawHttps {
    port: u16,
    tls: Arc<rustls::ClientConfig>,
}

impl RawHttps {
    pub async fn get(&self, path: &str) -> Result<RawResponse, String> {
        self.request("GET", path, None, Vec::new()).await
    }

    pub async fn request(
        &self,
        method: &str,
        path: &str,
        content_type: Option<&str>,
        body: Vec<u8>,
    ) -> Result<RawResponse, String> {
        let tcp = tokio::net::TcpStream::connect(("127.0.0.1", self.port))
            .await
            .map_err(|e| format!("connect: {e}"))?;
        let connector = tokio_rustls::TlsConnector::from(self.tls.clone());
        let name = rustls::pki_types::ServerName::try_from("127.0.0.1").expect("server name");
        let stream = connector
            .connect(name, tcp)
            .await
            .map_err(|e| format!("tls handshake: {e}"))?;
        let (mut sender, conn) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
                .await
                .map_err(|e| format!("http handshake: {e}"))?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        let mut req = http::Request::builder()
            .method(method)
            .uri(path)
            .header("host", format!("127.0.0.1:{}", self.port))
            .header("accept", "application/json")
            .header("user-agent", "kubelab-tests");
        if let Some(ct) = content_type {
            req = req.header("content-type", ct);
        }
        let req = req
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| format!("build request: {e}"))?;
        let resp = tokio::time::timeout(Duration::from_secs(30), sender.send_request(req))
            .await
            .map_err(|_| "no response within 30s".to_string())?
            .map_err(|e| format!("send request: {e}"))?;
        let status = resp.status().as_u16();
        let content_type = resp
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        let body = tokio::time::timeout(Duration::from_secs(30), resp.into_body().collect())
            .await
            .map_err(|_| "response body not complete within 30s".to_string())?
            .map_err(|e| format!("read body: {e}"))?
            .to_bytes();
        Ok(RawResponse {
            status,
            content_type,
            body,
        })
    }
}

/// Polls `f` until it returns Some or `deadline` passes.
pub fn eventually<T>(what: &str, deadline: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let until = Instant::now() + deadline;
    loop {
        if let Some(v) = f() {
            return v;
        }
        if Instant::now() >= until {
            panic!("{what}: not true within {deadline:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Whitespace-separated columns of a kubectl table line.
pub fn columns(line: &str) -> Vec<&str> {
    line.split_whitespace().collect()
}

/// The first column of every non-header line.
pub fn first_column(table: &str) -> Vec<String> {
    table
        .lines()
        .skip(1)
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_owned)
        .collect()
}
