//! The pod network across nodes (kindnetd's role): every node routes each other node's
//! podCIDR through that node's InternalIP on the cluster's Docker network. Pure functions; the
//! routes are kept with [`crate::system::RouteTable`], tagged with [`ROUTE_PROTOCOL`] so the
//! ones kubelab made are found again after a restart (no state of its own).

use std::net::Ipv4Addr;

use k8s_openapi::api::core::v1::Node;

use crate::model::Cidr;

/// The routing protocol number kubelab's routes carry (`ip route ... proto 75`).
pub const ROUTE_PROTOCOL: u8 = 75;
/// Simulated nodes have fictional addresses: never routed to.
pub const FAKE_NODE_LABEL: &str = "kubelab.dev/fake-node";

/// A route to a podCIDR through a node.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Route {
    pub destination: Cidr,
    pub gateway: Ipv4Addr,
}

/// The routes this node (`node_name`) needs: every other real node's IPv4 podCIDRs through
/// its InternalIP. Nodes without a podCIDR or an address yet are skipped.
pub fn desired_routes<'a>(
    nodes: impl IntoIterator<Item = &'a Node>,
    node_name: &str,
) -> Vec<Route> {
    let mut routes = Vec::new();
    for node in nodes {
        if node.metadata.name.as_deref() == Some(node_name)
            || node
                .metadata
                .labels
                .as_ref()
                .is_some_and(|l| l.contains_key(FAKE_NODE_LABEL))
        {
            continue;
        }
        let Some(gateway) = node
            .status
            .as_ref()
            .and_then(|s| s.addresses.as_ref())
            .and_then(|a| a.iter().find(|a| a.type_ == "InternalIP"))
            .and_then(|a| a.address.parse::<Ipv4Addr>().ok())
        else {
            continue;
        };
        let Some(spec) = &node.spec else { continue };
        let cidrs = spec
            .pod_cidrs
            .iter()
            .flatten()
            .chain(spec.pod_cidr.iter())
            .filter_map(|c| c.parse::<Cidr>().ok());
        for destination in cidrs {
            routes.push(Route {
                destination,
                gateway,
            });
        }
    }
    routes.sort();
    routes.dedup();
    routes
}

/// Routes in `ip -4 route show proto 75` output (`10.244.1.0/24 via 172.18.0.3 dev eth0 ...`).
pub fn parse_routes(output: &str) -> Vec<Route> {
    output
        .lines()
        .filter_map(|line| {
            let mut words = line.split_whitespace();
            let destination = words.next()?.parse::<Cidr>().ok()?;
            let gateway = words
                .skip_while(|w| *w != "via")
                .nth(1)?
                .parse::<Ipv4Addr>()
                .ok()?;
            Some(Route {
                destination,
                gateway,
            })
        })
        .collect()
}

/// What to change: routes to add or replace, routes to delete.
pub fn plan(current: &[Route], desired: &[Route]) -> (Vec<Route>, Vec<Route>) {
    let add = desired
        .iter()
        .filter(|r| !current.contains(r))
        .cloned()
        .collect();
    let delete = current
        .iter()
        .filter(|r| !desired.iter().any(|d| d.destination == r.destination))
        .cloned()
        .collect();
    (add, delete)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn node(name: &str, ip: &str, cidr: Option<&str>, fake: bool) -> Node {
        let mut labels = serde_json::Map::new();
        if fake {
            labels.insert(FAKE_NODE_LABEL.into(), json!("true"));
        }
        serde_json::from_value(json!({
            "metadata": {"name": name, "labels": labels},
            "spec": {"podCIDR": cidr, "podCIDRs": cidr.map(|c| vec![c])},
            "status": {"addresses": [{"type": "Hostname", "address": name},
                                     {"type": "InternalIP", "address": ip}]}
        }))
        .unwrap()
    }

    #[test]
    fn routes_to_every_other_real_node() {
        let nodes = [
            node("a", "172.18.0.2", Some("10.244.0.0/24"), false),
            node("b", "172.18.0.3", Some("10.244.1.0/24"), false),
            node("c", "172.18.0.4", None, false),
            node("fake", "172.31.0.2", Some("10.244.9.0/24"), true),
        ];
        let routes = desired_routes(&nodes, "a");
        assert_eq!(
            routes,
            [Route {
                destination: "10.244.1.0/24".parse().unwrap(),
                gateway: "172.18.0.3".parse().unwrap()
            }]
        );
    }

    #[test]
    fn plan_replaces_moved_and_deletes_departed() {
        let r = |d: &str, g: &str| Route {
            destination: d.parse().unwrap(),
            gateway: g.parse().unwrap(),
        };
        let current = parse_routes(
            "10.244.1.0/24 via 172.18.0.3 dev eth0 proto 75\n10.244.2.0/24 via 172.18.0.4 dev eth0 proto 75 \n",
        );
        assert_eq!(
            current,
            [
                r("10.244.1.0/24", "172.18.0.3"),
                r("10.244.2.0/24", "172.18.0.4")
            ]
        );
        let desired = [
            r("10.244.1.0/24", "172.18.0.9"),
            r("10.244.3.0/24", "172.18.0.5"),
        ];
        let (add, delete) = plan(&current, &desired);
        assert_eq!(add, desired);
        assert_eq!(delete, [r("10.244.2.0/24", "172.18.0.4")]);
        assert_eq!(plan(&desired, &desired), (vec![], vec![]));
    }
}
