//! Unit tests of the filters, scores and failure messages over a hand-built cache.

use k8s_openapi::api::core::v1::{Node, Pod};
use rand::SeedableRng;
use serde_json::{json, Value};

use crate::cache::{Cache, PodRecord};
use crate::filters::{self, Code, PodInfo, Rejection};
use crate::framework::{self, fit_error_message};
use crate::scores;

fn node(name: &str, cpu: &str, extra: Value) -> Node {
    let mut v = json!({
        "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name}},
        "spec": {},
        "status": {
            "allocatable": {"cpu": cpu, "memory": "4Gi", "pods": "110", "ephemeral-storage": "10Gi"},
            "conditions": [{"type": "Ready", "status": "True"}]
        }
    });
    merge(&mut v, extra);
    serde_json::from_value(v).unwrap()
}

fn pod(name: &str, spec: Value) -> Pod {
    let mut v = json!({
        "metadata": {"name": name, "namespace": "default", "uid": format!("uid-{name}"),
                     "labels": {"app": "web"}},
        "spec": {"containers": [{"name": "c", "image": "busybox"}]}
    });
    merge(&mut v, json!({"spec": spec}));
    serde_json::from_value(v).unwrap()
}

fn merge(a: &mut Value, b: Value) {
    match (a, b) {
        (Value::Object(a), Value::Object(b)) => {
            for (k, v) in b {
                merge(a.entry(k).or_insert(Value::Null), v);
            }
        }
        (a, b) => *a = b,
    }
}

fn cache_with(nodes: Vec<Node>) -> Cache {
    let mut cache = Cache::default();
    for n in nodes {
        cache.set_node(n);
    }
    cache
}

fn place(cache: &mut Cache, p: &Pod, node: &str) {
    cache.add_pod(p.metadata.uid.as_deref().unwrap(), PodRecord::new(p, node));
}

fn check(filter: filters::Filter, cache: &Cache, p: &Pod, node: &str) -> Result<(), Rejection> {
    let info = PodInfo::new(p, cache);
    filter(&info, &cache.nodes[node])
}

fn reasons(r: Result<(), Rejection>) -> Vec<String> {
    match r {
        Ok(()) => vec![],
        Err(r) => r.reasons.iter().map(|s| s.to_string()).collect(),
    }
}

fn rng() -> rand::rngs::SmallRng {
    rand::rngs::SmallRng::seed_from_u64(7)
}

#[test]
fn node_unschedulable_unless_tolerated() {
    let cache = cache_with(vec![node(
        "n1",
        "2",
        json!({"spec": {"unschedulable": true}}),
    )]);
    let r = check(
        filters::node_unschedulable,
        &cache,
        &pod("p", json!({})),
        "n1",
    );
    assert_eq!(r.unwrap_err().code, Code::UnschedulableAndUnresolvable);
    let tolerant = pod(
        "q",
        json!({"tolerations": [{"key": "node.kubernetes.io/unschedulable", "operator": "Exists", "effect": "NoSchedule"}]}),
    );
    assert!(check(filters::node_unschedulable, &cache, &tolerant, "n1").is_ok());
}

#[test]
fn node_name_filter() {
    let cache = cache_with(vec![node("n1", "2", json!({})), node("n2", "2", json!({}))]);
    let p = pod("p", json!({"nodeName": "n2"}));
    assert_eq!(
        reasons(check(filters::node_name, &cache, &p, "n1")),
        [filters::ERR_NODE_NAME]
    );
    assert!(check(filters::node_name, &cache, &p, "n2").is_ok());
}

