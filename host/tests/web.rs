//! The web page in a real browser: each test starts `proximity serve` (the
//! binary) on loopback with its own data directory holding signed bundles of
//! the repository's recipes, then runs one scenario of `tests/web/run.mjs`,
//! a Playwright (`playwright-core`) script driving Debian's Chromium. The
//! scenario's output is this test's failure message. Screenshots of every
//! view go to `target/web-screenshots/`.
//!
//! Needs `node`, `tests/web/node_modules` (`npm ci`, which `cargo xtask test`
//! runs) and `/usr/bin/chromium` (`PROXIMITY_CHROMIUM` to use another). In CI
//! (`CI=true`) a missing one fails the tests; elsewhere they say so and pass.
//! The LXC scenario also needs root and LXC, under the same rule.

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;
use std::time::Duration;

use proximity::api;

use common::{create_token, proximity, repo, serve_file, Server};

fn in_ci() -> bool {
    std::env::var("CI").as_deref() == Ok("true")
}

/// Whether a prerequisite is there; when it is not, CI fails and a
/// developer's run says what it skipped.
fn required(present: bool, what: &str) -> bool {
    if present {
        return true;
    }
    if in_ci() {
        panic!("{what} (CI=true: the browser tests must run; `cargo xtask test` installs what they need)");
    }
    eprintln!("SKIPPED: {what}; `cargo xtask test` installs what the browser tests need");
    false
}

fn chromium() -> PathBuf {
    std::env::var_os("PROXIMITY_CHROMIUM").map(PathBuf::from).unwrap_or_else(|| PathBuf::from("/usr/bin/chromium"))
}

fn web_dir() -> PathBuf {
    repo().join("tests/web")
}

fn screenshots() -> PathBuf {
    let dir = repo().join("target/web-screenshots");
    fs::create_dir_all(&dir).unwrap();
    dir
}

