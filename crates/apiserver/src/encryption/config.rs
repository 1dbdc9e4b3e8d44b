//! The `apiserver.config.k8s.io/v1` EncryptionConfiguration file: its types (YAML or JSON),
//! upstream's validation, and the per-resource transformer lists it compiles to.
//!
//! Resource entries are processed in order and the first that names a resource wins; names are
//! `resource` (core group) or `resource.group`, wildcards `*.group`, `*.` (the core group) and
//! `*.*` (everything, custom resources included). Overlaps that would make part of the file
//! ineffective are errors, as upstream.

use base64::Engine;
use serde::{Deserialize, Serialize};

use super::transformer::{PrefixTransformer, ProviderKind, Transformers};

pub const API_VERSION: &str = "apiserver.config.k8s.io/v1";
pub const KIND: &str = "EncryptionConfiguration";

#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EncryptionConfiguration {
    pub api_version: String,
    pub kind: String,
    #[serde(default)]
    pub resources: Vec<ResourceConfiguration>,
}

#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ResourceConfiguration {
    #[serde(default)]
    pub resources: Vec<String>,
    #[serde(default)]
    pub providers: Vec<ProviderConfiguration>,
}

/// One provider of a list: exactly one field set.
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ProviderConfiguration {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aescbc: Option<KeysConfiguration>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aesgcm: Option<KeysConfiguration>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secretbox: Option<KeysConfiguration>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identity: Option<IdentityConfiguration>,
    /// Recognised so that the error says what is missing: kubelab has no KMS plugins.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kms: Option<serde_json::Value>,
}

impl ProviderConfiguration {
    pub fn keyed(kind: ProviderKind, keys: Vec<Key>) -> ProviderConfiguration {
        let keys = Some(KeysConfiguration { keys });
        match kind {
            ProviderKind::AesCbc => ProviderConfiguration {
                aescbc: keys,
                ..Default::default()
            },
            ProviderKind::AesGcm => ProviderConfiguration {
                aesgcm: keys,
                ..Default::default()
            },
            ProviderKind::Secretbox => ProviderConfiguration {
                secretbox: keys,
                ..Default::default()
            },
            ProviderKind::Identity => Self::identity(),
        }
    }

    pub fn identity() -> ProviderConfiguration {
        ProviderConfiguration {
            identity: Some(IdentityConfiguration {}),
            ..Default::default()
        }
    }

    /// The provider's kind and keys (identity has none); `None` for KMS or an empty element.
    pub fn kind_and_keys(&self) -> Option<(ProviderKind, &[Key])> {
        match self {
            ProviderConfiguration {
                aescbc: Some(k), ..
            } => Some((ProviderKind::AesCbc, &k.keys)),
            ProviderConfiguration {
                aesgcm: Some(k), ..
            } => Some((ProviderKind::AesGcm, &k.keys)),
            ProviderConfiguration {
                secretbox: Some(k), ..
            } => Some((ProviderKind::Secretbox, &k.keys)),
            ProviderConfiguration {
                identity: Some(_), ..
            } => Some((ProviderKind::Identity, &[])),
            _ => None,
        }
    }

    /// The keys of a keyed provider, for rewriting.
    pub fn keys_mut(&mut self) -> Option<&mut Vec<Key>> {
        [&mut self.aescbc, &mut self.aesgcm, &mut self.secretbox]
            .into_iter()
            .find_map(|k| k.as_mut().map(|k| &mut k.keys))
    }

    /// Whether the provider has no keys of its own (identity).
    pub fn is_keyless(&self) -> bool {
        self.aescbc.is_none() && self.aesgcm.is_none() && self.secretbox.is_none()
    }

    fn count(&self) -> usize {
        [
            self.aescbc.is_some(),
            self.aesgcm.is_some(),
            self.secretbox.is_some(),
            self.identity.is_some(),
            self.kms.is_some(),
        ]
        .into_iter()
        .filter(|set| *set)
        .count()
    }
}

