//! The whole catalog: every recipe directory in `recipes/` (found by listing
//! it, so a new recipe is covered without touching this file) has a complete
//! manifest, passes its own `recipe.test.toml`, and goes through install,
//! health, upgrade and uninstall on the simulator with generated secrets that
//! never show in clear.
//!
//! Each test looks at every recipe and reports all the problems it found
//! together, naming the recipe, before failing.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use proximity::authoring::recipe_test::{self, BuildPolicy, CaseAction, TestOptions};
use proximity::backend::sim::SimBackend;
use proximity::backend::{ContainerRef, NoProxies};
use proximity::catalog::CatalogEntry;
use proximity::deploy::PreparedDeploy;
use proximity::events::{Event, EventSink};
use proximity::manifest::{ParamType, ParamValue};
use proximity::plan::PlanStep;
use proximity::runtime::{
    Action, ActionResult, LoadedRecipe, RunError, RunFailure, RunOutcome, Runtime, RuntimeConfig,
};
use proximity_tests::{install, load, recipe, repo_root, sim_for};

/// The apps of the original catalog: each must be here.
const ORIGINAL_CATALOG: [&str; 7] = ["wordpress", "nextcloud", "portainer", "nginx", "gitea", "n8n", "adminer"];

/// Interpreted recipes take seconds to compile: share the on-disk native code
/// cache with the other sim tests, so only the first run after a build pays.
fn runtime() -> Runtime {
    let cache_dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("polyglot-native-cache");
    Runtime::new(RuntimeConfig { cache_dir: Some(cache_dir), ..Default::default() }).expect("runtime starts")
}

/// Every directory of `recipes/` that holds a `recipe.toml`, sorted.
fn recipe_dirs() -> Vec<PathBuf> {
    let root = repo_root().join("recipes");
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(&root)
        .unwrap_or_else(|e| panic!("listing {}: {e}", root.display()))
        .map(|entry| entry.expect("a directory entry").path())
        .filter(|path| path.join("recipe.toml").is_file())
        .collect();
    dirs.sort();
    assert!(dirs.len() >= ORIGINAL_CATALOG.len(), "recipes/ holds too few recipes: {dirs:?}");
    dirs
}

fn rel(dir: &Path) -> String {
    dir.strip_prefix(repo_root()).unwrap_or(dir).to_string_lossy().into_owned()
}

/// Fails with every problem found, one per line.
fn assert_no_problems(what: &str, problems: &[String]) {
    assert!(problems.is_empty(), "{what}: {} problem(s):\n  {}", problems.len(), problems.join("\n  "));
}

/// Names that say a parameter holds a credential.
fn sounds_secret(name: &str) -> bool {
    ["password", "passwd", "secret", "token", "api-key", "encryption-key"].iter().any(|w| name.contains(w))
}

#[test]
fn the_original_catalog_is_all_there() {
    let ids: Vec<String> = recipe_dirs()
        .iter()
        .map(|d| CatalogEntry::load(d).expect("manifest loads").manifest.recipe.id.clone())
        .collect();
    for id in ORIGINAL_CATALOG {
        assert!(ids.iter().any(|i| i == id), "no recipe with id `{id}` in recipes/: {ids:?}");
    }
}

#[test]
fn every_manifest_has_notes_an_icon_and_no_fixed_password() {
    let mut problems = Vec::new();
    for dir in recipe_dirs() {
        let name = rel(&dir);
        let entry = match CatalogEntry::load(&dir) {
            Ok(entry) => entry,
            Err(e) => {
                problems.push(format!("{name}: the manifest does not load: {e:#}"));
                continue;
            }
        };
        let meta = &entry.manifest.recipe;
        match meta.notes.as_deref().map(str::trim) {
            Some(notes) if notes.len() >= 40 => {}
            other => problems.push(format!("{name}: `notes` should say what the app needs (got {other:?})")),
        }
        match &meta.icon {
            Some(icon) if dir.join(icon).is_file() => {
                let text = std::fs::read_to_string(dir.join(icon)).unwrap_or_default();
                if icon.ends_with(".svg") && !text.contains("<svg") {
                    problems.push(format!("{name}: {icon} is not an SVG image"));
                }
            }
            Some(icon) => problems.push(format!("{name}: icon {icon} is missing")),
            None => problems.push(format!("{name}: no icon")),
        }
        if meta.website.is_none() {
            problems.push(format!("{name}: no website"));
        }
        for spec in &entry.manifest.parameters {
            match spec.kind {
                ParamType::Secret if !(spec.generate || spec.required) => problems.push(format!(
                    "{name}: secret parameter `{}` is neither generated nor required",
                    spec.name
                )),
                ParamType::Secret if spec.default.is_some() => {
                    problems.push(format!("{name}: secret parameter `{}` has a fixed default", spec.name))
                }
                ParamType::String if sounds_secret(&spec.name) && spec.default.is_some() => problems.push(format!(
                    "{name}: `{}` looks like a credential but is a string with a fixed default: make it a generated secret",
                    spec.name
                )),
                _ => {}
            }
        }
        if !dir.join(recipe_test::TEST_FILE).is_file() {
            problems.push(format!("{name}: no {}", recipe_test::TEST_FILE));
        }
    }
    assert_no_problems("manifests", &problems);
}

