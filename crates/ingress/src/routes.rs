//! The routing table: which Ingresses are this controller's, and for a request (host, path,
//! scheme) what to do with it. Built whole from the watched objects after every change; a
//! request reads one table, never a half-applied change.
//!
//! Matching follows the Ingress specification as ingress-nginx implements it:
//! - hosts: an exact host, else the longest matching wildcard (`*.example.com` matches one
//!   label), else the rules without a host (nginx's catch-all server);
//! - paths: `Exact` first (string equality); then `Prefix` element by element (`/api` matches
//!   `/api` and `/api/x`, not `/apix`) and `ImplementationSpecific` as a plain string prefix
//!   (nginx's `location /path`), the longest path winning;
//! - when any Ingress of a host asks for regexes (`use-regex` or `rewrite-target`), every
//!   non-Exact path of that host is a case-insensitive regex anchored at the start, tried
//!   longest first (ingress-nginx's "enforce regex" for the whole server);
//! - `rewrite-target` replaces the whole path with the target, `$n` taken from the captures of
//!   the path's regex (nginx `rewrite`), the query string kept;
//! - a conflict (same host, path and type in two Ingresses) goes to the oldest Ingress.
//!
//! Backends are resolved here to the ready endpoints (`ready` true or unset) of the Service's
//! EndpointSlices, on the slice port named as the Service port; an ExternalName Service is its
//! external name. A backend without endpoints answers 503.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::networking::v1::{Ingress, IngressBackend, IngressClass};
use regex::Regex;

use crate::annotations::{BackendProtocol, Options};

/// Which Ingresses are ours.
#[derive(Clone, Debug)]
pub struct ClassConfig {
    /// The class name of the legacy `kubernetes.io/ingress.class` annotation.
    pub ingress_class: String,
    /// The `spec.controller` of our IngressClasses.
    pub controller: String,
    /// Serve Ingresses without any class even when no IngressClass of ours is the default.
    pub watch_without_class: bool,
}

impl Default for ClassConfig {
    fn default() -> ClassConfig {
        ClassConfig {
            ingress_class: "nginx".into(),
            controller: "k8s.io/ingress-nginx".into(),
            watch_without_class: false,
        }
    }
}

const DEFAULT_CLASS_ANNOTATION: &str = "ingressclass.kubernetes.io/is-default-class";
const LEGACY_CLASS_ANNOTATION: &str = "kubernetes.io/ingress.class";

/// The watched objects a table is built from.
#[derive(Clone, Copy, Debug)]
pub struct Objects<'a> {
    pub ingresses: &'a [Arc<Ingress>],
    pub classes: &'a [Arc<IngressClass>],
    pub services: &'a [Arc<Service>],
    pub slices: &'a [Arc<EndpointSlice>],
}

/// A Service port's ready endpoints, as `address:port` authorities.
#[derive(Debug)]
pub struct Backend {
    /// `namespace/service:port`, for logs.
    pub name: String,
    pub endpoints: Vec<String>,
    pub protocol: BackendProtocol,
    next: AtomicUsize,
}

impl Backend {
    pub fn new(name: String, endpoints: Vec<String>, protocol: BackendProtocol) -> Backend {
        Backend {
            name,
            endpoints,
            protocol,
            next: AtomicUsize::new(0),
        }
    }

