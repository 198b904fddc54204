//! Request policy of a route and a key: token caps, model deny lists, blocked patterns and PII, enforced
//! before anything is admitted or sent upstream, and the refusals they produce (also data residency's).

use http::StatusCode;
use sluice_crds::config::{KeyConfig, RouteConfig};
use sluice_crds::v1alpha1::PiiMode;

use crate::api::openai::{ChatRequest, EmbeddingsRequest};
use crate::auth::Key;
use crate::config::Route;
use crate::error::{GatewayError, Rendered};
use crate::pii::{BlockedPatterns, GuardrailBlocked, PiiBlocked, PiiError, Redactor, Tally};
use crate::policy_metrics::{Direction, PolicyMetrics};

/// Characters per token of the prompt estimate: OpenAI's rule of thumb for English text. An estimate is
/// all a gateway can have without each provider's tokenizer; it errs high for code and CJK text.
const CHARS_PER_TOKEN: u64 = 4;
/// Tokens every message costs for its role and framing.
const TOKENS_PER_MESSAGE: u64 = 4;

/// A route's compiled request policy. Built once per configuration snapshot (regexes compile there).
#[derive(Debug, Default)]
pub struct RoutePolicy {
    pub redactor: Option<Redactor>,
    pub blocked: Option<BlockedPatterns>,
    pub max_prompt_tokens: Option<u64>,
    pub max_tokens: Option<u32>,
}

impl RoutePolicy {
    /// Compiles the route's PII policy and guardrails.
    pub fn build(config: &RouteConfig) -> Result<Self, PiiError> {
        let redactor = config.pii.as_ref().map(Redactor::new).transpose()?;
        let guardrails = config.guardrails.clone().unwrap_or_default();
        let blocked = if guardrails.blocked_patterns.is_empty() {
            None
        } else {
            Some(BlockedPatterns::new(
                guardrails
                    .blocked_patterns
                    .iter()
                    .map(|pattern| (pattern.name.clone(), pattern.regex.as_str())),
            )?)
        };
        Ok(Self {
            redactor,
            blocked,
            max_prompt_tokens: guardrails.max_prompt_tokens,
            max_tokens: guardrails.max_tokens,
        })
    }

    /// Enforces the policy on a request whose route parameters are applied, in this order: the
    /// `max_tokens` cap (filled in when the request has none), the prompt cap, blocked patterns (on the
    /// caller's own text), then PII (masked in place in `redact` mode). Returns the PII found.
    pub fn enforce(
        &self,
        key: &KeyConfig,
        request: &mut ChatRequest,
    ) -> Result<Tally, PolicyError> {
        if let Some(limit) = lower(self.max_tokens, key.max_tokens) {
            match request.max_output_tokens() {
                Some(requested) if requested > limit => {
                    return Err(PolicyError::MaxTokensTooHigh { requested, limit });
                }
                Some(_) => {}
                None => request.max_completion_tokens = Some(limit),
            }
        }
        if let Some(limit) = lower(self.max_prompt_tokens, key.max_prompt_tokens) {
            let estimated = estimate_prompt_tokens(request);
            if estimated > limit {
                return Err(PolicyError::PromptTooLong { estimated, limit });
            }
        }
        if let Some(blocked) = &self.blocked {
            blocked
                .check_request(request)
                .map_err(PolicyError::BlockedPattern)?;
        }
        match &self.redactor {
            Some(redactor) => redactor.inspect_request(request).map_err(PolicyError::Pii),
            None => Ok(Tally::default()),
        }
    }
}

