"""Adminer on Debian 12: Debian's adminer package served by PHP's built-in
web server, as a systemd service running as www-data.

The flow: container, packages, PHP settings and the service unit from the
assets beside this file, start, wait for HTTP, report the URL.
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
        port = ctx.param_port("http-port")
        upload_mb = ctx.param_int("upload-limit-mb", lo=1)
        install_timeout = ctx.param_secs("install-timeout-secs")
        # PHP needs headroom above the largest upload it parses.
        php_ini = px.render(PHP_INI_TEMPLATE, {"upload-mb": upload_mb, "memory-mb": max(128, upload_mb * 2)})
        unit = px.render(UNIT_TEMPLATE, {"port": port})

        px.step("Creating container")
        c = px.ContainerSpec(ctx, OS_TEMPLATE).create()

        px.step("Installing Adminer and PHP")
        c.install_packages(PACKAGES, timeout=install_timeout)

        px.step("Configuring the web server")
        c.write_file(PHP_INI_PATH, php_ini, 0o644)
        c.write_file(UNIT_PATH, unit, 0o644)
        c.run(["systemctl", "daemon-reload"])
        c.run(["systemctl", "enable", "--now", SERVICE])
        print(f"adminer: service unit written, listening on port {port}")

        px.step("Waiting for Adminer")
        c.wait_port(port, START_TIMEOUT)
        c.wait_http(port, "/", expect_status=200, timeout=START_TIMEOUT)

        address = c.address()
        px.info(f"Adminer answers on port {port}; sign in with a database server's credentials")
        return (
            px.AppInfo()
            .with_url(px.http_url(address, port))
            .with_address(address)
            .with_port(port)
            .with_output("service", SERVICE)
        )

    def health(self, ctx):
        port = ctx.param_port("http-port")
        c = px.app_container()
        service = px.HealthCheck.of("service", lambda: c.run(["systemctl", "is-active", SERVICE]).strip())
        http = px.HealthCheck.of(
            "http", lambda: f"answered {c.wait_http(port, '/', expect_status=200, timeout=HEALTH_TIMEOUT)}"
        )
        return px.HealthReport([service, http])


Lifecycle = px.export(Adminer)
