//! Locates the pinned binaries the harness runs: etcd, kube-apiserver and kubectl.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context, Result, bail};

/// Directory with `kube-apiserver` and `etcd`, set by `scripts/test.sh`.
pub const CONTROL_PLANE_DIR_ENV: &str = "SLUICE_CONTROL_PLANE_DIR";
/// Directory with envtest's binaries, honoured as a fallback.
pub const KUBEBUILDER_ASSETS_ENV: &str = "KUBEBUILDER_ASSETS";
/// Path of the pinned kubectl, exported by `scripts/tools.sh`.
pub const KUBECTL_ENV: &str = "SLUICE_KUBECTL";

/// The repository root (the tests crate lives one level below it).
pub fn repo_root() -> PathBuf {
    let manifest_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest_dir
        .parent()
        .map_or_else(|| manifest_dir.to_owned(), Path::to_owned)
}

/// Paths of the two control-plane servers.
#[derive(Debug, Clone)]
pub struct ControlPlaneBinaries {
    pub etcd: PathBuf,
    pub kube_apiserver: PathBuf,
}

impl ControlPlaneBinaries {
    /// Finds the binaries: `SLUICE_CONTROL_PLANE_DIR`, then `KUBEBUILDER_ASSETS`,
    /// then whatever `scripts/control-plane.sh` prints (it builds them once).
    pub fn locate() -> Result<Self> {
        for var in [CONTROL_PLANE_DIR_ENV, KUBEBUILDER_ASSETS_ENV] {
            if let Some(dir) = std::env::var_os(var).filter(|dir| !dir.is_empty()) {
                return Self::in_dir(Path::new(&dir)).with_context(|| format!("{var} is set"));
            }
        }
        let dir = run_script("control-plane.sh")?;
        Self::in_dir(Path::new(dir.trim()))
    }

    fn in_dir(dir: &Path) -> Result<Self> {
        let binaries = Self {
            etcd: dir.join("etcd"),
            kube_apiserver: dir.join("kube-apiserver"),
        };
        for path in [&binaries.etcd, &binaries.kube_apiserver] {
            if !path.is_file() {
                bail!("{} does not exist", path.display());
            }
        }
        Ok(binaries)
    }
}

/// The pinned kubectl: `SLUICE_KUBECTL`, else the one `scripts/tools.sh` installs.
pub fn locate_kubectl() -> Result<PathBuf> {
    if let Some(path) = std::env::var_os(KUBECTL_ENV).filter(|path| !path.is_empty()) {
        let path = PathBuf::from(path);
        if !path.is_file() {
            bail!("{KUBECTL_ENV}={} does not exist", path.display());
        }
        return Ok(path);
    }
    let exports = run_script("tools.sh")?;
    let prefix = format!("export {KUBECTL_ENV}=");
    exports
        .lines()
        .find_map(|line| line.strip_prefix(&prefix))
        .map(|value| PathBuf::from(value.trim_matches('\'')))
        .with_context(|| format!("scripts/tools.sh printed no {KUBECTL_ENV} line:\n{exports}"))
}

/// Runs `scripts/<name>` and returns its stdout; its stderr (progress) passes through.
fn run_script(name: &str) -> Result<String> {
    let script = repo_root().join("scripts").join(name);
    let output = Command::new("bash")
        .arg(&script)
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output()
        .with_context(|| format!("run {}", script.display()))?;
    if !output.status.success() {
        bail!("{} failed with {}", script.display(), output.status);
    }
    String::from_utf8(output.stdout)
        .with_context(|| format!("{} printed non-UTF-8", script.display()))
}
