//! Gitea and PostgreSQL under Docker Compose in an Alpine LXC.
//!
//! Install: container with nesting + keyctl, Docker and the compose plugin,
//! the compose file from `compose.yml` (installer locked, sign-up closed by
//! default, generated database password, secret key and internal token),
//! pull, up, wait for `/api/healthz`, then the administrator is created with
//! `gitea admin user create` inside the running service. Its password goes
//! in on stdin, never on a command line.
//!
//! Upgrade: this recipe version's compose file (its image tags) with the
//! app's own secrets, pull, `up` (Gitea migrates its database as it starts),
//! the same probe. The administrator exists already and is left alone.
//! Uninstall: `compose down`, so PostgreSQL stops cleanly before the host
//! destroys the container and the volumes on its disk.

use proximity_sdk::compose::{uninstall_app_project, yaml_string};
use proximity_sdk::prelude::*;
use proximity_sdk::template;

const OS_TEMPLATE: &str = "alpine-3.20";
const PROJECT_DIR: &str = "/opt/gitea";
const COMPOSE_TEMPLATE: &str = include_str!("../compose.yml");
const SERVICES: [&str; 2] = ["db", "gitea"];
/// The service Gitea runs in, and the user its files belong to.
const GITEA_SERVICE: &str = "gitea";
const GITEA_USER: &str = "git";
/// Answers 200 once Gitea reaches its database.
const READY_PATH: &str = "/api/healthz";
const HEALTH_TIMEOUT: Duration = Duration::from_secs(10);
const ADMIN_TIMEOUT: Duration = Duration::from_secs(120);
const DOWN_TIMEOUT: Duration = Duration::from_secs(120);
/// Reads the password from stdin, so it is never an argument of a command
/// the container's process list or the plan shows; `$1` and `$2` are the
/// user name and the e-mail address.
const CREATE_ADMIN_SCRIPT: &str = "IFS= read -r password && exec gitea admin user create --admin \
     --username \"$1\" --email \"$2\" --password \"$password\" --must-change-password=false";

/// The operator's settings, read from the context.
struct Settings<'a> {
    http_port: u16,
    ssh_port: u16,
    admin_username: &'a str,
    admin_email: &'a str,
    admin_password: &'a str,
    db_password: &'a str,
    secret_key: &'a str,
    internal_token: &'a str,
    allow_registration: bool,
    timeouts: ComposeTimeouts,
}

impl<'a> Settings<'a> {
    fn from_context(ctx: &'a Context) -> Result<Self> {
        let settings = Settings {
            http_port: ctx.param_int_as("http-port")?,
            ssh_port: ctx.param_int_as("ssh-port")?,
            admin_username: ctx.param_str("admin-username")?,
            admin_email: ctx.param_str("admin-email")?,
            admin_password: ctx.param_str("admin-password")?,
            db_password: ctx.param_str("db-password")?,
            secret_key: ctx.param_str("secret-key")?,
            internal_token: ctx.param_str("internal-token")?,
            allow_registration: ctx.param_bool("allow-registration")?,
            timeouts: ComposeTimeouts::from_context(ctx)?,
        };
        if settings.http_port == settings.ssh_port {
            return Err(Error::invalid_input(format!(
                "http-port and ssh-port are both {}: give them different ports",
                settings.http_port
            )));
        }
        // Gitea refuses these names; say so before anything is created.
        if ["admin", "api", "assets", "user", "explore"].contains(&settings.admin_username.to_lowercase().as_str()) {
            return Err(Error::invalid_input(format!(
                "admin-username `{}` is reserved by Gitea: choose another",
                settings.admin_username
            )));
        }
        Ok(settings)
    }

    /// The compose file for a container reached at `address`.
    fn compose_file(&self, address: &str) -> Result<String> {
        template::render(
            COMPOSE_TEMPLATE,
            &[
                ("http-port", &self.http_port.to_string()),
                ("ssh-port", &self.ssh_port.to_string()),
                ("db-password", &yaml_string(self.db_password)),
                ("secret-key", &yaml_string(self.secret_key)),
                ("internal-token", &yaml_string(self.internal_token)),
                ("disable-registration", if self.allow_registration { "false" } else { "true" }),
                ("address", &yaml_string(address)),
                ("root-url", &yaml_string(&http_url(address, self.http_port))),
            ],
        )
    }

