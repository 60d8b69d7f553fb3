// Containers (`lxc` grant) and everything done in one: commands (`exec`),
// files (`files`), probes (`probe`) and OS packages.
//
// Every method throws a RecipeError whose message says which call failed.

import { containerExec } from 'proximity:recipe/exec@0.1.0';
import { readFile, writeFile } from 'proximity:recipe/files@0.1.0';
import { appContainers as witAppContainers, createLxc } from 'proximity:recipe/lxc@0.1.0';
import { waitHttp, waitTcp } from 'proximity:recipe/probe@0.1.0';

import { Docker, installDocker } from './docker.js';
import { Backend, NotFound, call } from './errors.js';
import { asBytes, asText, displayArgv, secondsToMs, tailLines } from './text.js';

/** The tag every Proximity container carries, so operators can find them. */
export const PROXIMITY_TAG = 'proximity';
/** Where the SDK learns the distribution. */
export const OS_RELEASE_PATH = '/etc/os-release';
/** Seconds one package-manager command may take unless the recipe says otherwise. */
export const DEFAULT_PACKAGE_TIMEOUT = 600;
/** How many trailing lines of output a failed command's error keeps. */
const ERROR_TAIL_LINES = 20;

/** What a finished command left behind. */
export class ExecOutput {
  constructor(status, stdout, stderr) {
    this.status = status;
    this.stdout = stdout;
    this.stderr = stderr;
  }

  get ok() {
    return this.status === 0;
  }

  get stdoutText() {
    return asText(this.stdout);
  }

  get stderrText() {
    return asText(this.stderr);
  }
}

/**
 * The Backend error for a command that exited non-zero: the command, its
 * status and the tail of its stderr (or of its stdout when stderr is empty).
 */
export function commandFailed(command, output) {
  let stream = 'stderr';
  let text = output.stderrText;
  if (!text.trim()) {
    stream = 'stdout';
    text = output.stdoutText;
  }
  const tail = tailLines(text, ERROR_TAIL_LINES);
  if (!tail) return new Backend(`\`${command}\` exited with status ${output.status}`);
  return new Backend(`\`${command}\` exited with status ${output.status}; ${stream}:\n${tail}`);
}

/**
 * A container this run created, or one the host handed over for an existing
 * app. Dropping it only forgets the handle; the container stays.
 */
export class Container {
  #osFamily;

  constructor(raw) {
    this.raw = raw;
  }

  /** The backend's id for the container (a VMID on Proxmox). */
  get id() {
    return this.raw.id();
  }

  get hostname() {
    return this.raw.hostname();
  }

  /** The container's IPv4 address; the host waits a bounded time for one. */
  address() {
    return call('container address', () => this.raw.address());
  }

  start() {
    call('starting the container', () => this.raw.start());
  }

  stop() {
    call('stopping the container', () => this.raw.stop());
  }

  /**
   * Run `argv` and return its ExecOutput whatever its exit status.
   * Options: `env` (object), `cwd`, `stdin` (text or bytes), `timeout` (seconds).
   */
  exec(argv, { env = {}, cwd, stdin, timeout } = {}) {
    const args = argv.map(String);
    const options = {
      env: Object.entries(env).map(([k, v]) => [String(k), String(v)]),
      cwd,
      stdin: stdin === undefined ? undefined : asBytes(stdin),
      timeoutMs: secondsToMs(timeout),
    };
    const out = call(`\`${displayArgv(args)}\``, containerExec, this.raw, args, options);
    return new ExecOutput(out.status, out.stdout, out.stderr);
  }

  /** Run `argv`, throw Backend with its stderr unless it exits 0; returns stdout as text. */
  run(argv, options = {}) {
    const output = this.exec(argv, options);
    if (!output.ok) throw commandFailed(displayArgv(argv.map(String)), output);
    return output.stdoutText;
  }

  /** Wait inside the container (`sleep`), for pauses between retries. */
  pause(seconds) {
    this.run(['sleep', String(Math.max(1, Math.floor(seconds)))]);
  }

  /** Write `contents` (text or bytes) to the absolute `path`; its parent must exist. */
  writeFile(path, contents, { mode = 0o644, owner, group } = {}) {
    call(`writing ${path}`, writeFile, this.raw, path, asBytes(contents), { mode, owner, group });
  }

  /** The bytes of `path`. */
  readFile(path) {
    return call(`reading ${path}`, readFile, this.raw, path);
  }

  readText(path) {
    return asText(this.readFile(path));
  }

  /** Wait until TCP `port` accepts connections, at most `timeout` seconds. */
  waitPort(port, timeout) {
    call(`waiting for TCP port ${port}`, waitTcp, this.raw, port, secondsToMs(timeout));
  }

