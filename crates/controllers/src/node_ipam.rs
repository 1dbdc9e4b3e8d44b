//! Node IPAM (upstream's range allocator): every Node gets a pod range, `spec.podCIDR` and
//! `spec.podCIDRs`, carved from `Config.cluster_cidr` in `/node_cidr_mask_size` blocks. A block
//! belongs to one node at a time; a deleted node's block is free again, and the lowest free
//! block is handed out first. Nodes that already have a podCIDR keep it.
//!
//! The allocation state is not stored anywhere: it is the set of podCIDRs of the Nodes in the
//! controller's cache, plus the blocks this process has just written and not yet seen come back
//! (`State::pending`), so two reconciles can never hand out the same block.

use crate::replicaset::events::{EventRecorder, WARNING};
use std::collections::{HashMap, HashSet};
use std::net::Ipv4Addr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Node;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::Store;
use kube::runtime::watcher;
use kube::ResourceExt;
use serde_json::json;

use crate::{Context, Error, ERROR_REQUEUE};

/// How long to wait before trying again when every block is taken.
const EXHAUSTED_REQUEUE: Duration = Duration::from_secs(30);

/// The cluster pod network split into equal per-node blocks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClusterCidr {
    network: u32,
    prefix: u8,
    node_prefix: u8,
}

impl ClusterCidr {
    pub fn parse(cidr: &str, node_prefix: u8) -> Result<ClusterCidr, Error> {
        let invalid = |why: &str| Error::Invalid(format!("cluster CIDR {cidr:?}: {why}"));
        let (addr, prefix) = cidr
            .trim()
            .split_once('/')
            .ok_or_else(|| invalid("expected ADDRESS/PREFIX"))?;
        let addr: Ipv4Addr = addr.parse().map_err(|_| invalid("not an IPv4 address"))?;
        let prefix: u8 = prefix.parse().map_err(|_| invalid("bad prefix length"))?;
        if prefix > 32 || node_prefix > 32 || node_prefix < prefix || node_prefix - prefix > 24 {
            return Err(invalid(&format!(
                "node mask size /{node_prefix} does not fit in /{prefix}"
            )));
        }
        Ok(ClusterCidr {
            network: u32::from(addr) & mask(prefix),
            prefix,
            node_prefix,
        })
    }

    /// Number of node blocks.
    pub fn blocks(&self) -> u32 {
        1 << (self.node_prefix - self.prefix)
    }

    /// The `index`-th block in CIDR notation.
    pub fn block(&self, index: u32) -> String {
        let shift = 32 - u32::from(self.node_prefix);
        let start = self
            .network
            .wrapping_add(index.checked_shl(shift).unwrap_or(0));
        format!("{}/{}", Ipv4Addr::from(start), self.node_prefix)
    }

    /// The index of `cidr` if it is one of this network's blocks.
    pub fn index_of(&self, cidr: &str) -> Option<u32> {
        let (addr, prefix) = cidr.split_once('/')?;
        let addr: Ipv4Addr = addr.parse().ok()?;
        if prefix.parse::<u8>().ok()? != self.node_prefix {
            return None;
        }
        let addr = u32::from(addr);
        if addr & mask(self.prefix) != self.network {
            return None;
        }
        let shift = 32 - u32::from(self.node_prefix);
        Some((addr - self.network).checked_shr(shift).unwrap_or(0))
    }
}

fn mask(prefix: u8) -> u32 {
    if prefix == 0 {
        0
    } else {
        u32::MAX << (32 - u32::from(prefix))
    }
}

struct State {
    client: kube::Client,
    cluster: ClusterCidr,
    nodes: Store<Node>,
    /// Node name -> block index written but not yet seen in the cache.
    pending: Mutex<HashMap<String, u32>>,
    recorder: EventRecorder,
}

pub async fn run(ctx: Context) {
    let cluster = match ClusterCidr::parse(&ctx.config.cluster_cidr, ctx.config.node_cidr_mask_size)
    {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "node IPAM disabled");
            return;
        }
    };
    let nodes: Api<Node> = Api::all(ctx.client.clone());
    let controller = Controller::new(nodes, watcher::Config::default());
    let state = Arc::new(State {
        recorder: EventRecorder::new(ctx.client.clone(), "node-ipam-controller"),
        client: ctx.client,
        cluster,
        nodes: controller.store(),
        pending: Mutex::new(HashMap::new()),
    });
    controller
        .run(
            reconcile,
            |node, err, _| {
                tracing::warn!(node = %node.name_any(), error = %err, "node IPAM reconcile failed");
                Action::requeue(ERROR_REQUEUE)
            },
            state,
        )
        .for_each(|result| {
            if let Err(e) = result {
                tracing::debug!(error = %e, "node IPAM controller");
            }
            futures::future::ready(())
        })
        .await;
}

