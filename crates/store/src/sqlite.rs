//! The embedded, durable backend: a kine-style append-only log in SQLite (WAL,
//! `synchronous=FULL`), written by one writer thread with group commit.
//!
//! Shape: callers send writes over a channel to the writer thread; it takes everything queued
//! (up to `max_batch`), checks each write against the current keys, appends one log row per
//! accepted write in a single transaction (one fsync for the batch), then updates the in-memory
//! index, publishes the events in revision order and answers each caller. Reads (get, list,
//! count) are served from the in-memory index of current keys, loaded from the log at open. The
//! log is the source of truth: it survives restarts and serves watch replay older than the
//! in-memory replay cache. The writer also compacts the log in small transactions between
//! batches, so compaction never contends for the database lock.
//!
//! Several processes may open the same file (kine's model: several API servers over one
//! database). Each keeps its own index and watch fan-out, and its writer thread applies the rows
//! the others committed: at once when it is about to write, and otherwise when
//! `PRAGMA data_version` says another connection committed (checked every `poll_interval`). Reads
//! on one process therefore see another process's writes within about `poll_interval`; a write's
//! preconditions are always checked against the latest state.
//!
//! Architecture invariant: within a process only the writer thread writes the database, and it
//! assigns revisions only inside a write transaction (`BEGIN IMMEDIATE`, SQLite's database-wide
//! write lock) after applying every row other processes committed before it; so revisions are
//! assigned one at a time across all processes, and every process sees every revision, in order.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, RecvTimeoutError, TryRecvError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rusqlite::{params, Connection, OpenFlags, OptionalExtension, TransactionBehavior};
use tokio::sync::oneshot;

use crate::shared::{lock, Core, LogReader, WriteOp};
use crate::{Error, Event, EventType, KeyValue, ListResult, Result, Revision, Store, WatchStream};

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS log (
    revision INTEGER PRIMARY KEY,
    key TEXT NOT NULL,
    created INTEGER NOT NULL,
    deleted INTEGER NOT NULL,
    create_revision INTEGER NOT NULL,
    prev_revision INTEGER NOT NULL,
    value BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS meta (
    name TEXT PRIMARY KEY,
    value INTEGER NOT NULL
);
";

const INSERT_ROW: &str =
    "INSERT INTO log (revision, key, created, deleted, create_revision, prev_revision, value)
     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)";

const SELECT_COMPACTED: &str = "SELECT value FROM meta WHERE name = 'compact_revision'";

const READ_PAGE: &str =
    "SELECT l.revision, l.key, l.created, l.deleted, l.create_revision, l.prev_revision, l.value,
            p.value, p.create_revision
     FROM log l LEFT JOIN log p ON p.revision = l.prev_revision
     WHERE l.revision > ?1 AND l.revision <= ?2
     ORDER BY l.revision LIMIT ?3";

/// Read connections kept for watch replay.
const READER_POOL: usize = 4;

/// Tuning for [`SqliteStore`].
#[derive(Clone, Debug)]
pub struct SqliteOptions {
    /// Revisions of history kept for watch replay (default 10 000, ten times kine's minimum
    /// retention). Log rows older than `current - history_window` that are superseded or
    /// tombstones are removed by compaction and [`Store::compacted_revision`] advances.
    pub history_window: u64,
    /// Events a watcher may have pending before it is disconnected with
    /// [`Error::WatcherTooSlow`] (default 1024).
    pub watch_buffer: usize,
    /// Recent events kept in memory so that watches resuming from a recent revision do not read
    /// the log (default 1024).
    pub replay_cache: usize,
    /// Compaction runs when at least `compact_batch` revisions can be compacted, one transaction
    /// of at most `compact_batch` revisions at a time (default 1000), and otherwise when the writer
    /// has been idle for `compact_interval` (default 60 s) and at open.
    pub compact_batch: u64,
    pub compact_interval: Duration,
    /// Most writes committed in one transaction (default 1024).
    pub max_batch: usize,
    /// How often the writer checks whether another process wrote to the file (default 100 ms).
    pub poll_interval: Duration,
}

impl Default for SqliteOptions {
    fn default() -> Self {
        SqliteOptions {
            history_window: 10_000,
            watch_buffer: 1024,
            replay_cache: 1024,
            compact_batch: 1000,
            compact_interval: Duration::from_secs(60),
            max_batch: 1024,
            poll_interval: Duration::from_millis(100),
        }
    }
}

