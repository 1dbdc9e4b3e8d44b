//! The objects as MetalLB reads them: IPAddressPools, L2Advertisements (as JSON through
//! `DynamicObject`, parsed here) and the part of a Service that decides its addresses.
//! Pure functions; the annotations are MetalLB's (`metallb.io/…`, and the older
//! `metallb.universe.tf/…` spelling, the newer one winning when both are set).

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kube::api::DynamicObject;
use kube::ResourceExt;
use serde::Deserialize;

use crate::addresses::Range;

pub const ANNOTATION_ADDRESS_POOL: &str = "address-pool";
pub const ANNOTATION_LOAD_BALANCER_IPS: &str = "loadBalancerIPs";
pub const ANNOTATION_ALLOW_SHARED_IP: &str = "allow-shared-ip";
/// Written by the controller: the pool a Service's address came from.
pub const ANNOTATION_ALLOCATED_FROM_POOL: &str = "metallb.io/ip-allocated-from-pool";

/// A MetalLB annotation under `metallb.io/`, else under `metallb.universe.tf/`.
pub fn annotation<'a>(annotations: &'a BTreeMap<String, String>, name: &str) -> Option<&'a str> {
    annotations
        .get(&format!("metallb.io/{name}"))
        .or_else(|| annotations.get(&format!("metallb.universe.tf/{name}")))
        .map(String::as_str)
}

/// `matchLabels` and `matchExpressions` (In, NotIn, Exists, DoesNotExist) against labels;
/// an empty selector matches everything.
pub fn selector_matches(selector: &LabelSelector, labels: &BTreeMap<String, String>) -> bool {
    let by_labels = selector
        .match_labels
        .iter()
        .flatten()
        .all(|(k, v)| labels.get(k) == Some(v));
    let by_expressions = selector.match_expressions.iter().flatten().all(|e| {
        let values = e.values.as_deref().unwrap_or_default();
        let value = labels.get(&e.key);
        match e.operator.as_str() {
            "In" => value.is_some_and(|v| values.contains(v)),
            "NotIn" => !value.is_some_and(|v| values.contains(v)),
            "Exists" => value.is_some(),
            "DoesNotExist" => value.is_none(),
            _ => false,
        }
    });
    by_labels && by_expressions
}

#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ServiceAllocation {
    pub priority: Option<i64>,
    #[serde(default)]
    pub namespaces: Vec<String>,
    #[serde(default)]
    pub namespace_selectors: Vec<LabelSelector>,
    #[serde(default)]
    pub service_selectors: Vec<LabelSelector>,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct PoolSpec {
    #[serde(default)]
    addresses: Vec<String>,
    auto_assign: Option<bool>,
    #[serde(default, rename = "avoidBuggyIPs")]
    avoid_buggy_ips: bool,
    service_allocation: Option<ServiceAllocation>,
}

/// An IPAddressPool.
#[derive(Clone, Debug, PartialEq)]
pub struct Pool {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub ranges: Vec<Range>,
    pub auto_assign: bool,
    pub avoid_buggy_ips: bool,
    pub allocation: Option<ServiceAllocation>,
    /// Why the pool cannot be used (an address that does not parse), if so.
    pub invalid: Option<String>,
}