/// The embeddings endpoint's share of the policy: the key's deny list and the route's PII mode (caps and
/// blocked patterns concern chat prompts). Findings are counted like chat requests'.
pub fn screen_embeddings(
    metrics: &PolicyMetrics,
    route: &Route,
    key: &Key,
    request: &mut EmbeddingsRequest,
) -> Result<(), GatewayError> {
    if model_denied(&key.config, &route.config, &request.model) {
        return Err(GatewayError::ModelNotAllowed {
            model: request.model.clone(),
        });
    }
    let Some(redactor) = &route.policy.redactor else {
        return Ok(());
    };
    let (tally, refusal) = match redactor.inspect_embeddings(request) {
        Ok(tally) => (tally, None),
        Err(blocked) => (blocked.tally().clone(), Some(blocked)),
    };
    metrics.record_pii(
        &route.id,
        Direction::Request,
        pii_mode_label(redactor.mode()),
        &tally,
    );
    match refusal {
        Some(blocked) => Err(PolicyError::Pii(blocked).into()),
        None => Ok(()),
    }
}

/// A PII mode as a metric label.
pub fn pii_mode_label(mode: PiiMode) -> &'static str {
    match mode {
        PiiMode::Redact => "redact",
        PiiMode::Block => "block",
        PiiMode::DetectOnly => "detect-only",
    }
}

/// The lower of two optional caps.
fn lower<T: Ord>(a: Option<T>, b: Option<T>) -> Option<T> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// Whether the key's deny list names the route (by its model or any alias) or the name the caller used.
pub fn model_denied(key: &KeyConfig, route: &RouteConfig, requested: &str) -> bool {
    key.denied_models.iter().any(|denied| {
        denied == requested || *denied == route.model || route.aliases.contains(denied)
    })
}

/// Estimated prompt tokens: message texts and tool definitions at [`CHARS_PER_TOKEN`], plus a fixed cost
/// per message.
pub fn estimate_prompt_tokens(request: &ChatRequest) -> u64 {
    let text_chars: usize = request
        .messages
        .iter()
        .flat_map(crate::pii::message_texts)
        .map(|text| text.chars().count())
        .sum();
    let tool_chars = request
        .tools
        .as_ref()
        .and_then(|tools| serde_json::to_string(tools).ok())
        .map_or(0, |json| json.len());
    let chars = (text_chars + tool_chars) as u64;
    chars.div_ceil(CHARS_PER_TOKEN) + TOKENS_PER_MESSAGE * request.messages.len() as u64
}

/// A request refused by policy. Messages name the rule, never the request's text.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    #[error("{0}")]
    Pii(PiiBlocked),
    #[error("{0}")]
    BlockedPattern(GuardrailBlocked),
    #[error("prompt of about {estimated} tokens exceeds the limit of {limit}")]
    PromptTooLong { estimated: u64, limit: u64 },
    #[error("max_tokens {requested} exceeds the limit of {limit}")]
    MaxTokensTooHigh { requested: u32, limit: u32 },
    /// Every backend in the allowed regions failed; the others may not be used.
    #[error("no backend in the allowed regions of route {route} could serve the request ({cause})")]
    RegionUnavailable {
        route: String,
        regions: Vec<String>,
        cause: &'static str,
    },
}

