//! The layer-2 speaker (`kubelab metallb speaker`, a DaemonSet of hostNetwork pods with
//! CAP_NET_RAW): reflectors of Services, EndpointSlices, Nodes, the speaker pods, the pools and
//! L2Advertisements feed [`election::elect`]; the addresses this node wins are answered for
//! by a thread reading every ARP request on the node (`socket.rs`) and replying with the MAC
//! of the interface the request came in on — the interface whose network holds the address,
//! or one the L2Advertisement names. A newly won address is announced at once with a
//! gratuitous ARP, repeated for 5 s while the node still owns it (so a host that knew another
//! node's MAC for it switches), and a Normal `nodeAssigned` event on the Service says which
//! node announces it.
//!
//! Traffic that reaches the node for the address is the service proxy's business (the
//! `status.loadBalancer.ingress` DNAT rules of `crates/proxy`); the speaker never touches
//! packets other than ARP.

pub mod arp;
pub mod election;
pub mod socket;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::Ipv4Addr;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Node, Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::Api;
use kube::api::DynamicObject;
use kube::runtime::reflector::store::Writer;
use kube::runtime::reflector::Store;
use kube::{Resource, ResourceExt};
use tokio::sync::Notify;

use crate::controller::{l2_resource, pool_resource, reflect, reflect_dynamic};
use crate::events::Events;
use crate::model::{L2Advertisement, Pool, ServiceView};
use crate::{Error, Result};
use election::{Announcement, NodeView, ServiceAddresses};

/// The labels of the speaker pods (the addon's DaemonSet).
pub const SPEAKER_SELECTOR: &str = "app=metallb,component=speaker";

/// Addresses this node answers for → interfaces it may answer on (empty: by network).
type Owned = Arc<RwLock<BTreeMap<Ipv4Addr, Vec<String>>>>;

fn may_answer(interfaces: &[String], interface: &socket::Interface, ip: Ipv4Addr) -> bool {
    if interfaces.is_empty() {
        interface.holds(ip)
    } else {
        interfaces.contains(&interface.name)
    }
}

/// The ARP responder: runs on its own thread for as long as the process.
fn respond(arp_socket: socket::ArpSocket, owned: Owned) {
    let mut buffer = [0u8; 1600];
    let mut interfaces = socket::interfaces().unwrap_or_default();
    let mut listed = Instant::now();
    loop {
        let received = match arp_socket.receive(&mut buffer) {
            Ok(Some(received)) => received,
            Ok(None) => continue,
            Err(e) => {
                tracing::warn!(error = %e, "ARP receive failed");
                std::thread::sleep(Duration::from_millis(100));
                continue;
            }
        };
        let (len, index) = received;
        let Some(request) = arp::parse_request(&buffer[..len]) else {
            continue;
        };
        let allowed = match owned.read() {
            Ok(owned) => owned.get(&request.target_ip).cloned(),
            Err(_) => None,
        };
        let Some(allowed) = allowed else {
            continue;
        };
        if !interfaces.contains_key(&index) || listed.elapsed() > Duration::from_secs(30) {
            interfaces = socket::interfaces().unwrap_or_default();
            listed = Instant::now();
        }
        let Some(interface) = interfaces.get(&index) else {
            continue;
        };
        if !may_answer(&allowed, interface, request.target_ip) {
            continue;
        }
        match arp_socket.send(interface, &arp::reply(&request, interface.mac)) {
            Ok(()) => tracing::debug!(
                ip = %request.target_ip, asker = %request.sender_ip, interface = %interface.name,
                "answered ARP request"
            ),
            Err(e) => tracing::warn!(error = %e, "cannot answer an ARP request"),
        }
    }
}

struct Stores {
    services: Store<Service>,
    slices: Store<EndpointSlice>,
    nodes: Store<Node>,
    pods: Store<Pod>,
    pools: Store<DynamicObject>,
    advertisements: Store<DynamicObject>,
}

fn condition_true(conditions: Option<&Vec<impl HasCondition>>, type_: &str) -> bool {
    conditions
        .into_iter()
        .flatten()
        .any(|c| c.kind() == type_ && c.status() == "True")
}

trait HasCondition {
    fn kind(&self) -> &str;
    fn status(&self) -> &str;
}

impl HasCondition for k8s_openapi::api::core::v1::NodeCondition {
    fn kind(&self) -> &str {
        &self.type_
    }
    fn status(&self) -> &str {
        &self.status
    }
}

impl HasCondition for k8s_openapi::api::core::v1::PodCondition {
    fn kind(&self) -> &str {
        &self.type_
    }
    fn status(&self) -> &str {
        &self.status
    }
}

