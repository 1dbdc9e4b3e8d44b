//! The create-only reviews of authentication.k8s.io and authorization.k8s.io, answered from
//! the real authorizer: SelfSubjectReview (`kubectl auth whoami`), SelfSubjectAccessReview
//! (`kubectl auth can-i`), SubjectAccessReview, LocalSubjectAccessReview and
//! SelfSubjectRulesReview (`kubectl auth can-i --list`); TokenReview from the token
//! authenticator.

use kubelab_pki::Identity;
use kubelab_resources::catalog::ResourceType;
use serde_json::{json, Value};

use super::{Attributes, Authorizer};
use crate::error::{ApiError, ApiResult};

fn str_at<'a>(v: &'a Value, key: &str) -> &'a str {
    v.get(key).and_then(Value::as_str).unwrap_or("")
}

fn attributes_of(spec: &Value) -> ApiResult<Attributes> {
    if let Some(r) = spec.get("resourceAttributes").filter(|r| r.is_object()) {
        return Ok(Attributes {
            verb: str_at(r, "verb").into(),
            resource_request: true,
            api_group: str_at(r, "group").into(),
            resource: str_at(r, "resource").into(),
            subresource: str_at(r, "subresource").into(),
            name: str_at(r, "name").into(),
            namespace: str_at(r, "namespace").into(),
            path: String::new(),
        });
    }
    if let Some(n) = spec.get("nonResourceAttributes").filter(|r| r.is_object()) {
        return Ok(Attributes {
            verb: str_at(n, "verb").into(),
            path: str_at(n, "path").into(),
            ..Attributes::default()
        });
    }
    Err(ApiError::bad_request(
        "spec.resourceAttributes: Required value: exactly one of nonResourceAttributes or resourceAttributes must be specified",
    ))
}

/// Fill in `status` of a review posted by `identity` (in namespace `ns` for namespaced ones).
pub async fn answer(
    authorizer: &Authorizer,
    tokens: &crate::authn::TokenAuthority,
    rt: &ResourceType,
    ns: Option<&str>,
    mut obj: Value,
    identity: &Identity,
) -> ApiResult<Value> {
    obj["apiVersion"] = json!(rt.api_version());
    obj["kind"] = json!(rt.kind);
    if obj.get("metadata").is_none() {
        obj["metadata"] = json!({});
    }
    obj["metadata"]["creationTimestamp"] = Value::Null;
    let spec = obj.get("spec").cloned().unwrap_or_else(|| json!({}));
    let access = |allowed: Result<(), String>| match allowed {
        Ok(()) => json!({"allowed": true}),
        Err(reason) if reason.is_empty() => json!({"allowed": false}),
        Err(reason) => json!({"allowed": false, "reason": reason}),
    };
    obj["status"] = match rt.kind {
        "SelfSubjectReview" => {
            json!({"userInfo": {"username": identity.user, "groups": identity.groups}})
        }
        "TokenReview" => {
            let token = str_at(&spec, "token");
            match crate::authn::authenticate_bearer(authorizer.registry(), tokens, token).await {
                Some(user) => json!({
                    "authenticated": true,
                    "user": {"username": user.user, "groups": user.groups},
                    "audiences": [crate::authn::ISSUER],
                }),
                None => json!({"authenticated": false, "error": "invalid bearer token"}),
            }
        }
        "SelfSubjectAccessReview" => {
            let a = attributes_of(&spec)?;
            access(authorizer.authorize(identity, &a).await)
        }
        "SubjectAccessReview" | "LocalSubjectAccessReview" => {
            let a = attributes_of(&spec)?;
            if let Some(ns) = ns {
                if a.namespace != ns {
                    return Err(ApiError::bad_request(format!(
                        "spec.resourceAttributes.namespace must match namespace: {ns}"
                    )));
                }
            }
            let subject = Identity {
                user: str_at(&spec, "user").to_string(),
                groups: spec
                    .get("groups")
                    .and_then(Value::as_array)
                    .map(|g| {
                        g.iter()
                            .filter_map(Value::as_str)
                            .map(String::from)
                            .collect()
                    })
                    .unwrap_or_default(),
            };
            if subject.user.is_empty() && subject.groups.is_empty() {
                return Err(ApiError::bad_request(
                    "spec.user: Invalid value: \"\": at least one of user or group must be specified",
                ));
            }
            access(authorizer.authorize(&subject, &a).await)
        }
        "SelfSubjectRulesReview" => {
            let namespace = str_at(&spec, "namespace");
            let rules = authorizer.rules_for(identity, namespace).await;
            let mut resource_rules = Vec::new();
            let mut non_resource_rules = Vec::new();
            for r in rules {
                if r.non_resource_urls.is_empty() {
                    let mut rule = json!({"verbs": r.verbs, "apiGroups": r.api_groups, "resources": r.resources});
                    if !r.resource_names.is_empty() {
                        rule["resourceNames"] = json!(r.resource_names);
                    }
                    resource_rules.push(rule);
                } else {
                    non_resource_rules
                        .push(json!({"verbs": r.verbs, "nonResourceURLs": r.non_resource_urls}));
                }
            }
            json!({
                "resourceRules": resource_rules,
                "nonResourceRules": non_resource_rules,
                "incomplete": super::node::node_name(identity).is_some(),
            })
        }
        other => return Err(ApiError::internal(format!("no review answers {other}"))),
    };
    Ok(obj)
}
