//! An in-memory [`Provider`] for unit tests of cluster logic (no engine needed): it keeps
//! networks, volumes and containers in maps, and can be told to fail in the ways engines do.

use std::collections::BTreeMap;
use std::sync::Mutex;

use async_trait::async_trait;

use super::{
    ByteStream, EngineInfo, ExecOutput, NetworkSpec, NodeInfo, NodeSpec, Provider, CLUSTER_LABEL,
    NODE_IP_LABEL, ROLE_LABEL,
};
use crate::{Error, Result};

#[derive(Default)]
pub struct FakeState {
    /// name → (cluster, subnet)
    pub networks: BTreeMap<String, (String, String)>,
    /// name → cluster
    pub volumes: BTreeMap<String, String>,
    pub nodes: BTreeMap<String, NodeInfo>,
    /// Subnets other engines' users hold (creating a network on them fails as an overlap).
    pub foreign_subnets: Vec<String>,
    /// Subnets that fail once as an overlap although they were free at listing time (a
    /// concurrent `up` took them).
    pub race_subnets: Vec<String>,
    /// Starting a node fails with this engine message.
    pub fail_start: Option<String>,
    /// Every call, in order.
    pub calls: Vec<String>,
}

#[derive(Default)]
pub struct FakeProvider {
    pub state: Mutex<FakeState>,
}

impl FakeProvider {
    pub fn with(state: FakeState) -> FakeProvider {
        FakeProvider {
            state: Mutex::new(state),
        }
    }

    fn record(&self, call: String) -> std::sync::MutexGuard<'_, FakeState> {
        let mut state = self.state.lock().expect("fake state");
        state.calls.push(call);
        state
    }
}

#[async_trait]
impl Provider for FakeProvider {
    async fn engine_info(&self) -> Result<EngineInfo> {
        Ok(EngineInfo {
            id: "fake".into(),
            version: "0".into(),
            cgroup_version: 2,
        })
    }

    async fn privileged_allowed(&self, _image: &str) -> Result<bool> {
        Ok(true)
    }

    async fn ensure_network(&self, spec: &NetworkSpec) -> Result<()> {
        let mut state = self.record(format!("ensure_network {} {}", spec.name, spec.subnet));
        if let Some(i) = state.race_subnets.iter().position(|s| *s == spec.subnet) {
            state.race_subnets.remove(i);
            state.foreign_subnets.push(spec.subnet.clone());
            return Err(Error::engine(
                format!("create network {}", spec.name),
                "Pool overlaps with other one on this address space",
            ));
        }
        if state.foreign_subnets.contains(&spec.subnet) {
            return Err(Error::engine(
                format!("create network {}", spec.name),
                "Pool overlaps with other one on this address space",
            ));
        }
        state.networks.insert(
            spec.name.clone(),
            (spec.cluster.clone(), spec.subnet.clone()),
        );
        Ok(())
    }

    async fn used_subnets(&self) -> Result<Vec<String>> {
        let state = self.record("used_subnets".into());
        let mut used: Vec<String> = state.networks.values().map(|(_, s)| s.clone()).collect();
        used.extend(
            state
                .foreign_subnets
                .iter()
                .filter(|s| !state.race_subnets.contains(s))
                .cloned(),
        );
        Ok(used)
    }

    async fn network_subnet(&self, name: &str) -> Result<Option<String>> {
        Ok(self
            .state
            .lock()
            .expect("fake state")
            .networks
            .get(name)
            .map(|(_, s)| s.clone()))
    }

    async fn remove_network(&self, name: &str) -> Result<()> {
        self.record(format!("remove_network {name}"))
            .networks
            .remove(name);
        Ok(())
    }

    async fn list_networks(&self, cluster: Option<&str>) -> Result<Vec<(String, String)>> {
        let state = self.state.lock().expect("fake state");
        Ok(state
            .networks
            .iter()
            .filter(|(_, (c, _))| cluster.is_none_or(|want| want == c))
            .map(|(n, (c, _))| (n.clone(), c.clone()))
            .collect())
    }

