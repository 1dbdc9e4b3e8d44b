//! Authorization: which authenticated requests may proceed.
//!
//! Authorizers are asked in upstream's order and the first that allows wins: the
//! `system:masters` group (the break-glass credential, bypasses everything), the Node
//! authorizer (node credentials: their own Node, Lease and pods, and only the Secrets,
//! ConfigMaps, PVCs and PVs those pods use), then RBAC over the stored Roles, ClusterRoles and
//! bindings. Nothing allows → 403 with upstream's message. Impersonation headers are resolved
//! here too (behind the `impersonate` verb), and the create/update admission that needs the
//! caller's permissions (RBAC escalation and bind checks, NodeRestriction) is [`Admission`].
//!
//! It is not authentication (`crate::authn`, the TLS layer) and keeps no state of its own but
//! a snapshot of the RBAC objects, reloaded whenever they change.

pub mod bootstrap;
mod cache;
mod node;
pub mod rbac;
mod review;

use std::sync::Arc;

use http::HeaderMap;
use kubelab_pki::Identity;
use kubelab_resources::catalog::ResourceType;
use serde_json::Value;

use crate::error::{ApiError, ApiResult, Details};
use crate::request::Query;
use crate::route::{self, Route};

pub use cache::Authorizer;
pub use node::admit_token_request;
pub use review::answer as answer_review;

/// Groups whose members are allowed everything without consulting RBAC.
pub const PRIVILEGED_GROUP: &str = "system:masters";

/// What a request asks to do (upstream's `authorizer.Attributes`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Attributes {
    pub verb: String,
    pub resource_request: bool,
    pub api_group: String,
    pub resource: String,
    pub subresource: String,
    pub name: String,
    pub namespace: String,
    /// The URL path of a non-resource request.
    pub path: String,
}

impl Attributes {
    /// The attributes of an HTTP request, as upstream's RequestInfo derives them.
    pub fn of_request(method: &http::Method, path: &str, query: &Query) -> Attributes {
        let Some(Route::Resource(p)) = route::parse(path) else {
            return Attributes {
                verb: method.as_str().to_ascii_lowercase(),
                path: path.to_string(),
                ..Attributes::default()
            };
        };
        let name = p.name.clone().unwrap_or_default();
        let sub = p.subresource.clone().unwrap_or_default();
        let connect = p.group.is_empty()
            && p.resource == "pods"
            && matches!(sub.as_str(), "exec" | "attach" | "portforward");
        let verb = match *method {
            http::Method::GET | http::Method::HEAD if connect => "create",
            http::Method::GET | http::Method::HEAD if !name.is_empty() => "get",
            http::Method::GET | http::Method::HEAD => {
                if query.flag("watch") {
                    "watch"
                } else {
                    "list"
                }
            }
            http::Method::POST => "create",
            http::Method::PUT => "update",
            http::Method::PATCH => "patch",
            http::Method::DELETE if !name.is_empty() => "delete",
            http::Method::DELETE => "deletecollection",
            _ => "",
        };
        let mut name = name;
        if name.is_empty() && matches!(verb, "list" | "watch" | "deletecollection") {
            // A list or watch of one object by name is authorized as that object.
            if let Some(selector) = query.get("fieldSelector") {
                for term in selector.split(',') {
                    if let Some(v) = term
                        .strip_prefix("metadata.name==")
                        .or_else(|| term.strip_prefix("metadata.name="))
                    {
                        name = v.to_string();
                    }
                }
            }
        }
        let namespace = match (&p.namespace, p.resource.as_str()) {
            (Some(ns), _) => ns.clone(),
            // A namespace is in itself, as upstream's RequestInfo has it.
            (None, "namespaces") if p.group.is_empty() && !name.is_empty() => name.clone(),
            _ => String::new(),
        };
        Attributes {
            verb: verb.to_string(),
            resource_request: true,
            api_group: p.group,
            resource: p.resource,
            subresource: sub,
            name,
            namespace,
            path: path.to_string(),
        }
    }

