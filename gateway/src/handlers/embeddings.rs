//! `POST /v1/embeddings`.

use std::sync::Arc;

use bytes::Bytes;
use http::Response;

use crate::api::openai::{EmbeddingsRequest, Usage};
use crate::api::parse_embeddings_request;
use crate::app::{Exchange, candidates, ok_json, resolve_route};
use crate::body::ResponseBody;
use crate::config::{Route, RuntimeConfig};
use crate::error::GatewayError;
use crate::metering::{Admission, Prompt};
use crate::upstream::dispatch::Dispatch;

fn prepare(
    exchange: &mut Exchange,
    config: &RuntimeConfig,
    bytes: &[u8],
) -> Result<(EmbeddingsRequest, Arc<Route>, Vec<usize>), GatewayError> {
    let mut request = parse_embeddings_request(bytes)?;
    let key = exchange.key.clone().ok_or(GatewayError::Internal(
        "embeddings handler without a key".into(),
    ))?;
    let route = resolve_route(config, &key, &request.model)?;
    exchange.route = Some(route.clone());
    crate::guardrails::screen_embeddings(&exchange.app.metrics.policy, &route, &key, &mut request)?;
    let candidates = candidates(&route, &key, None)?;
    let admitted = exchange.app.meter.admit(&Admission {
        request_id: exchange.request_id(),
        key: &key,
        route: &route,
        budgets: &config.budgets,
        prompt: Prompt::Embeddings(&request),
        max_output_tokens: None,
        streaming: false,
    })?;
    exchange.admit(admitted);
    Ok((request, route, candidates))
}

/// Serves one embeddings request.
pub async fn handle(
    mut exchange: Exchange,
    config: Arc<RuntimeConfig>,
    bytes: Bytes,
) -> Response<ResponseBody> {
    let (request, route, candidates) = match prepare(&mut exchange, &config, &bytes) {
        Ok(prepared) => prepared,
        Err(error) => return exchange.fail(error),
    };
    let app = exchange.app.clone();
    let attempted = Dispatch {
        route: &route,
        candidates: &candidates,
        deadline: tokio::time::Instant::now() + route.timeouts.total,
        request_id: exchange.request_id(),
        metrics: &app.metrics,
    }
    .embeddings(&request)
    .await;
    exchange.set_dispatched(attempted.backend, attempted.attempts);
    match attempted.result {
        Err(error) => exchange.fail(error),
        Ok(outcome) => {
            let usage = Usage {
                prompt_tokens: outcome.usage.prompt_tokens,
                total_tokens: outcome.usage.total_tokens,
                ..Usage::default()
            };
            let response = ok_json(&exchange, outcome.body);
            exchange.finish(200, Some(&usage), true, None);
            response
        }
    }
}
