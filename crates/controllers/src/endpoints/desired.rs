//! What a Service's Endpoints and EndpointSlices should contain, computed from the Service and
//! the pods its selector matches. Pure functions, following upstream's endpoints controller
//! (`RepackSubsets`, `ShouldPodBeInEndpoints`, `FindPort`) and endpointslice reconciler.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;
use std::sync::Arc;

use k8s_openapi::api::core::v1::{
    EndpointAddress, EndpointPort, EndpointSubset, ObjectReference, Pod, Service, ServicePort,
};
use k8s_openapi::api::discovery::v1 as discovery;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use serde_json::Value;

/// Most addresses an Endpoints object holds (upstream `maxCapacity`); the rest is truncated and
/// the object annotated with [`OVER_CAPACITY_ANNOTATION`].
pub const MAX_ENDPOINTS_ADDRESSES: usize = 1000;
pub const OVER_CAPACITY_ANNOTATION: &str = "endpoints.kubernetes.io/over-capacity";
/// Most endpoints one EndpointSlice holds (upstream `--max-endpoints-per-slice` default).
pub const MAX_ENDPOINTS_PER_SLICE: usize = 100;
pub const HEADLESS_LABEL: &str = "service.kubernetes.io/headless";

/// The selector of a Service that selects pods; an absent or empty selector selects nothing
/// here (its Endpoints are the user's to manage).
pub fn selector(svc: &Service) -> Option<&BTreeMap<String, String>> {
    svc.spec
        .as_ref()
        .and_then(|s| s.selector.as_ref())
        .filter(|s| !s.is_empty())
}

pub fn selects(selector: &BTreeMap<String, String>, labels: &BTreeMap<String, String>) -> bool {
    !selector.is_empty() && selector.iter().all(|(k, v)| labels.get(k) == Some(v))
}

pub fn is_headless(svc: &Service) -> bool {
    svc.spec.as_ref().and_then(|s| s.cluster_ip.as_deref()) == Some("None")
}

pub fn is_external_name(svc: &Service) -> bool {
    svc.spec.as_ref().and_then(|s| s.type_.as_deref()) == Some("ExternalName")
}

fn publishes_not_ready(svc: &Service) -> bool {
    svc.spec
        .as_ref()
        .and_then(|s| s.publish_not_ready_addresses)
        .unwrap_or(false)
}

fn service_ports(svc: &Service) -> &[ServicePort] {
    svc.spec
        .as_ref()
        .and_then(|s| s.ports.as_deref())
        .unwrap_or(&[])
}

/// The pod's IPv4 address (the only address family kubelab's services use).
pub fn pod_ipv4(pod: &Pod) -> Option<String> {
    let status = pod.status.as_ref()?;
    let primary = status.pod_ip.iter().map(String::as_str);
    let all = status.pod_ips.iter().flatten().map(|ip| ip.ip.as_str());
    primary
        .chain(all)
        .find(|ip| ip.parse::<Ipv4Addr>().is_ok())
        .map(str::to_string)
}

