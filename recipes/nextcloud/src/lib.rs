//! Nextcloud, PostgreSQL and Redis under Docker Compose in an Alpine LXC.
//!
//! Install: container with nesting + keyctl, Docker and the compose plugin,
//! the compose file from `compose.yml` with the generated passwords and the
//! container's address as trusted domain, pull, up. The image installs
//! Nextcloud on its first start from those settings; the recipe waits for
//! `/status.php`, checks with `occ status` that the installation finished,
//! and switches background jobs to the cron service.
//!
//! Upgrade: this recipe version's compose file (its image tags), pull, `up`;
//! the new image runs Nextcloud's own upgrade as it starts, and the recipe
//! waits until `occ status` reports no pending database upgrade.
//! Uninstall: `compose down`, so PostgreSQL stops cleanly before the host
//! destroys the container and the volumes on its disk.

use proximity_sdk::compose::{uninstall_app_project, yaml_string};
use proximity_sdk::prelude::*;
use proximity_sdk::template;

const OS_TEMPLATE: &str = "alpine-3.20";
const PROJECT_DIR: &str = "/opt/nextcloud";
const COMPOSE_TEMPLATE: &str = include_str!("../compose.yml");
const SERVICES: [&str; 4] = ["db", "redis", "app", "cron"];
const APP_SERVICE: &str = "app";
/// The user the nextcloud image runs PHP as; `occ` must run as it.
const WEB_USER: &str = "www-data";
/// Answers 200 once Apache serves PHP (Nextcloud installs before that).
const READY_PATH: &str = "/status.php";
const OCC_TIMEOUT: Duration = Duration::from_secs(300);
/// `occ status` checks after the page answers, a few seconds apart: an
/// upgrade may still be finishing.
const STATUS_CHECKS: u32 = 20;
const STATUS_PAUSE: Duration = Duration::from_secs(5);
const HEALTH_TIMEOUT: Duration = Duration::from_secs(10);
const DOWN_TIMEOUT: Duration = Duration::from_secs(180);

struct Settings<'a> {
    http_port: u16,
    admin_user: &'a str,
    admin_password: &'a str,
    db_password: &'a str,
    redis_password: &'a str,
    extra_trusted_domains: Vec<&'a str>,
    timeouts: ComposeTimeouts,
}

impl<'a> Settings<'a> {
    fn from_context(ctx: &'a Context) -> Result<Self> {
        Ok(Settings {
            http_port: ctx.param_int_as("http-port")?,
            admin_user: ctx.param_str("admin-user")?,
            admin_password: ctx.param_str("admin-password")?,
            db_password: ctx.param_str("db-password")?,
            redis_password: ctx.param_str("redis-password")?,
            extra_trusted_domains: ctx
                .param_str_opt("extra-trusted-domains")?
                .map(|d| d.split_whitespace().collect())
                .unwrap_or_default(),
            timeouts: ComposeTimeouts::from_context(ctx)?,
        })
    }

    /// The names Nextcloud answers to: the container's address (with its
    /// port when not 80), then the operator's extra names.
    fn trusted_domains(&self, address: &str) -> String {
        let own = if self.http_port == 80 { address.to_string() } else { format!("{address}:{}", self.http_port) };
        core::iter::once(own.as_str()).chain(self.extra_trusted_domains.iter().copied()).collect::<Vec<_>>().join(" ")
    }

    fn compose_file(&self, address: &str) -> Result<String> {
        template::render(
            COMPOSE_TEMPLATE,
            &[
                ("http-port", &self.http_port.to_string()),
                ("admin-user", &yaml_string(self.admin_user)),
                ("admin-password", &yaml_string(self.admin_password)),
                ("db-password", &yaml_string(self.db_password)),
                ("redis-password", &yaml_string(self.redis_password)),
                ("trusted-domains", &yaml_string(&self.trusted_domains(address))),
            ],
        )
    }

    /// The page answers, then `occ status` says Nextcloud is installed, out
    /// of maintenance and with no database upgrade pending.
    fn wait_ready(&self, c: &Container, compose: &Compose<'_>) -> Result<String> {
        c.wait_port(self.http_port, self.timeouts.start)?;
        c.wait_http(self.http_port, READY_PATH, Some(200), self.timeouts.start)?;
        let mut attempt = 1;
        loop {
            match occ_status(compose) {
                Ok(status) => return Ok(status),
                Err(e) if attempt >= STATUS_CHECKS => return Err(e),
                Err(_) => {
                    attempt += 1;
                    c.pause(STATUS_PAUSE)?;
                }
            }
        }
    }
}

