//! Keeping the routes current: one reflector each for Ingresses, IngressClasses, Services,
//! EndpointSlices and Secrets. After the first lists, and after every change (changes that
//! arrive during a rebuild are folded into the next one), the routing table and the
//! certificates are rebuilt whole and swapped in: requests in flight keep the table they
//! started with, connections are never closed by a change.
//!
//! Status: every Ingress served gets `status.loadBalancer.ingress` = the publish Service's
//! load-balancer addresses when it has some (the addon's `ingress-nginx-controller`, given an
//! IP by metallb), else the configured addresses (the node's IP) — ingress-nginx's
//! `--publish-service` / `--publish-status-address`. It is written only when it differs.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

use futures::{Stream, StreamExt};
use k8s_openapi::api::core::v1::{Secret, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::networking::v1::{Ingress, IngressClass};
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::reflector::Store;
use kube::runtime::{reflector, watcher, WatchStreamExt};
use serde_json::{json, Value};
use tokio::sync::{watch as channel, Notify};

use crate::routes::{ClassConfig, Objects, Table};
use crate::tls::{CertificateStore, SniResolver};
use crate::Error;

/// What the listeners read: the current table and certificates.
#[derive(Debug)]
pub struct Shared {
    table: RwLock<Arc<Table>>,
    pub resolver: Arc<SniResolver>,
    ready: channel::Sender<bool>,
}

impl Shared {
    pub fn new() -> Result<Arc<Shared>, Error> {
        Ok(Arc::new(Shared {
            table: RwLock::new(Arc::new(Table::default())),
            resolver: Arc::new(SniResolver::new()?),
            ready: channel::Sender::new(false),
        }))
    }

    /// The current routing table.
    pub fn table(&self) -> Arc<Table> {
        self.table.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Swaps in a new table and certificates; the first call makes the listeners start.
    pub fn set(&self, table: Table, certificates: CertificateStore) {
        self.resolver.set(certificates);
        *self.table.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(table);
        self.ready.send_replace(true);
    }

    /// Waits for the first table.
    pub async fn wait_ready(&self) {
        let mut receiver = self.ready.subscribe();
        let _ = receiver.wait_for(|ready| *ready).await;
    }
}

/// Where the Ingresses' status addresses come from.
#[derive(Clone, Debug, Default)]
pub struct StatusConfig {
    /// `namespace/name` of the Service whose load-balancer addresses are published.
    pub publish_service: Option<String>,
    /// Published when that Service has none (IPs or host names).
    pub addresses: Vec<String>,
}

impl StatusConfig {
    /// The `status.loadBalancer.ingress` list to publish.
    pub fn desired(&self, services: &[Arc<Service>]) -> Vec<Value> {
        let from_service = self.publish_service.as_deref().and_then(|wanted| {
            let (namespace, name) = wanted.split_once('/')?;
            let service = services.iter().find(|s| {
                s.metadata.namespace.as_deref() == Some(namespace)
                    && s.metadata.name.as_deref() == Some(name)
            })?;
            let ingress = service
                .status
                .as_ref()?
                .load_balancer
                .as_ref()?
                .ingress
                .as_ref()?;
            let out: Vec<Value> = ingress
                .iter()
                .filter_map(|i| match (&i.ip, &i.hostname) {
                    (Some(ip), _) => Some(json!({"ip": ip})),
                    (None, Some(host)) => Some(json!({"hostname": host})),
                    _ => None,
                })
                .collect();
            (!out.is_empty()).then_some(out)
        });
        from_service.unwrap_or_else(|| {
            self.addresses
                .iter()
                .map(|a| {
                    if a.parse::<std::net::IpAddr>().is_ok() {
                        json!({"ip": a})
                    } else {
                        json!({"hostname": a})
                    }
                })
                .collect()
        })
    }
}

async fn drain<S, T, E>(name: &'static str, stream: S, changed: Arc<Notify>)
where
    S: Stream<Item = Result<T, E>>,
    E: std::fmt::Display,
{
    let mut stream = std::pin::pin!(stream);
    while let Some(event) = stream.next().await {
        match event {
            Ok(_) => changed.notify_one(),
            Err(e) => tracing::warn!(resource = name, error = %e, "watch failed; retrying"),
        }
    }
}

fn current_status(ingress: &Ingress) -> Vec<Value> {
    ingress
        .status
        .as_ref()
        .and_then(|s| s.load_balancer.as_ref())
        .and_then(|lb| lb.ingress.as_ref())
        .map(|list| {
            list.iter()
                .filter_map(|i| match (&i.ip, &i.hostname) {
                    (Some(ip), _) => Some(json!({"ip": ip})),
                    (None, Some(host)) => Some(json!({"hostname": host})),
                    _ => None,
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Writes `addresses` into the status of the served Ingresses whose status differs.
async fn publish(
    client: &kube::Client,
    served: &[(String, String)],
    ingresses: &[Arc<Ingress>],
    addresses: &[Value],
) {
    let by_name: BTreeMap<(&str, &str), &Ingress> = ingresses
        .iter()
        .filter_map(|i| {
            Some((
                (
                    i.metadata.namespace.as_deref()?,
                    i.metadata.name.as_deref()?,
                ),
                i.as_ref(),
            ))
        })
        .collect();
    for (namespace, name) in served {
        let Some(ingress) = by_name.get(&(namespace.as_str(), name.as_str())) else {
            continue;
        };
        if current_status(ingress) == addresses {
            continue;
        }
        set_status(client, namespace, name, addresses).await;
    }
}

async fn set_status(client: &kube::Client, namespace: &str, name: &str, addresses: &[Value]) {
    let api: Api<Ingress> = Api::namespaced(client.clone(), namespace);
    // No address: the field goes (as an Ingress no controller serves has it).
    let addresses = match addresses {
        [] => Value::Null,
        some => Value::from(some.to_vec()),
    };
    let patch = json!({"status": {"loadBalancer": {"ingress": addresses}}});
    match api
        .patch_status(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
    {
        Ok(_) => {
            tracing::info!(ingress = %format!("{namespace}/{name}"), ?addresses, "status updated")
        }
        Err(e) => {
            tracing::warn!(ingress = %format!("{namespace}/{name}"), error = %e, "cannot update the status")
        }
    }
}

/// Empties the status of the Ingresses served now (on shutdown: nothing serves them after).
pub async fn clear_status(client: &kube::Client, shared: &Shared) {
    clear_statuses(client, &shared.table().ingresses).await;
}

/// Empties the load-balancer status of `ingresses` (`(namespace, name)`).
pub async fn clear_statuses(client: &kube::Client, ingresses: &[(String, String)]) {
    for (namespace, name) in ingresses {
        set_status(client, namespace, name, &[]).await;
    }
}

/// The Ingresses a controller with `classes` serves now, read from the API (what `kubelab
/// addons disable ingress` clears the status of once the controller is gone).
pub async fn served_ingresses(
    client: &kube::Client,
    classes: &ClassConfig,
) -> Result<Vec<(String, String)>, Error> {
    let params = kube::api::ListParams::default();
    let ingresses: Vec<Arc<Ingress>> = Api::<Ingress>::all(client.clone())
        .list(&params)
        .await
        .map_err(Error::Api)?
        .into_iter()
        .map(Arc::new)
        .collect();
    let ingress_classes: Vec<Arc<IngressClass>> = Api::<IngressClass>::all(client.clone())
        .list(&params)
        .await
        .map_err(Error::Api)?
        .into_iter()
        .map(Arc::new)
        .collect();
    let table = Table::build(
        &Objects {
            ingresses: &ingresses,
            classes: &ingress_classes,
            services: &[],
            slices: &[],
        },
        classes,
    );
    Ok(table.ingresses)
}

fn objects<K>(store: &Store<K>) -> Vec<Arc<K>>
where
    K: Clone + kube::Resource + 'static,
    K::DynamicType: Eq + std::hash::Hash + Clone,
{
    store.state()
}

/// Keeps `shared` current from the API until the watches end (never, normally).
pub async fn watch(
    client: kube::Client,
    classes: ClassConfig,
    status: StatusConfig,
    shared: Arc<Shared>,
) -> Error {
    let changed = Arc::new(Notify::new());
    let config = watcher::Config::default;
    let (ingresses, ingress_writer) = reflector::store::<Ingress>();
    let (ingress_classes, class_writer) = reflector::store::<IngressClass>();
    let (services, service_writer) = reflector::store::<Service>();
    let (slices, slice_writer) = reflector::store::<EndpointSlice>();
    let (secrets, secret_writer) = reflector::store::<Secret>();
    let streams = futures::future::join5(
        drain(
            "ingresses",
            reflector(
                ingress_writer,
                watcher(Api::<Ingress>::all(client.clone()), config()).default_backoff(),
            ),
            changed.clone(),
        ),
        drain(
            "ingressclasses",
            reflector(
                class_writer,
                watcher(Api::<IngressClass>::all(client.clone()), config()).default_backoff(),
            ),
            changed.clone(),
        ),
        drain(
            "services",
            reflector(
                service_writer,
                watcher(Api::<Service>::all(client.clone()), config()).default_backoff(),
            ),
            changed.clone(),
        ),
        drain(
            "endpointslices",
            reflector(
                slice_writer,
                watcher(Api::<EndpointSlice>::all(client.clone()), config()).default_backoff(),
            ),
            changed.clone(),
        ),
        drain(
            "secrets",
            reflector(
                secret_writer,
                watcher(Api::<Secret>::all(client.clone()), config()).default_backoff(),
            ),
            changed.clone(),
        ),
    );
    let rebuild = async {
        let ready = futures::future::join5(
            ingresses.wait_until_ready(),
            ingress_classes.wait_until_ready(),
            services.wait_until_ready(),
            slices.wait_until_ready(),
            secrets.wait_until_ready(),
        )
        .await;
        if ready.0.is_err()
            || ready.1.is_err()
            || ready.2.is_err()
            || ready.3.is_err()
            || ready.4.is_err()
        {
            return;
        }
        loop {
            let (ing, cls, svc, eps, sec) = (
                objects(&ingresses),
                objects(&ingress_classes),
                objects(&services),
                objects(&slices),
                objects(&secrets),
            );
            let table = Table::build(
                &Objects {
                    ingresses: &ing,
                    classes: &cls,
                    services: &svc,
                    slices: &eps,
                },
                &classes,
            );
            let certificates = CertificateStore::build(&table.tls, &sec);
            let served = table.ingresses.clone();
            tracing::debug!(ingresses = served.len(), "routes rebuilt");
            shared.set(table, certificates);
            publish(&client, &served, &ing, &status.desired(&svc)).await;
            changed.notified().await;
        }
    };
    futures::future::join(streams, rebuild).await;
    Error::WatchEnded
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_from_the_publish_service_else_the_addresses() {
        let config = StatusConfig {
            publish_service: Some("ingress-nginx/ingress-nginx-controller".into()),
            addresses: vec!["172.18.0.2".into(), "lab.local".into()],
        };
        let mut service: Service = serde_json::from_value(json!({
            "metadata": {"name": "ingress-nginx-controller", "namespace": "ingress-nginx"},
            "spec": {"type": "LoadBalancer"}
        }))
        .unwrap();
        let fallback = vec![
            json!({"ip": "172.18.0.2"}),
            json!({"hostname": "lab.local"}),
        ];
        assert_eq!(config.desired(&[Arc::new(service.clone())]), fallback);
        service.status = Some(
            serde_json::from_value(
                json!({"loadBalancer": {"ingress": [{"ip": "172.18.255.200"}]}}),
            )
            .unwrap(),
        );
        assert_eq!(
            config.desired(&[Arc::new(service)]),
            vec![json!({"ip": "172.18.255.200"})]
        );
        assert_eq!(StatusConfig::default().desired(&[]), Vec::<Value>::new());
    }
}
