//! Request paths to routes, following the upstream RequestInfo rules.

/// What a path asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// `/api`
    CoreGroup,
    /// `/apis`
    Groups,
    /// `/apis/<group>`
    Group { group: String },
    /// `/api/v1` or `/apis/<group>/<version>`
    GroupVersion { group: String, version: String },
    /// A resource collection, object or subresource.
    Resource(ResourcePath),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResourcePath {
    pub group: String,
    pub version: String,
    pub namespace: Option<String>,
    pub resource: String,
    pub name: Option<String>,
    pub subresource: Option<String>,
}

/// Parse an API path (without query). `None` when it is not an API path.
pub fn parse(path: &str) -> Option<Route> {
    let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
    let (group, version, rest) = match parts.as_slice() {
        ["api"] => return Some(Route::CoreGroup),
        ["apis"] => return Some(Route::Groups),
        ["apis", group] => {
            return Some(Route::Group {
                group: group.to_string(),
            })
        }
        ["api", version, rest @ ..] => ("", *version, rest),
        ["apis", group, version, rest @ ..] => (*group, *version, rest),
        _ => return None,
    };
    if rest.is_empty() {
        return Some(Route::GroupVersion {
            group: group.to_string(),
            version: version.to_string(),
        });
    }
    if rest.iter().any(|p| p.is_empty()) {
        return None;
    }
    let mut path = ResourcePath {
        group: group.to_string(),
        version: version.to_string(),
        namespace: None,
        resource: String::new(),
        name: None,
        subresource: None,
    };
    let rest: &[&str] = match rest {
        // namespaces/<name>/status|finalize are subresources of the namespace itself.
        ["namespaces", name, sub]
            if group.is_empty() && (*sub == "status" || *sub == "finalize") =>
        {
            path.resource = "namespaces".into();
            path.name = Some(name.to_string());
            path.subresource = Some(sub.to_string());
            return Some(Route::Resource(path));
        }
        ["namespaces", ns, rest @ ..] if !rest.is_empty() => {
            path.namespace = Some(ns.to_string());
            rest
        }
        other => other,
    };
    match rest {
        [resource] => path.resource = resource.to_string(),
        [resource, name] => {
            path.resource = resource.to_string();
            path.name = Some(name.to_string());
        }
        [resource, name, sub] => {
            path.resource = resource.to_string();
            path.name = Some(name.to_string());
            path.subresource = Some(sub.to_string());
        }
        _ => return None,
    }
    Some(Route::Resource(path))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn res(
        group: &str,
        ns: Option<&str>,
        resource: &str,
        name: Option<&str>,
        sub: Option<&str>,
    ) -> Option<Route> {
        Some(Route::Resource(ResourcePath {
            group: group.into(),
            version: "v1".into(),
            namespace: ns.map(Into::into),
            resource: resource.into(),
            name: name.map(Into::into),
            subresource: sub.map(Into::into),
        }))
    }

    #[test]
    fn paths() {
        assert_eq!(parse("/api"), Some(Route::CoreGroup));
        assert_eq!(parse("/apis"), Some(Route::Groups));
        assert_eq!(
            parse("/apis/apps/v1"),
            Some(Route::GroupVersion {
                group: "apps".into(),
                version: "v1".into()
            })
        );
        assert_eq!(parse("/api/v1/pods"), res("", None, "pods", None, None));
        assert_eq!(
            parse("/api/v1/namespaces"),
            res("", None, "namespaces", None, None)
        );
        assert_eq!(
            parse("/api/v1/namespaces/kube-system"),
            res("", None, "namespaces", Some("kube-system"), None)
        );
        assert_eq!(
            parse("/api/v1/namespaces/x/finalize"),
            res("", None, "namespaces", Some("x"), Some("finalize"))
        );
        assert_eq!(
            parse("/api/v1/namespaces/x/pods"),
            res("", Some("x"), "pods", None, None)
        );
        assert_eq!(
            parse("/api/v1/namespaces/x/pods/p/log"),
            res("", Some("x"), "pods", Some("p"), Some("log"))
        );
        assert_eq!(
            parse("/apis/apps/v1/namespaces/d/deployments/web/scale"),
            res("apps", Some("d"), "deployments", Some("web"), Some("scale"))
        );
        assert_eq!(parse("/healthz"), None);
        assert_eq!(parse("/api/v1/namespaces/x/pods/p/log/extra"), None);
    }
}
