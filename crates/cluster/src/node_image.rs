//! The node image: a base (Debian bookworm with the packages in `node-image/packages.txt`) and,
//! on top, the `kubelab` binary as entrypoint (`node-image/Dockerfile`).
//!
//! The base comes from `debian:bookworm-slim` when a registry answers, and otherwise from a
//! `debootstrap --variant=minbase` rootfs, trimmed and imported with `docker import` (the only way
//! on machines without a registry). The rootfs tarball is cached under the cache directory, so
//! a removed base image is re-imported without downloading again, and the base image itself is
//! tagged by a hash of the package list, so it is built once per package list.
//!
//! The final image carries the SHA-256 of the binary it holds as a label: `up` rebuilds the
//! default image when it does not match the running binary, so nodes always run the same code as
//! the CLI.

use std::collections::HashMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use bollard::query_parameters::{BuildImageOptionsBuilder, CreateImageOptionsBuilder};
use futures::StreamExt;
use sha2::{Digest, Sha256};

use crate::provider::DockerProvider;
use crate::{Error, Result};

/// The Dockerfile of the final image (`node-image/Dockerfile`), built into the binary so an
/// installed `kubelab` builds its image without the source tree.
pub const DOCKERFILE: &str = include_str!("../../../node-image/Dockerfile");
/// The base image's packages (`node-image/packages.txt`).
pub const PACKAGES_FILE: &str = include_str!("../../../node-image/packages.txt");

/// Image label with the SHA-256 of the kubelab binary inside.
pub const BINARY_LABEL: &str = "dev.kubelab.binary-sha256";
/// Image label with the kubelab version inside.
pub const VERSION_LABEL: &str = "dev.kubelab.version";

/// The Debian release of the base.
pub const SUITE: &str = "bookworm";

/// The default node image name.
pub fn default_image() -> String {
    format!("kubelab/node:v{}", env!("CARGO_PKG_VERSION"))
}

/// The packages of the base image.
pub fn packages() -> Vec<&'static str> {
    PACKAGES_FILE
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect()
}

/// The base image's tag: a hash of the suite and package list (and of the trimming rules,
/// through `BASE_REVISION`).
pub fn base_image() -> String {
    const BASE_REVISION: &str = "1";
    let mut hash = Sha256::new();
    hash.update(SUITE);
    hash.update(BASE_REVISION);
    for p in packages() {
        hash.update(p);
        hash.update("\n");
    }
    let digest = hex(&hash.finalize());
    format!("kubelab/node-base:{SUITE}-{}", &digest[..12])
}

/// How the node image was made.
#[derive(Debug, Clone)]
pub struct BuildReport {
    pub image: String,
    pub id: String,
    pub size_bytes: u64,
    pub base: BaseSource,
    pub duration: Duration,
}

/// Where the base came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BaseSource {
    /// The base image was already there.
    Present,
    /// Re-imported from the cached rootfs tarball.
    CachedRootfs,
    /// Made with debootstrap now.
    Debootstrap,
    /// Made from debian:bookworm-slim pulled from a registry.
    Registry,
}

/// What to build.
#[derive(Debug, Clone)]
pub struct BuildOptions {
    pub image: String,
    /// The kubelab binary to put in (normally the running one).
    pub binary: PathBuf,
    /// Rebuild the base even when present (and re-run debootstrap).
    pub rebuild_base: bool,
    /// Do not try a registry for the base.
    pub offline: bool,
    /// Debian mirror for debootstrap (default: the host's apt source, else deb.debian.org).
    pub mirror: Option<String>,
}

