//! Key rotation and re-encryption, k3s-style (`kubelab secrets status|rotate`), run by the API
//! server on its own store and configuration file.
//!
//! `rotate`: (1) a new key (32 random bytes, named `<provider>key-<UTC time>`) becomes the first
//! key of the provider that encrypts Secrets, the old ones stay as readers; the file is written
//! (atomically, 0600) and loaded; (2) every value of that entry's resources not already under the
//! new key is rewritten (decrypted with whichever key reads it, encrypted with the new one),
//! then checked again until a pass finds nothing to do; (3) the store's history is compacted so
//! no older row holds a value under the old key; (4) the old keys are dropped from the file.
//!
//! Interrupt-safe: every step is idempotent and the file says where a rotation stands — a
//! keyed provider list with more than one key is a rotation that has not finished, and
//! `rotate` then resumes it (re-encrypt, compact, drop) instead of adding another key.
//! `reencrypt` is steps 2 and 3 with the keys as they are (after enabling or disabling
//! encryption by editing the file).

use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use kubelab_store::{Revision, Store};
use rand::RngCore;
use serde::Serialize;

use super::config::{EncryptionConfiguration, Key};
use super::transformer::{envelope_of, ProviderKind};
use super::{store::group_resource, Encryption, EncryptionError};

/// Values listed per store read while re-encrypting.
const PAGE: usize = 500;
/// Tries of one value's rewrite against concurrent writers.
const REWRITE_TRIES: usize = 16;

#[derive(Debug, thiserror::Error)]
pub enum RotationError {
    #[error(transparent)]
    Config(#[from] EncryptionError),
    #[error("{0}")]
    NotEnabled(String),
    #[error("store: {0}")]
    Store(#[from] kubelab_store::Error),
}

/// What `kubelab secrets status` shows.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Status {
    /// `Enabled` when Secrets are written encrypted, else `Disabled`.
    pub encryption_status: String,
    /// `start` (one key), `reencrypt_active` (a rotation running here), `reencrypt_pending`
    /// (several keys or values not under the write key: run `rotate`), `reencrypt_finished`.
    pub stage: String,
    pub config_path: String,
    pub config_hash: String,
    /// Why the file on disk is not in force, when it is not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reload_error: Option<String>,
    /// Providers and keys that encrypt Secrets, in order (`aescbc:key1`); the first writes.
    pub keys: Vec<String>,
    pub secrets: usize,
    /// Secrets by envelope (`aescbc:key1`, `identity`).
    pub secrets_by_key: std::collections::BTreeMap<String, usize>,
    /// Values of the Secrets' entry not written by the write key.
    pub pending: usize,
}

/// What a rotation or re-encryption did.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Report {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub new_key: Option<String>,
    pub resumed: bool,
    pub reencrypted: usize,
    pub dropped_keys: Vec<String>,
    pub compacted_revision: Revision,
}

pub struct Rotator {
    /// The store *under* the encryption layer: values as stored.
    store: Arc<dyn Store>,
    encryption: Arc<Encryption>,
    running: tokio::sync::Mutex<()>,
}

/// Index of the first entry naming Secrets.
fn secrets_entry(config: &EncryptionConfiguration) -> Option<usize> {
    config.resources.iter().position(|entry| {
        entry.resources.iter().any(|r| {
            super::config::ResourceMatcher::parse(r).is_ok_and(|m| m.matches("", "secrets"))
        })
    })
}

/// Keyed keys of an entry in order, as `provider:name`.
fn key_names(config: &EncryptionConfiguration, entry: usize) -> Vec<String> {
    config.resources[entry]
        .providers
        .iter()
        .filter_map(|p| p.kind_and_keys())
        .flat_map(|(kind, keys)| {
            keys.iter()
                .map(move |k| format!("{}:{}", kind.name(), k.name))
        })
        .collect()
}

fn first_kind(config: &EncryptionConfiguration, entry: usize) -> Option<ProviderKind> {
    config.resources[entry]
        .providers
        .first()
        .and_then(|p| p.kind_and_keys())
        .map(|(kind, _)| kind)
}

/// A new 32-byte key, base64 as the file holds it.
fn random_key() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

fn identity() -> super::config::ProviderConfiguration {
    super::config::ProviderConfiguration {
        identity: Some(super::config::IdentityConfiguration {}),
        ..Default::default()
    }
}

