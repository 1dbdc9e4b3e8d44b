//! One task per pod: it observes the pod's sandbox and containers in the runtime, asks
//! `lifecycle` what to do, does it (volumes, sandbox, images, containers, probes, graceful
//! termination), and reports the pod's status. Everything it decides from is in the runtime
//! (labels and attempts) or the API, so a restarted agent adopts running pods as they are.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use k8s_cri::v1 as cri;
use k8s_openapi::api::core::v1::{Container, Pod, Service};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, Preconditions};
use serde_json::{json, Value};
use tokio::sync::{watch, Notify};
use tokio::time::Instant;

use super::cri::{CONTAINER_NAME_LABEL, POD_NAMESPACE_LABEL, POD_NAME_LABEL, POD_UID_LABEL};
use super::lifecycle::{self, Backoff, Decision, InitStep, Observed, PullBackoff, RunState, Stage};
use super::probes::ContainerProbes;
use super::{env, quantity, status, volumes, Kubelet};

/// Annotation on containers: where the termination message file is in the container.
const TERMINATION_MESSAGE_PATH: &str = "io.kubernetes.container.terminationMessagePath";
/// How often a quiet pod is synced anyway (volume refresh, status drift).
const RESYNC: Duration = Duration::from_secs(10);

pub(crate) struct Worker {
    kubelet: Arc<Kubelet>,
    uid: String,
    pod_rx: watch::Receiver<Option<Pod>>,
    wake: Arc<Notify>,
    backoff: HashMap<String, Backoff>,
    pulls: PullBackoff,
    /// Why a container is not running, when the runtime cannot say (image, config errors).
    waiting: HashMap<String, (String, String)>,
    /// Earliest retry of a container whose start failed.
    retry_at: HashMap<String, Instant>,
    probes: HashMap<String, ContainerProbes>,
    volumes: Option<BTreeMap<String, PathBuf>>,
    volumes_refreshed: Option<Instant>,
    last_status: Option<Value>,
    /// The grace-0 delete went through.
    finalized: bool,
}

/// What the runtime has for the pod.
struct Observation {
    sandbox: Option<cri::PodSandbox>,
    all_sandboxes: Vec<cri::PodSandbox>,
    pod_ip: Option<String>,
    containers: Vec<Observed>,
}

fn pod_ns(pod: &Pod) -> String {
    pod.metadata
        .namespace
        .clone()
        .unwrap_or_else(|| "default".into())
}

fn pod_name(pod: &Pod) -> String {
    pod.metadata.name.clone().unwrap_or_default()
}

fn host_network(pod: &Pod) -> bool {
    pod.spec
        .as_ref()
        .and_then(|s| s.host_network)
        .unwrap_or(false)
}

impl Worker {
    pub(crate) fn new(
        kubelet: Arc<Kubelet>,
        uid: String,
        pod_rx: watch::Receiver<Option<Pod>>,
        wake: Arc<Notify>,
    ) -> Worker {
        Worker {
            kubelet,
            uid,
            pod_rx,
            wake,
            backoff: HashMap::new(),
            pulls: PullBackoff::default(),
            waiting: HashMap::new(),
            retry_at: HashMap::new(),
            probes: HashMap::new(),
            volumes: None,
            volumes_refreshed: None,
            last_status: None,
            finalized: false,
        }
    }

    fn pod_dir(&self) -> PathBuf {
        self.kubelet.config.root_dir.join("pods").join(&self.uid)
    }

    fn log_dir(&self, pod: &Pod) -> PathBuf {
        self.kubelet
            .log_dir(&pod_ns(pod), &pod_name(pod), &self.uid)
    }

    /// Runs until the pod is gone from the API and its resources are released.
    pub(crate) async fn run(mut self) {
        loop {
            let pod = self.pod_rx.borrow_and_update().clone();
            let next = match pod {
                None => {
                    self.release(None).await;
                    return;
                }
                Some(pod) => self.sync(&pod).await,
            };
            tokio::select! {
                changed = self.pod_rx.changed() => {
                    if changed.is_err() {
                        self.release(None).await;
                        return;
                    }
                }
                _ = self.wake.notified() => {}
                _ = tokio::time::sleep(next) => {}
            }
        }
    }

    async fn observe(&self) -> Result<Observation, super::cri::CriError> {
        let cri = &self.kubelet.cri;
        let mut all_sandboxes = cri.list_pod_sandboxes(Some(&self.uid)).await?;
        all_sandboxes.sort_by_key(|s| (s.metadata.as_ref().map(|m| m.attempt), s.created_at));
        let sandbox = all_sandboxes
            .iter()
            .rev()
            .find(|s| s.state == cri::PodSandboxState::SandboxReady as i32)
            .cloned();
        let pod_ip = match &sandbox {
            Some(s) => cri
                .pod_sandbox_status(&s.id)
                .await?
                .and_then(|st| st.network)
                .map(|n| n.ip)
                .filter(|ip| !ip.is_empty()),
            None => None,
        };
        let mut containers = Vec::new();
        for c in cri.list_containers(Some(&self.uid)).await? {
            let Some(st) = cri.container_status(&c.id).await? else {
                continue;
            };
            containers.push(observed(&c, &st));
        }
        Ok(Observation {
            sandbox,
            all_sandboxes,
            pod_ip,
            containers,
        })
    }

