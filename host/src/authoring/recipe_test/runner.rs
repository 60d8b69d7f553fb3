//! Running the cases of a test file against the simulator and comparing what
//! happened with what was expected.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use anyhow::{bail, Context as _, Result};

use super::format::{self, Case, CaseAction, CommandsMatch, Expect, FileExpect, ResultExpect};
use super::report::{BuildNote, CaseReport, Failure, SuiteReport};
use super::vars::Vars;
use crate::backend::sim::{SimBackend, SimScript};
use crate::backend::Backend as _;
use crate::catalog::CatalogEntry;
use crate::deploy::{prepare, DeployInput};
use crate::events::{EventKind, EventSink, Redactor};
use crate::manifest::{ParamValue, ResourceOverrides};
use crate::plan::PlanStep;
use crate::runtime::{Action, ActionResult, LoadedRecipe, RunError, RunFailure, RunOutcome, Runtime};

/// When `run_tests` builds the recipe first.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum BuildPolicy {
    /// When its component is missing, or a source file changed since it was built.
    #[default]
    IfStale,
    Always,
    /// Test the component as it is (an error when there is none).
    Never,
}

#[derive(Clone, Debug, Default)]
pub struct TestOptions {
    pub build: BuildPolicy,
    /// Cargo target directory for the build (see `proximity_builder::BuildOptions`).
    pub cargo_target_dir: Option<PathBuf>,
    /// Run only the cases whose name contains this.
    pub filter: Option<String>,
    /// The test file (default: `recipe.test.toml` in the recipe directory).
    pub test_file: Option<PathBuf>,
}

/// Run every case of the recipe in `dir`'s test file. An `Err` is a problem
/// with the recipe, its build or the test file; failed cases are in the report.
pub async fn run_tests(runtime: &Runtime, dir: &Path, options: &TestOptions) -> Result<SuiteReport> {
    let test_file = options.test_file.clone().unwrap_or_else(|| dir.join(format::TEST_FILE));
    if !test_file.is_file() {
        bail!(
            "{} does not exist: write the recipe's test cases there (`proximity recipe new` makes an example)",
            test_file.display()
        );
    }
    let file = format::load(&test_file)?;
    let entry = CatalogEntry::load(dir)?;
    let (component, build) = ensure_component(dir, options).await?;
    let recipe = runtime.load(&component).await?;

    let mut report = SuiteReport {
        recipe_id: entry.manifest.recipe.id.clone(),
        test_file,
        build,
        cases: Vec::new(),
        filtered_out: 0,
    };
    for case in &file.cases {
        if options.filter.as_deref().is_some_and(|filter| !case.name.contains(filter)) {
            report.filtered_out += 1;
            continue;
        }
        report.cases.push(run_case(runtime, &recipe, &entry, case).await?);
    }
    Ok(report)
}

/// The recipe's component, built first as `options.build` says.
async fn ensure_component(dir: &Path, options: &TestOptions) -> Result<(PathBuf, BuildNote)> {
    let component = proximity_builder::component_path(dir);
    let build = match options.build {
        BuildPolicy::Always => true,
        BuildPolicy::Never => {
            if !component.is_file() {
                bail!("{} is not built (run `proximity recipe build {}`)", component.display(), dir.display());
            }
            false
        }
        BuildPolicy::IfStale => is_stale(dir),
    };
    if !build {
        return Ok((component, BuildNote::UpToDate));
    }
    let started = Instant::now();
    let (dir_owned, target) = (dir.to_path_buf(), options.cargo_target_dir.clone());
    let built = tokio::task::spawn_blocking(move || {
        proximity_builder::build_recipe(
            &dir_owned,
            &proximity_builder::BuildOptions {
                cargo_target_dir: target,
                cargo_output: proximity_builder::CargoOutput::Capture,
                ..Default::default()
            },
        )
    })
    .await
    .context("the build thread failed")?
    .with_context(|| format!("building the recipe in {}", dir.display()))?;
    // The builder leaves an unchanged component untouched; the marker records
    // that the sources were checked, so the next run does not build again.
    let _ = std::fs::write(checked_marker(dir), b"");
    Ok((built.component, BuildNote::Built { rebuilt: built.rebuilt, duration: started.elapsed() }))
}

