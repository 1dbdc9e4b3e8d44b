//! The controller (`kubelab metallb controller`, one replica): reflectors of Services,
//! Namespaces, the IPAddressPools and the unsupported MetalLB kinds of its namespace; after
//! every change (and every 30 s) it computes the whole [`allocate::plan`] and writes only what
//! differs:
//!
//! - a Service's `status.loadBalancer.ingress` and its `metallb.io/ip-allocated-from-pool`
//!   annotation, with a Normal `IPAllocated` event; a Service that cannot get an address keeps
//!   none (pending) with a Warning `AllocationFailed` event saying why, once per reason;
//! - each pool's `status` (`assignedIPv4`, `availableIPv4`, as MetalLB's newer releases);
//! - BGPPeer, BGPAdvertisement, Community and BFDProfile objects get a condition
//!   `Supported=False` and a Warning `Unsupported` event: they are accepted, not acted on.
//!
//! The `service.kubernetes.io/load-balancer-cleanup` finalizer is kubelab's controller-manager's
//! (`service_lb.rs`, as upstream's service controller): it is on every LoadBalancer Service and,
//! when one is deleted, clears its status before letting it go. A deleted (or no longer
//! LoadBalancer) Service is not an input of the plan, so its address is free at once.

use std::collections::{BTreeMap, HashMap};
use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Namespace, Service};
use kube::api::{Api, DynamicObject, Patch, PatchParams};
use kube::core::GroupVersionKind;
use kube::discovery::ApiResource;
use kube::runtime::reflector::{self, store::Writer, Store};
use kube::runtime::{watcher, WatchStreamExt};
use kube::{Resource, ResourceExt};
use serde_json::json;
use tokio::sync::Notify;

use crate::allocate::{self, Outcome};
use crate::events::Events;
use crate::model::{Pool, ServiceView, ANNOTATION_ALLOCATED_FROM_POOL};
use crate::{Error, Result, GROUP, VERSION};

/// How often the whole plan is re-checked without a change.
const RESYNC: Duration = Duration::from_secs(30);

/// The kinds MetalLB defines that kubelab accepts but does not implement (BGP mode).
pub const UNSUPPORTED_KINDS: &[(&str, &str)] = &[
    ("BGPPeer", "bgppeers"),
    ("BGPAdvertisement", "bgpadvertisements"),
    ("Community", "communities"),
    ("BFDProfile", "bfdprofiles"),
];

pub fn resource(kind: &str, plural: &str) -> ApiResource {
    ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk(GROUP, VERSION, kind), plural)
}

pub fn pool_resource() -> ApiResource {
    resource("IPAddressPool", "ipaddresspools")
}

pub fn l2_resource() -> ApiResource {
    resource("L2Advertisement", "l2advertisements")
}

/// Runs a reflector into `writer`, waking `notify` on every change; returns when the watch
/// stream ends (never, with the default backoff).
pub(crate) async fn reflect<K>(writer: Writer<K>, api: Api<K>, notify: Arc<Notify>)
where
    K: Resource + Clone + std::fmt::Debug + serde::de::DeserializeOwned + Send + Sync + 'static,
    K::DynamicType: Eq + std::hash::Hash + Clone + Default,
{
    reflector::reflector(
        writer,
        watcher(api, watcher::Config::default()).default_backoff(),
    )
    .for_each(|_| {
        notify.notify_one();
        futures::future::ready(())
    })
    .await;
}

pub(crate) async fn reflect_dynamic(
    writer: Writer<DynamicObject>,
    api: Api<DynamicObject>,
    notify: Arc<Notify>,
) {
    reflector::reflector(
        writer,
        watcher(api, watcher::Config::default()).default_backoff(),
    )
    .for_each(|_| {
        notify.notify_one();
        futures::future::ready(())
    })
    .await;
}

struct State {
    client: kube::Client,
    namespace: String,
    events: Events,
    services: Store<Service>,
    namespaces: Store<Namespace>,
    pools: Store<DynamicObject>,
    unsupported: Vec<(ApiResource, Store<DynamicObject>)>,
    /// Services as this controller last wrote them, until the reflector shows that write
    /// (a sync right after a write must not hand the same address out again).
    written: HashMap<String, Service>,
    /// The last AllocationFailed message per Service uid (an event only when it changes).
    failures: HashMap<String, String>,
    /// Pools and unsupported objects already warned about (uid → message).
    warned: HashMap<String, String>,
}

