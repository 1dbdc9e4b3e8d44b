//! Pod volumes on the node, under `<root>/pods/<uid>/volumes/<plugin>/<name>`: emptyDir (a
//! directory, or a tmpfs for `medium: Memory`), configMap, secret, downwardAPI and projected
//! (written with the kubelet's atomic writer: files live in a timestamped directory that the
//! `..data` symlink points to, so an update swaps every file at once and reaches containers
//! that bind-mount the volume directory), hostPath, and persistentVolumeClaim (the bound
//! volume's hostPath or local path, as the local-path provisioner makes them).

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use k8s_openapi::api::core::v1::{
    ConfigMap, KeyToPath, PersistentVolume, PersistentVolumeClaim, Pod, Secret, Volume,
};
use kube::api::{Api, PostParams};

use super::env::{field_value, resource_value};

/// A file to write: content and mode.
pub type Files = BTreeMap<String, (Vec<u8>, u32)>;

#[derive(Debug, thiserror::Error)]
pub enum VolumeError {
    #[error("volume {volume}: {message}")]
    Invalid { volume: String, message: String },
    #[error("volume {volume}: cannot read {what}: {source}")]
    Api {
        volume: String,
        what: String,
        source: Box<kube::Error>,
    },
    #[error("volume {volume}: {operation} {}: {source}", path.display())]
    Io {
        volume: String,
        operation: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
}

fn invalid(volume: &str, message: impl Into<String>) -> VolumeError {
    VolumeError::Invalid {
        volume: volume.into(),
        message: message.into(),
    }
}

fn io_err(
    volume: &str,
    operation: &'static str,
    path: &Path,
) -> impl FnOnce(std::io::Error) -> VolumeError {
    let volume = volume.to_string();
    let path = path.to_path_buf();
    move |source| VolumeError::Io {
        volume,
        operation,
        path,
        source,
    }
}

/// Where a pod's volumes go.
pub fn pod_volumes_dir(pod_dir: &Path) -> PathBuf {
    pod_dir.join("volumes")
}

/// What the kubelet needs to materialise volumes: an API client, the node's facts.
pub struct VolumeContext<'a> {
    pub client: &'a kube::Client,
    pub pod: &'a Pod,
    pub pod_dir: &'a Path,
    pub host_ip: &'a str,
    pub pod_ip: &'a str,
    pub node_allocatable_cpu_millis: i64,
    pub node_allocatable_memory: i64,
    /// Projected service-account tokens already issued, reused until they need a refresh.
    pub tokens: &'a TokenCache,
}

/// Projected service-account tokens by (pod uid, account, audience, requested lifetime), with
/// when they were issued and when they expire. A token is requested again once 80 % of its
/// lifetime has passed or it is older than 24 hours, as upstream's kubelet token manager does,
/// so a pod's token file is always replaced well before it expires.
#[derive(Default)]
pub struct TokenCache {
    entries: std::sync::Mutex<std::collections::HashMap<TokenKey, IssuedToken>>,
}

/// (pod uid, service account, audience, requested expirationSeconds).
type TokenKey = (String, String, String, i64);
/// (token, issued at, expires at).
type IssuedToken = (String, SystemTime, SystemTime);

/// Does a token issued at `issued`, expiring at `expires`, need replacing at `now`?
pub fn requires_refresh(issued: SystemTime, expires: SystemTime, now: SystemTime) -> bool {
    if now >= expires {
        return true;
    }
    let lifetime = expires.duration_since(issued).unwrap_or_default();
    let age = now.duration_since(issued).unwrap_or_default();
    age >= Duration::from_secs(24 * 60 * 60) || age * 5 >= lifetime * 4
}

impl TokenCache {
    fn get(&self, key: &TokenKey) -> Option<String> {
        let entries = self.entries.lock().expect("token cache lock");
        let (token, issued, expires) = entries.get(key)?;
        (!requires_refresh(*issued, *expires, SystemTime::now())).then(|| token.clone())
    }

    fn put(&self, key: TokenKey, token: String, lifetime: Duration) {
        let now = SystemTime::now();
        let mut entries = self.entries.lock().expect("token cache lock");
        // Tokens of pods that are gone expire and are dropped here.
        entries.retain(|_, (_, _, expires)| *expires > now);
        entries.insert(key, (token, now, now + lifetime));
    }
}

