//! Runtime configuration: sources (mounted volumes, the Kubernetes API, local manifests), validation into
//! hot-path types, and the atomic swap that in-flight requests never notice.

pub mod directory;
pub mod kube;
mod runtime;
mod state;
mod store;

pub use runtime::{Backend, BuildContext, InvalidConfig, Route, RuntimeConfig, Timeouts};
pub use state::{BackendState, RouteState, StateRegistry};
pub use store::{Applied, ConfigStore, INCOMPLETE_GRACE, ReloadStatus, Source, is_transient};
