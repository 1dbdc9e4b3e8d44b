//! Endpoints and EndpointSlices for Services with a selector (upstream's endpoint and
//! endpointslice controllers, run as one reconciler keyed by Service): the Endpoints `<svc>`
//! lists the ready and not-ready addresses of the selected pods per port mapping; the
//! EndpointSlices `<svc>-xxxxx` (managed-by `endpointslice-controller.k8s.io`, owned by the
//! Service) carry the same pods with ready/serving/terminating conditions. A Service without a
//! selector is left to its user, except `default/kubernetes`, whose Endpoints (written by the
//! API server) are mirrored into the EndpointSlice `kubernetes` as upstream's API server does.
//!
//! Services, Endpoints and EndpointSlices are held in reflector stores, pods in the
//! controllers' shared pod cache ([`crate::informer`]): a reconcile reads only the stores and
//! writes only when the content differs. Writes are compare-and-swap on resourceVersion;
//! EndpointSlices created or updated here are remembered until the store has caught up
//! (upstream's EndpointSliceTracker), so a lagging store never causes duplicates.

mod desired;
mod slices;

use std::collections::hash_map::DefaultHasher;
use std::collections::{BTreeMap, HashMap};
use std::hash::{Hash, Hasher};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::{stream, Stream, StreamExt};
use k8s_openapi::api::core::v1::{Endpoints, Pod, Service};
use k8s_openapi::api::discovery::v1::{Endpoint, EndpointPort, EndpointSlice};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::api::{Api, DeleteParams, ObjectMeta, PostParams};
use kube::runtime::controller::{self, Action};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::watcher::{self, Event};
use kube::runtime::WatchStreamExt;
use kube::ResourceExt;

use crate::informer::PodEvent;
use crate::{Context, Error, ERROR_REQUEUE};
use desired::{
    endpoint_subsets, is_external_name, is_headless, mirrored_groups, same, selector, selects,
    slice_groups, SliceGroup, HEADLESS_LABEL, MAX_ENDPOINTS_PER_SLICE, OVER_CAPACITY_ANNOTATION,
};
use slices::SliceOp;

pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";
pub const MANAGED_BY_LABEL: &str = "endpointslice.kubernetes.io/managed-by";
pub const MANAGED_BY: &str = "endpointslice-controller.k8s.io";
/// managed-by of the slices mirrored from the Endpoints of Services without a selector.
pub const MIRRORING_MANAGED_BY: &str = "endpointslicemirroring-controller.k8s.io";
/// Endpoints carrying this label are not mirrored into EndpointSlices.
pub const SKIP_MIRROR_LABEL: &str = "endpointslice.kubernetes.io/skip-mirror";
/// How long a write of ours may take to show up in the store before it is presumed lost.
const TRACKER_PATIENCE: Duration = Duration::from_secs(10);
/// Retry delay while the EndpointSlice store lags behind our own writes.
const STALE_REQUEUE: Duration = Duration::from_millis(100);
/// After writing a Service's Endpoints or slices, further changes wait this long and go out
/// together (upstream's `--endpoint-updates-batch-period`): a rollout of thousands of pods
/// writes a few times a second, not once per pod.
const UPDATES_BATCH_PERIOD: Duration = Duration::from_millis(250);

