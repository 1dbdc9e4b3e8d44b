//! Deployment and ReplicaSet controllers, end to end: `kubelab server --fake-nodes 3` (the
//! scheduler binds, the simulated nodes run the pods) driven by real kubectl 1.32, with kube-rs
//! watchers checking the rollout invariants at every pod event.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{eventually, Kubectl, TestServer};
use futures::StreamExt;
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams};
use kube::runtime::watcher;
use kube::ResourceExt;
use serde_json::json;

const DEADLINE: Duration = Duration::from_secs(60);

fn kubectl() -> Kubectl {
    Kubectl::new("1.32")
}

fn server() -> TestServer {
    TestServer::start_args(&["--fake-nodes", "3"])
}

fn is_ready(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

fn terminating(pod: &Pod) -> bool {
    pod.metadata.deletion_timestamp.is_some()
}

// ---- watching pods --------------------------------------------------------------------------

/// A kube-rs watch of the pods matching a selector that evaluates `check` on the full set of
/// pods after every event and keeps every complaint.
struct PodWatch {
    complaints: Arc<Mutex<Vec<String>>>,
    events: Arc<Mutex<usize>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for PodWatch {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl PodWatch {
    fn start(
        server: &TestServer,
        ns: &str,
        selector: &str,
        check: impl Fn(&BTreeMap<String, Pod>) -> Option<String> + Send + 'static,
    ) -> PodWatch {
        let complaints = Arc::new(Mutex::new(Vec::new()));
        let events = Arc::new(Mutex::new(0));
        let synced = Arc::new(Mutex::new(false));
        let (c, e, s) = (complaints.clone(), events.clone(), synced.clone());
        let ns = ns.to_string();
        let selector = selector.to_string();
        let (api, runtime) = server.block_on(async {
            let api: Api<Pod> = Api::namespaced(server.client().await, &ns);
            (api, tokio::runtime::Handle::current())
        });
        let task = runtime.spawn(async move {
            let mut pods: BTreeMap<String, Pod> = BTreeMap::new();
            // A (re)list builds the next state aside; it replaces the current one when done.
            let mut relist: BTreeMap<String, Pod> = BTreeMap::new();
            let mut stream = watcher(api, watcher::Config::default().labels(&selector)).boxed();
            while let Some(event) = stream.next().await {
                match event {
                    Ok(watcher::Event::Init) => {
                        relist.clear();
                        continue;
                    }
                    Ok(watcher::Event::InitApply(p)) => {
                        relist.insert(p.name_any(), p);
                        continue;
                    }
                    Ok(watcher::Event::InitDone) => {
                        pods = std::mem::take(&mut relist);
                        *s.lock().unwrap() = true;
                    }
                    Ok(watcher::Event::Apply(p)) => {
                        pods.insert(p.name_any(), p);
                    }
                    Ok(watcher::Event::Delete(p)) => {
                        pods.remove(&p.name_any());
                    }
                    Err(_) => continue,
                }
                *e.lock().unwrap() += 1;
                if let Some(complaint) = check(&pods) {
                    c.lock().unwrap().push(complaint);
                }
            }
        });
        eventually("the pod watch is established", DEADLINE, || {
            synced.lock().unwrap().then_some(())
        });
        PodWatch {
            complaints,
            events,
            task,
        }
    }

    fn assert_clean(&self, what: &str) {
        let complaints = self.complaints.lock().unwrap();
        assert!(
            complaints.is_empty(),
            "{what}: {} violations, first ones:\n{}",
            complaints.len(),
            complaints
                .iter()
                .take(10)
                .cloned()
                .collect::<Vec<_>>()
                .join("\n")
        );
        assert!(
            *self.events.lock().unwrap() > 0,
            "{what}: the watch saw no event"
        );
    }
}

// ---- helpers --------------------------------------------------------------------------------

fn pods(server: &TestServer, ns: &str, selector: &str) -> Vec<Pod> {
    server.block_on(async {
        let api: Api<Pod> = Api::namespaced(server.client().await, ns);
        api.list(&ListParams::default().labels(selector))
            .await
            .expect("list pods")
            .items
    })
}

fn replica_sets(server: &TestServer, ns: &str) -> Vec<ReplicaSet> {
    server.block_on(async {
        let api: Api<ReplicaSet> = Api::namespaced(server.client().await, ns);
        api.list(&ListParams::default())
            .await
            .expect("list replicasets")
            .items
    })
}

fn deployment(server: &TestServer, ns: &str, name: &str) -> Deployment {
    server.block_on(async {
        let api: Api<Deployment> = Api::namespaced(server.client().await, ns);
        api.get(name).await.expect("get deployment")
    })
}

fn image_of(pod: &Pod) -> String {
    pod.spec
        .as_ref()
        .and_then(|s| s.containers.first())
        .and_then(|c| c.image.clone())
        .unwrap_or_default()
}

/// Waits until exactly `count` live pods match `selector`, all Ready and running `image`.
fn wait_for_pods(
    server: &TestServer,
    ns: &str,
    selector: &str,
    count: usize,
    image: &str,
) -> Vec<Pod> {
    eventually(
        &format!("{count} ready pods of {selector} with {image}"),
        DEADLINE,
        || {
            let live: Vec<Pod> = pods(server, ns, selector)
                .into_iter()
                .filter(|p| !terminating(p))
                .collect();
            (live.len() == count && live.iter().all(|p| is_ready(p) && image_of(p) == image))
                .then_some(live)
        },
    )
}

fn rollout_status(server: &TestServer, k: &Kubectl, ns: &str, name: &str) -> String {
    let object = format!("deploy/{name}");
    server.ok(
        k,
        &["rollout", "status", &object, "-n", ns, "--timeout=60s"],
    )
}

fn revisions(history: &str) -> Vec<String> {
    history
        .lines()
        .skip_while(|l| !l.starts_with("REVISION"))
        .skip(1)
        .filter_map(|l| l.split_whitespace().next().map(str::to_owned))
        .collect()
}

fn events(server: &TestServer, k: &Kubectl, ns: &str) -> String {
    server.ok(
        k,
        &[
            "get",
            "events",
            "-n",
            ns,
            "-o",
            "custom-columns=REASON:.reason,OBJECT:.involvedObject.name,MESSAGE:.message",
        ],
    )
}

// ---- tests ----------------------------------------------------------------------------------

// Acceptance 1: create deployment, rollout status, 3 pods Running.
#[test]
fn create_deployment_rolls_out_three_running_pods() {
    let server = server();
    let k = kubectl();
    let ns = "create";
    server.create_namespace(ns);
    server.ok(
        &k,
        &[
            "create",
            "deployment",
            "web",
            "--image=busybox",
            "--replicas=3",
            "-n",
            ns,
        ],
    );
    let out = rollout_status(&server, &k, ns, "web");
    assert!(
        out.contains("deployment \"web\" successfully rolled out"),
        "{out}"
    );

    let pods = wait_for_pods(&server, ns, "app=web", 3, "busybox");
    assert!(pods
        .iter()
        .all(|p| p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running")));
    let rss = replica_sets(&server, ns);
    assert_eq!(rss.len(), 1, "one ReplicaSet");
    let rs = &rss[0];
    let hash = rs.labels()["pod-template-hash"].clone();
    assert_eq!(rs.name_any(), format!("web-{hash}"));
    assert_eq!(rs.annotations()["deployment.kubernetes.io/revision"], "1");
    assert_eq!(
        rs.annotations()["deployment.kubernetes.io/desired-replicas"],
        "3"
    );
    assert_eq!(
        rs.annotations()["deployment.kubernetes.io/max-replicas"],
        "4"
    );
    let selector = rs
        .spec
        .as_ref()
        .unwrap()
        .selector
        .match_labels
        .clone()
        .unwrap();
    assert_eq!(selector.get("pod-template-hash"), Some(&hash));
    for pod in &pods {
        assert_eq!(pod.labels().get("pod-template-hash"), Some(&hash));
        assert!(
            pod.name_any().starts_with(&format!("web-{hash}-")),
            "{}",
            pod.name_any()
        );
        let owner = &pod.metadata.owner_references.as_ref().unwrap()[0];
        assert_eq!(
            (owner.kind.as_str(), owner.name.as_str()),
            ("ReplicaSet", rs.name_any().as_str())
        );
        assert_eq!(
            (owner.controller, owner.block_owner_deletion),
            (Some(true), Some(true))
        );
    }

    let d = deployment(&server, ns, "web");
    let status = d.status.clone().unwrap();
    assert_eq!(status.observed_generation, d.metadata.generation);
    assert_eq!(
        (
            status.replicas,
            status.updated_replicas,
            status.ready_replicas,
            status.available_replicas
        ),
        (Some(3), Some(3), Some(3), Some(3))
    );
    let conditions: BTreeMap<String, (String, String)> = status
        .conditions
        .unwrap()
        .into_iter()
        .map(|c| (c.type_, (c.status, c.reason.unwrap_or_default())))
        .collect();
    assert_eq!(
        conditions["Available"],
        ("True".into(), "MinimumReplicasAvailable".into())
    );
    assert_eq!(
        conditions["Progressing"],
        ("True".into(), "NewReplicaSetAvailable".into())
    );
    assert_eq!(d.annotations()["deployment.kubernetes.io/revision"], "1");

    let table = server.ok(&k, &["get", "deploy", "web", "-n", ns]);
    assert!(
        table.lines().nth(1).is_some_and(
            |l| l.split_whitespace().take(4).collect::<Vec<_>>() == ["web", "3/3", "3", "3"]
        ),
        "{table}"
    );
    let ev = events(&server, &k, ns);
    assert!(
        ev.contains(&format!("Scaled up replica set web-{hash} to 3")),
        "{ev}"
    );
    assert!(
        ev.contains("SuccessfulCreate") && ev.contains(&format!("Created pod: web-{hash}-")),
        "{ev}"
    );
    // describe finds the ReplicaSets and the events (field-selected by involvedObject).
    let described = server.ok(&k, &["describe", "deploy", "web", "-n", ns]);
    let new_rs = format!("web-{hash} (3/3 replicas created)");
    assert!(
        described
            .lines()
            .any(|l| l.starts_with("NewReplicaSet:") && l.ends_with(&new_rs)),
        "{described}"
    );
    for text in [
        "3 desired | 3 updated | 3 total | 3 available | 0 unavailable",
        "ScalingReplicaSet",
    ] {
        assert!(described.contains(text), "no {text:?} in:\n{described}");
    }
}

// Acceptance 2: set image rolls within maxSurge/maxUnavailable; history, undo, restart,
// pause/resume; and 3: scale up and down.
#[test]
fn rolling_update_history_undo_restart_pause_and_scale() {
    let server = server();
    let k = kubectl();
    let ns = "roll";
    server.create_namespace(ns);
    let manifest = json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "web", "namespace": ns},
        "spec": {
            "replicas": 4,
            "selector": {"matchLabels": {"app": "web"}},
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 1}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [{"name": "busybox", "image": "busybox:1.36"}]}
            }
        }
    });
    server.ok_stdin(&k, &["create", "-f", "-"], &manifest.to_string());
    rollout_status(&server, &k, ns, "web");
    wait_for_pods(&server, ns, "app=web", 4, "busybox:1.36");

    // replicas 4, maxSurge 1, maxUnavailable 1: at every pod event at least 3 pods are
    // available and at most 5 exist.
    let max_total = Arc::new(Mutex::new(0usize));
    let seen_max = max_total.clone();
    let watch = PodWatch::start(&server, ns, "app=web", move |pods| {
        let live: Vec<&Pod> = pods.values().filter(|p| !terminating(p)).collect();
        let available = live.iter().filter(|p| is_ready(p)).count();
        let mut m = seen_max.lock().unwrap();
        *m = (*m).max(live.len());
        let names = || {
            live.iter()
                .map(|p| {
                    format!(
                        "{}({})",
                        p.name_any(),
                        if is_ready(p) { "ready" } else { "not ready" }
                    )
                })
                .collect::<Vec<_>>()
                .join(" ")
        };
        if available < 3 {
            Some(format!("only {available} available: {}", names()))
        } else if live.len() > 5 {
            Some(format!("{} pods: {}", live.len(), names()))
        } else {
            None
        }
    });
    server.ok(
        &k,
        &[
            "set",
            "image",
            "deploy/web",
            "busybox=busybox:1.37",
            "-n",
            ns,
        ],
    );
    rollout_status(&server, &k, ns, "web");
    wait_for_pods(&server, ns, "app=web", 4, "busybox:1.37");
    watch.assert_clean("set image");
    assert_eq!(*max_total.lock().unwrap(), 5, "the rollout used its surge");
    drop(watch);

    // The change cause annotated on the Deployment is copied to its current ReplicaSet.
    server.ok(
        &k,
        &[
            "annotate",
            "deploy/web",
            "kubernetes.io/change-cause=image 1.37",
            "-n",
            ns,
        ],
    );
    let history = eventually("rollout history shows the change cause", DEADLINE, || {
        let out = server.ok(&k, &["rollout", "history", "deploy/web", "-n", ns]);
        out.lines()
            .any(|l| l.split_whitespace().collect::<Vec<_>>() == ["2", "image", "1.37"])
            .then_some(out)
    });
    assert_eq!(revisions(&history), ["1", "2"], "{history}");
    assert!(
        history
            .lines()
            .any(|l| l.split_whitespace().collect::<Vec<_>>() == ["1", "<none>"]),
        "{history}"
    );
    let ev = events(&server, &k, ns);
    assert!(ev.contains("Scaled down replica set web-"), "{ev}");

    // undo: back to 1.36; the old ReplicaSet is reused and becomes revision 3.
    let old_rs: BTreeSet<String> = replica_sets(&server, ns)
        .iter()
        .map(|r| r.name_any())
        .collect();
    server.ok(&k, &["rollout", "undo", "deploy/web", "-n", ns]);
    rollout_status(&server, &k, ns, "web");
    wait_for_pods(&server, ns, "app=web", 4, "busybox:1.36");
    let history = server.ok(&k, &["rollout", "history", "deploy/web", "-n", ns]);
    assert_eq!(revisions(&history), ["2", "3"], "{history}");
    let after_undo: BTreeSet<String> = replica_sets(&server, ns)
        .iter()
        .map(|r| r.name_any())
        .collect();
    assert_eq!(after_undo, old_rs, "undo reuses the old ReplicaSet");
    let d = deployment(&server, ns, "web");
    assert_eq!(d.annotations()["deployment.kubernetes.io/revision"], "3");

    // restart: a new ReplicaSet (the template gains restartedAt).
    server.ok(&k, &["rollout", "restart", "deploy/web", "-n", ns]);
    rollout_status(&server, &k, ns, "web");
    let after_restart = replica_sets(&server, ns);
    assert_eq!(after_restart.len(), 3, "restart made a new ReplicaSet");
    let newest = after_restart
        .iter()
        .find(|r| {
            r.annotations()
                .get("deployment.kubernetes.io/revision")
                .map(String::as_str)
                == Some("4")
        })
        .expect("a revision 4 ReplicaSet");
    assert!(newest
        .spec
        .as_ref()
        .unwrap()
        .template
        .as_ref()
        .unwrap()
        .metadata
        .as_ref()
        .unwrap()
        .annotations
        .as_ref()
        .unwrap()
        .contains_key("kubectl.kubernetes.io/restartedAt"));
    wait_for_pods(&server, ns, "app=web", 4, "busybox:1.36");

    // pause: a template change is observed but not rolled out; resume rolls it.
    server.ok(&k, &["rollout", "pause", "deploy/web", "-n", ns]);
    server.ok(
        &k,
        &[
            "set",
            "image",
            "deploy/web",
            "busybox=busybox:1.38",
            "-n",
            ns,
        ],
    );
    eventually("the paused change is observed", DEADLINE, || {
        let d = deployment(&server, ns, "web");
        let status = d.status.clone()?;
        let paused = status
            .conditions?
            .iter()
            .any(|c| c.type_ == "Progressing" && c.reason.as_deref() == Some("DeploymentPaused"));
        (paused && status.observed_generation >= d.metadata.generation).then_some(())
    });
    let images: Vec<String> = replica_sets(&server, ns)
        .iter()
        .map(|r| {
            r.spec
                .as_ref()
                .unwrap()
                .template
                .as_ref()
                .unwrap()
                .spec
                .as_ref()
                .unwrap()
                .containers[0]
                .image
                .clone()
                .unwrap()
        })
        .collect();
    assert!(
        !images.contains(&"busybox:1.38".to_string()),
        "no rollout while paused: {images:?}"
    );
    assert!(pods(&server, ns, "app=web")
        .iter()
        .all(|p| image_of(p) == "busybox:1.36"));
    server.ok(&k, &["rollout", "resume", "deploy/web", "-n", ns]);
    rollout_status(&server, &k, ns, "web");
    wait_for_pods(&server, ns, "app=web", 4, "busybox:1.38");

    // scale up and down.
    server.ok(&k, &["scale", "deploy/web", "--replicas=6", "-n", ns]);
    rollout_status(&server, &k, ns, "web");
    wait_for_pods(&server, ns, "app=web", 6, "busybox:1.38");
    server.ok(&k, &["scale", "deploy/web", "--replicas=2", "-n", ns]);
    rollout_status(&server, &k, ns, "web");
    wait_for_pods(&server, ns, "app=web", 2, "busybox:1.38");
    // As upstream, `rollout status` may succeed before the scaled-down pods are counted out;
    // the status follows.
    eventually("the status counts 2 replicas", DEADLINE, || {
        let status = deployment(&server, ns, "web").status?;
        (status.replicas == Some(2) && status.available_replicas == Some(2)).then_some(())
    });
}