    /// One pass over the pod; returns when to look again.
    async fn sync(&mut self, pod: &Pod) -> Duration {
        if pod.metadata.deletion_timestamp.is_some() {
            if !self.finalized {
                self.terminate(pod).await;
            }
            return Duration::from_secs(2);
        }
        let obs = match self.observe().await {
            Ok(o) => o,
            Err(e) => {
                tracing::warn!(pod = %pod_name(pod), error = %e, "cannot read the pod's containers");
                return Duration::from_secs(2);
            }
        };
        let phase = pod
            .status
            .as_ref()
            .and_then(|s| s.phase.clone())
            .unwrap_or_default();
        if phase == "Succeeded" || phase == "Failed" {
            // Terminal: nothing restarts; make sure nothing runs.
            for s in obs
                .all_sandboxes
                .iter()
                .filter(|s| s.state == cri::PodSandboxState::SandboxReady as i32)
            {
                for c in obs.containers.iter().filter(|c| c.is_running()) {
                    let _ = self.kubelet.cri.stop_container(&c.id, 0).await;
                }
                let _ = self.kubelet.cri.stop_pod_sandbox(&s.id).await;
            }
            return Duration::from_secs(60);
        }
        let now = Instant::now();
        let mut next = RESYNC;
        let (stage, obs) = self.run_pod(pod, obs, now, &mut next).await;
        self.report(pod, &stage, &obs).await;
        if let Stage::Completed { .. } = stage {
            for s in &obs.all_sandboxes {
                let _ = self.kubelet.cri.stop_pod_sandbox(&s.id).await;
            }
        }
        next
    }

    /// Moves the pod along its stages; returns the stage it is in and the latest observation.
    async fn run_pod(
        &mut self,
        pod: &Pod,
        mut obs: Observation,
        now: Instant,
        next: &mut Duration,
    ) -> (Stage, Observation) {
        let spec = pod.spec.clone().unwrap_or_default();
        let policy = spec
            .restart_policy
            .clone()
            .unwrap_or_else(|| "Always".into());
        // Preparing: podCIDR, volumes, sandbox. A pod whose sandbox already runs (adopted by a
        // restarted agent) is not sent back to Pending while these catch up.
        let adopted = obs.sandbox.is_some();
        if !adopted && !host_network(pod) && self.kubelet.pod_cidr().is_none() {
            *next = Duration::from_millis(500);
            return (Stage::Preparing, obs);
        }
        if let Err(message) = self
            .ensure_volumes(pod, obs.pod_ip.as_deref().unwrap_or(""))
            .await
        {
            self.kubelet
                .events
                .pod(pod, None, true, "FailedMount", &message);
            *next = Duration::from_secs(2);
            if !adopted {
                return (Stage::Preparing, obs);
            }
        }
        if obs.sandbox.is_none() {
            let sandbox_running_before = !obs.all_sandboxes.is_empty();
            let latest = lifecycle::latest_by_name(&obs.containers);
            if sandbox_running_before
                && lifecycle::completion(&spec.containers, &policy, &latest).is_some()
            {
                // The pod completed and its sandbox was stopped: nothing to restart.
                let succeeded =
                    lifecycle::completion(&spec.containers, &policy, &latest).unwrap_or(false);
                return (Stage::Completed { succeeded }, obs);
            }
            for c in obs.containers.iter().filter(|c| c.is_running()) {
                let _ = self.kubelet.cri.stop_container(&c.id, 10).await;
            }
            if sandbox_running_before {
                self.kubelet.events.pod(
                    pod,
                    None,
                    false,
                    "SandboxChanged",
                    "Pod sandbox changed, it will be killed and re-created.",
                );
            }
            match self
                .create_sandbox(pod, obs.all_sandboxes.len() as u32)
                .await
            {
                Ok(()) => match self.observe().await {
                    Ok(o) => obs = o,
                    Err(e) => {
                        tracing::warn!(error = %e, "cannot read the new sandbox");
                        *next = Duration::from_secs(1);
                        return (Stage::Preparing, obs);
                    }
                },
                Err(message) => {
                    self.kubelet
                        .events
                        .pod(pod, None, true, "FailedCreatePodSandBox", &message);
                    *next = Duration::from_secs(2);
                    return (Stage::Preparing, obs);
                }
            }
            // Volumes that depend on the pod IP (downward API) are refreshed with it.
            self.volumes_refreshed = None;
            let _ = self
                .ensure_volumes(pod, obs.pod_ip.as_deref().unwrap_or(""))
                .await;
        }
        let Some(sandbox) = obs.sandbox.clone() else {
            return (Stage::Preparing, obs);
        };
        let pod_ip = if host_network(pod) {
            self.kubelet.config.node_ip.to_string()
        } else {
            obs.pod_ip.clone().unwrap_or_default()
        };
        let current: Vec<Observed> = obs
            .containers
            .iter()
            .filter(|c| c.sandbox_id == sandbox.id)
            .cloned()
            .collect();
        let latest = lifecycle::latest_by_name(&current);
        let max_attempt: HashMap<String, u32> =
            obs.containers.iter().fold(HashMap::new(), |mut m, c| {
                let e = m.entry(c.name.clone()).or_insert(0);
                *e = (*e).max(c.attempt);
                m
            });
        // Init containers, in order.
        let init_backoff = self.backoff.entry("init".into()).or_default();
        match lifecycle::decide_init(&spec, &latest, init_backoff, now) {
            InitStep::Failed { .. } => return (Stage::Completed { succeeded: false }, obs),
            InitStep::Act { index, decision } => {
                let c = spec.init_containers.as_ref().expect("index from the list")[index].clone();
                let attempt = match decision {
                    Decision::Start { attempt } => {
                        Some(attempt.max(max_attempt.get(&c.name).map_or(0, |a| a + 1)))
                    }
                    _ => None,
                };
                self.act(pod, &c, decision, attempt, &sandbox, &pod_ip, next)
                    .await;
                return (
                    Stage::Initializing { next: index },
                    self.observe().await.unwrap_or(obs),
                );
            }
            InitStep::Done => {}
        }
        // Regular containers.
        let mut acted = false;
        for c in &spec.containers {
            let l = latest.get(c.name.as_str()).copied();
            let backoff = self.backoff.entry(c.name.clone()).or_default();
            let decision = lifecycle::decide_container(&policy, l, backoff, now);
            let attempt = match decision {
                Decision::Start { attempt } => {
                    Some(attempt.max(max_attempt.get(&c.name).map_or(0, |a| a + 1)))
                }
                _ => None,
            };
            if matches!(decision, Decision::Start { .. }) {
                acted = true;
            }
            self.act(pod, c, decision, attempt, &sandbox, &pod_ip, next)
                .await;
            if let Some(o) = l.filter(|o| o.is_running()) {
                self.probe(pod, c, o, &pod_ip, now, next).await;
            }
        }
        if acted {
            if let Ok(o) = self.observe().await {
                obs = o;
            }
        }
        let current: Vec<Observed> = obs
            .containers
            .iter()
            .filter(|c| c.sandbox_id == sandbox.id)
            .cloned()
            .collect();
        let latest = lifecycle::latest_by_name(&current);
        match lifecycle::completion(&spec.containers, &policy, &latest) {
            Some(succeeded) => (Stage::Completed { succeeded }, obs),
            None => (Stage::Running, obs),
        }
    }