/// Sets up (or refreshes) every volume of the pod; returns the host path of each by name.
pub async fn prepare(ctx: &VolumeContext<'_>) -> Result<BTreeMap<String, PathBuf>, VolumeError> {
    let mut out = BTreeMap::new();
    let volumes = ctx
        .pod
        .spec
        .as_ref()
        .and_then(|s| s.volumes.clone())
        .unwrap_or_default();
    for v in &volumes {
        let path = prepare_one(ctx, v).await?;
        out.insert(v.name.clone(), path);
    }
    Ok(out)
}

fn namespace(pod: &Pod) -> String {
    pod.metadata
        .namespace
        .clone()
        .unwrap_or_else(|| "default".into())
}

async fn prepare_one(ctx: &VolumeContext<'_>, v: &Volume) -> Result<PathBuf, VolumeError> {
    let base = pod_volumes_dir(ctx.pod_dir);
    let name = v.name.as_str();
    let dir = |plugin: &str| base.join(plugin).join(name);
    if let Some(e) = &v.empty_dir {
        let path = dir("kubernetes.io~empty-dir");
        std::fs::create_dir_all(&path).map_err(io_err(name, "create", &path))?;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o777))
            .map_err(io_err(name, "chmod", &path))?;
        if e.medium.as_deref() == Some("Memory") && !is_mount_point(&path) {
            let size = e
                .size_limit
                .as_ref()
                .and_then(|q| super::quantity::parse(&q.0))
                .map(|b| format!(",size={}", b as u64))
                .unwrap_or_default();
            mount_tmpfs(&path, &format!("mode=0777{size}")).map_err(io_err(
                name,
                "mount tmpfs on",
                &path,
            ))?;
        }
        return Ok(path);
    }
    if let Some(h) = &v.host_path {
        let path = PathBuf::from(&h.path);
        match h.type_.as_deref().unwrap_or("") {
            "DirectoryOrCreate" => {
                std::fs::create_dir_all(&path).map_err(io_err(name, "create", &path))?;
            }
            "FileOrCreate" if !path.exists() => {
                if let Some(parent) = path.parent() {
                    std::fs::create_dir_all(parent).map_err(io_err(name, "create", parent))?;
                }
                std::fs::write(&path, b"").map_err(io_err(name, "create", &path))?;
            }
            "Directory" if !path.is_dir() => {
                return Err(invalid(
                    name,
                    format!("hostPath {} is not a directory", h.path),
                ))
            }
            "File" if !path.is_file() => {
                return Err(invalid(name, format!("hostPath {} is not a file", h.path)))
            }
            "Socket" | "CharDevice" | "BlockDevice" if !path.exists() => {
                return Err(invalid(name, format!("hostPath {} does not exist", h.path)))
            }
            _ => {}
        }
        return Ok(path);
    }
    if let Some(claim) = &v.persistent_volume_claim {
        return claim_path(ctx, name, &claim.claim_name).await;
    }
    let files = if let Some(cm) = &v.config_map {
        let data = config_map_files(
            ctx,
            name,
            cm.name.as_str(),
            cm.optional.unwrap_or(false),
            cm.items.as_deref(),
            cm.default_mode,
        )
        .await?;
        Some(("kubernetes.io~configmap", data))
    } else if let Some(s) = &v.secret {
        let secret_name = s.secret_name.clone().unwrap_or_default();
        let data = secret_files(
            ctx,
            name,
            &secret_name,
            s.optional.unwrap_or(false),
            s.items.as_deref(),
            s.default_mode,
        )
        .await?;
        Some(("kubernetes.io~secret", data))
    } else if let Some(d) = &v.downward_api {
        Some((
            "kubernetes.io~downward-api",
            downward_files(
                ctx,
                name,
                d.items.as_deref().unwrap_or_default(),
                d.default_mode,
            )?,
        ))
    } else if let Some(p) = &v.projected {
        Some((
            "kubernetes.io~projected",
            projected_files(ctx, name, p).await?,
        ))
    } else {
        None
    };
    match files {
        Some((plugin, files)) => {
            let path = dir(plugin);
            write_atomic_dir(&path, &files).map_err(io_err(name, "write", &path))?;
            Ok(path)
        }
        None => Err(invalid(
            name,
            "this volume type is not supported by kubelab's kubelet",
        )),
    }
}

