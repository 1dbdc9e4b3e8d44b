//! The proxy loop: reflectors of Services, EndpointSlices and Nodes wake one sync task; each
//! sync computes the wanted routes and chains from the caches and writes only the
//! difference to what it programmed before ([`Syncer`]). Changes that arrive during a sync are
//! coalesced into the next one.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Node, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::runtime::reflector::{self, reflector, Store};
use kube::runtime::{watcher, WatchStreamExt};
use kube::{Api, Client, Resource};
use tokio::sync::Notify;

use crate::model::{service_ports, Cidr, Protocol, ServicePort, SERVICE_NAME_LABEL};
use crate::routes::{desired_routes, plan};
use crate::rules::{jumps, restore_input, ruleset, Programmed, Table};
use crate::system::{Conntrack, Iptables, RouteTable};
use crate::Error;

/// What the proxy needs to know about its node.
#[derive(Clone, Debug)]
pub struct Config {
    /// This node: its podCIDR is not routed, its endpoints are the local ones.
    pub node_name: String,
    /// Every pod address is in it (node IPAM's cluster CIDR): traffic from it is pod traffic.
    pub cluster_cidr: Cidr,
}

/// What one sync did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SyncStats {
    /// Service ports routed (with or without endpoints).
    pub service_ports: usize,
    /// Chains declared (rewritten or deleted) by this sync.
    pub chains_written: usize,
    /// Rules of the whole wanted ruleset.
    pub rules: usize,
    /// Routes added, replaced or deleted.
    pub routes_changed: usize,
    /// Conntrack entries of removed UDP endpoints deleted.
    pub conntrack_deleted: usize,
}

/// Keeps the node's routes and chains in line with the wanted state, writing differences.
pub struct Syncer<I, R> {
    config: Config,
    iptables: I,
    routes: R,
    /// What this process programmed (`None`: nothing known, read the tables first).
    programmed: Option<BTreeMap<Table, Programmed>>,
    /// The routes of the last successful route sync (unchanged nodes: nothing to do).
    routed: Option<Vec<crate::routes::Route>>,
    /// Where removed UDP endpoints' conntrack entries are deleted (None: not done).
    conntrack: Option<Box<dyn Conntrack>>,
    /// The UDP endpoints of the last sync.
    udp_endpoints: BTreeSet<(Ipv4Addr, u16)>,
}

impl<I: Iptables, R: RouteTable> Syncer<I, R> {
    pub fn new(config: Config, iptables: I, routes: R) -> Self {
        Syncer {
            config,
            iptables,
            routes,
            programmed: None,
            routed: None,
            conntrack: None,
            udp_endpoints: BTreeSet::new(),
        }
    }

    /// Checks that the tables still hold what this process programmed — every chain with as
    /// many rules, every jump from the built-in chains — and that the routes are in place at
    /// the next sync. Something else flushing them (an `iptables -F`, a restarted firewall)
    /// makes the next sync start from the tables again. Returns whether they had drifted.
    pub fn verify(&mut self) -> Result<bool, Error> {
        self.routed = None;
        let Some(programmed) = &self.programmed else {
            return Ok(false);
        };
        let mut drifted = false;
        for table in Table::ALL {
            let found = self.iptables.chains(table)?;
            let expected: BTreeMap<String, usize> = programmed
                .get(&table)
                .into_iter()
                .flatten()
                .map(|(k, v)| (k.clone(), v.as_ref().map_or(usize::MAX, Vec::len)))
                .collect();
            drifted |= found != expected;
        }
        for jump in jumps() {
            drifted |= self.iptables.ensure_jump(&jump)?;
        }
        if drifted {
            self.programmed = None;
        }
        Ok(drifted)
    }

    /// Deletes the conntrack entries of UDP endpoints a sync removed, through `conntrack`.
    pub fn with_conntrack(mut self, conntrack: impl Conntrack) -> Self {
        self.conntrack = Some(Box::new(conntrack));
        self
    }

    pub fn iptables(&self) -> &I {
        &self.iptables
    }