#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct KeysConfiguration {
    #[serde(default)]
    pub keys: Vec<Key>,
}

#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct IdentityConfiguration {}

#[derive(Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Key {
    #[serde(default)]
    pub name: String,
    /// Standard base64 of the key bytes.
    #[serde(default)]
    pub secret: String,
}

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Key")
            .field("name", &self.name)
            .field("secret", &"REDACTED")
            .finish()
    }
}

/// Which resources an entry names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ResourceMatcher {
    /// `secrets`, `deployments.apps`
    Exact { group: String, resource: String },
    /// `*.apps`; `*.` is the core group (`""`)
    Group(String),
    /// `*.*`
    All,
}

impl ResourceMatcher {
    pub fn parse(text: &str) -> Result<ResourceMatcher, String> {
        if text.is_empty() {
            return Err("resource name must not be empty".into());
        }
        if text == "*" {
            return Err(
                "use '*.' to match all resources of the core group, or '*.*' for all resources"
                    .into(),
            );
        }
        if text.contains('/') {
            return Err(
                "subresources cannot be encrypted (they are stored with their resource)".into(),
            );
        }
        if text != text.to_lowercase() {
            return Err("resource names are lowercase plurals (e.g. secrets)".into());
        }
        let (resource, group) = text.split_once('.').unwrap_or((text, ""));
        if resource == "*" {
            return Ok(if group == "*" {
                ResourceMatcher::All
            } else {
                ResourceMatcher::Group(group.to_owned())
            });
        }
        if resource.contains('*') || group.contains('*') {
            return Err("a wildcard must be '*.<group>', '*.' or '*.*'".into());
        }
        Ok(ResourceMatcher::Exact {
            group: group.to_owned(),
            resource: resource.to_owned(),
        })
    }

    pub fn matches(&self, group: &str, resource: &str) -> bool {
        match self {
            ResourceMatcher::Exact {
                group: g,
                resource: r,
            } => g == group && r == resource,
            ResourceMatcher::Group(g) => g == group,
            ResourceMatcher::All => true,
        }
    }

    /// Whether every resource `other` names is also named by `self`.
    fn covers(&self, other: &ResourceMatcher) -> bool {
        match (self, other) {
            (ResourceMatcher::All, _) => true,
            (ResourceMatcher::Group(g), ResourceMatcher::Group(h)) => g == h,
            (ResourceMatcher::Group(g), ResourceMatcher::Exact { group, .. }) => g == group,
            (ResourceMatcher::Exact { .. }, ResourceMatcher::Exact { .. }) => self == other,
            _ => false,
        }
    }
}

/// One compiled entry.
#[derive(Clone, Debug)]
pub struct Rule {
    pub matchers: Vec<ResourceMatcher>,
    pub transformers: std::sync::Arc<Transformers>,
}

impl Rule {
    pub fn matches(&self, group: &str, resource: &str) -> bool {
        self.matchers.iter().any(|m| m.matches(group, resource))
    }
}

/// Parse a configuration file's text (YAML or JSON).
pub fn parse(text: &str) -> Result<EncryptionConfiguration, String> {
    serde_yaml::from_str(text).map_err(|e| e.to_string())
}

