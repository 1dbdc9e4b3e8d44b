//! The dependency graph of the garbage collector (upstream `GraphBuilder`'s `uidToNode`): one
//! node per object uid, observed through a watch or "virtual" (only known as somebody's owner,
//! existence unverified), with owner → dependents edges. Pure bookkeeping: every change returns
//! the work items it makes necessary; the workers do the API calls.

use std::collections::{BTreeSet, HashMap, HashSet};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;

pub const FOREGROUND_FINALIZER: &str = "foregroundDeletion";
pub const ORPHAN_FINALIZER: &str = "orphan";

pub type Uid = String;

/// Coordinates of an object: enough to GET, PATCH or DELETE it.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Identity {
    pub api_version: String,
    pub kind: String,
    /// For a virtual node: the namespace of the dependent that named it (used only if the
    /// owner's kind turns out to be namespaced).
    pub namespace: Option<String>,
    pub name: String,
    pub uid: Uid,
}

/// A work item for the workers.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Work {
    /// Verify a virtual node, collect an object whose owners are gone, or advance an owner's
    /// foreground deletion (upstream `attemptToDelete`).
    Delete(Uid),
    /// Strip the owner's references from its dependents, then its `orphan` finalizer
    /// (upstream `attemptToOrphan`).
    Orphan(Uid),
}

#[derive(Clone, Debug)]
pub struct Node {
    pub identity: Identity,
    pub owners: Vec<OwnerReference>,
    pub dependents: BTreeSet<Uid>,
    /// Seen through a watch (false: a virtual node, known only from ownerReferences).
    pub observed: bool,
    /// The watch (resource) that observed the node.
    pub resource: Option<String>,
    pub being_deleted: bool,
    /// deletionTimestamp and the `foregroundDeletion` finalizer.
    pub deleting_dependents: bool,
    /// deletionTimestamp and the `orphan` finalizer.
    pub orphaning: bool,
}

/// An object as a watch reported it.
#[derive(Clone, Debug)]
pub struct Observed {
    pub identity: Identity,
    pub owners: Vec<OwnerReference>,
    pub being_deleted: bool,
    pub finalizers: Vec<String>,
    pub resource: String,
}

#[derive(Default)]
pub struct Graph {
    nodes: HashMap<Uid, Node>,
}

impl Graph {
    pub fn get(&self, uid: &str) -> Option<&Node> {
        self.nodes.get(uid)
    }

    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// Observed nodes that came from the watch `resource`.
    pub fn observed_of(&self, resource: &str) -> Vec<Uid> {
        self.nodes
            .values()
            .filter(|n| n.observed && n.resource.as_deref() == Some(resource))
            .map(|n| n.identity.uid.clone())
            .collect()
    }

    /// Dependents whose reference to `owner` has `blockOwnerDeletion: true`, with whether each
    /// is itself deleting its dependents.
    pub fn blocking_dependents(&self, owner: &str) -> Vec<(Uid, bool)> {
        let Some(node) = self.nodes.get(owner) else {
            return Vec::new();
        };
        node.dependents
            .iter()
            .filter_map(|d| self.nodes.get(d))
            .filter(|d| {
                d.owners
                    .iter()
                    .any(|o| o.uid == owner && o.block_owner_deletion == Some(true))
            })
            .map(|d| (d.identity.uid.clone(), d.deleting_dependents))
            .collect()
    }

    fn link(&mut self, owner: &OwnerReference, dependent: &Identity, work: &mut Vec<Work>) {
        match self.nodes.get_mut(&owner.uid) {
            Some(node) => {
                node.dependents.insert(dependent.uid.clone());
                if node.deleting_dependents {
                    // A new dependent of an owner in foreground deletion is collected too.
                    work.push(Work::Delete(dependent.uid.clone()));
                }
            }
            None => {
                let node = Node {
                    identity: Identity {
                        api_version: owner.api_version.clone(),
                        kind: owner.kind.clone(),
                        namespace: dependent.namespace.clone(),
                        name: owner.name.clone(),
                        uid: owner.uid.clone(),
                    },
                    owners: Vec::new(),
                    dependents: BTreeSet::from([dependent.uid.clone()]),
                    observed: false,
                    resource: None,
                    being_deleted: false,
                    deleting_dependents: false,
                    orphaning: false,
                };
                self.nodes.insert(owner.uid.clone(), node);
                // Find out whether the owner exists at all.
                work.push(Work::Delete(owner.uid.clone()));
            }
        }
    }

