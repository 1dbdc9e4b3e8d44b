//! Server-side Table columns and cells (`Accept: application/json;as=Table;g=meta.k8s.io;v=v1`),
//! following upstream kube-apiserver 1.32's printers (`pkg/printers/internalversion`). The API
//! server always renders the wide form: [`cells`] returns a cell for every column, and kubectl
//! hides the `priority > 0` ones unless `-o wide`.
//!
//! Kinds without an upstream printer (roles, clusterroles, limitranges, CRDs, ...) get upstream's
//! default Table: `Name` and `Created At` (an RFC 3339 date).

use serde_json::{json, Value};

use crate::catalog::ResourceType;
use crate::json as j;
use crate::labels;

/// One `columnDefinitions` entry of a `meta.k8s.io/v1` Table.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ColumnDefinition {
    pub name: &'static str,
    #[serde(rename = "type")]
    pub type_: &'static str,
    pub format: &'static str,
    pub description: &'static str,
    pub priority: i32,
}

const NAME_DESC: &str = "Name must be unique within a namespace. Is required when creating resources, although some resources may allow a client to request the generation of an appropriate name automatically. Name is primarily intended for creation idempotence and configuration definition. Cannot be updated. More info: https://kubernetes.io/docs/concepts/overview/working-with-objects/names#names";
const AGE_DESC: &str = "CreationTimestamp is a timestamp representing the server time when this object was created. It is not guaranteed to be set in happens-before order across separate operations. Clients may not set this value. It is represented in RFC3339 form and is in UTC.\n\nPopulated by the system. Read-only. Null for lists. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#metadata";
const CONTAINERS_DESC: &str = "Names of each container in the template.";
const IMAGES_DESC: &str = "Images referenced by each container in the template.";
const SELECTOR_DESC: &str = "A label query over pods that should match the replica count. It must match the pod template's labels. More info: https://kubernetes.io/docs/concepts/overview/working-with-objects/labels/#label-selectors";

const fn col(
    name: &'static str,
    type_: &'static str,
    description: &'static str,
) -> ColumnDefinition {
    ColumnDefinition {
        name,
        type_,
        format: "",
        description,
        priority: 0,
    }
}

const fn wide(
    name: &'static str,
    type_: &'static str,
    description: &'static str,
) -> ColumnDefinition {
    ColumnDefinition {
        name,
        type_,
        format: "",
        description,
        priority: 1,
    }
}

const NAME: ColumnDefinition = ColumnDefinition {
    name: "Name",
    type_: "string",
    format: "name",
    description: NAME_DESC,
    priority: 0,
};
const AGE: ColumnDefinition = col("Age", "string", AGE_DESC);
const CONTAINERS: ColumnDefinition = wide("Containers", "string", CONTAINERS_DESC);
const IMAGES: ColumnDefinition = wide("Images", "string", IMAGES_DESC);
const SELECTOR: ColumnDefinition = wide("Selector", "string", SELECTOR_DESC);