/// Validate a configuration and compile it to rules, in order. Every problem is reported, one
/// per line, with upstream's field paths.
pub fn compile(config: &EncryptionConfiguration) -> Result<Vec<Rule>, Vec<String>> {
    let mut errors = Vec::new();
    if config.api_version != API_VERSION || config.kind != KIND {
        errors.push(format!(
            "apiVersion and kind must be {API_VERSION} and {KIND}, got {} and {}",
            config.api_version, config.kind
        ));
    }
    if config.resources.is_empty() {
        errors.push("resources: Required value: at least one resources is required".into());
    }
    let mut rules = Vec::new();
    let mut earlier: Vec<(ResourceMatcher, String)> = Vec::new();
    for (i, entry) in config.resources.iter().enumerate() {
        let r = format!("resources[{i}].resources");
        let p = format!("resources[{i}].providers");
        if entry.resources.is_empty() {
            errors.push(format!("{r}: Required value: at least one {r} is required"));
        }
        if entry.providers.is_empty() {
            errors.push(format!("{p}: Required value: at least one {p} is required"));
        }
        let mut matchers: Vec<(ResourceMatcher, String)> = Vec::new();
        for (j, name) in entry.resources.iter().enumerate() {
            let path = format!("{r}[{j}]");
            let matcher = match ResourceMatcher::parse(name) {
                Ok(m) => m,
                Err(e) => {
                    errors.push(format!("{path}: Invalid value: {name:?}: {e}"));
                    continue;
                }
            };
            if let Some((_, other)) = matchers
                .iter()
                .find(|(m, _)| m.covers(&matcher) || matcher.covers(m))
            {
                errors.push(format!(
                    "{path}: Invalid value: {name:?}: using overlapping resources such as {other:?} and {name:?} in the same resource list is not allowed as they will be masked"
                ));
                continue;
            }
            if let Some((_, other)) = earlier.iter().find(|(m, _)| m.covers(&matcher)) {
                errors.push(format!(
                    "{path}: Invalid value: {name:?}: resource {name:?} is masked by earlier rule {other:?}"
                ));
                continue;
            }
            matchers.push((matcher, name.clone()));
        }
        let mut list = Vec::new();
        for (j, provider) in entry.providers.iter().enumerate() {
            let path = format!("{p}[{j}]");
            match provider.count() {
                0 => {
                    errors.push(format!("{path}: Invalid value: provider does not contain any of the expected providers: KMS, AESGCM, AESCBC, Secretbox, Identity"));
                    continue;
                }
                1 => {}
                _ => {
                    errors.push(format!("{path}: Invalid value: more than one provider specified in a single element, should split into different list elements"));
                    continue;
                }
            }
            if provider.kms.is_some() {
                errors.push(format!(
                    "{path}.kms: Unsupported value: kubelab has no KMS plugins; use aescbc, aesgcm, secretbox or identity"
                ));
                continue;
            }
            let Some((kind, keys)) = provider.kind_and_keys() else {
                continue;
            };
            if kind == ProviderKind::Identity {
                list.push(PrefixTransformer::identity());
                continue;
            }
            let keys_path = format!("{path}.{}.keys", kind.name());
            if keys.is_empty() {
                errors.push(format!(
                    "{keys_path}: Required value: at least one keys is required"
                ));
            }
            for (k, key) in keys.iter().enumerate() {
                let key_path = format!("{keys_path}[{k}]");
                if key.name.is_empty() {
                    errors.push(format!(
                        "{key_path}.name: Required value: name is a mandatory field for a key"
                    ));
                }
                if key.secret.is_empty() {
                    errors.push(format!(
                        "{key_path}.secret: Required value: secret is a mandatory field for a key"
                    ));
                    continue;
                }
                let Ok(bytes) = base64::engine::general_purpose::STANDARD.decode(&key.secret)
                else {
                    errors.push(format!(
                        "{key_path}.secret: Invalid value: \"REDACTED\": secrets must be base64 encoded"
                    ));
                    continue;
                };
                let sizes = kind.key_sizes();
                if !sizes.contains(&bytes.len()) {
                    let sizes: Vec<String> = sizes.iter().map(|s| s.to_string()).collect();
                    errors.push(format!(
                        "{key_path}.secret: Invalid value: \"REDACTED\": secret is not of the expected length, got {}, expected one of [{}]",
                        bytes.len(),
                        sizes.join(" ")
                    ));
                    continue;
                }
                if let Some(t) = PrefixTransformer::keyed(kind, &key.name, &bytes) {
                    list.push(t);
                }
            }
        }
        if let Some(transformers) = Transformers::new(list) {
            rules.push(Rule {
                matchers: matchers.iter().map(|(m, _)| m.clone()).collect(),
                transformers: std::sync::Arc::new(transformers),
            });
        }
        earlier.extend(matchers);
    }
    if errors.is_empty() {
        Ok(rules)
    } else {
        Err(errors)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY32: &str = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY="; // "0123456789abcdef" x2
    const KEY16: &str = "MDEyMzQ1Njc4OWFiY2RlZg=="; // 16 bytes

    fn compile_text(text: &str) -> Result<Vec<Rule>, Vec<String>> {
        compile(&parse(text).map_err(|e| vec![e])?)
    }

    #[test]
    fn the_documented_example_compiles_in_order() {
        let rules = compile_text(&format!(
            r#"
apiVersion: apiserver.config.k8s.io/v1
kind: EncryptionConfiguration
resources:
  - resources: [events]
    providers: [{{identity: {{}}}}]
  - resources: [secrets, configmaps, pandas.awesome.bears.example]
    providers:
      - aescbc: {{keys: [{{name: key1, secret: {KEY32}}}, {{name: key2, secret: {KEY32}}}]}}
      - aesgcm: {{keys: [{{name: key1, secret: {KEY16}}}]}}
      - secretbox: {{keys: [{{name: key1, secret: {KEY32}}}]}}
      - identity: {{}}
  - resources: ['*.apps']
    providers: [{{aescbc: {{keys: [{{name: key2, secret: {KEY32}}}]}}}}]
  - resources: ['*.*']
    providers: [{{aesgcm: {{keys: [{{name: key3, secret: {KEY32}}}]}}}}]
"#
        ))
        .unwrap();
        assert_eq!(rules.len(), 4);
        let prefixes: Vec<String> = rules[1]
            .transformers
            .list()
            .iter()
            .map(|t| String::from_utf8(t.prefix().to_vec()).unwrap())
            .collect();
        assert_eq!(
            prefixes,
            [
                "k8s:enc:aescbc:v1:key1:",
                "k8s:enc:aescbc:v1:key2:",
                "k8s:enc:aesgcm:v1:key1:",
                "k8s:enc:secretbox:v1:key1:",
                ""
            ]
        );
        let first = |g: &str, r: &str| rules.iter().position(|rule| rule.matches(g, r));
        assert_eq!(first("", "events"), Some(0));
        assert_eq!(first("", "secrets"), Some(1));
        assert_eq!(first("awesome.bears.example", "pandas"), Some(1));
        assert_eq!(first("apps", "deployments"), Some(2));
        assert_eq!(first("", "pods"), Some(3));
        assert_eq!(first("example.com", "widgets"), Some(3));
    }

    #[test]
    fn json_is_accepted_too() {
        let rules = compile_text(&format!(
            r#"{{"apiVersion":"apiserver.config.k8s.io/v1","kind":"EncryptionConfiguration","resources":[{{"resources":["secrets"],"providers":[{{"aescbc":{{"keys":[{{"name":"aescbckey","secret":"{KEY32}"}}]}}}},{{"identity":{{}}}}]}}]}}"#
        ))
        .unwrap();
        assert_eq!(rules[0].transformers.list().len(), 2);
        assert!(rules[0].matches("", "secrets") && !rules[0].matches("", "configmaps"));
    }

    fn errors_of(resources: &str) -> String {
        compile_text(&format!(
            "apiVersion: apiserver.config.k8s.io/v1\nkind: EncryptionConfiguration\nresources:\n{resources}"
        ))
        .err()
        .unwrap_or_default()
        .join("\n")
    }

    #[test]
    fn invalid_files_are_refused_with_every_reason() {
        let e = errors_of("  - resources: [secrets]\n    providers: [{}]\n");
        assert!(
            e.contains("provider does not contain any of the expected providers: KMS, AESGCM, AESCBC, Secretbox, Identity"),
            "{e}"
        );
        let e = errors_of(&format!(
            "  - resources: [secrets]\n    providers: [{{identity: {{}}, aescbc: {{keys: [{{name: k, secret: {KEY32}}}]}}}}]\n"
        ));
        assert!(
            e.contains("more than one provider specified in a single element"),
            "{e}"
        );
        let e = errors_of(&format!(
            "  - resources: [secrets]\n    providers: [{{aescbc: {{keys: [{{name: '', secret: {KEY32}}}, {{name: b, secret: '!!'}}, {{name: c, secret: YWJj}}]}}}}]\n"
        ));
        assert!(
            e.contains("providers[0].aescbc.keys[0].name: Required value"),
            "{e}"
        );
        assert!(
            e.contains(
                "keys[1].secret: Invalid value: \"REDACTED\": secrets must be base64 encoded"
            ),
            "{e}"
        );
        assert!(
            e.contains("keys[2].secret: Invalid value: \"REDACTED\": secret is not of the expected length, got 3, expected one of [16 24 32]"),
            "{e}"
        );
        let e = errors_of(&format!(
            "  - resources: [secrets]\n    providers: [{{secretbox: {{keys: [{{name: k, secret: {KEY16}}}]}}}}]\n"
        ));
        assert!(e.contains("got 16, expected one of [32]"), "{e}");
        let e = errors_of("  - resources: [secrets]\n    providers: [{aescbc: {keys: []}}]\n");
        assert!(e.contains("at least one keys is required"), "{e}");
        let e = errors_of("  - resources: []\n    providers: []\n");
        assert!(e.contains("resources[0].resources: Required value"), "{e}");
        assert!(e.contains("resources[0].providers: Required value"), "{e}");
        let e = errors_of("  - resources: [secrets]\n    providers: [{kms: {name: x}}]\n");
        assert!(e.contains("kubelab has no KMS plugins"), "{e}");
        assert!(compile_text("apiVersion: v1\nkind: Secret\nresources: []\n").is_err());
        // Unknown fields are errors, not silently ignored keys.
        assert!(parse(
            "apiVersion: a\nkind: b\nresources:\n  - resources: [secrets]\n    provider: []\n"
        )
        .is_err());
    }

    #[test]
    fn overlapping_wildcards_are_refused() {
        let identity = "    providers: [{identity: {}}]\n";
        let e = errors_of(&format!("  - resources: ['*.*', secrets]\n{identity}"));
        assert!(e.contains("using overlapping resources"), "{e}");
        let e = errors_of(&format!("  - resources: ['*.', secrets]\n{identity}"));
        assert!(e.contains("using overlapping resources"), "{e}");
        let e = errors_of(&format!(
            "  - resources: ['*.*']\n{identity}  - resources: [events]\n{identity}"
        ));
        assert!(
            e.contains("resource \"events\" is masked by earlier rule \"*.*\""),
            "{e}"
        );
        let e = errors_of(&format!(
            "  - resources: ['*.apps']\n{identity}  - resources: [deployments.apps]\n{identity}"
        ));
        assert!(e.contains("masked by earlier rule \"*.apps\""), "{e}");
        let e = errors_of(&format!("  - resources: ['*']\n{identity}"));
        assert!(e.contains("use '*.'"), "{e}");
        let e = errors_of(&format!("  - resources: ['pods/status']\n{identity}"));
        assert!(e.contains("subresources"), "{e}");
        // Specific before wildcard is the documented way to opt out.
        assert_eq!(
            errors_of(&format!(
                "  - resources: [events]\n{identity}  - resources: ['*.apps', '*.']\n{identity}  - resources: ['*.*']\n{identity}"
            )),
            ""
        );
    }

    #[test]
    fn keys_are_redacted_in_debug_output() {
        let key = Key {
            name: "k".into(),
            secret: KEY32.into(),
        };
        assert!(!format!("{key:?}").contains(KEY32));
    }
}