#[test]
fn resources_fit_counts_what_is_placed() {
    let mut cache = cache_with(vec![node(
        "n1",
        "2",
        json!({"status": {"allocatable": {"pods": "2"}}}),
    )]);
    let big = pod(
        "big",
        json!({"containers": [{"name": "c", "resources": {"requests": {"cpu": "1500m", "memory": "1Gi"}}}]}),
    );
    assert!(check(filters::node_resources_fit, &cache, &big, "n1").is_ok());
    place(&mut cache, &big, "n1");
    let again = pod(
        "again",
        json!({"containers": [{"name": "c", "resources": {"requests": {
        "cpu": "1", "memory": "4Gi", "ephemeral-storage": "20Gi", "example.com/gpu": "1"}}}]}),
    );
    assert_eq!(
        reasons(check(filters::node_resources_fit, &cache, &again, "n1")),
        [
            "Insufficient cpu",
            "Insufficient memory",
            "Insufficient ephemeral-storage",
            "Insufficient example.com/gpu"
        ]
    );
    // Zero requests always fit the resources; the pod count still applies.
    place(&mut cache, &pod("second", json!({})), "n1");
    assert_eq!(
        reasons(check(
            filters::node_resources_fit,
            &cache,
            &pod("third", json!({})),
            "n1"
        )),
        ["Too many pods"]
    );
}

#[test]
fn node_selector_and_affinity_filter() {
    let cache = cache_with(vec![
        node("n1", "2", json!({"metadata": {"labels": {"disk": "ssd"}}})),
        node("n2", "2", json!({})),
    ]);
    let p = pod("p", json!({"nodeSelector": {"disk": "ssd"}}));
    assert!(check(filters::node_affinity, &cache, &p, "n1").is_ok());
    let r = check(filters::node_affinity, &cache, &p, "n2").unwrap_err();
    assert_eq!(r.code, Code::UnschedulableAndUnresolvable);
    assert_eq!(r.reasons, [filters::ERR_NODE_AFFINITY]);
    let by_name = pod(
        "q",
        json!({"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
        "nodeSelectorTerms": [{"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["n2"]}]}]}}}}),
    );
    assert!(check(filters::node_affinity, &cache, &by_name, "n1").is_err());
    assert!(check(filters::node_affinity, &cache, &by_name, "n2").is_ok());
}

#[test]
fn taints_need_tolerations() {
    let cache = cache_with(vec![
        node(
            "n1",
            "2",
            json!({"spec": {"taints": [
            {"key": "soft", "effect": "PreferNoSchedule"},
            {"key": "dedicated", "value": "gpu", "effect": "NoSchedule"}]}}),
        ),
        node(
            "n2",
            "2",
            json!({"status": {"conditions": [{"type": "Ready", "status": "False"}]}}),
        ),
    ]);
    let p = pod("p", json!({}));
    assert_eq!(
        reasons(check(filters::taint_toleration, &cache, &p, "n1")),
        ["node(s) had untolerated taint {dedicated: gpu}"]
    );
    assert_eq!(
        reasons(check(filters::taint_toleration, &cache, &p, "n2")),
        ["node(s) had untolerated taint {node.kubernetes.io/not-ready: }"]
    );
    let tolerant = pod(
        "q",
        json!({"tolerations": [{"key": "dedicated", "operator": "Equal", "value": "gpu", "effect": "NoSchedule"}]}),
    );
    assert!(check(filters::taint_toleration, &cache, &tolerant, "n1").is_ok());
    let everything = pod("r", json!({"tolerations": [{"operator": "Exists"}]}));
    assert!(check(filters::taint_toleration, &cache, &everything, "n2").is_ok());
}

#[test]
fn host_ports_conflict_on_one_node() {
    let mut cache = cache_with(vec![node("n1", "2", json!({}))]);
    let with_port = |name: &str, port: Value| {
        pod(
            name,
            json!({"containers": [{"name": "c", "ports": [port]}]}),
        )
    };
    place(
        &mut cache,
        &with_port("a", json!({"containerPort": 80, "hostPort": 8080})),
        "n1",
    );
    assert_eq!(
        reasons(check(
            filters::node_ports,
            &cache,
            &with_port("b", json!({"containerPort": 80, "hostPort": 8080})),
            "n1"
        )),
        [filters::ERR_NODE_PORTS]
    );
    let udp = with_port(
        "c",
        json!({"containerPort": 80, "hostPort": 8080, "protocol": "UDP"}),
    );
    assert!(check(filters::node_ports, &cache, &udp, "n1").is_ok());
    let ip = with_port(
        "d",
        json!({"containerPort": 80, "hostPort": 8080, "hostIP": "10.1.1.1"}),
    );
    assert!(check(filters::node_ports, &cache, &ip, "n1").is_err());
}

#[test]
fn pod_anti_affinity_on_hostname() {
    let mut cache = cache_with(vec![node("n1", "2", json!({})), node("n2", "2", json!({}))]);
    let anti = json!({"affinity": {"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
        {"labelSelector": {"matchLabels": {"app": "web"}}, "topologyKey": "kubernetes.io/hostname"}]}}});
    let first = pod("a", anti.clone());
    place(&mut cache, &first, "n1");
    let second = pod("b", anti);
    assert_eq!(
        reasons(check(filters::inter_pod_affinity, &cache, &second, "n1")),
        [filters::ERR_POD_ANTI_AFFINITY]
    );
    assert!(check(filters::inter_pod_affinity, &cache, &second, "n2").is_ok());
    // A pod without terms, matched by the existing pod's terms.
    let plain = pod("c", json!({}));
    assert_eq!(
        reasons(check(filters::inter_pod_affinity, &cache, &plain, "n1")),
        [filters::ERR_EXISTING_ANTI_AFFINITY]
    );
    let mut other = pod("d", json!({}));
    other.metadata.labels = Some([("app".to_string(), "db".to_string())].into());
    assert!(check(filters::inter_pod_affinity, &cache, &other, "n1").is_ok());
}

#[test]
fn pod_affinity_on_hostname() {
    let mut cache = cache_with(vec![node("n1", "2", json!({})), node("n2", "2", json!({}))]);
    let affinity = json!({"affinity": {"podAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
        {"labelSelector": {"matchLabels": {"app": "web"}}, "topologyKey": "kubernetes.io/hostname"}]}}});
    // The first pod of the group matches its own terms: any node.
    let first = pod("a", affinity.clone());
    assert!(check(filters::inter_pod_affinity, &cache, &first, "n2").is_ok());
    place(&mut cache, &first, "n1");
    let second = pod("b", affinity);
    assert!(check(filters::inter_pod_affinity, &cache, &second, "n1").is_ok());
    let r = check(filters::inter_pod_affinity, &cache, &second, "n2").unwrap_err();
    assert_eq!(r.code, Code::UnschedulableAndUnresolvable);
    assert_eq!(r.reasons, [filters::ERR_POD_AFFINITY]);
}