async fn claim_path(
    ctx: &VolumeContext<'_>,
    volume: &str,
    claim: &str,
) -> Result<PathBuf, VolumeError> {
    let api: Api<PersistentVolumeClaim> = Api::namespaced(ctx.client.clone(), &namespace(ctx.pod));
    let pvc = api.get(claim).await.map_err(|source| VolumeError::Api {
        volume: volume.into(),
        what: format!("PersistentVolumeClaim {claim}"),
        source: Box::new(source),
    })?;
    let bound = pvc.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Bound");
    let pv_name = pvc
        .spec
        .as_ref()
        .and_then(|s| s.volume_name.clone())
        .filter(|_| bound);
    let Some(pv_name) = pv_name else {
        return Err(invalid(volume, format!("claim {claim} is not bound yet")));
    };
    let pvs: Api<PersistentVolume> = Api::all(ctx.client.clone());
    let pv = pvs.get(&pv_name).await.map_err(|source| VolumeError::Api {
        volume: volume.into(),
        what: format!("PersistentVolume {pv_name}"),
        source: Box::new(source),
    })?;
    let spec = pv.spec.unwrap_or_default();
    let path = spec
        .host_path
        .map(|h| h.path)
        .or(spec.local.map(|l| l.path))
        .ok_or_else(|| {
            invalid(
                volume,
                format!("volume {pv_name} is neither hostPath nor local"),
            )
        })?;
    let path = PathBuf::from(path);
    std::fs::create_dir_all(&path).map_err(io_err(volume, "create", &path))?;
    Ok(path)
}

/// Files of a key/value map: every key, or the listed items (path and mode per item).
fn select(
    volume: &str,
    data: BTreeMap<String, Vec<u8>>,
    items: Option<&[KeyToPath]>,
    default_mode: Option<i32>,
    optional: bool,
) -> Result<Files, VolumeError> {
    let mode = default_mode.unwrap_or(0o644) as u32;
    let mut files = Files::new();
    match items {
        Some(items) if !items.is_empty() => {
            for item in items {
                match data.get(&item.key) {
                    Some(v) => {
                        files.insert(
                            item.path.clone(),
                            (v.clone(), item.mode.map(|m| m as u32).unwrap_or(mode)),
                        );
                    }
                    None if optional => {}
                    None => return Err(invalid(volume, format!("key {} not found", item.key))),
                }
            }
        }
        _ => {
            for (k, v) in data {
                files.insert(k, (v, mode));
            }
        }
    }
    Ok(files)
}

async fn config_map_files(
    ctx: &VolumeContext<'_>,
    volume: &str,
    name: &str,
    optional: bool,
    items: Option<&[KeyToPath]>,
    default_mode: Option<i32>,
) -> Result<Files, VolumeError> {
    let api: Api<ConfigMap> = Api::namespaced(ctx.client.clone(), &namespace(ctx.pod));
    let cm = api.get_opt(name).await.map_err(|source| VolumeError::Api {
        volume: volume.into(),
        what: format!("ConfigMap {name}"),
        source: Box::new(source),
    })?;
    let Some(cm) = cm else {
        return if optional {
            Ok(Files::new())
        } else {
            Err(invalid(volume, format!("configmap \"{name}\" not found")))
        };
    };
    let mut data: BTreeMap<String, Vec<u8>> = cm
        .data
        .unwrap_or_default()
        .into_iter()
        .map(|(k, v)| (k, v.into_bytes()))
        .collect();
    for (k, v) in cm.binary_data.unwrap_or_default() {
        data.insert(k, v.0);
    }
    select(volume, data, items, default_mode, optional)
}