    /// Carries out a decision about one container.
    #[allow(clippy::too_many_arguments)]
    async fn act(
        &mut self,
        pod: &Pod,
        c: &Container,
        decision: Decision,
        attempt: Option<u32>,
        sandbox: &cri::PodSandbox,
        pod_ip: &str,
        next: &mut Duration,
    ) {
        match decision {
            Decision::Keep => {
                self.waiting.remove(&c.name);
            }
            Decision::BackOff { until, delay } => {
                let message = format!(
                    "back-off {} restarting failed container={} pod={}_{}({})",
                    format_delay(delay),
                    c.name,
                    pod_name(pod),
                    pod_ns(pod),
                    self.uid
                );
                if self
                    .waiting
                    .get(&c.name)
                    .is_none_or(|(r, m)| r != "CrashLoopBackOff" || *m != message)
                {
                    self.kubelet.events.pod(
                        pod,
                        Some(&c.name),
                        true,
                        "BackOff",
                        "Back-off restarting failed container",
                    );
                }
                self.waiting
                    .insert(c.name.clone(), ("CrashLoopBackOff".into(), message));
                *next = (*next).min(
                    until.saturating_duration_since(Instant::now()) + Duration::from_millis(50),
                );
            }
            Decision::Start { .. } => {
                if let Some(at) = self.retry_at.get(&c.name) {
                    if *at > Instant::now() {
                        *next = (*next).min(at.saturating_duration_since(Instant::now()));
                        return;
                    }
                }
                let attempt = attempt.unwrap_or(0);
                match self.start_container(pod, c, attempt, sandbox, pod_ip).await {
                    Ok(()) => {
                        self.waiting.remove(&c.name);
                        self.retry_at.remove(&c.name);
                        *next = (*next).min(Duration::from_secs(1));
                    }
                    Err((reason, message, retry)) => {
                        self.waiting.insert(c.name.clone(), (reason, message));
                        self.retry_at.insert(c.name.clone(), Instant::now() + retry);
                        *next = (*next).min(Duration::from_secs(1));
                    }
                }
            }
        }
    }

    /// Runs the due probes of a running container; kills it when liveness or startup fails.
    async fn probe(
        &mut self,
        pod: &Pod,
        c: &Container,
        o: &Observed,
        pod_ip: &str,
        now: Instant,
        next: &mut Duration,
    ) {
        let started_at = match o.state {
            RunState::Running { started_at } => started_at,
            _ => return,
        };
        let age = Duration::from_nanos(
            (Timestamp::now().as_nanosecond() as i64 - started_at).max(0) as u64,
        );
        let started_instant = now.checked_sub(age).unwrap_or(now);
        let probes = self
            .probes
            .entry(c.name.clone())
            .or_insert_with(|| ContainerProbes::new(c, &o.id, started_instant));
        if probes.container_id != o.id {
            *probes = ContainerProbes::new(c, &o.id, started_instant);
        }
        let (verdict, unhealthy) = probes.run_due(&self.kubelet.cri, c, pod_ip, now).await;
        for message in unhealthy {
            self.kubelet
                .events
                .pod(pod, Some(&c.name), true, "Unhealthy", &message);
        }
        if let Some(due) = probes.next_due() {
            *next = (*next)
                .min(due.saturating_duration_since(Instant::now()) + Duration::from_millis(10));
        }
        if let Some(why) = verdict.kill {
            self.kubelet
                .events
                .pod(pod, Some(&c.name), false, "Killing", &why);
            let grace = grace_period(pod);
            if let Err(e) = self.kubelet.cri.stop_container(&o.id, grace).await {
                tracing::warn!(error = %e, "cannot kill an unhealthy container");
            }
            self.probes.remove(&c.name);
            *next = Duration::from_millis(10);
        }
    }

