//! `proximity deploy`.

use std::collections::BTreeMap;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{bail, Context as _, Result};
use clap::{Args, ValueEnum};

use super::output::{print_event, print_outcome, print_run_error};
use super::recipe::ensure_built;
use super::{CatalogArgs, RuntimeArgs};
use crate::backend::lxc::{Bridge, LxcBackend, LxcConfig};
use crate::backend::sim::{SimBackend, SimScript};
use crate::backend::{Backend, NoProxies, ProxyExecutor};
use crate::catalog::Catalog;
use crate::deploy::{prepare, DeployInput};
use crate::events::EventSink;
use crate::manifest::ResourceOverrides;
use crate::plan;
use crate::runtime::Runtime;

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum BackendKind {
    /// In-process simulated cluster: records a plan, touches nothing.
    Sim,
    /// Real LXC containers on this host (root; lxc, debootstrap, dnsmasq-base).
    Lxc,
    /// A Proxmox VE cluster: the `[proxmox]` table of the configuration file (--config).
    Proxmox,
}

#[derive(Args)]
pub struct DeployArgs {
    /// Recipe id in the catalog, or a path to a recipe directory.
    recipe: String,
    /// A parameter, as NAME=VALUE (repeatable).
    #[arg(short, long = "param", value_name = "NAME=VALUE")]
    params: Vec<String>,
    /// Where to deploy [default: lxc where this host can run it, else you are told how to set it up].
    #[arg(long, value_enum, env = "PROXIMITY_BACKEND")]
    backend: Option<BackendKind>,
    /// Only show what would happen: run on the simulator and print the plan.
    #[arg(long)]
    dry_run: bool,
    /// Node to place the container on.
    #[arg(long)]
    node: Option<String>,
    /// Name for the app (default: recipe id and a random suffix).
    #[arg(long)]
    app_id: Option<String>,
    #[arg(long)]
    cores: Option<u32>,
    #[arg(long)]
    memory_mb: Option<u32>,
    #[arg(long)]
    swap_mb: Option<u32>,
    #[arg(long)]
    disk_gb: Option<u32>,
    /// Keep the containers of a failed run for debugging.
    #[arg(long)]
    keep_failed: bool,
    /// Print the text of every file written (secrets redacted).
    #[arg(long)]
    show_files: bool,
    /// Print the result and plan as JSON on stdout (progress still goes to stderr).
    #[arg(long)]
    json: bool,
    /// Where the lxc backend keeps its base images and containers.
    #[arg(long, env = "PROXIMITY_LXC_PATH", default_value = "/var/lib/proximity/lxc")]
    lxc_path: std::path::PathBuf,
    /// The lxc backend's bridge: auto (lxcbr0, or Proximity's own proximity0 where
    /// lxc-net's subnet is taken), lxcbr0, proximity0[=SUBNET], or an existing bridge.
    #[arg(long, env = "PROXIMITY_LXC_BRIDGE", default_value = "auto")]
    lxc_bridge: Bridge,
    /// Rebuild the recipe from source before deploying.
    #[arg(long)]
    build: bool,
    /// Deploy through a Proximity server (`proximity serve`) instead of running the recipe here.
    #[arg(long, env = "PROXIMITY_SERVER")]
    server: Option<String>,
    /// API token for --server.
    #[arg(long, env = "PROXIMITY_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// Configuration file with the `[proxmox]` table, for --backend proxmox.
    #[arg(long, env = "PROXIMITY_CONFIG")]
    config: Option<std::path::PathBuf>,
    #[command(flatten)]
    catalog: CatalogArgs,
    #[command(flatten)]
    runtime: RuntimeArgs,
}

