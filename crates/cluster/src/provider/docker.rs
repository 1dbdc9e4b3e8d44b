//! The Docker implementation of [`Provider`], over the Engine API (bollard). The API version is
//! negotiated, so engines from 20.10 (API 1.41, the first with `cgroupns`) on work.

use std::collections::{BTreeMap, HashMap};
use std::net::Ipv4Addr;
use std::sync::Mutex;

use async_trait::async_trait;
use bollard::models::{
    ContainerCreateBody, EndpointIpamConfig, EndpointSettings, ExecConfig, HostConfig,
    HostConfigCgroupnsModeEnum, Ipam, IpamConfig, Mount, MountTypeEnum, NetworkCreateRequest,
    NetworkingConfig, PortBinding, RestartPolicy, RestartPolicyNameEnum, VolumeCreateOptions,
};
use bollard::query_parameters::{
    CreateContainerOptionsBuilder, ListContainersOptionsBuilder, ListNetworksOptionsBuilder,
    ListVolumesOptionsBuilder, LogsOptionsBuilder, RemoveContainerOptionsBuilder,
    RemoveVolumeOptionsBuilder, StartContainerOptions, StopContainerOptionsBuilder,
    UploadToContainerOptionsBuilder,
};
use bollard::Docker;
use futures::{StreamExt, TryStreamExt};
use tokio::io::AsyncWriteExt;

use super::{
    ByteStream, EngineInfo, ExecOutput, NetworkSpec, NodeInfo, NodeSpec, PortMapping, Privileges,
    Provider, Role, CLUSTER_LABEL, ROLE_LABEL,
};
use crate::{Error, Result};

/// A Docker engine, reached through `DOCKER_HOST` or the local socket.
pub struct DockerProvider {
    docker: Docker,
    endpoint: String,
    privileged: Mutex<Option<bool>>,
}

impl DockerProvider {
    /// Connects and negotiates the API version; fails with the "how to start it" message when
    /// no engine answers.
    pub async fn connect() -> Result<DockerProvider> {
        let endpoint = std::env::var("DOCKER_HOST")
            .unwrap_or_else(|_| "unix:///var/run/docker.sock".to_owned());
        let unreachable = |reason: String| Error::EngineUnreachable {
            endpoint: endpoint.clone(),
            reason,
        };
        let docker = Docker::connect_with_defaults().map_err(|e| unreachable(e.to_string()))?;
        let docker = tokio::time::timeout(
            std::time::Duration::from_secs(10),
            docker.negotiate_version(),
        )
        .await
        .map_err(|_| unreachable("no answer within 10s".into()))?
        .map_err(|e| unreachable(short_error(&e)))?;
        Ok(DockerProvider {
            docker,
            endpoint,
            privileged: Mutex::new(None),
        })
    }

    /// The bollard client, for image building (`node_image`).
    pub fn client(&self) -> &Docker {
        &self.docker
    }

    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// Memory used by a running container, in bytes (cgroup usage less page cache), or None.
    pub async fn memory_usage(&self, name: &str) -> Result<Option<u64>> {
        let options = bollard::query_parameters::StatsOptionsBuilder::new()
            .stream(false)
            .one_shot(true)
            .build();
        let mut stream = self.docker.stats(name, Some(options));
        let Some(stats) = stream.next().await else {
            return Ok(None);
        };
        let stats = stats
            .map_err(|e| Error::engine(format!("read the stats of {name}"), short_error(&e)))?;
        let Some(memory) = stats.memory_stats else {
            return Ok(None);
        };
        let usage = memory.usage.unwrap_or(0);
        let cache = memory
            .stats
            .as_ref()
            .and_then(|s| {
                s.get("total_inactive_file")
                    .or_else(|| s.get("inactive_file"))
                    .copied()
            })
            .unwrap_or(0);
        Ok(Some(usage.saturating_sub(cache)))
    }
}

