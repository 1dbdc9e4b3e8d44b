//! One suite of semantic tests, run against both backends.

mod common;

use std::collections::BTreeSet;
use std::sync::Arc;

use common::{is_compacted, next, next_event, wait_until, Fixture, Options};
use kubelab_store::{Error, EventType, Revision};

fn value(text: &str) -> Vec<u8> {
    text.as_bytes().to_vec()
}

async fn crud(fixture: Fixture) {
    let store = &*fixture;
    assert_eq!(store.current_revision(), 0);
    assert_eq!(store.get("/k").await.unwrap(), None);

    let created = store.create("/k", value("one")).await.unwrap();
    assert_eq!((created.create_revision, created.mod_revision), (1, 1));
    assert_eq!(created.value, value("one"));
    assert_eq!(store.get("/k").await.unwrap(), Some(created.clone()));

    match store.create("/k", value("again")).await {
        Err(Error::AlreadyExists { key }) => assert_eq!(key, "/k"),
        other => panic!("expected AlreadyExists, got {other:?}"),
    }
    match store.update("/k", value("two"), Some(7)).await {
        Err(Error::Conflict {
            key,
            expected,
            actual,
        }) => assert_eq!((key.as_str(), expected, actual), ("/k", 7, 1)),
        other => panic!("expected Conflict, got {other:?}"),
    }
    assert!(matches!(
        store.update("/missing", value("x"), None).await,
        Err(Error::NotFound { .. })
    ));
    assert!(matches!(
        store.delete("/missing", None).await,
        Err(Error::NotFound { .. })
    ));
    // Failed writes consume no revision.
    assert_eq!(store.current_revision(), 1);

    let updated = store.update("/k", value("two"), Some(1)).await.unwrap();
    assert_eq!((updated.create_revision, updated.mod_revision), (1, 2));
    let updated = store.update("/k", value("three"), None).await.unwrap();
    assert_eq!((updated.create_revision, updated.mod_revision), (1, 3));
    assert_eq!(
        store.get("/k").await.unwrap().unwrap().value,
        value("three")
    );

    assert!(matches!(
        store.delete("/k", Some(2)).await,
        Err(Error::Conflict {
            expected: 2,
            actual: 3,
            ..
        })
    ));
    let deleted = store.delete("/k", Some(3)).await.unwrap();
    assert_eq!(deleted.value, value("three"));
    assert_eq!((deleted.create_revision, deleted.mod_revision), (1, 4));
    assert_eq!(store.get("/k").await.unwrap(), None);
    assert!(matches!(
        store.delete("/k", None).await,
        Err(Error::NotFound { .. })
    ));

    let recreated = store.create("/k", value("four")).await.unwrap();
    assert_eq!((recreated.create_revision, recreated.mod_revision), (5, 5));
    assert_eq!(store.current_revision(), 5);
}

