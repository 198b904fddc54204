//! The leader's ledger folder: takes the reports the endpoint queues, folds each batch into the ledger,
//! persists it, and only then acknowledges; publishes the usage view for the status writer at most once
//! per status interval, and again when a budget window rolls over.
//!
//! Batching: reports that arrive while a ledger write is in flight wait in the queue and are folded
//! together into the next write, so the write rate follows the number of gateways, not the traffic.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use kube::ResourceExt as _;
use sluice_crds::config::object_id;
use sluice_crds::usage::nano_usd;
use tokio::sync::{mpsc, watch};
use tokio::time::MissedTickBehavior;
use tokio_util::sync::CancellationToken;

use super::error::UsageError;
use super::inbox::{Refusal, Submission};
use super::ledger::{BudgetTerms, Folded};
use super::store::{LedgerStore, Stored};
use super::view::UsageView;
use crate::controllers::Context;
use crate::controllers::budget::status::created;
use crate::metrics::{LedgerWrite, ReportResult};

/// Reports queued before the endpoint waits for room.
const QUEUE_CAPACITY: usize = 4096;
/// Most reports folded into one ledger write.
const MAX_BATCH: usize = 1024;
/// Back-off while the ledger cannot be read at start.
const LOAD_RETRY: Duration = Duration::from_secs(1);

/// Runs until `cancel` fires (or the task is aborted on losing the lease).
pub async fn run(
    ctx: Arc<Context>,
    views: watch::Sender<Arc<UsageView>>,
    cancel: CancellationToken,
) {
    let settings = &ctx.settings;
    let store = LedgerStore::new(
        ctx.client.clone(),
        &settings.gateway_namespace,
        &settings.usage_ledger_name(),
        &settings.gateway_name,
    );
    let mut stored = loop {
        match store.load().await {
            Ok(stored) => break stored,
            Err(error) => {
                tracing::warn!(error = %error, "cannot read the usage ledger yet; usage reports are refused until it is read");
                tokio::select! {
                    () = cancel.cancelled() => return,
                    () = tokio::time::sleep(LOAD_RETRY) => {}
                }
            }
        }
    };
    tracing::info!(
        reporters = stored.ledger.reporters.len(),
        keys = stored.ledger.keys.len(),
        "loaded the usage ledger; accepting usage reports"
    );
    views.send_replace(Arc::new(UsageView::of(&stored.ledger)));
    let (sender, mut queue) = mpsc::channel(QUEUE_CAPACITY);
    ctx.inbox.open(sender);
    let mut tick = tokio::time::interval(settings.usage_status_interval);
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut windows = window_starts(&terms(&ctx, ctx.clock.now()));
    let mut dirty = false;
    loop {
        tokio::select! {
            () = cancel.cancelled() => break,
            first = queue.recv() => {
                let Some(first) = first else { break };
                let mut batch = vec![first];
                while batch.len() < MAX_BATCH {
                    match queue.try_recv() {
                        Ok(next) => batch.push(next),
                        Err(_) => break,
                    }
                }
                dirty |= fold_batch(&ctx, &store, &mut stored, batch).await;
            }
            _ = tick.tick() => {
                let current = window_starts(&terms(&ctx, ctx.clock.now()));
                if dirty || current != windows {
                    windows = current;
                    dirty = false;
                    views.send_replace(Arc::new(UsageView::of(&stored.ledger)));
                }
            }
        }
    }
    ctx.inbox.close();
}

/// Folds `batch` into a copy of the ledger, writes it, and answers every report. Returns whether the
/// persisted ledger changed.
async fn fold_batch(
    ctx: &Context,
    store: &LedgerStore,
    stored: &mut Stored,
    batch: Vec<Submission>,
) -> bool {
    let now = ctx.clock.now();
    let terms = terms(ctx, now);
    let mut next = stored.ledger.clone();
    let mut changed = next.roll_windows(&terms);
    let grants_stale_before = now
        - chrono::Duration::from_std(ctx.settings.usage_grant_ttl)
            .unwrap_or(chrono::Duration::seconds(30));
    let answers: Vec<(Submission, Folded)> = batch
        .into_iter()
        .map(|submission| {
            let folded = next.fold_with(&submission.report, &terms, now, grants_stale_before);
            (submission, folded)
        })
        .collect();
    changed |= answers.iter().any(|(_, folded)| folded.changed);
    let silent_since = now
        - chrono::Duration::from_std(ctx.settings.usage_reporter_ttl)
            .unwrap_or(chrono::Duration::hours(1));
    let pruned = next.prune(silent_since);
    if pruned > 0 {
        tracing::info!(
            pruned,
            "released the grants of gateways that stopped reporting"
        );
        changed = true;
    }
    if changed {
        match store.save(&next, stored.version.as_deref()).await {
            Ok((version, bytes)) => {
                ctx.metrics.ledger_written(LedgerWrite::ok, bytes);
                *stored = Stored {
                    ledger: next,
                    version: Some(version),
                };
            }
            Err(error) => {
                refuse_all(ctx, answers, &error).await;
                if matches!(error, UsageError::LedgerConflict { .. }) {
                    reload(ctx, store, stored).await;
                }
                return false;
            }
        }
    }
    for (submission, folded) in answers {
        ctx.metrics.report(if folded.ack.duplicate {
            ReportResult::duplicate
        } else {
            ReportResult::folded
        });
        // The gateway may have given up waiting; it resends and gets a duplicate acknowledgement.
        let _ = submission.reply.send(Ok(folded.ack));
    }
    changed
}

async fn refuse_all(ctx: &Context, answers: Vec<(Submission, Folded)>, error: &UsageError) {
    ctx.metrics.ledger_written(
        if matches!(error, UsageError::LedgerConflict { .. }) {
            LedgerWrite::conflict
        } else {
            LedgerWrite::error
        },
        0,
    );
    tracing::warn!(error = %error, reports = answers.len(), "writing the usage ledger failed; the gateways resend");
    for (submission, _) in answers {
        ctx.metrics.report(ReportResult::unavailable);
        let _ = submission
            .reply
            .send(Err(Refusal::Unavailable(error.to_string())));
    }
}

/// After a conflict the ConfigMap holds what another writer folded: continue from there.
async fn reload(ctx: &Context, store: &LedgerStore, stored: &mut Stored) {
    match store.load().await {
        Ok(fresh) => *stored = fresh,
        Err(error) => {
            ctx.metrics.ledger_written(LedgerWrite::error, 0);
            tracing::warn!(error = %error, "re-reading the usage ledger failed; retried at the next write");
        }
    }
}

/// Limit and current window of every budget of the gateway, at `now`.
pub fn terms(ctx: &Context, now: DateTime<Utc>) -> BTreeMap<String, BudgetTerms> {
    ctx.caches
        .budgets
        .all()
        .into_iter()
        .filter(|budget| budget.spec.gateway == ctx.settings.gateway_name)
        .filter_map(|budget| {
            let window = sluice_crds::window::current(
                budget.spec.window,
                &budget.spec.time_zone,
                now,
                created(&budget, now),
            )?;
            Some((
                object_id(&budget.namespace().unwrap_or_default(), &budget.name_any()),
                BudgetTerms {
                    limit_nano_usd: nano_usd(budget.spec.limit_usd),
                    window,
                },
            ))
        })
        .collect()
}

fn window_starts(terms: &BTreeMap<String, BudgetTerms>) -> Vec<DateTime<Utc>> {
    terms.values().map(|terms| terms.window.start).collect()
}
