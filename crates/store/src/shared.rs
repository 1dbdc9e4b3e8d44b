//! The part both backends share: the in-memory index of current keys, the ring of recent events,
//! the watcher fan-out, and the watch stream with its replay-then-live hand-over.
//!
//! Architecture invariant: exactly one writer at a time calls [`Core::commit`] (the SQLite writer
//! thread, or the memory store's write lock), with events whose revisions follow each other
//! without gaps. Everything a watcher sees comes from the ring, the log reader, or its live queue,
//! and the cursor discipline in [`next_event`] guarantees each revision is yielded at most once
//! and none is skipped.

use std::collections::{BTreeMap, VecDeque};
use std::ops::Bound;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard, Weak};

use tokio::sync::Notify;

use crate::{Error, Event, EventType, KeyValue, ListResult, Result, Revision, WatchStream};

/// Events scanned per replay step (from the ring or from the log).
pub(crate) const REPLAY_PAGE: usize = 512;

pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn read<T>(lock: &RwLock<T>) -> RwLockReadGuard<'_, T> {
    lock.read().unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn write<T>(lock: &RwLock<T>) -> RwLockWriteGuard<'_, T> {
    lock.write()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// A write as requested by a caller, before it has a revision.
#[derive(Debug)]
pub(crate) enum WriteOp {
    Create {
        key: String,
        value: Vec<u8>,
    },
    Update {
        key: String,
        value: Vec<u8>,
        expected: Option<Revision>,
    },
    Delete {
        key: String,
        expected: Option<Revision>,
    },
}

impl WriteOp {
    pub(crate) fn key(&self) -> &str {
        match self {
            WriteOp::Create { key, .. }
            | WriteOp::Update { key, .. }
            | WriteOp::Delete { key, .. } => key,
        }
    }

    /// Checks the write against the key's current state and turns it into the event it produces
    /// at `revision`.
    pub(crate) fn plan(self, current: Option<&KeyValue>, revision: Revision) -> Result<Event> {
        fn check(key: &str, current: &KeyValue, expected: Option<Revision>) -> Result<()> {
            match expected {
                Some(expected) if expected != current.mod_revision => Err(Error::Conflict {
                    key: key.to_owned(),
                    expected,
                    actual: current.mod_revision,
                }),
                _ => Ok(()),
            }
        }
        match (self, current) {
            (WriteOp::Create { key, .. }, Some(_)) => Err(Error::AlreadyExists { key }),
            (WriteOp::Create { key, value }, None) => Ok(Event {
                event_type: EventType::Created,
                kv: KeyValue {
                    key,
                    value,
                    create_revision: revision,
                    mod_revision: revision,
                },
                prev: None,
            }),
            (WriteOp::Update { key, .. } | WriteOp::Delete { key, .. }, None) => {
                Err(Error::NotFound { key })
            }
            (
                WriteOp::Update {
                    key,
                    value,
                    expected,
                },
                Some(current),
            ) => {
                check(&key, current, expected)?;
                Ok(Event {
                    event_type: EventType::Updated,
                    kv: KeyValue {
                        key,
                        value,
                        create_revision: current.create_revision,
                        mod_revision: revision,
                    },
                    prev: Some(current.clone()),
                })
            }
            (WriteOp::Delete { key, expected }, Some(current)) => {
                check(&key, current, expected)?;
                Ok(Event {
                    event_type: EventType::Deleted,
                    kv: KeyValue {
                        key,
                        value: current.value.clone(),
                        create_revision: current.create_revision,
                        mod_revision: revision,
                    },
                    prev: Some(current.clone()),
                })
            }
        }
    }
}

/// Where a watch replays history the ring no longer holds (the SQLite log).
pub(crate) trait LogReader: Send + Sync + 'static {
    /// Events with revision in `(after, upto]` whose key starts with `prefix`, scanning at most
    /// `page` revisions. Returns the events and the last revision scanned (`upto` when the range
    /// is exhausted). Fails with `Compacted` when `after` is older than the retained log.
    /// Blocking: called from `spawn_blocking`.
    fn read_page(
        &self,
        prefix: &str,
        after: Revision,
        upto: Revision,
        page: usize,
    ) -> Result<(Vec<Event>, Revision)>;
}

