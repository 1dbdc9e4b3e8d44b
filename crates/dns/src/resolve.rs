//! One query → one answer, as CoreDNS's `kubernetes` plugin gives it (with `pods insecure` and
//! `fallthrough in-addr.arpa ip6.arpa`, the kubeadm Corefile). Names under the cluster domain:
//!
//! | name | answer |
//! |---|---|
//! | `<svc>.<ns>.svc.<zone>` | A/AAAA: the ClusterIPs; headless: every ready endpoint; ExternalName: a CNAME |
//! | `<ep>.<svc>.<ns>.svc.<zone>` | the endpoint whose hostname (or dashed address) is `<ep>` |
//! | `_<port>._<proto>.<svc>.<ns>.svc.<zone>` | SRV per matching named port (per endpoint if headless) |
//! | `<a-b-c-d>.<ns>.pod.<zone>` | A of that address (no pod lookup: "insecure" mode) |
//! | `<zone>`, `svc.<zone>`, `pod.<zone>`, an existing `<ns>.svc.<zone>` | NOERROR without records (NODATA); SOA/NS at the apex |
//! | anything else under the zone | NXDOMAIN (also a headless Service with no ready endpoint) |
//!
//! Negative answers carry the zone's SOA in the authority section (negative caching for its
//! minimum, 5 s). PTR for Service and endpoint addresses; other reverse names and every name
//! outside the zone are forwarded.

use std::net::IpAddr;

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::rdata::{A, AAAA, CNAME, NS, PTR, SOA, SRV};
use hickory_proto::rr::{Name, RData, Record, RecordType};

use crate::index::{Endpoint, Index, ServiceEntry, ServiceKind, DEFAULT_TTL};

/// What to do with a query.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Resolution {
    /// The cluster's answer.
    Answer(Response),
    /// Not the cluster's name: ask the upstream resolvers.
    Forward,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Response {
    pub code: ResponseCode,
    pub answers: Vec<Record>,
    /// The zone's SOA on negative answers.
    pub authorities: Vec<Record>,
    pub additionals: Vec<Record>,
    /// A CNAME target (ExternalName Service) whose addresses the caller adds if it can.
    pub chase: Option<Name>,
}

impl Response {
    fn records(answers: Vec<Record>, additionals: Vec<Record>) -> Response {
        Response {
            code: ResponseCode::NoError,
            answers,
            authorities: Vec::new(),
            additionals,
            chase: None,
        }
    }

    fn negative(code: ResponseCode, zone: &Name, serial: u32) -> Response {
        Response {
            code,
            answers: Vec::new(),
            authorities: vec![soa(zone, serial)],
            additionals: Vec::new(),
            chase: None,
        }
    }
}

fn soa(zone: &Name, serial: u32) -> Record {
    let within = |label: &str| {
        Name::from_ascii(label)
            .and_then(|n| n.append_domain(zone))
            .unwrap_or_else(|_| zone.clone())
    };
    Record::from_rdata(
        zone.clone(),
        DEFAULT_TTL,
        RData::SOA(SOA::new(
            within("ns.dns"),
            within("hostmaster"),
            serial,
            7200,
            1800,
            86400,
            DEFAULT_TTL,
        )),
    )
}

/// `labels` (left to right) under `zone`, as a fully qualified name.
fn name_under(labels: &[&str], zone: &Name) -> Option<Name> {
    Name::from_labels(labels.iter().map(|l| l.as_bytes()))
        .ok()?
        .append_domain(zone)
        .ok()
}

fn address_record(owner: &Name, ip: IpAddr) -> Record {
    let data = match ip {
        IpAddr::V4(v4) => RData::A(A(v4)),
        IpAddr::V6(v6) => RData::AAAA(AAAA(v6)),
    };
    Record::from_rdata(owner.clone(), DEFAULT_TTL, data)
}

fn wants(qtype: RecordType, ip: &IpAddr) -> bool {
    match qtype {
        RecordType::A => ip.is_ipv4(),
        RecordType::AAAA => ip.is_ipv6(),
        RecordType::ANY => true,
        _ => false,
    }
}