/// (namespace, Service, managed-by): the slices one controller role keeps for one Service.
type SliceSetKey = (String, String, &'static str);

struct State {
    client: kube::Client,
    pods: Store<Pod>,
    endpoints: Store<Endpoints>,
    slices: Store<EndpointSlice>,
    tracker: Mutex<SliceTracker>,
    last_write: Mutex<HashMap<(String, String), Instant>>,
}

impl State {
    fn note_write(&self, namespace: &str, service: &str) {
        self.last_write
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert((namespace.to_string(), service.to_string()), Instant::now());
    }

    /// How long changes to this Service must still wait for the current batch period.
    fn batch_delay(&self, namespace: &str, service: &str) -> Option<Duration> {
        let mut writes = self.last_write.lock().unwrap_or_else(|e| e.into_inner());
        let key = (namespace.to_string(), service.to_string());
        let elapsed = writes.get(&key)?.elapsed();
        if elapsed >= UPDATES_BATCH_PERIOD {
            writes.remove(&key);
            return None;
        }
        Some(UPDATES_BATCH_PERIOD - elapsed)
    }
}

pub async fn run(ctx: Context) {
    let client = ctx.client.clone();
    let (services, services_writer) = reflector::store::<Service>();
    let (endpoints, endpoints_writer) = reflector::store::<Endpoints>();
    let (slices, slices_writer) = reflector::store::<EndpointSlice>();
    let state = Arc::new(State {
        client: client.clone(),
        pods: ctx.pods.store(),
        endpoints,
        slices,
        tracker: Mutex::new(SliceTracker::default()),
        last_write: Mutex::new(HashMap::new()),
    });

    let service_events = reflector::reflector(
        services_writer,
        watcher::watcher(
            Api::<Service>::all(client.clone()),
            watcher::Config::default(),
        ),
    )
    .default_backoff();
    let service_triggers = {
        let state = state.clone();
        service_events.map(move |ev| {
            ev.map(|ev| match ev {
                Event::Apply(svc) | Event::InitApply(svc) => vec![ObjectRef::from_obj(&svc)],
                Event::Delete(svc) => {
                    service_deleted(&state, &svc);
                    vec![]
                }
                Event::Init | Event::InitDone => vec![],
            })
        })
    };

    let pod_triggers = {
        let services = services.clone();
        ctx.pods
            .subscribe()
            .map(move |ev| Ok(services_for_pod(&services, &ev)))
    };

    let endpoints_events = reflector::reflector(
        endpoints_writer,
        watcher::watcher(
            Api::<Endpoints>::all(client.clone()),
            watcher::Config::default(),
        ),
    )
    .default_backoff();
    let endpoints_triggers = {
        let mut leftovers = Some(Vec::new());
        let services = services.clone();
        let client = client.clone();
        endpoints_events.map(move |ev| {
            ev.map(|ev| match ev {
                Event::Apply(ep) | Event::Delete(ep) => vec![service_ref(&ep)],
                Event::InitApply(ep) => {
                    if let Some(l) = leftovers.as_mut() {
                        l.push(service_ref(&ep));
                    }
                    vec![service_ref(&ep)]
                }
                Event::InitDone => {
                    // Once, at start: Endpoints whose Service is gone (deleted while this
                    // controller was not running) are removed, as upstream's
                    // checkLeftoverEndpoints does.
                    if let Some(l) = leftovers.take() {
                        tokio::spawn(remove_leftover_endpoints(
                            client.clone(),
                            services.clone(),
                            l,
                        ));
                    }
                    vec![]
                }
                Event::Init => vec![],
            })
        })
    };

    let slice_events = reflector::reflector(
        slices_writer,
        watcher::watcher(
            Api::<EndpointSlice>::all(client.clone()),
            watcher::Config::default(),
        ),
    )
    .default_backoff();
    let slice_triggers = slice_events.map(|ev| {
        ev.map(|ev| match ev {
            Event::Apply(s) | Event::Delete(s) | Event::InitApply(s) => {
                let namespace = s.namespace().unwrap_or_default();
                s.labels()
                    .get(SERVICE_NAME_LABEL)
                    .map(|svc| ObjectRef::<Service>::new(svc).within(&namespace))
                    .into_iter()
                    .collect()
            }
            Event::Init | Event::InitDone => vec![],
        })
    });

    let queue = stream::select_all(vec![
        flatten(service_triggers),
        flatten(pod_triggers),
        flatten(endpoints_triggers),
        flatten(slice_triggers),
    ]);
    controller::applier(
        |svc, state| Box::pin(reconcile(svc, state)),
        |svc, err, _| {
            tracing::warn!(service = %svc.name_any(), namespace = ?svc.namespace(), error = %err, "endpoints reconcile failed");
            Action::requeue(ERROR_REQUEUE)
        },
        state,
        services,
        queue,
        controller::Config::default(),
    )
    .for_each(|result| {
        if let Err(e) = result {
            tracing::debug!(error = %e, "endpoints controller");
        }
        futures::future::ready(())
    })
    .await;
}

type Triggers = std::pin::Pin<
    Box<dyn Stream<Item = Result<controller::ReconcileRequest<Service>, watcher::Error>> + Send>,
>;

fn flatten<S>(s: S) -> Triggers
where
    S: Stream<Item = Result<Vec<ObjectRef<Service>>, watcher::Error>> + Send + 'static,
{
    s.flat_map(|r| match r {
        Ok(refs) => stream::iter(refs.into_iter().map(|r| Ok(r.into())).collect::<Vec<_>>()),
        Err(e) => stream::iter(vec![Err(e)]),
    })
    .boxed()
}

fn service_ref(ep: &Endpoints) -> ObjectRef<Service> {
    ObjectRef::new(&ep.name_any()).within(&ep.namespace().unwrap_or_default())
}

/// A deleted Service loses its Endpoints, as upstream (its EndpointSlices are owned by it and
/// go with the garbage collector).
fn service_deleted(state: &Arc<State>, svc: &Service) {
    let ns = svc.namespace().unwrap_or_default();
    let name = svc.name_any();
    state
        .tracker
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .forget(&ns, &name);
    state
        .last_write
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .remove(&(ns.clone(), name.clone()));
    let client = state.client.clone();
    tokio::spawn(async move {
        let api: Api<Endpoints> = Api::namespaced(client, &ns);
        match api.delete(&name, &DeleteParams::default()).await {
            Ok(_) => {
                tracing::debug!(namespace = %ns, service = %name, "deleted Endpoints of a deleted Service")
            }
            Err(kube::Error::Api(e)) if e.code == 404 => {}
            Err(e) => {
                tracing::warn!(namespace = %ns, service = %name, error = %e, "cannot delete Endpoints")
            }
        }
    });
}

async fn remove_leftover_endpoints(
    client: kube::Client,
    services: Store<Service>,
    candidates: Vec<ObjectRef<Service>>,
) {
    if services.wait_until_ready().await.is_err() {
        return;
    }
    for svc in candidates {
        if services.get(&svc).is_some() {
            continue;
        }
        let ns = svc.namespace.clone().unwrap_or_default();
        let api: Api<Endpoints> = Api::namespaced(client.clone(), &ns);
        match api.delete(&svc.name, &DeleteParams::default()).await {
            Ok(_) => {
                tracing::info!(namespace = %ns, name = %svc.name, "deleted leftover Endpoints")
            }
            Err(kube::Error::Api(e)) if e.code == 404 => {}
            Err(e) => {
                tracing::warn!(namespace = %ns, name = %svc.name, error = %e, "cannot delete leftover Endpoints")
            }
        }
    }
}

/// The Services a pod change concerns: those selecting the pod now or before. Changes that
/// cannot affect any endpoint (most status heartbeats) concern none.
fn services_for_pod(services: &Store<Service>, event: &PodEvent) -> Vec<ObjectRef<Service>> {
    let mut out = Vec::new();
    let pod = event.pod();
    let namespace = pod.namespace().unwrap_or_default();
    if let PodEvent::Applied { old: Some(old), .. } = event {
        if old.labels() == pod.labels() && fingerprint(old) == fingerprint(pod) {
            return out;
        }
        if old.labels() != pod.labels() {
            services_selecting(services, &namespace, old.labels(), &mut out);
        }
    }
    services_selecting(services, &namespace, pod.labels(), &mut out);
    out
}

fn services_selecting(
    services: &Store<Service>,
    namespace: &str,
    labels: &BTreeMap<String, String>,
    out: &mut Vec<ObjectRef<Service>>,
) {
    for svc in services.state() {
        if svc.metadata.namespace.as_deref() != Some(namespace) {
            continue;
        }
        if selector(&svc).is_some_and(|s| selects(s, labels)) {
            let r = ObjectRef::from_obj(svc.as_ref());
            if !out.contains(&r) {
                out.push(r);
            }
        }
    }
}

/// Hash of everything about a pod that endpoints depend on (besides its labels).
fn fingerprint(pod: &Pod) -> u64 {
    let mut h = DefaultHasher::new();
    desired::pod_ipv4(pod).hash(&mut h);
    desired::is_ready(pod).hash(&mut h);
    desired::should_be_in_endpoints(pod, true).hash(&mut h);
    pod.metadata.deletion_timestamp.is_some().hash(&mut h);
    pod.metadata.uid.hash(&mut h);
    if let Some(spec) = &pod.spec {
        spec.node_name.hash(&mut h);
        spec.hostname.hash(&mut h);
        spec.subdomain.hash(&mut h);
        for c in &spec.containers {
            for p in c.ports.iter().flatten() {
                (&p.name, p.container_port, &p.protocol).hash(&mut h);
            }
        }
    }
    h.finish()
}

async fn reconcile(svc: Arc<Service>, state: Arc<State>) -> Result<Action, Error> {
    for ready in [
        state.pods.wait_until_ready().await,
        state.endpoints.wait_until_ready().await,
        state.slices.wait_until_ready().await,
    ] {
        ready.map_err(|e| Error::Invalid(format!("endpoints caches: {e}")))?;
    }
    let Some(selector) = selector(&svc) else {
        // The user manages the Endpoints; they are mirrored into EndpointSlices (upstream's
        // endpointslicemirroring controller), and those of the API server's own Service as
        // its reconciler does.
        let is_kubernetes = svc.metadata.namespace.as_deref() == Some("default")
            && svc.metadata.name.as_deref() == Some("kubernetes");
        if is_kubernetes {
            mirror_kubernetes(&state).await?;
        }
        let mirrored = if is_kubernetes {
            None
        } else {
            mirrored_slices(&state, &svc)
        };
        let a = sync_slices(&state, &svc, MIRRORING_MANAGED_BY, mirrored, false).await?;
        let b = sync_slices(&state, &svc, MANAGED_BY, None, false).await?;
        return Ok(a.or(b).unwrap_or_else(Action::await_change));
    };
    let ns = svc.namespace().unwrap_or_default();
    if let Some(wait) = state.batch_delay(&ns, &svc.name_any()) {
        return Ok(Action::requeue(wait));
    }
    let pods: Vec<Arc<Pod>> = state.pods.state_filter(|p| {
        p.metadata.namespace.as_deref() == Some(ns.as_str()) && selects(selector, p.labels())
    });
    sync_endpoints(&state, &svc, &pods).await?;
    let desired = (!is_external_name(&svc)).then(|| {
        (
            slice_groups(&svc, &pods),
            slice_labels(&svc, MANAGED_BY, svc.labels()),
        )
    });
    let a = sync_slices(&state, &svc, MANAGED_BY, desired, true).await?;
    let b = sync_slices(&state, &svc, MIRRORING_MANAGED_BY, None, false).await?;
    Ok(a.or(b).unwrap_or_else(Action::await_change))
}

/// What the mirrored slices of a selector-less Service hold: its Endpoints, unless they are
/// absent or marked not to be mirrored.
fn mirrored_slices(
    state: &State,
    svc: &Service,
) -> Option<(BTreeMap<String, SliceGroup>, BTreeMap<String, String>)> {
    let ns = svc.namespace().unwrap_or_default();
    let ep = state
        .endpoints
        .get(&ObjectRef::new(&svc.name_any()).within(&ns))?;
    if ep.labels().get(SKIP_MIRROR_LABEL).map(String::as_str) == Some("true") {
        return None;
    }
    let mut labels = ep.labels().clone();
    labels.remove(SKIP_MIRROR_LABEL);
    Some((
        mirrored_groups(&ep),
        slice_labels(svc, MIRRORING_MANAGED_BY, &labels),
    ))
}

async fn sync_endpoints(state: &State, svc: &Service, pods: &[Arc<Pod>]) -> Result<(), Error> {
    let ns = svc.namespace().unwrap_or_default();
    let name = svc.name_any();
    let (subsets, truncated) = endpoint_subsets(svc, pods);
    let mut labels = svc.labels().clone();
    if is_headless(svc) {
        labels.insert(HEADLESS_LABEL.into(), String::new());
    } else {
        labels.remove(HEADLESS_LABEL);
    }
    let api: Api<Endpoints> = Api::namespaced(state.client.clone(), &ns);
    let current = state.endpoints.get(&ObjectRef::new(&name).within(&ns));
    let Some(current) = current else {
        let mut annotations = BTreeMap::new();
        if truncated {
            annotations.insert(
                OVER_CAPACITY_ANNOTATION.to_string(),
                "truncated".to_string(),
            );
        }
        let ep = Endpoints {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                labels: Some(labels),
                annotations: (!annotations.is_empty()).then_some(annotations),
                ..ObjectMeta::default()
            },
            subsets: (!subsets.is_empty()).then_some(subsets),
        };
        return match api.create(&PostParams::default(), &ep).await {
            Ok(_) => {
                tracing::debug!(namespace = %ns, service = %name, "created Endpoints");
                state.note_write(&ns, &name);
                Ok(())
            }
            // Namespace going away: nothing to do.
            Err(kube::Error::Api(e)) if e.code == 403 => Ok(()),
            Err(e) => Err(e.into()),
        };
    };
    let capacity_ok = current
        .annotations()
        .get(OVER_CAPACITY_ANNOTATION)
        .map(String::as_str)
        == truncated.then_some("truncated");
    let current_subsets = current.subsets.clone().unwrap_or_default();
    if capacity_ok && *current.labels() == labels && same(&current_subsets, &subsets) {
        return Ok(());
    }
    let mut next = (*current).clone();
    next.metadata.labels = Some(labels);
    if truncated {
        next.annotations_mut()
            .insert(OVER_CAPACITY_ANNOTATION.into(), "truncated".into());
    } else {
        next.annotations_mut().remove(OVER_CAPACITY_ANNOTATION);
    }
    next.subsets = (!subsets.is_empty()).then_some(subsets);
    // The resourceVersion from the store makes this a compare-and-swap.
    match api.replace(&name, &PostParams::default(), &next).await {
        Ok(_) => {
            tracing::debug!(namespace = %ns, service = %name, "updated Endpoints");
            state.note_write(&ns, &name);
            Ok(())
        }
        Err(kube::Error::Api(e)) if e.code == 404 => Ok(()),
        Err(e) => Err(e.into()),
    }
}