impl Stores {
    fn announcements(&self) -> Vec<Announcement> {
        let live_speakers: BTreeSet<String> = self
            .pods
            .state()
            .iter()
            .filter(|p| p.metadata.deletion_timestamp.is_none())
            .filter(|p| {
                condition_true(
                    p.status.as_ref().and_then(|s| s.conditions.as_ref()),
                    "Ready",
                )
            })
            .filter_map(|p| p.spec.as_ref()?.node_name.clone())
            .collect();
        let nodes: BTreeMap<String, NodeView> = self
            .nodes
            .state()
            .iter()
            .map(|n| {
                let ready = condition_true(
                    n.status.as_ref().and_then(|s| s.conditions.as_ref()),
                    "Ready",
                );
                (
                    n.name_any(),
                    NodeView {
                        labels: n.labels().clone(),
                        live: ready && live_speakers.contains(&n.name_any()),
                    },
                )
            })
            .collect();
        let slices = self.slices.state();
        let services: Vec<ServiceAddresses> = self
            .services
            .state()
            .iter()
            .filter(|s| {
                s.metadata.deletion_timestamp.is_none()
                    && s.spec.as_ref().and_then(|s| s.type_.as_deref()) == Some("LoadBalancer")
            })
            .map(|s| {
                let view = ServiceView::from_service(s);
                let local = s
                    .spec
                    .as_ref()
                    .and_then(|s| s.external_traffic_policy.as_deref())
                    == Some("Local");
                let local_nodes = local.then(|| {
                    slices
                        .iter()
                        .filter(|slice| {
                            slice.namespace() == s.namespace()
                                && slice.labels().get("kubernetes.io/service-name")
                                    == Some(&s.name_any())
                        })
                        .flat_map(|slice| slice.endpoints.iter())
                        .filter(|e| e.conditions.as_ref().and_then(|c| c.ready).unwrap_or(true))
                        .filter_map(|e| e.node_name.clone())
                        .collect()
                });
                ServiceAddresses {
                    key: view.key,
                    ips: view.current,
                    local_nodes,
                }
            })
            .collect();
        let pools: Vec<Pool> = self
            .pools
            .state()
            .iter()
            .map(|p| Pool::from_object(p))
            .collect();
        let advertisements: Vec<L2Advertisement> = self
            .advertisements
            .state()
            .iter()
            .map(|a| L2Advertisement::from_object(a))
            .collect();
        election::elect(&services, &pools, &advertisements, &nodes)
    }
}