/// Runs the controller for the MetalLB objects of `namespace` (e.g. `metallb-system`).
pub async fn run(client: kube::Client, namespace: &str) -> Result<()> {
    let notify = Arc::new(Notify::new());
    let mut tasks = tokio::task::JoinSet::new();
    let services_writer = Writer::<Service>::default();
    let services = services_writer.as_reader();
    tasks.spawn(reflect(
        services_writer,
        Api::all(client.clone()),
        notify.clone(),
    ));
    let namespaces_writer = Writer::<Namespace>::default();
    let namespaces = namespaces_writer.as_reader();
    tasks.spawn(reflect(
        namespaces_writer,
        Api::all(client.clone()),
        notify.clone(),
    ));
    let pool_writer = Writer::new(pool_resource());
    let pools = pool_writer.as_reader();
    tasks.spawn(reflect_dynamic(
        pool_writer,
        Api::namespaced_with(client.clone(), namespace, &pool_resource()),
        notify.clone(),
    ));
    let mut unsupported = Vec::new();
    for (kind, plural) in UNSUPPORTED_KINDS {
        let ar = resource(kind, plural);
        let writer = Writer::new(ar.clone());
        unsupported.push((ar.clone(), writer.as_reader()));
        tasks.spawn(reflect_dynamic(
            writer,
            Api::namespaced_with(client.clone(), namespace, &ar),
            notify.clone(),
        ));
    }
    let mut state = State {
        events: Events::new(client.clone(), "metallb-controller", None),
        client,
        namespace: namespace.to_owned(),
        services,
        namespaces,
        pools,
        unsupported,
        written: HashMap::new(),
        failures: HashMap::new(),
        warned: HashMap::new(),
    };
    let ready = async {
        state.services.wait_until_ready().await.ok();
        state.namespaces.wait_until_ready().await.ok();
        state.pools.wait_until_ready().await.ok();
        for (_, store) in &state.unsupported {
            store.wait_until_ready().await.ok();
        }
    };
    tokio::select! {
        _ = ready => {}
        _ = tasks.join_next() => return Err(Error::WatchEnded("the controller")),
    }
    tracing::info!(namespace, "metallb controller: caches synced");
    loop {
        if let Err(e) = state.sync().await {
            tracing::warn!(error = %e, "metallb controller sync failed; retrying");
            tokio::time::sleep(Duration::from_secs(1)).await;
            notify.notify_one();
        }
        tokio::select! {
            _ = notify.notified() => {}
            _ = tokio::time::sleep(RESYNC) => {}
            _ = tasks.join_next() => return Err(Error::WatchEnded("the controller")),
        }
    }
}

fn revision(svc: &Service) -> u64 {
    svc.resource_version()
        .and_then(|rv| rv.parse().ok())
        .unwrap_or(0)
}

fn quoted(ips: &[Ipv4Addr]) -> String {
    let list: Vec<String> = ips
        .iter()
        .map(|ip| format!("{:?}", ip.to_string()))
        .collect();
    format!("[{}]", list.join(" "))
}

impl State {
    /// The Services, with this controller's own writes the reflector has not shown yet.
    fn services(&mut self) -> Vec<Service> {
        let mut services: Vec<Service> = self
            .services
            .state()
            .iter()
            .map(|s| (**s).clone())
            .collect();
        let mut seen = HashMap::new();
        for svc in &mut services {
            let key = format!("{}/{}", svc.namespace().unwrap_or_default(), svc.name_any());
            if let Some(written) = self.written.get(&key) {
                if written.uid() == svc.uid() && revision(written) > revision(svc) {
                    *svc = written.clone();
                    seen.insert(key, true);
                    continue;
                }
            }
            seen.insert(key, false);
        }
        self.written.retain(|key, _| seen.get(key) == Some(&true));
        services
    }

