//! `files`: write and read files inside a container.

use wasmtime::component::Resource;

use super::{CapabilityError, ContainerHandle, RunState};
use crate::backend::FileWrite;
use crate::bindings::files;
use crate::manifest::Capability;

/// Largest file a recipe may write in one call.
pub const MAX_FILE_BYTES: usize = 64 * 1024 * 1024;

impl files::Host for RunState {
    async fn write_file(
        &mut self,
        handle: Resource<ContainerHandle>,
        path: String,
        contents: Vec<u8>,
        options: files::FileOptions,
    ) -> Result<(), CapabilityError> {
        let run = self.run.clone();
        run.require(Capability::Files)?;
        let container = self.container(&handle)?;
        check_path(&path)?;
        if contents.len() > MAX_FILE_BYTES {
            return Err(CapabilityError::invalid_input(format!(
                "{path}: {} bytes is more than the {MAX_FILE_BYTES} bytes one write may carry",
                contents.len()
            )));
        }
        if options.mode > 0o7777 {
            return Err(CapabilityError::invalid_input(format!("{path}: mode {:o} is not a file mode", options.mode)));
        }
        let file = FileWrite { path, contents, mode: options.mode, owner: options.owner, group: options.group };
        run.bounded(run.backend.write_file(&container, &file)).await
    }

    async fn read_file(&mut self, handle: Resource<ContainerHandle>, path: String) -> Result<Vec<u8>, CapabilityError> {
        let run = self.run.clone();
        run.require(Capability::Files)?;
        let container = self.container(&handle)?;
        check_path(&path)?;
        run.bounded(run.backend.read_file(&container, &path)).await
    }
}

fn check_path(path: &str) -> Result<(), CapabilityError> {
    if !path.starts_with('/') || path.contains('\0') || path.split('/').any(|part| part == "..") {
        return Err(CapabilityError::invalid_input(format!(
            "path {path:?} must be absolute, without `..` or NUL bytes"
        )));
    }
    Ok(())
}