fn slice_labels(
    svc: &Service,
    managed_by: &str,
    source: &BTreeMap<String, String>,
) -> BTreeMap<String, String> {
    let mut labels: BTreeMap<String, String> = source
        .iter()
        .filter(|(k, _)| {
            !matches!(
                k.as_str(),
                SERVICE_NAME_LABEL | MANAGED_BY_LABEL | HEADLESS_LABEL
            )
        })
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    labels.insert(SERVICE_NAME_LABEL.into(), svc.name_any());
    labels.insert(MANAGED_BY_LABEL.into(), managed_by.into());
    if is_headless(svc) {
        labels.insert(HEADLESS_LABEL.into(), String::new());
    }
    labels
}

fn owned_by(slice: &EndpointSlice, svc: &Service) -> bool {
    slice
        .owner_references()
        .iter()
        .any(|o| o.kind == "Service" && Some(&o.uid) == svc.metadata.uid.as_ref())
}

/// Brings the Service's slices of one `managed_by` to `desired` (groups and labels); None
/// deletes them all. Returns a requeue while the slice store lags behind our own writes.
async fn sync_slices(
    state: &State,
    svc: &Service,
    managed_by: &'static str,
    desired: Option<(BTreeMap<String, SliceGroup>, BTreeMap<String, String>)>,
    placeholder: bool,
) -> Result<Option<Action>, Error> {
    let ns = svc.namespace().unwrap_or_default();
    let name = svc.name_any();
    let key: SliceSetKey = (ns.clone(), name.clone(), managed_by);
    let managed: Vec<Arc<EndpointSlice>> = state.slices.state_filter(|s| {
        s.metadata.namespace.as_deref() == Some(ns.as_str())
            && s.labels().get(SERVICE_NAME_LABEL) == Some(&name)
            && s.labels().get(MANAGED_BY_LABEL).map(String::as_str) == Some(managed_by)
    });
    if managed.is_empty() && desired.is_none() {
        return Ok(None);
    }
    let mut ops = Vec::new();
    let existing: Vec<Arc<EndpointSlice>> = {
        let mut tracker = state.tracker.lock().unwrap_or_else(|e| e.into_inner());
        if tracker.is_stale(&key, &managed) {
            return Ok(Some(Action::requeue(STALE_REQUEUE)));
        }
        managed
            .into_iter()
            .filter(|s| !tracker.is_deleted(&key, &s.name_any()))
            .filter(|s| s.metadata.deletion_timestamp.is_none())
            .filter(|s| {
                if owned_by(s, svc) {
                    true
                } else {
                    // Left over from an earlier Service of the same name.
                    ops.push(SliceOp::Delete { name: s.name_any() });
                    false
                }
            })
            .collect()
    };
    let labels = match desired {
        Some((groups, labels)) => {
            ops.extend(slices::plan(
                &existing,
                groups,
                &labels,
                MAX_ENDPOINTS_PER_SLICE,
                placeholder,
            ));
            labels
        }
        None => {
            ops.extend(
                existing
                    .iter()
                    .map(|s| SliceOp::Delete { name: s.name_any() }),
            );
            BTreeMap::new()
        }
    };
    let api: Api<EndpointSlice> = Api::namespaced(state.client.clone(), &ns);
    for op in ops {
        apply_slice_op(state, &api, svc, &key, &labels, &existing, op).await?;
    }
    Ok(None)
}

