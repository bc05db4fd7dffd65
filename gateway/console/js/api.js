// The console's only way to the server: the public REST and SSE APIs,
// called with the signed-in credential as `Authorization: Bearer` (the
// admin token, an API key or a JWT are all accepted there). The credential
// lives in this tab's sessionStorage only: never in a URL, never in a
// cookie (so no CSRF defences are needed), gone when the tab closes.

const CREDENTIAL_KEY = 'convergio.console.credential';
const KIND_KEY = 'convergio.console.kind';

/** The signed-in credential, or null. */
export function credential() {
  return sessionStorage.getItem(CREDENTIAL_KEY);
}

/** What kind of credential was used to sign in (for display only). */
export function credentialKind() {
  return sessionStorage.getItem(KIND_KEY) || 'credential';
}

/** Keeps `token` for this tab; `null` signs out. */
export function setCredential(token, kind) {
  if (token === null) {
    sessionStorage.removeItem(CREDENTIAL_KEY);
    sessionStorage.removeItem(KIND_KEY);
  } else {
    sessionStorage.setItem(CREDENTIAL_KEY, token);
    sessionStorage.setItem(KIND_KEY, kind);
  }
}

/** A refusal by the API: its status and the problem document it sent. */
export class ProblemError extends Error {
  constructor(status, problem) {
    const title = problem && typeof problem === 'object' && problem.title ? problem.title : `HTTP ${status}`;
    super(title);
    this.status = status;
    this.problem = problem && typeof problem === 'object' ? problem : { title, detail: String(problem || '') };
  }
}

function headers(extra) {
  const all = { Accept: 'application/json', ...extra };
  const token = credential();
  if (token) all.Authorization = `Bearer ${token}`;
  return all;
}

/**
 * Calls the API: `body` (when given) is sent as JSON. Resolves to the
 * parsed answer; rejects with a `ProblemError` carrying the API's own
 * problem document for every refusal.
 */
export async function api(method, path, body, extraHeaders = {}) {
  const init = { method, headers: headers(extraHeaders), credentials: 'omit', cache: 'no-store' };
  if (body !== undefined) {
    init.headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  let response;
  try {
    response = await fetch(path, init);
  } catch (error) {
    throw new ProblemError(0, { title: 'the server could not be reached', detail: String(error) });
  }
  const text = await response.text();
  let data = null;
  if (text) {
    try {
      data = JSON.parse(text);
    } catch {
      data = text;
    }
  }
  if (!response.ok) throw new ProblemError(response.status, data);
  return data;
}

/** `GET path` with `params` (empty values left out) as the query. */
export function get(path, params = {}) {
  const query = new URLSearchParams();
  for (const [name, value] of Object.entries(params)) {
    if (value !== undefined && value !== null && value !== '' && value !== false) query.set(name, String(value));
  }
  const text = query.toString();
  return api('GET', text ? `${path}?${text}` : path);
}

/**
 * Follows a server-sent event stream with the credential in a header
 * (EventSource cannot send one, and a token in the URL would leak into
 * logs): calls `onEvent({event, data})` per event until the stream ends or
 * `signal` aborts. Rejects with a ProblemError when the API refuses.
 */
export async function follow(path, onEvent, signal) {
  const response = await fetch(path, {
    headers: headers({ Accept: 'text/event-stream' }),
    credentials: 'omit',
    cache: 'no-store',
    signal,
  });
  if (!response.ok) {
    const text = await response.text();
    let problem = text;
    try {
      problem = JSON.parse(text);
    } catch {
      // Not JSON: shown as the detail.
    }
    throw new ProblemError(response.status, problem);
  }
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let buffer = '';
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffer += decoder.decode(value, { stream: true }).replace(/\r\n?/g, '\n');
    let end;
    while ((end = buffer.indexOf('\n\n')) >= 0) {
      const block = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      let event = 'message';
      const data = [];
      for (const line of block.split('\n')) {
        if (line.startsWith('event:')) event = line.slice(6).trim();
        else if (line.startsWith('data:')) data.push(line.slice(5).replace(/^ /, ''));
      }
      if (data.length === 0) continue;
      let parsed = data.join('\n');
      try {
        parsed = JSON.parse(parsed);
      } catch {
        // Left as text.
      }
      onEvent({ event, data: parsed });
    }
  }
}
