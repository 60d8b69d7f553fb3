//! Portainer CE under Docker Compose in an Alpine LXC.
//!
//! Install: container with nesting + keyctl, Docker and the compose plugin,
//! the generated administrator password in a 0600 file that the service
//! reads through `--admin-password-file` (so the first-user screen is never
//! open to whoever comes first), the compose file, pull, up, then the HTTPS
//! port and Portainer's status API (plain HTTP on the container's loopback,
//! asked with busybox `wget` inside the container).
//!
//! Upgrade: this recipe version's compose file (its image tag), pull, `up`,
//! the same probes; Portainer ignores the password file once its
//! administrator exists. Uninstall: `compose down` before the host destroys
//! the container.

use proximity_sdk::compose::uninstall_app_project;
use proximity_sdk::prelude::*;
use proximity_sdk::template;

const OS_TEMPLATE: &str = "alpine-3.20";
const PROJECT_DIR: &str = "/opt/portainer";
/// Beside the compose file, which mounts it as `./admin-password`.
const PASSWORD_FILE: &str = "/opt/portainer/admin-password";
const COMPOSE_TEMPLATE: &str = include_str!("../compose.yml");
const SERVICES: [&str; 1] = ["portainer"];
/// Portainer's plain HTTP port, published on the container's loopback only.
const STATUS_PORT: u16 = 9000;
const STATUS_PATH: &str = "/api/system/status";
const STATUS_ATTEMPTS: u32 = 20;
const STATUS_PAUSE: Duration = Duration::from_secs(3);
const HEALTH_TIMEOUT: Duration = Duration::from_secs(10);
const DOWN_TIMEOUT: Duration = Duration::from_secs(120);

struct Settings<'a> {
    https_port: u16,
    admin_password: &'a str,
    timeouts: ComposeTimeouts,
}

impl<'a> Settings<'a> {
    fn from_context(ctx: &'a Context) -> Result<Self> {
        let settings = Settings {
            https_port: ctx.param_int_as("https-port")?,
            admin_password: ctx.param_str("admin-password")?,
            timeouts: ComposeTimeouts::from_context(ctx)?,
        };
        if settings.https_port == STATUS_PORT {
            return Err(Error::invalid_input(format!(
                "https-port {STATUS_PORT} is taken by Portainer's own status port: choose another"
            )));
        }
        Ok(settings)
    }

    fn compose_file(&self) -> Result<String> {
        template::render(
            COMPOSE_TEMPLATE,
            &[("https-port", &self.https_port.to_string()), ("status-port", &STATUS_PORT.to_string())],
        )
    }

    /// The password file and the compose file, both 0600.
    fn write_files(&self, c: &Container, compose: &Compose<'_>) -> Result<()> {
        compose.write_file(&self.compose_file()?)?;
        // No trailing newline: the file's whole text is the password.
        c.write_file(PASSWORD_FILE, self.admin_password, 0o600)
    }

    /// The HTTPS port accepts connections and the API answers.
    fn wait_answering(&self, c: &Container) -> Result<String> {
        c.wait_port(self.https_port, self.timeouts.start)?;
        let mut attempt = 1;
        loop {
            match api_status(c) {
                Ok(status) => return Ok(status),
                Err(e) if attempt >= STATUS_ATTEMPTS => {
                    return Err(e.context(format_args!("Portainer's API did not answer after {attempt} tries")))
                }
                Err(_) => {
                    attempt += 1;
                    c.pause(STATUS_PAUSE)?;
                }
            }
        }
    }
}

/// Portainer's `/api/system/status` JSON, asked from inside the container.
fn api_status(c: &Container) -> Result<String> {
    let url = format!("http://127.0.0.1:{STATUS_PORT}{STATUS_PATH}");
    let options = ExecOptions::new().timeout(HEALTH_TIMEOUT);
    let body = c.run_with(&["wget", "-q", "-O", "-", url.as_str()], &options)?;
    if body.contains("\"Version\"") {
        Ok(body)
    } else {
        Err(Error::backend(format!("{STATUS_PATH} answered without a version: {}", body.trim())))
    }
}

/// The `"Version":"…"` value of a status answer, if it has one.
fn version_of(status: &str) -> Option<&str> {
    let rest = &status[status.find("\"Version\"")? + "\"Version\"".len()..];
    let rest = rest.trim_start().strip_prefix(':')?.trim_start().strip_prefix('"')?;
    rest.split('"').next()
}

struct Portainer;

impl Recipe for Portainer {
    fn install(ctx: &Context) -> Result<AppInfo> {
        let settings = Settings::from_context(ctx)?;

        progress::step("Creating container");
        let c = ContainerSpec::new(ctx, OS_TEMPLATE).docker_host().create()?;

        progress::step("Installing Docker");
        let docker = c.install_docker(settings.timeouts.docker_install)?;

        progress::step("Writing the compose file");
        let compose = docker.compose(PROJECT_DIR);
        settings.write_files(&c, &compose)?;

        progress::step("Pulling the image");
        compose.pull(settings.timeouts.pull).context("pulling images")?;

        progress::step("Starting Portainer");
        compose.up_and_wait(&SERVICES, &settings.timeouts.roll_out())?;

        progress::step("Waiting for Portainer");
        let status = settings.wait_answering(&c)?;
        log::info("the administrator is `admin`; its password is the app's `admin-password` secret");
        app_info(&c, &settings, &status)
    }

    fn upgrade(ctx: &Context, from_version: &str) -> Result<AppInfo> {
        let settings = Settings::from_context(ctx)?;

        progress::step("Checking Docker");
        let c = app_container()?;
        let docker = c.running_docker()?;

        progress::step("Updating Portainer");
        let compose = docker.compose(PROJECT_DIR);
        c.write_file(PASSWORD_FILE, settings.admin_password, 0o600)?;
        let timeouts = settings.timeouts.roll_out();
        compose.roll_out(&settings.compose_file()?, &SERVICES, &timeouts)?;

        progress::step("Waiting for Portainer");
        let status = settings.wait_answering(&c)?;
        log::info(format!("Portainer upgraded from recipe {from_version} to {}", ctx.recipe_version()));
        app_info(&c, &settings, &status)
    }

    fn uninstall(_ctx: &Context) -> Result<()> {
        progress::step("Stopping Portainer");
        uninstall_app_project(PROJECT_DIR, DOWN_TIMEOUT)
    }

    fn health(ctx: &Context) -> Result<HealthReport> {
        let https_port: u16 = ctx.param_int_as("https-port")?;
        let c = app_container()?;
        let services = c.docker()?.compose(PROJECT_DIR).services_check(&SERVICES, HEALTH_TIMEOUT);
        let https = c.port_check("https", https_port, HEALTH_TIMEOUT);
        let api = match api_status(&c) {
            Ok(status) => HealthCheck::pass("api", format!("version {}", version_of(&status).unwrap_or("unknown"))),
            Err(e) => HealthCheck::fail("api", e.to_string()),
        };
        Ok(HealthReport::from_checks(vec![services, https, api]))
    }
}

fn app_info(c: &Container, settings: &Settings<'_>, status: &str) -> Result<AppInfo> {
    let address = c.address()?;
    let mut info = AppInfo::new()
        .with_url(https_url(&address, settings.https_port))
        .with_address(address)
        .with_port(settings.https_port)
        .with_output("admin-username", "admin")
        .with_output("compose-file", format!("{PROJECT_DIR}/docker-compose.yml"));
    if let Some(version) = version_of(status) {
        info = info.with_output("portainer-version", version);
    }
    Ok(info)
}

proximity_sdk::export_recipe!(Portainer);
