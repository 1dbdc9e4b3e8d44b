//! The `paths` of a group-version document: for every resource the collection, item and
//! subresource paths with upstream's operation ids, parameters, `x-kubernetes-action` and
//! `x-kubernetes-group-version-kind`.

use std::collections::HashMap;

use kubelab_resources::catalog::{ResourceType, Subresource};
use serde_json::{json, Map, Value};

use crate::kinds::MetaNames;

/// Schema names the paths refer to, by `(group, version, kind)`.
pub(crate) type SchemaNames = HashMap<(String, String, String), String>;

const READ_TYPES: &[&str] = &[
    "application/json",
    "application/yaml",
    "application/vnd.kubernetes.protobuf",
];
const LIST_TYPES: &[&str] = &[
    "application/json",
    "application/yaml",
    "application/vnd.kubernetes.protobuf",
    "application/json;stream=watch",
    "application/vnd.kubernetes.protobuf;stream=watch",
];
const PATCH_TYPES: &[&str] = &[
    "application/json-patch+json",
    "application/merge-patch+json",
    "application/strategic-merge-patch+json",
    "application/apply-patch+yaml",
];

/// Subresources that stream (`connect` in upstream's terms) rather than read or write objects.
const CONNECT_SUBRESOURCES: &[&str] = &["attach", "exec", "portforward", "proxy"];

/// Everything an operation builder needs to know about one resource.
pub(crate) struct ResourcePaths<'a> {
    pub resource: &'a ResourceType,
    pub schemas: &'a SchemaNames,
    pub meta: &'a MetaNames,
}

