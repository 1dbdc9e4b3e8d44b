//! Merging a cluster's credentials into the user's kubeconfig, and taking them out again.
//!
//! The file is `$KUBECONFIG`'s first entry, else `~/.kube/config`. Every change happens under
//! `<file>.lock` (created exclusively, as client-go and kind do) with retries, so concurrent
//! `kubelab up` runs both land; the file is replaced atomically with mode 0600. The cluster,
//! user and context are all named `kubelab-<cluster>`; entries of other tools are kept as they
//! are (the file is edited as a YAML tree, unknown fields included).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_yaml::{Mapping, Value};

use crate::{Error, Result};

/// The name of a cluster's context, cluster and user entries.
pub fn entry_name(cluster: &str) -> String {
    format!("kubelab-{cluster}")
}

/// The kubeconfig file kubelab edits: the first path of `$KUBECONFIG`, else `~/.kube/config`.
pub fn default_path() -> PathBuf {
    if let Some(list) = std::env::var_os("KUBECONFIG") {
        if let Some(first) = std::env::split_paths(&list).find(|p| !p.as_os_str().is_empty()) {
            return first;
        }
    }
    let home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/root"));
    home.join(".kube").join("config")
}

/// The entries to merge for one cluster.
#[derive(Clone, Debug)]
pub struct Entry {
    pub name: String,
    pub server: String,
    /// base64 of the CA PEM.
    pub ca_data: String,
    /// base64 of the client certificate PEM.
    pub cert_data: String,
    /// base64 of the client key PEM.
    pub key_data: String,
}

impl Entry {
    /// The entry for `cluster` from a single-cluster kubeconfig (as `kubelab server` writes
    /// them), pointed at `server`.
    pub fn from_kubeconfig(cluster: &str, yaml: &str, server: &str) -> Result<Entry> {
        let invalid = |reason: &str| Error::Kubeconfig {
            path: PathBuf::from("admin.kubeconfig"),
            reason: reason.to_owned(),
        };
        let doc: Value = serde_yaml::from_str(yaml).map_err(|e| invalid(&e.to_string()))?;
        let first = |list: &str, field: &str| -> Option<Value> {
            doc.get(list)?.as_sequence()?.first()?.get(field).cloned()
        };
        let cluster_entry = first("clusters", "cluster").ok_or_else(|| invalid("no cluster"))?;
        let user_entry = first("users", "user").ok_or_else(|| invalid("no user"))?;
        let text = |v: &Value, key: &str| -> Result<String> {
            v.get(key)
                .and_then(Value::as_str)
                .map(str::to_owned)
                .ok_or_else(|| invalid(&format!("no {key}")))
        };
        Ok(Entry {
            name: entry_name(cluster),
            server: server.to_owned(),
            ca_data: text(&cluster_entry, "certificate-authority-data")?,
            cert_data: text(&user_entry, "client-certificate-data")?,
            key_data: text(&user_entry, "client-key-data")?,
        })
    }

    /// A kubeconfig holding only this entry, as current context.
    pub fn standalone_yaml(&self) -> String {
        let mut doc = empty();
        upsert(&mut doc, self, true);
        serde_yaml::to_string(&doc).expect("a YAML tree serializes")
    }
}

fn empty() -> Value {
    let mut m = Mapping::new();
    m.insert("apiVersion".into(), "v1".into());
    m.insert("kind".into(), "Config".into());
    m.insert("clusters".into(), Value::Sequence(vec![]));
    m.insert("contexts".into(), Value::Sequence(vec![]));
    m.insert("users".into(), Value::Sequence(vec![]));
    m.insert("current-context".into(), "".into());
    m.insert("preferences".into(), Value::Mapping(Mapping::new()));
    Value::Mapping(m)
}

fn named(name: &str, key: &str, body: Mapping) -> Value {
    let mut m = Mapping::new();
    m.insert("name".into(), name.into());
    m.insert(key.into(), Value::Mapping(body));
    Value::Mapping(m)
}

fn set_named(doc: &mut Value, list: &str, item: Value) {
    let name = item.get("name").cloned();
    let map = doc.as_mapping_mut().expect("a kubeconfig is a mapping");
    let seq = map
        .entry(list.into())
        .or_insert_with(|| Value::Sequence(vec![]));
    if !seq.is_sequence() {
        *seq = Value::Sequence(vec![]);
    }
    let seq = seq.as_sequence_mut().expect("just made a sequence");
    match seq.iter_mut().find(|e| e.get("name") == name.as_ref()) {
        Some(existing) => *existing = item,
        None => seq.push(item),
    }
}

fn remove_named(doc: &mut Value, list: &str, name: &str) -> bool {
    let Some(seq) = doc.get_mut(list).and_then(Value::as_sequence_mut) else {
        return false;
    };
    let before = seq.len();
    seq.retain(|e| e.get("name").and_then(Value::as_str) != Some(name));
    before != seq.len()
}

