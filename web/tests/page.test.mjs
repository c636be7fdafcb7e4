//! The page's fixes in Debian's chromium against the real host: "no swap", the unavailable chip's tooltip, the API requests panel (reset for admins only), round axis ticks, legends that leave phones a plot, and cards of a row as tall as each other; plus the pure tick and request-row helpers in node.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { axisKind, niceStep } from '../static/charts.js';
import { ms, routeRows } from '../static/requests.js';
import { CHROMIUM, TARGET, gotoPage, launchBrowser, missing, openPage, plugin, skipPart, skipTest, startHost, until } from './harness.mjs';

const sha = (t) => `sha256:${createHash('sha256').update(t).digest('hex')}`;
const VIEWER = 'viewer-token-for-the-page-test';
const ADMIN = 'admin-token-for-the-page-test';
const DOCKER_IMAGE = 'vitals-test/busybox:latest';
const DOCKER_LABEL = `vitals-e2e=page-${process.pid}`;
/** Containers started, so each Docker chart has a line (and a legend entry) per container. */
const CONTAINERS = 8;
const GiB = 1024 ** 3;

let browser;
/** The host every browser test shares: auth off (so the page is an admin's), docker when it answers. */
let host;
let skip = null;
let dockerReady = false;

function docker(...args) {
  // A daemon that hangs fails the call instead of the whole file.
  return execFileSync('docker', args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], timeout: 60000 }).trim();
}

function dockerMissing() {
  try {
    docker('info', '--format', '{{.ServerVersion}}');
    docker('image', 'inspect', DOCKER_IMAGE);
    return null;
  } catch (e) {
    return `no Docker daemon or no ${DOCKER_IMAGE} (${String(e.stderr || e.message).trim()}); \`make test-deps\` sets both up`;
  }
}

/** A step of the value axis is round: a power of two from 128 up, or 1, 2 or 5 times a power of ten. */
function roundStep(step) {
  if (step >= 128 && Number.isInteger(Math.log2(step))) return true;
  const mag = 10 ** Math.floor(Math.log10(step));
  return [1, 2, 5].some((m) => Math.abs(step - m * mag) < 1e-9 * step);
}

before(async () => {
  skip = missing(CHROMIUM, join(TARGET, 'vitals'), ...['cpu', 'memory', 'system', 'process', 'disk', 'network', 'docker'].map(plugin));
  if (skip) return;
  const why = dockerMissing();
  if (why) skipPart('the Docker charts with many containers', why);
  else {
    // Set first: `after` removes whatever of them was started, even when one fails.
    dockerReady = true;
    for (let i = 0; i < CONTAINERS; i++) {
      // No network: the charts need none, and the machine's bridge may be in use by other tests.
      docker('run', '-d', '--network', 'none', '--label', DOCKER_LABEL, '--name', `vt-page-${process.pid}-${i}`, DOCKER_IMAGE, 'sleep', '600');
    }
  }
  let toml = '[history]\npoints = 60\n';
  for (const name of ['cpu', 'memory', 'system', 'process', 'disk', 'network', 'docker']) toml += `\n[collectors.${name}]\ninterval = "1s"\n`;
  // Docker on a socket that does not exist: unavailable, the normal state of a machine without it.
  toml += `\n[collectors.nodaemon]\nlibrary = ${JSON.stringify(plugin('docker'))}\ninterval = "1s"\nconfig = { host = "unix:///nonexistent/docker.sock" }\n`;
  host = await startHost(toml);
  browser = await launchBrowser();
  await until('a few points of history', 60, async () => {
    const h = await host.json('/admin/monitor/history?collector=disk');
    return (h.disk || []).some((s) => s.points.length >= 4);
  });
});

after(async () => {
  if (browser) await browser.close();
  if (host) await host.stop();
  if (dockerReady) {
    const ids = docker('ps', '-aq', '--filter', `label=${DOCKER_LABEL}`).split(/\s+/).filter(Boolean);
    if (ids.length) docker('rm', '-f', '-v', ...ids);
  }
});

async function open(base, { width = 1280, height = 900 } = {}) {
  const { page, problems } = await openPage(browser.context);
  await page.setViewportSize({ width, height });
  const resp = await gotoPage(page, `${base}/admin/monitor/`);
  assert.equal(resp.status(), 200);
  return { page, problems };
}

