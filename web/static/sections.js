//! One card per collector: built-in sections get tailored tables and charts, any other section a generic view.
import { el, setText, KeyValue, Table } from './dom.js';
import * as f from './format.js';
import { lineChart, dataset, bandSets, barChart, setBars, setMarkers } from './charts.js';
import { rangeQuery } from './live.js';

/** Titles of the built-in collectors; any other collector is titled by its name. */
export const TITLES = {
  gpu: 'GPU', cpu: 'CPU', memory: 'Memory', disk: 'Disks', network: 'Network',
  docker: 'Docker', process: 'Processes', system: 'System',
};

/** The order of the built-in cards; other collectors follow, by name. */
export const ORDER = ['gpu', 'cpu', 'memory', 'disk', 'network', 'docker', 'process', 'system'];

/**
 * The numeric values a pointer selects in a section, with their labels, as the host computes
 * them for its history: a `*` segment walks an array, labelling each element by `labelField`.
 */
export function seriesValues(section, pointer, labelField) {
  const out = [];
  const segs = pointer.split('/').slice(1);
  const walk = (v, i, label) => {
    if (i === segs.length) {
      if (typeof v === 'number') out.push([label, v]);
      return;
    }
    const s = segs[i];
    if (s === '*') {
      if (!Array.isArray(v)) return;
      v.forEach((item, n) => {
        let l = String(n);
        if (labelField && item && typeof item === 'object' && item[labelField] !== undefined && item[labelField] !== null) {
          const x = item[labelField];
          l = typeof x === 'string' ? x : JSON.stringify(x);
        }
        walk(item, i + 1, l);
      });
      return;
    }
    if (Array.isArray(v)) {
      const n = Number(s);
      if (Number.isInteger(n) && n >= 0 && n < v.length) walk(v[n], i + 1, label);
    } else if (v && typeof v === 'object' && s in v) {
      walk(v[s], i + 1, label);
    }
  };
  walk(section, 0, null);
  return out;
}

const dirty = new Set();

/** Every chart slot made, to switch them all between live and a past range at once. */
const slots = new Set();

// The time axis every chart shows, `[from, to]` in Unix ms; null: each spans its own data.
let timeAxis = null;

/** Fixes every chart's time axis to `[from, to]` (Unix ms), or frees it to span the data (null). */
export function setTimeAxis(w) {
  timeAxis = w ? [w[0], w[1]] : null;
  for (const slot of slots) slot.refresh();
}

/** Every chart slot made so far. */
export function chartSlots() {
  return [...slots];
}

function drawDirty() {
  for (const slot of dirty) slot.draw();
  dirty.clear();
}

/** A chart with a caption that shows the latest value. */
class ChartSlot {
  constructor(title, fmt, opts = {}) {
    this.fmt = fmt;
    this.now = el('span', { class: 'now' });
    const canvas = el('canvas', { role: 'img', 'aria-label': title });
    // The CSV of what the chart shows, once the series behind it are known.
    this.csv = el('a', { class: 'csv', text: 'CSV', hidden: true, download: '', title: 'download these series as CSV' });
    // The series' names, below the plot: as many as there are containers without shrinking it.
    this.legend = el('ul', { class: 'legend', hidden: true, 'aria-label': `${title}: series` });
    this.legendSig = '';
    this.el = el('figure', { class: 'chart', 'data-chart': opts.id || title },
      el('figcaption', {}, el('span', { class: 'title', text: title }), this.csv, this.now),
      el('div', { class: 'canvas-box' }, canvas), this.legend);
    this.collector = String(opts.id || '').split('.')[0];
    this.names = new Set();
    this.labels = new Set();
    this.bands = null;
    const unit = opts.unit ?? (fmt === f.bytes ? 'bytes' : fmt === f.rate ? 'bytes_per_second' : undefined);
    this.chart = lineChart(canvas, { fmt, min: opts.min ?? 0, max: opts.max, title, unit });
    // Until a point arrives (a GPU without fans never sends one) the chart says so.
    this.el.classList.add('nodata');
    slots.add(this);
  }

  /** The live dataset for one label (one line), also while the chart shows a past range. */
  dataset(label, colorIndex) {
    return dataset(this.chart, label, colorIndex, this.chart.vitalsLive || undefined);
  }

  /** Notes a history series this chart shows, for its CSV link. */
  source(collector, name, label) {
    this.collector = collector;
    this.names.add(name);
    if (label !== null && label !== undefined) this.labels.add(label);
  }

  /** Puts the live lines aside (they keep growing) and shows the bands of a past range instead. */
  enterRange() {
    if (!this.chart.vitalsLive) this.chart.vitalsLive = this.chart.data.datasets;
    this.chart.data.datasets = [];
    this.bands = new Map();
    this.refresh();
  }

  /**
   * Shows one label's points of a range query (`[time, min, avg, max, count]`, one per
   * `stepMs`): the average as a line inside a min–max band, broken where steps have no data.
   */
  showRange(label, colorIndex, points, stepMs) {
    if (!this.bands) this.enterRange();
    let sets = this.bands.get(label);
    if (!sets) {
      sets = bandSets(label, colorIndex ?? this.bands.size);
      this.bands.set(label, sets);
      this.chart.data.datasets.push(...sets);
    }
    const [lo, hi, avg] = sets.map((d) => d.data);
    lo.length = 0;
    hi.length = 0;
    avg.length = 0;
    let prev = null;
    for (const [x, min, mean, max, n] of points) {
      if (prev !== null && x - prev > 2 * stepMs) {
        const gap = { x: (prev + x) / 2, y: null };
        lo.push(gap);
        hi.push(gap);
        avg.push(gap);
      }
      lo.push({ x, y: min });
      hi.push({ x, y: max });
      avg.push({ x, y: mean, min, max, n });
      prev = x;
    }
    this.refresh();
  }

  /** Back to the live lines. */
  leaveRange() {
    if (this.chart.vitalsLive) {
      this.chart.data.datasets = this.chart.vitalsLive;
      delete this.chart.vitalsLive;
    }
    this.bands = null;
    this.refresh();
  }