/// Puts the entry's cluster, user and context into `doc`; makes it current when `switch`.
fn upsert(doc: &mut Value, entry: &Entry, switch: bool) {
    let mut cluster = Mapping::new();
    cluster.insert("server".into(), entry.server.clone().into());
    cluster.insert(
        "certificate-authority-data".into(),
        entry.ca_data.clone().into(),
    );
    set_named(doc, "clusters", named(&entry.name, "cluster", cluster));
    let mut user = Mapping::new();
    user.insert(
        "client-certificate-data".into(),
        entry.cert_data.clone().into(),
    );
    user.insert("client-key-data".into(), entry.key_data.clone().into());
    set_named(doc, "users", named(&entry.name, "user", user));
    let mut context = Mapping::new();
    context.insert("cluster".into(), entry.name.clone().into());
    context.insert("user".into(), entry.name.clone().into());
    set_named(doc, "contexts", named(&entry.name, "context", context));
    if switch {
        if let Some(map) = doc.as_mapping_mut() {
            map.insert("current-context".into(), entry.name.clone().into());
        }
    }
}

/// Merges `entry` into the kubeconfig at `path` (created if missing).
pub fn merge(path: &Path, entry: &Entry, switch_context: bool) -> Result<()> {
    edit(path, |doc| {
        upsert(doc, entry, switch_context);
        true
    })
}

/// Removes the `kubelab-<cluster>` entries from the kubeconfig at `path`; clears the current
/// context when it was this cluster's. Returns whether anything was removed.
pub fn remove(path: &Path, cluster: &str) -> Result<bool> {
    if !path.exists() {
        return Ok(false);
    }
    let name = entry_name(cluster);
    let mut removed = false;
    edit(path, |doc| {
        removed |= remove_named(doc, "clusters", &name);
        removed |= remove_named(doc, "users", &name);
        removed |= remove_named(doc, "contexts", &name);
        if doc.get("current-context").and_then(Value::as_str) == Some(name.as_str()) {
            if let Some(map) = doc.as_mapping_mut() {
                map.insert("current-context".into(), "".into());
            }
            removed = true;
        }
        removed
    })?;
    Ok(removed)
}

/// Whether the kubeconfig at `path` has a context for this cluster.
pub fn has_entry(path: &Path, cluster: &str) -> bool {
    let Ok(text) = std::fs::read_to_string(path) else {
        return false;
    };
    let Ok(doc) = serde_yaml::from_str::<Value>(&text) else {
        return false;
    };
    let name = entry_name(cluster);
    doc.get("contexts")
        .and_then(Value::as_sequence)
        .is_some_and(|s| {
            s.iter()
                .any(|e| e.get("name").and_then(Value::as_str) == Some(name.as_str()))
        })
}

/// Reads, edits and atomically rewrites `path` under its lock; `change` returns whether it
/// changed anything.
fn edit(path: &Path, change: impl FnOnce(&mut Value) -> bool) -> Result<()> {
    let _lock = Lock::acquire(path)?;
    let mut doc = match std::fs::read_to_string(path) {
        Ok(text) if !text.trim().is_empty() => {
            serde_yaml::from_str::<Value>(&text).map_err(|e| Error::Kubeconfig {
                path: path.to_owned(),
                reason: format!("not valid YAML: {e}"),
            })?
        }
        Ok(_) => empty(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => empty(),
        Err(e) => return Err(Error::io("read", path, e)),
    };
    if !doc.is_mapping() {
        return Err(Error::Kubeconfig {
            path: path.to_owned(),
            reason: "not a kubeconfig (the top level is not a mapping)".into(),
        });
    }
    if !change(&mut doc) {
        return Ok(());
    }
    let text = serde_yaml::to_string(&doc).map_err(|e| Error::Kubeconfig {
        path: path.to_owned(),
        reason: e.to_string(),
    })?;
    write_private(path, text.as_bytes())
}

/// Writes `path` atomically (temporary file in the same directory, then rename), mode 0600.
pub fn write_private(path: &Path, content: &[u8]) -> Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(|e| Error::io("create directory", dir, e))?;
    let tmp = dir.join(format!(
        ".{}.kubelab-{}.tmp",
        path.file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("kubeconfig"),
        std::process::id()
    ));
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(|e| Error::io("create", &tmp, e))?;
    file.write_all(content)
        .and_then(|()| file.sync_all())
        .map_err(|e| Error::io("write", &tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| Error::io("replace", path, e))
}

/// `<file>.lock`, held while it exists.
struct Lock {
    path: PathBuf,
}

impl Lock {
    const WAIT: Duration = Duration::from_secs(20);
    /// A lock file older than this is left over by a killed process.
    const STALE: Duration = Duration::from_secs(60);

    fn acquire(kubeconfig: &Path) -> Result<Lock> {
        let mut name = kubeconfig.as_os_str().to_owned();
        name.push(".lock");
        let path = PathBuf::from(name);
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| Error::io("create directory", dir, e))?;
        }
        let deadline = Instant::now() + Self::WAIT;
        let mut pause = Duration::from_millis(10);
        loop {
            match std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&path)
            {
                Ok(mut file) => {
                    use std::io::Write;
                    let _ = writeln!(file, "{}", std::process::id());
                    return Ok(Lock { path });
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    let stale = std::fs::metadata(&path)
                        .and_then(|m| m.modified())
                        .ok()
                        .and_then(|t| t.elapsed().ok())
                        .is_some_and(|age| age > Self::STALE);
                    if stale {
                        tracing::warn!(lock = %path.display(), "removing a stale kubeconfig lock");
                        let _ = std::fs::remove_file(&path);
                        continue;
                    }
                    if Instant::now() >= deadline {
                        return Err(Error::KubeconfigLocked {
                            path: kubeconfig.to_owned(),
                            lock: path,
                        });
                    }
                    // Jitter keeps concurrent writers from retrying in lockstep.
                    let jitter = Duration::from_millis(rand::random::<u64>() % 10);
                    std::thread::sleep(pause + jitter);
                    pause = (pause * 2).min(Duration::from_millis(200));
                }
                Err(e) => return Err(Error::io("create", &path, e)),
            }
        }
    }
}

