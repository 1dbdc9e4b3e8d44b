//! Patch metadata: how each field of an object takes a strategic merge patch.
//!
//! Upstream reads it from Go struct tags (`patchStrategy:"merge" patchMergeKey:"name"`) or from
//! the OpenAPI extensions `x-kubernetes-patch-strategy` / `x-kubernetes-patch-merge-key`. Here it
//! is a [`PatchMeta`] lookup by field path, and [`builtin_meta`] carries the tags of the kinds the
//! API server serves, copied from `k8s.io/api` `{core,apps,batch,autoscaling,policy,...}/v1`
//! `types.go` and `k8s.io/apimachinery` `pkg/apis/meta/v1/types.go`.

/// The `patchStrategy` of a field.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Strategy {
    /// No `patchStrategy` tag: a map merges key by key, a list is atomic (the patch's list
    /// replaces the original one).
    #[default]
    Default,
    /// `patchStrategy:"replace"`: the patch value replaces the field whole, maps included
    /// (PodDisruptionBudget `spec.selector`).
    Replace,
    /// `patchStrategy:"merge"`: list elements merge by the merge key (lists of maps) or by value
    /// (lists of primitives, a union).
    Merge,
    /// `patchStrategy:"retainKeys"` on a map field (Deployment `spec.strategy`): the patch may carry
    /// `$retainKeys`; otherwise like [`Strategy::Default`].
    RetainKeys,
    /// `patchStrategy:"merge,retainKeys"` on a list (PodSpec `volumes`): elements merge by key and
    /// each element may carry `$retainKeys`.
    MergeRetainKeys,
}

impl Strategy {
    /// Whether a list with this strategy merges element-wise instead of being replaced.
    pub fn merges_lists(self) -> bool {
        matches!(self, Strategy::Merge | Strategy::MergeRetainKeys)
    }

    /// Whether a map with this strategy is replaced whole instead of merged key by key.
    pub fn replaces_maps(self) -> bool {
        self == Strategy::Replace
    }

    /// Whether the field is tagged `retainKeys` (the patch may send a `$retainKeys` directive).
    pub fn retains_keys(self) -> bool {
        matches!(self, Strategy::RetainKeys | Strategy::MergeRetainKeys)
    }
}

/// How one field takes a patch: its strategy and, for lists of maps, the merge key.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct FieldMeta {
    pub strategy: Strategy,
    pub merge_key: Option<&'static str>,
}

impl FieldMeta {
    /// No tag: maps merge, lists are replaced.
    pub const DEFAULT: FieldMeta = FieldMeta {
        strategy: Strategy::Default,
        merge_key: None,
    };
    /// `patchStrategy:"replace"`.
    pub const REPLACE: FieldMeta = FieldMeta {
        strategy: Strategy::Replace,
        merge_key: None,
    };
    /// `patchStrategy:"retainKeys"` (a map field).
    pub const RETAIN_KEYS: FieldMeta = FieldMeta {
        strategy: Strategy::RetainKeys,
        merge_key: None,
    };
    /// `patchStrategy:"merge"` on a list of primitives (`finalizers`, `podCIDRs`).
    pub const MERGE_PRIMITIVES: FieldMeta = FieldMeta {
        strategy: Strategy::Merge,
        merge_key: None,
    };

    /// `patchStrategy:"merge" patchMergeKey:"<key>"`.
    pub const fn merge(key: &'static str) -> FieldMeta {
        FieldMeta {
            strategy: Strategy::Merge,
            merge_key: Some(key),
        }
    }

    /// `patchStrategy:"merge,retainKeys" patchMergeKey:"<key>"`.
    pub const fn merge_retain_keys(key: &'static str) -> FieldMeta {
        FieldMeta {
            strategy: Strategy::MergeRetainKeys,
            merge_key: Some(key),
        }
    }
}

/// Where a field's patch behaviour comes from.
///
/// `path` is the field's path inside the object, map keys only: list steps are transparent, so
/// the ports of a Deployment's containers are `["spec", "template", "spec", "containers",
/// "ports"]`. Fields the implementation knows nothing about answer [`FieldMeta::DEFAULT`].
pub trait PatchMeta {
    fn field(&self, path: &[&str]) -> FieldMeta;

    /// Whether the metadata describes a built-in kind, whose server-side apply schema also
    /// has the facts the patch tags lack (lists keyed by several fields, atomic selectors).
    fn is_builtin_kind(&self) -> bool {
        false
    }
}

/// Any `Fn(&[&str]) -> FieldMeta` is patch metadata (handy in tests and for CRD schemas).
impl<F: Fn(&[&str]) -> FieldMeta> PatchMeta for F {
    fn field(&self, path: &[&str]) -> FieldMeta {
        self(path)
    }
}

