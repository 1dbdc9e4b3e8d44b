//! Acceptance tests of the batch controllers (job with TTL-after-finished, cronjob) and the
//! disruption controller, against `kubelab server --fake-nodes 3` and real kubectl 1.32.
//! Simulated nodes run pods with `restartPolicy: Never` for `kubelab.dev/fake-duration`
//! (default 1 s) and fail them with `kubelab.dev/fake-fail: "true"`.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::{eventually, Kubectl, TestServer};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Event;
use kube::api::{Api, ListParams, PostParams};

/// Upper bound for anything a controller should do in a few seconds.
const SOON: Duration = Duration::from_secs(30);

fn start() -> (TestServer, Kubectl) {
    (
        TestServer::start_args(&["--fake-nodes", "3"]),
        Kubectl::new("1.32"),
    )
}

fn get(server: &TestServer, k: &Kubectl, ns: &str, object: &str, path: &str) -> String {
    let arg = format!("jsonpath={{{path}}}");
    server.ok(k, &["get", object, "-n", ns, "-o", &arg])
}

/// Each line `name<TAB>value` for the objects of a list, as a map.
fn per_item(
    server: &TestServer,
    k: &Kubectl,
    ns: &str,
    what: &[&str],
    path: &str,
) -> BTreeMap<String, String> {
    let arg = format!(
        "jsonpath={{range .items[*]}}{{.metadata.name}}{{\"\\t\"}}{{{path}}}{{\"\\n\"}}{{end}}"
    );
    let mut args = vec!["get"];
    args.extend_from_slice(what);
    args.extend_from_slice(&["-n", ns, "-o", &arg]);
    server
        .ok(k, &args)
        .lines()
        .filter_map(|l| l.split_once('\t'))
        .map(|(n, v)| (n.to_string(), v.to_string()))
        .collect()
}

/// `(type, reason, message)` of a Job's conditions.
fn job_conditions(
    server: &TestServer,
    k: &Kubectl,
    ns: &str,
    job: &str,
) -> Vec<(String, String, String, String)> {
    let out = get(
        server,
        k,
        ns,
        &format!("job/{job}"),
        r#"range .status.conditions[*]}{.type}{"\t"}{.status}{"\t"}{.reason}{"\t"}{.message}{"\n"}{end"#,
    );
    out.lines()
        .map(|l| {
            let f: Vec<&str> = l.split('\t').collect();
            (
                f[0].to_string(),
                f.get(1).unwrap_or(&"").to_string(),
                f.get(2).unwrap_or(&"").to_string(),
                f.get(3).unwrap_or(&"").to_string(),
            )
        })
        .collect()
}

fn has_condition(conds: &[(String, String, String, String)], type_: &str, reason: &str) -> bool {
    conds
        .iter()
        .any(|(t, s, r, _)| t == type_ && s == "True" && r == reason)
}

/// core/v1 Events about `name` in `ns` (what `kubectl describe` shows), as (reason, message).
fn events_about(server: &TestServer, ns: &str, name: &str) -> Vec<(String, String)> {
    server.block_on(async {
        let api: Api<Event> = Api::namespaced(server.client().await, ns);
        api.list(&ListParams::default())
            .await
            .expect("list events")
            .items
            .into_iter()
            .filter(|e| e.involved_object.name.as_deref() == Some(name))
            .map(|e| (e.reason.unwrap_or_default(), e.message.unwrap_or_default()))
            .collect()
    })
}

fn job_yaml(name: &str, spec: &str, annotations: &str) -> String {
    format!(
        r#"apiVersion: batch/v1
kind: Job
metadata:
  name: {name}
spec:
{spec}
  template:
    metadata:
      annotations: {{{annotations}}}
    spec:
      restartPolicy: Never
      containers:
      - name: main
        image: busybox
"#
    )
}

// ---- Job ----

