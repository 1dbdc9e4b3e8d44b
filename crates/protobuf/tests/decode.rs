//! Hand-built envelopes (k8s-pb messages encoded with prost) for fields the kubectl fixtures do
//! not reach, the error cases, and a no-panic sweep over random and mutated bodies.

use std::collections::BTreeMap;

use k8s_pb::api::{apps, authentication, authorization, core, policy};
use k8s_pb::apimachinery::pkg::{
    api::resource::Quantity,
    apis::meta::v1 as meta,
    runtime::{RawExtension, TypeMeta, Unknown},
    util::intstr::IntOrString,
};
use kubelab_protobuf::{decode, DecodeError, KINDS, MAGIC};
use prost::Message;
use serde_json::json;

fn envelope(api_version: &str, kind: &str, message: &impl Message) -> Vec<u8> {
    let unknown = Unknown {
        type_meta: Some(TypeMeta {
            api_version: Some(api_version.to_owned()),
            kind: Some(kind.to_owned()),
        }),
        raw: Some(message.encode_to_vec()),
        content_encoding: Some(String::new()),
        content_type: Some(String::new()),
    };
    [MAGIC, &unknown.encode_to_vec()].concat()
}

fn s(value: &str) -> Option<String> {
    Some(value.to_owned())
}

fn meta(name: &str) -> Option<meta::ObjectMeta> {
    Some(meta::ObjectMeta {
        name: s(name),
        ..Default::default()
    })
}

fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[test]
fn deployment_with_a_full_container() {
    let container = core::v1::Container {
        name: s("web"),
        image: s("nginx:1.27"),
        command: vec!["nginx".into()],
        args: vec!["-g".into(), "daemon off;".into()],
        working_dir: s(""),
        ports: vec![core::v1::ContainerPort {
            name: s("http"),
            container_port: Some(80),
            protocol: s("TCP"),
            host_ip: s(""),
            host_port: Some(0),
        }],
        env: vec![
            core::v1::EnvVar {
                name: s("MODE"),
                value: s("prod"),
                value_from: None,
            },
            core::v1::EnvVar {
                name: s("POD_IP"),
                value: s(""),
                value_from: Some(core::v1::EnvVarSource {
                    field_ref: Some(core::v1::ObjectFieldSelector {
                        api_version: s("v1"),
                        field_path: s("status.podIP"),
                    }),
                    ..Default::default()
                }),
            },
        ],
        resources: Some(core::v1::ResourceRequirements {
            limits: [("cpu".to_owned(), Quantity { string: s("500m") })].into(),
            requests: [("memory".to_owned(), Quantity { string: s("64Mi") })].into(),
            claims: vec![],
        }),
        volume_mounts: vec![core::v1::VolumeMount {
            name: s("data"),
            mount_path: s("/data"),
            read_only: Some(true),
            ..Default::default()
        }],
        readiness_probe: Some(core::v1::Probe {
            handler: Some(core::v1::ProbeHandler {
                http_get: Some(core::v1::HttpGetAction {
                    path: s("/healthz"),
                    port: Some(IntOrString {
                        r#type: Some(1),
                        int_val: Some(0),
                        str_val: s("http"),
                    }),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            period_seconds: Some(5),
            ..Default::default()
        }),
        image_pull_policy: s("IfNotPresent"),
        stdin: Some(false),
        tty: Some(false),
        ..Default::default()
    };
    let deployment = apps::v1::Deployment {
        metadata: Some(meta::ObjectMeta {
            name: s("web"),
            namespace: s("default"),
            generate_name: s(""),
            labels: labels(&[("app", "web")]),
            annotations: labels(&[("note", "x")]),
            finalizers: vec!["example.com/keep".into()],
            owner_references: vec![meta::OwnerReference {
                api_version: s("v1"),
                kind: s("ConfigMap"),
                name: s("owner"),
                uid: s("1234"),
                controller: Some(true),
                block_owner_deletion: None,
            }],
            creation_timestamp: Some(meta::Time::default()),
            deletion_grace_period_seconds: Some(0),
            ..Default::default()
        }),
        spec: Some(apps::v1::DeploymentSpec {
            replicas: Some(0),
            selector: Some(meta::LabelSelector {
                match_labels: labels(&[("app", "web")]),
                match_expressions: vec![meta::LabelSelectorRequirement {
                    key: s("tier"),
                    operator: s("In"),
                    values: vec!["front".into()],
                }],
            }),
            template: Some(core::v1::PodTemplateSpec {
                metadata: Some(meta::ObjectMeta {
                    labels: labels(&[("app", "web")]),
                    ..Default::default()
                }),
                spec: Some(core::v1::PodSpec {
                    containers: vec![container],
                    restart_policy: s("Always"),
                    termination_grace_period_seconds: Some(30),
                    host_ipc: Some(false),
                    host_network: Some(true),
                    automount_service_account_token: Some(false),
                    node_name: s(""),
                    node_selector: labels(&[("disk", "ssd")]),
                    volumes: vec![core::v1::Volume {
                        name: s("data"),
                        volume_source: Some(core::v1::VolumeSource {
                            empty_dir: Some(core::v1::EmptyDirVolumeSource {
                                medium: s(""),
                                size_limit: Some(Quantity { string: s("1Gi") }),
                            }),
                            ..Default::default()
                        }),
                    }],
                    ..Default::default()
                }),
            }),
            strategy: Some(apps::v1::DeploymentStrategy {
                r#type: s("RollingUpdate"),
                rolling_update: Some(apps::v1::RollingUpdateDeployment {
                    max_unavailable: Some(IntOrString {
                        r#type: Some(0),
                        int_val: Some(1),
                        str_val: s(""),
                    }),
                    max_surge: Some(IntOrString {
                        r#type: Some(1),
                        int_val: Some(0),
                        str_val: s("25%"),
                    }),
                }),
            }),
            min_ready_seconds: Some(0),
            paused: Some(false),
            ..Default::default()
        }),
        status: None,
    };
    let decoded = decode(&envelope("apps/v1", "Deployment", &deployment)).unwrap();
    assert_eq!(
        decoded,
        json!({
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {
                "name": "web",
                "namespace": "default",
                "deletionGracePeriodSeconds": 0,
                "creationTimestamp": null,
                "labels": {"app": "web"},
                "annotations": {"note": "x"},
                "ownerReferences": [{
                    "apiVersion": "v1", "kind": "ConfigMap", "name": "owner", "uid": "1234",
                    "controller": true
                }],
                "finalizers": ["example.com/keep"]
            },
            "spec": {
                "replicas": 0,
                "selector": {
                    "matchLabels": {"app": "web"},
                    "matchExpressions": [{"key": "tier", "operator": "In", "values": ["front"]}]
                },
                "template": {
                    "metadata": {"labels": {"app": "web"}},
                    "spec": {
                        "volumes": [{"name": "data", "emptyDir": {"sizeLimit": "1Gi"}}],
                        "containers": [{
                            "name": "web",
                            "image": "nginx:1.27",
                            "command": ["nginx"],
                            "args": ["-g", "daemon off;"],
                            "ports": [{"name": "http", "containerPort": 80, "protocol": "TCP"}],
                            "env": [
                                {"name": "MODE", "value": "prod"},
                                {"name": "POD_IP", "valueFrom": {
                                    "fieldRef": {"apiVersion": "v1", "fieldPath": "status.podIP"}
                                }}
                            ],
                            "resources": {
                                "limits": {"cpu": "500m"},
                                "requests": {"memory": "64Mi"}
                            },
                            "volumeMounts": [{"name": "data", "readOnly": true, "mountPath": "/data"}],
                            "readinessProbe": {
                                "httpGet": {"path": "/healthz", "port": "http"},
                                "periodSeconds": 5
                            },
                            "imagePullPolicy": "IfNotPresent"
                        }],
                        "restartPolicy": "Always",
                        "terminationGracePeriodSeconds": 30,
                        "nodeSelector": {"disk": "ssd"},
                        "automountServiceAccountToken": false,
                        "hostNetwork": true
                    }
                },
                "strategy": {
                    "type": "RollingUpdate",
                    "rollingUpdate": {"maxUnavailable": 1, "maxSurge": "25%"}
                }
                // paused is a plain bool with omitempty: false is left out, as in Go.
            }
        })
    );
}

#[test]
fn secret_bytes_become_base64() {
    let secret = core::v1::Secret {
        metadata: meta("s"),
        data: [
            ("password".to_owned(), b"hunter2".to_vec()),
            ("binary".to_owned(), vec![0, 255, 128]),
        ]
        .into(),
        string_data: labels(&[("plain", "text")]),
        r#type: s("Opaque"),
        immutable: Some(true),
    };
    assert_eq!(
        decode(&envelope("v1", "Secret", &secret)).unwrap(),
        json!({
            "apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"},
            "immutable": true,
            "data": {"binary": "AP+A", "password": "aHVudGVyMg=="},
            "stringData": {"plain": "text"},
            "type": "Opaque"
        })
    );
}

#[test]
fn service_ports_keep_int_or_string_target_ports() {
    let port = |name: &str, target: IntOrString| core::v1::ServicePort {
        name: s(name),
        protocol: s("TCP"),
        port: Some(80),
        target_port: Some(target),
        node_port: Some(0),
        ..Default::default()
    };
    let service = core::v1::Service {
        metadata: meta("web"),
        spec: Some(core::v1::ServiceSpec {
            ports: vec![
                port(
                    "by-number",
                    IntOrString {
                        r#type: Some(0),
                        int_val: Some(8080),
                        str_val: s(""),
                    },
                ),
                port(
                    "by-name",
                    IntOrString {
                        r#type: Some(1),
                        int_val: Some(0),
                        str_val: s("http"),
                    },
                ),
            ],
            cluster_ip: s("10.0.0.10"),
            cluster_ips: vec!["10.0.0.10".into()],
            r#type: s("ClusterIP"),
            session_affinity: s(""),
            ..Default::default()
        }),
        status: Some(Default::default()),
    };
    assert_eq!(
        decode(&envelope("v1", "Service", &service)).unwrap(),
        json!({
            "apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"},
            "spec": {
                "ports": [
                    {"name": "by-number", "protocol": "TCP", "port": 80, "targetPort": 8080},
                    {"name": "by-name", "protocol": "TCP", "port": 80, "targetPort": "http"}
                ],
                "clusterIP": "10.0.0.10",
                "clusterIPs": ["10.0.0.10"],
                "type": "ClusterIP"
            },
            "status": {}
        })
    );
}

#[test]
fn token_request_and_reviews() {
    let token = authentication::v1::TokenRequest {
        metadata: Some(Default::default()),
        spec: Some(authentication::v1::TokenRequestSpec {
            audiences: vec!["https://kubernetes.default.svc".into()],
            expiration_seconds: Some(600),
            bound_object_ref: Some(authentication::v1::BoundObjectReference {
                kind: s("Pod"),
                api_version: s("v1"),
                name: s("web-1"),
                u_id: s("abc"),
            }),
        }),
        status: None,
    };
    assert_eq!(
        decode(&envelope(
            "authentication.k8s.io/v1",
            "TokenRequest",
            &token
        ))
        .unwrap(),
        json!({
            "apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "metadata": {},
            "spec": {
                "audiences": ["https://kubernetes.default.svc"],
                "expirationSeconds": 600,
                "boundObjectRef": {"kind": "Pod", "apiVersion": "v1", "name": "web-1", "uid": "abc"}
            }
        })
    );

    let review = authorization::v1::SelfSubjectAccessReview {
        metadata: Some(Default::default()),
        spec: Some(authorization::v1::SelfSubjectAccessReviewSpec {
            resource_attributes: Some(authorization::v1::ResourceAttributes {
                namespace: s("default"),
                verb: s("create"),
                group: s("apps"),
                resource: s("deployments"),
                subresource: s(""),
                name: s(""),
                version: s(""),
                ..Default::default()
            }),
            non_resource_attributes: None,
        }),
        status: Some(authorization::v1::SubjectAccessReviewStatus {
            allowed: Some(false),
            ..Default::default()
        }),
    };
    assert_eq!(
        decode(&envelope(
            "authorization.k8s.io/v1",
            "SelfSubjectAccessReview",
            &review
        ))
        .unwrap(),
        json!({
            "apiVersion": "authorization.k8s.io/v1", "kind": "SelfSubjectAccessReview",
            "metadata": {},
            "spec": {"resourceAttributes": {
                "namespace": "default", "verb": "create", "group": "apps", "resource": "deployments"
            }},
            "status": {"allowed": false}
        })
    );

    let whoami = authentication::v1::SelfSubjectReview {
        metadata: Some(Default::default()),
        status: Some(authentication::v1::SelfSubjectReviewStatus {
            user_info: Some(authentication::v1::UserInfo {
                username: s("admin"),
                groups: vec!["system:masters".into()],
                extra: [(
                    "scopes".to_owned(),
                    authentication::v1::ExtraValue {
                        items: vec!["a".into(), "b".into()],
                    },
                )]
                .into(),
                ..Default::default()
            }),
        }),
    };
    assert_eq!(
        decode(&envelope(
            "authentication.k8s.io/v1",
            "SelfSubjectReview",
            &whoami
        ))
        .unwrap(),
        json!({
            "apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview", "metadata": {},
            "status": {"userInfo": {
                "username": "admin", "groups": ["system:masters"], "extra": {"scopes": ["a", "b"]}
            }}
        })
    );
}

#[test]
fn eviction_carries_delete_options() {
    let eviction = policy::v1::Eviction {
        metadata: Some(meta::ObjectMeta {
            name: s("web-1"),
            namespace: s("default"),
            ..Default::default()
        }),
        delete_options: Some(meta::DeleteOptions {
            grace_period_seconds: Some(0),
            preconditions: Some(meta::Preconditions {
                uid: s("u1"),
                resource_version: None,
            }),
            propagation_policy: s("Foreground"),
            dry_run: vec!["All".into()],
            ..Default::default()
        }),
    };
    assert_eq!(
        decode(&envelope("policy/v1", "Eviction", &eviction)).unwrap(),
        json!({
            "apiVersion": "policy/v1", "kind": "Eviction",
            "metadata": {"name": "web-1", "namespace": "default"},
            "deleteOptions": {
                "gracePeriodSeconds": 0,
                "preconditions": {"uid": "u1"},
                "propagationPolicy": "Foreground",
                "dryRun": ["All"]
            }
        })
    );
}

#[test]
fn delete_options_are_accepted_under_any_group_version() {
    let options = meta::DeleteOptions {
        grace_period_seconds: Some(10),
        ..Default::default()
    };
    for api_version in ["v1", "apps/v1", "meta.k8s.io/v1"] {
        assert_eq!(
            decode(&envelope(api_version, "DeleteOptions", &options)).unwrap(),
            json!({"apiVersion": api_version, "kind": "DeleteOptions", "gracePeriodSeconds": 10})
        );
    }
}

#[test]
fn times_durations_and_embedded_objects() {
    let event = k8s_pb::api::events::v1::Event {
        metadata: meta("e"),
        event_time: Some(meta::MicroTime {
            seconds: Some(1_704_067_200),
            nanos: Some(5_000),
        }),
        deprecated_first_timestamp: Some(meta::Time {
            seconds: Some(1_704_067_200),
            nanos: Some(999_999_999),
        }),
        reason: s("Started"),
        ..Default::default()
    };
    let decoded = decode(&envelope("events.k8s.io/v1", "Event", &event)).unwrap();
    assert_eq!(decoded["eventTime"], "2024-01-01T00:00:00.000005Z");
    assert_eq!(decoded["deprecatedFirstTimestamp"], "2024-01-01T00:00:00Z");

    let list = core::v1::List {
        metadata: Some(Default::default()),
        items: vec![
            RawExtension {
                raw: Some(br#"{"apiVersion":"v1","kind":"ConfigMap"}"#.to_vec()),
            },
            RawExtension {
                raw: Some(envelope("v1", "Namespace", &core::v1::Namespace::default())),
            },
        ],
    };
    assert_eq!(
        decode(&envelope("v1", "List", &list)).unwrap(),
        json!({
            "apiVersion": "v1", "kind": "List", "metadata": {},
            "items": [
                {"apiVersion": "v1", "kind": "ConfigMap"},
                {"apiVersion": "v1", "kind": "Namespace"}
            ]
        })
    );

    let bad = core::v1::List {
        items: vec![RawExtension {
            raw: Some(b"not json".to_vec()),
        }],
        ..Default::default()
    };
    assert!(matches!(
        decode(&envelope("v1", "List", &bad)),
        Err(DecodeError::EmbeddedJson { .. })
    ));
}

#[test]
fn nesting_through_raw_extensions_is_bounded() {
    let mut body = envelope("v1", "Namespace", &core::v1::Namespace::default());
    for _ in 0..20 {
        let list = core::v1::List {
            items: vec![RawExtension { raw: Some(body) }],
            ..Default::default()
        };
        body = envelope("v1", "List", &list);
    }
    assert!(matches!(decode(&body), Err(DecodeError::TooDeep { .. })));
    // The failed decode leaves no state behind: a shallow body still decodes.
    let list = core::v1::List {
        items: vec![RawExtension {
            raw: Some(envelope("v1", "Namespace", &core::v1::Namespace::default())),
        }],
        ..Default::default()
    };
    assert!(decode(&envelope("v1", "List", &list)).is_ok());
}

#[test]
fn json_content_type_inside_the_envelope_passes_through() {
    let unknown = Unknown {
        type_meta: Some(TypeMeta {
            api_version: s("v1"),
            kind: s("ConfigMap"),
        }),
        raw: Some(br#"{"metadata":{"name":"x"},"data":{"a":"b"}}"#.to_vec()),
        content_encoding: None,
        content_type: s("application/json"),
    };
    assert_eq!(
        decode(&[MAGIC, &unknown.encode_to_vec()].concat()).unwrap(),
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x"}, "data": {"a": "b"}})
    );
}

#[test]
fn every_listed_kind_decodes_an_empty_message() {
    assert!(KINDS.len() > 100);
    for &(api_version, kind) in KINDS {
        let body = [
            MAGIC,
            &Unknown {
                type_meta: Some(TypeMeta {
                    api_version: s(api_version),
                    kind: s(kind),
                }),
                raw: Some(vec![]),
                ..Default::default()
            }
            .encode_to_vec(),
        ]
        .concat();
        let decoded = decode(&body).unwrap_or_else(|error| panic!("{api_version} {kind}: {error}"));
        assert_eq!(decoded["kind"], kind);
    }
}

#[test]
fn malformed_bodies_are_errors() {
    let configmap = envelope("v1", "ConfigMap", &core::v1::ConfigMap::default());

    assert!(matches!(decode(b""), Err(DecodeError::BadMagic)));
    assert!(matches!(
        decode(b"{\"kind\":\"ConfigMap\"}"),
        Err(DecodeError::BadMagic)
    ));
    assert!(matches!(
        decode(&configmap[1..]),
        Err(DecodeError::BadMagic)
    ));
    assert!(matches!(
        decode(&configmap[..configmap.len() - 3]),
        Err(DecodeError::Envelope(_))
    ));
    assert!(matches!(
        decode(MAGIC),
        Err(DecodeError::MissingTypeMeta {
            field: "apiVersion"
        })
    ));

    match decode(&envelope(
        "example.com/v1",
        "Widget",
        &core::v1::ConfigMap::default(),
    )) {
        Err(DecodeError::UnsupportedKind { api_version, kind }) => {
            assert_eq!(
                (api_version.as_str(), kind.as_str()),
                ("example.com/v1", "Widget")
            );
        }
        other => panic!("expected UnsupportedKind, got {other:?}"),
    }

    // A valid envelope whose raw message is cut short.
    let unknown = Unknown {
        type_meta: Some(TypeMeta {
            api_version: s("v1"),
            kind: s("ConfigMap"),
        }),
        raw: Some(vec![0x0a, 0x10, 0x0a]),
        ..Default::default()
    };
    let error = decode(&[MAGIC, &unknown.encode_to_vec()].concat()).unwrap_err();
    assert!(matches!(error, DecodeError::Message { ref kind, .. } if kind == "ConfigMap"));
    assert!(error
        .to_string()
        .starts_with("cannot decode the ConfigMap message"));

    let gzipped = Unknown {
        content_encoding: s("gzip"),
        ..unknown
    };
    assert!(matches!(
        decode(&[MAGIC, &gzipped.encode_to_vec()].concat()),
        Err(DecodeError::ContentEncoding { .. })
    ));
}

/// xorshift64*: deterministic random bytes without a dependency.
struct Random(u64);

impl Random {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
}

#[test]
fn no_input_panics() {
    let fixtures = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let mut seeds: Vec<Vec<u8>> = std::fs::read_dir(fixtures)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|e| e == "pb"))
        .map(|path| std::fs::read(path).unwrap())
        .collect();
    seeds.push(envelope("v1", "Pod", &core::v1::Pod::default()));
    let mut random = Random(0x9e37_79b9_7f4a_7c15);

    for _ in 0..2_000 {
        let len = (random.next() % 200) as usize;
        let mut body: Vec<u8> = (0..len).map(|_| random.next() as u8).collect();
        let _ = decode(&body);
        if random.next().is_multiple_of(2) {
            body.splice(0..0, MAGIC.iter().copied());
            let _ = decode(&body);
        }
    }
    for seed in &seeds {
        for _ in 0..300 {
            let mut body = seed.clone();
            for _ in 0..=random.next() % 4 {
                let at = (random.next() as usize) % body.len();
                match random.next() % 3 {
                    0 => body[at] ^= 1 << (random.next() % 8),
                    1 => body[at] = random.next() as u8,
                    _ => body.truncate(at.max(MAGIC.len())),
                }
            }
            let _ = decode(&body);
        }
    }
}
