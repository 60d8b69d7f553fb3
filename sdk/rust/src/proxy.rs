//! Commands for apps the recipe cannot reach directly (`proxy` grant), sent
//! through an SSH forced-command proxy: `php occ files:scan` in a Nextcloud
//! container on another Swarm node, for instance.
//!
//! `command` must be listed for `service` in the manifest's
//! `[[grants.proxy]]`, and the proxy's own whitelist must accept the
//! arguments. Each argument reaches the command as exactly one argument.

use crate::bindings::proximity::recipe::proxy as wit;
use crate::error::{Error, Result};
use crate::exec::{command_failed, ExecOutput};
use crate::text::display_argv;

/// Run `command` with `args` through `service`'s proxy and return its output
/// whatever its exit status.
pub fn exec<S: AsRef<str>>(service: &str, command: &str, args: &[S]) -> Result<ExecOutput> {
    let args: Vec<String> = args.iter().map(|a| a.as_ref().to_string()).collect();
    match wit::proxy_exec(service, command, &args) {
        Ok(output) => Ok(output.into()),
        Err(e) => Err(Error::from(e).context(format_args!("proxy `{service}`: `{}`", shown(command, &args)))),
    }
}

/// [`exec`], failing with `backend` unless the command exits 0; returns its stdout.
pub fn run<S: AsRef<str>>(service: &str, command: &str, args: &[S]) -> Result<String> {
    let output = exec(service, command, args)?;
    if output.success() {
        return Ok(output.stdout_text());
    }
    let args: Vec<String> = args.iter().map(|a| a.as_ref().to_string()).collect();
    Err(command_failed(&format!("proxy `{service}`: {}", shown(command, &args)), &output))
}

fn shown(command: &str, args: &[String]) -> String {
    if args.is_empty() {
        command.to_string()
    } else {
        format!("{command} {}", display_argv(args))
    }
}