// Recreate: old pods are gone before any new pod exists.
#[test]
fn recreate_never_runs_old_and_new_pods_together() {
    let server = server();
    let k = kubectl();
    let ns = "recreate";
    server.create_namespace(ns);
    let manifest = json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "db", "namespace": ns},
        "spec": {
            "replicas": 3,
            "selector": {"matchLabels": {"app": "db"}},
            "strategy": {"type": "Recreate"},
            "template": {
                "metadata": {"labels": {"app": "db"}},
                "spec": {"containers": [{"name": "db", "image": "busybox:1.36"}]}
            }
        }
    });
    server.ok_stdin(&k, &["create", "-f", "-"], &manifest.to_string());
    rollout_status(&server, &k, ns, "db");
    wait_for_pods(&server, ns, "app=db", 3, "busybox:1.36");

    let watch = PodWatch::start(&server, ns, "app=db", |pods| {
        // Terminating pods count: they may still be running.
        let hashes: BTreeSet<&str> = pods
            .values()
            .filter_map(|p| p.labels().get("pod-template-hash").map(String::as_str))
            .collect();
        (hashes.len() > 1).then(|| {
            format!(
                "pods of {hashes:?} at once: {:?}",
                pods.keys().collect::<Vec<_>>()
            )
        })
    });
    server.ok(
        &k,
        &["set", "image", "deploy/db", "db=busybox:1.37", "-n", ns],
    );
    rollout_status(&server, &k, ns, "db");
    wait_for_pods(&server, ns, "app=db", 3, "busybox:1.37");
    watch.assert_clean("recreate");
    let ev = events(&server, &k, ns);
    assert!(
        ev.contains("Scaled down replica set db-") && ev.contains("to 0 from 3"),
        "{ev}"
    );
    drop(watch);

    // revisionHistoryLimit: 1 keeps one old ReplicaSet, the newest.
    server.ok(
        &k,
        &[
            "patch",
            "deploy/db",
            "-n",
            ns,
            "-p",
            r#"{"spec":{"revisionHistoryLimit":1}}"#,
        ],
    );
    server.ok(
        &k,
        &["set", "image", "deploy/db", "db=busybox:1.38", "-n", ns],
    );
    rollout_status(&server, &k, ns, "db");
    let kept = eventually("the oldest ReplicaSet is deleted", DEADLINE, || {
        let mut revisions: Vec<String> = replica_sets(&server, ns)
            .iter()
            .map(|r| r.annotations()["deployment.kubernetes.io/revision"].clone())
            .collect();
        revisions.sort();
        (revisions.len() == 2).then_some(revisions)
    });
    assert_eq!(kept, ["2", "3"]);
}

