//! One real kube-apiserver (plus etcd) per test binary, or an existing cluster from `KUBECONFIG`.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};

use super::binaries::{ControlPlaneBinaries, locate_kubectl};
use super::credentials::{Credentials, NON_ADMIN_USER};
use super::kubeconfig::{client_from_kubeconfig, write_token_kubeconfig};
use super::kubectl::Kubectl;
use super::process::{ManagedProcess, free_loopback_port};

/// Set to `1` to run against the cluster in `KUBECONFIG` instead of starting one.
pub const EXISTING_CLUSTER_ENV: &str = "SLUICE_TEST_EXISTING_CLUSTER";
/// Set to `1` to keep the control plane's temp dir (logs, etcd data) after exit.
pub const KEEP_DIR_ENV: &str = "SLUICE_KEEP_CONTROL_PLANE_DIR";

/// How long etcd and the apiserver get to become ready: start-up takes a few
/// seconds, but a 2-core machine compiling in parallel can be much slower.
const READY_TIMEOUT: Duration = Duration::from_secs(60);
const POLL_INTERVAL: Duration = Duration::from_millis(200);
/// Start-up is retried once, for the rare case where another process takes
/// one of the free ports between our probe and the server's bind.
const START_ATTEMPTS: usize = 2;
const SERVICE_CLUSTER_IP_RANGE: &str = "10.96.0.0/24";
const SERVICE_ACCOUNT_ISSUER: &str = "https://kubernetes.default.svc.cluster.local";

/// A control plane the tests talk to: either processes this harness started
/// or an existing cluster.
#[derive(Debug)]
pub struct ControlPlane {
    server: String,
    kubectl_binary: PathBuf,
    admin_kubeconfig: Option<PathBuf>,
    /// In local mode a kubeconfig with the non-admin token; in
    /// existing-cluster mode `None` (the admin identity impersonates the user).
    user_kubeconfig: Option<PathBuf>,
    local: Option<LocalProcesses>,
}

/// The processes and files of a locally started control plane.
#[derive(Debug)]
struct LocalProcesses {
    // Field order is drop order: the apiserver stops before etcd.
    kube_apiserver: ManagedProcess,
    etcd: ManagedProcess,
    dir: PathBuf,
}

static SHARED: OnceLock<Result<ControlPlane, String>> = OnceLock::new();