/// The answer to `name` (as asked, any case) of type `qtype`; `zone` is the lower-case cluster
/// domain (`cluster.local.`).
pub fn resolve(index: &Index, zone: &Name, name: &Name, qtype: RecordType) -> Resolution {
    let lower = name.to_lowercase();
    if !zone.zone_of(&lower) {
        return reverse(index, zone, &lower, name, qtype);
    }
    let depth = lower.num_labels() - zone.num_labels();
    let owned: Vec<String> = lower
        .iter()
        .take(usize::from(depth))
        .map(|l| String::from_utf8_lossy(l).into_owned())
        .collect();
    let labels: Vec<&str> = owned.iter().map(String::as_str).collect();
    let nxdomain = || {
        Resolution::Answer(Response::negative(
            ResponseCode::NXDomain,
            zone,
            index.serial,
        ))
    };
    let nodata = || {
        Resolution::Answer(Response::negative(
            ResponseCode::NoError,
            zone,
            index.serial,
        ))
    };
    match labels.as_slice() {
        [] => match qtype {
            RecordType::SOA => {
                Resolution::Answer(Response::records(vec![soa(zone, index.serial)], Vec::new()))
            }
            RecordType::NS => match name_under(&["ns", "dns"], zone) {
                Some(ns) => Resolution::Answer(Response::records(
                    vec![Record::from_rdata(
                        name.clone(),
                        DEFAULT_TTL,
                        RData::NS(NS(ns)),
                    )],
                    Vec::new(),
                )),
                None => nodata(),
            },
            _ => nodata(),
        },
        ["svc"] | ["pod"] => nodata(),
        [ns, "svc"] | [ns, "pod"] => {
            if index.has_namespace(ns) {
                nodata()
            } else {
                nxdomain()
            }
        }
        [service, ns, "svc"] => match index.service(ns, service) {
            Some(svc) => service_records(zone, index.serial, name, ns, service, svc, qtype),
            None => nxdomain(),
        },
        [endpoint, service, ns, "svc"] => {
            let Some(svc) = index.service(ns, service) else {
                return nxdomain();
            };
            let found: Vec<&Endpoint> = svc
                .endpoints
                .iter()
                .filter(|e| e.label == *endpoint)
                .collect();
            if found.is_empty() {
                return nxdomain();
            }
            let answers: Vec<Record> = found
                .iter()
                .filter(|e| wants(qtype, &e.ip))
                .map(|e| address_record(name, e.ip))
                .collect();
            if answers.is_empty() {
                nodata()
            } else {
                Resolution::Answer(Response::records(answers, Vec::new()))
            }
        }
        [port, protocol, service, ns, "svc"] => {
            let (Some(port), Some(protocol)) = (port.strip_prefix('_'), protocol.strip_prefix('_'))
            else {
                return nxdomain();
            };
            let Some(svc) = index.service(ns, service) else {
                return nxdomain();
            };
            let matches = |p: &crate::index::Port| p.name == port && p.protocol == protocol;
            if !svc.ports.iter().any(matches) {
                return nxdomain();
            }
            match qtype {
                RecordType::SRV => {
                    srv_records(zone, index.serial, name, ns, service, svc, Some(&matches))
                }
                _ => service_records(zone, index.serial, name, ns, service, svc, qtype),
            }
        }
        [pod, ns, "pod"] => {
            if !index.has_namespace(ns) {
                return nxdomain();
            }
            let ip: Option<IpAddr> = pod
                .replace('-', ".")
                .parse::<std::net::Ipv4Addr>()
                .map(IpAddr::V4)
                .ok()
                .or_else(|| pod.replace('-', ":").parse().ok());
            match ip {
                Some(ip) if wants(qtype, &ip) => Resolution::Answer(Response::records(
                    vec![address_record(name, ip)],
                    Vec::new(),
                )),
                Some(_) => nodata(),
                None => nxdomain(),
            }
        }
        _ => nxdomain(),
    }
}

