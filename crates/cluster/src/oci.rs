//! One-layer images as `docker save` archives (manifest.json, config.json, layer.tar), which both
//! `docker load` and `ctr images import` read. Used for the images nodes make at boot (the pause
//! image) and for test images built from busybox without a registry.

use std::path::PathBuf;

use sha2::{Digest, Sha256};

use crate::{Error, Result};

/// A file of the layer.
#[derive(Clone, Debug)]
pub enum Entry {
    Dir(String),
    /// (path, mode, content)
    File(String, u32, Vec<u8>),
    /// (path, mode, file on disk)
    HostFile(String, u32, PathBuf),
    /// (path, target)
    Symlink(String, String),
}

/// The image's default process.
#[derive(Clone, Debug, Default)]
pub struct ImageConfig {
    pub entrypoint: Vec<String>,
    pub cmd: Vec<String>,
    pub env: Vec<String>,
}

/// A `docker save` archive of a one-layer image named `name` holding `entries`.
pub fn docker_archive(name: &str, entries: &[Entry], config: &ImageConfig) -> Result<Vec<u8>> {
    let layer = layer_tar(entries)?;
    let diff_id = format!("sha256:{}", hex(&Sha256::digest(&layer)));
    let mut env =
        vec!["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".to_owned()];
    env.extend(config.env.iter().cloned());
    let mut container_config = serde_json::json!({"Env": env, "WorkingDir": "/"});
    if !config.entrypoint.is_empty() {
        container_config["Entrypoint"] = serde_json::json!(config.entrypoint);
    }
    if !config.cmd.is_empty() {
        container_config["Cmd"] = serde_json::json!(config.cmd);
    }
    let arch = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    };
    let image_config = serde_json::json!({
        "architecture": arch,
        "os": "linux",
        "config": container_config,
        "rootfs": {"type": "layers", "diff_ids": [diff_id]},
        "history": [{"created_by": "kubelab"}],
    })
    .to_string();
    let config_name = format!("{}.json", hex(&Sha256::digest(image_config.as_bytes())));
    let manifest = serde_json::json!([{
        "Config": config_name,
        "RepoTags": [name],
        "Layers": ["layer.tar"],
    }])
    .to_string();
    let mut archive = tar::Builder::new(Vec::new());
    append(&mut archive, "manifest.json", 0o644, manifest.as_bytes())?;
    append(&mut archive, &config_name, 0o644, image_config.as_bytes())?;
    append(&mut archive, "layer.tar", 0o644, &layer)?;
    archive
        .into_inner()
        .map_err(|e| Error::io("archive", name, e))
}

fn layer_tar(entries: &[Entry]) -> Result<Vec<u8>> {
    let mut tar = tar::Builder::new(Vec::new());
    for entry in entries {
        match entry {
            Entry::Dir(path) => {
                let mut header = header(tar::EntryType::Directory, 0o755, 0);
                tar.append_data(&mut header, path, std::io::empty())
                    .map_err(|e| Error::io("archive", path, e))?;
            }
            Entry::File(path, mode, content) => append(&mut tar, path, *mode, content)?,
            Entry::HostFile(path, mode, source) => {
                let content = std::fs::read(source).map_err(|e| Error::io("read", source, e))?;
                append(&mut tar, path, *mode, &content)?;
            }
            Entry::Symlink(path, target) => {
                let mut header = header(tar::EntryType::Symlink, 0o777, 0);
                tar.append_link(&mut header, path, target)
                    .map_err(|e| Error::io("archive", path, e))?;
            }
        }
    }
    tar.into_inner()
        .map_err(|e| Error::io("archive", "layer", e))
}

fn header(kind: tar::EntryType, mode: u32, size: u64) -> tar::Header {
    let mut header = tar::Header::new_gnu();
    header.set_entry_type(kind);
    header.set_mode(mode);
    header.set_size(size);
    header.set_uid(0);
    header.set_gid(0);
    header.set_mtime(0);
    header
}

fn append(tar: &mut tar::Builder<Vec<u8>>, path: &str, mode: u32, content: &[u8]) -> Result<()> {
    let mut header = header(tar::EntryType::Regular, mode, content.len() as u64);
    tar.append_data(&mut header, path, content)
        .map_err(|e| Error::io("archive", path, e))
}

/// The entries of a busybox image: `/bin/busybox` from `busybox` with a symlink per applet, the
/// usual empty directories, /etc/passwd and /etc/group.
pub fn busybox_entries(busybox: &std::path::Path, applets: &[&str]) -> Vec<Entry> {
    let mut entries: Vec<Entry> = [
        "bin", "etc", "tmp", "proc", "sys", "dev", "root", "var", "home",
    ]
    .iter()
    .map(|d| Entry::Dir(d.to_string()))
    .collect();
    entries.push(Entry::HostFile(
        "bin/busybox".into(),
        0o755,
        busybox.to_owned(),
    ));
    for applet in applets {
        if *applet != "busybox" {
            entries.push(Entry::Symlink(format!("bin/{applet}"), "busybox".into()));
        }
    }
    entries.push(Entry::File(
        "etc/passwd".into(),
        0o644,
        b"root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/home:/bin/false\n".to_vec(),
    ));
    entries.push(Entry::File(
        "etc/group".into(),
        0o644,
        b"root:x:0:\nnogroup:x:65534:\n".to_vec(),
    ));
    entries
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn archive_lists_manifest_config_and_layer() {
        let bytes = docker_archive(
            "kubelab.local/x:1",
            &[
                Entry::Dir("bin".into()),
                Entry::File("bin/hello".into(), 0o755, b"hi".to_vec()),
            ],
            &ImageConfig {
                cmd: vec!["/bin/hello".into()],
                ..Default::default()
            },
        )
        .unwrap();
        let mut archive = tar::Archive::new(&bytes[..]);
        let names: Vec<String> = archive
            .entries()
            .unwrap()
            .map(|e| e.unwrap().path().unwrap().display().to_string())
            .collect();
        assert_eq!(names[0], "manifest.json");
        assert!(names[1].ends_with(".json"));
        assert_eq!(names[2], "layer.tar");
    }
}