    pub fn routes(&self) -> &R {
        &self.routes
    }

    /// One sync from the objects in the caches.
    pub fn sync(
        &mut self,
        services: &[Arc<Service>],
        slices: &[Arc<EndpointSlice>],
        nodes: &[Arc<Node>],
    ) -> Result<SyncStats, Error> {
        let routes = self.sync_routes(nodes.iter().map(|n| n.as_ref()));
        let ports = ports_of(services, slices, &self.config.node_name);
        let mut stats = self.sync_ports(&ports)?;
        stats.routes_changed = routes?;
        Ok(stats)
    }

    /// Keeps a route to every other node's podCIDR; returns how many routes changed.
    pub fn sync_routes<'a>(
        &mut self,
        nodes: impl IntoIterator<Item = &'a Node>,
    ) -> Result<usize, Error> {
        let desired = desired_routes(nodes, &self.config.node_name);
        if self.routed.as_ref() == Some(&desired) {
            return Ok(0);
        }
        self.routed = None;
        let current = self.routes.list()?;
        let (add, delete) = plan(&current, &desired);
        for route in &delete {
            self.routes.delete(route)?;
            tracing::info!(destination = %route.destination, gateway = %route.gateway, "pod route removed");
        }
        for route in &add {
            self.routes.replace(route)?;
            tracing::info!(destination = %route.destination, gateway = %route.gateway, "pod route added");
        }
        self.routed = Some(desired);
        Ok(add.len() + delete.len())
    }

    /// Programs the chains for `ports`, writing only those that changed.
    pub fn sync_ports(&mut self, ports: &[ServicePort]) -> Result<SyncStats, Error> {
        let first = self.programmed.is_none();
        let mut programmed = match self.programmed.take() {
            Some(p) => p,
            None => {
                let mut found = BTreeMap::new();
                for table in Table::ALL {
                    let chains = self.iptables.chains(table)?;
                    found.insert(table, chains.into_keys().map(|c| (c, None)).collect());
                }
                found
            }
        };
        let mut wanted = ruleset(ports, self.config.cluster_cidr);
        let mut stats = SyncStats {
            service_ports: ports.len(),
            rules: wanted.rule_count(),
            ..SyncStats::default()
        };
        let mut input = String::new();
        for table in Table::ALL {
            let current = programmed.entry(table).or_default();
            if let Some(text) = restore_input(table, current, wanted.chains(table)) {
                input.push_str(&text);
            }
        }
        if !input.is_empty() {
            stats.chains_written = input.lines().filter(|l| l.starts_with(':')).count();
            // On failure nothing is known any more: the next sync reads the tables again.
            self.iptables.restore(&input)?;
        }
        for table in Table::ALL {
            let desired = wanted.tables.remove(&table).unwrap_or_default();
            programmed.insert(
                table,
                desired.into_iter().map(|(k, v)| (k, Some(v))).collect(),
            );
        }
        if first {
            for jump in jumps() {
                self.iptables.ensure_jump(&jump)?;
            }
        }

        self.programmed = Some(programmed);
        // Only now, with the rules no longer leading there: new packets of an old UDP flow
        // then make a new entry, DNATed to a current endpoint.
        let udp: BTreeSet<(Ipv4Addr, u16)> = ports
            .iter()
            .filter(|p| p.protocol == Protocol::Udp)
            .flat_map(|p| p.endpoints.iter().map(|e| (e.ip, e.port)))
            .collect();
        let removed: Vec<(Ipv4Addr, u16)> = self.udp_endpoints.difference(&udp).copied().collect();
        self.udp_endpoints = udp;
        if let (Some(conntrack), false) = (self.conntrack.as_mut(), removed.is_empty()) {
            match conntrack.delete_answered_by(crate::conntrack::UDP, &removed) {
                Ok(n) => stats.conntrack_deleted = n,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot delete conntrack entries of removed UDP endpoints")
                }
            }
        }
        Ok(stats)
    }
}