    fn unlink(&mut self, owner: &str, dependent: &str, work: &mut Vec<Work>) {
        let Some(node) = self.nodes.get_mut(owner) else {
            return;
        };
        node.dependents.remove(dependent);
        if node.deleting_dependents {
            // It may have been the last dependent the owner waited for.
            work.push(Work::Delete(owner.to_string()));
        }
        if !node.observed && node.dependents.is_empty() {
            self.nodes.remove(owner);
        }
    }

    /// An object was added or changed.
    pub fn upsert(&mut self, obj: Observed) -> Vec<Work> {
        let mut work = Vec::new();
        let uid = obj.identity.uid.clone();
        let previous_owners = match self.nodes.get_mut(&uid) {
            None => {
                self.nodes.insert(
                    uid.clone(),
                    Node {
                        identity: obj.identity.clone(),
                        owners: obj.owners.clone(),
                        dependents: BTreeSet::new(),
                        observed: true,
                        resource: Some(obj.resource.clone()),
                        being_deleted: false,
                        deleting_dependents: false,
                        orphaning: false,
                    },
                );
                None
            }
            Some(node) => {
                if !node.observed {
                    // A virtual node turned real. If dependents named it by other coordinates,
                    // let them check their references again.
                    let id = &node.identity;
                    if id.kind != obj.identity.kind
                        || id.name != obj.identity.name
                        || api_group(&id.api_version) != api_group(&obj.identity.api_version)
                    {
                        work.extend(node.dependents.iter().cloned().map(Work::Delete));
                    }
                }
                node.observed = true;
                node.identity = obj.identity.clone();
                node.resource = Some(obj.resource.clone());
                Some(std::mem::replace(&mut node.owners, obj.owners.clone()))
            }
        };
        match previous_owners {
            None => {
                for owner in &obj.owners {
                    self.link(owner, &obj.identity, &mut work);
                }
            }
            Some(old) if old != obj.owners => {
                let new_uids: HashSet<&str> = obj.owners.iter().map(|o| o.uid.as_str()).collect();
                let old_uids: HashSet<&str> = old.iter().map(|o| o.uid.as_str()).collect();
                for owner in obj
                    .owners
                    .iter()
                    .filter(|o| !old_uids.contains(o.uid.as_str()))
                {
                    self.link(owner, &obj.identity, &mut work);
                }
                for owner in old.iter().filter(|o| !new_uids.contains(o.uid.as_str())) {
                    self.unlink(&owner.uid, &uid, &mut work);
                }
                // blockOwnerDeletion may have changed on a kept reference.
                for owner in old.iter().filter(|o| new_uids.contains(o.uid.as_str())) {
                    if self
                        .nodes
                        .get(&owner.uid)
                        .is_some_and(|n| n.deleting_dependents)
                    {
                        work.push(Work::Delete(owner.uid.clone()));
                    }
                }
            }
            Some(_) => {}
        }
        let has = |f: &str| obj.finalizers.iter().any(|x| x == f);
        let deleting_dependents = obj.being_deleted && has(FOREGROUND_FINALIZER);
        let orphaning = obj.being_deleted && has(ORPHAN_FINALIZER);
        let Some(node) = self.nodes.get_mut(&uid) else {
            return work;
        };
        node.being_deleted = obj.being_deleted;
        if orphaning && !node.orphaning {
            work.push(Work::Orphan(uid.clone()));
        }
        node.orphaning = orphaning;
        if deleting_dependents && !node.deleting_dependents {
            work.extend(node.dependents.iter().cloned().map(Work::Delete));
            work.push(Work::Delete(uid.clone()));
        }
        node.deleting_dependents = deleting_dependents;
        work
    }

    /// An object is gone (observed, or verified absent by a worker).
    pub fn remove(&mut self, uid: &str) -> Vec<Work> {
        let mut work = Vec::new();
        let Some(node) = self.nodes.remove(uid) else {
            return work;
        };
        for owner in &node.owners {
            self.unlink(&owner.uid, uid, &mut work);
        }
        work.extend(node.dependents.into_iter().map(Work::Delete));
        work
    }
}