impl ControlPlane {
    /// The control plane shared by every test in this binary, started on
    /// first use. Start-up is synchronous and independent of any tokio
    /// runtime; the processes are stopped by their watchdogs when the test
    /// binary exits. A failed start is remembered and reported to every caller.
    pub fn shared() -> Result<&'static Self> {
        SHARED
            .get_or_init(|| {
                // A dedicated thread: start-up blocks and runs its own
                // runtime, which must not happen inside a caller's runtime.
                std::thread::spawn(Self::from_environment)
                    .join()
                    .map_err(|_| anyhow!("control-plane start-up thread panicked"))
                    .and_then(|result| result)
                    .map_err(|error| format!("{error:#}"))
            })
            .as_ref()
            .map_err(|message| anyhow!("the shared control plane did not start: {message}"))
    }

    /// An existing cluster if `SLUICE_TEST_EXISTING_CLUSTER=1`, else a fresh local one.
    pub fn from_environment() -> Result<Self> {
        if std::env::var(EXISTING_CLUSTER_ENV).is_ok_and(|value| value == "1") {
            Self::existing_cluster()
        } else {
            Self::start_local()
        }
    }

    /// Starts etcd and kube-apiserver on free loopback ports and waits until
    /// the apiserver is ready. Dropping the value stops both.
    pub fn start_local() -> Result<Self> {
        let binaries = ControlPlaneBinaries::locate().context("locate etcd and kube-apiserver")?;
        let kubectl_binary = locate_kubectl().context("locate the pinned kubectl")?;
        let mut last_error = None;
        for attempt in 1..=START_ATTEMPTS {
            match Self::start_local_once(&binaries, &kubectl_binary) {
                Ok(control_plane) => return Ok(control_plane),
                Err(error) => {
                    tracing::warn!(attempt, error = %format!("{error:#}"), "control plane failed to start");
                    last_error = Some(error);
                }
            }
        }
        Err(last_error.unwrap_or_else(|| anyhow!("no start attempt was made")))
    }

    fn start_local_once(binaries: &ControlPlaneBinaries, kubectl_binary: &Path) -> Result<Self> {
        let dir = tempfile::Builder::new()
            .prefix("sluice-control-plane-")
            .tempdir()
            .context("create control-plane temp dir")?
            .keep();
        let keep_dir = std::env::var(KEEP_DIR_ENV).is_ok_and(|value| value == "1");
        // etcd is the last to stop, so its watchdog removes the whole dir.
        let cleanup_dir = (!keep_dir).then_some(dir.as_path());

        let etcd_client_port = free_loopback_port()?;
        let etcd_peer_port = free_loopback_port()?;
        let etcd_url = format!("http://127.0.0.1:{etcd_client_port}");
        let etcd_peer_url = format!("http://127.0.0.1:{etcd_peer_port}");
        let etcd_args = vec![
            "--name=sluice-test".to_owned(),
            format!("--data-dir={}", dir.join("etcd").display()),
            format!("--listen-client-urls={etcd_url}"),
            format!("--advertise-client-urls={etcd_url}"),
            format!("--listen-peer-urls={etcd_peer_url}"),
            format!("--initial-advertise-peer-urls={etcd_peer_url}"),
            format!("--initial-cluster=sluice-test={etcd_peer_url}"),
            // Test data is thrown away; fsync only slows every write down.
            "--unsafe-no-fsync=true".to_owned(),
            "--log-level=warn".to_owned(),
        ];
        let mut etcd = ManagedProcess::spawn(
            "etcd",
            &binaries.etcd,
            &etcd_args,
            &dir.join("etcd.log"),
            cleanup_dir,
        )?;

        let credentials = Credentials::generate(&dir)?;
        let secure_port = free_loopback_port()?;
        let cert_dir = dir.join("apiserver-certs");
        let apiserver_args = vec![
            format!("--etcd-servers={etcd_url}"),
            format!("--cert-dir={}", cert_dir.display()),
            format!("--secure-port={secure_port}"),
            "--bind-address=127.0.0.1".to_owned(),
            // Without a default route the apiserver cannot pick an address itself.
            "--advertise-address=127.0.0.1".to_owned(),
            format!("--service-cluster-ip-range={SERVICE_CLUSTER_IP_RANGE}"),
            "--authorization-mode=RBAC".to_owned(),
            format!("--token-auth-file={}", credentials.token_file.display()),
            // No controller-manager creates service-account tokens here.
            "--disable-admission-plugins=ServiceAccount".to_owned(),
            format!("--service-account-issuer={SERVICE_ACCOUNT_ISSUER}"),
            format!(
                "--service-account-key-file={}",
                credentials.service_account_public_key.display()
            ),
            format!(
                "--service-account-signing-key-file={}",
                credentials.service_account_signing_key.display()
            ),
            "--allow-privileged=true".to_owned(),
            "--v=1".to_owned(),
        ];
        let mut kube_apiserver = ManagedProcess::spawn(
            "kube-apiserver",
            &binaries.kube_apiserver,
            &apiserver_args,
            &dir.join("kube-apiserver.log"),
            None,
        )?;

        let server = format!("https://127.0.0.1:{secure_port}");
        let ready = wait_until_ready(
            &mut etcd,
            &mut kube_apiserver,
            &etcd_url,
            &server,
            &cert_dir,
            &credentials,
        );
        let ca_pem = match ready {
            Ok(ca_pem) => ca_pem,
            Err(error) => {
                let report = format!(
                    "{error:#} (set {KEEP_DIR_ENV}=1 to keep the full logs)\n--- kube-apiserver log tail ({}) ---\n{}\n--- etcd log tail ({}) ---\n{}",
                    kube_apiserver.log_path().display(),
                    kube_apiserver.log_tail(),
                    etcd.log_path().display(),
                    etcd.log_tail(),
                );
                // Dropping stops both processes; a process that already
                // exited left the dir behind, so remove it here.
                drop(kube_apiserver);
                drop(etcd);
                if !keep_dir {
                    let _ = std::fs::remove_dir_all(&dir);
                }
                bail!("{report}");
            }
        };

        let admin_kubeconfig = dir.join("admin.kubeconfig");
        let user_kubeconfig = dir.join("user.kubeconfig");
        write_token_kubeconfig(
            &admin_kubeconfig,
            &server,
            &ca_pem,
            super::credentials::ADMIN_USER,
            &credentials.admin_token,
        )?;
        write_token_kubeconfig(
            &user_kubeconfig,
            &server,
            &ca_pem,
            NON_ADMIN_USER,
            &credentials.user_token,
        )?;
        tracing::info!(%server, dir = %dir.display(), "control plane ready");
        Ok(Self {
            server,
            kubectl_binary: kubectl_binary.to_owned(),
            admin_kubeconfig: Some(admin_kubeconfig),
            user_kubeconfig: Some(user_kubeconfig),
            local: Some(LocalProcesses {
                kube_apiserver,
                etcd,
                dir,
            }),
        })
    }

    /// Uses the cluster `KUBECONFIG` points at; the non-admin identity is the
    /// admin impersonating [`NON_ADMIN_USER`].
    pub fn existing_cluster() -> Result<Self> {
        let kubectl_binary = locate_kubectl().context("locate the pinned kubectl")?;
        let kubeconfig = std::env::var_os("KUBECONFIG")
            .filter(|value| !value.is_empty())
            .with_context(|| format!("{EXISTING_CLUSTER_ENV}=1 needs KUBECONFIG"))?;
        let first = std::env::split_paths(&kubeconfig)
            .next()
            .context("KUBECONFIG names no file")?;
        let server = Kubectl::new(kubectl_binary.clone(), None, None, None)
            .run_ok(
                [
                    "config",
                    "view",
                    "--minify",
                    "-o",
                    "jsonpath={.clusters[0].cluster.server}",
                ],
                None,
            )
            .context("read the server URL from KUBECONFIG")?;
        Ok(Self {
            server: server.trim().to_owned(),
            kubectl_binary,
            admin_kubeconfig: Some(first),
            user_kubeconfig: None,
            local: None,
        })
    }

    /// The apiserver URL.
    pub fn server(&self) -> &str {
        &self.server
    }

    /// Whether this is a cluster from `KUBECONFIG` rather than a local one.
    pub fn is_existing_cluster(&self) -> bool {
        self.local.is_none()
    }

    /// The admin kubeconfig, for processes (operator, gateway) the tests start.
    pub fn admin_kubeconfig(&self) -> Option<&Path> {
        self.admin_kubeconfig.as_deref()
    }

    /// The local control plane's temp dir (logs, kubeconfigs); `None` for an existing cluster.
    pub fn dir(&self) -> Option<&Path> {
        self.local.as_ref().map(|local| local.dir.as_path())
    }

    /// The tails of the apiserver's and etcd's logs, for a failing test's
    /// message; `None` for an existing cluster.
    pub fn log_tails(&self) -> Option<String> {
        self.local.as_ref().map(|local| {
            format!(
                "--- kube-apiserver log tail ({}) ---\n{}\n--- etcd log tail ({}) ---\n{}",
                local.kube_apiserver.log_path().display(),
                local.kube_apiserver.log_tail(),
                local.etcd.log_path().display(),
                local.etcd.log_tail(),
            )
        })
    }

    /// A client with cluster-admin rights, bound to the calling runtime.
    pub async fn admin_client(&self) -> Result<kube::Client> {
        let path = self
            .admin_kubeconfig
            .as_deref()
            .context("no admin kubeconfig")?;
        client_from_kubeconfig(path, None).await
    }

    /// A client for [`NON_ADMIN_USER`], bound to the calling runtime. It can
    /// do nothing until a test binds a role to that user.
    pub async fn user_client(&self) -> Result<kube::Client> {
        match (&self.user_kubeconfig, &self.admin_kubeconfig) {
            (Some(user), _) => client_from_kubeconfig(user, None).await,
            (None, Some(admin)) => client_from_kubeconfig(admin, Some(NON_ADMIN_USER)).await,
            (None, None) => bail!("no kubeconfig to build a user client from"),
        }
    }

    /// kubectl as the admin.
    pub fn kubectl(&self) -> Kubectl {
        match &self.local {
            Some(local) => Kubectl::new(
                self.kubectl_binary.clone(),
                self.admin_kubeconfig.clone(),
                None,
                Some(local.dir.join("kubectl-cache")),
            ),
            // kubectl reads KUBECONFIG itself (it may list several files).
            None => Kubectl::new(self.kubectl_binary.clone(), None, None, None),
        }
    }

    /// kubectl as [`NON_ADMIN_USER`].
    pub fn kubectl_as_user(&self) -> Kubectl {
        match &self.local {
            Some(local) => Kubectl::new(
                self.kubectl_binary.clone(),
                self.user_kubeconfig.clone(),
                None,
                Some(local.dir.join("kubectl-cache")),
            ),
            None => Kubectl::new(
                self.kubectl_binary.clone(),
                None,
                Some(NON_ADMIN_USER.to_owned()),
                None,
            ),
        }
    }
}

