//! SQLite-only behaviour: persistence across reopen, replay from the log after a restart, several
//! processes on one file, and durability of acknowledged writes across kill -9.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;

use common::{is_compacted, next_event, sqlite_options, Options};
use kubelab_store::{Error, EventType, SqliteOptions, SqliteStore, Store};

fn open(path: &Path) -> SqliteStore {
    SqliteStore::open(path, sqlite_options(Options::default())).expect("open sqlite store")
}

#[tokio::test]
async fn reopen_keeps_keys_revision_and_compaction() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nested/state.db");
    {
        let store = open(&path);
        store.create("/k/a", b"a1".to_vec()).await.unwrap();
        store.create("/k/b", b"b1".to_vec()).await.unwrap();
        store.update("/k/a", b"a2".to_vec(), Some(1)).await.unwrap();
        store.create("/k/c", b"c1".to_vec()).await.unwrap();
        store.delete("/k/c", None).await.unwrap();
        assert_eq!(store.compact(5).await.unwrap(), 5);
    }
    let store = open(&path);
    assert_eq!(
        store.current_revision(),
        5,
        "a compacted trailing tombstone still counts"
    );
    assert_eq!(store.compacted_revision(), 5);
    let a = store.get("/k/a").await.unwrap().unwrap();
    assert_eq!(
        (a.value.as_slice(), a.create_revision, a.mod_revision),
        (&b"a2"[..], 1, 3)
    );
    assert_eq!(store.get("/k/c").await.unwrap(), None);
    assert_eq!(store.count("/k/").await.unwrap(), 2);
    let next = store.create("/k/c", b"c2".to_vec()).await.unwrap();
    assert_eq!((next.create_revision, next.mod_revision), (6, 6));
    assert!(is_compacted(&store.watch("/k/", 4).await).is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_resumes_from_the_log_after_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.db");
    let seen_before_restart;
    {
        let store = open(&path);
        let mut stream = store.watch("/w/", 0).await.unwrap();
        for i in 0..100 {
            store.create(&format!("/w/{i}"), vec![i]).await.unwrap();
        }
        for i in 0..50 {
            store
                .update(&format!("/w/{i}"), vec![i, i], None)
                .await
                .unwrap();
        }
        // The client got as far as revision 40 before the restart.
        for revision in 1..=40 {
            assert_eq!(next_event(&mut stream).await.revision(), revision);
        }
        seen_before_restart = 40;
    }
    let store = open(&path);
    let mut stream = store.watch("/w/", seen_before_restart).await.unwrap();
    let writer = tokio::spawn({
        let store = Arc::new(store);
        let handle = Arc::clone(&store);
        async move {
            for i in 100..120 {
                handle.create(&format!("/w/{i}"), vec![1]).await.unwrap();
            }
            store
        }
    });
    for revision in 41..=170 {
        let event = next_event(&mut stream).await;
        assert_eq!(event.revision(), revision);
        if (101..=150).contains(&revision) {
            assert_eq!(event.event_type, EventType::Updated);
            let i = u8::try_from(revision - 101).unwrap();
            assert_eq!(event.kv.value, vec![i, i]);
            let prev = event.prev.expect("update replayed from the log has prev");
            assert_eq!((prev.value, prev.mod_revision), (vec![i], i64::from(i) + 1));
        }
    }
    writer.await.unwrap();
}

/// Two stores on one file, as two `kubelab server` processes on one data directory: each sees
/// the other's writes (index and watches), revisions interleave without gaps or reuse, and
/// preconditions are checked against the latest write whoever made it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_stores_on_one_file_share_one_log() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.db");
    let a = open(&path);
    let b = open(&path);
    let mut watch_b = b.watch("/shared/", 0).await.unwrap();

    let first = a.create("/shared/x", b"1".to_vec()).await.unwrap();
    assert_eq!(first.mod_revision, 1);
    // b writes next: it applies a's row first, so its write is revision 2.
    let second = b.create("/shared/y", b"2".to_vec()).await.unwrap();
    assert_eq!(second.mod_revision, 2);
    assert_eq!(b.get("/shared/x").await.unwrap(), Some(first.clone()));
    // A stale precondition is refused even though b never read x itself.
    match b.update("/shared/x", b"stale".to_vec(), Some(0)).await {
        Err(Error::Conflict { actual, .. }) => assert_eq!(actual, 1),
        other => panic!("expected a conflict, got {other:?}"),
    }
    match b.create("/shared/x", b"again".to_vec()).await {
        Err(Error::AlreadyExists { .. }) => {}
        other => panic!("expected AlreadyExists, got {other:?}"),
    }
    // a learns of b's write by polling, without writing itself.
    common::wait_until("a sees b's write", || async {
        a.get("/shared/y").await.unwrap().is_some()
    })
    .await;
    assert_eq!(a.current_revision(), 2);
    let third = a.update("/shared/y", b"3".to_vec(), Some(2)).await.unwrap();
    assert_eq!(third.mod_revision, 3);

    // b's watch sees every revision once, in order, whoever wrote it.
    for revision in 1..=3 {
        assert_eq!(next_event(&mut watch_b).await.revision(), revision);
    }
    let event = next_event(&mut watch_b);
    let written = a.delete("/shared/x", None);
    let (event, written) = tokio::join!(event, written);
    assert_eq!(event.event_type, EventType::Deleted);
    assert_eq!(event.revision(), written.unwrap().mod_revision);
}

