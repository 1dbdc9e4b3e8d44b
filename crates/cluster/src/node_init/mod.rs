//! `kubelab node-init`: the entrypoint of node containers, and their PID 1.
//!
//! It prepares the container (cgroups read-write, v1 or v2; `/proc/sys` writable; `/` shared;
//! sysctls), writes containerd's configuration (sandbox image `kubelab.local/pause:1`,
//! `restrict_oom_score_adj` when CAP_SYS_RESOURCE is missing, Debian's CNI plugin directory,
//! overlayfs unless the node's /var cannot do it), then supervises, in order: containerd, and
//! on server nodes `kubelab server` then `kubelab agent` (joining 127.0.0.1), on agent nodes
//! `kubelab agent` (joining `--server`). A component that exits is restarted with backoff (an
//! agent whose server is not up yet after a restart of every node tries again). SIGTERM stops
//! them in reverse order. Each component's output goes to `/var/log/kubelab/<name>.log` and,
//! prefixed, to the container's output.
//!
//! Written as synchronous code around `sigtimedwait`: as PID 1 it must reap every orphan
//! (containerd shims are reparented to it), and it must run before any thread exists so that
//! no thread can take a signal the main loop waits for.

pub mod containerd;
pub mod system;

use std::io::{BufRead, BufReader, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, SigSet, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;

use crate::provider::Role;
use crate::{Error, Result};

/// The server's data directory in a node (PKI, database, node token).
pub const SERVER_DATA_DIR: &str = "/var/lib/kubelab/server";
/// The server's encryption configuration in a server node: always given, so that the
/// `secret-encryption` addon (the server's `/v1-kubelab/encryption/enable`) can turn encryption
/// on and off without restarting the server. Written with identity only when absent.
pub const ENCRYPTION_CONFIG: &str = "/var/lib/kubelab/server/encryption-config.json";

fn has_encryption_flag(server_args: &[String]) -> bool {
    server_args
        .iter()
        .any(|a| a.starts_with("--encryption-provider-config"))
}

/// Secrets written in plain until the addon is enabled; an existing file (the addon's key) is
/// kept.
fn write_identity_encryption_config() -> Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let path = Path::new(ENCRYPTION_CONFIG);
    if path.exists() {
        return Ok(());
    }
    let dir = path.parent().expect("an absolute path");
    std::fs::create_dir_all(dir).map_err(|e| Error::io("create", dir, e))?;
    let text = serde_json::json!({
        "apiVersion": "apiserver.config.k8s.io/v1",
        "kind": "EncryptionConfiguration",
        "resources": [{"resources": ["secrets"], "providers": [{"identity": {}}]}],
    });
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| Error::io("create", path, e))?;
    file.write_all(format!("{text:#}\n").as_bytes())
        .map_err(|e| Error::io("write", path, e))
}

/// The agent's data directory in a node.
pub const AGENT_DATA_DIR: &str = "/var/lib/kubelab/agent";
/// Component logs in a node.
pub const LOG_DIR: &str = "/var/log/kubelab";
/// The API server's port inside a node.
pub const API_PORT: u16 = 6443;
/// The cluster DNS Service's address (the `coredns` addon's `kube-dns`), given to every agent.
pub const CLUSTER_DNS: &str = "10.96.0.10";
/// The cluster domain of Service and pod names.
pub const CLUSTER_DOMAIN: &str = "cluster.local";

/// What a node runs.
#[derive(Clone, Debug)]
pub struct NodeInitConfig {
    pub role: Role,
    pub node_name: String,
    pub node_ip: Ipv4Addr,
    /// The registration address agents join (agent nodes; server nodes join themselves).
    pub server_url: Option<String>,
    /// The join token (agent nodes; server nodes read their own `node-token`).
    pub token: Option<String>,
    /// Extra arguments of `kubelab server`.
    pub server_args: Vec<String>,
    /// Extra arguments of `kubelab agent`.
    pub agent_args: Vec<String>,
    /// Whether a server node also runs an agent (it is then a node of the cluster too).
    pub server_runs_agent: bool,
    /// The kubelab binary to run components with.
    pub kubelab: PathBuf,
}

