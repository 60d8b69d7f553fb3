//! `sim`: an in-process simulated cluster.
//!
//! It keeps nodes, VMIDs and containers with their state and files, answers
//! commands from a script (exit 0 with no output unless a rule says
//! otherwise), and records every operation as a [`PlanStep`]. It is what
//! `--dry-run` uses and what recipe authors test against; it never stands in
//! for a real backend in that backend's own tests.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;
use sha2::{Digest, Sha256};

use super::{
    Backend, BackendError, ContainerRef, ContainerSpec, ExecOutput, ExecRequest, FileWrite, HttpProbe, Ownership,
    ProxyExecutor,
};
use crate::plan::{PlanStep, MAX_TEXT_SHOWN};

/// First VMID handed out, as on a fresh Proxmox VE cluster.
const FIRST_VMID: u32 = 100;

/// How the simulated world answers. Rules are tried in order; the first match wins.
#[derive(Clone, Debug, Default)]
pub struct SimScript {
    pub exec_rules: Vec<ExecRule>,
    /// Ports that never answer a probe.
    pub closed_ports: Vec<u16>,
    /// Status code every HTTP probe gets (200 when unset).
    pub http_status: Option<u16>,
    /// Make `create` fail with this message (fault injection).
    pub fail_create: Option<String>,
    /// Files every new container starts with, by absolute path (besides
    /// `/etc/os-release`): what a recipe reads without having written it.
    pub files: BTreeMap<String, Vec<u8>>,
}

/// A scripted answer for the commands a [`ArgvMatch`] selects. Deserializes
/// from one `[[exec]]` table of `sim.toml` (see [`SimScript::from_toml`]).
#[derive(Clone, Debug, Default, serde::Deserialize)]
#[serde(try_from = "RuleFile")]
pub struct ExecRule {
    pub select: ArgvMatch,
    pub status: i32,
    pub stdout: String,
    pub stderr: String,
    /// Simulated run time; a command slower than its timeout times out.
    pub delay: Duration,
}

/// Which commands a rule answers.
#[derive(Clone, Debug)]
pub enum ArgvMatch {
    /// The argv starts with these; `*` matches any single argument.
    Prefix(Vec<String>),
    /// These arguments all appear in the argv, in this order, with anything
    /// between them (`["compose", "pull"]` matches `docker compose -f x pull`).
    Words(Vec<String>),
}

impl Default for ArgvMatch {
    fn default() -> Self {
        ArgvMatch::Prefix(Vec::new())
    }
}

impl ArgvMatch {
    fn matches(&self, argv: &[String]) -> bool {
        match self {
            ArgvMatch::Prefix(prefix) => {
                prefix.len() <= argv.len() && prefix.iter().zip(argv).all(|(want, got)| want == "*" || want == got)
            }
            ArgvMatch::Words(words) => {
                let mut rest = argv.iter();
                words.iter().all(|word| rest.any(|arg| arg == word))
            }
        }
    }
}

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| s.to_string()).collect()
}

impl ExecRule {
    /// Answers commands whose argv starts with `prefix`.
    pub fn new(prefix: &[&str]) -> Self {
        ExecRule { select: ArgvMatch::Prefix(strings(prefix)), ..Default::default() }
    }
    /// Answers commands whose argv holds `words` in order.
    pub fn words(words: &[&str]) -> Self {
        ExecRule { select: ArgvMatch::Words(strings(words)), ..Default::default() }
    }
    pub fn stdout(mut self, text: &str) -> Self {
        self.stdout = text.into();
        self
    }
    pub fn fails(mut self, status: i32, stderr: &str) -> Self {
        self.status = status;
        self.stderr = stderr.into();
        self
    }
    pub fn takes(mut self, delay: Duration) -> Self {
        self.delay = delay;
        self
    }
    fn output(&self) -> ExecOutput {
        ExecOutput {
            status: self.status,
            stdout: self.stdout.clone().into_bytes(),
            stderr: self.stderr.clone().into_bytes(),
        }
    }
}

