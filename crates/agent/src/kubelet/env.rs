//! A container's environment: service links (`<SVC>_SERVICE_HOST`, docker-link variables),
//! `envFrom` (ConfigMaps, Secrets, with prefix), then `env` (values with `$(VAR)` expansion,
//! configMapKeyRef, secretKeyRef, fieldRef, resourceFieldRef), in upstream's precedence order.

use std::collections::HashMap;

use k8s_openapi::api::core::v1::{
    ConfigMap, Container, Pod, ResourceFieldSelector, Secret, Service,
};
use kube::api::Api;

use super::quantity;

/// Reads ConfigMaps and Secrets of one namespace once per container start.
pub struct Sources {
    client: kube::Client,
    namespace: String,
    config_maps: HashMap<String, Option<ConfigMap>>,
    secrets: HashMap<String, Option<Secret>>,
}

impl Sources {
    pub fn new(client: kube::Client, namespace: &str) -> Sources {
        Sources {
            client,
            namespace: namespace.to_string(),
            config_maps: HashMap::new(),
            secrets: HashMap::new(),
        }
    }

    async fn config_map(&mut self, name: &str) -> Result<Option<&ConfigMap>, String> {
        if !self.config_maps.contains_key(name) {
            let api: Api<ConfigMap> = Api::namespaced(self.client.clone(), &self.namespace);
            let cm = api
                .get_opt(name)
                .await
                .map_err(|e| format!("cannot read configmap {name:?}: {e}"))?;
            self.config_maps.insert(name.to_string(), cm);
        }
        Ok(self.config_maps.get(name).and_then(Option::as_ref))
    }

    async fn secret(&mut self, name: &str) -> Result<Option<&Secret>, String> {
        if !self.secrets.contains_key(name) {
            let api: Api<Secret> = Api::namespaced(self.client.clone(), &self.namespace);
            let s = api
                .get_opt(name)
                .await
                .map_err(|e| format!("cannot read secret {name:?}: {e}"))?;
            self.secrets.insert(name.to_string(), s);
        }
        Ok(self.secrets.get(name).and_then(Option::as_ref))
    }
}

fn config_map_value(cm: &ConfigMap, key: &str) -> Option<String> {
    cm.data
        .as_ref()
        .and_then(|d| d.get(key).cloned())
        .or_else(|| {
            cm.binary_data
                .as_ref()
                .and_then(|d| d.get(key))
                .map(|b| String::from_utf8_lossy(&b.0).into_owned())
        })
}

fn secret_value(s: &Secret, key: &str) -> Option<String> {
    s.data
        .as_ref()
        .and_then(|d| d.get(key))
        .map(|b| String::from_utf8_lossy(&b.0).into_owned())
        .or_else(|| s.string_data.as_ref().and_then(|d| d.get(key).cloned()))
}

/// What the pod-level references resolve against.
pub struct PodFacts<'a> {
    pub pod: &'a Pod,
    pub host_ip: &'a str,
    pub pod_ip: &'a str,
    pub node_cpu_millis: i64,
    pub node_memory: i64,
}

/// Expands `$(VAR)` references from `vars`; `$$` escapes a `$`; unknown references stay.
pub fn expand(input: &str, vars: &HashMap<String, String>) -> String {
    let mut out = String::with_capacity(input.len());
    let bytes = input.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'$' && i + 1 < bytes.len() {
            match bytes[i + 1] {
                b'$' => {
                    out.push('$');
                    i += 2;
                    continue;
                }
                b'(' => {
                    if let Some(end) = input[i + 2..].find(')') {
                        let name = &input[i + 2..i + 2 + end];
                        match vars.get(name) {
                            Some(v) => out.push_str(v),
                            None => out.push_str(&input[i..i + 3 + end]),
                        }
                        i += 3 + end;
                        continue;
                    }
                }
                _ => {}
            }
        }
        let ch = input[i..].chars().next().expect("in bounds");
        out.push(ch);
        i += ch.len_utf8();
    }
    out
}

