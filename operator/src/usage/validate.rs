//! Checks a usage report's protocol version and shape before anything is folded: a report that is
//! refused here is refused whole, with every problem listed.

use sluice_crds::usage::{PROTOCOL_VERSION, UsageReport};

/// Most (key, route) entries or backend entries in one report: far above what one flush interval of
/// one gateway produces, low enough that one report cannot bloat the ledger.
pub const MAX_ENTRIES: usize = 20_000;
/// Longest error class accepted (classes are short words such as `timeout`).
const MAX_ERROR_CLASS: usize = 64;

/// Every problem of `report` against what gateway `gateway` may send, or `Ok`.
pub fn validate(report: &UsageReport, gateway: &str) -> Result<(), Vec<String>> {
    let mut problems = Vec::new();
    if report.protocol != PROTOCOL_VERSION {
        problems.push(format!(
            "protocol: version {} is not supported; this operator speaks version {PROTOCOL_VERSION}",
            report.protocol
        ));
    }
    if report.reporter.pod.is_empty() || report.reporter.pod.len() > 253 {
        problems.push("reporter.pod: must be 1-253 characters".to_owned());
    }
    if report.reporter.instance.is_empty() || report.reporter.instance.len() > 128 {
        problems.push("reporter.instance: must be 1-128 characters".to_owned());
    }
    if report.sequence == 0 {
        problems.push("sequence: starts at 1".to_owned());
    }
    // Empty: the reporter has not loaded a configuration yet (its report carries no usage then).
    if !report.gateway.is_empty() && report.gateway != gateway {
        problems.push(format!(
            "gateway: {:?} is not the gateway this operator serves ({gateway:?})",
            report.gateway
        ));
    }
    if report.usage.len() > MAX_ENTRIES || report.backends.len() > MAX_ENTRIES {
        problems.push(format!(
            "usage, backends: at most {MAX_ENTRIES} entries each"
        ));
    }
    for (i, delta) in report.usage.iter().enumerate() {
        object_id(&mut problems, &format!("usage[{i}].key"), &delta.key);
        object_id(&mut problems, &format!("usage[{i}].route"), &delta.route);
        for (j, budget) in delta.budgets.iter().enumerate() {
            object_id(&mut problems, &format!("usage[{i}].budgets[{j}]"), budget);
        }
        if delta.failed_requests > delta.requests || delta.cache_hits > delta.requests {
            problems.push(format!(
                "usage[{i}]: failedRequests and cacheHits cannot exceed requests"
            ));
        }
    }
    for (i, budget) in report.budgets.iter().enumerate() {
        object_id(&mut problems, &format!("budgets[{i}]"), budget);
    }
    for (i, backend) in report.backends.iter().enumerate() {
        object_id(
            &mut problems,
            &format!("backends[{i}].route"),
            &backend.route,
        );
        if backend.backend.is_empty() {
            problems.push(format!("backends[{i}].backend: must not be empty"));
        }
        if backend.failures > backend.attempts {
            problems.push(format!("backends[{i}]: failures cannot exceed attempts"));
        }
        for (field, value) in [
            ("p50LatencyMs", backend.p50_latency_ms),
            ("p95LatencyMs", backend.p95_latency_ms),
        ] {
            if value.is_some_and(|ms| !ms.is_finite() || ms < 0.0) {
                problems.push(format!(
                    "backends[{i}].{field}: must be a non-negative number"
                ));
            }
        }
        if backend
            .last_error
            .as_ref()
            .is_some_and(|class| class.len() > MAX_ERROR_CLASS)
        {
            problems.push(format!(
                "backends[{i}].lastError: an error class of at most {MAX_ERROR_CLASS} characters, never a message"
            ));
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems)
    }
}

/// `namespace/name`.
fn object_id(problems: &mut Vec<String>, field: &str, id: &str) {
    let valid = id.split_once('/').is_some_and(|(namespace, name)| {
        !namespace.is_empty() && !name.is_empty() && !name.contains('/')
    }) && id.len() <= 317;
    if !valid {
        problems.push(format!("{field}: {id:?} is not namespace/name"));
    }
}

#[cfg(test)]
mod tests {
    use chrono::DateTime;
    use sluice_crds::usage::{BackendHealthReport, Reporter, UsageDelta};

    use super::*;

    fn report() -> UsageReport {
        UsageReport {
            protocol: PROTOCOL_VERSION,
            reporter: Reporter {
                pod: "gw-0".into(),
                instance: "a1".into(),
            },
            sequence: 1,
            gateway: "default".into(),
            config_hash: "h".into(),
            sent_at: DateTime::UNIX_EPOCH,
            last: false,
            usage: vec![UsageDelta {
                key: "team/app".into(),
                route: "team/chat".into(),
                budgets: vec!["team/monthly".into()],
                requests: 1,
                last_used: DateTime::UNIX_EPOCH,
                ..UsageDelta::default()
            }],
            backends: vec![],
            budgets: vec![],
        }
    }

    #[test]
    fn a_well_formed_report_passes() {
        assert_eq!(validate(&report(), "default"), Ok(()));
        let mut unconfigured = report();
        unconfigured.gateway = String::new();
        assert_eq!(validate(&unconfigured, "default"), Ok(()));
    }

    #[test]
    fn every_problem_is_listed_with_its_field() {
        let mut bad = report();
        bad.protocol = 2;
        bad.sequence = 0;
        bad.usage[0].key = "app".into();
        bad.usage[0].failed_requests = 5;
        bad.backends = vec![BackendHealthReport {
            route: "team/chat".into(),
            backend: "a".into(),
            attempts: 1,
            failures: 2,
            p95_latency_ms: Some(f64::NAN),
            ..BackendHealthReport::default()
        }];
        let problems = validate(&bad, "other").expect_err("invalid");
        let text = problems.join("\n");
        for expected in [
            "protocol: version 2",
            "sequence",
            "gateway: \"default\"",
            "usage[0].key",
            "usage[0]: failedRequests",
            "backends[0]: failures",
            "backends[0].p95LatencyMs",
        ] {
            assert!(text.contains(expected), "{expected} missing in:\n{text}");
        }
    }
}
