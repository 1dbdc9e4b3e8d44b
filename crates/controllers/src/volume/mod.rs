//! PersistentVolume controller and the built-in local-path provisioner: makes sure the default
//! StorageClass `standard` exists, gives claims without a class the default one (upstream's
//! retroactive default StorageClass assignment), binds claims to matching volumes (capacity,
//! access modes, class, selector, volume mode, node affinity), provisions a node-pinned hostPath
//! volume `pvc-<uid>` for `standard` claims once their first consumer is scheduled
//! (WaitForFirstConsumer; Immediate classes get a node-agnostic volume at once), and releases a
//! volume when its claim goes: Delete removes it, Retain leaves it Released. Modelled on
//! upstream's `pkg/controller/volume/persistentvolume` plus rancher's local-path-provisioner.

mod quantity;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{
    HostPathVolumeSource, Node, NodeSelector, NodeSelectorRequirement, NodeSelectorTerm,
    ObjectReference, PersistentVolume, PersistentVolumeClaim, PersistentVolumeSpec, Pod,
    VolumeNodeAffinity,
};
use k8s_openapi::api::storage::v1::StorageClass;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::core::{Selector, SelectorExt};
use kube::runtime::controller::{self, Action, Controller};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use kube::{Resource, ResourceExt};
use serde_json::json;

use crate::daemonset::node_selector_matches;
use crate::informer::SharedPods;
use crate::statefulset::events::Events;
use crate::{Context, Error, ERROR_REQUEUE};

const CONTROLLER: &str = "persistentvolume-controller";
/// The StorageClass kubelab ensures, and marks default.
pub const DEFAULT_CLASS: &str = "standard";
/// The provisioner of `standard`: kubelab's built-in local-path provisioner.
pub const PROVISIONER: &str = "kubelab.dev/local-path";
/// Where provisioned volumes live on their node.
pub const STORAGE_ROOT: &str = "/var/lib/kubelab/storage";

const DEFAULT_CLASS_ANNOTATION: &str = "storageclass.kubernetes.io/is-default-class";
const BETA_DEFAULT_CLASS_ANNOTATION: &str = "storageclass.beta.kubernetes.io/is-default-class";
const BIND_COMPLETED: &str = "pv.kubernetes.io/bind-completed";
const BOUND_BY_CONTROLLER: &str = "pv.kubernetes.io/bound-by-controller";
const PROVISIONED_BY: &str = "pv.kubernetes.io/provisioned-by";
const STORAGE_PROVISIONER: &str = "volume.kubernetes.io/storage-provisioner";
const BETA_STORAGE_PROVISIONER: &str = "volume.beta.kubernetes.io/storage-provisioner";
const SELECTED_NODE: &str = "volume.kubernetes.io/selected-node";
const HOSTNAME_LABEL: &str = "kubernetes.io/hostname";

/// How often a claim that waits for a class or a matching volume is looked at again
/// (upstream resyncs every 15 s).
const PENDING_RESYNC: Duration = Duration::from_secs(5);
const DEBOUNCE: Duration = Duration::from_millis(50);

struct State {
    client: kube::Client,
    events: Events,
}

pub async fn run(ctx: Context) {
    let state = Arc::new(State {
        client: ctx.client.clone(),
        events: Events::new(ctx.client.clone(), CONTROLLER),
    });
    tokio::join!(
        ensure_default_class(ctx.client.clone()),
        run_claims(state.clone(), ctx.pods.clone()),
        run_volumes(state),
    );
}

/// Creates the default StorageClass `standard` unless it exists (retrying until it does).
async fn ensure_default_class(client: kube::Client) {
    let api: Api<StorageClass> = Api::all(client);
    let class: StorageClass = match serde_json::from_value(json!({
        "apiVersion": "storage.k8s.io/v1",
        "kind": "StorageClass",
        "metadata": {
            "name": DEFAULT_CLASS,
            "annotations": {DEFAULT_CLASS_ANNOTATION: "true"},
        },
        "provisioner": PROVISIONER,
        "reclaimPolicy": "Delete",
        "volumeBindingMode": "WaitForFirstConsumer",
    })) {
        Ok(class) => class,
        Err(e) => {
            tracing::error!(error = %e, "default storage class does not decode");
            return;
        }
    };
    loop {
        let result = match api.get_opt(DEFAULT_CLASS).await {
            Ok(Some(_)) => return,
            Ok(None) => api.create(&PostParams::default(), &class).await.map(|_| ()),
            Err(e) => Err(e),
        };
        match result {
            Ok(()) => {
                tracing::info!(class = DEFAULT_CLASS, "created the default storage class");
                return;
            }
            Err(kube::Error::Api(e)) if e.code == 409 => return,
            Err(e) => {
                tracing::debug!(error = %e, "cannot ensure the default storage class yet");
                tokio::time::sleep(ERROR_REQUEUE).await;
            }
        }
    }
}