    async fn create_volume(&self, name: &str, cluster: &str) -> Result<()> {
        self.record(format!("create_volume {name}"))
            .volumes
            .insert(name.to_owned(), cluster.to_owned());
        Ok(())
    }

    async fn remove_volume(&self, name: &str) -> Result<()> {
        self.record(format!("remove_volume {name}"))
            .volumes
            .remove(name);
        Ok(())
    }

    async fn list_volumes(&self, cluster: Option<&str>) -> Result<Vec<(String, String)>> {
        let state = self.state.lock().expect("fake state");
        Ok(state
            .volumes
            .iter()
            .filter(|(_, c)| cluster.is_none_or(|want| want == *c))
            .map(|(v, c)| (v.clone(), c.clone()))
            .collect())
    }

    async fn create_node(&self, spec: &NodeSpec) -> Result<()> {
        let mut state = self.record(format!("create_node {}", spec.name));
        if state.nodes.contains_key(&spec.name) {
            return Err(Error::NameTaken {
                kind: "container",
                name: spec.name.clone(),
            });
        }
        let mut labels = spec.labels.clone();
        labels.insert(CLUSTER_LABEL.into(), spec.cluster.clone());
        labels.insert(ROLE_LABEL.into(), spec.role.to_string());
        labels.insert(NODE_IP_LABEL.into(), spec.ip.to_string());
        state.nodes.insert(
            spec.name.clone(),
            NodeInfo {
                name: spec.name.clone(),
                cluster: spec.cluster.clone(),
                role: spec.role,
                state: "created".into(),
                ip: Some(spec.ip),
                image: spec.image.clone(),
                labels,
                ports: spec.ports.clone(),
            },
        );
        Ok(())
    }

    async fn upload(&self, node: &str, dir: &str, _tar: Vec<u8>) -> Result<()> {
        drop(self.record(format!("upload {node} {dir}")));
        Ok(())
    }

    async fn start_node(&self, name: &str) -> Result<()> {
        let mut state = self.record(format!("start_node {name}"));
        if let Some(message) = state.fail_start.clone() {
            return Err(Error::engine(
                format!("start node container {name}"),
                message,
            ));
        }
        if let Some(node) = state.nodes.get_mut(name) {
            node.state = "running".into();
        }
        Ok(())
    }

    async fn stop_node(&self, name: &str, _timeout_seconds: u32) -> Result<()> {
        if let Some(node) = self.record(format!("stop_node {name}")).nodes.get_mut(name) {
            node.state = "exited".into();
        }
        Ok(())
    }

    async fn remove_node(&self, name: &str) -> Result<()> {
        self.record(format!("remove_node {name}"))
            .nodes
            .remove(name);
        Ok(())
    }

    async fn list_nodes(&self, cluster: Option<&str>) -> Result<Vec<NodeInfo>> {
        let state = self.state.lock().expect("fake state");
        Ok(state
            .nodes
            .values()
            .filter(|n| cluster.is_none_or(|want| want == n.cluster))
            .cloned()
            .collect())
    }

    async fn container_exists(&self, name: &str) -> Result<bool> {
        Ok(self
            .state
            .lock()
            .expect("fake state")
            .nodes
            .contains_key(name))
    }

    async fn exec(
        &self,
        node: &str,
        command: &[&str],
        _stdin: Option<ByteStream>,
    ) -> Result<ExecOutput> {
        drop(self.record(format!("exec {node} {}", command.join(" "))));
        Ok(ExecOutput::default())
    }

    async fn logs(&self, _node: &str) -> Result<Vec<u8>> {
        Ok(Vec::new())
    }

    async fn inspect(&self, node: &str) -> Result<serde_json::Value> {
        Ok(serde_json::json!({"Name": node}))
    }

    async fn image_id(&self, _image: &str) -> Result<Option<String>> {
        Ok(Some("sha256:fake".into()))
    }

    async fn image_labels(&self, _image: &str) -> Result<Option<BTreeMap<String, String>>> {
        Ok(Some(BTreeMap::new()))
    }

    fn save_images(&self, _images: &[String]) -> ByteStream {
        Box::pin(futures::stream::empty())
    }
}