/// The engine's message without bollard's wrapping.
pub(crate) fn short_error(err: &bollard::errors::Error) -> String {
    match err {
        bollard::errors::Error::DockerResponseServerError { message, .. } => message.clone(),
        other => other.to_string(),
    }
}

fn is_not_found(err: &bollard::errors::Error) -> bool {
    matches!(
        err,
        bollard::errors::Error::DockerResponseServerError {
            status_code: 404,
            ..
        }
    )
}

fn label_filter(cluster: Option<&str>) -> HashMap<String, Vec<String>> {
    let label = match cluster {
        Some(c) => format!("{CLUSTER_LABEL}={c}"),
        None => CLUSTER_LABEL.to_owned(),
    };
    HashMap::from([("label".to_owned(), vec![label])])
}

fn labels_for(cluster: &str, role: &str) -> HashMap<String, String> {
    HashMap::from([
        (CLUSTER_LABEL.to_owned(), cluster.to_owned()),
        (ROLE_LABEL.to_owned(), role.to_owned()),
    ])
}

#[async_trait]
impl Provider for DockerProvider {
    async fn engine_info(&self) -> Result<EngineInfo> {
        let info = self
            .docker
            .info()
            .await
            .map_err(|e| Error::EngineUnreachable {
                endpoint: self.endpoint.clone(),
                reason: short_error(&e),
            })?;
        let cgroup_version = match info.cgroup_version {
            Some(bollard::models::SystemInfoCgroupVersionEnum::_2) => 2,
            _ => 1,
        };
        Ok(EngineInfo {
            id: info.id.unwrap_or_default(),
            version: info.server_version.unwrap_or_default(),
            cgroup_version,
        })
    }

    async fn privileged_allowed(&self, image: &str) -> Result<bool> {
        if let Some(known) = *self.privileged.lock().expect("privileged probe lock") {
            return Ok(known);
        }
        let info = self.engine_info().await?;
        let cache = crate::paths::cache_dir().join("engines").join(format!(
            "{}-{}.privileged",
            info.id.replace(':', "_"),
            info.version
        ));
        let allowed = match std::fs::read_to_string(&cache) {
            Ok(text) => text.trim() == "true",
            Err(_) => {
                let allowed = self.probe_privileged(image).await?;
                if let Some(dir) = cache.parent() {
                    let _ = std::fs::create_dir_all(dir);
                }
                let _ = std::fs::write(&cache, allowed.to_string());
                allowed
            }
        };
        *self.privileged.lock().expect("privileged probe lock") = Some(allowed);
        Ok(allowed)
    }

    async fn ensure_network(&self, spec: &NetworkSpec) -> Result<()> {
        match self
            .docker
            .inspect_network(
                &spec.name,
                None::<bollard::query_parameters::InspectNetworkOptions>,
            )
            .await
        {
            Ok(existing) => {
                let ours = existing
                    .labels
                    .as_ref()
                    .and_then(|l| l.get(CLUSTER_LABEL))
                    .is_some_and(|c| c == &spec.cluster);
                if ours {
                    return Ok(());
                }
                return Err(Error::NameTaken {
                    kind: "network",
                    name: spec.name.clone(),
                });
            }
            Err(e) if is_not_found(&e) => {}
            Err(e) => {
                return Err(Error::engine(
                    format!("inspect network {}", spec.name),
                    short_error(&e),
                ))
            }
        }
        let request = NetworkCreateRequest {
            name: spec.name.clone(),
            driver: Some("bridge".into()),
            ipam: Some(Ipam {
                driver: Some("default".into()),
                config: Some(vec![IpamConfig {
                    subnet: Some(spec.subnet.clone()),
                    // Docker's own allocations (containers other than nodes) stay in the lower
                    // half: the top is the metallb addon's default pool.
                    ip_range: lower_half(&spec.subnet),
                    gateway: Some(spec.gateway.to_string()),
                    ..Default::default()
                }]),
                options: None,
            }),
            options: Some(HashMap::from([(
                "com.docker.network.bridge.enable_ip_masquerade".to_owned(),
                "true".to_owned(),
            )])),
            labels: Some(labels_for(&spec.cluster, "network")),
            ..Default::default()
        };
        self.docker.create_network(request).await.map_err(|e| {
            Error::engine(
                format!("create network {} ({})", spec.name, spec.subnet),
                short_error(&e),
            )
        })?;
        Ok(())
    }

