//! Which node answers for which address, as a pure function of what every speaker reads from
//! the API, so every speaker reaches the same answer without talking to the others (MetalLB
//! uses memberlist for liveness; here a node counts when it is Ready and its speaker pod is
//! Ready). For each address of a LoadBalancer Service that lies in a pool some L2Advertisement
//! selects, the candidates are the live nodes the advertisement's `nodeSelectors` admit, minus
//! nodes labelled `node.kubernetes.io/exclude-from-external-load-balancers`, and — with
//! `externalTrafficPolicy: Local` — only nodes with a ready endpoint of the Service. The
//! winner is the candidate with the smallest SHA-256 of `<node>#<address>`: addresses spread
//! over the nodes, and an address moves only when its winner leaves.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;

use sha2::{Digest, Sha256};

use crate::model::{L2Advertisement, Pool};

pub const EXCLUDE_LABEL: &str = "node.kubernetes.io/exclude-from-external-load-balancers";

/// A node as the election sees it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct NodeView {
    pub labels: BTreeMap<String, String>,
    /// Node Ready and its speaker pod Ready.
    pub live: bool,
}

/// A LoadBalancer Service's addresses as the election sees them.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ServiceAddresses {
    pub key: String,
    pub ips: Vec<Ipv4Addr>,
    /// `externalTrafficPolicy: Local`: the nodes with a ready endpoint.
    pub local_nodes: Option<BTreeSet<String>>,
}

/// One address announced by one node.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Announcement {
    pub ip: Ipv4Addr,
    pub service: String,
    pub node: String,
    /// Interfaces to answer on (empty: any interface whose network holds the address).
    pub interfaces: Vec<String>,
}

fn score(node: &str, ip: Ipv4Addr) -> [u8; 32] {
    Sha256::digest(format!("{node}#{ip}").as_bytes()).into()
}

/// Every announcement (one per address and Service), whichever node makes it.
pub fn elect(
    services: &[ServiceAddresses],
    pools: &[Pool],
    advertisements: &[L2Advertisement],
    nodes: &BTreeMap<String, NodeView>,
) -> Vec<Announcement> {
    let mut out = Vec::new();
    for svc in services {
        for ip in &svc.ips {
            let Some(pool) = pools
                .iter()
                .find(|p| p.invalid.is_none() && p.contains(*ip))
            else {
                continue;
            };
            let ads: Vec<&L2Advertisement> = advertisements
                .iter()
                .filter(|a| a.selects_pool(pool))
                .collect();
            let winner = nodes
                .iter()
                .filter(|(name, node)| {
                    node.live
                        && !node.labels.contains_key(EXCLUDE_LABEL)
                        && ads.iter().any(|a| a.selects_node(&node.labels))
                        && svc
                            .local_nodes
                            .as_ref()
                            .is_none_or(|local| local.contains(*name))
                })
                .min_by_key(|(name, _)| score(name, *ip));
            let Some((name, node)) = winner else {
                continue;
            };
            let mut interfaces: Vec<String> = ads
                .iter()
                .filter(|a| a.selects_node(&node.labels))
                .flat_map(|a| a.interfaces.iter().cloned())
                .collect();
            interfaces.sort();
            interfaces.dedup();
            out.push(Announcement {
                ip: *ip,
                service: svc.key.clone(),
                node: name.clone(),
                interfaces,
            });
        }
    }
    out.sort();
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::addresses::Range;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

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

    fn nodes(names: &[&str]) -> BTreeMap<String, NodeView> {
        names
            .iter()
            .map(|n| {
                (
                    n.to_string(),
                    NodeView {
                        labels: [("kubernetes.io/hostname".to_string(), n.to_string())].into(),
                        live: true,
                    },
                )
            })
            .collect()
    }

    fn services(count: u8) -> Vec<ServiceAddresses> {
        (1..=count)
            .map(|i| ServiceAddresses {
                key: format!("default/s{i}"),
                ips: vec![Ipv4Addr::new(10, 0, 0, i)],
                local_nodes: None,
            })
            .collect()
    }

    #[test]
    fn one_winner_per_address_spread_and_stable() {
        let pools = [pool("p", "10.0.0.0/24")];
        let all = [L2Advertisement::default()];
        let three = nodes(&["a", "b", "c"]);
        let result = elect(&services(30), &pools, &all, &three);
        assert_eq!(result.len(), 30);
        let used: BTreeSet<&str> = result.iter().map(|a| a.node.as_str()).collect();
        assert_eq!(used.len(), 3, "30 addresses use every node: {result:?}");
        // A node leaving moves only its own addresses.
        let mut two = three.clone();
        two.get_mut("b").unwrap().live = false;
        let after = elect(&services(30), &pools, &all, &two);
        for (before, now) in result.iter().zip(&after) {
            assert_ne!(now.node, "b");
            if before.node != "b" {
                assert_eq!(before.node, now.node);
            }
        }
    }

    #[test]
    fn advertisements_select_pools_and_nodes() {
        let pools = [pool("p", "10.0.0.0/24"), pool("q", "10.0.1.0/24")];
        let svc = |ip: [u8; 4]| ServiceAddresses {
            key: "default/s".into(),
            ips: vec![Ipv4Addr::from(ip)],
            local_nodes: None,
        };
        let only_c_for_q = L2Advertisement {
            pools: vec!["q".into()],
            node_selectors: vec![LabelSelector {
                match_labels: Some(
                    [("kubernetes.io/hostname".to_string(), "c".to_string())].into(),
                ),
                match_expressions: None,
            }],
            interfaces: vec!["eth0".into()],
            ..Default::default()
        };
        let three = nodes(&["a", "b", "c"]);
        // No advertisement selects p: not announced.
        assert!(elect(
            &[svc([10, 0, 0, 1])],
            &pools,
            std::slice::from_ref(&only_c_for_q),
            &three
        )
        .is_empty());
        let got = elect(&[svc([10, 0, 1, 1])], &pools, &[only_c_for_q], &three);
        assert_eq!(got.len(), 1);
        assert_eq!(
            (got[0].node.as_str(), got[0].interfaces.clone()),
            ("c", vec!["eth0".to_string()])
        );
        // Outside every pool: not ours.
        assert!(elect(
            &[svc([192, 168, 0, 1])],
            &pools,
            &[L2Advertisement::default()],
            &three
        )
        .is_empty());
    }

    #[test]
    fn local_policy_and_exclusion_restrict_candidates() {
        let pools = [pool("p", "10.0.0.0/24")];
        let mut three = nodes(&["a", "b", "c"]);
        three
            .get_mut("a")
            .unwrap()
            .labels
            .insert(EXCLUDE_LABEL.into(), String::new());
        let mut s = services(20);
        for svc in &mut s {
            svc.local_nodes = Some(["a".to_string(), "b".to_string()].into());
        }
        let got = elect(&s, &pools, &[L2Advertisement::default()], &three);
        assert_eq!(got.len(), 20);
        assert!(got.iter().all(|a| a.node == "b"), "{got:?}");
        for svc in &mut s {
            svc.local_nodes = Some(BTreeSet::new());
        }
        assert!(elect(&s, &pools, &[L2Advertisement::default()], &three).is_empty());
    }
}