/// The columns of `rt`'s Table, in order.
pub fn columns(rt: &ResourceType) -> Vec<ColumnDefinition> {
    match (rt.group, rt.kind) {
        ("", "Pod") => vec![
            NAME,
            col("Ready", "string", "The aggregate readiness state of this pod for accepting traffic."),
            col("Status", "string", "The aggregate status of the containers in this pod."),
            col("Restarts", "string", "The number of times the containers in this pod have been restarted and when the last container in this pod has restarted."),
            AGE,
            wide("IP", "string", "podIP address allocated to the pod. Routable at least within the cluster. Empty if not yet allocated."),
            wide("Node", "string", "NodeName indicates in which node this pod is scheduled. If empty, this pod is a candidate for scheduling by the scheduler defined in schedulerName."),
            wide("Nominated Node", "string", "nominatedNodeName is set only when this pod preempts other pods on the node, but it cannot be scheduled right away as preemption victims receive their graceful termination periods."),
            wide("Readiness Gates", "string", "If specified, all readiness gates will be evaluated for pod readiness."),
        ],
        ("", "PodTemplate") => vec![
            NAME,
            col("Containers", "string", CONTAINERS_DESC),
            col("Images", "string", IMAGES_DESC),
            col("Pod Labels", "string", "The labels for the pod template."),
        ],
        ("policy", "PodDisruptionBudget") => vec![
            NAME,
            col("Min Available", "string", "The minimum number of pods that must be available."),
            col("Max Unavailable", "string", "The maximum number of pods that may be unavailable."),
            col("Allowed Disruptions", "integer", "Calculated number of pods that may be disrupted at this time."),
            AGE,
        ],
        ("", "ReplicationController") | ("apps", "ReplicaSet") => vec![
            NAME,
            col("Desired", "integer", "Replicas is the number of desired replicas."),
            col("Current", "integer", "Replicas is the most recently observed number of replicas."),
            col("Ready", "integer", "The number of ready replicas for this replica set."),
            AGE,
            CONTAINERS,
            IMAGES,
            SELECTOR,
        ],
        ("apps", "DaemonSet") => vec![
            NAME,
            col("Desired", "integer", "The total number of nodes that should be running the daemon pod (including nodes correctly running the daemon pod)."),
            col("Current", "integer", "The number of nodes that are running at least 1 daemon pod and are supposed to run the daemon pod."),
            col("Ready", "integer", "The number of nodes that should be running the daemon pod and have one or more of the daemon pod running and ready."),
            col("Up-to-date", "integer", "The total number of nodes that are running updated daemon pod"),
            col("Available", "integer", "The number of nodes that should be running the daemon pod and have one or more of the daemon pod running and available (ready for at least spec.minReadySeconds)"),
            col("Node Selector", "string", "NodeSelector is a selector which must be true for the pod to fit on a node."),
            AGE,
            CONTAINERS,
            IMAGES,
            SELECTOR,
        ],
        ("batch", "Job") => vec![
            NAME,
            col("Status", "string", "Status of the job."),
            col("Completions", "string", "The number of pods which reached phase Succeeded."),
            col("Duration", "string", "Time required to complete the job."),
            AGE,
            CONTAINERS,
            IMAGES,
            SELECTOR,
        ],
        ("batch", "CronJob") => vec![
            NAME,
            col("Schedule", "string", "The schedule in Cron format, see https://en.wikipedia.org/wiki/Cron."),
            col("Timezone", "string", "The time zone name for the given schedule, see https://en.wikipedia.org/wiki/List_of_tz_database_time_zones."),
            col("Suspend", "boolean", "This flag tells the controller to suspend subsequent executions, it does not apply to already started executions."),
            col("Active", "integer", "A list of pointers to currently running jobs."),
            col("Last Schedule", "string", "Information when was the last time the job was successfully scheduled."),
            AGE,
            CONTAINERS,
            IMAGES,
            SELECTOR,
        ],
        ("", "Service") => vec![
            NAME,
            col("Type", "string", "type determines how the Service is exposed. Defaults to ClusterIP."),
            col("Cluster-IP", "string", "clusterIP is the IP address of the service and is usually assigned randomly."),
            col("External-IP", "string", "externalIPs is a list of IP addresses for which nodes in the cluster will also accept traffic for this service."),
            col("Port(s)", "string", "The list of ports that are exposed by this service."),
            AGE,
            wide("Selector", "string", "Route service traffic to pods with label keys and values matching this selector."),
        ],
        ("networking.k8s.io", "Ingress") => vec![
            NAME,
            col("Class", "string", "The name of the IngressClass resource that should be used for additional configuration"),
            col("Hosts", "string", "Hosts that incoming requests are matched against before the ingress rule"),
            col("Address", "string", "Address is a list containing ingress points for the load-balancer"),
            col("Ports", "string", "Ports of TLS configurations that open"),
            AGE,
        ],
        ("networking.k8s.io", "IngressClass") => vec![
            NAME,
            col("Controller", "string", "Controller that is responsible for handling this class"),
            col("Parameters", "string", "A reference to a resource with additional parameters"),
            AGE,
        ],
        ("apps", "StatefulSet") => vec![
            NAME,
            col("Ready", "string", "Number of the pod with ready state"),
            AGE,
            CONTAINERS,
            IMAGES,
        ],
        ("", "Endpoints") => vec![
            NAME,
            col("Endpoints", "string", "The set of all endpoints is the union of all subsets."),
            AGE,
        ],
        ("", "Node") => vec![
            NAME,
            col("Status", "string", "The status of the node"),
            col("Roles", "string", "The roles of the node"),
            AGE,
            col("Version", "string", "Kubelet Version reported by the node."),
            wide("Internal-IP", "string", "List of addresses reachable to the node."),
            wide("External-IP", "string", "List of addresses reachable to the node."),
            wide("OS-Image", "string", "OS Image reported by the node from /etc/os-release (e.g. Debian GNU/Linux 7 (wheezy))."),
            wide("Kernel-Version", "string", "Kernel Version reported by the node from 'uname -r' (e.g. 3.16.0-0.bpo.4-amd64)."),
            wide("Container-Runtime", "string", "ContainerRuntime Version reported by the node through runtime remote API (e.g. containerd://1.4.2)."),
        ],
        ("", "Event") | ("events.k8s.io", "Event") => vec![
            col("Last Seen", "string", "The time at which the most recent occurrence of this event was recorded."),
            col("Type", "string", "Type of this event (Normal, Warning), new types could be added in the future"),
            col("Reason", "string", "This should be a short, machine understandable string that gives the reason for the transition into the object's current status."),
            col("Object", "string", "The object that this event is about."),
            wide("Subobject", "string", "If referring to a piece of an object instead of an entire object, this string should contain a valid JSON/Go field access statement, such as desiredState.manifest.containers[2]."),
            wide("Source", "string", "The component reporting this event. Should be a short machine understandable string."),
            col("Message", "string", "A human-readable description of the status of this operation."),
            wide("First Seen", "string", "The time at which the event was first recorded. (Time of server receipt is in TypeMeta.)"),
            wide("Count", "string", "The number of times this event has occurred."),
            ColumnDefinition {
                priority: 1,
                ..NAME
            },
        ],
        ("", "Namespace") => vec![NAME, col("Status", "string", "The status of the namespace"), AGE],
        ("", "Secret") => vec![
            NAME,
            col("Type", "string", "Used to facilitate programmatic handling of secret data."),
            col("Data", "string", "Data contains the secret data."),
            AGE,
        ],
        ("", "ServiceAccount") => vec![
            NAME,
            col("Secrets", "string", "Secrets is a list of the secrets in the same namespace that pods running using this ServiceAccount are allowed to use."),
            AGE,
        ],
        ("", "PersistentVolume") => vec![
            NAME,
            col("Capacity", "string", "capacity is the description of the persistent volume's resources and capacity."),
            col("Access Modes", "string", "accessModes contains all ways the volume can be mounted."),
            col("Reclaim Policy", "string", "persistentVolumeReclaimPolicy defines what happens to a persistent volume when released from its claim."),
            col("Status", "string", "phase indicates if a volume is available, bound to a claim, or released by a claim."),
            col("Claim", "string", "claimRef is part of a bi-directional binding between PersistentVolume and PersistentVolumeClaim."),
            col("StorageClass", "string", "StorageClass of the pv"),
            col("VolumeAttributesClass", "string", "VolumeAttributesClass of the pv"),
            col("Reason", "string", "reason is a brief CamelCase string that describes any failure and is meant for machine parsing and tidy display in the CLI."),
            AGE,
            wide("VolumeMode", "string", "volumeMode defines if a volume is intended to be used with a formatted filesystem or to remain in raw block state."),
        ],
        ("", "PersistentVolumeClaim") => vec![
            NAME,
            col("Status", "string", "phase represents the current phase of PersistentVolumeClaim."),
            col("Volume", "string", "volumeName is the binding reference to the PersistentVolume backing this claim."),
            col("Capacity", "string", "capacity represents the actual resources of the underlying volume."),
            col("Access Modes", "string", "accessModes contains the actual access modes the volume backing the PVC has."),
            col("StorageClass", "string", "StorageClass of the pvc"),
            col("VolumeAttributesClass", "string", "VolumeAttributesClass of the pvc"),
            AGE,
            wide("VolumeMode", "string", "volumeMode defines what type of volume is required by the claim."),
        ],
        ("apps", "Deployment") => vec![
            NAME,
            col("Ready", "string", "Number of the pod with ready state"),
            col("Up-to-date", "string", "Total number of non-terminated pods targeted by this deployment that have the desired template spec."),
            col("Available", "string", "Total number of available pods (ready for at least minReadySeconds) targeted by this deployment."),
            AGE,
            CONTAINERS,
            IMAGES,
            wide("Selector", "string", "Label selector for pods. Existing ReplicaSets whose pods are selected by this will be the ones affected by this deployment."),
        ],
        ("autoscaling", "HorizontalPodAutoscaler") => vec![
            NAME,
            col("Reference", "string", "reference to scaled resource; horizontal pod autoscaler will learn the current resource consumption and will set the desired number of pods by using its Scale subresource."),
            col("Targets", "string", "metrics contains the specifications for which to use to calculate the desired replica count."),
            col("MinPods", "string", "minReplicas is the lower limit for the number of replicas to which the autoscaler can scale down."),
            col("MaxPods", "string", "maxReplicas is the upper limit for the number of replicas to which the autoscaler can scale up."),
            col("Replicas", "string", "currentReplicas is current number of replicas of pods managed by this autoscaler."),
            AGE,
        ],
        ("", "ConfigMap") => vec![
            NAME,
            col("Data", "string", "Data contains the configuration data."),
            AGE,
        ],
        ("networking.k8s.io", "NetworkPolicy") => vec![
            NAME,
            col("Pod-Selector", "string", "Selects the pods to which this NetworkPolicy object applies."),
            AGE,
        ],
        ("rbac.authorization.k8s.io", "RoleBinding") => vec![
            NAME,
            col("Role", "string", "RoleRef can reference a Role in the current namespace or a ClusterRole in the global namespace."),
            AGE,
            wide("Users", "string", "Users in the roleBinding"),
            wide("Groups", "string", "Groups in the roleBinding"),
            wide("ServiceAccounts", "string", "ServiceAccounts in the roleBinding"),
        ],
        ("rbac.authorization.k8s.io", "ClusterRoleBinding") => vec![
            NAME,
            col("Role", "string", "RoleRef can only reference a ClusterRole in the global namespace."),
            AGE,
            wide("Users", "string", "Users in the clusterRoleBinding"),
            wide("Groups", "string", "Groups in the clusterRoleBinding"),
            wide("ServiceAccounts", "string", "ServiceAccounts in the clusterRoleBinding"),
        ],
        ("coordination.k8s.io", "Lease") => vec![
            NAME,
            col("Holder", "string", "holderIdentity contains the identity of the holder of a current lease."),
            AGE,
        ],
        ("storage.k8s.io", "StorageClass") => vec![
            NAME,
            col("Provisioner", "string", "provisioner indicates the type of the provisioner."),
            col("ReclaimPolicy", "string", "reclaimPolicy controls the reclaimPolicy for dynamically provisioned PersistentVolumes of this storage class."),
            col("VolumeBindingMode", "string", "volumeBindingMode indicates how PersistentVolumeClaims should be provisioned and bound."),
            col("AllowVolumeExpansion", "string", "allowVolumeExpansion shows whether the storage class allow volume expand."),
            AGE,
        ],
        ("apps", "ControllerRevision") => vec![
            NAME,
            col("Controller", "string", "Controller of the object"),
            col("Revision", "string", "Revision indicates the revision of the state represented by Data."),
            AGE,
        ],
        ("", "ResourceQuota") => vec![
            NAME,
            col("Request", "string", "Request represents a minimum amount of cpu/memory that a container may consume."),
            col("Limit", "string", "Limits control the maximum amount of cpu/memory that a container may use independent of contention on the node."),
            AGE,
        ],
        ("scheduling.k8s.io", "PriorityClass") => vec![
            NAME,
            col("Value", "integer", "value represents the integer value of this priority class."),
            col("Global-Default", "boolean", "globalDefault specifies whether this PriorityClass should be considered as the default priority for pods that do not have any priority class."),
            AGE,
            col("PreemptionPolicy", "string", "preemptionPolicy is the Policy for preempting pods with lower priority."),
        ],
        ("node.k8s.io", "RuntimeClass") => vec![
            NAME,
            col("Handler", "string", "handler specifies the underlying runtime and configuration that the CRI implementation will use to handle pods of this class."),
            AGE,
        ],
        ("discovery.k8s.io", "EndpointSlice") => vec![
            NAME,
            col("AddressType", "string", "addressType specifies the type of address carried by this EndpointSlice."),
            col("Ports", "string", "ports specifies the list of network ports exposed by each endpoint in this slice."),
            col("Endpoints", "string", "endpoints is a list of unique endpoints in this slice."),
            AGE,
        ],
        _ => vec![NAME, col("Created At", "date", AGE_DESC)],
    }
}

/// The cells of one row for `obj`, one per column of [`columns`] (wide included). `now` is the
/// reference for ages and durations.
pub fn cells(rt: &ResourceType, obj: &Value, now: jiff::Timestamp) -> Vec<Value> {
    let p = Printer { obj, now };
    match (rt.group, rt.kind) {
        ("", "Pod") => p.pod(),
        ("", "PodTemplate") => p.pod_template(),
        ("policy", "PodDisruptionBudget") => p.pdb(),
        ("", "ReplicationController") => p.replication_controller(),
        ("apps", "ReplicaSet") => p.replica_set(),
        ("apps", "DaemonSet") => p.daemon_set(),
        ("batch", "Job") => p.job(),
        ("batch", "CronJob") => p.cron_job(),
        ("", "Service") => p.service(),
        ("networking.k8s.io", "Ingress") => p.ingress(),
        ("networking.k8s.io", "IngressClass") => p.ingress_class(),
        ("apps", "StatefulSet") => p.stateful_set(),
        ("", "Endpoints") => vec![p.name(), json!(format_endpoints(obj)), p.age()],
        ("", "Node") => p.node(),
        ("", "Event") | ("events.k8s.io", "Event") => p.event(),
        ("", "Namespace") => vec![p.name(), p.str(&["status", "phase"]), p.age()],
        ("", "Secret") => vec![
            p.name(),
            p.str(&["type"]),
            json!(j::len_at(obj, &["data"])),
            p.age(),
        ],
        ("", "ServiceAccount") => vec![p.name(), json!(j::len_at(obj, &["secrets"])), p.age()],
        ("", "PersistentVolume") => p.persistent_volume(),
        ("", "PersistentVolumeClaim") => p.persistent_volume_claim(),
        ("apps", "Deployment") => p.deployment(),
        ("autoscaling", "HorizontalPodAutoscaler") => p.hpa(),
        ("", "ConfigMap") => vec![
            p.name(),
            json!(j::len_at(obj, &["data"]) + j::len_at(obj, &["binaryData"])),
            p.age(),
        ],
        ("networking.k8s.io", "NetworkPolicy") => vec![
            p.name(),
            json!(labels::format_label_selector(
                j::get(obj, &["spec", "podSelector"]).unwrap_or(&json!({}))
            )),
            p.age(),
        ],
        ("rbac.authorization.k8s.io", "RoleBinding" | "ClusterRoleBinding") => p.role_binding(),
        ("coordination.k8s.io", "Lease") => {
            vec![p.name(), p.str(&["spec", "holderIdentity"]), p.age()]
        }
        ("storage.k8s.io", "StorageClass") => p.storage_class(),
        ("apps", "ControllerRevision") => p.controller_revision(),
        ("", "ResourceQuota") => p.resource_quota(),
        ("scheduling.k8s.io", "PriorityClass") => vec![
            p.name(),
            json!(j::i64_at(obj, &["value"]).unwrap_or(0)),
            json!(j::bool_at(obj, &["globalDefault"]).unwrap_or(false)),
            p.age(),
            p.str(&["preemptionPolicy"]),
        ],
        ("node.k8s.io", "RuntimeClass") => vec![p.name(), p.str(&["handler"]), p.age()],
        ("discovery.k8s.io", "EndpointSlice") => p.endpoint_slice(),
        _ => {
            let created = j::timestamp_at(obj, &["metadata", "creationTimestamp"])
                .map(|t| t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string())
                .unwrap_or_else(|| "0001-01-01T00:00:00Z".to_string());
            vec![p.name(), json!(created)]
        }
    }
}

