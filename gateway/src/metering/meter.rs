//! [`Metering`], the gateway's [`Meter`]: rate limits and budget reservations at admission, the real
//! figures (provider usage, or tokenizer estimates) at settlement.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use http::{HeaderMap, HeaderName, HeaderValue};
use sluice_crds::config::{BudgetConfig, RateLimitConfig};
use tokio::time::Instant;

use super::budget::Authority;
use super::cost::{cost_nano, max_cost_nano, max_output_tokens};
use super::ledger::{BudgetRefusal, Charge, Hold, Ledger};
use super::rate_limit::{Dimension, LimitStatus, Limiter, Limiters, Ticket, format_reset};
use super::tokens::{self, Metered};
use super::{Admission, Admitted, Meter, UsageRecord};
use crate::error::GatewayError;
use crate::metrics::Metrics;

pub const LIMIT_REQUESTS: HeaderName = HeaderName::from_static("x-ratelimit-limit-requests");
pub const REMAINING_REQUESTS: HeaderName =
    HeaderName::from_static("x-ratelimit-remaining-requests");
pub const RESET_REQUESTS: HeaderName = HeaderName::from_static("x-ratelimit-reset-requests");
pub const LIMIT_TOKENS: HeaderName = HeaderName::from_static("x-ratelimit-limit-tokens");
pub const REMAINING_TOKENS: HeaderName = HeaderName::from_static("x-ratelimit-remaining-tokens");
pub const RESET_TOKENS: HeaderName = HeaderName::from_static("x-ratelimit-reset-tokens");

/// What an admitted request holds until it settles.
#[derive(Debug, Default)]
pub struct Reservation {
    /// Admission-time estimate of the prompt's tokens (when one was needed).
    prompt_estimate: Option<u64>,
    limits: Vec<(Arc<Limiter>, Ticket)>,
    hold: Hold,
}

/// Rate limits, budgets and the books reported to the operator.
#[derive(Debug)]
pub struct Metering {
    limiters: Limiters,
    ledger: Arc<Ledger>,
    metrics: Arc<Metrics>,
}

impl Metering {
    pub fn new(ledger: Arc<Ledger>, metrics: Arc<Metrics>) -> Self {
        Self {
            limiters: Limiters::default(),
            ledger,
            metrics,
        }
    }

    pub fn ledger(&self) -> &Arc<Ledger> {
        &self.ledger
    }

    fn release(limits: Vec<(Arc<Limiter>, Ticket)>) {
        for (limiter, ticket) in limits {
            limiter.release(ticket);
        }
    }
}

/// The budgets charged by a request: the key's, then the route's, each once.
fn budgets_of<'a>(admission: &Admission<'a>) -> Vec<&'a BudgetConfig> {
    let mut ids: Vec<&String> = admission.key.config.budgets.iter().collect();
    for id in &admission.route.config.budgets {
        if !ids.contains(&id) {
            ids.push(id);
        }
    }
    ids.into_iter()
        .filter_map(|id| admission.budgets.get(id))
        .collect()
}

fn header_value(text: &str) -> HeaderValue {
    HeaderValue::from_str(text).unwrap_or_else(|_| HeaderValue::from_static("0"))
}

/// OpenAI's `x-ratelimit-*` headers for the limits that apply.
pub fn limit_headers(status: &LimitStatus) -> HeaderMap {
    let mut headers = HeaderMap::new();
    for (quota, names) in [
        (
            status.requests,
            [LIMIT_REQUESTS, REMAINING_REQUESTS, RESET_REQUESTS],
        ),
        (
            status.tokens,
            [LIMIT_TOKENS, REMAINING_TOKENS, RESET_TOKENS],
        ),
    ] {
        if let Some(quota) = quota {
            let [limit, remaining, reset] = names;
            headers.insert(limit, HeaderValue::from(quota.limit));
            headers.insert(remaining, HeaderValue::from(quota.remaining));
            headers.insert(reset, header_value(&format_reset(quota.reset)));
        }
    }
    headers
}

