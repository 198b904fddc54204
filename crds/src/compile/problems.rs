//! Collects every problem of one resource so a user sees them all at once, and the range checks that
//! turn manifest integers into the snapshot's unsigned ones.

use std::fmt::Display;

use super::Problem;
use crate::conditions::reason;

/// Problems found so far, each a reason and a message naming the field.
#[derive(Debug, Default)]
pub(super) struct Problems(Vec<(&'static str, String)>);

impl Problems {
    pub(super) fn new() -> Self {
        Self::default()
    }

    /// A spec problem at `field`.
    pub(super) fn invalid(&mut self, field: impl Display, message: impl Display) {
        self.0
            .push((reason::INVALID, format!("{field}: {message}")));
    }

    /// A problem with its own reason (a reference that did not resolve).
    pub(super) fn push(&mut self, reason: &'static str, message: String) {
        self.0.push((reason, message));
    }

    /// `Ok` when nothing was found; otherwise the first problem's reason and all messages, in order.
    pub(super) fn into_result(self) -> Result<(), Problem> {
        let Some(&(reason, _)) = self.0.first() else {
            return Ok(());
        };
        let message = self
            .0
            .into_iter()
            .map(|(_, message)| message)
            .collect::<Vec<_>>()
            .join("; ");
        Err(Problem { reason, message })
    }

    /// `value` as a `u32` when within `min..=max`; records a problem and yields `min` otherwise (the
    /// result is discarded whenever a problem was recorded).
    pub(super) fn ranged_u32(
        &mut self,
        field: impl Display,
        value: i64,
        min: u32,
        max: u32,
    ) -> u32 {
        match u32::try_from(value) {
            Ok(v) if (min..=max).contains(&v) => v,
            _ => {
                self.invalid(
                    field,
                    format!("must be between {min} and {max}, got {value}"),
                );
                min
            }
        }
    }

    /// `value` as a `u64` when at least `min`.
    pub(super) fn at_least_u64(&mut self, field: impl Display, value: i64, min: u64) -> u64 {
        match u64::try_from(value) {
            Ok(v) if v >= min => v,
            _ => {
                self.invalid(field, format!("must be at least {min}, got {value}"));
                min
            }
        }
    }

    /// A finite number within `min..=max`.
    pub(super) fn ranged_f64(&mut self, field: impl Display, value: f64, min: f64, max: f64) {
        if !(value.is_finite() && (min..=max).contains(&value)) {
            self.invalid(
                field,
                format!("must be between {min} and {max}, got {value}"),
            );
        }
    }

    /// A finite number of at least zero (a price or a limit in dollars).
    pub(super) fn non_negative_f64(&mut self, field: impl Display, value: f64) {
        if !(value.is_finite() && value >= 0.0) {
            self.invalid(
                field,
                format!("must be a number of at least 0, got {value}"),
            );
        }
    }

    /// A duration in whole milliseconds, optionally required to be above zero.
    pub(super) fn duration_ms(&mut self, field: impl Display, value: &str, positive: bool) -> u64 {
        match crate::duration::parse(value) {
            Ok(d) if positive && d.is_zero() => {
                self.invalid(field, format!("must be greater than zero, got {value:?}"));
                0
            }
            Ok(d) => u64::try_from(d.as_millis()).unwrap_or(u64::MAX),
            Err(error) => {
                self.invalid(field, error);
                0
            }
        }
    }

    /// A non-blank name of at most `max_len` characters.
    pub(super) fn name(&mut self, field: impl Display, value: &str, max_len: usize) {
        if value.trim().is_empty() {
            self.invalid(field, "must not be empty");
        } else if value.chars().count() > max_len {
            self.invalid(field, format!("must be at most {max_len} characters"));
        }
    }

    /// [`Self::name`] for every entry of a list.
    pub(super) fn names(&mut self, field: &str, values: &[String], max_len: usize) {
        for (i, value) in values.iter().enumerate() {
            self.name(format_args!("{field}[{i}]"), value, max_len);
        }
    }
}

/// `values` without repeats, first occurrence kept: lists with set meaning (aliases, budget refs,
/// allowed models) tolerate a repeated entry instead of failing the resource over it.
pub(super) fn dedup<T: Clone + PartialEq>(values: impl IntoIterator<Item = T>) -> Vec<T> {
    let mut out: Vec<T> = Vec::new();
    for value in values {
        if !out.contains(&value) {
            out.push(value);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn all_problems_are_reported_with_the_first_reason() {
        let mut problems = Problems::new();
        assert_eq!(Problems::new().into_result(), Ok(()));
        problems.push(reason::SECRET_NOT_FOUND, "Secret a/b not found".into());
        problems.invalid("spec.x", "bad");
        let error = problems.into_result().unwrap_err();
        assert_eq!(error.reason, reason::SECRET_NOT_FOUND);
        assert_eq!(error.message, "Secret a/b not found; spec.x: bad");
    }

    #[test]
    fn range_checks_name_the_field_and_the_bounds() {
        let cases: [(i64, Option<u32>); 4] = [(0, Some(0)), (10, Some(10)), (11, None), (-1, None)];
        for (value, expected) in cases {
            let mut problems = Problems::new();
            let got = problems.ranged_u32("spec.n", value, 0, 10);
            match expected {
                Some(v) => assert_eq!((got, problems.into_result()), (v, Ok(())), "{value}"),
                None => assert_eq!(
                    problems.into_result().unwrap_err().message,
                    format!("spec.n: must be between 0 and 10, got {value}")
                ),
            }
        }
    }

    #[test]
    fn durations_name_the_field() {
        let mut problems = Problems::new();
        assert_eq!(problems.duration_ms("spec.a", "1.5s", true), 1_500);
        problems.duration_ms("spec.timeouts.connect", "5x", true);
        problems.duration_ms("spec.b", "0s", true);
        assert_eq!(problems.duration_ms("spec.c", "0s", false), 0);
        let message = problems.into_result().unwrap_err().message;
        assert!(
            message.starts_with("spec.timeouts.connect: invalid duration \"5x\""),
            "{message}"
        );
        assert!(
            message.ends_with("spec.b: must be greater than zero, got \"0s\""),
            "{message}"
        );
    }

    #[test]
    fn dedup_keeps_the_first_occurrence() {
        assert_eq!(dedup(["b", "a", "b", "c", "a"]), vec!["b", "a", "c"]);
    }
}
