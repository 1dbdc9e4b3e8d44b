//! The container runtime, reached over the CRI gRPC API (`runtime.v1`) on containerd's unix
//! socket: a thin client whose methods are the RPCs the kubelet uses, each mapped to one error
//! naming the operation.

use std::path::{Path, PathBuf};
use std::time::Duration;

use hyper_util::rt::TokioIo;
use k8s_cri::v1 as cri;
use k8s_cri::v1::image_service_client::ImageServiceClient;
use k8s_cri::v1::runtime_service_client::RuntimeServiceClient;
use tonic::transport::{Channel, Endpoint, Uri};

pub use k8s_cri::v1::{
    ContainerConfig, ContainerState, ContainerStatus, PodSandboxConfig, PodSandboxState,
    PodSandboxStatus,
};

/// Label the kubelet puts on sandboxes and containers: the pod's uid.
pub const POD_UID_LABEL: &str = "io.kubernetes.pod.uid";
pub const POD_NAME_LABEL: &str = "io.kubernetes.pod.name";
pub const POD_NAMESPACE_LABEL: &str = "io.kubernetes.pod.namespace";
pub const CONTAINER_NAME_LABEL: &str = "io.kubernetes.container.name";

/// A failed CRI call.
#[derive(Debug, thiserror::Error)]
#[error("container runtime: {operation} failed: {}", status.message())]
pub struct CriError {
    pub operation: &'static str,
    pub status: tonic::Status,
}

impl CriError {
    pub fn code(&self) -> tonic::Code {
        self.status.code()
    }

    pub fn is_not_found(&self) -> bool {
        self.status.code() == tonic::Code::NotFound || self.status.message().contains("not found")
    }
}

type Result<T> = std::result::Result<T, CriError>;

fn wrap<T>(
    operation: &'static str,
    r: std::result::Result<tonic::Response<T>, tonic::Status>,
) -> Result<T> {
    r.map(tonic::Response::into_inner)
        .map_err(|status| CriError { operation, status })
}

/// A CRI client (runtime and image services) over one channel; cheap to clone.
#[derive(Clone)]
pub struct Cri {
    runtime: RuntimeServiceClient<Channel>,
    images: ImageServiceClient<Channel>,
    socket: PathBuf,
}

impl Cri {
    /// A client for the runtime at `socket`. The channel connects lazily and reconnects, so
    /// the runtime may start after the agent.
    pub fn new(socket: &Path) -> Cri {
        let path = socket.to_path_buf();
        let connector_path = path.clone();
        let channel = Endpoint::from_static("http://[::]:50051")
            .connect_timeout(Duration::from_secs(5))
            .connect_with_connector_lazy(tower::service_fn(move |_: Uri| {
                let path = connector_path.clone();
                async move {
                    Ok::<_, std::io::Error>(TokioIo::new(
                        tokio::net::UnixStream::connect(path).await?,
                    ))
                }
            }));
        Cri {
            runtime: RuntimeServiceClient::new(channel.clone()).max_decoding_message_size(64 << 20),
            images: ImageServiceClient::new(channel).max_decoding_message_size(64 << 20),
            socket: path,
        }
    }

    pub fn socket(&self) -> &Path {
        &self.socket
    }

    pub async fn version(&self) -> Result<cri::VersionResponse> {
        let r = self
            .runtime
            .clone()
            .version(cri::VersionRequest {
                version: "v1".into(),
            })
            .await;
        wrap("Version", r)
    }

    /// The runtime's conditions (RuntimeReady, NetworkReady).
    pub async fn status(&self) -> Result<Vec<cri::RuntimeCondition>> {
        let r = self
            .runtime
            .clone()
            .status(cri::StatusRequest { verbose: false })
            .await;
        Ok(wrap("Status", r)?
            .status
            .map(|s| s.conditions)
            .unwrap_or_default())
    }

    pub async fn run_pod_sandbox(&self, config: PodSandboxConfig) -> Result<String> {
        let r = self
            .runtime
            .clone()
            .run_pod_sandbox(cri::RunPodSandboxRequest {
                config: Some(config),
                runtime_handler: String::new(),
            })
            .await;
        Ok(wrap("RunPodSandbox", r)?.pod_sandbox_id)
    }

    pub async fn stop_pod_sandbox(&self, id: &str) -> Result<()> {
        let r = self
            .runtime
            .clone()
            .stop_pod_sandbox(cri::StopPodSandboxRequest {
                pod_sandbox_id: id.into(),
            })
            .await;
        wrap("StopPodSandbox", r).map(drop)
    }

    pub async fn remove_pod_sandbox(&self, id: &str) -> Result<()> {
        let r = self
            .runtime
            .clone()
            .remove_pod_sandbox(cri::RemovePodSandboxRequest {
                pod_sandbox_id: id.into(),
            })
            .await;
        wrap("RemovePodSandbox", r).map(drop)
    }