/// Every recipe passes its `recipe.test.toml`, whose cases cover install,
/// upgrade, uninstall and health, and at least one failure.
#[tokio::test]
async fn every_recipe_passes_its_test_file() {
    let runtime = runtime();
    let options = TestOptions { build: BuildPolicy::Never, ..Default::default() };
    let mut problems = Vec::new();
    for dir in recipe_dirs() {
        let name = rel(&dir);
        if !dir.join(recipe_test::TEST_FILE).is_file() {
            problems.push(format!("{name}: no {}", recipe_test::TEST_FILE));
            continue;
        }
        let report = match recipe_test::run_tests(&runtime, &dir, &options).await {
            Ok(report) => report,
            Err(e) => {
                problems.push(format!("{name}: `recipe test` could not run: {e:#}"));
                continue;
            }
        };
        if !report.ok() {
            let rendered = recipe_test::render(&report, Default::default());
            problems.push(format!("{name}: {} case(s) failed:\n{rendered}", report.failed()));
        }
        for action in [CaseAction::Install, CaseAction::Upgrade, CaseAction::Uninstall, CaseAction::Health] {
            if !report.cases.iter().any(|c| c.action == action) {
                problems.push(format!("{name}: {} has no `{}` case", recipe_test::TEST_FILE, action.name()));
            }
        }
        if report.cases.len() < 5 {
            problems.push(format!("{name}: only {} test case(s); the catalog asks for several", report.cases.len()));
        }
        eprintln!("{name}: {} passed, {} failed", report.passed(), report.failed());
    }
    assert_no_problems("recipe tests", &problems);
}

/// One run of an export on an installed app, with its events.
async fn act(
    runtime: &Runtime,
    recipe: &LoadedRecipe,
    prepared: &PreparedDeploy,
    action: Action,
    containers: &[ContainerRef],
    sim: &SimBackend,
) -> (Result<RunOutcome, RunError>, Vec<Event>) {
    let (events, mut receiver) = EventSink::channel(prepared.redactor());
    let request = prepared.request(action, containers.to_vec(), Arc::new(sim.clone()), Arc::new(NoProxies), events);
    let outcome = runtime.run(recipe, request).await;
    let mut collected = Vec::new();
    while let Ok(event) = receiver.try_recv() {
        collected.push(event);
    }
    (outcome, collected)
}

/// The values of the secret parameters the host generated, by name.
fn generated_secrets(prepared: &PreparedDeploy) -> Vec<(String, String)> {
    let params = &prepared.subject.params;
    params
        .values
        .iter()
        .filter(|(name, _)| params.generated.contains(name))
        .filter_map(|(name, value)| match value {
            ParamValue::Text(text) => Some((name.clone(), text.clone())),
            _ => None,
        })
        .collect()
}

/// What follows the closing `"` of a double-quoted YAML string whose opening
/// quote came just before `rest` (escaped quotes skipped).
fn after_closing_quote(rest: &str) -> &str {
    let mut escaped = false;
    for (i, c) in rest.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' => escaped = true,
            '"' => return &rest[i + 1..],
            _ => {}
        }
    }
    ""
}

fn failure_text(err: &RunError) -> String {
    match &err.failure {
        RunFailure::Recipe(e) => format!("{}: {}", e.kind, e.message),
        other => other.to_string(),
    }
}

