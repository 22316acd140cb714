// The node's API, called with the operator's token as a bearer token. The
// token lives in sessionStorage (this tab only); a 401 logs out.

const KEY = 'hookswitch.token';

export const session = {
  get token() { return sessionStorage.getItem(KEY) || ''; },
  set token(t) { if (t) sessionStorage.setItem(KEY, t); else sessionStorage.removeItem(KEY); },
};

// APIError carries the HTTP status and the API's error message.
export class APIError extends Error {
  constructor(status, message) { super(message); this.status = status; }
}

let onUnauthorized = () => {};
export function setUnauthorizedHandler(f) { onUnauthorized = f; }

// api('GET', '/v1/subscriptions') → parsed JSON (null for 204).
export async function api(method, path, body, { quiet401 = false } = {}) {
  const headers = { Authorization: `Bearer ${session.token}` };
  const init = { method, headers, cache: 'no-store', credentials: 'omit' };
  if (body !== undefined) {
    headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  const resp = await fetch(path, init);
  let data = null;
  const text = await resp.text();
  if (text) {
    try { data = JSON.parse(text); } catch { data = { error: text }; }
  }
  if (resp.status === 401 && !quiet401) {
    onUnauthorized('The token was refused (401): log in again.');
  }
  if (!resp.ok) {
    const msg = (data && (data.error || data.message)) || resp.statusText;
    const field = data && data.field ? `${data.field}: ` : '';
    throw new APIError(resp.status, `${resp.status} ${field}${msg}`);
  }
  return data;
}

// probe returns the status of a GET without treating errors as failures.
export async function probe(path) {
  const resp = await fetch(path, { headers: { Authorization: `Bearer ${session.token}` }, cache: 'no-store', credentials: 'omit' });
  return resp.status;
}