/// The Service ports of `services` with their endpoints from `slices`.
pub fn ports_of(
    services: &[Arc<Service>],
    slices: &[Arc<EndpointSlice>],
    node_name: &str,
) -> Vec<ServicePort> {
    let mut by_service: HashMap<(&str, &str), Vec<&EndpointSlice>> = HashMap::new();
    for slice in slices {
        let Some(service) = slice
            .metadata
            .labels
            .as_ref()
            .and_then(|l| l.get(SERVICE_NAME_LABEL))
        else {
            continue;
        };
        let namespace = slice.metadata.namespace.as_deref().unwrap_or_default();
        by_service
            .entry((namespace, service.as_str()))
            .or_default()
            .push(slice);
    }
    let mut ports = Vec::new();
    for service in services {
        let key = (
            service.metadata.namespace.as_deref().unwrap_or_default(),
            service.metadata.name.as_deref().unwrap_or_default(),
        );
        let slices = by_service.get(&key).map(Vec::as_slice).unwrap_or_default();
        ports.extend(service_ports(service, slices, node_name));
    }
    ports
}

/// Follows `K` cluster-wide into a store; every change wakes `wake`.
fn follow<K>(client: &Client, wake: Arc<Notify>) -> Store<K>
where
    K: Resource<DynamicType = ()>
        + Clone
        + std::fmt::Debug
        + serde::de::DeserializeOwned
        + Send
        + Sync
        + 'static,
{
    let (store, writer) = reflector::store::<K>();
    let api: Api<K> = Api::all(client.clone());
    let stream = reflector(
        writer,
        watcher(api, watcher::Config::default()).modify(|o| o.meta_mut().managed_fields = None),
    )
    .default_backoff();
    tokio::spawn(async move {
        futures::pin_mut!(stream);
        while let Some(event) = stream.next().await {
            match event {
                Ok(_) => wake.notify_one(),
                Err(e) => {
                    tracing::warn!(error = %e, kind = %K::kind(&()), "watch failed; retrying")
                }
            }
        }
    });
    store
}

/// Runs the proxy until the task is dropped: routes and rules follow the cluster.
pub async fn run<I: Iptables, R: RouteTable, C: Conntrack>(
    client: Client,
    config: Config,
    iptables: I,
    routes: R,
    conntrack: C,
) -> Result<(), Error> {
    let wake = Arc::new(Notify::new());
    let services = follow::<Service>(&client, wake.clone());
    let slices = follow::<EndpointSlice>(&client, wake.clone());
    let nodes = follow::<Node>(&client, wake.clone());
    for ready in [
        services.wait_until_ready().await.is_ok(),
        slices.wait_until_ready().await.is_ok(),
        nodes.wait_until_ready().await.is_ok(),
    ] {
        if !ready {
            return Ok(());
        }
    }
    tracing::info!(node = %config.node_name, cluster_cidr = %config.cluster_cidr, "service proxy started");
    let mut syncer = Some(Syncer::new(config, iptables, routes).with_conntrack(conntrack));
    let mut check = tokio::time::interval(VERIFY_INTERVAL);
    check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    check.tick().await;
    let mut verify = false;
    loop {
        let (s, e, n) = (services.state(), slices.state(), nodes.state());
        let mut worker = syncer.take().expect("syncer");
        let started = Instant::now();
        let (worker, result) = tokio::task::spawn_blocking(move || {
            if verify {
                match worker.verify() {
                    Ok(true) => tracing::warn!(
                        "proxy rules or routes changed behind the proxy's back; rewriting them"
                    ),
                    Ok(false) => {}
                    Err(e) => tracing::warn!(error = %e, "cannot check the proxy rules"),
                }
            }
            let result = worker.sync(&s, &e, &n);
            (worker, result)
        })
        .await
        .expect("sync task");
        syncer = Some(worker);
        match result {
            Ok(stats)
                if stats.chains_written > 0
                    || stats.routes_changed > 0
                    || stats.conntrack_deleted > 0 =>
            {
                tracing::info!(
                    ports = stats.service_ports,
                    chains_written = stats.chains_written,
                    rules = stats.rules,
                    routes_changed = stats.routes_changed,
                    conntrack_deleted = stats.conntrack_deleted,
                    elapsed_ms = started.elapsed().as_millis() as u64,
                    "proxy rules synced"
                );
            }
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(error = %e, "proxy sync failed; retrying");
                tokio::select! {
                    _ = wake.notified() => {}
                    _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                }
                continue;
            }
        }
        verify = tokio::select! {
            _ = wake.notified() => false,
            _ = check.tick() => true,
        };
    }
}

