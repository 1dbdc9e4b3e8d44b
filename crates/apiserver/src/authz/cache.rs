//! The authorizer chain and the RBAC snapshot it evaluates, kept current by watching the four
//! RBAC collections (any change reloads them all; there are few) and reloaded once more before
//! a request is denied, so a binding created a moment ago is never missed.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use futures::StreamExt;
use kubelab_pki::Identity;
use kubelab_resources::catalog;

use super::rbac::{self, Binding, RbacState};
use super::{is_privileged, node, Attributes};
use crate::error::ApiResult;
use crate::object;
use crate::registry::{ListOptions, Registry};

const RBAC_GROUP: &str = "rbac.authorization.k8s.io";
const RETRY: Duration = Duration::from_millis(500);

/// system:masters, then Node, then RBAC.
pub struct Authorizer {
    registry: Arc<Registry>,
    state: RwLock<Arc<RbacState>>,
    reloads: AtomicU64,
    reload_lock: tokio::sync::Mutex<()>,
}

impl Authorizer {
    /// An authorizer over the RBAC objects stored now; call [`Authorizer::follow`] to keep it
    /// current.
    pub async fn new(registry: Arc<Registry>) -> ApiResult<Arc<Authorizer>> {
        let authorizer = Arc::new(Authorizer {
            registry,
            state: RwLock::new(Arc::default()),
            reloads: AtomicU64::new(0),
            reload_lock: tokio::sync::Mutex::new(()),
        });
        authorizer.reload().await?;
        Ok(authorizer)
    }

    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    pub fn snapshot(&self) -> Arc<RbacState> {
        self.state.read().expect("rbac state lock").clone()
    }

    async fn reload(&self) -> ApiResult<()> {
        let mut state = RbacState::default();
        let list = |plural: &str| {
            let rt = catalog::find(RBAC_GROUP, "v1", plural);
            let registry = self.registry.clone();
            async move {
                match rt {
                    Some(rt) => Ok(registry
                        .list(rt, None, &ListOptions::default())
                        .await?
                        .items),
                    None => ApiResult::Ok(Vec::new()),
                }
            }
        };
        for role in list("roles").await? {
            let ns = object::meta_str(&role, "namespace")
                .unwrap_or("")
                .to_string();
            let name = object::name(&role).to_string();
            state.roles.insert((ns, name), rbac::rules_of(&role));
        }
        for role in list("clusterroles").await? {
            state
                .cluster_roles
                .insert(object::name(&role).to_string(), rbac::rules_of(&role));
        }
        for b in list("rolebindings").await? {
            if let Some(b) = Binding::from_object(&b) {
                state
                    .role_bindings
                    .entry(b.namespace.clone())
                    .or_default()
                    .push(b);
            }
        }
        for b in list("clusterrolebindings").await? {
            if let Some(mut b) = Binding::from_object(&b) {
                b.namespace.clear();
                state.cluster_role_bindings.push(b);
            }
        }
        *self.state.write().expect("rbac state lock") = Arc::new(state);
        self.reloads.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }

    /// Reload unless another reload started after `seen` finished meanwhile.
    async fn reload_since(&self, seen: u64) {
        let _guard = self.reload_lock.lock().await;
        if self.reloads.load(Ordering::SeqCst) == seen {
            if let Err(error) = self.reload().await {
                tracing::warn!(%error, "cannot reload the RBAC objects");
            }
        }
    }

    /// Keep the snapshot current for the life of the server.
    pub async fn follow(self: Arc<Self>) {
        let mut tasks = Vec::new();
        for plural in [
            "roles",
            "clusterroles",
            "rolebindings",
            "clusterrolebindings",
        ] {
            let Some(rt) = catalog::find(RBAC_GROUP, "v1", plural) else {
                continue;
            };
            let me = self.clone();
            tasks.push(tokio::spawn(async move {
                loop {
                    let store = me.registry.store().clone();
                    let from = store.current_revision();
                    let seen = me.reloads.load(Ordering::SeqCst);
                    me.reload_since(seen).await;
                    match store.watch(&object::resource_prefix(rt), from).await {
                        Ok(mut events) => {
                            while let Some(event) = events.next().await {
                                if event.is_err() {
                                    break;
                                }
                                let seen = me.reloads.load(Ordering::SeqCst);
                                me.reload_since(seen).await;
                            }
                        }
                        Err(error) => tracing::warn!(%error, "cannot watch RBAC objects"),
                    }
                    tokio::time::sleep(RETRY).await;
                }
            }));
        }
        futures::future::join_all(tasks).await;
    }

    /// Allow, or the reason for a denial ("" when nobody had an opinion).
    pub async fn authorize(&self, id: &Identity, a: &Attributes) -> Result<(), String> {
        if is_privileged(id) {
            return Ok(());
        }
        let node_reason = match node::authorize(&self.registry, id, a).await {
            node::Decision::Allow => return Ok(()),
            node::Decision::NoOpinion(reason) => reason,
        };
        let seen = self.reloads.load(Ordering::SeqCst);
        if self.snapshot().allows(&id.user, &id.groups, a).is_some() {
            return Ok(());
        }
        // Denied by what we know: make sure it is still what is stored.
        self.reload_since(seen).await;
        if self.snapshot().allows(&id.user, &id.groups, a).is_some() {
            return Ok(());
        }
        Err(node_reason)
    }

    /// The RBAC rules granted to a user in a namespace (for SelfSubjectRulesReview).
    pub async fn rules_for(&self, id: &Identity, namespace: &str) -> Vec<rbac::PolicyRule> {
        if is_privileged(id) {
            return vec![
                rbac::PolicyRule::new(&["*"], &["*"], &["*"]),
                rbac::PolicyRule::urls(&["*"], &["*"]),
            ];
        }
        let seen = self.reloads.load(Ordering::SeqCst);
        self.reload_since(seen).await;
        self.snapshot().rules_for(&id.user, &id.groups, namespace)
    }
}