    /// Every endpoint once, starting with the next one in round-robin order (the rest are the
    /// ones to retry when a connection fails).
    pub fn candidates(&self) -> impl Iterator<Item = &str> {
        let n = self.endpoints.len();
        let start = if n == 0 {
            0
        } else {
            self.next.fetch_add(1, Ordering::Relaxed) % n
        };
        (0..n).map(move |i| self.endpoints[(start + i) % n].as_str())
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PathKind {
    Exact,
    Prefix,
    ImplementationSpecific,
}

/// One path of one Ingress rule.
#[derive(Debug)]
pub struct PathRule {
    pub path: String,
    pub kind: PathKind,
    /// The location regex, on hosts that use regexes.
    location: Option<Regex>,
    /// `rewrite-target`: the path's regex (unanchored, as nginx `rewrite`) and the target.
    rewrite: Option<(Regex, String)>,
    pub backend: Arc<Backend>,
    pub options: Arc<Options>,
    /// `namespace/name` of the Ingress.
    pub ingress: String,
}

#[derive(Debug, Default)]
struct HostRoutes {
    paths: Vec<PathRule>,
    /// Some Ingress lists this host in its `tls` section.
    tls: bool,
    app_root: Option<String>,
    regex: bool,
}

/// A `tls` entry of one of our Ingresses.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsEntry {
    pub namespace: String,
    pub secret_name: String,
    pub hosts: Vec<String>,
}

/// What to do with a request.
#[derive(Debug)]
pub enum Decision<'a> {
    /// Forward to the rule's backend, with this path and query.
    Route {
        rule: &'a PathRule,
        path_and_query: String,
    },
    /// Redirect: 308 to HTTPS (`ssl-redirect`), 302 to the app root. `location` is a path;
    /// `https` says whether the URL's scheme changes to https.
    Redirect {
        status: u16,
        https: bool,
        location: String,
    },
    /// No rule matched: an Ingress's `spec.defaultBackend`.
    DefaultBackend(&'a Arc<Backend>),
    NotFound,
}

/// The routing table.
#[derive(Debug, Default)]
pub struct Table {
    hosts: HashMap<String, HostRoutes>,
    /// `*.example.com` as `.example.com`, longest first.
    wildcards: Vec<(String, HostRoutes)>,
    catch_all: HostRoutes,
    default_backend: Option<Arc<Backend>>,
    /// `(namespace, name)` of the Ingresses served.
    pub ingresses: Vec<(String, String)>,
    pub tls: Vec<TlsEntry>,
}

fn is_ours(ingress: &Ingress, classes: &[Arc<IngressClass>], config: &ClassConfig) -> bool {
    let ours = |class: &IngressClass| {
        class.spec.as_ref().and_then(|s| s.controller.as_deref()) == Some(&config.controller)
    };
    if let Some(name) = ingress
        .spec
        .as_ref()
        .and_then(|s| s.ingress_class_name.as_deref())
    {
        return classes
            .iter()
            .any(|c| c.metadata.name.as_deref() == Some(name) && ours(c));
    }
    if let Some(legacy) = ingress
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(LEGACY_CLASS_ANNOTATION))
    {
        return *legacy == config.ingress_class;
    }
    config.watch_without_class
        || classes.iter().any(|c| {
            ours(c)
                && c.metadata
                    .annotations
                    .as_ref()
                    .and_then(|a| a.get(DEFAULT_CLASS_ANNOTATION))
                    .map(String::as_str)
                    == Some("true")
        })
}

/// `host` matches the `pattern` of a rule or tls entry (exact, or `*.` + one label).
pub fn host_matches(pattern: &str, host: &str) -> bool {
    match pattern.strip_prefix('*') {
        Some(suffix) => host
            .strip_suffix(suffix)
            .is_some_and(|label| !label.is_empty() && !label.contains('.')),
        None => pattern.eq_ignore_ascii_case(host),
    }
}

/// `path` is under the `Prefix` rule path `prefix`, element by element.
fn prefix_matches(prefix: &str, path: &str) -> bool {
    let prefix = prefix.trim_end_matches('/');
    if prefix.is_empty() {
        return true;
    }
    match path.strip_prefix(prefix) {
        Some(rest) => rest.is_empty() || rest.starts_with('/'),
        None => false,
    }
}

struct Resolver<'a> {
    services: HashMap<(&'a str, &'a str), &'a Service>,
    slices: HashMap<(&'a str, &'a str), Vec<&'a EndpointSlice>>,
    backends: HashMap<(String, String, BackendProtocol), Arc<Backend>>,
}

