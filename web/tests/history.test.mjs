//! The dashboard over a past range in Debian's chromium against the real host and its durable history: bands, one time axis, event markers, the events and errors panel, zoom in the URL, back to live, CSV links and screenshots.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { CHROMIUM, TARGET, gotoPage, launchBrowser, missing, openPage, plugin, screenshot, skipTest, startHost, until } from './harness.mjs';

let skip = null;
let host;
let browser;

const CONFIG = `[history]
flush_interval = "1s"

[collectors.cpu]
interval = "100ms"

[collectors.memory]
interval = "1s"

[collectors.system]
interval = "2s"

# Fails after two good collects: a "failed" event, then an error per retry.
[collectors.flaky]
library = ${JSON.stringify(plugin('fault'))}
interval = "1s"
config = { behaviour = "error", good_collects = 2 }
`;

before(async () => {
  skip = missing(CHROMIUM, join(TARGET, 'vitals'), plugin('cpu'), plugin('memory'), plugin('system'), plugin('fault'));
  if (skip) return;
  host = await startHost(CONFIG);
  browser = await launchBrowser();
  // About ten seconds of stored CPU points, and the flaky collector's failure stored as an event.
  await until('12 s of CPU points in the durable history', 60, async () => {
    const h = await host.json('/admin/monitor/history?series=cpu.usage_percent&from=-5m&step=1s');
    const p = h.series[0]?.points || [];
    return p.length >= 2 && p.at(-1)[0] - p[0][0] >= 12000;
  });
  await until('the flaky collector\'s failure in the stored events', 30, async () => {
    const e = await host.json('/admin/monitor/events?source=collector:flaky');
    return e.events.some((x) => x.kind === 'failed');
  });
});

after(async () => {
  if (browser) await browser.close();
  if (host) await host.stop();
});

/** Opens the page at `hash`, recording every range query it makes. */
async function open(hash = '', { scheme } = {}) {
  const { page, problems } = await openPage(browser.context);
  if (scheme) await page.emulateMedia({ colorScheme: scheme });
  const queries = [];
  page.on('request', (r) => {
    const u = new URL(r.url());
    if (u.pathname === '/admin/monitor/history' && u.searchParams.has('series')) queries.push(u);
  });
  const resp = await gotoPage(page, `${host.base}/admin/monitor/${hash}`);
  assert.equal(resp.status(), 200);
  return { page, problems, queries };
}

/** Waits until the page shows its past range (every range query answered). */
async function rangeShown(page) {
  await until('the range to be shown', 30, () => page.evaluate(() => {
    const bar = document.getElementById('rangebar');
    const status = document.getElementById('range-status').textContent;
    return !bar.dataset.loading && / · a point per /.test(status);
  }));
}

/** Every line chart: id, x axis bounds, datasets (label, band role, points) and markers. */
function lineCharts(page) {
  return page.evaluate(() => [...document.querySelectorAll('figure.chart[data-chart] canvas')]
    .map((c) => ({ c, chart: window.Chart.getChart(c) }))
    .filter(({ chart }) => chart.config.type === 'line')
    .map(({ c, chart }) => ({
      id: c.closest('figure').dataset.chart,
      min: chart.options.scales.x.min,
      max: chart.options.scales.x.max,
      scaleMin: chart.scales.x.min,
      scaleMax: chart.scales.x.max,
      datasets: chart.data.datasets.map((d) => ({ label: d.label, band: d.band || null, fill: d.fill, data: d.data.map((p) => [p.x, p.y, p.min, p.max]) })),
      markers: (chart.vitalsMarkers || []).map((m) => ({ ...m })),
      csv: c.closest('figure').querySelector('a.csv')?.getAttribute('href') || null,
    })));
}

/** Drags across a chart's plot area from `a` to `b` (fractions of its width). */
async function drag(page, id, a, b) {
  const box = await page.evaluate((chartId) => {
    const c = document.querySelector(`figure[data-chart="${chartId}"] canvas`);
    c.scrollIntoView({ block: 'center' });
    const r = c.getBoundingClientRect();
    const area = window.Chart.getChart(c).chartArea;
    return { x: r.left + area.left, w: area.right - area.left, y: r.top + (area.top + area.bottom) / 2 };
  }, id);
  await page.mouse.move(box.x + box.w * a, box.y);
  await page.mouse.down();
  await page.mouse.move(box.x + box.w * ((a + b) / 2), box.y, { steps: 4 });
  await page.mouse.move(box.x + box.w * b, box.y, { steps: 4 });
  await page.mouse.up();
}