/// Upstream `duration.HumanDuration`: `5s`, `119s`, `2m3s`, `10m`, `3h4m`, `47h`, `2d1h`,
/// `8d`, `2y1d`, `8y`; `0s` for up to 2s in the future (clock skew), `<invalid>` beyond.
pub fn human_duration(d: jiff::SignedDuration) -> String {
    let seconds = d.as_secs();
    if seconds < -1 {
        return "<invalid>".into();
    } else if seconds < 0 {
        return "0s".into();
    } else if seconds < 60 * 2 {
        return format!("{seconds}s");
    }
    let minutes = seconds / 60;
    if minutes < 10 {
        let s = seconds % 60;
        if s == 0 {
            return format!("{minutes}m");
        }
        return format!("{minutes}m{s}s");
    } else if minutes < 60 * 3 {
        return format!("{minutes}m");
    }
    let hours = seconds / 3600;
    if hours < 8 {
        let m = minutes % 60;
        if m == 0 {
            return format!("{hours}h");
        }
        return format!("{hours}h{m}m");
    } else if hours < 48 {
        return format!("{hours}h");
    } else if hours < 24 * 8 {
        let h = hours % 24;
        if h == 0 {
            return format!("{}d", hours / 24);
        }
        return format!("{}d{h}h", hours / 24);
    } else if hours < 24 * 365 * 2 {
        return format!("{}d", hours / 24);
    } else if hours < 24 * 365 * 8 {
        let dy = (hours / 24) % 365;
        if dy == 0 {
            return format!("{}y", hours / 24 / 365);
        }
        return format!("{}y{dy}d", hours / 24 / 365);
    }
    format!("{}y", hours / 24 / 365)
}

/// [`human_duration`] of a number of seconds.
pub fn human_duration_secs(seconds: i64) -> String {
    human_duration(jiff::SignedDuration::from_secs(seconds))
}

struct Printer<'a> {
    obj: &'a Value,
    now: jiff::Timestamp,
}

