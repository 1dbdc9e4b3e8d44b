//! A private containerd for the node agent's tests: its own configuration, socket, root and
//! state directories and CNI configuration directory under a temporary directory, the CRI
//! plugin with `kubelab.local/pause:1` as its sandbox image, and locally built images (there
//! is no registry here): a busybox image made from the host's busybox-static, FROM scratch, and
//! the pause image built from the same busybox.
//!
//! Dropping a [`Containerd`] stops and removes every pod sandbox it runs (so CNI releases the
//! addresses and veths), kills containerd, deletes the pod bridge and removes the directory.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

/// The busybox test image every kubelet test can use.
pub const BUSYBOX: &str = "kubelab.local/busybox:1";
/// The sandbox ("pause") image the CRI plugin is configured with.
pub const PAUSE: &str = "kubelab.local/pause:1";

const INSTALL_HINT: &str =
    "apt-get install -y containerd runc containernetworking-plugins busybox-static";

/// Where Debian's containernetworking-plugins puts the CNI plugins.
pub const CNI_BIN_DIR: &str = "/usr/lib/cni";

/// A containerd child process with everything under one temporary directory.
pub struct Containerd {
    dir: Option<tempfile::TempDir>,
    child: Option<Child>,
    /// The CRI/containerd gRPC socket.
    pub socket: PathBuf,
    /// The CNI configuration directory the CRI plugin reads.
    pub cni_conf_dir: PathBuf,
    /// A bridge name unique to this instance, for the agent's `--cni-bridge`.
    pub bridge: String,
}

fn find_binary(name: &str) -> Option<PathBuf> {
    let paths = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&paths)
        .chain(["/usr/sbin".into(), "/usr/bin".into(), "/sbin".into()])
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

fn busybox_binary() -> PathBuf {
    ["/bin/busybox", "/usr/bin/busybox"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.is_file())
        .unwrap_or_else(|| panic!("busybox not found: {INSTALL_HINT}"))
}

/// Panics with the install line unless containerd, runc, the CNI plugins and busybox exist.
pub fn require_tools() {
    for tool in ["containerd", "ctr", "runc"] {
        assert!(
            find_binary(tool).is_some(),
            "{tool} not found: the node agent tests need a container runtime: {INSTALL_HINT}"
        );
    }
    for plugin in ["bridge", "host-local", "portmap", "loopback"] {
        assert!(
            Path::new(CNI_BIN_DIR).join(plugin).is_file(),
            "CNI plugin {plugin} not found in {CNI_BIN_DIR}: {INSTALL_HINT}"
        );
    }
    busybox_binary();
}

impl Containerd {
    /// Starts containerd, waits for its socket, and imports the busybox and pause images.
    pub fn start() -> Containerd {
        require_tools();
        let dir = tempfile::Builder::new()
            .prefix("kubelab-ctrd-")
            .tempdir()
            .expect("temp dir");
        let root = dir.path();
        let socket = root.join("containerd.sock");
        let cni_conf_dir = root.join("net.d");
        std::fs::create_dir_all(&cni_conf_dir).unwrap();
        let suffix: u32 = rand::random::<u32>() % 0x10_0000;
        let bridge = format!("klb{suffix:05x}");
        let config = format!(
            r#"version = 2
root = "{root}/root"
state = "{root}/state"
disabled_plugins = ["io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.aufs"]
[grpc]
  address = "{socket}"
[ttrpc]
  address = "{socket}.ttrpc"
[debug]
  address = ""
[metrics]
  address = ""
[plugins."io.containerd.internal.v1.opt"]
  path = "{root}/opt"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{PAUSE}"
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  enable_selinux = false
  # The test may run without CAP_SYS_RESOURCE (no negative oom_score_adj): cap it at ours.
  restrict_oom_score_adj = true
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "{CNI_BIN_DIR}"
    conf_dir = "{conf}"
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
"#,
            root = root.display(),
            socket = socket.display(),
            conf = cni_conf_dir.display(),
        );
        let config_path = root.join("config.toml");
        std::fs::write(&config_path, config).unwrap();
        let log = std::fs::File::create(root.join("containerd.log")).unwrap();
        let child = Command::new(find_binary("containerd").unwrap())
            .arg("--config")
            .arg(&config_path)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start containerd: {e}; {INSTALL_HINT}"));
        let mut containerd = Containerd {
            dir: Some(dir),
            child: Some(child),
            socket,
            cni_conf_dir,
            bridge,
        };
        containerd.wait_ready();
        containerd.import(&busybox_image(
            containerd.root(),
            PAUSE,
            &[],
            PAUSE_ENTRYPOINT,
        ));
        containerd.import(&busybox_image(containerd.root(), BUSYBOX, &["sh"], &[]));
        containerd
    }

