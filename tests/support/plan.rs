//! Reading a simulator plan, a run's events and its parameters in the tests.

use proximity::events::{Event, EventKind};
use proximity::manifest::{ParamValue, ResolvedParams};
use proximity::plan::PlanStep;

/// Every command's argv, in order.
pub fn execs(plan: &[PlanStep]) -> Vec<Vec<String>> {
    plan.iter()
        .filter_map(|step| match step {
            PlanStep::Exec { argv, .. } => Some(argv.clone()),
            _ => None,
        })
        .collect()
}

/// The mode and text of the file written at `path`, if one was.
pub fn written(plan: &[PlanStep], path: &str) -> Option<(u32, String)> {
    plan.iter().find_map(|step| match step {
        PlanStep::WriteFile { path: p, mode, text, .. } if p == path => Some((*mode, text.clone().unwrap_or_default())),
        _ => None,
    })
}

/// The timeout of the first command with `word` among its arguments.
pub fn exec_timeout_ms(plan: &[PlanStep], word: &str) -> u64 {
    plan.iter()
        .find_map(|step| match step {
            PlanStep::Exec { argv, timeout_ms, .. } if argv.iter().any(|a| a == word) => Some(*timeout_ms),
            _ => None,
        })
        .unwrap_or_else(|| panic!("no command with `{word}` in {plan:#?}"))
}

/// A text parameter's value (a generated secret, say).
pub fn secret(params: &ResolvedParams, name: &str) -> String {
    match params.values.iter().find(|(n, _)| n == name) {
        Some((_, ParamValue::Text(value))) => value.clone(),
        other => panic!("secret {name} missing: {other:?}"),
    }
}

/// The progress steps a run reported, in order.
pub fn steps(events: &[Event]) -> Vec<String> {
    events
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::Step { name } => Some(name.clone()),
            _ => None,
        })
        .collect()
}