    pub fn resource(verb: &str, group: &str, resource: &str, namespace: &str, name: &str) -> Self {
        Attributes {
            verb: verb.into(),
            resource_request: true,
            api_group: group.into(),
            resource: resource.into(),
            namespace: namespace.into(),
            name: name.into(),
            ..Attributes::default()
        }
    }
}

/// Upstream's `forbiddenMessage` wrapped by `NewForbidden`: the 403 a denied request gets.
pub fn forbidden(user: &str, a: &Attributes, reason: &str) -> ApiError {
    let mut message = if !a.resource_request {
        format!("User {user:?} cannot {} path {:?}", a.verb, a.path)
    } else {
        let resource = if a.subresource.is_empty() {
            a.resource.clone()
        } else {
            format!("{}/{}", a.resource, a.subresource)
        };
        let scope = if a.namespace.is_empty() {
            "at the cluster scope".to_string()
        } else {
            format!("in the namespace {:?}", a.namespace)
        };
        format!(
            "User {user:?} cannot {} resource {resource:?} in API group {:?} {scope}",
            a.verb, a.api_group
        )
    };
    if !reason.is_empty() {
        message = format!("{message}: {reason}");
    }
    forbidden_for(
        &a.api_group,
        &a.resource,
        &a.name,
        a.resource_request,
        message,
    )
}

/// A 403 about one resource (or, without a resource, the bare `forbidden: ...`).
fn forbidden_for(
    group: &str,
    resource: &str,
    name: &str,
    resource_request: bool,
    message: String,
) -> ApiError {
    if !resource_request || resource.is_empty() {
        return ApiError::Forbidden {
            message: format!("forbidden: {message}"),
            details: None,
        };
    }
    let qualified = if group.is_empty() {
        resource.to_string()
    } else {
        format!("{resource}.{group}")
    };
    let message = if name.is_empty() {
        format!("{qualified} is forbidden: {message}")
    } else {
        format!("{qualified} {name:?} is forbidden: {message}")
    };
    ApiError::Forbidden {
        message,
        details: Some(Details {
            group: group.into(),
            kind: resource.into(),
            name: name.into(),
        }),
    }
}

pub fn is_privileged(id: &Identity) -> bool {
    id.groups.iter().any(|g| g == PRIVILEGED_GROUP)
}

const IMPERSONATE_USER: &str = "impersonate-user";
const IMPERSONATE_GROUP: &str = "impersonate-group";
const IMPERSONATE_UID: &str = "impersonate-uid";
const IMPERSONATE_EXTRA: &str = "impersonate-extra-";

/// Resolve `Impersonate-*` headers: each requested user, group, uid and extra must be
/// allowed to the caller by the `impersonate` verb; the request then runs as that user.
pub async fn impersonate(
    authorizer: &Authorizer,
    caller: Identity,
    headers: &HeaderMap,
) -> ApiResult<Identity> {
    let values = |name: &str| -> Vec<String> {
        headers
            .get_all(name)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .map(String::from)
            .collect()
    };
    let user = values(IMPERSONATE_USER).into_iter().next();
    let groups = values(IMPERSONATE_GROUP);
    let uid = values(IMPERSONATE_UID);
    let extras: Vec<(String, String)> = headers
        .iter()
        .filter_map(|(k, v)| {
            let key = k.as_str().strip_prefix(IMPERSONATE_EXTRA)?;
            Some((key.to_string(), v.to_str().ok()?.to_string()))
        })
        .collect();
    let Some(user) = user else {
        if groups.is_empty() && uid.is_empty() && extras.is_empty() {
            return Ok(caller);
        }
        return Err(ApiError::bad_request(
            "requested impersonation of groups, uid or extras without impersonating a user",
        ));
    };
    let mut checks = Vec::new();
    let service_account = user
        .strip_prefix("system:serviceaccount:")
        .and_then(|rest| rest.split_once(':'));
    match service_account {
        Some((ns, name)) => checks.push(Attributes::resource(
            "impersonate",
            "",
            "serviceaccounts",
            ns,
            name,
        )),
        None => checks.push(Attributes::resource("impersonate", "", "users", "", &user)),
    }
    for g in &groups {
        checks.push(Attributes::resource("impersonate", "", "groups", "", g));
    }
    for u in &uid {
        checks.push(Attributes::resource(
            "impersonate",
            "authentication.k8s.io",
            "uids",
            "",
            u,
        ));
    }
    for (key, value) in &extras {
        let mut a = Attributes::resource(
            "impersonate",
            "authentication.k8s.io",
            "userextras",
            "",
            value,
        );
        a.subresource = key.clone();
        checks.push(a);
    }
    for check in &checks {
        if let Err(reason) = authorizer.authorize(&caller, check).await {
            return Err(forbidden(&caller.user, check, &reason));
        }
    }
    let mut groups = groups;
    if let (Some((ns, _)), true) = (service_account, groups.is_empty()) {
        groups = vec![
            "system:serviceaccounts".to_string(),
            format!("system:serviceaccounts:{ns}"),
        ];
    }
    if user != "system:anonymous"
        && !groups
            .iter()
            .any(|g| g == "system:authenticated" || g == "system:unauthenticated")
    {
        groups.push("system:authenticated".into());
    }
    Ok(Identity { user, groups })
}