    async fn ensure_volumes(&mut self, pod: &Pod, pod_ip: &str) -> Result<(), String> {
        let fresh = self
            .volumes_refreshed
            .is_some_and(|t| t.elapsed() < Duration::from_secs(5));
        if fresh && self.volumes.is_some() {
            return Ok(());
        }
        let pod_dir = self.pod_dir();
        let host_ip = self.kubelet.config.node_ip.to_string();
        let ctx = volumes::VolumeContext {
            client: &self.kubelet.client,
            pod,
            pod_dir: &pod_dir,
            host_ip: &host_ip,
            pod_ip,
            node_allocatable_cpu_millis: self.kubelet.machine.cpus as i64 * 1000,
            node_allocatable_memory: self.kubelet.machine.memory_bytes as i64,
            tokens: &self.kubelet.tokens,
        };
        match volumes::prepare(&ctx).await {
            Ok(v) => {
                self.volumes = Some(v);
                self.volumes_refreshed = Some(Instant::now());
                Ok(())
            }
            Err(e) => Err(format!("MountVolume.SetUp failed for {e}")),
        }
    }

    async fn create_sandbox(&mut self, pod: &Pod, attempt: u32) -> Result<(), String> {
        let config = self.kubelet.sandbox_config(pod, attempt);
        std::fs::create_dir_all(self.log_dir(pod))
            .map_err(|e| format!("cannot create the log directory: {e}"))?;
        match self.kubelet.cri.run_pod_sandbox(config).await {
            Ok(id) => {
                tracing::info!(pod = %pod_name(pod), sandbox = %id, "sandbox running");
                Ok(())
            }
            Err(e) => Err(format!("Failed to create pod sandbox: {e}")),
        }
    }

    /// Pulls (per policy), creates and starts one container. Err: (waiting reason, message,
    /// retry after).
    async fn start_container(
        &mut self,
        pod: &Pod,
        c: &Container,
        attempt: u32,
        sandbox: &cri::PodSandbox,
        pod_ip: &str,
    ) -> Result<(), (String, String, Duration)> {
        let image = self.ensure_image(pod, c).await?;
        let config_error = |m: String| {
            (
                "CreateContainerConfigError".to_string(),
                m,
                Duration::from_secs(2),
            )
        };
        let mut sources = env::Sources::new(self.kubelet.client.clone(), &pod_ns(pod));
        let services = self.services(pod).await;
        let host_ip = self.kubelet.config.node_ip.to_string();
        let facts = env::PodFacts {
            pod,
            host_ip: &host_ip,
            pod_ip,
            node_cpu_millis: self.kubelet.machine.cpus as i64 * 1000,
            node_memory: self.kubelet.machine.memory_bytes as i64,
        };
        let envs = match env::container_env(&mut sources, &facts, c, services).await {
            Ok(e) => e,
            Err(m) => {
                self.kubelet
                    .events
                    .pod(pod, Some(&c.name), true, "Failed", &format!("Error: {m}"));
                return Err(config_error(m));
            }
        };
        let mounts = self.mounts(pod, c, pod_ip).map_err(config_error)?;
        let config = self
            .kubelet
            .container_config(pod, c, attempt, &image, envs, mounts);
        let sandbox_config = self
            .kubelet
            .sandbox_config(pod, sandbox.metadata.as_ref().map_or(0, |m| m.attempt));
        let cri = &self.kubelet.cri;
        let id = match cri
            .create_container(&sandbox.id, config, sandbox_config)
            .await
        {
            Ok(id) => id,
            Err(e) => {
                let m = e.to_string();
                self.kubelet
                    .events
                    .pod(pod, Some(&c.name), true, "Failed", &format!("Error: {m}"));
                return Err(("CreateContainerError".into(), m, Duration::from_secs(5)));
            }
        };
        self.kubelet.events.pod(
            pod,
            Some(&c.name),
            false,
            "Created",
            &format!("Created container {}", c.name),
        );
        if let Err(e) = cri.start_container(&id).await {
            let m = e.to_string();
            self.kubelet
                .events
                .pod(pod, Some(&c.name), true, "Failed", &format!("Error: {m}"));
            return Err(("RunContainerError".into(), m, Duration::from_secs(5)));
        }
        self.kubelet.events.pod(
            pod,
            Some(&c.name),
            false,
            "Started",
            &format!("Started container {}", c.name),
        );
        self.garbage_collect(&c.name, &id).await;
        Ok(())
    }

