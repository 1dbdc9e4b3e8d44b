//! Turning desired slice content into writes against a Service's existing EndpointSlices,
//! with as little churn as upstream's reconciler: an endpoint stays in the slice it is in, new
//! endpoints fill slices with room before new slices are created, emptied slices go away, and
//! a Service without endpoints keeps one empty placeholder slice (when asked to).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use k8s_openapi::api::discovery::v1::{Endpoint, EndpointPort, EndpointSlice};

use super::desired::{endpoint_key, ports_key, same, SliceGroup};

/// One write to bring a Service's slices to the desired state.
#[derive(Clone, Debug, PartialEq)]
pub enum SliceOp {
    Create {
        ports: Vec<EndpointPort>,
        endpoints: Vec<Endpoint>,
    },
    Update {
        name: String,
        ports: Vec<EndpointPort>,
        endpoints: Vec<Endpoint>,
    },
    Delete {
        name: String,
    },
}

fn slice_name(s: &EndpointSlice) -> String {
    s.metadata.name.clone().unwrap_or_default()
}

/// Whether `slice` already has exactly this content and these labels.
fn up_to_date(
    slice: &EndpointSlice,
    ports: &[EndpointPort],
    endpoints: &[Endpoint],
    labels: &BTreeMap<String, String>,
) -> bool {
    let mut current = slice.endpoints.clone();
    current.sort_by_key(endpoint_key);
    slice.address_type == "IPv4"
        && slice.metadata.labels.as_ref().cloned().unwrap_or_default() == *labels
        && ports_key(slice.ports.as_deref().unwrap_or(&[])) == ports_key(ports)
        && same(&current, &endpoints.to_vec())
}

