//! Streaming subresources end to end: real kubectl (1.32 over WebSocket and over its SPDY
//! fallback, 1.30 over SPDY) and kube-rs against `kubelab server --fake-nodes 1`, whose
//! simulated node serves the kubelet endpoints (synthetic logs, built-in exec commands, an
//! echoing attach and port-forward). The API server's side is the real one: it finds the
//! kubelet from the pod's node, verifies its certificate, and translates the protocols.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::{eventually, run_with_deadline, Kubectl, Output, TestServer, KUBECTL_DEADLINE};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, AttachParams};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const WAIT: Duration = Duration::from_secs(60);

/// A server with one simulated node and a running pod `web` (container `web`).
fn cluster() -> TestServer {
    let server = TestServer::start_args(&["--fake-nodes", "1"]);
    let k = Kubectl::new("1.32");
    eventually("the simulated node registers", WAIT, || {
        server
            .kubectl(&k, &["get", "node", "fake-node-1"])
            .success()
            .then_some(())
    });
    server.ok(&k, &["run", "web", "--image=nginx"]);
    wait_running(&server, "web");
    server
}

fn wait_running(server: &TestServer, pod: &str) {
    let k = Kubectl::new("1.32");
    eventually(&format!("pod {pod} runs"), WAIT, || {
        let out = server.kubectl(&k, &["get", "pod", pod, "-o", "jsonpath={.status.phase}"]);
        (out.stdout == "Running").then_some(())
    });
}

/// How a kubectl build talks: its default, or forced back to SPDY.
#[derive(Clone, Copy, Debug)]
enum Transport {
    Default,
    Spdy,
}

fn clients() -> Vec<(Kubectl, Transport)> {
    vec![
        (Kubectl::new("1.32"), Transport::Default),
        (Kubectl::new("1.32"), Transport::Spdy),
        (Kubectl::new("1.30"), Transport::Spdy),
    ]
}

/// kubectl with a fresh HOME, the server's kubeconfig, and the transport's environment.
fn command(
    server: &TestServer,
    k: &Kubectl,
    t: Transport,
    args: &[&str],
) -> (Command, tempfile::TempDir) {
    let home = tempfile::tempdir().expect("kubectl home");
    let mut cmd = Command::new(&k.path);
    cmd.env("HOME", home.path())
        .env_remove("KUBECONFIG")
        .arg("--kubeconfig")
        .arg(server.kubeconfig_path())
        .arg("--cache-dir")
        .arg(home.path().join("cache"))
        .args(args);
    if let Transport::Spdy = t {
        cmd.env("KUBECTL_REMOTE_COMMAND_WEBSOCKETS", "false")
            .env("KUBECTL_PORT_FORWARD_WEBSOCKETS", "false");
    }
    (cmd, home)
}

fn run(
    server: &TestServer,
    k: &Kubectl,
    t: Transport,
    args: &[&str],
    stdin: Option<&str>,
) -> Output {
    let (cmd, _home) = command(server, k, t, args);
    run_with_deadline(cmd, stdin, KUBECTL_DEADLINE)
}

fn code(out: &Output) -> Option<i32> {
    out.status.and_then(|s| s.code())
}

