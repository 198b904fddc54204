//! Shared by the black-box gateway tests: the built `sluice-gateway` binary on loopback port 0, its JSON
//! logs, readiness, and a graceful stop with SIGTERM.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde_json::Value;
use sluice_tests::harness::repo_root;

/// Cargo settings a nested `cargo build` must keep (where to build, how to fetch, how to print).
const KEPT_CARGO_VARS: [&str; 9] = [
    "CARGO_HOME",
    "CARGO_TARGET_DIR",
    "CARGO_BUILD_",
    "CARGO_NET_",
    "CARGO_HTTP_",
    "CARGO_REGISTR",
    "CARGO_TERM_",
    "CARGO_PROFILE_",
    "CARGO_INCREMENTAL",
];

/// The `sluice-gateway` binary of this build profile, built once per test binary (a no-op when fresh).
pub fn gateway_binary() -> Result<PathBuf> {
    static BUILT: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    BUILT
        .get_or_init(|| {
            let exe = std::env::current_exe().map_err(|e| e.to_string())?;
            // target/<profile>/deps/<test binary>
            let profile_dir = exe
                .parent()
                .and_then(Path::parent)
                .ok_or("unexpected test binary location")?;
            let release = profile_dir
                .file_name()
                .is_some_and(|name| name == "release");
            let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
            let mut build = Command::new(cargo);
            // Cargo gives a test process its own package's variables (CARGO_MANIFEST_DIR, CARGO_PKG_*);
            // build scripts that watch them would rebuild half the dependency graph for this build.
            for (name, _) in std::env::vars_os() {
                let name = name.to_string_lossy();
                if name.starts_with("CARGO_")
                    && !KEPT_CARGO_VARS.iter().any(|kept| name.starts_with(kept))
                {
                    build.env_remove(&*name);
                }
            }
            build.current_dir(repo_root()).args([
                "build",
                "--quiet",
                "-p",
                "sluice-gateway",
                "--bin",
                "sluice-gateway",
            ]);
            if release {
                build.arg("--release");
            }
            let status = build
                .status()
                .map_err(|e| format!("running cargo build: {e}"))?;
            if !status.success() {
                return Err(format!(
                    "cargo build -p sluice-gateway failed with {status}"
                ));
            }
            Ok(profile_dir.join("sluice-gateway"))
        })
        .clone()
        .map_err(anyhow::Error::msg)
}

/// A running gateway process.
pub struct GatewayProcess {
    child: Child,
    pub addr: SocketAddr,
    pub admin_addr: SocketAddr,
    logs: Arc<Mutex<Vec<String>>>,
}

impl GatewayProcess {
    /// Starts the binary with `args` on loopback port 0 and waits for its `listening` log line.
    pub fn spawn(args: &[&str]) -> Result<Self> {
        let mut child = Command::new(gateway_binary()?)
            .args(args)
            .args([
                "--listen",
                "127.0.0.1:0",
                "--admin-listen",
                "127.0.0.1:0",
                "--log-format",
                "json",
            ])
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .context("starting sluice-gateway")?;
        let stderr = child.stderr.take().context("no stderr")?;
        let logs = Arc::new(Mutex::new(Vec::new()));
        let (found, listening) = std::sync::mpsc::channel();
        let sink = logs.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Ok(event) = serde_json::from_str::<Value>(&line)
                    && event["message"] == "listening"
                {
                    let _ = found.send((
                        event["addr"].as_str().map(str::to_owned),
                        event["admin_addr"].as_str().map(str::to_owned),
                    ));
                }
                sink.lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .push(line);
            }
        });
        let mut process = Self {
            child,
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            admin_addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            logs,
        };
        match listening.recv_timeout(Duration::from_secs(60)) {
            Ok((Some(addr), Some(admin))) => {
                process.addr = addr.parse()?;
                process.admin_addr = admin.parse()?;
                Ok(process)
            }
            _ => bail!(
                "the gateway did not report its addresses; log:\n{}",
                process.logs()
            ),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Everything the process logged so far.
    pub fn logs(&self) -> String {
        self.logs
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .join("\n")
    }

    /// Waits until `/readyz` answers 200; returns its body.
    pub async fn wait_ready(&self, timeout: Duration) -> Result<Value> {
        let deadline = Instant::now() + timeout;
        let url = format!("http://{}/readyz", self.admin_addr);
        loop {
            if let Ok(response) = reqwest::get(&url).await
                && response.status() == 200
            {
                return Ok(response.json().await?);
            }
            if Instant::now() > deadline {
                bail!("the gateway never became ready; log:\n{}", self.logs());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// `/readyz` body, whatever its status.
    pub async fn readiness(&self) -> Result<Value> {
        Ok(reqwest::get(format!("http://{}/readyz", self.admin_addr))
            .await?
            .json()
            .await?)
    }

    /// Sends SIGTERM and waits for the exit (at most `timeout`).
    pub fn terminate(&mut self, timeout: Duration) -> Result<ExitStatus> {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()?;
        if !status.success() {
            bail!("kill -TERM failed");
        }
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait()? {
                return Ok(status);
            }
            if Instant::now() > deadline {
                bail!(
                    "the gateway did not exit within {timeout:?} of SIGTERM; log:\n{}",
                    self.logs()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for GatewayProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
