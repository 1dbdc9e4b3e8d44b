//! The iptables rules of the service proxy and the pod network, as pure functions.
//!
//! Packet paths (nat table; `X` is a hash of the Service port, `Y` of one endpoint):
//!
//! ```text
//! PREROUTING, OUTPUT ─▶ KUBELAB-SERVICES ─┬─ ClusterIP:port ───────────▶ KUBELAB-SVC-X
//!                                          ├─ external/LB IP:port ──────▶ KUBELAB-EXT-X
//!                                          └─ to a local address ─▶ KUBELAB-NODEPORTS
//!                                                NodePort ─▶ KUBELAB-EXT-X
//! KUBELAB-EXT-X: policy Cluster → mark for masquerade, KUBELAB-SVC-X
//!                policy Local   → pods and the node itself: KUBELAB-SVC-X;
//!                                 others: KUBELAB-SVL-X (endpoints on this node, no masquerade)
//! KUBELAB-SVC-X / SVL-X: affinity (`recent`), then random choice (`statistic`) ─▶ KUBELAB-SEP-Y
//! KUBELAB-SEP-Y: hairpin (source = endpoint) → mark; DNAT to the endpoint
//! POSTROUTING ─▶ KUBELAB-POSTROUTING: marked → MASQUERADE; else KUBELAB-POD-MASQ:
//!                pod → pod: ACCEPT (addresses kept); pod → outside the cluster CIDR: MASQUERADE
//! ```
//!
//! The filter table's `KUBELAB-SERVICES` (from INPUT, FORWARD and OUTPUT, new connections)
//! rejects traffic to a Service port without ready endpoints (the client sees "connection
//! refused" at once) and drops external traffic to a `Local` port without endpoints here.
//!
//! [`restore_input`] turns the difference between programmed and wanted chains into
//! `iptables-restore --noflush` input that declares (flushes) and refills only the chains whose
//! rules changed and deletes the chains no longer wanted: an endpoint change rewrites the
//! Service's own chains, not the table.

use std::collections::BTreeMap;
use std::fmt::Write;

use sha2::{Digest, Sha256};

use crate::model::{Cidr, Endpoint, Protocol, ServicePort};

/// Prefix of every chain kubelab programs.
pub const CHAIN_PREFIX: &str = "KUBELAB-";
pub const SERVICES: &str = "KUBELAB-SERVICES";
pub const NODEPORTS: &str = "KUBELAB-NODEPORTS";
pub const POSTROUTING: &str = "KUBELAB-POSTROUTING";
pub const MARK_MASQ: &str = "KUBELAB-MARK-MASQ";
pub const POD_MASQ: &str = "KUBELAB-POD-MASQ";
/// The packet mark bit meaning "masquerade this connection" (kube-proxy's default bit 14).
pub const MASQ_MARK: &str = "0x4000/0x4000";

/// An iptables table.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Table {
    Nat,
    Filter,
}

impl Table {
    pub const ALL: [Table; 2] = [Table::Nat, Table::Filter];

    pub fn as_str(self) -> &'static str {
        match self {
            Table::Nat => "nat",
            Table::Filter => "filter",
        }
    }
}

/// The chains of one table: name → rules (each rule is what follows `-A <chain> `).
pub type Chains = BTreeMap<String, Vec<String>>;

/// Every chain kubelab wants, per table.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Ruleset {
    pub tables: BTreeMap<Table, Chains>,
}

impl Ruleset {
    pub fn chains(&self, table: Table) -> &Chains {
        static EMPTY: Chains = BTreeMap::new();
        self.tables.get(&table).unwrap_or(&EMPTY)
    }

    /// Number of rules in every table.
    pub fn rule_count(&self) -> usize {
        self.tables
            .values()
            .flat_map(|chains| chains.values())
            .map(Vec::len)
            .sum()
    }
}

/// A rule in a built-in chain that sends packets to one of kubelab's chains; kept in place
/// with `iptables -C` / `-I` (never through restore, which would append duplicates).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Jump {
    pub table: Table,
    pub chain: &'static str,
    /// The rule's arguments, as `iptables` takes them.
    pub rule: Vec<String>,
}