/// Metadata that knows no field: every map merges, every list is replaced (what a JSON merge
/// patch does, apart from the directives).
#[derive(Clone, Copy, Debug, Default)]
pub struct NoMeta;

impl PatchMeta for NoMeta {
    fn field(&self, _path: &[&str]) -> FieldMeta {
        FieldMeta::DEFAULT
    }
}

/// The compiled-in patch metadata of one built-in kind; see [`builtin_meta`].
#[derive(Clone, Debug, Default)]
pub struct BuiltinMeta {
    /// (dotted field path, metadata); paths are unique.
    fields: Vec<(String, FieldMeta)>,
    builtin: bool,
}

impl BuiltinMeta {
    /// Whether the kind is one whose Go types upstream compiles in. For any other kind upstream
    /// refuses strategic merge patches (415, "strategic merge patch format is not supported");
    /// the caller decides whether to do the same.
    pub fn is_builtin(&self) -> bool {
        self.builtin
    }

    /// The tagged fields, as dotted paths (`spec.template.spec.containers.ports`).
    pub fn fields(&self) -> impl Iterator<Item = (&str, FieldMeta)> + '_ {
        self.fields
            .iter()
            .map(|(path, meta)| (path.as_str(), *meta))
    }
}

impl PatchMeta for BuiltinMeta {
    fn is_builtin_kind(&self) -> bool {
        self.builtin
    }

    fn field(&self, path: &[&str]) -> FieldMeta {
        self.fields
            .iter()
            .find(|(dotted, _)| dotted.split('.').eq(path.iter().copied()))
            .map(|(_, meta)| *meta)
            .unwrap_or_default()
    }
}