pub fn is_ready(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

fn is_terminal(pod: &Pod) -> bool {
    matches!(
        pod.status.as_ref().and_then(|s| s.phase.as_deref()),
        Some("Succeeded" | "Failed")
    )
}

fn is_terminating(pod: &Pod) -> bool {
    pod.metadata.deletion_timestamp.is_some()
}

/// Upstream `ShouldPodBeInEndpoints`: not terminal, has an IP, and (unless
/// `include_terminating`) not being deleted.
pub fn should_be_in_endpoints(pod: &Pod, include_terminating: bool) -> bool {
    !is_terminal(pod) && pod_ipv4(pod).is_some() && (include_terminating || !is_terminating(pod))
}

/// The container port a service port reaches on `pod` (upstream `FindPort`): a numeric
/// targetPort as is, a named one looked up among the containers' ports of the same protocol.
pub fn find_port(pod: &Pod, port: &ServicePort) -> Option<i32> {
    match &port.target_port {
        None => Some(port.port),
        Some(IntOrString::Int(0)) => Some(port.port),
        Some(IntOrString::Int(n)) => Some(*n),
        Some(IntOrString::String(name)) => {
            let protocol = port.protocol.as_deref().unwrap_or("TCP");
            pod.spec
                .as_ref()?
                .containers
                .iter()
                .flat_map(|c| c.ports.iter().flatten())
                .find(|p| {
                    p.name.as_deref() == Some(name.as_str())
                        && p.protocol.as_deref().unwrap_or("TCP") == protocol
                })
                .map(|p| p.container_port)
        }
    }
}

/// Upstream `ShouldSetHostname`: the pod names this Service as its subdomain.
fn hostname(pod: &Pod, svc: &Service) -> Option<String> {
    let spec = pod.spec.as_ref()?;
    let hostname = spec.hostname.as_deref().filter(|h| !h.is_empty())?;
    (spec.subdomain.as_deref() == svc.metadata.name.as_deref()
        && pod.metadata.namespace == svc.metadata.namespace)
        .then(|| hostname.to_string())
}

fn pod_reference(pod: &Pod) -> ObjectReference {
    ObjectReference {
        kind: Some("Pod".into()),
        namespace: pod.metadata.namespace.clone(),
        name: pod.metadata.name.clone(),
        uid: pod.metadata.uid.clone(),
        ..ObjectReference::default()
    }
}

fn node_name(pod: &Pod) -> Option<String> {
    pod.spec
        .as_ref()
        .and_then(|s| s.node_name.clone())
        .filter(|n| !n.is_empty())
}

/// A service port resolved for one pod, ordered so port sets compare and sort.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct ResolvedPort {
    name: String,
    port: i32,
    protocol: String,
    app_protocol: Option<String>,
}

fn resolved_ports(pod: &Pod, svc: &Service) -> Vec<ResolvedPort> {
    service_ports(svc)
        .iter()
        .filter_map(|sp| {
            find_port(pod, sp).map(|port| ResolvedPort {
                name: sp.name.clone().unwrap_or_default(),
                port,
                protocol: sp.protocol.clone().unwrap_or_else(|| "TCP".into()),
                app_protocol: sp.app_protocol.clone(),
            })
        })
        .collect()
}

/// The `subsets` of the Service's Endpoints, and whether they were truncated to
/// [`MAX_ENDPOINTS_ADDRESSES`]. `pods` are the pods the selector matches.
pub fn endpoint_subsets(svc: &Service, pods: &[Arc<Pod>]) -> (Vec<EndpointSubset>, bool) {
    let tolerate_unready = publishes_not_ready(svc);
    let headless = is_headless(svc);
    let no_ports = service_ports(svc).is_empty();
    // Port set → (ready addresses, not-ready addresses): upstream RepackSubsets groups the
    // addresses that offer exactly the same ports into one subset.
    let mut groups: BTreeMap<BTreeSet<ResolvedPort>, (Vec<EndpointAddress>, Vec<EndpointAddress>)> =
        BTreeMap::new();
    for pod in pods {
        if !should_be_in_endpoints(pod, tolerate_unready) {
            continue;
        }
        let Some(ip) = pod_ipv4(pod) else { continue };
        let ports: BTreeSet<ResolvedPort> = resolved_ports(pod, svc).into_iter().collect();
        // A Service without ports has endpoints only when headless; a pod offering none of
        // the Service's ports is left out.
        if (no_ports && !headless) || (!no_ports && ports.is_empty()) {
            continue;
        }
        let address = EndpointAddress {
            ip,
            hostname: hostname(pod, svc),
            node_name: node_name(pod),
            target_ref: Some(pod_reference(pod)),
        };
        let entry = groups.entry(ports).or_default();
        if tolerate_unready || is_ready(pod) {
            entry.0.push(address);
        } else {
            entry.1.push(address);
        }
    }
    let mut subsets: Vec<EndpointSubset> = groups
        .into_iter()
        .map(|(ports, (mut ready, mut not_ready))| {
            sort_addresses(&mut ready);
            sort_addresses(&mut not_ready);
            EndpointSubset {
                addresses: non_empty(ready),
                not_ready_addresses: non_empty(not_ready),
                ports: non_empty(
                    ports
                        .into_iter()
                        .map(|p| EndpointPort {
                            name: Some(p.name).filter(|n| !n.is_empty()),
                            port: p.port,
                            protocol: Some(p.protocol),
                            app_protocol: p.app_protocol,
                        })
                        .collect(),
                ),
            }
        })
        .collect();
    subsets.sort_by(|a, b| first_address(a).cmp(&first_address(b)));
    let truncated = truncate(&mut subsets, MAX_ENDPOINTS_ADDRESSES);
    (subsets, truncated)
}

