//! ClusterRole aggregation, as upstream's clusterrole-aggregation-controller: a ClusterRole
//! with an `aggregationRule` has as `rules` the union of the rules of every other ClusterRole
//! its `clusterRoleSelectors` select, kept current as those roles come, change and go.

use futures::StreamExt;
use k8s_openapi::api::rbac::v1::{ClusterRole, PolicyRule};
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::reflector::{reflector, Store};
use kube::runtime::watcher::{self, watcher, Event};
use kube::runtime::WatchStreamExt;
use kube::ResourceExt;

use crate::job::support::selector_matches;
use crate::{Context, Error};

pub async fn run(ctx: Context) {
    let api: Api<ClusterRole> = Api::all(ctx.client.clone());
    let (reader, writer) = kube::runtime::reflector::store();
    let mut events = std::pin::pin!(reflector(
        writer,
        watcher(api.clone(), watcher::Config::default()).default_backoff()
    ));
    while let Some(event) = events.next().await {
        match event {
            Ok(Event::Init | Event::InitApply(_)) => continue,
            Ok(_) => {}
            Err(error) => {
                tracing::debug!(%error, "clusterrole aggregation watch");
                continue;
            }
        }
        if let Err(error) = sync(&reader, &api).await {
            tracing::warn!(%error, "clusterrole aggregation failed");
        }
    }
}

/// The rules an aggregated role should have, from every role: selected roles in name order,
/// each rule once.
pub fn aggregated_rules(role: &ClusterRole, all: &[ClusterRole]) -> Option<Vec<PolicyRule>> {
    let rule = role.aggregation_rule.as_ref()?;
    let selectors = rule.cluster_role_selectors.as_deref().unwrap_or(&[]);
    let mut selected: Vec<&ClusterRole> = all
        .iter()
        .filter(|other| other.name_any() != role.name_any())
        .filter(|other| {
            selectors.iter().any(|s| {
                let empty = s.match_labels.as_ref().is_none_or(|m| m.is_empty())
                    && s.match_expressions.as_ref().is_none_or(|e| e.is_empty());
                !empty && selector_matches(s, other.metadata.labels.as_ref())
            })
        })
        .collect();
    selected.sort_by_key(|r| r.name_any());
    let mut rules: Vec<PolicyRule> = Vec::new();
    for other in selected {
        for r in other.rules.iter().flatten() {
            if !rules.contains(r) {
                rules.push(r.clone());
            }
        }
    }
    Some(rules)
}

async fn sync(reader: &Store<ClusterRole>, api: &Api<ClusterRole>) -> Result<(), Error> {
    let all: Vec<ClusterRole> = reader.state().iter().map(|r| (**r).clone()).collect();
    for role in &all {
        let Some(rules) = aggregated_rules(role, &all) else {
            continue;
        };
        if role.rules.as_deref().unwrap_or(&[]) == rules.as_slice() {
            continue;
        }
        let patch = serde_json::json!({"rules": rules});
        api.patch(
            &role.name_any(),
            &PatchParams::default(),
            &Patch::Merge(&patch),
        )
        .await?;
        tracing::info!(clusterrole = %role.name_any(), rules = rules.len(), "aggregated rules updated");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::rbac::v1::AggregationRule;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};

    fn role(name: &str, label: Option<&str>, verbs: &[&str]) -> ClusterRole {
        ClusterRole {
            metadata: ObjectMeta {
                name: Some(name.into()),
                labels: label.map(|l| [(l.to_string(), "true".to_string())].into()),
                ..ObjectMeta::default()
            },
            rules: Some(vec![PolicyRule {
                verbs: verbs.iter().map(|v| v.to_string()).collect(),
                api_groups: Some(vec!["".into()]),
                resources: Some(vec!["pods".into()]),
                ..PolicyRule::default()
            }]),
            aggregation_rule: None,
        }
    }

    #[test]
    fn unions_the_selected_roles_once_each() {
        let mut admin = role("admin", None, &[]);
        admin.rules = None;
        admin.aggregation_rule = Some(AggregationRule {
            cluster_role_selectors: Some(vec![LabelSelector {
                match_labels: Some([("agg".to_string(), "true".to_string())].into()),
                match_expressions: None,
            }]),
        });
        let all = vec![
            admin.clone(),
            role("b", Some("agg"), &["get"]),
            role("a", Some("agg"), &["list"]),
            role("dup", Some("agg"), &["get"]),
            role("other", None, &["delete"]),
        ];
        let rules = aggregated_rules(&admin, &all).unwrap();
        let verbs: Vec<&str> = rules.iter().map(|r| r.verbs[0].as_str()).collect();
        assert_eq!(verbs, ["list", "get"]);
        assert!(aggregated_rules(&all[1], &all).is_none());
    }
}