/// Write the file so that a reader sees the old or the new one, never a part; 0600.
pub fn write_config_file(
    path: &std::path::Path,
    config: &EncryptionConfiguration,
) -> Result<(), EncryptionError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let failed = |source| EncryptionError::Write {
        path: path.to_owned(),
        source,
    };
    let mut text =
        serde_json::to_string_pretty(config).map_err(|e| failed(std::io::Error::other(e)))?;
    text.push('\n');
    let tmp = path.with_extension("kubelab-tmp");
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(failed)?;
    file.write_all(text.as_bytes()).map_err(failed)?;
    file.sync_all().map_err(failed)?;
    drop(file);
    std::fs::rename(&tmp, path).map_err(failed)?;
    if let Some(dir) = path.parent() {
        if let Ok(dir) = std::fs::File::open(dir) {
            let _ = dir.sync_all();
        }
    }
    Ok(())
}

impl Rotator {
    pub fn new(store: Arc<dyn Store>, encryption: Arc<Encryption>) -> Rotator {
        Rotator {
            store,
            encryption,
            running: tokio::sync::Mutex::new(()),
        }
    }

    pub async fn status(&self) -> Result<Status, RotationError> {
        let _ = self.encryption.reload();
        let loaded = self.encryption.current();
        let entry = secrets_entry(&loaded.config);
        let keys = entry
            .map(|e| key_names(&loaded.config, e))
            .unwrap_or_default();
        let transformers = loaded.transformers("", "secrets").cloned();
        let enabled = entry
            .and_then(|e| first_kind(&loaded.config, e))
            .is_some_and(|k| k != ProviderKind::Identity);
        let mut secrets_by_key = std::collections::BTreeMap::new();
        let mut secrets = 0;
        let mut pending = 0;
        let mut start_after: Option<String> = None;
        loop {
            let page = self
                .store
                .list("/registry/core/secrets/", start_after.as_deref(), PAGE)
                .await?;
            for kv in &page.items {
                secrets += 1;
                let envelope = transformers
                    .as_ref()
                    .and_then(|t| {
                        t.list()
                            .iter()
                            .find(|p| !p.prefix().is_empty() && kv.value.starts_with(p.prefix()))
                            .map(|p| format!("{}:{}", p.kind().name(), p.key_name()))
                    })
                    .unwrap_or_else(|| envelope_of(&kv.value));
                *secrets_by_key.entry(envelope).or_insert(0) += 1;
                if transformers
                    .as_ref()
                    .is_some_and(|t| !t.written_by_writer(&kv.value))
                {
                    pending += 1;
                }
            }
            if !page.more {
                break;
            }
            start_after = page.items.last().map(|kv| kv.key.clone());
        }
        let stage = if self.running.try_lock().is_err() {
            "reencrypt_active"
        } else if pending > 0 || keys.len() > 1 {
            "reencrypt_pending"
        } else if keys.len() == 1 && enabled {
            "reencrypt_finished"
        } else {
            "start"
        };
        Ok(Status {
            encryption_status: if enabled { "Enabled" } else { "Disabled" }.into(),
            stage: stage.into(),
            config_path: self.encryption.path().display().to_string(),
            config_hash: loaded.hash.clone(),
            reload_error: self.encryption.reload_error(),
            keys,
            secrets,
            secrets_by_key,
            pending,
        })
    }

