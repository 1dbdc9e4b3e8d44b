//! Which address each LoadBalancer Service gets: a pure function of the pools and the Services
//! (the controller re-runs it after every change, so it is level-triggered and nothing is
//! remembered between runs). The current assignment (`status.loadBalancer.ingress`) is the
//! state: an address already assigned is kept while it stays valid (in a pool that may serve
//! the Service, the one its `address-pool` annotation names, equal to the requested addresses,
//! not taken by another Service), so a change elsewhere never moves a working address.
//! Services without one are then served oldest first:
//!
//! 1. requested addresses (`metallb.io/loadBalancerIPs`, else `spec.loadBalancerIP`): from
//!    whichever pool holds them, autoAssign or not;
//! 2. else the pool of the `metallb.io/address-pool` annotation;
//! 3. else the pools with `autoAssign` that allow the Service (`serviceAllocation`:
//!    namespaces, namespace and service selectors), lowest `priority` first, then by name.
//!
//! Two Services may share an address when both carry the same `allow-shared-ip` key, their
//! ports (protocol, port) do not overlap, and they agree on the backends (both
//! `externalTrafficPolicy: Cluster`, or the same selector). A Service with a sharing key
//! prefers an address its key already uses. Deleted Services are not inputs: their addresses
//! are free at once.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use crate::model::{Pool, ServiceView};

/// What a Service gets.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    Assigned {
        ips: Vec<Ipv4Addr>,
        pool: String,
    },
    /// No address: why (the `AllocationFailed` event's message).
    Failed {
        reason: String,
    },
}

/// Addresses of one pool in use and left.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PoolUsage {
    pub assigned: u64,
    pub available: u64,
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct Plan {
    /// By Service key (`namespace/name`), for every Service that wants an address.
    pub services: BTreeMap<String, Outcome>,
    /// By pool name.
    pub pools: BTreeMap<String, PoolUsage>,
}

struct Usage<'a> {
    users: BTreeMap<Ipv4Addr, Vec<&'a ServiceView>>,
}

impl<'a> Usage<'a> {
    /// Ok when `svc` may take `ip` given who holds it.
    fn can_use(&self, ip: Ipv4Addr, svc: &ServiceView) -> Result<(), String> {
        let Some(users) = self.users.get(&ip).filter(|u| !u.is_empty()) else {
            return Ok(());
        };
        for other in users {
            if svc.sharing_key.is_none() || svc.sharing_key != other.sharing_key {
                return Err(format!(
                    "address {ip} is already in use by {} (services share an address only with the same metallb.io/allow-shared-ip key)",
                    other.key
                ));
            }
            if svc.backend_key != other.backend_key {
                return Err(format!(
                    "address {ip} is shared with {}, which has other backends (externalTrafficPolicy or selector differ)",
                    other.key
                ));
            }
            if let Some(port) = svc.ports.iter().find(|p| other.ports.contains(p)) {
                return Err(format!(
                    "port {}/{} is already used on {ip} by {}",
                    port.1, port.0, other.key
                ));
            }
        }
        Ok(())
    }

    fn take(&mut self, ips: &[Ipv4Addr], svc: &'a ServiceView) {
        for ip in ips {
            self.users.entry(*ip).or_default().push(svc);
        }
    }

    fn shared_by_key(&self, ip: Ipv4Addr, key: &str) -> bool {
        self.users
            .get(&ip)
            .is_some_and(|u| u.iter().any(|s| s.sharing_key.as_deref() == Some(key)))
    }
}

fn pool_holding<'p>(pools: &'p [Pool], ips: &[Ipv4Addr]) -> Option<&'p Pool> {
    pools
        .iter()
        .find(|p| p.invalid.is_none() && ips.iter().all(|ip| p.contains(*ip)))
}

fn from_pool(pool: &Pool, svc: &ServiceView, usage: &Usage) -> Option<Ipv4Addr> {
    if let Some(key) = &svc.sharing_key {
        if let Some(ip) = pool
            .addresses()
            .find(|ip| usage.shared_by_key(*ip, key) && usage.can_use(*ip, svc).is_ok())
        {
            return Some(ip);
        }
    }
    pool.addresses()
        .find(|ip| usage.users.get(ip).is_none_or(|u| u.is_empty()))
}