fn api_group(api_version: &str) -> &str {
    api_version.rsplit_once('/').map_or("", |(g, _)| g)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(kind: &str, name: &str, uid: &str) -> Identity {
        Identity {
            api_version: if kind == "ReplicaSet" {
                "apps/v1"
            } else {
                "v1"
            }
            .into(),
            kind: kind.into(),
            namespace: Some("default".into()),
            name: name.into(),
            uid: uid.into(),
        }
    }

    fn owner_ref(kind: &str, name: &str, uid: &str, block: bool) -> OwnerReference {
        OwnerReference {
            api_version: if kind == "ReplicaSet" {
                "apps/v1"
            } else {
                "v1"
            }
            .into(),
            kind: kind.into(),
            name: name.into(),
            uid: uid.into(),
            controller: Some(true),
            block_owner_deletion: Some(block),
        }
    }

    fn observed(identity: Identity, owners: Vec<OwnerReference>) -> Observed {
        Observed {
            identity,
            owners,
            being_deleted: false,
            finalizers: vec![],
            resource: "test".into(),
        }
    }

    #[test]
    fn unknown_owner_becomes_a_virtual_node_to_verify() {
        let mut g = Graph::default();
        let work = g.upsert(observed(
            id("Pod", "p", "p1"),
            vec![owner_ref("ReplicaSet", "rs", "rs1", true)],
        ));
        assert_eq!(work, vec![Work::Delete("rs1".into())]);
        assert!(!g.get("rs1").unwrap().observed);
        // The owner shows up: no work, node is real.
        let work = g.upsert(observed(id("ReplicaSet", "rs", "rs1"), vec![]));
        assert!(work.is_empty());
        assert!(g.get("rs1").unwrap().observed);
        assert!(g.get("rs1").unwrap().dependents.contains("p1"));
    }

    #[test]
    fn deleting_an_owner_enqueues_its_dependents() {
        let mut g = Graph::default();
        g.upsert(observed(id("ReplicaSet", "rs", "rs1"), vec![]));
        g.upsert(observed(
            id("Pod", "p", "p1"),
            vec![owner_ref("ReplicaSet", "rs", "rs1", true)],
        ));
        assert_eq!(g.remove("rs1"), vec![Work::Delete("p1".into())]);
    }

    #[test]
    fn foreground_and_orphan_transitions() {
        let mut g = Graph::default();
        g.upsert(observed(id("ReplicaSet", "rs", "rs1"), vec![]));
        g.upsert(observed(
            id("Pod", "p", "p1"),
            vec![owner_ref("ReplicaSet", "rs", "rs1", true)],
        ));
        let mut deleting = observed(id("ReplicaSet", "rs", "rs1"), vec![]);
        deleting.being_deleted = true;
        deleting.finalizers = vec![FOREGROUND_FINALIZER.into()];
        let work = g.upsert(deleting.clone());
        assert_eq!(
            work,
            vec![Work::Delete("p1".into()), Work::Delete("rs1".into())]
        );
        assert_eq!(g.blocking_dependents("rs1"), vec![("p1".into(), false)]);
        // Same state again: nothing new.
        assert!(g.upsert(deleting).is_empty());
        // The dependent going away wakes the owner.
        assert_eq!(g.remove("p1"), vec![Work::Delete("rs1".into())]);
        assert!(g.blocking_dependents("rs1").is_empty());

        let mut orphaning = observed(id("ReplicaSet", "rs2", "rs2"), vec![]);
        orphaning.being_deleted = true;
        orphaning.finalizers = vec![ORPHAN_FINALIZER.into()];
        assert_eq!(g.upsert(orphaning), vec![Work::Orphan("rs2".into())]);
    }

    #[test]
    fn dropping_a_reference_unlinks_and_cleans_virtual_nodes() {
        let mut g = Graph::default();
        g.upsert(observed(
            id("ConfigMap", "c", "c1"),
            vec![owner_ref("ConfigMap", "gone", "g1", false)],
        ));
        assert!(g.get("g1").is_some());
        g.upsert(observed(id("ConfigMap", "c", "c1"), vec![]));
        assert!(
            g.get("g1").is_none(),
            "virtual node without dependents is dropped"
        );
    }
}