async fn secret_files(
    ctx: &VolumeContext<'_>,
    volume: &str,
    name: &str,
    optional: bool,
    items: Option<&[KeyToPath]>,
    default_mode: Option<i32>,
) -> Result<Files, VolumeError> {
    let api: Api<Secret> = Api::namespaced(ctx.client.clone(), &namespace(ctx.pod));
    let secret = api.get_opt(name).await.map_err(|source| VolumeError::Api {
        volume: volume.into(),
        what: format!("Secret {name}"),
        source: Box::new(source),
    })?;
    let Some(secret) = secret else {
        return if optional {
            Ok(Files::new())
        } else {
            Err(invalid(volume, format!("secret \"{name}\" not found")))
        };
    };
    let mut data: BTreeMap<String, Vec<u8>> = secret
        .data
        .unwrap_or_default()
        .into_iter()
        .map(|(k, v)| (k, v.0))
        .collect();
    for (k, v) in secret.string_data.unwrap_or_default() {
        data.insert(k, v.into_bytes());
    }
    select(volume, data, items, default_mode, optional)
}

fn downward_files(
    ctx: &VolumeContext<'_>,
    volume: &str,
    items: &[k8s_openapi::api::core::v1::DownwardAPIVolumeFile],
    default_mode: Option<i32>,
) -> Result<Files, VolumeError> {
    let mode = default_mode.unwrap_or(0o644) as u32;
    let mut files = Files::new();
    for item in items {
        let value = if let Some(f) = &item.field_ref {
            field_value(ctx.pod, &f.field_path, ctx.host_ip, ctx.pod_ip)
                .map_err(|e| invalid(volume, e))?
        } else if let Some(r) = &item.resource_field_ref {
            resource_value(
                ctx.pod,
                r,
                ctx.node_allocatable_cpu_millis,
                ctx.node_allocatable_memory,
            )
            .map_err(|e| invalid(volume, e))?
        } else {
            continue;
        };
        files.insert(
            item.path.clone(),
            (
                value.into_bytes(),
                item.mode.map(|m| m as u32).unwrap_or(mode),
            ),
        );
    }
    Ok(files)
}

async fn projected_files(
    ctx: &VolumeContext<'_>,
    volume: &str,
    p: &k8s_openapi::api::core::v1::ProjectedVolumeSource,
) -> Result<Files, VolumeError> {
    let mut files = Files::new();
    for source in p.sources.iter().flatten() {
        if let Some(cm) = &source.config_map {
            files.extend(
                config_map_files(
                    ctx,
                    volume,
                    &cm.name,
                    cm.optional.unwrap_or(false),
                    cm.items.as_deref(),
                    p.default_mode,
                )
                .await?,
            );
        }
        if let Some(s) = &source.secret {
            files.extend(
                secret_files(
                    ctx,
                    volume,
                    &s.name,
                    s.optional.unwrap_or(false),
                    s.items.as_deref(),
                    p.default_mode,
                )
                .await?,
            );
        }
        if let Some(d) = &source.downward_api {
            files.extend(downward_files(
                ctx,
                volume,
                d.items.as_deref().unwrap_or_default(),
                p.default_mode,
            )?);
        }
        if let Some(t) = &source.service_account_token {
            let token = service_account_token(ctx, t).await;
            files.insert(
                t.path.clone(),
                (token.into_bytes(), p.default_mode.unwrap_or(0o644) as u32),
            );
        }
        if source.cluster_trust_bundle.is_some() {
            return Err(invalid(
                volume,
                "clusterTrustBundle sources are not supported",
            ));
        }
    }
    Ok(files)
}