test('axis steps are round: powers of two for bytes, 1-2-5 otherwise, whole numbers for counts', () => {
  assert.equal(axisKind('bytes'), 'bytes');
  assert.equal(axisKind('bytes_per_second'), 'bytes');
  assert.equal(axisKind('processes'), 'count');
  assert.equal(axisKind('count'), 'count');
  for (const u of ['percent', 'celsius', 'watts', 'load', undefined, null, '']) assert.equal(axisKind(u), null, String(u));
  // 23.5 GiB of RAM: 8 GiB steps (not the 9.3, 18.6 GiB of decimal steps).
  assert.equal(niceStep(23.5 * GiB, 'bytes'), 8 * GiB);
  assert.equal(niceStep(57.2 * 1024 ** 2, 'bytes'), 16 * 1024 ** 2);
  assert.equal(niceStep(1500, 'bytes'), 512, '0, 512 B, 1 KiB, 1.5 KiB');
  assert.equal(niceStep(900, 'bytes'), 256, '0, 256 B, 512 B, 768 B, 1 KiB: not 1,000 B');
  assert.equal(niceStep(300, 'bytes'), 100);
  assert.equal(niceStep(150, 'count'), 50);
  assert.equal(niceStep(1, 'count'), 1, 'never a fraction of a process');
  for (const bad of [0, -5, NaN, Infinity]) assert.equal(niceStep(bad, 'bytes'), 1);
  for (let span = 1; span < 2 ** 50; span *= 1.37) {
    for (const kind of ['bytes', 'count']) {
      const step = niceStep(span, kind);
      assert.ok(roundStep(step), `${kind} ${span}: ${step}`);
      assert.ok(span / step <= 4 + 1e-9, `${kind} ${span}: ${step} makes more than four steps`);
      assert.ok(step >= 1 && (kind === 'count' ? Number.isInteger(step) : true));
    }
  }
});

test('request rows: busiest first, latency in ms, hostile answers give nothing', () => {
  const rows = routeRows({
    routes: {
      'GET /a': { count: 2, status_classes: { '2xx': 2 }, latency_ms: { p50: 0.05, p90: 3, p99: 1200 } },
      'POST /b': { count: 5, status_classes: { '4xx': 1, '2xx': 4 }, latency_ms: { p50: 1, p90: 1, p99: 1 } },
      'GET /c': null,
    },
  });
  assert.deepEqual(rows.map((r) => [r.route, r.count, r['2xx'], r['4xx'], r['5xx']]), [['POST /b', 5, 4, 1, 0], ['GET /a', 2, 2, 0, 0]]);
  assert.deepEqual([ms(0.05), ms(3), ms(1200), ms(undefined)], ['0.05 ms', '3 ms', '1.2 s', '–']);
  for (const bad of [null, undefined, 'x', 5, { routes: 'x' }, { routes: null }]) assert.deepEqual(routeRows(bad), []);
});

test('the unavailable chip says why and that it is normal, not failures in a row or a next retry', { timeout: 60000 }, async (t) => {
  if (skip) return skipTest(t, skip);
  const st = await until('the nodaemon collector unavailable', 30, async () => {
    const s = (await host.json('/admin/monitor/system')).collectors.nodaemon;
    return s.state === 'unavailable' && s;
  });
  const { page, problems } = await open(host.base);
  const chip = '#health .chip[data-collector="nodaemon"]';
  await until('the chip', 20, () => page.$eval(chip, (e) => e.dataset.state === 'unavailable'));
  const title = await page.$eval(chip, (e) => e.title);
  assert.match(title, /^nodaemon: unavailable\nreason: /, title);
  assert.ok(title.includes(st.reason), title);
  assert.match(title, /a normal state where the source is absent/, title);
  assert.doesNotMatch(title, /failures in a row|next retry/, title);
  // The badge on the card carries the same text.
  assert.equal(await page.$eval('#card-nodaemon .badge', (e) => e.title), title);
  assert.deepEqual(problems, []);
  await page.close();
});