/// Runs the node: never returns unless startup fails or the node is told to stop.
pub fn run(config: NodeInitConfig) -> Result<()> {
    let started = Instant::now();
    // Signals are taken synchronously by the main loop; children get an empty mask (std resets
    // it at exec).
    let mut signals = SigSet::empty();
    for s in [
        Signal::SIGCHLD,
        Signal::SIGTERM,
        Signal::SIGINT,
        Signal::SIGHUP,
    ] {
        signals.add(s);
    }
    signals
        .thread_block()
        .map_err(|e| Error::node_init("block signals", e))?;

    let cgroup_version = system::prepare_cgroups()?;
    system::writable_proc_sys()?;
    system::shared_root()?;
    let unset = system::sysctls();
    std::fs::create_dir_all(LOG_DIR).map_err(|e| Error::io("create", LOG_DIR, e))?;
    std::fs::create_dir_all("/var/lib/containerd")
        .map_err(|e| Error::io("create", "/var/lib/containerd", e))?;
    let snapshotter = if system::overlay_works(Path::new("/var/lib/containerd")) {
        "overlayfs"
    } else {
        "native"
    };
    if config.role == Role::Server && !has_encryption_flag(&config.server_args) {
        write_identity_encryption_config()?;
    }
    let restrict_oom = !system::has_sys_resource();
    containerd::write_config(restrict_oom, snapshotter)?;
    say(&format!(
        "node {} ({}, {}): cgroup v{cgroup_version}, snapshotter {snapshotter}, restrict_oom_score_adj {restrict_oom}{}",
        config.node_name,
        config.role,
        config.node_ip,
        if unset.is_empty() {
            String::new()
        } else {
            format!(", sysctls not settable here: {}", unset.join(" "))
        }
    ));

    let mut supervisor = Supervisor::new(components(&config, snapshotter), signals);
    let outcome = supervisor.run(&config, snapshotter, started);
    supervisor.stop_all();
    outcome
}

fn say(line: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "[node-init] {line}");
    let _ = out.flush();
}

/// A supervised process.
struct Component {
    name: &'static str,
    program: PathBuf,
    args: Vec<String>,
    env: Vec<(String, String)>,
    pid: Option<Pid>,
    /// When to (re)start it; None while running or not yet due.
    start_at: Option<Instant>,
    failures: u32,
    last_start: Option<Instant>,
    /// Started only once this is true.
    ready_to_start: fn(&NodeInitConfig) -> bool,
    /// Whether its output also goes to the container's output (containerd's only goes to its
    /// log file: it is verbose and rarely what a reader of `docker logs` looks for).
    echo: bool,
    /// A task run once, at low priority, after every other component started (restarted only
    /// when it fails).
    one_shot: bool,
    /// A one-shot task that succeeded.
    done: bool,
}

fn components(config: &NodeInitConfig, snapshotter: &str) -> Vec<Component> {
    let kubelab = config.kubelab.clone();
    let mut list = vec![Component {
        name: "containerd",
        program: PathBuf::from("containerd"),
        args: vec!["--config".into(), containerd::CONFIG_PATH.into()],
        env: vec![],
        pid: None,
        start_at: Some(Instant::now()),
        failures: 0,
        last_start: None,
        ready_to_start: |_| true,
        echo: false,
        one_shot: false,
        done: false,
    }];
    let agent_env = |token: Option<String>| {
        token
            .map(|t| vec![("KUBELAB_TOKEN".to_owned(), t)])
            .unwrap_or_default()
    };
    let agent_args = |server: &str| {
        let mut args = vec![
            "agent".to_owned(),
            "--server".into(),
            server.to_owned(),
            "--node-name".into(),
            config.node_name.clone(),
            "--node-ip".into(),
            config.node_ip.to_string(),
            "--data-dir".into(),
            AGENT_DATA_DIR.into(),
            "--cluster-dns".into(),
            CLUSTER_DNS.into(),
            "--cluster-domain".into(),
            CLUSTER_DOMAIN.into(),
        ];
        args.extend(config.agent_args.iter().cloned());
        args
    };
    match config.role {
        Role::Server => {
            let mut args = vec![
                "server".to_owned(),
                "--data-dir".into(),
                SERVER_DATA_DIR.into(),
                "--bind".into(),
                "0.0.0.0".into(),
                "--port".into(),
                API_PORT.to_string(),
                "--advertise-address".into(),
                config.node_ip.to_string(),
                "--tls-san".into(),
                config.node_ip.to_string(),
                "--tls-san".into(),
                config.node_name.clone(),
            ];
            if !has_encryption_flag(&config.server_args) {
                args.push("--encryption-provider-config".into());
                args.push(ENCRYPTION_CONFIG.into());
            }
            args.extend(config.server_args.iter().cloned());
            list.push(Component {
                name: "server",
                program: kubelab.clone(),
                args,
                env: vec![],
                pid: None,
                start_at: None,
                failures: 0,
                last_start: None,
                ready_to_start: |_| containerd_ready(),
                echo: true,
                one_shot: false,
                done: false,
            });
            if config.server_runs_agent {
                list.push(Component {
                    name: "agent",
                    program: kubelab,
                    args: agent_args(&format!("https://{}:{API_PORT}", config.node_ip)),
                    // The token is read when the agent is (re)started: see `refresh_env`.
                    env: vec![],
                    pid: None,
                    start_at: None,
                    failures: 0,
                    last_start: None,
                    ready_to_start: |c| {
                        containerd_ready()
                            && port_open(SocketAddr::from((c.node_ip, API_PORT)))
                            && Path::new(SERVER_DATA_DIR).join("node-token").is_file()
                    },
                    echo: true,
                    one_shot: false,
                    done: false,
                });
            }
        }
        Role::Agent => {
            let server = config.server_url.clone().unwrap_or_default();
            list.push(Component {
                name: "agent",
                program: kubelab,
                args: agent_args(&server),
                env: agent_env(config.token.clone()),
                pid: None,
                start_at: None,
                failures: 0,
                last_start: None,
                ready_to_start: |_| containerd_ready(),
                echo: true,
                one_shot: false,
                done: false,
            });
        }
    }
    list.push(Component {
        name: "system-image",
        program: config.kubelab.clone(),
        args: vec![
            "node-image".into(),
            "import-system".into(),
            "--snapshotter".into(),
            snapshotter.to_owned(),
        ],
        env: vec![],
        pid: None,
        start_at: None,
        failures: 0,
        last_start: None,
        ready_to_start: |_| containerd_ready(),
        echo: true,
        one_shot: true,
        done: false,
    });
    list
}