impl Pool {
    pub fn from_object(object: &DynamicObject) -> Pool {
        let spec: Result<PoolSpec, String> = object
            .data
            .get("spec")
            .cloned()
            .map(serde_json::from_value)
            .unwrap_or_else(|| Ok(PoolSpec::default()))
            .map_err(|e| e.to_string());
        let mut pool = Pool {
            name: object.name_any(),
            labels: object.labels().clone(),
            ranges: vec![],
            auto_assign: true,
            avoid_buggy_ips: false,
            allocation: None,
            invalid: None,
        };
        match spec {
            Ok(spec) => {
                pool.auto_assign = spec.auto_assign.unwrap_or(true);
                pool.avoid_buggy_ips = spec.avoid_buggy_ips;
                pool.allocation = spec.service_allocation;
                for address in &spec.addresses {
                    match Range::parse(address) {
                        Ok(range) => pool.ranges.push(range),
                        Err(e) => pool.invalid = Some(e.to_string()),
                    }
                }
            }
            Err(e) => pool.invalid = Some(format!("invalid spec: {e}")),
        }
        if pool.invalid.is_some() {
            pool.ranges.clear();
        }
        pool
    }

    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        self.ranges.iter().any(|r| r.contains(ip))
            && !(self.avoid_buggy_ips && crate::addresses::is_buggy(ip))
    }

    /// Every usable address, in order.
    pub fn addresses(&self) -> impl Iterator<Item = Ipv4Addr> + '_ {
        self.ranges
            .iter()
            .flat_map(Range::iter)
            .filter(|ip| !(self.avoid_buggy_ips && crate::addresses::is_buggy(*ip)))
    }

    pub fn size(&self) -> u64 {
        self.addresses().count() as u64
    }

    /// Whether `serviceAllocation` lets the Service use this pool.
    pub fn allows(&self, svc: &ServiceView, namespace_labels: &BTreeMap<String, String>) -> bool {
        let Some(a) = &self.allocation else {
            return true;
        };
        let namespace_ok = (a.namespaces.is_empty() && a.namespace_selectors.is_empty())
            || a.namespaces.contains(&svc.namespace)
            || a.namespace_selectors
                .iter()
                .any(|s| selector_matches(s, namespace_labels));
        let service_ok = a.service_selectors.is_empty()
            || a.service_selectors
                .iter()
                .any(|s| selector_matches(s, &svc.labels));
        namespace_ok && service_ok
    }

    /// Sort key: pools with a priority first, lower first, then by name.
    pub fn priority_key(&self) -> (bool, i64, String) {
        match self.allocation.as_ref().and_then(|a| a.priority) {
            Some(p) => (false, p, self.name.clone()),
            None => (true, 0, self.name.clone()),
        }
    }
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct L2Spec {
    #[serde(default)]
    ip_address_pools: Vec<String>,
    #[serde(default)]
    ip_address_pool_selectors: Vec<LabelSelector>,
    #[serde(default)]
    node_selectors: Vec<LabelSelector>,
    #[serde(default)]
    interfaces: Vec<String>,
}

/// An L2Advertisement: which pools are announced, from which nodes, on which interfaces.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct L2Advertisement {
    pub name: String,
    pub pools: Vec<String>,
    pub pool_selectors: Vec<LabelSelector>,
    pub node_selectors: Vec<LabelSelector>,
    pub interfaces: Vec<String>,
}

impl L2Advertisement {
    pub fn from_object(object: &DynamicObject) -> L2Advertisement {
        let spec: L2Spec = object
            .data
            .get("spec")
            .cloned()
            .and_then(|s| serde_json::from_value(s).ok())
            .unwrap_or_default();
        L2Advertisement {
            name: object.name_any(),
            pools: spec.ip_address_pools,
            pool_selectors: spec.ip_address_pool_selectors,
            node_selectors: spec.node_selectors,
            interfaces: spec.interfaces,
        }
    }

    /// No pool named or selected means every pool.
    pub fn selects_pool(&self, pool: &Pool) -> bool {
        (self.pools.is_empty() && self.pool_selectors.is_empty())
            || self.pools.contains(&pool.name)
            || self
                .pool_selectors
                .iter()
                .any(|s| selector_matches(s, &pool.labels))
    }

    /// No node selector means every node.
    pub fn selects_node(&self, node_labels: &BTreeMap<String, String>) -> bool {
        self.node_selectors.is_empty()
            || self
                .node_selectors
                .iter()
                .any(|s| selector_matches(s, node_labels))
    }
}