#[test]
fn job_completes_with_at_most_parallelism_pods_active() {
    let (server, k) = start();
    let ns = "jobs";
    server.create_namespace(ns);
    let mut watch = server.spawn_kubectl(
        &k,
        &[
            "get",
            "pods",
            "-n",
            ns,
            "-l",
            "job-name=par",
            "--watch",
            "-o",
            r#"jsonpath={.metadata.name} {.status.phase} {.metadata.deletionTimestamp}{"\n"}"#,
        ],
    );
    server.ok_stdin(
        &k,
        &["apply", "-n", ns, "-f", "-"],
        &job_yaml("par", "  completions: 3\n  parallelism: 2", ""),
    );
    // Follow every pod change: never more than 2 active, until 3 succeeded.
    let mut active: BTreeMap<String, bool> = BTreeMap::new();
    let mut succeeded: BTreeMap<String, bool> = BTreeMap::new();
    let mut most_active = 0;
    while succeeded.values().filter(|s| **s).count() < 3 {
        let line = watch.wait_for("a pod of job par", SOON, |_| true);
        let fields: Vec<&str> = line.split_whitespace().collect();
        let (name, phase) = (
            fields[0].to_string(),
            fields.get(1).copied().unwrap_or("Pending"),
        );
        let deleting = fields.len() > 2;
        active.insert(
            name.clone(),
            !matches!(phase, "Succeeded" | "Failed") && !deleting,
        );
        succeeded.insert(name, phase == "Succeeded");
        most_active = most_active.max(active.values().filter(|a| **a).count());
    }
    assert!(most_active <= 2, "{most_active} pods were active at once");
    assert_eq!(most_active, 2, "parallelism 2 was never reached");

    server.ok(
        &k,
        &[
            "wait",
            "-n",
            ns,
            "--for=condition=complete",
            "job/par",
            "--timeout=60s",
        ],
    );
    assert_eq!(get(&server, &k, ns, "job/par", ".status.succeeded"), "3");
    assert_eq!(get(&server, &k, ns, "job/par", ".status.active"), "0");
    assert!(!get(&server, &k, ns, "job/par", ".status.completionTime").is_empty());
    assert!(!get(&server, &k, ns, "job/par", ".status.startTime").is_empty());
    let conds = job_conditions(&server, &k, ns, "par");
    assert!(
        has_condition(&conds, "SuccessCriteriaMet", "CompletionsReached"),
        "{conds:?}"
    );
    assert!(
        has_condition(&conds, "Complete", "CompletionsReached"),
        "{conds:?}"
    );
    let table = server.ok(&k, &["get", "job", "par", "-n", ns, "--no-headers"]);
    assert!(table.contains("3/3"), "{table}");

    // Exactly three pods, from the template, owned by the Job, counted and released.
    let uid = get(&server, &k, ns, "job/par", ".metadata.uid");
    let phases = per_item(
        &server,
        &k,
        ns,
        &["pods", "-l", "job-name=par"],
        ".status.phase",
    );
    assert_eq!(phases.len(), 3, "{phases:?}");
    assert!(phases.values().all(|p| p == "Succeeded"), "{phases:?}");
    assert!(phases.keys().all(|n| n.starts_with("par-")), "{phases:?}");
    let labels = per_item(
        &server,
        &k,
        ns,
        &["pods", "-l", "job-name=par"],
        r#".metadata.labels.batch\.kubernetes\.io/controller-uid"#,
    );
    assert!(labels.values().all(|v| *v == uid), "{labels:?}");
    let owners = per_item(
        &server,
        &k,
        ns,
        &["pods", "-l", "job-name=par"],
        ".metadata.ownerReferences[0].uid",
    );
    assert!(owners.values().all(|v| *v == uid), "{owners:?}");
    let finalizers = per_item(
        &server,
        &k,
        ns,
        &["pods", "-l", "job-name=par"],
        ".metadata.finalizers",
    );
    assert!(
        finalizers.values().all(|f| !f.contains("job-tracking")),
        "tracking finalizers left: {finalizers:?}"
    );
    let events = events_about(&server, ns, "par");
    let created = events
        .iter()
        .filter(|(r, _)| r == "SuccessfulCreate")
        .count();
    assert_eq!(created, 3, "{events:?}");
    assert!(
        events
            .iter()
            .any(|(r, n)| r == "Completed" && n == "Job completed"),
        "{events:?}"
    );
    let described = server.ok(&k, &["describe", "job", "par", "-n", ns]);
    assert!(
        described.contains("SuccessfulCreate") && described.contains("Job completed"),
        "{described}"
    );
}