fn non_empty<T>(v: Vec<T>) -> Option<Vec<T>> {
    (!v.is_empty()).then_some(v)
}

fn address_key(a: &EndpointAddress) -> (&str, &str) {
    (
        a.ip.as_str(),
        a.target_ref
            .as_ref()
            .and_then(|r| r.uid.as_deref())
            .unwrap_or(""),
    )
}

fn sort_addresses(addresses: &mut [EndpointAddress]) {
    addresses.sort_by(|a, b| address_key(a).cmp(&address_key(b)));
}

fn first_address(s: &EndpointSubset) -> Option<&str> {
    s.addresses
        .iter()
        .chain(s.not_ready_addresses.iter())
        .flatten()
        .map(|a| a.ip.as_str())
        .next()
}

/// Upstream `truncateEndpoints`: keep at most `max` addresses, ready ones first, each subset
/// keeping a share proportional to its size. Returns whether anything was cut.
fn truncate(subsets: &mut [EndpointSubset], max: usize) -> bool {
    let len = |v: &Option<Vec<EndpointAddress>>| v.as_ref().map_or(0, Vec::len);
    let total_ready: usize = subsets.iter().map(|s| len(&s.addresses)).sum();
    let total_not_ready: usize = subsets.iter().map(|s| len(&s.not_ready_addresses)).sum();
    if total_ready + total_not_ready <= max {
        return false;
    }
    let truncate_ready = total_ready > max;
    let (budget, total) = if truncate_ready {
        (max, total_ready)
    } else {
        (max - total_ready, total_not_ready)
    };
    let mut left = budget;
    for subset in subsets.iter_mut() {
        let in_subset = if truncate_ready {
            len(&subset.addresses)
        } else {
            len(&subset.not_ready_addresses)
        };
        let share = (in_subset * budget).div_ceil(total.max(1)).min(left);
        if truncate_ready {
            if let Some(a) = subset.addresses.as_mut() {
                a.truncate(share);
            }
            subset.not_ready_addresses = None;
            left -= len(&subset.addresses);
        } else {
            if let Some(a) = subset.not_ready_addresses.as_mut() {
                a.truncate(share);
            }
            left -= len(&subset.not_ready_addresses);
        }
    }
    true
}

/// EndpointSlice content for one port set.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SliceGroup {
    pub ports: Vec<discovery::EndpointPort>,
    pub endpoints: Vec<discovery::Endpoint>,
}

/// The endpoints of the Service's EndpointSlices, grouped by the ports they offer (the map key
/// is a canonical rendering of the ports). Terminating pods are included, not ready.
pub fn slice_groups(svc: &Service, pods: &[Arc<Pod>]) -> BTreeMap<String, SliceGroup> {
    let publish_not_ready = publishes_not_ready(svc);
    let headless = is_headless(svc);
    let no_ports = service_ports(svc).is_empty();
    let mut groups: BTreeMap<String, SliceGroup> = BTreeMap::new();
    for pod in pods {
        if !should_be_in_endpoints(pod, true) {
            continue;
        }
        let Some(ip) = pod_ipv4(pod) else { continue };
        let resolved = resolved_ports(pod, svc);
        if (no_ports && !headless) || (!no_ports && resolved.is_empty()) {
            continue;
        }
        let ports: Vec<discovery::EndpointPort> = resolved
            .into_iter()
            .map(|p| discovery::EndpointPort {
                name: Some(p.name),
                port: Some(p.port),
                protocol: Some(p.protocol),
                app_protocol: p.app_protocol,
            })
            .collect();
        let serving = is_ready(pod);
        let terminating = is_terminating(pod);
        let endpoint = discovery::Endpoint {
            addresses: vec![ip],
            conditions: Some(discovery::EndpointConditions {
                ready: Some(publish_not_ready || (serving && !terminating)),
                serving: Some(serving),
                terminating: Some(terminating),
            }),
            hostname: hostname(pod, svc),
            node_name: node_name(pod),
            target_ref: Some(pod_reference(pod)),
            ..discovery::Endpoint::default()
        };
        let group = groups.entry(ports_key(&ports)).or_default();
        if group.ports.is_empty() {
            group.ports = ports;
        }
        group.endpoints.push(endpoint);
    }
    for group in groups.values_mut() {
        group.endpoints.sort_by_key(endpoint_key);
    }
    groups
}