    pub async fn pod_sandbox_status(&self, id: &str) -> Result<Option<PodSandboxStatus>> {
        let r = self
            .runtime
            .clone()
            .pod_sandbox_status(cri::PodSandboxStatusRequest {
                pod_sandbox_id: id.into(),
                verbose: false,
            })
            .await;
        match wrap("PodSandboxStatus", r) {
            Ok(s) => Ok(s.status),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Sandboxes, all of them or those of one pod (by its uid label).
    pub async fn list_pod_sandboxes(&self, pod_uid: Option<&str>) -> Result<Vec<cri::PodSandbox>> {
        let filter = pod_uid.map(|uid| cri::PodSandboxFilter {
            label_selector: [(POD_UID_LABEL.to_string(), uid.to_string())].into(),
            ..Default::default()
        });
        let r = self
            .runtime
            .clone()
            .list_pod_sandbox(cri::ListPodSandboxRequest { filter })
            .await;
        Ok(wrap("ListPodSandbox", r)?.items)
    }

    pub async fn create_container(
        &self,
        sandbox_id: &str,
        config: ContainerConfig,
        sandbox_config: PodSandboxConfig,
    ) -> Result<String> {
        let r = self
            .runtime
            .clone()
            .create_container(cri::CreateContainerRequest {
                pod_sandbox_id: sandbox_id.into(),
                config: Some(config),
                sandbox_config: Some(sandbox_config),
            })
            .await;
        Ok(wrap("CreateContainer", r)?.container_id)
    }

    pub async fn start_container(&self, id: &str) -> Result<()> {
        let r = self
            .runtime
            .clone()
            .start_container(cri::StartContainerRequest {
                container_id: id.into(),
            })
            .await;
        wrap("StartContainer", r).map(drop)
    }

    /// Stops a container: its stop signal, then SIGKILL after `timeout` seconds. Returns once
    /// it is stopped.
    pub async fn stop_container(&self, id: &str, timeout: i64) -> Result<()> {
        let r = self
            .runtime
            .clone()
            .stop_container(cri::StopContainerRequest {
                container_id: id.into(),
                timeout,
            })
            .await;
        match wrap("StopContainer", r) {
            Err(e) if e.is_not_found() => Ok(()),
            other => other.map(drop),
        }
    }

    pub async fn remove_container(&self, id: &str) -> Result<()> {
        let r = self
            .runtime
            .clone()
            .remove_container(cri::RemoveContainerRequest {
                container_id: id.into(),
            })
            .await;
        match wrap("RemoveContainer", r) {
            Err(e) if e.is_not_found() => Ok(()),
            other => other.map(drop),
        }
    }

    /// Containers, all of them or those of one pod (by its uid label).
    pub async fn list_containers(&self, pod_uid: Option<&str>) -> Result<Vec<cri::Container>> {
        let filter = pod_uid.map(|uid| cri::ContainerFilter {
            label_selector: [(POD_UID_LABEL.to_string(), uid.to_string())].into(),
            ..Default::default()
        });
        let r = self
            .runtime
            .clone()
            .list_containers(cri::ListContainersRequest { filter })
            .await;
        Ok(wrap("ListContainers", r)?.containers)
    }

    pub async fn container_status(&self, id: &str) -> Result<Option<ContainerStatus>> {
        let r = self
            .runtime
            .clone()
            .container_status(cri::ContainerStatusRequest {
                container_id: id.into(),
                verbose: false,
            })
            .await;
        match wrap("ContainerStatus", r) {
            Ok(s) => Ok(s.status),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Runs `cmd` in a container and waits (up to `timeout` seconds, 0 = forever).
    pub async fn exec_sync(
        &self,
        id: &str,
        cmd: Vec<String>,
        timeout: i64,
    ) -> Result<cri::ExecSyncResponse> {
        let r = self
            .runtime
            .clone()
            .exec_sync(cri::ExecSyncRequest {
                container_id: id.into(),
                cmd,
                timeout,
            })
            .await;
        wrap("ExecSync", r)
    }

    /// The URL of the runtime's streaming server for an exec session.
    pub async fn exec(&self, request: cri::ExecRequest) -> Result<String> {
        let r = self.runtime.clone().exec(request).await;
        Ok(wrap("Exec", r)?.url)
    }

    pub async fn attach(&self, request: cri::AttachRequest) -> Result<String> {
        let r = self.runtime.clone().attach(request).await;
        Ok(wrap("Attach", r)?.url)
    }

    pub async fn port_forward(&self, sandbox_id: &str, ports: Vec<i32>) -> Result<String> {
        let r = self
            .runtime
            .clone()
            .port_forward(cri::PortForwardRequest {
                pod_sandbox_id: sandbox_id.into(),
                port: ports,
            })
            .await;
        Ok(wrap("PortForward", r)?.url)
    }

    /// The image as the runtime has it, or None when absent.
    pub async fn image_status(&self, image: &str) -> Result<Option<cri::Image>> {
        let r = self
            .images
            .clone()
            .image_status(cri::ImageStatusRequest {
                image: Some(cri::ImageSpec {
                    image: image.into(),
                    ..Default::default()
                }),
                verbose: false,
            })
            .await;
        Ok(wrap("ImageStatus", r)?.image)
    }

    /// Pulls an image; returns its reference (image id).
    pub async fn pull_image(&self, image: &str) -> Result<String> {
        let r = self
            .images
            .clone()
            .pull_image(cri::PullImageRequest {
                image: Some(cri::ImageSpec {
                    image: image.into(),
                    ..Default::default()
                }),
                auth: None,
                sandbox_config: None,
            })
            .await;
        Ok(wrap("PullImage", r)?.image_ref)
    }
}
