//! One request from arrival to response: route, authenticate, validate, pick the scripted behaviour,
//! render the provider's answer or fault, record it, and deliver it.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::header::{CONTENT_LENGTH, CONTENT_TYPE, HeaderValue};
use http::request::Parts;
use http::{HeaderMap, Method, Request, Response, StatusCode};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use serde_json::{Value, json};

use super::behavior::{Action, Behavior};
use super::body::{Ending, InFlight, MockBody, Pacing, Streamed};
use super::conn::ConnControl;
use super::record::{Outcome, RecordedRequest};
use super::reply::{self, Usage};
use super::route::{Endpoint, Provider, Route, classify};
use super::state::Shared;
use super::wire::{self, Answer, Ctx, ErrorResponse, Event, Failure, openai};

/// Paths under this prefix are the mock's own (e.g. `GET /__mock/stats`), not a provider's.
pub(crate) const ADMIN_PREFIX: &str = "/__mock/";

/// What to do with a request, decided before any waiting.
#[derive(Debug)]
pub(crate) enum Plan {
    Reset,
    Hang,
    Send(Send),
}

#[derive(Debug)]
pub(crate) struct Send {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub frames: Vec<Bytes>,
    /// Declared length when it differs from the frames (a body cut by a reset).
    pub content_length: Option<usize>,
    pub ending: Ending,
    pub pacing: Pacing,
    pub is_stream: bool,
}

impl Send {
    fn whole(status: StatusCode, headers: HeaderMap, body: Bytes) -> Self {
        Self {
            status,
            headers,
            frames: vec![body],
            content_length: None,
            ending: Ending::Complete,
            pacing: Pacing::default(),
            is_stream: false,
        }
    }

    fn error(response: ErrorResponse) -> Self {
        Self::whole(response.status, *response.headers, response.body)
    }
}

pub(crate) async fn handle(
    request: Request<Incoming>,
    shared: Arc<Shared>,
    conn: ConnControl,
) -> Result<Response<MockBody>, Infallible> {
    if request.uri().path().starts_with(ADMIN_PREFIX) {
        return Ok(admin(&shared, request.method(), request.uri().path()));
    }
    let guard = InFlight::start(&shared);
    let seq = shared.next_seq();
    let (parts, body) = request.into_parts();
    let raw = match body.collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(_) => {
            guard.complete();
            return Ok(plain(
                StatusCode::BAD_REQUEST,
                "could not read the request body",
            ));
        }
    };
    let route = classify(&parts.method, parts.uri.path(), &parts.headers);
    let (plan, latency, usage) = match &route {
        Some(route) => decide(&shared, seq, &parts, route, &raw),
        None => (
            Plan::Send(Send::error(not_found(&parts))),
            Duration::ZERO,
            None,
        ),
    };
    if shared.config.record {
        shared.record(RecordedRequest {
            seq,
            route,
            method: parts.method.clone(),
            path: parts.uri.path().to_owned(),
            query: parts.uri.query().map(str::to_owned),
            headers: parts.headers,
            body: serde_json::from_slice(&raw).unwrap_or(Value::Null),
            raw_body: raw,
            outcome: match &plan {
                Plan::Reset => Outcome::Reset,
                Plan::Hang => Outcome::Hang,
                Plan::Send(send) => Outcome::Status(send.status.as_u16()),
            },
            usage,
        });
    }
    Ok(execute(plan, latency, guard, conn).await)
}

/// Waits out the latency and delivers the plan. If the client goes away meanwhile, hyper drops this future
/// and with it the guard, which counts the cancellation.
async fn execute(
    plan: Plan,
    latency: Duration,
    guard: InFlight,
    conn: ConnControl,
) -> Response<MockBody> {
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    let send = match plan {
        Plan::Reset => {
            guard.reset();
            conn.reset();
            return std::future::pending().await;
        }
        Plan::Hang => return std::future::pending().await,
        Plan::Send(send) => send,
    };
    let mut response = Response::new(MockBody::Full(None));
    *response.status_mut() = send.status;
    *response.headers_mut() = send.headers;
    if let Some(length) = send.content_length {
        response
            .headers_mut()
            .insert(CONTENT_LENGTH, HeaderValue::from(length));
    }
    let immediate =
        send.frames.len() <= 1 && send.pacing.is_immediate() && send.ending == Ending::Complete;
    *response.body_mut() = if immediate && !send.is_stream {
        guard.complete();
        MockBody::Full(send.frames.into_iter().next())
    } else {
        Streamed {
            frames: send.frames,
            pacing: send.pacing,
            ending: send.ending,
            is_stream: send.is_stream,
        }
        .spawn(guard, conn)
    };
    response
}