  /** Shows events (`[{ x, source, kind, text }]`) as markers. */
  markers(list) {
    setMarkers(this.chart, list);
    this.refresh();
  }

  /** Redraws at the next frame: several updates in one frame cost one drawing, a hidden tab none. */
  refresh() {
    if (dirty.size === 0) requestAnimationFrame(drawDirty);
    dirty.add(this);
  }

  /** Draws the current data and refreshes the caption. */
  draw() {
    const sets = this.chart.data.datasets;
    const lasts = sets.map((d) => d.data[d.data.length - 1]).filter(Boolean);
    const firsts = sets.map((d) => d.data[0]).filter(Boolean);
    setText(this.now, sets.length === 1 && lasts.length ? this.fmt(lasts[0].y) : '');
    this.el.classList.toggle('nodata', lasts.length === 0);
    // The time axis spans the data exactly, instead of rounding out to a "nice" minute,
    // unless every chart follows one axis (a past range, a zoom).
    const x = this.chart.options.scales.x;
    if (timeAxis) [x.min, x.max] = timeAxis;
    else {
      x.min = firsts.length ? Math.min(...firsts.map((p) => p.x)) : undefined;
      x.max = lasts.length ? Math.max(...lasts.map((p) => p.x)) : undefined;
    }
    this.drawCsv(x.min, x.max);
    this.drawLegend(sets);
    this.chart.update('none');
  }

  /** One entry per line (a band's edges are its line's), when there are two lines or more. */
  drawLegend(sets) {
    const lines = sets.filter((d) => !d.band).map((d, i) => [d.label, (d.colorIndex ?? i) % 6]);
    const sig = JSON.stringify(lines);
    if (sig === this.legendSig) return;
    this.legendSig = sig;
    this.legend.hidden = lines.length < 2;
    this.legend.replaceChildren(...(lines.length < 2 ? [] : lines.map(([label, c]) => el('li', { title: label },
      el('span', { class: 'swatch', 'data-color': String(c), 'aria-hidden': 'true' }), el('span', { class: 'name', text: label })))));
  }

  drawCsv(from, to) {
    const ok = this.names.size > 0 && Number.isFinite(from) && Number.isFinite(to) && to > from;
    this.csv.hidden = !ok;
    if (!ok) return;
    // Two series on one chart (RAM and swap) download as their collector's whole set.
    const series = this.names.size === 1 ? `${this.collector}.${[...this.names][0]}` : this.collector;
    const label = this.labels.size === 1 ? [...this.labels][0] : undefined;
    const href = rangeQuery(series, from, to, { label, csv: true });
    if (this.csv.getAttribute('href') !== href) this.csv.setAttribute('href', href);
  }

  /** Sets the value axis' upper bound (e.g. the installed VRAM). */
  setMax(max) {
    const y = this.chart.options.scales.y;
    if (max && y.max !== max) y.max = max;
  }
}

/** A heading and a body, for a part of a card. */
function part(title, ...children) {
  return el('div', { class: 'part' }, title ? el('h3', { text: title }) : null, ...children);
}

/** Renders what no tailored view knows: scalars as key/value, arrays of objects as tables. */
class GenericView {
  constructor(name) {
    this.name = name;
    this.kv = new KeyValue(name);
    this.tables = new Map();
    this.el = el('div', { class: 'generic' }, this.kv.el);
  }

  update(section) {
    if (section === null || typeof section !== 'object' || Array.isArray(section)) {
      this.kv.update([['value', f.plain(section)]]);
      return;
    }
    const entries = [];
    const flatten = (obj, prefix) => {
      for (const [k, v] of Object.entries(obj)) {
        const label = prefix ? `${prefix} › ${f.field(k).label}` : f.field(k).label;
        if (Array.isArray(v) && v.length && v.every((x) => x && typeof x === 'object' && !Array.isArray(x))) {
          this.table(prefix ? `${prefix}.${k}` : k).update(v);
        } else if (v && typeof v === 'object' && !Array.isArray(v)) {
          flatten(v, label);
        } else if (Array.isArray(v) && v.length === 0 && this.tables.has(k)) {
          this.tables.get(k).update([]);
        } else {
          entries.push([label, f.byField(k, v)]);
        }
      }
    };
    flatten(section, '');
    this.kv.update(entries);
  }

  /** The table for one array field, re-made only when its columns change. */
  table(key) {
    let t = this.tables.get(key);
    return {
      update: (rows) => {
        const cols = [];
        for (const r of rows.slice(0, 100)) {
          for (const [k, v] of Object.entries(r)) {
            if (!cols.includes(k) && (v === null || typeof v !== 'object' || Array.isArray(v))) cols.push(k);
          }
        }
        const sig = cols.join(',');
        if (!t || t.sig !== sig) {
          const keyField = ['id', 'uuid', 'pid', 'name', 'mount_point', 'device', 'index'].find((k) => cols.includes(k));
          const table = new Table({
            name: `${this.name}.${key}`,
            key: keyField ? (r) => r[keyField] : null,
            columns: cols.map((k) => ({
              id: k,
              label: f.field(k).unit && f.field(k).unit !== 'time' && f.field(k).unit !== 'bytes' ? `${f.field(k).label} (${f.field(k).unit})` : f.field(k).label,
              text: (r) => f.byField(k, r[k]),
              value: (r) => r[k],
              numeric: rows.some((r) => typeof r[k] === 'number'),
            })),
          });
          const p = part(f.words(key), table.el);
          if (t) t.part.replaceWith(p);
          else this.el.append(p);
          t = { sig, table, part: p };
          this.tables.set(key, t);
        }
        t.table.update(rows);
      },
    };
  }
}

/** Base of every card view: knows nothing, charts every series it is given. */
class View {
  constructor(name) {
    this.name = name;
    this.slots = new Map();
    this.el = el('div', { class: 'view' });
    this.chartArea = el('div', { class: 'charts' });
  }