async fn list_and_count(fixture: Fixture) {
    let store = &*fixture;
    for key in ["/r/a/3", "/r/a/1", "/r/ab/x", "/r/a/2", "/r/b/1", "/r/a"] {
        store.create(key, value(key)).await.unwrap();
    }
    let keys = |items: &[kubelab_store::KeyValue]| {
        items.iter().map(|kv| kv.key.clone()).collect::<Vec<_>>()
    };

    let all = store.list("/r/a/", None, 0).await.unwrap();
    assert_eq!(keys(&all.items), ["/r/a/1", "/r/a/2", "/r/a/3"]);
    assert!(!all.more);
    assert_eq!(all.revision, 6);
    assert_eq!(all.items[0].value, value("/r/a/1"));

    let page = store.list("/r/a/", None, 2).await.unwrap();
    assert_eq!(keys(&page.items), ["/r/a/1", "/r/a/2"]);
    assert!(page.more);
    let rest = store.list("/r/a/", Some("/r/a/2"), 2).await.unwrap();
    assert_eq!(keys(&rest.items), ["/r/a/3"]);
    assert!(!rest.more);
    // Exactly `limit` items left: not more.
    let exact = store.list("/r/a/", Some("/r/a/1"), 2).await.unwrap();
    assert_eq!(keys(&exact.items), ["/r/a/2", "/r/a/3"]);
    assert!(!exact.more);
    // start_after before the prefix, and after everything.
    assert_eq!(
        store.list("/r/a/", Some("/"), 0).await.unwrap().items.len(),
        3
    );
    assert!(store
        .list("/r/a/", Some("/z"), 0)
        .await
        .unwrap()
        .items
        .is_empty());

    assert_eq!(store.count("/r/a/").await.unwrap(), 3);
    assert_eq!(store.count("/r/a").await.unwrap(), 5);
    assert_eq!(store.count("/r/").await.unwrap(), 6);
    assert_eq!(store.count("/nothing/").await.unwrap(), 0);
    assert_eq!(store.list("", None, 0).await.unwrap().items.len(), 6);

    // Paging through many keys returns each once, in byte order.
    let mut expected = BTreeSet::new();
    for i in (0..100).rev() {
        let key = format!("/p/{i}");
        store.create(&key, value(&key)).await.unwrap();
        expected.insert(key);
    }
    store.delete("/p/50", None).await.unwrap();
    expected.remove("/p/50");
    let mut seen = Vec::new();
    let mut start_after: Option<String> = None;
    loop {
        let page = store.list("/p/", start_after.as_deref(), 7).await.unwrap();
        assert!(page.items.len() <= 7);
        seen.extend(keys(&page.items));
        if !page.more {
            break;
        }
        start_after = seen.last().cloned();
    }
    assert_eq!(seen, expected.into_iter().collect::<Vec<_>>());
}

async fn watch_events_carry_values(fixture: Fixture) {
    let store = &*fixture;
    let mut live = store.watch("/w/", 0).await.unwrap();
    store.create("/w/a", value("1")).await.unwrap();
    store.update("/w/a", value("2"), None).await.unwrap();
    store.delete("/w/a", None).await.unwrap();
    store.create("/w/a", value("3")).await.unwrap();

    // Live, then the same history replayed from revision 0 (the SQLite fixture's small replay
    // cache is still warm here; the reopen tests cover replay from the log file).
    let mut replay = store.watch("/w/", 0).await.unwrap();
    for stream in [&mut live, &mut replay] {
        let event = next_event(stream).await;
        assert_eq!(event.event_type, EventType::Created);
        assert_eq!(
            (event.kv.value.clone(), event.revision(), event.prev.clone()),
            (value("1"), 1, None)
        );

        let event = next_event(stream).await;
        assert_eq!(event.event_type, EventType::Updated);
        assert_eq!(
            (
                event.kv.value.clone(),
                event.kv.create_revision,
                event.revision()
            ),
            (value("2"), 1, 2)
        );
        let prev = event.prev.expect("update has prev");
        assert_eq!((prev.value, prev.mod_revision), (value("1"), 1));

        let event = next_event(stream).await;
        assert_eq!(event.event_type, EventType::Deleted);
        assert_eq!((event.kv.value.clone(), event.revision()), (value("2"), 3));
        let prev = event.prev.expect("delete has prev");
        assert_eq!((prev.value, prev.mod_revision), (value("2"), 2));

        let event = next_event(stream).await;
        assert_eq!(event.event_type, EventType::Created);
        assert_eq!((event.kv.create_revision, event.revision()), (4, 4));
    }
}