  /**
   * Wait for an HTTP answer on `port` and `path`, at most `timeout` seconds,
   * and return its status. With `expectStatus`, other codes keep waiting.
   */
  waitHttp(port, path = '/', { expectStatus, timeout = 60 } = {}) {
    return call(
      `waiting for HTTP on port ${port} ${path}`,
      waitHttp,
      this.raw,
      port,
      path,
      expectStatus,
      secondsToMs(timeout),
    );
  }

  /** `"debian"` or `"alpine"`, read from /etc/os-release once. */
  osFamily() {
    if (this.#osFamily === undefined) {
      const text = this.readText(OS_RELEASE_PATH);
      const family = osFamilyFromRelease(text);
      if (!family) throw new Backend(`unsupported distribution (in ${OS_RELEASE_PATH}: ${text.trim().slice(0, 200)})`);
      this.#osFamily = family;
    }
    return this.#osFamily;
  }

  /**
   * Install OS packages. Debian: `apt-get update`, then `apt-get install -y
   * --no-install-recommends …` with DEBIAN_FRONTEND=noninteractive. Alpine:
   * `apk add --no-cache …`. Each command gets `timeout` seconds.
   */
  installPackages(packages, { timeout = DEFAULT_PACKAGE_TIMEOUT } = {}) {
    const names = packages.map(String);
    try {
      if (this.osFamily() === 'alpine') {
        this.run(['apk', 'add', '--no-cache', ...names], { timeout });
      } else {
        const env = { DEBIAN_FRONTEND: 'noninteractive' };
        this.run(['apt-get', 'update'], { env, timeout });
        this.run(['apt-get', 'install', '-y', '--no-install-recommends', ...names], { env, timeout });
      }
    } catch (e) {
      if (e instanceof Backend) throw e.context(`installing ${names.join(' ')}`);
      throw e;
    }
  }

  /** Install Docker and compose, start the daemon and wait until it answers. */
  installDocker(options = {}) {
    return installDocker(this, options);
  }

  /** Docker that is already installed (health, upgrade). */
  docker() {
    return new Docker(this);
  }
}

/** The family named by an os-release file's ID, else by its ID_LIKE. */
export function osFamilyFromRelease(text) {
  const values = {};
  for (const line of text.split('\n')) {
    const at = line.indexOf('=');
    if (at > 0) values[line.slice(0, at).trim()] = line.slice(at + 1).trim().replace(/^["']|["']$/g, '');
  }
  const names = [values.ID ?? '', ...(values.ID_LIKE ?? '').split(/\s+/)];
  return names.find((n) => n === 'debian' || n === 'alpine');
}

/**
 * Builder for an `lxc-spec` with defaults taken from the context: hostname =
 * app id, resources as the operator chose, DHCP on the default bridge,
 * unprivileged, no features, tagged `proximity`.
 */
export class ContainerSpec {
  constructor(ctx, osTemplate) {
    const r = ctx.resources;
    this.spec = {
      hostname: ctx.appId,
      osTemplate,
      cores: r.cores,
      memoryMb: r.memoryMb,
      swapMb: r.swapMb,
      diskGb: r.diskGb,
      features: { nesting: false, keyctl: false, fuse: false },
      unprivileged: true,
      network: { bridge: undefined, ip: { tag: 'dhcp' } },
      tags: [PROXIMITY_TAG],
    };
  }

  /** Allow nested containers (needed for Docker in LXC). */
  nesting(on = true) {
    this.spec.features.nesting = on;
    return this;
  }

  /** Allow keyctl (Docker in an unprivileged LXC; only root@pam may set it on Proxmox). */
  keyctl(on = true) {
    this.spec.features.keyctl = on;
    return this;
  }

  fuse(on = true) {
    this.spec.features.fuse = on;
    return this;
  }

  unprivileged(on = true) {
    this.spec.unprivileged = on;
    return this;
  }

  hostname(name) {
    this.spec.hostname = name;
    return this;
  }

  bridge(bridge) {
    this.spec.network.bridge = bridge;
    return this;
  }

  staticIp(cidr, gateway) {
    this.spec.network.ip = { tag: 'static', val: [cidr, gateway] };
    return this;
  }

  tag(tag) {
    this.spec.tags.push(tag);
    return this;
  }

  /** Create the container and start it. */
  create() {
    return new Container(call('creating the container', createLxc, this.spec));
  }
}

/** The containers of the existing app this run acts on (uninstall, upgrade, health). */
export function appContainers() {
  return witAppContainers().map((raw) => new Container(raw));
}

/** The first container of the existing app, or NotFound. */
export function appContainer() {
  const [first] = appContainers();
  if (!first) throw new NotFound('this app has no container');
  return first;
}