  /** The chart slot and dataset for a history series, or null when this view does not chart it. */
  target(series) {
    let slot = this.slots.get(series.name);
    if (!slot) {
      const fl = f.field(series.name);
      slot = new ChartSlot(fl.label, f.byUnit(series.unit), { id: `${this.name}.${series.name}`, max: series.unit === 'percent' ? 100 : undefined, unit: series.unit });
      this.slots.set(series.name, slot);
      this.chartArea.append(slot.el);
      if (this.chartArea.parentNode !== this.el) this.el.prepend(this.chartArea);
    }
    return { slot, ds: slot.dataset(series.label ?? fl0(series.name)) };
  }
}

function fl0(name) {
  return f.field(name).label;
}

/** Any collector without a tailored view. */
class GenericCard extends View {
  constructor(name) {
    super(name);
    this.generic = new GenericView(name);
    this.el.append(this.generic.el);
  }

  update(section) {
    this.generic.update(section);
  }
}

class CpuView extends View {
  constructor() {
    super('cpu');
    this.usage = new ChartSlot('Usage', f.percent, { id: 'cpu.usage_percent', max: 100 });
    this.slots.set('usage_percent', this.usage);
    this.chartArea.append(this.usage.el);
    const canvas = el('canvas', { role: 'img', 'aria-label': 'usage per core' });
    this.bars = barChart(canvas, { label: 'usage' });
    this.kv = new KeyValue('cpu');
    this.temps = new Table({
      name: 'cpu.temperatures',
      key: (r) => r.label,
      columns: [
        { id: 'label', label: 'sensor', text: (r) => r.label },
        { id: 'temperature_celsius', label: 'now', numeric: true, text: (r) => f.celsius(r.temperature_celsius), value: (r) => r.temperature_celsius },
        { id: 'critical_celsius', label: 'critical', numeric: true, text: (r) => f.celsius(r.critical_celsius), value: (r) => r.critical_celsius },
      ],
      empty: 'no temperature sensors',
    });
    this.cores = new Table({
      name: 'cpu.cores',
      key: (r) => r.index,
      columns: [
        { id: 'index', label: 'core', numeric: true, text: (r) => String(r.index), value: (r) => r.index },
        { id: 'usage_percent', label: 'usage', numeric: true, text: (r) => f.percent(r.usage_percent), value: (r) => r.usage_percent },
        { id: 'frequency_mhz', label: 'frequency', numeric: true, text: (r) => f.mhz(r.frequency_mhz), value: (r) => r.frequency_mhz },
      ],
    });
    const coresDetails = el('details', { class: 'more' }, el('summary', { text: 'per-core table' }), this.cores.el);
    this.el.append(
      this.chartArea,
      part('Usage per core', el('figure', { class: 'chart bars', 'data-chart': 'cpu.cores' }, el('div', { class: 'canvas-box' }, canvas))),
      el('div', { class: 'split' }, part('', this.kv.el), part('Temperatures', this.temps.el)),
      coresDetails,
    );
  }

  target(series) {
    // Temperature and load are in the table; the chart shows usage.
    if (series.name === 'usage_percent') return { slot: this.usage, ds: this.usage.dataset('total') };
    return super.target(series);
  }

  update(s) {
    const la = s.load_average || {};
    this.kv.update([
      ['model', s.model],
      ['vendor', s.vendor],
      ['cores', `${s.physical_cores ?? '?'} physical, ${s.logical_cores} logical`],
      ['frequency', `${f.mhz(s.frequency_mhz)}${s.max_frequency_mhz ? ` (max ${f.mhz(s.max_frequency_mhz)})` : ''}`],
      ['usage', f.percent(s.usage_percent)],
      ['temperature', f.celsius(s.temperature_celsius)],
      ['load average', `${f.num(la.one, 2)} / ${f.num(la.five, 2)} / ${f.num(la.fifteen, 2)}`, '1 / 5 / 15 minutes'],
    ]);
    const cores = s.cores || [];
    setBars(this.bars, cores.map((c) => String(c.index)), cores.map((c) => c.usage_percent));
    requestAnimationFrame(() => this.bars.update('none'));
    this.cores.update(cores);
    this.temps.update(s.temperatures || []);
  }
}

class MemoryView extends View {
  constructor() {
    super('memory');
    this.used = new ChartSlot('Used', f.percent, { id: 'memory.used_percent', max: 100 });
    this.slots.set('used_percent', this.used);
    this.chartArea.append(this.used.el);
    this.table = new Table({
      name: 'memory.usage',
      sortable: false,
      key: (r) => r.kind,
      columns: [
        { id: 'kind', label: '', text: (r) => r.kind },
        // A machine without swap says so once, instead of `0 B / 0 B / 0 %`.
        { id: 'total', label: 'total', numeric: true, text: (r) => (r.none ? 'no swap' : f.bytes(r.total)) },
        { id: 'used', label: 'used', numeric: true, text: (r) => (r.none ? '' : f.bytes(r.used)) },
        { id: 'free', label: 'free', numeric: true, text: (r) => (r.none ? '' : f.bytes(r.free)) },
        { id: 'available', label: 'available', numeric: true, text: (r) => (r.none || r.available === null ? '–' : f.bytes(r.available)) },
        { id: 'percent', label: 'used %', numeric: true, text: (r) => (r.none ? '' : f.percent(r.percent)) },
      ],
    });
    this.el.append(this.chartArea, this.table.el);
  }

  target(series) {
    if (series.name === 'used_percent') return { slot: this.used, ds: this.used.dataset('RAM', 0) };
    // Without swap its line would only repeat 0 %.
    if (series.name === 'swap_used_percent') return this.noSwap ? null : { slot: this.used, ds: this.used.dataset('swap', 1) };
    // used_bytes repeats used_percent in another unit.
    return null;
  }