/// Builds the node image; `say` receives one line per step.
pub async fn build(
    docker: &DockerProvider,
    options: &BuildOptions,
    say: &(dyn Fn(&str) + Sync),
) -> Result<BuildReport> {
    let started = Instant::now();
    let base = base_image();
    let base_source = ensure_base(docker, &base, options, say).await?;
    say(&format!("building {} on {base}", options.image));
    let previous = docker
        .client()
        .inspect_image(&options.image)
        .await
        .ok()
        .and_then(|i| i.id);
    let binary_hash = binary_sha256(&options.binary)?;
    let context = build_context(&options.binary)?;
    let labels = HashMap::from([
        (BINARY_LABEL.to_owned(), binary_hash),
        (
            VERSION_LABEL.to_owned(),
            env!("CARGO_PKG_VERSION").to_owned(),
        ),
    ]);
    let build_options = BuildImageOptionsBuilder::new()
        .dockerfile("Dockerfile")
        .t(&options.image)
        .rm(true)
        .forcerm(true)
        .buildargs(&HashMap::from([("BASE".to_owned(), base.clone())]))
        .labels(&labels)
        .build();
    let mut stream = docker.client().build_image(
        build_options,
        None,
        Some(bollard::body_full(context.into())),
    );
    while let Some(item) = stream.next().await {
        let info = item.map_err(|e| Error::ImageBuild(crate::provider::docker_error(&e)))?;
        if let Some(error) = info.error {
            return Err(Error::ImageBuild(error));
        }
        if let Some(line) = info.stream {
            let line = line.trim();
            if !line.is_empty() {
                tracing::debug!("{line}");
            }
        }
    }
    let inspected = docker
        .client()
        .inspect_image(&options.image)
        .await
        .map_err(|e| Error::ImageBuild(crate::provider::docker_error(&e)))?;
    // The image the tag named before (an older kubelab binary) would stay behind untagged
    // at every rebuild: remove it unless a node container still uses it.
    if let Some(previous) = previous.filter(|p| Some(p) != inspected.id.as_ref()) {
        let _ = docker
            .client()
            .remove_image(
                &previous,
                None::<bollard::query_parameters::RemoveImageOptions>,
                None,
            )
            .await;
    }
    Ok(BuildReport {
        image: options.image.clone(),
        id: inspected.id.unwrap_or_default(),
        size_bytes: inspected.size.unwrap_or(0).max(0) as u64,
        base: base_source,
        duration: started.elapsed(),
    })
}

/// Makes sure the base image exists, building it if needed.
async fn ensure_base(
    docker: &DockerProvider,
    base: &str,
    options: &BuildOptions,
    say: &(dyn Fn(&str) + Sync),
) -> Result<BaseSource> {
    use crate::provider::Provider;
    if !options.rebuild_base && docker.image_id(base).await?.is_some() {
        return Ok(BaseSource::Present);
    }
    let tarball = crate::paths::cache_dir()
        .join("node-base")
        .join(format!("{}.tar", base.rsplit(':').next().unwrap_or("base")));
    if !options.rebuild_base && tarball.is_file() {
        say(&format!(
            "importing the cached base rootfs {}",
            tarball.display()
        ));
        import_rootfs(docker, &tarball, base).await?;
        return Ok(BaseSource::CachedRootfs);
    }
    if !options.offline {
        match from_registry(docker, base, say).await {
            Ok(()) => return Ok(BaseSource::Registry),
            Err(e) => say(&format!(
                "no registry base ({e}); building offline with debootstrap"
            )),
        }
    }
    debootstrap(&tarball, options.mirror.as_deref(), say)?;
    say(&format!("importing {}", tarball.display()));
    import_rootfs(docker, &tarball, base).await?;
    Ok(BaseSource::Debootstrap)
}

/// `docker import` of a rootfs tarball as `image`.
async fn import_rootfs(docker: &DockerProvider, tarball: &Path, image: &str) -> Result<()> {
    let (repo, tag) = image.rsplit_once(':').unwrap_or((image, "latest"));
    let options = CreateImageOptionsBuilder::new()
        .from_src("-")
        .repo(repo)
        .tag(tag)
        .changes(vec![
            "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".to_owned(),
            "CMD [\"/bin/bash\"]".to_owned(),
        ])
        .build();
    let file = tokio::fs::File::open(tarball)
        .await
        .map_err(|e| Error::io("open", tarball, e))?;
    let body = bollard::body_try_stream(tokio_util_stream(file));
    let mut stream = docker
        .client()
        .create_image(Some(options), Some(body), None);
    while let Some(item) = stream.next().await {
        let info = item.map_err(|e| Error::ImageBuild(crate::provider::docker_error(&e)))?;
        if let Some(error) = info.error {
            return Err(Error::ImageBuild(error));
        }
    }
    Ok(())
}