    /// Add a key, re-encrypt, drop the old keys; or finish a rotation that was interrupted.
    /// `rate` caps re-encryptions per second (0: as fast as the store writes).
    pub async fn rotate(&self, rate: u32) -> Result<Report, RotationError> {
        let _running = self.running.lock().await;
        let _ = self.encryption.reload();
        let mut config = self.encryption.current().config.clone();
        let entry = secrets_entry(&config).ok_or_else(|| {
            RotationError::NotEnabled(
                "no entry of the encryption configuration names secrets: enable encryption first (the secret-encryption addon)".into(),
            )
        })?;
        let kind = first_kind(&config, entry)
            .filter(|k| *k != ProviderKind::Identity)
            .ok_or_else(|| {
                RotationError::NotEnabled(
                    "secrets are written unencrypted (identity is the first provider): enable encryption first".into(),
                )
            })?;
        let resumed = key_names(&config, entry).len() > 1;
        let mut new_key = None;
        if !resumed {
            let name = format!(
                "{}key-{}",
                kind.name(),
                jiff::Timestamp::now().strftime("%Y%m%dT%H%M%SZ")
            );
            let keys = config.resources[entry].providers[0]
                .keys_mut()
                .expect("a keyed provider");
            keys.insert(
                0,
                Key {
                    name: name.clone(),
                    secret: random_key(),
                },
            );
            write_config_file(self.encryption.path(), &config)?;
            self.encryption.reload()?;
            tracing::info!(key = %name, "encryption key rotation: new write key in force");
            new_key = Some(name);
        } else {
            tracing::info!("encryption key rotation: resuming an unfinished rotation");
        }
        let reencrypted = self.reencrypt_entry(entry, rate).await?;
        let compacted_revision = self.store.compact(self.store.current_revision()).await?;
        // Only now that no value needs them: drop every key but the write key.
        let mut config = self.encryption.current().config.clone();
        let before = key_names(&config, entry);
        let providers = &mut config.resources[entry].providers;
        let mut first = providers.remove(0);
        if let Some(keys) = first.keys_mut() {
            keys.truncate(1);
        }
        // Other keyed providers read nothing any more; identity stays (as k3s keeps it).
        providers.retain(|p| p.is_keyless());
        providers.insert(0, first);
        let after = key_names(&config, entry);
        let dropped_keys: Vec<String> = before.into_iter().filter(|k| !after.contains(k)).collect();
        if !dropped_keys.is_empty() {
            write_config_file(self.encryption.path(), &config)?;
            self.encryption.reload()?;
        }
        tracing::info!(
            reencrypted,
            ?dropped_keys,
            "encryption key rotation finished"
        );
        Ok(Report {
            new_key,
            resumed,
            reencrypted,
            dropped_keys,
            compacted_revision,
        })
    }

    /// Turn encryption of Secrets on (the `secret-encryption` addon): a keyed provider becomes
    /// the writer — the one already in the file if encryption was on before, else a new
    /// 32-byte aescbc key — identity stays as a reader; then every Secret is re-encrypted.
    /// Running it again when on only finishes the re-encryption.
    pub async fn enable(&self, rate: u32) -> Result<Report, RotationError> {
        let _running = self.running.lock().await;
        let _ = self.encryption.reload();
        let mut config = self.encryption.current().config.clone();
        let entry = match secrets_entry(&config) {
            Some(entry) => entry,
            None => {
                config.resources.insert(
                    0,
                    super::config::ResourceConfiguration {
                        resources: vec!["secrets".into()],
                        providers: vec![identity()],
                    },
                );
                0
            }
        };
        let providers = &mut config.resources[entry].providers;
        let mut new_key = None;
        let changed = if !providers[0].is_keyless() {
            false
        } else if let Some(keyed) = providers.iter().position(|p| !p.is_keyless()) {
            let keyed = providers.remove(keyed);
            providers.insert(0, keyed);
            true
        } else {
            let name = format!(
                "aescbckey-{}",
                jiff::Timestamp::now().strftime("%Y%m%dT%H%M%SZ")
            );
            providers.insert(
                0,
                super::config::ProviderConfiguration {
                    aescbc: Some(super::config::KeysConfiguration {
                        keys: vec![Key {
                            name: name.clone(),
                            secret: random_key(),
                        }],
                    }),
                    ..Default::default()
                },
            );
            new_key = Some(name);
            true
        };
        if !providers.iter().any(|p| p.identity.is_some()) {
            providers.push(identity());
        }
        if changed {
            write_config_file(self.encryption.path(), &config)?;
            self.encryption.reload()?;
            tracing::info!("encryption of secrets enabled");
        }
        self.reencrypt_and_compact(entry, rate, new_key, !changed)
            .await
    }

    /// Turn encryption of Secrets off: identity becomes the writer (the keys stay as readers,
    /// so `enable` takes them back), then every Secret is rewritten in plain.
    pub async fn disable(&self, rate: u32) -> Result<Report, RotationError> {
        let _running = self.running.lock().await;
        let _ = self.encryption.reload();
        let mut config = self.encryption.current().config.clone();
        let Some(entry) = secrets_entry(&config) else {
            return Err(RotationError::NotEnabled(
                "no entry of the encryption configuration names secrets: they are not encrypted"
                    .into(),
            ));
        };
        let providers = &mut config.resources[entry].providers;
        let changed = !providers[0].is_keyless();
        if changed {
            let position = providers.iter().position(|p| p.identity.is_some());
            let identity = position.map_or_else(identity, |i| providers.remove(i));
            providers.insert(0, identity);
            write_config_file(self.encryption.path(), &config)?;
            self.encryption.reload()?;
            tracing::info!("encryption of secrets disabled");
        }
        self.reencrypt_and_compact(entry, rate, None, !changed)
            .await
    }

