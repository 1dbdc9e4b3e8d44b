//! [`EncryptedStore`]: a [`Store`] over another one that encrypts the values of the configured
//! resources on the way in and decrypts them on the way out (gets, lists, deletes, watch
//! events). Everything above it — registry, handlers, watch — sees plaintext; everything below
//! it (the SQLite rows, the in-memory index) holds the envelopes.

use std::sync::Arc;

use futures::StreamExt;
use kubelab_store::{Error, KeyValue, ListResult, Result, Revision, Store, WatchStream};

use super::Encryption;

pub struct EncryptedStore {
    inner: Arc<dyn Store>,
    encryption: Arc<Encryption>,
}

impl EncryptedStore {
    pub fn new(inner: Arc<dyn Store>, encryption: Arc<Encryption>) -> EncryptedStore {
        EncryptedStore { inner, encryption }
    }
}

/// The group and resource of a storage key `/registry/<group|core>/<resource>/...`.
pub fn group_resource(key: &str) -> Option<(&str, &str)> {
    let rest = key.strip_prefix("/registry/")?;
    let mut parts = rest.splitn(3, '/');
    let group = parts.next()?;
    let resource = parts.next()?;
    parts.next()?;
    Some((if group == "core" { "" } else { group }, resource))
}

fn transform_error(key: &str, e: impl std::fmt::Display) -> Error {
    Error::Transform {
        key: key.to_owned(),
        message: e.to_string(),
    }
}

/// Decrypt a key-value pair read from the inner store (in place).
fn open(encryption: &Encryption, kv: &mut KeyValue) -> Result<()> {
    let Some(transformers) = encryption.transformers_for(&kv.key) else {
        return Ok(());
    };
    let opened = transformers
        .from_storage(&kv.value, &kv.key)
        .map_err(|e| transform_error(&kv.key, e))?;
    kv.value = opened.plaintext;
    Ok(())
}

fn seal(encryption: &Encryption, key: &str, value: Vec<u8>) -> Result<Vec<u8>> {
    match encryption.transformers_for(key) {
        Some(transformers) => transformers
            .to_storage(&value, key)
            .map_err(|e| transform_error(key, e)),
        None => Ok(value),
    }
}

#[async_trait::async_trait]
impl Store for EncryptedStore {
    fn current_revision(&self) -> Revision {
        self.inner.current_revision()
    }

    fn compacted_revision(&self) -> Revision {
        self.inner.compacted_revision()
    }

    async fn get(&self, key: &str) -> Result<Option<KeyValue>> {
        let Some(mut kv) = self.inner.get(key).await? else {
            return Ok(None);
        };
        open(&self.encryption, &mut kv)?;
        Ok(Some(kv))
    }

    async fn list(
        &self,
        prefix: &str,
        start_after: Option<&str>,
        limit: usize,
    ) -> Result<ListResult> {
        let mut listed = self.inner.list(prefix, start_after, limit).await?;
        for kv in &mut listed.items {
            open(&self.encryption, kv)?;
        }
        Ok(listed)
    }

    async fn count(&self, prefix: &str) -> Result<usize> {
        self.inner.count(prefix).await
    }

    async fn create(&self, key: &str, value: Vec<u8>) -> Result<KeyValue> {
        let stored = seal(&self.encryption, key, value.clone())?;
        let mut kv = self.inner.create(key, stored).await?;
        kv.value = value;
        Ok(kv)
    }

    async fn update(
        &self,
        key: &str,
        value: Vec<u8>,
        expected: Option<Revision>,
    ) -> Result<KeyValue> {
        let stored = seal(&self.encryption, key, value.clone())?;
        let mut kv = self.inner.update(key, stored, expected).await?;
        kv.value = value;
        Ok(kv)
    }

    async fn delete(&self, key: &str, expected: Option<Revision>) -> Result<KeyValue> {
        let mut kv = self.inner.delete(key, expected).await?;
        open(&self.encryption, &mut kv)?;
        Ok(kv)
    }

    async fn watch(&self, prefix: &str, after: Revision) -> Result<WatchStream> {
        let encryption = self.encryption.clone();
        let mut events = self.inner.watch(prefix, after).await?;
        // The stream ends after its first error, as the trait promises.
        let mut failed = false;
        let stream = futures::stream::poll_fn(move |cx| {
            if failed {
                return std::task::Poll::Ready(None);
            }
            let item = futures::ready!(events.poll_next_unpin(cx)).map(|event| {
                let mut event = event?;
                open(&encryption, &mut event.kv)?;
                if let Some(prev) = &mut event.prev {
                    open(&encryption, prev)?;
                }
                Ok(event)
            });
            failed = matches!(item, Some(Err(_)));
            std::task::Poll::Ready(item)
        });
        Ok(Box::pin(stream))
    }

