// Docker inside a container: installing the engine and compose, waiting for
// the daemon, and one compose project's file, pull, up and status.

import { Backend, RecipeError } from './errors.js';

/** `docker info` attempts before the daemon counts as not starting, and the pause between them. */
const READY_ATTEMPTS = 30;
const READY_PAUSE = 2;
const INFO_TIMEOUT = 30;
/** The file name `Compose.writeFile` uses inside the project directory. */
export const COMPOSE_FILE_NAME = 'docker-compose.yml';
/** Bound on one `ps` call. */
const STATUS_TIMEOUT = 60;

/**
 * `value` as a double-quoted YAML string that compose takes literally: YAML
 * escapes for backslash, `"` and control characters, and `$` doubled so
 * compose does not interpolate it. Use it for every operator-supplied value
 * (passwords above all) put into a compose file.
 */
export function yamlString(value) {
  let out = '"';
  for (const c of String(value)) {
    const code = c.codePointAt(0);
    if (c === '\\') out += '\\\\';
    else if (c === '"') out += '\\"';
    else if (c === '$') out += '$$';
    else if (c === '\n') out += '\\n';
    else if (c === '\t') out += '\\t';
    else if (code < 0x20 || (code >= 0x7f && code < 0xa0)) out += `\\u${code.toString(16).padStart(4, '0')}`;
    else out += c;
  }
  return `${out}"`;
}

function runStep(container, argv, timeout, what) {
  try {
    return container.run(argv, { timeout });
  } catch (e) {
    if (e instanceof RecipeError) throw e.context(what);
    throw e;
  }
}

/**
 * Install Docker and compose, enable and start the daemon, and wait until
 * `docker info` answers. Each package or service command gets `timeout` seconds.
 *
 * Debian: `docker.io` + `docker-compose` + `ca-certificates`, `systemctl
 * enable --now docker`. Alpine: `docker` + `docker-cli-compose`, OpenRC.
 */
export function installDocker(container, { timeout = 600 } = {}) {
  if (container.osFamily() === 'alpine') {
    container.installPackages(['docker', 'docker-cli-compose'], { timeout });
    runStep(container, ['rc-update', 'add', 'docker', 'default'], timeout, 'enabling the docker service');
    runStep(container, ['service', 'docker', 'start'], timeout, 'starting the docker service');
  } else {
    container.installPackages(['docker.io', 'docker-compose', 'ca-certificates'], { timeout });
    runStep(container, ['systemctl', 'enable', '--now', 'docker'], timeout, 'starting the docker service');
  }
  const docker = new Docker(container);
  docker.waitReady();
  return docker;
}

/** Docker in one container, with the compose flavour its distribution ships. */
export class Docker {
  constructor(container) {
    this.container = container;
  }

  /** Wait until the daemon answers `docker info`, pausing between attempts. */
  waitReady({ attempts = READY_ATTEMPTS, pause = READY_PAUSE } = {}) {
    for (let attempt = 1; ; attempt++) {
      try {
        this.container.run(['docker', 'info'], { timeout: INFO_TIMEOUT });
        return;
      } catch (e) {
        if (!(e instanceof RecipeError)) throw e;
        if (attempt >= attempts) throw e.context('the docker daemon did not become ready');
        this.container.pause(pause);
      }
    }
  }

  /** A compose project whose file lives in `projectDir`. */
  compose(projectDir) {
    const plugin = this.container.osFamily() === 'alpine';
    return new Compose(this.container, projectDir, plugin ? ['docker', 'compose'] : ['docker-compose']);
  }
}

/**
 * One compose project. Every command passes `-f DIR/docker-compose.yml` and
 * runs in DIR, so the project name is the directory's name.
 */
export class Compose {
  constructor(container, projectDir, command) {
    this.container = container;
    this.dir = projectDir.replace(/\/+$/, '') || '/';
    this.command = [...command];
  }

  get filePath() {
    return `${this.dir}/${COMPOSE_FILE_NAME}`;
  }

  /** Create the project directory and write the compose file, mode 0600 (it carries secrets). */
  writeFile(yaml) {
    runStep(this.container, ['mkdir', '-p', this.dir], undefined, 'creating the compose project directory');
    this.container.writeFile(this.filePath, yaml, { mode: 0o600 });
  }

  /** Run a compose subcommand for this project; returns stdout. */
  run(args, timeout) {
    return this.container.run([...this.command, '-f', this.filePath, ...args], { cwd: this.dir, timeout });
  }

  /** `pull --quiet`: fetch every image. */
  pull(timeout) {
    this.run(['pull', '--quiet'], timeout);
  }

  /** `up -d`: create and start every service in the background. */
  up(timeout) {
    this.run(['up', '-d'], timeout);
  }

  /** Names of running services (`ps --services --filter status=running`). */
  runningServices(timeout = STATUS_TIMEOUT) {
    return this.run(['ps', '--services', '--filter', 'status=running'], timeout)
      .split('\n')
      .map((l) => l.trim())
      .filter(Boolean);
  }

  notRunning(services, timeout = STATUS_TIMEOUT) {
    const running = this.runningServices(timeout);
    return services.filter((s) => !running.includes(s));
  }

  /** Check up to `attempts` times, `pause` seconds apart, that every service in `services` runs. */
  waitRunning(services, { attempts = 10, pause = 3 } = {}) {
    for (let attempt = 1; ; attempt++) {
      const missing = this.notRunning(services);
      if (missing.length === 0) return;
      if (attempt >= attempts) {
        throw new Backend(`compose services not running after ${attempts} checks: ${missing.join(', ')}`);
      }
      this.container.pause(pause);
    }
  }
}