/// Whether the recipe in `dir` has no component, or a source file changed
/// since it was built (or since `run_tests` last found it up to date).
pub fn is_stale(dir: &Path) -> bool {
    let component = proximity_builder::component_path(dir);
    let built = [component.clone(), checked_marker(dir)].iter().filter_map(|p| mtime(p)).max();
    match built {
        Some(built) if component.is_file() => newest_source(dir).is_some_and(|(newest, _)| newest > built),
        _ => true,
    }
}

/// Touched after each build: the builder leaves an unchanged component as it was.
fn checked_marker(dir: &Path) -> PathBuf {
    dir.join("target").join(".recipe-test-checked")
}

fn mtime(path: &Path) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

/// The newest file a build reads, with its modification time: everything in
/// the recipe directory but build output and the files only the host reads.
pub fn newest_source(dir: &Path) -> Option<(SystemTime, PathBuf)> {
    const HOST_ONLY: [&str; 3] = [format::TEST_FILE, crate::backend::sim::SIM_SCRIPT_FILE, "recipe.toml"];
    const NOT_READ: [&str; 4] = ["target", ".git", "node_modules", "__pycache__"];
    let mut newest: Option<(SystemTime, PathBuf)> = None;
    let mut pending = vec![dir.to_path_buf()];
    while let Some(current) = pending.pop() {
        let Ok(entries) = std::fs::read_dir(&current) else { continue };
        for entry in entries.flatten() {
            let name = entry.file_name();
            let Ok(meta) = entry.metadata() else { continue };
            if meta.is_dir() {
                if !NOT_READ.iter().any(|n| name == *n) {
                    pending.push(entry.path());
                }
            } else if current == dir && HOST_ONLY.iter().any(|f| name == *f) {
                continue;
            } else if let Ok(modified) = meta.modified() {
                if newest.as_ref().is_none_or(|(time, _)| modified > *time) {
                    newest = Some((modified, entry.path()));
                }
            }
        }
    }
    newest
}

/// What one case's run left behind, for the comparisons.
struct Observed {
    steps: Vec<PlanStep>,
    events: Vec<EventKind>,
    outcome: Result<RunOutcome, RunError>,
}