/** Guards the range view: one request per collector with series, a step that keeps each chart under 1,000 points, and charts equal to the stored points with their min–max band on one time axis. */
test('a past range shows the stored points in a min-max band on one time axis', { timeout: 120000 }, async (t) => {
  if (skip) return skipTest(t, skip);
  const { page, problems, queries } = await open('#range=1h');
  await rangeShown(page);
  const live = await host.json('/admin/monitor/history');
  const withSeries = Object.entries(live).filter(([, list]) => list.length).map(([name]) => name).sort();
  assert.deepEqual(queries.map((u) => u.searchParams.get('series')).sort(), withSeries, 'one range query per collector that has series');
  const q = queries.find((u) => u.searchParams.get('series') === 'cpu');
  const from = Number(q.searchParams.get('from'));
  const to = Number(q.searchParams.get('to'));
  assert.equal(to - from, 3600000, 'the last hour');
  const step = Number(q.searchParams.get('step').replace(/s$/, ''));
  assert.equal(step, 6, '(to - from) / 600 in whole seconds');

  const charts = await lineCharts(page);
  assert.ok(charts.length >= 3, `line charts: ${charts.map((c) => c.id)}`);
  for (const c of charts) {
    assert.deepEqual([c.min, c.max, c.scaleMin, c.scaleMax], [from, to, from, to], `${c.id} follows the one time axis`);
    for (const d of c.datasets) assert.ok(d.data.length <= 1000, `${c.id} / ${d.label}: ${d.data.length} points`);
  }

  // The CPU chart against the very query the page made, read again by the test.
  const answer = await host.json(`/admin/monitor/${q.pathname.split('/').pop()}${q.search}`);
  const series = answer.series.find((s) => s.name === 'usage_percent');
  const cpu = charts.find((c) => c.id === 'cpu.usage_percent');
  assert.deepEqual(cpu.datasets.map((d) => [d.label, d.band]), [['total min', 'min'], ['total max', 'max'], ['total', null]]);
  assert.equal(cpu.datasets[1].fill, '-1', 'the max edge fills down to the min edge');
  const [lo, hi, avg] = cpu.datasets.map((d) => d.data.filter((p) => p[1] !== null));
  // Points of the last steps may still gain samples as the host flushes; the rest are final.
  const settled = to - step * 1000 - 3000;
  const stored = series.points.filter((p) => p[0] < settled);
  assert.ok(stored.length >= 2, `stored points to compare: ${stored.length}`);
  for (const [i, p] of stored.entries()) {
    assert.deepEqual([lo[i][0], lo[i][1], hi[i][1], avg[i][1], avg[i][2], avg[i][3]], [p[0], p[1], p[3], p[2], p[1], p[3]], `point ${i}`);
  }
  assert.ok(stored.some((p) => p[4] > 1 && p[1] < p[3]), 'some points are aggregates with a real band');
  assert.ok(avg.length <= series.points.length + 1 && avg.length >= stored.length);
  assert.deepEqual(problems, []);
  await page.close();
});

