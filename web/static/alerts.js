//! The alerts on the page: a count in the header, an Alerts panel and the watched values coloured where they show, from /admin/monitor/alerts and its event stream.

import { el } from './dom.js';
import { field } from './format.js';

const POLL_MS = 5000;
const STREAM_RETRY_MS = 10000;
const RESOLVED_SHOWN = 20;
const RANK = { warning: 1, critical: 2 };

/** A duration in words, from milliseconds. */
function ago(ms) {
  const s = Math.max(0, Math.round(ms / 1000));
  if (s < 90) return `${s} s`;
  if (s < 5400) return `${Math.round(s / 60)} min`;
  if (s < 172800) return `${Math.round(s / 3600)} h`;
  return `${Math.round(s / 86400)} d`;
}

/** The words and icon of a severity, so it reads without colour too. */
function badge(a) {
  const icon = a.state === 'resolved' ? '✓' : a.severity === 'critical' ? '✖' : '▲';
  const word = a.state === 'pending' ? `${a.severity}, pending` : a.state === 'resolved' ? 'resolved' : a.severity;
  return el('span', { class: 'alert-badge', 'data-severity': a.severity, 'data-state': a.state },
    el('span', { 'aria-hidden': 'true', text: `${icon} ` }), word);
}

function row(a, now) {
  const when = a.state === 'resolved'
    ? `resolved ${ago(now - a.resolved_unix_ms)} ago, lasted ${ago(a.resolved_unix_ms - a.started_unix_ms)}`
    : a.state === 'firing' ? `firing for ${ago(now - (a.fired_unix_ms ?? a.started_unix_ms))}`
      : `pending for ${ago(now - a.started_unix_ms)}`;
  return el('li', { class: 'alert-row', 'data-severity': a.severity, 'data-state': a.state },
    badge(a),
    el('strong', { text: a.name }),
    a.label ? el('span', { class: 'alert-item', text: a.label }) : null,
    el('span', { class: 'alert-summary', text: a.summary }),
    el('span', { class: 'alert-when', text: when, title: `rule: ${a.rule}` }));
}

function render(view) {
  const count = document.getElementById('alert-count');
  const panel = document.getElementById('alerts');
  if (!count || !panel) return;
  const now = Date.now();
  const firing = view.active.filter((a) => a.state === 'firing');
  const critical = firing.some((a) => a.severity === 'critical');
  count.hidden = false;
  count.dataset.severity = firing.length ? (critical ? 'critical' : 'warning') : 'none';
  count.textContent = firing.length
    ? `${critical ? '✖' : '▲'} ${firing.length} alert${firing.length === 1 ? '' : 's'}`
    : '✓ no alerts';
  count.title = firing.map((a) => `${a.severity}: ${a.summary}`).join('\n') || 'no alert is firing';
  panel.hidden = false;
  const list = panel.querySelector('.alert-list');
  const rows = [...view.active, ...view.resolved.slice(0, RESOLVED_SHOWN)].map((a) => row(a, now));
  if (!rows.length) rows.push(el('li', { class: 'alert-row empty', text: `nothing is wrong (${view.rules} rules watching)` }));
  list.replaceChildren(...rows);
  const sub = panel.querySelector('.sub');
  const failing = (view.notifiers || []).filter((n) => n.failed > 0);
  sub.textContent = `${firing.length} firing, ${view.active.length - firing.length} pending, ${view.resolved.length} resolved recently`
    + (failing.length ? ` · ${failing.length} notifier${failing.length === 1 ? '' : 's'} failing` : '');
  const problems = panel.querySelector('.alert-problems');
  problems.hidden = !view.problems.length;
  problems.textContent = view.problems.join('\n');
}

/** Section fields a tailored card shows as a key/value line, by the line's label. */
const KV_LABELS = {
  cpu: { usage_percent: 'usage', temperature_celsius: 'temperature', 'load_average/five': 'load average' },
  gpu: {
    temperature_celsius: 'temperature', utilization_percent: 'utilization', power_draw_watts: 'power',
    fan_speed_percent: 'fan', memory_used_bytes: 'memory used', memory_used_percent: 'memory used',
  },
};