/// Current keys, and the revision they are consistent with.
#[derive(Default)]
struct Index {
    keys: BTreeMap<String, KeyValue>,
    revision: Revision,
}

enum Next {
    Event(Arc<Event>),
    TooSlow,
    Closed,
}

#[derive(Default)]
struct QueueState {
    events: VecDeque<Arc<Event>>,
    overflowed: bool,
    closed: bool,
}

/// One watcher's live buffer. The writer pushes without ever waiting; when the buffer is full the
/// watcher is marked overflowed and dropped from the fan-out.
struct Queue {
    state: Mutex<QueueState>,
    notify: Notify,
    capacity: usize,
}

impl Queue {
    /// Returns false when the watcher overflowed (or was already gone) and must be unsubscribed.
    fn push(&self, event: &Arc<Event>) -> bool {
        let mut state = lock(&self.state);
        if state.overflowed || state.closed {
            return false;
        }
        if state.events.len() >= self.capacity {
            state.overflowed = true;
            drop(state);
            self.notify.notify_one();
            return false;
        }
        state.events.push_back(Arc::clone(event));
        drop(state);
        self.notify.notify_one();
        true
    }

    fn close(&self) {
        lock(&self.state).closed = true;
        self.notify.notify_one();
    }

    async fn next(&self) -> Next {
        loop {
            {
                let mut state = lock(&self.state);
                if let Some(event) = state.events.pop_front() {
                    return Next::Event(event);
                }
                if state.overflowed {
                    return Next::TooSlow;
                }
                if state.closed {
                    return Next::Closed;
                }
            }
            // `notify_one` stores a permit when nobody waits, so a push between the unlock above
            // and this await is not lost.
            self.notify.notified().await;
        }
    }
}

struct Watcher {
    prefix: String,
    queue: Weak<Queue>,
}

struct Hub {
    watchers: Vec<Watcher>,
    /// Recent events, contiguous in revision, oldest first.
    ring: VecDeque<Arc<Event>>,
    /// Bound on `ring` (SQLite: a replay cache). None: the ring is the whole retained history
    /// (memory store) and only compaction shortens it.
    ring_capacity: Option<usize>,
    /// Highest revision handed to the fan-out.
    published: Revision,
    compacted: Revision,
    closed: bool,
}

/// Shared state of one store. Watch streams hold an `Arc` to it.
pub(crate) struct Core {
    index: RwLock<Index>,
    revision: AtomicI64,
    compacted: AtomicI64,
    hub: Mutex<Hub>,
    watch_buffer: usize,
    reader: Option<Arc<dyn LogReader>>,
}

impl Core {
    pub(crate) fn new(
        keys: BTreeMap<String, KeyValue>,
        revision: Revision,
        compacted: Revision,
        watch_buffer: usize,
        ring_capacity: Option<usize>,
        reader: Option<Arc<dyn LogReader>>,
    ) -> Self {
        Core {
            index: RwLock::new(Index { keys, revision }),
            revision: AtomicI64::new(revision),
            compacted: AtomicI64::new(compacted),
            hub: Mutex::new(Hub {
                watchers: Vec::new(),
                ring: VecDeque::new(),
                ring_capacity,
                published: revision,
                compacted,
                closed: false,
            }),
            watch_buffer: watch_buffer.max(1),
            reader,
        }
    }

    pub(crate) fn current_revision(&self) -> Revision {
        self.revision.load(Ordering::Acquire)
    }

    pub(crate) fn compacted_revision(&self) -> Revision {
        self.compacted.load(Ordering::Acquire)
    }

    pub(crate) fn get(&self, key: &str) -> Option<KeyValue> {
        read(&self.index).keys.get(key).cloned()
    }