async fn run_case(runtime: &Runtime, recipe: &LoadedRecipe, entry: &CatalogEntry, case: &Case) -> Result<CaseReport> {
    let started = Instant::now();
    let mut report = CaseReport {
        name: case.name.clone(),
        action: case.action,
        duration: Duration::ZERO,
        failures: Vec::new(),
        plan: Vec::new(),
        log: Vec::new(),
    };
    let (base, script) = scripts_for(entry, case)?;
    // An install case runs on the case's script from the start; other actions
    // act on an app installed on the base script, then switch to it.
    let setup_sim = SimBackend::new(if case.action == CaseAction::Install { script.clone() } else { base });
    let sim = setup_sim.with_script(script);
    let manifest = entry.manifest.clone();
    let mut params = BTreeMap::new();
    for (name, value) in &case.params {
        params.insert(name.clone(), format::param_text(value)?);
    }
    let input = DeployInput {
        params,
        resources: ResourceOverrides {
            cores: case.resources.cores,
            memory_mb: case.resources.memory_mb,
            swap_mb: case.resources.swap_mb,
            disk_gb: case.resources.disk_gb,
        },
        node: case.node.clone(),
        app_id: Some(case.app_id.clone().unwrap_or_else(|| format!("{}-test", manifest.recipe.id))),
        keep_failed: false,
    };
    let prepared = match prepare(manifest.clone(), input) {
        Ok(prepared) => prepared,
        Err(problems) => {
            check_rejected_params(&case.expect, &problems.to_string(), &mut report.failures);
            report.duration = started.elapsed();
            return Ok(report);
        }
    };
    let backend = Arc::new(sim.clone());

    // Every action but install acts on an installed app: install it first.
    let mut app_containers = Vec::new();
    if case.action != CaseAction::Install {
        let setup = Arc::new(setup_sim);
        let request = prepared.install_request(setup.clone(), setup, EventSink::discard());
        match runtime.run(recipe, request).await {
            Ok(outcome) => app_containers = outcome.created,
            Err(err) => {
                report.failures.push(Failure::Setup { message: err.to_string() });
                report.duration = started.elapsed();
                return Ok(report);
            }
        }
    }
    let first_step = sim.plan().len();
    let action = match case.action {
        CaseAction::Install => Action::Install,
        CaseAction::Uninstall => Action::Uninstall,
        CaseAction::Health => Action::Health,
        CaseAction::Upgrade => Action::Upgrade {
            from_version: case.from_version.clone().unwrap_or_else(|| manifest.recipe.version.to_string()),
        },
    };
    let (events, mut receiver) = EventSink::channel(Redactor::default());
    let request = prepared.request(action, app_containers, backend.clone(), backend.clone(), events);
    let outcome = runtime.run(recipe, request).await;
    let mut observed_events = Vec::new();
    while let Ok(event) = receiver.try_recv() {
        observed_events.push(event.kind);
    }
    let observed = Observed { steps: sim.plan().split_off(first_step), events: observed_events, outcome };

    let vars = vars_for(&prepared.subject, &sim).await;
    compare(entry, case, &observed, &vars, &sim, &mut report.failures);
    report.plan = observed.steps.clone();
    report.plan.iter_mut().for_each(|step| step.redact(&|text| vars.show(text)));
    report.log = observed.events.iter().map(|kind| vars.show(&event_line(kind))).collect();
    report.duration = started.elapsed();
    Ok(report)
}

/// The base script: the recipe's `sim.toml` (unless the case turns it off)
/// and the case's files; and the case's script: the base with the case's
/// exec rules, probe answers and faults on top.
fn scripts_for(entry: &CatalogEntry, case: &Case) -> Result<(SimScript, SimScript)> {
    let mut base = if case.sim_toml { SimScript::for_recipe(&entry.dir)? } else { SimScript::default() };
    for file in &case.files {
        base.files.insert(file.path.clone(), file.contents.clone().into_bytes());
    }
    let mut script = base.clone();
    script.exec_rules.splice(0..0, case.exec.iter().cloned());
    if case.http_status.is_some() {
        script.http_status = case.http_status;
    }
    script.closed_ports.extend(&case.closed_ports);
    if case.fail_create.is_some() {
        script.fail_create = case.fail_create.clone();
    }
    Ok((base, script))
}

async fn vars_for(subject: &crate::runtime::RunSubject, sim: &SimBackend) -> Vars {
    let mut vars = Vars::default();
    for (name, value) in &subject.params.values {
        match value {
            ParamValue::Text(text) if subject.params.is_secret(name) => vars.secret(name, text),
            ParamValue::Text(text) => vars.set(&format!("param.{name}"), text.clone()),
            ParamValue::Integer(i) => vars.set(&format!("param.{name}"), i.to_string()),
            ParamValue::Boolean(b) => vars.set(&format!("param.{name}"), b.to_string()),
        }
    }
    vars.set("app-id", subject.app_id.clone());
    vars.set("deployment-id", subject.deployment_id.clone());
    // The first container of the app that is still there.
    let first = sim.containers().into_iter().min_by_key(|c| c.vmid);
    let address = match first {
        Some(c) => sim.address(&c.container, Duration::ZERO).await.ok(),
        None => None,
    };
    match address {
        Some(address) => vars.set("address", address),
        None => vars.unavailable("address", "no running container is left after the run"),
    }
    vars
}

fn event_line(kind: &EventKind) -> String {
    match kind {
        EventKind::Step { name } => format!("▸ {name}"),
        EventKind::Log { level, message } => format!("{}: {message}", format!("{level:?}").to_lowercase()),
        EventKind::Host { message } => format!("host: {message}"),
    }
}