    /// Keeps the two latest attempts of a container (for `logs --previous`), removes older ones.
    async fn garbage_collect(&self, name: &str, keep: &str) {
        let Ok(all) = self.kubelet.cri.list_containers(Some(&self.uid)).await else {
            return;
        };
        let mut same: Vec<_> = all
            .into_iter()
            .filter(|c| c.metadata.as_ref().is_some_and(|m| m.name == name) && c.id != keep)
            .filter(|c| c.state == cri::ContainerState::ContainerExited as i32)
            .collect();
        same.sort_by_key(|c| std::cmp::Reverse(c.metadata.as_ref().map_or(0, |m| m.attempt)));
        for old in same.into_iter().skip(1) {
            let _ = self.kubelet.cri.remove_container(&old.id).await;
        }
    }

    /// The Services whose variables go into containers.
    async fn services(&self, pod: &Pod) -> Vec<(String, String)> {
        let links = pod
            .spec
            .as_ref()
            .and_then(|s| s.enable_service_links)
            .unwrap_or(true);
        let ns = pod_ns(pod);
        let mut services: Vec<Service> = Vec::new();
        let default: Api<Service> = Api::namespaced(self.kubelet.client.clone(), "default");
        if let Ok(Some(s)) = default.get_opt("kubernetes").await {
            services.push(s);
        }
        if links {
            let api: Api<Service> = Api::namespaced(self.kubelet.client.clone(), &ns);
            if let Ok(list) = api.list(&ListParams::default()).await {
                services.extend(list.items.into_iter().filter(|s| {
                    !(ns == "default" && s.metadata.name.as_deref() == Some("kubernetes"))
                }));
            }
        }
        env::service_env(&services, &ns, links)
    }