#[test]
fn message_aggregation_counts_sorts_and_joins() {
    let r = |code, reasons: &[&'static str]| Rejection {
        code,
        reasons: reasons.iter().map(|s| (*s).into()).collect(),
    };
    let rejections = [
        r(
            Code::Unschedulable,
            &["Insufficient cpu", "Insufficient memory"],
        ),
        r(Code::Unschedulable, &["Insufficient cpu"]),
        r(
            Code::UnschedulableAndUnresolvable,
            &[filters::ERR_NODE_AFFINITY],
        ),
    ];
    assert_eq!(
        fit_error_message(3, rejections.iter(), None, None),
        "0/3 nodes are available: 1 Insufficient memory, 1 node(s) didn't match Pod's node affinity/selector, 2 Insufficient cpu."
    );
    assert_eq!(
        fit_error_message(
            3,
            rejections.iter(),
            None,
            Some("preemption: 0/3 nodes are available: 3 No preemption victims found for incoming pod.")
        ),
        "0/3 nodes are available: 1 Insufficient memory, 1 node(s) didn't match Pod's node affinity/selector, 2 Insufficient cpu. preemption: 0/3 nodes are available: 3 No preemption victims found for incoming pod."
    );
}

#[test]
fn too_big_a_request_reads_like_upstream() {
    let cache = cache_with(vec![
        node("n1", "2", json!({})),
        node("n2", "2", json!({})),
        node("n3", "2", json!({})),
    ]);
    let big = pod(
        "big",
        json!({"containers": [{"name": "c", "resources": {"requests": {"cpu": "3"}}}]}),
    );
    assert_eq!(
        framework::schedule(&big, &cache, &mut rng()).unwrap_err(),
        "0/3 nodes are available: 3 Insufficient cpu. preemption: 0/3 nodes are available: 3 No preemption victims found for incoming pod."
    );
    let never = pod(
        "never",
        json!({"preemptionPolicy": "Never",
        "containers": [{"name": "c", "resources": {"requests": {"cpu": "3"}}}]}),
    );
    assert_eq!(
        framework::schedule(&never, &cache, &mut rng()).unwrap_err(),
        "0/3 nodes are available: 3 Insufficient cpu. preemption: not eligible due to preemptionPolicy=Never."
    );
}