async fn run_claims(state: Arc<State>, pods: SharedPods) {
    let client = state.client.clone();
    let controller = Controller::new(
        Api::<PersistentVolumeClaim>::all(client.clone()),
        watcher::Config::default(),
    );
    let claims = controller.store();
    let unbound_claims = move |class: Option<String>| {
        claims
            .state()
            .iter()
            .filter(|c| {
                let spec = c.spec.as_ref();
                spec.and_then(|s| s.volume_name.as_deref())
                    .is_none_or(str::is_empty)
                    && class.as_ref().is_none_or(|class| {
                        spec.and_then(|s| s.storage_class_name.as_ref()) == Some(class)
                    })
            })
            .map(|c| ObjectRef::from_obj(&**c))
            .collect::<Vec<_>>()
    };
    let for_class = unbound_claims.clone();
    controller
        // A consumer pod got a node: its WaitForFirstConsumer claims can be bound now.
        .watches_shared_stream(pods.touched(), |pod| scheduled_pod_claims(&pod))
        // A volume changed: its claim, or every unbound claim it might now satisfy.
        .watches(
            Api::<PersistentVolume>::all(client.clone()),
            watcher::Config::default(),
            move |pv| match pv.spec.as_ref().and_then(|s| s.claim_ref.as_ref()) {
                Some(r) => vec![claim_ref(r)],
                None => unbound_claims(Some(volume_class(&pv))),
            },
        )
        // A class appeared or changed (a new default, say): every unbound claim.
        .watches(
            Api::<StorageClass>::all(client.clone()),
            watcher::Config::default(),
            move |_class| for_class(None),
        )
        .with_config(controller::Config::default().debounce(DEBOUNCE))
        .run(
            reconcile_claim,
            |_claim, err, _state| {
                tracing::warn!(error = %err, "persistentvolumeclaim reconcile failed");
                Action::requeue(ERROR_REQUEUE)
            },
            state,
        )
        .for_each(|result| {
            if let Err(e) = result {
                tracing::debug!(error = %e, "persistentvolumeclaim controller");
            }
            futures::future::ready(())
        })
        .await;
}

async fn run_volumes(state: Arc<State>) {
    let client = state.client.clone();
    Controller::new(
        Api::<PersistentVolume>::all(client.clone()),
        watcher::Config::default(),
    )
    // A claim changed or went away: the volume it names (or was provisioned for).
    .watches(
        Api::<PersistentVolumeClaim>::all(client.clone()),
        watcher::Config::default(),
        |claim| {
            let mut refs = Vec::new();
            if let Some(name) = claim
                .spec
                .as_ref()
                .and_then(|s| s.volume_name.as_deref())
                .filter(|n| !n.is_empty())
            {
                refs.push(ObjectRef::new(name));
            }
            if let Some(uid) = claim.uid() {
                refs.push(ObjectRef::new(&format!("pvc-{uid}")));
            }
            refs
        },
    )
    .with_config(controller::Config::default().debounce(DEBOUNCE))
    .run(
        reconcile_volume,
        |_pv, err, _state| {
            tracing::warn!(error = %err, "persistentvolume reconcile failed");
            Action::requeue(ERROR_REQUEUE)
        },
        state,
    )
    .for_each(|result| {
        if let Err(e) = result {
            tracing::debug!(error = %e, "persistentvolume controller");
        }
        futures::future::ready(())
    })
    .await;
}

fn claim_ref(r: &ObjectReference) -> ObjectRef<PersistentVolumeClaim> {
    ObjectRef::new(r.name.as_deref().unwrap_or_default())
        .within(r.namespace.as_deref().unwrap_or_default())
}

/// The claims a pod mounts, once the pod is scheduled.
fn scheduled_pod_claims(pod: &Pod) -> Vec<ObjectRef<PersistentVolumeClaim>> {
    let Some(spec) = pod.spec.as_ref() else {
        return Vec::new();
    };
    if spec.node_name.as_deref().is_none_or(str::is_empty) {
        return Vec::new();
    }
    let namespace = pod.namespace().unwrap_or_default();
    spec.volumes
        .iter()
        .flatten()
        .filter_map(|v| v.persistent_volume_claim.as_ref())
        .map(|c| ObjectRef::new(&c.claim_name).within(&namespace))
        .collect()
}

fn volume_class(pv: &PersistentVolume) -> String {
    pv.spec
        .as_ref()
        .and_then(|s| s.storage_class_name.clone())
        .unwrap_or_default()
}

fn volume_phase(pv: &PersistentVolume) -> &str {
    pv.status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or_default()
}