    /// The container's mounts: its volumeMounts (with subPath), /etc/hosts and the termination
    /// message file.
    fn mounts(&self, pod: &Pod, c: &Container, pod_ip: &str) -> Result<Vec<cri::Mount>, String> {
        let volumes = self.volumes.clone().unwrap_or_default();
        let mut out = Vec::new();
        let mut has_hosts = false;
        for m in c.volume_mounts.iter().flatten() {
            let base = volumes
                .get(&m.name)
                .ok_or_else(|| format!("volume {:?} not found", m.name))?;
            let mut host = base.clone();
            if let Some(sub) = m.sub_path.as_deref().filter(|s| !s.is_empty()) {
                if sub.split('/').any(|p| p == "..") || sub.starts_with('/') {
                    return Err(format!("invalid subPath {sub:?}"));
                }
                host = base.join(sub);
                if std::fs::symlink_metadata(&host).is_err() {
                    std::fs::create_dir_all(&host)
                        .map_err(|e| format!("cannot create subPath {sub:?}: {e}"))?;
                }
                // A subPath of a configMap/secret file resolves its ..data link now (upstream too).
                host = std::fs::canonicalize(&host).unwrap_or(host);
            }
            has_hosts |= m.mount_path == "/etc/hosts";
            out.push(cri::Mount {
                container_path: m.mount_path.clone(),
                host_path: host.to_string_lossy().into_owned(),
                readonly: m.read_only.unwrap_or(false),
                propagation: match m.mount_propagation.as_deref() {
                    Some("HostToContainer") => {
                        cri::MountPropagation::PropagationHostToContainer as i32
                    }
                    Some("Bidirectional") => cri::MountPropagation::PropagationBidirectional as i32,
                    _ => cri::MountPropagation::PropagationPrivate as i32,
                },
                ..Default::default()
            });
        }
        let pod_dir = self.pod_dir();
        if !has_hosts && !host_network(pod) {
            let hosts = pod_dir.join("etc-hosts");
            let hostname = pod
                .spec
                .as_ref()
                .and_then(|s| s.hostname.clone())
                .unwrap_or_else(|| pod_name(pod));
            let mut text = String::from("# Kubernetes-managed hosts file.\n127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\nfe00::0\tip6-localnet\nfe00::0\tip6-mcastprefix\nfe00::1\tip6-allnodes\nfe00::2\tip6-allrouters\n");
            if !pod_ip.is_empty() {
                text.push_str(&format!("{pod_ip}\t{hostname}\n"));
            }
            for alias in pod
                .spec
                .iter()
                .flat_map(|s| s.host_aliases.iter().flatten())
            {
                text.push_str(&format!(
                    "{}\t{}\n",
                    alias.ip,
                    alias.hostnames.clone().unwrap_or_default().join("\t")
                ));
            }
            std::fs::create_dir_all(&pod_dir)
                .map_err(|e| format!("cannot create the pod directory: {e}"))?;
            std::fs::write(&hosts, text).map_err(|e| format!("cannot write /etc/hosts: {e}"))?;
            out.push(cri::Mount {
                container_path: "/etc/hosts".into(),
                host_path: hosts.to_string_lossy().into_owned(),
                ..Default::default()
            });
        }
        let path = c
            .termination_message_path
            .clone()
            .unwrap_or_else(|| "/dev/termination-log".into());
        let file = pod_dir
            .join("containers")
            .join(&c.name)
            .join("termination-log");
        if let Some(parent) = file.parent() {
            std::fs::create_dir_all(parent)
                .map_err(|e| format!("cannot create {}: {e}", parent.display()))?;
        }
        std::fs::write(&file, b"")
            .map_err(|e| format!("cannot create the termination log: {e}"))?;
        use std::os::unix::fs::PermissionsExt;
        let _ = std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o666));
        out.push(cri::Mount {
            container_path: path,
            host_path: file.to_string_lossy().into_owned(),
            ..Default::default()
        });
        Ok(out)
    }

    /// The image to run, pulled per imagePullPolicy. Err: (ErrImagePull | ImagePullBackOff |
    /// ErrImageNeverPull, message, retry).
    async fn ensure_image(
        &mut self,
        pod: &Pod,
        c: &Container,
    ) -> Result<String, (String, String, Duration)> {
        let image = c.image.clone().unwrap_or_default();
        let policy = c
            .image_pull_policy
            .clone()
            .unwrap_or_else(|| default_pull_policy(&image).into());
        let cri = &self.kubelet.cri;
        let present = match cri.image_status(&image).await {
            Ok(i) => i,
            Err(e) => return Err(("ErrImagePull".into(), e.to_string(), Duration::from_secs(2))),
        };
        let name = c.name.as_str();
        match (policy.as_str(), present) {
            ("Never", Some(_)) | ("IfNotPresent", Some(_)) => {
                if self
                    .waiting
                    .get(name)
                    .is_none_or(|(r, _)| r.contains("Image"))
                {
                    self.kubelet.events.pod(
                        pod,
                        Some(name),
                        false,
                        "Pulled",
                        &format!("Container image \"{image}\" already present on machine"),
                    );
                }
                return Ok(image);
            }
            ("Never", None) => {
                let m =
                    format!("Container image \"{image}\" is not present with pull policy of Never");
                self.kubelet
                    .events
                    .pod(pod, Some(name), true, "ErrImageNeverPull", &m);
                return Err(("ErrImageNeverPull".into(), m, Duration::from_secs(10)));
            }
            _ => {}
        }
        let now = Instant::now();
        if let Some(until) = self.pulls.blocked(&image, now) {
            let m = format!("Back-off pulling image \"{image}\"");
            self.kubelet
                .events
                .pod(pod, Some(name), false, "BackOff", &m);
            return Err((
                "ImagePullBackOff".into(),
                m,
                until.saturating_duration_since(now),
            ));
        }
        self.kubelet.events.pod(
            pod,
            Some(name),
            false,
            "Pulling",
            &format!("Pulling image \"{image}\""),
        );
        let started = Instant::now();
        match cri.pull_image(&image).await {
            Ok(_) => {
                self.pulls.succeeded(&image);
                self.kubelet.events.pod(
                    pod,
                    Some(name),
                    false,
                    "Pulled",
                    &format!(
                        "Successfully pulled image \"{image}\" in {:?}",
                        started.elapsed()
                    ),
                );
                Ok(image)
            }
            Err(e) => {
                // Always: a dev cluster without a registry still runs what is on the node.
                if policy == "Always" && cri.image_status(&image).await.ok().flatten().is_some() {
                    self.kubelet.events.pod(pod, Some(name), true, "Failed", &format!("Failed to pull image \"{image}\": {}; using the image present on the node", e.status.message()));
                    return Ok(image);
                }
                let delay = self.pulls.failed(&image, now);
                let m = format!("Failed to pull image \"{image}\": {}", e.status.message());
                self.kubelet.events.pod(pod, Some(name), true, "Failed", &m);
                self.kubelet
                    .events
                    .pod(pod, Some(name), true, "Failed", "Error: ErrImagePull");
                Err(("ErrImagePull".into(), m, delay.min(Duration::from_secs(1))))
            }
        }
    }

    /// Graceful termination: preStop hooks, the stop signal, SIGKILL after the grace period,
    /// the sandbox stopped, volumes released, then the grace-0 DELETE that removes the pod.
    async fn terminate(&mut self, pod: &Pod) {
        let grace = grace_period(pod);
        let deadline = Instant::now() + Duration::from_secs(grace.max(0) as u64);
        let obs = self.observe().await.ok();
        let spec = pod.spec.clone().unwrap_or_default();
        if let Some(obs) = &obs {
            let mut stops = Vec::new();
            for o in obs.containers.iter().filter(|o| o.is_running()) {
                let container = spec
                    .containers
                    .iter()
                    .chain(spec.init_containers.iter().flatten())
                    .find(|c| c.name == o.name)
                    .cloned();
                self.kubelet.events.pod(
                    pod,
                    Some(&o.name),
                    false,
                    "Killing",
                    &format!("Stopping container {}", o.name),
                );
                let kubelet = self.kubelet.clone();
                let id = o.id.clone();
                let pod_ip = obs.pod_ip.clone().unwrap_or_default();
                stops.push(async move {
                    if let Some(hook) = container.as_ref().and_then(|c| c.lifecycle.as_ref()).and_then(|l| l.pre_stop.clone()) {
                        let left = deadline.saturating_duration_since(Instant::now());
                        let run = async {
                            if let Some(exec) = &hook.exec {
                                let _ = kubelet.cri.exec_sync(&id, exec.command.clone().unwrap_or_default(), left.as_secs().max(1) as i64).await;
                            } else if let Some(h) = &hook.http_get {
                                if let Ok(port) = match &h.port {
                                    k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::Int(p) => u16::try_from(*p).map_err(|_| ()),
                                    _ => Err(()),
                                } {
                                    let host = h.host.clone().unwrap_or(pod_ip.clone());
                                    let _ = super::probes::http_get(&host, port, h.path.as_deref().unwrap_or("/"), &[]).await;
                                }
                            } else if let Some(s) = &hook.sleep {
                                tokio::time::sleep(Duration::from_secs(s.seconds.max(0) as u64)).await;
                            }
                        };
                        let _ = tokio::time::timeout(left, run).await;
                    }
                    let left = deadline.saturating_duration_since(Instant::now()).as_secs() as i64;
                    if let Err(e) = kubelet.cri.stop_container(&id, left.max(0)).await {
                        tracing::warn!(error = %e, "cannot stop a container");
                    }
                });
            }
            futures::future::join_all(stops).await;
            // Report the terminated containers once more before the pod goes.
            if let Ok(after) = self.observe().await {
                let latest = lifecycle::latest_by_name(&after.containers);
                let succeeded = spec
                    .containers
                    .iter()
                    .all(|c| latest.get(c.name.as_str()).and_then(|o| o.exit_code()) == Some(0));
                self.waiting.clear();
                self.probes.clear();
                self.report(pod, &Stage::Completed { succeeded }, &after)
                    .await;
            }
        }
        self.release(Some(pod)).await;
        let api: Api<Pod> = Api::namespaced(self.kubelet.client.clone(), &pod_ns(pod));
        let params = DeleteParams {
            grace_period_seconds: Some(0),
            preconditions: Some(Preconditions {
                uid: Some(self.uid.clone()),
                resource_version: None,
            }),
            ..DeleteParams::default()
        };
        match api.delete(&pod_name(pod), &params).await {
            Ok(_) => self.finalized = true,
            Err(kube::Error::Api(e)) if e.code == 404 || e.code == 409 => self.finalized = true,
            Err(e) => {
                tracing::warn!(pod = %pod_name(pod), error = %e, "cannot confirm the pod's deletion")
            }
        }
    }

    /// Stops and removes everything the pod has on the node (idempotent).
    async fn release(&mut self, pod: Option<&Pod>) {
        let cri = &self.kubelet.cri;
        if let Ok(containers) = cri.list_containers(Some(&self.uid)).await {
            for c in containers {
                let _ = cri.stop_container(&c.id, 0).await;
                let _ = cri.remove_container(&c.id).await;
            }
        }
        if let Ok(sandboxes) = cri.list_pod_sandboxes(Some(&self.uid)).await {
            for s in sandboxes {
                if let Err(e) = cri.stop_pod_sandbox(&s.id).await {
                    tracing::warn!(error = %e, "cannot stop a sandbox");
                }
                let _ = cri.remove_pod_sandbox(&s.id).await;
                if let Some(m) = &s.metadata {
                    let _ = std::fs::remove_dir_all(self.kubelet.log_dir(
                        &m.namespace,
                        &m.name,
                        &self.uid,
                    ));
                }
            }
        }
        if let Some(pod) = pod {
            let _ = std::fs::remove_dir_all(self.log_dir(pod));
        }
        volumes::tear_down(&self.pod_dir());
    }

    /// Writes the pod's status when it changed.
    async fn report(&mut self, pod: &Pod, stage: &Stage, obs: &Observation) {
        let host_ip = self.kubelet.config.node_ip.to_string();
        let pod_ip = if host_network(pod) {
            Some(host_ip.clone())
        } else {
            obs.pod_ip.clone()
        };
        let input = status::Input {
            pod,
            stage,
            containers: &obs.containers,
            sandbox_ready: obs.sandbox.is_some(),
            pod_ip: pod_ip.as_deref(),
            host_ip: &host_ip,
            waiting: &self.waiting,
            probes: &self.probes,
            termination_messages: &|name: &str| self.termination_message(name),
        };
        let new = status::pod_status(&input);
        let body = json!({ "status": new });
        if self.last_status.as_ref() == Some(&body) {
            return;
        }
        let api: Api<Pod> = Api::namespaced(self.kubelet.client.clone(), &pod_ns(pod));
        match api
            .patch_status(
                &pod_name(pod),
                &PatchParams::default(),
                &Patch::Merge(&body),
            )
            .await
        {
            Ok(_) => self.last_status = Some(body),
            Err(kube::Error::Api(e)) if e.code == 404 => {}
            Err(e) => tracing::warn!(pod = %pod_name(pod), error = %e, "cannot report pod status"),
        }
    }

    fn termination_message(&self, name: &str) -> Option<String> {
        let file = self
            .pod_dir()
            .join("containers")
            .join(name)
            .join("termination-log");
        std::fs::read_to_string(file).ok().filter(|s| !s.is_empty())
    }
}