/// What decides a Service's addresses.
#[derive(Clone, Debug, PartialEq)]
pub struct ServiceView {
    /// `namespace/name`.
    pub key: String,
    pub namespace: String,
    pub labels: BTreeMap<String, String>,
    /// RFC 3339 creation time: older Services get addresses first.
    pub created: String,
    /// Type LoadBalancer, not being deleted, no `loadBalancerClass` (another implementation's).
    pub wants_address: bool,
    /// The addresses in `status.loadBalancer.ingress`.
    pub current: Vec<Ipv4Addr>,
    /// `metallb.io/loadBalancerIPs` or `spec.loadBalancerIP`; Err when invalid.
    pub requested: Result<Vec<Ipv4Addr>, String>,
    /// `metallb.io/address-pool`.
    pub pool: Option<String>,
    /// `metallb.io/allow-shared-ip`.
    pub sharing_key: Option<String>,
    /// (protocol, port) of every port.
    pub ports: Vec<(String, i32)>,
    /// Services sharing an address must agree on it: the selector with
    /// `externalTrafficPolicy: Local` (traffic goes to the announcing node's pods), else empty.
    pub backend_key: String,
}

impl Default for ServiceView {
    fn default() -> ServiceView {
        ServiceView {
            key: String::new(),
            namespace: String::new(),
            labels: BTreeMap::new(),
            created: String::new(),
            wants_address: false,
            current: vec![],
            requested: Ok(vec![]),
            pool: None,
            sharing_key: None,
            ports: vec![],
            backend_key: String::new(),
        }
    }
}