fn claim_phase(claim: &PersistentVolumeClaim) -> &str {
    claim
        .status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or_default()
}

fn annotation<'a>(meta: &'a ObjectMeta, key: &str) -> Option<&'a str> {
    meta.annotations.as_ref()?.get(key).map(String::as_str)
}

fn claim_key(claim: &PersistentVolumeClaim) -> String {
    format!(
        "{}/{}",
        claim.namespace().unwrap_or_default(),
        claim.name_any()
    )
}

/// The requested storage of a claim, as written and in bytes.
fn requested_storage(claim: &PersistentVolumeClaim) -> Option<(String, f64)> {
    let q = claim
        .spec
        .as_ref()?
        .resources
        .as_ref()?
        .requests
        .as_ref()?
        .get("storage")?;
    Some((q.0.clone(), quantity::parse(&q.0)?))
}

fn volume_storage(pv: &PersistentVolume) -> Option<f64> {
    let q = pv.spec.as_ref()?.capacity.as_ref()?.get("storage")?;
    quantity::parse(&q.0)
}

/// Whether a volume's claimRef names this claim (any uid if the ref has none).
fn bound_to(pv: &PersistentVolume, claim: &PersistentVolumeClaim) -> bool {
    let Some(r) = pv.spec.as_ref().and_then(|s| s.claim_ref.as_ref()) else {
        return false;
    };
    r.name.as_deref() == claim.metadata.name.as_deref()
        && r.namespace.as_deref() == claim.metadata.namespace.as_deref()
        && r.uid
            .as_deref()
            .is_none_or(|uid| uid.is_empty() || Some(uid) == claim.metadata.uid.as_deref())
}

fn node_affinity_allows(pv: &PersistentVolume, node: &Node) -> bool {
    pv.spec
        .as_ref()
        .and_then(|s| s.node_affinity.as_ref())
        .and_then(|a| a.required.as_ref())
        .is_none_or(|required| node_selector_matches(required, node))
}

/// Upstream's `FindMatchingVolume`: a volume pre-bound to the claim, else the smallest
/// Available volume of the claim's class that is big enough, offers every requested access mode,
/// has the same volume mode, matches the claim's selector and (with a node) the node.
fn find_match<'a>(
    claim: &PersistentVolumeClaim,
    volumes: &'a [PersistentVolume],
    node: Option<&Node>,
) -> Result<Option<&'a PersistentVolume>, Error> {
    let spec = claim.spec.clone().unwrap_or_default();
    let requested = requested_storage(claim)
        .map(|(_, bytes)| bytes)
        .unwrap_or(0.0);
    let class = spec.storage_class_name.clone().unwrap_or_default();
    let modes = spec.access_modes.clone().unwrap_or_default();
    let claim_mode = spec
        .volume_mode
        .clone()
        .unwrap_or_else(|| "Filesystem".into());
    let selector = spec
        .selector
        .clone()
        .map(Selector::try_from)
        .transpose()
        .map_err(|e| Error::Invalid(format!("invalid claim selector: {e}")))?;
    let mut best: Option<(&PersistentVolume, f64)> = None;
    for pv in volumes {
        let Some(pv_spec) = pv.spec.as_ref() else {
            continue;
        };
        if pv_spec.claim_ref.is_some() && !bound_to(pv, claim) {
            continue;
        }
        let size = volume_storage(pv).unwrap_or(0.0);
        let pv_mode = pv_spec.volume_mode.as_deref().unwrap_or("Filesystem");
        if size < requested || pv_mode != claim_mode || pv.metadata.deletion_timestamp.is_some() {
            continue;
        }
        let affinity_ok = node.is_none_or(|n| node_affinity_allows(pv, n));
        if bound_to(pv, claim) {
            return Ok(affinity_ok.then_some(pv));
        }
        let pv_modes = pv_spec.access_modes.as_deref().unwrap_or_default();
        let labels = pv.metadata.labels.clone().unwrap_or_default();
        if volume_phase(pv) != "Available"
            || selector.as_ref().is_some_and(|s| !s.matches(&labels))
            || volume_class(pv) != class
            || !affinity_ok
            || !modes.iter().all(|m| pv_modes.contains(m))
        {
            continue;
        }
        if best.is_none_or(|(_, best_size)| size < best_size) {
            best = Some((pv, size));
        }
    }
    Ok(best.map(|(pv, _)| pv))
}