/** Guards events on the charts (each chart marks its collector's and the host's) with their text on hover, and the panel that merges stored events and recent errors, newest first, filterable by source. */
test('events are markers with their text on hover, and the panel lists events and errors', { timeout: 120000 }, async (t) => {
  if (skip) return skipTest(t, skip);
  const { page, problems } = await open('#range=1h');
  await rangeShown(page);
  const failed = (await host.json('/admin/monitor/events?source=collector:flaky')).events.find((e) => e.kind === 'failed');
  const hostStart = (await host.json('/admin/monitor/events?source=host')).events.find((e) => e.kind === 'started');
  let charts;
  await until('markers on the charts', 20, async () => {
    charts = await lineCharts(page);
    return charts.find((c) => c.id === 'flaky.count')?.markers.length;
  });
  const flaky = charts.find((c) => c.id === 'flaky.count');
  const cpu = charts.find((c) => c.id === 'cpu.usage_percent');
  assert.ok(flaky.markers.some((m) => m.x === failed.time_unix_ms && m.text === failed.text && m.kind === 'failed'), JSON.stringify(flaky.markers));
  assert.ok(cpu.markers.some((m) => m.x === hostStart.time_unix_ms && m.source === 'host'), 'the host\'s start on every chart');
  assert.ok(!cpu.markers.some((m) => m.source === 'collector:flaky'), 'another collector\'s events stay off the CPU chart');

  // Hovering the marker shows its text.
  const at = await page.evaluate((x) => {
    const c = document.querySelector('figure[data-chart="flaky.count"] canvas');
    c.scrollIntoView({ block: 'center' });
    const chart = window.Chart.getChart(c);
    const r = c.getBoundingClientRect();
    return { x: r.left + chart.scales.x.getPixelForValue(x), y: r.top + (chart.chartArea.top + chart.chartArea.bottom) / 2 };
  }, failed.time_unix_ms);
  await page.mouse.move(at.x, at.y);
  const tip = await until('the marker tip', 10, () => page.$eval('figure[data-chart="flaky.count"] .marker-tip', (e) => !e.hidden && e.textContent));
  assert.ok(tip.includes(`collector:flaky: ${failed.text}`), tip);
  const valuesTip = await page.evaluate(() => window.Chart.getChart(document.querySelector('figure[data-chart="flaky.count"] canvas')).tooltip.getActiveElements().length);
  assert.equal(valuesTip, 0, 'the values\' tooltip steps aside for the marker\'s');
  await page.mouse.move(at.x, at.y + 400);

  // The panel: stored events and recent errors, newest first.
  const errors = (await host.json('/admin/monitor/errors?limit=100')).errors;
  assert.ok(errors.length > 0, 'the flaky collector has errors');
  const rows = () => page.$$eval('table[data-table="log"] tbody tr', (trs) => trs.map((tr) => ({
    source: tr.querySelector('[data-col="source"]').textContent,
    kind: tr.querySelector('[data-col="kind"]').textContent,
    text: tr.querySelector('[data-col="text"]').textContent,
    time: Date.parse(tr.querySelector('[data-col="time"]').title),
  })));
  const all = await rows();
  assert.ok(all.some((r) => r.kind === 'failed' && r.source === 'collector:flaky' && r.text === failed.text), 'the stored event');
  assert.ok(all.some((r) => r.kind === 'error' && errors.some((e) => e.time_unix_ms === r.time && e.source === r.source && e.message === r.text)), 'a recent error');
  assert.ok(all.some((r) => r.source === 'host' && r.kind === 'started'));
  for (let i = 1; i < all.length; i++) assert.ok(all[i - 1].time >= all[i].time, `newest first at row ${i}`);

  await page.selectOption('#log-source', 'host');
  await until('only the host\'s rows', 10, async () => {
    const r = await rows();
    return r.length > 0 && r.every((x) => x.source === 'host');
  });
  // From one source straight to another: the failed collector's events and errors.
  await page.selectOption('#log-source', 'collector:flaky');
  await until('only the flaky collector\'s rows, errors included', 10, async () => {
    const r = await rows();
    return r.length > 0 && r.every((x) => x.source === 'collector:flaky') && r.some((x) => x.kind === 'error') && r.some((x) => x.kind === 'failed');
  });
  await page.selectOption('#log-source', 'all');
  await until('every source again', 10, async () => new Set((await rows()).map((r) => r.source)).size > 1);
  assert.deepEqual(problems, []);
  await page.close();
});

/** Guards zoom: a drag on one chart moves every chart's axis to the dragged span, asks the history at a finer step, is written to the URL, and the URL reopens it. */
test('a drag zooms every chart, the URL keeps the zoom, and a reload restores it', { timeout: 120000 }, async (t) => {
  if (skip) return skipTest(t, skip);
  const { page, problems, queries } = await open('#range=1h');
  await rangeShown(page);
  const cpu = (await lineCharts(page)).find((c) => c.id === 'cpu.usage_percent');
  const asked = queries.length;
  // The second half of the hour, dragged on the CPU chart.
  await drag(page, 'cpu.usage_percent', 0.5, 1);
  const zoom = await until('a zoom in the URL', 10, () => page.evaluate(() => {
    const m = location.hash.match(/zoom=(\d+)-(\d+)/);
    return m && [Number(m[1]), Number(m[2])];
  }));
  assert.match(await page.evaluate(() => location.hash), /range=1h/);
  // The dragged half hour, to a pixel or two of the chart.
  const slack = 0.02 * 3600000;
  assert.ok(Math.abs(zoom[0] - (cpu.min + 1800000)) < slack && Math.abs(zoom[1] - cpu.max) < slack, `zoom ${zoom} in ${cpu.min}-${cpu.max}`);
  await rangeShown(page);
  const zoomed = await lineCharts(page);
  for (const c of zoomed) assert.deepEqual([c.min, c.max], zoom, `${c.id} follows the zoom`);
  const finer = queries.slice(asked).find((u) => u.searchParams.get('series') === 'cpu');
  assert.ok(finer, 'the zoomed window is asked again');
  assert.deepEqual([Number(finer.searchParams.get('from')), Number(finer.searchParams.get('to'))], zoom);
  assert.ok(Number(finer.searchParams.get('step').replace(/s$/, '')) < 6, `finer step: ${finer.searchParams.get('step')}`);
  assert.equal(await page.$eval('#unzoom', (e) => e.hidden), false);

  // The link reopens the same view.
  const url = page.url();
  await page.reload();
  await rangeShown(page);
  assert.equal(page.url(), url);
  for (const c of await lineCharts(page)) assert.deepEqual([c.min, c.max], zoom, `${c.id} after a reload`);
  assert.equal(await page.$eval('#ranges [data-range="1h"]', (e) => e.getAttribute('aria-pressed')), 'true');
  await page.close();

  const other = await open(new URL(url).hash);
  await rangeShown(other.page);
  for (const c of await lineCharts(other.page)) assert.deepEqual([c.min, c.max], zoom, `${c.id} in a new tab`);
  // Reset zoom: the hour again.
  await other.page.click('#unzoom');
  await rangeShown(other.page);
  const hour = await lineCharts(other.page);
  assert.equal(hour[0].max - hour[0].min, 3600000);
  assert.doesNotMatch(await other.page.evaluate(() => location.hash), /zoom/);
  assert.deepEqual([...problems, ...other.problems], []);
  await other.page.close();
});

