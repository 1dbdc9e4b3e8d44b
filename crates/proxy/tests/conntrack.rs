//! The real ctnetlink deletion against the kernel, in a private network namespace (the test
//! runs itself again under `unshare -n`; needs root, as the agent on a node has).

use std::net::{Ipv4Addr, UdpSocket};
use std::process::Command;

use kubelab_proxy::system::{Conntrack, NetlinkConntrack};

const INSIDE: &str = "KUBELAB_PROXY_TEST_NETNS";

fn sh(script: &str) {
    let out = Command::new("sh").arg("-c").arg(script).output().unwrap();
    assert!(
        out.status.success(),
        "{script}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn entries() -> String {
    std::fs::read_to_string("/proc/net/nf_conntrack").unwrap_or_default()
}

#[test]
fn entries_answered_by_a_removed_udp_endpoint_are_deleted() {
    if std::env::var_os(INSIDE).is_none() {
        let out = Command::new("unshare")
            .arg("-n")
            .arg(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "entries_answered_by_a_removed_udp_endpoint_are_deleted",
                "--nocapture",
            ])
            .env(INSIDE, "1")
            .output()
            .expect("unshare -n (util-linux) as root");
        assert!(
            out.status.success(),
            "in a private netns:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        return;
    }
    sh("ip link set lo up && ip route add 10.96.0.0/12 dev lo");
    sh("iptables -t nat -A OUTPUT -d 10.96.0.10/32 -p udp --dport 53 -j DNAT --to-destination 127.0.0.1:5353");
    sh("iptables -t nat -A OUTPUT -d 10.96.0.11/32 -p udp --dport 53 -j DNAT --to-destination 127.0.0.1:5354");
    let client = UdpSocket::bind("127.0.0.1:40000").unwrap();
    client.send_to(b"query", "10.96.0.10:53").unwrap();
    client.send_to(b"query", "10.96.0.11:53").unwrap();
    let before = entries();
    assert!(
        before.contains("sport=5353") && before.contains("sport=5354"),
        "{before}"
    );

    let deleted = NetlinkConntrack
        .delete_answered_by(17, &[(Ipv4Addr::LOCALHOST, 5353)])
        .unwrap();
    assert_eq!(deleted, 1);
    let after = entries();
    assert!(!after.contains("sport=5353"), "{after}");
    assert!(
        after.contains("sport=5354"),
        "the other endpoint's entry stays: {after}"
    );
}
