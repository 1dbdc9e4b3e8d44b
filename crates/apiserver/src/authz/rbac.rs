//! Role-based access control: upstream's rule matching (`evaluation_helpers.go` semantics),
//! binding subjects, the rules that apply to a user, and rule coverage for escalation checks.
//!
//! Everything here is pure: it works on an [`RbacState`] snapshot of the stored Roles,
//! ClusterRoles and their bindings, kept current by [`super::cache`].

use std::collections::HashMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::Attributes;

/// One `rules[]` entry of a Role or ClusterRole.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PolicyRule {
    #[serde(default)]
    pub verbs: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub api_groups: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub resources: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub resource_names: Vec<String>,
    #[serde(
        default,
        rename = "nonResourceURLs",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub non_resource_urls: Vec<String>,
}

fn has(list: &[String], want: &str) -> bool {
    list.iter().any(|v| v == "*" || v == want)
}

impl PolicyRule {
    pub fn new(verbs: &[&str], groups: &[&str], resources: &[&str]) -> PolicyRule {
        let owned = |l: &[&str]| l.iter().map(|s| s.to_string()).collect();
        PolicyRule {
            verbs: owned(verbs),
            api_groups: owned(groups),
            resources: owned(resources),
            ..PolicyRule::default()
        }
    }

    pub fn urls(verbs: &[&str], urls: &[&str]) -> PolicyRule {
        let owned = |l: &[&str]| l.iter().map(|s| s.to_string()).collect();
        PolicyRule {
            verbs: owned(verbs),
            non_resource_urls: owned(urls),
            ..PolicyRule::default()
        }
    }

    #[cfg(test)]
    pub fn names(mut self, names: &[&str]) -> PolicyRule {
        self.resource_names = names.iter().map(|s| s.to_string()).collect();
        self
    }

    fn resource_matches(&self, resource: &str, subresource: &str) -> bool {
        let combined = if subresource.is_empty() {
            resource.to_string()
        } else {
            format!("{resource}/{subresource}")
        };
        self.resources.iter().any(|r| {
            r == "*"
                || *r == combined
                || (!subresource.is_empty() && r.strip_prefix("*/") == Some(subresource))
        })
    }

    fn name_matches(&self, name: &str) -> bool {
        self.resource_names.is_empty() || self.resource_names.iter().any(|n| n == name)
    }

    fn url_matches(&self, path: &str) -> bool {
        self.non_resource_urls.iter().any(|u| {
            u == "*"
                || u == path
                || u.strip_suffix('*')
                    .is_some_and(|prefix| path.starts_with(prefix))
        })
    }

    /// Does this rule allow the request?
    pub fn allows(&self, a: &Attributes) -> bool {
        if !has(&self.verbs, &a.verb) {
            return false;
        }
        if a.resource_request {
            has(&self.api_groups, &a.api_group)
                && self.resource_matches(&a.resource, &a.subresource)
                && self.name_matches(&a.name)
        } else {
            self.url_matches(&a.path)
        }
    }

    /// Split into rules of one verb, group, resource and name each (upstream's
    /// `BreakdownRule`), for coverage checks.
    fn breakdown(&self) -> Vec<PolicyRule> {
        let mut out = Vec::new();
        for verb in &self.verbs {
            for group in &self.api_groups {
                for resource in &self.resources {
                    let one = |names: Vec<String>| PolicyRule {
                        verbs: vec![verb.clone()],
                        api_groups: vec![group.clone()],
                        resources: vec![resource.clone()],
                        resource_names: names,
                        non_resource_urls: Vec::new(),
                    };
                    if self.resource_names.is_empty() {
                        out.push(one(Vec::new()));
                    } else {
                        for n in &self.resource_names {
                            out.push(one(vec![n.clone()]));
                        }
                    }
                }
            }
            for url in &self.non_resource_urls {
                out.push(PolicyRule {
                    verbs: vec![verb.clone()],
                    non_resource_urls: vec![url.clone()],
                    ..PolicyRule::default()
                });
            }
        }
        out
    }

    /// Does this (owner) rule grant everything the single-valued rule `r` grants?
    fn covers_atom(&self, r: &PolicyRule) -> bool {
        let covers_list =
            |owner: &[String], want: &str| owner.iter().any(|o| o == "*" || o == want);
        let verb = &r.verbs[0];
        if !covers_list(&self.verbs, verb) {
            return false;
        }
        if let Some(url) = r.non_resource_urls.first() {
            return self.non_resource_urls.iter().any(|o| {
                o == "*"
                    || o == url
                    || o.strip_suffix('*').is_some_and(|prefix| {
                        url.strip_suffix('*').unwrap_or(url).starts_with(prefix)
                    })
            });
        }
        let (Some(group), Some(resource)) = (r.api_groups.first(), r.resources.first()) else {
            return false;
        };
        if !covers_list(&self.api_groups, group) {
            return false;
        }
        let resource_covered = self.resources.iter().any(|o| {
            o == "*"
                || o == resource
                || match (o.strip_prefix("*/"), resource.split_once('/')) {
                    (Some(osub), Some((_, sub))) => osub == sub,
                    _ => false,
                }
        });
        if !resource_covered {
            return false;
        }
        self.resource_names.is_empty()
            || r.resource_names
                .first()
                .is_some_and(|n| self.resource_names.contains(n))
    }
}

