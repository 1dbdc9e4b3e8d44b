//! Per-kind knowledge of the kubelab API server, as pure functions over objects stored
//! generically as `serde_json::Value`: the catalog of served built-in resources (what discovery
//! says about each), label and field selectors, server-side Table columns and cells, validation
//! (causes for 422 Invalid / 400 BadRequest) and defaulting, all matching upstream
//! kube-apiserver 1.32 as closely as kubectl can tell.
//!
//! It is not the API server: no HTTP, no storage, no watch, no admission chain, no allocation of
//! cluster IPs or node ports (those need cluster state). Every function accepts any JSON,
//! including objects with wrong types anywhere, and never panics.

pub mod catalog;
pub mod defaults;
pub mod fields;
mod json;
pub mod labels;
pub mod service_account;
pub mod syntax;
pub mod tables;
pub mod validation;

pub use catalog::{ResourceType, Subresource};
pub use fields::FieldSelector;
pub use labels::{LabelSelector, SelectorError};
