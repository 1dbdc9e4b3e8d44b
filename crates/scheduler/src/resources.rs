//! Resource vectors: what a pod requests and what a node can allocate.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Container, Node, Pod};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

use crate::quantity;

/// CPU a container without a CPU request counts as when scoring (upstream `DefaultMilliCPURequest`).
pub const DEFAULT_MILLI_CPU_REQUEST: i64 = 100;
/// Memory a container without a memory request counts as when scoring (200 MiB).
pub const DEFAULT_MEMORY_REQUEST: i64 = 200 * 1024 * 1024;

/// An amount of every schedulable resource.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Resources {
    pub milli_cpu: i64,
    pub memory: i64,
    pub ephemeral_storage: i64,
    /// Extended resources, hugepages and other prefixed names, sorted by name.
    pub scalar: Vec<(String, i64)>,
}

/// Resource names the scheduler accounts for besides cpu, memory and ephemeral-storage.
fn is_scalar(name: &str) -> bool {
    name.contains('/') || name.starts_with("hugepages-")
}

impl Resources {
    /// The resources of a `ResourceList` (requests, limits, allocatable, overhead).
    pub fn from_list(list: &BTreeMap<String, Quantity>) -> Resources {
        let mut r = Resources::default();
        for (name, q) in list {
            r.set(name, &q.0);
        }
        r
    }

    fn set(&mut self, name: &str, quantity: &str) {
        match name {
            "cpu" => self.milli_cpu = quantity::milli_value(quantity).unwrap_or(0),
            "memory" => self.memory = quantity::value(quantity).unwrap_or(0),
            "ephemeral-storage" => self.ephemeral_storage = quantity::value(quantity).unwrap_or(0),
            n if is_scalar(n) => {
                let v = quantity::value(quantity).unwrap_or(0);
                match self.scalar.binary_search_by(|(k, _)| k.as_str().cmp(n)) {
                    Ok(i) => self.scalar[i].1 = v,
                    Err(i) => self.scalar.insert(i, (n.to_string(), v)),
                }
            }
            _ => {}
        }
    }

    /// The amount of an extended resource (0 when absent).
    pub fn scalar(&self, name: &str) -> i64 {
        self.scalar
            .binary_search_by(|(k, _)| k.as_str().cmp(name))
            .map(|i| self.scalar[i].1)
            .unwrap_or(0)
    }

    fn combine(&mut self, other: &Resources, f: impl Fn(i64, i64) -> i64) {
        self.milli_cpu = f(self.milli_cpu, other.milli_cpu);
        self.memory = f(self.memory, other.memory);
        self.ephemeral_storage = f(self.ephemeral_storage, other.ephemeral_storage);
        for (name, v) in &other.scalar {
            match self.scalar.binary_search_by(|(k, _)| k.cmp(name)) {
                Ok(i) => self.scalar[i].1 = f(self.scalar[i].1, *v),
                Err(i) => self.scalar.insert(i, (name.clone(), f(0, *v))),
            }
        }
    }

    pub fn add(&mut self, other: &Resources) {
        self.combine(other, |a, b| a + b);
    }

    pub fn subtract(&mut self, other: &Resources) {
        self.combine(other, |a, b| a - b);
    }

    pub fn set_max(&mut self, other: &Resources) {
        self.combine(other, i64::max);
    }

    pub fn is_zero(&self) -> bool {
        self.milli_cpu == 0
            && self.memory == 0
            && self.ephemeral_storage == 0
            && self.scalar.iter().all(|(_, v)| *v == 0)
    }
}

/// What one container asks for: its requests, a missing request falling back to the limit
/// (the API server's defaulting, repeated here for objects that skipped it).
fn container_requests(c: &Container, non_zero: bool) -> Resources {
    let mut r = Resources::default();
    let (requests, limits) = match &c.resources {
        Some(res) => (res.requests.as_ref(), res.limits.as_ref()),
        None => (None, None),
    };
    if let Some(limits) = limits {
        for (name, q) in limits {
            if requests.is_none_or(|req| !req.contains_key(name)) {
                r.set(name, &q.0);
            }
        }
    }
    if let Some(requests) = requests {
        for (name, q) in requests {
            r.set(name, &q.0);
        }
    }
    if non_zero {
        let has = |name: &str| {
            requests.is_some_and(|m| m.contains_key(name))
                || limits.is_some_and(|m| m.contains_key(name))
        };
        if !has("cpu") {
            r.milli_cpu = DEFAULT_MILLI_CPU_REQUEST;
        }
        if !has("memory") {
            r.memory = DEFAULT_MEMORY_REQUEST;
        }
    }
    r
}

