//! A third-party collector's series on the page: charted from the pointer and label field the host sends, updated in place from the stream.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { CHROMIUM, TARGET, gotoPage, launchBrowser, missing, openPage, plugin, skipTest, startHost, until } from './harness.mjs';

let skip = null;
let host;
let browser;

before(async () => {
  skip = missing(CHROMIUM, join(TARGET, 'vitals'), plugin('cpu'), plugin('fault'));
  if (skip) return;
  // `counter` is a collector the page has no built-in knowledge of: its one series ("count")
  // is described only by the host.
  host = await startHost(`[collectors.cpu]\ninterval = "1s"\n\n[collectors.counter]\nlibrary = ${JSON.stringify(plugin('fault'))}\ninterval = "1s"\n`);
  browser = await launchBrowser();
  await until('two points of counter history', 30, async () => {
    const h = await host.json('/admin/monitor/history?collector=counter');
    return (h.counter || []).find((s) => s.name === 'count')?.points.length >= 2;
  });
});

after(async () => {
  if (browser) await browser.close();
  if (host) await host.stop();
});

/** Guards that the host sends each series' pointer and label field, and that the page updates a third-party chart in place from them: one `/history` read at load, none per update. */
test('a third-party series updates in place with one history read', { timeout: 90000 }, async (t) => {
  if (skip) return skipTest(t, skip);
  const history = await host.json('/admin/monitor/history?collector=counter');
  const series = history.counter.find((s) => s.name === 'count');
  assert.equal(series.pointer, '/count', 'the host sends the pointer the plugin declared');
  assert.ok(!('label_field' in series), 'no label field for a plain (non-array) series');

  const { page, problems } = await openPage(browser.context);
  const reads = [];
  page.on('request', (r) => {
    const u = new URL(r.url());
    if (u.pathname === '/admin/monitor/history') reads.push(u.search);
  });
  const resp = await gotoPage(page, `${host.base}/admin/monitor/`);
  assert.equal(resp.status(), 200);
  const points = () => page.evaluate(() => {
    const canvas = document.querySelector('figure.chart[data-chart="counter.count"] canvas');
    const chart = canvas && window.Chart.getChart(canvas);
    return chart ? chart.data.datasets[0].data.map((p) => [p.x, p.y]) : null;
  });
  const first = await until('the counter chart', 30, points);
  // Five more collects arrive through the stream.
  const later = await until('five more counter points on the chart', 30, async () => {
    const p = await points();
    return p && p.length >= first.length + 5 ? p : null;
  });
  assert.deepEqual(later.slice(0, first.length), first, 'points are appended in place, not re-read');
  const section = (await host.json('/admin/monitor/system')).sections.counter;
  assert.ok(later[later.length - 1][1] <= section.count, 'the chart follows the section');
  const counterReads = reads.filter((q) => q.includes('collector=counter'));
  const fullReads = reads.filter((q) => !q.includes('collector='));
  assert.equal(fullReads.length, 1, `one full history read at load: ${JSON.stringify(reads)}`);
  assert.deepEqual(counterReads, [], `no re-read of the counter's history: ${JSON.stringify(reads)}`);
  assert.deepEqual(problems, []);
  await page.close();
});
