//! Chart.js wrappers: time-series line charts (with drag-to-zoom, event markers and min–max bands) and per-core bars, created once and updated in place.
import { clock, dateTime, num, percent, tick } from './format.js';

const charts = new Set();

let probe = null;

/** A CSS colour expression (custom properties, light-dark()) as the `rgb(…)` it resolves to now. */
function resolve(expr) {
  if (!probe) {
    probe = document.createElement('span');
    probe.hidden = true;
    document.body.append(probe);
  }
  probe.style.color = expr;
  return getComputedStyle(probe).color;
}

/** The theme's colours, resolved from the page's custom properties for the current scheme. */
function palette() {
  return {
    text: resolve('var(--muted)'),
    grid: resolve('var(--grid)'),
    series: [1, 2, 3, 4, 5, 6].map((i) => resolve(`var(--c${i})`)),
    ok: resolve('var(--ok)'),
    bad: resolve('var(--bad)'),
    accent: resolve('var(--accent)'),
  };
}

let cached = null;

/** The palette, resolved once per theme (markers are drawn on every frame). */
function colors() {
  if (!cached) cached = palette();
  return cached;
}

/** A translucent fill of an `rgb(r, g, b)` colour. */
function fill(color, alpha = 0.2) {
  const m = color.match(/^rgb\((\d+), (\d+), (\d+)\)$/);
  return m ? `rgba(${m[1]}, ${m[2]}, ${m[3]}, ${alpha})` : color;
}

function axisColors(scale, p) {
  scale.grid = { ...(scale.grid || {}), color: p.grid };
  scale.border = { ...(scale.border || {}), color: p.grid };
  scale.ticks = { ...(scale.ticks || {}), color: p.text };
}

function datasetColors(ds, i, p) {
  const c = p.series[(ds.colorIndex ?? i) % p.series.length];
  ds.borderColor = ds.band ? 'transparent' : c;
  // A band is the translucent area between its min and max; an average line fills nothing.
  if (ds.band) ds.backgroundColor = fill(c, 0.22);
  else ds.backgroundColor = ds.type === 'bar' || ds.bar || ds.avg ? c : fill(c);
}

let zoomHandler = null;

/** Sets what a drag over any line chart's time axis does: `fn(from, to)` in Unix ms. */
export function onZoom(fn) {
  zoomHandler = fn;
}

/** Lets a drag across the plot area select a time span, shown as a shaded box until released. */
function bindDrag(chart) {
  const canvas = chart.canvas;
  const sel = document.createElement('div');
  sel.className = 'zoom-sel';
  sel.hidden = true;
  canvas.parentNode.append(sel);
  let start = null;
  const clampX = (x) => Math.min(Math.max(x, chart.chartArea.left), chart.chartArea.right);
  canvas.addEventListener('pointerdown', (ev) => {
    const a = chart.chartArea;
    if (ev.button !== 0 || !zoomHandler || !a) return;
    if (ev.offsetX < a.left || ev.offsetX > a.right || ev.offsetY < a.top || ev.offsetY > a.bottom) return;
    start = ev.offsetX;
    canvas.setPointerCapture(ev.pointerId);
  });
  canvas.addEventListener('pointermove', (ev) => {
    if (start === null) return;
    const a = chart.chartArea;
    const x = clampX(ev.offsetX);
    Object.assign(sel.style, {
      left: `${canvas.offsetLeft + Math.min(start, x)}px`,
      width: `${Math.abs(x - start)}px`,
      top: `${canvas.offsetTop + a.top}px`,
      height: `${a.bottom - a.top}px`,
    });
    sel.hidden = Math.abs(x - start) < 3;
  });
  const finish = (ev, apply) => {
    if (start === null) return;
    const from = start;
    start = null;
    sel.hidden = true;
    if (!apply) return;
    const to = clampX(ev.offsetX);
    // A click, or a drag of a few pixels, is not a zoom.
    if (Math.abs(to - from) < 5) return;
    const x = chart.scales.x;
    const a = x.getValueForPixel(Math.min(from, to));
    const b = x.getValueForPixel(Math.max(from, to));
    if (Number.isFinite(a) && Number.isFinite(b) && b > a) zoomHandler(Math.round(a), Math.round(b));
  };
  canvas.addEventListener('pointerup', (ev) => finish(ev, true));
  canvas.addEventListener('pointercancel', (ev) => finish(ev, false));
}

