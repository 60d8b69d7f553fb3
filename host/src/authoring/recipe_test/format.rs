//! The types of `recipe.test.toml`, as an author writes it (the format is
//! described in the [module documentation](super)), and their checks.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _, Result};
use serde::Deserialize;

use crate::backend::sim::ExecRule;

/// The file next to `recipe.toml` that holds a recipe's test cases.
pub const TEST_FILE: &str = "recipe.test.toml";

/// A whole `recipe.test.toml`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TestFile {
    #[serde(default, rename = "case")]
    pub cases: Vec<Case>,
}

/// One `[[case]]`: a run of one export on a fresh simulated cluster.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct Case {
    pub name: String,
    #[serde(default)]
    pub action: CaseAction,
    /// For `upgrade`: the version the app is upgraded from (default: the recipe's own).
    pub from_version: Option<String>,
    /// Parameters as the operator would give them: strings, integers or booleans.
    #[serde(default)]
    pub params: BTreeMap<String, toml::Value>,
    #[serde(default)]
    pub resources: CaseResources,
    /// The app's name (default `<recipe id>-test`), and so the container's hostname.
    pub app_id: Option<String>,
    pub node: Option<String>,
    /// Whether the recipe's own `sim.toml` scripts the simulator too (after
    /// this case's `exec` rules). Default true.
    #[serde(default = "yes")]
    pub sim_toml: bool,
    /// Scripted command answers, tried before `sim.toml`'s, first match wins.
    #[serde(default)]
    pub exec: Vec<ExecRule>,
    /// Files every new container starts with.
    #[serde(default)]
    pub files: Vec<SeedFile>,
    /// The status every HTTP probe gets (default: `sim.toml`'s, else 200).
    pub http_status: Option<u16>,
    /// Ports that never answer a probe (added to `sim.toml`'s).
    #[serde(default)]
    pub closed_ports: Vec<u16>,
    /// Container creation fails with this message.
    pub fail_create: Option<String>,
    #[serde(default)]
    pub expect: Expect,
}

fn yes() -> bool {
    true
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CaseAction {
    #[default]
    Install,
    Uninstall,
    Upgrade,
    Health,
}

impl CaseAction {
    pub fn name(self) -> &'static str {
        match self {
            CaseAction::Install => "install",
            CaseAction::Uninstall => "uninstall",
            CaseAction::Upgrade => "upgrade",
            CaseAction::Health => "health",
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct CaseResources {
    pub cores: Option<u32>,
    pub memory_mb: Option<u32>,
    pub swap_mb: Option<u32>,
    pub disk_gb: Option<u32>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SeedFile {
    pub path: String,
    pub contents: String,
}

/// What the run must have done. Every part is optional; with neither `result`
/// nor `error`, the run must succeed.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct Expect {
    /// The argv of every command run in the containers, in order.
    pub commands: Option<Vec<Vec<String>>>,
    #[serde(default)]
    pub commands_match: CommandsMatch,
    #[serde(default)]
    pub files: Vec<FileExpect>,
    pub result: Option<ResultExpect>,
    pub error: Option<ErrorExpect>,
    /// The progress steps the recipe announced, exactly and in order.
    pub steps: Option<Vec<String>>,
}

/// How `expect.commands` is compared with the commands run.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CommandsMatch {
    /// Exactly these commands, nothing else.
    #[default]
    Exact,
    /// These commands in this order; others may run before, between and after.
    InOrder,
}

/// One `[[case.expect.files]]`: a file the run wrote (the last write of the path counts).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct FileExpect {
    pub path: String,
    /// The exact contents.
    pub contents: Option<String>,
    /// The exact contents, from a file relative to the recipe directory.
    pub contents_file: Option<PathBuf>,
    /// Text the contents must hold (one string or a list).
    pub contains: Option<OneOrMany>,
    /// The file mode, best written in octal: `mode = 0o640`.
    pub mode: Option<u32>,
    pub owner: Option<String>,
    pub group: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

impl OneOrMany {
    pub fn items(&self) -> &[String] {
        match self {
            OneOrMany::One(one) => std::slice::from_ref(one),
            OneOrMany::Many(many) => many,
        }
    }
}

/// The value the export returned. Only the fields given are compared.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct ResultExpect {
    /// install, upgrade: the app's URL.
    pub url: Option<String>,
    pub address: Option<String>,
    pub ports: Option<Vec<u16>>,
    /// install, upgrade: every output, exactly.
    pub outputs: Option<BTreeMap<String, String>>,
    /// health: the overall verdict.
    pub healthy: Option<bool>,
    /// health: check name → ok, for the checks named.
    pub checks: Option<BTreeMap<String, bool>>,
}

/// The run must fail. `kind` is the recipe's error kind (`denied`,
/// `invalid-input`, `timeout`, `not-found`, `backend`), a host failure
/// (`deadline`, `memory-limit`, `crashed`, `instantiate`), or
/// `invalid-params` when the parameters must be rejected before the run.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ErrorExpect {
    pub kind: Option<String>,
    /// A substring of the error message.
    pub message: Option<String>,
}

/// Error kinds `expect.error.kind` may name.
pub const ERROR_KINDS: [&str; 10] = [
    "denied",
    "invalid-input",
    "timeout",
    "not-found",
    "backend",
    "deadline",
    "memory-limit",
    "crashed",
    "instantiate",
    "invalid-params",
];

/// Read and check `path`. Every error names the file (and the case, where one is to blame).
pub fn load(path: &Path) -> Result<TestFile> {
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    parse(&text).with_context(|| format!("{} is not a valid test file", path.display()))
}

