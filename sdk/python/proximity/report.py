"""What lifecycle exports return: `AppInfo` and `HealthReport`."""

from wit_world.imports import types as wit


class AppInfo:
    """Where the installed app runs. Chain the `with_*` methods."""

    def __init__(self, url=None, address=None, ports=(), outputs=()):
        self.url = url
        self.address = address
        self.ports = list(ports)
        self.outputs = list(outputs)

    def with_url(self, url):
        """Where a person reaches the app, e.g. `http://10.0.3.12/`."""
        self.url = url
        return self

    def with_address(self, address):
        self.address = address
        return self

    def with_port(self, port):
        self.ports.append(int(port))
        return self

    def with_output(self, name, value):
        """A named value for the operator. Never a secret: those stay in parameters."""
        self.outputs.append((str(name), str(value)))
        return self

    def to_wit(self):
        return wit.AppInfo(url=self.url, address=self.address, ports=self.ports, outputs=self.outputs)


def http_url(address, port, path="/"):
    """`http://ADDRESS/` on port 80, else `http://ADDRESS:PORT/`."""
    return f"http://{address}{path}" if port == 80 else f"http://{address}:{port}{path}"


class HealthCheck:
    def __init__(self, name, ok, detail=""):
        self.name = name
        self.ok = bool(ok)
        self.detail = str(detail)

    @classmethod
    def passed(cls, name, detail=""):
        return cls(name, True, detail)

    @classmethod
    def failed(cls, name, detail=""):
        return cls(name, False, detail)

    @classmethod
    def of(cls, name, probe, detail="ok"):
        """Run `probe()`: passes with `detail` (or what `probe` returned, when it
        returns a string), fails with the error's text."""
        try:
            result = probe()
        except Exception as err:  # noqa: BLE001 - a failed probe is a failed check
            return cls.failed(name, str(err))
        return cls.passed(name, result if isinstance(result, str) else detail)


class HealthReport:
    """Healthy exactly when every check passed."""

    def __init__(self, checks=()):
        self.checks = list(checks)

    @property
    def healthy(self):
        return all(c.ok for c in self.checks)

    def to_wit(self):
        checks = [wit.HealthCheck(name=c.name, ok=c.ok, detail=c.detail) for c in self.checks]
        return wit.HealthReport(healthy=self.healthy, checks=checks)
