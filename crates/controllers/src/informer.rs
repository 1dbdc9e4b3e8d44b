//! The controllers' one pod informer (upstream's shared pod informer from
//! `SharedInformerFactory`): a single watch of every pod fills one reflector store, which every
//! controller that looks pods up reads, and each change is handed to every controller that
//! subscribed. Without it, each controller that needed pods ran a watch of its own, and those
//! that cached pods each held a full copy of every pod of the cluster.
//!
//! Pods enter the store without their managedFields. Subscribers get [`PodEvent`]s on an
//! unbounded queue each (upstream's processorListener buffer): a slow subscriber never holds
//! up the watch or the others. It is not a kube-runtime shared store
//! (`reflector::store_shared`): that one does not pass deletions on, and a controller must
//! hear that a pod it counts went away.
//!
//! Architecture invariant: a subscriber hears of a change only after the store shows it, so a
//! reconcile triggered by a pod event never reads a store older than that event.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use futures::channel::mpsc;
use futures::{Stream, StreamExt};
use k8s_openapi::api::core::v1::Pod;
use kube::api::Api;
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::watcher::{self, Event};
use kube::runtime::WatchStreamExt;

use crate::AbortOnDrop;

/// A change of one pod, as a subscriber sees it.
#[derive(Clone, Debug)]
pub enum PodEvent {
    /// The pod was added or changed; `old` is the version the store held before, if any.
    Applied {
        old: Option<Arc<Pod>>,
        new: Arc<Pod>,
    },
    /// The pod is gone (deleted, or missing from a relist); its last known state.
    Deleted(Arc<Pod>),
}

impl PodEvent {
    /// The pod as it is now (or was last, for a deletion).
    pub fn pod(&self) -> &Arc<Pod> {
        match self {
            PodEvent::Applied { new, .. } => new,
            PodEvent::Deleted(pod) => pod,
        }
    }

    pub fn into_pod(self) -> Arc<Pod> {
        match self {
            PodEvent::Applied { new, .. } => new,
            PodEvent::Deleted(pod) => pod,
        }
    }
}

/// What the controllers hold: the shared pod store and the means to subscribe to its changes.
#[derive(Clone)]
pub struct SharedPods {
    store: Store<Pod>,
    subscribers: Arc<Mutex<Vec<mpsc::UnboundedSender<PodEvent>>>>,
}

impl SharedPods {
    /// The pod cache; ready once the first list of pods is in.
    pub fn store(&self) -> Store<Pod> {
        self.store.clone()
    }

    /// Every change from now on, preceded by an `Applied` for each pod the store holds already.
    pub fn subscribe(&self) -> impl Stream<Item = PodEvent> + Send + 'static {
        let (tx, rx) = mpsc::unbounded();
        // The writer updates the store and sends under this same lock: nothing falls between
        // the snapshot and the first event.
        let mut subscribers = self.lock();
        for pod in self.store.state() {
            let _ = tx.unbounded_send(PodEvent::Applied {
                old: None,
                new: pod,
            });
        }
        subscribers.push(tx);
        rx
    }

    /// The pods touched by each change (a controller's trigger stream).
    pub fn touched(&self) -> impl Stream<Item = Arc<Pod>> + Send + 'static {
        self.subscribe().map(PodEvent::into_pod)
    }

    fn lock(&self) -> MutexGuard<'_, Vec<mpsc::UnboundedSender<PodEvent>>> {
        self.subscribers.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The writing side: runs the watch and fans its changes out. Built once by
/// [`run_all`](crate::run_all), which hands [`SharedPods`] to the controllers in the `Context`.
pub struct PodInformer {
    writer: reflector::store::Writer<Pod>,
    pods: SharedPods,
}

impl Default for PodInformer {
    fn default() -> Self {
        Self::new()
    }
}

impl PodInformer {
    pub fn new() -> Self {
        let (store, writer) = reflector::store::<Pod>();
        PodInformer {
            writer,
            pods: SharedPods {
                store,
                subscribers: Arc::default(),
            },
        }
    }

    pub fn pods(&self) -> SharedPods {
        self.pods.clone()
    }

    /// Watches every pod until dropped, in a task of its own (decoding the pod stream is the
    /// controllers' busiest work).
    pub async fn run(self, client: kube::Client) {
        let mut task = AbortOnDrop(tokio::spawn(self.reflect(client)));
        let _ = task.wait().await;
    }

    async fn reflect(mut self, client: kube::Client) {
        let stream = watcher::watcher(Api::<Pod>::all(client), watcher::Config::default())
            .modify(crate::strip_managed_fields)
            .default_backoff();
        let mut stream = std::pin::pin!(stream);
        while let Some(event) = stream.next().await {
            match event {
                Ok(event) => self.apply(event),
                Err(e) => tracing::debug!(error = %e, "pod informer watch failed"),
            }
        }
    }

