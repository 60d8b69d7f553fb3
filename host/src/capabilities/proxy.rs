//! `proxy`: whitelisted commands through an SSH forced-command proxy.

use super::exec::{check_argv, keep_tail};
use super::{CapabilityError, RunState};
use crate::bindings::{exec, proxy};
use crate::manifest::Capability;

impl proxy::Host for RunState {
    async fn proxy_exec(
        &mut self,
        service: String,
        command: String,
        args: Vec<String>,
    ) -> Result<exec::ExecOutput, CapabilityError> {
        let run = self.run.clone();
        run.require(Capability::Proxy)?;
        // Refused before any network traffic when the grant does not list it.
        run.grants.check_proxy(&service, &command).map_err(|denied| run.denied(denied))?;
        let mut argv = vec![command.clone()];
        argv.extend(args.iter().cloned());
        check_argv(&argv)?;
        let output = run.bounded(run.proxy.proxy_exec(&service, &command, &args, run.remaining())).await?;
        Ok(exec::ExecOutput {
            status: output.status,
            stdout: keep_tail(output.stdout),
            stderr: keep_tail(output.stderr),
        })
    }
}
