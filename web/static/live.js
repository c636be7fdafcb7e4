//! Talks to the admin API: JSON requests, the session and login, the live feed (SSE first, polling when SSE fails), and the view a URL names (live or a past range, zoom) with the range queries it makes.

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

/** The ranges the picker offers, as spans in milliseconds; `live` is the stream's window, `custom` two times. */
export const RANGES = {
  live: null, '1h': 3600e3, '6h': 6 * 3600e3, '24h': 24 * 3600e3, '7d': 7 * 86400e3, '30d': 30 * 86400e3, custom: null,
};

/** Points a chart asks for per series over its window; the host refuses more than 1,000. */
export const CHART_POINTS = 600;

/** Events a view asks for (markers and the panel). */
export const EVENT_LIMIT = 500;

/** Errors the panel asks for. */
export const ERROR_LIMIT = 100;

// Times outside these years are not a view anyone shares; they are refused rather than sent.
const EARLIEST = Date.UTC(2000, 0, 1);
const LATEST = Date.UTC(2200, 0, 1);

function time(text) {
  if (typeof text !== 'string' || !/^\d{1,15}$/.test(text)) return null;
  const n = Number(text);
  return n >= EARLIEST && n <= LATEST ? n : null;
}

function span(text) {
  const m = typeof text === 'string' && text.match(/^(\d{1,15})-(\d{1,15})$/);
  if (!m) return null;
  const a = time(m[1]);
  const b = time(m[2]);
  return a !== null && b !== null && a < b ? [a, b] : null;
}

/**
 * The view a URL fragment names: `{ range, from, to, zoom }`. `range` is a key of `RANGES`;
 * `from`/`to` (Unix ms) only for `custom`; `zoom` is `[from, to]` or null. Anything unreadable
 * falls back to live, so a mangled link still opens the page.
 */
export function parseView(hash) {
  const q = new URLSearchParams(String(hash || '').replace(/^#/, '').slice(0, 500));
  let range = q.get('range');
  if (!Object.hasOwn(RANGES, range)) range = 'live';
  const view = { range, from: null, to: null, zoom: span(q.get('zoom')) };
  if (range === 'custom') {
    const w = span(`${q.get('from')}-${q.get('to')}`);
    if (!w) return { range: 'live', from: null, to: null, zoom: null };
    [view.from, view.to] = w;
  }
  return view;
}

/** The URL fragment of a view (`''` for live with no zoom: the page's plain address). */
export function viewHash(view) {
  const q = new URLSearchParams();
  if (view.range !== 'live') q.set('range', view.range);
  if (view.range === 'custom') {
    q.set('from', String(view.from));
    q.set('to', String(view.to));
  }
  if (view.zoom) q.set('zoom', `${view.zoom[0]}-${view.zoom[1]}`);
  const s = q.toString();
  return s ? `#${s}` : '';
}

/** The window `[from, to]` (Unix ms) a past range covers at `now`; null for live. */
export function rangeWindow(view, now = Date.now()) {
  if (view.range === 'custom') return [view.from, view.to];
  const width = RANGES[view.range];
  return width ? [now - width, now] : null;
}

/** The step in whole seconds that keeps a window at about `CHART_POINTS` points (at least 1 s). */
export function stepFor(from, to) {
  return Math.max(1, Math.round((to - from) / 1000 / CHART_POINTS));
}

/** The range query of one collector's series (or one series `collector.name`), JSON or CSV. */
export function rangeQuery(series, from, to, { label, csv = false } = {}) {
  const q = new URLSearchParams({ series, from: String(Math.floor(from)), to: String(Math.ceil(to)), step: `${stepFor(from, to)}s` });
  if (label !== undefined && label !== null) q.set('label', label);
  if (csv) q.set('format', 'csv');
  return `history?${q}`;
}

/** The stored events over a window, newest first; of one source when `source` is given. */
export function eventsQuery(from, to, source) {
  const q = new URLSearchParams({ from: String(Math.floor(from)), to: String(Math.ceil(to)), limit: String(EVENT_LIMIT) });
  if (source) q.set('source', source);
  return `events?${q}`;
}

/**
 * Events and errors as one list, newest first: `{ time, source, kind, text, error }` where
 * errors get the kind `error`.
 */
export function mergeLog(events, errors) {
  const rows = [
    ...(events || []).map((e) => ({ time: e.time_unix_ms, source: String(e.source), kind: String(e.kind), text: String(e.text), error: false })),
    ...(errors || []).map((e) => ({ time: e.time_unix_ms, source: String(e.source), kind: 'error', text: String(e.message), error: true })),
  ];
  return rows.filter((r) => Number.isFinite(r.time)).sort((a, b) => b.time - a.time);
}