    /// Applies one watch event to the store, then hands the resulting changes to subscribers.
    fn apply(&mut self, event: Event<Pod>) {
        let mut subscribers = self.pods.lock();
        let store = &self.pods.store;
        // What the store held before, where a change reports it.
        let mut before: HashMap<ObjectRef<Pod>, Arc<Pod>> = match &event {
            Event::Apply(pod) => {
                let key = ObjectRef::from_obj(pod);
                store.get(&key).map(|old| (key, old)).into_iter().collect()
            }
            Event::InitDone => store
                .state()
                .into_iter()
                .map(|pod| (ObjectRef::from_obj(pod.as_ref()), pod))
                .collect(),
            // Init and InitApply are collected aside by the writer until InitDone.
            Event::Delete(_) | Event::Init | Event::InitApply(_) => HashMap::new(),
        };
        self.writer.apply_watcher_event(&event);
        let changes = match event {
            // The store's own copy goes out; the event's is dropped here.
            Event::Apply(pod) => {
                let key = ObjectRef::from_obj(&pod);
                store
                    .get(&key)
                    .map(|new| PodEvent::Applied {
                        old: before.remove(&key),
                        new,
                    })
                    .into_iter()
                    .collect()
            }
            Event::Delete(pod) => vec![PodEvent::Deleted(Arc::new(pod))],
            Event::Init | Event::InitApply(_) => vec![],
            Event::InitDone => {
                let mut changes: Vec<PodEvent> = store
                    .state()
                    .into_iter()
                    .map(|new| PodEvent::Applied {
                        old: before.remove(&ObjectRef::from_obj(new.as_ref())),
                        new,
                    })
                    .collect();
                // Pods deleted while the watch was down.
                changes.extend(before.into_values().map(PodEvent::Deleted));
                changes
            }
        };
        if changes.is_empty() {
            return;
        }
        subscribers.retain(|tx| {
            changes
                .iter()
                .all(|change| tx.unbounded_send(change.clone()).is_ok())
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::FutureExt;

    fn pod(name: &str, version: &str) -> Pod {
        let mut pod = Pod::default();
        pod.metadata.namespace = Some("default".into());
        pod.metadata.name = Some(name.into());
        pod.metadata.resource_version = Some(version.into());
        pod
    }

    fn version(pod: &Pod) -> &str {
        pod.metadata.resource_version.as_deref().unwrap_or_default()
    }

    /// The events already queued, as (kind, name, old version, new version).
    fn drain(events: &mut (impl Stream<Item = PodEvent> + Unpin)) -> Vec<String> {
        let mut out = Vec::new();
        while let Some(Some(event)) = events.next().now_or_never() {
            out.push(match event {
                PodEvent::Applied { old, new } => format!(
                    "applied {} {}->{}",
                    new.metadata.name.as_deref().unwrap_or_default(),
                    old.as_deref().map(version).unwrap_or("none"),
                    version(&new)
                ),
                PodEvent::Deleted(pod) => format!(
                    "deleted {} {}",
                    pod.metadata.name.as_deref().unwrap_or_default(),
                    version(&pod)
                ),
            });
        }
        out.sort();
        out
    }

    #[test]
    fn subscribers_hear_of_changes_after_the_store_shows_them() {
        let mut informer = PodInformer::new();
        let pods = informer.pods();
        let store = pods.store();
        let mut events = Box::pin(pods.subscribe());

        informer.apply(Event::Init);
        informer.apply(Event::InitApply(pod("a", "1")));
        assert!(
            drain(&mut events).is_empty(),
            "nothing before the list is in"
        );
        assert!(store.is_empty());
        informer.apply(Event::InitDone);
        assert_eq!(drain(&mut events), ["applied a none->1"]);
        assert_eq!(store.len(), 1);

        informer.apply(Event::Apply(pod("a", "2")));
        let event = events.next().now_or_never().flatten().unwrap();
        let cached = store
            .get(&ObjectRef::from_obj(event.pod().as_ref()))
            .unwrap();
        assert_eq!(version(&cached), "2");
        assert!(
            Arc::ptr_eq(&cached, event.pod()),
            "the event carries the store's copy"
        );

        informer.apply(Event::Delete(pod("a", "3")));
        assert_eq!(drain(&mut events), ["deleted a 3"]);
        assert!(store.is_empty());
    }

    #[test]
    fn a_relist_reports_updates_and_vanished_pods() {
        let mut informer = PodInformer::new();
        let pods = informer.pods();
        for event in [
            Event::Init,
            Event::InitApply(pod("a", "1")),
            Event::InitApply(pod("b", "1")),
            Event::InitDone,
        ] {
            informer.apply(event);
        }
        let mut events = Box::pin(pods.subscribe());
        assert_eq!(
            drain(&mut events),
            ["applied a none->1", "applied b none->1"],
            "a late subscriber starts from the store's content"
        );

        for event in [
            Event::Init,
            Event::InitApply(pod("a", "5")),
            Event::InitApply(pod("c", "5")),
            Event::InitDone,
        ] {
            informer.apply(event);
        }
        assert_eq!(
            drain(&mut events),
            ["applied a 1->5", "applied c none->5", "deleted b 1"]
        );
        assert_eq!(pods.store().len(), 2);
    }

    #[test]
    fn dropped_subscribers_are_forgotten() {
        let mut informer = PodInformer::new();
        let pods = informer.pods();
        drop(pods.subscribe());
        let mut events = Box::pin(pods.touched());
        informer.apply(Event::Apply(pod("a", "1")));
        assert_eq!(pods.lock().len(), 1);
        let touched = events.next().now_or_never().flatten().unwrap();
        assert_eq!(version(&touched), "1");
    }
}
