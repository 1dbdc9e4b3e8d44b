//! containerd inside a node: its configuration and the images every node has (the sandbox
//! "pause" image, made at first boot from the node's busybox).

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

use crate::oci::{busybox_entries, docker_archive, ImageConfig};
use crate::{Error, Result};

/// The sandbox image the CRI plugin uses (built locally: there is no registry).
pub const PAUSE_IMAGE: &str = "kubelab.local/pause:1";
/// Where containerd listens.
pub const SOCKET: &str = "/run/containerd/containerd.sock";
/// Where the configuration is written at every boot.
pub const CONFIG_PATH: &str = "/etc/containerd/config.toml";
/// Where Debian's containernetworking-plugins puts the CNI plugins.
pub const CNI_BIN_DIR: &str = "/usr/lib/cni";
/// Where the agent writes its CNI configuration.
pub const CNI_CONF_DIR: &str = "/etc/cni/net.d";

/// containerd's configuration for a node.
pub fn config(restrict_oom_score_adj: bool, snapshotter: &str) -> String {
    format!(
        r#"version = 2
# Written by `kubelab node-init` at every boot.
disabled_plugins = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper", "io.containerd.tracing.processor.v1.otlp", "io.containerd.internal.v1.tracing"]

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{PAUSE_IMAGE}"
  restrict_oom_score_adj = {restrict_oom_score_adj}
  enable_unprivileged_ports = true
  enable_unprivileged_icmp = true
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "{CNI_BIN_DIR}"
    conf_dir = "{CNI_CONF_DIR}"
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "{snapshotter}"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
"#
    )
}

/// Writes the configuration.
pub fn write_config(restrict_oom_score_adj: bool, snapshotter: &str) -> Result<()> {
    let path = Path::new(CONFIG_PATH);
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| Error::io("create", dir, e))?;
    }
    std::fs::create_dir_all(CNI_CONF_DIR).map_err(|e| Error::io("create", CNI_CONF_DIR, e))?;
    std::fs::write(path, config(restrict_oom_score_adj, snapshotter))
        .map_err(|e| Error::io("write", path, e))
}

/// Whether containerd's k8s.io namespace has `image`.
pub fn has_image(image: &str) -> bool {
    Command::new("ctr")
        .args(["-n", "k8s.io", "images", "ls", "-q"])
        .arg(format!("name=={image}"))
        .stderr(Stdio::null())
        .output()
        .is_ok_and(|o| {
            o.status.success()
                && String::from_utf8_lossy(&o.stdout)
                    .lines()
                    .any(|l| l.trim() == image)
        })
}