/// A store that missed history another process has since compacted reloads from the log, and
/// its watches end (their clients resume from a compacted revision and relist).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_behind_compacted_history_reloads() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.db");
    let a = open(&path);
    let sleepy = SqliteStore::open(
        &path,
        SqliteOptions {
            poll_interval: std::time::Duration::from_secs(3600),
            compact_interval: std::time::Duration::from_secs(3600),
            ..SqliteOptions::default()
        },
    )
    .unwrap();
    let mut watch = sleepy.watch("/c/", 0).await.unwrap();
    for i in 0..20u8 {
        a.create(&format!("/c/{i}"), vec![i]).await.unwrap();
    }
    a.delete("/c/0", None).await.unwrap();
    assert_eq!(a.compact(21).await.unwrap(), 21);
    // The sleepy store's next write applies what it missed: reload, then write at 22.
    let written = sleepy.create("/c/new", b"n".to_vec()).await.unwrap();
    assert_eq!(written.mod_revision, 22);
    assert_eq!(sleepy.compacted_revision(), 21);
    assert_eq!(sleepy.get("/c/0").await.unwrap(), None);
    assert_eq!(sleepy.count("/c/").await.unwrap(), 20);
    // The old watch ends (after whatever it had buffered).
    while let Some(Ok(_)) = common::next(&mut watch).await {}
    assert!(is_compacted(&sleepy.watch("/c/", 5).await).is_some());
}

const CHILD_ENV: &str = "KUBELAB_STORE_KILL9_DB";

/// Not a test on its own: the child process of `acknowledged_writes_survive_kill_9`. Writes from
/// 16 tasks forever, printing each acknowledged write, until it is killed.
#[test]
fn kill9_child_writer() {
    let Ok(path) = std::env::var(CHILD_ENV) else {
        return;
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async move {
        let store = Arc::new(SqliteStore::open(&path, SqliteOptions::default()).unwrap());
        let tasks: Vec<_> = (0..16)
            .map(|task| {
                let store = Arc::clone(&store);
                tokio::spawn(async move {
                    for i in 0.. {
                        let key = format!("/kill/{task}/{i}");
                        let kv = store.create(&key, key.clone().into_bytes()).await.unwrap();
                        let mut stdout = std::io::stdout().lock();
                        writeln!(stdout, "ACK {} {key}", kv.mod_revision).unwrap();
                        stdout.flush().unwrap();
                    }
                })
            })
            .collect();
        for task in tasks {
            task.await.unwrap();
        }
    });
}

#[tokio::test]
async fn acknowledged_writes_survive_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.db");
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "kill9_child_writer",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_ENV, &path)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut acknowledged = Vec::new();
    while acknowledged.len() < 2000 {
        let line = lines
            .next()
            .expect("child exited before acknowledging 2000 writes")
            .unwrap();
        if let Some(ack) = line.strip_prefix("ACK ") {
            acknowledged.push(ack.to_owned());
        }
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    // Acknowledgements already in the pipe when the child died count too.
    for line in lines {
        if let Some(ack) = line.unwrap().strip_prefix("ACK ") {
            acknowledged.push(ack.to_owned());
        }
    }

    let store = open(&path);
    let mut highest = 0;
    for ack in &acknowledged {
        let (revision, key) = ack.split_once(' ').unwrap();
        let revision: i64 = revision.parse().unwrap();
        highest = highest.max(revision);
        let kv = store
            .get(key)
            .await
            .unwrap()
            .unwrap_or_else(|| panic!("acknowledged write {key} at {revision} lost"));
        assert_eq!(kv.mod_revision, revision);
        assert_eq!(kv.value, key.as_bytes());
    }
    assert!(store.current_revision() >= highest);
    // The log has no gaps: replaying it from 0 yields every revision once.
    let mut stream = store.watch("/kill/", 0).await.unwrap();
    for revision in 1..=store.current_revision() {
        assert_eq!(next_event(&mut stream).await.revision(), revision);
    }
}