/// The newest class marked default (upstream's `GetDefaultClass`).
async fn default_class(client: &kube::Client) -> Result<Option<String>, Error> {
    let api: Api<StorageClass> = Api::all(client.clone());
    let mut defaults: Vec<StorageClass> = api
        .list(&ListParams::default())
        .await?
        .items
        .into_iter()
        .filter(|c| {
            annotation(&c.metadata, DEFAULT_CLASS_ANNOTATION) == Some("true")
                || annotation(&c.metadata, BETA_DEFAULT_CLASS_ANNOTATION) == Some("true")
        })
        .collect();
    defaults.sort_by(|a, b| {
        b.metadata
            .creation_timestamp
            .cmp(&a.metadata.creation_timestamp)
            .then_with(|| a.metadata.name.cmp(&b.metadata.name))
    });
    Ok(defaults.first().map(|c| c.name_any()))
}

async fn reconcile_claim(
    claim: Arc<PersistentVolumeClaim>,
    state: Arc<State>,
) -> Result<Action, Error> {
    if claim.metadata.deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let namespace = claim.namespace().unwrap_or_default();
    let name = claim.name_any();
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(state.client.clone(), &namespace);
    let spec = claim.spec.clone().unwrap_or_default();

    if spec.storage_class_name.is_none() {
        if let Some(class) = default_class(&state.client).await? {
            claims
                .patch(
                    &name,
                    &PatchParams::default(),
                    &Patch::Merge(json!({"spec": {"storageClassName": class}})),
                )
                .await?;
            tracing::info!(claim = %claim_key(&claim), class, "assigned the default storage class");
            return Ok(Action::await_change());
        }
    }

    if let Some(volume_name) = spec.volume_name.as_deref().filter(|n| !n.is_empty()) {
        return sync_bound_claim(&claim, volume_name, &state).await;
    }

    let class_name = spec.storage_class_name.clone().unwrap_or_default();
    let class = if class_name.is_empty() {
        None
    } else {
        Api::<StorageClass>::all(state.client.clone())
            .get_opt(&class_name)
            .await?
    };
    let reference = claim.object_ref(&());
    let wait_for_consumer = class
        .as_ref()
        .and_then(|c| c.volume_binding_mode.as_deref())
        == Some("WaitForFirstConsumer");
    let node = if wait_for_consumer {
        let Some(node_name) = selected_node(&claim, &state).await? else {
            state
                .events
                .normal(
                    &reference,
                    "WaitForFirstConsumer",
                    "waiting for first consumer to be created before binding".into(),
                )
                .await;
            return Ok(Action::await_change());
        };
        let node = Api::<Node>::all(state.client.clone())
            .get_opt(&node_name)
            .await?;
        if node.is_none() {
            // The consumer's node is gone; wait for the pod to be rescheduled.
            return Ok(Action::requeue(PENDING_RESYNC));
        }
        node
    } else {
        None
    };

    let volumes = Api::<PersistentVolume>::all(state.client.clone())
        .list(&ListParams::default())
        .await?
        .items;
    if let Some(pv) = find_match(&claim, &volumes, node.as_ref())? {
        bind(pv, &claim, &state).await?;
        return Ok(Action::await_change());
    }

    match class {
        Some(class) if class.provisioner == PROVISIONER => {
            if spec.selector.is_some() {
                state
                    .events
                    .warning(
                        &reference,
                        "ProvisioningFailed",
                        "Failed to provision volume with StorageClass \"".to_owned()
                            + &class_name
                            + "\": claim.Spec.Selector is not supported for dynamic provisioning",
                    )
                    .await;
                return Ok(Action::await_change());
            }
            let pv = provision(&claim, &class, node.as_ref(), &state).await?;
            bind(&pv, &claim, &state).await?;
            Ok(Action::await_change())
        }
        Some(class) => {
            annotate_provisioner(&claim, &class.provisioner, None, &state).await?;
            state
                .events
                .normal(
                    &reference,
                    "ExternalProvisioning",
                    format!(
                        "Waiting for a volume to be created either by the external provisioner '{}' or manually by the system administrator. If volume creation is delayed, please verify that the provisioner is running and correctly registered.",
                        class.provisioner
                    ),
                )
                .await;
            Ok(Action::requeue(PENDING_RESYNC))
        }
        None if class_name.is_empty() => {
            state
                .events
                .normal(
                    &reference,
                    "FailedBinding",
                    "no persistent volumes available for this claim and no storage class is set"
                        .into(),
                )
                .await;
            Ok(Action::requeue(PENDING_RESYNC))
        }
        None => {
            state
                .events
                .warning(
                    &reference,
                    "ProvisioningFailed",
                    format!("storageclass.storage.k8s.io \"{class_name}\" not found"),
                )
                .await;
            Ok(Action::requeue(PENDING_RESYNC))
        }
    }
}

