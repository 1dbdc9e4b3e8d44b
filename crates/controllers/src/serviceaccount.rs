//! Per-namespace credentials plumbing, as upstream's serviceaccounts-controller and
//! root-ca-cert-publisher: every active namespace has the ServiceAccount `default` and the
//! ConfigMap `kube-root-ca.crt` whose `ca.crt` is the cluster CA. Both are recreated when
//! deleted; the ConfigMap is corrected when its data drifts.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, ServiceAccount};
use kube::api::{Api, ObjectMeta, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use kube::ResourceExt;

use crate::{Context, Error, ERROR_REQUEUE};

/// The ServiceAccount every namespace gets.
pub const DEFAULT_SERVICE_ACCOUNT: &str = "default";
/// The ConfigMap carrying the cluster CA in every namespace.
pub const ROOT_CA_CONFIGMAP: &str = "kube-root-ca.crt";
/// Key of the CA bundle in [`ROOT_CA_CONFIGMAP`].
pub const ROOT_CA_KEY: &str = "ca.crt";
const DESCRIPTION_ANNOTATION: &str = "kubernetes.io/description";
const DESCRIPTION: &str = "Contains a CA bundle that can be used to verify the kube-apiserver \
when using internal endpoints such as the internal service IP or kubernetes.default.svc. No other \
usage is guaranteed across distributions of Kubernetes clusters.";
/// Safety net: namespaces are looked at again this often even without a change.
const RESYNC: Duration = Duration::from_secs(300);

pub async fn run(ctx: Context) {
    let client = ctx.client.clone();
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let service_accounts: Api<ServiceAccount> = Api::all(client.clone());
    let config_maps: Api<ConfigMap> = Api::all(client.clone());
    let to_namespace = |namespace: Option<String>| namespace.map(|ns| ObjectRef::new(&ns));
    Controller::new(namespaces, watcher::Config::default())
        .watches(
            service_accounts,
            watcher::Config::default().fields(&format!("metadata.name={DEFAULT_SERVICE_ACCOUNT}")),
            move |sa| to_namespace(sa.namespace()),
        )
        .watches(
            config_maps,
            watcher::Config::default().fields(&format!("metadata.name={ROOT_CA_CONFIGMAP}")),
            move |cm| to_namespace(cm.namespace()),
        )
        .run(
            reconcile,
            |ns, err, _ctx| {
                tracing::warn!(namespace = %ns.name_any(), error = %err, "serviceaccount reconcile failed");
                Action::requeue(ERROR_REQUEUE)
            },
            Arc::new(ctx),
        )
        .for_each(|result| {
            if let Err(e) = result {
                tracing::debug!(error = %e, "serviceaccount controller");
            }
            futures::future::ready(())
        })
        .await;
}

fn is_active(ns: &Namespace) -> bool {
    ns.metadata.deletion_timestamp.is_none()
        && ns.status.as_ref().and_then(|s| s.phase.as_deref()) != Some("Terminating")
}

async fn reconcile(ns: Arc<Namespace>, ctx: Arc<Context>) -> Result<Action, Error> {
    if !is_active(&ns) {
        return Ok(Action::await_change());
    }
    let name = ns.name_any();
    ensure_default_service_account(&ctx.client, &name).await?;
    if ctx.config.root_ca_pem.is_empty() {
        tracing::debug!(namespace = %name, "no cluster CA configured; not publishing kube-root-ca.crt");
    } else {
        ensure_root_ca(&ctx.client, &name, &ctx.config.root_ca_pem).await?;
    }
    Ok(Action::requeue(RESYNC))
}

/// Creation in a namespace that started terminating is refused (403); that is not an error here.
fn ignorable(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 409 || s.code == 403 || s.code == 404)
}

async fn ensure_default_service_account(client: &kube::Client, ns: &str) -> Result<(), Error> {
    let api: Api<ServiceAccount> = Api::namespaced(client.clone(), ns);
    if api.get_opt(DEFAULT_SERVICE_ACCOUNT).await?.is_some() {
        return Ok(());
    }
    let sa = ServiceAccount {
        metadata: ObjectMeta {
            name: Some(DEFAULT_SERVICE_ACCOUNT.into()),
            ..ObjectMeta::default()
        },
        ..ServiceAccount::default()
    };
    match api.create(&PostParams::default(), &sa).await {
        Ok(_) => {
            tracing::info!(namespace = %ns, "created ServiceAccount default");
            Ok(())
        }
        Err(e) if ignorable(&e) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

fn root_ca_data(pem: &str) -> BTreeMap<String, String> {
    BTreeMap::from([(ROOT_CA_KEY.to_string(), pem.to_string())])
}

async fn ensure_root_ca(client: &kube::Client, ns: &str, pem: &str) -> Result<(), Error> {
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), ns);
    let data = root_ca_data(pem);
    match api.get_opt(ROOT_CA_CONFIGMAP).await? {
        None => {
            let cm = ConfigMap {
                metadata: ObjectMeta {
                    name: Some(ROOT_CA_CONFIGMAP.into()),
                    annotations: Some(BTreeMap::from([(
                        DESCRIPTION_ANNOTATION.to_string(),
                        DESCRIPTION.to_string(),
                    )])),
                    ..ObjectMeta::default()
                },
                data: Some(data),
                ..ConfigMap::default()
            };
            match api.create(&PostParams::default(), &cm).await {
                Ok(_) => {
                    tracing::info!(namespace = %ns, "published kube-root-ca.crt");
                    Ok(())
                }
                Err(e) if ignorable(&e) => Ok(()),
                Err(e) => Err(e.into()),
            }
        }
        Some(mut cm) => {
            let described = cm
                .annotations()
                .get(DESCRIPTION_ANNOTATION)
                .is_some_and(|d| !d.is_empty());
            if cm.data.as_ref() == Some(&data) && cm.binary_data.is_none() && described {
                return Ok(());
            }
            cm.data = Some(data);
            cm.binary_data = None;
            cm.annotations_mut()
                .insert(DESCRIPTION_ANNOTATION.to_string(), DESCRIPTION.to_string());
            // The resourceVersion read above makes this a compare-and-swap: a concurrent
            // change fails with 409 and the namespace is reconciled again.
            match api
                .replace(ROOT_CA_CONFIGMAP, &PostParams::default(), &cm)
                .await
            {
                Ok(_) => {
                    tracing::info!(namespace = %ns, "corrected kube-root-ca.crt");
                    Ok(())
                }
                Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
                Err(e) => Err(e.into()),
            }
        }
    }
}