/// The file in a recipe directory that scripts the simulator for that recipe.
pub const SIM_SCRIPT_FILE: &str = "sim.toml";

/// `sim.toml`, as written by a recipe author:
///
/// ```toml
/// http-status = 200        # what HTTP probes get (default 200)
/// closed-ports = []        # ports that never answer
///
/// [[exec]]
/// words = ["compose", "ps", "--services"]   # or: prefix = ["docker", "info"]
/// stdout = "wordpress\ndb\n"
/// status = 0
/// stderr = ""
/// delay-ms = 0
/// ```
#[derive(serde::Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
struct ScriptFile {
    #[serde(default)]
    exec: Vec<ExecRule>,
    #[serde(default)]
    closed_ports: Vec<u16>,
    http_status: Option<u16>,
}

#[derive(serde::Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
struct RuleFile {
    prefix: Option<Vec<String>>,
    words: Option<Vec<String>>,
    #[serde(default)]
    status: i32,
    #[serde(default)]
    stdout: String,
    #[serde(default)]
    stderr: String,
    #[serde(default)]
    delay_ms: u64,
}

impl TryFrom<RuleFile> for ExecRule {
    type Error = String;

    fn try_from(rule: RuleFile) -> Result<Self, String> {
        let select = match (rule.prefix, rule.words) {
            (Some(prefix), None) => ArgvMatch::Prefix(prefix),
            (None, Some(words)) => ArgvMatch::Words(words),
            _ => return Err("an exec rule needs exactly one of `prefix` and `words`".into()),
        };
        Ok(ExecRule {
            select,
            status: rule.status,
            stdout: rule.stdout,
            stderr: rule.stderr,
            delay: Duration::from_millis(rule.delay_ms),
        })
    }
}

impl SimScript {
    pub fn from_toml(text: &str) -> Result<Self, String> {
        let file: ScriptFile = toml::from_str(text).map_err(|err| err.to_string())?;
        Ok(SimScript {
            exec_rules: file.exec,
            closed_ports: file.closed_ports,
            http_status: file.http_status,
            ..Default::default()
        })
    }

    /// The recipe's `sim.toml`, or the default world when it has none.
    pub fn for_recipe(recipe_dir: &std::path::Path) -> anyhow::Result<Self> {
        let path = recipe_dir.join(SIM_SCRIPT_FILE);
        match std::fs::read_to_string(&path) {
            Ok(text) => Self::from_toml(&text).map_err(|err| anyhow::anyhow!("{}: {err}", path.display())),
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(SimScript::default()),
            Err(err) => Err(anyhow::Error::new(err).context(format!("reading {}", path.display()))),
        }
    }