test('the API requests panel: per route counts, classes and latency; an admin resets them', { timeout: 90000 }, async (t) => {
  if (skip) return skipTest(t, skip);
  const { page, problems } = await open(host.base);
  const panel = '#requests';
  await page.waitForSelector(`${panel}:not([hidden]) table[data-table="requests.routes"] tbody tr[data-key="GET /admin/monitor/system"]`, { timeout: 30000 });
  assert.equal(await page.$eval(`${panel} .reset`, (e) => e.hidden), false, 'auth off: the page is an admin\'s');
  const row = (key) => page.$eval(`${panel} tr[data-key="${key}"]`, (tr) => Object.fromEntries([...tr.children].map((td) => [td.dataset.col, td.textContent])));
  const sys = await row('GET /admin/monitor/system');
  assert.match(sys.count, /^[1-9]\d*$/);
  assert.match(sys['2xx'], /^[1-9]\d*$/);
  for (const p of ['p50', 'p90', 'p99']) assert.match(sys[p], /^\d+(\.\d+)? (ms|s)$/, `${p}: ${sys[p]}`);
  const headers = await page.$$eval(`${panel} thead th`, (ths) => ths.map((th) => th.textContent));
  assert.deepEqual(headers, ['route', 'requests', '2xx', '3xx', '4xx', '5xx', 'p50', 'p90', 'p99']);
  // A 404 is counted as a 4xx.
  await fetch(`${host.base}/admin/monitor/sections/nosuchcollector`);
  const before = (await host.json('/admin/monitor/metrics')).requests;
  assert.ok(before.total >= 5, JSON.stringify(before.total));
  const clicked = Date.now();
  await page.click(`${panel} .reset`);
  // The reset answers, the panel reads again: only what came after the click is counted.
  await until('the panel after the reset', 20, async () => {
    const sub = await page.$eval(`${panel} .sub`, (e) => e.textContent);
    const n = Number(sub.match(/^([\d,]+) requests since/)?.[1].replace(/,/g, ''));
    return Number.isFinite(n) && n < before.total && n <= 3;
  });
  const after = (await host.json('/admin/monitor/metrics')).requests;
  assert.ok(Date.parse(after.since) >= clicked - 1000, `${after.since} vs click at ${new Date(clicked).toISOString()}`);
  assert.equal(after.routes['GET /admin/monitor/sections/{name}'], undefined, 'the 404 from before is forgotten');
  const keys = await page.$$eval(`${panel} tbody tr[data-key]`, (trs) => trs.map((tr) => tr.dataset.key));
  assert.ok(!keys.includes('GET /admin/monitor/sections/{name}') && !keys.includes('unmatched'), keys.join(', '));
  assert.deepEqual(problems, []);
  await page.close();
});

test('a viewer sees the request counters but no reset button; an admin does', { timeout: 120000 }, async (t) => {
  if (skip) return skipTest(t, skip);
  const authed = await startHost(`[server]
[[server.tokens]]
name = "viewer"
role = "viewer"
hash = "${sha(VIEWER)}"
[[server.tokens]]
name = "admin"
role = "admin"
hash = "${sha(ADMIN)}"

[collectors.cpu]
interval = "1s"
[collectors.memory]
interval = "1s"
`);
  try {
    const { page, problems } = await open(authed.base);
    const signIn = async (token) => {
      await page.waitForSelector('#login:not([hidden])', { timeout: 20000 });
      assert.equal(await page.$eval('#requests', (e) => e.hidden), true, 'signed out: no panel');
      await page.fill('#token', token);
      await page.click('#login-form button[type="submit"]');
      await page.waitForSelector('#requests:not([hidden]) tbody tr[data-key]', { timeout: 30000 });
    };
    await signIn(VIEWER);
    assert.equal(await page.$eval('#requests .reset', (e) => e.hidden), true, 'a viewer is not offered the reset');
    assert.equal(await page.$eval('#requests .reset', (e) => getComputedStyle(e).display), 'none');
    assert.ok((await page.$$('#requests tbody tr[data-key]')).length >= 1);
    await page.click('#logout');
    await signIn(ADMIN);
    await until('the reset button for the admin', 20, () => page.$eval('#requests .reset', (e) => !e.hidden));
    assert.deepEqual(problems.filter((p) => !/401/.test(p)), []);
    await page.close();
  } finally {
    await authed.stop();
  }
});