impl<'a> Resolver<'a> {
    fn new(objects: &Objects<'a>) -> Resolver<'a> {
        let mut services = HashMap::new();
        for s in objects.services {
            if let (Some(ns), Some(name)) = (&s.metadata.namespace, &s.metadata.name) {
                services.insert((ns.as_str(), name.as_str()), s.as_ref());
            }
        }
        let mut slices: HashMap<(&str, &str), Vec<&EndpointSlice>> = HashMap::new();
        for s in objects.slices {
            let service = s
                .metadata
                .labels
                .as_ref()
                .and_then(|l| l.get("kubernetes.io/service-name"));
            if let (Some(ns), Some(service)) = (&s.metadata.namespace, service) {
                slices
                    .entry((ns.as_str(), service.as_str()))
                    .or_default()
                    .push(s.as_ref());
            }
        }
        Resolver {
            services,
            slices,
            backends: HashMap::new(),
        }
    }

    fn backend(
        &mut self,
        namespace: &str,
        backend: &IngressBackend,
        protocol: BackendProtocol,
    ) -> Arc<Backend> {
        let Some(service) = &backend.service else {
            return Arc::new(Backend::new(
                format!("{namespace}/<resource backend>"),
                Vec::new(),
                protocol,
            ));
        };
        let port = service.port.as_ref();
        let port_text = match port {
            Some(p) => match (&p.name, p.number) {
                (Some(name), _) if !name.is_empty() => name.clone(),
                (_, Some(n)) => n.to_string(),
                _ => String::new(),
            },
            None => String::new(),
        };
        let key = (
            format!("{namespace}/{}", service.name),
            port_text.clone(),
            protocol,
        );
        if let Some(existing) = self.backends.get(&key) {
            return existing.clone();
        }
        let endpoints = self.endpoints(namespace, &service.name, &port_text);
        let built = Arc::new(Backend::new(
            format!("{namespace}/{}:{port_text}", service.name),
            endpoints,
            protocol,
        ));
        self.backends.insert(key, built.clone());
        built
    }

    fn endpoints(&self, namespace: &str, service: &str, port: &str) -> Vec<String> {
        let Some(svc) = self.services.get(&(namespace, service)) else {
            return Vec::new();
        };
        let Some(spec) = &svc.spec else {
            return Vec::new();
        };
        let Some(service_port) =
            spec.ports.iter().flatten().find(|p| {
                p.port.to_string() == port || p.name.as_deref().is_some_and(|n| n == port)
            })
        else {
            return Vec::new();
        };
        if spec.type_.as_deref() == Some("ExternalName") {
            let target = match &service_port.target_port {
                Some(k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::Int(n)) => *n,
                _ => service_port.port,
            };
            return spec
                .external_name
                .iter()
                .map(|name| format!("{name}:{target}"))
                .collect();
        }
        let port_name = service_port.name.as_deref().unwrap_or("");
        let mut out = Vec::new();
        for slice in self.slices.get(&(namespace, service)).into_iter().flatten() {
            let Some(number) = slice
                .ports
                .iter()
                .flatten()
                .find(|p| p.name.as_deref().unwrap_or("") == port_name)
                .and_then(|p| p.port)
            else {
                continue;
            };
            for endpoint in &slice.endpoints {
                let ready = endpoint
                    .conditions
                    .as_ref()
                    .and_then(|c| c.ready)
                    .unwrap_or(true);
                if !ready {
                    continue;
                }
                for address in &endpoint.addresses {
                    let authority = if address.contains(':') {
                        format!("[{address}]:{number}")
                    } else {
                        format!("{address}:{number}")
                    };
                    if !out.contains(&authority) {
                        out.push(authority);
                    }
                }
            }
        }
        out
    }
}

/// Builds the regexes of a rule path on a regex host.
fn regexes(path: &str) -> Result<(Regex, Regex), regex::Error> {
    Ok((
        Regex::new(&format!("(?i)^{path}"))?,
        Regex::new(&format!("(?i){path}"))?,
    ))
}

/// nginx `rewrite` replacement: `$n` → capture n.
fn expand(target: &str, captures: &regex::Captures<'_>) -> String {
    let mut out = String::new();
    let mut chars = target.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        if c == '$' {
            let digits: String = target[i + 1..]
                .chars()
                .take_while(char::is_ascii_digit)
                .collect();
            if !digits.is_empty() {
                let n: usize = digits.parse().unwrap_or(usize::MAX);
                out.push_str(captures.get(n).map(|m| m.as_str()).unwrap_or(""));
                for _ in 0..digits.len() {
                    chars.next();
                }
                continue;
            }
        }
        out.push(c);
    }
    out
}