#[test]
fn failing_pods_exhaust_the_backoff_limit() {
    let (server, k) = start();
    let ns = "failing";
    server.create_namespace(ns);
    let fail = r#""kubelab.dev/fake-fail": "true""#;
    // One pod at a time: the replacement waits out the 10 s pod-failure backoff.
    server.ok_stdin(
        &k,
        &["apply", "-n", ns, "-f", "-"],
        &job_yaml("one", "  backoffLimit: 1", fail),
    );
    // Three at once: they fail together and exceed backoffLimit 2 without any backoff.
    server.ok_stdin(
        &k,
        &["apply", "-n", ns, "-f", "-"],
        &job_yaml(
            "three",
            "  backoffLimit: 2\n  completions: 3\n  parallelism: 3",
            fail,
        ),
    );
    server.ok(
        &k,
        &[
            "wait",
            "-n",
            ns,
            "--for=condition=failed",
            "job/three",
            "--timeout=60s",
        ],
    );
    server.ok(
        &k,
        &[
            "wait",
            "-n",
            ns,
            "--for=condition=failed",
            "job/one",
            "--timeout=60s",
        ],
    );

    for (job, failed) in [("one", "2"), ("three", "3")] {
        let conds = job_conditions(&server, &k, ns, job);
        assert!(
            has_condition(&conds, "FailureTarget", "BackoffLimitExceeded"),
            "{job}: {conds:?}"
        );
        assert!(
            has_condition(&conds, "Failed", "BackoffLimitExceeded"),
            "{job}: {conds:?}"
        );
        assert!(
            !conds.iter().any(|(t, ..)| t == "Complete"),
            "{job}: {conds:?}"
        );
        assert_eq!(
            get(&server, &k, ns, &format!("job/{job}"), ".status.failed"),
            failed,
            "{job}"
        );
        assert_eq!(
            get(&server, &k, ns, &format!("job/{job}"), ".status.active"),
            "0",
            "{job}"
        );
        let selector = format!("job-name={job}");
        let phases = per_item(&server, &k, ns, &["pods", "-l", &selector], ".status.phase");
        assert_eq!(phases.len().to_string(), failed, "{job}: {phases:?}");
        assert!(phases.values().all(|p| p == "Failed"), "{job}: {phases:?}");
        let events = events_about(&server, ns, job);
        assert!(
            events.iter().any(|(r, n)| r == "BackoffLimitExceeded"
                && n == "Job has reached the specified backoff limit"),
            "{job}: {events:?}"
        );
    }
    // The replacement pod of job one came after the backoff, not right after the failure.
    let created = per_item(
        &server,
        &k,
        ns,
        &["pods", "-l", "job-name=one"],
        ".metadata.creationTimestamp",
    );
    let times: Vec<k8s_openapi::jiff::Timestamp> =
        created.values().map(|t| t.parse().unwrap()).collect();
    let gap = (times[0].as_second() - times[1].as_second()).abs();
    assert!(
        gap >= 9,
        "replacement created {gap}s after the first pod: {created:?}"
    );
}

