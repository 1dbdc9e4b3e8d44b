//! The metallb controller (`kubelab metallb controller`) against a real `kubelab server` child
//! process, without Docker: the addon's CRDs and a pool from the addon's own manifests,
//! Services driven by the real kubectl. What the end-to-end tests (tests/metallb.rs) cannot
//! show cheaply: addresses survive a controller restart unchanged, pool status, a changed
//! request moves a Service, a Service that stops being a LoadBalancer gives its address back.

mod common;

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::{eventually, Kubectl, TestServer};

const WAIT: Duration = Duration::from_secs(30);

/// A running controller, killed when dropped.
struct Controller(Child);

impl Drop for Controller {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_controller(server: &TestServer, run: usize) -> Controller {
    let log = std::fs::File::create(server.root().join(format!("metallb-controller-{run}.log")))
        .expect("controller log");
    let child = Command::new(common::kubelab_bin())
        .args([
            "metallb",
            "controller",
            "--namespace",
            "metallb-system",
            "--kubeconfig",
        ])
        .arg(server.kubeconfig_path())
        .env("RUST_LOG", "info,kubelab_metallb=debug")
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("start kubelab metallb controller");
    Controller(child)
}

/// The addon's CRDs, then its pool and L2Advertisement with `range`.
fn install(server: &TestServer, k: &Kubectl, range: &str) {
    let addon = kubelab_cluster::addons::find("metallb").expect("the metallb addon");
    let mut facts = kubelab_cluster::addons::ClusterFacts::new("ctl", 1);
    facts.metallb_range = range.to_owned();
    let crds = kubelab_cluster::addons::Addon {
        manifests: vec!["crds.yaml".into()],
        ..addon.clone()
    };
    let pool = kubelab_cluster::addons::Addon {
        manifests: vec!["pool.yaml".into()],
        ..addon
    };
    server.ok_stdin(
        k,
        &["apply", "-f", "-"],
        &kubelab_cluster::addons::render(&crds, &facts).unwrap(),
    );
    server.ok(k, &["create", "namespace", "metallb-system"]);
    let pool = kubelab_cluster::addons::render(&pool, &facts).unwrap();
    // The CRDs' kinds are served once they are established.
    eventually("the pool applied", WAIT, || {
        server
            .kubectl_stdin(k, &["apply", "-f", "-"], &pool)
            .success()
            .then_some(())
    });
}

fn load_balancer(name: &str, extra_spec: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Service\nmetadata: {{name: {name}}}\nspec:\n  type: LoadBalancer\n  selector: {{app: {name}}}\n  ports: [{{port: 80}}]\n{extra_spec}"
    )
}

fn external_ip(server: &TestServer, k: &Kubectl, service: &str) -> String {
    server.ok(
        k,
        &[
            "get",
            "svc",
            service,
            "-o",
            "jsonpath={.status.loadBalancer.ingress[*].ip}",
        ],
    )
}

fn wait_ip(server: &TestServer, k: &Kubectl, service: &str, expected: &str) {
    eventually(&format!("{service} at {expected:?}"), WAIT, || {
        (external_ip(server, k, service) == expected).then_some(())
    });
}

fn events(server: &TestServer, k: &Kubectl, service: &str) -> String {
    server.ok(
        k,
        &[
            "get",
            "events",
            "--field-selector",
            &format!("involvedObject.name={service}"),
            "-o",
            "custom-columns=REASON:.reason,MESSAGE:.message",
            "--no-headers",
        ],
    )
}

