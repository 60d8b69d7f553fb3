"""Docker inside a container: installing the engine and compose, waiting for
the daemon, and one compose project's file, pull, up and status."""

from .errors import Backend, RecipeError

#: `docker info` attempts before the daemon counts as not starting, and the pause between them.
READY_ATTEMPTS = 30
READY_PAUSE = 2
INFO_TIMEOUT = 30
#: The file name `Compose.write_file` uses inside the project directory.
COMPOSE_FILE_NAME = "docker-compose.yml"
#: Bound on one `ps` call made by `wait_running`.
STATUS_TIMEOUT = 60


def yaml_string(value):
    """`value` as a double-quoted YAML string that compose takes literally:
    YAML escapes for backslash, `"` and control characters, and `$` doubled so
    compose does not interpolate it. Use it for every operator-supplied value
    (passwords above all) put into a compose file."""
    out = ['"']
    for c in str(value):
        if c == "\\":
            out.append("\\\\")
        elif c == '"':
            out.append('\\"')
        elif c == "$":
            out.append("$$")
        elif c == "\n":
            out.append("\\n")
        elif c == "\t":
            out.append("\\t")
        elif ord(c) < 0x20 or 0x7F <= ord(c) < 0xA0:
            out.append(f"\\u{ord(c):04x}")
        else:
            out.append(c)
    out.append('"')
    return "".join(out)


def install_docker(container, timeout):
    """Install Docker and compose, enable and start the daemon, and wait until
    `docker info` answers. Each package or service command gets `timeout` seconds.

    Debian: `docker.io` + `docker-compose` + `ca-certificates`, `systemctl
    enable --now docker`. Alpine: `docker` + `docker-cli-compose`, OpenRC."""
    if container.os_family() == "alpine":
        container.install_packages(["docker", "docker-cli-compose"], timeout)
        _run(container, ["rc-update", "add", "docker", "default"], timeout, "enabling the docker service")
        _run(container, ["service", "docker", "start"], timeout, "starting the docker service")
    else:
        container.install_packages(["docker.io", "docker-compose", "ca-certificates"], timeout)
        _run(container, ["systemctl", "enable", "--now", "docker"], timeout, "starting the docker service")
    docker = Docker(container)
    docker.wait_ready()
    return docker


def _run(container, argv, timeout, what):
    try:
        return container.run(argv, timeout=timeout)
    except RecipeError as err:
        raise err.context(what) from None


class Docker:
    """Docker in one container, with the compose flavour its distribution ships."""

    def __init__(self, container):
        self.container = container

    def wait_ready(self, attempts=READY_ATTEMPTS, pause=READY_PAUSE):
        """Wait until the daemon answers `docker info`, pausing between attempts."""
        for attempt in range(1, attempts + 1):
            try:
                self.container.run(["docker", "info"], timeout=INFO_TIMEOUT)
                return
            except RecipeError as err:
                if attempt >= attempts:
                    raise err.context("the docker daemon did not become ready") from None
                self.container.pause(pause)

    def compose(self, project_dir):
        """A compose project whose file lives in `project_dir`."""
        plugin = self.container.os_family() == "alpine"
        return Compose(self.container, project_dir, ["docker", "compose"] if plugin else ["docker-compose"])


class Compose:
    """One compose project. Every command passes `-f DIR/docker-compose.yml`
    and runs in DIR, so the project name is the directory's name."""

    def __init__(self, container, project_dir, command):
        self.container = container
        self.dir = project_dir.rstrip("/") or "/"
        self.command = list(command)

    @property
    def file_path(self):
        return f"{self.dir}/{COMPOSE_FILE_NAME}"

    def write_file(self, yaml):
        """Create the project directory and write the compose file, mode 0600
        because compose files usually carry secrets."""
        _run(self.container, ["mkdir", "-p", self.dir], None, "creating the compose project directory")
        self.container.write_file(self.file_path, yaml, 0o600)

    def run(self, args, timeout):
        """Run a compose subcommand for this project; returns stdout."""
        argv = [*self.command, "-f", self.file_path, *args]
        return self.container.run(argv, cwd=self.dir, timeout=timeout)

    def pull(self, timeout):
        """`pull --quiet`: fetch every image."""
        self.run(["pull", "--quiet"], timeout)

    def up(self, timeout):
        """`up -d`: create and start every service in the background."""
        self.run(["up", "-d"], timeout)

    def running_services(self, timeout=STATUS_TIMEOUT):
        """Names of running services (`ps --services --filter status=running`)."""
        out = self.run(["ps", "--services", "--filter", "status=running"], timeout)
        return [line.strip() for line in out.splitlines() if line.strip()]

    def not_running(self, services, timeout=STATUS_TIMEOUT):
        running = self.running_services(timeout)
        return [s for s in services if s not in running]

    def wait_running(self, services, attempts=10, pause=3):
        """Check up to `attempts` times, `pause` seconds apart, that every
        service in `services` runs."""
        for attempt in range(1, attempts + 1):
            missing = self.not_running(services)
            if not missing:
                return
            if attempt >= attempts:
                raise Backend(f"compose services not running after {attempts} checks: {', '.join(missing)}")
            self.container.pause(pause)