/// Node, the npm packages and Chromium are all there (or the test is skipped outside CI).
fn browser_ready() -> bool {
    let node = Command::new("node").arg("--version").output().is_ok_and(|o| o.status.success());
    required(node, "node is not installed")
        && required(
            web_dir().join("node_modules/playwright-core/package.json").is_file(),
            "tests/web/node_modules is missing (run `npm ci` in tests/web)",
        )
        && required(
            chromium().is_file(),
            &format!("{} is not installed (apt-get install chromium)", chromium().display()),
        )
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn ok(out: Output, what: &str) -> String {
    assert!(out.status.success(), "{what} failed\nstdout:\n{}\nstderr:\n{}", text(&out.stdout), text(&out.stderr));
    text(&out.stdout)
}

/// A data directory with the repository's nginx, WordPress and redis, plus a
/// `failing-nginx` whose simulated `nginx -t` fails, installed as bundles
/// signed by a trusted `publisher` key; a token; and two bundles for the
/// upload scenario: redis 0.2.0 asking for more than 0.1.0, nginx
/// signed by a key the server does not trust, and a new recipe
/// (`hello-nginx`) signed by the trusted key. Made once per test binary;
/// each test copies the data directory.
struct Fixture {
    _dir: tempfile::TempDir,
    data: PathBuf,
    token: String,
    grown: PathBuf,
    untrusted: PathBuf,
    fresh: PathBuf,
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(make_fixture)
}

fn run_in(dir: &Path, args: &[&str]) -> Output {
    proximity().current_dir(dir).args(args).env("XDG_CONFIG_HOME", dir.join("config")).output().unwrap()
}

/// A copy of a repository recipe (its built component included) with its
/// manifest changed by `edit` and, when given, its simulator script replaced.
fn variant(work: &Path, recipe: &str, name: &str, edit: impl Fn(String) -> String, sim: Option<&str>) -> PathBuf {
    let from = repo().join("recipes").join(recipe);
    let to = work.join("variants").join(name);
    fs::create_dir_all(to.join("target")).unwrap();
    for entry in fs::read_dir(&from).unwrap() {
        let path = entry.unwrap().path();
        if path.is_file() && !path.file_name().unwrap().to_string_lossy().starts_with("Cargo") {
            fs::copy(&path, to.join(path.file_name().unwrap())).unwrap();
        }
    }
    fs::copy(from.join("target/recipe.wasm"), to.join("target/recipe.wasm")).unwrap();
    let manifest = fs::read_to_string(to.join("recipe.toml")).unwrap();
    fs::write(to.join("recipe.toml"), edit(manifest)).unwrap();
    if let Some(sim) = sim {
        fs::write(to.join("sim.toml"), sim).unwrap();
    }
    to
}

/// `text` with `from` replaced by `to` (the first time only when `once`),
/// failing when `from` is not there: a fixture edit that quietly changes
/// nothing would test the wrong thing.
fn edit(text: String, from: &str, to: &str, once: bool) -> String {
    assert!(text.contains(from), "the fixture edit expects `{from}` in:\n{text}");
    if once {
        text.replacen(from, to, 1)
    } else {
        text.replace(from, to)
    }
}

fn pack(work: &Path, dir: &Path, name: &str, key: Option<&str>) -> PathBuf {
    let out = work.join("bundles").join(format!("{name}.prox"));
    fs::create_dir_all(out.parent().unwrap()).unwrap();
    ok(run_in(work, &["recipe", "pack", dir.to_str().unwrap(), "--out", out.to_str().unwrap()]), "recipe pack");
    if let Some(key) = key {
        ok(run_in(work, &["recipe", "sign", out.to_str().unwrap(), "--key", key]), "recipe sign");
    }
    out
}

fn make_fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let work = dir.path();
    for name in ["publisher", "stranger"] {
        ok(run_in(work, &["keys", "generate", "--signing", name, "--dir", "keys"]), "keys generate");
    }
    let data = work.join("data");
    fs::create_dir_all(data.join("trusted-keys")).unwrap();
    fs::copy(work.join("keys/publisher.pub"), data.join("trusted-keys/publisher.pub")).unwrap();

    let failing = variant(
        work,
        "nginx",
        "failing-nginx",
        |m| {
            let m = edit(m, "id = \"nginx\"", "id = \"failing-nginx\"", false);
            let m = edit(m, "name = \"nginx\"", "name = \"Failing nginx\"", false);
            let m = edit(m, "category = \"web\"", "category = \"testing\"", false);
            edit(m, "description = \"", "description = \"(Test recipe: its configuration check fails.) ", true)
                // A boolean and an enum for the form (the recipe ignores them).
                + "\n[[parameters]]\nname = \"verbose\"\ntype = \"boolean\"\ndescription = \"Log more\"\ndefault = false\n\n[[parameters]]\nname = \"flavour\"\ntype = \"enum\"\ndescription = \"Which page style\"\nchoices = [\"plain\", \"fancy\"]\ndefault = \"plain\"\n"
        },
        Some("[[exec]]\nprefix = [\"nginx\", \"-t\"]\nstatus = 1\nstderr = \"nginx: [emerg] unknown directive \\\"gretting\\\"\"\n"),
    );
    let mut installs = Vec::new();
    for recipe in ["nginx", "wordpress", "redis"] {
        installs.push(pack(work, &repo().join("recipes").join(recipe), recipe, Some("keys/publisher.key")));
    }
    installs.push(pack(work, &failing, "failing-nginx", Some("keys/publisher.key")));
    for bundle in &installs {
        ok(
            run_in(work, &["recipe", "install", bundle.to_str().unwrap(), "--data-dir", data.to_str().unwrap()]),
            "recipe install",
        );
    }

    let grown_dir = variant(
        work,
        "redis",
        "redis-0.2.0",
        |m| edit(edit(m, "version = \"0.1.0\"", "version = \"0.2.0\"", true), "max-cores = 2", "max-cores = 6", false),
        None,
    );
    let grown = pack(work, &grown_dir, "redis-0.2.0", Some("keys/publisher.key"));
    let stranger_dir =
        variant(work, "nginx", "nginx-0.3.0", |m| edit(m, "version = \"0.1.0\"", "version = \"0.3.0\"", true), None);
    let untrusted = pack(work, &stranger_dir, "nginx-0.3.0", Some("keys/stranger.key"));
    // A recipe the server does not have yet, signed by the trusted key.
    let fresh_dir = variant(
        work,
        "nginx",
        "hello-nginx",
        |m| {
            edit(
                edit(m, "id = \"nginx\"", "id = \"hello-nginx\"", false),
                "name = \"nginx\"",
                "name = \"Hello nginx\"",
                false,
            )
        },
        None,
    );
    let fresh = pack(work, &fresh_dir, "hello-nginx", Some("keys/publisher.key"));
    let token = create_token(&data, "browser");
    Fixture { data: data.clone(), token, grown, untrusted, fresh, _dir: dir }
}

