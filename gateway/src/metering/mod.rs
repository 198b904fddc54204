//! Metering: what a request consumed and cost, rate limits and budgets at admission, and usage reports
//! to the operator.
//!
//! The pipeline calls [`Meter::admit`] before the upstream call (reserve rate-limit tokens and budget
//! money, or refuse) and [`Meter::settle`] exactly once per admitted request when its response has ended
//! (replace the reservations by the real figures). [`Metering`] is the gateway's meter; the
//! [`reporter`] pushes its books to the operator. See `docs/metering.md`.
//!
//! - [`tokens`] — token counts from usage reports, estimates with a real tokenizer when there are none.
//! - [`cost`] — prices and the most a request may cost.
//! - [`rate_limit`] — requests and tokens per minute over a sliding window.
//! - [`budget`] — one budget's account: window, reservations, grants, failure modes.
//! - [`ledger`] — every account plus unreported usage, under one lock.
//! - [`meter`] — [`Metering`], the [`Meter`] that ties them together.
//! - [`health`] — backend health for reports.
//! - [`reporter`] — the report loop (one report in flight, resent until acknowledged).

pub mod budget;
pub mod cost;
pub mod health;
pub mod ledger;
pub mod meter;
pub mod metrics;
pub mod rate_limit;
pub mod reporter;
pub mod tokens;

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use sluice_crds::config::BudgetConfig;

pub use cost::cost_usd;
pub use meter::{Metering, Reservation};
pub use tokens::{Prompt, token_counts};

use crate::api::openai::Usage;
use crate::auth::Key;
use crate::config::{Backend, Route};
use crate::error::GatewayError;

/// A request about to be sent upstream.
#[derive(Debug)]
pub struct Admission<'a> {
    pub request_id: &'a str,
    pub key: &'a Arc<Key>,
    pub route: &'a Arc<Route>,
    /// The budgets of the configuration the request runs under, by id.
    pub budgets: &'a HashMap<String, BudgetConfig>,
    /// The request, for the prompt-token estimate.
    pub prompt: Prompt<'a>,
    /// The output bound the request carries, if any (for reservations).
    pub max_output_tokens: Option<u32>,
    pub streaming: bool,
}

/// An admitted request: the headers to add to its response and what it holds until it settles.
#[derive(Debug, Default)]
pub struct Admitted {
    /// `x-ratelimit-*` of the limits that apply (none when no limit applies).
    pub headers: http::HeaderMap,
    pub reservation: Reservation,
}

/// A finished request (completed, failed upstream, or cut short by the client).
#[derive(Debug)]
pub struct UsageRecord<'a> {
    pub request_id: &'a str,
    pub key: &'a Arc<Key>,
    pub route: &'a Arc<Route>,
    /// The backend that produced the response (absent when every attempt failed before one answered).
    pub backend: Option<&'a Arc<Backend>>,
    /// Provider-reported usage; `None` when it reported none (a cut stream, an error).
    pub usage: Option<&'a Usage>,
    pub cost_usd: Option<f64>,
    pub status: u16,
    pub streamed: bool,
    /// The response reached its natural end (false: client disconnect or upstream failure mid-stream).
    pub complete: bool,
    pub attempts: u32,
    pub duration: Duration,
    /// What admission reserved.
    pub reservation: &'a Reservation,
    /// The text sent to the client, for an output estimate when the provider reported no usage.
    pub output_text: &'a str,
    /// Answered from the response cache: not billed, counted as saved.
    pub cache_hit: bool,
}

/// Admission and settlement hook. The default admits everything and settles nothing.
pub trait Meter: Send + Sync + fmt::Debug + 'static {
    /// Decides whether the request may go upstream (reserve tokens or money here). An error is returned to
    /// the client as is (e.g. 429 with `Retry-After`).
    fn admit(&self, admission: &Admission<'_>) -> Result<Admitted, GatewayError> {
        let _ = admission;
        Ok(Admitted::default())
    }

    /// Called exactly once per admitted request, when its response has ended.
    fn settle(&self, record: &UsageRecord<'_>) {
        let _ = record;
    }
}

/// The meter that admits everything.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoMeter;

impl Meter for NoMeter {}
