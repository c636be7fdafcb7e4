//! Chart.js wrappers: time-series line charts and per-core bars, created once and updated in place.
import { clock, percent } from './format.js';

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
  };
}

/** A translucent fill of an `rgb(r, g, b)` colour. */
function fill(color) {
  const m = color.match(/^rgb\((\d+), (\d+), (\d+)\)$/);
  return m ? `rgba(${m[1]}, ${m[2]}, ${m[3]}, 0.2)` : color;
}

function axisColors(scale, p) {
  scale.grid = { ...(scale.grid || {}), color: p.grid };
  scale.border = { ...(scale.border || {}), color: p.grid };
  scale.ticks = { ...(scale.ticks || {}), color: p.text };
}

function datasetColors(ds, i, p) {
  const c = p.series[(ds.colorIndex ?? i) % p.series.length];
  ds.borderColor = c;
  ds.backgroundColor = ds.type === 'bar' || ds.bar ? c : fill(c);
}

/**
 * A line chart of one or more series over time.
 * `fmt` formats a value for the axis and tooltips; `min`/`max` bound the value axis.
 */
export function lineChart(canvas, { fmt, min = 0, max, title }) {
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
          ticks: { callback: (v) => clock(v), maxTicksLimit: 4, maxRotation: 0, autoSkipPadding: 16, color: p.text },
          grid: { color: p.grid },
          border: { color: p.grid },
        },
        y: {
          min,
          max,
          beginAtZero: true,
          ticks: { callback: (v) => fmt(v), maxTicksLimit: 5, color: p.text },
          grid: { color: p.grid },
          border: { color: p.grid },
        },
      },
      plugins: {
        legend: { display: false, labels: { color: p.text, boxWidth: 10, boxHeight: 10 } },
        title: { display: false, text: title },
        tooltip: {
          callbacks: {
            title: (items) => (items.length ? clock(items[0].parsed.x) : ''),
            label: (item) => `${item.dataset.label}: ${fmt(item.parsed.y)}`,
          },
        },
      },
    },
  });
  charts.add(chart);
  return chart;
}

/** The dataset of `chart` labelled `label`, added (with the next colour) when missing. */
export function dataset(chart, label, colorIndex) {
  let ds = chart.data.datasets.find((d) => d.label === label);
  if (!ds) {
    const i = chart.data.datasets.length;
    ds = { label, data: [], fill: true, colorIndex: colorIndex ?? i };
    datasetColors(ds, i, palette());
    chart.data.datasets.push(ds);
    chart.options.plugins.legend.display = chart.data.datasets.length > 1;
  }
  return ds;
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
  for (const chart of charts) {
    for (const scale of Object.values(chart.options.scales)) axisColors(scale, p);
    if (chart.options.plugins.legend.labels) chart.options.plugins.legend.labels.color = p.text;
    chart.data.datasets.forEach((ds, i) => datasetColors(ds, i, p));
    chart.update('none');
  }
}