impl PolicyError {
    /// Stable label for `sluice_errors_total{class}`.
    pub fn metric_label(&self) -> &'static str {
        match self {
            PolicyError::Pii(_) => "pii_blocked",
            PolicyError::BlockedPattern(_) => "blocked_pattern",
            PolicyError::PromptTooLong { .. } => "prompt_too_long",
            PolicyError::MaxTokensTooHigh { .. } => "max_tokens_too_high",
            PolicyError::RegionUnavailable { .. } => "region_unavailable",
        }
    }

    /// Whether the caller's request caused it (everything but a residency failure).
    pub fn is_client_fault(&self) -> bool {
        !matches!(self, PolicyError::RegionUnavailable { .. })
    }

    /// Status, message and OpenAI type/code.
    pub fn render(&self) -> Rendered {
        let invalid = |message: String, code, param| Rendered {
            status: StatusCode::BAD_REQUEST,
            message,
            openai_type: "invalid_request_error",
            code: Some(code),
            param,
        };
        match self {
            PolicyError::Pii(blocked) => invalid(blocked.to_string(), PiiBlocked::CODE, None),
            PolicyError::BlockedPattern(blocked) => invalid(
                format!("{blocked}; rephrase the request"),
                GuardrailBlocked::CODE,
                Some("messages"),
            ),
            PolicyError::PromptTooLong { estimated, limit } => invalid(
                format!(
                    "The prompt is about {estimated} tokens, above this gateway's limit of {limit} tokens for this model and key; shorten it."
                ),
                "prompt_too_long",
                Some("messages"),
            ),
            PolicyError::MaxTokensTooHigh { requested, limit } => invalid(
                format!(
                    "max_tokens is {requested}, above this gateway's limit of {limit} for this model and key; ask for at most {limit}."
                ),
                "max_tokens_too_high",
                Some("max_tokens"),
            ),
            PolicyError::RegionUnavailable { regions, cause, .. } => Rendered {
                status: StatusCode::SERVICE_UNAVAILABLE,
                message: format!(
                    "No backend in the allowed regions ({}) can serve this request right now ({cause}); it was not sent to any other region. Retry later.",
                    regions.join(", ")
                ),
                openai_type: "server_error",
                code: Some("region_unavailable"),
                param: None,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use sluice_crds::config::GuardrailsConfig;
    use sluice_crds::v1alpha1::{PiiMode, PiiPattern};

    use super::*;

    fn request(text: &str, max_tokens: Option<u32>) -> ChatRequest {
        let mut value =
            serde_json::json!({"model": "m", "messages": [{"role": "user", "content": text}]});
        if let Some(max) = max_tokens {
            value["max_tokens"] = max.into();
        }
        serde_json::from_value(value).unwrap()
    }

    fn route(guardrails: GuardrailsConfig, pii: Option<PiiMode>) -> RouteConfig {
        let mut config: RouteConfig = serde_json::from_value(serde_json::json!({
            "id": "ns/r", "model": "gpt", "aliases": ["fast"], "strategy": "priority-failover",
            "backends": [],
            "retry": {"attempts": 1, "retryOn": [], "initialBackoffMs": 1, "maxBackoffMs": 1,
                      "retryAfterCapMs": 1, "budgetPercent": 0},
            "timeouts": {"connectMs": 1, "firstByteMs": 1, "idleMs": 1, "totalMs": 1},
        }))
        .unwrap();
        config.guardrails = Some(guardrails);
        config.pii = pii.map(|mode| sluice_crds::config::PiiConfig {
            mode,
            entities: vec![sluice_crds::v1alpha1::PiiEntity::Email],
            custom_patterns: vec![],
            responses: false,
        });
        config
    }

    fn key(max_tokens: Option<u32>, max_prompt_tokens: Option<u64>, denied: &[&str]) -> KeyConfig {
        serde_json::from_value(serde_json::json!({
            "id": "ns/k", "prefix": "sk", "maxTokens": max_tokens,
            "maxPromptTokens": max_prompt_tokens, "deniedModels": denied,
        }))
        .unwrap()
    }

    #[test]
    fn caps_take_the_lower_of_route_and_key_and_fill_in_a_missing_max_tokens() {
        let policy = RoutePolicy::build(&route(
            GuardrailsConfig {
                max_tokens: Some(500),
                max_prompt_tokens: Some(1_000),
                blocked_patterns: vec![],
            },
            None,
        ))
        .unwrap();
        let mut missing = request("hi", None);
        policy.enforce(&key(None, None, &[]), &mut missing).unwrap();
        assert_eq!(missing.max_output_tokens(), Some(500));
        let mut missing = request("hi", None);
        policy
            .enforce(&key(Some(100), None, &[]), &mut missing)
            .unwrap();
        assert_eq!(
            missing.max_output_tokens(),
            Some(100),
            "the key's lower cap wins"
        );
        let error = policy
            .enforce(&key(Some(100), None, &[]), &mut request("hi", Some(101)))
            .unwrap_err();
        assert!(matches!(
            error,
            PolicyError::MaxTokensTooHigh {
                requested: 101,
                limit: 100
            }
        ));
        assert_eq!(error.render().status, StatusCode::BAD_REQUEST);
        assert_eq!(error.render().param, Some("max_tokens"));
        policy
            .enforce(&key(None, None, &[]), &mut request("hi", Some(500)))
            .unwrap();

        let long = "word ".repeat(1_000);
        let error = policy
            .enforce(&key(None, None, &[]), &mut request(&long, None))
            .unwrap_err();
        assert!(
            matches!(error, PolicyError::PromptTooLong { limit: 1_000, .. }),
            "{error}"
        );
        policy
            .enforce(
                &key(None, None, &[]),
                &mut request(&"word ".repeat(100), None),
            )
            .unwrap();
        let error = policy
            .enforce(
                &key(None, Some(50), &[]),
                &mut request(&"word ".repeat(100), None),
            )
            .unwrap_err();
        assert!(matches!(
            error,
            PolicyError::PromptTooLong { limit: 50, .. }
        ));
    }

    #[test]
    fn blocked_patterns_are_checked_before_pii_is_masked_and_never_echo_text() {
        let policy = RoutePolicy::build(&route(
            GuardrailsConfig {
                blocked_patterns: vec![PiiPattern {
                    name: "codename".into(),
                    regex: "(?i)project nightingale".into(),
                }],
                ..GuardrailsConfig::default()
            },
            Some(PiiMode::Redact),
        ))
        .unwrap();
        let error = policy
            .enforce(
                &key(None, None, &[]),
                &mut request("status of Project Nightingale?", None),
            )
            .unwrap_err();
        let rendered = error.render();
        assert_eq!(rendered.code, Some(GuardrailBlocked::CODE));
        assert!(
            rendered.message.contains("codename"),
            "{}",
            rendered.message
        );
        assert!(!rendered.message.to_lowercase().contains("nightingale"));

        let mut masked = request("mail me at jane@example.com", None);
        let tally = policy.enforce(&key(None, None, &[]), &mut masked).unwrap();
        assert_eq!(tally.total(), 1);
        let text = crate::pii::message_texts(&masked.messages[0]).collect::<String>();
        assert!(!text.contains("jane@example.com"), "{text}");
    }

    #[test]
    fn pii_block_mode_refuses_with_400() {
        let policy =
            RoutePolicy::build(&route(GuardrailsConfig::default(), Some(PiiMode::Block))).unwrap();
        let error = policy
            .enforce(
                &key(None, None, &[]),
                &mut request("jane@example.com", None),
            )
            .unwrap_err();
        let rendered = error.render();
        assert_eq!(rendered.status, StatusCode::BAD_REQUEST);
        assert_eq!(rendered.code, Some("pii_detected"));
        assert!(!rendered.message.contains("jane@"));
    }

    #[test]
    fn deny_lists_cover_every_name_of_a_route() {
        let config = route(GuardrailsConfig::default(), None);
        for (denied, requested, expected) in [
            (&["gpt"][..], "fast", true),
            (&["fast"][..], "gpt", true),
            (&["other"][..], "gpt", false),
            (&[][..], "gpt", false),
        ] {
            assert_eq!(
                model_denied(&key(None, None, denied), &config, requested),
                expected,
                "{denied:?} {requested}"
            );
        }
    }

    #[test]
    fn residency_failures_are_503_and_name_the_regions() {
        let error = PolicyError::RegionUnavailable {
            route: "ns/r".into(),
            regions: vec!["eu".into()],
            cause: "upstream_connect",
        };
        let rendered = error.render();
        assert_eq!(rendered.status, StatusCode::SERVICE_UNAVAILABLE);
        assert!(rendered.message.contains("(eu)"), "{}", rendered.message);
        assert!(!error.is_client_fault());
    }
}