/// The jumps from the built-in chains.
pub fn jumps() -> Vec<Jump> {
    let jump = |table, chain, comment: &str, extra: &[&str], target: &str| Jump {
        table,
        chain,
        rule: ["-m", "comment", "--comment", comment]
            .into_iter()
            .chain(extra.iter().copied())
            .chain(["-j", target])
            .map(str::to_owned)
            .collect(),
    };
    let new = ["-m", "conntrack", "--ctstate", "NEW"];
    vec![
        jump(
            Table::Nat,
            "PREROUTING",
            "kubelab service portals",
            &[],
            SERVICES,
        ),
        jump(
            Table::Nat,
            "OUTPUT",
            "kubelab service portals",
            &[],
            SERVICES,
        ),
        jump(
            Table::Nat,
            "POSTROUTING",
            "kubelab service masquerade",
            &[],
            POSTROUTING,
        ),
        jump(
            Table::Filter,
            "INPUT",
            "kubelab service rejects",
            &new,
            SERVICES,
        ),
        jump(
            Table::Filter,
            "FORWARD",
            "kubelab service rejects",
            &new,
            SERVICES,
        ),
        jump(
            Table::Filter,
            "OUTPUT",
            "kubelab service rejects",
            &new,
            SERVICES,
        ),
    ]
}

/// A chain name: `prefix` and 16 characters of a hash of `key` (28 characters at most, the
/// kernel's limit).
fn chain_name(prefix: &str, key: &str) -> String {
    let digest = Sha256::digest(key.as_bytes());
    let mut name = String::from(prefix);
    for byte in &digest[..8] {
        let _ = write!(name, "{byte:02X}");
    }
    name
}

/// The chain of a Service port (all ready endpoints).
pub fn service_chain(port: &ServicePort) -> String {
    chain_name("KUBELAB-SVC-", &service_key(port))
}

fn external_chain(port: &ServicePort) -> String {
    chain_name("KUBELAB-EXT-", &service_key(port))
}

fn local_chain(port: &ServicePort) -> String {
    chain_name("KUBELAB-SVL-", &service_key(port))
}

fn endpoint_chain(port: &ServicePort, endpoint: &Endpoint) -> String {
    chain_name(
        "KUBELAB-SEP-",
        &format!("{}/{}:{}", service_key(port), endpoint.ip, endpoint.port),
    )
}

fn service_key(port: &ServicePort) -> String {
    format!("{}/{}", port.name, port.protocol.as_str())
}

