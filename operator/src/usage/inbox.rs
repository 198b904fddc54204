//! The hand-over between the ingest endpoint (served by every operator instance) and the leader's
//! ledger folder: empty, or closed, whenever this instance does not lead, so reports get a 503.

use std::sync::Arc;

use sluice_crds::usage::{UsageAck, UsageReport};
use tokio::sync::{mpsc, oneshot, watch};

/// A report waiting to be folded, and where its answer goes.
#[derive(Debug)]
pub struct Submission {
    pub report: UsageReport,
    pub reply: oneshot::Sender<Result<UsageAck, Refusal>>,
}

/// Why a well-formed report was not acknowledged; the gateway resends it.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error(
        "this operator instance is not the leader (or is still loading the ledger); retry, the Service will reach the leader"
    )]
    NotLeader,
    #[error("the usage ledger could not be written: {0}; retry")]
    Unavailable(String),
}

/// The leader's submission queue, shared by the endpoint and the folder.
#[derive(Clone, Debug)]
pub struct Inbox(Arc<watch::Sender<Option<mpsc::Sender<Submission>>>>);

impl Default for Inbox {
    fn default() -> Self {
        Self(Arc::new(watch::Sender::new(None)))
    }
}

impl Inbox {
    /// Opens the inbox to a newly started folder.
    pub fn open(&self, sender: mpsc::Sender<Submission>) {
        self.0.send_replace(Some(sender));
    }

    /// Closes it (the folder stopped): reports are refused until the next [`Inbox::open`].
    pub fn close(&self) {
        self.0.send_replace(None);
    }

    /// Submits `report` and waits for its answer.
    pub async fn submit(&self, report: UsageReport) -> Result<UsageAck, Refusal> {
        let sender = self.0.borrow().clone().ok_or(Refusal::NotLeader)?;
        let (reply, answer) = oneshot::channel();
        sender
            .send(Submission { report, reply })
            .await
            .map_err(|_| Refusal::NotLeader)?;
        // A folder that stops (leadership lost) drops the reply: the report was not acknowledged.
        answer.await.map_err(|_| Refusal::NotLeader)?
    }
}