/// Decides the plan for a routed request, with its latency and the usage it reports.
fn decide(
    shared: &Shared,
    seq: u64,
    parts: &Parts,
    route: &Route,
    raw: &Bytes,
) -> (Plan, Duration, Option<Usage>) {
    let config = &shared.config;
    let query = parts.uri.query();
    if let Some(fixed) = &shared.fixed
        && let Some(send) = fixed.answer(
            route,
            &parts.headers,
            query,
            raw,
            shared.expected_key(route.provider).as_deref(),
        )
    {
        return (Plan::Send(send), config.latency, None);
    }
    let body: Value = if raw.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(raw).unwrap_or(Value::Null)
    };
    let prompt = wire::read_prompt(route, &body);
    let ctx = context(seq, route, &body, query, prompt.model.clone());
    let reject =
        |response: ErrorResponse| (Plan::Send(Send::error(response)), config.latency, None);

    if let Err(failure) = wire::check_auth(
        route,
        &parts.headers,
        query,
        shared.expected_key(route.provider).as_deref(),
    ) && (config.strict || !matches!(failure, wire::Failure::MissingKey))
    {
        // Lenient mode also plays keyless OpenAI-compatible servers (vLLM, Ollama): no key is fine there.
        return reject(wire::failure(&ctx, &failure));
    }
    if config.strict
        && let Err(response) = wire::validate(&ctx, &parts.headers, query, &body)
    {
        return reject(response);
    }
    if config
        .context_window
        .is_some_and(|window| prompt.words > window)
    {
        return reject(wire::failure(
            &ctx,
            &Failure::ContextLength {
                prompt_tokens: prompt.words,
            },
        ));
    }

    let behavior = shared
        .script()
        .next(route.provider, route.endpoint, prompt.model.as_deref());
    let latency = config.latency + behavior.latency;
    let failure = match &behavior.action {
        Action::Reset => return (Plan::Reset, latency, None),
        Action::Hang => return (Plan::Hang, latency, None),
        Action::Status(status) => Some(Failure::Status(*status)),
        Action::RateLimited(hint) => Some(Failure::RateLimited(*hint)),
        Action::ContextLengthExceeded => Some(Failure::ContextLength {
            prompt_tokens: prompt.words,
        }),
        Action::Answer
        | Action::MalformedJson
        | Action::ResetAfterEvents(_)
        | Action::ErrorEventAfter(_) => None,
    };
    if let Some(failure) = failure {
        let mut send = Send::error(wire::failure(&ctx, &failure));
        add_headers(&mut send.headers, &behavior);
        return (Plan::Send(send), latency, None);
    }

    let (answer, usage) = if is_generation(route.endpoint) {
        let reply = reply::plan(&prompt, &behavior, config);
        (wire::answer(&ctx, &reply), Some(reply.usage))
    } else {
        match wire::utility(&ctx, &body) {
            Ok((json, usage)) => (Answer::Json(json), usage),
            Err(response) => return (Plan::Send(Send::error(response)), latency, None),
        }
    };
    let mut headers = wire::common_headers(&ctx);
    add_headers(&mut headers, &behavior);
    let pacing = Pacing {
        frame_delay: behavior.chunk_delay.unwrap_or(config.chunk_delay),
        drip: behavior.drip,
    };
    (
        Plan::Send(deliver(&ctx, answer, &behavior.action, headers, pacing)),
        latency,
        usage,
    )
}

/// Shapes a rendered answer under the behaviour's action (whole, malformed, cut, or with an error event).
pub(crate) fn deliver(
    ctx: &Ctx,
    answer: Answer,
    action: &Action,
    mut headers: HeaderMap,
    pacing: Pacing,
) -> Send {
    match answer {
        Answer::Json(json) => {
            headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
            let body = Bytes::from(json.to_string());
            match action {
                Action::MalformedJson => {
                    Send::whole(StatusCode::OK, headers, body.slice(..body.len() * 3 / 5))
                }
                Action::ResetAfterEvents(_) => Send {
                    frames: vec![body.slice(..body.len() / 2)],
                    content_length: Some(body.len()),
                    ending: Ending::Reset,
                    ..Send::whole(StatusCode::OK, headers, Bytes::new())
                },
                Action::ErrorEventAfter(_) => {
                    let (_, response) = wire::stream_error(ctx);
                    Send::error(response)
                }
                _ => Send {
                    pacing,
                    ..Send::whole(StatusCode::OK, headers, body)
                },
            }
        }
        Answer::Stream {
            framing,
            mut events,
        } => {
            if let Ok(content_type) = HeaderValue::from_str(framing.content_type()) {
                headers.insert(CONTENT_TYPE, content_type);
            }
            headers.insert("cache-control", HeaderValue::from_static("no-cache"));
            let (frames, ending) = match action {
                Action::MalformedJson => {
                    events.truncate(1);
                    let broken = malformed(events.first());
                    events.push(broken);
                    (framing.frames(&events, true), Ending::Complete)
                }
                Action::ResetAfterEvents(count) => {
                    events.truncate(*count);
                    (framing.frames(&events, false), Ending::Reset)
                }
                Action::ErrorEventAfter(count) => {
                    events.truncate(*count);
                    events.push(wire::stream_error(ctx).0);
                    (framing.frames(&events, true), Ending::Complete)
                }
                _ => (framing.frames(&events, true), Ending::Complete),
            };
            Send {
                status: StatusCode::OK,
                headers,
                frames,
                content_length: None,
                ending,
                pacing,
                is_stream: true,
            }
        }
    }
}

