//! Field selectors: `field=value`, `field==value`, `field!=value`, comma = AND, with upstream's
//! escaping (`\,` `\=` `\\`) and, per kind, the fields upstream lets clients select by
//! (`pkg/apis/*/v1/conversion.go`). A field the object lacks compares as `""`; booleans and
//! numbers compare in their JSON form (`"true"`, `"3"`).

use std::fmt;

use serde_json::Value;

use crate::catalog::ResourceType;
use crate::json;
pub use crate::labels::SelectorError;

/// One term: `field=value` or `field!=value`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Term {
    pub field: String,
    pub value: String,
    /// `!=`
    pub negated: bool,
}

/// A parsed field selector: terms ANDed together. Empty matches everything.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct FieldSelector {
    terms: Vec<Term>,
}

/// Parses a `fieldSelector` query value.
pub fn parse(s: &str) -> Result<FieldSelector, SelectorError> {
    let mut parts = split_terms(s);
    parts.sort();
    let mut terms = Vec::new();
    for part in parts {
        if part.is_empty() {
            continue;
        }
        let Some((lhs, op, rhs)) = split_term(part) else {
            return Err(SelectorError::Invalid(format!(
                "invalid selector: '{s}'; can't understand '{part}'"
            )));
        };
        terms.push(Term {
            field: lhs.to_string(),
            value: unescape_value(rhs)?,
            negated: op == "!=",
        });
    }
    Ok(FieldSelector { terms })
}

impl FieldSelector {
    pub fn terms(&self) -> &[Term] {
        &self.terms
    }

    pub fn is_empty(&self) -> bool {
        self.terms.is_empty()
    }

    /// The value the selector requires `field` to equal exactly (e.g. `metadata.name` of a
    /// reflector's single-object list), if it has such a term.
    pub fn exact_match(&self, field: &str) -> Option<&str> {
        self.terms
            .iter()
            .find(|t| !t.negated && t.field == field)
            .map(|t| t.value.as_str())
    }

    /// `Err(field label not supported: <f>)` for the first field this kind cannot be selected by.
    pub fn check_supported(&self, rt: &ResourceType) -> Result<(), SelectorError> {
        match self.terms.iter().find(|t| !supports(rt, &t.field)) {
            Some(t) => Err(SelectorError::FieldNotSupported(t.field.clone())),
            None => Ok(()),
        }
    }

    /// Whether the object satisfies every term.
    pub fn matches(&self, rt: &ResourceType, obj: &Value) -> bool {
        self.terms.iter().all(|t| {
            let values = field_values(rt, obj, &t.field);
            let any_equal = values.contains(&t.value);
            any_equal != t.negated
        })
    }
}

/// The canonical form: terms sorted, values escaped.
impl fmt::Display for FieldSelector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, t) in self.terms.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            let op = if t.negated { "!=" } else { "=" };
            write!(f, "{}{op}{}", t.field, escape_value(&t.value))?;
        }
        Ok(())
    }
}

/// The fields `rt` can be selected by, beyond `metadata.name` and `metadata.namespace`.
pub fn supported_fields(rt: &ResourceType) -> &'static [&'static str] {
    match (rt.group, rt.kind) {
        ("", "Pod") => &[
            "spec.nodeName",
            "spec.restartPolicy",
            "spec.schedulerName",
            "spec.serviceAccountName",
            "spec.hostNetwork",
            "status.phase",
            "status.podIP",
            "status.podIPs",
            "status.nominatedNodeName",
            "spec.host",
        ],
        ("", "Event") => &[
            "involvedObject.kind",
            "involvedObject.namespace",
            "involvedObject.name",
            "involvedObject.uid",
            "involvedObject.apiVersion",
            "involvedObject.resourceVersion",
            "involvedObject.fieldPath",
            "reason",
            "reportingComponent",
            "source",
            "type",
        ],
        ("events.k8s.io", "Event") => &[
            "regarding.kind",
            "regarding.namespace",
            "regarding.name",
            "regarding.uid",
            "regarding.apiVersion",
            "regarding.resourceVersion",
            "regarding.fieldPath",
            "reason",
            "reportingController",
            "type",
        ],
        ("", "Node") => &["spec.unschedulable"],
        ("", "Namespace") => &["status.phase"],
        ("", "Secret") => &["type"],
        ("", "Service") => &["spec.clusterIP", "spec.type"],
        ("", "ReplicationController") | ("apps", "ReplicaSet") => &["status.replicas"],
        ("batch", "Job") => &["status.successful"],
        _ => &[],
    }
}

