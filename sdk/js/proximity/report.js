// What lifecycle exports return: AppInfo and HealthReport.

/** Where the installed app runs. Chain the `with*` methods. */
export class AppInfo {
  constructor({ url, address, ports = [], outputs = [] } = {}) {
    this.url = url;
    this.address = address;
    this.ports = [...ports];
    this.outputs = [...outputs];
  }

  /** Where a person reaches the app, e.g. `http://10.0.3.12/`. */
  withUrl(url) {
    this.url = url;
    return this;
  }

  withAddress(address) {
    this.address = address;
    return this;
  }

  withPort(port) {
    this.ports.push(Number(port));
    return this;
  }

  /** A named value for the operator. Never a secret: those stay in parameters. */
  withOutput(name, value) {
    this.outputs.push([String(name), String(value)]);
    return this;
  }

  toWit() {
    return { url: this.url, address: this.address, ports: this.ports, outputs: this.outputs };
  }
}

/** `http://ADDRESS/` on port 80, else `http://ADDRESS:PORT/`. */
export function httpUrl(address, port, path = '/') {
  return port === 80 ? `http://${address}${path}` : `http://${address}:${port}${path}`;
}

export class HealthCheck {
  constructor(name, ok, detail = '') {
    this.name = name;
    this.ok = Boolean(ok);
    this.detail = String(detail);
  }

  static passed(name, detail = '') {
    return new HealthCheck(name, true, detail);
  }

  static failed(name, detail = '') {
    return new HealthCheck(name, false, detail);
  }

  /** Run `probe()`: passes with its string result (or `detail`), fails with the error's text. */
  static of(name, probe, detail = 'ok') {
    try {
      const result = probe();
      return HealthCheck.passed(name, typeof result === 'string' ? result : detail);
    } catch (e) {
      return HealthCheck.failed(name, String(e));
    }
  }
}

/** Healthy exactly when every check passed. */
export class HealthReport {
  constructor(checks = []) {
    this.checks = [...checks];
  }

  get healthy() {
    return this.checks.every((c) => c.ok);
  }

  toWit() {
    return {
      healthy: this.healthy,
      checks: this.checks.map((c) => ({ name: c.name, ok: c.ok, detail: c.detail })),
    };
  }
}