fn containerd_ready() -> bool {
    std::os::unix::net::UnixStream::connect(containerd::SOCKET).is_ok()
}

fn port_open(addr: SocketAddr) -> bool {
    TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok()
}

struct Supervisor {
    components: Vec<Component>,
    signals: SigSet,
    pause_ready: bool,
    announced: Vec<&'static str>,
}

impl Supervisor {
    fn new(components: Vec<Component>, signals: SigSet) -> Supervisor {
        Supervisor {
            components,
            signals,
            pause_ready: false,
            announced: Vec::new(),
        }
    }

    fn run(&mut self, config: &NodeInitConfig, snapshotter: &str, started: Instant) -> Result<()> {
        loop {
            match wait_signal(&self.signals, Duration::from_millis(50)) {
                Some(Signal::SIGCHLD) => self.reap(),
                Some(Signal::SIGTERM) | Some(Signal::SIGINT) => {
                    say("stopping");
                    return Ok(());
                }
                _ => {}
            }
            // Orphans (shim children) are reaped on every tick too: SIGCHLD coalesces.
            self.reap();
            if !self.pause_ready && containerd_ready() {
                match containerd::ensure_pause_image(snapshotter) {
                    Ok(imported) => {
                        self.pause_ready = true;
                        if imported {
                            say(&format!("imported {}", containerd::PAUSE_IMAGE));
                        }
                    }
                    Err(e) => say(&format!("{e}; retrying")),
                }
            }
            let now = Instant::now();
            for i in 0..self.components.len() {
                let others_started = self
                    .components
                    .iter()
                    .all(|o| o.one_shot || o.last_start.is_some());
                let c = &mut self.components[i];
                if c.pid.is_some() || c.done || (c.one_shot && !others_started) {
                    continue;
                }
                let due = match c.start_at {
                    Some(at) => now >= at,
                    None => c.last_start.is_none(),
                };
                if !due
                    || !(c.ready_to_start)(config)
                    || (c.name != "containerd" && !self.pause_ready)
                {
                    continue;
                }
                if c.name == "agent" && config.role == Role::Server {
                    // The server node's agent joins with the server's own token.
                    match std::fs::read_to_string(Path::new(SERVER_DATA_DIR).join("node-token")) {
                        Ok(token) => {
                            c.env = vec![("KUBELAB_TOKEN".into(), token.trim().to_owned())]
                        }
                        Err(_) => continue,
                    }
                }
                match spawn(c) {
                    Ok(pid) => {
                        c.pid = Some(pid);
                        c.start_at = None;
                        c.last_start = Some(Instant::now());
                        if !self.announced.contains(&c.name) {
                            self.announced.push(c.name);
                            say(&format!(
                                "started {} (pid {pid}) at {:.2}s",
                                c.name,
                                started.elapsed().as_secs_f64()
                            ));
                        }
                    }
                    Err(e) => {
                        say(&format!("cannot start {}: {e}", c.name));
                        schedule_restart(c);
                    }
                }
            }
        }
    }