impl Meter for Metering {
    fn admit(&self, admission: &Admission<'_>) -> Result<Admitted, GatewayError> {
        let limited: Vec<(&'static str, Arc<Limiter>, RateLimitConfig)> = [
            admission
                .key
                .config
                .rate_limit
                .map(|limits| ("key", self.limiters.key(&admission.key.id), limits)),
            admission
                .route
                .config
                .rate_limit
                .map(|limits| ("route", self.limiters.route(&admission.route.id), limits)),
        ]
        .into_iter()
        .flatten()
        .collect();
        let budgets = budgets_of(admission);
        let wants_tokens = budgets.iter().len() > 0
            || limited
                .iter()
                .any(|(_, _, l)| l.tokens_per_minute.is_some())
            || self.ledger.authority() == Authority::Operator;
        let prompt_estimate = wants_tokens.then(|| tokens::estimate_prompt(admission.prompt));
        let output_bound = match admission.prompt {
            tokens::Prompt::Embeddings(_) => 0,
            tokens::Prompt::Chat(_) => {
                max_output_tokens(admission.route, admission.max_output_tokens)
            }
        };
        let reserved_tokens = prompt_estimate.unwrap_or(0) + output_bound;

        let now = Instant::now();
        let mut status = LimitStatus::default();
        let mut held = Vec::with_capacity(limited.len());
        for (scope, limiter, limits) in limited {
            match limiter.try_admit(&limits, reserved_tokens, now) {
                Ok((ticket, quota)) => {
                    status = status.tighter(quota);
                    held.push((limiter, ticket));
                }
                Err(refused) => {
                    Self::release(held);
                    let limit = match refused.dimension {
                        Dimension::Requests => "requests",
                        Dimension::Tokens => "tokens",
                    };
                    self.metrics.metering.count_rate_limited(scope, limit);
                    return Err(GatewayError::RateLimited {
                        scope,
                        limit,
                        retry_after: refused.retry_after,
                        headers: Box::new(limit_headers(&status.tighter(refused.status))),
                    });
                }
            }
        }

        let hold = if budgets.is_empty() {
            Hold::default()
        } else {
            let amount = max_cost_nano(admission.route, prompt_estimate.unwrap_or(0), output_bound);
            match self.ledger.reserve(&budgets, amount, Utc::now()) {
                Ok(hold) => hold,
                Err(refusal) => {
                    Self::release(held);
                    return Err(match refusal {
                        BudgetRefusal::Exceeded { budget, resets_at } => {
                            self.metrics.metering.count_budget_refusal(&budget);
                            GatewayError::BudgetExceeded {
                                budget,
                                retry_after: resets_at.and_then(|at| {
                                    (at - Utc::now())
                                        .to_std()
                                        .ok()
                                        .map(|d| d.max(Duration::from_secs(1)))
                                }),
                            }
                        }
                        BudgetRefusal::Unavailable { budget } => {
                            self.metrics.metering.count_budget_refusal(&budget);
                            GatewayError::BudgetUnavailable { budget }
                        }
                    });
                }
            }
        };
        Ok(Admitted {
            headers: limit_headers(&status),
            reservation: Reservation {
                prompt_estimate,
                limits: held,
                hold,
            },
        })
    }

    fn settle(&self, record: &UsageRecord<'_>) {
        let reservation = record.reservation;
        let answered = (200..300).contains(&record.status);
        let metered = if answered || record.usage.is_some() {
            tokens::meter(
                record.usage,
                reservation.prompt_estimate,
                record.output_text,
            )
        } else {
            // Nothing reached the client and the provider billed nothing it told us about.
            Metered::default()
        };
        if metered.estimated > 0 {
            self.metrics
                .metering
                .count_estimated_tokens(metered.estimated);
        }
        let price = cost_nano(
            record
                .backend
                .and_then(|backend| backend.config.pricing.as_ref()),
            &metered.tokens,
        );
        let (cost, saved) = if record.cache_hit {
            (0, price)
        } else {
            (price, 0)
        };
        let used = if record.cache_hit {
            0
        } else {
            metered.tokens.input + metered.tokens.output
        };
        let now = Instant::now();
        for (limiter, ticket) in &reservation.limits {
            limiter.settle(*ticket, used, now);
        }
        if self.ledger.authority() == Authority::Operator || !reservation.hold.budgets.is_empty() {
            self.ledger.settle(
                &reservation.hold,
                &Charge {
                    key: &record.key.id,
                    route: &record.route.id,
                    failed: !answered,
                    tokens: metered.tokens,
                    estimated: metered.estimated,
                    cost,
                    cache_hit: record.cache_hit,
                    saved,
                },
                Utc::now(),
            );
            for (id, _) in &reservation.hold.budgets {
                self.metrics
                    .metering
                    .set_budget_spent_ratio(id, self.ledger.spent_ratio(id));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::metering::rate_limit::Quota;

    #[test]
    fn headers_follow_openai_names() {
        let headers = limit_headers(&LimitStatus {
            requests: Some(Quota {
                limit: 60,
                remaining: 59,
                reset: Duration::from_secs(1),
            }),
            tokens: None,
        });
        assert_eq!(headers[LIMIT_REQUESTS], "60");
        assert_eq!(headers[REMAINING_REQUESTS], "59");
        assert_eq!(headers[RESET_REQUESTS], "1s");
        assert!(!headers.contains_key(LIMIT_TOKENS));
    }
}