    async fn used_subnets(&self) -> Result<Vec<String>> {
        let networks = self
            .docker
            .list_networks(None::<bollard::query_parameters::ListNetworksOptions>)
            .await
            .map_err(|e| Error::engine("list networks", short_error(&e)))?;
        Ok(networks
            .into_iter()
            .flat_map(|n| n.ipam.and_then(|i| i.config).unwrap_or_default())
            .filter_map(|c| c.subnet)
            .collect())
    }

    async fn network_subnet(&self, name: &str) -> Result<Option<String>> {
        match self
            .docker
            .inspect_network(
                name,
                None::<bollard::query_parameters::InspectNetworkOptions>,
            )
            .await
        {
            Ok(n) => Ok(n
                .ipam
                .and_then(|i| i.config)
                .unwrap_or_default()
                .into_iter()
                .find_map(|c| c.subnet)),
            Err(e) if is_not_found(&e) => Ok(None),
            Err(e) => Err(Error::engine(
                format!("inspect network {name}"),
                short_error(&e),
            )),
        }
    }

    async fn remove_network(&self, name: &str) -> Result<()> {
        match self.docker.remove_network(name).await {
            Ok(()) => Ok(()),
            Err(e) if is_not_found(&e) => Ok(()),
            Err(e) => Err(Error::engine(
                format!("remove network {name}"),
                short_error(&e),
            )),
        }
    }

    async fn list_networks(&self, cluster: Option<&str>) -> Result<Vec<(String, String)>> {
        let options = ListNetworksOptionsBuilder::new()
            .filters(&label_filter(cluster))
            .build();
        let networks = self
            .docker
            .list_networks(Some(options))
            .await
            .map_err(|e| Error::engine("list networks", short_error(&e)))?;
        Ok(networks
            .into_iter()
            .filter_map(|n| {
                let cluster = n.labels.as_ref()?.get(CLUSTER_LABEL)?.clone();
                Some((n.name?, cluster))
            })
            .collect())
    }

    async fn create_volume(&self, name: &str, cluster: &str) -> Result<()> {
        self.docker
            .create_volume(VolumeCreateOptions {
                name: Some(name.to_owned()),
                driver: Some("local".into()),
                labels: Some(labels_for(cluster, "volume")),
                ..Default::default()
            })
            .await
            .map_err(|e| Error::engine(format!("create volume {name}"), short_error(&e)))?;
        Ok(())
    }

    async fn remove_volume(&self, name: &str) -> Result<()> {
        let options = RemoveVolumeOptionsBuilder::new().force(true).build();
        match self.docker.remove_volume(name, Some(options)).await {
            Ok(()) => Ok(()),
            Err(e) if is_not_found(&e) => Ok(()),
            Err(e) => Err(Error::engine(
                format!("remove volume {name}"),
                short_error(&e),
            )),
        }
    }

    async fn list_volumes(&self, cluster: Option<&str>) -> Result<Vec<(String, String)>> {
        let options = ListVolumesOptionsBuilder::new()
            .filters(&label_filter(cluster))
            .build();
        let volumes = self
            .docker
            .list_volumes(Some(options))
            .await
            .map_err(|e| Error::engine("list volumes", short_error(&e)))?;
        Ok(volumes
            .volumes
            .unwrap_or_default()
            .into_iter()
            .filter_map(|v| {
                let cluster = v.labels.get(CLUSTER_LABEL)?.clone();
                Some((v.name, cluster))
            })
            .collect())
    }