/// A file as a stream of chunks.
fn tokio_util_stream(
    file: tokio::fs::File,
) -> impl futures::Stream<Item = std::io::Result<bytes::Bytes>> + Send + 'static {
    use tokio::io::AsyncReadExt;
    futures::stream::unfold(file, |mut file| async move {
        let mut buf = vec![0u8; 1 << 20];
        match file.read(&mut buf).await {
            Ok(0) => None,
            Ok(n) => {
                buf.truncate(n);
                Some((Ok(bytes::Bytes::from(buf)), file))
            }
            Err(e) => Some((Err(e), file)),
        }
    })
}

/// The base from debian:bookworm-slim: pull, install the packages in a container, commit.
async fn from_registry(
    docker: &DockerProvider,
    base: &str,
    say: &(dyn Fn(&str) + Sync),
) -> Result<()> {
    use bollard::models::ContainerCreateBody;
    let source = format!("debian:{SUITE}-slim");
    say(&format!("pulling {source}"));
    let options = CreateImageOptionsBuilder::new().from_image(&source).build();
    let pull = async {
        let mut stream = docker.client().create_image(Some(options), None, None);
        while let Some(item) = stream.next().await {
            let info = item.map_err(|e| Error::ImageBuild(crate::provider::docker_error(&e)))?;
            if let Some(error) = info.error {
                return Err(Error::ImageBuild(error));
            }
        }
        Ok(())
    };
    tokio::time::timeout(Duration::from_secs(60), pull)
        .await
        .map_err(|_| Error::ImageBuild(format!("pulling {source} took over 60s")))??;
    let script = format!(
        "set -e; apt-get update; DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends {}; {}",
        packages().join(" "),
        TRIM_COMMANDS
    );
    let name = format!("kubelab-base-build-{}", std::process::id());
    let body = ContainerCreateBody {
        image: Some(source.clone()),
        cmd: Some(vec!["/bin/sh".into(), "-c".into(), script]),
        ..Default::default()
    };
    let create = bollard::query_parameters::CreateContainerOptionsBuilder::new()
        .name(&name)
        .build();
    docker
        .client()
        .create_container(Some(create), body)
        .await
        .map_err(|e| Error::ImageBuild(crate::provider::docker_error(&e)))?;
    let result = async {
        docker
            .client()
            .start_container(
                &name,
                None::<bollard::query_parameters::StartContainerOptions>,
            )
            .await
            .map_err(|e| Error::ImageBuild(crate::provider::docker_error(&e)))?;
        let mut wait = docker.client().wait_container(
            &name,
            None::<bollard::query_parameters::WaitContainerOptions>,
        );
        while let Some(status) = wait.next().await {
            let status =
                status.map_err(|e| Error::ImageBuild(crate::provider::docker_error(&e)))?;
            if status.status_code != 0 {
                return Err(Error::ImageBuild(format!(
                    "installing the packages in {source} exited with {}",
                    status.status_code
                )));
            }
        }
        let (repo, tag) = base.rsplit_once(':').unwrap_or((base, "latest"));
        let commit = bollard::query_parameters::CommitContainerOptionsBuilder::new()
            .container(&name)
            .repo(repo)
            .tag(tag)
            .build();
        docker
            .client()
            .commit_container(commit, bollard::models::ContainerConfig::default())
            .await
            .map_err(|e| Error::ImageBuild(crate::provider::docker_error(&e)))?;
        Ok(())
    }
    .await;
    use crate::provider::Provider;
    let _ = docker.remove_node(&name).await;
    result
}

/// Shell commands that trim a rootfs (run inside it): package caches and lists, docs, man
/// pages, locales, the CNI plugins and containerd tools nodes do not use.
const TRIM_COMMANDS: &str = "rm -rf /var/cache/apt/archives/*.deb /var/lib/apt/lists/* \
    /usr/share/doc /usr/share/man /usr/share/info /usr/share/locale/* /var/log/*.log \
    /usr/bin/containerd-shim /usr/bin/containerd-shim-runc-v1 /usr/bin/containerd-stress; \
    cd /usr/lib/cni && for p in *; do case $p in bridge|host-local|loopback|portmap|ptp) ;; *) rm -f $p;; esac; done";

