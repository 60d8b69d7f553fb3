//! `proximity recipe test` and `proximity recipe new`: the recipe author's
//! loop on the simulator, through the library and through the binary.
//!
//! The recipes' components are built by `cargo xtask build-recipes`; these
//! tests run them with `--no-build` so that a missing build is an error, not
//! a slow cargo run in the middle of a test.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use proximity::authoring::recipe_test::{self, BuildPolicy, CommandsMatch, Failure, TestOptions};
use proximity::runtime::{Runtime, RuntimeConfig};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

fn built(dir: &Path) -> &Path {
    let component = proximity_builder::component_path(dir);
    assert!(component.is_file(), "{} is not built: run `cargo xtask build-recipes`", component.display());
    dir
}

fn proximity(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_proximity"))
        .args(args)
        .current_dir(repo())
        .env_remove("PROXIMITY_CATALOG")
        .output()
        .expect("the proximity binary runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn no_build() -> TestOptions {
    TestOptions { build: BuildPolicy::Never, ..Default::default() }
}

/// Every recipe in `recipes/` with a test file passes it.
#[tokio::test]
async fn the_example_recipes_pass_their_tests() {
    let runtime = Runtime::new(RuntimeConfig::default()).unwrap();
    let mut tested = Vec::new();
    for dir in proximity_builder::find_recipe_dirs(&repo().join("recipes")).unwrap() {
        if !dir.join(recipe_test::TEST_FILE).is_file() {
            continue;
        }
        let report = recipe_test::run_tests(&runtime, built(&dir), &no_build()).await.unwrap();
        let rendered = recipe_test::render(&report, Default::default());
        assert!(report.ok(), "{}:\n{rendered}", dir.display());
        assert!(report.cases.len() >= 3, "{rendered}");
        tested.push(report.recipe_id);
    }
    for id in ["nginx", "redis", "wordpress"] {
        assert!(tested.iter().any(|t| t == id), "recipes/{id} has a recipe.test.toml: {tested:?}");
    }
}

#[tokio::test]
async fn the_report_names_each_difference() {
    let runtime = Runtime::new(RuntimeConfig::default()).unwrap();
    let dir = repo().join("tests/recipes/buggy");
    let report = recipe_test::run_tests(&runtime, built(&dir), &no_build()).await.unwrap();
    assert_eq!((report.passed(), report.failed()), (1, 1));
    let case = report.case("installs and configures memcached").unwrap();
    let line = |argv: &[&str]| recipe_test::argv_line(&argv.iter().map(|s| s.to_string()).collect::<Vec<_>>());
    assert!(case.failures.iter().any(
        |f| matches!(f, Failure::Commands { mode: CommandsMatch::Exact, expected, actual }
        if expected.last() == Some(&line(&["systemctl", "restart", "memcached"]))
            && actual.last() == Some(&line(&["systemctl", "restart", "memcache"])))
    ));
    assert!(
        case.failures.contains(&Failure::FileMissing {
            path: "/etc/memcached.conf".into(),
            written: vec!["/etc/memcache.conf".into()],
        }),
        "{:?}",
        case.failures
    );
    assert!(report.case("rejects a cache too small").unwrap().passed());
}

#[test]
fn a_passing_recipe_prints_ok_lines_and_a_summary() {
    let out = proximity(&["recipe", "test", "recipes/nginx", "--no-build"]);
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert!(out.status.success(), "stdout:\n{stdout}\nstderr:\n{stderr}");
    assert!(stdout.contains("ok     installs and greets (install, "), "{stdout}");
    assert!(stdout.lines().any(|l| l.ends_with(" passed, 0 failed")), "{stdout}");
}

#[test]
fn a_buggy_recipe_fails_with_a_diff_of_its_commands() {
    built(&repo().join("tests/recipes/buggy"));
    let out = proximity(&["recipe", "test", "tests/recipes/buggy", "--no-build"]);
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "stdout:\n{stdout}\nstderr:\n{}", text(&out.stderr));
    let lines: Vec<&str> = stdout.lines().collect();
    let expected = [
        "FAILED installs and configures memcached (install, ",
        "    commands differ (-expected +actual):",
        r#"      ["apt-get", "install", "-y", "--no-install-recommends", "memcached"]"#,
        r#"    - ["systemctl", "restart", "memcached"]"#,
        r#"    + ["systemctl", "restart", "memcache"]"#,
        "    /etc/memcached.conf was not written (written: /etc/memcache.conf)",
        "ok     rejects a cache too small (install, ",
        "1 passed, 1 failed",
    ];
    let mut from = 0;
    for want in expected {
        let found = lines[from..].iter().position(|line| line.starts_with(want));
        let Some(at) = found else { panic!("no line starting {want:?} (in order) in:\n{stdout}") };
        from += at + 1;
    }
}

#[test]
fn bad_test_files_are_errors_that_name_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, text: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        path.to_str().unwrap().to_string()
    };
    let nginx = built(&repo().join("recipes/nginx")).to_str().unwrap().to_string();
    let cases = [
        (write("unknown.toml", "[[case]]\nname = \"x\"\nparam = { a = 1 }\n"), "unknown field `param`"),
        (write("syntax.toml", "[[case]]\nname = \"x\n"), "line 2"),
        (write("empty.toml", "# nothing\n"), "no test case"),
        (write("expect.toml", "[[case]]\nname = \"x\"\n[case.expect]\ncommand = []\n"), "unknown field `command`"),
    ];
    for (file, problem) in cases {
        let out = proximity(&["recipe", "test", &nginx, "--no-build", "--file", &file]);
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{file}: {stderr}");
        assert!(stderr.contains(&format!("{file} is not a valid test file")), "{stderr}");
        assert!(stderr.contains(problem), "{file}: expected {problem:?} in:\n{stderr}");
    }
    let out = proximity(&["recipe", "test", &nginx, "--file", dir.path().join("missing.toml").to_str().unwrap()]);
    assert!(text(&out.stderr).contains("missing.toml does not exist"), "{}", text(&out.stderr));
}