fn check_rejected_params(expect: &Expect, problems: &str, failures: &mut Vec<Failure>) {
    let Some(error) = &expect.error else {
        failures.push(Failure::Params { message: problems.to_string() });
        return;
    };
    let kind_ok = error.kind.as_deref().is_none_or(|kind| kind == "invalid-params");
    let message_ok = error.message.as_deref().is_none_or(|needle| problems.contains(needle));
    if !(kind_ok && message_ok) {
        failures.push(Failure::Error {
            expected: describe_expected_error(error),
            actual: format!("invalid-params: {problems}"),
        });
    }
}

fn describe_expected_error(error: &format::ErrorExpect) -> String {
    let kind = error.kind.as_deref().unwrap_or("any kind");
    match &error.message {
        Some(message) => format!("{kind}: …{message}…"),
        None => kind.to_string(),
    }
}

fn compare(
    entry: &CatalogEntry,
    case: &Case,
    observed: &Observed,
    vars: &Vars,
    sim: &SimBackend,
    failures: &mut Vec<Failure>,
) {
    let expect = &case.expect;
    compare_outcome(expect, &observed.outcome, vars, failures);
    if let Some(commands) = &expect.commands {
        compare_commands(commands, expect.commands_match, &observed.steps, vars, failures);
    }
    if let Some(steps) = &expect.steps {
        let actual: Vec<String> = observed
            .events
            .iter()
            .filter_map(|kind| match kind {
                EventKind::Step { name } => Some(vars.show(name)),
                _ => None,
            })
            .collect();
        match steps.iter().map(|s| vars.fill(s)).collect::<Result<Vec<_>, _>>() {
            Ok(expected) if expected.iter().map(|s| vars.show(s)).eq(actual.iter().cloned()) => {}
            Ok(expected) => {
                failures.push(Failure::Steps { expected: expected.iter().map(|s| vars.show(s)).collect(), actual })
            }
            Err(message) => failures.push(Failure::Expectation { message: format!("expect.steps: {message}") }),
        }
    }
    if !expect.files.is_empty() {
        let written = written_files(&observed.steps, sim);
        for file in &expect.files {
            compare_file(entry, file, &written, vars, failures);
        }
    }
}

fn compare_outcome(expect: &Expect, outcome: &Result<RunOutcome, RunError>, vars: &Vars, failures: &mut Vec<Failure>) {
    match (outcome, &expect.error) {
        (Ok(_), Some(error)) => failures
            .push(Failure::Error { expected: describe_expected_error(error), actual: "the run succeeded".to_string() }),
        (Err(err), None) => failures.push(Failure::RunFailed { message: vars.show(&err.to_string()) }),
        (Err(err), Some(error)) => {
            let kind = failure_kind(&err.failure);
            let message = err.to_string();
            let kind_ok = error.kind.as_deref().is_none_or(|want| want == kind);
            let message_ok = match error.message.as_deref().map(|m| vars.fill(m)) {
                None => true,
                Some(Ok(needle)) => message.contains(&needle),
                Some(Err(problem)) => {
                    failures.push(Failure::Expectation { message: format!("expect.error.message: {problem}") });
                    true
                }
            };
            if !(kind_ok && message_ok) {
                failures.push(Failure::Error {
                    expected: describe_expected_error(error),
                    actual: vars.show(&format!("{kind}: {message}")),
                });
            }
        }
        (Ok(outcome), None) => {
            if let Some(result) = &expect.result {
                compare_result(result, &outcome.result, vars, failures);
            }
        }
    }
}

/// The name `expect.error.kind` uses for a failure.
pub fn failure_kind(failure: &RunFailure) -> &'static str {
    match failure {
        RunFailure::Recipe(error) => error.kind,
        RunFailure::Deadline(_) => "deadline",
        RunFailure::MemoryLimit(_) => "memory-limit",
        RunFailure::Crashed(_) => "crashed",
        RunFailure::Instantiate(_) => "instantiate",
        RunFailure::Cancelled => "cancelled",
    }
}

