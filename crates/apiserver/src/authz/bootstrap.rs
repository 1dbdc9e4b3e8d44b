//! The default ClusterRoles and ClusterRoleBindings, reconciled at every start like upstream's
//! bootstrap policy: missing objects are created, and objects annotated
//! `rbac.authorization.kubernetes.io/autoupdate: "true"` get back any default rule, subject,
//! label or aggregation rule they lost (extra ones are kept); `"false"` leaves an object alone.
//! The `kubelab:cluster-admins` binding (the admin kubeconfig's group → cluster-admin) is
//! created once, with a new cluster, like kubeadm's: deleting it revokes the admin
//! kubeconfig for good, leaving the break-glass `system:masters` credential on the server.

use kubelab_resources::catalog;
use serde_json::{json, Value};

use super::rbac::{self, PolicyRule};
use crate::error::{ApiError, ApiResult};
use crate::registry::Registry;

const GROUP: &str = "rbac.authorization.k8s.io";
const AUTOUPDATE: &str = "rbac.authorization.kubernetes.io/autoupdate";
pub const AGGREGATE_TO_ADMIN: &str = "rbac.authorization.k8s.io/aggregate-to-admin";
pub const AGGREGATE_TO_EDIT: &str = "rbac.authorization.k8s.io/aggregate-to-edit";
pub const AGGREGATE_TO_VIEW: &str = "rbac.authorization.k8s.io/aggregate-to-view";
/// The admin kubeconfig's group, bound to cluster-admin (kubeadm's `kubeadm:cluster-admins`).
pub const CLUSTER_ADMINS_BINDING: &str = "kubelab:cluster-admins";

const READ: &[&str] = &["get", "list", "watch"];
const WRITE: &[&str] = &["create", "delete", "deletecollection", "patch", "update"];
const ALL_RW: &[&str] = &[
    "create",
    "delete",
    "deletecollection",
    "get",
    "list",
    "patch",
    "update",
    "watch",
];

fn r(verbs: &[&str], groups: &[&str], resources: &[&str]) -> PolicyRule {
    PolicyRule::new(verbs, groups, resources)
}

fn cluster_role(name: &str, labels: &[(&str, &str)], rules: Vec<PolicyRule>) -> Value {
    let mut meta = json!({
        "name": name,
        "labels": {"kubernetes.io/bootstrapping": "rbac-defaults"},
        "annotations": {AUTOUPDATE: "true"},
    });
    for (k, v) in labels {
        meta["labels"][*k] = json!(v);
    }
    json!({
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRole",
        "metadata": meta,
        "rules": rules,
    })
}

fn aggregated(name: &str, labels: &[(&str, &str)], selects: &str) -> Value {
    let mut role = cluster_role(name, labels, Vec::new());
    role["aggregationRule"] = json!({"clusterRoleSelectors": [{"matchLabels": {selects: "true"}}]});
    role
}

fn binding(name: &str, role: &str, subjects: &[(&str, &str)]) -> Value {
    let subjects: Vec<Value> = subjects
        .iter()
        .map(|(kind, name)| json!({"kind": kind, "apiGroup": GROUP, "name": name}))
        .collect();
    json!({
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRoleBinding",
        "metadata": {
            "name": name,
            "labels": {"kubernetes.io/bootstrapping": "rbac-defaults"},
            "annotations": {AUTOUPDATE: "true"},
        },
        "roleRef": {"apiGroup": GROUP, "kind": "ClusterRole", "name": role},
        "subjects": subjects,
    })
}

