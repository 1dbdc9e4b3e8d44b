//! Services and EndpointSlices reduced to what the rules need: one [`ServicePort`] per port of
//! a Service that has a ClusterIP, with the ready endpoints of that port. Pure functions.

use std::collections::BTreeSet;
use std::fmt;
use std::net::Ipv4Addr;
use std::str::FromStr;

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;

use crate::Error;

/// The label an EndpointSlice carries naming its Service.
pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";

/// An IPv4 network, `address/prefix`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Cidr {
    pub address: Ipv4Addr,
    pub prefix: u8,
}

impl Cidr {
    /// Whether `ip` is inside the network.
    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        let mask = if self.prefix == 0 {
            0
        } else {
            u32::MAX << (32 - u32::from(self.prefix))
        };
        u32::from(ip) & mask == u32::from(self.address) & mask
    }
}

impl FromStr for Cidr {
    type Err = Error;
    fn from_str(s: &str) -> Result<Cidr, Error> {
        let invalid = || Error::InvalidCidr(s.to_owned());
        let (address, prefix) = s.split_once('/').ok_or_else(invalid)?;
        let address: Ipv4Addr = address.parse().map_err(|_| invalid())?;
        let prefix: u8 = prefix.parse().map_err(|_| invalid())?;
        if prefix > 32 {
            return Err(invalid());
        }
        Ok(Cidr { address, prefix })
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.address, self.prefix)
    }
}

/// A transport protocol of a Service port.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Protocol {
    Tcp,
    Udp,
    Sctp,
}

impl Protocol {
    fn parse(s: Option<&str>) -> Option<Protocol> {
        match s.unwrap_or("TCP") {
            "TCP" => Some(Protocol::Tcp),
            "UDP" => Some(Protocol::Udp),
            "SCTP" => Some(Protocol::Sctp),
            _ => None,
        }
    }

    /// The name iptables uses (`-p tcp`).
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
            Protocol::Sctp => "sctp",
        }
    }
}

/// One ready endpoint of a Service port.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Endpoint {
    pub ip: Ipv4Addr,
    pub port: u16,
    /// Whether the endpoint runs on this node (externalTrafficPolicy Local).
    pub local: bool,
}

/// One port of a Service, as the proxy routes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServicePort {
    /// `namespace/name:port` (the port's name, or its number when unnamed).
    pub name: String,
    pub cluster_ip: Ipv4Addr,
    pub port: u16,
    pub protocol: Protocol,
    /// The NodePort (NodePort and LoadBalancer Services).
    pub node_port: Option<u16>,
    /// `spec.externalIPs` and `status.loadBalancer.ingress[].ip`, routed like the NodePort.
    pub external_ips: Vec<Ipv4Addr>,
    /// `externalTrafficPolicy: Local`: external traffic only to endpoints on this node, with
    /// the client's address kept.
    pub external_local: bool,
    /// `sessionAffinity: ClientIP`: the timeout in seconds.
    pub affinity_seconds: Option<u32>,
    /// The ready endpoints, sorted, without duplicates.
    pub endpoints: Vec<Endpoint>,
}

impl ServicePort {
    /// Whether the port is reachable from outside the cluster network (NodePort, external or
    /// load-balancer IPs).
    pub fn has_external(&self) -> bool {
        self.node_port.is_some() || !self.external_ips.is_empty()
    }
}