/// The slice content mirroring user-managed Endpoints (upstream's endpointslicemirroring
/// controller): one group per port set, ready and not-ready IPv4 addresses.
pub fn mirrored_groups(ep: &k8s_openapi::api::core::v1::Endpoints) -> BTreeMap<String, SliceGroup> {
    let mut groups: BTreeMap<String, SliceGroup> = BTreeMap::new();
    for subset in ep.subsets.iter().flatten() {
        let ports: Vec<discovery::EndpointPort> = subset
            .ports
            .iter()
            .flatten()
            .map(|p| discovery::EndpointPort {
                name: Some(p.name.clone().unwrap_or_default()),
                port: Some(p.port),
                protocol: Some(p.protocol.clone().unwrap_or_else(|| "TCP".into())),
                app_protocol: p.app_protocol.clone(),
            })
            .collect();
        let group = groups.entry(ports_key(&ports)).or_default();
        if group.ports.is_empty() {
            group.ports = ports;
        }
        let addresses = subset.addresses.iter().flatten().map(|a| (a, true)).chain(
            subset
                .not_ready_addresses
                .iter()
                .flatten()
                .map(|a| (a, false)),
        );
        for (address, ready) in addresses {
            if address.ip.parse::<Ipv4Addr>().is_err() {
                continue;
            }
            group.endpoints.push(discovery::Endpoint {
                addresses: vec![address.ip.clone()],
                conditions: Some(discovery::EndpointConditions {
                    ready: Some(ready),
                    ..discovery::EndpointConditions::default()
                }),
                hostname: address.hostname.clone(),
                node_name: address.node_name.clone(),
                target_ref: address.target_ref.clone(),
                ..discovery::Endpoint::default()
            });
        }
    }
    for group in groups.values_mut() {
        group.endpoints.sort_by_key(endpoint_key);
        group
            .endpoints
            .dedup_by(|a, b| endpoint_key(a) == endpoint_key(b));
    }
    groups.retain(|_, g| !g.endpoints.is_empty());
    groups
}

/// A canonical, order-independent rendering of a slice's ports.
pub fn ports_key(ports: &[discovery::EndpointPort]) -> String {
    let mut keys: Vec<String> = ports
        .iter()
        .map(|p| {
            format!(
                "{}/{}/{}/{}",
                p.name.as_deref().unwrap_or(""),
                p.port.unwrap_or(0),
                p.protocol.as_deref().unwrap_or("TCP"),
                p.app_protocol.as_deref().unwrap_or("")
            )
        })
        .collect();
    keys.sort();
    keys.join(",")
}

/// Identity of a slice endpoint: its address and the pod behind it.
pub fn endpoint_key(e: &discovery::Endpoint) -> String {
    format!(
        "{}|{}",
        e.addresses.first().map(String::as_str).unwrap_or(""),
        e.target_ref
            .as_ref()
            .and_then(|r| r.uid.as_deref())
            .unwrap_or("")
    )
}

/// JSON with nulls, empty arrays and empty objects removed: two renderings of the same content
/// (one written by us, one read back from the server) compare equal.
pub fn canonical(v: &Value) -> Value {
    match v {
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| (k.clone(), canonical(v)))
                .filter(|(_, v)| !is_empty_value(v))
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.iter().map(canonical).collect()),
        other => other.clone(),
    }
}

fn is_empty_value(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::Array(a) => a.is_empty(),
        Value::Object(o) => o.is_empty(),
        _ => false,
    }
}