  update(s) {
    this.noSwap = !s.swap_total_bytes;
    const swap = this.noSwap
      ? { kind: 'swap', none: true }
      : { kind: 'swap', total: s.swap_total_bytes, used: s.swap_used_bytes, free: s.swap_free_bytes, available: null, percent: s.swap_used_percent };
    this.table.update([
      { kind: 'RAM', total: s.total_bytes, used: s.used_bytes, free: s.free_bytes, available: s.available_bytes, percent: s.used_percent },
      swap,
    ]);
  }
}

const GPU_CHARTS = [
  ['utilization_percent', 'Utilization', f.percent, 100],
  ['memory_used_bytes', 'VRAM used', f.bytes, undefined],
  ['temperature_celsius', 'Temperature', f.celsius, undefined],
  ['power_draw_watts', 'Power', f.watts, undefined],
  ['fan_speed_percent', 'Fan', f.percent, 100],
];

/** The MIG series the plugin declares, charted per GPU with one line per instance. */
const MIG_CHARTS = {
  mig_memory_used_bytes: ['MIG memory used', f.bytes, undefined],
  mig_utilization_percent: ['MIG utilization', f.percent, 100],
};

/** Container id -> name, from the Docker card's latest section (empty while it has none). */
const containerNames = new Map();

/** Notes the names of the Docker section's containers, so GPU processes can show them. */
export function noteContainerNames(containers) {
  containerNames.clear();
  for (const c of containers || []) if (c && c.id && c.name) containerNames.set(c.id, c.name);
}

/** Container id -> the GPUs its processes use and their memory, from the GPU card's latest section. */
const containerGpus = new Map();

/** Notes which containers use which GPUs (and how much memory), for the Docker table's GPU column. */
export function noteContainerGpus(gpus) {
  containerGpus.clear();
  for (const g of gpus || []) {
    for (const p of g.processes || []) {
      const id = p.container && p.container.id;
      if (!id) continue;
      const use = containerGpus.get(id) || { gpus: new Set(), memory: 0 };
      use.gpus.add(g.index);
      use.memory += p.used_memory_bytes || 0;
      containerGpus.set(id, use);
    }
  }
}

/** The GPUs a container uses and their memory, e.g. `0, 1 · 1.5 GiB`; `–` for none. */
export function containerGpuText(id) {
  const use = id && containerGpus.get(id);
  if (!use) return '–';
  return `${[...use.gpus].sort((a, b) => a - b).join(', ')} · ${f.bytes(use.memory)}`;
}

/** A GPU process's container: its name when the Docker section knows it, else the short id. */
export function containerLabel(c) {
  if (!c || !c.id) return '–';
  return containerNames.get(c.id) || c.id.slice(0, 12);
}

/** Readable names of NVML's clock event (throttle) reasons. */
const THROTTLE_NAMES = {
  'gpu-idle': 'idle',
  'applications-clocks-setting': 'applications clocks setting',
  'sw-power-cap': 'power cap',
  'hw-slowdown': 'hardware slowdown',
  'sync-boost': 'sync boost',
  'sw-thermal-slowdown': 'thermal (software)',
  'hw-thermal-slowdown': 'thermal (hardware)',
  'hw-power-brake-slowdown': 'power brake',
  'display-clock-setting': 'display clock setting',
};

/** Reasons that cost performance (idle and settings do not). */
const THROTTLE_PROBLEMS = new Set(['sw-power-cap', 'hw-slowdown', 'sync-boost', 'sw-thermal-slowdown', 'hw-thermal-slowdown', 'hw-power-brake-slowdown']);

/**
 * The health strip's items for one GPU: `[text, problem]`. Colour comes only from `problem`;
 * the text says the same in words (with a ⚠ mark), so nothing depends on colour alone.
 */
export function gpuHealth(d) {
  const items = [];
  const reasons = d.throttle_reasons;
  if (Array.isArray(reasons)) {
    const bad = reasons.filter((r) => THROTTLE_PROBLEMS.has(r));
    if (bad.length) items.push([`throttled: ${bad.map((r) => THROTTLE_NAMES[r] || r).join(', ')}`, true]);
    else items.push([reasons.includes('gpu-idle') ? 'clocks: idle' : 'clocks: not throttled', false]);
  }
  const e = d.ecc;
  if (e) {
    const uncorrected = (e.uncorrected_volatile || 0) + (e.uncorrected_aggregate || 0);
    const parts = [`${f.num(e.corrected_volatile ?? 0, 0)} corrected`, `${f.num(e.uncorrected_volatile ?? 0, 0)} uncorrected`];
    if (e.uncorrected_aggregate) parts.push(`${f.num(e.uncorrected_aggregate, 0)} uncorrected over its life`);
    items.push([`ECC ${e.enabled ? 'on' : 'off'}: ${parts.join(', ')}`, uncorrected > 0]);
    if (e.remapped_rows_failure) items.push(['row remapping failed: the board needs service', true]);
    else if (e.remapped_rows_pending) items.push([`remapped rows pending (${f.num(e.remapped_rows_correctable ?? 0, 0)} correctable, ${f.num(e.remapped_rows_uncorrectable ?? 0, 0)} uncorrectable): reset the GPU`, true]);
    if (e.retired_pages_pending) items.push([`retired pages pending (${f.num((e.retired_pages_single_bit || 0) + (e.retired_pages_double_bit || 0), 0)} retired): reboot`, true]);
  }
  if (typeof d.xid_errors === 'number') {
    if (d.xid_errors > 0) {
      const last = d.last_xid ? `, last XID ${d.last_xid.xid} at ${f.clock(d.last_xid.time_ms)}` : '';
      items.push([`${d.xid_errors} XID error${d.xid_errors === 1 ? '' : 's'}${last}`, true]);
    } else {
      items.push(['no XID errors', false]);
    }
  }
  const engines = [['encoder', d.encoder_utilization_percent], ['decoder', d.decoder_utilization_percent], ['JPEG', d.jpeg_utilization_percent], ['OFA', d.ofa_utilization_percent]]
    .filter(([, v]) => typeof v === 'number' && v > 0);
  if (engines.length || d.encoder_sessions) {
    const sessions = d.encoder_sessions ? ` (${d.encoder_sessions} encoder session${d.encoder_sessions === 1 ? '' : 's'})` : '';
    items.push([`${engines.map(([n, v]) => `${n} ${f.percent(v)}`).join(' · ') || 'media engines idle'}${sessions}`, false]);
  }
  if (d.mig_devices && d.mig_devices.length) items.push([`MIG: ${d.mig_devices.length} instance${d.mig_devices.length === 1 ? '' : 's'}`, false]);
  return items;
}