/// The default ClusterRoles (aggregated ones with their rules already gathered).
pub fn cluster_roles() -> Vec<Value> {
    let mut roles = vec![
        cluster_role(
            "cluster-admin",
            &[],
            vec![r(&["*"], &["*"], &["*"]), PolicyRule::urls(&["*"], &["*"])],
        ),
        aggregated("admin", &[], AGGREGATE_TO_ADMIN),
        aggregated("edit", &[(AGGREGATE_TO_ADMIN, "true")], AGGREGATE_TO_EDIT),
        aggregated("view", &[(AGGREGATE_TO_EDIT, "true")], AGGREGATE_TO_VIEW),
        cluster_role(
            "system:aggregate-to-admin",
            &[(AGGREGATE_TO_ADMIN, "true")],
            vec![
                r(ALL_RW, &[GROUP], &["rolebindings", "roles"]),
                r(
                    &["create"],
                    &["authorization.k8s.io"],
                    &["localsubjectaccessreviews"],
                ),
            ],
        ),
        cluster_role(
            "system:aggregate-to-edit",
            &[(AGGREGATE_TO_EDIT, "true")],
            vec![
                r(
                    READ,
                    &[""],
                    &[
                        "pods/attach",
                        "pods/exec",
                        "pods/portforward",
                        "pods/proxy",
                        "secrets",
                        "services/proxy",
                    ],
                ),
                r(&["impersonate"], &[""], &["serviceaccounts"]),
                r(
                    WRITE,
                    &[""],
                    &[
                        "pods",
                        "pods/attach",
                        "pods/exec",
                        "pods/portforward",
                        "pods/proxy",
                    ],
                ),
                r(&["create"], &[""], &["pods/eviction"]),
                r(
                    WRITE,
                    &[""],
                    &[
                        "configmaps",
                        "events",
                        "persistentvolumeclaims",
                        "replicationcontrollers",
                        "replicationcontrollers/scale",
                        "secrets",
                        "serviceaccounts",
                        "services",
                        "services/proxy",
                    ],
                ),
                r(&["create"], &[""], &["serviceaccounts/token"]),
                r(
                    WRITE,
                    &["apps"],
                    &[
                        "daemonsets",
                        "deployments",
                        "deployments/rollback",
                        "deployments/scale",
                        "replicasets",
                        "replicasets/scale",
                        "statefulsets",
                        "statefulsets/scale",
                    ],
                ),
                r(WRITE, &["autoscaling"], &["horizontalpodautoscalers"]),
                r(WRITE, &["batch"], &["cronjobs", "jobs"]),
                r(WRITE, &["policy"], &["poddisruptionbudgets"]),
                r(
                    WRITE,
                    &["networking.k8s.io"],
                    &["ingresses", "networkpolicies"],
                ),
                r(READ, &["coordination.k8s.io"], &["leases"]),
            ],
        ),
        cluster_role(
            "system:aggregate-to-view",
            &[(AGGREGATE_TO_VIEW, "true")],
            vec![
                r(
                    READ,
                    &[""],
                    &[
                        "configmaps",
                        "endpoints",
                        "persistentvolumeclaims",
                        "persistentvolumeclaims/status",
                        "pods",
                        "replicationcontrollers",
                        "replicationcontrollers/scale",
                        "serviceaccounts",
                        "services",
                        "services/status",
                    ],
                ),
                r(
                    READ,
                    &[""],
                    &[
                        "bindings",
                        "events",
                        "limitranges",
                        "namespaces/status",
                        "pods/log",
                        "pods/status",
                        "replicationcontrollers/status",
                        "resourcequotas",
                        "resourcequotas/status",
                    ],
                ),
                r(READ, &[""], &["namespaces"]),
                r(READ, &["discovery.k8s.io"], &["endpointslices"]),
                r(
                    READ,
                    &["apps"],
                    &[
                        "controllerrevisions",
                        "daemonsets",
                        "daemonsets/status",
                        "deployments",
                        "deployments/scale",
                        "deployments/status",
                        "replicasets",
                        "replicasets/scale",
                        "replicasets/status",
                        "statefulsets",
                        "statefulsets/scale",
                        "statefulsets/status",
                    ],
                ),
                r(
                    READ,
                    &["autoscaling"],
                    &[
                        "horizontalpodautoscalers",
                        "horizontalpodautoscalers/status",
                    ],
                ),
                r(
                    READ,
                    &["batch"],
                    &["cronjobs", "cronjobs/status", "jobs", "jobs/status"],
                ),
                r(
                    READ,
                    &["policy"],
                    &["poddisruptionbudgets", "poddisruptionbudgets/status"],
                ),
                r(
                    READ,
                    &["networking.k8s.io"],
                    &["ingresses", "ingresses/status", "networkpolicies"],
                ),
            ],
        ),
        cluster_role(
            "system:discovery",
            &[],
            vec![PolicyRule::urls(
                &["get"],
                &[
                    "/api",
                    "/api/*",
                    "/apis",
                    "/apis/*",
                    "/healthz",
                    "/livez",
                    "/openapi",
                    "/openapi/*",
                    "/readyz",
                    "/version",
                    "/version/",
                ],
            )],
        ),
        cluster_role(
            "system:basic-user",
            &[],
            vec![
                r(
                    &["create"],
                    &["authentication.k8s.io"],
                    &["selfsubjectreviews"],
                ),
                r(
                    &["create"],
                    &["authorization.k8s.io"],
                    &["selfsubjectaccessreviews", "selfsubjectrulesreviews"],
                ),
            ],
        ),
        cluster_role(
            "system:public-info-viewer",
            &[],
            vec![PolicyRule::urls(
                &["get"],
                &["/healthz", "/livez", "/readyz", "/version", "/version/"],
            )],
        ),
        // kubelab's controllers run as one identity and reconcile every kind, garbage-collect
        // anything and aggregate ClusterRoles: they hold every permission.
        cluster_role(
            "system:kube-controller-manager",
            &[],
            vec![r(&["*"], &["*"], &["*"])],
        ),
        cluster_role(
            "system:kube-scheduler",
            &[],
            vec![
                r(
                    &["create", "patch", "update"],
                    &["", "events.k8s.io"],
                    &["events"],
                ),
                r(
                    &["create", "get", "list", "watch", "update", "patch"],
                    &["coordination.k8s.io"],
                    &["leases"],
                ),
                r(
                    READ,
                    &[""],
                    &[
                        "nodes",
                        "namespaces",
                        "persistentvolumeclaims",
                        "persistentvolumes",
                        "replicationcontrollers",
                        "services",
                        "configmaps",
                    ],
                ),
                r(&["get", "list", "watch", "delete"], &[""], &["pods"]),
                r(&["create"], &[""], &["bindings", "pods/binding"]),
                r(&["patch", "update"], &[""], &["pods/status"]),
                r(READ, &["apps"], &["replicasets", "statefulsets"]),
                r(READ, &["policy"], &["poddisruptionbudgets"]),
                r(
                    READ,
                    &["storage.k8s.io"],
                    &[
                        "storageclasses",
                        "csinodes",
                        "csidrivers",
                        "csistoragecapacities",
                    ],
                ),
                r(&["create"], &["authentication.k8s.io"], &["tokenreviews"]),
                r(
                    &["create"],
                    &["authorization.k8s.io"],
                    &["subjectaccessreviews"],
                ),
            ],
        ),
        cluster_role(
            "system:node-proxier",
            &[],
            vec![
                r(&["list", "watch"], &[""], &["services", "endpoints"]),
                r(READ, &[""], &["nodes"]),
                r(
                    &["create", "patch", "update"],
                    &["", "events.k8s.io"],
                    &["events"],
                ),
                r(
                    &["list", "watch"],
                    &["discovery.k8s.io"],
                    &["endpointslices"],
                ),
            ],
        ),
    ];
    aggregate_all(&mut roles);
    roles
}