/// The node of the claim's first consumer: the `selected-node` annotation (what upstream's
/// scheduler sets), else a scheduled pod in the namespace that mounts the claim.
async fn selected_node(
    claim: &PersistentVolumeClaim,
    state: &State,
) -> Result<Option<String>, Error> {
    if let Some(node) = annotation(&claim.metadata, SELECTED_NODE).filter(|n| !n.is_empty()) {
        return Ok(Some(node.to_owned()));
    }
    let namespace = claim.namespace().unwrap_or_default();
    let name = claim.name_any();
    let pods: Api<Pod> = Api::namespaced(state.client.clone(), &namespace);
    let scheduled = pods
        .list(&ListParams::default().fields("spec.nodeName!="))
        .await?
        .items;
    Ok(scheduled.iter().find_map(|pod| {
        let spec = pod.spec.as_ref()?;
        let mounts = spec
            .volumes
            .iter()
            .flatten()
            .filter_map(|v| v.persistent_volume_claim.as_ref())
            .any(|c| c.claim_name == name);
        if mounts && pod.metadata.deletion_timestamp.is_none() {
            spec.node_name.clone().filter(|n| !n.is_empty())
        } else {
            None
        }
    }))
}

/// Records the provisioner (and the selected node) on the claim, as upstream does.
async fn annotate_provisioner(
    claim: &PersistentVolumeClaim,
    provisioner: &str,
    node: Option<&str>,
    state: &State,
) -> Result<(), Error> {
    let meta = &claim.metadata;
    let mut wanted = BTreeMap::new();
    if annotation(meta, STORAGE_PROVISIONER) != Some(provisioner) {
        wanted.insert(STORAGE_PROVISIONER, provisioner);
    }
    if annotation(meta, BETA_STORAGE_PROVISIONER) != Some(provisioner) {
        wanted.insert(BETA_STORAGE_PROVISIONER, provisioner);
    }
    if let Some(node) = node {
        if annotation(meta, SELECTED_NODE) != Some(node) {
            wanted.insert(SELECTED_NODE, node);
        }
    }
    if wanted.is_empty() {
        return Ok(());
    }
    let api: Api<PersistentVolumeClaim> =
        Api::namespaced(state.client.clone(), &claim.namespace().unwrap_or_default());
    api.patch(
        &claim.name_any(),
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"annotations": wanted}})),
    )
    .await?;
    Ok(())
}

/// Creates the local-path volume `pvc-<uid>` for a claim: a hostPath directory under
/// [`STORAGE_ROOT`], pinned to `node` when there is one.
async fn provision(
    claim: &PersistentVolumeClaim,
    class: &StorageClass,
    node: Option<&Node>,
    state: &State,
) -> Result<PersistentVolume, Error> {
    let reference = claim.object_ref(&());
    let key = claim_key(claim);
    let Some((request, _)) = requested_storage(claim) else {
        state
            .events
            .warning(
                &reference,
                "ProvisioningFailed",
                format!("Failed to provision volume with StorageClass \"{}\": claim has no storage request", class.name_any()),
            )
            .await;
        return Err(Error::Invalid(format!("claim {key} requests no storage")));
    };
    let uid = claim
        .uid()
        .ok_or_else(|| Error::Invalid(format!("claim {key} has no uid")))?;
    let node_name = node.map(|n| n.name_any());
    annotate_provisioner(claim, PROVISIONER, node_name.as_deref(), state).await?;
    state
        .events
        .normal(
            &reference,
            "Provisioning",
            format!("External provisioner is provisioning volume for claim \"{key}\""),
        )
        .await;
    let name = format!("pvc-{uid}");
    let spec = claim.spec.clone().unwrap_or_default();
    let node_affinity = node.map(|node| {
        let requirement = match node.labels().get(HOSTNAME_LABEL) {
            Some(hostname) => NodeSelectorTerm {
                match_expressions: Some(vec![NodeSelectorRequirement {
                    key: HOSTNAME_LABEL.into(),
                    operator: "In".into(),
                    values: Some(vec![hostname.clone()]),
                }]),
                match_fields: None,
            },
            None => NodeSelectorTerm {
                match_expressions: None,
                match_fields: Some(vec![NodeSelectorRequirement {
                    key: "metadata.name".into(),
                    operator: "In".into(),
                    values: Some(vec![node.name_any()]),
                }]),
            },
        };
        VolumeNodeAffinity {
            required: Some(NodeSelector {
                node_selector_terms: vec![requirement],
            }),
        }
    });
    let pv = PersistentVolume {
        metadata: ObjectMeta {
            name: Some(name.clone()),
            annotations: Some([(PROVISIONED_BY.to_owned(), PROVISIONER.to_owned())].into()),
            ..ObjectMeta::default()
        },
        spec: Some(PersistentVolumeSpec {
            capacity: Some(
                [(
                    "storage".to_owned(),
                    k8s_openapi::apimachinery::pkg::api::resource::Quantity(request),
                )]
                .into(),
            ),
            access_modes: spec.access_modes.clone(),
            claim_ref: Some(claim_object_ref(claim)),
            storage_class_name: Some(class.name_any()),
            persistent_volume_reclaim_policy: Some(
                class
                    .reclaim_policy
                    .clone()
                    .unwrap_or_else(|| "Delete".into()),
            ),
            mount_options: class.mount_options.clone(),
            volume_mode: spec.volume_mode.clone(),
            host_path: Some(HostPathVolumeSource {
                path: format!("{STORAGE_ROOT}/{name}"),
                type_: Some("DirectoryOrCreate".into()),
            }),
            node_affinity,
            ..PersistentVolumeSpec::default()
        }),
        status: None,
    };
    let api: Api<PersistentVolume> = Api::all(state.client.clone());
    let created = match api.create(&PostParams::default(), &pv).await {
        Ok(created) => created,
        Err(kube::Error::Api(e)) if e.code == 409 => api.get(&name).await?,
        Err(e) => {
            state
                .events
                .warning(
                    &reference,
                    "ProvisioningFailed",
                    format!(
                        "Failed to provision volume with StorageClass \"{}\": {e}",
                        class.name_any()
                    ),
                )
                .await;
            return Err(e.into());
        }
    };
    tracing::info!(claim = %key, volume = %name, node = ?node_name, "provisioned volume");
    state
        .events
        .normal(
            &reference,
            "ProvisioningSucceeded",
            format!("Successfully provisioned volume {name}"),
        )
        .await;
    Ok(created)
}

