//! Host side of every capability interface in `wit/recipe.wit`.
//!
//! One module per interface; each call first checks the run's grants, then
//! talks to the [`Backend`] through [`RunContext::bounded`], so that no call
//! outlives the run's deadline. Errors a recipe should handle come back as the
//! WIT `error` variant; faults that must end the run (the deadline, a broken
//! resource table) become traps.

mod exec;
mod files;
mod lxc;
mod probe;
mod progress;
mod proxy;
pub mod wasi;

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use wasmtime::component::{Resource, ResourceTable, ResourceTableError};

use crate::backend::{Backend, BackendError, ContainerRef, Ownership, ProxyExecutor};
use crate::bindings::types;
use crate::events::EventSink;
use crate::manifest::{Capability, Denied, Grants};
use crate::runtime::limits::{DeadlineExceeded, RecipeLimiter};

/// What the recipe's `container` resource stands for on the host.
pub struct ContainerHandle {
    container: ContainerRef,
}

/// Either an error the recipe sees, or a trap that ends the run.
#[derive(Debug)]
pub enum CapabilityError {
    Guest(types::Error),
    Trap(wasmtime::Error),
}

impl CapabilityError {
    pub fn invalid_input(message: impl Into<String>) -> Self {
        CapabilityError::Guest(types::Error::InvalidInput(message.into()))
    }
}

impl From<Denied> for CapabilityError {
    fn from(denied: Denied) -> Self {
        CapabilityError::Guest(types::Error::Denied(denied.to_string()))
    }
}

impl From<BackendError> for CapabilityError {
    fn from(err: BackendError) -> Self {
        CapabilityError::Guest(match err {
            BackendError::NotFound(m) => types::Error::NotFound(m),
            BackendError::InvalidInput(m) => types::Error::InvalidInput(m),
            BackendError::Timeout(m) => types::Error::Timeout(m),
            BackendError::Failed(m) => types::Error::Backend(m),
        })
    }
}

impl From<ResourceTableError> for CapabilityError {
    fn from(err: ResourceTableError) -> Self {
        CapabilityError::Trap(err.into())
    }
}

/// Everything a run's capabilities need, shared with the runtime so that it
/// can clean up after the run even when the store is gone.
pub struct RunContext {
    pub grants: Grants,
    pub owner: Ownership,
    pub backend: Arc<dyn Backend>,
    pub proxy: Arc<dyn ProxyExecutor>,
    pub events: EventSink,
    pub deadline: tokio::time::Instant,
    pub timeout: Duration,
    /// Containers of the existing app, handed to the recipe by `app-containers`.
    pub app_containers: Vec<ContainerRef>,
    journal: Mutex<Journal>,
}

/// What the run did that matters after it ends.
#[derive(Default)]
struct Journal {
    /// Containers this run created, in order: destroyed if the run fails.
    created: Vec<ContainerRef>,
    /// The last step the recipe announced: failures name it.
    last_step: Option<String>,
    /// The last error-level line: a crashing recipe's panic message.
    last_error: Option<String>,
}

impl RunContext {
    pub fn new(
        grants: Grants,
        owner: Ownership,
        backend: Arc<dyn Backend>,
        proxy: Arc<dyn ProxyExecutor>,
        events: EventSink,
        timeout: Duration,
        app_containers: Vec<ContainerRef>,
    ) -> Self {
        RunContext {
            grants,
            owner,
            backend,
            proxy,
            events,
            deadline: tokio::time::Instant::now() + timeout,
            timeout,
            app_containers,
            journal: Mutex::default(),
        }
    }

    pub fn created(&self) -> Vec<ContainerRef> {
        self.journal().created.clone()
    }

    pub fn last_step(&self) -> Option<String> {
        self.journal().last_step.clone()
    }

    pub fn last_error(&self) -> Option<String> {
        self.journal().last_error.clone()
    }

    fn journal(&self) -> std::sync::MutexGuard<'_, Journal> {
        self.journal.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Time left before the run's deadline.
    pub fn remaining(&self) -> Duration {
        self.deadline.saturating_duration_since(tokio::time::Instant::now())
    }

    /// A per-call timeout asked for by the recipe, never past the run's deadline.
    fn call_timeout(&self, asked_ms: Option<u32>) -> Duration {
        let remaining = self.remaining();
        asked_ms.map_or(remaining, |ms| Duration::from_millis(ms.into()).min(remaining))
    }

    /// Check a grant, telling the operator about a refusal.
    fn require(&self, capability: Capability) -> Result<(), CapabilityError> {
        self.grants.require(capability).map_err(|denied| self.denied(denied))
    }

    fn denied(&self, denied: Denied) -> CapabilityError {
        self.events.host(&format!("denied: {denied}"));
        denied.into()
    }

    /// Await a backend call, but never past the run's deadline: when it
    /// passes, the call is dropped and the run ends with a trap.
    async fn bounded<T>(&self, call: impl Future<Output = Result<T, BackendError>>) -> Result<T, CapabilityError> {
        match tokio::time::timeout_at(self.deadline, call).await {
            Ok(result) => result.map_err(CapabilityError::from),
            Err(_) => Err(CapabilityError::Trap(DeadlineExceeded(self.timeout).into())),
        }
    }
}

/// The data of a run's wasmtime `Store`.
pub struct RunState {
    pub(crate) table: ResourceTable,
    pub(crate) limiter: RecipeLimiter,
    pub(crate) run: Arc<RunContext>,
    /// The sandboxed WASI that interpreted recipes need (see [`wasi`]).
    pub(crate) wasi: wasmtime_wasi::WasiCtx,
}

impl RunState {
    pub fn new(run: Arc<RunContext>, memory_limit: usize) -> Self {
        let wasi = wasi::sandbox_ctx(&run.events);
        RunState { table: ResourceTable::new(), limiter: RecipeLimiter::new(memory_limit), run, wasi }
    }

    /// The container behind a handle the recipe passed in.
    fn container(&self, handle: &Resource<ContainerHandle>) -> Result<ContainerRef, CapabilityError> {
        Ok(self.table.get(handle)?.container.clone())
    }

    fn new_handle(&mut self, container: ContainerRef) -> Result<Resource<ContainerHandle>, CapabilityError> {
        Ok(self.table.push(ContainerHandle { container })?)
    }
}

impl types::Host for RunState {
    fn convert_error(&mut self, err: CapabilityError) -> wasmtime::Result<types::Error> {
        match err {
            CapabilityError::Guest(err) => Ok(err),
            CapabilityError::Trap(trap) => Err(trap),
        }
    }
}
