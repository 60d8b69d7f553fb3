// The SDK's error: one subclass per case of the WIT `error` variant.
//
// A recipe throws (or lets through) a RecipeError; the export adapter turns
// it into the matching WIT case, so the host records exactly that kind and text.

export class RecipeError extends Error {
  /** @param {string} message */
  constructor(message) {
    super(String(message));
    this.name = this.constructor.name;
  }

  /** The case name as the WIT spells it. */
  get kind() {
    return 'backend';
  }

  /** The same kind of error with `what: ` put in front of the message. */
  context(what) {
    const Kind = this.constructor;
    return new Kind(`${what}: ${this.message}`);
  }

  /** The WIT `error` value: `{ tag, val }`. */
  toWit() {
    return { tag: this.kind, val: this.message };
  }

  toString() {
    return `${this.kind}: ${this.message}`;
  }
}

/** The manifest does not grant the call (or its arguments exceed the grant). */
export class Denied extends RecipeError {
  get kind() {
    return 'denied';
  }
}

/** Malformed or out-of-range arguments, including bad parameters. */
export class InvalidInput extends RecipeError {
  get kind() {
    return 'invalid-input';
  }
}

/** A deadline passed. */
export class Timeout extends RecipeError {
  get kind() {
    return 'timeout';
  }
}

/** The container, file, service or command does not exist. */
export class NotFound extends RecipeError {
  get kind() {
    return 'not-found';
  }
}

/** The infrastructure, or a command in the container, failed. */
export class Backend extends RecipeError {
  get kind() {
    return 'backend';
  }
}

const BY_TAG = {
  denied: Denied,
  'invalid-input': InvalidInput,
  timeout: Timeout,
  'not-found': NotFound,
  backend: Backend,
};

/** The SDK error for a WIT `error` value (`{ tag, val }`). */
export function fromWit(error) {
  const Kind = BY_TAG[error?.tag] ?? Backend;
  return new Kind(error?.val ?? String(error));
}

/**
 * Call a generated import. A WIT error (thrown by the bindings with the
 * variant in `payload`) becomes a RecipeError prefixed with `what`.
 */
export function call(what, fn, ...args) {
  try {
    return fn(...args);
  } catch (e) {
    if (e && typeof e === 'object' && 'payload' in e) {
      const error = fromWit(e.payload);
      throw what ? error.context(what) : error;
    }
    throw e;
  }
}