impl Printer<'_> {
    fn name(&self) -> Value {
        json!(j::string(self.obj, &["metadata", "name"]))
    }

    fn str(&self, path: &[&str]) -> Value {
        json!(j::string(self.obj, path))
    }

    fn int(&self, path: &[&str]) -> Value {
        json!(j::i64_at(self.obj, path).unwrap_or(0))
    }

    fn age(&self) -> Value {
        json!(self.since(j::timestamp_at(
            self.obj,
            &["metadata", "creationTimestamp"]
        )))
    }

    /// `translateTimestampSince`: `<unknown>` for a missing timestamp.
    fn since(&self, t: Option<jiff::Timestamp>) -> String {
        match t {
            Some(t) => human_duration(self.now.duration_since(t)),
            None => "<unknown>".into(),
        }
    }

    fn deleting(&self) -> bool {
        j::get(self.obj, &["metadata", "deletionTimestamp"]).is_some_and(|v| !v.is_null())
    }

    fn template_containers(&self, spec_path: &[&str]) -> (Value, Value) {
        let mut path = spec_path.to_vec();
        path.push("containers");
        let (names, images) = layout_containers(j::array(self.obj, &path));
        (json!(names), json!(images))
    }

    fn pod(&self) -> Vec<Value> {
        let obj = self.obj;
        let phase = j::string(obj, &["status", "phase"]);
        let mut reason = phase.to_string();
        let status_reason = j::string(obj, &["status", "reason"]);
        if !status_reason.is_empty() {
            reason = status_reason.to_string();
        }
        let conditions = j::array(obj, &["status", "conditions"]);
        for c in conditions {
            if j::string(c, &["type"]) == "PodScheduled"
                && j::string(c, &["reason"]) == "SchedulingGated"
            {
                reason = "SchedulingGated".into();
            }
        }

        let init_specs = j::array(obj, &["spec", "initContainers"]);
        let is_restartable_init = |name: &str| {
            init_specs.iter().any(|c| {
                j::string(c, &["name"]) == name && j::string(c, &["restartPolicy"]) == "Always"
            })
        };
        let total = j::array(obj, &["spec", "containers"]).len()
            + init_specs
                .iter()
                .filter(|c| j::string(c, &["restartPolicy"]) == "Always")
                .count();
        let mut ready = 0usize;
        let mut restarts = 0i64;
        let mut sidecar_restarts = 0i64;
        let mut last_restart: Option<jiff::Timestamp> = None;
        let mut last_sidecar_restart: Option<jiff::Timestamp> = None;
        let later = |cur: Option<jiff::Timestamp>, t: Option<jiff::Timestamp>| match (cur, t) {
            (Some(a), Some(b)) if b > a => Some(b),
            (None, Some(b)) => Some(b),
            (a, _) => a,
        };

        let mut initializing = false;
        let init_statuses = j::array(obj, &["status", "initContainerStatuses"]);
        for (i, c) in init_statuses.iter().enumerate() {
            let count = j::i64_at(c, &["restartCount"]).unwrap_or(0);
            restarts += count;
            let finished = j::timestamp_at(c, &["lastState", "terminated", "finishedAt"]);
            if j::get(c, &["lastState", "terminated"]).is_some() {
                last_restart = later(last_restart, finished);
            }
            let name = j::string(c, &["name"]);
            let restartable = is_restartable_init(name);
            if restartable {
                sidecar_restarts += count;
                if j::get(c, &["lastState", "terminated"]).is_some() {
                    last_sidecar_restart = later(last_sidecar_restart, finished);
                }
            }
            let terminated = j::object(c, &["state", "terminated"]);
            let waiting_reason = j::str_at(c, &["state", "waiting", "reason"]);
            let exit_code = j::i64_at(c, &["state", "terminated", "exitCode"]).unwrap_or(0);
            if terminated.is_some() && exit_code == 0 {
                continue;
            }
            if restartable && j::bool_at(c, &["started"]) == Some(true) {
                if j::bool_at(c, &["ready"]) == Some(true) {
                    ready += 1;
                }
                continue;
            }
            if terminated.is_some() {
                let r = j::string(c, &["state", "terminated", "reason"]);
                let signal = j::i64_at(c, &["state", "terminated", "signal"]).unwrap_or(0);
                reason = if !r.is_empty() {
                    format!("Init:{r}")
                } else if signal != 0 {
                    format!("Init:Signal:{signal}")
                } else {
                    format!("Init:ExitCode:{exit_code}")
                };
            } else if let Some(w) =
                waiting_reason.filter(|w| !w.is_empty() && *w != "PodInitializing")
            {
                reason = format!("Init:{w}");
            } else {
                reason = format!("Init:{i}/{}", init_specs.len());
            }
            initializing = true;
            break;
        }

        let initialized = conditions
            .iter()
            .find(|c| j::string(c, &["type"]) == "Initialized")
            .is_some_and(|c| j::string(c, &["status"]) == "True");
        if !initializing || initialized {
            restarts = sidecar_restarts;
            last_restart = last_sidecar_restart;
            let mut has_running = false;
            for c in j::array(obj, &["status", "containerStatuses"]).iter().rev() {
                restarts += j::i64_at(c, &["restartCount"]).unwrap_or(0);
                if j::get(c, &["lastState", "terminated"]).is_some() {
                    last_restart = later(
                        last_restart,
                        j::timestamp_at(c, &["lastState", "terminated", "finishedAt"]),
                    );
                }
                let waiting = j::string(c, &["state", "waiting", "reason"]);
                let terminated = j::object(c, &["state", "terminated"]);
                let term_reason = j::string(c, &["state", "terminated", "reason"]);
                if !waiting.is_empty() {
                    reason = waiting.to_string();
                } else if terminated.is_some() && !term_reason.is_empty() {
                    reason = term_reason.to_string();
                } else if terminated.is_some() {
                    let signal = j::i64_at(c, &["state", "terminated", "signal"]).unwrap_or(0);
                    let code = j::i64_at(c, &["state", "terminated", "exitCode"]).unwrap_or(0);
                    reason = if signal != 0 {
                        format!("Signal:{signal}")
                    } else {
                        format!("ExitCode:{code}")
                    };
                } else if j::bool_at(c, &["ready"]) == Some(true)
                    && j::object(c, &["state", "running"]).is_some()
                {
                    has_running = true;
                    ready += 1;
                }
            }
            if reason == "Completed" && has_running {
                let pod_ready = conditions.iter().any(|c| {
                    j::string(c, &["type"]) == "Ready" && j::string(c, &["status"]) == "True"
                });
                reason = if pod_ready { "Running" } else { "NotReady" }.into();
            }
        }

        if self.deleting() && status_reason == "NodeLost" {
            reason = "Unknown".into();
        } else if self.deleting() && phase != "Failed" && phase != "Succeeded" {
            reason = "Terminating".into();
        }

        let restarts_cell = match last_restart {
            Some(t) if restarts != 0 => format!("{restarts} ({} ago)", self.since(Some(t))),
            _ => restarts.to_string(),
        };

        let mut pod_ip = j::array(obj, &["status", "podIPs"])
            .first()
            .map(|p| j::string(p, &["ip"]))
            .unwrap_or("");
        if pod_ip.is_empty() {
            pod_ip = j::string(obj, &["status", "podIP"]);
        }
        let none_if_empty = |s: &str| {
            if s.is_empty() {
                "<none>".to_string()
            } else {
                s.to_string()
            }
        };
        let gates = j::array(obj, &["spec", "readinessGates"]);
        let readiness_gates = if gates.is_empty() {
            "<none>".to_string()
        } else {
            let true_count = gates
                .iter()
                .filter(|g| {
                    let t = j::string(g, &["conditionType"]);
                    conditions
                        .iter()
                        .find(|c| j::string(c, &["type"]) == t)
                        .is_some_and(|c| j::string(c, &["status"]) == "True")
                })
                .count();
            format!("{true_count}/{}", gates.len())
        };

        vec![
            self.name(),
            json!(format!("{ready}/{total}")),
            json!(reason),
            json!(restarts_cell),
            self.age(),
            json!(none_if_empty(pod_ip)),
            json!(none_if_empty(j::string(obj, &["spec", "nodeName"]))),
            json!(none_if_empty(j::string(
                obj,
                &["status", "nominatedNodeName"]
            ))),
            json!(readiness_gates),
        ]
    }

    fn pod_template(&self) -> Vec<Value> {
        let (names, images) = self.template_containers(&["template", "spec"]);
        vec![
            self.name(),
            names,
            images,
            json!(labels::format_labels(j::object(
                self.obj,
                &["template", "metadata", "labels"]
            ))),
        ]
    }

    fn pdb(&self) -> Vec<Value> {
        let int_or_string = |path: &[&str]| match j::get(self.obj, path) {
            Some(Value::Number(n)) => n.to_string(),
            Some(Value::String(s)) => s.clone(),
            _ => "N/A".to_string(),
        };
        vec![
            self.name(),
            json!(int_or_string(&["spec", "minAvailable"])),
            json!(int_or_string(&["spec", "maxUnavailable"])),
            self.int(&["status", "disruptionsAllowed"]),
            self.age(),
        ]
    }

    fn replicas(&self) -> Value {
        json!(j::i64_at(self.obj, &["spec", "replicas"]).unwrap_or(1))
    }

    fn replication_controller(&self) -> Vec<Value> {
        let (names, images) = self.template_containers(&["spec", "template", "spec"]);
        vec![
            self.name(),
            self.replicas(),
            self.int(&["status", "replicas"]),
            self.int(&["status", "readyReplicas"]),
            self.age(),
            names,
            images,
            json!(labels::format_labels(j::object(
                self.obj,
                &["spec", "selector"]
            ))),
        ]
    }

    fn selector(&self, path: &[&str]) -> Value {
        json!(labels::format_label_selector(
            j::get(self.obj, path).unwrap_or(&Value::Null)
        ))
    }

    fn replica_set(&self) -> Vec<Value> {
        let (names, images) = self.template_containers(&["spec", "template", "spec"]);
        vec![
            self.name(),
            self.replicas(),
            self.int(&["status", "replicas"]),
            self.int(&["status", "readyReplicas"]),
            self.age(),
            names,
            images,
            self.selector(&["spec", "selector"]),
        ]
    }

    fn daemon_set(&self) -> Vec<Value> {
        let (names, images) = self.template_containers(&["spec", "template", "spec"]);
        vec![
            self.name(),
            self.int(&["status", "desiredNumberScheduled"]),
            self.int(&["status", "currentNumberScheduled"]),
            self.int(&["status", "numberReady"]),
            self.int(&["status", "updatedNumberScheduled"]),
            self.int(&["status", "numberAvailable"]),
            json!(labels::format_labels(j::object(
                self.obj,
                &["spec", "template", "spec", "nodeSelector"]
            ))),
            self.age(),
            names,
            images,
            self.selector(&["spec", "selector"]),
        ]
    }

    fn job(&self) -> Vec<Value> {
        let obj = self.obj;
        let succeeded = j::i64_at(obj, &["status", "succeeded"]).unwrap_or(0);
        let completions = match j::i64_at(obj, &["spec", "completions"]) {
            Some(c) => format!("{succeeded}/{c}"),
            None => {
                let parallelism = j::i64_at(obj, &["spec", "parallelism"]).unwrap_or(0);
                if parallelism > 1 {
                    format!("{succeeded}/1 of {parallelism}")
                } else {
                    format!("{succeeded}/1")
                }
            }
        };
        let start = j::timestamp_at(obj, &["status", "startTime"]);
        let completion = j::timestamp_at(obj, &["status", "completionTime"]);
        let duration = match (start, completion) {
            (None, _) => String::new(),
            (Some(s), None) => human_duration(self.now.duration_since(s)),
            (Some(s), Some(c)) => human_duration(c.duration_since(s)),
        };
        let has = |t: &str| {
            j::array(obj, &["status", "conditions"])
                .iter()
                .find(|c| j::string(c, &["type"]) == t)
                .is_some_and(|c| j::string(c, &["status"]) == "True")
        };
        let status = if has("Complete") {
            "Complete"
        } else if has("Failed") {
            "Failed"
        } else if self.deleting() {
            "Terminating"
        } else if has("Suspended") {
            "Suspended"
        } else if has("FailureTarget") {
            "FailureTarget"
        } else {
            "Running"
        };
        let (names, images) = self.template_containers(&["spec", "template", "spec"]);
        vec![
            self.name(),
            json!(status),
            json!(completions),
            json!(duration),
            self.age(),
            names,
            images,
            self.selector(&["spec", "selector"]),
        ]
    }

    fn cron_job(&self) -> Vec<Value> {
        let obj = self.obj;
        let last_schedule = match j::timestamp_at(obj, &["status", "lastScheduleTime"]) {
            Some(t) => self.since(Some(t)),
            None => "<none>".into(),
        };
        let suspend = match j::bool_at(obj, &["spec", "suspend"]) {
            Some(true) => "True",
            Some(false) => "False",
            None => "<unset>",
        };
        let (names, images) =
            self.template_containers(&["spec", "jobTemplate", "spec", "template", "spec"]);
        vec![
            self.name(),
            self.str(&["spec", "schedule"]),
            json!(j::str_at(obj, &["spec", "timeZone"]).unwrap_or("<none>")),
            json!(suspend),
            json!(j::len_at(obj, &["status", "active"])),
            json!(last_schedule),
            self.age(),
            names,
            images,
            self.selector(&["spec", "jobTemplate", "spec", "selector"]),
        ]
    }

    fn service(&self) -> Vec<Value> {
        let obj = self.obj;
        let svc_type = j::string(obj, &["spec", "type"]);
        let mut cluster_ip = j::array(obj, &["spec", "clusterIPs"])
            .first()
            .and_then(Value::as_str)
            .unwrap_or("");
        if cluster_ip.is_empty() {
            cluster_ip = j::string(obj, &["spec", "clusterIP"]);
        }
        let cluster_ip = if cluster_ip.is_empty() {
            "<none>"
        } else {
            cluster_ip
        };
        let ports = service_ports(obj);
        vec![
            self.name(),
            json!(svc_type),
            json!(cluster_ip),
            json!(service_external_ip(obj)),
            json!(if ports.is_empty() {
                "<none>".into()
            } else {
                ports
            }),
            self.age(),
            json!(labels::format_labels(j::object(obj, &["spec", "selector"]))),
        ]
    }

    fn ingress(&self) -> Vec<Value> {
        let obj = self.obj;
        let rules = j::array(obj, &["spec", "rules"]);
        let mut hosts: Vec<&str> = Vec::new();
        let mut more = false;
        for rule in rules {
            if hosts.len() == 3 {
                more = true;
            }
            let host = j::string(rule, &["host"]);
            if !more && !host.is_empty() {
                hosts.push(host);
            }
        }
        let hosts = if hosts.is_empty() {
            "*".to_string()
        } else if more {
            format!("{} + {} more...", hosts.join(","), rules.len() - 3)
        } else {
            hosts.join(",")
        };
        let ports = if j::len_at(obj, &["spec", "tls"]) > 0 {
            "80, 443"
        } else {
            "80"
        };
        vec![
            self.name(),
            json!(j::str_at(obj, &["spec", "ingressClassName"]).unwrap_or("<none>")),
            json!(hosts),
            json!(load_balancer_addresses(obj)),
            json!(ports),
            self.age(),
        ]
    }

    fn ingress_class(&self) -> Vec<Value> {
        let obj = self.obj;
        let parameters = match j::object(obj, &["spec", "parameters"]) {
            Some(_) => {
                let mut s = j::string(obj, &["spec", "parameters", "kind"]).to_string();
                if let Some(g) = j::str_at(obj, &["spec", "parameters", "apiGroup"]) {
                    s = format!("{s}.{g}");
                }
                format!("{s}/{}", j::string(obj, &["spec", "parameters", "name"]))
            }
            None => "<none>".into(),
        };
        vec![
            self.name(),
            self.str(&["spec", "controller"]),
            json!(parameters),
            self.age(),
        ]
    }

    fn stateful_set(&self) -> Vec<Value> {
        let (names, images) = self.template_containers(&["spec", "template", "spec"]);
        let ready = j::i64_at(self.obj, &["status", "readyReplicas"]).unwrap_or(0);
        let desired = j::i64_at(self.obj, &["spec", "replicas"]).unwrap_or(1);
        vec![
            self.name(),
            json!(format!("{ready}/{desired}")),
            self.age(),
            names,
            images,
        ]
    }

    fn node(&self) -> Vec<Value> {
        let obj = self.obj;
        let mut status: Vec<String> = Vec::new();
        let mut ready_condition = None;
        for c in j::array(obj, &["status", "conditions"]) {
            if j::string(c, &["type"]) == "Ready" {
                ready_condition = Some(c);
            }
        }
        if let Some(c) = ready_condition {
            status.push(if j::string(c, &["status"]) == "True" {
                "Ready".into()
            } else {
                "NotReady".into()
            });
        }
        if status.is_empty() {
            status.push("Unknown".into());
        }
        if j::bool_at(obj, &["spec", "unschedulable"]) == Some(true) {
            status.push("SchedulingDisabled".into());
        }
        let mut roles: Vec<String> = Vec::new();
        for (k, v) in j::string_map(obj, &["metadata", "labels"]) {
            if let Some(role) = k.strip_prefix("node-role.kubernetes.io/") {
                if !role.is_empty() {
                    roles.push(role.to_string());
                }
            } else if k == "kubernetes.io/role" && !v.is_empty() {
                roles.push(v.to_string());
            }
        }
        roles.sort();
        roles.dedup();
        let roles = if roles.is_empty() {
            "<none>".to_string()
        } else {
            roles.join(",")
        };
        let address = |t: &str| {
            j::array(obj, &["status", "addresses"])
                .iter()
                .find(|a| j::string(a, &["type"]) == t)
                .map(|a| j::string(a, &["address"]).to_string())
                .unwrap_or_else(|| "<none>".into())
        };
        let info = |k: &str| {
            let v = j::string(obj, &["status", "nodeInfo", k]);
            if v.is_empty() {
                "<unknown>".to_string()
            } else {
                v.to_string()
            }
        };
        vec![
            self.name(),
            json!(status.join(",")),
            json!(roles),
            self.age(),
            self.str(&["status", "nodeInfo", "kubeletVersion"]),
            json!(address("InternalIP")),
            json!(address("ExternalIP")),
            json!(info("osImage")),
            json!(info("kernelVersion")),
            json!(info("containerRuntimeVersion")),
        ]
    }

    fn event(&self) -> Vec<Value> {
        let e = EventView::new(self.obj);
        let first = match e.first_timestamp {
            Some(t) => self.since(Some(t)),
            None => self.since(e.event_time),
        };
        let mut last = match e.last_timestamp {
            Some(t) => self.since(Some(t)),
            None => first.clone(),
        };
        let mut count = e.count;
        if let Some(series) = e.series {
            last = self.since(j::timestamp_at(series, &["lastObservedTime"]));
            count = j::i64_at(series, &["count"]).unwrap_or(0);
        } else if count == 0 {
            count = 1;
        }
        let kind = j::string(e.involved, &["kind"]).to_lowercase();
        let name = j::string(e.involved, &["name"]);
        let target = if name.is_empty() {
            kind
        } else {
            format!("{kind}/{name}")
        };
        let component =
            first_non_empty(j::string(e.source, &["component"]), e.reporting_controller);
        let host = first_non_empty(j::string(e.source, &["host"]), e.reporting_instance);
        let source = if host.is_empty() {
            component.to_string()
        } else {
            format!("{component}, {host}")
        };
        vec![
            json!(last),
            json!(e.type_),
            json!(e.reason),
            json!(target),
            json!(j::string(e.involved, &["fieldPath"])),
            json!(source),
            json!(e.message.trim()),
            json!(first),
            json!(count),
            self.name(),
        ]
    }

    fn persistent_volume(&self) -> Vec<Value> {
        let obj = self.obj;
        let claim = match j::object(obj, &["spec", "claimRef"]) {
            Some(_) => format!(
                "{}/{}",
                j::string(obj, &["spec", "claimRef", "namespace"]),
                j::string(obj, &["spec", "claimRef", "name"])
            ),
            None => String::new(),
        };
        let phase = if self.deleting() {
            "Terminating"
        } else {
            j::string(obj, &["status", "phase"])
        };
        let class = j::str_at(
            obj,
            &[
                "metadata",
                "annotations",
                "volume.beta.kubernetes.io/storage-class",
            ],
        )
        .unwrap_or_else(|| j::string(obj, &["spec", "storageClassName"]));
        vec![
            self.name(),
            json!(quantity(j::get(obj, &["spec", "capacity", "storage"]))),
            json!(access_modes(j::array(obj, &["spec", "accessModes"]))),
            self.str(&["spec", "persistentVolumeReclaimPolicy"]),
            json!(phase),
            json!(claim),
            json!(class),
            json!(j::str_at(obj, &["spec", "volumeAttributesClassName"]).unwrap_or("<unset>")),
            self.str(&["status", "reason"]),
            self.age(),
            json!(j::str_at(obj, &["spec", "volumeMode"]).unwrap_or("<unset>")),
        ]
    }

    fn persistent_volume_claim(&self) -> Vec<Value> {
        let obj = self.obj;
        let phase = if self.deleting() {
            "Terminating"
        } else {
            j::string(obj, &["status", "phase"])
        };
        let volume = j::string(obj, &["spec", "volumeName"]);
        let (capacity, modes) = if volume.is_empty() {
            (String::new(), String::new())
        } else {
            (
                quantity(j::get(obj, &["status", "capacity", "storage"])),
                access_modes(j::array(obj, &["status", "accessModes"])),
            )
        };
        let class = j::str_at(
            obj,
            &[
                "metadata",
                "annotations",
                "volume.beta.kubernetes.io/storage-class",
            ],
        )
        .or_else(|| j::str_at(obj, &["spec", "storageClassName"]))
        .unwrap_or("");
        vec![
            self.name(),
            json!(phase),
            json!(volume),
            json!(capacity),
            json!(modes),
            json!(class),
            json!(j::str_at(obj, &["spec", "volumeAttributesClassName"]).unwrap_or("<unset>")),
            self.age(),
            json!(j::str_at(obj, &["spec", "volumeMode"]).unwrap_or("<unset>")),
        ]
    }

    fn deployment(&self) -> Vec<Value> {
        let obj = self.obj;
        let ready = j::i64_at(obj, &["status", "readyReplicas"]).unwrap_or(0);
        let desired = j::i64_at(obj, &["spec", "replicas"]).unwrap_or(1);
        // Upstream prints selector.String() here: empty (not <none>) for an empty selector.
        let selector = match labels::from_label_selector_json(
            j::get(obj, &["spec", "selector"]).unwrap_or(&Value::Null),
        ) {
            Ok(s) => s.to_string(),
            Err(_) => "<invalid>".into(),
        };
        let (names, images) = self.template_containers(&["spec", "template", "spec"]);
        vec![
            self.name(),
            json!(format!("{ready}/{desired}")),
            self.int(&["status", "updatedReplicas"]),
            self.int(&["status", "availableReplicas"]),
            self.age(),
            names,
            images,
            json!(selector),
        ]
    }

    fn hpa(&self) -> Vec<Value> {
        let obj = self.obj;
        let reference = format!(
            "{}/{}",
            j::string(obj, &["spec", "scaleTargetRef", "kind"]),
            j::string(obj, &["spec", "scaleTargetRef", "name"])
        );
        let min = match j::i64_at(obj, &["spec", "minReplicas"]) {
            Some(n) => n.to_string(),
            None => "<unset>".into(),
        };
        vec![
            self.name(),
            json!(reference),
            json!(hpa_metrics(
                j::array(obj, &["spec", "metrics"]),
                j::array(obj, &["status", "currentMetrics"])
            )),
            json!(min),
            self.int(&["spec", "maxReplicas"]),
            self.int(&["status", "currentReplicas"]),
            self.age(),
        ]
    }

    fn role_binding(&self) -> Vec<Value> {
        let obj = self.obj;
        let role = format!(
            "{}/{}",
            j::string(obj, &["roleRef", "kind"]),
            j::string(obj, &["roleRef", "name"])
        );
        let (mut users, mut groups, mut sas) = (Vec::new(), Vec::new(), Vec::new());
        for s in j::array(obj, &["subjects"]) {
            let name = j::string(s, &["name"]);
            match j::string(s, &["kind"]) {
                "User" => users.push(name.to_string()),
                "Group" => groups.push(name.to_string()),
                "ServiceAccount" => sas.push(format!("{}/{name}", j::string(s, &["namespace"]))),
                _ => {}
            }
        }
        vec![
            self.name(),
            json!(role),
            self.age(),
            json!(users.join(", ")),
            json!(groups.join(", ")),
            json!(sas.join(", ")),
        ]
    }

    fn storage_class(&self) -> Vec<Value> {
        let obj = self.obj;
        let mut name = j::string(obj, &["metadata", "name"]).to_string();
        let is_default = [
            "storageclass.kubernetes.io/is-default-class",
            "storageclass.beta.kubernetes.io/is-default-class",
        ]
        .iter()
        .any(|k| j::str_at(obj, &["metadata", "annotations", k]) == Some("true"));
        if is_default {
            name.push_str(" (default)");
        }
        vec![
            json!(name),
            self.str(&["provisioner"]),
            json!(j::str_at(obj, &["reclaimPolicy"]).unwrap_or("Delete")),
            json!(j::str_at(obj, &["volumeBindingMode"]).unwrap_or("Immediate")),
            json!(j::bool_at(obj, &["allowVolumeExpansion"]).unwrap_or(false)),
            self.age(),
        ]
    }

    fn controller_revision(&self) -> Vec<Value> {
        let obj = self.obj;
        let controller = j::array(obj, &["metadata", "ownerReferences"])
            .iter()
            .find(|r| j::bool_at(r, &["controller"]) == Some(true))
            .map(|r| {
                let (group, _) = crate::catalog::split_api_version(j::string(r, &["apiVersion"]));
                let kind = j::string(r, &["kind"]);
                let name = j::string(r, &["name"]);
                if kind.is_empty() && group.is_empty() {
                    name.to_string()
                } else if group.is_empty() {
                    format!("{}/{name}", kind.to_lowercase())
                } else {
                    format!("{}.{}/{name}", kind.to_lowercase(), group.to_lowercase())
                }
            })
            .unwrap_or_else(|| "<none>".into());
        vec![
            self.name(),
            json!(controller),
            self.int(&["revision"]),
            self.age(),
        ]
    }

    fn resource_quota(&self) -> Vec<Value> {
        let obj = self.obj;
        let mut hard: Vec<(&String, &Value)> = j::object(obj, &["status", "hard"])
            .map(|m| m.iter().collect())
            .unwrap_or_default();
        hard.sort_by(|a, b| a.0.cmp(b.0));
        let (mut requests, mut limits) = (Vec::new(), Vec::new());
        for (resource, hard_qty) in hard {
            let used = quantity(j::get(obj, &["status", "used", resource]));
            let entry = format!("{resource}: {used}/{}", quantity(Some(hard_qty)));
            let mut pieces = resource.split('.');
            if pieces.next() == Some("limits") && pieces.next().is_some() {
                limits.push(entry);
            } else {
                requests.push(entry);
            }
        }
        vec![
            self.name(),
            json!(requests.join(", ")),
            json!(limits.join(", ")),
            self.age(),
        ]
    }

    fn endpoint_slice(&self) -> Vec<Value> {
        let obj = self.obj;
        let ports: Vec<String> = j::array(obj, &["ports"])
            .iter()
            .map(
                |p| match (j::i64_at(p, &["port"]), j::str_at(p, &["name"])) {
                    (Some(n), _) => n.to_string(),
                    (None, Some(name)) => name.to_string(),
                    _ => "*".to_string(),
                },
            )
            .collect();
        let addresses: Vec<String> = j::array(obj, &["endpoints"])
            .iter()
            .flat_map(|e| j::array(e, &["addresses"]))
            .filter_map(|a| a.as_str().map(str::to_string))
            .collect();
        vec![
            self.name(),
            self.str(&["addressType"]),
            json!(list_with_more(&ports)),
            json!(list_with_more(&addresses)),
            self.age(),
        ]
    }
}

