//! The dashboard in Debian's chromium against the real host: loading, charts against the history, tables against the snapshot, the SSE fallback, layout and screenshots.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import * as f from '../static/format.js';
import { CHROMIUM, TARGET, gotoPage, launchBrowser, missing, openPage, plugin, screenshot, skipPart, skipTest, startHost, until } from './harness.mjs';

const NVML = join(TARGET, 'libnvidia_ml.so');
const OPTIONAL = ['gpu', 'disk', 'network', 'process', 'docker', 'fault'];

let skip = null;
let host;
let browser;
const enabled = ['cpu', 'memory', 'system'];

/** The image `scripts/test-deps.d/20-docker.sh` imports, as the Rust e2e tests use it. */
const DOCKER_IMAGE = 'vitals-test/busybox:latest';
/** The label and name of the container the Docker card must list (removed in `after`). */
const DOCKER_LABEL = `vitals-e2e=dashboard-${process.pid}`;
const DOCKER_NAME = `vt-e2e-dashboard-${process.pid}-web`;
/** True once this run's container is up. */
let dockerReady = false;

function docker(...args) {
  return execFileSync('docker', args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] }).trim();
}

/** Why no container can be started here, or null. */
function dockerMissing() {
  try {
    docker('info', '--format', '{{.ServerVersion}}');
  } catch (e) {
    return `no Docker daemon answers (${String(e.stderr || e.message).trim()}); \`make test-deps\` starts one`;
  }
  try {
    docker('image', 'inspect', DOCKER_IMAGE);
  } catch {
    return `the test image ${DOCKER_IMAGE} is missing (\`make test-deps\` imports it)`;
  }
  return null;
}

function config() {
  let toml = `[history]\npoints = 60\n\n[server]\nkeep_alive = "1s"\n`;
  const every = { system: '2s', process: '1s', docker: '2s' };
  for (const name of enabled) {
    toml += `\n[collectors.${name}]\ninterval = "${every[name] || '1s'}"\n`;
    if (name === 'gpu') toml += `[collectors.gpu.config]\nsource = "nvml"\nnvml_library = ${JSON.stringify(NVML)}\n`;
  }
  if (enabled.includes('docker')) {
    // The same plugin on a daemon socket that does not exist: its card must say why it is unavailable.
    toml += `\n[collectors.nodaemon]\nlibrary = ${JSON.stringify(plugin('docker'))}\ninterval = "2s"\nconfig = { host = "unix:///nonexistent/docker.sock" }\n`;
  }
  if (enabled.includes('fault')) {
    // Fails after two good collects: the page must show it failed, with stale data and the error.
    toml += `\n[collectors.flaky]\nlibrary = ${JSON.stringify(plugin('fault'))}\ninterval = "1s"\nconfig = { behaviour = "error", good_collects = 2 }\n`;
  }
  return toml;
}

