//! PII detection and redaction for requests and responses (streamed ones too), plus blocked-pattern guardrails.
//!
//! Build a [`Redactor`] per route from its [`sluice_crds::config::PiiConfig`] when a configuration snapshot
//! loads, then per request call [`Redactor::inspect_request`]; for responses [`Redactor::inspect_response`]
//! or, on streams, a [`ChunkRedactor`] fed every chunk. [`BlockedPatterns`] does the same for guardrails.

mod chat;
mod checks;
mod detect;
mod entity;
mod error;
mod guardrails;
mod mask;
mod redactor;
mod stream;

pub(crate) use chat::message_texts;
pub use entity::{CustomEntity, EntityKind, Finding, Tally};
pub use error::PiiError;
pub use guardrails::{BlockedPatterns, GuardrailBlocked};
pub use redactor::{PiiBlocked, Redactor};
pub use stream::{ChunkRedactor, MAX_HOLD, StreamRedactor};
