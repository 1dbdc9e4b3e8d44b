//! Applying and deleting multi-document YAML manifests through the API (server-side apply,
//! field manager `kubelab`), resolving each kind through discovery.

use kube::api::{Api, DeleteParams, DynamicObject, Patch, PatchParams};
use kube::discovery::{ApiCapabilities, ApiResource, Discovery, Scope};

use crate::{Error, Result};

/// The field manager of everything kubelab applies.
pub const FIELD_MANAGER: &str = "kubelab";

/// Parses the non-empty documents of a multi-document YAML stream.
pub fn documents(yaml: &str) -> Result<Vec<DynamicObject>> {
    let mut objects = Vec::new();
    for doc in serde_yaml::Deserializer::from_str(yaml) {
        let value = serde_yaml::Value::deserialize(doc)
            .map_err(|e| Error::Invalid(format!("manifest: {e}")))?;
        if value.is_null() {
            continue;
        }
        let object: DynamicObject =
            serde_yaml::from_value(value).map_err(|e| Error::Invalid(format!("manifest: {e}")))?;
        objects.push(object);
    }
    Ok(objects)
}

use serde::Deserialize;

async fn resolve(
    discovery: &Discovery,
    object: &DynamicObject,
) -> Result<(ApiResource, ApiCapabilities)> {
    let types = object.types.as_ref().ok_or_else(|| {
        Error::Invalid(format!(
            "manifest object {:?} has no apiVersion/kind",
            object.metadata.name
        ))
    })?;
    let (group, version) = match types.api_version.split_once('/') {
        Some((g, v)) => (g.to_owned(), v.to_owned()),
        None => (String::new(), types.api_version.clone()),
    };
    let gvk = kube::core::GroupVersionKind::gvk(&group, &version, &types.kind);
    discovery.resolve_gvk(&gvk).ok_or_else(|| {
        Error::Invalid(format!(
            "the API server does not serve {}/{}",
            types.api_version, types.kind
        ))
    })
}

fn api_for(
    client: &kube::Client,
    object: &DynamicObject,
    resource: &ApiResource,
    caps: &ApiCapabilities,
) -> Api<DynamicObject> {
    match caps.scope {
        Scope::Namespaced => Api::namespaced_with(
            client.clone(),
            object.metadata.namespace.as_deref().unwrap_or("default"),
            resource,
        ),
        Scope::Cluster => Api::all_with(client.clone(), resource),
    }
}

/// Server-side applies every object of `yaml`; returns how many.
pub async fn apply_all(client: &kube::Client, yaml: &str) -> Result<usize> {
    let objects = documents(yaml)?;
    let mut discovery = Discovery::new(client.clone())
        .run()
        .await
        .map_err(|e| Error::Invalid(format!("API discovery: {e}")))?;
    let params = PatchParams::apply(FIELD_MANAGER).force();
    for object in &objects {
        // A kind defined by a CRD of the same manifests is served once the CRD is
        // established: discover again until it is (at most 30 s).
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        let (resource, caps) = loop {
            match resolve(&discovery, object).await {
                Ok(found) => break found,
                Err(e) if std::time::Instant::now() > deadline => return Err(e),
                Err(_) => {
                    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
                    discovery = Discovery::new(client.clone())
                        .run()
                        .await
                        .map_err(|e| Error::Invalid(format!("API discovery: {e}")))?;
                }
            }
        };
        let name = object.metadata.name.clone().ok_or_else(|| {
            Error::Invalid(format!("a {} in the manifest has no name", resource.kind))
        })?;
        api_for(client, object, &resource, &caps)
            .patch(&name, &params, &Patch::Apply(object))
            .await
            .map_err(|e| Error::Invalid(format!("cannot apply {} {name}: {e}", resource.kind)))?;
    }
    Ok(objects.len())
}

/// Deletes every object of `yaml` (absent ones are fine), in reverse order; returns how many
/// existed.
pub async fn delete_all(client: &kube::Client, yaml: &str) -> Result<usize> {
    let objects = documents(yaml)?;
    let discovery = Discovery::new(client.clone())
        .run()
        .await
        .map_err(|e| Error::Invalid(format!("API discovery: {e}")))?;
    let mut deleted = 0;
    for object in objects.iter().rev() {
        let Ok((resource, caps)) = resolve(&discovery, object).await else {
            continue;
        };
        let Some(name) = object.metadata.name.clone() else {
            continue;
        };
        match api_for(client, object, &resource, &caps)
            .delete(&name, &DeleteParams::background())
            .await
        {
            Ok(_) => deleted += 1,
            Err(kube::Error::Api(e)) if e.code == 404 => {}
            Err(e) => {
                return Err(Error::Invalid(format!(
                    "cannot delete {} {name}: {e}",
                    resource.kind
                )))
            }
        }
    }
    Ok(deleted)
}
