//! Shared pieces of the tests that drive Docker-container clusters (tests/cluster.rs,
//! network.rs, dns.rs, ingress.rs, metallb.rs): running `kubelab` and `docker`, checking the
//! engine and building the node image once, the busybox test image FROM scratch, and [`Lab`],
//! a cluster that removes itself.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::common::{eventually, kubelab_bin, run_with_deadline, Kubectl, Output};

/// Upper bound for one `kubelab up` (the node image is built before, once).
pub const UP_DEADLINE: Duration = Duration::from_secs(400);
/// Upper bound for a cluster to do what a test waits for.
pub const WAIT: Duration = Duration::from_secs(180);

/// Runs `kubelab ARGS` with `KUBECONFIG` set to `kubeconfig`.
pub fn kubelab(kubeconfig: &Path, args: &[&str], deadline: Duration) -> Output {
    let mut cmd = Command::new(kubelab_bin());
    cmd.args(args)
        .env("KUBECONFIG", kubeconfig)
        .env_remove("RUST_LOG");
    run_with_deadline(cmd, None, deadline)
}

/// Runs `docker ARGS` (at most a minute).
pub fn docker(args: &[&str]) -> Output {
    let mut cmd = Command::new("docker");
    cmd.args(args);
    run_with_deadline(cmd, None, Duration::from_secs(60))
}

/// Err, saying how to start one, unless a Docker engine answers; then builds the node image
/// from this binary (`--image` when given). Ok holds the build's output.
pub fn engine_with_node_image(scratch: &Path, image: Option<&str>) -> Result<String, String> {
    let out = kubelab(scratch, &["list"], Duration::from_secs(30));
    if !out.success() {
        return Err(format!(
            "these tests need a Docker engine: {}\n(CI: .ci/run installs docker.io and starts dockerd)",
            out.stderr.trim()
        ));
    }
    let mut args = vec!["node-image", "build"];
    if let Some(image) = image {
        args.extend(["--image", image]);
    }
    let out = kubelab(scratch, &args, Duration::from_secs(900));
    if !out.success() {
        return Err(format!(
            "kubelab node-image build failed:\n{}{}",
            out.stdout, out.stderr
        ));
    }
    Ok(out.stdout)
}

/// A busybox image FROM scratch (the host's busybox-static), loaded into the host's Docker.
pub fn build_test_image(name: &str) -> Result<(), String> {
    let busybox = ["/bin/busybox", "/usr/bin/busybox"]
        .into_iter()
        .map(Path::new)
        .find(|p| p.is_file())
        .ok_or("busybox-static is not installed (apt-get install busybox-static)")?;
    let list = Command::new(busybox)
        .arg("--list")
        .output()
        .map_err(|e| format!("busybox --list: {e}"))?;
    let applets = String::from_utf8_lossy(&list.stdout).into_owned();
    let applets: Vec<&str> = applets.split_whitespace().collect();
    let archive = kubelab_cluster::oci::docker_archive(
        name,
        &kubelab_cluster::oci::busybox_entries(busybox, &applets),
        &kubelab_cluster::oci::ImageConfig {
            cmd: vec!["sh".into()],
            ..Default::default()
        },
    )
    .map_err(|e| e.to_string())?;
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let path = dir.path().join("image.tar");
    std::fs::write(&path, archive).map_err(|e| e.to_string())?;
    let out = docker(&["load", "-i", &path.to_string_lossy()]);
    if out.success() {
        Ok(())
    } else {
        Err(format!("docker load: {}", out.stderr))
    }
}

/// A cluster made by a test with its own kubeconfig file, removed (`kubelab down`) when
/// dropped, even when the test panics.
pub struct Lab {
    pub name: String,
    /// Scratch space of the test (the kubeconfig lives here).
    pub dir: tempfile::TempDir,
    pub kubeconfig: PathBuf,
}

impl Lab {
    /// A guard for cluster `name`, not created yet; leftovers of an earlier, killed run are
    /// removed.
    pub fn new(name: &str) -> Lab {
        let dir = tempfile::tempdir().expect("temp dir");
        let kubeconfig = dir.path().join("config");
        let _ = kubelab(&kubeconfig, &["down", name], Duration::from_secs(60));
        Lab {
            name: name.to_owned(),
            dir,
            kubeconfig,
        }
    }

    /// `kubelab up --name NAME --wait 180s ARGS...`; panics with the output when it fails.
    pub fn up(&self, args: &[&str]) {
        let mut all = vec!["up", "--name", &self.name, "--wait", "180s"];
        all.extend_from_slice(args);
        self.kubelab_ok(&all, UP_DEADLINE);
    }

    /// `kubelab load image IMAGE` into every node.
    pub fn load(&self, image: &str) {
        self.kubelab_ok(&["load", "image", image, "--name", &self.name], WAIT);
    }

    /// Waits until `count` nodes are Ready.
    pub fn wait_nodes_ready(&self, count: usize) {
        eventually(&format!("{count} nodes Ready"), WAIT, || {
            let out = self.kubectl(&["get", "nodes", "--no-headers"]);
            (out.stdout
                .lines()
                .filter(|l| crate::common::columns(l).get(1) == Some(&"Ready"))
                .count()
                == count)
                .then_some(())
        });
    }

    pub fn kubelab(&self, args: &[&str], deadline: Duration) -> Output {
        kubelab(&self.kubeconfig, args, deadline)
    }

    pub fn kubelab_ok(&self, args: &[&str], deadline: Duration) -> String {
        let out = self.kubelab(args, deadline);
        assert!(
            out.success(),
            "kubelab {args:?}:\n{}{}",
            out.stdout,
            out.stderr
        );
        out.stdout
    }

    /// The real kubectl with the cluster's kubeconfig (at most a minute).
    pub fn kubectl(&self, args: &[&str]) -> Output {
        self.kubectl_stdin(args, None)
    }

    pub fn kubectl_stdin(&self, args: &[&str], stdin: Option<&str>) -> Output {
        let mut cmd = Command::new(&Kubectl::new("1.32").path);
        cmd.args(args).env("KUBECONFIG", &self.kubeconfig);
        run_with_deadline(cmd, stdin, Duration::from_secs(60))
    }

    /// kubectl that must succeed; its stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.kubectl(args);
        assert!(
            out.success(),
            "kubectl {args:?}:\n{}{}",
            out.stdout,
            out.stderr
        );
        out.stdout
    }

    /// `kubectl apply -f -` that must succeed.
    pub fn apply(&self, manifest: &str) {
        let out = self.kubectl_stdin(&["apply", "-f", "-"], Some(manifest));
        assert!(
            out.success(),
            "kubectl apply:\n{}{}\n{manifest}",
            out.stdout,
            out.stderr
        );
    }

    /// `kubectl exec POD -- sh -c SCRIPT`.
    pub fn sh(&self, pod: &str, script: &str) -> Output {
        self.kubectl(&["exec", pod, "--", "sh", "-c", script])
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        let out = self.kubelab(&["down", &self.name], Duration::from_secs(120));
        if !out.success() {
            eprintln!("cleanup of cluster {} failed: {}", self.name, out.stderr);
        }
    }
}
