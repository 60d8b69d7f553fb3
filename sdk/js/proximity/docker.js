// Docker inside a container: installing the engine and compose, waiting for
// the daemon, and one compose project's file, pull, up and status.

import { Backend, RecipeError } from './errors.js';
import { warn } from './progress.js';
import { HealthCheck } from './report.js';

/** `docker info` attempts before the daemon counts as not starting, and the pause between them. */
const READY_ATTEMPTS = 30;
const READY_PAUSE = 2;
const INFO_TIMEOUT = 30;
/** The file name `Compose.writeFile` uses inside the project directory. */
export const COMPOSE_FILE_NAME = 'docker-compose.yml';
/** Bound on one `ps` call. */
const STATUS_TIMEOUT = 60;
/** Seconds compose gives a service to stop on `down` before killing it. */
export const STOP_GRACE_SECS = 30;

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

  /** Run a compose subcommand for this project; returns stdout. Options as `Container.run` (the cwd is the project's). */
  run(args, timeout, options = {}) {
    return this.container.run([...this.command, '-f', this.filePath, ...args], { ...options, cwd: this.dir, timeout });
  }

  /**
   * `up -d --remove-orphans`: bring the project to what its file says now,
   * recreating services whose image or settings changed.
   */
  upChanged(timeout) {
    this.run(['up', '-d', '--remove-orphans'], timeout);
  }

  /** `down --remove-orphans --timeout 30`, with `--volumes` when `volumes` is true. */
  down({ volumes = false, timeout } = {}) {
    const args = ['down', '--remove-orphans', '--timeout', String(STOP_GRACE_SECS)];
    if (volumes) args.push('--volumes');
    this.run(args, timeout);
  }

  /**
   * Run `argv` in the running `service` without a terminal (`exec -T [--user U]`);
   * returns stdout. Secrets go in `stdin`, not in `argv`.
   */
  exec(service, argv, { user, stdin, env, timeout } = {}) {
    const args = ['exec', '-T'];
    if (user) args.push('--user', user);
    return this.run([...args, service, ...argv.map(String)], timeout, { stdin, env });
  }

  /**
   * An upgrade's whole compose part: write `yaml`, pull, `upChanged`, and
   * wait until `services` run. Timeouts in seconds.
   */
  rollOut(yaml, services, { pull = 600, start = 300, attempts = 10, pause = 3 } = {}) {
    this.writeFile(yaml);
    try {
      this.pull(pull);
    } catch (e) {
      if (e instanceof RecipeError) throw e.context('pulling images');
      throw e;
    }
    try {
      this.upChanged(start);
    } catch (e) {
      if (e instanceof RecipeError) throw e.context('starting the services');
      throw e;
    }
    this.waitRunning(services, { attempts, pause });
  }

  /**
   * Take the project down before the host destroys its container: `down`
   * without `--volumes` (they live on the disk that goes), so services stop
   * cleanly. A container that no longer answers is no reason to keep the
   * app: the failure is a warning.
   */
  stopForRemoval(timeout = 120) {
    try {
      this.down({ timeout });
    } catch (e) {
      if (!(e instanceof RecipeError)) throw e;
      warn(`could not take the compose project in ${this.dir} down: ${e.message}`);
    }
  }

  /** A health check named `services`: passes when all of `services` run. */
  servicesCheck(services, timeout = STATUS_TIMEOUT) {
    return HealthCheck.of('services', () => {
      const missing = this.notRunning(services, timeout);
      if (missing.length > 0) throw new Backend(`not running: ${missing.join(', ')}`);
      return services.join(', ');
    });
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

/**
 * What a compose app's `uninstall` does before the host destroys its
 * containers: the project in `projectDir` of the app's first container is
 * taken down with `Compose.stopForRemoval`. Never fails for want of a
 * running container or Docker: those are warnings.
 */
export function uninstallAppProject(container, projectDir, timeout = 120) {
  if (!container) {
    warn('this app has no container left: nothing to take down');
    return;
  }
  let compose;
  try {
    compose = container.docker().compose(projectDir);
  } catch (e) {
    if (!(e instanceof RecipeError)) throw e;
    warn(`could not reach Docker in container ${container.id}: ${e.message}`);
    return;
  }
  compose.stopForRemoval(timeout);
}
