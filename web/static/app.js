//! The dashboard's entry point: loads the snapshot and history, builds the cards, keeps them live, and shows a past range (picker, zoom, events) when the URL asks for one.
import { el, setText, Table } from './dom.js';
import { clock, dateTime, duration } from './format.js';
import { appendPoint, onZoom, setPoints, retheme } from './charts.js';
import {
  api, session, Feed, HttpError, ERROR_LIMIT, eventsQuery, mergeLog, parseView, rangeQuery, rangeWindow, stepFor, viewHash,
} from './live.js';
import { Card, ORDER, chartSlots, describeStatus, seriesValues, setTimeAxis } from './sections.js';

const $ = (id) => document.getElementById(id);

const state = {
  cards: new Map(),
  chips: new Map(),
  // Per collector: the collects_total the charts are up to date with.
  seen: new Map(),
  // Per collector: its history series as the host describes them (name, label, unit).
  series: new Map(),
  // History length kept by the host; the charts never hold more.
  cap: 60,
  refetching: new Map(),
  emptyAsks: new Map(),
  // Per collector: its last status as JSON, to skip cards that did not change.
  sigs: new Map(),
  feed: null,
  snapshot: null,
  // What the charts show: live or a past range, and a zoom (see live.js `parseView`).
  view: parseView(location.hash),
  // The past range's window `[from, to]` as resolved when it was chosen; null when live.
  window: null,
  viewSeq: 0,
  // The events and errors panel: the last answers, the chosen source, the request in flight.
  log: { events: [], errors: [] },
  source: 'all',
  sources: new Set(),
  logSeq: 0,
  logTimer: null,
  logSig: '',
  // Why the host has no stored events (no durable history), once it said so.
  eventsOff: null,
};

const CONN_TEXT = {
  connecting: 'connecting', live: 'live', polling: 'polling every 5 s', offline: 'offline', login: 'signed out',
};

function setConn(s) {
  const c = $('conn');
  c.dataset.state = s;
  setText(c.querySelector('.label'), CONN_TEXT[s] || s);
  c.title = {
    live: 'updates stream from the host as they happen (Server-Sent Events)',
    polling: 'the stream failed: asking the host every 5 s, and retrying the stream',
    offline: 'the host does not answer; retrying',
  }[s] || '';
}

function notice(text) {
  const n = $('notice');
  n.hidden = !text;
  setText(n, text || '');
}

// Theme: the system's preference unless the user picked one here.
function applyTheme() {
  const saved = localStorage.getItem('vitals-theme');
  if (saved === 'light' || saved === 'dark') document.documentElement.dataset.theme = saved;
  else delete document.documentElement.dataset.theme;
}

function currentTheme() {
  return document.documentElement.dataset.theme
    || (matchMedia('(prefers-color-scheme: dark)').matches ? 'dark' : 'light');
}

function bindTheme() {
  $('theme').addEventListener('click', () => {
    const next = currentTheme() === 'dark' ? 'light' : 'dark';
    const system = matchMedia('(prefers-color-scheme: dark)').matches ? 'dark' : 'light';
    // Back on the system's scheme, the page follows the system again.
    if (next === system) localStorage.removeItem('vitals-theme');
    else localStorage.setItem('vitals-theme', next);
    applyTheme();
    retheme();
  });
  matchMedia('(prefers-color-scheme: dark)').addEventListener('change', () => retheme());
}

function ordered(names) {
  const known = ORDER.filter((n) => names.includes(n));
  const rest = names.filter((n) => !ORDER.includes(n)).sort();
  return [...known, ...rest];
}

function card(name) {
  let c = state.cards.get(name);
  if (!c) {
    c = new Card(name);
    state.cards.set(name, c);
    // Keep the fixed order even when a collector appears later.
    const names = ordered([...state.cards.keys()]);
    const next = names.slice(names.indexOf(name) + 1).map((n) => state.cards.get(n)).find((x) => x && x.el.isConnected);
    $('cards').insertBefore(c.el, next ? next.el : null);
  }
  return c;
}