/** Scalar fields a tailored card shows in a table: [table, row key, column]. */
const CELLS = {
  memory: {
    used_percent: ['memory.usage', 'RAM', 'percent'], used_bytes: ['memory.usage', 'RAM', 'used'],
    available_bytes: ['memory.usage', 'RAM', 'available'], swap_used_percent: ['memory.usage', 'swap', 'percent'],
    swap_used_bytes: ['memory.usage', 'swap', 'used'],
  },
};

/** Array fields a tailored table shows under another column. */
const COLUMNS = { 'docker.containers': { health: 'status' } };

const q = (root, sel) => (root ? root.querySelector(sel) : null);
const attr = (v) => CSS.escape(String(v));

/** The row of `table` for the array element named `item`: by its key, else by its label cell. */
function rowOf(table, item, labelField) {
  const byKey = q(table, `tbody > tr[data-key="${attr(item)}"]`);
  if (byKey || !table || !labelField) return byKey;
  return [...table.querySelectorAll(`tbody > tr > td[data-col="${attr(labelField)}"]`)]
    .find((td) => td.textContent === item)?.parentElement ?? null;
}

/** A key/value line of a card by its label (the generic view labels nested fields `a › b`). */
function kvLine(root, path, collector) {
  const label = KV_LABELS[collector]?.[path] ?? path.split('/').map((k) => field(k).label).join(' › ');
  return q(root, `dd[data-field="${attr(label)}"]`);
}

/**
 * Where a watched value shows: `values` (the cells and lines that show it) and `target` (the
 * element it belongs to: a table row, a GPU; the value itself for a scalar).
 */
function locate(watch, item) {
  const card = document.getElementById(`card-${watch.collector}`);
  if (!card) return null;
  const parts = watch.pointer.split('/').slice(1);
  const star = parts.indexOf('*');
  if (star < 0) {
    const path = parts.join('/');
    const cell = CELLS[watch.collector]?.[path];
    const value = cell
      ? q(rowOf(q(card, `table[data-table="${attr(cell[0])}"]`), cell[1]), `td[data-col="${attr(cell[2])}"]`)
      : kvLine(card, path, watch.collector);
    return value ? { values: [value], target: value } : null;
  }
  if (item === null || item === undefined) return null;
  const array = parts.slice(0, star).join('.');
  const path = parts.slice(star + 1).join('/');
  if (watch.collector === 'gpu' && array === 'gpus') {
    const gpu = q(card, `article[data-gpu="${attr(item)}"]`);
    if (!gpu) return null;
    const values = [kvLine(gpu, path, 'gpu'), q(gpu, `figure[data-chart="${attr(`gpu.${item}.${path}`)}"] .now`)];
    return { values: values.filter(Boolean), target: gpu };
  }
  const name = `${watch.collector}.${array}`;
  const row = rowOf(q(card, `table[data-table="${attr(name)}"]`), String(item), watch.label_field);
  if (!row) return null;
  const col = COLUMNS[name]?.[path] ?? path;
  const value = q(row, `td[data-col="${attr(col)}"]`);
  return { values: value ? [value] : [], target: row };
}

/** The marks the alerts ask for: element -> { level, note } for values and for firing targets. */
function wanted(view) {
  const watches = new Map((view.watches || []).map((w) => [w.name, w.watch]));
  const values = new Map();
  const targets = new Map();
  const raise = (map, e, level, note) => {
    const had = map.get(e);
    if (!had || RANK[level] > RANK[had.level]) map.set(e, { level, note });
  };
  for (const a of view.active) {
    const watch = watches.get(a.name);
    if (!watch) continue;
    const found = locate(watch, a.label);
    if (!found) continue;
    const note = `${a.severity}${a.state === 'pending' ? ' (pending)' : ''}: ${a.summary}`;
    // A value past a rule's threshold is coloured at once; its element is outlined once it fires.
    for (const v of found.values) raise(values, v, a.severity, note);
    if (a.state === 'firing') raise(targets, found.target, a.severity, note);
  }
  return { values, targets };
}