#[test]
fn logs_follow_tail_timestamps_and_errors() {
    let server = cluster();
    let k32 = Kubectl::new("1.32");
    for k in [Kubectl::new("1.32"), Kubectl::new("1.30")] {
        let out = server.ok(&k, &["logs", "web"]);
        assert!(
            out.starts_with("current container \"web\" of pod \"web\" started on simulated node \"fake-node-1\""),
            "{out}"
        );
        let stamped = server.ok(&k, &["logs", "web", "--timestamps", "--tail=10"]);
        let (stamp, rest) = stamped.split_once(' ').unwrap();
        assert!(
            stamp.parse::<k8s_openapi::jiff::Timestamp>().is_ok(),
            "{stamped}"
        );
        assert_eq!(rest, out);
        assert_eq!(server.ok(&k, &["logs", "web", "--tail=0"]), "");
        assert_eq!(
            server.ok(&k, &["logs", "web", "--limit-bytes=7"]),
            "current"
        );
    }
    // Errors worded like upstream's.
    let err = server.fails(&k32, &["logs", "web", "-c", "nope"]);
    assert!(
        err.contains("container nope is not valid for pod web"),
        "{err}"
    );
    let err = server.fails(&k32, &["logs", "web", "--previous"]);
    assert!(
        err.contains("previous terminated container \"web\" in pod \"web\" not found"),
        "{err}"
    );
    // A pod whose containers cannot start yet (its claim is never bound).
    server.ok_stdin(
        &k32,
        &["apply", "-f", "-"],
        r#"{"apiVersion":"v1","kind":"PersistentVolumeClaim","metadata":{"name":"never"},
  "spec":{"accessModes":["ReadWriteOnce"],"storageClassName":"nowhere","resources":{"requests":{"storage":"1Gi"}}}}"#,
    );
    server.ok_stdin(
        &k32,
        &["apply", "-f", "-"],
        r#"{"apiVersion":"v1","kind":"Pod","metadata":{"name":"waiting"},
  "spec":{"nodeName":"fake-node-1","containers":[{"name":"app","image":"busybox"}],
          "volumes":[{"name":"v","persistentVolumeClaim":{"claimName":"never"}}]}}"#,
    );
    let err = server.fails(&k32, &["logs", "waiting"]);
    assert!(
        err.contains("Error from server (BadRequest): container \"app\" in pod \"waiting\" is waiting to start: ContainerCreating"),
        "{err}"
    );
    // The default container: the annotation, else the first.
    server.ok_stdin(
        &k32,
        &["apply", "-f", "-"],
        r#"{"apiVersion":"v1","kind":"Pod","metadata":{"name":"two",
  "annotations":{"kubectl.kubernetes.io/default-container":"second"}},
  "spec":{"containers":[{"name":"first","image":"busybox"},{"name":"second","image":"busybox"}]}}"#,
    );
    wait_running(&server, "two");
    assert!(server
        .ok(&k32, &["logs", "two"])
        .contains("container \"second\""));
    assert!(server
        .ok(&k32, &["logs", "two", "-c", "first"])
        .contains("container \"first\""));

    // -f streams until the container stops.
    let mut follow = server.spawn_kubectl(&k32, &["logs", "-f", "web"]);
    follow.wait_for("the first line", WAIT, |l| l.contains("container \"web\""));
    server.ok(&k32, &["delete", "pod", "web", "--wait=false"]);
    let deadline = Instant::now() + WAIT;
    let status = loop {
        if let Some(status) = follow.child.try_wait().unwrap() {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "kubectl logs -f did not end with its container"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(status.success(), "{status:?}");
}

#[test]
fn exec_and_attach_over_websocket_and_spdy() {
    let server = cluster();
    let big: String = (0..30_000).map(|i| format!("{i:06}\n")).collect(); // 210 KB
    for (k, t) in clients() {
        let what = format!("kubectl {} {t:?}", k.version);
        let out = run(
            &server,
            &k,
            t,
            &[
                "exec",
                "web",
                "--",
                "sh",
                "-c",
                "echo hi; echo oops >&2; exit 3",
            ],
            None,
        );
        assert_eq!(code(&out), Some(3), "{what}: {out:?}");
        assert_eq!(out.stdout, "hi\n", "{what}");
        assert!(out.stderr.contains("oops\n"), "{what}: {}", out.stderr);
        assert!(
            out.stderr.contains("command terminated with exit code 3"),
            "{what}"
        );

        let out = run(
            &server,
            &k,
            t,
            &["exec", "-i", "web", "--", "cat"],
            Some(&big),
        );
        assert_eq!(code(&out), Some(0), "{what}: {}", out.stderr);
        assert!(
            out.stdout == big,
            "{what}: stdin round trip ({} of {} bytes)",
            out.stdout.len(),
            big.len()
        );

        let out = run(
            &server,
            &k,
            t,
            &["exec", "-i", "web", "--", "sh"],
            Some("echo from stdin\nexit 4\n"),
        );
        assert_eq!(code(&out), Some(4), "{what}: {out:?}");
        assert_eq!(out.stdout, "from stdin\n", "{what}");

        let out = run(
            &server,
            &k,
            t,
            &["exec", "web", "--", "no-such-binary"],
            None,
        );
        assert_eq!(code(&out), Some(127), "{what}: {out:?}");

        let out = run(
            &server,
            &k,
            t,
            &["attach", "-i", "web"],
            Some("line1\nline2\n"),
        );
        assert_eq!(code(&out), Some(0), "{what}: {out:?}");
        assert_eq!(out.stdout, "line1\nline2\n", "{what}");

        // A terminal (a pty from script(1)): typed lines end with CR, the shell echoes them,
        // resize messages flow (SPDY: the resize stream).
        let (cmd, home) = command(&server, &k, t, &["exec", "-it", "web", "--", "sh"]);
        let mut line = String::new();
        for (key, value) in cmd.get_envs() {
            if let (Some(v), key) = (value, key) {
                line.push_str(&format!(
                    "{}='{}' ",
                    key.to_string_lossy(),
                    v.to_string_lossy()
                ));
            }
        }
        line.push_str(&format!("'{}'", cmd.get_program().to_string_lossy()));
        for a in cmd.get_args() {
            line.push_str(&format!(" '{}'", a.to_string_lossy()));
        }
        let mut script = Command::new("script");
        script.args(["-qec", &line, "/dev/null"]);
        let out = run_with_deadline(script, Some("echo tty-ok\rexit 5\r"), KUBECTL_DEADLINE);
        drop(home);
        assert_eq!(code(&out), Some(5), "{what}: {out:?}");
        assert!(
            out.stdout.replace('\r', "").lines().any(|l| l == "tty-ok"),
            "{what}: {:?}",
            out.stdout
        );
    }
    let k = Kubectl::new("1.32");
    // Completed pods refuse exec, in kubectl's words and on the server too.
    server.ok_stdin(
        &k,
        &["apply", "-f", "-"],
        r#"{"apiVersion":"v1","kind":"Pod","metadata":{"name":"done",
  "annotations":{"kubelab.dev/fake-duration":"0s"}},
  "spec":{"restartPolicy":"Never","containers":[{"name":"c","image":"busybox"}]}}"#,
    );
    eventually("pod done succeeds", WAIT, || {
        let out = server.kubectl(
            &k,
            &["get", "pod", "done", "-o", "jsonpath={.status.phase}"],
        );
        (out.stdout == "Succeeded").then_some(())
    });
    let err = server.fails(&k, &["exec", "done", "--", "echo"]);
    assert!(
        err.contains("cannot exec into a container in a completed pod; current phase is Succeeded"),
        "{err}"
    );
    let raw = server.raw_admin();
    let resp = server
        .block_on(raw.get("/api/v1/namespaces/default/pods/done/exec?command=echo&stdout=true"))
        .unwrap();
    assert_eq!(resp.status, 400);
    assert_eq!(
        resp.status_body()["message"],
        "cannot exec into a container in a completed pod; current phase is Succeeded"
    );
    let resp = server
        .block_on(raw.get(
            "/api/v1/namespaces/default/pods/web/exec?command=echo&container=nope&stdout=true",
        ))
        .unwrap();
    assert_eq!(
        resp.status_body()["message"],
        "container nope is not valid for pod web"
    );
    let resp = server
        .block_on(raw.get("/api/v1/namespaces/default/pods/web/exec?command=echo&stdout=true"))
        .unwrap();
    assert_eq!(resp.status, 400);
    assert_eq!(resp.status_body()["message"], "Upgrade request required");
}

