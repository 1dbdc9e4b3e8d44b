//! Where kubelab keeps things on the host: only caches (the clusters' state is in the engine).

use std::path::PathBuf;

/// `$XDG_CACHE_HOME/kubelab`, or `~/.cache/kubelab`, or a directory under the temp dir.
pub fn cache_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("KUBELAB_CACHE_DIR") {
        return PathBuf::from(dir);
    }
    if let Some(dir) = std::env::var_os("XDG_CACHE_HOME").filter(|d| !d.is_empty()) {
        return PathBuf::from(dir).join("kubelab");
    }
    match std::env::var_os("HOME").filter(|d| !d.is_empty()) {
        Some(home) => PathBuf::from(home).join(".cache").join("kubelab"),
        None => std::env::temp_dir().join("kubelab-cache"),
    }
}
