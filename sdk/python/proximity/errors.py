"""The SDK's exception: one subclass per case of the WIT `error` variant.

A recipe raises (or lets through) a `RecipeError`; the export adapter turns it
into the matching WIT case, so the host records exactly that kind and text.
"""

from componentize_py_types import Err
from wit_world.imports import types as wit


class RecipeError(Exception):
    """Why a capability call or a recipe step failed."""

    #: The case name as the WIT spells it.
    kind = "backend"

    def __init__(self, message):
        super().__init__(message)
        self.message = str(message)

    def context(self, what):
        """The same kind of error with `what: ` put in front of the message."""
        return type(self)(f"{what}: {self.message}")

    def to_wit(self):
        return _TO_WIT[self.kind](self.message)

    def __str__(self):
        return f"{self.kind}: {self.message}"


class Denied(RecipeError):
    """The manifest does not grant the call (or its arguments exceed the grant)."""

    kind = "denied"


class InvalidInput(RecipeError):
    """Malformed or out-of-range arguments, including bad parameters."""

    kind = "invalid-input"


class Timeout(RecipeError):
    """A deadline passed."""

    kind = "timeout"


class NotFound(RecipeError):
    """The container, file, service or command does not exist."""

    kind = "not-found"


class Backend(RecipeError):
    """The infrastructure, or a command in the container, failed."""

    kind = "backend"


_TO_WIT = {
    "denied": wit.Error_Denied,
    "invalid-input": wit.Error_InvalidInput,
    "timeout": wit.Error_Timeout,
    "not-found": wit.Error_NotFound,
    "backend": wit.Error_Backend,
}

_FROM_WIT = {
    wit.Error_Denied: Denied,
    wit.Error_InvalidInput: InvalidInput,
    wit.Error_Timeout: Timeout,
    wit.Error_NotFound: NotFound,
    wit.Error_Backend: Backend,
}


def from_wit(error):
    """The SDK exception for a WIT `error` value."""
    return _FROM_WIT.get(type(error), Backend)(getattr(error, "value", repr(error)))


def call(what, function, *args):
    """Call a generated import; a WIT error becomes a `RecipeError` prefixed with `what`."""
    try:
        return function(*args)
    except Err as err:
        error = from_wit(err.value)
        raise (error.context(what) if what else error) from None