fn claim_object_ref(claim: &PersistentVolumeClaim) -> ObjectReference {
    ObjectReference {
        api_version: Some("v1".into()),
        kind: Some("PersistentVolumeClaim".into()),
        namespace: claim.namespace(),
        name: Some(claim.name_any()),
        uid: claim.uid(),
        resource_version: claim.resource_version(),
        ..ObjectReference::default()
    }
}

/// Binds a volume and a claim: the volume's claimRef and phase, then the claim's volumeName,
/// annotations and status (the order upstream's `bind` uses).
async fn bind(
    pv: &PersistentVolume,
    claim: &PersistentVolumeClaim,
    state: &State,
) -> Result<(), Error> {
    let pv_name = pv.name_any();
    let volumes: Api<PersistentVolume> = Api::all(state.client.clone());
    let uid_bound = pv
        .spec
        .as_ref()
        .and_then(|s| s.claim_ref.as_ref())
        .and_then(|r| r.uid.as_deref())
        .is_some_and(|uid| Some(uid) == claim.metadata.uid.as_deref());
    if !uid_bound {
        let mut patch = json!({"spec": {"claimRef": claim_object_ref(claim)}});
        if pv
            .spec
            .as_ref()
            .and_then(|s| s.claim_ref.as_ref())
            .is_none()
        {
            patch["metadata"] = json!({"annotations": {BOUND_BY_CONTROLLER: "yes"}});
        }
        volumes
            .patch(&pv_name, &PatchParams::default(), &Patch::Merge(patch))
            .await?;
    }
    if volume_phase(pv) != "Bound" {
        volumes
            .patch_status(
                &pv_name,
                &PatchParams::default(),
                &Patch::Merge(json!({"status": {"phase": "Bound"}})),
            )
            .await?;
    }
    let claims: Api<PersistentVolumeClaim> =
        Api::namespaced(state.client.clone(), &claim.namespace().unwrap_or_default());
    let claim_name = claim.name_any();
    let spec = claim.spec.as_ref();
    let volume_name = spec
        .and_then(|s| s.volume_name.as_deref())
        .unwrap_or_default();
    if volume_name != pv_name || annotation(&claim.metadata, BIND_COMPLETED) != Some("yes") {
        let mut annotations = json!({BIND_COMPLETED: "yes"});
        if volume_name.is_empty() {
            annotations[BOUND_BY_CONTROLLER] = json!("yes");
        }
        claims
            .patch(
                &claim_name,
                &PatchParams::default(),
                &Patch::Merge(json!({
                    "metadata": {"annotations": annotations},
                    "spec": {"volumeName": pv_name},
                })),
            )
            .await?;
    }
    let pv_spec = pv.spec.clone().unwrap_or_default();
    let status = claim.status.clone().unwrap_or_default();
    if claim_phase(claim) != "Bound"
        || status.capacity != pv_spec.capacity
        || status.access_modes != pv_spec.access_modes
    {
        claims
            .patch_status(
                &claim_name,
                &PatchParams::default(),
                &Patch::Merge(json!({"status": {
                    "phase": "Bound",
                    "accessModes": pv_spec.access_modes,
                    "capacity": pv_spec.capacity,
                }})),
            )
            .await?;
        tracing::info!(claim = %claim_key(claim), volume = %pv_name, "bound claim");
    }
    Ok(())
}