impl ResourcePaths<'_> {
    /// Adds the resource's paths to `paths`.
    pub(crate) fn add_to(&self, paths: &mut Map<String, Value>) {
        let rt = self.resource;
        let prefix = api_prefix(rt.group, rt.version);
        let scope = if rt.namespaced {
            format!("{prefix}/namespaces/{{namespace}}/{}", rt.plural)
        } else {
            format!("{prefix}/{}", rt.plural)
        };
        let gvk = gvk(rt.group, rt.version, rt.kind);
        let kind_ref = self.schema_ref(rt.group, rt.version, rt.kind);
        let list_ref = kind_ref
            .as_ref()
            .map(|reference| format!("{reference}List"));
        let namespaced = if rt.namespaced { "Namespaced" } else { "" };
        let id = |verb: &str, infix: &str, suffix: &str| {
            format!(
                "{verb}{}{}{infix}{namespaced}{}{suffix}",
                group_id(rt.group),
                capitalize(rt.version),
                rt.kind
            )
        };

        // The collection.
        let mut collection = Map::new();
        if rt.supports_verb("list") {
            let op = Operation::new(&id("list", "", ""), "list", &gvk, rt)
                .description(&format!("list or watch objects of kind {}", rt.kind))
                .parameters(list_parameters())
                .response("200", list_ref.as_deref(), LIST_TYPES);
            collection.insert("get".into(), op.into_value());
        }
        if rt.supports_verb("create") {
            let op = Operation::new(&id("create", "", ""), "post", &gvk, rt)
                .description(&format!("create {}", article(rt.kind)))
                .parameters(write_parameters())
                .body(kind_ref.as_deref(), &["*/*"])
                .response("200", kind_ref.as_deref(), READ_TYPES)
                .response("201", kind_ref.as_deref(), READ_TYPES)
                .response("202", kind_ref.as_deref(), READ_TYPES);
            collection.insert("post".into(), op.into_value());
        }
        if rt.supports_verb("deletecollection") {
            let op = Operation::new(
                &id("delete", "Collection", ""),
                "deletecollection",
                &gvk,
                rt,
            )
            .description(&format!("delete collection of {}", rt.kind))
            .parameters(delete_collection_parameters())
            .body(Some(&schema_ref(&self.meta.delete_options)), &["*/*"])
            .response("200", Some(&schema_ref(&self.meta.status)), READ_TYPES);
            collection.insert("delete".into(), op.into_value());
        }
        if !collection.is_empty() {
            collection.insert("parameters".into(), path_parameters(rt.namespaced, false));
            paths.insert(scope.clone(), Value::Object(collection));
        }

        // Every namespace at once.
        if rt.namespaced && rt.supports_verb("list") {
            let op = Operation::new(
                &format!(
                    "list{}{}{}ForAllNamespaces",
                    group_id(rt.group),
                    capitalize(rt.version),
                    rt.kind
                ),
                "list",
                &gvk,
                rt,
            )
            .description(&format!("list or watch objects of kind {}", rt.kind))
            .parameters(list_parameters())
            .response("200", list_ref.as_deref(), LIST_TYPES);
            let mut item = Map::new();
            item.insert("get".into(), op.into_value());
            item.insert("parameters".into(), json!([pretty_parameter()]));
            paths.insert(format!("{prefix}/{}", rt.plural), Value::Object(item));
        }

        // One object.
        let item_path = format!("{scope}/{{name}}");
        let mut item = Map::new();
        if rt.supports_verb("get") {
            let op = Operation::new(&id("read", "", ""), "get", &gvk, rt)
                .description(&format!("read the specified {}", rt.kind))
                .response("200", kind_ref.as_deref(), READ_TYPES);
            item.insert("get".into(), op.into_value());
        }
        if rt.supports_verb("update") {
            let op = Operation::new(&id("replace", "", ""), "put", &gvk, rt)
                .description(&format!("replace the specified {}", rt.kind))
                .parameters(write_parameters())
                .body(kind_ref.as_deref(), &["*/*"])
                .response("200", kind_ref.as_deref(), READ_TYPES)
                .response("201", kind_ref.as_deref(), READ_TYPES);
            item.insert("put".into(), op.into_value());
        }
        if rt.supports_verb("delete") {
            let status = schema_ref(&self.meta.status);
            let op = Operation::new(&id("delete", "", ""), "delete", &gvk, rt)
                .description(&format!("delete {}", article(rt.kind)))
                .parameters(delete_parameters())
                .body(Some(&schema_ref(&self.meta.delete_options)), &["*/*"])
                .response("200", Some(&status), READ_TYPES)
                .response("202", Some(&status), READ_TYPES);
            item.insert("delete".into(), op.into_value());
        }
        if rt.supports_verb("patch") {
            let op = Operation::new(&id("patch", "", ""), "patch", &gvk, rt)
                .description(&format!("partially update the specified {}", rt.kind))
                .parameters(patch_parameters())
                .body(Some(&schema_ref(&self.meta.patch)), PATCH_TYPES)
                .response("200", kind_ref.as_deref(), READ_TYPES)
                .response("201", kind_ref.as_deref(), READ_TYPES);
            item.insert("patch".into(), op.into_value());
        }
        if !item.is_empty() {
            item.insert("parameters".into(), path_parameters(rt.namespaced, true));
            paths.insert(item_path.clone(), Value::Object(item));
        }

        for sub in rt.subresources {
            let mut ops = self.subresource_operations(sub, &id);
            if !ops.is_empty() {
                ops.insert("parameters".into(), path_parameters(rt.namespaced, true));
                paths.insert(format!("{item_path}/{}", sub.name), Value::Object(ops));
            }
        }
    }

    /// The operations of one subresource (`pods/status`, `deployments/scale`, `pods/exec`, ...).
    fn subresource_operations(
        &self,
        sub: &Subresource,
        id: &dyn Fn(&str, &str, &str) -> String,
    ) -> Map<String, Value> {
        let rt = self.resource;
        let gvk = gvk(sub.group, sub.version, sub.kind);
        let schema = self.schema_ref(sub.group, sub.version, sub.kind);
        let suffix = capitalize(sub.name);
        let mut ops = Map::new();

        if CONNECT_SUBRESOURCES.contains(&sub.name) {
            for (method, verb, infix) in [("get", "get", "Get"), ("post", "create", "Post")] {
                if !sub.verbs.contains(&verb) {
                    continue;
                }
                let op = Operation::new(&id("connect", infix, &suffix), "connect", &gvk, rt)
                    .description(&format!(
                        "connect {} requests to {} of {}",
                        method.to_uppercase(),
                        sub.name,
                        rt.kind
                    ))
                    .parameters(connect_parameters(sub.name))
                    .string_response("*/*");
                ops.insert(method.into(), op.into_value());
            }
            return ops;
        }
        if sub.name == "log" {
            let op = Operation::new(&id("read", "", &suffix), "get", &gvk, rt)
                .description(&format!("read log of the specified {}", rt.kind))
                .parameters(log_parameters())
                .string_response("text/plain");
            ops.insert("get".into(), op.into_value());
            return ops;
        }

        let of = format!("{} of the specified {}", sub.name, rt.kind);
        if sub.verbs.contains(&"get") {
            let op = Operation::new(&id("read", "", &suffix), "get", &gvk, rt)
                .description(&format!("read {of}"))
                .response("200", schema.as_deref(), READ_TYPES);
            ops.insert("get".into(), op.into_value());
        }
        if sub.verbs.contains(&"create") {
            let op = Operation::new(&id("create", "", &suffix), "post", &gvk, rt)
                .description(&format!("create {} of {}", sub.name, article(rt.kind)))
                .parameters(write_parameters())
                .body(schema.as_deref(), &["*/*"])
                .response("200", schema.as_deref(), READ_TYPES)
                .response("201", schema.as_deref(), READ_TYPES)
                .response("202", schema.as_deref(), READ_TYPES);
            ops.insert("post".into(), op.into_value());
        }
        if sub.verbs.contains(&"update") {
            let op = Operation::new(&id("replace", "", &suffix), "put", &gvk, rt)
                .description(&format!("replace {of}"))
                .parameters(write_parameters())
                .body(schema.as_deref(), &["*/*"])
                .response("200", schema.as_deref(), READ_TYPES)
                .response("201", schema.as_deref(), READ_TYPES);
            ops.insert("put".into(), op.into_value());
        }
        if sub.verbs.contains(&"patch") {
            let op = Operation::new(&id("patch", "", &suffix), "patch", &gvk, rt)
                .description(&format!("partially update {of}"))
                .parameters(patch_parameters())
                .body(Some(&schema_ref(&self.meta.patch)), PATCH_TYPES)
                .response("200", schema.as_deref(), READ_TYPES)
                .response("201", schema.as_deref(), READ_TYPES);
            ops.insert("patch".into(), op.into_value());
        }
        ops
    }

    fn schema_ref(&self, group: &str, version: &str, kind: &str) -> Option<String> {
        self.schemas
            .get(&(group.to_string(), version.to_string(), kind.to_string()))
            .map(|name| schema_ref(name))
    }
}