#[test]
fn active_deadline_fails_the_job_and_ttl_deletes_finished_jobs() {
    let (server, k) = start();
    let ns = "deadlines";
    server.create_namespace(ns);
    server.ok_stdin(
        &k,
        &["apply", "-n", ns, "-f", "-"],
        &job_yaml(
            "slow",
            "  activeDeadlineSeconds: 2\n  parallelism: 2\n  completions: 2",
            r#""kubelab.dev/fake-duration": "1h""#,
        ),
    );

    server.ok(
        &k,
        &[
            "wait",
            "-n",
            ns,
            "--for=condition=failed",
            "job/slow",
            "--timeout=60s",
        ],
    );
    let conds = job_conditions(&server, &k, ns, "slow");
    assert!(
        has_condition(&conds, "Failed", "DeadlineExceeded"),
        "{conds:?}"
    );
    assert!(
        conds
            .iter()
            .any(|(t, _, _, m)| t == "Failed"
                && m == "Job was active longer than specified deadline"),
        "{conds:?}"
    );
    assert_eq!(get(&server, &k, ns, "job/slow", ".status.active"), "0");
    assert_eq!(get(&server, &k, ns, "job/slow", ".status.failed"), "2");
    // Its running pods were deleted, and (with their finalizers released) went away.
    eventually("the pods of job slow are gone", SOON, || {
        per_item(
            &server,
            &k,
            ns,
            &["pods", "-l", "job-name=slow"],
            ".status.phase",
        )
        .is_empty()
        .then_some(())
    });

    // A finished Job with a TTL goes away that long after it finished.
    server.ok_stdin(
        &k,
        &["apply", "-n", ns, "-f", "-"],
        &job_yaml("short", "  ttlSecondsAfterFinished: 5", ""),
    );
    server.ok(
        &k,
        &[
            "wait",
            "-n",
            ns,
            "--for=condition=complete",
            "job/short",
            "--timeout=60s",
        ],
    );
    let completed: k8s_openapi::jiff::Timestamp =
        get(&server, &k, ns, "job/short", ".status.completionTime")
            .parse()
            .unwrap();
    server.ok(
        &k,
        &[
            "wait",
            "-n",
            ns,
            "--for=delete",
            "job/short",
            "--timeout=60s",
        ],
    );
    let waited = k8s_openapi::jiff::Timestamp::now().as_second() - completed.as_second();
    assert!(
        waited >= 4,
        "job deleted {waited}s after completing, before its TTL"
    );
    // Its pods go with it (background propagation through the garbage collector).
    eventually("the pods of job short are gone", SOON, || {
        per_item(
            &server,
            &k,
            ns,
            &["pods", "-l", "job-name=short"],
            ".status.phase",
        )
        .is_empty()
        .then_some(())
    });

    // Deleting running Jobs takes their pods along, tracking finalizers and all.
    for job in ["bg", "fg"] {
        server.ok_stdin(
            &k,
            &["apply", "-n", ns, "-f", "-"],
            &job_yaml(
                job,
                "  parallelism: 2\n  completions: 2",
                r#""kubelab.dev/fake-duration": "1h""#,
            ),
        );
    }
    for job in ["bg", "fg"] {
        let selector = format!("job-name={job}");
        eventually(&format!("job {job} runs 2 pods"), SOON, || {
            let phases = per_item(&server, &k, ns, &["pods", "-l", &selector], ".status.phase");
            (phases.len() == 2 && phases.values().all(|p| p == "Running")).then_some(())
        });
    }
    server.ok(&k, &["delete", "job", "bg", "-n", ns, "--wait=false"]);
    server.ok(
        &k,
        &[
            "delete",
            "job",
            "fg",
            "-n",
            ns,
            "--cascade=foreground",
            "--timeout=60s",
        ],
    );
    for job in ["bg", "fg"] {
        let selector = format!("job-name={job}");
        eventually(
            &format!("the pods of deleted job {job} are gone"),
            SOON,
            || {
                per_item(&server, &k, ns, &["pods", "-l", &selector], ".status.phase")
                    .is_empty()
                    .then_some(())
            },
        );
    }
}

