//! Changing a running cluster: adding and removing agent nodes, stopping and starting the
//! whole cluster. Everything is derived from the containers (labels, command line, mounts) and
//! from the server node itself (its join token), as for every host verb.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, DeleteParams, EvictParams, ListParams, Patch, PatchParams};

use crate::cluster::{self, network_name, node_name, volume_name, ClusterState};
use crate::create::{wait_api, wait_ready, Progress};
use crate::node_init::{API_PORT, SERVER_DATA_DIR};
use crate::provider::{BindMount, NodeSpec, Privileges, Provider, Role, NODE_CAPABILITIES};
use crate::{Error, Result};

/// Runs one action, reporting it (as `create` does).
async fn action<T>(
    progress: &dyn Progress,
    title: &str,
    work: impl std::future::Future<Output = Result<(T, String)>>,
) -> Result<T> {
    let step = progress.begin(title);
    match work.await {
        Ok((value, detail)) => {
            step.succeed(&detail);
            Ok(value)
        }
        Err(e) => {
            step.fail(&e);
            Err(e)
        }
    }
}

fn first_server(state: &ClusterState) -> Result<&crate::provider::NodeInfo> {
    state
        .servers()
        .next()
        .ok_or_else(|| Error::Invalid(format!("cluster {:?} has no server node", state.name)))
}

/// Adds an agent node: same image, mounts and agent arguments as the server node, the next free
/// address and index, the cluster's join token. Waits until it is Ready.
pub async fn add_agent(
    provider: &dyn Provider,
    name: &str,
    wait: Duration,
    progress: &dyn Progress,
) -> Result<String> {
    let state = cluster::require(provider, name).await?;
    let server = first_server(&state)?.clone();
    if !server.running() {
        return Err(Error::Invalid(format!(
            "the server node {} is not running; `kubelab start {name}` first",
            server.name
        )));
    }
    let index = (0..)
        .find(|i| {
            !state
                .nodes
                .iter()
                .any(|n| n.name == node_name(name, Role::Agent, *i))
        })
        .expect("an unused index exists");
    let node = node_name(name, Role::Agent, index);
    let subnet = provider
        .network_subnet(&network_name(name))
        .await?
        .ok_or_else(|| Error::Invalid(format!("the network of cluster {name:?} is missing")))?;
    let ip = cluster::free_address(&subnet, &state.nodes)?;
    let server_ip = server.ip.ok_or_else(|| {
        Error::Invalid(format!("server node {} has no address label", server.name))
    })?;
    let token = read_token(provider, &server.name).await?;
    let inspected = provider.inspect(&server.name).await?;
    let binds = bind_mounts(&inspected);
    let agent_args: Vec<String> = inspected["Config"]["Cmd"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str())
                .filter(|s| s.starts_with("--agent-arg="))
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default();
    let privileges = if provider.privileged_allowed(&server.image).await? {
        Privileges::Full
    } else {
        Privileges::Capabilities(NODE_CAPABILITIES.iter().map(|c| c.to_string()).collect())
    };
    let mut args = vec![
        "--role".to_owned(),
        "agent".into(),
        "--node-name".into(),
        node.clone(),
        "--node-ip".into(),
        ip.to_string(),
        "--server".into(),
        format!("https://{server_ip}:{API_PORT}"),
    ];
    args.extend(agent_args);
    let spec = NodeSpec {
        name: node.clone(),
        cluster: name.to_owned(),
        role: Role::Agent,
        image: server.image.clone(),
        network: network_name(name),
        ip,
        var_volume: volume_name(&node),
        binds,
        ports: vec![],
        env: vec![format!("KUBELAB_TOKEN={token}")],
        args,
        labels: BTreeMap::new(),
        privileges,
    };
    let created = action(progress, &format!("Creating node {node} ({ip})"), async {
        provider.create_volume(&spec.var_volume, name).await?;
        provider.create_node(&spec).await?;
        provider.start_node(&node).await?;
        Ok(((), String::new()))
    })
    .await;
    if let Err(e) = created {
        let _ = provider.remove_node(&node).await;
        let _ = provider.remove_volume(&spec.var_volume).await;
        return Err(e);
    }
    let entry = cluster::admin_entry(provider, &state).await?;
    let client = cluster::client(&entry).await?;
    let count = state.nodes.len() + 1;
    action(progress, &format!("Waiting for {node} Ready"), async {
        crate::create::wait_registered(&client, std::slice::from_ref(&node), &[], wait).await?;
        wait_ready(&client, count, wait).await?;
        Ok(((), String::new()))
    })
    .await?;
    Ok(node)
}