function renderHealth(collectors) {
  const nav = $('health');
  const names = ordered(Object.keys(collectors));
  for (const name of names) {
    let chip = state.chips.get(name);
    if (!chip) {
      chip = el('a', { class: 'chip', href: `#card-${name}`, 'data-collector': name },
        el('span', { class: 'dot' }), el('span', { class: 'cname', text: name }), el('span', { class: 'cstate' }));
      state.chips.set(name, chip);
    }
    const st = collectors[name];
    const { state: s, text } = describeStatus(name, st);
    const shown = st && st.stale && s !== 'ok' ? `${s}, stale` : s;
    chip.dataset.state = s;
    chip.dataset.stale = st && st.stale ? 'true' : 'false';
    setText(chip.querySelector('.cstate'), shown);
    if (chip.title !== text) chip.title = text;
    if (nav.children[names.indexOf(name)] !== chip) nav.insertBefore(chip, nav.children[names.indexOf(name)] || null);
  }
  for (const [name, chip] of state.chips) {
    if (!(name in collectors)) {
      chip.remove();
      state.chips.delete(name);
    }
  }
}

/** Fills one collector's charts from its history, replacing what they held. */
function fillHistory(collector, list) {
  const c = state.cards.get(collector) || card(collector);
  state.series.set(collector, list.map(({ name, label, unit, pointer, label_field: lf }) => ({ name, label, unit, pointer, labelField: lf })));
  const touched = new Set();
  for (const s of list) {
    const t = c.target(s);
    if (!t) continue;
    t.slot.source(collector, s.name, s.label);
    // Points appended from snapshots while this history was on its way are newer than it: keep them.
    const last = s.points.length ? s.points[s.points.length - 1][0] : -Infinity;
    const newer = t.ds.data.filter((p) => p.x > last);
    setPoints(t.ds, s.points);
    for (const p of newer) appendPoint(t.ds, p.x, p.y, state.cap);
    touched.add(t.slot);
  }
  for (const slot of touched) slot.refresh();
}

/** Where a series' value sits in its section, as the host describes it (null for a host that does not say). */
function pointerOf(s) {
  return s.pointer ? [s.pointer, s.labelField] : null;
}

/** Re-reads one collector's history (after missed updates, or for series of unknown shape). */
async function refetch(collector) {
  if (state.refetching.get(collector)) {
    state.refetching.set(collector, 'again');
    return;
  }
  state.refetching.set(collector, 'busy');
  try {
    const h = await api(`history?collector=${encodeURIComponent(collector)}`);
    if (h && h[collector]) fillHistory(collector, h[collector]);
  } catch (e) {
    if (e instanceof HttpError && e.status === 401) showLogin();
  } finally {
    const again = state.refetching.get(collector) === 'again';
    state.refetching.delete(collector);
    if (again) refetch(collector);
  }
}

/** Appends the new collect's values to the charts, or re-reads the history when it cannot. */
function advanceCharts(snap) {
  for (const [name, st] of Object.entries(snap.collectors || {})) {
    const total = st.collects_total ?? 0;
    const seen = state.seen.get(name);
    state.seen.set(name, total);
    if (seen === undefined || total === seen) continue;
    const series = state.series.get(name) || [];
    if (series.length === 0) {
      // Most collectors chart nothing; ask again only for the first few collects, when a
      // collector that does chart may not have reported yet.
      const asked = state.emptyAsks.get(name) || 0;
      if (asked < 3) {
        state.emptyAsks.set(name, asked + 1);
        refetch(name);
      }
      continue;
    }
    const section = snap.sections ? snap.sections[name] : undefined;
    const at = st.last_success ? Date.parse(st.last_success) : NaN;
    const pointers = series.map(pointerOf);
    const exact = total === seen + 1 && section && !Number.isNaN(at) && pointers.every(Boolean);
    if (!exact) {
      // A skipped collect (polling, coalesced events), a new collector or series of unknown shape.
      refetch(name);
      continue;
    }
    const c = state.cards.get(name);
    const touched = new Set();
    const byPointer = new Map();
    let unknown = false;
    for (const [i, s] of series.entries()) {
      const [pointer, lf] = pointers[i];
      const key = `${pointer}|${lf || ''}`;
      if (!byPointer.has(key)) byPointer.set(key, new Map(seriesValues(section, pointer, lf)));
      const values = byPointer.get(key);
      if (!values.has(s.label)) continue;
      const t = c && c.target(s);
      if (!t) continue;
      appendPoint(t.ds, at, values.get(s.label), state.cap);
      touched.add(t.slot);
    }
    // A label the history has not seen yet (a new GPU, a new mount) comes with the next read.
    for (const [key, values] of byPointer) {
      const [pointer] = key.split('|');
      for (const label of values.keys()) {
        if (!series.some((s) => s.pointer === pointer && s.label === label)) unknown = true;
      }
    }
    for (const slot of touched) slot.refresh();
    if (unknown) refetch(name);
  }
}

