//! Encryption at rest (`kubelab server --encryption-provider-config FILE`): upstream's
//! EncryptionConfiguration, its value transformers and envelopes, applied around the store for
//! the configured resources, with the file reloaded when it changes.
//!
//! - `config.rs`: the file's types, validation, and the per-resource rules it compiles to.
//! - `transformer.rs`: aescbc, aesgcm, secretbox and identity with upstream's byte layouts;
//!   writes use the first provider's first key, reads any key whose envelope matches.
//! - `store.rs`: [`EncryptedStore`], the [`kubelab_store::Store`] layer doing it.
//! - `rotation.rs`, `endpoints.rs`: status, key rotation and re-encryption (`kubelab secrets`),
//!   served at `/v1-kubelab/encryption/...`.
//!
//! The file is polled every second; a file that no longer parses or validates is logged and
//! ignored (the last good configuration stays in force), as upstream's automatic reload does.

pub mod config;
mod endpoints;
pub mod rotation;
pub mod store;
pub mod transformer;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use sha2::Digest;

pub use config::EncryptionConfiguration;
pub use endpoints::router;
pub use store::EncryptedStore;
pub use transformer::Transformers;

/// How often the configuration file is checked for changes.
pub const RELOAD_INTERVAL: Duration = Duration::from_secs(1);

#[derive(Debug, thiserror::Error)]
pub enum EncryptionError {
    #[error("cannot read the encryption configuration {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot write the encryption configuration {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("invalid encryption configuration {path}: {reason}")]
    Invalid { path: PathBuf, reason: String },
}

/// A loaded configuration.
pub struct Loaded {
    pub config: EncryptionConfiguration,
    /// SHA-256 (hex) of the file's bytes.
    pub hash: String,
    rules: Vec<config::Rule>,
}

impl Loaded {
    fn parse(path: &Path, bytes: &[u8]) -> Result<Loaded, EncryptionError> {
        let invalid = |reason: String| EncryptionError::Invalid {
            path: path.to_owned(),
            reason,
        };
        let text = std::str::from_utf8(bytes).map_err(|e| invalid(e.to_string()))?;
        let config = config::parse(text).map_err(invalid)?;
        let rules = config::compile(&config).map_err(|errors| invalid(errors.join("; ")))?;
        Ok(Loaded {
            config,
            hash: hex(&sha2::Sha256::digest(bytes)),
            rules,
        })
    }

    /// Which entry of the file (= which rule: a loaded file has one per entry) names a
    /// resource.
    pub fn rule_index(&self, group: &str, resource: &str) -> Option<usize> {
        self.rules.iter().position(|r| r.matches(group, resource))
    }

    /// The transformers of a resource, when an entry names it.
    pub fn transformers(&self, group: &str, resource: &str) -> Option<&Arc<Transformers>> {
        self.rules
            .iter()
            .find(|r| r.matches(group, resource))
            .map(|r| &r.transformers)
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The configuration in force, and the file it comes from.
pub struct Encryption {
    path: PathBuf,
    current: RwLock<Arc<Loaded>>,
    /// Why the file on disk is not the one in force (None when it is).
    reload_error: Mutex<Option<String>>,
}

impl Encryption {
    /// Load the file; errors (missing, unparsable, invalid) stop the server from starting.
    pub fn load(path: &Path) -> Result<Encryption, EncryptionError> {
        let bytes = std::fs::read(path).map_err(|source| EncryptionError::Read {
            path: path.to_owned(),
            source,
        })?;
        let loaded = Loaded::parse(path, &bytes)?;
        Ok(Encryption {
            path: path.to_owned(),
            current: RwLock::new(Arc::new(loaded)),
            reload_error: Mutex::new(None),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The configuration in force.
    pub fn current(&self) -> Arc<Loaded> {
        self.current.read().expect("lock poisoned").clone()
    }

    /// Why the file on disk is not in force, if it is not.
    pub fn reload_error(&self) -> Option<String> {
        self.reload_error.lock().expect("lock poisoned").clone()
    }

    /// The transformers for a storage key's resource (None: stored as is).
    pub fn transformers_for(&self, storage_key: &str) -> Option<Arc<Transformers>> {
        let (group, resource) = store::group_resource(storage_key)?;
        self.current().transformers(group, resource).cloned()
    }

    /// Read the file again; a changed, valid file takes effect at once. Returns whether the
    /// configuration changed.
    pub fn reload(&self) -> Result<bool, EncryptionError> {
        let result = std::fs::read(&self.path)
            .map_err(|source| EncryptionError::Read {
                path: self.path.clone(),
                source,
            })
            .and_then(|bytes| {
                let hash = hex(&sha2::Sha256::digest(&bytes));
                if hash == self.current().hash {
                    return Ok(None);
                }
                Loaded::parse(&self.path, &bytes).map(Some)
            });
        let mut error = self.reload_error.lock().expect("lock poisoned");
        match result {
            Ok(None) => {
                *error = None;
                Ok(false)
            }
            Ok(Some(loaded)) => {
                *error = None;
                let hash = loaded.hash.clone();
                *self.current.write().expect("lock poisoned") = Arc::new(loaded);
                tracing::info!(path = %self.path.display(), %hash, "encryption configuration reloaded");
                Ok(true)
            }
            Err(e) => {
                let message = e.to_string();
                if error.as_deref() != Some(message.as_str()) {
                    tracing::error!(error = %message, "encryption configuration not reloaded; the previous one stays in force");
                }
                *error = Some(message);
                Err(e)
            }
        }
    }

    /// Poll the file every [`RELOAD_INTERVAL`] until the task is aborted.
    pub fn spawn_reloader(self: &Arc<Self>) -> tokio::task::JoinHandle<()> {
        let this = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(RELOAD_INTERVAL);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let this = this.clone();
                let _ = tokio::task::spawn_blocking(move || this.reload()).await;
            }
        })
    }
}