    pub fn root(&self) -> &Path {
        self.dir.as_ref().expect("temp dir").path()
    }

    /// containerd's own log, for failure messages.
    pub fn log_tail(&self, lines: usize) -> String {
        let text = std::fs::read_to_string(self.root().join("containerd.log")).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    fn wait_ready(&mut self) {
        let until = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                panic!("containerd exited with {status}:\n{}", self.log_tail(40));
            }
            if self.socket.exists() && self.ctr(&["version"]).status.success() {
                return;
            }
            assert!(
                Instant::now() < until,
                "containerd not ready within 30s:\n{}",
                self.log_tail(40)
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Runs `ctr --address SOCK -n k8s.io ARGS`.
    pub fn ctr(&self, args: &[&str]) -> std::process::Output {
        Command::new(find_binary("ctr").expect("ctr"))
            .arg("--address")
            .arg(&self.socket)
            .args(["-n", "k8s.io"])
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("run ctr")
    }

    /// Imports an image tarball (docker-archive format) into the `k8s.io` namespace.
    pub fn import(&self, tarball: &Path) {
        let out = self.ctr(&["images", "import", &tarball.to_string_lossy()]);
        assert!(
            out.status.success(),
            "ctr images import {}: {}",
            tarball.display(),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Imports the busybox image once more under `name`, running `cmd` by default.
    pub fn import_busybox_as(&self, name: &str, cmd: &[&str]) {
        self.import(&busybox_image(self.root(), name, cmd, &[]));
    }

    /// Stops and removes every pod sandbox (CNI teardown included) and container.
    pub fn remove_all_pods(&self) {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async {
            let cri = kubelab_agent::kubelet::cri::Cri::new(&self.socket);
            let work = async {
                if let Ok(sandboxes) = cri.list_pod_sandboxes(None).await {
                    for s in sandboxes {
                        let _ = cri.stop_pod_sandbox(&s.id).await;
                        let _ = cri.remove_pod_sandbox(&s.id).await;
                    }
                }
            };
            let _ = tokio::time::timeout(Duration::from_secs(60), work).await;
        });
    }
}

impl Drop for Containerd {
    fn drop(&mut self) {
        if self.child.is_some() {
            self.remove_all_pods();
        }
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = Command::new("ip")
            .args(["link", "delete", &self.bridge])
            .stderr(Stdio::null())
            .status();
        if let Some(dir) = self.dir.take() {
            if std::thread::panicking() {
                let path = dir.keep();
                eprintln!(
                    "containerd directory kept in {}; its log (tail):\n{}",
                    path.display(),
                    tail_of(&path.join("containerd.log"), 30)
                );
            } else {
                unmount_below(dir.path());
                let _ = std::fs::remove_dir_all(dir.path());
            }
        }
    }
}

fn tail_of(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// Unmounts whatever is still mounted below `dir` (deepest first).
pub fn unmount_below(dir: &Path) {
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let prefix = dir.to_string_lossy().into_owned();
    let mut points: Vec<&str> = mounts
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .filter(|p| p.starts_with(&prefix))
        .collect();
    points.sort_by_key(|p| std::cmp::Reverse(p.len()));
    for p in points {
        let _ = Command::new("umount").arg("-l").arg(p).status();
    }
}

/// The pause process: waits forever, reaps what it is given, exits on TERM/INT.
const PAUSE_ENTRYPOINT: &[&str] = &[
    "/bin/sh",
    "-c",
    "trap 'exit 0' TERM INT; while :; do sleep 3600 & wait; done",
];

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Builds a docker-archive tarball of a one-layer image: /bin/busybox from the host with a
/// symlink per applet, and the usual empty directories. Returns its path.
pub fn busybox_image(work: &Path, name: &str, cmd: &[&str], entrypoint: &[&str]) -> PathBuf {
    let tag = name.replace(['/', ':', '.'], "_");
    let build = work.join("images").join(&tag);
    let rootfs = build.join("rootfs");
    let out = build.join("out");
    let _ = std::fs::remove_dir_all(&build);
    std::fs::create_dir_all(rootfs.join("bin")).unwrap();
    std::fs::create_dir_all(&out).unwrap();
    for d in [
        "tmp", "etc", "proc", "sys", "dev", "root", "var/www", "home", "usr/bin",
    ] {
        std::fs::create_dir_all(rootfs.join(d)).unwrap();
    }
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(rootfs.join("tmp"), std::fs::Permissions::from_mode(0o1777)).unwrap();
    let busybox = busybox_binary();
    std::fs::copy(&busybox, rootfs.join("bin/busybox")).unwrap();
    let list = Command::new(&busybox).arg("--list").output().unwrap();
    for applet in String::from_utf8_lossy(&list.stdout).split_whitespace() {
        if applet != "busybox" {
            let _ = std::os::unix::fs::symlink("busybox", rootfs.join("bin").join(applet));
        }
    }
    std::fs::write(
        rootfs.join("etc/passwd"),
        "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/home:/bin/false\n",
    )
    .unwrap();
    std::fs::write(rootfs.join("etc/group"), "root:x:0:\nnogroup:x:65534:\n").unwrap();
    let status = Command::new("tar")
        .arg("-C")
        .arg(&rootfs)
        .args(["--numeric-owner", "--owner=0", "--group=0", "-cf"])
        .arg(out.join("layer.tar"))
        .arg(".")
        .status()
        .expect("run tar");
    assert!(status.success(), "tar of the image layer failed");
    let layer = std::fs::read(out.join("layer.tar")).unwrap();
    let diff_id = hex(&Sha256::digest(&layer));
    let mut container_config = serde_json::json!({
        "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
        "WorkingDir": "/",
    });
    if !cmd.is_empty() {
        container_config["Cmd"] = serde_json::json!(cmd);
    }
    if !entrypoint.is_empty() {
        container_config["Entrypoint"] = serde_json::json!(entrypoint);
    }
    let config = serde_json::json!({
        "architecture": match std::env::consts::ARCH { "x86_64" => "amd64", "aarch64" => "arm64", a => a },
        "os": "linux",
        "config": container_config,
        "rootfs": {"type": "layers", "diff_ids": [format!("sha256:{diff_id}")]},
    });
    std::fs::write(out.join("config.json"), config.to_string()).unwrap();
    let manifest = serde_json::json!([{
        "Config": "config.json",
        "RepoTags": [name],
        "Layers": ["layer.tar"],
    }]);
    std::fs::write(out.join("manifest.json"), manifest.to_string()).unwrap();
    let tarball = build.join("image.tar");
    let status = Command::new("tar")
        .arg("-C")
        .arg(&out)
        .arg("-cf")
        .arg(&tarball)
        .args(["manifest.json", "config.json", "layer.tar"])
        .status()
        .expect("run tar");
    assert!(status.success(), "tar of the image failed");
    let _ = std::fs::remove_dir_all(&rootfs);
    tarball
}
