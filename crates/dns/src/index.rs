//! The cluster's DNS data, built from the watched objects: per Service its kind (ClusterIP
//! addresses, headless, ExternalName), ports and ready endpoints; the namespaces; and the
//! reverse map of Service and endpoint addresses. Rebuilt as a whole when an object changes
//! (a dev cluster has hundreds of objects, not millions) and shared read-only by queries.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::IpAddr;

use k8s_openapi::api::core::v1::{Namespace, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;

/// Seconds every record lives (CoreDNS's `kubernetes` plugin default).
pub const DEFAULT_TTL: u32 = 5;

/// The label linking an EndpointSlice to its Service.
const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ServiceKind {
    /// A Service with cluster IPs: its name resolves to them.
    ClusterIp(Vec<IpAddr>),
    /// `clusterIP: None`: its name resolves to its ready endpoints.
    Headless,
    /// `type: ExternalName`: a CNAME to this name.
    ExternalName(String),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Port {
    /// Lower-case; empty for an unnamed port.
    pub name: String,
    /// Lower-case: tcp, udp or sctp.
    pub protocol: String,
    pub port: u16,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Endpoint {
    pub ip: IpAddr,
    /// The label naming it under the Service: the pod's hostname when the endpoints controller
    /// recorded one (pods with `hostname` and `subdomain` = the Service), else the address
    /// with dashes (`10-244-1-5`).
    pub label: String,
    pub ports: Vec<Port>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServiceEntry {
    pub kind: ServiceKind,
    pub ports: Vec<Port>,
    /// Ready endpoints (from every slice of the Service), sorted by address.
    pub endpoints: Vec<Endpoint>,
}

/// Everything a query can ask about, by lower-case names.
#[derive(Clone, Debug, Default)]
pub struct Index {
    namespaces: BTreeSet<String>,
    services: HashMap<(String, String), ServiceEntry>,
    /// Address → (namespace, service, endpoint label if it is an endpoint's).
    reverse: HashMap<IpAddr, (String, String, Option<String>)>,
    /// Changes with every rebuild (the SOA serial).
    pub serial: u32,
}

/// An address written with dashes, as a DNS label (`10-244-1-5`, `fd00--1`).
pub fn dashed(ip: &IpAddr) -> String {
    ip.to_string().replace(['.', ':'], "-")
}

fn ports_of(ports: impl Iterator<Item = (Option<String>, Option<String>, i32)>) -> Vec<Port> {
    ports
        .filter_map(|(name, protocol, port)| {
            Some(Port {
                name: name.unwrap_or_default().to_ascii_lowercase(),
                protocol: protocol
                    .unwrap_or_else(|| "TCP".into())
                    .to_ascii_lowercase(),
                port: u16::try_from(port).ok()?,
            })
        })
        .collect()
}

impl Index {
    pub fn build<'a>(
        namespaces: impl IntoIterator<Item = &'a Namespace>,
        services: impl IntoIterator<Item = &'a Service>,
        slices: impl IntoIterator<Item = &'a EndpointSlice>,
        serial: u32,
    ) -> Index {
        let mut index = Index {
            serial,
            ..Index::default()
        };
        for ns in namespaces {
            if let Some(name) = &ns.metadata.name {
                index.namespaces.insert(name.to_ascii_lowercase());
            }
        }
        for svc in services {
            let (Some(name), Some(ns)) = (&svc.metadata.name, &svc.metadata.namespace) else {
                continue;
            };
            let spec = svc.spec.clone().unwrap_or_default();
            let kind = if spec.type_.as_deref() == Some("ExternalName") {
                match spec.external_name.filter(|n| !n.is_empty()) {
                    Some(target) => ServiceKind::ExternalName(target),
                    None => continue,
                }
            } else {
                let ips: Vec<IpAddr> = spec
                    .cluster_ips
                    .clone()
                    .filter(|ips| !ips.is_empty())
                    .or_else(|| spec.cluster_ip.clone().map(|ip| vec![ip]))
                    .unwrap_or_default()
                    .iter()
                    .filter_map(|ip| ip.parse().ok())
                    .collect();
                match spec.cluster_ip.as_deref() {
                    Some("None") => ServiceKind::Headless,
                    // Not allocated yet: nothing to answer with.
                    _ if ips.is_empty() => continue,
                    _ => ServiceKind::ClusterIp(ips),
                }
            };
            let ports = ports_of(
                spec.ports
                    .iter()
                    .flatten()
                    .map(|p| (p.name.clone(), p.protocol.clone(), p.port)),
            );
            index.services.insert(
                (ns.to_ascii_lowercase(), name.to_ascii_lowercase()),
                ServiceEntry {
                    kind,
                    ports,
                    endpoints: Vec::new(),
                },
            );
        }
        // Endpoints by Service; one entry per address (a pod in two slices counts once).
        let mut endpoints: HashMap<(String, String), BTreeMap<IpAddr, Endpoint>> = HashMap::new();
        for slice in slices {
            let Some(ns) = &slice.metadata.namespace else {
                continue;
            };
            let Some(service) = slice
                .metadata
                .labels
                .as_ref()
                .and_then(|l| l.get(SERVICE_NAME_LABEL))
            else {
                continue;
            };
            if slice.address_type == "FQDN" {
                continue;
            }
            let ports = ports_of(
                slice
                    .ports
                    .iter()
                    .flatten()
                    .filter_map(|p| Some((p.name.clone(), p.protocol.clone(), p.port?))),
            );
            let key = (ns.to_ascii_lowercase(), service.to_ascii_lowercase());
            let entry = endpoints.entry(key).or_default();
            for endpoint in &slice.endpoints {
                // A missing condition means ready (the API's documented default).
                let ready = endpoint
                    .conditions
                    .as_ref()
                    .and_then(|c| c.ready)
                    .unwrap_or(true);
                if !ready {
                    continue;
                }
                for address in &endpoint.addresses {
                    let Ok(ip) = address.parse::<IpAddr>() else {
                        continue;
                    };
                    let label = endpoint
                        .hostname
                        .clone()
                        .filter(|h| !h.is_empty())
                        .map(|h| h.to_ascii_lowercase())
                        .unwrap_or_else(|| dashed(&ip));
                    entry
                        .entry(ip)
                        .and_modify(|e| e.ports.extend(ports.iter().cloned()))
                        .or_insert_with(|| Endpoint {
                            ip,
                            label,
                            ports: ports.clone(),
                        });
                }
            }
        }
        for (key, list) in endpoints {
            if let Some(svc) = index.services.get_mut(&key) {
                svc.endpoints = list.into_values().collect();
            }
        }
        // Reverse names: Service addresses first, then endpoints (an address already named by
        // a Service keeps that name); sorted so the choice does not depend on map order.
        let mut keys: Vec<&(String, String)> = index.services.keys().collect();
        keys.sort();
        let mut reverse = HashMap::new();
        for (ns, name) in &keys {
            if let ServiceKind::ClusterIp(ips) = &index.services[&(ns.clone(), name.clone())].kind {
                for ip in ips {
                    reverse
                        .entry(*ip)
                        .or_insert_with(|| (ns.clone(), name.clone(), None));
                }
            }
        }
        for (ns, name) in &keys {
            for ep in &index.services[&(ns.clone(), name.clone())].endpoints {
                reverse
                    .entry(ep.ip)
                    .or_insert_with(|| (ns.clone(), name.clone(), Some(ep.label.clone())));
            }
        }
        index.reverse = reverse;
        index
    }

    pub fn has_namespace(&self, namespace: &str) -> bool {
        self.namespaces.contains(namespace)
    }

    pub fn service(&self, namespace: &str, name: &str) -> Option<&ServiceEntry> {
        self.services.get(&(namespace.to_owned(), name.to_owned()))
    }

    /// Who an address belongs to: (namespace, service, endpoint label).
    pub fn reverse(&self, ip: &IpAddr) -> Option<&(String, String, Option<String>)> {
        self.reverse.get(ip)
    }
}
