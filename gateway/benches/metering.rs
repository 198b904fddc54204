//! Metering costs on the request path: the prompt-token estimate (o200k BPE) per prompt size, a rate-limit
//! admission plus settlement, and a budget reservation plus settlement.
//! Run: `cargo bench -p sluice-gateway --bench metering`.

use std::hint::black_box;
use std::sync::Arc;

use chrono::Utc;
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use sluice_crds::config::{BudgetConfig, RateLimitConfig};
use sluice_crds::v1alpha1::{BudgetAction, BudgetWindow, FailureMode};
use sluice_gateway::api::openai::{ChatMessage, ChatRequest, Role};
use sluice_gateway::metering::budget::Authority;
use sluice_gateway::metering::ledger::{Charge, Ledger};
use sluice_gateway::metering::rate_limit::Limiter;
use sluice_gateway::metering::tokens::{self, Prompt};
use sluice_gateway::metrics::TokenCounts;

/// About 1 KB of ordinary English prompt text.
const PARAGRAPH: &str = "Summarise the quarterly report for the leadership meeting on Thursday. Revenue grew 12% \
    year over year to 4.2 million, driven by the enterprise tier, while churn fell from 3.1% to 2.4%. The \
    platform team shipped release 2.8 with the new scheduler, cut p99 latency by 35 ms and retired 14 legacy \
    services. Hiring is behind plan: 6 of 11 roles are filled, and two senior engineers leave in Q3. Risks: \
    the data-center migration slipped to October 2025 because of a vendor delay, and the EU residency work \
    needs legal review before 1 September. Please keep the tone factual, group the points under Growth, \
    Delivery, People and Risks, and end with three questions the board is likely to ask. Use at most 250 \
    words, avoid jargon, and mention that the numbers are unaudited. The appendix lists 42 customer \
    accounts by segment; do not quote individual accounts. Times are in UTC; the meeting starts at 14:30 and \
    runs for 45 minutes. Thank you!\n";

fn estimate(c: &mut Criterion) {
    tokens::warm_up();
    let mut group = c.benchmark_group("prompt_estimate");
    for kb in [1usize, 8, 64] {
        let request = ChatRequest {
            model: "gpt-4o".into(),
            messages: vec![
                ChatMessage::text(Role::System, "You are a helpful assistant."),
                ChatMessage::text(Role::User, PARAGRAPH.repeat(kb)),
            ],
            ..ChatRequest::default()
        };
        group.throughput(Throughput::Bytes((PARAGRAPH.len() * kb) as u64));
        group.bench_with_input(
            BenchmarkId::from_parameter(format!("{kb}KB")),
            &request,
            |b, request| {
                b.iter(|| tokens::estimate_prompt(Prompt::Chat(black_box(request))));
            },
        );
    }
    group.finish();
}

fn limits_and_budgets(c: &mut Criterion) {
    let limiter = Limiter::default();
    let limits = RateLimitConfig {
        requests_per_minute: Some(u64::MAX / 4),
        tokens_per_minute: Some(u64::MAX / 4),
    };
    c.bench_function("rate_limit_admit_settle", |b| {
        b.iter(|| {
            let now = tokio::time::Instant::now();
            if let Ok((ticket, status)) = limiter.try_admit(&limits, 1_000, now) {
                black_box(status);
                limiter.settle(ticket, 900, now);
            }
        });
    });
    let ledger = Ledger::new(Authority::Operator, Utc::now());
    let budget = BudgetConfig {
        id: "team/b".into(),
        limit_usd: 1e9,
        token_limit: None,
        window: BudgetWindow::Monthly,
        time_zone: "Europe/Berlin".into(),
        thresholds: vec![],
        action: BudgetAction::Block,
        stop_streams: false,
        failure_mode: FailureMode::Open,
    };
    let (key, route): (Arc<str>, Arc<str>) = ("team/k".into(), "team/r".into());
    c.bench_function("budget_reserve_settle", |b| {
        b.iter(|| {
            let now = Utc::now();
            if let Ok(hold) = ledger.reserve(&[&budget], 10_000, now) {
                ledger.settle(
                    &hold,
                    &Charge {
                        key: &key,
                        route: &route,
                        failed: false,
                        tokens: TokenCounts {
                            input: 100,
                            output: 50,
                            cached_input: 0,
                        },
                        estimated: 0,
                        cost: 9_000,
                        cache_hit: false,
                        saved: 0,
                    },
                    now,
                );
            }
        });
        let _ = ledger.take_report();
    });
}

criterion_group!(benches, estimate, limits_and_budgets);
criterion_main!(benches);
