//! Budget → [`BudgetConfig`]: the limit, window, IANA time zone and alert thresholds, checked.

use std::collections::BTreeMap;

use chrono_tz::Tz;

use super::problems::Problems;
use super::{Inputs, Kind, ObjectRef, Outcome, Problem};
use crate::config::BudgetConfig;
use crate::v1alpha1::BudgetSpec;

/// Most thresholds per budget, as the CRD schema allows.
const MAX_THRESHOLDS: usize = 10;

/// Compiles the gateway's budgets and records an outcome for each. Returns every one of them by id,
/// accepted or not, so references to a rejected budget can say why it is unusable.
pub(super) fn compile_all(
    inputs: &Inputs,
    outcomes: &mut BTreeMap<ObjectRef, Outcome>,
) -> BTreeMap<String, Result<BudgetConfig, Problem>> {
    let mut budgets = BTreeMap::new();
    for budget in inputs
        .budgets
        .iter()
        .filter(|b| b.spec.gateway == inputs.gateway)
    {
        let object = ObjectRef::of(Kind::Budget, &budget.metadata);
        let compiled = compile_spec(&object, &budget.spec);
        // A budget references nothing, so its references are always resolved.
        let outcome = Outcome {
            accepted: compiled.as_ref().map(|_| ()).map_err(Clone::clone),
            resolved_refs: Ok(()),
        };
        outcomes.insert(object.clone(), outcome);
        budgets.insert(object.id(), compiled);
    }
    budgets
}

fn compile_spec(object: &ObjectRef, spec: &BudgetSpec) -> Result<BudgetConfig, Problem> {
    let mut problems = Problems::new();
    problems.non_negative_f64("spec.limitUSD", spec.limit_usd);
    let token_limit = spec
        .token_limit
        .map(|n| problems.at_least_u64("spec.tokenLimit", n, 1));
    if spec.time_zone.parse::<Tz>().is_err() {
        problems.invalid(
            "spec.timeZone",
            format!(
                "{:?} is not an IANA time zone such as Europe/Berlin",
                spec.time_zone
            ),
        );
    }
    let thresholds = thresholds(&spec.thresholds, &mut problems);
    let config = BudgetConfig {
        id: object.id(),
        limit_usd: spec.limit_usd,
        token_limit,
        window: spec.window,
        time_zone: spec.time_zone.clone(),
        thresholds,
        action: spec.action,
        stop_streams: spec.stop_streams,
        failure_mode: spec.failure_mode,
    };
    problems.into_result().map(|()| config)
}

/// Percentages within 0-100, strictly ascending.
fn thresholds(values: &[i32], problems: &mut Problems) -> Vec<u32> {
    if values.len() > MAX_THRESHOLDS {
        problems.invalid(
            "spec.thresholds",
            format!("at most {MAX_THRESHOLDS} thresholds"),
        );
    }
    let checked: Vec<u32> = values
        .iter()
        .enumerate()
        .map(|(i, &t)| problems.ranged_u32(format_args!("spec.thresholds[{i}]"), t.into(), 0, 100))
        .collect();
    for (i, pair) in values.windows(2).enumerate() {
        if pair[1] <= pair[0] {
            problems.invalid(
                format_args!("spec.thresholds[{}]", i + 1),
                format!(
                    "must be above the previous threshold ({}); thresholds are strictly ascending",
                    pair[0]
                ),
            );
        }
    }
    checked
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compile::fixtures::budget;
    use crate::conditions::reason;

    fn compile_one(yaml: &str) -> Result<BudgetConfig, Problem> {
        let budget = budget("team-a", "monthly", yaml);
        compile_spec(&ObjectRef::of(Kind::Budget, &budget.metadata), &budget.spec)
    }

    #[test]
    fn valid_budgets_compile_with_defaults() {
        let config = compile_one("limitUSD: 500").expect("valid");
        assert_eq!(config.id, "team-a/monthly");
        assert_eq!(config.time_zone, "UTC");
        assert_eq!(config.thresholds, vec![50, 80, 100]);
        assert_eq!(config.window, crate::v1alpha1::BudgetWindow::Monthly);
        assert_eq!(config.token_limit, None);

        let config = compile_one("{limitUSD: 0, tokenLimit: 1000000, timeZone: Europe/Berlin, thresholds: [], window: total}")
            .expect("valid");
        assert_eq!(
            (config.token_limit, config.time_zone.as_str()),
            (Some(1_000_000), "Europe/Berlin")
        );
        assert!(config.thresholds.is_empty());
    }

    #[test]
    fn invalid_budgets_name_the_field() {
        let cases = [
            (
                "{limitUSD: -1}",
                "spec.limitUSD: must be a number of at least 0, got -1",
            ),
            (
                "{limitUSD: .nan}",
                "spec.limitUSD: must be a number of at least 0, got NaN",
            ),
            (
                "{limitUSD: 5, tokenLimit: 0}",
                "spec.tokenLimit: must be at least 1, got 0",
            ),
            (
                "{limitUSD: 5, timeZone: Mars/Olympus}",
                "spec.timeZone: \"Mars/Olympus\" is not an IANA time zone",
            ),
            (
                "{limitUSD: 5, thresholds: [80, 50]}",
                "spec.thresholds[1]: must be above the previous threshold (80)",
            ),
            (
                "{limitUSD: 5, thresholds: [50, 50]}",
                "spec.thresholds[1]: must be above",
            ),
            (
                "{limitUSD: 5, thresholds: [50, 101]}",
                "spec.thresholds[1]: must be between 0 and 100, got 101",
            ),
            (
                "{limitUSD: 5, thresholds: [-5]}",
                "spec.thresholds[0]: must be between 0 and 100, got -5",
            ),
        ];
        for (yaml, expected) in cases {
            let problem = compile_one(yaml).expect_err(yaml);
            assert_eq!(problem.reason, reason::INVALID, "{yaml}");
            assert!(
                problem.message.starts_with(expected),
                "{yaml}: {}",
                problem.message
            );
        }
    }
}
