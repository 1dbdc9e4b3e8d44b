//! Which k8s-openapi type describes each kind the API server serves or accepts.

use k8s_openapi::api;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1 as apiextensions;
use schemars::{JsonSchema, SchemaGenerator};

/// Adds the schema of `T` (and everything it references) to the generator; returns its name.
fn add<T: JsonSchema>(generator: &mut SchemaGenerator) -> String {
    generator.subschema_for::<T>();
    T::schema_name().into_owned()
}

macro_rules! kinds {
    ($( ($group:literal, $version:literal, $kind:literal) => $ty:ty, )*) => {
        /// Adds the schema of `group`/`version`/`kind` to the generator and returns its name
        /// (`io.k8s.api.core.v1.ConfigMap`), or `None` for a kind without a schema.
        pub(crate) fn add_kind(
            generator: &mut SchemaGenerator,
            group: &str,
            version: &str,
            kind: &str,
        ) -> Option<String> {
            match (group, version, kind) {
                $( ($group, $version, $kind) => Some(add::<$ty>(generator)), )*
                _ => None,
            }
        }
    };
}

kinds! {
    ("", "v1", "Binding") => api::core::v1::Binding,
    ("", "v1", "ConfigMap") => api::core::v1::ConfigMap,
    ("", "v1", "Endpoints") => api::core::v1::Endpoints,
    ("", "v1", "Event") => api::core::v1::Event,
    ("", "v1", "LimitRange") => api::core::v1::LimitRange,
    ("", "v1", "Namespace") => api::core::v1::Namespace,
    ("", "v1", "Node") => api::core::v1::Node,
    ("", "v1", "PersistentVolume") => api::core::v1::PersistentVolume,
    ("", "v1", "PersistentVolumeClaim") => api::core::v1::PersistentVolumeClaim,
    ("", "v1", "Pod") => api::core::v1::Pod,
    ("", "v1", "PodTemplate") => api::core::v1::PodTemplate,
    ("", "v1", "ReplicationController") => api::core::v1::ReplicationController,
    ("", "v1", "ResourceQuota") => api::core::v1::ResourceQuota,
    ("", "v1", "Secret") => api::core::v1::Secret,
    ("", "v1", "Service") => api::core::v1::Service,
    ("", "v1", "ServiceAccount") => api::core::v1::ServiceAccount,
    ("apps", "v1", "ControllerRevision") => api::apps::v1::ControllerRevision,
    ("apps", "v1", "DaemonSet") => api::apps::v1::DaemonSet,
    ("apps", "v1", "Deployment") => api::apps::v1::Deployment,
    ("apps", "v1", "ReplicaSet") => api::apps::v1::ReplicaSet,
    ("apps", "v1", "StatefulSet") => api::apps::v1::StatefulSet,
    ("events.k8s.io", "v1", "Event") => api::events::v1::Event,
    ("authentication.k8s.io", "v1", "TokenRequest") => api::authentication::v1::TokenRequest,
    ("authentication.k8s.io", "v1", "SelfSubjectReview") => api::authentication::v1::SelfSubjectReview,
    ("authentication.k8s.io", "v1", "TokenReview") => api::authentication::v1::TokenReview,
    ("authorization.k8s.io", "v1", "LocalSubjectAccessReview") => api::authorization::v1::LocalSubjectAccessReview,
    ("authorization.k8s.io", "v1", "SelfSubjectAccessReview") => api::authorization::v1::SelfSubjectAccessReview,
    ("authorization.k8s.io", "v1", "SelfSubjectRulesReview") => api::authorization::v1::SelfSubjectRulesReview,
    ("authorization.k8s.io", "v1", "SubjectAccessReview") => api::authorization::v1::SubjectAccessReview,
    ("autoscaling", "v1", "Scale") => api::autoscaling::v1::Scale,
    ("autoscaling", "v2", "HorizontalPodAutoscaler") => api::autoscaling::v2::HorizontalPodAutoscaler,
    ("batch", "v1", "CronJob") => api::batch::v1::CronJob,
    ("batch", "v1", "Job") => api::batch::v1::Job,
    ("networking.k8s.io", "v1", "Ingress") => api::networking::v1::Ingress,
    ("networking.k8s.io", "v1", "IngressClass") => api::networking::v1::IngressClass,
    ("networking.k8s.io", "v1", "NetworkPolicy") => api::networking::v1::NetworkPolicy,
    ("policy", "v1", "Eviction") => api::policy::v1::Eviction,
    ("policy", "v1", "PodDisruptionBudget") => api::policy::v1::PodDisruptionBudget,
    ("rbac.authorization.k8s.io", "v1", "ClusterRole") => api::rbac::v1::ClusterRole,
    ("rbac.authorization.k8s.io", "v1", "ClusterRoleBinding") => api::rbac::v1::ClusterRoleBinding,
    ("rbac.authorization.k8s.io", "v1", "Role") => api::rbac::v1::Role,
    ("rbac.authorization.k8s.io", "v1", "RoleBinding") => api::rbac::v1::RoleBinding,
    ("storage.k8s.io", "v1", "StorageClass") => api::storage::v1::StorageClass,
    ("apiextensions.k8s.io", "v1", "CustomResourceDefinition") => apiextensions::CustomResourceDefinition,
    ("scheduling.k8s.io", "v1", "PriorityClass") => api::scheduling::v1::PriorityClass,
    ("coordination.k8s.io", "v1", "Lease") => api::coordination::v1::Lease,
    ("node.k8s.io", "v1", "RuntimeClass") => api::node::v1::RuntimeClass,
    ("discovery.k8s.io", "v1", "EndpointSlice") => api::discovery::v1::EndpointSlice,
}

/// The `meta/v1` types every group-version document carries, as upstream's do.
pub(crate) fn add_meta_types(generator: &mut SchemaGenerator) -> MetaNames {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1 as meta;
    MetaNames {
        status: add::<meta::Status>(generator),
        delete_options: add::<meta::DeleteOptions>(generator),
        patch: add::<meta::Patch>(generator),
        watch_event: add::<meta::WatchEvent<()>>(generator),
        list_meta: add::<meta::ListMeta>(generator),
    }
}

/// Schema names of the `meta/v1` types.
pub(crate) struct MetaNames {
    pub status: String,
    pub delete_options: String,
    pub patch: String,
    pub watch_event: String,
    pub list_meta: String,
}
