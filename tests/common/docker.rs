//! Shared pieces of the tests that drive Docker-container clusters (tests/cluster.rs,
//! network.rs, dns.rs): running `kubelab` and `docker`, checking the engine and building the
//! node image once, and the busybox test image FROM scratch.

#![allow(dead_code)]

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use crate::common::{kubelab_bin, run_with_deadline, Output};

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
