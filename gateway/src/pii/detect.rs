//! The combined scanner: one `RegexSet` pass decides which detectors can match, then each candidate is
//! confirmed by its validator and overlaps are resolved by priority.
//!
//! Clean text costs one pass of the set's lazy DFA and no allocation. Regexes use ASCII word boundaries
//! (`(?-u:\b)`) so the DFA never falls back to the slower engines on non-ASCII text; context rules that a
//! regex cannot express (no look-around in the `regex` crate) are checked on the bytes around a match.

use std::sync::Arc;

use regex::{Regex, RegexSet};
use sluice_crds::v1alpha1::{PiiEntity, PiiPattern};

use super::checks;
use super::entity::{CustomEntity, EntityKind, Finding};
use super::error::PiiError;

/// Local part of an address, then dot-separated domain labels and an alphabetic TLD.
const EMAIL: &str = r"[A-Za-z0-9_%+\-][A-Za-z0-9._%+\-]{0,63}@(?:[A-Za-z0-9](?:[A-Za-z0-9\-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,24}";
/// A run of at least seven digits, optionally opened by `+` or `(`, with at most two separator characters
/// between digits: the candidates for cards, phones and SSNs, which validators then classify.
const NUMERIC_RUN: &str = r"[+(]?[0-9](?:[0-9]|[ .\-/()]{1,2}[0-9]){6,}";
const IPV4: &str = r"(?-u:\b)[0-9]{1,3}\.[0-9]{1,3}\.[0-9]{1,3}\.[0-9]{1,3}(?-u:\b)";
const IPV6: &str = r"[0-9A-Fa-f]{0,4}(?::[0-9A-Fa-f]{0,4}){2,7}(?:\.[0-9]{1,3}){0,3}";
const IBAN: &str = r"[A-Za-z]{2}[0-9]{2}(?: ?[A-Za-z0-9]){10,32}";
const UK_NINO: &str = r"[A-Za-z]{2} ?[0-9]{2} ?[0-9]{2} ?[0-9]{2} ?[A-Da-d]";
const SPANISH_DNI: &str = r"[XYZ]?-?[0-9]{7,8}-?[A-Z]";

/// Longest span a numeric entity can have (`+44 (0)20 7946 0958`, `4111 1111 1111 1111 111`): bounds the
/// sub-span search inside one digit run so a page of numbers stays linear.
const MAX_NUMERIC_SPAN: usize = 32;

/// How a detector confirms its regex matches.
#[derive(Debug)]
enum Rule {
    Email,
    /// Cards, phones and SSNs share one candidate regex; the flags say which of them this route wants.
    Numeric {
        cards: bool,
        phones: bool,
        ssns: bool,
    },
    Ipv4,
    Ipv6,
    Iban,
    UkNino,
    SpanishDni,
    Custom(EntityKind),
}

#[derive(Debug)]
struct Detector {
    regex: Regex,
    rule: Rule,
}

/// All detectors of one PII policy, compiled once per configuration.
#[derive(Debug)]
pub struct Scanner {
    prefilter: RegexSet,
    detectors: Vec<Detector>,
    /// Longest possible match of any custom pattern, when every one is bounded.
    custom_max_len: Option<usize>,
}

impl Scanner {
    /// Compiles the built-in detectors for `entities` (all of them when empty) and the custom patterns.
    pub fn new(entities: &[PiiEntity], custom: &[PiiPattern]) -> Result<Self, PiiError> {
        let wants = |entity: PiiEntity| entities.is_empty() || entities.contains(&entity);
        let mut specs: Vec<(String, Rule)> = Vec::new();
        if wants(PiiEntity::Email) {
            specs.push((EMAIL.to_owned(), Rule::Email));
        }
        let numeric = Rule::Numeric {
            cards: wants(PiiEntity::CreditCard),
            phones: wants(PiiEntity::Phone),
            ssns: wants(PiiEntity::NationalId),
        };
        if matches!(numeric, Rule::Numeric { cards, phones, ssns } if cards || phones || ssns) {
            specs.push((NUMERIC_RUN.to_owned(), numeric));
        }
        if wants(PiiEntity::IpAddress) {
            specs.push((IPV4.to_owned(), Rule::Ipv4));
            specs.push((IPV6.to_owned(), Rule::Ipv6));
        }
        if wants(PiiEntity::Iban) {
            specs.push((IBAN.to_owned(), Rule::Iban));
        }
        if wants(PiiEntity::NationalId) {
            specs.push((UK_NINO.to_owned(), Rule::UkNino));
            specs.push((SPANISH_DNI.to_owned(), Rule::SpanishDni));
        }
        let mut custom_max_len = Some(0);
        for pattern in custom {
            let invalid = |source: regex::Error| PiiError::InvalidPattern {
                name: pattern.name.clone(),
                source,
            };
            // Compile first so a bad pattern is reported by the same engine that will run it.
            Regex::new(&pattern.regex).map_err(invalid)?;
            let longest = regex_syntax::parse(&pattern.regex)
                .ok()
                .and_then(|hir| hir.properties().maximum_len());
            custom_max_len = custom_max_len.zip(longest).map(|(a, b)| a.max(b));
            let kind = EntityKind::Custom(Arc::new(CustomEntity::new(&pattern.name)));
            specs.push((pattern.regex.clone(), Rule::Custom(kind)));
        }
        let prefilter = RegexSet::new(specs.iter().map(|(pattern, _)| pattern))
            .map_err(PiiError::CombinedSet)?;
        let detectors = specs
            .into_iter()
            .map(|(pattern, rule)| {
                Regex::new(&pattern)
                    .map(|regex| Detector { regex, rule })
                    .map_err(PiiError::CombinedSet)
            })
            .collect::<Result<_, _>>()?;
        Ok(Self {
            prefilter,
            detectors,
            custom_max_len,
        })
    }