// Event kinds drawn in the "bad" colour and in the "ok" colour; any other in the accent.
const BAD_KINDS = /fail|error|unavailable|reject|die|oom|kill|stop/i;
const OK_KINDS = /recover|start|reload/i;

function markerColor(kind, p) {
  if (BAD_KINDS.test(kind)) return p.bad;
  if (OK_KINDS.test(kind)) return p.ok;
  return p.accent;
}

/** The markers of `chart` within `px` pixels of a horizontal position. */
function markersNear(chart, px) {
  const x = chart.scales.x;
  return (chart.vitalsMarkers || []).filter((m) => m.x >= x.min && m.x <= x.max && Math.abs(x.getPixelForValue(m.x) - px) <= 5);
}

/** Draws events as dashed vertical lines with a notch at the top; the hovered ones' text shows in a tip. */
const markerPlugin = {
  id: 'vitalsMarkers',
  afterInit(chart) {
    const tip = document.createElement('div');
    tip.className = 'marker-tip';
    tip.setAttribute('role', 'tooltip');
    tip.hidden = true;
    chart.canvas.parentNode.append(tip);
    chart.vitalsTip = tip;
  },
  afterDatasetsDraw(chart) {
    const list = chart.vitalsMarkers;
    if (!list || !list.length) return;
    const { ctx, chartArea: a, scales: { x } } = chart;
    const p = colors();
    ctx.save();
    ctx.lineWidth = 1;
    for (const m of list) {
      if (m.x < x.min || m.x > x.max) continue;
      const px = Math.round(x.getPixelForValue(m.x)) + 0.5;
      const c = markerColor(m.kind, p);
      ctx.strokeStyle = c;
      ctx.fillStyle = c;
      ctx.setLineDash([3, 3]);
      ctx.beginPath();
      ctx.moveTo(px, a.top);
      ctx.lineTo(px, a.bottom);
      ctx.stroke();
      ctx.setLineDash([]);
      ctx.beginPath();
      ctx.moveTo(px - 4, a.top);
      ctx.lineTo(px + 4, a.top);
      ctx.lineTo(px, a.top + 6);
      ctx.closePath();
      ctx.fill();
    }
    ctx.restore();
  },
  afterEvent(chart, args) {
    const tip = chart.vitalsTip;
    const e = args.event;
    if (!tip) return;
    if (e.type === 'mouseout') {
      tip.hidden = true;
      return;
    }
    if (e.type !== 'mousemove') return;
    const near = markersNear(chart, e.x);
    if (!near.length) {
      tip.hidden = true;
      return;
    }
    const lines = near.slice(0, 4).map((m) => `${dateTime(m.x)}:${clock(m.x).slice(-2)} ${m.source}: ${m.text}`);
    if (near.length > 4) lines.push(`and ${near.length - 4} more`);
    tip.textContent = lines.join('\n');
    tip.hidden = false;
    // One tip at a time: the marker's text replaces the values' tooltip.
    if (chart.tooltip && chart.tooltip.getActiveElements().length) {
      chart.tooltip.setActiveElements([], { x: e.x, y: e.y });
      args.changed = true;
    }
    const px = chart.scales.x.getPixelForValue(near[0].x);
    // The tip opens towards the side with more room.
    const right = px > chart.width / 2;
    tip.style.left = right ? '' : `${chart.canvas.offsetLeft + px + 6}px`;
    tip.style.right = right ? `${chart.width - px + 6}px` : '';
    tip.style.top = `${chart.chartArea.top}px`;
  },
};

/** Shows events (`[{ x, source, kind, text }]`, x in Unix ms) as markers on a chart. */
export function setMarkers(chart, list) {
  chart.vitalsMarkers = list;
}

/** Units charted as counts: whole steps, and the axis shows the bare number (the caption has the unit). */
const NOT_COUNTS = new Set(['percent', 'bytes', 'bytes_per_second', 'celsius', 'watts', 'mhz', 'seconds', 'load', 'ratio']);

