//! Sends one command through the `test-proxy` service and reports what came
//! back, for the host's proxy-exec tests.

use proximity_sdk::prelude::*;

struct Proxied;

impl Recipe for Proxied {
    fn install(ctx: &Context) -> Result<AppInfo> {
        let command = ctx.param_str("command")?;
        let args: Vec<&str> = ["arg1", "arg2"]
            .into_iter()
            .filter_map(|name| ctx.param_str_opt(name).transpose())
            .collect::<Result<_>>()?;
        progress::step("Running the command through the proxy");
        let output = proxy::exec("test-proxy", command, &args)?;
        Ok(AppInfo::new()
            .with_output("status", output.status.to_string())
            .with_output("stdout", output.stdout_text())
            .with_output("stderr", output.stderr_text()))
    }
}

proximity_sdk::export_recipe!(Proxied);