    /// Longest possible match of the custom patterns: `Some(0)` without any, `None` when one is unbounded.
    pub fn custom_max_len(&self) -> Option<usize> {
        self.custom_max_len
    }

    /// Confirmed, non-overlapping findings in `text`, ordered by position. Allocates only when something matched.
    pub fn find(&self, text: &str) -> Vec<Finding> {
        if self.detectors.is_empty() || !self.prefilter.is_match(text) {
            return Vec::new();
        }
        let mut candidates = Vec::new();
        for index in self.prefilter.matches(text).iter() {
            self.detectors[index].collect(text, &mut candidates);
        }
        resolve_overlaps(candidates)
    }
}

impl Detector {
    fn collect(&self, text: &str, out: &mut Vec<Finding>) {
        match &self.rule {
            Rule::Email => {
                for found in self.regex.find_iter(text) {
                    let local_char =
                        |byte: u8| byte.is_ascii_alphanumeric() || b"._%+-".contains(&byte);
                    let clean_edges = !before(text, found.start()).is_some_and(local_char)
                        && !after(text, found.end()).is_some_and(|byte| {
                            byte.is_ascii_alphanumeric() || byte == b'-' || byte == b'@'
                        });
                    if clean_edges && checks::email(found.as_str()) {
                        out.push(finding(EntityKind::Email, found.start(), found.end()));
                    }
                }
            }
            Rule::Numeric {
                cards,
                phones,
                ssns,
            } => {
                for found in self.regex.find_iter(text) {
                    let alnum = |byte: u8| byte.is_ascii_alphanumeric();
                    if before(text, found.start()).is_some_and(alnum)
                        || after(text, found.end()).is_some_and(alnum)
                    {
                        continue;
                    }
                    classify_run(
                        text,
                        found.start(),
                        found.end(),
                        (*cards, *phones, *ssns),
                        out,
                    );
                }
            }
            Rule::Ipv4 => {
                for found in self.regex.find_iter(text) {
                    let dotted_before = before(text, found.start()) == Some(b'.')
                        && found.start() >= 2
                        && text.as_bytes()[found.start() - 2].is_ascii_digit();
                    let dotted_after = after(text, found.end()) == Some(b'.')
                        && text
                            .as_bytes()
                            .get(found.end() + 1)
                            .is_some_and(u8::is_ascii_digit);
                    if !dotted_before
                        && !dotted_after
                        && !after_version_word(text, found.start())
                        && checks::ipv4(found.as_str())
                    {
                        out.push(finding(EntityKind::IpAddress, found.start(), found.end()));
                    }
                }
            }
            Rule::Ipv6 => {
                for found in self.regex.find_iter(text) {
                    let clean_edges = !before(text, found.start()).is_some_and(|byte| {
                        byte.is_ascii_alphanumeric() || byte == b':' || byte == b'.'
                    }) && !after(text, found.end())
                        .is_some_and(|byte| byte.is_ascii_alphanumeric() || byte == b':');
                    if clean_edges && checks::ipv6(found.as_str()) {
                        out.push(finding(EntityKind::IpAddress, found.start(), found.end()));
                    }
                }
            }
            Rule::Iban => {
                // A failed candidate may have swallowed the start of a real IBAN ("AB12 DE89 …"): resume one
                // character later rather than after the candidate.
                let mut position = 0;
                while let Some(found) = self.regex.find_at(text, position) {
                    let start = found.start();
                    let accepted = (!before(text, start)
                        .is_some_and(|byte| byte.is_ascii_alphanumeric()))
                    .then(|| checks::iban_prefix(&text[start..]))
                    .flatten()
                    .map(|length| start + length)
                    .filter(|end| {
                        !after(text, *end).is_some_and(|byte| byte.is_ascii_alphanumeric())
                    });
                    match accepted {
                        Some(end) => {
                            out.push(finding(EntityKind::Iban, start, end));
                            position = end;
                        }
                        // The match starts with an ASCII letter, so one byte on is a character boundary.
                        None => position = start + 1,
                    }
                }
            }
            Rule::UkNino | Rule::SpanishDni => {
                let valid = if matches!(self.rule, Rule::UkNino) {
                    checks::uk_nino
                } else {
                    checks::spanish_dni
                };
                for found in self.regex.find_iter(text) {
                    let alnum = |byte: u8| byte.is_ascii_alphanumeric();
                    let clean_edges = !before(text, found.start()).is_some_and(alnum)
                        && !after(text, found.end()).is_some_and(alnum);
                    if clean_edges && valid(found.as_str()) {
                        out.push(finding(EntityKind::NationalId, found.start(), found.end()));
                    }
                }
            }
            Rule::Custom(kind) => {
                for found in self.regex.find_iter(text) {
                    if !found.is_empty() {
                        out.push(finding(kind.clone(), found.start(), found.end()));
                    }
                }
            }
        }
    }
}

