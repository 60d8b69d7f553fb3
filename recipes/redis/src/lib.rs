//! Redis on Debian 12: the distribution's package with a password and a
//! memory cap, reachable on the container's address.
//!
//! Install: container, redis-server, the configuration, restart, PING.
//! Upgrade: Debian's newest redis-server, the configuration written again,
//! restart, PING. Uninstall: Redis stopped (the host destroys the container).
//! Health: the service, the port from the host, and PING with the password.

use proximity_sdk::os::uninstall_app_service;
use proximity_sdk::prelude::*;
use proximity_sdk::template;

const OS_TEMPLATE: &str = "debian-12";
const PORT: u16 = 6379;
const CONFIG_PATH: &str = "/etc/redis/redis.conf";
const CONFIG_TEMPLATE: &str = include_str!("../redis.conf");
const START_TIMEOUT: Duration = Duration::from_secs(60);
const HEALTH_TIMEOUT: Duration = Duration::from_secs(10);

struct Redis;

impl Recipe for Redis {
    fn install(ctx: &Context) -> Result<AppInfo> {
        let password = ctx.param_str("password")?;
        let maxmemory_mb = ctx.param_int("maxmemory-mb")?;

        progress::step("Creating container");
        let c = ContainerSpec::new(ctx, OS_TEMPLATE).create()?;

        progress::step("Installing Redis");
        c.install_packages(&["redis-server"])?;

        configure_and_start(&c, password, maxmemory_mb)?;
        let address = c.address()?;
        Ok(app_info(address))
    }

    /// Debian's newest redis-server for this release, with the app's
    /// current parameters written again.
    fn upgrade(ctx: &Context, from_version: &str) -> Result<AppInfo> {
        let password = ctx.param_str("password")?;
        let maxmemory_mb = ctx.param_int("maxmemory-mb")?;
        let c = app_container()?;

        progress::step("Upgrading Redis");
        log::info(format!("from recipe version {from_version}"));
        // redis.conf is one of the package's conffiles and this recipe
        // rewrites it: the upgrade keeps ours rather than stop at dpkg's
        // question; it is written again below anyway.
        c.upgrade_packages(&["redis-server", "redis-tools"]).context("upgrading Redis")?;

        configure_and_start(&c, password, maxmemory_mb)?;
        Ok(app_info(c.address()?))
    }

    /// Stop Redis (it saves its data set on the way down) and disable it;
    /// the host destroys the container afterwards. Best effort: a stopped
    /// container cannot run the command, and that must not keep the app
    /// from being removed.
    fn uninstall(_ctx: &Context) -> Result<()> {
        progress::step("Stopping Redis");
        uninstall_app_service("redis-server")
    }

    fn health(ctx: &Context) -> Result<HealthReport> {
        let password = ctx.param_str("password")?;
        let c = app_container()?;
        let service = c.service_check("redis-server");
        let port = c.port_check("port", PORT, HEALTH_TIMEOUT);
        let ping = ping(&c, password);
        Ok(HealthReport::from_checks(vec![
            service,
            port,
            HealthCheck::from_result("ping", &ping, "PING with the password answered PONG"),
        ]))
    }
}

fn app_info(address: String) -> AppInfo {
    AppInfo::new().with_url(format!("redis://{address}:{PORT}")).with_address(address).with_port(PORT)
}

/// Write the configuration, (re)start the service, and wait until it answers.
fn configure_and_start(c: &Container, password: &str, maxmemory_mb: i64) -> Result<()> {
    progress::step("Configuring Redis");
    let config =
        template::render(CONFIG_TEMPLATE, &[("password", password), ("maxmemory-mb", &maxmemory_mb.to_string())])?;
    // The file holds the password: readable by the redis user only.
    c.write_file_with(
        CONFIG_PATH,
        config,
        &FileOptions { mode: 0o640, owner: Some("redis".into()), group: Some("redis".into()) },
    )?;
    c.run(&["systemctl", "enable", "redis-server"])?;
    c.run(&["systemctl", "restart", "redis-server"])?;

    progress::step("Waiting for Redis");
    c.wait_port(PORT, START_TIMEOUT)?;
    ping(c, password)
}

/// `PING` through redis-cli inside the container; the password travels in
/// the environment, never on a command line.
fn ping(c: &Container, password: &str) -> Result<()> {
    let options = ExecOptions::new().env("REDISCLI_AUTH", password).timeout(HEALTH_TIMEOUT);
    let answer = c.run_with(&["redis-cli", "-p", "6379", "ping"], &options)?;
    if answer.trim() == "PONG" {
        Ok(())
    } else {
        Err(Error::backend(format!("redis answered {:?} to PING", answer.trim())))
    }
}

proximity_sdk::export_recipe!(Redis);
