//! The sandbox's resource limits: memory by a store limiter, time by epochs.

use std::time::Duration;

use wasmtime::ResourceLimiter;

/// A recipe asked for more linear memory than its limit allows.
#[derive(Debug, thiserror::Error)]
#[error("recipe tried to grow its memory to {desired} bytes; its limit is {limit} bytes")]
pub struct MemoryLimitExceeded {
    pub desired: usize,
    pub limit: usize,
}

/// The run's wall-clock deadline passed.
#[derive(Debug, thiserror::Error)]
#[error("the run's deadline of {0:?} passed")]
pub struct DeadlineExceeded(pub Duration);

/// Caps linear memory (summed over the component's memories) and table sizes,
/// and remembers whether the cap was hit so the failure can be named.
pub struct RecipeLimiter {
    memory_limit: usize,
    memory_in_use: usize,
    pub(crate) exceeded: bool,
}

/// Table elements a recipe may have; far above what real recipes use.
const MAX_TABLE_ELEMENTS: usize = 1 << 20;
/// Core instances and memories per component (interpreters bring several).
pub(crate) const MAX_INSTANCES: usize = 64;
pub(crate) const MAX_MEMORIES: usize = 16;

impl RecipeLimiter {
    pub fn new(memory_limit: usize) -> Self {
        RecipeLimiter { memory_limit, memory_in_use: 0, exceeded: false }
    }
}

impl ResourceLimiter for RecipeLimiter {
    fn memory_growing(&mut self, current: usize, desired: usize, _maximum: Option<usize>) -> wasmtime::Result<bool> {
        let total = self.memory_in_use - current.min(self.memory_in_use) + desired;
        if total > self.memory_limit {
            self.exceeded = true;
            // An error (rather than `Ok(false)`) traps at once, so the guest
            // cannot carry on after a failed allocation.
            return Err(MemoryLimitExceeded { desired: total, limit: self.memory_limit }.into());
        }
        self.memory_in_use = total;
        Ok(true)
    }

    fn table_growing(&mut self, _current: usize, desired: usize, _maximum: Option<usize>) -> wasmtime::Result<bool> {
        Ok(desired <= MAX_TABLE_ELEMENTS)
    }

    fn instances(&self) -> usize {
        MAX_INSTANCES
    }

    fn memories(&self) -> usize {
        MAX_MEMORIES
    }
}