/** Guards the custom range: two datetime-local inputs become absolute times in the URL and the axis. */
test('a custom range from the two inputs', { timeout: 60000 }, async (t) => {
  if (skip) return skipTest(t, skip);
  const { page, problems } = await open();
  await until('the live indicator', 20, () => page.$eval('#conn', (e) => e.dataset.state === 'live'));
  await page.click('#ranges [data-range="custom"]');
  const now = Date.now();
  const local = (ms) => page.evaluate((x) => {
    const d = new Date(x);
    const p = (n) => String(n).padStart(2, '0');
    return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())}T${p(d.getHours())}:${p(d.getMinutes())}:${p(d.getSeconds())}`;
  }, ms);
  const from = Math.floor((now - 120000) / 1000) * 1000;
  const to = Math.floor((now + 60000) / 1000) * 1000;
  await page.fill('#custom-from', await local(from));
  await page.fill('#custom-to', await local(to));
  await page.click('#custom button[type="submit"]');
  await rangeShown(page);
  assert.equal(await page.evaluate(() => location.hash), `#range=custom&from=${from}&to=${to}`);
  for (const c of await lineCharts(page)) assert.deepEqual([c.min, c.max], [from, to], c.id);
  const cpu = (await lineCharts(page)).find((c) => c.id === 'cpu.usage_percent');
  assert.ok(cpu.datasets[2].data.length > 0, 'stored CPU points in the last two minutes');
  assert.deepEqual(problems, []);
  await page.close();
});

/** Guards "back to live": the stream's lines come back, still growing, on an axis that spans them. */
test('back to live returns to the stream', { timeout: 90000 }, async (t) => {
  if (skip) return skipTest(t, skip);
  const { page, problems } = await open('#range=6h');
  await rangeShown(page);
  assert.equal(await page.$eval('#back-live', (e) => e.hidden), false);
  await page.click('#back-live');
  assert.equal(await page.evaluate(() => location.hash), '');
  assert.equal(await page.$eval('#back-live', (e) => e.hidden), true);
  const cpuLive = () => page.evaluate(() => {
    const chart = window.Chart.getChart(document.querySelector('figure[data-chart="cpu.usage_percent"] canvas'));
    const d = chart.data.datasets;
    return { labels: d.map((x) => x.label), n: d[0].data.length, last: d[0].data.at(-1)?.x, max: chart.options.scales.x.max };
  });
  const first = await cpuLive();
  assert.deepEqual(first.labels, ['total'], 'the live line, no band');
  // The axis spans the live data again, up to the newest streamed point.
  await until('a streamed CPU point at the end of the axis', 20, async () => {
    const now = await cpuLive();
    return now.last > first.last && now.max === now.last;
  });
  assert.equal(await page.$eval('#conn', (e) => e.dataset.state), 'live');
  // The browser's back button returns to the range.
  await page.goBack();
  await rangeShown(page);
  assert.match(await page.evaluate(() => location.hash), /range=6h/);
  assert.deepEqual(problems, []);
  await page.close();
});