/// A running `kubectl port-forward`, killed (by pid) when dropped.
struct Forward {
    child: Child,
    port: u16,
    _home: tempfile::TempDir,
}

impl Drop for Forward {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn port_forward(server: &TestServer, k: &Kubectl, t: Transport) -> Forward {
    let (mut cmd, home) = command(server, k, t, &["port-forward", "pod/web", ":80"]);
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn kubectl port-forward");
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let line = rx
        .recv_timeout(WAIT)
        .expect("kubectl port-forward prints where it listens");
    // "Forwarding from 127.0.0.1:PORT -> 80"
    let port = line
        .split("127.0.0.1:")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("unexpected port-forward output {line:?}"));
    Forward {
        child,
        port,
        _home: home,
    }
}

fn echo_through(port: u16, payload: &[u8]) -> Vec<u8> {
    let mut conn = TcpStream::connect(("127.0.0.1", port)).expect("connect to the forwarded port");
    conn.set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    conn.write_all(payload).unwrap();
    let mut got = vec![0u8; payload.len()];
    conn.read_exact(&mut got).expect("the echo comes back");
    got
}

#[test]
fn kubectl_port_forward_tunnelled_and_plain_spdy() {
    let server = cluster();
    for (k, t) in clients() {
        let forward = port_forward(&server, &k, t);
        // Sequential connections, then concurrent ones, then one bigger than a SPDY window.
        for i in 0..3 {
            let msg = format!("hello {i} via kubectl {} {t:?}\n", k.version);
            assert_eq!(echo_through(forward.port, msg.as_bytes()), msg.as_bytes());
        }
        let port = forward.port;
        let threads: Vec<_> = (0..4)
            .map(|i| {
                std::thread::spawn(move || {
                    let msg = format!("concurrent {i}\n").repeat(100);
                    echo_through(port, msg.as_bytes()) == msg.as_bytes()
                })
            })
            .collect();
        for t in threads {
            assert!(t.join().unwrap());
        }
        let big: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
        assert!(
            echo_through(forward.port, &big) == big,
            "kubectl {} {t:?}",
            k.version
        );
    }
    // Only running pods can be forwarded to.
    let k = Kubectl::new("1.32");
    server.ok_stdin(
        &k,
        &["apply", "-f", "-"],
        r#"{"apiVersion":"v1","kind":"Pod","metadata":{"name":"unscheduled"},
  "spec":{"nodeSelector":{"nowhere":"true"},"containers":[{"name":"c","image":"busybox"}]}}"#,
    );
    let resp = server
        .block_on(
            server
                .raw_admin()
                .get("/api/v1/namespaces/default/pods/unscheduled/portforward?ports=80"),
        )
        .unwrap();
    assert_eq!(resp.status, 400);
    assert_eq!(
        resp.status_body()["message"],
        "unable to forward port because pod is not running. Current status=Pending"
    );
}