fn format_delay(d: Duration) -> String {
    let s = d.as_secs();
    if s >= 60 {
        format!("{}m{}s", s / 60, s % 60)
    } else {
        format!("{s}s")
    }
}

/// The grace period of a deletion: the pod's deletionGracePeriodSeconds, else its spec's
/// terminationGracePeriodSeconds, else 30 s.
pub fn grace_period(pod: &Pod) -> i64 {
    pod.metadata
        .deletion_grace_period_seconds
        .or_else(|| {
            pod.spec
                .as_ref()
                .and_then(|s| s.termination_grace_period_seconds)
        })
        .unwrap_or(30)
}

/// Upstream's default imagePullPolicy: Always for `:latest` or no tag, else IfNotPresent.
pub fn default_pull_policy(image: &str) -> &'static str {
    let without_digest = image.split('@').next().unwrap_or(image);
    let last = without_digest.rsplit('/').next().unwrap_or(without_digest);
    match last.split_once(':') {
        Some((_, "latest")) | None if !image.contains('@') => "Always",
        _ => "IfNotPresent",
    }
}

/// The runtime's container status as the lifecycle sees it.
fn observed(c: &cri::Container, st: &cri::ContainerStatus) -> Observed {
    let state = match cri::ContainerState::try_from(st.state) {
        Ok(cri::ContainerState::ContainerCreated) => RunState::Created,
        Ok(cri::ContainerState::ContainerRunning) => RunState::Running {
            started_at: st.started_at,
        },
        Ok(cri::ContainerState::ContainerExited) => RunState::Exited {
            exit_code: st.exit_code,
            reason: st.reason.clone(),
            message: st.message.clone(),
            started_at: st.started_at,
            finished_at: st.finished_at,
        },
        _ => RunState::Unknown,
    };
    Observed {
        id: c.id.clone(),
        sandbox_id: c.pod_sandbox_id.clone(),
        name: c
            .labels
            .get(CONTAINER_NAME_LABEL)
            .cloned()
            .or_else(|| c.metadata.as_ref().map(|m| m.name.clone()))
            .unwrap_or_default(),
        attempt: c.metadata.as_ref().map_or(0, |m| m.attempt),
        state,
        image: st
            .image
            .as_ref()
            .map(|i| i.image.clone())
            .unwrap_or_default(),
        image_ref: st.image_ref.clone(),
        created_at: c.created_at,
    }
}

