//! Upstream base URLs: each provider's public default, and the checks a configured endpoint must pass.
//!
//! A base URL is what the provider's official SDK calls its base URL, so the value a user would paste
//! into an SDK also works here; provider adapters append their paths to it:
//! OpenAI and OpenAI-compatible `{base}/chat/completions`, Azure `{base}/openai/deployments/...`,
//! Anthropic `{base}/v1/messages`, Gemini `{base}/models/{model}:generateContent`.

use super::problems::Problems;
use crate::v1alpha1::Provider;

/// OpenAI's API, version path included.
pub const OPENAI_ENDPOINT: &str = "https://api.openai.com/v1";
/// Anthropic's API; the adapter adds `/v1/messages`.
pub const ANTHROPIC_ENDPOINT: &str = "https://api.anthropic.com";
/// Gemini's Generative Language API, version path included.
pub const GEMINI_ENDPOINT: &str = "https://generativelanguage.googleapis.com/v1beta";

/// The public endpoint of `provider`; `None` for providers that only exist at a user's address.
pub fn default_endpoint(provider: Provider) -> Option<&'static str> {
    match provider {
        Provider::Openai => Some(OPENAI_ENDPOINT),
        Provider::Anthropic => Some(ANTHROPIC_ENDPOINT),
        Provider::Gemini => Some(GEMINI_ENDPOINT),
        Provider::AzureOpenai | Provider::OpenaiCompatible => None,
    }
}

/// The base URL a backend uses: the configured one without a trailing `/`, or the provider default.
pub(super) fn resolve(
    field: &str,
    provider: Provider,
    configured: Option<&str>,
    problems: &mut Problems,
) -> String {
    match configured {
        Some(url) => {
            if let Err(why) = check(url) {
                problems.invalid(field, format!("{why}, got {url:?}"));
            }
            url.trim_end_matches('/').to_owned()
        }
        None => match default_endpoint(provider) {
            Some(url) => url.to_owned(),
            None => {
                problems.invalid(
                    field,
                    format!("provider {} needs an endpoint", provider.as_str()),
                );
                String::new()
            }
        },
    }
}

/// An absolute `http` or `https` URL with a host and no query, fragment or whitespace.
fn check(url: &str) -> Result<(), &'static str> {
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"))
        .ok_or("must start with https:// or http://")?;
    if url.chars().any(char::is_whitespace) {
        return Err("must not contain whitespace");
    }
    if url.contains(['?', '#']) {
        return Err("must not carry a query or fragment");
    }
    let authority = rest.split('/').next().unwrap_or_default();
    let host = authority
        .rsplit_once('@')
        .map_or(authority, |(_, host)| host);
    if authority.contains('@') {
        return Err("must not carry credentials; use credentialsRef");
    }
    if host.is_empty() || host.starts_with(':') {
        return Err("must name a host");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_default_per_provider_or_are_required() {
        let cases = [
            (Provider::Openai, None, Ok("https://api.openai.com/v1")),
            (Provider::Anthropic, None, Ok("https://api.anthropic.com")),
            (
                Provider::Gemini,
                None,
                Ok("https://generativelanguage.googleapis.com/v1beta"),
            ),
            (
                Provider::AzureOpenai,
                None,
                Err("spec.e: provider azure-openai needs an endpoint"),
            ),
            (
                Provider::OpenaiCompatible,
                None,
                Err("spec.e: provider openai-compatible needs an endpoint"),
            ),
            (
                Provider::OpenaiCompatible,
                Some("http://vllm:8000/v1/"),
                Ok("http://vllm:8000/v1"),
            ),
            (
                Provider::Openai,
                Some("https://proxy.internal/v1"),
                Ok("https://proxy.internal/v1"),
            ),
            (
                Provider::Openai,
                Some("ftp://x"),
                Err("spec.e: must start with https:// or http://, got \"ftp://x\""),
            ),
            (
                Provider::Openai,
                Some("https:// x"),
                Err("spec.e: must not contain whitespace, got \"https:// x\""),
            ),
            (
                Provider::Openai,
                Some("https://x/v1?key=1"),
                Err("spec.e: must not carry a query or fragment, got \"https://x/v1?key=1\""),
            ),
            (
                Provider::Openai,
                Some("https://u:p@x"),
                Err(
                    "spec.e: must not carry credentials; use credentialsRef, got \"https://u:p@x\"",
                ),
            ),
            (
                Provider::Openai,
                Some("https://:8080"),
                Err("spec.e: must name a host, got \"https://:8080\""),
            ),
        ];
        for (provider, configured, expected) in cases {
            let mut problems = Problems::new();
            let url = resolve("spec.e", provider, configured, &mut problems);
            match (problems.into_result(), expected) {
                (Ok(()), Ok(want)) => assert_eq!(url, want),
                (Err(problem), Err(want)) => assert_eq!(problem.message, want),
                (got, want) => panic!("{configured:?}: got {got:?}, want {want:?}"),
            }
        }
    }
}
