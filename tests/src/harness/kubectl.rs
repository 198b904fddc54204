//! The pinned kubectl, preconfigured for one of the harness's identities.

use std::io::Write as _;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use anyhow::{Context, Result};

/// How kubectl reaches the cluster as a given identity.
#[derive(Debug, Clone)]
pub struct Kubectl {
    binary: PathBuf,
    /// `--kubeconfig` value; `None` leaves kubectl to `KUBECONFIG`.
    kubeconfig: Option<PathBuf>,
    /// `--as` value (existing-cluster mode reaches the non-admin user this way).
    impersonate: Option<String>,
    /// `--cache-dir` value, so a throwaway cluster's discovery cache does not
    /// pile up in `~/.kube/cache` (every run has a new port).
    cache_dir: Option<PathBuf>,
}

/// What a finished kubectl run printed.
#[derive(Debug, Clone)]
pub struct KubectlOutput {
    pub success: bool,
    pub status: String,
    pub stdout: String,
    pub stderr: String,
}

impl Kubectl {
    pub(crate) fn new(
        binary: PathBuf,
        kubeconfig: Option<PathBuf>,
        impersonate: Option<String>,
        cache_dir: Option<PathBuf>,
    ) -> Self {
        Self {
            binary,
            kubeconfig,
            impersonate,
            cache_dir,
        }
    }

    /// A `kubectl` command with the identity's flags already set; add the rest.
    pub fn command(&self) -> Command {
        let mut command = Command::new(&self.binary);
        if let Some(kubeconfig) = &self.kubeconfig {
            command.arg("--kubeconfig").arg(kubeconfig);
        }
        if let Some(user) = &self.impersonate {
            command.arg("--as").arg(user);
        }
        if let Some(cache_dir) = &self.cache_dir {
            command.arg("--cache-dir").arg(cache_dir);
        }
        command.stdin(Stdio::null());
        command
    }

    /// Runs kubectl with `args`, feeding `stdin` if given, and collects its output.
    /// A non-zero exit is not an error here: callers assert on it.
    pub fn run<I, S>(&self, args: I, stdin: Option<&str>) -> Result<KubectlOutput>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<std::ffi::OsStr>,
    {
        let mut command = self.command();
        command.args(args);
        let description = format!("{command:?}");
        command
            .stdin(if stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = command
            .spawn()
            .with_context(|| format!("start {description}"))?;
        if let (Some(input), Some(mut pipe)) = (stdin, child.stdin.take()) {
            pipe.write_all(input.as_bytes())
                .with_context(|| format!("write stdin of {description}"))?;
        }
        let output = child
            .wait_with_output()
            .with_context(|| format!("wait for {description}"))?;
        Ok(KubectlOutput {
            success: output.status.success(),
            status: output.status.to_string(),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        })
    }

    /// Like [`Kubectl::run`], but a non-zero exit is an error carrying stderr.
    pub fn run_ok<I, S>(&self, args: I, stdin: Option<&str>) -> Result<String>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<std::ffi::OsStr>,
    {
        let args: Vec<std::ffi::OsString> = args
            .into_iter()
            .map(|arg| arg.as_ref().to_owned())
            .collect();
        let output = self.run(&args, stdin)?;
        if !output.success {
            anyhow::bail!(
                "kubectl {args:?} exited with {}:\n{}",
                output.status,
                output.stderr
            );
        }
        Ok(output.stdout)
    }
}