/// The ports of `service` the proxy routes (none for headless, ExternalName and IPv6-only
/// Services), with their ready endpoints from `slices` (the Service's EndpointSlices).
pub fn service_ports(
    service: &Service,
    slices: &[&EndpointSlice],
    node_name: &str,
) -> Vec<ServicePort> {
    let Some(spec) = &service.spec else {
        return Vec::new();
    };
    if spec.type_.as_deref() == Some("ExternalName") {
        return Vec::new();
    }
    let Some(cluster_ip) = spec
        .cluster_ip
        .as_deref()
        .and_then(|ip| ip.parse::<Ipv4Addr>().ok())
    else {
        return Vec::new();
    };
    let namespace = service.metadata.namespace.as_deref().unwrap_or("default");
    let name = service.metadata.name.as_deref().unwrap_or_default();
    let exposes_node_ports = matches!(spec.type_.as_deref(), Some("NodePort" | "LoadBalancer"));
    let mut external_ips: Vec<Ipv4Addr> = spec
        .external_ips
        .iter()
        .flatten()
        .filter_map(|ip| ip.parse().ok())
        .collect();
    if spec.type_.as_deref() == Some("LoadBalancer") {
        external_ips.extend(
            service
                .status
                .as_ref()
                .and_then(|s| s.load_balancer.as_ref())
                .and_then(|lb| lb.ingress.as_ref())
                .into_iter()
                .flatten()
                .filter_map(|i| i.ip.as_deref()?.parse::<Ipv4Addr>().ok()),
        );
    }
    external_ips.sort();
    external_ips.dedup();
    let external_local = spec.external_traffic_policy.as_deref() == Some("Local")
        && (exposes_node_ports || !external_ips.is_empty());
    let affinity_seconds = (spec.session_affinity.as_deref() == Some("ClientIP")).then(|| {
        spec.session_affinity_config
            .as_ref()
            .and_then(|c| c.client_ip.as_ref())
            .and_then(|c| c.timeout_seconds)
            .and_then(|t| u32::try_from(t).ok())
            .unwrap_or(10_800)
    });
    let mut ports = Vec::new();
    for port in spec.ports.iter().flatten() {
        let Some(protocol) = Protocol::parse(port.protocol.as_deref()) else {
            continue;
        };
        let Ok(number) = u16::try_from(port.port) else {
            continue;
        };
        let port_name = port.name.clone().unwrap_or_default();
        let label = if port_name.is_empty() {
            number.to_string()
        } else {
            port_name.clone()
        };
        ports.push(ServicePort {
            name: format!("{namespace}/{name}:{label}"),
            cluster_ip,
            port: number,
            protocol,
            node_port: port
                .node_port
                .filter(|_| exposes_node_ports)
                .and_then(|p| u16::try_from(p).ok()),
            external_ips: external_ips.clone(),
            external_local,
            affinity_seconds,
            endpoints: ready_endpoints(slices, &port_name, protocol, node_name),
        });
    }
    ports
}