impl Drop for Lock {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(name: &str, port: u16) -> Entry {
        Entry {
            name: entry_name(name),
            server: format!("https://127.0.0.1:{port}"),
            ca_data: "Q0E=".into(),
            cert_data: "Q0VSVA==".into(),
            key_data: "S0VZ".into(),
        }
    }

    #[test]
    fn merge_keeps_other_entries_and_switches_context() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config");
        std::fs::write(
            &path,
            "apiVersion: v1\nkind: Config\nclusters:\n- name: other\n  cluster:\n    server: https://x\n    insecure-skip-tls-verify: true\ncontexts:\n- name: other\n  context: {cluster: other, user: other}\nusers:\n- name: other\n  user: {token: abc}\ncurrent-context: other\n",
        )
        .unwrap();
        merge(&path, &entry("a", 1000), true).unwrap();
        merge(&path, &entry("b", 2000), false).unwrap();
        merge(&path, &entry("a", 1001), true).unwrap();
        let doc: Value = serde_yaml::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        let names = |list: &str| -> Vec<String> {
            doc[list]
                .as_sequence()
                .unwrap()
                .iter()
                .map(|e| e["name"].as_str().unwrap().to_owned())
                .collect()
        };
        assert_eq!(names("clusters"), ["other", "kubelab-a", "kubelab-b"]);
        assert_eq!(names("users"), ["other", "kubelab-a", "kubelab-b"]);
        assert_eq!(doc["current-context"].as_str(), Some("kubelab-a"));
        assert_eq!(
            doc["clusters"][1]["cluster"]["server"].as_str(),
            Some("https://127.0.0.1:1001")
        );
        assert_eq!(
            doc["clusters"][0]["cluster"]["insecure-skip-tls-verify"].as_bool(),
            Some(true)
        );
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert!(has_entry(&path, "b"));

        assert!(remove(&path, "a").unwrap());
        let doc: Value = serde_yaml::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        assert_eq!(doc["current-context"].as_str(), Some(""));
        assert_eq!(doc["contexts"].as_sequence().unwrap().len(), 2);
        assert!(!has_entry(&path, "a"));
        assert!(!remove(&path, "a").unwrap());
        assert!(!path.with_extension("lock").exists());
    }

    #[test]
    fn concurrent_merges_all_land() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config");
        let handles: Vec<_> = (0..8)
            .map(|i| {
                let path = path.clone();
                std::thread::spawn(move || {
                    merge(&path, &entry(&format!("c{i}"), 1000 + i), true).unwrap()
                })
            })
            .collect();
        for h in handles {
            h.join().unwrap();
        }
        for i in 0..8 {
            assert!(has_entry(&path, &format!("c{i}")), "c{i} missing");
        }
    }

    #[test]
    fn entry_from_a_server_kubeconfig() {
        let yaml = "apiVersion: v1\nkind: Config\nclusters:\n- name: kubelab\n  cluster:\n    server: https://10.0.0.2:6443\n    certificate-authority-data: Q0E=\ncontexts:\n- name: kubelab\n  context: {cluster: kubelab, user: kubelab-admin}\nusers:\n- name: kubelab-admin\n  user:\n    client-certificate-data: Q0VSVA==\n    client-key-data: S0VZ\ncurrent-context: kubelab\npreferences: {}\n";
        let e = Entry::from_kubeconfig("lab", yaml, "https://127.0.0.1:5000").unwrap();
        assert_eq!(e.name, "kubelab-lab");
        assert_eq!(e.server, "https://127.0.0.1:5000");
        assert_eq!(e.ca_data, "Q0E=");
        assert!(e.standalone_yaml().contains("current-context: kubelab-lab"));
    }
}
