//! Errors from compiling a PII or guardrail policy (request-time outcomes are values, not errors).

/// A policy that cannot be compiled; the message names the pattern, never any request text.
#[derive(Debug, thiserror::Error)]
pub enum PiiError {
    #[error("custom PII pattern `{name}` does not compile: {source}")]
    InvalidPattern { name: String, source: regex::Error },
    #[error("the combined PII scanner does not compile: {0}")]
    CombinedSet(regex::Error),
    #[error("blocked pattern `{name}` does not compile: {source}")]
    InvalidBlockedPattern { name: String, source: regex::Error },
}