/// The rules for `ports` on a node whose pods are in `cluster_cidr`.
pub fn ruleset(ports: &[ServicePort], cluster_cidr: Cidr) -> Ruleset {
    let mut nat = Chains::new();
    let mut filter = Chains::new();
    nat.insert(
        MARK_MASQ.into(),
        vec![format!("-j MARK --set-xmark {MASQ_MARK}")],
    );
    nat.insert(
        POSTROUTING.into(),
        vec![
            format!("-m mark ! --mark {MASQ_MARK} -j {POD_MASQ}"),
            format!("-m mark ! --mark {MASQ_MARK} -j RETURN"),
            // Clear the bit: a packet re-entering the stack is not masqueraded twice.
            "-j MARK --set-xmark 0x0/0x4000".into(),
            "-j MASQUERADE --random-fully".into(),
        ],
    );
    // Pod to pod keeps both addresses (ACCEPT ends the nat traversal, so no later rule — the
    // bridge plugin's ipMasq, say — rewrites it); pod to outside is masqueraded.
    nat.insert(
        POD_MASQ.into(),
        vec![
            format!("! -s {cluster_cidr} -j RETURN"),
            format!("-d {cluster_cidr} -j ACCEPT"),
            "-m addrtype --dst-type LOCAL -j RETURN".into(),
            "-m comment --comment \"pod traffic leaving the cluster network\" -j MASQUERADE".into(),
        ],
    );
    let mut services = Vec::new();
    let mut node_ports = Vec::new();
    let mut rejects = Vec::new();

    let mut sorted: Vec<&ServicePort> = ports.iter().collect();
    sorted.sort_by(|a, b| a.name.cmp(&b.name).then(a.protocol.cmp(&b.protocol)));
    for port in sorted {
        let proto = port.protocol.as_str();
        let match_port = |dport: u16| format!("-p {proto} -m {proto} --dport {dport}");
        let comment = |what: &str| format!("-m comment --comment \"{} {what}\"", port.name);
        let cluster_dst = format!("-d {}/32 {}", port.cluster_ip, match_port(port.port));
        if port.endpoints.is_empty() {
            // A TCP reset, not an ICMP error: the kernel rate-limits ICMP errors (about one a
            // second per peer), a client retrying fast would see SYNs dropped, not refused.
            let reject = match port.protocol {
                Protocol::Tcp => "-j REJECT --reject-with tcp-reset",
                _ => "-j REJECT --reject-with icmp-port-unreachable",
            };
            rejects.push(format!(
                "{} {cluster_dst} {reject}",
                comment("has no endpoints")
            ));
            for ip in &port.external_ips {
                rejects.push(format!(
                    "{} -d {ip}/32 {} {reject}",
                    comment("has no endpoints"),
                    match_port(port.port)
                ));
            }
            if let Some(node_port) = port.node_port {
                rejects.push(format!(
                    "{} -m addrtype --dst-type LOCAL {} {reject}",
                    comment("has no endpoints"),
                    match_port(node_port)
                ));
            }
            continue;
        }
        let svc = service_chain(port);
        services.push(format!("{} {cluster_dst} -j {svc}", comment("cluster IP")));
        let mut svc_rules = vec![format!(
            "{} ! -s {cluster_cidr} {cluster_dst} -j {MARK_MASQ}",
            comment("cluster IP")
        )];
        balance(&mut svc_rules, port, &port.endpoints);
        nat.insert(svc, svc_rules);
        for endpoint in &port.endpoints {
            let sep = endpoint_chain(port, endpoint);
            let affinity = match port.affinity_seconds {
                Some(_) => format!(" -m recent --name {sep} --set"),
                None => String::new(),
            };
            nat.insert(
                sep,
                vec![
                    format!(
                        "{} -s {}/32 -j {MARK_MASQ}",
                        comment("hairpin"),
                        endpoint.ip
                    ),
                    format!(
                        "{} -p {proto}{affinity} -m {proto} -j DNAT --to-destination {}:{}",
                        comment("endpoint"),
                        endpoint.ip,
                        endpoint.port
                    ),
                ],
            );
        }
        if !port.has_external() {
            continue;
        }
        let ext = external_chain(port);
        for ip in &port.external_ips {
            services.push(format!(
                "{} -d {ip}/32 {} -j {ext}",
                comment("external IP"),
                match_port(port.port)
            ));
        }
        if let Some(node_port) = port.node_port {
            node_ports.push(format!(
                "{} {} -j {ext}",
                comment("node port"),
                match_port(node_port)
            ));
        }
        let svc = service_chain(port);
        let ext_rules = if port.external_local {
            let local: Vec<Endpoint> = port.endpoints.iter().filter(|e| e.local).cloned().collect();
            let mut rules = vec![
                format!(
                    "{} -s {cluster_cidr} -j {svc}",
                    comment("pod traffic uses every endpoint")
                ),
                format!("-m addrtype --src-type LOCAL -j {MARK_MASQ}"),
                format!(
                    "{} -m addrtype --src-type LOCAL -j {svc}",
                    comment("node traffic uses every endpoint")
                ),
            ];
            if local.is_empty() {
                let drop = "-j DROP";
                for ip in &port.external_ips {
                    rejects.push(format!(
                        "{} -d {ip}/32 {} {drop}",
                        comment("has no local endpoints"),
                        match_port(port.port)
                    ));
                }
                if let Some(node_port) = port.node_port {
                    rejects.push(format!(
                        "{} -m addrtype --dst-type LOCAL {} {drop}",
                        comment("has no local endpoints"),
                        match_port(node_port)
                    ));
                }
            } else {
                let svl = local_chain(port);
                rules.push(format!("-j {svl}"));
                let mut svl_rules = Vec::new();
                balance(&mut svl_rules, port, &local);
                nat.insert(svl, svl_rules);
            }
            rules
        } else {
            vec![format!("-j {MARK_MASQ}"), format!("-j {svc}")]
        };
        nat.insert(ext, ext_rules);
    }
    services.push(format!(
        "-m comment --comment \"kubelab service nodeports; must be last\" -m addrtype --dst-type LOCAL -j {NODEPORTS}"
    ));
    nat.insert(SERVICES.into(), services);
    nat.insert(NODEPORTS.into(), node_ports);
    filter.insert(SERVICES.into(), rejects);
    Ruleset {
        tables: BTreeMap::from([(Table::Nat, nat), (Table::Filter, filter)]),
    }
}

