// Commands for apps the recipe cannot reach directly (`proxy` grant), sent
// through an SSH forced-command proxy. `command` must be listed for `service`
// in the manifest's `[[grants.proxy]]`.

import { proxyExec } from 'proximity:recipe/proxy@0.1.0';

import { ExecOutput, commandFailed } from './container.js';
import { call } from './errors.js';
import { displayArgv } from './text.js';

/** Run `command` with `args` through `service`'s proxy; its output whatever its status. */
export function exec(service, command, args = []) {
  const list = args.map(String);
  const out = call(`proxy \`${service}\`: \`${displayArgv([command, ...list])}\``, proxyExec, service, command, list);
  return new ExecOutput(out.status, out.stdout, out.stderr);
}

/** `exec`, throwing Backend unless the command exits 0; returns its stdout. */
export function run(service, command, args = []) {
  const output = exec(service, command, args);
  if (!output.ok) throw commandFailed(`proxy \`${service}\`: ${displayArgv([command, ...args.map(String)])}`, output);
  return output.stdoutText;
}