fn keep_current(
    pools: &[Pool],
    svc: &ServiceView,
    namespace_labels: &BTreeMap<String, String>,
    usage: &Usage,
) -> Option<String> {
    if svc.current.is_empty() {
        return None;
    }
    let requested = svc.requested.as_ref().ok()?;
    let pool = pool_holding(pools, &svc.current)?;
    let mut sorted_current = svc.current.clone();
    sorted_current.sort();
    let mut sorted_requested = requested.clone();
    sorted_requested.sort();
    let valid = svc.pool.as_deref().is_none_or(|p| p == pool.name)
        && (requested.is_empty() || sorted_requested == sorted_current)
        && pool.allows(svc, namespace_labels)
        && svc.current.iter().all(|ip| usage.can_use(*ip, svc).is_ok());
    valid.then(|| pool.name.clone())
}

fn allocate(
    pools: &[Pool],
    svc: &ServiceView,
    namespace_labels: &BTreeMap<String, String>,
    usage: &Usage,
) -> Result<(Vec<Ipv4Addr>, String), String> {
    let requested = svc.requested.clone()?;
    if !requested.is_empty() {
        let list = requested
            .iter()
            .map(|ip| format!("{ip:?}"))
            .collect::<Vec<_>>()
            .join(", ");
        let pool = pool_holding(pools, &requested).ok_or_else(|| {
            format!("[{list}] is not allowed in config (no IPAddressPool holds it)")
        })?;
        if let Some(wanted) = &svc.pool {
            if *wanted != pool.name {
                return Err(format!(
                    "requested loadBalancer IP(s) [{list}] is not compatible with requested address pool {wanted}"
                ));
            }
        }
        if !pool.allows(svc, namespace_labels) {
            return Err(format!(
                "pool {} does not allow this service (serviceAllocation)",
                pool.name
            ));
        }
        for ip in &requested {
            usage.can_use(*ip, svc)?;
        }
        return Ok((requested, pool.name.clone()));
    }
    if let Some(wanted) = &svc.pool {
        let pool = pools
            .iter()
            .find(|p| p.name == *wanted)
            .ok_or_else(|| format!("unknown pool {wanted:?}"))?;
        if let Some(reason) = &pool.invalid {
            return Err(format!("pool {wanted:?} is invalid: {reason}"));
        }
        if !pool.allows(svc, namespace_labels) {
            return Err(format!(
                "pool {wanted} does not allow this service (serviceAllocation)"
            ));
        }
        return from_pool(pool, svc, usage)
            .map(|ip| (vec![ip], pool.name.clone()))
            .ok_or_else(|| format!("no available IPs in pool {wanted:?}"));
    }
    let mut candidates: Vec<&Pool> = pools
        .iter()
        .filter(|p| p.auto_assign && p.invalid.is_none() && p.allows(svc, namespace_labels))
        .collect();
    if candidates.is_empty() {
        return Err(
            "no available IPs (no IPAddressPool with autoAssign serves this service)".into(),
        );
    }
    candidates.sort_by_key(|p| p.priority_key());
    candidates
        .into_iter()
        .find_map(|p| from_pool(p, svc, usage).map(|ip| (vec![ip], p.name.clone())))
        .ok_or_else(|| "no available IPs".to_owned())
}