/// Finds the entities inside one digit run. The run may hold several entities or extra numbers around one
/// ("ref 12 4111 1111 1111 1111 exp 2027"), so every span of whole space-separated groups is tried, longest
/// first from the left, up to [`MAX_NUMERIC_SPAN`] bytes.
fn classify_run(
    text: &str,
    start: usize,
    end: usize,
    (cards, phones, ssns): (bool, bool, bool),
    out: &mut Vec<Finding>,
) {
    let run = &text[start..end];
    let mut groups: Vec<(usize, usize)> = Vec::new();
    let mut group_start = 0;
    for (index, byte) in run.bytes().enumerate() {
        if byte == b' ' {
            groups.push((group_start, index));
            group_start = index + 1;
        }
    }
    groups.push((group_start, run.len()));
    let mut first = 0;
    'groups: while first < groups.len() {
        for last in (first..groups.len()).rev() {
            let (span_start, span_end) = (groups[first].0, groups[last].1);
            if span_end - span_start > MAX_NUMERIC_SPAN || span_start == span_end {
                continue;
            }
            let span = &run[span_start..span_end];
            let kind = if cards && checks::credit_card(span) {
                Some(EntityKind::CreditCard)
            } else if ssns && checks::us_ssn(span) {
                Some(EntityKind::NationalId)
            } else if phones && checks::phone(span) {
                Some(EntityKind::Phone)
            } else {
                None
            };
            if let Some(kind) = kind {
                out.push(finding(kind, start + span_start, start + span_end));
                first = last + 1;
                continue 'groups;
            }
        }
        first += 1;
    }
}

/// Keeps the highest-priority finding wherever candidates overlap; returns them ordered by position.
fn resolve_overlaps(mut candidates: Vec<Finding>) -> Vec<Finding> {
    if candidates.len() < 2 {
        return candidates;
    }
    candidates.sort_by_key(|candidate| (candidate.kind.priority(), candidate.range.start));
    let mut accepted: Vec<Finding> = Vec::with_capacity(candidates.len());
    for candidate in candidates {
        let slot = accepted.partition_point(|kept| kept.range.start < candidate.range.start);
        let clashes_before = slot > 0 && accepted[slot - 1].range.end > candidate.range.start;
        let clashes_after = accepted
            .get(slot)
            .is_some_and(|kept| kept.range.start < candidate.range.end);
        if !clashes_before && !clashes_after {
            accepted.insert(slot, candidate);
        }
    }
    accepted
}

/// Words after which a dotted quad is a version, not an address (`version 2.0.0.1`, `build: 10.0.19045.1`).
const VERSION_WORDS: &[&str] = &["version", "ver", "release", "build", "firmware"];

fn after_version_word(text: &str, start: usize) -> bool {
    let before = text[..start].trim_end_matches([' ', ':', '=']);
    let word_start = before
        .rfind(|c: char| !c.is_ascii_alphabetic())
        .map_or(0, |index| index + 1);
    let word = &before[word_start..];
    VERSION_WORDS
        .iter()
        .any(|version| word.eq_ignore_ascii_case(version))
}