/// An event like `template` whose data is cut mid-JSON.
fn malformed(template: Option<&Event>) -> Event {
    let data = template.map_or_else(|| "{\"id\":\"x\"}".to_owned(), |event| event.data.clone());
    let cut = data
        .char_indices()
        .nth(data.chars().count() / 2)
        .map_or(0, |(index, _)| index);
    Event {
        name: template.and_then(|event| event.name),
        data: data[..cut].to_owned(),
    }
}

fn add_headers(headers: &mut HeaderMap, behavior: &Behavior) {
    for (name, value) in &behavior.headers {
        headers.insert(name.clone(), value.clone());
    }
}

fn is_generation(endpoint: Endpoint) -> bool {
    matches!(
        endpoint,
        Endpoint::ChatCompletions
            | Endpoint::Messages
            | Endpoint::GenerateContent
            | Endpoint::StreamGenerateContent
    )
}

/// The renderer's view of the request.
pub(crate) fn context(
    seq: u64,
    route: &Route,
    body: &Value,
    query: Option<&str>,
    model: Option<String>,
) -> Ctx {
    let stream = match route.provider {
        Provider::Gemini => route.endpoint == Endpoint::StreamGenerateContent,
        _ => body["stream"] == true,
    };
    let model = match route.provider {
        // Azure names the deployment's underlying model, not the deployment.
        Provider::Azure => openai::AZURE_MODEL.to_owned(),
        _ => model.unwrap_or_else(|| "unknown".to_owned()),
    };
    Ctx {
        seq,
        route: route.clone(),
        model,
        created: SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or_default(),
        stream,
        include_usage: body["stream_options"]["include_usage"] == true,
        sse: wire::query_param(query, "alt").as_deref() == Some("sse"),
    }
}

/// OpenAI's answer to a path no provider serves.
fn not_found(parts: &Parts) -> ErrorResponse {
    ErrorResponse::json(
        404,
        &json!({"error": {"message": format!("Invalid URL ({} {})", parts.method, parts.uri.path()),
                          "type": "invalid_request_error", "param": null, "code": null}}),
    )
}

/// The mock's own endpoints; they are not recorded or counted.
fn admin(shared: &Shared, method: &Method, path: &str) -> Response<MockBody> {
    if method != Method::GET || path != "/__mock/stats" {
        return plain(StatusCode::NOT_FOUND, "unknown mock admin path");
    }
    let s = shared.stats.snapshot();
    let body = json!({
        "connections_open": s.connections_open, "connections_total": s.connections_total,
        "requests_total": s.requests_total, "requests_in_flight": s.requests_in_flight,
        "streams_active": s.streams_active, "streams_completed": s.streams_completed,
        "cancelled": s.cancelled, "resets": s.resets,
    });
    let mut response = Response::new(MockBody::full(body.to_string()));
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

fn plain(status: StatusCode, message: &'static str) -> Response<MockBody> {
    let mut response = Response::new(MockBody::full(message));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn malformed_events_do_not_parse() {
        let event =
            Event::data(&json!({"id": "chatcmpl-1", "choices": [{"delta": {"content": "héllo"}}]}));
        let broken = malformed(Some(&event));
        assert!(serde_json::from_str::<Value>(&broken.data).is_err());
    }

    #[test]
    fn framing_of_a_cut_stream_drops_the_terminator() {
        let ctx = context(
            1,
            &classify(&Method::POST, "/v1/chat/completions", &HeaderMap::new()).unwrap(),
            &json!({"stream": true}),
            None,
            Some("gpt-4o".into()),
        );
        let reply = reply::plan(
            &Default::default(),
            &Behavior::text("a b c"),
            &Default::default(),
        );
        let send = deliver(
            &ctx,
            wire::answer(&ctx, &reply),
            &Action::ResetAfterEvents(2),
            HeaderMap::new(),
            Pacing::default(),
        );
        assert_eq!(send.frames.len(), 2);
        assert_eq!(send.ending, Ending::Reset);
        assert!(!send.frames.concat().ends_with(b"data: [DONE]\n\n"));
    }
}
