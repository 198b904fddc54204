//! The per-route PII policy: a compiled scanner plus the mode that says what findings do (mask, refuse, count).

use std::fmt;
use std::sync::Arc;

use sluice_crds::config::PiiConfig;
use sluice_crds::v1alpha1::PiiMode;

use super::detect::Scanner;
use super::entity::{Finding, Tally};
use super::error::PiiError;
use super::mask::{JsonCursor, write_masked};

/// A route's compiled PII policy. Build it once per configuration snapshot (compiling the regexes is the
/// expensive part) and share it: cloning is a reference-count bump.
#[derive(Debug, Clone)]
pub struct Redactor {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    scanner: Scanner,
    mode: PiiMode,
    responses: bool,
}

/// How a piece of text is encoded, which decides how a mask is written into it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TextForm {
    Plain,
    /// JSON text such as tool-call arguments: masks replacing bare values are quoted.
    Json,
}

impl Redactor {
    /// Compiles the route's detectors and custom patterns.
    pub fn new(config: &PiiConfig) -> Result<Self, PiiError> {
        Ok(Self {
            inner: Arc::new(Inner {
                scanner: Scanner::new(&config.entities, &config.custom_patterns)?,
                mode: config.mode,
                responses: config.responses,
            }),
        })
    }

    /// What findings in a request do: redact, block or detect-only.
    pub fn mode(&self) -> PiiMode {
        self.inner.mode
    }

    /// Whether the policy also applies to responses (streamed ones included).
    pub fn covers_responses(&self) -> bool {
        self.inner.responses
    }

    /// Confirmed findings in `text`, ordered by position; empty (and allocation-free) when there are none.
    pub fn find(&self, text: &str) -> Vec<Finding> {
        self.inner.scanner.find(text)
    }

    /// `text` with every finding masked, whatever the mode; `None` when nothing was found.
    pub fn redact(&self, text: &str) -> Option<(String, Tally)> {
        let findings = self.find(text);
        if findings.is_empty() {
            return None;
        }
        let mut tally = Tally::default();
        let mut out = String::with_capacity(text.len());
        write_masked(&mut out, text, &findings, &mut tally, None);
        Some((out, tally))
    }

    pub(crate) fn scanner(&self) -> &Scanner {
        &self.inner.scanner
    }

    /// Counts the findings in `text` and, when `rewrite`, replaces it with the masked text.
    pub(crate) fn process(
        &self,
        text: &mut String,
        form: TextForm,
        rewrite: bool,
        tally: &mut Tally,
    ) {
        let findings = self.find(text);
        if findings.is_empty() {
            return;
        }
        if !rewrite {
            findings.iter().for_each(|finding| tally.add(&finding.kind));
            return;
        }
        let mut out = String::with_capacity(text.len());
        let mut cursor = JsonCursor::default();
        let json = (form == TextForm::Json).then_some(&mut cursor);
        write_masked(&mut out, text, &findings, tally, json);
        *text = out;
    }
}

/// A request refused because its route blocks PII. The message lists the entity kinds found, never a value;
/// answer it with HTTP 400, error type `invalid_request_error` and code [`PiiBlocked::CODE`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PiiBlocked {
    tally: Tally,
}

impl PiiBlocked {
    /// The OpenAI-style error `code` for this refusal.
    pub const CODE: &'static str = "pii_detected";

    pub(crate) fn new(tally: Tally) -> Self {
        Self { tally }
    }

    /// What was found, for metrics.
    pub fn tally(&self) -> &Tally {
        &self.tally
    }
}

impl fmt::Display for PiiBlocked {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "the request contains personal data that this route does not accept ({}); remove it and retry",
            self.tally.kind_list()
        )
    }
}

impl std::error::Error for PiiBlocked {}