test('no swap reads "no swap"; swap reads its figures', { timeout: 90000 }, async (t) => {
  if (skip) return skipTest(t, skip);
  // This machine's meminfo (every line the parser wants) with the swap lines of the case.
  const meminfo = (swapKb) => readFileSync('/proc/meminfo', 'utf8')
    .replace(/^SwapTotal:.*$/m, `SwapTotal:      ${swapKb} kB`)
    .replace(/^SwapFree:.*$/m, `SwapFree:       ${swapKb / 2} kB`);
  for (const swapKb of [0, 2097152]) {
    const root = mkdtempSync(join(tmpdir(), 'vitals-page-root-'));
    // The host uses a root that holds a mounted proc, which `proc/1/stat` stands for.
    mkdirSync(join(root, 'proc', '1'), { recursive: true });
    writeFileSync(join(root, 'proc', '1', 'stat'), '1 (init) S 0 1 1 0 -1 4194560 0 0 0 0 0 0 0 0 20 0 1 0 10 0 0\n');
    writeFileSync(join(root, 'proc', 'meminfo'), meminfo(swapKb));
    const h = await startHost(`host_root = ${JSON.stringify(root)}\n\n[collectors.memory]\ninterval = "1s"\n`);
    try {
      const { page, problems } = await open(h.base);
      const cell = (col) => page.$eval(`table[data-table="memory.usage"] tr[data-key="swap"] td[data-col="${col}"]`, (e) => e.textContent);
      await page.waitForSelector('table[data-table="memory.usage"] tr[data-key="swap"]', { timeout: 20000 });
      const cells = await Promise.all(['total', 'used', 'free', 'percent'].map(cell));
      if (swapKb) {
        assert.deepEqual(cells, ['2 GiB', '1 GiB', '1 GiB', '50 %']);
      } else {
        assert.deepEqual(cells, ['no swap', '', '', '']);
        assert.doesNotMatch(await page.$eval('#card-memory', (e) => e.textContent), /0 B/);
      }
      // The chart has a swap line only where there is swap.
      await until('the memory chart', 20, () => page.evaluate(() => window.Chart.getChart(document.querySelector('figure[data-chart="memory.used_percent"] canvas'))?.data.datasets.length >= 1));
      await page.waitForTimeout(1500);
      const labels = await page.evaluate(() => window.Chart.getChart(document.querySelector('figure[data-chart="memory.used_percent"] canvas')).data.datasets.map((d) => d.label));
      assert.deepEqual(labels, swapKb ? ['RAM', 'swap'] : ['RAM']);
      assert.deepEqual(problems, []);
      await page.close();
    } finally {
      await h.stop();
      rmSync(root, { recursive: true, force: true });
    }
  }
});

/** Every line chart's value axis: its id, unit kind, tick values and labels, and the plot's share of the canvas. */
function axesOf(page) {
  return page.evaluate(() => [...document.querySelectorAll('figure.chart[data-chart] canvas')].map((c) => {
    const chart = window.Chart.getChart(c);
    if (!chart || chart.config.type !== 'line') return null;
    const y = chart.scales.y;
    return {
      id: c.closest('figure').dataset.chart,
      values: y.ticks.map((tk) => tk.value),
      labels: y.ticks.map((tk) => tk.label),
      lines: chart.data.datasets.length,
      plotHeight: chart.chartArea.bottom - chart.chartArea.top,
      plotWidth: chart.chartArea.right - chart.chartArea.left,
      height: chart.height,
      width: chart.width,
      labelWidth: Math.max(0, ...(y._labelSizes ? [y._labelSizes.widest.width] : [0])),
      axisWidth: y.width,
      legend: chart.options.plugins.legend.display,
    };
  }).filter(Boolean));
}

test('value axes step by round numbers: bytes by powers of two, counts by whole numbers', { timeout: 90000 }, async (t) => {
  if (skip) return skipTest(t, skip);
  const { page, problems } = await open(host.base);
  await until('the charts drawn', 30, async () => (await axesOf(page)).filter((a) => a.values.length >= 2).length >= 6);
  await page.waitForTimeout(1500);
  const axes = await axesOf(page);
  const byteCharts = ['disk.read_bytes_per_second', 'disk.write_bytes_per_second', 'network.rx_bytes_per_second', 'network.tx_bytes_per_second'];
  if (dockerReady) byteCharts.push('docker.memory_used_bytes');
  const countCharts = ['process.process_count', 'process.thread_count', 'process.zombie_count'];
  for (const id of [...byteCharts, ...countCharts]) {
    const a = axes.find((x) => x.id === id);
    assert.ok(a, `chart ${id} among ${axes.map((x) => x.id).join(', ')}`);
    assert.ok(a.values.length >= 2, `${id}: ${a.values}`);
    const step = a.values[1] - a.values[0];
    assert.ok(roundStep(step), `${id}: step ${step} of ${a.values}`);
    a.values.forEach((v, i) => assert.ok(Math.abs(v - a.values[0] - i * step) < 1e-6 * step && Math.abs(v / step - Math.round(v / step)) < 1e-9, `${id}: ${a.values}`));
    // A label is a whole number of its unit, or a half (1.5 KiB between 1 and 2 KiB).
    for (const l of a.labels) assert.match(l, /^\d{1,3}(,\d{3})*(\.5)?( (B|KiB|MiB|GiB|TiB)(\/s)?)?$/, `${id}: label ${l} of ${a.labels}`);
  }
  for (const id of countCharts) {
    const a = axes.find((x) => x.id === id);
    for (const l of a.labels) assert.match(l, /^\d{1,3}(,\d{3})*$/, `${id}: a count's axis shows the bare number (${a.labels})`);
  }
  assert.deepEqual(problems, []);
  await page.close();
});

