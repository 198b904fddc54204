//! Sluice API types, the compiled gateway configuration contract, and the pure compiler between them.
//!
//! This crate carries no async runtime and no Kubernetes client: the operator and the gateway's local
//! mode both call the same pure code.

pub mod compile;
pub mod conditions;
pub mod config;
pub mod crdgen;
pub mod duration;
pub mod manifests;
pub mod pricing;
pub mod usage;
pub mod v1alpha1;
pub mod window;

/// API group of every Sluice custom resource.
pub const API_GROUP: &str = "sluice.dev";
/// Served and stored API version.
pub const API_VERSION: &str = "v1alpha1";
/// Gateway name a resource belongs to when `spec.gateway` is not set.
pub const DEFAULT_GATEWAY: &str = "default";
