"""Containers (`lxc` grant) and everything done in one: commands (`exec`),
files (`files`), probes (`probe`) and OS packages.

Every method raises a `RecipeError` whose message says which call failed.
"""

from wit_world.imports import exec as wit_exec
from wit_world.imports import files as wit_files
from wit_world.imports import lxc as wit_lxc
from wit_world.imports import probe as wit_probe

from .errors import Backend, NotFound, call
from .text import as_bytes, display_argv, seconds_to_ms, tail_lines

#: The tag every Proximity container carries, so operators can find them.
PROXIMITY_TAG = "proximity"
#: Where the SDK learns the distribution.
OS_RELEASE_PATH = "/etc/os-release"
#: How long one package-manager command may take unless the recipe says otherwise.
DEFAULT_PACKAGE_TIMEOUT = 600
#: How many trailing lines of output a failed command's error keeps.
ERROR_TAIL_LINES = 20


class ExecOutput:
    """What a finished command left behind: `status`, `stdout`, `stderr` (bytes)."""

    def __init__(self, status, stdout, stderr):
        self.status = status
        self.stdout = bytes(stdout)
        self.stderr = bytes(stderr)

    @property
    def ok(self):
        return self.status == 0

    @property
    def stdout_text(self):
        return self.stdout.decode("utf-8", "replace")

    @property
    def stderr_text(self):
        return self.stderr.decode("utf-8", "replace")


def command_failed(command, output):
    """The `Backend` error for a command that exited non-zero: the command, its
    status and the tail of its stderr (or of its stdout when stderr is empty)."""
    stream, text = "stderr", output.stderr_text
    if not text.strip():
        stream, text = "stdout", output.stdout_text
    tail = tail_lines(text, ERROR_TAIL_LINES)
    if not tail:
        return Backend(f"`{command}` exited with status {output.status}")
    return Backend(f"`{command}` exited with status {output.status}; {stream}:\n{tail}")


class Container:
    """A container this run created, or one the host handed over for an
    existing app. Dropping it only forgets the handle; the container stays."""

    def __init__(self, raw):
        self.raw = raw
        self._os_family = None

    @property
    def id(self):
        """The backend's id for the container (a VMID on Proxmox)."""
        return self.raw.id()

    @property
    def hostname(self):
        return self.raw.hostname()

    def address(self):
        """The container's IPv4 address; the host waits a bounded time for one."""
        return call("container address", self.raw.address)

    def start(self):
        call("starting the container", self.raw.start)

    def stop(self):
        call("stopping the container", self.raw.stop)

    # -- exec ---------------------------------------------------------------

    def exec(self, argv, env=None, cwd=None, stdin=None, timeout=None):
        """Run `argv` and return its `ExecOutput` whatever its exit status.

        `env` is a dict, `stdin` text or bytes, `timeout` seconds (the run's
        deadline applies as well).
        """
        argv = [str(a) for a in argv]
        options = wit_exec.ExecOptions(
            env=[(str(k), str(v)) for k, v in (env or {}).items()],
            cwd=cwd,
            stdin=None if stdin is None else as_bytes(stdin),
            timeout_ms=seconds_to_ms(timeout),
        )
        out = call(f"`{display_argv(argv)}`", wit_exec.container_exec, self.raw, argv, options)
        return ExecOutput(out.status, out.stdout, out.stderr)

    def run(self, argv, env=None, cwd=None, stdin=None, timeout=None):
        """Run `argv`, raise `Backend` with its stderr unless it exits 0, and
        return its stdout as text."""
        output = self.exec(argv, env=env, cwd=cwd, stdin=stdin, timeout=timeout)
        if not output.ok:
            raise command_failed(display_argv([str(a) for a in argv]), output)
        return output.stdout_text

    def pause(self, seconds):
        """Wait inside the container (`sleep`), for pauses between retries."""
        self.run(["sleep", str(max(1, int(seconds)))])

    # -- files --------------------------------------------------------------

    def write_file(self, path, contents, mode=0o644, owner=None, group=None):
        """Write `contents` (text or bytes) to the absolute `path`; its parent must exist."""
        options = wit_files.FileOptions(mode=mode, owner=owner, group=group)
        call(f"writing {path}", wit_files.write_file, self.raw, path, as_bytes(contents), options)

    def read_file(self, path):
        """The bytes of `path`."""
        return bytes(call(f"reading {path}", wit_files.read_file, self.raw, path))

    def read_text(self, path):
        return self.read_file(path).decode("utf-8", "replace")

    # -- probes -------------------------------------------------------------

    def wait_port(self, port, timeout):
        """Wait until TCP `port` accepts connections, at most `timeout` seconds."""
        call(f"waiting for TCP port {port}", wit_probe.wait_tcp, self.raw, port, seconds_to_ms(timeout))

    def wait_http(self, port, path="/", expect_status=None, timeout=60):
        """Wait for an HTTP answer on `port` and `path`, at most `timeout`
        seconds, and return its status. With `expect_status`, other codes keep waiting."""
        return call(
            f"waiting for HTTP on port {port} {path}",
            wit_probe.wait_http,
            self.raw,
            port,
            path,
            expect_status,
            seconds_to_ms(timeout),
        )

    # -- operating system ---------------------------------------------------

    def os_family(self):
        """`"debian"` or `"alpine"`, read from /etc/os-release once."""
        if self._os_family is None:
            text = self.read_text(OS_RELEASE_PATH)
            family = os_family_from_release(text)
            if family is None:
                raise Backend(f"unsupported distribution (in {OS_RELEASE_PATH}: {text.strip()[:200]!r})")
            self._os_family = family
        return self._os_family

    def install_packages(self, packages, timeout=DEFAULT_PACKAGE_TIMEOUT):
        """Install OS packages. Debian: `apt-get update`, then `apt-get install -y
        --no-install-recommends …` with `DEBIAN_FRONTEND=noninteractive`.
        Alpine: `apk add --no-cache …`. Each command gets `timeout` seconds."""
        packages = [str(p) for p in packages]
        what = "installing " + " ".join(packages)
        try:
            if self.os_family() == "alpine":
                self.run(["apk", "add", "--no-cache", *packages], timeout=timeout)
            else:
                env = {"DEBIAN_FRONTEND": "noninteractive"}
                self.run(["apt-get", "update"], env=env, timeout=timeout)
                self.run(["apt-get", "install", "-y", "--no-install-recommends", *packages], env=env, timeout=timeout)
        except Backend as err:
            raise err.context(what) from None

    def upgrade_packages(self, packages, timeout=DEFAULT_PACKAGE_TIMEOUT):
        """Upgrade installed OS packages to the newest the distribution has,
        installing nothing new. Debian: `apt-get update -q`, then `apt-get
        install -y -q --only-upgrade` keeping configuration files the recipe
        changed (`--force-confdef`, `--force-confold`: no question from dpkg
        stops the run). Alpine: `apk upgrade --no-cache …`. Each command gets
        `timeout` seconds."""
        packages = [str(p) for p in packages]
        what = "upgrading " + " ".join(packages)
        try:
            if self.os_family() == "alpine":
                self.run(["apk", "upgrade", "--no-cache", *packages], timeout=timeout)
            else:
                env = {"DEBIAN_FRONTEND": "noninteractive"}
                self.run(["apt-get", "update", "-q"], env=env, timeout=timeout)
                self.run(
                    [
                        "apt-get",
                        "install",
                        "-y",
                        "-q",
                        "--only-upgrade",
                        "-o",
                        "Dpkg::Options::=--force-confdef",
                        "-o",
                        "Dpkg::Options::=--force-confold",
                        *packages,
                    ],
                    env=env,
                    timeout=timeout,
                )
        except Backend as err:
            raise err.context(what) from None

    def install_docker(self, timeout=DEFAULT_PACKAGE_TIMEOUT):
        """Install Docker and compose, start the daemon and wait until it answers."""
        from .docker import install_docker

        return install_docker(self, timeout)

    def docker(self):
        """Docker that is already installed (health, upgrade)."""
        from .docker import Docker

        return Docker(self)


