//! Helpers shared by the integration tests: fixtures for both backends and stream helpers that
//! wait on conditions with deadlines instead of sleeping.

#![allow(dead_code)]

use std::future::Future;
use std::ops::Deref;
use std::time::Duration;

use futures::StreamExt;
use kubelab_store::{
    Error, Event, MemoryOptions, MemoryStore, Result, Revision, SqliteOptions, SqliteStore, Store,
    WatchStream,
};

pub const DEADLINE: Duration = Duration::from_secs(20);

/// The backends, plus a way to force compaction (not part of the `Store` trait).
#[async_trait::async_trait]
pub trait TestStore: Store {
    async fn compact_to(&self, revision: Revision) -> Result<Revision>;
}

#[async_trait::async_trait]
impl TestStore for MemoryStore {
    async fn compact_to(&self, revision: Revision) -> Result<Revision> {
        self.compact(revision).await
    }
}

#[async_trait::async_trait]
impl TestStore for SqliteStore {
    async fn compact_to(&self, revision: Revision) -> Result<Revision> {
        self.compact(revision).await
    }
}

#[derive(Clone, Copy)]
pub struct Options {
    pub history_window: u64,
    pub watch_buffer: usize,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            history_window: 100_000,
            watch_buffer: 4096,
        }
    }
}

pub struct Fixture {
    pub store: Box<dyn TestStore>,
    pub dir: Option<tempfile::TempDir>,
}

impl Deref for Fixture {
    type Target = dyn TestStore;
    fn deref(&self) -> &Self::Target {
        &*self.store
    }
}

pub fn memory(options: Options) -> Fixture {
    Fixture {
        store: Box::new(MemoryStore::with_options(MemoryOptions {
            history_window: options.history_window,
            watch_buffer: options.watch_buffer,
        })),
        dir: None,
    }
}

/// A small replay cache and compaction batch, so that replay reads the log and compaction runs
/// in several steps even in short tests.
pub fn sqlite_options(options: Options) -> SqliteOptions {
    SqliteOptions {
        history_window: options.history_window,
        watch_buffer: options.watch_buffer,
        replay_cache: 16,
        compact_batch: 10,
        ..SqliteOptions::default()
    }
}

pub fn sqlite(options: Options) -> Fixture {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = SqliteStore::open(dir.path().join("state.db"), sqlite_options(options))
        .expect("open sqlite store");
    Fixture {
        store: Box::new(store),
        dir: Some(dir),
    }
}

/// The next item of a watch, failing the test if none arrives before the deadline.
pub async fn next(stream: &mut WatchStream) -> Option<Result<Event>> {
    tokio::time::timeout(DEADLINE, stream.next())
        .await
        .expect("watch produced nothing before the deadline")
}

pub async fn next_event(stream: &mut WatchStream) -> Event {
    match next(stream).await {
        Some(Ok(event)) => event,
        other => panic!("expected an event, got {other:?}"),
    }
}

/// Waits until `condition` holds, polling, failing the test at the deadline.
pub async fn wait_until<F, Fut>(what: &str, mut condition: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let start = tokio::time::Instant::now();
    while !condition().await {
        assert!(start.elapsed() < DEADLINE, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

pub fn is_compacted(result: &Result<WatchStream>) -> Option<(Revision, Revision)> {
    match result {
        Err(Error::Compacted { requested, oldest }) => Some((*requested, *oldest)),
        _ => None,
    }
}