/// Create/update admission that depends on who asks: RBAC escalation prevention and
/// NodeRestriction. Synchronous over an RBAC snapshot, so it can run inside an update.
pub struct Admission {
    identity: Identity,
    rbac: Arc<rbac::RbacState>,
}

impl Admission {
    pub fn new(authorizer: &Authorizer, identity: &Identity) -> Admission {
        Admission {
            identity: identity.clone(),
            rbac: authorizer.snapshot(),
        }
    }

    /// Admit `new` (replacing `current`, when an update) of type `rt` in `ns`.
    pub fn admit(
        &self,
        rt: &ResourceType,
        ns: Option<&str>,
        current: Option<&Value>,
        new: &Value,
    ) -> ApiResult<()> {
        if is_privileged(&self.identity) {
            return Ok(());
        }
        node::admit(&self.identity, rt, ns, current, new)?;
        if rt.group == "rbac.authorization.k8s.io" {
            self.admit_rbac(rt, ns.unwrap_or(""), current, new)?;
        }
        Ok(())
    }

    fn admit_rbac(
        &self,
        rt: &ResourceType,
        ns: &str,
        current: Option<&Value>,
        new: &Value,
    ) -> ApiResult<()> {
        let id = &self.identity;
        let name = crate::object::name(new);
        let held = || self.rbac.rules_for(&id.user, &id.groups, ns);
        let may = |verb: &str, resource: &str, name: &str| {
            let a = Attributes::resource(verb, "rbac.authorization.k8s.io", resource, ns, name);
            self.rbac.allows(&id.user, &id.groups, &a).is_some()
        };
        let wanted = match rt.plural {
            "roles" | "clusterroles" => {
                let rules = rbac::rules_of(new);
                if current.is_some_and(|c| {
                    rbac::rules_of(c) == rules
                        && c.get("aggregationRule") == new.get("aggregationRule")
                }) {
                    return Ok(());
                }
                if may("escalate", rt.plural, name) {
                    return Ok(());
                }
                if new.get("aggregationRule").is_some_and(|r| !r.is_null()) {
                    // Aggregation can gather any rule: it needs every permission.
                    vec![
                        rbac::PolicyRule::new(&["*"], &["*"], &["*"]),
                        rbac::PolicyRule::urls(&["*"], &["*"]),
                    ]
                } else {
                    rules
                }
            }
            "rolebindings" | "clusterrolebindings" => {
                let Some(binding) = rbac::Binding::from_object(new) else {
                    return Ok(()); // validation reports the missing roleRef
                };
                let role_resource = match binding.role_ref.kind.as_str() {
                    "Role" => "roles",
                    _ => "clusterroles",
                };
                if may("bind", role_resource, &binding.role_ref.name) {
                    return Ok(());
                }
                self.rbac
                    .referenced_rules(&binding.role_ref.kind, &binding.role_ref.name, ns)
            }
            _ => return Ok(()),
        };
        let missing = rbac::uncovered(&held(), &wanted);
        if missing.is_empty() {
            return Ok(());
        }
        let listed: Vec<String> = missing.iter().map(describe_rule).collect();
        Err(forbidden_for(
            rt.group,
            rt.plural,
            name,
            true,
            format!(
                "user {:?} (groups={:?}) is attempting to grant RBAC permissions not currently held:\n{}",
                id.user,
                id.groups,
                listed.join("\n")
            ),
        ))
    }
}

