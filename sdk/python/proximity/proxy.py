"""Commands for apps the recipe cannot reach directly (`proxy` grant), sent
through an SSH forced-command proxy. `command` must be listed for `service`
in the manifest's `[[grants.proxy]]`."""

from wit_world.imports import proxy as wit

from .container import ExecOutput, command_failed
from .errors import call
from .text import display_argv


def exec(service, command, args=()):
    """Run `command` with `args` through `service`'s proxy; its output whatever its status."""
    args = [str(a) for a in args]
    out = call(f"proxy `{service}`: `{display_argv([command, *args])}`", wit.proxy_exec, service, command, args)
    return ExecOutput(out.status, out.stdout, out.stderr)


def run(service, command, args=()):
    """`exec`, raising `Backend` unless the command exits 0; returns its stdout."""
    output = exec(service, command, args)
    if not output.ok:
        raise command_failed(f"proxy `{service}`: {display_argv([command, *map(str, args)])}", output)
    return output.stdout_text
