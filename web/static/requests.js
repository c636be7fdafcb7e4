//! The API requests panel: per route counts, status classes and latency from /admin/monitor/metrics (its `requests` part), and the admin's "reset counters" (POST metrics/reset).
import { el, setText, Table } from './dom.js';
import { api, session, HttpError } from './live.js';
import { dateTime, duration, num } from './format.js';

const POLL_MS = 10000;
const CLASSES = ['2xx', '3xx', '4xx', '5xx'];

/** Milliseconds as text: `0.42 ms`, `12 ms`, `1.3 s`. */
export function ms(v) {
  if (typeof v !== 'number' || !Number.isFinite(v)) return '–';
  return v >= 1000 ? `${num(v / 1000, 1)} s` : `${num(v, v < 1 ? 2 : 1)} ms`;
}

/** The report's routes as table rows, busiest first; a hostile or empty answer gives none. */
export function routeRows(report) {
  const routes = report && typeof report.routes === 'object' && report.routes ? report.routes : {};
  return Object.entries(routes)
    .slice(0, 500)
    .filter(([, r]) => r && typeof r === 'object')
    .map(([route, r]) => {
      const classes = r.status_classes && typeof r.status_classes === 'object' ? r.status_classes : {};
      const lat = r.latency_ms && typeof r.latency_ms === 'object' ? r.latency_ms : {};
      const row = { route, count: Number(r.count) || 0, p50: lat.p50, p90: lat.p90, p99: lat.p99 };
      for (const c of ['1xx', ...CLASSES]) row[c] = Number(classes[c]) || 0;
      return row;
    })
    .sort((a, b) => b.count - a.count || a.route.localeCompare(b.route));
}

/** The routes table (made when the page has the panel). */
function makeTable() {
  return new Table({
    name: 'requests.routes',
    key: (r) => r.route,
    columns: [
      { id: 'route', label: 'route', text: (r) => r.route, cls: 'route' },
      { id: 'count', label: 'requests', numeric: true, text: (r) => num(r.count, 0), value: (r) => r.count },
      ...CLASSES.map((c) => ({ id: c, label: c, numeric: true, text: (r) => (r[c] ? num(r[c], 0) : '–'), value: (r) => r[c], cls: `class-${c}` })),
      { id: 'p50', label: 'p50', numeric: true, text: (r) => ms(r.p50), value: (r) => r.p50 },
      { id: 'p90', label: 'p90', numeric: true, text: (r) => ms(r.p90), value: (r) => r.p90 },
      { id: 'p99', label: 'p99', numeric: true, text: (r) => ms(r.p99), value: (r) => r.p99 },
    ],
    empty: 'no requests counted yet',
  });
}

const state = { role: null, timer: null, busy: false, table: null };

function parts() {
  const panel = document.getElementById('requests');
  return panel && {
    panel,
    sub: panel.querySelector('.sub'),
    reset: panel.querySelector('.reset'),
    error: panel.querySelector('.reason'),
  };
}

function render(report) {
  const p = parts();
  if (!p) return;
  p.panel.hidden = false;
  const since = Date.parse(report.since);
  setText(p.sub, `${num(Number(report.total) || 0, 0)} requests since ${Number.isNaN(since) ? '?' : `${dateTime(since)} (${duration(report.window_seconds)})`}`);
  // Only an admin may reset; a viewer is not offered what the host would refuse.
  p.reset.hidden = state.role !== 'admin';
  state.table.update(routeRows(report));
}

function fail(message) {
  const p = parts();
  if (!p) return;
  setText(p.error, message);
  p.error.hidden = !message;
}

/** Reads the counters (and, when not known yet, who is signed in), then shows them. */
export async function refresh() {
  const p = parts();
  if (!p || state.busy) return;
  state.busy = true;
  try {
    // Asked each time: a sign-out and a sign-in under another token change who this is.
    state.role = (await session()).role ?? null;
    // The document also holds the collectors' counters; the panel shows the requests part.
    const doc = await api('metrics');
    fail('');
    render((doc && doc.requests) || {});
  } catch (e) {
    if (e instanceof HttpError && e.status === 401) {
      // Signed out: the page shows its login.
      state.role = null;
      p.panel.hidden = true;
    } else {
      fail(`Could not read the request metrics: ${e.message}`);
    }
  } finally {
    state.busy = false;
  }
}

async function reset() {
  const p = parts();
  p.reset.disabled = true;
  try {
    await api('metrics/reset', { method: 'POST' });
    fail('');
  } catch (e) {
    fail(`Reset failed: ${e.message}`);
  } finally {
    p.reset.disabled = false;
  }
  await refresh();
}

function poll() {
  refresh().finally(() => {
    state.timer = setTimeout(poll, POLL_MS);
  });
}

const p = typeof document === 'undefined' ? null : parts();
if (p) {
  state.table = makeTable();
  p.panel.querySelector('.requests-table').append(state.table.el);
  p.reset.addEventListener('click', reset);
  poll();
}