/// Run `php occ ARGS…` as the web user in the app service.
fn occ(compose: &Compose<'_>, args: &[&str]) -> Result<String> {
    let argv = [&["php", "occ"][..], args].concat();
    compose.exec(APP_SERVICE, Some(WEB_USER), &argv, &ExecOptions::new().timeout(OCC_TIMEOUT))
}

/// `occ status --output=json`, accepted only when Nextcloud is installed,
/// not in maintenance and up to date with its database.
fn occ_status(compose: &Compose<'_>) -> Result<String> {
    let status = occ(compose, &["status", "--output=json"]).context("asking Nextcloud for its status")?;
    let compact: String = status.chars().filter(|c| !c.is_whitespace()).collect();
    if !compact.contains("\"installed\":true") {
        return Err(Error::backend(format!("Nextcloud is not installed yet: {}", status.trim())));
    }
    if compact.contains("\"maintenance\":true") {
        return Err(Error::backend("Nextcloud is in maintenance mode"));
    }
    if compact.contains("\"needsDbUpgrade\":true") {
        return Err(Error::backend("Nextcloud still needs its database upgrade"));
    }
    Ok(status)
}

/// The `"versionstring":"…"` of an `occ status` answer.
fn version_of(status: &str) -> Option<String> {
    let compact: String = status.chars().filter(|c| !c.is_whitespace()).collect();
    let rest = &compact[compact.find("\"versionstring\":\"")? + "\"versionstring\":\"".len()..];
    rest.split('"').next().map(String::from)
}

struct Nextcloud;

impl Recipe for Nextcloud {
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

        progress::step("Starting Nextcloud");
        compose.up_and_wait(&SERVICES, &settings.timeouts.roll_out())?;

        progress::step("Waiting for the installation");
        let status = settings.wait_ready(&c, &compose)?;

        progress::step("Configuring background jobs");
        occ(&compose, &["background:cron"]).context("switching background jobs to cron")?;
        log::info(format!(
            "administrator `{}` created; its password is the app's `admin-password` secret",
            settings.admin_user
        ));
        app_info(&address, &settings, &compose, &status)
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

        progress::step("Waiting for Nextcloud's upgrade");
        let status = settings.wait_ready(&c, &compose)?;
        log::info(format!("Nextcloud upgraded from recipe {from_version} to {}", ctx.recipe_version()));
        app_info(&address, &settings, &compose, &status)
    }

    fn uninstall(_ctx: &Context) -> Result<()> {
        progress::step("Stopping Nextcloud");
        uninstall_app_project(PROJECT_DIR, DOWN_TIMEOUT)
    }

    fn health(ctx: &Context) -> Result<HealthReport> {
        let http_port: u16 = ctx.param_int_as("http-port")?;
        let c = app_container()?;
        let compose = c.docker()?.compose(PROJECT_DIR);
        let services = compose.services_check(&SERVICES, HEALTH_TIMEOUT);
        let http = match c.wait_http(http_port, READY_PATH, Some(200), HEALTH_TIMEOUT) {
            Ok(status) => HealthCheck::pass("http", format!("{READY_PATH} answered {status}")),
            Err(e) => HealthCheck::fail("http", e.to_string()),
        };
        let nextcloud = match occ_status(&compose) {
            Ok(status) => HealthCheck::pass(
                "nextcloud",
                format!("installed, version {}", version_of(&status).unwrap_or_else(|| "unknown".into())),
            ),
            Err(e) => HealthCheck::fail("nextcloud", e.to_string()),
        };
        Ok(HealthReport::from_checks(vec![services, http, nextcloud]))
    }
}

fn app_info(address: &str, settings: &Settings<'_>, compose: &Compose<'_>, status: &str) -> Result<AppInfo> {
    let mut info = AppInfo::new()
        .with_url(http_url(address, settings.http_port))
        .with_address(address)
        .with_port(settings.http_port)
        .with_output("admin-user", settings.admin_user)
        .with_output("compose-file", compose.file_path());
    if let Some(version) = version_of(status) {
        info = info.with_output("nextcloud-version", version);
    }
    Ok(info)
}

proximity_sdk::export_recipe!(Nextcloud);