async fn watch_hand_over_under_concurrent_writers(fixture: Fixture) {
    let store: Arc<Fixture> = Arc::new(fixture);
    for i in 0..50 {
        store
            .create(&format!("/c/seed/{i}"), value("seed"))
            .await
            .unwrap();
    }
    // Starts while writers run, so replay hands over to live in the middle of the traffic.
    let writers: Vec<_> = (0..8)
        .map(|task| {
            let store = Arc::clone(&store);
            tokio::spawn(async move {
                let mut revisions = Vec::new();
                for i in 0..125 {
                    let key = format!("/c/{task}/{i}");
                    let kv = if i % 5 == 4 {
                        store
                            .update(&format!("/c/{task}/{}", i - 1), value("u"), None)
                            .await
                            .unwrap()
                    } else {
                        store.create(&key, value("v")).await.unwrap()
                    };
                    revisions.push(kv.mod_revision);
                }
                revisions
            })
        })
        .collect();
    wait_until("some concurrent writes", || {
        let store = Arc::clone(&store);
        async move { store.current_revision() >= 60 }
    })
    .await;
    let mut all = store.watch("/c/", 10).await.unwrap();
    let mut task3 = store.watch("/c/3/", 0).await.unwrap();

    let mut acknowledged = Vec::new();
    for writer in writers {
        acknowledged.extend(writer.await.unwrap());
    }
    acknowledged.sort_unstable();
    let expected: Vec<Revision> = (51..=1050).collect();
    assert_eq!(
        acknowledged, expected,
        "each write gets its own revision, no gaps"
    );

    for revision in 11..=1050 {
        let event = next_event(&mut all).await;
        assert_eq!(
            event.revision(),
            revision,
            "watch yields every revision once, in order"
        );
    }
    let mut last = 0;
    for _ in 0..125 {
        let event = next_event(&mut task3).await;
        assert!(event.kv.key.starts_with("/c/3/"));
        assert!(event.revision() > last);
        last = event.revision();
    }
    // Nothing more: a further write is the next thing each stream yields.
    store.create("/c/3/final", value("f")).await.unwrap();
    assert_eq!(next_event(&mut all).await.revision(), 1051);
    assert_eq!(next_event(&mut task3).await.revision(), 1051);
}

async fn list_then_watch_under_concurrent_writers(fixture: Fixture) {
    // The API server's informer pattern: list at a revision, then watch from it. The watch must
    // start exactly after the listed revision, even while writes land in between.
    let store: Arc<Fixture> = Arc::new(fixture);
    let writers: Vec<_> = (0..4)
        .map(|task| {
            let store = Arc::clone(&store);
            tokio::spawn(async move {
                for i in 0..250 {
                    store
                        .create(&format!("/lw/{task}/{i}"), value("v"))
                        .await
                        .unwrap();
                }
            })
        })
        .collect();
    let mut checked = 0;
    while store.current_revision() < 900 {
        let listed = store.list("/lw/", None, 0).await.unwrap();
        assert_eq!(listed.items.len() as Revision, listed.revision);
        let mut stream = store.watch("/lw/", listed.revision).await.unwrap();
        if listed.revision < 1000 {
            let first = next_event(&mut stream).await;
            assert_eq!(
                first.revision(),
                listed.revision + 1,
                "watch starts right after the list"
            );
            checked += 1;
        }
    }
    for writer in writers {
        writer.await.unwrap();
    }
    assert!(checked > 0);
}

async fn watch_from_current_revision_is_live_only(fixture: Fixture) {
    let store = &*fixture;
    store.create("/l/a", value("a")).await.unwrap();
    store.create("/l/b", value("b")).await.unwrap();
    let mut stream = store.watch("/l/", store.current_revision()).await.unwrap();
    store.create("/l/c", value("c")).await.unwrap();
    let event = next_event(&mut stream).await;
    assert_eq!((event.kv.key.as_str(), event.revision()), ("/l/c", 3));
}