/// The default ClusterRoleBindings.
pub fn cluster_role_bindings() -> Vec<Value> {
    vec![
        binding(
            "cluster-admin",
            "cluster-admin",
            &[("Group", "system:masters")],
        ),
        binding(
            "system:discovery",
            "system:discovery",
            &[("Group", "system:authenticated")],
        ),
        binding(
            "system:basic-user",
            "system:basic-user",
            &[("Group", "system:authenticated")],
        ),
        binding(
            "system:public-info-viewer",
            "system:public-info-viewer",
            &[
                ("Group", "system:authenticated"),
                ("Group", "system:unauthenticated"),
            ],
        ),
        binding(
            "system:kube-controller-manager",
            "system:kube-controller-manager",
            &[("User", kubelab_pki::CONTROLLER_MANAGER_USER)],
        ),
        binding(
            "system:kube-scheduler",
            "system:kube-scheduler",
            &[("User", kubelab_pki::SCHEDULER_USER)],
        ),
        binding(
            "system:node-proxier",
            "system:node-proxier",
            &[("User", kubelab_pki::KUBE_PROXY_USER)],
        ),
    ]
}

/// Does a ClusterRole's label set match one of an aggregation rule's selectors?
pub fn selected_by(aggregation_rule: &Value, role: &Value) -> bool {
    aggregation_rule
        .get("clusterRoleSelectors")
        .and_then(Value::as_array)
        .is_some_and(|selectors| {
            selectors.iter().any(|s| {
                kubelab_resources::labels::from_label_selector_json(s)
                    .is_ok_and(|sel| !sel.is_empty() && sel.matches_object(role))
            })
        })
}

/// Gather aggregated rules until nothing changes (aggregated roles may select each other).
fn aggregate_all(roles: &mut [Value]) {
    for _ in 0..roles.len() {
        let mut changed = false;
        for i in 0..roles.len() {
            let Some(rule) = roles[i].get("aggregationRule").cloned() else {
                continue;
            };
            let mut gathered: Vec<PolicyRule> = Vec::new();
            for (j, other) in roles.iter().enumerate() {
                if j != i && selected_by(&rule, other) {
                    for r in rbac::rules_of(other) {
                        if !gathered.contains(&r) {
                            gathered.push(r);
                        }
                    }
                }
            }
            if rbac::rules_of(&roles[i]) != gathered {
                roles[i]["rules"] = json!(gathered);
                changed = true;
            }
        }
        if !changed {
            break;
        }
    }
}

fn autoupdate(obj: &Value) -> bool {
    obj.pointer("/metadata/annotations")
        .and_then(|a| a.get(AUTOUPDATE))
        .and_then(Value::as_str)
        != Some("false")
}