pub fn parse(text: &str) -> Result<TestFile> {
    let file: TestFile = toml::from_str(text)?;
    if file.cases.is_empty() {
        bail!("it has no test case: add a `[[case]]` table with a `name`");
    }
    let mut names = std::collections::BTreeSet::new();
    for (n, case) in file.cases.iter().enumerate() {
        let label = format!("case {} (`{}`)", n + 1, case.name);
        if case.name.trim().is_empty() {
            bail!("case {}: `name` is empty", n + 1);
        }
        if !names.insert(case.name.as_str()) {
            bail!("{label}: another case has the same name");
        }
        check_case(case).with_context(|| label)?;
    }
    Ok(file)
}

fn check_case(case: &Case) -> Result<()> {
    if case.from_version.is_some() && case.action != CaseAction::Upgrade {
        bail!("`from-version` applies to `action = \"upgrade\"` only");
    }
    for (name, value) in &case.params {
        param_text(value).with_context(|| format!("parameter `{name}`"))?;
    }
    for file in &case.files {
        if !file.path.starts_with('/') {
            bail!("files: path `{}` is not absolute", file.path);
        }
    }
    let expect = &case.expect;
    if expect.result.is_some() && expect.error.is_some() {
        bail!("expect: give `result` (the run succeeds) or `error` (it fails), not both");
    }
    if let Some(error) = &expect.error {
        if let Some(kind) = &error.kind {
            if !ERROR_KINDS.contains(&kind.as_str()) {
                bail!("expect.error: unknown kind `{kind}` (one of {})", ERROR_KINDS.join(", "));
            }
        }
    }
    if let Some(result) = &expect.result {
        let app_fields = result.url.is_some() || result.address.is_some() || result.ports.is_some();
        let app_fields = app_fields || result.outputs.is_some();
        let health_fields = result.healthy.is_some() || result.checks.is_some();
        match case.action {
            CaseAction::Install | CaseAction::Upgrade if health_fields => {
                bail!("expect.result: `healthy` and `checks` apply to health cases")
            }
            CaseAction::Health if app_fields => {
                bail!("expect.result: `url`, `address`, `ports` and `outputs` apply to install and upgrade cases")
            }
            CaseAction::Uninstall if app_fields || health_fields => {
                bail!("expect.result: uninstall returns nothing to compare (an empty `[case.expect.result]` is fine)")
            }
            _ => {}
        }
    }
    for file in &expect.files {
        if file.contents.is_some() && file.contents_file.is_some() {
            bail!("expect.files `{}`: give `contents` or `contents-file`, not both", file.path);
        }
    }
    Ok(())
}

/// A parameter as the text an operator would type.
pub fn param_text(value: &toml::Value) -> Result<String> {
    match value {
        toml::Value::String(s) => Ok(s.clone()),
        toml::Value::Integer(i) => Ok(i.to_string()),
        toml::Value::Boolean(b) => Ok(b.to_string()),
        other => bail!("must be a string, an integer or a boolean, not {}", other.type_str()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_case_parses() {
        let file = parse(
            r#"
            [[case]]
            name = "full"
            action = "upgrade"
            from-version = "0.0.1"
            params = { greeting = "hi", port = 8080, tls = false }
            resources = { cores = 2 }
            sim-toml = false
            http-status = 503
            closed-ports = [81]

            [[case.exec]]
            prefix = ["redis-cli"]
            stdout = "PONG\n"

            [[case.files]]
            path = "/etc/hosts"
            contents = "127.0.0.1 localhost\n"

            [case.expect]
            commands = [["apt-get", "update"]]
            commands-match = "in-order"
            steps = ["One"]

            [[case.expect.files]]
            path = "/etc/x"
            contains = "y"
            mode = 0o640

            [case.expect.result]
            url = "http://{{address}}/"
            outputs = { a = "b" }
            "#,
        )
        .unwrap();
        let case = &file.cases[0];
        assert_eq!(case.action, CaseAction::Upgrade);
        assert!(!case.sim_toml);
        assert_eq!(case.exec.len(), 1);
        assert_eq!(case.expect.commands_match, CommandsMatch::InOrder);
        assert_eq!(case.expect.files[0].mode, Some(0o640));
        assert_eq!(case.expect.files[0].contains.as_ref().unwrap().items(), ["y"]);
        assert_eq!(param_text(&case.params["port"]).unwrap(), "8080");
    }

    #[test]
    fn mistakes_are_named() {
        let error = |text: &str| format!("{:#}", parse(text).unwrap_err());
        assert!(error("[[case]]\nname = \"a\"\nparam = {}\n").contains("unknown field `param`"));
        assert!(error("").contains("no test case"));
        assert!(error("[[case]]\nname = \"a\"\n[[case]]\nname = \"a\"\n").contains("same name"));
        let both = "[[case]]\nname = \"a\"\n[case.expect.result]\n[case.expect.error]\n";
        assert!(error(both).contains("not both"), "{}", error(both));
        let healthy = "[[case]]\nname = \"a\"\n[case.expect.result]\nhealthy = true\n";
        assert!(error(healthy).contains("health cases"));
        assert!(error("[[case]]\nname = \"a\"\n[[case.exec]]\nstdout = \"x\"\n").contains("`prefix` and `words`"));
        assert!(error("[[case]]\nname = \"a\"\n[case.expect.error]\nkind = \"oops\"\n").contains("unknown kind"));
    }
}