/// Copies `from` into `to` (plain files and directories).
fn copy_tree(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap();
    for entry in fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        let kind = entry.file_type().unwrap();
        if kind.is_dir() {
            copy_tree(&entry.path(), &target);
        } else if kind.is_file() {
            fs::copy(entry.path(), &target).unwrap();
        }
    }
}

/// A server of its own for one test, on a copy of the fixture's data.
fn server(args: &[&str]) -> (tempfile::TempDir, Server) {
    let data = tempfile::tempdir().unwrap();
    copy_tree(&fixture().data, data.path());
    let server = Server::start(data.path(), args);
    (data, server)
}

/// Runs one scenario of `tests/web/run.mjs` against `server`; panics with its output when it fails.
fn scenario(name: &str, server: &Server, extra_env: &[(&str, String)]) {
    let fixture = fixture();
    let mut command = Command::new("node");
    command
        .arg(web_dir().join("run.mjs"))
        .arg(name)
        .current_dir(web_dir())
        .env("PROXIMITY_URL", &server.url)
        .env("PROXIMITY_TOKEN", &fixture.token)
        .env("PROXIMITY_CHROMIUM", chromium())
        .env("WEB_SCREENSHOTS", screenshots())
        .env("BUNDLE_GROWN", &fixture.grown)
        .env("BUNDLE_UNTRUSTED", &fixture.untrusted)
        .env("BUNDLE_FRESH", &fixture.fresh);
    for (key, value) in extra_env {
        command.env(key, value);
    }
    let out = command.output().expect("node runs");
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    print!("{stdout}");
    assert!(
        out.status.success(),
        "browser scenario `{name}` failed ({})\nstdout:\n{stdout}\nstderr:\n{stderr}",
        out.status
    );
}

/// Every browser scenario against a fresh sim server.
fn browser_scenario(name: &str) {
    if !browser_ready() {
        return;
    }
    let (_data, server) = server(&["--backend", "sim"]);
    scenario(name, &server, &[]);
}

#[test]
fn catalog_lists_searches_and_filters_by_category() {
    browser_scenario("catalog");
}

#[test]
fn recipe_page_and_deploy_form_show_field_errors_and_a_dry_run_plan() {
    browser_scenario("form");
}

#[test]
fn nginx_deploys_on_sim_then_stops_and_uninstalls_from_the_apps_view() {
    browser_scenario("deploy");
}

#[test]
fn a_failing_deploy_shows_the_step_the_error_and_the_cleanup() {
    browser_scenario("failure");
}

#[test]
fn settings_keep_the_token_and_list_bundles_and_publishers() {
    browser_scenario("settings");
}

#[test]
fn bundle_upload_reviews_grown_grants_and_explains_untrusted_bundles() {
    if !browser_ready() {
        return;
    }
    let url = serve_file(fs::read(&fixture().untrusted).unwrap());
    let (_data, strict) = server(&["--backend", "sim"]);
    scenario("bundles", &strict, &[("BUNDLE_URL", url)]);
    // A server that takes allow_untrusted over the API offers it on the page.
    let (_data, lenient) = server(&["--backend", "sim", "--api-allow-untrusted"]);
    scenario("bundles-allow", &lenient, &[]);
}