/// One operation under construction.
struct Operation(Map<String, Value>);

impl Operation {
    fn new(operation_id: &str, action: &str, gvk: &Value, rt: &ResourceType) -> Self {
        let mut op = Map::new();
        op.insert(
            "tags".into(),
            json!([format!("{}_{}", tag_group(rt.group), rt.version)]),
        );
        op.insert("operationId".into(), operation_id.into());
        op.insert("x-kubernetes-action".into(), action.into());
        op.insert("x-kubernetes-group-version-kind".into(), gvk.clone());
        op.insert(
            "responses".into(),
            json!({"401": {"description": "Unauthorized"}}),
        );
        Operation(op)
    }

    fn description(mut self, description: &str) -> Self {
        self.0.insert("description".into(), description.into());
        self
    }

    fn parameters(mut self, parameters: Vec<Value>) -> Self {
        self.0.insert("parameters".into(), Value::Array(parameters));
        self
    }

    fn body(mut self, schema: Option<&str>, content_types: &[&str]) -> Self {
        self.0.insert(
            "requestBody".into(),
            json!({"content": content(schema, content_types), "required": true}),
        );
        self
    }

    fn response(mut self, code: &str, schema: Option<&str>, content_types: &[&str]) -> Self {
        let description = match code {
            "201" => "Created",
            "202" => "Accepted",
            _ => "OK",
        };
        if let Some(responses) = self.0.get_mut("responses").and_then(Value::as_object_mut) {
            responses.insert(
                code.into(),
                json!({"description": description, "content": content(schema, content_types)}),
            );
        }
        self
    }

    fn string_response(mut self, content_type: &str) -> Self {
        if let Some(responses) = self.0.get_mut("responses").and_then(Value::as_object_mut) {
            responses.insert(
                "200".into(),
                json!({"description": "OK", "content": {content_type: {"schema": {"type": "string"}}}}),
            );
        }
        self
    }

    fn into_value(self) -> Value {
        Value::Object(self.0)
    }
}

/// `{"<type>": {"schema": {"$ref": ...}}}` for each content type; a free-form object when
/// there is no schema.
fn content(schema: Option<&str>, content_types: &[&str]) -> Value {
    let schema = match schema {
        Some(reference) => json!({"$ref": reference}),
        None => json!({"type": "object"}),
    };
    let mut map = Map::new();
    for content_type in content_types {
        map.insert((*content_type).into(), json!({"schema": schema}));
    }
    Value::Object(map)
}

fn schema_ref(name: &str) -> String {
    format!("#/components/schemas/{name}")
}

fn gvk(group: &str, version: &str, kind: &str) -> Value {
    json!({"group": group, "kind": kind, "version": version})
}

/// `/api/v1` for the core group, `/apis/<group>/<version>` otherwise.
pub(crate) fn api_prefix(group: &str, version: &str) -> String {
    if group.is_empty() {
        format!("/api/{version}")
    } else {
        format!("/apis/{group}/{version}")
    }
}