/** Sets a `<ul>`'s items to `[text, problem]` pairs; only problem items get the `problem` class. */
function setHealth(ul, items) {
  while (ul.children.length > items.length) ul.lastChild.remove();
  items.forEach(([text, problem], i) => {
    let li = ul.children[i];
    if (!li) {
      li = el('li');
      ul.append(li);
    }
    setText(li, problem ? `⚠ ${text}` : text);
    li.classList.toggle('problem', problem);
  });
  ul.hidden = items.length === 0;
}

/** One GPU: a health strip, details, five charts, its MIG devices and its processes. */
class GpuDevice {
  constructor(label) {
    this.label = label;
    this.title = el('h3', { text: `GPU ${label}` });
    this.error = el('p', { class: 'reason', hidden: true, role: 'status' });
    this.health = el('ul', { class: 'gpu-health', 'aria-label': `GPU ${label} health`, hidden: true });
    this.note = el('p', { class: 'gpu-note', hidden: true });
    this.kv = new KeyValue(`gpu.${label}`);
    this.slots = new Map();
    const charts = el('div', { class: 'charts' });
    this.charts = charts;
    for (const [name, title, fmt, max] of GPU_CHARTS) {
      const slot = new ChartSlot(title, fmt, { id: `gpu.${label}.${name}`, max });
      this.slots.set(name, slot);
      charts.append(slot.el);
    }
    this.procs = new Table({
      name: `gpu.${label}.processes`,
      key: (r) => r.pid,
      sort: { id: 'used_memory_bytes', dir: -1 },
      columns: [
        { id: 'pid', label: 'PID', numeric: true, text: (r) => String(r.pid), value: (r) => r.pid },
        { id: 'name', label: 'name', text: (r) => r.name ?? '–' },
        { id: 'kind', label: 'kind', text: (r) => r.kind },
        { id: 'container', label: 'container', text: (r) => containerLabel(r.container), title: (r) => (r.container ? `${r.container.runtime} ${r.container.id}` : '') },
        { id: 'instance', label: 'MIG GI/CI', text: (r) => (r.gpu_instance_id === null || r.gpu_instance_id === undefined ? '–' : `${r.gpu_instance_id}/${r.compute_instance_id ?? '–'}`) },
        { id: 'used_memory_bytes', label: 'VRAM', numeric: true, text: (r) => f.bytes(r.used_memory_bytes), value: (r) => r.used_memory_bytes },
      ],
      empty: 'no processes on this GPU',
    });
    this.procsByInstance = new Map();
    this.migs = new Table({
      name: `gpu.${label}.mig`,
      key: (r) => `${r.gpu_instance_id}/${r.compute_instance_id}`,
      columns: [
        { id: 'instance', label: 'GI/CI', text: (r) => `${r.gpu_instance_id}/${r.compute_instance_id}`, title: (r) => r.uuid || '' },
        { id: 'profile', label: 'profile', text: (r) => r.profile ?? '–' },
        { id: 'memory_used_bytes', label: 'memory', numeric: true, text: (r) => `${f.bytes(r.memory_used_bytes)} / ${f.bytes(r.memory_total_bytes)}`, value: (r) => r.memory_used_bytes },
        { id: 'utilization_percent', label: 'utilization', numeric: true, text: (r) => f.percent(r.utilization_percent), value: (r) => r.utilization_percent },
        { id: 'processes', label: 'processes', text: (r) => (this.procsByInstance.get(`${r.gpu_instance_id}/${r.compute_instance_id}`) || []).join(', ') || '–' },
      ],
      empty: 'no MIG devices',
    });
    this.migPart = part('MIG devices', this.migs.el);
    this.migPart.hidden = true;
    this.el = el('article', { class: 'gpu', 'data-gpu': label }, this.title, this.error, this.health, this.note, charts,
      this.migPart,
      el('div', { class: 'split' }, part('', this.kv.el), part('Processes', this.procs.el)));
  }

  /** The chart of one MIG series, made when its first series arrives. */
  migSlot(name) {
    let slot = this.slots.get(name);
    if (!slot) {
      const [title, fmt, max] = MIG_CHARTS[name];
      slot = new ChartSlot(title, fmt, { id: `gpu.${this.label}.${name}`, max });
      this.slots.set(name, slot);
      this.charts.append(slot.el);
    }
    return slot;
  }

