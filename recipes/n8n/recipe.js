// n8n under Docker Compose in a Debian 12 LXC.
//
// Install: container with nesting + keyctl, Docker and docker-compose, the
// compose file from `compose.yml` with the host-generated encryption key,
// pull, up, check the service, probe HTTP.
//
// Upgrade: the compose file of this recipe version (its pinned image, unless
// the operator chose one) with the app's own key, pull, `up` (n8n migrates
// its database as it starts), the same checks. Uninstall: `compose down`, so
// n8n stops cleanly before the host destroys the container and its volume.

import * as px from 'proximity';
// Inlined by the build: a recipe has no files at run time.
import composeTemplate from './compose.yml?raw';

const OS_TEMPLATE = 'debian-12';
const PROJECT_DIR = '/opt/n8n';
const SERVICES = ['n8n'];
/** Answers 200 once n8n has started. */
const READY_PATH = '/healthz';
const HEALTH_TIMEOUT = 10;
/** The image this recipe version runs unless the `image` parameter names another. */
const PINNED_IMAGE = 'docker.n8n.io/n8nio/n8n:1.80.0';
const DOWN_TIMEOUT = 120;

function settings(ctx) {
  return {
    httpPort: ctx.port('http-port'),
    encryptionKey: ctx.str('encryption-key'),
    image: ctx.str('image', '') || PINNED_IMAGE,
    timezone: ctx.str('timezone'),
    dockerInstallTimeout: ctx.secs('docker-install-timeout-secs'),
    pullTimeout: ctx.secs('pull-timeout-secs'),
    startTimeout: ctx.secs('start-timeout-secs'),
  };
}

function composeFile(s) {
  return px.render(composeTemplate, {
    image: px.yamlString(s.image),
    'http-port': s.httpPort,
    'encryption-key': px.yamlString(s.encryptionKey),
    timezone: px.yamlString(s.timezone),
  });
}

class N8n extends px.Recipe {
  install(ctx) {
    const s = settings(ctx);
    const yaml = composeFile(s);

    px.step('Creating container');
    const c = new px.ContainerSpec(ctx, OS_TEMPLATE).nesting().keyctl().unprivileged().create();

    px.step('Installing Docker');
    const docker = c.installDocker({ timeout: s.dockerInstallTimeout });

    px.step('Writing the compose file');
    const compose = docker.compose(PROJECT_DIR);
    compose.writeFile(yaml);
    console.log(`n8n: compose project in ${PROJECT_DIR}`);

    px.step('Pulling the image');
    compose.pull(s.pullTimeout);

    px.step('Starting n8n');
    compose.up(s.startTimeout);
    compose.waitRunning(SERVICES);

    px.step('Waiting for n8n');
    c.waitPort(s.httpPort, s.startTimeout);
    c.waitHttp(s.httpPort, READY_PATH, { expectStatus: 200, timeout: s.startTimeout });

    px.info('n8n answers; the first visit creates the owner account');
    return appInfo(c, s, compose);
  }

  upgrade(ctx, fromVersion) {
    const s = settings(ctx);
    const yaml = composeFile(s);

    px.step('Checking Docker');
    const c = px.appContainer();
    const docker = c.docker();
    docker.waitReady();

    px.step('Updating n8n');
    const compose = docker.compose(PROJECT_DIR);
    compose.rollOut(yaml, SERVICES, { pull: s.pullTimeout, start: s.startTimeout });

    px.step('Waiting for n8n');
    c.waitPort(s.httpPort, s.startTimeout);
    c.waitHttp(s.httpPort, READY_PATH, { expectStatus: 200, timeout: s.startTimeout });
    px.info(`n8n upgraded from recipe ${fromVersion} to ${ctx.recipeVersion}, image ${s.image}`);
    return appInfo(c, s, compose);
  }

  uninstall() {
    px.step('Stopping n8n');
    px.uninstallAppProject(px.appContainers()[0], PROJECT_DIR, DOWN_TIMEOUT);
  }

  health(ctx) {
    const port = ctx.port('http-port');
    const c = px.appContainer();
    const services = c.docker().compose(PROJECT_DIR).servicesCheck(SERVICES, HEALTH_TIMEOUT);
    const http = px.HealthCheck.of(
      'http',
      () => `answered ${c.waitHttp(port, READY_PATH, { expectStatus: 200, timeout: HEALTH_TIMEOUT })}`,
    );
    return new px.HealthReport([services, http]);
  }
}

function appInfo(c, s, compose) {
  const address = c.address();
  return new px.AppInfo()
    .withUrl(px.httpUrl(address, s.httpPort))
    .withAddress(address)
    .withPort(s.httpPort)
    .withOutput('compose-file', compose.filePath);
}

export const lifecycle = px.exportRecipe(new N8n());
