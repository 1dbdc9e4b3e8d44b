//! Leader election: of several controller managers on one cluster only the lease holder
//! reconciles, and a standby takes over when the holder stops renewing.

mod common;

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::{eventually, kubelab_bin, Kubectl, TestServer};

struct Candidate(Child);

impl Drop for Candidate {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn candidate(server: &TestServer, identity: &str) -> Candidate {
    let log = std::fs::File::create(server.root().join(format!("{identity}.log"))).unwrap();
    let child = Command::new(kubelab_bin())
        .env("NO_COLOR", "1")
        .args(["controller-manager", "--kubeconfig"])
        .arg(server.data_dir().join("controller-manager.kubeconfig"))
        .args(["--identity", identity, "--leader-elect-lease-duration", "3"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("start kubelab controller-manager");
    Candidate(child)
}

fn holder(server: &TestServer, k: &Kubectl) -> String {
    let out = server.kubectl(
        k,
        &[
            "get",
            "lease",
            "-n",
            "kube-system",
            "kube-controller-manager",
            "-o",
            "jsonpath={.spec.holderIdentity}",
        ],
    );
    if out.success() {
        out.stdout.trim().to_string()
    } else {
        String::new()
    }
}

fn signal(child: &Child, sig: &str) {
    let status = Command::new("kill")
        .args([sig, &child.id().to_string()])
        .status()
        .expect("run kill");
    assert!(status.success(), "kill {sig} failed");
}

#[test]
fn only_the_lease_holder_reconciles_and_a_standby_takes_over() {
    let server = TestServer::start_args(&[
        "--disable-controllers",
        "--leader-elect-lease-duration",
        "3",
    ]);
    let k = Kubectl::new("1.32");
    let first = candidate(&server, "first");
    eventually("first candidate leads", Duration::from_secs(30), || {
        (holder(&server, &k) == "first").then_some(())
    });
    let _second = candidate(&server, "second");

    // The leader works: a namespace deletion completes.
    server.ok(&k, &["create", "ns", "led"]);
    server.ok(&k, &["delete", "ns", "led", "--timeout=60s"]);

    // Freeze the leader: nothing finalizes a namespace while it still holds the lease.
    signal(&first.0, "-STOP");
    server.ok(&k, &["create", "ns", "orphaned"]);
    server.ok(&k, &["delete", "ns", "orphaned", "--wait=false"]);
    let phase = server.ok(
        &k,
        &["get", "ns", "orphaned", "-o", "jsonpath={.status.phase}"],
    );
    if holder(&server, &k) == "first" {
        assert_eq!(phase.trim(), "Terminating", "nobody but the leader acts");
    }

    // The standby takes the expired lease over and finishes the work.
    eventually(
        "second candidate takes over",
        Duration::from_secs(30),
        || (holder(&server, &k) == "second").then_some(()),
    );
    eventually(
        "namespace finalized by the new leader",
        Duration::from_secs(30),
        || (!server.kubectl(&k, &["get", "ns", "orphaned"]).success()).then_some(()),
    );
    signal(&first.0, "-CONT");
    eventually(
        "the old leader stands down",
        Duration::from_secs(30),
        || {
            let log = std::fs::read_to_string(server.root().join("first.log")).unwrap_or_default();
            log.contains("lost leadership").then_some(())
        },
    );
    assert_eq!(holder(&server, &k), "second");
}
