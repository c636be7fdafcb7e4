//! Talks to the admin API: JSON requests, the session and login, and the live feed (SSE first, polling when SSE fails).

/** An HTTP answer that was not 2xx, with the server's message when it gave one. */
export class HttpError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

/** GETs (or POSTs `body` as JSON to) a path relative to the page and returns the parsed JSON. */
export async function api(path, { method = 'GET', body } = {}) {
  const init = { method, credentials: 'same-origin', headers: { accept: 'application/json' } };
  if (body !== undefined) {
    init.headers['content-type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  const r = await fetch(path, init);
  const text = await r.text();
  let json = null;
  try {
    json = text ? JSON.parse(text) : null;
  } catch {
    json = null;
  }
  if (!r.ok) throw new HttpError(r.status, (json && json.message) || `${method} ${path}: HTTP ${r.status}`);
  return json;
}

/** Whether a token is needed and which role the browser has; hosts without auth need none. */
export async function session() {
  try {
    return await api('session');
  } catch (e) {
    // A host built without the session route has no auth.
    if (e instanceof HttpError && e.status === 404) return { auth_required: false, role: null };
    throw e;
  }
}

/**
 * The live feed. `onSnapshot(snapshot)` gets every update; `onState(state)` hears
 * `live` (SSE), `polling` (SSE failed, polls answer), `offline` (nothing answers) and
 * `login` (the host wants a token).
 */
export class Feed {
  constructor({ onSnapshot, onState, pollMs = 5000, sseRetryMs = 10000 }) {
    this.onSnapshot = onSnapshot;
    this.onState = onState;
    this.pollMs = pollMs;
    this.sseRetryMs = sseRetryMs;
    this.es = null;
    this.pollTimer = null;
    this.retryTimer = null;
    this.stopped = true;
    this.state = null;
    this.lastId = null;
  }

  setState(s) {
    if (this.state !== s) {
      this.state = s;
      this.onState(s);
    }
  }

  /** Starts with SSE. */
  start() {
    this.stopped = false;
    this.openSse();
  }

  /** Stops every connection and timer (logout, login needed). */
  stop() {
    this.stopped = true;
    if (this.es) this.es.close();
    this.es = null;
    clearInterval(this.pollTimer);
    clearTimeout(this.retryTimer);
    this.pollTimer = null;
    this.retryTimer = null;
  }

  openSse() {
    if (this.stopped || this.es) return;
    let es;
    try {
      es = new EventSource('stream');
    } catch {
      this.fallback();
      return;
    }
    this.es = es;
    es.addEventListener('open', () => {
      if (this.es !== es) return;
      this.setState('live');
      clearInterval(this.pollTimer);
      this.pollTimer = null;
    });
    es.addEventListener('snapshot', (ev) => {
      if (this.es !== es) return;
      this.setState('live');
      let snap;
      try {
        snap = JSON.parse(ev.data);
      } catch {
        return;
      }
      this.onSnapshot(snap);
    });
    es.addEventListener('error', () => {
      if (this.es !== es) return;
      // EventSource would retry on its own, but blindly: poll instead, and retry SSE on our terms.
      es.close();
      this.es = null;
      this.fallback();
    });
  }

  fallback() {
    if (this.stopped) return;
    if (!this.pollTimer) {
      this.poll();
      this.pollTimer = setInterval(() => this.poll(), this.pollMs);
    }
    clearTimeout(this.retryTimer);
    this.retryTimer = setTimeout(() => this.openSse(), this.sseRetryMs);
  }

  async poll() {
    try {
      const snap = await api('system');
      if (this.stopped) return;
      // An SSE connection that opened meanwhile takes over.
      if (this.state !== 'live') this.setState('polling');
      this.onSnapshot(snap);
    } catch (e) {
      if (this.stopped) return;
      if (e instanceof HttpError && e.status === 401) {
        this.stop();
        this.setState('login');
      } else if (this.state !== 'live') {
        this.setState('offline');
      }
    }
  }
}