fn compare_result(expect: &ResultExpect, actual: &ActionResult, vars: &Vars, failures: &mut Vec<Failure>) {
    let mut field = |name: &str, expected: Option<String>, actual: String| {
        let Some(expected) = expected else { return };
        match vars.fill(&expected) {
            Ok(expected) if expected == actual => {}
            Ok(expected) => failures.push(Failure::Result {
                field: name.to_string(),
                expected: vars.show(&expected),
                actual: vars.show(&actual),
            }),
            Err(problem) => failures.push(Failure::Expectation { message: format!("expect.result.{name}: {problem}") }),
        }
    };
    let none = || "(none)".to_string();
    match actual {
        ActionResult::Installed { app } | ActionResult::Upgraded { app } => {
            field("url", expect.url.clone(), app.url.clone().unwrap_or_else(none));
            field("address", expect.address.clone(), app.address.clone().unwrap_or_else(none));
            field("ports", expect.ports.as_ref().map(|p| format!("{p:?}")), format!("{:?}", app.ports));
            if let Some(outputs) = &expect.outputs {
                let mut filled = BTreeMap::new();
                for (name, value) in outputs {
                    match vars.fill(value) {
                        Ok(value) => _ = filled.insert(name.clone(), value),
                        Err(problem) => {
                            failures.push(Failure::Expectation {
                                message: format!("expect.result.outputs.{name}: {problem}"),
                            });
                            return;
                        }
                    }
                }
                let actual: BTreeMap<String, String> = app.outputs.iter().cloned().collect();
                if filled != actual {
                    failures.push(Failure::Result {
                        field: "outputs".into(),
                        expected: vars.show(&format!("{filled:?}")),
                        actual: vars.show(&format!("{actual:?}")),
                    });
                }
            }
        }
        ActionResult::Health { report } => {
            field("healthy", expect.healthy.map(|h| h.to_string()), report.healthy.to_string());
            for (name, ok) in expect.checks.iter().flatten() {
                let found = report.checks.iter().find(|check| &check.name == name);
                let actual = match found {
                    Some(check) if check.ok => format!("ok ({})", check.detail),
                    Some(check) => format!("failed ({})", check.detail),
                    None => {
                        let names: Vec<&str> = report.checks.iter().map(|c| c.name.as_str()).collect();
                        format!("not reported (checks: {})", names.join(", "))
                    }
                };
                if found.is_none_or(|check| check.ok != *ok) {
                    failures.push(Failure::Result {
                        field: format!("checks.{name}"),
                        expected: if *ok { "ok" } else { "failed" }.to_string(),
                        actual: vars.show(&actual),
                    });
                }
            }
        }
        ActionResult::Uninstalled => {}
    }
}

/// One argv as a line of a diff, written as in the test file.
pub fn argv_line(argv: &[String]) -> String {
    let quoted: Vec<String> = argv.iter().map(|arg| serde_json::to_string(arg).unwrap_or_default()).collect();
    format!("[{}]", quoted.join(", "))
}

fn compare_commands(
    expected: &[Vec<String>],
    mode: CommandsMatch,
    steps: &[PlanStep],
    vars: &Vars,
    failures: &mut Vec<Failure>,
) {
    let actual: Vec<&Vec<String>> = steps
        .iter()
        .filter_map(|step| match step {
            PlanStep::Exec { argv, .. } => Some(argv),
            _ => None,
        })
        .collect();
    let mut filled = Vec::with_capacity(expected.len());
    for argv in expected {
        match argv.iter().map(|arg| vars.fill(arg)).collect::<Result<Vec<_>, _>>() {
            Ok(argv) => filled.push(argv),
            Err(problem) => {
                failures.push(Failure::Expectation { message: format!("expect.commands: {problem}") });
                return;
            }
        }
    }
    let matches = match mode {
        CommandsMatch::Exact => filled.len() == actual.len() && filled.iter().zip(&actual).all(|(a, b)| a == *b),
        CommandsMatch::InOrder => {
            let mut rest = actual.iter();
            filled.iter().all(|want| rest.any(|got| *got == want))
        }
    };
    if !matches {
        failures.push(Failure::Commands {
            mode,
            expected: filled.iter().map(|argv| vars.show(&argv_line(argv))).collect(),
            actual: actual.iter().map(|argv| vars.show(&argv_line(argv))).collect(),
        });
    }
}