/** How a unit's value axis is stepped: `bytes` (bytes and rates), `count`, or null (Chart.js' own steps). */
export function axisKind(unit) {
  if (unit === 'bytes' || unit === 'bytes_per_second') return 'bytes';
  if (typeof unit === 'string' && unit && !NOT_COUNTS.has(unit)) return 'count';
  return null;
}

/**
 * The value axis step for `span` over at most `spaces` steps: for bytes from 512 B up a power
 * of two, so every tick is a whole or half number of the unit its label shows (8, 16, 24 GiB,
 * not 9.3, 18.6 GiB); else (and for a few bytes) 1, 2 or 5 times a power of ten, never under 1.
 */
export function niceStep(span, kind, spaces = 4) {
  if (!(span > 0) || !Number.isFinite(span)) return 1;
  const raw = span / spaces;
  if (kind === 'bytes' && span >= 512) return 2 ** Math.ceil(Math.log2(raw));
  const mag = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 5, 10].map((m) => m * mag).find((x) => x >= raw * (1 - 1e-9)) ?? 10 * mag;
  return Math.max(step, 1);
}

/** Rounds the value axis out to whole steps of `niceStep` (a fixed bound stays as it is). */
function roundLimits(scale, kind) {
  const o = scale.options;
  const step = niceStep(scale.max - scale.min, kind);
  scale.vitalsStep = step;
  if (o.max === undefined) scale.max = Math.max(Math.ceil(scale.max / step - 1e-9) * step, scale.min + step);
  if (o.min === undefined) scale.min = Math.floor(scale.min / step + 1e-9) * step || 0;
}

/** Replaces the axis' ticks by the multiples of its step (Chart.js' own are decimal). */
function roundTicks(scale) {
  const step = scale.vitalsStep;
  if (!step) return;
  const ticks = [];
  for (let i = Math.ceil(scale.min / step - 1e-9); i * step <= scale.max + step * 1e-9 && ticks.length < 50; i++) ticks.push({ value: i * step || 0 });
  if (ticks.length < 2) return;
  scale.ticks = ticks;
}

/**
 * A line chart of one or more series over time.
 * `fmt` formats a value for tooltips (and the axis, but for counts); `min`/`max` bound the
 * value axis; `unit` (the history's unit) picks round axis steps.
 */
export function lineChart(canvas, { fmt, min = 0, max, title, unit }) {
  const kind = axisKind(unit);
  const axisFmt = kind === 'count' ? (v) => num(v, 0) : fmt;
  const p = palette();
  const chart = new window.Chart(canvas, {
    type: 'line',
    data: { datasets: [] },
    options: {
      animation: false,
      responsive: true,
      maintainAspectRatio: false,
      parsing: false,
      normalized: true,
      spanGaps: false,
      interaction: { mode: 'nearest', axis: 'x', intersect: false },
      elements: { point: { radius: 0, hitRadius: 6, hoverRadius: 3 }, line: { borderWidth: 1.5, tension: 0.25 } },
      scales: {
        x: {
          type: 'linear',
          ticks: {
            callback(v) { return tick(v, this.max - this.min); },
            // The first and last labels align inside the axis: centred, they overhang it and
            // Chart.js narrows the plot to make room (a fifth of a phone's chart).
            maxTicksLimit: 4, maxRotation: 0, autoSkipPadding: 16, align: 'inner', color: p.text,
          },
          grid: { color: p.grid },
          border: { color: p.grid },
        },
        y: {
          min,
          max,
          beginAtZero: true,
          ticks: { callback: (v) => axisFmt(v), maxTicksLimit: 5, color: p.text },
          afterDataLimits: kind ? (scale) => roundLimits(scale, kind) : undefined,
          afterBuildTicks: kind ? roundTicks : undefined,
          grid: { color: p.grid },
          border: { color: p.grid },
        },
      },
      plugins: {
        // The series' names are in a legend below the chart (see sections.js), never inside
        // the canvas, where one entry per container left the plot a sliver.
        legend: { display: false },
        title: { display: false, text: title },
        tooltip: {
          // A band's edges are in its average's line of the tooltip.
          filter: (item) => !item.dataset.band,
          callbacks: {
            title: (items) => (items.length ? tick(items[0].parsed.x, items[0].chart.scales.x.max - items[0].chart.scales.x.min) : ''),
            label: (item) => {
              const r = item.raw;
              const edges = r && r.min !== undefined ? ` (min ${fmt(r.min)}, max ${fmt(r.max)})` : '';
              return `${item.dataset.label}: ${fmt(item.parsed.y)}${edges}`;
            },
          },
        },
      },
    },
    plugins: [markerPlugin],
  });
  bindDrag(chart);
  charts.add(chart);
  return chart;
}

