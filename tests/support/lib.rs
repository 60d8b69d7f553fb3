//! Shared helpers for the workspace integration tests.
//!
//! Recipe components are built by `cargo xtask build-recipes` (which
//! `cargo xtask test` runs first). A missing component fails the test with
//! the command to run: it is never a silent skip.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use proximity::backend::sim::{ExecRule, SimBackend, SimScript};
use proximity::backend::{Backend, ContainerRef, NoProxies, ProxyExecutor};
use proximity::catalog::CatalogEntry;
use proximity::deploy::{prepare, DeployInput, PreparedDeploy};
use proximity::events::{Event, EventSink};
use proximity::runtime::{LoadedRecipe, RunError, RunOutcome, Runtime};

pub mod dns;
pub mod dockerd;
pub mod lxc;
pub mod plan;
pub mod sshd;

pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("tests/ has a parent").to_path_buf()
}

/// A recipe directory, relative to the repository root (e.g. `recipes/nginx`).
pub fn recipe(rel: &str) -> CatalogEntry {
    let dir = repo_root().join(rel);
    let entry = CatalogEntry::load(&dir).unwrap_or_else(|err| panic!("loading {}: {err:#}", dir.display()));
    let component = entry.component_path();
    assert!(
        component.is_file(),
        "{} is not built: run `cargo xtask build-recipes` (`cargo xtask test` does it for you)",
        component.display()
    );
    entry
}

pub async fn load(runtime: &Runtime, entry: &CatalogEntry) -> Arc<LoadedRecipe> {
    runtime.load(&entry.component_path()).await.expect("recipe component loads")
}

pub fn params(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

pub fn prepared(entry: &CatalogEntry, pairs: &[(&str, &str)]) -> PreparedDeploy {
    let input = DeployInput { params: params(pairs), ..Default::default() };
    prepare(entry.manifest.clone(), input).unwrap_or_else(|errs| panic!("parameters rejected: {errs}"))
}

/// What one install run produced.
pub struct Installed {
    pub outcome: Result<RunOutcome, RunError>,
    pub events: Vec<Event>,
    pub prepared: PreparedDeploy,
}

/// Run `install` of `entry` with `pairs` on `sim`, collecting every event.
pub async fn install(runtime: &Runtime, entry: &CatalogEntry, pairs: &[(&str, &str)], sim: &SimBackend) -> Installed {
    let backend = Arc::new(sim.clone());
    install_on(runtime, entry, prepared(entry, pairs), backend.clone(), backend).await
}

/// Run `install` of an already prepared deployment on any backend.
pub async fn install_on(
    runtime: &Runtime,
    entry: &CatalogEntry,
    prepared: PreparedDeploy,
    backend: Arc<dyn Backend>,
    proxy: Arc<dyn ProxyExecutor>,
) -> Installed {
    let recipe = load(runtime, entry).await;
    let (events, mut receiver) = EventSink::channel(prepared.redactor());
    let outcome = runtime.run(&recipe, prepared.install_request(backend, proxy, events)).await;
    let mut collected = Vec::new();
    while let Ok(event) = receiver.try_recv() {
        collected.push(event);
    }
    Installed { outcome, events: collected, prepared }
}

/// Run `uninstall` of an installed app: the recipe's export, then the host
/// destroys `containers`.
pub async fn uninstall_on(
    runtime: &Runtime,
    entry: &CatalogEntry,
    prepared: &PreparedDeploy,
    containers: Vec<ContainerRef>,
    backend: Arc<dyn Backend>,
) -> Result<RunOutcome, RunError> {
    let recipe = load(runtime, entry).await;
    let request = prepared.uninstall_request(containers, backend, Arc::new(NoProxies), EventSink::discard());
    runtime.run(&recipe, request).await
}

/// The simulator as the recipe's own `sim.toml` scripts it, with `rules`
/// taking precedence (fault injection).
pub fn sim_for(entry: &CatalogEntry, rules: Vec<ExecRule>) -> SimBackend {
    let mut script = SimScript::for_recipe(&entry.dir).expect("the recipe's sim.toml parses");
    script.exec_rules.splice(0..0, rules);
    SimBackend::new(script)
}