/// Appends the endpoint choice: the endpoint a client used within the affinity timeout, else
/// one at random (endpoint i of n with probability 1/(n-i), so each gets 1/n).
fn balance(rules: &mut Vec<String>, port: &ServicePort, endpoints: &[Endpoint]) {
    let chains: Vec<String> = endpoints.iter().map(|e| endpoint_chain(port, e)).collect();
    if let Some(seconds) = port.affinity_seconds {
        for chain in &chains {
            rules.push(format!(
                "-m recent --name {chain} --rcheck --seconds {seconds} --reap -j {chain}"
            ));
        }
    }
    let n = chains.len();
    for (i, chain) in chains.iter().enumerate() {
        if i + 1 < n {
            let probability = 1.0 / (n - i) as f64;
            rules.push(format!(
                "-m statistic --mode random --probability {probability:.10} -j {chain}"
            ));
        } else {
            rules.push(format!("-j {chain}"));
        }
    }
}

/// What is programmed in one table: chain → its rules, or `None` when the chain exists with
/// content not known to this process (found at start; it is rewritten or deleted).
pub type Programmed = BTreeMap<String, Option<Vec<String>>>;

/// `iptables-restore --noflush` input for one table taking `programmed` to `desired`, or
/// `None` when nothing changed. Only chains whose rules differ are declared (which flushes
/// them) and refilled; chains no longer wanted are flushed, then deleted.
pub fn restore_input(table: Table, programmed: &Programmed, desired: &Chains) -> Option<String> {
    let changed: Vec<(&String, &Vec<String>)> = desired
        .iter()
        .filter(|(name, rules)| !matches!(programmed.get(*name), Some(Some(had)) if had == *rules))
        .collect();
    let deleted: Vec<&String> = programmed
        .keys()
        .filter(|name| !desired.contains_key(*name))
        .collect();
    if changed.is_empty() && deleted.is_empty() {
        return None;
    }
    let mut out = format!("*{}\n", table.as_str());
    for name in changed
        .iter()
        .map(|(n, _)| *n)
        .chain(deleted.iter().copied())
    {
        let _ = writeln!(out, ":{name} - [0:0]");
    }
    for (name, rules) in &changed {
        for rule in *rules {
            let _ = writeln!(out, "-A {name} {rule}");
        }
    }
    for name in &deleted {
        let _ = writeln!(out, "-X {name}");
    }
    out.push_str("COMMIT\n");
    Some(out)
}

