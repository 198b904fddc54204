//! `GET /v1/models`: the model names (route models and aliases) the caller's key may use — in OpenAI's
//! shape, or Anthropic's when the request carries `anthropic-version` (as the Anthropic SDKs send).

use http::{HeaderMap, Response};
use serde::Serialize;

use crate::api::openai::{Model, ModelList};
use crate::app::{Exchange, ok_json};
use crate::body::ResponseBody;
use crate::config::RuntimeConfig;

/// `owned_by` of every listed model.
const OWNER: &str = "sluice";

#[derive(Serialize)]
struct AnthropicModel<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    id: &'a str,
    display_name: &'a str,
    created_at: String,
}

#[derive(Serialize)]
struct AnthropicModelList<'a> {
    data: Vec<AnthropicModel<'a>>,
    has_more: bool,
    first_id: Option<&'a str>,
    last_id: Option<&'a str>,
}

/// The names the key may call, in route order.
pub fn visible_models<'a>(config: &'a RuntimeConfig, exchange: &Exchange) -> Vec<&'a str> {
    let Some(key) = &exchange.key else {
        return Vec::new();
    };
    config
        .routes
        .iter()
        .filter(|route| key.may_use(&route.id))
        .flat_map(|route| {
            std::iter::once(route.config.model.as_str())
                .chain(route.config.aliases.iter().map(String::as_str))
        })
        .collect()
}

/// Serves the list.
pub fn list(
    exchange: Exchange,
    config: &RuntimeConfig,
    headers: &HeaderMap,
) -> Response<ResponseBody> {
    let names = visible_models(config, &exchange);
    let body = if headers.contains_key("anthropic-version") {
        let created_at = chrono::DateTime::from_timestamp(config.built_at as i64, 0)
            .unwrap_or_default()
            .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        let data: Vec<AnthropicModel<'_>> = names
            .iter()
            .map(|name| AnthropicModel {
                kind: "model",
                id: name,
                display_name: name,
                created_at: created_at.clone(),
            })
            .collect();
        serde_json::to_vec(&AnthropicModelList {
            has_more: false,
            first_id: names.first().copied(),
            last_id: names.last().copied(),
            data,
        })
    } else {
        serde_json::to_vec(&ModelList::new(
            names
                .iter()
                .map(|name| Model::new(*name, config.built_at, OWNER))
                .collect(),
        ))
    };
    let response = ok_json(&exchange, body.unwrap_or_default());
    exchange.finish(200, None, true, None);
    response
}