/// Patch metadata for objects of `apiVersion` / `kind`.
///
/// Covers the kinds kubelab serves (and a few more built-ins with tagged fields). An unknown
/// kind (a custom resource) gets metadata with no fields at all, so maps merge and lists are
/// replaced, and [`BuiltinMeta::is_builtin`] is false.
pub fn builtin_meta(api_version: &str, kind: &str) -> BuiltinMeta {
    let mut b = Builder::default();
    let builtin = match (api_version, kind) {
        ("v1", "Pod") => {
            b.object_meta("metadata");
            b.pod_spec("spec");
            b.add("status.conditions", FieldMeta::merge("type"));
            b.add("status.podIPs", FieldMeta::merge("ip"));
            b.add("status.hostIPs", FieldMeta::merge("ip"));
            b.add(
                "status.resourceClaimStatuses",
                FieldMeta::merge_retain_keys("name"),
            );
            // containerStatuses, initContainerStatuses, ephemeralContainerStatuses: atomic.
            true
        }
        ("v1", "PodTemplate") => {
            b.object_meta("metadata");
            b.pod_template("template");
            true
        }
        ("v1", "ReplicationController") => {
            b.object_meta("metadata");
            b.pod_template("spec.template");
            b.add("status.conditions", FieldMeta::merge("type"));
            true
        }
        ("v1", "Service") => {
            b.object_meta("metadata");
            b.add("spec.ports", FieldMeta::merge("port"));
            b.add("status.conditions", FieldMeta::merge("type"));
            true
        }
        ("v1", "Node") => {
            b.object_meta("metadata");
            // spec.taints has no patchStrategy: atomic.
            b.add("spec.podCIDRs", FieldMeta::MERGE_PRIMITIVES);
            b.add("status.conditions", FieldMeta::merge("type"));
            b.add("status.addresses", FieldMeta::merge("type"));
            true
        }
        ("v1", "Namespace") | ("v1", "PersistentVolumeClaim") | ("v1", "ComponentStatus") => {
            b.object_meta("metadata");
            let conditions = if kind == "ComponentStatus" {
                "conditions"
            } else {
                "status.conditions"
            };
            b.add(conditions, FieldMeta::merge("type"));
            true
        }
        ("v1", "ServiceAccount") => {
            b.object_meta("metadata");
            b.add("secrets", FieldMeta::merge("name"));
            true
        }
        ("apps/v1", "Deployment") => {
            b.object_meta("metadata");
            b.add("spec.strategy", FieldMeta::RETAIN_KEYS);
            b.pod_template("spec.template");
            b.add("status.conditions", FieldMeta::merge("type"));
            true
        }
        ("apps/v1", "ReplicaSet") | ("apps/v1", "DaemonSet") | ("apps/v1", "StatefulSet") => {
            b.object_meta("metadata");
            // StatefulSet spec.volumeClaimTemplates has no patchStrategy: atomic.
            b.pod_template("spec.template");
            b.add("status.conditions", FieldMeta::merge("type"));
            true
        }
        ("batch/v1", "Job") => {
            b.object_meta("metadata");
            b.pod_template("spec.template");
            b.add("status.conditions", FieldMeta::merge("type"));
            true
        }
        ("batch/v1", "CronJob") => {
            b.object_meta("metadata");
            b.object_meta("spec.jobTemplate.metadata");
            b.pod_template("spec.jobTemplate.spec.template");
            true
        }
        ("autoscaling/v2", "HorizontalPodAutoscaler")
        | ("networking.k8s.io/v1", "ServiceCIDR")
        | ("flowcontrol.apiserver.k8s.io/v1", "FlowSchema")
        | ("flowcontrol.apiserver.k8s.io/v1", "PriorityLevelConfiguration") => {
            b.object_meta("metadata");
            b.add("status.conditions", FieldMeta::merge("type"));
            true
        }
        ("policy/v1", "PodDisruptionBudget") => {
            b.object_meta("metadata");
            b.add("spec.selector", FieldMeta::REPLACE);
            b.add("status.conditions", FieldMeta::merge("type"));
            true
        }
        ("storage.k8s.io/v1", "CSINode") => {
            b.object_meta("metadata");
            b.add("spec.drivers", FieldMeta::merge("name"));
            true
        }
        ("admissionregistration.k8s.io/v1", "ValidatingWebhookConfiguration")
        | ("admissionregistration.k8s.io/v1", "MutatingWebhookConfiguration") => {
            b.object_meta("metadata");
            b.add("webhooks", FieldMeta::merge("name"));
            b.add("webhooks.matchConditions", FieldMeta::merge("name"));
            true
        }
        ("admissionregistration.k8s.io/v1", "ValidatingAdmissionPolicy") => {
            b.object_meta("metadata");
            b.add("spec.matchConditions", FieldMeta::merge("name"));
            b.add("spec.variables", FieldMeta::merge("name"));
            true
        }
        (
            "v1",
            "ConfigMap" | "Secret" | "Endpoints" | "Event" | "LimitRange" | "ResourceQuota"
            | "PersistentVolume" | "Binding",
        )
        | ("apps/v1", "ControllerRevision")
        | ("autoscaling/v1", "HorizontalPodAutoscaler" | "Scale")
        | ("events.k8s.io/v1", "Event")
        | ("networking.k8s.io/v1", "Ingress" | "IngressClass" | "NetworkPolicy")
        | ("policy/v1", "Eviction")
        | (
            "rbac.authorization.k8s.io/v1",
            "Role" | "ClusterRole" | "RoleBinding" | "ClusterRoleBinding",
        )
        | ("storage.k8s.io/v1", "StorageClass")
        | ("apiextensions.k8s.io/v1", "CustomResourceDefinition")
        | ("scheduling.k8s.io/v1", "PriorityClass")
        | ("coordination.k8s.io/v1", "Lease")
        | ("node.k8s.io/v1", "RuntimeClass")
        | ("discovery.k8s.io/v1", "EndpointSlice") => {
            b.object_meta("metadata");
            true
        }
        _ => false,
    };
    BuiltinMeta {
        fields: b.0,
        builtin,
    }
}

#[derive(Default)]
struct Builder(Vec<(String, FieldMeta)>);

impl Builder {
    fn add(&mut self, path: &str, meta: FieldMeta) {
        self.0.push((path.to_string(), meta));
    }

    fn add_under(&mut self, prefix: &str, field: &str, meta: FieldMeta) {
        self.0.push((format!("{prefix}.{field}"), meta));
    }

    /// metav1.ObjectMeta.
    fn object_meta(&mut self, prefix: &str) {
        self.add_under(prefix, "finalizers", FieldMeta::MERGE_PRIMITIVES);
        self.add_under(prefix, "ownerReferences", FieldMeta::merge("uid"));
    }

    /// core/v1 PodTemplateSpec: ObjectMeta + PodSpec.
    fn pod_template(&mut self, prefix: &str) {
        self.object_meta(&format!("{prefix}.metadata"));
        self.pod_spec(&format!("{prefix}.spec"));
    }