/// The parts of a core/v1 or events.k8s.io/v1 Event the printer reads.
struct EventView<'a> {
    involved: &'a Value,
    source: &'a Value,
    type_: &'a str,
    reason: &'a str,
    message: &'a str,
    reporting_controller: &'a str,
    reporting_instance: &'a str,
    first_timestamp: Option<jiff::Timestamp>,
    last_timestamp: Option<jiff::Timestamp>,
    event_time: Option<jiff::Timestamp>,
    count: i64,
    series: Option<&'a Value>,
}

static NULL: Value = Value::Null;

impl<'a> EventView<'a> {
    fn new(obj: &'a Value) -> Self {
        let events_api = j::get(obj, &["regarding"]).is_some()
            || j::get(obj, &["note"]).is_some()
            || j::str_at(obj, &["apiVersion"]) == Some("events.k8s.io/v1");
        let (involved, source, message, first, last, count, reporting_controller) = if events_api {
            (
                "regarding",
                "deprecatedSource",
                "note",
                "deprecatedFirstTimestamp",
                "deprecatedLastTimestamp",
                "deprecatedCount",
                "reportingController",
            )
        } else {
            (
                "involvedObject",
                "source",
                "message",
                "firstTimestamp",
                "lastTimestamp",
                "count",
                "reportingComponent",
            )
        };
        EventView {
            involved: j::get(obj, &[involved]).unwrap_or(&NULL),
            source: j::get(obj, &[source]).unwrap_or(&NULL),
            type_: j::string(obj, &["type"]),
            reason: j::string(obj, &["reason"]),
            message: j::string(obj, &[message]),
            reporting_controller: j::string(obj, &[reporting_controller]),
            reporting_instance: j::string(obj, &["reportingInstance"]),
            first_timestamp: j::timestamp_at(obj, &[first]),
            last_timestamp: j::timestamp_at(obj, &[last]),
            event_time: j::timestamp_at(obj, &["eventTime"]),
            count: j::i64_at(obj, &[count]).unwrap_or(0),
            series: j::get(obj, &["series"]).filter(|s| s.is_object()),
        }
    }
}

