//! The WIT world is the contract, whatever the recipe's language: a Python
//! recipe (adminer, componentize-py) and a JavaScript one (n8n, componentize-js)
//! deploy on the simulator like the Rust ones, and what they print reaches the
//! job's log through the host's sandboxed WASI.

use std::sync::Arc;
use std::time::Instant;

use proximity::backend::sim::ExecRule;
use proximity::events::{Event, EventKind, LogLevel};
use proximity::plan::PlanStep;
use proximity::runtime::{ActionResult, RunFailure, Runtime, RuntimeConfig};
use proximity_tests::plan::{exec_timeout_ms, execs, secret, steps, written};
use proximity_tests::{install, recipe, sim_for, uninstall_on};

/// Interpreter components take seconds to compile: the tests share the host's
/// on-disk native code cache (keyed by component digest and engine), so only the
/// first run after a rebuild pays for it.
fn runtime() -> Runtime {
    let cache_dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("polyglot-native-cache");
    Runtime::new(RuntimeConfig { cache_dir: Some(cache_dir), ..Default::default() }).expect("runtime starts")
}

/// The index of the first command holding all of `words`, in order.
fn position(commands: &[Vec<String>], words: &[&str]) -> usize {
    commands
        .iter()
        .position(|argv| {
            let mut rest = argv.iter();
            words.iter().all(|w| rest.any(|a| a == w))
        })
        .unwrap_or_else(|| panic!("no command with {words:?} in {commands:#?}"))
}

fn info_lines(events: &[Event]) -> Vec<String> {
    events
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::Log { level: LogLevel::Info, message } => Some(message.clone()),
            _ => None,
        })
        .collect()
}

#[tokio::test]
async fn adminer_in_python_installs_php_and_its_service_and_reports_the_url() {
    let adminer = recipe("recipes/adminer");
    let sim = sim_for(&adminer, vec![]);
    let runtime = runtime();
    let started = Instant::now();
    let run = install(&runtime, &adminer, &[("upload-limit-mb", "100")], &sim).await;
    eprintln!("adminer: first install (compile + run) took {:?}", started.elapsed());
    let outcome = run.outcome.expect("adminer installs on sim");
    let ActionResult::Installed { app } = &outcome.result else { panic!("install result expected") };
    let plan = sim.plan();

    let PlanStep::CreateLxc { spec, .. } = &plan[0] else { panic!("first operation creates the container: {plan:?}") };
    assert_eq!(spec.hostname, run.prepared.subject.app_id);
    assert_eq!(spec.os_template, "debian-12");
    assert!(spec.unprivileged && !spec.features.nesting && !spec.features.keyctl, "{spec:?}");
    assert!(spec.tags.contains(&"proximity".to_string()));

    let commands = execs(&plan);
    let update = position(&commands, &["apt-get", "update"]);
    let packages = position(&commands, &["apt-get", "install", "-y", "--no-install-recommends", "adminer", "php-cli"]);
    let reload = position(&commands, &["systemctl", "daemon-reload"]);
    let enable = position(&commands, &["systemctl", "enable", "--now", "adminer"]);
    assert!(update < packages && packages < reload && reload < enable, "in order: {commands:#?}");
    let apt_env = plan
        .iter()
        .find_map(|s| match s {
            PlanStep::Exec { argv, env, timeout_ms, .. } if argv.iter().any(|a| a == "install") => {
                Some((env.clone(), *timeout_ms))
            }
            _ => None,
        })
        .unwrap();
    assert!(apt_env.0.iter().any(|(k, v)| k == "DEBIAN_FRONTEND" && v == "noninteractive"), "{apt_env:?}");
    assert_eq!(apt_env.1, 600_000, "install-timeout-secs reaches the backend");

    let (mode, unit) =
        written(&plan, "/etc/systemd/system/adminer.service").expect("/etc/systemd/system/adminer.service");
    assert_eq!(mode, 0o644);
    assert!(
        unit.contains("ExecStart=/usr/bin/php -c /etc/adminer/php.ini -S 0.0.0.0:8080 /etc/adminer/conf.php"),
        "{unit}"
    );
    assert!(unit.contains("User=www-data"), "{unit}");
    let (_, php_ini) = written(&plan, "/etc/adminer/php.ini").expect("/etc/adminer/php.ini");
    assert!(php_ini.contains("upload_max_filesize = 100M") && php_ini.contains("memory_limit = 200M"), "{php_ini}");
    assert!(!unit.contains("{{") && !php_ini.contains("{{"), "placeholders are all filled");

    assert!(plan.iter().any(|s| matches!(s, PlanStep::WaitTcp { port: 8080, .. })), "{plan:?}");
    assert!(plan.iter().any(|s| matches!(s, PlanStep::WaitHttp { .. })), "{plan:?}");
    let url = app.url.as_deref().expect("adminer reports its URL");
    assert!(url.starts_with("http://198.18.") && url.ends_with(":8080/"), "{url}");
    assert_eq!(app.ports, vec![8080]);
    assert_eq!(outcome.created.len(), 1);

    assert_eq!(
        steps(&run.events),
        ["Creating container", "Installing Adminer and PHP", "Configuring the web server", "Waiting for Adminer"]
    );
    // print() goes to WASI stdout, which the host logs as `info`.
    let lines = info_lines(&run.events);
    assert!(lines.iter().any(|l| l == "adminer: service unit written, listening on port 8080"), "{lines:?}");
    assert!(lines.iter().any(|l| l.starts_with("Adminer answers on port 8080")), "progress.log too: {lines:?}");

    // The same runtime loads the component from its cache the second time.
    let started = Instant::now();
    let again = install(&runtime, &adminer, &[], &sim_for(&adminer, vec![])).await;
    eprintln!("adminer: second install (cached) took {:?}", started.elapsed());
    again.outcome.expect("a second install works");
}