impl ServiceView {
    pub fn from_service(svc: &Service) -> ServiceView {
        let spec = svc.spec.clone().unwrap_or_default();
        let annotations = svc.annotations();
        let ipv6_only = spec
            .cluster_ip
            .as_deref()
            .is_some_and(|ip| ip.contains(':'));
        let wants_address = spec.type_.as_deref() == Some("LoadBalancer")
            && svc.metadata.deletion_timestamp.is_none()
            && spec.load_balancer_class.is_none()
            && !ipv6_only;
        let current = svc
            .status
            .as_ref()
            .and_then(|s| s.load_balancer.as_ref())
            .and_then(|lb| lb.ingress.as_ref())
            .into_iter()
            .flatten()
            .filter_map(|i| i.ip.as_deref()?.parse().ok())
            .collect();
        let from_annotation = annotation(annotations, ANNOTATION_LOAD_BALANCER_IPS);
        let from_spec = spec.load_balancer_ip.as_deref().filter(|s| !s.is_empty());
        let requested = match (from_annotation, from_spec) {
            (Some(_), Some(_)) => Err(format!(
                "service can not have both metallb.io/{ANNOTATION_LOAD_BALANCER_IPS} and spec.loadBalancerIP"
            )),
            (Some(list), None) => list
                .split(',')
                .map(|s| {
                    s.trim().parse::<Ipv4Addr>().map_err(|_| {
                        format!("invalid metallb.io/{ANNOTATION_LOAD_BALANCER_IPS}: {list:?} (IPv4 addresses only)")
                    })
                })
                .collect(),
            (None, Some(ip)) => ip
                .parse::<Ipv4Addr>()
                .map(|ip| vec![ip])
                .map_err(|_| format!("invalid spec.loadBalancerIP {ip:?} (IPv4 addresses only)")),
            (None, None) => Ok(vec![]),
        };
        let backend_key = if spec.external_traffic_policy.as_deref() == Some("Local") {
            format!("{:?}", spec.selector.clone().unwrap_or_default())
        } else {
            String::new()
        };
        ServiceView {
            key: format!("{}/{}", svc.namespace().unwrap_or_default(), svc.name_any()),
            namespace: svc.namespace().unwrap_or_default(),
            labels: svc.labels().clone(),
            created: svc
                .metadata
                .creation_timestamp
                .as_ref()
                .map(|t| t.0.to_string())
                .unwrap_or_default(),
            wants_address,
            current,
            requested,
            pool: annotation(annotations, ANNOTATION_ADDRESS_POOL).map(str::to_owned),
            sharing_key: annotation(annotations, ANNOTATION_ALLOW_SHARED_IP)
                .filter(|k| !k.is_empty())
                .map(str::to_owned),
            ports: spec
                .ports
                .iter()
                .flatten()
                .map(|p| (p.protocol.clone().unwrap_or_else(|| "TCP".into()), p.port))
                .collect(),
            backend_key,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelectorRequirement;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn selectors() {
        let s = LabelSelector {
            match_labels: Some(labels(&[("a", "1")])),
            match_expressions: Some(vec![LabelSelectorRequirement {
                key: "b".into(),
                operator: "NotIn".into(),
                values: Some(vec!["x".into()]),
            }]),
        };
        assert!(selector_matches(&s, &labels(&[("a", "1")])));
        assert!(selector_matches(&s, &labels(&[("a", "1"), ("b", "y")])));
        assert!(!selector_matches(&s, &labels(&[("a", "1"), ("b", "x")])));
        assert!(!selector_matches(&s, &labels(&[("a", "2")])));
        assert!(selector_matches(&LabelSelector::default(), &labels(&[])));
    }

    #[test]
    fn pools_parse_and_reject_bad_addresses() {
        let object: DynamicObject = serde_json::from_value(serde_json::json!({
            "apiVersion": "metallb.io/v1beta1", "kind": "IPAddressPool",
            "metadata": {"name": "p", "namespace": "metallb-system"},
            "spec": {"addresses": ["10.0.0.0/31", "10.0.0.255-10.0.1.0"], "avoidBuggyIPs": true,
                     "autoAssign": false, "serviceAllocation": {"priority": 5, "namespaces": ["a"]}}
        }))
        .unwrap();
        let pool = Pool::from_object(&object);
        assert!(!pool.auto_assign && pool.invalid.is_none());
        assert_eq!(
            pool.addresses().map(|a| a.to_string()).collect::<Vec<_>>(),
            ["10.0.0.1"]
        );
        assert_eq!(pool.priority_key(), (false, 5, "p".into()));
        let svc = ServiceView {
            namespace: "b".into(),
            ..Default::default()
        };
        assert!(!pool.allows(&svc, &BTreeMap::new()));
        let mut bad = object.clone();
        bad.data["spec"]["addresses"] = serde_json::json!(["10.0.0.0/24", "oops"]);
        let bad = Pool::from_object(&bad);
        assert!(bad.invalid.is_some() && bad.size() == 0);
    }

    #[test]
    fn service_view_reads_annotations_and_spec() {
        let svc: Service = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "web", "namespace": "default", "annotations": {
                "metallb.universe.tf/loadBalancerIPs": "10.0.0.5, 10.0.0.6",
                "metallb.universe.tf/allow-shared-ip": "k",
                "metallb.io/address-pool": "p"}},
            "spec": {"type": "LoadBalancer", "clusterIP": "10.96.0.9",
                     "ports": [{"port": 80}, {"port": 53, "protocol": "UDP"}]},
            "status": {"loadBalancer": {"ingress": [{"ip": "10.0.0.5"}]}}
        }))
        .unwrap();
        let view = ServiceView::from_service(&svc);
        assert!(view.wants_address);
        assert_eq!(view.key, "default/web");
        assert_eq!(
            view.requested.clone().unwrap(),
            vec![
                "10.0.0.5".parse::<Ipv4Addr>().unwrap(),
                "10.0.0.6".parse().unwrap()
            ]
        );
        assert_eq!(view.current, vec!["10.0.0.5".parse::<Ipv4Addr>().unwrap()]);
        assert_eq!(
            (view.pool.as_deref(), view.sharing_key.as_deref()),
            (Some("p"), Some("k"))
        );
        assert_eq!(view.ports, vec![("TCP".into(), 80), ("UDP".into(), 53)]);
        let mut both = svc.clone();
        both.spec.as_mut().unwrap().load_balancer_ip = Some("10.0.0.7".into());
        assert!(ServiceView::from_service(&both).requested.is_err());
        let mut other = svc;
        other.spec.as_mut().unwrap().load_balancer_class = Some("example.com/lb".into());
        assert!(!ServiceView::from_service(&other).wants_address);
    }
}