/// Rules of `wanted` that `owner` does not grant (empty: everything is covered).
pub fn uncovered(owner: &[PolicyRule], wanted: &[PolicyRule]) -> Vec<PolicyRule> {
    wanted
        .iter()
        .flat_map(PolicyRule::breakdown)
        .filter(|atom| !owner.iter().any(|o| o.covers_atom(atom)))
        .collect()
}

/// A `subjects[]` entry.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct Subject {
    #[serde(default)]
    pub kind: String,
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub namespace: String,
}

impl Subject {
    /// Upstream's `appliesToUser`; `binding_ns` is a RoleBinding's namespace, which a
    /// ServiceAccount subject without one defaults to.
    pub fn applies_to(&self, user: &str, groups: &[String], binding_ns: &str) -> bool {
        match self.kind.as_str() {
            "User" => self.name == user,
            "Group" => groups.contains(&self.name),
            "ServiceAccount" => {
                let ns = if self.namespace.is_empty() {
                    binding_ns
                } else {
                    &self.namespace
                };
                user == format!("system:serviceaccount:{ns}:{}", self.name)
            }
            _ => false,
        }
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct RoleRef {
    #[serde(default)]
    pub kind: String,
    #[serde(default)]
    pub name: String,
}

#[derive(Debug, Clone, Default)]
pub struct Binding {
    pub name: String,
    pub namespace: String,
    pub role_ref: RoleRef,
    pub subjects: Vec<Subject>,
}

impl Binding {
    pub fn from_object(obj: &Value) -> Option<Binding> {
        let meta = obj.get("metadata")?;
        Some(Binding {
            name: meta.get("name")?.as_str()?.to_string(),
            namespace: meta
                .get("namespace")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string(),
            role_ref: serde_json::from_value(obj.get("roleRef")?.clone()).ok()?,
            subjects: obj
                .get("subjects")
                .cloned()
                .and_then(|s| serde_json::from_value(s).ok())
                .unwrap_or_default(),
        })
    }

    fn applies_to(&self, user: &str, groups: &[String]) -> bool {
        self.subjects
            .iter()
            .any(|s| s.applies_to(user, groups, &self.namespace))
    }
}

/// The rules of a Role or ClusterRole object.
pub fn rules_of(obj: &Value) -> Vec<PolicyRule> {
    obj.get("rules")
        .cloned()
        .and_then(|r| serde_json::from_value(r).ok())
        .unwrap_or_default()
}

/// A snapshot of every Role, ClusterRole, RoleBinding and ClusterRoleBinding.
#[derive(Debug, Default)]
pub struct RbacState {
    /// By (namespace, name).
    pub roles: HashMap<(String, String), Vec<PolicyRule>>,
    pub cluster_roles: HashMap<String, Vec<PolicyRule>>,
    /// By namespace.
    pub role_bindings: HashMap<String, Vec<Binding>>,
    pub cluster_role_bindings: Vec<Binding>,
}

impl RbacState {
    fn role_rules(&self, binding: &Binding) -> &[PolicyRule] {
        let rules = match binding.role_ref.kind.as_str() {
            "ClusterRole" => self.cluster_roles.get(&binding.role_ref.name),
            "Role" => self
                .roles
                .get(&(binding.namespace.clone(), binding.role_ref.name.clone())),
            _ => None,
        };
        rules.map(Vec::as_slice).unwrap_or(&[])
    }

    /// The bindings that apply to the user in `namespace` ("" = cluster-wide only).
    fn bindings_for<'a>(
        &'a self,
        user: &'a str,
        groups: &'a [String],
        namespace: &'a str,
    ) -> impl Iterator<Item = &'a Binding> + 'a {
        let namespaced = (!namespace.is_empty())
            .then(|| self.role_bindings.get(namespace))
            .flatten()
            .into_iter()
            .flatten();
        self.cluster_role_bindings
            .iter()
            .chain(namespaced)
            .filter(move |b| b.applies_to(user, groups))
    }

    /// The binding and rule that allow the request, if any.
    pub fn allows(&self, user: &str, groups: &[String], a: &Attributes) -> Option<String> {
        for binding in self.bindings_for(user, groups, &a.namespace) {
            if self.role_rules(binding).iter().any(|r| r.allows(a)) {
                let kind = if binding.namespace.is_empty() {
                    "ClusterRoleBinding"
                } else {
                    "RoleBinding"
                };
                return Some(format!(
                    "RBAC: allowed by {kind} \"{}\" of {} \"{}\"",
                    binding.name, binding.role_ref.kind, binding.role_ref.name
                ));
            }
        }
        None
    }

    /// Every rule granted to the user in `namespace` (cluster-wide ones included).
    pub fn rules_for(&self, user: &str, groups: &[String], namespace: &str) -> Vec<PolicyRule> {
        self.bindings_for(user, groups, namespace)
            .flat_map(|b| self.role_rules(b).iter().cloned())
            .collect()
    }

    /// The rules a role reference names, as seen from a binding in `namespace`.
    pub fn referenced_rules(&self, kind: &str, name: &str, namespace: &str) -> Vec<PolicyRule> {
        let binding = Binding {
            namespace: namespace.to_string(),
            role_ref: RoleRef {
                kind: kind.to_string(),
                name: name.to_string(),
            },
            ..Binding::default()
        };
        self.role_rules(&binding).to_vec()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn res(verb: &str, group: &str, resource: &str, sub: &str, name: &str) -> Attributes {
        Attributes {
            verb: verb.into(),
            api_group: group.into(),
            resource: resource.into(),
            subresource: sub.into(),
            name: name.into(),
            namespace: "a".into(),
            resource_request: true,
            ..Attributes::default()
        }
    }

    fn url(verb: &str, path: &str) -> Attributes {
        Attributes {
            verb: verb.into(),
            path: path.into(),
            ..Attributes::default()
        }
    }

    #[test]
    fn matching_follows_upstream() {
        let pods = PolicyRule::new(&["get", "list"], &[""], &["pods"]);
        assert!(pods.allows(&res("get", "", "pods", "", "x")));
        assert!(
            !pods.allows(&res("get", "", "pods", "log", "x")),
            "pods does not cover pods/log"
        );
        assert!(!pods.allows(&res("delete", "", "pods", "", "x")));
        assert!(!pods.allows(&res("get", "apps", "pods", "", "x")));
        let scale = PolicyRule::new(&["*"], &["*"], &["*/scale"]);
        assert!(scale.allows(&res("update", "apps", "deployments", "scale", "web")));
        assert!(!scale.allows(&res("update", "apps", "deployments", "", "web")));
        let named = PolicyRule::new(&["get"], &[""], &["secrets"]).names(&["one"]);
        assert!(named.allows(&res("get", "", "secrets", "", "one")));
        assert!(!named.allows(&res("get", "", "secrets", "", "two")));
        assert!(!named.allows(&res("list", "", "secrets", "", "")));
        let logs = PolicyRule::new(&["get"], &[""], &["pods/log"]);
        assert!(logs.allows(&res("get", "", "pods", "log", "p")));
        assert!(!logs.allows(&res("get", "", "pods", "", "p")));
        let urls = PolicyRule::urls(&["get"], &["/healthz", "/api/*"]);
        assert!(urls.allows(&url("get", "/healthz")));
        assert!(urls.allows(&url("get", "/api/v1")));
        assert!(!urls.allows(&url("get", "/apis")));
        assert!(!urls.allows(&url("post", "/healthz")));
        assert!(!urls.allows(&res("get", "", "healthz", "", "")));
    }

    #[test]
    fn coverage_breaks_rules_down() {
        let owner = vec![
            PolicyRule::new(&["get", "list"], &[""], &["pods", "configmaps"]),
            PolicyRule::new(&["get"], &[""], &["secrets"]).names(&["a"]),
        ];
        assert!(uncovered(&owner, &[PolicyRule::new(&["get"], &[""], &["pods"])]).is_empty());
        assert!(!uncovered(&owner, &[PolicyRule::new(&["delete"], &[""], &["pods"])]).is_empty());
        assert!(!uncovered(&owner, &[PolicyRule::new(&["get"], &["*"], &["pods"])]).is_empty());
        assert!(!uncovered(&owner, &[PolicyRule::new(&["get"], &[""], &["secrets"])]).is_empty());
        assert!(uncovered(
            &owner,
            &[PolicyRule::new(&["get"], &[""], &["secrets"]).names(&["a"])]
        )
        .is_empty());
        let admin = vec![
            PolicyRule::new(&["*"], &["*"], &["*"]),
            PolicyRule::urls(&["*"], &["*"]),
        ];
        assert!(uncovered(&admin, &[PolicyRule::urls(&["get"], &["/x/*"])]).is_empty());
        let sub = vec![PolicyRule::new(&["get"], &["apps"], &["*/scale"])];
        assert!(uncovered(
            &sub,
            &[PolicyRule::new(&["get"], &["apps"], &["deployments/scale"])]
        )
        .is_empty());
    }

    #[test]
    fn service_account_subjects_default_to_the_binding_namespace() {
        let s = Subject {
            kind: "ServiceAccount".into(),
            name: "reader".into(),
            namespace: String::new(),
        };
        assert!(s.applies_to("system:serviceaccount:a:reader", &[], "a"));
        assert!(!s.applies_to("system:serviceaccount:b:reader", &[], "a"));
    }
}
