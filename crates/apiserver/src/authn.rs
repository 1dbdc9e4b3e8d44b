//! Service-account tokens: the TokenRequest subresource (`serviceaccounts/<name>/token`, what
//! `kubectl create token` and the kubelet's projected volumes call) and bearer-token
//! authentication.
//!
//! Tokens are ES256 JSON Web Tokens with upstream's claims (`iss`, `sub`, `aud`, `exp`, `iat`,
//! `nbf`, `jti` and the private `kubernetes.io` claim naming the namespace, the service account
//! and the object the token is bound to, with their uids). A token authenticates only while it
//! is unexpired, meant for this API server (an audience in common), and the service account and
//! the bound object still exist with the uids it names: deleting either revokes it.

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use kubelab_pki::{Identity, ServiceAccountKey};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::error::{ApiError, ApiResult};
use crate::registry::Registry;

/// The issuer (and default audience) of the tokens, as upstream's default
/// `--service-account-issuer` in kind and k3s.
pub const ISSUER: &str = "https://kubernetes.default.svc.cluster.local";
/// Lifetime of a token when the request names none.
const DEFAULT_EXPIRATION_SECONDS: i64 = 3600;
/// Shortest lifetime a request may ask for (upstream: ten minutes).
const MIN_EXPIRATION_SECONDS: i64 = 600;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
struct ObjectRef {
    name: String,
    uid: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct KubernetesClaims {
    namespace: String,
    serviceaccount: ObjectRef,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pod: Option<ObjectRef>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    secret: Option<ObjectRef>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    node: Option<ObjectRef>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Claims {
    iss: String,
    sub: String,
    aud: Vec<String>,
    exp: i64,
    iat: i64,
    nbf: i64,
    jti: String,
    #[serde(rename = "kubernetes.io")]
    kubernetes: KubernetesClaims,
}

/// Signs and verifies service-account tokens.
pub struct TokenAuthority {
    encoding: EncodingKey,
    decoding: DecodingKey,
}

impl TokenAuthority {
    pub fn new(key: &ServiceAccountKey) -> ApiResult<TokenAuthority> {
        Ok(TokenAuthority {
            encoding: EncodingKey::from_ec_pem(key.private_pem.as_bytes())
                .map_err(ApiError::internal)?,
            decoding: DecodingKey::from_ec_pem(key.public_pem.as_bytes())
                .map_err(ApiError::internal)?,
        })
    }

    fn sign(&self, claims: &Claims) -> ApiResult<String> {
        jsonwebtoken::encode(&Header::new(Algorithm::ES256), claims, &self.encoding)
            .map_err(ApiError::internal)
    }

    /// The claims of a token this authority signed, unexpired and meant for this server.
    fn verify(&self, token: &str) -> Option<Claims> {
        let mut validation = Validation::new(Algorithm::ES256);
        validation.set_audience(&[ISSUER]);
        validation.set_issuer(&[ISSUER]);
        validation.validate_nbf = true;
        validation.leeway = 0;
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        jsonwebtoken::decode::<Claims>(token, &self.decoding, &validation)
            .ok()
            .map(|data| data.claims)
    }
}

fn now_seconds() -> i64 {
    jiff::Timestamp::now().as_second()
}

fn rfc3339(seconds: i64) -> String {
    jiff::Timestamp::from_second(seconds)
        .map(|t| t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string())
        .unwrap_or_default()
}

fn uid(obj: &Value) -> &str {
    obj.pointer("/metadata/uid")
        .and_then(Value::as_str)
        .unwrap_or("")
}

fn invalid(field: &str, message: String) -> ApiError {
    ApiError::Invalid {
        group: "authentication.k8s.io".into(),
        kind: "TokenRequest".into(),
        name: String::new(),
        causes: vec![kubelab_resources::validation::FieldError {
            reason: "FieldValueInvalid",
            field: field.into(),
            message,
        }],
    }
}

/// `POST serviceaccounts/<name>/token`: a signed token for the service account, bound to the
/// object the request names (a Pod, a Secret or a Node), and the TokenRequest echoed back with
/// its defaults and `status`.
pub async fn token_request(
    reg: &Registry,
    authority: &TokenAuthority,
    ns: &str,
    name: &str,
    request: &Value,
) -> ApiResult<Value> {
    let sa_type = kubelab_resources::catalog::find("", "v1", "serviceaccounts")
        .ok_or_else(|| ApiError::internal("no serviceaccounts type"))?;
    let sa = reg.get(sa_type, Some(ns), name).await?;
    let spec = request.get("spec").cloned().unwrap_or_else(|| json!({}));
    let expiration = match spec.get("expirationSeconds") {
        None | Some(Value::Null) => DEFAULT_EXPIRATION_SECONDS,
        Some(v) => v.as_i64().ok_or_else(|| {
            invalid(
                "spec.expirationSeconds",
                format!("Invalid value: {v}: must be an integer"),
            )
        })?,
    };
    if expiration < MIN_EXPIRATION_SECONDS {
        return Err(invalid(
            "spec.expirationSeconds",
            format!("Invalid value: {expiration}: may not specify a duration less than 10 minutes"),
        ));
    }
    if expiration > 1 << 32 {
        return Err(invalid(
            "spec.expirationSeconds",
            format!(
                "Invalid value: {expiration}: may not specify a duration larger than 2^32 seconds"
            ),
        ));
    }
    let audiences: Vec<String> = match spec.get("audiences").and_then(Value::as_array) {
        Some(a) if !a.is_empty() => a
            .iter()
            .map(|v| v.as_str().map(String::from))
            .collect::<Option<_>>()
            .ok_or_else(|| invalid("spec.audiences", "Invalid value: must be strings".into()))?,
        _ => vec![ISSUER.to_string()],
    };
    let mut claims = KubernetesClaims {
        namespace: ns.to_string(),
        serviceaccount: ObjectRef {
            name: name.to_string(),
            uid: uid(&sa).to_string(),
        },
        pod: None,
        secret: None,
        node: None,
    };
    let bound = spec.get("boundObjectRef").filter(|b| !b.is_null()).cloned();
    if let Some(bound) = &bound {
        let kind = bound.get("kind").and_then(Value::as_str).unwrap_or("");
        let api_version = bound
            .get("apiVersion")
            .and_then(Value::as_str)
            .unwrap_or("v1");
        let bound_name = bound.get("name").and_then(Value::as_str).unwrap_or("");
        let (plural, namespaced) = match (api_version, kind) {
            ("v1", "Pod") => ("pods", true),
            ("v1", "Secret") => ("secrets", true),
            ("v1", "Node") => ("nodes", false),
            _ => {
                return Err(invalid(
                    "spec.boundObjectRef.kind",
                    format!("Unsupported value: \"{api_version}/{kind}\": supported values: \"v1/Pod\", \"v1/Secret\", \"v1/Node\""),
                ))
            }
        };
        let rt = kubelab_resources::catalog::find("", "v1", plural)
            .ok_or_else(|| ApiError::internal("no bound object type"))?;
        let obj = reg.get(rt, namespaced.then_some(ns), bound_name).await?;
        let want_uid = bound.get("uid").and_then(Value::as_str).unwrap_or("");
        if !want_uid.is_empty() && want_uid != uid(&obj) {
            return Err(ApiError::Conflict {
                group: String::new(),
                kind: plural.into(),
                name: bound_name.into(),
                message: format!(
                    "Operation cannot be fulfilled on {plural} \"{bound_name}\": the UID in the bound object reference ({want_uid}) does not match the UID in record. The object might have been deleted and then recreated"
                ),
            });
        }
        let reference = Some(ObjectRef {
            name: bound_name.to_string(),
            uid: uid(&obj).to_string(),
        });
        match kind {
            "Pod" => {
                claims.pod = reference;
                // A pod-bound token also names the pod's node, as upstream.
                if let Some(node) = obj.pointer("/spec/nodeName").and_then(Value::as_str) {
                    let nodes = kubelab_resources::catalog::find("", "v1", "nodes");
                    if let Some(Ok(n)) = match nodes {
                        Some(rt) => Some(reg.get(rt, None, node).await),
                        None => None,
                    } {
                        claims.node = Some(ObjectRef {
                            name: node.to_string(),
                            uid: uid(&n).to_string(),
                        });
                    }
                }
            }
            "Secret" => claims.secret = reference,
            _ => claims.node = reference,
        }
    }
    let now = now_seconds();
    let token = authority.sign(&Claims {
        iss: ISSUER.into(),
        sub: format!("system:serviceaccount:{ns}:{name}"),
        aud: audiences.clone(),
        exp: now + expiration,
        iat: now,
        nbf: now,
        jti: uuid_like(),
        kubernetes: claims,
    })?;
    let mut spec_out = json!({"audiences": audiences, "expirationSeconds": expiration});
    spec_out["boundObjectRef"] = bound.unwrap_or(Value::Null);
    Ok(json!({
        "kind": "TokenRequest",
        "apiVersion": "authentication.k8s.io/v1",
        "metadata": {"name": name, "namespace": ns, "creationTimestamp": null},
        "spec": spec_out,
        "status": {"token": token, "expirationTimestamp": rfc3339(now + expiration)},
    }))
}

fn uuid_like() -> String {
    let bytes: [u8; 16] = rand::random();
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

/// The identity a bearer token proves, or None (the request is then unauthenticated: 401).
pub async fn authenticate_bearer(
    reg: &Registry,
    authority: &TokenAuthority,
    token: &str,
) -> Option<Identity> {
    let claims = authority.verify(token)?;
    let k = &claims.kubernetes;
    let core = |plural: &str| kubelab_resources::catalog::find("", "v1", plural);
    let sa = reg
        .get(
            core("serviceaccounts")?,
            Some(&k.namespace),
            &k.serviceaccount.name,
        )
        .await
        .ok()?;
    if uid(&sa) != k.serviceaccount.uid {
        return None;
    }
    if let Some(pod) = &k.pod {
        let p = reg
            .get(core("pods")?, Some(&k.namespace), &pod.name)
            .await
            .ok()?;
        if uid(&p) != pod.uid {
            return None;
        }
    }
    if let Some(secret) = &k.secret {
        let s = reg
            .get(core("secrets")?, Some(&k.namespace), &secret.name)
            .await
            .ok()?;
        if uid(&s) != secret.uid {
            return None;
        }
    }
    if k.pod.is_none() {
        if let Some(node) = &k.node {
            let n = reg.get(core("nodes")?, None, &node.name).await.ok()?;
            if uid(&n) != node.uid {
                return None;
            }
        }
    }
    Some(Identity {
        user: claims.sub.clone(),
        groups: vec![
            "system:serviceaccounts".into(),
            format!("system:serviceaccounts:{}", k.namespace),
            "system:authenticated".into(),
        ],
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn authority() -> TokenAuthority {
        let dir = tempfile::tempdir().unwrap();
        let key = kubelab_pki::ensure_service_account_key(dir.path()).unwrap();
        TokenAuthority::new(&key).unwrap()
    }

    fn claims(exp_in: i64, aud: &str) -> Claims {
        let now = now_seconds();
        Claims {
            iss: ISSUER.into(),
            sub: "system:serviceaccount:default:app".into(),
            aud: vec![aud.into()],
            exp: now + exp_in,
            iat: now,
            nbf: now,
            jti: uuid_like(),
            kubernetes: KubernetesClaims {
                namespace: "default".into(),
                serviceaccount: ObjectRef {
                    name: "app".into(),
                    uid: "u1".into(),
                },
                pod: None,
                secret: None,
                node: None,
            },
        }
    }

    #[test]
    fn signed_tokens_verify_and_tampered_or_foreign_ones_do_not() {
        let a = authority();
        let token = a.sign(&claims(600, ISSUER)).unwrap();
        let got = a.verify(&token).unwrap();
        assert_eq!(got.sub, "system:serviceaccount:default:app");
        assert_eq!(got.kubernetes.serviceaccount.uid, "u1");
        // Another key's token, an expired one, another audience, and a tampered payload fail.
        let other = authority().sign(&claims(600, ISSUER)).unwrap();
        assert!(a.verify(&other).is_none());
        assert!(a.verify(&a.sign(&claims(-10, ISSUER)).unwrap()).is_none());
        assert!(a.verify(&a.sign(&claims(600, "vault")).unwrap()).is_none());
        let mut parts: Vec<String> = token.split('.').map(String::from).collect();
        parts[1] = parts[1].chars().rev().collect();
        assert!(a.verify(&parts.join(".")).is_none());
        assert!(a.verify("not a jwt").is_none());
    }

    #[test]
    fn the_header_names_es256() {
        let a = authority();
        let token = a.sign(&claims(600, ISSUER)).unwrap();
        let header = jsonwebtoken::decode_header(&token).unwrap();
        assert_eq!(header.alg, Algorithm::ES256);
    }
}