/// Labels the kubelet puts on a pod's sandbox.
pub fn sandbox_labels(pod: &Pod) -> HashMap<String, String> {
    let mut labels: HashMap<String, String> = pod
        .metadata
        .labels
        .clone()
        .unwrap_or_default()
        .into_iter()
        .collect();
    labels.insert(POD_NAME_LABEL.into(), pod_name(pod));
    labels.insert(POD_NAMESPACE_LABEL.into(), pod_ns(pod));
    labels.insert(
        POD_UID_LABEL.into(),
        pod.metadata.uid.clone().unwrap_or_default(),
    );
    labels
}

/// Labels the kubelet puts on a container.
pub fn container_labels(pod: &Pod, name: &str) -> HashMap<String, String> {
    HashMap::from([
        (POD_NAME_LABEL.to_string(), pod_name(pod)),
        (POD_NAMESPACE_LABEL.into(), pod_ns(pod)),
        (
            POD_UID_LABEL.into(),
            pod.metadata.uid.clone().unwrap_or_default(),
        ),
        (CONTAINER_NAME_LABEL.into(), name.to_string()),
    ])
}

/// The container's resources as cgroup settings.
pub fn linux_resources(c: &Container, oom_score_adj: i64) -> cri::LinuxContainerResources {
    let res = c.resources.clone().unwrap_or_default();
    let get =
        |m: &Option<BTreeMap<String, k8s_openapi::apimachinery::pkg::api::resource::Quantity>>,
         k: &str| { m.as_ref().and_then(|m| m.get(k)).map(|q| q.0.clone()) };
    let cpu_request = get(&res.requests, "cpu")
        .or_else(|| get(&res.limits, "cpu"))
        .and_then(|q| quantity::cpu_millis(&q));
    let cpu_limit = get(&res.limits, "cpu").and_then(|q| quantity::cpu_millis(&q));
    let memory_limit = get(&res.limits, "memory").and_then(|q| quantity::integer(&q));
    cri::LinuxContainerResources {
        cpu_period: if cpu_limit.is_some() { 100_000 } else { 0 },
        cpu_quota: cpu_limit.map(|m| (m * 100).max(1000)).unwrap_or(0),
        cpu_shares: cpu_request.map(|m| (m * 1024 / 1000).max(2)).unwrap_or(2),
        memory_limit_in_bytes: memory_limit.unwrap_or(0),
        oom_score_adj,
        ..Default::default()
    }
}

/// The TERMINATION_MESSAGE_PATH annotation value.
pub fn termination_annotation(c: &Container) -> (String, String) {
    (
        TERMINATION_MESSAGE_PATH.to_string(),
        c.termination_message_path
            .clone()
            .unwrap_or_else(|| "/dev/termination-log".into()),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pull_policy_defaults() {
        assert_eq!(default_pull_policy("nginx"), "Always");
        assert_eq!(default_pull_policy("nginx:latest"), "Always");
        assert_eq!(
            default_pull_policy("kubelab.local:5000/busybox:1"),
            "IfNotPresent"
        );
        assert_eq!(default_pull_policy("localhost:5000/busybox"), "Always");
        assert_eq!(default_pull_policy("busybox@sha256:abc"), "IfNotPresent");
    }
}