#[tokio::test]
async fn n8n_in_javascript_follows_the_compose_flow_with_a_generated_key() {
    let n8n = recipe("recipes/n8n");
    let sim = sim_for(&n8n, vec![]);
    let started = Instant::now();
    let run = install(&runtime(), &n8n, &[], &sim).await;
    eprintln!("n8n: first install (compile + run) took {:?}", started.elapsed());
    let outcome = run.outcome.expect("n8n installs on sim");
    let ActionResult::Installed { app } = &outcome.result else { panic!("install result expected") };
    let plan = sim.plan();

    let PlanStep::CreateLxc { spec, .. } = &plan[0] else { panic!("first operation creates the container: {plan:?}") };
    assert_eq!(spec.os_template, "debian-12");
    assert!(spec.features.nesting && spec.features.keyctl, "Docker in LXC needs nesting and keyctl: {spec:?}");
    assert!(spec.unprivileged);

    let commands = execs(&plan);
    let packages = position(&commands, &["apt-get", "install", "docker.io", "docker-compose"]);
    let service = position(&commands, &["systemctl", "enable", "--now", "docker"]);
    let info = position(&commands, &["docker", "info"]);
    let mkdir = position(&commands, &["mkdir", "-p", "/opt/n8n"]);
    let pull = position(&commands, &["docker-compose", "-f", "/opt/n8n/docker-compose.yml", "pull"]);
    let up = position(&commands, &["docker-compose", "up", "-d"]);
    let ps = position(&commands, &["docker-compose", "ps", "--services"]);
    assert!(packages < service && service < info && info < mkdir && mkdir < pull && pull < up && up < ps);

    let key = secret(&run.prepared.subject.params, "encryption-key");
    assert_eq!(key.len(), 48);
    assert!(key.chars().all(|c| c.is_ascii_alphanumeric()), "the manifest's pattern holds");
    let (mode, compose) = written(&plan, "/opt/n8n/docker-compose.yml").expect("/opt/n8n/docker-compose.yml");
    assert_eq!(mode, 0o600, "the compose file carries the key");
    assert!(compose.contains(&format!("N8N_ENCRYPTION_KEY: \"{key}\"")), "{compose}");
    assert!(compose.contains("image: \"docker.n8n.io/n8nio/n8n:1.80.0\""), "{compose}");
    assert!(compose.contains("- \"5678:5678\"") && compose.contains("TZ: \"UTC\""), "{compose}");
    assert!(!compose.contains("{{"), "{compose}");

    // The key is on no command line, in no environment and in no event.
    for step in &plan {
        if let PlanStep::Exec { argv, env, .. } = step {
            assert!(!argv.iter().any(|a| a.contains(&key)), "key on a command line: {argv:?}");
            assert!(!env.iter().any(|(_, v)| v.contains(&key)), "key in an environment: {env:?}");
        }
    }
    for event in &run.events {
        assert!(!format!("{event:?}").contains(&key), "key leaked in {event:?}");
    }

    assert_eq!(exec_timeout_ms(&plan, "pull"), 600_000);

    assert!(plan.iter().any(|s| matches!(s, PlanStep::WaitTcp { port: 5678, .. })), "{plan:?}");
    let url = app.url.as_deref().expect("n8n reports its URL");
    assert!(url.starts_with("http://198.18.") && url.ends_with(":5678/"), "{url}");
    assert!(app.outputs.contains(&("compose-file".to_string(), "/opt/n8n/docker-compose.yml".to_string())));

    assert_eq!(
        steps(&run.events),
        [
            "Creating container",
            "Installing Docker",
            "Writing the compose file",
            "Pulling the image",
            "Starting n8n",
            "Waiting for n8n"
        ]
    );
    let lines = info_lines(&run.events);
    assert!(lines.iter().any(|l| l == "n8n: compose project in /opt/n8n"), "console.log reaches the log: {lines:?}");

    // Another deployment gets another key.
    let again = install(&runtime(), &n8n, &[], &sim_for(&n8n, vec![])).await;
    assert_ne!(secret(&again.prepared.subject.params, "encryption-key"), key);
}

