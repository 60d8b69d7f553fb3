//! The first recipes deploy on the simulator, and their plans show what a
//! real backend would be asked to do.

use std::time::Duration;

use proximity::backend::sim::{ExecRule, SimBackend, SimScript};
use proximity::events::EventKind;
use proximity::plan::PlanStep;
use proximity::runtime::{ActionResult, RunFailure, Runtime, RuntimeConfig};
use proximity_tests::plan::{exec_timeout_ms, execs, secret, written};
use proximity_tests::{install, recipe, sim_for, uninstall_on};

fn runtime() -> Runtime {
    Runtime::new(RuntimeConfig::default()).expect("runtime starts")
}

#[tokio::test]
async fn nginx_installs_natively_and_the_plan_shows_every_operation() {
    let nginx = recipe("recipes/nginx");
    let sim = sim_for(&nginx, vec![]);
    let run = install(&runtime(), &nginx, &[("greeting", "Hello from the test")], &sim).await;
    let outcome = run.outcome.expect("nginx installs on sim");
    let ActionResult::Installed { app } = &outcome.result else { panic!("install result expected") };
    let plan = sim.plan();

    let PlanStep::CreateLxc { spec, .. } = &plan[0] else { panic!("first operation creates the container: {plan:?}") };
    assert_eq!(spec.hostname, run.prepared.subject.app_id);
    assert!(spec.os_template.starts_with("debian"), "{spec:?}");
    assert!(spec.unprivileged);
    assert!(spec.tags.contains(&"proximity".to_string()));

    let commands = execs(&plan);
    assert!(
        commands
            .iter()
            .any(|argv| argv.first().map(String::as_str) == Some("apt-get") && argv.contains(&"nginx".to_string())),
        "nginx is installed with apt-get: {commands:?}"
    );
    let (_, page) = written(&plan, "/var/www/html/index.html").expect("the site is written");
    assert!(page.contains("Hello from the test"), "{page}");
    assert!(
        plan.iter().any(|s| matches!(s, PlanStep::WaitTcp { port: 80, .. } | PlanStep::WaitHttp { .. })),
        "{plan:?}"
    );

    let url = app.url.as_deref().expect("nginx reports its URL");
    assert!(url.starts_with("http://198.18."), "{url}");
    assert_eq!(outcome.created.len(), 1);
    let steps: Vec<&str> = run
        .events
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::Step { name } => Some(name.as_str()),
            _ => None,
        })
        .collect();
    assert!(steps.len() >= 3, "progress shows each step: {steps:?}");
}

#[tokio::test]
async fn wordpress_follows_the_docker_compose_flow_with_generated_secrets() {
    let wordpress = recipe("recipes/wordpress");
    let sim = sim_for(&wordpress, vec![]);
    let run = install(&runtime(), &wordpress, &[], &sim).await;
    run.outcome.as_ref().expect("wordpress installs on sim");
    let plan = sim.plan();

    let PlanStep::CreateLxc { spec, .. } = &plan[0] else { panic!("first operation creates the container: {plan:?}") };
    assert!(spec.features.nesting && spec.features.keyctl, "Docker in LXC needs nesting and keyctl: {spec:?}");
    assert!(spec.unprivileged);

    let commands = execs(&plan);
    let position = |needle: &[&str]| {
        commands
            .iter()
            .position(|argv| needle.iter().all(|n| argv.iter().any(|a| a == n)))
            .unwrap_or_else(|| panic!("no command with {needle:?} in {commands:#?}"))
    };
    let install_docker = position(&["docker"]);
    let info = position(&["docker", "info"]);
    let pull = position(&["pull"]);
    let up = position(&["up", "-d"]);
    let ps = position(&["ps"]);
    assert!(install_docker <= info && info < pull && pull < up && up < ps, "steps in order: {commands:#?}");

    // The compose file carries the generated passwords, never fixed ones.
    let password = secret(&run.prepared.subject.params, "db-password");
    let root_password = secret(&run.prepared.subject.params, "db-root-password");
    assert!(password.len() >= 16 && root_password.len() >= 16);
    assert_ne!(password, root_password);
    let compose = plan
        .iter()
        .find_map(|s| match s {
            PlanStep::WriteFile { path, text, .. } if path.ends_with("docker-compose.yml") => text.clone(),
            _ => None,
        })
        .expect("docker-compose.yml is written");
    assert!(compose.contains(&password) && compose.contains(&root_password));
    assert!(compose.contains("wordpress") && compose.contains("mariadb"), "{compose}");

    // Step timeouts from the parameters' defaults reach the backend.
    assert_eq!(exec_timeout_ms(&plan, "pull"), 600_000);

    // Secrets never appear in events.
    for event in &run.events {
        let text = format!("{event:?}");
        assert!(!text.contains(&password) && !text.contains(&root_password), "secret leaked in {text}");
    }

    // A second deployment gets other secrets.
    let again = install(&runtime(), &wordpress, &[], &sim_for(&wordpress, vec![])).await;
    assert_ne!(secret(&again.prepared.subject.params, "db-password"), password);
}

