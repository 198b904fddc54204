//! The compiled gateway configuration: versioned types the operator publishes and gateways load.
//!
//! A [`Snapshot`] has two halves: [`GatewayConfig`] (routes, key metadata, budgets — safe for a
//! ConfigMap) and [`GatewaySecrets`] (provider credentials and virtual-key hashes — only ever in a
//! Secret). Both halves are published with the same content hash so a gateway never combines a
//! config with the secrets of another version.
//!
//! Compatibility: fields are only added within a schema version, and readers ignore unknown fields;
//! a reader refuses a `schemaVersion` newer than [`SCHEMA_VERSION`].

mod publish;
mod types;

pub use publish::*;
pub use types::*;
