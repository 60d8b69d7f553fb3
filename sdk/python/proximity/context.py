"""What the host hands to every lifecycle export: identity, parameters, target.

Parameter getters raise `InvalidInput` naming the parameter, so a recipe can
let the error through and the operator still learns which input was wrong.
"""

from wit_world.imports import types as wit

from .errors import InvalidInput

_MISSING = object()


class Context:
    """The run's context: parameters (validated by the host against the
    manifest, defaults filled in, secrets generated), resources and target."""

    def __init__(self, raw):
        self.raw = raw
        self._params = dict(raw.params)

    @property
    def app_id(self):
        """Name of the app instance; also the default container hostname."""
        return self.raw.app_id

    @property
    def deployment_id(self):
        return self.raw.deployment_id

    @property
    def recipe_version(self):
        return self.raw.recipe_version

    @property
    def resources(self):
        """`cores`, `memory_mb`, `swap_mb`, `disk_gb` as the operator chose them."""
        return self.raw.resources

    @property
    def target(self):
        """`backend` (`proxmox`, `lxc`, `sim`) and `node` (or None)."""
        return self.raw.target

    def param(self, name, default=_MISSING):
        """The value of a parameter as a plain Python value (str, int or bool).

        Without `default`, a parameter the host did not send is `InvalidInput`.
        """
        value = self._params.get(name)
        if value is None:
            if default is _MISSING:
                raise InvalidInput(f"missing parameter `{name}`")
            return default
        return value.value

    def param_str(self, name, default=_MISSING):
        """A `string`, `secret` or `enum` parameter."""
        return self._typed(name, wit.ParamValue_Text, "text", default)

    def param_int(self, name, default=_MISSING, lo=None, hi=None):
        """An `integer` parameter, optionally checked to lie in `lo..=hi`."""
        value = self._typed(name, wit.ParamValue_Integer, "integer", default)
        if value is not None and ((lo is not None and value < lo) or (hi is not None and value > hi)):
            raise InvalidInput(f"parameter `{name}` is out of range {lo}..={hi}: {value}")
        return value

    def param_port(self, name, default=_MISSING):
        """An `integer` parameter that must be a TCP port."""
        return self.param_int(name, default, 1, 65535)

    def param_bool(self, name, default=_MISSING):
        """A `boolean` parameter."""
        return self._typed(name, wit.ParamValue_Boolean, "boolean", default)

    def param_secs(self, name, default=_MISSING):
        """A non-negative `integer` parameter counting seconds, e.g. a timeout."""
        return self.param_int(name, default, 0, None)

    def _typed(self, name, case, expected, default):
        value = self._params.get(name)
        if value is None:
            if default is _MISSING:
                raise InvalidInput(f"missing parameter `{name}`")
            return default
        if not isinstance(value, case):
            got = {wit.ParamValue_Text: "text", wit.ParamValue_Integer: "integer", wit.ParamValue_Boolean: "boolean"}
            raise InvalidInput(f"parameter `{name}` must be {expected}, got {got.get(type(value), '?')}")
        return value.value