    /// The port accepts connections and Gitea reaches its database.
    fn wait_answering(&self, c: &Container) -> Result<()> {
        c.wait_port(self.http_port, self.timeouts.start)?;
        c.wait_http(self.http_port, READY_PATH, Some(200), self.timeouts.start).map(drop)
    }

    fn create_admin(&self, compose: &Compose) -> Result<()> {
        let options = ExecOptions::new().stdin(format!("{}\n", self.admin_password)).timeout(ADMIN_TIMEOUT);
        let argv = ["sh", "-c", CREATE_ADMIN_SCRIPT, "sh", self.admin_username, self.admin_email];
        compose
            .exec(GITEA_SERVICE, Some(GITEA_USER), &argv, &options)
            .context(format_args!("creating the administrator `{}`", self.admin_username))
            .map(drop)
    }
}

struct Gitea;

impl Recipe for Gitea {
    fn install(ctx: &Context) -> Result<AppInfo> {
        let settings = Settings::from_context(ctx)?;

        progress::step("Creating container");
        let c = ContainerSpec::new(ctx, OS_TEMPLATE).docker_host().create()?;
        let address = c.address()?;

        progress::step("Installing Docker");
        let docker = c.install_docker(settings.timeouts.docker_install)?;

        progress::step("Writing the compose file");
        let compose = docker.compose(PROJECT_DIR);
        compose.write_file(&settings.compose_file(&address)?)?;

        progress::step("Pulling images");
        compose.pull(settings.timeouts.pull).context("pulling images")?;

        progress::step("Starting Gitea");
        compose.up_and_wait(&SERVICES, &settings.timeouts.roll_out())?;

        progress::step("Waiting for Gitea");
        settings.wait_answering(&c)?;

        progress::step("Creating the administrator");
        settings.create_admin(&compose)?;
        log::info(format!(
            "administrator `{}` created; its password is the app's `admin-password` secret",
            settings.admin_username
        ));
        app_info(&address, &settings, &compose)
    }

    fn upgrade(ctx: &Context, from_version: &str) -> Result<AppInfo> {
        let settings = Settings::from_context(ctx)?;

        progress::step("Checking Docker");
        let c = app_container()?;
        let address = c.address()?;
        let docker = c.running_docker()?;

        progress::step("Updating the services");
        let compose = docker.compose(PROJECT_DIR);
        let timeouts = settings.timeouts.roll_out();
        compose.roll_out(&settings.compose_file(&address)?, &SERVICES, &timeouts)?;

        progress::step("Waiting for Gitea");
        settings.wait_answering(&c)?;
        log::info(format!("Gitea upgraded from recipe {from_version} to {}", ctx.recipe_version()));
        app_info(&address, &settings, &compose)
    }

    fn uninstall(_ctx: &Context) -> Result<()> {
        progress::step("Stopping Gitea");
        uninstall_app_project(PROJECT_DIR, DOWN_TIMEOUT)
    }

    fn health(ctx: &Context) -> Result<HealthReport> {
        let http_port: u16 = ctx.param_int_as("http-port")?;
        let c = app_container()?;
        let services = c.docker()?.compose(PROJECT_DIR).services_check(&SERVICES, HEALTH_TIMEOUT);
        let http = match c.wait_http(http_port, READY_PATH, Some(200), HEALTH_TIMEOUT) {
            Ok(status) => HealthCheck::pass("http", format!("{READY_PATH} answered {status}")),
            Err(e) => HealthCheck::fail("http", e.to_string()),
        };
        Ok(HealthReport::from_checks(vec![services, http]))
    }
}

fn app_info(address: &str, settings: &Settings<'_>, compose: &Compose<'_>) -> Result<AppInfo> {
    Ok(AppInfo::new()
        .with_url(http_url(address, settings.http_port))
        .with_address(address)
        .with_port(settings.http_port)
        .with_port(settings.ssh_port)
        .with_output("admin-username", settings.admin_username)
        .with_output("ssh-clone", format!("ssh://git@{address}:{}/", settings.ssh_port))
        .with_output("compose-file", compose.file_path()))
}

proximity_sdk::export_recipe!(Gitea);
