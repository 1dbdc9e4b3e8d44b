//! Acceptance test: a kube-rs watch sees every write exactly once and in resourceVersion order,
//! and acknowledged writes survive a SIGKILL of the server; the watch resumes after a restart.

mod common;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::TestServer;
use futures::StreamExt;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams, WatchEvent, WatchParams};

const NAMESPACE: &str = "durable";
const WRITERS: usize = 8;
const PER_WRITER: usize = 125;

/// What the watcher has seen.
#[derive(Default)]
struct Seen {
    /// (event type, name, resourceVersion) in arrival order; cleared never.
    events: Vec<(&'static str, String, u64)>,
    /// name -> resourceVersion, maintained from events (and re-lists).
    view: BTreeMap<String, u64>,
    last_rv: u64,
    violations: Vec<String>,
    relists: usize,
    reconnects: usize,
}

fn parse_rv(rv: Option<&String>) -> Result<u64, String> {
    let rv = rv.ok_or("object without resourceVersion")?;
    rv.parse()
        .map_err(|e| format!("resourceVersion {rv:?} is not an integer: {e}"))
}

fn configmap(name: &str, gen: &str) -> ConfigMap {
    serde_json::from_value(serde_json::json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": name},
        "data": {"gen": gen}
    }))
    .unwrap()
}

/// Published in every namespace by the serviceaccount controller; not one of the test's writes.
const SYSTEM_CONFIGMAP: &str = "kube-root-ca.crt";

async fn relist(api: &Api<ConfigMap>, seen: &Mutex<Seen>) -> Result<(), kube::Error> {
    let list = api.list(&ListParams::default()).await?;
    let mut s = seen.lock().unwrap();
    s.view.clear();
    for cm in list
        .items
        .iter()
        .filter(|cm| cm.metadata.name.as_deref() != Some(SYSTEM_CONFIGMAP))
    {
        match parse_rv(cm.metadata.resource_version.as_ref()) {
            Ok(rv) => {
                s.view
                    .insert(cm.metadata.name.clone().unwrap_or_default(), rv);
            }
            Err(e) => s.violations.push(format!("list item: {e}")),
        }
    }
    match parse_rv(list.metadata.resource_version.as_ref()) {
        Ok(rv) => s.last_rv = rv,
        Err(e) => s.violations.push(format!("list: {e}")),
    }
    Ok(())
}

