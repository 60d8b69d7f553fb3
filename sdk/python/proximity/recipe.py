"""The `Recipe` base class and `export`, which turns it into the component's
`lifecycle` export."""

import traceback

from componentize_py_types import Err
from wit_world import exports
from wit_world.imports import types as wit

from . import progress
from .context import Context
from .errors import Backend, InvalidInput, RecipeError
from .report import AppInfo, HealthReport


class Recipe:
    """One catalog app's lifecycle. Subclass it, override `install` (and the
    others where the app needs them) and export it with `export`."""

    def install(self, ctx):
        """Create and configure the app's containers; return an `AppInfo`."""
        raise InvalidInput("install is not implemented")

    def uninstall(self, ctx):
        """Undo what `install` did outside the containers. The host destroys the
        app's containers itself, so most recipes have nothing to do here."""

    def upgrade(self, ctx, from_version):
        raise InvalidInput("upgrade not supported")

    def health(self, ctx):
        """Probe the running app; return a `HealthReport`."""
        return HealthReport()


def _guard(action, run):
    """Run one export: SDK errors keep their kind, anything else is `backend`
    with its traceback in the job's log."""
    try:
        return run()
    except RecipeError as err:
        raise Err(err.to_wit()) from None
    except Err:
        raise
    except Exception as err:  # noqa: BLE001 - the host must get an error, not a trap
        progress.error(f"recipe {action} raised:\n{traceback.format_exc()}")
        raise Err(Backend(f"{action}: {type(err).__name__}: {err}").to_wit()) from None


def export(recipe_class):
    """The class componentize-py exports as `lifecycle`. In the recipe's module:

        Lifecycle = proximity.export(MyRecipe)
    """
    recipe = recipe_class()

    class Lifecycle(exports.Lifecycle):
        def install(self, ctx: wit.Context) -> wit.AppInfo:
            return _guard("install", lambda: _app_info(recipe.install(Context(ctx))))

        def uninstall(self, ctx: wit.Context) -> None:
            _guard("uninstall", lambda: recipe.uninstall(Context(ctx)))

        def upgrade(self, ctx: wit.Context, from_version: str) -> wit.AppInfo:
            return _guard("upgrade", lambda: _app_info(recipe.upgrade(Context(ctx), from_version)))

        def health(self, ctx: wit.Context) -> wit.HealthReport:
            return _guard("health", lambda: _health(recipe.health(Context(ctx))))

    return Lifecycle


def _app_info(info):
    if isinstance(info, AppInfo):
        return info.to_wit()
    if info is None:
        return AppInfo().to_wit()
    return info


def _health(report):
    return report.to_wit() if isinstance(report, HealthReport) else report
