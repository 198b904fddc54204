//! Connection and request counters, with waiting for a condition on them (e.g. "the client cancelled").

use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use tokio::sync::Notify;

/// A snapshot of what the mock has seen.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// TCP connections open now.
    pub connections_open: u64,
    /// TCP connections accepted so far.
    pub connections_total: u64,
    /// Requests received so far (including rejected ones).
    pub requests_total: u64,
    /// Requests whose response is not finished yet (waiting, hanging or still streaming).
    pub requests_in_flight: u64,
    /// Streaming responses being sent now.
    pub streams_active: u64,
    /// Streaming responses sent to the end.
    pub streams_completed: u64,
    /// Responses the client abandoned before the mock finished them: it closed the connection during the
    /// latency, a hang, or mid-body. This is how a test sees that a client disconnect reached upstream.
    pub cancelled: u64,
    /// Connections the mock reset on purpose.
    pub resets: u64,
}

/// Shared counters; every change wakes the tasks waiting on a condition.
#[derive(Debug, Default)]
pub(crate) struct StatsCell {
    stats: Mutex<Stats>,
    changed: Notify,
}

impl StatsCell {
    pub fn snapshot(&self) -> Stats {
        *self.stats.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub fn update(&self, change: impl FnOnce(&mut Stats)) {
        change(&mut self.stats.lock().unwrap_or_else(PoisonError::into_inner));
        self.changed.notify_waiters();
    }

    /// Waits until `condition` holds; on timeout returns the last snapshot as the error.
    pub async fn wait_for(
        &self,
        condition: impl Fn(&Stats) -> bool,
        timeout: Duration,
    ) -> Result<Stats, Stats> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let notified = self.changed.notified();
            tokio::pin!(notified);
            // Register before checking so a change between the check and the wait is not lost.
            notified.as_mut().enable();
            let stats = self.snapshot();
            if condition(&stats) {
                return Ok(stats);
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return Err(self.snapshot());
            }
        }
    }
}

/// Counts one open connection for as long as it lives.
#[derive(Debug)]
pub(crate) struct OpenConnection<'a>(&'a StatsCell);

impl<'a> OpenConnection<'a> {
    pub fn new(cell: &'a StatsCell) -> Self {
        cell.update(|s| {
            s.connections_open += 1;
            s.connections_total += 1;
        });
        Self(cell)
    }
}

impl Drop for OpenConnection<'_> {
    fn drop(&mut self) {
        self.0.update(|s| s.connections_open -= 1);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    #[tokio::test]
    async fn waiting_sees_changes_made_by_other_tasks() {
        let cell = Arc::new(StatsCell::default());
        let writer = Arc::clone(&cell);
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(20)).await;
            writer.update(|s| s.cancelled += 1);
        });
        let stats = cell
            .wait_for(|s| s.cancelled == 1, Duration::from_secs(5))
            .await
            .unwrap();
        assert_eq!(stats.cancelled, 1);
        assert!(
            cell.wait_for(|s| s.cancelled == 2, Duration::from_millis(30))
                .await
                .is_err()
        );
    }
}