fn new_slice(
    svc: &Service,
    labels: &BTreeMap<String, String>,
    ports: Vec<EndpointPort>,
    endpoints: Vec<Endpoint>,
) -> EndpointSlice {
    EndpointSlice {
        metadata: ObjectMeta {
            generate_name: Some(format!("{}-", svc.name_any())),
            labels: Some(labels.clone()),
            owner_references: Some(vec![OwnerReference {
                api_version: "v1".into(),
                kind: "Service".into(),
                name: svc.name_any(),
                uid: svc.metadata.uid.clone().unwrap_or_default(),
                controller: Some(true),
                block_owner_deletion: Some(true),
            }]),
            ..ObjectMeta::default()
        },
        address_type: "IPv4".into(),
        endpoints,
        ports: (!ports.is_empty()).then_some(ports),
    }
}

async fn apply_slice_op(
    state: &State,
    api: &Api<EndpointSlice>,
    svc: &Service,
    key: &SliceSetKey,
    labels: &BTreeMap<String, String>,
    existing: &[Arc<EndpointSlice>],
    op: SliceOp,
) -> Result<(), Error> {
    let track = |name: String, expect: Expect| {
        state.note_write(&key.0, &key.1);
        state
            .tracker
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .record(key, name, expect);
    };
    match op {
        SliceOp::Create { ports, endpoints } => {
            let slice = new_slice(svc, labels, ports, endpoints);
            match api.create(&PostParams::default(), &slice).await {
                Ok(created) => {
                    tracing::debug!(namespace = %key.0, service = %key.1, slice = %created.name_any(), "created EndpointSlice");
                    track(
                        created.name_any(),
                        Expect::Generation(created.metadata.generation.unwrap_or(0)),
                    );
                }
                Err(kube::Error::Api(e)) if e.code == 403 => {}
                Err(e) => return Err(e.into()),
            }
        }
        SliceOp::Update {
            name,
            ports,
            endpoints,
        } => {
            let Some(current) = existing.iter().find(|s| s.name_any() == name) else {
                return Ok(());
            };
            let mut next = (**current).clone();
            next.metadata.labels = Some(labels.clone());
            next.address_type = "IPv4".into();
            next.endpoints = endpoints;
            next.ports = (!ports.is_empty()).then_some(ports);
            match api.replace(&name, &PostParams::default(), &next).await {
                Ok(updated) => track(
                    name,
                    Expect::Generation(updated.metadata.generation.unwrap_or(0)),
                ),
                Err(kube::Error::Api(e)) if e.code == 404 => {}
                Err(e) => return Err(e.into()),
            }
        }
        SliceOp::Delete { name } => match api.delete(&name, &DeleteParams::default()).await {
            Ok(_) => track(name, Expect::Deleted),
            Err(kube::Error::Api(e)) if e.code == 404 => track(name, Expect::Deleted),
            Err(e) => return Err(e.into()),
        },
    }
    Ok(())
}