#[tokio::test]
async fn a_failing_command_fails_the_step_with_its_stderr_and_cleans_up() {
    let wordpress = recipe("recipes/wordpress");
    let sim =
        sim_for(&wordpress, vec![ExecRule::words(&["compose", "pull"]).fails(1, "manifest unknown: wordpress:nope")]);
    let run = install(&runtime(), &wordpress, &[], &sim).await;
    let err = run.outcome.expect_err("the pull fails");
    let RunFailure::Recipe(recipe_error) = &err.failure else { panic!("{err:?}") };
    assert_eq!(recipe_error.kind, "backend");
    assert!(recipe_error.message.contains("manifest unknown"), "stderr is in the error: {recipe_error}");
    assert!(err.step.as_deref().is_some_and(|s| s.to_lowercase().contains("pull")), "the step is named: {err:?}");
    assert_eq!(err.destroyed.len(), 1);
    assert!(sim.containers().is_empty(), "the container is destroyed");
    assert!(matches!(sim.plan().last(), Some(PlanStep::Destroy { .. })));
}

// Paused time: the simulated 45 s pull and the 30 s timeout take no real time.
#[tokio::test(start_paused = true)]
async fn a_command_past_its_step_timeout_fails_with_timeout() {
    let wordpress = recipe("recipes/wordpress");
    let sim = sim_for(&wordpress, vec![ExecRule::words(&["compose", "pull"]).takes(Duration::from_secs(45))]);
    let run = install(&runtime(), &wordpress, &[("pull-timeout-secs", "30")], &sim).await;
    let err = run.outcome.expect_err("the pull times out");
    let RunFailure::Recipe(recipe_error) = &err.failure else { panic!("{err:?}") };
    assert_eq!(recipe_error.kind, "timeout", "{recipe_error}");
    assert!(recipe_error.message.contains("30s"), "{recipe_error}");
    assert!(sim.containers().is_empty(), "the container is destroyed");
}

#[tokio::test]
async fn a_backend_that_cannot_create_fails_cleanly() {
    let sim =
        SimBackend::new(SimScript { fail_create: Some("storage local-lvm is full".into()), ..Default::default() });
    let run = install(&runtime(), &recipe("recipes/nginx"), &[], &sim).await;
    let err = run.outcome.expect_err("create fails");
    let RunFailure::Recipe(recipe_error) = &err.failure else { panic!("{err:?}") };
    assert_eq!(recipe_error.kind, "backend");
    assert!(recipe_error.message.contains("storage local-lvm is full"), "{recipe_error}");
    assert!(err.destroyed.is_empty() && sim.containers().is_empty());
}

#[tokio::test]
async fn redis_keeps_its_generated_password_off_every_command_line() {
    let redis = recipe("recipes/redis");
    let sim = sim_for(&redis, vec![]);
    let run = install(&runtime(), &redis, &[("maxmemory-mb", "64")], &sim).await;
    let outcome = run.outcome.expect("redis installs on sim");
    let ActionResult::Installed { app } = &outcome.result else { panic!("install result expected") };
    assert!(app.url.as_deref().is_some_and(|u| u.starts_with("redis://") && u.ends_with(":6379")), "{app:?}");

    let password = secret(&run.prepared.subject.params, "password");
    let plan = sim.plan();
    let config = plan
        .iter()
        .find_map(|s| match s {
            PlanStep::WriteFile { path, mode, owner, text, .. } if path == "/etc/redis/redis.conf" => {
                Some((*mode, owner.clone(), text.clone().unwrap_or_default()))
            }
            _ => None,
        })
        .expect("the configuration is written");
    assert_eq!(config.0, 0o640);
    assert_eq!(config.1.as_deref(), Some("redis"));
    assert!(
        config.2.contains(&format!("requirepass {password}")) && config.2.contains("maxmemory 64mb"),
        "{}",
        config.2
    );

    for step in &plan {
        if let PlanStep::Exec { argv, env, .. } = step {
            assert!(!argv.iter().any(|a| a.contains(&password)), "password on a command line: {argv:?}");
            if argv.first().map(String::as_str) == Some("redis-cli") {
                assert!(env.iter().any(|(k, v)| k == "REDISCLI_AUTH" && v == &password), "{env:?}");
            }
        }
    }
}

#[tokio::test]
async fn uninstall_runs_the_recipe_then_destroys_the_apps_containers() {
    let nginx = recipe("recipes/nginx");
    let sim = sim_for(&nginx, vec![]);
    let runtime = runtime();
    let installed = install(&runtime, &nginx, &[], &sim).await;
    let created = installed.outcome.expect("nginx installs").created;
    assert_eq!(sim.containers().len(), 1);

    let removed =
        uninstall_on(&runtime, &nginx, &installed.prepared, created.clone(), std::sync::Arc::new(sim.clone()))
            .await
            .expect("uninstall succeeds");
    assert!(matches!(removed.result, ActionResult::Uninstalled));
    assert_eq!(removed.destroyed, vec![created[0].id.clone()]);
    assert!(sim.containers().is_empty(), "the container is gone");
    assert!(matches!(sim.plan().last(), Some(PlanStep::Destroy { .. })), "{:?}", sim.plan());
}