function applySnapshot(snap) {
  // A poll answered after a newer streamed snapshot (as the stream takes over) is old news.
  if (state.snapshot && snap.timestamp_unix_ms < state.snapshot.timestamp_unix_ms) return;
  state.snapshot = snap;
  const collectors = snap.collectors || {};
  const sections = snap.sections || {};
  for (const name of ordered(Object.keys(collectors))) {
    // A new section always comes with a new status (collects_total, last_success), so an
    // unchanged status means nothing to redo for that card.
    const sig = JSON.stringify(collectors[name]);
    if (state.sigs.get(name) === sig && state.cards.has(name)) continue;
    state.sigs.set(name, sig);
    card(name).update(sections[name], collectors[name]);
  }
  for (const [name, c] of state.cards) {
    if (!(name in collectors)) {
      c.el.remove();
      state.cards.delete(name);
      state.sigs.delete(name);
    }
  }
  renderHealth(collectors);
  const host = sections.system && sections.system.hostname;
  if (host) {
    setText($('host'), host);
    document.title = `${host} · vitals`;
  }
  if (snap.timestamp_unix_ms) setText($('updated'), clock(snap.timestamp_unix_ms));
  advanceCharts(snap);
  // A collector that failed, recovered or changed state has a new event: the live panel shows it.
  const sig = JSON.stringify(Object.entries(collectors).map(([n, st]) => [n, st.state, st.last_error && st.last_error.time]));
  if (sig !== state.logSig) {
    const first = !state.logSig;
    state.logSig = sig;
    if (!first && !state.window) scheduleLog();
  }
}


/** Shows a view: the live charts, or every chart over one past window with bands and markers. */
async function showView(view, { push = false } = {}) {
  state.view = view;
  const hash = viewHash(view);
  if (push && hash !== location.hash) history.pushState(null, '', hash || `${location.pathname}${location.search}`);
  const seq = ++state.viewSeq;
  // A zoom keeps the range it zoomed into; anything else resolves a relative range from now.
  if (!(view.zoom && state.window && state.window.range === view.range)) {
    const w = rangeWindow(view);
    state.window = w ? { range: view.range, from: w[0], to: w[1] } : null;
  }
  renderRangeBar();
  notice('');
  if (!state.window) {
    for (const slot of chartSlots()) slot.leaveRange();
    setTimeAxis(view.zoom);
    setText($('range-status'), view.zoom ? `live, zoomed to ${spanText(view.zoom[0], view.zoom[1])}` : '');
    refreshLog();
    return;
  }
  const [from, to] = view.zoom || [state.window.from, state.window.to];
  setTimeAxis([from, to]);
  for (const slot of chartSlots()) slot.enterRange();
  refreshLog();
  $('rangebar').dataset.loading = 'true';
  setText($('range-status'), `loading ${spanText(from, to)}…`);
  const collectors = [...state.series].filter(([, list]) => list.length).map(([name]) => name);
  const answers = await Promise.allSettled(collectors.map((c) => api(rangeQuery(c, from, to))));
  if (seq !== state.viewSeq) return;
  const failed = [];
  let step = stepFor(from, to) * 1000;
  answers.forEach((a, i) => {
    if (a.status === 'rejected') {
      if (a.reason instanceof HttpError && a.reason.status === 401) showLogin();
      failed.push(`${collectors[i]}: ${a.reason.message}`);
      return;
    }
    step = a.value.step || step;
    for (const s of a.value.series || []) {
      const c = state.cards.get(s.collector);
      const t = c && c.target(s);
      if (!t) continue;
      t.slot.source(s.collector, s.name, s.label);
      t.slot.showRange(t.ds.label, t.ds.colorIndex, s.points || [], a.value.step || step);
    }
  });
  delete $('rangebar').dataset.loading;
  setText($('range-status'), `${spanText(from, to)} · a point per ${duration(step / 1000)}`);
  if (failed.length) notice(`The stored history did not answer for ${failed.join('; ')}`);
}

/** A window as text: to the second, and the end without its date when it is the same day. */
function spanText(from, to) {
  const at = (ms) => `${dateTime(ms)}:${clock(ms).slice(-2)}`;
  const sameDay = dateTime(from).slice(0, 10) === dateTime(to).slice(0, 10);
  return `${at(from)} – ${sameDay ? clock(to) : at(to)}`;
}

