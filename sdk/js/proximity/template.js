// Filling `{{name}}` placeholders in a recipe's assets.
//
// Assets are inlined at build time: `import text from './compose.yml?raw'`
// (the build bundles the file's text into the component; a recipe has no
// files at run time).

import { InvalidInput } from './errors.js';

/**
 * Replace every `{{name}}` in `template` with `values[name]`. One pass, so a
 * value that itself contains `{{…}}` is never expanded. An unknown
 * placeholder, or a value that no placeholder uses, is InvalidInput: either
 * means the asset and the code drifted apart.
 */
export function render(template, values) {
  let out = '';
  const used = new Set();
  let rest = template;
  for (;;) {
    const start = rest.indexOf('{{');
    if (start < 0) break;
    out += rest.slice(0, start);
    const end = rest.indexOf('}}', start + 2);
    if (end < 0) throw new InvalidInput('template has an unclosed `{{`');
    const name = rest.slice(start + 2, end).trim();
    if (!Object.hasOwn(values, name)) throw new InvalidInput(`template placeholder \`${name}\` has no value`);
    used.add(name);
    out += String(values[name]);
    rest = rest.slice(end + 2);
  }
  out += rest;
  const unused = Object.keys(values).find((n) => !used.has(n));
  if (unused !== undefined) throw new InvalidInput(`template has no placeholder \`${unused}\``);
  return out;
}