/// Runs debootstrap into a scratch directory and writes the trimmed rootfs as `tarball`.
fn debootstrap(tarball: &Path, mirror: Option<&str>, say: &(dyn Fn(&str) + Sync)) -> Result<()> {
    if which("debootstrap").is_none() {
        return Err(Error::ImageMissing {
            image: base_image(),
            reason: "no registry answers and debootstrap is not installed; install it \
                     (`apt-get install -y debootstrap`) and run `kubelab node-image build`"
                .into(),
        });
    }
    let dir = tarball.parent().expect("the tarball is in a directory");
    std::fs::create_dir_all(dir).map_err(|e| Error::io("create directory", dir, e))?;
    let rootfs = dir.join(format!("rootfs-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&rootfs);
    let mirror = mirror.map(str::to_owned).unwrap_or_else(host_debian_mirror);
    say(&format!(
        "debootstrap {SUITE} from {mirror} (about a minute)"
    ));
    let result = (|| {
        run(Command::new("debootstrap")
            .arg("--variant=minbase")
            .arg(format!("--include={}", packages().join(",")))
            .arg(SUITE)
            .arg(&rootfs)
            .arg(&mirror))?;
        run(Command::new("chroot")
            .arg(&rootfs)
            .args(["/bin/sh", "-c", TRIM_COMMANDS]))?;
        // apt sources inside the node: the same mirror.
        let _ = std::fs::write(
            rootfs.join("etc/apt/sources.list"),
            format!("deb {mirror} {SUITE} main\n"),
        );
        let partial = tarball.with_extension("tar.partial");
        run(Command::new("tar")
            .arg("-C")
            .arg(&rootfs)
            .args(["--numeric-owner", "--xattrs", "-cf"])
            .arg(&partial)
            .arg("."))?;
        std::fs::rename(&partial, tarball).map_err(|e| Error::io("rename", &partial, e))
    })();
    let _ = std::fs::remove_dir_all(&rootfs);
    result
}

/// The Debian mirror the host's apt uses (deb822 `URIs:` or one-line `deb URL bookworm`), else
/// deb.debian.org.
pub fn host_debian_mirror() -> String {
    let mut files = vec![PathBuf::from("/etc/apt/sources.list")];
    if let Ok(dir) = std::fs::read_dir("/etc/apt/sources.list.d") {
        let mut more: Vec<PathBuf> = dir.filter_map(|e| e.ok().map(|e| e.path())).collect();
        more.sort();
        files.extend(more);
    }
    for file in files {
        let Ok(text) = std::fs::read_to_string(&file) else {
            continue;
        };
        if let Some(mirror) = mirror_in(&text) {
            return mirror;
        }
    }
    "http://deb.debian.org/debian".to_owned()
}

/// The first Debian (not security, not third-party) mirror in an apt source file.
fn mirror_in(text: &str) -> Option<String> {
    let is_debian = |uri: &str, suites: &str| {
        suites.split_whitespace().any(|s| s == SUITE)
            && !uri.contains("security")
            && uri.contains("debian")
    };
    // One-line format.
    for line in text.lines() {
        let words: Vec<&str> = line.split_whitespace().collect();
        if words.first() == Some(&"deb") {
            let rest: Vec<&str> = words[1..]
                .iter()
                .copied()
                .filter(|w| !w.starts_with('['))
                .collect();
            if rest.len() >= 2 && is_debian(rest[0], rest[1]) {
                return Some(rest[0].to_owned());
            }
        }
    }
    // deb822 stanzas.
    for stanza in text.split("\n\n") {
        let field = |name: &str| {
            stanza.lines().find_map(|l| {
                let (k, v) = l.split_once(':')?;
                (k.trim().eq_ignore_ascii_case(name)).then(|| v.trim().to_owned())
            })
        };
        if let (Some(uris), Some(suites)) = (field("URIs"), field("Suites")) {
            if let Some(uri) = uris.split_whitespace().next() {
                if is_debian(uri, &suites) {
                    return Some(uri.to_owned());
                }
            }
        }
    }
    None
}

/// The tar build context: the Dockerfile and the (stripped) kubelab binary.
fn build_context(binary: &Path) -> Result<Vec<u8>> {
    let scratch = tempfile::tempdir()
        .map_err(|e| Error::io("create a temporary directory in", std::env::temp_dir(), e))?;
    let copy = scratch.path().join("kubelab");
    std::fs::copy(binary, &copy).map_err(|e| Error::io("copy", binary, e))?;
    // Debug builds carry hundreds of MB of debug info nodes do not need.
    if which("strip").is_some() {
        let _ = Command::new("strip")
            .arg("--strip-debug")
            .arg(&copy)
            .status();
    }
    let mut tar = tar::Builder::new(Vec::new());
    let mut header = tar::Header::new_gnu();
    header.set_size(DOCKERFILE.len() as u64);
    header.set_mode(0o644);
    header.set_cksum();
    tar.append_data(&mut header, "Dockerfile", DOCKERFILE.as_bytes())
        .map_err(|e| Error::io("archive", "Dockerfile", e))?;
    let mut file = std::fs::File::open(&copy).map_err(|e| Error::io("open", &copy, e))?;
    let mut header = tar::Header::new_gnu();
    header.set_size(
        file.metadata()
            .map_err(|e| Error::io("stat", &copy, e))?
            .len(),
    );
    header.set_mode(0o755);
    header.set_cksum();
    tar.append_data(&mut header, "kubelab", &mut file)
        .map_err(|e| Error::io("archive", &copy, e))?;
    tar.into_inner().map_err(|e| Error::io("archive", &copy, e))
}

/// SHA-256 of a file, hex; cached by path, size and modification time (hashing a debug
/// binary takes a noticeable fraction of a second).
pub fn binary_sha256(path: &Path) -> Result<String> {
    let meta = std::fs::metadata(path).map_err(|e| Error::io("stat", path, e))?;
    let mtime = meta
        .modified()
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let key = format!("{}\n{}\n{}", path.display(), meta.len(), mtime);
    let cache = crate::paths::cache_dir()
        .join("binary-hash")
        .join(&hex(&Sha256::digest(key.as_bytes()))[..16]);
    if let Ok(cached) = std::fs::read_to_string(&cache) {
        if cached.len() == 64 {
            return Ok(cached);
        }
    }
    let mut file = std::fs::File::open(path).map_err(|e| Error::io("open", path, e))?;
    let mut hash = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file
            .read(&mut buf)
            .map_err(|e| Error::io("read", path, e))?;
        if n == 0 {
            break;
        }
        hash.update(&buf[..n]);
    }
    let digest = hex(&hash.finalize());
    if let Some(dir) = cache.parent() {
        let _ = std::fs::create_dir_all(dir);
        let _ = std::fs::write(&cache, &digest);
    }
    Ok(digest)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

pub(crate) fn which(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|candidate| candidate.is_file())
}

fn run(command: &mut Command) -> Result<()> {
    let output = command.output().map_err(|e| Error::Command {
        command: format!("{command:?}"),
        output: e.to_string(),
    })?;
    if output.status.success() {
        return Ok(());
    }
    let mut text = String::from_utf8_lossy(&output.stderr).into_owned();
    if text.trim().is_empty() {
        text = String::from_utf8_lossy(&output.stdout).into_owned();
    }
    let tail: Vec<&str> = text.lines().rev().take(5).collect();
    Err(Error::Command {
        command: format!("{command:?}"),
        output: tail.into_iter().rev().collect::<Vec<_>>().join(" | "),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mirrors_from_both_apt_formats() {
        let deb822 = "Types: deb\n# http://snapshot\nURIs: http://deb.debian.org/debian\nSuites: bookworm bookworm-updates\nComponents: main\n\nTypes: deb\nURIs: http://deb.debian.org/debian-security\nSuites: bookworm-security\n";
        assert_eq!(
            mirror_in(deb822).as_deref(),
            Some("http://deb.debian.org/debian")
        );
        let one_line = "deb [arch=amd64] http://mirror.example/debian bookworm main\n";
        assert_eq!(
            mirror_in(one_line).as_deref(),
            Some("http://mirror.example/debian")
        );
        assert_eq!(
            mirror_in("deb https://packages.cloud.google.com/apt cloud-sdk-bookworm main"),
            None
        );
    }

    #[test]
    fn packages_and_base_tag() {
        let p = packages();
        assert!(p.contains(&"containerd") && p.contains(&"runc") && p.contains(&"busybox-static"));
        assert!(base_image().starts_with("kubelab/node-base:bookworm-"));
    }
}