/// The records of a Service's own name.
fn service_records(
    zone: &Name,
    serial: u32,
    name: &Name,
    ns: &str,
    service: &str,
    svc: &ServiceEntry,
    qtype: RecordType,
) -> Resolution {
    let nodata = || Resolution::Answer(Response::negative(ResponseCode::NoError, zone, serial));
    match &svc.kind {
        ServiceKind::ExternalName(target) => {
            let Ok(mut target) = Name::from_ascii(target) else {
                return nodata();
            };
            target.set_fqdn(true);
            let mut response = Response::records(
                vec![Record::from_rdata(
                    name.clone(),
                    DEFAULT_TTL,
                    RData::CNAME(CNAME(target.clone())),
                )],
                Vec::new(),
            );
            if matches!(qtype, RecordType::A | RecordType::AAAA) {
                response.chase = Some(target);
            }
            Resolution::Answer(response)
        }
        _ if qtype == RecordType::SRV => srv_records(zone, serial, name, ns, service, svc, None),
        ServiceKind::ClusterIp(ips) => {
            let answers: Vec<Record> = ips
                .iter()
                .filter(|ip| wants(qtype, ip))
                .map(|ip| address_record(name, *ip))
                .collect();
            if answers.is_empty() {
                nodata()
            } else {
                Resolution::Answer(Response::records(answers, Vec::new()))
            }
        }
        ServiceKind::Headless => {
            if svc.endpoints.is_empty() {
                return Resolution::Answer(Response::negative(
                    ResponseCode::NXDomain,
                    zone,
                    serial,
                ));
            }
            let answers: Vec<Record> = svc
                .endpoints
                .iter()
                .filter(|e| wants(qtype, &e.ip))
                .map(|e| address_record(name, e.ip))
                .collect();
            if answers.is_empty() {
                nodata()
            } else {
                Resolution::Answer(Response::records(answers, Vec::new()))
            }
        }
    }
}

/// SRV records of a Service: per port (matching `filter`, else every port) pointing at the
/// Service's name, or for a headless Service per endpoint and port pointing at the endpoint's
/// name; the targets' addresses as additional records.
fn srv_records(
    zone: &Name,
    serial: u32,
    name: &Name,
    ns: &str,
    service: &str,
    svc: &ServiceEntry,
    filter: Option<&dyn Fn(&crate::index::Port) -> bool>,
) -> Resolution {
    let selected = |p: &crate::index::Port| filter.is_none_or(|f| f(p));
    let mut answers = Vec::new();
    let mut additionals = Vec::new();
    let srv = |port: u16, weight: u16, target: &Name| {
        Record::from_rdata(
            name.clone(),
            DEFAULT_TTL,
            RData::SRV(SRV::new(0, weight, port, target.clone())),
        )
    };
    match &svc.kind {
        ServiceKind::ClusterIp(ips) => {
            let Some(target) = name_under(&[service, ns, "svc"], zone) else {
                return Resolution::Forward;
            };
            for p in svc.ports.iter().filter(|p| selected(p)) {
                answers.push(srv(p.port, 100, &target));
            }
            if !answers.is_empty() {
                additionals.extend(ips.iter().map(|ip| address_record(&target, *ip)));
            }
        }
        ServiceKind::Headless => {
            let count = svc.endpoints.len().max(1) as u16;
            let weight = (100 / count).max(1);
            for e in &svc.endpoints {
                let Some(target) = name_under(&[&e.label, service, ns, "svc"], zone) else {
                    continue;
                };
                let mut any = false;
                for p in e.ports.iter().filter(|p| selected(p)) {
                    answers.push(srv(p.port, weight, &target));
                    any = true;
                }
                if any {
                    additionals.push(address_record(&target, e.ip));
                }
            }
        }
        ServiceKind::ExternalName(_) => {}
    }
    if answers.is_empty() {
        return Resolution::Answer(Response::negative(ResponseCode::NoError, zone, serial));
    }
    Resolution::Answer(Response::records(answers, additionals))
}