#[test]
fn suspended_and_indexed_jobs() {
    let (server, k) = start();
    let ns = "modes";
    server.create_namespace(ns);
    server.ok_stdin(
        &k,
        &["apply", "-n", ns, "-f", "-"],
        &job_yaml("held", "  suspend: true", ""),
    );
    server.ok(
        &k,
        &[
            "wait",
            "-n",
            ns,
            "--for=condition=suspended",
            "job/held",
            "--timeout=30s",
        ],
    );
    let conds = job_conditions(&server, &k, ns, "held");
    assert!(
        has_condition(&conds, "Suspended", "JobSuspended"),
        "{conds:?}"
    );
    assert!(per_item(
        &server,
        &k,
        ns,
        &["pods", "-l", "job-name=held"],
        ".status.phase"
    )
    .is_empty());
    assert_eq!(get(&server, &k, ns, "job/held", ".status.startTime"), "");
    server.ok(
        &k,
        &[
            "patch",
            "job",
            "held",
            "-n",
            ns,
            "--type=merge",
            "-p",
            r#"{"spec":{"suspend":false}}"#,
        ],
    );
    server.ok(
        &k,
        &[
            "wait",
            "-n",
            ns,
            "--for=condition=complete",
            "job/held",
            "--timeout=60s",
        ],
    );
    let conds = job_conditions(&server, &k, ns, "held");
    assert!(
        conds
            .iter()
            .any(|(t, s, r, _)| t == "Suspended" && s == "False" && r == "JobResumed"),
        "{conds:?}"
    );
    let events = events_about(&server, ns, "held");
    assert!(events.iter().any(|(r, _)| r == "Suspended"), "{events:?}");
    assert!(events.iter().any(|(r, _)| r == "Resumed"), "{events:?}");

    server.ok_stdin(
        &k,
        &["apply", "-n", ns, "-f", "-"],
        &job_yaml(
            "indexed",
            "  completionMode: Indexed\n  completions: 3\n  parallelism: 3",
            "",
        ),
    );
    server.ok(
        &k,
        &[
            "wait",
            "-n",
            ns,
            "--for=condition=complete",
            "job/indexed",
            "--timeout=60s",
        ],
    );
    assert_eq!(
        get(&server, &k, ns, "job/indexed", ".status.completedIndexes"),
        "0-2"
    );
    assert_eq!(
        get(&server, &k, ns, "job/indexed", ".status.succeeded"),
        "3"
    );
    let index = per_item(
        &server,
        &k,
        ns,
        &["pods", "-l", "job-name=indexed"],
        r#".metadata.annotations.batch\.kubernetes\.io/job-completion-index"#,
    );
    let hostnames = per_item(
        &server,
        &k,
        ns,
        &["pods", "-l", "job-name=indexed"],
        ".spec.hostname",
    );
    let mut seen: Vec<&str> = index.values().map(String::as_str).collect();
    seen.sort();
    assert_eq!(seen, ["0", "1", "2"], "{index:?}");
    for (pod, i) in &index {
        assert!(
            pod.starts_with(&format!("indexed-{i}-")),
            "{pod} has index {i}"
        );
        assert_eq!(hostnames[pod], format!("indexed-{i}"));
    }
}

// ---- CronJob ----

#[test]
fn cronjob_creates_a_job_at_the_next_minute() {
    let (server, k) = start();
    let ns = "cron";
    server.create_namespace(ns);
    server.ok_stdin(
        &k,
        &["apply", "-n", ns, "-f", "-"],
        r#"apiVersion: batch/v1
kind: CronJob
metadata:
  name: tick
spec:
  schedule: "*/1 * * * *"
  successfulJobsHistoryLimit: 1
  jobTemplate:
    metadata:
      labels: {from: tick}
    spec:
      template:
        spec:
          restartPolicy: Never
          containers:
          - name: main
            image: busybox
"#,
    );
    let job = eventually("a Job of cronjob tick", Duration::from_secs(75), || {
        per_item(
            &server,
            &k,
            ns,
            &["jobs", "-l", "from=tick"],
            ".metadata.name",
        )
        .into_keys()
        .next()
    });
    let scheduled: k8s_openapi::jiff::Timestamp = get(
        &server,
        &k,
        ns,
        &format!("job/{job}"),
        r#".metadata.annotations.batch\.kubernetes\.io/cronjob-scheduled-timestamp"#,
    )
    .parse()
    .unwrap();
    assert_eq!(scheduled.as_second() % 60, 0, "scheduled at {scheduled}");
    assert_eq!(job, format!("tick-{}", scheduled.as_second() / 60));
    assert_eq!(
        get(
            &server,
            &k,
            ns,
            &format!("job/{job}"),
            ".metadata.ownerReferences[0].name"
        ),
        "tick"
    );
    server.ok(
        &k,
        &[
            "wait",
            "-n",
            ns,
            "--for=condition=complete",
            &format!("job/{job}"),
            "--timeout=60s",
        ],
    );
    eventually("cronjob tick saw its job complete", SOON, || {
        let last_success = get(
            &server,
            &k,
            ns,
            "cronjob/tick",
            ".status.lastSuccessfulTime",
        );
        let active = get(&server, &k, ns, "cronjob/tick", ".status.active");
        (!last_success.is_empty() && active.is_empty()).then_some(())
    });
    let last: k8s_openapi::jiff::Timestamp =
        get(&server, &k, ns, "cronjob/tick", ".status.lastScheduleTime")
            .parse()
            .unwrap();
    assert!(last >= scheduled);
    let events = events_about(&server, ns, "tick");
    assert!(
        events
            .iter()
            .any(|(r, n)| r == "SuccessfulCreate" && *n == format!("Created job {job}")),
        "{events:?}"
    );
    assert!(
        events.iter().any(|(r, _)| r == "SawCompletedJob"),
        "{events:?}"
    );
}

