//! WordPress and MariaDB under Docker Compose in an Alpine LXC.
//!
//! The flow: container with nesting + keyctl, Docker and the compose plugin,
//! the compose file from `compose.yml` with the host-generated passwords,
//! pull, up, check the services, probe HTTP.

use proximity_sdk::compose::yaml_string;
use proximity_sdk::prelude::*;
use proximity_sdk::template;

const OS_TEMPLATE: &str = "alpine-3.20";
const PROJECT_DIR: &str = "/opt/wordpress";
const COMPOSE_TEMPLATE: &str = include_str!("../compose.yml");
const SERVICES: [&str; 2] = ["db", "wordpress"];
/// Answers 200 once WordPress reaches its database (500 before that).
const READY_PATH: &str = "/wp-admin/install.php";
/// `compose ps` checks after `up`, a few seconds apart, so a service that
/// restarts once while the database initialises is not taken for dead.
const RUNNING_CHECKS: u32 = 10;
const RUNNING_CHECK_PAUSE: Duration = Duration::from_secs(3);
const HEALTH_TIMEOUT: Duration = Duration::from_secs(10);

/// The operator's settings for one install, read from the context.
struct Settings<'a> {
    http_port: u16,
    db_password: &'a str,
    db_root_password: &'a str,
    docker_install_timeout: Duration,
    pull_timeout: Duration,
    start_timeout: Duration,
}

impl<'a> Settings<'a> {
    fn from_context(ctx: &'a Context) -> Result<Self> {
        Ok(Settings {
            http_port: ctx.param_int_as("http-port")?,
            db_password: ctx.param_str("db-password")?,
            db_root_password: ctx.param_str("db-root-password")?,
            docker_install_timeout: ctx.param_secs("docker-install-timeout-secs")?,
            pull_timeout: ctx.param_secs("pull-timeout-secs")?,
            start_timeout: ctx.param_secs("start-timeout-secs")?,
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
        let c = ContainerSpec::new(ctx, OS_TEMPLATE).nesting(true).keyctl(true).unprivileged(true).create()?;

        progress::step("Installing Docker");
        let docker = c.install_docker(settings.docker_install_timeout)?;

        progress::step("Writing the compose file");
        let compose = docker.compose(PROJECT_DIR);
        compose.write_file(&compose_file)?;

        progress::step("Pulling images");
        compose.pull(settings.pull_timeout).context("pulling images")?;

        progress::step("Starting WordPress");
        compose.up(settings.start_timeout).context("starting the services")?;
        compose.wait_running(&SERVICES, RUNNING_CHECKS, RUNNING_CHECK_PAUSE)?;

        progress::step("Waiting for WordPress");
        c.wait_port(settings.http_port, settings.start_timeout)?;
        c.wait_http(settings.http_port, READY_PATH, Some(200), settings.start_timeout)?;

        let address = c.address()?;
        Ok(AppInfo::new()
            .with_url(url(&address, settings.http_port))
            .with_address(address)
            .with_port(settings.http_port)
            .with_output("compose-file", compose.file_path()))
    }

    fn health(ctx: &Context) -> Result<HealthReport> {
        let http_port: u16 = ctx.param_int_as("http-port")?;
        let c = app_container()?;
        let docker = c.docker()?;
        let compose = docker.compose(PROJECT_DIR);

        let services_check = match compose.not_running(&SERVICES, HEALTH_TIMEOUT) {
            Ok(missing) if missing.is_empty() => HealthCheck::pass("services", SERVICES.join(", ")),
            Ok(missing) => HealthCheck::fail("services", format!("not running: {}", missing.join(", "))),
            Err(e) => HealthCheck::fail("services", e.to_string()),
        };

        // Any answer below 500 means WordPress reached its database.
        let http_check = match c.wait_http(http_port, "/wp-login.php", None, HEALTH_TIMEOUT) {
            Ok(status) if status < 500 => HealthCheck::pass("http", format!("answered {status}")),
            Ok(status) => HealthCheck::fail("http", format!("answered {status}")),
            Err(e) => HealthCheck::fail("http", e.to_string()),
        };

        Ok(HealthReport::from_checks(vec![services_check, http_check]))
    }
}

fn url(address: &str, port: u16) -> String {
    if port == 80 {
        format!("http://{address}/")
    } else {
        format!("http://{address}:{port}/")
    }
}

proximity_sdk::export_recipe!(WordPress);