/** A `datetime-local` input's value for Unix ms, in the browser's zone, to the second. */
function localInput(ms) {
  const d = new Date(ms);
  const p = (n) => String(n).padStart(2, '0');
  return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())}T${p(d.getHours())}:${p(d.getMinutes())}:${p(d.getSeconds())}`;
}

function renderRangeBar() {
  const v = state.view;
  for (const b of document.querySelectorAll('#ranges [data-range]')) b.setAttribute('aria-pressed', String(b.dataset.range === v.range));
  $('back-live').hidden = v.range === 'live' && !v.zoom;
  $('unzoom').hidden = !v.zoom;
  $('custom').hidden = v.range !== 'custom';
  if (v.range === 'custom') {
    $('custom-from').value = localInput(v.from);
    $('custom-to').value = localInput(v.to);
  }
  document.body.dataset.view = v.range === 'live' ? 'live' : 'range';
}

function bindRangeBar() {
  $('ranges').addEventListener('click', (ev) => {
    const b = ev.target.closest('[data-range]');
    if (!b) return;
    const range = b.dataset.range;
    if (range === 'custom') {
      // The form opens on the window shown now; the view changes when it is submitted.
      const [from, to] = state.view.zoom || (state.window ? [state.window.from, state.window.to] : [Date.now() - 3600e3, Date.now()]);
      $('custom').hidden = false;
      $('custom-from').value = localInput(from);
      $('custom-to').value = localInput(to);
      $('custom-from').focus();
      return;
    }
    showView({ range, from: null, to: null, zoom: null }, { push: true });
  });
  $('custom').addEventListener('submit', (ev) => {
    ev.preventDefault();
    const from = new Date($('custom-from').value).getTime();
    const to = new Date($('custom-to').value).getTime();
    if (!(Number.isFinite(from) && Number.isFinite(to) && to > from)) {
      setText($('range-status'), 'the end must be after the start');
      return;
    }
    showView({ range: 'custom', from, to, zoom: null }, { push: true });
  });
  $('back-live').addEventListener('click', () => showView({ range: 'live', from: null, to: null, zoom: null }, { push: true }));
  $('unzoom').addEventListener('click', () => showView({ ...state.view, zoom: null }, { push: true }));
  onZoom((from, to) => showView({ ...state.view, zoom: [from, to] }, { push: true }));
  addEventListener('popstate', () => showView(parseView(location.hash)));
}

/** Re-reads the panel soon (several changes in a few seconds cost one read). */
function scheduleLog() {
  if (state.logTimer) return;
  state.logTimer = setTimeout(() => {
    state.logTimer = null;
    refreshLog();
  }, 3000);
}

/** The window the panel and markers cover: the view's, or the last day when live. */
function logWindow() {
  if (state.view.zoom) return state.view.zoom;
  if (state.window) return [state.window.from, state.window.to];
  const now = Date.now();
  return [now - 24 * 3600e3, now + 60e3];
}

/** Reads stored events and recent errors, then fills the panel and the charts' markers. */
async function refreshLog() {
  const seq = ++state.logSeq;
  const [from, to] = logWindow();
  const source = state.source === 'all' ? undefined : state.source;
  // A host that keeps no durable history (503) has no stored events: ask for its errors only.
  const events = state.eventsOff ? Promise.resolve({ events: [] }) : api(eventsQuery(from, to, source));
  const [ev, er] = await Promise.allSettled([events, api(`errors?limit=${ERROR_LIMIT}`)]);
  if (seq !== state.logSeq) return;
  if (ev.status === 'rejected' && ev.reason instanceof HttpError && ev.reason.status === 503) state.eventsOff = ev.reason.message;
  const problems = [ev, er].filter((a) => a.status === 'rejected' && !(a === ev && state.eventsOff)).map((a) => a.reason.message);
  state.log = {
    events: ev.status === 'fulfilled' ? ev.value.events || [] : [],
    // Errors are the host's recent ones; a past range shows those inside it.
    errors: er.status === 'fulfilled' ? (er.value.errors || []).filter((e) => !state.window || (e.time_unix_ms >= from && e.time_unix_ms <= to)) : [],
  };
  setText($('log-error'), problems.length ? `Could not read: ${problems.join('; ')}` : '');
  $('log-error').hidden = !problems.length;
  renderLog();
  // Each chart marks its own collector's events and the host's (start, stop, config).
  const marks = state.log.events.map((e) => ({ x: e.time_unix_ms, source: e.source, kind: e.kind, text: e.text }));
  for (const slot of chartSlots()) {
    slot.markers(marks.filter((m) => m.source === `collector:${slot.collector}` || !m.source.startsWith('collector:')));
  }
}

const logTable = new Table({
  name: 'log',
  sortable: false,
  key: (r) => `${r.time}|${r.source}|${r.kind}`,
  columns: [
    { id: 'time', label: 'time', text: (r) => `${dateTime(r.time)}:${clock(r.time).slice(-2)}`, title: (r) => new Date(r.time).toISOString(), cls: 'time' },
    { id: 'source', label: 'source', text: (r) => r.source },
    { id: 'kind', label: 'what', text: (r) => r.kind, cls: 'kind' },
    { id: 'text', label: 'text', text: (r) => r.text, cls: 'text' },
  ],
  empty: 'no events or errors in this window',
});

function renderLog() {
  const rows = mergeLog(state.log.events, state.log.errors).filter((r) => state.source === 'all' || r.source === state.source);
  logTable.update(rows);
  for (const tr of logTable.tbody.children) {
    const kind = tr.querySelector('td[data-col="kind"]').textContent;
    tr.dataset.kind = kind;
  }
  const select = $('log-source');
  // Every source seen stays a choice, so one filter can change to another directly.
  for (const r of [...state.log.events, ...state.log.errors]) if (state.sources.size < 1000) state.sources.add(r.source);
  state.sources.add(state.source);
  state.sources.delete('all');
  const want = ['all', ...[...state.sources].sort()];
  if ([...select.options].map((o) => o.value).join('\n') !== want.join('\n')) {
    select.replaceChildren(...want.map((v) => el('option', { value: v, text: v === 'all' ? 'all sources' : v })));
  }
  select.value = state.source;
  setText($('log-sub'), state.eventsOff ? `${rows.length} errors shown · no stored events: ${state.eventsOff}` : `${rows.length} shown · ${spanText(...logWindow())}`);
}

function bindLog() {
  $('log-table').append(logTable.el);
  $('log-source').addEventListener('change', () => {
    state.source = $('log-source').value;
    renderLog();
    refreshLog();
  });
}


function showLogin(message) {
  if (state.feed) state.feed.stop();
  setConn('login');
  $('login').hidden = false;
  $('cards').hidden = true;
  $('health').hidden = true;
  $('rangebar').hidden = true;
  $('log').hidden = true;
  $('requests').hidden = true;
  setText($('login-error'), message || '');
  $('token').focus();
}

async function loadAll() {
  $('login').hidden = true;
  $('cards').hidden = false;
  $('health').hidden = false;
  $('rangebar').hidden = false;
  $('log').hidden = false;
  // The snapshot first, then the history: the history is then at least as new as the
  // snapshot, so appending later collects never leaves a gap.
  const snap = await api('system');
  for (const [name, st] of Object.entries(snap.collectors || {})) state.seen.set(name, st.collects_total ?? 0);
  applySnapshot(snap);
  const hist = await api('history');
  for (const list of Object.values(hist || {})) for (const s of list) state.cap = Math.max(state.cap, s.points.length);
  for (const [name, list] of Object.entries(hist || {})) fillHistory(name, list);
  notice('');
  showView(state.view);
  if (!state.feed) state.feed = new Feed({ onSnapshot: applySnapshot, onState: (s) => (s === 'login' ? showLogin() : setConn(s)) });
  state.feed.start();
}

async function start() {
  try {
    const s = await session();
    $('logout').hidden = !s.auth_required;
    if (s.auth_required && !s.role) {
      showLogin();
      return;
    }
    await loadAll();
  } catch (e) {
    if (e instanceof HttpError && e.status === 401) {
      showLogin();
      return;
    }
    setConn('offline');
    notice(`Cannot reach the host: ${e.message}. Retrying in 5 s.`);
    setTimeout(start, 5000);
  }
}

function bindLogin() {
  $('login-form').addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const token = $('token').value;
    try {
      await api('login', { method: 'POST', body: { token } });
      $('token').value = '';
      setText($('login-error'), '');
      $('logout').hidden = false;
      await loadAll();
    } catch (e) {
      setText($('login-error'), e instanceof HttpError && e.status === 401 ? 'That token is not valid.' : `Sign-in failed: ${e.message}`);
    }
  });
  $('logout').addEventListener('click', async () => {
    try {
      await api('logout', { method: 'POST' });
    } catch {
      // Signed out either way: the cookie is gone or was never there.
    }
    showLogin();
  });
}

applyTheme();
bindTheme();
bindLogin();
bindRangeBar();
bindLog();
start();