fn first_non_empty<'a>(a: &'a str, b: &'a str) -> &'a str {
    if a.is_empty() {
        b
    } else {
        a
    }
}

/// Container names and images, comma-separated.
fn layout_containers(containers: &[Value]) -> (String, String) {
    let names: Vec<&str> = containers.iter().map(|c| j::string(c, &["name"])).collect();
    let images: Vec<&str> = containers
        .iter()
        .map(|c| j::string(c, &["image"]))
        .collect();
    (names.join(","), images.join(","))
}

/// `80/TCP,443:30443/TCP`; empty without ports.
pub fn service_ports(svc: &Value) -> String {
    j::array(svc, &["spec", "ports"])
        .iter()
        .map(|p| {
            let port = j::i64_at(p, &["port"]).unwrap_or(0);
            let protocol = j::str_at(p, &["protocol"]).unwrap_or("TCP");
            match j::i64_at(p, &["nodePort"]) {
                Some(node_port) if node_port > 0 => format!("{port}:{node_port}/{protocol}"),
                _ => format!("{port}/{protocol}"),
            }
        })
        .collect::<Vec<_>>()
        .join(",")
}

fn string_list(v: &Value, path: &[&str]) -> Vec<String> {
    j::array(v, path)
        .iter()
        .filter_map(|s| s.as_str().map(str::to_string))
        .collect()
}

/// Load-balancer ingress IPs (or hostnames), sorted and unique, comma-separated.
fn load_balancer_addresses(obj: &Value) -> String {
    let mut out: Vec<String> = j::array(obj, &["status", "loadBalancer", "ingress"])
        .iter()
        .filter_map(|i| {
            let ip = j::string(i, &["ip"]);
            let host = j::string(i, &["hostname"]);
            if !ip.is_empty() {
                Some(ip.to_string())
            } else if !host.is_empty() {
                Some(host.to_string())
            } else {
                None
            }
        })
        .collect();
    out.sort();
    out.dedup();
    out.join(",")
}

fn service_external_ip(svc: &Value) -> String {
    let external_ips = string_list(svc, &["spec", "externalIPs"]);
    match j::string(svc, &["spec", "type"]) {
        "ClusterIP" | "NodePort" => {
            if external_ips.is_empty() {
                "<none>".into()
            } else {
                external_ips.join(",")
            }
        }
        "LoadBalancer" => {
            let lb = load_balancer_addresses(svc);
            if !external_ips.is_empty() {
                let mut all: Vec<String> = if lb.is_empty() {
                    Vec::new()
                } else {
                    lb.split(',').map(str::to_string).collect()
                };
                all.extend(external_ips);
                all.join(",")
            } else if !lb.is_empty() {
                lb
            } else {
                "<pending>".into()
            }
        }
        "ExternalName" => j::string(svc, &["spec", "externalName"]).to_string(),
        _ => "<unknown>".into(),
    }
}

/// `formatEndpoints`: up to three `ip:port` (or bare IPs for port-less subsets), then
/// `+ N more...`; `<none>` without subsets.
fn format_endpoints(obj: &Value) -> String {
    let subsets = j::array(obj, &["subsets"]);
    if subsets.is_empty() {
        return "<none>".into();
    }
    const MAX: usize = 3;
    let mut list: Vec<String> = Vec::new();
    let mut more = false;
    let mut count = 0usize;
    for ss in subsets {
        let addresses = j::array(ss, &["addresses"]);
        let ports = j::array(ss, &["ports"]);
        if ports.is_empty() {
            count += addresses.len();
            for a in addresses {
                if list.len() == MAX {
                    more = true;
                    break;
                }
                list.push(j::string(a, &["ip"]).to_string());
            }
            continue;
        }
        for port in ports {
            count += addresses.len();
            let p = j::i64_at(port, &["port"]).unwrap_or(0);
            for a in addresses {
                if list.len() == MAX {
                    more = true;
                    break;
                }
                let ip = j::string(a, &["ip"]);
                list.push(if ip.contains(':') {
                    format!("[{ip}]:{p}")
                } else {
                    format!("{ip}:{p}")
                });
            }
        }
    }
    let joined = list.join(",");
    if more {
        format!("{joined} + {} more...", count - MAX)
    } else {
        joined
    }
}

/// `listWithMoreString`: up to three items, `+ N more...`, `<unset>` when empty.
fn list_with_more(items: &[String]) -> String {
    const MAX: usize = 3;
    if items.len() > MAX {
        return format!("{} + {} more...", items[..MAX].join(","), items.len() - MAX);
    }
    if items.is_empty() {
        return "<unset>".into();
    }
    items.join(",")
}

/// `GetAccessModesAsString`: RWO, ROX, RWX, RWOP in that order.
fn access_modes(modes: &[Value]) -> String {
    let has = |m: &str| modes.iter().any(|v| v.as_str() == Some(m));
    [
        ("ReadWriteOnce", "RWO"),
        ("ReadOnlyMany", "ROX"),
        ("ReadWriteMany", "RWX"),
        ("ReadWriteOncePod", "RWOP"),
    ]
    .iter()
    .filter(|(m, _)| has(m))
    .map(|(_, short)| *short)
    .collect::<Vec<_>>()
    .join(",")
}

/// A quantity as stored (`"1Gi"`), `"0"` when absent. (Upstream prints the canonical form,
/// which equals the stored one for canonical input.)
fn quantity(v: Option<&Value>) -> String {
    match v {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Number(n)) => n.to_string(),
        _ => "0".into(),
    }
}