/// The address of every Service that wants one. `namespace_labels` maps namespaces to their
/// labels (for `serviceAllocation.namespaceSelectors`).
pub fn plan(
    pools: &[Pool],
    services: &[ServiceView],
    namespace_labels: &BTreeMap<String, BTreeMap<String, String>>,
) -> Plan {
    let no_labels = BTreeMap::new();
    let labels_of = |svc: &ServiceView| namespace_labels.get(&svc.namespace).unwrap_or(&no_labels);
    let mut ordered: Vec<&ServiceView> = services.iter().filter(|s| s.wants_address).collect();
    ordered.sort_by(|a, b| (&a.created, &a.key).cmp(&(&b.created, &b.key)));
    let mut usage = Usage {
        users: BTreeMap::new(),
    };
    let mut plan = Plan::default();
    let mut pending = Vec::new();
    for svc in &ordered {
        match keep_current(pools, svc, labels_of(svc), &usage) {
            Some(pool) => {
                usage.take(&svc.current, svc);
                plan.services.insert(
                    svc.key.clone(),
                    Outcome::Assigned {
                        ips: svc.current.clone(),
                        pool,
                    },
                );
            }
            None => pending.push(*svc),
        }
    }
    for svc in pending {
        let outcome = match allocate(pools, svc, labels_of(svc), &usage) {
            Ok((ips, pool)) => {
                usage.take(&ips, svc);
                Outcome::Assigned { ips, pool }
            }
            Err(reason) => Outcome::Failed { reason },
        };
        plan.services.insert(svc.key.clone(), outcome);
    }
    for pool in pools {
        let assigned = usage
            .users
            .iter()
            .filter(|(ip, users)| !users.is_empty() && pool.contains(**ip))
            .count() as u64;
        plan.pools.insert(
            pool.name.clone(),
            PoolUsage {
                assigned,
                available: pool.size().saturating_sub(assigned),
            },
        );
    }
    plan
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::addresses::Range;
    use crate::model::ServiceAllocation;

    fn pool(name: &str, range: &str) -> Pool {
        Pool {
            name: name.into(),
            labels: BTreeMap::new(),
            ranges: vec![Range::parse(range).unwrap()],
            auto_assign: true,
            avoid_buggy_ips: false,
            allocation: None,
            invalid: None,
        }
    }

    fn svc(name: &str, created: &str) -> ServiceView {
        ServiceView {
            key: format!("default/{name}"),
            namespace: "default".into(),
            created: created.into(),
            wants_address: true,
            requested: Ok(vec![]),
            ports: vec![("TCP".into(), 80)],
            ..Default::default()
        }
    }

    fn ip(s: &str) -> Ipv4Addr {
        s.parse().unwrap()
    }

    fn assigned(plan: &Plan, name: &str) -> Vec<Ipv4Addr> {
        match &plan.services[&format!("default/{name}")] {
            Outcome::Assigned { ips, .. } => ips.clone(),
            Outcome::Failed { reason } => panic!("{name} failed: {reason}"),
        }
    }

    fn failure(plan: &Plan, name: &str) -> String {
        match &plan.services[&format!("default/{name}")] {
            Outcome::Failed { reason } => reason.clone(),
            other => panic!("{name}: {other:?}"),
        }
    }

    #[test]
    fn oldest_first_then_exhausted_then_freed_on_delete() {
        let pools = [pool("default", "10.0.0.1-10.0.0.2")];
        let services = [svc("c", "3"), svc("a", "1"), svc("b", "2")];
        let plan = plan(&pools, &services, &BTreeMap::new());
        assert_eq!(assigned(&plan, "a"), [ip("10.0.0.1")]);
        assert_eq!(assigned(&plan, "b"), [ip("10.0.0.2")]);
        assert_eq!(failure(&plan, "c"), "no available IPs");
        assert_eq!(
            plan.pools["default"],
            PoolUsage {
                assigned: 2,
                available: 0
            }
        );
        // "a" is deleted: "c" gets its address, "b" keeps its own.
        let mut b = svc("b", "2");
        b.current = vec![ip("10.0.0.2")];
        let plan2 = super::plan(&pools, &[svc("c", "3"), b], &BTreeMap::new());
        assert_eq!(assigned(&plan2, "c"), [ip("10.0.0.1")]);
        assert_eq!(assigned(&plan2, "b"), [ip("10.0.0.2")]);
    }

    #[test]
    fn current_addresses_are_kept_even_when_a_newer_service_is_older() {
        let pools = [pool("default", "10.0.0.1-10.0.0.3")];
        let mut late = svc("late", "9");
        late.current = vec![ip("10.0.0.1")];
        let plan = plan(&pools, &[svc("early", "1"), late], &BTreeMap::new());
        assert_eq!(assigned(&plan, "late"), [ip("10.0.0.1")]);
        assert_eq!(assigned(&plan, "early"), [ip("10.0.0.2")]);
    }

    #[test]
    fn requested_addresses() {
        let mut manual = pool("manual", "10.0.1.0/30");
        manual.auto_assign = false;
        let pools = [pool("default", "10.0.0.1-10.0.0.3"), manual];
        let mut want = svc("want", "2");
        want.requested = Ok(vec![ip("10.0.1.2")]);
        let mut taken = svc("taken", "3");
        taken.requested = Ok(vec![ip("10.0.1.2")]);
        let mut outside = svc("outside", "4");
        outside.requested = Ok(vec![ip("192.168.0.1")]);
        let mut wrong_pool = svc("wrongpool", "5");
        wrong_pool.requested = Ok(vec![ip("10.0.0.3")]);
        wrong_pool.pool = Some("manual".into());
        let mut invalid = svc("invalid", "6");
        invalid.requested = Err("invalid spec.loadBalancerIP \"x\"".into());
        let plan = plan(
            &pools,
            &[want, taken, outside, wrong_pool, invalid, svc("auto", "1")],
            &BTreeMap::new(),
        );
        assert_eq!(assigned(&plan, "want"), [ip("10.0.1.2")]);
        assert_eq!(assigned(&plan, "auto"), [ip("10.0.0.1")]);
        assert!(failure(&plan, "taken").contains("already in use by default/want"));
        assert!(failure(&plan, "outside").contains("not allowed in config"));
        assert!(failure(&plan, "wrongpool")
            .contains("not compatible with requested address pool manual"));
        assert!(failure(&plan, "invalid").contains("loadBalancerIP"));
        // A changed request moves the Service.
        let mut moved = svc("want", "2");
        moved.current = vec![ip("10.0.1.2")];
        moved.requested = Ok(vec![ip("10.0.1.3")]);
        let plan = super::plan(&pools, &[moved], &BTreeMap::new());
        assert_eq!(assigned(&plan, "want"), [ip("10.0.1.3")]);
    }

    #[test]
    fn pool_annotation_auto_assign_and_priority() {
        let mut manual = pool("manual", "10.0.1.5/32");
        manual.auto_assign = false;
        let mut preferred = pool("preferred", "10.0.2.1/32");
        preferred.allocation = Some(ServiceAllocation {
            priority: Some(1),
            ..Default::default()
        });
        let mut only_ns = pool("only-team", "10.0.3.1/32");
        only_ns.allocation = Some(ServiceAllocation {
            priority: Some(0),
            namespaces: vec!["team".into()],
            ..Default::default()
        });
        let pools = [pool("a-default", "10.0.0.1/32"), manual, preferred, only_ns];
        let mut pinned = svc("pinned", "1");
        pinned.pool = Some("manual".into());
        let mut unknown = svc("unknown", "1");
        unknown.pool = Some("nope".into());
        let plan = plan(
            &pools,
            &[
                pinned,
                unknown,
                svc("first", "2"),
                svc("second", "3"),
                svc("third", "4"),
            ],
            &BTreeMap::new(),
        );
        assert_eq!(assigned(&plan, "pinned"), [ip("10.0.1.5")]);
        assert!(failure(&plan, "unknown").contains("unknown pool"));
        // Priority 1 before the pool without priority; "only-team" is not for "default".
        assert_eq!(assigned(&plan, "first"), [ip("10.0.2.1")]);
        assert_eq!(assigned(&plan, "second"), [ip("10.0.0.1")]);
        assert_eq!(failure(&plan, "third"), "no available IPs");
        // A pool annotation different from the current pool moves the Service.
        let mut repinned = svc("second", "3");
        repinned.current = vec![ip("10.0.0.1")];
        repinned.pool = Some("manual".into());
        let plan = super::plan(&pools, &[repinned], &BTreeMap::new());
        assert_eq!(assigned(&plan, "second"), [ip("10.0.1.5")]);
    }

    #[test]
    fn sharing_needs_the_same_key_and_distinct_ports() {
        let pools = [pool("default", "10.0.0.1-10.0.0.2")];
        let shared = |name: &str, created: &str, port: i32, key: Option<&str>| {
            let mut s = svc(name, created);
            s.sharing_key = key.map(str::to_owned);
            s.ports = vec![("TCP".into(), port)];
            s
        };
        let plan = plan(
            &pools,
            &[
                shared("dns-tcp", "1", 53, Some("dns")),
                shared("dns-web", "2", 80, Some("dns")),
                shared("clash", "3", 53, Some("dns")),
                shared("other-key", "4", 8080, Some("x")),
            ],
            &BTreeMap::new(),
        );
        assert_eq!(assigned(&plan, "dns-tcp"), [ip("10.0.0.1")]);
        assert_eq!(assigned(&plan, "dns-web"), [ip("10.0.0.1")]);
        assert_eq!(assigned(&plan, "clash"), [ip("10.0.0.2")]);
        assert_eq!(failure(&plan, "other-key"), "no available IPs");
        assert_eq!(plan.pools["default"].assigned, 2);
        // Requesting an address held without a sharing key fails with the holder's name.
        let mut holder = svc("holder", "1");
        holder.current = vec![ip("10.0.0.1")];
        let mut asker = shared("asker", "2", 81, Some("dns"));
        asker.requested = Ok(vec![ip("10.0.0.1")]);
        let plan = super::plan(&pools, &[holder, asker], &BTreeMap::new());
        assert!(failure(&plan, "asker").contains("in use by default/holder"));
    }

    #[test]
    fn an_address_outside_every_pool_is_replaced() {
        let pools = [pool("default", "10.0.0.1/32")];
        let mut s = svc("s", "1");
        s.current = vec![ip("10.9.9.9")];
        let plan = plan(&pools, &[s], &BTreeMap::new());
        assert_eq!(assigned(&plan, "s"), [ip("10.0.0.1")]);
        let plan = super::plan(&[], &[svc("t", "1")], &BTreeMap::new());
        assert!(failure(&plan, "t").starts_with("no available IPs"));
    }
}