/// The environment variables of services visible to the pod (upstream's service links).
pub fn service_env(
    services: &[Service],
    pod_namespace: &str,
    enable_links: bool,
) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for svc in services {
        let ns = svc.metadata.namespace.as_deref().unwrap_or("default");
        let name = svc.metadata.name.as_deref().unwrap_or("");
        let is_master = ns == "default" && name == "kubernetes";
        if !(is_master || (enable_links && ns == pod_namespace)) {
            continue;
        }
        let Some(spec) = &svc.spec else { continue };
        let Some(ip) = spec
            .cluster_ip
            .as_deref()
            .filter(|ip| !ip.is_empty() && *ip != "None")
        else {
            continue;
        };
        let ports = spec.ports.clone().unwrap_or_default();
        let Some(first) = ports.first() else { continue };
        let prefix = name.to_uppercase().replace('-', "_");
        out.push((format!("{prefix}_SERVICE_HOST"), ip.to_string()));
        out.push((format!("{prefix}_SERVICE_PORT"), first.port.to_string()));
        for p in &ports {
            if let Some(pn) = p.name.as_deref().filter(|n| !n.is_empty()) {
                out.push((
                    format!(
                        "{prefix}_SERVICE_PORT_{}",
                        pn.to_uppercase().replace('-', "_")
                    ),
                    p.port.to_string(),
                ));
            }
        }
        let proto = first.protocol.as_deref().unwrap_or("TCP").to_lowercase();
        out.push((
            format!("{prefix}_PORT"),
            format!("{proto}://{ip}:{}", first.port),
        ));
        for p in &ports {
            let proto_lc = p.protocol.as_deref().unwrap_or("TCP").to_lowercase();
            let base = format!("{prefix}_PORT_{}_{}", p.port, proto_lc.to_uppercase());
            out.push((base.clone(), format!("{proto_lc}://{ip}:{}", p.port)));
            out.push((format!("{base}_PROTO"), proto_lc.clone()));
            out.push((format!("{base}_PORT"), p.port.to_string()));
            out.push((format!("{base}_ADDR"), ip.to_string()));
        }
    }
    out
}

/// The container's environment, in the order the runtime gets it.
pub async fn container_env(
    sources: &mut Sources,
    facts: &PodFacts<'_>,
    container: &Container,
    service_vars: Vec<(String, String)>,
) -> Result<Vec<(String, String)>, String> {
    let mut order: Vec<String> = Vec::new();
    let mut vars: HashMap<String, String> = HashMap::new();
    let set =
        |order: &mut Vec<String>, vars: &mut HashMap<String, String>, k: String, v: String| {
            if vars.insert(k.clone(), v).is_none() {
                order.push(k);
            }
        };
    for (k, v) in service_vars {
        set(&mut order, &mut vars, k, v);
    }
    for from in container.env_from.iter().flatten() {
        let prefix = from.prefix.clone().unwrap_or_default();
        if let Some(r) = &from.config_map_ref {
            match sources.config_map(&r.name).await? {
                Some(cm) => {
                    for (k, v) in cm.data.clone().unwrap_or_default() {
                        set(&mut order, &mut vars, format!("{prefix}{k}"), v);
                    }
                }
                None if r.optional.unwrap_or(false) => {}
                None => return Err(format!("configmap \"{}\" not found", r.name)),
            }
        }
        if let Some(r) = &from.secret_ref {
            match sources.secret(&r.name).await? {
                Some(s) => {
                    for (k, v) in s.data.clone().unwrap_or_default() {
                        set(
                            &mut order,
                            &mut vars,
                            format!("{prefix}{k}"),
                            String::from_utf8_lossy(&v.0).into_owned(),
                        );
                    }
                }
                None if r.optional.unwrap_or(false) => {}
                None => return Err(format!("secret \"{}\" not found", r.name)),
            }
        }
    }
    for e in container.env.iter().flatten() {
        let value = if let Some(v) = &e.value {
            expand(v, &vars)
        } else if let Some(from) = &e.value_from {
            if let Some(r) = &from.config_map_key_ref {
                let optional = r.optional.unwrap_or(false);
                match sources.config_map(&r.name).await? {
                    Some(cm) => match config_map_value(cm, &r.key) {
                        Some(v) => v,
                        None if optional => continue,
                        None => {
                            return Err(format!(
                                "couldn't find key {} in ConfigMap {}/{}",
                                r.key, sources.namespace, r.name
                            ))
                        }
                    },
                    None if optional => continue,
                    None => return Err(format!("configmap \"{}\" not found", r.name)),
                }
            } else if let Some(r) = &from.secret_key_ref {
                let optional = r.optional.unwrap_or(false);
                match sources.secret(&r.name).await? {
                    Some(s) => match secret_value(s, &r.key) {
                        Some(v) => v,
                        None if optional => continue,
                        None => {
                            return Err(format!(
                                "couldn't find key {} in Secret {}/{}",
                                r.key, sources.namespace, r.name
                            ))
                        }
                    },
                    None if optional => continue,
                    None => return Err(format!("secret \"{}\" not found", r.name)),
                }
            } else if let Some(f) = &from.field_ref {
                field_value(facts.pod, &f.field_path, facts.host_ip, facts.pod_ip)?
            } else if let Some(r) = &from.resource_field_ref {
                let mut r = r.clone();
                if r.container_name.as_deref().unwrap_or("").is_empty() {
                    r.container_name = Some(container.name.clone());
                }
                resource_value(facts.pod, &r, facts.node_cpu_millis, facts.node_memory)?
            } else {
                String::new()
            }
        } else {
            String::new()
        };
        set(&mut order, &mut vars, e.name.clone(), value);
    }
    Ok(order
        .into_iter()
        .map(|k| {
            let v = vars.remove(&k).unwrap_or_default();
            (k, v)
        })
        .collect())
}

