//! Service ClusterIP and NodePort allocation, done by the API server when a Service is written
//! (as upstream's registry does), so `kubectl create service` answers with its IP. Allocations
//! are derived from the stored Services themselves: deleting a Service frees them.

use std::collections::HashSet;
use std::net::Ipv4Addr;
use std::ops::RangeInclusive;

use kubelab_resources::validation::FieldError;
use rand::Rng;
use serde_json::{json, Value};

/// Where Service addresses and node ports come from.
#[derive(Clone, Debug)]
pub struct ServiceRanges {
    pub network: u32,
    pub prefix: u8,
    pub node_ports: RangeInclusive<u16>,
}

impl Default for ServiceRanges {
    fn default() -> Self {
        ServiceRanges {
            network: u32::from(Ipv4Addr::new(10, 96, 0, 0)),
            prefix: 12,
            node_ports: 30000..=32767,
        }
    }
}

impl ServiceRanges {
    /// `10.96.0.0/12` and `30000-32767`.
    pub fn parse(cidr: &str, node_ports: &str) -> Result<Self, String> {
        let (ip, prefix) = cidr
            .split_once('/')
            .ok_or_else(|| format!("invalid service CIDR {cidr:?}: expected a.b.c.d/n"))?;
        let ip: Ipv4Addr = ip
            .parse()
            .map_err(|_| format!("invalid service CIDR {cidr:?}: bad address"))?;
        let prefix: u8 = prefix
            .parse()
            .ok()
            .filter(|p| (8..=30).contains(p))
            .ok_or_else(|| format!("invalid service CIDR {cidr:?}: the prefix must be 8 to 30"))?;
        let mask = u32::MAX << (32 - prefix);
        let (lo, hi) = node_ports
            .split_once('-')
            .ok_or_else(|| format!("invalid node port range {node_ports:?}: expected LOW-HIGH"))?;
        let lo: u16 = lo
            .trim()
            .parse()
            .map_err(|_| format!("invalid node port range {node_ports:?}"))?;
        let hi: u16 = hi
            .trim()
            .parse()
            .map_err(|_| format!("invalid node port range {node_ports:?}"))?;
        if lo == 0 || lo > hi {
            return Err(format!(
                "invalid node port range {node_ports:?}: LOW must be 1..=HIGH"
            ));
        }
        Ok(ServiceRanges {
            network: u32::from(ip) & mask,
            prefix,
            node_ports: lo..=hi,
        })
    }

    fn size(&self) -> u32 {
        1u32 << (32 - self.prefix)
    }

    fn contains(&self, ip: Ipv4Addr) -> bool {
        let mask = u32::MAX << (32 - self.prefix);
        u32::from(ip) & mask == self.network
    }

    /// The first address: the `kubernetes` Service's.
    pub fn first(&self) -> Ipv4Addr {
        Ipv4Addr::from(self.network + 1)
    }
}

fn invalid(field: String, message: String) -> FieldError {
    FieldError {
        reason: "FieldValueInvalid",
        field,
        message,
    }
}

fn type_of(svc: &Value) -> &str {
    svc.pointer("/spec/type")
        .and_then(Value::as_str)
        .unwrap_or("ClusterIP")
}

/// Fill `spec.clusterIP(s)` and node ports of `svc` (being created or updated from `old`),
/// avoiding what `others` (every other stored Service) hold.
pub fn allocate(
    svc: &mut Value,
    others: &[Value],
    ranges: &ServiceRanges,
) -> Result<(), Vec<FieldError>> {
    let mut errors = Vec::new();
    let kind = type_of(svc).to_string();
    if kind == "ExternalName" {
        return Ok(());
    }
    let used_ips: HashSet<String> = others
        .iter()
        .filter_map(|o| o.pointer("/spec/clusterIP").and_then(Value::as_str))
        .map(String::from)
        .collect();
    let requested = svc
        .pointer("/spec/clusterIP")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    match requested.as_str() {
        "None" => {}
        "" => match pick_ip(&used_ips, ranges) {
            Some(ip) => {
                svc["spec"]["clusterIP"] = json!(ip);
                svc["spec"]["clusterIPs"] = json!([ip]);
            }
            None => errors.push(invalid(
                "spec.clusterIP".into(),
                "Internal error: range is full".into(),
            )),
        },
        ip => match ip.parse::<Ipv4Addr>() {
            Ok(addr) if !ranges.contains(addr) => errors.push(invalid(
                "spec.clusterIPs".into(),
                format!("Invalid value: []string{{\"{ip}\"}}: failed to allocate IP {ip}: the provided IP ({ip}) is not in the valid range. The range of valid IPs is {}/{}", Ipv4Addr::from(ranges.network), ranges.prefix),
            )),
            Ok(_) if used_ips.contains(ip) => errors.push(invalid(
                "spec.clusterIPs".into(),
                format!("Invalid value: []string{{\"{ip}\"}}: failed to allocate IP {ip}: provided IP is already allocated"),
            )),
            Ok(_) => {
                svc["spec"]["clusterIPs"] = json!([ip]);
            }
            Err(_) => {}
        },
    }
    let wants_node_ports = kind == "NodePort" || kind == "LoadBalancer";
    let mut used_ports: HashSet<u16> = others
        .iter()
        .filter_map(|o| o.pointer("/spec/ports").and_then(Value::as_array))
        .flatten()
        .filter_map(|p| p.get("nodePort").and_then(Value::as_u64))
        .map(|p| p as u16)
        .collect();
    if let Some(ports) = svc.pointer_mut("/spec/ports").and_then(Value::as_array_mut) {
        // Explicit ports first, so generated ones avoid them.
        for (i, port) in ports.iter().enumerate() {
            if !wants_node_ports {
                continue;
            }
            if let Some(n) = port
                .get("nodePort")
                .and_then(Value::as_u64)
                .filter(|n| *n > 0)
            {
                let n = n as u16;
                if !ranges.node_ports.contains(&n) {
                    errors.push(invalid(
                        format!("spec.ports[{i}].nodePort"),
                        format!("Invalid value: {n}: provided port is not in the valid range. The range of valid ports is {}-{}", ranges.node_ports.start(), ranges.node_ports.end()),
                    ));
                } else if !used_ports.insert(n) {
                    errors.push(invalid(
                        format!("spec.ports[{i}].nodePort"),
                        format!("Invalid value: {n}: provided port is already allocated"),
                    ));
                }
            }
        }
        for port in ports.iter_mut() {
            let Some(map) = port.as_object_mut() else {
                continue;
            };
            if !wants_node_ports {
                map.remove("nodePort");
                continue;
            }
            if map
                .get("nodePort")
                .and_then(Value::as_u64)
                .filter(|n| *n > 0)
                .is_none()
            {
                match pick_port(&used_ports, ranges) {
                    Some(p) => {
                        used_ports.insert(p);
                        map.insert("nodePort".into(), json!(p));
                    }
                    None => errors.push(invalid(
                        "spec.ports".into(),
                        "Internal error: node port range is full".into(),
                    )),
                }
            }
        }
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors)
    }
}