fn supports(rt: &ResourceType, field: &str) -> bool {
    match field {
        "metadata.name" => true,
        // Upstream Node and Namespace conversions accept metadata.name only.
        "metadata.namespace" => !(rt.group.is_empty() && matches!(rt.kind, "Node" | "Namespace")),
        f => supported_fields(rt).contains(&f),
    }
}

/// The value(s) an object has for a selectable field; `[""]` when absent.
fn field_values(rt: &ResourceType, obj: &Value, field: &str) -> Vec<String> {
    let one = |path: &[&str]| vec![json::scalar_string(json::get(obj, path))];
    let with_default = |path: &[&str], default: &str| {
        let v = json::scalar_string(json::get(obj, path));
        vec![if v.is_empty() { default.to_string() } else { v }]
    };
    match (rt.group, rt.kind, field) {
        (_, _, "metadata.name") => one(&["metadata", "name"]),
        (_, _, "metadata.namespace") => one(&["metadata", "namespace"]),
        ("", "Pod", "spec.host") => one(&["spec", "nodeName"]),
        ("", "Pod", "spec.hostNetwork") => with_default(&["spec", "hostNetwork"], "false"),
        ("", "Pod", "status.podIP") => {
            let mut ip = json::string(obj, &["status", "podIP"]);
            if ip.is_empty() {
                ip = json::array(obj, &["status", "podIPs"])
                    .first()
                    .map(|p| json::string(p, &["ip"]))
                    .unwrap_or("");
            }
            vec![ip.to_string()]
        }
        ("", "Pod", "status.podIPs") => {
            let ips: Vec<String> = json::array(obj, &["status", "podIPs"])
                .iter()
                .map(|p| json::string(p, &["ip"]).to_string())
                .collect();
            if ips.is_empty() {
                vec![String::new()]
            } else {
                ips
            }
        }
        ("", "Event", "source") => one(&["source", "component"]),
        ("", "Node", "spec.unschedulable") => with_default(&["spec", "unschedulable"], "false"),
        ("", "ReplicationController", "status.replicas")
        | ("apps", "ReplicaSet", "status.replicas") => with_default(&["status", "replicas"], "0"),
        ("batch", "Job", "status.successful") => with_default(&["status", "succeeded"], "0"),
        (_, _, f) => {
            let path: Vec<&str> = f.split('.').collect();
            one(&path)
        }
    }
}

fn split_terms(s: &str) -> Vec<&str> {
    if s.is_empty() {
        return Vec::new();
    }
    let mut terms = Vec::new();
    let mut start = 0;
    let mut in_slash = false;
    for (i, c) in s.char_indices() {
        if in_slash {
            in_slash = false;
        } else if c == '\\' {
            in_slash = true;
        } else if c == ',' {
            terms.push(&s[start..i]);
            start = i + 1;
        }
    }
    terms.push(&s[start..]);
    terms
}

fn split_term(term: &str) -> Option<(&str, &'static str, &str)> {
    for (i, _) in term.char_indices() {
        let rest = &term[i..];
        for op in ["!=", "==", "="] {
            if rest.starts_with(op) {
                return Some((&term[..i], op, &term[i + op.len()..]));
            }
        }
    }
    None
}

fn unescape_value(s: &str) -> Result<String, SelectorError> {
    if !s.contains(['\\', ',', '=']) {
        return Ok(s.to_string());
    }
    let mut out = String::with_capacity(s.len());
    let mut in_slash = false;
    for c in s.chars() {
        if in_slash {
            match c {
                '\\' | ',' | '=' => out.push(c),
                other => {
                    return Err(SelectorError::Invalid(format!(
                        "invalid field selector: invalid escape sequence: \\{other}"
                    )))
                }
            }
            in_slash = false;
            continue;
        }
        match c {
            '\\' => in_slash = true,
            ',' | '=' => {
                // Upstream prints the rune with %v, i.e. as its code point.
                return Err(SelectorError::Invalid(format!(
                    "invalid field selector: unescaped character in value: {}",
                    c as u32
                )));
            }
            other => out.push(other),
        }
    }
    if in_slash {
        return Err(SelectorError::Invalid(
            "invalid field selector: invalid escape sequence: \\".into(),
        ));
    }
    Ok(out)
}