/// A token for the pod's service account from the TokenRequest API, bound to the pod. When
/// the API server does not serve TokenRequest, the service account's legacy token Secret, if
/// any; else an empty file (the pod then reaches the API anonymously).
async fn service_account_token(
    ctx: &VolumeContext<'_>,
    t: &k8s_openapi::api::core::v1::ServiceAccountTokenProjection,
) -> String {
    let sa = ctx
        .pod
        .spec
        .as_ref()
        .and_then(|s| s.service_account_name.clone())
        .unwrap_or_else(|| "default".into());
    let ns = namespace(ctx.pod);
    let expiration = t.expiration_seconds.unwrap_or(3607);
    let key = (
        ctx.pod.metadata.uid.clone().unwrap_or_default(),
        sa.clone(),
        t.audience.clone().unwrap_or_default(),
        expiration,
    );
    if let Some(token) = ctx.tokens.get(&key) {
        return token;
    }
    let request = serde_json::json!({
        "apiVersion": "authentication.k8s.io/v1",
        "kind": "TokenRequest",
        "spec": {
            "audiences": t.audience.as_ref().map(|a| vec![a.clone()]).unwrap_or_default(),
            "expirationSeconds": expiration,
            "boundObjectRef": {
                "apiVersion": "v1",
                "kind": "Pod",
                "name": ctx.pod.metadata.name,
                "uid": ctx.pod.metadata.uid,
            }
        }
    });
    let api: Api<k8s_openapi::api::core::v1::ServiceAccount> =
        Api::namespaced(ctx.client.clone(), &ns);
    match api
        .create_subresource::<serde_json::Value, serde_json::Value>(
            "token",
            &sa,
            &PostParams::default(),
            &request,
        )
        .await
    {
        Ok(v) => {
            if let Some(token) = v.pointer("/status/token").and_then(|t| t.as_str()) {
                // The lifetime granted, which the server may shorten.
                let granted = v
                    .pointer("/spec/expirationSeconds")
                    .and_then(|s| s.as_i64())
                    .unwrap_or(expiration);
                let lifetime = Duration::from_secs(granted.max(0) as u64);
                ctx.tokens.put(key, token.to_string(), lifetime);
                return token.to_string();
            }
        }
        Err(e) => {
            tracing::debug!(error = %e, "TokenRequest failed; falling back to a token Secret")
        }
    }
    let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), &ns);
    if let Ok(list) = secrets.list(&Default::default()).await {
        for s in list.items {
            let for_sa = s.type_.as_deref() == Some("kubernetes.io/service-account-token")
                && s.metadata
                    .annotations
                    .as_ref()
                    .and_then(|a| a.get("kubernetes.io/service-account.name"))
                    == Some(&sa);
            if for_sa {
                if let Some(token) = s.data.as_ref().and_then(|d| d.get("token")) {
                    return String::from_utf8_lossy(&token.0).into_owned();
                }
            }
        }
    }
    String::new()
}

/// Writes `files` into `dir` the way the kubelet's AtomicWriter does. Returns whether anything
/// changed.
pub fn write_atomic_dir(dir: &Path, files: &Files) -> std::io::Result<bool> {
    std::fs::create_dir_all(dir)?;
    let data_link = dir.join("..data");
    let current = std::fs::read_link(&data_link).ok().map(|t| dir.join(t));
    if let Some(cur) = &current {
        if same_content(cur, files) {
            return Ok(false);
        }
    }
    let stamp = format!(
        "..{}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0)
    );
    let fresh = dir.join(&stamp);
    std::fs::create_dir_all(&fresh)?;
    std::fs::set_permissions(&fresh, std::fs::Permissions::from_mode(0o755))?;
    for (path, (content, mode)) in files {
        let target = fresh.join(path);
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(&target, content)?;
        std::fs::set_permissions(&target, std::fs::Permissions::from_mode(*mode & 0o7777))?;
    }
    let tmp_link = dir.join("..data_tmp");
    let _ = std::fs::remove_file(&tmp_link);
    std::os::unix::fs::symlink(&stamp, &tmp_link)?;
    std::fs::rename(&tmp_link, &data_link)?;
    let top: std::collections::BTreeSet<String> = files
        .keys()
        .filter_map(|p| p.split('/').next().map(str::to_string))
        .collect();
    for name in &top {
        let link = dir.join(name);
        if std::fs::symlink_metadata(&link).is_err() {
            std::os::unix::fs::symlink(format!("..data/{name}"), &link)?;
        }
    }
    for entry in std::fs::read_dir(dir)?.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with("..") {
            if name != "..data" && name != stamp {
                let _ = std::fs::remove_dir_all(entry.path());
            }
        } else if !top.contains(&name) {
            let _ = std::fs::remove_file(entry.path());
        }
    }
    Ok(true)
}

fn same_content(dir: &Path, files: &Files) -> bool {
    let mut count = 0;
    let all_same = files.iter().all(|(path, (content, mode))| {
        let p = dir.join(path);
        let meta = std::fs::metadata(&p);
        count += 1;
        std::fs::read(&p).is_ok_and(|c| &c == content)
            && meta.is_ok_and(|m| m.permissions().mode() & 0o7777 == *mode & 0o7777)
    });
    all_same && count_files(dir) == count
}