    async fn create_node(&self, spec: &NodeSpec) -> Result<()> {
        let mut labels = labels_for(&spec.cluster, spec.role.as_str());
        labels.insert(super::NODE_IP_LABEL.to_owned(), spec.ip.to_string());
        labels.extend(spec.labels.clone());
        let mut mounts = vec![
            Mount {
                target: Some("/var".into()),
                source: Some(spec.var_volume.clone()),
                typ: Some(MountTypeEnum::VOLUME),
                ..Default::default()
            },
            Mount {
                target: Some("/lib/modules".into()),
                source: Some("/lib/modules".into()),
                typ: Some(MountTypeEnum::BIND),
                read_only: Some(true),
                ..Default::default()
            },
        ];
        if !std::path::Path::new("/lib/modules").exists() {
            mounts.pop();
        }
        for bind in &spec.binds {
            mounts.push(Mount {
                target: Some(bind.container_path.clone()),
                source: Some(bind.host_path.clone()),
                typ: Some(MountTypeEnum::BIND),
                read_only: Some(bind.read_only),
                ..Default::default()
            });
        }
        let mut exposed = HashMap::new();
        let mut bindings: HashMap<String, Option<Vec<PortBinding>>> = HashMap::new();
        for port in &spec.ports {
            let key = format!("{}/{}", port.container_port, port.protocol);
            exposed.insert(key.clone(), HashMap::new());
            bindings
                .entry(key)
                .or_insert_with(|| Some(Vec::new()))
                .get_or_insert_with(Vec::new)
                .push(PortBinding {
                    host_ip: Some(port.host_ip.clone()),
                    host_port: Some(port.host_port.to_string()),
                });
        }
        let (privileged, cap_add) = match &spec.privileges {
            Privileges::Full => (true, None),
            Privileges::Capabilities(caps) => (false, Some(caps.clone())),
        };
        let host_config = HostConfig {
            privileged: Some(privileged),
            cap_add,
            security_opt: Some(vec![
                "seccomp=unconfined".into(),
                "apparmor=unconfined".into(),
            ]),
            tmpfs: Some(HashMap::from([
                ("/run".to_owned(), "rw,exec,mode=755".to_owned()),
                ("/tmp".to_owned(), "rw,exec,mode=1777".to_owned()),
            ])),
            mounts: Some(mounts),
            port_bindings: Some(bindings),
            cgroupns_mode: Some(HostConfigCgroupnsModeEnum::PRIVATE),
            init: Some(false),
            // Back after a reboot or a dockerd restart; `kubelab stop` (docker stop) keeps it down.
            restart_policy: Some(RestartPolicy {
                name: Some(RestartPolicyNameEnum::UNLESS_STOPPED),
                maximum_retry_count: None,
            }),
            network_mode: Some(spec.network.clone()),
            ..Default::default()
        };
        let networking = NetworkingConfig {
            endpoints_config: Some(HashMap::from([(
                spec.network.clone(),
                EndpointSettings {
                    ipam_config: Some(EndpointIpamConfig {
                        ipv4_address: Some(spec.ip.to_string()),
                        ..Default::default()
                    }),
                    aliases: Some(vec![spec.name.clone()]),
                    ..Default::default()
                },
            )])),
        };
        let body = ContainerCreateBody {
            hostname: Some(spec.name.clone()),
            image: Some(spec.image.clone()),
            cmd: Some(spec.args.clone()),
            env: Some(spec.env.clone()),
            labels: Some(labels),
            exposed_ports: Some(exposed),
            tty: Some(false),
            // SIGTERM goes to the node entrypoint, which stops the components in order.
            stop_signal: Some("SIGTERM".into()),
            host_config: Some(host_config),
            networking_config: Some(networking),
            ..Default::default()
        };
        let options = CreateContainerOptionsBuilder::new()
            .name(&spec.name)
            .build();
        self.docker
            .create_container(Some(options), body)
            .await
            .map_err(|e| {
                let message = short_error(&e);
                if message.contains("is already in use by container") {
                    Error::NameTaken {
                        kind: "container",
                        name: spec.name.clone(),
                    }
                } else {
                    Error::engine(format!("create node container {}", spec.name), message)
                }
            })?;
        Ok(())
    }

