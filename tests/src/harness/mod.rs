//! The control-plane harness: a real kube-apiserver per test binary, clients, kubectl, namespaces and waiting.
//!
//! Environment (all optional; `scripts/test.sh` sets the first two):
//! - `SLUICE_CONTROL_PLANE_DIR` / `KUBEBUILDER_ASSETS`: directory with `etcd` and
//!   `kube-apiserver`; otherwise `scripts/control-plane.sh` builds or finds them.
//! - `SLUICE_KUBECTL`: the pinned kubectl; otherwise `scripts/tools.sh` installs it.
//! - `SLUICE_TEST_EXISTING_CLUSTER=1`: use the cluster in `KUBECONFIG` (e.g. kind)
//!   instead of starting one; the non-admin identity is then the admin
//!   impersonating [`NON_ADMIN_USER`], and test namespaces are deleted after passing tests.
//! - `SLUICE_KEEP_CONTROL_PLANE_DIR=1`: keep the temp dir with the logs and etcd data.
//!
//! ```no_run
//! # async fn example() -> anyhow::Result<()> {
//! use sluice_tests::harness::{ControlPlane, TestNamespace, install_crds};
//! let control_plane = ControlPlane::shared()?;
//! let client = control_plane.admin_client().await?;
//! install_crds(&client).await?;
//! let namespace = TestNamespace::new(&client, "routes").await?;
//! control_plane
//!     .kubectl()
//!     .run_ok(["get", "llmroutes", "-n", namespace.name()], None)?;
//! # Ok(()) }
//! ```

mod binaries;
mod control_plane;
mod crds;
mod credentials;
mod kubeconfig;
mod kubectl;
mod namespace;
mod private_file;
mod process;
mod usage;
mod wait;

pub use binaries::{
    CONTROL_PLANE_DIR_ENV, ControlPlaneBinaries, KUBEBUILDER_ASSETS_ENV, KUBECTL_ENV,
    locate_kubectl, repo_root,
};
pub use control_plane::{ControlPlane, EXISTING_CLUSTER_ENV, KEEP_DIR_ENV};
pub use crds::{
    FIELD_MANAGER, crd_manifest_files, generated_crds, install_crds, server_side_apply,
};
pub use credentials::{ADMIN_USER, NON_ADMIN_GROUP, NON_ADMIN_USER};
pub use kubectl::{Kubectl, KubectlOutput};
pub use namespace::{TEST_NAMESPACE_LABEL, TestNamespace};
pub use process::{ManagedProcess, free_loopback_port};
pub use usage::{
    Answer, EmbeddedOperator, ReportingGateway, TestReporter, usage_operator_settings,
};
pub use wait::wait_for;