/**
 * The dataset of `chart` labelled `label`, added (with the next colour) when missing; in
 * `list` when given (the live datasets put aside while the chart shows a past range).
 */
export function dataset(chart, label, colorIndex, list = chart.data.datasets) {
  let ds = list.find((d) => d.label === label);
  if (!ds) {
    const i = list.length;
    ds = { label, data: [], fill: true, colorIndex: colorIndex ?? i };
    datasetColors(ds, i, palette());
    list.push(ds);
  }
  return ds;
}

/**
 * The datasets of one label over a past range: the band's lower and upper edge (the upper
 * one filled down to the lower) and the average line, in that order.
 */
export function bandSets(label, colorIndex) {
  const common = { colorIndex, pointRadius: 0, pointHoverRadius: 0, pointHitRadius: 0, borderWidth: 0, tension: 0 };
  const sets = [
    { ...common, data: [], label: `${label} min`, band: 'min', fill: false },
    { ...common, data: [], label: `${label} max`, band: 'max', fill: '-1' },
    { label, data: [], colorIndex, avg: true, fill: false, tension: 0 },
  ];
  const p = palette();
  sets.forEach((ds) => datasetColors(ds, colorIndex, p));
  return sets;
}

/** Replaces a dataset's points (`[[unix_ms, value], …]`) without re-creating anything. */
export function setPoints(ds, points) {
  ds.data.length = 0;
  for (const [x, y] of points) ds.data.push({ x, y });
}

/** Appends one point, dropping the oldest beyond `cap`; false when `x` is not newer. */
export function appendPoint(ds, x, y, cap) {
  const last = ds.data[ds.data.length - 1];
  if (last && last.x >= x) return false;
  ds.data.push({ x, y });
  while (ds.data.length > cap) ds.data.shift();
  return true;
}

/** A bar chart of per-item percentages (one bar per CPU core). */
export function barChart(canvas, { label }) {
  const p = palette();
  const chart = new window.Chart(canvas, {
    type: 'bar',
    data: { labels: [], datasets: [{ label, data: [], bar: true, borderWidth: 0, barPercentage: 0.9, categoryPercentage: 0.9 }] },
    options: {
      animation: false,
      responsive: true,
      maintainAspectRatio: false,
      scales: {
        x: { ticks: { color: p.text, maxRotation: 0, autoSkip: true, autoSkipPadding: 4 }, grid: { display: false }, border: { color: p.grid } },
        y: { min: 0, max: 100, ticks: { callback: (v) => percent(v), maxTicksLimit: 5, color: p.text }, grid: { color: p.grid }, border: { color: p.grid } },
      },
      plugins: {
        legend: { display: false },
        tooltip: { callbacks: { title: (items) => `core ${items[0].label}`, label: (item) => percent(item.parsed.y) } },
      },
    },
  });
  datasetColors(chart.data.datasets[0], 0, p);
  charts.add(chart);
  return chart;
}

/** Sets the bars' labels and values in place. */
export function setBars(chart, labels, values) {
  const l = chart.data.labels;
  const d = chart.data.datasets[0].data;
  l.length = labels.length;
  d.length = values.length;
  labels.forEach((x, i) => { l[i] = x; });
  values.forEach((x, i) => { d[i] = x; });
}

/** Re-reads the theme's colours into every chart (after a light/dark switch). */
export function retheme() {
  const p = palette();
  cached = p;
  for (const chart of charts) {
    for (const scale of Object.values(chart.options.scales)) axisColors(scale, p);
    chart.data.datasets.forEach((ds, i) => datasetColors(ds, i, p));
    (chart.vitalsLive || []).forEach((ds, i) => datasetColors(ds, i, p));
    chart.update('none');
  }
}