enum Request {
    Write {
        op: WriteOp,
        reply: oneshot::Sender<Result<KeyValue>>,
    },
    Compact {
        revision: Revision,
        reply: oneshot::Sender<Result<Revision>>,
    },
}

/// A durable [`Store`] in one SQLite file. When a write returns `Ok`, it is on disk.
pub struct SqliteStore {
    core: Arc<Core>,
    path: PathBuf,
    requests: Option<mpsc::Sender<Request>>,
    writer: Option<JoinHandle<()>>,
}

impl SqliteStore {
    /// Opens (creating if needed) the store at `path`, loading current keys into memory and
    /// starting the writer thread. Blocking; call it at startup or from `spawn_blocking`.
    /// Other processes may have the same file open (see the module documentation).
    pub fn open(path: impl AsRef<Path>, options: SqliteOptions) -> Result<Self> {
        let path = path.as_ref().to_path_buf();
        if let Some(parent) = path
            .parent()
            .filter(|parent| !parent.as_os_str().is_empty())
        {
            std::fs::create_dir_all(parent)?;
        }
        let conn = Connection::open(&path)?;
        let journal: String = conn.query_row("PRAGMA journal_mode = WAL", [], |row| row.get(0))?;
        if !journal.eq_ignore_ascii_case("wal") {
            return Err(Error::Io(std::io::Error::other(format!(
                "{}: cannot enable WAL journal (got {journal})",
                path.display()
            ))));
        }
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.busy_timeout(Duration::from_secs(5))?;
        conn.execute_batch(SCHEMA)?;

        // One snapshot for the keys, the compacted revision and the data version, so that the
        // writer's first poll picks up exactly what other processes commit after it.
        let transaction = conn.unchecked_transaction()?;
        let data_version = data_version(&transaction)?;
        let (keys, revision, compacted) = load_snapshot(&transaction)?;
        transaction.commit()?;
        tracing::info!(
            path = %path.display(),
            keys = keys.len(),
            revision,
            compacted,
            "opened sqlite store"
        );

        let reader = Arc::new(SqliteReader {
            path: path.clone(),
            pool: Mutex::new(Vec::new()),
        });
        let core = Arc::new(Core::new(
            keys,
            revision,
            compacted,
            options.watch_buffer,
            Some(options.replay_cache),
            Some(reader),
        ));
        let (requests, receiver) = mpsc::channel();
        let writer = Writer {
            conn,
            core: Arc::clone(&core),
            revision,
            compacted,
            history_window: i64::try_from(options.history_window).unwrap_or(i64::MAX),
            compact_batch: i64::try_from(options.compact_batch.max(1)).unwrap_or(i64::MAX),
            compact_interval: options.compact_interval,
            max_batch: options.max_batch.max(1),
            poll_interval: options.poll_interval.max(Duration::from_millis(1)),
            data_version,
        };
        let writer = std::thread::Builder::new()
            .name("kubelab-store-writer".into())
            .spawn(move || writer.run(receiver))?;
        Ok(SqliteStore {
            core,
            path,
            requests: Some(requests),
            writer: Some(writer),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Compacts the log up to `revision` (clamped to the current revision) now, whatever the
    /// history window; watches starting before it answer `Compacted`. Returns the compacted
    /// revision.
    pub async fn compact(&self, revision: Revision) -> Result<Revision> {
        let (reply, answer) = oneshot::channel();
        self.send(Request::Compact { revision, reply })?;
        answer.await.map_err(|_| Error::Closed)?
    }

    fn send(&self, request: Request) -> Result<()> {
        self.requests
            .as_ref()
            .ok_or(Error::Closed)?
            .send(request)
            .map_err(|_| Error::Closed)
    }

    /// The write is applied even when the returned future is dropped after it was sent.
    async fn write(&self, op: WriteOp) -> Result<KeyValue> {
        let (reply, answer) = oneshot::channel();
        self.send(Request::Write { op, reply })?;
        answer.await.map_err(|_| Error::Closed)?
    }
}

impl Drop for SqliteStore {
    fn drop(&mut self) {
        // The writer finishes what is queued, then sees the channel closed and exits.
        self.requests.take();
        if let Some(writer) = self.writer.take() {
            if writer.join().is_err() {
                tracing::error!("sqlite store writer thread panicked");
            }
        }
        self.core.close();
    }
}

#[async_trait::async_trait]
impl Store for SqliteStore {
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
        .await
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
        .await
    }

    async fn delete(&self, key: &str, expected: Option<Revision>) -> Result<KeyValue> {
        self.write(WriteOp::Delete {
            key: key.to_owned(),
            expected,
        })
        .await
    }

    async fn watch(&self, prefix: &str, after: Revision) -> Result<WatchStream> {
        self.core.watch(prefix, after)
    }

    async fn compact(&self, revision: Revision) -> Result<Revision> {
        SqliteStore::compact(self, revision).await
    }
}

/// The current keys, the current revision and the compacted revision, from one snapshot.
fn load_snapshot(conn: &Connection) -> Result<(BTreeMap<String, KeyValue>, Revision, Revision)> {
    let (keys, last_row) = load(conn)?;
    let compacted = compacted_revision(conn)?;
    // Compaction never removes rows above the compacted revision, so the newest write is
    // either the last row or (when it was a compacted tombstone) the compacted revision.
    Ok((keys, last_row.max(compacted), compacted))
}

fn compacted_revision(conn: &Connection) -> Result<Revision> {
    Ok(conn
        .query_row(SELECT_COMPACTED, [], |row| row.get(0))
        .optional()?
        .unwrap_or(0))
}

/// Changes whenever another connection (another process) commits to the database.
fn data_version(conn: &Connection) -> Result<i64> {
    Ok(conn.query_row("PRAGMA data_version", [], |row| row.get(0))?)
}

/// Rows other processes committed after `revision`, at most this many per read.
const CATCH_UP_PAGE: usize = 1024;

/// Apply to `core` every row committed after `*revision` (by other processes), in order, and
/// any compaction they did. Runs inside a transaction of the caller (one snapshot). When rows
/// this process never saw were compacted away, the index is rebuilt from the log and every
/// watch ends (their clients resume from a compacted revision and relist).
fn catch_up(
    conn: &Connection,
    core: &Core,
    revision: &mut Revision,
    compacted: &mut Revision,
) -> Result<()> {
    let log_compacted = compacted_revision(conn)?;
    if log_compacted > *revision {
        return reset(conn, core, revision, compacted);
    }
    loop {
        let (events, scanned, _) =
            SqliteReader::read_rows(conn, "", *revision, Revision::MAX, CATCH_UP_PAGE)?;
        let Some(last) = events.last().map(Event::revision) else {
            break;
        };
        let contiguous = events
            .iter()
            .zip(*revision + 1..)
            .all(|(event, expected)| event.revision() == expected);
        if !contiguous {
            return reset(conn, core, revision, compacted);
        }
        *revision = last;
        core.commit(events);
        if scanned < CATCH_UP_PAGE {
            break;
        }
    }
    if log_compacted > *compacted {
        *compacted = log_compacted;
        core.set_compacted(log_compacted, false);
    }
    Ok(())
}

fn reset(
    conn: &Connection,
    core: &Core,
    revision: &mut Revision,
    compacted: &mut Revision,
) -> Result<()> {
    let (keys, new_revision, new_compacted) = load_snapshot(conn)?;
    tracing::warn!(
        from = *revision,
        to = new_revision,
        "another process compacted history this one had not read; reloading the store"
    );
    *revision = new_revision;
    *compacted = new_compacted.max(new_revision);
    core.reset(keys, new_revision);
    Ok(())
}

/// Replays the log into the current keys. Returns them and the highest revision in the log.
fn load(conn: &Connection) -> Result<(BTreeMap<String, KeyValue>, Revision)> {
    let mut keys = BTreeMap::new();
    let mut last = 0;
    let mut statement = conn.prepare(
        "SELECT revision, key, deleted, create_revision, value FROM log ORDER BY revision",
    )?;
    let mut rows = statement.query([])?;
    while let Some(row) = rows.next()? {
        let revision: Revision = row.get(0)?;
        let key: String = row.get(1)?;
        let deleted: bool = row.get(2)?;
        last = revision;
        if deleted {
            keys.remove(&key);
        } else {
            let value = KeyValue {
                key: key.clone(),
                value: row.get(4)?,
                create_revision: row.get(3)?,
                mod_revision: revision,
            };
            keys.insert(key, value);
        }
    }
    Ok((keys, last))
}

struct Writer {
    conn: Connection,
    core: Arc<Core>,
    /// Last committed revision.
    revision: Revision,
    compacted: Revision,
    history_window: i64,
    compact_batch: i64,
    compact_interval: Duration,
    max_batch: usize,
    poll_interval: Duration,
    /// `PRAGMA data_version` when this writer last applied other processes' rows.
    data_version: i64,
}

impl Writer {
    fn run(mut self, requests: mpsc::Receiver<Request>) {
        // At open, compact whatever the window allows.
        let mut idle = true;
        // After a failed compaction, none is attempted before this instant.
        let mut retry_after: Option<Instant> = None;
        let mut last_request = Instant::now();
        loop {
            let pending = self.compaction_due(idle, retry_after).is_some();
            let first = if pending {
                match requests.try_recv() {
                    Ok(request) => Some(request),
                    Err(TryRecvError::Empty) => None,
                    Err(TryRecvError::Disconnected) => break,
                }
            } else {
                match requests.recv_timeout(self.poll_interval.min(self.compact_interval)) {
                    Ok(request) => Some(request),
                    Err(RecvTimeoutError::Timeout) => None,
                    Err(RecvTimeoutError::Disconnected) => break,
                }
            };
            if first.is_none() {
                self.poll_other_processes();
                if last_request.elapsed() >= self.compact_interval {
                    idle = true;
                }
            }
            if let Some(first) = first {
                idle = false;
                last_request = Instant::now();
                let mut batch = vec![first];
                while batch.len() < self.max_batch {
                    match requests.try_recv() {
                        Ok(request) => batch.push(request),
                        Err(_) => break,
                    }
                }
                self.process(batch);
            }
            // At most one bounded compaction step between batches, so that compaction keeps up
            // under constant load without holding writes back for long.
            if let Some(target) = self.compaction_due(idle, retry_after) {
                match self.compact_step(target) {
                    Ok(()) => retry_after = None,
                    Err(error) => {
                        tracing::warn!(%error, target, "log compaction failed; will retry");
                        retry_after = Some(Instant::now() + self.compact_interval);
                    }
                }
            }
        }
        if let Err(error) = self
            .conn
            .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
        {
            tracing::debug!(%error, "final wal checkpoint failed");
        }
        tracing::debug!(revision = self.revision, "sqlite store writer stopped");
    }

    /// The revision to compact to now, if any.
    fn compaction_due(&self, idle: bool, retry_after: Option<Instant>) -> Option<Revision> {
        if retry_after.is_some_and(|instant| Instant::now() < instant) {
            return None;
        }
        let horizon = self.revision.saturating_sub(self.history_window);
        let backlog = horizon - self.compacted;
        (backlog >= self.compact_batch || (idle && backlog > 0)).then_some(horizon)
    }

    /// Apply what other processes committed since the last look, if anything.
    fn poll_other_processes(&mut self) {
        let result = data_version(&self.conn).and_then(|version| {
            if version == self.data_version {
                return Ok(());
            }
            let transaction = self.conn.unchecked_transaction()?;
            catch_up(
                &transaction,
                &self.core,
                &mut self.revision,
                &mut self.compacted,
            )?;
            transaction.commit()?;
            self.data_version = version;
            Ok(())
        });
        if let Err(error) = result {
            tracing::warn!(%error, "cannot read other processes' writes; will retry");
        }
    }

    fn process(&mut self, batch: Vec<Request>) {
        let mut writes = Vec::new();
        let mut compactions = Vec::new();
        for request in batch {
            match request {
                Request::Write { op, reply } => writes.push((op, reply)),
                Request::Compact { revision, reply } => compactions.push((revision, reply)),
            }
        }
        if !writes.is_empty() {
            self.write_batch(writes);
        }
        for (revision, reply) in compactions {
            let target = revision.min(self.revision);
            let mut outcome = Ok(self.compacted);
            while self.compacted < target {
                if let Err(error) = self.compact_step(target) {
                    outcome = Err(error);
                    break;
                }
                outcome = Ok(self.compacted);
            }
            let _ = reply.send(outcome);
        }
    }

    /// One write transaction: take SQLite's write lock, apply other processes' rows, check
    /// and number every write of the batch, append them, commit, then publish.
    fn write_batch(&mut self, writes: Vec<(WriteOp, oneshot::Sender<Result<KeyValue>>)>) {
        let transaction = match self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
        {
            Ok(transaction) => transaction,
            Err(error) => {
                tracing::error!(%error, "cannot start a sqlite write transaction");
                for (_, reply) in writes {
                    let _ = reply.send(Err(Error::Io(std::io::Error::other(format!(
                        "sqlite write transaction failed: {error}"
                    )))));
                }
                return;
            }
        };
        // Under the write lock nobody else commits: if no other connection committed since the
        // last look, there is nothing to apply (one pragma instead of a read of the log).
        let caught_up = data_version(&transaction).and_then(|version| {
            if version != self.data_version {
                catch_up(
                    &transaction,
                    &self.core,
                    &mut self.revision,
                    &mut self.compacted,
                )?;
                self.data_version = version;
            }
            Ok(())
        });
        if let Err(error) = caught_up {
            tracing::error!(%error, "cannot read other processes' writes before writing");
            for (_, reply) in writes {
                let _ = reply.send(Err(Error::Io(std::io::Error::other(format!(
                    "cannot read the log before writing: {error}"
                )))));
            }
            return;
        }
        // Keys written earlier in this batch: their state after those writes.
        let mut overlay: HashMap<String, Option<KeyValue>> = HashMap::new();
        let mut events = Vec::new();
        let mut replies = Vec::new();
        let mut next = self.revision + 1;
        for (op, reply) in writes {
            {
                {
                    let current = match overlay.get(op.key()) {
                        Some(state) => state.clone(),
                        None => self.core.get(op.key()),
                    };
                    match op.plan(current.as_ref(), next) {
                        Ok(event) => {
                            let after =
                                (event.event_type != EventType::Deleted).then(|| event.kv.clone());
                            overlay.insert(event.kv.key.clone(), after);
                            replies.push((reply, Ok(event.kv.clone())));
                            events.push(event);
                            next += 1;
                        }
                        Err(error) => replies.push((reply, Err(error))),
                    }
                }
            }
        }
        if !events.is_empty() {
            match append(transaction, &events) {
                Ok(()) => {
                    self.revision = next - 1;
                    self.core.commit(events);
                }
                Err(error) => {
                    tracing::error!(%error, writes = events.len(), "sqlite commit failed");
                    for (_, outcome) in &mut replies {
                        if outcome.is_ok() {
                            *outcome = Err(Error::Io(std::io::Error::other(format!(
                                "sqlite commit failed: {error}"
                            ))));
                        }
                    }
                }
            }
        }
        for (reply, outcome) in replies {
            // The caller may have gone away; the write stands regardless.
            let _ = reply.send(outcome);
        }
    }

    /// One compaction transaction: removes rows superseded by a row in
    /// `(compacted, min(target, compacted + compact_batch)]` and tombstones in that range.
    /// Rows above the new compacted revision keep their previous row, so replayed events after
    /// it still carry `prev`.
    fn compact_step(&mut self, target: Revision) -> Result<()> {
        let transaction = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        // Another process may have compacted further already.
        let from = self.compacted.max(compacted_revision(&transaction)?);
        let to = target.min(from.saturating_add(self.compact_batch));
        if to <= from {
            if from > self.compacted {
                self.compacted = from;
                self.core.set_compacted(from, false);
            }
            return Ok(());
        }
        let superseded = transaction.execute(
            "DELETE FROM log WHERE revision IN
                 (SELECT prev_revision FROM log WHERE revision > ?1 AND revision <= ?2 AND prev_revision > 0)",
            params![from, to],
        )?;
        let tombstones = transaction.execute(
            "DELETE FROM log WHERE deleted = 1 AND revision > ?1 AND revision <= ?2",
            params![from, to],
        )?;
        transaction.execute(
            "INSERT INTO meta (name, value) VALUES ('compact_revision', ?1)
                 ON CONFLICT (name) DO UPDATE SET value = MAX(value, excluded.value)",
            params![to],
        )?;
        transaction.commit()?;
        self.compacted = to;
        self.core.set_compacted(to, false);
        tracing::debug!(compacted = to, superseded, tombstones, "compacted log");
        Ok(())
    }
}

/// Append `events` and commit the write transaction that checked them.
fn append(transaction: rusqlite::Transaction<'_>, events: &[Event]) -> rusqlite::Result<()> {
    {
        let mut insert = transaction.prepare_cached(INSERT_ROW)?;
        for event in events {
            let prev_revision = event.prev.as_ref().map_or(0, |prev| prev.mod_revision);
            insert.execute(params![
                event.revision(),
                event.kv.key,
                event.event_type == EventType::Created,
                event.event_type == EventType::Deleted,
                event.kv.create_revision,
                prev_revision,
                event.kv.value,
            ])?;
        }
    }
    transaction.commit()
}

/// Reads the log for watch replay, on a small pool of read-only connections.
struct SqliteReader {
    path: PathBuf,
    pool: Mutex<Vec<Connection>>,
}

impl SqliteReader {
    fn connection(&self) -> Result<Connection> {
        if let Some(conn) = lock(&self.pool).pop() {
            return Ok(conn);
        }
        let conn = Connection::open_with_flags(
            &self.path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        conn.busy_timeout(Duration::from_secs(5))?;
        Ok(conn)
    }

    fn read(
        conn: &Connection,
        prefix: &str,
        after: Revision,
        upto: Revision,
        page: usize,
    ) -> Result<(Vec<Event>, Revision)> {
        // One read transaction: the compacted revision and the rows come from the same snapshot.
        let transaction = conn.unchecked_transaction()?;
        let compacted: Revision = transaction
            .query_row(SELECT_COMPACTED, [], |row| row.get(0))
            .optional()?
            .unwrap_or(0);
        if after < compacted {
            return Err(Error::Compacted {
                requested: after,
                oldest: compacted,
            });
        }
        let (events, scanned, last) = Self::read_rows(&transaction, prefix, after, upto, page)?;
        Ok((events, if scanned < page { upto } else { last }))
    }

    /// The events of the rows in `(after, upto]` whose key starts with `prefix`, reading at most
    /// `page` rows; also how many rows were read and the revision of the last one read (`after`
    /// when none). No transaction of its own: the caller's.
    fn read_rows(
        conn: &Connection,
        prefix: &str,
        after: Revision,
        upto: Revision,
        page: usize,
    ) -> Result<(Vec<Event>, usize, Revision)> {
        let limit = i64::try_from(page).unwrap_or(i64::MAX);
        let mut statement = conn.prepare_cached(READ_PAGE)?;
        let mut rows = statement.query(params![after, upto, limit])?;
        let mut events = Vec::new();
        let mut scanned = 0usize;
        let mut last = after;
        while let Some(row) = rows.next()? {
            scanned += 1;
            let revision: Revision = row.get(0)?;
            last = revision;
            let key: String = row.get(1)?;
            if !key.starts_with(prefix) {
                continue;
            }
            let created: bool = row.get(2)?;
            let deleted: bool = row.get(3)?;
            let create_revision: Revision = row.get(4)?;
            let prev_revision: Revision = row.get(5)?;
            let value: Vec<u8> = row.get(6)?;
            let prev_value: Option<Vec<u8>> = row.get(7)?;
            let prev_create: Option<Revision> = row.get(8)?;
            let event_type = if created {
                EventType::Created
            } else if deleted {
                EventType::Deleted
            } else {
                EventType::Updated
            };
            let prev = match (event_type, prev_value, prev_create) {
                (EventType::Created, _, _) => None,
                (_, Some(value), Some(create_revision)) => Some(KeyValue {
                    key: key.clone(),
                    value,
                    create_revision,
                    mod_revision: prev_revision,
                }),
                _ => None,
            };
            events.push(Event {
                event_type,
                kv: KeyValue {
                    key,
                    value,
                    create_revision,
                    mod_revision: revision,
                },
                prev,
            });
        }
        Ok((events, scanned, last))
    }
}

impl LogReader for SqliteReader {
    fn read_page(
        &self,
        prefix: &str,
        after: Revision,
        upto: Revision,
        page: usize,
    ) -> Result<(Vec<Event>, Revision)> {
        let conn = self.connection()?;
        let result = Self::read(&conn, prefix, after, upto, page);
        let mut pool = lock(&self.pool);
        if pool.len() < READER_POOL {
            pool.push(conn);
        }
        result
    }
}
