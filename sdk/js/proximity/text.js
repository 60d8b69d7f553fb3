// Small text and unit helpers shared by the other modules.

const U32_MAX = 2 ** 32 - 1;

/** The last `n` lines of `text`, ignoring leading and trailing blank space. */
export function tailLines(text, n) {
  const lines = text.trim().split('\n');
  return n > 0 ? lines.slice(-n).join('\n').trim() : '';
}

/** An argv as a person would type it: words quoted only where needed. */
export function displayArgv(argv) {
  return argv
    .map((arg) => (arg === '' || /[\s'"]/.test(arg) ? `'${arg.replaceAll("'", "'\\''")}'` : arg))
    .join(' ');
}

/** Seconds as the WIT's `u32` milliseconds, saturating; undefined stays undefined. */
export function secondsToMs(seconds) {
  if (seconds === undefined || seconds === null) return undefined;
  return Math.max(0, Math.min(U32_MAX, Math.floor(Number(seconds) * 1000)));
}

const encoder = new TextEncoder();
const decoder = new TextDecoder('utf-8');

/** Text as UTF-8 bytes; bytes as they are. */
export function asBytes(contents) {
  if (typeof contents === 'string') return encoder.encode(contents);
  return contents instanceof Uint8Array ? contents : new Uint8Array(contents);
}

/** Bytes as text (invalid UTF-8 replaced). */
export function asText(bytes) {
  return decoder.decode(bytes);
}