    async fn sync(&mut self) -> Result<()> {
        let pools: Vec<Pool> = self
            .pools
            .state()
            .iter()
            .map(|p| Pool::from_object(p))
            .collect();
        let services = self.services();
        let views: Vec<ServiceView> = services.iter().map(ServiceView::from_service).collect();
        let namespace_labels: BTreeMap<String, BTreeMap<String, String>> = self
            .namespaces
            .state()
            .iter()
            .map(|n| (n.name_any(), n.labels().clone()))
            .collect();
        let plan = allocate::plan(&pools, &views, &namespace_labels);
        for (svc, view) in services.iter().zip(&views) {
            match plan.services.get(&view.key) {
                Some(outcome) => self.write_service(svc, view, outcome).await?,
                None => self.forget_service(svc).await?,
            }
        }
        // A Service that fails again after it got an address (or was deleted) is news again.
        let failing: std::collections::HashSet<String> = services
            .iter()
            .zip(&views)
            .filter(|(_, view)| {
                matches!(plan.services.get(&view.key), Some(Outcome::Failed { .. }))
            })
            .filter_map(|(svc, _)| svc.uid())
            .collect();
        self.failures.retain(|uid, _| failing.contains(uid));
        for pool in &pools {
            self.write_pool(
                pool,
                plan.pools.get(&pool.name).copied().unwrap_or_default(),
            )
            .await?;
        }
        self.report_unsupported().await?;
        Ok(())
    }

