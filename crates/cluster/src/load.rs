//! Loading images into every node's containerd (`kubelab load image|archive`): the host's
//! `docker save` stream is written once to a temporary file, then streamed into
//! `ctr -n k8s.io images import -` on every node at once. A node whose containerd already has
//! the image under the same ID (the CRI plugin keeps a `sha256:<image ID>` reference) and the
//! same name is skipped, as kind does.

use std::path::Path;

use futures::StreamExt;
use tokio::io::AsyncWriteExt;

use crate::provider::{ByteStream, NodeInfo, Provider};
use crate::{Error, Result};

/// What happened on one node.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum NodeOutcome {
    Loaded,
    /// Every image was there already with the same ID.
    Skipped,
}

/// The reference containerd (and the CRI) gives a Docker image name:
/// `busybox` → `docker.io/library/busybox:latest`.
pub fn normalize(image: &str) -> String {
    let (name, tag) = match image.rsplit_once(':') {
        Some((n, t)) if !t.contains('/') => (n.to_owned(), Some(t.to_owned())),
        _ => (image.to_owned(), None),
    };
    let (name, digest) = match name.split_once('@') {
        Some((n, d)) => (n.to_owned(), Some(d.to_owned())),
        None => (name, None),
    };
    let first = name.split('/').next().unwrap_or_default();
    let has_registry =
        name.contains('/') && (first.contains('.') || first.contains(':') || first == "localhost");
    let name = if has_registry {
        name
    } else if name.contains('/') {
        format!("docker.io/{name}")
    } else {
        format!("docker.io/library/{name}")
    };
    match (tag, digest) {
        (_, Some(d)) => format!("{name}@{d}"),
        (Some(t), None) => format!("{name}:{t}"),
        (None, None) => format!("{name}:latest"),
    }
}

/// (ref, digest) of every image in a node's k8s.io namespace.
async fn node_images(provider: &dyn Provider, node: &str) -> Result<Vec<(String, String)>> {
    let out = provider
        .exec(node, &["ctr", "-n", "k8s.io", "images", "ls"], None)
        .await?;
    if !out.success() {
        return Err(Error::NodeCommand {
            node: node.to_owned(),
            command: "ctr -n k8s.io images ls".into(),
            code: out.exit_code,
            output: out.message(),
        });
    }
    Ok(out
        .stdout_text()
        .lines()
        .skip(1)
        .filter_map(|l| {
            let cols: Vec<&str> = l.split_whitespace().collect();
            Some((cols.first()?.to_string(), cols.get(2)?.to_string()))
        })
        .collect())
}

/// Whether the node has `name` as the image `id` (same manifest under both references).
pub fn has_image(images: &[(String, String)], name: &str, id: &str) -> bool {
    let by_id = images.iter().find(|(r, _)| r == id).map(|(_, d)| d);
    let by_name = images
        .iter()
        .find(|(r, _)| *r == normalize(name))
        .map(|(_, d)| d);
    matches!((by_id, by_name), (Some(a), Some(b)) if a == b)
}

/// Streams a file into `ctr images import` on a node.
async fn import_file(provider: &dyn Provider, node: &str, archive: &Path) -> Result<()> {
    let file = tokio::fs::File::open(archive)
        .await
        .map_err(|e| Error::io("open", archive, e))?;
    let stream: ByteStream = Box::pin(futures::stream::unfold(file, |mut file| async move {
        use tokio::io::AsyncReadExt;
        let mut buf = vec![0u8; 1 << 20];
        match file.read(&mut buf).await {
            Ok(0) => None,
            Ok(n) => {
                buf.truncate(n);
                Some((Ok(bytes::Bytes::from(buf)), file))
            }
            Err(e) => Some((Err(e), file)),
        }
    }));
    // The node's snapshotter (overlayfs, or native where overlay cannot work).
    let script = "exec ctr -n k8s.io images import --all-platforms --snapshotter \"$(sed -n 's/^ *snapshotter = \"\\(.*\\)\"/\\1/p' /etc/containerd/config.toml | head -n1)\" -";
    let out = provider
        .exec(node, &["sh", "-c", script], Some(stream))
        .await?;
    if !out.success() {
        return Err(Error::NodeCommand {
            node: node.to_owned(),
            command: "ctr -n k8s.io images import -".into(),
            code: out.exit_code,
            output: out.message(),
        });
    }
    Ok(())
}