/// The group as upstream spells it in operation ids: `Core`, `Apps`, `RbacAuthorization`,
/// `Networking` (the `.k8s.io` suffix dropped, every dot-separated part capitalized).
fn group_id(group: &str) -> String {
    if group.is_empty() {
        return "Core".into();
    }
    let group = group.strip_suffix(".k8s.io").unwrap_or(group);
    group.split('.').map(capitalize).collect()
}

/// The group as upstream spells it in tags: `core`, `apps`, `rbacAuthorization`.
fn tag_group(group: &str) -> String {
    let id = group_id(group);
    let mut chars = id.chars();
    match chars.next() {
        Some(first) => first.to_lowercase().chain(chars).collect(),
        None => id,
    }
}

fn capitalize(word: &str) -> String {
    let mut chars = word.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}

/// "a ConfigMap", "an Ingress".
fn article(kind: &str) -> String {
    match kind.chars().next() {
        Some('A' | 'E' | 'I' | 'O' | 'U') => format!("an {kind}"),
        _ => format!("a {kind}"),
    }
}

fn parameter(name: &str, location: &str, schema_type: &str, description: &str) -> Value {
    let mut param = json!({
        "name": name,
        "in": location,
        "description": description,
        "schema": {"type": schema_type, "uniqueItems": true},
    });
    if location == "path" {
        param["required"] = true.into();
    }
    param
}

fn pretty_parameter() -> Value {
    parameter(
        "pretty",
        "query",
        "string",
        "If 'true', then the output is pretty printed.",
    )
}

fn path_parameters(namespaced: bool, named: bool) -> Value {
    let mut params = Vec::new();
    if named {
        params.push(parameter("name", "path", "string", "name of the object"));
    }
    if namespaced {
        params.push(parameter(
            "namespace",
            "path",
            "string",
            "object name and auth scope, such as for teams and projects",
        ));
    }
    params.push(pretty_parameter());
    Value::Array(params)
}

fn dry_run() -> Value {
    parameter(
        "dryRun",
        "query",
        "string",
        "When present, indicates that modifications should not be persisted. Valid values are: \
         - All: all dry run stages will be processed",
    )
}

fn field_manager() -> Value {
    parameter(
        "fieldManager",
        "query",
        "string",
        "fieldManager is a name associated with the actor or entity that is making these changes.",
    )
}

fn field_validation() -> Value {
    parameter(
        "fieldValidation",
        "query",
        "string",
        "fieldValidation instructs the server on how to handle objects in the request \
         (POST/PUT/PATCH) containing unknown or duplicate fields. Valid values are: \
         - Ignore: drops unknown fields silently. \
         - Warn: sends a warning for each unknown field and each duplicate field. \
         - Strict: fails the request with a BadRequest error on unknown or duplicate fields.",
    )
}

fn write_parameters() -> Vec<Value> {
    vec![dry_run(), field_manager(), field_validation()]
}

fn patch_parameters() -> Vec<Value> {
    vec![
        dry_run(),
        field_manager(),
        field_validation(),
        parameter(
            "force",
            "query",
            "boolean",
            "Force is going to \"force\" Apply requests: the request is re-acquiring conflicting \
             fields owned by other people. It must be unset for non-apply patch requests.",
        ),
    ]
}

const LIST_QUERY: &[(&str, &str, &str)] = &[
    ("allowWatchBookmarks", "boolean", "allowWatchBookmarks requests watch events with type \"BOOKMARK\"."),
    ("continue", "string", "The continue option should be set when retrieving more results from the server."),
    ("fieldSelector", "string", "A selector to restrict the list of returned objects by their fields. Defaults to everything."),
    ("labelSelector", "string", "A selector to restrict the list of returned objects by their labels. Defaults to everything."),
    ("limit", "integer", "limit is a maximum number of responses to return for a list call."),
    ("resourceVersion", "string", "resourceVersion sets a constraint on what resource versions a request may be served from."),
    ("resourceVersionMatch", "string", "resourceVersionMatch determines how resourceVersion is applied to list calls."),
    ("sendInitialEvents", "boolean", "`sendInitialEvents=true` may be set together with `watch=true`."),
    ("timeoutSeconds", "integer", "Timeout for the list/watch call."),
    ("watch", "boolean", "Watch for changes to the described resources and return them as a stream of add, update, and remove notifications."),
];