/// Expands `$(VAR)` in a command or args list with the container's environment.
pub fn expand_all(list: &[String], env: &[(String, String)]) -> Vec<String> {
    let vars: HashMap<String, String> = env.iter().cloned().collect();
    list.iter().map(|s| expand(s, &vars)).collect()
}

/// The value of a downward API field path.
pub fn field_value(pod: &Pod, path: &str, host_ip: &str, pod_ip: &str) -> Result<String, String> {
    let meta = &pod.metadata;
    let lookup = |map: &Option<std::collections::BTreeMap<String, String>>, key: &str| {
        map.as_ref()
            .and_then(|m| m.get(key).cloned())
            .unwrap_or_default()
    };
    let render = |map: &Option<std::collections::BTreeMap<String, String>>| {
        map.as_ref()
            .map(|m| {
                m.iter()
                    .map(|(k, v)| format!("{k}={}", serde_json::Value::String(v.clone())))
                    .collect::<Vec<_>>()
                    .join("\n")
            })
            .unwrap_or_default()
    };
    let key_of = |prefix: &str| -> Option<String> {
        path.strip_prefix(prefix)
            .and_then(|r| r.strip_prefix("['").or_else(|| r.strip_prefix("[\"")))
            .and_then(|r| r.strip_suffix("']").or_else(|| r.strip_suffix("\"]")))
            .map(str::to_string)
    };
    let spec = pod.spec.as_ref();
    Ok(match path {
        "metadata.name" => meta.name.clone().unwrap_or_default(),
        "metadata.namespace" => meta.namespace.clone().unwrap_or_default(),
        "metadata.uid" => meta.uid.clone().unwrap_or_default(),
        "metadata.labels" => render(&meta.labels),
        "metadata.annotations" => render(&meta.annotations),
        "spec.nodeName" => spec.and_then(|s| s.node_name.clone()).unwrap_or_default(),
        "spec.serviceAccountName" => spec
            .and_then(|s| s.service_account_name.clone())
            .unwrap_or_default(),
        "status.hostIP" | "status.hostIPs" => host_ip.to_string(),
        "status.podIP" | "status.podIPs" => pod_ip.to_string(),
        _ => {
            if let Some(k) = key_of("metadata.labels") {
                lookup(&meta.labels, &k)
            } else if let Some(k) = key_of("metadata.annotations") {
                lookup(&meta.annotations, &k)
            } else {
                return Err(format!("unsupported fieldPath {path:?}"));
            }
        }
    })
}

