// n8n under Docker Compose in a Debian 12 LXC.
//
// The flow: container with nesting + keyctl, Docker and docker-compose, the
// compose file from `compose.yml` with the host-generated encryption key,
// pull, up, check the service, probe HTTP.

import * as px from 'proximity';
// Inlined by the build: a recipe has no files at run time.
import composeTemplate from './compose.yml?raw';

const OS_TEMPLATE = 'debian-12';
const PROJECT_DIR = '/opt/n8n';
const SERVICES = ['n8n'];
/** Answers 200 once n8n has started. */
const READY_PATH = '/healthz';
const HEALTH_TIMEOUT = 10;

function settings(ctx) {
  return {
    httpPort: ctx.port('http-port'),
    encryptionKey: ctx.str('encryption-key'),
    image: ctx.str('image'),
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

    const address = c.address();
    px.info('n8n answers; the first visit creates the owner account');
    return new px.AppInfo()
      .withUrl(px.httpUrl(address, s.httpPort))
      .withAddress(address)
      .withPort(s.httpPort)
      .withOutput('compose-file', compose.filePath);
  }

  health(ctx) {
    const port = ctx.port('http-port');
    const c = px.appContainer();
    const compose = c.docker().compose(PROJECT_DIR);
    const services = px.HealthCheck.of('services', () => {
      const missing = compose.notRunning(SERVICES, HEALTH_TIMEOUT);
      if (missing.length > 0) throw new px.Backend(`not running: ${missing.join(', ')}`);
      return SERVICES.join(', ');
    });
    const http = px.HealthCheck.of(
      'http',
      () => `answered ${c.waitHttp(port, READY_PATH, { expectStatus: 200, timeout: HEALTH_TIMEOUT })}`,
    );
    return new px.HealthReport([services, http]);
  }
}

export const lifecycle = px.exportRecipe(new N8n());
