//! nginx on Debian 12, serving one page that shows the `greeting` parameter.
//!
//! Install: container, Debian's nginx, the page and the site, a checked
//! reload, the page answers. Upgrade: Debian's newest nginx, the page and site
//! written again, the same checks. Uninstall: nginx stopped (the host destroys
//! the container). Health: the service, the configuration and the page.

use proximity_sdk::os::uninstall_app_service;
use proximity_sdk::prelude::*;
use proximity_sdk::template;

const OS_TEMPLATE: &str = "debian-12";
const HTTP_PORT: u16 = 80;
/// Debian's enabled default site is a symlink to this file; replacing it
/// keeps exactly one `default_server`.
const SITE_CONFIG_PATH: &str = "/etc/nginx/sites-available/default";
const INDEX_PATH: &str = "/var/www/html/index.html";
const SITE_CONFIG: &str = include_str!("../site.conf");
const INDEX_TEMPLATE: &str = include_str!("../index.html");
const START_TIMEOUT: Duration = Duration::from_secs(120);
const HEALTH_TIMEOUT: Duration = Duration::from_secs(10);

struct Nginx;

impl Recipe for Nginx {
    fn install(ctx: &Context) -> Result<AppInfo> {
        let greeting = ctx.param_str("greeting")?;

        progress::step("Creating container");
        let c = ContainerSpec::new(ctx, OS_TEMPLATE).create()?;

        progress::step("Installing nginx");
        c.install_packages(&["nginx"])?;

        write_site(&c, ctx, greeting)?;
        // The package already started nginx with its own default site.
        start_and_wait(&c)?;
        app_info(&c)
    }

    /// Debian's newest nginx for this release, the site written again with
    /// the app's current greeting, a checked reload, and the same answer.
    fn upgrade(ctx: &Context, from_version: &str) -> Result<AppInfo> {
        let greeting = ctx.param_str("greeting")?;
        let c = app_container()?;

        progress::step("Upgrading nginx");
        log::info(format!("from recipe version {from_version}"));
        // The site file is one of nginx-common's conffiles: the upgrade keeps
        // ours rather than stop at dpkg's question.
        c.upgrade_packages(&["nginx", "nginx-common"])?;

        write_site(&c, ctx, greeting)?;
        start_and_wait(&c)?;
        app_info(&c)
    }

    /// Stop and disable nginx; the host destroys the container afterwards.
    /// Best effort: a stopped container cannot run the command, and that
    /// must not keep the app from being removed.
    fn uninstall(_ctx: &Context) -> Result<()> {
        progress::step("Stopping nginx");
        uninstall_app_service("nginx")
    }

    fn health(_ctx: &Context) -> Result<HealthReport> {
        let c = app_container()?;
        let service = c.service_check("nginx");
        let config = c.run(&["nginx", "-t", "-q"]);
        let probe = c.wait_http(HTTP_PORT, "/", Some(200), HEALTH_TIMEOUT);
        Ok(HealthReport::from_checks(vec![
            service,
            HealthCheck::from_result("config", &config, "the configuration checks"),
            HealthCheck::from_result("http", &probe, "GET / answered 200"),
        ]))
    }
}

/// The page with the greeting, and the site that serves it.
fn write_site(c: &Container, ctx: &Context, greeting: &str) -> Result<()> {
    progress::step("Writing the site");
    let index = template::render(
        INDEX_TEMPLATE,
        &[("greeting", &html_escape(greeting)), ("app-id", &html_escape(ctx.app_id()))],
    )?;
    c.write_file(INDEX_PATH, index, 0o644)?;
    c.write_file(SITE_CONFIG_PATH, SITE_CONFIG, 0o644)
}

/// Check the configuration, (re)load nginx, and wait for the page.
fn start_and_wait(c: &Container) -> Result<()> {
    progress::step("Starting nginx");
    c.run(&["nginx", "-t"]).context("checking the nginx configuration")?;
    c.run(&["systemctl", "enable", "nginx"])?;
    c.run(&["systemctl", "reload-or-restart", "nginx"])?;

    progress::step("Waiting for nginx");
    c.wait_port(HTTP_PORT, START_TIMEOUT)?;
    c.wait_http(HTTP_PORT, "/", Some(200), START_TIMEOUT)?;
    Ok(())
}

fn app_info(c: &Container) -> Result<AppInfo> {
    let address = c.address()?;
    Ok(AppInfo::new().with_url(format!("http://{address}/")).with_address(address).with_port(HTTP_PORT))
}

/// Text made safe for HTML element content and attribute values.
fn html_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

proximity_sdk::export_recipe!(Nginx);