/// The ready IPv4 endpoints of the slice port named `port_name` with `protocol`.
fn ready_endpoints(
    slices: &[&EndpointSlice],
    port_name: &str,
    protocol: Protocol,
    node_name: &str,
) -> Vec<Endpoint> {
    let mut found = BTreeSet::new();
    for slice in slices {
        if slice.address_type != "IPv4" {
            continue;
        }
        let Some(port) = slice.ports.iter().flatten().find(|p| {
            p.name.as_deref().unwrap_or_default() == port_name
                && Protocol::parse(p.protocol.as_deref()) == Some(protocol)
        }) else {
            continue;
        };
        let Some(number) = port.port.and_then(|p| u16::try_from(p).ok()) else {
            continue;
        };
        for endpoint in &slice.endpoints {
            // Upstream: a nil `ready` means ready.
            let ready = endpoint
                .conditions
                .as_ref()
                .and_then(|c| c.ready)
                .unwrap_or(true);
            if !ready {
                continue;
            }
            let local = endpoint.node_name.as_deref() == Some(node_name);
            for ip in endpoint.addresses.iter().filter_map(|a| a.parse().ok()) {
                found.insert(Endpoint {
                    ip,
                    port: number,
                    local,
                });
            }
        }
    }
    found.into_iter().collect()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use serde_json::json;

    pub fn service(value: serde_json::Value) -> Service {
        serde_json::from_value(value).unwrap()
    }

    pub fn slice(value: serde_json::Value) -> EndpointSlice {
        serde_json::from_value(value).unwrap()
    }

    fn web() -> Service {
        service(json!({
            "metadata": {"name": "web", "namespace": "default"},
            "spec": {"clusterIP": "10.96.0.20", "type": "NodePort",
                     "externalTrafficPolicy": "Local",
                     "ports": [{"name": "http", "port": 80, "targetPort": 8080, "nodePort": 30080},
                               {"name": "dns", "port": 53, "protocol": "UDP"}]}
        }))
    }

    fn web_slice() -> EndpointSlice {
        slice(json!({
            "metadata": {"name": "web-abc", "namespace": "default",
                         "labels": {SERVICE_NAME_LABEL: "web"}},
            "addressType": "IPv4",
            "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
            "endpoints": [
                {"addresses": ["10.244.1.3"], "conditions": {"ready": true}, "nodeName": "a"},
                {"addresses": ["10.244.2.3"], "conditions": {"ready": false, "terminating": true}, "nodeName": "b"},
                {"addresses": ["10.244.0.3"], "nodeName": "b"}
            ]
        }))
    }

    #[test]
    fn ports_carry_ready_endpoints_of_the_matching_slice_port() {
        let slice = web_slice();
        let ports = service_ports(&web(), &[&slice], "a");
        assert_eq!(ports.len(), 2);
        let http = &ports[0];
        assert_eq!(http.name, "default/web:http");
        assert_eq!(http.node_port, Some(30080));
        assert!(http.external_local);
        assert_eq!(
            http.endpoints,
            [
                Endpoint {
                    ip: "10.244.0.3".parse().unwrap(),
                    port: 8080,
                    local: false
                },
                Endpoint {
                    ip: "10.244.1.3".parse().unwrap(),
                    port: 8080,
                    local: true
                },
            ]
        );
        // No slice port named dns: no endpoints.
        assert_eq!(ports[1].protocol, Protocol::Udp);
        assert!(ports[1].endpoints.is_empty());
    }

    #[test]
    fn headless_external_name_and_cluster_ip_without_node_ports() {
        let headless = service(json!({"metadata": {"name": "h"},
            "spec": {"clusterIP": "None", "ports": [{"port": 80}]}}));
        assert!(service_ports(&headless, &[], "a").is_empty());
        let external = service(json!({"metadata": {"name": "e"},
            "spec": {"type": "ExternalName", "externalName": "example.com"}}));
        assert!(service_ports(&external, &[], "a").is_empty());
        let plain = service(json!({"metadata": {"name": "p", "namespace": "x"},
            "spec": {"clusterIP": "10.96.0.9", "ports": [{"port": 80, "nodePort": 30001}],
                     "sessionAffinity": "ClientIP"}}));
        let ports = service_ports(&plain, &[], "a");
        assert_eq!(ports[0].name, "x/p:80");
        assert_eq!(
            ports[0].node_port, None,
            "a ClusterIP Service has no NodePort"
        );
        assert_eq!(ports[0].affinity_seconds, Some(10_800));
        assert!(!ports[0].external_local);
    }

    #[test]
    fn load_balancer_ingress_ips_are_external() {
        let lb = service(json!({"metadata": {"name": "lb", "namespace": "default"},
            "spec": {"clusterIP": "10.96.0.30", "type": "LoadBalancer",
                     "externalIPs": ["192.0.2.9"],
                     "ports": [{"port": 80, "nodePort": 31000}]},
            "status": {"loadBalancer": {"ingress": [{"ip": "172.18.255.1"}, {"hostname": "x"}]}}}));
        let ports = service_ports(&lb, &[], "a");
        assert_eq!(
            ports[0].external_ips,
            [
                "172.18.255.1".parse::<Ipv4Addr>().unwrap(),
                "192.0.2.9".parse().unwrap()
            ]
        );
        assert_eq!(ports[0].node_port, Some(31000));
    }

    #[test]
    fn cidr_parse_and_contains() {
        let c: Cidr = "10.244.0.0/16".parse().unwrap();
        assert!(c.contains("10.244.7.1".parse().unwrap()));
        assert!(!c.contains("10.245.0.1".parse().unwrap()));
        assert_eq!(c.to_string(), "10.244.0.0/16");
        assert!("10.244.0.0".parse::<Cidr>().is_err());
        assert!("10.244.0.0/33".parse::<Cidr>().is_err());
    }
}