    async fn upload(&self, node: &str, dir: &str, tar: Vec<u8>) -> Result<()> {
        let options = UploadToContainerOptionsBuilder::new().path(dir).build();
        self.docker
            .upload_to_container(node, Some(options), bollard::body_full(tar.into()))
            .await
            .map_err(|e| Error::engine(format!("copy files into {node}:{dir}"), short_error(&e)))
    }

    async fn start_node(&self, name: &str) -> Result<()> {
        self.docker
            .start_container(name, None::<StartContainerOptions>)
            .await
            .map_err(|e| {
                let message = short_error(&e);
                if message.contains("address already in use")
                    || message.contains("port is already allocated")
                {
                    let address = port_in_message(&message).unwrap_or_else(|| "of the node".into());
                    Error::PortInUse { address }
                } else {
                    Error::engine(format!("start node container {name}"), message)
                }
            })
    }

    async fn stop_node(&self, name: &str, timeout_seconds: u32) -> Result<()> {
        let options = StopContainerOptionsBuilder::new()
            .t(timeout_seconds as i32)
            .build();
        match self.docker.stop_container(name, Some(options)).await {
            Ok(()) => Ok(()),
            Err(bollard::errors::Error::DockerResponseServerError {
                status_code: 304, ..
            }) => Ok(()),
            Err(e) => Err(Error::engine(
                format!("stop node container {name}"),
                short_error(&e),
            )),
        }
    }

    async fn remove_node(&self, name: &str) -> Result<()> {
        let options = RemoveContainerOptionsBuilder::new()
            .force(true)
            .v(true)
            .build();
        match self.docker.remove_container(name, Some(options)).await {
            Ok(()) => Ok(()),
            Err(e) if is_not_found(&e) => Ok(()),
            Err(e) => Err(Error::engine(
                format!("remove node container {name}"),
                short_error(&e),
            )),
        }
    }

    async fn list_nodes(&self, cluster: Option<&str>) -> Result<Vec<NodeInfo>> {
        let options = ListContainersOptionsBuilder::new()
            .all(true)
            .filters(&label_filter(cluster))
            .build();
        let containers = self
            .docker
            .list_containers(Some(options))
            .await
            .map_err(|e| Error::engine("list containers", short_error(&e)))?;
        let mut nodes = Vec::new();
        for c in containers {
            let labels: BTreeMap<String, String> =
                c.labels.unwrap_or_default().into_iter().collect();
            let Some(role) = labels.get(ROLE_LABEL).and_then(|r| Role::parse(r)) else {
                continue;
            };
            let Some(cluster) = labels.get(CLUSTER_LABEL).cloned() else {
                continue;
            };
            let name = c
                .names
                .unwrap_or_default()
                .into_iter()
                .next()
                .unwrap_or_default()
                .trim_start_matches('/')
                .to_owned();
            let ip = labels
                .get(super::NODE_IP_LABEL)
                .and_then(|ip| ip.parse::<Ipv4Addr>().ok());
            let ports = c
                .ports
                .unwrap_or_default()
                .into_iter()
                .filter_map(|p| {
                    Some(PortMapping {
                        host_ip: p.ip.clone().unwrap_or_default(),
                        host_port: p.public_port?,
                        container_port: p.private_port,
                        protocol: p.typ.map(|t| t.to_string()).unwrap_or_else(|| "tcp".into()),
                    })
                })
                .collect();
            nodes.push(NodeInfo {
                name,
                cluster,
                role,
                state: c.state.map(|s| s.to_string()).unwrap_or_default(),
                ip,
                image: c.image.unwrap_or_default(),
                labels,
                ports,
            });
        }
        nodes.sort_by(|a, b| (&a.cluster, a.role, &a.name).cmp(&(&b.cluster, b.role, &b.name)));
        Ok(nodes)
    }

