//! Publishing and installing signed bundles into the catalog a server serves:
//! `proximity serve` without `--catalog` serves `DATA_DIR/recipes`, filled
//! over `POST /api/v1/recipes` (`recipe publish`) or by `recipe install`.
//! Every refusal leaves the catalog as it was.

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Output;

use proximity::api;
use serde_json::json;

use common::{create_token, proximity, repo, serve_file, Server};

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn run(cwd: &Path, args: &[&str]) -> Output {
    proximity().current_dir(cwd).args(args).env("XDG_CONFIG_HOME", cwd.join("config")).output().unwrap()
}

fn ok(out: Output) -> String {
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert!(out.status.success(), "stdout:\n{stdout}\nstderr:\n{stderr}");
    stdout
}

fn failed(out: Output) -> String {
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert!(!out.status.success(), "expected a failure\nstdout:\n{stdout}\nstderr:\n{stderr}");
    stderr
}

/// A publisher's key, a server data directory that trusts it, and bundles
/// packed from the repository's built recipes.
struct Publisher {
    dir: tempfile::TempDir,
}

impl Publisher {
    fn new() -> Publisher {
        let dir = tempfile::tempdir().unwrap();
        ok(run(dir.path(), &["keys", "generate", "--signing", "publisher", "--dir", "keys"]));
        let trusted = dir.path().join("data/trusted-keys");
        fs::create_dir_all(&trusted).unwrap();
        fs::copy(dir.path().join("keys/publisher.pub"), trusted.join("publisher.pub")).unwrap();
        Publisher { dir }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn data(&self) -> PathBuf {
        self.path().join("data")
    }

    /// Packs `recipe_dir` into `NAME.prox`, signed unless `signed` is false.
    fn bundle(&self, recipe_dir: &Path, name: &str, signed: bool) -> PathBuf {
        let component = recipe_dir.join("target/recipe.wasm");
        assert!(component.is_file(), "{} is not built: run `cargo xtask build-recipes`", component.display());
        let out = self.path().join(format!("{name}.prox"));
        ok(run(self.path(), &["recipe", "pack", recipe_dir.to_str().unwrap(), "--out", out.to_str().unwrap()]));
        if signed {
            ok(run(self.path(), &["recipe", "sign", out.to_str().unwrap(), "--key", "keys/publisher.key"]));
        }
        out
    }

    /// A copy of a repository recipe (built component included) with its
    /// manifest edited by `edit`.
    fn variant(&self, recipe: &str, name: &str, edit: impl Fn(String) -> String) -> PathBuf {
        let from = repo().join("recipes").join(recipe);
        let to = self.path().join("variants").join(name);
        fs::create_dir_all(to.join("target")).unwrap();
        for file in ["recipe.toml", "icon.svg", "index.html", "site.conf", "sim.toml"] {
            if from.join(file).is_file() {
                fs::copy(from.join(file), to.join(file)).unwrap();
            }
        }
        fs::copy(from.join("target/recipe.wasm"), to.join("target/recipe.wasm")).unwrap();
        let manifest = fs::read_to_string(to.join("recipe.toml")).unwrap();
        fs::write(to.join("recipe.toml"), edit(manifest)).unwrap();
        to
    }

    fn publish(&self, server: &Server, token: &str, bundle: &str, extra: &[&str]) -> Output {
        let mut args = vec!["recipe", "publish", bundle, "--server", &server.url, "--token", token];
        args.extend_from_slice(extra);
        run(self.path(), &args)
    }
}

/// What the catalog lists: (id, version) pairs.
async fn catalog(server: &Server) -> Vec<(String, String)> {
    let list: api::CatalogList = reqwest::get(server.api("/catalog")).await.unwrap().json().await.unwrap();
    list.recipes.into_iter().map(|r| (r.id, r.version)).collect()
}

fn listed(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs.iter().map(|(id, v)| (id.to_string(), v.to_string())).collect()
}

/// The files under `dir`, relative, sorted: to show that a refusal wrote nothing.
fn tree(dir: &Path) -> Vec<String> {
    let mut found = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(current) = pending.pop() {
        let Ok(entries) = fs::read_dir(&current) else { continue };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                pending.push(path.clone());
            }
            found.push(path.strip_prefix(dir).unwrap().display().to_string());
        }
    }
    found.sort();
    found
}