/// The kubelab chains in `iptables-save` output, with the number of rules of each.
pub fn saved_chains(save: &str) -> BTreeMap<String, usize> {
    let mut chains: BTreeMap<String, usize> = save
        .lines()
        .filter_map(|l| l.strip_prefix(':'))
        .filter_map(|l| l.split_whitespace().next())
        .filter(|name| name.starts_with(CHAIN_PREFIX))
        .map(|name| (name.to_owned(), 0))
        .collect();
    for line in save.lines() {
        if let Some(name) = line
            .strip_prefix("-A ")
            .and_then(|l| l.split_whitespace().next())
        {
            if let Some(count) = chains.get_mut(name) {
                *count += 1;
            }
        }
    }
    chains
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ep(ip: &str, local: bool) -> Endpoint {
        Endpoint {
            ip: ip.parse().unwrap(),
            port: 8080,
            local,
        }
    }

    fn port(endpoints: Vec<Endpoint>) -> ServicePort {
        ServicePort {
            name: "default/web:http".into(),
            cluster_ip: "10.96.0.20".parse().unwrap(),
            port: 80,
            protocol: Protocol::Tcp,
            node_port: None,
            external_ips: Vec::new(),
            external_local: false,
            affinity_seconds: None,
            endpoints,
        }
    }

    fn cidr() -> Cidr {
        "10.244.0.0/16".parse().unwrap()
    }

    #[test]
    fn cluster_ip_balances_at_random_over_every_endpoint() {
        let p = port(vec![
            ep("10.244.0.5", false),
            ep("10.244.1.5", false),
            ep("10.244.2.5", true),
        ]);
        let rules = ruleset(std::slice::from_ref(&p), cidr());
        let nat = rules.chains(Table::Nat);
        let svc = &nat[&service_chain(&p)];
        assert!(
            svc[0].contains("! -s 10.244.0.0/16 -d 10.96.0.20/32"),
            "{svc:?}"
        );
        assert!(svc[1].contains("--probability 0.3333333333"), "{svc:?}");
        assert!(svc[2].contains("--probability 0.5000000000"), "{svc:?}");
        assert!(!svc[3].contains("statistic"), "{svc:?}");
        let seps: Vec<&String> = nat
            .keys()
            .filter(|k| k.starts_with("KUBELAB-SEP-"))
            .collect();
        assert_eq!(seps.len(), 3);
        let dnat = &nat[seps[0]][1];
        assert!(dnat.contains("-j DNAT --to-destination 10.244."), "{dnat}");
        assert!(nat[SERVICES][0].contains(&format!(
            "-d 10.96.0.20/32 -p tcp -m tcp --dport 80 -j {}",
            service_chain(&p)
        )));
        assert!(nat[SERVICES].last().unwrap().ends_with(NODEPORTS));
        assert!(rules.chains(Table::Filter)[SERVICES].is_empty());
        for name in nat.keys() {
            assert!(name.len() <= 28, "{name}");
        }
    }

    #[test]
    fn no_ready_endpoints_rejects_at_once() {
        let mut p = port(Vec::new());
        p.node_port = Some(30080);
        p.external_ips = vec!["172.18.255.1".parse().unwrap()];
        let rules = ruleset(std::slice::from_ref(&p), cidr());
        let rejects = &rules.chains(Table::Filter)[SERVICES];
        assert_eq!(rejects.len(), 3, "{rejects:?}");
        assert!(rejects
            .iter()
            .all(|r| r.ends_with("-j REJECT --reject-with tcp-reset")));
        assert!(rejects[0].contains("-d 10.96.0.20/32 -p tcp -m tcp --dport 80"));
        assert!(rejects[2].contains("--dst-type LOCAL -p tcp -m tcp --dport 30080"));
        assert!(!rules.chains(Table::Nat).contains_key(&service_chain(&p)));
        // UDP has no reset: the ICMP error.
        p.protocol = Protocol::Udp;
        let rules = ruleset(std::slice::from_ref(&p), cidr());
        let rejects = &rules.chains(Table::Filter)[SERVICES];
        assert!(rejects[0].ends_with("-j REJECT --reject-with icmp-port-unreachable"));
    }

    #[test]
    fn node_port_with_cluster_policy_masquerades() {
        let mut p = port(vec![ep("10.244.1.5", false)]);
        p.node_port = Some(30080);
        let rules = ruleset(std::slice::from_ref(&p), cidr());
        let nat = rules.chains(Table::Nat);
        assert_eq!(nat[NODEPORTS].len(), 1);
        assert!(nat[NODEPORTS][0].contains("--dport 30080 -j KUBELAB-EXT-"));
        let ext = nat
            .iter()
            .find(|(k, _)| k.starts_with("KUBELAB-EXT-"))
            .unwrap()
            .1;
        assert_eq!(
            ext,
            &vec![
                format!("-j {MARK_MASQ}"),
                format!("-j {}", service_chain(&p))
            ]
        );
    }

    #[test]
    fn local_policy_keeps_external_traffic_on_local_endpoints() {
        let mut p = port(vec![ep("10.244.1.5", false), ep("10.244.0.5", true)]);
        p.node_port = Some(30080);
        p.external_local = true;
        let rules = ruleset(std::slice::from_ref(&p), cidr());
        let nat = rules.chains(Table::Nat);
        let svl = nat
            .iter()
            .find(|(k, _)| k.starts_with("KUBELAB-SVL-"))
            .unwrap()
            .1;
        assert_eq!(svl.len(), 1, "one local endpoint: {svl:?}");
        assert!(
            !svl.iter().any(|r| r.contains(MARK_MASQ)),
            "client address kept"
        );
        // Without a local endpoint: external traffic dropped, pods still served.
        let mut remote = p.clone();
        remote.endpoints = vec![ep("10.244.1.5", false)];
        let rules = ruleset(&[remote], cidr());
        assert!(!rules
            .chains(Table::Nat)
            .keys()
            .any(|k| k.starts_with("KUBELAB-SVL-")));
        let drops = &rules.chains(Table::Filter)[SERVICES];
        assert!(drops[0].contains("--dport 30080 -j DROP"), "{drops:?}");
    }

    #[test]
    fn session_affinity_checks_recent_clients_first() {
        let mut p = port(vec![ep("10.244.0.5", false), ep("10.244.1.5", false)]);
        p.affinity_seconds = Some(60);
        let rules = ruleset(std::slice::from_ref(&p), cidr());
        let nat = rules.chains(Table::Nat);
        let svc = &nat[&service_chain(&p)];
        assert!(
            svc[1].contains("-m recent --name KUBELAB-SEP-")
                && svc[1].contains("--rcheck --seconds 60 --reap")
        );
        assert!(svc[3].contains("statistic"));
        let sep = nat
            .iter()
            .find(|(k, _)| k.starts_with("KUBELAB-SEP-"))
            .unwrap();
        assert!(sep.1[1].contains(&format!("-m recent --name {} --set", sep.0)));
    }

    #[test]
    fn restore_rewrites_only_changed_chains_and_deletes_stale_ones() {
        let a = port(vec![ep("10.244.0.5", false)]);
        let mut b = port(vec![ep("10.244.1.5", false)]);
        b.name = "default/other:http".into();
        b.cluster_ip = "10.96.0.21".parse().unwrap();
        let first = ruleset(&[a.clone(), b.clone()], cidr());
        let nat = first.chains(Table::Nat);
        let input = restore_input(Table::Nat, &Programmed::new(), nat).unwrap();
        assert!(input.starts_with("*nat\n") && input.ends_with("COMMIT\n"));
        let programmed: Programmed = nat
            .iter()
            .map(|(k, v)| (k.clone(), Some(v.clone())))
            .collect();
        assert_eq!(restore_input(Table::Nat, &programmed, nat), None);

        // One more endpoint for `a`: its service chain and the new endpoint chain only.
        let mut a2 = a.clone();
        a2.endpoints.push(ep("10.244.2.5", false));
        let second = ruleset(&[a2.clone(), b.clone()], cidr());
        let input = restore_input(Table::Nat, &programmed, second.chains(Table::Nat)).unwrap();
        let declared: Vec<&str> = input.lines().filter(|l| l.starts_with(':')).collect();
        assert_eq!(declared.len(), 2, "{input}");
        assert!(input.contains(&format!(":{} ", service_chain(&a2))));
        assert!(!input.contains(&service_chain(&b)));
        assert!(!input.contains("-X"));

        // `b` gone: its chains are flushed and deleted, KUBELAB-SERVICES rewritten.
        let third = ruleset(std::slice::from_ref(&a), cidr());
        let input = restore_input(Table::Nat, &programmed, third.chains(Table::Nat)).unwrap();
        assert!(
            input.contains(&format!("-X {}", service_chain(&b))),
            "{input}"
        );
        assert!(input.contains(&format!(":{SERVICES} - [0:0]")));
        let flush = input
            .find(&format!(":{} - [0:0]", service_chain(&b)))
            .unwrap();
        let delete = input.find(&format!("-X {}", service_chain(&b))).unwrap();
        assert!(flush < delete);
    }

    #[test]
    fn unknown_chains_found_at_start_are_rewritten_or_deleted() {
        let saved = "*nat\n:PREROUTING ACCEPT [0:0]\n:KUBELAB-SERVICES - [0:0]\n:KUBELAB-SVC-OLD - [0:0]\n:DOCKER - [0:0]\n-A KUBELAB-SVC-OLD -j KUBELAB-SEP-OLD\n-A DOCKER -j RETURN\nCOMMIT\n";
        let found = saved_chains(saved);
        assert_eq!(
            found,
            BTreeMap::from([
                ("KUBELAB-SERVICES".into(), 0),
                ("KUBELAB-SVC-OLD".into(), 1)
            ])
        );
        let programmed: Programmed = found.into_keys().map(|c| (c, None)).collect();
        let rules = ruleset(&[], cidr());
        let input = restore_input(Table::Nat, &programmed, rules.chains(Table::Nat)).unwrap();
        assert!(input.contains("-X KUBELAB-SVC-OLD"));
        assert!(input.contains(":KUBELAB-SERVICES - [0:0]"));
        assert!(!input.contains("DOCKER"));
    }
}
