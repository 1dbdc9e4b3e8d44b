//! Controller references: who controls an object, and claiming by selector (upstream
//! `ControllerRefManager`): a controller adopts orphans its selector matches and releases the
//! objects it controls that its selector no longer matches.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use k8s_openapi::serde::de::DeserializeOwned;
use kube::api::{Api, Patch, PatchParams};
use kube::core::{Selector, SelectorExt};
use kube::Resource;
use serde_json::json;

use crate::Error;

/// The owner reference with `controller: true`, if any.
pub(crate) fn controller_of(meta: &ObjectMeta) -> Option<&OwnerReference> {
    meta.owner_references
        .as_ref()?
        .iter()
        .find(|r| r.controller == Some(true))
}

/// A controller reference to `owner` (controller and blockOwnerDeletion set, as upstream's
/// `NewControllerRef`).
pub(crate) fn controller_ref<K: Resource<DynamicType = ()>>(owner: &K) -> OwnerReference {
    let meta = owner.meta();
    OwnerReference {
        api_version: K::api_version(&()).into_owned(),
        kind: K::kind(&()).into_owned(),
        name: meta.name.clone().unwrap_or_default(),
        uid: meta.uid.clone().unwrap_or_default(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    }
}

/// What a controller does with one candidate object.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Claim {
    /// Controlled by us and still selected.
    Owned,
    /// An orphan our selector matches: take it.
    Adopt,
    /// Controlled by us but no longer selected: let it go.
    Release,
    /// Someone else's, or not ours to take.
    Ignore,
}

/// Upstream `ClaimObject`: decide without side effects.
pub(crate) fn classify(
    owner_uid: &str,
    owner_deleting: bool,
    selector: &Selector,
    meta: &ObjectMeta,
) -> Claim {
    static NO_LABELS: BTreeMap<String, String> = BTreeMap::new();
    let matches = selector.matches(meta.labels.as_ref().unwrap_or(&NO_LABELS));
    match controller_of(meta) {
        Some(r) if r.uid != owner_uid => Claim::Ignore,
        Some(_) if matches => Claim::Owned,
        // Releasing while the owner is being deleted would race the garbage collector.
        Some(_) if owner_deleting => Claim::Owned,
        Some(_) => Claim::Release,
        None if owner_deleting || !matches || meta.deletion_timestamp.is_some() => Claim::Ignore,
        None => Claim::Adopt,
    }
}

/// Sets our controller reference on `name` (strategic merge on `ownerReferences`, keyed by uid).
/// Returns the adopted object, or None if it vanished meanwhile.
pub(crate) async fn adopt<K>(
    api: &Api<K>,
    name: &str,
    uid: &str,
    owner: &OwnerReference,
) -> Result<Option<K>, Error>
where
    K: Resource + Clone + DeserializeOwned + std::fmt::Debug,
{
    let patch = json!({"metadata": {"ownerReferences": [owner], "uid": uid}});
    match api
        .patch(name, &PatchParams::default(), &Patch::Strategic(patch))
        .await
    {
        Ok(obj) => Ok(Some(obj)),
        Err(kube::Error::Api(e)) if e.code == 404 => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// Removes the owner reference with `owner_uid` from `name` (upstream `ReleasePod`/`ReleaseReplicaSet`).
pub(crate) async fn release<K>(
    api: &Api<K>,
    name: &str,
    uid: &str,
    owner_uid: &str,
) -> Result<(), Error>
where
    K: Resource + Clone + DeserializeOwned + std::fmt::Debug,
{
    let patch = json!({
        "metadata": {"ownerReferences": [{"$patch": "delete", "uid": owner_uid}], "uid": uid}
    });
    match api
        .patch(name, &PatchParams::default(), &Patch::Strategic(patch))
        .await
    {
        Ok(_) => Ok(()),
        // Gone, or no longer carrying the reference: released either way.
        Err(kube::Error::Api(e)) if e.code == 404 || e.code == 422 => Ok(()),
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(labels: &[(&str, &str)], controller: Option<&str>) -> ObjectMeta {
        ObjectMeta {
            labels: Some(
                labels
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect::<BTreeMap<_, _>>(),
            ),
            owner_references: controller.map(|uid| {
                vec![OwnerReference {
                    api_version: "apps/v1".into(),
                    kind: "ReplicaSet".into(),
                    name: "x".into(),
                    uid: uid.into(),
                    controller: Some(true),
                    block_owner_deletion: Some(true),
                }]
            }),
            ..ObjectMeta::default()
        }
    }

    #[test]
    fn claims_follow_upstream_rules() {
        let sel: Selector = [("app", "web")].into_iter().collect();
        let ours = "u1";
        assert_eq!(
            classify(ours, false, &sel, &meta(&[("app", "web")], Some(ours))),
            Claim::Owned
        );
        assert_eq!(
            classify(ours, false, &sel, &meta(&[("app", "db")], Some(ours))),
            Claim::Release
        );
        assert_eq!(
            classify(ours, true, &sel, &meta(&[("app", "db")], Some(ours))),
            Claim::Owned
        );
        assert_eq!(
            classify(ours, false, &sel, &meta(&[("app", "web")], None)),
            Claim::Adopt
        );
        assert_eq!(
            classify(ours, true, &sel, &meta(&[("app", "web")], None)),
            Claim::Ignore
        );
        assert_eq!(
            classify(ours, false, &sel, &meta(&[("app", "db")], None)),
            Claim::Ignore
        );
        assert_eq!(
            classify(ours, false, &sel, &meta(&[("app", "web")], Some("u2"))),
            Claim::Ignore
        );
    }
}