/// Bring `current` up to the defaults in `want`; None when nothing is missing.
fn reconciled(current: &Value, want: &Value) -> Option<Value> {
    if !autoupdate(current) {
        return None;
    }
    let mut next = current.clone();
    let mut changed = false;
    if let Some(labels) = want.pointer("/metadata/labels").and_then(Value::as_object) {
        for (k, v) in labels {
            if current.pointer("/metadata/labels").and_then(|l| l.get(k)) != Some(v) {
                next["metadata"]["labels"][k] = v.clone();
                changed = true;
            }
        }
    }
    for list in ["rules", "subjects"] {
        let Some(wanted) = want.get(list).and_then(Value::as_array) else {
            continue;
        };
        let mut have = current
            .get(list)
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        for w in wanted {
            let present = if list == "rules" {
                let w: PolicyRule = serde_json::from_value(w.clone()).unwrap_or_default();
                rbac::uncovered(&rbac::rules_of(current), std::slice::from_ref(&w)).is_empty()
            } else {
                have.iter()
                    .any(|h| h.get("kind") == w.get("kind") && h.get("name") == w.get("name"))
            };
            if !present {
                have.push(w.clone());
                changed = true;
            }
        }
        next[list] = json!(have);
    }
    if let Some(rule) = want.get("aggregationRule") {
        if current.get("aggregationRule") != Some(rule) {
            next["aggregationRule"] = rule.clone();
            changed = true;
        }
    }
    if let Some(meta) = next.get_mut("metadata").and_then(Value::as_object_mut) {
        meta.remove("resourceVersion");
    }
    changed.then_some(next)
}

/// Create or repair every default ClusterRole and ClusterRoleBinding.
pub async fn ensure(registry: &Registry) -> ApiResult<()> {
    let roles = catalog::find(GROUP, "v1", "clusterroles")
        .ok_or_else(|| ApiError::internal("clusterroles are not served"))?;
    let bindings = catalog::find(GROUP, "v1", "clusterrolebindings")
        .ok_or_else(|| ApiError::internal("clusterrolebindings are not served"))?;
    let fresh = matches!(
        registry.get(roles, None, "cluster-admin").await,
        Err(ApiError::NotFound { .. })
    );
    let once = fresh.then(|| {
        binding(
            CLUSTER_ADMINS_BINDING,
            "cluster-admin",
            &[("Group", kubelab_pki::CLUSTER_ADMINS_GROUP)],
        )
    });
    let defaults = cluster_roles().into_iter().map(|o| (roles, o)).chain(
        cluster_role_bindings()
            .into_iter()
            .chain(once)
            .map(|o| (bindings, o)),
    );
    for (rt, want) in defaults {
        let name = crate::object::name(&want).to_string();
        match registry.get(rt, None, &name).await {
            Err(ApiError::NotFound { .. }) => match registry.create(rt, None, want, false).await {
                Ok(_) | Err(ApiError::AlreadyExists { .. }) => {}
                Err(e) => return Err(e),
            },
            Err(e) => return Err(e),
            Ok(current) => {
                if reconciled(&current, &want).is_none() {
                    continue;
                }
                registry
                    .update(rt, None, &name, None, false, |current| {
                        Ok(reconciled(current, &want).unwrap_or_else(|| current.clone()))
                    })
                    .await?;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn admin_gathers_edit_and_view() {
        let roles = cluster_roles();
        let rules = |name: &str| {
            rbac::rules_of(
                roles
                    .iter()
                    .find(|r| crate::object::name(r) == name)
                    .unwrap(),
            )
        };
        let pods_get = super::super::Attributes::resource("get", "", "pods", "a", "p");
        let secrets_get = super::super::Attributes::resource("get", "", "secrets", "a", "s");
        let roles_create = super::super::Attributes::resource("create", GROUP, "roles", "a", "");
        assert!(rules("view").iter().any(|r| r.allows(&pods_get)));
        assert!(!rules("view").iter().any(|r| r.allows(&secrets_get)));
        assert!(rules("edit").iter().any(|r| r.allows(&secrets_get)));
        assert!(!rules("edit").iter().any(|r| r.allows(&roles_create)));
        assert!(rules("admin").iter().any(|r| r.allows(&roles_create)));
        assert!(rules("admin").iter().any(|r| r.allows(&pods_get)));
    }

    #[test]
    fn reconcile_restores_lost_defaults_unless_opted_out() {
        let want = binding("b", "cluster-admin", &[("Group", "g")]);
        let mut emptied = want.clone();
        emptied["subjects"] = json!([]);
        let fixed = reconciled(&emptied, &want).unwrap();
        assert_eq!(fixed["subjects"], want["subjects"]);
        assert!(reconciled(&want, &want).is_none());
        emptied["metadata"]["annotations"][AUTOUPDATE] = json!("false");
        assert!(reconciled(&emptied, &want).is_none());
    }
}
