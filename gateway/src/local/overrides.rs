//! Local mode's endpoint overrides: `PROVIDER=URL` pairs that send every backend of a provider to another
//! base URL (a mock provider, a local vLLM or Ollama), so manifests written for the real providers run on a
//! laptop unchanged.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use sluice_crds::manifests::Manifests;
use sluice_crds::v1alpha1::Provider;

/// Every provider, for parsing and messages.
const PROVIDERS: [Provider; 5] = [
    Provider::Openai,
    Provider::AzureOpenai,
    Provider::Anthropic,
    Provider::Gemini,
    Provider::OpenaiCompatible,
];

/// One `PROVIDER=URL` pair. The URL is a base URL exactly as a backend's `endpoint` field takes it
/// (OpenAI and OpenAI-compatible: including `/v1`; Anthropic, Gemini, Azure: the bare host).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndpointOverride {
    pub provider: Provider,
    pub url: String,
}

/// Why a `PROVIDER=URL` pair was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OverrideError {
    #[error("expected PROVIDER=URL, got {0:?}")]
    Shape(String),
    #[error("unknown provider {provider:?} (one of: {known})")]
    Provider { provider: String, known: String },
    #[error("{0:?} is not an http(s) URL")]
    Url(String),
}

impl FromStr for EndpointOverride {
    type Err = OverrideError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let (provider, url) = text
            .split_once('=')
            .ok_or_else(|| OverrideError::Shape(text.to_owned()))?;
        let (provider, url) = (provider.trim(), url.trim());
        let provider = PROVIDERS
            .into_iter()
            .find(|known| known.as_str() == provider)
            .ok_or_else(|| OverrideError::Provider {
                provider: provider.to_owned(),
                known: PROVIDERS.map(Provider::as_str).join(", "),
            })?;
        let valid = url.parse::<http::Uri>().is_ok_and(|uri| {
            matches!(uri.scheme_str(), Some("http" | "https")) && uri.host().is_some()
        });
        if !valid {
            return Err(OverrideError::Url(url.to_owned()));
        }
        Ok(Self {
            provider,
            url: url.trim_end_matches('/').to_owned(),
        })
    }
}

impl fmt::Display for EndpointOverride {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(formatter, "{}={}", self.provider.as_str(), self.url)
    }
}

/// The overrides in effect, by provider (a later pair for the same provider wins).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EndpointOverrides(BTreeMap<&'static str, String>);

impl EndpointOverrides {
    pub fn new(pairs: impl IntoIterator<Item = EndpointOverride>) -> Self {
        Self(
            pairs
                .into_iter()
                .map(|pair| (pair.provider.as_str(), pair.url))
                .collect(),
        )
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Points every backend of an overridden provider at its override — shadow backends included, so a
    /// laptop never mirrors traffic to a real provider — and returns how many were changed.
    pub fn apply(&self, manifests: &mut Manifests) -> usize {
        let mut changed = 0;
        for backend in manifests.routes.iter_mut().flat_map(|route| {
            let shadow = route.spec.shadow.as_mut().map(|shadow| &mut shadow.backend);
            route.spec.backends.iter_mut().chain(shadow)
        }) {
            if let Some(url) = self.0.get(backend.provider.as_str()) {
                backend.endpoint = Some(url.clone());
                changed += 1;
            }
        }
        changed
    }

    /// `provider=url` pairs, for the start-up log line.
    pub fn describe(&self) -> String {
        self.0
            .iter()
            .map(|(provider, url)| format!("{provider}={url}"))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pairs_are_parsed_and_checked() {
        let pair: EndpointOverride = "openai=http://127.0.0.1:9000/v1/".parse().unwrap();
        assert_eq!(pair.provider, Provider::Openai);
        assert_eq!(pair.url, "http://127.0.0.1:9000/v1");
        assert_eq!(pair.to_string(), "openai=http://127.0.0.1:9000/v1");
        let azure: EndpointOverride = " azure-openai = https://localhost:8443 ".parse().unwrap();
        assert_eq!(azure.provider, Provider::AzureOpenai);

        assert!(matches!(
            "openai".parse::<EndpointOverride>(),
            Err(OverrideError::Shape(_))
        ));
        let unknown = "bedrock=http://x".parse::<EndpointOverride>().unwrap_err();
        assert!(
            unknown.to_string().contains("openai-compatible"),
            "{unknown}"
        );
        for url in ["localhost:9000", "ftp://host", "http://"] {
            assert_eq!(
                format!("gemini={url}").parse::<EndpointOverride>(),
                Err(OverrideError::Url(url.to_owned())),
                "{url}"
            );
        }
    }

    #[test]
    fn every_backend_of_an_overridden_provider_is_redirected() {
        let yaml = r#"
apiVersion: sluice.dev/v1alpha1
kind: LLMRoute
metadata: {name: chat, namespace: team}
spec:
  model: chat
  backends:
    - {name: a, provider: openai, model: gpt-4o, credentialsRef: {name: s, key: k}}
    - {name: b, provider: anthropic, model: claude, endpoint: "https://api.anthropic.com", credentialsRef: {name: s, key: k}}
    - {name: c, provider: gemini, model: gemini-2.0-flash, credentialsRef: {name: s, key: k}}
  shadow:
    percent: 5
    backend: {name: s, provider: openai, model: gpt-4o-mini, credentialsRef: {name: s, key: k}}
"#;
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("route.yaml"), yaml).unwrap();
        let mut manifests = sluice_crds::manifests::load_dir(dir.path()).unwrap();
        let overrides = EndpointOverrides::new([
            "openai=http://127.0.0.1:1/v1".parse().unwrap(),
            "anthropic=http://127.0.0.1:2".parse().unwrap(),
            "anthropic=http://127.0.0.1:3".parse().unwrap(),
        ]);
        assert_eq!(overrides.apply(&mut manifests), 3);
        let shadow = manifests.routes[0].spec.shadow.as_ref().unwrap();
        assert_eq!(
            shadow.backend.endpoint.as_deref(),
            Some("http://127.0.0.1:1/v1")
        );
        let endpoints: Vec<Option<&str>> = manifests.routes[0]
            .spec
            .backends
            .iter()
            .map(|backend| backend.endpoint.as_deref())
            .collect();
        assert_eq!(
            endpoints,
            [
                Some("http://127.0.0.1:1/v1"),
                Some("http://127.0.0.1:3"),
                None
            ]
        );
        assert_eq!(
            overrides.describe(),
            "anthropic=http://127.0.0.1:3, openai=http://127.0.0.1:1/v1"
        );
    }
}