/// A claim that names its volume: finish or confirm the binding, or report it Lost.
async fn sync_bound_claim(
    claim: &PersistentVolumeClaim,
    volume_name: &str,
    state: &State,
) -> Result<Action, Error> {
    let volumes: Api<PersistentVolume> = Api::all(state.client.clone());
    let reference = claim.object_ref(&());
    let lost = |reason: &'static str, message: &'static str| async move {
        if claim_phase(claim) != "Lost" {
            let claims: Api<PersistentVolumeClaim> =
                Api::namespaced(state.client.clone(), &claim.namespace().unwrap_or_default());
            claims
                .patch_status(
                    &claim.name_any(),
                    &PatchParams::default(),
                    &Patch::Merge(json!({"status": {"phase": "Lost"}})),
                )
                .await?;
            state
                .events
                .warning(&reference, reason, message.into())
                .await;
        }
        Ok::<_, Error>(Action::await_change())
    };
    let Some(pv) = volumes.get_opt(volume_name).await? else {
        return lost(
            "ClaimLost",
            "Bound claim has lost reference to PersistentVolume. Data on the volume is lost!",
        )
        .await;
    };
    let claimed_by_other = pv
        .spec
        .as_ref()
        .and_then(|s| s.claim_ref.as_ref())
        .is_some_and(|_| !bound_to(&pv, claim));
    if claimed_by_other {
        return lost(
            "ClaimMisbound",
            "Two claims are bound to the same volume, this one is bound incorrectly",
        )
        .await;
    }
    bind(&pv, claim, state).await?;
    Ok(Action::await_change())
}

async fn reconcile_volume(pv: Arc<PersistentVolume>, state: Arc<State>) -> Result<Action, Error> {
    if pv.metadata.deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let name = pv.name_any();
    let volumes: Api<PersistentVolume> = Api::all(state.client.clone());
    let set_phase = |phase: &'static str, message: Option<&'static str>| {
        let volumes = volumes.clone();
        let name = name.clone();
        async move {
            let mut status = json!({"phase": phase});
            if let Some(message) = message {
                status["message"] = json!(message);
            }
            crate::statefulset::pods::not_found_ok(
                volumes
                    .patch_status(
                        &name,
                        &PatchParams::default(),
                        &Patch::Merge(json!({"status": status})),
                    )
                    .await,
            )?;
            Ok::<_, Error>(())
        }
    };
    let phase = volume_phase(&pv);
    let Some(claim_ref) = pv.spec.as_ref().and_then(|s| s.claim_ref.clone()) else {
        if phase != "Available" {
            set_phase("Available", None).await?;
        }
        return Ok(Action::await_change());
    };
    let ref_uid = claim_ref.uid.clone().filter(|u| !u.is_empty());
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(
        state.client.clone(),
        claim_ref.namespace.as_deref().unwrap_or_default(),
    );
    let claim = claims
        .get_opt(claim_ref.name.as_deref().unwrap_or_default())
        .await?
        .filter(|c| ref_uid.is_none() || c.uid() == ref_uid);
    let Some(claim) = claim else {
        if ref_uid.is_none() {
            // Pre-bound to a claim that does not exist yet: available for it alone.
            if phase != "Available" {
                set_phase("Available", None).await?;
            }
            return Ok(Action::await_change());
        }
        return release(&pv, &state).await;
    };
    let claim_volume = claim
        .spec
        .as_ref()
        .and_then(|s| s.volume_name.as_deref())
        .unwrap_or_default();
    if claim_volume == name {
        if phase != "Bound" {
            set_phase("Bound", None).await?;
        }
    } else if !claim_volume.is_empty()
        && annotation(&pv.metadata, BOUND_BY_CONTROLLER) == Some("yes")
    {
        // The claim went to another volume: this one is free again.
        volumes
            .patch(
                &name,
                &PatchParams::default(),
                &Patch::Merge(json!({"spec": {"claimRef": null}})),
            )
            .await?;
        set_phase("Available", None).await?;
    }
    Ok(Action::await_change())
}