// progressDeadlineSeconds: a rollout that makes no progress fails `rollout status`.
#[test]
fn stuck_rollout_exceeds_its_progress_deadline() {
    let server = server();
    let k = kubectl();
    let ns = "stuck";
    server.create_namespace(ns);
    let manifest = json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "stuck", "namespace": ns},
        "spec": {
            "replicas": 2,
            "progressDeadlineSeconds": 2,
            "selector": {"matchLabels": {"app": "stuck"}},
            "template": {
                "metadata": {"labels": {"app": "stuck"}},
                // A readiness gate nobody sets: the pods run but never turn Ready.
                "spec": {
                    "readinessGates": [{"conditionType": "kubelab.test/never"}],
                    "containers": [{"name": "c", "image": "busybox"}]
                }
            }
        }
    });
    server.ok_stdin(&k, &["create", "-f", "-"], &manifest.to_string());
    let err = server.fails(
        &k,
        &[
            "rollout",
            "status",
            "deploy/stuck",
            "-n",
            ns,
            "--timeout=60s",
        ],
    );
    assert!(err.contains("exceeded its progress deadline"), "{err}");
    let d = deployment(&server, ns, "stuck");
    let cond = d
        .status
        .unwrap()
        .conditions
        .unwrap()
        .into_iter()
        .find(|c| c.type_ == "Progressing")
        .unwrap();
    assert_eq!(
        (cond.status.as_str(), cond.reason.as_deref()),
        ("False", Some("ProgressDeadlineExceeded"))
    );
    let available = deployment(&server, ns, "stuck")
        .status
        .unwrap()
        .conditions
        .unwrap()
        .into_iter()
        .find(|c| c.type_ == "Available")
        .unwrap();
    assert_eq!(
        available.reason.as_deref(),
        Some("MinimumReplicasUnavailable")
    );
}