/// PTR for a Service or endpoint address; everything else outside the zone is forwarded.
fn reverse(index: &Index, zone: &Name, lower: &Name, name: &Name, qtype: RecordType) -> Resolution {
    if qtype != RecordType::PTR {
        return Resolution::Forward;
    }
    let Ok(net) = lower.parse_arpa_name() else {
        return Resolution::Forward;
    };
    let full = match net.addr() {
        IpAddr::V4(_) => 32,
        IpAddr::V6(_) => 128,
    };
    if net.prefix_len() != full {
        return Resolution::Forward;
    }
    let Some((ns, service, endpoint)) = index.reverse(&net.addr()) else {
        return Resolution::Forward;
    };
    let target = match endpoint {
        Some(label) => name_under(&[label, service, ns, "svc"], zone),
        None => name_under(&[service, ns, "svc"], zone),
    };
    match target {
        Some(target) => Resolution::Answer(Response::records(
            vec![Record::from_rdata(
                name.clone(),
                DEFAULT_TTL,
                RData::PTR(PTR(target)),
            )],
            Vec::new(),
        )),
        None => Resolution::Forward,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{Namespace, Service};
    use k8s_openapi::api::discovery::v1::EndpointSlice;

    fn object<T: serde::de::DeserializeOwned>(value: serde_json::Value) -> T {
        serde_json::from_value(value).expect("valid object")
    }

    fn index() -> Index {
        let namespaces: Vec<Namespace> = ["default", "kube-system", "empty"]
            .iter()
            .map(|n| object(serde_json::json!({"metadata": {"name": n}})))
            .collect();
        let services: Vec<Service> = vec![
            object(serde_json::json!({
                "metadata": {"name": "web", "namespace": "default"},
                "spec": {"clusterIP": "10.96.0.20", "clusterIPs": ["10.96.0.20"],
                         "ports": [{"name": "http", "port": 80, "protocol": "TCP"}]}})),
            object(serde_json::json!({
                "metadata": {"name": "db", "namespace": "default"},
                "spec": {"clusterIP": "None",
                         "ports": [{"name": "pg", "port": 5432, "protocol": "TCP"}]}})),
            object(serde_json::json!({
                "metadata": {"name": "nobody", "namespace": "default"},
                "spec": {"clusterIP": "None"}})),
            object(serde_json::json!({
                "metadata": {"name": "ext", "namespace": "default"},
                "spec": {"type": "ExternalName", "externalName": "web.default.svc.cluster.local"}})),
        ];
        let slices: Vec<EndpointSlice> = vec![object(serde_json::json!({
        "metadata": {"name": "db-x", "namespace": "default",
                     "labels": {"kubernetes.io/service-name": "db"}},
        "addressType": "IPv4",
        "ports": [{"name": "pg", "port": 5432, "protocol": "TCP"}],
        "endpoints": [
            {"addresses": ["10.244.1.5"], "hostname": "db-0", "conditions": {"ready": true}},
            {"addresses": ["10.244.2.7"], "conditions": {"ready": true}},
            {"addresses": ["10.244.3.9"], "conditions": {"ready": false}}
        ]}))];
        Index::build(&namespaces, &services, &slices, 7)
    }

    fn zone() -> Name {
        Name::from_ascii("cluster.local.").unwrap()
    }

    fn ask(name: &str, qtype: RecordType) -> Resolution {
        resolve(&index(), &zone(), &Name::from_ascii(name).unwrap(), qtype)
    }

    fn answer(name: &str, qtype: RecordType) -> Response {
        match ask(name, qtype) {
            Resolution::Answer(r) => r,
            Resolution::Forward => panic!("{name} was forwarded"),
        }
    }

    fn data(response: &Response) -> Vec<String> {
        response
            .answers
            .iter()
            .map(|r| r.data.to_string())
            .collect()
    }

    #[test]
    fn cluster_ip_service() {
        let r = answer("Web.Default.svc.cluster.local.", RecordType::A);
        assert_eq!(r.code, ResponseCode::NoError);
        assert_eq!(data(&r), ["10.96.0.20"]);
        assert_eq!(
            r.answers[0].name.to_string(),
            "Web.Default.svc.cluster.local."
        );
        assert_eq!(r.answers[0].ttl, 5);
        // AAAA of an IPv4 Service: NODATA with the SOA.
        let r = answer("web.default.svc.cluster.local.", RecordType::AAAA);
        assert_eq!(r.code, ResponseCode::NoError);
        assert!(r.answers.is_empty());
        assert_eq!(r.authorities[0].record_type(), RecordType::SOA);
    }

    #[test]
    fn headless_service_and_its_endpoints() {
        let r = answer("db.default.svc.cluster.local.", RecordType::A);
        assert_eq!(data(&r), ["10.244.1.5", "10.244.2.7"]);
        let r = answer("db-0.db.default.svc.cluster.local.", RecordType::A);
        assert_eq!(data(&r), ["10.244.1.5"]);
        let r = answer("10-244-2-7.db.default.svc.cluster.local.", RecordType::A);
        assert_eq!(data(&r), ["10.244.2.7"]);
        // Not ready: not published.
        let r = answer("10-244-3-9.db.default.svc.cluster.local.", RecordType::A);
        assert_eq!(r.code, ResponseCode::NXDomain);
        // No ready endpoint at all: NXDOMAIN, as CoreDNS.
        let r = answer("nobody.default.svc.cluster.local.", RecordType::A);
        assert_eq!(r.code, ResponseCode::NXDomain);
    }

    #[test]
    fn srv_for_named_ports() {
        let r = answer("_http._tcp.web.default.svc.cluster.local.", RecordType::SRV);
        assert_eq!(data(&r), ["0 100 80 web.default.svc.cluster.local."]);
        assert_eq!(r.additionals[0].data.to_string(), "10.96.0.20");
        let r = answer("_pg._tcp.db.default.svc.cluster.local.", RecordType::SRV);
        assert_eq!(
            data(&r),
            [
                "0 50 5432 db-0.db.default.svc.cluster.local.",
                "0 50 5432 10-244-2-7.db.default.svc.cluster.local."
            ]
        );
        let r = answer("_http._udp.web.default.svc.cluster.local.", RecordType::SRV);
        assert_eq!(r.code, ResponseCode::NXDomain);
    }

    #[test]
    fn external_name_is_a_cname() {
        let r = answer("ext.default.svc.cluster.local.", RecordType::A);
        assert_eq!(data(&r), ["web.default.svc.cluster.local."]);
        assert_eq!(
            r.chase.unwrap().to_string(),
            "web.default.svc.cluster.local."
        );
    }

    #[test]
    fn pods_by_address() {
        let r = answer("10-244-1-5.default.pod.cluster.local.", RecordType::A);
        assert_eq!(data(&r), ["10.244.1.5"]);
        let r = answer("10-244-1-5.nowhere.pod.cluster.local.", RecordType::A);
        assert_eq!(r.code, ResponseCode::NXDomain);
        let r = answer("not-an-ip.default.pod.cluster.local.", RecordType::A);
        assert_eq!(r.code, ResponseCode::NXDomain);
    }

    #[test]
    fn nxdomain_and_nodata_as_coredns() {
        for (name, code) in [
            ("missing.default.svc.cluster.local.", ResponseCode::NXDomain),
            ("web.nowhere.svc.cluster.local.", ResponseCode::NXDomain),
            ("nowhere.svc.cluster.local.", ResponseCode::NXDomain),
            ("empty.svc.cluster.local.", ResponseCode::NoError),
            ("svc.cluster.local.", ResponseCode::NoError),
            ("cluster.local.", ResponseCode::NoError),
            ("foo.cluster.local.", ResponseCode::NXDomain),
            // The first name a pod's search list makes of a full name.
            (
                "web.default.svc.cluster.local.default.svc.cluster.local.",
                ResponseCode::NXDomain,
            ),
        ] {
            let r = answer(name, RecordType::A);
            assert_eq!(r.code, code, "{name}");
            assert!(r.answers.is_empty(), "{name}");
            assert_eq!(r.authorities[0].record_type(), RecordType::SOA, "{name}");
        }
        let r = answer("cluster.local.", RecordType::SOA);
        assert_eq!(r.answers[0].record_type(), RecordType::SOA);
    }

    #[test]
    fn reverse_lookups() {
        let r = answer("20.0.96.10.in-addr.arpa.", RecordType::PTR);
        assert_eq!(data(&r), ["web.default.svc.cluster.local."]);
        let r = answer("5.1.244.10.in-addr.arpa.", RecordType::PTR);
        assert_eq!(data(&r), ["db-0.db.default.svc.cluster.local."]);
        // Unknown addresses and other names fall through to the upstream resolvers.
        assert_eq!(
            ask("1.1.168.192.in-addr.arpa.", RecordType::PTR),
            Resolution::Forward
        );
        assert_eq!(ask("example.org.", RecordType::A), Resolution::Forward);
    }
}