#[test]
fn addresses_follow_services_and_survive_a_restart() {
    let server = TestServer::start();
    let k = Kubectl::new("1.32");
    install(&server, &k, "10.99.0.10-10.99.0.12");
    let mut controller = start_controller(&server, 0);

    server.ok_stdin(&k, &["apply", "-f", "-"], &load_balancer("a", ""));
    server.ok_stdin(
        &k,
        &["apply", "-f", "-"],
        &load_balancer("b", "  loadBalancerIP: 10.99.0.12\n"),
    );
    wait_ip(&server, &k, "a", "10.99.0.10");
    wait_ip(&server, &k, "b", "10.99.0.12");
    server.ok_stdin(&k, &["apply", "-f", "-"], &load_balancer("c", ""));
    wait_ip(&server, &k, "c", "10.99.0.11");
    eventually("the pool's status", WAIT, || {
        let status = server.ok(
            &k,
            &[
                "get",
                "ipaddresspools",
                "default",
                "-n",
                "metallb-system",
                "-o",
                "jsonpath={.status.assignedIPv4}/{.status.availableIPv4}",
            ],
        );
        (status == "3/0").then_some(())
    });
    server.ok_stdin(&k, &["apply", "-f", "-"], &load_balancer("d", ""));
    eventually("d's AllocationFailed event", WAIT, || {
        events(&server, &k, "d")
            .contains("no available IPs")
            .then_some(())
    });
    assert_eq!(external_ip(&server, &k, "d"), "");

    // A restarted controller keeps every address where it is.
    drop(controller);
    controller = start_controller(&server, 1);
    server.ok_stdin(&k, &["apply", "-f", "-"], &load_balancer("e", ""));
    eventually("the new controller saw e", WAIT, || {
        events(&server, &k, "e")
            .contains("AllocationFailed")
            .then_some(())
    });
    for (svc, ip) in [
        ("a", "10.99.0.10"),
        ("b", "10.99.0.12"),
        ("c", "10.99.0.11"),
    ] {
        assert_eq!(external_ip(&server, &k, svc), ip, "{svc} moved");
    }

    // A Service that stops being a LoadBalancer gives its address back: the oldest pending
    // Service (d) takes it; e stays pending.
    server.ok(
        &k,
        &[
            "patch",
            "svc",
            "a",
            "-p",
            r#"{"spec":{"type":"ClusterIP"}}"#,
        ],
    );
    wait_ip(&server, &k, "d", "10.99.0.10");
    assert_eq!(external_ip(&server, &k, "a"), "");
    eventually("a's pool annotation removed", WAIT, || {
        let annotations = server.ok(
            &k,
            &["get", "svc", "a", "-o", "jsonpath={.metadata.annotations}"],
        );
        (!annotations.contains("ip-allocated-from-pool")).then_some(())
    });

    // A changed request moves a Service; the address it leaves goes to the pending one.
    server.ok(
        &k,
        &["annotate", "svc", "b", "metallb.io/address-pool=nowhere"],
    );
    eventually("b without an address", WAIT, || {
        events(&server, &k, "b")
            .contains("not compatible with requested address pool nowhere")
            .then_some(())
    });
    assert_eq!(external_ip(&server, &k, "b"), "");
    wait_ip(&server, &k, "e", "10.99.0.12");

    // A pool without autoAssign, used through the address-pool annotation; Services with the
    // same sharing key and distinct ports share an address, a clashing port gets another.
    server.ok_stdin(
        &k,
        &["apply", "-f", "-"],
        "apiVersion: metallb.io/v1beta1\nkind: IPAddressPool\nmetadata: {name: shared, namespace: metallb-system}\nspec: {addresses: [10.99.1.0/31], autoAssign: false}\n",
    );
    let shared = |name: &str, port: u16| {
        format!(
            "apiVersion: v1\nkind: Service\nmetadata:\n  name: {name}\n  annotations: {{metallb.io/address-pool: shared, metallb.universe.tf/allow-shared-ip: k}}\nspec:\n  type: LoadBalancer\n  selector: {{app: {name}}}\n  ports: [{{port: {port}}}]\n"
        )
    };
    server.ok_stdin(&k, &["apply", "-f", "-"], &shared("s1", 80));
    wait_ip(&server, &k, "s1", "10.99.1.0");
    server.ok_stdin(&k, &["apply", "-f", "-"], &shared("s2", 443));
    wait_ip(&server, &k, "s2", "10.99.1.0");
    server.ok_stdin(&k, &["apply", "-f", "-"], &shared("s3", 80));
    wait_ip(&server, &k, "s3", "10.99.1.1");
    eventually("the shared pool's status", WAIT, || {
        let status = server.ok(
            &k,
            &[
                "get",
                "ipaddresspools",
                "shared",
                "-n",
                "metallb-system",
                "-o",
                "jsonpath={.status.assignedIPv4}/{.status.availableIPv4}",
            ],
        );
        (status == "2/0").then_some(())
    });
    drop(controller);
}
