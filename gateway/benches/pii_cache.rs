//! Redaction overhead per KB of prompt (clean and with PII, whole and streamed) and response-cache costs
//! (key computation, in-memory hit and store). Run: `cargo bench -p sluice-gateway --bench pii_cache`.

use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use sluice_crds::config::PiiConfig;
use sluice_crds::v1alpha1::{PiiMode, PiiPattern};
use sluice_gateway::api::openai::{
    ChatCompletion, ChatMessage, ChatRequest, Choice, FinishReason, ResponseMessage, Role,
};
use sluice_gateway::cache::{CacheKey, CachedResponse, MemoryCache, Tenant};
use sluice_gateway::pii::{Redactor, StreamRedactor, Tally};

/// About 1 KB of ordinary prompt text: prose with years, percentages, versions and times, no PII.
const CLEAN: &str = "Summarise the quarterly report for the leadership meeting on Thursday. Revenue grew 12% \
    year over year to 4.2 million, driven by the enterprise tier, while churn fell from 3.1% to 2.4%. The \
    platform team shipped release 2.8 with the new scheduler, cut p99 latency by 35 ms and retired 14 legacy \
    services. Hiring is behind plan: 6 of 11 roles are filled, and two senior engineers leave in Q3. Risks: \
    the data-center migration slipped to October 2025 because of a vendor delay, and the EU residency work \
    needs legal review before 1 September. Please keep the tone factual, group the points under Growth, \
    Delivery, People and Risks, and end with three questions the board is likely to ask. Use at most 250 \
    words, avoid jargon, and mention that the numbers are unaudited. The appendix lists 42 customer \
    accounts by segment; do not quote individual accounts. Times are in UTC; the meeting starts at 14:30 and \
    runs for 45 minutes. Thank you!\n";

/// About 1 KB with six entities of different kinds.
const WITH_PII: &str = "Hi, I'm Jane Doe. Please update my profile: email jane.doe@example.com, phone +44 20 7946 \
    0958, and the card ending my subscription is 4111 1111 1111 1111 (exp 12/27). Refunds should go to \
    IBAN DE89 3704 0044 0532 0130 00. My SSN is 536-90-4399 for the tax form, and I logged in from \
    192.168.1.20 yesterday at 10:42. The order was placed on 2024-03-15, order number 88412, for 3 items \
    totalling 149.90 EUR. I contacted support twice and was told to wait 5 to 7 business days. Could you \
    write a polite but firm message asking them to process the refund this week, mention the order number, \
    and keep it under 150 words? Also summarise what I should do if they do not answer by Friday, in three \
    short bullet points, and suggest a subject line. Thanks a lot for your help with this, it has been a \
    frustrating month and I would like to close this topic before my holiday starts on the 20th.\n";

fn redactor() -> Redactor {
    let config = PiiConfig {
        mode: PiiMode::Redact,
        entities: Vec::new(),
        custom_patterns: vec![PiiPattern {
            name: "employee-id".into(),
            regex: r"EMP-[0-9]{6}".into(),
        }],
        responses: true,
    };
    match Redactor::new(&config) {
        Ok(redactor) => redactor,
        Err(error) => panic!("{error}"),
    }
}

fn repeat_to(text: &str, bytes: usize) -> String {
    text.repeat(bytes.div_ceil(text.len()))
}

fn redaction(c: &mut Criterion) {
    let redactor = redactor();
    let mut group = c.benchmark_group("pii");
    for (name, base) in [("clean", CLEAN), ("with_pii", WITH_PII)] {
        for size in [1024, 16 * 1024] {
            let text = repeat_to(base, size);
            group.throughput(Throughput::Bytes(text.len() as u64));
            group.bench_with_input(
                BenchmarkId::new(format!("redact_{name}"), size),
                &text,
                |b, text| {
                    b.iter(|| black_box(redactor.redact(black_box(text))));
                },
            );
            group.bench_with_input(
                BenchmarkId::new(format!("request_{name}"), size),
                &text,
                |b, text| {
                    let request = ChatRequest {
                        model: "m".into(),
                        messages: vec![ChatMessage::text(Role::User, text.clone())],
                        ..ChatRequest::default()
                    };
                    b.iter_batched(
                        || request.clone(),
                        |mut request| black_box(redactor.inspect_request(&mut request)),
                        criterion::BatchSize::SmallInput,
                    );
                },
            );
        }
        let text = repeat_to(base, 16 * 1024);
        group.throughput(Throughput::Bytes(text.len() as u64));
        group.bench_with_input(
            BenchmarkId::new(format!("stream_{name}_20B_deltas"), 16 * 1024),
            &text,
            |b, text| {
                b.iter(|| {
                    let mut stream = StreamRedactor::new(&redactor);
                    let mut tally = Tally::default();
                    let mut sent = 0;
                    let mut start = 0;
                    while start < text.len() {
                        let mut end = (start + 20).min(text.len());
                        while !text.is_char_boundary(end) {
                            end += 1;
                        }
                        sent += stream.push(&text[start..end], &mut tally).len();
                        start = end;
                    }
                    sent += stream.finish(&mut tally).len();
                    black_box(sent)
                });
            },
        );
    }
    group.finish();
}

fn cache(c: &mut Criterion) {
    let request = ChatRequest {
        model: "chat".into(),
        messages: vec![
            ChatMessage::text(Role::System, "You are a concise assistant."),
            ChatMessage::text(Role::User, repeat_to(CLEAN, 2048)),
        ],
        temperature: Some(0.2),
        max_tokens: Some(256),
        ..ChatRequest::default()
    };
    let completion = ChatCompletion {
        id: "chatcmpl-bench".into(),
        object: "chat.completion".into(),
        model: "gpt-4o".into(),
        choices: vec![Choice {
            message: ResponseMessage {
                content: Some(CLEAN.into()),
                ..ResponseMessage::default()
            },
            finish_reason: Some(FinishReason::Stop),
            ..Choice::default()
        }],
        ..ChatCompletion::default()
    };
    let Some(entry) = CachedResponse::new(completion, "primary") else {
        panic!("the bench completion is cacheable");
    };
    let entry = Arc::new(entry);
    let cache = MemoryCache::new(10_000);
    let key = CacheKey::chat("ns/route", "gpt-4o", Tenant::Key("ns/key"), &request);
    cache.store(key, entry.clone(), Duration::from_secs(300));

    let mut group = c.benchmark_group("cache");
    group.bench_function("key_2KB_prompt", |b| {
        b.iter(|| {
            black_box(CacheKey::chat(
                "ns/route",
                "gpt-4o",
                Tenant::Key("ns/key"),
                black_box(&request),
            ))
        });
    });
    group.bench_function("memory_hit", |b| {
        b.iter(|| black_box(cache.lookup(black_box(&key))))
    });
    group.bench_function("memory_store", |b| {
        b.iter(|| cache.store(black_box(key), entry.clone(), Duration::from_secs(300)));
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().measurement_time(Duration::from_secs(3)).warm_up_time(Duration::from_secs(1));
    targets = redaction, cache
}
criterion_main!(benches);
