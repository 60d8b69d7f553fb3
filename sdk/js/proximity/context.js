// What the host hands to every lifecycle export: identity, parameters, target.
//
// Parameter getters throw InvalidInput naming the parameter, so a recipe can
// let the error through and the operator still learns which input was wrong.

import { InvalidInput } from './errors.js';

const MISSING = Symbol('missing');

export class Context {
  /** @param raw the WIT `context` record as the bindings lift it */
  constructor(raw) {
    this.raw = raw;
    this.params = new Map(raw.params);
  }

  /** Name of the app instance; also the default container hostname. */
  get appId() {
    return this.raw.appId;
  }

  get deploymentId() {
    return this.raw.deploymentId;
  }

  get recipeVersion() {
    return this.raw.recipeVersion;
  }

  /** `{ cores, memoryMb, swapMb, diskGb }` as the operator chose them. */
  get resources() {
    return this.raw.resources;
  }

  /** `{ backend, node }`. */
  get target() {
    return this.raw.target;
  }

  /** A parameter as a plain value (string, number or boolean). */
  param(name, fallback = MISSING) {
    const value = this.params.get(name);
    if (value === undefined) return orMissing(name, fallback);
    return value.tag === 'integer' ? toNumber(name, value.val) : value.val;
  }

  /** A `string`, `secret` or `enum` parameter. */
  str(name, fallback = MISSING) {
    return this.#typed(name, 'text', fallback);
  }

  /** An `integer` parameter as a Number, optionally checked to lie in `lo..=hi`. */
  int(name, { fallback = MISSING, lo, hi } = {}) {
    const raw = this.#typed(name, 'integer', fallback);
    const value = typeof raw === 'bigint' ? toNumber(name, raw) : raw;
    if ((lo !== undefined && value < lo) || (hi !== undefined && value > hi)) {
      throw new InvalidInput(`parameter \`${name}\` is out of range ${lo ?? ''}..=${hi ?? ''}: ${value}`);
    }
    return value;
  }

  /** An `integer` parameter that must be a TCP port. */
  port(name, fallback = MISSING) {
    return this.int(name, { fallback, lo: 1, hi: 65535 });
  }

  /** A non-negative `integer` parameter counting seconds, e.g. a timeout. */
  secs(name, fallback = MISSING) {
    return this.int(name, { fallback, lo: 0 });
  }

  /** A `boolean` parameter. */
  bool(name, fallback = MISSING) {
    return this.#typed(name, 'boolean', fallback);
  }

  #typed(name, tag, fallback) {
    const value = this.params.get(name);
    if (value === undefined) return orMissing(name, fallback);
    if (value.tag !== tag) {
      throw new InvalidInput(`parameter \`${name}\` must be ${tag}, got ${value.tag}`);
    }
    return value.val;
  }
}

function orMissing(name, fallback) {
  if (fallback === MISSING) throw new InvalidInput(`missing parameter \`${name}\``);
  return fallback;
}

function toNumber(name, big) {
  const n = Number(big);
  if (!Number.isSafeInteger(n)) throw new InvalidInput(`parameter \`${name}\` is too large: ${big}`);
  return n;
}