  update(d, top) {
    setText(this.title, `GPU ${d.index}${d.name ? ` · ${d.name}` : ''}`);
    // One GPU the driver cannot read does not stop the others; it says why.
    setText(this.error, d.error ? `GPU ${d.index}: ${d.error}` : '');
    this.error.hidden = !d.error;
    setHealth(this.health, gpuHealth(d));
    // A GPU in MIG mode reports no whole-GPU utilization: the empty chart says why.
    setText(this.note, d.utilization_note ? `Utilization ${d.utilization_note}.` : '');
    this.note.hidden = !d.utilization_note;
    const pcie = d.pcie_generation || d.pcie_link_width
      ? `Gen ${d.pcie_generation ?? '?'} x${d.pcie_link_width ?? '?'}${d.pcie_max_generation ? ` (max Gen ${d.pcie_max_generation} x${d.pcie_max_link_width ?? '?'})` : ''}`
      : '–';
    const pcieTraffic = typeof d.pcie_tx_bytes_per_second === 'number'
      ? `${f.rate(d.pcie_tx_bytes_per_second)} out, ${f.rate(d.pcie_rx_bytes_per_second)} in${d.pcie_replays ? `, ${d.pcie_replays} replays` : ''}`
      : '–';
    this.kv.update([
      ['name', d.name ?? '–'],
      ['driver', top.driver_version ?? '–'],
      ['CUDA', top.cuda_driver_version ?? '–'],
      ['compute capability', d.compute_capability ?? '–'],
      ['PCIe', pcie, d.pci_bus_id || ''],
      ['PCIe traffic', pcieTraffic],
      ['memory total', f.bytes(d.memory_total_bytes)],
      ['memory used', d.memory_used_bytes === null || d.memory_used_bytes === undefined ? '–' : `${f.bytes(d.memory_used_bytes)} (${f.percent(d.memory_used_percent)})`],
      ['memory free', f.bytes(d.memory_free_bytes)],
      ['memory reserved', f.bytes(d.memory_reserved_bytes)],
      ['utilization', d.utilization_note ? 'see MIG devices' : f.percent(d.utilization_percent)],
      ['temperature', `${f.celsius(d.temperature_celsius)}${typeof d.memory_temperature_celsius === 'number' ? ` (memory ${f.celsius(d.memory_temperature_celsius)})` : ''}`],
      ['power', `${f.watts(d.power_draw_watts)}${d.power_limit_watts ? ` of ${f.watts(d.power_limit_watts)}` : ''}`],
      ['power limits', d.power_default_limit_watts ? `default ${f.watts(d.power_default_limit_watts)}, max ${f.watts(d.power_max_limit_watts)}` : '–'],
      ['energy', typeof d.energy_joules === 'number' ? `${f.num(d.energy_joules / 3.6e6, 2)} kWh since the driver loaded` : '–'],
      ['fan', f.percent(d.fan_speed_percent)],
      ['clocks', [[d.graphics_clock_mhz, 'graphics'], [d.memory_clock_mhz, 'memory']].filter(([v]) => v !== null && v !== undefined).map(([v, what]) => `${f.mhz(v)} ${what}`).join(', ') || '–'],
      ['performance state', d.performance_state ?? '–'],
      ['persistence mode', d.persistence_mode === null || d.persistence_mode === undefined ? '–' : d.persistence_mode ? 'on' : 'off'],
      ['compute mode', d.compute_mode ?? '–'],
      ['MIG', d.mig_mode ? `${d.mig_mode.enabled ? 'enabled' : 'disabled'}${d.mig_mode.pending_enabled !== d.mig_mode.enabled ? ` (${d.mig_mode.pending_enabled ? 'enabled' : 'disabled'} after reset)` : ''}` : '–'],
      ['VBIOS', d.vbios_version ?? '–'],
      ['source', top.source ?? '–'],
    ]);
    this.slots.get('memory_used_bytes').setMax(d.memory_total_bytes);
    this.slots.get('power_draw_watts').setMax(d.power_limit_watts);
    this.procsByInstance.clear();
    for (const p of d.processes || []) {
      if (p.gpu_instance_id === null || p.gpu_instance_id === undefined) continue;
      const k = `${p.gpu_instance_id}/${p.compute_instance_id}`;
      if (!this.procsByInstance.has(k)) this.procsByInstance.set(k, []);
      this.procsByInstance.get(k).push(p.pid);
    }
    const migs = d.mig_devices || [];
    this.migPart.hidden = migs.length === 0;
    this.migs.update(migs);
    this.procs.update(d.processes || []);
  }
}

class GpuView extends View {
  constructor() {
    super('gpu');
    this.devices = new Map();
    this.list = el('div', { class: 'gpus' });
    this.el.append(this.list);
  }

  device(label) {
    let d = this.devices.get(label);
    if (!d) {
      d = new GpuDevice(label);
      this.devices.set(label, d);
      this.list.append(d.el);
    }
    return d;
  }

  target(series) {
    if (series.name in MIG_CHARTS) {
      // MIG series are labelled `GPU/GI/CI`: one line per instance on its GPU's MIG chart.
      const [gpu, gi, ci] = String(series.label ?? '').split('/');
      const d = this.device(gpu || '0');
      return { slot: d.migSlot(series.name), ds: d.migSlot(series.name).dataset(`GI ${gi}/CI ${ci}`) };
    }
    const d = this.device(series.label ?? '0');
    const slot = d.slots.get(series.name);
    // memory_used_percent repeats memory_used_bytes, which the VRAM chart shows.
    return slot ? { slot, ds: slot.dataset(`GPU ${d.label}`) } : null;
  }

  update(s) {
    // The Docker table shows which GPUs each container uses from this.
    noteContainerGpus(s.gpus);
    for (const g of s.gpus || []) this.device(String(g.index)).update(g, s);
  }
}

const PROCESS_COLUMNS = [
  { id: 'pid', label: 'PID', numeric: true, text: (r) => String(r.pid), value: (r) => r.pid },
  { id: 'name', label: 'name', text: (r) => r.name },
  { id: 'user', label: 'user', text: (r) => r.user ?? '–' },
  { id: 'cpu_percent', label: 'CPU', numeric: true, text: (r) => f.percent(r.cpu_percent), value: (r) => r.cpu_percent },
  { id: 'memory_percent', label: 'mem %', numeric: true, text: (r) => f.percent(r.memory_percent), value: (r) => r.memory_percent },
  { id: 'memory_bytes', label: 'memory', numeric: true, text: (r) => f.bytes(r.memory_bytes), value: (r) => r.memory_bytes },
  { id: 'status', label: 'status', text: (r) => r.status },
  { id: 'command', label: 'command', cls: 'cmd', text: (r) => r.command, title: (r) => r.command },
];