/// The effective request of a pod (upstream `resource.PodRequests`): the sum of its containers and
/// restartable (sidecar) init containers, at least the largest init container plus the sidecars
/// started before it, plus the pod overhead. With `non_zero`, containers without a cpu or memory
/// request count as 100m / 200Mi (for scoring).
pub fn pod_requests(pod: &Pod, non_zero: bool) -> Resources {
    let Some(spec) = &pod.spec else {
        return Resources::default();
    };
    let mut total = Resources::default();
    for c in &spec.containers {
        total.add(&container_requests(c, non_zero));
    }
    let mut sidecars = Resources::default();
    let mut init_max = Resources::default();
    for c in spec.init_containers.iter().flatten() {
        let mut req = container_requests(c, non_zero);
        if c.restart_policy.as_deref() == Some("Always") {
            total.add(&req);
            sidecars.add(&req);
            req = sidecars.clone();
        } else {
            req.add(&sidecars);
        }
        init_max.set_max(&req);
    }
    total.set_max(&init_max);
    if let Some(overhead) = &spec.overhead {
        total.add(&Resources::from_list(overhead));
    }
    total
}

/// What a node can give to pods: `status.allocatable` (or capacity when allocatable is absent), and
/// how many pods it admits.
pub fn node_allocatable(node: &Node) -> (Resources, i64) {
    let status = node.status.as_ref();
    let list = status
        .and_then(|s| s.allocatable.as_ref())
        .or_else(|| status.and_then(|s| s.capacity.as_ref()));
    match list {
        Some(list) => (
            Resources::from_list(list),
            list.get("pods")
                .and_then(|q| quantity::value(&q.0))
                .unwrap_or(0),
        ),
        None => (Resources::default(), 0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(spec: serde_json::Value) -> Pod {
        serde_json::from_value(json!({"metadata": {"name": "p"}, "spec": spec})).unwrap()
    }

    #[test]
    fn containers_sum_and_init_containers_take_the_max() {
        let p = pod(json!({
            "initContainers": [
                {"name": "i1", "resources": {"requests": {"cpu": "2", "memory": "1G"}}},
                {"name": "i2", "resources": {"requests": {"cpu": "2", "memory": "3G"}}}
            ],
            "containers": [
                {"name": "c1", "resources": {"requests": {"cpu": "2", "memory": "1G"}}},
                {"name": "c2", "resources": {"requests": {"cpu": "1", "memory": "1G"}}}
            ],
            "overhead": {"cpu": "100m"}
        }));
        let r = pod_requests(&p, false);
        assert_eq!(r.milli_cpu, 3100);
        assert_eq!(r.memory, 3_000_000_000);
    }

    #[test]
    fn sidecars_run_beside_the_containers() {
        let p = pod(json!({
            "initContainers": [
                {"name": "sidecar", "restartPolicy": "Always", "resources": {"requests": {"cpu": "1"}}},
                {"name": "init", "resources": {"requests": {"cpu": "3"}}}
            ],
            "containers": [{"name": "c", "resources": {"requests": {"cpu": "1"}}}]
        }));
        // containers + sidecar = 2; init + sidecar = 4.
        assert_eq!(pod_requests(&p, false).milli_cpu, 4000);
    }

    #[test]
    fn limits_stand_in_for_missing_requests_and_scoring_defaults() {
        let p = pod(json!({"containers": [
            {"name": "a", "resources": {"limits": {"cpu": "500m", "example.com/gpu": "1"}}},
            {"name": "b"}
        ]}));
        let r = pod_requests(&p, false);
        assert_eq!(
            (r.milli_cpu, r.memory, r.scalar("example.com/gpu")),
            (500, 0, 1)
        );
        let nz = pod_requests(&p, true);
        assert_eq!(nz.milli_cpu, 600);
        assert_eq!(nz.memory, 2 * DEFAULT_MEMORY_REQUEST);
    }

    #[test]
    fn allocatable_falls_back_to_capacity() {
        let n: Node = serde_json::from_value(json!({"metadata": {"name": "n"},
            "status": {"capacity": {"cpu": "4", "memory": "8Gi", "pods": "110"}}}))
        .unwrap();
        let (r, pods) = node_allocatable(&n);
        assert_eq!((r.milli_cpu, r.memory, pods), (4000, 8 << 30, 110));
    }
}