/// Imports a `docker save` archive into the k8s.io namespace.
pub fn import(archive: &[u8], snapshotter: &str) -> Result<()> {
    let mut child = Command::new("ctr")
        .args([
            "-n",
            "k8s.io",
            "images",
            "import",
            "--snapshotter",
            snapshotter,
            "-",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| Error::node_init("run ctr images import", e))?;
    let mut stdin = child.stdin.take().expect("piped stdin");
    let written = stdin.write_all(archive);
    drop(stdin);
    let output = child
        .wait_with_output()
        .map_err(|e| Error::node_init("run ctr images import", e))?;
    written.map_err(|e| Error::node_init("stream an image to ctr", e))?;
    if !output.status.success() {
        return Err(Error::node_init(
            "import an image into containerd",
            String::from_utf8_lossy(&output.stderr).trim(),
        ));
    }
    Ok(())
}

/// Builds and imports the pause image from the node's busybox unless containerd has it: a
/// shell that waits forever, reaps what is reparented to it and exits on TERM or INT.
pub fn ensure_pause_image(snapshotter: &str) -> Result<bool> {
    if has_image(PAUSE_IMAGE) {
        return Ok(false);
    }
    let busybox = ["/bin/busybox", "/usr/bin/busybox"]
        .into_iter()
        .map(Path::new)
        .find(|p| p.is_file())
        .ok_or_else(|| {
            Error::node_init("build the pause image", "busybox is not in the node image")
        })?;
    let archive = docker_archive(
        PAUSE_IMAGE,
        &busybox_entries(busybox, &["sh", "sleep"]),
        &ImageConfig {
            entrypoint: vec![
                "/bin/sh".into(),
                "-c".into(),
                "trap 'exit 0' TERM INT; while :; do sleep 3600 & wait; done".into(),
            ],
            ..Default::default()
        },
    )?;
    import(&archive, snapshotter)?;
    Ok(true)
}

/// The image kubelab's own system pods run (DNS, ingress, load balancer addons): the node's
/// kubelab binary with the shared libraries it links, busybox and the CA bundle.
pub fn system_image() -> String {
    format!("kubelab.local/system:v{}", env!("CARGO_PKG_VERSION"))
}

/// The shared libraries `binary` loads, from `ldd`'s output (paths only).
pub fn linked_libraries(ldd_output: &str) -> Vec<String> {
    ldd_output
        .lines()
        .filter_map(|line| {
            let line = line.trim();
            let path = match line.split_once("=>") {
                Some((_, right)) => right.split_whitespace().next()?,
                None => line.split_whitespace().next()?,
            };
            path.starts_with('/').then(|| path.to_owned())
        })
        .collect()
}

/// Builds and imports the system image unless containerd has it. Run at boot, in the
/// background (`kubelab node-init --import-system-image`), after the node's components start.
pub fn ensure_system_image(kubelab: &Path, snapshotter: &str) -> Result<bool> {
    use crate::oci::Entry;
    let image = system_image();
    if has_image(&image) {
        return Ok(false);
    }
    let busybox = ["/bin/busybox", "/usr/bin/busybox"]
        .into_iter()
        .map(Path::new)
        .find(|p| p.is_file())
        .ok_or_else(|| {
            Error::node_init("build the system image", "busybox is not in the node image")
        })?;
    let ldd = Command::new("ldd")
        .arg(kubelab)
        .output()
        .map_err(|e| Error::node_init("run ldd", e))?;
    let mut entries = busybox_entries(
        busybox,
        &["sh", "cat", "ls", "sleep", "wget", "nslookup", "ps"],
    );
    entries.push(Entry::Dir("usr".into()));
    entries.push(Entry::Dir("usr/local".into()));
    entries.push(Entry::Dir("usr/local/bin".into()));
    entries.push(Entry::HostFile(
        "usr/local/bin/kubelab".into(),
        0o755,
        kubelab.to_owned(),
    ));
    let mut dirs: Vec<String> = Vec::new();
    for library in linked_libraries(&String::from_utf8_lossy(&ldd.stdout)) {
        let real = std::fs::canonicalize(&library).unwrap_or_else(|_| library.clone().into());
        let relative = library.trim_start_matches('/').to_owned();
        let mut dir = String::new();
        for part in Path::new(&relative)
            .parent()
            .into_iter()
            .flat_map(|p| p.iter())
        {
            if !dir.is_empty() {
                dir.push('/');
            }
            dir.push_str(&part.to_string_lossy());
            if !dirs.contains(&dir) {
                dirs.push(dir.clone());
                entries.push(Entry::Dir(dir.clone()));
            }
        }
        entries.push(Entry::HostFile(relative, 0o755, real));
    }
    let bundle = Path::new("/etc/ssl/certs/ca-certificates.crt");
    if bundle.is_file() {
        entries.push(Entry::Dir("etc/ssl".into()));
        entries.push(Entry::Dir("etc/ssl/certs".into()));
        entries.push(Entry::HostFile(
            "etc/ssl/certs/ca-certificates.crt".into(),
            0o644,
            bundle.to_owned(),
        ));
    }
    let archive = docker_archive(
        &image,
        &entries,
        &ImageConfig {
            entrypoint: vec!["/usr/local/bin/kubelab".into()],
            ..Default::default()
        },
    )?;
    import(&archive, snapshotter)?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn libraries_from_ldd() {
        let ldd = "\tlinux-vdso.so.1 (0x00007ffd)\n\tlibgcc_s.so.1 => /lib/x86_64-linux-gnu/libgcc_s.so.1 (0x00007f)\n\tlibc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x00007f)\n\t/lib64/ld-linux-x86-64.so.2 (0x00007f)\n";
        assert_eq!(
            linked_libraries(ldd),
            [
                "/lib/x86_64-linux-gnu/libgcc_s.so.1",
                "/lib/x86_64-linux-gnu/libc.so.6",
                "/lib64/ld-linux-x86-64.so.2"
            ]
        );
    }

    #[test]
    fn config_names_sandbox_image_and_cni_dirs() {
        let text = config(true, "overlayfs");
        assert!(text.contains("sandbox_image = \"kubelab.local/pause:1\""));
        assert!(text.contains("restrict_oom_score_adj = true"));
        assert!(text.contains("bin_dir = \"/usr/lib/cni\""));
        assert!(text.contains("snapshotter = \"overlayfs\""));
    }
}