/** Sets `data-<key>` (with the note as the accessible description or tooltip) on exactly the elements of `want`. */
function mark(key, want, noteAttr) {
  const dataKey = key.replace(/-([a-z])/g, (_, c) => c.toUpperCase());
  for (const e of document.querySelectorAll(`[data-${key}]`)) {
    if (!want.has(e)) {
      delete e.dataset[dataKey];
      e.removeAttribute(noteAttr);
    }
  }
  for (const [e, { level, note }] of want) {
    if (e.dataset[dataKey] !== level) e.dataset[dataKey] = level;
    if (e.getAttribute(noteAttr) !== note) e.setAttribute(noteAttr, note);
  }
}

/**
 * The look of the marks, kept beside the code that sets them (a constructed style sheet, which
 * the page's `style-src 'self'` allows): amber for a warning, red for a critical one, each
 * with an icon so colour is not the only sign; a firing element outlined, dashed or solid.
 */
const MARKS_CSS = `
[data-alert-level="warning"] { color: var(--warn); font-weight: 600; }
[data-alert-level="critical"] { color: var(--bad); font-weight: 600; }
[data-alert-level="warning"]::before { content: "▲ "; }
[data-alert-level="critical"]::before { content: "✖ "; }
[data-alert-target] { outline: 2px dashed var(--warn); outline-offset: -2px; background: color-mix(in srgb, var(--warn) 10%, transparent); }
[data-alert-target="critical"] { outline-style: solid; outline-color: var(--bad); background: color-mix(in srgb, var(--bad) 12%, transparent); }
`;
const sheet = new CSSStyleSheet();
sheet.replaceSync(MARKS_CSS);
document.adoptedStyleSheets = [...document.adoptedStyleSheets, sheet];

let latest = null;
let frame = 0;

/** Colours the watched values and outlines the firing elements, at the next frame. */
function paint() {
  if (frame || !latest) return;
  frame = requestAnimationFrame(() => {
    frame = 0;
    const { values, targets } = wanted(latest);
    mark('alert-level', values, 'aria-description');
    mark('alert-target', targets, 'title');
  });
}

// Cards build rows and lines as sections arrive: each change of the page's content repaints.
new MutationObserver(paint).observe(document.body, { childList: true, subtree: true });

function show(view) {
  latest = view;
  render(view);
  paint();
}

let stream = null;
let streamRetry = 0;

/** Follows the alerts stream; when it fails, polls until the stream can be opened again. */
function openStream() {
  if (stream || typeof EventSource === 'undefined') return;
  const es = new EventSource('alerts/stream');
  stream = es;
  es.addEventListener('alerts', (ev) => {
    try {
      show(JSON.parse(ev.data));
    } catch {
      // A document that does not parse: the next one will.
    }
  });
  es.addEventListener('error', () => {
    es.close();
    stream = null;
    streamRetry = Date.now() + STREAM_RETRY_MS;
    setTimeout(poll, POLL_MS);
  });
}

/** Asks once; while the stream is down asks again every 5 s, and reopens the stream when it may. */
async function poll() {
  let ok = false;
  try {
    const r = await fetch('/admin/monitor/alerts', { credentials: 'same-origin', headers: { accept: 'application/json' } });
    ok = r.ok;
    if (ok) show(await r.json());
  } catch {
    // Offline: the connection indicator already says so; try again on the next round.
  }
  // The stream opens only once a request is let in, so a page waiting for a login asks no stream.
  if (ok && Date.now() >= streamRetry) openStream();
  if (!stream) setTimeout(poll, POLL_MS);
}

poll();