/// The API server writes the Endpoints of `default/kubernetes`; upstream it also writes the
/// EndpointSlice `kubernetes` from them. kubelab's API server does not, so it is mirrored here.
async fn mirror_kubernetes(state: &State) -> Result<(), Error> {
    let Some(ep) = state
        .endpoints
        .get(&ObjectRef::new("kubernetes").within("default"))
    else {
        return Ok(());
    };
    let subset = ep.subsets.iter().flatten().next();
    let ports: Vec<EndpointPort> = subset
        .and_then(|s| s.ports.clone())
        .unwrap_or_default()
        .into_iter()
        .map(|p| EndpointPort {
            name: Some(p.name.unwrap_or_default()),
            port: Some(p.port),
            protocol: Some(p.protocol.unwrap_or_else(|| "TCP".into())),
            app_protocol: p.app_protocol,
        })
        .collect();
    let to_endpoint = |a: &k8s_openapi::api::core::v1::EndpointAddress, ready: bool| Endpoint {
        addresses: vec![a.ip.clone()],
        conditions: Some(k8s_openapi::api::discovery::v1::EndpointConditions {
            ready: Some(ready),
            ..Default::default()
        }),
        hostname: a.hostname.clone(),
        node_name: a.node_name.clone(),
        target_ref: a.target_ref.clone(),
        ..Endpoint::default()
    };
    let mut endpoints: Vec<Endpoint> = Vec::new();
    if let Some(s) = subset {
        endpoints.extend(s.addresses.iter().flatten().map(|a| to_endpoint(a, true)));
        endpoints.extend(
            s.not_ready_addresses
                .iter()
                .flatten()
                .map(|a| to_endpoint(a, false)),
        );
    }
    let labels = BTreeMap::from([(SERVICE_NAME_LABEL.to_string(), "kubernetes".to_string())]);
    let api: Api<EndpointSlice> = Api::namespaced(state.client.clone(), "default");
    let current = state
        .slices
        .get(&ObjectRef::new("kubernetes").within("default"));
    let desired_ports = (!ports.is_empty()).then_some(ports);
    match current {
        None => {
            let slice = EndpointSlice {
                metadata: ObjectMeta {
                    name: Some("kubernetes".into()),
                    labels: Some(labels),
                    ..ObjectMeta::default()
                },
                address_type: "IPv4".into(),
                endpoints,
                ports: desired_ports,
            };
            match api.create(&PostParams::default(), &slice).await {
                Ok(_) => Ok(()),
                Err(kube::Error::Api(e)) if e.code == 409 => Ok(()),
                Err(e) => Err(e.into()),
            }
        }
        Some(current) => {
            if current.labels() == &labels
                && current.address_type == "IPv4"
                && same(&current.endpoints, &endpoints)
                && same(&current.ports, &desired_ports)
            {
                return Ok(());
            }
            let mut next = (*current).clone();
            next.metadata.labels = Some(labels);
            next.address_type = "IPv4".into();
            next.endpoints = endpoints;
            next.ports = desired_ports;
            match api
                .replace("kubernetes", &PostParams::default(), &next)
                .await
            {
                Ok(_) => Ok(()),
                Err(kube::Error::Api(e)) if e.code == 404 => Ok(()),
                Err(e) => Err(e.into()),
            }
        }
    }
}

