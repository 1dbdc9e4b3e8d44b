//! Startup, liveness and readiness probes of one running container: exec (CRI ExecSync),
//! httpGet and tcpSocket, with initial delays, periods, timeouts and success/failure
//! thresholds. Results: `started`, `ready`, and whether the container must be killed.

use std::time::Duration;

use k8s_openapi::api::core::v1::{Container, Probe};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use tokio::time::Instant;

use super::cri::Cri;

/// One probe's schedule and streaks.
#[derive(Debug)]
struct Prober {
    probe: Probe,
    next_due: Instant,
    successes: i32,
    failures: i32,
}

impl Prober {
    fn new(probe: Probe, started: Instant) -> Prober {
        let delay = Duration::from_secs(probe.initial_delay_seconds.unwrap_or(0).max(0) as u64);
        Prober {
            probe,
            next_due: started + delay,
            successes: 0,
            failures: 0,
        }
    }

    fn period(&self) -> Duration {
        Duration::from_secs(self.probe.period_seconds.unwrap_or(10).max(1) as u64)
    }

    fn success_threshold(&self) -> i32 {
        self.probe.success_threshold.unwrap_or(1).max(1)
    }

    fn failure_threshold(&self) -> i32 {
        self.probe.failure_threshold.unwrap_or(3).max(1)
    }

    fn record(&mut self, ok: bool, now: Instant) {
        if ok {
            self.successes += 1;
            self.failures = 0;
        } else {
            self.failures += 1;
            self.successes = 0;
        }
        self.next_due = now + self.period();
    }
}

/// What the probes of a container concluded.
#[derive(Debug, Default, PartialEq)]
pub struct Verdict {
    /// The container must be killed and restarted, and why.
    pub kill: Option<String>,
}

/// The probes of one container instance (a new container id starts over).
#[derive(Debug)]
pub struct ContainerProbes {
    pub container_id: String,
    startup: Option<Prober>,
    liveness: Option<Prober>,
    readiness: Option<Prober>,
    pub started: bool,
    pub ready: bool,
}

impl ContainerProbes {
    pub fn new(container: &Container, container_id: &str, started_at: Instant) -> ContainerProbes {
        let startup = container
            .startup_probe
            .clone()
            .map(|p| Prober::new(p, started_at));
        ContainerProbes {
            container_id: container_id.to_string(),
            started: startup.is_none(),
            ready: container.readiness_probe.is_none() && container.startup_probe.is_none(),
            startup,
            liveness: container
                .liveness_probe
                .clone()
                .map(|p| Prober::new(p, started_at)),
            readiness: container
                .readiness_probe
                .clone()
                .map(|p| Prober::new(p, started_at)),
        }
    }

    /// When a probe is next due.
    pub fn next_due(&self) -> Option<Instant> {
        let active = if self.started {
            vec![&self.liveness, &self.readiness]
        } else {
            vec![&self.startup]
        };
        active.into_iter().flatten().map(|p| p.next_due).min()
    }

    /// Runs the probes that are due; returns (verdict, events as (warning, reason, message)).
    pub async fn run_due(
        &mut self,
        cri: &Cri,
        container: &Container,
        pod_ip: &str,
        now: Instant,
    ) -> (Verdict, Vec<String>) {
        let mut verdict = Verdict::default();
        let mut unhealthy = Vec::new();
        if !self.started {
            if let Some(p) = self.startup.as_mut().filter(|p| p.next_due <= now) {
                let result = probe(cri, &p.probe, container, &self.container_id, pod_ip).await;
                p.record(result.is_ok(), now);
                match result {
                    Ok(()) if p.successes >= p.success_threshold() => {
                        self.started = true;
                        self.ready = self.readiness.is_none();
                        // Liveness and readiness count from now on.
                        for q in [&mut self.liveness, &mut self.readiness]
                            .into_iter()
                            .flatten()
                        {
                            q.next_due = q.next_due.max(now);
                        }
                    }
                    Ok(()) => {}
                    Err(why) => {
                        unhealthy.push(format!("Startup probe failed: {why}"));
                        if p.failures >= p.failure_threshold() {
                            verdict.kill = Some(format!(
                                "Container {} failed startup probe, will be restarted",
                                container.name
                            ));
                        }
                    }
                }
            }
            return (verdict, unhealthy);
        }
        if let Some(p) = self.liveness.as_mut().filter(|p| p.next_due <= now) {
            let result = probe(cri, &p.probe, container, &self.container_id, pod_ip).await;
            p.record(result.is_ok(), now);
            if let Err(why) = result {
                unhealthy.push(format!("Liveness probe failed: {why}"));
                if p.failures >= p.failure_threshold() {
                    verdict.kill = Some(format!(
                        "Container {} failed liveness probe, will be restarted",
                        container.name
                    ));
                }
            }
        }
        if let Some(p) = self.readiness.as_mut().filter(|p| p.next_due <= now) {
            let result = probe(cri, &p.probe, container, &self.container_id, pod_ip).await;
            p.record(result.is_ok(), now);
            match result {
                Ok(()) if p.successes >= p.success_threshold() => self.ready = true,
                Ok(()) => {}
                Err(why) => {
                    unhealthy.push(format!("Readiness probe failed: {why}"));
                    if p.failures >= p.failure_threshold() {
                        self.ready = false;
                    }
                }
            }
        }
        (verdict, unhealthy)
    }
}

