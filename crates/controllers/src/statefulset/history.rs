//! ControllerRevisions: the pod-template history of DaemonSets and StatefulSets, kept as
//! upstream's `controller/history` package keeps it. Each revision's `data` is the strategic merge
//! patch that restores its template (`{"spec":{"template":{"$patch":"replace",...}}}`), which is
//! what `kubectl rollout history` shows and `kubectl rollout undo` applies.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::ControllerRevision;
use k8s_openapi::api::core::v1::PodTemplateSpec;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use k8s_openapi::apimachinery::pkg::runtime::RawExtension;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use serde_json::{json, Value};

use crate::Error;

/// Label on revisions (and on the pods made from them) naming the revision's hash.
pub(crate) const REVISION_HASH_LABEL: &str = "controller-revision-hash";

/// How many times a name collision is retried with a bumped collision count.
const MAX_COLLISIONS: i32 = 16;

/// The controller that owns a history.
pub(crate) struct Owner<'a> {
    pub name: &'a str,
    pub namespace: &'a str,
    pub uid: &'a str,
    pub owner_ref: OwnerReference,
    /// Copied onto new revisions (so `kubernetes.io/change-cause` shows in `rollout history`).
    pub annotations: BTreeMap<String, String>,
    pub collision_count: i32,
    /// Label selector (string form) matching the owner's pods and revisions.
    pub selector: String,
}

/// An owner's revisions, oldest first, and the one that matches its current template.
pub(crate) struct Revisions {
    pub update: ControllerRevision,
    pub all: Vec<ControllerRevision>,
    pub collision_count: i32,
}

impl Revisions {
    pub(crate) fn find(&self, name: &str) -> Option<&ControllerRevision> {
        self.all
            .iter()
            .find(|r| r.metadata.name.as_deref() == Some(name))
    }
}

/// The hash label of a revision (its name suffix when the label is missing).
pub(crate) fn revision_hash(revision: &ControllerRevision) -> String {
    if let Some(hash) = revision
        .metadata
        .labels
        .as_ref()
        .and_then(|l| l.get(REVISION_HASH_LABEL))
    {
        return hash.clone();
    }
    let name = revision.metadata.name.as_deref().unwrap_or_default();
    name.rsplit_once('-')
        .map(|(_, h)| h.to_owned())
        .unwrap_or_else(|| name.to_owned())
}

/// The revision data for a template: a strategic merge patch replacing `spec.template`.
pub(crate) fn patch_data(template: &PodTemplateSpec) -> Result<Value, Error> {
    let mut value = serde_json::to_value(template)
        .map_err(|e| Error::Invalid(format!("cannot encode pod template: {e}")))?;
    if let Some(map) = value.as_object_mut() {
        map.insert("$patch".into(), json!("replace"));
    }
    Ok(json!({ "spec": { "template": value } }))
}

/// The template a revision restores, if its data has the expected shape.
pub(crate) fn template_of(revision: &ControllerRevision) -> Option<PodTemplateSpec> {
    let data = revision.data.as_ref()?;
    let mut template = data.0.pointer("/spec/template")?.clone();
    template.as_object_mut()?.remove("$patch");
    serde_json::from_value(template).ok()
}

/// Upstream's `rand.SafeEncodeString` alphabet (no vowels, no confusable characters).
const SAFE_ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";

/// The revision hash: FNV-1a (32 bit) of the data plus the collision count, its decimal digits
/// mapped through the safe alphabet as upstream's `HashControllerRevision` does.
pub(crate) fn hash(data: &Value, collision_count: i32) -> String {
    let mut h: u32 = 0x811c_9dc5;
    let mut feed = |bytes: &[u8]| {
        for b in bytes {
            h ^= u32::from(*b);
            h = h.wrapping_mul(0x0100_0193);
        }
    };
    feed(data.to_string().as_bytes());
    if collision_count != 0 {
        feed(&collision_count.to_le_bytes());
    }
    h.to_string()
        .bytes()
        .map(|b| SAFE_ALPHABET[usize::from(b) % SAFE_ALPHABET.len()] as char)
        .collect()
}

fn is_controlled_by(meta: &ObjectMeta, uid: &str) -> bool {
    meta.owner_references
        .iter()
        .flatten()
        .any(|r| r.controller == Some(true) && r.uid == uid)
}

/// Lists the owner's revisions and makes sure one matches `template`: an equal older revision is
/// renumbered to the newest (a rollback), otherwise a new revision is created.
pub(crate) async fn sync(
    client: &kube::Client,
    owner: &Owner<'_>,
    template: &PodTemplateSpec,
) -> Result<Revisions, Error> {
    let api: Api<ControllerRevision> = Api::namespaced(client.clone(), owner.namespace);
    let mut all: Vec<ControllerRevision> = api
        .list(&ListParams::default().labels(&owner.selector))
        .await?
        .items
        .into_iter()
        .filter(|r| is_controlled_by(&r.metadata, owner.uid))
        .collect();
    sort_by_revision(&mut all);
    let next = all.last().map(|r| r.revision + 1).unwrap_or(1);
    let equal = all
        .iter()
        .rposition(|r| template_of(r).as_ref() == Some(template));
    let mut collision_count = owner.collision_count;
    let update = match equal {
        Some(i) if i + 1 == all.len() => all[i].clone(),
        Some(i) => {
            let name = all[i].metadata.name.clone().unwrap_or_default();
            let patched = api
                .patch(
                    &name,
                    &PatchParams::default(),
                    &Patch::Merge(json!({ "revision": next })),
                )
                .await?;
            all[i] = patched.clone();
            patched
        }
        None => {
            let created = create(&api, owner, template, next, &mut collision_count).await?;
            all.push(created.clone());
            created
        }
    };
    sort_by_revision(&mut all);
    Ok(Revisions {
        update,
        all,
        collision_count,
    })
}