/// What we expect the store to show for a slice we wrote.
#[derive(Clone, Copy, Debug)]
enum Expect {
    /// Created or updated: the store is stale until it shows at least this generation.
    Generation(i64),
    /// Deleted: the store may still show it for a moment; it is ignored meanwhile.
    Deleted,
}

/// Upstream's EndpointSliceTracker: our own recent slice writes, per Service.
#[derive(Default)]
struct SliceTracker {
    by_service: HashMap<SliceSetKey, HashMap<String, (Expect, Instant)>>,
}

impl SliceTracker {
    fn record(&mut self, key: &SliceSetKey, slice: String, expect: Expect) {
        self.by_service
            .entry(key.clone())
            .or_default()
            .insert(slice, (expect, Instant::now()));
    }

    fn forget(&mut self, namespace: &str, service: &str) {
        self.by_service
            .retain(|(ns, name, _), _| ns != namespace || name != service);
    }

    fn is_deleted(&self, key: &SliceSetKey, slice: &str) -> bool {
        self.by_service
            .get(key)
            .and_then(|m| m.get(slice))
            .is_some_and(|(e, _)| matches!(e, Expect::Deleted))
    }

    /// Whether the store has not yet caught up with our writes for this Service. Entries the
    /// store confirms are dropped; entries older than [`TRACKER_PATIENCE`] are given up on.
    fn is_stale(&mut self, key: &SliceSetKey, in_store: &[Arc<EndpointSlice>]) -> bool {
        let Some(expected) = self.by_service.get_mut(key) else {
            return false;
        };
        let mut stale = false;
        expected.retain(|name, (expect, at)| {
            if at.elapsed() > TRACKER_PATIENCE {
                return false;
            }
            let found = in_store
                .iter()
                .find(|s| s.metadata.name.as_deref() == Some(name));
            match (expect, found) {
                (Expect::Generation(g), Some(s)) if s.metadata.generation.unwrap_or(0) >= *g => {
                    false
                }
                (Expect::Generation(_), _) => {
                    stale = true;
                    true
                }
                (Expect::Deleted, None) => false,
                (Expect::Deleted, Some(_)) => true,
            }
        });
        if expected.is_empty() {
            self.by_service.remove(key);
        }
        stale
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn slice(name: &str, generation: i64) -> Arc<EndpointSlice> {
        let mut s = EndpointSlice::default();
        s.metadata.name = Some(name.into());
        s.metadata.generation = Some(generation);
        Arc::new(s)
    }

    #[test]
    fn tracker_waits_for_the_store() {
        let key = ("default".to_string(), "web".to_string(), MANAGED_BY);
        let mut t = SliceTracker::default();
        assert!(!t.is_stale(&key, &[]));
        t.record(&key, "web-abcde".into(), Expect::Generation(2));
        assert!(t.is_stale(&key, &[]));
        assert!(t.is_stale(&key, &[slice("web-abcde", 1)]));
        assert!(!t.is_stale(&key, &[slice("web-abcde", 2)]));
        t.record(&key, "web-abcde".into(), Expect::Deleted);
        assert!(!t.is_stale(&key, &[slice("web-abcde", 2)]));
        assert!(t.is_deleted(&key, "web-abcde"));
        assert!(!t.is_stale(&key, &[]));
        assert!(!t.is_deleted(&key, "web-abcde"));
    }
}