impl Table {
    /// The table of the Ingresses that `config` makes ours.
    pub fn build(objects: &Objects<'_>, config: &ClassConfig) -> Table {
        let mut ours: Vec<&Ingress> = objects
            .ingresses
            .iter()
            .map(|i| i.as_ref())
            .filter(|i| is_ours(i, objects.classes, config))
            .collect();
        // The oldest Ingress wins conflicts.
        ours.sort_by(|a, b| {
            let key = |i: &Ingress| {
                (
                    i.metadata.creation_timestamp.as_ref().map(|t| t.0),
                    i.metadata.namespace.clone(),
                    i.metadata.name.clone(),
                )
            };
            key(a).cmp(&key(b))
        });
        let mut resolver = Resolver::new(objects);
        let mut table = Table::default();
        // Host pattern ("" for none) → rules, before they are placed.
        let mut by_host: BTreeMap<String, HostRoutes> = BTreeMap::new();
        let mut tls_hosts: Vec<String> = Vec::new();
        for ingress in &ours {
            let namespace = ingress.metadata.namespace.clone().unwrap_or_default();
            let name = ingress.metadata.name.clone().unwrap_or_default();
            table.ingresses.push((namespace.clone(), name.clone()));
            let options = Arc::new(Options::from_annotations(
                ingress
                    .metadata
                    .annotations
                    .as_ref()
                    .unwrap_or(&BTreeMap::new()),
            ));
            let Some(spec) = &ingress.spec else { continue };
            for tls in spec.tls.iter().flatten() {
                let hosts: Vec<String> = tls
                    .hosts
                    .iter()
                    .flatten()
                    .map(|h| h.to_ascii_lowercase())
                    .collect();
                tls_hosts.extend(hosts.iter().cloned());
                if let Some(secret) = &tls.secret_name {
                    table.tls.push(TlsEntry {
                        namespace: namespace.clone(),
                        secret_name: secret.clone(),
                        hosts,
                    });
                }
            }
            if let Some(default) = &spec.default_backend {
                if table.default_backend.is_none() {
                    table.default_backend =
                        Some(resolver.backend(&namespace, default, options.backend_protocol));
                }
            }
            for rule in spec.rules.iter().flatten() {
                let host = rule.host.clone().unwrap_or_default().to_ascii_lowercase();
                let routes = by_host.entry(host).or_default();
                routes.regex |= options.use_regex;
                if routes.app_root.is_none() {
                    routes.app_root = options.app_root.clone();
                }
                for path in rule.http.iter().flat_map(|h| h.paths.iter()) {
                    let kind = match path.path_type.as_str() {
                        "Exact" => PathKind::Exact,
                        "Prefix" => PathKind::Prefix,
                        _ => PathKind::ImplementationSpecific,
                    };
                    let text = match path.path.as_deref() {
                        None | Some("") => "/".to_owned(),
                        Some(p) => p.to_owned(),
                    };
                    if routes
                        .paths
                        .iter()
                        .any(|r| r.path == text && r.kind == kind)
                    {
                        tracing::debug!(ingress = %name, path = %text, "path already served by an older Ingress");
                        continue;
                    }
                    let rewrite = match &options.rewrite_target {
                        Some(target) => match Regex::new(&format!("(?i){text}")) {
                            Ok(re) => Some((re, target.clone())),
                            Err(e) => {
                                tracing::warn!(ingress = %name, path = %text, error = %e, "invalid path regex; path ignored");
                                continue;
                            }
                        },
                        None => None,
                    };
                    routes.paths.push(PathRule {
                        path: text,
                        kind,
                        location: None,
                        rewrite,
                        backend: resolver.backend(
                            &namespace,
                            &path.backend,
                            options.backend_protocol,
                        ),
                        options: options.clone(),
                        ingress: format!("{namespace}/{name}"),
                    });
                }
            }
        }
        for (host, mut routes) in by_host {
            if routes.regex {
                routes.paths.retain_mut(|rule| {
                    if rule.kind == PathKind::Exact {
                        return true;
                    }
                    match regexes(&rule.path) {
                        Ok((location, _)) => {
                            rule.location = Some(location);
                            true
                        }
                        Err(e) => {
                            tracing::warn!(ingress = %rule.ingress, path = %rule.path, error = %e, "invalid path regex; path ignored");
                            false
                        }
                    }
                });
            }
            // Longest path first; among equals Exact first.
            routes.paths.sort_by(|a, b| {
                b.path
                    .len()
                    .cmp(&a.path.len())
                    .then((a.kind != PathKind::Exact).cmp(&(b.kind != PathKind::Exact)))
            });
            routes.tls = !host.is_empty() && tls_hosts.iter().any(|t| host_matches(t, &host));
            if host.is_empty() {
                table.catch_all = routes;
            } else if let Some(suffix) = host.strip_prefix('*') {
                table.wildcards.push((suffix.to_owned(), routes));
            } else {
                table.hosts.insert(host, routes);
            }
        }
        table
            .wildcards
            .sort_by_key(|w| std::cmp::Reverse(w.0.len()));
        table
    }