/// `formatHPAMetrics` (autoscaling/v2 shape).
fn hpa_metrics(specs: &[Value], statuses: &[Value]) -> String {
    if specs.is_empty() {
        return "<none>".into();
    }
    let mut list: Vec<String> = Vec::new();
    let q = |v: &Value, path: &[&str]| quantity(j::get(v, path));
    for (i, spec) in specs.iter().enumerate() {
        let status = statuses.get(i).unwrap_or(&NULL);
        let entry = match j::string(spec, &["type"]) {
            "External" | "Object" => {
                let key = if j::string(spec, &["type"]) == "External" {
                    "external"
                } else {
                    "object"
                };
                let has_status = j::get(status, &[key]).is_some();
                if j::get(spec, &[key, "target", "averageValue"]).is_some() {
                    let current = if has_status
                        && j::get(status, &[key, "current", "averageValue"]).is_some()
                    {
                        q(status, &[key, "current", "averageValue"])
                    } else {
                        "<unknown>".into()
                    };
                    format!(
                        "{current}/{} (avg)",
                        q(spec, &[key, "target", "averageValue"])
                    )
                } else {
                    let current = if has_status {
                        q(status, &[key, "current", "value"])
                    } else {
                        "<unknown>".into()
                    };
                    format!("{current}/{}", q(spec, &[key, "target", "value"]))
                }
            }
            "Pods" => {
                let current = if j::get(status, &["pods"]).is_some() {
                    q(status, &["pods", "current", "averageValue"])
                } else {
                    "<unknown>".into()
                };
                format!("{current}/{}", q(spec, &["pods", "target", "averageValue"]))
            }
            t @ ("Resource" | "ContainerResource") => {
                let key = if t == "Resource" {
                    "resource"
                } else {
                    "containerResource"
                };
                let name = j::string(spec, &[key, "name"]);
                if j::get(spec, &[key, "target", "averageValue"]).is_some() {
                    let current = if j::get(status, &[key]).is_some() {
                        q(status, &[key, "current", "averageValue"])
                    } else {
                        "<unknown>".into()
                    };
                    format!(
                        "{name}: {current}/{}",
                        q(spec, &[key, "target", "averageValue"])
                    )
                } else {
                    let current = match j::i64_at(status, &[key, "current", "averageUtilization"]) {
                        Some(u) => format!("{u}%"),
                        None => "<unknown>".into(),
                    };
                    let target = match j::i64_at(spec, &[key, "target", "averageUtilization"]) {
                        Some(u) => format!("{u}%"),
                        None => "<auto>".into(),
                    };
                    format!("{name}: {current}/{target}")
                }
            }
            _ => "<unknown type>".into(),
        };
        list.push(entry);
    }
    const MAX: usize = 2;
    if list.len() > MAX {
        let more = list.len() - MAX;
        list.truncate(MAX);
        return format!("{} + {more} more...", list.join(", "));
    }
    list.join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::find;

    fn now() -> jiff::Timestamp {
        "2024-05-01T12:00:00Z".parse().unwrap()
    }

    #[test]
    fn human_duration_matches_upstream_table() {
        use jiff::SignedDuration as D;
        let ms = D::from_millis;
        let s = D::from_secs;
        let h = |n: i64| D::from_hours(n);
        let cases: Vec<(D, &str)> = vec![
            (s(1), "1s"),
            (s(70), "70s"),
            (s(190), "3m10s"),
            (D::from_mins(70), "70m"),
            (h(47), "47h"),
            (h(49), "2d1h"),
            (h(8 * 24 + 2), "8d"),
            (h(367 * 24), "367d"),
            (h(365 * 2 * 24 + 25), "2y1d"),
            (h(365 * 8 * 24 + 2), "8y"),
            (s(-2), "<invalid>"),
            (s(-2) + D::from_nanos(1), "0s"),
            (s(0), "0s"),
            (ms(999), "0s"),
            (s(120) - ms(1), "119s"),
            (s(120), "2m"),
            (s(121), "2m1s"),
            (D::from_mins(10) - ms(1), "9m59s"),
            (D::from_mins(10), "10m"),
            (D::from_mins(10) + s(1), "10m"),
            (h(3) - ms(1), "179m"),
            (h(3), "3h"),
            (h(3) + D::from_mins(1), "3h1m"),
            (h(8) - ms(1), "7h59m"),
            (h(8), "8h"),
            (h(8) + D::from_mins(59), "8h"),
            (h(48) - ms(1), "47h"),
            (h(48), "2d"),
            (h(49), "2d1h"),
            (h(8 * 24) - ms(1), "7d23h"),
            (h(8 * 24), "8d"),
            (h(8 * 24 + 23), "8d"),
            (h(2 * 365 * 24) - ms(1), "729d"),
            (h(2 * 365 * 24), "2y"),
            (h(2 * 365 * 24 + 23), "2y"),
            (h(2 * 365 * 24 + 23) + D::from_mins(59), "2y"),
            (h(2 * 365 * 24 + 24) - ms(1), "2y"),
            (h(2 * 365 * 24 + 24), "2y1d"),
            (h(3 * 365 * 24), "3y"),
            (h(4 * 365 * 24), "4y"),
            (h(5 * 365 * 24), "5y"),
            (h(6 * 365 * 24), "6y"),
            (h(7 * 365 * 24), "7y"),
            (h(8 * 365 * 24) - ms(1), "7y364d"),
            (h(8 * 365 * 24), "8y"),
            (h(8 * 365 * 24 + 364 * 24), "8y"),
            (h(9 * 365 * 24), "9y"),
        ];
        for (d, want) in cases {
            assert_eq!(human_duration(d), want, "{d:?}");
        }
    }

    fn pod_cells(pod: Value) -> Vec<Value> {
        cells(find("", "v1", "pods").unwrap(), &pod, now())
    }

    #[test]
    fn pod_status_ready_restarts() {
        let base = |status: Value| {
            json!({
                "metadata": {"name": "p", "creationTimestamp": "2024-05-01T11:55:00Z"},
                "spec": {"containers": [{"name": "a"}, {"name": "b"}], "nodeName": "n1"},
                "status": status
            })
        };
        let running = json!({"state": {"running": {}}, "ready": true, "restartCount": 0});
        let cases = [
            (json!({"phase": "Pending"}), ("0/2", "Pending", "0")),
            (
                json!({"phase": "Pending", "containerStatuses": [
                    {"state": {"waiting": {"reason": "ContainerCreating"}}},
                    {"state": {"waiting": {"reason": "ContainerCreating"}}}]}),
                ("0/2", "ContainerCreating", "0"),
            ),
            (
                json!({"phase": "Running", "containerStatuses": [running.clone(), running.clone()]}),
                ("2/2", "Running", "0"),
            ),
            (
                json!({"phase": "Running", "containerStatuses": [
                    running.clone(),
                    {"state": {"waiting": {"reason": "CrashLoopBackOff"}}, "restartCount": 3,
                     "lastState": {"terminated": {"exitCode": 1, "finishedAt": "2024-05-01T11:58:00Z"}}}]}),
                ("1/2", "CrashLoopBackOff", "3 (2m ago)"),
            ),
            (
                json!({"phase": "Succeeded", "containerStatuses": [
                    {"state": {"terminated": {"reason": "Completed", "exitCode": 0}}},
                    {"state": {"terminated": {"reason": "Completed", "exitCode": 0}}}]}),
                ("0/2", "Completed", "0"),
            ),
            (
                json!({"phase": "Running", "containerStatuses": [
                    {"state": {"terminated": {"exitCode": 2}}}, running.clone()]}),
                ("1/2", "ExitCode:2", "0"),
            ),
            (
                json!({"phase": "Running", "containerStatuses": [
                    {"state": {"terminated": {"reason": "Completed", "exitCode": 0}}}, running.clone()],
                    "conditions": [{"type": "Ready", "status": "False"}]}),
                ("1/2", "NotReady", "0"),
            ),
            (
                json!({"phase": "Pending", "conditions": [{"type": "PodScheduled", "status": "False", "reason": "SchedulingGated"}]}),
                ("0/2", "SchedulingGated", "0"),
            ),
            (
                json!({"phase": "Failed", "reason": "Evicted"}),
                ("0/2", "Evicted", "0"),
            ),
        ];
        for (status, (ready, st, restarts)) in cases {
            let c = pod_cells(base(status.clone()));
            assert_eq!(c[0], "p");
            assert_eq!(c[1], ready, "{status}");
            assert_eq!(c[2], st, "{status}");
            assert_eq!(c[3], restarts, "{status}");
            assert_eq!(c[4], "5m");
            assert_eq!(c.len(), columns(find("", "v1", "pods").unwrap()).len());
        }

        let mut terminating =
            base(json!({"phase": "Running", "containerStatuses": [running.clone(), running]}));
        terminating["metadata"]["deletionTimestamp"] = json!("2024-05-01T11:59:00Z");
        assert_eq!(pod_cells(terminating)[2], "Terminating");
    }

    #[test]
    fn pod_init_containers_and_wide() {
        let pod = json!({
            "metadata": {"name": "p"},
            "spec": {
                "initContainers": [{"name": "i1"}, {"name": "i2"}],
                "containers": [{"name": "a"}],
                "readinessGates": [{"conditionType": "x"}]
            },
            "status": {
                "phase": "Pending",
                "podIPs": [{"ip": "10.1.0.5"}],
                "initContainerStatuses": [
                    {"name": "i1", "state": {"terminated": {"exitCode": 0, "reason": "Completed"}}},
                    {"name": "i2", "state": {"running": {}}}
                ],
                "conditions": [{"type": "x", "status": "True"}]
            }
        });
        let c = pod_cells(pod);
        assert_eq!(c[1], "0/1");
        assert_eq!(c[2], "Init:1/2");
        assert_eq!(c[4], "<unknown>");
        assert_eq!(c[5], "10.1.0.5");
        assert_eq!(c[6], "<none>");
        assert_eq!(c[7], "<none>");
        assert_eq!(c[8], "1/1");

        let crash = json!({
            "metadata": {"name": "p"},
            "spec": {"initContainers": [{"name": "i1"}], "containers": [{"name": "a"}]},
            "status": {"phase": "Pending", "initContainerStatuses": [
                {"name": "i1", "state": {"waiting": {"reason": "CrashLoopBackOff"}}}]}
        });
        assert_eq!(pod_cells(crash)[2], "Init:CrashLoopBackOff");

        let sidecar = json!({
            "metadata": {"name": "p"},
            "spec": {"initContainers": [{"name": "s", "restartPolicy": "Always"}], "containers": [{"name": "a"}]},
            "status": {"phase": "Running",
                "conditions": [{"type": "Initialized", "status": "True"}],
                "initContainerStatuses": [{"name": "s", "started": true, "ready": true, "state": {"running": {}}}],
                "containerStatuses": [{"name": "a", "ready": true, "state": {"running": {}}}]}
        });
        let c = pod_cells(sidecar);
        assert_eq!(c[1], "2/2");
        assert_eq!(c[2], "Running");
    }

    #[test]
    fn service_cells() {
        let svcs = find("", "v1", "services").unwrap();
        let svc = |spec: Value| json!({"metadata": {"name": "s"}, "spec": spec});
        let c = cells(
            svcs,
            &svc(
                json!({"type": "ClusterIP", "clusterIP": "10.96.0.10", "clusterIPs": ["10.96.0.10"],
                "ports": [{"port": 80, "protocol": "TCP"}, {"port": 53, "protocol": "UDP"}],
                "selector": {"app": "web"}}),
            ),
            now(),
        );
        assert_eq!(c[1], "ClusterIP");
        assert_eq!(c[2], "10.96.0.10");
        assert_eq!(c[3], "<none>");
        assert_eq!(c[4], "80/TCP,53/UDP");
        assert_eq!(c[6], "app=web");

        let c = cells(
            svcs,
            &svc(json!({"type": "NodePort", "clusterIPs": ["10.96.0.11"],
                "ports": [{"port": 80, "nodePort": 30080, "protocol": "TCP"}]})),
            now(),
        );
        assert_eq!(c[4], "80:30080/TCP");
        assert_eq!(c[6], "<none>");

        let c = cells(
            svcs,
            &svc(json!({"type": "LoadBalancer", "ports": []})),
            now(),
        );
        assert_eq!(c[2], "<none>");
        assert_eq!(c[3], "<pending>");
        assert_eq!(c[4], "<none>");

        let c = cells(
            svcs,
            &svc(json!({"type": "ExternalName", "externalName": "example.com"})),
            now(),
        );
        assert_eq!(c[3], "example.com");
    }

    #[test]
    fn workload_cells() {
        let deploy = json!({
            "metadata": {"name": "web", "creationTimestamp": "2024-05-01T10:00:00Z"},
            "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "web"}},
                "template": {"spec": {"containers": [{"name": "nginx", "image": "nginx:1"}, {"name": "side", "image": "busybox"}]}}},
            "status": {"readyReplicas": 2, "updatedReplicas": 3, "availableReplicas": 2}
        });
        let c = cells(find("apps", "v1", "deployments").unwrap(), &deploy, now());
        assert_eq!(
            c,
            vec![
                json!("web"),
                json!("2/3"),
                json!(3),
                json!(2),
                json!("120m"),
                json!("nginx,side"),
                json!("nginx:1,busybox"),
                json!("app=web")
            ]
        );

        let job = json!({
            "metadata": {"name": "j"},
            "spec": {"completions": 1, "template": {"spec": {"containers": []}}},
            "status": {"succeeded": 1, "startTime": "2024-05-01T11:00:00Z", "completionTime": "2024-05-01T11:00:30Z",
                "conditions": [{"type": "Complete", "status": "True"}]}
        });
        let c = cells(find("batch", "v1", "jobs").unwrap(), &job, now());
        assert_eq!(c[1], "Complete");
        assert_eq!(c[2], "1/1");
        assert_eq!(c[3], "30s");
        assert_eq!(c[7], "<none>");

        let cj = json!({"metadata": {"name": "c"}, "spec": {"schedule": "*/1 * * * *", "suspend": false}});
        let c = cells(find("batch", "v1", "cronjobs").unwrap(), &cj, now());
        assert_eq!(
            c[1..6],
            [
                json!("*/1 * * * *"),
                json!("<none>"),
                json!("False"),
                json!(0),
                json!("<none>")
            ]
        );
    }

    #[test]
    fn node_and_event_cells() {
        let node = json!({
            "metadata": {"name": "n1", "labels": {"node-role.kubernetes.io/control-plane": "", "node-role.kubernetes.io/master": ""}},
            "spec": {"unschedulable": true},
            "status": {"conditions": [{"type": "Ready", "status": "True"}],
                "addresses": [{"type": "InternalIP", "address": "172.18.0.2"}],
                "nodeInfo": {"kubeletVersion": "v1.32.0"}}
        });
        let c = cells(find("", "v1", "nodes").unwrap(), &node, now());
        assert_eq!(c[1], "Ready,SchedulingDisabled");
        assert_eq!(c[2], "control-plane,master");
        assert_eq!(c[4], "v1.32.0");
        assert_eq!(c[5], "172.18.0.2");
        assert_eq!(c[6], "<none>");
        assert_eq!(c[7], "<unknown>");
        let bare = cells(find("", "v1", "nodes").unwrap(), &json!({}), now());
        assert_eq!(bare[1], "Unknown");
        assert_eq!(bare[2], "<none>");

        let ev = json!({
            "metadata": {"name": "p.1"},
            "involvedObject": {"kind": "Pod", "name": "p", "fieldPath": "spec.containers{a}"},
            "reason": "Pulled", "type": "Normal", "message": " done \n",
            "source": {"component": "kubelet", "host": "n1"},
            "firstTimestamp": "2024-05-01T11:50:00Z", "lastTimestamp": "2024-05-01T11:59:00Z", "count": 2
        });
        let c = cells(find("", "v1", "events").unwrap(), &ev, now());
        assert_eq!(
            c,
            vec![
                json!("60s"),
                json!("Normal"),
                json!("Pulled"),
                json!("pod/p"),
                json!("spec.containers{a}"),
                json!("kubelet, n1"),
                json!("done"),
                json!("10m"),
                json!(2),
                json!("p.1")
            ]
        );
        let new_api = json!({
            "apiVersion": "events.k8s.io/v1",
            "metadata": {"name": "e"},
            "regarding": {"kind": "Node", "name": "n1"},
            "reason": "Starting", "type": "Normal", "note": "hi",
            "eventTime": "2024-05-01T11:59:30.123456Z",
            "reportingController": "kubelet", "reportingInstance": "n1"
        });
        let c = cells(
            find("events.k8s.io", "v1", "events").unwrap(),
            &new_api,
            now(),
        );
        assert_eq!(c[0], "29s");
        assert_eq!(c[3], "node/n1");
        assert_eq!(c[5], "kubelet, n1");
        assert_eq!(c[6], "hi");
        assert_eq!(c[8], 1);
    }

    #[test]
    fn simple_kinds() {
        let ns = json!({"metadata": {"name": "default"}, "status": {"phase": "Active"}});
        assert_eq!(
            cells(find("", "v1", "namespaces").unwrap(), &ns, now())[1],
            "Active"
        );
        let cm = json!({"metadata": {"name": "c"}, "data": {"a": "1"}, "binaryData": {"b": ""}});
        assert_eq!(
            cells(find("", "v1", "configmaps").unwrap(), &cm, now())[1],
            2
        );
        let secret = json!({"metadata": {"name": "s"}, "type": "Opaque", "data": {"a": "MQ=="}});
        assert_eq!(
            cells(find("", "v1", "secrets").unwrap(), &secret, now())[1..3],
            [json!("Opaque"), json!(1)]
        );
        let ep = json!({"metadata": {"name": "e"}, "subsets": [{"addresses": [{"ip": "10.0.0.1"}, {"ip": "10.0.0.2"}],
            "ports": [{"port": 80}, {"port": 443}]}]});
        assert_eq!(
            cells(find("", "v1", "endpoints").unwrap(), &ep, now())[1],
            "10.0.0.1:80,10.0.0.2:80,10.0.0.1:443 + 1 more..."
        );
        let role = json!({"metadata": {"name": "r", "creationTimestamp": "2024-01-31T11:32:08Z"}});
        let rt = find("rbac.authorization.k8s.io", "v1", "roles").unwrap();
        assert_eq!(columns(rt)[1].name, "Created At");
        assert_eq!(
            cells(rt, &role, now()),
            vec![json!("r"), json!("2024-01-31T11:32:08Z")]
        );
        let sc = json!({"metadata": {"name": "standard", "annotations": {"storageclass.kubernetes.io/is-default-class": "true"}},
            "provisioner": "rancher.io/local-path", "volumeBindingMode": "WaitForFirstConsumer"});
        assert_eq!(
            cells(
                find("storage.k8s.io", "v1", "storageclasses").unwrap(),
                &sc,
                now()
            )[..5],
            [
                json!("standard (default)"),
                json!("rancher.io/local-path"),
                json!("Delete"),
                json!("WaitForFirstConsumer"),
                json!(false)
            ]
        );
    }

    #[test]
    fn every_kind_has_matching_cells_and_never_panics() {
        let junk = [
            json!(null),
            json!("x"),
            json!({"metadata": 3, "spec": [], "status": "x"}),
            json!({"spec": {"containers": "x", "ports": {"a": 1}, "selector": 5}, "status": {"conditions": [1, null]}}),
        ];
        for rt in crate::catalog::builtin() {
            let cols = columns(rt);
            assert!(cols.iter().any(|c| c.format == "name"), "{}", rt.plural);
            for obj in &junk {
                assert_eq!(cells(rt, obj, now()).len(), cols.len(), "{}", rt.plural);
            }
        }
        let json = serde_json::to_value(columns(find("", "v1", "pods").unwrap())).unwrap();
        assert_eq!(json[0]["type"], "string");
        assert_eq!(json[0]["format"], "name");
        assert_eq!(json[5]["priority"], 1);
    }
}