fn finding(kind: EntityKind, start: usize, end: usize) -> Finding {
    Finding {
        kind,
        range: start..end,
    }
}

fn before(text: &str, index: usize) -> Option<u8> {
    index
        .checked_sub(1)
        .map(|previous| text.as_bytes()[previous])
}

fn after(text: &str, index: usize) -> Option<u8> {
    text.as_bytes().get(index).copied()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kinds(scanner: &Scanner, text: &str) -> Vec<(String, String)> {
        scanner
            .find(text)
            .into_iter()
            .map(|found| (found.kind.name().to_owned(), text[found.range].to_owned()))
            .collect()
    }

    fn pair(kind: &str, value: &str) -> (String, String) {
        (kind.to_owned(), value.to_owned())
    }

    #[test]
    fn finds_every_builtin_kind_in_context() {
        let scanner = Scanner::new(&[], &[]).unwrap();
        let text = "Mail jane.doe@example.com or call +44 20 7946 0958; card 4111 1111 1111 1111, \
                    IBAN DE89 3704 0044 0532 0130 00 IBAN, SSN 536-90-4399, host 192.168.1.20 and 2001:db8::8a2e:370:7334.";
        assert_eq!(
            kinds(&scanner, text),
            vec![
                pair("email", "jane.doe@example.com"),
                pair("phone", "+44 20 7946 0958"),
                pair("credit_card", "4111 1111 1111 1111"),
                pair("iban", "DE89 3704 0044 0532 0130 00"),
                pair("national_id", "536-90-4399"),
                pair("ip_address", "192.168.1.20"),
                pair("ip_address", "2001:db8::8a2e:370:7334"),
            ]
        );
    }

    #[test]
    fn near_misses_are_not_findings() {
        let scanner = Scanner::new(&[], &[]).unwrap();
        for text in [
            "card 4111 1111 1111 1112 fails Luhn",
            "IBAN DE88 3704 0044 0532 0130 00 has a bad checksum",
            "release 1.2.3.4.5 shipped",
            "on 2024-01-15 at 12:30:45",
            "order #123456789012 shipped",
            "call 555-1234",
            "@app.route('/')",
            "Foo::bar::baz and std::vec::Vec",
            "mac 00:1A:2B:3C:4D:5E",
            "SSN 666-12-3456 is never issued",
            "icon@2x.png",
            "upgrade to version 2.0.0.1 tonight",
            "Build: 10.0.19045.1",
        ] {
            assert_eq!(kinds(&scanner, text), vec![], "{text}");
        }
    }

    #[test]
    fn a_digit_run_is_split_into_its_entities() {
        let scanner = Scanner::new(&[], &[]).unwrap();
        assert_eq!(
            kinds(&scanner, "ref 12 4111 1111 1111 1111 2027"),
            vec![pair("credit_card", "4111 1111 1111 1111")]
        );
        assert_eq!(
            kinds(&scanner, "call 020 7946 0958 24/7"),
            vec![pair("phone", "020 7946 0958")]
        );
    }

    #[test]
    fn only_configured_entities_are_detected() {
        let scanner = Scanner::new(&[PiiEntity::Email], &[]).unwrap();
        assert_eq!(
            kinds(&scanner, "jane@example.com 4111111111111111 10.0.0.1"),
            vec![pair("email", "jane@example.com")]
        );
    }

    #[test]
    fn custom_patterns_report_their_name_and_bound() {
        let custom = [PiiPattern {
            name: "employee-id".into(),
            regex: r"EMP-[0-9]{6}".into(),
        }];
        let scanner = Scanner::new(&[PiiEntity::Email], &custom).unwrap();
        assert_eq!(
            kinds(&scanner, "badge EMP-123456"),
            vec![pair("employee-id", "EMP-123456")]
        );
        assert_eq!(scanner.custom_max_len(), Some(10));
        let unbounded = [PiiPattern {
            name: "project".into(),
            regex: r"Project [A-Z][a-z]+".into(),
        }];
        assert_eq!(
            Scanner::new(&[], &unbounded).unwrap().custom_max_len(),
            None
        );
    }

    #[test]
    fn invalid_custom_pattern_names_the_pattern() {
        let custom = [PiiPattern {
            name: "broken".into(),
            regex: "(unclosed".into(),
        }];
        let error = Scanner::new(&[], &custom).unwrap_err();
        assert!(
            error
                .to_string()
                .starts_with("custom PII pattern `broken` does not compile"),
            "{error}"
        );
    }
}