    pub(crate) fn list(&self, prefix: &str, start_after: Option<&str>, limit: usize) -> ListResult {
        let index = read(&self.index);
        let lower = match start_after {
            Some(after) if after >= prefix => Bound::Excluded(after),
            _ => Bound::Included(prefix),
        };
        let mut matching = index
            .keys
            .range::<str, _>((lower, Bound::Unbounded))
            .take_while(|(key, _)| key.starts_with(prefix))
            .map(|(_, kv)| kv);
        let mut items = Vec::new();
        let mut more = false;
        for kv in matching.by_ref() {
            if limit != 0 && items.len() == limit {
                more = true;
                break;
            }
            items.push(kv.clone());
        }
        ListResult {
            items,
            revision: index.revision,
            more,
        }
    }

    pub(crate) fn count(&self, prefix: &str) -> usize {
        read(&self.index)
            .keys
            .range::<str, _>((Bound::Included(prefix), Bound::Unbounded))
            .take_while(|(key, _)| key.starts_with(prefix))
            .count()
    }

    /// Applies committed events (consecutive revisions following the current one) to the index,
    /// then hands them to the ring and the watchers.
    pub(crate) fn commit(&self, events: Vec<Event>) {
        let Some(last) = events.last().map(Event::revision) else {
            return;
        };
        {
            let mut index = write(&self.index);
            for event in &events {
                match event.event_type {
                    EventType::Created | EventType::Updated => {
                        index.keys.insert(event.kv.key.clone(), event.kv.clone());
                    }
                    EventType::Deleted => {
                        index.keys.remove(&event.kv.key);
                    }
                }
            }
            index.revision = last;
            self.revision.store(last, Ordering::Release);
        }
        let mut hub = lock(&self.hub);
        let hub = &mut *hub;
        for event in events {
            let event = Arc::new(event);
            hub.watchers.retain(|watcher| {
                if !event.kv.key.starts_with(&watcher.prefix) {
                    return watcher.queue.strong_count() > 0;
                }
                match watcher.queue.upgrade() {
                    Some(queue) => queue.push(&event),
                    None => false,
                }
            });
            hub.ring.push_back(event);
            if let Some(capacity) = hub.ring_capacity {
                while hub.ring.len() > capacity {
                    hub.ring.pop_front();
                }
            }
        }
        hub.published = last;
    }

    /// Records that history up to `revision` is gone. With `drop_ring`, also forgets ring events
    /// up to it (the memory store, whose ring is its history).
    pub(crate) fn set_compacted(&self, revision: Revision, drop_ring: bool) {
        let mut hub = lock(&self.hub);
        if revision <= hub.compacted {
            return;
        }
        hub.compacted = revision;
        if drop_ring {
            while hub
                .ring
                .front()
                .is_some_and(|event| event.revision() <= revision)
            {
                hub.ring.pop_front();
            }
        }
        self.compacted.store(revision, Ordering::Release);
    }

    /// Replaces the index with `keys` at `revision` after history this process never read was
    /// compacted away by another process: nothing before `revision` can be replayed any more, so
    /// every current watch ends (its client resumes, gets `Compacted`, and relists).
    pub(crate) fn reset(&self, keys: BTreeMap<String, KeyValue>, revision: Revision) {
        {
            let mut index = write(&self.index);
            index.keys = keys;
            index.revision = revision;
            self.revision.store(revision, Ordering::Release);
        }
        let mut hub = lock(&self.hub);
        hub.ring.clear();
        hub.published = revision;
        if revision > hub.compacted {
            hub.compacted = revision;
            self.compacted.store(revision, Ordering::Release);
        }
        for watcher in hub.watchers.drain(..) {
            if let Some(queue) = watcher.queue.upgrade() {
                queue.close();
            }
        }
    }

    /// Ends every watch stream (after it drains what it has buffered) with `Error::Closed`.
    pub(crate) fn close(&self) {
        let mut hub = lock(&self.hub);
        hub.closed = true;
        for watcher in hub.watchers.drain(..) {
            if let Some(queue) = watcher.queue.upgrade() {
                queue.close();
            }
        }
    }