/// `POST /recipes` with raw bytes; returns (status, error code).
async fn post_bytes(server: &Server, token: &str, bytes: Vec<u8>, query: &str) -> (u16, String) {
    let response = reqwest::Client::new()
        .post(server.api(&format!("/recipes{query}")))
        .bearer_auth(token)
        .header("content-type", "application/octet-stream")
        .body(bytes)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let body: serde_json::Value = response.json().await.unwrap();
    (status, body["error"]["code"].as_str().unwrap_or("").to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn published_bundles_become_the_catalog_and_deploy() {
    let publisher = Publisher::new();
    let token = create_token(&publisher.data(), "publisher");
    let server = Server::start(&publisher.data(), &["--backend", "sim"]);
    assert!(catalog(&server).await.is_empty(), "a new server's catalog is empty");

    let nginx = publisher.bundle(&repo().join("recipes/nginx"), "nginx", true);
    let out = ok(publisher.publish(&server, &token, nginx.to_str().unwrap(), &[]));
    assert!(out.contains("nginx 0.1.0 installed"), "{out}");
    assert!(out.contains("signed by: publisher"), "{out}");
    assert!(out.contains("- creates containers"), "the grants are shown: {out}");
    assert_eq!(catalog(&server).await, listed(&[("nginx", "0.1.0")]));
    assert!(publisher.data().join("bundles/nginx-0.1.0.prox").is_file(), "the bundle is kept as received");

    // The same bundle again changes nothing.
    let again = ok(publisher.publish(&server, &token, nginx.to_str().unwrap(), &[]));
    assert!(again.contains("already installed from this bundle"), "{again}");

    // From a URL: the server fetches it.
    let redis = publisher.bundle(&repo().join("recipes/redis"), "redis", true);
    let url = serve_file(fs::read(&redis).unwrap());
    let out = ok(publisher.publish(&server, &token, &url, &[]));
    assert!(out.contains("redis 0.1.0 installed"), "{out}");
    assert_eq!(catalog(&server).await, listed(&[("nginx", "0.1.0"), ("redis", "0.1.0")]));

    // Recipes in Python and JavaScript travel the same way.
    for (id, dir) in [("adminer", "recipes/adminer"), ("n8n", "recipes/n8n")] {
        let bundle = publisher.bundle(&repo().join(dir), id, true);
        let out = ok(publisher.publish(&server, &token, bundle.to_str().unwrap(), &[]));
        assert!(out.contains(&format!("{id} 0.1.0 installed")) && out.contains("signed by: publisher"), "{out}");
    }
    assert_eq!(
        catalog(&server).await,
        listed(&[("adminer", "0.1.0"), ("n8n", "0.1.0"), ("nginx", "0.1.0"), ("redis", "0.1.0")])
    );
    let stdout = ok(run(publisher.path(), &["deploy", "adminer", "--server", &server.url, "--token", &token]));
    assert!(stdout.contains("http://"), "the Python recipe deploys from its bundle: {stdout}");

    // What was installed deploys.
    let deploy = run(
        publisher.path(),
        &["deploy", "nginx", "--server", &server.url, "--token", &token, "--param", "greeting=Installed from a bundle"],
    );
    let stdout = ok(deploy);
    assert!(stdout.contains("http://"), "the app's address is printed: {stdout}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_version_with_more_grants_waits_for_the_operator() {
    let publisher = Publisher::new();
    let token = create_token(&publisher.data(), "publisher");
    let server = Server::start(&publisher.data(), &["--backend", "sim"]);
    let v1 = publisher.bundle(&repo().join("recipes/nginx"), "nginx-1", true);
    ok(publisher.publish(&server, &token, v1.to_str().unwrap(), &[]));

    let bigger = publisher.variant("nginx", "nginx-2", |m| {
        m.replace("version = \"0.1.0\"", "version = \"0.2.0\"")
            .replace("max-cores = 2", "max-cores = 4")
            .replace("features = []", "features = [\"nesting\"]")
    });
    let v2 = publisher.bundle(&bigger, "nginx-2", true);
    let before = tree(&publisher.data().join("recipes"));

    // Not on a terminal: the CLI shows the new grants and installs nothing.
    let stderr = failed(publisher.publish(&server, &token, v2.to_str().unwrap(), &[]));
    assert!(stderr.contains("+ lxc max-cores 2 -> 4"), "{stderr}");
    assert!(stderr.contains("+ lxc feature `nesting`"), "{stderr}");
    assert!(stderr.contains("grants-grew"), "{stderr}");
    assert_eq!(catalog(&server).await, listed(&[("nginx", "0.1.0")]));
    assert_eq!(tree(&publisher.data().join("recipes")), before);

    // Accepting another bundle's digest does not accept this one.
    let (status, code) =
        post_bytes(&server, &token, fs::read(&v2).unwrap(), &format!("?accept_grants={}", "0".repeat(64))).await;
    assert_eq!((status, code.as_str()), (409, "grants-grew"));

    let out = ok(publisher.publish(&server, &token, v2.to_str().unwrap(), &["--accept-grants"]));
    assert!(out.contains("nginx 0.2.0 installed") && out.contains("replacing 0.1.0"), "{out}");
    assert!(out.contains("+ granted now: lxc max-cores 2 -> 4"), "{out}");
    assert_eq!(catalog(&server).await, listed(&[("nginx", "0.2.0")]));

    // Going back, or changing a published version in place, is refused.
    let (status, code) = post_bytes(&server, &token, fs::read(&v1).unwrap(), "").await;
    assert_eq!((status, code.as_str()), (409, "version-conflict"));
    let changed = publisher.variant("nginx", "nginx-2b", |m| {
        m.replace("version = \"0.1.0\"", "version = \"0.2.0\"")
            .replace("max-cores = 2", "max-cores = 4")
            .replace("features = []", "features = [\"nesting\"]")
            + "\n# a different build of the same version\n"
    });
    let v2b = publisher.bundle(&changed, "nginx-2b", true);
    let (status, code) = post_bytes(&server, &token, fs::read(&v2b).unwrap(), "").await;
    assert_eq!((status, code.as_str()), (409, "version-conflict"));
    assert_eq!(catalog(&server).await, listed(&[("nginx", "0.2.0")]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_bundles_leave_the_catalog_as_it_was() {
    let publisher = Publisher::new();
    let token = create_token(&publisher.data(), "publisher");
    let server = Server::start(&publisher.data(), &["--backend", "sim"]);
    let nginx = publisher.bundle(&repo().join("recipes/nginx"), "nginx", true);
    ok(publisher.publish(&server, &token, nginx.to_str().unwrap(), &[]));
    let before = tree(&publisher.data());

    // Unsigned: refused, then allowed for its digest only.
    let unsigned = publisher.bundle(&repo().join("recipes/redis"), "redis-unsigned", false);
    let stderr = failed(publisher.publish(&server, &token, unsigned.to_str().unwrap(), &[]));
    assert!(stderr.contains("403 untrusted-bundle") && stderr.contains("is not signed"), "{stderr}");
    // Allowing it over the API takes a server started to honour that.
    let stderr = failed(publisher.publish(&server, &token, unsigned.to_str().unwrap(), &["--allow-untrusted"]));
    assert!(stderr.contains("does not take allow_untrusted over the API"), "{stderr}");

    // Tampered: a byte flipped in the component, a truncated file, garbage.
    let bytes = fs::read(&nginx).unwrap();
    let mut flipped = bytes.clone();
    let at = bytes.windows(4).position(|w| w == b"\0asm").expect("the component's magic is in the bundle") + 64;
    flipped[at] ^= 0x40;
    for (case, bad) in
        [("flipped", flipped), ("truncated", bytes[..bytes.len() / 2].to_vec()), ("garbage", b"no".to_vec())]
    {
        let (status, code) = post_bytes(&server, &token, bad, "").await;
        assert_eq!((status, code.as_str()), (422, "invalid-bundle"), "{case}");
    }

    // Signed, but its component is not a recipe.
    let broken = publisher.variant("redis", "redis-broken", |m| m);
    fs::write(broken.join("target/recipe.wasm"), b"\0asm not really").unwrap();
    let broken = publisher.bundle(&broken, "redis-broken", true);
    let (status, code) = post_bytes(&server, &token, fs::read(&broken).unwrap(), "").await;
    assert_eq!((status, code.as_str()), (422, "invalid-bundle"));

    // Without a token; and a URL that does not answer with a bundle.
    let response = reqwest::Client::new().post(server.api("/recipes")).body(bytes.clone()).send().await.unwrap();
    assert_eq!(response.status().as_u16(), 401);
    let response = reqwest::Client::new()
        .post(server.api("/recipes"))
        .bearer_auth(&token)
        .json(&json!({ "url": "file:///etc/passwd" }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 422);

    assert_eq!(
        tree(&publisher.data()).into_iter().filter(|p| !p.starts_with("native")).collect::<Vec<_>>(),
        before.into_iter().filter(|p| !p.starts_with("native")).collect::<Vec<_>>(),
        "nothing was written but compiled code"
    );
    assert_eq!(catalog(&server).await, listed(&[("nginx", "0.1.0")]));

    // A server that honours allow_untrusted: only for the bundle's own digest.
    let open_data = publisher.path().join("open-data");
    let open_token = create_token(&open_data, "operator");
    let open = Server::start(&open_data, &["--backend", "sim", "--api-allow-untrusted"]);
    let other_digest = format!("?allow_untrusted={}", "0".repeat(64));
    let (status, code) = post_bytes(&open, &open_token, fs::read(&unsigned).unwrap(), &other_digest).await;
    assert_eq!((status, code.as_str()), (403, "untrusted-bundle"));
    let out = ok(publisher.publish(&open, &open_token, unsigned.to_str().unwrap(), &["--allow-untrusted"]));
    assert!(out.contains("redis 0.1.0 installed") && out.contains("no trusted key"), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recipe_install_fills_a_data_directory_that_serve_then_serves() {
    let publisher = Publisher::new();
    let nginx = publisher.bundle(&repo().join("recipes/nginx"), "nginx", true);
    let data = publisher.data();
    let out = ok(run(
        publisher.path(),
        &["recipe", "install", nginx.to_str().unwrap(), "--data-dir", data.to_str().unwrap()],
    ));
    assert!(out.contains("nginx 0.1.0 installed"), "{out}");

    // Untrusted elsewhere: a data directory without the publisher's key.
    let elsewhere = publisher.path().join("elsewhere");
    let stderr = failed(run(
        publisher.path(),
        &["recipe", "install", nginx.to_str().unwrap(), "--data-dir", elsewhere.to_str().unwrap()],
    ));
    assert!(stderr.contains("only by keys that are not trusted") && stderr.contains("--allow-untrusted="), "{stderr}");
    assert!(!elsewhere.join("recipes/nginx").exists());

    let server = Server::start(&data, &["--backend", "sim"]);
    assert_eq!(catalog(&server).await, listed(&[("nginx", "0.1.0")]));
    let detail: api::RecipeDetail = reqwest::get(server.api("/recipes/nginx")).await.unwrap().json().await.unwrap();
    let component = fs::read(data.join("recipes/nginx/recipe.wasm")).unwrap();
    assert_eq!(detail.summary.digest, hex_sha256(&component), "the catalog serves the installed component");

    // A server that serves recipe sources does not install into them.
    let sources_data = publisher.path().join("sources-data");
    let token = create_token(&sources_data, "t");
    let sources = Server::start(&sources_data, &["--backend", "sim", "--catalog", "recipes"]);
    let (status, code) = post_bytes(&sources, &token, fs::read(&nginx).unwrap(), "").await;
    assert_eq!((status, code.as_str()), (409, "catalog-read-only"));
}

fn hex_sha256(bytes: &[u8]) -> String {
    use sha2::Digest as _;
    hex::encode(sha2::Sha256::digest(bytes))
}
