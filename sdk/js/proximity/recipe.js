// The Recipe base class and `exportRecipe`, which turns it into the
// component's `lifecycle` export.

import { Context } from './context.js';
import { Backend, InvalidInput, RecipeError } from './errors.js';
import * as progress from './progress.js';
import { AppInfo, HealthReport } from './report.js';

/**
 * One catalog app's lifecycle. Extend it, override `install` (and the others
 * where the app needs them) and export it:
 *
 *     export const lifecycle = exportRecipe(new MyRecipe());
 */
export class Recipe {
  /** Create and configure the app's containers; return an AppInfo. */
  install(_ctx) {
    throw new InvalidInput('install is not implemented');
  }

  /**
   * Undo what `install` did outside the containers. The host destroys the
   * app's containers itself, so most recipes have nothing to do here.
   */
  uninstall(_ctx) {}

  upgrade(_ctx, _fromVersion) {
    throw new InvalidInput('upgrade not supported');
  }

  /** Probe the running app; return a HealthReport. */
  health(_ctx) {
    return new HealthReport();
  }
}

/**
 * Run one export. SDK errors keep their kind; anything else is `backend`,
 * with its stack in the job's log. The bindings return a thrown value's
 * `payload` as the export's error.
 */
function guard(action, run) {
  try {
    return run();
  } catch (e) {
    if (e instanceof RecipeError) throw { payload: e.toWit() };
    progress.error(`recipe ${action} threw: ${e?.stack ?? e}`);
    const what = e instanceof Error ? `${e.name}: ${e.message}` : String(e);
    throw { payload: new Backend(`${action}: ${what}`).toWit() };
  }
}

/** The object to export as `lifecycle`. */
export function exportRecipe(recipe) {
  return {
    install(ctx) {
      return guard('install', () => appInfo(recipe.install(new Context(ctx))));
    },
    uninstall(ctx) {
      guard('uninstall', () => {
        recipe.uninstall(new Context(ctx));
      });
    },
    upgrade(ctx, fromVersion) {
      return guard('upgrade', () => appInfo(recipe.upgrade(new Context(ctx), fromVersion)));
    },
    health(ctx) {
      return guard('health', () => {
        const report = recipe.health(new Context(ctx));
        return report instanceof HealthReport ? report.toWit() : report;
      });
    },
  };
}

function appInfo(info) {
  if (info instanceof AppInfo) return info.toWit();
  return info ?? new AppInfo().toWit();
}