    /// Merge-patches the Service (its status when `status`) and remembers what the server
    /// returned; false when the Service is gone.
    async fn patch(
        &mut self,
        api: &Api<Service>,
        name: &str,
        key: &str,
        status: bool,
        patch: serde_json::Value,
    ) -> Result<bool> {
        let params = PatchParams::default();
        let patch = Patch::Merge(patch);
        let written = if status {
            api.patch_status(name, &params, &patch).await
        } else {
            api.patch(name, &params, &patch).await
        };
        match written {
            Ok(written) => {
                self.written.insert(key.to_owned(), written);
                Ok(true)
            }
            Err(kube::Error::Api(e)) if e.code == 404 => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    async fn write_service(
        &mut self,
        svc: &Service,
        view: &ServiceView,
        outcome: &Outcome,
    ) -> Result<()> {
        let ns = svc.namespace().unwrap_or_default();
        let name = svc.name_any();
        let api: Api<Service> = Api::namespaced(self.client.clone(), &ns);
        let uid = svc.uid().unwrap_or_default();
        let reference = svc.object_ref(&());
        match outcome {
            Outcome::Assigned { ips, pool } => {
                self.failures.remove(&uid);
                let annotated = svc.annotations().get(ANNOTATION_ALLOCATED_FROM_POOL) == Some(pool);
                if !annotated {
                    let patch = json!({"metadata": {"annotations": {ANNOTATION_ALLOCATED_FROM_POOL: pool}}});
                    if !self.patch(&api, &name, &view.key, false, patch).await? {
                        return Ok(());
                    }
                }
                if view.current != *ips {
                    let ingress: Vec<_> = ips
                        .iter()
                        .map(|ip| json!({"ip": ip.to_string(), "ipMode": "VIP"}))
                        .collect();
                    let patch = json!({"status": {"loadBalancer": {"ingress": ingress}}});
                    if !self.patch(&api, &name, &view.key, true, patch).await? {
                        return Ok(());
                    }
                    tracing::info!(service = %view.key, ips = %quoted(ips), pool, "address assigned");
                    self.events
                        .publish(
                            &reference,
                            "Normal",
                            "IPAllocated",
                            format!("Assigned IP {}", quoted(ips)),
                        )
                        .await;
                }
            }
            Outcome::Failed { reason } => {
                if !view.current.is_empty() {
                    let patch = json!({"status": {"loadBalancer": {"ingress": null}}});
                    if !self.patch(&api, &name, &view.key, true, patch).await? {
                        return Ok(());
                    }
                    self.events
                        .publish(
                            &reference,
                            "Normal",
                            "ClearAssignment",
                            format!(
                                "current IP for {:?} not allowed by config, cleared",
                                view.key
                            ),
                        )
                        .await;
                }
                if self.failures.get(&uid) != Some(reason) {
                    tracing::info!(service = %view.key, %reason, "no address");
                    self.events
                        .publish(
                            &reference,
                            "Warning",
                            "AllocationFailed",
                            format!("Failed to allocate IP for {:?}: {reason}", view.key),
                        )
                        .await;
                    self.failures.insert(uid, reason.clone());
                }
            }
        }
        Ok(())
    }

    /// A Service that no longer wants an address: drop the pool annotation (the status is the
    /// controller-manager's cleanup to clear) once it is not a LoadBalancer any more.
    async fn forget_service(&mut self, svc: &Service) -> Result<()> {
        let is_lb = svc.spec.as_ref().and_then(|s| s.type_.as_deref()) == Some("LoadBalancer");
        if is_lb
            || svc.metadata.deletion_timestamp.is_some()
            || !svc
                .annotations()
                .contains_key(ANNOTATION_ALLOCATED_FROM_POOL)
        {
            return Ok(());
        }
        let api: Api<Service> =
            Api::namespaced(self.client.clone(), &svc.namespace().unwrap_or_default());
        let patch = json!({"metadata": {"annotations": {ANNOTATION_ALLOCATED_FROM_POOL: null}}});
        match api
            .patch(
                &svc.name_any(),
                &PatchParams::default(),
                &Patch::Merge(patch),
            )
            .await
        {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(e)) if e.code == 404 => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    async fn write_pool(&mut self, pool: &Pool, usage: allocate::PoolUsage) -> Result<()> {
        let Some(object) = self
            .pools
            .state()
            .into_iter()
            .find(|p| p.name_any() == pool.name)
        else {
            return Ok(());
        };
        let reference = object.object_ref(&pool_resource());
        if let Some(reason) = &pool.invalid {
            let uid = object.uid().unwrap_or_default();
            if self.warned.get(&uid) != Some(reason) {
                self.events
                    .publish(
                        &reference,
                        "Warning",
                        "InvalidConfiguration",
                        format!("pool {} is not used: {reason}", pool.name),
                    )
                    .await;
                self.warned.insert(uid, reason.clone());
            }
        }
        let status = json!({
            "assignedIPv4": usage.assigned,
            "availableIPv4": usage.available,
            "assignedIPv6": 0,
            "availableIPv6": 0,
        });
        let current = object.data.get("status");
        let same = current.is_some_and(|c| {
            [
                "assignedIPv4",
                "availableIPv4",
                "assignedIPv6",
                "availableIPv6",
            ]
            .iter()
            .all(|k| c.get(k) == status.get(k))
        });
        if same {
            return Ok(());
        }
        let api: Api<DynamicObject> =
            Api::namespaced_with(self.client.clone(), &self.namespace, &pool_resource());
        match api
            .patch_status(
                &pool.name,
                &PatchParams::default(),
                &Patch::Merge(json!({"status": status})),
            )
            .await
        {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(e)) if e.code == 404 => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    async fn report_unsupported(&mut self) -> Result<()> {
        for (ar, store) in &self.unsupported {
            for object in store.state() {
                let marked = object
                    .data
                    .pointer("/status/conditions")
                    .and_then(|c| c.as_array())
                    .is_some_and(|c| {
                        c.iter()
                            .any(|c| c["type"] == "Supported" && c["status"] == "False")
                    });
                if marked {
                    continue;
                }
                let message = format!(
                    "kubelab's metallb implements layer 2 mode only: this {} is accepted but not acted on",
                    ar.kind
                );
                let now = k8s_openapi::jiff::Timestamp::now().to_string();
                let status = json!({"status": {"conditions": [{
                    "type": "Supported", "status": "False", "reason": "Unsupported",
                    "message": message, "lastTransitionTime": now,
                }]}});
                let api: Api<DynamicObject> =
                    Api::namespaced_with(self.client.clone(), &self.namespace, ar);
                match api
                    .patch_status(
                        &object.name_any(),
                        &PatchParams::default(),
                        &Patch::Merge(status),
                    )
                    .await
                {
                    Ok(_) => {}
                    Err(kube::Error::Api(e)) if e.code == 404 => continue,
                    Err(e) => return Err(e.into()),
                }
                self.events
                    .publish(&object.object_ref(ar), "Warning", "Unsupported", message)
                    .await;
            }
        }
        Ok(())
    }
}