fn resolve_port(port: &IntOrString, container: &Container) -> Result<u16, String> {
    match port {
        IntOrString::Int(p) => u16::try_from(*p).map_err(|_| format!("invalid port {p}")),
        IntOrString::String(name) => container
            .ports
            .iter()
            .flatten()
            .find(|p| p.name.as_deref() == Some(name.as_str()))
            .and_then(|p| u16::try_from(p.container_port).ok())
            .ok_or_else(|| format!("port {name:?} not found in the container's ports")),
    }
}

/// Runs a probe once: Ok, or why it failed.
pub async fn probe(
    cri: &Cri,
    probe: &Probe,
    container: &Container,
    container_id: &str,
    pod_ip: &str,
) -> Result<(), String> {
    let timeout = Duration::from_secs(probe.timeout_seconds.unwrap_or(1).max(1) as u64);
    if let Some(exec) = &probe.exec {
        let cmd = exec.command.clone().unwrap_or_default();
        return match cri
            .exec_sync(container_id, cmd, timeout.as_secs() as i64)
            .await
        {
            Ok(r) if r.exit_code == 0 => Ok(()),
            Ok(r) => {
                let out = String::from_utf8_lossy(&r.stdout).trim().to_string();
                Err(format!(
                    "command exited with {}{}",
                    r.exit_code,
                    if out.is_empty() {
                        String::new()
                    } else {
                        format!(": {out}")
                    }
                ))
            }
            Err(e) => Err(e.to_string()),
        };
    }
    if let Some(tcp) = &probe.tcp_socket {
        let port = resolve_port(&tcp.port, container)?;
        let host = tcp.host.clone().unwrap_or_else(|| pod_ip.to_string());
        return match tokio::time::timeout(
            timeout,
            tokio::net::TcpStream::connect((host.as_str(), port)),
        )
        .await
        {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(format!("dial tcp {host}:{port}: {e}")),
            Err(_) => Err(format!("dial tcp {host}:{port}: i/o timeout")),
        };
    }
    if let Some(http) = &probe.http_get {
        let port = resolve_port(&http.port, container)?;
        let host = http.host.clone().unwrap_or_else(|| pod_ip.to_string());
        let path = http.path.clone().unwrap_or_else(|| "/".into());
        let headers: Vec<(String, String)> = http
            .http_headers
            .iter()
            .flatten()
            .map(|h| (h.name.clone(), h.value.clone()))
            .collect();
        let url = format!("http://{host}:{port}{path}");
        return match tokio::time::timeout(timeout, http_get(&host, port, &path, &headers)).await {
            Ok(Ok(code)) if (200..400).contains(&code) => Ok(()),
            Ok(Ok(code)) => Err(format!("HTTP probe failed with statuscode: {code}")),
            Ok(Err(e)) => Err(format!("Get \"{url}\": {e}")),
            Err(_) => Err(format!("Get \"{url}\": context deadline exceeded")),
        };
    }
    if probe.grpc.is_some() {
        return Err("grpc probes are not supported by kubelab's kubelet".into());
    }
    Err("probe has no handler".into())
}

/// A plain HTTP/1.1 GET; returns the status code.
pub async fn http_get(
    host: &str,
    port: u16,
    path: &str,
    headers: &[(String, String)],
) -> Result<u16, String> {
    use http_body_util::Empty;
    let tcp = tokio::net::TcpStream::connect((host, port))
        .await
        .map_err(|e| format!("dial tcp {host}:{port}: {e}"))?;
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tcp))
            .await
            .map_err(|e| e.to_string())?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    let mut req = http::Request::builder()
        .uri(path)
        .header("host", format!("{host}:{port}"))
        .header("user-agent", "kube-probe/1.32")
        .header("accept", "*/*");
    for (k, v) in headers {
        req = req.header(k.as_str(), v.as_str());
    }
    let req = req
        .body(Empty::<bytes::Bytes>::new())
        .map_err(|e| e.to_string())?;
    let resp = sender.send_request(req).await.map_err(|e| e.to_string())?;
    Ok(resp.status().as_u16())
}
