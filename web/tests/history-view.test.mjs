//! Guards the page's pure range parts in node: the view a URL names (and what a mangled one falls back to), the step that bounds points per chart, the range and events queries, the merged events and errors, and the time axis ticks.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { CHART_POINTS, RANGES, eventsQuery, mergeLog, parseView, rangeQuery, rangeWindow, stepFor, viewHash } from '../static/live.js';
import { tick, clock } from '../static/format.js';

const T0 = Date.UTC(2026, 10, 28, 3, 12, 0);

test('every view survives the URL: hash out, the same view back', () => {
  const views = [
    { range: 'live', from: null, to: null, zoom: null },
    { range: 'live', from: null, to: null, zoom: [T0, T0 + 60000] },
    ...['1h', '6h', '24h', '7d', '30d'].map((range) => ({ range, from: null, to: null, zoom: null })),
    { range: '6h', from: null, to: null, zoom: [T0 - 3600000, T0] },
    { range: 'custom', from: T0 - 86400000, to: T0, zoom: null },
    { range: 'custom', from: T0 - 86400000, to: T0, zoom: [T0 - 7200000, T0 - 3600000] },
  ];
  for (const v of views) assert.deepEqual(parseView(viewHash(v)), v, viewHash(v));
  assert.equal(viewHash(views[0]), '', 'live with no zoom is the plain address');
  assert.equal(viewHash(views[7]), `#range=6h&zoom=${T0 - 3600000}-${T0}`);
  assert.deepEqual(Object.keys(RANGES), ['live', '1h', '6h', '24h', '7d', '30d', 'custom']);
});

test('a mangled or hostile URL opens the live page instead of failing', () => {
  const live = { range: 'live', from: null, to: null, zoom: null };
  for (const hash of [
    '', '#', '#range=', '#range=2h', '#range=__proto__', '#range=toString', '#range=custom',
    '#range=custom&from=abc&to=1', `#range=custom&from=${T0}&to=${T0 - 1}`, `#range=custom&from=${T0}&to=${T0}`,
    `#range=custom&from=1&to=${T0}`, `#range=custom&from=${T0}&to=99999999999999999999`,
    `#range=custom&from=${T0}&to=${T0 + 1}e3`, '#%E0%A4%A', `#${'x'.repeat(100000)}`,
  ]) {
    assert.deepEqual(parseView(hash), live, hash.slice(0, 80));
  }
  // A bad zoom is dropped; the range stays.
  for (const zoom of ['x', `${T0}`, `${T0}-${T0}`, `${T0 + 5}-${T0}`, `-${T0}-${T0}`, `${T0}-${T0 + 1}-3`, `1-${T0}`]) {
    assert.deepEqual(parseView(`#range=1h&zoom=${zoom}`), { range: '1h', from: null, to: null, zoom: null }, zoom);
  }
  // Only the first 500 characters are read.
  const long = `#range=6h&pad=${'x'.repeat(1000)}&zoom=${T0}-${T0 + 1000}`;
  assert.deepEqual(parseView(long).zoom, null);
});

test('a relative range ends now; a custom one is its own times', () => {
  assert.deepEqual(rangeWindow(parseView('#range=1h'), T0), [T0 - 3600000, T0]);
  assert.deepEqual(rangeWindow(parseView('#range=30d'), T0), [T0 - 30 * 86400000, T0]);
  assert.deepEqual(rangeWindow(parseView(`#range=custom&from=${T0 - 5}&to=${T0}`), T0 + 99), [T0 - 5, T0]);
  assert.equal(rangeWindow(parseView(''), T0), null);
});

test('the step keeps every chart at 1,000 points or fewer, whatever the window', () => {
  assert.equal(CHART_POINTS, 600);
  assert.equal(stepFor(T0 - 3600000, T0), 6);
  assert.equal(stepFor(T0 - 30 * 86400000, T0), 4320);
  assert.equal(stepFor(T0 - 1000, T0), 1, 'at least a second');
  const spans = [1000, 59999, 300000, 840000, 899000, 900000, 3600000, 6 * 3600000, 86400000, 7 * 86400000, 30 * 86400000, 400 * 86400000];
  for (let s = 1000; s < 3 * 3600000; s = Math.ceil(s * 1.07)) spans.push(s);
  for (const span of spans) {
    const step = stepFor(T0 - span, T0);
    assert.ok(Number.isInteger(step) && step >= 1, `${span}: ${step}`);
    assert.ok(Math.ceil(span / (step * 1000)) + 1 <= 1000, `${span} ms at ${step} s is ${Math.ceil(span / (step * 1000))} points`);
  }
});

test('range and events queries name what the host documents', () => {
  assert.equal(rangeQuery('cpu', T0 - 3600000, T0), `history?series=cpu&from=${T0 - 3600000}&to=${T0}&step=6s`);
  const csv = new URLSearchParams(rangeQuery('disk.read_bytes_per_second', T0 - 0.5, T0 + 0.5, { label: '/mnt/a b', csv: true }).split('?')[1]);
  assert.deepEqual(Object.fromEntries(csv), {
    series: 'disk.read_bytes_per_second', from: String(T0 - 1), to: String(T0 + 1), step: '1s', label: '/mnt/a b', format: 'csv',
  });
  assert.equal(eventsQuery(T0 - 10, T0), `events?from=${T0 - 10}&to=${T0}&limit=500`);
  assert.equal(eventsQuery(T0 - 10, T0, 'collector:gpu'), `events?from=${T0 - 10}&to=${T0}&limit=500&source=collector%3Agpu`);
});

test('events and errors merge newest first, errors as the kind "error"', () => {
  const rows = mergeLog(
    [
      { time_unix_ms: T0, source: 'host', kind: 'started', text: 'vitals started' },
      { time_unix_ms: T0 + 2000, source: 'collector:gpu', kind: 'failed', text: 'gpu failed' },
      { time_unix_ms: 'soon', source: 'x', kind: 'y', text: 'dropped: no time' },
    ],
    [{ time_unix_ms: T0 + 1000, source: 'collector:gpu', message: 'NVML: driver not loaded' }],
  );
  assert.deepEqual(rows.map((r) => [r.time, r.source, r.kind, r.text, r.error]), [
    [T0 + 2000, 'collector:gpu', 'failed', 'gpu failed', false],
    [T0 + 1000, 'collector:gpu', 'error', 'NVML: driver not loaded', true],
    [T0, 'host', 'started', 'vitals started', false],
  ]);
  assert.deepEqual(mergeLog(undefined, null), []);
});

test('time axis ticks: seconds for the live window, minutes for hours, the date beyond a day and a half', () => {
  assert.equal(tick(T0, 5 * 60000), clock(T0));
  assert.match(tick(T0, 3600000), /^\d\d:\d\d$/);
  assert.match(tick(T0, 7 * 86400000), /^\d\d-\d\d \d\d:\d\d$/);
  const d = new Date(T0);
  assert.ok(tick(T0, 7 * 86400000).startsWith(`${String(d.getMonth() + 1).padStart(2, '0')}-${String(d.getDate()).padStart(2, '0')}`));
});