/** Guards zoom in live mode: every chart's axis is frozen on the dragged span of the live window, in the URL, until "back to live". */
test('live, a drag freezes every chart on the span until back to live', { timeout: 90000 }, async (t) => {
  if (skip) return skipTest(t, skip);
  const { page, problems, queries } = await open();
  await until('the live indicator', 20, () => page.$eval('#conn', (e) => e.dataset.state === 'live'));
  await until('live CPU points', 20, () => page.evaluate(() => window.Chart.getChart(document.querySelector('figure[data-chart="cpu.usage_percent"] canvas')).data.datasets[0].data.length > 10));
  await drag(page, 'cpu.usage_percent', 0.2, 0.8);
  const zoom = await until('a live zoom in the URL', 10, () => page.evaluate(() => {
    const m = location.hash.match(/^#zoom=(\d+)-(\d+)$/);
    return m && [Number(m[1]), Number(m[2])];
  }));
  await until('every chart on the zoom', 10, async () => (await lineCharts(page)).every((c) => c.min === zoom[0] && c.max === zoom[1]));
  const cpu = (await lineCharts(page)).find((c) => c.id === 'cpu.usage_percent');
  assert.deepEqual(cpu.datasets.map((d) => d.label), ['total'], 'still the live line');
  assert.deepEqual(queries, [], 'live zoom reads nothing from the durable history');
  await page.click('#back-live');
  assert.equal(await page.evaluate(() => location.hash), '');
  await until('the axis spanning the live data again', 20, async () => {
    const c = (await lineCharts(page)).find((x) => x.id === 'cpu.usage_percent');
    return c.max === c.datasets[0].data.at(-1)[0] && c.max > zoom[1];
  });
  assert.deepEqual(problems, []);
  await page.close();
});

/** Guards the CSV link of each chart: the chart's own range query with format=csv, answered as CSV with its points. */
test('each chart links the CSV of what it shows', { timeout: 60000 }, async (t) => {
  if (skip) return skipTest(t, skip);
  const { page, problems } = await open('#range=1h');
  await rangeShown(page);
  const charts = await lineCharts(page);
  const cpu = charts.find((c) => c.id === 'cpu.usage_percent');
  const u = new URL(cpu.csv, `${host.base}/admin/monitor/`);
  assert.equal(u.searchParams.get('series'), 'cpu.usage_percent');
  assert.equal(u.searchParams.get('format'), 'csv');
  assert.deepEqual([Number(u.searchParams.get('from')), Number(u.searchParams.get('to'))], [cpu.min, cpu.max]);
  const r = await fetch(u);
  assert.equal(r.status, 200);
  assert.match(r.headers.get('content-type'), /^text\/csv/);
  const lines = (await r.text()).trim().split('\n');
  assert.equal(lines[0], 'collector,name,label,time_unix_ms,min,avg,max,count');
  assert.ok(lines.length - 1 >= cpu.datasets[2].data.filter((p) => p[1] !== null).length - 1, `${lines.length - 1} CSV rows`);
  assert.ok(lines.slice(1).every((l) => l.startsWith('cpu,usage_percent,,')));
  // With swap, memory's chart shows two series: its link is the collector's whole set. A
  // machine without swap has no swap line, and the link is the RAM series alone.
  const swap = (await host.json('/admin/monitor/system')).sections.memory.swap_total_bytes > 0;
  const mem = new URL(charts.find((c) => c.id === 'memory.used_percent').csv, `${host.base}/admin/monitor/`);
  assert.equal(mem.searchParams.get('series'), swap ? 'memory' : 'memory.used_percent');
  assert.deepEqual(problems, []);
  await page.close();
});

/** Guards that the range view reads in both themes: screenshots of the hour and of a zoom, light and dark. */
test('screenshots of a past range, light and dark', { timeout: 120000 }, async (t) => {
  if (skip) return skipTest(t, skip);
  const shots = [];
  for (const scheme of ['light', 'dark']) {
    const { page, problems } = await open('#range=1h', { scheme });
    await rangeShown(page);
    const bg = await page.evaluate(() => getComputedStyle(document.body).backgroundColor);
    const dark = bg.match(/\d+/g).slice(0, 3).map(Number).reduce((a, b) => a + b, 0) < 200;
    assert.equal(dark, scheme === 'dark', `${scheme} theme background is ${bg}`);
    shots.push(await screenshot(page, `history-range-${scheme}`));
    await drag(page, 'cpu.usage_percent', 0.97, 1);
    await until('the zoom', 10, () => page.evaluate(() => /zoom=/.test(location.hash)));
    await rangeShown(page);
    await page.waitForTimeout(300);
    shots.push(await screenshot(page, `history-zoom-${scheme}`));
    assert.deepEqual(problems, []);
    await page.close();
  }
  console.log(`screenshots:\n  ${shots.join('\n  ')}`);
});
