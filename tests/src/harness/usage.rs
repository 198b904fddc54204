//! Usage-report support shared by the usage tests and the usage benchmark: an operator embedded on its
//! own thread and runtime (with an injectable clock, killable like `kill -9`), and a reporter that posts
//! `UsageReport`s over HTTP the way a gateway does.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use chrono::Utc;
use sluice_crds::usage::{
    BackendHealthReport, PROTOCOL_VERSION, REPORT_PATH, Reporter, UsageAck, UsageDelta, UsageReport,
};
use sluice_operator::usage::Clock;
use sluice_operator::{Operator, Settings};
use tokio_util::sync::CancellationToken;

use super::control_plane::ControlPlane;

/// Operator settings for gateway `gateway` served from `namespace` only: a short lease, a fast status
/// interval, every endpoint on a free loopback port.
pub fn usage_operator_settings(gateway: &str, namespace: &str, identity: &str) -> Settings {
    let mut settings = Settings::for_gateway(gateway, namespace);
    settings.watch_namespaces = vec![namespace.to_owned()];
    settings.identity = Some(identity.to_owned());
    settings.metrics_addr = SocketAddr::from(([127, 0, 0, 1], 0));
    settings.usage_addr = SocketAddr::from(([127, 0, 0, 1], 0));
    settings.lease_duration = Duration::from_secs(4);
    settings.lease_renew_interval = Duration::from_secs(1);
    settings
}

/// An operator on its own thread and runtime.
#[derive(Debug)]
pub struct EmbeddedOperator {
    pub metrics_addr: SocketAddr,
    pub usage_addr: SocketAddr,
    shutdown: CancellationToken,
    kill: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<Result<()>>>,
}

impl EmbeddedOperator {
    /// Starts an operator with `settings` and `clock` against the shared control plane.
    pub fn start(settings: Settings, clock: Arc<dyn Clock>) -> Result<Self> {
        let shutdown = CancellationToken::new();
        let (kill, killed) = tokio::sync::oneshot::channel::<()>();
        let (address_sender, address) = std::sync::mpsc::channel();
        let token = shutdown.clone();
        let thread = std::thread::Builder::new()
            .name("usage-operator".to_owned())
            .spawn(move || -> Result<()> {
                let runtime = tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(2)
                    .enable_all()
                    .build()?;
                let result = runtime.block_on(async move {
                    let client = ControlPlane::shared()?.admin_client().await?;
                    let operator = Operator::bind(settings, client).await?.with_clock(clock);
                    let _ = address_sender.send((operator.metrics_addr()?, operator.usage_addr()?));
                    tokio::select! {
                        result = operator.run(token) => result.map_err(anyhow::Error::from),
                        _ = killed => Ok(()),
                    }
                });
                // On a kill nothing of the operator runs again: its tasks are dropped where they stand.
                runtime.shutdown_background();
                result
            })?;
        let (metrics_addr, usage_addr) = address
            .recv_timeout(Duration::from_secs(60))
            .context("the operator did not bind its endpoints")?;
        Ok(Self {
            metrics_addr,
            usage_addr,
            shutdown,
            kill: Some(kill),
            thread: Some(thread),
        })
    }

    /// The usage endpoint's URL (`http://addr/v1/usage/reports`).
    pub fn usage_url(&self) -> String {
        format!("http://{}{REPORT_PATH}", self.usage_addr)
    }

    /// Kills the operator: no graceful step, its Lease is left to expire.
    pub fn kill(&mut self) -> Result<()> {
        if let Some(kill) = self.kill.take() {
            let _ = kill.send(());
        }
        self.join()
    }

    /// Stops the operator gracefully (releasing its Lease) and waits for it.
    pub fn stop(&mut self) -> Result<()> {
        self.shutdown.cancel();
        self.join()
    }

    fn join(&mut self) -> Result<()> {
        match self.thread.take() {
            Some(thread) => thread
                .join()
                .map_err(|_| anyhow::anyhow!("operator thread panicked"))?,
            None => Ok(()),
        }
    }

    /// The value of a metric sample line such as `sluice_operator_is_leader`, 0 when absent.
    pub async fn metric(&self, sample: &str) -> Result<f64> {
        let text = reqwest::get(format!("http://{}/metrics", self.metrics_addr))
            .await?
            .text()
            .await?;
        Ok(text
            .lines()
            .find_map(|line| line.strip_prefix(sample)?.strip_prefix(' '))
            .and_then(|value| value.trim().parse().ok())
            .unwrap_or(0.0))
    }
}

impl Drop for EmbeddedOperator {
    fn drop(&mut self) {
        let _ = self.kill();
    }
}

/// One simulated gateway process: its identity and the next sequence number.
#[derive(Clone, Debug)]
pub struct TestReporter {
    pub reporter: Reporter,
    pub gateway: String,
    pub next_sequence: u64,
    http: reqwest::Client,
}

/// What the endpoint answered.
#[derive(Clone, Debug)]
pub enum Answer {
    Ack(UsageAck),
    /// Any other status, with the body.
    Refused(u16, String),
}

