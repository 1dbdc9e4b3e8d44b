//! A revisioned key-value log in the style of kine: every write (create, update, delete) gets
//! the next global revision, and that revision is what the API server exposes as an object's
//! `resourceVersion`. Watches start from a revision, replay the retained history after it and then
//! follow live writes; history older than the compaction window answers
//! [`Error::Compacted`] (the API server turns it into 410 Gone).
//!
//! This crate knows nothing about Kubernetes: keys are opaque strings (the API server uses
//! `/registry/<group>/<resource>/<namespace>/<name>`), values are opaque bytes. It is used only by
//! the API server.
//!
//! Backends: [`SqliteStore`] (embedded default, durable: a returned write is on disk) and
//! [`MemoryStore`] (unit tests). Both share the same semantics, checked by the same tests, and
//! the same machinery: reads are served from an in-memory index of current keys; a watch
//! subscribes to the live fan-out first, then replays history up to the subscription point, so
//! the hand-over has no gap and no duplicate. A watcher that lets more than `watch_buffer` live
//! events pile up gets [`Error::WatcherTooSlow`] instead of a silent gap; writers never wait for
//! watchers. History is compacted to a window of recent revisions (`history_window`, default
//! 10 000); `compact` on either store forces it.
//!
//! The SQLite backend writes a kine-style log (one row per write) from a single writer thread
//! that commits everything queued in one transaction (group commit) before answering; see
//! `sqlite.rs` for the details.

use std::pin::Pin;

mod memory;
mod shared;
mod sqlite;

pub use memory::{MemoryOptions, MemoryStore};
pub use sqlite::{SqliteOptions, SqliteStore};

/// A store revision. Global, strictly increasing, starts at 1 for the first write.
pub type Revision = i64;

/// One key at one revision.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyValue {
    pub key: String,
    pub value: Vec<u8>,
    /// Revision of the write that created this key (its current incarnation).
    pub create_revision: Revision,
    /// Revision of the last write to this key (for a deletion event: the deletion's revision).
    pub mod_revision: Revision,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventType {
    Created,
    Updated,
    Deleted,
}

/// One write, as seen by watchers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event {
    pub event_type: EventType,
    /// The key after the write. For `Deleted`: the last value the key held, with
    /// `mod_revision` set to the deletion's revision.
    pub kv: KeyValue,
    /// The key before the write (None for `Created`).
    pub prev: Option<KeyValue>,
}

impl Event {
    pub fn revision(&self) -> Revision {
        self.kv.mod_revision
    }
}

/// A page of keys under a prefix.
#[derive(Clone, Debug, Default)]
pub struct ListResult {
    pub items: Vec<KeyValue>,
    /// The store revision at which the list was taken.
    pub revision: Revision,
    /// True when `limit` cut the result short: more keys follow the last item.
    pub more: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("key {key} already exists")]
    AlreadyExists { key: String },
    #[error("key {key} not found")]
    NotFound { key: String },
    #[error("key {key} was modified: expected revision {expected}, found {actual}")]
    Conflict {
        key: String,
        expected: Revision,
        actual: Revision,
    },
    #[error("revision {requested} has been compacted; oldest available is {oldest}")]
    Compacted {
        requested: Revision,
        oldest: Revision,
    },
    #[error("watcher fell behind by more than {buffer} events and was disconnected")]
    WatcherTooSlow { buffer: usize },
    #[error("store is closed")]
    Closed,
    /// A value transformer layered over a store (the API server's encryption at rest) could
    /// not read or write the value of `key`.
    #[error("cannot transform the value of {key}: {message}")]
    Transform { key: String, message: String },
    #[error("sqlite: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Events with revision greater than the watch's start revision, in revision order. The stream
/// ends after yielding an `Err` (compaction reached it, watcher too slow, store closed).
pub type WatchStream = Pin<Box<dyn futures::Stream<Item = Result<Event>> + Send>>;

#[async_trait::async_trait]
pub trait Store: Send + Sync + 'static {
    /// The latest revision written (0 for an empty store).
    fn current_revision(&self) -> Revision;

    /// The oldest revision a watch may start after (anything below answers `Compacted`).
    fn compacted_revision(&self) -> Revision;

    async fn get(&self, key: &str) -> Result<Option<KeyValue>>;

    /// Current keys starting with `prefix`, in key order, strictly after `start_after` when
    /// given, at most `limit` items (0 = no limit).
    async fn list(
        &self,
        prefix: &str,
        start_after: Option<&str>,
        limit: usize,
    ) -> Result<ListResult>;

    /// Number of current keys starting with `prefix`.
    async fn count(&self, prefix: &str) -> Result<usize>;

    /// Create a key that must not exist. Writes are applied once sent: dropping the returned
    /// future does not cancel a write the store has already received.
    async fn create(&self, key: &str, value: Vec<u8>) -> Result<KeyValue>;

    /// Replace an existing key's value. With `expected`, the key's current mod_revision must equal
    /// it (else `Conflict`).
    async fn update(
        &self,
        key: &str,
        value: Vec<u8>,
        expected: Option<Revision>,
    ) -> Result<KeyValue>;

    /// Delete an existing key, returning its last value with `mod_revision` = the deletion's
    /// revision. With `expected`, the key's current mod_revision must equal it.
    async fn delete(&self, key: &str, expected: Option<Revision>) -> Result<KeyValue>;

    /// Watch keys starting with `prefix` (a plain string prefix: pass `/a/`, not `/a`, to
    /// exclude `/ab/...`), from the first revision after `after`: each matching event exactly
    /// once, in revision order, replayed history first, then live writes. `after` may be the
    /// current revision (live only). Fails with `Compacted` when `after` is older than
    /// [`Store::compacted_revision`]; a stream whose replay is overtaken by compaction yields
    /// `Compacted` and ends.
    async fn watch(&self, prefix: &str, after: Revision) -> Result<WatchStream>;

    /// Drop the history up to `revision` (clamped to the current revision) now, whatever the
    /// history window: superseded values and deletions at or below it are gone, watches
    /// starting before it answer `Compacted`. Returns the compacted revision.
    async fn compact(&self, revision: Revision) -> Result<Revision>;

    /// Whether the value of `key` at `revision` should be rewritten even though it did not
    /// change (a layer transforming values wrote it with a key that is no longer the write
    /// key). Plain stores: never.
    async fn is_stale(&self, _key: &str, _revision: Revision) -> bool {
        false
    }
}
