//! The `proximity` binary, as a person runs it.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

fn proximity(args: &[&str]) -> Output {
    for recipe in ["nginx", "wordpress"] {
        let component = repo().join("recipes").join(recipe).join("target/recipe.wasm");
        assert!(component.is_file(), "{} is not built: run `cargo xtask build-recipes`", component.display());
    }
    Command::new(env!("CARGO_BIN_EXE_proximity"))
        .args(args)
        .current_dir(repo())
        .env_remove("PROXIMITY_CATALOG")
        .env_remove("PROXIMITY_BACKEND")
        // Shares the base images of the lxc tests (tests/lxc.rs).
        .env("PROXIMITY_LXC_PATH", repo().join("target/lxc-tests"))
        .output()
        .expect("the proximity binary runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn deploy_nginx_on_sim_prints_steps_and_the_plan() {
    let out = proximity(&["deploy", "nginx", "--backend", "sim", "--param", "greeting=Hi there"]);
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert!(out.status.success(), "stdout:\n{stdout}\nstderr:\n{stderr}");
    assert!(stderr.contains("▸"), "steps are printed as they happen:\n{stderr}");
    assert!(stdout.contains("create-lxc"), "{stdout}");
    assert!(stdout.contains("template=debian-12"), "the spec is shown:\n{stdout}");
    assert!(stdout.contains("exec ") && stdout.contains("\"apt-get\""), "each argv is shown:\n{stdout}");
    assert!(stdout.contains("write-file") && stdout.contains("/var/www/html/index.html"), "{stdout}");
    assert!(stdout.contains("✓ installed"), "{stdout}");
}

#[test]
fn deploy_wordpress_on_sim_never_prints_its_generated_secrets() {
    let out = proximity(&["deploy", "wordpress", "--backend", "sim", "--show-files", "--json"]);
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert!(out.status.success(), "stdout:\n{stdout}\nstderr:\n{stderr}");
    let report: serde_json::Value = serde_json::from_str(&stdout).expect("--json prints JSON");
    assert_eq!(report["ok"], true);
    let plan = report["plan"].as_array().expect("the plan is listed");
    let compose = plan
        .iter()
        .find(|s| s["op"] == "write-file" && s["path"].as_str().unwrap_or("").ends_with("docker-compose.yml"))
        .expect("the compose file is in the plan");
    let text = compose["text"].as_str().unwrap();
    assert!(text.contains("«secret:db-password»"), "secrets are redacted in the plan:\n{text}");
    assert!(plan.iter().any(|s| s["op"] == "create-lxc" && s["spec"]["features"]["keyctl"] == true));
}

#[test]
fn dry_run_and_bad_parameters() {
    let out = proximity(&["deploy", "nginx", "--dry-run"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("dry run"));

    let out = proximity(&["deploy", "wordpress", "--param", "http-port=99999", "--param", "nonsense=1"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    let stderr = text(&out.stderr);
    assert!(stderr.contains("http-port") && stderr.contains("nonsense"), "every bad parameter is listed:\n{stderr}");

    let out = proximity(&["deploy", "no-such-app"]);
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains("no recipe `no-such-app`"), "{}", text(&out.stderr));

    let out = proximity(&["deploy", "nginx", "--param", "greeting"]);
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains("NAME=VALUE"));
}

#[test]
fn recipe_inspect_shows_grants_and_parameters() {
    let out = proximity(&["recipe", "inspect", "wordpress"]);
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(stdout.contains("Grants:") && stdout.contains("keyctl"), "{stdout}");
    assert!(stdout.contains("db-password"), "{stdout}");

    let out = proximity(&["recipe", "inspect", "recipes/nginx", "--json"]);
    let manifest: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON manifest");
    assert_eq!(manifest["recipe"]["id"], "nginx");
}

/// The README's main job: with no --backend, a root host with LXC deploys
/// into a real container (tests/lxc.rs checks what such a container serves).
#[test]
fn deploy_without_a_backend_uses_real_lxc_here() {
    let app_id = format!("cli-default-{}", std::process::id());
    let out = proximity(&["deploy", "nginx", "--app-id", &app_id, "--param", "greeting=Hello from the CLI"]);
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    let containers: Vec<String> = stdout
        .lines()
        .filter_map(|line| line.trim().strip_prefix("containers: "))
        .flat_map(|ids| ids.split(", ").map(str::to_string))
        .collect();
    // Remove what was made before judging, so a failure leaves nothing behind.
    for id in &containers {
        let _ = Command::new("lxc-destroy")
            .args(["-f", "-P"])
            .arg(repo().join("target/lxc-tests"))
            .args(["-n", id])
            .output();
    }
    assert!(out.status.success(), "stdout:\n{stdout}\nstderr:\n{stderr}");
    assert!(stderr.contains("on the lxc backend"), "lxc is the default: {stderr}");
    assert!(!stdout.contains("Plan ("), "a real backend has no simulated plan: {stdout}");
    assert_eq!(containers.len(), 1, "{stdout}");
    let url = stdout.lines().find_map(|l| l.trim().strip_prefix("url:")).map(|u| u.trim().to_string()).expect("a url");
    assert!(url.starts_with("http://10."), "{url}");
}