#[test]
fn cronjob_keeps_only_its_history_limits() {
    let (server, k) = start();
    let ns = "history";
    server.create_namespace(ns);
    server.ok_stdin(
        &k,
        &["apply", "-n", ns, "-f", "-"],
        r#"apiVersion: batch/v1
kind: CronJob
metadata:
  name: hist
spec:
  schedule: "0 0 1 1 *"
  timeZone: Asia/Tokyo
  successfulJobsHistoryLimit: 1
  failedJobsHistoryLimit: 1
  jobTemplate:
    spec:
      template:
        spec:
          restartPolicy: Never
          containers:
          - name: main
            image: busybox
"#,
    );
    for name in ["ok-1", "ok-2", "ok-3"] {
        server.ok(
            &k,
            &["create", "job", name, "-n", ns, "--from=cronjob/hist"],
        );
    }
    // Two failing Jobs owned by the CronJob.
    let uid = get(&server, &k, ns, "cronjob/hist", ".metadata.uid");
    server.block_on(async {
        let api: Api<Job> = Api::namespaced(server.client().await, ns);
        for name in ["bad-1", "bad-2"] {
            let job: Job = serde_json::from_value(serde_json::json!({
                "apiVersion": "batch/v1",
                "kind": "Job",
                "metadata": {"name": name, "ownerReferences": [{
                    "apiVersion": "batch/v1", "kind": "CronJob", "name": "hist", "uid": uid,
                    "controller": true, "blockOwnerDeletion": true}]},
                "spec": {"backoffLimit": 0, "template": {
                    "metadata": {"annotations": {"kubelab.dev/fake-fail": "true"}},
                    "spec": {"restartPolicy": "Never",
                             "containers": [{"name": "main", "image": "busybox"}]}}}
            }))
            .unwrap();
            api.create(&PostParams::default(), &job)
                .await
                .expect("create failing job");
        }
    });
    let remaining = eventually(
        "history trimmed to one complete and one failed job",
        Duration::from_secs(60),
        || {
            let status = per_item(&server, &k, ns, &["jobs"], ".status.conditions[*].type");
            let finished = |kind: &str| {
                status
                    .values()
                    .filter(|c| c.split_whitespace().any(|t| t == kind))
                    .count()
            };
            let complete = finished("Complete");
            let failed = finished("Failed");
            (status.len() == 2 && complete == 1 && failed == 1).then_some(status)
        },
    );
    assert!(
        remaining.keys().any(|n| n.starts_with("ok-")),
        "{remaining:?}"
    );
    assert!(
        remaining.keys().any(|n| n.starts_with("bad-")),
        "{remaining:?}"
    );
    let events = events_about(&server, ns, "hist");
    let deleted = events
        .iter()
        .filter(|(r, _)| r == "SuccessfulDelete")
        .count();
    assert_eq!(deleted, 3, "{events:?}");
    let table = server.ok(&k, &["get", "cronjob", "hist", "-n", ns, "--no-headers"]);
    assert!(table.contains("Asia/Tokyo"), "{table}");
}

