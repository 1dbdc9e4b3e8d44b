//! The CRI node agent against a private containerd (tests/common/containerd.rs).

mod common;
#[path = "common/containerd.rs"]
mod containerd;

use std::time::Duration;

use containerd::Containerd;
use k8s_cri::v1 as cri;
use kubelab_agent::kubelet::cni::{self, CniConfig};
use kubelab_agent::kubelet::cri::Cri;

#[test]
fn a_sandbox_gets_an_address_from_the_node_pod_cidr() {
    let ctrd = Containerd::start();
    let cni = CniConfig {
        conf_dir: ctrd.cni_conf_dir.clone(),
        bridge: ctrd.bridge.clone(),
        ipam_data_dir: ctrd.root().join("ipam"),
    };
    cni::write_conflist(&cni, "10.199.3.0/24").unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let cri = Cri::new(&ctrd.socket);
        let version = cri.version().await.unwrap();
        assert_eq!(version.runtime_name, "containerd");
        // containerd notices the new conflist asynchronously.
        let until = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            let conditions = cri.status().await.unwrap();
            if conditions
                .iter()
                .any(|c| c.r#type == "NetworkReady" && c.status)
            {
                break;
            }
            assert!(
                tokio::time::Instant::now() < until,
                "network not ready: {conditions:?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let config = cri::PodSandboxConfig {
            metadata: Some(cri::PodSandboxMetadata {
                name: "first".into(),
                uid: "uid-first".into(),
                namespace: "default".into(),
                attempt: 0,
            }),
            hostname: "first".into(),
            log_directory: ctrd.root().join("logs").to_string_lossy().into_owned(),
            labels: [("io.kubernetes.pod.uid".to_string(), "uid-first".to_string())].into(),
            linux: Some(cri::LinuxPodSandboxConfig::default()),
            ..Default::default()
        };
        let sandbox = cri.run_pod_sandbox(config.clone()).await.unwrap();
        let status = cri.pod_sandbox_status(&sandbox).await.unwrap().unwrap();
        let ip: std::net::Ipv4Addr = status.network.unwrap().ip.parse().unwrap();
        assert_eq!(ip.octets()[..3], [10, 199, 3], "{ip}");
        let container = cri
            .create_container(
                &sandbox,
                cri::ContainerConfig {
                    metadata: Some(cri::ContainerMetadata {
                        name: "c".into(),
                        attempt: 0,
                    }),
                    image: Some(cri::ImageSpec {
                        image: containerd::BUSYBOX.into(),
                        ..Default::default()
                    }),
                    command: vec!["sh".into(), "-c".into(), "echo hello; sleep 30".into()],
                    log_path: "c/0.log".into(),
                    ..Default::default()
                },
                config,
            )
            .await
            .unwrap();
        cri.start_container(&container).await.unwrap();
        let out = cri
            .exec_sync(
                &container,
                vec!["ip".into(), "-4".into(), "addr".into()],
                10,
            )
            .await
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.contains(&ip.to_string()), "{text}");
        assert_eq!(
            cri.list_pod_sandboxes(Some("uid-first"))
                .await
                .unwrap()
                .len(),
            1
        );
    });
}
