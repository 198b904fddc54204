//! Realistic, deterministic inputs of a chosen size for scale tests and the compile benchmark: routes
//! with an OpenAI primary and an Anthropic fallback, generated keys scoped to a few models with a rate
//! limit and a team budget, spread over team namespaces the way a large cluster would be.

use chrono::{DateTime, Utc};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use super::{Inputs, KEY_DATA_CURRENT, KEY_PREFIX, SecretStore, generated_key_secret_name};
use crate::config::hash_key;
use crate::v1alpha1::{
    Backend, Budget, BudgetRef, BudgetSpec, LLMRoute, LLMRouteSpec, Provider, RateLimit,
    SecretKeyRef, VirtualKey, VirtualKeySpec,
};

/// Teams (namespaces) the resources are spread over.
const TEAMS: usize = 20;
/// Name of each team's provider-key Secret.
const PROVIDER_SECRET: &str = "provider-keys";

/// A generated set of resources and Secrets.
#[derive(Debug, Clone)]
pub struct Synthetic {
    pub gateway: String,
    pub routes: Vec<LLMRoute>,
    pub keys: Vec<VirtualKey>,
    pub budgets: Vec<Budget>,
    pub secrets: SecretStore,
}

impl Synthetic {
    /// `routes` routes and `keys` keys (plus one budget and one provider Secret per team) for `gateway`.
    pub fn new(gateway: &str, routes: usize, keys: usize) -> Self {
        let teams = TEAMS.min(routes.max(keys)).max(1);
        let mut secrets = SecretStore::new();
        for t in 0..teams {
            let data = [
                (
                    "openai".to_owned(),
                    format!("sk-openai-{t:04}").into_bytes(),
                ),
                (
                    "anthropic".to_owned(),
                    format!("sk-ant-{t:04}").into_bytes(),
                ),
            ];
            secrets.insert(team(t), PROVIDER_SECRET, data.into());
        }
        let budgets = (0..teams).map(|t| budget(gateway, t)).collect();
        let routes: Vec<LLMRoute> = (0..routes).map(|i| route(gateway, i, teams)).collect();
        let keys = (0..keys)
            .map(|i| {
                let key = virtual_key(gateway, i, teams, routes_per_team(routes.len(), teams));
                let namespace = team(i % teams);
                let value = format!("{KEY_PREFIX}{}", hash_key(&format!("synthetic-key-{i}")));
                let data = [(KEY_DATA_CURRENT.to_owned(), value.into_bytes())];
                secrets.insert(
                    namespace,
                    generated_key_secret_name(&format!("key-{i:05}")),
                    data.into(),
                );
                key
            })
            .collect();
        Self {
            gateway: gateway.to_owned(),
            routes,
            keys,
            budgets,
            secrets,
        }
    }

    /// The compiler's view of this set.
    pub fn inputs(&self, now: DateTime<Utc>) -> Inputs<'_> {
        Inputs {
            gateway: &self.gateway,
            routes: &self.routes,
            keys: &self.keys,
            budgets: &self.budgets,
            secrets: &self.secrets,
            now,
        }
    }
}

fn team(t: usize) -> String {
    format!("team-{t:02}")
}

fn routes_per_team(routes: usize, teams: usize) -> usize {
    routes.div_ceil(teams)
}

fn meta(name: String, namespace: String) -> ObjectMeta {
    ObjectMeta {
        name: Some(name),
        namespace: Some(namespace),
        ..ObjectMeta::default()
    }
}

fn secret_ref(key: &str) -> Option<SecretKeyRef> {
    Some(SecretKeyRef {
        name: PROVIDER_SECRET.to_owned(),
        key: key.to_owned(),
        namespace: None,
    })
}

fn backend(name: &str, provider: Provider, model: &str, priority: i32) -> Backend {
    Backend {
        name: name.to_owned(),
        provider,
        model: model.to_owned(),
        endpoint: None,
        credentials_ref: secret_ref(if provider == Provider::Anthropic {
            "anthropic"
        } else {
            "openai"
        }),
        weight: 1,
        priority,
        region: Some("us".to_owned()),
        context_window: Some(128_000),
        pricing: None,
        azure: None,
    }
}

fn route(gateway: &str, i: usize, teams: usize) -> LLMRoute {
    let spec = LLMRouteSpec {
        gateway: gateway.to_owned(),
        model: format!("model-{i:05}"),
        aliases: vec![format!("alias-{i:05}")],
        strategy: Default::default(),
        backends: vec![
            backend("openai", Provider::Openai, "gpt-4o-mini", 0),
            backend("anthropic", Provider::Anthropic, "claude-haiku-4-5", 1),
        ],
        retry: Default::default(),
        timeouts: Default::default(),
        circuit_breaker: Default::default(),
        hedge: None,
        cache: None,
        rate_limit: Some(RateLimit {
            requests_per_minute: Some(6_000),
            tokens_per_minute: None,
        }),
        budget_refs: vec![BudgetRef {
            name: "monthly".to_owned(),
        }],
        defaults: None,
        overrides: None,
        system_prompt_prefix: None,
        pii_redaction: None,
        allowed_regions: vec![],
        guardrails: None,
        stickiness: None,
        shadow: None,
    };
    LLMRoute {
        metadata: meta(format!("route-{i:05}"), team(i % teams)),
        spec,
        status: None,
    }
}

fn virtual_key(gateway: &str, i: usize, teams: usize, routes_per_team: usize) -> VirtualKey {
    // Three of the team's routes (route j belongs to team j % teams).
    let models = (0..3)
        .map(|m| {
            format!(
                "model-{:05}",
                (i % teams) + teams * ((i / teams + m) % routes_per_team.max(1))
            )
        })
        .collect();
    let spec = VirtualKeySpec {
        gateway: gateway.to_owned(),
        description: Some(format!("synthetic key {i}")),
        models,
        denied_models: vec![],
        guardrails: None,
        allowed_regions: vec![],
        rate_limit: Some(RateLimit {
            requests_per_minute: Some(600),
            tokens_per_minute: Some(200_000),
        }),
        budget_refs: vec![BudgetRef {
            name: "monthly".to_owned(),
        }],
        expires_at: None,
        disabled: false,
        secret_ref: None,
        rotation: None,
    };
    VirtualKey {
        metadata: meta(format!("key-{i:05}"), team(i % teams)),
        spec,
        status: None,
    }
}

fn budget(gateway: &str, t: usize) -> Budget {
    let spec = BudgetSpec {
        gateway: gateway.to_owned(),
        limit_usd: 10_000.0,
        token_limit: None,
        window: Default::default(),
        time_zone: "Europe/Berlin".to_owned(),
        thresholds: vec![50, 80, 100],
        action: Default::default(),
        stop_streams: false,
        failure_mode: Default::default(),
    };
    Budget {
        metadata: meta("monthly".to_owned(), team(t)),
        spec,
        status: None,
    }
}
