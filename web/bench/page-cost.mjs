//! Measures what the live dashboard costs the browser per update: CPU time (script, layout, style) per streamed snapshot, in Debian's chromium against the real host.
import { join } from 'node:path';
import { TARGET, launchBrowser, plugin, startHost, until } from '../tests/harness.mjs';
import { existsSync } from 'node:fs';

const seconds = Number(process.argv[2] || 20);
const interval = process.argv[3] || '1s';
const nvml = join(TARGET, 'libnvidia_ml.so');
let config = '[history]\npoints = 60\n';
for (const name of ['cpu', 'memory', 'system', 'disk', 'network', 'process', 'gpu']) {
  if (!existsSync(plugin(name))) continue;
  config += `\n[collectors.${name}]\ninterval = "${interval}"\n`;
  if (name === 'gpu') config += `[collectors.gpu.config]\nsource = "nvml"\nnvml_library = ${JSON.stringify(nvml)}\n`;
}

const host = await startHost(config);
const browser = await launchBrowser();
try {
  // Fill the history first, so every chart holds its full 60 points while measured.
  await until('60 points of CPU history', 600, async () => {
    const h = await host.json('/admin/monitor/history?collector=cpu');
    return (h.cpu || []).find((s) => s.name === 'usage_percent')?.points.length >= 60;
  });
  const page = await browser.context.newPage();
  const cdp = await browser.context.newCDPSession(page);
  await cdp.send('Network.enable');
  await cdp.send('Performance.enable');
  let events = 0;
  cdp.on('Network.eventSourceMessageReceived', () => { events += 1; });
  const t0 = Date.now();
  await page.goto(`${host.base}/admin/monitor/`);
  await until('the live indicator', 30, () => page.$eval('#conn', (e) => e.dataset.state === 'live'));
  const load = Date.now() - t0;
  await page.waitForTimeout(2000);
  const metrics = async () => Object.fromEntries((await cdp.send('Performance.getMetrics')).metrics.map((m) => [m.name, m.value]));
  const a = await metrics();
  const e0 = events;
  await page.waitForTimeout(seconds * 1000);
  const b = await metrics();
  const n = events - e0;
  const shape = await page.evaluate(() => {
    const charts = Object.values(window.Chart.instances);
    return { charts: charts.length, points: charts.reduce((s, c) => s + c.data.datasets.reduce((t, d) => t + d.data.length, 0), 0) };
  });
  const ms = (k) => ((b[k] - a[k]) * 1000) / n;
  console.log(`dashboard page cost, ${seconds} s at collector interval ${interval}: ${n} snapshots streamed, ${shape.charts} charts holding ${shape.points} points`);
  console.log(`  page ready (live) after      ${load} ms`);
  console.log(`  main-thread task time / update ${ms('TaskDuration').toFixed(2)} ms`);
  console.log(`    script                     ${ms('ScriptDuration').toFixed(2)} ms`);
  console.log(`    layout                     ${ms('LayoutDuration').toFixed(2)} ms`);
  console.log(`    style recalculation        ${ms('RecalcStyleDuration').toFixed(2)} ms`);
  console.log(`  layouts / update             ${((b.LayoutCount - a.LayoutCount) / n).toFixed(2)}`);
  console.log(`  JS heap used                 ${(b.JSHeapUsedSize / 1048576).toFixed(1)} MiB (${((b.JSHeapUsedSize - a.JSHeapUsedSize) / 1048576).toFixed(2)} MiB change over the run)`);
  console.log(`  DOM nodes                    ${b.Nodes} (${b.Nodes - a.Nodes >= 0 ? '+' : ''}${b.Nodes - a.Nodes} over the run)`);
} finally {
  await browser.close();
  await host.stop();
}