/// The claim of a bound volume is gone: reclaim the volume as its policy says.
async fn release(pv: &PersistentVolume, state: &State) -> Result<Action, Error> {
    let name = pv.name_any();
    let volumes: Api<PersistentVolume> = Api::all(state.client.clone());
    let policy = pv
        .spec
        .as_ref()
        .and_then(|s| s.persistent_volume_reclaim_policy.as_deref())
        .unwrap_or("Retain");
    let phase = volume_phase(pv);
    if phase != "Released" && phase != "Failed" {
        let (phase, message) = match policy {
            "Recycle" => ("Failed", Some("Recycle is not supported by kubelab")),
            _ => ("Released", None),
        };
        let mut status = json!({"phase": phase});
        if let Some(message) = message {
            status["message"] = json!(message);
        }
        volumes
            .patch_status(
                &name,
                &PatchParams::default(),
                &Patch::Merge(json!({"status": status})),
            )
            .await?;
        if policy == "Recycle" {
            state
                .events
                .warning(
                    &pv.object_ref(&()),
                    "VolumeFailedRecycle",
                    "Recycle is not supported by kubelab".into(),
                )
                .await;
        }
    }
    if policy == "Delete" {
        // The directory itself is the node's to remove; the object goes now.
        match volumes.delete(&name, &DeleteParams::default()).await {
            Ok(_) => tracing::info!(volume = %name, "deleted released volume"),
            Err(kube::Error::Api(e)) if e.code == 404 => {}
            Err(e) => {
                state
                    .events
                    .warning(&pv.object_ref(&()), "VolumeFailedDelete", e.to_string())
                    .await;
                return Err(e.into());
            }
        }
    }
    Ok(Action::await_change())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claim(spec: serde_json::Value) -> PersistentVolumeClaim {
        serde_json::from_value(json!({
            "metadata": {"name": "data", "namespace": "ns", "uid": "u1"},
            "spec": spec
        }))
        .unwrap()
    }

    fn volume(name: &str, spec: serde_json::Value, phase: &str) -> PersistentVolume {
        serde_json::from_value(json!({
            "metadata": {"name": name, "labels": {"tier": "fast"}},
            "spec": spec,
            "status": {"phase": phase}
        }))
        .unwrap()
    }

    fn request(size: &str) -> serde_json::Value {
        json!({
            "storageClassName": "manual",
            "accessModes": ["ReadWriteOnce"],
            "resources": {"requests": {"storage": size}}
        })
    }

    fn pv_spec(size: &str, modes: serde_json::Value) -> serde_json::Value {
        json!({
            "storageClassName": "manual",
            "accessModes": modes,
            "capacity": {"storage": size},
            "hostPath": {"path": "/x"}
        })
    }

    #[test]
    fn smallest_sufficient_available_volume_wins() {
        let c = claim(request("1Gi"));
        let volumes = vec![
            volume(
                "big",
                pv_spec("10Gi", json!(["ReadWriteOnce"])),
                "Available",
            ),
            volume(
                "small",
                pv_spec("500Mi", json!(["ReadWriteOnce"])),
                "Available",
            ),
            volume(
                "fit",
                pv_spec("2Gi", json!(["ReadWriteOnce", "ReadOnlyMany"])),
                "Available",
            ),
            volume("rox", pv_spec("1Gi", json!(["ReadOnlyMany"])), "Available"),
            volume(
                "released",
                pv_spec("1Gi", json!(["ReadWriteOnce"])),
                "Released",
            ),
        ];
        let found = find_match(&c, &volumes, None)
            .unwrap()
            .map(|v| v.name_any());
        assert_eq!(found.as_deref(), Some("fit"));
    }

    #[test]
    fn prebound_volume_and_selector() {
        let mut spec = pv_spec("1Gi", json!(["ReadWriteOnce"]));
        spec["claimRef"] = json!({"namespace": "ns", "name": "data"});
        let volumes = vec![
            volume(
                "other",
                pv_spec("1Gi", json!(["ReadWriteOnce"])),
                "Available",
            ),
            volume("mine", spec, "Available"),
        ];
        let c = claim(request("1Gi"));
        assert_eq!(
            find_match(&c, &volumes, None)
                .unwrap()
                .map(|v| v.name_any())
                .as_deref(),
            Some("mine")
        );
        let mut with_selector = request("1Gi");
        with_selector["selector"] = json!({"matchLabels": {"tier": "slow"}});
        let c = claim(with_selector);
        assert!(find_match(&c, &volumes[..1], None).unwrap().is_none());
    }

    #[test]
    fn node_affinity_limits_matches() {
        let mut spec = pv_spec("1Gi", json!(["ReadWriteOnce"]));
        spec["nodeAffinity"] = json!({"required": {"nodeSelectorTerms": [{"matchExpressions": [
            {"key": HOSTNAME_LABEL, "operator": "In", "values": ["n1"]}
        ]}]}});
        let volumes = vec![volume("local", spec, "Available")];
        let node = |name: &str| -> Node {
            serde_json::from_value(
                json!({"metadata": {"name": name, "labels": {HOSTNAME_LABEL: name}}}),
            )
            .unwrap()
        };
        let c = claim(request("1Gi"));
        assert!(find_match(&c, &volumes, Some(&node("n1")))
            .unwrap()
            .is_some());
        assert!(find_match(&c, &volumes, Some(&node("n2")))
            .unwrap()
            .is_none());
    }
}
