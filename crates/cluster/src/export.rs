//! `kubelab export logs`: what someone debugging a cluster asks for first, in one directory.
//!
//! ```text
//! DIR/docker-info.txt                 the engine (version, cgroup version)
//! DIR/nodes.yaml, pods.yaml, events.yaml   from the API (when it answers)
//! DIR/<node>/inspect.json              the engine's view of the container
//! DIR/<node>/node-init.log             the container's output (the entrypoint, server, agent)
//! DIR/<node>/containerd.log, server.log, agent.log   /var/log/kubelab in the node
//! DIR/<node>/images.txt                containerd's images
//! ```

use std::path::{Path, PathBuf};

use k8s_openapi::api::core::v1::{Event, Node, Pod};
use kube::api::{Api, ListParams};

use crate::cluster::{self, ClusterState};
use crate::node_init::LOG_DIR;
use crate::provider::Provider;
use crate::{Error, Result};

fn write(path: &Path, content: impl AsRef<[u8]>) -> Result<()> {
    std::fs::write(path, content).map_err(|e| Error::io("write", path, e))
}

/// Writes the cluster's logs into `dir`; returns the files written.
pub async fn export_logs(provider: &dyn Provider, name: &str, dir: &Path) -> Result<Vec<PathBuf>> {
    let state = cluster::require(provider, name).await?;
    std::fs::create_dir_all(dir).map_err(|e| Error::io("create", dir, e))?;
    let mut written = Vec::new();
    let info = provider.engine_info().await?;
    let path = dir.join("docker-info.txt");
    write(
        &path,
        format!(
            "engine id: {}\nversion: {}\ncgroup version: {}\n",
            info.id, info.version, info.cgroup_version
        ),
    )?;
    written.push(path);
    written.extend(api_objects(provider, &state, dir).await);
    for node in &state.nodes {
        let node_dir = dir.join(&node.name);
        std::fs::create_dir_all(&node_dir).map_err(|e| Error::io("create", &node_dir, e))?;
        let inspected = provider.inspect(&node.name).await?;
        let path = node_dir.join("inspect.json");
        write(
            &path,
            serde_json::to_vec_pretty(&inspected).unwrap_or_default(),
        )?;
        written.push(path);
        let path = node_dir.join("node-init.log");
        write(&path, provider.logs(&node.name).await?)?;
        written.push(path);
        if !node.running() {
            continue;
        }
        for file in ["containerd.log", "server.log", "agent.log"] {
            let source = format!("{LOG_DIR}/{file}");
            let out = provider.exec(&node.name, &["cat", &source], None).await?;
            if out.success() {
                let path = node_dir.join(file);
                write(&path, &out.stdout)?;
                written.push(path);
            }
        }
        let out = provider
            .exec(&node.name, &["ctr", "-n", "k8s.io", "images", "ls"], None)
            .await?;
        let path = node_dir.join("images.txt");
        write(&path, &out.stdout)?;
        written.push(path);
    }
    Ok(written)
}

/// nodes.yaml, pods.yaml and events.yaml (all namespaces), when the API answers.
async fn api_objects(provider: &dyn Provider, state: &ClusterState, dir: &Path) -> Vec<PathBuf> {
    let mut written = Vec::new();
    let Ok(entry) = cluster::admin_entry(provider, state).await else {
        return written;
    };
    let Ok(client) = cluster::client(&entry).await else {
        return written;
    };
    let lp = ListParams::default();
    let dumps: Vec<(&str, Option<String>)> = vec![
        (
            "nodes.yaml",
            Api::<Node>::all(client.clone())
                .list(&lp)
                .await
                .ok()
                .and_then(|l| serde_yaml::to_string(&l.items).ok()),
        ),
        (
            "pods.yaml",
            Api::<Pod>::all(client.clone())
                .list(&lp)
                .await
                .ok()
                .and_then(|l| serde_yaml::to_string(&l.items).ok()),
        ),
        (
            "events.yaml",
            Api::<Event>::all(client.clone())
                .list(&lp)
                .await
                .ok()
                .and_then(|l| serde_yaml::to_string(&l.items).ok()),
        ),
    ];
    for (file, content) in dumps {
        if let Some(content) = content {
            let path = dir.join(file);
            if write(&path, content).is_ok() {
                written.push(path);
            }
        }
    }
    written
}