#[test]
fn kube_rs_port_forward_and_exec() {
    let server = cluster();
    server.block_on(async {
        let pods: Api<Pod> = Api::default_namespaced(server.client().await);
        let mut forwarder = pods
            .portforward("web", &[80, 8080])
            .await
            .expect("port-forward");
        for port in [80, 8080] {
            let mut stream = forwarder.take_stream(port).expect("a stream per port");
            let msg = format!("kube-rs to {port}");
            stream.write_all(msg.as_bytes()).await.unwrap();
            let mut got = vec![0u8; msg.len()];
            tokio::time::timeout(Duration::from_secs(30), stream.read_exact(&mut got))
                .await
                .expect("echo within 30 s")
                .unwrap();
            assert_eq!(got, msg.as_bytes());
        }
        drop(forwarder);

        // kube-rs exec offers v5 and v4: piped to the kubelet's v5.
        let mut attached = pods
            .exec(
                "web",
                ["sh", "-c", "echo out; echo err >&2; exit 2"],
                &AttachParams::default().stderr(true),
            )
            .await
            .expect("exec");
        let mut stdout = String::new();
        attached
            .stdout()
            .unwrap()
            .read_to_string(&mut stdout)
            .await
            .unwrap();
        let mut stderr = String::new();
        attached
            .stderr()
            .unwrap()
            .read_to_string(&mut stderr)
            .await
            .unwrap();
        let status = attached
            .take_status()
            .unwrap()
            .await
            .expect("a final status");
        assert_eq!(stdout, "out\n");
        assert_eq!(stderr, "err\n");
        assert_eq!(status.reason.as_deref(), Some("NonZeroExitCode"));
        let cause = &status.details.unwrap().causes.unwrap()[0];
        assert_eq!(cause.message.as_deref(), Some("2"));
    });
}

/// A node simulated by another process (e.g. `kubelab agent --fake`) has a fictional address:
/// the API server refuses instead of dialling it.
#[test]
fn simulated_nodes_of_other_processes_are_never_dialled() {
    let server = TestServer::start();
    let k = Kubectl::new("1.32");
    server.ok_stdin(
        &k,
        &["apply", "-f", "-"],
        r#"{"apiVersion":"v1","kind":"Node","metadata":{"name":"elsewhere",
  "annotations":{"kubelab.dev/fake-node":"true"}}}"#,
    );
    server.ok(
        &k,
        &[
            "patch",
            "node",
            "elsewhere",
            "--subresource=status",
            "--type=merge",
            "-p",
            r#"{"status":{"addresses":[{"type":"InternalIP","address":"172.31.200.1"}],
              "daemonEndpoints":{"kubeletEndpoint":{"Port":10250}}}}"#,
        ],
    );
    server.ok_stdin(
        &k,
        &["apply", "-f", "-"],
        r#"{"apiVersion":"v1","kind":"Pod","metadata":{"name":"there"},
  "spec":{"nodeName":"elsewhere","containers":[{"name":"c","image":"busybox"}]}}"#,
    );
    for t in [Transport::Default, Transport::Spdy] {
        let out = run(&server, &k, t, &["exec", "there", "--", "echo"], None);
        assert!(!out.success(), "{out:?}");
        assert!(
            out.stderr
                .contains("node \"elsewhere\" is simulated outside this API server's process"),
            "{t:?}: {}",
            out.stderr
        );
    }
}