    /// Reaps every exited child; a component that exited is scheduled for a restart.
    fn reap(&mut self) {
        loop {
            match waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::StillAlive) | Err(_) => return,
                Ok(status) => {
                    let Some(pid) = status.pid() else { return };
                    if let Some(c) = self.components.iter_mut().find(|c| c.pid == Some(pid)) {
                        c.pid = None;
                        if c.one_shot && matches!(status, WaitStatus::Exited(_, 0)) {
                            c.done = true;
                            continue;
                        }
                        say(&format!("{} exited ({status:?}); restarting it", c.name));
                        schedule_restart(c);
                    }
                }
            }
        }
    }

    /// SIGTERM to every component in reverse start order, each given up to 10 s, then SIGKILL.
    fn stop_all(&mut self) {
        for i in (0..self.components.len()).rev() {
            let Some(pid) = self.components[i].pid else {
                continue;
            };
            let name = self.components[i].name;
            let _ = kill(pid, Signal::SIGTERM);
            let started = Instant::now();
            let deadline = started + Duration::from_secs(10);
            loop {
                match waitpid(pid, Some(WaitPidFlag::WNOHANG)) {
                    Ok(WaitStatus::StillAlive) if Instant::now() < deadline => {
                        let _ = wait_signal(&self.signals, Duration::from_millis(50));
                    }
                    Ok(WaitStatus::StillAlive) => {
                        let _ = kill(pid, Signal::SIGKILL);
                        let _ = waitpid(pid, None);
                        say(&format!("killed {name}: still running 10s after SIGTERM"));
                        break;
                    }
                    _ => {
                        say(&format!(
                            "stopped {name} in {:.2}s",
                            started.elapsed().as_secs_f64()
                        ));
                        break;
                    }
                }
            }
            self.components[i].pid = None;
        }
        self.reap();
    }
}

/// Backoff: 0.5 s doubling to 10 s; reset after 60 s of running.
fn schedule_restart(c: &mut Component) {
    if c.last_start
        .is_some_and(|t| t.elapsed() > Duration::from_secs(60))
    {
        c.failures = 0;
    }
    let delay = Duration::from_millis(500) * 2u32.saturating_pow(c.failures.min(5));
    c.failures += 1;
    c.start_at = Some(Instant::now() + delay.min(Duration::from_secs(10)));
}

fn spawn(c: &Component) -> std::io::Result<Pid> {
    let mut command = Command::new(&c.program);
    command
        .args(&c.args)
        .envs(c.env.iter().cloned())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    // Children must not inherit the supervisor's blocked signals (they would never see
    // SIGTERM) nor an ignored SIGPIPE.
    // SAFETY: only async-signal-safe calls (sigprocmask, sigaction) between fork and exec.
    unsafe {
        use std::os::unix::process::CommandExt;
        command.pre_exec(|| {
            SigSet::all()
                .thread_unblock()
                .map_err(std::io::Error::from)?;
            nix::sys::signal::signal(Signal::SIGPIPE, nix::sys::signal::SigHandler::SigDfl)
                .map_err(std::io::Error::from)?;
            Ok(())
        });
    }
    let mut child = command.spawn()?;
    let log_path = Path::new(LOG_DIR).join(format!("{}.log", c.name));
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)?;
    let log = std::sync::Arc::new(std::sync::Mutex::new(log));
    let out = child.stdout.take().expect("piped stdout");
    let err = child.stderr.take().expect("piped stderr");
    for stream in [
        Box::new(out) as Box<dyn std::io::Read + Send>,
        Box::new(err),
    ] {
        let log = log.clone();
        let name = c.name;
        let echo = c.echo;
        std::thread::spawn(move || copy_lines(stream, &log, name, echo));
    }
    let pid = Pid::from_raw(child.id() as i32);
    // The child is reaped by the supervisor's waitpid(-1); std's handle is not waited on.
    std::mem::forget(child);
    Ok(pid)
}

/// Copies a child's output line by line to its log file and, prefixed, to our stdout.
fn copy_lines(
    stream: Box<dyn std::io::Read + Send>,
    log: &std::sync::Mutex<std::fs::File>,
    name: &str,
    echo: bool,
) {
    let reader = BufReader::new(stream);
    for line in reader.split(b'\n') {
        let Ok(line) = line else { return };
        if let Ok(mut file) = log.lock() {
            let _ = file.write_all(&line);
            let _ = file.write_all(b"\n");
        }
        if !echo {
            continue;
        }
        let mut out = std::io::stdout().lock();
        let _ = write!(out, "[{name}] ");
        let _ = out.write_all(&line);
        let _ = out.write_all(b"\n");
    }
}

/// Waits up to `timeout` for one of the blocked signals.
fn wait_signal(set: &SigSet, timeout: Duration) -> Option<Signal> {
    let ts = nix::libc::timespec {
        tv_sec: timeout.as_secs() as nix::libc::time_t,
        tv_nsec: timeout.subsec_nanos() as nix::libc::c_long,
    };
    // SAFETY: `set` is a valid initialised sigset_t, `ts` a valid timespec, and a null siginfo
    // pointer is allowed.
    let signo = unsafe { nix::libc::sigtimedwait(set.as_ref(), std::ptr::null_mut(), &ts) };
    if signo <= 0 {
        return None;
    }
    Signal::try_from(signo).ok()
}