/// A raw `Api::watch` loop: resumes from the last seen resourceVersion (or bookmark) whenever the
/// stream ends or breaks, re-lists after 410 Gone.
async fn watch_loop(api: Api<ConfigMap>, seen: Arc<Mutex<Seen>>, stop: Arc<AtomicBool>) {
    while let Err(e) = relist(&api, &seen).await {
        seen.lock()
            .unwrap()
            .violations
            .push(format!("initial list failed: {e}"));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    while !stop.load(Ordering::SeqCst) {
        let from = seen.lock().unwrap().last_rv.to_string();
        let stream = match api.watch(&WatchParams::default().timeout(290), &from).await {
            Ok(stream) => stream,
            Err(_) => {
                seen.lock().unwrap().reconnects += 1;
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let mut stream = std::pin::pin!(stream);
        loop {
            let next = tokio::select! {
                next = stream.next() => next,
                _ = tokio::time::sleep(Duration::from_millis(200)) => {
                    if stop.load(Ordering::SeqCst) { return; }
                    continue;
                }
            };
            let (ty, cm) = match next {
                Some(Ok(WatchEvent::Added(cm))) => ("ADDED", cm),
                Some(Ok(WatchEvent::Modified(cm))) => ("MODIFIED", cm),
                Some(Ok(WatchEvent::Deleted(cm))) => ("DELETED", cm),
                Some(Ok(WatchEvent::Bookmark(b))) => {
                    let mut s = seen.lock().unwrap();
                    match b.metadata.resource_version.parse::<u64>() {
                        Ok(rv) if rv >= s.last_rv => s.last_rv = rv,
                        Ok(rv) => {
                            let msg = format!("bookmark {rv} older than last seen {}", s.last_rv);
                            s.violations.push(msg);
                        }
                        Err(e) => s.violations.push(format!("bookmark RV: {e}")),
                    }
                    continue;
                }
                Some(Ok(WatchEvent::Error(status))) if status.code == 410 => {
                    if relist(&api, &seen).await.is_err() {
                        seen.lock().unwrap().reconnects += 1;
                    }
                    seen.lock().unwrap().relists += 1;
                    break;
                }
                Some(Ok(WatchEvent::Error(status))) => {
                    seen.lock()
                        .unwrap()
                        .violations
                        .push(format!("watch ERROR event: {status:?}"));
                    break;
                }
                Some(Err(_)) | None => {
                    seen.lock().unwrap().reconnects += 1;
                    break;
                }
            };
            let name = cm.metadata.name.clone().unwrap_or_default();
            if name == SYSTEM_CONFIGMAP {
                continue;
            }
            let mut s = seen.lock().unwrap();
            match parse_rv(cm.metadata.resource_version.as_ref()) {
                Ok(rv) => {
                    if rv <= s.last_rv {
                        let msg = format!(
                            "{ty} {name} at resourceVersion {rv} after {} (not strictly increasing)",
                            s.last_rv
                        );
                        s.violations.push(msg);
                    }
                    s.last_rv = s.last_rv.max(rv);
                    if ty == "DELETED" {
                        s.view.remove(&name);
                    } else {
                        s.view.insert(name.clone(), rv);
                    }
                    s.events.push((ty, name, rv));
                }
                Err(e) => s.violations.push(format!("{ty} {name}: {e}")),
            }
        }
    }
}

/// The server's current (name -> resourceVersion) for the namespace.
async fn server_view(api: &Api<ConfigMap>) -> BTreeMap<String, u64> {
    api.list(&ListParams::default())
        .await
        .expect("list")
        .items
        .into_iter()
        .filter(|cm| cm.metadata.name.as_deref() != Some(SYSTEM_CONFIGMAP))
        .map(|cm| {
            let rv = parse_rv(cm.metadata.resource_version.as_ref()).unwrap();
            (cm.metadata.name.unwrap_or_default(), rv)
        })
        .collect()
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Write {
    Create,
    Update,
}

#[test]
fn watch_sees_every_write_in_order_and_acknowledged_writes_survive_kill9() {
    let server = TestServer::start();
    server.create_namespace(NAMESPACE);
    server.block_on(async {
        tokio::time::timeout(Duration::from_secs(300), scenario(&server))
            .await
            .expect("scenario did not finish within 300 s");
    });
}

async fn scenario(server: &TestServer) {
    let watch_api: Api<ConfigMap> = Api::namespaced(server.client().await, NAMESPACE);
    let seen = Arc::new(Mutex::new(Seen::default()));
    let stop = Arc::new(AtomicBool::new(false));
    let watcher = tokio::spawn(watch_loop(watch_api.clone(), seen.clone(), stop.clone()));
    // The watch starts from the list's resourceVersion, so writes may begin once it is known.
    let until = Instant::now() + Duration::from_secs(30);
    while seen.lock().unwrap().last_rv == 0 {
        assert!(Instant::now() < until, "watcher never listed");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    // Phase 1: 8 writers x 125 creates.
    let started = Instant::now();
    let mut writers = Vec::new();
    for w in 0..WRITERS {
        let api: Api<ConfigMap> = Api::namespaced(server.client().await, NAMESPACE);
        writers.push(tokio::spawn(async move {
            let mut created = Vec::new();
            for j in 0..PER_WRITER {
                let name = format!("p1-w{w}-{j:03}");
                let cm = api
                    .create(&PostParams::default(), &configmap(&name, "1"))
                    .await
                    .unwrap_or_else(|e| panic!("create {name}: {e}"));
                created.push((
                    name,
                    parse_rv(cm.metadata.resource_version.as_ref()).unwrap(),
                ));
            }
            created
        }));
    }
    let mut created: BTreeMap<String, u64> = BTreeMap::new();
    for writer in writers {
        created.extend(writer.await.expect("writer task"));
    }
    eprintln!(
        "phase 1: {} creates in {:?}",
        created.len(),
        started.elapsed()
    );
    assert_eq!(created.len(), WRITERS * PER_WRITER);
    let mut rvs: Vec<u64> = created.values().copied().collect();
    rvs.sort_unstable();
    rvs.dedup();
    assert_eq!(
        rvs.len(),
        created.len(),
        "two creates returned the same resourceVersion"
    );

    let until = Instant::now() + Duration::from_secs(60);
    loop {
        let n = seen.lock().unwrap().events.len();
        if n >= created.len() {
            break;
        }
        assert!(
            Instant::now() < until,
            "watcher saw {n} of {} events within 60 s",
            created.len()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    {
        let s = seen.lock().unwrap();
        assert!(
            s.violations.is_empty(),
            "phase 1 watch violations:\n{}",
            s.violations.join("\n")
        );
        assert_eq!(s.relists, 0, "phase 1 needed a re-list");
        let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
        for (ty, name, rv) in &s.events {
            assert_eq!(*ty, "ADDED", "unexpected {ty} {name} in phase 1");
            let want = created
                .get(name)
                .unwrap_or_else(|| panic!("event for unknown {name}"));
            assert_eq!(
                rv, want,
                "ADDED {name} carries a resourceVersion other than its create's"
            );
            *counts.entry(name).or_default() += 1;
        }
        let dupes: Vec<_> = counts.iter().filter(|(_, c)| **c > 1).collect();
        assert!(dupes.is_empty(), "events seen more than once: {dupes:?}");
        assert_eq!(counts.len(), created.len(), "missing events");
    }

    // Phase 2: creates and updates; SIGKILL the server part-way through.
    let phase1_events = seen.lock().unwrap().events.len();
    let acked = Arc::new(AtomicUsize::new(0));
    let killed = Arc::new(AtomicBool::new(false));
    let mut writers = Vec::new();
    for w in 0..WRITERS {
        let api: Api<ConfigMap> = Api::namespaced(server.client().await, NAMESPACE);
        let acked = acked.clone();
        let killed = killed.clone();
        writers.push(tokio::spawn(async move {
            let mut done: Vec<(Write, String)> = Vec::new();
            let mut unexpected = None;
            for j in 0..PER_WRITER {
                let (write, name, result) = if j % 2 == 0 {
                    let name = format!("p2-w{w}-{j:03}");
                    let r = api
                        .create(&PostParams::default(), &configmap(&name, "2"))
                        .await;
                    (Write::Create, name, r)
                } else {
                    let name = format!("p1-w{w}-{j:03}");
                    let patch = Patch::Merge(serde_json::json!({"data": {"gen": "2"}}));
                    let r = api.patch(&name, &PatchParams::default(), &patch).await;
                    (Write::Update, name, r)
                };
                match result {
                    Ok(_) => {
                        done.push((write, name));
                        acked.fetch_add(1, Ordering::SeqCst);
                    }
                    Err(e) => {
                        if !killed.load(Ordering::SeqCst) {
                            unexpected = Some(format!("{write:?} {name} before the kill: {e}"));
                        }
                        break;
                    }
                }
            }
            (done, unexpected)
        }));
    }
    let total = WRITERS * PER_WRITER;
    let until = Instant::now() + Duration::from_secs(60);
    while acked.load(Ordering::SeqCst) < total / 3 {
        assert!(Instant::now() < until, "phase 2 writes stalled");
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    killed.store(true, Ordering::SeqCst);
    tokio::task::block_in_place(|| server.kill9());
    let at_kill = acked.load(Ordering::SeqCst);
    let mut acknowledged = Vec::new();
    for writer in writers {
        let (done, unexpected) = writer.await.expect("writer task");
        assert!(unexpected.is_none(), "{}", unexpected.unwrap());
        acknowledged.extend(done);
    }
    eprintln!(
        "phase 2: killed after {at_kill} acknowledged writes ({} in the end)",
        acknowledged.len()
    );
    assert!(
        acknowledged.len() < total,
        "all phase 2 writes finished before the kill; the test proved nothing"
    );

    tokio::task::block_in_place(|| server.restart());

    // (b) every acknowledged write is there.
    let check: Api<ConfigMap> = Api::namespaced(server.client().await, NAMESPACE);
    let objects: BTreeMap<String, ConfigMap> = check
        .list(&ListParams::default())
        .await
        .expect("list after restart")
        .items
        .into_iter()
        .map(|cm| (cm.metadata.name.clone().unwrap_or_default(), cm))
        .collect();
    let mut lost = Vec::new();
    for name in created.keys() {
        if !objects.contains_key(name) {
            lost.push(format!("phase 1 create {name}"));
        }
    }
    for (write, name) in &acknowledged {
        let gen = objects
            .get(name)
            .and_then(|cm| cm.data.as_ref())
            .and_then(|d| d.get("gen"))
            .map(String::as_str);
        if gen != Some("2") {
            lost.push(format!(
                "acknowledged {write:?} of {name} (gen now {gen:?})"
            ));
        }
    }
    assert!(
        lost.is_empty(),
        "writes lost across kill -9:\n{}",
        lost.join("\n")
    );

    // (a) the watcher resumes: more writes after the restart, then its view equals the list.
    for i in 0..20 {
        check
            .create(
                &PostParams::default(),
                &configmap(&format!("p3-{i:02}"), "3"),
            )
            .await
            .expect("create after restart");
    }
    let until = Instant::now() + Duration::from_secs(60);
    loop {
        let truth = server_view(&check).await;
        let (view, relists, reconnects, violations) = {
            let s = seen.lock().unwrap();
            (
                s.view.clone(),
                s.relists,
                s.reconnects,
                s.violations.clone(),
            )
        };
        assert!(
            violations.is_empty(),
            "watch violations:\n{}",
            violations.join("\n")
        );
        if view == truth {
            let after = seen.lock().unwrap().events.len() - phase1_events;
            eprintln!(
                "watcher converged: {} objects, {after} events after phase 1, {relists} re-lists, {reconnects} reconnects",
                truth.len()
            );
            break;
        }
        if Instant::now() >= until {
            let missing: Vec<_> = truth
                .iter()
                .filter(|(k, v)| view.get(*k) != Some(v))
                .take(10)
                .collect();
            let extra: Vec<_> = view
                .iter()
                .filter(|(k, _)| !truth.contains_key(*k))
                .take(10)
                .collect();
            panic!(
                "watcher view differs from the server's list after 60 s ({relists} re-lists, {reconnects} reconnects)\n\
                 missing or stale (name, rv): {missing:?}\nextra: {extra:?}"
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    stop.store(true, Ordering::SeqCst);
    let _ = tokio::time::timeout(Duration::from_secs(5), watcher).await;
}
