//! Token-usage conversions between the providers' counters and the canonical (OpenAI) usage.

use crate::api::anthropic;
use crate::api::openai::{CompletionTokensDetails, PromptTokensDetails, Usage};

/// Anthropic counters are disjoint: prompt = input + cache writes + cache reads; cache reads are OpenAI's cached tokens.
pub fn from_anthropic(
    input_tokens: u64,
    output_tokens: u64,
    cache_creation_input_tokens: u64,
    cache_read_input_tokens: u64,
) -> Usage {
    let prompt_tokens = input_tokens + cache_creation_input_tokens + cache_read_input_tokens;
    Usage {
        prompt_tokens,
        completion_tokens: output_tokens,
        total_tokens: prompt_tokens + output_tokens,
        prompt_tokens_details: Some(PromptTokensDetails {
            cached_tokens: Some(cache_read_input_tokens),
            audio_tokens: None,
        }),
        completion_tokens_details: None,
        cache_creation_tokens: cache_creation_input_tokens,
    }
}

/// Gemini `usageMetadata`: thoughts are billed as output, tool-use prompt tokens as input.
pub fn from_gemini(
    prompt_token_count: u64,
    candidates_token_count: u64,
    thoughts_token_count: u64,
    tool_use_prompt_token_count: u64,
    cached_content_token_count: u64,
    total_token_count: u64,
) -> Usage {
    let prompt_tokens = prompt_token_count + tool_use_prompt_token_count;
    let completion_tokens = candidates_token_count + thoughts_token_count;
    let total_tokens = if total_token_count == 0 {
        prompt_tokens + completion_tokens
    } else {
        total_token_count
    };
    Usage {
        prompt_tokens,
        completion_tokens,
        total_tokens,
        prompt_tokens_details: Some(PromptTokensDetails {
            cached_tokens: Some(cached_content_token_count),
            audio_tokens: None,
        }),
        completion_tokens_details: (thoughts_token_count > 0).then_some(CompletionTokensDetails {
            reasoning_tokens: Some(thoughts_token_count),
            ..CompletionTokensDetails::default()
        }),
        cache_creation_tokens: 0,
    }
}

/// Canonical → Anthropic: `input_tokens` excludes cached reads and cache writes, which get their own counters.
pub fn to_anthropic(usage: &Usage) -> anthropic::Usage {
    let cached = usage.cached_tokens();
    anthropic::Usage {
        input_tokens: usage
            .prompt_tokens
            .saturating_sub(cached)
            .saturating_sub(usage.cache_creation_tokens),
        output_tokens: usage.completion_tokens,
        cache_creation_input_tokens: Some(usage.cache_creation_tokens),
        cache_read_input_tokens: Some(cached),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn anthropic_counters_round_trip() {
        let usage = from_anthropic(50, 30, 10, 200);
        assert_eq!(usage.prompt_tokens, 260);
        assert_eq!(usage.cached_tokens(), 200);
        assert_eq!(usage.total_tokens, 290);
        let back = to_anthropic(&usage);
        assert_eq!(
            back,
            anthropic::Usage {
                input_tokens: 50,
                output_tokens: 30,
                cache_creation_input_tokens: Some(10),
                cache_read_input_tokens: Some(200)
            }
        );
    }

    #[test]
    fn gemini_thoughts_count_as_completion() {
        let usage = from_gemini(12, 40, 8, 0, 4, 60);
        assert_eq!(
            (
                usage.prompt_tokens,
                usage.completion_tokens,
                usage.total_tokens
            ),
            (12, 48, 60)
        );
        assert_eq!(usage.reasoning_tokens(), 8);
        assert_eq!(usage.cached_tokens(), 4);
    }
}
