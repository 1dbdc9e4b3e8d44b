//! Namespace lifecycle: a namespace being deleted has its contents removed, then the
//! `kubernetes` finalizer taken out of `spec.finalizers` through the `finalize` subresource,
//! after which the API server removes the namespace.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, DeleteParams, DynamicObject, ListParams, PostParams};
use kube::discovery::{verbs, Discovery, Scope};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::watcher;

use crate::{Error, ERROR_REQUEUE};

const FINALIZER: &str = "kubernetes";
/// How often a namespace whose contents are still going away is checked again.
const CONTENT_REQUEUE: Duration = Duration::from_secs(1);

struct Context {
    client: kube::Client,
}

pub async fn run(client: kube::Client) {
    let namespaces: Api<Namespace> = Api::all(client.clone());
    Controller::new(namespaces, watcher::Config::default())
        .run(
            reconcile,
            |_ns, err, _ctx| {
                tracing::warn!(error = %err, "namespace reconcile failed");
                Action::requeue(ERROR_REQUEUE)
            },
            Arc::new(Context { client }),
        )
        .for_each(|result| {
            if let Err(e) = result {
                tracing::warn!(error = %e, "namespace controller");
            }
            futures::future::ready(())
        })
        .await;
}

async fn reconcile(ns: Arc<Namespace>, ctx: Arc<Context>) -> Result<Action, Error> {
    if ns.metadata.deletion_timestamp.is_none() {
        return Ok(Action::await_change());
    }
    let finalizers = ns
        .spec
        .as_ref()
        .and_then(|s| s.finalizers.clone())
        .unwrap_or_default();
    if !finalizers.iter().any(|f| f == FINALIZER) {
        return Ok(Action::await_change());
    }
    let name = ns.metadata.name.clone().unwrap_or_default();
    let remaining = delete_contents(&ctx.client, &name).await?;
    if remaining > 0 {
        tracing::debug!(namespace = %name, remaining, "waiting for namespace contents to go away");
        return Ok(Action::requeue(CONTENT_REQUEUE));
    }
    let mut finalized = (*ns).clone();
    if let Some(spec) = finalized.spec.as_mut() {
        spec.finalizers = Some(finalizers.into_iter().filter(|f| f != FINALIZER).collect());
    }
    let api: Api<Namespace> = Api::all(ctx.client.clone());
    match api
        .replace_subresource("finalize", &name, &PostParams::default(), &finalized)
        .await
    {
        Ok(_) => {}
        Err(kube::Error::Api(e)) if e.code == 404 => {}
        Err(e) => return Err(e.into()),
    }
    tracing::info!(namespace = %name, "namespace finalized");
    Ok(Action::await_change())
}

/// Delete every namespaced object in `namespace`; returns how many were still present.
async fn delete_contents(client: &kube::Client, namespace: &str) -> Result<usize, Error> {
    let discovery = Discovery::new(client.clone())
        .run()
        .await
        .map_err(|e| Error::Discovery(e.to_string()))?;
    let mut remaining = 0;
    for group in discovery.groups() {
        for (resource, caps) in group.recommended_resources() {
            if caps.scope != Scope::Namespaced
                || !caps.supports_operation(verbs::LIST)
                || !caps.supports_operation(verbs::DELETE)
            {
                continue;
            }
            let api: Api<DynamicObject> =
                Api::namespaced_with(client.clone(), namespace, &resource);
            let list = api.list_metadata(&ListParams::default()).await?;
            for obj in list.items {
                remaining += 1;
                let Some(name) = obj.metadata.name else {
                    continue;
                };
                if obj.metadata.deletion_timestamp.is_some() {
                    continue;
                }
                match api.delete(&name, &DeleteParams::background()).await {
                    Ok(_) => {}
                    Err(kube::Error::Api(e)) if e.code == 404 => {}
                    Err(e) => return Err(e.into()),
                }
            }
        }
    }
    Ok(remaining)
}
