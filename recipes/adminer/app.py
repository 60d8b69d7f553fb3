"""Adminer on Debian 12: Debian's adminer package served by PHP's built-in
web server, as a systemd service running as www-data.

Install: container, packages, PHP settings and the service unit from the
assets beside this file, start, wait for HTTP, report the URL. Upgrade:
Debian's newest packages, the settings and unit written again, restart, the
same checks. Uninstall: the service stopped (the host destroys the
container). Health: the service and the login page.
"""

import proximity as px

OS_TEMPLATE = "debian-12"
PACKAGES = ["adminer", "php-cli", "php-cgi", "php-mysql", "php-pgsql", "php-sqlite3"]
SERVICE = "adminer"
UNIT_PATH = "/etc/systemd/system/adminer.service"
PHP_INI_PATH = "/etc/adminer/php.ini"
START_TIMEOUT = 120
HEALTH_TIMEOUT = 10

# Read while componentize-py builds the component (module top level runs
# then); a recipe has no files at run time.
UNIT_TEMPLATE = px.asset(__file__, "adminer.service")
PHP_INI_TEMPLATE = px.asset(__file__, "php.ini")


class Adminer(px.Recipe):
    def install(self, ctx):
        settings = Settings(ctx)

        px.step("Creating container")
        c = px.ContainerSpec(ctx, OS_TEMPLATE).create()

        px.step("Installing Adminer and PHP")
        c.install_packages(PACKAGES, timeout=settings.install_timeout)

        configure_and_start(c, settings)
        return app_info(c, settings.port)

    def upgrade(self, ctx, from_version):
        """Debian's newest Adminer and PHP for this release, the settings and
        unit written again with the app's current parameters, a restart, the
        same checks and the same answer."""
        settings = Settings(ctx)
        c = px.app_container()

        px.step("Upgrading Adminer and PHP")
        px.info(f"from recipe version {from_version}")
        c.upgrade_packages(PACKAGES, timeout=settings.install_timeout)

        configure_and_start(c, settings, restart=True)
        return app_info(c, settings.port)

    def uninstall(self, ctx):
        """Stop and disable the service; the host destroys the container
        afterwards. Best effort: a stopped container cannot run the command,
        and that must not keep the app from being removed."""
        px.step("Stopping Adminer")
        for c in px.app_containers():
            try:
                c.run(["systemctl", "disable", "--now", SERVICE])
            except px.RecipeError as err:
                px.warn(f"could not stop Adminer in {c.id}: {err.message}")

    def health(self, ctx):
        port = ctx.param_port("http-port")
        c = px.app_container()
        service = px.HealthCheck.of(
            "service", lambda: c.run(["systemctl", "is-active", "--quiet", SERVICE]), f"{SERVICE} is active"
        )
        http = px.HealthCheck.of(
            "http", lambda: f"answered {c.wait_http(port, '/', expect_status=200, timeout=HEALTH_TIMEOUT)}"
        )
        return px.HealthReport([service, http])


class Settings:
    """The parameters, and the files rendered from them."""

    def __init__(self, ctx):
        self.port = ctx.param_port("http-port")
        upload_mb = ctx.param_int("upload-limit-mb", lo=1)
        self.install_timeout = ctx.param_secs("install-timeout-secs")
        # PHP needs headroom above the largest upload it parses.
        self.php_ini = px.render(PHP_INI_TEMPLATE, {"upload-mb": upload_mb, "memory-mb": max(128, upload_mb * 2)})
        self.unit = px.render(UNIT_TEMPLATE, {"port": self.port})


def configure_and_start(c, settings, restart=False):
    """Write PHP's settings and the unit, start the service (`restart`: start
    it again, so that it runs the upgraded PHP with the new files), wait for
    the page."""
    px.step("Configuring the web server")
    c.write_file(PHP_INI_PATH, settings.php_ini, 0o644)
    c.write_file(UNIT_PATH, settings.unit, 0o644)
    c.run(["systemctl", "daemon-reload"])
    c.run(["systemctl", "enable", "--now", SERVICE])
    if restart:
        c.run(["systemctl", "restart", SERVICE])
    print(f"adminer: service unit written, listening on port {settings.port}")

    px.step("Waiting for Adminer")
    c.wait_port(settings.port, START_TIMEOUT)
    c.wait_http(settings.port, "/", expect_status=200, timeout=START_TIMEOUT)


def app_info(c, port):
    address = c.address()
    px.info(f"Adminer answers on port {port}; sign in with a database server's credentials")
    return (
        px.AppInfo()
        .with_url(px.http_url(address, port))
        .with_address(address)
        .with_port(port)
        .with_output("service", SERVICE)
    )


Lifecycle = px.export(Adminer)