impl TestReporter {
    pub fn new(pod: &str, gateway: &str) -> Self {
        Self {
            reporter: Reporter {
                pod: pod.to_owned(),
                instance: format!("{:08x}", rand::random::<u32>()),
            },
            gateway: gateway.to_owned(),
            next_sequence: 1,
            http: reqwest::Client::new(),
        }
    }

    /// The next report (not sent; the sequence advances only when it is acknowledged).
    pub fn report(
        &self,
        usage: Vec<UsageDelta>,
        backends: Vec<BackendHealthReport>,
        budgets: Vec<String>,
    ) -> UsageReport {
        UsageReport {
            protocol: PROTOCOL_VERSION,
            reporter: self.reporter.clone(),
            sequence: self.next_sequence,
            gateway: self.gateway.clone(),
            config_hash: "test".to_owned(),
            sent_at: Utc::now(),
            last: false,
            usage,
            backends,
            budgets,
        }
    }

    /// Posts `report` once.
    pub async fn post(&self, url: &str, report: &UsageReport) -> Result<Answer> {
        let response = self.http.post(url).json(report).send().await?;
        let status = response.status().as_u16();
        let body = response.text().await?;
        if status == 200 {
            Ok(Answer::Ack(serde_json::from_str(&body).with_context(
                || format!("the acknowledgement is not a UsageAck: {body}"),
            )?))
        } else {
            Ok(Answer::Refused(status, body))
        }
    }

    /// Posts `report` until it is acknowledged (resending on 503 and connection errors, as a gateway
    /// does), advances the sequence, and returns the acknowledgement.
    pub async fn send(
        &mut self,
        url: &str,
        report: &UsageReport,
        timeout: Duration,
    ) -> Result<UsageAck> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            match self.post(url, report).await {
                Ok(Answer::Ack(ack)) => {
                    self.next_sequence = report.sequence + 1;
                    return Ok(ack);
                }
                Ok(Answer::Refused(status, body)) if status != 503 => {
                    bail!("report {} refused with {status}: {body}", report.sequence)
                }
                _ => {}
            }
            if tokio::time::Instant::now() > deadline {
                bail!(
                    "report {} not acknowledged within {timeout:?}",
                    report.sequence
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// A `sluice-gateway` process in API-watch mode (admin kubeconfig) with its usage reporter on.
#[derive(Debug)]
pub struct ReportingGateway {
    child: std::process::Child,
    pub addr: SocketAddr,
    logs: Arc<std::sync::Mutex<Vec<String>>>,
}

impl ReportingGateway {
    /// Starts `binary` for gateway `gateway` watching namespace `namespace`, reporting to `usage_url`
    /// every `flush` (a duration such as `200ms`) as pod `pod`, and waits for its `listening` line.
    pub fn spawn(
        binary: &std::path::Path,
        gateway: &str,
        namespace: &str,
        usage_url: &str,
        flush: &str,
        pod: &str,
    ) -> Result<Self> {
        use std::io::BufRead as _;
        let kubeconfig = ControlPlane::shared()?
            .admin_kubeconfig()
            .context("no admin kubeconfig")?
            .to_owned();
        let mut child = std::process::Command::new(binary)
            .args(["--gateway", gateway, "--namespace", namespace])
            .args([
                "--usage-endpoint",
                usage_url,
                "--usage-flush-interval",
                flush,
            ])
            .args(["--pod-name", pod, "--log-format", "json"])
            .args(["--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0"])
            .env("KUBECONFIG", kubeconfig)
            .env("RUST_LOG", "info")
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .with_context(|| format!("starting {}", binary.display()))?;
        let stderr = child.stderr.take().context("no stderr")?;
        let logs = Arc::new(std::sync::Mutex::new(Vec::new()));
        let (found, listening) = std::sync::mpsc::channel();
        let sink = Arc::clone(&logs);
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stderr)
                .lines()
                .map_while(Result::ok)
            {
                if let Ok(event) = serde_json::from_str::<serde_json::Value>(&line)
                    && event["message"] == "listening"
                {
                    let _ = found.send(event["addr"].as_str().map(str::to_owned));
                }
                sink.lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .push(line);
            }
        });
        let addr = match listening.recv_timeout(Duration::from_secs(60)) {
            Ok(Some(addr)) => addr.parse()?,
            _ => bail!("the gateway did not report its address"),
        };
        Ok(Self { child, addr, logs })
    }

    /// Everything the process logged so far.
    pub fn logs(&self) -> String {
        self.logs
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .join("\n")
    }

    /// SIGTERM, then waits for the exit (the reporter flushes and sends its last report).
    pub fn terminate(&mut self) -> Result<()> {
        let status = std::process::Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()?;
        if !status.success() {
            bail!("kill -TERM failed");
        }
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while self.child.try_wait()?.is_none() {
            if std::time::Instant::now() > deadline {
                bail!("no exit after SIGTERM; log:\n{}", self.logs());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(())
    }

    /// SIGKILL: nothing is flushed.
    pub fn kill9(&mut self) -> Result<()> {
        self.child.kill()?;
        self.child.wait()?;
        Ok(())
    }
}

impl Drop for ReportingGateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
