"""{{name}}: nginx on Debian 12 serving one page. Replace with your app's steps."""

import proximity as px

# Read at build time (componentize-py runs the module's top level then); a
# recipe has no files at run time.
PAGE = px.asset(__file__, "index.html")


class App(px.Recipe):
    def install(self, ctx):
        page = px.render(PAGE, {"greeting": ctx.param_str("greeting")})

        px.step("Creating container")
        c = px.ContainerSpec(ctx, "debian-12").create()

        px.step("Installing nginx")
        c.install_packages(["nginx"])
        c.write_file("/var/www/html/index.html", page, 0o644)
        print("page written")  # stdout lands in the job's log as an info line

        px.step("Waiting for nginx")
        c.wait_http(80, "/", expect_status=200, timeout=60)

        address = c.address()
        return px.AppInfo(url=px.http_url(address, 80), address=address, ports=[80])

    def health(self, ctx):
        c = px.app_container()
        return px.HealthReport([px.HealthCheck.of("http", lambda: f"answered {c.wait_http(80, '/', expect_status=200, timeout=10)}")])


# componentize-py exports the class named after the WIT interface.
Lifecycle = px.export(App)
