//! Precision and recall of the built-in PII detectors on a labelled corpus of positives and near-misses.
//!
//! `tests/data/pii/corpus.jsonl`: one JSON object per line, `{"text", "entities": [{"type", "value"}], "note"?}`.
//! A detection counts as a true positive only with the labelled type and the exact labelled span.

use std::collections::BTreeMap;

use anyhow::{Context, Result, ensure};
use serde::Deserialize;
use sluice_crds::config::PiiConfig;
use sluice_crds::v1alpha1::PiiMode;
use sluice_gateway::pii::Redactor;

#[derive(Deserialize)]
struct Line {
    text: String,
    entities: Vec<Label>,
    #[serde(default)]
    note: Option<String>,
}

#[derive(Deserialize)]
struct Label {
    #[serde(rename = "type")]
    kind: String,
    value: String,
}

#[derive(Default)]
struct Score {
    labelled: usize,
    true_positives: usize,
    false_positives: usize,
    false_negatives: usize,
}

impl Score {
    fn precision(&self) -> f64 {
        ratio(
            self.true_positives,
            self.true_positives + self.false_positives,
        )
    }

    fn recall(&self) -> f64 {
        ratio(
            self.true_positives,
            self.true_positives + self.false_negatives,
        )
    }
}

fn ratio(part: usize, whole: usize) -> f64 {
    if whole == 0 {
        1.0
    } else {
        part as f64 / whole as f64
    }
}

fn load() -> Result<Vec<Line>> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/pii/corpus.jsonl");
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {path}"))?;
    text.lines()
        .enumerate()
        .map(|(number, line)| {
            serde_json::from_str(line).with_context(|| format!("corpus line {}", number + 1))
        })
        .collect()
}

/// Byte ranges of the labels: each value at its first occurrence not already taken by an earlier label.
fn label_spans(line: &Line) -> Result<Vec<(String, std::ops::Range<usize>)>> {
    let mut spans: Vec<(String, std::ops::Range<usize>)> = Vec::new();
    for label in &line.entities {
        let start = line
            .text
            .match_indices(&label.value)
            .map(|(start, _)| start)
            .find(|start| !spans.iter().any(|(_, span)| span.start == *start))
            .with_context(|| format!("label {:?} not in {:?}", label.value, line.text))?;
        spans.push((label.kind.clone(), start..start + label.value.len()));
    }
    Ok(spans)
}

#[test]
fn builtin_detectors_meet_precision_and_recall_floors() -> Result<()> {
    let corpus = load()?;
    ensure!(
        corpus.len() >= 150,
        "the corpus needs at least 150 lines, has {}",
        corpus.len()
    );
    let redactor = Redactor::new(&PiiConfig {
        mode: PiiMode::Redact,
        entities: Vec::new(),
        custom_patterns: Vec::new(),
        responses: false,
    })?;

    let mut scores: BTreeMap<String, Score> = BTreeMap::new();
    let mut mistakes = Vec::new();
    for line in &corpus {
        let mut labels = label_spans(line)?;
        for (kind, _) in &labels {
            scores.entry(kind.clone()).or_default().labelled += 1;
        }
        for finding in redactor.find(&line.text) {
            let kind = finding.kind.name().to_owned();
            let matched = labels
                .iter()
                .position(|(label_kind, span)| *label_kind == kind && *span == finding.range);
            let score = scores.entry(kind.clone()).or_default();
            match matched {
                Some(index) => {
                    score.true_positives += 1;
                    labels.swap_remove(index);
                }
                None => {
                    score.false_positives += 1;
                    mistakes.push(format!(
                        "FP {kind:<12} {:?} in {:?}",
                        &line.text[finding.range.clone()],
                        line.text
                    ));
                }
            }
        }
        for (kind, span) in labels {
            scores.entry(kind.clone()).or_default().false_negatives += 1;
            let note = line.note.as_deref().unwrap_or("");
            mistakes.push(format!(
                "FN {kind:<12} {:?} in {:?} {note}",
                &line.text[span], line.text
            ));
        }

        // Whatever was found is gone from the redacted text.
        if let Some((redacted, _)) = redactor.redact(&line.text) {
            for finding in redactor.find(&line.text) {
                let value = &line.text[finding.range];
                ensure!(
                    !redacted.contains(value),
                    "{value:?} survived redaction: {redacted:?}"
                );
            }
        }
    }

    let mut total = Score::default();
    println!(
        "\n{:<12} {:>8} {:>4} {:>4} {:>4} {:>9} {:>7}",
        "entity", "labelled", "TP", "FP", "FN", "precision", "recall"
    );
    for (kind, score) in &scores {
        println!(
            "{kind:<12} {:>8} {:>4} {:>4} {:>4} {:>9.3} {:>7.3}",
            score.labelled,
            score.true_positives,
            score.false_positives,
            score.false_negatives,
            score.precision(),
            score.recall()
        );
        total.labelled += score.labelled;
        total.true_positives += score.true_positives;
        total.false_positives += score.false_positives;
        total.false_negatives += score.false_negatives;
    }
    println!(
        "{:<12} {:>8} {:>4} {:>4} {:>4} {:>9.3} {:>7.3}",
        "overall",
        total.labelled,
        total.true_positives,
        total.false_positives,
        total.false_negatives,
        total.precision(),
        total.recall()
    );
    let negatives = corpus
        .iter()
        .filter(|line| line.entities.is_empty())
        .count();
    println!("{} lines, {negatives} without any PII", corpus.len());
    for mistake in &mistakes {
        println!("{mistake}");
    }

    ensure!(
        total.precision() >= 0.95,
        "overall precision {:.3} < 0.95",
        total.precision()
    );
    ensure!(
        total.recall() >= 0.95,
        "overall recall {:.3} < 0.95",
        total.recall()
    );
    for (kind, score) in &scores {
        ensure!(
            score.precision() >= 0.9,
            "{kind} precision {:.3} < 0.9",
            score.precision()
        );
        ensure!(
            score.recall() >= 0.9,
            "{kind} recall {:.3} < 0.9",
            score.recall()
        );
    }
    Ok(())
}