/// Waits for etcd's `/health`, then the apiserver's serving certificate and
/// `/readyz` (as admin: anonymous requests are refused while RBAC
/// bootstraps). Returns the apiserver's certificate PEM.
fn wait_until_ready(
    etcd: &mut ManagedProcess,
    kube_apiserver: &mut ManagedProcess,
    etcd_url: &str,
    server: &str,
    cert_dir: &Path,
    credentials: &Credentials,
) -> Result<Vec<u8>> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("build start-up runtime")?;
    let deadline = Instant::now() + READY_TIMEOUT;
    let cert_path = cert_dir.join("apiserver.crt");

    let plain = reqwest::Client::builder()
        .timeout(Duration::from_secs(2))
        .build()
        .context("build HTTP client")?;
    let etcd_health = format!("{etcd_url}/health");
    poll_until(deadline, &mut [&mut *etcd], "etcd /health", || {
        runtime.block_on(async {
            let response = plain.get(&etcd_health).send().await.ok()?;
            let body = response.text().await.ok()?;
            body.contains("\"health\":\"true\"").then_some(())
        })
    })?;

    let readyz = format!("{server}/readyz");
    let mut last_status = String::from("no response yet");
    poll_until(
        deadline,
        &mut [&mut *etcd, &mut *kube_apiserver],
        "kube-apiserver /readyz",
        || {
            let ca_pem = std::fs::read(&cert_path).ok()?;
            let certificates = reqwest::Certificate::from_pem_bundle(&ca_pem).ok()?;
            let client = certificates
                .into_iter()
                .fold(
                    reqwest::Client::builder()
                        .timeout(Duration::from_secs(5))
                        .tls_built_in_root_certs(false),
                    reqwest::ClientBuilder::add_root_certificate,
                )
                .build()
                .ok()?;
            runtime.block_on(async {
                let response = client
                    .get(&readyz)
                    .bearer_auth(&credentials.admin_token)
                    .send()
                    .await;
                match response {
                    Ok(response) if response.status().is_success() => Some(()),
                    Ok(response) => {
                        last_status = format!("HTTP {}", response.status());
                        None
                    }
                    Err(error) => {
                        last_status = format!("{error}");
                        None
                    }
                }
            })?;
            Some(ca_pem)
        },
    )
    .map_err(|error| anyhow!("{error:#} (last /readyz result: {last_status})"))
}

/// Calls `probe` until it returns `Some`, failing early if a process exits
/// and with a timeout error at `deadline`.
fn poll_until<T>(
    deadline: Instant,
    processes: &mut [&mut ManagedProcess],
    what: &str,
    mut probe: impl FnMut() -> Option<T>,
) -> Result<T> {
    loop {
        if let Some(value) = probe() {
            return Ok(value);
        }
        for process in processes.iter_mut() {
            if let Some(status) = process.exit_status() {
                bail!(
                    "{} exited ({status}) while waiting for {what}",
                    process.name()
                );
            }
        }
        if Instant::now() >= deadline {
            bail!("timed out after {READY_TIMEOUT:?} waiting for {what}");
        }
        std::thread::sleep(POLL_INTERVAL);
    }
}