#[test]
fn mixed_failures_and_unresolvable_nodes() {
    let cache = cache_with(vec![
        node("n1", "2", json!({"spec": {"unschedulable": true}})),
        node("n2", "2", json!({"metadata": {"labels": {"disk": "ssd"}}})),
        node("n3", "2", json!({})),
    ]);
    let p = pod(
        "p",
        json!({"nodeSelector": {"disk": "ssd"},
        "containers": [{"name": "c", "resources": {"requests": {"cpu": "3"}}}]}),
    );
    assert_eq!(
        framework::schedule(&p, &cache, &mut rng()).unwrap_err(),
        "0/3 nodes are available: 1 Insufficient cpu, 1 node(s) didn't match Pod's node affinity/selector, 1 node(s) were unschedulable. \
         preemption: 0/3 nodes are available: 1 No preemption victims found for incoming pod, 2 Preemption is not helpful for scheduling."
    );
    assert_eq!(
        framework::schedule(&p, &Cache::default(), &mut rng()).unwrap_err(),
        "no nodes available to schedule pods"
    );
}

#[test]
fn preemption_candidates_drop_the_preemption_sentence() {
    let mut cache = cache_with(vec![node("n1", "2", json!({}))]);
    let low = pod(
        "low",
        json!({"priority": -1, "containers": [{"name": "c", "resources": {"requests": {"cpu": "2"}}}]}),
    );
    place(&mut cache, &low, "n1");
    let high = pod(
        "high",
        json!({"priority": 100, "containers": [{"name": "c", "resources": {"requests": {"cpu": "1"}}}]}),
    );
    assert_eq!(
        framework::schedule(&high, &cache, &mut rng()).unwrap_err(),
        "0/1 nodes are available: 1 Insufficient cpu."
    );
}

#[test]
fn least_allocated_prefers_the_emptier_node() {
    let mut cache = cache_with(vec![node("n1", "4", json!({})), node("n2", "4", json!({}))]);
    let busy = pod(
        "busy",
        json!({"containers": [{"name": "c", "resources": {"requests": {"cpu": "3", "memory": "2Gi"}}}]}),
    );
    let mut unrelated = busy.clone();
    unrelated.metadata.labels = None;
    unrelated.metadata.uid = Some("uid-unrelated".into());
    place(&mut cache, &unrelated, "n1");
    let p = pod("p", json!({}));
    let info = PodInfo::new(&p, &cache);
    let (n1, n2) = (&cache.nodes["n1"], &cache.nodes["n2"]);
    assert!(scores::least_allocated(&info, n2) > scores::least_allocated(&info, n1));
    // cpu (100m + 0) of 4: 97; memory 200Mi of 4Gi: 95 -> 96.
    assert_eq!(scores::least_allocated(&info, n2), 96);
    for _ in 0..20 {
        assert_eq!(framework::schedule(&p, &cache, &mut rng()).unwrap(), "n2");
    }
}

#[test]
fn replicas_of_one_owner_spread_over_nodes() {
    let mut cache = cache_with(vec![
        node("n1", "4", json!({})),
        node("n2", "4", json!({})),
        node("n3", "4", json!({})),
    ]);
    let mut rng = rng();
    let mut placed = Vec::new();
    for i in 0..3 {
        let mut p = pod(&format!("web-{i}"), json!({}));
        p.metadata.owner_references = Some(vec![serde_json::from_value(json!({
            "apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "web", "uid": "rs-1", "controller": true
        })).unwrap()]);
        let node = framework::schedule(&p, &cache, &mut rng).unwrap();
        place(&mut cache, &p, &node);
        placed.push(node);
    }
    placed.sort();
    assert_eq!(placed, ["n1", "n2", "n3"]);
}

