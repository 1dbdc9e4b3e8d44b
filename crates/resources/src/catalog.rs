//! The built-in resources the API server serves, as upstream kube-apiserver 1.32 describes them
//! in discovery: plural, singular, kind, scope, short names, categories, verbs and subresources.
//!
//! [`builtin`] is in discovery order: the core group first, then the groups in the order of the
//! aggregator's group priorities (`apps` 17800, `events.k8s.io` 17750, `autoscaling` 17500, ...),
//! and inside a group the resources sorted by plural, as the upstream installer sorts them.

/// One served resource (a group/version/plural) and what discovery says about it.
#[derive(Debug, PartialEq, Eq)]
pub struct ResourceType {
    /// API group; `""` for the core group.
    pub group: &'static str,
    pub version: &'static str,
    pub kind: &'static str,
    pub plural: &'static str,
    pub singular: &'static str,
    pub namespaced: bool,
    pub short_names: &'static [&'static str],
    pub categories: &'static [&'static str],
    pub subresources: &'static [Subresource],
}

/// A subresource (`pods/status`, `deployments/scale`, ...) and the kind it accepts and returns.
#[derive(Debug, PartialEq, Eq)]
pub struct Subresource {
    pub name: &'static str,
    pub group: &'static str,
    pub version: &'static str,
    pub kind: &'static str,
    pub verbs: &'static [&'static str],
}

impl ResourceType {
    /// `"v1"` for the core group, `"<group>/<version>"` otherwise.
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.to_string()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// The kind of a list of these objects (`PodList`).
    pub fn list_kind(&self) -> String {
        format!("{}List", self.kind)
    }

    /// Whether the resource has a `status` subresource (and so a status the main resource may
    /// not write).
    pub fn has_status(&self) -> bool {
        self.subresource("status").is_some()
    }

    /// Whether the resource has a `scale` subresource.
    pub fn has_scale(&self) -> bool {
        self.subresource("scale").is_some()
    }

    /// The subresource with this name, if served.
    pub fn subresource(&self, name: &str) -> Option<&'static Subresource> {
        self.subresources.iter().find(|s| s.name == name)
    }

    /// The verbs of the resource itself, as discovery lists them.
    pub fn verbs(&self) -> &'static [&'static str] {
        if self.is_review() {
            CREATE_ONLY
        } else if self.group.is_empty() && self.plural == "namespaces" {
            NAMESPACE_VERBS
        } else {
            ALL_VERBS
        }
    }

    /// A create-only review (authentication.k8s.io, authorization.k8s.io): answered, never stored.
    pub fn is_review(&self) -> bool {
        matches!(self.group, "authentication.k8s.io" | "authorization.k8s.io")
    }

    /// Whether `verb` is served on the resource itself.
    pub fn supports_verb(&self, verb: &str) -> bool {
        self.verbs().contains(&verb)
    }

    /// `Kind` for the core group, `Kind.group` otherwise: how errors name the kind
    /// (`Deployment.apps "web" is invalid`).
    pub fn qualified_kind(&self) -> String {
        if self.group.is_empty() {
            self.kind.to_string()
        } else {
            format!("{}.{}", self.kind, self.group)
        }
    }

    /// `plural` for the core group, `plural.group` otherwise: how errors name the resource
    /// (`deployments.apps "web" not found`).
    pub fn qualified_resource(&self) -> String {
        if self.group.is_empty() {
            self.plural.to_string()
        } else {
            format!("{}.{}", self.plural, self.group)
        }
    }

    /// Whether this is `group`/`kind` (version ignored).
    pub fn is(&self, group: &str, kind: &str) -> bool {
        self.group == group && self.kind == kind
    }
}

const ALL_VERBS: &[&str] = &[
    "create",
    "delete",
    "deletecollection",
    "get",
    "list",
    "patch",
    "update",
    "watch",
];
const NAMESPACE_VERBS: &[&str] = &[
    "create", "delete", "get", "list", "patch", "update", "watch",
];
const STATUS_VERBS: &[&str] = &["get", "patch", "update"];
const CONNECT_VERBS: &[&str] = &["create", "get"];
const CREATE_ONLY: &[&str] = &["create"];

const fn status(group: &'static str, version: &'static str, kind: &'static str) -> Subresource {
    Subresource {
        name: "status",
        group,
        version,
        kind,
        verbs: STATUS_VERBS,
    }
}

