//! `exec`: run an argv inside a container.

use wasmtime::component::Resource;

use super::{CapabilityError, ContainerHandle, RunState};
use crate::backend::ExecRequest;
use crate::bindings::exec;
use crate::manifest::Capability;

impl exec::Host for RunState {
    async fn container_exec(
        &mut self,
        handle: Resource<ContainerHandle>,
        argv: Vec<String>,
        options: exec::ExecOptions,
    ) -> Result<exec::ExecOutput, CapabilityError> {
        let run = self.run.clone();
        run.require(Capability::Exec)?;
        let container = self.container(&handle)?;
        check_argv(&argv)?;
        for (name, value) in &options.env {
            if name.is_empty() || name.contains('=') || name.contains('\0') || value.contains('\0') {
                return Err(CapabilityError::invalid_input(format!("environment variable `{name}` is malformed")));
            }
        }
        let request = ExecRequest {
            argv,
            env: options.env,
            cwd: options.cwd,
            stdin: options.stdin,
            timeout: run.call_timeout(options.timeout_ms),
        };
        let output = run.bounded(run.backend.exec(&container, &request)).await?;
        Ok(exec::ExecOutput {
            status: output.status,
            stdout: keep_tail(output.stdout),
            stderr: keep_tail(output.stderr),
        })
    }
}

/// Most output one call hands back per stream: the output lands in the
/// recipe's memory, which has a limit of its own.
pub const MAX_OUTPUT_BYTES: usize = 4 * 1024 * 1024;

/// The last [`MAX_OUTPUT_BYTES`] of a stream: the end is where errors are.
pub(super) fn keep_tail(mut bytes: Vec<u8>) -> Vec<u8> {
    if bytes.len() > MAX_OUTPUT_BYTES {
        bytes.drain(..bytes.len() - MAX_OUTPUT_BYTES);
    }
    bytes
}

/// An argv must name a program, and no argument can hold a NUL byte: it
/// could not reach the program intact.
pub(super) fn check_argv(argv: &[String]) -> Result<(), CapabilityError> {
    if argv.first().is_none_or(|program| program.is_empty()) {
        return Err(CapabilityError::invalid_input("argv must start with the program to run"));
    }
    if let Some(arg) = argv.iter().find(|arg| arg.contains('\0')) {
        return Err(CapabilityError::invalid_input(format!("argument {arg:?} contains a NUL byte")));
    }
    Ok(())
}