    async fn compact(&self, revision: Revision) -> Result<Revision> {
        self.inner.compact(revision).await
    }

    async fn is_stale(&self, key: &str, revision: Revision) -> bool {
        let Some(transformers) = self.encryption.transformers_for(key) else {
            return false;
        };
        match self.inner.get(key).await {
            Ok(Some(kv)) if kv.mod_revision == revision => {
                !transformers.written_by_writer(&kv.value)
            }
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kubelab_store::MemoryStore;

    #[test]
    fn storage_keys_name_their_resource() {
        assert_eq!(
            group_resource("/registry/core/secrets/default/a"),
            Some(("", "secrets"))
        );
        assert_eq!(
            group_resource("/registry/apps/deployments/ns/d"),
            Some(("apps", "deployments"))
        );
        assert_eq!(
            group_resource("/registry/core/namespaces/kube-system"),
            Some(("", "namespaces"))
        );
        assert_eq!(group_resource("/registry/core/"), None);
        assert_eq!(group_resource("/other/x/y/z"), None);
    }

    #[tokio::test]
    async fn configured_resources_are_sealed_below_and_plain_above() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("enc.yaml");
        std::fs::write(
            &path,
            "apiVersion: apiserver.config.k8s.io/v1\nkind: EncryptionConfiguration\nresources:\n  - resources: [secrets]\n    providers:\n      - secretbox: {keys: [{name: k1, secret: MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=}]}\n      - identity: {}\n",
        )
        .unwrap();
        let inner: Arc<dyn Store> = Arc::new(MemoryStore::default());
        let encryption = Arc::new(Encryption::load(&path).unwrap());
        let store = EncryptedStore::new(inner.clone(), encryption);
        let secret = "/registry/core/secrets/default/s";
        let plain_key = "/registry/core/configmaps/default/c";
        let mut watch = store.watch("/registry/", 0).await.unwrap();
        let created = store.create(secret, b"{\"a\":1}".to_vec()).await.unwrap();
        assert_eq!(created.value, b"{\"a\":1}");
        store.create(plain_key, b"{}".to_vec()).await.unwrap();
        let raw = inner.get(secret).await.unwrap().unwrap().value;
        assert!(raw.starts_with(b"k8s:enc:secretbox:v1:k1:"), "{raw:?}");
        assert_eq!(inner.get(plain_key).await.unwrap().unwrap().value, b"{}");
        assert_eq!(
            store.get(secret).await.unwrap().unwrap().value,
            b"{\"a\":1}"
        );
        let updated = store
            .update(secret, b"{\"a\":2}".to_vec(), Some(created.mod_revision))
            .await
            .unwrap();
        assert_eq!(updated.value, b"{\"a\":2}");
        let listed = store.list("/registry/core/", None, 0).await.unwrap();
        let values: Vec<&[u8]> = listed.items.iter().map(|kv| kv.value.as_slice()).collect();
        assert_eq!(values, [b"{}".as_slice(), b"{\"a\":2}".as_slice()]);
        let deleted = store.delete(secret, None).await.unwrap();
        assert_eq!(deleted.value, b"{\"a\":2}");
        let mut seen = Vec::new();
        for _ in 0..4 {
            let event = watch.next().await.unwrap().unwrap();
            seen.push((
                String::from_utf8(event.kv.value).unwrap(),
                event.prev.map(|p| String::from_utf8(p.value).unwrap()),
            ));
        }
        assert_eq!(
            seen,
            [
                ("{\"a\":1}".to_owned(), None),
                ("{}".to_owned(), None),
                ("{\"a\":2}".to_owned(), Some("{\"a\":1}".to_owned())),
                ("{\"a\":2}".to_owned(), Some("{\"a\":2}".to_owned())),
            ]
        );
        // A value no configured key can read is an error, not garbage.
        inner
            .create(
                "/registry/core/secrets/default/foreign",
                b"k8s:enc:aescbc:v1:other:0123456789abcdef".to_vec(),
            )
            .await
            .unwrap();
        let err = store
            .get("/registry/core/secrets/default/foreign")
            .await
            .unwrap_err();
        assert!(
            err.to_string()
                .contains("does not match any of the supported transformers"),
            "{err}"
        );
        let mut watch = store.watch("/registry/core/secrets/", 0).await.unwrap();
        let mut items = Vec::new();
        while let Some(item) = watch.next().await {
            items.push(item.is_ok());
        }
        // Created, updated, deleted, then the unreadable value ends the stream.
        assert_eq!(items, [true, true, true, false]);
    }
}