const fn scale() -> Subresource {
    Subresource {
        name: "scale",
        group: "autoscaling",
        version: "v1",
        kind: "Scale",
        verbs: STATUS_VERBS,
    }
}

const ALL: &[&str] = &["all"];
const API_EXTENSIONS: &[&str] = &["api-extensions"];
const NONE: &[&str] = &[];
const NO_SUBRESOURCES: &[Subresource] = &[];

#[allow(clippy::too_many_arguments)]
const fn rt(
    group: &'static str,
    version: &'static str,
    kind: &'static str,
    plural: &'static str,
    singular: &'static str,
    namespaced: bool,
    short_names: &'static [&'static str],
    categories: &'static [&'static str],
    subresources: &'static [Subresource],
) -> ResourceType {
    ResourceType {
        group,
        version,
        kind,
        plural,
        singular,
        namespaced,
        short_names,
        categories,
        subresources,
    }
}

static BUILTIN: &[ResourceType] = &[
    // core/v1
    rt(
        "",
        "v1",
        "ConfigMap",
        "configmaps",
        "configmap",
        true,
        &["cm"],
        NONE,
        NO_SUBRESOURCES,
    ),
    rt(
        "",
        "v1",
        "Endpoints",
        "endpoints",
        "endpoints",
        true,
        &["ep"],
        NONE,
        NO_SUBRESOURCES,
    ),
    rt(
        "",
        "v1",
        "Event",
        "events",
        "event",
        true,
        &["ev"],
        NONE,
        NO_SUBRESOURCES,
    ),
    rt(
        "",
        "v1",
        "LimitRange",
        "limitranges",
        "limitrange",
        true,
        &["limits"],
        NONE,
        NO_SUBRESOURCES,
    ),
    rt(
        "",
        "v1",
        "Namespace",
        "namespaces",
        "namespace",
        false,
        &["ns"],
        NONE,
        &[
            Subresource {
                name: "finalize",
                group: "",
                version: "v1",
                kind: "Namespace",
                verbs: &["update"],
            },
            status("", "v1", "Namespace"),
        ],
    ),
    rt(
        "",
        "v1",
        "Node",
        "nodes",
        "node",
        false,
        &["no"],
        NONE,
        &[status("", "v1", "Node")],
    ),
    rt(
        "",
        "v1",
        "PersistentVolumeClaim",
        "persistentvolumeclaims",
        "persistentvolumeclaim",
        true,
        &["pvc"],
        NONE,
        &[status("", "v1", "PersistentVolumeClaim")],
    ),
    rt(
        "",
        "v1",
        "PersistentVolume",
        "persistentvolumes",
        "persistentvolume",
        false,
        &["pv"],
        NONE,
        &[status("", "v1", "PersistentVolume")],
    ),
    rt(
        "",
        "v1",
        "Pod",
        "pods",
        "pod",
        true,
        &["po"],
        ALL,
        &[
            Subresource {
                name: "attach",
                group: "",
                version: "v1",
                kind: "PodAttachOptions",
                verbs: CONNECT_VERBS,
            },
            Subresource {
                name: "binding",
                group: "",
                version: "v1",
                kind: "Binding",
                verbs: CREATE_ONLY,
            },
            Subresource {
                name: "ephemeralcontainers",
                group: "",
                version: "v1",
                kind: "Pod",
                verbs: STATUS_VERBS,
            },
            Subresource {
                name: "eviction",
                group: "policy",
                version: "v1",
                kind: "Eviction",
                verbs: CREATE_ONLY,
            },
            Subresource {
                name: "exec",
                group: "",
                version: "v1",
                kind: "PodExecOptions",
                verbs: CONNECT_VERBS,
            },
            Subresource {
                name: "log",
                group: "",
                version: "v1",
                kind: "Pod",
                verbs: &["get"],
            },
            Subresource {
                name: "portforward",
                group: "",
                version: "v1",
                kind: "PodPortForwardOptions",
                verbs: CONNECT_VERBS,
            },
            status("", "v1", "Pod"),
        ],
    ),
    rt(
        "",
        "v1",
        "PodTemplate",
        "podtemplates",
        "podtemplate",
        true,
        NONE,
        NONE,
        NO_SUBRESOURCES,
    ),
    rt(
        "",
        "v1",
        "ReplicationController",
        "replicationcontrollers",
        "replicationcontroller",
        true,
        &["rc"],
        ALL,
        &[scale(), status("", "v1", "ReplicationController")],
    ),
    rt(
        "",
        "v1",
        "ResourceQuota",
        "resourcequotas",
        "resourcequota",
        true,
        &["quota"],
        NONE,
        &[status("", "v1", "ResourceQuota")],
    ),
    rt(
        "",
        "v1",
        "Secret",
        "secrets",
        "secret",
        true,
        NONE,
        NONE,
        NO_SUBRESOURCES,
    ),
    rt(
        "",
        "v1",
        "ServiceAccount",
        "serviceaccounts",
        "serviceaccount",
        true,
        &["sa"],
        NONE,
        &[Subresource {
            name: "token",
            group: "authentication.k8s.io",
            version: "v1",
            kind: "TokenRequest",
            verbs: CREATE_ONLY,
        }],
    ),
    rt(
        "",
        "v1",
        "Service",
        "services",
        "service",
        true,
        &["svc"],
        ALL,
        &[status("", "v1", "Service")],
    ),
    // apps/v1
    rt(
        "apps",
        "v1",
        "ControllerRevision",
        "controllerrevisions",
        "controllerrevision",
        true,
        NONE,
        NONE,
        NO_SUBRESOURCES,
    ),
    rt(
        "apps",
        "v1",
        "DaemonSet",
        "daemonsets",
        "daemonset",
        true,
        &["ds"],
        ALL,
        &[status("apps", "v1", "DaemonSet")],
    ),
    rt(
        "apps",
        "v1",
        "Deployment",
        "deployments",
        "deployment",
        true,
        &["deploy"],
        ALL,
        &[scale(), status("apps", "v1", "Deployment")],
    ),
    rt(
        "apps",
        "v1",
        "ReplicaSet",
        "replicasets",
        "replicaset",
        true,
        &["rs"],
        ALL,
        &[scale(), status("apps", "v1", "ReplicaSet")],
    ),
    rt(
        "apps",
        "v1",
        "StatefulSet",
        "statefulsets",
        "statefulset",
        true,
        &["sts"],
        ALL,
        &[scale(), status("apps", "v1", "StatefulSet")],
    ),
    // events.k8s.io/v1
    rt(
        "events.k8s.io",
        "v1",
        "Event",
        "events",
        "event",
        true,
        &["ev"],
        NONE,
        NO_SUBRESOURCES,
    ),
    // authentication.k8s.io/v1 (create-only reviews, never stored)
    rt(
        "authentication.k8s.io",
        "v1",
        "SelfSubjectReview",
        "selfsubjectreviews",
        "selfsubjectreview",
        false,
        NONE,
        NONE,
        NO_SUBRESOURCES,
    ),
    rt(
        "authentication.k8s.io",
        "v1",
        "TokenReview",
        "tokenreviews",
        "tokenreview",
        false,
        NONE,
        NONE,
        NO_SUBRESOURCES,
    ),
    // authorization.k8s.io/v1 (create-only reviews, never stored)
    rt(
        "authorization.k8s.io",
        "v1",
        "LocalSubjectAccessReview",
        "localsubjectaccessreviews",
        "localsubjectaccessreview",
        true,
        NONE,
        NONE,
        NO_SUBRESOURCES,
    ),
    rt(
        "authorization.k8s.io",
        "v1",
        "SelfSubjectAccessReview",
        "selfsubjectaccessreviews",
        "selfsubjectaccessreview",
        false,
        NONE,
        NONE,
        NO_SUBRESOURCES,
    ),
    rt(
        "authorization.k8s.io",
        "v1",
        "SelfSubjectRulesReview",
        "selfsubjectrulesreviews",
        "selfsubjectrulesreview",
        false,
        NONE,
        NONE,
        NO_SUBRESOURCES,
    ),
    rt(
        "authorization.k8s.io",
        "v1",
        "SubjectAccessReview",
        "subjectaccessreviews",
        "subjectaccessreview",
        false,
        NONE,
        NONE,
        NO_SUBRESOURCES,
    ),
    // autoscaling/v2
    rt(
        "autoscaling",
        "v2",
        "HorizontalPodAutoscaler",
        "horizontalpodautoscalers",
        "horizontalpodautoscaler",
        true,
        &["hpa"],
        ALL,
        &[status("autoscaling", "v2", "HorizontalPodAutoscaler")],
    ),
    // batch/v1
    rt(
        "batch",
        "v1",
        "CronJob",
        "cronjobs",
        "cronjob",
        true,
        &["cj"],
        ALL,
        &[status("batch", "v1", "CronJob")],
    ),
    rt(
        "batch",
        "v1",
        "Job",
        "jobs",
        "job",
        true,
        NONE,
        ALL,
        &[status("batch", "v1", "Job")],
    ),
    // networking.k8s.io/v1
    rt(
        "networking.k8s.io",
        "v1",
        "IngressClass",
        "ingressclasses",
        "ingressclass",
        false,
        NONE,
        NONE,
        NO_SUBRESOURCES,
    ),
    rt(
        "networking.k8s.io",
        "v1",
        "Ingress",
        "ingresses",
        "ingress",
        true,
        &["ing"],
        NONE,
        &[status("networking.k8s.io", "v1", "Ingress")],
    ),
    rt(
        "networking.k8s.io",
        "v1",
        "NetworkPolicy",
        "networkpolicies",
        "networkpolicy",
        true,
        &["netpol"],
        NONE,
        NO_SUBRESOURCES,
    ),
    // policy/v1
    rt(
        "policy",
        "v1",
        "PodDisruptionBudget",
        "poddisruptionbudgets",
        "poddisruptionbudget",
        true,
        &["pdb"],
        NONE,
        &[status("policy", "v1", "PodDisruptionBudget")],
    ),
    // rbac.authorization.k8s.io/v1
    rt(
        "rbac.authorization.k8s.io",
        "v1",
        "ClusterRoleBinding",
        "clusterrolebindings",
        "clusterrolebinding",
        false,
        NONE,
        NONE,
        NO_SUBRESOURCES,
    ),
    rt(
        "rbac.authorization.k8s.io",
        "v1",
        "ClusterRole",
        "clusterroles",
        "clusterrole",
        false,
        NONE,
        NONE,
        NO_SUBRESOURCES,
    ),
    rt(
        "rbac.authorization.k8s.io",
        "v1",
        "RoleBinding",
        "rolebindings",
        "rolebinding",
        true,
        NONE,
        NONE,
        NO_SUBRESOURCES,
    ),
    rt(
        "rbac.authorization.k8s.io",
        "v1",
        "Role",
        "roles",
        "role",
        true,
        NONE,
        NONE,
        NO_SUBRESOURCES,
    ),
    // storage.k8s.io/v1
    rt(
        "storage.k8s.io",
        "v1",
        "StorageClass",
        "storageclasses",
        "storageclass",
        false,
        &["sc"],
        NONE,
        NO_SUBRESOURCES,
    ),
    // apiextensions.k8s.io/v1
    rt(
        "apiextensions.k8s.io",
        "v1",
        "CustomResourceDefinition",
        "customresourcedefinitions",
        "customresourcedefinition",
        false,
        &["crd", "crds"],
        API_EXTENSIONS,
        &[status(
            "apiextensions.k8s.io",
            "v1",
            "CustomResourceDefinition",
        )],
    ),
    // scheduling.k8s.io/v1
    rt(
        "scheduling.k8s.io",
        "v1",
        "PriorityClass",
        "priorityclasses",
        "priorityclass",
        false,
        &["pc"],
        NONE,
        NO_SUBRESOURCES,
    ),
    // coordination.k8s.io/v1
    rt(
        "coordination.k8s.io",
        "v1",
        "Lease",
        "leases",
        "lease",
        true,
        NONE,
        NONE,
        NO_SUBRESOURCES,
    ),
    // node.k8s.io/v1
    rt(
        "node.k8s.io",
        "v1",
        "RuntimeClass",
        "runtimeclasses",
        "runtimeclass",
        false,
        NONE,
        NONE,
        NO_SUBRESOURCES,
    ),
    // discovery.k8s.io/v1
    rt(
        "discovery.k8s.io",
        "v1",
        "EndpointSlice",
        "endpointslices",
        "endpointslice",
        true,
        NONE,
        NONE,
        NO_SUBRESOURCES,
    ),
];