/// Loads images from the host's engine into every running node; `images` are (name, ID).
pub async fn load_images(
    provider: &dyn Provider,
    nodes: &[NodeInfo],
    images: &[(String, String)],
) -> Result<Vec<(String, NodeOutcome)>> {
    let running: Vec<&NodeInfo> = nodes.iter().filter(|n| n.running()).collect();
    let mut need = Vec::new();
    let mut outcomes = Vec::new();
    for node in &running {
        let present = node_images(provider, &node.name).await?;
        if images
            .iter()
            .all(|(name, id)| has_image(&present, name, id))
        {
            outcomes.push((node.name.clone(), NodeOutcome::Skipped));
        } else {
            need.push(node.name.clone());
        }
    }
    if need.is_empty() {
        return Ok(outcomes);
    }
    let scratch = tempfile::tempdir()
        .map_err(|e| Error::io("create a temporary directory in", std::env::temp_dir(), e))?;
    let archive = scratch.path().join("images.tar");
    let names: Vec<String> = images.iter().map(|(n, _)| n.clone()).collect();
    let mut stream = provider.save_images(&names);
    let mut file = tokio::fs::File::create(&archive)
        .await
        .map_err(|e| Error::io("create", &archive, e))?;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| Error::engine(format!("save {}", names.join(" ")), e))?;
        file.write_all(&chunk)
            .await
            .map_err(|e| Error::io("write", &archive, e))?;
    }
    file.flush()
        .await
        .map_err(|e| Error::io("write", &archive, e))?;
    drop(file);
    futures::future::try_join_all(
        need.iter()
            .map(|node| import_file(provider, node, &archive)),
    )
    .await?;
    outcomes.extend(need.into_iter().map(|n| (n, NodeOutcome::Loaded)));
    outcomes.sort();
    Ok(outcomes)
}

/// Loads an image archive (`docker save` or OCI layout tarball) into every running node.
pub async fn load_archive(
    provider: &dyn Provider,
    nodes: &[NodeInfo],
    archive: &Path,
) -> Result<Vec<String>> {
    let running: Vec<String> = nodes
        .iter()
        .filter(|n| n.running())
        .map(|n| n.name.clone())
        .collect();
    futures::future::try_join_all(
        running
            .iter()
            .map(|node| import_file(provider, node, archive)),
    )
    .await?;
    Ok(running)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_as_containerd_names_them() {
        assert_eq!(normalize("busybox"), "docker.io/library/busybox:latest");
        assert_eq!(normalize("kl-test-bb:1"), "docker.io/library/kl-test-bb:1");
        assert_eq!(normalize("me/app:2"), "docker.io/me/app:2");
        assert_eq!(
            normalize("kubelab.local/busybox:1"),
            "kubelab.local/busybox:1"
        );
        assert_eq!(normalize("localhost:5000/app"), "localhost:5000/app:latest");
        assert_eq!(normalize("localhost/app:3"), "localhost/app:3");
    }

    #[test]
    fn presence_needs_name_and_id_on_one_manifest() {
        let images = vec![
            ("docker.io/library/app:1".to_owned(), "sha256:m1".to_owned()),
            ("sha256:id1".to_owned(), "sha256:m1".to_owned()),
            ("sha256:id2".to_owned(), "sha256:m2".to_owned()),
        ];
        assert!(has_image(&images, "app:1", "sha256:id1"));
        assert!(!has_image(&images, "app:1", "sha256:id2"));
        assert!(!has_image(&images, "app:2", "sha256:id1"));
    }
}