fn escape_value(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if matches!(c, '\\' | ',' | '=') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::find;
    use serde_json::json;

    #[test]
    fn parsing() {
        let sel = parse("spec.nodeName=n1,metadata.name!=a").unwrap();
        assert_eq!(sel.to_string(), "metadata.name!=a,spec.nodeName=n1");
        assert_eq!(sel.exact_match("spec.nodeName"), Some("n1"));
        assert_eq!(sel.exact_match("metadata.name"), None);
        assert_eq!(parse("a==b").unwrap().to_string(), "a=b");
        assert_eq!(parse("a=b\\,c").unwrap().terms()[0].value, "b,c");
        assert_eq!(parse("a=").unwrap().terms()[0].value, "");
        assert!(parse("").unwrap().is_empty());
        assert_eq!(
            parse("abc").unwrap_err().to_string(),
            "invalid selector: 'abc'; can't understand 'abc'"
        );
        assert_eq!(
            parse("a=b\\x").unwrap_err().to_string(),
            "invalid field selector: invalid escape sequence: \\x"
        );
        assert_eq!(
            parse("a=b=c").unwrap_err().to_string(),
            "invalid field selector: unescaped character in value: 61"
        );
    }

    #[test]
    fn supported_fields_per_kind() {
        let pods = find("", "v1", "pods").unwrap();
        let nodes = find("", "v1", "nodes").unwrap();
        let cms = find("", "v1", "configmaps").unwrap();
        let ok = |rt, s| parse(s).unwrap().check_supported(rt).is_ok();
        assert!(ok(
            pods,
            "spec.nodeName=a,status.phase=Running,metadata.namespace=x"
        ));
        assert!(ok(cms, "metadata.name=a,metadata.namespace=b"));
        assert!(ok(nodes, "spec.unschedulable=false,metadata.name=n"));
        assert!(!ok(nodes, "metadata.namespace=x"));
        assert_eq!(
            parse("spec.foo=a")
                .unwrap()
                .check_supported(pods)
                .unwrap_err()
                .to_string(),
            "field label not supported: spec.foo"
        );
        assert!(!ok(cms, "data.x=1"));
        let secrets = find("", "v1", "secrets").unwrap();
        assert!(ok(secrets, "type=Opaque"));
        let svcs = find("", "v1", "services").unwrap();
        assert!(ok(svcs, "spec.clusterIP!=None,spec.type=ClusterIP"));
        let events = find("", "v1", "events").unwrap();
        assert!(ok(events, "involvedObject.name=x,involvedObject.kind=Pod,reason=Created,type=Normal,source=kubelet"));
    }

    #[test]
    fn matching() {
        let pods = find("", "v1", "pods").unwrap();
        let pod = json!({
            "metadata": {"name": "p", "namespace": "ns"},
            "spec": {"nodeName": "n1"},
            "status": {"phase": "Running", "podIPs": [{"ip": "10.0.0.1"}, {"ip": "fd00::1"}]}
        });
        let m = |s: &str| parse(s).unwrap().matches(pods, &pod);
        assert!(m("metadata.name=p,metadata.namespace=ns"));
        assert!(m("spec.nodeName=n1"));
        assert!(m("spec.host=n1"));
        assert!(!m("spec.nodeName=n2"));
        assert!(m("spec.nodeName!=n2"));
        assert!(m("spec.restartPolicy="));
        assert!(m("spec.hostNetwork=false"));
        assert!(m("status.podIP=10.0.0.1"));
        assert!(m("status.podIPs=fd00::1"));
        assert!(!m("status.podIPs!=fd00::1"));
        assert!(m("status.nominatedNodeName="));
        assert!(m(""));

        let nodes = find("", "v1", "nodes").unwrap();
        let node = json!({"metadata": {"name": "n"}, "spec": {"unschedulable": true}});
        assert!(parse("spec.unschedulable=true")
            .unwrap()
            .matches(nodes, &node));
        let rs = find("apps", "v1", "replicasets").unwrap();
        assert!(parse("status.replicas=0").unwrap().matches(rs, &json!({})));
        let jobs = find("batch", "v1", "jobs").unwrap();
        assert!(parse("status.successful=2")
            .unwrap()
            .matches(jobs, &json!({"status": {"succeeded": 2}})));
        let events = find("", "v1", "events").unwrap();
        let ev = json!({"involvedObject": {"kind": "Pod", "name": "p"}, "source": {"component": "kubelet"}});
        assert!(
            parse("involvedObject.kind=Pod,involvedObject.name=p,source=kubelet")
                .unwrap()
                .matches(events, &ev)
        );
        // Wrong types anywhere never panic.
        assert!(!parse("metadata.name=p").unwrap().matches(pods, &json!("x")));
        assert!(parse("status.podIP=")
            .unwrap()
            .matches(pods, &json!({"status": {"podIPs": 3}})));
    }
}
