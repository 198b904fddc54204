//! Test support: the control-plane harness and wire-faithful mock providers.

pub mod harness;
pub mod manifests;
pub mod mock;