    /// The first rule that answers `argv`.
    fn rule_for(&self, argv: &[String]) -> Option<&ExecRule> {
        self.exec_rules.iter().find(|rule| rule.select.matches(argv))
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SimState {
    Running,
    Stopped,
}

#[derive(Clone, Debug)]
pub struct SimFile {
    pub contents: Vec<u8>,
    pub mode: u32,
    pub owner: Option<String>,
    pub group: Option<String>,
}

#[derive(Clone, Debug)]
pub struct SimContainer {
    pub container: ContainerRef,
    pub vmid: u32,
    pub spec: ContainerSpec,
    pub owner: Ownership,
    pub state: SimState,
    pub files: BTreeMap<String, SimFile>,
}

#[derive(Debug)]
struct Cluster {
    nodes: Vec<String>,
    next_vmid: u32,
    containers: BTreeMap<String, SimContainer>,
    plan: Vec<PlanStep>,
}

/// The simulated cluster. Cheap to clone: clones share one cluster.
#[derive(Clone)]
pub struct SimBackend {
    cluster: Arc<Mutex<Cluster>>,
    script: Arc<SimScript>,
    /// Scripts by recipe id, for a simulator shared by many recipes (the
    /// server's); containers of other recipes follow `script`.
    recipe_scripts: Arc<std::collections::HashMap<String, Arc<SimScript>>>,
}

impl Default for SimBackend {
    fn default() -> Self {
        Self::new(SimScript::default())
    }
}

impl SimBackend {
    pub fn new(script: SimScript) -> Self {
        SimBackend {
            cluster: Arc::new(Mutex::new(Cluster {
                nodes: vec!["pve1".into(), "pve2".into()],
                next_vmid: FIRST_VMID,
                containers: BTreeMap::new(),
                plan: Vec::new(),
            })),
            script: Arc::new(script),
            recipe_scripts: Arc::default(),
        }
    }

    /// The same simulator, answering each recipe's containers by that recipe's script.
    pub fn with_recipe_scripts(mut self, scripts: impl IntoIterator<Item = (String, SimScript)>) -> Self {
        self.recipe_scripts = Arc::new(scripts.into_iter().map(|(id, script)| (id, Arc::new(script))).collect());
        self
    }

    /// The same cluster, answered by `script` from now on: a test installs
    /// with one script and runs the next action with another.
    pub fn with_script(&self, script: SimScript) -> Self {
        SimBackend {
            cluster: self.cluster.clone(),
            script: Arc::new(script),
            recipe_scripts: self.recipe_scripts.clone(),
        }
    }

    fn script_for(&self, container: &ContainerRef) -> Arc<SimScript> {
        let recipe = self.lock().containers.get(&container.id).map(|c| c.owner.recipe_id.clone());
        recipe.and_then(|id| self.recipe_scripts.get(&id).cloned()).unwrap_or_else(|| self.script.clone())
    }

    /// Every operation so far, in order.
    pub fn plan(&self) -> Vec<PlanStep> {
        self.lock().plan.clone()
    }

    /// The containers that exist now.
    pub fn containers(&self) -> Vec<SimContainer> {
        self.lock().containers.values().cloned().collect()
    }

    pub fn container(&self, id: &str) -> Option<SimContainer> {
        self.lock().containers.get(id).cloned()
    }

    fn lock(&self) -> MutexGuard<'_, Cluster> {
        // A panic while holding the lock cannot leave the cluster half-updated
        // in a way that matters to a simulation, so poisoning is ignored.
        self.cluster.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn with_container<R>(
        &self,
        container: &ContainerRef,
        f: impl FnOnce(&mut SimContainer, &mut Vec<PlanStep>) -> Result<R, BackendError>,
    ) -> Result<R, BackendError> {
        let mut cluster = self.lock();
        let Cluster { containers, plan, .. } = &mut *cluster;
        let found = containers
            .get_mut(&container.id)
            .ok_or_else(|| BackendError::NotFound(format!("container {} does not exist", container.id)))?;
        f(found, plan)
    }

    fn running(&self, container: &ContainerRef) -> Result<(), BackendError> {
        self.with_container(container, |c, _| match c.state {
            SimState::Running => Ok(()),
            SimState::Stopped => Err(BackendError::Failed(format!("container {} is not running", c.container.id))),
        })
    }
}

/// The `/etc/os-release` a fresh container of this template has.
fn os_release(template: &str) -> String {
    if template.starts_with("alpine") {
        let version = template.strip_prefix("alpine-").unwrap_or("3.20");
        format!("NAME=\"Alpine Linux\"\nID=alpine\nVERSION_ID={version}.0\nPRETTY_NAME=\"Alpine Linux v{version}\"\n")
    } else if template.starts_with("ubuntu") {
        "NAME=\"Ubuntu\"\nID=ubuntu\nID_LIKE=debian\nVERSION_ID=\"24.04\"\n".to_string()
    } else {
        "PRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\nNAME=\"Debian GNU/Linux\"\nVERSION_ID=\"12\"\nID=debian\n"
            .to_string()
    }
}

#[async_trait]
impl Backend for SimBackend {
    fn name(&self) -> &'static str {
        "sim"
    }

    async fn owned(&self) -> Result<Vec<(ContainerRef, Ownership)>, BackendError> {
        Ok(self.lock().containers.values().map(|c| (c.container.clone(), c.owner.clone())).collect())
    }

    async fn create(&self, owner: &Ownership, spec: &ContainerSpec) -> Result<ContainerRef, BackendError> {
        if let Some(message) = &self.script.fail_create {
            return Err(BackendError::Failed(message.clone()));
        }
        let mut cluster = self.lock();
        let vmid = cluster.next_vmid;
        cluster.next_vmid += 1;
        // Place on the node with the fewest containers, as a stand-in for
        // the free-memory placement a real cluster uses.
        let node = cluster
            .nodes
            .iter()
            .min_by_key(|node| cluster.containers.values().filter(|c| c.container.node.as_ref() == Some(*node)).count())
            .cloned()
            .expect("the simulated cluster has nodes");
        let container =
            ContainerRef { id: vmid.to_string(), hostname: spec.hostname.clone(), node: Some(node.clone()) };
        let mut files = BTreeMap::new();
        files.insert(
            "/etc/os-release".to_string(),
            SimFile { contents: os_release(&spec.os_template).into_bytes(), mode: 0o644, owner: None, group: None },
        );
        let script = self.recipe_scripts.get(&owner.recipe_id).unwrap_or(&self.script);
        for (path, contents) in &script.files {
            files.insert(path.clone(), SimFile { contents: contents.clone(), mode: 0o644, owner: None, group: None });
        }
        cluster.containers.insert(
            container.id.clone(),
            SimContainer {
                container: container.clone(),
                vmid,
                spec: spec.clone(),
                owner: owner.clone(),
                state: SimState::Stopped,
                files,
            },
        );
        cluster.plan.push(PlanStep::CreateLxc { id: container.id.clone(), node, spec: spec.clone() });
        Ok(container)
    }

    async fn start(&self, container: &ContainerRef) -> Result<(), BackendError> {
        self.with_container(container, |c, plan| {
            c.state = SimState::Running;
            plan.push(PlanStep::Start { id: c.container.id.clone() });
            Ok(())
        })
    }

    async fn stop(&self, container: &ContainerRef) -> Result<(), BackendError> {
        self.with_container(container, |c, plan| {
            c.state = SimState::Stopped;
            plan.push(PlanStep::Stop { id: c.container.id.clone() });
            Ok(())
        })
    }

    async fn destroy(&self, container: &ContainerRef) -> Result<(), BackendError> {
        let mut cluster = self.lock();
        if cluster.containers.remove(&container.id).is_some() {
            cluster.plan.push(PlanStep::Destroy { id: container.id.clone() });
        }
        Ok(())
    }

    async fn address(&self, container: &ContainerRef, _timeout: Duration) -> Result<String, BackendError> {
        self.running(container)?;
        self.with_container(container, |c, _| {
            // From 198.18.0.0/15, a range reserved for benchmarks and never
            // assigned to hosts, so a simulated address cannot be mistaken
            // for a real one. Nothing ever sends traffic to it.
            Ok(format!("198.18.{}.{}", c.vmid / 250, c.vmid % 250 + 2))
        })
    }

    async fn exec(&self, container: &ContainerRef, request: &ExecRequest) -> Result<ExecOutput, BackendError> {
        if request.argv.is_empty() {
            return Err(BackendError::InvalidInput("exec needs a program to run (argv is empty)".into()));
        }
        self.running(container)?;
        let script = self.script_for(container);
        let rule = script.rule_for(&request.argv);
        let delay = rule.map(|r| r.delay).unwrap_or_default();
        let timed_out = delay > request.timeout;
        if !delay.is_zero() {
            tokio::time::sleep(delay.min(request.timeout)).await;
        }
        let output = rule.map(ExecRule::output).unwrap_or_default();
        self.with_container(container, |c, plan| {
            plan.push(PlanStep::Exec {
                id: c.container.id.clone(),
                argv: request.argv.clone(),
                env: request.env.clone(),
                cwd: request.cwd.clone(),
                stdin_bytes: request.stdin.as_ref().map_or(0, Vec::len),
                timeout_ms: request.timeout.as_millis() as u64,
                status: if timed_out { -1 } else { output.status },
            });
            Ok(())
        })?;
        if timed_out {
            return Err(BackendError::Timeout(format!(
                "`{}` did not finish within {}s",
                request.argv.join(" "),
                request.timeout.as_secs()
            )));
        }
        Ok(output)
    }

    async fn write_file(&self, container: &ContainerRef, file: &FileWrite) -> Result<(), BackendError> {
        if !file.path.starts_with('/') {
            return Err(BackendError::InvalidInput(format!("path `{}` is not absolute", file.path)));
        }
        self.running(container)?;
        self.with_container(container, |c, plan| {
            let text =
                std::str::from_utf8(&file.contents).ok().filter(|t| t.len() <= MAX_TEXT_SHOWN).map(str::to_string);
            plan.push(PlanStep::WriteFile {
                id: c.container.id.clone(),
                path: file.path.clone(),
                mode: file.mode,
                owner: file.owner.clone(),
                group: file.group.clone(),
                size: file.contents.len(),
                sha256: hex::encode(Sha256::digest(&file.contents)),
                text,
            });
            c.files.insert(
                file.path.clone(),
                SimFile {
                    contents: file.contents.clone(),
                    mode: file.mode,
                    owner: file.owner.clone(),
                    group: file.group.clone(),
                },
            );
            Ok(())
        })
    }

    async fn read_file(&self, container: &ContainerRef, path: &str) -> Result<Vec<u8>, BackendError> {
        self.running(container)?;
        self.with_container(container, |c, plan| {
            let found = c.files.get(path).map(|f| f.contents.clone());
            plan.push(PlanStep::ReadFile {
                id: c.container.id.clone(),
                path: path.to_string(),
                found: found.is_some(),
            });
            found.ok_or_else(|| BackendError::NotFound(format!("{path}: no such file in container {}", c.container.id)))
        })
    }

    async fn wait_tcp(&self, container: &ContainerRef, port: u16, timeout: Duration) -> Result<(), BackendError> {
        self.running(container)?;
        let closed = self.script_for(container).closed_ports.contains(&port);
        self.with_container(container, |c, plan| {
            plan.push(PlanStep::WaitTcp { id: c.container.id.clone(), port });
            if closed {
                Err(BackendError::Timeout(format!("port {port} did not answer within {}s", timeout.as_secs())))
            } else {
                Ok(())
            }
        })
    }

    async fn wait_http(
        &self,
        container: &ContainerRef,
        probe: &HttpProbe,
        timeout: Duration,
    ) -> Result<u16, BackendError> {
        self.running(container)?;
        let script = self.script_for(container);
        let status = (!script.closed_ports.contains(&probe.port)).then(|| script.http_status.unwrap_or(200));
        self.with_container(container, |c, plan| {
            plan.push(PlanStep::WaitHttp { id: c.container.id.clone(), probe: probe.clone(), status });
            match (status, probe.expect_status) {
                (Some(got), Some(want)) if got != want => Err(BackendError::Timeout(format!(
                    "http://{}:{}{} answered {got}, not {want}, within {}s",
                    c.container.hostname,
                    probe.port,
                    probe.path,
                    timeout.as_secs()
                ))),
                (Some(got), _) => Ok(got),
                (None, _) => Err(BackendError::Timeout(format!(
                    "http://{}:{}{} did not answer within {}s",
                    c.container.hostname,
                    probe.port,
                    probe.path,
                    timeout.as_secs()
                ))),
            }
        })
    }
}

#[async_trait]
impl ProxyExecutor for SimBackend {
    async fn proxy_exec(
        &self,
        service: &str,
        command: &str,
        args: &[String],
        _timeout: Duration,
    ) -> Result<ExecOutput, BackendError> {
        let mut argv: Vec<String> = command.split_whitespace().map(str::to_string).collect();
        argv.extend(args.iter().cloned());
        let output = self.script.rule_for(&argv).map(ExecRule::output).unwrap_or_default();
        self.lock().plan.push(PlanStep::ProxyExec {
            service: service.to_string(),
            command: command.to_string(),
            args: args.to_vec(),
            status: output.status,
        });
        Ok(output)
    }
}