/// A free address, at random from the upper band (the lower band is kept for addresses users
/// ask for, like the DNS Service's 10.96.0.10, as upstream does).
fn pick_ip(used: &HashSet<String>, ranges: &ServiceRanges) -> Option<String> {
    let size = ranges.size();
    let reserved_low = (size / 16).clamp(16, 256).min(size / 2);
    let usable = size.saturating_sub(reserved_low + 1);
    if usable == 0 {
        return None;
    }
    let mut rng = rand::rng();
    let start = rng.random_range(0..usable);
    (0..usable)
        .map(|i| Ipv4Addr::from(ranges.network + reserved_low + (start + i) % usable))
        .map(|ip| ip.to_string())
        .find(|ip| !used.contains(ip))
        .or_else(|| {
            (1..reserved_low)
                .map(|i| Ipv4Addr::from(ranges.network + i).to_string())
                .find(|ip| !used.contains(ip))
        })
}

fn pick_port(used: &HashSet<u16>, ranges: &ServiceRanges) -> Option<u16> {
    let lo = *ranges.node_ports.start() as u32;
    let count = *ranges.node_ports.end() as u32 - lo + 1;
    let start = rand::rng().random_range(0..count);
    (0..count)
        .map(|i| (lo + (start + i) % count) as u16)
        .find(|p| !used.contains(p))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn svc(kind: &str, ip: &str, ports: Value) -> Value {
        json!({"spec": {"type": kind, "clusterIP": ip, "ports": ports}})
    }

    #[test]
    fn allocates_unique_ips_and_ports() {
        let ranges = ServiceRanges::parse("10.96.0.0/28", "30000-30002").unwrap();
        let mut others = Vec::new();
        for _ in 0..3 {
            let mut s = svc("NodePort", "", json!([{"port": 80}]));
            allocate(&mut s, &others, &ranges).unwrap();
            let ip: Ipv4Addr = s["spec"]["clusterIP"].as_str().unwrap().parse().unwrap();
            assert!(ranges.contains(ip));
            others.push(s);
        }
        let ips: HashSet<_> = others
            .iter()
            .map(|s| s["spec"]["clusterIP"].clone())
            .collect();
        let ports: HashSet<_> = others
            .iter()
            .map(|s| s["spec"]["ports"][0]["nodePort"].clone())
            .collect();
        assert_eq!(ips.len(), 3);
        assert_eq!(ports.len(), 3);
        let mut full = svc("NodePort", "", json!([{"port": 80}]));
        let errs = allocate(&mut full, &others, &ranges).unwrap_err();
        assert!(errs[0].message.contains("full"));
    }

    #[test]
    fn explicit_values_are_checked() {
        let ranges = ServiceRanges::default();
        let taken = svc(
            "NodePort",
            "10.96.0.10",
            json!([{"port": 53, "nodePort": 30053}]),
        );
        let mut dup = svc(
            "NodePort",
            "10.96.0.10",
            json!([{"port": 53, "nodePort": 30053}]),
        );
        let errs = allocate(&mut dup, std::slice::from_ref(&taken), &ranges).unwrap_err();
        assert_eq!(errs.len(), 2);
        assert!(errs.iter().all(|e| e.message.contains("already allocated")));
        let mut outside = svc("ClusterIP", "192.168.0.1", json!([]));
        assert!(allocate(&mut outside, &[], &ranges).is_err());
        let mut headless = svc("ClusterIP", "None", json!([{"port": 80}]));
        allocate(&mut headless, &[taken], &ranges).unwrap();
        assert_eq!(headless["spec"]["clusterIP"], "None");
        assert!(headless["spec"]["ports"][0].get("nodePort").is_none());
    }
}
