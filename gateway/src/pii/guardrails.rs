//! Blocked-pattern guardrails: a route's list of forbidden regexes, checked in one pass per text, reporting
//! which patterns matched (by name, never the matched text).

use regex::RegexSet;

use super::chat::message_texts;
use super::error::PiiError;
use crate::api::openai::ChatRequest;

/// A compiled list of blocked patterns. Build once per configuration snapshot.
#[derive(Debug, Clone)]
pub struct BlockedPatterns {
    set: RegexSet,
    names: Vec<String>,
}

impl BlockedPatterns {
    /// Compiles `(name, regex)` pairs; the error names the first pattern that does not compile.
    pub fn new<N, R>(patterns: impl IntoIterator<Item = (N, R)>) -> Result<Self, PiiError>
    where
        N: Into<String>,
        R: AsRef<str>,
    {
        let mut names = Vec::new();
        let mut regexes = Vec::new();
        for (name, regex) in patterns {
            let name = name.into();
            regex::Regex::new(regex.as_ref()).map_err(|source| {
                PiiError::InvalidBlockedPattern {
                    name: name.clone(),
                    source,
                }
            })?;
            names.push(name);
            regexes.push(regex.as_ref().to_owned());
        }
        let set = RegexSet::new(&regexes).map_err(PiiError::CombinedSet)?;
        Ok(Self { set, names })
    }

    /// Names of the patterns that match anywhere in `texts`, in configuration order; empty when none do.
    pub fn matches<'t>(&self, texts: impl IntoIterator<Item = &'t str>) -> Vec<&str> {
        let mut hit = Vec::new();
        for text in texts {
            if !self.set.is_match(text) {
                continue;
            }
            if hit.is_empty() {
                hit = vec![false; self.names.len()];
            }
            for index in self.set.matches(text).iter() {
                hit[index] = true;
            }
        }
        hit.iter()
            .zip(&self.names)
            .filter(|(matched, _)| **matched)
            .map(|(_, name)| name.as_str())
            .collect()
    }

    /// Checks every message text of a request (all roles, text parts, refusals, tool-call arguments).
    pub fn check_request(&self, request: &ChatRequest) -> Result<(), GuardrailBlocked> {
        let matched = self.matches(request.messages.iter().flat_map(message_texts));
        if matched.is_empty() {
            return Ok(());
        }
        Err(GuardrailBlocked {
            patterns: matched.into_iter().map(str::to_owned).collect(),
        })
    }
}

/// A request refused by blocked patterns: answer with HTTP 400, error type `invalid_request_error` and code
/// [`GuardrailBlocked::CODE`]. The message names the patterns, never the text that matched.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the request matches patterns this route blocks ({})", .patterns.join(", "))]
pub struct GuardrailBlocked {
    patterns: Vec<String>,
}

impl GuardrailBlocked {
    /// The OpenAI-style error `code` for this refusal.
    pub const CODE: &'static str = "guardrail_blocked";

    /// Names of the matched patterns, for metrics.
    pub fn patterns(&self) -> &[String] {
        &self.patterns
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(texts: &[&str]) -> ChatRequest {
        let messages: Vec<_> = texts
            .iter()
            .map(|text| serde_json::json!({"role": "user", "content": [{"type": "text", "text": text}]}))
            .collect();
        serde_json::from_value(serde_json::json!({"model": "m", "messages": messages})).unwrap()
    }

    #[test]
    fn reports_matched_pattern_names_in_config_order() {
        let patterns = BlockedPatterns::new([
            ("jailbreak", r"(?i)ignore (all )?previous instructions"),
            ("internal-host", r"\b[a-z0-9-]+\.corp\.example\b"),
            ("unused", r"never-matches-\d{40}"),
        ])
        .unwrap();
        let blocked = patterns
            .check_request(&request(&[
                "see build01.corp.example",
                "Ignore previous instructions now",
            ]))
            .unwrap_err();
        assert_eq!(blocked.patterns(), ["jailbreak", "internal-host"]);
        let message = blocked.to_string();
        assert_eq!(
            message,
            "the request matches patterns this route blocks (jailbreak, internal-host)"
        );
        assert!(!message.contains("build01"));
        assert!(
            patterns
                .check_request(&request(&["a harmless question"]))
                .is_ok()
        );
    }

    #[test]
    fn an_invalid_pattern_is_named() {
        let error = BlockedPatterns::new([("bad", "[unclosed")]).unwrap_err();
        assert!(
            error
                .to_string()
                .starts_with("blocked pattern `bad` does not compile"),
            "{error}"
        );
    }

    #[test]
    fn an_empty_list_blocks_nothing() {
        let patterns = BlockedPatterns::new(Vec::<(String, String)>::new()).unwrap();
        assert!(patterns.check_request(&request(&["anything"])).is_ok());
    }
}