/// The cluster's join token, from the server node.
async fn read_token(provider: &dyn Provider, server: &str) -> Result<String> {
    let path = format!("{SERVER_DATA_DIR}/node-token");
    let out = provider.exec(server, &["cat", &path], None).await?;
    if !out.success() {
        return Err(Error::NodeCommand {
            node: server.to_owned(),
            command: format!("cat {path}"),
            code: out.exit_code,
            output: out.message(),
        });
    }
    Ok(out.stdout_text().trim().to_owned())
}

/// The extra bind mounts of a node container (not /var nor /lib/modules).
fn bind_mounts(inspected: &serde_json::Value) -> Vec<BindMount> {
    inspected["HostConfig"]["Mounts"]
        .as_array()
        .map(|mounts| {
            mounts
                .iter()
                .filter(|m| m["Type"] == "bind")
                .filter_map(|m| {
                    let target = m["Target"].as_str()?;
                    (target != "/lib/modules").then(|| BindMount {
                        host_path: m["Source"].as_str().unwrap_or_default().to_owned(),
                        container_path: target.to_owned(),
                        read_only: m["ReadOnly"].as_bool().unwrap_or(false),
                    })
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Drains a node (cordon, evict its pods but DaemonSet ones, wait until they are gone), deletes
/// its Node object, then its container and volume.
pub async fn remove_node(
    provider: &dyn Provider,
    name: &str,
    node: &str,
    timeout: Duration,
    progress: &dyn Progress,
) -> Result<()> {
    let state = cluster::require(provider, name).await?;
    let info = state.nodes.iter().find(|n| n.name == node).ok_or_else(|| {
        Error::Invalid(format!(
            "cluster {name:?} has no node {node:?}; `kubelab status {name}` lists them"
        ))
    })?;
    if info.role == Role::Server && state.servers().count() == 1 {
        return Err(Error::Invalid(format!(
            "{node} is the cluster's only server; remove the whole cluster with `kubelab down {name}`"
        )));
    }
    let entry = cluster::admin_entry(provider, &state).await?;
    let client = cluster::client(&entry).await?;
    action(progress, &format!("Draining {node}"), async {
        let evicted = drain(&client, node, timeout).await?;
        Ok((
            (),
            format!(
                "{evicted} pod{} evicted",
                if evicted == 1 { "" } else { "s" }
            ),
        ))
    })
    .await?;
    action(progress, &format!("Removing {node}"), async {
        let nodes: Api<Node> = Api::all(client.clone());
        match nodes.delete(node, &DeleteParams::default()).await {
            Ok(_) => {}
            Err(kube::Error::Api(s)) if s.code == 404 => {}
            Err(e) => return Err(Error::Invalid(format!("cannot delete node {node}: {e}"))),
        }
        provider.remove_node(node).await?;
        provider.remove_volume(&volume_name(node)).await?;
        Ok(((), String::new()))
    })
    .await
}

/// `kubectl drain`: cordon, evict every pod but DaemonSet-owned and mirror pods, wait until the
/// evicted pods are gone. Returns how many were evicted.
pub async fn drain(client: &kube::Client, node: &str, timeout: Duration) -> Result<usize> {
    let nodes: Api<Node> = Api::all(client.clone());
    nodes
        .patch(
            node,
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({"spec": {"unschedulable": true}})),
        )
        .await
        .map_err(|e| Error::Invalid(format!("cannot cordon {node}: {e}")))?;
    let pods: Api<Pod> = Api::all(client.clone());
    let on_node = ListParams::default().fields(&format!("spec.nodeName={node}"));
    let evictable = |p: &Pod| {
        let owned_by_daemonset = p
            .metadata
            .owner_references
            .as_ref()
            .is_some_and(|o| o.iter().any(|o| o.kind == "DaemonSet"));
        let mirror = p
            .metadata
            .annotations
            .as_ref()
            .is_some_and(|a| a.contains_key("kubernetes.io/config.mirror"));
        !owned_by_daemonset && !mirror
    };
    let deadline = Instant::now() + timeout;
    let list = pods
        .list(&on_node)
        .await
        .map_err(|e| Error::Invalid(format!("cannot list the pods of {node}: {e}")))?;
    let targets: Vec<(String, String)> = list
        .items
        .iter()
        .filter(|p| evictable(p))
        .filter_map(|p| Some((p.metadata.namespace.clone()?, p.metadata.name.clone()?)))
        .collect();
    for (namespace, pod) in &targets {
        let api: Api<Pod> = Api::namespaced(client.clone(), namespace);
        loop {
            match api.evict(pod, &EvictParams::default()).await {
                Ok(_) => break,
                Err(kube::Error::Api(s)) if s.code == 404 => break,
                // A PodDisruptionBudget refuses for now: try again until the deadline.
                Err(kube::Error::Api(s)) if s.code == 429 && Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(500)).await
                }
                Err(e) => {
                    return Err(Error::Invalid(format!(
                        "cannot evict {namespace}/{pod}: {e}"
                    )))
                }
            }
        }
    }
    loop {
        let left = pods
            .list(&on_node)
            .await
            .map(|l| l.items.iter().filter(|p| evictable(p)).count())
            .unwrap_or(usize::MAX);
        if left == 0 {
            return Ok(targets.len());
        }
        if Instant::now() >= deadline {
            return Err(Error::Timeout {
                what: format!("the pods of {node} to go ({left} left)"),
                seconds: timeout.as_secs(),
            });
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Stops every node (agents first, then servers); their volumes keep the state.
pub async fn stop(provider: &dyn Provider, name: &str, progress: &dyn Progress) -> Result<()> {
    let state = cluster::require(provider, name).await?;
    for role in [Role::Agent, Role::Server] {
        let nodes: Vec<&str> = state
            .nodes
            .iter()
            .filter(|n| n.role == role && n.running())
            .map(|n| n.name.as_str())
            .collect();
        if nodes.is_empty() {
            continue;
        }
        action(
            progress,
            &format!(
                "Stopping {} {role}{}",
                nodes.len(),
                if nodes.len() == 1 { "" } else { "s" }
            ),
            async {
                futures::future::try_join_all(nodes.iter().map(|n| provider.stop_node(n, 30)))
                    .await?;
                Ok(((), nodes.join(", ")))
            },
        )
        .await?;
    }
    Ok(())
}

/// Starts every node (servers first) and waits for the API and every node Ready.
pub async fn start(
    provider: &dyn Provider,
    name: &str,
    wait: Duration,
    progress: &dyn Progress,
) -> Result<()> {
    let state = cluster::require(provider, name).await?;
    for role in [Role::Server, Role::Agent] {
        let nodes: Vec<&str> = state
            .nodes
            .iter()
            .filter(|n| n.role == role && !n.running())
            .map(|n| n.name.as_str())
            .collect();
        if nodes.is_empty() {
            continue;
        }
        action(
            progress,
            &format!(
                "Starting {} {role}{}",
                nodes.len(),
                if nodes.len() == 1 { "" } else { "s" }
            ),
            async {
                futures::future::try_join_all(nodes.iter().map(|n| provider.start_node(n))).await?;
                Ok(((), nodes.join(", ")))
            },
        )
        .await?;
    }
    let state = cluster::require(provider, name).await?;
    let entry = cluster::admin_entry(provider, &state).await?;
    let client = cluster::client(&entry).await?;
    action(progress, "Waiting for the API server", async {
        Ok(((), wait_api(&client, wait).await?))
    })
    .await?;
    let count = state.nodes.len();
    action(
        progress,
        &format!(
            "Waiting for {count} node{} Ready",
            if count == 1 { "" } else { "s" }
        ),
        async {
            wait_ready(&client, count, wait).await?;
            Ok(((), String::new()))
        },
    )
    .await
}
