//! The apiextensions side of the API server: keeps the served custom types in step with the
//! stored CustomResourceDefinitions, reports them Established, and removes a definition's
//! objects when it is deleted (the `customresourcecleanup` finalizer).

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use kubelab_resources::catalog::{self, ResourceType};
use kubelab_store::EventType;
use serde_json::{json, Value};

use crate::custom;
use crate::error::ApiResult;
use crate::object;
use crate::registry::{ListOptions, Registry};

pub const CLEANUP_FINALIZER: &str = "customresourcecleanup.apiextensions.k8s.io";
const RETRY: Duration = Duration::from_millis(500);

fn crd_type() -> Option<&'static ResourceType> {
    catalog::find("apiextensions.k8s.io", "v1", "customresourcedefinitions")
}

/// Follow the stored CRDs for the life of the server.
pub async fn run(registry: Arc<Registry>) {
    let Some(rt) = crd_type() else {
        tracing::error!("customresourcedefinitions are missing from the catalog");
        return;
    };
    loop {
        if let Err(e) = follow(&registry, rt).await {
            tracing::warn!(error = %e, "following CustomResourceDefinitions failed; retrying");
        }
        tokio::time::sleep(RETRY).await;
    }
}

async fn follow(registry: &Registry, rt: &'static ResourceType) -> ApiResult<()> {
    let page = registry.list(rt, None, &ListOptions::default()).await?;
    for crd in &page.items {
        reconcile(registry, rt, crd).await?;
    }
    let mut events = registry
        .store()
        .watch(&object::collection_prefix(rt, None), page.revision)
        .await?;
    while let Some(event) = events.next().await {
        let event = event?;
        let crd = object::from_kv_as(rt, &event.kv)?;
        match event.event_type {
            EventType::Deleted => {
                let name = object::name(&crd).to_string();
                remove_objects(registry, &crd).await?;
                registry.custom().remove(&name);
            }
            _ => reconcile(registry, rt, &crd).await?,
        }
    }
    Ok(())
}

/// Serve (or stop serving) one CRD and bring its status and finalizer up to date.
async fn reconcile(registry: &Registry, rt: &'static ResourceType, crd: &Value) -> ApiResult<()> {
    let name = object::name(crd).to_string();
    if object::is_deleting(crd) {
        registry.custom().remove(&name);
        remove_objects(registry, crd).await?;
        if object::finalizers(crd)
            .iter()
            .any(|f| f == CLEANUP_FINALIZER)
        {
            let result = registry
                .update(rt, None, &name, None, false, |cur| {
                    let mut next = cur.clone();
                    let kept: Vec<String> = object::finalizers(cur)
                        .into_iter()
                        .filter(|f| f != CLEANUP_FINALIZER)
                        .collect();
                    next["metadata"]["finalizers"] = json!(kept);
                    strip_rv(&mut next);
                    Ok(next)
                })
                .await;
            ignore_not_found(result)?;
        }
        return Ok(());
    }
    registry.custom().set(&name, custom::versions_of(crd));
    if !object::finalizers(crd)
        .iter()
        .any(|f| f == CLEANUP_FINALIZER)
    {
        let result = registry
            .update(rt, None, &name, None, false, |cur| {
                let mut next = cur.clone();
                let mut finalizers = object::finalizers(cur);
                if !finalizers.iter().any(|f| f == CLEANUP_FINALIZER) {
                    finalizers.push(CLEANUP_FINALIZER.into());
                }
                next["metadata"]["finalizers"] = json!(finalizers);
                strip_rv(&mut next);
                Ok(next)
            })
            .await;
        ignore_not_found(result)?;
    }
    let established = crd
        .pointer("/status/conditions")
        .and_then(Value::as_array)
        .is_some_and(|c| {
            c.iter().any(|c| {
                c.get("type").and_then(Value::as_str) == Some("Established")
                    && c.get("status").and_then(Value::as_str) == Some("True")
            })
        });
    if !established {
        let result = registry
            .update(rt, None, &name, Some("status"), false, |cur| {
                let mut next = cur.clone();
                next["status"] = custom::established_status(cur, &object::now_rfc3339());
                strip_rv(&mut next);
                Ok(next)
            })
            .await;
        ignore_not_found(result)?;
    }
    Ok(())
}

fn strip_rv(obj: &mut Value) {
    if let Some(m) = obj.get_mut("metadata").and_then(Value::as_object_mut) {
        m.remove("resourceVersion");
    }
}

fn ignore_not_found(result: ApiResult<Value>) -> ApiResult<()> {
    match result {
        Ok(_) | Err(crate::ApiError::NotFound { .. }) => Ok(()),
        Err(e) => Err(e),
    }
}

/// Delete every stored object of the CRD's resource (all versions share one storage prefix).
async fn remove_objects(registry: &Registry, crd: &Value) -> ApiResult<()> {
    let Some(version) = custom::versions_of(crd).into_iter().next() else {
        return Ok(());
    };
    let prefix = object::resource_prefix(version.rt);
    let store = registry.store();
    let listed = store.list(&prefix, None, 0).await?;
    for kv in listed.items {
        match store.delete(&kv.key, None).await {
            Ok(_) | Err(kubelab_store::Error::NotFound { .. }) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}
