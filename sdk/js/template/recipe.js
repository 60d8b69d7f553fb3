// {{name}}: nginx on Debian 12 serving one page. Replace with your app's steps.

import * as px from 'proximity';
// Inlined by the build (`?raw`): a recipe has no files at run time.
import page from './index.html?raw';

class App extends px.Recipe {
  install(ctx) {
    const html = px.render(page, { greeting: ctx.str('greeting') });

    px.step('Creating container');
    const c = new px.ContainerSpec(ctx, 'debian-12').create();

    px.step('Installing nginx');
    c.installPackages(['nginx']);
    c.writeFile('/var/www/html/index.html', html, { mode: 0o644 });
    console.log('page written'); // stdout lands in the job's log as an info line

    px.step('Waiting for nginx');
    c.waitHttp(80, '/', { expectStatus: 200, timeout: 60 });

    const address = c.address();
    return new px.AppInfo({ url: px.httpUrl(address, 80), address, ports: [80] });
  }

  health(_ctx) {
    const c = px.appContainer();
    return new px.HealthReport([px.HealthCheck.of('http', () => `answered ${c.waitHttp(80, '/', { expectStatus: 200, timeout: 10 })}`)]);
  }
}

// The component exports the WIT interface `lifecycle` under this name.
export const lifecycle = px.exportRecipe(new App());
