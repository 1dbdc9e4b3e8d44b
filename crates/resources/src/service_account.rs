//! The ServiceAccount admission's token mount: every container of a new pod gets the projected
//! `kube-api-access-<suffix>` volume (a bound service-account token, the cluster CA from
//! `kube-root-ca.crt` and the namespace) at [`TOKEN_MOUNT_PATH`], which is where in-cluster
//! clients (client-go, kube-rs) look for their credentials.

use serde_json::{json, Value};

/// Where in-cluster clients read `token`, `ca.crt` and `namespace`.
pub const TOKEN_MOUNT_PATH: &str = "/var/run/secrets/kubernetes.io/serviceaccount";
/// Prefix of the projected volume's name.
pub const TOKEN_VOLUME_PREFIX: &str = "kube-api-access-";
/// The token lifetime upstream asks for (an hour and seven seconds, so kubelets that see the
/// odd value know the token may be extended).
const TOKEN_EXPIRATION_SECONDS: i64 = 3607;

/// Mounts the service-account token volume into the pod's containers and init containers,
/// unless the pod opts out (`automountServiceAccountToken: false`, or `account_automount` is
/// false: the ServiceAccount's own setting) or is a mirror pod. A container that already mounts
/// something at [`TOKEN_MOUNT_PATH`] is left alone; the volume is added (named with `suffix`)
/// only when some container needs it.
pub fn mount_token(pod: &mut Value, account_automount: bool, suffix: &str) {
    let mirror = pod
        .pointer("/metadata/annotations/kubernetes.io~1config.mirror")
        .is_some();
    let Some(spec) = pod.get_mut("spec").and_then(Value::as_object_mut) else {
        return;
    };
    let automount = spec
        .get("automountServiceAccountToken")
        .and_then(Value::as_bool)
        .unwrap_or(account_automount);
    if mirror || !automount {
        return;
    }
    let existing = spec
        .get("volumes")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|v| v.get("name").and_then(Value::as_str))
        .find(|n| n.starts_with(TOKEN_VOLUME_PREFIX))
        .map(String::from);
    let volume_name = existing
        .clone()
        .unwrap_or_else(|| format!("{TOKEN_VOLUME_PREFIX}{suffix}"));
    let mount = json!({
        "name": volume_name,
        "readOnly": true,
        "mountPath": TOKEN_MOUNT_PATH,
    });
    let mut needed = false;
    for list in ["initContainers", "containers"] {
        for c in spec
            .get_mut(list)
            .and_then(Value::as_array_mut)
            .into_iter()
            .flatten()
        {
            let Some(c) = c.as_object_mut() else {
                continue;
            };
            let mounts = c.entry("volumeMounts").or_insert_with(|| json!([]));
            if mounts.is_null() {
                *mounts = json!([]);
            }
            let Some(mounts) = mounts.as_array_mut() else {
                continue;
            };
            let has = mounts
                .iter()
                .any(|m| m.get("mountPath").and_then(Value::as_str) == Some(TOKEN_MOUNT_PATH));
            if !has {
                mounts.push(mount.clone());
                needed = true;
            }
        }
    }
    if needed && existing.is_none() {
        let volumes = spec.entry("volumes").or_insert_with(|| json!([]));
        if volumes.is_null() {
            *volumes = json!([]);
        }
        if let Some(volumes) = volumes.as_array_mut() {
            volumes.push(token_volume(&volume_name));
        }
    }
}

fn token_volume(name: &str) -> Value {
    json!({
        "name": name,
        "projected": {
            "defaultMode": 420,
            "sources": [
                {"serviceAccountToken": {
                    "expirationSeconds": TOKEN_EXPIRATION_SECONDS,
                    "path": "token",
                }},
                {"configMap": {
                    "name": "kube-root-ca.crt",
                    "items": [{"key": "ca.crt", "path": "ca.crt"}],
                }},
                {"downwardAPI": {
                    "items": [{
                        "path": "namespace",
                        "fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"},
                    }],
                }},
            ],
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(spec: Value) -> Value {
        json!({"metadata": {"name": "p"}, "spec": spec})
    }

    #[test]
    fn every_container_gets_the_mount_and_the_pod_one_volume() {
        let mut p = pod(json!({
            "initContainers": [{"name": "i", "image": "x"}],
            "containers": [{"name": "a", "image": "x"}, {"name": "b", "image": "x",
                "volumeMounts": [{"name": "d", "mountPath": "/d"}]}],
            "volumes": [{"name": "d", "emptyDir": {}}],
        }));
        mount_token(&mut p, true, "abcde");
        let volumes = p["spec"]["volumes"].as_array().unwrap();
        assert_eq!(volumes.len(), 2);
        assert_eq!(volumes[1]["name"], "kube-api-access-abcde");
        let sources = volumes[1]["projected"]["sources"].as_array().unwrap();
        assert_eq!(sources[0]["serviceAccountToken"]["expirationSeconds"], 3607);
        assert_eq!(sources[1]["configMap"]["name"], "kube-root-ca.crt");
        assert_eq!(
            sources[2]["downwardAPI"]["items"][0]["fieldRef"]["fieldPath"],
            "metadata.namespace"
        );
        for c in ["initContainers", "containers"] {
            for c in p["spec"][c].as_array().unwrap() {
                let last = c["volumeMounts"]
                    .as_array()
                    .unwrap()
                    .last()
                    .unwrap()
                    .clone();
                assert_eq!(
                    last,
                    json!({"name": "kube-api-access-abcde", "readOnly": true,
                           "mountPath": TOKEN_MOUNT_PATH})
                );
            }
        }
        // Idempotent: a second pass adds nothing.
        let before = p.clone();
        mount_token(&mut p, true, "zzzzz");
        assert_eq!(p, before);
    }

    #[test]
    fn opting_out_and_own_mounts_are_respected() {
        let spec = json!({"containers": [{"name": "a", "image": "x"}]});
        let mut p = pod(spec.clone());
        p["spec"]["automountServiceAccountToken"] = json!(false);
        let before = p.clone();
        mount_token(&mut p, true, "abcde");
        assert_eq!(p, before);

        let mut p = pod(spec.clone());
        let before = p.clone();
        mount_token(&mut p, false, "abcde");
        assert_eq!(p, before, "the ServiceAccount opts out");

        // The pod's own setting wins over the account's.
        let mut p = pod(spec);
        p["spec"]["automountServiceAccountToken"] = json!(true);
        mount_token(&mut p, false, "abcde");
        assert_eq!(p["spec"]["volumes"].as_array().unwrap().len(), 1);

        // A container mounting its own volume at the path keeps it; no volume is added.
        let mut p = pod(json!({"containers": [{"name": "a", "image": "x",
            "volumeMounts": [{"name": "mine", "mountPath": TOKEN_MOUNT_PATH}]}],
            "volumes": [{"name": "mine", "emptyDir": {}}]}));
        let before = p.clone();
        mount_token(&mut p, true, "abcde");
        assert_eq!(p, before);

        let mut p = pod(json!({"containers": [{"name": "a", "image": "x"}]}));
        p["metadata"]["annotations"] = json!({"kubernetes.io/config.mirror": "x"});
        let before = p.clone();
        mount_token(&mut p, true, "abcde");
        assert_eq!(p, before, "mirror pods are left alone");
    }
}
