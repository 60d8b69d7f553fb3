// Progress steps and log lines in the job's event stream (always granted).

import * as wit from 'proximity:recipe/progress@0.1.0';

/** Announce that a new step begins (the previous one is done). */
export function step(name) {
  wit.step(String(name));
}

export function debug(message) {
  wit.log('debug', String(message));
}

export function info(message) {
  wit.log('info', String(message));
}

export function warn(message) {
  wit.log('warn', String(message));
}

export function error(message) {
  wit.log('error', String(message));
}