    pub(crate) fn watch(self: &Arc<Self>, prefix: &str, after: Revision) -> Result<WatchStream> {
        let queue = Arc::new(Queue {
            state: Mutex::new(QueueState::default()),
            notify: Notify::new(),
            capacity: self.watch_buffer,
        });
        let live_from = {
            let mut hub = lock(&self.hub);
            if after < hub.compacted {
                return Err(Error::Compacted {
                    requested: after,
                    oldest: hub.compacted,
                });
            }
            if hub.closed {
                return Err(Error::Closed);
            }
            hub.watchers.push(Watcher {
                prefix: prefix.to_owned(),
                queue: Arc::downgrade(&queue),
            });
            hub.published
        };
        let state = WatchState {
            core: Arc::clone(self),
            prefix: prefix.to_owned(),
            cursor: after,
            live_from,
            replayed: VecDeque::new(),
            queue,
            done: false,
        };
        Ok(Box::pin(futures::stream::unfold(
            state,
            |mut state| async move {
                let item = next_event(&mut state).await?;
                Some((item, state))
            },
        )))
    }

    /// Takes the next replay page from the ring when it covers `cursor + 1`. None: the ring does
    /// not reach back that far.
    fn ring_page(
        &self,
        prefix: &str,
        cursor: Revision,
        upto: Revision,
    ) -> Option<(Vec<Arc<Event>>, Revision)> {
        let hub = lock(&self.hub);
        let first = hub.ring.front()?.revision();
        if first > cursor + 1 {
            return None;
        }
        let start = usize::try_from(cursor + 1 - first).ok()?;
        let mut scanned = cursor;
        let mut events = Vec::new();
        for event in hub.ring.iter().skip(start).take(REPLAY_PAGE) {
            if event.revision() > upto {
                break;
            }
            scanned = event.revision();
            if event.kv.key.starts_with(prefix) {
                events.push(Arc::clone(event));
            }
        }
        if scanned == cursor {
            // The ring ends before `upto`; cannot happen while ring revisions are contiguous
            // and `upto` was published, but never loop forever on it.
            scanned = upto;
        }
        Some((events, scanned))
    }

    fn compacted_error(&self, requested: Revision) -> Error {
        Error::Compacted {
            requested,
            oldest: self.compacted_revision(),
        }
    }
}

struct WatchState {
    core: Arc<Core>,
    prefix: String,
    /// Every revision up to here has been yielded or ruled out.
    cursor: Revision,
    /// Revisions above this arrive through `queue`; up to it, through replay.
    live_from: Revision,
    replayed: VecDeque<Arc<Event>>,
    queue: Arc<Queue>,
    done: bool,
}

async fn next_event(state: &mut WatchState) -> Option<Result<Event>> {
    if state.done {
        return None;
    }
    loop {
        if let Some(event) = state.replayed.pop_front() {
            return Some(Ok(Event::clone(&event)));
        }
        if state.cursor < state.live_from {
            match replay_page(state).await {
                Ok(()) => continue,
                Err(error) => {
                    state.done = true;
                    return Some(Err(error));
                }
            }
        }
        match state.queue.next().await {
            Next::Event(event) => {
                // Live events at or below the cursor were already replayed.
                if event.revision() > state.cursor {
                    state.cursor = event.revision();
                    return Some(Ok(Event::clone(&event)));
                }
            }
            Next::TooSlow => {
                state.done = true;
                return Some(Err(Error::WatcherTooSlow {
                    buffer: state.core.watch_buffer,
                }));
            }
            Next::Closed => {
                state.done = true;
                return Some(Err(Error::Closed));
            }
        }
    }
}

async fn replay_page(state: &mut WatchState) -> Result<()> {
    let core = &state.core;
    if let Some((events, scanned)) = core.ring_page(&state.prefix, state.cursor, state.live_from) {
        state.replayed.extend(events);
        state.cursor = scanned;
        return Ok(());
    }
    let Some(reader) = core.reader.clone() else {
        return Err(core.compacted_error(state.cursor));
    };
    let (prefix, after, upto) = (state.prefix.clone(), state.cursor, state.live_from);
    let (events, scanned) =
        tokio::task::spawn_blocking(move || reader.read_page(&prefix, after, upto, REPLAY_PAGE))
            .await
            .map_err(|join| {
                Error::Io(std::io::Error::other(format!(
                    "watch replay task failed: {join}"
                )))
            })??;
    state.replayed.extend(events.into_iter().map(Arc::new));
    state.cursor = scanned.max(state.cursor + 1).min(upto);
    Ok(())
}