#[test]
fn the_page_fits_a_phone_width() {
    browser_scenario("phone");
}

/// The page's event-stream parser, and resuming a stream with Last-Event-ID
/// against the real server (node only, no browser).
#[test]
fn event_stream_parser_and_resumption() {
    let node = Command::new("node").arg("--version").output().is_ok_and(|o| o.status.success());
    if !required(node, "node is not installed") {
        return;
    }
    let (_data, server) = server(&["--backend", "sim"]);
    scenario("sse", &server, &[]);
}

/// The page and its files, as any HTTP client sees them (no browser).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_its_files_the_icons_and_the_bundle_list_are_served() {
    let (data, server) = server(&["--backend", "sim"]);
    let http = reqwest::Client::new();
    for path in ["/", "/ui/", "/ui/apps"] {
        let response = http.get(format!("{}{path}", server.url)).send().await.unwrap();
        assert_eq!(response.status(), 200, "{path}");
        let headers = response.headers().clone();
        assert!(headers["content-type"].to_str().unwrap().starts_with("text/html"), "{path}");
        let policy = headers["content-security-policy"].to_str().unwrap();
        assert!(policy.contains("default-src 'none'") && policy.contains("script-src 'self'"), "{policy}");
        let body = response.text().await.unwrap();
        assert!(body.contains("<script type=\"module\" src=\"/ui/app.js\">"), "{body}");
    }
    let script = http.get(format!("{}/ui/app.js", server.url)).send().await.unwrap();
    assert_eq!(script.status(), 200);
    assert!(script.headers()["content-type"].to_str().unwrap().starts_with("text/javascript"));
    let etag = script.headers()["etag"].clone();
    let again = http.get(format!("{}/ui/app.js", server.url)).header("if-none-match", etag).send().await.unwrap();
    assert_eq!(again.status(), 304, "an unchanged file is not sent again");
    let missing = http.get(format!("{}/ui/nothing.js", server.url)).send().await.unwrap();
    assert_eq!(missing.status(), 404);

    // Icons: public, typed, script-free.
    let icon = http.get(server.api("/recipes/nginx/icon")).send().await.unwrap();
    assert_eq!(icon.status(), 200);
    assert_eq!(icon.headers()["content-type"], "image/svg+xml");
    assert!(icon.headers()["content-security-policy"].to_str().unwrap().contains("sandbox"));
    assert!(icon.text().await.unwrap().contains("<svg"));
    let response = http.get(server.api("/recipes/no-such-recipe/icon")).send().await.unwrap();
    assert_eq!(response.status(), 404);
    // Paths that climb out. An HTTP client would resolve `..` before sending
    // (`%2E%2E` too), so these go out as raw requests; the handler's own
    // refusal names the id, which shows each reached it.
    for (id, raw) in [
        ("..", "/api/v1/recipes/../icon"),
        ("nginx/../../proximity.db", "/api/v1/recipes/nginx%2F..%2F..%2Fproximity.db/icon"),
    ] {
        let (status, body) = raw_get(&server.url, raw).await;
        assert_eq!(status, 404, "{raw}: {body}");
        assert!(body.contains(&format!("no recipe `{id}`")), "{raw} did not reach the icon handler: {body}");
    }

    // The installed bundles and their publishers; the token is needed.
    let refused = http.get(server.api("/bundles")).send().await.unwrap();
    assert_eq!(refused.status(), 401);
    let list: api::BundleList =
        http.get(server.api("/bundles")).bearer_auth(&fixture().token).send().await.unwrap().json().await.unwrap();
    assert!(list.installs && !list.allow_untrusted);
    assert_eq!(list.trusted_keys.len(), 1);
    assert_eq!(list.trusted_keys[0].name, "publisher");
    let ids: Vec<&str> = list.bundles.iter().map(|b| b.id.as_str()).collect();
    assert_eq!(ids, ["failing-nginx", "nginx", "redis", "wordpress"]);
    for bundle in &list.bundles {
        assert_eq!(bundle.signers.len(), 1, "{bundle:?}");
        assert_eq!(bundle.signers[0].name, "publisher");
        assert_eq!(bundle.signers[0].key_id.as_deref(), Some(list.trusted_keys[0].key_id.as_str()));
        assert!(bundle.signers[0].trusted);
        assert_eq!(bundle.digest.len(), 64);
        assert!(!bundle.grants.is_empty());
    }

    // Refusals name the bundle's digest in a field of their own.
    let post = |bytes: Vec<u8>, query: &'static str| {
        http.post(server.api(&format!("/recipes{query}")))
            .bearer_auth(&fixture().token)
            .header("content-type", "application/octet-stream")
            .body(bytes)
            .send()
    };
    let grown = fs::read(&fixture().grown).unwrap();
    let response = post(grown.clone(), "").await.unwrap();
    assert_eq!(response.status(), 409);
    let body: api::ErrorBody = response.json().await.unwrap();
    assert_eq!(body.error.code, "grants-grew");
    let digest = body.error.digest.clone().expect("the digest to accept");
    assert!(body.error.message.contains(&digest));
    assert!(body.error.details.iter().any(|d| d.field == "grants" && d.problem.contains('6')), "{:?}", body.error);
    let response = post(fs::read(&fixture().untrusted).unwrap(), "").await.unwrap();
    assert_eq!(response.status(), 403);
    let body: api::ErrorBody = response.json().await.unwrap();
    assert_eq!(body.error.code, "untrusted-bundle");
    assert_eq!(body.error.digest.as_deref().map(str::len), Some(64));
    // What it would be allowed to do, for the operator deciding to allow it.
    let words: Vec<&str> =
        body.error.details.iter().filter(|d| d.field == "grants").map(|d| d.problem.as_str()).collect();
    assert!(!words.is_empty() && words.iter().any(|w| w.contains("creates containers")), "{:?}", body.error);

    // Review: every check, nothing installed.
    let before = snapshot(data.path());
    let response = post(grown.clone(), "?review=true").await.unwrap();
    assert_eq!(response.status(), 200);
    let review: api::BundleReview = response.json().await.unwrap();
    assert_eq!((review.id.as_str(), review.version.as_str()), ("redis", "0.2.0"));
    assert_eq!(review.digest, digest);
    assert_eq!(review.previous_version.as_deref(), Some("0.1.0"));
    assert!(review.added_grants.iter().any(|g| g.contains('6')), "{review:?}");
    assert!(!review.grants.is_empty() && !review.unchanged);
    assert_eq!(review.signers.len(), 1);
    assert!(review.signers[0].trusted && review.signers[0].name == "publisher");
    assert_eq!(review.signers[0].key_id.as_deref(), Some(list.trusted_keys[0].key_id.as_str()));
    // A first install of a new recipe is reviewed the same way.
    let response = post(fs::read(&fixture().fresh).unwrap(), "?review=true").await.unwrap();
    assert_eq!(response.status(), 200);
    let review: api::BundleReview = response.json().await.unwrap();
    assert_eq!(review.id, "hello-nginx");
    assert!(review.previous_version.is_none() && review.added_grants.is_empty() && !review.grants.is_empty());
    // The checks still refuse: untrusted, with its grants in words.
    let response = post(fs::read(&fixture().untrusted).unwrap(), "?review=true").await.unwrap();
    assert_eq!(response.status(), 403);
    let body: api::ErrorBody = response.json().await.unwrap();
    assert_eq!(body.error.code, "untrusted-bundle");
    assert!(body.error.details.iter().any(|d| d.field == "grants"), "{:?}", body.error);
    assert_eq!(snapshot(data.path()), before, "a review wrote to the data directory");
    let ids: Vec<String> = http
        .get(server.api("/bundles"))
        .bearer_auth(&fixture().token)
        .send()
        .await
        .unwrap()
        .json::<api::BundleList>()
        .await
        .unwrap()
        .bundles
        .into_iter()
        .map(|b| format!("{} {}", b.id, b.version))
        .collect();
    assert_eq!(ids, ["failing-nginx 0.1.0", "nginx 0.1.0", "redis 0.1.0", "wordpress 0.1.0"]);

    // Accepting with the digest installs it.
    let accepted = http
        .post(server.api(&format!("/recipes?accept_grants={digest}")))
        .bearer_auth(&fixture().token)
        .header("content-type", "application/octet-stream")
        .body(grown)
        .send()
        .await
        .unwrap();
    assert_eq!(accepted.status(), 201);
}