test('on a 390 px phone the plots keep their room: legends below, labels unclipped', { timeout: 90000 }, async (t) => {
  if (skip) return skipTest(t, skip);
  const { page, problems } = await open(host.base, { width: 390, height: 844 });
  await until('the charts drawn', 30, async () => (await axesOf(page)).filter((a) => a.values.length >= 2).length >= 6);
  if (dockerReady) {
    await until('a line per container', 30, async () => (await axesOf(page)).find((a) => a.id === 'docker.memory_used_bytes')?.lines >= CONTAINERS);
  }
  await page.waitForTimeout(1500);
  const axes = await axesOf(page);
  for (const a of axes) {
    assert.equal(a.legend, false, `${a.id}: no legend inside the canvas`);
    assert.ok(a.plotHeight >= 0.6 * a.height, `${a.id}: plot ${a.plotHeight} px of a ${a.height} px canvas (${a.lines} lines)`);
    assert.ok(a.plotWidth >= 0.5 * a.width, `${a.id}: plot ${a.plotWidth} px wide of ${a.width} px`);
    assert.ok(a.labelWidth <= a.axisWidth, `${a.id}: widest axis label ${a.labelWidth} px in a ${a.axisWidth} px axis`);
  }
  if (dockerReady) {
    // Every container is named in the legend under the chart, which scrolls instead of growing.
    const legend = await page.$$eval('figure[data-chart="docker.memory_used_bytes"] .legend li', (lis) => lis.map((li) => li.textContent));
    assert.ok(legend.length >= CONTAINERS, legend.join(', '));
    const box = await page.$eval('figure[data-chart="docker.memory_used_bytes"] .legend', (e) => e.getBoundingClientRect().height);
    assert.ok(box <= 50, `legend ${box} px tall`);
  }
  // The process charts' captions and tick labels fit their charts.
  for (const id of ['process.process_count', 'process.thread_count']) {
    const a = axes.find((x) => x.id === id);
    assert.ok(a.width >= 150, `${id}: ${a.width} px`);
  }
  const overflow = await page.evaluate(() => document.documentElement.scrollWidth - document.documentElement.clientWidth);
  assert.ok(overflow <= 0, `no sideways scroll (overflow ${overflow} px)`);
  assert.deepEqual(problems, []);
  await page.close();
});

test('on a desktop the cards of a row are as tall as each other, and none sits alone at half width', { timeout: 60000 }, async (t) => {
  if (skip) return skipTest(t, skip);
  for (const width of [1280, 1440]) {
    const { page, problems } = await open(host.base, { width });
    await page.waitForSelector('#card-system dd[data-field="hostname"]', { timeout: 20000 });
    await page.waitForSelector('#card-cpu table[data-table="cpu.cores"] tbody tr', { timeout: 20000, state: 'attached' });
    await page.waitForTimeout(1000);
    const cards = await page.$$eval('#cards > .card', (els) => els.filter((e) => !e.hidden).map((e) => {
      const r = e.getBoundingClientRect();
      return { id: e.id, top: Math.round(r.top), bottom: Math.round(r.bottom), left: Math.round(r.left), width: Math.round(r.width) };
    }));
    const grid = await page.$eval('#cards', (e) => e.getBoundingClientRect().width);
    const by = Object.fromEntries(cards.map((c) => [c.id, c]));
    const [cpu, mem, sys] = [by['card-cpu'], by['card-memory'], by['card-system']];
    assert.equal(mem.top, cpu.top, 'Memory starts beside the CPU card');
    assert.equal(sys.bottom, cpu.bottom, 'System ends where the CPU card ends');
    assert.equal(sys.left, mem.left, 'System sits under Memory');
    assert.ok(mem.bottom < sys.top, 'Memory above System');
    // Every card narrower than the grid shares its rows with another one.
    for (const c of cards.filter((x) => x.width < grid - 2)) {
      const beside = cards.filter((o) => o !== c && o.left !== c.left && o.top < c.bottom && c.top < o.bottom);
      assert.ok(beside.length, `${c.id} (${c.width} of ${grid} px) has a card beside it: ${JSON.stringify(cards)}`);
      // And the column beside it spans the same height.
      const top = Math.min(...beside.map((o) => o.top));
      const bottom = Math.max(...beside.map((o) => o.bottom));
      const column = cards.filter((o) => o.left === c.left && o.top < bottom && top < o.bottom);
      assert.equal(Math.min(...column.map((o) => o.top)), top, `${c.id} column top at ${width} px`);
      assert.equal(Math.max(...column.map((o) => o.bottom)), bottom, `${c.id} column bottom at ${width} px`);
    }
    assert.deepEqual(problems, []);
    await page.close();
  }
});