// ---- PodDisruptionBudget ----

fn pod_on(name: &str, node: &str) -> String {
    format!(
        r#"apiVersion: v1
kind: Pod
metadata:
  name: {name}
  labels: {{app: web}}
spec:
  nodeName: {node}
  containers:
  - name: main
    image: nginx
"#
    )
}

fn pdb_numbers(server: &TestServer, k: &Kubectl, ns: &str) -> String {
    get(
        server,
        k,
        ns,
        "pdb/web",
        r#".status.expectedPods}/{.status.currentHealthy}/{.status.desiredHealthy}/{.status.disruptionsAllowed}/{.status.observedGeneration}/{.status.conditions[0].reason"#,
    )
}

fn wait_pdb(server: &TestServer, k: &Kubectl, ns: &str, want: &str) {
    let mut last = String::new();
    let found = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        eventually(&format!("pdb web status {want}"), SOON, || {
            last = pdb_numbers(server, k, ns);
            (last == want).then_some(())
        })
    }));
    if found.is_err() {
        panic!("pdb web status: want {want}, last seen {last}");
    }
}

#[test]
fn pdb_status_follows_pods_and_drain_respects_it() {
    let (server, k) = start();
    let ns = "budget";
    server.create_namespace(ns);
    for (pod, node) in [
        ("a", "fake-node-1"),
        ("b", "fake-node-2"),
        ("c", "fake-node-2"),
    ] {
        server.ok_stdin(&k, &["apply", "-n", ns, "-f", "-"], &pod_on(pod, node));
    }
    server.ok(
        &k,
        &[
            "wait",
            "-n",
            ns,
            "--for=condition=ready",
            "pod",
            "-l",
            "app=web",
            "--timeout=60s",
        ],
    );
    server.ok(
        &k,
        &[
            "create",
            "pdb",
            "web",
            "-n",
            ns,
            "--selector=app=web",
            "--min-available=2",
        ],
    );
    // expected/healthy/desired/allowed/observedGeneration/reason
    wait_pdb(&server, &k, ns, "3/3/2/1/1/SufficientPods");
    assert_eq!(
        get(&server, &k, ns, "pdb/web", ".status.conditions[0].status"),
        "True"
    );

    server.ok(
        &k,
        &[
            "patch",
            "pdb",
            "web",
            "-n",
            ns,
            "--type=merge",
            "-p",
            r#"{"spec":{"minAvailable":3}}"#,
        ],
    );
    wait_pdb(&server, &k, ns, "3/3/3/0/2/InsufficientPods");

    // Draining the node of pod a would break the budget: the eviction is refused (429).
    let out = server.kubectl(
        &k,
        &[
            "drain",
            "fake-node-1",
            "--force",
            "--ignore-daemonsets",
            "--delete-emptydir-data",
            "--timeout=3s",
        ],
    );
    assert!(
        !out.success(),
        "drain should time out:\n{}\n{}",
        out.stdout,
        out.stderr
    );
    assert!(
        out.stderr
            .contains("Cannot evict pod as it would violate the pod's disruption budget"),
        "{}",
        out.stderr
    );
    assert_eq!(
        get(&server, &k, ns, "pod/a", ".metadata.deletionTimestamp"),
        ""
    );

    // A fourth ready pod elsewhere allows one disruption; the drain goes through.
    server.ok_stdin(
        &k,
        &["apply", "-n", ns, "-f", "-"],
        &pod_on("d", "fake-node-3"),
    );
    server.ok(
        &k,
        &[
            "wait",
            "-n",
            ns,
            "--for=condition=ready",
            "pod/d",
            "--timeout=60s",
        ],
    );
    wait_pdb(&server, &k, ns, "4/4/3/1/2/SufficientPods");
    server.ok(
        &k,
        &[
            "drain",
            "fake-node-1",
            "--force",
            "--ignore-daemonsets",
            "--delete-emptydir-data",
            "--timeout=60s",
        ],
    );
    assert!(server
        .fails(&k, &["get", "pod", "a", "-n", ns])
        .contains("NotFound"));
    wait_pdb(&server, &k, ns, "3/3/3/0/2/InsufficientPods");

    // A running pod counts as healthy only once it is Ready (here: its readiness gate).
    let gated = pod_on("e", "fake-node-3").replace(
        "  containers:",
        "  readinessGates:\n  - conditionType: kubelab.test/gate\n  containers:",
    );
    server.ok_stdin(&k, &["apply", "-n", ns, "-f", "-"], &gated);
    eventually("pod e runs", SOON, || {
        (get(&server, &k, ns, "pod/e", ".status.phase") == "Running").then_some(())
    });
    wait_pdb(&server, &k, ns, "4/3/3/0/2/InsufficientPods");
    server.ok(
        &k,
        &[
            "patch",
            "pod",
            "e",
            "-n",
            ns,
            "--subresource=status",
            "-p",
            r#"{"status":{"conditions":[{"type":"kubelab.test/gate","status":"True"}]}}"#,
        ],
    );
    wait_pdb(&server, &k, ns, "4/4/3/1/2/SufficientPods");

    // Percentages scale with the pods' controllers; bare pods have none.
    server.ok(&k, &["patch", "pdb", "web", "-n", ns, "--type=json", "-p",
        r#"[{"op":"remove","path":"/spec/minAvailable"},{"op":"add","path":"/spec/maxUnavailable","value":"50%"}]"#]);
    eventually("pdb web fails safe without controllers", SOON, || {
        let reason = get(&server, &k, ns, "pdb/web", ".status.conditions[0].reason");
        let message = get(&server, &k, ns, "pdb/web", ".status.conditions[0].message");
        (reason == "SyncFailed" && message.contains("found no controller ref")).then_some(())
    });
    assert_eq!(
        get(&server, &k, ns, "pdb/web", ".status.disruptionsAllowed"),
        "0"
    );
}

// kubectl drain evicts a node's pods concurrently: the budget's one disruption goes to one of
// them only (the eviction takes it from the budget's status before deleting the pod).
#[test]
fn concurrent_evictions_share_one_disruption() {
    let (server, k) = start();
    let ns = "race";
    server.create_namespace(ns);
    for (pod, node) in [
        ("a", "fake-node-1"),
        ("b", "fake-node-2"),
        ("c", "fake-node-2"),
        ("d", "fake-node-3"),
    ] {
        server.ok_stdin(&k, &["apply", "-n", ns, "-f", "-"], &pod_on(pod, node));
    }
    server.ok(
        &k,
        &[
            "wait",
            "-n",
            ns,
            "--for=condition=ready",
            "pod",
            "-l",
            "app=web",
            "--timeout=60s",
        ],
    );
    server.ok(
        &k,
        &[
            "create",
            "pdb",
            "web",
            "-n",
            ns,
            "--selector=app=web",
            "--min-available=3",
        ],
    );
    wait_pdb(&server, &k, ns, "4/4/3/1/1/SufficientPods");

    let out = server.kubectl(&k, &["drain", "fake-node-2", "--force", "--timeout=5s"]);
    assert!(
        !out.success(),
        "drain should time out:\n{}\n{}",
        out.stdout,
        out.stderr
    );
    assert!(
        out.stderr
            .contains("Cannot evict pod as it would violate the pod's disruption budget"),
        "{}",
        out.stderr
    );
    // Exactly one of b and c went; the other is untouched.
    let left: Vec<String> = ["b", "c"]
        .into_iter()
        .filter(|p| {
            server
                .kubectl(
                    &k,
                    &[
                        "get",
                        "pod",
                        p,
                        "-n",
                        ns,
                        "-o",
                        "jsonpath={.metadata.deletionTimestamp}",
                    ],
                )
                .stdout
                .trim()
                .is_empty()
                && server.kubectl(&k, &["get", "pod", p, "-n", ns]).success()
        })
        .map(String::from)
        .collect();
    assert_eq!(
        left.len(),
        1,
        "pods of fake-node-2 left untouched: {left:?}"
    );
    wait_pdb(&server, &k, ns, "3/3/3/0/1/InsufficientPods");
}
