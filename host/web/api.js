// The page's client of the HTTP API under /api/v1: the same bearer token as
// every other client, kept in this browser's localStorage.

export const PREFIX = '/api/v1';
const TOKEN_KEY = 'proximity.token';

export function getToken() {
  try {
    return localStorage.getItem(TOKEN_KEY) || '';
  } catch {
    return '';
  }
}

export function setToken(token) {
  if (token) localStorage.setItem(TOKEN_KEY, token);
  else localStorage.removeItem(TOKEN_KEY);
}

/** An error answer of the API: `{error: {code, message, details, digest}}`. */
export class ApiError extends Error {
  constructor(status, error) {
    super(error.message || `HTTP ${status}`);
    this.status = status;
    this.code = error.code || 'unknown';
    this.details = Array.isArray(error.details) ? error.details : [];
    this.digest = error.digest || null;
  }
}

/** Headers with the token, when there is one. */
export function authHeaders(extra = {}) {
  const headers = { ...extra };
  const token = getToken();
  if (token) headers.Authorization = `Bearer ${token}`;
  return headers;
}

/**
 * Calls the API. `json` is sent as JSON; `body` as it is (a File for a
 * bundle). Resolves with the parsed JSON (or null), or throws ApiError.
 */
export async function request(path, { method = 'GET', json, body, contentType, query, signal } = {}) {
  const headers = authHeaders({ Accept: 'application/json' });
  let payload = body;
  if (json !== undefined) {
    headers['Content-Type'] = 'application/json';
    payload = JSON.stringify(json);
  } else if (contentType) {
    headers['Content-Type'] = contentType;
  }
  let url = `${PREFIX}${path}`;
  if (query) {
    const params = new URLSearchParams(Object.entries(query).filter(([, v]) => v !== undefined && v !== null));
    if ([...params].length) url += `?${params}`;
  }
  let response;
  try {
    response = await fetch(url, { method, headers, body: payload, signal });
  } catch (err) {
    if (err.name === 'AbortError') throw err;
    throw new ApiError(0, { code: 'network', message: `The server did not answer (${err.message}).` });
  }
  const text = await response.text();
  let data = null;
  if (text) {
    try {
      data = JSON.parse(text);
    } catch {
      data = null;
    }
  }
  if (!response.ok) {
    const error = data && data.error ? data.error : { code: 'http', message: `HTTP ${response.status}` };
    throw new ApiError(response.status, error);
  }
  return data;
}

export const get = (path, options) => request(path, options);
export const post = (path, json, options = {}) => request(path, { ...options, method: 'POST', json });
export const del = (path, options = {}) => request(path, { ...options, method: 'DELETE' });

export function iconUrl(id) {
  return `${PREFIX}/recipes/${encodeURIComponent(id)}/icon`;
}

/** Words for an error that needs the token. */
export function isAuthError(err) {
  return err instanceof ApiError && err.status === 401;
}

/** Health of the server, fetched once: the backend the deploy form names. */
let health = null;
export async function serverHealth() {
  if (!health) {
    health = get('/healthz').catch(() => null);
  }
  return health;
}