/// A rule the way upstream prints it in escalation errors.
fn describe_rule(r: &rbac::PolicyRule) -> String {
    let list = |l: &[String]| {
        let quoted: Vec<String> = l.iter().map(|s| format!("{s:?}")).collect();
        format!("[{}]", quoted.join(" "))
    };
    let mut parts = Vec::new();
    if !r.api_groups.is_empty() {
        parts.push(format!("APIGroups:{}", list(&r.api_groups)));
    }
    if !r.resources.is_empty() {
        parts.push(format!("Resources:{}", list(&r.resources)));
    }
    if !r.resource_names.is_empty() {
        parts.push(format!("ResourceNames:{}", list(&r.resource_names)));
    }
    if !r.non_resource_urls.is_empty() {
        parts.push(format!("NonResourceURLs:{}", list(&r.non_resource_urls)));
    }
    parts.push(format!("Verbs:{}", list(&r.verbs)));
    format!("{{{}}}", parts.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(raw: &str) -> Query {
        Query::parse(Some(raw)).unwrap()
    }

    #[test]
    fn request_attributes_follow_request_info() {
        let a = Attributes::of_request(&http::Method::GET, "/api/v1/namespaces/b/pods", &q(""));
        assert_eq!(
            (a.verb.as_str(), a.namespace.as_str(), a.resource.as_str()),
            ("list", "b", "pods")
        );
        let w = Attributes::of_request(&http::Method::GET, "/api/v1/pods", &q("watch=true"));
        assert_eq!(w.verb, "watch");
        let one = Attributes::of_request(
            &http::Method::GET,
            "/api/v1/namespaces/b/secrets",
            &q("fieldSelector=metadata.name%3Ds1&watch=1"),
        );
        assert_eq!((one.verb.as_str(), one.name.as_str()), ("watch", "s1"));
        let ns = Attributes::of_request(&http::Method::DELETE, "/api/v1/namespaces/x", &q(""));
        assert_eq!(
            (ns.verb.as_str(), ns.namespace.as_str(), ns.name.as_str()),
            ("delete", "x", "x")
        );
        let exec = Attributes::of_request(
            &http::Method::GET,
            "/api/v1/namespaces/b/pods/p/exec",
            &q(""),
        );
        assert_eq!(
            (exec.verb.as_str(), exec.subresource.as_str()),
            ("create", "exec")
        );
        let url = Attributes::of_request(&http::Method::GET, "/healthz", &q(""));
        assert!(!url.resource_request);
        assert_eq!(url.path, "/healthz");
    }

    #[test]
    fn forbidden_messages_are_upstream_s() {
        let a = Attributes::resource("list", "", "pods", "b", "");
        assert_eq!(
            forbidden("x", &a, "").to_string(),
            "pods is forbidden: User \"x\" cannot list resource \"pods\" in API group \"\" in the namespace \"b\""
        );
        let d = Attributes::resource("get", "apps", "deployments", "", "web");
        assert_eq!(
            forbidden("x", &d, "").to_string(),
            "deployments.apps \"web\" is forbidden: User \"x\" cannot get resource \"deployments\" in API group \"apps\" at the cluster scope"
        );
        let u = Attributes {
            verb: "get".into(),
            path: "/metrics".into(),
            ..Attributes::default()
        };
        assert_eq!(
            forbidden("x", &u, "").to_string(),
            "forbidden: User \"x\" cannot get path \"/metrics\""
        );
    }
}