// ReplicaSet: adopts an orphan with matching labels, releases a pod whose labels change,
// deletes the surplus on scale-down.
#[test]
fn replicaset_adopts_orphans_and_releases_relabelled_pods() {
    let server = server();
    let k = kubectl();
    let ns = "rs";
    server.create_namespace(ns);
    server.ok(
        &k,
        &[
            "run",
            "orphan",
            "--image=busybox",
            "--labels=app=cache",
            "-n",
            ns,
        ],
    );
    let manifest = json!({
        "apiVersion": "apps/v1", "kind": "ReplicaSet",
        "metadata": {"name": "cache", "namespace": ns},
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": {"app": "cache"}},
            "template": {
                "metadata": {"labels": {"app": "cache"}},
                "spec": {"containers": [{"name": "c", "image": "busybox"}]}
            }
        }
    });
    server.ok_stdin(&k, &["create", "-f", "-"], &manifest.to_string());
    let owned = |p: &Pod| {
        p.metadata
            .owner_references
            .iter()
            .flatten()
            .any(|o| o.kind == "ReplicaSet" && o.name == "cache" && o.controller == Some(true))
    };
    let adopted = eventually("the orphan is adopted and one pod added", DEADLINE, || {
        let all = pods(&server, ns, "app=cache");
        (all.len() == 2 && all.iter().all(owned) && all.iter().all(is_ready)).then_some(all)
    });
    assert!(adopted.iter().any(|p| p.name_any() == "orphan"));
    let rs_status = eventually("the ReplicaSet reports 2 ready", DEADLINE, || {
        let rs = replica_sets(&server, ns)
            .into_iter()
            .find(|r| r.name_any() == "cache")?;
        let s = rs.status.clone()?;
        (s.ready_replicas == Some(2) && s.available_replicas == Some(2)).then_some(rs)
    });
    let s = rs_status.status.unwrap();
    assert_eq!(
        (s.replicas, s.fully_labeled_replicas, s.observed_generation),
        (2, Some(2), rs_status.metadata.generation)
    );

    // Relabel the adopted pod: released (owner reference removed) and replaced.
    server.ok(
        &k,
        &[
            "label",
            "pod",
            "orphan",
            "app=other",
            "--overwrite",
            "-n",
            ns,
        ],
    );
    eventually(
        "the relabelled pod is released and replaced",
        DEADLINE,
        || {
            let released = pods(&server, ns, "app=other");
            let kept = pods(&server, ns, "app=cache");
            (released.len() == 1
                && released[0]
                    .metadata
                    .owner_references
                    .iter()
                    .flatten()
                    .next()
                    .is_none()
                && kept.len() == 2
                && kept.iter().all(owned))
            .then_some(())
        },
    );

    // Scale down: one deleted, with an event.
    server.ok(&k, &["scale", "rs/cache", "--replicas=1", "-n", ns]);
    eventually("one pod left", DEADLINE, || {
        (pods(&server, ns, "app=cache")
            .iter()
            .filter(|p| !terminating(p))
            .count()
            == 1)
            .then_some(())
    });
    let ev = events(&server, &k, ns);
    assert!(
        ev.contains("SuccessfulDelete") && ev.contains("Deleted pod: cache-"),
        "{ev}"
    );
    assert_eq!(
        pods(&server, ns, "app=other").len(),
        1,
        "the released pod is left alone"
    );
}