class ProcessView extends View {
  constructor() {
    super('process');
    this.kv = new KeyValue('process');
    this.byCpu = new Table({ name: 'process.top_by_cpu', key: (r) => r.pid, columns: PROCESS_COLUMNS });
    this.byMem = new Table({ name: 'process.top_by_memory', key: (r) => r.pid, columns: PROCESS_COLUMNS });
    this.zombies = new Table({ name: 'process.zombies', key: (r) => r.pid, columns: PROCESS_COLUMNS, empty: 'no zombies' });
    this.zombiePart = part('Zombies', this.zombies.el);
    this.el.append(this.kv.el, part('Top by CPU', this.byCpu.el), part('Top by memory', this.byMem.el), this.zombiePart);
  }

  update(s) {
    this.kv.update([
      ['processes', f.num(s.process_count, 0)],
      ['threads', f.num(s.thread_count, 0)],
      ['running', f.num(s.running_count, 0), 'threads running or waiting for a CPU (state R), as top counts them'],
      ['zombies', f.num(s.zombie_count, 0)],
    ]);
    this.byCpu.update(s.top_by_cpu || []);
    this.byMem.update(s.top_by_memory || []);
    this.zombies.update(s.zombies || []);
    this.zombiePart.hidden = !(s.zombies && s.zombies.length);
  }
}

class DiskView extends View {
  constructor() {
    super('disk');
    this.table = new Table({
      name: 'disk.disks',
      key: (r) => r.mount_point,
      columns: [
        { id: 'device', label: 'device', text: (r) => r.device },
        { id: 'mount_point', label: 'mounted on', text: (r) => r.mount_point, title: (r) => (r.other_mount_points || []).length ? `also on ${r.other_mount_points.join(', ')}` : '' },
        { id: 'fs_type', label: 'type', text: (r) => `${r.fs_type}${r.read_only ? ' (ro)' : ''}` },
        { id: 'total_bytes', label: 'total', numeric: true, text: (r) => f.bytes(r.total_bytes), value: (r) => r.total_bytes },
        { id: 'used_bytes', label: 'used', numeric: true, text: (r) => f.bytes(r.used_bytes), value: (r) => r.used_bytes },
        { id: 'free_bytes', label: 'free', numeric: true, text: (r) => f.bytes(r.free_bytes), value: (r) => r.free_bytes },
        { id: 'used_percent', label: 'used %', numeric: true, text: (r) => f.percent(r.used_percent), value: (r) => r.used_percent },
        { id: 'read_bytes_per_second', label: 'read', numeric: true, text: (r) => f.rate(r.read_bytes_per_second), value: (r) => r.read_bytes_per_second },
        { id: 'write_bytes_per_second', label: 'write', numeric: true, text: (r) => f.rate(r.write_bytes_per_second), value: (r) => r.write_bytes_per_second },
      ],
    });
    this.stalled = new Table({
      name: 'disk.not_responding',
      key: (r) => r.mount_point,
      columns: [
        { id: 'device', label: 'device', text: (r) => r.device },
        { id: 'mount_point', label: 'mounted on', text: (r) => r.mount_point },
        { id: 'fs_type', label: 'type', text: (r) => r.fs_type },
        { id: 'waiting_seconds', label: 'waiting', numeric: true, text: (r) => f.duration(r.waiting_seconds), value: (r) => r.waiting_seconds },
      ],
    });
    this.stalledPart = part('Not responding', this.stalled.el);
    this.el.append(this.chartArea, this.table.el, this.stalledPart);
  }

  target(series) {
    // Space changes slowly and is in the table; the charts show I/O rates.
    if (series.name === 'used_percent') return null;
    return super.target(series);
  }

  update(s) {
    this.table.update(s.disks || []);
    this.stalled.update(s.not_responding || []);
    this.stalledPart.hidden = !(s.not_responding && s.not_responding.length);
  }
}

class NetworkView extends View {
  constructor() {
    super('network');
    this.table = new Table({
      name: 'network.interfaces',
      key: (r) => r.name,
      columns: [
        { id: 'name', label: 'interface', text: (r) => r.name },
        { id: 'up', label: 'state', text: (r) => (r.up ? 'up' : r.operstate || 'down'), cls: 'state' },
        { id: 'ipv4', label: 'IPv4', text: (r) => (r.ipv4 || []).join(', ') || '–', title: (r) => (r.ipv6 || []).join('\n') },
        { id: 'mac_address', label: 'MAC', text: (r) => r.mac_address ?? '–' },
        { id: 'rx_bytes_per_second', label: 'in', numeric: true, text: (r) => f.rate(r.rx_bytes_per_second), value: (r) => r.rx_bytes_per_second },
        { id: 'tx_bytes_per_second', label: 'out', numeric: true, text: (r) => f.rate(r.tx_bytes_per_second), value: (r) => r.tx_bytes_per_second },
        { id: 'rx_bytes_total', label: 'received', numeric: true, text: (r) => f.bytes(r.rx_bytes_total), value: (r) => r.rx_bytes_total },
        { id: 'tx_bytes_total', label: 'sent', numeric: true, text: (r) => f.bytes(r.tx_bytes_total), value: (r) => r.tx_bytes_total },
        { id: 'rx_packets_total', label: 'packets in', numeric: true, text: (r) => f.num(r.rx_packets_total, 0), value: (r) => r.rx_packets_total },
        { id: 'tx_packets_total', label: 'packets out', numeric: true, text: (r) => f.num(r.tx_packets_total, 0), value: (r) => r.tx_packets_total },
        { id: 'speed_bits_per_second', label: 'link', numeric: true, text: (r) => f.bits(r.speed_bits_per_second), value: (r) => r.speed_bits_per_second },
      ],
      empty: 'no interfaces',
    });
    this.el.append(this.chartArea, this.table.el);
  }

  update(s) {
    this.table.update(s.interfaces || []);
  }
}