/// Whether two serializable values have the same canonical JSON.
pub fn same<T: k8s_openapi::serde::Serialize>(a: &T, b: &T) -> bool {
    match (serde_json::to_value(a), serde_json::to_value(b)) {
        (Ok(a), Ok(b)) => canonical(&a) == canonical(&b),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn service(spec: Value) -> Service {
        serde_json::from_value(json!({
            "metadata": {"name": "web", "namespace": "default"},
            "spec": spec,
        }))
        .unwrap()
    }

    fn pod(name: &str, ip: Option<&str>, ready: bool, extra: Value) -> Arc<Pod> {
        let mut p = json!({
            "metadata": {"name": name, "namespace": "default", "uid": format!("uid-{name}"),
                          "labels": {"app": "web"}},
            "spec": {"nodeName": "fake-node-1", "containers": [{
                "name": "c", "image": "busybox",
                "ports": [{"name": "http", "containerPort": 8080, "protocol": "TCP"}]
            }]},
            "status": {"phase": "Running",
                       "conditions": [{"type": "Ready", "status": if ready {"True"} else {"False"}}]},
        });
        if let Some(ip) = ip {
            p["status"]["podIP"] = json!(ip);
        }
        json_merge(&mut p, extra);
        Arc::new(serde_json::from_value(p).unwrap())
    }

    fn json_merge(target: &mut Value, patch: Value) {
        if let (Value::Object(t), Value::Object(p)) = (&mut *target, &patch) {
            for (k, v) in p {
                json_merge(t.entry(k.clone()).or_insert(Value::Null), v.clone());
            }
        } else {
            *target = patch;
        }
    }

    fn ips(addresses: &Option<Vec<EndpointAddress>>) -> Vec<&str> {
        addresses.iter().flatten().map(|a| a.ip.as_str()).collect()
    }

    #[test]
    fn ready_and_not_ready_addresses_with_named_port() {
        let svc = service(
            json!({"selector": {"app": "web"}, "clusterIP": "10.96.0.10",
            "ports": [{"name": "web", "port": 80, "targetPort": "http", "protocol": "TCP"}]}),
        );
        let pods = vec![
            pod("a", Some("10.244.1.2"), true, json!({})),
            pod("b", Some("10.244.2.2"), false, json!({})),
            pod("c", None, true, json!({})),
            pod(
                "d",
                Some("10.244.3.2"),
                true,
                json!({"status": {"phase": "Succeeded"}}),
            ),
        ];
        let (subsets, truncated) = endpoint_subsets(&svc, &pods);
        assert!(!truncated);
        assert_eq!(subsets.len(), 1);
        assert_eq!(ips(&subsets[0].addresses), ["10.244.1.2"]);
        assert_eq!(ips(&subsets[0].not_ready_addresses), ["10.244.2.2"]);
        let ports = subsets[0].ports.as_ref().unwrap();
        assert_eq!(ports[0].port, 8080);
        assert_eq!(ports[0].name.as_deref(), Some("web"));
        let a = &subsets[0].addresses.as_ref().unwrap()[0];
        assert_eq!(a.node_name.as_deref(), Some("fake-node-1"));
        assert_eq!(a.target_ref.as_ref().unwrap().name.as_deref(), Some("a"));
    }

    #[test]
    fn pods_with_different_port_mappings_get_their_own_subset() {
        let svc = service(json!({"selector": {"app": "web"},
            "ports": [{"port": 80, "targetPort": "http", "protocol": "TCP"}]}));
        let other = json!({"spec": {"containers": [{"name": "c", "image": "busybox",
            "ports": [{"name": "http", "containerPort": 9090, "protocol": "TCP"}]}]}});
        let pods = vec![
            pod("a", Some("10.244.1.2"), true, json!({})),
            pod("b", Some("10.244.1.3"), true, other),
            pod(
                "c",
                Some("10.244.1.4"),
                true,
                json!({"spec": {"containers": [{"name": "c", "image": "x"}]}}),
            ),
        ];
        let (subsets, _) = endpoint_subsets(&svc, &pods);
        assert_eq!(subsets.len(), 2, "{subsets:?}");
        let ports: BTreeSet<i32> = subsets
            .iter()
            .map(|s| s.ports.as_ref().unwrap()[0].port)
            .collect();
        assert_eq!(ports, BTreeSet::from([8080, 9090]));
    }

    #[test]
    fn terminating_pods_leave_endpoints_but_stay_in_slices_not_ready() {
        let svc = service(json!({"selector": {"app": "web"},
            "ports": [{"port": 80, "targetPort": 8080, "protocol": "TCP"}]}));
        let pods = vec![pod(
            "a",
            Some("10.244.1.2"),
            true,
            json!({"metadata": {"deletionTimestamp": "2025-01-01T00:00:00Z"}}),
        )];
        let (subsets, _) = endpoint_subsets(&svc, &pods);
        assert!(subsets.is_empty());
        let groups = slice_groups(&svc, &pods);
        let ep = &groups.values().next().unwrap().endpoints[0];
        let c = ep.conditions.as_ref().unwrap();
        assert_eq!(
            (c.ready, c.serving, c.terminating),
            (Some(false), Some(true), Some(true))
        );
    }

    #[test]
    fn publish_not_ready_addresses_makes_everyone_ready() {
        let svc = service(
            json!({"selector": {"app": "web"}, "publishNotReadyAddresses": true,
            "ports": [{"port": 80, "protocol": "TCP"}]}),
        );
        let pods = vec![pod("a", Some("10.244.1.2"), false, json!({}))];
        let (subsets, _) = endpoint_subsets(&svc, &pods);
        assert_eq!(ips(&subsets[0].addresses), ["10.244.1.2"]);
        assert_eq!(subsets[0].ports.as_ref().unwrap()[0].port, 80);
    }

    #[test]
    fn headless_without_ports_and_hostnames() {
        let svc = service(json!({"selector": {"app": "web"}, "clusterIP": "None"}));
        let pods = vec![pod(
            "a",
            Some("10.244.1.2"),
            true,
            json!({"spec": {"hostname": "a", "subdomain": "web"}}),
        )];
        let (subsets, _) = endpoint_subsets(&svc, &pods);
        assert_eq!(subsets.len(), 1);
        assert!(subsets[0].ports.is_none());
        assert_eq!(
            subsets[0].addresses.as_ref().unwrap()[0]
                .hostname
                .as_deref(),
            Some("a")
        );
        let groups = slice_groups(&svc, &pods);
        assert_eq!(groups.len(), 1);
        assert!(groups.values().next().unwrap().ports.is_empty());
        // Not headless and no ports: nothing.
        let plain = service(json!({"selector": {"app": "web"}}));
        assert!(endpoint_subsets(&plain, &pods).0.is_empty());
    }

    #[test]
    fn truncation_keeps_ready_first() {
        let mut subsets = vec![EndpointSubset {
            addresses: Some(
                (0..8)
                    .map(|i| EndpointAddress {
                        ip: format!("10.0.0.{i}"),
                        ..EndpointAddress::default()
                    })
                    .collect(),
            ),
            not_ready_addresses: Some(vec![EndpointAddress::default(); 4]),
            ports: None,
        }];
        assert!(truncate(&mut subsets, 10));
        assert_eq!(subsets[0].addresses.as_ref().unwrap().len(), 8);
        assert_eq!(subsets[0].not_ready_addresses.as_ref().unwrap().len(), 2);
        assert!(!truncate(&mut subsets, 10));
        assert!(truncate(&mut subsets, 5));
        assert_eq!(subsets[0].addresses.as_ref().unwrap().len(), 5);
        assert!(subsets[0].not_ready_addresses.is_none());
    }

    #[test]
    fn mirroring_groups_user_endpoints_by_ports() {
        let ep: k8s_openapi::api::core::v1::Endpoints = serde_json::from_value(json!({
            "metadata": {"name": "ext", "namespace": "default"},
            "subsets": [
                {"addresses": [{"ip": "192.0.2.1"}], "notReadyAddresses": [{"ip": "192.0.2.2"}],
                 "ports": [{"port": 80}]},
                {"addresses": [{"ip": "192.0.2.3"}, {"ip": "2001:db8::1"}], "ports": [{"port": 80}]},
                {"addresses": [{"ip": "192.0.2.4"}], "ports": [{"name": "x", "port": 81}]},
            ],
        }))
        .unwrap();
        let groups = mirrored_groups(&ep);
        assert_eq!(groups.len(), 2);
        let g80 = &groups[&ports_key(&[discovery::EndpointPort {
            name: Some(String::new()),
            port: Some(80),
            protocol: Some("TCP".into()),
            app_protocol: None,
        }])];
        let addrs: Vec<(&str, Option<bool>)> = g80
            .endpoints
            .iter()
            .map(|e| {
                (
                    e.addresses[0].as_str(),
                    e.conditions.as_ref().unwrap().ready,
                )
            })
            .collect();
        assert_eq!(
            addrs,
            [
                ("192.0.2.1", Some(true)),
                ("192.0.2.2", Some(false)),
                ("192.0.2.3", Some(true))
            ]
        );
    }

    #[test]
    fn canonical_ignores_empty_fields() {
        assert_eq!(
            canonical(&json!({"a": [], "b": null, "c": {"d": {}}, "e": 1})),
            json!({"e": 1})
        );
    }
}