pub async fn run(args: DeployArgs) -> Result<ExitCode> {
    let params = parse_params(&args.params)?;
    if let Some(server) = &args.server {
        return deploy_remotely(&args, server, params).await;
    }
    let entry = Catalog::new(&args.catalog.catalog).find(&args.recipe)?;
    let input = DeployInput {
        params,
        resources: ResourceOverrides {
            cores: args.cores,
            memory_mb: args.memory_mb,
            swap_mb: args.swap_mb,
            disk_gb: args.disk_gb,
        },
        node: args.node.clone(),
        app_id: args.app_id.clone(),
        keep_failed: args.keep_failed,
    };
    let prepared = match prepare(entry.manifest.clone(), input) {
        Ok(prepared) => prepared,
        Err(problems) => {
            eprintln!("error: invalid parameters for recipe `{}`:", entry.manifest.recipe.id);
            for problem in &problems.0 {
                eprintln!("  - {}: {}", problem.name, problem.message);
            }
            return Ok(ExitCode::from(2));
        }
    };

    let component = ensure_built(&entry.dir, args.build)?;
    let runtime = Runtime::new(args.runtime.config())?;
    let recipe = runtime.load(&component).await?;

    // `--dry-run` always means the simulator.
    let simulated = args.dry_run || args.backend == Some(BackendKind::Sim);
    // Only a simulated run reads the recipe's sim.toml and has a plan to show.
    let sim = simulated.then(|| SimScript::for_recipe(&entry.dir).map(SimBackend::new)).transpose()?;
    let (backend, proxy): (Arc<dyn Backend>, Arc<dyn ProxyExecutor>) = if let Some(sim) = &sim {
        (Arc::new(sim.clone()), Arc::new(sim.clone()))
    } else if args.backend == Some(BackendKind::Proxmox) {
        let serve_args = super::serve::ServeArgs { config: args.config.clone(), ..Default::default() };
        let config = super::serve::ServeConfig::load(&serve_args)?;
        (super::serve::proxmox_backend(&config)?, Arc::new(NoProxies))
    } else {
        // LXC is the embedded default: used when asked, or when nothing was asked.
        let config =
            LxcConfig { lxcpath: args.lxc_path.clone(), bridge: args.lxc_bridge.clone(), ..LxcConfig::default() };
        let lxc = LxcBackend::new(config).await.map_err(|err| match args.backend {
            Some(_) => anyhow::anyhow!("lxc backend: {err}"),
            None => anyhow::anyhow!(
                "no --backend given, and the default (lxc) cannot run here: {err}\n\
                 To try the recipe without containers: --backend sim (or --dry-run)"
            ),
        })?;
        (Arc::new(lxc), Arc::new(NoProxies))
    };

    let redactor = prepared.redactor();
    let (events, mut receiver) = EventSink::channel(redactor.clone());
    let printer = tokio::spawn(async move {
        while let Some(event) = receiver.recv().await {
            print_event(&event);
        }
    });
    eprintln!(
        "proximity: deploying {} {} as `{}` on the {} backend{} (deployment {})",
        entry.manifest.recipe.id,
        entry.manifest.recipe.version,
        prepared.subject.app_id,
        backend.name(),
        if args.dry_run { ", dry run" } else { "" },
        prepared.subject.deployment_id,
    );
    let request = prepared.install_request(backend, proxy, events);
    let outcome = runtime.run(&recipe, request).await;
    printer.await.context("progress printer failed")?;

    let steps = sim.map(|sim| {
        let mut steps = sim.plan();
        steps.iter_mut().for_each(|step| step.redact(&|text| redactor.redact(text)));
        steps
    });
    if args.json {
        let mut report = match &outcome {
            Ok(ok) => serde_json::json!({ "ok": true, "app_id": prepared.subject.app_id, "outcome": ok }),
            Err(err) => serde_json::json!({
                "ok": false, "app_id": prepared.subject.app_id, "error": err, "message": err.to_string()
            }),
        };
        // The plan is the simulator's record; a real backend has none.
        if let (Some(steps), Some(report)) = (&steps, report.as_object_mut()) {
            report.insert("plan".into(), serde_json::to_value(steps)?);
        }
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else if let Some(steps) = &steps {
        println!("Plan ({} operations on the sim backend):", steps.len());
        print!("{}", plan::render(steps, args.show_files));
    }
    match outcome {
        Ok(outcome) => {
            if !args.json {
                print_outcome(&prepared.subject.app_id, &outcome, &prepared);
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(err) => {
            // On stderr, so it shows with --json too.
            print_run_error(&err);
            Ok(ExitCode::FAILURE)
        }
    }
}

fn parse_params(raw: &[String]) -> Result<BTreeMap<String, String>> {
    let mut params = BTreeMap::new();
    for item in raw {
        let Some((name, value)) = item.split_once('=') else {
            bail!("--param `{item}` must look like NAME=VALUE");
        };
        if params.insert(name.trim().to_string(), value.to_string()).is_some() {
            bail!("--param `{name}` is given more than once");
        }
    }
    Ok(params)
}

/// `--server`: the server validates, runs and records; this follows its events.
async fn deploy_remotely(args: &DeployArgs, server: &str, params: BTreeMap<String, String>) -> Result<ExitCode> {
    if args.backend.is_some() || args.keep_failed || args.show_files || args.build {
        bail!("--backend, --keep-failed, --show-files and --build apply to local deploys, not to --server");
    }
    let client = super::client::Client::new(server, args.token.clone())?;
    let request = crate::api::DeployRequest {
        recipe: args.recipe.clone(),
        version: None,
        params: params.into_iter().map(|(k, v)| (k, serde_json::Value::String(v))).collect(),
        app_id: args.app_id.clone(),
        resources: crate::api::Resources { cores: args.cores, memory_mb: args.memory_mb, disk_gb: args.disk_gb },
        target: crate::api::Target { node: args.node.clone() },
        dry_run: args.dry_run,
    };
    super::remote::deploy(&client, request, args.json).await
}