/// All built-in resources, in discovery order.
pub fn builtin() -> &'static [ResourceType] {
    BUILTIN
}

/// The resource served at `group`/`version`/`plural`.
pub fn find(group: &str, version: &str, plural: &str) -> Option<&'static ResourceType> {
    BUILTIN
        .iter()
        .find(|rt| rt.group == group && rt.version == version && rt.plural == plural)
}

/// The resource whose objects have this `apiVersion` and `kind`.
pub fn find_kind(api_version: &str, kind: &str) -> Option<&'static ResourceType> {
    let (group, version) = split_api_version(api_version);
    BUILTIN
        .iter()
        .find(|rt| rt.group == group && rt.version == version && rt.kind == kind)
}

/// Splits `apps/v1` into `("apps", "v1")` and `v1` into `("", "v1")`.
pub fn split_api_version(api_version: &str) -> (&str, &str) {
    match api_version.split_once('/') {
        Some((group, version)) => (group, version),
        None => ("", api_version),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookups() {
        let deploy = find("apps", "v1", "deployments").unwrap();
        assert_eq!(deploy.api_version(), "apps/v1");
        assert_eq!(deploy.list_kind(), "DeploymentList");
        assert!(deploy.has_status() && deploy.has_scale());
        assert_eq!(deploy.qualified_kind(), "Deployment.apps");
        assert_eq!(find_kind("apps/v1", "Deployment"), Some(deploy));
        assert_eq!(find_kind("v1", "Pod").unwrap().plural, "pods");
        assert_eq!(find_kind("v1", "Deployment"), None);
        assert_eq!(find("", "v1", "pods").unwrap().api_version(), "v1");
        assert!(!find("", "v1", "configmaps").unwrap().has_status());
    }

    #[test]
    fn namespaces_have_no_deletecollection() {
        let ns = find("", "v1", "namespaces").unwrap();
        assert!(!ns.supports_verb("deletecollection"));
        assert!(find("", "v1", "pods")
            .unwrap()
            .supports_verb("deletecollection"));
    }

    #[test]
    fn unique_and_well_formed() {
        let mut seen = std::collections::HashSet::new();
        for rt in builtin() {
            assert!(
                seen.insert((rt.group, rt.version, rt.plural)),
                "duplicate {}",
                rt.plural
            );
            assert_eq!(rt.singular, rt.kind.to_lowercase(), "{}", rt.plural);
            let mut names: Vec<_> = rt.subresources.iter().map(|s| s.name).collect();
            let sorted = {
                let mut n = names.clone();
                n.sort();
                n
            };
            assert_eq!(names, sorted, "subresources of {} sorted", rt.plural);
            names.dedup();
            assert_eq!(names.len(), rt.subresources.len());
        }
    }

    #[test]
    fn discovery_order() {
        let mut groups: Vec<&str> = Vec::new();
        for rt in builtin() {
            if groups.last() != Some(&rt.group) {
                assert!(!groups.contains(&rt.group), "group {} split", rt.group);
                groups.push(rt.group);
            }
        }
        assert_eq!(
            groups,
            [
                "",
                "apps",
                "events.k8s.io",
                "authentication.k8s.io",
                "authorization.k8s.io",
                "autoscaling",
                "batch",
                "networking.k8s.io",
                "policy",
                "rbac.authorization.k8s.io",
                "storage.k8s.io",
                "apiextensions.k8s.io",
                "scheduling.k8s.io",
                "coordination.k8s.io",
                "node.k8s.io",
                "discovery.k8s.io",
            ]
        );
        for group in groups {
            let plurals: Vec<_> = builtin()
                .iter()
                .filter(|rt| rt.group == group)
                .map(|rt| rt.plural)
                .collect();
            let mut sorted = plurals.clone();
            sorted.sort();
            assert_eq!(plurals, sorted, "resources of {group:?} sorted");
        }
    }

    #[test]
    fn all_category_as_upstream() {
        let mut all: Vec<_> = builtin()
            .iter()
            .filter(|rt| rt.categories.contains(&"all"))
            .map(|rt| rt.plural)
            .collect();
        all.sort();
        assert_eq!(
            all,
            [
                "cronjobs",
                "daemonsets",
                "deployments",
                "horizontalpodautoscalers",
                "jobs",
                "pods",
                "replicasets",
                "replicationcontrollers",
                "services",
                "statefulsets",
            ]
        );
    }
}