/// Runs the speaker of node `node` for the MetalLB objects of `namespace`.
pub async fn run(client: kube::Client, node: &str, namespace: &str) -> Result<()> {
    let arp_socket = socket::ArpSocket::open()?;
    let owned: Owned = Arc::default();
    {
        let owned = owned.clone();
        std::thread::Builder::new()
            .name("arp-responder".into())
            .spawn(move || respond(arp_socket, owned))
            .map_err(|e| Error::Socket {
                operation: "start the ARP responder thread",
                interface: "any".into(),
                source: e,
            })?;
    }
    let notify = Arc::new(Notify::new());
    let mut tasks = tokio::task::JoinSet::new();
    let services = Writer::<Service>::default();
    let slices = Writer::<EndpointSlice>::default();
    let nodes = Writer::<Node>::default();
    let pods = Writer::<Pod>::default();
    let pools = Writer::new(pool_resource());
    let advertisements = Writer::new(l2_resource());
    let stores = Stores {
        services: services.as_reader(),
        slices: slices.as_reader(),
        nodes: nodes.as_reader(),
        pods: pods.as_reader(),
        pools: pools.as_reader(),
        advertisements: advertisements.as_reader(),
    };
    tasks.spawn(reflect(services, Api::all(client.clone()), notify.clone()));
    tasks.spawn(reflect(slices, Api::all(client.clone()), notify.clone()));
    tasks.spawn(reflect(nodes, Api::all(client.clone()), notify.clone()));
    tasks.spawn(reflect_pods(
        pods,
        Api::namespaced(client.clone(), namespace),
        notify.clone(),
    ));
    tasks.spawn(reflect_dynamic(
        pools,
        Api::namespaced_with(client.clone(), namespace, &pool_resource()),
        notify.clone(),
    ));
    tasks.spawn(reflect_dynamic(
        advertisements,
        Api::namespaced_with(client.clone(), namespace, &l2_resource()),
        notify.clone(),
    ));
    let ready = async {
        stores.services.wait_until_ready().await.ok();
        stores.slices.wait_until_ready().await.ok();
        stores.nodes.wait_until_ready().await.ok();
        stores.pods.wait_until_ready().await.ok();
        stores.pools.wait_until_ready().await.ok();
        stores.advertisements.wait_until_ready().await.ok();
    };
    tokio::select! {
        _ = ready => {}
        _ = tasks.join_next() => return Err(Error::WatchEnded("the speaker")),
    }
    tracing::info!(node, namespace, "metallb speaker: caches synced");
    let events = Events::new(client.clone(), "metallb-speaker", Some(node.to_owned()));
    // (service uid, address) already reported as announced from this node.
    let mut reported: HashMap<(String, Ipv4Addr), ()> = HashMap::new();
    loop {
        let mine: Vec<Announcement> = stores
            .announcements()
            .into_iter()
            .filter(|a| a.node == node)
            .collect();
        let wanted: BTreeMap<Ipv4Addr, Vec<String>> =
            mine.iter().map(|a| (a.ip, a.interfaces.clone())).collect();
        let previous = owned.read().map(|o| o.clone()).unwrap_or_default();
        if previous != wanted {
            if let Ok(mut o) = owned.write() {
                *o = wanted.clone();
            }
            for (ip, interfaces) in &wanted {
                if !previous.contains_key(ip) {
                    tracing::info!(%ip, "announcing");
                    announce(*ip, interfaces.clone(), owned.clone());
                }
            }
            for ip in previous.keys().filter(|ip| !wanted.contains_key(ip)) {
                tracing::info!(%ip, "no longer announcing");
            }
        }
        let mut still = HashMap::new();
        for a in &mine {
            let Some(svc) = stores.services.state().into_iter().find(|s| {
                format!("{}/{}", s.namespace().unwrap_or_default(), s.name_any()) == a.service
            }) else {
                continue;
            };
            let key = (svc.uid().unwrap_or_default(), a.ip);
            if !reported.contains_key(&key) {
                events
                    .publish(
                        &svc.object_ref(&()),
                        "Normal",
                        "nodeAssigned",
                        format!(
                            "announcing {} from node {node:?} with protocol \"layer2\"",
                            a.ip
                        ),
                    )
                    .await;
            }
            still.insert(key, ());
        }
        reported = still;
        tokio::select! {
            _ = notify.notified() => {}
            _ = tokio::time::sleep(Duration::from_secs(10)) => {}
            _ = tasks.join_next() => return Err(Error::WatchEnded("the speaker")),
        }
    }
}

/// When gratuitous ARPs for a newly won address go out, from the takeover. Linux ignores an
/// update of a neighbour entry younger than its `locktime` (1 s by default): when two speakers
/// briefly disagree (a readiness change not yet seen by both), the loser's announcement must
/// not be the last one the host accepted, so the winner repeats past that window.
const GRATUITOUS_SCHEDULE_MS: &[u64] = &[0, 1200, 2500, 5000];

/// Gratuitous ARP for `ip` on the interfaces that may carry it, on a thread of its own, for
/// as long as this node still owns the address (best effort).
fn announce(ip: Ipv4Addr, allowed: Vec<String>, owned: Owned) {
    let spawned = std::thread::Builder::new()
        .name("gratuitous-arp".into())
        .spawn(move || {
            let Ok(arp_socket) = socket::ArpSocket::open() else {
                return;
            };
            let start = Instant::now();
            for at in GRATUITOUS_SCHEDULE_MS {
                let due = Duration::from_millis(*at);
                std::thread::sleep(due.saturating_sub(start.elapsed()));
                if !owned.read().is_ok_and(|o| o.contains_key(&ip)) {
                    return;
                }
                for interface in socket::interfaces().unwrap_or_default().values() {
                    if may_answer(&allowed, interface, ip) {
                        let frame = arp::gratuitous(ip, interface.mac);
                        if let Err(e) = arp_socket.send(interface, &frame) {
                            tracing::warn!(error = %e, %ip, "gratuitous ARP failed");
                        }
                    }
                }
            }
        });
    if let Err(e) = spawned {
        tracing::warn!(error = %e, %ip, "cannot start the gratuitous ARP thread");
    }
}

async fn reflect_pods(writer: Writer<Pod>, api: Api<Pod>, notify: Arc<Notify>) {
    use futures::StreamExt;
    use kube::runtime::{reflector, watcher, WatchStreamExt};
    let config = watcher::Config::default().labels(SPEAKER_SELECTOR);
    reflector::reflector(writer, watcher(api, config).default_backoff())
        .for_each(|_| {
            notify.notify_one();
            futures::future::ready(())
        })
        .await;
}