    /// Rewrite every value of the Secrets' entry that the write key did not write, with the
    /// keys as they are; then compact the history.
    pub async fn reencrypt(&self, rate: u32) -> Result<Report, RotationError> {
        let _running = self.running.lock().await;
        let _ = self.encryption.reload();
        let config = self.encryption.current().config.clone();
        let entry = secrets_entry(&config).ok_or_else(|| {
            RotationError::NotEnabled(
                "no entry of the encryption configuration names secrets".into(),
            )
        })?;
        self.reencrypt_and_compact(entry, rate, None, false).await
    }

    /// Re-encrypts the entry's values under the write key, then compacts the history so no
    /// older row keeps another envelope.
    async fn reencrypt_and_compact(
        &self,
        entry: usize,
        rate: u32,
        new_key: Option<String>,
        resumed: bool,
    ) -> Result<Report, RotationError> {
        let reencrypted = self.reencrypt_entry(entry, rate).await?;
        let compacted_revision = self.store.compact(self.store.current_revision()).await?;
        Ok(Report {
            new_key,
            resumed,
            reencrypted,
            dropped_keys: vec![],
            compacted_revision,
        })
    }

    /// Passes over the whole store until one finds nothing to rewrite in the entry's resources.
    async fn reencrypt_entry(&self, entry: usize, rate: u32) -> Result<usize, RotationError> {
        let interval = (rate > 0).then(|| Duration::from_secs_f64(1.0 / rate as f64));
        let mut total = 0;
        loop {
            let mut rewritten = 0;
            let mut start_after: Option<String> = None;
            loop {
                let page = self
                    .store
                    .list("/registry/", start_after.as_deref(), PAGE)
                    .await?;
                for kv in &page.items {
                    if self.rewrite_if_stale(entry, &kv.key).await? {
                        rewritten += 1;
                        if let Some(interval) = interval {
                            tokio::time::sleep(interval).await;
                        }
                    }
                }
                if !page.more {
                    break;
                }
                start_after = page.items.last().map(|kv| kv.key.clone());
            }
            total += rewritten;
            if rewritten == 0 {
                return Ok(total);
            }
        }
    }

    /// Rewrite one key's value under the write key when it is in the entry and not already
    /// there. Returns whether it wrote.
    async fn rewrite_if_stale(&self, entry: usize, key: &str) -> Result<bool, RotationError> {
        let Some((group, resource)) = group_resource(key) else {
            return Ok(false);
        };
        for _ in 0..REWRITE_TRIES {
            let loaded = self.encryption.current();
            if loaded.rule_index(group, resource) != Some(entry) {
                return Ok(false);
            }
            let Some(transformers) = loaded.transformers(group, resource) else {
                return Ok(false);
            };
            let Some(kv) = self.store.get(key).await? else {
                return Ok(false);
            };
            if transformers.written_by_writer(&kv.value) {
                return Ok(false);
            }
            let plain = transformers.from_storage(&kv.value, key).map_err(|e| {
                kubelab_store::Error::Transform {
                    key: key.to_owned(),
                    message: e.to_string(),
                }
            })?;
            let sealed = transformers
                .to_storage(&plain.plaintext, key)
                .map_err(|e| kubelab_store::Error::Transform {
                    key: key.to_owned(),
                    message: e.to_string(),
                })?;
            match self.store.update(key, sealed, Some(kv.mod_revision)).await {
                Ok(_) => return Ok(true),
                // Written meanwhile (with the write key, or deleted): look again.
                Err(kubelab_store::Error::Conflict { .. }) => continue,
                Err(kubelab_store::Error::NotFound { .. }) => return Ok(false),
                Err(e) => return Err(e.into()),
            }
        }
        Err(RotationError::Store(kubelab_store::Error::Conflict {
            key: key.to_owned(),
            expected: 0,
            actual: 0,
        }))
    }
}