async fn prefix_is_a_plain_string_prefix(fixture: Fixture) {
    let store = &*fixture;
    let mut live = store.watch("/a/", 0).await.unwrap();
    for key in ["/ab/x", "/a", "/a/x", "/b/a/", "/a/y/z"] {
        store.create(key, value(key)).await.unwrap();
    }
    let mut replay = store.watch("/a/", 0).await.unwrap();
    for stream in [&mut live, &mut replay] {
        assert_eq!(next_event(stream).await.kv.key, "/a/x");
        assert_eq!(next_event(stream).await.kv.key, "/a/y/z");
    }
    store.create("/ab/y", value("")).await.unwrap();
    store.create("/a/w", value("")).await.unwrap();
    assert_eq!(next_event(&mut live).await.kv.key, "/a/w");
    assert_eq!(next_event(&mut replay).await.kv.key, "/a/w");
}

async fn forced_compaction(fixture: Fixture) {
    let store = &*fixture;
    for i in 0..5 {
        store.create(&format!("/x/{i}"), value("0")).await.unwrap();
    }
    for round in 1..=3 {
        for i in 0..5 {
            store
                .update(&format!("/x/{i}"), value(&round.to_string()), None)
                .await
                .unwrap();
        }
    }
    store.delete("/x/0", None).await.unwrap();
    assert_eq!(store.current_revision(), 21);

    assert_eq!(store.compact_to(12).await.unwrap(), 12);
    assert_eq!(store.compacted_revision(), 12);
    assert_eq!(is_compacted(&store.watch("/x/", 11).await), Some((11, 12)));
    assert_eq!(is_compacted(&store.watch("/x/", 0).await), Some((0, 12)));
    // Compacting backwards is a no-op; beyond the current revision clamps.
    assert_eq!(store.compact_to(3).await.unwrap(), 12);

    // From the compacted revision on, everything is there, with prev values.
    let mut stream = store.watch("/x/", 12).await.unwrap();
    for revision in 13..=21 {
        let event = next_event(&mut stream).await;
        assert_eq!(event.revision(), revision);
        let prev = event.prev.expect("updates and deletes carry prev");
        assert_eq!(prev.mod_revision, revision - 5, "prev of {revision}");
    }
    // Current state is untouched by compaction.
    assert_eq!(store.count("/x/").await.unwrap(), 4);
    assert_eq!(store.get("/x/1").await.unwrap().unwrap().value, value("3"));

    assert_eq!(store.compact_to(100).await.unwrap(), 21);
    assert!(is_compacted(&store.watch("/x/", 20).await).is_some());
    let mut stream = store.watch("/x/", 21).await.unwrap();
    store.create("/x/0", value("again")).await.unwrap();
    assert_eq!(next_event(&mut stream).await.revision(), 22);
}

async fn compaction_overtaking_a_replay_ends_it(fixture: Fixture) {
    let store = &*fixture;
    for i in 0..1000 {
        store.create(&format!("/o/{i}"), value("v")).await.unwrap();
    }
    let mut stream = store.watch("/o/", 0).await.unwrap();
    assert_eq!(next_event(&mut stream).await.revision(), 1);
    store.compact_to(900).await.unwrap();
    // Whatever was already replayed is yielded in order; then the stream reports the gap
    // instead of skipping it, and ends.
    let mut expected = 2;
    loop {
        match next(&mut stream).await {
            Some(Ok(event)) => {
                assert_eq!(event.revision(), expected);
                expected += 1;
            }
            Some(Err(Error::Compacted { oldest, .. })) => {
                assert_eq!(oldest, 900);
                break;
            }
            other => panic!("expected events then Compacted, got {other:?}"),
        }
    }
    assert!(expected <= 900);
    assert!(next(&mut stream).await.is_none());
}

async fn history_window_compacts_automatically(fixture: Fixture) {
    // The fixture keeps 20 revisions.
    let store = &*fixture;
    for i in 0..100 {
        store
            .create(&format!("/h/{}", i % 10), value("v"))
            .await
            .ok();
        store.delete(&format!("/h/{}", i % 10), None).await.ok();
    }
    let current = store.current_revision();
    assert_eq!(current, 200);
    wait_until("compaction to catch up with the window", || async {
        store.compacted_revision() >= current - 20 - 10
    })
    .await;
    assert!(store.compacted_revision() <= current - 20, "window is kept");
    assert!(is_compacted(&store.watch("/h/", 100).await).is_some());
    // Settle background compaction before watching from the compacted revision (a watch whose
    // replay is overtaken by compaction ends with `Compacted`, which is correct but not tested here).
    let from = store.compact_to(current - 20).await.unwrap();
    assert_eq!(from, current - 20);
    let mut stream = store.watch("/h/", from).await.unwrap();
    for revision in from + 1..=current {
        assert_eq!(next_event(&mut stream).await.revision(), revision);
    }
}

