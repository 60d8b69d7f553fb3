//! Hostile recipes against the sandbox: each attack is stopped with a clear
//! error, and the host keeps serving other runs.

use std::sync::Arc;
use std::time::Duration;

use proximity::backend::sim::SimBackend;
use proximity::plan::PlanStep;
use proximity::runtime::{ActionResult, RunFailure, Runtime, RuntimeConfig};
use proximity_tests::{install, recipe};

const HOSTILE: &str = "tests/recipes/hostile";

fn runtime(max_timeout: Duration) -> Arc<Runtime> {
    Arc::new(Runtime::new(RuntimeConfig { max_timeout, ..Default::default() }).expect("runtime starts"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endless_loop_is_stopped_at_the_deadline_while_other_runs_finish() {
    let runtime = runtime(Duration::from_secs(3));
    let hostile = recipe(HOSTILE);
    let nginx = recipe("recipes/nginx");
    let sim = SimBackend::default();

    let looping = {
        let (runtime, hostile, sim) = (runtime.clone(), hostile.clone(), sim.clone());
        tokio::spawn(async move { install(&runtime, &hostile, &[("attack", "loop")], &sim).await })
    };
    // While the loop spins, a well-behaved recipe deploys on the same host.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let normal = install(&runtime, &nginx, &[], &SimBackend::default()).await;
    assert!(!looping.is_finished(), "the loop should still be running while nginx deploys");
    let normal = normal.outcome.expect("nginx deploys while a hostile recipe loops");
    assert!(matches!(normal.result, ActionResult::Installed { .. }));

    let looped = looping.await.unwrap().outcome.expect_err("the loop must not succeed");
    assert!(matches!(looped.failure, RunFailure::Deadline(d) if d == Duration::from_secs(3)), "{looped:?}");
    assert!(looped.to_string().contains("deadline of 3s"), "{looped}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_bomb_is_stopped_by_the_limit_and_the_host_carries_on() {
    let runtime = runtime(Duration::from_secs(60));
    let hostile = recipe(HOSTILE);
    let sim = SimBackend::default();

    let bomb = install(&runtime, &hostile, &[("attack", "alloc")], &sim).await;
    let err = bomb.outcome.expect_err("the memory bomb must fail");
    assert!(matches!(err.failure, RunFailure::MemoryLimit(16)), "{err:?}");
    assert!(err.to_string().contains("memory limit of 16 MiB"), "{err}");

    let after = install(&runtime, &hostile, &[("attack", "ok")], &sim).await;
    after.outcome.expect("the same runtime runs the next recipe normally");
}

#[tokio::test]
async fn ungranted_capability_is_denied_naming_the_grant_and_cleaned_up() {
    let runtime = runtime(Duration::from_secs(60));
    let sim = SimBackend::default();
    let run = install(&runtime, &recipe(HOSTILE), &[("attack", "ungranted")], &sim).await;
    let err = run.outcome.expect_err("exec is not granted");
    let RunFailure::Recipe(recipe_error) = &err.failure else { panic!("expected the recipe's error, got {err:?}") };
    assert_eq!(recipe_error.kind, "denied");
    assert!(recipe_error.message.contains("exec"), "the denial names the missing grant: {recipe_error}");
    // The container the run created before the denied call is gone.
    assert_eq!(err.destroyed.len(), 1, "{err:?}");
    assert!(sim.containers().is_empty());
    assert!(!sim.plan().iter().any(|step| matches!(step, PlanStep::Exec { .. })), "no exec reached the backend");
    assert!(run.events.iter().any(|e| format!("{e:?}").contains("denied")), "the operator is told about the denial");
}

#[tokio::test]
async fn container_beyond_the_granted_bounds_is_denied() {
    let runtime = runtime(Duration::from_secs(60));
    let sim = SimBackend::default();
    let run = install(&runtime, &recipe(HOSTILE), &[("attack", "exceed-grant")], &sim).await;
    let err = run.outcome.expect_err("64 cores exceed the grant");
    let RunFailure::Recipe(recipe_error) = &err.failure else { panic!("expected the recipe's error, got {err:?}") };
    assert_eq!(recipe_error.kind, "denied");
    assert!(recipe_error.message.contains("max-cores"), "{recipe_error}");
    assert!(sim.plan().is_empty(), "nothing was created: {:?}", sim.plan());
}

#[tokio::test]
async fn forged_container_handle_is_rejected() {
    let runtime = runtime(Duration::from_secs(60));
    let sim = SimBackend::default();
    let run = install(&runtime, &recipe(HOSTILE), &[("attack", "forge")], &sim).await;
    let err = run.outcome.expect_err("a forged handle must not work");
    assert!(matches!(err.failure, RunFailure::Crashed(_)), "{err:?}");
    assert!(err.to_string().contains("handle"), "the error says the handle was bad: {err}");
    assert!(sim.plan().is_empty());
}

#[tokio::test]
async fn container_handle_from_another_run_is_rejected() {
    let runtime = runtime(Duration::from_secs(60));
    let sim = SimBackend::default();
    let hostile = recipe(HOSTILE);

    let first = install(&runtime, &hostile, &[("attack", "create")], &sim).await;
    let first = first.outcome.expect("the first run creates a container");
    let ActionResult::Installed { app } = first.result else { panic!("install result expected") };
    let handle = app.outputs.iter().find(|(k, _)| k == "handle").expect("the handle is reported").1.clone();
    let plan_before = sim.plan();

    let second = install(&runtime, &hostile, &[("attack", "reuse"), ("handle", &handle)], &sim).await;
    let err = second.outcome.expect_err("a handle from another run must not work");
    assert!(err.to_string().contains("handle"), "{err}");
    assert_eq!(sim.plan(), plan_before, "the second run did nothing to the first run's container");
    assert_eq!(sim.containers().len(), 1, "the first run's container is untouched");
}

#[tokio::test]
async fn panic_message_reaches_the_error() {
    let runtime = runtime(Duration::from_secs(60));
    let run = install(&runtime, &recipe(HOSTILE), &[("attack", "panic")], &SimBackend::default()).await;
    let err = run.outcome.expect_err("a panicking recipe fails");
    assert!(matches!(err.failure, RunFailure::Crashed(_)), "{err:?}");
    assert!(err.to_string().contains("hostile recipe panicked on purpose"), "{err}");
}

#[tokio::test]
async fn bad_parameters_are_all_reported_before_anything_runs() {
    let hostile = recipe(HOSTILE);
    let input = proximity::deploy::DeployInput {
        params: proximity_tests::params(&[("attack", "fly"), ("handle", "many"), ("colour", "blue")]),
        ..Default::default()
    };
    let errors = proximity::deploy::prepare(hostile.manifest.clone(), input).err().expect("rejected");
    let names: Vec<&str> = errors.0.iter().map(|p| p.name.as_str()).collect();
    assert!(names.contains(&"attack"), "{errors}");
    assert!(names.contains(&"handle"), "{errors}");
    assert!(names.contains(&"colour"), "{errors}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_attack_at_once_while_a_normal_deploy_succeeds() {
    let runtime = runtime(Duration::from_secs(3));
    let hostile = recipe(HOSTILE);
    let attacks = ["loop", "alloc", "ungranted", "exceed-grant", "forge", "panic"];
    let mut running = Vec::new();
    for attack in attacks {
        let (runtime, hostile) = (runtime.clone(), hostile.clone());
        running.push(tokio::spawn(async move {
            install(&runtime, &hostile, &[("attack", attack)], &SimBackend::default()).await.outcome
        }));
    }
    let nginx = recipe("recipes/nginx");
    let normal = install(&runtime, &nginx, &[], &SimBackend::default()).await;
    normal.outcome.expect("a normal deploy succeeds while every attack runs");

    for (attack, handle) in attacks.iter().zip(running) {
        let err = handle.await.unwrap().expect_err("no attack succeeds");
        let expected = match *attack {
            "loop" => matches!(err.failure, RunFailure::Deadline(_)),
            "alloc" => matches!(err.failure, RunFailure::MemoryLimit(_)),
            "ungranted" | "exceed-grant" => matches!(&err.failure, RunFailure::Recipe(e) if e.kind == "denied"),
            _ => matches!(err.failure, RunFailure::Crashed(_)),
        };
        assert!(expected, "attack `{attack}` failed the wrong way: {err:?}");
    }
}

/// An embedded CPython gets WASI with nothing behind it: no files, no
/// directories, no environment, no sockets. What it prints reaches the log.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_python_recipe_reaches_no_file_variable_or_socket_of_the_host() {
    let _ = std::fs::remove_file("/tmp/proximity-hostile-py");
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let port = listener.local_addr().unwrap().port().to_string();
    let hostile = recipe("tests/recipes/hostile-py");
    let run = install(&runtime(Duration::from_secs(120)), &hostile, &[("port", &port)], &SimBackend::default()).await;
    let outcome = run.outcome.expect("the probe reports instead of failing");
    let ActionResult::Installed { app } = &outcome.result else { panic!("install result expected") };
    let outputs: std::collections::BTreeMap<&str, &str> =
        app.outputs.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    for attempt in ["read-file", "write-file", "list-root", "list-cwd", "environment", "connect", "resolve"] {
        let result = outputs.get(attempt).unwrap_or_else(|| panic!("{attempt} was tried: {outputs:?}"));
        assert!(result.starts_with("denied"), "{attempt}: {result}");
    }
    assert_eq!(outputs["connect"], "denied: PermissionError", "the socket is refused, not merely unreachable");
    assert!(listener.accept().is_err(), "nothing connected to the host's listener");
    assert!(!std::path::Path::new("/tmp/proximity-hostile-py").exists(), "nothing was written on the host");
    let logged = run.events.iter().any(
        |e| matches!(&e.kind, proximity::events::EventKind::Log { message, .. } if message == "probing the sandbox"),
    );
    assert!(logged, "print() goes to the job's log: {:?}", run.events);
}