fn count_files(dir: &Path) -> usize {
    std::fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .map(|e| {
                    if e.file_type().is_ok_and(|t| t.is_dir()) {
                        count_files(&e.path())
                    } else {
                        1
                    }
                })
                .sum()
        })
        .unwrap_or(0)
}

fn c_path(path: &Path) -> std::io::Result<std::ffi::CString> {
    use std::os::unix::ffi::OsStrExt;
    std::ffi::CString::new(path.as_os_str().as_bytes())
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::InvalidInput, "NUL in path"))
}

fn mount_tmpfs(path: &Path, options: &str) -> std::io::Result<()> {
    let target = c_path(path)?;
    let source = std::ffi::CString::new("tmpfs").expect("static");
    let data = std::ffi::CString::new(options)
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::InvalidInput, "NUL in options"))?;
    // SAFETY: every pointer is a valid NUL-terminated string that outlives the call.
    let rc = unsafe {
        libc::mount(
            source.as_ptr(),
            target.as_ptr(),
            source.as_ptr(),
            libc::MS_NOSUID | libc::MS_NODEV,
            data.as_ptr().cast(),
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

fn is_mount_point(path: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (
        std::fs::metadata(path),
        path.parent().map(std::fs::metadata),
    ) {
        (Ok(m), Some(Ok(p))) => m.dev() != p.dev(),
        _ => false,
    }
}

/// Unmounts every mount point below `dir` (tmpfs emptyDirs) and removes the directory.
pub fn tear_down(dir: &Path) {
    let prefix = format!("{}/", dir.display());
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let mut points: Vec<String> = mounts
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .filter(|p| p.starts_with(&prefix))
        .map(str::to_string)
        .collect();
    points.sort_by_key(|p| std::cmp::Reverse(p.len()));
    for p in points {
        if let Ok(c) = std::ffi::CString::new(p.clone()) {
            // SAFETY: `c` is a valid NUL-terminated path.
            let rc = unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) };
            if rc != 0 {
                tracing::warn!(path = %p, error = %std::io::Error::last_os_error(), "cannot unmount");
            }
        }
    }
    if let Err(e) = std::fs::remove_dir_all(dir) {
        if e.kind() != std::io::ErrorKind::NotFound {
            tracing::warn!(dir = %dir.display(), error = %e, "cannot remove the pod directory");
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn tokens_are_refreshed_at_eighty_percent_of_their_lifetime_or_a_day() {
        use super::requires_refresh;
        use std::time::{Duration, SystemTime};
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let hour = Duration::from_secs(3600);
        assert!(!requires_refresh(t0, t0 + hour, t0));
        assert!(!requires_refresh(t0, t0 + hour, t0 + hour * 79 / 100));
        assert!(requires_refresh(t0, t0 + hour, t0 + hour * 80 / 100));
        assert!(requires_refresh(t0, t0 + hour, t0 + hour));
        let week = hour * 24 * 7;
        assert!(!requires_refresh(t0, t0 + week, t0 + hour * 23));
        assert!(requires_refresh(t0, t0 + week, t0 + hour * 24));
    }

    use super::*;

    #[test]
    fn atomic_writer_swaps_files_and_keeps_modes() {
        let dir = std::env::temp_dir().join(format!("kubelab-atomic-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let mut files = Files::new();
        files.insert("a".into(), (b"one".to_vec(), 0o600));
        files.insert("sub/b".into(), (b"two".to_vec(), 0o644));
        assert!(write_atomic_dir(&dir, &files).unwrap());
        assert!(!write_atomic_dir(&dir, &files).unwrap());
        assert_eq!(std::fs::read(dir.join("a")).unwrap(), b"one");
        assert_eq!(std::fs::read(dir.join("sub/b")).unwrap(), b"two");
        assert_eq!(
            std::fs::metadata(dir.join("a"))
                .unwrap()
                .permissions()
                .mode()
                & 0o777,
            0o600
        );
        files.insert("a".into(), (b"uno".to_vec(), 0o600));
        files.remove("sub/b");
        assert!(write_atomic_dir(&dir, &files).unwrap());
        assert_eq!(std::fs::read(dir.join("a")).unwrap(), b"uno");
        assert!(!dir.join("sub").exists());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
