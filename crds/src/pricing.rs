//! Built-in list prices of well-known hosted models, used when a backend does not set `pricing`.
//!
//! Prices are US dollars per million tokens at the providers' standard (on-demand, non-batch) tier,
//! taken from their public pricing pages (platform.openai.com/docs/pricing, claude.com/pricing,
//! ai.google.dev/gemini-api/docs/pricing) as listed in late 2025 / early 2026. Where a provider
//! charges more for long prompts (Gemini 2.5 Pro above 200k tokens), the table holds the short-prompt
//! tier. "Cached input" is the price of a prompt-cache read (OpenAI cached input, Anthropic cache
//! read, Gemini context-cache hit); cache writes and storage are not modelled.
//!
//! Prices change: a route's `backends[].pricing` always overrides this table, and teams that need
//! exact invoices should set it. Self-hosted and third-party OpenAI-compatible servers
//! (`openai-compatible`) are never priced from this table, since the same model name costs whatever
//! that server's operator pays.

use crate::config::PriceConfig;
use crate::v1alpha1::Provider;

/// Who publishes the price of a model: the table is keyed by vendor so that a self-hosted model with
/// a well-known name is not charged at the vendor's list price.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Vendor {
    OpenAi,
    Anthropic,
    Google,
}

/// One row: model id (without date or version suffix), input, output and cached-input dollars per
/// million tokens.
type Row = (Vendor, &'static str, f64, f64, f64);

const TABLE: &[Row] = &[
    // OpenAI. Azure OpenAI list prices for the same models match at the global standard tier.
    (Vendor::OpenAi, "gpt-4o", 2.50, 10.00, 1.25),
    (Vendor::OpenAi, "gpt-4o-mini", 0.15, 0.60, 0.075),
    (Vendor::OpenAi, "gpt-4.1", 2.00, 8.00, 0.50),
    (Vendor::OpenAi, "gpt-4.1-mini", 0.40, 1.60, 0.10),
    (Vendor::OpenAi, "gpt-4.1-nano", 0.10, 0.40, 0.025),
    (Vendor::OpenAi, "gpt-5", 1.25, 10.00, 0.125),
    (Vendor::OpenAi, "gpt-5-mini", 0.25, 2.00, 0.025),
    (Vendor::OpenAi, "gpt-5-nano", 0.05, 0.40, 0.005),
    (Vendor::OpenAi, "o1", 15.00, 60.00, 7.50),
    (Vendor::OpenAi, "o1-mini", 1.10, 4.40, 0.55),
    (Vendor::OpenAi, "o3", 2.00, 8.00, 0.50),
    (Vendor::OpenAi, "o3-mini", 1.10, 4.40, 0.55),
    (Vendor::OpenAi, "o4-mini", 1.10, 4.40, 0.275),
    (Vendor::OpenAi, "text-embedding-3-small", 0.02, 0.0, 0.02),
    (Vendor::OpenAi, "text-embedding-3-large", 0.13, 0.0, 0.13),
    (Vendor::OpenAi, "text-embedding-ada-002", 0.10, 0.0, 0.10),
    // Anthropic: both the dated ids (`claude-sonnet-4-5-20250929`) and the aliases resolve here.
    (Vendor::Anthropic, "claude-opus-4", 15.00, 75.00, 1.50),
    (Vendor::Anthropic, "claude-opus-4-0", 15.00, 75.00, 1.50),
    (Vendor::Anthropic, "claude-opus-4-1", 15.00, 75.00, 1.50),
    (Vendor::Anthropic, "claude-opus-4-5", 5.00, 25.00, 0.50),
    (Vendor::Anthropic, "claude-opus-4-6", 5.00, 25.00, 0.50),
    (Vendor::Anthropic, "claude-sonnet-4", 3.00, 15.00, 0.30),
    (Vendor::Anthropic, "claude-sonnet-4-0", 3.00, 15.00, 0.30),
    (Vendor::Anthropic, "claude-sonnet-4-5", 3.00, 15.00, 0.30),
    (Vendor::Anthropic, "claude-sonnet-4-6", 3.00, 15.00, 0.30),
    (Vendor::Anthropic, "claude-haiku-4-5", 1.00, 5.00, 0.10),
    (Vendor::Anthropic, "claude-3-7-sonnet", 3.00, 15.00, 0.30),
    (Vendor::Anthropic, "claude-3-5-haiku", 0.80, 4.00, 0.08),
    // Google Gemini (Generative Language API, paid tier, text input).
    (Vendor::Google, "gemini-2.0-flash", 0.10, 0.40, 0.025),
    (
        Vendor::Google,
        "gemini-2.0-flash-lite",
        0.075,
        0.30,
        0.01875,
    ),
    (Vendor::Google, "gemini-2.5-flash", 0.30, 2.50, 0.03),
    (Vendor::Google, "gemini-2.5-flash-lite", 0.10, 0.40, 0.01),
    (Vendor::Google, "gemini-2.5-pro", 1.25, 10.00, 0.125),
    (Vendor::Google, "gemini-embedding-001", 0.15, 0.0, 0.15),
];

fn vendor(provider: Provider) -> Option<Vendor> {
    match provider {
        Provider::Openai | Provider::AzureOpenai => Some(Vendor::OpenAi),
        Provider::Anthropic => Some(Vendor::Anthropic),
        Provider::Gemini => Some(Vendor::Google),
        Provider::OpenaiCompatible => None,
    }
}

/// The built-in price of `model` served by `provider`, if the table knows it.
///
/// Matches the model id exactly, or with a snapshot suffix the providers add to pin a version:
/// OpenAI's `-2024-08-06`, Anthropic's `-20250929`, Gemini's `-001` and `-latest`; Gemini's
/// `models/` resource prefix is ignored. Anything else (`gpt-4o-audio-preview`, fine-tunes) is not
/// guessed at.
pub fn builtin(provider: Provider, model: &str) -> Option<PriceConfig> {
    let vendor = vendor(provider)?;
    let model = model.strip_prefix("models/").unwrap_or(model);
    TABLE
        .iter()
        .filter(|row| row.0 == vendor)
        .filter_map(|row| {
            model
                .strip_prefix(row.1)
                .filter(|rest| is_version_suffix(rest))
                .map(|_| row)
        })
        // The longest id wins so that `gpt-4o-mini-2024-07-18` is not read as a `gpt-4o` snapshot.
        .max_by_key(|row| row.1.len())
        .map(|&(_, _, input, output, cached)| PriceConfig {
            input_per_million: input,
            output_per_million: output,
            cached_input_per_million: cached,
        })
}

/// Empty, `-latest`, `-NNN`, `-YYYYMMDD` or `-YYYY-MM-DD`.
fn is_version_suffix(rest: &str) -> bool {
    let Some(suffix) = rest.strip_prefix('-') else {
        return rest.is_empty();
    };
    let digits = |s: &str, n: usize| s.len() == n && s.bytes().all(|b| b.is_ascii_digit());
    match suffix.len() {
        3 | 8 => digits(suffix, suffix.len()),
        6 => suffix == "latest",
        10 => {
            let parts: Vec<&str> = suffix.split('-').collect();
            matches!(parts.as_slice(), [y, m, d] if digits(y, 4) && digits(m, 2) && digits(d, 2))
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn price(provider: Provider, model: &str) -> Option<(f64, f64, f64)> {
        builtin(provider, model).map(|p| {
            (
                p.input_per_million,
                p.output_per_million,
                p.cached_input_per_million,
            )
        })
    }

    #[test]
    fn well_known_models_and_their_snapshots_are_priced() {
        let cases = [
            (Provider::Openai, "gpt-4o", (2.50, 10.00, 1.25)),
            (Provider::Openai, "gpt-4o-2024-08-06", (2.50, 10.00, 1.25)),
            (
                Provider::Openai,
                "gpt-4o-mini-2024-07-18",
                (0.15, 0.60, 0.075),
            ),
            (Provider::AzureOpenai, "gpt-4.1-mini", (0.40, 1.60, 0.10)),
            (Provider::Openai, "o3-mini", (1.10, 4.40, 0.55)),
            (
                Provider::Openai,
                "text-embedding-3-small",
                (0.02, 0.0, 0.02),
            ),
            (
                Provider::Anthropic,
                "claude-sonnet-4-5",
                (3.00, 15.00, 0.30),
            ),
            (
                Provider::Anthropic,
                "claude-sonnet-4-5-20250929",
                (3.00, 15.00, 0.30),
            ),
            (
                Provider::Anthropic,
                "claude-opus-4-20250514",
                (15.00, 75.00, 1.50),
            ),
            (
                Provider::Anthropic,
                "claude-opus-4-1-20250805",
                (15.00, 75.00, 1.50),
            ),
            (
                Provider::Anthropic,
                "claude-haiku-4-5-20251001",
                (1.00, 5.00, 0.10),
            ),
            (
                Provider::Gemini,
                "gemini-2.0-flash-001",
                (0.10, 0.40, 0.025),
            ),
            (
                Provider::Gemini,
                "models/gemini-2.5-pro",
                (1.25, 10.00, 0.125),
            ),
            (
                Provider::Gemini,
                "gemini-2.5-flash-lite",
                (0.10, 0.40, 0.01),
            ),
        ];
        for (provider, model, expected) in cases {
            assert_eq!(price(provider, model), Some(expected), "{model}");
        }
    }

    #[test]
    fn unknown_variants_and_self_hosted_models_are_not_guessed() {
        let cases = [
            (Provider::Openai, "gpt-4o-audio-preview"),
            (Provider::Openai, "ft:gpt-4o-mini:acme"),
            (Provider::Openai, "gpt-4"),
            (Provider::Openai, "claude-sonnet-4-5"),
            (Provider::Anthropic, "gpt-4o"),
            (Provider::OpenaiCompatible, "gpt-4o"),
            (
                Provider::OpenaiCompatible,
                "meta-llama/Llama-3.1-8B-Instruct",
            ),
            (Provider::Gemini, "gemini-2.5-flash-preview-tts"),
        ];
        for (provider, model) in cases {
            assert_eq!(
                price(provider, model),
                None,
                "{model} via {}",
                provider.as_str()
            );
        }
    }

    #[test]
    fn every_row_is_reachable_and_sane() {
        for &(vendor, model, input, output, cached) in TABLE {
            let provider = match vendor {
                Vendor::OpenAi => Provider::Openai,
                Vendor::Anthropic => Provider::Anthropic,
                Vendor::Google => Provider::Gemini,
            };
            assert_eq!(
                price(provider, model),
                Some((input, output, cached)),
                "{model}"
            );
            assert!(input >= 0.0 && output >= 0.0 && cached <= input, "{model}");
        }
    }
}