const DELETE_QUERY: &[(&str, &str, &str)] = &[
    ("gracePeriodSeconds", "integer", "The duration in seconds before the object should be deleted."),
    ("ignoreStoreReadErrorWithClusterBreakingPotential", "boolean", "if set to true, it will trigger an unsafe deletion of the resource in case the normal deletion flow fails with a corrupt object error."),
    ("orphanDependents", "boolean", "Deprecated: please use the PropagationPolicy, this field will be deprecated in 1.7."),
    ("propagationPolicy", "string", "Whether and how garbage collection will be performed. Acceptable values are: 'Orphan', 'Background', 'Foreground'."),
];

fn query<'a>(table: &'a [(&'a str, &'a str, &'a str)]) -> impl Iterator<Item = Value> + 'a {
    table
        .iter()
        .map(|(name, schema_type, description)| parameter(name, "query", schema_type, description))
}

fn list_parameters() -> Vec<Value> {
    query(LIST_QUERY).collect()
}

fn delete_parameters() -> Vec<Value> {
    std::iter::once(dry_run())
        .chain(query(DELETE_QUERY))
        .collect()
}

fn delete_collection_parameters() -> Vec<Value> {
    let mut params: Vec<Value> = std::iter::once(dry_run())
        .chain(query(DELETE_QUERY))
        .chain(
            query(LIST_QUERY)
                .filter(|p| p["name"] != "allowWatchBookmarks" && p["name"] != "watch"),
        )
        .collect();
    params.sort_by(|a, b| a["name"].as_str().cmp(&b["name"].as_str()));
    params
}

fn connect_parameters(subresource: &str) -> Vec<Value> {
    let table: &[(&str, &str, &str)] = match subresource {
        "exec" => &[
            (
                "command",
                "string",
                "Command is the remote command to execute. argv array.",
            ),
            (
                "container",
                "string",
                "Container in which to execute the command.",
            ),
            (
                "stderr",
                "boolean",
                "Redirect the standard error stream of the pod for this call.",
            ),
            (
                "stdin",
                "boolean",
                "Redirect the standard input stream of the pod for this call.",
            ),
            (
                "stdout",
                "boolean",
                "Redirect the standard output stream of the pod for this call.",
            ),
            (
                "tty",
                "boolean",
                "TTY if true indicates that a tty will be allocated for the exec call.",
            ),
        ],
        "attach" => &[
            (
                "container",
                "string",
                "The container in which to execute the command.",
            ),
            (
                "stderr",
                "boolean",
                "Stderr if true indicates that stderr is to be redirected for the attach call.",
            ),
            (
                "stdin",
                "boolean",
                "Stdin if true, redirects the standard input stream of the pod for this call.",
            ),
            (
                "stdout",
                "boolean",
                "Stdout if true indicates that stdout is to be redirected for the attach call.",
            ),
            (
                "tty",
                "boolean",
                "TTY if true indicates that a tty will be allocated for the attach call.",
            ),
        ],
        "portforward" => &[("ports", "integer", "List of ports to forward.")],
        _ => &[(
            "path",
            "string",
            "Path is the URL path to use for the current proxy request.",
        )],
    };
    query(table).collect()
}

fn log_parameters() -> Vec<Value> {
    query(&[
        ("container", "string", "The container for which to stream logs."),
        ("follow", "boolean", "Follow the log stream of the pod."),
        ("insecureSkipTLSVerifyBackend", "boolean", "insecureSkipTLSVerifyBackend indicates that the apiserver should not confirm the validity of the serving certificate of the backend it is connecting to."),
        ("limitBytes", "integer", "If set, the number of bytes to read from the server before terminating the log output."),
        ("previous", "boolean", "Return previous terminated container logs."),
        ("sinceSeconds", "integer", "A relative time in seconds before the current time from which to show logs."),
        ("stream", "string", "Specify which container log stream to return to the client."),
        ("tailLines", "integer", "If set, the number of lines from the end of the logs to show."),
        ("timestamps", "boolean", "If true, add an RFC3339 or RFC3339Nano timestamp at the beginning of every line of log output."),
    ])
    .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upstream_spelling() {
        assert_eq!(group_id(""), "Core");
        assert_eq!(group_id("rbac.authorization.k8s.io"), "RbacAuthorization");
        assert_eq!(group_id("apps"), "Apps");
        assert_eq!(tag_group("networking.k8s.io"), "networking");
        assert_eq!(tag_group("rbac.authorization.k8s.io"), "rbacAuthorization");
        assert_eq!(article("Ingress"), "an Ingress");
        assert_eq!(api_prefix("apps", "v1"), "/apis/apps/v1");
    }
}