    async fn container_exists(&self, name: &str) -> Result<bool> {
        match self
            .docker
            .inspect_container(
                name,
                None::<bollard::query_parameters::InspectContainerOptions>,
            )
            .await
        {
            Ok(_) => Ok(true),
            Err(e) if is_not_found(&e) => Ok(false),
            Err(e) => Err(Error::engine(
                format!("inspect container {name}"),
                short_error(&e),
            )),
        }
    }

    async fn exec(
        &self,
        node: &str,
        command: &[&str],
        stdin: Option<ByteStream>,
    ) -> Result<ExecOutput> {
        let created = self
            .docker
            .create_exec(
                node,
                ExecConfig {
                    attach_stdin: Some(stdin.is_some()),
                    attach_stdout: Some(true),
                    attach_stderr: Some(true),
                    cmd: Some(command.iter().map(|s| s.to_string()).collect()),
                    ..Default::default()
                },
            )
            .await
            .map_err(|e| Error::engine(format!("exec in {node}"), short_error(&e)))?;
        let started = self
            .docker
            .start_exec(&created.id, None)
            .await
            .map_err(|e| Error::engine(format!("exec in {node}"), short_error(&e)))?;
        let mut output = ExecOutput::default();
        if let bollard::exec::StartExecResults::Attached {
            output: mut stream,
            mut input,
        } = started
        {
            let feeder = stdin.map(|mut data| {
                tokio::spawn(async move {
                    while let Some(chunk) = data.next().await {
                        input.write_all(&chunk?).await?;
                    }
                    input.shutdown().await?;
                    Ok::<(), std::io::Error>(())
                })
            });
            while let Some(item) = stream.next().await {
                match item.map_err(|e| Error::engine(format!("exec in {node}"), short_error(&e)))? {
                    bollard::container::LogOutput::StdOut { message }
                    | bollard::container::LogOutput::Console { message } => {
                        output.stdout.extend_from_slice(&message)
                    }
                    bollard::container::LogOutput::StdErr { message } => {
                        output.stderr.extend_from_slice(&message)
                    }
                    bollard::container::LogOutput::StdIn { .. } => {}
                }
            }
            if let Some(feeder) = feeder {
                match feeder.await {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => {
                        return Err(Error::engine(format!("stream input to {node}"), e));
                    }
                    Err(e) => return Err(Error::engine(format!("stream input to {node}"), e)),
                }
            }
        }
        let inspected = self
            .docker
            .inspect_exec(&created.id)
            .await
            .map_err(|e| Error::engine(format!("exec in {node}"), short_error(&e)))?;
        output.exit_code = inspected.exit_code.unwrap_or(-1);
        Ok(output)
    }

    async fn logs(&self, node: &str) -> Result<Vec<u8>> {
        let options = LogsOptionsBuilder::new()
            .stdout(true)
            .stderr(true)
            .timestamps(true)
            .build();
        let chunks: Vec<_> = self
            .docker
            .logs(node, Some(options))
            .try_collect()
            .await
            .map_err(|e| Error::engine(format!("read the logs of {node}"), short_error(&e)))?;
        let mut out = Vec::new();
        for chunk in chunks {
            out.extend_from_slice(&chunk.into_bytes());
        }
        Ok(out)
    }

    async fn inspect(&self, node: &str) -> Result<serde_json::Value> {
        let inspected = self
            .docker
            .inspect_container(
                node,
                None::<bollard::query_parameters::InspectContainerOptions>,
            )
            .await
            .map_err(|e| Error::engine(format!("inspect {node}"), short_error(&e)))?;
        serde_json::to_value(inspected).map_err(|e| Error::engine(format!("inspect {node}"), e))
    }

    async fn image_id(&self, image: &str) -> Result<Option<String>> {
        match self.docker.inspect_image(image).await {
            Ok(i) => Ok(i.id),
            Err(e) if is_not_found(&e) => Ok(None),
            Err(e) => Err(Error::engine(
                format!("inspect image {image}"),
                short_error(&e),
            )),
        }
    }

