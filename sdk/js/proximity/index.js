// Write Proximity recipes in JavaScript.
//
// A recipe is a WebAssembly component (built by componentize-js) that
// installs one app by calling the host's capabilities. This module wraps the
// bindings componentize-js generates for the `proximity:recipe` world:
//
//     import * as px from 'proximity';
//
//     class Hello extends px.Recipe {
//       install(ctx) {
//         px.step('Creating container');
//         const c = new px.ContainerSpec(ctx, 'debian-12').create();
//         c.installPackages(['nginx']);
//         c.waitHttp(80, '/', { expectStatus: 200, timeout: 60 });
//         const address = c.address();
//         return new px.AppInfo({ url: px.httpUrl(address, 80), address, ports: [80] });
//       }
//     }
//
//     export const lifecycle = px.exportRecipe(new Hello());
//
// Module map: context (parameters), container (lxc, exec, files, probe,
// packages), docker (engine + compose), progress (steps, log lines), template
// (assets), proxy, report (what exports return), recipe (base class and
// export), errors.

export * as proxy from './proxy.js';
export * as progress from './progress.js';
export { step, debug, info, warn, error } from './progress.js';
export { Context } from './context.js';
export {
  Container,
  ContainerSpec,
  ExecOutput,
  appContainer,
  appContainers,
  commandFailed,
  osFamilyFromRelease,
} from './container.js';
export { Compose, Docker, installDocker, uninstallAppProject, yamlString } from './docker.js';
export { Backend, Denied, InvalidInput, NotFound, RecipeError, Timeout } from './errors.js';
export { Recipe, exportRecipe } from './recipe.js';
export { AppInfo, HealthCheck, HealthReport, httpUrl } from './report.js';
export { render } from './template.js';