#[test]
fn spread_normalisation_with_zones() {
    let cache = cache_with(vec![
        node(
            "a1",
            "4",
            json!({"metadata": {"labels": {"topology.kubernetes.io/zone": "a"}}}),
        ),
        node(
            "a2",
            "4",
            json!({"metadata": {"labels": {"topology.kubernetes.io/zone": "a"}}}),
        ),
        node(
            "b1",
            "4",
            json!({"metadata": {"labels": {"topology.kubernetes.io/zone": "b"}}}),
        ),
    ]);
    let nodes: Vec<_> = ["a1", "a2", "b1"]
        .iter()
        .map(|n| &cache.nodes[*n])
        .collect();
    let mut counts = vec![1, 0, 0];
    scores::normalize_spread(&mut counts, &nodes);
    // a2 is empty but shares zone a with a1: b1 scores highest.
    assert_eq!(counts, [0, 33, 100]);
}

#[test]
fn taint_and_affinity_preferences_score() {
    let cache = cache_with(vec![
        node(
            "n1",
            "4",
            json!({"spec": {"taints": [{"key": "soft", "effect": "PreferNoSchedule"}]}}),
        ),
        node("n2", "4", json!({"metadata": {"labels": {"tier": "fast"}}})),
    ]);
    let p = pod(
        "p",
        json!({"affinity": {"nodeAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
        {"weight": 10, "preference": {"matchExpressions": [{"key": "tier", "operator": "In", "values": ["fast"]}]}}]}}}),
    );
    let info = PodInfo::new(&p, &cache);
    assert_eq!(scores::taint_toleration(&info, &cache.nodes["n1"]), 1);
    assert_eq!(scores::node_affinity(&info, &cache.nodes["n2"]), 10);
    let nodes: Vec<_> = cache.nodes.values().collect();
    let total = scores::score_nodes(&info, &nodes);
    assert!(total[1] > total[0]);
}

#[test]
fn select_host_breaks_ties_at_random() {
    let mut rng = rng();
    let mut seen = [0; 3];
    for _ in 0..300 {
        seen[scores::select_host(&[5, 9, 9], &mut rng).unwrap()] += 1;
    }
    assert_eq!(seen[0], 0);
    assert!(seen[1] > 100 && seen[2] > 100, "{seen:?}");
    let mut norm = vec![0, 2, 4];
    scores::normalize(&mut norm, false);
    assert_eq!(norm, [0, 50, 100]);
    let mut rev = vec![0, 0];
    scores::normalize(&mut rev, true);
    assert_eq!(rev, [100, 100]);
}

fn claim(cache: &mut Cache, name: &str, volume: Option<&str>, class: Option<&str>) {
    cache.claims.insert(
        format!("default/{name}"),
        crate::cache::ClaimInfo {
            volume_name: volume.map(Into::into),
            storage_class: class.map(Into::into),
            deleting: false,
            lost: false,
        },
    );
}

fn with_claim(name: &str, claim: &str) -> Pod {
    pod(
        name,
        json!({"volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": claim}}]}),
    )
}

#[test]
fn volume_prefilter_messages() {
    let mut cache = cache_with(vec![node("n1", "2", json!({})), node("n2", "2", json!({}))]);
    assert_eq!(
        framework::schedule(&with_claim("p", "data"), &cache, &mut rng()).unwrap_err(),
        "0/2 nodes are available: persistentvolumeclaim \"data\" not found. \
         preemption: 0/2 nodes are available: 2 Preemption is not helpful for scheduling."
    );
    cache.storage_classes.insert("standard".into(), true);
    cache.storage_classes.insert("fast".into(), false);
    claim(&mut cache, "immediate", None, Some("fast"));
    assert_eq!(
        framework::schedule(&with_claim("p", "immediate"), &cache, &mut rng()).unwrap_err(),
        "0/2 nodes are available: pod has unbound immediate PersistentVolumeClaims. \
         preemption: 0/2 nodes are available: 2 Preemption is not helpful for scheduling."
    );
    // Waiting for the first consumer: any node will do.
    claim(&mut cache, "delayed", None, Some("standard"));
    assert!(framework::schedule(&with_claim("p", "delayed"), &cache, &mut rng()).is_ok());
}