/// `GET path` sent as written (no client resolving `..`): the status and body.
async fn raw_get(base: &str, path: &str) -> (u16, String) {
    let address = base.trim_start_matches("http://").trim_end_matches('/').to_string();
    let request = format!("GET {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n");
    let answer = tokio::task::spawn_blocking(move || {
        use std::io::{Read as _, Write as _};
        let mut stream = std::net::TcpStream::connect(&address).unwrap();
        stream.write_all(request.as_bytes()).unwrap();
        let mut answer = String::new();
        stream.read_to_string(&mut answer).unwrap();
        answer
    })
    .await
    .unwrap();
    let status = answer.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    let body = answer.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default();
    (status, body)
}

/// Every file under `dir` and its bytes, but the database (a request
/// records when its token was last used).
fn snapshot(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut found = Vec::new();
    let mut pending = vec![dir.to_owned()];
    while let Some(next) = pending.pop() {
        for entry in fs::read_dir(&next).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                found.push((path.clone(), Vec::new()));
                pending.push(path);
            } else if !path.file_name().unwrap().to_string_lossy().starts_with("proximity.db") {
                found.push((path.clone(), fs::read(&path).unwrap()));
            }
        }
    }
    found.sort();
    found
}

/// nginx deployed for real into an LXC container from the page, its page
/// fetched by the browser, then uninstalled. Needs root and LXC (as CI has).
#[test]
fn nginx_deploys_into_a_real_lxc_container_from_the_page() {
    if !browser_ready() {
        return;
    }
    let root = Command::new("id").arg("-u").output().is_ok_and(|o| text(&o.stdout).trim() == "0");
    let lxc = Command::new("lxc-create").arg("--version").output().is_ok_and(|o| o.status.success());
    if !required(root && lxc, "the lxc backend needs root and LXC") {
        return;
    }
    let lxcpath = repo().join("target/lxc-tests");
    let (_data, server) = server(&["--backend", "lxc", "--lxc-path", lxcpath.to_str().unwrap()]);
    let app_id = format!("web-lxc-{}", std::process::id());
    let outcome = std::panic::catch_unwind(|| scenario("lxc", &server, &[("LXC_APP_ID", app_id.clone())]));
    // Whatever the scenario did, the app goes.
    uninstall_everything(&server);
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic);
    }
}

/// Uninstalls every app of `server` through the API and waits for the jobs.
fn uninstall_everything(server: &Server) {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    runtime.block_on(async {
        let http = reqwest::Client::new();
        let token = &fixture().token;
        let Ok(response) = http.get(server.api("/apps")).bearer_auth(token).send().await else { return };
        let Ok(list) = response.json::<api::AppList>().await else { return };
        for app in list.apps {
            let Ok(response) = http.delete(server.api(&format!("/apps/{}", app.id))).bearer_auth(token).send().await
            else {
                continue;
            };
            let Ok(job) = response.json::<api::JobAccepted>().await else { continue };
            for _ in 0..600 {
                let state = http
                    .get(server.api(&format!("/deployments/{}", job.id)))
                    .bearer_auth(token)
                    .send()
                    .await
                    .ok()
                    .map(|r| r.json::<api::Job>());
                let finished = match state {
                    Some(json) => json.await.map(|job| job.state.is_finished()).unwrap_or(true),
                    None => true,
                };
                if finished {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
    });
}