async fn create(
    api: &Api<ControllerRevision>,
    owner: &Owner<'_>,
    template: &PodTemplateSpec,
    revision: i64,
    collision_count: &mut i32,
) -> Result<ControllerRevision, Error> {
    let data = patch_data(template)?;
    for _ in 0..MAX_COLLISIONS {
        let hash = hash(&data, *collision_count);
        let name = format!("{}-{}", owner.name, hash);
        let mut labels = template
            .metadata
            .as_ref()
            .and_then(|m| m.labels.clone())
            .unwrap_or_default();
        labels.insert(REVISION_HASH_LABEL.into(), hash);
        let candidate = ControllerRevision {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                namespace: Some(owner.namespace.to_owned()),
                labels: Some(labels),
                annotations: (!owner.annotations.is_empty()).then(|| owner.annotations.clone()),
                owner_references: Some(vec![owner.owner_ref.clone()]),
                ..ObjectMeta::default()
            },
            data: Some(RawExtension(data.clone())),
            revision,
        };
        match api.create(&PostParams::default(), &candidate).await {
            Ok(created) => return Ok(created),
            Err(kube::Error::Api(e)) if e.code == 409 => {
                let existing = api.get(&name).await?;
                if is_controlled_by(&existing.metadata, owner.uid)
                    && template_of(&existing).as_ref() == Some(template)
                {
                    return Ok(existing);
                }
                *collision_count += 1;
            }
            Err(e) => return Err(e.into()),
        }
    }
    Err(Error::Invalid(format!(
        "no free controller revision name for {} after {MAX_COLLISIONS} collisions",
        owner.name
    )))
}

fn sort_by_revision(revisions: &mut [ControllerRevision]) {
    revisions.sort_by(|a, b| {
        a.revision
            .cmp(&b.revision)
            .then_with(|| a.metadata.name.cmp(&b.metadata.name))
    });
}

/// Deletes the oldest revisions beyond `limit`, sparing those `in_use` says are live.
pub(crate) async fn truncate(
    client: &kube::Client,
    namespace: &str,
    revisions: &Revisions,
    limit: i32,
    in_use: impl Fn(&ControllerRevision) -> bool,
) -> Result<(), Error> {
    let limit = usize::try_from(limit.max(0)).unwrap_or(0);
    let spare: Vec<&ControllerRevision> = revisions.all.iter().filter(|r| !in_use(r)).collect();
    if spare.len() <= limit {
        return Ok(());
    }
    let api: Api<ControllerRevision> = Api::namespaced(client.clone(), namespace);
    for revision in &spare[..spare.len() - limit] {
        let Some(name) = revision.metadata.name.as_deref() else {
            continue;
        };
        match api.delete(name, &DeleteParams::default()).await {
            Ok(_) => tracing::debug!(revision = name, "deleted old controller revision"),
            Err(kube::Error::Api(e)) if e.code == 404 => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn template(image: &str) -> PodTemplateSpec {
        serde_json::from_value(json!({
            "metadata": {"labels": {"app": "web"}},
            "spec": {"containers": [{"name": "c", "image": image}]}
        }))
        .unwrap()
    }

    #[test]
    fn data_round_trips_to_the_template() {
        let t = template("nginx");
        let data = patch_data(&t).unwrap();
        assert_eq!(data["spec"]["template"]["$patch"], "replace");
        let revision = ControllerRevision {
            data: Some(RawExtension(data)),
            ..ControllerRevision::default()
        };
        assert_eq!(template_of(&revision), Some(t));
    }

    #[test]
    fn hash_is_stable_safe_and_collision_sensitive() {
        let data = patch_data(&template("nginx")).unwrap();
        let h = hash(&data, 0);
        assert_eq!(h, hash(&data, 0));
        assert!(h.bytes().all(|b| SAFE_ALPHABET.contains(&b)), "{h}");
        assert_ne!(h, hash(&data, 1));
        assert_ne!(h, hash(&patch_data(&template("busybox")).unwrap(), 0));
    }

    #[test]
    fn revision_hash_prefers_the_label() {
        let mut r = ControllerRevision::default();
        r.metadata.name = Some("web-abc12".into());
        assert_eq!(revision_hash(&r), "abc12");
        r.metadata.labels = Some([(REVISION_HASH_LABEL.to_owned(), "zz".to_owned())].into());
        assert_eq!(revision_hash(&r), "zz");
    }
}