#[test]
fn bound_volumes_pin_pods_to_their_node() {
    let mut cache = cache_with(vec![node("n1", "2", json!({})), node("n2", "2", json!({}))]);
    let pinned: k8s_openapi::api::core::v1::NodeSelector = serde_json::from_value(json!({
        "nodeSelectorTerms": [{"matchExpressions": [
            {"key": "kubernetes.io/hostname", "operator": "In", "values": ["n2"]}]}]
    }))
    .unwrap();
    cache.volumes.insert("pv-1".into(), Some(pinned));
    cache.volumes.insert("pv-any".into(), None);
    claim(&mut cache, "data", Some("pv-1"), Some("standard"));
    claim(&mut cache, "shared", Some("pv-any"), None);
    claim(&mut cache, "orphan", Some("pv-gone"), None);
    let p = with_claim("p", "data");
    assert_eq!(
        reasons(check(filters::volume_binding, &cache, &p, "n1")),
        [filters::ERR_VOLUME_NODE_CONFLICT]
    );
    assert!(check(filters::volume_binding, &cache, &p, "n2").is_ok());
    assert_eq!(framework::schedule(&p, &cache, &mut rng()).unwrap(), "n2");
    assert!(check(
        filters::volume_binding,
        &cache,
        &with_claim("q", "shared"),
        "n1"
    )
    .is_ok());
    assert_eq!(
        reasons(check(
            filters::volume_binding,
            &cache,
            &with_claim("r", "orphan"),
            "n1"
        )),
        [filters::ERR_VOLUME_MISSING]
    );
}

#[test]
fn topology_spread_constraints_limit_skew() {
    let zone = |z: &str| json!({"metadata": {"labels": {"topology.kubernetes.io/zone": z}}});
    let mut cache = cache_with(vec![
        node("a1", "4", zone("a")),
        node("a2", "4", zone("a")),
        node("b1", "4", zone("b")),
        node("nozone", "4", json!({})),
    ]);
    let spec = json!({"topologySpreadConstraints": [{"maxSkew": 1,
        "topologyKey": "topology.kubernetes.io/zone", "whenUnsatisfiable": "DoNotSchedule",
        "labelSelector": {"matchLabels": {"app": "web"}}}]});
    place(&mut cache, &pod("w0", spec.clone()), "a1");
    let p = pod("w1", spec.clone());
    // Zone a has 1, zone b 0: another in a would make the skew 2.
    assert_eq!(
        reasons(check(filters::pod_topology_spread, &cache, &p, "a2")),
        [filters::ERR_SPREAD]
    );
    assert!(check(filters::pod_topology_spread, &cache, &p, "b1").is_ok());
    let missing = check(filters::pod_topology_spread, &cache, &p, "nozone").unwrap_err();
    assert_eq!(missing.code, Code::UnschedulableAndUnresolvable);
    assert_eq!(missing.reasons, [filters::ERR_SPREAD_MISSING_LABEL]);
    assert_eq!(framework::schedule(&p, &cache, &mut rng()).unwrap(), "b1");
    // ScheduleAnyway constraints never filter.
    let soft = pod(
        "w2",
        json!({"topologySpreadConstraints": [{"maxSkew": 1,
        "topologyKey": "topology.kubernetes.io/zone", "whenUnsatisfiable": "ScheduleAnyway",
        "labelSelector": {"matchLabels": {"app": "web"}}}]}),
    );
    assert!(check(filters::pod_topology_spread, &cache, &soft, "nozone").is_ok());
}