fn pod_cidrs(node: &Node) -> Vec<String> {
    let Some(spec) = node.spec.as_ref() else {
        return Vec::new();
    };
    let mut out: Vec<String> = spec.pod_cidrs.clone().unwrap_or_default();
    if let Some(c) = spec.pod_cidr.as_ref().filter(|c| !c.is_empty()) {
        if !out.contains(c) {
            out.push(c.clone());
        }
    }
    out
}

/// Picks a block for `name`: the one already reserved for it, else the lowest free one.
fn choose_block(state: &State, name: &str) -> Option<u32> {
    let nodes = state.nodes.state();
    let mut pending = state.pending.lock().unwrap_or_else(|e| e.into_inner());
    // A reservation is done once the cache shows the node with a range, or the node is gone.
    pending.retain(|node_name, _| {
        nodes
            .iter()
            .any(|n| n.metadata.name.as_deref() == Some(node_name) && pod_cidrs(n).is_empty())
    });
    if let Some(index) = pending.get(name) {
        return Some(*index);
    }
    let used: HashSet<u32> = nodes
        .iter()
        .flat_map(|n| pod_cidrs(n))
        .filter_map(|c| state.cluster.index_of(&c))
        .chain(pending.values().copied())
        .collect();
    let index = (0..state.cluster.blocks()).find(|i| !used.contains(i))?;
    pending.insert(name.to_string(), index);
    Some(index)
}

async fn reconcile(node: Arc<Node>, state: Arc<State>) -> Result<Action, Error> {
    if !pod_cidrs(&node).is_empty() || node.metadata.deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    state
        .nodes
        .wait_until_ready()
        .await
        .map_err(|e| Error::Invalid(format!("node cache unavailable: {e}")))?;
    let name = node.name_any();
    let Some(index) = choose_block(&state, &name) else {
        state.recorder.record(
            &*node,
            WARNING,
            "CIDRNotAvailable",
            format!(
                "Node {name} status is now: CIDRNotAvailable (no free /{} in {})",
                state.cluster.node_prefix,
                state.cluster.block(0)
            ),
        );
        tracing::warn!(node = %name, "no free pod CIDR for node");
        return Ok(Action::requeue(EXHAUSTED_REQUEUE));
    };
    let cidr = state.cluster.block(index);
    let patch = json!({
        "metadata": {"resourceVersion": node.metadata.resource_version},
        "spec": {"podCIDR": cidr, "podCIDRs": [cidr]},
    });
    let api: Api<Node> = Api::all(state.client.clone());
    match api
        .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
    {
        Ok(_) => {
            tracing::info!(node = %name, %cidr, "assigned pod CIDR");
            Ok(Action::await_change())
        }
        // Changed meanwhile: its next version comes through the watch.
        Err(kube::Error::Api(e)) if e.code == 409 => Ok(Action::requeue(Duration::from_secs(1))),
        Err(kube::Error::Api(e)) if e.code == 404 => Ok(Action::await_change()),
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_the_cluster_network_into_node_blocks() {
        let c = ClusterCidr::parse("10.244.0.0/16", 24).unwrap();
        assert_eq!(c.blocks(), 256);
        assert_eq!(c.block(0), "10.244.0.0/24");
        assert_eq!(c.block(3), "10.244.3.0/24");
        assert_eq!(c.block(255), "10.244.255.0/24");
        assert_eq!(c.index_of("10.244.7.0/24"), Some(7));
        assert_eq!(c.index_of("10.245.7.0/24"), None);
        assert_eq!(c.index_of("10.244.7.0/25"), None);
        let small = ClusterCidr::parse("10.0.0.0/8", 26).unwrap();
        assert_eq!(small.block(5), "10.0.1.64/26");
        assert_eq!(small.index_of("10.0.1.64/26"), Some(5));
        assert!(ClusterCidr::parse("10.244.0.0/16", 8).is_err());
        assert!(ClusterCidr::parse("nonsense", 24).is_err());
    }
}