/// The writes that turn `existing` (this Service's live slices, owned by it) into `desired`.
pub fn plan(
    existing: &[Arc<EndpointSlice>],
    desired: BTreeMap<String, SliceGroup>,
    labels: &BTreeMap<String, String>,
    max_per_slice: usize,
    placeholder: bool,
) -> Vec<SliceOp> {
    let mut existing: Vec<&EndpointSlice> = existing.iter().map(|s| s.as_ref()).collect();
    existing.sort_by_key(|s| slice_name(s));
    let mut ops = Vec::new();
    if placeholder && desired.values().all(|g| g.endpoints.is_empty()) {
        // Placeholder: one slice without ports or endpoints.
        let keep = existing
            .iter()
            .position(|s| s.endpoints.is_empty() && s.ports.as_ref().is_none_or(Vec::is_empty))
            .or(if existing.is_empty() { None } else { Some(0) });
        match keep {
            Some(i) => {
                if !up_to_date(existing[i], &[], &[], labels) {
                    ops.push(SliceOp::Update {
                        name: slice_name(existing[i]),
                        ports: vec![],
                        endpoints: vec![],
                    });
                }
                for (j, s) in existing.iter().enumerate() {
                    if j != i {
                        ops.push(SliceOp::Delete {
                            name: slice_name(s),
                        });
                    }
                }
            }
            None => ops.push(SliceOp::Create {
                ports: vec![],
                endpoints: vec![],
            }),
        }
        return ops;
    }
    let mut by_ports: BTreeMap<String, Vec<&EndpointSlice>> = BTreeMap::new();
    for s in existing {
        by_ports
            .entry(ports_key(s.ports.as_deref().unwrap_or(&[])))
            .or_default()
            .push(s);
    }
    for (key, group) in desired {
        if group.endpoints.is_empty() {
            continue;
        }
        let mut wanted: HashMap<String, Endpoint> = group
            .endpoints
            .into_iter()
            .map(|e| (endpoint_key(&e), e))
            .collect();
        // Existing slices of these ports keep the endpoints they already hold.
        let mut slots: Vec<(Option<&EndpointSlice>, Vec<Endpoint>)> = by_ports
            .remove(&key)
            .unwrap_or_default()
            .into_iter()
            .map(|s| {
                let kept: Vec<Endpoint> = s
                    .endpoints
                    .iter()
                    .filter_map(|e| wanted.remove(&endpoint_key(e)))
                    .take(max_per_slice)
                    .collect();
                (Some(s), kept)
            })
            .collect();
        let mut remaining: Vec<Endpoint> = wanted.into_values().collect();
        remaining.sort_by_key(endpoint_key);
        let mut remaining = remaining.into_iter().peekable();
        for (_, endpoints) in slots.iter_mut() {
            while endpoints.len() < max_per_slice {
                match remaining.next() {
                    Some(e) => endpoints.push(e),
                    None => break,
                }
            }
        }
        while remaining.peek().is_some() {
            let chunk: Vec<Endpoint> = remaining.by_ref().take(max_per_slice).collect();
            slots.push((None, chunk));
        }
        for (slice, mut endpoints) in slots {
            endpoints.sort_by_key(endpoint_key);
            match slice {
                Some(s) if endpoints.is_empty() => ops.push(SliceOp::Delete {
                    name: slice_name(s),
                }),
                Some(s) => {
                    if !up_to_date(s, &group.ports, &endpoints, labels) {
                        ops.push(SliceOp::Update {
                            name: slice_name(s),
                            ports: group.ports.clone(),
                            endpoints,
                        });
                    }
                }
                None => ops.push(SliceOp::Create {
                    ports: group.ports.clone(),
                    endpoints,
                }),
            }
        }
    }
    for slices in by_ports.into_values() {
        for s in slices {
            ops.push(SliceOp::Delete {
                name: slice_name(s),
            });
        }
    }
    ops
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::ObjectReference;

    fn endpoint(i: usize) -> Endpoint {
        Endpoint {
            addresses: vec![format!("10.244.0.{i}")],
            target_ref: Some(ObjectReference {
                uid: Some(format!("uid-{i}")),
                ..ObjectReference::default()
            }),
            ..Endpoint::default()
        }
    }

    fn port(n: i32) -> EndpointPort {
        EndpointPort {
            name: Some(String::new()),
            port: Some(n),
            protocol: Some("TCP".into()),
            app_protocol: None,
        }
    }

    fn group(ports: Vec<EndpointPort>, endpoints: Vec<Endpoint>) -> BTreeMap<String, SliceGroup> {
        BTreeMap::from([(ports_key(&ports), SliceGroup { ports, endpoints })])
    }

    fn slice(name: &str, ports: Vec<EndpointPort>, endpoints: Vec<Endpoint>) -> Arc<EndpointSlice> {
        let mut s = EndpointSlice {
            address_type: "IPv4".into(),
            endpoints,
            ports: Some(ports),
            ..EndpointSlice::default()
        };
        s.metadata.name = Some(name.into());
        s.metadata.labels = Some(labels());
        Arc::new(s)
    }

    fn labels() -> BTreeMap<String, String> {
        BTreeMap::from([("kubernetes.io/service-name".into(), "web".into())])
    }

    #[test]
    fn first_sync_creates_chunks() {
        let eps: Vec<Endpoint> = (0..250).map(endpoint).collect();
        let ops = plan(&[], group(vec![port(80)], eps), &labels(), 100, true);
        let sizes: Vec<usize> = ops
            .iter()
            .map(|op| match op {
                SliceOp::Create { endpoints, .. } => endpoints.len(),
                other => panic!("unexpected {other:?}"),
            })
            .collect();
        assert_eq!(sizes, [100, 100, 50]);
    }

    #[test]
    fn unchanged_content_writes_nothing_and_additions_touch_one_slice() {
        let existing = vec![
            slice("web-a", vec![port(80)], (0..100).map(endpoint).collect()),
            slice("web-b", vec![port(80)], (100..150).map(endpoint).collect()),
        ];
        let ops = plan(
            &existing,
            group(vec![port(80)], (0..150).map(endpoint).collect()),
            &labels(),
            100,
            true,
        );
        assert!(ops.is_empty(), "{ops:?}");
        let ops = plan(
            &existing,
            group(vec![port(80)], (0..151).map(endpoint).collect()),
            &labels(),
            100,
            true,
        );
        assert_eq!(ops.len(), 1);
        assert!(
            matches!(&ops[0], SliceOp::Update { name, endpoints, .. } if name == "web-b" && endpoints.len() == 51)
        );
    }

    #[test]
    fn emptied_and_stale_port_slices_are_deleted() {
        let existing = vec![
            slice("web-a", vec![port(80)], vec![endpoint(1)]),
            slice("web-b", vec![port(81)], vec![endpoint(2)]),
        ];
        let ops = plan(
            &existing,
            group(vec![port(81)], vec![endpoint(2)]),
            &labels(),
            100,
            true,
        );
        assert_eq!(
            ops,
            vec![SliceOp::Delete {
                name: "web-a".into()
            }]
        );
    }

    #[test]
    fn without_placeholder_no_endpoints_means_no_slices() {
        let existing = vec![slice("web-a", vec![port(80)], vec![endpoint(1)])];
        let ops = plan(&existing, BTreeMap::new(), &labels(), 100, false);
        assert_eq!(
            ops,
            vec![SliceOp::Delete {
                name: "web-a".into()
            }]
        );
    }

    #[test]
    fn no_endpoints_keeps_one_placeholder() {
        let ops = plan(&[], BTreeMap::new(), &labels(), 100, true);
        assert_eq!(
            ops,
            vec![SliceOp::Create {
                ports: vec![],
                endpoints: vec![]
            }]
        );
        let existing = vec![
            slice("web-a", vec![port(80)], vec![endpoint(1)]),
            slice("web-b", vec![], vec![]),
        ];
        let ops = plan(&existing, BTreeMap::new(), &labels(), 100, true);
        assert_eq!(
            ops,
            vec![SliceOp::Delete {
                name: "web-a".into()
            }]
        );
    }
}
