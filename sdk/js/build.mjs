// Builds one JavaScript recipe into a component. Run by the Rust builder
// (proximity-builder's `js` route) from the toolchain directory, where this
// file is copied beside the node_modules that `npm ci` installed:
//
//   node build.mjs --recipe DIR --entry recipe.js --sdk SDK_DIR --wit WIT_DIR
//                  --work WORK_DIR --out OUT.wasm
//
// Two steps:
// 1. rolldown bundles the recipe, the SDK (imported as `proximity`) and the
//    assets it imports with a `?raw` suffix (inlined as strings) into one ES
//    module; the WIT interfaces (`proximity:recipe/...`) stay imports.
// 2. componentize-js turns the bundle into a component of world `recipe`,
//    with the WASI features a recipe has no use for disabled.

import { readFile, writeFile, mkdir } from 'node:fs/promises';
import { isAbsolute, join, resolve } from 'node:path';
import { parseArgs } from 'node:util';

import { componentize } from '@bytecodealliance/componentize-js';
import { rolldown } from 'rolldown';

/** WASI features a recipe does not need. Stdio stays: console.log reaches the job's log. */
export const DISABLED_FEATURES = ['http', 'fetch-event', 'clocks', 'random'];

const RAW_SUFFIX = '?raw';

const { values: args } = parseArgs({
  options: {
    recipe: { type: 'string' },
    entry: { type: 'string', default: 'recipe.js' },
    sdk: { type: 'string' },
    wit: { type: 'string' },
    work: { type: 'string' },
    out: { type: 'string' },
    world: { type: 'string', default: 'recipe' },
  },
});
for (const name of ['recipe', 'sdk', 'wit', 'work', 'out']) {
  if (!args[name]) fail(`missing --${name}`);
}

function fail(message) {
  console.error(`build.mjs: ${message}`);
  process.exit(2);
}

/** `import x from './file?raw'`: the file's text, inlined. `proximity`: the SDK. */
function recipePlugin(sdkDir) {
  return {
    name: 'proximity-recipe',
    resolveId(source, importer) {
      if (source === 'proximity') return join(sdkDir, 'proximity', 'index.js');
      if (source.endsWith(RAW_SUFFIX)) {
        const file = source.slice(0, -RAW_SUFFIX.length);
        const base = importer ? resolve(importer, '..') : args.recipe;
        return `${isAbsolute(file) ? file : resolve(base, file)}${RAW_SUFFIX}`;
      }
      return null;
    },
    async load(id) {
      if (!id.endsWith(RAW_SUFFIX)) return null;
      const text = await readFile(id.slice(0, -RAW_SUFFIX.length), 'utf8');
      return `export default ${JSON.stringify(text)};`;
    },
  };
}

const recipeDir = resolve(args.recipe);
const sdkDir = resolve(args.sdk);
const workDir = resolve(args.work);
await mkdir(workDir, { recursive: true });

const bundle = await rolldown({
  input: resolve(recipeDir, args.entry),
  external: [/^proximity:/, /^wasi:/],
  plugins: [recipePlugin(sdkDir)],
  logLevel: 'warn',
  onLog(level, log) {
    console.error(`build.mjs: rolldown ${level}: ${log.message}`);
  },
});
const { output } = await bundle.generate({ format: 'es' });
await bundle.close();
const source = output[0].code;
const bundlePath = join(workDir, 'bundle.js');
await writeFile(bundlePath, source);

const { component } = await componentize({
  sourcePath: bundlePath,
  witPath: resolve(args.wit),
  worldName: args.world,
  disableFeatures: DISABLED_FEATURES,
});
await writeFile(resolve(args.out), component);
console.error(`build.mjs: ${args.out}: ${component.byteLength} bytes (bundle ${source.length} bytes)`);