/// How often the proxy checks that its rules and routes are still in place.
const VERIFY_INTERVAL: Duration = Duration::from_secs(30);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::tests::{service, slice};
    use crate::rules::{POSTROUTING, SERVICES};
    use crate::system::{FakeIptables, FakeRoutes};
    use serde_json::json;

    fn config() -> Config {
        Config {
            node_name: "a".into(),
            cluster_cidr: "10.244.0.0/16".parse().unwrap(),
        }
    }

    fn web_slice(ips: &[&str]) -> Arc<EndpointSlice> {
        let endpoints: Vec<_> = ips
            .iter()
            .map(|ip| json!({"addresses": [ip], "conditions": {"ready": true}}))
            .collect();
        Arc::new(slice(json!({
            "metadata": {"name": "web-x", "namespace": "default",
                         "labels": {SERVICE_NAME_LABEL: "web"}},
            "addressType": "IPv4",
            "ports": [{"name": "", "port": 80}],
            "endpoints": endpoints
        })))
    }

    #[test]
    fn syncs_write_only_what_changed() {
        let web = Arc::new(service(
            json!({"metadata": {"name": "web", "namespace": "default"},
            "spec": {"clusterIP": "10.96.0.20", "ports": [{"port": 80}]}}),
        ));
        let mut syncer = Syncer::new(config(), FakeIptables::default(), FakeRoutes::default());
        let first = syncer
            .sync(
                std::slice::from_ref(&web),
                &[web_slice(&["10.244.1.2"])],
                &[],
            )
            .unwrap();
        assert!(first.chains_written > 0);
        assert_eq!(syncer.iptables().jumps.len(), jumps().len());
        let nat = &syncer.iptables().tables[&Table::Nat];
        assert!(nat.contains_key(POSTROUTING));
        assert_eq!(nat[SERVICES].len(), 2);

        let again = syncer
            .sync(
                std::slice::from_ref(&web),
                &[web_slice(&["10.244.1.2"])],
                &[],
            )
            .unwrap();
        assert_eq!(again.chains_written, 0, "nothing changed, nothing written");

        // A second endpoint: the service chain and one endpoint chain.
        let more = syncer
            .sync(
                std::slice::from_ref(&web),
                &[web_slice(&["10.244.1.2", "10.244.2.2"])],
                &[],
            )
            .unwrap();
        assert_eq!(more.chains_written, 2);

        // No endpoints: the nat chains go, a reject appears.
        syncer
            .sync(std::slice::from_ref(&web), &[web_slice(&[])], &[])
            .unwrap();
        let tables = &syncer.iptables().tables;
        assert!(!tables[&Table::Nat]
            .keys()
            .any(|k| k.starts_with("KUBELAB-SEP-")));
        assert_eq!(tables[&Table::Filter][SERVICES].len(), 1);
    }

    #[test]
    fn removed_udp_endpoints_lose_their_conntrack_entries() {
        let dns = Arc::new(service(
            json!({"metadata": {"name": "dns", "namespace": "default"},
            "spec": {"clusterIP": "10.96.0.10", "ports": [{"name": "dns", "port": 53, "protocol": "UDP"}]}}),
        ));
        let slice = |ips: &[&str]| {
            let endpoints: Vec<_> = ips.iter().map(|ip| json!({"addresses": [ip]})).collect();
            Arc::new(crate::model::tests::slice(json!({
                "metadata": {"name": "dns-x", "namespace": "default",
                             "labels": {SERVICE_NAME_LABEL: "dns"}},
                "addressType": "IPv4",
                "ports": [{"name": "dns", "port": 53, "protocol": "UDP"}],
                "endpoints": endpoints
            })))
        };
        let mut syncer = Syncer::new(config(), FakeIptables::default(), FakeRoutes::default())
            .with_conntrack(crate::system::FakeConntrack::default());
        let services = std::slice::from_ref(&dns);
        syncer
            .sync(services, &[slice(&["10.244.1.2", "10.244.2.2"])], &[])
            .unwrap();
        syncer
            .sync(services, &[slice(&["10.244.2.2"])], &[])
            .unwrap();
        syncer
            .sync(services, &[slice(&["10.244.2.2", "10.244.3.2"])], &[])
            .unwrap();
        let conntrack = syncer.conntrack.as_ref().unwrap();
        let fake = format!("{conntrack:?}");
        assert_eq!(
            fake, "FakeConntrack { deleted: [(17, [(10.244.1.2, 53)])] }",
            "only the removal asks for a deletion"
        );
    }

    #[test]
    fn rules_flushed_behind_its_back_are_rewritten() {
        let web = Arc::new(service(
            json!({"metadata": {"name": "web", "namespace": "default"},
            "spec": {"clusterIP": "10.96.0.20", "ports": [{"port": 80}]}}),
        ));
        let services = std::slice::from_ref(&web);
        let slices = [web_slice(&["10.244.1.2"])];
        let mut syncer = Syncer::new(config(), FakeIptables::default(), FakeRoutes::default());
        syncer.sync(services, &slices, &[]).unwrap();
        assert!(!syncer.verify().unwrap(), "nothing changed");
        assert_eq!(
            syncer.sync(services, &slices, &[]).unwrap().chains_written,
            0
        );

        // `iptables -t nat -F KUBELAB-SERVICES`, and a jump deleted.
        syncer
            .iptables
            .tables
            .get_mut(&Table::Nat)
            .unwrap()
            .get_mut(SERVICES)
            .unwrap()
            .clear();
        syncer.iptables.jumps.pop();
        assert!(syncer.verify().unwrap());
        syncer.sync(services, &slices, &[]).unwrap();
        assert_eq!(syncer.iptables().tables[&Table::Nat][SERVICES].len(), 2);
        assert_eq!(syncer.iptables().jumps.len(), jumps().len());
    }

    #[test]
    fn a_restarted_proxy_removes_chains_it_no_longer_wants() {
        let mut iptables = FakeIptables::default();
        iptables.tables.entry(Table::Nat).or_default().insert(
            "KUBELAB-SVC-GONE".into(),
            vec!["-j KUBELAB-SEP-GONE".into()],
        );
        let mut syncer = Syncer::new(config(), iptables, FakeRoutes::default());
        syncer.sync(&[], &[], &[]).unwrap();
        assert!(!syncer.iptables().tables[&Table::Nat].contains_key("KUBELAB-SVC-GONE"));
    }

    #[test]
    fn routes_follow_nodes() {
        let node = |name: &str, ip: &str, cidr: &str| {
            Arc::new(
                serde_json::from_value::<Node>(json!({
                    "metadata": {"name": name},
                    "spec": {"podCIDR": cidr},
                    "status": {"addresses": [{"type": "InternalIP", "address": ip}]}
                }))
                .unwrap(),
            )
        };
        let mut syncer = Syncer::new(config(), FakeIptables::default(), FakeRoutes::default());
        let nodes = [
            node("a", "172.18.0.2", "10.244.0.0/24"),
            node("b", "172.18.0.3", "10.244.1.0/24"),
            node("c", "172.18.0.4", "10.244.2.0/24"),
        ];
        let stats = syncer.sync(&[], &[], &nodes).unwrap();
        assert_eq!(stats.routes_changed, 2);
        assert_eq!(syncer.routes().routes.len(), 2);
        syncer.sync(&[], &[], &nodes[..2]).unwrap();
        assert_eq!(syncer.routes().routes.len(), 1, "node c left");
    }
}