    /// core/v1 PodSpec.
    fn pod_spec(&mut self, prefix: &str) {
        for containers in ["containers", "initContainers", "ephemeralContainers"] {
            self.add_under(prefix, containers, FieldMeta::merge("name"));
            // Container and EphemeralContainerCommon carry the same tags; resizePolicy,
            // resources.claims and lifecycle are atomic.
            let prefix = format!("{prefix}.{containers}");
            self.add_under(&prefix, "ports", FieldMeta::merge("containerPort"));
            self.add_under(&prefix, "env", FieldMeta::merge("name"));
            self.add_under(&prefix, "volumeMounts", FieldMeta::merge("mountPath"));
            self.add_under(&prefix, "volumeDevices", FieldMeta::merge("devicePath"));
        }
        self.add_under(prefix, "volumes", FieldMeta::merge_retain_keys("name"));
        self.add_under(prefix, "imagePullSecrets", FieldMeta::merge("name"));
        self.add_under(prefix, "hostAliases", FieldMeta::merge("ip"));
        self.add_under(
            prefix,
            "topologySpreadConstraints",
            FieldMeta::merge("topologyKey"),
        );
        self.add_under(prefix, "schedulingGates", FieldMeta::merge("name"));
        self.add_under(
            prefix,
            "resourceClaims",
            FieldMeta::merge_retain_keys("name"),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lookup(meta: &BuiltinMeta, dotted: &str) -> FieldMeta {
        let path: Vec<&str> = dotted.split('.').collect();
        meta.field(&path)
    }

    #[test]
    fn pod_template_fields_are_found_under_every_workload() {
        let cases = [
            ("apps/v1", "Deployment", "spec.template.spec"),
            ("apps/v1", "ReplicaSet", "spec.template.spec"),
            ("apps/v1", "StatefulSet", "spec.template.spec"),
            ("apps/v1", "DaemonSet", "spec.template.spec"),
            ("batch/v1", "Job", "spec.template.spec"),
            ("batch/v1", "CronJob", "spec.jobTemplate.spec.template.spec"),
            ("v1", "ReplicationController", "spec.template.spec"),
            ("v1", "PodTemplate", "template.spec"),
            ("v1", "Pod", "spec"),
        ];
        for (api_version, kind, spec) in cases {
            let meta = builtin_meta(api_version, kind);
            assert!(meta.is_builtin(), "{kind}");
            let at = |field: &str| lookup(&meta, &format!("{spec}.{field}"));
            assert_eq!(at("containers"), FieldMeta::merge("name"), "{kind}");
            assert_eq!(
                at("initContainers.ports"),
                FieldMeta::merge("containerPort")
            );
            assert_eq!(at("containers.env"), FieldMeta::merge("name"));
            assert_eq!(
                at("ephemeralContainers.volumeMounts"),
                FieldMeta::merge("mountPath")
            );
            assert_eq!(at("volumes"), FieldMeta::merge_retain_keys("name"));
            assert_eq!(at("containers.resizePolicy"), FieldMeta::DEFAULT);
            assert_eq!(at("tolerations"), FieldMeta::DEFAULT);
            assert_eq!(
                lookup(&meta, "metadata.finalizers"),
                FieldMeta::MERGE_PRIMITIVES
            );
        }
    }

    #[test]
    fn kind_specific_fields() {
        let deploy = builtin_meta("apps/v1", "Deployment");
        assert_eq!(lookup(&deploy, "spec.strategy"), FieldMeta::RETAIN_KEYS);
        assert_eq!(
            lookup(&deploy, "status.conditions"),
            FieldMeta::merge("type")
        );
        let svc = builtin_meta("v1", "Service");
        assert_eq!(lookup(&svc, "spec.ports"), FieldMeta::merge("port"));
        let node = builtin_meta("v1", "Node");
        assert_eq!(lookup(&node, "spec.taints"), FieldMeta::DEFAULT);
        assert_eq!(lookup(&node, "status.addresses"), FieldMeta::merge("type"));
        let pdb = builtin_meta("policy/v1", "PodDisruptionBudget");
        assert_eq!(lookup(&pdb, "spec.selector"), FieldMeta::REPLACE);
        let cm = builtin_meta("v1", "ConfigMap");
        assert!(cm.is_builtin());
        assert_eq!(
            lookup(&cm, "metadata.ownerReferences"),
            FieldMeta::merge("uid")
        );
        // The version matters: a Deployment is not a core/v1 kind.
        assert!(!builtin_meta("v1", "Deployment").is_builtin());
    }

    #[test]
    fn unknown_kinds_have_no_metadata() {
        let meta = builtin_meta("example.com/v1", "Widget");
        assert!(!meta.is_builtin());
        assert_eq!(meta.fields().count(), 0);
        assert_eq!(lookup(&meta, "metadata.finalizers"), FieldMeta::DEFAULT);
    }

    #[test]
    fn paths_are_unique() {
        for (api_version, kind) in [
            ("v1", "Pod"),
            ("apps/v1", "Deployment"),
            ("batch/v1", "CronJob"),
        ] {
            let meta = builtin_meta(api_version, kind);
            let mut paths: Vec<&str> = meta.fields().map(|(p, _)| p).collect();
            let n = paths.len();
            paths.sort();
            paths.dedup();
            assert_eq!(paths.len(), n, "{kind}");
        }
    }
}