// Acceptance 3: deleting a Deployment removes its ReplicaSets and pods (garbage collector);
// --cascade=orphan leaves them; --cascade=foreground removes them before the Deployment.
#[test]
fn deleting_a_deployment_cascades_as_asked() {
    let server = server();
    let k = kubectl();
    let ns = "cascade";
    server.create_namespace(ns);
    for name in ["bg", "fg", "orphan"] {
        server.ok(
            &k,
            &[
                "create",
                "deployment",
                name,
                "--image=busybox",
                "--replicas=2",
                "-n",
                ns,
            ],
        );
    }
    for name in ["bg", "fg", "orphan"] {
        rollout_status(&server, &k, ns, name);
    }
    let replica_sets_of = |app: &str| -> Vec<ReplicaSet> {
        replica_sets(&server, ns)
            .into_iter()
            .filter(|r| r.labels().get("app").map(String::as_str) == Some(app))
            .collect()
    };

    server.ok(&k, &["delete", "deploy", "bg", "-n", ns]);
    eventually(
        "background: ReplicaSet and pods collected",
        DEADLINE,
        || {
            (replica_sets_of("bg").is_empty() && pods(&server, ns, "app=bg").is_empty())
                .then_some(())
        },
    );

    // kubectl waits until the Deployment is gone; by then its ReplicaSet must be gone too.
    server.ok(
        &k,
        &["delete", "deploy", "fg", "--cascade=foreground", "-n", ns],
    );
    assert!(
        replica_sets_of("fg").is_empty(),
        "foreground: the ReplicaSet went first"
    );
    eventually("foreground: pods collected", DEADLINE, || {
        pods(&server, ns, "app=fg").is_empty().then_some(())
    });

    server.ok(
        &k,
        &["delete", "deploy", "orphan", "--cascade=orphan", "-n", ns],
    );
    let orphaned = eventually(
        "orphan: the ReplicaSet stays, without owner",
        DEADLINE,
        || {
            let rss = replica_sets_of("orphan");
            (rss.len() == 1
                && rss[0]
                    .metadata
                    .owner_references
                    .iter()
                    .flatten()
                    .next()
                    .is_none())
            .then_some(rss)
        },
    );
    let live = pods(&server, ns, "app=orphan");
    assert_eq!(live.len(), 2, "orphan: the pods stay");
    assert!(live.iter().all(|p| p
        .metadata
        .owner_references
        .iter()
        .flatten()
        .any(|o| o.name == orphaned[0].name_any())));

    // A new Deployment with the same template adopts the orphaned ReplicaSet instead of
    // rolling out a new one: same pods, same revision.
    server.ok(
        &k,
        &[
            "create",
            "deployment",
            "orphan",
            "--image=busybox",
            "--replicas=2",
            "-n",
            ns,
        ],
    );
    rollout_status(&server, &k, ns, "orphan");
    let uid = deployment(&server, ns, "orphan").metadata.uid.unwrap();
    let adopted = eventually("the new Deployment adopts the ReplicaSet", DEADLINE, || {
        let rss = replica_sets_of("orphan");
        (rss.len() == 1
            && rss[0]
                .metadata
                .owner_references
                .iter()
                .flatten()
                .any(|o| o.uid == uid && o.controller == Some(true)))
        .then_some(rss)
    });
    assert_eq!(adopted[0].name_any(), orphaned[0].name_any());
    let now_live: BTreeSet<String> = pods(&server, ns, "app=orphan")
        .iter()
        .map(|p| p.name_any())
        .collect();
    let before: BTreeSet<String> = live.iter().map(|p| p.name_any()).collect();
    assert_eq!(now_live, before, "the adopted ReplicaSet keeps its pods");
    assert_eq!(
        deployment(&server, ns, "orphan").annotations()["deployment.kubernetes.io/revision"],
        "1"
    );
}
