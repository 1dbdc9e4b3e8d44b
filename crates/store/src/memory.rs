//! The in-memory backend: the same semantics as [`crate::SqliteStore`] without a disk. History is
//! the ring of recent events, compacted continuously to the last `history_window` revisions.

use std::sync::{Arc, Mutex};

use crate::shared::{lock, Core, WriteOp};
use crate::{KeyValue, ListResult, Result, Revision, Store, WatchStream};

/// Tuning for [`MemoryStore`].
#[derive(Clone, Debug)]
pub struct MemoryOptions {
    /// Revisions of history kept for watches (default 10 000). After each write, history older
    /// than `current - history_window` is dropped and [`Store::compacted_revision`] advances.
    pub history_window: u64,
    /// Events a watcher may have pending before it is disconnected with
    /// [`crate::Error::WatcherTooSlow`] (default 1024).
    pub watch_buffer: usize,
}

impl Default for MemoryOptions {
    fn default() -> Self {
        MemoryOptions {
            history_window: 10_000,
            watch_buffer: 1024,
        }
    }
}

/// A [`Store`] held entirely in memory, for tests.
pub struct MemoryStore {
    core: Arc<Core>,
    history_window: i64,
    /// Serialises writes: check, assign the revision, apply.
    writer: Mutex<()>,
}

impl Default for MemoryStore {
    fn default() -> Self {
        Self::new()
    }
}

impl MemoryStore {
    pub fn new() -> Self {
        Self::with_options(MemoryOptions::default())
    }

    pub fn with_options(options: MemoryOptions) -> Self {
        MemoryStore {
            core: Arc::new(Core::new(
                Default::default(),
                0,
                0,
                options.watch_buffer,
                None,
                None,
            )),
            history_window: i64::try_from(options.history_window).unwrap_or(i64::MAX),
            writer: Mutex::new(()),
        }
    }

    /// Forgets history up to `revision` (clamped to the current revision); watches starting
    /// before it answer `Compacted`. Returns the compacted revision.
    pub async fn compact(&self, revision: Revision) -> Result<Revision> {
        let _writer = lock(&self.writer);
        let target = revision.min(self.core.current_revision());
        self.core.set_compacted(target, true);
        Ok(self.core.compacted_revision())
    }

    fn write(&self, op: WriteOp) -> Result<KeyValue> {
        let _writer = lock(&self.writer);
        let current = self.core.get(op.key());
        let revision = self.core.current_revision() + 1;
        let event = op.plan(current.as_ref(), revision)?;
        let kv = event.kv.clone();
        self.core.commit(vec![event]);
        let horizon = revision.saturating_sub(self.history_window);
        if horizon > self.core.compacted_revision() {
            self.core.set_compacted(horizon, true);
        }
        Ok(kv)
    }
}

impl Drop for MemoryStore {
    fn drop(&mut self) {
        self.core.close();
    }
}

#[async_trait::async_trait]
impl Store for MemoryStore {
    fn current_revision(&self) -> Revision {
        self.core.current_revision()
    }

    fn compacted_revision(&self) -> Revision {
        self.core.compacted_revision()
    }

    async fn get(&self, key: &str) -> Result<Option<KeyValue>> {
        Ok(self.core.get(key))
    }

    async fn list(
        &self,
        prefix: &str,
        start_after: Option<&str>,
        limit: usize,
    ) -> Result<ListResult> {
        Ok(self.core.list(prefix, start_after, limit))
    }

    async fn count(&self, prefix: &str) -> Result<usize> {
        Ok(self.core.count(prefix))
    }

    async fn create(&self, key: &str, value: Vec<u8>) -> Result<KeyValue> {
        self.write(WriteOp::Create {
            key: key.to_owned(),
            value,
        })
    }

    async fn update(
        &self,
        key: &str,
        value: Vec<u8>,
        expected: Option<Revision>,
    ) -> Result<KeyValue> {
        self.write(WriteOp::Update {
            key: key.to_owned(),
            value,
            expected,
        })
    }

    async fn delete(&self, key: &str, expected: Option<Revision>) -> Result<KeyValue> {
        self.write(WriteOp::Delete {
            key: key.to_owned(),
            expected,
        })
    }

    async fn watch(&self, prefix: &str, after: Revision) -> Result<WatchStream> {
        self.core.watch(prefix, after)
    }

    async fn compact(&self, revision: Revision) -> Result<Revision> {
        MemoryStore::compact(self, revision).await
    }
}