async fn slow_watcher_is_disconnected(fixture: Fixture) {
    // The fixture buffers 8 events per watcher.
    let store = &*fixture;
    let mut slow = store.watch("/s/", 0).await.unwrap();
    for i in 0..20 {
        // Writers complete although the watcher is not reading.
        store.create(&format!("/s/{i}"), value("v")).await.unwrap();
    }
    for revision in 1..=8 {
        assert_eq!(next_event(&mut slow).await.revision(), revision);
    }
    match next(&mut slow).await {
        Some(Err(Error::WatcherTooSlow { buffer })) => assert_eq!(buffer, 8),
        other => panic!("expected WatcherTooSlow, got {other:?}"),
    }
    assert!(
        next(&mut slow).await.is_none(),
        "stream ends after the error"
    );

    // A new watch from where the slow one stopped catches up by replay.
    let mut resumed = store.watch("/s/", 8).await.unwrap();
    for revision in 9..=20 {
        assert_eq!(next_event(&mut resumed).await.revision(), revision);
    }
}

async fn dropping_the_store_closes_watches(fixture: Fixture) {
    let mut stream = fixture.watch("/d/", 0).await.unwrap();
    fixture.create("/d/1", value("v")).await.unwrap();
    drop(fixture);
    assert_eq!(next_event(&mut stream).await.revision(), 1);
    assert!(matches!(next(&mut stream).await, Some(Err(Error::Closed))));
    assert!(next(&mut stream).await.is_none());
}

macro_rules! suite {
    ($backend:ident, $make:path) => {
        mod $backend {
            use super::*;

            #[tokio::test]
            async fn crud() {
                super::crud($make(Options::default())).await;
            }

            #[tokio::test]
            async fn list_and_count() {
                super::list_and_count($make(Options::default())).await;
            }

            #[tokio::test]
            async fn watch_events_carry_values() {
                super::watch_events_carry_values($make(Options::default())).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn watch_hand_over_under_concurrent_writers() {
                super::watch_hand_over_under_concurrent_writers($make(Options::default())).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn list_then_watch_under_concurrent_writers() {
                super::list_then_watch_under_concurrent_writers($make(Options::default())).await;
            }

            #[tokio::test]
            async fn watch_from_current_revision_is_live_only() {
                super::watch_from_current_revision_is_live_only($make(Options::default())).await;
            }

            #[tokio::test]
            async fn prefix_is_a_plain_string_prefix() {
                super::prefix_is_a_plain_string_prefix($make(Options::default())).await;
            }

            #[tokio::test]
            async fn forced_compaction() {
                super::forced_compaction($make(Options::default())).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn compaction_overtaking_a_replay_ends_it() {
                super::compaction_overtaking_a_replay_ends_it($make(Options::default())).await;
            }

            #[tokio::test]
            async fn history_window_compacts_automatically() {
                let options = Options {
                    history_window: 20,
                    ..Options::default()
                };
                super::history_window_compacts_automatically($make(options)).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn slow_watcher_is_disconnected() {
                let options = Options {
                    watch_buffer: 8,
                    ..Options::default()
                };
                super::slow_watcher_is_disconnected($make(options)).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn dropping_the_store_closes_watches() {
                super::dropping_the_store_closes_watches($make(Options::default())).await;
            }
        }
    };
}

suite!(memory, common::memory);
suite!(sqlite, common::sqlite);