class DockerView extends View {
  constructor() {
    super('docker');
    this.kv = new KeyValue('docker');
    this.table = new Table({
      name: 'docker.containers',
      key: (r) => r.id || r.name,
      columns: [
        { id: 'name', label: 'name', text: (r) => r.name, title: (r) => r.id },
        { id: 'image', label: 'image', text: (r) => r.image },
        { id: 'status', label: 'status', text: (r) => `${r.status}${r.health ? ` (${r.health})` : ''}`, title: (r) => r.status_text },
        { id: 'cpu_usage_percent', label: 'CPU', numeric: true, text: (r) => f.percent(r.cpu_usage_percent), value: (r) => r.cpu_usage_percent },
        { id: 'memory_used_bytes', label: 'memory', numeric: true, text: (r) => (r.memory_used_bytes === null || r.memory_used_bytes === undefined ? '–' : `${f.bytes(r.memory_used_bytes)} / ${f.bytes(r.memory_limit_bytes)}`), value: (r) => r.memory_used_bytes },
        { id: 'ports', label: 'ports', text: (r) => (r.ports || []).join(', ') || '–' },
        { id: 'uptime_seconds', label: 'uptime', numeric: true, text: (r) => f.duration(r.uptime_seconds), value: (r) => r.uptime_seconds },
        { id: 'restart_count', label: 'restarts', numeric: true, text: (r) => f.num(r.restart_count, 0), value: (r) => r.restart_count },
        { id: 'gpu', label: 'GPU', text: (r) => containerGpuText(r.id), title: () => 'GPUs its processes use · their GPU memory (from the GPU card)' },
      ],
      empty: 'no containers',
    });
    this.el.append(this.kv.el, this.table.el);
  }

  update(s) {
    this.kv.update([
      ['daemon', `${s.server_version ?? '–'} (API ${s.api_version ?? '–'})`],
      ['containers', `${s.containers_running ?? 0} running, ${s.containers_paused ?? 0} paused, ${s.containers_stopped ?? 0} stopped`],
      ['figures from', s.stats_source ?? '–'],
    ]);
    // The GPU card names each GPU process's container from these.
    noteContainerNames(s.containers);
    this.table.update(s.containers || []);
  }
}

class SystemView extends View {
  constructor() {
    super('system');
    this.kv = new KeyValue('system');
    this.el.append(this.kv.el);
  }

  update(s) {
    this.kv.update([
      ['hostname', s.hostname],
      ['OS', s.os_long_name || `${s.os_name} ${s.os_version}`],
      ['kernel', s.kernel_version],
      ['architecture', s.architecture],
      ['uptime', f.duration(s.uptime_seconds)],
      ['booted', f.dateTime(s.boot_time_unix_seconds * 1000)],
    ]);
  }
}

const VIEWS = {
  cpu: CpuView, memory: MemoryView, gpu: GpuView, process: ProcessView, disk: DiskView,
  network: NetworkView, docker: DockerView, system: SystemView,
};

/** What a collector's status says in a few words, and the longer text for its tooltip. */
export function describeStatus(name, st) {
  const state = st ? st.state : 'pending';
  const lines = [`${name}: ${state}${st && st.stale ? ' (stale data)' : ''}`];
  if (st && st.reason) lines.push(`reason: ${st.reason}`);
  if (st && st.last_error) lines.push(`last error ${st.last_error.time}: ${st.last_error.message}`);
  if (st && st.last_success) lines.push(`last success: ${st.last_success}`);
  if (st && st.plugin) lines.push(`plugin ${st.plugin.name} ${st.plugin.version} (API ${st.plugin.api_version})`);
  // "Unavailable" is a normal state (no GPU, no Docker here), not a failure: no count of
  // failures or retry time belongs in its text.
  if (state === 'unavailable') {
    lines.push('a normal state where the source is absent; looked for again in the background');
  } else {
    if (st && st.consecutive_failures) lines.push(`failures in a row: ${st.consecutive_failures}`);
    if (st && st.next_retry) lines.push(`next retry: ${st.next_retry}`);
  }
  if (st && st.restarts) lines.push(`restarts: ${st.restarts} (${st.isolation === 'process' ? 'child process' : 'worker'})`);
  return { state, text: lines.join('\n') };
}

/** A collector's card: a header with its state, the "unavailable" line, and its view. */
export class Card {
  constructor(name) {
    this.name = name;
    const View_ = VIEWS[name];
    this.view = View_ ? new View_() : new GenericCard(name);
    this.badge = el('span', { class: 'badge' });
    this.staleBadge = el('span', { class: 'badge stale', text: 'stale', hidden: true });
    this.sub = el('span', { class: 'sub' });
    this.reason = el('p', { class: 'reason', hidden: true, role: 'status' });
    this.el = el('section', { class: `card card-${name}`, id: `card-${name}`, 'data-collector': name },
      el('header', {}, el('h2', { text: TITLES[name] || f.words(name) }), this.badge, this.staleBadge, this.sub),
      this.reason, this.view.el);
    this.hasData = false;
  }

  /** Shows the latest section (or null) and the collector's status. */
  update(section, st) {
    const { state, text } = describeStatus(this.name, st);
    setText(this.badge, state, text);
    this.badge.dataset.state = state;
    this.el.dataset.state = state;
    this.staleBadge.hidden = !(st && st.stale);
    const title = TITLES[this.name] || f.words(this.name);
    if (state === 'unavailable' || state === 'failed') {
      setText(this.reason, `${title} ${state}: ${st.reason || 'no reason given'}`);
      this.reason.hidden = false;
    } else if (state === 'disabled') {
      setText(this.reason, `${title} is disabled in the config`);
      this.reason.hidden = false;
    } else if (state === 'pending' && section === undefined) {
      setText(this.reason, 'waiting for the first collect…');
      this.reason.hidden = false;
    } else {
      this.reason.hidden = true;
    }
    if (st && st.last_success) setText(this.sub, `every ${f.duration(st.interval_seconds)}`, `collect took ${f.num(st.last_duration_ms, 2)} ms`);
    if (section !== undefined && section !== null) {
      this.hasData = true;
      this.view.update(section);
    }
    this.view.el.hidden = !this.hasData;
  }

  /** The chart slot and dataset a history series goes to, or null. */
  target(series) {
    return this.view.target(series);
  }
}
