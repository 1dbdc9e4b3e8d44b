//! The index kept current: one reflector each for Namespaces, Services and EndpointSlices; after
//! the three initial lists, and then after every change (changes arriving during a rebuild are
//! folded into the next one), the index is rebuilt and swapped in whole.

use std::sync::Arc;

use futures::{Stream, StreamExt};
use k8s_openapi::api::core::v1::{Namespace, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::Api;
use kube::runtime::reflector::Store;
use kube::runtime::{reflector, watcher, WatchStreamExt};
use tokio::sync::{watch, Notify};

use crate::index::Index;

/// The current index, shared by the watch (writer) and the queries (readers). None until the
/// first lists arrived: cluster names then get SERVFAIL.
#[derive(Clone, Debug)]
pub struct Snapshot(Arc<watch::Sender<Option<Arc<Index>>>>);

impl Default for Snapshot {
    fn default() -> Snapshot {
        Snapshot(Arc::new(watch::Sender::new(None)))
    }
}

impl Snapshot {
    pub fn get(&self) -> Option<Arc<Index>> {
        self.0.borrow().clone()
    }

    pub fn set(&self, index: Index) {
        self.0.send_replace(Some(Arc::new(index)));
    }

    /// Waits until the first index is in, at most `timeout`; whether it is.
    pub async fn wait_ready(&self, timeout: std::time::Duration) -> bool {
        let mut receiver = self.0.subscribe();
        let ready = tokio::time::timeout(timeout, receiver.wait_for(Option::is_some)).await;
        ready.is_ok()
    }
}

fn objects<K: Clone + kube::Resource>(store: &Store<K>) -> Vec<Arc<K>>
where
    K::DynamicType: Eq + std::hash::Hash + Clone,
{
    store.state()
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

/// Keeps `snapshot` current from the API until the client's watches end (never, normally).
pub async fn watch(client: kube::Client, snapshot: Snapshot) {
    let changed = Arc::new(Notify::new());
    let (namespaces, namespaces_writer) = reflector::store::<Namespace>();
    let (services, services_writer) = reflector::store::<Service>();
    let (slices, slices_writer) = reflector::store::<EndpointSlice>();
    let config = watcher::Config::default;
    let namespace_events = reflector(
        namespaces_writer,
        watcher(Api::<Namespace>::all(client.clone()), config()).default_backoff(),
    );
    let service_events = reflector(
        services_writer,
        watcher(Api::<Service>::all(client.clone()), config()).default_backoff(),
    );
    let slice_events = reflector(
        slices_writer,
        watcher(Api::<EndpointSlice>::all(client), config()).default_backoff(),
    );
    let rebuild = {
        let changed = changed.clone();
        async move {
            let ready = futures::future::join3(
                namespaces.wait_until_ready(),
                services.wait_until_ready(),
                slices.wait_until_ready(),
            )
            .await;
            if ready.0.is_err() || ready.1.is_err() || ready.2.is_err() {
                return;
            }
            let mut serial = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs() as u32)
                .unwrap_or(1);
            loop {
                let (ns, svc, eps) = (objects(&namespaces), objects(&services), objects(&slices));
                let index = Index::build(
                    ns.iter().map(|o| o.as_ref()),
                    svc.iter().map(|o| o.as_ref()),
                    eps.iter().map(|o| o.as_ref()),
                    serial,
                );
                tracing::debug!(
                    services = svc.len(),
                    endpoint_slices = eps.len(),
                    "cluster DNS records rebuilt"
                );
                snapshot.set(index);
                serial = serial.wrapping_add(1);
                changed.notified().await;
            }
        }
    };
    futures::future::join4(
        drain("namespaces", namespace_events, changed.clone()),
        drain("services", service_events, changed.clone()),
        drain("endpointslices", slice_events, changed),
        rebuild,
    )
    .await;
}