before(async () => {
  skip = missing(CHROMIUM, join(TARGET, 'vitals'), ...enabled.map(plugin));
  if (skip) return;
  for (const name of OPTIONAL) {
    const needs = name === 'gpu' ? [plugin(name), NVML] : [plugin(name)];
    const why = missing(...needs);
    if (why) skipPart(`the ${name} collector on the page`, why);
    else enabled.push(name);
  }
  if (enabled.includes('docker')) {
    const why = dockerMissing();
    if (why) skipPart('the Docker card with a container', why);
    else {
      docker('run', '-d', '--label', DOCKER_LABEL, '--name', DOCKER_NAME, DOCKER_IMAGE, 'sleep', '600');
      dockerReady = true;
    }
  }
  host = await startHost(config());
  browser = await launchBrowser();
  // Some history before the page opens, so the charts must be filled from it at once.
  await until('four points of CPU history', 30, async () => {
    const h = await host.json('/admin/monitor/history?collector=cpu');
    return (h.cpu || []).find((s) => s.name === 'usage_percent')?.points.length >= 4;
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

async function open(opts = {}) {
  const { page, problems } = await openPage(browser.context);
  if (opts.before) await opts.before(page);
  const resp = await gotoPage(page, `${host.base}/admin/monitor/`);
  assert.equal(resp.status(), 200);
  return { page, problems };
}

/** Every chart on the page: its id and, per dataset, the label and points. */
function chartsOf(page) {
  return page.evaluate(() => [...document.querySelectorAll('figure.chart[data-chart] canvas')].map((c) => {
    const chart = window.Chart.getChart(c);
    return {
      id: c.closest('figure').dataset.chart,
      type: chart.config.type,
      datasets: chart.data.datasets.map((d) => ({ label: d.label, data: d.data.map((p) => (typeof p === 'object' ? [p.x, p.y] : p)) })),
      labels: chart.data.labels,
    };
  }));
}

/**
 * One chart point against one history point: the same time exactly, and the same value up to
 * the last bit or so. The page reads values from the section as the plugin wrote them; the
 * host's history holds them as parsed by serde_json, which may round the last bit differently.
 */
function samePoint(p, h) {
  return !!h && p[0] === h[0] && Math.abs(p[1] - h[1]) <= Math.abs(h[1]) * 1e-12;
}

/** The history series a chart dataset shows, by the dashboard's naming. */
function seriesFor(history, chartId, datasetLabel) {
  const parts = chartId.split('.');
  const collector = parts[0];
  const list = history[collector] || [];
  if (collector === 'memory') {
    const name = datasetLabel === 'swap' ? 'swap_used_percent' : 'used_percent';
    return list.find((s) => s.name === name);
  }
  if (collector === 'gpu') {
    const [, label, name] = parts;
    return list.find((s) => s.name === name && s.label === label);
  }
  const name = parts.slice(1).join('.');
  return list.find((s) => s.name === name && (s.label === null ? true : s.label === datasetLabel));
}

test('the page loads with no console errors and shows every collector, live', { timeout: 90000 }, async (t) => {
  if (skip) return skipTest(t, skip);
  const { page, problems } = await open();
  await until('the live indicator', 20, () => page.$eval('#conn', (e) => e.dataset.state === 'live'));
  const snap = await host.json('/admin/monitor/system');
  for (const name of Object.keys(snap.collectors)) {
    assert.ok(await page.$(`#card-${name}`), `card for ${name}`);
    assert.ok(await page.$(`#health .chip[data-collector="${name}"]`), `health chip for ${name}`);
  }
  // Several updates arrive; none may log an error.
  const first = await page.$eval('#updated', (e) => e.textContent);
  await until('a newer snapshot on the page', 10, async () => (await page.$eval('#updated', (e) => e.textContent)) !== first);
  assert.equal(await page.$eval('#conn .label', (e) => e.textContent), 'live');
  assert.equal(await page.title(), `${snap.sections.system.hostname} · vitals`);
  assert.deepEqual(problems, []);
  await page.close();
});

test('collector health at a glance: state per collector, the last error on hover', { timeout: 60000 }, async (t) => {
  if (skip) return skipTest(t, skip);
  if (!enabled.includes('fault')) return skipTest(t, 'the fault plugin is not built');
  const snap = await until('the flaky collector to fail', 20, async () => {
    const s = await host.json('/admin/monitor/system');
    return s.collectors.flaky.state === 'failed' && s;
  });
  const { page, problems } = await open();
  await until('the live indicator', 20, () => page.$eval('#conn', (e) => e.dataset.state === 'live'));
  for (const [name, st] of Object.entries(snap.collectors)) {
    if (name === 'flaky') continue;
    assert.equal(await page.$eval(`#health .chip[data-collector="${name}"]`, (e) => e.dataset.state), st.state, name);
  }
  const chip = await page.$('#health .chip[data-collector="flaky"]');
  assert.equal(await chip.evaluate((e) => e.dataset.state), 'failed');
  assert.equal(await chip.evaluate((e) => e.dataset.stale), 'true');
  assert.equal(await chip.evaluate((e) => e.querySelector('.cstate').textContent), 'failed, stale');
  // The collector keeps retrying, so its last error moves on: the title must show the
  // snapshot's last error as of a moment when both are read together.
  await until('the chip title to show the last error', 20, async () => {
    const now = await host.json('/admin/monitor/system');
    const title = await chip.evaluate((e) => e.title);
    const err = now.collectors.flaky.last_error;
    return title.includes(`last error ${err.time}`) && title.includes(err.message);
  });
  // The card keeps the last good data, marked stale, and says why.
  assert.equal(await page.$eval('#card-flaky .badge.stale', (e) => e.hidden), false);
  assert.equal(await page.$eval('#card-flaky .reason', (e) => e.textContent), `flaky failed: ${snap.collectors.flaky.reason}`);
  assert.equal(await page.$eval('#card-flaky dd[data-field="count"]', (e) => e.textContent), '2');
  assert.deepEqual(problems, []);
  await page.close();
});

test('charts are filled from the history at once and stay equal to it', { timeout: 90000 }, async (t) => {
  if (skip) return skipTest(t, skip);
  const before = await host.json('/admin/monitor/history?collector=cpu');
  const atOpen = before.cpu.find((s) => s.name === 'usage_percent').points.length;
  const { page, problems } = await open();
  // Filled at once: as many points as the history had when the page opened, before any tick.
  await page.waitForFunction((n) => {
    const c = document.querySelector('figure[data-chart="cpu.usage_percent"] canvas');
    const chart = c && window.Chart && window.Chart.getChart(c);
    return chart && chart.data.datasets.length && chart.data.datasets[0].data.length >= n;
  }, atOpen, { timeout: 5000 });

  const expected = ['cpu.usage_percent', 'memory.used_percent'];
  if (enabled.includes('gpu')) expected.push(...['utilization_percent', 'memory_used_bytes', 'temperature_celsius', 'power_draw_watts'].map((n) => `gpu.0.${n}`));
  // New collects are appended while the page is open.
  await until('the CPU chart to grow', 15, async () => {
    const cpu = (await chartsOf(page)).find((c) => c.id === 'cpu.usage_percent');
    return cpu.datasets[0].data.length > atOpen + 1;
  });
  let compared = 0;
  await until('every chart to equal /admin/monitor/history', 30, async () => {
    const a = await chartsOf(page);
    const history = await host.json('/admin/monitor/history');
    const b = await chartsOf(page);
    if (JSON.stringify(a) !== JSON.stringify(b)) return false; // an update landed in between
    compared = 0;
    for (const id of expected) {
      const chart = b.find((c) => c.id === id);
      if (!chart || !chart.datasets.length) return false;
    }
    for (const chart of b.filter((c) => c.type === 'line')) {
      for (const ds of chart.datasets) {
        const s = seriesFor(history, chart.id, ds.label);
        assert.ok(s, `history series for chart ${chart.id} / ${ds.label}`);
        if (ds.data.length !== s.points.length || ds.data.some((p, n) => !samePoint(p, s.points[n]))) {
          const i = ds.data.findIndex((p, n) => !samePoint(p, s.points[n]));
          throw new Error(`chart ${chart.id} / ${ds.label} differs at ${i}: page ${JSON.stringify(ds.data.slice(Math.max(0, i - 1), i + 2))} (${ds.data.length}), history ${JSON.stringify(s.points.slice(Math.max(0, i - 1), i + 2))} (${s.points.length})`);
        }
        compared += 1;
      }
    }
    return true;
  });
  assert.ok(compared >= expected.length, `compared ${compared} datasets`);
  assert.deepEqual(problems, []);
  await page.close();
});

test('charts are updated in place, never re-created', { timeout: 60000 }, async (t) => {
  if (skip) return skipTest(t, skip);
  const { page } = await open();
  await until('the CPU chart with points', 10, () => page.evaluate(() => {
    const c = window.Chart && window.Chart.getChart(document.querySelector('figure[data-chart="cpu.usage_percent"] canvas'));
    return c && c.data.datasets.length > 0 && c.data.datasets[0].data.length > 0;
  }));
  await page.evaluate(() => {
    window.testCharts = [...document.querySelectorAll('figure.chart canvas')].map((c) => window.Chart.getChart(c));
    window.testCount = Object.keys(window.Chart.instances).length;
    window.testCpu = window.Chart.getChart(document.querySelector('figure[data-chart="cpu.usage_percent"] canvas'));
    window.testLast = window.testCpu.data.datasets[0].data.at(-1).x;
  });
  await until('three more CPU points', 15, () => page.evaluate(() => {
    const d = window.testCpu.data.datasets[0].data;
    return d.at(-1).x > window.testLast && d.length >= 3;
  }));
  const same = await page.evaluate(() => {
    const now = [...document.querySelectorAll('figure.chart canvas')].map((c) => window.Chart.getChart(c));
    return window.testCharts.every((c, i) => c === now[i]) && Object.keys(window.Chart.instances).length === window.testCount;
  });
  assert.ok(same, 'the same Chart objects, and no new ones');
  await page.close();
});

test('every section table has the rows of /admin/monitor/system', { timeout: 90000 }, async (t) => {
  if (skip) return skipTest(t, skip);
  const { page, problems } = await open();
  await until('the live indicator', 20, () => page.$eval('#conn', (e) => e.dataset.state === 'live'));
  const keysOf = (name) => page.$$eval(`table[data-table="${name}"] tbody tr`, (rows) => rows.map((r) => r.dataset.key));
  const cell = (name, key, col) => page.$eval(`table[data-table="${name}"] tr[data-key="${key}"] td[data-col="${col}"]`, (e) => e.textContent);
  const field = (kv, label) => page.$eval(`dl[data-kv="${kv}"] dd[data-field="${label}"]`, (e) => e.textContent);

  // Values that change every collect are compared until page and API agree.
  await until('tables to match the snapshot', 30, async () => {
    const snap = await host.json('/admin/monitor/system');
    const s = snap.sections;
    const checks = [];
    const eq = async (what, got, want) => checks.push([what, JSON.stringify(await got) === JSON.stringify(want)]);
    await eq('cpu cores', keysOf('cpu.cores'), s.cpu.cores.map((c) => String(c.index)));
    await eq('cpu usage per core', cell('cpu.cores', '0', 'usage_percent'), f.percent(s.cpu.cores[0].usage_percent));
    await eq('memory rows', keysOf('memory.usage'), ['RAM', 'swap']);
    await eq('RAM total', cell('memory.usage', 'RAM', 'total'), f.bytes(s.memory.total_bytes));
    await eq('RAM used', cell('memory.usage', 'RAM', 'used'), f.bytes(s.memory.used_bytes));
    await eq('swap total', cell('memory.usage', 'swap', 'total'), s.memory.swap_total_bytes ? f.bytes(s.memory.swap_total_bytes) : 'no swap');
    await eq('hostname', field('system', 'hostname'), s.system.hostname);
    await eq('kernel', field('system', 'kernel'), s.system.kernel_version);
    await eq('cpu model', field('cpu', 'model'), s.cpu.model);
    if (s.disk) {
      await eq('disks', keysOf('disk.disks'), s.disk.disks.map((d) => d.mount_point));
      const d = s.disk.disks[0];
      if (d) await eq('disk size', cell('disk.disks', d.mount_point, 'total_bytes'), f.bytes(d.total_bytes));
    }
    if (s.network) await eq('interfaces', keysOf('network.interfaces'), s.network.interfaces.map((i) => i.name));
    if (s.process) {
      await eq('top by CPU', keysOf('process.top_by_cpu'), s.process.top_by_cpu.map((p) => String(p.pid)));
      await eq('top by memory', keysOf('process.top_by_memory'), s.process.top_by_memory.map((p) => String(p.pid)));
    }
    if (s.fault) await eq('third-party section', field('fault', 'count'), f.plain(s.fault.count));
    if (dockerReady) {
      const d = s.docker || {};
      const key = (c) => c.id || c.name;
      await eq('containers', keysOf('docker.containers'), (d.containers || []).map(key));
      const mine = (d.containers || []).find((c) => c.name === DOCKER_NAME);
      checks.push(["this run's container in the section", !!mine]);
      if (mine) {
        await eq('container name', cell('docker.containers', key(mine), 'name'), mine.name);
        await eq('container image', cell('docker.containers', key(mine), 'image'), mine.image);
        await eq('container status', cell('docker.containers', key(mine), 'status'), `${mine.status}${mine.health ? ` (${mine.health})` : ''}`);
        await eq('container memory', cell('docker.containers', key(mine), 'memory_used_bytes'),
          mine.memory_used_bytes === null || mine.memory_used_bytes === undefined ? '–' : `${f.bytes(mine.memory_used_bytes)} / ${f.bytes(mine.memory_limit_bytes)}`);
      }
      await eq('docker daemon', field('docker', 'daemon'), `${d.server_version ?? '–'} (API ${d.api_version ?? '–'})`);
      await eq('docker counts', field('docker', 'containers'), `${d.containers_running ?? 0} running, ${d.containers_paused ?? 0} paused, ${d.containers_stopped ?? 0} stopped`);
    }
    if (s.gpu) {
      for (const g of s.gpu.gpus) {
        await eq(`gpu ${g.index} name`, field(`gpu.${g.index}`, 'name'), g.name ?? '–');
        await eq(`gpu ${g.index} compute capability`, field(`gpu.${g.index}`, 'compute capability'), g.compute_capability ?? '–');
        await eq(`gpu ${g.index} error`, page.$eval(`article[data-gpu="${g.index}"] .reason`, (e) => (e.hidden ? null : e.textContent)), g.error ? `GPU ${g.index}: ${g.error}` : null);
        await eq(`gpu ${g.index} memory total`, field(`gpu.${g.index}`, 'memory total'), f.bytes(g.memory_total_bytes));
        // Sorted by VRAM, largest first; processes the driver gives no figure for come last.
        await eq(`gpu ${g.index} processes`, keysOf(`gpu.${g.index}.processes`), [...g.processes].sort((a, b) => (b.used_memory_bytes ?? -1) - (a.used_memory_bytes ?? -1)).map((p) => String(p.pid)));
        await eq(`gpu ${g.index} driver`, field(`gpu.${g.index}`, 'driver'), s.gpu.driver_version);
      }
    }
    const bad = checks.filter(([, ok]) => !ok).map(([w]) => w);
    if (bad.length) throw new Error(`differs: ${bad.join(', ')}`);
    return true;
  });
  if (enabled.includes('docker')) {
    const snap = await host.json('/admin/monitor/system');
    if (dockerReady) assert.equal(snap.collectors.docker.state, 'ok', JSON.stringify(snap.collectors.docker));
    const st = snap.collectors.nodaemon;
    assert.equal(st.state, 'unavailable', JSON.stringify(st));
    const text = await page.$eval('#card-nodaemon .reason', (e) => e.textContent);
    assert.equal(text, `${f.words('nodaemon')} unavailable: ${st.reason}`);
  }
  assert.deepEqual(problems, []);
  await page.close();
});

test('the process tables sort by a clicked column', { timeout: 60000 }, async (t) => {
  if (skip) return skipTest(t, skip);
  if (!enabled.includes('process')) return skipTest(t, 'the process plugin is not built');
  const { page } = await open();
  const table = 'table[data-table="process.top_by_memory"]';
  await page.waitForSelector(`${table} tbody tr`);
  await page.click(`${table} th[data-col="pid"]`);
  assert.equal(await page.$eval(`${table} th[data-col="pid"]`, (e) => e.getAttribute('aria-sort')), 'descending');
  const pids = await page.$$eval(`${table} tbody tr`, (rows) => rows.map((r) => Number(r.dataset.key)));
  assert.deepEqual(pids, [...pids].sort((a, b) => b - a));
  await page.click(`${table} th[data-col="pid"]`);
  const up = await page.$$eval(`${table} tbody tr`, (rows) => rows.map((r) => Number(r.dataset.key)));
  assert.deepEqual(up, [...up].sort((a, b) => a - b));
  await page.click(`${table} th[data-col="name"]`);
  assert.equal(await page.$eval(`${table} th[data-col="name"]`, (e) => e.getAttribute('aria-sort')), 'ascending');
  await page.close();
});

test('when the stream fails the page polls, keeps updating, and returns to live', { timeout: 120000 }, async (t) => {
  if (skip) return skipTest(t, skip);
  const { page, problems } = await open({ before: (p) => p.route('**/stream', (r) => r.abort()) });
  await until('the polling indicator', 20, () => page.$eval('#conn', (e) => e.dataset.state === 'polling'));
  // Data keeps coming: the snapshot time on the page and the CPU chart move on.
  const lastX = () => page.evaluate(() => window.Chart.getChart(document.querySelector('figure[data-chart="cpu.usage_percent"] canvas')).data.datasets[0].data.at(-1).x);
  const t0 = await page.$eval('#updated', (e) => e.textContent);
  const x0 = await lastX();
  await until('a polled update', 15, async () => (await page.$eval('#updated', (e) => e.textContent)) !== t0 && (await lastX()) > x0);
  assert.equal(await page.$eval('#conn', (e) => e.dataset.state), 'polling');
  await page.unroute('**/stream');
  await until('the live indicator again', 30, () => page.$eval('#conn', (e) => e.dataset.state === 'live'));
  const t1 = await page.$eval('#updated', (e) => e.textContent);
  await until('a streamed update', 10, async () => (await page.$eval('#updated', (e) => e.textContent)) !== t1);
  // The aborted stream requests log network errors; nothing else may.
  assert.deepEqual(problems.filter((p) => !/ERR_FAILED|EventSource|stream/.test(p)), []);
  await page.close();
});

test('no layout jumps on updates, and no sideways scrolling on a phone', { timeout: 60000 }, async (t) => {
  if (skip) return skipTest(t, skip);
  for (const width of [1440, 390]) {
    const { page } = await open();
    await page.setViewportSize({ width, height: 900 });
    await until('the live indicator', 20, () => page.$eval('#conn', (e) => e.dataset.state === 'live'));
    await page.waitForTimeout(1500);
    // Cards whose content is fixed in shape; disks, containers and processes may really
    // gain or lose rows, so only the cards above them keep their place for sure.
    const boxes = () => page.$$eval('#health, #card-gpu, #card-cpu, #card-memory, #card-system', (els) => els.map((e) => {
      const r = e.getBoundingClientRect();
      const top = e.id === 'card-system' ? '' : ` top ${Math.round(r.top + window.scrollY)}`;
      return `${e.id || 'health'}${top} height ${Math.round(r.height)} width ${Math.round(r.width)}`;
    }));
    const a = await boxes();
    const t0 = await page.$eval('#updated', (e) => e.textContent);
    await until('two more updates', 10, async () => (await page.$eval('#updated', (e) => e.textContent)) !== t0);
    const t1 = await page.$eval('#updated', (e) => e.textContent);
    await until('one more update', 10, async () => (await page.$eval('#updated', (e) => e.textContent)) !== t1);
    assert.deepEqual(await boxes(), a, `cards kept their place at ${width} px`);
    const overflow = await page.evaluate(() => document.documentElement.scrollWidth - document.documentElement.clientWidth);
    assert.ok(overflow <= 0, `no page-wide sideways scroll at ${width} px (overflow ${overflow} px)`);
    await page.close();
  }
});

test('the theme button switches light and dark, charts included', { timeout: 60000 }, async (t) => {
  if (skip) return skipTest(t, skip);
  const { page, problems } = await open({ before: (p) => p.emulateMedia({ colorScheme: 'light' }) });
  await until('the live indicator', 20, () => page.$eval('#conn', (e) => e.dataset.state === 'live'));
  const look = () => page.evaluate(() => ({
    body: getComputedStyle(document.body).backgroundColor,
    grid: window.Chart.getChart(document.querySelector('figure[data-chart="cpu.usage_percent"] canvas')).options.scales.y.grid.color,
  }));
  const light = await look();
  await page.click('#theme');
  const dark = await look();
  assert.equal(await page.evaluate(() => document.documentElement.dataset.theme), 'dark');
  assert.notEqual(dark.body, light.body);
  assert.notEqual(dark.grid, light.grid, 'the charts follow the theme');
  // The choice outlives a reload.
  await page.reload();
  await until('the live indicator', 20, () => page.$eval('#conn', (e) => e.dataset.state === 'live'));
  assert.deepEqual(await look(), dark);
  await page.click('#theme');
  assert.deepEqual(await look(), light);
  assert.equal(await page.evaluate(() => localStorage.getItem('vitals-theme')), null, 'back to following the system');
  assert.deepEqual(problems, []);
  await page.close();
});

test('screenshots: desktop and phone, light and dark', { timeout: 90000 }, async (t) => {
  if (skip) return skipTest(t, skip);
  const shots = [];
  for (const [device, width] of [['desktop', 1440], ['phone', 390]]) {
    for (const scheme of ['light', 'dark']) {
      const { page, problems } = await open({ before: (p) => p.emulateMedia({ colorScheme: scheme }) });
      await page.setViewportSize({ width, height: device === 'phone' ? 844 : 900 });
      await until('the live indicator', 20, () => page.$eval('#conn', (e) => e.dataset.state === 'live'));
      await page.waitForTimeout(1000);
      const bg = await page.evaluate(() => getComputedStyle(document.body).backgroundColor);
      const dark = bg.match(/\d+/g).slice(0, 3).map(Number).reduce((a, b) => a + b, 0) < 200;
      assert.equal(dark, scheme === 'dark', `${scheme} theme background is ${bg}`);
      shots.push(await screenshot(page, `dashboard-${device}-${scheme}`));
      assert.deepEqual(problems, []);
      await page.close();
    }
  }
  console.log(`screenshots:\n  ${shots.join('\n  ')}`);
});
