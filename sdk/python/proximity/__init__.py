"""Write Proximity recipes in Python.

A recipe is a WebAssembly component (built by componentize-py) that installs
one app by calling the host's capabilities. This package wraps the bindings
componentize-py generates for the `proximity:recipe` world:

    import proximity as px

    class Hello(px.Recipe):
        def install(self, ctx):
            px.step("Creating container")
            c = px.ContainerSpec(ctx, "debian-12").create()
            c.install_packages(["nginx"])
            c.wait_http(80, "/", expect_status=200, timeout=60)
            address = c.address()
            return px.AppInfo(url=px.http_url(address, 80), address=address, ports=[80])

    Lifecycle = px.export(Hello)

Module map: `context` (parameters), `container` (lxc, exec, files, probe,
packages), `docker` (engine + compose), `progress` (steps, log lines),
`template` (assets), `proxy`, `report` (what exports return), `recipe` (base
class and export), `errors`.
"""

from . import progress, proxy
from .container import (
    Container,
    ContainerSpec,
    ExecOutput,
    app_container,
    app_containers,
    os_family_from_release,
)
from .context import Context
from .docker import Compose, Docker, yaml_string
from .errors import Backend, Denied, InvalidInput, NotFound, RecipeError, Timeout
from .progress import debug, error, info, step, warn
from .recipe import Recipe, export
from .report import AppInfo, HealthCheck, HealthReport, http_url
from .template import asset, render

__all__ = [
    "AppInfo",
    "Backend",
    "Compose",
    "Container",
    "ContainerSpec",
    "Context",
    "Denied",
    "Docker",
    "ExecOutput",
    "HealthCheck",
    "HealthReport",
    "InvalidInput",
    "NotFound",
    "Recipe",
    "RecipeError",
    "Timeout",
    "app_container",
    "app_containers",
    "asset",
    "debug",
    "error",
    "export",
    "http_url",
    "info",
    "os_family_from_release",
    "progress",
    "proxy",
    "render",
    "step",
    "warn",
    "yaml_string",
]