def os_family_from_release(text):
    """The family named by an os-release file's `ID`, else by its `ID_LIKE`."""
    values = {}
    for line in text.splitlines():
        key, sep, value = line.strip().partition("=")
        if sep:
            values[key] = value.strip().strip("\"'")
    for name in [values.get("ID", ""), *values.get("ID_LIKE", "").split()]:
        if name in ("debian", "alpine"):
            return name
    return None


class ContainerSpec:
    """Builder for an `lxc-spec` with defaults taken from the context: hostname =
    app id, resources as the operator chose, DHCP on the default bridge,
    unprivileged, no features, tagged `proximity`."""

    def __init__(self, ctx, os_template):
        r = ctx.resources
        self.spec = wit_lxc.LxcSpec(
            hostname=ctx.app_id,
            os_template=os_template,
            cores=r.cores,
            memory_mb=r.memory_mb,
            swap_mb=r.swap_mb,
            disk_gb=r.disk_gb,
            features=wit_lxc.Features(nesting=False, keyctl=False, fuse=False),
            unprivileged=True,
            network=wit_lxc.Network(bridge=None, ip=wit_lxc.IpConfig_Dhcp()),
            tags=[PROXIMITY_TAG],
        )

    def nesting(self, on=True):
        """Allow nested containers (needed for Docker in LXC)."""
        self.spec.features.nesting = on
        return self

    def keyctl(self, on=True):
        """Allow keyctl (Docker in an unprivileged LXC; only root@pam may set it on Proxmox)."""
        self.spec.features.keyctl = on
        return self

    def fuse(self, on=True):
        self.spec.features.fuse = on
        return self

    def unprivileged(self, on=True):
        self.spec.unprivileged = on
        return self

    def hostname(self, name):
        self.spec.hostname = name
        return self

    def bridge(self, bridge):
        self.spec.network.bridge = bridge
        return self

    def static_ip(self, cidr, gateway=None):
        self.spec.network.ip = wit_lxc.IpConfig_Static((cidr, gateway))
        return self

    def tag(self, tag):
        self.spec.tags.append(tag)
        return self

    def create(self):
        """Create the container and start it."""
        return Container(call("creating the container", wit_lxc.create_lxc, self.spec))


def app_containers():
    """The containers of the existing app this run acts on (uninstall, upgrade, health)."""
    return [Container(raw) for raw in wit_lxc.app_containers()]


def app_container():
    """The first container of the existing app, or `NotFound`."""
    containers = app_containers()
    if not containers:
        raise NotFound("this app has no container")
    return containers[0]
