//! A deduplicating work queue with per-item exponential retry delays, as client-go's
//! rate-limited workqueue: an item is never processed by two workers at once, and one added
//! while it is being processed runs again afterwards.

use std::collections::{HashMap, HashSet, VecDeque};
use std::hash::Hash;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::Notify;

pub struct WorkQueue<T> {
    inner: Mutex<Inner<T>>,
    notify: Notify,
    base_delay: Duration,
    max_delay: Duration,
}

struct Inner<T> {
    queue: VecDeque<T>,
    /// Items waiting to be processed (in `queue`, or to be re-queued after processing).
    dirty: HashSet<T>,
    processing: HashSet<T>,
    failures: HashMap<T, u32>,
}

impl<T: Clone + Eq + Hash + Send + 'static> WorkQueue<T> {
    pub fn new(base_delay: Duration, max_delay: Duration) -> Arc<Self> {
        Arc::new(WorkQueue {
            inner: Mutex::new(Inner {
                queue: VecDeque::new(),
                dirty: HashSet::new(),
                processing: HashSet::new(),
                failures: HashMap::new(),
            }),
            notify: Notify::new(),
            base_delay,
            max_delay,
        })
    }

    fn lock(&self) -> MutexGuard<'_, Inner<T>> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn add(&self, item: T) {
        let mut inner = self.lock();
        if !inner.dirty.insert(item.clone()) || inner.processing.contains(&item) {
            return;
        }
        inner.queue.push_back(item);
        drop(inner);
        self.notify.notify_one();
    }

    /// The next item; the caller must call [`WorkQueue::done`] when finished with it.
    pub async fn get(&self) -> T {
        loop {
            {
                let mut inner = self.lock();
                if let Some(item) = inner.queue.pop_front() {
                    inner.dirty.remove(&item);
                    inner.processing.insert(item.clone());
                    let more = !inner.queue.is_empty();
                    drop(inner);
                    if more {
                        // Wake another worker for the rest.
                        self.notify.notify_one();
                    }
                    return item;
                }
            }
            self.notify.notified().await;
        }
    }

    pub fn done(&self, item: &T) {
        let mut inner = self.lock();
        inner.processing.remove(item);
        if inner.dirty.contains(item) {
            inner.queue.push_back(item.clone());
            drop(inner);
            self.notify.notify_one();
        }
    }

    /// Reset the item's retry delay.
    pub fn forget(&self, item: &T) {
        self.lock().failures.remove(item);
    }

    /// Add the item again after a delay that doubles with each consecutive failure.
    pub fn add_rate_limited(self: &Arc<Self>, item: T) {
        let failures = {
            let mut inner = self.lock();
            let n = inner.failures.entry(item.clone()).or_insert(0);
            *n = n.saturating_add(1);
            *n
        };
        let factor = 2u32.saturating_pow(failures.saturating_sub(1).min(20));
        let delay = self.base_delay.saturating_mul(factor).min(self.max_delay);
        self.add_after(item, delay);
    }

    pub fn add_after(self: &Arc<Self>, item: T, delay: Duration) {
        let queue = self.clone();
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            queue.add(item);
        });
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.lock().queue.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn deduplicates_and_requeues_items_added_while_processing() {
        let q = WorkQueue::new(Duration::from_millis(1), Duration::from_millis(10));
        q.add(1);
        q.add(1);
        q.add(2);
        assert_eq!(q.len(), 2);
        let first = q.get().await;
        assert_eq!(first, 1);
        q.add(1); // while processing: runs again after done
        assert_eq!(q.len(), 1);
        q.done(&1);
        assert_eq!(q.get().await, 2);
        assert_eq!(q.get().await, 1);
        q.done(&2);
        q.done(&1);
        assert_eq!(q.len(), 0);
        q.add_rate_limited(3);
        assert_eq!(
            tokio::time::timeout(Duration::from_secs(1), q.get())
                .await
                .unwrap(),
            3
        );
    }
}