#[tokio::test]
async fn a_failing_command_fails_a_python_install_with_its_stderr_and_cleans_up() {
    let adminer = recipe("recipes/adminer");
    let sim = sim_for(
        &adminer,
        vec![ExecRule::words(&["apt-get", "install"]).fails(100, "E: Unable to locate package adminer")],
    );
    let run = install(&runtime(), &adminer, &[], &sim).await;
    let err = run.outcome.expect_err("the package install fails");
    let RunFailure::Recipe(recipe_error) = &err.failure else { panic!("{err:?}") };
    assert_eq!(recipe_error.kind, "backend");
    assert!(recipe_error.message.contains("E: Unable to locate package adminer"), "stderr: {recipe_error}");
    assert!(recipe_error.message.contains("exited with status 100"), "{recipe_error}");
    assert!(recipe_error.message.starts_with("installing adminer php-cli"), "the step's context: {recipe_error}");
    assert_eq!(err.step.as_deref(), Some("Installing Adminer and PHP"));
    assert_eq!(err.destroyed.len(), 1);
    assert!(sim.containers().is_empty(), "the container is destroyed");
}

#[tokio::test]
async fn a_failing_command_fails_a_javascript_install_with_its_stderr_and_cleans_up() {
    let n8n = recipe("recipes/n8n");
    let sim = sim_for(&n8n, vec![ExecRule::words(&["docker-compose", "pull"]).fails(1, "manifest unknown: n8n:nope")]);
    let run = install(&runtime(), &n8n, &[("image", "docker.n8n.io/n8nio/n8n:nope")], &sim).await;
    let err = run.outcome.expect_err("the pull fails");
    let RunFailure::Recipe(recipe_error) = &err.failure else { panic!("{err:?}") };
    assert_eq!(recipe_error.kind, "backend");
    assert!(recipe_error.message.contains("manifest unknown: n8n:nope"), "stderr: {recipe_error}");
    assert_eq!(err.step.as_deref(), Some("Pulling the image"));
    assert!(sim.containers().is_empty(), "the container is destroyed");
}

#[tokio::test]
async fn python_and_javascript_recipes_uninstall_and_the_host_destroys_their_containers() {
    let runtime = runtime();
    for dir in ["recipes/adminer", "recipes/n8n"] {
        let entry = recipe(dir);
        let sim = sim_for(&entry, vec![]);
        let installed = install(&runtime, &entry, &[], &sim).await;
        let created = installed.outcome.unwrap_or_else(|e| panic!("{dir} installs: {e:?}")).created;
        assert_eq!(sim.containers().len(), 1);

        let removed = uninstall_on(&runtime, &entry, &installed.prepared, created.clone(), Arc::new(sim.clone()))
            .await
            .unwrap_or_else(|e| panic!("{dir} uninstalls: {e:?}"));
        assert!(matches!(removed.result, ActionResult::Uninstalled));
        assert_eq!(removed.destroyed, vec![created[0].id.clone()]);
        assert!(sim.containers().is_empty(), "{dir}: the container is gone");
    }
}