    async fn image_labels(&self, image: &str) -> Result<Option<BTreeMap<String, String>>> {
        match self.docker.inspect_image(image).await {
            Ok(i) => Ok(Some(
                i.config
                    .and_then(|c| c.labels)
                    .unwrap_or_default()
                    .into_iter()
                    .collect(),
            )),
            Err(e) if is_not_found(&e) => Ok(None),
            Err(e) => Err(Error::engine(
                format!("inspect image {image}"),
                short_error(&e),
            )),
        }
    }

    fn save_images(&self, images: &[String]) -> ByteStream {
        let names: Vec<&str> = images.iter().map(String::as_str).collect();
        Box::pin(
            self.docker
                .export_images(&names)
                .map_err(|e| std::io::Error::other(short_error(&e))),
        )
    }
}

impl DockerProvider {
    /// Starts a throwaway `--privileged` container running `/bin/true`: engines whose own
    /// capabilities are limited refuse it at start ("unable to apply caps").
    async fn probe_privileged(&self, image: &str) -> Result<bool> {
        let name = format!("kubelab-privileged-probe-{}", std::process::id());
        let body = ContainerCreateBody {
            image: Some(image.to_owned()),
            entrypoint: Some(vec!["/bin/true".into()]),
            cmd: Some(vec![]),
            host_config: Some(HostConfig {
                privileged: Some(true),
                network_mode: Some("none".into()),
                ..Default::default()
            }),
            ..Default::default()
        };
        let options = CreateContainerOptionsBuilder::new().name(&name).build();
        self.docker
            .create_container(Some(options), body)
            .await
            .map_err(|e| Error::engine("create the privileged probe container", short_error(&e)))?;
        let started = self
            .docker
            .start_container(&name, None::<StartContainerOptions>)
            .await;
        let _ = self.remove_node(&name).await;
        match started {
            Ok(()) => Ok(true),
            Err(e) => {
                tracing::info!(reason = %short_error(&e), "the engine refuses --privileged; using the explicit capability set");
                Ok(false)
            }
        }
    }
}

/// "0.0.0.0:8080" out of a Docker port-conflict message, when present.
fn port_in_message(message: &str) -> Option<String> {
    // e.g. "driver failed programming external connectivity on endpoint x: Bind for
    // 127.0.0.1:8080 failed: port is already allocated" or "listen tcp4 127.0.0.1:80: bind:
    // address already in use"
    let words: Vec<&str> = message.split_whitespace().collect();
    words
        .iter()
        .map(|w| w.trim_end_matches(':'))
        .find(|w| {
            w.rsplit_once(':')
                .is_some_and(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok() && h.contains('.'))
        })
        .map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn port_conflicts_name_the_address() {
        assert_eq!(
            port_in_message("driver failed programming external connectivity on endpoint lab-server-0 (x): Bind for 127.0.0.1:8080 failed: port is already allocated").as_deref(),
            Some("127.0.0.1:8080")
        );
        assert_eq!(
            port_in_message("Error starting userland proxy: listen tcp4 127.0.0.1:80: bind: address already in use").as_deref(),
            Some("127.0.0.1:80")
        );
    }
}

/// The lower half of an IPv4 CIDR (`172.30.7.0/24` → `172.30.7.0/25`).
fn lower_half(subnet: &str) -> Option<String> {
    let (ip, len) = subnet.split_once('/')?;
    let len: u8 = len.parse().ok().filter(|l| *l < 32)?;
    let ip: std::net::Ipv4Addr = ip.parse().ok()?;
    Some(format!("{ip}/{}", len + 1))
}

#[cfg(test)]
mod ip_range_tests {
    #[test]
    fn docker_allocates_from_the_lower_half() {
        assert_eq!(
            super::lower_half("172.30.7.0/24").as_deref(),
            Some("172.30.7.0/25")
        );
        assert_eq!(super::lower_half("nonsense"), None);
    }
}