/// A file as the run last wrote it.
struct Written {
    mode: u32,
    owner: Option<String>,
    group: Option<String>,
    size: usize,
    /// `None` for binary files (and large ones whose container is gone).
    text: Option<String>,
}

fn written_files(steps: &[PlanStep], sim: &SimBackend) -> BTreeMap<String, Written> {
    let containers = sim.containers();
    let mut files = BTreeMap::new();
    for step in steps {
        let PlanStep::WriteFile { id, path, mode, owner, group, size, sha256, text } = step else { continue };
        // The plan keeps short texts only; the container has the whole file.
        let text = text.clone().or_else(|| {
            let file = containers.iter().find(|c| &c.container.id == id)?.files.get(path)?;
            use sha2::Digest as _;
            (hex::encode(sha2::Sha256::digest(&file.contents)) == *sha256)
                .then(|| String::from_utf8(file.contents.clone()).ok())
                .flatten()
        });
        files.insert(
            path.clone(),
            Written { mode: *mode, owner: owner.clone(), group: group.clone(), size: *size, text },
        );
    }
    files
}

fn compare_file(
    entry: &CatalogEntry,
    expect: &FileExpect,
    written: &BTreeMap<String, Written>,
    vars: &Vars,
    failures: &mut Vec<Failure>,
) {
    let path = &expect.path;
    let Some(file) = written.get(path) else {
        failures.push(Failure::FileMissing { path: path.clone(), written: written.keys().cloned().collect() });
        return;
    };
    let mut problem = |message: String| failures.push(Failure::Expectation { message: format!("{path}: {message}") });
    let expected_contents = match (&expect.contents, &expect.contents_file) {
        (Some(text), _) => Some(text.clone()),
        (None, Some(rel)) => match std::fs::read_to_string(entry.dir.join(rel)) {
            Ok(text) => Some(text),
            Err(err) => return problem(format!("cannot read contents-file {}: {err}", entry.dir.join(rel).display())),
        },
        (None, None) => None,
    };
    let needs_text = expected_contents.is_some() || expect.contains.is_some();
    let actual = match (&file.text, needs_text) {
        (Some(text), _) => text.as_str(),
        (None, true) => {
            return problem(format!("the file is not text ({} bytes): its contents cannot be compared", file.size))
        }
        (None, false) => "",
    };
    if let Some(expected) = expected_contents {
        match vars.fill(&expected) {
            Ok(expected) if expected == actual => {}
            Ok(expected) => failures.push(Failure::FileContents {
                path: path.clone(),
                expected: vars.show(&expected),
                actual: vars.show(actual),
            }),
            Err(message) => failures.push(Failure::Expectation { message: format!("{path}: {message}") }),
        }
    }
    for needle in expect.contains.iter().flat_map(|c| c.items()) {
        match vars.fill(needle) {
            Ok(filled) if actual.contains(&filled) => {}
            Ok(_) => failures.push(Failure::FileContains {
                path: path.clone(),
                needle: needle.clone(),
                actual: vars.show(actual),
            }),
            Err(message) => failures.push(Failure::Expectation { message: format!("{path}: {message}") }),
        }
    }
    let mut attr = |name: &str, expected: Option<String>, actual: String| {
        if let Some(expected) = expected.filter(|e| *e != actual) {
            failures.push(Failure::FileAttribute { path: path.clone(), attribute: name.to_string(), expected, actual });
        }
    };
    attr("mode", expect.mode.map(|m| format!("0o{m:o}")), format!("0o{:o}", file.mode));
    let none = || "(none)".to_string();
    attr("owner", expect.owner.clone(), file.owner.clone().unwrap_or_else(none));
    attr("group", expect.group.clone(), file.group.clone().unwrap_or_else(none));
}
