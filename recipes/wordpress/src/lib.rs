//! WordPress and MariaDB under Docker Compose in an Alpine LXC.
//!
//! Install: container with nesting + keyctl, Docker and the compose plugin,
//! the compose file from `compose.yml` with the host-generated passwords,
//! pull, up, check the services, probe HTTP.
//!
//! Upgrade: the compose file of this recipe version (its image tags) with the
//! app's own passwords, pull, `up` (only changed services are recreated),
//! the same checks. Uninstall: `compose down`, so MariaDB stops cleanly
//! before the host destroys the container and its volumes with it.

use proximity_sdk::compose::{uninstall_app_project, yaml_string};
use proximity_sdk::prelude::*;
use proximity_sdk::template;

const OS_TEMPLATE: &str = "alpine-3.20";
const PROJECT_DIR: &str = "/opt/wordpress";
const COMPOSE_TEMPLATE: &str = include_str!("../compose.yml");
const SERVICES: [&str; 2] = ["db", "wordpress"];
/// Answers 200 once WordPress reaches its database (500 before that).
const READY_PATH: &str = "/wp-admin/install.php";
const HEALTH_TIMEOUT: Duration = Duration::from_secs(10);
/// Bound on `compose down` at uninstall.
const DOWN_TIMEOUT: Duration = Duration::from_secs(120);

/// The operator's settings for one install, read from the context.
struct Settings<'a> {
    http_port: u16,
    db_password: &'a str,
    db_root_password: &'a str,
    timeouts: ComposeTimeouts,
}

impl<'a> Settings<'a> {
    fn from_context(ctx: &'a Context) -> Result<Self> {
        Ok(Settings {
            http_port: ctx.param_int_as("http-port")?,
            db_password: ctx.param_str("db-password")?,
            db_root_password: ctx.param_str("db-root-password")?,
            timeouts: ComposeTimeouts::from_context(ctx)?,
        })
    }

    fn compose_file(&self) -> Result<String> {
        template::render(
            COMPOSE_TEMPLATE,
            &[
                ("http-port", &self.http_port.to_string()),
                ("db-password", &yaml_string(self.db_password)),
                ("db-root-password", &yaml_string(self.db_root_password)),
            ],
        )
    }
}

struct WordPress;

impl Recipe for WordPress {
    fn install(ctx: &Context) -> Result<AppInfo> {
        let settings = Settings::from_context(ctx)?;
        let compose_file = settings.compose_file()?;

        progress::step("Creating container");
        let c = ContainerSpec::new(ctx, OS_TEMPLATE).docker_host().create()?;

        progress::step("Installing Docker");
        let docker = c.install_docker(settings.timeouts.docker_install)?;

        progress::step("Writing the compose file");
        let compose = docker.compose(PROJECT_DIR);
        compose.write_file(&compose_file)?;

        progress::step("Pulling images");
        compose.pull(settings.timeouts.pull).context("pulling images")?;

        progress::step("Starting WordPress");
        compose.up_and_wait(&SERVICES, &settings.timeouts.roll_out())?;

        progress::step("Waiting for WordPress");
        settings.wait_answering(&c)?;
        app_info(&c, settings.http_port, &compose)
    }

    fn upgrade(ctx: &Context, from_version: &str) -> Result<AppInfo> {
        let settings = Settings::from_context(ctx)?;
        let compose_file = settings.compose_file()?;

        progress::step("Checking Docker");
        let c = app_container()?;
        let docker = c.running_docker()?;

        progress::step("Updating the services");
        let compose = docker.compose(PROJECT_DIR);
        let timeouts = settings.timeouts.roll_out();
        compose.roll_out(&compose_file, &SERVICES, &timeouts)?;

        progress::step("Waiting for WordPress");
        settings.wait_answering(&c)?;
        log::info(format!("WordPress upgraded from recipe {from_version} to {}", ctx.recipe_version()));
        app_info(&c, settings.http_port, &compose)
    }

    fn uninstall(_ctx: &Context) -> Result<()> {
        progress::step("Stopping WordPress");
        uninstall_app_project(PROJECT_DIR, DOWN_TIMEOUT)
    }

    fn health(ctx: &Context) -> Result<HealthReport> {
        let http_port: u16 = ctx.param_int_as("http-port")?;
        let c = app_container()?;
        let docker = c.docker()?;
        let services_check = docker.compose(PROJECT_DIR).services_check(&SERVICES, HEALTH_TIMEOUT);

        // Any answer below 500 means WordPress reached its database.
        let http_check = match c.wait_http(http_port, "/wp-login.php", None, HEALTH_TIMEOUT) {
            Ok(status) if status < 500 => HealthCheck::pass("http", format!("answered {status}")),
            Ok(status) => HealthCheck::fail("http", format!("answered {status}")),
            Err(e) => HealthCheck::fail("http", e.to_string()),
        };

        Ok(HealthReport::from_checks(vec![services_check, http_check]))
    }
}

impl Settings<'_> {
    /// The port accepts connections and WordPress reaches its database.
    fn wait_answering(&self, c: &Container) -> Result<()> {
        c.wait_port(self.http_port, self.timeouts.start)?;
        c.wait_http(self.http_port, READY_PATH, Some(200), self.timeouts.start).map(drop)
    }
}

fn app_info(c: &Container, http_port: u16, compose: &Compose) -> Result<AppInfo> {
    let address = c.address()?;
    Ok(AppInfo::new()
        .with_url(http_url(&address, http_port))
        .with_address(address)
        .with_port(http_port)
        .with_output("compose-file", compose.file_path()))
}

proximity_sdk::export_recipe!(WordPress);