/// From nothing to a passing recipe: scaffold, build with cargo, test.
#[test]
fn a_new_rust_recipe_builds_and_passes_its_tests() {
    let parent = tempfile::tempdir().unwrap();
    let parent_arg = parent.path().to_str().unwrap();
    let out = proximity(&["recipe", "new", "hello-web", "--dir", parent_arg]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let dir = parent.path().join("hello-web");
    for file in ["Cargo.toml", "recipe.toml", "src/lib.rs", "sim.toml", "recipe.test.toml", ".gitignore"] {
        assert!(dir.join(file).is_file(), "{file} is written");
    }
    let manifest = std::fs::read_to_string(dir.join("recipe.toml")).unwrap();
    assert!(manifest.contains("id = \"hello-web\"") && manifest.contains("name = \"Hello web\""), "{manifest}");
    let cargo_toml = std::fs::read_to_string(dir.join("Cargo.toml")).unwrap();
    let sdk = repo().join("sdk/rust");
    assert!(cargo_toml.contains(&format!("proximity-sdk = {{ path = \"{}\" }}", sdk.display())), "{cargo_toml}");

    // The shared target directory of `cargo xtask build-recipes` has the SDK's dependencies compiled.
    let target = repo().join("target/recipes-build");
    let dir_arg = dir.to_str().unwrap();
    let out = proximity(&["recipe", "build", dir_arg, "--cargo-target-dir", target.to_str().unwrap()]);
    assert!(out.status.success(), "the new recipe builds:\n{}", text(&out.stderr));
    let test = || proximity(&["recipe", "test", dir_arg, "--cargo-target-dir", target.to_str().unwrap()]);
    let out = test();
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "stdout:\n{stdout}\nstderr:\n{}", text(&out.stderr));
    assert!(stdout.contains("3 passed, 0 failed"), "{stdout}");
    assert!(!text(&out.stderr).contains("building"), "just built: {}", text(&out.stderr));

    // An edited source is built again before the test (cargo finds nothing new here).
    let lib = dir.join("src/lib.rs");
    std::fs::File::options().write(true).open(&lib).unwrap().set_modified(std::time::SystemTime::now()).unwrap();
    let out = test();
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("building the recipe in"), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("checked the build, unchanged"), "{}", text(&out.stdout));
    let out = test();
    assert!(!text(&out.stderr).contains("building"), "checked once is enough: {}", text(&out.stderr));

    let out = proximity(&["recipe", "new", "hello-web", "--dir", parent_arg]);
    assert!(text(&out.stderr).contains("already exists"), "{}", text(&out.stderr));
}

/// The Python and JavaScript templates build with their own toolchains (set
/// up by the builder under `target/toolchains`) and pass their test files.
#[test]
fn python_and_javascript_recipes_start_from_their_templates() {
    let parent = tempfile::tempdir().unwrap();
    let parent_arg = parent.path().to_str().unwrap();
    for (lang, source) in [("python", "app.py"), ("js", "recipe.js")] {
        let id = format!("{lang}-app");
        let out = proximity(&["recipe", "new", &id, "--lang", lang, "--dir", parent_arg]);
        assert!(out.status.success(), "{}", text(&out.stderr));
        let dir = parent.path().join(&id);
        for file in ["recipe.toml", source, "index.html", "sim.toml", "recipe.test.toml"] {
            assert!(dir.join(file).is_file(), "{lang}: {file} is written");
        }
        let out = proximity(&["recipe", "test", dir.to_str().unwrap()]);
        let stdout = text(&out.stdout);
        assert!(out.status.success(), "{lang}:\n{stdout}\n{}", text(&out.stderr));
        assert!(stdout.contains("2 passed, 0 failed"), "{lang}: {stdout}");

        // A regression the test file catches: the page goes to the wrong place.
        let code = std::fs::read_to_string(dir.join(source)).unwrap();
        std::fs::write(dir.join(source), code.replace("/var/www/html/index.html", "/var/www/index.html")).unwrap();
        let out = proximity(&["recipe", "test", dir.to_str().unwrap()]);
        let stdout = text(&out.stdout);
        assert!(!out.status.success(), "{lang}: the broken recipe fails its test:\n{stdout}");
        assert!(
            stdout.contains("/var/www/html/index.html") && stdout.contains("1 passed, 1 failed"),
            "{lang}: {stdout}"
        );
    }
}

/// `[[case.files]]` are in every new container: here an `/etc/os-release`
/// the SDK does not know, so installing packages fails.
#[tokio::test]
async fn seeded_files_are_what_the_recipe_reads() {
    let runtime = Runtime::new(RuntimeConfig::default()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("fedora.test.toml");
    std::fs::write(
        &file,
        r#"
        [[case]]
        name = "refuses an unknown distribution"

        [[case.files]]
        path = "/etc/os-release"
        contents = "ID=fedora\n"

        [case.expect]
        commands = []

        [case.expect.error]
        kind = "backend"
        message = "unsupported distribution (ID=\"fedora\""
        "#,
    )
    .unwrap();
    let options = TestOptions { test_file: Some(file), ..no_build() };
    let report = recipe_test::run_tests(&runtime, built(&repo().join("recipes/nginx")), &options).await.unwrap();
    assert!(report.ok(), "{}", recipe_test::render(&report, Default::default()));
}