/// The value of a resourceFieldRef (limits default to the node's allocatable).
pub fn resource_value(
    pod: &Pod,
    r: &ResourceFieldSelector,
    node_cpu_millis: i64,
    node_memory: i64,
) -> Result<String, String> {
    let container_name = r.container_name.clone().unwrap_or_default();
    let container = pod
        .spec
        .iter()
        .flat_map(|s| {
            s.containers
                .iter()
                .chain(s.init_containers.iter().flatten())
        })
        .find(|c| c.name == container_name)
        .ok_or_else(|| format!("container {container_name:?} not found"))?;
    let res = container.resources.clone().unwrap_or_default();
    let get = |list: &Option<
        std::collections::BTreeMap<String, k8s_openapi::apimachinery::pkg::api::resource::Quantity>,
    >,
               key: &str| {
        list.as_ref().and_then(|m| m.get(key)).map(|q| q.0.clone())
    };
    let (kind, key) = r
        .resource
        .split_once('.')
        .ok_or_else(|| format!("unsupported resource {:?}", r.resource))?;
    let divisor = r
        .divisor
        .as_ref()
        .and_then(|d| quantity::parse(&d.0))
        .filter(|d| *d > 0.0)
        .unwrap_or(1.0);
    let value: f64 = match (kind, key) {
        ("limits", "cpu") => get(&res.limits, "cpu")
            .and_then(|q| quantity::parse(&q))
            .unwrap_or(node_cpu_millis as f64 / 1000.0),
        ("requests", "cpu") => get(&res.requests, "cpu")
            .and_then(|q| quantity::parse(&q))
            .unwrap_or(0.0),
        ("limits", "memory") => get(&res.limits, "memory")
            .and_then(|q| quantity::parse(&q))
            .unwrap_or(node_memory as f64),
        ("requests", "memory") => get(&res.requests, "memory")
            .and_then(|q| quantity::parse(&q))
            .unwrap_or(0.0),
        ("limits" | "requests", "ephemeral-storage") => get(
            if kind == "limits" {
                &res.limits
            } else {
                &res.requests
            },
            "ephemeral-storage",
        )
        .and_then(|q| quantity::parse(&q))
        .unwrap_or(0.0),
        _ => return Err(format!("unsupported resource {:?}", r.resource)),
    };
    Ok(((value / divisor).ceil() as i64).to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expansion_follows_upstream() {
        let vars: HashMap<String, String> = [("A".to_string(), "x".to_string())].into();
        assert_eq!(expand("$(A)-$(B)-$$(A)", &vars), "x-$(B)-$(A)");
        assert_eq!(expand("plain $ text", &vars), "plain $ text");
    }

    #[test]
    fn field_paths() {
        let pod: Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "p", "namespace": "ns", "labels": {"app": "web"}},
            "spec": {"nodeName": "n1", "containers": [{"name": "c", "resources": {"limits": {"memory": "64Mi"}}}]}
        }))
        .unwrap();
        assert_eq!(field_value(&pod, "metadata.name", "", "").unwrap(), "p");
        assert_eq!(
            field_value(&pod, "metadata.labels['app']", "", "").unwrap(),
            "web"
        );
        assert_eq!(
            field_value(&pod, "metadata.labels", "", "").unwrap(),
            "app=\"web\""
        );
        assert_eq!(
            field_value(&pod, "status.podIP", "1.2.3.4", "10.0.0.2").unwrap(),
            "10.0.0.2"
        );
        let sel = ResourceFieldSelector {
            container_name: Some("c".into()),
            resource: "limits.memory".into(),
            divisor: Some(k8s_openapi::apimachinery::pkg::api::resource::Quantity(
                "1Mi".into(),
            )),
        };
        assert_eq!(resource_value(&pod, &sel, 2000, 1 << 30).unwrap(), "64");
    }
}