    fn host(&self, host: &str) -> &HostRoutes {
        if let Some(routes) = self.hosts.get(host) {
            return routes;
        }
        for (suffix, routes) in &self.wildcards {
            if host_matches(&format!("*{suffix}"), host) {
                return routes;
            }
        }
        &self.catch_all
    }

    /// What to do with a request for `host` (lower-case, no port) and `path_and_query`,
    /// received over HTTPS or not.
    pub fn decide(&self, host: &str, path_and_query: &str, https: bool) -> Decision<'_> {
        let routes = self.host(host);
        let (path, query) = match path_and_query.split_once('?') {
            Some((p, q)) => (p, Some(q)),
            None => (path_and_query, None),
        };
        let path = if path.is_empty() { "/" } else { path };
        if let (Some(root), "/") = (&routes.app_root, path) {
            return Decision::Redirect {
                status: 302,
                https,
                location: root.clone(),
            };
        }
        let exact = routes
            .paths
            .iter()
            .find(|r| r.kind == PathKind::Exact && r.path == path);
        let rule = exact.or_else(|| {
            routes.paths.iter().find(|r| match (r.kind, &r.location) {
                (PathKind::Exact, _) => false,
                (_, Some(re)) => re.is_match(path),
                (PathKind::Prefix, None) => prefix_matches(&r.path, path),
                (_, None) => path.starts_with(r.path.as_str()),
            })
        });
        let Some(rule) = rule else {
            return match &self.default_backend {
                Some(backend) => Decision::DefaultBackend(backend),
                None => Decision::NotFound,
            };
        };
        if !https && (rule.options.force_ssl_redirect || (rule.options.ssl_redirect && routes.tls))
        {
            return Decision::Redirect {
                status: 308,
                https: true,
                location: path_and_query.to_owned(),
            };
        }
        let path_and_query = match &rule.rewrite {
            Some((re, target)) => match re.captures(path) {
                Some(captures) => {
                    let mut rewritten = expand(target, &captures);
                    if let Some(query) = query {
                        rewritten.push(if rewritten.contains('?') { '&' } else { '?' });
                        rewritten.push_str(query);
                    }
                    rewritten
                }
                None => path_and_query.to_owned(),
            },
            None => path_and_query.to_owned(),
        };
        Decision::Route {
            rule,
            path_and_query,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ingress(value: serde_json::Value) -> Arc<Ingress> {
        Arc::new(serde_json::from_value(value).unwrap())
    }

    fn nginx_class(default: bool) -> Arc<IngressClass> {
        let annotations = if default {
            json!({DEFAULT_CLASS_ANNOTATION: "true"})
        } else {
            json!({})
        };
        Arc::new(
            serde_json::from_value(json!({
                "metadata": {"name": "nginx", "annotations": annotations},
                "spec": {"controller": "k8s.io/ingress-nginx"}
            }))
            .unwrap(),
        )
    }

    fn service(name: &str, port: i32) -> Arc<Service> {
        Arc::new(
            serde_json::from_value(json!({
                "metadata": {"name": name, "namespace": "default"},
                "spec": {"ports": [{"name": "http", "port": port, "targetPort": 8080}]}
            }))
            .unwrap(),
        )
    }

    fn slice(service: &str, addresses: &[(&str, Option<bool>)]) -> Arc<EndpointSlice> {
        let endpoints: Vec<serde_json::Value> = addresses
            .iter()
            .map(|(a, ready)| json!({"addresses": [a], "conditions": {"ready": ready}}))
            .collect();
        Arc::new(
            serde_json::from_value(json!({
                "metadata": {"name": format!("{service}-1"), "namespace": "default",
                             "labels": {"kubernetes.io/service-name": service}},
                "addressType": "IPv4",
                "ports": [{"name": "http", "port": 8080}],
                "endpoints": endpoints
            }))
            .unwrap(),
        )
    }

    struct World {
        ingresses: Vec<Arc<Ingress>>,
        classes: Vec<Arc<IngressClass>>,
        services: Vec<Arc<Service>>,
        slices: Vec<Arc<EndpointSlice>>,
    }

    impl World {
        fn new(ingresses: Vec<Arc<Ingress>>) -> World {
            World {
                ingresses,
                classes: vec![nginx_class(true)],
                services: vec![service("a", 80), service("b", 80)],
                slices: vec![
                    slice("a", &[("10.244.1.2", Some(true)), ("10.244.2.2", None)]),
                    slice(
                        "b",
                        &[("10.244.1.3", Some(true)), ("10.244.2.3", Some(false))],
                    ),
                ],
            }
        }

        fn table(&self) -> Table {
            Table::build(
                &Objects {
                    ingresses: &self.ingresses,
                    classes: &self.classes,
                    services: &self.services,
                    slices: &self.slices,
                },
                &ClassConfig::default(),
            )
        }
    }

    fn path(p: &str, kind: &str, service: &str) -> serde_json::Value {
        json!({"path": p, "pathType": kind,
               "backend": {"service": {"name": service, "port": {"number": 80}}}})
    }

    fn simple(name: &str, host: Option<&str>, paths: Vec<serde_json::Value>) -> Arc<Ingress> {
        let mut rule = json!({"http": {"paths": paths}});
        if let Some(host) = host {
            rule["host"] = json!(host);
        }
        ingress(json!({
            "metadata": {"name": name, "namespace": "default"},
            "spec": {"ingressClassName": "nginx", "rules": [rule]}
        }))
    }

    /// The backend service name a request goes to, "404", a redirect "308 <location>".
    fn route(table: &Table, host: &str, path: &str, https: bool) -> String {
        match table.decide(host, path, https) {
            Decision::Route {
                rule,
                path_and_query,
            } => {
                let service = rule.backend.name.split(['/', ':']).nth(1).unwrap();
                format!("{service} {path_and_query}")
            }
            Decision::Redirect {
                status, location, ..
            } => format!("{status} {location}"),
            Decision::DefaultBackend(b) => format!("default {}", b.name),
            Decision::NotFound => "404".into(),
        }
    }

    #[test]
    fn prefix_and_exact_paths() {
        let world = World::new(vec![simple(
            "web",
            Some("a.test"),
            vec![
                path("/", "Prefix", "a"),
                path("/api", "Prefix", "b"),
                path("/exact", "Exact", "b"),
            ],
        )]);
        let t = world.table();
        assert_eq!(route(&t, "a.test", "/", false), "a /");
        assert_eq!(route(&t, "a.test", "/x?q=1", false), "a /x?q=1");
        assert_eq!(route(&t, "a.test", "/api", false), "b /api");
        assert_eq!(route(&t, "a.test", "/api/", false), "b /api/");
        assert_eq!(route(&t, "a.test", "/api/v1", false), "b /api/v1");
        assert_eq!(route(&t, "a.test", "/apix", false), "a /apix");
        assert_eq!(route(&t, "a.test", "/exact", false), "b /exact");
        assert_eq!(route(&t, "a.test", "/exact/sub", false), "a /exact/sub");
        assert_eq!(route(&t, "other.test", "/", false), "404");
        assert_eq!(t.ingresses, vec![("default".into(), "web".into())]);
    }

    #[test]
    fn exact_path_alone_does_not_match_sub_paths() {
        let world = World::new(vec![simple(
            "web",
            Some("a.test"),
            vec![path("/only", "Exact", "a")],
        )]);
        let t = world.table();
        assert_eq!(route(&t, "a.test", "/only", false), "a /only");
        assert_eq!(route(&t, "a.test", "/only/", false), "404");
        assert_eq!(route(&t, "a.test", "/only/x", false), "404");
    }

    #[test]
    fn implementation_specific_is_a_string_prefix_and_trailing_slashes_are_elements() {
        let world = World::new(vec![simple(
            "web",
            None,
            vec![
                path("/img", "ImplementationSpecific", "a"),
                path("/docs/", "Prefix", "b"),
            ],
        )]);
        let t = world.table();
        assert_eq!(route(&t, "any", "/imgs/1", false), "a /imgs/1");
        assert_eq!(route(&t, "any", "/docs", false), "b /docs");
        assert_eq!(route(&t, "any", "/docs/x", false), "b /docs/x");
        assert_eq!(route(&t, "any", "/docsx", false), "404");
    }

    #[test]
    fn hosts_exact_then_wildcard_then_catch_all() {
        let world = World::new(vec![
            simple(
                "exact",
                Some("x.example.com"),
                vec![path("/", "Prefix", "a")],
            ),
            simple(
                "wild",
                Some("*.example.com"),
                vec![path("/", "Prefix", "b")],
            ),
            simple("any", None, vec![path("/catch", "Prefix", "a")]),
        ]);
        let t = world.table();
        assert_eq!(route(&t, "x.example.com", "/", false), "a /");
        assert_eq!(route(&t, "y.example.com", "/", false), "b /");
        // A wildcard covers exactly one label.
        assert_eq!(route(&t, "a.b.example.com", "/catch", false), "a /catch");
        assert_eq!(route(&t, "example.com", "/", false), "404");
    }

    #[test]
    fn course_example_rewrites_to_root() {
        let minimal = ingress(json!({
            "metadata": {"name": "minimal-ingress", "namespace": "default",
                         "annotations": {"nginx.ingress.kubernetes.io/rewrite-target": "/"}},
            "spec": {"ingressClassName": "nginx",
                     "rules": [{"http": {"paths": [path("/testpath", "Prefix", "a")]}}]}
        }));
        let t = World::new(vec![minimal]).table();
        assert_eq!(route(&t, "h", "/testpath", false), "a /");
        assert_eq!(route(&t, "h", "/testpath/x", false), "a /");
        assert_eq!(route(&t, "h", "/TESTPATH/x?y=1", false), "a /?y=1");
        assert_eq!(route(&t, "h", "/other", false), "404");
    }

    #[test]
    fn rewrite_with_capture_groups() {
        let regex = ingress(json!({
            "metadata": {"name": "re", "namespace": "default",
                         "annotations": {"nginx.ingress.kubernetes.io/rewrite-target": "/$2",
                                         "nginx.ingress.kubernetes.io/use-regex": "true"}},
            "spec": {"ingressClassName": "nginx",
                     "rules": [{"host": "r.test", "http": {"paths": [
                        path("/something(/|$)(.*)", "ImplementationSpecific", "b")]}}]}
        }));
        let t = World::new(vec![regex]).table();
        assert_eq!(route(&t, "r.test", "/something", false), "b /");
        assert_eq!(route(&t, "r.test", "/something/", false), "b /");
        assert_eq!(
            route(&t, "r.test", "/something/new?a=b", false),
            "b /new?a=b"
        );
        assert_eq!(route(&t, "r.test", "/nothing", false), "404");
    }

    #[test]
    fn regex_on_one_ingress_applies_to_the_whole_host() {
        let plain = simple(
            "plain",
            Some("h.test"),
            vec![path("/v[0-9]", "Prefix", "a")],
        );
        let regex = ingress(json!({
            "metadata": {"name": "re", "namespace": "default",
                         "annotations": {"nginx.ingress.kubernetes.io/use-regex": "true"}},
            "spec": {"ingressClassName": "nginx",
                     "rules": [{"host": "h.test", "http": {"paths": [
                        path("/x.*", "ImplementationSpecific", "b")]}}]}
        }));
        let t = World::new(vec![plain, regex]).table();
        assert_eq!(route(&t, "h.test", "/v2/items", false), "a /v2/items");
        assert_eq!(route(&t, "h.test", "/xyz", false), "b /xyz");
    }

    #[test]
    fn ssl_redirect_force_and_app_root() {
        let tls = ingress(json!({
            "metadata": {"name": "tls", "namespace": "default"},
            "spec": {"ingressClassName": "nginx",
                     "tls": [{"hosts": ["s.test"], "secretName": "cert"}],
                     "rules": [{"host": "s.test", "http": {"paths": [path("/", "Prefix", "a")]}}]}
        }));
        let off = ingress(json!({
            "metadata": {"name": "off", "namespace": "default",
                         "annotations": {"nginx.ingress.kubernetes.io/ssl-redirect": "false"}},
            "spec": {"ingressClassName": "nginx",
                     "tls": [{"hosts": ["o.test"], "secretName": "cert"}],
                     "rules": [{"host": "o.test", "http": {"paths": [path("/", "Prefix", "a")]}}]}
        }));
        let force = ingress(json!({
            "metadata": {"name": "force", "namespace": "default",
                         "annotations": {"nginx.ingress.kubernetes.io/force-ssl-redirect": "true",
                                         "nginx.ingress.kubernetes.io/app-root": "/app"}},
            "spec": {"ingressClassName": "nginx",
                     "rules": [{"host": "f.test", "http": {"paths": [path("/", "Prefix", "a")]}}]}
        }));
        let t = World::new(vec![tls, off, force]).table();
        assert_eq!(route(&t, "s.test", "/x?y", false), "308 /x?y");
        assert_eq!(route(&t, "s.test", "/x?y", true), "a /x?y");
        assert_eq!(route(&t, "o.test", "/x", false), "a /x");
        assert_eq!(route(&t, "f.test", "/x", false), "308 /x");
        assert_eq!(route(&t, "f.test", "/", true), "302 /app");
        assert_eq!(
            t.tls,
            vec![
                TlsEntry {
                    namespace: "default".into(),
                    secret_name: "cert".into(),
                    hosts: vec!["o.test".into()]
                },
                TlsEntry {
                    namespace: "default".into(),
                    secret_name: "cert".into(),
                    hosts: vec!["s.test".into()]
                }
            ]
        );
    }

    #[test]
    fn ready_endpoints_round_robin_and_missing_services() {
        let world = World::new(vec![simple(
            "web",
            Some("a.test"),
            vec![
                path("/", "Prefix", "a"),
                path("/b", "Prefix", "b"),
                path("/none", "Prefix", "missing"),
            ],
        )]);
        let t = world.table();
        let Decision::Route { rule, .. } = t.decide("a.test", "/", false) else {
            panic!()
        };
        assert_eq!(
            rule.backend.endpoints,
            ["10.244.1.2:8080", "10.244.2.2:8080"]
        );
        let first: Vec<&str> = rule.backend.candidates().collect();
        let second: Vec<&str> = rule.backend.candidates().collect();
        assert_eq!(first.len(), 2);
        assert_ne!(first[0], second[0]);
        let Decision::Route { rule, .. } = t.decide("a.test", "/b", false) else {
            panic!()
        };
        assert_eq!(rule.backend.endpoints, ["10.244.1.3:8080"]);
        let Decision::Route { rule, .. } = t.decide("a.test", "/none", false) else {
            panic!()
        };
        assert!(rule.backend.endpoints.is_empty());
    }

    #[test]
    fn classes_default_legacy_and_foreign() {
        let mut world = World::new(vec![
            ingress(
                json!({"metadata": {"name": "no-class", "namespace": "default"},
                           "spec": {"rules": [{"host": "n.test", "http": {"paths": [path("/", "Prefix", "a")]}}]}}),
            ),
            ingress(
                json!({"metadata": {"name": "legacy", "namespace": "default",
                                        "annotations": {LEGACY_CLASS_ANNOTATION: "nginx"}},
                           "spec": {"rules": [{"host": "l.test", "http": {"paths": [path("/", "Prefix", "a")]}}]}}),
            ),
            ingress(
                json!({"metadata": {"name": "other", "namespace": "default"},
                           "spec": {"ingressClassName": "traefik",
                                    "rules": [{"host": "t.test", "http": {"paths": [path("/", "Prefix", "a")]}}]}}),
            ),
        ]);
        let t = world.table();
        let names: Vec<&str> = t.ingresses.iter().map(|(_, n)| n.as_str()).collect();
        assert_eq!(names, ["legacy", "no-class"]);
        assert_eq!(route(&t, "t.test", "/", false), "404");
        world.classes = vec![nginx_class(false)];
        let t = world.table();
        let names: Vec<&str> = t.ingresses.iter().map(|(_, n)| n.as_str()).collect();
        assert_eq!(names, ["legacy"]);
    }

    #[test]
    fn default_backend_and_oldest_wins() {
        let older = ingress(json!({
            "metadata": {"name": "older", "namespace": "default",
                         "creationTimestamp": "2024-01-01T00:00:00Z"},
            "spec": {"ingressClassName": "nginx",
                     "defaultBackend": {"service": {"name": "b", "port": {"name": "http"}}},
                     "rules": [{"host": "c.test", "http": {"paths": [path("/", "Prefix", "a")]}}]}
        }));
        let newer = ingress(json!({
            "metadata": {"name": "newer", "namespace": "default",
                         "creationTimestamp": "2025-01-01T00:00:00Z"},
            "spec": {"ingressClassName": "nginx",
                     "rules": [{"host": "c.test", "http": {"paths": [path("/", "Prefix", "b")]}}]}
        }));
        let t = World::new(vec![newer, older]).table();
        assert_eq!(route(&t, "c.test", "/", false), "a /");
        assert_eq!(route(&t, "unknown", "/", false), "default default/b:http");
    }

    #[test]
    fn host_patterns() {
        assert!(host_matches("*.a.test", "x.a.test"));
        assert!(!host_matches("*.a.test", "a.test"));
        assert!(!host_matches("*.a.test", "y.x.a.test"));
        assert!(host_matches("A.test", "a.test"));
    }
}
