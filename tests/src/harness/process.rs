//! Child processes that die with the test binary, their logs, and free loopback ports.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use anyhow::{Context, Result};

/// How many trailing log bytes an error message carries: enough for the
/// last few dozen lines of a Go server's klog output.
const LOG_TAIL_BYTES: u64 = 6 * 1024;

/// Runs `"$@"` in the background and polls the test binary's pid; when the
/// test binary is gone (statics are never dropped, so nothing else would
/// stop the child), it sends SIGTERM, then SIGKILL after five seconds. A
/// SIGTERM to the watchdog itself stops the child the same way, and then
/// removes the cleanup directory if one is given. When the child exits on
/// its own the watchdog exits with its status and leaves the directory, so
/// the logs in it can still be read.
const WATCHDOG_SCRIPT: &str = r#"
parent="$1"; cleanup="$2"; shift 2
"$@" &
child=$!
stop() {
  kill -TERM "$child" 2>/dev/null
  i=0
  while kill -0 "$child" 2>/dev/null && [ "$i" -lt 50 ]; do sleep 0.1; i=$((i + 1)); done
  kill -KILL "$child" 2>/dev/null
  wait "$child" 2>/dev/null
  [ -n "$cleanup" ] && rm -rf "$cleanup"
  exit 0
}
trap stop TERM INT HUP
while kill -0 "$parent" 2>/dev/null; do
  if ! kill -0 "$child" 2>/dev/null; then
    wait "$child"; exit $?
  fi
  sleep 0.2
done
stop
"#;

/// A server process started under a watchdog, with its output in a log file.
#[derive(Debug)]
pub struct ManagedProcess {
    name: String,
    watchdog: Child,
    log_path: PathBuf,
}

impl ManagedProcess {
    /// Starts `program args...` with stdout and stderr appended to `log_path`.
    ///
    /// `cleanup_dir`, if given, is deleted after the process is stopped
    /// (by [`ManagedProcess::stop`] or because the test binary exited).
    pub fn spawn(
        name: &str,
        program: &Path,
        args: &[String],
        log_path: &Path,
        cleanup_dir: Option<&Path>,
    ) -> Result<Self> {
        let log = File::create(log_path)
            .with_context(|| format!("create log file {}", log_path.display()))?;
        let log_err = log
            .try_clone()
            .with_context(|| format!("clone log file handle {}", log_path.display()))?;
        let cleanup = cleanup_dir
            .map(|dir| dir.display().to_string())
            .unwrap_or_default();
        let watchdog = Command::new("sh")
            .arg("-c")
            .arg(WATCHDOG_SCRIPT)
            .arg("sluice-watchdog")
            .arg(std::process::id().to_string())
            .arg(cleanup)
            .arg(program)
            .args(args)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err)
            .spawn()
            .with_context(|| format!("start {name} ({})", program.display()))?;
        Ok(Self {
            name: name.to_owned(),
            watchdog,
            log_path: log_path.to_owned(),
        })
    }

    /// The process's name as used in messages.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Path of the combined stdout/stderr log.
    pub fn log_path(&self) -> &Path {
        &self.log_path
    }

    /// `Some(description)` if the process has already exited.
    pub fn exit_status(&mut self) -> Option<String> {
        match self.watchdog.try_wait() {
            Ok(Some(status)) => Some(status.to_string()),
            Ok(None) => None,
            Err(error) => Some(format!("unknown ({error})")),
        }
    }

    /// The last few KiB of the log, for error messages.
    pub fn log_tail(&self) -> String {
        log_tail(&self.log_path)
    }

    /// Asks the watchdog to stop the process and waits until it has.
    pub fn stop(&mut self) {
        if self.watchdog.try_wait().ok().flatten().is_some() {
            return;
        }
        // SIGTERM rather than Child::kill (SIGKILL): the watchdog must live
        // long enough to stop its child.
        let signalled = Command::new("kill")
            .arg("-TERM")
            .arg(self.watchdog.id().to_string())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|status| status.success());
        if !signalled {
            let _ = self.watchdog.kill();
        }
        let _ = self.watchdog.wait();
    }
}

impl Drop for ManagedProcess {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The last [`LOG_TAIL_BYTES`] of a file, or a note saying why it is unreadable.
pub fn log_tail(path: &Path) -> String {
    let read = || -> std::io::Result<String> {
        let mut file = File::open(path)?;
        let len = file.metadata()?.len();
        file.seek(SeekFrom::Start(len.saturating_sub(LOG_TAIL_BYTES)))?;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes)?;
        Ok(String::from_utf8_lossy(&bytes).into_owned())
    };
    match read() {
        Ok(tail) if tail.trim().is_empty() => "(log is empty)".to_owned(),
        Ok(tail) => tail,
        Err(error) => format!("(cannot read {}: {error})", path.display()),
    }
}

/// A loopback port that was free a moment ago.
///
/// The port is released before the server binds it, so another process can
/// race for it; callers retry start-up once when that happens.
pub fn free_loopback_port() -> Result<u16> {
    let listener = TcpListener::bind(("127.0.0.1", 0)).context("bind a free loopback port")?;
    Ok(listener.local_addr().context("read bound address")?.port())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn is_running(pid: &str) -> bool {
        Command::new("kill")
            .args(["-0", pid])
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|status| status.success())
    }

    #[test]
    fn stopping_a_managed_process_kills_its_child_and_removes_the_cleanup_dir() {
        let dir = tempfile::tempdir().unwrap().keep();
        let log = dir.join("child.log");
        let mut process = ManagedProcess::spawn(
            "sleeper",
            Path::new("/bin/sh"),
            &["-c".to_owned(), "echo $$; exec sleep 60".to_owned()],
            &log,
            Some(&dir),
        )
        .unwrap();
        let pid = (0..100)
            .find_map(|_| {
                std::thread::sleep(std::time::Duration::from_millis(50));
                let text = std::fs::read_to_string(&log).ok()?;
                text.lines().next().map(str::to_owned)
            })
            .expect("the child printed its pid");
        assert!(is_running(&pid));
        assert_eq!(process.exit_status(), None);

        process.stop();

        assert!(!is_running(&pid), "child {pid} survived stop()");
        assert!(!dir.exists(), "cleanup dir was not removed");
    }

    #[test]
    fn a_process_that_exits_reports_its_status_and_log() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("fail.log");
        let mut process = ManagedProcess::spawn(
            "failing",
            Path::new("/bin/sh"),
            &[
                "-c".to_owned(),
                "echo 'bind: address already in use' >&2; exit 3".to_owned(),
            ],
            &log,
            None,
        )
        .unwrap();
        let status = (0..100)
            .find_map(|_| {
                std::thread::sleep(std::time::Duration::from_millis(50));
                process.exit_status()
            })
            .expect("the process exited");
        assert!(status.contains('3'), "status {status}");
        assert!(process.log_tail().contains("address already in use"));
    }

    #[test]
    fn log_tail_keeps_only_the_end_of_a_long_log() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("long.log");
        let mut text = "early line\n".repeat(2000);
        text.push_str("the last line\n");
        std::fs::write(&path, &text).unwrap();
        let tail = log_tail(&path);
        assert!(tail.ends_with("the last line\n"));
        assert!(tail.len() as u64 <= LOG_TAIL_BYTES);
        assert!(log_tail(&dir.path().join("missing.log")).contains("cannot read"));
    }
}
