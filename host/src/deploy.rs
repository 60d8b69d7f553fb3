//! One deployment, from operator input to a run request: validate the
//! parameters and resources, name the app and the job, collect the secrets
//! that must never be shown.

use std::collections::BTreeMap;
use std::sync::Arc;

use rand::Rng;
use tokio_util::sync::CancellationToken;

use crate::backend::{Backend, ContainerRef, ProxyExecutor};
use crate::events::{EventSink, Redactor};
use crate::manifest::{Manifest, ParamErrors, ParamValue, ResourceOverrides};
use crate::runtime::{Action, RunRequest, RunSubject};

/// What the operator asked for.
#[derive(Clone, Debug, Default)]
pub struct DeployInput {
    pub params: BTreeMap<String, String>,
    pub resources: ResourceOverrides,
    pub node: Option<String>,
    /// Name for the new app; generated from the recipe id when absent.
    pub app_id: Option<String>,
    pub keep_failed: bool,
}

/// A deployment whose input has been validated, ready to run.
pub struct PreparedDeploy {
    pub subject: RunSubject,
    pub keep_failed: bool,
}

/// Check every parameter and resource choice; all problems are reported together.
pub fn prepare(manifest: Arc<Manifest>, input: DeployInput) -> Result<PreparedDeploy, ParamErrors> {
    let params = manifest.resolve_params(&input.params);
    let resources = manifest.resolve_resources(&input.resources);
    let (params, resources) = match (params, resources) {
        (Ok(p), Ok(r)) => (p, r),
        (Err(mut a), Err(b)) => {
            a.0.extend(b.0);
            return Err(a);
        }
        (Err(e), _) | (_, Err(e)) => return Err(e),
    };
    let app_id = input.app_id.unwrap_or_else(|| format!("{}-{}", manifest.recipe.id, random_suffix(6)));
    Ok(PreparedDeploy {
        subject: RunSubject {
            manifest,
            params,
            resources,
            app_id,
            deployment_id: format!("dep-{}", random_suffix(16)),
            node: input.node,
        },
        keep_failed: input.keep_failed,
    })
}

impl PreparedDeploy {
    /// Hides this deployment's secret parameter values in everything shown.
    pub fn redactor(&self) -> Redactor {
        let params = &self.subject.params;
        Redactor::new(params.values.iter().filter_map(|(name, value)| match value {
            ParamValue::Text(text) if params.secret_names.contains(name) => Some((text.clone(), name.clone())),
            _ => None,
        }))
    }

    pub fn install_request(
        &self,
        backend: Arc<dyn Backend>,
        proxy: Arc<dyn ProxyExecutor>,
        events: EventSink,
    ) -> RunRequest {
        self.request(Action::Install, Vec::new(), backend, proxy, events)
    }

    /// Run the recipe's `uninstall` on the app's containers; the runtime
    /// destroys them when it succeeds.
    pub fn uninstall_request(
        &self,
        app_containers: Vec<ContainerRef>,
        backend: Arc<dyn Backend>,
        proxy: Arc<dyn ProxyExecutor>,
        events: EventSink,
    ) -> RunRequest {
        self.request(Action::Uninstall, app_containers, backend, proxy, events)
    }

    /// Any export of the recipe, on the app's existing containers
    /// (upgrade, health; install and uninstall have their own builders).
    pub fn request(
        &self,
        action: Action,
        app_containers: Vec<ContainerRef>,
        backend: Arc<dyn Backend>,
        proxy: Arc<dyn ProxyExecutor>,
        events: EventSink,
    ) -> RunRequest {
        RunRequest {
            action,
            subject: self.subject.clone(),
            backend,
            proxy,
            events,
            app_containers,
            keep_failed: self.keep_failed,
            cancel: CancellationToken::new(),
        }
    }
}

/// Lowercase letters and digits, safe in hostnames.
fn random_suffix(len: usize) -> String {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    let mut rng = rand::rng();
    (0..len).map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char).collect()
}