/// What is wrong with one recipe's life on the simulator: install with its
/// defaults, health, upgrade, uninstall.
async fn lifecycle_problems(runtime: &Runtime, dir: &Path) -> Vec<String> {
    let name = rel(dir);
    let mut problems = Vec::new();
    let entry = recipe(&name);
    let loaded = load(runtime, &entry).await;
    let manifest = &entry.manifest;

    // Install, with every parameter left to its default or generated.
    let sim = sim_for(&entry, vec![]);
    let run = install(runtime, &entry, &[], &sim).await;
    let outcome = match run.outcome {
        Ok(outcome) => outcome,
        Err(err) => return vec![format!("{name}: install failed on the simulator: {}", failure_text(&err))],
    };
    let prepared = run.prepared;
    let containers = outcome.created.clone();
    if containers.is_empty() {
        problems.push(format!("{name}: install created no container"));
    }
    match &outcome.result {
        ActionResult::Installed { app } => match (&app.url, &app.address) {
            (Some(url), address) => {
                if !url.contains("198.18.") || !url.contains("://") {
                    problems.push(format!("{name}: the result URL {url} does not point at the container's address"));
                }
                if let Some(address) = address {
                    if !url.contains(address.as_str()) {
                        problems.push(format!("{name}: the result URL {url} is not at its address {address}"));
                    }
                }
            }
            (None, _) => problems.push(format!("{name}: install reports no URL")),
        },
        other => problems.push(format!("{name}: install returned {other:?}")),
    }

    // Compose files as written: every placeholder filled, and no list item
    // that starts as a quoted string and goes on after it (`- "a":b`), which
    // YAML rejects.
    for step in &sim.plan() {
        if let PlanStep::WriteFile { path, text: Some(text), .. } = step {
            if !(path.ends_with("compose.yml") || path.ends_with("compose.yaml")) {
                continue;
            }
            if text.contains("{{") {
                problems.push(format!("{name}: {path} has an unfilled placeholder"));
            }
            for line in text.lines() {
                let item = line.trim_start().strip_prefix("- ").unwrap_or("");
                if let Some(rest) = item.strip_prefix('"') {
                    let after = after_closing_quote(rest);
                    if !after.trim().is_empty() && !after.trim_start().starts_with('#') {
                        problems.push(format!("{name}: {path}: `{}` is not valid YAML", line.trim()));
                    }
                }
            }
        }
    }

    // Generated secrets: the manifest's length and alphabet, never on a
    // command line, never in the plan or the events as shown.
    let secrets = generated_secrets(&prepared);
    for spec in manifest.parameters.iter().filter(|s| s.kind == ParamType::Secret && s.generate) {
        match secrets.iter().find(|(n, _)| *n == spec.name) {
            Some((_, value)) => {
                if value.chars().count() != spec.generated_length() as usize
                    || !value.chars().all(|c| c.is_ascii_alphanumeric())
                {
                    problems.push(format!(
                        "{name}: generated `{}` is not {} letters and digits",
                        spec.name,
                        spec.generated_length()
                    ));
                }
            }
            None => problems.push(format!("{name}: secret `{}` was not generated", spec.name)),
        }
    }
    let plan = sim.plan();
    let shown_plan = prepared.redactor().redact(&serde_json::to_string(&plan).expect("the plan serializes"));
    for (secret, value) in &secrets {
        if shown_plan.contains(value.as_str()) {
            problems.push(format!("{name}: generated `{secret}` shows in clear in the plan"));
        }
        for step in &plan {
            if let PlanStep::Exec { argv, .. } = step {
                if argv.iter().any(|a| a.contains(value.as_str())) {
                    problems.push(format!("{name}: generated `{secret}` is on a command line: {:?}", argv[0]));
                }
            }
        }
        if run.events.iter().any(|e| format!("{e:?}").contains(value.as_str())) {
            problems.push(format!("{name}: generated `{secret}` shows in the events"));
        }
    }
    for (i, (a, va)) in secrets.iter().enumerate() {
        for (b, vb) in &secrets[i + 1..] {
            if va == vb {
                problems.push(format!("{name}: `{a}` and `{b}` got the same value"));
            }
        }
    }
    // Another install gets other values.
    let again = install(runtime, &entry, &[], &sim_for(&entry, vec![])).await;
    let others = generated_secrets(&again.prepared);
    for (secret, value) in &secrets {
        if others.iter().any(|(n, v)| n == secret && v == value) {
            problems.push(format!("{name}: a second install got the same `{secret}`"));
        }
    }

    // Health on the app as installed: healthy.
    let (health, _) = act(runtime, &loaded, &prepared, Action::Health, &containers, &sim).await;
    match health {
        Ok(RunOutcome { result: ActionResult::Health { report }, .. }) if report.healthy => {}
        Ok(RunOutcome { result: ActionResult::Health { report }, .. }) => {
            problems.push(format!("{name}: unhealthy right after install: {:?}", report.checks))
        }
        Ok(other) => problems.push(format!("{name}: health returned {:?}", other.result)),
        Err(err) => problems.push(format!("{name}: health failed: {}", failure_text(&err))),
    }

    // Upgrade from an older version: supported, and still at the container's address.
    let before = sim.plan().len();
    let from = Action::Upgrade { from_version: "0.0.1".into() };
    let (upgrade, upgrade_events) = act(runtime, &loaded, &prepared, from, &containers, &sim).await;
    match upgrade {
        Ok(RunOutcome { result: ActionResult::Upgraded { app }, created, .. }) => {
            if app.url.as_deref().is_none_or(|u| !u.contains("198.18.")) {
                problems.push(format!("{name}: upgrade reports no URL at the container's address: {:?}", app.url));
            }
            if !created.is_empty() {
                problems.push(format!("{name}: upgrade created {} new container(s)", created.len()));
            }
            if sim.plan().len() == before {
                problems.push(format!("{name}: upgrade did nothing at all"));
            }
        }
        Ok(other) => problems.push(format!("{name}: upgrade returned {:?}", other.result)),
        Err(err) => {
            let text = failure_text(&err);
            if text.contains("upgrade not supported") {
                problems.push(format!("{name}: upgrade is not supported"));
            } else {
                problems.push(format!("{name}: upgrade failed: {text}"));
            }
        }
    }
    for (secret, value) in &secrets {
        if upgrade_events.iter().any(|e| format!("{e:?}").contains(value.as_str())) {
            problems.push(format!("{name}: generated `{secret}` shows in the upgrade's events"));
        }
    }
    if sim.containers().len() != containers.len() {
        problems.push(format!("{name}: the app has {} container(s) after upgrade", sim.containers().len()));
    }

    // Uninstall: the recipe's export, then the host destroys the containers.
    let (removed, _) = act(runtime, &loaded, &prepared, Action::Uninstall, &containers, &sim).await;
    match removed {
        Ok(RunOutcome { result: ActionResult::Uninstalled, destroyed, .. }) => {
            let ids: Vec<String> = containers.iter().map(|c| c.id.clone()).collect();
            if destroyed.iter().collect::<std::collections::BTreeSet<_>>() != ids.iter().collect() {
                problems.push(format!("{name}: uninstall destroyed {destroyed:?}, the app had {ids:?}"));
            }
        }
        Ok(other) => problems.push(format!("{name}: uninstall returned {:?}", other.result)),
        Err(err) => problems.push(format!("{name}: uninstall failed: {}", failure_text(&err))),
    }
    if !sim.containers().is_empty() {
        problems.push(format!("{name}: containers left after uninstall"));
    }
    problems
}

#[tokio::test]
async fn every_recipe_installs_upgrades_and_uninstalls_on_the_simulator() {
    let runtime = runtime();
    let mut problems = Vec::new();
    for dir in recipe_dirs() {
        let found = lifecycle_problems(&runtime, &dir).await;
        eprintln!(
            "{}: {}",
            rel(&dir),
            if found.is_empty() { "ok".to_string() } else { format!("{} problem(s)", found.len()) }
        );
        problems.extend(found);
    }
    assert_no_problems("sim lifecycle", &problems);
}

#[test]
fn the_compose_item_check_reads_quoted_strings() {
    assert_eq!(after_closing_quote(r#"80:80""#), "");
    assert_eq!(after_closing_quote(r#"/opt/app/secret":/run/secret:ro"#), ":/run/secret:ro");
    assert_eq!(after_closing_quote(r#"a\"b":c"#), ":c");
}
