//! The cleanup half of upstream's service (load balancer) controller: a Service of type
//! LoadBalancer carries the `service.kubernetes.io/load-balancer-cleanup` finalizer; when it is
//! deleted, or stops being a LoadBalancer, its `status.loadBalancer` is cleared and the finalizer
//! removed. Addresses are assigned elsewhere (the MetalLB addon); nothing is provisioned here.

use std::sync::Arc;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Service;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::watcher;
use kube::{Resource, ResourceExt};
use serde_json::json;

use crate::statefulset::events::Events;
use crate::{Context, Error, ERROR_REQUEUE};

/// The finalizer a LoadBalancer Service carries until its load balancer is cleaned up.
pub const LOAD_BALANCER_CLEANUP_FINALIZER: &str = "service.kubernetes.io/load-balancer-cleanup";

struct State {
    client: kube::Client,
    events: Events,
}

pub async fn run(ctx: Context) {
    let services: Api<Service> = Api::all(ctx.client.clone());
    let events = Events::new(ctx.client.clone(), "service-controller");
    Controller::new(services, watcher::Config::default())
        .run(
            reconcile,
            |svc, err, _| {
                tracing::warn!(service = %svc.name_any(), error = %err, "service_lb reconcile failed");
                Action::requeue(ERROR_REQUEUE)
            },
            Arc::new(State {
                client: ctx.client,
                events,
            }),
        )
        .for_each(|result| {
            if let Err(e) = result {
                tracing::debug!(error = %e, "service_lb controller");
            }
            futures::future::ready(())
        })
        .await;
}

fn is_load_balancer(svc: &Service) -> bool {
    svc.spec.as_ref().and_then(|s| s.type_.as_deref()) == Some("LoadBalancer")
}

/// Whether `svc` should carry the cleanup finalizer right now.
fn wants_finalizer(svc: &Service) -> bool {
    is_load_balancer(svc) && svc.metadata.deletion_timestamp.is_none()
}

fn has_finalizer(svc: &Service) -> bool {
    svc.finalizers()
        .iter()
        .any(|f| f == LOAD_BALANCER_CLEANUP_FINALIZER)
}

fn has_ingress(svc: &Service) -> bool {
    svc.status
        .as_ref()
        .and_then(|s| s.load_balancer.as_ref())
        .and_then(|lb| lb.ingress.as_ref())
        .is_some_and(|i| !i.is_empty())
}

/// A merge patch setting the whole finalizer list, guarded by the resourceVersion it was
/// computed from (a concurrent change fails with 409 and is retried).
fn finalizers_patch(svc: &Service, finalizers: Vec<String>) -> serde_json::Value {
    json!({"metadata": {
        "resourceVersion": svc.resource_version(),
        "finalizers": if finalizers.is_empty() { serde_json::Value::Null } else { json!(finalizers) },
    }})
}

async fn reconcile(svc: Arc<Service>, state: Arc<State>) -> Result<Action, Error> {
    let wants = wants_finalizer(&svc);
    let has = has_finalizer(&svc);
    if wants == has {
        return Ok(Action::await_change());
    }
    let ns = svc.namespace().unwrap_or_default();
    let name = svc.name_any();
    let api: Api<Service> = Api::namespaced(state.client.clone(), &ns);
    let reference = svc.object_ref(&());
    if wants {
        let mut finalizers = svc.finalizers().to_vec();
        finalizers.push(LOAD_BALANCER_CLEANUP_FINALIZER.to_string());
        match api
            .patch(
                &name,
                &PatchParams::default(),
                &Patch::Merge(finalizers_patch(&svc, finalizers)),
            )
            .await
        {
            Ok(_) => {
                tracing::info!(namespace = %ns, service = %name, "added load balancer cleanup finalizer")
            }
            Err(kube::Error::Api(e)) if e.code == 404 => {}
            Err(e) => return Err(e.into()),
        }
        return Ok(Action::await_change());
    }
    state
        .events
        .normal(
            &reference,
            "DeletingLoadBalancer",
            "Deleting load balancer".into(),
        )
        .await;
    if has_ingress(&svc) {
        let clear = json!({"status": {"loadBalancer": {"ingress": null}}});
        match api
            .patch_status(&name, &PatchParams::default(), &Patch::Merge(clear))
            .await
        {
            Ok(_) => {}
            Err(kube::Error::Api(e)) if e.code == 404 => return Ok(Action::await_change()),
            Err(e) => return Err(e.into()),
        }
    }
    // The status write above changed the resourceVersion: guard with a fresh read.
    let current = match api.get_opt(&name).await? {
        Some(current) if current.uid() == svc.uid() => current,
        _ => return Ok(Action::await_change()),
    };
    let finalizers: Vec<String> = current
        .finalizers()
        .iter()
        .filter(|f| *f != LOAD_BALANCER_CLEANUP_FINALIZER)
        .cloned()
        .collect();
    match api
        .patch(
            &name,
            &PatchParams::default(),
            &Patch::Merge(finalizers_patch(&current, finalizers)),
        )
        .await
    {
        Ok(_) => {}
        Err(kube::Error::Api(e)) if e.code == 404 => {}
        Err(e) => return Err(e.into()),
    }
    tracing::info!(namespace = %ns, service = %name, "load balancer cleaned up");
    state
        .events
        .normal(
            &reference,
            "DeletedLoadBalancer",
            "Deleted load balancer".into(),
        )
        .await;
    Ok(Action::await_change())
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::ServiceSpec;

    fn service(type_: &str, finalizers: &[&str], deleting: bool) -> Service {
        let mut svc = Service {
            spec: Some(ServiceSpec {
                type_: Some(type_.into()),
                ..ServiceSpec::default()
            }),
            ..Service::default()
        };
        svc.metadata.finalizers = Some(finalizers.iter().map(|f| f.to_string()).collect());
        if deleting {
            svc.metadata.deletion_timestamp =
                Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
                    k8s_openapi::jiff::Timestamp::now(),
                ));
        }
        svc
    }

    #[test]
    fn finalizer_follows_type_and_deletion() {
        assert!(wants_finalizer(&service("LoadBalancer", &[], false)));
        assert!(!wants_finalizer(&service("LoadBalancer", &[], true)));
        assert!(!wants_finalizer(&service("ClusterIP", &[], false)));
        assert!(has_finalizer(&service(
            "ClusterIP",
            &[LOAD_BALANCER_CLEANUP_FINALIZER],
            false
        )));
    }

    #[test]
    fn empty_finalizer_list_is_removed() {
        let svc = service("ClusterIP", &[], false);
        let patch = finalizers_patch(&svc, vec![]);
        assert!(patch["metadata"]["finalizers"].is_null());
    }
}
